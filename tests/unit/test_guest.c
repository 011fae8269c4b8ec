/* SPDX-License-Identifier: MIT */
/*
 * Synthetic guest: configuration checks, the incr integrity check (that it
 * passes on a real run and fails on every kind of damage), pause that really
 * stops writes, throttle, dirty-rate pacing, vCPU state save and resume on a
 * second guest, dump, vCPU pinning, huge-page RAM. Real threads, no mocks.
 *
 * Timing assertions are loose ratios over a few hundred milliseconds, since
 * the machines running this are shared and noisy.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sched.h>

#include "clock.h"
#include "plan.h"
#include "rdmig/guest.h"
#include "incr_check.h"
#include "th_res.h"
#include "th_unit.h"

#define PAGE	  RDMIG_PAGE_SIZE
#define MIB	  (1024ULL * 1024)
#define TEST_SEED 0x6775657374ULL /* "guest" */

/* ---- helpers ------------------------------------------------------------ */

static struct rdmig_guest *make_guest(uint64_t ram, unsigned nregions, unsigned vcpus,
				      enum rdmig_workload wl, uint64_t rate)
{
	struct rdmig_guest_cfg cfg = {.ram_size = ram,
				      .nregions = nregions,
				      .vcpus = vcpus,
				      .workload = wl,
				      .dirty_rate = rate,
				      .seed = TEST_SEED};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *g = NULL;

	th_unit_ok(rdmig_guest_create(&cfg, &g, &err), &err);
	assert_non_null(g);
	return g;
}

static void start(struct rdmig_guest *g, const struct rdmig_vcpu_state *states)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	th_unit_ok(rdmig_guest_start(g, states, &err), &err);
}

/* Wait until the guest has done at least `min` work (10 s at most). */
static void wait_work(struct rdmig_guest *g, uint64_t min)
{
	uint64_t deadline = rdmig_now_ns() + 10000000000ULL;

	while (rdmig_guest_work(g) < min) {
		if (rdmig_now_ns() > deadline)
			fail_msg("guest did only %" PRIu64 " of %" PRIu64 " work units in 10 s",
				 rdmig_guest_work(g), min);
		rdmig_sleep_ms(1);
	}
}

/* Work per second over `ms` milliseconds. */
static double work_rate(struct rdmig_guest *g, unsigned ms)
{
	uint64_t w0 = rdmig_guest_work(g), t0 = rdmig_now_ns(), w1, t1;

	rdmig_sleep_ms(ms);
	w1 = rdmig_guest_work(g);
	t1 = rdmig_now_ns();
	return (double)(w1 - w0) * 1e9 / (double)(t1 - t0);
}

static uint8_t *page_of(struct rdmig_guest *g, unsigned region, uint64_t page)
{
	const struct rdmig_guest_region *r = rdmig_guest_region(g, region);

	assert_non_null(r);
	assert_true(page * PAGE < r->len);
	return r->addr + page * PAGE;
}

static void expect_check_ok(struct rdmig_guest *g)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	th_unit_ok(rdmig_guest_check_incr(g, &err), &err);
}

/* ---- configuration ------------------------------------------------------ */

static void test_cfg_validation(void **state)
{
	static const struct {
		struct rdmig_guest_cfg cfg;
		const char *what;
	} bad[] = {
	    {{.ram_size = 0, .nregions = 1}, "greater than 0"},
	    {{.ram_size = 4097, .nregions = 1}, "multiple of the 4096-byte page"},
	    {{.ram_size = 4096 * 3 + 8, .nregions = 1}, "not a multiple"},
	    {{.ram_size = (1ULL << 40) + 4096, .nregions = 1}, "1 TiB"},
	    {{.ram_size = MIB, .nregions = RDMIG_GUEST_MAX_REGIONS + 1}, "between 1 and 8"},
	    {{.ram_size = 2 * 4096, .nregions = 3}, "2 pages cannot be split into 3 regions"},
	    {{.ram_size = MIB, .vcpus = RDMIG_GUEST_MAX_VCPUS + 1}, "between 0 and 64"},
	    {{.ram_size = 4 * 4096, .vcpus = 5}, "vcpus 5 exceed the 4 pages"},
	    {{.ram_size = MIB, .workload = (enum rdmig_workload)42}, "workload 42 unknown"},
	};
	struct rdmig_guest *g;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rdmig_err err = RDMIG_ERR_INIT;

		g = (struct rdmig_guest *)(uintptr_t)1; /* must be reset to NULL */
		th_unit_fail(rdmig_guest_create(&bad[i].cfg, &g, &err), &err, -EINVAL, bad[i].what);
		assert_null(g);
	}
}

