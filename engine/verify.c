/* SPDX-License-Identifier: MIT */
/*
 * Destination-side verification (verify.h). Locking: `lock` guards the job
 * queue, the fence marks, the suspect list and the round ends; the per-page
 * state is atomic, written by the control thread (want, sum) and the
 * checkers (ok). Pages are hashed with XXH3 while a later round may be
 * landing in them: that race is the design (a torn copy simply does not
 * match, and the page's newer copy is checked on its own), and the hash
 * reads guest memory only.
 */
#include "verify.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "log.h"
#include "mig_common.h"

/* Pages per background check of the never-announced (zero) pages. */
#define ZERO_JOB_PAGES 16384
#define MAX_THREADS    16

struct vfy_region {
	uint8_t *addr;
	uint64_t pages;
	_Atomic uint32_t *want; /* round of the last announced copy, 0: never sent (zero) */
	_Atomic uint32_t *ok;	/* 1 + the round whose copy matched, 0: none */
	_Atomic uint64_t *sum;	/* checksum of the last announced copy */
};

struct vfy_job {
	uint32_t round; /* the copies of this round (0: the zero pages) */
	uint32_t region;
	uint64_t first;
	uint64_t count;
};

struct vfy_end {
	uint32_t round;
	uint64_t jobs; /* the round is checked once every job before this index is */
};

struct vfy_thread {
	struct rdmig_vfy *v;
	pthread_t th;
	uint64_t job; /* index being checked, UINT64_MAX: none */
};

struct rdmig_vfy {
	struct rdmig_vfy_cfg cfg;
	struct vfy_region reg[RDMIG_MIG_MAX_REGIONS];
	uint64_t zero_sum;
	uint64_t overhead;

	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool quit;
	struct vfy_job *jobs;
	uint64_t njobs, next, cap;
	struct vfy_end *ends;
	size_t nends, acked, ends_cap;
	uint32_t landed[RDMIG_MAX_CHANNELS];
	uint32_t landed_min;
	uint32_t round_pages_round;
	uint64_t round_pages;
	uint64_t *suspects; /* region << 48 | page */
	size_t nsuspects, suspects_cap;
	bool lost; /* a suspect could not be recorded: finish checks every page */
	const uint64_t *except[RDMIG_MIG_MAX_REGIONS]; /* post-copy's pages: not checked here */
	bool finishing;				       /* no acknowledgement may follow VERIFIED */
	unsigned acking;			       /* checkers sending an acknowledgement now */
	_Atomic uint64_t checked;

	struct vfy_thread t[MAX_THREADS];
	unsigned started;
};

static uint64_t page_hash(const struct vfy_region *r, uint64_t p)
{
	return rdmig_page_sum(r->addr + p * RDMIG_PAGE_SIZE);
}

/* ok only ever grows: a slow checker of an older copy must not undo a newer match. */
static void mark_ok(_Atomic uint32_t *ok, uint32_t v)
{
	uint32_t cur = atomic_load(ok);

	while (cur < v && !atomic_compare_exchange_weak(ok, &cur, v))
		;
}

static bool page_verified(const struct vfy_region *r, uint64_t p)
{
	return atomic_load(&r->ok[p]) == atomic_load(&r->want[p]) + 1;
}

/* Called with lock held. Out of memory, the final pass checks every page instead. */
/* A page post-copy replaces: its copy here is stale by design, and checked when fetched. */
static bool excepted(const struct rdmig_vfy *v, unsigned r, uint64_t p)
{
	return v->except[r] && (v->except[r][p / 64] >> (p % 64) & 1);
}

static void suspect_add(struct rdmig_vfy *v, uint32_t region, uint64_t p)
{
	if (v->nsuspects == v->suspects_cap) {
		size_t cap = v->suspects_cap ? 2 * v->suspects_cap : 256;
		uint64_t *s = realloc(v->suspects, cap * sizeof(*s));

		if (!s) {
			v->lost = true;
			return;
		}
		v->suspects = s;
		v->suspects_cap = cap;
	}
	v->suspects[v->nsuspects++] = (uint64_t)region << 48 | p;
}

