/* SPDX-License-Identifier: MIT */
#include "th_pair.h"

#include <stdlib.h>

#include "th_check.h"

/* The peer's side: never returns. */
static void connector_side(const struct th_pair *pair)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint16_t port = 0;
	bool ok = false;

	th_set_role(pair->roles[1]);
	if (TH_CHECK_CALL(th_chan_recv_port(th_peer_fd(), &port, pair->timeout_ms, &e), &e,
			  "the listening port from the %s", pair->roles[0]))
		ok = pair->connector(port, pair->arg);
	exit(ok && !th_failures() ? TH_EXIT_PASS : TH_EXIT_FAIL);
}

bool th_pair_run(const struct rdmig_xport_cfg *lcfg, const struct th_pair *pair)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_listener *l = NULL;
	struct th_peer peer;
	bool ok = false;
	char sbuf[64];
	int side = th_split(&peer, pair->roles[1], &e);

	if (side == TH_SIDE_SKIP)
		return true;
	if (side == TH_SIDE_PEER)
		connector_side(pair);
	th_set_role(pair->roles[0]);
	if (!TH_CHECK_CALL(side, &e, "starting the %s process", pair->roles[1]))
		return false;
	if (TH_CHECK_CALL(rdmig_listen(lcfg, &l, &e), &e, "listen") &&
	    TH_CHECK_CALL(th_chan_send_port(peer.fd, rdmig_listener_port(l), &e), &e,
			  "passing the port to the %s", pair->roles[1]))
		ok = pair->listener(l, &peer, pair->arg);
	rdmig_listener_destroy(l);
	rdmig_err_clear(&e);
	if (!TH_CHECK_CALL(th_peer_wait(&peer, pair->timeout_ms, &e), &e, "the %s process ended",
			   pair->roles[1]))
		return false;
	if (pair->peer_signal)
		return TH_CHECK(th_killed(peer.status, pair->peer_signal),
				"the %s process must be killed by signal %d: %s", pair->roles[1],
				pair->peer_signal,
				th_status_str(peer.status, sbuf, sizeof(sbuf))) &&
		       ok;
	return TH_CHECK(th_exited(peer.status, 0), "the %s process passed: %s", pair->roles[1],
			th_status_str(peer.status, sbuf, sizeof(sbuf))) &&
	       ok;
}

struct simple {
	void (*dst)(struct rdmig_listener *l);
	void (*src)(uint16_t port);
};

static bool simple_listener(struct rdmig_listener *l, struct th_peer *peer, void *arg)
{
	(void)peer;
	((const struct simple *)arg)->dst(l);
	return true;
}

static bool simple_connector(uint16_t port, void *arg)
{
	((const struct simple *)arg)->src(port);
	return true;
}

bool th_pair_run_simple(const struct rdmig_xport_cfg *lcfg, void (*dst)(struct rdmig_listener *l),
			void (*src)(uint16_t port), int timeout_ms)
{
	struct simple fns = {dst, src};
	struct th_pair pair = {.roles = {"dst", "src"},
			       .listener = simple_listener,
			       .connector = simple_connector,
			       .arg = &fns,
			       .timeout_ms = timeout_ms};

	return th_pair_run(lcfg, &pair);
}
