/* SPDX-License-Identifier: MIT */
/*
 * Dirty harvesting per GiB tracked, for each kernel dirty source
 * (engine/dirty.h): a populated region is tracked; before every timed
 * harvest, dirty_pct percent of its pages (distinct, at random) are written
 * untimed; the harvest alone is timed. Every written page must be reported,
 * which is checked (untimed) before the next round, so a figure never comes
 * from a source that lost pages.
 *
 * vmm-bitmap is the embedding VMM's own log and none reports nothing: there
 * is no kernel cost of ours to measure for either. A host whose kernel lacks
 * a source gets the benchmark reported as skipped, with the probe's reason.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "dirty.h"

#define DIRTY_BYTES (256u << 20)

struct dirty_ctx {
	enum rdmig_dirty_kind kind;
	uint8_t *mem;
	uint64_t bytes, npages, words, psz, ndirty;
	uint64_t *bitmap, *chosen;
	struct rdmig_dirty *d;
	bool harvested; /* a run since the last prepare: check it */
	uint64_t rng;
};

/* Single-threaded: nothing else writes the region while we harvest. */
static int no_pause(void *ctx, bool pause, struct rdmig_err *err)
{
	return 0;
}

static void dirty_teardown(void *p)
{
	struct dirty_ctx *c = p;

	rdmig_dirty_destroy(c->d);
	free(c->chosen);
	free(c->bitmap);
	rdmig_bench_free(c->mem, c->bytes);
	free(c);
}

static int dirty_setup(enum rdmig_dirty_kind kind, void **out, int64_t pct,
		       uint64_t *bytes_per_iter, struct rdmig_err *err)
{
	struct rdmig_dirty_region region;
	struct dirty_ctx *c;
	int ret;

	ret = kind == RDMIG_DIRTY_UFFD_WP ? rdmig_probe_uffd_wp_async(err)
					  : rdmig_probe_soft_dirty(err);
	if (ret) {
		rdmig_err_prefix(err, "%s not available on this kernel",
				 rdmig_dirty_kind_name(kind));
		return ret;
	}
	if (pct < 1 || pct > 100)
		return rdmig_seterr(err, -EINVAL,
				    "dirty harvest: dirty_pct %lld: expected 1 to 100",
				    (long long)pct);
	c = calloc(1, sizeof(*c));
	if (!c)
		return rdmig_seterr(err, -ENOMEM, "dirty harvest: out of memory");
	c->kind = kind;
	c->rng = RDMIG_BENCH_SEED;
	c->psz = (uint64_t)sysconf(_SC_PAGESIZE);
	c->bytes = DIRTY_BYTES;
	c->npages = c->bytes / c->psz;
	c->words = (c->npages + 63) / 64;
	c->ndirty = c->npages * (uint64_t)pct / 100;
	if (!c->ndirty)
		c->ndirty = 1;
	c->bitmap = calloc(c->words, sizeof(*c->bitmap));
	c->chosen = calloc(c->words, sizeof(*c->chosen));
	if (!c->bitmap || !c->chosen) {
		ret = rdmig_seterr(err, -ENOMEM, "dirty harvest: out of memory");
		goto out_teardown;
	}
	ret = rdmig_bench_alloc(c->bytes, (void **)&c->mem, err);
	if (ret)
		goto out_teardown;
	region = (struct rdmig_dirty_region){.addr = c->mem, .len = c->bytes, .bitmap = c->bitmap};
	ret = rdmig_dirty_create(kind, &region, 1, c->psz, &c->d, err);
	if (ret)
		goto out_teardown;
	c->d->pause_writers = no_pause;
	ret = rdmig_dirty_start(c->d, err);
	if (!ret)
		ret = rdmig_dirty_harvest(c->d, err); /* first harvest reports the population */
	if (ret)
		goto out_teardown;
	*bytes_per_iter = c->bytes;
	*out = c;
	return 0;

out_teardown:
	dirty_teardown(c);
	return ret;
}

static int uffd_setup(void **out, int64_t pct, uint64_t *bytes_per_iter, struct rdmig_err *err)
{
	return dirty_setup(RDMIG_DIRTY_UFFD_WP, out, pct, bytes_per_iter, err);
}

static int softdirty_setup(void **out, int64_t pct, uint64_t *bytes_per_iter, struct rdmig_err *err)
{
	return dirty_setup(RDMIG_DIRTY_SOFT_DIRTY, out, pct, bytes_per_iter, err);
}

static int dirty_prepare(void *p, struct rdmig_err *err)
{
	struct dirty_ctx *c = p;

	if (c->harvested) {
		for (uint64_t w = 0; w < c->words; w++) {
			uint64_t missed = c->chosen[w] & ~c->bitmap[w];

			if (missed)
				return rdmig_seterr(
				    err, -EIO, "dirty harvest: %s missed written page %llu",
				    rdmig_dirty_kind_name(c->kind),
				    (unsigned long long)(w * 64 +
							 (unsigned)__builtin_ctzll(missed)));
		}
	}
	c->harvested = false;
	memset(c->bitmap, 0, c->words * sizeof(*c->bitmap));
	memset(c->chosen, 0, c->words * sizeof(*c->chosen));
	for (uint64_t n = 0; n < c->ndirty;) {
		uint64_t pg = rdmig_bench_rand(&c->rng) % c->npages;

		if (c->chosen[pg / 64] & (1ULL << (pg % 64)))
			continue;
		c->chosen[pg / 64] |= 1ULL << (pg % 64);
		c->mem[pg * c->psz + (n % c->psz)]++;
		n++;
	}
	return 0;
}

static int dirty_run(void *p, struct rdmig_err *err)
{
	struct dirty_ctx *c = p;
	int ret = rdmig_dirty_harvest(c->d, err);

	c->harvested = !ret;
	return ret;
}

const struct rdmig_bench rdmig_bench_dirty[] = {
    {.name = "dirty_harvest/uffd-wp",
     .arg_name = "dirty_pct",
     .args = {1, 10},
     .setup = uffd_setup,
     .prepare = dirty_prepare,
     .run = dirty_run,
     .teardown = dirty_teardown},
    {.name = "dirty_harvest/soft-dirty",
     .arg_name = "dirty_pct",
     .args = {1, 10},
     .setup = softdirty_setup,
     .prepare = dirty_prepare,
     .run = dirty_run,
     .teardown = dirty_teardown},
    {.name = NULL},
};
