/* SPDX-License-Identifier: MIT */
/*
 * rdmig migrate: the source of a live migration. Starts a synthetic guest
 * whose vCPUs write its RAM and migrates it, running, to rdmig listen.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rdmig/migrate.h"
#include "rdmig/guest.h"
#include "log.h"
#include "mig.h"
#include "units.h"

enum {
	OPT_REGIONS = MIG_OPT_OWN,
	OPT_DIRTY_RATE,
	OPT_WARMUP,
	OPT_SEED,
	OPT_PREFILL,
	OPT_MAX_THROTTLE,
	OPT_DIRTY_SOURCE,
	OPT_COLD,
	OPT_MIN_ROUNDS,
	OPT_MAX_ROUNDS,
	OPT_TIMEOUT,
	OPT_PROGRESS_TIMEOUT,
	OPT_COMPRESS,
	OPT_VCPU_CPUS,
	OPT_VERIFY,
	OPT_POSTCOPY,
	OPT_POSTCOPY_AFTER,
};

static const struct option migrate_opts[] = {
    {"guest-size", required_argument, NULL, 'g'},
    {"regions", required_argument, NULL, OPT_REGIONS},
    {"vcpus", required_argument, NULL, 'n'},
    {"workload", required_argument, NULL, 'w'},
    {"dirty-rate", required_argument, NULL, OPT_DIRTY_RATE},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"seed", required_argument, NULL, OPT_SEED},
    {"prefill", required_argument, NULL, OPT_PREFILL},
    {"vcpu-cpus", required_argument, NULL, OPT_VCPU_CPUS},
    {"downtime-limit", required_argument, NULL, 'D'},
    {"max-bandwidth", required_argument, NULL, 'B'},
    {"throttle", required_argument, NULL, 't'},
    {"max-throttle", required_argument, NULL, OPT_MAX_THROTTLE},
    {"dirty-source", required_argument, NULL, OPT_DIRTY_SOURCE},
    {"cold", no_argument, NULL, OPT_COLD},
    {"min-rounds", required_argument, NULL, OPT_MIN_ROUNDS},
    {"max-rounds", required_argument, NULL, OPT_MAX_ROUNDS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"progress-timeout", required_argument, NULL, OPT_PROGRESS_TIMEOUT},
    {"compress", required_argument, NULL, OPT_COMPRESS},
    {"verify", required_argument, NULL, OPT_VERIFY},
    {"postcopy", no_argument, NULL, OPT_POSTCOPY},
    {"postcopy-after", required_argument, NULL, OPT_POSTCOPY_AFTER},
    {0},
};

static void migrate_usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: rdmig migrate ADDR[:PORT] --guest-size SIZE [--vcpus N]\n"
	    "         [--workload incr|random|hotset|idle] [--dirty-rate RATE]\n"
	    "         [--downtime-limit TIME] [--max-bandwidth RATE]\n"
	    "         [--throttle adaptive|step|off] [--channels N] [--backend rdma|tcp|auto]\n"
	    "         [--dump-ram PATH] [--json] ...\n"
	    "\n"
	    "Source of a live migration: start a synthetic guest whose vCPUs write its RAM,\n"
	    "and migrate it, running, to `rdmig listen` on ADDR.\n"
	    "\n"
	    "Guest:\n"
	    "  -g, --guest-size SIZE     guest RAM, e.g. 256M, 1G (required)\n"
	    "      --regions N           split RAM into N regions (default 1)\n"
	    "  -n, --vcpus N             vCPU threads (default 1)\n"
	    "  -w, --workload W          incr (default), random, hotset or idle\n"
	    "      --dirty-rate RATE     random/hotset pace, bytes/s (default: flat out)\n"
	    "      --warmup TIME         let the guest run before migrating (default 200ms)\n"
	    "      --seed N              workload seed (default 1)\n"
	    "      --prefill PCT         fill PCT%% of the pages with data first, as a guest\n"
	    "                            that has been up a while (not with incr; default 0)\n"
	    "      --vcpu-cpus LIST      pin the vCPU threads round-robin to these CPUs, e.g.\n"
	    "                            0-1; workers are then planned off them\n"
	    "      --hugepages           back guest RAM with transparent huge pages (needs\n"
	    "                            uffd-wp dirty tracking, or --cold)\n"
	    "Migration:\n"
	    "  -D, --downtime-limit TIME switch over when the rest fits (default 300ms)\n"
	    "  -B, --max-bandwidth RATE  cap, e.g. 100M (bytes/s) or 1Gbit (default none)\n"
	    "  -t, --throttle P          adaptive (default), step (QEMU-style) or off\n"
	    "      --max-throttle PCT    ceiling of the throttle in percent (default 99)\n"
	    "      --dirty-source S      auto (default), uffd-wp, soft-dirty, none\n"
	    "      --cold                stop the guest and copy it once (no dirty tracking)\n"
	    "      --verify M            rounds (default: each round checked at the\n"
	    "                            destination while the next one runs), full (every\n"
	    "                            page checked in the downtime) or off\n"
	    "      --min-rounds N        do not switch over before round N (default 0)\n"
	    "      --max-rounds N        give up after N rounds (default: no limit)\n"
	    "      --timeout TIME        give up after TIME (default 10m)\n"
	    "      --progress-timeout T  give up when the dirty set stops shrinking for T\n"
	    "                            (default 60s)\n"
	    "      --commit-timeout T    wait this long for each hand-over message from the\n"
	    "                            destination (1s to 3600s, default 30s)\n"
	    "      --commit-grace T      a cut hand-over: try this long to reach the\n"
	    "                            destination again and settle it (default 60s)\n"
	    "      --postcopy            switch to post-copy (default: after the bulk\n"
	    "                            round): the guest moves to the destination at once\n"
	    "                            and the pages it still lacks follow, on demand\n"
	    "                            first. Until the last page is there, the guest is\n"
	    "                            lost if this process or host dies\n"
	    "      --postcopy-after W    when: after N rounds (0: at once, no pre-copy), a\n"
	    "                            time (2s), or auto (when pre-copy would need more\n"
	    "                            than 20%% throttle to converge); implies --postcopy\n"
	    "      --postcopy-recover T  a post-copy whose link broke: reconnect for this\n"
	    "                            long (default 60s, 0: none); the guest is lost at\n"
	    "                            the destination past it, and waits here, paused\n"
	    "Transport:\n"
	    "  -b, --backend B           rdma, tcp or auto (default: rdma if this host has an\n"
	    "                            RDMA device, the options allow it and it connects,\n"
	    "                            else tcp)\n"
	    "  -c, --channels N          data channels = worker threads (default 2)\n"
	    "      --peer-timeout TIME   fail when the destination is silent this long (rdma\n"
	    "                            keepalives; tcp: unacknowledged data; default 15s)\n"
	    "      --compress LEVEL      tcp: zstd level 1..19 for page writes, 0 off (default);\n"
	    "                            zero and repetitive pages shrink, random ones go plain\n"
	    "Output:\n"
	    "      --dump-ram PATH       write guest RAM as it was at switchover to PATH\n"
	    "      --json                events and the summary as JSON lines on stdout\n"
	    "                            (docs/json.md)\n"
	    "Placement:\n"
	    "      --numa P              worker placement: auto (default), off, or a CPU list\n"
	    "                            such as 0-3,8 (see docs/tuning.md)\n"
	    "      --show-plan           print the placement plan before migrating\n"
	    "Security:\n"
	    "      --key-file PATH       pre-shared key shared with the destination (mode 0600,\n"
	    "                            >= 16 bytes; default $RDMIG_KEY_FILE)\n"
	    "      --tls                 tcp: encrypt every socket with TLS 1.3 keyed by\n"
	    "                            --key-file (needed); the destination must use it too\n"
	    "  -h, --help\n"
	    "\n"
	    "Options that cannot work together, or not on this kernel, are refused before\n"
	    "anything connects. Ctrl-C cancels until the source decides GO: the guest keeps\n"
	    "running here and the destination discards.\n"
	    "Exit status: 0 completed, 1 failed or cancelled (the guest runs here), 2 bad\n"
	    "usage, 3 outcome unknown (the guest is paused here; see the message).\n");
}

/* What migrate parses beyond the shared options. */
struct src_args {
	struct rdmig_guest_cfg gc;
	struct rdmig_cpuset vcpu_cpus;
	uint64_t warmup_ns;
	unsigned prefill;
};

