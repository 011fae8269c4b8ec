/* SPDX-License-Identifier: MIT */
/* rdmig qemu src|dst|migrate: QEMU's migration carried over rdmig (qemu/include/relay.h). */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "rdmig/auth.h"
#include "cli.h"
#include "log.h"
#include "orchestrate.h"
#include "relay.h"
#include "units.h"

/* Where the guest runs cannot be known (docs/json.md): neither 0 nor 1 is true. */
#define QEMU_EXIT_UNKNOWN 3

/* Long options without a short form. */
enum {
	OPT_KEY_FILE = 0x100,
	OPT_TLS,
	OPT_SOCKET_MODE,
	OPT_SOCKET_GROUP,
	OPT_CONTROL_IDLE,
	OPT_ONCE,
	OPT_POSTCOPY,
	OPT_POSTCOPY_AFTER,
	OPT_RECOVER_WAIT,
};

#define KEY_HELP                                                                                   \
	"      --key-file PATH        pre-shared key both relays must prove (mode 0600,\n"         \
	"                             >= 16 bytes; default $RDMIG_KEY_FILE)\n"                     \
	"      --tls                  tcp: encrypt every socket with TLS 1.3 keyed by\n"           \
	"                             --key-file (needed); the other side must use it too\n"
#define SOCKET_HELP                                                                                \
	"      --socket-mode MODE     octal permissions of the unix socket QEMU connects\n"        \
	"                             to (default 0600; never for others)\n"                       \
	"      --socket-group GROUP   its group, a name or a gid (for a QEMU running as\n"         \
	"                             its own user, e.g. libvirt-qemu, with mode 0660)\n"

/* What the three subcommands share: the key, and who may use the source socket. */
struct qemu_sec {
	const char *key_file;
	struct rdmig_auth_key key; /* loaded here, kept in tools/cli.c's key store */
	unsigned sock_mode;
	bool set_group;
	unsigned gid;
};

/* "ADDR[:PORT]" for connecting: host required, default port. */
static int parse_peer(const char *cmd, const char *s, char *host, unsigned hostlen, uint16_t *port)
{
	unsigned short p = RDMIG_DEFAULT_PORT;

	if (cli_parse_hostport(s, host, hostlen, &p) || !host[0] || !p)
		return cli_usage_error(cmd, "expects ADDR[:PORT] with a non-zero port, got '%s'",
				       s);
	*port = p;
	return 0;
}

static int parse_sock_mode(const char *cmd, const char *s, unsigned *mode)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	unsigned long v;
	char *end;

	if (!*s || strspn(s, "01234567") != strlen(s) || strlen(s) > 5)
		return cli_usage_error(cmd,
				       "--socket-mode expects an octal mode such as 0600 or "
				       "0660, got '%s'",
				       s);
	v = strtoul(s, &end, 8);
	if (!v)
		return cli_usage_error(cmd, "--socket-mode 0 would let nobody connect; use 0600 "
					    "(the default) or 0660 with --socket-group");
	if (rdmig_relay_sock_mode_check((unsigned)v, &err))
		return cli_usage_error(cmd, "--socket-mode: %s", err.msg);
	*mode = (unsigned)v;
	return 0;
}

static int parse_sock_group(const char *cmd, const char *s, unsigned *gid)
{
	struct group *g;

	if (*s && strspn(s, "0123456789") == strlen(s)) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);

		if (strlen(s) > 10 || v >= UINT32_MAX)
			return cli_usage_error(cmd, "--socket-group: gid '%s' is out of range", s);
		*gid = (unsigned)v;
		return 0;
	}
	g = *s ? getgrnam(s) : NULL;
	if (!g)
		return cli_usage_error(cmd,
				       "--socket-group: no group named '%s' on this host (`getent "
				       "group` lists them; a numeric gid works too)",
				       s);
	*gid = (unsigned)g->gr_gid;
	return 0;
}

/*
 * An option the three subcommands share: 1 when `opt` is not one, else 0
 * or (printed) an exit status.
 */
