/* SPDX-License-Identifier: MIT */
/*
 * The synthetic guest's vCPU threads and their controller: start, pause,
 * resume, stop, throttle. guest_int.h has the ownership rules; what a vCPU
 * writes is in guest_workload.c.
 */
#include "clock.h"
#include "guest_int.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

#define SLICE_NS     10000000ULL /* throttle time slice: 10 ms */
#define THROTTLE_MAX 990u

/*
 * Publish the state and handle a pause or stop request. Returns true if the
 * thread must exit.
 */
static bool vcpu_control(struct rdmig_guest_vcpu *v, const struct rdmig_vcpu_state *st)
{
	struct rdmig_guest *g = v->g;
	bool stop;

	pthread_mutex_lock(&g->lock);
	v->st = *st;
	atomic_store_explicit(&v->work, st->work, memory_order_relaxed);
	if (atomic_load(&g->ctl) == RDMIG_GUEST_CTL_PAUSE) {
		g->nparked++;
		pthread_cond_broadcast(&g->acked);
		while (atomic_load(&g->ctl) == RDMIG_GUEST_CTL_PAUSE)
			pthread_cond_wait(&g->wake, &g->lock);
		g->nparked--;
	}
	stop = atomic_load(&g->ctl) & RDMIG_GUEST_CTL_STOP;
	if (stop) {
		g->nexited++;
		pthread_cond_broadcast(&g->acked);
	}
	pthread_mutex_unlock(&g->lock);
	return stop;
}

int rdmig_guest_vcpu_cpu(const struct rdmig_guest *g, unsigned k)
{
	int n;

	if (!g->cfg.vcpu_cpus)
		return -1;
	n = rdmig_cpuset_count(&g->vcpu_cpus);
	if (n <= 0)
		return -1;
	k %= (unsigned)n;
	for (int c = 0; c < RDMIG_NUMA_MAX_CPUS; c++)
		if (rdmig_cpuset_isset(&g->vcpu_cpus, c) && k-- == 0)
			return c;
	return -1;
}

/* Pin the calling vCPU thread per cfg.vcpu_cpus; a failure is a warning. */
static void pin_vcpu(const struct rdmig_guest_vcpu *v)
{
	int cpu = rdmig_guest_vcpu_cpu(v->g, v->idx);
	cpu_set_t set;
	int ret;

	if (cpu < 0)
		return;
	if (cpu >= CPU_SETSIZE) {
		log_warn("guest: vcpu %u: CPU %d beyond CPU_SETSIZE: not pinned", v->idx, cpu);
		return;
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (ret)
		log_warn("guest: vcpu %u: cannot pin to CPU %d: %s: runs unpinned", v->idx, cpu,
			 strerror(ret));
}

static void *vcpu_main(void *arg)
{
	struct rdmig_guest_vcpu *v = arg;
	struct rdmig_guest *g = v->g;
	struct rdmig_vcpu_state st = v->st; /* written before pthread_create */
	struct rdmig_guest_pacer pc;
	char name[16];

	snprintf(name, sizeof(name), "rdmig-vcpu%u", v->idx);
	pthread_setname_np(pthread_self(), name);
	pin_vcpu(v);
	rdmig_guest_pacer_init(&pc, &g->cfg, rdmig_now_ns());

	for (;;) {
		uint64_t t0, work_end, slept;
		unsigned p;

		if (rdmig_guest_ctl_pending(g)) {
			if (vcpu_control(v, &st))
				break;
			pc.base = rdmig_now_ns(); /* no burst to make up for the pause */
			pc.done = 0;
		}
		t0 = rdmig_now_ns();
		p = atomic_load_explicit(&g->throttle, memory_order_relaxed);
		work_end = t0 + SLICE_NS * (1000 - p) / 1000;
		rdmig_guest_vcpu_work(v, &st, &pc, work_end);
		if (p == 0 || rdmig_guest_ctl_pending(g))
			continue;
		slept = rdmig_now_ns();
		rdmig_guest_nap_until(g, t0 + SLICE_NS);
		pc.base += rdmig_now_ns() - slept;
	}
	return NULL;
}

/* Called with g->lock held and g->ctl == RDMIG_GUEST_CTL_STOP: join, reset. */
static void join_all(struct rdmig_guest *g)
{
	unsigned n = g->nthreads;

	pthread_cond_broadcast(&g->wake);
	pthread_mutex_unlock(&g->lock);
	for (unsigned k = 0; k < n; k++)
		pthread_join(g->vcpu[k].tid, NULL);
	pthread_mutex_lock(&g->lock);
	g->nthreads = 0;
	g->nparked = 0;
	g->nexited = 0;
	g->started = false;
	atomic_store(&g->ctl, 0);
	atomic_store(&g->running, false);
}

int rdmig_guest_start(struct rdmig_guest *g, const struct rdmig_vcpu_state *states,
		      struct rdmig_err *err)
{
	sigset_t all, old;
	int ret = 0;

	pthread_mutex_lock(&g->lock);
	if (g->started) {
		ret = rdmig_seterr(err, -EBUSY, "guest: already started");
		goto out_unlock;
	}
	for (unsigned k = 0; states && k < g->cfg.vcpus; k++) {
		const struct rdmig_guest_vcpu *v = &g->vcpu[k];

		if (g->cfg.workload == RDMIG_WL_INCR && states[k].pos >= (v->len ? v->len : 1)) {
			ret = rdmig_seterr(err, -EINVAL,
					   "guest: vcpu %u state has position %" PRIu64
					   " outside its slice of %" PRIu64 " pages",
					   k, states[k].pos, v->len);
			goto out_unlock;
		}
	}
	for (unsigned k = 0; k < g->cfg.vcpus; k++) {
		struct rdmig_guest_vcpu *v = &g->vcpu[k];

		if (states)
			v->st = states[k];
		if (v->st.rng == 0) /* xorshift would be stuck at 0 */
			v->st.rng = rdmig_guest_vcpu_seed(g->cfg.seed, k);
		atomic_store(&v->work, v->st.work);
	}
	atomic_store(&g->ctl, 0);
	g->nparked = 0;
	g->nexited = 0;

	/* vCPUs take no signals: the process's handlers run on its own threads */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned k = 0; k < g->cfg.vcpus; k++) {
		ret = rdmig_neg_pos(pthread_create(&g->vcpu[k].tid, NULL, vcpu_main, &g->vcpu[k]));
		if (ret) {
			rdmig_seterr_errno(err, ret, "guest: starting vcpu %u", k);
			break;
		}
		g->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		atomic_store(&g->ctl, RDMIG_GUEST_CTL_STOP);
		join_all(g);
		goto out_unlock;
	}
	g->started = true;
	atomic_store(&g->running, true);
	log_debug("guest started: %u vcpus, workload %s, %" PRIu64 " pages", g->cfg.vcpus,
		  rdmig_workload_name(g->cfg.workload), g->npages);
out_unlock:
	pthread_mutex_unlock(&g->lock);
	return ret;
}

