/* SPDX-License-Identifier: MIT */
/*
 * Destination relay: an rdmig listener. On a stream set, each stream the
 * source announces is joined to a fresh connection to the destination
 * QEMU's incoming socket; a control session is served by the QMP proxy
 * below, a fixed list of operations on the destination QEMU (never raw QMP
 * from the network).
 *
 * Every connection here has passed the listener's authentication (the
 * transport hands out no other), so the incoming socket is opened, and a
 * control operation run, only for a peer that proved the key.
 *
 * QEMU serves one client per QMP socket, so control sessions take turns on
 * it: the one in d->holder has it. A session waits for its turn before its
 * HELLO is answered (relay_int.h has the bounds), has a deadline for each
 * operation and is dropped when idle, so a forgotten or stuck client never
 * keeps the real orchestrator out.
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

/* A control session. Fields below `lock` are under dst->slot_lock. */
struct ctl {
	struct rdmig_conn *c;
	unsigned id;
	int64_t last_ms; /* when its last operation ended (or it got the QMP socket) */
	bool busy;	 /* running an operation */
	bool dropped;	 /* stale: a newcomer took its turn */
};

struct dst {
	const struct rdmig_relay_dst_cfg *cfg;
	volatile sig_atomic_t *stop;
	struct relay_owner owner;
	pthread_mutex_t slot_lock;
	pthread_cond_t slot_cond; /* CLOCK_MONOTONIC; signalled when the holder leaves */
	struct ctl *holder;	  /* the session holding the QMP socket, under slot_lock */
	atomic_int sessions;	  /* control, set and hello threads still running */
	atomic_int control_done;  /* a control session has ended (cfg->once) */
	atomic_uint next_id;
};

struct session {
	struct dst *d;
	struct rdmig_conn *c;
};

/* ---- the QMP proxy ---------------------------------------------------------- */

/* Capabilities and parameters a control session may set (a whitelist, not QMP). */
static const char *const settable_caps[] = {
    "multifd", "auto-converge", "postcopy-ram", "postcopy-preempt",
    "xbzrle",  "zero-blocks",	"events",	"pause-before-switchover"};
static const char *const settable_params[] = {"multifd-channels", "downtime-limit",
					      "max-bandwidth"};

/* One operation under way: its QMP connection (NULL: none) and deadline. */
struct op {
	struct dst *d;
	struct rdmig_qmp *qmp;
	const char *qmp_why; /* why qmp is NULL */
	int64_t deadline;
};

/*
 * One operation of the proxy: the reply to `req`, or NULL with `err` set
 * when a QMP command failed (the caller names the QMP socket). A refusal
 * that is not QMP's is a reply with "ok": false.
 */
typedef json_t *(*proxy_op_fn)(struct op *o, json_t *req, struct rdmig_err *err);

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

/* A QMP command within the operation's deadline (args stolen). */
static int op_qmp(struct op *o, const char *cmd, json_t *args, json_t **ret, struct rdmig_err *err)
{
	int left = rdmig_ms_left(o->deadline);

	if (ret)
		*ret = NULL;
	if (!o->qmp) {
		json_decref(args);
		return rdmig_seterr(err, -ENOTCONN, "%s", o->qmp_why);
	}
	if (left == 0) {
		json_decref(args);
		return rdmig_seterr(err, -ETIMEDOUT,
				    "the operation did not end within %d ms (QEMU is slow to "
				    "answer %s)",
				    RELAY_OP_MS, cmd);
	}
	return rdmig_qmp_cmd(o->qmp, cmd, args, ret, left, err);
}

/* Run status into buf, within the operation's deadline. */
static int op_run_status(struct op *o, char *buf, size_t len, struct rdmig_err *err)
{
	json_t *r = NULL;
	const char *st;
	int ret = op_qmp(o, "query-status", NULL, &r, err);

	if (ret)
		return ret;
	st = json_string_value(json_object_get(r, "status"));
	if (!st || strlen(st) >= len)
		ret = rdmig_seterr(err, -EPROTO, "malformed reply to query-status");
	else
		snprintf(buf, len, "%s", st);
	json_decref(r);
	return ret;
}

