/* SPDX-License-Identifier: MIT */
/*
 * rdmig listen / rdmig migrate: live migration of a synthetic guest between
 * two endpoints, with a live progress line on a terminal or JSON lines.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "cli.h"
#include "dirty.h"
#include "guest.h"
#include "log.h"
#include "migrate.h"
#include "plan.h"
#include "rdmig/transport.h"
#include "units.h"

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig)
{
	(void)sig;
	cancel_flag = 1;
}

static void install_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

struct out_ctx {
	bool json;
	bool tty;
	const char *side;
	double last_line_ms;
	bool line_open;
};

static void print_stats_json(const char *event, const char *side, const struct rdmig_mig_stats *s)
{
	printf("{\"event\":\"%s\",\"side\":\"%s\",\"state\":\"%s\",\"round\":%u,"
	       "\"bytes\":%" PRIu64 ",\"ram_bytes\":%" PRIu64 ",\"dirty_bytes\":%" PRIu64 ","
	       "\"bandwidth\":%.0f,\"dirty_rate\":%.0f,\"throttle\":%.3f,"
	       "\"predicted_downtime_ms\":%.1f,\"elapsed_ms\":%.1f}\n",
	       event, side, rdmig_mig_state_name(s->state), s->round, s->bytes_sent, s->ram_bytes,
	       s->dirty_bytes, s->bandwidth, s->dirty_rate, (double)s->throttle / 1000,
	       s->predicted_downtime_ms, s->total_ms);
	fflush(stdout);
}

static void on_event(const struct rdmig_mig_event *ev, void *arg)
{
	struct out_ctx *o = arg;
	const struct rdmig_mig_stats *s = ev->stats;
	char a[32], b[32];

	if (o->json) {
		if (ev->type != RDMIG_EV_PROGRESS)
			print_stats_json(ev->type == RDMIG_EV_STATE ? "state" : "round", o->side,
					 s);
		return;
	}
	if (ev->type == RDMIG_EV_STATE && s->state >= RDMIG_MIG_COMPLETED && !o->json)
		return; /* the summary says how it ended */
	if (ev->type == RDMIG_EV_STATE && !o->tty) {
		fprintf(stderr, "rdmig %s: %s\n", o->side, rdmig_mig_state_name(s->state));
		return;
	}
	if (!o->tty)
		return;
	/* A terminal gets one line, rewritten at most ten times a second. */
	if (ev->type == RDMIG_EV_PROGRESS && s->total_ms - o->last_line_ms < 100)
		return;
	o->last_line_ms = s->total_ms;
	fprintf(stderr,
		"\r\033[K%-12s round %u  %s / %s  %.1f MiB/s  dirty %.1f MiB/s  throttle %u%%  "
		"downtime~%.0f ms",
		rdmig_mig_state_name(s->state), s->round,
		rdmig_fmt_size(s->bytes_sent, a, sizeof(a)),
		rdmig_fmt_size(s->ram_bytes, b, sizeof(b)), s->bandwidth / 1048576,
		s->dirty_rate / 1048576, s->throttle / 10, s->predicted_downtime_ms);
	o->line_open = true;
}

/* Compression of the source's page writes (tcp --compress), read from the transport. */
struct zsum {
	int level;	  /* 0: off, nothing printed */
	uint64_t bytes;	  /* page payload bytes written */
	uint64_t on_wire; /* the same after compression */
};