static int sec_opt(const char *cmd, int opt, const char *arg, struct qemu_sec *sec,
		   struct rdmig_xport_cfg *x)
{
	switch (opt) {
	case OPT_KEY_FILE:
		sec->key_file = arg;
		return 0;
	case OPT_TLS:
		x->tls = true;
		return 0;
	case OPT_SOCKET_MODE:
		return parse_sock_mode(cmd, arg, &sec->sock_mode);
	case OPT_SOCKET_GROUP:
		sec->set_group = true;
		return parse_sock_group(cmd, arg, &sec->gid);
	default:
		return 1;
	}
}

/* The key (or the unauthenticated warning) into x; an exit status. */
static int sec_setup(const char *cmd, struct qemu_sec *sec, struct rdmig_xport_cfg *x)
{
	if (x->tls && x->backend == RDMIG_BACKEND_RDMA)
		return cli_usage_error(cmd, "--tls works on the tcp backend only: rdmig does not "
					    "encrypt RoCE traffic; see docs/security.md");
	return cli_key_setup(cmd, sec->key_file, x, &sec->key);
}

static void usage_src(FILE *f)
{
	fprintf(f,
		"Usage: rdmig qemu src --connect ADDR[:PORT] --socket PATH [--backend rdma|tcp]\n"
		"         [--streams N] [--key-file PATH] [--tls] [--socket-mode MODE]\n"
		"         [--socket-group GROUP]\n"
		"\n"
		"Serve the unix socket PATH for the source QEMU (`migrate unix:PATH`); every\n"
		"connection QEMU opens (main channel, return path, each multifd channel) is\n"
		"carried as an rdmig stream to `rdmig qemu dst` at ADDR (default port %d),\n"
		"on a channel of one rdmig connection (a stream set) opened and authenticated\n"
		"once for N of them. Runs until SIGINT/SIGTERM. `rdmig qemu migrate` starts\n"
		"one of these itself.\n"
		"\n"
		"  -c, --connect ADDR[:PORT]  destination relay\n"
		"  -s, --socket PATH          unix socket to serve\n"
		"  -b, --backend B            rdma or tcp (default tcp)\n"
		"  -n, --streams N            connections QEMU opens per migration, carried by\n"
		"                             one rdmig connection (1..%d, default 1): multifd\n"
		"                             channels + 1 with multifd, else 1; +1 with\n"
		"                             postcopy-preempt. More connections than N open\n"
		"                             another rdmig connection: it still works\n" KEY_HELP
		    SOCKET_HELP,
		RDMIG_DEFAULT_PORT, RDMIG_MAX_CHANNELS);
}

static int qemu_src(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"connect", required_argument, NULL, 'c'},
	    {"socket", required_argument, NULL, 's'},
	    {"backend", required_argument, NULL, 'b'},
	    {"streams", required_argument, NULL, 'n'},
	    {"key-file", required_argument, NULL, OPT_KEY_FILE},
	    {"tls", no_argument, NULL, OPT_TLS},
	    {"socket-mode", required_argument, NULL, OPT_SOCKET_MODE},
	    {"socket-group", required_argument, NULL, OPT_SOCKET_GROUP},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	struct rdmig_relay_src_cfg cfg = {.xport = {.backend = RDMIG_BACKEND_TCP}};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_relay_src *r = NULL;
	const char *peer = NULL;
	struct qemu_sec sec = {0};
	char host[256];
	uint64_t v;
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:s:b:n:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'c':
			peer = optarg;
			break;
		case 's':
			cfg.path = optarg;
			break;
		case 'b':
			if (rdmig_backend_parse(optarg, &cfg.xport.backend, &err))
				return cli_usage_error("qemu src", "%s", err.msg);
			break;
		case 'n':
			if (rdmig_parse_uint(optarg, 1, RDMIG_MAX_CHANNELS, &v, &err))
				return cli_usage_error("qemu src", "--streams: %s", err.msg);
			cfg.streams = (unsigned)v;
			break;
		case 'h':
			usage_src(stdout);
			return RDMIG_EXIT_OK;
		default:
			rc = sec_opt("qemu src", opt, optarg, &sec, &cfg.xport);
			if (rc == 1)
				return cli_usage_error("qemu src", "unknown option");
			if (rc)
				return rc;
		}
	}
	if (optind < argc)
		return cli_usage_error("qemu src", "unexpected argument '%s'", argv[optind]);
	if (!peer || !cfg.path)
		return cli_usage_error("qemu src", "--connect and --socket are required");
	if (parse_peer("qemu src", peer, host, sizeof(host), &cfg.xport.port))
		return RDMIG_EXIT_USAGE;
	cfg.xport.host = host;
	cfg.mode = sec.sock_mode;
	cfg.set_group = sec.set_group;
	cfg.gid = sec.gid;
	rc = sec_setup("qemu src", &sec, &cfg.xport);
	if (rc)
		return rc;
	cli_install_signals();
	if (rdmig_relay_src_start(&cfg, &r, &err)) {
		fprintf(stderr, "rdmig qemu src: %s\n", err.msg);
		rdmig_auth_key_wipe(&sec.key);
		return RDMIG_EXIT_FAIL;
	}
	fprintf(stderr,
		"rdmig qemu src: serving %s -> %s port %u over %s%s, %u stream(s) per rdmig "
		"connection\n",
		cfg.path, host, cfg.xport.port, rdmig_backend_name(cfg.xport.backend),
		cfg.xport.tls ? " (TLS)" : "", cfg.streams ? cfg.streams : 1);
	while (!cli_cancel)
		pause();
	rdmig_relay_src_stop(r, 0);
	rdmig_auth_key_wipe(&sec.key);
	return RDMIG_EXIT_OK;
}

