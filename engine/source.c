/* SPDX-License-Identifier: MIT */
/*
 * Source side of a live migration.
 *
 * Threads: the caller's thread runs the state machine (harvest, plan,
 * convergence, switchover, manifest); one worker per data channel posts that
 * channel's runs and fences them. Workers only touch their own `struct
 * worker` and the connection's per-channel send path; the hand-over of run
 * lists goes through `lock`/`cv`.
 *
 * Invariant for integrity: dirty tracking starts before the bulk round reads
 * any page, so every page written after it was read is harvested again;
 * the final harvest happens with every vCPU paused, so the last round sends
 * everything that differs from what the destination already has.
 *
 * Invariant for the hand-over: `go` is set before GO is sent, and once it
 * is set the guest is never resumed here (rdmig/migrate.h).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "converge.h"
#include "dirty.h"
#include "log.h"
#include "mig_common.h"
#include "proto.h"
#include "runs.h"
#include "plan.h"
#include "settle.h"

/* Runs planned per dispatch; a round larger than this goes out in chunks. */
#define RUNS_PER_CHUNK (64 * 1024)
/* Largest single write: moderate sizes suit software RDMA devices too. */
#define MAX_RUN_BYTES RDMIG_STRIPE_BYTES
/* Pages of one stripe always go on the same channel (see send_round). */
#define STRIPE_BYTES RDMIG_STRIPE_BYTES
/* Longest wait for the destination's ROUND_VERIFIED before another round. */
#define ACK_WAIT_MS 100
/* Shortest interval between two harvests. */
#define MIN_ROUND_NS (5 * 1000000ull)
/* Runs handed to one rdmig_write call. */
#define WRITE_BATCH 32

struct src_region {
	uint32_t lreg, rreg;
	uint8_t *addr;
	uint64_t len, pages;
	uint64_t *bitmap;
	size_t words;
	/*
	 * Checksum of each page as it was when last sent, taken by the worker
	 * that sent it and carried to the destination in that round's
	 * MANIFEST. A page changed after its checksum was taken is dirty and is
	 * sent (and summed) again; the final round runs with the guest paused,
	 * so each page's last checksum describes exactly what the destination
	 * holds.
	 */
	uint64_t *sums;
};

struct mig_src;

struct worker {
	struct mig_src *m;
	pthread_t th;
	unsigned chan;
	struct rdmig_run *runs;
	size_t n, cap;
	bool fence;    /* fence after this chunk */
	bool scan;     /* this dispatch finds the zero pages of the worker's stripes */
	uint64_t seq;  /* fence sequence number */
	uint64_t zero; /* zero pages its scans found */
	int ret;
	struct rdmig_err err;
	uint64_t gen_seen;
	uint64_t bytes;	  /* bytes written, for the rate limit */
	uint64_t t_start; /* rate-limit epoch */
};

struct mig_src {
	struct rdmig_conn *c;
	const struct rdmig_vm *vm;
	const struct rdmig_mig_opts *o;
	struct src_region reg[RDMIG_MIG_MAX_REGIONS];
	unsigned nreg;
	int8_t lreg_idx[RDMIG_MAX_REGIONS]; /* transport region id -> reg[] index */
	uint64_t ram, pages;

	struct worker w[RDMIG_MAX_CHANNELS];
	unsigned nw, started;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t gen;  /* bumped per dispatch */
	unsigned done; /* workers finished with the current dispatch */
	bool quit;
	atomic_bool stop; /* tell workers to give up early */
	_Atomic uint64_t sent_bytes, sent_pages;

	struct rdmig_run *plan;
	uint8_t *mbuf;	/* one MANIFEST being built */
	uint8_t *defer; /* the final round's MANIFESTs, sent after FINAL: be32 length + message */
	size_t defer_len, defer_cap;
	bool deferring;
	uint32_t dst_round;   /* the destination has checked every round up to this */
	uint32_t ended_round; /* the last round whose MANIFEST_END went */
	struct rdmig_mig_stats st;
	struct rdmig_dirty *dirty;
	bool paused;	    /* the migration stopped the guest (cold, switchover) */
	bool manifest_sent; /* MANIFEST_END went (or may have): VERIFIED is possible */
	bool dst_gave_up;   /* VERIFY_FAIL or CANCEL: the destination discards by itself */
	bool go;	    /* decided GO: irrevocable, the guest never resumes here */
	uint8_t id[RDMIG_MIG_ID_LEN];
	char ids[RDMIG_MIG_ID_STR];
	bool hook_paused; /* the soft-dirty harvest hook stopped it for a moment */
	uint64_t t0;
	uint64_t t_pause; /* switchover: the guest stopped here */
	uint8_t *state;	  /* the VM's state blob for FINAL, RDMIG_VM_STATE_MAX bytes */
};

static bool cancelled(const struct mig_src *m)
{
	return m->o->cancel && *m->o->cancel;
}

static bool summing(const struct mig_src *m)
{
	return m->o->verify != RDMIG_VERIFY_OFF;
}

static double ms_since(uint64_t t)
{
	return (double)(rdmig_now_ns() - t) / 1e6;
}

/* ---- workers ----------------------------------------------------------- */

/* Sleep as needed so this worker stays within its share of --max-bandwidth. */
static void rate_limit(struct worker *w)
{
	uint64_t cap = w->m->o->max_bandwidth / w->m->nw, elapsed, due;

	if (!cap)
		return;
	elapsed = rdmig_now_ns() - w->t_start;
	due = (uint64_t)((double)w->bytes * 1e9 / (double)cap);
	if (due > elapsed)
		usleep((useconds_t)((due - elapsed) / 1000));
}

static int worker_chunk(struct worker *w)
{
	struct mig_src *m = w->m;
	uint64_t bytes;
	size_t i, k;
	int ret;

	/* The rate limit holds per dispatch: idle time between rounds is no credit. */
	w->t_start = rdmig_now_ns();
	w->bytes = 0;
	for (i = 0; i < w->n; i += k) {
		if (atomic_load(&m->stop))
			return -ECANCELED;
		k = w->n - i < WRITE_BATCH ? w->n - i : WRITE_BATCH;
		ret = rdmig_write(m->c, w->chan, &w->runs[i], k, &w->err);
		if (ret)
			return ret;
		bytes = 0;
		for (size_t j = i; j < i + k; j++) {
			const struct rdmig_run *r = &w->runs[j];
			struct src_region *sr = &m->reg[m->lreg_idx[r->lreg]];

			/* Workers own disjoint pages within a round: no lock needed. */
			for (uint64_t off = 0; summing(m) && off < r->len; off += RDMIG_PAGE_SIZE)
				sr->sums[(r->loff + off) / RDMIG_PAGE_SIZE] =
				    rdmig_page_sum(sr->addr + r->loff + off);
			bytes += r->len;
		}
		w->bytes += bytes;
		atomic_fetch_add(&m->sent_bytes, bytes);
		atomic_fetch_add(&m->sent_pages, bytes / RDMIG_PAGE_SIZE);
		rate_limit(w);
	}
	if (w->fence)
		return rdmig_fence(m->c, w->chan, w->seq, &w->err);
	return 0;
}

