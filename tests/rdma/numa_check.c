/* SPDX-License-Identifier: MIT */
/*
 * NUMA placement end to end, through the library, source and destination in
 * two processes on one host with >= 2 NUMA nodes (rxe-vm --numa 2):
 *
 *   numa_check check [--host H] [--size MIB]
 *       Live migration of a guest whose region 0 is bound to the first node
 *       and region 1 to the second. Checks that every source worker and
 *       destination receiver runs on the CPUs of its plan (/proc/self/task:
 *       Cpus_allowed_list and the CPU it last ran on) and that every page of
 *       the destination's committed RAM is on the node the source reported
 *       for its region (move_pages query, before the RAM is freed).
 *   numa_check bench [--host H] [--size MIB] [--reps N]
 *       The same cold migration with planned placement and with every worker
 *       and receiver on the far node, alternately; prints the bulk-round
 *       throughput of each and the ratio planned / crossed.
 *
 * With fewer than 2 nodes it prints a SKIP line and exits 77.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "dirty.h"
#include "rdmig/guest.h"
#include "rdmig/guest.h"
#include "plan.h"
#include "rdmig/transport.h"
#include "th_check.h"
#include "th_peer.h"
#include "th_res.h"

static const char *host = "127.0.0.1";
static const char *backend_name = "rdma";
static uint64_t size_mib = 32;
static struct rdmig_numa_topo topo;

static struct rdmig_xport_cfg xcfg(uint16_t port, unsigned channels)
{
	struct rdmig_xport_cfg cfg = {.host = host, .port = port, .channels = channels};

	rdmig_backend_parse(backend_name, &cfg.backend, NULL);
	return cfg;
}

/* CPUs of topology node index n. */
static void node_cpus(int n, struct rdmig_cpuset *s)
{
	rdmig_cpuset_zero(s);
	for (int c = 0; c < topo.cpu_slots; c++)
		if (topo.cpu_state[c] == RDMIG_CPU_ONLINE && topo.cpu_node[c] == n)
			rdmig_cpuset_set(s, c);
}

/*
 * The plan the CLI would make (auto), or, crossed, the same plan with every
 * worker moved to the other node's CPUs.
 */
static int make_plan(const struct rdmig_numa_region *reg, unsigned nreg, unsigned channels,
		     bool crossed, struct rdmig_numa_plan *p)
{
	struct rdmig_numa_input in = {.topo = &topo,
				      .regions = reg,
				      .nregions = nreg,
				      .dev_node = -1,
				      .channels = channels,
				      .policy = RDMIG_NUMA_AUTO};
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (rdmig_numa_plan(&in, p, &err)) {
		printf("FAIL: plan: %s\n", err.msg);
		return -1;
	}
	if (crossed) {
		for (unsigned i = 0; i < p->nworkers; i++) {
			int idx = rdmig_numa_topo_node_index(&topo, p->w[i].node);
			int far = idx == 0 ? 1 : 0;

			node_cpus(far, &p->w[i].cpus);
			p->w[i].node = topo.node[far].os_index;
		}
	}
	return 0;
}

static void print_plan(const char *side, const struct rdmig_numa_plan *p)
{
	char buf[256];

	for (unsigned i = 0; i < p->nworkers; i++)
		printf("%s: plan worker %u node %d CPUs %s\n", side, i, p->w[i].node,
		       rdmig_cpuset_format(&p->w[i].cpus, buf, sizeof(buf)));
}

/* ---- threads ------------------------------------------------------------- */

/*
 * Wait (up to 5 s) until threads PREFIX0..PREFIX(n-1) exist (they name
 * themselves after pinning), then check each against plan worker i.
 */
static void check_threads(const char *side, const char *prefix, const struct rdmig_numa_plan *p,
			  unsigned n)
{
	struct th_task t[RDMIG_NUMA_MAX_WORKERS];
	uint64_t deadline = rdmig_now_ns() + 5000000000ull;
	unsigned found = 0;

	while (found < n && rdmig_now_ns() < deadline) {
		found = 0;
		for (unsigned i = 0; i < n; i++) {
			char comm[32];

			snprintf(comm, sizeof(comm), "%s%u", prefix, i);
			found += th_task_find(comm, &t[i]) == 0;
		}
		if (found < n)
			rdmig_sleep_ms(10);
	}
	TH_CHECK(found == n, "%s: %u of %u %s* threads found in /proc/self/task", side, found, n,
		 prefix);
	if (found < n)
		return;
	for (unsigned i = 0; i < n; i++) {
		char want[256];

		rdmig_cpuset_format(&p->w[i].cpus, want, sizeof(want));
		TH_CHECK(!strcmp(t[i].cpus, want), "%s: %s%u allowed on CPUs %s, plan says %s",
			 side, prefix, i, t[i].cpus, want);
		TH_CHECK(t[i].last_cpu >= 0 && rdmig_cpuset_isset(&p->w[i].cpus, t[i].last_cpu),
			 "%s: %s%u last ran on CPU %d, outside its plan (%s)", side, prefix, i,
			 t[i].last_cpu, want);
		printf(
		    "%s: %s%u Cpus_allowed_list %s, last ran on CPU %d, plan CPUs %s (node %d)\n",
		    side, prefix, i, t[i].cpus, t[i].last_cpu, want, p->w[i].node);
	}
}

