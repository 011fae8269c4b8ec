/* SPDX-License-Identifier: MIT */
/*
 * xport_check: end-to-end checks of one transport backend through the
 * public API (rdmig/transport.h). Used by the tcp tier on loopback and by
 * the rdma tier inside a SoftRoCE VM, so everything except `malformed` goes
 * through the backend-neutral interface only.
 *
 *   xport_check transfer  --backend B [--size 256M] [--channels 4] [--seed S] [--host H]
 *                         [--compress LEVEL]  (tcp: 3 in 4 pages zero, the rest random;
 *                                             checks fewer bytes on the wire than written)
 *   xport_check fence     --backend B [--size 64M] [--channels 4] [--rounds 8]
 *   xport_check stream    --backend B [--size 32M] [--channels 2]
 *   xport_check malformed [--backend tcp]
 *
 * transfer, fence and stream fork: the parent is the destination (listens on
 * HOST, port 0, and passes the port to the child through a pipe before it
 * creates any transport state), the child the source. Both print one line
 * per check, prefixed with their role; the exit status is 0 only when both
 * passed. Every wait is bounded (WAIT_MS); nothing is timed against a speed.
 * The seed is printed at the start and on every failure; --seed reproduces.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <xxhash.h>
#include <zstd.h>

#include "rdmig/transport.h"
#include "log.h"
#include "units.h"
#include "wire.h" /* malformed only: hand-built frames */

#define WAIT_MS 120000

/* Application control messages of this test. */
enum {
	MSG_SUM = 1,	 /* source -> destination: seed, size, xxh64 of the source region */
	MSG_VERDICT = 2, /* destination -> source: 1 byte, 1 = pass */
	MSG_ACK = 3,	 /* fence: destination -> source: chan, round, ok */
	MSG_DONE = 4,	 /* barrier before teardown */
};

struct opts {
	const char *mode;
	enum rdmig_backend backend;
	const char *host;
	uint64_t size;
	unsigned channels;
	unsigned rounds;
	uint64_t seed;
	int compress; /* transfer: source's zstd level, and zero pages in the content */
	bool tls;     /* tcp over TLS, keyed by a fixed test key */
};

static const char *g_role = "main";
static struct opts g_opt;
static atomic_int g_failed;

/* ---- reporting ------------------------------------------------------------ */

static bool check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool check(bool ok, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ok) {
		printf("[%s] PASS %s\n", g_role, msg);
	} else {
		printf("[%s] FAIL %s (seed 0x%016" PRIx64 ", reproduce with --seed 0x%" PRIx64
		       ")\n",
		       g_role, msg, g_opt.seed, g_opt.seed);
		atomic_store(&g_failed, 1);
	}
	return ok;
}

static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("[%s] info %s\n", g_role, msg);
}

/* A call that must succeed: reports FAIL with the transport's message. */
static bool ok_call(int ret, const struct rdmig_err *e, const char *what)
{
	if (ret >= 0)
		return true;
	return check(false, "%s: %s (%d)", what, rdmig_err_str(e), ret);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mib_s(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / (1024.0 * 1024.0) / secs : 0;
}

/* ---- deterministic content ------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Byte-addressable pseudo-random content: byte `pos` depends only on (key, pos). */
static uint64_t content_word(uint64_t key, uint64_t idx)
{
	/* With --compress, 3 in 4 pages (512 words) are zero, chosen by key and page. */
	if (g_opt.compress && mix64(key ^ ((idx >> 9) * 0xd6e8feb86659fd93ULL)) % 4)
		return 0;
	return mix64(key + (idx + 1) * 0x9e3779b97f4a7c15ULL);
}

static void content_fill(uint8_t *dst, uint64_t pos, size_t len, uint64_t key)
{
	while (len && (pos & 7)) {
		*dst++ = (uint8_t)(content_word(key, pos >> 3) >> (8 * (pos & 7)));
		pos++;
		len--;
	}
	while (len >= 8) {
		uint64_t w = content_word(key, pos >> 3);

		memcpy(dst, &w, 8); /* little-endian byte order of w, as the byte path */
		dst += 8;
		pos += 8;
		len -= 8;
	}
	while (len) {
		*dst++ = (uint8_t)(content_word(key, pos >> 3) >> (8 * (pos & 7)));
		pos++;
		len--;
	}
}

/*
 * Compare mem (which holds bytes pos..pos+len) with the content of key.
 * Returns the number of differing 4 KiB-aligned pages; *first gets the
 * first differing absolute position (UINT64_MAX if none).
 */
static uint64_t content_compare(const uint8_t *mem, uint64_t pos, uint64_t len, uint64_t key,
				uint64_t *first)
{
	enum { CHUNK = 1 << 20 };
	uint8_t *exp = malloc(CHUNK);
	uint64_t bad_pages = 0, last_bad_page = UINT64_MAX;

	*first = UINT64_MAX;
	if (!exp) {
		*first = pos;
		return 1;
	}
	for (uint64_t off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK;

		content_fill(exp, pos + off, n, key);
		if (!memcmp(exp, mem + off, n))
			continue;
		for (size_t i = 0; i < n; i++) {
			if (exp[i] == mem[off + i])
				continue;
			if (*first == UINT64_MAX)
				*first = pos + off + i;
			if ((pos + off + i) / 4096 != last_bad_page) {
				last_bad_page = (pos + off + i) / 4096;
				bad_pages++;
			}
		}
	}
	free(exp);
	return bad_pages;
}

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return mix64(r->s);
}

/* Uniform-ish in [lo, hi]. */
static uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rng_next(r) % (hi - lo + 1);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void *map_region(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		check(false, "mmap of %" PRIu64 " bytes: %s", size, strerror(errno));
		return NULL;
	}
	return p;
}

/* Slice of channel ch: [lo, hi), 4 KiB aligned except for the last. */
static void slice_of(uint64_t size, unsigned nch, unsigned ch, uint64_t *lo, uint64_t *hi)
{
	uint64_t per = (size / nch) & ~4095ULL;

	*lo = per * ch;
	*hi = ch + 1 == nch ? size : per * (ch + 1);
}

static const struct rdmig_remote_region *find_remote(struct rdmig_conn *c, const char *name)
{
	for (unsigned i = 0; i < rdmig_remote_count(c); i++) {
		const struct rdmig_remote_region *r = rdmig_remote_get(c, i);

		if (r && !strcmp(r->name, name))
			return r;
	}
	return NULL;
}

static void print_stats(struct rdmig_conn *c)
{
	struct rdmig_xport_stats s;

	rdmig_xport_stats(c, &s);
	info("stats: bytes_written %" PRIu64 " writes_posted %" PRIu64 " bytes_received %" PRIu64
	     " fences_sent %" PRIu64 " fences_received %" PRIu64 " ctrl_sent %" PRIu64
	     " ctrl_received %" PRIu64,
	     s.bytes_written, s.writes_posted, s.bytes_received, s.fences_sent, s.fences_received,
	     s.ctrl_sent, s.ctrl_received);
	if (s.bytes_written)
		info("stats: bytes_on_wire %" PRIu64 " (%.3f of bytes_written)", s.bytes_on_wire,
		     (double)s.bytes_on_wire / (double)s.bytes_written);
}

