/* SPDX-License-Identifier: MIT */
/*
 * Does a guest's RAM fit in this host's memory? Checked before a destination
 * allocates anything, so that a guest too large is refused at setup with the
 * limit named, instead of the kernel's OOM killer ending the process halfway
 * through the copy (an RDMA registration faults every page in at once).
 */
#ifndef RDMIG_MEMFIT_H
#define RDMIG_MEMFIT_H

#include <stdint.h>

#include "rdmig/err.h"

/*
 * 0 when `bytes` more can be allocated: within MemAvailable and within the
 * memory limit of this process's cgroup (v2 memory.max, or v1
 * memory.limit_in_bytes, less what the cgroup already uses). -ENOMEM with
 * the limit that is short otherwise. Unreadable files are not limits.
 */
int rdmig_mem_fit(uint64_t bytes, struct rdmig_err *err);

#endif