/*
 * Bulk plan, this worker's share: the pages of its own stripes that are not
 * zero (the destination starts zeroed). A stripe is one bitmap word, so the
 * workers write disjoint words.
 */
static void worker_scan(struct worker *w)
{
	struct mig_src *m = w->m;

	for (unsigned r = 0; r < m->nreg; r++) {
		struct src_region *sr = &m->reg[r];

		for (size_t word = w->chan; word < sr->words; word += m->nw) {
			uint64_t bits = 0, p = (uint64_t)word * 64;

			for (unsigned b = 0; b < 64 && p + b < sr->pages; b++) {
				if (rdmig_page_is_zero(sr->addr + (p + b) * RDMIG_PAGE_SIZE))
					w->zero++;
				else
					bits |= 1ull << b;
			}
			sr->bitmap[word] = bits;
			if (atomic_load(&m->stop))
				return;
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct mig_src *m = w->m;
	struct rdmig_err perr = RDMIG_ERR_INIT;
	char name[16];

	/* Placement is an optimisation: a failed pin is worth a warning, not the migration. */
	if (rdmig_numa_pin_self(m->o->plan, w->chan, &perr))
		log_warn("worker %u: %s", w->chan, rdmig_err_str(&perr));
	/* Named after pinning: tools (and tests) see "rdmig-wN" only once it is placed. */
	snprintf(name, sizeof(name), "rdmig-w%u", w->chan);
	pthread_setname_np(pthread_self(), name);
	w->t_start = rdmig_now_ns();
	pthread_mutex_lock(&m->lock);
	for (;;) {
		while (!m->quit && m->gen == w->gen_seen)
			pthread_cond_wait(&m->cv, &m->lock);
		if (m->quit)
			break;
		w->gen_seen = m->gen;
		pthread_mutex_unlock(&m->lock);

		if (w->scan)
			worker_scan(w);
		else
			w->ret = worker_chunk(w);
		if (w->ret) {
			atomic_store(&m->stop, true);
			rdmig_conn_abort(m->c, w->ret, rdmig_err_str(&w->err));
		}

		pthread_mutex_lock(&m->lock);
		m->done++;
		pthread_cond_broadcast(&m->cv);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static int workers_start(struct mig_src *m, struct rdmig_err *err)
{
	for (unsigned i = 0; i < m->nw; i++) {
		struct worker *w = &m->w[i];

		w->m = m;
		w->chan = i;
		w->err = (struct rdmig_err)RDMIG_ERR_INIT;
		/* A run of at most one stripe crosses at most one stripe boundary. */
		w->cap = 2 * RUNS_PER_CHUNK;
		w->runs = malloc(w->cap * sizeof(*w->runs));
		if (!w->runs)
			return rdmig_seterr(err, -ENOMEM, "out of memory for run lists");
		if (pthread_create(&w->th, NULL, worker_main, w))
			return rdmig_seterr(err, -EAGAIN, "cannot start worker thread %u", i);
		m->started++;
	}
	return 0;
}

static void workers_stop(struct mig_src *m)
{
	pthread_mutex_lock(&m->lock);
	m->quit = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 0; i < m->started; i++)
		pthread_join(m->w[i].th, NULL);
	for (unsigned i = 0; i < m->nw; i++)
		free(m->w[i].runs);
	m->started = 0;
}

/* Update progress figures and tell the caller, about five times a second. */
static void progress(struct mig_src *m)
{
	m->st.bytes_sent = atomic_load(&m->sent_bytes);
	m->st.pages_sent = atomic_load(&m->sent_pages);
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	rdmig_mig_emit(m->o, RDMIG_EV_PROGRESS, &m->st);
}

/*
 * Hand each worker its list, wait until all are done. Returns the first
 * worker error; cancel and timeouts stop the workers early.
 */
static int dispatch(struct mig_src *m, bool fence, uint64_t seq, bool scan, struct rdmig_err *err)
{
	uint64_t start = rdmig_now_ns();
	int timed_out = 0;
	struct timespec ts;
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->nw; i++) {
		m->w[i].fence = fence;
		m->w[i].seq = seq;
		m->w[i].scan = scan;
	}
	m->done = 0;
	m->gen++;
	pthread_cond_broadcast(&m->cv);
	while (m->done < m->nw) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += RDMIG_POLL_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&m->cv, &m->lock, &ts);
		if (m->done < m->nw) {
			pthread_mutex_unlock(&m->lock);
			if (cancelled(m) && !atomic_load(&m->stop)) {
				atomic_store(&m->stop, true);
				rdmig_conn_abort(m->c, -ECANCELED, "migration cancelled");
			}
			/*
			 * A send into a dead or lossy link can block far longer
			 * than the user allowed: enforce the limits here too, not
			 * only between rounds.
			 */
			if (!timed_out && !atomic_load(&m->stop)) {
				uint64_t now = rdmig_now_ns();

				if (now - m->t0 > m->o->timeout_ns)
					timed_out = 1;
				else if (now - start > m->o->progress_timeout_ns)
					timed_out = 2;
				if (timed_out) {
					atomic_store(&m->stop, true);
					rdmig_conn_abort(
					    m->c, -ETIMEDOUT,
					    timed_out == 1 ? "migration did not finish in time "
							     "(--timeout)"
							   : "no progress: a round did not finish "
							     "within --progress-timeout");
				}
			}
			progress(m);
			pthread_mutex_lock(&m->lock);
		}
	}
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 0; i < m->nw; i++) {
		int wret = m->w[i].ret;

		/*
		 * A worker that stood down because another one failed returns
		 * -ECANCELED: the other's error is the cause, not a cancel.
		 */
		if (wret && (!ret || (ret == -ECANCELED && wret != -ECANCELED))) {
			if (err && (!err->code || ret == -ECANCELED))
				*err = m->w[i].err;
			ret = wret;
		}
	}
	if (timed_out) {
		if (err)
			rdmig_err_clear(err);
		return rdmig_seterr(err, -ETIMEDOUT, "%s after %.1f s (round %u)",
				    timed_out == 1 ? "migration did not finish within --timeout"
						   : "no progress: a round did not finish within "
						     "--progress-timeout",
				    (double)(rdmig_now_ns() - m->t0) / 1e9, m->st.round);
	}
	if (!ret && cancelled(m))
		ret = rdmig_seterr(err, -ECANCELED, "migration cancelled");
	if (ret)
		rdmig_conn_failed(m->c, err);
	return ret;
}

/* ---- rounds ------------------------------------------------------------ */

/* A MANIFEST that is ready: send it now, or keep it until FINAL went (final round). */
static int manifest_out(struct mig_src *m, uint16_t type, const uint8_t *msg, size_t len,
			struct rdmig_err *err)
{
	size_t need;

