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

#include "test_wire.h"

#define DEFAULT_SEED  0x72646d6967ULL /* "rdmig" */
#define DEFAULT_ITERS 200000UL

uint64_t fuzz_seed = DEFAULT_SEED;
unsigned long fuzz_iters = DEFAULT_ITERS;

/* ---- builders the parts share ---------------------------------------------- */

uint8_t *exact(const void *src, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	if (len)
		memcpy(p, src, len);
	return p;
}

size_t frame(uint8_t *buf, uint8_t type, uint16_t chan, uint16_t app_type, uint32_t length)
{
	return rdmig_wire_hdr_encode(buf, type, chan, app_type, length);
}

int hdr_dec(const uint8_t *buf, uint32_t max_ctrl, struct rdmig_wire_hdr *h, struct rdmig_err *err)
{
	uint8_t *p = exact(buf, RDMIG_WIRE_HDR_LEN);
	int ret = rdmig_wire_hdr_decode(p, RDMIG_WIRE_HDR_LEN, max_ctrl, h, err);

	free(p);
	return ret;
}

struct rdmig_wire_hello good_hello(void)
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

void hello_equal(const struct rdmig_wire_hello *a, const struct rdmig_wire_hello *b)
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

void good_regions(struct rdmig_wire_region *r, uint32_t n)
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

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_type_names),
	    cmocka_unit_test(test_first_error_wins),
	};
	const char *env;
	int failed;

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
	failed = wire_hdr_tests();
	failed += wire_hello_tests();
	failed += wire_msgs_tests();
	failed += cmocka_run_group_tests_name("wire misc", tests, NULL, NULL);
	failed += wire_fuzz_tests();
	return failed ? 1 : 0;
}
