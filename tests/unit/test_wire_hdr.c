/* SPDX-License-Identifier: MIT */
/* The frame header: round trips, golden bytes, one test per validation rule. */
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
#include <zstd.h>

#include "test_wire.h"

/* Decode a header built from these fields; expect failure naming `what`. */
static void hdr_reject(uint8_t type, uint16_t chan, uint16_t app_type, uint32_t length,
		       uint32_t max_ctrl, int code, const char *what)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	frame(buf, type, chan, app_type, length);
	th_unit_fail(hdr_dec(buf, max_ctrl, &h, &err), &err, code, what);
}

static void hdr_accept(uint8_t type, uint16_t chan, uint16_t app_type, uint32_t length,
		       uint32_t max_ctrl)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	frame(buf, type, chan, app_type, length);
	if (hdr_dec(buf, max_ctrl, &h, &err))
		fail_msg("type %u chan %u app %u length %u rejected: %s", type, chan, app_type,
			 length, err.msg);
	assert_int_equal(h.magic, RDMIG_WIRE_MAGIC);
	assert_int_equal(h.version, RDMIG_WIRE_VERSION);
	assert_int_equal(h.type, type);
	assert_int_equal(h.flags, 0);
	assert_int_equal(h.length, length);
	assert_int_equal(h.chan, chan);
	assert_int_equal(h.app_type, app_type);
}

/* ---- header ----------------------------------------------------------- */

static void test_hdr_roundtrip(void **state)
{
	(void)state;
	hdr_accept(RDMIG_MSG_HELLO, RDMIG_CHAN_CTRL, 0, RDMIG_WIRE_HELLO_LEN,
		   RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_HELLO, 3, 0, RDMIG_WIRE_HELLO_LEN, 0);
	hdr_accept(RDMIG_MSG_HELLO_ACK, 0, 0, RDMIG_WIRE_HELLO_LEN, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_AUTH, RDMIG_CHAN_CTRL, 0, 0, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_AUTH, RDMIG_CHAN_CTRL, 0, RDMIG_CTRL_MAX_PAYLOAD,
		   RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, 4, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, 4 + 64 * 64, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 0x7fff, 100, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 0, 0, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_ERROR, RDMIG_CHAN_CTRL, 0, 4, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_ERROR, 5, 0, 100, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_BYE, RDMIG_CHAN_CTRL, 0, 0, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_KEEPALIVE, 63, 0, 0, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_WRITE, 0, 0, RDMIG_WIRE_WRITE_LEN + 4096, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_WRITE, 63, 0, RDMIG_WIRE_WRITE_LEN + RDMIG_WIRE_MAX_DATA, 0);
	hdr_accept(RDMIG_MSG_FENCE, 1, 0, RDMIG_WIRE_FENCE_LEN, RDMIG_CTRL_MAX_PAYLOAD);
	hdr_accept(RDMIG_MSG_STREAM_DATA, 7, 0, 1, 0);
	hdr_accept(RDMIG_MSG_STREAM_DATA, 7, 0, RDMIG_WIRE_MAX_DATA, 0);
	hdr_accept(RDMIG_MSG_STREAM_EOF, 7, 0, 0, 0);
	hdr_accept(RDMIG_MSG_CREDIT, 0, 0, RDMIG_WIRE_CREDIT_LEN, 0);
}

static void test_hdr_golden_bytes(void **state)
{
	static const uint8_t want[RDMIG_WIRE_HDR_LEN] = {0x52, 0x44, 0x4d, 0x47, 0x01, 0x05,
							 0x00, 0x00, 0x00, 0x01, 0x02, 0x03,
							 0xff, 0xff, 0x12, 0x34};
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	(void)state;
	assert_int_equal(frame(buf, RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 0x1234, 0x10203),
			 RDMIG_WIRE_HDR_LEN);
	assert_memory_equal(buf, want, sizeof(want));
}

