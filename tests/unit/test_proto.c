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

#include "guest_int.h"
#include "proto.h"
#include "wire.h"

static struct rdmig_msg_setup good_setup(void)
{
	struct rdmig_msg_setup s = {.version = RDMIG_ENGINE_VERSION,
				    .page_size = RDMIG_PAGE_SIZE,
				    .nregions = 2,
				    .channels = 4,
				    .verify = RDMIG_VERIFY_FULL};
	struct rdmig_guest_cfg gc = {
	    .vcpus = 4, .workload = RDMIG_WL_INCR, .seed = 42, .dirty_rate = 1 << 20};

	rdmig_guest_config_encode(&gc, s.config);
	s.config_len = RDMIG_GUEST_VM_CONFIG;
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
	static uint8_t buf[RDMIG_SETUP_MAX_LEN + 64];
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
	static uint8_t buf[RDMIG_SETUP_MAX_LEN];
	size_t n = rdmig_msg_setup_encode(buf, &s);
	struct rdmig_guest_cfg gc;

	(void)state;
	assert_int_equal(rdmig_msg_setup_decode(buf, n, 1ull << 30, &out, &err), 0);
	assert_memory_equal(&s, &out, sizeof(s));
	/* The synthetic guest's config travels through untouched. */
	assert_int_equal(rdmig_guest_config_decode(out.config, out.config_len, &gc, &err), 0);
	assert_int_equal(gc.vcpus, 4);
	assert_int_equal(gc.workload, RDMIG_WL_INCR);
	assert_int_equal(gc.seed, 42);
	assert_int_equal(gc.dirty_rate, 1 << 20);
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
	{
		/* A config length past the limit, with that many bytes behind it. */
		static uint8_t big[RDMIG_SETUP_MAX_LEN + 1];
		struct rdmig_msg_setup out;
		struct rdmig_err err = RDMIG_ERR_INIT;
		size_t n;

		s = good_setup();
		s.config_len = 0;
		n = rdmig_msg_setup_encode(big, &s);
		rdmig_put_be32(big + 12, RDMIG_VM_CONFIG_MAX + 1);
		assert_true(rdmig_msg_setup_decode(big, n + RDMIG_VM_CONFIG_MAX + 1, 1ull << 30,
						   &out, &err) < 0);
		assert_non_null(strstr(err.msg, "at most 4096"));
	}
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
	s = good_setup();
	s.verify = 3; /* on the wire 4 */
	expect_setup_error(&s, "verify mode 4");
	s = good_setup();
	s.verify = UINT32_MAX; /* on the wire 0 */
	expect_setup_error(&s, "verify mode 0");
}

/* A version 1 source (40 fixed bytes, no id) is named as such, not as a short message. */
static void test_setup_old_version(void **state)
{
	struct rdmig_msg_setup s = good_setup(), out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	static uint8_t buf[RDMIG_SETUP_MAX_LEN];

	(void)state;
	s.version = 1;
	rdmig_msg_setup_encode(buf, &s);
	assert_true(rdmig_msg_setup_decode(buf, 40 + 12 * 2, 1ull << 30, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "version 1, this destination version 5"));
	/* Version 2: 56 fixed bytes, no verify mode. */
	s.version = 2;
	rdmig_msg_setup_encode(buf, &s);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_setup_decode(buf, 56 + 12 * 2, 1ull << 30, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "version 2, this destination version 5"));
	/* Version 3: the synthetic guest's fields where the config length is now. */
	s.version = 3;
	rdmig_msg_setup_encode(buf, &s);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_setup_decode(buf, 64 + 12 * 2, 1ull << 30, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "version 3, this destination version 5"));
}

