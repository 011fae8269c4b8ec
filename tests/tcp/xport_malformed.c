/* SPDX-License-Identifier: MIT */
/*
 * xport_check malformed (tcp only; xport_check.c has the overview): a raw
 * peer built by hand sends what no rdmig peer would, at the listener and on
 * an established connection, and fake listeners answer rdmig_connect()
 * wrongly. Each must be refused with a clear error, nothing may land outside
 * what was accepted, and the listener must go on serving good connections.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <zstd.h>

#include "bytes.h"
#include "clock.h"
#include "th_check.h"
#include "th_content.h"
#include "xport_check.h"

/* One frame: header decoded into *h, payload (up to cap) into buf. */
static bool raw_frame(int fd, struct rdmig_wire_hdr *h, uint8_t *buf, size_t cap)
{
	uint8_t hb[RDMIG_WIRE_HDR_LEN];

	if (!raw_recv(fd, hb, sizeof(hb)) ||
	    rdmig_wire_hdr_decode(hb, sizeof(hb), RDMIG_CTRL_MAX_PAYLOAD, h, NULL) ||
	    h->length > cap)
		return false;
	return raw_recv(fd, buf, h->length);
}

/* Capabilities the raw peer announces (malformed zstd cases change it). */
static uint32_t g_raw_caps = RDMIG_CAP_STREAMS | RDMIG_CAP_ZSTD;

void raw_hello_frame(uint8_t *buf, uint8_t type, uint16_t role, uint16_t chan_index, uint16_t nchan,
		     uint64_t token)
{
	struct rdmig_wire_hello h = {.caps = g_raw_caps,
				     .role = role,
				     .nchan = nchan,
				     .chan_index = chan_index,
				     .max_ctrl = RDMIG_CTRL_MAX_PAYLOAD,
				     .token = token};

	memset(buf, 0, RDMIG_WIRE_PDATA_LEN);
	rdmig_wire_pdata_encode(buf, type, &h);
}

/* The listener's answer to a bad HELLO: an ERROR frame whose text contains `want`. */
void expect_error_reply(int fd, const char *what, const char *want)
{
	struct rdmig_wire_hdr h;
	uint8_t buf[1024];
	char msg[300] = "";
	int code = 0;

	if (fd < 0) {
		TH_CHECK(false, "%s: could not connect", what);
		return;
	}
	if (!raw_frame(fd, &h, buf, sizeof(buf)) || h.type != RDMIG_MSG_ERROR ||
	    rdmig_wire_error_decode(buf, h.length, &code, msg, sizeof(msg), NULL)) {
		TH_CHECK(false, "%s: listener answered without a readable ERROR frame", what);
		return;
	}
	TH_CHECK(strstr(msg, want) != NULL, "%s: listener refused with \"%s\" (%d)", what, msg,
		 code);
	TH_CHECK(recv(fd, buf, 1, 0) == 0, "%s: listener closed the socket afterwards", what);
}

/* A fake listener for rdmig_connect(): answers the HELLO with `reply`. */
struct fake_server {
	int lfd;
	uint16_t port;
	const uint8_t *reply;
	size_t reply_len;
	bool got_hello;
	pthread_t th;
};

static void *fake_server_thread(void *arg)
{
	struct fake_server *f = arg;
	uint8_t hello[RDMIG_WIRE_PDATA_LEN];
	struct pollfd p = {.fd = f->lfd, .events = POLLIN};
	int fd;

	if (poll(&p, 1, WAIT_MS) != 1)
		return NULL;
	fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	f->got_hello = raw_recv(fd, hello, sizeof(hello));
	if (f->reply_len)
		raw_send(fd, f->reply, f->reply_len);
	/* Hold the socket until the connector gives up and closes it. */
	p = (struct pollfd){.fd = fd, .events = POLLIN};
	poll(&p, 1, WAIT_MS);
	close(fd);
	return NULL;
}

