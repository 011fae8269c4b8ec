/* SPDX-License-Identifier: MIT */
/*
 * The options rdmig listen and rdmig migrate share, parsed in one place, and
 * what both ends do with them before a connection exists: the backend
 * (auto resolved here, once), the engine's option check, the key, and the
 * placement plan for this host.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mig.h"
#include "units.h"

enum {
	OPT_KEY_FILE = 1000,
	OPT_TLS,
	OPT_PEER_TIMEOUT,
	OPT_NUMA,
	OPT_SHOW_PLAN,
	OPT_JSON,
	OPT_DUMP,
	OPT_HUGEPAGES,
	OPT_COMMIT_TIMEOUT,
	OPT_COMMIT_GRACE,
	OPT_TEST_FAULT,
	OPT_PC_RECOVER,
	OPT_TEST_PC_PACE,
};

/* Both ends take these; the commands add their own (tools/cmd_listen.c, cmd_migrate.c). */
static const struct option shared_opts[] = {
    {"backend", required_argument, NULL, 'b'},
    {"channels", required_argument, NULL, 'c'},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"tls", no_argument, NULL, OPT_TLS},
    {"peer-timeout", required_argument, NULL, OPT_PEER_TIMEOUT},
    {"numa", required_argument, NULL, OPT_NUMA},
    {"show-plan", no_argument, NULL, OPT_SHOW_PLAN},
    {"json", no_argument, NULL, OPT_JSON},
    {"dump-ram", required_argument, NULL, OPT_DUMP},
    {"hugepages", no_argument, NULL, OPT_HUGEPAGES},
    {"commit-timeout", required_argument, NULL, OPT_COMMIT_TIMEOUT},
    {"commit-grace", required_argument, NULL, OPT_COMMIT_GRACE},
    /* Tests only, not in --help: fail the hand-over at STEP (include/rdmig/migrate.h). */
    {"test-fault", required_argument, NULL, OPT_TEST_FAULT},
    {"postcopy-recover", required_argument, NULL, OPT_PC_RECOVER},
    /* Tests only, not in --help: the destination's background fetches pause this long (us). */
    {"test-pc-pace", required_argument, NULL, OPT_TEST_PC_PACE},
    {"help", no_argument, NULL, 'h'},
};
#define NSHARED	 (sizeof(shared_opts) / sizeof(shared_opts[0]))
#define MAX_OPTS 64

void mig_cli_init(struct mig_cli *m, const struct mig_cmd *cmd)
{
	memset(m, 0, sizeof(*m));
	m->out.cmd = cmd->name;
	m->out.side = cmd->side;
	m->cfg.channels = cmd->default_channels;
	m->backend_auto = true;
	m->numa = RDMIG_NUMA_AUTO;
	rdmig_mig_opts_defaults(&m->mo);
}

/* A hand-over deadline: the range is the engine's (rdmig_mig_opts_check()). */
static int commit_opt(const char *cmd, const char *name, const char *arg, uint64_t *ns)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (rdmig_parse_duration(arg, 1000000000ull, ns, &err) || *ns < RDMIG_COMMIT_MIN_NS ||
	    *ns > RDMIG_COMMIT_MAX_NS)
		return cli_usage_error(cmd, "%s expects a duration between 1s and 3600s, got '%s'",
				       name, arg);
	return 0;
}

