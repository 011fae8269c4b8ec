/* SPDX-License-Identifier: MIT */
/*
 * Synthetic guest: one anonymous mapping carved into regions, written by
 * vCPU threads. This file creates and destroys it; guest_int.h says which
 * file does the rest and who owns what.
 */
#include "guest_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"

#define RAM_MAX_BYTES (1ULL << 40) /* 1 TiB */
#define THP_SIZE      (2ull << 20)

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

uint64_t rdmig_guest_vcpu_seed(uint64_t seed, unsigned k)
{
	uint64_t x = seed ^ (0xd1b54a32d192ed03ULL * (k + 1));
	uint64_t r = splitmix64(&x);

	return r ? r : 0x9e3779b97f4a7c15ULL;
}

void rdmig_incr_slice(uint64_t npages, unsigned vcpus, unsigned k, uint64_t *first, uint64_t *len)
{
	uint64_t base, rem;

	if (vcpus == 0) {
		*first = 0;
		*len = npages;
		return;
	}
	base = npages / vcpus;
	rem = npages % vcpus;
	*first = k * base + (k < rem ? k : rem);
	*len = base + (k < rem ? 1 : 0);
}

static int cfg_check(const struct rdmig_guest_cfg *cfg, struct rdmig_err *err)
{
	uint64_t pages;

	if (!cfg)
		return rdmig_seterr(err, -EINVAL, "guest: no configuration");
	if (cfg->ram_size == 0)
		return rdmig_seterr(err, -EINVAL, "guest RAM size must be greater than 0");
	if (cfg->ram_size % RDMIG_PAGE_SIZE)
		return rdmig_seterr(err, -EINVAL,
				    "guest RAM size %" PRIu64
				    " is not a multiple of the %u-byte page size",
				    cfg->ram_size, RDMIG_PAGE_SIZE);
	if (cfg->ram_size > RAM_MAX_BYTES)
		return rdmig_seterr(err, -EINVAL,
				    "guest RAM size %" PRIu64 " exceeds the limit of 1 TiB",
				    cfg->ram_size);
	pages = cfg->ram_size / RDMIG_PAGE_SIZE;
	if (cfg->nregions > RDMIG_GUEST_MAX_REGIONS)
		return rdmig_seterr(err, -EINVAL,
				    "guest RAM regions %u out of range: expects a value between 1 "
				    "and %u",
				    cfg->nregions, RDMIG_GUEST_MAX_REGIONS);
	if (cfg->nregions > pages)
		return rdmig_seterr(err, -EINVAL,
				    "guest RAM of %" PRIu64
				    " pages cannot be split into %u regions of whole pages",
				    pages, cfg->nregions);
	if (cfg->vcpus > RDMIG_GUEST_MAX_VCPUS)
		return rdmig_seterr(err, -EINVAL,
				    "guest vcpus %u out of range: expects a value between 0 and %u",
				    cfg->vcpus, RDMIG_GUEST_MAX_VCPUS);
	if (cfg->vcpus > pages)
		return rdmig_seterr(err, -EINVAL,
				    "guest vcpus %u exceed the %" PRIu64
				    " pages of guest RAM (each vCPU needs a page)",
				    cfg->vcpus, pages);
	if ((unsigned)cfg->workload > RDMIG_WL_HOTSET)
		return rdmig_seterr(err, -EINVAL, "guest workload %d unknown", (int)cfg->workload);
	return 0;
}

/*
 * Anonymous RAM of `len` bytes. With `huge`, 2 MiB aligned (map a THP more
 * and trim both ends) so that every whole 2 MiB of it can be a huge page.
 */
