/* SPDX-License-Identifier: MIT */
/*
 * rdmig listen and rdmig migrate: what the two ends of a live migration
 * share in the tool. One option table and parser for the options both take
 * (tools/mig_opts.c), the key, the backend, placement on this host, and the
 * output: progress line, JSON events, summary (tools/mig_report.c).
 */
#ifndef RDMIG_TOOLS_MIG_H
#define RDMIG_TOOLS_MIG_H

#include <getopt.h>
#include <stdio.h>

#include "rdmig/auth.h"
#include "cli.h"
#include "rdmig/migrate.h"
#include "plan.h"

/* ---- output (tools/mig_report.c) ----------------------------------------- */

struct mig_out {
	const char *cmd;  /* "listen" / "migrate" */
	const char *side; /* "destination" / "source" */
	bool json;	  /* JSON lines on stdout */
	bool tty;	  /* a progress line on stderr */
	double last_line_ms;
	bool line_open;
};

/* Compression of the source's page writes (tcp --compress), from the transport. */
struct mig_zsum {
	int level;	  /* 0: off, nothing reported */
	uint64_t bytes;	  /* page payload bytes written */
	uint64_t on_wire; /* the same after compression */
};

/* The engine's event callback (ctx: struct mig_out). */
void mig_on_event(const struct rdmig_mig_event *ev, void *ctx);
/* The placement: readable on stderr, or a {"event":"plan"} line. */
void mig_print_plan(const struct mig_out *o, const struct rdmig_numa_plan *p,
		    const struct rdmig_numa_topo *t);
/* How it ended: the summary object, or readable lines on stdout. */
void mig_print_summary(struct mig_out *o, int ret, const struct rdmig_mig_stats *s,
		       const char *backend, unsigned channels, const struct mig_zsum *z,
		       const char *errmsg);

/* ---- options, key, backend, placement (tools/mig_opts.c) ----------------- */

/* One end of a migration as the command line sets it up. */
struct mig_cli {
	struct mig_out out;
	struct rdmig_xport_cfg cfg;
	bool backend_auto; /* --backend auto (the default) */
	bool fallback_tcp; /* source: auto chose rdma, tcp when it does not connect */
	const char *key_file;
	struct rdmig_auth_key key; /* outlives every connection made with cfg */
	enum rdmig_numa_policy numa;
	struct rdmig_cpuset numa_cpus; /* RDMIG_NUMA_CPULIST */
	bool show_plan;
	bool hugepages;
	bool no_hugepages; /* listen: receive into 4 KiB pages */
	struct rdmig_mig_opts mo;
	struct rdmig_numa_host *host; /* loaded once per command */
	struct rdmig_numa_plan *plan; /* made once per command */
	int vec[RDMIG_MAX_CHANNELS];  /* cfg.comp_vector: outlives listener and connection */
};

/* A command's own long options take values from here up (the shared ones are below). */
#define MIG_OPT_OWN 1100

struct mig_cmd {
	const char *name;	  /* "listen" */
	const char *side;	  /* "destination" */
	const char *shortopts;	  /* its own short options, e.g. "g:n:" */
	const struct option *own; /* its own long options, {0}-terminated */
	/* One of its own options: 0, RDMIG_EXIT_USAGE (message printed), -1 not its own. */
	int (*own_opt)(struct mig_cli *m, void *ctx, int opt, const char *arg);
	void (*usage)(FILE *out);
	unsigned default_channels;
};

void mig_cli_init(struct mig_cli *m, const struct mig_cmd *cmd);
/* Parse argv: -1 to go on (optind at the operands), else the exit status to return. */
int mig_cli_parse(struct mig_cli *m, const struct mig_cmd *cmd, void *ctx, int argc, char **argv);
/*
 * After parsing: options against the backend and each other (with the
 * engine's rdmig_mig_opts_check(); `gc` is the source guest, NULL on the
 * destination), --backend auto resolved, the key loaded, this host
 * described, signals caught. RDMIG_EXIT_OK to go on, else the exit status.
 */
int mig_cli_setup(struct mig_cli *m, const struct rdmig_guest_cfg *gc);
/*
 * The one plan of the command, for `channels` workers, following guest RAM
 * `mem` (NULL: unknown) and keeping off `avoid`: printed with --show-plan,
 * handed to the engine (mo.plan) and its vectors to the transport (cfg).
 */
int mig_cli_plan(struct mig_cli *m, unsigned channels, const struct rdmig_numa_mem *mem,
		 unsigned nmem, const struct rdmig_cpuset *avoid, struct rdmig_err *err);
/*
 * An rdma listener's CQ vectors, before the channel count is known: the
 * ones the plan made after accept will name (rdmig_numa_host_vectors()).
 */
void mig_cli_listen_vectors(struct mig_cli *m);
void mig_cli_fini(struct mig_cli *m);

#endif
