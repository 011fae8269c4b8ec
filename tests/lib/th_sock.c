/* SPDX-License-Identifier: MIT */
#include "th_sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "clock.h"

static int addr_of(const char *host, uint16_t port, struct sockaddr_in *sa)
{
	*sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
	return inet_pton(AF_INET, host ? host : "127.0.0.1", &sa->sin_addr) == 1 ? 0 : -1;
}

int th_tcp_connect(const char *host, uint16_t port, int io_timeout_ms)
{
	struct timeval tv = {.tv_sec = io_timeout_ms / 1000,
			     .tv_usec = (io_timeout_ms % 1000) * 1000};
	struct sockaddr_in sa;
	int fd;

	if (addr_of(host, port, &sa))
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (io_timeout_ms > 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

int th_tcp_listen(const char *host, uint16_t *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd;

	if (addr_of(host, 0, &sa))
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

int th_send_all(int fd, const void *buf, size_t len, struct rdmig_err *err)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rdmig_seterr_errno(err, errno == EPIPE ? -EPIPE : rdmig_neg_errno(),
						  "send");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int th_recv_all(int fd, void *buf, size_t len, int timeout_ms, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	uint8_t *p = buf;

	while (len) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int r = poll(&pf, 1, rdmig_ms_left(deadline));
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return rdmig_seterr_errno(err, rdmig_neg_errno(), "poll");
		if (r == 0)
			return rdmig_seterr(err, -ETIMEDOUT, "nothing received within %d ms",
					    timeout_ms);
		n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rdmig_seterr_errno(err, rdmig_neg_errno(), "recv");
		if (n == 0)
			return rdmig_seterr(err, -EPIPE, "the other end closed the connection");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
