/* SPDX-License-Identifier: MIT */
/*
 * Control client: the orchestrator's end of a control session with a
 * destination relay (requests and replies, relay_dst.c's QMP proxy).
 */
#include <errno.h>

#include "relay_int.h"

int rdmig_relay_ctrl_open(const struct rdmig_xport_cfg *xcfg, struct rdmig_conn **out,
			  struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = *xcfg;
	struct rdmig_conn *c = NULL;
	int ret;

	*out = NULL;
	cfg.channels = 1;
	ret = rdmig_connect(&cfg, &c, err);
	if (ret)
		return ret;
	ret = relay_hello(c, RELAY_CONTROL, err);
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
	ret = relay_check_reply(r, err);
	if (ret || !reply)
		json_decref(r);
	else
		*reply = r;
	return ret;
}
