/* SPDX-License-Identifier: MIT */
/* WRITE (decoding and the bounds check against the layout), FENCE, CREDIT, ERROR, RINGS. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_wire.h"

/* ---- WRITE ------------------------------------------------------------ */

static const uint64_t reg_len[3] = {1 << 20, 4096, 0};
static const uint8_t reg_wr[3] = {1, 0, 1};

static void write_reject(uint32_t region, uint32_t len, uint64_t offset, int code, const char *what)
{
	struct rdmig_wire_write w = {.region = region, .len = len, .offset = offset};
	struct rdmig_err err = RDMIG_ERR_INIT;

	th_unit_fail(rdmig_wire_write_check(&w, reg_len, reg_wr, 3, &err), &err, code, what);
}

static void test_write_roundtrip(void **state)
{
	struct rdmig_wire_write in = {.region = 7, .len = 4096, .offset = 0x123456789000ULL};
	struct rdmig_wire_write out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	static const uint8_t want[RDMIG_WIRE_WRITE_LEN] = {0, 0, 0,    7,    0,	   0,	 0x10, 0,
							   0, 0, 0x12, 0x34, 0x56, 0x78, 0x90, 0};
	uint8_t buf[RDMIG_WIRE_WRITE_LEN + 4096] = {0}, *p;

	(void)state;
	assert_int_equal(rdmig_wire_write_encode(buf, &in), RDMIG_WIRE_WRITE_LEN);
	assert_memory_equal(buf, want, sizeof(want));
	/* Prefix alone. */
	p = exact(buf, RDMIG_WIRE_WRITE_LEN);
	assert_int_equal(rdmig_wire_write_decode(p, RDMIG_WIRE_WRITE_LEN, &out, &err), 0);
	free(p);
	assert_int_equal(out.region, in.region);
	assert_int_equal(out.len, in.len);
	assert_int_equal(out.offset, in.offset);
	/* Prefix and data. */
	p = exact(buf, sizeof(buf));
	assert_int_equal(rdmig_wire_write_decode(p, sizeof(buf), &out, &err), 0);
	free(p);
	assert_int_equal(out.len, 4096);
}

static void test_write_truncated(void **state)
{
	struct rdmig_wire_write in = {.region = 0, .len = 0, .offset = 0}, out;
	uint8_t buf[RDMIG_WIRE_WRITE_LEN];

	(void)state;
	rdmig_wire_write_encode(buf, &in);
	for (size_t len = 0; len < RDMIG_WIRE_WRITE_LEN; len++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		uint8_t *p = exact(buf, len);

		th_unit_fail(rdmig_wire_write_decode(p, len, &out, &err), &err, -EPROTO,
			     "truncated");
		free(p);
	}
}

static void test_write_len_disagrees(void **state)
{
	struct rdmig_wire_write in = {.region = 0, .len = 4096, .offset = 0}, out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[RDMIG_WIRE_WRITE_LEN + 4097] = {0};

	(void)state;
	rdmig_wire_write_encode(buf, &in);
	th_unit_fail(rdmig_wire_write_decode(buf, RDMIG_WIRE_WRITE_LEN + 4095, &out, &err), &err,
		     -EPROTO, "length 4096 disagrees with 4095");
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_wire_write_decode(buf, sizeof(buf), &out, &err), &err, -EPROTO,
		     "length 4096 disagrees with 4097");
}

static void test_write_check_ok(void **state)
{
	struct rdmig_wire_write w = {.region = 0, .len = 4096, .offset = 0};
	struct rdmig_err err = RDMIG_ERR_INIT;

	(void)state;
	assert_int_equal(rdmig_wire_write_check(&w, reg_len, reg_wr, 3, &err), 0);
	w.offset = (1 << 20) - 4096; /* ends exactly at the region's end */
	assert_int_equal(rdmig_wire_write_check(&w, reg_len, reg_wr, 3, &err), 0);
	w.offset = 0;
	w.len = 1 << 20;
	assert_int_equal(rdmig_wire_write_check(&w, reg_len, reg_wr, 3, &err), 0);
}

static void test_write_check_unknown_region(void **state)
{
	(void)state;
	write_reject(3, 4096, 0, -EPROTO, "unknown region 3");
	write_reject(UINT32_MAX, 4096, 0, -EPROTO, "unknown region 4294967295");
}