static void test_hdr_truncated(void **state)
{
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	(void)state;
	frame(buf, RDMIG_MSG_BYE, RDMIG_CHAN_CTRL, 0, 0);
	for (size_t len = 0; len < RDMIG_WIRE_HDR_LEN; len++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		struct rdmig_wire_hdr h;
		uint8_t *p = exact(buf, len);

		th_unit_fail(rdmig_wire_hdr_decode(p, len, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err,
			     -EPROTO, "truncated");
		free(p);
	}
}

static void test_hdr_bad_magic(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	(void)state;
	frame(buf, RDMIG_MSG_BYE, RDMIG_CHAN_CTRL, 0, 0);
	memcpy(buf, "GET ", 4);
	th_unit_fail(hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err, -EPROTO,
		     "magic 0x47455420");
}

static void test_hdr_bad_version(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	(void)state;
	frame(buf, RDMIG_MSG_HELLO, RDMIG_CHAN_CTRL, 0, RDMIG_WIRE_HELLO_LEN);
	buf[4] = 2;
	th_unit_fail(hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err, -EPROTONOSUPPORT,
		     "version 2");
	assert_non_null(strstr(err.msg, "version 1"));
	rdmig_err_clear(&err);
	buf[4] = 0;
	th_unit_fail(hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err, -EPROTONOSUPPORT,
		     "version 0");
}

static void test_hdr_unknown_type(void **state)
{
	static const uint8_t bad[] = {0, 8, 15, 22, 0x7f, 0xff};

	(void)state;
	for (size_t i = 0; i < sizeof(bad); i++) {
		char what[32];

		snprintf(what, sizeof(what), "type %u", bad[i]);
		hdr_reject(bad[i], RDMIG_CHAN_CTRL, 0, 0, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO, what);
	}
}

static void test_hdr_unknown_flags(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	(void)state;
	frame(buf, RDMIG_MSG_BYE, RDMIG_CHAN_CTRL, 0, 0);
	buf[7] = 0x01;
	th_unit_fail(hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err, -EPROTO, "flags 0x0001");
}

/* Decode a header with these flags; 0 or the error, message in err. */
static int hdr_flags_dec(uint8_t type, uint16_t flags, uint16_t chan, uint32_t length,
			 struct rdmig_wire_hdr *h, struct rdmig_err *err)
{
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	rdmig_wire_hdr_encode_flags(buf, type, flags, chan, 0, length);
	return hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, h, err);
}

static void test_hdr_zstd_flag(void **state)
{
	static const uint8_t others[] = {
	    RDMIG_MSG_HELLO,	   RDMIG_MSG_BYE,    RDMIG_MSG_ERROR,	 RDMIG_MSG_FENCE,
	    RDMIG_MSG_STREAM_DATA, RDMIG_MSG_CREDIT, RDMIG_MSG_KEEPALIVE};
	static const uint32_t lens[] = {48, 0, 8, RDMIG_WIRE_FENCE_LEN, 10, 8, 0};
	uint32_t zmax = RDMIG_WIRE_WRITE_LEN + RDMIG_WIRE_MAX_DATA + RDMIG_WIRE_ZSTD_SLACK;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;

	(void)state;
	/* Accepted on WRITE, length from 16 + 1 to 16 + 16 MiB + slack, flag kept. */
	assert_int_equal(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, 3, 17, &h, &err), 0);
	assert_int_equal(h.flags, RDMIG_HDR_F_ZSTD);
	assert_int_equal(h.length, 17);
	assert_int_equal(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, 63, zmax, &h, &err), 0);
	th_unit_fail(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, 0, zmax + 1, &h, &err), &err,
		     -EMSGSIZE, "exceeds the maximum");
	rdmig_err_clear(&err);
	/* No compressed data at all. */
	th_unit_fail(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, 0, 16, &h, &err), &err,
		     -EPROTO, "below the minimum 17");
	rdmig_err_clear(&err);
	/* The slack belongs to compressed frames only. */
	th_unit_fail(hdr_flags_dec(RDMIG_MSG_WRITE, 0, 0,
				   RDMIG_WIRE_WRITE_LEN + RDMIG_WIRE_MAX_DATA + 1, &h, &err),
		     &err, -EMSGSIZE, "exceeds the maximum");
	rdmig_err_clear(&err);
	/* Not on the control channel (WRITE never is), nor with unknown bits. */
	th_unit_fail(
	    hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, RDMIG_CHAN_CTRL, 100, &h, &err), &err,
	    -EPROTO, "not a data channel");
	rdmig_err_clear(&err);
	th_unit_fail(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD | 0x2, 0, 100, &h, &err), &err,
		     -EPROTO, "unknown header flags 0x0002");
	rdmig_err_clear(&err);
	th_unit_fail(hdr_flags_dec(RDMIG_MSG_WRITE, 0x8000, 0, 100, &h, &err), &err, -EPROTO,
		     "unknown header flags 0x8000");
	/* Refused on every other type, whatever its channel and length. */
	for (size_t i = 0; i < sizeof(others); i++) {
		char what[64];

		rdmig_err_clear(&err);
		snprintf(what, sizeof(what), "%s: header flags 0x0001 (zstd) are allowed on WRITE",
			 rdmig_msg_type_name(others[i]));
		th_unit_fail(hdr_flags_dec(others[i], RDMIG_HDR_F_ZSTD, 0, lens[i], &h, &err), &err,
			     -EPROTO, what);
	}
}

