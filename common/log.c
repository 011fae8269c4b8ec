/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int rdmig_log_level = RDMIG_LOG_WARN;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void rdmig_log_init(void)
{
	const char *env = getenv("RDMIG_LOG");

	if (!env)
		return;
	for (int i = 0; i < 4; i++)
		if (!strcasecmp(env, level_names[i]))
			rdmig_log_level = i;
}

void rdmig_log_set_level(int level)
{
	rdmig_log_level = level;
}

void rdmig_log_msg(int level, const char *func, const char *fmt, ...)
{
	int saved = errno;
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* One fprintf per line so that lines of different threads do not mix. */
	if (level >= RDMIG_LOG_DEBUG)
		fprintf(stderr, "rdmig: %s: %s: %s\n", level_names[level], func, buf);
	else
		fprintf(stderr, "rdmig: %s: %s\n", level_names[level], buf);
	errno = saved;
}