void rdmig_guest_pause(struct rdmig_guest *g)
{
	pthread_mutex_lock(&g->lock);
	if (g->started && !(atomic_load(&g->ctl) & RDMIG_GUEST_CTL_STOP)) {
		atomic_store(&g->ctl, RDMIG_GUEST_CTL_PAUSE);
		atomic_store(&g->running, false);
		while (g->nparked + g->nexited < g->nthreads)
			pthread_cond_wait(&g->acked, &g->lock);
	}
	pthread_mutex_unlock(&g->lock);
}

void rdmig_guest_resume(struct rdmig_guest *g)
{
	pthread_mutex_lock(&g->lock);
	if (g->started && atomic_load(&g->ctl) == RDMIG_GUEST_CTL_PAUSE) {
		atomic_store(&g->ctl, 0);
		atomic_store(&g->running, true);
		pthread_cond_broadcast(&g->wake);
	}
	pthread_mutex_unlock(&g->lock);
}

bool rdmig_guest_running(const struct rdmig_guest *g)
{
	return atomic_load(&g->running);
}

void rdmig_guest_stop(struct rdmig_guest *g)
{
	pthread_mutex_lock(&g->lock);
	if (g->started) {
		atomic_store(&g->ctl, RDMIG_GUEST_CTL_STOP);
		join_all(g);
	}
	pthread_mutex_unlock(&g->lock);
}

void rdmig_guest_save_vcpus(const struct rdmig_guest *g, struct rdmig_vcpu_state *out)
{
	/* The lock is logically mutable: saving does not change the guest. */
	struct rdmig_guest *mg = (struct rdmig_guest *)g;

	pthread_mutex_lock(&mg->lock);
	for (unsigned k = 0; k < g->cfg.vcpus; k++)
		out[k] = g->vcpu[k].st;
	pthread_mutex_unlock(&mg->lock);
}

void rdmig_guest_set_throttle(struct rdmig_guest *g, unsigned permille)
{
	atomic_store(&g->throttle, permille > THROTTLE_MAX ? THROTTLE_MAX : permille);
}

unsigned rdmig_guest_throttle(const struct rdmig_guest *g)
{
	return atomic_load(&g->throttle);
}

uint64_t rdmig_guest_work(const struct rdmig_guest *g)
{
	uint64_t sum = 0;

	for (unsigned k = 0; k < g->cfg.vcpus; k++)
		sum += atomic_load_explicit(&g->vcpu[k].work, memory_order_relaxed);
	return sum;
}
