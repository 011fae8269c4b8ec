/* SPDX-License-Identifier: MIT */
/*
 * xport_check read: one-sided reads (rdmig_read), what post-copy uses.
 *
 * The accepting side plays the post-copy source: it fills a region with the
 * content of the seed, registers it for remote reading ("ram"), registers a
 * second one for remote writing only ("wonly"), and exposes both. The
 * connector reads from "ram" into a region of its own and compares bytes:
 * single pages, multi-page and odd-sized runs, runs above the largest work
 * request, several runs in one call, random runs, and every channel at once
 * from a thread each. Bytes around what was read must stay untouched. Then
 * the refusals of the common layer (a region exposed for writing only,
 * ranges outside either region, unknown regions, a bad channel, a write to
 * the read-only region), which leave the connection usable.
 *
 * rdma: the latency of a 4 KiB read (printed, never judged: the machine is
 * shared), then the peer revokes its regions and the next read must fail
 * with the peer's refusal and fail the connection.
 * tcp: every valid read is refused with -EOPNOTSUPP and a message that says
 * why; the refusals above come first, as on rdma.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "clock.h"
#include "th_check.h"
#include "th_content.h"
#include "xport_check.h"

#define WONLY_LEN     (64u << 10)
#define GUARD	      0x5a /* the reader's region before any read */
#define LAT_READS     2000
#define MAX_CASE_RUNS 64

struct reader {
	struct rdmig_conn *c;
	uint8_t *mem; /* the reader's region, as long as the peer's */
	uint32_t lreg, rreg, wonly;
	uint64_t size, seed;
	bool rdma;
	uint64_t bytes, runs; /* read successfully, for the counters */
};

static bool covered(const struct rdmig_run *runs, size_t n, uint64_t loff)
{
	for (size_t j = 0; j < n; j++)
		if (loff >= runs[j].loff && loff - runs[j].loff < runs[j].len)
			return true;
	return false;
}

/* The runs landed where they should, and nothing around them moved. */
static bool runs_landed(struct reader *rd, const struct rdmig_run *runs, size_t n, const char *what)
{
	bool ok = true;

	for (size_t i = 0; i < n; i++) {
		const struct rdmig_run *r = &runs[i];
		uint64_t first = UINT64_MAX;
		uint64_t bad =
		    th_content_compare(rd->mem + r->loff, r->roff, r->len, rd->seed, 0, &first);

		ok &= TH_CHECK(bad == 0,
			       "%s: run %zu (local 0x%" PRIx64 ", remote 0x%" PRIx64 ", %" PRIu64
			       " bytes) holds the peer's bytes (%" PRIu64
			       " pages differ, first at remote 0x%" PRIx64 ")",
			       what, i, r->loff, r->roff, r->len, bad, first);
		/* Runs of one call may meet: only a byte no run covers must keep the guard. */
		if (r->loff && rd->mem[r->loff - 1] != GUARD && !covered(runs, n, r->loff - 1))
			ok &= TH_CHECK(false, "%s: run %zu: the byte before it was overwritten",
				       what, i);
		if (r->loff + r->len < rd->size && rd->mem[r->loff + r->len] != GUARD &&
		    !covered(runs, n, r->loff + r->len))
			ok &= TH_CHECK(false, "%s: run %zu: the byte after it was overwritten",
				       what, i);
	}
	return ok;
}

/* Read runs on chan: compared on rdma, refused with -EOPNOTSUPP on tcp. */
static bool read_case(struct reader *rd, unsigned chan, const struct rdmig_run *runs, size_t n,
		      const char *what)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	int ret;

	/* Everything, not only the runs: the bytes around them are checked too. */
	memset(rd->mem, GUARD, rd->size);
	ret = rdmig_read(rd->c, chan, runs, n, &e);
	if (!rd->rdma) {
		TH_CHECK_INT(ret, ==, -EOPNOTSUPP, "%s on tcp: refused (%s)", what,
			     rdmig_err_str(&e));
		return TH_CHECK_HAS(rdmig_err_str(&e), "no one-sided reads",
				    "%s on tcp: the message says why", what);
	}
	if (!TH_CHECK_CALL(ret, &e, "%s: rdmig_read of %zu runs on channel %u", what, n, chan))
		return false;
	for (size_t i = 0; i < n; i++) {
		rd->bytes += runs[i].len;
		rd->runs++;
	}
	return runs_landed(rd, runs, n, what);
}