static void print_summary(struct out_ctx *o, int ret, const struct rdmig_mig_stats *s,
			  const char *backend, unsigned channels, const struct zsum *z,
			  const char *errmsg)
{
	const char *status = ret == 0 ? "completed" : ret == -ECANCELED ? "cancelled" : "failed";
	double ratio = z && z->level && z->on_wire ? (double)z->bytes / (double)z->on_wire : 0;

	if (o->line_open)
		fprintf(stderr, "\n");
	if (o->json) {
		printf(
		    "{\"event\":\"summary\",\"side\":\"%s\",\"status\":\"%s\",\"backend\":\"%s\","
		    "\"channels\":%u,\"total_ms\":%.1f,\"downtime_ms\":%.1f,\"rounds\":%u,"
		    "\"bytes\":%" PRIu64 ",\"pages_sent\":%" PRIu64 ",\"zero_pages\":%" PRIu64 ","
		    "\"verified_pages\":%" PRIu64 ",\"ram_bytes\":%" PRIu64 ","
		    "\"dirty_source\":\"%s\",\"max_throttle\":%.3f,\"guest_work\":%" PRIu64 ","
		    "\"harvest_ms_per_gib\":%.3f,",
		    o->side, status, backend, channels, s->total_ms, s->downtime_ms, s->round,
		    s->bytes_sent, s->pages_sent, s->zero_pages, s->verified_pages, s->ram_bytes,
		    rdmig_dirty_kind_name(s->dirty_source), (double)s->max_throttle / 1000,
		    s->guest_work, s->harvest_ms_per_gib);
		if (z && z->level && z->on_wire)
			printf("\"compress_level\":%d,\"bytes_on_wire\":%" PRIu64
			       ",\"compress_ratio\":%.2f,",
			       z->level, z->on_wire, ratio);
		else if (z && z->level) /* nothing sent (all zero pages): no ratio */
			printf("\"compress_level\":%d,\"bytes_on_wire\":0,\"compress_ratio\":null,",
			       z->level);
		printf("\"error\":");
		if (errmsg) {
			putchar('"');
			for (const char *p = errmsg; *p; p++) {
				if (*p == '"' || *p == '\\')
					putchar('\\');
				putchar((unsigned char)*p >= 0x20 ? *p : ' ');
			}
			printf("\"}\n");
		} else {
			printf("null}\n");
		}
		fflush(stdout);
		return;
	}
	printf("rdmig %s: %s\n", o->side, status);
	if (ret && errmsg)
		printf("  error          %s\n", errmsg);
	printf("  backend        %s, %u channel(s)\n", backend, channels);
	printf("  total          %.1f ms\n", s->total_ms);
	if (!strcmp(o->side, "source")) {
		char a[32];

		printf("  downtime       %.1f ms\n", s->downtime_ms);
		printf("  rounds         %u\n", s->round);
		printf("  sent           %s in %" PRIu64 " pages (%" PRIu64
		       " zero pages skipped)\n",
		       rdmig_fmt_size(s->bytes_sent, a, sizeof(a)), s->pages_sent, s->zero_pages);
		printf("  dirty source   %s (%.2f ms per GiB harvested)\n",
		       rdmig_dirty_kind_name(s->dirty_source), s->harvest_ms_per_gib);
		printf("  max throttle   %.1f%%\n", (double)s->max_throttle / 10);
		printf("  guest work     %" PRIu64 " units during migration\n", s->guest_work);
		if (z && z->level && !z->on_wire) {
			printf("  compression    zstd level %d: no page data sent\n", z->level);
		} else if (z && z->level) {
			char b[32], w[32];

			printf("  compression    zstd level %d: %s of pages in %s on the wire "
			       "(ratio %.2f)\n",
			       z->level, rdmig_fmt_size(z->bytes, b, sizeof(b)),
			       rdmig_fmt_size(z->on_wire, w, sizeof(w)), ratio);
		}
	}
	printf("  verified pages %" PRIu64 "\n", s->verified_pages);
}

/* ---- common options ------------------------------------------------------ */

enum {
	OPT_BACKEND = 1000,
	OPT_CHANNELS,
	OPT_DUMP,
	OPT_JSON,
	OPT_GUEST_SIZE,
	OPT_VCPUS,
	OPT_WORKLOAD,
	OPT_DIRTY_RATE,
	OPT_DOWNTIME,
	OPT_MAXBW,
	OPT_THROTTLE,
	OPT_MAX_THROTTLE,
	OPT_DIRTY_SOURCE,
	OPT_COLD,
	OPT_TIMEOUT,
	OPT_PROGRESS_TIMEOUT,
	OPT_MIN_ROUNDS,
	OPT_MAX_ROUNDS,
	OPT_WARMUP,
	OPT_SEED,
	OPT_REGIONS,
	OPT_MAX_RAM,
	OPT_RESUME,
	OPT_CORRUPT,
	OPT_ONCE,
	OPT_NUMA,
	OPT_SHOW_PLAN,
	OPT_KEY_FILE,
	OPT_TLS,
	OPT_COMPRESS,
	OPT_PREFILL,
	OPT_HUGEPAGES,
	OPT_VCPU_CPUS,
	OPT_PEER_TIMEOUT,
};

/*
 * The plan's completion vector for each channel into vec[] (the transport's
 * per-channel comp_vector); returns how many, 0 when the plan has none.
 */
static unsigned plan_vectors(const struct rdmig_numa_plan *p, int *vec)
{
	unsigned n = 0;

	for (unsigned i = 0; p && i < p->nworkers; i++) {
		vec[i] = p->w[i].comp_vector;
		n += vec[i] >= 0;
	}
	return n ? p->nworkers : 0;
}

static int parse_backend_auto(const char *s, enum rdmig_backend *b, bool *is_auto,
			      struct rdmig_err *err)
{
	*is_auto = s && !strcmp(s, "auto");
	if (*is_auto)
		return 0;
	return rdmig_backend_parse(s, b, err);
}