static json_t *op_query(struct op *o, json_t *req, struct rdmig_err *err)
{
	json_t *caps = NULL, *params = NULL, *capmap = json_object();
	int maj, min, mic;
	char ver[32], status[64];
	size_t i;
	json_t *v;

	(void)req;
	if (op_run_status(o, status, sizeof(status), err) ||
	    op_qmp(o, "query-migrate-capabilities", NULL, &caps, err) ||
	    op_qmp(o, "query-migrate-parameters", NULL, &params, err)) {
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
	rdmig_qmp_version(o->qmp, &maj, &min, &mic);
	snprintf(ver, sizeof(ver), "%d.%d.%d", maj, min, mic);
	return json_pack("{s:b, s:s, s:s, s:o, s:o, s:s, s:b}", "ok", 1, "version", ver, "status",
			 status, "capabilities", capmap, "parameters", params, "incoming",
			 o->d->cfg->incoming_path, "incoming_ready",
			 socket_exists(o->d->cfg->incoming_path));
}

/* A refusal of a name the whitelist does not hold. */
static json_t *not_settable(const char *what, const char *name)
{
	char msg[160];

	snprintf(msg, sizeof(msg),
		 "destination relay: %s \"%.64s\" cannot be set through the relay", what, name);
	return relay_reply_err(msg);
}

static json_t *op_set_capabilities(struct op *o, json_t *req, struct rdmig_err *err)
{
	json_t *caps = json_object_get(req, "capabilities"), *list = json_array(), *v;
	const char *name;

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
	if (op_qmp(o, "migrate-set-capabilities", json_pack("{s:o}", "capabilities", list), NULL,
		   err))
		return NULL;
	return relay_reply_ok();
}

static json_t *op_set_parameters(struct op *o, json_t *req, struct rdmig_err *err)
{
	json_t *params = json_object_get(req, "parameters"), *v;
	const char *name;

	json_object_foreach(params, name, v)
	{
		if (!in_list(name, settable_params,
			     sizeof(settable_params) / sizeof(settable_params[0])) ||
		    !json_is_number(v))
			return not_settable("parameter", name);
	}
	if (op_qmp(o, "migrate-set-parameters", json_deep_copy(params), NULL, err))
		return NULL;
	return relay_reply_ok();
}

static json_t *op_start_incoming(struct op *o, json_t *req, struct rdmig_err *err)
{
	const char *path = o->d->cfg->incoming_path;
	char status[64], uri[sizeof(((struct sockaddr_un *)0)->sun_path) + 8], msg[128];

	(void)req;
	/* -incoming unix:PATH listens already; -incoming defer needs migrate-incoming. */
	if (socket_exists(path))
		return json_pack("{s:b, s:b}", "ok", 1, "deferred", 0);
	if (op_run_status(o, status, sizeof(status), err))
		return NULL;
	if (strcmp(status, "inmigrate")) {
		snprintf(msg, sizeof(msg),
			 "destination QEMU is \"%s\", not waiting for a migration", status);
		return relay_reply_err(msg);
	}
	snprintf(uri, sizeof(uri), "unix:%s", path);
	if (op_qmp(o, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL, err))
		return NULL;
	if (!socket_exists(path))
		return relay_reply_err("destination QEMU accepted migrate-incoming but its "
				       "incoming socket did not appear");
	return json_pack("{s:b, s:b}", "ok", 1, "deferred", 1);
}

static json_t *op_status(struct op *o, json_t *req, struct rdmig_err *err)
{
	json_t *mig = NULL, *reply;
	const char *ms, *desc;
	char status[64];

	(void)req;
	if (op_run_status(o, status, sizeof(status), err) ||
	    op_qmp(o, "query-migrate", NULL, &mig, err))
		return NULL;
	ms = json_string_value(json_object_get(mig, "status"));
	desc = json_string_value(json_object_get(mig, "error-desc"));
	reply = json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "status", status, "migration",
			  ms ? ms : "none", "error", desc ? desc : "");
	json_decref(mig);
	return reply;
}

static json_t *op_cont(struct op *o, json_t *req, struct rdmig_err *err)
{
	(void)req;
	if (op_qmp(o, "cont", NULL, NULL, err))
		return NULL;
	return relay_reply_ok();
}

/*
 * True when no QEMU serves the QMP socket any more: nothing listens on it
 * (refused) or it is gone. A live QEMU accepts the connection even while
 * another client holds its monitor, so this cannot mistake a busy QEMU for
 * an exited one.
 */
