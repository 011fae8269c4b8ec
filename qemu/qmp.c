/* SPDX-License-Identifier: MIT */
/*
 * QMP client. The wire format is one JSON object per line ("\r\n"
 * terminated when sent by QEMU, "\n" accepted); jansson parses each line,
 * this file only frames lines and matches replies to commands by "id".
 */
#include "clock.h"
#include "qmp.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define QMP_READ_CHUNK (64u << 10)
/* A line may carry "\r\n" on top of RDMIG_QMP_MAX_LINE bytes of JSON. */
#define QMP_BUF_LIMIT	((size_t)RDMIG_QMP_MAX_LINE + 2)
#define QMP_EXCERPT_MAX 120

struct qmp_event {
	struct qmp_event *next;
	json_t *ev;
};

struct rdmig_qmp {
	int fd;
	int broken;  /* negative errno that made the stream unusable, 0 if fine */
	int greeted; /* a valid greeting was seen: errors no longer say "not QMP" */
	char *path;

	/* Received bytes; [start, len) are not consumed yet, and [start, scanned)
	 * is known to hold no '\n', so long lines are searched only once. */
	char *buf;
	size_t cap, start, len, scanned;

	uint64_t last_id;

	struct qmp_event *ev_head, *ev_tail;
	unsigned int n_ev;
	unsigned long ev_dropped;

	int major, minor, micro;
	char package[128];
};