static bool fake_server_start(struct fake_server *f, const uint8_t *reply, size_t len)
{
	memset(f, 0, sizeof(*f));
	f->reply = reply;
	f->reply_len = len;
	f->lfd = th_tcp_listen(g_opt.host, &f->port);
	if (f->lfd < 0)
		return false;
	if (pthread_create(&f->th, NULL, fake_server_thread, f)) {
		close(f->lfd);
		return false;
	}
	return true;
}

static void fake_server_stop(struct fake_server *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
}

static void connect_expect(uint16_t port, int timeout_ms, const char *what, int want_code,
			   const char *want1, const char *want2)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	int ret;

	cfg_init(&cfg, 1);
	cfg.port = port;
	cfg.connect_timeout_ms = timeout_ms;
	ret = rdmig_connect(&cfg, &c, &e);
	TH_CHECK(ret < 0 && (!want_code || ret == want_code) && strstr(e.msg, want1) &&
		     (!want2 || strstr(e.msg, want2)),
		 "connect to %s: error %d \"%s\"", what, ret, e.msg);
	rdmig_conn_destroy(c);
}

static void malformed_connect_side(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	struct fake_server f;
	uint8_t reply[RDMIG_WIRE_PDATA_LEN];
	uint16_t port = 0;
	int fd;

	/* A port nobody listens on: bind, read the port, close. */
	inet_pton(AF_INET, g_opt.host, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &sl))
		port = ntohs(sa.sin_port);
	close(fd);
	connect_expect(port, 10000, "a closed port", -ECONNREFUSED, "refused", "--listen");

	memset(reply, 0x41, sizeof(reply));
	if (TH_CHECK(fake_server_start(&f, reply, sizeof(reply)), "fake listener (bad magic)")) {
		connect_expect(f.port, 10000, "a listener answering with a bad magic", 0,
			       "bad magic", NULL);
		fake_server_stop(&f);
	}

	raw_hello_frame(reply, RDMIG_MSG_HELLO_ACK, RDMIG_ROLE_ACCEPTOR, RDMIG_CHAN_CTRL, 1, 1);
	reply[4] = RDMIG_WIRE_VERSION + 1;
	if (TH_CHECK(fake_server_start(&f, reply, sizeof(reply)), "fake listener (version 2)")) {
		connect_expect(f.port, 10000, "a listener of wire version 2", -EPROTONOSUPPORT,
			       "version 2", "version 1");
		fake_server_stop(&f);
	}

	if (TH_CHECK(fake_server_start(&f, NULL, 0), "fake listener (silent)")) {
		connect_expect(f.port, 1500, "a listener that never answers", -ETIMEDOUT,
			       "HELLO_ACK", NULL);
		fake_server_stop(&f);
	}
}

void *good_dst_thread(void *arg)
{
	struct good_ctx *g = arg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	ret = rdmig_accept(g->l, WAIT_MS, &c, &e);
	g->ok = TH_CHECK_CALL(ret, &e, "accepting the good connection") &&
		dst_transfer(c, 8 << 20, g_opt.seed);
	rdmig_conn_destroy(c);
	return NULL;
}

void good_src(const char *host, uint16_t port, const char *when)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_conn *c = NULL;
	bool ok;
	int ret;

	cfg_init(&cfg, 2);
	cfg.host = host;
	cfg.port = port;
	ret = rdmig_connect(&cfg, &c, &e);
	ok = TH_CHECK_CALL(ret, &e, "connecting the good source") &&
	     src_transfer(c, 8 << 20, g_opt.seed);
	TH_CHECK(ok, "listener still accepts and transfers correctly %s", when);
	rdmig_conn_destroy(c);
}

/* Victim: the rdmig destination of one malformed case. */
struct victim {
	struct rdmig_listener *l;
	bool ctrl; /* wait in ctrl_recv instead of wait_fence */
	uint8_t *mem;
	int ret;
	bool failed_after;
	struct rdmig_err err;
};