static void test_regions(void **state)
{
	struct rdmig_guest *g;
	const struct rdmig_guest_region *r;

	(void)state;
	/* nregions 0 means 1 */
	g = make_guest(8 * PAGE, 0, 1, RDMIG_WL_INCR, 0);
	assert_int_equal(rdmig_guest_nregions(g), 1);
	assert_int_equal(rdmig_guest_cfg(g)->nregions, 1);
	r = rdmig_guest_region(g, 0);
	assert_string_equal(r->name, "ram0");
	assert_int_equal(r->len, 8 * PAGE);
	assert_null(rdmig_guest_region(g, 1));
	rdmig_guest_destroy(g);

	/* 10 pages in 3 regions: 4 + 3 + 3, page aligned, in order, zeroed */
	g = make_guest(10 * PAGE, 3, 2, RDMIG_WL_INCR, 0);
	assert_int_equal(rdmig_guest_nregions(g), 3);
	for (unsigned i = 0; i < 3; i++) {
		char name[8];

		r = rdmig_guest_region(g, i);
		snprintf(name, sizeof(name), "ram%u", i);
		assert_string_equal(r->name, name);
		assert_int_equal(r->len, (i == 0 ? 4 : 3) * PAGE);
		assert_int_equal((uintptr_t)r->addr % PAGE, 0);
		for (uint64_t b = 0; b < r->len; b++)
			assert_int_equal(r->addr[b], 0);
	}
	assert_int_equal(rdmig_guest_cfg(g)->vcpus, 2);
	assert_int_equal(rdmig_guest_cfg(g)->workload, RDMIG_WL_INCR);
	expect_check_ok(g);
	rdmig_guest_destroy(g);
	rdmig_guest_destroy(NULL);
}

