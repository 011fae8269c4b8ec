/* SPDX-License-Identifier: MIT */
/*
 * Threads: the relay thread owns the sockets and the records while it runs;
 * the test reads the records only after th_relay_stop() joined it. `stop`
 * and the counters the test polls for completion are atomics.
 */
#include "th_relay.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "th_sock.h"

struct record {
	uint8_t *buf;
	size_t len, cap;
};

struct th_relay {
	int lfd;
	uint16_t port, upstream;
	size_t record_max;
	pthread_t th;
	bool running;
	atomic_bool stop;
	int fd[TH_RELAY_MAX_CONNS][2]; /* [client, upstream]; a closed one is stored as -fd - 2 */
	atomic_uint nconns;
	atomic_uint closed; /* sockets that reached end of file */
	struct record rec[TH_RELAY_MAX_CONNS][2];
};

static void record(struct th_relay *r, struct record *rec, const uint8_t *p, size_t n)
{
	if (rec->len + n > r->record_max)
		n = r->record_max - rec->len;
	if (!n)
		return;
	if (rec->len + n > rec->cap) {
		size_t cap = rec->cap ? rec->cap : 4096;
		uint8_t *b;

		while (cap < rec->len + n)
			cap *= 2;
		b = realloc(rec->buf, cap);
		if (!b)
			return;
		rec->buf = b;
		rec->cap = cap;
	}
	memcpy(rec->buf + rec->len, p, n);
	rec->len += n;
}

static void accept_one(struct th_relay *r)
{
	unsigned n = atomic_load(&r->nconns);
	int cfd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
	int ufd = cfd >= 0 && n < TH_RELAY_MAX_CONNS ? th_tcp_connect(NULL, r->upstream, 0) : -1;

	if (cfd >= 0 && ufd >= 0) {
		r->fd[n][0] = cfd;
		r->fd[n][1] = ufd;
		atomic_store(&r->nconns, n + 1);
	} else if (cfd >= 0) {
		close(cfd);
	}
}

/* One side of a connection is readable: forward a chunk, or pass its end of file on. */
static void forward(struct th_relay *r, unsigned i, int s, uint8_t *buf, size_t cap)
{
	ssize_t n = recv(r->fd[i][s], buf, cap, 0);

	if (n < 0 && errno == EINTR)
		return;
	if (n <= 0) {
		shutdown(r->fd[i][!s], SHUT_WR);
		r->fd[i][s] = -r->fd[i][s] - 2;
		atomic_fetch_add(&r->closed, 1);
		return;
	}
	record(r, &r->rec[i][s], buf, (size_t)n);
	th_send_all(r->fd[i][!s], buf, (size_t)n, NULL);
}

static void *relay_thread(void *arg)
{
	struct th_relay *r = arg;
	uint8_t *buf = malloc(1 << 16);

	while (buf && !atomic_load(&r->stop)) {
		struct pollfd p[1 + 2 * TH_RELAY_MAX_CONNS];
		unsigned np = 0, n = atomic_load(&r->nconns);

		p[np++] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
		for (unsigned i = 0; i < n; i++)
			for (int s = 0; s < 2; s++)
				p[np++] = (struct pollfd){.fd = r->fd[i][s], .events = POLLIN};
		/* A short timeout: stop is polled, not signalled. */
		if (poll(p, np, 100) <= 0)
			continue;
		for (unsigned i = 0; i < n; i++)
			for (int s = 0; s < 2; s++)
				if (p[1 + 2 * i + (unsigned)s].fd >= 0 &&
				    p[1 + 2 * i + (unsigned)s].revents)
					forward(r, i, s, buf, 1 << 16);
		if (p[0].revents & POLLIN)
			accept_one(r);
	}
	free(buf);
	return NULL;
}

int th_relay_start(uint16_t upstream, size_t record_max, struct th_relay **out,
		   struct rdmig_err *err)
{
	struct th_relay *r;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	r->upstream = upstream;
	r->record_max = record_max;
	r->lfd = th_tcp_listen(NULL, &r->port);
	if (r->lfd < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "relay: listening socket");
		goto out_free;
	}
	ret = rdmig_neg_pos(pthread_create(&r->th, NULL, relay_thread, r));
	if (ret) {
		rdmig_seterr_errno(err, ret, "relay: thread");
		goto out_free;
	}
	r->running = true;
	*out = r;
	return 0;

out_free:
	if (r->lfd >= 0)
		close(r->lfd);
	free(r);
	return ret;
}

uint16_t th_relay_port(const struct th_relay *r)
{
	return r->port;
}

void th_relay_stop(struct th_relay *r, int timeout_ms)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);

	if (!r || !r->running)
		return;
	while (rdmig_ms_left(deadline) != 0) {
		unsigned n = atomic_load(&r->nconns);

		if (n && atomic_load(&r->closed) == 2 * n)
			break;
		rdmig_sleep_ms(10);
	}
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	r->running = false;
	for (unsigned i = 0; i < atomic_load(&r->nconns); i++)
		for (int s = 0; s < 2; s++)
			close(r->fd[i][s] >= 0 ? r->fd[i][s] : -r->fd[i][s] - 2);
	close(r->lfd);
	r->lfd = -1;
}

void th_relay_destroy(struct th_relay *r)
{
	if (!r)
		return;
	th_relay_stop(r, 0);
	for (unsigned i = 0; i < TH_RELAY_MAX_CONNS; i++)
		for (int s = 0; s < 2; s++)
			free(r->rec[i][s].buf);
	free(r);
}

unsigned th_relay_conns(const struct th_relay *r)
{
	return atomic_load(&((struct th_relay *)r)->nconns);
}

const uint8_t *th_relay_record(const struct th_relay *r, unsigned conn, int dir, size_t *len)
{
	*len = 0;
	if (conn >= TH_RELAY_MAX_CONNS || dir < 0 || dir > 1)
		return NULL;
	*len = r->rec[conn][dir].len;
	return r->rec[conn][dir].buf;
}

size_t th_relay_total(const struct th_relay *r)
{
	size_t n = 0;

	for (unsigned i = 0; i < TH_RELAY_MAX_CONNS; i++)
		n += r->rec[i][0].len + r->rec[i][1].len;
	return n;
}