static int guest_opt(struct src_args *a, int opt, const char *arg, struct rdmig_err *err)
{
	uint64_t v;

	switch (opt) {
	case 'g':
		if (rdmig_parse_size(arg, &a->gc.ram_size, err))
			return cli_usage_error("migrate", "--guest-size: %s", err->msg);
		return 0;
	case OPT_REGIONS:
		if (rdmig_parse_uint(arg, 1, RDMIG_GUEST_MAX_REGIONS, &v, err))
			return cli_usage_error("migrate", "--regions: %s", err->msg);
		a->gc.nregions = (unsigned)v;
		return 0;
	case 'n':
		if (rdmig_parse_uint(arg, 0, RDMIG_GUEST_MAX_VCPUS, &v, err))
			return cli_usage_error("migrate", "--vcpus: %s", err->msg);
		a->gc.vcpus = (unsigned)v;
		return 0;
	case 'w':
		if (rdmig_workload_parse(arg, &a->gc.workload, err))
			return cli_usage_error("migrate", "%s", err->msg);
		return 0;
	case OPT_DIRTY_RATE:
		if (rdmig_parse_rate(arg, &a->gc.dirty_rate, err))
			return cli_usage_error("migrate", "--dirty-rate: %s", err->msg);
		return 0;
	case OPT_WARMUP:
		if (rdmig_parse_duration(arg, 1000000ull, &a->warmup_ns, err))
			return cli_usage_error("migrate", "--warmup: %s", err->msg);
		return 0;
	case OPT_SEED:
		if (rdmig_parse_uint(arg, 0, UINT64_MAX, &a->gc.seed, err))
			return cli_usage_error("migrate", "--seed: %s", err->msg);
		return 0;
	case OPT_PREFILL:
		if (rdmig_parse_uint(arg, 0, 100, &v, err))
			return cli_usage_error("migrate", "--prefill: %s", err->msg);
		a->prefill = (unsigned)v;
		return 0;
	case OPT_VCPU_CPUS:
		if (rdmig_cpuset_parse(arg, &a->vcpu_cpus, err) ||
		    rdmig_cpuset_usable(&a->vcpu_cpus, err))
			return cli_usage_error("migrate", "--vcpu-cpus: %s", err->msg);
		a->gc.vcpu_cpus = &a->vcpu_cpus;
		return 0;
	}
	return -1;
}

