/* SPDX-License-Identifier: MIT */
/* rdmig listen: the destination of a live migration of a synthetic guest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "mig.h"
#include "rdmig/guest.h"
#include "units.h"

enum {
	OPT_MAX_RAM = MIG_OPT_OWN,
	OPT_RESUME,
	OPT_CORRUPT,
	OPT_NO_HUGEPAGES,
};

static const struct option listen_opts[] = {
    {"max-ram", required_argument, NULL, OPT_MAX_RAM},
    {"resume-for", required_argument, NULL, OPT_RESUME},
    {"test-corrupt-page", required_argument, NULL, OPT_CORRUPT},
    {"no-hugepages", no_argument, NULL, OPT_NO_HUGEPAGES},
    {0},
};

static void listen_usage(FILE *out)
{
	fprintf(out,
		"Usage: rdmig listen [ADDR][:PORT] [--backend rdma|tcp|auto] [--dump-ram PATH]\n"
		"                    [--max-ram SIZE] [--resume-for TIME] [--json]\n"
		"\n"
		"Destination of a live migration: wait for a source, receive its guest,\n"
		"verify every page, and on the source's GO resume the guest for a moment.\n"
		"A failed or cancelled migration is logged and discarded, and the listener\n"
		"waits for the next source, until one migration completes.\n"
		"\n"
		"  ADDR[:PORT]             listen address (default: all, port %d)\n"
		"  -b, --backend B         rdma, tcp, or auto (rdma if this host has an RDMA\n"
		"                          device, else tcp; default auto)\n"
		"  -c, --channels N        most data channels accepted (default %d)\n"
		"      --dump-ram PATH     write the guest RAM as committed to PATH\n"
		"      --max-ram SIZE      refuse larger guests (default 64G)\n"
		"      --resume-for TIME   run the migrated guest this long (default 500ms)\n"
		"      --commit-timeout T  wait this long for each hand-over message from the\n"
		"                          source (1s to 3600s, default 30s)\n"
		"      --commit-grace T    a cut hand-over: wait this long for the source to\n"
		"                          settle it, then report 'unknown' (default 60s)\n"
		"      --postcopy-recover T  a post-copy whose link broke: wait this long for\n"
		"                          the source to reconnect (default 60s, 0: none); the\n"
		"                          guest waits meanwhile, and is lost after it\n"
		"      --json              events and the summary as JSON lines on stdout\n"
		"                          (docs/json.md)\n"
		"      --peer-timeout TIME fail when the source is silent this long (rdma\n"
		"                          keepalives; tcp: unacknowledged data; default 15s)\n"
		"      --numa P            receiver placement: auto (default), off, or a CPU\n"
		"                          list such as 0-3,8 (see docs/tuning.md)\n"
		"      --show-plan         print the placement plan before receiving\n"
		"      --hugepages         back the received guest RAM with transparent huge\n"
		"                          pages (the default: copying into 4 KiB pages is\n"
		"                          bound by page walks, docs/performance.md)\n"
		"      --no-hugepages      receive into 4 KiB pages\n"
		"      --key-file PATH     pre-shared key the source must prove (mode 0600,\n"
		"                          >= 16 bytes; default $RDMIG_KEY_FILE)\n"
		"      --tls               tcp: encrypt every socket with TLS 1.3 keyed by\n"
		"                          --key-file (needed); the source must use it too\n"
		"  -h, --help\n"
		"\n"
		"Exit status: 0 completed (the guest ran here), 1 failed or cancelled (Ctrl-C),\n"
		"2 bad usage, 3 outcome unknown (the guest was not started here; see the\n"
		"message).\n",
		RDMIG_DEFAULT_PORT, RDMIG_MAX_CHANNELS);
}

static int listen_opt(struct mig_cli *m, void *ctx, int opt, const char *arg)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v;

	(void)ctx;
	switch (opt) {
	case OPT_MAX_RAM:
		if (rdmig_parse_size(arg, &m->mo.max_ram, &err))
			return cli_usage_error("listen", "--max-ram: %s", err.msg);
		return 0;
	case OPT_RESUME:
		if (rdmig_parse_duration(arg, 1000000ull, &m->mo.resume_ns, &err))
			return cli_usage_error("listen", "--resume-for: %s", err.msg);
		return 0;
	case OPT_NO_HUGEPAGES:
		m->no_hugepages = true;
		return 0;
	case OPT_CORRUPT:
		if (rdmig_parse_uint(arg, 0, INT64_MAX, &v, &err))
			return cli_usage_error("listen", "--test-corrupt-page: %s", err.msg);
		m->mo.test_corrupt_page = (int64_t)v;
		return 0;
	}
	return -1;
}

static const struct mig_cmd listen_cmd = {
    .name = "listen",
    .side = "destination",
    .shortopts = "",
    .own = listen_opts,
    .own_opt = listen_opt,
    .usage = listen_usage,
    .default_channels = RDMIG_MAX_CHANNELS,
};

/* Wait for one source; Ctrl-C gives up. */
static int accept_one(struct rdmig_listener *l, struct rdmig_conn **c, struct rdmig_err *err)
{
	int ret;

	while ((ret = rdmig_accept(l, 200, c, err)) == -ETIMEDOUT) {
		rdmig_err_clear(err);
		if (cli_cancel)
			return rdmig_seterr(err, -ECANCELED, "cancelled before a source connected");
	}
	return ret;
}

/* The engine's way back to a source that lost the hand-over (rdmig_mig_conn_fn). */
static int settle_accept(void *ctx, int timeout_ms, struct rdmig_conn **out, struct rdmig_err *err)
{
	return rdmig_accept(ctx, timeout_ms, out, err);
}

