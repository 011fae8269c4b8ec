/* SPDX-License-Identifier: MIT */
/*
 * What the rdmig tool's commands share. Each command takes argc/argv
 * starting at its own name (getopt_long friendly) and returns the process
 * exit status: 0 success, 1 failure, 2 bad usage, and for listen and
 * migrate 3 when a migration's outcome is unknown (include/rdmig/migrate.h).
 */
#ifndef RDMIG_CLI_H
#define RDMIG_CLI_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "rdmig/transport.h"

#define RDMIG_EXIT_OK	 0
#define RDMIG_EXIT_FAIL	 1
#define RDMIG_EXIT_USAGE 2
/* listen, migrate: the hand-over was cut and not settled; an operator decides. */
#define RDMIG_EXIT_UNKNOWN 3

int cmd_doctor(int argc, char **argv);
int cmd_bw(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_qemu(int argc, char **argv);
int cmd_topo(int argc, char **argv);

/* ---- arguments (tools/cli.c) --------------------------------------------- */

/* Print "rdmig <cmd>: <msg>" and a hint to --help; returns RDMIG_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Parse "[ADDR][:PORT]" (IPv6 as [::1]:PORT). host may come back empty;
 * port 0 (listen on a free port) is accepted here, connecting callers refuse it.
 */
int cli_parse_hostport(const char *s, char *host, unsigned hostlen, unsigned short *port);

/*
 * "--backend rdma|tcp|auto": *is_auto for auto (the caller resolves it
 * with rdmig_backend_auto() or its own rule), else *b.
 */
int cli_parse_backend(const char *s, enum rdmig_backend *b, bool *is_auto, struct rdmig_err *err);

struct rdmig_auth_key;
/*
 * The pre-shared key (--key-file `key_file`, else $RDMIG_KEY_FILE) into
 * `key` and hooked into `cfg` (and its TLS key when cfg->tls), or the
 * unauthenticated warning. `key` must outlive every connection made with
 * cfg. Returns an exit status: OK, FAIL (unreadable key), USAGE (--tls
 * without a key); the message is printed.
 */
int cli_key_setup(const char *cmd, const char *key_file, struct rdmig_xport_cfg *cfg,
		  struct rdmig_auth_key *key);

/* Set by SIGINT/SIGTERM once cli_install_signals() ran; SIGPIPE is ignored. */
extern volatile sig_atomic_t cli_cancel;
void cli_install_signals(void);

/* ---- JSON output (tools/json_out.c), vocabulary in docs/json.md ---------- */

/* A JSON string, or null for NULL; bytes that are not UTF-8 become '?'. */
json_t *cli_jstr(const char *s);
/* Integers above JSON's signed 64 bits (max_mr_size) become reals. */
json_t *cli_juint(uint64_t v);
/* A real rounded to `decimals` places (printed without binary noise). */
json_t *cli_jreal(double v, int decimals);
/* json_object_set_new() where a NULL value (a failed constructor) becomes null. */
void cli_jset(json_t *obj, const char *key, json_t *val);

/*
 * "completed", "cancelled" (-ECANCELED), "unknown" (a migration's
 * RDMIG_MIG_EUNKNOWN) or "failed" for a command's result.
 */
const char *cli_status_name(int ret);
/*
 * The start of every command's final object: {"event":"summary",
 * "command":COMMAND,"status":...,"error":null or the message}.
 */
json_t *cli_json_summary(const char *command, int ret, const char *errmsg);
/* `j` on stdout, compact on one line or indented, then a newline; consumes j. 0 or -EIO. */
int cli_json_print(json_t *j, bool pretty);

#endif