static void test_workload_parse(void **state)
{
	static const char *const names[] = {"idle", "incr", "random", "hotset"};
	static const enum rdmig_workload wls[] = {RDMIG_WL_IDLE, RDMIG_WL_INCR, RDMIG_WL_RANDOM,
						  RDMIG_WL_HOTSET};
	static const char *const bad[] = {"", "INCR", "incr ", "rand", "hot"};

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		enum rdmig_workload w = RDMIG_WL_IDLE;

		th_unit_ok(rdmig_workload_parse(names[i], &w, &err), &err);
		assert_int_equal(w, wls[i]);
		assert_string_equal(rdmig_workload_name(wls[i]), names[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		enum rdmig_workload w = RDMIG_WL_HOTSET;

		th_unit_fail(rdmig_workload_parse(bad[i], &w, &err), &err, -EINVAL,
			     "expected incr, random, hotset or idle");
		assert_int_equal(w, RDMIG_WL_HOTSET);
	}
}

/* ---- the incr check on images -------------------------------------------- */

/* An image of `n` pages whose byte 0 values are `b0`. */
static uint8_t *image(const uint8_t *b0, size_t n)
{
	uint8_t *img = calloc(n, PAGE);

	assert_non_null(img);
	for (size_t i = 0; i < n; i++)
		img[i * PAGE] = b0[i];
	return img;
}

static int check_image(const uint8_t *b0, size_t n, unsigned vcpus, struct rdmig_err *err)
{
	uint8_t *img = image(b0, n);
	int ret = rdmig_check_incr_image(img, n * PAGE, vcpus, err);

	free(img);
	return ret;
}

static void test_check_image(void **state)
{
	static const struct {
		uint8_t b0[8];
		unsigned vcpus;
	} good[] = {
	    {{0, 0, 0, 0, 0, 0, 0, 0}, 1},	     {{9, 9, 9, 9, 9, 9, 9, 9}, 0},
	    {{6, 5, 5, 5, 5, 5, 5, 5}, 1},	     {{6, 6, 6, 6, 6, 6, 6, 5}, 1},
	    {{0, 0, 0, 255, 255, 255, 255, 255}, 1}, /* mod 256 */
	    {{3, 2, 2, 2, 7, 7, 6, 6}, 2},	     /* one edge per slice */
	    {{3, 3, 3, 3, 2, 2, 2, 2}, 2},	     /* slices need not agree */
	    {{3, 2, 2, 2, 3, 2, 2, 2}, 2},	     {{1, 1, 0, 0, 5, 4, 7, 7}, 4},
	    {{1, 4, 200, 0, 5, 4, 7, 3}, 8}, /* one page per slice: anything goes */
	};
	static const struct {
		uint8_t b0[8];
		unsigned vcpus;
		const char *what;
	} bad[] = {
	    {{5, 5, 4, 4, 3, 3, 3, 3}, 1, "page"},     /* two edges */
	    {{4, 4, 4, 5, 5, 5, 5, 5}, 1, "bad page"}, /* rising edge */
	    {{6, 6, 4, 4, 4, 4, 4, 4}, 1, "bad page"}, /* drop by 2 */
	    {{5, 5, 5, 7, 5, 5, 5, 5}, 1, "page 3 (vcpu 0): byte 0 is 7, expected 5"},
	    {{3, 2, 2, 2, 7, 6, 6, 7}, 2, "page 7 (vcpu 1): byte 0 is 7, expected 6"},
	    {{3, 2, 2, 2, 3, 2, 2, 2}, 1, "bad page"}, /* fine for 2 vCPUs, not 1 */
	    {{2, 1, 2, 1, 2, 1, 2, 1}, 0, "bad pages"},
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t b0[64];
	uint8_t *img;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		rdmig_err_clear(&err);
		if (check_image(good[i].b0, 8, good[i].vcpus, &err))
			fail_msg("image %zu should pass: %s", i, err.msg);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rdmig_err_clear(&err);
		th_unit_fail(check_image(bad[i].b0, 8, bad[i].vcpus, &err), &err, -EILSEQ,
			     bad[i].what);
	}

	/* The two-edges case names its page and counts it. */
	rdmig_err_clear(&err);
	th_unit_fail(check_image((const uint8_t[]){5, 5, 5, 5, 4, 4, 4, 3}, 8, 1, &err), &err,
		     -EILSEQ, "1 bad page of 8");

	/* A nonzero byte anywhere but byte 0 (first, middle, last of a page). */
	memset(b0, 1, 8);
	img = image(b0, 8);
	for (unsigned off = 1; off < PAGE; off += off < 8 ? 1 : 509) {
		char what[64];

		img[7 * PAGE + off] = 0x5a;
		snprintf(what, sizeof(what), "page 7 (vcpu 0): byte %u is 90, expected 0", off);
		rdmig_err_clear(&err);
		th_unit_fail(rdmig_check_incr_image(img, 8 * PAGE, 1, &err), &err, -EILSEQ, what);
		img[7 * PAGE + off] = 0;
	}
	img[7 * PAGE + PAGE - 1] = 1;
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_check_incr_image(img, 8 * PAGE, 1, &err), &err, -EILSEQ, "byte 4095");
	img[7 * PAGE + PAGE - 1] = 0;
	th_unit_ok(rdmig_check_incr_image(img, 8 * PAGE, 1, &err), &err);
	free(img);

	/* Many bad pages: the total, the first few named, then "..." */
	for (unsigned i = 0; i < 64; i++)
		b0[i] = (uint8_t)(i % 3 == 1 ? 9 : 1);
	rdmig_err_clear(&err);
	th_unit_fail(check_image(b0, 64, 1, &err), &err, -EILSEQ, "21 bad pages of 64: page 1 ");
	assert_non_null(strstr(err.msg, "; ..."));

	/* Length not a whole number of pages. */
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_check_incr_image(b0, 100, 1, &err), &err, -EINVAL, "100 bytes");
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_check_incr_image(b0, 0, 1, &err), &err, -EINVAL, "whole number");
}