static struct rdmig_run run_of(struct reader *rd, uint64_t loff, uint64_t roff, uint64_t len)
{
	return (struct rdmig_run){
	    .lreg = rd->lreg, .rreg = rd->rreg, .loff = loff, .roff = roff, .len = len};
}

static void shapes(struct reader *rd)
{
	struct rdmig_run runs[MAX_CASE_RUNS];
	uint64_t half = rd->size / 2;
	struct th_rng rng = {.s = rd->seed ^ 0x7265616431ULL};
	size_t n;

	runs[0] = run_of(rd, 7 * 4096, 7 * 4096, 4096);
	read_case(rd, 0, runs, 1, "one page");
	runs[0] = run_of(rd, half + 8192, 3 * 4096, 5 * 4096 + 100);
	read_case(rd, 0, runs, 1, "five pages and 100 bytes, elsewhere locally");
	runs[0] = run_of(rd, 1, rd->size - 4096 - 3, 4096);
	read_case(rd, 0, runs, 1, "an unaligned page at the end of the region");
	/* Above the largest work request (256 KiB): split into several READs. */
	runs[0] =
	    run_of(rd, 0, half, half - 4096 < (1u << 20) + 12 ? half - 4096 : (1u << 20) + 12);
	read_case(rd, 0, runs, 1, "a run above the largest work request");
	/*
	 * Remote pages in sequence into scattered local pages (one READ, many
	 * SGEs), then the reverse (merged neither way), in one call.
	 */
	n = 0;
	for (unsigned i = 0; i < 24; i++)
		runs[n++] = run_of(rd, (uint64_t)(3 * i + 1) * 4096, 64 * 4096 + i * 4096, 4096);
	for (unsigned i = 0; i < 8; i++)
		runs[n++] =
		    run_of(rd, half + (uint64_t)i * 4096, (uint64_t)(40 - 3 * i) * 4096, 4096);
	read_case(rd, 0, runs, n, "32 runs in one call, scattered and merged");
	for (unsigned round = 0; round < 8; round++) {
		n = (size_t)th_rng_range(&rng, 1, MAX_CASE_RUNS / 2);
		/* Local slots of 64 KiB, one run each, so that no run overlaps another. */
		for (size_t i = 0; i < n; i++) {
			uint64_t len = th_rng_range(&rng, 1, 64u << 10);
			uint64_t roff = th_rng_range(&rng, 0, rd->size - len);
			uint64_t slot = (uint64_t)i * (64u << 10);

			runs[i] = run_of(rd, slot + ((64u << 10) - len) / 2, roff, len);
		}
		read_case(rd, 0, runs, n, "random runs");
	}
}

struct chan_job {
	struct reader *rd;
	unsigned chan;
	bool ok;
};

/* One channel's slice, in 16 KiB runs, odd ones first, with a reader of its own. */
static void *chan_reader(void *arg)
{
	struct chan_job *j = arg;
	struct reader *rd = j->rd;
	unsigned nch = rdmig_conn_channels(rd->c);
	uint64_t lo, hi, step = 16u << 10;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_run runs[MAX_CASE_RUNS];
	size_t n = 0;

	slice_of(rd->size, nch, j->chan, &lo, &hi);
	memset(rd->mem + lo, GUARD, hi - lo);
	j->ok = true;
	for (int pass = 1; pass >= 0; pass--) {
		for (uint64_t off = lo + (uint64_t)pass * step; off < hi; off += 2 * step) {
			uint64_t len = hi - off < step ? hi - off : step;

			runs[n++] = run_of(rd, off, off, len);
			if (n < MAX_CASE_RUNS)
				continue;
			j->ok &= TH_CHECK_CALL(rdmig_read(rd->c, j->chan, runs, n, &e), &e,
					       "channel %u: read of %zu runs", j->chan, n);
			n = 0;
		}
	}
	if (n)
		j->ok &= TH_CHECK_CALL(rdmig_read(rd->c, j->chan, runs, n, &e), &e,
				       "channel %u: read of %zu runs", j->chan, n);
	return NULL;
}

