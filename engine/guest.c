/* SPDX-License-Identifier: MIT */
/*
 * Synthetic guest: one anonymous mapping carved into regions, written by
 * vCPU threads.
 *
 * Threads and ownership:
 *   - Each vCPU thread owns its working state (a local copy of struct
 *     rdmig_vcpu_state) while it runs; it publishes that state into
 *     vcpu->st under g->lock only when it acknowledges a pause or exits, so
 *     the controller reads states under the same lock without a race.
 *   - The controller (one thread: the migration's or the test's) calls
 *     start/pause/resume/stop. g->ctl carries the pause and stop requests;
 *     it is only changed under g->lock, and vCPUs poll it with a relaxed load
 *     between batches of writes (BATCH writes at most) and between sleep
 *     chunks (1 ms at most). The lock, not the load, orders the data.
 *   - pause() returns only when every vCPU has said, under g->lock, that it
 *     is parked; the vCPU's last RAM write precedes its unlock, so no guest
 *     write can follow pause() (a write after that is a lost page in the
 *     migration's final copy).
 *   - Counters (work, throttle, running) are atomics read from anywhere.
 *
 * Guest RAM itself is deliberately unsynchronized: vCPUs write it with plain
 * stores while the migration reads it (RDMA, send, memcpy), which is what a
 * real guest does to a VMM. Only the functions that store into guest RAM are
 * excluded from ThreadSanitizer (see ram_batch_*).
 */
#include "clock.h"
#include "guest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define RAM_MAX_BYTES (1ULL << 40) /* 1 TiB */
#define SLICE_NS      10000000ULL  /* throttle time slice: 10 ms */
#define NAP_NS	      1000000ULL   /* longest sleep between control checks */
#define BATCH	      64u	   /* writes between control/clock checks */
#define PACE_LAG_NS   100000000ULL /* dirty_rate: most lag made up (100 ms) */
#define THROTTLE_MAX  990u
#define CHECK_REPORT  4 /* bad pages named in a check message */

#define CTL_PAUSE 1
#define CTL_STOP  2

struct vcpu {
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
	uint64_t region_first[RDMIG_GUEST_MAX_REGIONS]; /* first page of each region */
	/* hotset: hot page h maps to (h * hot_mul + hot_add) % npages */
	uint64_t nhot, hot_mul, hot_add;

	pthread_mutex_t lock;
	pthread_cond_t acked; /* vCPU -> controller: parked or exited */
	pthread_cond_t wake;  /* controller -> vCPUs: resume or stop */
	atomic_int ctl;	      /* CTL_*; written under lock */
	bool started;	      /* under lock */
	unsigned nthreads;    /* under lock: threads created */
	unsigned nparked;     /* under lock */
	unsigned nexited;     /* under lock */
	atomic_bool running;
	atomic_uint throttle;
	struct rdmig_cpuset vcpu_cpus; /* cfg.vcpu_cpus points here (or is NULL) */

	struct vcpu vcpu[RDMIG_GUEST_MAX_VCPUS];
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* xorshift64*: state must be nonzero and stays nonzero. */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n) without a division. */
static inline uint64_t below(uint64_t r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)r * n) >> 64);
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

static uint64_t vcpu_seed(uint64_t seed, unsigned k)
{
	uint64_t x = seed ^ (0xd1b54a32d192ed03ULL * (k + 1));
	uint64_t r = splitmix64(&x);

	return r ? r : 0x9e3779b97f4a7c15ULL;
}

/* vCPU k's incr slice; vcpus == 0 means one slice over everything. */
static void incr_slice(uint64_t npages, unsigned vcpus, unsigned k, uint64_t *first, uint64_t *len)
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

/* ---- workloads ---------------------------------------------------------- */

static const char *const wl_names[] = {
    [RDMIG_WL_IDLE] = "idle",
    [RDMIG_WL_INCR] = "incr",
    [RDMIG_WL_RANDOM] = "random",
    [RDMIG_WL_HOTSET] = "hotset",
};