/* The synthetic guest's config blob: checked by the destination before it builds the guest. */
static void test_guest_config(void **state)
{
	struct rdmig_guest_cfg gc = {.vcpus = 4, .workload = RDMIG_WL_HOTSET}, out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t b[RDMIG_GUEST_VM_CONFIG];

	(void)state;
	rdmig_guest_config_encode(&gc, b);
	assert_int_equal(rdmig_guest_config_decode(b, sizeof(b), &out, &err), 0);
	assert_int_equal(out.workload, RDMIG_WL_HOTSET);
	assert_true(rdmig_guest_config_decode(b, sizeof(b) - 1, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "config of 23 bytes"));
	gc.vcpus = 1000;
	rdmig_guest_config_encode(&gc, b);
	rdmig_err_clear(&err);
	assert_true(rdmig_guest_config_decode(b, sizeof(b), &out, &err) < 0);
	assert_non_null(strstr(err.msg, "1000 vCPUs"));
	gc.vcpus = 4;
	gc.workload = (enum rdmig_workload)17;
	rdmig_guest_config_encode(&gc, b);
	rdmig_err_clear(&err);
	assert_true(rdmig_guest_config_decode(b, sizeof(b), &out, &err) < 0);
	assert_non_null(strstr(err.msg, "unknown workload"));
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
	struct rdmig_manifest_group g;
	struct rdmig_manifest_out mo;
	struct rdmig_err err = RDMIG_ERR_INIT;
	static uint8_t buf[RDMIG_MANIFEST_MAX];
	size_t off = 0;

	(void)state;
	rdmig_manifest_begin(&mo, buf, 5);
	assert_int_equal(rdmig_manifest_add(&mo, 0, 4, sums, 4), 4);
	assert_int_equal(rdmig_manifest_add(&mo, 1, 0, sums + 1, 3), 3);
	assert_int_equal(rdmig_msg_manifest_decode(buf, mo.len, pages, 2, &m, &err), 0);
	assert_int_equal(m.round, 5);
	assert_int_equal(m.groups, 2);
	assert_true(rdmig_manifest_next(&m, &off, &g));
	assert_int_equal(g.region, 0);
	assert_int_equal(g.first_page, 4);
	assert_int_equal(rdmig_get_be64(g.sums + 24), 4);
	assert_true(rdmig_manifest_next(&m, &off, &g));
	assert_int_equal(g.region, 1);
	assert_int_equal(g.count, 3);
	assert_int_equal(rdmig_get_be64(g.sums), 2);
	assert_false(rdmig_manifest_next(&m, &off, &g));
	/* Every truncation is refused, as is a byte too many. */
	for (size_t i = 0; i < mo.len; i++)
		assert_true(rdmig_msg_manifest_decode(buf, i, pages, 2, &m, &err) < 0);
	assert_true(rdmig_msg_manifest_decode(buf, mo.len + 1, pages, 2, &m, &err) < 0);

	rdmig_manifest_begin(&mo, buf, 1);
	rdmig_manifest_add(&mo, 1, 1, sums, 4); /* 1+4 > 3 pages */
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_manifest_decode(buf, mo.len, pages, 2, &m, &err) < 0);
	assert_non_null(strstr(err.msg, "beyond region 1"));
	rdmig_manifest_begin(&mo, buf, 1);
	rdmig_manifest_add(&mo, 2, 0, sums, 1); /* no region 2 */
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_manifest_decode(buf, mo.len, pages, 2, &m, &err) < 0);
	assert_non_null(strstr(err.msg, "region 2 of 2"));
	rdmig_manifest_begin(&mo, buf, 1);
	rdmig_manifest_add(&mo, 0, UINT64_MAX - 1, sums, 4); /* overflow */
	assert_true(rdmig_msg_manifest_decode(buf, mo.len, pages, 2, &m, &err) < 0);
	rdmig_manifest_begin(&mo, buf, 0); /* rounds count from 1 */
	rdmig_manifest_add(&mo, 0, 0, sums, 1);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_manifest_decode(buf, mo.len, pages, 2, &m, &err) < 0);
	assert_non_null(strstr(err.msg, "round 0"));
	/* A group count that disagrees with the bytes. */
	rdmig_manifest_begin(&mo, buf, 1);
	rdmig_manifest_add(&mo, 0, 0, sums, 2);
	rdmig_put_be32(buf + 4, 2);
	assert_true(rdmig_msg_manifest_decode(buf, mo.len, pages, 2, &m, &err) < 0);
	rdmig_put_be32(buf + 4, 0);
	assert_true(rdmig_msg_manifest_decode(buf, mo.len, pages, 2, &m, &err) < 0);
	/* A group claiming more checksums than follow. */
	rdmig_put_be32(buf + 4, 1);
	rdmig_put_be32(buf + 12, 3);
	assert_true(rdmig_msg_manifest_decode(buf, mo.len, pages, 2, &m, &err) < 0);
}

