/* SPDX-License-Identifier: MIT */
/*
 * rdmig bw: options, the message-size sweep and the report. perftest's
 * ib_write_bw flags keep perftest's meaning here (-d device, -s size,
 * -D duration, -q queue pairs, -a all sizes, -t tx depth, -p port,
 * --report_gbits); the measurement itself is tools/bw_run.c.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rdmig/auth.h"
#include "bw.h"
#include "topo.h"
#include "units.h"

#define CMD "bw"
/* -a: perftest's range, 2 B to 8 MiB; from 4 KiB on tcp and software RDMA. */
#define SWEEP_MIN_LOG	   1
#define SWEEP_MIN_LOG_SOFT 12
#define SWEEP_MAX_LOG	   23
#define SWEEP_DURATION	   1.0 /* seconds per size under -a without -D */

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: rdmig bw --listen [ADDR][:PORT] [--backend rdma|tcp|auto] [--once]\n"
	    "       rdmig bw ADDR[:PORT] [-d DEV] [-s SIZE | -a] [-D SECONDS] [-q QPS]\n"
	    "                [-t DEPTH] [-p PORT] [--report_gbits] [--verify] [--json] ...\n"
	    "\n"
	    "Measure one-sided write bandwidth between registered memory regions, like\n"
	    "perftest's ib_write_bw, over rdmig's rdma or tcp backend. The flags perftest\n"
	    "has mean what they mean there.\n"
	    "\n"
	    "  -l, --listen [ADDR][:PORT]  serve (default: all addresses, port %d)\n"
	    "      --once                  with --listen: exit after one client run (a\n"
	    "                              whole -a sweep counts as one)\n"
	    "      --backend B             rdma, tcp or auto (default: rdma if this host has\n"
	    "                              an RDMA device, else tcp, as listen and migrate;\n"
	    "                              tcp with --tls or --compress; rdma with -d)\n"
	    "  -d, --ib-dev DEV            RDMA device; it must exist here. rdma_cm takes the\n"
	    "                              device the address goes through, so give an\n"
	    "                              address of DEV (refused with tcp)\n"
	    "  -s, --size SIZE             message size, units k/M/G (default: 64K)\n"
	    "  -a, --all                   every power of two from 2 B to 8 MiB (perftest's\n"
	    "                              range), from 4 KiB on tcp and on software RDMA\n"
	    "                              (rxe), where smaller messages measure only the\n"
	    "                              per-message CPU cost; %.0f s per size unless -D\n"
	    "  -D, --duration SECONDS      how long to write each size (default: 5)\n"
	    "  -q, --qp, --channels N      queue pairs (rdma) or sockets (tcp), 1..%d\n"
	    "                              (default: 1)\n"
	    "  -t, --tx-depth, --depth N   writes in flight per channel (default: 128)\n"
	    "  -p, --port PORT             port to listen on or connect to (default: %d)\n"
	    "      --report_gbits          bandwidth in Gb/s instead of MiB/s\n"
	    "  -c, --connection RC         perftest's connection type: only RC\n"
	    "      --verify                fill with a seeded pattern, check it byte for byte\n"
	    "      --seed N                pattern seed for --verify (default: 1)\n"
	    "      --json                  one JSON summary object on stdout (docs/json.md)\n"
	    "      --compress LEVEL        tcp client: zstd level 1..19 (0 off, default); every\n"
	    "                              message carries the same seeded pseudo-random\n"
	    "                              buffer, which does not shrink: this measures the cost\n"
	    "                              of trying, frames go out plain\n"
	    "      --key-file PATH         pre-shared key (mode 0600, >= 16 bytes), both sides;\n"
	    "                              default $RDMIG_KEY_FILE; without one: no "
	    "authentication\n"
	    "      --tls                   tcp: encrypt every socket with TLS 1.3 keyed by\n"
	    "                              --key-file (needed); both sides must agree\n"
	    "  -h, --help                  this help\n"
	    "\n"
	    "The report gives, per message size, the iterations (messages written), peak\n"
	    "bandwidth (fullest 100 ms of writes posted, after the first 100 ms, which fill\n"
	    "the send queues; '-' for shorter runs), average bandwidth (first write to the\n"
	    "last one acknowledged) and message rate.\n"
	    "Exit status: 0 success, 1 failure (including a --verify mismatch), 2 bad usage.\n",
	    RDMIG_DEFAULT_PORT, SWEEP_DURATION, RDMIG_MAX_CHANNELS, RDMIG_DEFAULT_PORT);
}