/* A printable excerpt of untrusted bytes for error messages. */
static const char *excerpt(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 4 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (i < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static const char *json_excerpt(const json_t *j, char *out, size_t outlen)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	if (!s) {
		snprintf(out, outlen, "(unprintable)");
		return out;
	}
	excerpt(s, strlen(s), out, outlen);
	free(s);
	return out;
}

static int mark_broken(struct rdmig_qmp *qmp, int code)
{
	if (!qmp->broken)
		qmp->broken = code;
	return code;
}

static int check_usable(struct rdmig_qmp *qmp, struct rdmig_err *err)
{
	if (!qmp)
		return rdmig_seterr(err, -EINVAL, "QMP handle is NULL");
	if (qmp->broken)
		return rdmig_seterr(err, -EPIPE,
				    "QMP connection to %s is unusable after an earlier error (%s)",
				    qmp->path, strerror(-qmp->broken));
	return 0;
}

/* ---- events ---------------------------------------------------------- */

static void event_push(struct rdmig_qmp *qmp, json_t *ev)
{
	struct qmp_event *e;

	if (qmp->n_ev >= RDMIG_QMP_MAX_EVENTS) {
		struct qmp_event *old = qmp->ev_head;

		if (!qmp->ev_dropped++)
			log_warn("QMP %s: more than %u unread events, dropping the oldest",
				 qmp->path, RDMIG_QMP_MAX_EVENTS);
		qmp->ev_head = old->next;
		if (!qmp->ev_head)
			qmp->ev_tail = NULL;
		qmp->n_ev--;
		json_decref(old->ev);
		free(old);
	}
	e = malloc(sizeof(*e));
	if (!e) {
		log_warn("QMP %s: out of memory, dropping an event", qmp->path);
		json_decref(ev);
		return;
	}
	e->next = NULL;
	e->ev = ev;
	if (qmp->ev_tail)
		qmp->ev_tail->next = e;
	else
		qmp->ev_head = e;
	qmp->ev_tail = e;
	qmp->n_ev++;
}

static json_t *event_pop(struct rdmig_qmp *qmp)
{
	struct qmp_event *e = qmp->ev_head;
	json_t *ev;

	if (!e)
		return NULL;
	qmp->ev_head = e->next;
	if (!qmp->ev_head)
		qmp->ev_tail = NULL;
	qmp->n_ev--;
	ev = e->ev;
	free(e);
	return ev;
}

/* ---- line framing ---------------------------------------------------- */

/*
 * Make room for at least one more read. Compacts consumed bytes away and
 * grows the buffer up to QMP_BUF_LIMIT.
 */
static int buf_reserve(struct rdmig_qmp *qmp, struct rdmig_err *err)
{
	size_t pending = qmp->len - qmp->start;
	size_t want;
	char *nb;

	if (qmp->start) {
		memmove(qmp->buf, qmp->buf + qmp->start, pending);
		qmp->scanned -= qmp->start;
		qmp->len = pending;
		qmp->start = 0;
	}
	if (qmp->cap - qmp->len >= QMP_READ_CHUNK / 4 || qmp->cap >= QMP_BUF_LIMIT)
		return 0;
	want = qmp->cap ? qmp->cap * 2 : QMP_READ_CHUNK;
	if (want > QMP_BUF_LIMIT)
		want = QMP_BUF_LIMIT;
	nb = realloc(qmp->buf, want);
	if (!nb)
		return rdmig_seterr(err, -ENOMEM, "QMP %s: no memory for a %zu byte line buffer",
				    qmp->path, want);
	qmp->buf = nb;
	qmp->cap = want;
	return 0;
}

/*
 * Parse the next complete line into *msg (a JSON object). Blank lines are
 * skipped. Returns 1 with *msg set, 0 if no complete line is buffered, or a
 * negative errno for a line that is not a JSON object (consumed, the stream
 * stays usable).
 */
static int take_line(struct rdmig_qmp *qmp, json_t **msg, struct rdmig_err *err)
{
	char ex[QMP_EXCERPT_MAX];

	for (;;) {
		char *line = qmp->buf + qmp->start;
		char *nl = NULL;
		size_t n, i;
		json_error_t jerr;
		json_t *j;

		if (qmp->scanned < qmp->len)
			nl = memchr(qmp->buf + qmp->scanned, '\n', qmp->len - qmp->scanned);
		if (!nl) {
			qmp->scanned = qmp->len;
			return 0;
		}
		n = (size_t)(nl - line);
		qmp->start += n + 1;
		qmp->scanned = qmp->start;
		if (n && line[n - 1] == '\r')
			n--;
		for (i = 0; i < n && (line[i] == ' ' || line[i] == '\t'); i++)
			;
		if (i == n)
			continue;

		j = json_loadb(line, n, JSON_ALLOW_NUL, &jerr);
		if (!j && strstr(jerr.text, "too big")) {
			/*
			 * QEMU prints uint64 fields above INT64_MAX, which jansson's
			 * integers cannot hold; such a message is kept with every
			 * integer as a real (exact up to 2^53) rather than refused.
			 */
			log_debug("QMP %s: integer beyond int64, parsing as reals", qmp->path);
			j = json_loadb(line, n, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
		}
		if (!qmp->greeted && (!j || !json_is_object(j))) {
			json_decref(j);
			return rdmig_seterr(
			    err, -EPROTO, "%s is not a QMP socket: it sent \"%s\" (%s)", qmp->path,
			    excerpt(line, n, ex, sizeof(ex)), j ? "not a JSON object" : "not JSON");
		}
		if (!j)
			return rdmig_seterr(
			    err, -EPROTO,
			    "malformed QMP reply from %s (not JSON: %s at column %d): "
			    "\"%s\"",
			    qmp->path, jerr.text, jerr.column, excerpt(line, n, ex, sizeof(ex)));
		if (!json_is_object(j)) {
			json_decref(j);
			return rdmig_seterr(
			    err, -EPROTO, "malformed QMP reply from %s (not a JSON object): \"%s\"",
			    qmp->path, excerpt(line, n, ex, sizeof(ex)));
		}
		*msg = j;
		return 1;
	}
}

/*
 * Wait for and parse the next line. Returns 0 with *msg set, -ETIMEDOUT
 * without touching `err` (callers say what they were waiting for), or
 * another negative errno with a message.
 */
static int read_msg(struct rdmig_qmp *qmp, int64_t deadline, json_t **msg, struct rdmig_err *err)
{
	for (;;) {
		struct pollfd pfd = {.fd = qmp->fd, .events = POLLIN};
		ssize_t r;
		int ret;

		ret = take_line(qmp, msg, err);
		if (ret)
			return ret > 0 ? 0 : ret;
		if (qmp->len - qmp->start >= QMP_BUF_LIMIT)
			return mark_broken(
			    qmp,
			    rdmig_seterr(err, -EMSGSIZE, "%s%s sent a line longer than %u bytes",
					 qmp->greeted ? "QMP " : "",
					 qmp->greeted ? qmp->path : "it", RDMIG_QMP_MAX_LINE));
		ret = buf_reserve(qmp, err);
		if (ret)
			return ret;

		ret = poll(&pfd, 1, rdmig_ms_left(deadline));
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			return mark_broken(qmp,
					   rdmig_seterr_errno(err, rdmig_neg_errno(),
							      "poll on QMP socket %s", qmp->path));
		}
		if (ret == 0)
			return -ETIMEDOUT;

		r = read(qmp->fd, qmp->buf + qmp->len, qmp->cap - qmp->len);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return mark_broken(qmp, rdmig_seterr_errno(err, rdmig_neg_errno(),
								   "read from QMP socket %s",
								   qmp->path));
		}
		if (r == 0)
			return mark_broken(qmp, rdmig_seterr(err, -ECONNRESET,
							     "QMP socket %s was closed by the peer",
							     qmp->path));
		qmp->len += (size_t)r;
	}
}

