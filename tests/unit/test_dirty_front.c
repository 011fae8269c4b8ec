/* SPDX-License-Identifier: MIT */
/*
 * The vmm-bitmap source on a simulated VMM log, the none source, and the
 * front end: parsing, creation checks, the bit setter, the best pick, the
 * measurement (test_dirty.c has the overview).
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

/* ---- vmm-bitmap with a simulated VMM log, and none ---------------------- */

struct fake_vmm {
	atomic_ulong log[2][4]; /* two regions of up to 256 pages */
	int fail_region;	/* -1: never */
};

static int fake_vmm_harvest(void *ctx, unsigned region, uint64_t *bitmap, struct rdmig_err *err)
{
	struct fake_vmm *v = ctx;

	if ((int)region == v->fail_region)
		return rdmig_seterr(err, -EFAULT, "KVM_GET_DIRTY_LOG: Bad address");
	for (int w = 0; w < 4; w++)
		bitmap[w] |= atomic_exchange(&v->log[region][w], 0);
	return 0;
}

static void test_vmm(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct fake_vmm v = {.fail_region = -1};
	struct region *r0, *r1;
	struct rdmig_dirty_region dr[2];
	struct rdmig_dirty *d;

	r0 = region_new(256 * psz, 0, THP_ANY);
	r1 = region_new(200 * psz, 0, THP_ANY);
	dr[0] = (struct rdmig_dirty_region){.addr = r0->mem, .len = r0->len, .bitmap = r0->bitmap};
	dr[1] = (struct rdmig_dirty_region){.addr = r1->mem, .len = r1->len, .bitmap = r1->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_VMM_LOG, dr, 2, psz, &fx.d, &err), 0);
	d = fx.d;
	assert_int_equal(rdmig_dirty_start(d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vmm_harvest"));
	rdmig_err_clear(&err);
	d->vmm_harvest = fake_vmm_harvest;
	d->vmm_ctx = &v;
	assert_int_equal(rdmig_dirty_start(d, &err), 0);

	atomic_fetch_or(&v.log[0][0], 1UL << 3);
	atomic_fetch_or(&v.log[0][3], 1UL << 63);
	atomic_fetch_or(&v.log[1][2], 1UL << 5);
	harvest(d);
	assert_int_equal(r0->bitmap[0], 1ULL << 3);
	assert_int_equal(r0->bitmap[3], 1ULL << 63);
	assert_int_equal(r1->bitmap[2], 1ULL << 5);
	assert_int_equal(count_bits(r0->bitmap, r0->words) + count_bits(r1->bitmap, r1->words), 3);
	clear_bitmap(r0);
	clear_bitmap(r1);
	harvest(d);
	assert_int_equal(count_bits(r0->bitmap, r0->words) + count_bits(r1->bitmap, r1->words), 0);

	v.fail_region = 1;
	assert_int_equal(rdmig_dirty_harvest(d, &err), -EFAULT);
	assert_non_null(strstr(err.msg, "region 1"));
	assert_non_null(strstr(err.msg, "KVM_GET_DIRTY_LOG"));
	assert_int_equal(d->harvests, 3);
}

static void test_none(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct region *r;
	struct rdmig_dirty_region dr;

	r = region_new(128 * psz, 128 * psz, THP_ANY);
	dr = (struct rdmig_dirty_region){.addr = r->mem, .len = r->len, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, &dr, 1, psz, &fx.d, &err), 0);
	assert_int_equal(rdmig_dirty_harvest(fx.d, &err), -EINVAL); /* before start */
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_start(fx.d, &err), 0);
	assert_int_equal(rdmig_dirty_start(fx.d, &err), -EALREADY);
	for (uint64_t i = 0; i < r->npages; i += 3)
		poke(r, i, i);
	harvest(fx.d);
	assert_int_equal(count_bits(r->bitmap, r->words), 0);
}

/* ---- front end ---------------------------------------------------------- */