	if (!m->deferring)
		return rdmig_ctrl_send(m->c, type, msg, len, err);
	need = m->defer_len + 8 + len;
	if (need > m->defer_cap) {
		size_t cap = m->defer_cap ? m->defer_cap : 1 << 16;
		uint8_t *p;

		while (cap < need)
			cap *= 2;
		p = realloc(m->defer, cap);
		if (!p)
			return rdmig_seterr(err, -ENOMEM, "out of memory for the final manifest");
		m->defer = p;
		m->defer_cap = cap;
	}
	rdmig_put_be32(m->defer + m->defer_len, type);
	rdmig_put_be32(m->defer + m->defer_len + 4, (uint32_t)len);
	memcpy(m->defer + m->defer_len + 8, msg, len);
	m->defer_len += 8 + len;
	return 0;
}

/* The final round's MANIFESTs and MANIFEST_END, kept while the round went out. */
static int manifest_flush(struct mig_src *m, struct rdmig_err *err)
{
	size_t off = 0;
	int ret = 0;

	while (!ret && off < m->defer_len) {
		uint16_t type = (uint16_t)rdmig_get_be32(m->defer + off);
		size_t len = rdmig_get_be32(m->defer + off + 4);

		off += 8 + len;
		/* The last one is MANIFEST_END: once it may have arrived, VERIFIED may come. */
		if (off >= m->defer_len)
			m->manifest_sent = true;
		ret = rdmig_ctrl_send(m->c, type, m->defer + off - len, len, err);
	}
	m->defer_len = 0;
	m->deferring = false;
	return ret;
}

/*
 * The checksums of the n runs just sent (the workers took them as they
 * wrote), as MANIFEST messages of `round`: O(pages sent), never O(guest).
 */
static int manifest_chunk(struct mig_src *m, uint32_t round, size_t n, uint64_t *pages,
			  struct rdmig_err *err)
{
	struct rdmig_manifest_out mo;
	int ret;

	rdmig_manifest_begin(&mo, m->mbuf, round);
	for (size_t i = 0; i < n; i++) {
		const struct rdmig_run *run = &m->plan[i];
		unsigned r = (unsigned)m->lreg_idx[run->lreg];
		uint64_t first = run->loff / RDMIG_PAGE_SIZE;
		uint32_t count = (uint32_t)(run->len / RDMIG_PAGE_SIZE);

		*pages += count;
		while (count) {
			uint32_t k =
			    rdmig_manifest_add(&mo, r, first, m->reg[r].sums + first, count);

			if (!k) {
				ret = manifest_out(m, RDMIG_EMSG_MANIFEST, mo.buf, mo.len, err);
				if (ret)
					return ret;
				rdmig_manifest_begin(&mo, m->mbuf, round);
				continue;
			}
			first += k;
			count -= k;
		}
	}
	return mo.groups ? manifest_out(m, RDMIG_EMSG_MANIFEST, mo.buf, mo.len, err) : 0;
}

/*
 * Send every page whose bit is set in the regions' bitmaps (cleared as they
 * are planned), spread over the workers, then fence every channel with seq;
 * the pages' checksums follow each chunk, and MANIFEST_END the round.
 */
static int send_round(struct mig_src *m, uint64_t seq, uint64_t *bytes_out, struct rdmig_err *err)
{
	uint32_t round = (uint32_t)(seq & ~RDMIG_SEQ_FINAL);
	unsigned r = 0;
	uint64_t page = 0, bytes = 0, pages = 0;
	uint8_t end[RDMIG_ROUND_MSG_LEN];
	int ret;

	for (;;) {
		size_t n = 0;
		bool last;

		while (r < m->nreg && n < RUNS_PER_CHUNK) {
			struct src_region *sr = &m->reg[r];
			uint64_t next;
			size_t got;

			got = rdmig_runs_from_bitmap(sr->bitmap, sr->pages, RDMIG_PAGE_SIZE,
						     sr->lreg, sr->rreg, page, MAX_RUN_BYTES,
						     m->plan + n, RUNS_PER_CHUNK - n, &next);
			n += got;
			page = next;
			if (page >= sr->pages) {
				memset(sr->bitmap, 0, sr->words * 8);
				r++;
				page = 0;
			}
		}
		last = r >= m->nreg;
		/*
		 * A page always travels on the same channel: channels are not
		 * ordered against each other, so a page sent on channel A in
		 * one round and on channel B in the next could land stale
		 * (A's older copy after B's newer one). Within one channel, RC
		 * and TCP keep order. Stripes of STRIPE_BYTES are dealt to the
		 * channels in turn (rdmig_stripe_chan), which also spreads
		 * every round evenly.
		 */
		for (unsigned i = 0; i < m->nw; i++)
			m->w[i].n = 0;
		for (size_t i = 0; i < n; i++) {
			struct rdmig_run run = m->plan[i];

			bytes += run.len;
			while (run.len) {
				uint64_t stripe = run.loff / STRIPE_BYTES;
				uint64_t room = (stripe + 1) * STRIPE_BYTES - run.loff;
				struct worker *w = &m->w[rdmig_stripe_chan(run.loff, m->nw)];
				struct rdmig_run *piece = &w->runs[w->n++];

				*piece = run;
				if (piece->len > room)
					piece->len = room;
				run.loff += piece->len;
				run.roff += piece->len;
				run.len -= piece->len;
			}
		}
		m->st.round_total = bytes;
		ret = dispatch(m, last, seq, false, err);
		if (ret)
			return ret;
		if (summing(m)) {
			ret = manifest_chunk(m, round, n, &pages, err);
			if (ret)
				return ret;
		}
		if (last)
			break;
	}
	*bytes_out = bytes;
	if (!summing(m))
		return 0;
	rdmig_msg_round_encode(end, round, pages);
	ret = manifest_out(m, RDMIG_EMSG_MANIFEST_END, end, sizeof(end), err);
	if (!ret && !m->deferring)
		m->ended_round = round;
	return ret;
}

static uint64_t count_bits(const struct mig_src *m)
{
	uint64_t n = 0;

	for (unsigned r = 0; r < m->nreg; r++)
		for (size_t i = 0; i < m->reg[r].words; i++)
			n += (uint64_t)__builtin_popcountll(m->reg[r].bitmap[i]);
	return n;
}

/* Bulk round plan: every page that is not zero, found by the workers in parallel. */
static int plan_bulk(struct mig_src *m, struct rdmig_err *err)
{
	uint64_t t = rdmig_now_ns();
	int ret = dispatch(m, false, 0, true, err);

	for (unsigned i = 0; i < m->nw; i++)
		m->st.zero_pages += m->w[i].zero;
	m->st.setup.zero_scan_ms = ms_since(t);
	return ret;
}

/*
 * Read what the destination said meanwhile, waiting up to timeout_ms for
 * the first message: ROUND_VERIFIED moves dst_round; CANCEL or VERIFY_FAIL
 * end the migration.
 */
static int dst_refused(struct mig_src *m, uint16_t type, const uint8_t *buf, size_t len,
		       struct rdmig_err *err);