static void all_channels(struct reader *rd)
{
	unsigned nch = rdmig_conn_channels(rd->c);
	struct chan_job job[RDMIG_MAX_CHANNELS];
	pthread_t thr[RDMIG_MAX_CHANNELS];
	uint64_t first = UINT64_MAX, bad;
	unsigned started = 0;

	for (unsigned i = 0; i < nch; i++) {
		job[i] = (struct chan_job){.rd = rd, .chan = i};
		if (!TH_CHECK(!pthread_create(&thr[i], NULL, chan_reader, &job[i]),
			      "a reader thread for channel %u", i))
			break;
		started++;
	}
	for (unsigned i = 0; i < started; i++) {
		pthread_join(thr[i], NULL);
		if (job[i].ok) {
			uint64_t lo, hi;

			slice_of(rd->size, nch, i, &lo, &hi);
			rd->bytes += hi - lo;
			rd->runs += (hi - lo + (16u << 10) - 1) / (16u << 10);
		}
	}
	bad = th_content_compare(rd->mem, 0, rd->size, rd->seed, 0, &first);
	TH_CHECK(started == nch && bad == 0,
		 "%u channels read the whole region at once, 16 KiB runs (%" PRIu64
		 " pages differ, first at 0x%" PRIx64 ")",
		 nch, bad, first);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* How long a post-copy fault waits for its page: reported, not judged. */
static void latency(struct reader *rd)
{
	uint64_t *ns = calloc(LAT_READS, sizeof(*ns));
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct th_rng rng = {.s = rd->seed ^ 0x6c6174ULL};
	unsigned pages = (unsigned)(rd->size / 4096);
	unsigned done = 0;

	if (!TH_CHECK(ns != NULL, "memory for %u latency samples", LAT_READS))
		return;
	for (; done < LAT_READS; done++) {
		uint64_t page = th_rng_range(&rng, 0, pages - 1) * 4096;
		struct rdmig_run r = run_of(rd, page, page, 4096);
		uint64_t t0 = rdmig_now_ns();
		int ret = rdmig_read(rd->c, 0, &r, 1, &e);

		ns[done] = rdmig_now_ns() - t0;
		if (!TH_CHECK_CALL(ret, &e, "4 KiB read %u of %u", done + 1, LAT_READS))
			break;
		rd->bytes += 4096;
		rd->runs++;
	}
	if (done == LAT_READS) {
		qsort(ns, done, sizeof(*ns), cmp_u64);
		th_note("info: 4 KiB rdmig_read latency over %u reads: min %.1f us, p50 %.1f us, "
			"p99 %.1f us, max %.1f us",
			done, (double)ns[0] / 1e3, (double)ns[done / 2] / 1e3,
			(double)ns[done * 99 / 100] / 1e3, (double)ns[done - 1] / 1e3);
	}
	free(ns);
}

/* A refusal of the common layer: its code, its words, and the connection lives on. */
static void refused(struct reader *rd, bool write, const struct rdmig_run *r, unsigned chan,
		    int want, const char *words, const char *what)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	int ret = write ? rdmig_write(rd->c, chan, r, 1, &e) : rdmig_read(rd->c, chan, r, 1, &e);

	TH_CHECK_INT(ret, ==, want, "%s: refused (%s)", what, rdmig_err_str(&e));
	TH_CHECK_HAS(rdmig_err_str(&e), words, "%s: the message says why", what);
	TH_CHECK(!rdmig_conn_failed(rd->c, NULL), "%s: the connection is still usable", what);
}

