/* SPDX-License-Identifier: MIT */
/*
 * Convergence model and throttle controllers on made-up rounds: when to
 * switch over, when throttling starts, how hard each policy throttles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "converge.h"

#define MiB (1024.0 * 1024.0)

static struct rdmig_conv_obs obs(double sent_mib, double round_s, double dirty_mib, double dirty_s,
				 unsigned throttle)
{
	return (struct rdmig_conv_obs){.sent_bytes = (uint64_t)(sent_mib * MiB),
				       .round_s = round_s,
				       .dirty_bytes = (uint64_t)(dirty_mib * MiB),
				       .dirty_s = dirty_s,
				       .throttle = throttle};
}

/* 100 MiB/s link, 300 ms limit: 20 MiB dirty fits (0.2 s), 50 MiB does not. */
static void test_switch_when_it_fits(void **state)
{
	struct rdmig_conv cv;
	struct rdmig_conv_obs o;

	(void)state;
	rdmig_conv_init(&cv, 0.3, 0.0, RDMIG_THROTTLE_ADAPTIVE, 990);
	o = obs(1000, 10, 50, 10, 0);
	rdmig_conv_observe(&cv, &o);
	assert_false(cv.switch_now);
	assert_true(cv.predicted_s > 0.45 && cv.predicted_s < 0.55);
	o = obs(50, 0.5, 20, 0.5, 0);
	rdmig_conv_observe(&cv, &o);
	assert_true(cv.switch_now);
	assert_int_equal(cv.throttle, 0);
}

/* The fixed switchover cost counts against the limit. */
static void test_fixed_cost_counts(void **state)
{
	struct rdmig_conv cv;
	struct rdmig_conv_obs o = obs(1000, 10, 20, 10, 0);

	(void)state;
	rdmig_conv_init(&cv, 0.3, 0.15, RDMIG_THROTTLE_ADAPTIVE, 990);
	rdmig_conv_observe(&cv, &o);
	assert_false(cv.switch_now); /* 0.2 s copy + 0.15 s fixed > 0.3 s */
}

/*
 * A fixed cost above the limit cannot be waited away: switch once the copy
 * is small, and always when nothing is dirty (no endless empty rounds).
 */
static void test_switch_despite_large_fixed_cost(void **state)
{
	struct rdmig_conv cv;
	struct rdmig_conv_obs o = obs(1000, 10, 0, 1, 0);

	(void)state;
	rdmig_conv_init(&cv, 0.3, 2.0, RDMIG_THROTTLE_ADAPTIVE, 990);
	rdmig_conv_observe(&cv, &o);
	assert_true(cv.switch_now);
	o = obs(1000, 10, 5, 1, 0); /* 50 ms of copying: within a quarter of the limit */
	rdmig_conv_observe(&cv, &o);
	assert_true(cv.switch_now);
	o = obs(1000, 10, 50, 1, 0); /* 500 ms: no */
	rdmig_conv_observe(&cv, &o);
	assert_false(cv.switch_now);
}

/* Shrinking rounds never throttle, whatever the policy. */
static void test_no_throttle_while_converging(void **state)
{
	for (int p = RDMIG_THROTTLE_ADAPTIVE; p <= RDMIG_THROTTLE_STEP; p++) {
		struct rdmig_conv cv;
		double d = 800;

		(void)state;
		rdmig_conv_init(&cv, 0.3, 0, (enum rdmig_throttle_policy)p, 990);
		for (int i = 0; i < 6; i++) {
			struct rdmig_conv_obs o = obs(d, d / 100, d / 2, d / 100, 0);

			rdmig_conv_observe(&cv, &o);
			assert_int_equal(cv.throttle, 0);
			d /= 2;
		}
	}
}

/* A dirty set stuck at 400 MiB on a 100 MiB/s link: throttling starts after 2 stalls. */
static void test_adaptive_starts_on_stall_and_fits_limit(void **state)
{
	struct rdmig_conv cv;
	int i;

	(void)state;
	rdmig_conv_init(&cv, 0.3, 0, RDMIG_THROTTLE_ADAPTIVE, 990);
	/* Guest dirties 100 MiB/s of distinct pages, as fast as the link. */
	for (i = 0; i < 2; i++) {
		struct rdmig_conv_obs o = obs(400, 4, 400, 4, 0);

		rdmig_conv_observe(&cv, &o);
		assert_int_equal(cv.throttle, 0);
	}
	{
		struct rdmig_conv_obs o = obs(400, 4, 400, 4, 0);

		rdmig_conv_observe(&cv, &o);
	}
	assert_true(cv.throttling);
	/*
	 * Next round lasts 4 s; to dirty at most half of 30 MiB (0.3 s of link)
	 * in it the guest may dirty 3.75 MiB/s of its 100: throttle about 96%.
	 */
	assert_in_range(cv.throttle, 950, 975);
}

