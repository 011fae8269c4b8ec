/* SPDX-License-Identifier: MIT */
/*
 * Per-page work the migration source does on every page it sends:
 * zero-page detection (rdmig_page_is_zero) and the XXH3 checksum of the
 * switchover manifest (rdmig_page_sum), both from engine/mig_common.c, over
 * a buffer far larger than the last-level cache, as guest RAM is.
 */
#include <errno.h>
#include <stdlib.h>

#include "bench.h"
#include "mig_common.h"

#define PAGE_BUF_BYTES (256u << 20)

struct page_ctx {
	uint8_t *buf;
	size_t bytes;
	uint64_t sink; /* results land here so the calls cannot be elided */
};

static void page_teardown(void *p)
{
	struct page_ctx *c = p;

	rdmig_bench_free(c->buf, c->bytes);
	free(c);
}

/* zero_pct percent of the pages are zero, at random places; the rest random. */
static int page_setup(void **out, int64_t zero_pct, uint64_t *bytes_per_iter, struct rdmig_err *err)
{
	struct page_ctx *c = calloc(1, sizeof(*c));
	uint64_t rng = RDMIG_BENCH_SEED;
	int ret;

	if (!c)
		return rdmig_seterr(err, -ENOMEM, "page benchmark: out of memory");
	if (zero_pct < 0 || zero_pct > 100) {
		free(c);
		return rdmig_seterr(err, -EINVAL,
				    "page benchmark: zero_pct %lld: expected 0 to 100",
				    (long long)zero_pct);
	}
	c->bytes = PAGE_BUF_BYTES;
	ret = rdmig_bench_alloc(c->bytes, (void **)&c->buf, err);
	if (ret) {
		free(c);
		return ret;
	}
	for (size_t off = 0; off < c->bytes; off += RDMIG_BENCH_PAGE) {
		if ((int64_t)(rdmig_bench_rand(&rng) % 100) >= zero_pct)
			rdmig_bench_fill_page(c->buf + off, RDMIG_BENCH_FILL_RANDOM, &rng);
	}
	*bytes_per_iter = c->bytes;
	*out = c;
	return 0;
}

static int zero_run(void *p, struct rdmig_err *err)
{
	struct page_ctx *c = p;
	uint64_t zeros = 0;

	for (size_t off = 0; off < c->bytes; off += RDMIG_BENCH_PAGE)
		zeros += (uint64_t)rdmig_page_is_zero(c->buf + off);
	c->sink += zeros;
	return 0;
}

static int sum_run(void *p, struct rdmig_err *err)
{
	struct page_ctx *c = p;
	uint64_t x = 0;

	for (size_t off = 0; off < c->bytes; off += RDMIG_BENCH_PAGE)
		x ^= rdmig_page_sum(c->buf + off);
	c->sink ^= x;
	return 0;
}

const struct rdmig_bench rdmig_bench_page[] = {
    /* 100: the worst case, every byte read; 50: a half-zero guest, early exits. */
    {.name = "zero_page",
     .arg_name = "zero_pct",
     .args = {100, 50},
     .setup = page_setup,
     .run = zero_run,
     .teardown = page_teardown},
    {.name = "page_sum_xxh3", .setup = page_setup, .run = sum_run, .teardown = page_teardown},
    {.name = NULL},
};