static void test_parse(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	enum rdmig_dirty_kind k;
	bool is_auto;

	assert_int_equal(rdmig_dirty_parse("uffd-wp", &k, &is_auto, &err), 0);
	assert_int_equal(k, RDMIG_DIRTY_UFFD_WP);
	assert_false(is_auto);
	assert_int_equal(rdmig_dirty_parse("soft-dirty", &k, &is_auto, &err), 0);
	assert_int_equal(k, RDMIG_DIRTY_SOFT_DIRTY);
	assert_int_equal(rdmig_dirty_parse("vmm-bitmap", &k, &is_auto, &err), 0);
	assert_int_equal(k, RDMIG_DIRTY_VMM_LOG);
	assert_int_equal(rdmig_dirty_parse("none", &k, &is_auto, &err), 0);
	assert_int_equal(k, RDMIG_DIRTY_NONE);
	assert_int_equal(rdmig_dirty_parse("auto", &k, &is_auto, &err), 0);
	assert_true(is_auto);
	assert_int_equal(rdmig_dirty_parse("softdirty", &k, &is_auto, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "'softdirty'"));
	assert_non_null(strstr(err.msg, "uffd-wp"));
}

static void test_create_checks(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct region *r;
	struct rdmig_dirty *d = (void *)1;
	struct rdmig_dirty_region dr[2];

	r = region_new(64 * psz, 0, THP_ANY);
	dr[0] = (struct rdmig_dirty_region){.addr = r->mem + 1, .len = psz, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 1, psz, &d, &err), -EINVAL);
	assert_null(d);
	assert_non_null(strstr(err.msg, "region 0"));

	rdmig_err_clear(&err);
	dr[0] = (struct rdmig_dirty_region){.addr = r->mem, .len = 3 * psz, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 1, 2 * psz, &d, &err), -EINVAL);

	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 1, 3 * psz, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "power of two"));

	rdmig_err_clear(&err);
	dr[0] = (struct rdmig_dirty_region){.addr = r->mem, .len = 8 * psz, .bitmap = NULL};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 1, psz, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bitmap"));

	rdmig_err_clear(&err);
	dr[0] = (struct rdmig_dirty_region){.addr = r->mem, .len = 8 * psz, .bitmap = r->bitmap};
	dr[1] = (struct rdmig_dirty_region){
	    .addr = r->mem + 7 * psz, .len = 8 * psz, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 2, psz, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "overlap"));

	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_create((enum rdmig_dirty_kind)42, dr, 1, psz, &d, &err),
			 -EINVAL);

	rdmig_err_clear(&err);
	dr[1].addr = r->mem + 8 * psz;
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 2, psz, &fx.d, &err), 0);
	rdmig_dirty_destroy(NULL);
}

static void test_set_bits(void **state)
{
	uint64_t bm[4], ref[4];

	for (uint64_t first = 0; first < 256; first += 7) {
		for (uint64_t n = 0; first + n <= 256; n += 5) {
			memset(bm, 0, sizeof(bm));
			memset(ref, 0, sizeof(ref));
			rdmig_dirty_set_bits(bm, first, n);
			for (uint64_t i = first; i < first + n; i++)
				set_bit(ref, i);
			if (memcmp(bm, ref, sizeof(bm)))
				fail_msg("set_bits(%" PRIu64 ", %" PRIu64 ") wrong", first, n);
		}
	}
}

static void test_best(void **state)
{
	enum rdmig_dirty_kind want = rdmig_dirty_pick(uffd_rc, sd_rc, true);

	assert_int_equal(rdmig_dirty_best(true), want);
	print_message("[   INFO   ] best source here: %s\n", rdmig_dirty_kind_name(want));
}

static void test_measure_smoke(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	double ms;

	assert_int_equal(rdmig_dirty_measure(RDMIG_DIRTY_VMM_LOG, 1 << 20, 1, &ms, &err), -EINVAL);
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_measure(RDMIG_DIRTY_UFFD_WP, 1 << 20, 257, &ms, &err),
			 -EINVAL);
	for (int k = RDMIG_DIRTY_SOFT_DIRTY; k <= RDMIG_DIRTY_UFFD_WP; k++) {
		if ((k == RDMIG_DIRTY_UFFD_WP ? uffd_rc : sd_rc) != 0)
			continue;
		rdmig_err_clear(&err);
		if (rdmig_dirty_measure(k, 16ULL << 20, 40, &ms, &err))
			fail_msg("%s", rdmig_err_str(&err));
		assert_true(ms > 0);
	}
}

int dirty_front_tests(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_vmm),      T(test_none), T(test_parse),	   T(test_create_checks),
	    T(test_set_bits), T(test_best), T(test_measure_smoke),
	};

	return cmocka_run_group_tests_name("dirty front", tests, NULL, NULL);
}