static bool have_rdma_device(void)
{
	FILE *f = popen("ls /sys/class/infiniband 2>/dev/null", "r");
	char line[64];
	bool any = false;

	if (!f)
		return false;
	any = fgets(line, sizeof(line), f) != NULL;
	pclose(f);
	return any;
}

/* The pre-shared key of this process (--key-file or $RDMIG_KEY_FILE). */
static struct rdmig_auth_key g_key;

/* Hooks the key into cfg, or warns that the peer goes unauthenticated. */
static int setup_key(const char *cmd, const char *opt, struct rdmig_xport_cfg *cfg)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	int ret = rdmig_auth_key_from_opt(opt, &g_key, &err);

	if (ret < 0) {
		fprintf(stderr, "rdmig %s: %s\n", cmd, rdmig_err_str(&err));
		return ret;
	}
	if (ret > 0 && cfg->tls) {
		fprintf(stderr,
			"rdmig %s: --tls needs a pre-shared key: pass --key-file PATH (or set "
			"$RDMIG_KEY_FILE) on both sides\n",
			cmd);
		return -EINVAL;
	}
	if (ret > 0) {
		fprintf(stderr, "%s\n", RDMIG_AUTH_NO_KEY_WARNING);
		return 0;
	}
	cfg->auth = rdmig_auth_psk;
	cfg->auth_ctx = &g_key;
	if (cfg->tls) {
		cfg->tls_key = g_key.key;
		cfg->tls_key_len = g_key.len;
	}
	return 0;
}

/* ---- rdmig listen -------------------------------------------------------- */

static void listen_usage(FILE *out)
{
	fprintf(out,
		"Usage: rdmig listen [ADDR][:PORT] [--backend rdma|tcp|auto] [--dump-ram PATH]\n"
		"                    [--max-ram SIZE] [--resume-for TIME] [--json]\n"
		"\n"
		"Destination of a live migration: wait for one source, receive its guest,\n"
		"verify every page, commit, and resume the guest for a moment.\n"
		"\n"
		"  ADDR[:PORT]             listen address (default: all, port %d)\n"
		"  -b, --backend B         rdma, tcp, or auto (rdma if this host has an RDMA\n"
		"                          device, else tcp; default auto)\n"
		"  -c, --channels N        most data channels accepted (default %d)\n"
		"      --dump-ram PATH     write the guest RAM as committed to PATH\n"
		"      --max-ram SIZE      refuse larger guests (default 64G)\n"
		"      --resume-for TIME   run the migrated guest this long (default 500ms)\n"
		"      --json              events and the summary as JSON lines on stdout\n"
		"      --peer-timeout TIME fail when the source is silent this long (rdma\n"
		"                          keepalives; tcp: unacknowledged data; default 15s)\n"
		"      --numa P            receiver placement: auto (default), off, or a CPU\n"
		"                          list such as 0-3,8 (see docs/tuning.md)\n"
		"      --show-plan         print the placement plan before receiving\n"
		"      --hugepages         back the received guest RAM with transparent huge\n"
		"                          pages\n"
		"      --key-file PATH     pre-shared key the source must prove (mode 0600,\n"
		"                          >= 16 bytes; default $RDMIG_KEY_FILE)\n"
		"      --tls               tcp: encrypt every socket with TLS 1.3 keyed by\n"
		"                          --key-file (needed); the source must use it too\n"
		"  -h, --help\n"
		"\n"
		"Exit status: 0 committed, 1 failed or cancelled, 2 bad usage.\n",
		RDMIG_DEFAULT_PORT, RDMIG_MAX_CHANNELS);
}

/* --peer-timeout, shared by listen and migrate: seconds, 3..3600. */
static int parse_peer_timeout(const char *cmd, const char *arg, struct rdmig_xport_cfg *cfg)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t ns;

	if (rdmig_parse_duration(arg, 1000000000ull, &ns, &err) || ns < 3000000000ull ||
	    ns > 3600000000000ull)
		return cli_usage_error(cmd,
				       "--peer-timeout expects a duration between 3s and "
				       "3600s, got '%s'",
				       arg);
	cfg->peer_timeout_ms = (int)(ns / 1000000ull);
	return 0;
}

