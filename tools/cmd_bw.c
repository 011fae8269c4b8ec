/* SPDX-License-Identifier: MIT */
/*
 * rdmig bw: one-sided write bandwidth between registered regions, in the
 * spirit of perftest's ib_write_bw, over either backend.
 *
 * The server registers channels * size bytes for remote write and exposes
 * them; each client channel thread writes its `size`-byte slot over and over
 * for the duration, keeping up to `depth` writes in flight, then fences. The
 * clock stops when every fence has been acknowledged, so the figure counts
 * only data that landed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "auth.h"
#include "cli.h"
#include "log.h"
#include "rdmig/transport.h"
#include "units.h"
#include "bytes.h"

/* Application control messages of the bw protocol. */
enum {
	BW_MSG_PARAMS = 0x100, /* client -> server: size, channels, verify, seed */
	BW_MSG_DONE = 0x101,   /* client -> server: all channels fenced */
	BW_MSG_RESULT = 0x102, /* server -> client: cpu time, verify result */
};

#define BW_PARAMS_LEN 32
#define BW_RESULT_LEN 24
#define BW_MAX_TOTAL  (4ull << 30)
#define BW_TIMEOUT_MS 120000

struct bw_params {
	uint64_t size;
	uint32_t channels;
	uint32_t verify;
	uint64_t seed;
	uint64_t reserved;
};

struct bw_opts {
	bool listen;
	bool once;
	bool json;
	bool verify;
	enum rdmig_backend backend;
	char host[256];
	uint16_t port;
	uint64_t size;
	unsigned channels;
	unsigned depth;
	double duration;
	uint64_t seed;
	int compress;			  /* --compress: tcp zstd level, 0 off */
	const char *key_file;		  /* --key-file, else $RDMIG_KEY_FILE */
	const struct rdmig_auth_key *key; /* NULL: unauthenticated */
	bool tls;			  /* --tls: tcp over TLS, keyed by --key-file */
};

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* xorshift64*: the pattern both sides regenerate for --verify. */
static void fill_pattern(uint8_t *p, uint64_t len, uint64_t seed)
{
	uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ull;

	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		v = x * 0x2545f4914f6cdd1dull;
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

static void *map_region(uint64_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: rdmig bw --listen [ADDR][:PORT] [--backend rdma|tcp] [--once]\n"
	    "       rdmig bw ADDR[:PORT] [--backend rdma|tcp] [--size BYTES] [--channels N]\n"
	    "                [--depth N] [--duration SECONDS] [--verify] [--seed N] [--json]\n"
	    "                [--compress LEVEL] [--tls]\n"
	    "\n"
	    "Measure one-sided write bandwidth between registered memory regions, like\n"
	    "perftest's ib_write_bw, over rdmig's rdma or tcp backend.\n"
	    "\n"
	    "  -l, --listen [ADDR][:PORT]  serve (default: all addresses, port %d)\n"
	    "      --once                  with --listen: exit after one client\n"
	    "  -b, --backend rdma|tcp      transport backend (default: tcp)\n"
	    "  -s, --size BYTES            message size, units k/M/G (default: 64K)\n"
	    "  -c, --channels N            channels (queue pairs / sockets), 1..%d (default: 1)\n"
	    "  -d, --depth N               writes in flight per channel (default: 128)\n"
	    "  -D, --duration SECONDS      how long to write (default: 5)\n"
	    "      --verify                fill with a seeded pattern, check it byte for byte\n"
	    "      --seed N                pattern seed for --verify (default: 1)\n"
	    "      --json                  print one JSON object\n"
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
	    "Exit status: 0 success, 1 failure (including a --verify mismatch), 2 bad usage.\n",
	    RDMIG_DEFAULT_PORT, RDMIG_MAX_CHANNELS);
}

