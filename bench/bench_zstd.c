/* SPDX-License-Identifier: MIT */
/*
 * zstd compression of typical guest pages, one page at a time with a reused
 * context (each compressed page stands alone, as it must when pages travel
 * on several channels and arrive in any order). The buffer mixes, in equal
 * shares at random places, zero pages, text-like pages and random pages.
 * The "ratio" counter is input bytes over compressed bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <zstd.h>

#include "bench.h"

#define ZSTD_BUF_BYTES (16u << 20) /* half the L3: the compressor is the cost */

struct zstd_ctx {
	ZSTD_CCtx *cctx;
	int level;
	uint8_t *buf, *dst;
	size_t bytes, dst_cap;
	uint64_t out_bytes; /* compressed size of the last pass */
};

static void zstd_teardown(void *p)
{
	struct zstd_ctx *c = p;

	ZSTD_freeCCtx(c->cctx);
	free(c->dst);
	rdmig_bench_free(c->buf, c->bytes);
	free(c);
}

static int zstd_setup(void **out, int64_t level, uint64_t *bytes_per_iter, struct rdmig_err *err)
{
	struct zstd_ctx *c = calloc(1, sizeof(*c));
	uint64_t rng = RDMIG_BENCH_SEED;
	int ret;

	if (!c)
		return rdmig_seterr(err, -ENOMEM, "zstd: out of memory");
	if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
		free(c);
		return rdmig_seterr(err, -EINVAL, "zstd: level %lld: expected %d to %d",
				    (long long)level, ZSTD_minCLevel(), ZSTD_maxCLevel());
	}
	c->level = (int)level;
	c->bytes = ZSTD_BUF_BYTES;
	c->dst_cap = ZSTD_compressBound(RDMIG_BENCH_PAGE);
	c->cctx = ZSTD_createCCtx();
	c->dst = malloc(c->dst_cap);
	if (!c->cctx || !c->dst) {
		zstd_teardown(c);
		return rdmig_seterr(err, -ENOMEM, "zstd: out of memory");
	}
	ret = rdmig_bench_alloc(c->bytes, (void **)&c->buf, err);
	if (ret) {
		zstd_teardown(c);
		return ret;
	}
	for (size_t off = 0; off < c->bytes; off += RDMIG_BENCH_PAGE)
		rdmig_bench_fill_page(c->buf + off,
				      (enum rdmig_bench_fill)(rdmig_bench_rand(&rng) % 3), &rng);
	*bytes_per_iter = c->bytes;
	*out = c;
	return 0;
}

static int zstd_run(void *p, struct rdmig_err *err)
{
	struct zstd_ctx *c = p;
	uint64_t total = 0;

	for (size_t off = 0; off < c->bytes; off += RDMIG_BENCH_PAGE) {
		size_t n = ZSTD_compressCCtx(c->cctx, c->dst, c->dst_cap, c->buf + off,
					     RDMIG_BENCH_PAGE, c->level);

		if (ZSTD_isError(n))
			return rdmig_seterr(err, -EIO, "zstd: level %d: %s", c->level,
					    ZSTD_getErrorName(n));
		total += n;
	}
	c->out_bytes = total;
	return 0;
}

static double zstd_ratio(void *p)
{
	struct zstd_ctx *c = p;

	return c->out_bytes ? (double)c->bytes / (double)c->out_bytes : 0;
}

const struct rdmig_bench rdmig_bench_zstd[] = {
    {.name = "zstd_compress",
     .arg_name = "level",
     .args = {1, 3},
     .setup = zstd_setup,
     .run = zstd_run,
     .teardown = zstd_teardown,
     .counter_name = "ratio",
     .counter = zstd_ratio},
    {.name = NULL},
};
