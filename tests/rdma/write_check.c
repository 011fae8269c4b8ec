/* SPDX-License-Identifier: MIT */
/*
 * rdma_write_gather: the paths of the rdma backend's rdmig_write() that the
 * generic transfer checks (loff == roff) do not reach, checked byte for byte:
 *   - 16 MiB of 4 KiB pages whose local order is shuffled in blocks of 1..4
 *     pages: runs contiguous on both sides are merged, runs contiguous only
 *     remotely are gathered into one work request with several SGEs;
 *   - one unaligned run of 3 MiB + 5 bytes, split into several writes;
 *   - 1024 runs of 1..64 bytes at odd offsets.
 * Runs go over two data channels; each fence must report the bytes and runs
 * of its channel. Then the destination revokes its regions, and a write with
 * the old remote key must fail with a remote access error.
 *
 * This process is the source (accepts), the destination (connects, exposes)
 * this program again (exec'd: tests/lib/th_peer.h). Both build the same runs
 * from the seed, which the harness hands to the destination.
 *
 *   rdma_write_gather [--host ADDR] [--seed S]
 *
 * Exit: 0 pass, 1 fail, 77 no RDMA device.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "rdmig/transport.h"
#include "th_check.h"
#include "th_content.h"
#include "th_pair.h"
#include "th_rdma.h"

#define WAIT_MS	     120000
#define REGION	     (32u << 20)
#define PAGE	     4096u
#define GATHER_PAGES 4096u /* 16 MiB */
#define SPLIT_ROFF   (16u << 20)
#define SPLIT_LOFF   ((16u << 20) + 7)
#define SPLIT_LEN    ((3u << 20) + 5)
#define SMALL_BASE   (20u << 20)
#define NSMALL	     1024u
#define MAX_RUNS     (GATHER_PAGES + 1 + NSMALL)
#define BATCH	     64

#define MSG_VERDICT 0x301
#define MSG_REVOKED 0x302

static char g_host[256];
static uint64_t g_seed;

/* The source region's content; the destination computes it for every run. */
static uint64_t src_key(void)
{
	return th_mix64(g_seed ^ 0x5743);
}

/*
 * The runs, identical on both sides. chan_of[i] is the data channel of run
 * i: the first half of the gather runs and the split run on 0, the rest on 1.
 */
