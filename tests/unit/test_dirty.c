/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page sources against the real kernel mechanisms (no mocks).
 *
 *   test_dirty [-s SEED] [-t STRESS_MS]
 *   test_dirty --measure [BYTES [DIRTY_PAGES]]
 *
 * For each kernel source (uffd-wp, soft-dirty) that this kernel offers
 * (probed first; a missing one is skipped with the probe's reason):
 *   exact   a known random set of pages, part of it written from a second
 *           thread while the main thread harvests, is reported exactly
 *           (uffd-wp) or at least (soft-dirty); a second harvest is empty;
 *           writing again reports the pages again;
 *   stress  a writer thread increments random pages non-stop while the
 *           main thread harvests and copies the reported pages into a
 *           shadow, after a bulk copy taken right after start; after the
 *           writer stops and a final harvest, shadow == region byte for
 *           byte. That is the migration invariant.
 * each once with transparent huge pages off for the region and once with
 * them asked for (QEMU asks for them on guest RAM); plus the vmm-bitmap
 * source driven by a simulated VMM log, the none source, and the front
 * end's validation.
 *
 * The seed is printed first; rerun with -s SEED or RDMIG_TEST_SEED.
 * --measure prints the harvest cost of each available source
 * (rdmig_dirty_measure; default 1 GiB, 1% of the pages dirty) and exits.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "dirty.h"

#define DEFAULT_SEED	  0x64697274ULL /* "dirt" */
#define REGION_BYTES	  (64ULL << 20)
#define HUGE_BYTES	  (2ULL << 20)
#define EXACT_PAGES	  600 /* written per round of the exact test */
#define DEFAULT_STRESS_MS 1500

static uint64_t test_seed = DEFAULT_SEED;
static unsigned stress_ms = DEFAULT_STRESS_MS;
static size_t psz;

/* Probe results, taken once before any tracker runs (the soft-dirty probe clears bits). */
static int uffd_rc, sd_rc;
static struct rdmig_err uffd_why = RDMIG_ERR_INIT, sd_why = RDMIG_ERR_INIT;

/* ---- helpers ------------------------------------------------------------ */

static uint64_t xorshift64s(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static bool test_bit(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] & (1ULL << (i % 64));
}

static void set_bit(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

static uint64_t count_bits(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

/* Skip, loudly, a test of a source this kernel lacks. */
static void require_source(enum rdmig_dirty_kind kind)
{
	int rc = kind == RDMIG_DIRTY_UFFD_WP ? uffd_rc : sd_rc;
	const struct rdmig_err *why = kind == RDMIG_DIRTY_UFFD_WP ? &uffd_why : &sd_why;

	if (rc == 0)
		return;
	print_message("[  SKIP    ] %s dirty tracking is not available on this kernel: %s\n",
		      rdmig_dirty_kind_name(kind), rdmig_err_str(why));
	skip();
}

/*
 * Writers enter the gate around each write; pause_writers closes it and
 * waits until no writer is inside (what a VMM does with its vCPUs).
 */
struct gate {
	atomic_int closed;
	atomic_int inside;
	atomic_ulong pauses;
};

static void gate_enter(struct gate *g)
{
	for (;;) {
		while (atomic_load(&g->closed))
			sched_yield();
		atomic_fetch_add(&g->inside, 1);
		if (!atomic_load(&g->closed))
			return;
		atomic_fetch_sub(&g->inside, 1);
	}
}

static void gate_leave(struct gate *g)
{
	atomic_fetch_sub(&g->inside, 1);
}

static int gate_pause(void *ctx, bool pause, struct rdmig_err *err)
{
	struct gate *g = ctx;

	if (!pause) {
		atomic_store(&g->closed, 0);
		return 0;
	}
	atomic_store(&g->closed, 1);
	while (atomic_load(&g->inside))
		sched_yield();
	atomic_fetch_add(&g->pauses, 1);
	return 0;
}

/* ---- fixture ------------------------------------------------------------ */

/*
 * A region of guest RAM with PROT_NONE guard pages on both sides, so that
 * no later anonymous mapping (a thread stack) merges with it: for
 * soft-dirty a merge marks the whole merged mapping dirty. 2 MiB aligned,
 * so that asking for huge pages gets them.
 */
struct region {
	uint8_t *raw, *mem;
	uint64_t raw_len, len, npages, words;
	uint64_t *bitmap;
};

enum thp { THP_OFF, THP_ON, THP_ANY };

/*
 * What a test may leave behind when an assertion jumps out of it, released
 * by teardown(): the tracker (a leaked soft-dirty one would fail every later
 * soft-dirty test), the writer thread and the regions.
 */
static struct {
	struct rdmig_dirty *d;
	struct region regions[2];
	unsigned nregions;
	pthread_t th;
	bool th_live;
	atomic_int stop;
	struct gate gate;
	uint64_t *sets[2]; /* the exact test's page sets */
} fx;

static int setup(void **state)
{
	memset(&fx, 0, sizeof(fx));
	return 0;
}

static void stop_thread(void)
{
	if (!fx.th_live)
		return;
	atomic_store(&fx.stop, 1);
	atomic_store(&fx.gate.closed, 0);
	pthread_join(fx.th, NULL);
	fx.th_live = false;
}

static int teardown(void **state)
{
	stop_thread();
	rdmig_dirty_destroy(fx.d);
	fx.d = NULL;
	for (unsigned i = 0; i < fx.nregions; i++) {
		free(fx.regions[i].bitmap);
		munmap(fx.regions[i].raw, fx.regions[i].raw_len);
	}
	fx.nregions = 0;
	free(fx.sets[0]);
	free(fx.sets[1]);
	return 0;
}

static void start_thread(void *(*fn)(void *), void *arg)
{
	atomic_store(&fx.stop, 0);
	assert_int_equal(pthread_create(&fx.th, NULL, fn, arg), 0);
	fx.th_live = true;
}

static struct region *region_new(uint64_t len, uint64_t populate, enum thp thp)
{
	struct region *r = &fx.regions[fx.nregions];
	uintptr_t a;

	assert_true(fx.nregions < 2);
	r->len = len;
	r->npages = len / psz;
	r->words = (r->npages + 63) / 64;
	r->raw_len = len + HUGE_BYTES + psz;
	r->raw = mmap(NULL, r->raw_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(r->raw != MAP_FAILED);
	fx.nregions++;
	a = ((uintptr_t)r->raw + psz + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1);
	r->mem = (uint8_t *)a;
	assert_int_equal(mprotect(r->mem, len, PROT_READ | PROT_WRITE), 0);
	if (thp != THP_ANY)
		assert_int_equal(
		    madvise(r->mem, len, thp == THP_ON ? MADV_HUGEPAGE : MADV_NOHUGEPAGE), 0);
	/* Guest RAM is partly populated: cover present and never-touched pages. */
	for (uint64_t i = 0; i < populate / psz; i++)
		r->mem[i * psz] = (uint8_t)i;
	r->bitmap = calloc(r->words, sizeof(uint64_t));
	assert_non_null(r->bitmap);
	return r;
}

/* AnonHugePages of the mapping at addr, in KiB (-1 if not found): tells whether THP took. */
static long thp_kib(const void *addr)
{
	char line[256];
	unsigned long start;
	bool in = false;
	long kib = -1;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-", &start) == 1 && strchr(line, '-') &&
		    line[strspn(line, "0123456789abcdef")] == '-')
			in = start == (uintptr_t)addr;
		else if (in && sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib;
}

static void clear_bitmap(struct region *r)
{
	memset(r->bitmap, 0, r->words * sizeof(uint64_t));
}

/* Writers store with atomics: the harvester reads the same pages while they run. */
static void poke(struct region *r, uint64_t page, uint64_t v)
{
	__atomic_store_n((uint64_t *)(void *)(r->mem + page * psz) + (v % (psz / 8)), v,
			 __ATOMIC_RELAXED);
}

static struct rdmig_dirty *tracker(enum rdmig_dirty_kind kind, struct region *r)
{
	struct rdmig_dirty_region dr = {.addr = r->mem, .len = r->len, .bitmap = r->bitmap};
	struct rdmig_err err = RDMIG_ERR_INIT;
	int ret;

	ret = rdmig_dirty_create(kind, &dr, 1, psz, &fx.d, &err);
	if (ret)
		fail_msg("create %s: %s", rdmig_dirty_kind_name(kind), rdmig_err_str(&err));
	fx.d->pause_writers = gate_pause;
	fx.d->pause_ctx = &fx.gate;
	ret = rdmig_dirty_start(fx.d, &err);
	if (ret)
		fail_msg("%s", rdmig_err_str(&err));
	return fx.d;
}

static void harvest(struct rdmig_dirty *d)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (rdmig_dirty_harvest(d, &err))
		fail_msg("%s (seed %#" PRIx64 ")", rdmig_err_str(&err), test_seed);
}

/*
 * Compare the reported set with the written one: no page missed, and for
 * an exact source no page extra.
 */
static void check_reported(const struct region *r, const uint64_t *written, bool exact,
			   const char *what)
{
	uint64_t missed = 0, extra = 0, first_missed = 0, first_extra = 0;

	for (uint64_t i = 0; i < r->npages; i++) {
		bool w = test_bit(written, i), rep = test_bit(r->bitmap, i);

		if (w && !rep && !missed++)
			first_missed = i;
		if (!w && rep && !extra++)
			first_extra = i;
	}
	if (missed)
		fail_msg("%s: %" PRIu64 " written page(s) not reported, first %" PRIu64
			 " (seed %#" PRIx64 ")",
			 what, missed, first_missed, test_seed);
	if (exact && extra)
		fail_msg("%s: %" PRIu64 " page(s) reported but not written, first %" PRIu64
			 " (seed %#" PRIx64 ")",
			 what, extra, first_extra, test_seed);
	if (extra)
		print_message("[   INFO   ] %s: %" PRIu64 " extra page(s) reported (allowed)\n",
			      what, extra);
}

/* `n` distinct random pages into `set` (cleared first). */
static void random_set(uint64_t *set, uint64_t words, uint64_t npages, uint64_t n, uint64_t *rng)
{
	memset(set, 0, words * sizeof(uint64_t));
	for (uint64_t k = 0; k < n;) {
		uint64_t p = xorshift64s(rng) % npages;

		if (!test_bit(set, p)) {
			set_bit(set, p);
			k++;
		}
	}
}

/* ---- exact test --------------------------------------------------------- */

static struct side_writer {
	struct region *r;
	const uint64_t *set;
	atomic_int done;
} side_writer;

/* Writes its pages slowly, so that they land before, during and after harvests. */
static void *side_writer_main(void *arg)
{
	struct side_writer *s = arg;
	struct timespec ts = {.tv_nsec = 20000};

	for (uint64_t i = 0; i < s->r->npages && !atomic_load(&fx.stop); i++) {
		if (!test_bit(s->set, i))
			continue;
		gate_enter(&fx.gate);
		poke(s->r, i, i + 7);
		gate_leave(&fx.gate);
		nanosleep(&ts, NULL);
	}
	atomic_store(&s->done, 1);
	return NULL;
}

static void exact(enum rdmig_dirty_kind kind, enum thp thp)
{
	bool precise = kind == RDMIG_DIRTY_UFFD_WP;
	struct region *r;
	struct rdmig_dirty *d;
	uint64_t rng = test_seed, *set, *side, harvests = 0;

	require_source(kind);
	r = region_new(REGION_BYTES, REGION_BYTES / 2, thp);
	set = fx.sets[0] = calloc(r->words, sizeof(uint64_t));
	side = fx.sets[1] = calloc(r->words, sizeof(uint64_t));
	assert_non_null(set);
	assert_non_null(side);
	d = tracker(kind, r);
	if (thp == THP_ON)
		print_message("[   INFO   ] %s: %ld KiB of the region in huge pages\n",
			      rdmig_dirty_kind_name(kind), thp_kib(r->mem));

	/* Nothing written since start. */
	harvest(d);
	assert_int_equal(count_bits(r->bitmap, r->words), 0);

	/* Round 1: two thirds from this thread, the rest from a thread during harvests. */
	random_set(set, r->words, r->npages, EXACT_PAGES, &rng);
	for (uint64_t i = 0, k = 0; i < r->npages; i++) {
		if (!test_bit(set, i))
			continue;
		if (k++ % 3 == 2)
			set_bit(side, i);
		else
			poke(r, i, i + 3);
	}
	side_writer = (struct side_writer){.r = r, .set = side};
	start_thread(side_writer_main, &side_writer);
	while (!atomic_load(&side_writer.done)) {
		harvest(d);
		harvests++;
	}
	stop_thread();
	harvest(d);
	print_message("[   INFO   ] %s: %" PRIu64 " harvests while the second thread wrote\n",
		      rdmig_dirty_kind_name(kind), harvests);
	check_reported(r, set, precise, "written set");

	/* Reported pages were re-armed: nothing new. */
	clear_bitmap(r);
	harvest(d);
	if (count_bits(r->bitmap, r->words))
		fail_msg("second harvest reported %" PRIu64 " page(s), expected none",
			 count_bits(r->bitmap, r->words));

	/* Round 2: a new set, plus some pages of the first, is reported again. */
	random_set(set, r->words, r->npages, EXACT_PAGES, &rng);
	for (uint64_t i = 0; i < r->npages; i++)
		if (i % 97 == 0 && test_bit(side, i))
			set_bit(set, i);
	for (uint64_t i = 0; i < r->npages; i++)
		if (test_bit(set, i))
			poke(r, i, i + 11);
	harvest(d);
	check_reported(r, set, precise, "rewritten set");
}

static void test_uffd_exact(void **state)
{
	exact(RDMIG_DIRTY_UFFD_WP, THP_OFF);
}

static void test_uffd_exact_thp(void **state)
{
	exact(RDMIG_DIRTY_UFFD_WP, THP_ON);
}

static void test_softdirty_exact(void **state)
{
	exact(RDMIG_DIRTY_SOFT_DIRTY, THP_OFF);
}

static void test_softdirty_exact_thp(void **state)
{
	exact(RDMIG_DIRTY_SOFT_DIRTY, THP_ON);
}

/* ---- stress: the migration invariant ------------------------------------ */

static struct stress_writer {
	struct region *r;
	uint64_t seed;
	atomic_ulong epoch; /* bumped before each harvest */
	atomic_ulong writes;
} stress_writer;

/*
 * Writes allowed per harvest: few enough that most pages are clean when a
 * harvest starts (a page already dirty cannot show a lost write), which
 * matters on a slow machine (TCG) where the copies take long.
 */
#define STRESS_BUDGET(npages) ((npages) / 16)

static void *stress_writer_main(void *arg)
{
	struct stress_writer *s = arg;
	uint64_t rng = s->seed, n = 0, budget = STRESS_BUDGET(s->r->npages), epoch = 0;

	while (!atomic_load_explicit(&fx.stop, memory_order_relaxed)) {
		uint64_t x = xorshift64s(&rng), page = x % s->r->npages;
		uint64_t *w = (uint64_t *)(void *)(s->r->mem + page * psz);

		if (!budget) {
			if (atomic_load(&s->epoch) == epoch) {
				sched_yield();
				continue;
			}
			epoch = atomic_load(&s->epoch);
			budget = STRESS_BUDGET(s->r->npages);
		}
		budget--;
		gate_enter(&fx.gate);
		/* Byte 0 of the page, and now and then a word elsewhere in it. */
		__atomic_fetch_add(&w[0], 1, __ATOMIC_RELAXED);
		if ((x >> 40) % 8 == 0)
			__atomic_store_n(&w[1 + (x >> 44) % (psz / 8 - 1)], x, __ATOMIC_RELAXED);
		gate_leave(&fx.gate);
		n++;
	}
	atomic_store(&s->writes, n);
	return NULL;
}

static void copy_page(uint8_t *dst, const uint8_t *src)
{
	uint64_t *d = (uint64_t *)(void *)dst;
	const uint64_t *s = (const uint64_t *)(const void *)src;

	for (size_t i = 0; i < psz / 8; i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

/* Copy the reported pages into the shadow and clear the bitmap; returns how many. */
static uint64_t copy_reported(struct region *r, uint8_t *shadow)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < r->words; w++) {
		uint64_t bits = r->bitmap[w];

		while (bits) {
			uint64_t p = w * 64 + (unsigned)__builtin_ctzll(bits);

			bits &= bits - 1;
			copy_page(shadow + p * psz, r->mem + p * psz);
			n++;
		}
		r->bitmap[w] = 0;
	}
	return n;
}

static void stress(enum rdmig_dirty_kind kind, enum thp thp)
{
	struct region *r, *shadow;
	struct rdmig_dirty *d;
	uint64_t harvests = 0, copied = 0, t_end, final;

	require_source(kind);
	r = region_new(REGION_BYTES, REGION_BYTES, thp);
	shadow = region_new(REGION_BYTES, 0, THP_ANY);

	/* The guest runs before, during and after start, as in a migration. */
	stress_writer = (struct stress_writer){.r = r, .seed = test_seed ^ 0x5157};
	start_thread(stress_writer_main, &stress_writer);
	d = tracker(kind, r);
	if (thp == THP_ON)
		print_message("[   INFO   ] %s: %ld KiB of the region in huge pages at start\n",
			      rdmig_dirty_kind_name(kind), thp_kib(r->mem));

	/* Bulk round: everything, after tracking started. */
	for (uint64_t p = 0; p < r->npages; p++)
		copy_page(shadow->mem + p * psz, r->mem + p * psz);

	t_end = (uint64_t)rdmig_now_ms() + stress_ms;
	while ((uint64_t)rdmig_now_ms() < t_end) {
		atomic_fetch_add(&stress_writer.epoch, 1);
		harvest(d);
		harvests++;
		copied += copy_reported(r, shadow->mem);
	}

	/* Switchover: stop the guest, final harvest, final copy. */
	stop_thread();
	harvest(d);
	final = copy_reported(r, shadow->mem);

	print_message("[   INFO   ] %s: %" PRIu64 " harvests, %lu writes, %" PRIu64
		      " pages copied live, %" PRIu64 " in the final round, %lu pauses%s\n",
		      rdmig_dirty_kind_name(kind), harvests,
		      (unsigned long)atomic_load(&stress_writer.writes), copied, final,
		      (unsigned long)atomic_load(&fx.gate.pauses),
		      thp == THP_ON ? ", huge pages asked for" : "");
	if (thp == THP_ON)
		print_message("[   INFO   ] %s: %ld KiB of the region in huge pages at the end\n",
			      rdmig_dirty_kind_name(kind), thp_kib(r->mem));
	assert_true(atomic_load(&stress_writer.writes) > 0);
	assert_true(harvests > 1);

	if (memcmp(shadow->mem, r->mem, r->len) != 0) {
		uint64_t bad = 0, first = 0;

		for (uint64_t p = 0; p < r->npages; p++)
			if (memcmp(shadow->mem + p * psz, r->mem + p * psz, psz) && !bad++)
				first = p;
		fail_msg("%s lost writes: %" PRIu64 " page(s) differ from the copy, first %" PRIu64
			 " (seed %#" PRIx64 ")",
			 rdmig_dirty_kind_name(kind), bad, first, test_seed);
	}
}

static void test_uffd_stress(void **state)
{
	stress(RDMIG_DIRTY_UFFD_WP, THP_OFF);
}

static void test_uffd_stress_thp(void **state)
{
	stress(RDMIG_DIRTY_UFFD_WP, THP_ON);
}

static void test_softdirty_stress(void **state)
{
	stress(RDMIG_DIRTY_SOFT_DIRTY, THP_OFF);
}

static void test_softdirty_stress_thp(void **state)
{
	stress(RDMIG_DIRTY_SOFT_DIRTY, THP_ON);
}

/* ---- soft-dirty specifics ----------------------------------------------- */

static void test_softdirty_rules(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct region *r;
	struct rdmig_dirty *d, *d2;
	struct rdmig_dirty_region dr;

	require_source(RDMIG_DIRTY_SOFT_DIRTY);
	r = region_new(16 * psz, 16 * psz, THP_OFF);
	dr = (struct rdmig_dirty_region){.addr = r->mem, .len = r->len, .bitmap = r->bitmap};

	/* Without a way to pause the writers the harvest could lose writes. */
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_SOFT_DIRTY, &dr, 1, psz, &d, &err), 0);
	assert_int_equal(rdmig_dirty_start(d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "pause_writers"));
	rdmig_dirty_destroy(d);

	/* One per process: clear_refs is process-wide. */
	d = tracker(RDMIG_DIRTY_SOFT_DIRTY, r);
	assert_true(rdmig_dirty_softdirty_active());
	assert_int_equal(rdmig_dirty_best(false),
			 uffd_rc ? RDMIG_DIRTY_SOFT_DIRTY : RDMIG_DIRTY_UFFD_WP);
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_SOFT_DIRTY, &dr, 1, psz, &d2, &err), 0);
	d2->pause_writers = gate_pause;
	d2->pause_ctx = &fx.gate;
	assert_int_equal(rdmig_dirty_start(d2, &err), -EBUSY);
	rdmig_dirty_destroy(d2);
	/* The failed second start must not have released the first one's claim. */
	assert_true(rdmig_dirty_softdirty_active());
	rdmig_dirty_destroy(d);
	fx.d = NULL;
	assert_false(rdmig_dirty_softdirty_active());
}

