/* SPDX-License-Identifier: MIT */
/*
 * xport_check: end-to-end checks of one transport backend through the
 * public API (rdmig/transport.h). Used by the tcp tier on loopback and by
 * the rdma tier inside a SoftRoCE VM, so everything except `malformed` goes
 * through the backend-neutral interface only.
 *
 *   xport_check transfer  --backend B [--size 256M] [--channels 4] [--seed S] [--host H]
 *                         [--compress LEVEL]  (tcp: 3 in 4 pages zero, the rest random;
 *                                             checks fewer bytes on the wire than written)
 *   xport_check fence     --backend B [--size 64M] [--channels 4] [--rounds 8]
 *   xport_check stream    --backend B [--size 32M] [--channels 2] [--fd]
 *                         (--fd: through rdmig_stream_send_fd/recv_fd)
 *   xport_check read      --backend B [--size 8M] [--channels 2]  (xport_read.c)
 *   xport_check malformed [--backend tcp]
 *   xport_check hostile   --backend B [--host H]   (xport_hostile.c)
 *   xport_check last-words --backend B [--host H]  (what a closed peer said still comes)
 *   xport_check hostile-client --backend B --host H --port P
 *
 * transfer, fence, stream, last-words and read run in two processes: this one is the
 * destination (listens on HOST, port 0, and passes the port over the peer
 * channel), the source is this program again (tests/lib/th_peer.h, exec'd:
 * verbs state must not cross a fork), which gets the same seed. Both print
 * one line per check, prefixed with their role; the exit status is 0 only
 * when both passed. Every wait is bounded (WAIT_MS); nothing is timed
 * against a speed. The seed is printed at the start and on every failure;
 * --seed reproduces.
 *
 * xport_check.h says which file holds which mode.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "th_check.h"
#include "th_content.h"
#include "th_pair.h"
#include "units.h"
#include "xport_check.h"
#include "xport_hostile.h"

struct opts g_opt;

double mib_s(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / (1024.0 * 1024.0) / secs : 0;
}

void content_fill(uint8_t *dst, uint64_t pos, size_t len, uint64_t key)
{
	th_content_fill(dst, pos, len, key, g_opt.compress ? TH_CONTENT_SPARSE : 0);
}

uint64_t content_compare(const uint8_t *mem, uint64_t pos, uint64_t len, uint64_t key,
			 uint64_t *first)
{
	return th_content_compare(mem, pos, len, key, g_opt.compress ? TH_CONTENT_SPARSE : 0,
				  first);
}

void slice_of(uint64_t size, unsigned nch, unsigned ch, uint64_t *lo, uint64_t *hi)
{
	uint64_t per = (size / nch) & ~4095ULL;

	*lo = per * ch;
	*hi = ch + 1 == nch ? size : per * (ch + 1);
}

const struct rdmig_remote_region *find_remote(struct rdmig_conn *c, const char *name)
{
	for (unsigned i = 0; i < rdmig_remote_count(c); i++) {
		const struct rdmig_remote_region *r = rdmig_remote_get(c, i);

		if (r && !strcmp(r->name, name))
			return r;
	}
	return NULL;
}

void print_stats(struct rdmig_conn *c)
{
	struct rdmig_xport_stats s;

	rdmig_xport_stats(c, &s);
	th_note("info: stats: bytes_written %" PRIu64 " writes_posted %" PRIu64
		" bytes_received %" PRIu64 " fences_sent %" PRIu64 " fences_received %" PRIu64
		" ctrl_sent %" PRIu64 " ctrl_received %" PRIu64,
		s.bytes_written, s.writes_posted, s.bytes_received, s.fences_sent,
		s.fences_received, s.ctrl_sent, s.ctrl_received);
	if (s.bytes_written)
		th_note("info: stats: bytes_on_wire %" PRIu64 " (%.3f of bytes_written)",
			s.bytes_on_wire, (double)s.bytes_on_wire / (double)s.bytes_written);
}

void barrier(struct rdmig_conn *c)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint8_t b[16];
	uint16_t type = 0;
	size_t len = 0;
	int ret;

	ret = rdmig_ctrl_send(c, MSG_DONE, "done", 4, &e);
	if (!TH_CHECK_CALL(ret, &e, "sending DONE"))
		return;
	ret = rdmig_ctrl_recv(c, &type, b, sizeof(b), &len, WAIT_MS, &e);
	if (TH_CHECK_CALL(ret, &e, "waiting for the peer's DONE"))
		TH_CHECK(type == MSG_DONE, "teardown barrier (peer sent type %u)", type);
}

/* ---- two-process driver ------------------------------------------------------ */

