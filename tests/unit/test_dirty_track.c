/* SPDX-License-Identifier: MIT */
/*
 * The kernel's dirty sources (uffd-wp, soft-dirty) under writers: exact
 * reporting, the migration invariant under stress, soft-dirty's own rules,
 * a granule larger than a page (test_dirty.c has the overview).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "dirty.h"
#include "test_dirty.h"

#define EXACT_PAGES 600 /* written per round of the exact test */

/* ---- exact test --------------------------------------------------------- */

static struct side_writer {
	struct region *r;
	const uint64_t *set;
	atomic_int done;
} side_writer;

/* Writes its pages slowly, so that they land before, during and after harvests. */
static void *side_writer_main(void *arg)
{
	struct side_writer *s = arg;
	struct timespec ts = {.tv_nsec = 20000};

	for (uint64_t i = 0; i < s->r->npages && !atomic_load(&fx.stop); i++) {
		if (!test_bit(s->set, i))
			continue;
		gate_enter(&fx.gate);
		poke(s->r, i, i + 7);
		gate_leave(&fx.gate);
		nanosleep(&ts, NULL);
	}
	atomic_store(&s->done, 1);
	return NULL;
}

static void exact(enum rdmig_dirty_kind kind, enum thp thp)
{
	bool precise = kind == RDMIG_DIRTY_UFFD_WP;
	struct region *r;
	struct rdmig_dirty *d;
	uint64_t rng = test_seed, *set, *side, harvests = 0;

	require_source(kind);
	r = region_new(REGION_BYTES, REGION_BYTES / 2, thp);
	set = fx.sets[0] = calloc(r->words, sizeof(uint64_t));
	side = fx.sets[1] = calloc(r->words, sizeof(uint64_t));
	assert_non_null(set);
	assert_non_null(side);
	d = tracker(kind, r);
	if (thp == THP_ON)
		print_message("[   INFO   ] %s: %ld KiB of the region in huge pages\n",
			      rdmig_dirty_kind_name(kind), thp_kib(r->mem));

	/* Nothing written since start. */
	harvest(d);
	assert_int_equal(count_bits(r->bitmap, r->words), 0);

	/* Round 1: two thirds from this thread, the rest from a thread during harvests. */
	random_set(set, r->words, r->npages, EXACT_PAGES, &rng);
	for (uint64_t i = 0, k = 0; i < r->npages; i++) {
		if (!test_bit(set, i))
			continue;
		if (k++ % 3 == 2)
			set_bit(side, i);
		else
			poke(r, i, i + 3);
	}
	side_writer = (struct side_writer){.r = r, .set = side};
	start_thread(side_writer_main, &side_writer);
	while (!atomic_load(&side_writer.done)) {
		harvest(d);
		harvests++;
	}
	stop_thread();
	harvest(d);
	print_message("[   INFO   ] %s: %" PRIu64 " harvests while the second thread wrote\n",
		      rdmig_dirty_kind_name(kind), harvests);
	check_reported(r, set, precise, "written set");

	/* Reported pages were re-armed: nothing new. */
	clear_bitmap(r);
	harvest(d);
	if (count_bits(r->bitmap, r->words))
		fail_msg("second harvest reported %" PRIu64 " page(s), expected none",
			 count_bits(r->bitmap, r->words));

	/* Round 2: a new set, plus some pages of the first, is reported again. */
	random_set(set, r->words, r->npages, EXACT_PAGES, &rng);
	for (uint64_t i = 0; i < r->npages; i++)
		if (i % 97 == 0 && test_bit(side, i))
			set_bit(set, i);
	for (uint64_t i = 0; i < r->npages; i++)
		if (test_bit(set, i))
			poke(r, i, i + 11);
	harvest(d);
	check_reported(r, set, precise, "rewritten set");
}

static void test_uffd_exact(void **state)
{
	exact(RDMIG_DIRTY_UFFD_WP, THP_OFF);
}

static void test_uffd_exact_thp(void **state)
{
	exact(RDMIG_DIRTY_UFFD_WP, THP_ON);
}

static void test_softdirty_exact(void **state)
{
	exact(RDMIG_DIRTY_SOFT_DIRTY, THP_OFF);
}

static void test_softdirty_exact_thp(void **state)
{
	exact(RDMIG_DIRTY_SOFT_DIRTY, THP_ON);
}

/* ---- stress: the migration invariant ------------------------------------ */

