/* SPDX-License-Identifier: MIT */
/*
 * tcp backend, one connection: the connector's setup (TCP connect to the
 * first address of the name that answers, TLS, HELLO on the control socket,
 * then on every data socket), the control channel, this backend's copy of
 * the region table, close and wake, and the ops table. tcp_int.h says who
 * owns what; the accepting side is in tcp_listen.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "clock.h"
#include "log.h"
#include "tcp_int.h"

#define TCP_CTRL_FRAME (RDMIG_WIRE_HDR_LEN + RDMIG_CTRL_MAX_PAYLOAD)

static struct tcp_io ctrl_io(struct tcp_conn *tc)
{
	return (struct tcp_io){tc->ctrl_fd, tc->ctrl_ssl, &tc->ctrl_ssl_lock};
}

/* ---- connection state --------------------------------------------------- */

int tcp_conn_init(struct tcp_conn *tc, struct rdmig_err *err)
{
	tc->ctrl_fd = -1;
	for (unsigned i = 0; i < RDMIG_MAX_CHANNELS; i++) {
		tc->ch[i].fd = -1;
		pthread_mutex_init(&tc->ch[i].ssl_lock, NULL);
		pthread_mutex_init(&tc->ch[i].tx_lock, NULL);
		pthread_mutex_init(&tc->ch[i].rx_lock, NULL);
	}
	pthread_mutex_init(&tc->ctrl_ssl_lock, NULL);
	pthread_mutex_init(&tc->ctrl_tx_lock, NULL);
	pthread_mutex_init(&tc->ctrl_rx_lock, NULL);
	pthread_rwlock_init(&tc->reg_rw, NULL);
	tc->inited = true;
	tc->ctrl_buf = malloc(TCP_CTRL_FRAME);
	if (!tc->ctrl_buf)
		return rdmig_seterr(err, -ENOMEM, "out of memory for the control channel");
	return 0;
}

static void tcp_close(struct rdmig_conn *c)
{
	struct tcp_conn *tc = to_tcp(c);

	if (!tc->inited)
		return;
	SSL_free(tc->ctrl_ssl);
	tc->ctrl_ssl = NULL;
	tcp_close_fd(&tc->ctrl_fd);
	for (unsigned i = 0; i < RDMIG_MAX_CHANNELS; i++) {
		SSL_free(tc->ch[i].ssl);
		tc->ch[i].ssl = NULL;
		tcp_close_fd(&tc->ch[i].fd);
		pthread_mutex_destroy(&tc->ch[i].ssl_lock);
		pthread_mutex_destroy(&tc->ch[i].tx_lock);
		pthread_mutex_destroy(&tc->ch[i].rx_lock);
		ZSTD_freeCCtx(tc->ch[i].cctx);
		free(tc->ch[i].zbuf);
		ZSTD_freeDCtx(tc->ch[i].rx.dctx);
		free(tc->ch[i].rx.zbuf);
		tc->ch[i].cctx = NULL;
		tc->ch[i].zbuf = NULL;
		tc->ch[i].rx.dctx = NULL;
		tc->ch[i].rx.zbuf = NULL;
	}
	pthread_mutex_destroy(&tc->ctrl_ssl_lock);
	pthread_mutex_destroy(&tc->ctrl_tx_lock);
	pthread_mutex_destroy(&tc->ctrl_rx_lock);
	SSL_CTX_free(tc->tls_ctx);
	tc->tls_ctx = NULL;
	OPENSSL_cleanse(tc->tls_psk, sizeof(tc->tls_psk));
	pthread_rwlock_destroy(&tc->reg_rw);
	free(tc->ctrl_buf);
	tc->ctrl_buf = NULL;
	tc->inited = false;
}

static void tcp_wake(struct rdmig_conn *c)
{
	struct tcp_conn *tc = to_tcp(c);

	if (!tc->inited)
		return;
	if (tc->ctrl_fd >= 0)
		shutdown(tc->ctrl_fd, SHUT_RDWR);
	for (unsigned i = 0; i < RDMIG_MAX_CHANNELS; i++)
		if (tc->ch[i].fd >= 0)
			shutdown(tc->ch[i].fd, SHUT_RDWR);
}

