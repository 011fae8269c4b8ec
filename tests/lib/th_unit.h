/* SPDX-License-Identifier: MIT */
/*
 * Assertions on the error convention for cmocka tests (include after
 * <cmocka.h>): the call failed with the expected errno and said why, or it
 * succeeded.
 */
#ifndef RDMIG_TEST_TH_UNIT_H
#define RDMIG_TEST_TH_UNIT_H

#include <string.h>

#include "rdmig/err.h"

/* The call failed with `code`, recorded it, and the message names `what`. */
static inline void th_unit_fail(int ret, const struct rdmig_err *err, int code, const char *what)
{
	if (ret != code || err->code != code || !strstr(err->msg, what))
		fail_msg("expected %d mentioning \"%s\", got %d: \"%s\"", code, what, ret,
			 err->msg);
}

static inline void th_unit_ok(int ret, const struct rdmig_err *err)
{
	if (ret)
		fail_msg("expected success, got %d: \"%s\"", ret, rdmig_err_str(err));
}

#endif
