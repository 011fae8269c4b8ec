/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page tracker front end: creation and validation, the choice of
 * source, harvest timing, the "none" source and the cost measurement.
 * The sources themselves live in dirty_uffd.c, dirty_softdirty.c and
 * dirty_vmm.c.
 */
#include "clock.h"
#include "dirty.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Harvests timed by rdmig_dirty_measure() (after one untimed warm-up). */
#define MEASURE_ROUNDS 10
#define MEASURE_SEED   0x6469727479ULL /* "dirty" */

/* ---- the "none" source: cold migration, nothing is ever reported ------- */

static int none_start(struct rdmig_dirty *d, struct rdmig_err *err)
{
	return 0;
}

static int none_harvest(struct rdmig_dirty *d, struct rdmig_err *err)
{
	return 0;
}

static void none_stop(struct rdmig_dirty *d)
{
}

const struct rdmig_dirty_ops rdmig_dirty_none_ops = {
    .kind = RDMIG_DIRTY_NONE,
    .start = none_start,
    .harvest = none_harvest,
    .stop = none_stop,
};

/* ---- bitmaps ------------------------------------------------------------ */

void rdmig_dirty_set_bits(uint64_t *bm, uint64_t first, uint64_t n)
{
	uint64_t w = first / 64, last;
	unsigned b = first % 64;

	if (!n)
		return;
	last = first + n - 1;
	if (w == last / 64) {
		bm[w] |= (~0ULL >> (63 - (last % 64 - b))) << b;
		return;
	}
	bm[w++] |= ~0ULL << b;
	for (; w < last / 64; w++)
		bm[w] = ~0ULL;
	bm[w] |= ~0ULL >> (63 - last % 64);
}

void rdmig_dirty_mark_bytes(const struct rdmig_dirty *d, unsigned r, uint64_t off, uint64_t len)
{
	uint64_t first, last;

	if (!len)
		return;
	first = off / d->page_size;
	last = (off + len - 1) / d->page_size;
	rdmig_dirty_set_bits(d->regions[r].bitmap, first, last - first + 1);
}

/* ---- creation ----------------------------------------------------------- */

static const struct rdmig_dirty_ops *ops_of(enum rdmig_dirty_kind kind)
{
	switch (kind) {
	case RDMIG_DIRTY_NONE:
		return &rdmig_dirty_none_ops;
	case RDMIG_DIRTY_VMM_LOG:
		return &rdmig_dirty_vmm_ops;
	case RDMIG_DIRTY_SOFT_DIRTY:
		return &rdmig_dirty_softdirty_ops;
	case RDMIG_DIRTY_UFFD_WP:
		return &rdmig_dirty_uffd_ops;
	}
	return NULL;
}

static int check_regions(const struct rdmig_dirty_region *regions, unsigned nregions,
			 uint64_t page_size, struct rdmig_err *err)
{
	uint64_t base = (uint64_t)sysconf(_SC_PAGESIZE);

	if (page_size < base || (page_size & (page_size - 1)))
		return rdmig_seterr(err, -EINVAL,
				    "dirty tracking granule %llu: expected a power of two of at "
				    "least the page size (%llu)",
				    (unsigned long long)page_size, (unsigned long long)base);
	if (nregions && !regions)
		return rdmig_seterr(err, -EINVAL, "dirty tracking: no region array");
	for (unsigned i = 0; i < nregions; i++) {
		const struct rdmig_dirty_region *r = &regions[i];
		uintptr_t a = (uintptr_t)r->addr;

		if (!r->addr || a % base || !r->len || r->len % page_size || a + r->len < a)
			return rdmig_seterr(err, -EINVAL,
					    "dirty tracking region %u (%p, %llu bytes): expected a "
					    "page-aligned address and a non-zero length that is a "
					    "multiple of %llu",
					    i, r->addr, (unsigned long long)r->len,
					    (unsigned long long)page_size);
		if (!r->bitmap)
			return rdmig_seterr(err, -EINVAL, "dirty tracking region %u: no bitmap", i);
		for (unsigned j = 0; j < i; j++) {
			uintptr_t b = (uintptr_t)regions[j].addr;

			if (a < b + regions[j].len && b < a + r->len)
				return rdmig_seterr(
				    err, -EINVAL, "dirty tracking regions %u and %u overlap", j, i);
		}
	}
	return 0;
}

