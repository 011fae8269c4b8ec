/* SPDX-License-Identifier: MIT */
/*
 * tcp backend, byte streams: STREAM_DATA frames of at most
 * RDMIG_WIRE_MAX_DATA bytes and one STREAM_EOF per direction, on a data
 * channel that carries no page writes. Senders hold the channel's tx_lock,
 * the receiver its rx_lock.
 *
 * The descriptor calls (rdmig_stream_send_fd/recv_fd) splice: the caller's
 * descriptor into a pipe, a frame header, the pipe into the socket; and the
 * socket into a pipe, the pipe into the caller's descriptor. The pipe is
 * the calling thread's own (created on first use, closed when the thread
 * exits), always empty between calls, and no splice into it asks for more
 * than it holds or blocks on it, so a full pipe never waits on its own
 * reader. Under TLS the bytes go through a buffer of the thread's instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "tcp_int.h"

#define SPLICE_PIPE (1u << 20) /* asked for; the kernel may give less */
#define BOUNCE_LEN  (256u * 1024)

int tcp_stream_send(struct rdmig_conn *c, unsigned chan, const void *buf, size_t len,
		    struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	struct tcp_chan *ch = &tc->ch[chan];
	const uint8_t *p = buf;
	uint8_t hdr[RDMIG_WIRE_HDR_LEN];
	struct iovec iov[2];
	int ret = 0;

	pthread_mutex_lock(&ch->tx_lock);
	if (ch->eof_sent) {
		pthread_mutex_unlock(&ch->tx_lock);
		return rdmig_seterr(err, -EPIPE, "stream channel %u to %s: already shut down", chan,
				    tc->peer);
	}
	while (len && !ret) {
		uint32_t n = len > RDMIG_WIRE_MAX_DATA ? RDMIG_WIRE_MAX_DATA : (uint32_t)len;

		rdmig_wire_hdr_encode(hdr, RDMIG_MSG_STREAM_DATA, (uint16_t)chan, 0, n);
		iov[0] = (struct iovec){.iov_base = hdr, .iov_len = sizeof(hdr)};
		iov[1] = (struct iovec){.iov_base = (void *)p, .iov_len = n};
		ret = tcp_io_send_all(tcp_ch_io(tc, chan), iov, 2, 0);
		p += n;
		len -= n;
	}
	pthread_mutex_unlock(&ch->tx_lock);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "sending on stream channel %u to %s: %s", chan,
				       tc->peer, strerror(-ret));
	return 0;
}

int tcp_stream_shutdown(struct rdmig_conn *c, unsigned chan, struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	struct tcp_chan *ch = &tc->ch[chan];
	uint8_t hdr[RDMIG_WIRE_HDR_LEN];
	int ret = 0;

	pthread_mutex_lock(&ch->tx_lock);
	if (!ch->eof_sent) {
		rdmig_wire_hdr_encode(hdr, RDMIG_MSG_STREAM_EOF, (uint16_t)chan, 0, 0);
		ret = tcp_io_send_buf(tcp_ch_io(tc, chan), hdr, sizeof(hdr));
		ch->eof_sent = !ret;
	}
	pthread_mutex_unlock(&ch->tx_lock);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "sending end of stream on channel %u to %s: %s",
				       chan, tc->peer, strerror(-ret));
	return 0;
}

/*
 * Until a STREAM_DATA frame is under way (1) or end of stream (0), reading
 * frame headers and skipping keepalives; negative errno on error.
 */
static int stream_frame(struct tcp_conn *tc, unsigned chan, int64_t deadline, int timeout_ms,
			struct rdmig_err *err)
{
	struct tcp_rx *rx = &tc->ch[chan].rx;
	int ret;

	for (;;) {
		if (rx->eof)
			return 0;
		switch (rx->state) {
		case RX_SMALL:
		case RX_PAYLOAD:
			return tcp_rx_unexpected(tc, chan, "stream", err);
		case RX_HDR:
			ret = tcp_rx_header(tc, chan, "stream", RDMIG_WIRE_HDR_LEN, deadline,
					    timeout_ms, "data", err);
			if (ret)
				return ret;
			rx->got = 0;
			switch (rx->hdr.type) {
			case RDMIG_MSG_STREAM_DATA:
				rx->stream_left = rx->hdr.length;
				rx->state = RX_STREAM;
				break;
			case RDMIG_MSG_STREAM_EOF:
				rx->eof = true;
				return 0;
			case RDMIG_MSG_KEEPALIVE:
				break;
			default:
				/* Keep the header in buf for the message. */
				rx->got = RDMIG_WIRE_HDR_LEN;
				return tcp_rx_unexpected(tc, chan, "stream", err);
			}
			break;
		case RX_STREAM:
			return 1;
		}
	}
}

