/* SPDX-License-Identifier: MIT */
/*
 * tcp backend, socket I/O: deadline-bounded receives and complete sends on
 * one socket, plain or TLS (SSL_read / SSL_write on a non-blocking socket,
 * polling on what OpenSSL asks for), and the options every socket gets.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "clock.h"
#include "log.h"
#include "tcp_int.h"

/*
 * Keepalive: an idle connection to a vanished peer fails within about 35 s.
 * Data in flight is bounded by TCP_USER_TIMEOUT (cfg.peer_timeout_ms): sent
 * bytes unacknowledged for that long, or a zero window that long, kill the
 * connection, so a blocked sender gets an error instead of waiting for the
 * kernel's 15-minute retransmission limit.
 */
#define KA_IDLE_S  15
#define KA_INTVL_S 5
#define KA_CNT	   4

int tcp_wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int ret;

	for (;;) {
		ret = poll(&p, 1, rdmig_ms_left(deadline));
		if (ret > 0)
			return 0;
		if (ret == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return rdmig_neg_errno();
	}
}

const char *tcp_tls_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (!e)
		return "no reason given";
	ERR_error_string_n(e, buf, len);
	return buf;
}

ssize_t tcp_tls_result(SSL *ssl, int n, int saved_errno, short *events)
{
	char why[256];

	if (n > 0)
		return n;
	switch (SSL_get_error(ssl, n)) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
		*events = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*events = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_SYSCALL:
		if (saved_errno == EINTR)
			return -EINTR;
		return saved_errno ? -saved_errno : 0;
	default:
		log_warn("TLS: %s", tcp_tls_reason(why, sizeof(why)));
		return -EPROTO;
	}
}

ssize_t tcp_io_recv_once(struct tcp_io io, void *buf, size_t len, short *events)
{
	ssize_t n;
	int saved;

	*events = POLLIN;
	if (!io.ssl) {
		n = recv(io.fd, buf, len, MSG_DONTWAIT);
		if (n >= 0)
			return n;
		if (errno == EWOULDBLOCK)
			return -EAGAIN;
		return rdmig_neg_errno();
	}
	/* Decrypted bytes may already wait in the SSL buffer: always read before polling. */
	if (io.lk)
		pthread_mutex_lock(io.lk);
	ERR_clear_error();
	errno = 0;
	n = SSL_read(io.ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	saved = errno;
	n = tcp_tls_result(io.ssl, (int)n, saved, events);
	if (io.lk)
		pthread_mutex_unlock(io.lk);
	return n;
}

ssize_t tcp_io_recv_some(struct tcp_io io, void *buf, size_t len, int64_t deadline)
{
	ssize_t n;
	short ev;
	int ret;

	for (;;) {
		n = tcp_io_recv_once(io, buf, len, &ev);
		if (n >= 0)
			return n;
		if (n == -EINTR)
			continue;
		if (n != -EAGAIN)
			return n;
		ret = tcp_wait_fd(io.fd, ev, deadline);
		if (ret)
			return ret;
	}
}

int tcp_io_recv_fill(struct tcp_io io, uint8_t *buf, size_t want, size_t *got, int64_t deadline)
{
	ssize_t n;

	while (*got < want) {
		n = tcp_io_recv_some(io, buf + *got, want - *got, deadline);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return TCP_EOF;
		*got += (size_t)n;
	}
	return 0;
}

/* TLS: every byte of iov with SSL_write, polling while the socket is full. */
static int tls_send_all(struct tcp_io io, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left) {
			int chunk = left > (1u << 30) ? (1 << 30) : (int)left, n, saved;
			short ev = POLLOUT;
			ssize_t r;

			if (io.lk)
				pthread_mutex_lock(io.lk);
			ERR_clear_error();
			errno = 0;
			n = SSL_write(io.ssl, p, chunk);
			saved = errno;
			r = tcp_tls_result(io.ssl, n, saved, &ev);
			if (io.lk)
				pthread_mutex_unlock(io.lk);
			if (r > 0) {
				p += r;
				left -= (size_t)r;
				continue;
			}
			if (r == -EINTR)
				continue;
			if (r == 0)
				return -EPIPE;
			if (r != -EAGAIN)
				return (int)r;
			r = tcp_wait_fd(io.fd, ev, -1);
			if (r)
				return (int)r;
		}
	}
	return 0;
}

int tcp_io_send_all(struct tcp_io io, struct iovec *iov, int iovcnt, int flags)
{
	struct msghdr m;
	ssize_t n;

	if (io.ssl)
		return tls_send_all(io, iov, iovcnt);
	while (iovcnt > 0) {
		memset(&m, 0, sizeof(m));
		m.msg_iov = iov;
		m.msg_iovlen = (size_t)(iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
		n = sendmsg(io.fd, &m, MSG_NOSIGNAL | flags);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return rdmig_neg_errno();
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int tcp_io_send_buf(struct tcp_io io, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	return tcp_io_send_all(io, &iov, 1, 0);
}

int tcp_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return rdmig_neg_errno();
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	if (fcntl(fd, F_SETFL, fl) < 0)
		return rdmig_neg_errno();
	return 0;
}

/*
 * Options of an established socket. Nagle is off everywhere: a fence or a
 * small control message must not wait for the acknowledgement of the
 * previous frame. Failures only cost latency or dead-peer detection, so
 * they are logged, not fatal.
 */
void tcp_tune_socket(int fd, int user_timeout_ms)
{
	int one = 1, idle = KA_IDLE_S, intvl = KA_INTVL_S, cnt = KA_CNT;
	unsigned uto = (unsigned)user_timeout_ms;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		log_warn("TCP_NODELAY: %s", strerror(errno));
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)))
		log_warn("TCP keepalive: %s", strerror(errno));
	if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto)))
		log_warn("TCP_USER_TIMEOUT: %s", strerror(errno));
}

void tcp_fmt_hostport(const char *host, uint16_t port, char *out, size_t len)
{
	if (strchr(host, ':'))
		snprintf(out, len, "[%s]:%u", host, port);
	else
		snprintf(out, len, "%s:%u", host, port);
}

void tcp_close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}
