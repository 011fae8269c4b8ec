/* SPDX-License-Identifier: MIT */
/*
 * Settling a cut hand-over over a new connection (engine/settle.c): the
 * source's RESOLVE and the destination's RESOLVED, both within
 * opts.commit_grace_ns, through opts.settle_conn. docs/protocol.md,
 * "Settlement".
 */
#ifndef RDMIG_ENGINE_SETTLE_H
#define RDMIG_ENGINE_SETTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "rdmig/migrate.h"
#include "proto.h"

/*
 * Source: tell the destination `decision` for migration `id` until it
 * answers RESOLVED (0, its state in *out) or the grace has passed
 * (-ETIMEDOUT, the last reason it did not work in err).
 */
int rdmig_settle_src(const struct rdmig_mig_opts *o, const uint8_t *id,
		     enum rdmig_decision decision, enum rdmig_dst_outcome *out,
		     struct rdmig_err *err);

/* Destination: what it holds while it waits for the source's word. */
struct rdmig_settle_dst {
	const struct rdmig_mig_opts *o;
	const uint8_t *id;
	/* The guest runs here already (GO came; GO_ACK or DONE went missing). */
	bool running;
	/* Run the guest (RESOLVE said GO); never fails the migration. */
	void (*go)(void *ctx);
	void *ctx;
};

/*
 * Destination: accept connections until one brings RESOLVE for `id` and
 * the source confirmed the answer, or the grace has passed. Other
 * connections are refused, saying this destination is busy settling.
 * 0: settled, *out says what happened (RUNNING: s->running is now true);
 * -ETIMEDOUT: the grace passed (s->running says whether the guest runs).
 */
int rdmig_settle_dst(struct rdmig_settle_dst *s, enum rdmig_dst_outcome *out,
		     struct rdmig_err *err);

#endif