static struct stress_writer {
	struct region *r;
	uint64_t seed;
	atomic_ulong epoch; /* bumped before each harvest */
	atomic_ulong writes;
} stress_writer;

/*
 * Writes allowed per harvest: few enough that most pages are clean when a
 * harvest starts (a page already dirty cannot show a lost write), which
 * matters on a slow machine (TCG) where the copies take long.
 */
#define STRESS_BUDGET(npages) ((npages) / 16)

static void *stress_writer_main(void *arg)
{
	struct stress_writer *s = arg;
	uint64_t rng = s->seed, n = 0, budget = STRESS_BUDGET(s->r->npages), epoch = 0;

	while (!atomic_load_explicit(&fx.stop, memory_order_relaxed)) {
		uint64_t x = xorshift64s(&rng), page = x % s->r->npages;
		uint64_t *w = (uint64_t *)(void *)(s->r->mem + page * psz);

		if (!budget) {
			if (atomic_load(&s->epoch) == epoch) {
				sched_yield();
				continue;
			}
			epoch = atomic_load(&s->epoch);
			budget = STRESS_BUDGET(s->r->npages);
		}
		budget--;
		gate_enter(&fx.gate);
		/* Byte 0 of the page, and now and then a word elsewhere in it. */
		__atomic_fetch_add(&w[0], 1, __ATOMIC_RELAXED);
		if ((x >> 40) % 8 == 0)
			__atomic_store_n(&w[1 + (x >> 44) % (psz / 8 - 1)], x, __ATOMIC_RELAXED);
		gate_leave(&fx.gate);
		n++;
	}
	atomic_store(&s->writes, n);
	return NULL;
}

static void copy_page(uint8_t *dst, const uint8_t *src)
{
	uint64_t *d = (uint64_t *)(void *)dst;
	const uint64_t *s = (const uint64_t *)(const void *)src;

	for (size_t i = 0; i < psz / 8; i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

/* Copy the reported pages into the shadow and clear the bitmap; returns how many. */
static uint64_t copy_reported(struct region *r, uint8_t *shadow)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < r->words; w++) {
		uint64_t bits = r->bitmap[w];

		while (bits) {
			uint64_t p = w * 64 + (unsigned)__builtin_ctzll(bits);

			bits &= bits - 1;
			copy_page(shadow + p * psz, r->mem + p * psz);
			n++;
		}
		r->bitmap[w] = 0;
	}
	return n;
}

static void stress(enum rdmig_dirty_kind kind, enum thp thp)
{
	struct region *r, *shadow;
	struct rdmig_dirty *d;
	uint64_t harvests = 0, copied = 0, t_end, final;

	require_source(kind);
	r = region_new(REGION_BYTES, REGION_BYTES, thp);
	shadow = region_new(REGION_BYTES, 0, THP_ANY);

	/* The guest runs before, during and after start, as in a migration. */
	stress_writer = (struct stress_writer){.r = r, .seed = test_seed ^ 0x5157};
	start_thread(stress_writer_main, &stress_writer);
	d = tracker(kind, r);
	if (thp == THP_ON)
		print_message("[   INFO   ] %s: %ld KiB of the region in huge pages at start\n",
			      rdmig_dirty_kind_name(kind), thp_kib(r->mem));

	/* Bulk round: everything, after tracking started. */
	for (uint64_t p = 0; p < r->npages; p++)
		copy_page(shadow->mem + p * psz, r->mem + p * psz);

	t_end = (uint64_t)rdmig_now_ms() + stress_ms;
	while ((uint64_t)rdmig_now_ms() < t_end) {
		atomic_fetch_add(&stress_writer.epoch, 1);
		harvest(d);
		harvests++;
		copied += copy_reported(r, shadow->mem);
	}

	/* Switchover: stop the guest, final harvest, final copy. */
	stop_thread();
	harvest(d);
	final = copy_reported(r, shadow->mem);

	print_message("[   INFO   ] %s: %" PRIu64 " harvests, %lu writes, %" PRIu64
		      " pages copied live, %" PRIu64 " in the final round, %lu pauses%s\n",
		      rdmig_dirty_kind_name(kind), harvests,
		      (unsigned long)atomic_load(&stress_writer.writes), copied, final,
		      (unsigned long)atomic_load(&fx.gate.pauses),
		      thp == THP_ON ? ", huge pages asked for" : "");
	if (thp == THP_ON)
		print_message("[   INFO   ] %s: %ld KiB of the region in huge pages at the end\n",
			      rdmig_dirty_kind_name(kind), thp_kib(r->mem));
	assert_true(atomic_load(&stress_writer.writes) > 0);
	assert_true(harvests > 1);

	if (memcmp(shadow->mem, r->mem, r->len) != 0) {
		uint64_t bad = 0, first = 0;

		for (uint64_t p = 0; p < r->npages; p++)
			if (memcmp(shadow->mem + p * psz, r->mem + p * psz, psz) && !bad++)
				first = p;
		fail_msg("%s lost writes: %" PRIu64 " page(s) differ from the copy, first %" PRIu64
			 " (seed %#" PRIx64 ")",
			 rdmig_dirty_kind_name(kind), bad, first, test_seed);
	}
}

