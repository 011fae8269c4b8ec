/* SPDX-License-Identifier: MIT */
/* Strict parsing of sizes, durations, rates and integers (common/units.c). */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "units.h"

#define MS 1000000ULL
#define S  1000000000ULL

struct good {
	const char *in;
	uint64_t want;
};

typedef int (*parse_fn)(const char *s, uint64_t *out, struct rdmig_err *err);

static int parse_dur_ms(const char *s, uint64_t *out, struct rdmig_err *err)
{
	return rdmig_parse_duration(s, MS, out, err);
}

static int parse_dur_s(const char *s, uint64_t *out, struct rdmig_err *err)
{
	return rdmig_parse_duration(s, S, out, err);
}

static int parse_uint_0_1000(const char *s, uint64_t *out, struct rdmig_err *err)
{
	return rdmig_parse_uint(s, 0, 1000, out, err);
}

static void expect_good(parse_fn fn, const struct good *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		uint64_t v = 0xdeadbeef;
		int ret = fn(g[i].in, &v, &err);

		if (ret || v != g[i].want)
			fail_msg("'%s': got %d, %" PRIu64 ", want %" PRIu64 " (%s)", g[i].in, ret,
				 v, g[i].want, err.msg);
	}
}

/* Rejected with -EINVAL, output untouched, and the message quotes the input. */
static void expect_bad(parse_fn fn, const char *const *bad, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		uint64_t v = 0xdeadbeef;
		char quoted[64];
		int ret = fn(bad[i], &v, &err);

		snprintf(quoted, sizeof(quoted), "'%s'", bad[i] ? bad[i] : "");
		if (ret != -EINVAL || err.code != -EINVAL || v != 0xdeadbeef)
			fail_msg("'%s' accepted or wrong error: %d, value %" PRIu64, bad[i], ret,
				 v);
		if (!strstr(err.msg, what) || !strstr(err.msg, quoted))
			fail_msg("'%s': message \"%s\" lacks \"%s\"", bad[i], err.msg, what);
	}
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- sizes ------------------------------------------------------------ */

static void test_size_good(void **state)
{
	static const struct good g[] = {
	    {"0", 0},	     {"4096", 4096},	  {"4k", 4096},
	    {"4K", 4096},    {"64K", 64 << 10},	  {"1M", 1 << 20},
	    {"1m", 1 << 20}, {"2G", 2ULL << 30},  {"1T", 1ULL << 40},
	    {"1.5K", 1536},  {"0.5M", 512 << 10}, {"1KB", 1024},
	    {"1KiB", 1024},  {"3MiB", 3 << 20},	  {"16777215T", UINT64_MAX - (1ULL << 40) + 1},
	};

	(void)state;
	expect_good(rdmig_parse_size, g, N(g));
}

static void test_size_bad(void **state)
{
	static const char *const bad[] = {"-1",	 "",	"1Q",  "1KB ", "1.5",  "0.1K",
					  " 1",	 "1 ",	"\t1", "K",    "1KK",  "1Kb",
					  "inf", "nan", "+1",  "1K B", "1MiBs"};

	(void)state;
	expect_bad(rdmig_parse_size, bad, N(bad), "invalid size");
}

