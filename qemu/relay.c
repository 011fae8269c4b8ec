/* SPDX-License-Identifier: MIT */
/*
 * QEMU migration relay (see relay.h).
 *
 * Ownership and locking:
 *  - A `struct pipe` joins one unix socket and one rdmig connection. Its two
 *    threads are detached; the last one to finish unlinks the pipe from its
 *    owner's list (under owner->lock), then destroys the connection and
 *    closes the socket. Whoever wants to abort pipes (stop) does so under
 *    owner->lock, so it only touches pipes that are still alive.
 *  - The destination's control sessions share one QMP client at a time:
 *    QEMU serves one client per QMP socket, so sessions are serialised by
 *    dst->qmp_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "qmp.h"
#include "relay.h"

#define HELLO_TIMEOUT_MS 15000
#define QMP_TIMEOUT_MS	 10000
#define MAX_JSON	 RDMIG_CTRL_MAX_PAYLOAD

/* ---- JSON control messages ------------------------------------------------ */

int rdmig_relay_send_json(struct rdmig_conn *c, uint16_t type, json_t *msg, struct rdmig_err *err)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	int ret;

	if (!s)
		return rdmig_seterr(err, -ENOMEM, "relay: cannot encode a control message");
	if (strlen(s) > MAX_JSON) {
		free(s);
		return rdmig_seterr(err, -EMSGSIZE, "relay: control message too large");
	}
	ret = rdmig_ctrl_send(c, type, s, strlen(s), err);
	free(s);
	return ret;
}

int rdmig_relay_recv_json(struct rdmig_conn *c, uint16_t want, json_t **out, int timeout_ms,
			  struct rdmig_err *err)
{
	char *buf = malloc(MAX_JSON + 1);
	json_error_t jerr;
	uint16_t type;
	size_t len;
	json_t *j;
	int ret;

	*out = NULL;
	if (!buf)
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	ret = rdmig_ctrl_recv(c, &type, buf, MAX_JSON, &len, timeout_ms, err);
	if (ret) {
		free(buf);
		return ret;
	}
	if (type != want) {
		free(buf);
		return rdmig_seterr(err, -EPROTO,
				    "relay: peer sent control message 0x%x, expected 0x%x (is the "
				    "peer an rdmig qemu relay?)",
				    type, want);
	}
	buf[len] = '\0';
	j = json_loadb(buf, len, 0, &jerr);
	free(buf);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return rdmig_seterr(err, -EPROTO, "relay: malformed control message from peer: %s",
				    j ? "not a JSON object" : jerr.text);
	}
	*out = j;
	return 0;
}

static json_t *reply_ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

static json_t *reply_err(const char *msg)
{
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

/* Turn a reply into 0 or -EREMOTEIO with the peer's message. */
static int check_reply(json_t *r, struct rdmig_err *err)
{
	const char *e;

	if (json_is_true(json_object_get(r, "ok")))
		return 0;
	e = json_string_value(json_object_get(r, "error"));
	return rdmig_seterr(err, -EREMOTEIO, "%s", e ? e : "destination relay refused (no reason)");
}

/* ---- pipes: one QEMU connection <-> one rdmig stream ---------------------- */

struct owner {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pipe *pipes; /* live pipes, under lock */
	unsigned live;
	unsigned opened;
	bool stopping;
	_Atomic uint64_t up, down; /* bytes unix->rdmig, rdmig->unix */
	struct rdmig_err_slot first;
};

struct pipe {
	struct pipe *next;
	struct owner *owner;
	struct rdmig_conn *conn;
	int fd;
	atomic_int threads;
	atomic_int failed;
	char name[48];
};

static void owner_init(struct owner *o)
{
	memset(o, 0, sizeof(*o));
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, NULL);
}

static void owner_fini(struct owner *o)
{
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->cond);
}

static void owner_error(struct owner *o, const struct rdmig_err *e)
{
	if (rdmig_err_slot_put(&o->first, e))
		log_warn("%s", e->msg);
}

/* Abort both directions: the rdmig peer and the local QEMU both see it. */
static void pipe_fail(struct pipe *p, const struct rdmig_err *e)
{
	if (atomic_exchange(&p->failed, 1))
		return;
	if (!p->owner->stopping)
		owner_error(p->owner, e);
	rdmig_conn_abort(p->conn, e->code ? e->code : -EIO, e->msg);
	shutdown(p->fd, SHUT_RDWR);
}

