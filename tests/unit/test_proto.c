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
	for (unsigned i = 0; i < RDMIG_MIG_ID_LEN; i++)
		s.id[i] = (uint8_t)(0xa0 + i);
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
	s = good_setup();
	memset(s.id, 0, sizeof(s.id));
	expect_setup_error(&s, "migration id is all zero");
}

/* A version 1 source (40 fixed bytes, no id) is named as such, not as a short message. */
static void test_setup_old_version(void **state)
{
	struct rdmig_msg_setup s = good_setup(), out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[256];

	(void)state;
	s.version = 1;
	rdmig_msg_setup_encode(buf, &s);
	assert_true(rdmig_msg_setup_decode(buf, 40 + 12 * 2, 1ull << 30, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "version 1, this destination version 2"));
}

static void test_id_messages(void **state)
{
	uint8_t id[RDMIG_MIG_ID_LEN], other[RDMIG_MIG_ID_LEN], buf[64];
	struct rdmig_err err = RDMIG_ERR_INIT;
	char str[RDMIG_MIG_ID_STR];
	size_t n;

	(void)state;
	for (unsigned i = 0; i < RDMIG_MIG_ID_LEN; i++) {
		id[i] = (uint8_t)(i * 17);
		other[i] = (uint8_t)(i * 17);
	}
	other[15] ^= 1;
	rdmig_mig_id_str(id, str);
	assert_string_equal(str, "00112233445566778899aabbccddeeff");
	n = rdmig_msg_id_encode(buf, id);
	assert_int_equal(n, RDMIG_MIG_ID_LEN);
	assert_int_equal(rdmig_msg_id_decode(buf, n, id, "GO", &err), 0);
	assert_int_equal(rdmig_msg_id_decode(buf, n, other, "GO", &err), -EPROTO);
	assert_non_null(strstr(err.msg, "GO for migration 0011"));
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_msg_id_decode(buf, n - 1, id, "GO_ACK", &err), -EPROTO);
	assert_non_null(strstr(err.msg, "GO_ACK: 15 bytes"));
}

static void test_resolve(void **state)
{
	struct rdmig_msg_resolve r = {.value = RDMIG_DECIDED_ABORTED}, out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[64];
	size_t n;

	(void)state;
	memset(r.id, 0x5a, sizeof(r.id));
	n = rdmig_msg_resolve_encode(buf, &r);
	assert_int_equal(n, RDMIG_RESOLVE_LEN);
	assert_int_equal(rdmig_msg_resolve_decode(buf, n, RDMIG_EMSG_RESOLVE, &out, &err), 0);
	assert_memory_equal(out.id, r.id, RDMIG_MIG_ID_LEN);
	assert_int_equal(out.value, RDMIG_DECIDED_ABORTED);
	/* Every truncation and extension is refused. */
	for (size_t i = 0; i < n + 2; i++) {
		if (i == n)
			continue;
		rdmig_err_clear(&err);
		assert_int_equal(rdmig_msg_resolve_decode(buf, i, RDMIG_EMSG_RESOLVE, &out, &err),
				 -EPROTO);
	}
	r.value = 3; /* neither GO nor ABORTED */
	n = rdmig_msg_resolve_encode(buf, &r);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_resolve_decode(buf, n, RDMIG_EMSG_RESOLVE, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "RESOLVE: decision 3"));
	r.value = 0;
	n = rdmig_msg_resolve_encode(buf, &r);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_resolve_decode(buf, n, RDMIG_EMSG_RESOLVED, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "RESOLVED: state 0"));
	r.value = RDMIG_DST_RUNNING;
	n = rdmig_msg_resolve_encode(buf, &r);
	buf[23] = 1; /* reserved */
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_resolve_decode(buf, n, RDMIG_EMSG_RESOLVED, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "reserved"));
	memset(r.id, 0, sizeof(r.id));
	n = rdmig_msg_resolve_encode(buf, &r);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_resolve_decode(buf, n, RDMIG_EMSG_RESOLVED, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "all zero"));
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
	    cmocka_unit_test(test_setup_round_trip),  cmocka_unit_test(test_setup_bad_fields),
	    cmocka_unit_test(test_manifest_bounds),   cmocka_unit_test(test_final_and_cancel),
	    cmocka_unit_test(test_setup_old_version), cmocka_unit_test(test_id_messages),
	    cmocka_unit_test(test_resolve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
