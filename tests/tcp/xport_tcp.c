/* SPDX-License-Identifier: MIT */
/*
 * xport_check malformed, the tcp behaviours beyond bad frames (run by
 * run_malformed(); xport_check.c has the overview): a receive that timed out
 * mid-frame resumes, abort wakes blocked receivers, interleaved connectors
 * each get their own sockets, incomplete connections expire, and a listener
 * without an address takes IPv4 and IPv6.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "th_check.h"
#include "th_content.h"
#include "xport_check.h"

/* Accept + register + expose in a thread while the raw peer does its handshake. */
struct session {
	struct rdmig_listener *l;
	struct rdmig_conn *c;
	uint8_t *mem;
	int ret;
	struct rdmig_err err;
};

static void *session_accept_thread(void *arg)
{
	struct session *s = arg;
	uint32_t id;

	s->ret = rdmig_accept(s->l, WAIT_MS, &s->c, &s->err);
	if (!s->ret)
		s->ret = rdmig_reg(s->c, "ram", s->mem, VICTIM_LEN, RDMIG_REG_REMOTE_WRITE, &id,
				   &s->err);
	if (!s->ret)
		s->ret = rdmig_expose(s->c, &s->err);
	return NULL;
}

/* rdmig side and raw peer in one thread: the raw side's small sends never block. */
static bool session_open(struct session *s, struct rdmig_listener *l, uint16_t port, int *cfd,
			 int *dfd, uint32_t *ram)
{
	pthread_t th;
	bool raw_ok;

	memset(s, 0, sizeof(*s));
	s->l = l;
	s->mem = calloc(1, VICTIM_LEN);
	if (!s->mem || pthread_create(&th, NULL, session_accept_thread, s)) {
		free(s->mem);
		return false;
	}
	raw_ok = raw_session(port, cfd, dfd, ram);
	if (!raw_ok) {
		/* Unblock the acceptor if it still waits for our sockets. */
		if (*cfd >= 0)
			close(*cfd);
		if (*dfd >= 0)
			close(*dfd);
		*cfd = *dfd = -1;
	}
	pthread_join(th, NULL);
	if (raw_ok && TH_CHECK_CALL(s->ret, &s->err, "accepting the raw session"))
		return true;
	TH_CHECK(false, "raw session setup");
	rdmig_conn_destroy(s->c);
	free(s->mem);
	return false;
}

static void session_close(struct session *s, int cfd, int dfd)
{
	rdmig_conn_destroy(s->c);
	free(s->mem);
	if (cfd >= 0)
		close(cfd);
	if (dfd >= 0)
		close(dfd);
}

/* A receive that times out in the middle of a frame resumes where it stopped. */
void resume_after_timeout(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct session s;
	struct rdmig_fence f = {0};
	uint8_t frame[64], payload[4096], got[64];
	struct rdmig_fence fc = {.seq = 9, .bytes = 4096, .writes = 1};
	int cfd, dfd, ret;
	uint16_t type = 0;
	uint32_t ram;
	size_t len = 0, n;

	if (!session_open(&s, l, port, &cfd, &dfd, &ram))
		return;
	/* Control message: header and 3 of 10 payload bytes, then the rest. */
	rdmig_wire_hdr_encode(frame, RDMIG_MSG_APP, RDMIG_CHAN_CTRL, 77, 10);
	memcpy(frame + RDMIG_WIRE_HDR_LEN, "0123456789", 10);
	raw_send(cfd, frame, RDMIG_WIRE_HDR_LEN + 3);
	ret = rdmig_ctrl_recv(s.c, &type, got, sizeof(got), &len, 300, &e);
	TH_CHECK(ret == -ETIMEDOUT && !rdmig_conn_failed(s.c, NULL),
		 "control message cut short: ctrl_recv times out (%d \"%s\"), connection alive",
		 ret, e.msg);
	rdmig_err_clear(&e);
	raw_send(cfd, frame + RDMIG_WIRE_HDR_LEN + 3, 7);
	ret = rdmig_ctrl_recv(s.c, &type, got, sizeof(got), &len, WAIT_MS, &e);
	TH_CHECK(!ret && type == 77 && len == 10 && !memcmp(got, "0123456789", 10),
		 "the next ctrl_recv returns the whole message (%d, type %u, %zu bytes)", ret, type,
		 len);

	/* WRITE: 1000 of 4096 payload bytes, timeout, rest and a fence split in its header. */
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + 1);
	n = write_frame(frame, ram, 4096, 4096);
	raw_send(dfd, frame, n);
	raw_send(dfd, payload, 1000);
	rdmig_err_clear(&e);
	ret = rdmig_wait_fence(s.c, 0, 300, &f, &e);
	TH_CHECK(ret == -ETIMEDOUT && !rdmig_conn_failed(s.c, NULL),
		 "WRITE payload cut short: wait_fence times out (%d \"%s\"), connection alive", ret,
		 e.msg);
	raw_send(dfd, payload + 1000, sizeof(payload) - 1000);
	rdmig_wire_hdr_encode(frame, RDMIG_MSG_FENCE, 0, 0, RDMIG_WIRE_FENCE_LEN);
	rdmig_wire_fence_encode(frame + RDMIG_WIRE_HDR_LEN, &fc);
	raw_send(dfd, frame, 8);
	rdmig_err_clear(&e);
	ret = rdmig_wait_fence(s.c, 0, 300, &f, &e);
	TH_CHECK(ret == -ETIMEDOUT && !rdmig_conn_failed(s.c, NULL),
		 "FENCE header cut short: wait_fence times out (%d \"%s\"), connection alive", ret,
		 e.msg);
	raw_send(dfd, frame + 8, RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_FENCE_LEN - 8);
	rdmig_err_clear(&e);
	ret = rdmig_wait_fence(s.c, 0, WAIT_MS, &f, &e);
	TH_CHECK(!ret && f.seq == 9 && f.bytes == 4096 && f.writes == 1 &&
		     !memcmp(s.mem + 4096, payload, sizeof(payload)),
		 "resumed WRITE landed intact and its fence arrived (%d \"%s\")", ret, e.msg);
	session_close(&s, cfd, dfd);
}