void cfg_init(struct rdmig_xport_cfg *cfg, unsigned channels)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = g_opt.backend;
	cfg->host = g_opt.host;
	cfg->channels = channels;
	cfg->connect_timeout_ms = 30000;
	cfg->compress_level = g_opt.compress;
	if (g_opt.tls) {
		static const uint8_t key[] = "xport_check test key, not a secret";

		cfg->tls = true;
		cfg->tls_key = key;
		cfg->tls_key_len = sizeof(key) - 1;
	}
	rdmig_xport_cfg_defaults(cfg);
}

typedef bool (*role_fn)(struct rdmig_conn *c, bool destination);

/* The destination: this process, listening. */
static bool listener(struct rdmig_listener *l, struct th_peer *peer, void *arg)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	role_fn fn = *(role_fn *)arg;
	bool ok;

	(void)peer;
	if (!TH_CHECK_CALL(rdmig_accept(l, WAIT_MS, &c, &e), &e, "accept"))
		return false;
	TH_CHECK(rdmig_conn_channels(c) == g_opt.channels, "accepted a connection with %u channels",
		 rdmig_conn_channels(c));
	ok = fn(c, true);
	rdmig_conn_destroy(c);
	return ok;
}

/* The source: this program again, at the same split. */
static bool connector(uint16_t port, void *arg)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	role_fn fn = *(role_fn *)arg;
	bool ok;

	cfg_init(&cfg, g_opt.channels);
	cfg.port = port;
	if (!TH_CHECK_CALL(rdmig_connect(&cfg, &c, &e), &e, "connect"))
		return false;
	TH_CHECK(rdmig_conn_channels(c) == g_opt.channels,
		 "connected to %s port %u, %u channels, backend %s", g_opt.host, port,
		 rdmig_conn_channels(c), rdmig_backend_name(rdmig_conn_backend(c)));
	ok = fn(c, false);
	rdmig_conn_destroy(c);
	return ok;
}

static int two_process(role_fn fn)
{
	struct rdmig_xport_cfg cfg;
	struct th_pair pair = {.roles = {"dst", "src"},
			       .listener = listener,
			       .connector = connector,
			       .arg = &fn,
			       .timeout_ms = 2 * WAIT_MS};

	/* A listener's channel count is the most it accepts. */
	cfg_init(&cfg, RDMIG_MAX_CHANNELS);
	return th_pair_run(&cfg, &pair) && !th_failures() ? 0 : 1;
}

static bool role_transfer(struct rdmig_conn *c, bool destination)
{
	return destination ? dst_transfer(c, g_opt.size, g_opt.seed)
			   : src_transfer(c, g_opt.size, g_opt.seed);
}

static bool role_fence(struct rdmig_conn *c, bool destination)
{
	return fence_run(c, !destination);
}

static bool role_stream(struct rdmig_conn *c, bool destination)
{
	return stream_run(c, destination);
}

static bool role_read(struct rdmig_conn *c, bool destination)
{
	return read_run(c, destination);
}

/*
 * last-words: the source sends three control messages and closes. The
 * destination first learns that the peer is gone (a fence wait on a data
 * channel fails), and only then reads: the three messages must still come,
 * byte for byte and in order, and then the failure, not a timeout. This is
 * how a destination that was stopped still hears its source's CANCEL.
 */