/* A migration that did not complete, and the listener goes on. */
static void report_discarded(const struct mig_cli *m, int ret, const struct rdmig_mig_stats *st,
			     unsigned n, const char *msg)
{
	json_t *j;

	/* -ESRCH: not a migration, a source settling one this listener let go before. */
	fprintf(stderr,
		"rdmig listen: %s %u%s%s (from the source accepted above) %s: %s; "
		"nothing kept, waiting for the next source\n",
		ret == -ESRCH ? "connection" : "migration", n, st->migration_id[0] ? " " : "",
		st->migration_id, ret == -ESRCH ? "was a settlement" : cli_status_name(ret), msg);
	if (!m->out.json)
		return;
	j = json_object();
	if (!j)
		return;
	cli_jset(j, "event", json_string("discarded"));
	cli_jset(j, "command", json_string("listen"));
	cli_jset(j, "side", json_string("destination"));
	cli_jset(j, "status", json_string(cli_status_name(ret)));
	cli_jset(j, "error", cli_jstr(msg));
	cli_jset(j, "migration_id",
		 st->migration_id[0] ? json_string(st->migration_id) : json_null());
	cli_jset(j, "total_ms", cli_jreal(st->total_ms, 1));
	cli_json_print(j, false);
}

/*
 * Serve sources until one migration completes (0), ends unknown, or the
 * user gives up. What failed is logged and discarded by the engine.
 */
static int serve(struct mig_cli *m, struct rdmig_listener *l, struct rdmig_conn **c,
		 struct rdmig_mig_stats *st, struct rdmig_err *err)
{
	unsigned n = 0;
	int ret;

	m->mo.settle_conn = settle_accept;
	m->mo.settle_ctx = l;
	for (;;) {
		ret = accept_one(l, c, err);
		if (ret == -ECANCELED)
			return ret;
		if (ret) {
			/* A peer that never became a migration: the transport said why. */
			fprintf(stderr, "rdmig listen: %s; still listening\n", rdmig_err_str(err));
			rdmig_err_clear(err);
			rdmig_sleep_ms(100);
			continue;
		}
		/* Receivers are placed once the channel count is known; one plan per command. */
		if (!m->plan) {
			ret = mig_cli_plan(m, rdmig_conn_channels(*c), NULL, 0, NULL, err);
			if (ret)
				return ret;
		}
		memset(st, 0, sizeof(*st));
		n++;
		ret = rdmig_mig_dest(*c, &m->mo, st, err);
		/* A lost post-copy ends here too: the operator decides at the source. */
		if (!ret || ret == RDMIG_MIG_EUNKNOWN || ret == RDMIG_MIG_EPCLOST || cli_cancel)
			return ret;
		report_discarded(m, ret, st, n, rdmig_err_str(err));
		rdmig_conn_destroy(*c);
		*c = NULL;
		rdmig_err_clear(err);
	}
}

int cmd_listen(int argc, char **argv)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_mig_stats st = {0};
	struct rdmig_listener *l = NULL;
	struct rdmig_conn *c = NULL;
	unsigned short port = RDMIG_DEFAULT_PORT;
	char host[256] = "";
	struct mig_cli m;
	int ret;

	mig_cli_init(&m, &listen_cmd);
	ret = mig_cli_parse(&m, &listen_cmd, NULL, argc, argv);
	if (ret >= 0)
		return ret;
	if (optind < argc - 1)
		return cli_usage_error("listen", "too many arguments");
	if (optind == argc - 1 && cli_parse_hostport(argv[optind], host, sizeof(host), &port))
		return cli_usage_error("listen", "invalid listen address '%s'", argv[optind]);
	m.cfg.host = host[0] ? host : NULL;
	m.cfg.port = port;
	if (m.hugepages && m.no_hugepages)
		return cli_usage_error("listen",
				       "--hugepages and --no-hugepages exclude each other");
	m.mo.hugepages = !m.no_hugepages;
	ret = mig_cli_setup(&m, NULL);
	if (ret) {
		mig_cli_fini(&m);
		return ret;
	}
	/*
	 * A listener serves source after source: the transport's line for each
	 * accepted connection names its address, which the outcome lines refer
	 * to. Set before any thread exists; RDMIG_LOG still decides.
	 */
	if (!getenv("RDMIG_LOG") && rdmig_log_level < RDMIG_LOG_INFO)
		rdmig_log_set_level(RDMIG_LOG_INFO);

	mig_cli_listen_vectors(&m);
	ret = rdmig_listen(&m.cfg, &l, &err);
	if (ret)
		goto out;
	fprintf(stderr, "rdmig listen: waiting on %s port %u (%s)\n", host[0] ? host : "*",
		rdmig_listener_port(l), rdmig_backend_name(m.cfg.backend));
	ret = serve(&m, l, &c, &st, &err);
out:
	mig_print_summary(&m.out, ret, &st, rdmig_backend_name(m.cfg.backend),
			  c ? rdmig_conn_channels(c) : 0, NULL, ret ? rdmig_err_str(&err) : NULL);
	if (ret && !m.out.json)
		fprintf(stderr, "rdmig listen: %s\n", rdmig_err_str(&err));
	if (ret == RDMIG_MIG_EUNKNOWN)
		fprintf(stderr, "rdmig listen: %s\n", rdmig_mig_unknown_advice(false));
	rdmig_conn_destroy(c);
	rdmig_listener_destroy(l);
	mig_cli_fini(&m);
	if (ret == RDMIG_MIG_EUNKNOWN)
		return RDMIG_EXIT_UNKNOWN;
	return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}
