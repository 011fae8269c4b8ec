/* SPDX-License-Identifier: MIT */
/*
 * Dirty pages from userfaultfd async write-protect and PAGEMAP_SCAN
 * (Linux 6.7+).
 *
 * start: one userfaultfd with UFFD_FEATURE_WP_ASYNC, every region
 * registered in write-protect mode and write-protected. A write to a
 * protected page takes a fault the kernel resolves by itself (async: no
 * thread of ours is involved, no message is queued): it clears the page's
 * uffd-wp bit and the write proceeds. That cleared bit is the dirty bit.
 *
 * harvest: PAGEMAP_SCAN over each region, matching pages that are
 * PAGE_IS_WRITTEN (uffd-wp bit clear) and, with PM_SCAN_WP_MATCHING,
 * write-protecting each matched page again under the same page-table lock
 * that was held to read it. There is no window between "reported" and
 * "re-armed": a write that lands before the scan reaches the page is
 * reported now; one that lands after it faults again and is reported next
 * time. The kernel flushes stale writable TLB entries before the ioctl
 * returns, so a write through one happened before the caller's copy of the
 * page. This makes the harvest lock-free and exact for CPU writes.
 *
 * Never-touched pages: UFFD_FEATURE_WP_UNPOPULATED makes the protection
 * of an empty page-table entry stick (a marker is installed), so the first
 * write to a never-touched page is reported like any other and is
 * reported only at 4 KiB (no transparent huge page is faulted in under a
 * marker). The kernel turns WP_UNPOPULATED on by itself together with
 * WP_ASYNC, and offers both only where it can install the markers; we ask
 * for it explicitly when offered. Without markers, a first write to an
 * empty entry would install a page without the uffd-wp bit, which PAGEMAP_SCAN
 * also reports as written: never a miss, at worst extra pages (and a whole
 * 2 MiB THP), which the bulk round copies anyway.
 *
 * Huge pages: a write to a protected transparent huge page splits it
 * (async mode), so reporting stays at 4 KiB there too. With WP_ASYNC the
 * kernel accepts any memory in the regions (anonymous, memfd/shmem,
 * hugetlbfs).
 *
 * Costs: protecting an unpopulated range allocates its page tables
 * (2 MiB per GiB); each harvest walks the page tables of every region.
 *
 * PM_SCAN_CHECK_WPASYNC makes the scan fail with EPERM, instead of silently
 * reporting nothing, if a region is no longer registered (unmapped and
 * mapped again, mremap). A failed harvest may have re-protected pages it
 * could not report: the caller must treat it as fatal for the migration.
 */
#include "dirty.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* page_region entries per PAGEMAP_SCAN call (24 KiB); the scan loops when it fills. */
#define UFFD_VEC_LEN 1024

static void uffd_stop(struct rdmig_dirty *d)
{
	/*
	 * Closing the userfaultfd unregisters every range registered with it;
	 * the kernel then clears the ranges' uffd-wp bits and markers, which
	 * mean nothing on an unregistered mapping anyway.
	 */
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	if (d->pagemap_fd >= 0)
		close(d->pagemap_fd);
	d->pagemap_fd = -1;
	free(d->scratch);
	d->scratch = NULL;
	d->scratch_len = 0;
}

static int uffd_start(struct rdmig_dirty *d, struct rdmig_err *err)
{
	uint64_t offered, features = UFFD_FEATURE_WP_ASYNC;
	int ret;

	ret = rdmig_uffd_features(&offered, err);
	if (ret)
		return ret;
	if (offered & UFFD_FEATURE_WP_UNPOPULATED)
		features |= UFFD_FEATURE_WP_UNPOPULATED;
	ret = rdmig_uffd_open_api(features, &d->fd, err);
	if (ret)
		goto out_stop;
	ret = rdmig_pagemap_open(&d->pagemap_fd, err);
	if (ret)
		goto out_stop;
	d->scratch_len = UFFD_VEC_LEN * sizeof(struct page_region);
	d->scratch = malloc(d->scratch_len);
	if (!d->scratch) {
		ret = rdmig_seterr(err, -ENOMEM, "out of memory for the PAGEMAP_SCAN vector");
		goto out_stop;
	}
	for (unsigned r = 0; r < d->nregions; r++) {
		struct rdmig_dirty_region *reg = &d->regions[r];

		ret = rdmig_uffd_register_wp(d->fd, reg->addr, reg->len, err);
		if (!ret)
			ret = rdmig_uffd_writeprotect(d->fd, reg->addr, reg->len, true, err);
		if (ret) {
			rdmig_err_prefix(err, "region %u (%p, %llu bytes)", r, reg->addr,
					 (unsigned long long)reg->len);
			goto out_stop;
		}
	}
	return 0;

out_stop:
	uffd_stop(d);
	return ret;
}

static int uffd_harvest_region(struct rdmig_dirty *d, unsigned r, struct rdmig_err *err)
{
	const struct rdmig_dirty_region *reg = &d->regions[r];
	struct page_region *vec = d->scratch;
	uint64_t base = (uintptr_t)reg->addr, end = base + reg->len, cur = base;

	while (cur < end) {
		struct pm_scan_arg arg = {
		    .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		    .start = cur,
		    .end = end,
		    .vec = (uintptr_t)vec,
		    .vec_len = d->scratch_len / sizeof(*vec),
		    .category_mask = PAGE_IS_WRITTEN,
		    .return_mask = PAGE_IS_WRITTEN,
		};
		int n = rdmig_pagemap_scan(d->pagemap_fd, &arg, err);

		if (n == -EPERM)
			rdmig_err_prefix(err,
					 "region %u is no longer registered for async "
					 "write-protect (unmapped or remapped?)",
					 r);
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (vec[i].start < cur || vec[i].end > end || vec[i].start >= vec[i].end)
				return rdmig_seterr(err, -EIO,
						    "PAGEMAP_SCAN returned [%#llx, %#llx) outside "
						    "the scanned [%#llx, %#llx)",
						    (unsigned long long)vec[i].start,
						    (unsigned long long)vec[i].end,
						    (unsigned long long)cur,
						    (unsigned long long)end);
			rdmig_dirty_mark_bytes(d, r, vec[i].start - base,
					       vec[i].end - vec[i].start);
		}
		/* A full vector stops the walk early; walk_end says where to go on. */
		if (arg.walk_end <= cur || arg.walk_end > end)
			return rdmig_seterr(err, -EIO,
					    "PAGEMAP_SCAN walk stopped at %#llx, scanning "
					    "[%#llx, %#llx)",
					    (unsigned long long)arg.walk_end,
					    (unsigned long long)cur, (unsigned long long)end);
		cur = arg.walk_end;
	}
	return 0;
}

static int uffd_harvest(struct rdmig_dirty *d, struct rdmig_err *err)
{
	for (unsigned r = 0; r < d->nregions; r++) {
		int ret = uffd_harvest_region(d, r, err);

		if (ret)
			return ret;
	}
	return 0;
}

const struct rdmig_dirty_ops rdmig_dirty_uffd_ops = {
    .kind = RDMIG_DIRTY_UFFD_WP,
    .start = uffd_start,
    .harvest = uffd_harvest,
    .stop = uffd_stop,
};
