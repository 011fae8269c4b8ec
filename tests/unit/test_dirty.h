/* SPDX-License-Identifier: MIT */
/*
 * test_dirty's parts (one test program, one ctest test; test_dirty.c has the
 * overview):
 *   test_dirty.c        main, the fixture and what the tests share
 *   test_dirty_track.c  the kernel sources under writers: exact, stress,
 *                       soft-dirty rules, granule
 *   test_dirty_front.c  the vmm-bitmap and none sources, the front end
 * Include after <cmocka.h>.
 */
#ifndef RDMIG_TEST_DIRTY_H
#define RDMIG_TEST_DIRTY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dirty.h"

#define REGION_BYTES (64ULL << 20)
#define HUGE_BYTES   (2ULL << 20)

extern uint64_t test_seed;
extern unsigned stress_ms;
extern size_t psz;

/* Probe results, taken once before any tracker runs (the soft-dirty probe clears bits). */
extern int uffd_rc, sd_rc;
extern struct rdmig_err uffd_why, sd_why;

uint64_t xorshift64s(uint64_t *s);

static inline bool test_bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] & (1ULL << (i % 64));
}

static inline void set_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

uint64_t count_bits(const uint64_t *bm, uint64_t words);
/* Skip, loudly, a test of a source this kernel lacks. */
void require_source(enum rdmig_dirty_kind kind);

/*
 * Writers enter the gate around each write; pause_writers closes it and
 * waits until no writer is inside (what a VMM does with its vCPUs).
 */
struct gate {
	atomic_int closed;
	atomic_int inside;
	atomic_ulong pauses;
};

void gate_enter(struct gate *g);
void gate_leave(struct gate *g);
int gate_pause(void *ctx, bool pause, struct rdmig_err *err);

/*
 * A region of guest RAM with PROT_NONE guard pages on both sides, so that
 * no later anonymous mapping (a thread stack) merges with it: for
 * soft-dirty a merge marks the whole merged mapping dirty. 2 MiB aligned,
 * so that asking for huge pages gets them.
 */
struct region {
	uint8_t *raw, *mem;
	uint64_t raw_len, len, npages, words;
	uint64_t *bitmap;
};

enum thp { THP_OFF, THP_ON, THP_ANY };

/*
 * What a test may leave behind when an assertion jumps out of it, released
 * by teardown(): the tracker (a leaked soft-dirty one would fail every later
 * soft-dirty test), the writer thread and the regions.
 */
struct fixture {
	struct rdmig_dirty *d;
	struct region regions[2];
	unsigned nregions;
	pthread_t th;
	bool th_live;
	atomic_int stop;
	struct gate gate;
	uint64_t *sets[2]; /* the exact test's page sets */
};
extern struct fixture fx;

int setup(void **state);
int teardown(void **state);
void start_thread(void *(*fn)(void *), void *arg);
void stop_thread(void);
struct region *region_new(uint64_t len, uint64_t populate, enum thp thp);
/* AnonHugePages of the mapping at addr, in KiB (-1 if not found): tells whether THP took. */
long thp_kib(const void *addr);
void clear_bitmap(struct region *r);
/* Writers store with atomics: the harvester reads the same pages while they run. */
void poke(struct region *r, uint64_t page, uint64_t v);
struct rdmig_dirty *tracker(enum rdmig_dirty_kind kind, struct region *r);
void harvest(struct rdmig_dirty *d);
/*
 * Compare the reported set with the written one: no page missed, and for
 * an exact source no page extra.
 */
void check_reported(const struct region *r, const uint64_t *written, bool exact, const char *what);
/* `n` distinct random pages into `set` (cleared first). */
void random_set(uint64_t *set, uint64_t words, uint64_t npages, uint64_t n, uint64_t *rng);

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* Each part's cmocka group; 0 when all its tests passed. */
int dirty_track_tests(void);
int dirty_front_tests(void);

#endif