static int parse_opts(int argc, char **argv, struct bw_opts *o)
{
	static const struct option long_opts[] = {
	    {.name = "listen", .has_arg = optional_argument, .val = 'l'},
	    {.name = "once", .has_arg = no_argument, .val = 'o'},
	    {.name = "backend", .has_arg = required_argument, .val = 'b'},
	    {.name = "size", .has_arg = required_argument, .val = 's'},
	    {.name = "channels", .has_arg = required_argument, .val = 'c'},
	    {.name = "depth", .has_arg = required_argument, .val = 'd'},
	    {.name = "duration", .has_arg = required_argument, .val = 'D'},
	    {.name = "verify", .has_arg = no_argument, .val = 'v'},
	    {.name = "seed", .has_arg = required_argument, .val = 'S'},
	    {.name = "json", .has_arg = no_argument, .val = 'j'},
	    {.name = "key-file", .has_arg = required_argument, .val = 'K'},
	    {.name = "compress", .has_arg = required_argument, .val = 'Z'},
	    {.name = "tls", .has_arg = no_argument, .val = 'T'},
	    {.name = "help", .has_arg = no_argument, .val = 'h'},
	    {0},
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *listen_arg = NULL;
	uint64_t v;
	int opt;

	memset(o, 0, sizeof(*o));
	o->backend = RDMIG_BACKEND_TCP;
	o->port = RDMIG_DEFAULT_PORT;
	o->size = 64 * 1024;
	o->channels = 1;
	o->depth = 128;
	o->duration = 5;
	o->seed = 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "l::b:s:c:d:D:h", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			o->listen = true;
			/* Accept both --listen=ADDR and --listen ADDR. */
			if (optarg)
				listen_arg = optarg;
			else if (optind < argc && argv[optind][0] != '-')
				listen_arg = argv[optind++];
			break;
		case 'o':
			o->once = true;
			break;
		case 'b':
			if (rdmig_backend_parse(optarg, &o->backend, &err))
				return cli_usage_error("bw", "%s", err.msg);
			break;
		case 's':
			if (rdmig_parse_size(optarg, &o->size, &err))
				return cli_usage_error("bw", "--size: %s", err.msg);
			if (o->size < 1 || o->size > (1ull << 30))
				return cli_usage_error("bw", "--size expects 1 byte to 1G, got %s",
						       optarg);
			break;
		case 'c':
			if (rdmig_parse_uint(optarg, 1, RDMIG_MAX_CHANNELS, &v, &err))
				return cli_usage_error("bw", "--channels: %s", err.msg);
			o->channels = (unsigned)v;
			break;
		case 'd':
			if (rdmig_parse_uint(optarg, 1, 8192, &v, &err))
				return cli_usage_error("bw", "--depth: %s", err.msg);
			o->depth = (unsigned)v;
			break;
		case 'D': {
			uint64_t ns;

			if (rdmig_parse_duration(optarg, 1000000000ull, &ns, &err) || !ns ||
			    ns > 3600ull * 1000000000ull)
				return cli_usage_error(
				    "bw", "--duration expects 0 < SECONDS <= 3600, got '%s'",
				    optarg);
			o->duration = (double)ns / 1e9;
			break;
		}
		case 'v':
			o->verify = true;
			break;
		case 'S':
			if (rdmig_parse_uint(optarg, 0, UINT64_MAX, &o->seed, &err))
				return cli_usage_error("bw", "--seed: %s", err.msg);
			break;
		case 'j':
			o->json = true;
			break;
		case 'K':
			o->key_file = optarg;
			break;
		case 'T':
			o->tls = true;
			break;
		case 'Z':
			if (rdmig_parse_uint(optarg, 0, 19, &v, &err))
				return cli_usage_error("bw",
						       "--compress expects a zstd level between "
						       "0 (off) and 19: %s",
						       err.msg);
			o->compress = (int)v;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			return cli_usage_error("bw", "unknown option");
		}
	}
	if (o->listen) {
		if (optind < argc)
			return cli_usage_error("bw", "unexpected argument '%s' with --listen",
					       argv[optind]);
		if (listen_arg && cli_parse_hostport(listen_arg, o->host, sizeof(o->host),
						     (unsigned short *)&o->port))
			return cli_usage_error("bw", "invalid listen address '%s'", listen_arg);
	} else {
		if (optind != argc - 1)
			return cli_usage_error("bw", optind >= argc ? "missing server ADDR[:PORT] "
								      "(or --listen)"
								    : "too many arguments");
		if (cli_parse_hostport(argv[optind], o->host, sizeof(o->host),
				       (unsigned short *)&o->port) ||
		    !o->host[0] || !o->port)
			return cli_usage_error("bw", "invalid server address '%s'", argv[optind]);
		if (o->size * o->channels > BW_MAX_TOTAL)
			return cli_usage_error("bw", "--size x --channels must stay within 4G");
	}
	if (o->tls && o->backend != RDMIG_BACKEND_TCP)
		return cli_usage_error("bw", "--tls works on the tcp backend only: rdmig does not "
					     "encrypt RoCE traffic; see docs/security.md");
	if (o->compress && (o->listen || o->backend != RDMIG_BACKEND_TCP))
		return cli_usage_error("bw", o->listen
						 ? "--compress is a client option (the tcp "
						   "server always accepts compressed writes)"
						 : "--compress works on the tcp backend only: "
						   "rdma writes have no CPU at the destination "
						   "to decompress them");
	return 0;
}