static void test_zstd_check(void **state)
{
	static uint8_t plain[8192], z[2 * 8192 + 64];
	struct rdmig_err err = RDMIG_ERR_INIT;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_outBuffer out;
	ZSTD_inBuffer in;
	size_t zn, zn2, left;

	(void)state;
	assert_non_null(cc);
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i % 251 < 64 ? i : 0);
	zn = ZSTD_compress(z, sizeof(z), plain, 4096, 3);
	assert_false(ZSTD_isError(zn));
	assert_int_equal(rdmig_wire_zstd_check(z, zn, 4096, &err), 0);
	/* The frame says 4096, the prefix something else. */
	th_unit_fail(rdmig_wire_zstd_check(z, zn, 4095, &err), &err, -EPROTO,
		     "decompresses to 4096 bytes, the prefix says 4095");
	rdmig_err_clear(&err);
	/* Trailing bytes, a second frame, a cut frame, nothing, too much. */
	memset(z + zn, 0, 7);
	th_unit_fail(rdmig_wire_zstd_check(z, zn + 7, 4096, &err), &err, -EPROTO,
		     "followed by 7 more bytes");
	rdmig_err_clear(&err);
	zn2 = ZSTD_compress(z + zn, sizeof(z) - zn, plain, 4096, 3);
	assert_false(ZSTD_isError(zn2));
	th_unit_fail(rdmig_wire_zstd_check(z, zn + zn2, 8192, &err), &err, -EPROTO,
		     "expected one frame");
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_wire_zstd_check(z, zn - 1, 4096, &err), &err, -EPROTO,
		     "not a zstd frame");
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_wire_zstd_check(z, 0, 4096, &err), &err, -EPROTO, "expected 1..");
	rdmig_err_clear(&err);
	th_unit_fail(rdmig_wire_zstd_check(
			 z, (size_t)RDMIG_WIRE_MAX_DATA + RDMIG_WIRE_ZSTD_SLACK + 1, 4096, &err),
		     &err, -EMSGSIZE, "compressed data");
	rdmig_err_clear(&err);
	/* Garbage. */
	memset(z, 0xab, 100);
	th_unit_fail(rdmig_wire_zstd_check(z, 100, 4096, &err), &err, -EPROTO, "not a zstd frame");
	rdmig_err_clear(&err);
	/* A streamed frame records no content size: refused, len cannot be checked up front. */
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
	in = (ZSTD_inBuffer){.src = plain, .size = 4096, .pos = 0};
	out = (ZSTD_outBuffer){.dst = z, .size = sizeof(z), .pos = 0};
	left = ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);
	assert_int_equal(left, 0);
	th_unit_fail(rdmig_wire_zstd_check(z, out.pos, 4096, &err), &err, -EPROTO,
		     "does not record its decompressed size");
	ZSTD_freeCCtx(cc);
}

