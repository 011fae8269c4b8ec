/* SPDX-License-Identifier: MIT */
/* HELLO, the rdma_cm private data that carries it, and LAYOUT. */
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

static int hello_dec(const struct rdmig_wire_hello *in, struct rdmig_wire_hello *out,
		     struct rdmig_err *err)
{
	uint8_t buf[RDMIG_WIRE_HELLO_LEN], *p;
	int ret;

	rdmig_wire_hello_encode(buf, in);
	p = exact(buf, sizeof(buf));
	ret = rdmig_wire_hello_decode(p, sizeof(buf), out, err);
	free(p);
	return ret;
}

static void hello_reject(const struct rdmig_wire_hello *in, const char *what)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hello out;

	th_unit_fail(hello_dec(in, &out, &err), &err, -EPROTO, what);
}

static int layout_dec(const uint8_t *buf, size_t len, uint32_t max, uint32_t *n,
		      struct rdmig_err *err)
{
	struct rdmig_wire_region out[RDMIG_MAX_REGIONS];
	uint8_t *p = exact(buf, len);
	int ret = rdmig_wire_layout_decode(p, len, out, max, n, err);

	free(p);
	return ret;
}

/* Encode `n` good regions, let `edit` spoil entry bytes, expect rejection. */
static void layout_reject_raw(const uint8_t *buf, size_t len, uint32_t max, const char *what)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint32_t n = 12345;

	th_unit_fail(layout_dec(buf, len, max, &n, &err), &err, -EPROTO, what);
	assert_int_equal(n, 12345);
}

/* ---- HELLO ------------------------------------------------------------ */

static void test_hello_roundtrip(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hello in = good_hello(), out;

	(void)state;
	assert_int_equal(hello_dec(&in, &out, &err), 0);
	hello_equal(&in, &out);

	in.role = RDMIG_ROLE_ACCEPTOR;
	in.chan_index = RDMIG_CHAN_CTRL;
	in.nchan = RDMIG_MAX_CHANNELS;
	in.caps = 0xffffffffu; /* unknown capabilities are ignored, not refused */
	in.token = UINT64_MAX;
	assert_int_equal(hello_dec(&in, &out, &err), 0);
	hello_equal(&in, &out);

	in.nchan = 1;
	in.chan_index = 0;
	assert_int_equal(hello_dec(&in, &out, &err), 0);
	hello_equal(&in, &out);
}

/* rdma_cm private data: prefix with magic, version and type, then the HELLO. */
static void test_cm_pdata(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hello in = good_hello(), out;
	uint8_t buf[RDMIG_WIRE_CM_LEN + 8];

	(void)state;
	assert_int_equal(rdmig_wire_cm_encode(buf, RDMIG_MSG_HELLO, &in), 56);
	assert_int_equal(rdmig_wire_cm_decode(buf, 56, RDMIG_MSG_HELLO, &out, &err), 0);
	hello_equal(&in, &out);
	memset(buf + 56, 0, 8); /* padding after the HELLO is ignored */
	assert_int_equal(rdmig_wire_cm_decode(buf, 64, RDMIG_MSG_HELLO, &out, &err), 0);
	assert_true(rdmig_wire_cm_decode(buf, 55, RDMIG_MSG_HELLO, &out, &err) < 0);
	rdmig_err_clear(&err);
	assert_true(rdmig_wire_cm_decode(buf, 56, RDMIG_MSG_HELLO_ACK, &out, &err) < 0);
	rdmig_err_clear(&err);
	buf[4] = 9;
	assert_int_equal(rdmig_wire_cm_decode(buf, 56, RDMIG_MSG_HELLO, &out, &err),
			 -EPROTONOSUPPORT);
	assert_non_null(strstr(err.msg, "version 9, this side version 1"));
	rdmig_err_clear(&err);
	buf[4] = RDMIG_WIRE_VERSION;
	buf[0] ^= 0xff;
	assert_true(rdmig_wire_cm_decode(buf, 56, RDMIG_MSG_HELLO, &out, &err) < 0);
	assert_non_null(strstr(err.msg, "magic"));
	rdmig_err_clear(&err);
	buf[0] ^= 0xff;
	buf[7] = 1;
	assert_true(rdmig_wire_cm_decode(buf, 56, RDMIG_MSG_HELLO, &out, &err) < 0);
}

