/* SPDX-License-Identifier: MIT */
/*
 * Source relay: the unix socket QEMU's `migrate unix:PATH` connects to.
 * One accept thread turns every QEMU connection into a stream to the
 * destination relay, strictly one after the other (relay.h says why), on
 * the next free channel of the current stream set. That thread alone
 * opens, binds and retires sets; the pipes on a set keep it alive after.
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

/* How often the accept thread looks whether an idle set can go. */
#define IDLE_CHECK_MS 1000

/* Connect a new set and have the destination relay take it. */
static int src_set_open(struct rdmig_relay_src *r, struct relay_set **out, struct rdmig_err *err)
{
	struct rdmig_conn *c = NULL;
	int ret;

	*out = NULL;
	ret = rdmig_connect(&r->xcfg, &c, err);
	if (ret) {
		rdmig_err_prefix(err, "destination relay %s:%u", r->host, r->xcfg.port);
		return ret;
	}
	ret = relay_hello(c, RELAY_SET, err);
	if (ret) {
		rdmig_conn_destroy(c);
		return ret;
	}
	ret = relay_set_new(&r->owner, c, out, err);
	if (!ret)
		log_info("stream set %u: %u channels to %s:%u", (*out)->id, (*out)->nchan, r->host,
			 r->xcfg.port);
	return ret;
}

/*
 * A set takes no more streams once every channel is taken, it broke, or
 * every stream on it has ended (that migration is over: the next one gets
 * a fresh set rather than the leftovers of an old one).
 */
static bool set_open_for_more(struct relay_set *s)
{
	return s && !atomic_load(&s->failed) && !rdmig_conn_failed(s->conn, NULL) &&
	       s->used < s->nchan && !(s->used && !atomic_load(&s->live));
}

/* One QEMU connection: a channel of the current set, and the destination's go. */
static int src_open_stream(struct rdmig_relay_src *r, struct relay_set **cur, int fd, unsigned idx,
			   struct rdmig_err *err)
{
	struct relay_set *s;
	unsigned chan;
	char name[RELAY_NAME_MAX];
	int ret;

	if (!set_open_for_more(*cur)) {
		relay_set_put(*cur);
		ret = src_set_open(r, cur, err);
		if (ret) {
			rdmig_err_prefix(err, "stream %u", idx);
			close(fd);
			return ret;
		}
	}
	s = *cur;
	chan = s->used++;
	ret = relay_stream_open(s->conn, chan, idx, err);
	if (ret) {
		rdmig_err_prefix(err, "stream %u (set %u, channel %u)", idx, s->id, chan);
		/* A refusal leaves the set usable; anything else, its control channel is lost. */
		if (ret != -EREMOTEIO)
			relay_set_fail(s, err);
		close(fd);
		return ret;
	}
	snprintf(name, sizeof(name), "src stream %u (set %u, channel %u)", idx, s->id, chan);
	return relay_pipe_start(s, chan, fd, name, err);
}

static void *src_accept_thread(void *arg)
{
	struct rdmig_relay_src *r = arg;
	struct relay_set *cur = NULL;
	unsigned idx = 0;

	for (;;) {
		struct pollfd pf[2] = {{.fd = r->lfd, .events = POLLIN},
				       {.fd = r->wake, .events = POLLIN}};
		struct rdmig_err err = RDMIG_ERR_INIT;
		int fd, n;

		n = poll(pf, 2, cur ? IDLE_CHECK_MS : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rdmig_seterr_errno(&err, rdmig_neg_errno(), "relay: poll");
			relay_owner_error(&r->owner, &err);
			break;
		}
		if (pf[1].revents)
			break;
		if (n == 0) {
			/* Nothing more will ever use a used-up set: close it, the peer's too. */
			if (!set_open_for_more(cur)) {
				relay_set_put(cur);
				cur = NULL;
			}
			continue;
		}
		fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
				continue;
			rdmig_seterr_errno(&err, rdmig_neg_errno(), "relay: accept on %s", r->path);
			relay_owner_error(&r->owner, &err);
			break;
		}
		/* Serial on purpose: the destination sees QEMU's connections in order. */
		if (src_open_stream(r, &cur, fd, idx++, &err))
			relay_owner_error(&r->owner, &err);
	}
	relay_set_put(cur);
	return NULL;
}

int rdmig_relay_sock_mode_check(unsigned mode, struct rdmig_err *err)
{
	if (mode & ~RDMIG_RELAY_SOCK_MODE_ALLOWED)
		return rdmig_seterr(err, -EINVAL,
				    "socket mode %04o %s: the socket takes migration streams, so "
				    "only its owner and group may connect (e.g. 0600, or 0660 with "
				    "a socket group)",
				    mode,
				    mode & ~07777u ? "is not a permission mode"
				    : mode & 07u   ? "lets every local user connect"
						   : "has set-id or sticky bits");
	return 0;
}

