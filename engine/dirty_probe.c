/* SPDX-License-Identifier: MIT */
#include "dirty_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Pages in the probes' scratch mapping: 0,1 populated before protecting, 2,3 not. */
#define PROBE_PAGES 4

const char *rdmig_dirty_kind_name(enum rdmig_dirty_kind kind)
{
	switch (kind) {
	case RDMIG_DIRTY_UFFD_WP:
		return "uffd-wp";
	case RDMIG_DIRTY_SOFT_DIRTY:
		return "soft-dirty";
	case RDMIG_DIRTY_VMM_LOG:
		return "vmm-bitmap";
	case RDMIG_DIRTY_NONE:
		break;
	}
	return "none";
}

enum rdmig_dirty_kind rdmig_dirty_pick(int uffd_wp_rc, int soft_dirty_rc, bool have_vmm_log)
{
	if (uffd_wp_rc == 0)
		return RDMIG_DIRTY_UFFD_WP;
	if (soft_dirty_rc == 0)
		return RDMIG_DIRTY_SOFT_DIRTY;
	if (have_vmm_log)
		return RDMIG_DIRTY_VMM_LOG;
	return RDMIG_DIRTY_NONE;
}

static long sys_userfaultfd(int flags)
{
#ifdef SYS_userfaultfd
	return syscall(SYS_userfaultfd, flags);
#else
	errno = ENOSYS;
	return -1;
#endif
}

int rdmig_uffd_open(int *fd, bool *user_mode_only, struct rdmig_err *err)
{
	const int base = O_CLOEXEC | O_NONBLOCK;
	long ret;
	int first;

	*fd = -1;
	ret = sys_userfaultfd(base);
	if (ret >= 0) {
		if (user_mode_only)
			*user_mode_only = false;
		*fd = (int)ret;
		return 0;
	}
	first = errno;
	if (first == ENOSYS)
		return rdmig_seterr(err, -ENOSYS,
				    "kernel has no userfaultfd (built without CONFIG_USERFAULTFD)");
	if (first == EPERM) {
		/* Unprivileged with vm.unprivileged_userfaultfd=0: user-mode-only is allowed. */
		ret = sys_userfaultfd(base | UFFD_USER_MODE_ONLY);
		if (ret >= 0) {
			if (user_mode_only)
				*user_mode_only = true;
			*fd = (int)ret;
			return 0;
		}
		/* EINVAL here is a pre-5.11 kernel without the flag: EPERM stays the cause. */
		return rdmig_seterr(
		    err, -EPERM,
		    "userfaultfd not permitted: sysctl vm.unprivileged_userfaultfd=1 "
		    "or run as root (a container's seccomp profile can also block it)");
	}
	return rdmig_seterr_errno(err, -first, "userfaultfd()");
}

/* One UFFDIO_API per fd: the kernel refuses a second one. */
static int uffd_api(int fd, uint64_t features, uint64_t *offered, struct rdmig_err *err)
{
	struct uffdio_api api = {.api = UFFD_API, .features = features};

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "UFFDIO_API");
	if (offered)
		*offered = api.features;
	return 0;
}

int rdmig_uffd_features(uint64_t *features, struct rdmig_err *err)
{
	int fd, ret;

	*features = 0;
	ret = rdmig_uffd_open(&fd, NULL, err);
	if (ret)
		return ret;
	ret = uffd_api(fd, 0, features, err);
	close(fd);
	return ret;
}

static const struct {
	uint64_t bit;
	const char *missing;
} uffd_feature_msgs[] = {
    {UFFD_FEATURE_PAGEFAULT_FLAG_WP,
     "kernel lacks userfaultfd write-protect (needs Linux 5.7+ with "
     "CONFIG_HAVE_ARCH_USERFAULTFD_WP)"},
    {UFFD_FEATURE_WP_UNPOPULATED, "kernel lacks UFFD_FEATURE_WP_UNPOPULATED (needs Linux 6.4+)"},
    {UFFD_FEATURE_WP_ASYNC, "kernel lacks UFFD_FEATURE_WP_ASYNC (needs Linux 6.7+)"},
};

