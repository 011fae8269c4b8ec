/* SPDX-License-Identifier: MIT */
/*
 * test_wire's parts (one test program, one ctest test; test_wire.c has the
 * overview):
 *   test_wire.c        main, shared builders, misc
 *   test_wire_hdr.c    the frame header, one test per validation rule
 *   test_wire_hello.c  HELLO, rdma_cm private data, LAYOUT
 *   test_wire_msgs.c   WRITE, FENCE, CREDIT, ERROR, RINGS
 *   test_wire_fuzz.c   the seeded mutation fuzzer over every decoder
 * Include after <cmocka.h>.
 */
#ifndef RDMIG_TEST_WIRE_H
#define RDMIG_TEST_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "th_unit.h"
#include "wire.h"

#define LAYOUT_BUF (4 + RDMIG_MAX_REGIONS * RDMIG_WIRE_LAYOUT_ENTRY_LEN + 64)

/* The fuzzer's seed and length (-s, -i, RDMIG_TEST_SEED, RDMIG_FUZZ_ITERS). */
extern uint64_t fuzz_seed;
extern unsigned long fuzz_iters;

/* Copy into a buffer of exactly `len` bytes so ASan sees any over-read (free it). */
uint8_t *exact(const void *src, size_t len);
size_t frame(uint8_t *buf, uint8_t type, uint16_t chan, uint16_t app_type, uint32_t length);
int hdr_dec(const uint8_t *buf, uint32_t max_ctrl, struct rdmig_wire_hdr *h, struct rdmig_err *err);
struct rdmig_wire_hello good_hello(void);
void hello_equal(const struct rdmig_wire_hello *a, const struct rdmig_wire_hello *b);
void good_regions(struct rdmig_wire_region *r, uint32_t n);

/* Each part's cmocka group; 0 when all its tests passed. */
int wire_hdr_tests(void);
int wire_hello_tests(void);
int wire_msgs_tests(void);
int wire_fuzz_tests(void);

#endif
