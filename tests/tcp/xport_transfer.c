/* SPDX-License-Identifier: MIT */
/*
 * xport_check transfer and fence (xport_check.c has the overview).
 *
 * transfer: the source writes a seeded region in runs of mixed sizes, some
 * backwards, some above the tcp frame limit, over every channel and fences
 * each; the destination compares checksums and every byte of every slice.
 * fence: round after round, at each fence the destination must find every
 * byte written before it in place.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <xxhash.h>

#include "bytes.h"
#include "clock.h"
#include "th_check.h"
#include "th_content.h"
#include "xport_check.h"

/* ---- transfer ---------------------------------------------------------------- */

struct xfer_ctx {
	struct rdmig_conn *c;
	uint8_t *mem;
	uint64_t size;
	unsigned ch, nch;
	uint32_t lreg, rreg;
	uint64_t seed;
	struct rdmig_fence fence;
	int ret;
	struct rdmig_err err;
};

static void *src_chan_thread(void *arg)
{
	struct xfer_ctx *x = arg;
	struct th_rng r = {x->seed ^ (0x1000ULL + x->ch)};
	struct rdmig_run runs[4];
	uint64_t lo, hi, pos;

	slice_of(x->size, x->nch, x->ch, &lo, &hi);
	pos = lo;
	while (pos < hi && !x->ret) {
		unsigned k = (unsigned)th_rng_range(&r, 1, 4), n = 0;
		/* Now and then (and first on channel 0) one run above 16 MiB, the tcp frame limit.
		 */
		bool big = (pos == lo && x->ch == 0) || th_rng_range(&r, 0, 31) == 0;

		if (big)
			k = 1;
		while (n < k && pos < hi) {
			uint64_t len = big ? th_rng_range(&r, 4097, 10240) * 4096 /* 16..40 MiB */
					   : th_rng_range(&r, 16, 256) * 4096; /* 64 KiB .. 1 MiB */

			if (len > hi - pos)
				len = hi - pos;
			runs[n++] = (struct rdmig_run){
			    .lreg = x->lreg, .rreg = x->rreg, .loff = pos, .roff = pos, .len = len};
			pos += len;
		}
		/* Half the batches backwards: runs that are not contiguous in order. */
		if (n > 1 && (th_rng_next(&r) & 1)) {
			for (unsigned i = 0; i < n / 2; i++) {
				struct rdmig_run t = runs[i];

				runs[i] = runs[n - 1 - i];
				runs[n - 1 - i] = t;
			}
		}
		x->ret = rdmig_write(x->c, x->ch, runs, n, &x->err);
	}
	if (!x->ret)
		x->ret = rdmig_fence(x->c, x->ch, 1, &x->err);
	return NULL;
}

static void *dst_chan_thread(void *arg)
{
	struct xfer_ctx *x = arg;

	x->ret = rdmig_wait_fence(x->c, x->ch, WAIT_MS, &x->fence, &x->err);
	return NULL;
}

/* Run fn on every channel in its own thread; false if a thread failed. */
static bool run_channels(struct xfer_ctx *xs, unsigned nch, void *(*fn)(void *), const char *what)
{
	pthread_t th[RDMIG_MAX_CHANNELS];
	bool ok = true;

	for (unsigned i = 0; i < nch; i++) {
		if (pthread_create(&th[i], NULL, fn, &xs[i])) {
			TH_CHECK(false, "%s: pthread_create failed", what);
			xs[i].ret = -EAGAIN;
			nch = i;
			ok = false;
			break;
		}
	}
	for (unsigned i = 0; i < nch; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < nch; i++)
		if (xs[i].ret)
			ok = TH_CHECK(false, "%s on channel %u: %s", what, i,
				      rdmig_err_str(&xs[i].err));
	return ok;
}

