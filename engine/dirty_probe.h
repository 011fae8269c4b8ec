/* SPDX-License-Identifier: MIT */
/*
 * Which kernel dirty-page mechanisms work in this process, found by trying
 * them on a scratch mapping, and the small wrappers both the probes and the
 * engine's dirty-page sources use.
 *
 * All functions follow include/rdmig/err.h: 0 (or a count where stated) on
 * success, a negative errno plus a message naming what is missing otherwise.
 * None of them keeps state; none is meant for a hot path except
 * rdmig_pagemap_scan().
 */
#ifndef RDMIG_DIRTY_PROBE_H
#define RDMIG_DIRTY_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rdmig/err.h"
#include "rdmig/migrate.h"
#include "uffd_compat.h"

/*
 * Public (rdmig/migrate.h): enum rdmig_dirty_kind (best last),
 * rdmig_dirty_kind_name(), rdmig_dirty_pick(), rdmig_probe_uffd_wp_async()
 * and rdmig_probe_soft_dirty().
 */

/*
 * Open a userfaultfd (O_CLOEXEC | O_NONBLOCK). Without permission for a
 * full one it retries with UFFD_USER_MODE_ONLY, which async write-protect
 * does not need to be without (the kernel resolves those faults itself);
 * *user_mode_only (may be NULL) tells which one was opened.
 */
int rdmig_uffd_open(int *fd, bool *user_mode_only, struct rdmig_err *err);

/* Features the running kernel's UFFDIO_API offers (uses a throwaway fd). */
int rdmig_uffd_features(uint64_t *features, struct rdmig_err *err);

/*
 * Open a userfaultfd and enable `features` with UFFDIO_API. The message
 * names the first requested feature the kernel lacks.
 */
int rdmig_uffd_open_api(uint64_t features, int *fd, struct rdmig_err *err);

/* UFFDIO_REGISTER in write-protect mode; checks UFFDIO_WRITEPROTECT is offered. */
int rdmig_uffd_register_wp(int fd, void *addr, size_t len, struct rdmig_err *err);

/* UFFDIO_WRITEPROTECT: protect (true) or unprotect the range. */
int rdmig_uffd_writeprotect(int fd, void *addr, size_t len, bool protect, struct rdmig_err *err);

/* open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC). */
int rdmig_pagemap_open(int *fd, struct rdmig_err *err);

/*
 * PAGEMAP_SCAN. Fills arg->size; the caller sets everything else. Returns
 * the number of page_region entries written (>= 0) or a negative errno
 * (-ENOTTY: the kernel has no PAGEMAP_SCAN).
 */
int rdmig_pagemap_scan(int pagemap_fd, struct pm_scan_arg *arg, struct rdmig_err *err);

/* The 64-bit /proc/self/pagemap entry of the page holding addr. */
int rdmig_pagemap_entry(int pagemap_fd, const void *addr, uint64_t *entry, struct rdmig_err *err);

/* Write "4" to /proc/self/clear_refs: clears soft-dirty bits process-wide. */
int rdmig_soft_dirty_clear(struct rdmig_err *err);

#endif
