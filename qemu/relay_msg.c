/* SPDX-License-Identifier: MIT */
/*
 * Relay control messages: one JSON object per rdmig control message, the
 * HELLO that tells a stream from a control session, and the replies.
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

int relay_hello(struct rdmig_conn *c, enum relay_kind kind, unsigned index, struct rdmig_err *err)
{
	json_t *hello, *reply = NULL;
	int ret;

	if (kind == RELAY_STREAM)
		hello = json_pack("{s:s, s:i, s:i}", "kind", "stream", "version",
				  RDMIG_RELAY_VERSION, "index", (int)index);
	else
		hello = json_pack("{s:s, s:i}", "kind", "control", "version", RDMIG_RELAY_VERSION);
	ret = rdmig_relay_send_json(c, RDMIG_RELAY_MSG_HELLO, hello, err);
	json_decref(hello);
	if (!ret)
		ret = rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_REPLY, &reply,
					    RELAY_HELLO_TIMEOUT_MS, err);
	if (!ret)
		ret = relay_check_reply(reply, err);
	json_decref(reply);
	return ret;
}

int relay_hello_recv(struct rdmig_conn *c, enum relay_kind *kind, unsigned *index, bool *refused,
		     struct rdmig_err *err)
{
	json_t *hello = NULL;
	const char *k;
	int ret;

	*refused = false;
	*index = 0;
	ret = rdmig_relay_recv_json(c, RDMIG_RELAY_MSG_HELLO, &hello, RELAY_HELLO_TIMEOUT_MS, err);
	if (ret)
		return ret;
	k = json_string_value(json_object_get(hello, "kind"));
	if (json_integer_value(json_object_get(hello, "version")) != RDMIG_RELAY_VERSION || !k)
		ret = rdmig_seterr(err, -EPROTO,
				   "destination relay: unsupported relay protocol version");
	else if (!strcmp(k, "control"))
		*kind = RELAY_CONTROL;
	else if (!strcmp(k, "stream"))
		*kind = RELAY_STREAM;
	else
		ret = rdmig_seterr(err, -EPROTO, "destination relay: unknown connection kind");
	if (ret)
		*refused = true;
	else
		*index = (unsigned)json_integer_value(json_object_get(hello, "index"));
	json_decref(hello);
	return ret;
}