/*
 * A dirty set that swings between 400 and 300 MiB (a noisy host) never
 * gets closer to the limit: every downswing against the previous round is
 * not progress against the best round, so throttling still starts.
 */
static void test_adaptive_starts_on_oscillation(void **state)
{
	static const double dirty[] = {400, 300, 400, 300, 400, 300};
	struct rdmig_conv cv;

	(void)state;
	rdmig_conv_init(&cv, 0.3, 0, RDMIG_THROTTLE_ADAPTIVE, 990);
	for (unsigned i = 0; i < sizeof(dirty) / sizeof(dirty[0]); i++) {
		struct rdmig_conv_obs o = obs(400, 4, dirty[i], 4, cv.throttle);

		rdmig_conv_observe(&cv, &o);
	}
	assert_true(cv.throttling);
	assert_true(cv.throttle > 500);
}

/* The adaptive throttle is corrected from measurements, down as well as up. */
static void test_adaptive_corrects_down(void **state)
{
	struct rdmig_conv cv;

	(void)state;
	rdmig_conv_init(&cv, 0.3, 0, RDMIG_THROTTLE_ADAPTIVE, 990);
	for (int i = 0; i < 3; i++) {
		struct rdmig_conv_obs o = obs(400, 4, 400, 4, 0);

		rdmig_conv_observe(&cv, &o);
	}
	unsigned high = cv.throttle;
	/* Throttled round: 60 MiB dirty in 4 s at that throttle: still too much. */
	struct rdmig_conv_obs o = obs(400, 4, 60, 4, high);

	rdmig_conv_observe(&cv, &o);
	/* Now the set is small: 60 MiB needs only 0.6 s rounds, so much less throttle. */
	assert_true(cv.throttle < high);
}

/* QEMU-style step: 20% at the first stall, +10% per further stalled round, capped. */
static void test_step_policy(void **state)
{
	struct rdmig_conv cv;
	unsigned expect[] = {0, 0, 200, 300, 400, 500};

	(void)state;
	rdmig_conv_init(&cv, 0.3, 0, RDMIG_THROTTLE_STEP, 450);
	for (unsigned i = 0; i < 6; i++) {
		struct rdmig_conv_obs o = obs(400, 4, 400, 4, cv.throttle);

		rdmig_conv_observe(&cv, &o);
		assert_int_equal(cv.throttle, expect[i] > 450 ? 450 : expect[i]);
	}
}

static void test_off_never_throttles(void **state)
{
	struct rdmig_conv cv;

	(void)state;
	rdmig_conv_init(&cv, 0.3, 0, RDMIG_THROTTLE_OFF, 990);
	for (int i = 0; i < 10; i++) {
		struct rdmig_conv_obs o = obs(400, 4, 400, 4, 0);

		rdmig_conv_observe(&cv, &o);
		assert_int_equal(cv.throttle, 0);
	}
}

/* The ceiling holds even when the model asks for more. */
static void test_max_throttle_bound(void **state)
{
	struct rdmig_conv cv;

	(void)state;
	rdmig_conv_init(&cv, 0.001, 0, RDMIG_THROTTLE_ADAPTIVE, 500);
	for (int i = 0; i < 5; i++) {
		struct rdmig_conv_obs o = obs(400, 4, 400, 4, cv.throttle);

		rdmig_conv_observe(&cv, &o);
		assert_true(cv.throttle <= 500);
	}
	assert_int_equal(cv.throttle, 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_switch_when_it_fits),
	    cmocka_unit_test(test_fixed_cost_counts),
	    cmocka_unit_test(test_switch_despite_large_fixed_cost),
	    cmocka_unit_test(test_no_throttle_while_converging),
	    cmocka_unit_test(test_adaptive_starts_on_stall_and_fits_limit),
	    cmocka_unit_test(test_adaptive_starts_on_oscillation),
	    cmocka_unit_test(test_adaptive_corrects_down),
	    cmocka_unit_test(test_step_policy),
	    cmocka_unit_test(test_off_never_throttles),
	    cmocka_unit_test(test_max_throttle_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