static int poll_dst(struct mig_src *m, int timeout_ms, struct rdmig_err *err)
{
	uint8_t buf[512];
	uint16_t type;
	size_t len;
	uint32_t round;
	uint64_t checked;
	int ret;

	for (;;) {
		ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, timeout_ms, err);
		if (ret == -ETIMEDOUT) {
			rdmig_err_clear(err);
			return 0;
		}
		if (ret)
			return ret;
		if (type == RDMIG_EMSG_CANCEL || type == RDMIG_EMSG_VERIFY_FAIL)
			return dst_refused(m, type, buf, len, err);
		if (type != RDMIG_EMSG_ROUND_VERIFIED)
			return rdmig_seterr(err, -EPROTO,
					    "unexpected message 0x%x from the destination during "
					    "the rounds",
					    type);
		ret = rdmig_msg_round_decode(buf, len, "ROUND_VERIFIED", &round, &checked, err);
		if (ret)
			return ret;
		if (round > m->ended_round)
			return rdmig_seterr(err, -EPROTO,
					    "ROUND_VERIFIED for round %u, only %u rounds ended",
					    round, m->ended_round);
		if (round > m->dst_round)
			m->dst_round = round;
		timeout_ms = 0;
	}
}

/* Rounds mode: has the destination checked everything sent so far? */
static bool dst_caught_up(const struct mig_src *m)
{
	return m->o->verify != RDMIG_VERIFY_ROUNDS || m->dst_round >= m->ended_round;
}

static void set_state(struct mig_src *m, enum rdmig_mig_state s)
{
	m->st.state = s;
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	/* The caller hears every state as an event; the log only when it asks for detail. */
	log_debug("source: %s", rdmig_mig_state_name(s));
	rdmig_mig_emit(m->o, RDMIG_EV_STATE, &m->st);
}

/*
 * Switchover cost besides copying: a few round trips, and in full mode the
 * destination's pass over the whole guest. In rounds mode the final check
 * covers only the final round's pages, which the copy term already scales
 * with.
 */
static double estimate_fixed_s(const struct mig_src *m)
{
	struct timespec a, b;
	uint64_t t, n = 0, sink = 0;
	const uint64_t sample = 8ull << 20;

	if (m->o->verify != RDMIG_VERIFY_FULL)
		return 0.01;
	/* CPU time, not wall time: a busy host must not make the estimate explode. */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	for (unsigned r = 0; r < m->nreg && n < sample; r++)
		for (uint64_t p = 0; p < m->reg[r].pages && n < sample; p++, n += RDMIG_PAGE_SIZE)
			sink ^= rdmig_page_sum(m->reg[r].addr + p * RDMIG_PAGE_SIZE);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	t = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ull + (uint64_t)b.tv_nsec -
	    (uint64_t)a.tv_nsec + (sink & 1);
	if (!n)
		return 0.01;
	/* The destination hashes the whole guest before it commits. */
	return ((double)t / 1e9) * ((double)m->ram / (double)n) + 0.01;
}

/* The VM may not throttle (no op): then the policy only predicts. */
static void set_throttle(struct mig_src *m, unsigned permille)
{
	if (m->vm->ops->throttle)
		m->vm->ops->throttle(m->vm->ctx, permille);
}

/* ---- setup ------------------------------------------------------------- */

/* The VMM's description, checked before anything is registered or sent. */
static int vm_check(const struct rdmig_vm *vm, struct rdmig_err *err)
{
	if (!vm || !vm->ops || !vm->ops->pause || !vm->ops->resume)
		return rdmig_seterr(err, -EINVAL, "the VM needs ops with pause and resume");
	if (vm->nregions < 1 || vm->nregions > RDMIG_MIG_MAX_REGIONS)
		return rdmig_seterr(err, -EINVAL, "the VM has %u RAM regions, expected 1 to %d",
				    vm->nregions, RDMIG_MIG_MAX_REGIONS);
	if (vm->config_len > RDMIG_VM_CONFIG_MAX || (vm->config_len && !vm->config))
		return rdmig_seterr(err, -EINVAL,
				    "the VM's config blob is %zu bytes, at most %u (and not NULL)",
				    vm->config_len, RDMIG_VM_CONFIG_MAX);
	for (unsigned r = 0; r < vm->nregions; r++) {
		const struct rdmig_vm_region *vr = &vm->regions[r];

		if (!vr->addr || (uintptr_t)vr->addr % RDMIG_PAGE_SIZE || !vr->len ||
		    vr->len % RDMIG_PAGE_SIZE)
			return rdmig_seterr(err, -EINVAL,
					    "VM RAM region %u (%p, %" PRIu64
					    " bytes) is not page-aligned memory of whole pages",
					    r, vr->addr, vr->len);
	}
	return 0;
}

static int setup(struct mig_src *m, struct rdmig_err *err)
{
	struct rdmig_msg_setup s = {0};
	static_assert(RDMIG_SETUP_MAX_LEN <= RDMIG_CTRL_MAX_PAYLOAD, "SETUP fits one message");
	uint8_t buf[RDMIG_SETUP_MAX_LEN + 300]; /* SETUP out; SETUP_OK or CANCEL back */
	uint16_t type;
	uint64_t t;
	size_t len;
	int ret;

	m->nreg = m->vm->nregions;
	s.version = RDMIG_ENGINE_VERSION;
	s.page_size = RDMIG_PAGE_SIZE;
	s.nregions = m->nreg;
	s.channels = rdmig_conn_channels(m->c);
	s.config_len = (uint32_t)m->vm->config_len;
	if (s.config_len)
		memcpy(s.config, m->vm->config, s.config_len);
	ret = rdmig_mig_new_id(m->id, err);
	if (ret)
		return ret;
	memcpy(s.id, m->id, RDMIG_MIG_ID_LEN);
	s.verify = m->o->verify;
	m->st.verify = m->o->verify;
	rdmig_mig_id_str(m->id, m->ids);
	snprintf(m->st.migration_id, sizeof(m->st.migration_id), "%s", m->ids);
	for (unsigned r = 0; r < m->nreg; r++) {
		const struct rdmig_vm_region *gr = &m->vm->regions[r];
		struct src_region *sr = &m->reg[r];
		char name[32];

		s.region_len[r] = gr->len;
		/* Where the region lives now, so the destination can put it there too. */
		s.region_node[r] =
		    gr->node >= 0 ? gr->node : rdmig_numa_region_node(gr->addr, gr->len, 256, NULL);
		if (s.region_node[r] > RDMIG_SETUP_MAX_NODE)
			s.region_node[r] = -1;
		sr->addr = gr->addr;
		sr->len = gr->len;
		sr->pages = gr->len / RDMIG_PAGE_SIZE;
		sr->words = (sr->pages + 63) / 64;
		sr->bitmap = calloc(sr->words, 8);
		sr->sums = calloc(sr->pages, sizeof(uint64_t));
		if (!sr->bitmap || !sr->sums)
			return rdmig_seterr(err, -ENOMEM, "out of memory for dirty bitmaps");
		m->st.setup.overhead_bytes += sr->words * 8 + sr->pages * sizeof(uint64_t);
		m->ram += gr->len;
		m->pages += sr->pages;
		t = rdmig_now_ns();
		if (gr->name)
			snprintf(name, sizeof(name), "%s", gr->name);
		else
			snprintf(name, sizeof(name), "ram%u", r);
		ret = rdmig_reg(m->c, name, gr->addr, gr->len, 0, &sr->lreg, err);
		m->st.setup.register_ms += ms_since(t);
		if (ret)
			return ret;
		m->lreg_idx[sr->lreg] = (int8_t)r;
	}
	m->st.ram_bytes = m->ram;
	len = rdmig_msg_setup_encode(buf, &s);
	ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_SETUP, buf, len, err);
	if (ret)
		return ret;
	/*
	 * The destination sends its LAYOUT, then SETUP_OK; or CANCEL with its
	 * reason when it refuses (memlock, size). The transport keeps the layout
	 * when it passes by, so waiting for the application message sees both.
	 */
	ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, 60000, err);
	if (ret)
		return ret;
	if (type == RDMIG_EMSG_CANCEL) {
		char why[260];
		int code;

		if (rdmig_msg_cancel_decode(buf, len, &code, why, sizeof(why), err))
			return -EPROTO;
		return rdmig_seterr(err, code, "destination refused: %s", why);
	}
	if (type != RDMIG_EMSG_SETUP_OK)
		return rdmig_seterr(err, -EPROTO, "expected SETUP_OK, got message 0x%x", type);
	/* The layout must match what we described, region by region. */
	if (rdmig_remote_count(m->c) != m->nreg)
		return rdmig_seterr(err, -EPROTO,
				    "destination exposed %u regions for a guest of %u",
				    rdmig_remote_count(m->c), m->nreg);
	for (unsigned r = 0; r < m->nreg; r++) {
		const struct rdmig_remote_region *rr = rdmig_remote_get(m->c, r);

		if (rr->len != m->reg[r].len)
			return rdmig_seterr(err, -EPROTO,
					    "destination region %u is %" PRIu64
					    " bytes, source %" PRIu64,
					    r, rr->len, m->reg[r].len);
		m->reg[r].rreg = rr->id;
	}
	m->plan = malloc(RUNS_PER_CHUNK * sizeof(*m->plan));
	m->mbuf = malloc(RDMIG_MANIFEST_MAX);
	if (!m->plan || !m->mbuf)
		return rdmig_seterr(err, -ENOMEM, "out of memory for the round plan");
	m->st.setup.overhead_fixed_bytes = RUNS_PER_CHUNK * sizeof(*m->plan) + RDMIG_MANIFEST_MAX +
					   m->nw * 2 * RUNS_PER_CHUNK * sizeof(struct rdmig_run);
	return 0;
}