static void pipe_put(struct pipe *p)
{
	struct owner *o = p->owner;

	if (atomic_fetch_sub(&p->threads, 1) != 1)
		return;
	pthread_mutex_lock(&o->lock);
	for (struct pipe **pp = &o->pipes; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pthread_mutex_unlock(&o->lock);
	log_info("%s: closed", p->name);
	rdmig_conn_destroy(p->conn);
	close(p->fd);
	free(p);
	pthread_mutex_lock(&o->lock);
	o->live--;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* unix -> rdmig */
static void *pipe_up(void *arg)
{
	struct pipe *p = arg;
	struct rdmig_err err = RDMIG_ERR_INIT;
	char *buf = malloc(RDMIG_RELAY_BUF);

	if (!buf) {
		rdmig_seterr(&err, -ENOMEM, "%s: out of memory", p->name);
		pipe_fail(p, &err);
	}
	while (buf) {
		ssize_t n = recv(p->fd, buf, RDMIG_RELAY_BUF, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (!p->failed)
				rdmig_seterr_errno(&err, -errno, "%s: reading from QEMU", p->name);
			break;
		}
		if (n == 0) {
			if (!p->failed && rdmig_stream_shutdown(p->conn, 0, &err))
				break;
			rdmig_err_clear(&err);
			break;
		}
		if (rdmig_stream_send(p->conn, 0, buf, (size_t)n, &err)) {
			rdmig_err_prefix(&err, "%s", p->name);
			break;
		}
		atomic_fetch_add(&p->owner->up, (uint64_t)n);
	}
	if (err.code)
		pipe_fail(p, &err);
	free(buf);
	pipe_put(p);
	return NULL;
}

/* rdmig -> unix */
static void *pipe_down(void *arg)
{
	struct pipe *p = arg;
	struct rdmig_err err = RDMIG_ERR_INIT;
	char *buf = malloc(RDMIG_RELAY_BUF);
	int ret;

	if (!buf) {
		rdmig_seterr(&err, -ENOMEM, "%s: out of memory", p->name);
		pipe_fail(p, &err);
	}
	while (buf) {
		ssize_t n = rdmig_stream_recv(p->conn, 0, buf, RDMIG_RELAY_BUF, -1, &err);

		if (n < 0) {
			rdmig_err_prefix(&err, "%s", p->name);
			break;
		}
		if (n == 0) {
			shutdown(p->fd, SHUT_WR);
			break;
		}
		ret = send_all(p->fd, buf, (size_t)n);
		if (ret) {
			if (!p->failed)
				rdmig_seterr_errno(&err, ret, "%s: writing to QEMU", p->name);
			break;
		}
		atomic_fetch_add(&p->owner->down, (uint64_t)n);
	}
	if (err.code)
		pipe_fail(p, &err);
	free(buf);
	pipe_put(p);
	return NULL;
}

/* Takes ownership of conn and fd (both released on failure too). */
static int pipe_start(struct owner *o, struct rdmig_conn *conn, int fd, const char *name,
		      struct rdmig_err *err)
{
	struct pipe *p = calloc(1, sizeof(*p));
	pthread_attr_t attr;
	pthread_t t;
	int ret;

	if (!p) {
		rdmig_conn_destroy(conn);
		close(fd);
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	}
	p->owner = o;
	p->conn = conn;
	p->fd = fd;
	snprintf(p->name, sizeof(p->name), "%s", name);
	atomic_init(&p->threads, 2);
	pthread_mutex_lock(&o->lock);
	p->next = o->pipes;
	o->pipes = p;
	o->live++;
	o->opened++;
	pthread_mutex_unlock(&o->lock);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = -pthread_create(&t, &attr, pipe_up, p);
	if (ret) {
		rdmig_seterr_errno(err, ret, "%s: thread", name);
		pipe_fail(p, err);
		atomic_store(&p->threads, 1); /* only this call's put is left */
		pipe_put(p);
		pthread_attr_destroy(&attr);
		return ret;
	}
	ret = -pthread_create(&t, &attr, pipe_down, p);
	pthread_attr_destroy(&attr);
	if (ret) {
		rdmig_seterr_errno(err, ret, "%s: thread", name);
		pipe_fail(p, err);
		pipe_put(p); /* pipe_up exits after the fail and puts the last reference */
		return ret;
	}
	log_info("%s: open", name);
	return 0;
}

/* Abort every live pipe and wait until all have gone. */
static void owner_stop(struct owner *o)
{
	struct rdmig_err e = RDMIG_ERR_INIT;

	rdmig_seterr(&e, -ECANCELED, "relay stopped");
	pthread_mutex_lock(&o->lock);
	o->stopping = true;
	for (struct pipe *p = o->pipes; p; p = p->next)
		pipe_fail(p, &e);
	while (o->live)
		pthread_cond_wait(&o->cond, &o->lock);
	pthread_mutex_unlock(&o->lock);
}

static int unix_connect(const char *path, struct rdmig_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return rdmig_seterr(err, -ENAMETOOLONG, "unix socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = rdmig_neg_errno();
		close(fd);
		return rdmig_seterr_errno(err, ret, "connect to %s", path);
	}
	return fd;
}

/* ---- source relay ---------------------------------------------------------- */

struct rdmig_relay_src {
	struct owner owner;
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
	json_t *hello, *reply = NULL;
	char name[48];
	int ret;

	ret = rdmig_connect(&r->xcfg, &c, err);
	if (ret) {
		rdmig_err_prefix(err, "stream %u: destination relay %s:%u", idx, r->host,
				 r->xcfg.port);
		goto out_close;
	}
	hello = json_pack("{s:s, s:i, s:i}", "kind", "stream", "version", RDMIG_RELAY_VERSION,
			  "index", (int)idx);
	ret = rdmig_relay_send_json(c, RDMIG_RELAY_MSG_HELLO, hello, err);
	json_decref(hello);
	if (!ret)
		ret =
		    rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_REPLY, &reply, HELLO_TIMEOUT_MS, err);
	if (!ret)
		ret = check_reply(reply, err);
	json_decref(reply);
	if (ret) {
		rdmig_err_prefix(err, "stream %u", idx);
		goto out_destroy;
	}
	snprintf(name, sizeof(name), "src stream %u", idx);
	return pipe_start(&r->owner, c, fd, name, err);

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
			owner_error(&r->owner, &err);
			break;
		}
		if (pf[1].revents)
			break;
		fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
				continue;
			rdmig_seterr_errno(&err, rdmig_neg_errno(), "relay: accept on %s", r->path);
			owner_error(&r->owner, &err);
			break;
		}
		/* Serial on purpose: the destination sees QEMU's connections in order. */
		if (src_open_stream(r, fd, idx++, &err))
			owner_error(&r->owner, &err);
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
	owner_init(&r->owner);
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
	owner_fini(&r->owner);
	free(r);
	return ret;
}