int rdmig_dirty_create(enum rdmig_dirty_kind kind, struct rdmig_dirty_region *regions,
		       unsigned nregions, uint64_t page_size, struct rdmig_dirty **out,
		       struct rdmig_err *err)
{
	const struct rdmig_dirty_ops *ops = ops_of(kind);
	struct rdmig_dirty *d;
	int ret;

	*out = NULL;
	if (!ops)
		return rdmig_seterr(err, -EINVAL, "unknown dirty-page source %d", (int)kind);
	ret = check_regions(regions, nregions, page_size, err);
	if (ret)
		return ret;
	d = calloc(1, sizeof(*d));
	if (!d)
		return rdmig_seterr(err, -ENOMEM, "dirty tracker: out of memory");
	if (nregions) {
		d->regions = calloc(nregions, sizeof(*d->regions));
		if (!d->regions) {
			free(d);
			return rdmig_seterr(err, -ENOMEM, "dirty tracker: out of memory");
		}
		memcpy(d->regions, regions, nregions * sizeof(*regions));
	}
	d->ops = ops;
	d->nregions = nregions;
	d->page_size = page_size;
	d->fd = -1;
	d->pagemap_fd = -1;
	*out = d;
	return 0;
}

void rdmig_dirty_destroy(struct rdmig_dirty *d)
{
	if (!d)
		return;
	if (d->started)
		d->ops->stop(d);
	free(d->regions);
	free(d);
}

int rdmig_dirty_start(struct rdmig_dirty *d, struct rdmig_err *err)
{
	int ret;

	if (d->started)
		return rdmig_seterr(err, -EALREADY, "dirty tracking (%s) already started",
				    rdmig_dirty_kind_name(d->ops->kind));
	ret = d->ops->start(d, err);
	if (ret) {
		rdmig_err_prefix(err, "start %s dirty tracking",
				 rdmig_dirty_kind_name(d->ops->kind));
		return ret;
	}
	d->started = true;
	log_info("%s dirty tracking started over %u region(s)", rdmig_dirty_kind_name(d->ops->kind),
		 d->nregions);
	return 0;
}

int rdmig_dirty_harvest(struct rdmig_dirty *d, struct rdmig_err *err)
{
	uint64_t t0;
	int ret;

	if (!d->started)
		return rdmig_seterr(err, -EINVAL, "dirty harvest before tracking was started");
	t0 = rdmig_now_ns();
	ret = d->ops->harvest(d, err);
	d->harvest_ns += rdmig_now_ns() - t0;
	d->harvests++;
	if (ret)
		rdmig_err_prefix(err, "%s dirty harvest", rdmig_dirty_kind_name(d->ops->kind));
	return ret;
}

/* ---- choosing a source -------------------------------------------------- */

enum rdmig_dirty_kind rdmig_dirty_best(bool have_vmm_log)
{
	struct rdmig_err uerr = RDMIG_ERR_INIT, serr = RDMIG_ERR_INIT;
	int urc, src;

	urc = rdmig_probe_uffd_wp_async(&uerr);
	if (urc == 0)
		return RDMIG_DIRTY_UFFD_WP;
	log_info("uffd-wp dirty tracking unavailable: %s", rdmig_err_str(&uerr));
	/* The probe would clear the running tracker's bits: it evidently works. */
	if (rdmig_dirty_softdirty_active())
		return RDMIG_DIRTY_SOFT_DIRTY;
	src = rdmig_probe_soft_dirty(&serr);
	if (src)
		log_info("soft-dirty tracking unavailable: %s", rdmig_err_str(&serr));
	return rdmig_dirty_pick(urc, src, have_vmm_log);
}

int rdmig_dirty_parse(const char *s, enum rdmig_dirty_kind *out, bool *is_auto,
		      struct rdmig_err *err)
{
	static const enum rdmig_dirty_kind kinds[] = {
	    RDMIG_DIRTY_UFFD_WP,
	    RDMIG_DIRTY_SOFT_DIRTY,
	    RDMIG_DIRTY_VMM_LOG,
	    RDMIG_DIRTY_NONE,
	};

	if (is_auto)
		*is_auto = false;
	if (s && strcmp(s, "auto") == 0) {
		if (is_auto)
			*is_auto = true;
		*out = RDMIG_DIRTY_NONE;
		return 0;
	}
	for (size_t i = 0; s && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (strcmp(s, rdmig_dirty_kind_name(kinds[i])) == 0) {
			*out = kinds[i];
			return 0;
		}
	}
	return rdmig_seterr(err, -EINVAL,
			    "dirty-page source '%s': expected auto, uffd-wp, soft-dirty, "
			    "vmm-bitmap or none",
			    s ? s : "");
}