/*
 * Soft-dirty harvests must stop the guest's writers around read-and-clear.
 * Only resume a guest this hook paused: at switchover the guest stays stopped.
 */
static int pause_writers(void *ctx, bool pause, struct rdmig_err *err)
{
	struct mig_src *m = ctx;

	if (pause && !m->paused && m->vm->running) {
		int ret = m->vm->ops->pause(m->vm->ctx, err);

		if (ret)
			return ret;
		m->hook_paused = true;
	} else if (!pause && m->hook_paused) {
		m->hook_paused = false;
		m->vm->ops->resume(m->vm->ctx);
	}
	return 0;
}

static int dirty_start(struct mig_src *m, struct rdmig_err *err)
{
	struct rdmig_dirty_region dr[RDMIG_MIG_MAX_REGIONS];
	bool vmm_log = m->vm->ops->dirty_log != NULL, huge = false;
	enum rdmig_dirty_kind kind;

	for (unsigned r = 0; r < m->nreg; r++)
		huge |= m->vm->regions[r].hugepages;
	/* A VMM that logs its own writes (KVM) is the only one that sees them all. */
	if (m->o->cold)
		kind = RDMIG_DIRTY_NONE;
	else if (m->o->dirty_auto)
		kind = vmm_log ? RDMIG_DIRTY_VMM_LOG : rdmig_dirty_best(false);
	else
		kind = m->o->dirty_source;
	if (vmm_log && kind != RDMIG_DIRTY_VMM_LOG && kind != RDMIG_DIRTY_NONE)
		return rdmig_seterr(err, -EINVAL,
				    "the VM has its own dirty log: --dirty-source %s would miss "
				    "the writes only it sees (use auto or vmm-bitmap)",
				    rdmig_dirty_kind_name(kind));
	if (kind == RDMIG_DIRTY_NONE && !m->o->cold && m->vm->running)
		return rdmig_seterr(err, -ENOTSUP,
				    "no dirty-page tracking on this kernel for a running guest: "
				    "use --cold (stop the guest and copy once), or a kernel with "
				    "userfaultfd write-protect (6.7+) or soft-dirty");
	/*
	 * The kernel leaves pages pinned for RDMA soft-dirty forever (clear_refs
	 * skips pinned PTEs), so on rdma every round would be the whole guest.
	 */
	if (kind == RDMIG_DIRTY_SOFT_DIRTY && rdmig_conn_backend(m->c) == RDMIG_BACKEND_RDMA)
		return rdmig_seterr(err, -ENOTSUP,
				    "soft-dirty tracking cannot see writes to memory registered "
				    "for RDMA (the kernel never clears pinned pages): use a kernel "
				    "with userfaultfd write-protect (Linux 6.7+), the tcp backend, "
				    "or --cold");
	/* soft-dirty sees a transparent huge page as one unit: 2 MiB per write. */
	if (kind == RDMIG_DIRTY_SOFT_DIRTY && huge)
		return rdmig_seterr(err, -ENOTSUP,
				    "soft-dirty tracking cannot be used with huge pages (it "
				    "tracks a 2 MiB page as one unit, so the guest would never "
				    "converge): drop --hugepages, or use --dirty-source uffd-wp "
				    "(Linux 6.7+) or --cold");
	for (unsigned r = 0; r < m->nreg; r++) {
		dr[r].addr = m->reg[r].addr;
		dr[r].len = m->reg[r].len;
		dr[r].bitmap = m->reg[r].bitmap;
	}
	m->st.dirty_source = kind;
	int ret = rdmig_dirty_create(kind, dr, m->nreg, RDMIG_PAGE_SIZE, &m->dirty, err);
	if (ret)
		return ret;
	m->dirty->pause_writers = pause_writers;
	m->dirty->pause_ctx = m;
	m->dirty->vmm_harvest = m->vm->ops->dirty_log;
	m->dirty->vmm_ctx = m->vm->ctx;
	return rdmig_dirty_start(m->dirty, err);
}

/* ---- the state machine ------------------------------------------------- */

/* The destination's CANCEL or VERIFY_FAIL as this side's error; it discards by itself. */
static int dst_refused(struct mig_src *m, uint16_t type, const uint8_t *buf, size_t len,
		       struct rdmig_err *err)
{
	struct rdmig_msg_verify_fail f;
	char why[260];
	int code, ret;

	m->dst_gave_up = true;
	if (type == RDMIG_EMSG_CANCEL) {
		if (rdmig_msg_cancel_decode(buf, len, &code, why, sizeof(why), err))
			return -EPROTO;
		return rdmig_seterr(err, code, "destination cancelled: %s", why);
	}
	ret = rdmig_msg_verify_fail_decode(buf, len, &f, err);
	if (ret)
		return ret;
	return rdmig_seterr(
	    err, -EILSEQ,
	    "destination verify failed: region %u page %" PRIu64 " (offset 0x%" PRIx64
	    ") has checksum %016" PRIx64 ", source sent %016" PRIx64 "; %" PRIu64 " page(s) differ",
	    f.region, f.page, f.page * RDMIG_PAGE_SIZE, f.found, f.expected, f.mismatches);
}

