/* SPDX-License-Identifier: MIT */
#include "converge.h"

#include <string.h>

/* Smoothing weight of the newest sample. */
#define EWMA_NEW 0.5
/* A round "converges" when the dirty set shrinks below this share of the best so far. */
#define SHRINK_OK 0.8
/* Rounds in a row without shrinking before throttling starts. */
#define STALL_ROUNDS 2
/*
 * Adaptive throttle aims the next dirty set at this share of the copy
 * budget: aiming at the whole budget lands the switchover at the limit,
 * with nothing to spare for a measurement that was a little optimistic.
 */
#define ADAPTIVE_AIM 0.5
/* Rounds shorter than this say more about latency than bandwidth. */
#define MIN_BW_SAMPLE_BYTES (256 * 1024)

void rdmig_conv_init(struct rdmig_conv *cv, double limit_s, double fixed_s,
		     enum rdmig_throttle_policy policy, unsigned max_throttle)
{
	memset(cv, 0, sizeof(*cv));
	cv->limit_s = limit_s;
	cv->fixed_s = fixed_s;
	cv->policy = policy;
	cv->max_throttle = max_throttle > 990 ? 990 : max_throttle;
}

static double ewma(double old, double sample)
{
	return old > 0 ? (1 - EWMA_NEW) * old + EWMA_NEW * sample : sample;
}

/* Seconds of copying the downtime limit leaves after the fixed switchover cost. */
static double copy_budget(const struct rdmig_conv *cv)
{
	double budget = cv->limit_s - cv->fixed_s;

	return budget < cv->limit_s * 0.25 ? cv->limit_s * 0.25 : budget;
}

static unsigned clamp_permille(double t, unsigned max)
{
	if (t <= 0)
		return 0;
	if (t * 1000 >= max)
		return max;
	return (unsigned)(t * 1000 + 0.5);
}

void rdmig_conv_observe(struct rdmig_conv *cv, const struct rdmig_conv_obs *o)
{
	double share, unthrottled, budget;
	bool shrinking;

	cv->rounds++;
	if (o->round_s > 0 && (o->sent_bytes >= MIN_BW_SAMPLE_BYTES || cv->bw == 0))
		cv->bw = ewma(cv->bw, (double)o->sent_bytes / o->round_s);
	/* What the guest would dirty without the throttle in force. */
	share = 1.0 - (double)o->throttle / 1000.0;
	if (o->dirty_s > 0 && share > 0) {
		unthrottled = (double)o->dirty_bytes / o->dirty_s / share;
		cv->rate = ewma(cv->rate, unthrottled);
	}
	cv->predicted_s = cv->fixed_s + (cv->bw > 0 ? (double)o->dirty_bytes / cv->bw : 1e9);
	/*
	 * Switch when the copy fits what the fixed cost leaves of the limit. If
	 * the fixed cost alone eats most of it, waiting cannot help: switch as
	 * soon as the copy is a small share of the limit, and always when
	 * nothing is dirty.
	 */
	cv->switch_now = o->dirty_bytes == 0 ||
			 (cv->bw > 0 && (double)o->dirty_bytes / cv->bw <= copy_budget(cv));

	/*
	 * Progress is a new low, by a useful factor, against the best round so
	 * far, not against the last one: on a noisy host the dirty set of a
	 * guest that dirties as fast as the link swings up and down, and
	 * comparing with the previous round alone would call every downswing
	 * progress, so the throttle would never start while no round ever gets
	 * closer to the limit (the "no progress" timeout then ends the
	 * migration instead).
	 */
	shrinking =
	    cv->best_dirty == 0 || (double)o->dirty_bytes < SHRINK_OK * (double)cv->best_dirty;
	if (cv->switch_now || shrinking)
		cv->stalled_rounds = 0;
	else
		cv->stalled_rounds++;
	if (cv->best_dirty == 0 || o->dirty_bytes < cv->best_dirty)
		cv->best_dirty = o->dirty_bytes;

	if (cv->switch_now || cv->policy == RDMIG_THROTTLE_OFF)
		return; /* throttle released at switchover by the caller */
	if (!cv->throttling && cv->stalled_rounds >= STALL_ROUNDS)
		cv->throttling = true;
	if (!cv->throttling)
		return;

	if (cv->policy == RDMIG_THROTTLE_STEP) {
		if (cv->throttle == 0)
			cv->throttle = 200;
		else if (!shrinking)
			cv->throttle = cv->throttle + 100 > cv->max_throttle ? cv->max_throttle
									     : cv->throttle + 100;
		return;
	}
	/*
	 * Adaptive: the next round lasts about D/b and the guest dirties
	 * r(1-t) per second of it; that must fit the copy budget b*(L - fixed).
	 */
	budget = copy_budget(cv);
	if (cv->rate > 0 && cv->bw > 0 && o->dirty_bytes > 0) {
		double round_s = (double)o->dirty_bytes / cv->bw;
		/* bytes/s the guest may dirty so the next set lands well inside the budget */
		double allowed = cv->bw * budget * ADAPTIVE_AIM / round_s;

		cv->throttle = clamp_permille(1.0 - allowed / cv->rate, cv->max_throttle);
	}
}