static void test_write_check_not_writable(void **state)
{
	(void)state;
	write_reject(1, 4096, 0, -EPROTO, "region 1 is not writable");
}

static void test_write_check_zero_len(void **state)
{
	(void)state;
	write_reject(0, 0, 0, -EPROTO, "length 0");
}

static void test_write_check_too_long(void **state)
{
	static const uint64_t big[1] = {UINT64_MAX};
	static const uint8_t wr[1] = {1};
	struct rdmig_wire_write w = {.region = 0, .len = RDMIG_WIRE_MAX_DATA + 1, .offset = 0};
	struct rdmig_err err = RDMIG_ERR_INIT;

	(void)state;
	th_unit_fail(rdmig_wire_write_check(&w, big, wr, 1, &err), &err, -EMSGSIZE,
		     "length 16777217 exceeds");
	rdmig_err_clear(&err);
	w.len = RDMIG_WIRE_MAX_DATA;
	assert_int_equal(rdmig_wire_write_check(&w, big, wr, 1, &err), 0);
}

static void test_write_check_overflow(void **state)
{
	static const uint64_t big[1] = {UINT64_MAX};
	static const uint8_t wr[1] = {1};
	struct rdmig_wire_write w = {.region = 0, .len = 4096, .offset = UINT64_MAX - 10};
	struct rdmig_err err = RDMIG_ERR_INIT;

	(void)state;
	write_reject(0, 4096, UINT64_MAX - 10, -EPROTO,
		     "offset 0xfffffffffffffff5 + length 4096 beyond region 0 (length 1048576)");
	/* Even against a region of 2^64 - 1 bytes the sum must not wrap. */
	th_unit_fail(rdmig_wire_write_check(&w, big, wr, 1, &err), &err, -EPROTO, "beyond");
}

static void test_write_check_past_end(void **state)
{
	(void)state;
	write_reject(0, 4096, (1 << 20) - 4095, -EPROTO, "beyond region 0");
	write_reject(0, 1, 1 << 20, -EPROTO, "beyond region 0");
	write_reject(0, 1, (1 << 20) + 1, -EPROTO, "beyond region 0");
	write_reject(0, (1 << 20) + 1, 0, -EPROTO, "beyond region 0");
	write_reject(2, 1, 0, -EPROTO, "beyond region 2 (length 0)");
}

/* ---- FENCE, CREDIT, ERROR --------------------------------------------- */

static void test_fence_roundtrip(void **state)
{
	struct rdmig_fence in = {.seq = 42, .bytes = 0x1122334455667788ULL, .writes = UINT64_MAX};
	struct rdmig_fence out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[RDMIG_WIRE_FENCE_LEN], *p;

	(void)state;
	assert_int_equal(rdmig_wire_fence_encode(buf, &in), RDMIG_WIRE_FENCE_LEN);
	assert_int_equal(buf[7], 42);
	assert_int_equal(buf[8], 0x11);
	p = exact(buf, sizeof(buf));
	assert_int_equal(rdmig_wire_fence_decode(p, sizeof(buf), &out, &err), 0);
	free(p);
	assert_int_equal(out.seq, in.seq);
	assert_int_equal(out.bytes, in.bytes);
	assert_int_equal(out.writes, in.writes);
}

static void test_fence_bad_length(void **state)
{
	uint8_t buf[RDMIG_WIRE_FENCE_LEN + 1] = {0};

	(void)state;
	for (size_t len = 0; len <= sizeof(buf); len++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		struct rdmig_fence out;
		uint8_t *p;

		if (len == RDMIG_WIRE_FENCE_LEN)
			continue;
		p = exact(buf, len);
		th_unit_fail(rdmig_wire_fence_decode(p, len, &out, &err), &err, -EPROTO,
			     "FENCE: payload length");
		free(p);
	}
}

static void test_credit_roundtrip(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[RDMIG_WIRE_CREDIT_LEN], *p;
	uint64_t v = 0;

	(void)state;
	assert_int_equal(rdmig_wire_credit_encode(buf, 0x0102030405060708ULL),
			 RDMIG_WIRE_CREDIT_LEN);
	assert_int_equal(buf[0], 1);
	assert_int_equal(buf[7], 8);
	p = exact(buf, sizeof(buf));
	assert_int_equal(rdmig_wire_credit_decode(p, sizeof(buf), &v, &err), 0);
	free(p);
	assert_int_equal(v, 0x0102030405060708ULL);
}