static void refusals(struct reader *rd)
{
	struct rdmig_run r = run_of(rd, 0, 0, 4096);

	r.rreg = rd->wonly;
	refused(rd, false, &r, 0, -EACCES, "not expose region 'wonly'",
		"a read of a region exposed for writing only");
	r = run_of(rd, 0, rd->size - 4096, 8192);
	refused(rd, false, &r, 0, -ERANGE, "remote range",
		"a read past the end of the peer's region");
	r = run_of(rd, rd->size - 4096, 0, 8192);
	refused(rd, false, &r, 0, -ERANGE, "local range",
		"a read past the end of the local region");
	r = run_of(rd, 0, 0, 0);
	refused(rd, false, &r, 0, -ERANGE, "local range", "a read of 0 bytes");
	r = run_of(rd, 0, 0, 4096);
	r.rreg = 999;
	refused(rd, false, &r, 0, -EINVAL, "unknown remote region 999",
		"a read of a region not in the peer's layout");
	r = run_of(rd, 0, 0, 4096);
	r.lreg = 63;
	refused(rd, false, &r, 0, -EINVAL, "unknown local region 63",
		"a read into an unregistered local region");
	r = run_of(rd, 0, 0, 4096);
	refused(rd, false, &r, rdmig_conn_channels(rd->c), -EINVAL, "out of range",
		"a read on a channel the connection does not have");
	refused(rd, true, &r, 0, -EACCES, "not expose region 'ram'",
		"a write to a region exposed for reading only");
}

/* rdma: the peer revokes; the next read is the peer's refusal, and fails the connection. */
static void after_revoke(struct reader *rd)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_run r = run_of(rd, 0, 4096, 4096);
	uint16_t type = 0;
	uint8_t b[8];
	size_t len = 0;
	int ret;

	ret = rdmig_ctrl_send(rd->c, MSG_REVOKE, "revoke", 6, &e);
	if (!TH_CHECK_CALL(ret, &e, "asking the peer to revoke"))
		return;
	ret = rdmig_ctrl_recv(rd->c, &type, b, sizeof(b), &len, WAIT_MS, &e);
	if (!TH_CHECK_CALL(ret, &e, "waiting for the revocation") ||
	    !TH_CHECK(type == MSG_ACK, "the peer revoked (type %u)", type))
		return;
	ret = rdmig_read(rd->c, 0, &r, 1, &e);
	TH_CHECK_INT(ret, ==, -EACCES, "a read after the peer revoked fails (%s)",
		     rdmig_err_str(&e));
	TH_CHECK_HAS(rdmig_err_str(&e), "peer refused", "the message names the peer's refusal");
	TH_CHECK_HAS(rdmig_err_str(&e), "revoked", "the message names revocation as a cause");
	TH_CHECK(rdmig_conn_failed(rd->c, NULL), "the refused read failed the connection");
	rdmig_err_clear(&e);
	ret = rdmig_read(rd->c, 0, &r, 1, &e);
	TH_CHECK(ret == -EACCES && strstr(rdmig_err_str(&e), "peer refused"),
		 "the next call reports the same first error (%d: %s)", ret, rdmig_err_str(&e));
}

static bool reader_run(struct rdmig_conn *c)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	const struct rdmig_remote_region *ram, *wonly;
	struct rdmig_xport_stats st;
	struct reader rd = {.c = c, .seed = g_opt.seed};
	int ret;

	rd.rdma = rdmig_conn_backend(c) == RDMIG_BACKEND_RDMA;
	ret = rdmig_recv_layout(c, WAIT_MS, &e);
	if (!TH_CHECK_CALL(ret, &e, "receiving the peer's layout"))
		return false;
	ram = find_remote(c, "ram");
	wonly = find_remote(c, "wonly");
	if (!TH_CHECK(ram && wonly, "the layout has 'ram' and 'wonly' (%u regions)",
		      rdmig_remote_count(c)))
		return false;
	TH_CHECK(ram->flags == RDMIG_REG_REMOTE_READ && wonly->flags == RDMIG_REG_REMOTE_WRITE,
		 "the layout says the access: 'ram' 0x%x (read), 'wonly' 0x%x (write)", ram->flags,
		 wonly->flags);
	TH_CHECK_UINT(ram->len, ==, g_opt.size, "'ram' is as long as the peer's region");
	rd.size = ram->len;
	rd.rreg = ram->id;
	rd.wonly = wonly->id;
	rd.mem = th_map(rd.size);
	memset(rd.mem, GUARD, rd.size);
	ret = rdmig_reg(c, "into", rd.mem, rd.size, 0, &rd.lreg, &e);
	if (!TH_CHECK_CALL(ret, &e, "registering the reader's region")) {
		munmap(rd.mem, rd.size);
		return false;
	}
	shapes(&rd);
	refusals(&rd);
	if (rd.rdma) {
		all_channels(&rd);
		latency(&rd);
	}
	rdmig_xport_stats(c, &st);
	TH_CHECK(st.bytes_read == rd.bytes && st.reads_posted == rd.runs,
		 "counters: bytes_read %" PRIu64 " (read %" PRIu64 "), reads_posted %" PRIu64
		 " (runs %" PRIu64 ")",
		 st.bytes_read, rd.bytes, st.reads_posted, rd.runs);
	if (rd.rdma)
		after_revoke(&rd);
	else
		barrier(c);
	munmap(rd.mem, rd.size);
	return !th_failures();
}