/* ---- granule larger than a page ----------------------------------------- */

static void test_uffd_granule(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct region *r;
	struct rdmig_dirty_region dr;
	uint64_t gran = 4 * psz;

	require_source(RDMIG_DIRTY_UFFD_WP);
	r = region_new(64 * psz, 32 * psz, THP_OFF);
	dr = (struct rdmig_dirty_region){.addr = r->mem, .len = r->len, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_UFFD_WP, &dr, 1, gran, &fx.d, &err), 0);
	assert_int_equal(rdmig_dirty_start(fx.d, &err), 0);
	poke(r, 5, 1);	/* granule 1 */
	poke(r, 6, 1);	/* granule 1 */
	poke(r, 40, 1); /* granule 10, never touched before */
	harvest(fx.d);
	assert_int_equal(r->bitmap[0], (1ULL << 1) | (1ULL << 10));
}

/* ---- vmm-bitmap with a simulated VMM log, and none ---------------------- */

struct fake_vmm {
	atomic_ulong log[2][4]; /* two regions of up to 256 pages */
	int fail_region;	/* -1: never */
};

static int fake_vmm_harvest(void *ctx, unsigned region, uint64_t *bitmap, struct rdmig_err *err)
{
	struct fake_vmm *v = ctx;

	if ((int)region == v->fail_region)
		return rdmig_seterr(err, -EFAULT, "KVM_GET_DIRTY_LOG: Bad address");
	for (int w = 0; w < 4; w++)
		bitmap[w] |= atomic_exchange(&v->log[region][w], 0);
	return 0;
}