/* Both sides send DONE and wait for the peer's, so neither tears down early. */
static void barrier(struct rdmig_conn *c)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint8_t b[16];
	uint16_t type = 0;
	size_t len = 0;
	int ret;

	ret = rdmig_ctrl_send(c, MSG_DONE, "done", 4, &e);
	if (!ok_call(ret, &e, "sending DONE"))
		return;
	ret = rdmig_ctrl_recv(c, &type, b, sizeof(b), &len, WAIT_MS, &e);
	if (ok_call(ret, &e, "waiting for the peer's DONE"))
		check(type == MSG_DONE, "teardown barrier (peer sent type %u)", type);
}

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
	struct rng r = {x->seed ^ (0x1000ULL + x->ch)};
	struct rdmig_run runs[4];
	uint64_t lo, hi, pos;

	slice_of(x->size, x->nch, x->ch, &lo, &hi);
	pos = lo;
	while (pos < hi && !x->ret) {
		unsigned k = (unsigned)rng_range(&r, 1, 4), n = 0;
		/* Now and then (and first on channel 0) one run above 16 MiB, the tcp frame limit.
		 */
		bool big = (pos == lo && x->ch == 0) || rng_range(&r, 0, 31) == 0;

		if (big)
			k = 1;
		while (n < k && pos < hi) {
			uint64_t len = big ? rng_range(&r, 4097, 10240) * 4096 /* 16..40 MiB */
					   : rng_range(&r, 16, 256) * 4096;    /* 64 KiB .. 1 MiB */

			if (len > hi - pos)
				len = hi - pos;
			runs[n++] = (struct rdmig_run){
			    .lreg = x->lreg, .rreg = x->rreg, .loff = pos, .roff = pos, .len = len};
			pos += len;
		}
		/* Half the batches backwards: runs that are not contiguous in order. */
		if (n > 1 && (rng_next(&r) & 1)) {
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
			check(false, "%s: pthread_create failed", what);
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
			ok = check(false, "%s on channel %u: %s", what, i,
				   rdmig_err_str(&xs[i].err));
	return ok;
}

static bool src_transfer(struct rdmig_conn *c, uint64_t size, uint64_t seed)
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

	mem = map_region(size);
	if (!mem)
		return false;
	t0 = now_s();
	content_fill(mem, 0, size, seed);
	info("filled %" PRIu64 " bytes in %.2f s", size, now_s() - t0);
	ret = rdmig_reg(c, "ram", mem, size, 0, &lreg, &e);
	if (!ok_call(ret, &e, "registering the source region"))
		goto out_unmap;
	ret = rdmig_recv_layout(c, WAIT_MS, &e);
	if (!ok_call(ret, &e, "receiving the layout"))
		goto out_unmap;
	rr = find_remote(c, "ram");
	if (!check(rr && rr->len == size,
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
	t0 = now_s();
	if (!run_channels(xs, nch, src_chan_thread, "write+fence"))
		goto out_unmap;
	t1 = now_s();
	check(true,
	      "wrote %" PRIu64 " bytes over %u channels and fenced each: %.3f s (%.0f MiB/s, "
	      "information only)",
	      size, nch, t1 - t0, mib_s(size, t1 - t0));

	sum = XXH64(mem, size, 0);
	put64(msg, seed);
	put64(msg + 8, size);
	put64(msg + 16, sum);
	ret = rdmig_ctrl_send(c, MSG_SUM, msg, sizeof(msg), &e);
	if (!ok_call(ret, &e, "sending the checksum"))
		goto out_unmap;
	ret = rdmig_ctrl_recv(c, &type, verdict, sizeof(verdict), &len, WAIT_MS, &e);
	if (!ok_call(ret, &e, "waiting for the destination's verdict"))
		goto out_unmap;
	ok = check(type == MSG_VERDICT && len == 1 && verdict[0] == 1,
		   "destination confirms the transfer (source xxh64 %016" PRIx64 ")", sum);
	print_stats(c);
	{
		struct rdmig_xport_stats st;

		rdmig_xport_stats(c, &st);
		if (g_opt.compress)
			ok = check(st.bytes_on_wire < st.bytes_written,
				   "zstd level %d: %" PRIu64 " bytes on the wire < %" PRIu64
				   " written",
				   g_opt.compress, st.bytes_on_wire, st.bytes_written) &&
			     ok;
		else
			ok = check(st.bytes_on_wire == st.bytes_written,
				   "uncompressed: %" PRIu64 " bytes on the wire == %" PRIu64
				   " written",
				   st.bytes_on_wire, st.bytes_written) &&
			     ok;
	}
out_unmap:
	munmap(mem, size);
	return ok;
}

static bool dst_transfer(struct rdmig_conn *c, uint64_t size, uint64_t seed)
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

	mem = map_region(size);
	if (!mem)
		return false;
	ret = rdmig_reg(c, "ram", mem, size, RDMIG_REG_REMOTE_WRITE, &id, &e);
	if (!ok_call(ret, &e, "registering the destination region"))
		goto out_unmap;
	ret = rdmig_expose(c, &e);
	if (!ok_call(ret, &e, "exposing the layout"))
		goto out_unmap;

	memset(xs, 0, sizeof(xs));
	for (unsigned i = 0; i < nch; i++)
		xs[i] = (struct xfer_ctx){.c = c, .mem = mem, .size = size, .ch = i, .nch = nch};
	t0 = now_s();
	if (!run_channels(xs, nch, dst_chan_thread, "wait_fence"))
		goto out_unmap;
	t1 = now_s();
	for (unsigned i = 0; i < nch; i++) {
		uint64_t lo, hi;

		slice_of(size, nch, i, &lo, &hi);
		check(xs[i].fence.seq == 1 && xs[i].fence.bytes == hi - lo,
		      "fence of channel %u: seq %" PRIu64 " (want 1), %" PRIu64
		      " bytes (want %" PRIu64 ")",
		      i, xs[i].fence.seq, xs[i].fence.bytes, hi - lo);
	}
	info("all fences in %.3f s after expose (%.0f MiB/s)", t1 - t0, mib_s(size, t1 - t0));

	ret = rdmig_ctrl_recv(c, &type, msg, sizeof(msg), &len, WAIT_MS, &e);
	if (!ok_call(ret, &e, "receiving the source checksum"))
		goto out_unmap;
	if (!check(type == MSG_SUM && len == 24, "checksum message (type %u, %zu bytes)", type,
		   len))
		goto out_unmap;
	peer_sum = get64(msg + 16);
	check(get64(msg) == seed && get64(msg + 8) == size,
	      "source used seed and size %016" PRIx64 " / %" PRIu64, get64(msg), get64(msg + 8));
	sum = XXH64(mem, size, 0);
	ok = check(sum == peer_sum, "xxh64 destination %016" PRIx64 " == source %016" PRIx64, sum,
		   peer_sum);
	for (unsigned i = 0; i < nch; i++) {
		uint64_t lo, hi;

		slice_of(size, nch, i, &lo, &hi);
		bad = content_compare(mem + lo, lo, hi - lo, seed, &first);
		if (bad) {
			bad_slices++;
			check(false,
			      "slice of channel %u [0x%" PRIx64 ", 0x%" PRIx64 "): %" PRIu64
			      " bad pages, first bad byte at 0x%" PRIx64,
			      i, lo, hi, bad, first);
		}
	}
	ok = check(!bad_slices, "byte-for-byte comparison of all %u slices", nch) && ok;
	verdict = ok ? 1 : 0;
	ret = rdmig_ctrl_send(c, MSG_VERDICT, &verdict, 1, &e);
	ok_call(ret, &e, "sending the verdict");
	print_stats(c);
out_unmap:
	rdmig_revoke(c);
	munmap(mem, size);
	return ok;
}

/* ---- fence ----------------------------------------------------------------- */

static uint64_t round_key(uint64_t seed, unsigned round, unsigned ch)
{
	return mix64(seed ^ ((uint64_t)round << 40) ^ ((uint64_t)ch << 20) ^ 0xfe9ce);
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
	struct rng r = {x->seed ^ (0x2000ULL + x->ch)};
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
			unsigned k = (unsigned)rng_range(&r, 1, 8), n = 0;

			while (n < k && pos < hi) {
				/* Any length, 1 byte .. 256 KiB, not page aligned. */
				uint64_t len = rng_range(&r, 1, 256 * 1024);

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
		unsigned ch = (unsigned)get64(m) >> 16, round = (unsigned)get64(m) & 0xffff;

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
		put64(m, ((uint64_t)x->ch << 16) | round);
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

static bool fence_run(struct rdmig_conn *c, bool source)
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

	mem = map_region(size);
	if (!mem)
		return false;
	memset(&sh, 0, sizeof(sh));
	pthread_mutex_init(&sh.lock, NULL);
	pthread_cond_init(&sh.cond, NULL);
	if (source) {
		const struct rdmig_remote_region *rr;

		ret = rdmig_reg(c, "ram", mem, size, 0, &lreg, &e);
		if (!ok_call(ret, &e, "registering the source region"))
			goto out;
		ret = rdmig_recv_layout(c, WAIT_MS, &e);
		if (!ok_call(ret, &e, "receiving the layout"))
			goto out;
		rr = find_remote(c, "ram");
		if (!check(rr && rr->len == size, "layout has region 'ram' of %" PRIu64 " bytes",
			   size))
			goto out;
		rreg = rr->id;
		ack = (struct ack_ctx){.c = c, .sh = &sh, .expect = nch * g_opt.rounds};
		if (pthread_create(&ackth, NULL, fence_ack_thread, &ack)) {
			check(false, "pthread_create failed");
			goto out;
		}
		ack_started = true;
	} else {
		ret = rdmig_reg(c, "ram", mem, size, RDMIG_REG_REMOTE_WRITE, &lreg, &e);
		if (!ok_call(ret, &e, "registering the destination region"))
			goto out;
		ret = rdmig_expose(c, &e);
		if (!ok_call(ret, &e, "exposing the layout"))
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
			check(false, "pthread_create failed");
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
			ok = check(false, "receiving check results: %s", rdmig_err_str(&ack.err));
	}
	for (unsigned i = 0; i < started; i++)
		if (!xs[i].ok)
			ok = check(false, "channel %u: %s", i, xs[i].why);
	if (ok && started == nch)
		check(true,
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
	return ok && !atomic_load(&g_failed);
}

/* ---- stream ----------------------------------------------------------------- */

struct stream_ctx {
	struct rdmig_conn *c;
	unsigned ch;
	uint64_t total;
	uint64_t key;
	uint64_t seed;
	uint64_t done;
	bool ok;
	char why[512];
};

static void *stream_send_thread(void *arg)
{
	struct stream_ctx *x = arg;
	struct rng r = {x->seed ^ x->key};
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint8_t *buf = malloc(256 * 1024);
	int ret = 0;

	x->ok = false;
	if (!buf) {
		snprintf(x->why, sizeof(x->why), "out of memory");
		return NULL;
	}
	while (x->done < x->total && !ret) {
		uint64_t n = rng_range(&r, 1, 256 * 1024);

		if (n > x->total - x->done)
			n = x->total - x->done;
		content_fill(buf, x->done, n, x->key);
		ret = rdmig_stream_send(x->c, x->ch, buf, n, &e);
		if (!ret)
			x->done += n;
	}
	if (!ret)
		ret = rdmig_stream_shutdown(x->c, x->ch, &e);
	if (ret)
		snprintf(x->why, sizeof(x->why), "send after %" PRIu64 " bytes: %s", x->done,
			 rdmig_err_str(&e));
	x->ok = !ret;
	free(buf);
	return NULL;
}

static void *stream_recv_thread(void *arg)
{
	struct stream_ctx *x = arg;
	struct rng r = {x->seed ^ x->key ^ 0x5a5a};
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint8_t *buf = malloc(256 * 1024), *exp = malloc(256 * 1024);
	ssize_t n;

	x->ok = false;
	if (!buf || !exp) {
		snprintf(x->why, sizeof(x->why), "out of memory");
		goto out;
	}
	for (;;) {
		size_t cap = (size_t)rng_range(&r, 1, 256 * 1024);

		n = rdmig_stream_recv(x->c, x->ch, buf, cap, WAIT_MS, &e);
		if (n < 0) {
			snprintf(x->why, sizeof(x->why), "receive after %" PRIu64 " bytes: %s",
				 x->done, rdmig_err_str(&e));
			goto out;
		}
		if (n == 0)
			break;
		if ((size_t)n > cap || x->done + (uint64_t)n > x->total) {
			snprintf(x->why, sizeof(x->why),
				 "receive returned %zd bytes for a %zu-byte buffer at %" PRIu64
				 " of %" PRIu64,
				 n, cap, x->done, x->total);
			goto out;
		}
		content_fill(exp, x->done, (size_t)n, x->key);
		if (memcmp(exp, buf, (size_t)n)) {
			size_t i = 0;

			while (exp[i] == buf[i])
				i++;
			snprintf(x->why, sizeof(x->why),
				 "byte %" PRIu64 " of the stream is 0x%02x, expected 0x%02x",
				 x->done + i, buf[i], exp[i]);
			goto out;
		}
		x->done += (uint64_t)n;
	}
	if (x->done != x->total) {
		snprintf(x->why, sizeof(x->why),
			 "end of stream after %" PRIu64 " of %" PRIu64 " bytes", x->done, x->total);
		goto out;
	}
	/* End of stream is sticky. */
	n = rdmig_stream_recv(x->c, x->ch, buf, 4096, WAIT_MS, &e);
	if (n != 0) {
		snprintf(x->why, sizeof(x->why), "receive after end of stream returned %zd (%s)", n,
			 n < 0 ? rdmig_err_str(&e) : "data");
		goto out;
	}
	x->ok = true;
out:
	free(buf);
	free(exp);
	return NULL;
}

static bool stream_run(struct rdmig_conn *c, bool server)
{
	unsigned nch = rdmig_conn_channels(c);
	struct stream_ctx tx[RDMIG_MAX_CHANNELS], rx[RDMIG_MAX_CHANNELS];
	pthread_t tth[RDMIG_MAX_CHANNELS], rth[RDMIG_MAX_CHANNELS];
	uint64_t per = g_opt.size / nch;
	unsigned ts = 0, rs = 0;
	bool ok = true;
	double t0 = now_s(), t1;

	for (unsigned i = 0; i < nch; i++) {
		/* Key by direction and channel, so that both ends agree. */
		uint64_t k_out = mix64(g_opt.seed ^ (server ? 0xd0000 : 0x50000) ^ i);
		uint64_t k_in = mix64(g_opt.seed ^ (server ? 0x50000 : 0xd0000) ^ i);

		tx[i] = (struct stream_ctx){
		    .c = c, .ch = i, .total = per, .key = k_out, .seed = g_opt.seed};
		rx[i] = (struct stream_ctx){
		    .c = c, .ch = i, .total = per, .key = k_in, .seed = g_opt.seed};
	}
	for (unsigned i = 0; i < nch; i++) {
		if (pthread_create(&rth[i], NULL, stream_recv_thread, &rx[i]))
			break;
		rs++;
		if (pthread_create(&tth[i], NULL, stream_send_thread, &tx[i]))
			break;
		ts++;
	}
	if (rs < nch || ts < nch) {
		check(false, "pthread_create failed");
		rdmig_conn_abort(c, -ECANCELED, "test aborted");
		ok = false;
	}
	for (unsigned i = 0; i < ts; i++)
		pthread_join(tth[i], NULL);
	for (unsigned i = 0; i < rs; i++)
		pthread_join(rth[i], NULL);
	t1 = now_s();
	for (unsigned i = 0; i < ts; i++)
		if (!tx[i].ok)
			ok = check(false, "stream channel %u: %s", i, tx[i].why);
	for (unsigned i = 0; i < rs; i++)
		if (!rx[i].ok)
			ok = check(false, "stream channel %u: %s", i, rx[i].why);
	if (ok) {
		check(true,
		      "%" PRIu64 " bytes each way over %u channels, verified byte for byte, end of "
		      "stream seen and sticky: %.3f s",
		      per * nch, nch, t1 - t0);
		barrier(c);
	}
	print_stats(c);
	return ok && !atomic_load(&g_failed);
}

/* ---- two-process driver ------------------------------------------------------ */

static void cfg_init(struct rdmig_xport_cfg *cfg, unsigned channels)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = g_opt.backend;
	cfg->host = g_opt.host;
	cfg->channels = channels;
	cfg->connect_timeout_ms = 30000;
	cfg->compress_level = g_opt.compress;
	if (g_opt.tls) {
		static const uint8_t key[] = "xport_check test key, not a secret";

		cfg->tls = true;
		cfg->tls_key = key;
		cfg->tls_key_len = sizeof(key) - 1;
	}
	rdmig_xport_cfg_defaults(cfg);
}

/* Wait for the child, at most 2 * WAIT_MS; true if it exited 0. */
static bool wait_child(pid_t pid)
{
	int st = 0;

	for (int i = 0; i < WAIT_MS * 2 / 100; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0;
		if (r < 0)
			return false;
		usleep(100 * 1000);
	}
	printf("[%s] FAIL source process did not finish: killing it\n", g_role);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return false;
}

typedef bool (*role_fn)(struct rdmig_conn *c, bool destination);

static int child_source(int rfd, role_fn fn)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	struct pollfd p = {.fd = rfd, .events = POLLIN};
	uint16_t port = 0;
	bool ok;
	int ret;

	g_role = "src";
	if (poll(&p, 1, WAIT_MS) != 1 || read(rfd, &port, sizeof(port)) != sizeof(port)) {
		check(false, "did not get the listening port from the destination");
		return 1;
	}
	close(rfd);
	cfg_init(&cfg, g_opt.channels);
	cfg.port = port;
	ret = rdmig_connect(&cfg, &c, &e);
	if (!ok_call(ret, &e, "connect"))
		return 1;
	check(rdmig_conn_channels(c) == g_opt.channels,
	      "connected to %s port %u, %u channels, "
	      "backend %s",
	      g_opt.host, port, rdmig_conn_channels(c), rdmig_backend_name(rdmig_conn_backend(c)));
	ok = fn(c, false);
	rdmig_conn_destroy(c);
	return ok && !atomic_load(&g_failed) ? 0 : 1;
}

static int two_process(role_fn fn)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_listener *l = NULL;
	struct rdmig_conn *c = NULL;
	bool ok = false, child_ok;
	uint16_t port;
	int pfd[2], ret;
	pid_t pid;

	if (pipe(pfd)) {
		perror("pipe");
		return 1;
	}
	fflush(stdout);
	/* Fork before any transport state exists: verbs resources do not survive fork. */
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		close(pfd[1]);
		exit(child_source(pfd[0], fn));
	}
	close(pfd[0]);
	g_role = "dst";
	cfg_init(&cfg, 1);
	ret = rdmig_listen(&cfg, &l, &e);
	if (!ok_call(ret, &e, "listen")) {
		close(pfd[1]);
		goto out_wait;
	}
	port = rdmig_listener_port(l);
	if (write(pfd[1], &port, sizeof(port)) != sizeof(port))
		check(false, "passing the port to the source: %s", strerror(errno));
	close(pfd[1]);
	ret = rdmig_accept(l, WAIT_MS, &c, &e);
	if (!ok_call(ret, &e, "accept"))
		goto out_listener;
	check(rdmig_conn_channels(c) == g_opt.channels, "accepted a connection with %u channels",
	      rdmig_conn_channels(c));
	ok = fn(c, true);
	rdmig_conn_destroy(c);
