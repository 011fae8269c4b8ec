/* SPDX-License-Identifier: MIT */
/*
 * Dirty pages from the soft-dirty bit (CONFIG_MEM_SOFT_DIRTY): for kernels
 * without PAGEMAP_SCAN (Debian 6.1).
 *
 * The kernel interface: writing "4" to /proc/self/clear_refs clears the
 * soft-dirty bit of every page of the process and write-protects it; the
 * next write faults and sets the bit again; bit 55 of a page's
 * /proc/self/pagemap entry reads it. There is no operation that reads and
 * clears a page's bit atomically: reading (pagemap) and clearing
 * (clear_refs) are two separate walks, and the clear is process-wide.
 *
 * Why no lock-free harvest is correct. Take any sequence of reads R and
 * clears C, and a page P whose last read before a clear C is R_P. A write
 * to P in the window (R_P, C) sets P's bit after it was read, and C clears
 * it. If P was clean at R_P it was not reported, and from then on nothing
 * in the kernel remembers the write: no later read shows it unless P is
 * written again. The guest can leave P alone for the rest of the migration
 * and the destination keeps the old contents. So:
 *   - read, clear: loses writes in (read_P, clear) to pages clean at read_P;
 *   - clear, read: loses everything written since the previous read;
 *   - read, clear, read again, OR both: the second read only sees writes
 *     after the clear, so the (read_P, clear) writes are still lost;
 *   - "the final, paused round is authoritative" does not help: that round
 *     reads bits set since the last clear, and the lost write happened
 *     before that clear. The invariant ("every write is followed by a
 *     harvest that reports its page") is exactly what the window breaks.
 * (A write in the window to a page that *was* dirty at R_P is harmless:
 * P is reported and copied after the harvest returns, so the copy holds
 * the write.) The race is not theoretical: clear_refs also walks the page
 * tables of the whole process, so the window lasts milliseconds.
 *
 * What is correct: no writer may run between the read of a page and the
 * clear. The harvest therefore pauses the writers (d->pause_writers, e.g.
 * the guest's vCPUs), reads the pagemap of every region, clears, and lets
 * them go: the pause lasts one read plus one clear_refs, not the copy.
 * Writes before the pause are reported now; writes after the resume fault
 * on the page-table entries clear_refs write-protected (their stale TLB
 * entries were flushed before clear_refs returned) and are reported next
 * time. CRIU's iterative pre-dump freezes its task around the same two
 * steps for the same reason.
 *
 * Failure is benign: a failed read happens before the clear, and a failed
 * clear leaves the bits set, so the next harvest reports the pages again.
 *
 * Other properties, all on the safe side (extra pages, never fewer):
 *   - a mapping created, or grown by merging a neighbour, since the last
 *     clear reports all its pages (VM_SOFTDIRTY);
 *   - a write into a transparent huge page reports its 512 pages;
 *   - the clear is process-wide: one soft-dirty tracker per process, and
 *     its cost grows with the whole process, not only the regions.
 */
#include "dirty.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* pagemap entries read per pread: 1 MiB of entries covers 512 MiB. */
#define SD_CHUNK_ENTRIES (128 * 1024)

/* The started soft-dirty tracker, if any: clear_refs would clear the bits of a second one. */
static struct rdmig_dirty *_Atomic sd_owner;

bool rdmig_dirty_softdirty_active(void)
{
	return atomic_load(&sd_owner) != NULL;
}

static void sd_stop(struct rdmig_dirty *d)
{
	struct rdmig_dirty *self = d;

	if (d->pagemap_fd >= 0)
		close(d->pagemap_fd);
	d->pagemap_fd = -1;
	free(d->scratch);
	d->scratch = NULL;
	d->scratch_len = 0;
	atomic_compare_exchange_strong(&sd_owner, &self, NULL);
}