static int write_all(struct rdmig_qmp *qmp, const char *p, size_t n, int64_t deadline,
		     struct rdmig_err *err)
{
	while (n) {
		struct pollfd pfd = {.fd = qmp->fd, .events = POLLOUT};
		ssize_t w = send(qmp->fd, p, n, MSG_NOSIGNAL);
		int ret;

		if (w >= 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return mark_broken(qmp,
					   rdmig_seterr_errno(err, rdmig_neg_errno(),
							      "write to QMP socket %s", qmp->path));
		ret = poll(&pfd, 1, rdmig_ms_left(deadline));
		if (ret < 0 && errno != EINTR)
			return mark_broken(qmp,
					   rdmig_seterr_errno(err, rdmig_neg_errno(),
							      "poll on QMP socket %s", qmp->path));
		if (ret == 0)
			/* Part of a command may be out: the stream is no longer framed. */
			return mark_broken(
			    qmp, rdmig_seterr(err, -ETIMEDOUT,
					      "QMP %s does not take input (write timed out)",
					      qmp->path));
	}
	return 0;
}

/* ---- messages -------------------------------------------------------- */

/* Our ids stay far below 2^53, so a real (see take_line) compares exactly. */
static int id_matches(const json_t *jid, uint64_t id)
{
	if (json_is_integer(jid))
		return json_integer_value(jid) >= 0 && (uint64_t)json_integer_value(jid) == id;
	return json_is_real(jid) && json_real_value(jid) == (double)id;
}

/*
 * Sort one message: events are queued (returns 0), a reply to command `id`
 * is handed out in *reply (returns 1), replies to other ids are dropped
 * (returns 0), anything else is -EPROTO. Takes the reference to `msg`.
 */
static int dispatch(struct rdmig_qmp *qmp, json_t *msg, uint64_t id, json_t **reply,
		    struct rdmig_err *err)
{
	json_t *jid = json_object_get(msg, "id");
	char ex[QMP_EXCERPT_MAX];