static size_t build_runs(struct rdmig_run *runs, unsigned *chan_of, uint32_t lreg, uint32_t rreg)
{
	uint32_t bstart[GATHER_PAGES], blen[GATHER_PAGES], order[GATHER_PAGES],
	    lstart[GATHER_PAGES];
	struct th_rng s = {g_seed};
	uint32_t nb = 0, p = 0, at = 0;
	size_t n = 0;

	/* Blocks of 1..4 pages, laid out locally in shuffled order. */
	while (p < GATHER_PAGES) {
		uint32_t len = 1 + (uint32_t)(th_rng_next(&s) % 4);

		if (len > GATHER_PAGES - p)
			len = GATHER_PAGES - p;
		bstart[nb] = p;
		blen[nb] = len;
		order[nb] = nb;
		nb++;
		p += len;
	}
	for (uint32_t i = nb - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(th_rng_next(&s) % (i + 1)), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (uint32_t i = 0; i < nb; i++) {
		lstart[order[i]] = at;
		at += blen[order[i]];
	}
	for (uint32_t b = 0; b < nb; b++) {
		for (uint32_t k = 0; k < blen[b]; k++) {
			chan_of[n] = bstart[b] < GATHER_PAGES / 2 ? 0 : 1;
			runs[n++] = (struct rdmig_run){.lreg = lreg,
						       .rreg = rreg,
						       .loff = (uint64_t)(lstart[b] + k) * PAGE,
						       .roff = (uint64_t)(bstart[b] + k) * PAGE,
						       .len = PAGE};
		}
	}
	chan_of[n] = 0;
	runs[n++] = (struct rdmig_run){
	    .lreg = lreg, .rreg = rreg, .loff = SPLIT_LOFF, .roff = SPLIT_ROFF, .len = SPLIT_LEN};
	for (uint32_t i = 0; i < NSMALL; i++) {
		uint64_t len = 1 + th_rng_next(&s) % 64;

		chan_of[n] = 1;
		runs[n++] = (struct rdmig_run){.lreg = lreg,
					       .rreg = rreg,
					       .loff = th_rng_next(&s) % (REGION - 64),
					       .roff = SMALL_BASE + (uint64_t)i * PAGE +
						       th_rng_next(&s) % (PAGE - 64),
					       .len = len};
	}
	return n;
}

static struct rdmig_xport_cfg base_cfg(uint16_t port)
{
	struct rdmig_xport_cfg cfg = {
	    .backend = RDMIG_BACKEND_RDMA,
	    .host = g_host,
	    .port = port,
	    .channels = 2,
	    .connect_timeout_ms = 20000,
	};
	return cfg;
}

/* ---- destination (the peer) ------------------------------------------------- */

static bool destination(uint16_t port, void *arg)
{
	static struct rdmig_run runs[MAX_RUNS];
	static unsigned chan_of[MAX_RUNS];
	struct rdmig_xport_cfg cfg = base_cfg(port);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint64_t want_bytes[2] = {0, 0}, want_writes[2] = {0, 0}, bad = 0, first_bad = 0;
	uint8_t *mem, *expect, verdict[9];
	uint16_t type;
	size_t n, len;
	uint32_t id;
	bool ok = true;

	(void)arg;
	mem = th_map(REGION);
	expect = calloc(1, REGION);
	if (!expect)
		return false;
	if (rdmig_connect(&cfg, &c, &err) ||
	    rdmig_reg(c, "ram", mem, REGION, RDMIG_REG_REMOTE_WRITE, &id, &err) ||
	    rdmig_expose(c, &err)) {
		TH_CHECK(false, "setup: %s", rdmig_err_str(&err));
		rdmig_conn_destroy(c);
		return false;
	}
	n = build_runs(runs, chan_of, 0, id);
	for (size_t i = 0; i < n; i++) {
		th_content_fill(expect + runs[i].roff, runs[i].loff, runs[i].len, src_key(), 0);
		want_bytes[chan_of[i]] += runs[i].len;
		want_writes[chan_of[i]]++;
	}
	for (unsigned ch = 0; ch < 2; ch++) {
		struct rdmig_fence f;

		if (rdmig_wait_fence(c, ch, WAIT_MS, &f, &err)) {
			TH_CHECK(false, "wait_fence(%u): %s", ch, rdmig_err_str(&err));
			rdmig_conn_destroy(c);
			return false;
		}
		ok &=
		    TH_CHECK(f.seq == 1 && f.bytes == want_bytes[ch] && f.writes == want_writes[ch],
			     "fence of channel %u: seq %" PRIu64 ", %" PRIu64 " bytes in %" PRIu64
			     " runs, expected 1 / %" PRIu64 " / %" PRIu64,
			     ch, f.seq, f.bytes, f.writes, want_bytes[ch], want_writes[ch]);
	}
	for (uint64_t i = 0; i < REGION; i++) {
		if (mem[i] != expect[i]) {
			if (!bad++)
				first_bad = i;
		}
	}
	ok &= TH_CHECK(!bad,
		       "all %u MiB match byte for byte (%zu runs): %" PRIu64 " bytes differ, the "
		       "first at offset 0x%" PRIx64 " (0x%02x, expected 0x%02x)",
		       REGION >> 20, n, bad, first_bad, mem[first_bad], expect[first_bad]);
	verdict[0] = ok;
	memcpy(verdict + 1, &first_bad, 8);
	if (rdmig_ctrl_send(c, MSG_VERDICT, verdict, sizeof(verdict), &err)) {
		TH_CHECK(false, "sending the verdict: %s", rdmig_err_str(&err));
		ok = false;
	}
	/* Old remote keys must stop working. */
	rdmig_revoke(c);
	if (rdmig_ctrl_send(c, MSG_REVOKED, NULL, 0, &err)) {
		TH_CHECK(false, "sending REVOKED: %s", rdmig_err_str(&err));
		ok = false;
	}
	/* The source's stale write may break the connection: any end is fine here. */
	rdmig_ctrl_recv(c, &type, verdict, sizeof(verdict), &len, WAIT_MS, NULL);
	rdmig_conn_destroy(c);
	return ok;
}

/* ---- source (this process) ------------------------------------------------------ */

static bool source(struct rdmig_listener *l, struct th_peer *peer, void *arg)
{
	static struct rdmig_run runs[MAX_RUNS];
	static unsigned chan_of[MAX_RUNS];
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct rdmig_run batch[2][BATCH];
	struct rdmig_xport_stats st;
	unsigned nb[2] = {0, 0};
	uint8_t *mem, verdict[9];
	double t0;
	uint16_t type = 0;
	uint32_t lreg;
	size_t n, len = 0;
	bool ok = true;
	int ret;

	(void)peer;
	(void)arg;
	mem = th_map(REGION);
	th_content_fill(mem, 0, REGION, src_key(), 0);
	if (rdmig_accept(l, WAIT_MS, &c, &err) || rdmig_recv_layout(c, WAIT_MS, &err) ||
	    rdmig_reg(c, "src", mem, REGION, 0, &lreg, &err)) {
		TH_CHECK(false, "setup: %s", rdmig_err_str(&err));
		goto out_fail;
	}
	n = build_runs(runs, chan_of, lreg, rdmig_remote_get(c, 0)->id);
	t0 = rdmig_now_s();
	for (size_t i = 0; i <= n; i++) {
		for (unsigned ch = 0; ch < 2; ch++) {
			/* Flush a full batch, and everything at the end. */
			if (nb[ch] && (nb[ch] == BATCH || i == n)) {
				if (rdmig_write(c, ch, batch[ch], nb[ch], &err)) {
					TH_CHECK(false, "rdmig_write: %s", rdmig_err_str(&err));
					goto out_fail;
				}
				nb[ch] = 0;
			}
		}
		if (i < n)
			batch[chan_of[i]][nb[chan_of[i]]++] = runs[i];
	}
	for (unsigned ch = 0; ch < 2; ch++) {
		if (rdmig_fence(c, ch, 1, &err)) {
			TH_CHECK(false, "rdmig_fence(%u): %s", ch, rdmig_err_str(&err));
			goto out_fail;
		}
	}
	rdmig_xport_stats(c, &st);
	TH_CHECK(true, "%zu runs, %" PRIu64 " bytes written and fenced in %.3f s", n,
		 st.bytes_written, rdmig_now_s() - t0);
	if (rdmig_ctrl_recv(c, &type, verdict, sizeof(verdict), &len, WAIT_MS, &err) ||
	    type != MSG_VERDICT || len != sizeof(verdict)) {
		TH_CHECK(false, "no verdict: %s", rdmig_err_str(&err));
		goto out_fail;
	}
	if (!verdict[0]) {
		TH_CHECK(false, "the destination found differences");
		ok = false;
	}
	if (rdmig_ctrl_recv(c, &type, verdict, sizeof(verdict), &len, WAIT_MS, &err) ||
	    type != MSG_REVOKED) {
		TH_CHECK(false, "no REVOKED: %s", rdmig_err_str(&err));
		goto out_fail;
	}
	/* One write with the revoked key; the fence waits for its completion. */
	ret = rdmig_write(c, 0, &runs[0], 1, &err);
	if (!ret)
		ret = rdmig_fence(c, 0, 2, &err);
	ok &= TH_CHECK(ret && strstr(rdmig_err_str(&err), "remote access error"),
		       "a write with a revoked key fails with a remote access error: %d: %s", ret,
		       rdmig_err_str(&err));
	rdmig_conn_destroy(c);
	return ok;
out_fail:
	rdmig_conn_destroy(c);
	return false;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {.name = "host", .has_arg = required_argument, .val = 'H'},
	    {.name = "seed", .has_arg = required_argument, .val = 's'},
	    {.name = "help", .has_arg = no_argument, .val = 'h'},
	    {0},
	};
	struct th_pair pair = {.roles = {"src", "dst"},
			       .listener = source,
			       .connector = destination,
			       .timeout_ms = WAIT_MS};
	struct rdmig_xport_cfg cfg;
	const char *host = NULL, *seed_arg = NULL;
	int opt, ret;

	th_init(argc, argv);
	th_set_role("main");
	th_set_verbose(true);
	rdmig_log_init();
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'H') {
			host = optarg;
		} else if (opt == 's') {
			seed_arg = optarg;
		} else {
			fprintf(stderr, "usage: rdma_write_gather [--host ADDR] [--seed S]\n");
			return opt == 'h' ? 0 : TH_EXIT_USAGE;
		}
	}
	if (th_seed_init(seed_arg, &g_seed))
		return TH_EXIT_USAGE;
	ret = th_require_rdma("rdma_write_gather");
	if (ret)
		return ret;
	th_rdma_host(host, g_host, sizeof(g_host));
	if (!th_peer_role())
		th_note("seed %" PRIu64, g_seed);

	cfg = base_cfg(0);
	ret = th_pair_run(&cfg, &pair);
	th_set_role("main");
	return th_summary("rdma_write_gather", ret);
}
