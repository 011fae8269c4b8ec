/* SPDX-License-Identifier: MIT */
/*
 * Monotonic time and deadlines, one definition for every module.
 *
 * A deadline is an absolute rdmig_now_ms() value, or -1 for "never": the
 * convention poll() and every blocking call of the transport follow.
 */
#ifndef RDMIG_CLOCK_H
#define RDMIG_CLOCK_H

#include <limits.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t rdmig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int64_t rdmig_now_ms(void)
{
	return (int64_t)(rdmig_now_ns() / 1000000ull);
}

static inline double rdmig_now_s(void)
{
	return (double)rdmig_now_ns() / 1e9;
}

/* Deadline `timeout_ms` from now; a negative timeout means none (-1). */
static inline int64_t rdmig_deadline_ms(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : rdmig_now_ms() + timeout_ms;
}

/* Milliseconds left until `deadline` for poll(): -1 for none, 0 once passed. */
static inline int rdmig_ms_left(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - rdmig_now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/*
 * The absolute time `ms` from now on clock `clk`, as pthread_cond_timedwait()
 * wants it (CLOCK_REALTIME for a default condition variable).
 */
static inline struct timespec rdmig_abstime_ms(clockid_t clk, unsigned ms)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* Sleep for `ms` milliseconds (interrupted sleeps are not resumed). */
static inline void rdmig_sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

#endif