static void test_hello_golden_bytes(void **state)
{
	static const uint8_t want[RDMIG_WIRE_HELLO_LEN] = {
	    0x00, 0x00, 0x00, 0x03,			    /* caps */
	    0x00, 0x01,					    /* role */
	    0x00, 0x04,					    /* nchan */
	    0x00, 0x02,					    /* chan_index */
	    0x00, 0x00,					    /* reserved0 */
	    0x00, 0x01, 0x00, 0x00,			    /* max_ctrl */
	    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, /* token */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, /* stream_ring */
	    0x00, 0x00, 0xca, 0xfe,			    /* ring_rkey */
	    0x00, 0x00, 0x00, 0x00,			    /* reserved1 */
	    0x00, 0x00, 0x7f, 0x00, 0x12, 0x34, 0x50, 0x00, /* ring_addr */
	};
	struct rdmig_wire_hello h = good_hello();
	uint8_t buf[RDMIG_WIRE_HELLO_LEN];

	(void)state;
	assert_int_equal(rdmig_wire_hello_encode(buf, &h), RDMIG_WIRE_HELLO_LEN);
	assert_memory_equal(buf, want, sizeof(want));
}

static void test_hello_bad_length(void **state)
{
	struct rdmig_wire_hello h = good_hello();
	uint8_t buf[RDMIG_WIRE_HELLO_LEN + 1] = {0};

	(void)state;
	rdmig_wire_hello_encode(buf, &h);
	for (size_t len = 0; len <= sizeof(buf); len++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		struct rdmig_wire_hello out;
		uint8_t *p;

		if (len == RDMIG_WIRE_HELLO_LEN)
			continue;
		p = exact(buf, len);
		th_unit_fail(rdmig_wire_hello_decode(p, len, &out, &err), &err, -EPROTO,
			     "HELLO: payload length");
		free(p);
	}
}

static void test_hello_bad_role(void **state)
{
	struct rdmig_wire_hello h = good_hello();

	(void)state;
	h.role = 0;
	hello_reject(&h, "role 0");
	h.role = 3;
	hello_reject(&h, "role 3");
	h.role = 0xffff;
	hello_reject(&h, "role 65535");
}

static void test_hello_bad_nchan(void **state)
{
	struct rdmig_wire_hello h = good_hello();

	(void)state;
	h.chan_index = RDMIG_CHAN_CTRL;
	h.nchan = 0;
	hello_reject(&h, "channel count 0");
	h.nchan = RDMIG_MAX_CHANNELS + 1;
	hello_reject(&h, "channel count 65");
	h.nchan = 0xffff;
	hello_reject(&h, "channel count 65535");
}

static void test_hello_bad_chan_index(void **state)
{
	struct rdmig_wire_hello h = good_hello();

	(void)state;
	h.nchan = 4;
	h.chan_index = 4;
	hello_reject(&h, "channel index 4");
	h.chan_index = 0xfffe;
	hello_reject(&h, "channel index 65534");
}

static void test_hello_reserved0(void **state)
{
	struct rdmig_wire_hello h = good_hello();

	(void)state;
	h.reserved0 = 1;
	hello_reject(&h, "reserved0 is 0x0001");
}

static void test_hello_reserved1(void **state)
{
	struct rdmig_wire_hello h = good_hello();

	(void)state;
	h.reserved1 = 0x80000000u;
	hello_reject(&h, "reserved1 is 0x80000000");
}

/* ---- rdma_cm private data --------------------------------------------- */

static void test_pdata_roundtrip(void **state)
{
	struct rdmig_wire_hello in = good_hello(), out;
	uint8_t buf[196] = {0}, *p;
	uint8_t type = 0;

	(void)state;
	assert_int_equal(rdmig_wire_pdata_encode(buf, RDMIG_MSG_HELLO_ACK, &in),
			 RDMIG_WIRE_PDATA_LEN);
	assert_int_equal(RDMIG_WIRE_PDATA_LEN, 64);
	/* Exact, and longer with zero padding. */
	for (size_t len = RDMIG_WIRE_PDATA_LEN; len <= sizeof(buf); len += 132) {
		struct rdmig_err err = RDMIG_ERR_INIT;

		p = exact(buf, len);
		assert_int_equal(rdmig_wire_pdata_decode(p, len, &type, &out, &err), 0);
		free(p);
		assert_int_equal(type, RDMIG_MSG_HELLO_ACK);
		hello_equal(&in, &out);
	}
}