enum {
	OPT_ONCE = 1000,
	OPT_BACKEND,
	OPT_GBITS,
	OPT_VERIFY,
	OPT_SEED,
	OPT_JSON,
	OPT_KEY_FILE,
	OPT_COMPRESS,
	OPT_TLS,
};

static const struct option bw_opts_table[] = {
    {"listen", optional_argument, NULL, 'l'},
    {"once", no_argument, NULL, OPT_ONCE},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"ib-dev", required_argument, NULL, 'd'},
    {"size", required_argument, NULL, 's'},
    {"all", no_argument, NULL, 'a'},
    {"duration", required_argument, NULL, 'D'},
    {"qp", required_argument, NULL, 'q'},
    {"channels", required_argument, NULL, 'q'},
    {"tx-depth", required_argument, NULL, 't'},
    {"depth", required_argument, NULL, 't'},
    {"port", required_argument, NULL, 'p'},
    {"connection", required_argument, NULL, 'c'},
    {"bidirectional", no_argument, NULL, 'b'},
    {"report_gbits", no_argument, NULL, OPT_GBITS},
    {"verify", no_argument, NULL, OPT_VERIFY},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", no_argument, NULL, OPT_JSON},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"compress", required_argument, NULL, OPT_COMPRESS},
    {"tls", no_argument, NULL, OPT_TLS},
    {"help", no_argument, NULL, 'h'},
    {0},
};

/* What was given explicitly, to check against each other after parsing. */
struct given {
	const char *listen_arg;
	long port; /* -p, -1 none */
	bool size, duration;
};

/* perftest's flags that mean something else here, or nothing. */
static int perftest_only(int opt, const char *arg)
{
	if (opt == 'b')
		return cli_usage_error(CMD, "-b is perftest's bidirectional test, which rdmig bw "
					    "does not do (it writes one way); the backend is "
					    "--backend");
	if (strcmp(arg, "RC"))
		return cli_usage_error(CMD,
				       "-c is perftest's connection type and rdmig uses RC only, "
				       "got '%s'; channels are -q N (or --channels N)",
				       arg);
	return 0;
}

static int size_opt(struct bw_opts *o, int opt, const char *arg, struct rdmig_err *err)
{
	uint64_t v, ns;

	switch (opt) {
	case 's':
		if (rdmig_parse_size(arg, &o->size, err))
			return cli_usage_error(CMD, "--size: %s", err->msg);
		if (o->size < 1 || o->size > BW_MAX_SIZE)
			return cli_usage_error(CMD, "--size expects 1 byte to 1G, got %s", arg);
		return 0;
	case 'q':
		if (rdmig_parse_uint(arg, 1, RDMIG_MAX_CHANNELS, &v, err))
			return cli_usage_error(CMD, "--channels: %s", err->msg);
		o->channels = (unsigned)v;
		return 0;
	case 't':
		if (rdmig_parse_uint(arg, 1, 8192, &v, err))
			return cli_usage_error(CMD, "--depth: %s", err->msg);
		o->depth = (unsigned)v;
		return 0;
	case 'D':
		if (rdmig_parse_duration(arg, 1000000000ull, &ns, err) || !ns ||
		    ns > 3600ull * 1000000000ull)
			return cli_usage_error(
			    CMD, "--duration expects 0 < SECONDS <= 3600, got '%s'", arg);
		o->duration = (double)ns / 1e9;
		return 0;
	case OPT_SEED:
		if (rdmig_parse_uint(arg, 0, UINT64_MAX, &o->seed, err))
			return cli_usage_error(CMD, "--seed: %s", err->msg);
		return 0;
	case OPT_COMPRESS:
		if (rdmig_parse_uint(arg, 0, 19, &v, err))
			return cli_usage_error(
			    CMD,
			    "--compress expects a zstd level between 0 (off) and "
			    "19: %s",
			    err->msg);
		o->compress = (int)v;
		return 0;
	}
	return -1;
}

