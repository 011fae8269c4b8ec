/* SPDX-License-Identifier: MIT */
/*
 * Unix sockets that answer, but not with QMP: what a QMP client (and the
 * orchestrator) must reject with a clear error within its timeout. And a
 * sink in place of a destination QEMU's incoming socket, which counts what
 * reaches it: the relay must let nothing through for an unauthenticated peer.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "qemu_harness.h"

#define FAKE_GREETING                                                                              \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 9}, "          \
	"\"package\": \"fake\"}, \"capabilities\": []}}\r\n"

static int send_str(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

#define SEND(fd, lit) send_str(fd, lit, strlen(lit))

/* Wait (bounded) for the client to hang up, so it sees only what was sent. */
static void drain_until_eof(int fd)
{
	int64_t deadline = rdmig_deadline_ms(10000);
	char buf[4096];

	while (rdmig_ms_left(deadline) > 0) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return;
		if (r < 0)
			rdmig_sleep_ms(10);
	}
}

static void serve(int fd, enum qh_fake_mode mode)
{
	static char chunk[1 << 20];

	switch (mode) {
	case QH_FAKE_GARBAGE:
		SEND(fd, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
		break;
	case QH_FAKE_JSON:
		SEND(fd, "{\"hello\": \"world\"}\r\n");
		break;
	case QH_FAKE_SILENT:
		break;
	case QH_FAKE_HANGUP:
		return;
	case QH_FAKE_HUGE:
		memset(chunk, 'x', sizeof(chunk));
		for (unsigned i = 0; i <= RDMIG_QMP_MAX_LINE / sizeof(chunk); i++)
			if (send_str(fd, chunk, sizeof(chunk)))
				break;
		break;
	case QH_FAKE_BAD_REPLY:
		SEND(fd, FAKE_GREETING);
		SEND(fd, "{\"return\": {}, \"id\": 1, oops\r\n");
		break;
	case QH_FAKE_ODD_REPLY:
		SEND(fd, FAKE_GREETING);
		SEND(fd, "{\"id\": 1, \"result\": {}}\r\n");
		break;
	}
	drain_until_eof(fd);
}

static void *fake_thread(void *arg)
{
	struct qh_fake *fk = arg;
	int fd;

	/* Until qh_fake_stop() shuts the listening socket down. */
	while ((fd = accept(fk->lfd, NULL, NULL)) >= 0 || errno == EINTR) {
		if (fd < 0)
			continue;
		serve(fd, fk->mode);
		close(fd);
	}
	return NULL;
}

/*
 * Listen on the unix socket `path` (replacing one left there) and serve it
 * from a thread running fn(arg): the listening fd into *lfd, -1 on failure.
 */
static int unix_serve(const char *path, const char *what, int *lfd, pthread_t *thread,
		      void *(*fn)(void *), void *arg, struct rdmig_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int ret;

	*lfd = -1;
	if (strlen(path) >= sizeof(sa.sun_path))
		return rdmig_seterr(err, -ENAMETOOLONG, "%s socket path too long: %s", what, path);
	strcpy(sa.sun_path, path);
	unlink(path);
	*lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*lfd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "%s socket %s", what, path);
	if (bind(*lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(*lfd, 16)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "%s socket %s", what, path);
		goto out_close;
	}
	ret = -pthread_create(thread, NULL, fn, arg);
	if (ret) {
		rdmig_seterr_errno(err, ret, "%s socket %s: thread", what, path);
		goto out_unlink;
	}
	return 0;

out_unlink:
	unlink(path);
out_close:
	close(*lfd);
	*lfd = -1;
	return ret;
}

/* Shut the listener down (its thread sees that and returns), join, remove the socket. */
static void unix_unserve(int *lfd, bool *serving, pthread_t thread, const char *path)
{
	if (*serving) {
		shutdown(*lfd, SHUT_RDWR);
		pthread_join(thread, NULL);
		*serving = false;
	}
	if (*lfd >= 0) {
		close(*lfd);
		unlink(path);
	}
	*lfd = -1;
}

int qh_fake_start(struct qh_fake *fk, const char *path, enum qh_fake_mode mode,
		  struct rdmig_err *err)
{
	int ret;

	memset(fk, 0, sizeof(*fk));
	fk->mode = mode;
	snprintf(fk->path, sizeof(fk->path), "%s", path);
	ret = unix_serve(path, "fake", &fk->lfd, &fk->thread, fake_thread, fk, err);
	fk->serving = !ret;
	return ret;
}

void qh_fake_stop(struct qh_fake *fk)
{
	unix_unserve(&fk->lfd, &fk->serving, fk->thread, fk->path);
}

/* ---- the sink ----------------------------------------------------------------- */

#define SINK_MAX_CONNS 16

/* One thread polls the listener and every connection until stopped. */
static void *sink_thread(void *arg)
{
	struct qh_sink *sk = arg;
	struct pollfd pf[SINK_MAX_CONNS + 1];
	static char buf[64 * 1024];
	nfds_t n = 1;

	pf[0] = (struct pollfd){.fd = sk->lfd, .events = POLLIN};
	for (;;) {
		if (poll(pf, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			break; /* qh_sink_stop() shut the listener down */
		if (pf[0].revents & POLLIN) {
			int fd = accept4(sk->lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0) {
				atomic_fetch_add(&sk->conns, 1);
				if (n <= SINK_MAX_CONNS)
					pf[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
				else
					close(fd);
			}
		}
		for (nfds_t i = 1; i < n; i++) {
			ssize_t r;

			if (!pf[i].revents)
				continue;
			r = recv(pf[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0) {
				atomic_fetch_add(&sk->bytes, (uint64_t)r);
				continue;
			}
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			close(pf[i].fd);
			pf[i--] = pf[--n];
		}
	}
	for (nfds_t i = 1; i < n; i++)
		close(pf[i].fd);
	return NULL;
}

int qh_sink_start(struct qh_sink *sk, const char *path, struct rdmig_err *err)
{
	int ret;

	memset(sk, 0, sizeof(*sk));
	snprintf(sk->path, sizeof(sk->path), "%s", path);
	ret = unix_serve(path, "sink", &sk->lfd, &sk->thread, sink_thread, sk, err);
	sk->serving = !ret;
	return ret;
}

void qh_sink_stop(struct qh_sink *sk)
{
	unix_unserve(&sk->lfd, &sk->serving, sk->thread, sk->path);
}