/* ---- incr on a running guest ---------------------------------------------- */

/*
 * 4096 pages in 2 regions; global page 3000 is page 952 of ram1. Run, pause,
 * check; then damage one page and see the check name it.
 */
static void incr_run(unsigned vcpus)
{
	struct rdmig_guest *g = make_guest(4096 * PAGE, 2, vcpus, RDMIG_WL_INCR, 0);
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t *p, saved;
	uint64_t w;

	assert_false(rdmig_guest_running(g));
	start(g, NULL);
	assert_true(rdmig_guest_running(g));
	rdmig_sleep_ms(50); /* long enough for many passes over RAM (wrapping byte 0) */
	wait_work(g, 3 * 4096 + 1000);
	rdmig_guest_pause(g);
	assert_false(rdmig_guest_running(g));
	w = rdmig_guest_work(g);
	expect_check_ok(g);
	assert_int_equal(rdmig_guest_work(g), w);

	/* byte 0 two more than it should be */
	p = page_of(g, 1, 952);
	saved = p[0];
	p[0] = (uint8_t)(p[0] + 2);
	th_unit_fail(rdmig_guest_check_incr(g, &err), &err, -EILSEQ,
		     "1 bad page of 4096: ram1 page 952");
	assert_non_null(strstr(err.msg, "byte 0"));
	p[0] = saved;
	expect_check_ok(g);

	/* any other byte nonzero */
	p = page_of(g, 0, 10);
	p[100] = 1;
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_guest_check_incr(g, &err), &err, -EILSEQ, "ram0 page 10");
	assert_non_null(strstr(err.msg, "byte 100 is 1, expected 0"));
	p[100] = 0;
	expect_check_ok(g);

	/* and on again, a few times */
	for (int i = 0; i < 3; i++) {
		rdmig_guest_resume(g);
		assert_true(rdmig_guest_running(g));
		wait_work(g, rdmig_guest_work(g) + 5000);
		rdmig_guest_pause(g);
		expect_check_ok(g);
	}
	rdmig_guest_pause(g); /* twice is fine */
	rdmig_guest_stop(g);
	expect_check_ok(g);
	rdmig_guest_destroy(g);
}

static void test_incr_1vcpu(void **state)
{
	(void)state;
	incr_run(1);
}

static void test_incr_4vcpus(void **state)
{
	(void)state;
	incr_run(4);
}

/* After pause() returns nothing writes guest RAM, whatever the workload. */
static void test_pause_stops_writes(void **state)
{
	static const enum rdmig_workload wls[] = {RDMIG_WL_INCR, RDMIG_WL_RANDOM, RDMIG_WL_HOTSET};
	const uint64_t ram = 16 * MIB;
	uint8_t *snap = malloc(ram);

	(void)state;
	assert_non_null(snap);
	for (size_t i = 0; i < 3; i++) {
		struct rdmig_guest *g = make_guest(ram, 1, 4, wls[i], 0);
		const struct rdmig_guest_region *r = rdmig_guest_region(g, 0);
		uint64_t w;

		start(g, NULL);
		for (int round = 0; round < 3; round++) {
			wait_work(g, rdmig_guest_work(g) + 20000);
			rdmig_guest_pause(g);
			w = rdmig_guest_work(g);
			memcpy(snap, r->addr, ram);
			rdmig_sleep_ms(50);
			if (memcmp(snap, r->addr, ram))
				fail_msg("%s: guest RAM changed after pause returned",
					 rdmig_workload_name(wls[i]));
			assert_int_equal(rdmig_guest_work(g), w);
			rdmig_guest_resume(g);
		}
		rdmig_guest_destroy(g); /* stops running vCPUs */
	}
	free(snap);
}

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * Throttle 900 permille leaves a vCPU 1 ms of every 10: expect about a tenth
 * of the work per second. On a shared machine the unthrottled vCPU (which
 * never sleeps) can get as little CPU as the throttled one (which the
 * scheduler favours for sleeping), so comparing wall-clock rates alone is
 * flaky. The unthrottled side is therefore measured as work per CPU-second
 * of this process (the vCPU is its only busy thread): its rate with a whole
 * CPU. The throttled vCPU's wall-clock rate must be well below that, and it
 * must have used well under a CPU.
 */
