/* SPDX-License-Identifier: MIT */
/*
 * Micro-benchmarks as plain C tables.
 *
 * Every benchmark is a struct rdmig_bench in a table exported by one of the
 * bench_*.c files; bench/shim.cc, the only C++ in bench/, walks
 * rdmig_bench_tables and registers one Google Benchmark per (entry, arg).
 * All measuring logic lives here in C: the shim only times run() and turns
 * bytes_per_iter into the library's bytes/s counter.
 *
 * Lifetime: the shim calls setup() once before the first timed call of an
 * (entry, arg) and teardown() once after its last one, however many times
 * Google Benchmark re-enters it to find an iteration count. Only one context
 * is alive at a time, so entries may each take a few hundred MiB.
 */
#ifndef RDMIG_BENCH_H
#define RDMIG_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
/* libstdc++ before C++23 cannot include err.h's <stdatomic.h>: opaque here. */
struct rdmig_err;
extern "C" {
#else
#include "rdmig/err.h"
#endif

#define RDMIG_BENCH_MAX_ARGS 4

struct rdmig_bench {
	/* Benchmark name; the shim appends "/<arg_name>:<arg>" when arg_name is set. */
	const char *name;
	/* Name of the argument in reports, or NULL: then args[0] alone is used. */
	const char *arg_name;
	/* Arguments, one benchmark each; a 0 after the first ends the list. */
	int64_t args[RDMIG_BENCH_MAX_ARGS];
	/*
	 * Build the context for `arg` and set *bytes_per_iter to the bytes one
	 * run() processes. Returns 0 or a negative errno with a message in err;
	 * the shim then reports the benchmark skipped with that message (this
	 * is how a host without a kernel mechanism is reported).
	 */
	int (*setup)(void **ctx, int64_t arg, uint64_t *bytes_per_iter, struct rdmig_err *err);
	/*
	 * Untimed work before each run() (may be NULL), e.g. dirtying pages and
	 * checking the previous run's result. Returns 0 or a negative errno.
	 */
	int (*prepare)(void *ctx, struct rdmig_err *err);
	/* One timed iteration. Returns 0 or a negative errno (run stops, reported). */
	int (*run)(void *ctx, struct rdmig_err *err);
	/* Free the context (never called after a failed setup). */
	void (*teardown)(void *ctx);
	/* Optional extra figure reported as a counter named counter_name. */
	const char *counter_name;
	double (*counter)(void *ctx);
};

/* Tables, each ended by an entry whose name is NULL. */
extern const struct rdmig_bench rdmig_bench_mem[];
extern const struct rdmig_bench rdmig_bench_page[];
extern const struct rdmig_bench rdmig_bench_dirty[];
extern const struct rdmig_bench rdmig_bench_runs[];
extern const struct rdmig_bench rdmig_bench_zstd[];
/* All of the above, NULL-terminated (bench/tables.c). */
extern const struct rdmig_bench *const rdmig_bench_tables[];

/*
 * The shim's way in (bench_util.c): call an entry's setup, prepare (a no-op
 * when it has none) or run, and on failure copy the error message into msg.
 */
#define RDMIG_BENCH_MSG_MAX 384
int rdmig_bench_setup(const struct rdmig_bench *b, int64_t arg, void **ctx,
		      uint64_t *bytes_per_iter, char *msg, size_t msg_len);
int rdmig_bench_prepare(const struct rdmig_bench *b, void *ctx, char *msg, size_t msg_len);
int rdmig_bench_run(const struct rdmig_bench *b, void *ctx, char *msg, size_t msg_len);

/* ---- helpers for the tables (bench_util.c) ---------------------------- */

#define RDMIG_BENCH_PAGE 4096u

/*
 * Anonymous, page-aligned, populated memory (every page written, so no
 * benchmark reads the kernel's shared zero page). Free with
 * rdmig_bench_free().
 */
int rdmig_bench_alloc(size_t bytes, void **out, struct rdmig_err *err);
void rdmig_bench_free(void *p, size_t bytes);

/* splitmix64: any seed works; deterministic so runs are comparable. */
uint64_t rdmig_bench_rand(uint64_t *state);

/* Kinds of guest page content. */
enum rdmig_bench_fill {
	RDMIG_BENCH_FILL_ZERO,
	RDMIG_BENCH_FILL_TEXT,	 /* words and newlines from a small vocabulary */
	RDMIG_BENCH_FILL_RANDOM, /* incompressible */
};

/* Fill one page of `kind`. */
void rdmig_bench_fill_page(void *page, enum rdmig_bench_fill kind, uint64_t *rng);

/*
 * Seed shared by the tables; printed by the shim so that a strange figure can
 * be reproduced with the same data.
 */
#define RDMIG_BENCH_SEED 0x726469676265ULL /* "rdmigbe" */

#ifdef __cplusplus
}
#endif

#endif