const char *rdmig_workload_name(enum rdmig_workload w)
{
	if ((unsigned)w < sizeof(wl_names) / sizeof(wl_names[0]))
		return wl_names[w];
	return "unknown";
}

int rdmig_workload_parse(const char *s, enum rdmig_workload *out, struct rdmig_err *err)
{
	for (unsigned i = 0; s && i < sizeof(wl_names) / sizeof(wl_names[0]); i++) {
		if (strcmp(s, wl_names[i]) == 0) {
			*out = (enum rdmig_workload)i;
			return 0;
		}
	}
	return rdmig_seterr(err, -EINVAL,
			    "unknown workload '%s' (expected incr, random, hotset or idle)",
			    s ? s : "");
}

/*
 * The only functions that touch guest RAM from vCPU threads. They are
 * excluded from ThreadSanitizer on purpose: a guest's stores race with the
 * migration's reads of the same pages by design (that is what dirty tracking
 * and re-sending are for), so instrumenting them would only report the
 * premise. volatile keeps every store a real store (a page must really be
 * written to be dirtied). noinline keeps the attribute from being lost by
 * inlining into an instrumented caller.
 */
__attribute__((no_sanitize("thread"), noinline)) static void
ram_batch_incr(uint8_t *ram, uint64_t first, uint64_t len, struct rdmig_vcpu_state *st, unsigned n)
{
	uint64_t pos = st->pos;

	for (unsigned i = 0; i < n; i++) {
		volatile uint8_t *p = ram + (first + pos) * RDMIG_PAGE_SIZE;

		*p = (uint8_t)(*p + 1);
		if (++pos == len)
			pos = 0;
	}
	st->pos = pos;
	st->work += n;
}

__attribute__((no_sanitize("thread"), noinline)) static void
ram_batch_random(uint8_t *ram, uint64_t nwords, struct rdmig_vcpu_state *st, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = below(rng_next(&st->rng), nwords) * 8;

		*(volatile uint64_t *)(void *)(ram + off) = ++st->work;
	}
}

__attribute__((no_sanitize("thread"), noinline)) static void
ram_batch_hotset(const struct rdmig_guest *g, struct rdmig_vcpu_state *st, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t r = rng_next(&st->rng), page, off;

		if (below(r, 10) < 9) /* hot: a scattered 10% of the pages */
			page = (below(rng_next(&st->rng), g->nhot) * g->hot_mul + g->hot_add) %
			       g->npages;
		else
			page = below(rng_next(&st->rng), g->npages);
		off = page * RDMIG_PAGE_SIZE + (r & (RDMIG_PAGE_SIZE / 8 - 1)) * 8;
		*(volatile uint64_t *)(void *)(g->ram + off) = ++st->work;
	}
}

/* ---- vCPU threads ------------------------------------------------------- */

static inline int ctl_pending(struct rdmig_guest *g)
{
	return atomic_load_explicit(&g->ctl, memory_order_relaxed);
}

/*
 * Sleep until `deadline` in naps of at most NAP_NS. Returns true early if a
 * control request is pending.
 */