out_listener:
	rdmig_listener_destroy(l);
out_wait:
	child_ok = wait_child(pid);
	check(child_ok, "source process exit status");
	return ok && child_ok && !atomic_load(&g_failed) ? 0 : 1;
}

static bool role_transfer(struct rdmig_conn *c, bool destination)
{
	return destination ? dst_transfer(c, g_opt.size, g_opt.seed)
			   : src_transfer(c, g_opt.size, g_opt.seed);
}

static bool role_fence(struct rdmig_conn *c, bool destination)
{
	return fence_run(c, !destination);
}

static bool role_stream(struct rdmig_conn *c, bool destination)
{
	return stream_run(c, destination);
}

/* ---- malformed peers (tcp only) ------------------------------------------------ */

/* Blocking socket to 127.0.0.1:port with receive/send timeouts of WAIT_MS. */
static int raw_connect(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timeval tv = {.tv_sec = WAIT_MS / 1000};
	int fd;

	inet_pton(AF_INET, g_opt.host, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool raw_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool raw_recv(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* One frame: header decoded into *h, payload (up to cap) into buf. */
static bool raw_frame(int fd, struct rdmig_wire_hdr *h, uint8_t *buf, size_t cap)
{
	uint8_t hb[RDMIG_WIRE_HDR_LEN];

	if (!raw_recv(fd, hb, sizeof(hb)) ||
	    rdmig_wire_hdr_decode(hb, sizeof(hb), RDMIG_CTRL_MAX_PAYLOAD, h, NULL) ||
	    h->length > cap)
		return false;
	return raw_recv(fd, buf, h->length);
}

/* Capabilities the raw peer announces (malformed zstd cases change it). */
static uint32_t g_raw_caps = RDMIG_CAP_STREAMS | RDMIG_CAP_ZSTD;

static void raw_hello_frame(uint8_t *buf, uint8_t type, uint16_t role, uint16_t chan_index,
			    uint16_t nchan, uint64_t token)
{
	struct rdmig_wire_hello h = {.caps = g_raw_caps,
				     .role = role,
				     .nchan = nchan,
				     .chan_index = chan_index,
				     .max_ctrl = RDMIG_CTRL_MAX_PAYLOAD,
				     .token = token};

	memset(buf, 0, RDMIG_WIRE_PDATA_LEN);
	rdmig_wire_pdata_encode(buf, type, &h);
}

/* The listener's answer to a bad HELLO: an ERROR frame whose text contains `want`. */
static void expect_error_reply(int fd, const char *what, const char *want)
{
	struct rdmig_wire_hdr h;
	uint8_t buf[1024];
	char msg[300] = "";
	int code = 0;

	if (fd < 0) {
		check(false, "%s: could not connect", what);
		return;
	}
	if (!raw_frame(fd, &h, buf, sizeof(buf)) || h.type != RDMIG_MSG_ERROR ||
	    rdmig_wire_error_decode(buf, h.length, &code, msg, sizeof(msg), NULL)) {
		check(false, "%s: listener answered without a readable ERROR frame", what);
		return;
	}
	check(strstr(msg, want) != NULL, "%s: listener refused with \"%s\" (%d)", what, msg, code);
	check(recv(fd, buf, 1, 0) == 0, "%s: listener closed the socket afterwards", what);
}

/* A fake listener for rdmig_connect(): answers the HELLO with `reply`. */
struct fake_server {
	int lfd;
	uint16_t port;
	const uint8_t *reply;
	size_t reply_len;
	bool got_hello;
	pthread_t th;
};

static void *fake_server_thread(void *arg)
{
	struct fake_server *f = arg;
	uint8_t hello[RDMIG_WIRE_PDATA_LEN];
	struct pollfd p = {.fd = f->lfd, .events = POLLIN};
	int fd;

	if (poll(&p, 1, WAIT_MS) != 1)
		return NULL;
	fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	f->got_hello = raw_recv(fd, hello, sizeof(hello));
	if (f->reply_len)
		raw_send(fd, f->reply, f->reply_len);
	/* Hold the socket until the connector gives up and closes it. */
	p = (struct pollfd){.fd = fd, .events = POLLIN};
	poll(&p, 1, WAIT_MS);
	close(fd);
	return NULL;
}

static bool fake_server_start(struct fake_server *f, const uint8_t *reply, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);

	memset(f, 0, sizeof(*f));
	f->reply = reply;
	f->reply_len = len;
	inet_pton(AF_INET, g_opt.host, &sa.sin_addr);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(f->lfd, 4) ||
	    getsockname(f->lfd, (struct sockaddr *)&sa, &sl))
		return false;
	f->port = ntohs(sa.sin_port);
	return pthread_create(&f->th, NULL, fake_server_thread, f) == 0;
}

static void fake_server_stop(struct fake_server *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
}

static void connect_expect(uint16_t port, int timeout_ms, const char *what, int want_code,
			   const char *want1, const char *want2)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	int ret;

	cfg_init(&cfg, 1);
	cfg.port = port;
	cfg.connect_timeout_ms = timeout_ms;
	ret = rdmig_connect(&cfg, &c, &e);
	check(ret < 0 && (!want_code || ret == want_code) && strstr(e.msg, want1) &&
		  (!want2 || strstr(e.msg, want2)),
	      "connect to %s: error %d \"%s\"", what, ret, e.msg);
	rdmig_conn_destroy(c);
}