static bool qemu_gone(const char *qmp_path, char *why, size_t len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ret = 0;

	if (strlen(qmp_path) >= sizeof(sa.sun_path))
		return false;
	strcpy(sa.sun_path, qmp_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		ret = errno;
	close(fd);
	if (ret != ECONNREFUSED && ret != ENOENT)
		return false;
	snprintf(why, len, "no QEMU behind its QMP socket %s (%s)", qmp_path, strerror(ret));
	return true;
}

/*
 * The orchestrator's last word when it did not see the guest start here:
 * make sure it never starts here on its own, and say whether it runs.
 * "running": false is a promise the orchestrator resumes the source on, so
 * it is given only when this QEMU has exited or is stopped with autostart
 * off (`stop` while the migration still loads clears QEMU's autostart, so a
 * load that ends later leaves it paused). Anything less certain is an error
 * reply: the orchestrator then reports the outcome as unknown.
 */
static json_t *op_fence(struct op *o, json_t *req, struct rdmig_err *err)
{
	struct rdmig_err qerr = RDMIG_ERR_INIT;
	const char *desc;
	char st[64], why[RDMIG_ERR_MSG_MAX];
	json_t *mig = NULL, *reply;

	int ret;

	(void)req;
	ret = op_run_status(o, st, sizeof(st), &qerr);
	if (!ret && strcmp(st, "running")) {
		ret = op_qmp(o, "stop", NULL, NULL, &qerr);
		if (!ret) /* stopped now, or still loading with autostart off */
			ret = op_run_status(o, st, sizeof(st), &qerr);
	}
	if (ret) {
		if (o->d->cfg->qmp_path && qemu_gone(o->d->cfg->qmp_path, why, sizeof(why))) {
			log_warn("control: the destination QEMU has exited: %s", why);
			return json_pack("{s:b, s:b, s:s, s:s}", "ok", 1, "running", 0, "status",
					 "exited", "detail", why);
		}
		*err = qerr;
		return NULL;
	}
	if (!strcmp(st, "running"))
		return json_pack("{s:b, s:b, s:s}", "ok", 1, "running", 1, "status", st);
	/* Stopped for good from here on; QEMU's own words on why, if it has any. */
	op_qmp(o, "query-migrate", NULL, &mig, &qerr);
	desc = json_string_value(json_object_get(mig, "error-desc"));
	log_warn("control: fenced: the destination QEMU is \"%s\" and will not start the guest "
		 "on its own",
		 st);
	reply = json_pack("{s:b, s:b, s:s, s:s}", "ok", 1, "running", 0, "status", st, "detail",
			  desc ? desc : "");
	json_decref(mig);
	return reply;
}

/*
 * Post-copy recovery, the destination's half: once its QEMU has paused
 * post-copy (a stream broke), listen again on the same incoming socket path
 * (QEMU replaces the stale socket file), so that the streams of the resumed
 * source land where this relay connects them. The reply says the migration
 * state either way; the orchestrator waits while QEMU has not yet noticed
 * the break ("postcopy-active") and gives up on anything else.
 */
static json_t *op_recover(struct op *o, json_t *req, struct rdmig_err *err)
{
	const char *path = o->d->cfg->incoming_path;
	char uri[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	struct rdmig_err qerr = RDMIG_ERR_INIT;
	json_t *mig = NULL, *reply;
	char ms[48], msg[RDMIG_ERR_MSG_MAX];
	bool listening = false;
	int ret;

	(void)req;
	/* A QEMU that died in post-copy took the guest with it: say so, do not retry. */
	if (op_qmp(o, "query-migrate", NULL, &mig, err)) {
		if (o->d->cfg->qmp_path && qemu_gone(o->d->cfg->qmp_path, msg, sizeof(msg)))
			return json_pack("{s:b, s:s, s:b, s:s}", "ok", 1, "migration", "exited",
					 "listening", 0, "detail", msg);
		return NULL;
	}
	snprintf(ms, sizeof(ms), "%s", json_string_value(json_object_get(mig, "status")) ?: "none");
	json_decref(mig);
	if (!strcmp(ms, "postcopy-paused")) {
		snprintf(uri, sizeof(uri), "unix:%s", path);
		ret = op_qmp(o, "migrate-recover", json_pack("{s:s}", "uri", uri), NULL, &qerr);
		/* A second request (its first reply lost) finds QEMU listening already. */
		if (ret && !strstr(qerr.msg, "already")) {
			*err = qerr;
			return NULL;
		}
		listening = socket_exists(path);
		if (!listening)
			return relay_reply_err("destination QEMU accepted migrate-recover but its "
					       "incoming socket did not appear");
		log_info("control: post-copy recovery: the destination QEMU listens on %s again",
			 path);
	}
	reply = json_pack("{s:b, s:s, s:b}", "ok", 1, "migration", ms, "listening", listening);
	return reply;
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
    {"fence", op_fence},
    {"recover", op_recover},
};

/* Run one request; returns the reply (never NULL unless out of memory). */
static json_t *dst_request(struct op *o, json_t *req)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *op = json_string_value(json_object_get(req, "op"));
	json_t *reply;

	if (!op)
		return relay_reply_err("destination relay: request without \"op\"");
	for (size_t i = 0; i < sizeof(proxy_ops) / sizeof(proxy_ops[0]); i++) {
		if (strcmp(op, proxy_ops[i].name))
			continue;
		o->deadline = rdmig_deadline_ms(RELAY_OP_MS);
		reply = proxy_ops[i].fn(o, req, &err);
		if (reply || !err.code)
			return reply;
		if (o->qmp)
			rdmig_err_prefix(&err, "destination QEMU (QMP %s)", o->d->cfg->qmp_path);
		return relay_reply_err(err.msg);
	}
	snprintf(err.msg, sizeof(err.msg), "destination relay: unknown request \"%.64s\"", op);
	return relay_reply_err(err.msg);
}

/* ---- control sessions: one at a time on the QMP socket ----------------------- */

/*
 * Wait for the QMP socket, dropping a holder that has gone stale. Holding
 * the slot lock makes "not busy" and the drop one step: a holder that has
 * just read a request checks `dropped` under the same lock before it runs it.
 */
static int slot_take(struct dst *d, struct ctl *s, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(RELAY_LOCK_WAIT_MS);
	int ret = 0;

	pthread_mutex_lock(&d->slot_lock);
	while (d->holder) {
		struct ctl *h = d->holder;
		int64_t idle = rdmig_now_ms() - h->last_ms;
		int left = rdmig_ms_left(deadline);

		if (!h->busy && !h->dropped && idle >= RELAY_CTRL_STALE_MS) {
			h->dropped = true;
			log_warn("control session %u: silent for %.1f s while session %u waits: "
				 "dropped",
				 h->id, idle / 1000.0, s->id);
			rdmig_conn_abort(h->c, -ECANCELED,
					 "control session dropped: silent while another waited");
		}
		if (left == 0) {
			ret = rdmig_seterr(err, -EBUSY,
					   "destination relay: busy: control session %u is driving "
					   "the destination QEMU (another `rdmig qemu migrate`?); "
					   "try again when it has finished",
					   h->id);
			break;
		}
		relay_cond_wait_ms(&d->slot_cond, &d->slot_lock, left < 200 ? left : 200);
	}
	if (!ret) {
		d->holder = s;
		s->last_ms = rdmig_now_ms();
	}
	pthread_mutex_unlock(&d->slot_lock);
	return ret;
}

static void slot_give(struct dst *d, struct ctl *s)
{
	pthread_mutex_lock(&d->slot_lock);
	if (d->holder == s)
		d->holder = NULL;
	pthread_cond_broadcast(&d->slot_cond);
	pthread_mutex_unlock(&d->slot_lock);
}

/* Mark `s` busy for one operation; false if it was dropped meanwhile. */
static bool slot_begin(struct dst *d, struct ctl *s)
{
	bool ok;

	pthread_mutex_lock(&d->slot_lock);
	ok = !s->dropped;
	s->busy = ok;
	pthread_mutex_unlock(&d->slot_lock);
	return ok;
}

static bool slot_dropped(struct dst *d, struct ctl *s)
{
	bool dropped;

	pthread_mutex_lock(&d->slot_lock);
	dropped = s->dropped;
	pthread_mutex_unlock(&d->slot_lock);
	return dropped;
}

static void slot_end(struct dst *d, struct ctl *s)
{
	pthread_mutex_lock(&d->slot_lock);
	s->busy = false;
	s->last_ms = rdmig_now_ms();
	pthread_mutex_unlock(&d->slot_lock);
}

/*
 * Serve requests until the peer closes, goes idle, or the session is
 * dropped. Returns true when the peer ended it (cfg->once counts those).
 */
static bool dst_control(struct dst *d, struct ctl *s)
{
	int idle_ms = d->cfg->ctrl_idle_ms > 0 ? d->cfg->ctrl_idle_ms : RDMIG_RELAY_CTRL_IDLE_MS;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct op o = {.d = d};
	char why[RDMIG_ERR_MSG_MAX + 32] = "";
	bool peer_ended = false;

	if (!d->cfg->qmp_path)
		snprintf(why, sizeof(why),
			 "destination relay was started without --qmp: it cannot drive the "
			 "destination QEMU");
	else if (rdmig_qmp_open(d->cfg->qmp_path, RELAY_OP_MS, &o.qmp, &err))
		snprintf(why, sizeof(why), "destination relay: %s", err.msg);
	o.qmp_why = why;
	log_info("control session %u: %s", s->id, why[0] ? why : "QMP open");
	for (;;) {
		json_t *req = NULL, *reply;

		rdmig_err_clear(&err);
		if (rdmig_relay_recv_json(s->c, RDMIG_RELAY_MSG_REQ, &req, idle_ms, &err)) {
			if (err.code == -ETIMEDOUT)
				log_warn("control session %u: no request for %d s: dropped", s->id,
					 idle_ms / 1000);
			else if (err.code == -ECONNRESET)
				peer_ended = true;
			else if (!slot_dropped(d, s))
				log_warn("control session %u: %s", s->id, err.msg);
			break;
		}
		if (!slot_begin(d, s)) {
			json_decref(req);
			break;
		}
		/* Without QMP only fence and recover can still tell something (has QEMU gone?). */
		if (why[0] &&
		    strcmp(json_string_value(json_object_get(req, "op")) ?: "", "fence") &&
		    strcmp(json_string_value(json_object_get(req, "op")) ?: "", "recover"))
			reply = relay_reply_err(why);
		else
			reply = dst_request(&o, req);
		slot_end(d, s);
		json_decref(req);
		if (relay_send_reply(s->c, reply, &err)) {
			log_warn("control session %u: %s", s->id, err.msg);
			break;
		}
	}
	rdmig_qmp_close(o.qmp);
	log_info("control session %u ended", s->id);
	return peer_ended;
}

/* A control session: its turn on the QMP socket, then its requests. */
static void dst_control_session(struct dst *d, struct rdmig_conn *c)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct ctl s = {.c = c, .id = atomic_fetch_add(&d->next_id, 1) + 1};

	if (slot_take(d, &s, &err)) {
		log_warn("control session %u: %s", s.id, err.msg);
		relay_send_reply(c, relay_reply_err(err.msg), NULL);
		return;
	}
	if (!relay_send_reply(c, relay_reply_ok(), &err) && dst_control(d, &s))
		atomic_store(&d->control_done, 1);
	/* Give the turn up before the caller destroys c: a newcomer may abort it until then. */
	slot_give(d, &s);
}