static void usage_dst(FILE *f)
{
	fprintf(f,
		"Usage: rdmig qemu dst --listen [ADDR][:PORT] --qemu-incoming unix:PATH\n"
		"                      [--qmp PATH] [--backend rdma|tcp] [--once]\n"
		"                      [--key-file PATH] [--tls] [--control-idle TIME]\n"
		"\n"
		"Accept rdmig streams from `rdmig qemu src` / `rdmig qemu migrate` and join each\n"
		"to a new connection to the destination QEMU's incoming socket (QEMU started\n"
		"with -incoming unix:PATH, or -incoming defer: then migrate-incoming is issued).\n"
		"With --qmp, `rdmig qemu migrate` drives the destination QEMU through this\n"
		"relay. Only peers that prove the key get anywhere near QEMU. Runs until\n"
		"SIGINT/SIGTERM, through failed or refused connections.\n"
		"\n"
		"  -l, --listen [ADDR][:PORT]   where to listen (default any, port %d)\n"
		"  -i, --qemu-incoming unix:PATH destination QEMU's incoming socket\n"
		"  -q, --qmp PATH               destination QEMU's QMP socket\n"
		"  -b, --backend B              rdma or tcp (default tcp)\n"
		"      --once                   exit when the first migration's control session\n"
		"                               and its streams have ended\n"
		"      --key-file PATH          pre-shared key every peer must prove before it\n"
		"                               reaches QEMU (mode 0600, >= 16 bytes; default\n"
		"                               $RDMIG_KEY_FILE)\n"
		"      --tls                    tcp: encrypt every socket with TLS 1.3 keyed by\n"
		"                               --key-file (needed); the peers must use it too\n"
		"      --control-idle TIME      drop a control session that sends no request\n"
		"                               for TIME (default 30s)\n",
		RDMIG_DEFAULT_PORT);
}

static void print_port(uint16_t port)
{
	fprintf(stderr, "rdmig qemu dst: listening on port %u\n", port);
	printf("listening %u\n", port);
	fflush(stdout);
}