static int duration_opt(const char *name, const char *arg, uint64_t *ns, struct rdmig_err *err)
{
	if (rdmig_parse_duration(arg, 1000000000ull, ns, err) || !*ns)
		return cli_usage_error("migrate", "%s expects a duration > 0", name);
	return 0;
}

static int migration_opt(struct mig_cli *m, int opt, const char *arg, struct rdmig_err *err)
{
	struct rdmig_mig_opts *mo = &m->mo;
	uint64_t v;

	switch (opt) {
	case 'D':
		if (rdmig_parse_duration(arg, 1000000ull, &mo->downtime_limit_ns, err) ||
		    mo->downtime_limit_ns < 1000000ull)
			return cli_usage_error(
			    "migrate",
			    "--downtime-limit expects at least 1ms, e.g. 300ms or "
			    "1s, got '%s'",
			    arg);
		return 0;
	case 'B':
		if (rdmig_parse_rate(arg, &mo->max_bandwidth, err))
			return cli_usage_error("migrate", "--max-bandwidth: %s", err->msg);
		return 0;
	case 't':
		if (rdmig_throttle_parse(arg, &mo->throttle, err))
			return cli_usage_error("migrate", "%s", err->msg);
		return 0;
	case OPT_MAX_THROTTLE:
		if (rdmig_parse_uint(arg, 0, 99, &v, err))
			return cli_usage_error("migrate", "--max-throttle: %s", err->msg);
		mo->max_throttle = (unsigned)v * 10;
		return 0;
	case OPT_DIRTY_SOURCE:
		if (rdmig_dirty_parse(arg, &mo->dirty_source, &mo->dirty_auto, err))
			return cli_usage_error("migrate", "%s", err->msg);
		return 0;
	case OPT_VERIFY:
		if (rdmig_verify_parse(arg, &mo->verify, err))
			return cli_usage_error("migrate", "--verify: %s", err->msg);
		return 0;
	case OPT_COLD:
		mo->cold = true;
		return 0;
	case OPT_POSTCOPY:
		if (mo->postcopy == RDMIG_POSTCOPY_OFF) {
			mo->postcopy = RDMIG_POSTCOPY_ROUNDS;
			mo->postcopy_rounds = 1;
		}
		return 0;
	case OPT_POSTCOPY_AFTER:
		if (rdmig_postcopy_parse(arg, &mo->postcopy, &mo->postcopy_rounds,
					 &mo->postcopy_after_ns, err))
			return cli_usage_error("migrate", "--postcopy-after: %s", err->msg);
		return 0;
	case OPT_MIN_ROUNDS:
		if (rdmig_parse_uint(arg, 0, 100000, &v, err))
			return cli_usage_error("migrate", "--min-rounds: %s", err->msg);
		mo->min_rounds = (unsigned)v;
		return 0;
	case OPT_MAX_ROUNDS:
		if (rdmig_parse_uint(arg, 1, 100000, &v, err))
			return cli_usage_error("migrate", "--max-rounds: %s", err->msg);
		mo->max_rounds = (unsigned)v;
		return 0;
	case OPT_TIMEOUT:
		return duration_opt("--timeout", arg, &mo->timeout_ns, err);
	case OPT_PROGRESS_TIMEOUT:
		return duration_opt("--progress-timeout", arg, &mo->progress_timeout_ns, err);
	case OPT_COMPRESS:
		if (rdmig_parse_uint(arg, 0, 19, &v, err))
			return cli_usage_error(
			    "migrate",
			    "--compress expects a zstd level between 0 (off) and "
			    "19: %s",
			    err->msg);
		m->cfg.compress_level = (int)v;
		return 0;
	}
	return -1;
}

