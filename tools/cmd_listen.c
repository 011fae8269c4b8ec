/* SPDX-License-Identifier: MIT */
/* rdmig listen: the destination of a live migration of a synthetic guest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "mig.h"
#include "units.h"

enum {
	OPT_MAX_RAM = MIG_OPT_OWN,
	OPT_RESUME,
	OPT_CORRUPT,
};

static const struct option listen_opts[] = {
    {"max-ram", required_argument, NULL, OPT_MAX_RAM},
    {"resume-for", required_argument, NULL, OPT_RESUME},
    {"test-corrupt-page", required_argument, NULL, OPT_CORRUPT},
    {0},
};

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
		"                          (docs/json.md)\n"
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
	m.mo.hugepages = m.hugepages;
	ret = mig_cli_setup(&m, NULL);
	if (ret) {
		mig_cli_fini(&m);
		return ret;
	}

	mig_cli_listen_vectors(&m);
	ret = rdmig_listen(&m.cfg, &l, &err);
	if (ret)
		goto out;
	fprintf(stderr, "rdmig listen: waiting on %s port %u (%s)\n", host[0] ? host : "*",
		rdmig_listener_port(l), rdmig_backend_name(m.cfg.backend));
	ret = accept_one(l, &c, &err);
	if (ret)
		goto out;
	/* Receivers are placed once the channel count is known. */
	ret = mig_cli_plan(&m, rdmig_conn_channels(c), NULL, 0, NULL, &err);
	if (ret)
		goto out;
	ret = rdmig_mig_dest(c, &m.mo, &st, &err);
out:
	mig_print_summary(&m.out, ret, &st, rdmig_backend_name(m.cfg.backend),
			  c ? rdmig_conn_channels(c) : 0, NULL, ret ? rdmig_err_str(&err) : NULL);
	if (ret && !m.out.json)
		fprintf(stderr, "rdmig listen: %s\n", rdmig_err_str(&err));
	rdmig_conn_destroy(c);
	rdmig_listener_destroy(l);
	mig_cli_fini(&m);
	return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}
