/* SPDX-License-Identifier: MIT */
/*
 * Wire format: round trips, one test per validation rule, and a seeded
 * mutation fuzzer over every decoder.
 *
 *   test_wire [-s SEED] [-i ITERATIONS]
 *
 * The fuzzer prints its seed first, so a crash (ASan, UBSan) can be rerun
 * with -s; RDMIG_TEST_SEED and RDMIG_FUZZ_ITERS do the same from the
 * environment.
 */
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

#include "wire.h"

#define DEFAULT_SEED  0x72646d6967ULL /* "rdmig" */
#define DEFAULT_ITERS 200000UL

static uint64_t fuzz_seed = DEFAULT_SEED;
static unsigned long fuzz_iters = DEFAULT_ITERS;

/* ---- helpers ---------------------------------------------------------- */

/* Copy into a buffer of exactly `len` bytes so ASan sees any over-read. */
static uint8_t *exact(const void *src, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	if (len)
		memcpy(p, src, len);
	return p;
}

/* The call failed with `code`, recorded it, and the message names `what`. */
static void check_fail(int ret, const struct rdmig_err *err, int code, const char *what)
{
	if (ret != code || err->code != code || !strstr(err->msg, what))
		fail_msg("expected %d mentioning \"%s\", got %d: \"%s\"", code, what, ret,
			 err->msg);
}

static size_t frame(uint8_t *buf, uint8_t type, uint16_t chan, uint16_t app_type, uint32_t length)
{
	return rdmig_wire_hdr_encode(buf, type, chan, app_type, length);
}

static int hdr_dec(const uint8_t *buf, uint32_t max_ctrl, struct rdmig_wire_hdr *h,
		   struct rdmig_err *err)
{
	uint8_t *p = exact(buf, RDMIG_WIRE_HDR_LEN);
	int ret = rdmig_wire_hdr_decode(p, RDMIG_WIRE_HDR_LEN, max_ctrl, h, err);

	free(p);
	return ret;
}

/* Decode a header built from these fields; expect failure naming `what`. */
static void hdr_reject(uint8_t type, uint16_t chan, uint16_t app_type, uint32_t length,
		       uint32_t max_ctrl, int code, const char *what)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	frame(buf, type, chan, app_type, length);
	check_fail(hdr_dec(buf, max_ctrl, &h, &err), &err, code, what);
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

static struct rdmig_wire_hello good_hello(void)
{
	return (struct rdmig_wire_hello){
	    .caps = RDMIG_CAP_STREAMS | RDMIG_CAP_AUTH,
	    .role = RDMIG_ROLE_CONNECTOR,
	    .nchan = 4,
	    .chan_index = 2,
	    .max_ctrl = RDMIG_CTRL_MAX_PAYLOAD,
	    .token = 0x0123456789abcdefULL,
	    .stream_ring = 1 << 20,
	    .ring_rkey = 0xcafe,
	    .ring_addr = 0x00007f0012345000ULL,
	};
}

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

	check_fail(hello_dec(in, &out, &err), &err, -EPROTO, what);
}

static void hello_equal(const struct rdmig_wire_hello *a, const struct rdmig_wire_hello *b)
{
	assert_int_equal(a->caps, b->caps);
	assert_int_equal(a->role, b->role);
	assert_int_equal(a->nchan, b->nchan);
	assert_int_equal(a->chan_index, b->chan_index);
	assert_int_equal(a->reserved0, b->reserved0);
	assert_int_equal(a->max_ctrl, b->max_ctrl);
	assert_int_equal(a->token, b->token);
	assert_int_equal(a->stream_ring, b->stream_ring);
	assert_int_equal(a->ring_rkey, b->ring_rkey);
	assert_int_equal(a->reserved1, b->reserved1);
	assert_int_equal(a->ring_addr, b->ring_addr);
}

#define LAYOUT_BUF (4 + RDMIG_MAX_REGIONS * RDMIG_WIRE_LAYOUT_ENTRY_LEN + 64)