/* The builder never makes a message larger than the control channel takes. */
static void test_manifest_full(void **state)
{
	static uint64_t sums[10000];
	static uint8_t buf[RDMIG_MANIFEST_MAX];
	uint64_t pages[1] = {1 << 20};
	struct rdmig_manifest_out mo;
	struct rdmig_msg_manifest m;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint32_t k, total = 0;

	(void)state;
	rdmig_manifest_begin(&mo, buf, 2);
	while ((k = rdmig_manifest_add(&mo, 0, total, sums, 10000 - total)) > 0)
		total += k;
	assert_true(total > 8000 && total < 10000);
	assert_true(mo.len <= RDMIG_MANIFEST_MAX);
	assert_int_equal(rdmig_msg_manifest_decode(buf, mo.len, pages, 1, &m, &err), 0);
}

static void test_round_and_verified(void **state)
{
	struct rdmig_msg_verified v = {.pages = 9, .fence_us = 1, .revoke_us = 2, .verify_us = 3};
	struct rdmig_msg_verified w;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[64];
	uint32_t round;
	uint64_t count;
	size_t n;

	(void)state;
	n = rdmig_msg_round_encode(buf, 7, 1234);
	assert_int_equal(rdmig_msg_round_decode(buf, n, "MANIFEST_END", &round, &count, &err), 0);
	assert_int_equal(round, 7);
	assert_int_equal(count, 1234);
	assert_true(rdmig_msg_round_decode(buf, n - 1, "MANIFEST_END", &round, &count, &err) < 0);
	rdmig_put_be32(buf + 4, 1);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_round_decode(buf, n, "ROUND_VERIFIED", &round, &count, &err) < 0);
	assert_non_null(strstr(err.msg, "ROUND_VERIFIED: reserved"));
	n = rdmig_msg_round_encode(buf, 0, 1);
	assert_true(rdmig_msg_round_decode(buf, n, "MANIFEST_END", &round, &count, &err) < 0);

	n = rdmig_msg_verified_encode(buf, &v);
	assert_int_equal(rdmig_msg_verified_decode(buf, n, &w, &err), 0);
	assert_int_equal(w.pages, 9);
	assert_int_equal(w.revoke_us, 2);
	assert_int_equal(w.verify_us, 3);
	assert_true(rdmig_msg_verified_decode(buf, 8, &w, &err) < 0); /* version 2's VERIFIED */
	rdmig_put_be32(buf + 20, 1);
	assert_true(rdmig_msg_verified_decode(buf, n, &w, &err) < 0);
}

/*
 * A state longer than one message: FINAL carries its start, STATE messages
 * the rest, contiguous; reassembled it is byte for byte what was sent.
 */
