/* SPDX-License-Identifier: MIT */
/*
 * xport_check hostile (xport_check.c has the overview): a keyed listener
 * that allows 2 data channels faces peers that misbehave before they are
 * authenticated, each case followed by a legitimate keyed connection whose
 * transfer is checked byte for byte (dst_transfer / src_transfer):
 *
 *   garbage     bytes that are not a HELLO (tcp) / private data without the
 *               rdmig magic (rdma): refused with a reason the peer can read
 *   close       valid HELLOs, then the peer goes away before AUTH
 *   silence     valid HELLOs on every channel, then nothing: each is dropped
 *               at the handshake deadline, and a legitimate source gets
 *               through while they wait (SILENT of them hold the listener
 *               longer than the source's own bounded wait, so handshakes that
 *               ran one after the other would fail it)
 *   wrong-key   a real connector with another key: the destination counts an
 *               authentication failure and, during it, has no memory
 *               registered for remote access (counters; on rdma also `rdma
 *               res show mr` and the HELLO_ACK the raw peer received)
 *   replay      (tcp) a genuine session's AUTH frames, recorded and replayed
 *   oversized   frames whose header claims more than any frame may carry
 *   channels    a connector asking for 8 data channels: refused, naming both
 *               numbers; HELLOs with 0 and 65 channels
 *   flood       FLOOD_TCP idle sockets and FLOOD_GROUPS incomplete
 *               connections held open (tcp), FLOOD_RDMA idle connect requests
 *               (rdma): the oldest are evicted, the legitimate source gets in
 *
 * xport_check hostile-client --backend B --host H --port P runs the same
 * misbehaviour against an `rdmig listen` (tests/tcp/hostile_cli.sh), prints
 * "hostile-client: holding" and keeps its silent and idle connections open
 * until its standard input closes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rdmig/auth.h"
#include "bytes.h"
#include "clock.h"
#include "th_check.h"
#include "th_content.h"
#include "th_relay.h"
#include "xport.h"
#include "xport_check.h"
#include "xport_hostile.h"

#define HS_MS	   5000 /* the listener's connect timeout: each stage of a handshake */
#define LEGIT_MS   30000
#define SILENT	   8 /* SILENT * HS_MS > LEGIT_MS */
#define LEGIT_SIZE (8u << 20)

_Static_assert(SILENT *HS_MS > LEGIT_MS, "serial handshakes must outlast the legit wait");

static struct rdmig_auth_key g_hkey, g_hwrong;

/* ---- the destination's view during authentication ----------------------- */

/* What the destination holds while its auth hook runs (listener's handshake thread). */
struct spy {
	pthread_mutex_t lock;
	unsigned runs;
	uint64_t rings_remote, rkeys_sent, regions_remote;
	int ring_mrs; /* rdma: MRs of this process of the ring's size, -1 unknown */
};

static struct spy g_spy = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int spy_auth(struct rdmig_conn *c, bool is_server, void *ctx, struct rdmig_err *err)
{
	struct rdmig_xport_stats st;
	int ret, mrs = -1;

	(void)ctx;
	ret = rdmig_auth_psk(c, is_server, &g_hkey, err);
	rdmig_xport_stats(c, &st);
	if (rdmig_conn_backend(c) == RDMIG_BACKEND_RDMA)
		mrs = cm_ring_mrs(getpid(), HOSTILE_RING);
	pthread_mutex_lock(&g_spy.lock);
	g_spy.runs++;
	g_spy.rings_remote += st.rings_remote;
	g_spy.rkeys_sent += st.rkeys_sent;
	g_spy.regions_remote += st.regions_remote;
	if (mrs != 0)
		g_spy.ring_mrs = mrs;
	pthread_mutex_unlock(&g_spy.lock);
	return ret;
}

static void spy_take(struct spy *out)
{
	pthread_mutex_lock(&g_spy.lock);
	out->runs = g_spy.runs;
	out->rings_remote = g_spy.rings_remote;
	out->rkeys_sent = g_spy.rkeys_sent;
	out->regions_remote = g_spy.regions_remote;
	out->ring_mrs = g_spy.ring_mrs;
	g_spy.runs = 0;
	g_spy.rings_remote = g_spy.rkeys_sent = g_spy.regions_remote = 0;
	g_spy.ring_mrs = 0;
	pthread_mutex_unlock(&g_spy.lock);
}

