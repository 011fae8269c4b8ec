/* SPDX-License-Identifier: MIT */
/*
 * Coalescing a dirty bitmap into write runs (rdmig_runs_from_bitmap in
 * engine/runs.h), the way the source's workers do it every round: in
 * chunks of at most 64 Ki runs, each run at most 256 KiB. The bitmap covers
 * 1 GiB of 4 KiB pages; each page is dirty with probability dirty_pct %
 * (1: sparse, 50: random, 90: dense). Bytes per second are bytes of guest
 * RAM covered by the bitmap, so the figure compares with the other per-GiB
 * ones; the "runs" counter is how many runs one pass produces.
 */
#include <errno.h>
#include <stdlib.h>

#include "bench.h"
#include "runs.h"

#define RUNS_RAM_BYTES (1ULL << 30)
#define RUNS_CHUNK     (64 * 1024)  /* as engine/source.c RUNS_PER_CHUNK */
#define RUNS_MAX_BYTES (256 * 1024) /* as engine/source.c MAX_RUN_BYTES */

struct runs_ctx {
	uint64_t *bitmap;
	uint64_t npages;
	struct rdmig_run *out;
	uint64_t runs; /* produced by the last pass */
};

static void runs_teardown(void *p)
{
	struct runs_ctx *c = p;

	free(c->out);
	free(c->bitmap);
	free(c);
}

static int runs_setup(void **out, int64_t pct, uint64_t *bytes_per_iter, struct rdmig_err *err)
{
	struct runs_ctx *c = calloc(1, sizeof(*c));
	uint64_t rng = RDMIG_BENCH_SEED;

	if (!c)
		return rdmig_seterr(err, -ENOMEM, "runs: out of memory");
	if (pct < 0 || pct > 100) {
		free(c);
		return rdmig_seterr(err, -EINVAL, "runs: dirty_pct %lld: expected 0 to 100",
				    (long long)pct);
	}
	c->npages = RUNS_RAM_BYTES / RDMIG_BENCH_PAGE;
	c->bitmap = calloc((c->npages + 63) / 64, sizeof(*c->bitmap));
	c->out = calloc(RUNS_CHUNK, sizeof(*c->out));
	if (!c->bitmap || !c->out) {
		runs_teardown(c);
		return rdmig_seterr(err, -ENOMEM, "runs: out of memory");
	}
	for (uint64_t pg = 0; pg < c->npages; pg++) {
		if ((int64_t)(rdmig_bench_rand(&rng) % 100) < pct)
			c->bitmap[pg / 64] |= 1ULL << (pg % 64);
	}
	*bytes_per_iter = RUNS_RAM_BYTES;
	*out = c;
	return 0;
}

static int runs_run(void *p, struct rdmig_err *err)
{
	struct runs_ctx *c = p;
	uint64_t page = 0, runs = 0;

	while (page < c->npages) {
		uint64_t next;

		runs += rdmig_runs_from_bitmap(c->bitmap, c->npages, RDMIG_BENCH_PAGE, 0, 0, page,
					       RUNS_MAX_BYTES, c->out, RUNS_CHUNK, &next);
		if (next <= page && next < c->npages)
			return rdmig_seterr(err, -EIO, "runs: no progress at page %llu",
					    (unsigned long long)page);
		page = next;
	}
	c->runs = runs;
	return 0;
}

static double runs_count(void *p)
{
	return (double)((struct runs_ctx *)p)->runs;
}

const struct rdmig_bench rdmig_bench_runs[] = {
    {.name = "runs_from_bitmap",
     .arg_name = "dirty_pct",
     .args = {1, 50, 90},
     .setup = runs_setup,
     .run = runs_run,
     .teardown = runs_teardown,
     .counter_name = "runs",
     .counter = runs_count},
    {.name = NULL},
};