/* ---- streams ------------------------------------------------------------------ */

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

_Static_assert(RDMIG_MAX_CHANNELS <= 64, "dst_set() keeps a set's channels in 64 bits");

/* How often a set session waiting for its next stream looks at the stop flag. */
#define SET_POLL_MS 1000

/* A stream: open the destination QEMU's incoming socket, say so, and pump. */
static void dst_stream(struct dst *d, struct relay_set *s, unsigned chan, unsigned index)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char name[RELAY_NAME_MAX];
	int fd;

	snprintf(name, sizeof(name), "dst stream %u (set %u, channel %u)", index, s->id, chan);
	fd = unix_connect(d->cfg->incoming_path, &err);
	if (fd < 0) {
		rdmig_err_prefix(&err, "destination relay: destination QEMU's incoming socket");
		log_warn("%s", err.msg);
		relay_send_reply(s->conn, relay_reply_err(err.msg), NULL);
		return;
	}
	if (relay_send_reply(s->conn, relay_reply_ok(), &err)) {
		close(fd);
		relay_set_fail(s, &err);
		return;
	}
	relay_pipe_start(s, chan, fd, name, &err);
}

/*
 * A stream set: bind each stream the source announces to its channel, until
 * the source closes the set (its streams go on until they end), breaks the
 * protocol (the set fails), or the relay stops. Takes `c`.
 */