static void *victim_thread(void *arg)
{
	struct victim *v = arg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct rdmig_fence f;
	uint32_t id, ro;
	uint8_t buf[64];
	uint16_t type;
	size_t len;

	v->ret = rdmig_accept(v->l, WAIT_MS, &c, &v->err);
	if (v->ret)
		return NULL;
	v->ret = rdmig_reg(c, "ram", v->mem, VICTIM_LEN, RDMIG_REG_REMOTE_WRITE, &id, &v->err);
	if (!v->ret)
		v->ret = rdmig_reg(c, "ro", v->mem + VICTIM_LEN, 4096, 0, &ro, &v->err);
	if (!v->ret)
		v->ret = rdmig_expose(c, &v->err);
	if (!v->ret) {
		if (v->ctrl)
			v->ret =
			    rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &v->err);
		else
			v->ret = rdmig_wait_fence(c, 0, WAIT_MS, &f, &v->err);
	}
	/* Failed for good: a second call reports the same cause. */
	v->failed_after =
	    rdmig_conn_failed(c, NULL) && rdmig_wait_fence(c, 0, 1000, &f, &e) == v->ret;
	rdmig_conn_destroy(c);
	return NULL;
}

bool raw_session(uint16_t port, int *cfd, int *dfd, uint32_t *ram)
{
	uint8_t buf[RDMIG_CTRL_MAX_PAYLOAD], hello[RDMIG_WIRE_PDATA_LEN];
	struct rdmig_wire_region regs[RDMIG_MAX_REGIONS];
	struct rdmig_wire_hdr h;
	uint64_t token = th_mix64(g_opt.seed ^ (uint64_t)rdmig_now_s());
	uint32_t n;

	*cfd = raw_connect(port);
	*dfd = raw_connect(port);
	if (*cfd < 0 || *dfd < 0)
		return false;
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 1, token);
	if (!raw_send(*cfd, hello, sizeof(hello)) || !raw_recv(*cfd, buf, RDMIG_WIRE_PDATA_LEN))
		return false;
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, 0, 1, token);
	if (!raw_send(*dfd, hello, sizeof(hello)) || !raw_recv(*dfd, buf, RDMIG_WIRE_PDATA_LEN))
		return false;
	if (!raw_frame(*cfd, &h, buf, sizeof(buf)) || h.type != RDMIG_MSG_LAYOUT ||
	    rdmig_wire_layout_decode(buf, h.length, regs, RDMIG_MAX_REGIONS, &n, NULL))
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (!strcmp(regs[i].name, "ram")) {
			*ram = regs[i].id;
			return true;
		}
	}
	return false;
}

size_t write_frame(uint8_t *buf, uint32_t region, uint64_t off, uint32_t len)
{
	struct rdmig_wire_write w = {.region = region, .len = len, .offset = off};

	rdmig_wire_hdr_encode(buf, RDMIG_MSG_WRITE, 0, 0, RDMIG_WIRE_WRITE_LEN + len);
	rdmig_wire_write_encode(buf + RDMIG_WIRE_HDR_LEN, &w);
	return RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_WRITE_LEN;
}

enum bad_case {
	BAD_OFFSET,
	BAD_TRUNCATED,
	BAD_HUGE_LEN,
	BAD_FENCE_COUNT,
	BAD_STREAM_ON_PAGES,
	BAD_READONLY,
	BAD_CTRL_HUGE,
	BAD_ZSTD_SIZE,	     /* zstd frame of 4096 bytes, prefix says 8192 */
	BAD_ZSTD_GARBAGE,    /* flagged WRITE whose data is not zstd */
	BAD_ZSTD_TWO_FRAMES, /* two frames of 2048 bytes, prefix says 4096 */
	BAD_ZSTD_FENCE,	     /* the zstd flag on a FENCE */
	BAD_ZSTD_NOCAP,	     /* compressed WRITE from a peer that did not announce zstd */
};