/* -1 when `opt` is not one of these, else 0 or RDMIG_EXIT_USAGE. */
static int mode_opt(struct bw_opts *o, struct given *g, int opt, char *arg, int argc, char **argv)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t v;

	switch (opt) {
	case 'l':
		o->listen = true;
		/* Accept both --listen=ADDR and --listen ADDR. */
		if (arg)
			g->listen_arg = arg;
		else if (optind < argc && argv[optind][0] != '-')
			g->listen_arg = argv[optind++];
		return 0;
	case OPT_ONCE:
		o->once = true;
		return 0;
	case OPT_BACKEND:
		if (cli_parse_backend(arg, &o->cfg.backend, &o->backend_auto, &err))
			return cli_usage_error(CMD, "%s", err.msg);
		return 0;
	case 'd':
		o->device = arg;
		return 0;
	case 'a':
		o->all = true;
		return 0;
	case 'p':
		if (rdmig_parse_uint(arg, 1, 65535, &v, &err))
			return cli_usage_error(CMD, "--port: %s", err.msg);
		g->port = (long)v;
		return 0;
	case 'b':
	case 'c':
		return perftest_only(opt, arg);
	case OPT_GBITS:
		o->report_gbits = true;
		return 0;
	case OPT_VERIFY:
		o->verify = true;
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_KEY_FILE:
		o->key_file = arg;
		return 0;
	case OPT_TLS:
		o->cfg.tls = true;
		return 0;
	}
	return -1;
}

/* Whether "[ADDR][:PORT]" names a port: the parse leaves two different defaults alone. */
static bool names_port(const char *addr)
{
	unsigned short a = 1, b = 2;
	char host[256];

	cli_parse_hostport(addr, host, sizeof(host), &a);
	cli_parse_hostport(addr, host, sizeof(host), &b);
	return a != 1 || b != 2;
}

/* Where to listen or connect: ADDR[:PORT] and -p agreeing. */
static int address(struct bw_opts *o, const struct given *g, int argc, char **argv)
{
	const char *addr = o->listen ? g->listen_arg : argv[optind];
	unsigned short port = RDMIG_DEFAULT_PORT;

	if (o->listen && optind < argc)
		return cli_usage_error(CMD, "unexpected argument '%s' with --listen", argv[optind]);
	if (!o->listen && optind != argc - 1)
		return cli_usage_error(CMD, optind >= argc ? "missing server ADDR[:PORT] "
							     "(or --listen)"
							   : "too many arguments");
	if (addr && cli_parse_hostport(addr, o->host, sizeof(o->host), &port))
		return cli_usage_error(CMD, "invalid %s address '%s'",
				       o->listen ? "listen" : "server", addr);
	if (g->port >= 0 && addr && names_port(addr) && port != g->port)
		return cli_usage_error(CMD, "-p %ld and port %u in '%s' disagree", g->port, port,
				       addr);
	if (g->port >= 0)
		port = (unsigned short)g->port;
	if (!o->listen && (!o->host[0] || !port))
		return cli_usage_error(CMD, "invalid server address '%s'", addr);
	o->port = port;
	return 0;
}

/* Whether `dev` is in the comma-separated list. */
static bool listed(const char *names, const char *dev)
{
	size_t len = strlen(dev);

	for (const char *p = names; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, dev, len) && (p[len] == ',' || !p[len]))
			return true;
	return false;
}

/* The backend (auto resolved) and the options that depend on it. */
static int backend(struct bw_opts *o)
{
	char names[1024];
	bool tcp_only = o->cfg.tls || o->compress;

	if (o->backend_auto)
		o->cfg.backend = o->device  ? RDMIG_BACKEND_RDMA
				 : tcp_only ? RDMIG_BACKEND_TCP
					    : rdmig_backend_auto();
	if (o->device && o->cfg.backend == RDMIG_BACKEND_TCP)
		return cli_usage_error(CMD,
				       "-d %s names an RDMA device, and the tcp backend uses "
				       "none: drop -d, or use --backend rdma",
				       o->device);
	if (o->device && !listed((rdmig_rdma_devices(names, sizeof(names)), names), o->device))
		return cli_usage_error(CMD, "no RDMA device '%s' here (devices: %s)", o->device,
				       names[0] ? names : "none; rdmig doctor tells why");
	if (o->cfg.tls && o->cfg.backend != RDMIG_BACKEND_TCP)
		return cli_usage_error(CMD, "--tls works on the tcp backend only: rdmig does not "
					    "encrypt RoCE traffic; see docs/security.md");
	if (o->compress && (o->listen || o->cfg.backend != RDMIG_BACKEND_TCP))
		return cli_usage_error(CMD, o->listen
						? "--compress is a client option (the tcp "
						  "server always accepts compressed writes)"
						: "--compress works on the tcp backend only: "
						  "rdma writes have no CPU at the destination "
						  "to decompress them");
	return 0;
}

