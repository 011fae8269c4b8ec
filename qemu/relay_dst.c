/* SPDX-License-Identifier: MIT */
/*
 * Destination relay: an rdmig listener. A stream connection is joined to a
 * fresh connection to the destination QEMU's incoming socket; a control
 * session is served by the QMP proxy below, a fixed list of operations on
 * the destination QEMU (never raw QMP from the network).
 *
 * QEMU serves one client per QMP socket, so control sessions take turns on
 * it under dst->qmp_lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "qmp.h"
#include "relay_int.h"

#define QMP_TIMEOUT_MS 10000

struct dst {
	const struct rdmig_relay_dst_cfg *cfg;
	struct relay_owner owner;
	pthread_mutex_t qmp_lock; /* one control session drives QEMU at a time */
	atomic_int sessions;	  /* control + hello threads still running */
	atomic_int control_done;  /* a control session has ended (cfg->once) */
};

struct session {
	struct dst *d;
	struct rdmig_conn *c;
};

/* ---- the QMP proxy ---------------------------------------------------------- */

/* Capabilities and parameters a control session may set (a whitelist, not QMP). */
static const char *const settable_caps[] = {
    "multifd",	   "auto-converge", "postcopy-ram",	      "xbzrle",
    "zero-blocks", "events",	    "pause-before-switchover"};
static const char *const settable_params[] = {"multifd-channels", "downtime-limit",
					      "max-bandwidth"};

/*
 * One operation of the proxy: the reply to `req`, or NULL with `err` set
 * when a QMP command failed (the caller names the QMP socket). A refusal
 * that is not QMP's is a reply with "ok": false.
 */
typedef json_t *(*proxy_op_fn)(struct dst *d, struct rdmig_qmp *qmp, json_t *req,
			       struct rdmig_err *err);

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

static json_t *op_query(struct dst *d, struct rdmig_qmp *qmp, json_t *req, struct rdmig_err *err)
{
	json_t *caps = NULL, *params = NULL, *capmap = json_object();
	int maj, min, mic;
	char ver[32], status[64];
	size_t i;
	json_t *v;

	(void)req;
	if (rdmig_qmp_status(qmp, status, sizeof(status), err) ||
	    rdmig_qmp_cmd(qmp, "query-migrate-capabilities", NULL, &caps, QMP_TIMEOUT_MS, err) ||
	    rdmig_qmp_cmd(qmp, "query-migrate-parameters", NULL, &params, QMP_TIMEOUT_MS, err)) {
		json_decref(caps);
		json_decref(capmap);
		return NULL;
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
	return json_pack("{s:b, s:s, s:s, s:o, s:o, s:s, s:b}", "ok", 1, "version", ver, "status",
			 status, "capabilities", capmap, "parameters", params, "incoming",
			 d->cfg->incoming_path, "incoming_ready",
			 socket_exists(d->cfg->incoming_path));
}

/* A refusal of a name the whitelist does not hold. */
static json_t *not_settable(const char *what, const char *name)
{
	char msg[160];

	snprintf(msg, sizeof(msg),
		 "destination relay: %s \"%.64s\" cannot be set through the relay", what, name);
	return relay_reply_err(msg);
}

static json_t *op_set_capabilities(struct dst *d, struct rdmig_qmp *qmp, json_t *req,
				   struct rdmig_err *err)
{
	json_t *caps = json_object_get(req, "capabilities"), *list = json_array(), *v;
	const char *name;

	(void)d;
	json_object_foreach(caps, name, v)
	{
		if (!in_list(name, settable_caps,
			     sizeof(settable_caps) / sizeof(settable_caps[0])) ||
		    !json_is_boolean(v)) {
			json_decref(list);
			return not_settable("capability", name);
		}
		json_array_append_new(list,
				      json_pack("{s:s, s:O}", "capability", name, "state", v));
	}
	if (rdmig_qmp_cmd(qmp, "migrate-set-capabilities", json_pack("{s:o}", "capabilities", list),
			  NULL, QMP_TIMEOUT_MS, err))
		return NULL;
	return relay_reply_ok();
}

static json_t *op_set_parameters(struct dst *d, struct rdmig_qmp *qmp, json_t *req,
				 struct rdmig_err *err)
{
	json_t *params = json_object_get(req, "parameters"), *v;
	const char *name;

	(void)d;
	json_object_foreach(params, name, v)
	{
		if (!in_list(name, settable_params,
			     sizeof(settable_params) / sizeof(settable_params[0])) ||
		    !json_is_number(v))
			return not_settable("parameter", name);
	}
	if (rdmig_qmp_cmd(qmp, "migrate-set-parameters", json_deep_copy(params), NULL,
			  QMP_TIMEOUT_MS, err))
		return NULL;
	return relay_reply_ok();
}

static json_t *op_start_incoming(struct dst *d, struct rdmig_qmp *qmp, json_t *req,
				 struct rdmig_err *err)
{
	char status[64], uri[sizeof(((struct sockaddr_un *)0)->sun_path) + 8], msg[128];

	(void)req;
	/* -incoming unix:PATH listens already; -incoming defer needs migrate-incoming. */
	if (socket_exists(d->cfg->incoming_path))
		return json_pack("{s:b, s:b}", "ok", 1, "deferred", 0);
	if (rdmig_qmp_status(qmp, status, sizeof(status), err))
		return NULL;
	if (strcmp(status, "inmigrate")) {
		snprintf(msg, sizeof(msg),
			 "destination QEMU is \"%s\", not waiting for a migration", status);
		return relay_reply_err(msg);
	}
	snprintf(uri, sizeof(uri), "unix:%s", d->cfg->incoming_path);
	if (rdmig_qmp_cmd(qmp, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL,
			  QMP_TIMEOUT_MS, err))
		return NULL;
	if (!socket_exists(d->cfg->incoming_path))
		return relay_reply_err("destination QEMU accepted migrate-incoming but its "
				       "incoming socket did not appear");
	return json_pack("{s:b, s:b}", "ok", 1, "deferred", 1);
}

static json_t *op_status(struct dst *d, struct rdmig_qmp *qmp, json_t *req, struct rdmig_err *err)
{
	json_t *mig = NULL, *reply;
	const char *ms, *desc;
	char status[64];

	(void)d, (void)req;
	if (rdmig_qmp_status(qmp, status, sizeof(status), err) ||
	    rdmig_qmp_cmd(qmp, "query-migrate", NULL, &mig, QMP_TIMEOUT_MS, err))
		return NULL;
	ms = json_string_value(json_object_get(mig, "status"));
	desc = json_string_value(json_object_get(mig, "error-desc"));
	reply = json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "status", status, "migration",
			  ms ? ms : "none", "error", desc ? desc : "");
	json_decref(mig);
	return reply;
}

