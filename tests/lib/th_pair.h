/* SPDX-License-Identifier: MIT */
/*
 * The usual two-process test over one rdmig connection: this process
 * listens, the peer (this program again, tests/lib/th_peer.h) connects.
 *
 * th_pair_run() splits (th_split()), listens with the given configuration
 * and hands the port to the peer over the channel. This process then runs
 * `listener`; the peer, arriving at the same call, runs `connector` with the
 * port and exits 0 when it returned true and none of its checks failed.
 * Setup before the call runs in both processes, so it must be deterministic
 * (the seed is handed over).
 */
#ifndef RDMIG_TEST_TH_PAIR_H
#define RDMIG_TEST_TH_PAIR_H

#include <stdbool.h>
#include <stdint.h>

#include "rdmig/transport.h"
#include "th_peer.h"

struct th_pair {
	const char *roles[2]; /* this process's, the peer's: line prefixes, e.g. "dst", "src" */
	/* This process, listening on l, with the peer running; true when its part passed. */
	bool (*listener)(struct rdmig_listener *l, struct th_peer *peer, void *arg);
	/* The peer, with the listener's port; true when its part passed. */
	bool (*connector)(uint16_t port, void *arg);
	void *arg;
	int timeout_ms;	 /* for the port, and for the peer to end after `listener` returned */
	int peer_signal; /* 0: the peer must exit 0; else it must die of this signal */
};

/*
 * In this process: true when the listener's part passed and the peer ended
 * as expected (each checked). A peer started by an earlier split skips the
 * call (true); the peer of this split never returns from it.
 */
bool th_pair_run(const struct rdmig_xport_cfg *lcfg, const struct th_pair *pair);

/*
 * The same for parts that report through checks alone: this process is
 * "dst" and runs dst(l), the peer "src" and runs src(port).
 */
bool th_pair_run_simple(const struct rdmig_xport_cfg *lcfg, void (*dst)(struct rdmig_listener *l),
			void (*src)(uint16_t port), int timeout_ms);

#endif