static void dst_set(struct dst *d, struct rdmig_conn *c)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint64_t taken = 0; /* channels bound, RDMIG_MAX_CHANNELS bits */
	struct relay_set *s;

	if (relay_set_new(&d->owner, c, &s, &err)) {
		log_warn("%s", err.msg);
		return;
	}
	if (relay_send_reply(s->conn, relay_reply_ok(), &err)) {
		log_warn("stream set %u: %s", s->id, err.msg);
		relay_set_put(s);
		return;
	}
	log_info("stream set %u open: %u channels", s->id, s->nchan);
	while (!*d->stop) {
		unsigned chan, index;
		int ret = relay_stream_recv(s->conn, &chan, &index, SET_POLL_MS, &err);

		if (ret == -ETIMEDOUT) {
			rdmig_err_clear(&err);
			continue;
		}
		if (!ret && (taken >> chan) & 1)
			ret = rdmig_seterr(&err, -EPROTO,
					   "destination relay: stream %u announced on channel %u, "
					   "which another stream of the set has",
					   index, chan);
		if (ret == -EPROTO) {
			rdmig_err_prefix(&err, "stream set %u", s->id);
			relay_set_fail(s, &err);
		}
		if (ret)
			break;
		taken |= 1ull << chan;
		dst_stream(d, s, chan, index);
	}
	log_info("stream set %u: no more streams (%u open)", s->id, atomic_load(&s->live));
	relay_set_put(s);
}