static int migrate_opt(struct mig_cli *m, void *ctx, int opt, const char *arg)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	int ret = guest_opt(ctx, opt, arg, &err);

	return ret == -1 ? migration_opt(m, opt, arg, &err) : ret;
}

static const struct mig_cmd migrate_cmd = {
    .name = "migrate",
    .side = "source",
    .shortopts = "g:n:w:D:B:t:",
    .own = migrate_opts,
    .own_opt = migrate_opt,
    .usage = migrate_usage,
    .default_channels = 2,
};

/* The synthetic guest, running and warmed up; a refused configuration is the user's. */
static int start_guest(const struct src_args *a, const struct rdmig_mig_opts *mo,
		       struct rdmig_guest **g, struct rdmig_err *err)
{
	int ret = rdmig_guest_create(&a->gc, g, err);

	if (!ret && a->prefill)
		ret = rdmig_guest_prefill(*g, a->prefill, a->gc.seed, err);
	if (ret) {
		fprintf(stderr, "rdmig migrate: %s\n", rdmig_err_str(err));
		return RDMIG_EXIT_USAGE;
	}
	if (mo->cold && !a->gc.vcpus)
		return 0;
	ret = rdmig_guest_start(*g, NULL, err);
	if (ret)
		return ret;
	usleep((useconds_t)(a->warmup_ns / 1000));
	return 0;
}