static void test_throttle(void **state)
{
	struct rdmig_guest *g = make_guest(4096 * PAGE, 1, 1, RDMIG_WL_INCR, 0);
	uint64_t w0, t0, deadline;
	double c0, capacity, slow, slow_cpu;

	(void)state;
	assert_int_equal(rdmig_guest_throttle(g), 0);
	rdmig_guest_set_throttle(g, 5000);
	assert_int_equal(rdmig_guest_throttle(g), 990);
	rdmig_guest_set_throttle(g, 0);
	start(g, NULL);
	wait_work(g, 1);

	/* unthrottled: at least 300 ms and 30 ms of CPU (3 s at most) */
	w0 = rdmig_guest_work(g);
	t0 = rdmig_now_ns();
	c0 = cpu_s();
	deadline = t0 + 3000000000ULL;
	do
		rdmig_sleep_ms(100);
	while ((rdmig_now_ns() - t0 < 300000000ULL || cpu_s() - c0 < 0.03) &&
	       rdmig_now_ns() < deadline);
	capacity = (double)(rdmig_guest_work(g) - w0) / (cpu_s() - c0);

	rdmig_guest_set_throttle(g, 900);
	rdmig_sleep_ms(20); /* takes effect within a 10 ms slice */
	c0 = cpu_s();
	t0 = rdmig_now_ns();
	slow = work_rate(g, 300);
	slow_cpu = (cpu_s() - c0) * 1e9 / (double)(rdmig_now_ns() - t0);
	print_message("throttle: %.0f/s per CPU-second at 0, %.0f/s at 900 permille (%.2f), "
		      "using %.2f CPU\n",
		      capacity, slow, slow / capacity, slow_cpu);
	assert_true(slow < 0.6 * capacity);
	assert_true(slow_cpu < 0.6);

	rdmig_guest_set_throttle(g, 0);
	rdmig_guest_pause(g);
	expect_check_ok(g); /* throttling does not break the incr pattern */
	rdmig_guest_destroy(g);
}

/*
 * The destination's side of a migration: copy RAM and vCPU states to a fresh
 * guest, start it from the states, and the incr edge must carry on.
 */
static void test_save_and_resume(void **state)
{
	const uint64_t ram = 4096 * PAGE;
	struct rdmig_guest *src = make_guest(ram, 3, 4, RDMIG_WL_INCR, 0);
	struct rdmig_guest *dst = make_guest(ram, 3, 4, RDMIG_WL_INCR, 0);
	struct rdmig_vcpu_state st[4], st2[4], bad[4];
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t w;

	(void)state;
	start(src, NULL);
	th_unit_fail(rdmig_guest_start(src, NULL, &err), &err, -EBUSY, "already started");
	rdmig_sleep_ms(30);
	wait_work(src, 2 * 4096 + 777);
	rdmig_guest_pause(src);
	rdmig_guest_save_vcpus(src, st);
	w = 0;
	for (int k = 0; k < 4; k++) {
		assert_true(st[k].pos < 1024);
		w += st[k].work;
	}
	assert_int_equal(w, rdmig_guest_work(src));
	expect_check_ok(src);
	for (unsigned r = 0; r < 3; r++)
		memcpy(rdmig_guest_region(dst, r)->addr, rdmig_guest_region(src, r)->addr,
		       rdmig_guest_region(src, r)->len);
	rdmig_guest_stop(src);

	/* a state that does not fit the slice is refused */
	memcpy(bad, st, sizeof(bad));
	bad[2].pos = 1024;
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_guest_start(dst, bad, &err), &err, -EINVAL, "vcpu 2");

	start(dst, st);
	assert_true(rdmig_guest_work(dst) >= w);
	wait_work(dst, w + 3 * 4096);
	rdmig_guest_pause(dst);
	expect_check_ok(dst);

	/* stop, then start without states: carries on from where it stopped */
	rdmig_guest_stop(dst);
	rdmig_guest_save_vcpus(dst, st2);
	w = 0;
	for (int k = 0; k < 4; k++) {
		assert_true(st2[k].pos < 1024);
		assert_true(st2[k].work >= st[k].work); /* a vCPU may not have been scheduled */
		w += st2[k].work;
	}
	assert_int_equal(w, rdmig_guest_work(dst));
	assert_true(w >= rdmig_guest_work(src) + 3 * 4096);
	start(dst, NULL);
	wait_work(dst, rdmig_guest_work(dst) + 4096 + 333);
	rdmig_guest_pause(dst);
	expect_check_ok(dst);
	rdmig_guest_destroy(dst);
	rdmig_guest_destroy(src);
}