/* ---- connect ------------------------------------------------------------ */

/* Non-blocking connect bounded by deadline; returns a blocking socket or a negative errno. */
static int connect_one(const struct addrinfo *ai, int64_t deadline, int user_timeout_ms)
{
	socklen_t sl = sizeof(int);
	int fd, ret, soerr = 0;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return rdmig_neg_errno();
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
		ret = rdmig_neg_errno();
		goto out_close;
	}
	ret = tcp_wait_fd(fd, POLLOUT, deadline);
	if (ret)
		goto out_close;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl)) {
		ret = rdmig_neg_errno();
		goto out_close;
	}
	if (soerr) {
		ret = -soerr;
		goto out_close;
	}
	ret = tcp_set_nonblock(fd, false);
	if (ret)
		goto out_close;
	tcp_tune_socket(fd, user_timeout_ms);
	return fd;
out_close:
	close(fd);
	return ret;
}

static int connect_error(struct tcp_conn *tc, int code, struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;

	if (code == -ECONNREFUSED)
		return rdmig_seterr(err, code,
				    "connection refused by %s: is `rdmig ... --listen` running "
				    "there, on that port?",
				    tc->peer);
	if (code == -ETIMEDOUT)
		return rdmig_seterr(err, code,
				    "no answer from %s within %d ms: check the address, the port "
				    "and firewalls",
				    tc->peer, c->cfg.connect_timeout_ms);
	return rdmig_seterr_errno(err, code, "connecting to %s", tc->peer);
}

/*
 * Read the peer's answer to our HELLO on fd: HELLO_ACK, or an ERROR frame
 * saying why it refused us. Validates everything with the wire decoders.
 */
static int read_hello_ack(struct tcp_conn *tc, struct tcp_io io, uint16_t chan_index,
			  uint64_t token, int64_t deadline, struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;
	uint8_t buf[TCP_HELLO_FRAME], ebuf[4 + 256];
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_wire_hello h;
	struct rdmig_wire_hdr hdr;
	char what[32], msg[256];
	size_t got = 0;
	uint8_t type;
	int ret, code = -ECONNREFUSED;

	if (chan_index == RDMIG_CHAN_CTRL)
		snprintf(what, sizeof(what), "control channel");
	else
		snprintf(what, sizeof(what), "data channel %u", chan_index);

	ret = tcp_io_recv_fill(io, buf, RDMIG_WIRE_HDR_LEN, &got, deadline);
	if (ret == 0)
		ret = rdmig_wire_hdr_decode(buf, got, RDMIG_CTRL_MAX_PAYLOAD, &hdr, &e);
	if (ret == 0 && hdr.type == RDMIG_MSG_ERROR) {
		size_t elen = hdr.length < sizeof(ebuf) ? hdr.length : sizeof(ebuf);

		got = 0;
		ret = tcp_io_recv_fill(io, ebuf, elen, &got, deadline);
		if (ret == 0 && rdmig_wire_error_decode(ebuf, elen, &code, msg, sizeof(msg), NULL))
			snprintf(msg, sizeof(msg), "(unreadable reason)");
		if (ret == 0)
			return rdmig_seterr(err, code, "%s refused the %s: %s", tc->peer, what,
					    msg);
	}
	if (ret == 0 && hdr.type != RDMIG_MSG_HELLO_ACK)
		ret = rdmig_seterr(&e, -EPROTO, "expected HELLO_ACK, got %s",
				   rdmig_msg_type_name(hdr.type));
	if (ret == 0)
		ret = tcp_io_recv_fill(io, buf, sizeof(buf), &got, deadline);
	if (ret == 0)
		ret = rdmig_wire_pdata_decode(buf, sizeof(buf), &type, &h, &e);
	if (ret == 0 && (type != RDMIG_MSG_HELLO_ACK || h.role != RDMIG_ROLE_ACCEPTOR))
		ret =
		    rdmig_seterr(&e, -EPROTO, "HELLO_ACK: role %u, expected acceptor (2)", h.role);
	if (ret == 0 && (h.token != token || h.chan_index != chan_index || h.nchan != c->nchan))
		ret = rdmig_seterr(&e, -EPROTO,
				   "HELLO_ACK does not match our HELLO (token %016" PRIx64
				   " channel %u of %u, expected %016" PRIx64 " channel %u of %u)",
				   h.token, h.chan_index, h.nchan, token, chan_index, c->nchan);
	if (ret == TCP_EOF)
		return rdmig_seterr(err, -ECONNRESET,
				    "%s closed the %s during the handshake: is it an rdmig "
				    "listener of the same version?",
				    tc->peer, what);
	if (ret == -ETIMEDOUT)
		return rdmig_seterr(err, ret, "no HELLO_ACK from %s on the %s within %d ms",
				    tc->peer, what, c->cfg.connect_timeout_ms);
	if (ret && e.code)
		return rdmig_seterr(err, ret, "handshake with %s on the %s: %s", tc->peer, what,
				    e.msg);
	if (ret)
		return rdmig_seterr_errno(err, ret, "handshake with %s on the %s", tc->peer, what);
	if (chan_index == RDMIG_CHAN_CTRL)
		c->peer_caps = h.caps;
	return 0;
}

