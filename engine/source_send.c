/* SPDX-License-Identifier: MIT */
/*
 * The source's data path: one worker thread per channel posts its share of
 * a round's runs and fences them, and the caller's thread plans each round
 * (source.c) and builds its MANIFEST from the checksums the workers took.
 *
 * A page's stripe picks its channel, so a page sent in two rounds goes on
 * the same queue both times and the later write lands last.
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
#include "log.h"
#include "plan.h"
#include "source_int.h"

/* Largest single write: moderate sizes suit software RDMA devices too. */
#define MAX_RUN_BYTES RDMIG_STRIPE_BYTES
/* Pages of one stripe always go on the same channel (see src_send_round). */
#define STRIPE_BYTES RDMIG_STRIPE_BYTES
/* Runs handed to one rdmig_write call. */
#define WRITE_BATCH 32

/* Update progress figures and tell the caller, about five times a second. */
void src_progress(struct mig_src *m)
{
	m->st.bytes_sent = atomic_load(&m->sent_bytes);
	m->st.pages_sent = atomic_load(&m->sent_pages);
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	rdmig_mig_emit(m->o, RDMIG_EV_PROGRESS, &m->st);
}

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

int src_workers_start(struct mig_src *m, struct rdmig_err *err)
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

void src_workers_stop(struct mig_src *m)
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
		ts = rdmig_abstime_ms(CLOCK_REALTIME, RDMIG_POLL_MS);
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
			src_progress(m);
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
int src_manifest_flush(struct mig_src *m, struct rdmig_err *err)
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

/* A built message of `type`: straight to the destination, or through manifest_out. */
static int manifest_send(struct mig_src *m, uint16_t type, bool direct,
			 const struct rdmig_manifest_out *mo, struct rdmig_err *err)
{
	return direct ? rdmig_ctrl_send(m->c, type, mo->buf, mo->len, err)
		      : manifest_out(m, type, mo->buf, mo->len, err);
}

int src_manifest_sums(struct mig_src *m, struct rdmig_manifest_out *mo, uint16_t type, bool direct,
		      uint32_t round, unsigned r, uint64_t first, uint64_t count,
		      struct rdmig_err *err)
{
	while (count) {
		uint32_t k = rdmig_manifest_add(mo, r, first, m->reg[r].sums + first,
						count > UINT32_MAX ? UINT32_MAX : (uint32_t)count);
		int ret;

		if (!k) {
			ret = manifest_send(m, type, direct, mo, err);
			if (ret)
				return ret;
			rdmig_manifest_begin(mo, m->mbuf, round);
			continue;
		}
		first += k;
		count -= k;
	}
	return 0;
}

int src_manifest_end(struct mig_src *m, struct rdmig_manifest_out *mo, uint16_t type, bool direct,
		     struct rdmig_err *err)
{
	return mo->groups ? manifest_send(m, type, direct, mo, err) : 0;
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
		uint64_t count = run->len / RDMIG_PAGE_SIZE;

		*pages += count;
		ret = src_manifest_sums(m, &mo, RDMIG_EMSG_MANIFEST, false, round,
					(unsigned)m->lreg_idx[run->lreg],
					run->loff / RDMIG_PAGE_SIZE, count, err);
		if (ret)
			return ret;
	}
	return src_manifest_end(m, &mo, RDMIG_EMSG_MANIFEST, false, err);
}

/*
 * Send every page whose bit is set in the regions' bitmaps (cleared as they
 * are planned), spread over the workers, then fence every channel with seq;
 * the pages' checksums follow each chunk, and MANIFEST_END the round.
 */
int src_send_round(struct mig_src *m, uint64_t seq, uint64_t *bytes_out, struct rdmig_err *err)
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

uint64_t src_count_bits(const struct mig_src *m)
{
	uint64_t n = 0;

	for (unsigned r = 0; r < m->nreg; r++)
		for (size_t i = 0; i < m->reg[r].words; i++)
			n += (uint64_t)__builtin_popcountll(m->reg[r].bitmap[i]);
	return n;
}

/* Bulk round plan: every page that is not zero, found by the workers in parallel. */
int src_plan_bulk(struct mig_src *m, struct rdmig_err *err)
{
	uint64_t t = rdmig_now_ns();
	int ret = dispatch(m, false, 0, true, err);

	for (unsigned i = 0; i < m->nw; i++)
		m->st.zero_pages += m->w[i].zero;
	m->st.setup.zero_scan_ms = ms_since(t);
	return ret;
}