#define LAST_WORDS 3

static bool role_last_words(struct rdmig_conn *c, bool destination)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	char want[32], got[64];
	struct rdmig_fence f;
	uint16_t type = 0;
	size_t len = 0;
	int ret;

	if (!destination) {
		for (unsigned i = 0; i < LAST_WORDS; i++) {
			int n =
			    snprintf(want, sizeof(want), "last word %u of %u", i + 1, LAST_WORDS);

			ret = rdmig_ctrl_send(c, MSG_SUM, want, (size_t)n, &e);
			if (!TH_CHECK_CALL(ret, &e, "sending %s", want))
				return false;
		}
		return true; /* the driver closes the connection */
	}
	do {
		rdmig_err_clear(&e);
		ret = rdmig_wait_fence(c, 0, WAIT_MS, &f, &e);
	} while (!ret);
	TH_CHECK(ret != -ETIMEDOUT && rdmig_conn_failed(c, NULL),
		 "the connection is known to have failed before reading (%s)", rdmig_err_str(&e));
	for (unsigned i = 0; i < LAST_WORDS; i++) {
		int n = snprintf(want, sizeof(want), "last word %u of %u", i + 1, LAST_WORDS);

		rdmig_err_clear(&e);
		ret = rdmig_ctrl_recv(c, &type, got, sizeof(got), &len, WAIT_MS, &e);
		if (!TH_CHECK_CALL(ret, &e, "reading message %u after the peer closed", i + 1))
			return false;
		TH_CHECK(type == MSG_SUM && len == (size_t)n && !memcmp(got, want, len),
			 "message %u after the peer closed is the one it sent (type %u, %zu bytes)",
			 i + 1, type, len);
	}
	rdmig_err_clear(&e);
	ret = rdmig_ctrl_recv(c, &type, got, sizeof(got), &len, WAIT_MS, &e);
	TH_CHECK(ret < 0 && ret != -ETIMEDOUT,
		 "then the failure, not a timeout or a message (%d: %s)", ret, rdmig_err_str(&e));
	return true;
}

/* ---- main -------------------------------------------------------------------- */