/* ---- configuration ------------------------------------------------------ */

static void make_key(struct rdmig_auth_key *k, uint8_t salt)
{
	memset(k, 0, sizeof(*k));
	for (unsigned i = 0; i < 32; i++)
		k->key[i] = (uint8_t)(0x5a ^ salt ^ (i * 29));
	k->len = 32;
}

static void hostile_cfg(struct rdmig_xport_cfg *cfg, unsigned channels,
			const struct rdmig_auth_key *k)
{
	cfg_init(cfg, channels);
	cfg->connect_timeout_ms = LEGIT_MS;
	cfg->stream_ring = HOSTILE_RING;
	cfg->auth = rdmig_auth_psk;
	cfg->auth_ctx = (void *)k;
}

/* ---- waiting on the listener ------------------------------------------- */

/*
 * Until `field` of the listener's stats grew by `want` over `before` (at most
 * `ms`), accepting nothing meanwhile: a peer that misbehaves never reaches
 * rdmig_accept(). Returns the stats then.
 */
static struct rdmig_listener_stats wait_stat(struct rdmig_listener *l,
					     const struct rdmig_listener_stats *before,
					     size_t field, uint64_t want, int ms, const char *what)
{
	struct rdmig_listener_stats st;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int64_t until = rdmig_now_ms() + ms;
	uint64_t got = 0;
	int ret = -ETIMEDOUT;

	for (;;) {
		rdmig_listener_stats(l, &st);
		got = *(const uint64_t *)((const char *)&st + field) -
		      *(const uint64_t *)((const char *)before + field);
		if (got >= want || rdmig_now_ms() >= until)
			break;
		ret = rdmig_accept(l, 50, &c, &e);
		if (ret != -ETIMEDOUT)
			break;
		rdmig_err_clear(&e);
	}
	TH_CHECK(ret == -ETIMEDOUT && !c, "%s: nothing reaches rdmig_accept() (%d %s)", what, ret,
		 e.msg);
	TH_CHECK(got >= want,
		 "%s: the listener counted %" PRIu64 " (of %" PRIu64 " expected); last: %s", what,
		 got, want, st.last_drop);
	rdmig_conn_destroy(c);
	return st;
}

#define STAT(f) offsetof(struct rdmig_listener_stats, f)

/* ---- the legitimate source after each case ------------------------------ */

struct legit_dst {
	struct rdmig_listener *l;
	int wait_ms;
	bool ok;
	uint64_t rings;
};

static void *legit_dst_thread(void *arg)
{
	struct legit_dst *d = arg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_stats st;
	struct rdmig_conn *c = NULL;
	int ret;

	ret = rdmig_accept(d->l, d->wait_ms, &c, &e);
	d->ok = TH_CHECK_CALL(ret, &e, "accepting the legitimate source");
	if (d->ok) {
		rdmig_xport_stats(c, &st);
		d->rings = st.rings_remote;
		d->ok = dst_transfer(c, LEGIT_SIZE, g_opt.seed);
	}
	rdmig_conn_destroy(c);
	return NULL;
}

/* A keyed source connects and writes; the destination checks every byte. */
static bool hostile_legit(struct rdmig_listener *l, uint16_t port, const char *after, int wait_ms)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct legit_dst d = {.l = l, .wait_ms = wait_ms};
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	pthread_t th;
	bool ok;
	int ret;

	if (pthread_create(&th, NULL, legit_dst_thread, &d))
		return TH_CHECK(false, "thread for the destination");
	hostile_cfg(&cfg, 2, &g_hkey);
	cfg.port = port;
	cfg.connect_timeout_ms = wait_ms;
	ret = rdmig_connect(&cfg, &c, &e);
	ok = TH_CHECK_CALL(ret, &e, "connecting the legitimate source %s", after) &&
	     src_transfer(c, LEGIT_SIZE, g_opt.seed);
	rdmig_conn_destroy(c);
	pthread_join(th, NULL);
	if (g_opt.backend == RDMIG_BACKEND_RDMA && d.ok)
		TH_CHECK(d.rings == 2,
			 "the legitimate connection's stream rings were registered "
			 "after authentication (%" PRIu64 " of 2)",
			 d.rings);
	return TH_CHECK(ok && d.ok,
			"the listener still serves a keyed transfer, bytes compared, %s", after);
}

