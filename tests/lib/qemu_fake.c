/* SPDX-License-Identifier: MIT */
/*
 * Unix sockets that answer, but not with QMP: what a QMP client (and the
 * orchestrator) must reject with a clear error within its timeout.
 */
#include <errno.h>
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

int qh_fake_start(struct qh_fake *fk, const char *path, enum qh_fake_mode mode,
		  struct rdmig_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int ret;

	memset(fk, 0, sizeof(*fk));
	fk->mode = mode;
	fk->lfd = -1;
	if (strlen(path) >= sizeof(sa.sun_path))
		return rdmig_seterr(err, -ENAMETOOLONG, "fake socket path too long: %s", path);
	snprintf(fk->path, sizeof(fk->path), "%s", path);
	strcpy(sa.sun_path, path);
	unlink(path);
	fk->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fk->lfd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "fake socket %s", path);
	if (bind(fk->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fk->lfd, 4)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "fake socket %s", path);
		goto out_close;
	}
	ret = -pthread_create(&fk->thread, NULL, fake_thread, fk);
	if (ret) {
		rdmig_seterr_errno(err, ret, "fake socket %s: thread", path);
		goto out_unlink;
	}
	fk->serving = true;
	return 0;

out_unlink:
	unlink(path);
out_close:
	close(fk->lfd);
	fk->lfd = -1;
	return ret;
}

void qh_fake_stop(struct qh_fake *fk)
{
	if (fk->serving) {
		shutdown(fk->lfd, SHUT_RDWR);
		pthread_join(fk->thread, NULL);
		fk->serving = false;
	}
	if (fk->lfd >= 0) {
		close(fk->lfd);
		unlink(fk->path);
	}
	fk->lfd = -1;
}