/*
 * Wait for VERIFIED until `deadline`. The source has not decided yet, so a
 * cancel still counts; the destination's CANCEL or VERIFY_FAIL end it.
 */
static int await_verified(struct mig_src *m, uint64_t deadline, struct rdmig_err *err)
{
	uint8_t buf[512];
	uint16_t type;
	size_t len;
	int ret;

	for (;;) {
		if (cancelled(m))
			return rdmig_seterr(err, -ECANCELED, "migration cancelled");
		ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, RDMIG_POLL_MS, err);
		if (ret == -ETIMEDOUT) {
			rdmig_err_clear(err);
			if (rdmig_now_ns() > deadline)
				return rdmig_seterr(err, -ETIMEDOUT,
						    "the destination did not verify within %.0f s "
						    "(--commit-timeout)",
						    (double)m->o->commit_timeout_ns / 1e9);
			continue;
		}
		if (ret)
			return ret;
		if (type == RDMIG_EMSG_VERIFIED) {
			struct rdmig_msg_verified v;

			ret = rdmig_msg_verified_decode(buf, len, &v, err);
			if (ret)
				return ret;
			m->st.verified_pages = v.pages;
			m->st.down.fences_ms = (double)v.fence_us / 1e3;
			m->st.down.revoke_ms = (double)v.revoke_us / 1e3;
			m->st.down.verify_ms = (double)v.verify_us / 1e3;
			return 0;
		}
		/* Acknowledgements of the last rounds, overtaken by the switchover. */
		if (type == RDMIG_EMSG_ROUND_VERIFIED)
			continue;
		if (type == RDMIG_EMSG_VERIFY_FAIL || type == RDMIG_EMSG_CANCEL)
			return dst_refused(m, type, buf, len, err);
		return rdmig_seterr(err, -EPROTO,
				    "unexpected message 0x%x while waiting for VERIFIED", type);
	}
}

/* Decided GO: wait for GO_ACK. Any failure leaves the outcome to settle. */
static int await_go_ack(struct mig_src *m, struct rdmig_err *err)
{
	uint8_t buf[300];
	uint16_t type;
	size_t len;
	int ret;

	ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len,
			      (int)(m->o->commit_timeout_ns / 1000000), err);
	if (ret == -ETIMEDOUT) {
		rdmig_err_clear(err);
		return rdmig_seterr(err, -ETIMEDOUT, "no GO_ACK within %.0f s (--commit-timeout)",
				    (double)m->o->commit_timeout_ns / 1e9);
	}
	if (ret)
		return ret;
	if (type != RDMIG_EMSG_GO_ACK)
		return rdmig_seterr(err, -EPROTO, "expected GO_ACK, got message 0x%x", type);
	return rdmig_msg_id_decode(buf, len, m->id, "GO_ACK", err);
}

/*
 * The two-step hand-over, from FINAL on (rdmig/migrate.h). Returns 0 once GO_ACK
 * came; any error before `go` is an abort, after it a cut hand-over.
 */
static int handover(struct mig_src *m, const struct rdmig_msg_final *fin, struct rdmig_err *err)
{
	const struct rdmig_mig_opts *o = m->o;
	uint64_t deadline, t = rdmig_now_ns();
	uint8_t *buf;
	size_t len;
	int ret;

	if (rdmig_mig_test_fault(o, m->c, RDMIG_STEP_FINAL, "source"))
		return rdmig_seterr(err, -ECONNABORTED, "test: dropped instead of FINAL");
	buf = malloc(RDMIG_CTRL_MAX_PAYLOAD);
	if (!buf)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	len = rdmig_msg_final_encode(buf, fin);
	/* Unverified, FINAL (with the rest of the state) closes the hand-over. */
	if (!summing(m))
		m->manifest_sent = true;
	ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_FINAL, buf, len, err);
	/* A state longer than FINAL holds follows in order, before the manifest. */
	for (uint32_t off = RDMIG_FINAL_INLINE; !ret && off < fin->state_len;) {
		size_t n = fin->state_len - off;

		if (n > RDMIG_STATE_CHUNK)
			n = RDMIG_STATE_CHUNK;
		len = rdmig_msg_state_encode(buf, off, fin->state + off, n);
		ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_STATE, buf, len, err);
		off += (uint32_t)n;
	}
	free(buf);
	if (ret)
		return ret;

	set_state(m, RDMIG_MIG_VERIFY);
	if (rdmig_mig_test_fault(o, m->c, RDMIG_STEP_MANIFEST, "source"))
		return rdmig_seterr(err, -ECONNABORTED, "test: dropped instead of the manifest");
	ret = manifest_flush(m, err);
	if (ret)
		return ret;
	m->st.down.handover_ms = ms_since(t);
	t = rdmig_now_ns();
	deadline = t + o->commit_timeout_ns;
	ret = await_verified(m, deadline, err);
	if (ret)
		return ret;
	m->st.down.verified_ms = ms_since(t);
	t = rdmig_now_ns();
	rdmig_mig_test_fault(o, m->c, RDMIG_STEP_VERIFIED, "source");
	/* The decision is taken now: whatever held us up since VERIFIED counts. */
	if (rdmig_conn_failed(m->c, err))
		return err && err->code ? err->code : -ECONNRESET;
	if (rdmig_now_ns() > deadline)
		return rdmig_seterr(err, -ETIMEDOUT,
				    "VERIFIED came, but the commit deadline (%.0f s) had passed "
				    "before this side could decide",
				    (double)o->commit_timeout_ns / 1e9);
	if (cancelled(m))
		return rdmig_seterr(err, -ECANCELED, "migration cancelled");

	m->go = true;
	log_info("migration %s: decided GO", m->ids);
	if (o->dump_ram) {
		struct rdmig_err derr = RDMIG_ERR_INIT;

		/* Paused since the final harvest: this is what the destination holds. */
		if (rdmig_mig_dump(m->vm->regions, m->nreg, o->dump_ram, &derr))
			log_err("%s", rdmig_err_str(&derr));
	}
	set_state(m, RDMIG_MIG_COMMIT);
	if (!rdmig_mig_test_fault(o, m->c, RDMIG_STEP_GO, "source")) {
		uint8_t b[RDMIG_MIG_ID_LEN];

		len = rdmig_msg_id_encode(b, m->id);
		ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_GO, b, len, err);
		if (ret)
			return ret;
	}
	ret = await_go_ack(m, err);
	if (ret)
		return ret;
	/* The guest runs at the destination: the downtime ends here, not after our cleanup. */
	m->st.down.commit_ms = ms_since(t);
	m->st.downtime_ms = ms_since(m->t_pause);
	if (!rdmig_mig_test_fault(o, m->c, RDMIG_STEP_GO_ACK, "source")) {
		uint8_t b[RDMIG_MIG_ID_LEN];

		len = rdmig_msg_id_encode(b, m->id);
		/* Only spares the destination its wait: the guest runs there either way. */
		rdmig_ctrl_send(m->c, RDMIG_EMSG_DONE, b, len, NULL);
	}
	return 0;
}