static void malformed_connect_side(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	struct fake_server f;
	uint8_t reply[RDMIG_WIRE_PDATA_LEN];
	uint16_t port = 0;
	int fd;

	/* A port nobody listens on: bind, read the port, close. */
	inet_pton(AF_INET, g_opt.host, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &sl))
		port = ntohs(sa.sin_port);
	close(fd);
	connect_expect(port, 10000, "a closed port", -ECONNREFUSED, "refused", "--listen");

	memset(reply, 0x41, sizeof(reply));
	if (check(fake_server_start(&f, reply, sizeof(reply)), "fake listener (bad magic)")) {
		connect_expect(f.port, 10000, "a listener answering with a bad magic", 0,
			       "bad magic", NULL);
		fake_server_stop(&f);
	}

	raw_hello_frame(reply, RDMIG_MSG_HELLO_ACK, RDMIG_ROLE_ACCEPTOR, RDMIG_CHAN_CTRL, 1, 1);
	reply[4] = RDMIG_WIRE_VERSION + 1;
	if (check(fake_server_start(&f, reply, sizeof(reply)), "fake listener (version 2)")) {
		connect_expect(f.port, 10000, "a listener of wire version 2", -EPROTONOSUPPORT,
			       "version 2", "version 1");
		fake_server_stop(&f);
	}

	if (check(fake_server_start(&f, NULL, 0), "fake listener (silent)")) {
		connect_expect(f.port, 1500, "a listener that never answers", -ETIMEDOUT,
			       "HELLO_ACK", NULL);
		fake_server_stop(&f);
	}
}

/* The good-connection proof: accept + destination transfer in a thread, source here. */
struct good_ctx {
	struct rdmig_listener *l;
	bool ok;
};

static void *good_dst_thread(void *arg)
{
	struct good_ctx *g = arg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	ret = rdmig_accept(g->l, WAIT_MS, &c, &e);
	g->ok = ok_call(ret, &e, "accepting the good connection") &&
		dst_transfer(c, 8 << 20, g_opt.seed);
	rdmig_conn_destroy(c);
	return NULL;
}