/* The one placement plan, after the warm-up: the guest's pages exist, their nodes can be seen. */
static int plan_source(struct mig_cli *m, const struct src_args *a, struct rdmig_guest *g,
		       struct rdmig_err *err)
{
	struct rdmig_numa_mem mem[RDMIG_GUEST_MAX_REGIONS];
	unsigned n = rdmig_guest_cfg(g)->nregions;

	for (unsigned r = 0; r < n; r++) {
		mem[r].addr = rdmig_guest_region(g, r)->addr;
		mem[r].len = rdmig_guest_region(g, r)->len;
	}
	return mig_cli_plan(m, m->cfg.channels, mem, n,
			    a->gc.vcpus && a->gc.vcpu_cpus ? a->gc.vcpu_cpus : NULL, err);
}

/*
 * The engine's way back to the destination after a cut hand-over
 * (rdmig_mig_conn_fn): the backend, key and settings of the migration.
 */
static int settle_connect(void *ctx, int timeout_ms, struct rdmig_conn **out, struct rdmig_err *err)
{
	const struct mig_cli *m = ctx;
	struct rdmig_xport_cfg cfg = m->cfg;

	cfg.connect_timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
	return rdmig_connect(&cfg, out, err);
}

/* Connect; auto tries rdma first and never mixes backends once connected. */
static int connect_dest(struct mig_cli *m, struct rdmig_conn **c, struct rdmig_err *err)
{
	int ret = rdmig_connect(&m->cfg, c, err);

	if (!ret || !m->fallback_tcp)
		goto out;
	log_warn("rdma connect failed (%s): falling back to tcp", rdmig_err_str(err));
	rdmig_err_clear(err);
	m->cfg.backend = RDMIG_BACKEND_TCP;
	ret = rdmig_connect(&m->cfg, c, err);
out:
	if (!ret && m->cfg.backend == RDMIG_BACKEND_RDMA && m->cfg.compress_level)
		log_warn("--backend auto chose rdma: compression is off on rdma, --compress %d "
			 "ignored",
			 m->cfg.compress_level);
	return ret;
}

static volatile sig_atomic_t resume_here;

static void on_usr1(int sig)
{
	(void)sig;
	resume_here = 1;
}

/*
 * Post-copy lost: the guest is paused here, whole as of the switch, and
 * the destination may or may not still run what it had. Only the operator
 * can know; wait for their word. SIGUSR1: resume it here (exit 1: the
 * migration failed, the guest runs here); Ctrl-C or SIGTERM: leave it
 * (exit 3).
 */
static int pc_lost(struct mig_cli *m, struct rdmig_guest *g)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	struct rdmig_err err = RDMIG_ERR_INIT;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	fprintf(stderr,
		"rdmig migrate: the guest is paused here with all of its RAM and state as of the "
		"switch to post-copy. If the destination is gone (its rdmig listen exited or its "
		"host is down), resume the guest here: kill -USR1 %d. Never resume it while the "
		"destination may still run it. Ctrl-C or kill -TERM %d leaves it paused and "
		"exits.\n",
		(int)getpid(), (int)getpid());
	while (!resume_here && !cli_cancel)
		pause();
	if (!resume_here)
		return RDMIG_EXIT_UNKNOWN;
	log_warn("post-copy lost: resuming the guest here, as asked");
	rdmig_guest_resume(g);
	/* The synthetic guest runs a moment, then its RAM shows it went on from where it was. */
	usleep((useconds_t)(m->mo.resume_ns / 1000));
	rdmig_guest_pause(g);
	fprintf(stderr, "rdmig migrate: the guest resumed here and ran for %.0f ms\n",
		(double)m->mo.resume_ns / 1e6);
	if (m->mo.dump_ram && rdmig_guest_dump(g, m->mo.dump_ram, &err))
		fprintf(stderr, "rdmig migrate: %s\n", rdmig_err_str(&err));
	return RDMIG_EXIT_FAIL;
}