static void test_hdr_app_type_outside_app(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_AUTH, RDMIG_CHAN_CTRL, 1, 0, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "application type 0x0001");
	hdr_reject(RDMIG_MSG_WRITE, 0, 0x8000, 20, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "application type 0x8000");
}

static void test_hdr_app_type_range(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 0x8000, 0, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "0x8000");
	hdr_reject(RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 0xffff, 0, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "0xffff");
}

static void test_hdr_ctrl_type_on_data_chan(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_LAYOUT, 0, 0, 4, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO, "channel 0");
	hdr_reject(RDMIG_MSG_APP, 5, 1, 4, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO, "channel 5");
	hdr_reject(RDMIG_MSG_AUTH, 64, 0, 4, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO, "channel 64");
}

static void test_hdr_data_type_off_data_chan(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_WRITE, RDMIG_CHAN_CTRL, 0, 20, 0, -EPROTO, "channel 65535");
	hdr_reject(RDMIG_MSG_FENCE, RDMIG_MAX_CHANNELS, 0, 24, 0, -EPROTO, "channel 64");
	hdr_reject(RDMIG_MSG_STREAM_DATA, 1000, 0, 1, 0, -EPROTO, "channel 1000");
	hdr_reject(RDMIG_MSG_STREAM_EOF, RDMIG_CHAN_CTRL, 0, 0, 0, -EPROTO, "channel 65535");
	hdr_reject(RDMIG_MSG_CREDIT, 0xfffe, 0, 8, 0, -EPROTO, "channel 65534");
}

static void test_hdr_any_chan_range(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_HELLO, 64, 0, RDMIG_WIRE_HELLO_LEN, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "channel 64");
	hdr_reject(RDMIG_MSG_KEEPALIVE, 0xfffe, 0, 0, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "channel 65534");
}

static void test_hdr_ctrl_oversize(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 1, 1001, 1000, -EMSGSIZE, "length 1001");
	hdr_reject(RDMIG_MSG_AUTH, RDMIG_CHAN_CTRL, 0, UINT32_MAX, RDMIG_CTRL_MAX_PAYLOAD,
		   -EMSGSIZE, "length 4294967295");
	hdr_reject(RDMIG_MSG_ERROR, RDMIG_CHAN_CTRL, 0, 1001, 1000, -EMSGSIZE, "length 1001");
	hdr_accept(RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 1, 1000, 1000);
}

static void test_hdr_write_length(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_WRITE, 0, 0, RDMIG_WIRE_WRITE_LEN + RDMIG_WIRE_MAX_DATA + 1,
		   UINT32_MAX, -EMSGSIZE, "WRITE: payload length 16777233");
	hdr_reject(RDMIG_MSG_WRITE, 0, 0, RDMIG_WIRE_WRITE_LEN - 1, UINT32_MAX, -EPROTO,
		   "length 15");
	hdr_reject(RDMIG_MSG_WRITE, 0, 0, UINT32_MAX, UINT32_MAX, -EMSGSIZE, "length 4294967295");
}

static void test_hdr_stream_data_length(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_STREAM_DATA, 0, 0, RDMIG_WIRE_MAX_DATA + 1, UINT32_MAX, -EMSGSIZE,
		   "STREAM_DATA: payload length 16777217");
	hdr_reject(RDMIG_MSG_STREAM_DATA, 0, 0, 0, UINT32_MAX, -EPROTO, "length 0");
}

static void test_hdr_fence_length(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_FENCE, 0, 0, 23, 0, -EPROTO, "FENCE: payload length 23");
	hdr_reject(RDMIG_MSG_FENCE, 0, 0, 25, 0, -EMSGSIZE, "FENCE: payload length 25");
	hdr_reject(RDMIG_MSG_FENCE, 0, 0, 0, 0, -EPROTO, "length 0");
}

static void test_hdr_credit_length(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_CREDIT, 0, 0, 7, 0, -EPROTO, "CREDIT: payload length 7");
	hdr_reject(RDMIG_MSG_CREDIT, 0, 0, 9, 0, -EMSGSIZE, "CREDIT: payload length 9");
}

