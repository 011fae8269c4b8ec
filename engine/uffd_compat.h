/* SPDX-License-Identifier: MIT */
/*
 * Kernel UAPI for userfaultfd async write-protect and the PAGEMAP_SCAN ioctl
 * (both Linux 6.7), which Debian bookworm's linux-libc-dev (6.1) lacks.
 *
 * The values are the kernel ABI (include/uapi/linux/userfaultfd.h and
 * include/uapi/linux/fs.h); they never change once released. Every one is
 * guarded so that newer system headers win. Whether the *running* kernel
 * supports them is a run-time question: see dirty_probe.h.
 *
 * Include this instead of <linux/userfaultfd.h> / <linux/fs.h>. Beware that
 * <linux/fs.h> pulls in <linux/mount.h>, which clashes with glibc's
 * <sys/mount.h> on glibc < 2.36.1: keep the two out of one file.
 */
#ifndef RDMIG_UFFD_COMPAT_H
#define RDMIG_UFFD_COMPAT_H

#include <linux/fs.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

/* userfaultfd(2) flag (5.11). */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* UFFDIO_API features. */
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13) /* 6.4: WP also marks empty PTEs */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14) /* 6.6 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15) /* 6.7: the kernel resolves WP faults itself */
#endif

/* PAGEMAP_SCAN on /proc/PID/pagemap (6.7). */
#ifndef PAGEMAP_SCAN
/*
 * One run of pages [start, end) sharing the categories reported (the subset
 * of return_mask that applies).
 */
struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

struct pm_scan_arg {
	__u64 size;		   /* sizeof(struct pm_scan_arg) */
	__u64 flags;		   /* PM_SCAN_* */
	__u64 start;		   /* range to walk, page aligned */
	__u64 end;		   /* exclusive */
	__u64 walk_end;		   /* out: where the walk stopped (== end when complete) */
	__u64 vec;		   /* struct page_region array for the result */
	__u64 vec_len;		   /* entries in vec */
	__u64 max_pages;	   /* stop after this many pages (0: no limit) */
	__u64 category_inverted;   /* categories that match when clear */
	__u64 category_mask;	   /* all of these must match */
	__u64 category_anyof_mask; /* at least one of these must match */
	__u64 return_mask;	   /* categories reported in page_region */
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0) /* write-protect the matched pages again */
#endif
#ifndef PM_SCAN_CHECK_WPASYNC
#define PM_SCAN_CHECK_WPASYNC (1 << 1) /* fail on a page without async WP */
#endif

/* Categories for the pm_scan_arg masks and page_region.categories. */
#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED (1 << 0) /* registered for async write-protect */
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WRITTEN (1 << 1) /* written since it was last write-protected */
#endif
#ifndef PAGE_IS_FILE
#define PAGE_IS_FILE (1 << 2)
#endif
#ifndef PAGE_IS_PRESENT
#define PAGE_IS_PRESENT (1 << 3)
#endif
#ifndef PAGE_IS_SWAPPED
#define PAGE_IS_SWAPPED (1 << 4)
#endif
#ifndef PAGE_IS_PFNZERO
#define PAGE_IS_PFNZERO (1 << 5)
#endif
#ifndef PAGE_IS_HUGE
#define PAGE_IS_HUGE (1 << 6)
#endif
#ifndef PAGE_IS_SOFT_DIRTY
#define PAGE_IS_SOFT_DIRTY (1 << 7)
#endif

/* The layout is ABI: catch a typo here rather than as EINVAL at run time. */
_Static_assert(sizeof(struct page_region) == 24, "struct page_region is 24 bytes");
_Static_assert(sizeof(struct pm_scan_arg) == 96, "struct pm_scan_arg is 96 bytes");

/* /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define RDMIG_PM_SOFT_DIRTY	    (1ULL << 55)
#define RDMIG_PM_EXCLUSIVE	    (1ULL << 56)
#define RDMIG_PM_UFFD_WP	    (1ULL << 57)
#define RDMIG_PM_FILE_SHARED	    (1ULL << 61)
#define RDMIG_PM_SWAPPED	    (1ULL << 62)
#define RDMIG_PM_PRESENT	    (1ULL << 63)
#define RDMIG_CLEAR_REFS_SOFT_DIRTY "4"

#endif
