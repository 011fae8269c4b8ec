/* SPDX-License-Identifier: MIT */
/*
 * Orchestrator internals, shared by its files and nothing else:
 *
 *   orchestrate.c  setup, pre-copy, the end of a migration (settle)
 *   postcopy.c     when to switch to post-copy, and recovering a broken one
 *
 * One thread drives a migration; nothing here is locked.
 */
#ifndef RDMIG_QEMU_ORCHESTRATE_INT_H
#define RDMIG_QEMU_ORCHESTRATE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "orchestrate.h"
#include "qmp.h"
#include "relay.h"

#define QMP_TIMEOUT_MS	10000
#define CTRL_TIMEOUT_MS 15000

struct orch {
	const struct rdmig_qemu_migrate_opts *o;
	struct rdmig_qemu_migrate_result *res;
	struct rdmig_qmp *src;
	struct rdmig_conn *ctrl;
	bool ctrl_lost; /* a call failed on the way: a late reply may still come */
	enum { END_CANCELLED, END_RESUMED, END_SAID } end; /* how settle() left a failure */
	char dst_detail[160];				   /* the destination's fence reply */
	struct rdmig_relay_src *relay;
	json_t *src_caps, *dst_caps;	 /* name -> bool */
	json_t *src_params, *dst_params; /* query-migrate-parameters */
	char sock_dir[64];
	char sock_path[108];
	char dst_addr[300];
	double t0;
	/* When to switch to post-copy (postcopy.c). */
	unsigned pc_pass;    /* the pass pc_left[0] belongs to */
	uint64_t pc_left[3]; /* most bytes left seen in this pass, the one before, before that */
	bool pc_cancel_said; /* told once that post-copy cannot be cancelled */
};

/* A QMP command to the source QEMU; errors say so. */
int orch_src_cmd(struct orch *m, const char *cmd, json_t *args, json_t **ret,
		 struct rdmig_err *err);

/* A request to the destination relay; a lost session sets ctrl_lost. */
int orch_dst_call(struct orch *m, json_t *req, json_t **reply, struct rdmig_err *err);

/* A fresh control session when the last one failed on the way (or there is none). */
int orch_ctrl_reopen(struct orch *m, struct rdmig_err *err);

/* ram.KEY of a query-migrate reply, 0 when absent. */
uint64_t orch_ram_u64(json_t *info, const char *key);

/*
 * Pre-copy under way (query-migrate `info`, status "active"): issue
 * migrate-start-postcopy when the options say it is time. 0 when nothing
 * was due or it went out (res->postcopy then set).
 */
int orch_postcopy_maybe_start(struct orch *m, json_t *info, struct rdmig_err *err);

/*
 * The source QEMU paused post-copy (a stream broke): bring the destination
 * QEMU back to listening through a (possibly restarted) destination relay
 * and resume the source over new relay streams. 0 when the source was told
 * to resume; otherwise res->guest_lost or res->postcopy_paused is set and `err`
 * says what happened and what is left to do.
 */
int orch_postcopy_recover(struct orch *m, struct rdmig_err *err);

#endif