/* ---- destination ------------------------------------------------------- */

struct dst_ctx {
	const struct rdmig_numa_plan *plan;
	unsigned channels;
	bool checked;
	bool check_pages;
};

static void dst_event(const struct rdmig_mig_event *ev, void *arg)
{
	struct dst_ctx *d = arg;

	/* BULK is announced right after the receivers were started. */
	if (ev->type == RDMIG_EV_STATE && ev->stats->state == RDMIG_MIG_BULK && !d->checked) {
		d->checked = true;
		if (d->check_pages)
			check_threads("dest", "rdmig-rx", d->plan, d->channels);
	}
}

/* Every page of the committed RAM: on the node the source had region r on. */
static void dst_pages(const struct rdmig_guest *g, void *arg)
{
	struct dst_ctx *d = arg;
	enum { BATCH = 4096 };
	const void *pages[BATCH];
	int nodes[BATCH];

	if (!d->check_pages)
		return;
	for (unsigned r = 0; r < rdmig_guest_cfg(g)->nregions && r < 2; r++) {
		const struct rdmig_guest_region *gr = rdmig_guest_region(g, r);
		uint64_t npages = gr->len / RDMIG_PAGE_SIZE, on = 0, off = 0, other = 0;
		int want = topo.node[r].os_index, seen_off = -1;
		struct rdmig_err err = RDMIG_ERR_INIT;

		for (uint64_t p = 0; p < npages; p += BATCH) {
			unsigned k = npages - p < BATCH ? (unsigned)(npages - p) : BATCH;

			for (unsigned i = 0; i < k; i++)
				pages[i] = gr->addr + (p + i) * RDMIG_PAGE_SIZE;
			if (rdmig_numa_query_pages(pages, k, nodes, &err)) {
				TH_CHECK(0, "dest: region %u: %s", r, err.msg);
				return;
			}
			for (unsigned i = 0; i < k; i++) {
				if (nodes[i] == want) {
					on++;
				} else if (nodes[i] >= 0) {
					off++;
					seen_off = nodes[i];
				} else {
					other++;
				}
			}
		}
		printf("dest: region %u: %" PRIu64 " of %" PRIu64 " pages on node %d, %" PRIu64
		       " elsewhere, %" PRIu64 " not present\n",
		       r, on, npages, want, off, other);
		TH_CHECK(off == 0, "dest: region %u: %" PRIu64 " pages on node %d, planned node %d",
			 r, off, seen_off, want);
		TH_CHECK(on == npages,
			 "dest: region %u: only %" PRIu64 " of %" PRIu64
			 " pages present on node %d",
			 r, on, npages, want);
	}
}

/*
 * `numa_check dest CROSSED CHECK --host H`: a peer (tests/lib/th_peer.h,
 * exec'd: verbs state must not cross a fork) that sends its port over the
 * channel. Exit 0 committed and checked, 1 migration failed, 2 a check failed.
 */
static int run_dest(bool crossed, bool check)
{
	struct rdmig_xport_cfg cfg = xcfg(0, RDMIG_MAX_CHANNELS);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_numa_plan *plan = calloc(1, sizeof(*plan));
	struct dst_ctx d = {.check_pages = check};
	struct rdmig_listener *l;
	struct rdmig_mig_opts o;
	struct rdmig_conn *c;
	int ret;

	if (!plan || rdmig_listen(&cfg, &l, &err) ||
	    th_chan_send_port(th_peer_fd(), rdmig_listener_port(l), &err)) {
		fprintf(stderr, "dest: %s\n", err.msg);
		return 3;
	}
	if (rdmig_accept(l, 60000, &c, &err)) {
		fprintf(stderr, "dest: %s\n", err.msg);
		return 3;
	}
	/* As `rdmig listen`: the plan is made once the channel count is known. */
	d.channels = rdmig_conn_channels(c);
	if (make_plan(NULL, 0, d.channels, crossed, plan))
		return 3;
	if (check)
		print_plan("dest", plan);
	d.plan = plan;
	rdmig_mig_opts_defaults(&o);
	o.resume_ns = 0;
	o.plan = plan;
	o.on_event = dst_event;
	o.ev_ctx = &d;
	o.test_dest_ram = dst_pages;
	ret = rdmig_mig_dest(c, &o, NULL, &err);
	if (ret)
		fprintf(stderr, "dest: %s\n", err.msg);
	rdmig_conn_destroy(c);
	rdmig_listener_destroy(l);
	free(plan);
	if (ret)
		return 1;
	return th_failures() ? 2 : 0;
}

