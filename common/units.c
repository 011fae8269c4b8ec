/* SPDX-License-Identifier: MIT */
#include "units.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int parse_number(const char *s, double *val, const char **rest)
{
	char *end;

	/* strtod() would skip any leading white space and take a sign. */
	if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*val = strtod(s, &end);
	if (end == s || errno || !isfinite(*val) || *val < 0)
		return -EINVAL;
	*rest = end;
	return 0;
}

int rdmig_parse_size(const char *s, uint64_t *out, struct rdmig_err *err)
{
	static const char sfx[] = "KMGT";
	const char *rest;
	double v, mult = 1;
	const char *p;

	if (parse_number(s, &v, &rest))
		goto bad;
	if (*rest) {
		p = strchr(sfx, (*rest >= 'a' && *rest <= 'z') ? *rest - 32 : *rest);
		if (!p)
			goto bad;
		for (long i = 0; i <= p - sfx; i++)
			mult *= 1024;
		rest++;
		if (!strcmp(rest, "iB") || !strcmp(rest, "B") || !strcmp(rest, "ib"))
			rest += strlen(rest);
		if (*rest)
			goto bad;
	}
	v *= mult;
	/* (double)UINT64_MAX rounds up to 2^64, which does not convert. */
	if (v >= 0x1p64 || v != floor(v))
		goto bad;
	*out = (uint64_t)v;
	return 0;
bad:
	return rdmig_seterr(err, -EINVAL,
			    "invalid size '%s': expected a whole number of bytes with an optional "
			    "unit K, M, G or T (powers of 1024), e.g. 4k, 64K, 1M, 2G",
			    s ? s : "");
}

int rdmig_parse_duration(const char *s, uint64_t bare_unit_ns, uint64_t *out_ns,
			 struct rdmig_err *err)
{
	static const struct {
		const char *name;
		double ns;
	} units[] = {{"ns", 1},	   {"us", 1e3}, {"ms", 1e6},   {"s", 1e9},
		     {"sec", 1e9}, {"m", 60e9}, {"min", 60e9}, {"h", 3600e9}};
	const char *rest;
	double v, mult = (double)bare_unit_ns;
	size_t i;

	if (parse_number(s, &v, &rest))
		goto bad;
	if (*rest) {
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (!strcmp(rest, units[i].name))
				break;
		if (i == sizeof(units) / sizeof(units[0]))
			goto bad;
		mult = units[i].ns;
	}
	v *= mult;
	if (v > 1e18)
		goto bad;
	*out_ns = (uint64_t)llround(v);
	return 0;
bad:
	return rdmig_seterr(err, -EINVAL,
			    "invalid duration '%s': expected a number with an optional unit "
			    "us, ms, s, m or h, e.g. 300ms, 2s",
			    s ? s : "");
}

int rdmig_parse_rate(const char *s, uint64_t *out_bps, struct rdmig_err *err)
{
	const char *rest;
	char unit[16];
	double v, mult = 1;
	size_t n;
	int bits = 0;

	if (parse_number(s, &v, &rest))
		goto bad;
	n = strlen(rest);
	if (n >= sizeof(unit))
		goto bad;
	memcpy(unit, rest, n + 1);
	/* Strip a "/s" and then a "bit"/"bps" or "B"/"iB" tail. */
	if (n >= 2 && !strcmp(unit + n - 2, "/s"))
		unit[n -= 2] = '\0';
	if (n >= 3 && (!strcasecmp(unit + n - 3, "bit") || !strcmp(unit + n - 3, "bps"))) {
		bits = 1;
		unit[n -= 3] = '\0';
	} else if (n >= 2 && !strcmp(unit + n - 2, "iB")) {
		unit[n -= 2] = '\0';
	} else if (n >= 1 && unit[n - 1] == 'B') {
		unit[n -= 1] = '\0';
	}
	if (n > 1)
		goto bad;
	if (n == 1) {
		const char *sfx = "KMGT", *p = strchr(sfx, unit[0] & ~0x20);

		/* A space masks to '\0', which strchr() finds at the end. */
		if (!p || !*p)
			goto bad;
		for (long i = 0; i <= p - sfx; i++)
			mult *= bits ? 1000 : 1024;
	}
	v *= mult;
	if (bits)
		v /= 8;
	/* A rate that rounds to 0 would silently mean unlimited. */
	if (v > 1e18 || (v > 0 && llround(v) == 0))
		goto bad;
	*out_bps = (uint64_t)llround(v);
	return 0;
bad:
	return rdmig_seterr(err, -EINVAL,
			    "invalid rate '%s': expected bytes per second with an optional unit "
			    "K, M, G (powers of 1024), or bits with 'bit', e.g. 100M, 1G, 10Gbit; "
			    "0 means unlimited",
			    s ? s : "");
}

int rdmig_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		     struct rdmig_err *err)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		goto bad;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	return rdmig_seterr(err, -EINVAL,
			    "invalid number '%s': expects a value between %llu and %llu",
			    s ? s : "", (unsigned long long)min, (unsigned long long)max);
}

char *rdmig_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.2f %s", v, names[i]);
	return buf;
}