static void test_pdata_truncated(void **state)
{
	struct rdmig_wire_hello in = good_hello(), out;
	uint8_t buf[RDMIG_WIRE_PDATA_LEN], type;

	(void)state;
	rdmig_wire_pdata_encode(buf, RDMIG_MSG_HELLO, &in);
	for (size_t len = 0; len < sizeof(buf); len++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		uint8_t *p = exact(buf, len);

		th_unit_fail(rdmig_wire_pdata_decode(p, len, &type, &out, &err), &err, -EPROTO,
			     "truncated");
		free(p);
	}
}

static void test_pdata_bad_version(void **state)
{
	struct rdmig_wire_hello in = good_hello(), out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[RDMIG_WIRE_PDATA_LEN], type;

	(void)state;
	rdmig_wire_pdata_encode(buf, RDMIG_MSG_HELLO, &in);
	buf[4] = 7;
	th_unit_fail(rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &out, &err), &err,
		     -EPROTONOSUPPORT, "version 7");
	assert_non_null(strstr(err.msg, "version 1"));
}

static void pdata_reject(size_t at, uint8_t val, int code, const char *what)
{
	struct rdmig_wire_hello in = good_hello(), out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[RDMIG_WIRE_PDATA_LEN + 8] = {0}, type = 0;

	rdmig_wire_pdata_encode(buf, RDMIG_MSG_HELLO, &in);
	buf[at] = val;
	th_unit_fail(rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &out, &err), &err, code,
		     what);
	assert_int_equal(type, 0);
}

static void test_pdata_bad_magic(void **state)
{
	(void)state;
	pdata_reject(0, 0x53, -EPROTO, "bad magic 0x53444d47");
}

static void test_pdata_not_hello(void **state)
{
	struct rdmig_wire_hello in = good_hello(), out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[RDMIG_WIRE_PDATA_LEN], type;

	(void)state;
	/* A 48-byte KEEPALIVE is refused by the header check already. */
	pdata_reject(5, RDMIG_MSG_KEEPALIVE, -EMSGSIZE, "KEEPALIVE: payload length 48");
	/* A header that is valid on its own but not a HELLO. */
	rdmig_wire_pdata_encode(buf, RDMIG_MSG_HELLO, &in);
	frame(buf, RDMIG_MSG_AUTH, RDMIG_CHAN_CTRL, 0, RDMIG_WIRE_HELLO_LEN);
	th_unit_fail(rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &out, &err), &err, -EPROTO,
		     "frame carries AUTH");
}

static void test_pdata_nonzero_padding(void **state)
{
	(void)state;
	pdata_reject(RDMIG_WIRE_PDATA_LEN + 7, 0x42, -EPROTO, "byte 71 past the frame is 0x42");
}

static void test_pdata_chan_mismatch(void **state)
{
	(void)state;
	/* Header channel 3 (big-endian at offset 12), HELLO says 2. */
	pdata_reject(13, 3, -EPROTO, "header channel 3 disagrees with channel index 2");
}

static void test_pdata_bad_hello(void **state)
{
	struct rdmig_wire_hello in = good_hello(), out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[RDMIG_WIRE_PDATA_LEN], type;

	(void)state;
	in.reserved1 = 9;
	rdmig_wire_pdata_encode(buf, RDMIG_MSG_HELLO, &in);
	th_unit_fail(rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &out, &err), &err, -EPROTO,
		     "reserved1");
}

/* ---- LAYOUT ----------------------------------------------------------- */

static void test_layout_roundtrip(void **state)
{
	static const uint32_t counts[] = {0, 1, 3, RDMIG_MAX_REGIONS};
	struct rdmig_wire_region in[RDMIG_MAX_REGIONS], out[RDMIG_MAX_REGIONS];
	uint8_t buf[LAYOUT_BUF];

	(void)state;
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		uint32_t n = 9999;
		size_t len;
		uint8_t *p;

		good_regions(in, counts[k]);
		len = rdmig_wire_layout_encode(buf, in, counts[k]);
		assert_int_equal(len, 4 + counts[k] * RDMIG_WIRE_LAYOUT_ENTRY_LEN);
		p = exact(buf, len);
		assert_int_equal(rdmig_wire_layout_decode(p, len, out, RDMIG_MAX_REGIONS, &n, &err),
				 0);
		free(p);
		assert_int_equal(n, counts[k]);
		for (uint32_t i = 0; i < n; i++) {
			assert_int_equal(out[i].id, in[i].id);
			assert_int_equal(out[i].flags, in[i].flags);
			assert_int_equal(out[i].len, in[i].len);
			assert_int_equal(out[i].addr, in[i].addr);
			assert_int_equal(out[i].rkey, in[i].rkey);
			assert_string_equal(out[i].name, in[i].name);
		}
	}
}