static void test_credit_bad_length(void **state)
{
	uint8_t buf[RDMIG_WIRE_CREDIT_LEN + 1] = {0};

	(void)state;
	for (size_t len = 0; len <= sizeof(buf); len++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		uint64_t v;
		uint8_t *p;

		if (len == RDMIG_WIRE_CREDIT_LEN)
			continue;
		p = exact(buf, len);
		th_unit_fail(rdmig_wire_credit_decode(p, len, &v, &err), &err, -EPROTO,
			     "CREDIT: payload length");
		free(p);
	}
}

static void test_error_roundtrip(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *text = "region 3: out of memory";
	uint8_t buf[64], *p;
	char msg[64];
	size_t len;
	int code = 0;

	(void)state;
	len = rdmig_wire_error_encode(buf, sizeof(buf), -ENOMEM, text);
	assert_int_equal(len, 4 + strlen(text));
	assert_int_equal(buf[0], 0xff);
	p = exact(buf, len);
	assert_int_equal(rdmig_wire_error_decode(p, len, &code, msg, sizeof(msg), &err), 0);
	free(p);
	assert_int_equal(code, -ENOMEM);
	assert_string_equal(msg, text);

	/* No message at all, and a NULL message buffer. */
	len = rdmig_wire_error_encode(buf, sizeof(buf), -EIO, NULL);
	assert_int_equal(len, 4);
	assert_int_equal(rdmig_wire_error_decode(buf, len, &code, msg, sizeof(msg), &err), 0);
	assert_int_equal(code, -EIO);
	assert_string_equal(msg, "");
	assert_int_equal(rdmig_wire_error_decode(buf, len, &code, NULL, 0, &err), 0);
}

static void test_error_encode_cap(void **state)
{
	uint8_t buf[8];

	(void)state;
	assert_int_equal(rdmig_wire_error_encode(buf, 3, -EIO, "x"), 0);
	assert_int_equal(rdmig_wire_error_encode(buf, 4, -EIO, "hello"), 4);
	assert_int_equal(rdmig_wire_error_encode(buf, 8, -EIO, "hello"), 8);
	assert_memory_equal(buf + 4, "hell", 4);
}

static void test_error_truncated(void **state)
{
	uint8_t buf[4];

	(void)state;
	rdmig_wire_error_encode(buf, sizeof(buf), -EIO, NULL);
	for (size_t len = 0; len < 4; len++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		uint8_t *p = exact(buf, len);
		char msg[8];
		int code;

		th_unit_fail(rdmig_wire_error_decode(p, len, &code, msg, sizeof(msg), &err), &err,
			     -EPROTO, "truncated");
		free(p);
	}
}

static void test_error_bad_code(void **state)
{
	static const int32_t bad[] = {0, 1, 4095, -4096, INT32_MIN, INT32_MAX};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		uint8_t buf[4];
		char what[32], msg[8];
		int code;

		rdmig_put_be32(buf, (uint32_t)bad[i]);
		snprintf(what, sizeof(what), "code %" PRId32, bad[i]);
		th_unit_fail(rdmig_wire_error_decode(buf, 4, &code, msg, sizeof(msg), &err), &err,
			     -EPROTO, what);
	}
}

/* ---- RINGS ------------------------------------------------------------ */

static size_t rings_buf(uint8_t *buf, uint32_t n)
{
	struct rdmig_wire_ring r[3];

	for (uint32_t i = 0; i < 3; i++)
		r[i] = (struct rdmig_wire_ring){.size = 1u << (12 + i),
						.addr = 0x7f0000000000ULL + (i << 20),
						.rkey = 0x100 + i};
	return rdmig_wire_rings_encode(buf, r, n);
}

static void rings_reject(uint8_t *buf, size_t len, uint32_t want, const char *what)
{
	struct rdmig_wire_ring out[3];
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t *p = exact(buf, len);

	th_unit_fail(rdmig_wire_rings_decode(p, len, out, want, &err), &err, -EPROTO, what);
	free(p);
}