void rdmig_relay_src_stop(struct rdmig_relay_src *r, int grace_ms)
{
	uint64_t one = 1;
	struct timespec end;

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
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += grace_ms / 1000;
	end.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->owner.lock);
	while (r->owner.live &&
	       pthread_cond_timedwait(&r->owner.cond, &r->owner.lock, &end) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&r->owner.lock);
	owner_stop(&r->owner);
	close(r->wake);
	owner_fini(&r->owner);
	free(r);
}

bool rdmig_relay_src_error(struct rdmig_relay_src *r, struct rdmig_err *out)
{
	if (!atomic_load(&r->owner.first.taken))
		return false;
	if (out)
		*out = r->owner.first.err;
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

/* ---- destination relay ------------------------------------------------------ */

struct dst {
	const struct rdmig_relay_dst_cfg *cfg;
	struct owner owner;
	pthread_mutex_t qmp_lock; /* one control session talks to QEMU at a time */
	atomic_int sessions;	  /* control + hello threads still running */
	atomic_int control_done;  /* a control session has ended (cfg->once) */
};

struct session {
	struct dst *d;
	struct rdmig_conn *c;
};

/* Capabilities and parameters a control session may set (a whitelist, not QMP). */
static const char *const settable_caps[] = {
    "multifd",	   "auto-converge", "postcopy-ram",	      "xbzrle",
    "zero-blocks", "events",	    "pause-before-switchover"};
static const char *const settable_params[] = {"multifd-channels", "downtime-limit",
					      "max-bandwidth"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

static bool socket_exists(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISSOCK(st.st_mode);
}

/* Run one request; returns the reply (never NULL unless out of memory). */
static json_t *dst_request(struct dst *d, struct rdmig_qmp *qmp, json_t *req)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *op = json_string_value(json_object_get(req, "op"));
	char status[64], uri[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	json_t *reply;

	if (!op)
		return reply_err("destination relay: request without \"op\"");
	if (!strcmp(op, "query")) {
		json_t *caps = NULL, *params = NULL, *capmap = json_object();
		int maj, min, mic;
		char ver[32];
		size_t i;
		json_t *v;

		if (rdmig_qmp_status(qmp, status, sizeof(status), &err) ||
		    rdmig_qmp_cmd(qmp, "query-migrate-capabilities", NULL, &caps, QMP_TIMEOUT_MS,
				  &err) ||
		    rdmig_qmp_cmd(qmp, "query-migrate-parameters", NULL, &params, QMP_TIMEOUT_MS,
				  &err)) {
			json_decref(caps);
			json_decref(capmap);
			goto qmp_failed;
		}
		json_array_foreach(caps, i, v)
		{
			const char *name = json_string_value(json_object_get(v, "capability"));

			if (name)
				json_object_set(capmap, name, json_object_get(v, "state"));
		}
		json_decref(caps);
		rdmig_qmp_version(qmp, &maj, &min, &mic);
		snprintf(ver, sizeof(ver), "%d.%d.%d", maj, min, mic);
		return json_pack("{s:b, s:s, s:s, s:o, s:o, s:s, s:b}", "ok", 1, "version", ver,
				 "status", status, "capabilities", capmap, "parameters", params,
				 "incoming", d->cfg->incoming_path, "incoming_ready",
				 socket_exists(d->cfg->incoming_path));
	}
	if (!strcmp(op, "set-capabilities")) {
		json_t *caps = json_object_get(req, "capabilities"), *list = json_array(), *v;
		const char *name;

		json_object_foreach(caps, name, v)
		{
			if (!in_list(name, settable_caps,
				     sizeof(settable_caps) / sizeof(settable_caps[0])) ||
			    !json_is_boolean(v)) {
				json_decref(list);
				snprintf(err.msg, sizeof(err.msg),
					 "destination relay: capability \"%.64s\" cannot be set "
					 "through the relay",
					 name);
				return reply_err(err.msg);
			}
			json_array_append_new(
			    list, json_pack("{s:s, s:O}", "capability", name, "state", v));
		}
		if (rdmig_qmp_cmd(qmp, "migrate-set-capabilities",
				  json_pack("{s:o}", "capabilities", list), NULL, QMP_TIMEOUT_MS,
				  &err))
			goto qmp_failed;
		return reply_ok();
	}
	if (!strcmp(op, "set-parameters")) {
		json_t *params = json_object_get(req, "parameters"), *v;
		const char *name;

		json_object_foreach(params, name, v)
		{
			if (!in_list(name, settable_params,
				     sizeof(settable_params) / sizeof(settable_params[0])) ||
			    !json_is_number(v)) {
				snprintf(err.msg, sizeof(err.msg),
					 "destination relay: parameter \"%.64s\" cannot be set "
					 "through the relay",
					 name);
				return reply_err(err.msg);
			}
		}
		if (rdmig_qmp_cmd(qmp, "migrate-set-parameters", json_deep_copy(params), NULL,
				  QMP_TIMEOUT_MS, &err))
			goto qmp_failed;
		return reply_ok();
	}
	if (!strcmp(op, "start-incoming")) {
		/* -incoming unix:PATH listens already; -incoming defer needs migrate-incoming. */
		if (socket_exists(d->cfg->incoming_path))
			return json_pack("{s:b, s:b}", "ok", 1, "deferred", 0);
		if (rdmig_qmp_status(qmp, status, sizeof(status), &err))
			goto qmp_failed;
		if (strcmp(status, "inmigrate")) {
			snprintf(err.msg, sizeof(err.msg),
				 "destination QEMU is \"%s\", not waiting for a migration", status);
			return reply_err(err.msg);
		}
		snprintf(uri, sizeof(uri), "unix:%s", d->cfg->incoming_path);
		if (rdmig_qmp_cmd(qmp, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL,
				  QMP_TIMEOUT_MS, &err))
			goto qmp_failed;
		if (!socket_exists(d->cfg->incoming_path))
			return reply_err("destination QEMU accepted migrate-incoming but its "
					 "incoming socket did not appear");
		return json_pack("{s:b, s:b}", "ok", 1, "deferred", 1);
	}
	if (!strcmp(op, "status")) {
		json_t *mig = NULL;
		const char *ms, *desc;

		if (rdmig_qmp_status(qmp, status, sizeof(status), &err) ||
		    rdmig_qmp_cmd(qmp, "query-migrate", NULL, &mig, QMP_TIMEOUT_MS, &err))
			goto qmp_failed;
		ms = json_string_value(json_object_get(mig, "status"));
		desc = json_string_value(json_object_get(mig, "error-desc"));
		reply = json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "status", status, "migration",
				  ms ? ms : "none", "error", desc ? desc : "");
		json_decref(mig);
		return reply;
	}
	if (!strcmp(op, "cont")) {
		if (rdmig_qmp_cmd(qmp, "cont", NULL, NULL, QMP_TIMEOUT_MS, &err))
			goto qmp_failed;
		return reply_ok();
	}
	snprintf(err.msg, sizeof(err.msg), "destination relay: unknown request \"%.64s\"", op);
	return reply_err(err.msg);

qmp_failed:
	rdmig_err_prefix(&err, "destination QEMU (QMP %s)", d->cfg->qmp_path);
	return reply_err(err.msg);
}

static void dst_control(struct dst *d, struct rdmig_conn *c)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_qmp *qmp = NULL;
	char why[RDMIG_ERR_MSG_MAX + 32] = "";

	pthread_mutex_lock(&d->qmp_lock);
	if (!d->cfg->qmp_path)
		snprintf(why, sizeof(why),
			 "destination relay was started without --qmp: it cannot drive the "
			 "destination QEMU");
	else if (rdmig_qmp_open(d->cfg->qmp_path, QMP_TIMEOUT_MS, &qmp, &err))
		snprintf(why, sizeof(why), "destination relay: %s", err.msg);
	log_info("control session: %s", why[0] ? why : "QMP open");
	for (;;) {
		json_t *req = NULL, *reply;

		rdmig_err_clear(&err);
		if (rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_REQ, &req, -1, &err)) {
			if (err.code != -ECONNRESET)
				log_warn("control session: %s", err.msg);
			break;
		}
		reply = why[0] ? reply_err(why) : dst_request(d, qmp, req);
		json_decref(req);
		if (!reply || rdmig_relay_send_json(c, RDMIG_RELAY_MSG_REPLY, reply, &err)) {
			json_decref(reply);
			log_warn("control session: %s", err.msg);
			break;
		}
		json_decref(reply);
	}
	rdmig_qmp_close(qmp);
	pthread_mutex_unlock(&d->qmp_lock);
	log_info("control session ended");
}

