/* SPDX-License-Identifier: MIT */
/*
 * Strict number parsing for command lines: the whole string must parse, the
 * result must fit, and errors say what was expected.
 */
#ifndef RDMIG_UNITS_H
#define RDMIG_UNITS_H

#include <stdint.h>
#include <stddef.h>

#include "rdmig/err.h"

/* "4096", "4k", "64K", "1M", "2G", "1T", optional "iB"/"B": powers of 1024. */
int rdmig_parse_size(const char *s, uint64_t *out, struct rdmig_err *err);

/*
 * Durations: "300ms", "2s", "1.5s", "2m", "100us". A bare number is taken in
 * `bare_unit_ns` (e.g. 1000000 for milliseconds). Result in nanoseconds.
 */
int rdmig_parse_duration(const char *s, uint64_t bare_unit_ns, uint64_t *out_ns,
			 struct rdmig_err *err);

/*
 * Rates in bytes per second: "100M" (MiB/s), "1G", or bits with a "bit"
 * suffix: "10Gbit" (decimal, as links are rated). "0" means unlimited.
 */
int rdmig_parse_rate(const char *s, uint64_t *out_bps, struct rdmig_err *err);

/* Unsigned integer in [min, max]. */
int rdmig_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		     struct rdmig_err *err);

/* Human-readable "1.50 GiB" into buf; returns buf. */
char *rdmig_fmt_size(uint64_t bytes, char *buf, size_t len);

#endif