/* Parse argv into o: -1 to go on, else the exit status. */
static int parse_opts(int argc, char **argv, struct bw_opts *o)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct given g = {.port = -1};
	int opt, ret;

	memset(o, 0, sizeof(*o));
	o->backend_auto = true;
	o->size = 64 * 1024;
	o->channels = 1;
	o->depth = 128;
	o->duration = 5;
	o->seed = 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "l::d:s:aD:q:t:p:c:bh", bw_opts_table, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			return RDMIG_EXIT_OK;
		}
		g.size |= opt == 's';
		g.duration |= opt == 'D';
		ret = mode_opt(o, &g, opt, optarg, argc, argv);
		if (ret == -1)
			ret = size_opt(o, opt, optarg, &err);
		if (ret == -1)
			return cli_usage_error(CMD, "unknown option");
		if (ret)
			return ret;
	}
	if (o->all && g.size)
		return cli_usage_error(CMD, "-a runs every size: drop -s");
	if (o->all && !g.duration)
		o->duration = SWEEP_DURATION;
	if (!o->all && o->size * o->channels > BW_MAX_TOTAL)
		return cli_usage_error(CMD, "--size x --channels must stay within 4G");
	ret = address(o, &g, argc, argv);
	if (!ret)
		ret = backend(o);
	if (ret)
		return ret;
	o->cfg.host = o->host[0] ? o->host : NULL;
	o->cfg.port = o->port;
	o->cfg.depth = o->depth;
	return -1;
}

/* ---- report ------------------------------------------------------------ */

/* The device the numbers are for: -d, else the host's only one; NULL unknown or tcp. */
static const char *report_device(const struct bw_opts *o, char *buf, size_t len)
{
	if (o->cfg.backend != RDMIG_BACKEND_RDMA)
		return NULL;
	if (o->device)
		return o->device;
	return rdmig_rdma_devices(buf, len) == 1 ? buf : NULL;
}

/* Sizes to measure: one, or the -a sweep. */
static unsigned sizes_to_run(const struct bw_opts *o, const char *dev, uint64_t *sizes)
{
	bool soft = o->cfg.backend == RDMIG_BACKEND_TCP || (dev && rdmig_topo_ibdev_software(dev));
	unsigned n = 0;

	if (!o->all) {
		sizes[0] = o->size;
		return 1;
	}
	for (unsigned k = soft ? SWEEP_MIN_LOG_SOFT : SWEEP_MIN_LOG; k <= SWEEP_MAX_LOG; k++)
		if ((1ull << k) * o->channels <= BW_MAX_TOTAL)
			sizes[n++] = 1ull << k;
	return n;
}

/* Totals over every size measured, as one result. */
static struct bw_result total_of(const struct bw_result *r, unsigned n)
{
	struct bw_result t = {.size = n == 1 ? r[0].size : 0, .peak_bps = -1};

	for (unsigned i = 0; i < n; i++) {
		t.msgs += r[i].msgs;
		t.secs += r[i].secs;
		t.src_cpu_s += r[i].src_cpu_s;
		t.dst_cpu_s += r[i].dst_cpu_s;
		t.bytes_on_wire += r[i].bytes_on_wire;
		if (r[i].peak_bps > t.peak_bps)
			t.peak_bps = r[i].peak_bps;
	}
	return t;
}

static uint64_t bytes_of(const struct bw_result *r, const struct bw_result *all, unsigned n)
{
	uint64_t b = 0;

	if (r->size)
		return r->msgs * r->size;
	for (unsigned i = 0; i < n; i++)
		b += all[i].msgs * all[i].size;
	return b;
}

