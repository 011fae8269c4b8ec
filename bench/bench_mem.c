/* SPDX-License-Identifier: MIT */
/*
 * memcpy between two buffers far larger than the last-level cache: the
 * local physical limit every per-GiB figure in docs/performance.md is
 * compared against (a transfer cannot move guest RAM faster than the CPU
 * can read and write it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MEMCPY_BYTES (256u << 20) /* 8x a 32 MiB L3 */

struct memcpy_ctx {
	void *src, *dst;
	size_t bytes;
};

static void memcpy_teardown(void *p)
{
	struct memcpy_ctx *c = p;

	rdmig_bench_free(c->dst, c->bytes);
	rdmig_bench_free(c->src, c->bytes);
	free(c);
}

static int memcpy_setup(void **out, int64_t arg, uint64_t *bytes_per_iter, struct rdmig_err *err)
{
	struct memcpy_ctx *c = calloc(1, sizeof(*c));
	uint64_t rng = RDMIG_BENCH_SEED;
	int ret;

	if (!c)
		return rdmig_seterr(err, -ENOMEM, "memcpy: out of memory");
	c->bytes = MEMCPY_BYTES;
	ret = rdmig_bench_alloc(c->bytes, &c->src, err);
	if (!ret)
		ret = rdmig_bench_alloc(c->bytes, &c->dst, err);
	if (ret) {
		memcpy_teardown(c);
		return ret;
	}
	for (size_t off = 0; off < c->bytes; off += RDMIG_BENCH_PAGE)
		rdmig_bench_fill_page((char *)c->src + off, RDMIG_BENCH_FILL_RANDOM, &rng);
	*bytes_per_iter = c->bytes;
	*out = c;
	return 0;
}

static int memcpy_run(void *p, struct rdmig_err *err)
{
	struct memcpy_ctx *c = p;

	memcpy(c->dst, c->src, c->bytes);
	return 0;
}

const struct rdmig_bench rdmig_bench_mem[] = {
    {.name = "memcpy", .setup = memcpy_setup, .run = memcpy_run, .teardown = memcpy_teardown},
    {.name = NULL},
};