/*
 * Bind `fd` at `path` with exactly `mode` and the group asked for. The
 * socket file is created under umask 0177, so until the chmod below it is
 * at most 0600: nobody but its owner can connect in between.
 */
static int bind_private(int fd, const struct rdmig_relay_src_cfg *cfg, unsigned mode,
			struct rdmig_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	mode_t old;
	int ret = 0;

	strcpy(sa.sun_path, cfg->path);
	unlink(cfg->path);
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		ret = rdmig_neg_errno();
	umask(old);
	if (ret)
		return rdmig_seterr_errno(err, ret, "relay: bind %s", cfg->path);
	if (cfg->set_group && chown(cfg->path, (uid_t)-1, (gid_t)cfg->gid)) {
		ret = rdmig_neg_errno();
		rdmig_seterr_errno(err, ret,
				   "relay: cannot give %s group %u (this user must be root or a "
				   "member of that group)",
				   cfg->path, cfg->gid);
		goto out_unlink;
	}
	if (chmod(cfg->path, mode)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "relay: chmod %04o %s", mode,
					 cfg->path);
		goto out_unlink;
	}
	if (listen(fd, 64)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "relay: listen on %s", cfg->path);
		goto out_unlink;
	}
	return 0;

out_unlink:
	unlink(cfg->path);
	return ret;
}

int rdmig_relay_src_start(const struct rdmig_relay_src_cfg *cfg, struct rdmig_relay_src **out,
			  struct rdmig_err *err)
{
	const struct rdmig_xport_cfg *xcfg = &cfg->xport;
	unsigned mode = cfg->mode ? cfg->mode : RDMIG_RELAY_SOCK_MODE_DEFAULT;
	struct rdmig_relay_src *r;
	struct stat st;
	int ret;

	*out = NULL;
	if (!cfg->path || !*cfg->path)
		return rdmig_seterr(err, -EINVAL, "relay: a socket path is needed");
	if (strlen(cfg->path) >= sizeof(r->path))
		return rdmig_seterr(err, -ENAMETOOLONG, "socket path %s is longer than %zu bytes",
				    cfg->path, sizeof(r->path) - 1);
	if (!xcfg->host || !*xcfg->host || !xcfg->port)
		return rdmig_seterr(err, -EINVAL, "relay: destination address and port needed");
	if (cfg->streams > RDMIG_MAX_CHANNELS)
		return rdmig_seterr(err, -EINVAL,
				    "relay: %u streams per connection: at most %u (the data "
				    "channels of one rdmig connection)",
				    cfg->streams, RDMIG_MAX_CHANNELS);
	ret = rdmig_relay_sock_mode_check(mode, err);
	if (ret)
		return ret;
	if (!lstat(cfg->path, &st) && !S_ISSOCK(st.st_mode))
		return rdmig_seterr(err, -EEXIST, "%s exists and is not a socket: not replacing it",
				    cfg->path);
	r = calloc(1, sizeof(*r));
	if (!r)
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	relay_owner_init(&r->owner);
	r->lfd = r->wake = -1;
	r->xcfg = *xcfg;
	snprintf(r->host, sizeof(r->host), "%s", xcfg->host);
	r->xcfg.host = r->host;
	r->xcfg.channels = cfg->streams ? cfg->streams : 1; /* each set's channels */
	snprintf(r->path, sizeof(r->path), "%s", cfg->path);

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
	ret = bind_private(r->lfd, cfg, mode, err);
	if (ret)
		goto out_free;
	ret = -pthread_create(&r->thread, NULL, src_accept_thread, r);
	if (ret) {
		rdmig_seterr_errno(err, ret, "relay: thread");
		goto out_unlink;
	}
	r->thread_started = true;
	*out = r;
	return 0;

out_unlink:
	unlink(r->path);
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

/* One of the owner's counters, read under its lock. */
static unsigned owner_count(struct rdmig_relay_src *r, const unsigned *counter)
{
	unsigned n;

	pthread_mutex_lock(&r->owner.lock);
	n = *counter;
	pthread_mutex_unlock(&r->owner.lock);
	return n;
}

unsigned rdmig_relay_src_streams(struct rdmig_relay_src *r)
{
	return owner_count(r, &r->owner.opened);
}

unsigned rdmig_relay_src_sets(struct rdmig_relay_src *r)
{
	return owner_count(r, &r->owner.sets);
}

void rdmig_relay_src_bytes(struct rdmig_relay_src *r, uint64_t *up, uint64_t *down)
{
	*up = atomic_load(&r->owner.up);
	*down = atomic_load(&r->owner.down);
}