static void test_vmm(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct fake_vmm v = {.fail_region = -1};
	struct region *r0, *r1;
	struct rdmig_dirty_region dr[2];
	struct rdmig_dirty *d;

	r0 = region_new(256 * psz, 0, THP_ANY);
	r1 = region_new(200 * psz, 0, THP_ANY);
	dr[0] = (struct rdmig_dirty_region){.addr = r0->mem, .len = r0->len, .bitmap = r0->bitmap};
	dr[1] = (struct rdmig_dirty_region){.addr = r1->mem, .len = r1->len, .bitmap = r1->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_VMM_LOG, dr, 2, psz, &fx.d, &err), 0);
	d = fx.d;
	assert_int_equal(rdmig_dirty_start(d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "vmm_harvest"));
	rdmig_err_clear(&err);
	d->vmm_harvest = fake_vmm_harvest;
	d->vmm_ctx = &v;
	assert_int_equal(rdmig_dirty_start(d, &err), 0);

	atomic_fetch_or(&v.log[0][0], 1UL << 3);
	atomic_fetch_or(&v.log[0][3], 1UL << 63);
	atomic_fetch_or(&v.log[1][2], 1UL << 5);
	harvest(d);
	assert_int_equal(r0->bitmap[0], 1ULL << 3);
	assert_int_equal(r0->bitmap[3], 1ULL << 63);
	assert_int_equal(r1->bitmap[2], 1ULL << 5);
	assert_int_equal(count_bits(r0->bitmap, r0->words) + count_bits(r1->bitmap, r1->words), 3);
	clear_bitmap(r0);
	clear_bitmap(r1);
	harvest(d);
	assert_int_equal(count_bits(r0->bitmap, r0->words) + count_bits(r1->bitmap, r1->words), 0);

	v.fail_region = 1;
	assert_int_equal(rdmig_dirty_harvest(d, &err), -EFAULT);
	assert_non_null(strstr(err.msg, "region 1"));
	assert_non_null(strstr(err.msg, "KVM_GET_DIRTY_LOG"));
	assert_int_equal(d->harvests, 3);
}

