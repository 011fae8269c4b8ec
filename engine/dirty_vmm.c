/* SPDX-License-Identifier: MIT */
/*
 * Dirty pages from the embedding VMM's own log (KVM's dirty bitmap or
 * dirty ring, as collected by the VMM), for library users. Pages written
 * by a KVM guest go through the second-level page tables, which neither
 * userfaultfd nor soft-dirty see in the VMM process; the VMM has to hand
 * over its log.
 *
 * The contract of the callback (d->vmm_harvest): for region `region`, OR
 * into `bitmap` (granule d->page_size, bit i = bytes [i * page_size,
 * (i + 1) * page_size) of the region) every page written since its
 * previous call, and re-arm its log so that a later write is reported by a
 * later call; return 0 or a negative errno with a message in err. Getting
 * and clearing must be atomic per page on the VMM side (KVM's
 * KVM_GET_DIRTY_LOG with manual protect + KVM_CLEAR_DIRTY_LOG, or the dirty
 * ring, are): a page written between the VMM's read and its re-arm would
 * otherwise be lost, as soft-dirty's comment explains. The VMM enables
 * its log before start and keeps it on until stop.
 */
#include "dirty.h"

#include <errno.h>

static int vmm_start(struct rdmig_dirty *d, struct rdmig_err *err)
{
	if (!d->vmm_harvest)
		return rdmig_seterr(err, -EINVAL,
				    "the vmm-bitmap source needs the VMM's harvest callback "
				    "(vmm_harvest)");
	return 0;
}

static int vmm_harvest(struct rdmig_dirty *d, struct rdmig_err *err)
{
	for (unsigned r = 0; r < d->nregions; r++) {
		int ret = d->vmm_harvest(d->vmm_ctx, r, d->regions[r].bitmap, err);

		if (ret > 0)
			ret = -EIO; /* a callback bug must not look like success */
		if (ret) {
			rdmig_seterr(err, ret, "failed without a message");
			rdmig_err_prefix(err, "VMM dirty log of region %u", r);
			return ret;
		}
	}
	return 0;
}

static void vmm_stop(struct rdmig_dirty *d)
{
}

const struct rdmig_dirty_ops rdmig_dirty_vmm_ops = {
    .kind = RDMIG_DIRTY_VMM_LOG,
    .start = vmm_start,
    .harvest = vmm_harvest,
    .stop = vmm_stop,
};
