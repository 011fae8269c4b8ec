/* SPDX-License-Identifier: MIT */
/*
 * The synthetic test and demo guest: RAM regions written by N vCPU
 * threads, for the rdmig tool, the tests and the benchmarks. Not a VM: a
 * real VMM uses rdmig/migrate.h directly (docs/embedding.md); this guest is
 * one user of that API, through rdmig_guest_vm() and the rdmig_mig_source /
 * rdmig_mig_dest wrappers below.
 *
 * Workloads:
 *   incr    increment byte 0 of every 4 KiB page in turn, forever (QEMU's
 *           own migration test method); each vCPU owns a slice of pages
 *   random  random 8-byte writes (the work counter) anywhere in RAM
 *   hotset  90% of writes into 10% of the pages (skewed working set,
 *           scattered over RAM), 10% anywhere
 *   idle    no writes
 * With dirty_rate > 0, incr, random and hotset are paced to about that many
 * bytes/s of pages in total (one page per write), at throttle 0; a throttle
 * of p permille scales that by (1000 - p) / 1000.
 *
 * vCPU state (position, RNG) lives in struct rdmig_vcpu_state so that it
 * can travel with the migration and resume on the destination.
 *
 * Threads: vCPU threads own their state; the controller (migration thread)
 * calls pause/resume/set_throttle; counters are atomics.
 */
#ifndef RDMIG_GUEST_H
#define RDMIG_GUEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rdmig/err.h"
#include "rdmig/migrate.h"

#pragma GCC visibility push(default)

struct rdmig_cpuset; /* made by the rdmig tool's NUMA planner */

#define RDMIG_GUEST_MAX_VCPUS	64
#define RDMIG_GUEST_MAX_REGIONS RDMIG_MIG_MAX_REGIONS

enum rdmig_workload {
	RDMIG_WL_IDLE = 0,
	RDMIG_WL_INCR,
	RDMIG_WL_RANDOM,
	RDMIG_WL_HOTSET,
};

const char *rdmig_workload_name(enum rdmig_workload w);
int rdmig_workload_parse(const char *s, enum rdmig_workload *out, struct rdmig_err *err);

/* What a vCPU needs to carry on where it stopped (fixed size, 32 bytes). */
struct rdmig_vcpu_state {
	uint64_t pos;  /* incr: next page index within the vCPU's slice */
	uint64_t rng;  /* random/hotset: xorshift state */
	uint64_t work; /* units of work done so far */
	uint64_t reserved;
};

struct rdmig_guest_cfg {
	uint64_t ram_size; /* total bytes, multiple of RDMIG_PAGE_SIZE */
	/* RAM split into this many regions (0: 1), page multiples differing by at most a page */
	unsigned nregions;
	unsigned vcpus; /* 0: no vCPU threads */
	enum rdmig_workload workload;
	uint64_t dirty_rate; /* target bytes/s of pages dirtied (0: flat out) */
	uint64_t seed;
	/*
	 * CPUs for the vCPU threads, NULL or empty: not pinned. vCPU k is pinned
	 * to the k-th CPU of the set, round-robin. Copied at create. A pin that
	 * fails (CPU offline, outside our cpuset) is a warning, the vCPU runs
	 * unpinned.
	 */
	const struct rdmig_cpuset *vcpu_cpus;
	/*
	 * Back RAM with transparent huge pages (MADV_HUGEPAGE, RAM 2 MiB
	 * aligned) instead of 4 KiB pages (MADV_NOHUGEPAGE). Not for soft-dirty
	 * tracking, which sees a THP as one unit: the source refuses the pair.
	 */
	bool hugepages;
};

struct rdmig_guest_region {
	char name[32];
	uint8_t *addr; /* page-aligned, from mmap */
	uint64_t len;
};

struct rdmig_guest;

/* Allocate zeroed RAM (untouched: pages stay unpopulated until written). */
int rdmig_guest_create(const struct rdmig_guest_cfg *cfg, struct rdmig_guest **out,
		       struct rdmig_err *err);
void rdmig_guest_destroy(struct rdmig_guest *g); /* stops vCPUs, unmaps */