static int run(struct mig_src *m, struct rdmig_err *err)
{
	const struct rdmig_mig_opts *o = m->o;
	struct rdmig_conv cv;
	uint64_t round_bytes, t_round, t_harvest, t_min = 0, min_dirty = UINT64_MAX, dirty;
	struct rdmig_msg_final fin = {0};
	int ret;

	set_state(m, RDMIG_MIG_SETUP);
	ret = setup(m, err);
	if (ret)
		return ret;
	if (cancelled(m))
		return rdmig_seterr(err, -ECANCELED, "migration cancelled");
	if (o->cold && m->vm->running) {
		ret = m->vm->ops->pause(m->vm->ctx, err);
		if (ret)
			return ret;
		m->paused = true;
	}
	ret = dirty_start(m, err);
	if (ret)
		return ret;
	ret = workers_start(m, err);
	if (ret)
		return ret;
	rdmig_conv_init(&cv, (double)o->downtime_limit_ns / 1e9, estimate_fixed_s(m), o->throttle,
			o->max_throttle);

	/* Round 1: everything that is not zero. */
	set_state(m, RDMIG_MIG_BULK);
	m->st.round = 1;
	ret = plan_bulk(m, err);
	if (ret)
		return ret;
	t_harvest = rdmig_now_ns();
	t_round = t_harvest;
	ret = send_round(m, 1, &round_bytes, err);
	if (ret)
		return ret;
	m->st.setup.bulk_ms = ms_since(t_round);
	m->st.setup.bulk_bytes = round_bytes;

	if (!o->cold) {
		set_state(m, RDMIG_MIG_DIRTY);
		for (;;) {
			struct rdmig_conv_obs obs;
			uint64_t now = rdmig_now_ns();

			/* Tiny rounds back to back would only burn CPU: give the guest 5 ms. */
			if (now - t_harvest < MIN_ROUND_NS) {
				usleep((useconds_t)((MIN_ROUND_NS - (now - t_harvest)) / 1000));
				now = rdmig_now_ns();
			}

			obs.sent_bytes = round_bytes;
			obs.round_s = (double)(now - t_round) / 1e9;
			obs.throttle = m->st.throttle;
			ret = rdmig_dirty_harvest(m->dirty, err);
			if (ret)
				return ret;
			dirty = count_bits(m) * RDMIG_PAGE_SIZE;
			obs.dirty_bytes = dirty;
			obs.dirty_s = (double)(rdmig_now_ns() - t_harvest) / 1e9;
			t_harvest = rdmig_now_ns();
			rdmig_conv_observe(&cv, &obs);

			m->st.round_bytes = round_bytes;
			m->st.dirty_bytes = dirty;
			m->st.bandwidth = cv.bw;
			m->st.dirty_rate = cv.rate * (1.0 - (double)m->st.throttle / 1000.0);
			m->st.predicted_downtime_ms = cv.predicted_s * 1e3;
			progress(m);
			rdmig_mig_emit(o, RDMIG_EV_ROUND, &m->st);

			ret = poll_dst(m, 0, err);
			if (ret)
				return ret;
			/*
			 * Rounds mode: switch over only once the destination has
			 * checked what it holds, so that the downtime checks the
			 * final round alone. Waiting here costs the guest nothing;
			 * while the destination is behind, rounds go on.
			 */
			if (cv.switch_now && m->st.round >= o->min_rounds && !dst_caught_up(m)) {
				ret = poll_dst(m, ACK_WAIT_MS, err);
				if (ret)
					return ret;
				/* The dirty set is small enough: the destination is what
				 * progresses. */
				t_min = t_harvest;
			}
			if (cv.switch_now && m->st.round >= o->min_rounds && dst_caught_up(m))
				break;
			if (cancelled(m))
				return rdmig_seterr(err, -ECANCELED, "migration cancelled");
			if (dirty < min_dirty) {
				min_dirty = dirty;
				t_min = t_harvest;
			} else if (t_harvest - t_min > o->progress_timeout_ns) {
				return rdmig_seterr(
				    err, -ETIMEDOUT,
				    "no progress: the dirty set has not shrunk below "
				    "%" PRIu64 " bytes for %.0f s (dirty rate %.1f MiB/s, "
				    "bandwidth %.1f MiB/s): raise --max-bandwidth, the "
				    "downtime limit, or allow more throttling",
				    min_dirty, (double)o->progress_timeout_ns / 1e9,
				    m->st.dirty_rate / 1048576, cv.bw / 1048576);
			}
			if (rdmig_now_ns() - m->t0 > o->timeout_ns)
				return rdmig_seterr(err, -ETIMEDOUT,
						    "migration did not finish within %.0f s",
						    (double)o->timeout_ns / 1e9);
			if (o->max_rounds && m->st.round >= o->max_rounds)
				return rdmig_seterr(err, -ETIMEDOUT,
						    "no convergence after %u rounds (predicted "
						    "downtime %.0f ms, limit %.0f ms)",
						    m->st.round, cv.predicted_s * 1e3,
						    (double)o->downtime_limit_ns / 1e6);

			if (cv.throttle != m->st.throttle) {
				m->st.throttle = cv.throttle;
				if (cv.throttle > m->st.max_throttle)
					m->st.max_throttle = cv.throttle;
				set_throttle(m, cv.throttle);
			}
			m->st.round++;
			t_round = rdmig_now_ns();
			ret = send_round(m, m->st.round, &round_bytes, err);
			if (ret)
				return ret;
		}
	}

	/* Switchover: stop the guest, send what is left, hand over the vCPUs. */
	set_state(m, RDMIG_MIG_SWITCHOVER);
	m->t_pause = rdmig_now_ns();
	if (!m->paused) {
		ret = m->vm->ops->pause(m->vm->ctx, err);
		if (ret)
			return ret;
		m->paused = true;
	}
	set_throttle(m, 0);
	m->st.throttle = 0;
	ret = rdmig_dirty_harvest(m->dirty, err);
	if (ret)
		return ret;
	m->st.down.harvest_ms = ms_since(m->t_pause);
	set_state(m, RDMIG_MIG_FINAL_COPY);
	m->st.round++;
	t_round = rdmig_now_ns();
	/* Its checksums follow FINAL (the hand-over's order), so keep them for now. */
	m->deferring = true;
	ret = send_round(m, RDMIG_SEQ_FINAL | m->st.round, &round_bytes, err);
	if (ret)
		return ret;
	m->st.down.final_copy_ms = ms_since(t_round);
	m->st.down.final_pages = round_bytes / RDMIG_PAGE_SIZE;
	fin.rounds = m->st.round;
	fin.final_seq = RDMIG_SEQ_FINAL | m->st.round;
	if (m->vm->ops->save_state) {
		size_t slen = 0;

		m->state = malloc(RDMIG_VM_STATE_MAX);
		if (!m->state)
			return rdmig_seterr(err, -ENOMEM, "out of memory for the VM's state");
		ret = m->vm->ops->save_state(m->vm->ctx, m->state, RDMIG_VM_STATE_MAX, &slen, err);
		if (!ret && slen > RDMIG_VM_STATE_MAX)
			ret = rdmig_seterr(err, -EOVERFLOW,
					   "the VM saved %zu bytes of state, at most %u", slen,
					   RDMIG_VM_STATE_MAX);
		if (ret) {
			rdmig_err_prefix(err, "saving the VM's state");
			return ret;
		}
		fin.state = m->state;
		fin.state_len = (uint32_t)slen;
	}
	ret = handover(m, &fin, err);
	if (ret)
		return ret;
	return 0;
}