static void *map_ram(uint64_t len, bool huge)
{
	uint8_t *p, *start;
	uint64_t head;

	if (!huge)
		return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p = mmap(NULL, len + THP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return p;
	start = (uint8_t *)(((uintptr_t)p + THP_SIZE - 1) & ~(uintptr_t)(THP_SIZE - 1));
	head = (uint64_t)(start - p);
	if (head)
		munmap(p, head);
	if (THP_SIZE - head)
		munmap(start + len, THP_SIZE - head);
	return start;
}

int rdmig_guest_create(const struct rdmig_guest_cfg *cfg, struct rdmig_guest **out,
		       struct rdmig_err *err)
{
	struct rdmig_guest *g;
	uint64_t base, rem, page;
	void *ram;
	int ret;

	*out = NULL;
	ret = cfg_check(cfg, err);
	if (ret)
		return ret;
	if (posix_memalign((void **)&g, 64, sizeof(*g)))
		return rdmig_seterr(err, -ENOMEM, "guest: out of memory");
	memset(g, 0, sizeof(*g));
	g->cfg = *cfg;
	if (g->cfg.nregions == 0)
		g->cfg.nregions = 1;
	g->npages = cfg->ram_size / RDMIG_PAGE_SIZE;

	g->cfg.vcpu_cpus = NULL;
	if (cfg->vcpu_cpus && rdmig_cpuset_count(cfg->vcpu_cpus) > 0) {
		g->vcpu_cpus = *cfg->vcpu_cpus;
		g->cfg.vcpu_cpus = &g->vcpu_cpus;
	}

	ram = map_ram(cfg->ram_size, cfg->hugepages);
	if (ram == MAP_FAILED) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(),
					 "guest: mmap of %" PRIu64 " bytes of RAM", cfg->ram_size);
		goto out_free;
	}
	g->ram = ram;
	/*
	 * By default 4 KiB pages: soft-dirty tracks a transparent huge page as
	 * one unit, so one write would dirty 2 MiB and a write-heavy guest
	 * never converges. With hugepages (asked for, and never with
	 * soft-dirty), THP: fewer TLB misses and, for RDMA, fewer translation
	 * entries; userfaultfd write-protect splits a THP on the first write,
	 * so tracking stays per 4 KiB page. Advisory: a kernel without THP (or
	 * with THP "never") simply says no.
	 */
	if (madvise(ram, cfg->ram_size, cfg->hugepages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) &&
	    cfg->hugepages)
		log_warn("guest: madvise(MADV_HUGEPAGE): %s: RAM stays on 4 KiB pages",
			 strerror(errno));

	/* Regions differ by at most one page; the first `rem` get the extra. */
	base = g->npages / g->cfg.nregions;
	rem = g->npages % g->cfg.nregions;
	page = 0;
	for (unsigned i = 0; i < g->cfg.nregions; i++) {
		uint64_t n = base + (i < rem ? 1 : 0);

		snprintf(g->regions[i].name, sizeof(g->regions[i].name), "ram%u", i);
		g->regions[i].addr = g->ram + page * RDMIG_PAGE_SIZE;
		g->regions[i].len = n * RDMIG_PAGE_SIZE;
		page += n;
	}

	/* hotset: a multiplier coprime with npages makes h -> page a bijection */
	g->nhot = g->npages / 10 ? g->npages / 10 : 1;
	g->hot_mul = ((uint64_t)((double)g->npages * 0.6180339887) | 1) % g->npages;
	while (gcd64(g->hot_mul, g->npages) != 1)
		g->hot_mul = (g->hot_mul + 1) % g->npages;
	g->hot_add = g->npages / 3;

	for (unsigned k = 0; k < RDMIG_GUEST_MAX_VCPUS; k++) {
		struct rdmig_guest_vcpu *v = &g->vcpu[k];

		v->g = g;
		v->idx = k;
		rdmig_incr_slice(g->npages, g->cfg.vcpus, k, &v->first, &v->len);
		v->st.rng = rdmig_guest_vcpu_seed(cfg->seed, k);
		atomic_init(&v->work, 0);
	}

	atomic_init(&g->ctl, 0);
	atomic_init(&g->running, false);
	atomic_init(&g->throttle, 0);
	ret = rdmig_neg_pos(pthread_mutex_init(&g->lock, NULL));
	if (ret) {
		rdmig_seterr_errno(err, ret, "guest: mutex init");
		goto out_unmap;
	}
	ret = rdmig_neg_pos(pthread_cond_init(&g->acked, NULL));
	if (ret) {
		rdmig_seterr_errno(err, ret, "guest: condvar init");
		goto out_destroy_lock;
	}
	ret = rdmig_neg_pos(pthread_cond_init(&g->wake, NULL));
	if (ret) {
		rdmig_seterr_errno(err, ret, "guest: condvar init");
		goto out_destroy_acked;
	}
	*out = g;
	return 0;

out_destroy_acked:
	pthread_cond_destroy(&g->acked);
out_destroy_lock:
	pthread_mutex_destroy(&g->lock);
out_unmap:
	munmap(g->ram, cfg->ram_size);
out_free:
	free(g);
	return ret;
}

void rdmig_guest_destroy(struct rdmig_guest *g)
{
	if (!g)
		return;
	rdmig_guest_stop(g);
	pthread_cond_destroy(&g->wake);
	pthread_cond_destroy(&g->acked);
	pthread_mutex_destroy(&g->lock);
	munmap(g->ram, g->cfg.ram_size);
	free(g);
}

unsigned rdmig_guest_nregions(const struct rdmig_guest *g)
{
	return g->cfg.nregions;
}

const struct rdmig_guest_region *rdmig_guest_region(const struct rdmig_guest *g, unsigned i)
{
	return i < g->cfg.nregions ? &g->regions[i] : NULL;
}

const struct rdmig_guest_cfg *rdmig_guest_cfg(const struct rdmig_guest *g)
{
	return &g->cfg;
}
