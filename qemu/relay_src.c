/* SPDX-License-Identifier: MIT */
/*
 * Source relay: the unix socket QEMU's `migrate unix:PATH` connects to.
 * One accept thread turns every QEMU connection into a stream to the
 * destination relay, strictly one after the other (relay.h says why).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "relay_int.h"

struct rdmig_relay_src {
	struct relay_owner owner;
	struct rdmig_xport_cfg xcfg;
	char host[256];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd;
	int wake; /* eventfd: stop */
	pthread_t thread;
	bool thread_started;
};

/* One QEMU connection: open the rdmig stream and wait for the destination's go. */
static int src_open_stream(struct rdmig_relay_src *r, int fd, unsigned idx, struct rdmig_err *err)
{
	struct rdmig_conn *c = NULL;
	char name[48];
	int ret;

	ret = rdmig_connect(&r->xcfg, &c, err);
	if (ret) {
		rdmig_err_prefix(err, "stream %u: destination relay %s:%u", idx, r->host,
				 r->xcfg.port);
		goto out_close;
	}
	ret = relay_hello(c, RELAY_STREAM, idx, err);
	if (ret) {
		rdmig_err_prefix(err, "stream %u", idx);
		goto out_destroy;
	}
	snprintf(name, sizeof(name), "src stream %u", idx);
	return relay_pipe_start(&r->owner, c, fd, name, err);

out_destroy:
	rdmig_conn_destroy(c);
out_close:
	close(fd);
	return ret;
}

static void *src_accept_thread(void *arg)
{
	struct rdmig_relay_src *r = arg;
	unsigned idx = 0;

	for (;;) {
		struct pollfd pf[2] = {{.fd = r->lfd, .events = POLLIN},
				       {.fd = r->wake, .events = POLLIN}};
		struct rdmig_err err = RDMIG_ERR_INIT;
		int fd;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rdmig_seterr_errno(&err, rdmig_neg_errno(), "relay: poll");
			relay_owner_error(&r->owner, &err);
			break;
		}
		if (pf[1].revents)
			break;
		fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
				continue;
			rdmig_seterr_errno(&err, rdmig_neg_errno(), "relay: accept on %s", r->path);
			relay_owner_error(&r->owner, &err);
			break;
		}
		/* Serial on purpose: the destination sees QEMU's connections in order. */
		if (src_open_stream(r, fd, idx++, &err))
			relay_owner_error(&r->owner, &err);
	}
	return NULL;
}

int rdmig_relay_src_start(const struct rdmig_xport_cfg *xcfg, const char *path,
			  struct rdmig_relay_src **out, struct rdmig_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct rdmig_relay_src *r;
	struct stat st;
	int ret;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return rdmig_seterr(err, -ENAMETOOLONG, "socket path %s is longer than %zu bytes",
				    path, sizeof(sa.sun_path) - 1);
	if (!xcfg->host || !*xcfg->host || !xcfg->port)
		return rdmig_seterr(err, -EINVAL, "relay: destination address and port needed");
	if (!lstat(path, &st) && !S_ISSOCK(st.st_mode))
		return rdmig_seterr(err, -EEXIST, "%s exists and is not a socket: not replacing it",
				    path);
	r = calloc(1, sizeof(*r));
	if (!r)
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	relay_owner_init(&r->owner);
	r->lfd = r->wake = -1;
	r->xcfg = *xcfg;
	snprintf(r->host, sizeof(r->host), "%s", xcfg->host);
	r->xcfg.host = r->host;
	r->xcfg.channels = 1;
	snprintf(r->path, sizeof(r->path), "%s", path);

	r->wake = eventfd(0, EFD_CLOEXEC);
	if (r->wake < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "relay: eventfd");
		goto out_free;
	}
	r->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (r->lfd < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "relay: socket");
		goto out_free;
	}
	strcpy(sa.sun_path, path);
	unlink(path);
	if (bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(r->lfd, 64)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "relay: listen on %s", path);
		goto out_free;
	}
	ret = -pthread_create(&r->thread, NULL, src_accept_thread, r);
	if (ret) {
		rdmig_seterr_errno(err, ret, "relay: thread");
		goto out_unlink;
	}
	r->thread_started = true;
	*out = r;
	return 0;

out_unlink:
	unlink(path);
out_free:
	if (r->lfd >= 0)
		close(r->lfd);
	if (r->wake >= 0)
		close(r->wake);
	relay_owner_fini(&r->owner);
	free(r);
	return ret;
}

void rdmig_relay_src_stop(struct rdmig_relay_src *r, int grace_ms)
{
	uint64_t one = 1;

	if (!r)
		return;
	if (r->thread_started) {
		if (write(r->wake, &one, sizeof(one)) != sizeof(one))
			log_warn("relay: cannot wake the accept thread");
		pthread_join(r->thread, NULL);
	}
	close(r->lfd);
	unlink(r->path);
	/* Streams QEMU is closing on its own get `grace_ms` to drain. */
	relay_owner_drain(&r->owner, grace_ms < 0 ? 0 : grace_ms, NULL);
	relay_owner_stop(&r->owner);
	close(r->wake);
	relay_owner_fini(&r->owner);
	free(r);
}

bool rdmig_relay_src_error(struct rdmig_relay_src *r, struct rdmig_err *out)
{
	/* The slot's own reader: never a message still being written. */
	const struct rdmig_err *e = rdmig_err_slot_get(&r->owner.first);

	if (!e)
		return false;
	if (out)
		*out = *e;
	return true;
}

unsigned rdmig_relay_src_streams(struct rdmig_relay_src *r)
{
	unsigned n;

	pthread_mutex_lock(&r->owner.lock);
	n = r->owner.opened;
	pthread_mutex_unlock(&r->owner.lock);
	return n;
}

void rdmig_relay_src_bytes(struct rdmig_relay_src *r, uint64_t *up, uint64_t *down)
{
	*up = atomic_load(&r->owner.up);
	*down = atomic_load(&r->owner.down);
}