static void good_src(const char *host, uint16_t port, const char *when)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	bool ok;
	int ret;

	cfg_init(&cfg, 2);
	cfg.host = host;
	cfg.port = port;
	ret = rdmig_connect(&cfg, &c, &e);
	ok = ok_call(ret, &e, "connecting the good source") && src_transfer(c, 8 << 20, g_opt.seed);
	check(ok, "listener still accepts and transfers correctly %s", when);
	rdmig_conn_destroy(c);
}

/* Victim: the rdmig destination of one malformed case. */
struct victim {
	struct rdmig_listener *l;
	bool ctrl; /* wait in ctrl_recv instead of wait_fence */
	uint8_t *mem;
	int ret;
	bool failed_after;
	struct rdmig_err err;
};

#define VICTIM_LEN (1u << 20)

static void *victim_thread(void *arg)
{
	struct victim *v = arg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct rdmig_fence f;
	uint32_t id, ro;
	uint8_t buf[64];
	uint16_t type;
	size_t len;

	v->ret = rdmig_accept(v->l, WAIT_MS, &c, &v->err);
	if (v->ret)
		return NULL;
	v->ret = rdmig_reg(c, "ram", v->mem, VICTIM_LEN, RDMIG_REG_REMOTE_WRITE, &id, &v->err);
	if (!v->ret)
		v->ret = rdmig_reg(c, "ro", v->mem + VICTIM_LEN, 4096, 0, &ro, &v->err);
	if (!v->ret)
		v->ret = rdmig_expose(c, &v->err);
	if (!v->ret) {
		if (v->ctrl)
			v->ret =
			    rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &v->err);
		else
			v->ret = rdmig_wait_fence(c, 0, WAIT_MS, &f, &v->err);
	}
	/* Failed for good: a second call reports the same cause. */
	v->failed_after =
	    rdmig_conn_failed(c, NULL) && rdmig_wait_fence(c, 0, 1000, &f, &e) == v->ret;
	rdmig_conn_destroy(c);
	return NULL;
}

/* Handshake by hand (1 data channel), read the LAYOUT; returns the region id of "ram". */
static bool raw_session(uint16_t port, int *cfd, int *dfd, uint32_t *ram)
{
	uint8_t buf[RDMIG_CTRL_MAX_PAYLOAD], hello[RDMIG_WIRE_PDATA_LEN];
	struct rdmig_wire_region regs[RDMIG_MAX_REGIONS];
	struct rdmig_wire_hdr h;
	uint64_t token = mix64(g_opt.seed ^ (uint64_t)now_s());
	uint32_t n;

	*cfd = raw_connect(port);
	*dfd = raw_connect(port);
	if (*cfd < 0 || *dfd < 0)
		return false;
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 1, token);
	if (!raw_send(*cfd, hello, sizeof(hello)) || !raw_recv(*cfd, buf, RDMIG_WIRE_PDATA_LEN))
		return false;
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, 0, 1, token);
	if (!raw_send(*dfd, hello, sizeof(hello)) || !raw_recv(*dfd, buf, RDMIG_WIRE_PDATA_LEN))
		return false;
	if (!raw_frame(*cfd, &h, buf, sizeof(buf)) || h.type != RDMIG_MSG_LAYOUT ||
	    rdmig_wire_layout_decode(buf, h.length, regs, RDMIG_MAX_REGIONS, &n, NULL))
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (!strcmp(regs[i].name, "ram")) {
			*ram = regs[i].id;
			return true;
		}
	}
	return false;
}

static size_t write_frame(uint8_t *buf, uint32_t region, uint64_t off, uint32_t len)
{
	struct rdmig_wire_write w = {.region = region, .len = len, .offset = off};

	rdmig_wire_hdr_encode(buf, RDMIG_MSG_WRITE, 0, 0, RDMIG_WIRE_WRITE_LEN + len);
	rdmig_wire_write_encode(buf + RDMIG_WIRE_HDR_LEN, &w);
	return RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_WRITE_LEN;
}

enum bad_case {
	BAD_OFFSET,
	BAD_TRUNCATED,
	BAD_HUGE_LEN,
	BAD_FENCE_COUNT,
	BAD_STREAM_ON_PAGES,
	BAD_READONLY,
	BAD_CTRL_HUGE,
	BAD_ZSTD_SIZE,	     /* zstd frame of 4096 bytes, prefix says 8192 */
	BAD_ZSTD_GARBAGE,    /* flagged WRITE whose data is not zstd */
	BAD_ZSTD_TWO_FRAMES, /* two frames of 2048 bytes, prefix says 4096 */
	BAD_ZSTD_FENCE,	     /* the zstd flag on a FENCE */
	BAD_ZSTD_NOCAP,	     /* compressed WRITE from a peer that did not announce zstd */
};

/* A ZSTD-flagged WRITE frame: prefix says `len`, followed by `zlen` bytes of z. */
static bool send_zwrite(int fd, uint32_t region, uint32_t len, const void *z, size_t zlen)
{
	struct rdmig_wire_write w = {.region = region, .len = len, .offset = 0};
	uint8_t f[RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_WRITE_LEN];

	rdmig_wire_hdr_encode_flags(f, RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, 0, 0,
				    (uint32_t)(RDMIG_WIRE_WRITE_LEN + zlen));
	rdmig_wire_write_encode(f + RDMIG_WIRE_HDR_LEN, &w);
	return raw_send(fd, f, sizeof(f)) && raw_send(fd, z, zlen);
}

static void malformed_case(uint16_t port, struct rdmig_listener *l, enum bad_case bc,
			   const char *what, const char *want1, const char *want2)
{
	static uint8_t payload[8192];
	struct victim v = {.l = l, .ctrl = bc == BAD_CTRL_HUGE};
	uint8_t f[64], z[2 * 8192];
	size_t zn, zn2;
	int cfd = -1, dfd = -1;
	uint32_t ram = 0;
	pthread_t th;
	size_t n;
	bool sent = false, intact = true;

	v.mem = calloc(1, VICTIM_LEN + 4096);
	if (!v.mem || pthread_create(&th, NULL, victim_thread, &v)) {
		check(false, "%s: setup", what);
		free(v.mem);
		return;
	}
	memset(payload, 0xab, sizeof(payload));
	g_raw_caps = RDMIG_CAP_STREAMS | (bc == BAD_ZSTD_NOCAP ? 0 : RDMIG_CAP_ZSTD);
	if (raw_session(port, &cfd, &dfd, &ram)) {
		switch (bc) {
		case BAD_OFFSET:
			n = write_frame(f, ram, VICTIM_LEN - 100, 4096);
			sent = raw_send(dfd, f, n) && raw_send(dfd, payload, 4096);
			break;
		case BAD_TRUNCATED:
			n = write_frame(f, ram, 0, 4096);
			sent = raw_send(dfd, f, n) && raw_send(dfd, payload, 1000);
			close(dfd);
			close(cfd);
			dfd = cfd = -1;
			break;
		case BAD_HUGE_LEN:
			rdmig_wire_hdr_encode(f, RDMIG_MSG_WRITE, 0, 0, 0xfffffff0u);
			sent = raw_send(dfd, f, RDMIG_WIRE_HDR_LEN);
			break;
		case BAD_FENCE_COUNT: {
			struct rdmig_fence fc = {.seq = 7, .bytes = 8192, .writes = 2};

			n = write_frame(f, ram, 0, 4096);
			sent = raw_send(dfd, f, n) && raw_send(dfd, payload, 4096);
			rdmig_wire_hdr_encode(f, RDMIG_MSG_FENCE, 0, 0, RDMIG_WIRE_FENCE_LEN);
			rdmig_wire_fence_encode(f + RDMIG_WIRE_HDR_LEN, &fc);
			sent = sent && raw_send(dfd, f, RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_FENCE_LEN);
			break;
		}
		case BAD_STREAM_ON_PAGES:
			rdmig_wire_hdr_encode(f, RDMIG_MSG_STREAM_DATA, 0, 0, 10);
			sent = raw_send(dfd, f, RDMIG_WIRE_HDR_LEN) && raw_send(dfd, payload, 10);
			break;
		case BAD_READONLY:
			n = write_frame(f, ram + 1, 0, 4096);
			sent = raw_send(dfd, f, n) && raw_send(dfd, payload, 4096);
			break;
		case BAD_CTRL_HUGE:
			rdmig_wire_hdr_encode(f, RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 1, 0xffffffffu);
			sent = raw_send(cfd, f, RDMIG_WIRE_HDR_LEN);
			break;
		case BAD_ZSTD_SIZE:
		case BAD_ZSTD_NOCAP:
			zn = ZSTD_compress(z, sizeof(z), payload, 4096, 3);
			sent = !ZSTD_isError(zn) &&
			       send_zwrite(dfd, ram, bc == BAD_ZSTD_SIZE ? 8192 : 4096, z, zn);
			break;
		case BAD_ZSTD_GARBAGE:
			sent = send_zwrite(dfd, ram, 4096, payload, 100);
			break;
		case BAD_ZSTD_TWO_FRAMES:
			zn = ZSTD_compress(z, sizeof(z) / 2, payload, 2048, 3);
			zn2 = ZSTD_isError(zn)
				  ? zn
				  : ZSTD_compress(z + zn, sizeof(z) / 2, payload, 2048, 3);
			sent = !ZSTD_isError(zn2) && send_zwrite(dfd, ram, 4096, z, zn + zn2);
			break;
		case BAD_ZSTD_FENCE: {
			struct rdmig_fence fc = {.seq = 1};

			rdmig_wire_hdr_encode_flags(f, RDMIG_MSG_FENCE, RDMIG_HDR_F_ZSTD, 0, 0,
						    RDMIG_WIRE_FENCE_LEN);
			rdmig_wire_fence_encode(f + RDMIG_WIRE_HDR_LEN, &fc);
			sent = raw_send(dfd, f, RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_FENCE_LEN);
			break;
		}
		}
	}
	g_raw_caps = RDMIG_CAP_STREAMS | RDMIG_CAP_ZSTD;
	if (!sent) {
		/* The victim may wait in accept or receive: unblock it by closing everything. */
		check(false, "%s: raw peer could not set up the session", what);
	}
	if (cfd >= 0 && !sent)
		close(cfd), cfd = -1;
	if (dfd >= 0 && !sent)
		close(dfd), dfd = -1;
	pthread_join(th, NULL);
	if (cfd >= 0)
		close(cfd);
	if (dfd >= 0)
		close(dfd);
	if (!sent) {
		free(v.mem);
		return;
	}
	/* Nothing may land outside what was accepted; a refused WRITE lands nowhere. */
	for (size_t i = 0; i < VICTIM_LEN + 4096; i++) {
		bool may = (bc == BAD_FENCE_COUNT && i < 4096) || (bc == BAD_TRUNCATED && i < 1000);

		if (v.mem[i] && !may) {
			intact = false;
			break;
		}
	}
	check(v.ret < 0 && strstr(v.err.msg, want1) && (!want2 || strstr(v.err.msg, want2)),
	      "%s: rejected with %d \"%s\"", what, v.ret, v.err.msg);
	check(v.failed_after, "%s: connection stays failed with the same error", what);
	check(intact, "%s: no byte landed outside the accepted writes", what);
	free(v.mem);
}

