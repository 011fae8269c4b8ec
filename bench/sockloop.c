/* SPDX-License-Identifier: MIT */
/*
 * sockloop: the plain-socket peer for `rdmig bw --backend tcp`. The client
 * sends SIZE-byte messages on N TCP connections for SECONDS; the server
 * receives each message into a SIZE-byte slot of its buffer, as rdmig's tcp
 * backend receives pages straight into guest RAM. No framing, no checks:
 * the best a simple socket loop does on this host.
 *
 *   sockloop --listen PORT
 *   sockloop HOST PORT SIZE CHANNELS SECONDS     prints one JSON object
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
	int fd;
	size_t size;
	double seconds;
	uint64_t bytes;
	pthread_t th;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *recv_loop(void *arg)
{
	struct conn *c = arg;
	char *buf = malloc(c->size);
	size_t off = 0;
	ssize_t n;

	while (buf && (n = recv(c->fd, buf + off, c->size - off, 0)) > 0)
		off = (off + (size_t)n) % c->size;
	free(buf);
	close(c->fd);
	free(c);
	return NULL;
}

static void *send_loop(void *arg)
{
	struct conn *c = arg;
	char *buf = calloc(1, c->size);
	double end = now_s() + c->seconds;

	while (buf && now_s() < end) {
		for (int i = 0; i < 16; i++) {
			size_t off = 0;

			while (off < c->size) {
				ssize_t n = send(c->fd, buf + off, c->size - off, 0);

				if (n <= 0)
					goto out;
				off += (size_t)n;
			}
			c->bytes += c->size;
		}
	}
out:
	free(buf);
	shutdown(c->fd, SHUT_WR);
	return NULL;
}

static int serve(const char *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_port = htons((uint16_t)atoi(port));
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 64)) {
		perror("sockloop: bind/listen");
		return 1;
	}
	for (;;) {
		struct conn *c = calloc(1, sizeof(*c));
		uint32_t size;

		c->fd = accept(lfd, NULL, NULL);
		if (c->fd < 0 || recv(c->fd, &size, sizeof(size), MSG_WAITALL) != sizeof(size)) {
			free(c);
			continue;
		}
		c->size = size;
		pthread_create(&c->th, NULL, recv_loop, c);
		pthread_detach(c->th);
	}
}

int main(int argc, char **argv)
{
	struct conn cs[64];
	uint64_t bytes = 0;
	unsigned n;
	double t0, secs;
	size_t size;

	if (argc == 3 && !strcmp(argv[1], "--listen"))
		return serve(argv[2]);
	if (argc != 6) {
		fprintf(
		    stderr,
		    "usage: sockloop --listen PORT | sockloop HOST PORT SIZE CHANNELS SECONDS\n");
		return 2;
	}
	size = strtoul(argv[3], NULL, 10);
	n = (unsigned)atoi(argv[4]);
	if (!size || size > (1u << 30) || !n || n > 64)
		return 2;
	for (unsigned i = 0; i < n; i++) {
		struct addrinfo *ai, hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		uint32_t sz = (uint32_t)size;

		if (getaddrinfo(argv[1], argv[2], &hints, &ai)) {
			fprintf(stderr, "sockloop: cannot resolve %s\n", argv[1]);
			return 1;
		}
		cs[i].fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (connect(cs[i].fd, ai->ai_addr, ai->ai_addrlen)) {
			perror("sockloop: connect");
			return 1;
		}
		freeaddrinfo(ai);
		if (send(cs[i].fd, &sz, sizeof(sz), 0) != sizeof(sz))
			return 1;
		cs[i].size = size;
		cs[i].seconds = atof(argv[5]);
		cs[i].bytes = 0;
	}
	t0 = now_s();
	for (unsigned i = 0; i < n; i++)
		pthread_create(&cs[i].th, NULL, send_loop, &cs[i]);
	for (unsigned i = 0; i < n; i++) {
		char c;

		pthread_join(cs[i].th, NULL);
		/* The server closes when it has read everything: count only data that arrived. */
		while (recv(cs[i].fd, &c, 1, 0) > 0)
			;
		close(cs[i].fd);
		bytes += cs[i].bytes;
	}
	secs = now_s() - t0;
	printf(
	    "{\"peer\":\"sockloop\",\"size\":%zu,\"channels\":%u,\"bytes\":%llu,\"seconds\":%.6f,"
	    "\"gbps\":%.4f,\"mib_per_s\":%.2f}\n",
	    size, n, (unsigned long long)bytes, secs, (double)bytes * 8 / secs / 1e9,
	    (double)bytes / secs / 1048576.0);
	return 0;
}