static int send_hello(struct tcp_conn *tc, struct tcp_io io, uint16_t chan_index, uint64_t token,
		      struct rdmig_err *err)
{
	uint8_t buf[TCP_HELLO_FRAME];
	struct rdmig_wire_hello h;
	int ret;

	memset(buf, 0, sizeof(buf));
	rdmig_hello_fill(&tc->base, &h, chan_index, token);
	rdmig_wire_pdata_encode(buf, RDMIG_MSG_HELLO, &h);
	ret = tcp_io_send_buf(io, buf, sizeof(buf));
	if (ret)
		return rdmig_seterr_errno(err, ret, "sending HELLO to %s", tc->peer);
	return 0;
}

static uint64_t random_token(void)
{
	uint64_t t;

	if (getrandom(&t, sizeof(t), 0) == (ssize_t)sizeof(t))
		return t;
	/* No entropy source: the token only ties sockets together, it is not a secret. */
	return ((uint64_t)getpid() << 32) ^ (uint64_t)rdmig_now_ms() ^ (uint64_t)(uintptr_t)&t;
}

static int tcp_connect(struct rdmig_conn *c, struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	struct addrinfo hints, *res = NULL, *ai, *used = NULL;
	int64_t deadline = rdmig_deadline_ms(c->cfg.connect_timeout_ms);
	char port[8];
	uint64_t token;
	int ret, last = -EHOSTUNREACH;

	ret = tcp_conn_init(tc, err);
	if (!ret)
		ret = tcp_tls_ctx_new(&c->cfg, false, &tc->tls_ctx, tc->tls_psk, err);
	if (ret)
		return ret;
	tcp_fmt_hostport(c->host, c->cfg.port, tc->peer, sizeof(tc->peer));
	snprintf(port, sizeof(port), "%u", c->cfg.port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	ret = getaddrinfo(c->host, port, &hints, &res);
	if (ret) {
		int code = ret == EAI_SYSTEM ? rdmig_neg_errno() : -EHOSTUNREACH;

		return rdmig_seterr(err, code, "cannot resolve '%s': %s", c->host,
				    ret == EAI_SYSTEM ? strerror(-code) : gai_strerror(ret));
	}

	/* Every address of the name in turn; a refusal is the most telling error. */
	for (ai = res; ai; ai = ai->ai_next) {
		ret = connect_one(ai, deadline, tc->base.cfg.peer_timeout_ms);
		if (ret >= 0) {
			tc->ctrl_fd = ret;
			used = ai;
			break;
		}
		if (last != -ECONNREFUSED)
			last = ret;
	}
	if (!used) {
		ret = connect_error(tc, last, err);
		goto out_free;
	}

	if (tc->tls_ctx) {
		ret = tcp_tls_connect(tc, tc->ctrl_fd, &tc->ctrl_ssl, "control channel", deadline,
				      err);
		if (ret)
			goto out_free;
	}
	token = random_token();
	ret = send_hello(tc, ctrl_io(tc), RDMIG_CHAN_CTRL, token, err);
	if (ret)
		goto out_free;
	ret = read_hello_ack(tc, ctrl_io(tc), RDMIG_CHAN_CTRL, token, deadline, err);
	if (ret)
		goto out_free;

	/* Data channels: connect and greet them all, then collect the answers. */
	for (unsigned i = 0; i < c->nchan; i++) {
		ret = connect_one(used, deadline, tc->base.cfg.peer_timeout_ms);
		if (ret < 0) {
			ret = connect_error(tc, ret, err);
			rdmig_err_prefix(err, "data channel %u", i);
			goto out_free;
		}
		tc->ch[i].fd = ret;
		if (tc->tls_ctx) {
			char what[32];

			snprintf(what, sizeof(what), "data channel %u", i);
			ret =
			    tcp_tls_connect(tc, tc->ch[i].fd, &tc->ch[i].ssl, what, deadline, err);
			if (ret)
				goto out_free;
		}
		ret = send_hello(tc, tcp_ch_io(tc, i), (uint16_t)i, token, err);
		if (ret)
			goto out_free;
	}
	for (unsigned i = 0; i < c->nchan; i++) {
		ret = read_hello_ack(tc, tcp_ch_io(tc, i), (uint16_t)i, token, deadline, err);
		if (ret)
			goto out_free;
	}
	log_info("connected to %s with %u data channels%s", tc->peer, c->nchan,
		 tc->tls_ctx ? " over TLS" : "");
	ret = 0;
out_free:
	freeaddrinfo(res);
	return ret;
}

/* ---- regions ------------------------------------------------------------ */

static int tcp_reg(struct rdmig_conn *c, struct rdmig_region *r, struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);

	r->rkey = 0;
	r->handle = NULL;
	if (r->id >= RDMIG_MAX_REGIONS)
		return rdmig_seterr(err, -EINVAL, "region id %u out of range", r->id);
	pthread_rwlock_wrlock(&tc->reg_rw);
	tc->reg_addr[r->id] = r->addr;
	tc->reg_len[r->id] = r->len;
	tc->reg_writable[r->id] = (r->flags & RDMIG_REG_REMOTE_WRITE) ? 1 : 0;
	tc->reg_gen[r->id]++;
	pthread_rwlock_unlock(&tc->reg_rw);
	return 0;
}

