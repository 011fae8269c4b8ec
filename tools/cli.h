/* SPDX-License-Identifier: MIT */
/*
 * Sub-commands of the rdmig tool. Each takes argc/argv starting at its own
 * name (getopt_long friendly) and returns the process exit status:
 * 0 success, 1 failure, 2 bad usage.
 */
#ifndef RDMIG_CLI_H
#define RDMIG_CLI_H

#include <stdbool.h>

#define RDMIG_EXIT_OK	 0
#define RDMIG_EXIT_FAIL	 1
#define RDMIG_EXIT_USAGE 2

int cmd_doctor(int argc, char **argv);
int cmd_bw(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_qemu(int argc, char **argv);
int cmd_topo(int argc, char **argv);

struct rdmig_guest;
struct rdmig_numa_plan;
struct rdmig_cpuset;
struct rdmig_err;
/*
 * Placement for a migration (tools/cmd_topo.c): plan `channels` workers on
 * this host under policy `numa_arg` (auto, off, CPU list; NULL = auto); `g`
 * is the source guest (its RAM's nodes are sampled) or NULL; `avoid` the
 * CPUs its vCPUs are pinned to (NULL: none). With the host's sole RDMA
 * device, its node and completion vector count feed the plan. With `show`,
 * print the plan: readable on stderr, or a {"event":"plan"} line on stdout
 * with `json`. *out is free()d by the caller. 0 or a negative errno.
 */
int cli_numa_plan(const char *side, const char *numa_arg, unsigned channels,
		  const struct rdmig_guest *g, const struct rdmig_cpuset *avoid, bool show,
		  bool json, struct rdmig_numa_plan **out, struct rdmig_err *err);

/* 0 when every CPU of `s` is one this process may run on, else -EINVAL naming it. */
int cli_cpus_usable(const struct rdmig_cpuset *s, struct rdmig_err *err);

/* Print "rdmig <cmd>: <msg>" and a hint to --help; returns RDMIG_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Parse "[ADDR][:PORT]" (IPv6 as [::1]:PORT). host may come back empty;
 * port 0 (listen on a free port) is accepted here, connecting callers refuse it.
 */
int cli_parse_hostport(const char *s, char *host, unsigned hostlen, unsigned short *port);

#endif