int cmd_listen(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"backend", required_argument, NULL, 'b'},
	    {"channels", required_argument, NULL, 'c'},
	    {"dump-ram", required_argument, NULL, OPT_DUMP},
	    {"max-ram", required_argument, NULL, OPT_MAX_RAM},
	    {"resume-for", required_argument, NULL, OPT_RESUME},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"test-corrupt-page", required_argument, NULL, OPT_CORRUPT},
	    {"numa", required_argument, NULL, OPT_NUMA},
	    {"show-plan", no_argument, NULL, OPT_SHOW_PLAN},
	    {"key-file", required_argument, NULL, OPT_KEY_FILE},
	    {"tls", no_argument, NULL, OPT_TLS},
	    {"peer-timeout", required_argument, NULL, OPT_PEER_TIMEOUT},
	    {"hugepages", no_argument, NULL, OPT_HUGEPAGES},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg = {.channels = RDMIG_MAX_CHANNELS};
	int vec[RDMIG_MAX_CHANNELS]; /* outlives the listener and the connection */
	struct rdmig_mig_opts mo;
	struct rdmig_mig_stats st = {0};
	struct out_ctx out = {.side = "destination"};
	struct rdmig_numa_plan *plan = NULL;
	const char *numa_arg = NULL;
	bool show_plan = false;
	struct rdmig_listener *l = NULL;
	struct rdmig_conn *c = NULL;
	const char *key_file = NULL;
	char host[256] = "";
	unsigned short port = RDMIG_DEFAULT_PORT;
	bool is_auto = true;
	uint64_t v;
	int opt, ret;

	rdmig_mig_opts_defaults(&mo);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "b:c:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'b':
			if (parse_backend_auto(optarg, &cfg.backend, &is_auto, &err))
				return cli_usage_error("listen", "%s", err.msg);
			break;
		case 'c':
			if (rdmig_parse_uint(optarg, 1, RDMIG_MAX_CHANNELS, &v, &err))
				return cli_usage_error("listen", "--channels: %s", err.msg);
			cfg.channels = (unsigned)v;
			break;
		case OPT_DUMP:
			mo.dump_ram = optarg;
			break;
		case OPT_MAX_RAM:
			if (rdmig_parse_size(optarg, &mo.max_ram, &err))
				return cli_usage_error("listen", "--max-ram: %s", err.msg);
			break;
		case OPT_RESUME:
			if (rdmig_parse_duration(optarg, 1000000ull, &mo.resume_ns, &err))
				return cli_usage_error("listen", "--resume-for: %s", err.msg);
			break;
		case OPT_JSON:
			out.json = true;
			break;
		case OPT_CORRUPT:
			if (rdmig_parse_uint(optarg, 0, INT64_MAX, &v, &err))
				return cli_usage_error("listen", "--test-corrupt-page: %s",
						       err.msg);
			mo.test_corrupt_page = (int64_t)v;
			break;
		case OPT_NUMA: {
			enum rdmig_numa_policy np;
			struct rdmig_cpuset cs;

			if (rdmig_numa_policy_parse(optarg, &np, &cs, &err))
				return cli_usage_error("listen", "%s", err.msg);
			numa_arg = optarg;
			break;
		}
		case OPT_SHOW_PLAN:
			show_plan = true;
			break;
		case OPT_KEY_FILE:
			key_file = optarg;
			break;
		case OPT_TLS:
			cfg.tls = true;
			break;
		case OPT_HUGEPAGES:
			mo.hugepages = true;
			break;
		case OPT_PEER_TIMEOUT:
			if (parse_peer_timeout("listen", optarg, &cfg))
				return RDMIG_EXIT_USAGE;
			break;
		case 'h':
			listen_usage(stdout);
			return RDMIG_EXIT_OK;
		default:
			return cli_usage_error("listen", "unknown option");
		}
	}
	if (optind < argc - 1)
		return cli_usage_error("listen", "too many arguments");
	if (optind == argc - 1 && cli_parse_hostport(argv[optind], host, sizeof(host), &port))
		return cli_usage_error("listen", "invalid listen address '%s'", argv[optind]);
	if (cfg.tls && !is_auto && cfg.backend == RDMIG_BACKEND_RDMA)
		return cli_usage_error("listen", "--tls works on the tcp backend only: rdmig does "
						 "not encrypt RoCE traffic; see docs/security.md");
	if (is_auto)
		cfg.backend =
		    have_rdma_device() && !cfg.tls ? RDMIG_BACKEND_RDMA : RDMIG_BACKEND_TCP;
	cfg.host = host[0] ? host : NULL;
	cfg.port = port;
	out.tty = isatty(STDERR_FILENO) && !out.json;
	mo.on_event = on_event;
	mo.ev_ctx = &out;
	mo.cancel = &cancel_flag;
	install_signals();
	if (setup_key("listen", key_file, &cfg))
		return RDMIG_EXIT_FAIL;

	/*
	 * rdma creates the CQs at accept, before the channel count is known
	 * here: take the completion vectors from a plan for the most channels
	 * accepted. The CLI knows no vector locality, so the planner gives
	 * channel i vector i % num_comp_vectors whatever the count, and the
	 * plan made after accept (below, for the receivers) names the same ones.
	 */
	if (cfg.backend == RDMIG_BACKEND_RDMA) {
		ret = cli_numa_plan("listen", numa_arg, cfg.channels, NULL, NULL, false, false,
				    &plan, &err);
		if (ret)
			goto out;
		cfg.ncomp_vector = plan_vectors(plan, vec);
		cfg.comp_vector = cfg.ncomp_vector ? vec : NULL;
		free(plan);
		plan = NULL;
	}
	ret = rdmig_listen(&cfg, &l, &err);
	if (ret)
		goto out;
	fprintf(stderr, "rdmig listen: waiting on %s port %u (%s)\n", host[0] ? host : "*",
		rdmig_listener_port(l), rdmig_backend_name(cfg.backend));
	while ((ret = rdmig_accept(l, 200, &c, &err)) == -ETIMEDOUT) {
		rdmig_err_clear(&err);
		if (cancel_flag) {
			ret = rdmig_seterr(&err, -ECANCELED, "cancelled before a source connected");
			break;
		}
	}
	if (ret)
		goto out;
	/* Receivers are placed once the channel count is known. */
	ret = cli_numa_plan("listen", numa_arg, rdmig_conn_channels(c), NULL, NULL, show_plan,
			    out.json, &plan, &err);
	if (ret)
		goto out;
	mo.plan = plan;
	ret = rdmig_mig_dest(c, &mo, &st, &err);