static ssize_t stream_recv_locked(struct tcp_conn *tc, unsigned chan, void *buf, size_t cap,
				  int timeout_ms, struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;
	struct tcp_rx *rx = &tc->ch[chan].rx;
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	ssize_t n;
	int ret;

	ret = stream_frame(tc, chan, deadline, timeout_ms, err);
	if (ret <= 0)
		return ret;
	n = tcp_io_recv_some(tcp_ch_io(tc, chan), buf,
			     cap < rx->stream_left ? cap : (size_t)rx->stream_left, deadline);
	if (n == -ETIMEDOUT)
		return rdmig_seterr(err, -ETIMEDOUT,
				    "no data on stream channel %u from %s within %d ms", chan,
				    tc->peer, timeout_ms);
	if (n == 0)
		return rdmig_conn_fail(c, err, -ECONNRESET,
				       "stream channel %u from %s: connection closed with %" PRIu64
				       " bytes of a frame still missing",
				       chan, tc->peer, rx->stream_left);
	if (n < 0)
		return rdmig_conn_fail(c, err, (int)n, "receiving on stream channel %u from %s: %s",
				       chan, tc->peer, strerror((int)-n));
	rx->stream_left -= (uint64_t)n;
	if (!rx->stream_left)
		rx->state = RX_HDR;
	return n;
}

ssize_t tcp_stream_recv(struct rdmig_conn *c, unsigned chan, void *buf, size_t cap, int timeout_ms,
			struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	ssize_t n;

	pthread_mutex_lock(&tc->ch[chan].rx_lock);
	n = stream_recv_locked(tc, chan, buf, cap, timeout_ms, err);
	pthread_mutex_unlock(&tc->ch[chan].rx_lock);
	return n;
}

/* ---- descriptors ------------------------------------------------------------ */

struct fd_path {
	int rd, wr;	 /* the thread's pipe, -1 until made */
	size_t cap;	 /* bytes the pipe holds at least */
	uint8_t *bounce; /* TLS: the thread's buffer, BOUNCE_LEN */
};

static pthread_key_t path_key;
static pthread_once_t path_once = PTHREAD_ONCE_INIT;

static void path_free(void *arg)
{
	struct fd_path *p = arg;

	if (p->rd >= 0)
		close(p->rd);
	if (p->wr >= 0)
		close(p->wr);
	free(p->bounce);
	free(p);
}

static void path_key_make(void)
{
	pthread_key_create(&path_key, path_free);
}

/* The calling thread's pipe (or, with `tls`, its buffer); NULL with err set. */
static struct fd_path *thread_path(bool tls, struct rdmig_err *err)
{
	struct fd_path *p;
	int fds[2], sz;

	pthread_once(&path_once, path_key_make);
	p = pthread_getspecific(path_key);
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return rdmig_seterr(err, -ENOMEM, "stream: out of memory"), NULL;
		p->rd = p->wr = -1;
		pthread_setspecific(path_key, p);
	}
	if (tls && !p->bounce) {
		p->bounce = malloc(BOUNCE_LEN);
		if (!p->bounce)
			return rdmig_seterr(err, -ENOMEM, "stream: out of memory"), NULL;
	}
	if (!tls && p->rd < 0) {
		if (pipe2(fds, O_CLOEXEC))
			return rdmig_seterr_errno(err, rdmig_neg_errno(), "stream: pipe"), NULL;
		p->rd = fds[0];
		p->wr = fds[1];
		/* A bigger pipe, fewer splices; the default (16 pages) still works. */
		fcntl(p->wr, F_SETPIPE_SZ, SPLICE_PIPE);
		sz = fcntl(p->wr, F_GETPIPE_SZ);
		/*
		 * Splices into it never block on it (SPLICE_F_NONBLOCK): asking for
		 * more than the slots hold only returns less.
		 */
		p->cap = sz > 0 ? (size_t)sz : 65536;
	}
	return p;
}

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/*
 * All of the pipe's `len` bytes into `out`, waiting for it when it is full.
 * Never SPLICE_F_MORE: it would leave the frame's last segment corked in
 * the socket until the next frame, and a peer that waits for that frame
 * before it sends another (QEMU's multifd sync) stalls on the cork timer.
 */
