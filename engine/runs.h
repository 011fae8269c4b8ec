/* SPDX-License-Identifier: MIT */
/*
 * Runs: building and merging lists of struct rdmig_run (rdmig/transport.h).
 * Pure functions over caller memory: no locking, no allocation.
 */
#ifndef RDMIG_RUNS_H
#define RDMIG_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include "rdmig/transport.h"

/*
 * Merge, in place, neighbouring runs that are contiguous on both sides (same
 * lreg and rreg, a.loff + a.len == b.loff and a.roff + a.len == b.roff).
 * Only neighbours are merged; the order is kept. Returns the new count.
 */
size_t rdmig_runs_coalesce(struct rdmig_run *runs, size_t n);

/*
 * Turn a dirty bitmap into runs. Bit i (bit i % 64 of bitmap[i / 64]) set
 * means page i is dirty; bits at or beyond `npages` are ignored. Scanning
 * starts at `first_page`; each run covers whole pages at the same offset on
 * both sides (loff == roff == page * page_size) and at most `max_run_bytes`
 * bytes (0: unlimited; never less than one page). At most `cap` runs are
 * written to `out`.
 *
 * Returns the number of runs written. *next_page is where to resume: the
 * first dirty page not yet covered, or `npages` when the bitmap is done.
 */
size_t rdmig_runs_from_bitmap(const uint64_t *bitmap, uint64_t npages, uint64_t page_size,
			      uint32_t lreg, uint32_t rreg, uint64_t first_page,
			      uint64_t max_run_bytes, struct rdmig_run *out, size_t cap,
			      uint64_t *next_page);

#endif
