/* SPDX-License-Identifier: MIT */
/*
 * A seeded mutation fuzzer over every decoder: valid frames of every type,
 * mutated, decoded whole and payload alone, exactly sized so that ASan sees
 * any over-read. It prints its seed first; test_wire -s SEED reruns it.
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
#include "th_content.h"

/* ---- fuzz ------------------------------------------------------------- */

static struct th_rng rng;

static uint64_t rnd(void)
{
	return th_rng_next(&rng);
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
	rng.s = fuzz_seed;
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

int wire_fuzz_tests(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fuzz_decoders),
	};

	return cmocka_run_group_tests_name("wire fuzz", tests, NULL, NULL);
}