static void test_uffd_stress(void **state)
{
	stress(RDMIG_DIRTY_UFFD_WP, THP_OFF);
}

static void test_uffd_stress_thp(void **state)
{
	stress(RDMIG_DIRTY_UFFD_WP, THP_ON);
}

static void test_softdirty_stress(void **state)
{
	stress(RDMIG_DIRTY_SOFT_DIRTY, THP_OFF);
}

static void test_softdirty_stress_thp(void **state)
{
	stress(RDMIG_DIRTY_SOFT_DIRTY, THP_ON);
}

/* ---- soft-dirty specifics ----------------------------------------------- */

static void test_softdirty_rules(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct region *r;
	struct rdmig_dirty *d, *d2;
	struct rdmig_dirty_region dr;

	require_source(RDMIG_DIRTY_SOFT_DIRTY);
	r = region_new(16 * psz, 16 * psz, THP_OFF);
	dr = (struct rdmig_dirty_region){.addr = r->mem, .len = r->len, .bitmap = r->bitmap};

	/* Without a way to pause the writers the harvest could lose writes. */
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_SOFT_DIRTY, &dr, 1, psz, &d, &err), 0);
	assert_int_equal(rdmig_dirty_start(d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "pause_writers"));
	rdmig_dirty_destroy(d);

	/* One per process: clear_refs is process-wide. */
	d = tracker(RDMIG_DIRTY_SOFT_DIRTY, r);
	assert_true(rdmig_dirty_softdirty_active());
	assert_int_equal(rdmig_dirty_best(false),
			 uffd_rc ? RDMIG_DIRTY_SOFT_DIRTY : RDMIG_DIRTY_UFFD_WP);
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_SOFT_DIRTY, &dr, 1, psz, &d2, &err), 0);
	d2->pause_writers = gate_pause;
	d2->pause_ctx = &fx.gate;
	assert_int_equal(rdmig_dirty_start(d2, &err), -EBUSY);
	rdmig_dirty_destroy(d2);
	/* The failed second start must not have released the first one's claim. */
	assert_true(rdmig_dirty_softdirty_active());
	rdmig_dirty_destroy(d);
	fx.d = NULL;
	assert_false(rdmig_dirty_softdirty_active());
}

/* ---- granule larger than a page ----------------------------------------- */

static void test_uffd_granule(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct region *r;
	struct rdmig_dirty_region dr;
	uint64_t gran = 4 * psz;

	require_source(RDMIG_DIRTY_UFFD_WP);
	r = region_new(64 * psz, 32 * psz, THP_OFF);
	dr = (struct rdmig_dirty_region){.addr = r->mem, .len = r->len, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_UFFD_WP, &dr, 1, gran, &fx.d, &err), 0);
	assert_int_equal(rdmig_dirty_start(fx.d, &err), 0);
	poke(r, 5, 1);	/* granule 1 */
	poke(r, 6, 1);	/* granule 1 */
	poke(r, 40, 1); /* granule 10, never touched before */
	harvest(fx.d);
	assert_int_equal(r->bitmap[0], (1ULL << 1) | (1ULL << 10));
}

int dirty_track_tests(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_uffd_exact),		 T(test_uffd_exact_thp),       T(test_softdirty_exact),
	    T(test_softdirty_exact_thp), T(test_uffd_stress),	       T(test_uffd_stress_thp),
	    T(test_softdirty_stress),	 T(test_softdirty_stress_thp), T(test_softdirty_rules),
	    T(test_uffd_granule),
	};

	return cmocka_run_group_tests_name("dirty track", tests, NULL, NULL);
}
