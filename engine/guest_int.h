/* SPDX-License-Identifier: MIT */
/*
 * Synthetic guest, private to engine/guest*.c: the guest object and the
 * pieces its files share.
 *
 *   guest.c           create / destroy, RAM and region layout, accessors
 *   guest_vcpu.c      vCPU threads: start, pause, resume, stop, throttle
 *   guest_workload.c  what a vCPU writes (incr, random, hotset) and pacing
 *   guest_image.c     prefill and dump of the RAM
 *
 * Threads and ownership:
 *   - Each vCPU thread owns its working state (a local copy of struct
 *     rdmig_vcpu_state) while it runs; it publishes that state into
 *     vcpu->st under g->lock only when it acknowledges a pause or exits, so
 *     the controller reads states under the same lock without a race.
 *   - The controller (one thread: the migration's or the test's) calls
 *     start/pause/resume/stop. g->ctl carries the pause and stop requests;
 *     it is only changed under g->lock, and vCPUs poll it with a relaxed load
 *     between batches of writes (RDMIG_GUEST_BATCH writes at most) and
 *     between sleep chunks (1 ms at most). The lock, not the load, orders
 *     the data.
 *   - pause() returns only when every vCPU has said, under g->lock, that it
 *     is parked; the vCPU's last RAM write precedes its unlock, so no guest
 *     write can follow pause() (a write after that is a lost page in the
 *     migration's final copy).
 *   - Counters (work, throttle, running) are atomics read from anywhere.
 *
 * Guest RAM itself is deliberately unsynchronized: vCPUs write it with plain
 * stores while the migration reads it (RDMA, send, memcpy), which is what a
 * real guest does to a VMM. Only the functions that store into guest RAM are
 * excluded from ThreadSanitizer (guest_workload.c).
 */
#ifndef RDMIG_GUEST_INT_H
#define RDMIG_GUEST_INT_H

#include "plan.h"
#include "rdmig/guest.h"

#define RDMIG_GUEST_BATCH 64u /* writes between control/clock checks */

/* The config blob (guest_vm.c): vCPUs, workload (be32), seed, dirty rate (be64). */
#define RDMIG_GUEST_VM_CONFIG 24

#define RDMIG_GUEST_CTL_PAUSE 1
#define RDMIG_GUEST_CTL_STOP  2

struct rdmig_guest_vcpu {
	struct rdmig_guest *g;
	unsigned idx;
	pthread_t tid;
	uint64_t first, len;			/* incr: slice of pages [first, first + len) */
	struct rdmig_vcpu_state st;		/* see the ownership note at the top */
	_Alignas(64) atomic_uint_fast64_t work; /* published copy of st.work */
};

struct rdmig_guest {
	struct rdmig_guest_cfg cfg;
	uint8_t *ram;
	uint64_t npages;
	struct rdmig_guest_region regions[RDMIG_GUEST_MAX_REGIONS];
	/* hotset: hot page h maps to (h * hot_mul + hot_add) % npages */
	uint64_t nhot, hot_mul, hot_add;

	pthread_mutex_t lock;
	pthread_cond_t acked; /* vCPU -> controller: parked or exited */
	pthread_cond_t wake;  /* controller -> vCPUs: resume or stop */
	atomic_int ctl;	      /* RDMIG_GUEST_CTL_*; written under lock */
	bool started;	      /* under lock */
	unsigned nthreads;    /* under lock: threads created */
	unsigned nparked;     /* under lock */
	unsigned nexited;     /* under lock */
	atomic_bool running;
	atomic_uint throttle;
	struct rdmig_cpuset vcpu_cpus;		  /* cfg.vcpu_cpus points here (or is NULL) */
	uint8_t vm_config[RDMIG_GUEST_VM_CONFIG]; /* rdmig_guest_vm()'s config blob */

	struct rdmig_guest_vcpu vcpu[RDMIG_GUEST_MAX_VCPUS];
};

/*
 * The config blob (RDMIG_GUEST_VM_CONFIG bytes) of rdmig_guest_vm(), and
 * its check on the destination: vCPU count and workload in range; the
 * other fields of *gc are zero.
 */
void rdmig_guest_config_encode(const struct rdmig_guest_cfg *gc, uint8_t *out);
int rdmig_guest_config_decode(const void *config, size_t len, struct rdmig_guest_cfg *gc,
			      struct rdmig_err *err);

/* A pause or stop request is waiting for the vCPUs (relaxed: see the note at the top). */
static inline int rdmig_guest_ctl_pending(struct rdmig_guest *g)
{
	return atomic_load_explicit(&g->ctl, memory_order_relaxed);
}

/* The nonzero xorshift seed of vCPU k's RNG, from the guest's seed. */
uint64_t rdmig_guest_vcpu_seed(uint64_t seed, unsigned k);

/*
 * Sleep until `deadline` (rdmig_now_ns()) in naps of at most 1 ms. Returns
 * true early if a control request is pending.
 */
bool rdmig_guest_nap_until(struct rdmig_guest *g, uint64_t deadline);

/*
 * dirty_rate pacing of one vCPU (guest_workload.c): when the next writes are
 * due. Stands still while the vCPU is throttled or paused.
 */
struct rdmig_guest_pacer {
	bool on;
	double ns_per_write;
	uint64_t base;
	uint64_t done;
	unsigned batch;
};

void rdmig_guest_pacer_init(struct rdmig_guest_pacer *pc, const struct rdmig_guest_cfg *cfg,
			    uint64_t now);

/* Run vCPU v's workload until `end` (rdmig_now_ns()) or a control request. */
void rdmig_guest_vcpu_work(struct rdmig_guest_vcpu *v, struct rdmig_vcpu_state *st,
			   struct rdmig_guest_pacer *pc, uint64_t end);

#endif