struct blocked {
	struct rdmig_conn *c;
	bool ctrl;
	int ret;
	struct rdmig_err err;
};

static void *blocked_thread(void *arg)
{
	struct blocked *b = arg;
	struct rdmig_fence f;
	uint8_t buf[64];
	uint16_t type;
	size_t len;

	if (b->ctrl)
		b->ret = rdmig_ctrl_recv(b->c, &type, buf, sizeof(buf), &len, WAIT_MS, &b->err);
	else
		b->ret = rdmig_wait_fence(b->c, 0, WAIT_MS, &f, &b->err);
	return NULL;
}

/* rdmig_conn_abort() wakes threads blocked in receives, with the abort's reason. */
void abort_wakes(struct rdmig_listener *l, uint16_t port)
{
	struct session s;
	struct blocked b[2];
	pthread_t th[2];
	int cfd, dfd, started = 0;
	uint32_t ram;

	if (!session_open(&s, l, port, &cfd, &dfd, &ram))
		return;
	for (int i = 0; i < 2; i++) {
		b[i] = (struct blocked){.c = s.c, .ctrl = i == 1};
		if (pthread_create(&th[i], NULL, blocked_thread, &b[i]))
			break;
		started++;
	}
	usleep(100 * 1000); /* let them block; if they are late they fail the same way */
	rdmig_conn_abort(s.c, -ECANCELED, "cancelled by the test");
	for (int i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		TH_CHECK(b[i].ret == -ECANCELED && strstr(b[i].err.msg, "cancelled by the test"),
			 "abort wakes a thread blocked in %s: %d \"%s\"",
			 b[i].ctrl ? "ctrl_recv" : "wait_fence", b[i].ret, b[i].err.msg);
	}
	TH_CHECK(started == 2, "abort test threads started");
	session_close(&s, cfd, dfd);
}

/*
 * Two connectors whose sockets arrive interleaved: each accept hands out the
 * connection that completed, with its own sockets on the right channels.
 */
void interleaved(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	const unsigned na = 2, nb = 3;
	int a[1 + 2], b[1 + 3];
	uint64_t ta = th_mix64(g_opt.seed ^ 0xa), tb = th_mix64(g_opt.seed ^ 0xb);
	uint8_t hello[RDMIG_WIRE_PDATA_LEN], frame[RDMIG_WIRE_HDR_LEN + 1], buf[8];
	struct rdmig_conn *ca = NULL, *cb = NULL;
	bool ok = true;
	int ret;

	for (unsigned i = 0; i <= na; i++)
		a[i] = raw_connect(port);
	for (unsigned i = 0; i <= nb; i++)
		b[i] = raw_connect(port);
	/* A ctrl, B ctrl, A data 0, B data 2, B data 0, B data 1; A data 1 comes later. */
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, na, ta);
	ok = ok && a[0] >= 0 && raw_send(a[0], hello, sizeof(hello));
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, nb, tb);
	ok = ok && b[0] >= 0 && raw_send(b[0], hello, sizeof(hello));
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, 0, na, ta);
	ok = ok && a[1] >= 0 && raw_send(a[1], hello, sizeof(hello));
	for (unsigned k = 0; k < nb; k++) {
		unsigned i = (k + 2) % nb;

		raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, (uint16_t)i, nb, tb);
		ok = ok && b[1 + i] >= 0 && raw_send(b[1 + i], hello, sizeof(hello));
	}
	if (!TH_CHECK(ok, "interleaved connectors: raw sockets set up"))
		goto out;
	ret = rdmig_accept(l, WAIT_MS, &cb, &e);
	TH_CHECK(!ret && rdmig_conn_channels(cb) == nb,
		 "interleaved connectors: first accept is the complete one, %u channels (%d %s)",
		 ret ? 0 : rdmig_conn_channels(cb), ret, e.msg);
	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, 1, na, ta);
	raw_send(a[2], hello, sizeof(hello));
	ret = rdmig_accept(l, WAIT_MS, &ca, &e);
	TH_CHECK(!ret && rdmig_conn_channels(ca) == na,
		 "interleaved connectors: second accept completes the other, %u channels (%d %s)",
		 ret ? 0 : rdmig_conn_channels(ca), ret, e.msg);
	if (!ca || !cb)
		goto out;
	/* Each raw data socket carries its own index as one stream byte. */
	for (unsigned i = 0; i < na + nb; i++) {
		struct rdmig_conn *c = i < na ? ca : cb;
		unsigned ch = i < na ? i : i - na;
		int fd = i < na ? a[1 + ch] : b[1 + ch];
		ssize_t n;

		rdmig_wire_hdr_encode(frame, RDMIG_MSG_STREAM_DATA, (uint16_t)ch, 0, 1);
		frame[RDMIG_WIRE_HDR_LEN] = (uint8_t)(0x40 + i);
		raw_send(fd, frame, sizeof(frame));
		n = rdmig_stream_recv(c, ch, buf, sizeof(buf), WAIT_MS, &e);
		if (n != 1 || buf[0] != 0x40 + i) {
			ok = false;
			TH_CHECK(false,
				 "interleaved connectors: channel %u of connection %c got %zd "
				 "bytes (%s)",
				 ch, i < na ? 'A' : 'B', n, e.msg);
		}
	}
	TH_CHECK(ok, "interleaved connectors: every socket sits on its own connection and channel");