/* 0 handled, RDMIG_EXIT_USAGE (printed), or -1: not a shared option. */
static int shared_opt(struct mig_cli *m, const char *cmd, int opt, const char *arg)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v;

	switch (opt) {
	case 'b':
		if (cli_parse_backend(arg, &m->cfg.backend, &m->backend_auto, &err))
			return cli_usage_error(cmd, "%s", err.msg);
		return 0;
	case 'c':
		if (rdmig_parse_uint(arg, 1, RDMIG_MAX_CHANNELS, &v, &err))
			return cli_usage_error(cmd, "--channels: %s", err.msg);
		m->cfg.channels = (unsigned)v;
		return 0;
	case OPT_KEY_FILE:
		m->key_file = arg;
		return 0;
	case OPT_TLS:
		m->cfg.tls = true;
		return 0;
	case OPT_PEER_TIMEOUT:
		if (rdmig_parse_duration(arg, 1000000000ull, &v, &err) || v < 3000000000ull ||
		    v > 3600000000000ull)
			return cli_usage_error(cmd,
					       "--peer-timeout expects a duration between 3s and "
					       "3600s, got '%s'",
					       arg);
		m->cfg.peer_timeout_ms = (int)(v / 1000000ull);
		return 0;
	case OPT_NUMA:
		if (rdmig_numa_policy_parse(arg, &m->numa, &m->numa_cpus, &err))
			return cli_usage_error(cmd, "%s", err.msg);
		return 0;
	case OPT_SHOW_PLAN:
		m->show_plan = true;
		return 0;
	case OPT_JSON:
		m->out.json = true;
		return 0;
	case OPT_DUMP:
		m->mo.dump_ram = arg;
		return 0;
	case OPT_HUGEPAGES:
		m->hugepages = true;
		return 0;
	case OPT_COMMIT_TIMEOUT:
	case OPT_COMMIT_GRACE:
		return commit_opt(
		    cmd, opt == OPT_COMMIT_TIMEOUT ? "--commit-timeout" : "--commit-grace", arg,
		    opt == OPT_COMMIT_TIMEOUT ? &m->mo.commit_timeout_ns : &m->mo.commit_grace_ns);
	case OPT_PC_RECOVER:
		if (rdmig_parse_duration(arg, 1000000000ull, &v, &err) || v > 3600000000000ull)
			return cli_usage_error(cmd,
					       "--postcopy-recover expects a duration up to 3600s "
					       "(0: no recovery), got '%s'",
					       arg);
		m->mo.postcopy_recover_ns = v;
		return 0;
	case OPT_TEST_PC_PACE:
		if (rdmig_parse_uint(arg, 0, 1000000, &v, &err))
			return cli_usage_error(cmd, "--test-pc-pace: %s", err.msg);
		m->mo.test_pc_pace_us = (unsigned)v;
		return 0;
	case OPT_TEST_FAULT:
		if (rdmig_test_fault_parse(arg, &m->mo.test_fault_step, &m->mo.test_fault_action,
					   &err))
			return cli_usage_error(cmd, "--test-fault: %s", err.msg);
		return 0;
	}
	return -1;
}

int mig_cli_parse(struct mig_cli *m, const struct mig_cmd *cmd, void *ctx, int argc, char **argv)
{
	struct option all[MAX_OPTS];
	char shortopts[64];
	size_t n = 0;
	int opt, ret;

	memcpy(all, shared_opts, sizeof(shared_opts));
	n = NSHARED;
	for (const struct option *o = cmd->own; o && o->name && n < MAX_OPTS - 1; o++)
		all[n++] = *o;
	memset(&all[n], 0, sizeof(all[n]));
	snprintf(shortopts, sizeof(shortopts), "b:c:h%s", cmd->shortopts);
	optind = 1;
	while ((opt = getopt_long(argc, argv, shortopts, all, NULL)) != -1) {
		if (opt == 'h') {
			cmd->usage(stdout);
			return RDMIG_EXIT_OK;
		}
		ret = shared_opt(m, cmd->name, opt, optarg);
		if (ret == -1 && cmd->own_opt)
			ret = cmd->own_opt(m, ctx, opt, optarg);
		if (ret == -1)
			return cli_usage_error(cmd->name, "unknown option");
		if (ret)
			return ret;
	}
	return -1;
}

/*
 * --backend auto: rdma when this host has a device and the options allow
 * it (the source's dirty tracking must see writes to registered memory),
 * else tcp. TLS exists on tcp only.
 */