static bool start_dest(struct th_peer *p, uint16_t *port, bool crossed, bool check)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *argv[] = {"numa_check",	 "dest",       crossed ? "1" : "0",
			      check ? "1" : "0", "--host",     host,
			      "--backend",	 backend_name, NULL};

	return TH_CHECK_CALL(th_peer_start_port(p, "destination", argv, port, 60000, &err), &err,
			     "destination started");
}

/* ---- source ------------------------------------------------------------ */

struct src_ctx {
	const struct rdmig_numa_plan *plan;
	unsigned channels;
	bool check;
	bool checked;
	uint64_t t_bulk, t_after, bulk_bytes;
};

static void src_event(const struct rdmig_mig_event *ev, void *arg)
{
	struct src_ctx *s = arg;

	if (ev->type != RDMIG_EV_STATE)
		return;
	if (ev->stats->state == RDMIG_MIG_BULK) {
		if (s->check && !s->checked) {
			s->checked = true;
			check_threads("source", "rdmig-w", s->plan, s->channels);
		}
		s->t_bulk = rdmig_now_ns();
	} else if (s->t_bulk && !s->t_after) {
		s->t_after = rdmig_now_ns();
		/* Every page is non-zero in the bench: the bulk round sends all RAM. */
		s->bulk_bytes = ev->stats->ram_bytes;
	}
}

/*
 * A guest with region 0 on the first node and region 1 on the second, every
 * page present (and, for the bench, non-zero so the bulk round sends all).
 */
static struct rdmig_guest *numa_guest(unsigned vcpus, bool fill, struct rdmig_numa_region *reg)
{
	struct rdmig_guest_cfg gc = {.ram_size = size_mib << 20,
				     .nregions = 2,
				     .vcpus = vcpus,
				     .workload = RDMIG_WL_INCR,
				     .dirty_rate = 16ull << 20,
				     .seed = 11};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *g;

	if (rdmig_guest_create(&gc, &g, &err)) {
		printf("FAIL: guest: %s\n", err.msg);
		exit(1);
	}
	for (unsigned r = 0; r < 2; r++) {
		const struct rdmig_guest_region *gr = rdmig_guest_region(g, r);
		int want = topo.node[r].os_index;

		if (rdmig_numa_bind(gr->addr, gr->len, want, &err)) {
			printf("FAIL: bind region %u: %s\n", r, err.msg);
			exit(1);
		}
		/* Fault every page in on the bound node (zero: the guest's initial state). */
		for (uint64_t o = 0; o < gr->len; o += RDMIG_PAGE_SIZE)
			memset(gr->addr + o, fill ? (int)(o / RDMIG_PAGE_SIZE % 251) + 1 : 0, 64);
		reg[r].len = gr->len;
		reg[r].node = rdmig_numa_region_node(gr->addr, gr->len, 256, NULL);
		TH_CHECK(reg[r].node == want, "source: region %u is on node %d, bound to %d", r,
			 reg[r].node, want);
	}
	return g;
}

static int migrate(struct rdmig_guest *g, const struct rdmig_numa_region *reg, bool crossed,
		   bool check, unsigned channels, struct src_ctx *s)
{
	struct rdmig_xport_cfg cfg;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_numa_plan *plan = calloc(1, sizeof(*plan));
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	struct rdmig_conn *c;
	struct th_peer dst;
	char sbuf[64];
	uint16_t port;
	int ret;

	if (!plan || make_plan(reg, 2, channels, crossed, plan))
		return -1;
	if (check)
		print_plan("source", plan);
	if (!start_dest(&dst, &port, crossed, check)) {
		free(plan);
		return -1;
	}
	cfg = xcfg(port, channels);
	ret = rdmig_connect(&cfg, &c, &err);
	if (!ret) {
		memset(s, 0, sizeof(*s));
		s->plan = plan;
		s->channels = channels;
		s->check = check;
		rdmig_mig_opts_defaults(&o);
		o.plan = plan;
		o.on_event = src_event;
		o.ev_ctx = s;
		/*
		 * Live where the kernel can track writes to RDMA-registered memory
		 * (userfaultfd write-protect, 6.7+), else cold: placement is the same.
		 */
		o.cold = !check || (!strcmp(backend_name, "rdma") &&
				    rdmig_dirty_best(false) != RDMIG_DIRTY_UFFD_WP);
		o.timeout_ns = 150 * 1000000000ull;
		ret = rdmig_mig_source(c, g, &o, &st, &err);
		rdmig_conn_destroy(c);
	}
	TH_CHECK(ret == 0, "source: %s", err.msg);
	rdmig_err_clear(&err);
	TH_CHECK(!th_peer_wait(&dst, 300000, &err) && th_exited(dst.status, 0),
		 "destination: %s (exit 1: migration failed, 2: a check failed)",
		 err.code ? err.msg : th_status_str(dst.status, sbuf, sizeof(sbuf)));
	if (!ret && check)
		printf("ok: %s migration, %u rounds, %" PRIu64 " pages verified\n",
		       o.cold ? "cold (no uffd-wp on this kernel)" : "live", st.round,
		       st.verified_pages);
	free(plan);
	return ret;
}