static int qemu_dst(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"qemu-incoming", required_argument, NULL, 'i'},
	    {"qmp", required_argument, NULL, 'q'},
	    {"backend", required_argument, NULL, 'b'},
	    {"once", no_argument, NULL, OPT_ONCE},
	    {"control-idle", required_argument, NULL, OPT_CONTROL_IDLE},
	    {"key-file", required_argument, NULL, OPT_KEY_FILE},
	    {"tls", no_argument, NULL, OPT_TLS},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	struct rdmig_relay_dst_cfg cfg = {.xport = {.backend = RDMIG_BACKEND_TCP}};
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *listen = "", *incoming = NULL;
	unsigned short port = RDMIG_DEFAULT_PORT;
	struct qemu_sec sec = {0};
	char host[256];
	uint64_t v;
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "l:i:q:b:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen = optarg;
			break;
		case 'i':
			incoming = optarg;
			break;
		case 'q':
			cfg.qmp_path = optarg;
			break;
		case 'b':
			if (rdmig_backend_parse(optarg, &cfg.xport.backend, &err))
				return cli_usage_error("qemu dst", "%s", err.msg);
			break;
		case OPT_ONCE:
			cfg.once = true;
			break;
		case OPT_CONTROL_IDLE:
			if (rdmig_parse_duration(optarg, 1000000000ull, &v, &err))
				return cli_usage_error("qemu dst", "--control-idle: %s", err.msg);
			if (v < 1000000000ull || v > 3600000000000ull)
				return cli_usage_error("qemu dst", "--control-idle expects 1s..1h");
			cfg.ctrl_idle_ms = (int)(v / 1000000);
			break;
		case 'h':
			usage_dst(stdout);
			return RDMIG_EXIT_OK;
		default:
			/* --socket-* are the source's: unknown here. */
			rc = opt == OPT_KEY_FILE || opt == OPT_TLS
				 ? sec_opt("qemu dst", opt, optarg, &sec, &cfg.xport)
				 : 1;
			if (rc == 1)
				return cli_usage_error("qemu dst", "unknown option");
			if (rc)
				return rc;
		}
	}
	if (optind < argc)
		return cli_usage_error("qemu dst", "unexpected argument '%s'", argv[optind]);
	if (!incoming)
		return cli_usage_error("qemu dst", "--qemu-incoming unix:PATH is required");
	if (strncmp(incoming, "unix:", 5) || !incoming[5])
		return cli_usage_error("qemu dst",
				       "--qemu-incoming expects unix:PATH (QEMU's -incoming "
				       "unix:PATH), got '%s'",
				       incoming);
	if (cli_parse_hostport(listen, host, sizeof(host), &port))
		return cli_usage_error("qemu dst", "--listen expects [ADDR][:PORT], got '%s'",
				       listen);
	cfg.incoming_path = incoming + 5;
	cfg.xport.host = host[0] ? host : NULL;
	cfg.xport.port = port;
	rc = sec_setup("qemu dst", &sec, &cfg.xport);
	if (rc)
		return rc;
	cli_install_signals();
	rc = rdmig_relay_dst_run(&cfg, &cli_cancel, print_port, &err);
	rdmig_auth_key_wipe(&sec.key);
	if (rc) {
		fprintf(stderr, "rdmig qemu dst: %s\n", err.msg);
		return RDMIG_EXIT_FAIL;
	}
	return RDMIG_EXIT_OK;
}