/* A ZSTD-flagged WRITE frame: prefix says `len`, followed by `zlen` bytes of z. */
static bool send_zwrite(int fd, uint32_t region, uint32_t len, const void *z, size_t zlen)
{
	struct rdmig_wire_write w = {.region = region, .len = len, .offset = 0};
	uint8_t f[RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_WRITE_LEN];

	rdmig_wire_hdr_encode_flags(f, RDMIG_MSG_WRITE, RDMIG_HDR_F_ZSTD, 0, 0,
				    (uint32_t)(RDMIG_WIRE_WRITE_LEN + zlen));
	rdmig_wire_write_encode(f + RDMIG_WIRE_HDR_LEN, &w);
	return raw_send(fd, f, sizeof(f)) && raw_send(fd, z, zlen);
}

static void malformed_case(uint16_t port, struct rdmig_listener *l, enum bad_case bc,
			   const char *what, const char *want1, const char *want2)
{
	static uint8_t payload[8192];
	struct victim v = {.l = l, .ctrl = bc == BAD_CTRL_HUGE};
	uint8_t f[64], z[2 * 8192];
	size_t zn, zn2;
	int cfd = -1, dfd = -1;
	uint32_t ram = 0;
	pthread_t th;
	size_t n;
	bool sent = false, intact = true;

	v.mem = calloc(1, VICTIM_LEN + 4096);
	if (!v.mem || pthread_create(&th, NULL, victim_thread, &v)) {
		TH_CHECK(false, "%s: setup", what);
		free(v.mem);
		return;
	}
	memset(payload, 0xab, sizeof(payload));
	g_raw_caps = RDMIG_CAP_STREAMS | (bc == BAD_ZSTD_NOCAP ? 0 : RDMIG_CAP_ZSTD);
	if (raw_session(port, &cfd, &dfd, &ram)) {
		switch (bc) {
		case BAD_OFFSET:
			n = write_frame(f, ram, VICTIM_LEN - 100, 4096);
			sent = raw_send(dfd, f, n) && raw_send(dfd, payload, 4096);
			break;
		case BAD_TRUNCATED:
			n = write_frame(f, ram, 0, 4096);
			sent = raw_send(dfd, f, n) && raw_send(dfd, payload, 1000);
			close(dfd);
			close(cfd);
			dfd = cfd = -1;
			break;
		case BAD_HUGE_LEN:
			rdmig_wire_hdr_encode(f, RDMIG_MSG_WRITE, 0, 0, 0xfffffff0u);
			sent = raw_send(dfd, f, RDMIG_WIRE_HDR_LEN);
			break;
		case BAD_FENCE_COUNT: {
			struct rdmig_fence fc = {.seq = 7, .bytes = 8192, .writes = 2};

			n = write_frame(f, ram, 0, 4096);
			sent = raw_send(dfd, f, n) && raw_send(dfd, payload, 4096);
			rdmig_wire_hdr_encode(f, RDMIG_MSG_FENCE, 0, 0, RDMIG_WIRE_FENCE_LEN);
			rdmig_wire_fence_encode(f + RDMIG_WIRE_HDR_LEN, &fc);
			sent = sent && raw_send(dfd, f, RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_FENCE_LEN);
			break;
		}
		case BAD_STREAM_ON_PAGES:
			rdmig_wire_hdr_encode(f, RDMIG_MSG_STREAM_DATA, 0, 0, 10);
			sent = raw_send(dfd, f, RDMIG_WIRE_HDR_LEN) && raw_send(dfd, payload, 10);
			break;
		case BAD_READONLY:
			n = write_frame(f, ram + 1, 0, 4096);
			sent = raw_send(dfd, f, n) && raw_send(dfd, payload, 4096);
			break;
		case BAD_CTRL_HUGE:
			rdmig_wire_hdr_encode(f, RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 1, 0xffffffffu);
			sent = raw_send(cfd, f, RDMIG_WIRE_HDR_LEN);
			break;
		case BAD_ZSTD_SIZE:
		case BAD_ZSTD_NOCAP:
			zn = ZSTD_compress(z, sizeof(z), payload, 4096, 3);
			sent = !ZSTD_isError(zn) &&
			       send_zwrite(dfd, ram, bc == BAD_ZSTD_SIZE ? 8192 : 4096, z, zn);
			break;
		case BAD_ZSTD_GARBAGE:
			sent = send_zwrite(dfd, ram, 4096, payload, 100);
			break;
		case BAD_ZSTD_TWO_FRAMES:
			zn = ZSTD_compress(z, sizeof(z) / 2, payload, 2048, 3);
			zn2 = ZSTD_isError(zn)
				  ? zn
				  : ZSTD_compress(z + zn, sizeof(z) / 2, payload, 2048, 3);
			sent = !ZSTD_isError(zn2) && send_zwrite(dfd, ram, 4096, z, zn + zn2);
			break;
		case BAD_ZSTD_FENCE: {
			struct rdmig_fence fc = {.seq = 1};

			rdmig_wire_hdr_encode_flags(f, RDMIG_MSG_FENCE, RDMIG_HDR_F_ZSTD, 0, 0,
						    RDMIG_WIRE_FENCE_LEN);
			rdmig_wire_fence_encode(f + RDMIG_WIRE_HDR_LEN, &fc);
			sent = raw_send(dfd, f, RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_FENCE_LEN);
			break;
		}
		}
	}
	g_raw_caps = RDMIG_CAP_STREAMS | RDMIG_CAP_ZSTD;
	if (!sent) {
		/* The victim may wait in accept or receive: unblock it by closing everything. */
		TH_CHECK(false, "%s: raw peer could not set up the session", what);
	}
	if (cfd >= 0 && !sent)
		close(cfd), cfd = -1;
	if (dfd >= 0 && !sent)
		close(dfd), dfd = -1;
	pthread_join(th, NULL);
	if (cfd >= 0)
		close(cfd);
	if (dfd >= 0)
		close(dfd);
	if (!sent) {
		free(v.mem);
		return;
	}
	/* Nothing may land outside what was accepted; a refused WRITE lands nowhere. */
	for (size_t i = 0; i < VICTIM_LEN + 4096; i++) {
		bool may = (bc == BAD_FENCE_COUNT && i < 4096) || (bc == BAD_TRUNCATED && i < 1000);

		if (v.mem[i] && !may) {
			intact = false;
			break;
		}
	}
	TH_CHECK(v.ret < 0 && strstr(v.err.msg, want1) && (!want2 || strstr(v.err.msg, want2)),
		 "%s: rejected with %d \"%s\"", what, v.ret, v.err.msg);
	TH_CHECK(v.failed_after, "%s: connection stays failed with the same error", what);
	TH_CHECK(intact, "%s: no byte landed outside the accepted writes", what);
	free(v.mem);
}

