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
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "dirty.h"
#include "test_dirty.h"

#define DEFAULT_SEED	  0x64697274ULL /* "dirt" */
#define DEFAULT_STRESS_MS 1500

uint64_t test_seed = DEFAULT_SEED;
unsigned stress_ms = DEFAULT_STRESS_MS;
size_t psz;
int uffd_rc, sd_rc;
struct rdmig_err uffd_why = RDMIG_ERR_INIT, sd_why = RDMIG_ERR_INIT;
struct fixture fx;

/* ---- helpers ------------------------------------------------------------ */

uint64_t xorshift64s(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

uint64_t count_bits(const uint64_t *bm, uint64_t words)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < words; w++)
		n += (uint64_t)__builtin_popcountll(bm[w]);
	return n;
}

void require_source(enum rdmig_dirty_kind kind)
{
	int rc = kind == RDMIG_DIRTY_UFFD_WP ? uffd_rc : sd_rc;
	const struct rdmig_err *why = kind == RDMIG_DIRTY_UFFD_WP ? &uffd_why : &sd_why;

	if (rc == 0)
		return;
	print_message("[  SKIP    ] %s dirty tracking is not available on this kernel: %s\n",
		      rdmig_dirty_kind_name(kind), rdmig_err_str(why));
	skip();
}

void gate_enter(struct gate *g)
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

void gate_leave(struct gate *g)
{
	atomic_fetch_sub(&g->inside, 1);
}

int gate_pause(void *ctx, bool pause, struct rdmig_err *err)
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

int setup(void **state)
{
	memset(&fx, 0, sizeof(fx));
	return 0;
}

void stop_thread(void)
{
	if (!fx.th_live)
		return;
	atomic_store(&fx.stop, 1);
	atomic_store(&fx.gate.closed, 0);
	pthread_join(fx.th, NULL);
	fx.th_live = false;
}

int teardown(void **state)
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

void start_thread(void *(*fn)(void *), void *arg)
{
	atomic_store(&fx.stop, 0);
	assert_int_equal(pthread_create(&fx.th, NULL, fn, arg), 0);
	fx.th_live = true;
}

struct region *region_new(uint64_t len, uint64_t populate, enum thp thp)
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

long thp_kib(const void *addr)
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

void clear_bitmap(struct region *r)
{
	memset(r->bitmap, 0, r->words * sizeof(uint64_t));
}

void poke(struct region *r, uint64_t page, uint64_t v)
{
	__atomic_store_n((uint64_t *)(void *)(r->mem + page * psz) + (v % (psz / 8)), v,
			 __ATOMIC_RELAXED);
}

struct rdmig_dirty *tracker(enum rdmig_dirty_kind kind, struct region *r)
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

void harvest(struct rdmig_dirty *d)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (rdmig_dirty_harvest(d, &err))
		fail_msg("%s (seed %#" PRIx64 ")", rdmig_err_str(&err), test_seed);
}

void check_reported(const struct region *r, const uint64_t *written, bool exact, const char *what)
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

void random_set(uint64_t *set, uint64_t words, uint64_t npages, uint64_t n, uint64_t *rng)
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

int main(int argc, char **argv)
{
	const char *env = getenv("RDMIG_TEST_SEED");

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
	return dirty_front_tests() + dirty_track_tests() ? 1 : 0;
}
