/* SPDX-License-Identifier: MIT */
/*
 * Checks for the test programs that are not cmocka tests (the two-process
 * tests of the tcp, rdma and faults tiers): a failed check prints one line
 * with its message, the values it compared and where it is, counts, and the
 * test goes on; th_summary() turns the count into the exit status.
 *
 *   TH_CHECK(cond, fmt, ...)            any condition
 *   TH_CHECK_INT(a, op, b, fmt, ...)    signed comparison, prints a and b
 *   TH_CHECK_UINT(a, op, b, fmt, ...)   unsigned comparison, prints a and b
 *   TH_CHECK_HAS(str, needle, fmt, ...) str contains needle, prints both
 *   TH_CHECK_CALL(ret, err, fmt, ...)   a call of the 0 / negative errno
 *                                       convention succeeded; prints its error
 *
 * Each evaluates its arguments once, returns whether the check held, and is
 * safe from any thread. A line reads
 *   [role] FAIL: message: ret == -ECANCELED (-110 vs -125) (engine_check.c:212, seed 0x...)
 * with the seed (th_seed()) when the test uses one, so that a failure can be
 * rerun. Passing checks print "[role] ok: message" only under
 * th_set_verbose(true).
 *
 * Exit statuses: 0 passed, 1 failed, 2 bad usage, 77 skipped (ctest's
 * SKIP_RETURN_CODE).
 */
#ifndef RDMIG_TEST_TH_CHECK_H
#define RDMIG_TEST_TH_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "rdmig/err.h"

#define TH_EXIT_PASS  0
#define TH_EXIT_FAIL  1
#define TH_EXIT_USAGE 2
#define TH_EXIT_SKIP  77

/*
 * Once, first thing in main(): line-buffered stdout (two processes share
 * it), SIGPIPE ignored (a dead peer's socket must fail a send, not kill us),
 * and argv kept for th_split() (tests/lib/th_peer.h).
 */
void th_init(int argc, char **argv);

/* Prefix of every line this process prints through the harness ("src", "dst"). */
void th_set_role(const char *role);
const char *th_role(void);

/* Print passing checks too. */
void th_set_verbose(bool verbose);

/*
 * The seed of a test that uses randomness: `arg` (a --seed option, decimal or
 * 0x...) if given, else the one a parent handed to this peer, else a fresh
 * one. Printed with every failure from then on, and handed to every peer
 * this process starts so that both sides build the same data. Returns 0, or
 * -EINVAL when `arg` is not a number.
 */
int th_seed_init(const char *arg, uint64_t *seed);
/* Whether th_seed_init() ran, and its seed. */
bool th_seed(uint64_t *seed);

/* Failed checks so far in this process. */
int th_failures(void);
/* Count a failure found outside a check macro (after printing why). */
void th_fail_count(void);

/*
 * The last line of a test: "[role] WHAT: passed" or "[role] WHAT: FAILED (N
 * failed checks)". Returns the exit status: TH_EXIT_PASS, or TH_EXIT_FAIL
 * when any check failed or `ok` is false.
 */
int th_summary(const char *what, bool ok);

/* A program's modes (argv[1]), in a table ending with {NULL}. */
struct th_mode {
	const char *name;
	int (*run)(void); /* 0 passed */
};

/* The mode called `name`, or NULL (the caller prints its usage). */
const struct th_mode *th_mode_find(const struct th_mode *modes, const char *name);

/* A loud SKIP line (why, and how to get what is missing); returns TH_EXIT_SKIP. */
int th_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A line with the role prefix that is neither pass nor fail ("info"). */
void th_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool th_check_(bool ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* a and b are the uintmax_t bit patterns of intmax_t values when is_signed. */
bool th_check_num_(bool ok, bool is_signed, uintmax_t a, uintmax_t b, const char *expr,
		   const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
bool th_check_call_(int ret, const struct rdmig_err *err, const char *file, int line,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
bool th_check_has_(const char *str, const char *needle, const char *file, int line, const char *fmt,
		   ...) __attribute__((format(printf, 5, 6)));

#define TH_CHECK(cond, ...) th_check_((cond) ? true : false, __FILE__, __LINE__, __VA_ARGS__)

#define TH_CHECK_INT(a, op, b, ...)                                                                \
	__extension__({                                                                            \
		intmax_t th_a_ = (intmax_t)(a), th_b_ = (intmax_t)(b);                             \
		th_check_num_(th_a_ op th_b_, true, (uintmax_t)th_a_, (uintmax_t)th_b_,            \
			      #a " " #op " " #b, __FILE__, __LINE__, __VA_ARGS__);                 \
	})

#define TH_CHECK_UINT(a, op, b, ...)                                                               \
	__extension__({                                                                            \
		uintmax_t th_a_ = (uintmax_t)(a), th_b_ = (uintmax_t)(b);                          \
		th_check_num_(th_a_ op th_b_, false, th_a_, th_b_, #a " " #op " " #b, __FILE__,    \
			      __LINE__, __VA_ARGS__);                                              \
	})

#define TH_CHECK_CALL(ret, err, ...) th_check_call_(ret, err, __FILE__, __LINE__, __VA_ARGS__)

#define TH_CHECK_HAS(str, needle, ...) th_check_has_(str, needle, __FILE__, __LINE__, __VA_ARGS__)

#endif
