/* SPDX-License-Identifier: MIT */
/*
 * rdmig bw's measurement. The server registers channels * size bytes for
 * remote write and exposes them; each client channel thread writes its
 * `size`-byte slot over and over for the duration, keeping up to `depth`
 * writes in flight, then fences. The clock stops when every fence has been
 * acknowledged, so the average counts only data that landed; the peak is
 * the fullest 100 ms window of writes handed to the transport once the
 * send queues are full.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bw.h"
#include "bytes.h"
#include "clock.h"

/* Application control messages of the bw protocol. */
enum {
	BW_MSG_PARAMS = 0x100, /* client -> server: size, channels, verify, seed, flags */
	BW_MSG_DONE = 0x101,   /* client -> server: all channels fenced */
	BW_MSG_RESULT = 0x102, /* server -> client: cpu time, verify result */
};

#define BW_PARAMS_LEN 32
#define BW_RESULT_LEN 24
#define BW_TIMEOUT_MS 120000
/* PARAMS flag: another message size follows on a new connection. */
#define BW_FLAG_MORE 0x1ull
/* Peak bandwidth window, and how often the sampler looks. */
#define BW_WINDOW_S 0.1
#define BW_POLL_US  10000

struct bw_params {
	uint64_t size;
	uint32_t channels;
	uint32_t verify;
	uint64_t seed;
	uint64_t flags;
};

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* xorshift64*: the pattern both sides regenerate for --verify. */
static void fill_pattern(uint8_t *p, uint64_t len, uint64_t seed)
{
	uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ull;

	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		v = x * 0x2545f4914f6cdd1dull;
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

static void *map_region(uint64_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* ---- server ------------------------------------------------------------ */

struct fence_waiter {
	struct rdmig_conn *c;
	unsigned chan;
	struct rdmig_err err;
	int ret;
};

static void *fence_thread(void *arg)
{
	struct fence_waiter *w = arg;
	struct rdmig_fence f;

	w->ret = rdmig_wait_fence(w->c, w->chan, BW_TIMEOUT_MS * 10, &f, &w->err);
	if (w->ret)
		rdmig_conn_abort(w->c, w->ret, rdmig_err_str(&w->err));
	return NULL;
}

static int decode_params(const uint8_t *p, size_t len, struct bw_params *bp, struct rdmig_err *err)
{
	if (len != BW_PARAMS_LEN)
		return rdmig_seterr(err, -EPROTO, "bw PARAMS of %zu bytes, expected %d", len,
				    BW_PARAMS_LEN);
	bp->size = rdmig_get_be64(p);
	bp->channels = rdmig_get_be32(p + 8);
	bp->verify = rdmig_get_be32(p + 12);
	bp->seed = rdmig_get_be64(p + 16);
	bp->flags = rdmig_get_be64(p + 24);
	if (!bp->size || bp->size > BW_MAX_SIZE)
		return rdmig_seterr(err, -EPROTO, "bw PARAMS: size %" PRIu64 " out of range",
				    bp->size);
	if (!bp->channels || bp->channels > RDMIG_MAX_CHANNELS)
		return rdmig_seterr(err, -EPROTO, "bw PARAMS: %u channels out of range",
				    bp->channels);
	if (bp->size * bp->channels > BW_MAX_TOTAL)
		return rdmig_seterr(err, -EPROTO,
				    "bw PARAMS: %" PRIu64 " bytes in all exceeds 4 GiB",
				    bp->size * bp->channels);
	if (bp->flags & ~BW_FLAG_MORE)
		return rdmig_seterr(err, -EPROTO, "bw PARAMS: unknown flags 0x%" PRIx64, bp->flags);
	return 0;
}

/* Wait for every channel's fence: the client's writes have all landed. */
static int wait_fences(struct rdmig_conn *c, unsigned channels, struct rdmig_err *err)
{
	struct fence_waiter w[RDMIG_MAX_CHANNELS];
	pthread_t th[RDMIG_MAX_CHANNELS];
	unsigned started = 0;
	int ret = 0;

	for (unsigned i = 0; i < channels; i++) {
		w[i] = (struct fence_waiter){.c = c, .chan = i, .err = RDMIG_ERR_INIT};
		if (pthread_create(&th[i], NULL, fence_thread, &w[i])) {
			ret = rdmig_seterr(err, -EAGAIN, "cannot start a receive thread");
			rdmig_conn_abort(c, ret, "server out of threads");
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		if (w[i].ret && !ret) {
			*err = w[i].err;
			ret = w[i].ret;
		}
	}
	return ret;
}

/* First byte of the region that differs from the pattern, UINT64_MAX if none. */
static int check_pattern(const uint8_t *region, const struct bw_params *bp, uint64_t *bad,
			 struct rdmig_err *err)
{
	uint8_t *expect = map_region(bp->size);

	*bad = UINT64_MAX;
	if (!expect)
		return rdmig_seterr(err, -ENOMEM, "cannot allocate the verify pattern");
	fill_pattern(expect, bp->size, bp->seed);
	for (unsigned ch = 0; ch < bp->channels && *bad == UINT64_MAX; ch++)
		for (uint64_t i = 0; i < bp->size; i++)
			if (region[ch * bp->size + i] != expect[i]) {
				*bad = ch * bp->size + i;
				break;
			}
	munmap(expect, bp->size);
	return 0;
}

static int serve_one(struct rdmig_conn *c, bool *more, struct rdmig_err *err)
{
	uint8_t buf[64], res[BW_RESULT_LEN];
	struct bw_params bp = {0};
	uint8_t *region = NULL;
	uint64_t total, bad = UINT64_MAX;
	double cpu0;
	uint16_t type;
	uint32_t id;
	size_t len;
	int ret;

	*more = false;
	ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, BW_TIMEOUT_MS, err);
	if (ret)
		return ret;
	if (type != BW_MSG_PARAMS)
		return rdmig_seterr(err, -EPROTO, "expected bw PARAMS, got message type 0x%x",
				    type);
	ret = decode_params(buf, len, &bp, err);
	if (ret || bp.channels != rdmig_conn_channels(c)) {
		if (!ret)
			ret = rdmig_seterr(err, -EPROTO,
					   "bw PARAMS: %u channels but connection has %u",
					   bp.channels, rdmig_conn_channels(c));
		rdmig_ctrl_send_error(c, ret, err->msg, NULL);
		return ret;
	}
	*more = bp.flags & BW_FLAG_MORE;
	cpu0 = cpu_s();
	total = bp.size * bp.channels;
	region = map_region(total);
	if (!region) {
		ret = rdmig_seterr(err, -ENOMEM, "cannot allocate %" PRIu64 " bytes", total);
		rdmig_ctrl_send_error(c, ret, err->msg, NULL);
		return ret;
	}
	ret = rdmig_reg(c, "bw", region, total, RDMIG_REG_REMOTE_WRITE, &id, err);
	if (ret) {
		rdmig_ctrl_send_error(c, ret, err->msg, NULL);
		goto out_unmap;
	}
	ret = rdmig_expose(c, err);
	if (!ret)
		ret = wait_fences(c, bp.channels, err);
	if (!ret)
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, BW_TIMEOUT_MS, err);
	if (ret)
		goto out_unmap;
	if (type != BW_MSG_DONE) {
		ret = rdmig_seterr(err, -EPROTO, "expected bw DONE, got message type 0x%x", type);
		goto out_unmap;
	}
	if (bp.verify && (ret = check_pattern(region, &bp, &bad, err)))
		goto out_unmap;
	rdmig_put_be64(res, (uint64_t)((cpu_s() - cpu0) * 1e6));
	rdmig_put_be64(res + 8, bp.verify ? (bad == UINT64_MAX ? 1 : 2) : 0);
	rdmig_put_be64(res + 16, bad);
	ret = rdmig_ctrl_send(c, BW_MSG_RESULT, res, sizeof(res), err);
	if (!ret && bp.verify)
		fprintf(stderr, "rdmig bw: %" PRIu64 " bytes: verify %s\n", bp.size,
			bad == UINT64_MAX ? "ok" : "MISMATCH");
out_unmap:
	rdmig_revoke(c);
	munmap(region, total);
	return ret;
}

int bw_serve(const struct bw_opts *o)
{
	struct rdmig_xport_cfg cfg = o->cfg;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l;
	struct rdmig_conn *c;
	bool more = false;
	int ret;

	cfg.channels = RDMIG_MAX_CHANNELS;
	ret = rdmig_listen(&cfg, &l, &err);
	if (ret) {
		fprintf(stderr, "rdmig bw: %s\n", rdmig_err_str(&err));
		return RDMIG_EXIT_FAIL;
	}
	fprintf(stderr, "rdmig bw: listening on %s port %u (%s)\n", o->host[0] ? o->host : "*",
		rdmig_listener_port(l), rdmig_backend_name(cfg.backend));
	for (;;) {
		rdmig_err_clear(&err);
		/* The next size of a sweep comes at once; a client that died does not. */
		ret = rdmig_accept(l, more ? BW_TIMEOUT_MS : -1, &c, &err);
		if (ret) {
			fprintf(stderr, "rdmig bw: accept: %s\n", rdmig_err_str(&err));
			if (o->once)
				break;
			more = false;
			continue;
		}
		ret = serve_one(c, &more, &err);
		if (ret)
			fprintf(stderr, "rdmig bw: %s\n", rdmig_err_str(&err));
		rdmig_conn_destroy(c);
		if (ret)
			more = false;
		if (o->once && !more)
			break;
	}
	rdmig_listener_destroy(l);
	return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}

/* ---- client ------------------------------------------------------------ */

struct writer {
	struct rdmig_conn *c;
	unsigned chan;
	uint32_t lreg, rreg;
	uint64_t size;
	double deadline;
	uint64_t msgs; /* read by the peak sampler while the writer runs */
	bool done;     /* the same */
	int ret;
	struct rdmig_err err;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;
	struct rdmig_run run = {
	    .lreg = w->lreg,
	    .rreg = w->rreg,
	    .loff = w->chan * w->size,
	    .roff = w->chan * w->size,
	    .len = w->size,
	};
	uint64_t msgs = 0;

	/* Check the clock every 16 writes: a syscall per write would show in the figure. */
	do {
		for (int i = 0; i < 16; i++) {
			w->ret = rdmig_write(w->c, w->chan, &run, 1, &w->err);
			if (w->ret)
				goto out;
			__atomic_store_n(&w->msgs, ++msgs, __ATOMIC_RELAXED);
		}
	} while (rdmig_now_s() < w->deadline);
	w->ret = rdmig_fence(w->c, w->chan, 1, &w->err);
out:
	if (w->ret)
		rdmig_conn_abort(w->c, w->ret, rdmig_err_str(&w->err));
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static uint64_t posted(struct writer *w, unsigned n)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < n; i++)
		sum += __atomic_load_n(&w[i].msgs, __ATOMIC_RELAXED);
	return sum;
}