static void good_regions(struct rdmig_wire_region *r, uint32_t n)
{
	memset(r, 0, sizeof(*r) * n);
	for (uint32_t i = 0; i < n; i++) {
		r[i].id = i * 3 + 1;
		r[i].flags = RDMIG_REG_REMOTE_WRITE;
		r[i].len = (uint64_t)(i + 1) << 30;
		r[i].addr = 0x7f0000000000ULL + ((uint64_t)i << 36);
		r[i].rkey = 0x1000 + i;
		snprintf(r[i].name, sizeof(r[i].name), "ram%u", i);
	}
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

	check_fail(layout_dec(buf, len, max, &n, &err), &err, -EPROTO, what);
	assert_int_equal(n, 12345);
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

		check_fail(rdmig_wire_hdr_decode(p, len, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err,
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
	check_fail(hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err, -EPROTO,
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
	check_fail(hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err, -EPROTONOSUPPORT,
		   "version 2");
	assert_non_null(strstr(err.msg, "version 1"));
	rdmig_err_clear(&err);
	buf[4] = 0;
	check_fail(hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err, -EPROTONOSUPPORT,
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
	check_fail(hdr_dec(buf, RDMIG_CTRL_MAX_PAYLOAD, &h, &err), &err, -EPROTO, "flags 0x0001");
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
	check_fail(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, 0, zmax + 1, &h, &err), &err,
		   -EMSGSIZE, "exceeds the maximum");
	rdmig_err_clear(&err);
	/* No compressed data at all. */
	check_fail(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, 0, 16, &h, &err), &err, -EPROTO,
		   "below the minimum 17");
	rdmig_err_clear(&err);
	/* The slack belongs to compressed frames only. */
	check_fail(hdr_flags_dec(RDMIG_MSG_WRITE, 0, 0,
				 RDMIG_WIRE_WRITE_LEN + RDMIG_WIRE_MAX_DATA + 1, &h, &err),
		   &err, -EMSGSIZE, "exceeds the maximum");
	rdmig_err_clear(&err);
	/* Not on the control channel (WRITE never is), nor with unknown bits. */
	check_fail(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, RDMIG_CHAN_CTRL, 100, &h, &err),
		   &err, -EPROTO, "not a data channel");
	rdmig_err_clear(&err);
	check_fail(hdr_flags_dec(RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD | 0x2, 0, 100, &h, &err), &err,
		   -EPROTO, "unknown header flags 0x0002");
	rdmig_err_clear(&err);
	check_fail(hdr_flags_dec(RDMIG_MSG_WRITE, 0x8000, 0, 100, &h, &err), &err, -EPROTO,
		   "unknown header flags 0x8000");
	/* Refused on every other type, whatever its channel and length. */
	for (size_t i = 0; i < sizeof(others); i++) {
		char what[64];

		rdmig_err_clear(&err);
		snprintf(what, sizeof(what), "%s: header flags 0x0001 (zstd) are allowed on WRITE",
			 rdmig_msg_type_name(others[i]));
		check_fail(hdr_flags_dec(others[i], RDMIG_HDR_F_ZSTD, 0, lens[i], &h, &err), &err,
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
	check_fail(rdmig_wire_zstd_check(z, zn, 4095, &err), &err, -EPROTO,
		   "decompresses to 4096 bytes, the prefix says 4095");
	rdmig_err_clear(&err);
	/* Trailing bytes, a second frame, a cut frame, nothing, too much. */
	memset(z + zn, 0, 7);
	check_fail(rdmig_wire_zstd_check(z, zn + 7, 4096, &err), &err, -EPROTO,
		   "followed by 7 more bytes");
	rdmig_err_clear(&err);
	zn2 = ZSTD_compress(z + zn, sizeof(z) - zn, plain, 4096, 3);
	assert_false(ZSTD_isError(zn2));
	check_fail(rdmig_wire_zstd_check(z, zn + zn2, 8192, &err), &err, -EPROTO,
		   "expected one frame");
	rdmig_err_clear(&err);
	check_fail(rdmig_wire_zstd_check(z, zn - 1, 4096, &err), &err, -EPROTO, "not a zstd frame");
	rdmig_err_clear(&err);
	check_fail(rdmig_wire_zstd_check(z, 0, 4096, &err), &err, -EPROTO, "expected 1..");
	rdmig_err_clear(&err);
	check_fail(rdmig_wire_zstd_check(z, (size_t)RDMIG_WIRE_MAX_DATA + RDMIG_WIRE_ZSTD_SLACK + 1,
					 4096, &err),
		   &err, -EMSGSIZE, "compressed data");
	rdmig_err_clear(&err);
	/* Garbage. */
	memset(z, 0xab, 100);
	check_fail(rdmig_wire_zstd_check(z, 100, 4096, &err), &err, -EPROTO, "not a zstd frame");
	rdmig_err_clear(&err);
	/* A streamed frame records no content size: refused, len cannot be checked up front. */
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
	in = (ZSTD_inBuffer){.src = plain, .size = 4096, .pos = 0};
	out = (ZSTD_outBuffer){.dst = z, .size = sizeof(z), .pos = 0};
	left = ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);
	assert_int_equal(left, 0);
	check_fail(rdmig_wire_zstd_check(z, out.pos, 4096, &err), &err, -EPROTO,
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
		check_fail(rdmig_wire_hello_decode(p, len, &out, &err), &err, -EPROTO,
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

		check_fail(rdmig_wire_pdata_decode(p, len, &type, &out, &err), &err, -EPROTO,
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
	check_fail(rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &out, &err), &err,
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
	check_fail(rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &out, &err), &err, code, what);
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
	check_fail(rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &out, &err), &err, -EPROTO,
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
	check_fail(rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &out, &err), &err, -EPROTO,
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

/* ---- WRITE ------------------------------------------------------------ */

static const uint64_t reg_len[3] = {1 << 20, 4096, 0};
static const uint8_t reg_wr[3] = {1, 0, 1};

static void write_reject(uint32_t region, uint32_t len, uint64_t offset, int code, const char *what)
{
	struct rdmig_wire_write w = {.region = region, .len = len, .offset = offset};
	struct rdmig_err err = RDMIG_ERR_INIT;

	check_fail(rdmig_wire_write_check(&w, reg_len, reg_wr, 3, &err), &err, code, what);
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

		check_fail(rdmig_wire_write_decode(p, len, &out, &err), &err, -EPROTO, "truncated");
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
	check_fail(rdmig_wire_write_decode(buf, RDMIG_WIRE_WRITE_LEN + 4095, &out, &err), &err,
		   -EPROTO, "length 4096 disagrees with 4095");
	rdmig_err_clear(&err);
	check_fail(rdmig_wire_write_decode(buf, sizeof(buf), &out, &err), &err, -EPROTO,
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
	check_fail(rdmig_wire_write_check(&w, big, wr, 1, &err), &err, -EMSGSIZE,
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
	check_fail(rdmig_wire_write_check(&w, big, wr, 1, &err), &err, -EPROTO, "beyond");
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
		check_fail(rdmig_wire_fence_decode(p, len, &out, &err), &err, -EPROTO,
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
		check_fail(rdmig_wire_credit_decode(p, len, &v, &err), &err, -EPROTO,
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

		check_fail(rdmig_wire_error_decode(p, len, &code, msg, sizeof(msg), &err), &err,
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
		check_fail(rdmig_wire_error_decode(buf, 4, &code, msg, sizeof(msg), &err), &err,
			   -EPROTO, what);
	}
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

/* ---- misc ------------------------------------------------------------- */

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal(rdmig_msg_type_name(RDMIG_MSG_HELLO), "HELLO");
	assert_string_equal(rdmig_msg_type_name(RDMIG_MSG_WRITE), "WRITE");
	assert_string_equal(rdmig_msg_type_name(RDMIG_MSG_KEEPALIVE), "KEEPALIVE");
	assert_string_equal(rdmig_msg_type_name(0), "unknown");
	assert_string_equal(rdmig_msg_type_name(200), "unknown");
	for (unsigned t = 0; t < 256; t++)
		assert_non_null(rdmig_msg_type_name((uint8_t)t));
}

static void test_first_error_wins(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	uint8_t buf[RDMIG_WIRE_HDR_LEN];

	(void)state;
	rdmig_seterr(&err, -EINVAL, "earlier");
	frame(buf, 99, RDMIG_CHAN_CTRL, 0, 0);
	assert_int_equal(hdr_dec(buf, 0, &h, &err), -EPROTO);
	assert_int_equal(err.code, -EINVAL);
	assert_string_equal(err.msg, "earlier");
	/* NULL err is allowed. */
	assert_int_equal(rdmig_wire_hdr_decode(buf, sizeof(buf), 0, &h, NULL), -EPROTO);
}

/* ---- fuzz ------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

#define FUZZ_MAX 4300
#define NSEEDS	 9

struct seedmsg {
	uint8_t buf[FUZZ_MAX];
	size_t len;
};

/* Valid frames (header + payload) of every type to start mutating from. */
static void fuzz_seeds(struct seedmsg *s)
{
	struct rdmig_wire_hello h = good_hello();
	struct rdmig_wire_region regs[RDMIG_MAX_REGIONS];
	struct rdmig_wire_write w = {.region = 0, .len = 64, .offset = 4096};
	struct rdmig_fence f = {.seq = 1, .bytes = 4096, .writes = 1};
	size_t n;

	s[0].len = frame(s[0].buf, RDMIG_MSG_HELLO, 2, 0, RDMIG_WIRE_HELLO_LEN);
	s[0].len += rdmig_wire_hello_encode(s[0].buf + s[0].len, &h);

	good_regions(regs, 3);
	n = rdmig_wire_layout_encode(s[1].buf + RDMIG_WIRE_HDR_LEN, regs, 3);
	s[1].len = frame(s[1].buf, RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, (uint32_t)n) + n;

	good_regions(regs, RDMIG_MAX_REGIONS);
	n = rdmig_wire_layout_encode(s[2].buf + RDMIG_WIRE_HDR_LEN, regs, RDMIG_MAX_REGIONS);
	s[2].len = frame(s[2].buf, RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, 0, (uint32_t)n) + n;

	n = rdmig_wire_write_encode(s[3].buf + RDMIG_WIRE_HDR_LEN, &w);
	memset(s[3].buf + RDMIG_WIRE_HDR_LEN + n, 0x5a, w.len);
	n += w.len;
	s[3].len = frame(s[3].buf, RDMIG_MSG_WRITE, 1, 0, (uint32_t)n) + n;

	n = rdmig_wire_fence_encode(s[4].buf + RDMIG_WIRE_HDR_LEN, &f);
	s[4].len = frame(s[4].buf, RDMIG_MSG_FENCE, 1, 0, (uint32_t)n) + n;

	n = rdmig_wire_credit_encode(s[5].buf + RDMIG_WIRE_HDR_LEN, 12345);
	s[5].len = frame(s[5].buf, RDMIG_MSG_CREDIT, 0, 0, (uint32_t)n) + n;

	n = rdmig_wire_error_encode(s[6].buf + RDMIG_WIRE_HDR_LEN, 100, -ENOSPC, "disk full");
	s[6].len = frame(s[6].buf, RDMIG_MSG_ERROR, RDMIG_CHAN_CTRL, 0, (uint32_t)n) + n;

	memcpy(s[7].buf + RDMIG_WIRE_HDR_LEN, "app payload", 11);
	s[7].len = frame(s[7].buf, RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 17, 11) + 11;

	s[8].len = rdmig_wire_pdata_encode(s[8].buf, RDMIG_MSG_HELLO_ACK, &h);
}

static void mutate(uint8_t *b, size_t *len)
{
	static const uint8_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, 0x40, 0x41, 0x3f, 0x10};
	unsigned k = 1 + (unsigned)rnd_below(4);

	while (k--) {
		size_t at = *len ? rnd_below(*len) : 0;

		switch (rnd_below(8)) {
		case 0: /* flip a bit */
			if (*len)
				b[at] ^= (uint8_t)(1u << rnd_below(8));
			break;
		case 1: /* random byte */
			if (*len)
				b[at] = (uint8_t)rnd();
			break;
		case 2: /* interesting byte */
			if (*len)
				b[at] = interesting[rnd_below(sizeof(interesting))];
			break;
		case 3: /* boundary 32-bit value, field aligned */
			at &= ~(size_t)3;
			if (at + 4 <= *len) {
				static const uint32_t v[] = {
				    0,	1,	    4,		 48,	      63,    64,
				    65, 0x7fffffff, 0x80000000u, 0xffffffffu, 0xffff};
				rdmig_put_be32(b + at, v[rnd_below(sizeof(v) / sizeof(v[0]))]);
			}
			break;
		case 4: /* boundary 64-bit value */
			at &= ~(size_t)7;
			if (at + 8 <= *len)
				rdmig_put_be64(b + at, rnd_below(2) ? UINT64_MAX - rnd_below(8192)
								    : rnd_below(1 << 21));
			break;
		case 5: /* truncate */
			*len = rnd_below(*len + 1);
			break;
		case 6: /* extend with random bytes */
		{
			size_t add = rnd_below(80);

			if (*len + add > FUZZ_MAX)
				add = FUZZ_MAX - *len;
			for (size_t i = 0; i < add; i++)
				b[*len + i] = (uint8_t)rnd();
			*len += add;
			break;
		}
		case 7: /* copy a 16-bit field onto another */
			if (*len >= 4) {
				size_t from = rnd_below(*len - 1);

				b[at & ~(size_t)1] = b[from];
				if ((at | 1) < *len)
					b[at | 1] = b[from + 1];
			}
			break;
		}
	}
}

#define FUZZ_CHECK(cond, it)                                                                       \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("fuzz: %s failed at iteration %lu (rerun: test_wire -s %" PRIu64  \
				 " -i %lu)",                                                       \
				 #cond, (it), fuzz_seed, (it) + 1);                                \
	} while (0)

/* Decode `p[0..len)` with every decoder; check what is accepted re-encodes the same. */
static void fuzz_one(const uint8_t *p, size_t len, unsigned long it)
{
	static const uint32_t max_ctrls[] = {0, 48, 4100, RDMIG_CTRL_MAX_PAYLOAD, UINT32_MAX};
	static const uint64_t rlen[4] = {1 << 20, 4096, UINT64_MAX, 1};
	static const uint8_t rwr[4] = {1, 0, 1, 1};
	struct rdmig_wire_region regs[RDMIG_MAX_REGIONS], regs2[RDMIG_MAX_REGIONS];
	uint8_t re[FUZZ_MAX + 64];
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	struct rdmig_wire_hello hello;
	struct rdmig_wire_write w;
	struct rdmig_fence f;
	uint64_t credit;
	uint32_t n, n2;
	uint8_t type;
	char msg[24];
	int code, ret;

	/* The header decoder, then the payload as a receiver would pass it. */
	ret = rdmig_wire_hdr_decode(p, len, max_ctrls[rnd_below(5)], &h, &err);
	if (!ret && len >= RDMIG_WIRE_HDR_LEN + (size_t)h.length) {
		const uint8_t *pl = p + RDMIG_WIRE_HDR_LEN;

		FUZZ_CHECK(strcmp(rdmig_msg_type_name(h.type), "unknown"), it);
		switch (h.type) {
		case RDMIG_MSG_HELLO:
		case RDMIG_MSG_HELLO_ACK:
			rdmig_wire_hello_decode(pl, h.length, &hello, NULL);
			break;
		case RDMIG_MSG_LAYOUT:
			rdmig_wire_layout_decode(pl, h.length, regs, RDMIG_MAX_REGIONS, &n, NULL);
			break;
		case RDMIG_MSG_WRITE:
			if (!rdmig_wire_write_decode(pl, h.length, &w, NULL))
				FUZZ_CHECK(RDMIG_WIRE_WRITE_LEN + (size_t)w.len == h.length ||
					       h.length == RDMIG_WIRE_WRITE_LEN,
					   it);
			break;
		case RDMIG_MSG_FENCE:
			FUZZ_CHECK(!rdmig_wire_fence_decode(pl, h.length, &f, NULL), it);
			break;
		case RDMIG_MSG_CREDIT:
			FUZZ_CHECK(!rdmig_wire_credit_decode(pl, h.length, &credit, NULL), it);
			break;
		case RDMIG_MSG_ERROR:
			rdmig_wire_error_decode(pl, h.length, &code, msg, sizeof(msg), NULL);
			break;
		}
	}

	/* Every payload decoder on the raw bytes, as if the header were elsewhere. */
	if (!rdmig_wire_hello_decode(p, len, &hello, NULL)) {
		rdmig_wire_hello_encode(re, &hello);
		FUZZ_CHECK(!memcmp(re, p, RDMIG_WIRE_HELLO_LEN), it);
	}
	if (!rdmig_wire_pdata_decode(p, len, &type, &hello, NULL)) {
		rdmig_wire_pdata_encode(re, type, &hello);
		FUZZ_CHECK(!memcmp(re, p, RDMIG_WIRE_PDATA_LEN), it);
	}
	if (!rdmig_wire_layout_decode(p, len, regs, (uint32_t)rnd_below(RDMIG_MAX_REGIONS + 2), &n,
				      NULL)) {
		size_t l2 = rdmig_wire_layout_encode(re, regs, n);

		FUZZ_CHECK(l2 == len, it);
		FUZZ_CHECK(!rdmig_wire_layout_decode(re, l2, regs2, n, &n2, NULL), it);
		FUZZ_CHECK(n2 == n, it);
		for (uint32_t i = 0; i < n; i++) {
			FUZZ_CHECK(regs[i].id == regs2[i].id && regs[i].len == regs2[i].len &&
				       regs[i].addr == regs2[i].addr &&
				       regs[i].rkey == regs2[i].rkey &&
				       regs[i].flags == regs2[i].flags,
				   it);
			FUZZ_CHECK(!strcmp(regs[i].name, regs2[i].name), it);
		}
	}
	if (!rdmig_wire_write_decode(p, len, &w, NULL)) {
		rdmig_wire_write_encode(re, &w);
		FUZZ_CHECK(!memcmp(re, p, RDMIG_WIRE_WRITE_LEN), it);
		if (!rdmig_wire_write_check(&w, rlen, rwr, 4, NULL)) {
			FUZZ_CHECK(w.region < 4 && rwr[w.region] && w.len > 0, it);
			FUZZ_CHECK(w.offset <= rlen[w.region] && w.len <= rlen[w.region] - w.offset,
				   it);
		}
	}
	if (!rdmig_wire_fence_decode(p, len, &f, NULL)) {
		rdmig_wire_fence_encode(re, &f);
		FUZZ_CHECK(!memcmp(re, p, RDMIG_WIRE_FENCE_LEN), it);
	}
	if (!rdmig_wire_credit_decode(p, len, &credit, NULL)) {
		rdmig_wire_credit_encode(re, credit);
		FUZZ_CHECK(!memcmp(re, p, RDMIG_WIRE_CREDIT_LEN), it);
	}
	if (!rdmig_wire_error_decode(p, len, &code, msg, 1 + rnd_below(sizeof(msg)), NULL)) {
		FUZZ_CHECK(code < 0 && code >= -4095, it);
		FUZZ_CHECK(strlen(msg) < sizeof(msg), it);
	}
}

static void test_fuzz_decoders(void **state)
{
	struct seedmsg *seeds = calloc(NSEEDS, sizeof(*seeds));
	uint8_t work[FUZZ_MAX];
	unsigned long accepted = 0;

	(void)state;
	assert_non_null(seeds);
	print_message("fuzz: seed %" PRIu64 ", %lu iterations (rerun: test_wire -s %" PRIu64 ")\n",
		      fuzz_seed, fuzz_iters, fuzz_seed);
	rng_state = fuzz_seed;
	fuzz_seeds(seeds);
	for (unsigned long it = 0; it < fuzz_iters; it++) {
		const struct seedmsg *s = &seeds[rnd_below(NSEEDS)];
		size_t len = s->len;
		struct rdmig_wire_hdr h;
		uint8_t *p;

		memcpy(work, s->buf, len);
		mutate(work, &len);
		p = exact(work, len);
		/* Whole frame, then the payload alone. */
		fuzz_one(p, len, it);
		if (len >= RDMIG_WIRE_HDR_LEN)
			fuzz_one(p + RDMIG_WIRE_HDR_LEN, len - RDMIG_WIRE_HDR_LEN, it);
		if (!rdmig_wire_hdr_decode(p, len, RDMIG_CTRL_MAX_PAYLOAD, &h, NULL))
			accepted++;
		free(p);
	}
	print_message("fuzz: %lu iterations clean, %lu mutated headers accepted\n", fuzz_iters,
		      accepted);
	free(seeds);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cm_pdata),
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
	    cmocka_unit_test(test_hello_roundtrip),
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
	    cmocka_unit_test(test_pdata_chan_mismatch),
	    cmocka_unit_test(test_pdata_nonzero_padding),
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
	    cmocka_unit_test(test_type_names),
	    cmocka_unit_test(test_first_error_wins),
	    cmocka_unit_test(test_fuzz_decoders),
	};
	const char *env;

	if ((env = getenv("RDMIG_TEST_SEED")))
		fuzz_seed = strtoull(env, NULL, 0);
	if ((env = getenv("RDMIG_FUZZ_ITERS")))
		fuzz_iters = strtoul(env, NULL, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-s") && i + 1 < argc) {
			fuzz_seed = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "-i") && i + 1 < argc) {
			fuzz_iters = strtoul(argv[++i], NULL, 0);
		} else {
			fprintf(stderr, "usage: %s [-s SEED] [-i ITERATIONS]\n", argv[0]);
			return 2;
		}
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