/* The figures of one result (or of the totals) into j. */
static void figures_json(json_t *j, const struct bw_result *r, uint64_t bytes)
{
	double gib = (double)bytes / (1024.0 * 1024 * 1024);
	double secs = r->secs > 0 ? r->secs : 1e-9;

	cli_jset(j, "msg_bytes", r->size ? cli_juint(r->size) : json_null());
	cli_jset(j, "iterations", cli_juint(r->msgs));
	cli_jset(j, "bytes", cli_juint(bytes));
	cli_jset(j, "total_ms", cli_jreal(r->secs * 1e3, 1));
	cli_jset(j, "avg_gbps", cli_jreal((double)bytes * 8 / secs / 1e9, 4));
	cli_jset(j, "peak_gbps",
		 r->peak_bps >= 0 ? cli_jreal(r->peak_bps * 8 / 1e9, 4) : json_null());
	cli_jset(j, "avg_mib_s", cli_jreal((double)bytes / secs / 1048576.0, 2));
	cli_jset(j, "peak_mib_s",
		 r->peak_bps >= 0 ? cli_jreal(r->peak_bps / 1048576.0, 2) : json_null());
	cli_jset(j, "msg_rate", cli_jreal((double)r->msgs / secs, 1));
	cli_jset(j, "src_cpu_s_per_gib", cli_jreal(gib > 0 ? r->src_cpu_s / gib : 0, 4));
	cli_jset(j, "dst_cpu_s_per_gib", cli_jreal(gib > 0 ? r->dst_cpu_s / gib : 0, 4));
	cli_jset(j, "bytes_on_wire", cli_juint(r->bytes_on_wire));
}

static const char *verify_name(const struct bw_opts *o, const struct bw_result *r, unsigned n)
{
	if (!o->verify)
		return "off";
	for (unsigned i = 0; i < n; i++)
		if (r[i].verify != 1)
			return "mismatch";
	return n ? "ok" : "off";
}

static void report_json(const struct bw_opts *o, const char *dev, const struct bw_result *r,
			unsigned n, int ret, const char *errmsg)
{
	json_t *j = cli_json_summary(CMD, ret, errmsg), *arr = json_array();
	struct bw_result t = total_of(r, n);

	if (!j || !arr) {
		json_decref(j);
		json_decref(arr);
		return;
	}
	cli_jset(j, "side", json_string("client"));
	cli_jset(j, "backend", json_string(rdmig_backend_name(o->cfg.backend)));
	cli_jset(j, "device", cli_jstr(dev));
	cli_jset(j, "channels", json_integer(o->channels));
	cli_jset(j, "depth", json_integer(o->depth));
	cli_jset(j, "verify", json_string(verify_name(o, r, n)));
	cli_jset(j, "compress_level", json_integer(o->compress));
	figures_json(j, &t, bytes_of(&t, r, n));
	for (unsigned i = 0; i < n; i++) {
		json_t *one = json_object();

		if (one)
			figures_json(one, &r[i], bytes_of(&r[i], r, n));
		json_array_append_new(arr, one);
	}
	cli_jset(j, "results", arr);
	cli_json_print(j, false);
}

#define ROW_FMT " %-10s %-14s %-18s %-19s %s\n"

static void table_header(const struct bw_opts *o, const char *dev)
{
	const char *unit = o->report_gbits ? "Gb/s" : "MiB/s";
	char peak[32], avg[32];

	printf("rdmig bw: %s backend%s%s%s, %u channel(s), depth %u, %.3g s per size\n",
	       rdmig_backend_name(o->cfg.backend), dev ? " (" : "", dev ? dev : "", dev ? ")" : "",
	       o->channels, o->depth, o->duration);
	snprintf(peak, sizeof(peak), "BW peak[%s]", unit);
	snprintf(avg, sizeof(avg), "BW average[%s]", unit);
	printf(ROW_FMT, "#bytes", "#iterations", peak, avg, "MsgRate[Mpps]");
	fflush(stdout);
}

static double in_unit(const struct bw_opts *o, double bytes_per_s)
{
	return o->report_gbits ? bytes_per_s * 8 / 1e9 : bytes_per_s / 1048576.0;
}