static void test_layout_golden_bytes(void **state)
{
	struct rdmig_wire_region r;
	uint8_t buf[4 + RDMIG_WIRE_LAYOUT_ENTRY_LEN], want[sizeof(buf)];

	(void)state;
	memset(&r, 0, sizeof(r));
	r.id = 2;
	r.flags = RDMIG_REG_REMOTE_WRITE;
	r.len = 0x100000;
	r.addr = 0x7f1122334400ULL;
	r.rkey = 0xabcdef;
	strcpy(r.name, "pc.ram");
	memset(want, 0, sizeof(want));
	memcpy(want,
	       "\0\0\0\1"
	       "\0\0\0\2"
	       "\0\0\0\1"
	       "\0\0\0\0\0\x10\0\0"
	       "\0\0\x7f\x11\x22\x33\x44\0"
	       "\0\0\0\0\0\xab\xcd\xef"
	       "pc.ram",
	       4 + 4 + 4 + 8 + 8 + 8 + 6);
	assert_int_equal(rdmig_wire_layout_encode(buf, &r, 1), sizeof(buf));
	assert_memory_equal(buf, want, sizeof(want));
}

static void test_layout_encode_truncates_name(void **state)
{
	struct rdmig_wire_region in, out;
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t buf[4 + RDMIG_WIRE_LAYOUT_ENTRY_LEN];
	uint32_t n;

	(void)state;
	good_regions(&in, 1);
	memset(in.name, 'x', sizeof(in.name)); /* no NUL at all */
	rdmig_wire_layout_encode(buf, &in, 1);
	assert_int_equal(rdmig_wire_layout_decode(buf, sizeof(buf), &out, 1, &n, &err), 0);
	assert_int_equal(strlen(out.name), RDMIG_REGION_NAME_MAX - 1);
}

static void test_layout_truncated(void **state)
{
	struct rdmig_wire_region in[3];
	uint8_t buf[LAYOUT_BUF];
	size_t full;

	(void)state;
	good_regions(in, 3);
	full = rdmig_wire_layout_encode(buf, in, 3);
	for (size_t len = 0; len < full; len++)
		layout_reject_raw(buf, len, RDMIG_MAX_REGIONS,
				  len < 4 ? "truncated" : "disagrees with payload length");
}

static void test_layout_count_above_limit(void **state)
{
	uint8_t *buf = calloc(1, 4 + 65 * RDMIG_WIRE_LAYOUT_ENTRY_LEN);

	(void)state;
	assert_non_null(buf);
	rdmig_put_be32(buf, 65);
	layout_reject_raw(buf, 4 + 65 * RDMIG_WIRE_LAYOUT_ENTRY_LEN, UINT32_MAX,
			  "region count 65 above 64");
	rdmig_put_be32(buf, UINT32_MAX);
	layout_reject_raw(buf, 4, UINT32_MAX, "region count 4294967295");
	free(buf);
}

static void test_layout_count_above_max(void **state)
{
	struct rdmig_wire_region in[5];
	uint8_t buf[LAYOUT_BUF];
	size_t len;

	(void)state;
	good_regions(in, 5);
	len = rdmig_wire_layout_encode(buf, in, 5);
	layout_reject_raw(buf, len, 4, "the 4 this side accepts");
}

static void test_layout_count_length_disagree(void **state)
{
	struct rdmig_wire_region in[2];
	uint8_t buf[LAYOUT_BUF];
	size_t len;

	(void)state;
	good_regions(in, 2);
	len = rdmig_wire_layout_encode(buf, in, 2);
	rdmig_put_be32(buf, 1); /* says 1, carries 2 */
	layout_reject_raw(buf, len, RDMIG_MAX_REGIONS, "region count 1 disagrees");
	rdmig_put_be32(buf, 3); /* says 3, carries 2 */
	layout_reject_raw(buf, len, RDMIG_MAX_REGIONS, "region count 3 disagrees");
	rdmig_put_be32(buf, 0);
	layout_reject_raw(buf, len, RDMIG_MAX_REGIONS, "region count 0 disagrees");
}