static bool all_done(struct writer *w, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!__atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE))
			return false;
	return true;
}

/*
 * Bytes/s of the fullest window of posted writes while the writers run:
 * windows of BW_WINDOW_S after the first, which only fills the send queues
 * (posts are instant until `depth` are in flight, then they follow the
 * completions), the last one ending when the writers are all done (counted
 * from half a window on). -1 when the run is too short for one.
 */
static double sample_peak(struct writer *w, unsigned n, double t0)
{
	double peak = -1, t_prev = t0, t, rate;
	uint64_t prev = 0, now;
	bool done, first = true;

	for (;;) {
		done = all_done(w, n);
		t = rdmig_now_s();
		if (t - t_prev >= BW_WINDOW_S || (done && t - t_prev >= BW_WINDOW_S / 2)) {
			now = posted(w, n);
			rate = (double)(now - prev) * (double)w[0].size / (t - t_prev);
			if (!first && rate > peak)
				peak = rate;
			first = false;
			prev = now;
			t_prev = t;
		}
		if (done)
			return peak;
		usleep(BW_POLL_US);
	}
}

/* Write for the duration on every channel; r->msgs, secs, peak, client CPU. */
static int run_writers(struct rdmig_conn *c, const struct bw_opts *o, uint64_t size, uint32_t lreg,
		       struct bw_result *r, struct rdmig_err *err)
{
	struct writer w[RDMIG_MAX_CHANNELS];
	pthread_t th[RDMIG_MAX_CHANNELS];
	unsigned started = 0;
	double t0, cpu0;
	int ret = 0;