out:
	print_summary(&out, ret, &st, rdmig_backend_name(cfg.backend),
		      c ? rdmig_conn_channels(c) : 0, NULL, ret ? rdmig_err_str(&err) : NULL);
	if (ret && !out.json)
		fprintf(stderr, "rdmig listen: %s\n", rdmig_err_str(&err));
	rdmig_conn_destroy(c);
	rdmig_listener_destroy(l);
	free(plan);
	return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}

/* ---- rdmig migrate ------------------------------------------------------- */

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
	    "      --min-rounds N        do not switch over before round N (default 0)\n"
	    "      --max-rounds N        give up after N rounds (default: no limit)\n"
	    "      --timeout TIME        give up after TIME (default 10m)\n"
	    "      --progress-timeout T  give up when the dirty set stops shrinking for T\n"
	    "                            (default 60s)\n"
	    "Transport:\n"
	    "  -b, --backend B           rdma, tcp or auto (default: rdma if this host has an\n"
	    "                            RDMA device and it connects, else tcp)\n"
	    "  -c, --channels N          data channels = worker threads (default 2)\n"
	    "      --peer-timeout TIME   fail when the destination is silent this long (rdma\n"
	    "                            keepalives; tcp: unacknowledged data; default 15s)\n"
	    "      --compress LEVEL      tcp: zstd level 1..19 for page writes, 0 off (default);\n"
	    "                            zero and repetitive pages shrink, random ones go plain\n"
	    "Output:\n"
	    "      --dump-ram PATH       write guest RAM as it was at switchover to PATH\n"
	    "      --json                events and the summary as JSON lines on stdout\n"
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
	    "Ctrl-C cancels: the guest keeps running here and the destination discards.\n"
	    "Exit status: 0 completed, 1 failed or cancelled, 2 bad usage.\n");
}

