/* SPDX-License-Identifier: MIT */
/* Buffers and synthetic guest pages for the micro-benchmarks. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"

static int copy_err(int ret, const struct rdmig_err *err, char *msg, size_t msg_len)
{
	if (ret && msg_len)
		snprintf(msg, msg_len, "%s", rdmig_err_str(err));
	return ret;
}

int rdmig_bench_setup(const struct rdmig_bench *b, int64_t arg, void **ctx,
		      uint64_t *bytes_per_iter, char *msg, size_t msg_len)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	*ctx = NULL;
	*bytes_per_iter = 0;
	return copy_err(b->setup(ctx, arg, bytes_per_iter, &err), &err, msg, msg_len);
}

int rdmig_bench_prepare(const struct rdmig_bench *b, void *ctx, char *msg, size_t msg_len)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (!b->prepare)
		return 0;
	return copy_err(b->prepare(ctx, &err), &err, msg, msg_len);
}

int rdmig_bench_run(const struct rdmig_bench *b, void *ctx, char *msg, size_t msg_len)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	return copy_err(b->run(ctx, &err), &err, msg, msg_len);
}

int rdmig_bench_alloc(size_t bytes, void **out, struct rdmig_err *err)
{
	void *p;

	*out = NULL;
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "bench: mmap %zu bytes", bytes);
	/* Real pages, not the shared zero page: a zero-page scan must touch RAM. */
	memset(p, 0xa5, bytes);
	memset(p, 0, bytes);
	*out = p;
	return 0;
}

void rdmig_bench_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}

uint64_t rdmig_bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Enough variety that zstd finds matches the way it does in guest text. */
static const char *const words[] = {
    "the",    "page",	 "kernel", "migration", "memory", "return", "static", "struct",
    "int",    "void",	 "const",  "error",	"if",	  "else",   "for",    "while",
    "buffer", "address", "length", "region",	"queue",  "write",  "read",   "device",
    "0x1f",   "=",	 "{",	   "}",		"(",	  ");",	    "*",      "->",
};

void rdmig_bench_fill_page(void *page, enum rdmig_bench_fill kind, uint64_t *rng)
{
	uint8_t *p = page;

	switch (kind) {
	case RDMIG_BENCH_FILL_ZERO:
		memset(p, 0, RDMIG_BENCH_PAGE);
		return;
	case RDMIG_BENCH_FILL_RANDOM:
		for (unsigned i = 0; i < RDMIG_BENCH_PAGE; i += 8) {
			uint64_t r = rdmig_bench_rand(rng);

			memcpy(p + i, &r, 8);
		}
		return;
	case RDMIG_BENCH_FILL_TEXT: {
		unsigned i = 0;

		while (i < RDMIG_BENCH_PAGE) {
			uint64_t r = rdmig_bench_rand(rng);
			const char *w = words[r % (sizeof(words) / sizeof(words[0]))];
			size_t n = strlen(w);

			if (n > RDMIG_BENCH_PAGE - i)
				n = RDMIG_BENCH_PAGE - i;
			memcpy(p + i, w, n);
			i += n;
			if (i < RDMIG_BENCH_PAGE)
				p[i++] = (r >> 32) % 8 ? ' ' : '\n';
		}
		return;
	}
	}
}