out:
	rdmig_conn_destroy(ca);
	rdmig_conn_destroy(cb);
	for (unsigned i = 0; i <= na; i++)
		if (a[i] >= 0)
			close(a[i]);
	for (unsigned i = 0; i <= nb; i++)
		if (b[i] >= 0)
			close(b[i]);
}

/* A silent socket and a connection missing a data channel are dropped in time. */
void expiry(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t hello[RDMIG_WIRE_PDATA_LEN], buf[256];
	int silent = raw_connect(port), half = raw_connect(port), ret;
	ssize_t n;

	raw_hello_frame(hello, RDMIG_MSG_HELLO, RDMIG_ROLE_CONNECTOR, RDMIG_CHAN_CTRL, 2, 4545);
	if (!TH_CHECK(silent >= 0 && half >= 0 && raw_send(half, hello, sizeof(hello)),
		      "expiry: raw sockets set up"))
		goto out;
	/* Listener HELLO timeout 3 s, incomplete connections 6 s: 7 s covers both. */
	ret = rdmig_accept(l, 7000, &c, &e);
	TH_CHECK(ret == -ETIMEDOUT && strstr(e.msg, "no connection"),
		 "expiry: accept with nothing complete times out (%d \"%s\")", ret, e.msg);
	rdmig_conn_destroy(c);
	n = recv(silent, buf, sizeof(buf), 0);
	TH_CHECK(n == 0, "expiry: a socket that never sent its HELLO was closed (recv %zd)", n);
	/* The half connection got its HELLO_ACK, then was closed. */
	n = recv(half, buf, sizeof(buf), MSG_WAITALL);
	TH_CHECK(n == RDMIG_WIRE_PDATA_LEN && recv(half, buf, sizeof(buf), 0) == 0,
		 "expiry: a connection missing a data channel was closed");
out:
	if (silent >= 0)
		close(silent);
	if (half >= 0)
		close(half);
}

/* A listener without an address takes IPv4 and, where there is IPv6, IPv6 too. */
void dual_stack(void)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct rdmig_listener *l = NULL;
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	const char *hosts[2] = {"127.0.0.1", "::1"};
	struct good_ctx g;
	pthread_t th;
	bool v6;
	int fd, ret;

	fd = socket(AF_INET6, SOCK_STREAM, 0);
	v6 = fd >= 0 && !bind(fd, (struct sockaddr *)&s6, sizeof(s6));
	if (fd >= 0)
		close(fd);
	cfg_init(&cfg, RDMIG_MAX_CHANNELS);
	cfg.host = NULL;
	ret = rdmig_listen(&cfg, &l, &e);
	if (!TH_CHECK_CALL(ret, &e, "listening on any address"))
		return;
	for (int i = 0; i < 2; i++) {
		char when[64];

		if (i == 1 && !v6) {
			th_note("SKIP dual stack over ::1: no IPv6 loopback here");
			break;
		}
		snprintf(when, sizeof(when), "(any-address listener, connecting to %s)", hosts[i]);
		g = (struct good_ctx){.l = l};
		if (pthread_create(&th, NULL, good_dst_thread, &g))
			break;
		good_src(hosts[i], rdmig_listener_port(l), when);
		pthread_join(th, NULL);
		TH_CHECK(g.ok, "destination side of that transfer");
	}
	rdmig_listener_destroy(l);
}