static json_t *op_cont(struct dst *d, struct rdmig_qmp *qmp, json_t *req, struct rdmig_err *err)
{
	(void)d, (void)req;
	if (rdmig_qmp_cmd(qmp, "cont", NULL, NULL, QMP_TIMEOUT_MS, err))
		return NULL;
	return relay_reply_ok();
}

static const struct {
	const char *name;
	proxy_op_fn fn;
} proxy_ops[] = {
    {"query", op_query},
    {"set-capabilities", op_set_capabilities},
    {"set-parameters", op_set_parameters},
    {"start-incoming", op_start_incoming},
    {"status", op_status},
    {"cont", op_cont},
};

/* Run one request; returns the reply (never NULL unless out of memory). */
static json_t *dst_request(struct dst *d, struct rdmig_qmp *qmp, json_t *req)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *op = json_string_value(json_object_get(req, "op"));
	json_t *reply;

	if (!op)
		return relay_reply_err("destination relay: request without \"op\"");
	for (size_t i = 0; i < sizeof(proxy_ops) / sizeof(proxy_ops[0]); i++) {
		if (strcmp(op, proxy_ops[i].name))
			continue;
		reply = proxy_ops[i].fn(d, qmp, req, &err);
		if (reply || !err.code)
			return reply;
		rdmig_err_prefix(&err, "destination QEMU (QMP %s)", d->cfg->qmp_path);
		return relay_reply_err(err.msg);
	}
	snprintf(err.msg, sizeof(err.msg), "destination relay: unknown request \"%.64s\"", op);
	return relay_reply_err(err.msg);
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
		reply = why[0] ? relay_reply_err(why) : dst_request(d, qmp, req);
		json_decref(req);
		if (relay_send_reply(c, reply, &err)) {
			log_warn("control session: %s", err.msg);
			break;
		}
	}
	rdmig_qmp_close(qmp);
	pthread_mutex_unlock(&d->qmp_lock);
	log_info("control session ended");
}

/* ---- sessions ---------------------------------------------------------------- */

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

/* A stream: open the destination QEMU's incoming socket, say so, and pump. */
static void dst_stream(struct dst *d, struct rdmig_conn *c, unsigned index)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char name[48];
	int fd;

	snprintf(name, sizeof(name), "dst stream %u", index);
	fd = unix_connect(d->cfg->incoming_path, &err);
	if (fd < 0) {
		rdmig_err_prefix(&err, "destination relay: destination QEMU's incoming socket");
		log_warn("%s", err.msg);
		relay_send_reply(c, relay_reply_err(err.msg), NULL);
		rdmig_conn_destroy(c);
		return;
	}
	if (relay_send_reply(c, relay_reply_ok(), &err)) {
		close(fd);
		rdmig_conn_destroy(c);
		return;
	}
	relay_pipe_start(&d->owner, c, fd, name, &err);
}

static void *dst_session(void *arg)
{
	struct session *s = arg;
	struct dst *d = s->d;
	struct rdmig_conn *c = s->c;
	struct rdmig_err err = RDMIG_ERR_INIT;
	enum relay_kind kind;
	unsigned index;
	bool refused;
	int ret;

	free(s);
	ret = relay_hello_recv(c, &kind, &index, &refused, &err);
	if (ret && refused) {
		/* Tell a peer of another version or kind why before hanging up. */
		relay_send_reply(c, relay_reply_err(err.msg), NULL);
	} else if (ret) {
		log_warn("relay: dropping a connection: %s", err.msg);
	} else if (kind == RELAY_CONTROL) {
		if (!relay_send_reply(c, relay_reply_ok(), &err))
			dst_control(d, c);
		atomic_store(&d->control_done, 1);
	} else {
		dst_stream(d, c, index);
		c = NULL; /* the pipe owns it now, or it is gone */
	}
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
	relay_owner_init(&d.owner);
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
	/* Sessions still reading a HELLO finish within RELAY_HELLO_TIMEOUT_MS. */
	while (atomic_load(&d.sessions) > 0)
		rdmig_sleep_ms(20);
	/* With --once, let the streams finish on their own: QEMU closes them after the migration.
	 */
	if (cfg->once)
		relay_owner_drain(&d.owner, -1, stop);
	relay_owner_stop(&d.owner);
	pthread_mutex_destroy(&d.qmp_lock);
	relay_owner_fini(&d.owner);
	return ret;
}
