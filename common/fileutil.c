/* SPDX-License-Identifier: MIT */
#include "fileutil.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int rdmig_read_line(const char *path, char *buf, size_t len)
{
	FILE *f;
	char *nl;

	if (!len)
		return -1;
	buf[0] = '\0';
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (!fgets(buf, (int)len, f)) {
		buf[0] = '\0';
		fclose(f);
		return -1;
	}
	fclose(f);
	nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	return 0;
}

int rdmig_read_linef(char *buf, size_t len, const char *fmt, ...)
{
	char path[PATH_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		if (len)
			buf[0] = '\0';
		return -1;
	}
	return rdmig_read_line(path, buf, len);
}