/* The round whose fences must have landed on every channel before job j runs. */
static uint32_t job_gate(const struct vfy_job *j)
{
	return j->round ? j->round : 1;
}

/*
 * Check the copies of one job. A page whose last announced round is no
 * longer this one is skipped: its newer copy has a job of its own.
 */
static void run_job(struct rdmig_vfy *v, const struct vfy_job *j)
{
	struct vfy_region *r = &v->reg[j->region];
	uint64_t bad[64];
	unsigned nbad = 0;

	for (uint64_t p = j->first; p < j->first + j->count; p++) {
		uint64_t want_sum, h;

		if (atomic_load(&r->want[p]) != j->round)
			continue;
		want_sum =
		    j->round ? atomic_load_explicit(&r->sum[p], memory_order_relaxed) : v->zero_sum;
		h = page_hash(r, p);
		atomic_fetch_add_explicit(&v->checked, 1, memory_order_relaxed);
		/* Announced again while we hashed: the new copy's job decides. */
		if (atomic_load(&r->want[p]) != j->round)
			continue;
		if (h == want_sum) {
			mark_ok(&r->ok[p], j->round + 1);
			continue;
		}
		bad[nbad++] = p;
		if (nbad == 64 || p + 1 == j->first + j->count) {
			pthread_mutex_lock(&v->lock);
			for (unsigned i = 0; i < nbad; i++)
				suspect_add(v, j->region, bad[i]);
			pthread_mutex_unlock(&v->lock);
			nbad = 0;
		}
	}
	if (nbad) {
		pthread_mutex_lock(&v->lock);
		for (unsigned i = 0; i < nbad; i++)
			suspect_add(v, j->region, bad[i]);
		pthread_mutex_unlock(&v->lock);
	}
}

/* Lowest job index not yet checked. Called with lock held. */
static uint64_t low_mark(const struct rdmig_vfy *v)
{
	uint64_t low = v->next;

	for (unsigned i = 0; i < v->started; i++)
		if (v->t[i].job < low)
			low = v->t[i].job;
	return low;
}

/* The highest round whose jobs are all checked and not acknowledged yet, 0: none. */
static uint32_t take_ack(struct rdmig_vfy *v)
{
	uint64_t low = low_mark(v);
	uint32_t round = 0;

	while (v->acked < v->nends && v->ends[v->acked].jobs <= low)
		round = v->ends[v->acked++].round;
	return v->finishing ? 0 : round;
}