static void *dst_session(void *arg)
{
	struct session *s = arg;
	struct dst *d = s->d;
	struct rdmig_conn *c = s->c;
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *hello = NULL, *reply;
	const char *kind;
	char name[48];
	int fd;

	free(s);
	if (rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_HELLO, &hello, HELLO_TIMEOUT_MS, &err)) {
		log_warn("relay: dropping a connection: %s", err.msg);
		goto out_destroy;
	}
	kind = json_string_value(json_object_get(hello, "kind"));
	if (json_integer_value(json_object_get(hello, "version")) != RDMIG_RELAY_VERSION || !kind) {
		reply = reply_err("destination relay: unsupported relay protocol version");
		rdmig_relay_send_json(c, RDMIG_RELAY_MSG_REPLY, reply, NULL);
		json_decref(reply);
		goto out_destroy;
	}
	if (!strcmp(kind, "control")) {
		reply = reply_ok();
		if (!rdmig_relay_send_json(c, RDMIG_RELAY_MSG_REPLY, reply, &err))
			dst_control(d, c);
		json_decref(reply);
		atomic_store(&d->control_done, 1);
		goto out_destroy;
	}
	if (strcmp(kind, "stream")) {
		reply = reply_err("destination relay: unknown connection kind");
		rdmig_relay_send_json(c, RDMIG_RELAY_MSG_REPLY, reply, NULL);
		json_decref(reply);
		goto out_destroy;
	}
	snprintf(name, sizeof(name), "dst stream %d",
		 (int)json_integer_value(json_object_get(hello, "index")));
	fd = unix_connect(d->cfg->incoming_path, &err);
	if (fd < 0) {
		rdmig_err_prefix(&err, "destination relay: destination QEMU's incoming socket");
		log_warn("%s", err.msg);
		reply = reply_err(err.msg);
		rdmig_relay_send_json(c, RDMIG_RELAY_MSG_REPLY, reply, NULL);
		json_decref(reply);
		goto out_destroy;
	}
	reply = reply_ok();
	if (rdmig_relay_send_json(c, RDMIG_RELAY_MSG_REPLY, reply, &err)) {
		json_decref(reply);
		close(fd);
		goto out_destroy;
	}
	json_decref(reply);
	json_decref(hello);
	pipe_start(&d->owner, c, fd, name, &err);
	atomic_fetch_sub(&d->sessions, 1);
	return NULL;

