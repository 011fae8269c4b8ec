/* SPDX-License-Identifier: MIT */
/*
 * What the synthetic guest's vCPUs write (incr, random, hotset, idle) and
 * how fast (dirty_rate pacing). The threads that run this are in
 * guest_vcpu.c; guest_int.h has the ownership rules.
 */
#include "clock.h"
#include "guest_int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define NAP_NS	    1000000ULL	 /* longest sleep between control checks */
#define PACE_LAG_NS 100000000ULL /* dirty_rate: most lag made up (100 ms) */

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

bool rdmig_guest_nap_until(struct rdmig_guest *g, uint64_t deadline)
{
	for (;;) {
		uint64_t now, t;
		struct timespec ts;

		if (rdmig_guest_ctl_pending(g))
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
 * Rate limiting for dirty_rate: the writes are due at base + done *
 * ns_per_write. The pacing clock stands still while the vCPU is throttled or
 * paused, so a throttle of p permille scales the rate by (1000 - p) / 1000,
 * as it would for a guest whose dirtying needs CPU time. Lag (the thread was
 * not scheduled, or writes are slower than the rate) is made up in a burst,
 * up to PACE_LAG_NS of it; beyond that it is forgotten.
 */
void rdmig_guest_pacer_init(struct rdmig_guest_pacer *pc, const struct rdmig_guest_cfg *cfg,
			    uint64_t now)
{
	memset(pc, 0, sizeof(*pc));
	if (cfg->dirty_rate == 0 || cfg->workload == RDMIG_WL_IDLE)
		return;
	pc->on = true;
	pc->ns_per_write = 1e9 * RDMIG_PAGE_SIZE * cfg->vcpus / (double)cfg->dirty_rate;
	/* about 1 ms worth of writes per batch, so pacing is smooth */
	double b = 1e6 / pc->ns_per_write;

	pc->batch = b < 1 ? 1 : b > RDMIG_GUEST_BATCH ? RDMIG_GUEST_BATCH : (unsigned)b;
	pc->base = now;
}

static uint64_t pacer_due(const struct rdmig_guest_pacer *pc)
{
	return pc->base + (uint64_t)((double)pc->done * pc->ns_per_write);
}

static void pacer_done(struct rdmig_guest_pacer *pc, unsigned n, uint64_t now)
{
	uint64_t due;

	pc->done += n;
	due = pacer_due(pc);
	if (due + PACE_LAG_NS < now || pc->done > (1u << 20)) {
		pc->base = due + PACE_LAG_NS < now ? now - PACE_LAG_NS : due;
		pc->done = 0;
	}
}

void rdmig_guest_vcpu_work(struct rdmig_guest_vcpu *v, struct rdmig_vcpu_state *st,
			   struct rdmig_guest_pacer *pc, uint64_t end)
{
	struct rdmig_guest *g = v->g;
	uint64_t nwords = g->cfg.ram_size / 8;

	while (!rdmig_guest_ctl_pending(g)) {
		uint64_t now = rdmig_now_ns();
		unsigned n = RDMIG_GUEST_BATCH;

		if (now >= end)
			return;
		if (g->cfg.workload == RDMIG_WL_IDLE) {
			rdmig_guest_nap_until(g, end);
			return;
		}
		if (pc->on) {
			uint64_t due = pacer_due(pc);

			if (due > now) {
				rdmig_guest_nap_until(g, due < end ? due : end);
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