static void test_layout_duplicate_ids(void **state)
{
	struct rdmig_wire_region in[4];
	uint8_t buf[LAYOUT_BUF];
	size_t len;

	(void)state;
	good_regions(in, 4);
	in[3].id = in[1].id;
	len = rdmig_wire_layout_encode(buf, in, 4);
	layout_reject_raw(buf, len, RDMIG_MAX_REGIONS, "region id 4 appears twice");
}

static void test_layout_unterminated_name(void **state)
{
	struct rdmig_wire_region in[2];
	uint8_t buf[LAYOUT_BUF];
	size_t len;

	(void)state;
	good_regions(in, 2);
	len = rdmig_wire_layout_encode(buf, in, 2);
	memset(buf + 4 + RDMIG_WIRE_LAYOUT_ENTRY_LEN + 32, 'A', RDMIG_REGION_NAME_MAX);
	layout_reject_raw(buf, len, RDMIG_MAX_REGIONS, "region 4 name not NUL-terminated");
}

static void test_layout_zero_len(void **state)
{
	struct rdmig_wire_region in[2];
	uint8_t buf[LAYOUT_BUF];
	size_t len;

	(void)state;
	good_regions(in, 2);
	in[1].len = 0;
	len = rdmig_wire_layout_encode(buf, in, 2);
	layout_reject_raw(buf, len, RDMIG_MAX_REGIONS, "region 4 length 0");
}

static void test_layout_unknown_flags(void **state)
{
	struct rdmig_wire_region in[1];
	uint8_t buf[LAYOUT_BUF];
	size_t len;

	(void)state;
	good_regions(in, 1);
	in[0].flags = 0x80000001u;
	len = rdmig_wire_layout_encode(buf, in, 1);
	layout_reject_raw(buf, len, RDMIG_MAX_REGIONS, "unknown flags 0x80000000");
}

static void test_layout_addr_overflow(void **state)
{
	struct rdmig_wire_region in[1];
	uint8_t buf[LAYOUT_BUF];
	size_t len;

	(void)state;
	good_regions(in, 1);
	in[0].addr = UINT64_MAX - 4095;
	in[0].len = 4097;
	len = rdmig_wire_layout_encode(buf, in, 1);
	layout_reject_raw(buf, len, RDMIG_MAX_REGIONS, "overflows");
}

int wire_hello_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hello_roundtrip),
	    cmocka_unit_test(test_cm_pdata),
	    cmocka_unit_test(test_hello_golden_bytes),
	    cmocka_unit_test(test_hello_bad_length),
	    cmocka_unit_test(test_hello_bad_role),
	    cmocka_unit_test(test_hello_bad_nchan),
	    cmocka_unit_test(test_hello_bad_chan_index),
	    cmocka_unit_test(test_hello_reserved0),
	    cmocka_unit_test(test_hello_reserved1),
	    cmocka_unit_test(test_pdata_roundtrip),
	    cmocka_unit_test(test_pdata_truncated),
	    cmocka_unit_test(test_pdata_bad_version),
	    cmocka_unit_test(test_pdata_bad_magic),
	    cmocka_unit_test(test_pdata_not_hello),
	    cmocka_unit_test(test_pdata_nonzero_padding),
	    cmocka_unit_test(test_pdata_chan_mismatch),
	    cmocka_unit_test(test_pdata_bad_hello),
	    cmocka_unit_test(test_layout_roundtrip),
	    cmocka_unit_test(test_layout_golden_bytes),
	    cmocka_unit_test(test_layout_encode_truncates_name),
	    cmocka_unit_test(test_layout_truncated),
	    cmocka_unit_test(test_layout_count_above_limit),
	    cmocka_unit_test(test_layout_count_above_max),
	    cmocka_unit_test(test_layout_count_length_disagree),
	    cmocka_unit_test(test_layout_duplicate_ids),
	    cmocka_unit_test(test_layout_unterminated_name),
	    cmocka_unit_test(test_layout_zero_len),
	    cmocka_unit_test(test_layout_unknown_flags),
	    cmocka_unit_test(test_layout_addr_overflow),
	};

	return cmocka_run_group_tests_name("wire hello", tests, NULL, NULL);
}
