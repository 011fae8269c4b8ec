/* SPDX-License-Identifier: MIT */
/*
 * Runs: coalescing, and dirty bitmap to runs against a bit-by-bit reference.
 *
 *   test_runs [-s SEED]     (or RDMIG_TEST_SEED in the environment)
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runs.h"
#include "th_content.h"

#define PAGE 4096u

static uint64_t test_seed = 0x72756e73ULL; /* "runs" */
static int cur_round = -1;		   /* of the random test, for failure messages */

static struct rdmig_run R(uint32_t lreg, uint32_t rreg, uint64_t loff, uint64_t roff,
			  uint64_t len) {
	return (struct rdmig_run){
	    .lreg = lreg, .rreg = rreg, .loff = loff, .roff = roff, .len = len};
}

static void
run_equal(const struct rdmig_run *a, const struct rdmig_run *b, size_t i)
{
	if (a->lreg != b->lreg || a->rreg != b->rreg || a->loff != b->loff || a->roff != b->roff ||
	    a->len != b->len)
		fail_msg("run %zu: got {%u,%u,%#" PRIx64 ",%#" PRIx64 ",%" PRIu64
			 "}, want {%u,%u,%#" PRIx64 ",%#" PRIx64 ",%" PRIu64 "}",
			 i, a->lreg, a->rreg, a->loff, a->roff, a->len, b->lreg, b->rreg, b->loff,
			 b->roff, b->len);
}

static void check_coalesce(struct rdmig_run *in, size_t n, const struct rdmig_run *want,
			   size_t nwant)
{
	size_t got = rdmig_runs_coalesce(in, n);

	assert_int_equal(got, nwant);
	for (size_t i = 0; i < nwant; i++)
		run_equal(&in[i], &want[i], i);
}

/* ---- coalesce --------------------------------------------------------- */

static void test_coalesce_empty_and_single(void **state)
{
	struct rdmig_run one[1] = {R(1, 2, 0, 4096, 8192)};
	const struct rdmig_run want[1] = {R(1, 2, 0, 4096, 8192)};

	(void)state;
	assert_int_equal(rdmig_runs_coalesce(NULL, 0), 0);
	check_coalesce(one, 1, want, 1);
}

static void test_coalesce_contiguous_both(void **state)
{
	struct rdmig_run in[] = {R(0, 3, 0, 1 << 20, PAGE), R(0, 3, PAGE, (1 << 20) + PAGE, PAGE),
				 R(0, 3, 2 * PAGE, (1 << 20) + 2 * PAGE, 3 * PAGE)};
	const struct rdmig_run want[] = {R(0, 3, 0, 1 << 20, 5 * PAGE)};

	(void)state;
	check_coalesce(in, 3, want, 1);
}

static void test_coalesce_local_only(void **state)
{
	struct rdmig_run in[] = {R(0, 0, 0, 0, PAGE), R(0, 0, PAGE, 3 * PAGE, PAGE)};
	const struct rdmig_run want[] = {R(0, 0, 0, 0, PAGE), R(0, 0, PAGE, 3 * PAGE, PAGE)};

	(void)state;
	check_coalesce(in, 2, want, 2);
}

static void test_coalesce_remote_only(void **state)
{
	struct rdmig_run in[] = {R(0, 0, 0, 0, PAGE), R(0, 0, 5 * PAGE, PAGE, PAGE)};
	const struct rdmig_run want[] = {R(0, 0, 0, 0, PAGE), R(0, 0, 5 * PAGE, PAGE, PAGE)};

	(void)state;
	check_coalesce(in, 2, want, 2);
}

static void test_coalesce_other_region(void **state)
{
	struct rdmig_run in[] = {R(0, 0, 0, 0, PAGE), R(1, 0, PAGE, PAGE, PAGE),
				 R(1, 2, 2 * PAGE, 2 * PAGE, PAGE)};
	const struct rdmig_run want[] = {R(0, 0, 0, 0, PAGE), R(1, 0, PAGE, PAGE, PAGE),
					 R(1, 2, 2 * PAGE, 2 * PAGE, PAGE)};

	(void)state;
	check_coalesce(in, 3, want, 3);
}