static void tcp_dereg(struct rdmig_conn *c, struct rdmig_region *r)
{
	struct tcp_conn *tc = to_tcp(c);

	if (!tc->inited || r->id >= RDMIG_MAX_REGIONS)
		return;
	/* Waits for a receiver inside recv() into this region; later ones see gen change. */
	pthread_rwlock_wrlock(&tc->reg_rw);
	tc->reg_addr[r->id] = NULL;
	tc->reg_len[r->id] = 0;
	tc->reg_writable[r->id] = 0;
	tc->reg_gen[r->id]++;
	pthread_rwlock_unlock(&tc->reg_rw);
}

/* ---- control channel ---------------------------------------------------- */

static int tcp_ctrl_send(struct rdmig_conn *c, const void *msg, size_t len, struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	int ret;

	pthread_mutex_lock(&tc->ctrl_tx_lock);
	ret = tcp_io_send_buf(ctrl_io(tc), msg, len);
	pthread_mutex_unlock(&tc->ctrl_tx_lock);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "sending on the control channel to %s: %s",
				       tc->peer, strerror(-ret));
	return 0;
}

static int ctrl_recv_locked(struct tcp_conn *tc, void *buf, size_t cap, size_t *len, int timeout_ms,
			    struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	struct rdmig_err e = RDMIG_ERR_INIT;
	size_t want;
	int ret;

	for (;;) {
		want = tc->ctrl_got < RDMIG_WIRE_HDR_LEN
			   ? RDMIG_WIRE_HDR_LEN
			   : RDMIG_WIRE_HDR_LEN + (size_t)tc->ctrl_hdr.length;
		ret = tcp_io_recv_fill(ctrl_io(tc), tc->ctrl_buf, want, &tc->ctrl_got, deadline);
		if (ret == -ETIMEDOUT)
			return rdmig_seterr(err, ret, "no control message from %s within %d ms",
					    tc->peer, timeout_ms);
		if (ret == TCP_EOF && tc->ctrl_got == 0)
			return rdmig_conn_fail(c, err, -ECONNRESET, "peer %s closed the connection",
					       tc->peer);
		if (ret == TCP_EOF)
			return rdmig_conn_fail(c, err, -ECONNRESET,
					       "peer %s closed the connection in the middle of a "
					       "control message (%zu of %zu bytes)",
					       tc->peer, tc->ctrl_got, want);
		if (ret)
			return rdmig_conn_fail(c, err, ret,
					       "receiving on the control channel "
					       "from %s: %s",
					       tc->peer, strerror(-ret));
		if (want == RDMIG_WIRE_HDR_LEN) {
			ret = rdmig_wire_hdr_decode(tc->ctrl_buf, RDMIG_WIRE_HDR_LEN,
						    RDMIG_CTRL_MAX_PAYLOAD, &tc->ctrl_hdr, &e);
			if (!ret && tc->ctrl_hdr.chan != RDMIG_CHAN_CTRL)
				ret = rdmig_seterr(
				    &e, -EPROTO, "%s for data channel %u on the control channel",
				    rdmig_msg_type_name(tc->ctrl_hdr.type), tc->ctrl_hdr.chan);
			if (ret)
				return rdmig_conn_fail(c, err, ret,
						       "malformed control message from %s: %s",
						       tc->peer, e.msg);
			if (tc->ctrl_hdr.length)
				continue;
		}
		if (tc->ctrl_hdr.type == RDMIG_MSG_KEEPALIVE) {
			tc->ctrl_got = 0;
			continue;
		}
		break;
	}
	/* A frame that does not fit stays here for a call with a bigger buffer. */
	if (tc->ctrl_got > cap)
		return rdmig_seterr(err, -EMSGSIZE,
				    "control message of %zu bytes from %s does not fit a %zu-byte "
				    "buffer",
				    tc->ctrl_got, tc->peer, cap);
	memcpy(buf, tc->ctrl_buf, tc->ctrl_got);
	*len = tc->ctrl_got;
	tc->ctrl_got = 0;
	return 0;
}