static void test_none(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct region *r;
	struct rdmig_dirty_region dr;

	r = region_new(128 * psz, 128 * psz, THP_ANY);
	dr = (struct rdmig_dirty_region){.addr = r->mem, .len = r->len, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, &dr, 1, psz, &fx.d, &err), 0);
	assert_int_equal(rdmig_dirty_harvest(fx.d, &err), -EINVAL); /* before start */
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_start(fx.d, &err), 0);
	assert_int_equal(rdmig_dirty_start(fx.d, &err), -EALREADY);
	for (uint64_t i = 0; i < r->npages; i += 3)
		poke(r, i, i);
	harvest(fx.d);
	assert_int_equal(count_bits(r->bitmap, r->words), 0);
}

/* ---- front end ---------------------------------------------------------- */

static void test_parse(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	enum rdmig_dirty_kind k;
	bool is_auto;

	assert_int_equal(rdmig_dirty_parse("uffd-wp", &k, &is_auto, &err), 0);
	assert_int_equal(k, RDMIG_DIRTY_UFFD_WP);
	assert_false(is_auto);
	assert_int_equal(rdmig_dirty_parse("soft-dirty", &k, &is_auto, &err), 0);
	assert_int_equal(k, RDMIG_DIRTY_SOFT_DIRTY);
	assert_int_equal(rdmig_dirty_parse("vmm-bitmap", &k, &is_auto, &err), 0);
	assert_int_equal(k, RDMIG_DIRTY_VMM_LOG);
	assert_int_equal(rdmig_dirty_parse("none", &k, &is_auto, &err), 0);
	assert_int_equal(k, RDMIG_DIRTY_NONE);
	assert_int_equal(rdmig_dirty_parse("auto", &k, &is_auto, &err), 0);
	assert_true(is_auto);
	assert_int_equal(rdmig_dirty_parse("softdirty", &k, &is_auto, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "'softdirty'"));
	assert_non_null(strstr(err.msg, "uffd-wp"));
}