out_destroy:
	json_decref(hello);
	rdmig_conn_destroy(c);
	atomic_fetch_sub(&d->sessions, 1);
	return NULL;
}

int rdmig_relay_dst_run(const struct rdmig_relay_dst_cfg *cfg, volatile sig_atomic_t *stop,
			void (*on_listening)(uint16_t port), struct rdmig_err *err)
{
	struct rdmig_listener *l = NULL;
	struct rdmig_xport_cfg xcfg = cfg->xport;
	struct dst d = {.cfg = cfg};
	int ret;

	xcfg.channels = 1;
	ret = rdmig_listen(&xcfg, &l, err);
	if (ret)
		return ret;
	owner_init(&d.owner);
	pthread_mutex_init(&d.qmp_lock, NULL);
	if (on_listening)
		on_listening(rdmig_listener_port(l));

	while (!*stop && !(cfg->once && atomic_load(&d.control_done))) {
		struct rdmig_err aerr = RDMIG_ERR_INIT;
		struct rdmig_conn *c = NULL;
		struct session *s;
		pthread_attr_t attr;
		pthread_t t;

		ret = rdmig_accept(l, 200, &c, &aerr);
		if (ret == -ETIMEDOUT || ret == -EINTR || ret == -EAGAIN) {
			ret = 0;
			continue;
		}
		if (ret) {
			/* A peer that failed its handshake must not stop the relay. */
			log_warn("relay: %s", aerr.msg);
			ret = 0;
			continue;
		}
		s = malloc(sizeof(*s));
		if (!s) {
			rdmig_conn_destroy(c);
			continue;
		}
		s->d = &d;
		s->c = c;
		atomic_fetch_add(&d.sessions, 1);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, dst_session, s)) {
			atomic_fetch_sub(&d.sessions, 1);
			rdmig_conn_destroy(c);
			free(s);
		}
		pthread_attr_destroy(&attr);
	}
	rdmig_listener_destroy(l);
	/* Sessions still reading a HELLO finish within HELLO_TIMEOUT_MS. */
	while (atomic_load(&d.sessions) > 0) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	if (cfg->once) {
		/* Let the streams finish on their own: QEMU closes them after the migration. */
		pthread_mutex_lock(&d.owner.lock);
		while (d.owner.live && !*stop) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&d.owner.cond, &d.owner.lock, &ts);
		}
		pthread_mutex_unlock(&d.owner.lock);
	}
	owner_stop(&d.owner);
	pthread_mutex_destroy(&d.qmp_lock);
	owner_fini(&d.owner);
	return ret;
}