/*
 * dirty_rate pacing: writes * 4096 per second near the target. RAM is
 * populated first, so that page faults (slow on a loaded machine) do not
 * stand between the vCPUs and the rate. Too fast is a bug; too slow can be
 * a starved machine, so that side gets three tries.
 */
static void test_dirty_rate(void **state)
{
	static const enum rdmig_workload wls[] = {RDMIG_WL_RANDOM, RDMIG_WL_HOTSET, RDMIG_WL_INCR};
	const uint64_t target = 40 * MIB; /* 10240 writes/s in total */

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		struct rdmig_guest *g = make_guest(16 * MIB, 2, 2, wls[i], target);
		double rate;

		for (unsigned r = 0; r < 2; r++)
			memset(rdmig_guest_region(g, r)->addr, 0, rdmig_guest_region(g, r)->len);
		start(g, NULL);
		rdmig_sleep_ms(30);
		for (int attempt = 0; attempt < 3; attempt++) {
			rate = work_rate(g, 400) * PAGE;
			print_message("%s: paced at %.1f MiB/s for a target of %.1f MiB/s\n",
				      rdmig_workload_name(wls[i]), rate / MIB,
				      (double)target / MIB);
			assert_true(rate < 3.0 * (double)target);
			if (rate > 0.3 * (double)target)
				break;
		}
		assert_true(rate > 0.3 * (double)target);
		rdmig_guest_pause(g);
		if (wls[i] == RDMIG_WL_INCR)
			expect_check_ok(g);
		rdmig_guest_destroy(g);
	}
}

/*
 * hotset: 90% of the writes go to a tenth of the pages, scattered. With W
 * writes (a few thousand, paced), far fewer distinct pages are touched than
 * uniform writes would touch (about 0.3 of it; 0.6 is asserted), and the
 * first tenth of RAM is not where the hot set is.
 */
static void test_hotset_skew(void **state)
{
	const uint64_t npages = 8192;
	struct rdmig_guest *g = make_guest(npages * PAGE, 1, 1, RDMIG_WL_HOTSET, 40000ULL * PAGE);
	const uint8_t *ram = rdmig_guest_region(g, 0)->addr;
	uint64_t touched = 0, touched_low = 0, w;
	double uniform;

	(void)state;
	start(g, NULL);
	wait_work(g, 4000);
	rdmig_guest_pause(g);
	w = rdmig_guest_work(g);
	for (uint64_t p = 0; p < npages; p++) {
		static const uint8_t zero[PAGE];
		bool any = memcmp(ram + p * PAGE, zero, PAGE) != 0;

		touched += any;
		touched_low += any && p < npages / 10;
	}
	uniform = (double)npages * (1 - exp(-(double)w / (double)npages));
	print_message("hotset: %" PRIu64 " writes touched %" PRIu64
		      " pages (uniform: %.0f), %" PRIu64 " of them in the first tenth\n",
		      w, touched, uniform, touched_low);
	assert_true(touched > 0);
	if (w <= 40000) {
		assert_true((double)touched < 0.6 * uniform);
		assert_true(touched_low < npages / 10 / 2);
	} else {
		print_message("hotset: %" PRIu64 " writes is over 40000, skew not judged\n", w);
	}
	rdmig_guest_destroy(g);
}