bool src_transfer(struct rdmig_conn *c, uint64_t size, uint64_t seed)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	const struct rdmig_remote_region *rr;
	struct xfer_ctx xs[RDMIG_MAX_CHANNELS];
	unsigned nch = rdmig_conn_channels(c);
	uint8_t msg[24], verdict[8];
	uint16_t type = 0;
	uint32_t lreg;
	size_t len = 0;
	double t0, t1;
	uint8_t *mem;
	uint64_t sum;
	bool ok = false;
	int ret;

	mem = th_map(size);
	t0 = rdmig_now_s();
	content_fill(mem, 0, size, seed);
	th_note("info: filled %" PRIu64 " bytes in %.2f s", size, rdmig_now_s() - t0);
	ret = rdmig_reg(c, "ram", mem, size, 0, &lreg, &e);
	if (!TH_CHECK_CALL(ret, &e, "registering the source region"))
		goto out_unmap;
	ret = rdmig_recv_layout(c, WAIT_MS, &e);
	if (!TH_CHECK_CALL(ret, &e, "receiving the layout"))
		goto out_unmap;
	rr = find_remote(c, "ram");
	if (!TH_CHECK(rr && rr->len == size,
		      "layout has region 'ram' of %" PRIu64 " bytes (got %s %" PRIu64 ")", size,
		      rr ? "length" : "no such region", rr ? rr->len : 0))
		goto out_unmap;

	memset(xs, 0, sizeof(xs));
	for (unsigned i = 0; i < nch; i++)
		xs[i] = (struct xfer_ctx){.c = c,
					  .mem = mem,
					  .size = size,
					  .ch = i,
					  .nch = nch,
					  .lreg = lreg,
					  .rreg = rr->id,
					  .seed = seed};
	t0 = rdmig_now_s();
	if (!run_channels(xs, nch, src_chan_thread, "write+fence"))
		goto out_unmap;
	t1 = rdmig_now_s();
	TH_CHECK(true,
		 "wrote %" PRIu64 " bytes over %u channels and fenced each: %.3f s (%.0f MiB/s, "
		 "information only)",
		 size, nch, t1 - t0, mib_s(size, t1 - t0));

	sum = XXH64(mem, size, 0);
	rdmig_put_be64(msg, seed);
	rdmig_put_be64(msg + 8, size);
	rdmig_put_be64(msg + 16, sum);
	ret = rdmig_ctrl_send(c, MSG_SUM, msg, sizeof(msg), &e);
	if (!TH_CHECK_CALL(ret, &e, "sending the checksum"))
		goto out_unmap;
	ret = rdmig_ctrl_recv(c, &type, verdict, sizeof(verdict), &len, WAIT_MS, &e);
	if (!TH_CHECK_CALL(ret, &e, "waiting for the destination's verdict"))
		goto out_unmap;
	ok = TH_CHECK(type == MSG_VERDICT && len == 1 && verdict[0] == 1,
		      "destination confirms the transfer (source xxh64 %016" PRIx64 ")", sum);
	print_stats(c);
	{
		struct rdmig_xport_stats st;

		rdmig_xport_stats(c, &st);
		if (g_opt.compress)
			ok = TH_CHECK(st.bytes_on_wire < st.bytes_written,
				      "zstd level %d: %" PRIu64 " bytes on the wire < %" PRIu64
				      " written",
				      g_opt.compress, st.bytes_on_wire, st.bytes_written) &&
			     ok;
		else
			ok = TH_CHECK(st.bytes_on_wire == st.bytes_written,
				      "uncompressed: %" PRIu64 " bytes on the wire == %" PRIu64
				      " written",
				      st.bytes_on_wire, st.bytes_written) &&
			     ok;
	}
out_unmap:
	munmap(mem, size);
	return ok;
}