static int tcp_ctrl_recv(struct rdmig_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms,
			 struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	int ret;

	pthread_mutex_lock(&tc->ctrl_rx_lock);
	ret = ctrl_recv_locked(tc, buf, cap, len, timeout_ms, err);
	pthread_mutex_unlock(&tc->ctrl_rx_lock);
	return ret;
}

/*
 * A socket has no one-sided reads: serving one would need a thread of the
 * peer's to answer, which is what the engine's request/reply stream does.
 */
static int tcp_read(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
		    struct rdmig_err *err)
{
	(void)c;
	(void)runs;
	(void)n;
	return rdmig_seterr(err, -EOPNOTSUPP,
			    "read on data channel %u: the tcp backend has no one-sided reads; "
			    "fetch pages over a request/reply stream, or use the rdma backend",
			    chan);
}

const struct rdmig_xport_ops rdmig_tcp_ops = {
    .name = "tcp",
    .conn_size = sizeof(struct tcp_conn),
    .listener_size = sizeof(struct tcp_listener),
    .counts_wire = true,
    .listen = tcp_listen,
    .accept = tcp_accept,
    .listener_close = tcp_listener_close,
    .connect = tcp_connect,
    .drain = NULL,
    .close = tcp_close,
    .wake = tcp_wake,
    .reg = tcp_reg,
    .dereg = tcp_dereg,
    .ctrl_send = tcp_ctrl_send,
    .ctrl_recv = tcp_ctrl_recv,
    .write = tcp_write,
    .fence = tcp_fence,
    .wait_fence = tcp_wait_fence,
    .read = tcp_read,
    .stream_send = tcp_stream_send,
    .stream_recv = tcp_stream_recv,
    .stream_shutdown = tcp_stream_shutdown,
    .stream_send_fd = tcp_stream_send_fd,
    .stream_recv_fd = tcp_stream_recv_fd,
};
