/* SPDX-License-Identifier: MIT */
/*
 * The incr integrity check (team notes, testing.md) on guest RAM: what every
 * test that migrates an incr guest, and tests/cli/image_check, compare with.
 *
 * RAM is split into the vCPUs' slices as the incr workload splits it
 * (rdmig_incr_slice(); `vcpus` 0: one slice). Within a slice, byte 0 of its
 * pages must be all equal, or v + 1 on a prefix and v on the rest (mod 256):
 * the vCPU stopped at the edge. Every other byte of every page must be zero.
 * Both calls return 0 when that holds, else -EILSEQ with the total of bad
 * pages and the first few named (region, page, found vs expected).
 */
#ifndef RDMIG_TEST_INCR_CHECK_H
#define RDMIG_TEST_INCR_CHECK_H

#include <stdint.h>

#include "rdmig/guest.h"
#include "rdmig/err.h"

/* A paused or stopped guest, page by page over its regions in order. */
int rdmig_guest_check_incr(const struct rdmig_guest *g, struct rdmig_err *err);

/* A raw image of `len` bytes (a whole number of pages; -EINVAL otherwise). */
int rdmig_check_incr_image(const uint8_t *ram, uint64_t len, unsigned vcpus, struct rdmig_err *err);

#endif