static void test_size_null(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v;

	(void)state;
	assert_int_equal(rdmig_parse_size(NULL, &v, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid size ''"));
}

static void test_size_overflow(void **state)
{
	/* 20000000T is past 2^64; 16777216T and 17179869184G are exactly 2^64. */
	static const char *const bad[] = {"20000000T", "16777216T", "17179869184G",
					  "18446744073709551616", "1e30"};

	(void)state;
	expect_bad(rdmig_parse_size, bad, N(bad), "invalid size");
}

/* ---- durations -------------------------------------------------------- */

static void test_duration_good(void **state)
{
	static const struct good g[] = {
	    {"300ms", 300 * MS}, {"2s", 2 * S},	    {"1.5s", 1500 * MS}, {"2m", 120 * S},
	    {"100us", 100000},	 {"1ns", 1},	    {"1h", 3600 * S},	 {"1sec", S},
	    {"1min", 60 * S},	 {"0", 0},	    {"0s", 0},		 {"5", 5 * MS},
	    {"1.5", 1500000},	 {"250", 250 * MS},
	};

	(void)state;
	expect_good(parse_dur_ms, g, N(g));
}

static void test_duration_bare_unit(void **state)
{
	static const struct good g[] = {{"2", 2 * S}, {"1.5", 1500 * MS}, {"300ms", 300 * MS}};

	(void)state;
	expect_good(parse_dur_s, g, N(g));
}

static void test_duration_bad(void **state)
{
	static const char *const bad[] = {"-1",	   "",	   "1x",   "2 s", "1S",	   "ms",
					  "1e20s", "1ms ", "\n5s", "5s5", "1hour", "nan"};

	(void)state;
	expect_bad(parse_dur_ms, bad, N(bad), "invalid duration");
}

/* ---- rates ------------------------------------------------------------ */

static void test_rate_good(void **state)
{
	static const struct good g[] = {
	    {"0", 0},
	    {"1", 1},
	    {"100M", 100ULL << 20},
	    {"100MB/s", 100ULL << 20},
	    {"1G", 1ULL << 30},
	    {"1.5G", 3ULL << 29},
	    {"1K", 1024},
	    {"10Gbit", 1250000000},
	    {"10gbit", 1250000000},
	    {"10Gbps", 1250000000},
	    {"100Mbit/s", 12500000},
	    {"1kbit", 125},
	    {"1Tbit", 125000000000ULL},
	};

	(void)state;
	expect_good(rdmig_parse_rate, g, N(g));
}

static void test_rate_bad(void **state)
{
	static const char *const bad[] = {"-1",	       "",	"1Q",	   "1KK",     "bit",
					  "1 ",	       "1 bit", "1bit",	   "0.4",     "2e18",
					  "16777216T", "\t5",	"100M/ss", "1Kbitbit"};

	(void)state;
	expect_bad(rdmig_parse_rate, bad, N(bad), "invalid rate");
}

/* ---- integers --------------------------------------------------------- */

static void test_uint_good(void **state)
{
	static const struct good g[] = {{"0", 0}, {"1000", 1000}, {"010", 10}, {"42", 42}};
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v = 0;

	(void)state;
	expect_good(parse_uint_0_1000, g, N(g));
	assert_int_equal(rdmig_parse_uint("18446744073709551615", 0, UINT64_MAX, &v, &err), 0);
	assert_int_equal(v, UINT64_MAX);
}

static void test_uint_bad(void **state)
{
	static const char *const bad[] = {
	    "-1", "", "1001", "+5", " 5", "5 ", "\t5", "0x10", "1e3", "5k", "18446744073709551616"};
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v;

	(void)state;
	expect_bad(parse_uint_0_1000, bad, N(bad), "between 0 and 1000");
	assert_int_equal(rdmig_parse_uint("4", 5, 10, &v, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "between 5 and 10"));
}

/* ---- misc ------------------------------------------------------------- */

static void test_null_err_and_first_error(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v;

	(void)state;
	assert_int_equal(rdmig_parse_size("x", &v, NULL), -EINVAL);
	assert_int_equal(rdmig_parse_rate("x", &v, NULL), -EINVAL);
	assert_int_equal(rdmig_parse_duration("x", 1, &v, NULL), -EINVAL);
	assert_int_equal(rdmig_parse_uint("x", 0, 1, &v, NULL), -EINVAL);
	rdmig_seterr(&err, -ENOENT, "first");
	assert_int_equal(rdmig_parse_size("x", &v, &err), -EINVAL);
	assert_int_equal(err.code, -ENOENT);
	assert_string_equal(err.msg, "first");
}

static void test_fmt_size(void **state)
{
	char buf[32];

	(void)state;
	assert_string_equal(rdmig_fmt_size(0, buf, sizeof(buf)), "0 B");
	assert_string_equal(rdmig_fmt_size(1023, buf, sizeof(buf)), "1023 B");
	assert_string_equal(rdmig_fmt_size(1024, buf, sizeof(buf)), "1.00 KiB");
	assert_string_equal(rdmig_fmt_size(1536, buf, sizeof(buf)), "1.50 KiB");
	assert_string_equal(rdmig_fmt_size(3ULL << 30, buf, sizeof(buf)), "3.00 GiB");
	assert_string_equal(rdmig_fmt_size(UINT64_MAX, buf, sizeof(buf)), "16777216.00 TiB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_size_good),	  cmocka_unit_test(test_size_bad),
	    cmocka_unit_test(test_size_null),	  cmocka_unit_test(test_size_overflow),
	    cmocka_unit_test(test_duration_good), cmocka_unit_test(test_duration_bare_unit),
	    cmocka_unit_test(test_duration_bad),  cmocka_unit_test(test_rate_good),
	    cmocka_unit_test(test_rate_bad),	  cmocka_unit_test(test_uint_good),
	    cmocka_unit_test(test_uint_bad),	  cmocka_unit_test(test_null_err_and_first_error),
	    cmocka_unit_test(test_fmt_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
