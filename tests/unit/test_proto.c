/* SPDX-License-Identifier: MIT */
/* Migration control messages: round trips and rejection of bad fields. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"
#include "wire.h"

static struct rdmig_msg_setup good_setup(void)
{
	struct rdmig_msg_setup s = {.version = RDMIG_ENGINE_VERSION,
				    .page_size = RDMIG_PAGE_SIZE,
				    .nregions = 2,
				    .vcpus = 4,
				    .workload = RDMIG_WL_INCR,
				    .channels = 4,
				    .seed = 42,
				    .dirty_rate = 1 << 20};

	s.region_len[0] = 1 << 20;
	s.region_len[1] = 2 << 20;
	s.region_node[0] = -1; /* unknown */
	s.region_node[1] = 1023;
	return s;
}

static void expect_setup_error(const struct rdmig_msg_setup *s, const char *needle)
{
	uint8_t buf[256];
	struct rdmig_msg_setup out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	size_t n = rdmig_msg_setup_encode(buf, s);

	assert_true(rdmig_msg_setup_decode(buf, n, 1ull << 30, &out, &err) < 0);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_setup_round_trip(void **state)
{
	struct rdmig_msg_setup s = good_setup(), out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[256];
	size_t n = rdmig_msg_setup_encode(buf, &s);

	(void)state;
	assert_int_equal(rdmig_msg_setup_decode(buf, n, 1ull << 30, &out, &err), 0);
	assert_memory_equal(&s, &out, sizeof(s));
	/* Every truncation is rejected, never read past. */
	for (size_t i = 0; i < n; i++) {
		uint8_t *copy = malloc(i ? i : 1);

		memcpy(copy, buf, i);
		rdmig_err_clear(&err);
		assert_true(rdmig_msg_setup_decode(copy, i, 1ull << 30, &out, &err) < 0);
		free(copy);
	}
}

static void test_setup_bad_fields(void **state)
{
	struct rdmig_msg_setup s;

	(void)state;
	s = good_setup();
	s.version = 9;
	expect_setup_error(&s, "version 9");
	s = good_setup();
	s.page_size = 65536;
	expect_setup_error(&s, "page size 65536");
	s = good_setup();
	s.nregions = 0;
	expect_setup_error(&s, "0 regions");
	s = good_setup();
	s.vcpus = 1000;
	expect_setup_error(&s, "1000 vCPUs");
	s = good_setup();
	s.workload = 17;
	expect_setup_error(&s, "unknown workload");
	s = good_setup();
	s.region_len[1] = 4097;
	expect_setup_error(&s, "not a positive multiple");
	s = good_setup();
	s.region_len[0] = 2ull << 30; /* above the destination's 1 GiB limit */
	expect_setup_error(&s, "larger than this destination accepts");
	s = good_setup();
	s.channels = 0;
	expect_setup_error(&s, "0 channels");
	s = good_setup();
	s.region_node[0] = -2;
	expect_setup_error(&s, "region 0 NUMA node -2");
	s = good_setup();
	s.region_node[1] = 1024;
	expect_setup_error(&s, "region 1 NUMA node 1024");
}

static void test_manifest_bounds(void **state)
{
	uint64_t sums[4] = {1, 2, 3, 4}, pages[2] = {8, 3};
	struct rdmig_msg_manifest m;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[64];
	size_t n;

	(void)state;
	n = rdmig_msg_manifest_encode(buf, 0, 4, sums, 4);
	assert_int_equal(rdmig_msg_manifest_decode(buf, n, pages, 2, &m, &err), 0);
	assert_int_equal(m.first_page, 4);
	assert_int_equal(rdmig_get_be64(m.sums + 24), 4);
	n = rdmig_msg_manifest_encode(buf, 1, 1, sums, 4); /* 1+4 > 3 pages */
	assert_true(rdmig_msg_manifest_decode(buf, n, pages, 2, &m, &err) < 0);
	assert_non_null(strstr(err.msg, "beyond region 1"));
	rdmig_err_clear(&err);
	n = rdmig_msg_manifest_encode(buf, 2, 0, sums, 1); /* no region 2 */
	assert_true(rdmig_msg_manifest_decode(buf, n, pages, 2, &m, &err) < 0);
	rdmig_err_clear(&err);
	n = rdmig_msg_manifest_encode(buf, 0, UINT64_MAX - 1, sums, 4); /* overflow */
	assert_true(rdmig_msg_manifest_decode(buf, n, pages, 2, &m, &err) < 0);
	rdmig_err_clear(&err);
	n = rdmig_msg_manifest_encode(buf, 0, 0, sums, 4);
	assert_true(rdmig_msg_manifest_decode(buf, n - 1, pages, 2, &m, &err) < 0);
}

static void test_final_and_cancel(void **state)
{
	struct rdmig_msg_final f = {.rounds = 7, .vcpus = 2, .final_seq = 1ull << 63 | 7}, g;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[512];
	char why[64];
	size_t n;
	int code;

	(void)state;
	f.vcpu[0].pos = 11;
	f.vcpu[1].rng = 99;
	f.vcpu[1].work = 5;
	n = rdmig_msg_final_encode(buf, &f);
	assert_int_equal(rdmig_msg_final_decode(buf, n, 2, &g, &err), 0);
	assert_int_equal(g.vcpu[0].pos, 11);
	assert_int_equal(g.vcpu[1].rng, 99);
	assert_int_equal(g.final_seq, f.final_seq);
	assert_true(rdmig_msg_final_decode(buf, n, 3, &g, &err) < 0); /* vCPU count mismatch */

	n = rdmig_msg_cancel_encode(buf, -EPIPE, "peer\ngone");
	assert_int_equal(rdmig_msg_cancel_decode(buf, n, &code, why, sizeof(why), &err), 0);
	assert_int_equal(code, -EPIPE);
	assert_string_equal(why, "peer?gone"); /* control characters neutralised */
	rdmig_put_be32(buf, 5);		       /* a positive "errno" from a peer */
	assert_int_equal(rdmig_msg_cancel_decode(buf, n, &code, why, sizeof(why), &err), 0);
	assert_int_equal(code, -ECANCELED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_setup_round_trip),
	    cmocka_unit_test(test_setup_bad_fields),
	    cmocka_unit_test(test_manifest_bounds),
	    cmocka_unit_test(test_final_and_cancel),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
