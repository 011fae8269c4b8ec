/* SPDX-License-Identifier: MIT */
/*
 * Sub-commands of the rdmig tool. Each takes argc/argv starting at its own
 * name (getopt_long friendly) and returns the process exit status:
 * 0 success, 1 failure, 2 bad usage.
 */
#ifndef RDMIG_CLI_H
#define RDMIG_CLI_H

#define RDMIG_EXIT_OK	 0
#define RDMIG_EXIT_FAIL	 1
#define RDMIG_EXIT_USAGE 2

int cmd_doctor(int argc, char **argv);
int cmd_bw(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_migrate(int argc, char **argv);

/* Print "rdmig <cmd>: <msg>" and a hint to --help; returns RDMIG_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Parse "[ADDR][:PORT]" (IPv6 as [::1]:PORT). host may come back empty;
 * port 0 (listen on a free port) is accepted here, connecting callers refuse it.
 */
int cli_parse_hostport(const char *s, char *host, unsigned hostlen, unsigned short *port);

#endif