	if (json_is_string(json_object_get(msg, "event"))) {
		event_push(qmp, msg);
		return 0;
	}
	if (!json_object_get(msg, "return") && !json_object_get(msg, "error")) {
		rdmig_seterr(err, -EPROTO,
			     "malformed QMP reply from %s (neither \"return\", \"error\" nor "
			     "\"event\"): %s",
			     qmp->path, json_excerpt(msg, ex, sizeof(ex)));
		json_decref(msg);
		return -EPROTO;
	}
	/*
	 * Every command we send has an id; QEMU answers without one only when
	 * it could not parse the input, which then was the command in flight.
	 */
	if (id && (!jid || id_matches(jid, id))) {
		*reply = msg;
		return 1;
	}
	log_debug("QMP %s: dropping a reply nobody waits for: %s", qmp->path,
		  json_excerpt(msg, ex, sizeof(ex)));
	json_decref(msg);
	return 0;
}

static int reply_result(struct rdmig_qmp *qmp, const char *execute, json_t *reply, json_t **ret,
			struct rdmig_err *err)
{
	json_t *error = json_object_get(reply, "error");
	json_t *val = json_object_get(reply, "return");
	char ex[QMP_EXCERPT_MAX];

	if (error) {
		const char *cls = json_string_value(json_object_get(error, "class"));
		const char *desc = json_string_value(json_object_get(error, "desc"));

		if (!json_is_object(error) || !cls || !desc)
			return rdmig_seterr(
			    err, -EPROTO,
			    "malformed QMP reply from %s to %s (error without class "
			    "and desc): %s",
			    qmp->path, execute, json_excerpt(reply, ex, sizeof(ex)));
		return rdmig_seterr(err, -EREMOTEIO, "QMP %s failed: %s: %s", execute, cls, desc);
	}
	if (ret)
		*ret = json_incref(val);
	return 0;
}

int rdmig_qmp_cmd(struct rdmig_qmp *qmp, const char *execute, json_t *args, json_t **ret,
		  int timeout_ms, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	json_t *cmd = NULL, *reply = NULL;
	char *text = NULL;
	uint64_t id;
	size_t n;
	int rc;

	if (ret)
		*ret = NULL;
	rc = check_usable(qmp, err);
	if (rc)
		goto out;
	if (!execute || !*execute) {
		rc = rdmig_seterr(err, -EINVAL, "QMP command name is empty");
		goto out;
	}
	if (args && !json_is_object(args)) {
		rc = rdmig_seterr(err, -EINVAL, "QMP %s: arguments must be a JSON object", execute);
		goto out;
	}

	id = ++qmp->last_id;
	cmd = json_pack("{s:s, s:I}", "execute", execute, "id", (json_int_t)id);
	if (!cmd || (args && json_object_set(cmd, "arguments", args))) {
		rc = rdmig_seterr(err, -ENOMEM, "QMP %s: cannot build the command", execute);
		goto out;
	}
	text = json_dumps(cmd, JSON_COMPACT);
	if (!text) {
		rc = rdmig_seterr(err, -ENOMEM, "QMP %s: cannot encode the command", execute);
		goto out;
	}
	/* json_dumps escapes control characters, so the command is one line. */
	n = strlen(text);
	text[n] = '\n'; /* replaces the NUL; the length is tracked in n */
	rc = write_all(qmp, text, n + 1, deadline, err);
	if (rc)
		goto out;
	log_debug("QMP %s -> %s (id %" PRIu64 ")", qmp->path, execute, id);

	for (;;) {
		json_t *msg = NULL;

		rc = read_msg(qmp, deadline, &msg, err);
		if (rc == -ETIMEDOUT)
			rc = rdmig_seterr(err, -ETIMEDOUT, "QMP %s: no reply from %s within %d ms",
					  execute, qmp->path, timeout_ms);
		if (rc)
			goto out;
		rc = dispatch(qmp, msg, id, &reply, err);
		if (rc < 0)
			goto out;
		if (rc == 1)
			break;
	}
	rc = reply_result(qmp, execute, reply, ret, err);
out:
	free(text);
	json_decref(reply);
	json_decref(cmd);
	json_decref(args);
	return rc;
}

int rdmig_qmp_next_event(struct rdmig_qmp *qmp, int timeout_ms, json_t **ev, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	int rc;

	*ev = NULL;
	if (qmp && qmp->ev_head) {
		*ev = event_pop(qmp);
		return 0;
	}
	rc = check_usable(qmp, err);
	if (rc)
		return rc;
	while (!qmp->ev_head) {
		json_t *msg = NULL, *reply = NULL;

		rc = read_msg(qmp, deadline, &msg, err);
		if (rc == -ETIMEDOUT)
			return 0;
		if (rc)
			return rc;
		rc = dispatch(qmp, msg, 0, &reply, err);
		if (rc < 0)
			return rc;
	}
	*ev = event_pop(qmp);
	return 0;
}

/* ---- connection ------------------------------------------------------ */

static int connect_unix(struct rdmig_qmp *qmp, int64_t deadline, struct rdmig_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (strlen(qmp->path) >= sizeof(sa.sun_path))
		return rdmig_seterr(err, -ENAMETOOLONG,
				    "QMP socket path %s is longer than %zu bytes", qmp->path,
				    sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, qmp->path, strlen(qmp->path) + 1);

	qmp->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (qmp->fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "socket for QMP %s", qmp->path);

	for (;;) {
		struct timespec pause = {0, 10 * 1000 * 1000};

		if (!connect(qmp->fd, (struct sockaddr *)&sa, sizeof(sa)))
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EINPROGRESS) {
			struct pollfd pfd = {.fd = qmp->fd, .events = POLLOUT};
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			int r = poll(&pfd, 1, rdmig_ms_left(deadline));

			if (r == 0)
				return rdmig_seterr(err, -ETIMEDOUT,
						    "connect to QMP socket %s: timed out",
						    qmp->path);
			if (r < 0 || getsockopt(qmp->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl))
				return rdmig_seterr_errno(err, rdmig_neg_errno(),
							  "connect to QMP socket %s", qmp->path);
			if (soerr)
				return rdmig_seterr_errno(err, -soerr, "connect to QMP socket %s",
							  qmp->path);
			return 0;
		}
		/* A unix socket with a full backlog says EAGAIN; there is no fd to wait on. */
		if (errno != EAGAIN)
			return rdmig_seterr_errno(err, rdmig_neg_errno(),
						  "connect to QMP socket %s", qmp->path);
		if (!rdmig_ms_left(deadline))
			return rdmig_seterr(err, -ETIMEDOUT,
					    "connect to QMP socket %s: listen backlog stays full",
					    qmp->path);
		nanosleep(&pause, NULL);
	}
}