int rdmig_uffd_open_api(uint64_t features, int *fd, struct rdmig_err *err)
{
	uint64_t offered;
	int ret;

	*fd = -1;
	ret = rdmig_uffd_features(&offered, err);
	if (ret)
		return ret;
	for (size_t i = 0; i < sizeof(uffd_feature_msgs) / sizeof(uffd_feature_msgs[0]); i++)
		if ((features & uffd_feature_msgs[i].bit) && !(offered & uffd_feature_msgs[i].bit))
			return rdmig_seterr(err, -EOPNOTSUPP, "%s", uffd_feature_msgs[i].missing);
	if (features & ~offered)
		return rdmig_seterr(
		    err, -EOPNOTSUPP, "kernel lacks userfaultfd features 0x%llx (offers 0x%llx)",
		    (unsigned long long)(features & ~offered), (unsigned long long)offered);
	ret = rdmig_uffd_open(fd, NULL, err);
	if (ret)
		return ret;
	ret = uffd_api(*fd, features, NULL, err);
	if (ret) {
		close(*fd);
		*fd = -1;
	}
	return ret;
}

int rdmig_uffd_register_wp(int fd, void *addr, size_t len, struct rdmig_err *err)
{
	struct uffdio_register reg = {
	    .range = {.start = (uintptr_t)addr, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(),
					  "UFFDIO_REGISTER (write-protect)");
	if (!(reg.ioctls & (1ULL << _UFFDIO_WRITEPROTECT)))
		return rdmig_seterr(err, -EOPNOTSUPP,
				    "userfaultfd registration does not offer UFFDIO_WRITEPROTECT "
				    "for this memory");
	return 0;
}

int rdmig_uffd_writeprotect(int fd, void *addr, size_t len, bool protect, struct rdmig_err *err)
{
	struct uffdio_writeprotect wp = {
	    .range = {.start = (uintptr_t)addr, .len = len},
	    .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "UFFDIO_WRITEPROTECT");
	return 0;
}

int rdmig_pagemap_open(int *fd, struct rdmig_err *err)
{
	*fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "open /proc/self/pagemap");
	return 0;
}

int rdmig_pagemap_scan(int pagemap_fd, struct pm_scan_arg *arg, struct rdmig_err *err)
{
	int n;

	arg->size = sizeof(*arg);
	n = ioctl(pagemap_fd, PAGEMAP_SCAN, arg);
	if (n >= 0)
		return n;
	if (errno == ENOTTY)
		return rdmig_seterr(err, -ENOTTY, "kernel lacks PAGEMAP_SCAN (needs Linux 6.7+)");
	return rdmig_seterr_errno(err, rdmig_neg_errno(), "PAGEMAP_SCAN");
}

int rdmig_pagemap_entry(int pagemap_fd, const void *addr, uint64_t *entry, struct rdmig_err *err)
{
	long psz = sysconf(_SC_PAGESIZE);
	off_t off = (off_t)((uintptr_t)addr / (uintptr_t)psz * sizeof(uint64_t));
	ssize_t n;

	n = pread(pagemap_fd, entry, sizeof(*entry), off);
	if (n < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "read /proc/self/pagemap");
	if (n != (ssize_t)sizeof(*entry))
		return rdmig_seterr(err, -EIO, "short read from /proc/self/pagemap");
	return 0;
}

int rdmig_soft_dirty_clear(struct rdmig_err *err)
{
	const char *v = RDMIG_CLEAR_REFS_SOFT_DIRTY;
	int fd, ret = 0;

	fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "open /proc/self/clear_refs");
	if (write(fd, v, strlen(v)) != (ssize_t)strlen(v))
		ret =
		    rdmig_seterr_errno(err, rdmig_neg_errno(), "write 4 to /proc/self/clear_refs");
	close(fd);
	return ret;
}

/*
 * Scan [base, base + len) for written pages, re-protecting them, and check
 * that the result is exactly page `want`.
 */
static int scan_expect(int pmfd, char *base, size_t len, size_t psz, unsigned want,
		       struct rdmig_err *err)
{
	struct page_region vec[PROBE_PAGES];
	struct pm_scan_arg arg = {
	    .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
	    .start = (uintptr_t)base,
	    .end = (uintptr_t)base + len,
	    .vec = (uintptr_t)vec,
	    .vec_len = PROBE_PAGES,
	    .category_mask = PAGE_IS_WRITTEN,
	    .return_mask = PAGE_IS_WRITTEN,
	};
	uint64_t ws = (uintptr_t)base + want * psz;
	int n;