static void table_row(const struct bw_opts *o, const struct bw_result *r)
{
	double secs = r->secs > 0 ? r->secs : 1e-9;
	char c[5][32];

	snprintf(c[0], sizeof(c[0]), "%" PRIu64, r->size);
	snprintf(c[1], sizeof(c[1]), "%" PRIu64, r->msgs);
	if (r->peak_bps >= 0)
		snprintf(c[2], sizeof(c[2]), "%.2f", in_unit(o, r->peak_bps));
	else
		snprintf(c[2], sizeof(c[2]), "-");
	snprintf(c[3], sizeof(c[3]), "%.2f", in_unit(o, (double)(r->msgs * r->size) / secs));
	snprintf(c[4], sizeof(c[4]), "%.6f", (double)r->msgs / secs / 1e6);
	printf(ROW_FMT, c[0], c[1], c[2], c[3], c[4]);
	fflush(stdout);
}

static void report_text(const struct bw_opts *o, const struct bw_result *r, unsigned n)
{
	struct bw_result t = total_of(r, n);
	uint64_t bytes = bytes_of(&t, r, n);
	double secs = t.secs > 0 ? t.secs : 1e-9, gib = (double)bytes / (1024.0 * 1024 * 1024);
	char by[32];

	if (!n)
		return;
	printf("  bandwidth      average %.3f Gb/s (%.1f MiB/s)", (double)bytes * 8 / secs / 1e9,
	       (double)bytes / secs / 1048576.0);
	if (t.peak_bps >= 0)
		printf(", peak %.3f Gb/s", t.peak_bps * 8 / 1e9);
	printf("%s\n", n > 1 ? " (all sizes)" : "");
	printf("  bytes moved    %s in %.3f s\n", rdmig_fmt_size(bytes, by, sizeof(by)), t.secs);
	printf("  cpu per GiB    source %.3f s, destination %.3f s\n",
	       gib > 0 ? t.src_cpu_s / gib : 0, gib > 0 ? t.dst_cpu_s / gib : 0);
	if (o->verify)
		printf("  verify         %s\n",
		       !strcmp(verify_name(o, r, n), "ok") ? "ok" : "MISMATCH");
	if (o->compress)
		printf("  compression    zstd level %d, %s on the wire (ratio %.2f)\n", o->compress,
		       rdmig_fmt_size(t.bytes_on_wire, by, sizeof(by)),
		       t.bytes_on_wire ? (double)bytes / (double)t.bytes_on_wire : 0);
}

/* ---- command ----------------------------------------------------------- */

static int run_client(const struct bw_opts *o)
{
	uint64_t sizes[SWEEP_MAX_LOG + 1];
	struct bw_result r[SWEEP_MAX_LOG + 1];
	struct rdmig_err err = RDMIG_ERR_INIT;
	char names[256];
	const char *dev = report_device(o, names, sizeof(names));
	unsigned n = sizes_to_run(o, dev, sizes), done = 0;
	int ret = 0;

	if (!o->json)
		table_header(o, dev);
	for (unsigned i = 0; i < n && !ret; i++) {
		ret = bw_measure(o, sizes[i], i + 1 < n, &r[i], &err);
		/* A verify mismatch still measured the size: report it. */
		if (!ret || r[i].verify == 2)
			done++;
		if (!o->json && done > i)
			table_row(o, &r[i]);
	}
	if (ret)
		fprintf(stderr, "rdmig bw: %s\n", rdmig_err_str(&err));
	/* The summary last, so that a log of both streams ends with it. */
	if (o->json)
		report_json(o, dev, r, done, ret, ret ? rdmig_err_str(&err) : NULL);
	else
		report_text(o, r, done);
	return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}

int cmd_bw(int argc, char **argv)
{
	static struct rdmig_auth_key key;
	struct bw_opts o;
	int ret;

	ret = parse_opts(argc, argv, &o);
	if (ret >= 0)
		return ret;
	ret = cli_key_setup(CMD, o.key_file, &o.cfg, &key);
	if (ret)
		return ret;
	signal(SIGPIPE, SIG_IGN);
	ret = o.listen ? bw_serve(&o) : run_client(&o);
	rdmig_auth_key_wipe(&key);
	return ret;
}