/* ---- tcp behaviours beyond malformed frames ---------------------------------- */

/* Accept + register + expose in a thread while the raw peer does its handshake. */
struct session {
	struct rdmig_listener *l;
	struct rdmig_conn *c;
	uint8_t *mem;
	int ret;
	struct rdmig_err err;
};

static void *session_accept_thread(void *arg)
{
	struct session *s = arg;
	uint32_t id;

	s->ret = rdmig_accept(s->l, WAIT_MS, &s->c, &s->err);
	if (!s->ret)
		s->ret = rdmig_reg(s->c, "ram", s->mem, VICTIM_LEN, RDMIG_REG_REMOTE_WRITE, &id,
				   &s->err);
	if (!s->ret)
		s->ret = rdmig_expose(s->c, &s->err);
	return NULL;
}

/* rdmig side and raw peer in one thread: the raw side's small sends never block. */
static bool session_open(struct session *s, struct rdmig_listener *l, uint16_t port, int *cfd,
			 int *dfd, uint32_t *ram)
{
	pthread_t th;
	bool raw_ok;

	memset(s, 0, sizeof(*s));
	s->l = l;
	s->mem = calloc(1, VICTIM_LEN);
	if (!s->mem || pthread_create(&th, NULL, session_accept_thread, s)) {
		free(s->mem);
		return false;
	}
	raw_ok = raw_session(port, cfd, dfd, ram);
	if (!raw_ok) {
		/* Unblock the acceptor if it still waits for our sockets. */
		if (*cfd >= 0)
			close(*cfd);
		if (*dfd >= 0)
			close(*dfd);
		*cfd = *dfd = -1;
	}
	pthread_join(th, NULL);
	if (raw_ok && ok_call(s->ret, &s->err, "accepting the raw session"))
		return true;
	check(false, "raw session setup");
	rdmig_conn_destroy(s->c);
	free(s->mem);
	return false;
}

static void session_close(struct session *s, int cfd, int dfd)
{
	rdmig_conn_destroy(s->c);
	free(s->mem);
	if (cfd >= 0)
		close(cfd);
	if (dfd >= 0)
		close(dfd);
}

/* A receive that times out in the middle of a frame resumes where it stopped. */
static void resume_after_timeout(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct session s;
	struct rdmig_fence f = {0};
	uint8_t frame[64], payload[4096], got[64];
	struct rdmig_fence fc = {.seq = 9, .bytes = 4096, .writes = 1};
	int cfd, dfd, ret;
	uint16_t type = 0;
	uint32_t ram;
	size_t len = 0, n;

	if (!session_open(&s, l, port, &cfd, &dfd, &ram))
		return;
	/* Control message: header and 3 of 10 payload bytes, then the rest. */
	rdmig_wire_hdr_encode(frame, RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 77, 10);
	memcpy(frame + RDMIG_WIRE_HDR_LEN, "0123456789", 10);
	raw_send(cfd, frame, RDMIG_WIRE_HDR_LEN + 3);
	ret = rdmig_ctrl_recv(s.c, &type, got, sizeof(got), &len, 300, &e);
	check(ret == -ETIMEDOUT && !rdmig_conn_failed(s.c, NULL),
	      "control message cut short: ctrl_recv times out (%d \"%s\"), connection alive", ret,
	      e.msg);
	rdmig_err_clear(&e);
	raw_send(cfd, frame + RDMIG_WIRE_HDR_LEN + 3, 7);
	ret = rdmig_ctrl_recv(s.c, &type, got, sizeof(got), &len, WAIT_MS, &e);
	check(!ret && type == 77 && len == 10 && !memcmp(got, "0123456789", 10),
	      "the next ctrl_recv returns the whole message (%d, type %u, %zu bytes)", ret, type,
	      len);

	/* WRITE: 1000 of 4096 payload bytes, timeout, rest and a fence split in its header. */
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + 1);
	n = write_frame(frame, ram, 4096, 4096);
	raw_send(dfd, frame, n);
	raw_send(dfd, payload, 1000);
	rdmig_err_clear(&e);
	ret = rdmig_wait_fence(s.c, 0, 300, &f, &e);
	check(ret == -ETIMEDOUT && !rdmig_conn_failed(s.c, NULL),
	      "WRITE payload cut short: wait_fence times out (%d \"%s\"), connection alive", ret,
	      e.msg);
	raw_send(dfd, payload + 1000, sizeof(payload) - 1000);
	rdmig_wire_hdr_encode(frame, RDMIG_MSG_FENCE, 0, 0, RDMIG_WIRE_FENCE_LEN);
	rdmig_wire_fence_encode(frame + RDMIG_WIRE_HDR_LEN, &fc);
	raw_send(dfd, frame, 8);
	rdmig_err_clear(&e);
	ret = rdmig_wait_fence(s.c, 0, 300, &f, &e);
	check(ret == -ETIMEDOUT && !rdmig_conn_failed(s.c, NULL),
	      "FENCE header cut short: wait_fence times out (%d \"%s\"), connection alive", ret,
	      e.msg);
	raw_send(dfd, frame + 8, RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_FENCE_LEN - 8);
	rdmig_err_clear(&e);
	ret = rdmig_wait_fence(s.c, 0, WAIT_MS, &f, &e);
	check(!ret && f.seq == 9 && f.bytes == 4096 && f.writes == 1 &&
		  !memcmp(s.mem + 4096, payload, sizeof(payload)),
	      "resumed WRITE landed intact and its fence arrived (%d \"%s\")", ret, e.msg);
	session_close(&s, cfd, dfd);
}

struct blocked {
	struct rdmig_conn *c;
	bool ctrl;
	int ret;
	struct rdmig_err err;
};