static void *checker_main(void *arg)
{
	struct vfy_thread *t = arg;
	struct rdmig_vfy *v = t->v;
	char name[16];

	snprintf(name, sizeof(name), "rdmig-vfy%u", (unsigned)(t - v->t));
	pthread_setname_np(pthread_self(), name);
	pthread_mutex_lock(&v->lock);
	for (;;) {
		struct vfy_job j;
		uint32_t ack;

		/*
		 * Jobs run in order; one waits for its round's fence on every
		 * channel. The zero pages' jobs (round 0) wait for the bulk
		 * round's: checked earlier, a page damaged as that round lands
		 * would pass, and nothing would check it again.
		 */
		while (!v->quit &&
		       (v->next == v->njobs || job_gate(&v->jobs[v->next]) > v->landed_min))
			pthread_cond_wait(&v->cv, &v->lock);
		if (v->quit)
			break;
		t->job = v->next++;
		j = v->jobs[t->job];
		pthread_mutex_unlock(&v->lock);

		run_job(v, &j);

		pthread_mutex_lock(&v->lock);
		t->job = UINT64_MAX;
		ack = take_ack(v);
		pthread_cond_broadcast(&v->cv);
		if (ack && v->cfg.ack) {
			uint64_t n = atomic_load(&v->checked);

			v->acking++;
			pthread_mutex_unlock(&v->lock);
			v->cfg.ack(v->cfg.ctx, ack, n);
			pthread_mutex_lock(&v->lock);
			v->acking--;
			pthread_cond_broadcast(&v->cv);
		}
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

static int job_add(struct rdmig_vfy *v, const struct vfy_job *j)
{
	if (v->njobs == v->cap) {
		uint64_t cap = v->cap ? 2 * v->cap : 1024;
		struct vfy_job *n = realloc(v->jobs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		v->jobs = n;
		v->cap = cap;
	}
	v->jobs[v->njobs++] = *j;
	return 0;
}

int rdmig_vfy_create(const struct rdmig_vfy_cfg *cfg, struct rdmig_vfy **out, struct rdmig_err *err)
{
	static const uint8_t zero[RDMIG_PAGE_SIZE];
	struct rdmig_vfy *v = calloc(1, sizeof(*v));
	int ret;

	if (!v)
		return rdmig_seterr(err, -ENOMEM, "out of memory for verification");
	v->cfg = *cfg;
	v->zero_sum = rdmig_page_sum(zero);
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cv, NULL);
	for (unsigned i = 0; i < MAX_THREADS; i++)
		v->t[i].job = UINT64_MAX;
	for (unsigned r = 0; r < cfg->nregions && cfg->mode != RDMIG_VERIFY_OFF; r++) {
		struct vfy_region *vr = &v->reg[r];

		vr->addr = cfg->addr[r];
		vr->pages = cfg->pages[r];
		/* calloc: the kernel hands zeroed pages lazily, nothing is touched here. */
		vr->want = calloc(vr->pages, sizeof(*vr->want));
		vr->ok = calloc(vr->pages, sizeof(*vr->ok));
		vr->sum = calloc(vr->pages, sizeof(*vr->sum));
		if (!vr->want || !vr->ok || !vr->sum) {
			ret = rdmig_seterr(err, -ENOMEM, "out of memory for page checksums");
			goto out_destroy;
		}
		v->overhead += vr->pages * (sizeof(*vr->want) + sizeof(*vr->ok) + sizeof(*vr->sum));
	}
	if (cfg->mode == RDMIG_VERIFY_ROUNDS) {
		unsigned n = cfg->threads < 1		  ? 1
			     : cfg->threads > MAX_THREADS ? MAX_THREADS
							  : cfg->threads;

		for (unsigned i = 0; i < n; i++) {
			v->t[i].v = v;
			if (pthread_create(&v->t[i].th, NULL, checker_main, &v->t[i])) {
				ret = rdmig_seterr(err, -EAGAIN, "cannot start verifier thread %u",
						   i);
				goto out_destroy;
			}
			v->started++;
		}
	}
	*out = v;
	return 0;

out_destroy:
	rdmig_vfy_destroy(v);
	return ret;
}

void rdmig_vfy_destroy(struct rdmig_vfy *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	v->quit = true;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->lock);
	for (unsigned i = 0; i < v->started; i++)
		pthread_join(v->t[i].th, NULL);
	for (unsigned r = 0; r < RDMIG_MIG_MAX_REGIONS; r++) {
		free(v->reg[r].want);
		free(v->reg[r].ok);
		free(v->reg[r].sum);
	}
	free(v->jobs);
	free(v->ends);
	free(v->suspects);
	pthread_mutex_destroy(&v->lock);
	pthread_cond_destroy(&v->cv);
	free(v);
}

uint64_t rdmig_vfy_overhead(const struct rdmig_vfy *v)
{
	return v->overhead;
}

uint64_t rdmig_vfy_checked(struct rdmig_vfy *v)
{
	return atomic_load(&v->checked);
}

int rdmig_vfy_manifest(struct rdmig_vfy *v, const struct rdmig_msg_manifest *mf,
		       struct rdmig_err *err)
{
	struct rdmig_manifest_group g;
	size_t off = 0;
	int ret = 0;

	if (v->cfg.mode == RDMIG_VERIFY_OFF)
		return rdmig_seterr(err, -EPROTO, "MANIFEST, but the source said: verify off");
	while (rdmig_manifest_next(mf, &off, &g)) {
		struct vfy_region *r = &v->reg[g.region];
		struct vfy_job j = {.round = mf->round,
				    .region = g.region,
				    .first = g.first_page,
				    .count = g.count};

		for (uint32_t i = 0; i < g.count; i++) {
			uint64_t p = g.first_page + i;

			/* The checksum first: a checker that sees the new round reads it. */
			atomic_store_explicit(&r->sum[p], rdmig_get_be64(g.sums + 8 * i),
					      memory_order_relaxed);
			atomic_store(&r->want[p], mf->round);
		}
		if (mf->round != v->round_pages_round) {
			v->round_pages_round = mf->round;
			v->round_pages = 0;
		}
		v->round_pages += g.count;
		if (v->cfg.mode != RDMIG_VERIFY_ROUNDS)
			continue;
		pthread_mutex_lock(&v->lock);
		ret = job_add(v, &j);
		pthread_cond_broadcast(&v->cv);
		pthread_mutex_unlock(&v->lock);
		if (ret)
			return rdmig_seterr(err, ret, "out of memory for the verification queue");
	}
	return 0;
}

int rdmig_vfy_round_end(struct rdmig_vfy *v, uint32_t round, uint64_t pages, struct rdmig_err *err)
{
	uint64_t got = v->round_pages_round == round ? v->round_pages : 0;
	uint32_t ack = 0;
	int ret = 0;

	if (v->cfg.mode == RDMIG_VERIFY_OFF)
		return rdmig_seterr(err, -EPROTO, "MANIFEST_END, but the source said: verify off");
	if (got != pages)
		return rdmig_seterr(err, -EPROTO,
				    "MANIFEST_END: round %u announced %" PRIu64
				    " pages, its MANIFESTs carried %" PRIu64,
				    round, pages, got);
	if (v->cfg.mode != RDMIG_VERIFY_ROUNDS)
		return 0;
	pthread_mutex_lock(&v->lock);
	/* After the bulk round, the pages it did not send must still be zero. */
	for (unsigned r = 0; round == 1 && !ret && r < v->cfg.nregions; r++)
		for (uint64_t p = 0; !ret && p < v->reg[r].pages; p += ZERO_JOB_PAGES) {
			struct vfy_job j = {.round = 0, .region = r, .first = p};

			j.count = v->reg[r].pages - p < ZERO_JOB_PAGES ? v->reg[r].pages - p
								       : ZERO_JOB_PAGES;
			ret = job_add(v, &j);
		}
	if (!ret && v->nends == v->ends_cap) {
		size_t cap = v->ends_cap ? 2 * v->ends_cap : 64;
		struct vfy_end *n = realloc(v->ends, cap * sizeof(*n));

		if (n) {
			v->ends = n;
			v->ends_cap = cap;
		} else {
			ret = -ENOMEM;
		}
	}
	if (!ret) {
		v->ends[v->nends++] = (struct vfy_end){.round = round, .jobs = v->njobs};
		ack = take_ack(v);
	}
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->lock);
	if (ret)
		return rdmig_seterr(err, ret, "out of memory for the verification queue");
	if (ack && v->cfg.ack)
		v->cfg.ack(v->cfg.ctx, ack, atomic_load(&v->checked));
	return 0;
}