static void *dst_session(void *arg)
{
	struct session *s = arg;
	struct dst *d = s->d;
	struct rdmig_conn *c = s->c;
	struct rdmig_err err = RDMIG_ERR_INIT;
	enum relay_kind kind;
	bool refused;
	int ret;

	free(s);
	ret = relay_hello_recv(c, &kind, &refused, &err);
	if (ret && refused) {
		/* Tell a peer of another version or kind why before hanging up. */
		log_warn("relay: refusing a connection: %s", err.msg);
		relay_send_reply(c, relay_reply_err(err.msg), NULL);
	} else if (ret) {
		log_warn("relay: dropping a connection: %s", err.msg);
	} else if (kind == RELAY_CONTROL) {
		dst_control_session(d, c);
	} else {
		dst_set(d, c);
		c = NULL; /* the set's pipes own it now, or it is gone */
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
	struct dst d = {.cfg = cfg, .stop = stop};
	pthread_condattr_t ca;
	int ret;

	/* A stream set has as many channels as its source relay was told QEMU opens. */
	xcfg.channels = RDMIG_MAX_CHANNELS;
	ret = rdmig_listen(&xcfg, &l, err);
	if (ret)
		return ret;
	relay_owner_init(&d.owner);
	pthread_mutex_init(&d.slot_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d.slot_cond, &ca);
	pthread_condattr_destroy(&ca);
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
			/*
			 * A peer that fails its handshake (a wrong or missing key, another
			 * protocol) never gets here: the transport drops it and logs it
			 * with its address. What is left is the listener itself failing,
			 * which no retry mends.
			 */
			rdmig_seterr(err, ret, "relay: the listener failed: %s", aerr.msg);
			break;
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
	/*
	 * Sessions end on their own within their bounds (HELLO, the wait for the
	 * QMP socket, idle); on a stop, hurry the control session along.
	 */
	while (atomic_load(&d.sessions) > 0) {
		if (*stop) {
			pthread_mutex_lock(&d.slot_lock);
			if (d.holder && !d.holder->dropped) {
				d.holder->dropped = true;
				rdmig_conn_abort(d.holder->c, -ECANCELED,
						 "destination relay stopped");
			}
			pthread_mutex_unlock(&d.slot_lock);
		}
		rdmig_sleep_ms(20);
	}
	/* With --once, let the streams finish on their own: QEMU closes them after the migration.
	 */
	if (cfg->once)
		relay_owner_drain(&d.owner, -1, stop);
	relay_owner_stop(&d.owner);
	pthread_cond_destroy(&d.slot_cond);
	pthread_mutex_destroy(&d.slot_lock);
	relay_owner_fini(&d.owner);
	return ret;
}