static int json_int_member(json_t *obj, const char *key, int *out)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
		return -1;
	*out = (int)json_integer_value(v);
	return 0;
}

static int check_greeting(struct rdmig_qmp *qmp, json_t *msg, struct rdmig_err *err)
{
	json_t *greet = json_object_get(msg, "QMP");
	json_t *ver = json_object_get(json_object_get(greet, "version"), "qemu");
	const char *pkg;
	char ex[QMP_EXCERPT_MAX];

	if (!json_is_object(greet))
		return rdmig_seterr(err, -EPROTO, "%s is not a QMP socket: greeting is %s",
				    qmp->path, json_excerpt(msg, ex, sizeof(ex)));
	if (!json_is_object(ver) || json_int_member(ver, "major", &qmp->major) ||
	    json_int_member(ver, "minor", &qmp->minor) ||
	    json_int_member(ver, "micro", &qmp->micro))
		return rdmig_seterr(err, -EPROTO,
				    "%s is not a QMP socket: greeting without QEMU version: %s",
				    qmp->path, json_excerpt(msg, ex, sizeof(ex)));
	if (!json_is_array(json_object_get(greet, "capabilities")))
		return rdmig_seterr(err, -EPROTO,
				    "%s is not a QMP socket: greeting without capabilities: %s",
				    qmp->path, json_excerpt(msg, ex, sizeof(ex)));
	pkg = json_string_value(json_object_get(json_object_get(greet, "version"), "package"));
	snprintf(qmp->package, sizeof(qmp->package), "%s", pkg ? pkg : "");
	return 0;
}