	cpu0 = cpu_s();
	t0 = rdmig_now_s();
	for (unsigned i = 0; i < o->channels; i++) {
		w[i] = (struct writer){.c = c,
				       .chan = i,
				       .lreg = lreg,
				       .rreg = rdmig_remote_get(c, 0)->id,
				       .size = size,
				       .deadline = t0 + o->duration,
				       .err = RDMIG_ERR_INIT};
		if (pthread_create(&th[i], NULL, writer_thread, &w[i])) {
			ret = rdmig_seterr(err, -EAGAIN, "cannot start a writer thread");
			rdmig_conn_abort(c, ret, "client out of threads");
			break;
		}
		started++;
	}
	r->peak_bps = started ? sample_peak(w, started, t0) : -1;
	for (unsigned i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		r->msgs += w[i].msgs;
		if (w[i].ret && !ret) {
			*err = w[i].err;
			ret = w[i].ret;
		}
	}
	r->secs = rdmig_now_s() - t0;
	r->src_cpu_s = cpu_s() - cpu0;
	return ret;
}

/* PARAMS out, the region registered, the server's layout in. */
static int start(struct rdmig_conn *c, const struct bw_opts *o, uint64_t size, bool more,
		 uint8_t *region, uint32_t *lreg, struct rdmig_err *err)
{
	uint64_t total = size * o->channels;
	uint8_t buf[BW_PARAMS_LEN];
	int ret;

	rdmig_put_be64(buf, size);
	rdmig_put_be32(buf + 8, o->channels);
	rdmig_put_be32(buf + 12, o->verify);
	rdmig_put_be64(buf + 16, o->seed);
	rdmig_put_be64(buf + 24, more ? BW_FLAG_MORE : 0);
	ret = rdmig_ctrl_send(c, BW_MSG_PARAMS, buf, sizeof(buf), err);
	if (!ret)
		ret = rdmig_reg(c, "bw", region, total, 0, lreg, err);
	if (!ret)
		ret = rdmig_recv_layout(c, BW_TIMEOUT_MS, err);
	if (!ret && (rdmig_remote_count(c) != 1 || rdmig_remote_get(c, 0)->len != total))
		ret = rdmig_seterr(err, -EPROTO, "server exposed an unexpected layout");
	return ret;
}