static void usage_migrate(FILE *f)
{
	fprintf(
	    f,
	    "Usage: rdmig qemu migrate --src-qmp PATH --dst ADDR[:PORT] [--multifd N]\n"
	    "         [--auto-converge] [--downtime-limit TIME] [--max-bandwidth RATE]\n"
	    "         [--backend rdma|tcp] [--socket PATH] [--timeout TIME] [--json]\n"
	    "         [--key-file PATH] [--tls] [--socket-mode MODE] [--socket-group GROUP]\n"
	    "         [--postcopy [--postcopy-after N|TIME] [--recover-wait TIME]]\n"
	    "\n"
	    "Live-migrate the QEMU whose QMP socket is PATH to the destination relay\n"
	    "(`rdmig qemu dst --qmp ...`) at ADDR. The destination QEMU is driven by that\n"
	    "relay; capabilities and parameters are set the same on both sides. A source\n"
	    "relay runs inside this command on a private unix socket (or --socket).\n"
	    "Succeeds when the destination QEMU runs; on failure, timeout or Ctrl-C the\n"
	    "migration is cancelled and the source VM keeps running. When that comes after\n"
	    "the source QEMU completed, the source is resumed only once the destination\n"
	    "relay has made sure its QEMU does not run the guest; when it cannot be asked,\n"
	    "both are left stopped and the exit status is 3 (outcome unknown).\n"
	    "\n"
	    "  -s, --src-qmp PATH         source QEMU's QMP socket\n"
	    "  -d, --dst ADDR[:PORT]      destination relay (default port %d)\n"
	    "  -m, --multifd N            multifd with N channels (1..%d), one stream each\n"
	    "  -a, --auto-converge        throttle the guest when rounds do not converge\n"
	    "  -D, --downtime-limit TIME  e.g. 300ms, 2s (bare number: ms)\n"
	    "  -B, --max-bandwidth RATE   e.g. 100M (MiB/s), 10Gbit; 0 = unlimited\n"
	    "  -b, --backend B            rdma or tcp (default tcp)\n"
	    "  -S, --socket PATH          unix socket of the in-process source relay\n"
	    "  -t, --timeout TIME         give up (and cancel) after TIME (default 10m)\n"
	    "  -j, --json                 one JSON summary object on stdout "
	    "(docs/json.md)\n" KEY_HELP SOCKET_HELP
	    "      --postcopy             enable post-copy (postcopy-ram, and postcopy-preempt\n"
	    "                             where both QEMUs have it) and switch to it when\n"
	    "                             pre-copy stops converging; the guest then runs on\n"
	    "                             the destination and cannot go back: if a QEMU dies\n"
	    "                             in post-copy the guest is lost (docs/reliability.md)\n"
	    "      --postcopy-after N|TIME switch after N passes (a number) or TIME of\n"
	    "                             pre-copy (e.g. 5s) instead\n"
	    "      --recover-wait TIME    a relay stream broken in post-copy: try that long\n"
	    "                             to recover through the destination relay (default\n"
	    "                             5m); then both QEMUs are left paused (exit 3)\n"
	    "\n"
	    "Exit status: 0 the destination runs the guest, 1 failed (the source runs it;\n"
	    "once post-copy started: the guest is lost, as the message says),\n"
	    "2 bad usage, 3 outcome unknown or post-copy left paused (the message says what\n"
	    "to check and do).\n",
	    RDMIG_DEFAULT_PORT, RDMIG_MAX_CHANNELS);
}

/* The summary object (docs/json.md); QEMU's own words for its states. */
static void print_json(const struct rdmig_qemu_migrate_opts *o,
		       const struct rdmig_qemu_migrate_result *r, int rc, const char *msg)
{
	json_t *j = cli_json_summary("qemu migrate", rc, msg);

	if (!j)
		return;
	if (r->outcome_unknown)
		cli_jset(j, "status", json_string("unknown"));
	cli_jset(j, "backend", json_string(rdmig_backend_name(o->xport.backend)));
	/* QEMU's migration channels: the multifd ones, or its one main channel. */
	cli_jset(j, "channels", json_integer(o->multifd ? o->multifd : 1));
	cli_jset(j, "multifd", json_boolean(o->multifd > 0));
	cli_jset(j, "total_ms", json_integer(r->total_ms));
	cli_jset(j, "downtime_ms", json_integer(r->downtime_ms));
	cli_jset(j, "setup_ms", json_integer(r->setup_ms));
	cli_jset(j, "bytes", cli_juint(r->transferred));
	cli_jset(j, "relayed_bytes", cli_juint(r->relayed));
	/* QEMU reports Mbit/s (10^6). */
	cli_jset(j, "avg_gbps", cli_jreal(r->mbps / 1000, 4));
	cli_jset(j, "streams", json_integer(r->streams));
	cli_jset(j, "relay_connections", json_integer(r->sets));
	cli_jset(j, "passes", json_integer(r->passes));
	cli_jset(j, "migration", cli_jstr(r->mig_status));
	cli_jset(j, "src_status", cli_jstr(r->src_status));
	cli_jset(j, "dst_status", cli_jstr(r->dst_status));
	cli_jset(j, "src_resumed", json_boolean(r->src_resumed));
	cli_jset(j, "qemu", cli_jstr(r->src_version));
	cli_jset(j, "postcopy", json_boolean(r->postcopy));
	cli_jset(j, "postcopy_preempt", json_boolean(r->postcopy && r->preempt));
	cli_jset(j, "postcopy_start_ms",
		 r->postcopy ? json_integer(r->postcopy_start_ms) : json_null());
	cli_jset(j, "postcopy_requests", cli_juint(r->postcopy_requests));
	cli_jset(j, "recoveries", json_integer(r->recoveries));
	cli_jset(j, "postcopy_paused", json_boolean(r->postcopy_paused));
	cli_jset(j, "guest_lost", json_boolean(r->guest_lost));
	cli_json_print(j, false);
}