static void test_coalesce_neighbours_only(void **state)
{
	/* The first and third are contiguous, but not neighbours: order is kept. */
	struct rdmig_run in[] = {R(0, 0, 0, 0, PAGE), R(0, 0, 9 * PAGE, 9 * PAGE, PAGE),
				 R(0, 0, PAGE, PAGE, PAGE)};
	const struct rdmig_run want[] = {R(0, 0, 0, 0, PAGE), R(0, 0, 9 * PAGE, 9 * PAGE, PAGE),
					 R(0, 0, PAGE, PAGE, PAGE)};

	(void)state;
	check_coalesce(in, 3, want, 3);
}

static void test_coalesce_mixed(void **state)
{
	struct rdmig_run in[] = {
	    R(0, 0, 0, 0, PAGE),
	    R(0, 0, PAGE, PAGE, PAGE),
	    R(0, 0, 4 * PAGE, 4 * PAGE, PAGE), /* gap */
	    R(0, 0, 5 * PAGE, 5 * PAGE, 2 * PAGE),
	    R(0, 0, 7 * PAGE, 7 * PAGE, PAGE),
	    R(1, 1, 8 * PAGE, 8 * PAGE, PAGE), /* other region */
	    R(1, 1, 9 * PAGE, 9 * PAGE, PAGE),
	};
	const struct rdmig_run want[] = {R(0, 0, 0, 0, 2 * PAGE),
					 R(0, 0, 4 * PAGE, 4 * PAGE, 4 * PAGE),
					 R(1, 1, 8 * PAGE, 8 * PAGE, 2 * PAGE)};

	(void)state;
	check_coalesce(in, 7, want, 3);
}

static void test_coalesce_no_wraparound(void **state)
{
	/* loff + len wraps to 0: must not look contiguous with a run at 0. */
	struct rdmig_run in[] = {R(0, 0, UINT64_MAX - PAGE + 1, 0, PAGE), R(0, 0, 0, PAGE, PAGE)};
	const struct rdmig_run want[] = {R(0, 0, UINT64_MAX - PAGE + 1, 0, PAGE),
					 R(0, 0, 0, PAGE, PAGE)};
	struct rdmig_run in2[] = {R(0, 0, 0, UINT64_MAX - PAGE + 1, PAGE), R(0, 0, PAGE, 0, PAGE)};
	const struct rdmig_run want2[] = {R(0, 0, 0, UINT64_MAX - PAGE + 1, PAGE),
					  R(0, 0, PAGE, 0, PAGE)};

	(void)state;
	check_coalesce(in, 2, want, 2);
	check_coalesce(in2, 2, want2, 2);
}

/* ---- bitmap: reference ------------------------------------------------ */