/* ---- server ------------------------------------------------------------ */

struct fence_waiter {
	struct rdmig_conn *c;
	unsigned chan;
	struct rdmig_err err;
	int ret;
};

static void *fence_thread(void *arg)
{
	struct fence_waiter *w = arg;
	struct rdmig_fence f;

	w->ret = rdmig_wait_fence(w->c, w->chan, BW_TIMEOUT_MS * 10, &f, &w->err);
	if (w->ret)
		rdmig_conn_abort(w->c, w->ret, rdmig_err_str(&w->err));
	return NULL;
}

static int decode_params(const uint8_t *p, size_t len, struct bw_params *bp, struct rdmig_err *err)
{
	if (len != BW_PARAMS_LEN)
		return rdmig_seterr(err, -EPROTO, "bw PARAMS of %zu bytes, expected %d", len,
				    BW_PARAMS_LEN);
	bp->size = rdmig_get_be64(p);
	bp->channels = rdmig_get_be32(p + 8);
	bp->verify = rdmig_get_be32(p + 12);
	bp->seed = rdmig_get_be64(p + 16);
	if (!bp->size || bp->size > (1ull << 30))
		return rdmig_seterr(err, -EPROTO, "bw PARAMS: size %" PRIu64 " out of range",
				    bp->size);
	if (!bp->channels || bp->channels > RDMIG_MAX_CHANNELS)
		return rdmig_seterr(err, -EPROTO, "bw PARAMS: %u channels out of range",
				    bp->channels);
	if (bp->size * bp->channels > BW_MAX_TOTAL)
		return rdmig_seterr(err, -EPROTO,
				    "bw PARAMS: %" PRIu64 " bytes in all exceeds 4 GiB",
				    bp->size * bp->channels);
	return 0;
}

static int serve_one(struct rdmig_conn *c, struct rdmig_err *err)
{
	struct fence_waiter w[RDMIG_MAX_CHANNELS];
	pthread_t th[RDMIG_MAX_CHANNELS];
	uint8_t buf[64], res[BW_RESULT_LEN];
	struct bw_params bp = {0};
	uint8_t *region = NULL, *expect = NULL;
	uint64_t total = 0, bad = UINT64_MAX;
	unsigned started = 0;
	double cpu0;
	uint16_t type;
	uint32_t id;
	size_t len;
	int ret;

	ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, BW_TIMEOUT_MS, err);
	if (ret)
		return ret;
	if (type != BW_MSG_PARAMS)
		return rdmig_seterr(err, -EPROTO, "expected bw PARAMS, got message type 0x%x",
				    type);
	ret = decode_params(buf, len, &bp, err);
	if (ret || bp.channels != rdmig_conn_channels(c)) {
		if (!ret)
			ret = rdmig_seterr(err, -EPROTO,
					   "bw PARAMS: %u channels but connection has %u",
					   bp.channels, rdmig_conn_channels(c));
		rdmig_ctrl_send_error(c, ret, err->msg, NULL);
		return ret;
	}
	cpu0 = cpu_s();
	total = bp.size * bp.channels;
	region = map_region(total);
	if (!region) {
		ret = rdmig_seterr(err, -ENOMEM, "cannot allocate %" PRIu64 " bytes", total);
		rdmig_ctrl_send_error(c, ret, err->msg, NULL);
		return ret;
	}
	ret = rdmig_reg(c, "bw", region, total, RDMIG_REG_REMOTE_WRITE, &id, err);
	if (ret) {
		rdmig_ctrl_send_error(c, ret, err->msg, NULL);
		goto out_unmap;
	}
	ret = rdmig_expose(c, err);
	if (ret)
		goto out_unmap;
	for (unsigned i = 0; i < bp.channels; i++) {
		w[i] = (struct fence_waiter){.c = c, .chan = i, .err = RDMIG_ERR_INIT};
		if (pthread_create(&th[i], NULL, fence_thread, &w[i])) {
			ret = rdmig_seterr(err, -EAGAIN, "cannot start a receive thread");
			rdmig_conn_abort(c, ret, "server out of threads");
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		if (w[i].ret && !ret) {
			*err = w[i].err;
			ret = w[i].ret;
		}
	}
	if (ret)
		goto out_unmap;
	ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, BW_TIMEOUT_MS, err);
	if (ret)
		goto out_unmap;
	if (type != BW_MSG_DONE) {
		ret = rdmig_seterr(err, -EPROTO, "expected bw DONE, got message type 0x%x", type);
		goto out_unmap;
	}
	if (bp.verify) {
		expect = map_region(bp.size);
		if (!expect) {
			ret = rdmig_seterr(err, -ENOMEM, "cannot allocate the verify pattern");
			goto out_unmap;
		}
		fill_pattern(expect, bp.size, bp.seed);
		for (unsigned ch = 0; ch < bp.channels && bad == UINT64_MAX; ch++)
			for (uint64_t i = 0; i < bp.size; i++)
				if (region[ch * bp.size + i] != expect[i]) {
					bad = ch * bp.size + i;
					break;
				}
	}
	rdmig_put_be64(res, (uint64_t)((cpu_s() - cpu0) * 1e6));
	rdmig_put_be64(res + 8, bp.verify ? (bad == UINT64_MAX ? 1 : 2) : 0);
	rdmig_put_be64(res + 16, bad);
	ret = rdmig_ctrl_send(c, BW_MSG_RESULT, res, sizeof(res), err);
	if (!ret && bp.verify)
		fprintf(stderr, "rdmig bw: verify %s\n", bad == UINT64_MAX ? "ok" : "MISMATCH");