static void test_create_checks(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct region *r;
	struct rdmig_dirty *d = (void *)1;
	struct rdmig_dirty_region dr[2];

	r = region_new(64 * psz, 0, THP_ANY);
	dr[0] = (struct rdmig_dirty_region){.addr = r->mem + 1, .len = psz, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 1, psz, &d, &err), -EINVAL);
	assert_null(d);
	assert_non_null(strstr(err.msg, "region 0"));

	rdmig_err_clear(&err);
	dr[0] = (struct rdmig_dirty_region){.addr = r->mem, .len = 3 * psz, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 1, 2 * psz, &d, &err), -EINVAL);

	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 1, 3 * psz, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "power of two"));

	rdmig_err_clear(&err);
	dr[0] = (struct rdmig_dirty_region){.addr = r->mem, .len = 8 * psz, .bitmap = NULL};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 1, psz, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bitmap"));

	rdmig_err_clear(&err);
	dr[0] = (struct rdmig_dirty_region){.addr = r->mem, .len = 8 * psz, .bitmap = r->bitmap};
	dr[1] = (struct rdmig_dirty_region){
	    .addr = r->mem + 7 * psz, .len = 8 * psz, .bitmap = r->bitmap};
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 2, psz, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "overlap"));

	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_create((enum rdmig_dirty_kind)42, dr, 1, psz, &d, &err),
			 -EINVAL);

	rdmig_err_clear(&err);
	dr[1].addr = r->mem + 8 * psz;
	assert_int_equal(rdmig_dirty_create(RDMIG_DIRTY_NONE, dr, 2, psz, &fx.d, &err), 0);
	rdmig_dirty_destroy(NULL);
}