/* ---- cases that go through the library on both backends ----------------- */

static void case_wrong_key(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before, st;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	struct spy sp;
	int ret;

	rdmig_listener_stats(l, &before);
	spy_take(&sp);
	hostile_cfg(&cfg, 2, &g_hwrong);
	cfg.port = port;
	ret = rdmig_connect(&cfg, &c, &e);
	TH_CHECK(ret == -EACCES && strstr(e.msg, "the destination rejected our proof") && !c,
		 "wrong key: the source is refused (%d): %s", ret, e.msg);
	rdmig_conn_destroy(c);
	st = wait_stat(l, &before, STAT(auth_failed), 1, LEGIT_MS, "wrong key");
	TH_CHECK(strstr(st.last_drop, "peer does not know the key") != NULL,
		 "wrong key: the drop names the cause: %s", st.last_drop);
	spy_take(&sp);
	TH_CHECK(sp.runs == 1 && sp.rings_remote == 0 && sp.rkeys_sent == 0 &&
		     sp.regions_remote == 0,
		 "wrong key: during authentication the destination had %" PRIu64
		 " stream rings and %" PRIu64 " regions open to the peer and had sent %" PRIu64
		 " rkeys (all must be 0; hook ran %u times)",
		 sp.rings_remote, sp.regions_remote, sp.rkeys_sent, sp.runs);
	if (g_opt.backend == RDMIG_BACKEND_RDMA) {
		if (sp.ring_mrs < 0)
			th_note("note: `rdma res show mr` unavailable: MR sizes not checked");
		else
			TH_CHECK(sp.ring_mrs == 0,
				 "wrong key: `rdma res show mr` lists %d MRs of a stream ring's "
				 "size (%u bytes) in this process during authentication",
				 sp.ring_mrs, HOSTILE_RING);
	}
}

/* A connector whose auth hook sends a frame claiming 0xffffffff payload bytes. */
static int oversized_hook(struct rdmig_conn *c, bool is_server, void *ctx, struct rdmig_err *err)
{
	uint8_t f[RDMIG_WIRE_HDR_LEN];
	uint8_t b[64];
	size_t len;

	(void)is_server;
	(void)ctx;
	rdmig_wire_hdr_encode(f, RDMIG_MSG_AUTH, RDMIG_CHAN_CTRL, 0, 0);
	rdmig_put_be32(f + 8, 0xffffffffu);
	if (c->ops->ctrl_send(c, f, sizeof(f), err))
		return err->code;
	/* The destination's answer: it gives up on us. */
	return rdmig_auth_recv(c, b, sizeof(b), &len, HS_MS * 2, err);
}

static void hostile_oversized_connect(uint16_t port, bool check)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	int ret;

	hostile_cfg(&cfg, 1, &g_hkey);
	cfg.port = port;
	cfg.auth = oversized_hook;
	ret = rdmig_connect(&cfg, &c, &e);
	if (check)
		TH_CHECK(ret < 0 && !c, "oversized frame: the connector gets no connection (%d %s)",
			 ret, e.msg);
	rdmig_conn_destroy(c);
}

static void case_oversized_auth(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before, st;

	rdmig_listener_stats(l, &before);
	hostile_oversized_connect(port, true);
	st = wait_stat(l, &before, STAT(dropped), 1, LEGIT_MS, "oversized frame during auth");
	TH_CHECK(st.refused + st.closed > before.refused + before.closed &&
		     strstr(st.last_drop, "exceeds the maximum"),
		 "oversized frame: dropped, the log says why: %s", st.last_drop);
}

static void case_channels(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	int ret;

	rdmig_listener_stats(l, &before);
	hostile_cfg(&cfg, 8, &g_hkey);
	cfg.port = port;
	ret = rdmig_connect(&cfg, &c, &e);
	TH_CHECK(ret < 0 && !c && strstr(e.msg, "allows at most 2 data channels") &&
		     strstr(e.msg, "asked for 8") && strstr(e.msg, "--channels 2"),
		 "8 channels against a listener of 2: refused, naming both numbers and the fix "
		 "(%d): %s",
		 ret, e.msg);
	rdmig_conn_destroy(c);
	wait_stat(l, &before, STAT(refused), 1, LEGIT_MS, "8 channels");
}

