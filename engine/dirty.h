/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page sources behind one interface.
 *
 * A tracker watches a set of guest RAM regions (page-aligned) and, on each
 * harvest, ORs into one bitmap per region the pages written since the
 * previous harvest (or since start), and re-arms tracking for them, so a
 * page written after it was harvested is reported again next time.
 *
 * The migration invariant every source keeps: if the caller copies the
 * reported pages after each harvest returns, then after a final harvest
 * taken with the writers stopped, the copies equal guest RAM byte for byte.
 * A source may report extra pages (never fewer).
 *
 * Ownership: one thread (the migration's main thread) calls start, harvest
 * and stop; guest vCPU threads keep writing concurrently, which is the point.
 * Exception: soft-dirty needs the writers stopped for the few milliseconds
 * of each harvest, through pause_writers (see dirty_softdirty.c for why no
 * lock-free harvest is correct with that kernel interface).
 *
 * Not covered by any source: discards (MADV_DONTNEED, hole punching) and
 * device DMA into guest RAM (an RDMA NIC writing registered memory). They
 * change memory without a CPU write through the page tables.
 */
#ifndef RDMIG_DIRTY_H
#define RDMIG_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dirty_probe.h"
#include "rdmig/err.h"

struct rdmig_dirty_region {
	void *addr;	  /* page aligned */
	uint64_t len;	  /* multiple of page_size */
	uint64_t *bitmap; /* caller-owned, (len / page_size + 63) / 64 words */
};

struct rdmig_dirty;

/* One table per source; each op returns 0 or a negative errno (err.h). */
struct rdmig_dirty_ops {
	enum rdmig_dirty_kind kind;
	/*
	 * Begin tracking: every later write to the regions will be reported.
	 * On failure it releases what it acquired.
	 */
	int (*start)(struct rdmig_dirty *d, struct rdmig_err *err);
	/* OR the pages written since the last harvest into each region's bitmap; re-arm. */
	int (*harvest)(struct rdmig_dirty *d, struct rdmig_err *err);
	/* Stop tracking and release kernel state (tolerates a failed or no start). */
	void (*stop)(struct rdmig_dirty *d);
};

struct rdmig_dirty {
	const struct rdmig_dirty_ops *ops;
	struct rdmig_dirty_region *regions; /* copy of the caller's array; bitmaps shared */
	unsigned nregions;
	uint64_t page_size; /* bitmap granule: the base page size or a power-of-2 multiple */
	/*
	 * VMM log: the embedding VMM's harvest callback; it ORs the region's
	 * pages written since its last call into bitmap and re-arms its log.
	 * Set it after create, before start.
	 */
	int (*vmm_harvest)(void *ctx, unsigned region, uint64_t *bitmap, struct rdmig_err *err);
	void *vmm_ctx;
	/*
	 * Soft-dirty: stop (pause = true) every thread that writes the regions
	 * and return only once none is in the middle of a write; or let them
	 * go again (pause = false, must not fail). Required by that source;
	 * set it after create, before start.
	 */
	int (*pause_writers)(void *ctx, bool pause, struct rdmig_err *err);
	void *pause_ctx;
	/* Backend state. */
	int fd;		/* userfaultfd, or -1 */
	int pagemap_fd; /* /proc/self/pagemap, or -1 */
	void *scratch;	/* backend buffer */
	size_t scratch_len;
	bool started;
	/* Cost accounting: total harvest time and number of harvests. */
	uint64_t harvest_ns;
	uint64_t harvests;
};

/*
 * Create a tracker of `kind` over the regions; RDMIG_DIRTY_NONE (cold
 * migration) reports nothing. kind may be picked with
 * rdmig_dirty_best() (probes the kernel). The region array is copied;
 * the bitmaps stay the caller's and must outlive the tracker.
 */
int rdmig_dirty_create(enum rdmig_dirty_kind kind, struct rdmig_dirty_region *regions,
		       unsigned nregions, uint64_t page_size, struct rdmig_dirty **out,
		       struct rdmig_err *err);
/* Stops tracking if started; NULL is fine. */
void rdmig_dirty_destroy(struct rdmig_dirty *d);

/*
 * The best source this kernel offers (uffd-wp > soft-dirty > vmm > none).
 * Probing soft-dirty clears every soft-dirty bit of the process: it is
 * skipped (and soft-dirty returned) while a soft-dirty tracker runs.
 */
enum rdmig_dirty_kind rdmig_dirty_best(bool have_vmm_log);

/* -EALREADY if started; a failed start may be retried. */
int rdmig_dirty_start(struct rdmig_dirty *d, struct rdmig_err *err);
/*
 * Calls the source's harvest and adds its duration to harvest_ns. After a
 * failure the tracker may have lost pages (uffd-wp re-protects as it
 * scans): fail the migration, or restart it with a full copy.
 */
int rdmig_dirty_harvest(struct rdmig_dirty *d, struct rdmig_err *err);

/*
 * Harvest cost of `kind` on this machine: maps `bytes` (rounded up to whole
 * pages), touches them, starts tracking, then several times dirties
 * `dirty_pages` distinct random pages and harvests, checking that every
 * dirtied page is reported. *ms_per_gib is the mean harvest time in
 * milliseconds per GiB tracked. Single-threaded; vmm-bitmap cannot be
 * measured here (-EINVAL).
 */
int rdmig_dirty_measure(enum rdmig_dirty_kind kind, uint64_t bytes, uint64_t dirty_pages,
			double *ms_per_gib, struct rdmig_err *err);

/* ---- for the sources (dirty_*.c) ------------------------------------- */

extern const struct rdmig_dirty_ops rdmig_dirty_none_ops;
extern const struct rdmig_dirty_ops rdmig_dirty_vmm_ops;
extern const struct rdmig_dirty_ops rdmig_dirty_softdirty_ops;
extern const struct rdmig_dirty_ops rdmig_dirty_uffd_ops;

/* Set bits [first, first + n) of bm. */
void rdmig_dirty_set_bits(uint64_t *bm, uint64_t first, uint64_t n);

/* Mark the granules of region r that overlap bytes [off, off + len) of it. */
void rdmig_dirty_mark_bytes(const struct rdmig_dirty *d, unsigned r, uint64_t off, uint64_t len);

/* True while a soft-dirty tracker of this process is started. */
bool rdmig_dirty_softdirty_active(void);

#endif
