/* SPDX-License-Identifier: MIT */
/*
 * `rdmig qemu migrate`: drive a QEMU live migration through the rdmig relay.
 *
 * Runs on the source host. It talks QMP to the source QEMU, and to the
 * destination relay (`rdmig qemu dst --qmp ...`) over an rdmig control
 * connection; the destination relay drives the destination QEMU, so no QMP
 * socket crosses hosts. The source relay is started in-process on a private
 * unix socket (or `relay_socket`), and QEMU is told `migrate unix:<socket>`.
 */
#ifndef RDMIG_QEMU_ORCHESTRATE_H
#define RDMIG_QEMU_ORCHESTRATE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "rdmig/err.h"
#include "rdmig/transport.h"

struct rdmig_qemu_migrate_opts {
	const char *src_qmp;	      /* source QEMU's QMP socket */
	struct rdmig_xport_cfg xport; /* destination relay: host, port, backend */
	unsigned multifd;	      /* 0: off, else multifd-channels */
	bool auto_converge;
	int64_t downtime_ms;	  /* < 0: leave QEMU's */
	int64_t max_bandwidth;	  /* bytes/s; < 0: leave QEMU's, 0: unlimited */
	uint64_t timeout_ms;	  /* 0: none */
	const char *relay_socket; /* NULL: a private temporary one */
	unsigned socket_mode;	  /* its permission bits, 0: 0600 (relay.h) */
	bool socket_set_group;	  /* give it (and a private directory) group socket_gid */
	unsigned socket_gid;
	volatile sig_atomic_t *cancel; /* set (by a signal handler) to cancel */
	bool progress;		       /* progress line on stderr */
	/*
	 * Post-copy: postcopy-ram on both sides (and postcopy-preempt where both
	 * have it), then migrate-start-postcopy after postcopy_after_passes
	 * passes or postcopy_after_ms of pre-copy, whichever comes first, or,
	 * with neither set, once pre-copy stops converging (the bytes left at
	 * the start of a pass did not shrink by a tenth over two passes).
	 */
	bool postcopy;
	unsigned postcopy_after_passes; /* 0: not by passes */
	uint64_t postcopy_after_ms;	/* 0: not by time */
	uint64_t recover_wait_ms;	/* how long to try to recover a broken post-copy */
};

struct rdmig_qemu_migrate_result {
	int64_t total_ms, downtime_ms, setup_ms;
	uint64_t transferred; /* bytes QEMU sent (ram.transferred) */
	uint64_t relayed;     /* bytes the relay carried to the destination */
	double mbps;	      /* QEMU's last ram.mbps */
	unsigned streams;     /* QEMU connections carried */
	unsigned sets;	      /* rdmig connections (stream sets) that carried them */
	unsigned passes;      /* dirty-sync-count */
	char src_version[32], dst_version[32];
	char src_status[32];	    /* source VM run state at the end */
	char dst_status[32];	    /* destination VM run state at the end */
	char mig_status[32];	    /* final query-migrate status */
	bool src_resumed;	    /* the source had completed and was resumed with cont */
	bool outcome_unknown;	    /* where the guest runs cannot be known (see below) */
	bool postcopy;		    /* post-copy was started */
	bool preempt;		    /* with postcopy-preempt (a channel of its own) */
	uint64_t postcopy_requests; /* pages the destination asked for (ram.postcopy-requests) */
	int64_t postcopy_start_ms;  /* when migrate-start-postcopy went out, since migrate */
	unsigned recoveries;	    /* post-copy recoveries that resumed the migration */
	bool guest_lost;	    /* post-copy failed for good: no QEMU holds the whole guest */
	bool postcopy_paused;	    /* post-copy left paused on both sides, to recover by hand */
};

/*
 * Migrate. 0 when the destination QEMU runs the guest; otherwise a negative
 * errno with the cause in `err`, and the guest runs on at most one side:
 *
 * - failed before the source QEMU completed: migrate_cancel, and the source
 *   VM keeps running;
 * - failed after it completed (the guest left the source, which is paused
 *   in postmigrate) and the destination QEMU is known not to run the guest
 *   (it has exited, or it is stopped and the relay has turned its autostart
 *   off): the source is resumed with cont (res->src_resumed);
 * - failed after it completed and the destination cannot be asked (relay
 *   unreachable, its QEMU not answering): res->outcome_unknown, both sides
 *   are left stopped as they are and `err` says what to check and do.
 *
 * Once post-copy has started the guest runs on the destination and its
 * memory is split between the two QEMUs, so nothing is cancelled nor
 * resumed: a broken stream pauses both QEMUs (postcopy-paused) and the
 * orchestrator recovers over new relay streams (migrate-recover on the
 * destination, migrate with resume on the source), trying for
 * recover_wait_ms. When a QEMU has died, or recovery fails for good,
 * res->guest_lost is set and `err` says so.
 *
 * res->src_status and res->dst_status say how each VM was left.
 */
int rdmig_qemu_migrate(const struct rdmig_qemu_migrate_opts *o,
		       struct rdmig_qemu_migrate_result *res, struct rdmig_err *err);

#endif