static void test_set_bits(void **state)
{
	uint64_t bm[4], ref[4];

	for (uint64_t first = 0; first < 256; first += 7) {
		for (uint64_t n = 0; first + n <= 256; n += 5) {
			memset(bm, 0, sizeof(bm));
			memset(ref, 0, sizeof(ref));
			rdmig_dirty_set_bits(bm, first, n);
			for (uint64_t i = first; i < first + n; i++)
				set_bit(ref, i);
			if (memcmp(bm, ref, sizeof(bm)))
				fail_msg("set_bits(%" PRIu64 ", %" PRIu64 ") wrong", first, n);
		}
	}
}

static void test_best(void **state)
{
	enum rdmig_dirty_kind want = rdmig_dirty_pick(uffd_rc, sd_rc, true);

	assert_int_equal(rdmig_dirty_best(true), want);
	print_message("[   INFO   ] best source here: %s\n", rdmig_dirty_kind_name(want));
}

static void test_measure_smoke(void **state)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	double ms;

	assert_int_equal(rdmig_dirty_measure(RDMIG_DIRTY_VMM_LOG, 1 << 20, 1, &ms, &err), -EINVAL);
	rdmig_err_clear(&err);
	assert_int_equal(rdmig_dirty_measure(RDMIG_DIRTY_UFFD_WP, 1 << 20, 257, &ms, &err),
			 -EINVAL);
	for (int k = RDMIG_DIRTY_SOFT_DIRTY; k <= RDMIG_DIRTY_UFFD_WP; k++) {
		if ((k == RDMIG_DIRTY_UFFD_WP ? uffd_rc : sd_rc) != 0)
			continue;
		rdmig_err_clear(&err);
		if (rdmig_dirty_measure(k, 16ULL << 20, 40, &ms, &err))
			fail_msg("%s", rdmig_err_str(&err));
		assert_true(ms > 0);
	}
}