static int usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "xport_check: %s\n", msg);
	fprintf(stderr,
		"usage: xport_check transfer|fence|stream|last-words|read|malformed|hostile|\n"
		"                   hostile-client\n"
		"         --backend tcp|rdma [--host ADDR] [--port P] [--size N] [--channels N]\n"
		"         [--rounds N] [--seed S] [--compress LEVEL] [--tls] [--fd]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"backend", required_argument, NULL, 'b'},
	    {"host", required_argument, NULL, 'H'},
	    {"size", required_argument, NULL, 's'},
	    {"channels", required_argument, NULL, 'c'},
	    {"rounds", required_argument, NULL, 'r'},
	    {"seed", required_argument, NULL, 'S'},
	    {"compress", required_argument, NULL, 'Z'},
	    {"tls", no_argument, NULL, 'T'}, /* fixed test key: see cfg_init() */
	    {"fd", no_argument, NULL, 'F'},
	    {"port", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct rdmig_err e = RDMIG_ERR_INIT;
	bool have_backend = false;
	const char *seed_arg = NULL;
	uint64_t v;
	int opt, ret;

	th_init(argc, argv);
	th_set_role("main");
	th_set_verbose(true);
	rdmig_log_init();
	if (argc < 2 || argv[1][0] == '-')
		return usage(NULL);
	g_opt.mode = argv[1];
	g_opt.host = "127.0.0.1";
	optind = 2;
	while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			if (rdmig_backend_parse(optarg, &g_opt.backend, &e))
				return usage(e.msg);
			have_backend = true;
			break;
		case 'H':
			g_opt.host = optarg;
			break;
		case 's':
			if (rdmig_parse_size(optarg, &g_opt.size, &e) || !g_opt.size)
				return usage(e.code ? e.msg : "--size must be above 0");
			break;
		case 'c':
			if (rdmig_parse_uint(optarg, 1, RDMIG_MAX_CHANNELS, &v, &e))
				return usage(e.msg);
			g_opt.channels = (unsigned)v;
			break;
		case 'r':
			if (rdmig_parse_uint(optarg, 1, 65535, &v, &e))
				return usage(e.msg);
			g_opt.rounds = (unsigned)v;
			break;
		case 'T':
			g_opt.tls = true;
			break;
		case 'F':
			g_opt.fd = true;
			break;
		case 'P':
			if (rdmig_parse_uint(optarg, 1, 65535, &v, &e))
				return usage(e.msg);
			g_opt.port = (uint16_t)v;
			break;
		case 'Z':
			if (rdmig_parse_uint(optarg, 0, 19, &v, &e))
				return usage(e.msg);
			g_opt.compress = (int)v;
			break;
		case 'S':
			seed_arg = optarg;
			break;
		default:
			return usage(NULL);
		}
	}
	if (optind != argc)
		return usage("unexpected argument");
	if (th_seed_init(seed_arg, &g_opt.seed))
		return usage("--seed expects a number (decimal or 0x...)");
	if (!have_backend && strcmp(g_opt.mode, "malformed"))
		return usage("--backend is required");

	if (!strcmp(g_opt.mode, "transfer")) {
		g_opt.size = g_opt.size ? g_opt.size : 256ULL << 20;
		g_opt.channels = g_opt.channels ? g_opt.channels : 4;
	} else if (!strcmp(g_opt.mode, "fence")) {
		g_opt.size = g_opt.size ? g_opt.size : 64ULL << 20;
		g_opt.channels = g_opt.channels ? g_opt.channels : 4;
		g_opt.rounds = g_opt.rounds ? g_opt.rounds : 8;
	} else if (!strcmp(g_opt.mode, "stream")) {
		g_opt.size = g_opt.size ? g_opt.size : 32ULL << 20;
		g_opt.channels = g_opt.channels ? g_opt.channels : 2;
	} else if (!strcmp(g_opt.mode, "read")) {
		g_opt.size = g_opt.size ? g_opt.size : 8ULL << 20;
		g_opt.channels = g_opt.channels ? g_opt.channels : 2;
		if (g_opt.size < (4u << 20))
			return usage("read needs --size of at least 4M");
	} else if (!strcmp(g_opt.mode, "last-words")) {
		g_opt.channels = g_opt.channels ? g_opt.channels : 1;
	} else if (!strcmp(g_opt.mode, "hostile-client")) {
		if (!g_opt.port)
			return usage("hostile-client needs --port");
	} else if (strcmp(g_opt.mode, "malformed") && strcmp(g_opt.mode, "hostile")) {
		return usage("unknown mode");
	}
	if (g_opt.size && g_opt.channels && g_opt.size / g_opt.channels < 4096)
		return usage("--size must give every channel at least 4 KiB");

	if (!th_peer_role())
		th_note("xport_check %s: backend %s, host %s, size %" PRIu64 ", channels %u, "
			"seed 0x%016" PRIx64,
			g_opt.mode, rdmig_backend_name(g_opt.backend), g_opt.host, g_opt.size,
			g_opt.channels, g_opt.seed);
	if (!strcmp(g_opt.mode, "transfer"))
		ret = two_process(role_transfer);
	else if (!strcmp(g_opt.mode, "fence"))
		ret = two_process(role_fence);
	else if (!strcmp(g_opt.mode, "stream"))
		ret = two_process(role_stream);
	else if (!strcmp(g_opt.mode, "last-words"))
		ret = two_process(role_last_words);
	else if (!strcmp(g_opt.mode, "read"))
		ret = two_process(role_read);
	else if (!strcmp(g_opt.mode, "hostile"))
		ret = run_hostile();
	else if (!strcmp(g_opt.mode, "hostile-client"))
		ret = run_hostile_client();
	else
		ret = run_malformed();
	return th_summary(g_opt.mode, ret == 0);
}