	n = rdmig_pagemap_scan(pmfd, &arg, err);
	if (n < 0)
		return n;
	if (n == 1 && vec[0].start == ws && vec[0].end == ws + psz)
		return 0;
	if (n == 0)
		return rdmig_seterr(err, -EIO,
				    "PAGEMAP_SCAN did not report the page written under async "
				    "write-protect (page %u)",
				    want);
	return rdmig_seterr(err, -EIO,
			    "PAGEMAP_SCAN reported %d region(s) starting at page %llu, "
			    "expected only page %u",
			    n, (unsigned long long)((vec[0].start - (uintptr_t)base) / psz), want);
}

int rdmig_probe_uffd_wp_async(struct rdmig_err *err)
{
	size_t psz = (size_t)sysconf(_SC_PAGESIZE), len = PROBE_PAGES * psz;
	volatile char *page;
	char *mem;
	int uffd, pmfd, ret;

	ret = rdmig_uffd_open_api(UFFD_FEATURE_WP_ASYNC, &uffd, err);
	if (ret)
		return ret;
	ret = rdmig_pagemap_open(&pmfd, err);
	if (ret)
		goto out_close_uffd;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		ret =
		    rdmig_seterr_errno(err, rdmig_neg_errno(), "mmap of the probe's scratch pages");
		goto out_close_pagemap;
	}
	/* Guest RAM is partly populated: cover both kinds of page. */
	memset(mem, 0x5a, 2 * psz);

	ret = rdmig_uffd_register_wp(uffd, mem, len, err);
	if (ret)
		goto out_unmap;
	ret = rdmig_uffd_writeprotect(uffd, mem, len, true, err);
	if (ret)
		goto out_unmap;

	page = mem + 1 * psz; /* populated before protecting */
	*page = 1;
	ret = scan_expect(pmfd, mem, len, psz, 1, err);
	if (ret)
		goto out_unmap;

	/* Page 1 must have been re-protected; page 3 was never populated. */
	page = mem + 3 * psz;
	*page = 1;
	ret = scan_expect(pmfd, mem, len, psz, 3, err);

out_unmap:
	/* munmap also drops the userfaultfd registration of the range. */
	munmap(mem, len);
out_close_pagemap:
	close(pmfd);
out_close_uffd:
	close(uffd);
	return ret;
}

int rdmig_probe_soft_dirty(struct rdmig_err *err)
{
	size_t psz = (size_t)sysconf(_SC_PAGESIZE);
	volatile char *mem;
	uint64_t ent;
	int pmfd, ret;

	ret = rdmig_pagemap_open(&pmfd, err);
	if (ret)
		return ret;
	mem = mmap(NULL, psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		ret =
		    rdmig_seterr_errno(err, rdmig_neg_errno(), "mmap of the probe's scratch page");
		goto out_close_pagemap;
	}
	mem[0] = 1; /* present, so bit 55 is meaningful */

	ret = rdmig_soft_dirty_clear(err);
	if (ret)
		goto out_unmap;
	ret = rdmig_pagemap_entry(pmfd, (const void *)mem, &ent, err);
	if (ret)
		goto out_unmap;
	if (!(ent & RDMIG_PM_PRESENT)) {
		ret = rdmig_seterr(err, -EIO, "probe page not present after being written");
		goto out_unmap;
	}
	if (ent & RDMIG_PM_SOFT_DIRTY) {
		ret = rdmig_seterr(err, -EIO,
				   "writing 4 to /proc/self/clear_refs did not clear the "
				   "soft-dirty bit");
		goto out_unmap;
	}

	mem[0] = 2;
	ret = rdmig_pagemap_entry(pmfd, (const void *)mem, &ent, err);
	if (ret)
		goto out_unmap;
	if (!(ent & RDMIG_PM_SOFT_DIRTY))
		ret = rdmig_seterr(err, -EOPNOTSUPP,
				   "kernel lacks soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY is not "
				   "set)");

out_unmap:
	munmap((void *)mem, psz);
out_close_pagemap:
	close(pmfd);
	return ret;
}