static enum rdmig_backend resolve_auto(struct mig_cli *m, const struct rdmig_guest_cfg *gc)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (m->cfg.tls || rdmig_backend_auto() == RDMIG_BACKEND_TCP)
		return RDMIG_BACKEND_TCP;
	if (rdmig_mig_opts_check(&m->mo, RDMIG_BACKEND_RDMA, gc, &err)) {
		log_warn("not rdma: %s: using tcp", rdmig_err_str(&err));
		return RDMIG_BACKEND_TCP;
	}
	m->fallback_tcp = gc != NULL;
	return RDMIG_BACKEND_RDMA;
}

int mig_cli_setup(struct mig_cli *m, const struct rdmig_guest_cfg *gc)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *cmd = m->out.cmd;
	int ret;

	if (!m->backend_auto && m->cfg.backend == RDMIG_BACKEND_RDMA) {
		if (m->cfg.tls)
			return cli_usage_error(cmd, "--tls works on the tcp backend only: rdmig "
						    "does not encrypt RoCE traffic; see "
						    "docs/security.md");
		if (m->cfg.compress_level)
			return cli_usage_error(cmd,
					       "--compress works on the tcp backend only: rdma "
					       "writes land in the destination's memory with no "
					       "CPU there to decompress them");
	}
	if (m->backend_auto)
		m->cfg.backend = resolve_auto(m, gc);
	if (rdmig_mig_opts_check(&m->mo, m->cfg.backend, gc, &err))
		return cli_usage_error(cmd, "%s", err.msg);
	m->out.tty = isatty(STDERR_FILENO) && !m->out.json;
	m->mo.on_event = mig_on_event;
	m->mo.ev_ctx = &m->out;
	m->mo.cancel = &cli_cancel;
	cli_install_signals();
	ret = cli_key_setup(cmd, m->key_file, &m->cfg, &m->key);
	if (ret)
		return ret;
	m->host = malloc(sizeof(*m->host));
	if (!m->host) {
		fprintf(stderr, "rdmig %s: out of memory for the placement plan\n", cmd);
		return RDMIG_EXIT_FAIL;
	}
	if (rdmig_numa_host_load(m->host, NULL, NULL, NULL, &err)) {
		fprintf(stderr, "rdmig %s: %s\n", cmd, rdmig_err_str(&err));
		return RDMIG_EXIT_FAIL;
	}
	return RDMIG_EXIT_OK;
}

int mig_cli_plan(struct mig_cli *m, unsigned channels, const struct rdmig_numa_mem *mem,
		 unsigned nmem, const struct rdmig_cpuset *avoid, struct rdmig_err *err)
{
	struct rdmig_numa_want w = {
	    .channels = channels,
	    .policy = m->numa,
	    .cpulist = &m->numa_cpus,
	    .avoid = avoid,
	    .mem = mem,
	    .nmem = nmem,
	};
	int ret;

	m->plan = malloc(sizeof(*m->plan));
	if (!m->plan)
		return rdmig_seterr(err, -ENOMEM, "out of memory for the placement plan");
	ret = rdmig_numa_host_plan(m->host, &w, m->plan, err);
	if (ret)
		return ret;
	if (m->show_plan)
		mig_print_plan(&m->out, m->plan, &m->host->topo);
	m->mo.plan = m->plan;
	/* A listener has its vectors from the host already: the same ones, in use. */
	if (m->cfg.comp_vector)
		return 0;
	m->cfg.ncomp_vector = rdmig_numa_plan_vectors(m->plan, m->vec);
	m->cfg.comp_vector = m->cfg.ncomp_vector ? m->vec : NULL;
	return 0;
}

void mig_cli_listen_vectors(struct mig_cli *m)
{
	if (m->cfg.backend != RDMIG_BACKEND_RDMA)
		return;
	m->cfg.ncomp_vector = rdmig_numa_host_vectors(m->host, m->cfg.channels, m->vec);
	m->cfg.comp_vector = m->cfg.ncomp_vector ? m->vec : NULL;
}

void mig_cli_fini(struct mig_cli *m)
{
	free(m->plan);
	free(m->host);
	m->plan = NULL;
	m->host = NULL;
	m->mo.plan = NULL;
	rdmig_auth_key_wipe(&m->key);
}