static void test_idle(void **state)
{
	struct rdmig_guest *g = make_guest(MIB, 1, 2, RDMIG_WL_IDLE, 0);
	uint64_t t0;

	(void)state;
	start(g, NULL);
	rdmig_sleep_ms(50);
	assert_int_equal(rdmig_guest_work(g), 0);
	t0 = rdmig_now_ns();
	rdmig_guest_pause(g);
	assert_true(rdmig_now_ns() - t0 < 1000000000ULL); /* idle vCPUs answer promptly */
	rdmig_guest_resume(g);
	rdmig_guest_set_throttle(g, 500);
	rdmig_sleep_ms(30);
	rdmig_guest_pause(g);
	assert_int_equal(rdmig_guest_work(g), 0);
	expect_check_ok(g); /* all zero */
	rdmig_guest_destroy(g);
}

static void test_no_vcpus(void **state)
{
	struct rdmig_guest *g = make_guest(MIB, 2, 0, RDMIG_WL_INCR, 0);

	(void)state;
	rdmig_guest_pause(g); /* not started: no-op */
	rdmig_guest_resume(g);
	rdmig_guest_stop(g);
	start(g, NULL);
	rdmig_guest_pause(g);
	rdmig_guest_resume(g);
	rdmig_guest_save_vcpus(g, NULL);
	assert_int_equal(rdmig_guest_work(g), 0);
	rdmig_guest_stop(g);
	rdmig_guest_stop(g);
	expect_check_ok(g);
	rdmig_guest_destroy(g);
}