/* DONE out, RESULT in: the server's CPU time and verdict. */
static int finish(struct rdmig_conn *c, struct bw_result *r, struct rdmig_err *err)
{
	uint8_t res[64];
	uint16_t type;
	size_t len;
	int ret;

	ret = rdmig_ctrl_send(c, BW_MSG_DONE, NULL, 0, err);
	if (!ret)
		ret = rdmig_ctrl_recv(c, &type, res, sizeof(res), &len, BW_TIMEOUT_MS, err);
	if (ret)
		return ret;
	if (type != BW_MSG_RESULT || len != BW_RESULT_LEN)
		return rdmig_seterr(err, -EPROTO, "malformed bw RESULT from server");
	r->dst_cpu_s = (double)rdmig_get_be64(res) / 1e6;
	r->verify = (int)rdmig_get_be64(res + 8);
	r->bad = rdmig_get_be64(res + 16);
	if (r->verify < 0 || r->verify > 2)
		return rdmig_seterr(err, -EPROTO, "bw RESULT: unknown verify state %d", r->verify);
	return 0;
}

int bw_measure(const struct bw_opts *o, uint64_t size, bool more, struct bw_result *r,
	       struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = o->cfg;
	uint64_t total = size * o->channels;
	struct rdmig_xport_stats xs;
	struct rdmig_conn *c = NULL;
	uint8_t *region;
	uint32_t lreg;
	int ret;

	memset(r, 0, sizeof(*r));
	r->size = size;
	cfg.channels = o->channels;
	cfg.compress_level = o->compress;
	region = map_region(total);
	if (!region)
		return rdmig_seterr(err, -ENOMEM, "cannot allocate %" PRIu64 " bytes", total);
	for (unsigned ch = 0; ch < o->channels; ch++)
		fill_pattern(region + ch * size, size, o->seed);
	ret = rdmig_connect(&cfg, &c, err);
	if (!ret)
		ret = start(c, o, size, more, region, &lreg, err);
	if (!ret)
		ret = run_writers(c, o, size, lreg, r, err);
	if (!ret)
		ret = finish(c, r, err);
	if (!ret) {
		rdmig_xport_stats(c, &xs);
		r->bytes_on_wire = xs.bytes_on_wire;
	}
	if (!ret && r->verify == 2)
		ret = rdmig_seterr(err, -EIO,
				   "verify failed: first wrong byte at offset %" PRIu64
				   " of the destination region (%" PRIu64 "-byte messages)",
				   r->bad, size);
	rdmig_conn_destroy(c);
	munmap(region, total);
	return ret;
}