static void *blocked_thread(void *arg)
{
	struct blocked *b = arg;
	struct rdmig_fence f;
	uint8_t buf[64];
	uint16_t type;
	size_t len;

	if (b->ctrl)
		b->ret = rdmig_ctrl_recv(b->c, &type, buf, sizeof(buf), &len, WAIT_MS, &b->err);
	else
		b->ret = rdmig_wait_fence(b->c, 0, WAIT_MS, &f, &b->err);
	return NULL;
}

/* rdmig_conn_abort() wakes threads blocked in receives, with the abort's reason. */
static void abort_wakes(struct rdmig_listener *l, uint16_t port)
{
	struct session s;
	struct blocked b[2];
	pthread_t th[2];
	int cfd, dfd, started = 0;
	uint32_t ram;

	if (!session_open(&s, l, port, &cfd, &dfd, &ram))
		return;
	for (int i = 0; i < 2; i++) {
		b[i] = (struct blocked){.c = s.c, .ctrl = i == 1};
		if (pthread_create(&th[i], NULL, blocked_thread, &b[i]))
			break;
		started++;
	}
	usleep(100 * 1000); /* let them block; if they are late they fail the same way */
	rdmig_conn_abort(s.c, -ECANCELED, "cancelled by the test");
	for (int i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		check(b[i].ret == -ECANCELED && strstr(b[i].err.msg, "cancelled by the test"),
		      "abort wakes a thread blocked in %s: %d \"%s\"",
		      b[i].ctrl ? "ctrl_recv" : "wait_fence", b[i].ret, b[i].err.msg);
	}
	check(started == 2, "abort test threads started");
	session_close(&s, cfd, dfd);
}

/*
 * Two connectors whose sockets arrive interleaved: each accept hands out the
 * connection that completed, with its own sockets on the right channels.
 */
static void interleaved(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	const unsigned na = 2, nb = 3;
	int a[1 + 2], b[1 + 3];
	uint64_t ta = mix64(g_opt.seed ^ 0xa), tb = mix64(g_opt.seed ^ 0xb);
	uint8_t hello[RDMIG_WIRE_PDATA_LEN], frame[RDMIG_WIRE_HDR_LEN + 1], buf[8];
	struct rdmig_conn *ca = NULL, *cb = NULL;
	bool ok = true;
	int ret;

	for (unsigned i = 0; i <= na; i++)
		a[i] = raw_connect(port);
	for (unsigned i = 0; i <= nb; i++)
		b[i] = raw_connect(port);
	/* A ctrl, B ctrl, A data 0, B data 2, B data 0, B data 1; A data 1 comes later. */
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, na, ta);
	ok = ok && a[0] >= 0 && raw_send(a[0], hello, sizeof(hello));
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, nb, tb);
	ok = ok && b[0] >= 0 && raw_send(b[0], hello, sizeof(hello));
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, 0, na, ta);
	ok = ok && a[1] >= 0 && raw_send(a[1], hello, sizeof(hello));
	for (unsigned k = 0; k < nb; k++) {
		unsigned i = (k + 2) % nb;

		raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, (uint16_t)i, nb, tb);
		ok = ok && b[1 + i] >= 0 && raw_send(b[1 + i], hello, sizeof(hello));
	}
	if (!check(ok, "interleaved connectors: raw sockets set up"))
		goto out;
	ret = rdmig_accept(l, WAIT_MS, &cb, &e);
	check(!ret && rdmig_conn_channels(cb) == nb,
	      "interleaved connectors: first accept is the complete one, %u channels (%d %s)",
	      ret ? 0 : rdmig_conn_channels(cb), ret, e.msg);
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, 1, na, ta);
	raw_send(a[2], hello, sizeof(hello));
	ret = rdmig_accept(l, WAIT_MS, &ca, &e);
	check(!ret && rdmig_conn_channels(ca) == na,
	      "interleaved connectors: second accept completes the other, %u channels (%d %s)",
	      ret ? 0 : rdmig_conn_channels(ca), ret, e.msg);
	if (!ca || !cb)
		goto out;
	/* Each raw data socket carries its own index as one stream byte. */
	for (unsigned i = 0; i < na + nb; i++) {
		struct rdmig_conn *c = i < na ? ca : cb;
		unsigned ch = i < na ? i : i - na;
		int fd = i < na ? a[1 + ch] : b[1 + ch];
		ssize_t n;

		rdmig_wire_hdr_encode(frame, RDMIG_MSG_STREAM_DATA, (uint16_t)ch, 0, 1);
		frame[RDMIG_WIRE_HDR_LEN] = (uint8_t)(0x40 + i);
		raw_send(fd, frame, sizeof(frame));
		n = rdmig_stream_recv(c, ch, buf, sizeof(buf), WAIT_MS, &e);
		if (n != 1 || buf[0] != 0x40 + i) {
			ok = false;
			check(false,
			      "interleaved connectors: channel %u of connection %c got %zd "
			      "bytes (%s)",
			      ch, i < na ? 'A' : 'B', n, e.msg);
		}
	}
	check(ok, "interleaved connectors: every socket sits on its own connection and channel");
out:
	rdmig_conn_destroy(ca);
	rdmig_conn_destroy(cb);
	for (unsigned i = 0; i <= na; i++)
		if (a[i] >= 0)
			close(a[i]);
	for (unsigned i = 0; i <= nb; i++)
		if (b[i] >= 0)
			close(b[i]);
}

/* A silent socket and a connection missing a data channel are dropped in time. */
static void expiry(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t hello[RDMIG_WIRE_PDATA_LEN], buf[256];
	int silent = raw_connect(port), half = raw_connect(port), ret;
	ssize_t n;

	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 2, 4545);
	if (!check(silent >= 0 && half >= 0 && raw_send(half, hello, sizeof(hello)),
		   "expiry: raw sockets set up"))
		goto out;
	/* Listener HELLO timeout 3 s, incomplete connections 6 s: 7 s covers both. */
	ret = rdmig_accept(l, 7000, &c, &e);
	check(ret == -ETIMEDOUT && strstr(e.msg, "no connection"),
	      "expiry: accept with nothing complete times out (%d \"%s\")", ret, e.msg);
	rdmig_conn_destroy(c);
	n = recv(silent, buf, sizeof(buf), 0);
	check(n == 0, "expiry: a socket that never sent its HELLO was closed (recv %zd)", n);
	/* The half connection got its HELLO_ACK, then was closed. */
	n = recv(half, buf, sizeof(buf), MSG_WAITALL);
	check(n == RDMIG_WIRE_PDATA_LEN && recv(half, buf, sizeof(buf), 0) == 0,
	      "expiry: a connection missing a data channel was closed");
out:
	if (silent >= 0)
		close(silent);
	if (half >= 0)
		close(half);
}

/* A listener without an address takes IPv4 and, where there is IPv6, IPv6 too. */
static void dual_stack(void)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_listener *l = NULL;
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	const char *hosts[2] = {"127.0.0.1", "::1"};
	struct good_ctx g;
	pthread_t th;
	bool v6;
	int fd, ret;

	fd = socket(AF_INET6, SOCK_STREAM, 0);
	v6 = fd >= 0 && !bind(fd, (struct sockaddr *)&s6, sizeof(s6));
	if (fd >= 0)
		close(fd);
	cfg_init(&cfg, 1);
	cfg.host = NULL;
	ret = rdmig_listen(&cfg, &l, &e);
	if (!ok_call(ret, &e, "listening on any address"))
		return;
	for (int i = 0; i < 2; i++) {
		char when[64];

		if (i == 1 && !v6) {
			printf("[%s] SKIP dual stack over ::1: no IPv6 loopback here\n", g_role);
			break;
		}
		snprintf(when, sizeof(when), "(any-address listener, connecting to %s)", hosts[i]);
		g = (struct good_ctx){.l = l};
		if (pthread_create(&th, NULL, good_dst_thread, &g))
			break;
		good_src(hosts[i], rdmig_listener_port(l), when);
		pthread_join(th, NULL);
		check(g.ok, "destination side of that transfer");
	}
	rdmig_listener_destroy(l);
}