static void test_vcpu_cpus(void **state)
{
	struct rdmig_guest_cfg cfg = {.ram_size = MIB, .vcpus = 3, .workload = RDMIG_WL_IDLE};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_cpuset cpus;
	struct rdmig_guest *g;
	cpu_set_t allowed;
	int first = -1, last = -1;
	char want[3][16], got[256];

	(void)state;
	assert_int_equal(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
	for (int c = 0; c < CPU_SETSIZE && c < RDMIG_NUMA_MAX_CPUS; c++)
		if (CPU_ISSET(c, &allowed)) {
			if (first < 0)
				first = c;
			last = c;
		}
	/* Not pinned without a list, nor with an empty one. */
	rdmig_cpuset_zero(&cpus);
	cfg.vcpu_cpus = &cpus;
	assert_int_equal(rdmig_guest_create(&cfg, &g, &err), 0);
	assert_int_equal(rdmig_guest_vcpu_cpu(g, 0), -1);
	assert_null(rdmig_guest_cfg(g)->vcpu_cpus);
	rdmig_guest_destroy(g);

	rdmig_cpuset_set(&cpus, first);
	rdmig_cpuset_set(&cpus, last);
	assert_int_equal(rdmig_guest_create(&cfg, &g, &err), 0);
	rdmig_cpuset_zero(&cpus); /* the guest keeps its own copy */
	assert_int_equal(rdmig_guest_vcpu_cpu(g, 0), first);
	assert_int_equal(rdmig_guest_vcpu_cpu(g, 1), first == last ? first : last);
	assert_int_equal(rdmig_guest_vcpu_cpu(g, 2), first);
	snprintf(want[0], sizeof(want[0]), "%d", first);
	snprintf(want[1], sizeof(want[1]), "%d", first == last ? first : last);
	snprintf(want[2], sizeof(want[2]), "%d", first);
	start(g, NULL);
	for (unsigned k = 0; k < 3; k++) {
		char comm[16];

		snprintf(comm, sizeof(comm), "rdmig-vcpu%u", k);
		/* The thread names and pins itself first thing: give it a moment. */
		for (int i = 0; i < 200; i++) {
			struct th_task t;

			snprintf(got, sizeof(got), "%s", th_task_find(comm, &t) ? "" : t.cpus);
			if (!strcmp(got, want[k]))
				break;
			rdmig_sleep_ms(5);
		}
		assert_string_equal(got, want[k]);
	}
	rdmig_guest_destroy(g);
}

static void test_hugepages(void **state)
{
	struct rdmig_guest_cfg cfg = {.ram_size = 8 * MIB + 3 * PAGE,
				      .nregions = 2,
				      .vcpus = 2,
				      .workload = RDMIG_WL_INCR,
				      .hugepages = true};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *g;

	(void)state;
	assert_int_equal(rdmig_guest_create(&cfg, &g, &err), 0);
	assert_true(rdmig_guest_cfg(g)->hugepages);
	/* 2 MiB aligned so that whole huge pages fit. */
	assert_int_equal((uintptr_t)rdmig_guest_region(g, 0)->addr % (2 * MIB), 0);
	start(g, NULL);
	rdmig_sleep_ms(50);
	rdmig_guest_stop(g);
	assert_true(rdmig_guest_work(g) > 0);
	expect_check_ok(g);
	rdmig_guest_destroy(g);
}

static void test_dump(void **state)
{
	const uint64_t ram = 256 * PAGE;
	struct rdmig_guest *g = make_guest(ram, 2, 2, RDMIG_WL_INCR, 0);
	struct rdmig_err err = RDMIG_ERR_INIT;
	char path[] = "/tmp/test_guest_dump_XXXXXX";
	uint8_t *buf = malloc(ram + 1);
	struct stat sb;
	ssize_t n;
	int fd;

	(void)state;
	assert_non_null(buf);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "stale contents longer than nothing", 34), 34);
	close(fd);

	start(g, NULL);
	wait_work(g, 10 * 256 + 17);
	rdmig_guest_pause(g);
	th_unit_ok(rdmig_guest_dump(g, path, &err), &err);

	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, ram);
	assert_int_equal(sb.st_mode & 0777, 0600); /* mkstemp's mode: O_TRUNC kept the file */
	n = read(fd, buf, ram + 1);
	assert_int_equal(n, ram);
	close(fd);
	for (unsigned r = 0; r < 2; r++) {
		const struct rdmig_guest_region *rg = rdmig_guest_region(g, r);

		assert_memory_equal(buf + (rg->addr - rdmig_guest_region(g, 0)->addr), rg->addr,
				    rg->len);
	}
	th_unit_ok(rdmig_check_incr_image(buf, ram, 2, &err), &err);
	buf[77 * PAGE] = (uint8_t)(buf[77 * PAGE] + 2);
	th_unit_fail(rdmig_check_incr_image(buf, ram, 2, &err), &err, -EILSEQ, "page 77 (vcpu 0)");
	unlink(path);

	rdmig_err_clear(&err);
	th_unit_fail(rdmig_guest_dump(g, "/nonexistent-dir/ram.img", &err), &err, -ENOENT,
		     "/nonexistent-dir/ram.img");
	free(buf);
	rdmig_guest_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cfg_validation),     cmocka_unit_test(test_regions),
	    cmocka_unit_test(test_workload_parse),     cmocka_unit_test(test_check_image),
	    cmocka_unit_test(test_incr_1vcpu),	       cmocka_unit_test(test_incr_4vcpus),
	    cmocka_unit_test(test_pause_stops_writes), cmocka_unit_test(test_throttle),
	    cmocka_unit_test(test_save_and_resume),    cmocka_unit_test(test_dirty_rate),
	    cmocka_unit_test(test_hotset_skew),	       cmocka_unit_test(test_idle),
	    cmocka_unit_test(test_no_vcpus),	       cmocka_unit_test(test_dump),
	    cmocka_unit_test(test_vcpu_cpus),	       cmocka_unit_test(test_hugepages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