/* --postcopy-after: a bare number counts passes, anything else is a duration. */
static int parse_postcopy_after(const char *s, struct rdmig_qemu_migrate_opts *o)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v;

	if (*s && strspn(s, "0123456789") == strlen(s)) {
		if (rdmig_parse_uint(s, 1, 1000, &v, &err))
			return cli_usage_error("qemu migrate", "--postcopy-after N: %s", err.msg);
		o->postcopy_after_passes = (unsigned)v;
		return 0;
	}
	if (rdmig_parse_duration(s, 1000000000ull, &v, &err))
		return cli_usage_error("qemu migrate",
				       "--postcopy-after expects a number of passes or a time "
				       "such as 5s: %s",
				       err.msg);
	if (v < 1000000ull || v > 86400000000000ull)
		return cli_usage_error("qemu migrate", "--postcopy-after expects 1ms..24h");
	o->postcopy_after_ms = v / 1000000;
	return 0;
}

static int qemu_migrate(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"src-qmp", required_argument, NULL, 's'},
	    {"dst", required_argument, NULL, 'd'},
	    {"multifd", required_argument, NULL, 'm'},
	    {"auto-converge", no_argument, NULL, 'a'},
	    {"downtime-limit", required_argument, NULL, 'D'},
	    {"max-bandwidth", required_argument, NULL, 'B'},
	    {"backend", required_argument, NULL, 'b'},
	    {"socket", required_argument, NULL, 'S'},
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"key-file", required_argument, NULL, OPT_KEY_FILE},
	    {"tls", no_argument, NULL, OPT_TLS},
	    {"socket-mode", required_argument, NULL, OPT_SOCKET_MODE},
	    {"socket-group", required_argument, NULL, OPT_SOCKET_GROUP},
	    {"postcopy", no_argument, NULL, OPT_POSTCOPY},
	    {"postcopy-after", required_argument, NULL, OPT_POSTCOPY_AFTER},
	    {"recover-wait", required_argument, NULL, OPT_RECOVER_WAIT},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	struct rdmig_qemu_migrate_opts o = {
	    .xport = {.backend = RDMIG_BACKEND_TCP},
	    .downtime_ms = -1,
	    .max_bandwidth = -1,
	    .timeout_ms = 600000,
	    .recover_wait_ms = 300000,
	};
	struct rdmig_qemu_migrate_result res = {0};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct qemu_sec sec = {0};
	const char *dst = NULL;
	bool json = false, pc_after = false;
	char host[256];
	uint64_t v;
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "s:d:m:aD:B:b:S:t:jh", lo, NULL)) != -1) {
		rdmig_err_clear(&err);
		switch (opt) {
		case 's':
			o.src_qmp = optarg;
			break;
		case 'd':
			dst = optarg;
			break;
		case 'm':
			if (rdmig_parse_uint(optarg, 1, RDMIG_MAX_CHANNELS, &v, &err))
				return cli_usage_error("qemu migrate", "--multifd: %s", err.msg);
			o.multifd = (unsigned)v;
			break;
		case 'a':
			o.auto_converge = true;
			break;
		case 'D':
			if (rdmig_parse_duration(optarg, 1000000, &v, &err))
				return cli_usage_error("qemu migrate", "--downtime-limit: %s",
						       err.msg);
			o.downtime_ms = (int64_t)(v / 1000000);
			if (o.downtime_ms < 1 || o.downtime_ms > 2000000)
				return cli_usage_error("qemu migrate",
						       "--downtime-limit expects 1ms..2000s");
			break;
		case 'B':
			if (rdmig_parse_rate(optarg, &v, &err))
				return cli_usage_error("qemu migrate", "--max-bandwidth: %s",
						       err.msg);
			if (v > INT64_MAX)
				return cli_usage_error("qemu migrate", "--max-bandwidth too large");
			o.max_bandwidth = (int64_t)v;
			break;
		case 'b':
			if (rdmig_backend_parse(optarg, &o.xport.backend, &err))
				return cli_usage_error("qemu migrate", "%s", err.msg);
			break;
		case 'S':
			o.relay_socket = optarg;
			break;
		case 't':
			if (rdmig_parse_duration(optarg, 1000000000ull, &v, &err))
				return cli_usage_error("qemu migrate", "--timeout: %s", err.msg);
			o.timeout_ms = v / 1000000;
			break;
		case 'j':
			json = true;
			break;
		case OPT_POSTCOPY:
			o.postcopy = true;
			break;
		case OPT_POSTCOPY_AFTER:
			if (parse_postcopy_after(optarg, &o))
				return RDMIG_EXIT_USAGE;
			pc_after = true;
			break;
		case OPT_RECOVER_WAIT:
			if (rdmig_parse_duration(optarg, 1000000000ull, &v, &err))
				return cli_usage_error("qemu migrate", "--recover-wait: %s",
						       err.msg);
			if (v < 1000000000ull || v > 86400000000000ull)
				return cli_usage_error("qemu migrate",
						       "--recover-wait expects 1s..24h");
			o.recover_wait_ms = v / 1000000;
			break;
		case 'h':
			usage_migrate(stdout);
			return RDMIG_EXIT_OK;
		default:
			rc = sec_opt("qemu migrate", opt, optarg, &sec, &o.xport);
			if (rc == 1)
				return cli_usage_error("qemu migrate", "unknown option");
			if (rc)
				return rc;
		}
	}
	if (optind < argc)
		return cli_usage_error("qemu migrate", "unexpected argument '%s'", argv[optind]);
	if (!o.src_qmp || !dst)
		return cli_usage_error("qemu migrate", "--src-qmp and --dst are required");
	if (pc_after && !o.postcopy)
		return cli_usage_error("qemu migrate", "--postcopy-after needs --postcopy");
	if (parse_peer("qemu migrate", dst, host, sizeof(host), &o.xport.port))
		return RDMIG_EXIT_USAGE;
	o.xport.host = host;
	o.cancel = &cli_cancel;
	o.progress = true;
	o.socket_mode = sec.sock_mode;
	o.socket_set_group = sec.set_group;
	o.socket_gid = sec.gid;
	rc = sec_setup("qemu migrate", &sec, &o.xport);
	if (rc)
		return rc;
	cli_install_signals();

	rc = rdmig_qemu_migrate(&o, &res, &err);
	rdmig_auth_key_wipe(&sec.key);
	if (rc)
		fprintf(stderr, "rdmig qemu migrate: %s\n", rdmig_err_str(&err));
	else
		fprintf(stderr,
			"rdmig qemu migrate: completed in %" PRId64 " ms (downtime %" PRId64
			" ms), %.1f MiB sent in %u pass(es) over %u %s stream(s) on %u "
			"connection(s)%s; destination %s\n",
			res.total_ms, res.downtime_ms, res.transferred / 1048576.0, res.passes,
			res.streams, rdmig_backend_name(o.xport.backend), res.sets,
			res.postcopy ? (res.recoveries ? ", through post-copy (recovered)"
						       : ", through post-copy")
				     : "",
			res.dst_status);
	/* Last, so that a log of both streams ends with the object. */
	if (json)
		print_json(&o, &res, rc, err.msg);
	if (res.outcome_unknown || res.postcopy_paused)
		return QEMU_EXIT_UNKNOWN;
	return rc ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: rdmig qemu src|dst|migrate [OPTIONS]\n"
		   "\n"
		   "Use rdmig as QEMU's migration transport (stock QEMU, unix sockets):\n"
		   "  src       source relay: a unix socket for `migrate unix:PATH`\n"
		   "  dst       destination relay: into QEMU's -incoming unix:PATH\n"
		   "  migrate   run a migration end to end (source host)\n"
		   "\n"
		   "Run 'rdmig qemu SUBCOMMAND --help' for its options.\n");
}

int cmd_qemu(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return RDMIG_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return RDMIG_EXIT_OK;
	}
	if (!strcmp(argv[1], "src"))
		return qemu_src(argc - 1, argv + 1);
	if (!strcmp(argv[1], "dst"))
		return qemu_dst(argc - 1, argv + 1);
	if (!strcmp(argv[1], "migrate"))
		return qemu_migrate(argc - 1, argv + 1);
	return cli_usage_error("qemu", "unknown subcommand '%s' (src, dst or migrate)", argv[1]);
}