/* ---- control client ---------------------------------------------------------- */

int rdmig_relay_ctrl_open(const struct rdmig_xport_cfg *xcfg, struct rdmig_conn **out,
			  struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = *xcfg;
	struct rdmig_conn *c = NULL;
	json_t *hello, *reply = NULL;
	int ret;

	*out = NULL;
	cfg.channels = 1;
	ret = rdmig_connect(&cfg, &c, err);
	if (ret)
		return ret;
	hello = json_pack("{s:s, s:i}", "kind", "control", "version", RDMIG_RELAY_VERSION);
	ret = rdmig_relay_send_json(c, RDMIG_RELAY_MSG_HELLO, hello, err);
	json_decref(hello);
	if (!ret)
		ret =
		    rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_REPLY, &reply, HELLO_TIMEOUT_MS, err);
	if (!ret)
		ret = check_reply(reply, err);
	json_decref(reply);
	if (ret) {
		rdmig_conn_destroy(c);
		return ret;
	}
	*out = c;
	return 0;
}

int rdmig_relay_ctrl_call(struct rdmig_conn *c, json_t *req, json_t **reply, int timeout_ms,
			  struct rdmig_err *err)
{
	json_t *r = NULL;
	int ret;

	if (reply)
		*reply = NULL;
	if (!req)
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	ret = rdmig_relay_send_json(c, RDMIG_RELAY_MSG_REQ, req, err);
	json_decref(req);
	if (ret)
		return ret;
	ret = rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_REPLY, &r, timeout_ms, err);
	if (ret)
		return ret;
	ret = check_reply(r, err);
	if (ret || !reply)
		json_decref(r);
	else
		*reply = r;
	return ret;
}