int rdmig_qmp_open(const char *path, int timeout_ms, struct rdmig_qmp **out, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	struct rdmig_err inner = RDMIG_ERR_INIT;
	struct rdmig_qmp *qmp;
	json_t *msg = NULL;
	int rc, left;

	*out = NULL;
	if (!path || !*path)
		return rdmig_seterr(err, -EINVAL, "QMP socket path is empty");
	qmp = calloc(1, sizeof(*qmp));
	if (!qmp)
		return rdmig_seterr(err, -ENOMEM, "no memory for a QMP handle");
	qmp->fd = -1;
	qmp->path = strdup(path);
	if (!qmp->path) {
		rc = rdmig_seterr(err, -ENOMEM, "no memory for a QMP handle");
		goto out_close;
	}

	rc = connect_unix(qmp, deadline, err);
	if (rc)
		goto out_close;

	rc = read_msg(qmp, deadline, &msg, &inner);
	if (rc == -ETIMEDOUT) {
		rc = rdmig_seterr(err, rc,
				  "%s is not a QMP socket: no greeting within %d ms (not QEMU, or "
				  "another client holds the monitor)",
				  path, timeout_ms);
		goto out_close;
	}
	if (rc == -ECONNRESET) {
		rc = rdmig_seterr(
		    err, rc, "%s is not a QMP socket: connection closed before a greeting", path);
		goto out_close;
	}
	if (rc == -EMSGSIZE) {
		rc = rdmig_seterr(err, rc, "%s is not a QMP socket: %s", path, inner.msg);
		goto out_close;
	}
	if (rc) {
		rc = rdmig_seterr(err, rc, "%s", inner.msg);
		goto out_close;
	}
	rc = check_greeting(qmp, msg, err);
	json_decref(msg);
	if (rc)
		goto out_close;
	qmp->greeted = 1;
	log_debug("QMP %s: QEMU %d.%d.%d (%s)", path, qmp->major, qmp->minor, qmp->micro,
		  qmp->package);

	/* Leave capabilities negotiation mode; no optional capability (oob) is used. */
	left = rdmig_ms_left(deadline);
	rc = rdmig_qmp_cmd(qmp, "qmp_capabilities", NULL, NULL, left, err);
	if (rc)
		goto out_close;
	*out = qmp;
	return 0;

out_close:
	rdmig_qmp_close(qmp);
	return rc;
}

void rdmig_qmp_close(struct rdmig_qmp *qmp)
{
	json_t *ev;

	if (!qmp)
		return;
	while ((ev = event_pop(qmp)))
		json_decref(ev);
	if (qmp->fd >= 0)
		close(qmp->fd);
	free(qmp->buf);
	free(qmp->path);
	free(qmp);
}

/* ---- helpers --------------------------------------------------------- */

int rdmig_qmp_status(struct rdmig_qmp *qmp, char *buf, size_t len, struct rdmig_err *err)
{
	json_t *ret = NULL;
	const char *status;
	char ex[QMP_EXCERPT_MAX];
	int rc;

	if (len)
		buf[0] = '\0';
	rc = rdmig_qmp_cmd(qmp, "query-status", NULL, &ret, 10000, err);
	if (rc)
		return rc;
	status = json_string_value(json_object_get(ret, "status"));
	if (!status)
		rc = rdmig_seterr(err, -EPROTO, "malformed QMP reply to query-status: %s",
				  json_excerpt(ret, ex, sizeof(ex)));
	else if (strlen(status) >= len)
		rc = rdmig_seterr(err, -ERANGE, "QMP run status \"%s\" does not fit %zu bytes",
				  status, len);
	else
		memcpy(buf, status, strlen(status) + 1);
	json_decref(ret);
	return rc;
}

void rdmig_qmp_version(const struct rdmig_qmp *qmp, int *major, int *minor, int *micro)
{
	if (major)
		*major = qmp->major;
	if (minor)
		*minor = qmp->minor;
	if (micro)
		*micro = qmp->micro;
}

const char *rdmig_qmp_package(const struct rdmig_qmp *qmp)
{
	return qmp->package;
}
