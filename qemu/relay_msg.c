/* SPDX-License-Identifier: MIT */
/*
 * Relay control messages: one JSON object per rdmig control message, the
 * HELLO that tells a stream set from a control session, the STREAM that
 * binds one of QEMU's connections to a channel of a set, and the replies.
 * Everything from the peer is checked here before anyone looks at it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "relay_int.h"

#define MAX_JSON RDMIG_CTRL_MAX_PAYLOAD

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

json_t *relay_reply_ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

json_t *relay_reply_err(const char *msg)
{
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

int relay_send_reply(struct rdmig_conn *c, json_t *reply, struct rdmig_err *err)
{
	int ret;

	if (!reply)
		return rdmig_seterr(err, -ENOMEM, "relay: cannot encode a reply");
	ret = rdmig_relay_send_json(c, RDMIG_RELAY_MSG_REPLY, reply, err);
	json_decref(reply);
	return ret;
}

int relay_check_reply(json_t *r, struct rdmig_err *err)
{
	const char *e;

	if (json_is_true(json_object_get(r, "ok")))
		return 0;
	e = json_string_value(json_object_get(r, "error"));
	return rdmig_seterr(err, -EREMOTEIO, "%s", e ? e : "destination relay refused (no reason)");
}

/* The version check's words: both relays come from one rdmig release. */
static int version_refused(json_t *msg, struct rdmig_err *err)
{
	json_t *v = json_object_get(msg, "version");

	if (json_is_integer(v) && json_integer_value(v) == RDMIG_RELAY_VERSION)
		return 0;
	if (!json_is_integer(v))
		return rdmig_seterr(err, -EPROTO, "destination relay: HELLO without a version");
	return rdmig_seterr(
	    err, -EPROTO,
	    "destination relay: the peer speaks relay protocol %lld, this relay %d: "
	    "run the same rdmig release on both hosts",
	    (long long)json_integer_value(v), RDMIG_RELAY_VERSION);
}

/* A JSON integer in [0, max), else -1. */
static long long int_below(json_t *msg, const char *key, long long max)
{
	json_t *v = json_object_get(msg, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= max)
		return -1;
	return json_integer_value(v);
}

/* Send `msg` (reference stolen) as a message of `type` and wait for the verdict. */
static int relay_ask(struct rdmig_conn *c, uint16_t type, json_t *msg, struct rdmig_err *err)
{
	json_t *reply = NULL;
	int ret;

	if (!msg)
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	ret = rdmig_relay_send_json(c, type, msg, err);
	json_decref(msg);
	if (!ret)
		ret = rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_REPLY, &reply,
					    RELAY_HELLO_TIMEOUT_MS, err);
	if (!ret)
		ret = relay_check_reply(reply, err);
	json_decref(reply);
	return ret;
}

int relay_hello(struct rdmig_conn *c, enum relay_kind kind, struct rdmig_err *err)
{
	if (kind == RELAY_SET)
		return relay_ask(c, RDMIG_RELAY_MSG_HELLO,
				 json_pack("{s:s, s:i, s:i}", "kind", "set", "version",
					   RDMIG_RELAY_VERSION, "channels",
					   (int)rdmig_conn_channels(c)),
				 err);
	return relay_ask(c, RDMIG_RELAY_MSG_HELLO,
			 json_pack("{s:s, s:i}", "kind", "control", "version", RDMIG_RELAY_VERSION),
			 err);
}

int relay_hello_recv(struct rdmig_conn *c, enum relay_kind *kind, bool *refused,
		     struct rdmig_err *err)
{
	json_t *hello = NULL;
	const char *k;
	long long n;
	int ret;

	*refused = false;
	ret = rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_HELLO, &hello, RELAY_HELLO_TIMEOUT_MS, err);
	if (ret)
		return ret;
	k = json_string_value(json_object_get(hello, "kind"));
	ret = version_refused(hello, err);
	if (!ret && !k)
		ret = rdmig_seterr(err, -EPROTO, "destination relay: HELLO without a kind");
	else if (!ret && !strcmp(k, "control"))
		*kind = RELAY_CONTROL;
	else if (!ret && strcmp(k, "set"))
		ret = rdmig_seterr(err, -EPROTO,
				   "destination relay: unknown connection kind \"%.32s\"", k);
	else if (!ret && ((n = int_below(hello, "channels", RDMIG_MAX_CHANNELS + 1)) < 1 ||
			  (unsigned)n != rdmig_conn_channels(c)))
		ret = rdmig_seterr(err, -EPROTO,
				   "destination relay: a stream set announced %lld channels on a "
				   "connection of %u",
				   n, rdmig_conn_channels(c));
	else if (!ret)
		*kind = RELAY_SET;
	*refused = ret != 0;
	json_decref(hello);
	return ret;
}

int relay_stream_open(struct rdmig_conn *c, unsigned chan, unsigned index, struct rdmig_err *err)
{
	return relay_ask(c, RDMIG_RELAY_MSG_STREAM,
			 json_pack("{s:i, s:I}", "channel", (int)chan, "index", (json_int_t)index),
			 err);
}

int relay_stream_recv(struct rdmig_conn *c, unsigned *chan, unsigned *index, int timeout_ms,
		      struct rdmig_err *err)
{
	json_t *msg = NULL;
	long long ch, idx;
	int ret;

	ret = rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_STREAM, &msg, timeout_ms, err);
	if (ret)
		return ret;
	ch = int_below(msg, "channel", rdmig_conn_channels(c));
	idx = int_below(msg, "index", (long long)UINT32_MAX + 1);
	json_decref(msg);
	if (ch < 0)
		return rdmig_seterr(
		    err, -EPROTO,
		    "destination relay: a stream announced on no channel of its set "
		    "(of %u)",
		    rdmig_conn_channels(c));
	if (idx < 0)
		return rdmig_seterr(err, -EPROTO,
				    "destination relay: a stream announced without a valid index");
	*chan = (unsigned)ch;
	*index = (unsigned)idx;
	return 0;
}