/* ---- tcp: raw sockets ---------------------------------------------------- */

static void hello(uint8_t *buf, uint16_t chan, uint16_t nchan, uint64_t token)
{
	struct rdmig_wire_hello h = {.caps = RDMIG_CAP_STREAMS | RDMIG_CAP_AUTH,
				     .role = RDMIG_ROLE_CONNECTOR,
				     .nchan = nchan,
				     .chan_index = chan,
				     .max_ctrl = RDMIG_CTRL_MAX_PAYLOAD,
				     .token = token};

	rdmig_wire_pdata_encode(buf, RDMIG_MSG_HELLO, &h);
}

/* A tcp socket to port from `src` (NULL: any local address), every wait bounded. */
static int tcp_from(const char *src, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct timeval tv = {.tv_sec = WAIT_MS / 1000};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	inet_pton(AF_INET, g_opt.host, &a.sin_addr);
	if (src) {
		struct sockaddr_in s = {.sin_family = AF_INET};

		inet_pton(AF_INET, src, &s.sin_addr);
		if (bind(fd, (struct sockaddr *)&s, sizeof(s)))
			goto fail;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* A whole connection's HELLOs by hand (control + nchan data), each answered. */
static bool raw_group(uint16_t port, const char *src, unsigned nchan, uint64_t token, int *fds)
{
	uint8_t f[RDMIG_WIRE_PDATA_LEN];
	bool ok = true;

	for (unsigned i = 0; i <= nchan; i++) {
		fds[i] = tcp_from(src, port);
		hello(f, i == 0 ? RDMIG_CHAN_CTRL : (uint16_t)(i - 1), (uint16_t)nchan, token);
		ok = ok && fds[i] >= 0 && raw_send(fds[i], f, sizeof(f));
	}
	for (unsigned i = 0; i <= nchan && ok; i++)
		ok = raw_recv(fds[i], f, sizeof(f)) && f[5] == RDMIG_MSG_HELLO_ACK;
	return ok;
}

static void close_all(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* `f` (a HELLO frame's worth) on a fresh socket: the listener must refuse it, saying `want`. */
static void refused_frame(uint16_t port, const uint8_t *f, const char *what, const char *want)
{
	int fd = tcp_from(NULL, port);

	if (fd >= 0)
		raw_send(fd, f, RDMIG_WIRE_PDATA_LEN);
	expect_error_reply(fd, what, want);
	if (fd >= 0)
		close(fd);
}

static void send_garbage(uint16_t port)
{
	uint8_t f[RDMIG_WIRE_PDATA_LEN];

	memset(f, 0x41, sizeof(f));
	refused_frame(port, f, "garbage before HELLO", "bad magic");
}

static void tcp_garbage(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before;
	uint8_t f[RDMIG_WIRE_PDATA_LEN];

	rdmig_listener_stats(l, &before);
	send_garbage(port);
	/* A header claiming a huge payload where a 48-byte HELLO belongs. */
	hello(f, RDMIG_CHAN_CTRL, 1, 77);
	rdmig_put_be32(f + 8, 1u << 20);
	refused_frame(port, f, "HELLO header claiming 1 MiB", "payload length 1048576");
	hello(f, RDMIG_CHAN_CTRL, 1, 78);
	rdmig_put_be16(f + RDMIG_WIRE_HDR_LEN + 6, 0);
	refused_frame(port, f, "HELLO with 0 channels", "channel count 0");
	rdmig_put_be16(f + RDMIG_WIRE_HDR_LEN + 6, 65);
	refused_frame(port, f, "HELLO with 65 channels", "channel count 65 outside 1..64");
	wait_stat(l, &before, STAT(refused), 4, LEGIT_MS,
		  "garbage, huge header, 0 and 65 channels");
}

static void tcp_close_early(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before;
	uint8_t f[RDMIG_WIRE_PDATA_LEN];
	int fds[3], fd;

	rdmig_listener_stats(l, &before);
	/* A whole group, closed before the first AUTH frame. */
	TH_CHECK(raw_group(port, NULL, 2, th_mix64(g_opt.seed ^ 0xc1), fds),
		 "valid HELLOs answered on every channel");
	close_all(fds, 3);
	/* A control channel alone, closed before its data channels come. */
	fd = tcp_from(NULL, port);
	hello(f, RDMIG_CHAN_CTRL, 2, th_mix64(g_opt.seed ^ 0xc2));
	TH_CHECK(fd >= 0 && raw_send(fd, f, sizeof(f)) && raw_recv(fd, f, sizeof(f)),
		 "a lone control HELLO answered");
	if (fd >= 0)
		close(fd);
	wait_stat(l, &before, STAT(closed), 2, LEGIT_MS, "valid HELLOs, then close");
}

static void tcp_silence(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before, st;
	int fds[SILENT][3];
	uint8_t b[64];
	unsigned closed = 0;

	rdmig_listener_stats(l, &before);
	for (unsigned i = 0; i < SILENT; i++)
		TH_CHECK(raw_group(port, NULL, 2, th_mix64(g_opt.seed ^ (0x5100 + i)), fds[i]),
			 "silent peer %u: HELLOs answered", i);
	/* They wait in authentication now, each for HS_MS; a source must not wait behind them. */
	hostile_legit(l, port, "while silent peers wait in authentication", LEGIT_MS);
	st = wait_stat(l, &before, STAT(timed_out), SILENT, SILENT * HS_MS + LEGIT_MS,
		       "silent peers");
	TH_CHECK(strstr(st.last_drop, "not complete within") != NULL,
		 "silent peers: dropped at the handshake deadline: %s", st.last_drop);
	for (unsigned i = 0; i < SILENT; i++) {
		/* The control socket saw nothing of ours but the HELLO_ACK, then its close. */
		ssize_t n = recv(fds[i][0], b, sizeof(b), 0);

		closed += n == 0;
		close_all(fds[i], 3);
	}
	TH_CHECK(closed == SILENT, "silent peers: %u of %u control sockets closed by the listener",
		 closed, SILENT);
}

/* A genuine session through a recording relay; its AUTH frames replayed raw. */
static void tcp_replay(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	struct th_relay *r = NULL;
	pthread_t th;
	struct legit_dst d = {.l = l, .wait_ms = LEGIT_MS};
	const uint8_t *rec[3];
	size_t nrec[3], off;
	uint8_t b[RDMIG_WIRE_HDR_LEN + 64];
	int fds[3] = {-1, -1, -1}, sent = 0;

	if (!TH_CHECK_CALL(th_relay_start(port, 1u << 16, &r, &e), &e, "replay: relay"))
		return;
	/* A genuine session that transfers nothing: accept it here and drop it. */
	if (pthread_create(&th, NULL, legit_dst_thread, &d)) {
		th_relay_destroy(r);
		return;
	}
	hostile_cfg(&cfg, 2, &g_hkey);
	cfg.port = th_relay_port(r);
	TH_CHECK_CALL(rdmig_connect(&cfg, &c, &e), &e, "replay: genuine session through a relay");
	if (c)
		src_transfer(c, LEGIT_SIZE, g_opt.seed);
	rdmig_conn_destroy(c);
	pthread_join(th, NULL);
	th_relay_stop(r, WAIT_MS);
	for (unsigned i = 0; i < 3; i++)
		rec[i] = th_relay_record(r, i, 0, &nrec[i]);
	rdmig_listener_stats(l, &before);
	/* The recorded HELLOs again, then every AUTH frame the source sent, in order. */
	for (unsigned i = 0; i < 3; i++) {
		fds[i] = tcp_from(NULL, port);
		if (fds[i] < 0 || !rec[i] || nrec[i] < RDMIG_WIRE_PDATA_LEN ||
		    !raw_send(fds[i], rec[i], RDMIG_WIRE_PDATA_LEN) ||
		    !raw_recv(fds[i], b, RDMIG_WIRE_PDATA_LEN))
			break;
	}
	for (off = RDMIG_WIRE_PDATA_LEN; rec[0] && off + RDMIG_WIRE_HDR_LEN <= nrec[0];) {
		size_t n = RDMIG_WIRE_HDR_LEN + rdmig_get_be32(rec[0] + off + 8);

		if (off + n > nrec[0])
			break;
		if (rec[0][off + 5] == RDMIG_MSG_AUTH && raw_send(fds[0], rec[0] + off, n))
			sent++;
		off += n;
	}
	TH_CHECK(sent == 2, "replay: the source's 2 AUTH frames replayed (%d)", sent);
	wait_stat(l, &before, STAT(auth_failed), 1, LEGIT_MS, "replayed AUTH frames");
	/* What came back: a fresh challenge, a rejection, and no LAYOUT. */
	while (raw_recv(fds[0], b, RDMIG_WIRE_HDR_LEN)) {
		uint32_t n = rdmig_get_be32(b + 8);

		TH_CHECK(b[5] != RDMIG_MSG_LAYOUT && b[5] != RDMIG_MSG_RINGS,
			 "replay: the listener sent %s", rdmig_msg_type_name(b[5]));
		if (n > sizeof(b) - RDMIG_WIRE_HDR_LEN ||
		    !raw_recv(fds[0], b + RDMIG_WIRE_HDR_LEN, n))
			break;
	}
	close_all(fds, 3);
	th_relay_destroy(r);
}

static void tcp_oversized_raw(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before, st;
	uint8_t f[RDMIG_WIRE_HDR_LEN];
	int fds[2];

	rdmig_listener_stats(l, &before);
	TH_CHECK(raw_group(port, NULL, 1, th_mix64(g_opt.seed ^ 0x0f), fds),
		 "oversized: HELLOs answered");
	rdmig_wire_hdr_encode(f, RDMIG_MSG_AUTH, RDMIG_CHAN_CTRL, 0, 0x7fffffffu);
	raw_send(fds[0], f, sizeof(f));
	st = wait_stat(l, &before, STAT(refused), 1, LEGIT_MS, "AUTH frame of 2 GiB");
	TH_CHECK(strstr(st.last_drop, "exceeds the maximum") != NULL,
		 "AUTH frame of 2 GiB: dropped as %s", st.last_drop);
	close_all(fds, 2);
}

/* Idle sockets, and control channels whose data channels never come. */
static bool tcp_flood_open(uint16_t port, int *idle, unsigned nidle, int *half, unsigned nhalf,
			   const char *half_src)
{
	uint8_t f[RDMIG_WIRE_PDATA_LEN];
	unsigned ok = 0, hok = 0;

	for (unsigned i = 0; i < nidle; i++) {
		idle[i] = tcp_from(NULL, port);
		ok += idle[i] >= 0;
	}
	for (unsigned i = 0; i < nhalf; i++) {
		half[i] = tcp_from(half_src, port);
		hello(f, RDMIG_CHAN_CTRL, 2, th_mix64(g_opt.seed ^ (0xf100 + i)));
		hok += half[i] >= 0 && raw_send(half[i], f, sizeof(f));
	}
	return TH_CHECK(ok == nidle && hok == nhalf,
			"flood: %u of %u idle sockets and %u of %u lone control HELLOs open", ok,
			nidle, hok, nhalf);
}

static void tcp_flood(struct rdmig_listener *l, uint16_t port)
{
	static int idle[FLOOD_TCP], half[FLOOD_GROUPS];
	struct rdmig_listener_stats before, st;
	const char *src2 = "127.0.0.2";
	int probe = tcp_from(src2, port);

	/* A second loopback address where the host has one: incomplete groups come from it. */
	if (probe < 0)
		src2 = NULL;
	else
		close(probe);
	rdmig_listener_stats(l, &before);
	tcp_flood_open(port, idle, FLOOD_TCP, half, FLOOD_GROUPS, src2);
	hostile_legit(l, port, "with the flood held open", LEGIT_MS);
	rdmig_listener_stats(l, &st);
	/* Per-address limits of 32 sockets and 16 groups: everything beyond went, oldest first. */
	TH_CHECK(st.evicted - before.evicted >= (FLOOD_TCP - 32) + (FLOOD_GROUPS - 16),
		 "flood: %" PRIu64 " evicted (at least %d expected), last: %s",
		 st.evicted - before.evicted, (FLOOD_TCP - 32) + (FLOOD_GROUPS - 16), st.last_drop);
	close_all(idle, FLOOD_TCP);
	close_all(half, FLOOD_GROUPS);
}

/* ---- rdma: raw rdma_cm ids --------------------------------------------- */

static void rdma_garbage(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before;
	char why[160];
	int ret;

	rdmig_listener_stats(l, &before);
	ret = cm_garbage(g_opt.host, port, why, sizeof(why));
	TH_CHECK(ret == 0 && strstr(why, "rdmig: ") && strstr(why, "magic"),
		 "garbage private data: rejected with '%s'", why);
	wait_stat(l, &before, STAT(refused), 1, LEGIT_MS, "garbage private data");
}

static void rdma_close_early(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before;
	struct cm_group *g = NULL;
	int ret;

	rdmig_listener_stats(l, &before);
	ret = cm_group_open(g_opt.host, port, 1, th_mix64(g_opt.seed ^ 0xc1), &g);
	TH_CHECK(ret == 0, "valid HELLOs established on every channel (%d)", ret);
	TH_CHECK(cm_group_rings_hidden(g), "the HELLO_ACKs carry no stream ring, address or rkey");
	cm_group_close(g);
	wait_stat(l, &before, STAT(closed), 1, LEGIT_MS, "valid HELLOs, then close");
}

static void rdma_silence(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before, st;
	struct cm_group *g[SILENT];
	unsigned up = 0;

	rdmig_listener_stats(l, &before);
	for (unsigned i = 0; i < SILENT; i++)
		up += cm_group_open(g_opt.host, port, 1, th_mix64(g_opt.seed ^ (0x5100 + i)),
				    &g[i]) == 0;
	TH_CHECK(up == SILENT, "silent peers: %u of %u established", up, SILENT);
	hostile_legit(l, port, "while silent peers wait in authentication", LEGIT_MS);
	st = wait_stat(l, &before, STAT(timed_out), up, SILENT * HS_MS + LEGIT_MS, "silent peers");
	TH_CHECK(strstr(st.last_drop, "not complete within") != NULL,
		 "silent peers: dropped at the handshake deadline: %s", st.last_drop);
	for (unsigned i = 0; i < SILENT; i++)
		cm_group_close(g[i]);
}

static void rdma_flood(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_listener_stats before, st;
	struct cm_flood *f = NULL;
	unsigned n;

	rdmig_listener_stats(l, &before);
	n = cm_flood_open(g_opt.host, port, FLOOD_RDMA, g_opt.seed, &f);
	TH_CHECK(n == FLOOD_RDMA, "flood: %u of %d idle connect requests sent", n, FLOOD_RDMA);
	hostile_legit(l, port, "with the idle connect requests held", LEGIT_MS);
	rdmig_listener_stats(l, &st);
	TH_CHECK(st.evicted - before.evicted >= FLOOD_RDMA - 16,
		 "flood: %" PRIu64 " incomplete connections evicted (at least %d expected), "
		 "last: %s",
		 st.evicted - before.evicted, FLOOD_RDMA - 16, st.last_drop);
	cm_flood_close(f);
}

/* ---- the suite ---------------------------------------------------------- */

static void keys_init(void)
{
	make_key(&g_hkey, 0);
	make_key(&g_hwrong, 0xff);
}

int run_hostile(void)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_listener *l = NULL;
	struct rdmig_listener_stats st;
	bool tcp = g_opt.backend == RDMIG_BACKEND_TCP;
	uint16_t port;

	th_set_role("hostile");
	keys_init();
	hostile_cfg(&cfg, 2, &g_hkey);
	cfg.connect_timeout_ms = HS_MS;
	cfg.auth = spy_auth;
	cfg.auth_ctx = NULL;
	if (!TH_CHECK_CALL(rdmig_listen(&cfg, &l, &e), &e, "keyed listener of 2 channels"))
		return 1;
	port = rdmig_listener_port(l);
	hostile_legit(l, port, "before anything else", LEGIT_MS);

	if (tcp)
		tcp_garbage(l, port);
	else
		rdma_garbage(l, port);
	hostile_legit(l, port, "after garbage", LEGIT_MS);
	if (tcp)
		tcp_close_early(l, port);
	else
		rdma_close_early(l, port);
	hostile_legit(l, port, "after peers closed before AUTH", LEGIT_MS);
	if (tcp)
		tcp_silence(l, port);
	else
		rdma_silence(l, port);
	hostile_legit(l, port, "after silent peers", LEGIT_MS);
	case_wrong_key(l, port);
	hostile_legit(l, port, "after a wrong key", LEGIT_MS);
	if (tcp) {
		tcp_replay(l, port);
		hostile_legit(l, port, "after a replayed AUTH", LEGIT_MS);
	} else {
		th_note("replay: tcp only (a raw rdma peer cannot take over recorded SENDs; the "
			"nonces that defeat replay are the same code on both backends)");
	}
	case_oversized_auth(l, port);
	if (tcp)
		tcp_oversized_raw(l, port);
	hostile_legit(l, port, "after oversized frames", LEGIT_MS);
	case_channels(l, port);
	hostile_legit(l, port, "after bad channel counts", LEGIT_MS);
	if (tcp)
		tcp_flood(l, port);
	else
		rdma_flood(l, port);
	hostile_legit(l, port, "after the flood closed", LEGIT_MS);

	rdmig_listener_stats(l, &st);
	th_note("info: listener: %" PRIu64 " accepted, %" PRIu64 " dropped (%" PRIu64
		" refused, %" PRIu64 " closed, %" PRIu64 " timed out, %" PRIu64 " evicted, %" PRIu64
		" failed authentication, %" PRIu64 " busy)",
		st.accepted, st.dropped, st.refused, st.closed, st.timed_out, st.evicted,
		st.auth_failed, st.busy);
	rdmig_listener_destroy(l);
	return th_failures() ? 1 : 0;
}

/* ---- against an `rdmig listen` ------------------------------------------ */

int run_hostile_client(void)
{
	static int idle[FLOOD_TCP], half[FLOOD_GROUPS];
	struct cm_group *silent = NULL;
	struct cm_flood *flood = NULL;
	uint16_t port = g_opt.port;
	int grp[3] = {-1, -1, -1};
	uint8_t b[64];
	char why[160];

	th_set_role("hostile-client");
	keys_init();
	if (g_opt.backend == RDMIG_BACKEND_TCP) {
		send_garbage(port);
		TH_CHECK(raw_group(port, NULL, 2, th_mix64(g_opt.seed ^ 1), grp),
			 "valid HELLOs, then close");
		close_all(grp, 3);
		TH_CHECK(raw_group(port, NULL, 2, th_mix64(g_opt.seed ^ 2), grp),
			 "valid HELLOs, then silence (held)");
		tcp_flood_open(port, idle, FLOOD_TCP, half, FLOOD_GROUPS, NULL);
	} else {
		TH_CHECK(cm_garbage(g_opt.host, port, why, sizeof(why)) == 0 &&
			     strstr(why, "magic"),
			 "garbage private data: rejected with '%s'", why);
		if (TH_CHECK(
			cm_group_open(g_opt.host, port, 1, th_mix64(g_opt.seed ^ 1), &silent) == 0,
			"valid HELLOs, then close"))
			cm_group_close(silent);
		silent = NULL;
		TH_CHECK(cm_group_open(g_opt.host, port, 1, th_mix64(g_opt.seed ^ 2), &silent) == 0,
			 "valid HELLOs, then silence (held)");
		cm_flood_open(g_opt.host, port, FLOOD_RDMA, g_opt.seed, &flood);
	}
	hostile_oversized_connect(port, true);
	printf("hostile-client: holding\n");
	fflush(stdout);
	/* Until the script is done with the legitimate migration. */
	while (read(STDIN_FILENO, b, sizeof(b)) > 0)
		;
	close_all(grp, 3);
	close_all(idle, g_opt.backend == RDMIG_BACKEND_TCP ? FLOOD_TCP : 0);
	close_all(half, g_opt.backend == RDMIG_BACKEND_TCP ? FLOOD_GROUPS : 0);
	cm_group_close(silent);
	cm_flood_close(flood);
	return th_failures() ? 1 : 0;
}