static bool nap_until(struct rdmig_guest *g, uint64_t deadline)
{
	for (;;) {
		uint64_t now, t;
		struct timespec ts;

		if (ctl_pending(g))
			return true;
		now = rdmig_now_ns();
		if (now >= deadline)
			return false;
		t = deadline - now > NAP_NS ? now + NAP_NS : deadline;
		ts.tv_sec = (time_t)(t / 1000000000ULL);
		ts.tv_nsec = (long)(t % 1000000000ULL);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

/*
 * Publish the state and handle a pause or stop request. Returns true if the
 * thread must exit.
 */
static bool vcpu_control(struct vcpu *v, const struct rdmig_vcpu_state *st)
{
	struct rdmig_guest *g = v->g;
	bool stop;

	pthread_mutex_lock(&g->lock);
	v->st = *st;
	atomic_store_explicit(&v->work, st->work, memory_order_relaxed);
	if (atomic_load(&g->ctl) == CTL_PAUSE) {
		g->nparked++;
		pthread_cond_broadcast(&g->acked);
		while (atomic_load(&g->ctl) == CTL_PAUSE)
			pthread_cond_wait(&g->wake, &g->lock);
		g->nparked--;
	}
	stop = atomic_load(&g->ctl) & CTL_STOP;
	if (stop) {
		g->nexited++;
		pthread_cond_broadcast(&g->acked);
	}
	pthread_mutex_unlock(&g->lock);
	return stop;
}

/*
 * Rate limiting for dirty_rate: the writes are due at base + done *
 * ns_per_write. The pacing clock stands still while the vCPU is throttled or
 * paused, so a throttle of p permille scales the rate by (1000 - p) / 1000,
 * as it would for a guest whose dirtying needs CPU time. Lag (the thread was
 * not scheduled, or writes are slower than the rate) is made up in a burst,
 * up to PACE_LAG_NS of it; beyond that it is forgotten.
 */
struct pacer {
	bool on;
	double ns_per_write;
	uint64_t base;
	uint64_t done;
	unsigned batch;
};

static void pacer_init(struct pacer *pc, const struct rdmig_guest_cfg *cfg, uint64_t now)
{
	memset(pc, 0, sizeof(*pc));
	if (cfg->dirty_rate == 0 || cfg->workload == RDMIG_WL_IDLE)
		return;
	pc->on = true;
	pc->ns_per_write = 1e9 * RDMIG_PAGE_SIZE * cfg->vcpus / (double)cfg->dirty_rate;
	/* about 1 ms worth of writes per batch, so pacing is smooth */
	double b = 1e6 / pc->ns_per_write;

	pc->batch = b < 1 ? 1 : b > BATCH ? BATCH : (unsigned)b;
	pc->base = now;
}

static uint64_t pacer_due(const struct pacer *pc)
{
	return pc->base + (uint64_t)((double)pc->done * pc->ns_per_write);
}

static void pacer_done(struct pacer *pc, unsigned n, uint64_t now)
{
	uint64_t due;

	pc->done += n;
	due = pacer_due(pc);
	if (due + PACE_LAG_NS < now || pc->done > (1u << 20)) {
		pc->base = due + PACE_LAG_NS < now ? now - PACE_LAG_NS : due;
		pc->done = 0;
	}
}

/* Work until `end` or a control request. */
static void vcpu_work(struct vcpu *v, struct rdmig_vcpu_state *st, struct pacer *pc, uint64_t end)
{
	struct rdmig_guest *g = v->g;
	uint64_t nwords = g->cfg.ram_size / 8;

	while (!ctl_pending(g)) {
		uint64_t now = rdmig_now_ns();
		unsigned n = BATCH;

		if (now >= end)
			return;
		if (g->cfg.workload == RDMIG_WL_IDLE) {
			nap_until(g, end);
			return;
		}
		if (pc->on) {
			uint64_t due = pacer_due(pc);

			if (due > now) {
				nap_until(g, due < end ? due : end);
				continue;
			}
			n = pc->batch;
		}
		switch (g->cfg.workload) {
		case RDMIG_WL_INCR:
			ram_batch_incr(g->ram, v->first, v->len, st, n);
			break;
		case RDMIG_WL_RANDOM:
			ram_batch_random(g->ram, nwords, st, n);
			break;
		case RDMIG_WL_HOTSET:
			ram_batch_hotset(g, st, n);
			break;
		case RDMIG_WL_IDLE:
			break;
		}
		atomic_store_explicit(&v->work, st->work, memory_order_relaxed);
		if (pc->on)
			pacer_done(pc, n, now);
	}
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
static void pin_vcpu(const struct vcpu *v)
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
	struct vcpu *v = arg;
	struct rdmig_guest *g = v->g;
	struct rdmig_vcpu_state st = v->st; /* written before pthread_create */
	struct pacer pc;
	char name[16];

	snprintf(name, sizeof(name), "rdmig-vcpu%u", v->idx);
	pthread_setname_np(pthread_self(), name);
	pin_vcpu(v);
	pacer_init(&pc, &g->cfg, rdmig_now_ns());

	for (;;) {
		uint64_t t0, work_end, slept;
		unsigned p;

		if (ctl_pending(g)) {
			if (vcpu_control(v, &st))
				break;
			pc.base = rdmig_now_ns(); /* no burst to make up for the pause */
			pc.done = 0;
		}
		t0 = rdmig_now_ns();
		p = atomic_load_explicit(&g->throttle, memory_order_relaxed);
		work_end = t0 + SLICE_NS * (1000 - p) / 1000;
		vcpu_work(v, &st, &pc, work_end);
		if (p == 0 || ctl_pending(g))
			continue;
		slept = rdmig_now_ns();
		nap_until(g, t0 + SLICE_NS);
		pc.base += rdmig_now_ns() - slept;
	}
	return NULL;
}

/* ---- create / destroy --------------------------------------------------- */

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

#define THP_SIZE (2ull << 20)

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
		g->region_first[i] = page;
		page += n;
	}

	/* hotset: a multiplier coprime with npages makes h -> page a bijection */
	g->nhot = g->npages / 10 ? g->npages / 10 : 1;
	g->hot_mul = ((uint64_t)((double)g->npages * 0.6180339887) | 1) % g->npages;
	while (gcd64(g->hot_mul, g->npages) != 1)
		g->hot_mul = (g->hot_mul + 1) % g->npages;
	g->hot_add = g->npages / 3;

	for (unsigned k = 0; k < RDMIG_GUEST_MAX_VCPUS; k++) {
		struct vcpu *v = &g->vcpu[k];

		v->g = g;
		v->idx = k;
		incr_slice(g->npages, g->cfg.vcpus, k, &v->first, &v->len);
		v->st.rng = vcpu_seed(cfg->seed, k);
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

/* ---- control ------------------------------------------------------------ */

/* Called with g->lock held and g->ctl == CTL_STOP: join, reset. */
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
		const struct vcpu *v = &g->vcpu[k];

		if (g->cfg.workload == RDMIG_WL_INCR && states[k].pos >= (v->len ? v->len : 1)) {
			ret = rdmig_seterr(err, -EINVAL,
					   "guest: vcpu %u state has position %" PRIu64
					   " outside its slice of %" PRIu64 " pages",
					   k, states[k].pos, v->len);
			goto out_unlock;
		}
	}
	for (unsigned k = 0; k < g->cfg.vcpus; k++) {
		struct vcpu *v = &g->vcpu[k];

		if (states)
			v->st = states[k];
		if (v->st.rng == 0) /* xorshift would be stuck at 0 */
			v->st.rng = vcpu_seed(g->cfg.seed, k);
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
		atomic_store(&g->ctl, CTL_STOP);
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
	if (g->started && !(atomic_load(&g->ctl) & CTL_STOP)) {
		atomic_store(&g->ctl, CTL_PAUSE);
		atomic_store(&g->running, false);
		while (g->nparked + g->nexited < g->nthreads)
			pthread_cond_wait(&g->acked, &g->lock);
	}
	pthread_mutex_unlock(&g->lock);
}

void rdmig_guest_resume(struct rdmig_guest *g)
{
	pthread_mutex_lock(&g->lock);
	if (g->started && atomic_load(&g->ctl) == CTL_PAUSE) {
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
		atomic_store(&g->ctl, CTL_STOP);
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

/* ---- incr integrity check ----------------------------------------------- */

struct check_ctx {
	const uint8_t *ram;
	const struct rdmig_guest *g; /* for region names, or NULL for a raw image */
	uint64_t bad;
	char *msg;
	size_t msg_len, msg_used;
};

static inline uint8_t b0(const struct check_ctx *c, uint64_t page)
{
	return c->ram[page * RDMIG_PAGE_SIZE];
}

/* Offset of the first nonzero byte of the page other than byte 0, or 0. */
static unsigned first_nonzero(const uint8_t *page)
{
	uint64_t acc = 0, w;

	for (unsigned i = 1; i < 8; i++)
		if (page[i])
			return i;
	for (unsigned i = 8; i < RDMIG_PAGE_SIZE; i += 8) {
		memcpy(&w, page + i, 8);
		acc |= w;
	}
	if (!acc)
		return 0;
	for (unsigned i = 8; i < RDMIG_PAGE_SIZE; i++)
		if (page[i])
			return i;
	return 0;
}

static void check_name(const struct check_ctx *c, uint64_t page, char *buf, size_t len)
{
	if (c->g) {
		unsigned r = c->g->cfg.nregions - 1;

		while (r > 0 && c->g->region_first[r] > page)
			r--;
		snprintf(buf, len, "%s page %" PRIu64, c->g->regions[r].name,
			 page - c->g->region_first[r]);
	} else {
		snprintf(buf, len, "page %" PRIu64, page);
	}
}

static void check_report(struct check_ctx *c, uint64_t page, unsigned vcpu, unsigned off,
			 uint8_t found, uint8_t expected)
{
	char name[64];
	int n;

	if (c->bad++ >= CHECK_REPORT || c->msg_used >= c->msg_len)
		return;
	check_name(c, page, name, sizeof(name));
	n = snprintf(c->msg + c->msg_used, c->msg_len - c->msg_used,
		     "%s%s (vcpu %u): byte %u is %u, expected %u", c->bad > 1 ? "; " : "", name,
		     vcpu, off, found, expected);
	if (n > 0)
		c->msg_used += (size_t)n;
}

/*
 * The slice [first, first + len) is valid when byte 0 is either the same
 * everywhere, or v + 1 on a prefix [0, k) and v on the rest [k, len) for
 * some k in 1..len-1 (mod 256): the vCPU had incremented the prefix one more
 * time when it stopped. Walking forward, that is at most one step that drops
 * by exactly 1 and no other change. Returns true and the pattern if valid.
 */
static bool slice_fast(const struct check_ctx *c, uint64_t first, uint64_t len, uint8_t *v,
		       uint64_t *k)
{
	uint64_t edge = 0;

	for (uint64_t i = 1; i < len; i++) {
		uint8_t d = (uint8_t)(b0(c, first + i - 1) - b0(c, first + i));

		if (d == 0)
			continue;
		if (d != 1 || edge)
			return false;
		edge = i;
	}
	*v = b0(c, first + len - 1);
	*k = edge;
	return true;
}

/*
 * For an invalid slice, the valid pattern closest to it (fewest pages
 * differing), so the report blames the pages that are actually wrong. In a
 * valid slice the most common value is v or v + 1, so trying both of those
 * as v finds an exact match whenever there is one; for garbage it is just a
 * reasonable guess.
 */
static void slice_best(const struct check_ctx *c, uint64_t first, uint64_t len, uint8_t *best_v,
		       uint64_t *best_k)
{
	uint64_t hist[256] = {0}, best = UINT64_MAX;
	unsigned mode = 0;

	for (uint64_t i = 0; i < len; i++)
		hist[b0(c, first + i)]++;
	for (unsigned x = 1; x < 256; x++)
		if (hist[x] > hist[mode])
			mode = x;
	for (int cand = 0; cand < 2; cand++) {
		uint8_t v = (uint8_t)(mode - cand), hi = (uint8_t)(v + 1);
		uint64_t before = 0, after = 0;

		/* mismatches(k) = #{i < k: b != v+1} + #{i >= k: b != v} */
		for (uint64_t i = 0; i < len; i++)
			after += b0(c, first + i) != v;
		for (uint64_t k = 0; k < len; k++) {
			if (before + after < best) {
				best = before + after;
				*best_v = v;
				*best_k = k;
			}
			before += b0(c, first + k) != hi;
			after -= b0(c, first + k) != v;
		}
	}
}

static int check_incr(const uint8_t *ram, uint64_t npages, unsigned vcpus,
		      const struct rdmig_guest *g, struct rdmig_err *err)
{
	char list[RDMIG_ERR_MSG_MAX];
	struct check_ctx c = {.ram = ram, .g = g, .msg = list, .msg_len = sizeof(list)};
	unsigned nslices = vcpus ? vcpus : 1;

	list[0] = '\0';
	for (unsigned s = 0; s < nslices; s++) {
		uint64_t first, len, k = 0;
		uint8_t v = 0;

		incr_slice(npages, vcpus, s, &first, &len);
		if (len == 0)
			continue;
		if (!slice_fast(&c, first, len, &v, &k))
			slice_best(&c, first, len, &v, &k);
		for (uint64_t i = 0; i < len; i++) {
			const uint8_t *page = ram + (first + i) * RDMIG_PAGE_SIZE;
			uint8_t exp = (uint8_t)(i < k ? v + 1 : v);
			unsigned off;

			if (page[0] != exp) {
				check_report(&c, first + i, s, 0, page[0], exp);
				continue;
			}
			off = first_nonzero(page);
			if (off)
				check_report(&c, first + i, s, off, page[off], 0);
		}
	}
	if (c.bad == 0)
		return 0;
	return rdmig_seterr(err, -EILSEQ, "incr check: %" PRIu64 " bad page%s of %" PRIu64 ": %s%s",
			    c.bad, c.bad == 1 ? "" : "s", npages, list,
			    c.bad > CHECK_REPORT ? "; ..." : "");
}

int rdmig_check_incr_image(const uint8_t *ram, uint64_t len, unsigned vcpus, struct rdmig_err *err)
{
	if (!ram || len == 0 || len % RDMIG_PAGE_SIZE)
		return rdmig_seterr(err, -EINVAL,
				    "incr check: image of %" PRIu64
				    " bytes is not a whole number of %u-byte pages",
				    len, RDMIG_PAGE_SIZE);
	return check_incr(ram, len / RDMIG_PAGE_SIZE, vcpus, NULL, err);
}

int rdmig_guest_check_incr(const struct rdmig_guest *g, struct rdmig_err *err)
{
	return check_incr(g->ram, g->npages, g->cfg.vcpus, g, err);
}

/* ---- dump --------------------------------------------------------------- */

int rdmig_guest_prefill(struct rdmig_guest *g, unsigned percent, uint64_t seed,
			struct rdmig_err *err)
{
	uint64_t x = seed | 1;

	if (g->started)
		return rdmig_seterr(err, -EBUSY, "guest: prefill only before the vCPUs start");
	if (percent > 100)
		return rdmig_seterr(err, -EINVAL, "guest: prefill expects 0 to 100 percent");
	if (g->cfg.workload == RDMIG_WL_INCR && percent)
		return rdmig_seterr(err, -EINVAL,
				    "guest: prefill does not go with the incr workload, whose "
				    "check needs every byte but byte 0 zero");
	for (uint64_t p = 0; p < g->npages; p++) {
		uint64_t *w = (uint64_t *)(void *)(g->ram + p * RDMIG_PAGE_SIZE);

		/* xorshift64: decide the page, then fill it */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (x % 100 >= percent)
			continue;
		for (unsigned i = 0; i < RDMIG_PAGE_SIZE / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w[i] = x;
		}
	}
	return 0;
}

int rdmig_guest_dump(const struct rdmig_guest *g, const char *path, struct rdmig_err *err)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "dump guest RAM to %s: open",
					  path);
	for (unsigned r = 0; r < g->cfg.nregions && !ret; r++) {
		const uint8_t *p = g->regions[r].addr;
		uint64_t left = g->regions[r].len;

		while (left) {
			size_t chunk = left > (1u << 30) ? (1u << 30) : (size_t)left;
			ssize_t n = write(fd, p, chunk);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				ret = rdmig_seterr_errno(err, n < 0 ? rdmig_neg_errno() : -EIO,
							 "dump guest RAM to %s: write of %s", path,
							 g->regions[r].name);
				break;
			}
			p += n;
			left -= (uint64_t)n;
		}
	}
	if (close(fd) && !ret)
		ret =
		    rdmig_seterr_errno(err, rdmig_neg_errno(), "dump guest RAM to %s: close", path);
	return ret;
}
