/* SPDX-License-Identifier: MIT */
/*
 * Every JSON object the rdmig tool prints goes through here and jansson:
 * no hand escaping, one way to say status and error (docs/json.md).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rdmig/migrate.h"

json_t *cli_jstr(const char *s)
{
	json_t *j;
	char *copy;

	if (!s)
		return json_null();
	j = json_string(s);
	if (j)
		return j;
	/* Not UTF-8 (a path, a peer's message): keep what can be read. */
	copy = strdup(s);
	if (!copy)
		return json_null();
	for (unsigned char *p = (unsigned char *)copy; *p; p++)
		if (*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j ? j : json_null();
}

json_t *cli_juint(uint64_t v)
{
	return v <= (uint64_t)LLONG_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

json_t *cli_jreal(double v, int decimals)
{
	double scale = pow(10, decimals);

	if (!isfinite(v))
		return json_null();
	return json_real(round(v * scale) / scale);
}

void cli_jset(json_t *obj, const char *key, json_t *val)
{
	json_object_set_new(obj, key, val ? val : json_null());
}

const char *cli_status_name(int ret)
{
	if (ret == RDMIG_MIG_EUNKNOWN)
		return "unknown";
	if (ret == RDMIG_MIG_EPCLOST)
		return "postcopy-lost";
	return ret == 0 ? "completed" : ret == -ECANCELED ? "cancelled" : "failed";
}

json_t *cli_json_summary(const char *command, int ret, const char *errmsg)
{
	json_t *j = json_object();

	if (!j)
		return NULL;
	cli_jset(j, "event", json_string("summary"));
	cli_jset(j, "command", json_string(command));
	cli_jset(j, "status", json_string(cli_status_name(ret)));
	cli_jset(j, "error", ret ? cli_jstr(errmsg ? errmsg : "unknown error") : json_null());
	return j;
}

int cli_json_print(json_t *j, bool pretty)
{
	/* 15 significant digits: rounded reals print as 12.5, not 12.500000000000002. */
	size_t flags = (pretty ? JSON_INDENT(2) : JSON_COMPACT) | JSON_REAL_PRECISION(15) |
		       JSON_PRESERVE_ORDER;
	int ret = 0;

	if (!j)
		return -ENOMEM;
	if (json_dumpf(j, stdout, flags) < 0 || putchar('\n') == EOF || fflush(stdout))
		ret = -EIO;
	json_decref(j);
	return ret;
}