void rdmig_vfy_fence(struct rdmig_vfy *v, unsigned chan, uint32_t round)
{
	uint32_t low = UINT32_MAX;

	if (!v || chan >= v->cfg.channels)
		return;
	pthread_mutex_lock(&v->lock);
	v->landed[chan] = round;
	for (unsigned i = 0; i < v->cfg.channels; i++)
		if (v->landed[i] < low)
			low = v->landed[i];
	if (low != v->landed_min) {
		v->landed_min = low;
		pthread_cond_broadcast(&v->cv);
	}
	pthread_mutex_unlock(&v->lock);
}

/* The first mismatch into *f, counting all of them. */
static void record_bad(struct rdmig_msg_verify_fail *f, uint32_t region, uint64_t p,
		       uint64_t expected, uint64_t found)
{
	if (!f->mismatches || region < f->region || (region == f->region && p < f->page)) {
		f->region = region;
		f->page = p;
		f->expected = expected;
		f->found = found;
	}
	f->mismatches++;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void check_all(struct rdmig_vfy *v, struct rdmig_msg_verify_fail *f);

static uint64_t expected_sum(const struct rdmig_vfy *v, const struct vfy_region *r, uint64_t p)
{
	return atomic_load(&r->want[p]) ? atomic_load(&r->sum[p]) : v->zero_sum;
}

void rdmig_vfy_except(struct rdmig_vfy *v, unsigned region, const uint64_t *bitmap)
{
	if (v && region < v->cfg.nregions)
		v->except[region] = bitmap;
}

int rdmig_vfy_finish(struct rdmig_vfy *v, struct rdmig_msg_verify_fail *f, uint64_t *verified,
		     struct rdmig_err *err)
{
	uint64_t total = 0;

	memset(f, 0, sizeof(*f));
	*verified = 0;
	if (v->cfg.mode == RDMIG_VERIFY_OFF)
		return 0;
	for (unsigned r = 0; r < v->cfg.nregions; r++)
		total += v->reg[r].pages;
	if (v->cfg.mode == RDMIG_VERIFY_FULL) {
		check_all(v, f);
	} else {
		/* Every fence is in: the last jobs run now; wait for them all. */
		pthread_mutex_lock(&v->lock);
		v->landed_min = UINT32_MAX;
		pthread_cond_broadcast(&v->cv);
		while (!v->quit && (low_mark(v) < v->njobs || v->acking))
			pthread_cond_wait(&v->cv, &v->lock);
		v->finishing = true;
		pthread_mutex_unlock(&v->lock);
		if (v->lost) {
			log_warn(
			    "verify: the suspect list did not fit in memory: checking every page");
			check_all(v, f);
			goto out;
		}
		/* Only suspects can be unverified: every other copy matched or has a newer one. */
		if (v->nsuspects)
			qsort(v->suspects, v->nsuspects, sizeof(*v->suspects), cmp_u64);
		for (size_t i = 0; i < v->nsuspects; i++) {
			uint32_t r = (uint32_t)(v->suspects[i] >> 48);
			uint64_t p = v->suspects[i] & ((1ull << 48) - 1), want, h;
			struct vfy_region *vr = &v->reg[r];

			if ((i && v->suspects[i - 1] == v->suspects[i]) || page_verified(vr, p) ||
			    excepted(v, r, p))
				continue;
			want = expected_sum(v, vr, p);
			h = page_hash(vr, p);
			atomic_fetch_add(&v->checked, 1);
			if (h == want)
				mark_ok(&vr->ok[p], atomic_load(&vr->want[p]) + 1);
			else
				record_bad(f, r, p, want, h);
		}
	}
out:
	if (f->mismatches)
		return rdmig_seterr(err, -EILSEQ,
				    "verify failed: region %u page %" PRIu64 " (offset 0x%" PRIx64
				    ") has checksum %016" PRIx64 ", the source sent %016" PRIx64
				    "; %" PRIu64 " page(s) differ",
				    f->region, f->page, f->page * RDMIG_PAGE_SIZE, f->found,
				    f->expected, f->mismatches);
	*verified = total;
	return 0;
}

/* Every page against its last announced checksum (zero when never announced). */
static void check_all(struct rdmig_vfy *v, struct rdmig_msg_verify_fail *f)
{
	for (unsigned r = 0; r < v->cfg.nregions; r++) {
		const struct vfy_region *vr = &v->reg[r];

		for (uint64_t p = 0; p < vr->pages; p++) {
			uint64_t want, h;

			if (excepted(v, r, p))
				continue;
			want = expected_sum(v, vr, p);
			h = page_hash(vr, p);
			if (h != want)
				record_bad(f, r, p, want, h);
		}
		atomic_fetch_add(&v->checked, vr->pages);
	}
}
