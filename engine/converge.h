/* SPDX-License-Identifier: MIT */
/*
 * Convergence model and throttle controllers: pure code (no clocks, no
 * threads), fed one observation per round, so that it can be unit-tested on
 * made-up numbers.
 *
 * After each harvest the source reports what the last round sent and how
 * long it took, and how many bytes the guest dirtied meanwhile. The model
 * smooths bandwidth and dirty rate, predicts the downtime of switching over
 * now (dirty bytes / bandwidth + fixed switchover cost), says whether to
 * switch over, and sets the throttle.
 *
 * Adaptive policy: throttling starts only when the rounds stop converging
 * (the dirty set no longer shrinks by a useful factor while the predicted
 * downtime is above the limit). It then sets the throttle each round from
 * the measured rates so that the next round's dirty set fits the downtime
 * limit: with an unthrottled dirty rate r, bandwidth b and current dirty
 * set D, the next round lasts about D/b and dirties r(1-t)D/b, which must be
 * <= a*b*L (a = 0.5: aim inside the limit, not at it), so
 * t = 1 - a b^2 L / (r D), corrected every round, clamped to [0, max]. Step policy (QEMU's
 * auto-converge): 20% when convergence stops, +10% per non-converging round.
 */
#ifndef RDMIG_CONVERGE_H
#define RDMIG_CONVERGE_H

#include <stdbool.h>
#include <stdint.h>

#include "rdmig/migrate.h"

struct rdmig_conv_obs {
	uint64_t sent_bytes;  /* bytes the last round wrote */
	double round_s;	      /* how long the last round took */
	uint64_t dirty_bytes; /* dirty set found by this harvest */
	double dirty_s;	      /* time over which the guest dirtied it */
	unsigned throttle;    /* permille in force while it was dirtied */
};

struct rdmig_conv {
	/* configuration */
	double limit_s; /* downtime limit */
	double fixed_s; /* switchover cost beyond copying (verify, round trips) */
	enum rdmig_throttle_policy policy;
	unsigned max_throttle; /* permille */
	/* state */
	double bw;		 /* bytes/s, smoothed */
	double rate;		 /* unthrottled dirty bytes/s, smoothed */
	uint64_t best_dirty;	 /* smallest dirty set seen, 0 before the first */
	unsigned stalled_rounds; /* consecutive rounds without useful shrink */
	unsigned rounds;
	bool throttling;
	/* outputs */
	unsigned throttle; /* permille to apply now */
	double predicted_s;
	bool switch_now;
};

void rdmig_conv_init(struct rdmig_conv *cv, double limit_s, double fixed_s,
		     enum rdmig_throttle_policy policy, unsigned max_throttle);
void rdmig_conv_observe(struct rdmig_conv *cv, const struct rdmig_conv_obs *o);

#endif