static void test_hdr_hello_length(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_HELLO, RDMIG_CHAN_CTRL, 0, 47, 0, -EPROTO, "length 47, expected 48");
	hdr_reject(RDMIG_MSG_HELLO, RDMIG_CHAN_CTRL, 0, 49, 0, -EMSGSIZE, "length 49, expected 48");
	hdr_reject(RDMIG_MSG_HELLO, RDMIG_CHAN_CTRL, 0, 40, 0, -EPROTO, "length 40, expected 48");
	hdr_reject(RDMIG_MSG_HELLO_ACK, RDMIG_CHAN_CTRL, 0, 0, 0, -EPROTO, "HELLO_ACK");
}

static void test_hdr_layout_length(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, 3, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "length 3");
	hdr_reject(RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, 5, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "4 + n * 64");
	hdr_reject(RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, 4 + 63, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "4 + n * 64");
	hdr_reject(RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, 4 + 65 * 64, RDMIG_CTRL_MAX_PAYLOAD,
		   -EMSGSIZE, "length 4164");
	/* A layout is a control message: max_ctrl applies as well. */
	hdr_reject(RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, 4 + 2 * 64, 100, -EMSGSIZE, "length 132");
}

static void test_hdr_empty_types(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_BYE, RDMIG_CHAN_CTRL, 0, 1, RDMIG_CTRL_MAX_PAYLOAD, -EMSGSIZE,
		   "BYE: payload length 1");
	hdr_reject(RDMIG_MSG_KEEPALIVE, 0, 0, 8, RDMIG_CTRL_MAX_PAYLOAD, -EMSGSIZE,
		   "KEEPALIVE: payload length 8");
	hdr_reject(RDMIG_MSG_STREAM_EOF, 0, 0, 1, RDMIG_CTRL_MAX_PAYLOAD, -EMSGSIZE,
		   "STREAM_EOF: payload length 1");
}

static void test_hdr_error_min(void **state)
{
	(void)state;
	hdr_reject(RDMIG_MSG_ERROR, RDMIG_CHAN_CTRL, 0, 3, RDMIG_CTRL_MAX_PAYLOAD, -EPROTO,
		   "length 3");
}

static void test_hdr_out_untouched_on_error(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h, before;
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	(void)state;
	memset(&h, 0xa5, sizeof(h));
	before = h;
	frame(buf, RDMIG_MSG_FENCE, 0, 0, 25);
	assert_true(hdr_dec(buf, 0, &h, &err) < 0);
	assert_memory_equal(&h, &before, sizeof(h));
}

int wire_hdr_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hdr_roundtrip),
	    cmocka_unit_test(test_hdr_golden_bytes),
	    cmocka_unit_test(test_hdr_truncated),
	    cmocka_unit_test(test_hdr_bad_magic),
	    cmocka_unit_test(test_hdr_bad_version),
	    cmocka_unit_test(test_hdr_unknown_type),
	    cmocka_unit_test(test_hdr_unknown_flags),
	    cmocka_unit_test(test_hdr_zstd_flag),
	    cmocka_unit_test(test_zstd_check),
	    cmocka_unit_test(test_hdr_app_type_outside_app),
	    cmocka_unit_test(test_hdr_app_type_range),
	    cmocka_unit_test(test_hdr_ctrl_type_on_data_chan),
	    cmocka_unit_test(test_hdr_data_type_off_data_chan),
	    cmocka_unit_test(test_hdr_any_chan_range),
	    cmocka_unit_test(test_hdr_ctrl_oversize),
	    cmocka_unit_test(test_hdr_write_length),
	    cmocka_unit_test(test_hdr_stream_data_length),
	    cmocka_unit_test(test_hdr_fence_length),
	    cmocka_unit_test(test_hdr_credit_length),
	    cmocka_unit_test(test_hdr_hello_length),
	    cmocka_unit_test(test_hdr_layout_length),
	    cmocka_unit_test(test_hdr_empty_types),
	    cmocka_unit_test(test_hdr_error_min),
	    cmocka_unit_test(test_hdr_out_untouched_on_error),
	};

	return cmocka_run_group_tests_name("wire hdr", tests, NULL, NULL);
}