static int run_malformed(void)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_listener *l = NULL;
	struct good_ctx g;
	uint8_t frame[RDMIG_WIRE_PDATA_LEN];
	int fd, silent, half;
	pthread_t th;
	uint16_t port;
	int ret;

	if (g_opt.backend != RDMIG_BACKEND_TCP) {
		printf("[main] SKIP malformed: hand-built frames need the tcp backend\n");
		return 0;
	}
	g_role = "malformed";
	malformed_connect_side();

	cfg_init(&cfg, 1);
	cfg.connect_timeout_ms = 3000; /* how long the listener waits for a HELLO */
	ret = rdmig_listen(&cfg, &l, &e);
	if (!ok_call(ret, &e, "listen"))
		return 1;
	port = rdmig_listener_port(l);

	/* Garbage at the listener while an accept is waiting for a good connection. */
	g = (struct good_ctx){.l = l};
	if (pthread_create(&th, NULL, good_dst_thread, &g)) {
		rdmig_listener_destroy(l);
		return 1;
	}
	fd = raw_connect(port);
	memset(frame, 0x41, sizeof(frame));
	if (fd >= 0)
		raw_send(fd, frame, sizeof(frame));
	expect_error_reply(fd, "HELLO with a bad magic", "bad magic");
	close(fd);

	fd = raw_connect(port);
	raw_hello_frame(frame, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 1, 42);
	frame[4] = RDMIG_WIRE_VERSION + 1;
	if (fd >= 0)
		raw_send(fd, frame, sizeof(frame));
	expect_error_reply(fd, "HELLO with wire version 2", "version 2");
	close(fd);

	fd = raw_connect(port);
	raw_hello_frame(frame, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 1, 43);
	rdmig_put_be16(frame + RDMIG_WIRE_HDR_LEN + 6, 0); /* nchan 0 */
	if (fd >= 0)
		raw_send(fd, frame, sizeof(frame));
	expect_error_reply(fd, "HELLO with 0 channels", "channel count 0");
	close(fd);

	/* Left open: a silent socket, and a connection whose data channels never come. */
	silent = raw_connect(port);
	half = raw_connect(port);
	raw_hello_frame(frame, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 2, 44);
	if (half >= 0)
		raw_send(half, frame, sizeof(frame));

	good_src(g_opt.host, port, "after garbage, a silent socket and a half-open connection");
	pthread_join(th, NULL);
	check(g.ok, "destination side of that transfer");
	if (silent >= 0)
		close(silent);
	if (half >= 0)
		close(half);

	malformed_case(port, l, BAD_OFFSET, "WRITE beyond the region", "rejected WRITE",
		       "beyond region");
	malformed_case(port, l, BAD_TRUNCATED, "WRITE with a truncated payload, then close",
		       "truncated WRITE", "1000 of 4096");
	malformed_case(port, l, BAD_HUGE_LEN, "WRITE header with length 0xfffffff0",
		       "exceeds the maximum", "page channel 0");
	malformed_case(port, l, BAD_FENCE_COUNT, "FENCE claiming more than arrived", "8192",
		       "4096 bytes in 1 writes arrived");
	malformed_case(port, l, BAD_STREAM_ON_PAGES, "STREAM_DATA on a page channel",
		       "unexpected STREAM_DATA on page channel 0", NULL);
	malformed_case(port, l, BAD_READONLY, "WRITE into a region not exposed for writing",
		       "not writable", NULL);
	malformed_case(port, l, BAD_CTRL_HUGE, "control message with length 0xffffffff",
		       "exceeds the maximum", "control");
	malformed_case(port, l, BAD_ZSTD_SIZE, "zstd WRITE that decompresses to 4096, not 8192",
		       "rejected WRITE", "decompresses to 4096 bytes, the prefix says 8192");
	malformed_case(port, l, BAD_ZSTD_GARBAGE, "zstd WRITE with garbage data", "rejected WRITE",
		       "not a zstd frame");
	malformed_case(port, l, BAD_ZSTD_TWO_FRAMES, "zstd WRITE with two frames", "rejected WRITE",
		       "expected one frame");
	malformed_case(port, l, BAD_ZSTD_FENCE, "zstd flag on a FENCE", "malformed frame",
		       "allowed on WRITE only");
	malformed_case(port, l, BAD_ZSTD_NOCAP, "zstd WRITE from a peer without the capability",
		       "rejected WRITE", "did not announce zstd");

	resume_after_timeout(l, port);
	abort_wakes(l, port);
	interleaved(l, port);
	expiry(l, port);

	/* And the listener is still good for real work. */
	g = (struct good_ctx){.l = l};
	if (!pthread_create(&th, NULL, good_dst_thread, &g)) {
		good_src(g_opt.host, port, "after every malformed session");
		pthread_join(th, NULL);
		check(g.ok, "destination side of that transfer");
	}
	rdmig_listener_destroy(l);
	dual_stack();
	return atomic_load(&g_failed) ? 1 : 0;
}

/* ---- main -------------------------------------------------------------------- */

static int usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "xport_check: %s\n", msg);
	fprintf(stderr, "usage: xport_check transfer|fence|stream|malformed --backend tcp|rdma\n"
			"         [--host ADDR] [--size N] [--channels N] [--rounds N] [--seed S]\n"
			"         [--compress LEVEL] [--tls]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"backend", required_argument, NULL, 'b'},
	    {"host", required_argument, NULL, 'H'},
	    {"size", required_argument, NULL, 's'},
	    {"channels", required_argument, NULL, 'c'},
	    {"rounds", required_argument, NULL, 'r'},
	    {"seed", required_argument, NULL, 'S'},
	    {"compress", required_argument, NULL, 'Z'},
	    {"tls", no_argument, NULL, 'T'}, /* fixed test key: see cfg_init() */
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct rdmig_err e = RDMIG_ERR_INIT;
	bool have_backend = false;
	uint64_t v;
	char *end;
	int opt, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	rdmig_log_init();
	if (argc < 2 || argv[1][0] == '-')
		return usage(NULL);
	g_opt.mode = argv[1];
	g_opt.host = "127.0.0.1";
	g_opt.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	optind = 2;
	while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			if (rdmig_backend_parse(optarg, &g_opt.backend, &e))
				return usage(e.msg);
			have_backend = true;
			break;
		case 'H':
			g_opt.host = optarg;
			break;
		case 's':
			if (rdmig_parse_size(optarg, &g_opt.size, &e) || !g_opt.size)
				return usage(e.code ? e.msg : "--size must be above 0");
			break;
		case 'c':
			if (rdmig_parse_uint(optarg, 1, RDMIG_MAX_CHANNELS, &v, &e))
				return usage(e.msg);
			g_opt.channels = (unsigned)v;
			break;
		case 'r':
			if (rdmig_parse_uint(optarg, 1, 65535, &v, &e))
				return usage(e.msg);
			g_opt.rounds = (unsigned)v;
			break;
		case 'T':
			g_opt.tls = true;
			break;
		case 'Z':
			if (rdmig_parse_uint(optarg, 0, 19, &v, &e))
				return usage(e.msg);
			g_opt.compress = (int)v;
			break;
		case 'S':
			errno = 0;
			g_opt.seed = strtoull(optarg, &end, 0);
			if (errno || *end || !*optarg)
				return usage("--seed expects a number (decimal or 0x...)");
			break;
		default:
			return usage(NULL);
		}
	}
	if (optind != argc)
		return usage("unexpected argument");
	if (!have_backend && strcmp(g_opt.mode, "malformed"))
		return usage("--backend is required");

	if (!strcmp(g_opt.mode, "transfer")) {
		g_opt.size = g_opt.size ? g_opt.size : 256ULL << 20;
		g_opt.channels = g_opt.channels ? g_opt.channels : 4;
	} else if (!strcmp(g_opt.mode, "fence")) {
		g_opt.size = g_opt.size ? g_opt.size : 64ULL << 20;
		g_opt.channels = g_opt.channels ? g_opt.channels : 4;
		g_opt.rounds = g_opt.rounds ? g_opt.rounds : 8;
	} else if (!strcmp(g_opt.mode, "stream")) {
		g_opt.size = g_opt.size ? g_opt.size : 32ULL << 20;
		g_opt.channels = g_opt.channels ? g_opt.channels : 2;
	} else if (strcmp(g_opt.mode, "malformed")) {
		return usage("unknown mode");
	}
	if (g_opt.size && g_opt.channels && g_opt.size / g_opt.channels < 4096)
		return usage("--size must give every channel at least 4 KiB");

	printf("[main] xport_check %s: backend %s, host %s, size %" PRIu64 ", channels %u, seed "
	       "0x%016" PRIx64 "\n",
	       g_opt.mode, rdmig_backend_name(g_opt.backend), g_opt.host, g_opt.size,
	       g_opt.channels, g_opt.seed);
	if (!strcmp(g_opt.mode, "transfer"))
		ret = two_process(role_transfer);
	else if (!strcmp(g_opt.mode, "fence"))
		ret = two_process(role_fence);
	else if (!strcmp(g_opt.mode, "stream"))
		ret = two_process(role_stream);
	else
		ret = run_malformed();
	printf("[%s] %s: %s\n", g_role, g_opt.mode, ret ? "FAILED" : "passed");
	return ret;
}