int cmd_migrate(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"guest-size", required_argument, NULL, 'g'},
	    {"regions", required_argument, NULL, OPT_REGIONS},
	    {"vcpus", required_argument, NULL, 'n'},
	    {"workload", required_argument, NULL, 'w'},
	    {"dirty-rate", required_argument, NULL, OPT_DIRTY_RATE},
	    {"warmup", required_argument, NULL, OPT_WARMUP},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"prefill", required_argument, NULL, OPT_PREFILL},
	    {"downtime-limit", required_argument, NULL, 'D'},
	    {"max-bandwidth", required_argument, NULL, 'B'},
	    {"throttle", required_argument, NULL, 't'},
	    {"max-throttle", required_argument, NULL, OPT_MAX_THROTTLE},
	    {"dirty-source", required_argument, NULL, OPT_DIRTY_SOURCE},
	    {"cold", no_argument, NULL, OPT_COLD},
	    {"min-rounds", required_argument, NULL, OPT_MIN_ROUNDS},
	    {"max-rounds", required_argument, NULL, OPT_MAX_ROUNDS},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"peer-timeout", required_argument, NULL, OPT_PEER_TIMEOUT},
	    {"progress-timeout", required_argument, NULL, OPT_PROGRESS_TIMEOUT},
	    {"numa", required_argument, NULL, OPT_NUMA},
	    {"show-plan", no_argument, NULL, OPT_SHOW_PLAN},
	    {"backend", required_argument, NULL, 'b'},
	    {"channels", required_argument, NULL, 'c'},
	    {"dump-ram", required_argument, NULL, OPT_DUMP},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"key-file", required_argument, NULL, OPT_KEY_FILE},
	    {"tls", no_argument, NULL, OPT_TLS},
	    {"compress", required_argument, NULL, OPT_COMPRESS},
	    {"hugepages", no_argument, NULL, OPT_HUGEPAGES},
	    {"vcpu-cpus", required_argument, NULL, OPT_VCPU_CPUS},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct zsum zs = {0};
	struct rdmig_guest_cfg gc = {
	    .nregions = 1, .vcpus = 1, .workload = RDMIG_WL_INCR, .seed = 1};
	struct rdmig_xport_cfg cfg = {.channels = 2};
	int vec[RDMIG_MAX_CHANNELS]; /* outlives the connection */
	struct rdmig_cpuset vcpu_cpus;
	struct rdmig_mig_opts mo;
	struct rdmig_mig_stats st = {0};
	struct out_ctx out = {.side = "source"};
	struct rdmig_numa_plan *plan = NULL;
	const char *numa_arg = NULL;
	bool show_plan = false;
	struct rdmig_guest *g = NULL;
	struct rdmig_conn *c = NULL;
	const char *key_file = NULL;
	uint64_t warmup_ns = 200 * 1000000ull, v;
	unsigned prefill = 0;
	char host[256] = "";
	unsigned short port = RDMIG_DEFAULT_PORT;
	bool is_auto = true;
	int opt, ret;

	rdmig_mig_opts_defaults(&mo);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "g:n:w:D:B:t:b:c:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'g':
			if (rdmig_parse_size(optarg, &gc.ram_size, &err))
				return cli_usage_error("migrate", "--guest-size: %s", err.msg);
			break;
		case OPT_REGIONS:
			if (rdmig_parse_uint(optarg, 1, RDMIG_GUEST_MAX_REGIONS, &v, &err))
				return cli_usage_error("migrate", "--regions: %s", err.msg);
			gc.nregions = (unsigned)v;
			break;
		case 'n':
			if (rdmig_parse_uint(optarg, 0, RDMIG_GUEST_MAX_VCPUS, &v, &err))
				return cli_usage_error("migrate", "--vcpus: %s", err.msg);
			gc.vcpus = (unsigned)v;
			break;
		case 'w':
			if (rdmig_workload_parse(optarg, &gc.workload, &err))
				return cli_usage_error("migrate", "%s", err.msg);
			break;
		case OPT_DIRTY_RATE:
			if (rdmig_parse_rate(optarg, &gc.dirty_rate, &err))
				return cli_usage_error("migrate", "--dirty-rate: %s", err.msg);
			break;
		case OPT_WARMUP:
			if (rdmig_parse_duration(optarg, 1000000ull, &warmup_ns, &err))
				return cli_usage_error("migrate", "--warmup: %s", err.msg);
			break;
		case OPT_SEED:
			if (rdmig_parse_uint(optarg, 0, UINT64_MAX, &gc.seed, &err))
				return cli_usage_error("migrate", "--seed: %s", err.msg);
			break;
		case OPT_PREFILL:
			if (rdmig_parse_uint(optarg, 0, 100, &v, &err))
				return cli_usage_error("migrate", "--prefill: %s", err.msg);
			prefill = (unsigned)v;
			break;
		case 'D':
			if (rdmig_parse_duration(optarg, 1000000ull, &mo.downtime_limit_ns, &err) ||
			    mo.downtime_limit_ns < 1000000ull)
				return cli_usage_error(
				    "migrate",
				    "--downtime-limit expects at least 1ms, e.g. "
				    "300ms or 1s, got '%s'",
				    optarg);
			break;
		case 'B':
			if (rdmig_parse_rate(optarg, &mo.max_bandwidth, &err))
				return cli_usage_error("migrate", "--max-bandwidth: %s", err.msg);
			break;
		case 't':
			if (rdmig_throttle_parse(optarg, &mo.throttle, &err))
				return cli_usage_error("migrate", "%s", err.msg);
			break;
		case OPT_MAX_THROTTLE:
			if (rdmig_parse_uint(optarg, 0, 99, &v, &err))
				return cli_usage_error("migrate", "--max-throttle: %s", err.msg);
			mo.max_throttle = (unsigned)v * 10;
			break;
		case OPT_DIRTY_SOURCE:
			if (rdmig_dirty_parse(optarg, &mo.dirty_source, &mo.dirty_auto, &err))
				return cli_usage_error("migrate", "%s", err.msg);
			break;
		case OPT_COLD:
			mo.cold = true;
			break;
		case OPT_MIN_ROUNDS:
			if (rdmig_parse_uint(optarg, 0, 100000, &v, &err))
				return cli_usage_error("migrate", "--min-rounds: %s", err.msg);
			mo.min_rounds = (unsigned)v;
			break;
		case OPT_MAX_ROUNDS:
			if (rdmig_parse_uint(optarg, 1, 100000, &v, &err))
				return cli_usage_error("migrate", "--max-rounds: %s", err.msg);
			mo.max_rounds = (unsigned)v;
			break;
		case OPT_TIMEOUT:
			if (rdmig_parse_duration(optarg, 1000000000ull, &mo.timeout_ns, &err) ||
			    !mo.timeout_ns)
				return cli_usage_error("migrate",
						       "--timeout expects a duration > 0");
			break;
		case OPT_PROGRESS_TIMEOUT:
			if (rdmig_parse_duration(optarg, 1000000000ull, &mo.progress_timeout_ns,
						 &err) ||
			    !mo.progress_timeout_ns)
				return cli_usage_error("migrate",
						       "--progress-timeout expects a duration > 0");
			break;
		case OPT_NUMA: {
			enum rdmig_numa_policy np;
			struct rdmig_cpuset cs;

			if (rdmig_numa_policy_parse(optarg, &np, &cs, &err))
				return cli_usage_error("migrate", "%s", err.msg);
			numa_arg = optarg;
			break;
		}
		case OPT_SHOW_PLAN:
			show_plan = true;
			break;
		case 'b':
			if (parse_backend_auto(optarg, &cfg.backend, &is_auto, &err))
				return cli_usage_error("migrate", "%s", err.msg);
			break;
		case 'c':
			if (rdmig_parse_uint(optarg, 1, RDMIG_MAX_CHANNELS, &v, &err))
				return cli_usage_error("migrate", "--channels: %s", err.msg);
			cfg.channels = (unsigned)v;
			break;
		case OPT_DUMP:
			mo.dump_ram = optarg;
			break;
		case OPT_JSON:
			out.json = true;
			break;
		case OPT_KEY_FILE:
			key_file = optarg;
			break;
		case OPT_TLS:
			cfg.tls = true;
			break;
		case OPT_PEER_TIMEOUT:
			if (parse_peer_timeout("migrate", optarg, &cfg))
				return RDMIG_EXIT_USAGE;
			break;
		case OPT_COMPRESS:
			if (rdmig_parse_uint(optarg, 0, 19, &v, &err))
				return cli_usage_error("migrate",
						       "--compress expects a zstd level "
						       "between 0 (off) and 19: %s",
						       err.msg);
			cfg.compress_level = (int)v;
			break;
		case OPT_HUGEPAGES:
			gc.hugepages = true;
			break;
		case OPT_VCPU_CPUS:
			if (rdmig_cpuset_parse(optarg, &vcpu_cpus, &err) ||
			    cli_cpus_usable(&vcpu_cpus, &err))
				return cli_usage_error("migrate", "--vcpu-cpus: %s", err.msg);
			gc.vcpu_cpus = &vcpu_cpus;
			break;
		case 'h':
			migrate_usage(stdout);
			return RDMIG_EXIT_OK;
		default:
			return cli_usage_error("migrate", "unknown option");
		}
	}
	if (optind != argc - 1)
		return cli_usage_error("migrate", optind >= argc ? "missing destination ADDR[:PORT]"
								 : "too many arguments");
	if (cli_parse_hostport(argv[optind], host, sizeof(host), &port) || !host[0] || !port)
		return cli_usage_error("migrate", "invalid destination address '%s'", argv[optind]);
	if (!gc.ram_size)
		return cli_usage_error("migrate",
				       "--guest-size is required, e.g. --guest-size 256M");
	if (cfg.tls && !is_auto && cfg.backend == RDMIG_BACKEND_RDMA)
		return cli_usage_error("migrate", "--tls works on the tcp backend only: rdmig does "
						  "not encrypt RoCE traffic; see docs/security.md");
	if (cfg.compress_level && !is_auto && cfg.backend == RDMIG_BACKEND_RDMA)
		return cli_usage_error("migrate",
				       "--compress works on the tcp backend only: rdma writes "
				       "land in the destination's memory with no CPU there to "
				       "decompress them");
	if (gc.hugepages && !mo.cold &&
	    (mo.dirty_auto ? rdmig_dirty_best(false) : mo.dirty_source) == RDMIG_DIRTY_SOFT_DIRTY)
		return cli_usage_error(
		    "migrate",
		    "--hugepages cannot be used with soft-dirty tracking%s: it tracks a 2 MiB "
		    "huge page as one unit, so the guest would never converge; use "
		    "--dirty-source uffd-wp (Linux 6.7+), --cold, or drop --hugepages",
		    mo.dirty_auto ? " (the only one this kernel has)" : "");
	cfg.host = host;
	cfg.port = port;
	out.tty = isatty(STDERR_FILENO) && !out.json;
	mo.on_event = on_event;
	mo.ev_ctx = &out;
	mo.cancel = &cancel_flag;
	install_signals();
	if (setup_key("migrate", key_file, &cfg))
		return RDMIG_EXIT_FAIL;

	ret = rdmig_guest_create(&gc, &g, &err);
	if (!ret && prefill)
		ret = rdmig_guest_prefill(g, prefill, gc.seed, &err);
	if (ret) {
		/* Guest parameters are the user's input: a usage error. */
		fprintf(stderr, "rdmig migrate: %s\n", rdmig_err_str(&err));
		rdmig_guest_destroy(g);
		return RDMIG_EXIT_USAGE;
	}
	if (!mo.cold || gc.vcpus) {
		ret = rdmig_guest_start(g, NULL, &err);
		if (ret)
			goto out;
		usleep((useconds_t)(warmup_ns / 1000));
	}
	/*
	 * After the warm-up: the guest's pages exist, so their nodes can be
	 * sampled. Before connecting: the CQs take the plan's vectors.
	 */
	ret = cli_numa_plan("migrate", numa_arg, cfg.channels, g,
			    gc.vcpus && gc.vcpu_cpus ? gc.vcpu_cpus : NULL, show_plan, out.json,
			    &plan, &err);
	if (ret)
		goto out;
	mo.plan = plan;
	cfg.ncomp_vector = plan_vectors(plan, vec);
	cfg.comp_vector = cfg.ncomp_vector ? vec : NULL;
	/* auto: rdma when this host has a device and it connects; never mixed later. */
	if (is_auto) {
		cfg.backend = RDMIG_BACKEND_RDMA;
		/* rdma needs userfaultfd write-protect to track a running guest. */
		if (cfg.tls) {
			/* Only tcp encrypts. */
		} else if (have_rdma_device() && !mo.cold && mo.dirty_auto &&
			   rdmig_dirty_best(false) != RDMIG_DIRTY_UFFD_WP) {
			log_warn(
			    "this kernel tracks dirty pages only with soft-dirty, which cannot "
			    "see writes to RDMA-registered memory: using tcp");
		} else if (have_rdma_device()) {
			ret = rdmig_connect(&cfg, &c, &err);
			if (ret) {
				log_warn("rdma connect failed (%s): falling back to tcp",
					 rdmig_err_str(&err));
				rdmig_err_clear(&err);
			}
		}
		if (!c)
			cfg.backend = RDMIG_BACKEND_TCP;
		else if (cfg.compress_level)
			log_warn("--backend auto chose rdma: compression is off on rdma, "
				 "--compress %d ignored",
				 cfg.compress_level);
	}
	if (!c) {
		ret = rdmig_connect(&cfg, &c, &err);
		if (ret)
			goto out;
	}
	ret = rdmig_mig_source(c, g, &mo, &st, &err);
	if (c && cfg.backend == RDMIG_BACKEND_TCP && cfg.compress_level) {
		struct rdmig_xport_stats xs;

		rdmig_xport_stats(c, &xs);
		zs.level = cfg.compress_level;
		zs.bytes = xs.bytes_written;
		zs.on_wire = xs.bytes_on_wire;
	}
out:
	if (ret && st.state != RDMIG_MIG_FAILED && st.state != RDMIG_MIG_CANCELLED)
		st.state = RDMIG_MIG_FAILED;
	if (ret && g)
		st.guest_work = rdmig_guest_work(g);
	print_summary(&out, ret, &st, rdmig_backend_name(cfg.backend), cfg.channels, &zs,
		      ret ? rdmig_err_str(&err) : NULL);
	if (ret && !out.json)
		fprintf(stderr, "rdmig migrate: %s%s\n", rdmig_err_str(&err),
			g && rdmig_guest_running(g) ? " (the guest is still running here)" : "");
	rdmig_conn_destroy(c);
	rdmig_guest_destroy(g);
	free(plan);
	return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}
