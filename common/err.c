/* SPDX-License-Identifier: MIT */
#include "rdmig/err.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

int rdmig_vseterr(struct rdmig_err *err, int code, const char *fmt, va_list ap)
{
	if (code >= 0)
		code = -EIO; /* a caller bug must not turn an error into success */
	if (!err || err->code)
		return code;
	err->code = code;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	return code;
}

int rdmig_seterr(struct rdmig_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	code = rdmig_vseterr(err, code, fmt, ap);
	va_end(ap);
	return code;
}

int rdmig_seterr_errno(struct rdmig_err *err, int code, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	if (err && !err->code) {
		code = rdmig_vseterr(err, code, fmt, ap);
		n = strlen(err->msg);
		if (n < sizeof(err->msg))
			snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(-code));
	} else if (code >= 0) {
		code = -EIO;
	}
	va_end(ap);
	return code;
}

void rdmig_err_prefix(struct rdmig_err *err, const char *fmt, ...)
{
	char buf[2 * RDMIG_ERR_MSG_MAX];
	va_list ap;
	size_t n, m;

	if (!err || !err->code)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, RDMIG_ERR_MSG_MAX, fmt, ap);
	va_end(ap);
	/* "prefix: old", cut at the message size; truncation is acceptable here. */
	n = strlen(buf);
	memcpy(buf + n, ": ", 2);
	m = strnlen(err->msg, sizeof(err->msg));
	memcpy(buf + n + 2, err->msg, m);
	buf[n + 2 + m] = '\0';
	n = strnlen(buf, sizeof(err->msg) - 1);
	memcpy(err->msg, buf, n);
	err->msg[n] = '\0';
}

void rdmig_err_clear(struct rdmig_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}

const char *rdmig_err_str(const struct rdmig_err *err)
{
	if (!err || !err->code)
		return "no error";
	if (err->msg[0])
		return err->msg;
	return strerror(-err->code);
}

int rdmig_neg_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

int rdmig_err_slot_put(struct rdmig_err_slot *slot, const struct rdmig_err *e)
{
	int expected = 0;

	if (!atomic_compare_exchange_strong(&slot->taken, &expected, 1))
		return 0;
	slot->err = *e;
	atomic_store(&slot->taken, 2);
	return 1;
}

const struct rdmig_err *rdmig_err_slot_get(struct rdmig_err_slot *slot)
{
	int t = atomic_load(&slot->taken);

	if (!t)
		return NULL;
	while (t != 2) { /* the winner is copying a few hundred bytes */
		sched_yield();
		t = atomic_load(&slot->taken);
	}
	return &slot->err;
}