static void test_final_state_chunks(void **state)
{
	size_t total = RDMIG_FINAL_INLINE + RDMIG_STATE_CHUNK + 1000;
	uint8_t *blob = malloc(total), *got = calloc(1, total);
	uint8_t *buf = malloc(RDMIG_CTRL_MAX_PAYLOAD);
	struct rdmig_msg_final f = {.rounds = 2,
				    .state_len = (uint32_t)total,
				    .final_seq = 1ull << 63 | 2,
				    .state = blob},
			       g;
	struct rdmig_err err = RDMIG_ERR_INIT;
	const uint8_t *data;
	uint32_t have, chunks = 0;
	size_t n, k;

	(void)state;
	assert_non_null(blob);
	for (size_t i = 0; i < total; i++)
		blob[i] = (uint8_t)(i * 31 + i / 977);
	n = rdmig_msg_final_encode(buf, &f);
	assert_int_equal(n, RDMIG_CTRL_MAX_PAYLOAD);
	assert_int_equal(rdmig_msg_final_decode(buf, n, &g, &err), 0);
	assert_int_equal(g.state_len, total);
	assert_int_equal(g.inline_len, RDMIG_FINAL_INLINE);
	memcpy(got, g.state, g.inline_len);
	have = g.inline_len;
	while (have < total) {
		k = total - have < RDMIG_STATE_CHUNK ? total - have : RDMIG_STATE_CHUNK;
		n = rdmig_msg_state_encode(buf, have, blob + have, k);
		assert_int_equal(
		    rdmig_msg_state_decode(buf, n, have, (uint32_t)total, &data, &k, &err), 0);
		memcpy(got + have, data, k);
		have += (uint32_t)k;
		chunks++;
	}
	assert_int_equal(chunks, 2);
	assert_memory_equal(got, blob, total);

	/* Out of order, past the end, empty, reserved bytes set: refused. */
	n = rdmig_msg_state_encode(buf, RDMIG_FINAL_INLINE, blob, 100);
	assert_true(rdmig_msg_state_decode(buf, n, RDMIG_FINAL_INLINE + 1, (uint32_t)total, &data,
					   &k, &err) < 0);
	assert_non_null(strstr(err.msg, "contiguous"));
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_state_decode(buf, n, RDMIG_FINAL_INLINE, RDMIG_FINAL_INLINE + 99,
					   &data, &k, &err) < 0);
	assert_non_null(strstr(err.msg, "overrun"));
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_state_decode(buf, RDMIG_STATE_FIXED, RDMIG_FINAL_INLINE,
					   (uint32_t)total, &data, &k, &err) < 0);
	rdmig_put_be32(buf + 4, 1);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_state_decode(buf, n, RDMIG_FINAL_INLINE, (uint32_t)total, &data, &k,
					   &err) < 0);
	assert_non_null(strstr(err.msg, "reserved"));
	/* FINAL must carry exactly the inline part of what it announces. */
	n = rdmig_msg_final_encode(buf, &f);
	assert_true(rdmig_msg_final_decode(buf, n - 1, &g, &err) < 0);
	free(buf);
	free(got);
	free(blob);
}

static void test_final_and_cancel(void **state)
{
	static const uint8_t blob[5] = {11, 0, 99, 0, 5};
	struct rdmig_msg_final f = {.rounds = 7,
				    .state_len = sizeof(blob),
				    .final_seq = 1ull << 63 | 7,
				    .state = blob},
			       g;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[512];
	char why[64];
	size_t n;
	int code;

	(void)state;
	n = rdmig_msg_final_encode(buf, &f);
	assert_int_equal(n, RDMIG_FINAL_FIXED + sizeof(blob));
	assert_int_equal(rdmig_msg_final_decode(buf, n, &g, &err), 0);
	assert_int_equal(g.rounds, 7);
	assert_int_equal(g.state_len, sizeof(blob));
	assert_memory_equal(g.state, blob, sizeof(blob));
	assert_int_equal(g.final_seq, f.final_seq);
	/* The announced length must be what follows: shorter, longer, too long. */
	assert_true(rdmig_msg_final_decode(buf, n - 1, &g, &err) < 0);
	assert_true(rdmig_msg_final_decode(buf, n + 1, &g, &err) < 0);
	rdmig_put_be32(buf + 4, RDMIG_VM_STATE_MAX + 1);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_final_decode(buf, n, &g, &err) < 0);
	assert_non_null(strstr(err.msg, "at most"));

	n = rdmig_msg_cancel_encode(buf, -EPIPE, "peer\ngone");
	assert_int_equal(rdmig_msg_cancel_decode(buf, n, &code, why, sizeof(why), &err), 0);
	assert_int_equal(code, -EPIPE);
	assert_string_equal(why, "peer?gone"); /* control characters neutralised */
	rdmig_put_be32(buf, 5);		       /* a positive "errno" from a peer */
	assert_int_equal(rdmig_msg_cancel_decode(buf, n, &code, why, sizeof(why), &err), 0);
	assert_int_equal(code, -ECANCELED);
}

/* Version 5: SETUP's post-copy flag travels; unknown flags are refused. */
static void test_setup_flags(void **state)
{
	struct rdmig_msg_setup s = good_setup(), out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	static uint8_t buf[RDMIG_SETUP_MAX_LEN];
	size_t n;

	(void)state;
	s.flags = RDMIG_SETUP_F_POSTCOPY;
	n = rdmig_msg_setup_encode(buf, &s);
	assert_int_equal(rdmig_msg_setup_decode(buf, n, 1ull << 30, &out, &err), 0);
	assert_int_equal(out.flags, RDMIG_SETUP_F_POSTCOPY);
	s.flags = 0x8;
	n = rdmig_msg_setup_encode(buf, &s);
	assert_true(rdmig_msg_setup_decode(buf, n, 1ull << 30, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "unknown flags 0x8"));
}