unsigned rdmig_guest_nregions(const struct rdmig_guest *g);
const struct rdmig_guest_region *rdmig_guest_region(const struct rdmig_guest *g, unsigned i);
const struct rdmig_guest_cfg *rdmig_guest_cfg(const struct rdmig_guest *g);

/* The CPU vCPU k is pinned to, or -1 when vCPUs are not pinned. */
int rdmig_guest_vcpu_cpu(const struct rdmig_guest *g, unsigned k);

/*
 * Start the vCPU threads from `states` (one per vCPU, e.g. received with the
 * migration), or if NULL from where they were when last stopped (fresh on a
 * new guest). -EBUSY if already started; -EINVAL if an incr position lies
 * outside its vCPU's slice.
 */
int rdmig_guest_start(struct rdmig_guest *g, const struct rdmig_vcpu_state *states,
		      struct rdmig_err *err);
/*
 * Stop every vCPU at a safe point and wait until all have stopped: after
 * this returns no vCPU writes guest RAM until resume/stop. No-op when not
 * started or already paused.
 */
void rdmig_guest_pause(struct rdmig_guest *g);
void rdmig_guest_resume(struct rdmig_guest *g);
bool rdmig_guest_running(const struct rdmig_guest *g);
/* Join the vCPU threads (after this, start may be called again). */
void rdmig_guest_stop(struct rdmig_guest *g);
/* Copy the vCPUs' states (only meaningful while paused or stopped). */
void rdmig_guest_save_vcpus(const struct rdmig_guest *g, struct rdmig_vcpu_state *out);

/*
 * Throttle: each vCPU sleeps `permille`/1000 of every 10 ms time slice
 * (0 = off, at most 990). Takes effect within one slice.
 */
void rdmig_guest_set_throttle(struct rdmig_guest *g, unsigned permille);
unsigned rdmig_guest_throttle(const struct rdmig_guest *g);
/* Total work units done by all vCPUs (incr: pages incremented; random: writes). */
uint64_t rdmig_guest_work(const struct rdmig_guest *g);

/*
 * vCPU k's slice of `npages` under the incr workload: pages [*first, *first +
 * *len). The slices of k = 0 .. vcpus - 1 cover the RAM in order and differ
 * by at most a page; vcpus 0 means one slice over everything. What a checker
 * of incr RAM must split it by (tests/lib/incr_check.c).
 */
void rdmig_incr_slice(uint64_t npages, unsigned vcpus, unsigned k, uint64_t *first, uint64_t *len);

/*
 * Fill every page with seeded non-zero data, as a guest that has been up
 * for a while looks (only before start; not for incr, whose check expects
 * zero beyond byte 0). `percent` of the pages are filled, the rest stay zero.
 */
int rdmig_guest_prefill(struct rdmig_guest *g, unsigned percent, uint64_t seed,
			struct rdmig_err *err);

/* Write RAM (all regions in order) to a file, for --dump-ram and cmp. */
int rdmig_guest_dump(const struct rdmig_guest *g, const char *path, struct rdmig_err *err);

/* ---- the guest as an rdmig_vm (engine/guest_vm.c) ---------------------- */

/*
 * Describe `g` to the engine: its regions, its config (vCPUs, workload,
 * seed, rate: what a destination needs to rebuild it) and its vCPU states
 * as the state blob. `vm` refers to g, which must outlive it.
 */
void rdmig_guest_vm(struct rdmig_guest *g, struct rdmig_vm *vm);

/*
 * rdmig_migrate_source() of rdmig_guest_vm(guest); on success the vCPU
 * threads are joined (the guest runs on the destination now), and
 * stats->guest_work counts the work done during the migration.
 */
int rdmig_mig_source(struct rdmig_conn *c, struct rdmig_guest *guest,
		     const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
		     struct rdmig_err *err);

/*
 * rdmig_migrate_dest() into a synthetic guest created from the source's
 * config (opts.hugepages backs it with huge pages): on GO its vCPUs resume
 * where the source's stopped; then it runs for opts.resume_ns and is freed,
 * or goes to *opts.keep_guest.
 */
int rdmig_mig_dest(struct rdmig_conn *c, const struct rdmig_mig_opts *opts,
		   struct rdmig_mig_stats *stats, struct rdmig_err *err);

#pragma GCC visibility pop

#endif