static int bit(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

static void set_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

/* The obvious page-by-page version of rdmig_runs_from_bitmap(). */
static size_t naive_runs(const uint64_t *bm, uint64_t npages, uint64_t page_size, uint32_t lreg,
			 uint32_t rreg, uint64_t first, uint64_t max_bytes, struct rdmig_run *out,
			 size_t cap, uint64_t *next)
{
	uint64_t max_pages =
	    max_bytes ? (max_bytes / page_size ? max_bytes / page_size : 1) : UINT64_MAX;
	uint64_t p = first;
	size_t n = 0;

	for (;;) {
		uint64_t start;

		while (p < npages && !bit(bm, p))
			p++;
		if (p >= npages || n == cap)
			break;
		start = p;
		while (p < npages && bit(bm, p) && p - start < max_pages)
			p++;
		out[n++] =
		    R(lreg, rreg, start * page_size, start * page_size, (p - start) * page_size);
	}
	*next = p < npages ? p : npages;
	return n;
}

/* Compare one call against the reference; returns the count. */
static size_t check_bitmap(const uint64_t *bm, uint64_t npages, uint64_t first, uint64_t max_bytes,
			   size_t cap, uint64_t *next)
{
	struct rdmig_run *got = calloc(cap + 1, sizeof(*got));
	struct rdmig_run *want = calloc(cap + 1, sizeof(*want));
	uint64_t next_want = 0;
	size_t n, nw;

	assert_non_null(got);
	assert_non_null(want);
	n = rdmig_runs_from_bitmap(bm, npages, PAGE, 3, 7, first, max_bytes, got, cap, next);
	nw = naive_runs(bm, npages, PAGE, 3, 7, first, max_bytes, want, cap, &next_want);
	if (n != nw || *next != next_want)
		fail_msg("npages %" PRIu64 " first %" PRIu64 " max %" PRIu64
			 " cap %zu: got %zu runs next %" PRIu64 ", want %zu next %" PRIu64
			 " (seed %" PRIu64 ", round %d)",
			 npages, first, max_bytes, cap, n, *next, nw, next_want, test_seed,
			 cur_round);
	for (size_t i = 0; i < n; i++) {
		if (memcmp(&got[i], &want[i], sizeof(got[i])))
			print_error("seed %" PRIu64 ", round %d, npages %" PRIu64 ", first %" PRIu64
				    "\n",
				    test_seed, cur_round, npages, first);
		run_equal(&got[i], &want[i], i);
	}
	free(got);
	free(want);
	return n;
}

/* ---- bitmap ----------------------------------------------------------- */

static void test_bitmap_empty(void **state)
{
	uint64_t bm[16] = {0}, next = 1;
	struct rdmig_run out[4];

	(void)state;
	assert_int_equal(rdmig_runs_from_bitmap(bm, 1000, PAGE, 0, 0, 0, 0, out, 4, &next), 0);
	assert_int_equal(next, 1000);
	assert_int_equal(rdmig_runs_from_bitmap(bm, 0, PAGE, 0, 0, 0, 0, out, 4, &next), 0);
	assert_int_equal(next, 0);
}

static void test_bitmap_full(void **state)
{
	uint64_t bm[16], next = 0;
	struct rdmig_run out[4];

	(void)state;
	memset(bm, 0xff, sizeof(bm));
	assert_int_equal(rdmig_runs_from_bitmap(bm, 1000, PAGE, 1, 2, 0, 0, out, 4, &next), 1);
	run_equal(&out[0], &(struct rdmig_run){1, 2, 0, 0, 1000ULL * PAGE}, 0);
	assert_int_equal(next, 1000);
	check_bitmap(bm, 1000, 0, 0, 4, &next);
	check_bitmap(bm, 1024, 0, 0, 4, &next);
}

static void test_bitmap_sparse(void **state)
{
	const uint64_t npages = 1ULL << 24; /* 64 GiB of 4 KiB pages, 2 MiB of bitmap */
	uint64_t *bm = calloc(npages / 64, sizeof(*bm)), next = 0;
	struct rdmig_run out[8];

	(void)state;
	assert_non_null(bm);
	set_bit(bm, 5);
	set_bit(bm, 700);
	set_bit(bm, 701);
	set_bit(bm, npages - 1);
	assert_int_equal(rdmig_runs_from_bitmap(bm, npages, PAGE, 0, 0, 0, 0, out, 8, &next), 3);
	run_equal(&out[0], &(struct rdmig_run){0, 0, 5 * PAGE, 5 * PAGE, PAGE}, 0);
	run_equal(&out[1], &(struct rdmig_run){0, 0, 700 * PAGE, 700 * PAGE, 2 * PAGE}, 1);
	run_equal(&out[2],
		  &(struct rdmig_run){0, 0, (npages - 1) * PAGE, (npages - 1) * PAGE, PAGE}, 2);
	assert_int_equal(next, npages);
	free(bm);
}

static void test_bitmap_alternating(void **state)
{
	uint64_t bm[4], next = 0;
	struct rdmig_run out[256];

	(void)state;
	for (int i = 0; i < 4; i++)
		bm[i] = 0xaaaaaaaaaaaaaaaaULL; /* odd pages dirty */
	assert_int_equal(rdmig_runs_from_bitmap(bm, 256, PAGE, 0, 0, 0, 0, out, 256, &next), 128);
	for (size_t i = 0; i < 128; i++)
		run_equal(&out[i],
			  &(struct rdmig_run){0, 0, (2 * i + 1) * PAGE, (2 * i + 1) * PAGE, PAGE},
			  i);
	assert_int_equal(next, 256);
	check_bitmap(bm, 256, 0, 0, 256, &next);
	check_bitmap(bm, 255, 0, 0, 7, &next);
}

static void test_bitmap_word_boundaries(void **state)
{
	uint64_t bm[4] = {0}, next = 0;
	struct rdmig_run out[4];

	(void)state;
	for (uint64_t i = 60; i < 200; i++)
		set_bit(bm, i); /* spans words 0..3 */
	assert_int_equal(rdmig_runs_from_bitmap(bm, 256, PAGE, 0, 0, 0, 0, out, 4, &next), 1);
	run_equal(&out[0], &(struct rdmig_run){0, 0, 60 * PAGE, 60 * PAGE, 140 * PAGE}, 0);
	check_bitmap(bm, 256, 63, 0, 4, &next);
	check_bitmap(bm, 256, 64, 0, 4, &next);
	check_bitmap(bm, 256, 199, 0, 4, &next);
	check_bitmap(bm, 256, 200, 0, 4, &next);
}

static void test_bitmap_max_run_bytes(void **state)
{
	uint64_t bm[2], next = 0;
	struct rdmig_run out[128];

	(void)state;
	bm[0] = bm[1] = ~0ULL;
	/* 100 dirty pages, at most 10 pages a run. */
	assert_int_equal(rdmig_runs_from_bitmap(bm, 100, PAGE, 0, 0, 0, 10 * PAGE, out, 128, &next),
			 10);
	for (size_t i = 0; i < 10; i++)
		run_equal(&out[i],
			  &(struct rdmig_run){0, 0, i * 10 * PAGE, i * 10 * PAGE, 10 * PAGE}, i);
	assert_int_equal(next, 100);
	/* A limit that is not a whole number of pages rounds down. */
	assert_int_equal(
	    rdmig_runs_from_bitmap(bm, 100, PAGE, 0, 0, 0, 10 * PAGE + PAGE / 2, out, 128, &next),
	    10);
	assert_int_equal(out[0].len, 10 * PAGE);
	/* A limit below one page still makes progress, a page at a time. */
	assert_int_equal(rdmig_runs_from_bitmap(bm, 100, PAGE, 0, 0, 0, 1, out, 128, &next), 100);
	assert_int_equal(out[99].loff, 99 * PAGE);
	assert_int_equal(out[99].len, PAGE);
	check_bitmap(bm, 100, 0, 7 * PAGE, 128, &next);
	check_bitmap(bm, 128, 3, 64 * PAGE, 128, &next);
}

static void test_bitmap_resume_small_cap(void **state)
{
	uint64_t bm[8] = {0}, next = 0, first;
	struct rdmig_run all[512], part[3];
	size_t nall, total;

	(void)state;
	for (uint64_t i = 0; i < 512; i++)
		if (i % 7 < 3 || (i > 300 && i < 340))
			set_bit(bm, i);
	nall = rdmig_runs_from_bitmap(bm, 512, PAGE, 0, 0, 0, 16 * PAGE, all, 512, &next);
	assert_int_equal(next, 512);
	for (size_t cap = 1; cap <= 3; cap++) {
		total = 0;
		first = 0;
		for (;;) {
			size_t n = rdmig_runs_from_bitmap(bm, 512, PAGE, 0, 0, first, 16 * PAGE,
							  part, cap, &next);

			assert_true(n <= cap);
			for (size_t i = 0; i < n; i++)
				run_equal(&part[i], &all[total + i], total + i);
			total += n;
			if (next == 512)
				break;
			/* Not done: the page to resume at is a dirty one. */
			assert_int_equal(n, cap);
			assert_true(bit(bm, next));
			first = next;
		}
		assert_int_equal(total, nall);
	}
}

static void test_bitmap_cap_zero(void **state)
{
	uint64_t bm[2] = {0}, next = 0;
	struct rdmig_run out[1];

	(void)state;
	set_bit(bm, 77);
	assert_int_equal(rdmig_runs_from_bitmap(bm, 128, PAGE, 0, 0, 3, 0, out, 0, &next), 0);
	assert_int_equal(next, 77);
}

static void test_bitmap_last_partial_word(void **state)
{
	uint64_t bm[2], next = 0;
	struct rdmig_run out[4];

	(void)state;
	/* Only pages 0..69 exist; bits 70..127 are garbage and must be ignored. */
	bm[0] = 0;
	bm[1] = ~0ULL << 2; /* pages 66.. dirty */
	assert_int_equal(rdmig_runs_from_bitmap(bm, 70, PAGE, 0, 0, 0, 0, out, 4, &next), 1);
	run_equal(&out[0], &(struct rdmig_run){0, 0, 66 * PAGE, 66 * PAGE, 4 * PAGE}, 0);
	assert_int_equal(next, 70);
	/* Garbage alone beyond the end produces nothing. */
	bm[1] = ~0ULL << 6;
	assert_int_equal(rdmig_runs_from_bitmap(bm, 70, PAGE, 0, 0, 0, 0, out, 4, &next), 0);
	assert_int_equal(next, 70);
}

static void test_bitmap_first_page(void **state)
{
	uint64_t bm[2] = {~0ULL, ~0ULL}, next = 0;
	struct rdmig_run out[2];

	(void)state;
	/* Starting inside a dirty stretch starts the run there. */
	assert_int_equal(rdmig_runs_from_bitmap(bm, 128, PAGE, 0, 0, 100, 0, out, 2, &next), 1);
	run_equal(&out[0], &(struct rdmig_run){0, 0, 100 * PAGE, 100 * PAGE, 28 * PAGE}, 0);
	/* At or past the end: nothing, done. */
	assert_int_equal(rdmig_runs_from_bitmap(bm, 128, PAGE, 0, 0, 128, 0, out, 2, &next), 0);
	assert_int_equal(next, 128);
	assert_int_equal(rdmig_runs_from_bitmap(bm, 128, PAGE, 0, 0, UINT64_MAX, 0, out, 2, &next),
			 0);
	assert_int_equal(next, 128);
}

static struct th_rng rng;

static uint64_t rnd(void)
{
	return th_rng_next(&rng);
}

static void test_bitmap_random_vs_naive(void **state)
{
	enum { ROUNDS = 3000, MAXPAGES = 4096 };
	uint64_t bm[MAXPAGES / 64 + 1];

	(void)state;
	print_message("runs: seed %" PRIu64 " (rerun: test_runs -s %" PRIu64 ")\n", test_seed,
		      test_seed);
	rng.s = test_seed;
	for (cur_round = 0; cur_round < (int)ROUNDS; cur_round++) {
		uint64_t npages = rnd() % (MAXPAGES + 1), next, first;
		unsigned density = (unsigned)(rnd() % 5);
		uint64_t max_bytes = (rnd() % 3) ? 0 : (rnd() % 40) * PAGE + rnd() % 3;
		size_t cap = 1 + rnd() % 20;

		for (size_t i = 0; i < sizeof(bm) / sizeof(bm[0]); i++) {
			switch (density) {
			case 0: /* very sparse */
				bm[i] = (rnd() % 16) ? 0 : 1ULL << (rnd() % 64);
				break;
			case 1: /* random */
				bm[i] = rnd();
				break;
			case 2: /* dense */
				bm[i] = rnd() | rnd() | rnd();
				break;
			case 3: /* long stretches */
				bm[i] = (rnd() % 2) ? ~0ULL : 0;
				break;
			default: /* stretches with holes */
				bm[i] = ~0ULL ^ (1ULL << (rnd() % 64));
				break;
			}
		}
		/* Walk the whole bitmap in chunks, as a sender would. */
		first = rnd() % (npages + 2);
		do {
			check_bitmap(bm, npages, first, max_bytes, cap, &next);
			if (next < npages && next <= first)
				fail_msg("no progress at page %" PRIu64 " (seed %" PRIu64
					 ", round %u)",
					 first, test_seed, cur_round);
			first = next;
		} while (next < npages);
	}
	cur_round = -1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_coalesce_empty_and_single),
	    cmocka_unit_test(test_coalesce_contiguous_both),
	    cmocka_unit_test(test_coalesce_local_only),
	    cmocka_unit_test(test_coalesce_remote_only),
	    cmocka_unit_test(test_coalesce_other_region),
	    cmocka_unit_test(test_coalesce_neighbours_only),
	    cmocka_unit_test(test_coalesce_mixed),
	    cmocka_unit_test(test_coalesce_no_wraparound),
	    cmocka_unit_test(test_bitmap_empty),
	    cmocka_unit_test(test_bitmap_full),
	    cmocka_unit_test(test_bitmap_sparse),
	    cmocka_unit_test(test_bitmap_alternating),
	    cmocka_unit_test(test_bitmap_word_boundaries),
	    cmocka_unit_test(test_bitmap_max_run_bytes),
	    cmocka_unit_test(test_bitmap_resume_small_cap),
	    cmocka_unit_test(test_bitmap_cap_zero),
	    cmocka_unit_test(test_bitmap_last_partial_word),
	    cmocka_unit_test(test_bitmap_first_page),
	    cmocka_unit_test(test_bitmap_random_vs_naive),
	};
	const char *env = getenv("RDMIG_TEST_SEED");

	if (env)
		test_seed = strtoull(env, NULL, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-s") && i + 1 < argc) {
			test_seed = strtoull(argv[++i], NULL, 0);
		} else {
			fprintf(stderr, "usage: %s [-s SEED]\n", argv[0]);
			return 2;
		}
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