/* The post-copy source: exposes its memory for reading, and revokes when asked. */
static bool exposer_run(struct rdmig_conn *c)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint64_t size = g_opt.size;
	uint8_t *mem = th_map(size), *wmem = th_map(WONLY_LEN), b[16];
	struct rdmig_xport_stats st;
	uint32_t id, wid;
	uint16_t type = 0;
	size_t len = 0;
	int ret;

	th_content_fill(mem, 0, size, g_opt.seed, 0);
	ret = rdmig_reg(c, "ram", mem, size, RDMIG_REG_REMOTE_READ, &id, &e);
	if (TH_CHECK_CALL(ret, &e, "registering 'ram' for remote reading"))
		ret = rdmig_reg(c, "wonly", wmem, WONLY_LEN, RDMIG_REG_REMOTE_WRITE, &wid, &e);
	if (TH_CHECK_CALL(ret, &e, "registering 'wonly' for remote writing"))
		ret = rdmig_expose(c, &e);
	if (!TH_CHECK_CALL(ret, &e, "exposing both"))
		goto out;
	rdmig_xport_stats(c, &st);
	TH_CHECK_UINT(st.regions_remote, ==, 2, "both count as regions open to the peer");
	ret = rdmig_ctrl_recv(c, &type, b, sizeof(b), &len, WAIT_MS, &e);
	if (!TH_CHECK_CALL(ret, &e, "waiting for the reader"))
		goto out;
	if (type == MSG_DONE) {
		/* tcp: the reader is done; answer its barrier. */
		ret = rdmig_ctrl_send(c, MSG_DONE, "done", 4, &e);
		TH_CHECK_CALL(ret, &e, "answering DONE");
		goto out;
	}
	if (!TH_CHECK(type == MSG_REVOKE, "the reader asks for revocation (type %u)", type))
		goto out;
	rdmig_revoke(c);
	rdmig_xport_stats(c, &st);
	TH_CHECK_UINT(st.regions_remote, ==, 0, "revoked: no region open to the peer");
	ret = rdmig_ctrl_send(c, MSG_ACK, "ok", 2, &e);
	if (!TH_CHECK_CALL(ret, &e, "telling the reader"))
		goto out;
	/* The reader's refused read breaks the connection: that, or its close, ends it. */
	rdmig_err_clear(&e);
	ret = rdmig_ctrl_recv(c, &type, b, sizeof(b), &len, WAIT_MS, &e);
	TH_CHECK(ret < 0 && ret != -ETIMEDOUT,
		 "the connection ends after the refused read (%d: %s)", ret, rdmig_err_str(&e));
out:
	/* Deregister before unmapping: the destroy of the caller comes later. */
	rdmig_revoke(c);
	munmap(mem, size);
	munmap(wmem, WONLY_LEN);
	return !th_failures();
}

bool read_run(struct rdmig_conn *c, bool server)
{
	return server ? exposer_run(c) : reader_run(c);
}
