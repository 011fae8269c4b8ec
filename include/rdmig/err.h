/* SPDX-License-Identifier: MIT */
/*
 * rdmig error convention.
 *
 * Every fallible function returns 0 on success or a negative errno, and
 * takes a `struct rdmig_err *` as its last argument (which may be NULL) that
 * receives one human-readable phrase for whoever reads it. The first error
 * recorded wins: later failures while unwinding do not overwrite the cause.
 *
 * libibverbs, librdmacm and libc each report errors differently (positive
 * errno, -1 with errno, NULL with errno); the wrappers in common/err.c turn
 * them into this one convention at the call site.
 */
#ifndef RDMIG_ERR_H
#define RDMIG_ERR_H

#include <stdarg.h>
#include <stdatomic.h>

/* librdmig exports what its public headers declare (cmake/librdmig.map). */
#pragma GCC visibility push(default)

#define RDMIG_ERR_MSG_MAX 384

struct rdmig_err {
	int code;		     /* negative errno of the first error, 0 if none */
	char msg[RDMIG_ERR_MSG_MAX]; /* "what failed: why", no trailing newline */
};

#define RDMIG_ERR_INIT                                                                             \
	{                                                                                          \
		0,                                                                                 \
		{                                                                                  \
			0                                                                          \
		}                                                                                  \
	}

/*
 * Record an error (if none is recorded yet) and return `code`, which must be
 * a negative errno, so that callers can write `return rdmig_seterr(...)`.
 */
int rdmig_seterr(struct rdmig_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int rdmig_vseterr(struct rdmig_err *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Like rdmig_seterr() but appends ": strerror(-code)". */
int rdmig_seterr_errno(struct rdmig_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepend context to an already recorded message ("ctx: old message"). */
void rdmig_err_prefix(struct rdmig_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void rdmig_err_clear(struct rdmig_err *err);

/* Message of a recorded error, or strerror(-code) when there is none. */
const char *rdmig_err_str(const struct rdmig_err *err);

/*
 * Convert the three foreign conventions to a negative errno.
 *   rdmig_neg_errno()     after a call that returned -1 / NULL and set errno
 *   rdmig_neg_pos(ret)    for verbs calls that return a positive errno
 */
int rdmig_neg_errno(void);
static inline int rdmig_neg_pos(int ret)
{
	return ret > 0 ? -ret : ret;
}

/*
 * A first-error-wins slot shared between threads (workers of one
 * migration). The first thread to fail stores its error; others see that
 * the slot is taken and stop.
 */
struct rdmig_err_slot {
	atomic_int taken;
	struct rdmig_err err;
};

/* Returns 1 if this call stored `e`, 0 if an earlier error was kept. */
int rdmig_err_slot_put(struct rdmig_err_slot *slot, const struct rdmig_err *e);

/*
 * The stored error, or NULL if none. Waits the few instructions it takes the
 * winning thread to finish copying its message, so a reader never sees a
 * half-written one (taken: 0 free, 1 being written, 2 readable).
 */
const struct rdmig_err *rdmig_err_slot_get(struct rdmig_err_slot *slot);

#pragma GCC visibility pop

#endif