/* ---- main --------------------------------------------------------------- */

static void probe_sources(void)
{
	uffd_rc = rdmig_probe_uffd_wp_async(&uffd_why);
	sd_rc = rdmig_probe_soft_dirty(&sd_why);
}

static int measure_main(int argc, char **argv)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t bytes = 1ULL << 30, pages;
	int status = 0;

	if (argc > 0)
		bytes = strtoull(argv[0], NULL, 0);
	pages = bytes / psz / 100;
	if (argc > 1)
		pages = strtoull(argv[1], NULL, 0);
	probe_sources();
	for (int k = RDMIG_DIRTY_SOFT_DIRTY; k <= RDMIG_DIRTY_UFFD_WP; k++) {
		int rc = k == RDMIG_DIRTY_UFFD_WP ? uffd_rc : sd_rc;
		const struct rdmig_err *why = k == RDMIG_DIRTY_UFFD_WP ? &uffd_why : &sd_why;
		double ms;

		if (rc) {
			printf("%-10s unavailable: %s\n", rdmig_dirty_kind_name(k),
			       rdmig_err_str(why));
			continue;
		}
		rdmig_err_clear(&err);
		if (rdmig_dirty_measure(k, bytes, pages, &ms, &err)) {
			printf("%-10s failed: %s\n", rdmig_dirty_kind_name(k), rdmig_err_str(&err));
			status = 1;
			continue;
		}
		printf("%-10s %.3f ms/GiB (%" PRIu64 " MiB tracked, %" PRIu64
		       " pages dirty per harvest)\n",
		       rdmig_dirty_kind_name(k), ms, bytes >> 20, pages);
	}
	return status;
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(int argc, char **argv)
{
	const char *env = getenv("RDMIG_TEST_SEED");
	const struct CMUnitTest tests[] = {
	    T(test_set_bits),
	    T(test_parse),
	    T(test_create_checks),
	    T(test_none),
	    T(test_vmm),
	    T(test_best),
	    T(test_uffd_exact),
	    T(test_uffd_exact_thp),
	    T(test_uffd_granule),
	    T(test_uffd_stress),
	    T(test_uffd_stress_thp),
	    T(test_softdirty_rules),
	    T(test_softdirty_exact),
	    T(test_softdirty_exact_thp),
	    T(test_softdirty_stress),
	    T(test_softdirty_stress_thp),
	    T(test_measure_smoke),
	};

	psz = (size_t)sysconf(_SC_PAGESIZE);
	if (argc > 1 && strcmp(argv[1], "--measure") == 0)
		return measure_main(argc - 2, argv + 2);
	if (env)
		test_seed = strtoull(env, NULL, 0);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
			test_seed = strtoull(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
			stress_ms = (unsigned)strtoul(argv[++i], NULL, 0);
		} else {
			fprintf(stderr,
				"usage: %s [-s SEED] [-t STRESS_MS] | --measure [BYTES "
				"[DIRTY_PAGES]]\n",
				argv[0]);
			return 2;
		}
	}
	if (!test_seed)
		test_seed = DEFAULT_SEED; /* xorshift must not start at 0 */
	printf("test_dirty: seed %#" PRIx64 " (rerun with -s or RDMIG_TEST_SEED)\n", test_seed);

	probe_sources();
	if (uffd_rc)
		printf("test_dirty: uffd-wp tests will be SKIPPED: %s\n", rdmig_err_str(&uffd_why));
	if (sd_rc)
		printf("test_dirty: soft-dirty tests will be SKIPPED: %s\n",
		       rdmig_err_str(&sd_why));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