int run_malformed(void)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_listener *l = NULL;
	struct good_ctx g;
	uint8_t frame[RDMIG_WIRE_PDATA_LEN];
	int fd, silent, half;
	pthread_t th;
	uint16_t port;
	int ret;

	if (g_opt.backend != RDMIG_BACKEND_TCP) {
		th_note("SKIP malformed: hand-built frames need the tcp backend");
		return 0;
	}
	th_set_role("malformed");
	malformed_connect_side();

	cfg_init(&cfg, RDMIG_MAX_CHANNELS);
	cfg.connect_timeout_ms = 3000; /* how long the listener waits for a HELLO */
	ret = rdmig_listen(&cfg, &l, &e);
	if (!TH_CHECK_CALL(ret, &e, "listen"))
		return 1;
	port = rdmig_listener_port(l);

	/* Garbage at the listener while an accept is waiting for a good connection. */
	g = (struct good_ctx){.l = l};
	if (pthread_create(&th, NULL, good_dst_thread, &g)) {
		rdmig_listener_destroy(l);
		return 1;
	}
	fd = raw_connect(port);
	memset(frame, 0x41, sizeof(frame));
	if (fd >= 0)
		raw_send(fd, frame, sizeof(frame));
	expect_error_reply(fd, "HELLO with a bad magic", "bad magic");
	close(fd);

	fd = raw_connect(port);
	raw_hello_frame(frame, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 1, 42);
	frame[4] = RDMIG_WIRE_VERSION + 1;
	if (fd >= 0)
		raw_send(fd, frame, sizeof(frame));
	expect_error_reply(fd, "HELLO with wire version 2", "version 2");
	close(fd);

	fd = raw_connect(port);
	raw_hello_frame(frame, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 1, 43);
	rdmig_put_be16(frame + RDMIG_WIRE_HDR_LEN + 6, 0); /* nchan 0 */
	if (fd >= 0)
		raw_send(fd, frame, sizeof(frame));
	expect_error_reply(fd, "HELLO with 0 channels", "channel count 0");
	close(fd);

	/* Left open: a silent socket, and a connection whose data channels never come. */
	silent = raw_connect(port);
	half = raw_connect(port);
	raw_hello_frame(frame, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 2, 44);
	if (half >= 0)
		raw_send(half, frame, sizeof(frame));

	good_src(g_opt.host, port, "after garbage, a silent socket and a half-open connection");
	pthread_join(th, NULL);
	TH_CHECK(g.ok, "destination side of that transfer");
	if (silent >= 0)
		close(silent);
	if (half >= 0)
		close(half);

	malformed_case(port, l, BAD_OFFSET, "WRITE beyond the region", "rejected WRITE",
		       "beyond region");
	malformed_case(port, l, BAD_TRUNCATED, "WRITE with a truncated payload, then close",
		       "truncated WRITE", "1000 of 4096");
	malformed_case(port, l, BAD_HUGE_LEN, "WRITE header with length 0xfffffff0",
		       "exceeds the maximum", "page channel 0");
	malformed_case(port, l, BAD_FENCE_COUNT, "FENCE claiming more than arrived", "8192",
		       "4096 bytes in 1 writes arrived");
	malformed_case(port, l, BAD_STREAM_ON_PAGES, "STREAM_DATA on a page channel",
		       "unexpected STREAM_DATA on page channel 0", NULL);
	malformed_case(port, l, BAD_READONLY, "WRITE into a region not exposed for writing",
		       "not writable", NULL);
	malformed_case(port, l, BAD_CTRL_HUGE, "control message with length 0xffffffff",
		       "exceeds the maximum", "control");
	malformed_case(port, l, BAD_ZSTD_SIZE, "zstd WRITE that decompresses to 4096, not 8192",
		       "rejected WRITE", "decompresses to 4096 bytes, the prefix says 8192");
	malformed_case(port, l, BAD_ZSTD_GARBAGE, "zstd WRITE with garbage data", "rejected WRITE",
		       "not a zstd frame");
	malformed_case(port, l, BAD_ZSTD_TWO_FRAMES, "zstd WRITE with two frames", "rejected WRITE",
		       "expected one frame");
	malformed_case(port, l, BAD_ZSTD_FENCE, "zstd flag on a FENCE", "malformed frame",
		       "allowed on WRITE only");
	malformed_case(port, l, BAD_ZSTD_NOCAP, "zstd WRITE from a peer without the capability",
		       "rejected WRITE", "did not announce zstd");

	resume_after_timeout(l, port);
	abort_wakes(l, port);
	interleaved(l, port);
	expiry(l, port);

	/* And the listener is still good for real work. */
	g = (struct good_ctx){.l = l};
	if (!pthread_create(&th, NULL, good_dst_thread, &g)) {
		good_src(g_opt.host, port, "after every malformed session");
		pthread_join(th, NULL);
		TH_CHECK(g.ok, "destination side of that transfer");
	}
	rdmig_listener_destroy(l);
	dual_stack();
	return th_failures() ? 1 : 0;
}
