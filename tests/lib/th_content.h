/* SPDX-License-Identifier: MIT */
/*
 * Deterministic test data: both ends of a transfer make or check the same
 * bytes from a key, with no need to send them the expected content. Byte
 * `pos` depends only on (key, pos), so any slice of any length at any
 * offset can be made or checked on its own.
 */
#ifndef RDMIG_TEST_TH_CONTENT_H
#define RDMIG_TEST_TH_CONTENT_H

#include <stddef.h>
#include <stdint.h>

/*
 * `len` bytes of zeroed anonymous memory for test data (munmap() it). A test
 * cannot go on without it: on failure this prints why and exits 1.
 */
void *th_map(size_t len);

/* 3 in 4 pages (4 KiB, chosen by key and page) all zero: content that compresses. */
#define TH_CONTENT_SPARSE 1u

/* splitmix64's finalizer: a well-mixed 64-bit function of z. */
uint64_t th_mix64(uint64_t z);

/* A seeded generator (splitmix64): the same seed, the same sequence. */
struct th_rng {
	uint64_t s;
};

uint64_t th_rng_next(struct th_rng *r);
/* In [lo, hi] (both included), near enough uniform for tests. */
uint64_t th_rng_range(struct th_rng *r, uint64_t lo, uint64_t hi);

/* Bytes pos .. pos + len - 1 of the content of `key` into dst. */
void th_content_fill(uint8_t *dst, uint64_t pos, size_t len, uint64_t key, unsigned flags);

/*
 * Compare `mem`, which should hold bytes pos .. pos + len - 1 of the content
 * of `key`. Returns the number of 4 KiB-aligned pages that differ; *first
 * gets the first differing position (UINT64_MAX if none). Out of memory
 * counts as one bad page at `pos`.
 */
uint64_t th_content_compare(const uint8_t *mem, uint64_t pos, uint64_t len, uint64_t key,
			    unsigned flags, uint64_t *first);

#endif
