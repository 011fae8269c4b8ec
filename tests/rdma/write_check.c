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
 * The parent is the source (accepts), the child the destination (connects,
 * exposes). Both build the same runs from the seed.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rdmig/transport.h"
#include "log.h"
#include "rdma_test_util.h"

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
static const char *g_role = "main";

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ULL;
	return mix64(*s);
}

static uint8_t src_byte(uint64_t i)
{
	return (uint8_t)mix64(g_seed ^ (i * 0x100000001b3ULL));
}

/*
 * The runs, identical on both sides. chan_of[i] is the data channel of run
 * i: the first half of the gather runs and the split run on 0, the rest on 1.
 */
static size_t build_runs(struct rdmig_run *runs, unsigned *chan_of, uint32_t lreg, uint32_t rreg)
{
	uint32_t bstart[GATHER_PAGES], blen[GATHER_PAGES], order[GATHER_PAGES],
	    lstart[GATHER_PAGES];
	uint64_t s = g_seed;
	uint32_t nb = 0, p = 0, at = 0;
	size_t n = 0;

	/* Blocks of 1..4 pages, laid out locally in shuffled order. */
	while (p < GATHER_PAGES) {
		uint32_t len = 1 + (uint32_t)(rng_next(&s) % 4);

		if (len > GATHER_PAGES - p)
			len = GATHER_PAGES - p;
		bstart[nb] = p;
		blen[nb] = len;
		order[nb] = nb;
		nb++;
		p += len;
	}
	for (uint32_t i = nb - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(rng_next(&s) % (i + 1)), t = order[i];

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
		uint64_t len = 1 + rng_next(&s) % 64;

		chan_of[n] = 1;
		runs[n++] = (struct rdmig_run){.lreg = lreg,
					       .rreg = rreg,
					       .loff = rng_next(&s) % (REGION - 64),
					       .roff = SMALL_BASE + (uint64_t)i * PAGE +
						       rng_next(&s) % (PAGE - 64),
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

static void *map_region(void)
{
	void *p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* ---- destination (child) ------------------------------------------------- */

static int destination(uint16_t port)
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

	g_role = "dst";
	mem = map_region();
	expect = calloc(1, REGION);
	if (!mem || !expect)
		return 1;
	if (rdmig_connect(&cfg, &c, &err) ||
	    rdmig_reg(c, "ram", mem, REGION, RDMIG_REG_REMOTE_WRITE, &id, &err) ||
	    rdmig_expose(c, &err)) {
		printf("[dst] FAIL: setup: %s\n", rdmig_err_str(&err));
		rdmig_conn_destroy(c);
		return 1;
	}
	n = build_runs(runs, chan_of, 0, id);
	for (size_t i = 0; i < n; i++) {
		for (uint64_t k = 0; k < runs[i].len; k++)
			expect[runs[i].roff + k] = src_byte(runs[i].loff + k);
		want_bytes[chan_of[i]] += runs[i].len;
		want_writes[chan_of[i]]++;
	}
	for (unsigned ch = 0; ch < 2; ch++) {
		struct rdmig_fence f;

		if (rdmig_wait_fence(c, ch, WAIT_MS, &f, &err)) {
			printf("[dst] FAIL: wait_fence(%u): %s\n", ch, rdmig_err_str(&err));
			rdmig_conn_destroy(c);
			return 1;
		}
		if (f.seq != 1 || f.bytes != want_bytes[ch] || f.writes != want_writes[ch]) {
			printf("[dst] FAIL: fence of channel %u: seq %" PRIu64 " bytes %" PRIu64
			       " runs %" PRIu64 ", expected 1 / %" PRIu64 " / %" PRIu64 "\n",
			       ch, f.seq, f.bytes, f.writes, want_bytes[ch], want_writes[ch]);
			ok = false;
		} else {
			printf("[dst] ok: fence of channel %u: %" PRIu64 " bytes in %" PRIu64
			       " runs\n",
			       ch, f.bytes, f.writes);
		}
	}
	for (uint64_t i = 0; i < REGION; i++) {
		if (mem[i] != expect[i]) {
			if (!bad++)
				first_bad = i;
		}
	}
	if (bad) {
		printf("[dst] FAIL: %" PRIu64 " bytes differ, the first at offset 0x%" PRIx64
		       " (0x%02x, expected 0x%02x; seed %" PRIu64 ")\n",
		       bad, first_bad, mem[first_bad], expect[first_bad], g_seed);
		ok = false;
	} else {
		printf("[dst] ok: all %u MiB match byte for byte (%zu runs)\n", REGION >> 20, n);
	}
	verdict[0] = ok;
	memcpy(verdict + 1, &first_bad, 8);
	if (rdmig_ctrl_send(c, MSG_VERDICT, verdict, sizeof(verdict), &err)) {
		printf("[dst] FAIL: sending the verdict: %s\n", rdmig_err_str(&err));
		ok = false;
	}
	/* Old remote keys must stop working. */
	rdmig_revoke(c);
	if (rdmig_ctrl_send(c, MSG_REVOKED, NULL, 0, &err)) {
		printf("[dst] FAIL: sending REVOKED: %s\n", rdmig_err_str(&err));
		ok = false;
	}
	/* The source's stale write may break the connection: any end is fine here. */
	rdmig_ctrl_recv(c, &type, verdict, sizeof(verdict), &len, WAIT_MS, NULL);
	rdmig_conn_destroy(c);
	return ok ? 0 : 1;
}

/* ---- source (parent) ------------------------------------------------------ */

static int source(struct rdmig_listener *l)
{
	static struct rdmig_run runs[MAX_RUNS];
	static unsigned chan_of[MAX_RUNS];
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct rdmig_run batch[2][BATCH];
	struct rdmig_xport_stats st;
	unsigned nb[2] = {0, 0};
	uint8_t *mem, verdict[9];
	struct timespec t0, t1;
	uint16_t type = 0;
	uint32_t lreg;
	size_t n, len = 0;
	bool ok = true;
	int ret;

	g_role = "src";
	mem = map_region();
	if (!mem)
		return 1;
	for (uint64_t i = 0; i < REGION; i++)
		mem[i] = src_byte(i);
	if (rdmig_accept(l, WAIT_MS, &c, &err) || rdmig_recv_layout(c, WAIT_MS, &err) ||
	    rdmig_reg(c, "src", mem, REGION, 0, &lreg, &err)) {
		printf("[src] FAIL: setup: %s\n", rdmig_err_str(&err));
		goto out_fail;
	}
	n = build_runs(runs, chan_of, lreg, rdmig_remote_get(c, 0)->id);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i <= n; i++) {
		for (unsigned ch = 0; ch < 2; ch++) {
			/* Flush a full batch, and everything at the end. */
			if (nb[ch] && (nb[ch] == BATCH || i == n)) {
				if (rdmig_write(c, ch, batch[ch], nb[ch], &err)) {
					printf("[src] FAIL: rdmig_write: %s\n",
					       rdmig_err_str(&err));
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
			printf("[src] FAIL: rdmig_fence(%u): %s\n", ch, rdmig_err_str(&err));
			goto out_fail;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rdmig_xport_stats(c, &st);
	printf("[src] ok: %zu runs, %" PRIu64 " bytes written and fenced in %.3f s\n", n,
	       st.bytes_written,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (rdmig_ctrl_recv(c, &type, verdict, sizeof(verdict), &len, WAIT_MS, &err) ||
	    type != MSG_VERDICT || len != sizeof(verdict)) {
		printf("[src] FAIL: no verdict: %s\n", rdmig_err_str(&err));
		goto out_fail;
	}
	if (!verdict[0]) {
		printf("[src] FAIL: the destination found differences\n");
		ok = false;
	}
	if (rdmig_ctrl_recv(c, &type, verdict, sizeof(verdict), &len, WAIT_MS, &err) ||
	    type != MSG_REVOKED) {
		printf("[src] FAIL: no REVOKED: %s\n", rdmig_err_str(&err));
		goto out_fail;
	}
	/* One write with the revoked key; the fence waits for its completion. */
	ret = rdmig_write(c, 0, &runs[0], 1, &err);
	if (!ret)
		ret = rdmig_fence(c, 0, 2, &err);
	if (ret && strstr(rdmig_err_str(&err), "remote access error")) {
		printf("[src] ok: a write with a revoked key fails: %d: %s\n", ret,
		       rdmig_err_str(&err));
	} else {
		printf("[src] FAIL: a write with a revoked key returned %d: %s\n", ret,
		       rdmig_err_str(&err));
		ok = false;
	}
	rdmig_conn_destroy(c);
	return ok ? 0 : 1;
out_fail:
	rdmig_conn_destroy(c);
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {.name = "host", .has_arg = required_argument, .val = 'H'},
	    {.name = "seed", .has_arg = required_argument, .val = 's'},
	    {.name = "help", .has_arg = no_argument, .val = 'h'},
	    {0},
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l = NULL;
	struct rdmig_xport_cfg cfg;
	const char *host = NULL;
	int opt, ret, status, wst = 0, pfd[2];
	uint16_t port;
	char *end;
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	rdmig_log_init();
	g_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'H':
			host = optarg;
			break;
		case 's':
			errno = 0;
			g_seed = strtoull(optarg, &end, 0);
			if (!errno && !*end)
				break;
			/* fall through */
		default:
			fprintf(stderr, "usage: rdma_write_gather [--host ADDR] [--seed S]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	ret = rdma_test_require_device("rdma_write_gather");
	if (ret)
		return ret;
	rdma_test_host(host, g_host, sizeof(g_host));
	printf("[main] seed %" PRIu64 "\n", g_seed);

	/* Fork before any RDMA state exists; the port goes to the child by pipe. */
	if (pipe(pfd)) {
		perror("pipe");
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		close(pfd[1]);
		if (read(pfd[0], &port, sizeof(port)) != sizeof(port) || !port)
			_exit(1);
		_exit(destination(port));
	}
	close(pfd[0]);
	g_role = "src";
	cfg = base_cfg(0);
	if (rdmig_listen(&cfg, &l, &err)) {
		printf("[src] FAIL: rdmig_listen: %s\n", rdmig_err_str(&err));
		close(pfd[1]);
		waitpid(pid, &wst, 0);
		return 1;
	}
	port = rdmig_listener_port(l);
	if (write(pfd[1], &port, sizeof(port)) != sizeof(port))
		perror("write");
	close(pfd[1]);
	status = source(l);
	rdmig_listener_destroy(l);
	if (waitpid(pid, &wst, 0) < 0 || !WIFEXITED(wst) || WEXITSTATUS(wst)) {
		printf("[main] FAIL: destination exited with status 0x%x\n", wst);
		status = 1;
	}
	printf("[main] %s: rdma_write_gather (seed %" PRIu64 ")\n", status ? "FAIL" : "PASS",
	       g_seed);
	return status;
}