int cmd_migrate(int argc, char **argv)
{
	struct src_args a = {
	    .gc = {.nregions = 1, .vcpus = 1, .workload = RDMIG_WL_INCR, .seed = 1},
	    .warmup_ns = 200 * 1000000ull,
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_mig_stats st = {0};
	struct mig_zsum zs = {0};
	struct rdmig_guest *g = NULL;
	struct rdmig_conn *c = NULL;
	unsigned short port = RDMIG_DEFAULT_PORT;
	char host[256] = "";
	struct mig_cli m;
	int ret;

	mig_cli_init(&m, &migrate_cmd);
	ret = mig_cli_parse(&m, &migrate_cmd, &a, argc, argv);
	if (ret >= 0)
		return ret;
	if (optind != argc - 1)
		return cli_usage_error("migrate", optind >= argc ? "missing destination ADDR[:PORT]"
								 : "too many arguments");
	if (cli_parse_hostport(argv[optind], host, sizeof(host), &port) || !host[0] || !port)
		return cli_usage_error("migrate", "invalid destination address '%s'", argv[optind]);
	if (!a.gc.ram_size)
		return cli_usage_error("migrate",
				       "--guest-size is required, e.g. --guest-size 256M");
	a.gc.hugepages = m.hugepages;
	m.cfg.host = host;
	m.cfg.port = port;
	ret = mig_cli_setup(&m, &a.gc);
	if (ret)
		goto out_fini;
	if (m.mo.postcopy)
		log_warn("post-copy: once the guest runs at the destination, its pages not yet "
			 "fetched exist only here: if this process or host dies before post-copy "
			 "ends, the guest is lost; a broken link waits up to %.0f s "
			 "(--postcopy-recover) for the destination again",
			 (double)m.mo.postcopy_recover_ns / 1e9);

	ret = start_guest(&a, &m.mo, &g, &err);
	if (ret == RDMIG_EXIT_USAGE)
		goto out_fini;
	if (!ret)
		ret = plan_source(&m, &a, g, &err);
	if (!ret)
		ret = connect_dest(&m, &c, &err);
	m.mo.settle_conn = settle_connect;
	m.mo.settle_ctx = &m;
	if (!ret)
		ret = rdmig_mig_source(c, g, &m.mo, &st, &err);
	if (c && m.cfg.backend == RDMIG_BACKEND_TCP && m.cfg.compress_level) {
		struct rdmig_xport_stats xs;

		rdmig_xport_stats(c, &xs);
		zs = (struct mig_zsum){m.cfg.compress_level, xs.bytes_written, xs.bytes_on_wire};
	}
	if (ret && st.state != RDMIG_MIG_FAILED && st.state != RDMIG_MIG_CANCELLED &&
	    st.state != RDMIG_MIG_UNKNOWN)
		st.state = RDMIG_MIG_FAILED;
	if (ret && g)
		st.guest_work = rdmig_guest_work(g);
	mig_print_summary(&m.out, ret, &st, rdmig_backend_name(m.cfg.backend), m.cfg.channels, &zs,
			  ret ? rdmig_err_str(&err) : NULL);
	if (ret && !m.out.json)
		fprintf(stderr, "rdmig migrate: %s%s\n", rdmig_err_str(&err),
			g && rdmig_guest_running(g) ? " (the guest is still running here)" : "");
	if (ret == RDMIG_MIG_EUNKNOWN)
		fprintf(stderr, "rdmig migrate: %s\n", rdmig_mig_unknown_advice(true));
	if (ret == RDMIG_MIG_EPCLOST)
		ret = pc_lost(&m, g);
	else if (ret == RDMIG_MIG_EUNKNOWN)
		ret = RDMIG_EXIT_UNKNOWN;
	else
		ret = ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
out_fini:
	rdmig_conn_destroy(c);
	rdmig_guest_destroy(g);
	mig_cli_fini(&m);
	return ret;
}