/* ---- cost measurement --------------------------------------------------- */

static uint64_t xorshift64s(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* The measurement is the only writer: there is nobody to pause. */
static int measure_pause(void *ctx, bool pause, struct rdmig_err *err)
{
	return 0;
}

/* Floyd's sampling: `m` distinct pages out of `n`, marked in `chosen`, each written. */
static void dirty_random_pages(volatile uint8_t *mem, uint64_t psz, uint64_t n, uint64_t m,
			       uint64_t *chosen, uint64_t *rng)
{
	for (uint64_t j = n - m; j < n; j++) {
		uint64_t t = xorshift64s(rng) % (j + 1);

		if (chosen[t / 64] & (1ULL << (t % 64)))
			t = j;
		chosen[t / 64] |= 1ULL << (t % 64);
		mem[t * psz + 8]++;
	}
}

int rdmig_dirty_measure(enum rdmig_dirty_kind kind, uint64_t bytes, uint64_t dirty_pages,
			double *ms_per_gib, struct rdmig_err *err)
{
	uint64_t psz = (uint64_t)sysconf(_SC_PAGESIZE), npages, words, rng = MEASURE_SEED;
	uint64_t total_ns = 0, *bitmap = NULL, *chosen = NULL;
	struct rdmig_dirty_region region;
	struct rdmig_dirty *d = NULL;
	uint8_t *mem;
	int ret;

	*ms_per_gib = 0;
	if (kind != RDMIG_DIRTY_UFFD_WP && kind != RDMIG_DIRTY_SOFT_DIRTY)
		return rdmig_seterr(err, -EINVAL,
				    "harvest cost of %s: only uffd-wp and soft-dirty can be "
				    "measured here",
				    rdmig_dirty_kind_name(kind));
	npages = (bytes + psz - 1) / psz;
	if (!npages || dirty_pages > npages)
		return rdmig_seterr(err, -EINVAL,
				    "harvest cost: %llu dirty pages out of %llu: expected at most "
				    "as many as there are, and at least one page",
				    (unsigned long long)dirty_pages, (unsigned long long)npages);
	bytes = npages * psz;
	words = (npages + 63) / 64;

	mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "harvest cost: mmap %llu bytes",
					  (unsigned long long)bytes);
	bitmap = calloc(words, sizeof(*bitmap));
	chosen = calloc(words, sizeof(*chosen));
	if (!bitmap || !chosen) {
		ret = rdmig_seterr(err, -ENOMEM, "harvest cost: out of memory");
		goto out_free;
	}
	/* Guest RAM is populated: measure the scan of present pages. */
	for (uint64_t i = 0; i < npages; i++)
		mem[i * psz] = 1;

	region = (struct rdmig_dirty_region){.addr = mem, .len = bytes, .bitmap = bitmap};
	ret = rdmig_dirty_create(kind, &region, 1, psz, &d, err);
	if (ret)
		goto out_free;
	d->pause_writers = measure_pause;
	ret = rdmig_dirty_start(d, err);
	if (ret)
		goto out_destroy;
	ret = rdmig_dirty_harvest(d, err); /* warm-up, untimed */
	if (ret)
		goto out_destroy;

	for (int round = 0; round < MEASURE_ROUNDS; round++) {
		uint64_t before = d->harvest_ns;

		memset(bitmap, 0, words * sizeof(*bitmap));
		memset(chosen, 0, words * sizeof(*chosen));
		dirty_random_pages(mem, psz, npages, dirty_pages, chosen, &rng);
		ret = rdmig_dirty_harvest(d, err);
		if (ret)
			goto out_destroy;
		total_ns += d->harvest_ns - before;
		for (uint64_t w = 0; w < words; w++) {
			if (chosen[w] & ~bitmap[w]) {
				ret = rdmig_seterr(
				    err, -EIO, "harvest cost: %s missed written page %llu",
				    rdmig_dirty_kind_name(kind),
				    (unsigned long long)(w * 64 + (unsigned)__builtin_ctzll(
								      chosen[w] & ~bitmap[w])));
				goto out_destroy;
			}
		}
	}
	*ms_per_gib = (double)total_ns / MEASURE_ROUNDS / 1e6 / ((double)bytes / (1ULL << 30));

out_destroy:
	rdmig_dirty_destroy(d);
out_free:
	free(chosen);
	free(bitmap);
	munmap(mem, bytes);
	return ret;
}