static void check_mode(void)
{
	struct rdmig_numa_region reg[2];
	struct rdmig_guest *g = numa_guest(1, false, reg);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct src_ctx s;

	if (rdmig_guest_start(g, NULL, &err)) {
		printf("FAIL: guest start: %s\n", err.msg);
		exit(1);
	}
	rdmig_sleep_ms(100);
	migrate(g, reg, false, true, 2, &s);
	rdmig_guest_destroy(g);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void bench_mode(unsigned reps, unsigned channels)
{
	double rate[2][32];
	struct rdmig_numa_region reg[2];
	const char *name[2] = {"planned", "crossed"};

	if (reps > 32)
		reps = 32;
	for (unsigned i = 0; i < reps; i++) {
		for (int k = 0; k < 2; k++) {
			/* A fresh guest each run: a completed migration stops it. */
			struct rdmig_guest *g = numa_guest(0, true, reg);
			struct src_ctx s;

			rate[k][i] = 0;
			if (!migrate(g, reg, k == 1, false, channels, &s) && s.t_after > s.t_bulk)
				rate[k][i] = (double)s.bulk_bytes / 1048576.0 /
					     ((double)(s.t_after - s.t_bulk) / 1e9);
			printf("bench: run %u %s: %.1f MiB/s (bulk round, %" PRIu64 " MiB)\n",
			       i + 1, name[k], rate[k][i], s.bulk_bytes >> 20);
			fflush(stdout);
			rdmig_guest_destroy(g);
		}
	}
	qsort(rate[0], reps, sizeof(double), cmp_double);
	qsort(rate[1], reps, sizeof(double), cmp_double);
	printf("bench: %u runs each, %u channels, %" PRIu64
	       " MiB guest: median planned %.1f MiB/s, "
	       "crossed %.1f MiB/s, ratio planned/crossed %.3f\n",
	       reps, channels, size_mib, rate[0][reps / 2], rate[1][reps / 2],
	       rate[1][reps / 2] > 0 ? rate[0][reps / 2] / rate[1][reps / 2] : 0.0);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	struct rdmig_err err = RDMIG_ERR_INIT;
	unsigned reps = 3, channels = 2;
	int first = 2;

	th_init(argc, argv);
	if (!strcmp(mode, "dest"))
		first = 4;
	for (int i = first; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--host"))
			host = argv[i + 1];
		else if (!strcmp(argv[i], "--backend"))
			backend_name = argv[i + 1];
		else if (!strcmp(argv[i], "--size"))
			size_mib = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--reps"))
			reps = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--channels"))
			channels = (unsigned)atoi(argv[i + 1]);
	}
	if (rdmig_numa_topo_load(&topo, NULL, NULL, &err)) {
		printf("FAIL: topology: %s\n", err.msg);
		return 1;
	}
	if (!strcmp(mode, "dest") && argc >= 4 && th_peer_fd() >= 0)
		return run_dest(atoi(argv[2]) != 0, atoi(argv[3]) != 0);
	if (topo.nnode < 2 || !topo.node[0].ncpu || !topo.node[1].ncpu)
		return th_skip("%d NUMA node(s) with CPUs here; this test needs 2 "
			       "(run it in soft-roce-setup/rxe-vm --numa 2)",
			       topo.nnode);
	if (size_mib < 2 || !channels || channels > RDMIG_MAX_CHANNELS) {
		fprintf(stderr, "numa_check: bad --size or --channels\n");
		return TH_EXIT_USAGE;
	}
	if (!strcmp(mode, "check"))
		check_mode();
	else if (!strcmp(mode, "bench"))
		bench_mode(reps ? reps : 1, channels);
	else {
		fprintf(stderr, "usage: numa_check check|bench [--host H] [--backend B] "
				"[--size MIB] [--reps N] [--channels N]\n");
		return TH_EXIT_USAGE;
	}
	return th_summary(mode, true);
}