/* PC_DONE: figures round-trip; another migration's, a short one or nonsense figures are refused. */
static void test_pc_done(void **state)
{
	struct rdmig_msg_pc_done d = {.pages = 100,
				      .demand = 7,
				      .bytes = 409600,
				      .p50_us = 40,
				      .p99_us = 90,
				      .max_us = 300,
				      .recoveries = 1},
				 out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t id[RDMIG_MIG_ID_LEN] = {1, 2, 3}, other[RDMIG_MIG_ID_LEN] = {9};
	uint8_t buf[RDMIG_PC_DONE_LEN];
	size_t n;

	(void)state;
	n = rdmig_msg_pc_done_encode(buf, id, &d);
	assert_int_equal(n, RDMIG_PC_DONE_LEN);
	assert_int_equal(rdmig_msg_pc_done_decode(buf, n, id, &out, &err), 0);
	assert_int_equal(out.pages, 100);
	assert_int_equal(out.demand, 7);
	assert_int_equal(out.bytes, 409600);
	assert_int_equal(out.p99_us, 90);
	assert_int_equal(out.recoveries, 1);
	assert_true(rdmig_msg_pc_done_decode(buf, n, other, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "another migration"));
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_pc_done_decode(buf, n - 1, id, &out, &err) < 0);
	d.demand = 101;
	n = rdmig_msg_pc_done_encode(buf, id, &d);
	rdmig_err_clear(&err);
	assert_true(rdmig_msg_pc_done_decode(buf, n, id, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "inconsistent"));
}

/* --postcopy-after: auto, a round count, a time; anything else is named. */
static void test_postcopy_parse(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	enum rdmig_postcopy_mode m = RDMIG_POSTCOPY_OFF;
	unsigned rounds = 0;
	uint64_t ns = 0;

	(void)state;
	assert_int_equal(rdmig_postcopy_parse("auto", &m, &rounds, &ns, &err), 0);
	assert_int_equal(m, RDMIG_POSTCOPY_AUTO);
	assert_int_equal(rdmig_postcopy_parse("3", &m, &rounds, &ns, &err), 0);
	assert_int_equal(m, RDMIG_POSTCOPY_ROUNDS);
	assert_int_equal(rounds, 3);
	assert_int_equal(rdmig_postcopy_parse("1500ms", &m, &rounds, &ns, &err), 0);
	assert_int_equal(m, RDMIG_POSTCOPY_TIME);
	assert_int_equal(ns, 1500000000ull);
	assert_int_equal(rdmig_postcopy_parse("0", &m, &rounds, &ns, &err), 0);
	assert_int_equal(m, RDMIG_POSTCOPY_ROUNDS);
	assert_int_equal(rounds, 0);
	assert_true(rdmig_postcopy_parse("0s", &m, &rounds, &ns, &err) < 0);
	assert_non_null(strstr(err.msg, "expected auto, a number of rounds"));
	assert_true(rdmig_postcopy_parse("soon", &m, &rounds, &ns, &err) < 0);
	assert_true(rdmig_postcopy_parse("", &m, &rounds, &ns, &err) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_setup_round_trip),
	    cmocka_unit_test(test_setup_bad_fields),
	    cmocka_unit_test(test_manifest_bounds),
	    cmocka_unit_test(test_final_and_cancel),
	    cmocka_unit_test(test_setup_old_version),
	    cmocka_unit_test(test_guest_config),
	    cmocka_unit_test(test_final_state_chunks),
	    cmocka_unit_test(test_id_messages),
	    cmocka_unit_test(test_resolve),
	    cmocka_unit_test(test_manifest_full),
	    cmocka_unit_test(test_round_and_verified),
	    cmocka_unit_test(test_setup_flags),
	    cmocka_unit_test(test_pc_done),
	    cmocka_unit_test(test_postcopy_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