out_unmap:
	rdmig_revoke(c);
	if (expect)
		munmap(expect, bp.size);
	munmap(region, total);
	return ret;
}

static int run_server(const struct bw_opts *o)
{
	struct rdmig_xport_cfg cfg = {
	    .backend = o->backend,
	    .host = o->host[0] ? o->host : NULL,
	    .port = o->port,
	    .channels = RDMIG_MAX_CHANNELS,
	    .depth = o->depth,
	    .auth = o->key ? rdmig_auth_psk : NULL,
	    .auth_ctx = (void *)o->key,
	    .tls = o->tls,
	    .tls_key = o->key ? o->key->key : NULL,
	    .tls_key_len = o->key ? o->key->len : 0,
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l;
	struct rdmig_conn *c;
	int ret;

	ret = rdmig_listen(&cfg, &l, &err);
	if (ret) {
		fprintf(stderr, "rdmig bw: %s\n", rdmig_err_str(&err));
		return RDMIG_EXIT_FAIL;
	}
	fprintf(stderr, "rdmig bw: listening on %s port %u (%s)\n", o->host[0] ? o->host : "*",
		rdmig_listener_port(l), rdmig_backend_name(o->backend));
	for (;;) {
		rdmig_err_clear(&err);
		ret = rdmig_accept(l, -1, &c, &err);
		if (ret) {
			fprintf(stderr, "rdmig bw: accept: %s\n", rdmig_err_str(&err));
			if (o->once)
				break;
			continue;
		}
		ret = serve_one(c, &err);
		if (ret)
			fprintf(stderr, "rdmig bw: %s\n", rdmig_err_str(&err));
		rdmig_conn_destroy(c);
		if (o->once)
			break;
	}
	rdmig_listener_destroy(l);
	return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}

/* ---- client ------------------------------------------------------------ */

struct writer {
	struct rdmig_conn *c;
	unsigned chan;
	uint32_t lreg, rreg;
	uint64_t size;
	double deadline;
	uint64_t msgs;
	int ret;
	struct rdmig_err err;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;
	struct rdmig_run run = {
	    .lreg = w->lreg,
	    .rreg = w->rreg,
	    .loff = w->chan * w->size,
	    .roff = w->chan * w->size,
	    .len = w->size,
	};

	/* Check the clock every 16 writes: a syscall per write would show in the figure. */
	do {
		for (int i = 0; i < 16; i++) {
			w->ret = rdmig_write(w->c, w->chan, &run, 1, &w->err);
			if (w->ret)
				goto out;
			w->msgs++;
		}
	} while (rdmig_now_s() < w->deadline);
	w->ret = rdmig_fence(w->c, w->chan, 1, &w->err);
out:
	if (w->ret)
		rdmig_conn_abort(w->c, w->ret, rdmig_err_str(&w->err));
	return NULL;
}

static int run_client(const struct bw_opts *o)
{
	struct rdmig_xport_cfg cfg = {
	    .backend = o->backend,
	    .host = o->host,
	    .port = o->port,
	    .channels = o->channels,
	    .depth = o->depth,
	    .auth = o->key ? rdmig_auth_psk : NULL,
	    .auth_ctx = (void *)o->key,
	    .compress_level = o->compress,
	    .tls = o->tls,
	    .tls_key = o->key ? o->key->key : NULL,
	    .tls_key_len = o->key ? o->key->len : 0,
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_xport_stats xs;
	struct writer w[RDMIG_MAX_CHANNELS];
	pthread_t th[RDMIG_MAX_CHANNELS];
	uint8_t buf[BW_PARAMS_LEN], res[64];
	uint64_t total = o->size * o->channels, msgs = 0, bytes, verify = 0, bad = 0;
	double t0, t1, cpu0, cpu1, secs, srv_cpu, gib;
	struct rdmig_conn *c = NULL;
	uint8_t *region = NULL;
	unsigned started = 0;
	uint32_t lreg;
	uint16_t type;
	size_t len;
	int ret;

	region = map_region(total);
	if (!region) {
		fprintf(stderr, "rdmig bw: cannot allocate %" PRIu64 " bytes\n", total);
		return RDMIG_EXIT_FAIL;
	}
	for (unsigned ch = 0; ch < o->channels; ch++)
		fill_pattern(region + ch * o->size, o->size, o->seed);
	ret = rdmig_connect(&cfg, &c, &err);
	if (ret)
		goto out;
	rdmig_put_be64(buf, o->size);
	rdmig_put_be32(buf + 8, o->channels);
	rdmig_put_be32(buf + 12, o->verify);
	rdmig_put_be64(buf + 16, o->seed);
	rdmig_put_be64(buf + 24, 0);
	ret = rdmig_ctrl_send(c, BW_MSG_PARAMS, buf, sizeof(buf), &err);
	if (ret)
		goto out;
	ret = rdmig_reg(c, "bw", region, total, 0, &lreg, &err);
	if (ret)
		goto out;
	ret = rdmig_recv_layout(c, BW_TIMEOUT_MS, &err);
	if (ret)
		goto out;
	if (rdmig_remote_count(c) != 1 || rdmig_remote_get(c, 0)->len != total) {
		ret = rdmig_seterr(&err, -EPROTO, "server exposed an unexpected layout");
		goto out;
	}
	cpu0 = cpu_s();
	t0 = rdmig_now_s();
	for (unsigned i = 0; i < o->channels; i++) {
		w[i] = (struct writer){.c = c,
				       .chan = i,
				       .lreg = lreg,
				       .rreg = rdmig_remote_get(c, 0)->id,
				       .size = o->size,
				       .deadline = t0 + o->duration,
				       .err = RDMIG_ERR_INIT};
		if (pthread_create(&th[i], NULL, writer_thread, &w[i])) {
			ret = rdmig_seterr(&err, -EAGAIN, "cannot start a writer thread");
			rdmig_conn_abort(c, ret, "client out of threads");
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		msgs += w[i].msgs;
		if (w[i].ret && !ret) {
			err = w[i].err;
			ret = w[i].ret;
		}
	}
	t1 = rdmig_now_s();
	cpu1 = cpu_s();
	if (ret)
		goto out;
	ret = rdmig_ctrl_send(c, BW_MSG_DONE, NULL, 0, &err);
	if (ret)
		goto out;
	ret = rdmig_ctrl_recv(c, &type, res, sizeof(res), &len, BW_TIMEOUT_MS, &err);
	if (ret)
		goto out;
	if (type != BW_MSG_RESULT || len != BW_RESULT_LEN) {
		ret = rdmig_seterr(&err, -EPROTO, "malformed bw RESULT from server");
		goto out;
	}
	srv_cpu = (double)rdmig_get_be64(res) / 1e6;
	verify = rdmig_get_be64(res + 8);
	bad = rdmig_get_be64(res + 16);

	rdmig_xport_stats(c, &xs);
	bytes = msgs * o->size;
	secs = t1 - t0;
	gib = (double)bytes / (1024.0 * 1024 * 1024);
	if (o->json) {
		printf("{\"backend\":\"%s\",\"size\":%" PRIu64 ",\"channels\":%u,\"depth\":%u,"
		       "\"bytes\":%" PRIu64 ",\"messages\":%" PRIu64 ",\"seconds\":%.6f,"
		       "\"gbps\":%.4f,\"mib_per_s\":%.2f,\"msg_rate\":%.1f,"
		       "\"src_cpu_s_per_gib\":%.4f,\"dst_cpu_s_per_gib\":%.4f,\"verify\":\"%s\","
		       "\"compress_level\":%d,\"bytes_on_wire\":%" PRIu64 "}\n",
		       rdmig_backend_name(o->backend), o->size, o->channels, o->depth, bytes, msgs,
		       secs, (double)bytes * 8 / secs / 1e9, (double)bytes / secs / 1048576.0,
		       (double)msgs / secs, gib > 0 ? (cpu1 - cpu0) / gib : 0,
		       gib > 0 ? srv_cpu / gib : 0,
		       verify == 0   ? "off"
		       : verify == 1 ? "ok"
				     : "mismatch",
		       o->compress, xs.bytes_on_wire);
	} else {
		char sz[32], by[32];

		printf("rdmig bw: %s backend, %u channel(s), depth %u\n",
		       rdmig_backend_name(o->backend), o->channels, o->depth);
		printf("  message size   %s (%" PRIu64 " bytes)\n",
		       rdmig_fmt_size(o->size, sz, sizeof(sz)), o->size);
		printf("  bytes moved    %s (%" PRIu64 " bytes, %" PRIu64 " messages)\n",
		       rdmig_fmt_size(bytes, by, sizeof(by)), bytes, msgs);
		printf("  seconds        %.3f\n", secs);
		printf("  bandwidth      %.3f Gb/s, %.1f MiB/s\n", (double)bytes * 8 / secs / 1e9,
		       (double)bytes / secs / 1048576.0);
		printf("  message rate   %.0f msg/s\n", (double)msgs / secs);
		printf("  cpu per GiB    source %.3f s, destination %.3f s\n",
		       gib > 0 ? (cpu1 - cpu0) / gib : 0, gib > 0 ? srv_cpu / gib : 0);
		if (verify)
			printf("  verify         %s\n", verify == 1 ? "ok" : "MISMATCH");
		if (o->compress)
			printf("  compression    zstd level %d, %s on the wire (ratio %.2f)\n",
			       o->compress, rdmig_fmt_size(xs.bytes_on_wire, by, sizeof(by)),
			       xs.bytes_on_wire ? (double)xs.bytes_written / xs.bytes_on_wire : 0);
	}
	if (verify == 2) {
		fprintf(stderr,
			"rdmig bw: verify failed: first wrong byte at offset %" PRIu64
			" of the destination region\n",
			bad);
		ret = -EIO;
	}
out:
	if (ret && err.code)
		fprintf(stderr, "rdmig bw: %s\n", rdmig_err_str(&err));
	rdmig_conn_destroy(c);
	munmap(region, total);
	return ret ? RDMIG_EXIT_FAIL : RDMIG_EXIT_OK;
}

int cmd_bw(int argc, char **argv)
{
	struct bw_opts o;
	int ret;

	ret = parse_opts(argc, argv, &o);
	if (ret)
		return ret < 0 ? RDMIG_EXIT_OK : ret;
	signal(SIGPIPE, SIG_IGN);
	{
		static struct rdmig_auth_key key;
		struct rdmig_err err = RDMIG_ERR_INIT;

		ret = rdmig_auth_key_from_opt(o.key_file, &key, &err);
		if (ret < 0) {
			fprintf(stderr, "rdmig bw: %s\n", rdmig_err_str(&err));
			return RDMIG_EXIT_FAIL;
		}
		if (ret > 0 && o.tls) {
			fprintf(stderr,
				"rdmig bw: --tls needs a pre-shared key: pass --key-file PATH "
				"(or set $RDMIG_KEY_FILE) on both sides\n");
			return RDMIG_EXIT_USAGE;
		}
		if (ret > 0)
			fprintf(stderr, "%s\n", RDMIG_AUTH_NO_KEY_WARNING);
		o.key = ret ? NULL : &key;
		ret = o.listen ? run_server(&o) : run_client(&o);
		rdmig_auth_key_wipe(&key);
	}
	return ret;
}