bool dst_transfer(struct rdmig_conn *c, uint64_t size, uint64_t seed)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct xfer_ctx xs[RDMIG_MAX_CHANNELS];
	unsigned nch = rdmig_conn_channels(c);
	uint8_t msg[64], verdict;
	uint16_t type = 0;
	size_t len = 0;
	uint32_t id;
	double t0, t1;
	uint8_t *mem;
	uint64_t sum, peer_sum, bad, first, bad_slices = 0;
	bool ok = false;
	int ret;

	mem = th_map(size);
	ret = rdmig_reg(c, "ram", mem, size, RDMIG_REG_REMOTE_WRITE, &id, &e);
	if (!TH_CHECK_CALL(ret, &e, "registering the destination region"))
		goto out_unmap;
	ret = rdmig_expose(c, &e);
	if (!TH_CHECK_CALL(ret, &e, "exposing the layout"))
		goto out_unmap;

	memset(xs, 0, sizeof(xs));
	for (unsigned i = 0; i < nch; i++)
		xs[i] = (struct xfer_ctx){.c = c, .mem = mem, .size = size, .ch = i, .nch = nch};
	t0 = rdmig_now_s();
	if (!run_channels(xs, nch, dst_chan_thread, "wait_fence"))
		goto out_unmap;
	t1 = rdmig_now_s();
	for (unsigned i = 0; i < nch; i++) {
		uint64_t lo, hi;

		slice_of(size, nch, i, &lo, &hi);
		TH_CHECK(xs[i].fence.seq == 1 && xs[i].fence.bytes == hi - lo,
			 "fence of channel %u: seq %" PRIu64 " (want 1), %" PRIu64
			 " bytes (want %" PRIu64 ")",
			 i, xs[i].fence.seq, xs[i].fence.bytes, hi - lo);
	}
	th_note("info: all fences in %.3f s after expose (%.0f MiB/s)", t1 - t0,
		mib_s(size, t1 - t0));

	ret = rdmig_ctrl_recv(c, &type, msg, sizeof(msg), &len, WAIT_MS, &e);
	if (!TH_CHECK_CALL(ret, &e, "receiving the source checksum"))
		goto out_unmap;
	if (!TH_CHECK(type == MSG_SUM && len == 24, "checksum message (type %u, %zu bytes)", type,
		      len))
		goto out_unmap;
	peer_sum = rdmig_get_be64(msg + 16);
	TH_CHECK(rdmig_get_be64(msg) == seed && rdmig_get_be64(msg + 8) == size,
		 "source used seed and size %016" PRIx64 " / %" PRIu64, rdmig_get_be64(msg),
		 rdmig_get_be64(msg + 8));
	sum = XXH64(mem, size, 0);
	ok = TH_CHECK(sum == peer_sum, "xxh64 destination %016" PRIx64 " == source %016" PRIx64,
		      sum, peer_sum);
	for (unsigned i = 0; i < nch; i++) {
		uint64_t lo, hi;

		slice_of(size, nch, i, &lo, &hi);
		bad = content_compare(mem + lo, lo, hi - lo, seed, &first);
		if (bad) {
			bad_slices++;
			TH_CHECK(false,
				 "slice of channel %u [0x%" PRIx64 ", 0x%" PRIx64 "): %" PRIu64
				 " bad pages, first bad byte at 0x%" PRIx64,
				 i, lo, hi, bad, first);
		}
	}
	ok = TH_CHECK(!bad_slices, "byte-for-byte comparison of all %u slices", nch) && ok;
	verdict = ok ? 1 : 0;
	ret = rdmig_ctrl_send(c, MSG_VERDICT, &verdict, 1, &e);
	TH_CHECK_CALL(ret, &e, "sending the verdict");
	print_stats(c);
out_unmap:
	rdmig_revoke(c);
	munmap(mem, size);
	return ok;
}

/* ---- fence ----------------------------------------------------------------- */

static uint64_t round_key(uint64_t seed, unsigned round, unsigned ch)
{
	return th_mix64(seed ^ ((uint64_t)round << 40) ^ ((uint64_t)ch << 20) ^ 0xfe9ce);
}

struct fence_shared {
	pthread_mutex_t lock; /* ctrl send (destination) / acked[] (source) */
	pthread_cond_t cond;
	unsigned acked[RDMIG_MAX_CHANNELS];
	bool bad[RDMIG_MAX_CHANNELS];
	bool dead;
};

struct fence_ctx {
	struct rdmig_conn *c;
	struct fence_shared *sh;
	uint8_t *mem;
	uint64_t size;
	unsigned ch, nch, rounds;
	uint32_t lreg, rreg;
	uint64_t seed;
	bool ok;
	char why[512];
};