static int sd_start(struct rdmig_dirty *d, struct rdmig_err *err)
{
	struct rdmig_dirty *none = NULL;
	uint64_t psz = (uint64_t)sysconf(_SC_PAGESIZE), most = 0;
	int ret;

	if (!d->pause_writers)
		return rdmig_seterr(err, -EINVAL,
				    "soft-dirty tracking needs a way to pause the guest's "
				    "writers during each harvest (pause_writers)");
	if (!atomic_compare_exchange_strong(&sd_owner, &none, d))
		return rdmig_seterr(err, -EBUSY,
				    "another soft-dirty tracker runs in this process (clearing "
				    "soft-dirty bits is process-wide)");
	ret = rdmig_pagemap_open(&d->pagemap_fd, err);
	if (ret)
		goto out_stop;
	for (unsigned r = 0; r < d->nregions; r++)
		if (d->regions[r].len / psz > most)
			most = d->regions[r].len / psz;
	if (most > SD_CHUNK_ENTRIES)
		most = SD_CHUNK_ENTRIES;
	d->scratch_len = (most ? most : 1) * sizeof(uint64_t);
	d->scratch = malloc(d->scratch_len);
	if (!d->scratch) {
		ret = rdmig_seterr(err, -ENOMEM, "out of memory for the pagemap buffer");
		goto out_stop;
	}
	/*
	 * Writers may run during this clear: what they write before start
	 * returns is covered by the bulk copy that follows start.
	 */
	ret = rdmig_soft_dirty_clear(err);
	if (ret)
		goto out_stop;
	return 0;

out_stop:
	sd_stop(d);
	return ret;
}

/* OR the soft-dirty pages of region r into its bitmap. Writers are paused. */
static int sd_read_region(struct rdmig_dirty *d, unsigned r, struct rdmig_err *err)
{
	const struct rdmig_dirty_region *reg = &d->regions[r];
	uint64_t psz = (uint64_t)sysconf(_SC_PAGESIZE), *ent = d->scratch;
	uint64_t npages = reg->len / psz, first = (uintptr_t)reg->addr / psz;
	uint64_t per_granule = d->page_size / psz, chunk = d->scratch_len / sizeof(*ent);

	for (uint64_t done = 0; done < npages;) {
		uint64_t want = npages - done < chunk ? npages - done : chunk;
		size_t bytes = want * sizeof(*ent), got = 0;

		while (got < bytes) {
			ssize_t n = pread(d->pagemap_fd, (char *)ent + got, bytes - got,
					  (off_t)((first + done) * sizeof(*ent) + got));

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return rdmig_seterr_errno(err, rdmig_neg_errno(),
							  "read /proc/self/pagemap (region %u)", r);
			if (n == 0)
				return rdmig_seterr(err, -EIO,
						    "short read from /proc/self/pagemap "
						    "(region %u)",
						    r);
			got += (size_t)n;
		}
		for (uint64_t i = 0; i < want; i++) {
			if (ent[i] & RDMIG_PM_SOFT_DIRTY) {
				uint64_t g = (done + i) / per_granule;

				reg->bitmap[g / 64] |= 1ULL << (g % 64);
			}
		}
		done += want;
	}
	return 0;
}

static int sd_harvest(struct rdmig_dirty *d, struct rdmig_err *err)
{
	int ret;

	ret = d->pause_writers(d->pause_ctx, true, err);
	if (ret) {
		rdmig_err_prefix(err, "pause the writers");
		return ret;
	}
	for (unsigned r = 0; r < d->nregions && !ret; r++)
		ret = sd_read_region(d, r, err);
	/* Only after every region was read: the clear forgets what it clears. */
	if (!ret)
		ret = rdmig_soft_dirty_clear(err);
	d->pause_writers(d->pause_ctx, false, NULL);
	return ret;
}

const struct rdmig_dirty_ops rdmig_dirty_softdirty_ops = {
    .kind = RDMIG_DIRTY_SOFT_DIRTY,
    .start = sd_start,
    .harvest = sd_harvest,
    .stop = sd_stop,
};