static void test_rings_roundtrip(void **state)
{
	static const uint8_t want[4 + 24] = {
	    0, 0, 0,	1,		  /* count */
	    0, 0, 0,	0, 0, 0, 0x10, 0, /* size 4096 */
	    0, 0, 0x7f, 0, 0, 0, 0,    0, /* addr */
	    0, 0, 1,	0,		  /* rkey 0x100 */
	    0, 0, 0,	0,		  /* reserved */
	};
	struct rdmig_wire_ring out[3];
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[4 + 3 * RDMIG_WIRE_RING_LEN], *p;
	size_t n;

	(void)state;
	assert_int_equal(rings_buf(buf, 1), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	n = rings_buf(buf, 3);
	assert_int_equal(n, sizeof(buf));
	p = exact(buf, n);
	assert_int_equal(rdmig_wire_rings_decode(p, n, out, 3, &err), 0);
	free(p);
	assert_int_equal(out[2].size, 1u << 14);
	assert_int_equal(out[2].addr, 0x7f0000200000ULL);
	assert_int_equal(out[2].rkey, 0x102);
}

static void test_rings_rules(void **state)
{
	uint8_t buf[4 + 3 * RDMIG_WIRE_RING_LEN];
	size_t n;

	(void)state;
	n = rings_buf(buf, 2);
	rings_reject(buf, n, 3, "2 rings for a connection of 3 data channels");
	rings_reject(buf, n - 1, 2, "disagrees with payload length");
	rings_reject(buf, 3, 2, "truncated");
	rdmig_put_be64(buf + 4, 4096 + 1);
	rings_reject(buf, n, 2, "not a power of two");
	rdmig_put_be64(buf + 4, 2048);
	rings_reject(buf, n, 2, "2048 bytes, not a power of two in 4 KiB..1 GiB");
	rdmig_put_be64(buf + 4, 2ULL << 30);
	rings_reject(buf, n, 2, "in 4 KiB..1 GiB");
	n = rings_buf(buf, 2);
	rdmig_put_be32(buf + 4 + 24 + 16, 0);
	rings_reject(buf, n, 2, "without an address or a key");
	n = rings_buf(buf, 2);
	rdmig_put_be64(buf + 4 + 8, 0);
	rings_reject(buf, n, 2, "without an address or a key");
	rdmig_put_be64(buf + 4 + 8, UINT64_MAX - 100);
	rings_reject(buf, n, 2, "overflows");
	n = rings_buf(buf, 2);
	buf[4 + 24 + 23] = 1;
	rings_reject(buf, n, 2, "reserved bytes");
}

static void test_error_message_sanitized(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[32];
	char msg[8];
	int code;

	(void)state;
	rdmig_put_be32(buf, (uint32_t)-EPERM);
	memcpy(buf + 4,
	       "a\x1b[2J\0\xff"
	       "bcdefgh",
	       13);
	assert_int_equal(rdmig_wire_error_decode(buf, 4 + 13, &code, msg, sizeof(msg), &err), 0);
	assert_string_equal(msg, "a?[2J??"); /* control bytes replaced, cut to 7 */
}

int wire_msgs_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_roundtrip),
	    cmocka_unit_test(test_write_truncated),
	    cmocka_unit_test(test_write_len_disagrees),
	    cmocka_unit_test(test_write_check_ok),
	    cmocka_unit_test(test_write_check_unknown_region),
	    cmocka_unit_test(test_write_check_not_writable),
	    cmocka_unit_test(test_write_check_zero_len),
	    cmocka_unit_test(test_write_check_too_long),
	    cmocka_unit_test(test_write_check_overflow),
	    cmocka_unit_test(test_write_check_past_end),
	    cmocka_unit_test(test_fence_roundtrip),
	    cmocka_unit_test(test_fence_bad_length),
	    cmocka_unit_test(test_credit_roundtrip),
	    cmocka_unit_test(test_credit_bad_length),
	    cmocka_unit_test(test_error_roundtrip),
	    cmocka_unit_test(test_error_encode_cap),
	    cmocka_unit_test(test_error_truncated),
	    cmocka_unit_test(test_error_bad_code),
	    cmocka_unit_test(test_error_message_sanitized),
	    cmocka_unit_test(test_rings_roundtrip),
	    cmocka_unit_test(test_rings_rules),
	};

	return cmocka_run_group_tests_name("wire msgs", tests, NULL, NULL);
}