/* Source: write every round's pattern over the channel's slice, fence, wait for the check. */
static void *fence_src_thread(void *arg)
{
	struct fence_ctx *x = arg;
	struct th_rng r = {x->seed ^ (0x2000ULL + x->ch)};
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint64_t lo, hi;
	int ret = 0;

	slice_of(x->size, x->nch, x->ch, &lo, &hi);
	x->ok = true;
	for (unsigned round = 1; round <= x->rounds && x->ok; round++) {
		uint64_t pos = lo;
		struct timespec ts;

		content_fill(x->mem + lo, lo, hi - lo, round_key(x->seed, round, x->ch));
		while (pos < hi && !ret) {
			struct rdmig_run runs[8];
			unsigned k = (unsigned)th_rng_range(&r, 1, 8), n = 0;

			while (n < k && pos < hi) {
				/* Any length, 1 byte .. 256 KiB, not page aligned. */
				uint64_t len = th_rng_range(&r, 1, 256 * 1024);

				if (len > hi - pos)
					len = hi - pos;
				runs[n++] = (struct rdmig_run){.lreg = x->lreg,
							       .rreg = x->rreg,
							       .loff = pos,
							       .roff = pos,
							       .len = len};
				pos += len;
			}
			ret = rdmig_write(x->c, x->ch, runs, n, &e);
		}
		if (!ret)
			ret = rdmig_fence(x->c, x->ch, round, &e);
		if (ret) {
			snprintf(x->why, sizeof(x->why), "round %u: %s", round, rdmig_err_str(&e));
			x->ok = false;
			break;
		}
		/* The next round may only overwrite the slice once the destination checked it. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += WAIT_MS / 1000;
		pthread_mutex_lock(&x->sh->lock);
		while (x->sh->acked[x->ch] < round && !x->sh->dead) {
			if (pthread_cond_timedwait(&x->sh->cond, &x->sh->lock, &ts) == ETIMEDOUT) {
				snprintf(x->why, sizeof(x->why),
					 "round %u: no check result within %d s", round,
					 WAIT_MS / 1000);
				x->ok = false;
				break;
			}
		}
		if (x->ok && x->sh->acked[x->ch] < round) {
			snprintf(x->why, sizeof(x->why), "round %u: control channel failed", round);
			x->ok = false;
		}
		if (x->ok && x->sh->bad[x->ch]) {
			snprintf(x->why, sizeof(x->why),
				 "round %u: destination found wrong bytes at the fence", round);
			x->ok = false;
		}
		pthread_mutex_unlock(&x->sh->lock);
	}
	return NULL;
}

struct ack_ctx {
	struct rdmig_conn *c;
	struct fence_shared *sh;
	unsigned expect;
	bool ok;
	struct rdmig_err err;
};

/* Source: the one control receiver, dispatching check results to the channel threads. */
static void *fence_ack_thread(void *arg)
{
	struct ack_ctx *a = arg;
	uint8_t m[16];
	uint16_t type;
	size_t len;

	a->ok = true;
	for (unsigned got = 0; got < a->expect;) {
		int ret = rdmig_ctrl_recv(a->c, &type, m, sizeof(m), &len, WAIT_MS, &a->err);

		if (ret || type != MSG_ACK || len != 9) {
			if (!ret)
				rdmig_seterr(&a->err, -EPROTO, "unexpected message type %u", type);
			a->ok = false;
			break;
		}
		unsigned ch = (unsigned)rdmig_get_be64(m) >> 16,
			 round = (unsigned)rdmig_get_be64(m) & 0xffff;

		pthread_mutex_lock(&a->sh->lock);
		if (ch < RDMIG_MAX_CHANNELS) {
			a->sh->acked[ch] = round;
			if (!m[8])
				a->sh->bad[ch] = true;
		}
		pthread_cond_broadcast(&a->sh->cond);
		pthread_mutex_unlock(&a->sh->lock);
		got++;
	}
	pthread_mutex_lock(&a->sh->lock);
	a->sh->dead = !a->ok;
	pthread_cond_broadcast(&a->sh->cond);
	pthread_mutex_unlock(&a->sh->lock);
	return NULL;
}

/* Destination: at each fence, the channel's whole slice must hold that round's pattern. */
static void *fence_dst_thread(void *arg)
{
	struct fence_ctx *x = arg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint64_t lo, hi, first, bad;
	struct rdmig_fence f;
	uint8_t m[9];
	int ret;

	slice_of(x->size, x->nch, x->ch, &lo, &hi);
	x->ok = true;
	for (unsigned round = 1; round <= x->rounds; round++) {
		ret = rdmig_wait_fence(x->c, x->ch, WAIT_MS, &f, &e);
		if (ret) {
			snprintf(x->why, sizeof(x->why), "round %u: %s", round, rdmig_err_str(&e));
			x->ok = false;
			return NULL;
		}
		bad = content_compare(x->mem + lo, lo, hi - lo, round_key(x->seed, round, x->ch),
				      &first);
		if (f.seq != round || f.bytes != hi - lo || bad) {
			snprintf(x->why, sizeof(x->why),
				 "round %u: fence seq %" PRIu64 ", %" PRIu64 " bytes (want %" PRIu64
				 "); %" PRIu64 " pages not yet correct, first bad byte 0x%" PRIx64,
				 round, f.seq, f.bytes, hi - lo, bad, first);
			x->ok = false;
		}
		rdmig_put_be64(m, ((uint64_t)x->ch << 16) | round);
		m[8] = x->ok ? 1 : 0;
		pthread_mutex_lock(&x->sh->lock);
		ret = rdmig_ctrl_send(x->c, MSG_ACK, m, sizeof(m), &e);
		pthread_mutex_unlock(&x->sh->lock);
		if (ret) {
			snprintf(x->why, sizeof(x->why), "round %u: sending the result: %s", round,
				 rdmig_err_str(&e));
			x->ok = false;
		}
		if (!x->ok)
			return NULL;
	}
	return NULL;
}

bool fence_run(struct rdmig_conn *c, bool source)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct fence_shared sh;
	struct fence_ctx xs[RDMIG_MAX_CHANNELS];
	pthread_t th[RDMIG_MAX_CHANNELS], ackth;
	struct ack_ctx ack = {0};
	unsigned nch = rdmig_conn_channels(c), started = 0;
	uint64_t size = g_opt.size;
	uint32_t lreg = 0, rreg = 0;
	bool ok = true, ack_started = false;
	uint8_t *mem;
	int ret;

	mem = th_map(size);
	memset(&sh, 0, sizeof(sh));
	pthread_mutex_init(&sh.lock, NULL);
	pthread_cond_init(&sh.cond, NULL);
	if (source) {
		const struct rdmig_remote_region *rr;

		ret = rdmig_reg(c, "ram", mem, size, 0, &lreg, &e);
		if (!TH_CHECK_CALL(ret, &e, "registering the source region"))
			goto out;
		ret = rdmig_recv_layout(c, WAIT_MS, &e);
		if (!TH_CHECK_CALL(ret, &e, "receiving the layout"))
			goto out;
		rr = find_remote(c, "ram");
		if (!TH_CHECK(rr && rr->len == size, "layout has region 'ram' of %" PRIu64 " bytes",
			      size))
			goto out;
		rreg = rr->id;
		ack = (struct ack_ctx){.c = c, .sh = &sh, .expect = nch * g_opt.rounds};
		if (pthread_create(&ackth, NULL, fence_ack_thread, &ack)) {
			TH_CHECK(false, "pthread_create failed");
			goto out;
		}
		ack_started = true;
	} else {
		ret = rdmig_reg(c, "ram", mem, size, RDMIG_REG_REMOTE_WRITE, &lreg, &e);
		if (!TH_CHECK_CALL(ret, &e, "registering the destination region"))
			goto out;
		ret = rdmig_expose(c, &e);
		if (!TH_CHECK_CALL(ret, &e, "exposing the layout"))
			goto out;
	}
	for (unsigned i = 0; i < nch; i++) {
		xs[i] = (struct fence_ctx){.c = c,
					   .sh = &sh,
					   .mem = mem,
					   .size = size,
					   .ch = i,
					   .nch = nch,
					   .rounds = g_opt.rounds,
					   .lreg = lreg,
					   .rreg = rreg,
					   .seed = g_opt.seed};
		if (pthread_create(&th[i], NULL, source ? fence_src_thread : fence_dst_thread,
				   &xs[i])) {
			TH_CHECK(false, "pthread_create failed");
			ok = false;
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		if (!xs[i].ok)
			ok = false;
	}
	if (ack_started) {
		if (started < nch || !ok) {
			/* The ack thread would wait for results that never come. */
			rdmig_conn_abort(c, -ECANCELED, "test aborted");
		}
		pthread_join(ackth, NULL);
		if (!ack.ok)
			ok =
			    TH_CHECK(false, "receiving check results: %s", rdmig_err_str(&ack.err));
	}
	for (unsigned i = 0; i < started; i++)
		if (!xs[i].ok)
			ok = TH_CHECK(false, "channel %u: %s", i, xs[i].why);
	if (ok && started == nch)
		TH_CHECK(true,
			 "%u rounds x %u channels: at every fence, every byte written before it "
			 "was in place",
			 g_opt.rounds, nch);
	if (ok)
		barrier(c);
	print_stats(c);
out:
	rdmig_revoke(c);
	pthread_cond_destroy(&sh.cond);
	pthread_mutex_destroy(&sh.lock);
	munmap(mem, size);
	return ok && !th_failures();
}