static int pipe_drain(struct fd_path *p, int out, size_t len)
{
	while (len) {
		ssize_t n = splice(p->rd, NULL, out, NULL, len, SPLICE_F_MOVE);
		int ret;

		if (n > 0) {
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return rdmig_neg_errno();
		ret = tcp_wait_fd(out, POLLOUT, -1);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * A pipe that still holds bytes after a failure is of no use for the next
 * call: close it, the next call makes a new one.
 */
static void path_reset(struct fd_path *p)
{
	close(p->rd);
	close(p->wr);
	p->rd = p->wr = -1;
}

ssize_t tcp_stream_send_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
			   struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	struct tcp_chan *ch = &tc->ch[chan];
	bool tls = ch->ssl != NULL;
	struct fd_path *p = thread_path(tls, err);
	ssize_t n;
	int ret;

	if (!p)
		return err->code;
	for (;;) {
		ret = tcp_wait_fd(fd, POLLIN, -1);
		if (ret)
			return rdmig_seterr_errno(err, ret,
						  "stream channel %u: waiting for the local "
						  "descriptor",
						  chan);
		if (tls)
			n = read(fd, p->bounce, min_sz(max, BOUNCE_LEN));
		else
			n = splice(fd, NULL, p->wr, NULL,
				   min_sz(min_sz(max, p->cap), RDMIG_WIRE_MAX_DATA),
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n >= 0)
			break;
		if (errno != EINTR && errno != EAGAIN)
			return rdmig_seterr_errno(err, rdmig_neg_errno(),
						  "stream channel %u: reading the local descriptor",
						  chan);
	}
	if (n == 0)
		return 0;
	if (tls) {
		ret = tcp_stream_send(c, chan, p->bounce, (size_t)n, err);
		return ret ? ret : n;
	}
	pthread_mutex_lock(&ch->tx_lock);
	if (ch->eof_sent) {
		ret = rdmig_seterr(err, -EPIPE, "stream channel %u to %s: already shut down", chan,
				   tc->peer);
	} else {
		uint8_t hdr[RDMIG_WIRE_HDR_LEN];

		rdmig_wire_hdr_encode(hdr, RDMIG_MSG_STREAM_DATA, (uint16_t)chan, 0, (uint32_t)n);
		{
			struct iovec iov = {.iov_base = hdr, .iov_len = sizeof(hdr)};

			ret = tcp_io_send_all(tcp_ch_io(tc, chan), &iov, 1, MSG_MORE);
		}
		if (!ret)
			ret = pipe_drain(p, ch->fd, (size_t)n);
		if (ret)
			ret = rdmig_conn_fail(c, err, ret, "sending on stream channel %u to %s: %s",
					      chan, tc->peer, strerror(-ret));
	}
	pthread_mutex_unlock(&ch->tx_lock);
	if (ret) {
		path_reset(p);
		return ret;
	}
	return n;
}

/*
 * Up to `want` bytes of the frame under way from the socket into the pipe:
 * the count, or a negative errno with err set.
 */
static ssize_t socket_to_pipe(struct tcp_conn *tc, unsigned chan, struct fd_path *p, size_t want,
			      int64_t deadline, int timeout_ms, struct rdmig_err *err)
{
	struct tcp_rx *rx = &tc->ch[chan].rx;
	ssize_t n;
	int ret;

	for (;;) {
		n = splice(tc->ch[chan].fd, NULL, p->wr, NULL, want,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0)
			return n;
		if (n == 0)
			return rdmig_conn_fail(&tc->base, err, -ECONNRESET,
					       "stream channel %u from %s: connection closed with "
					       "%" PRIu64 " bytes of a frame still missing",
					       chan, tc->peer, rx->stream_left);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return rdmig_conn_fail(&tc->base, err, rdmig_neg_errno(),
					       "receiving on stream channel %u from %s: %s", chan,
					       tc->peer, strerror(errno));
		ret = tcp_wait_fd(tc->ch[chan].fd, POLLIN, deadline);
		if (ret == -ETIMEDOUT)
			return rdmig_seterr(err, ret,
					    "no data on stream channel %u from %s within %d ms",
					    chan, tc->peer, timeout_ms);
		if (ret)
			return rdmig_conn_fail(&tc->base, err, ret,
					       "receiving on stream channel %u from %s: %s", chan,
					       tc->peer, strerror(-ret));
	}
}

ssize_t tcp_stream_recv_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max, int timeout_ms,
			   struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	struct tcp_rx *rx = &tc->ch[chan].rx;
	bool tls = tc->ch[chan].ssl != NULL;
	struct fd_path *p = thread_path(tls, err);
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	ssize_t n;
	int ret;

	if (!p)
		return err->code;
	if (tls) {
		n = tcp_stream_recv(c, chan, p->bounce, min_sz(max, BOUNCE_LEN), timeout_ms, err);
		if (n <= 0)
			return n;
		ret = xport_fd_write_all(fd, p->bounce, (size_t)n);
		if (ret)
			return rdmig_seterr_errno(
			    err, ret, "stream channel %u: writing the local descriptor", chan);
		return n;
	}
	pthread_mutex_lock(&tc->ch[chan].rx_lock);
	ret = stream_frame(tc, chan, deadline, timeout_ms, err);
	if (ret <= 0) {
		pthread_mutex_unlock(&tc->ch[chan].rx_lock);
		return ret;
	}
	n = socket_to_pipe(tc, chan, p,
			   min_sz(min_sz(max, p->cap),
				  rx->stream_left < SIZE_MAX ? (size_t)rx->stream_left : SIZE_MAX),
			   deadline, timeout_ms, err);
	if (n > 0) {
		rx->stream_left -= (uint64_t)n;
		if (!rx->stream_left)
			rx->state = RX_HDR;
	}
	pthread_mutex_unlock(&tc->ch[chan].rx_lock);
	if (n < 0)
		return n;
	ret = pipe_drain(p, fd, (size_t)n);
	if (ret) {
		path_reset(p);
		return rdmig_seterr_errno(err, ret,
					  "stream channel %u: writing the local descriptor", chan);
	}
	return n;
}