static void teardown(struct mig_src *m)
{
	workers_stop(m);
	if (m->dirty)
		rdmig_dirty_destroy(m->dirty);
	for (unsigned r = 0; r < RDMIG_MIG_MAX_REGIONS; r++) {
		free(m->reg[r].bitmap);
		free(m->reg[r].sums);
	}
	free(m->plan);
	free(m->mbuf);
	free(m->defer);
	free(m->state);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cv);
}

/*
 * Aborting after the manifest: is the destination still on this connection?
 * One that gave up waiting for GO has closed it and waits for RESOLVE
 * instead; a CANCEL sent into the closed connection would never reach it.
 * Reading what is already here tells (a late VERIFIED is dropped: the
 * decision is taken).
 */
static void probe_dst(struct mig_src *m)
{
	uint8_t buf[512];
	uint16_t type;
	size_t len;

	if (rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, 0, NULL))
		return;
	if (type == RDMIG_EMSG_CANCEL || type == RDMIG_EMSG_VERIFY_FAIL)
		m->dst_gave_up = true;
}

/*
 * Decided GO, and the hand-over was cut (the cause in err): settle it. 0 when
 * the destination runs the guest; RDMIG_MIG_EUNKNOWN when it could not be
 * told; an error with `go` cleared when it says it discarded the guest, so
 * the guest may run here again.
 */
static int settle_go(struct mig_src *m, struct rdmig_err *err)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	enum rdmig_dst_outcome out;
	char cause[RDMIG_ERR_MSG_MAX];

	snprintf(cause, sizeof(cause), "%s", rdmig_err_str(err));
	log_warn("migration %s: decided GO, then %s: settling (up to %.0f s)", m->ids, cause,
		 (double)m->o->commit_grace_ns / 1e9);
	set_state(m, RDMIG_MIG_SETTLING);
	rdmig_err_clear(err);
	if (rdmig_settle_src(m->o, m->id, RDMIG_DECIDED_GO, &out, &e))
		return rdmig_seterr(err, RDMIG_MIG_EUNKNOWN,
				    "outcome unknown for migration %s: decided GO, then %s; %s. "
				    "The guest stays paused here",
				    m->ids, cause, rdmig_err_str(&e));
	if (out == RDMIG_DST_RUNNING)
		return 0;
	/* Only a destination that never started it says so: it may run here again. */
	m->go = false;
	m->dst_gave_up = true;
	return rdmig_seterr(err, -ECONNABORTED,
			    "the destination discarded migration %s after GO: the guest runs here",
			    m->ids);
}

/*
 * Aborted after the manifest went, on a connection that failed: the
 * destination may be prepared and waiting for word. Best effort: the guest
 * runs here already, this only spares the destination its grace.
 */
static void settle_aborted(struct mig_src *m)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	enum rdmig_dst_outcome out;

	if (rdmig_settle_src(m->o, m->id, RDMIG_DECIDED_ABORTED, &out, &e))
		log_warn("migration %s: could not tell the destination that it was aborted: %s",
			 m->ids, rdmig_err_str(&e));
}

int rdmig_migrate_source(struct rdmig_conn *c, const struct rdmig_vm *vm,
			 const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
			 struct rdmig_err *err)
{
	struct mig_src *m;
	int ret;

	/* The engine's own limits too, for callers that did not ask first. */
	ret = rdmig_mig_opts_check(opts, rdmig_conn_backend(c), NULL, err);
	if (!ret)
		ret = vm_check(vm, err);
	if (ret)
		return ret;
	m = calloc(1, sizeof(*m));
	if (!m)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	m->c = c;
	m->vm = vm;
	m->o = opts;
	m->nw = rdmig_conn_channels(c);
	m->t0 = rdmig_now_ns();
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cv, NULL);

	ret = run(m, err);
	if (ret && !m->go && ret != -ECANCELED && cancelled(m)) {
		/* The cancel caused whatever failed last (e.g. an aborted connection). */
		rdmig_err_clear(err);
		ret = rdmig_seterr(err, -ECANCELED, "migration cancelled");
	}
	if (ret && !m->go) {
		uint8_t b[300];
		size_t n;

		if (m->manifest_sent && !m->dst_gave_up)
			probe_dst(m);
		/* Tell the destination to discard; it may be gone already. */
		n = rdmig_msg_cancel_encode(b, ret, rdmig_err_str(err));
		if (!rdmig_conn_failed(c, NULL) &&
		    !rdmig_ctrl_send(c, RDMIG_EMSG_CANCEL, b, n, NULL))
			m->dst_gave_up = true; /* it will read CANCEL, prepared or not */
	}
	if (ret) {
		atomic_store(&m->stop, true);
		rdmig_conn_abort(c, ret, rdmig_err_str(err));
	}
	if (m->dirty && m->dirty->harvests && m->ram)
		m->st.harvest_ms_per_gib = (double)m->dirty->harvest_ns / 1e6 /
					   (double)m->dirty->harvests /
					   ((double)m->ram / (1ull << 30));
	teardown(m);
	/* Local registrations go either way; the guest keeps its memory. */
	rdmig_revoke(c);
	if (ret && m->go)
		ret = settle_go(m, err);
	if (ret && !m->go) {
		/* The source guest carries on as if nothing happened. */
		set_throttle(m, 0);
		if (m->paused)
			vm->ops->resume(vm->ctx);
		m->st.throttle = 0;
		m->st.state = ret == -ECANCELED ? RDMIG_MIG_CANCELLED : RDMIG_MIG_FAILED;
		if (m->manifest_sent && !m->dst_gave_up)
			settle_aborted(m);
	} else if (ret) {
		/* Decided GO, not confirmed: paused here, for an operator to decide. */
		m->st.state = RDMIG_MIG_UNKNOWN;
	} else {
		/* Set at GO_ACK; a settled hand-over ends when the destination said it runs. */
		if (!m->st.downtime_ms)
			m->st.downtime_ms = ms_since(m->t_pause);
		m->st.state = RDMIG_MIG_COMPLETED;
	}
	m->st.bytes_sent = atomic_load(&m->sent_bytes);
	m->st.pages_sent = atomic_load(&m->sent_pages);
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	rdmig_mig_emit(opts, RDMIG_EV_STATE, &m->st);
	if (stats)
		*stats = m->st;
	free(m);
	return ret;
}
