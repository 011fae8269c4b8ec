/* SPDX-License-Identifier: MIT */
/*
 * Live pre-copy migration of a guest over an rdmig transport connection.
 *
 * Source:      rdmig_mig_source(conn, guest, opts, ...)
 * Destination: rdmig_mig_dest(conn, opts, ...)
 *
 * States (both sides report every change as an event):
 *   setup -> bulk -> dirty rounds -> switchover -> final copy -> verify ->
 *   [destination: prepared ->] commit -> completed
 *
 * The hand-over has two steps, so that at most one copy of the guest ever
 * runs (docs/protocol.md, "Migration messages"; docs/reliability.md):
 *   source: FINAL, manifest        destination: every final fence, revoke
 *                                  remote access, verify, VERIFIED; now
 *                                  "prepared": it neither runs nor discards
 *                                  on its own
 *   source: decides GO (recorded   destination: runs the guest only on GO,
 *   before the send), GO; it never then GO_ACK
 *   resumes the guest from here
 *   source: GO_ACK -> completed, then DONE
 * Before GO the source may abort (cancel, timeout, link loss, VERIFY_FAIL):
 * it resumes its guest and tells the destination, which discards (failed /
 * cancelled). A destination that never sent VERIFIED discards on any
 * failure.
 *
 * The one open case is settled over a new connection: a source that decided
 * GO without GO_ACK, or a destination that sent VERIFIED without GO or
 * CANCEL, runs nothing and "settles": the source reconnects
 * (opts.settle_conn) and sends RESOLVE(id, decision), the destination
 * accepts it on its listener (opts.settle_conn) and answers RESOLVED
 * (running / discarded). Unsettled within opts.commit_grace_ns, both end in
 * RDMIG_MIG_UNKNOWN and return RDMIG_MIG_EUNKNOWN; neither runs the guest
 * (rdmig_mig_unknown_advice() says what the operator does).
 *
 * The source's main thread runs the state machine; one worker thread per
 * data channel writes that channel's share of each round and fences it.
 * opts.cancel may be set from any thread (or a signal handler); it is
 * honoured until the source decides GO, and on the destination until it
 * sends VERIFIED.
 */
#ifndef RDMIG_MIGRATE_H
#define RDMIG_MIGRATE_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "dirty_probe.h"
#include "guest.h"
#include "rdmig/err.h"
#include "rdmig/transport.h"

struct rdmig_numa_plan; /* numa/plan.h */

enum rdmig_mig_state {
	RDMIG_MIG_SETUP = 0,
	RDMIG_MIG_BULK,
	RDMIG_MIG_DIRTY,
	RDMIG_MIG_SWITCHOVER,
	RDMIG_MIG_FINAL_COPY,
	RDMIG_MIG_VERIFY,
	RDMIG_MIG_PREPARED, /* destination: VERIFIED sent, waiting for GO or CANCEL */
	RDMIG_MIG_COMMIT,   /* source: decided GO; destination: the guest runs */
	RDMIG_MIG_SETTLING, /* the hand-over was cut: settling over a new connection */
	/* Final states from here on. */
	RDMIG_MIG_COMPLETED,
	RDMIG_MIG_FAILED,
	RDMIG_MIG_CANCELLED,
	RDMIG_MIG_UNKNOWN, /* not settled within the grace: see rdmig_mig_unknown_advice() */
};
const char *rdmig_mig_state_name(enum rdmig_mig_state s);

enum rdmig_throttle_policy {
	RDMIG_THROTTLE_ADAPTIVE = 0,
	RDMIG_THROTTLE_STEP,
	RDMIG_THROTTLE_OFF,
};
const char *rdmig_throttle_name(enum rdmig_throttle_policy p);
int rdmig_throttle_parse(const char *s, enum rdmig_throttle_policy *out, struct rdmig_err *err);

enum rdmig_event_type {
	RDMIG_EV_STATE = 1, /* state changed */
	RDMIG_EV_ROUND,	    /* a round finished (source) */
	RDMIG_EV_PROGRESS,  /* periodic, during a round (source) */
};

struct rdmig_mig_stats {
	enum rdmig_mig_state state;
	unsigned round;	     /* 1 = bulk */
	uint64_t ram_bytes;  /* guest RAM size */
	uint64_t bytes_sent; /* payload bytes written so far */
	uint64_t pages_sent;
	uint64_t zero_pages;  /* skipped in the bulk round */
	uint64_t round_bytes; /* bytes of the current/last round */
	uint64_t round_total; /* bytes the current round has to send */
	uint64_t dirty_bytes; /* dirty set found by the last harvest */
	double bandwidth;     /* bytes/s, smoothed */
	double dirty_rate;    /* bytes/s, smoothed, as the guest dirties now */
	double predicted_downtime_ms;
	unsigned throttle;     /* permille now */
	unsigned max_throttle; /* permille, highest so far */
	uint64_t verified_pages;
	uint64_t guest_work; /* work units the guest completed during migration */
	double total_ms;
	double downtime_ms;
	double harvest_ms_per_gib; /* average harvest cost */
	enum rdmig_dirty_kind dirty_source;
	char migration_id[33]; /* hex, "" until SETUP */
};

struct rdmig_mig_event {
	enum rdmig_event_type type;
	const struct rdmig_mig_stats *stats;
};

typedef void (*rdmig_mig_event_fn)(const struct rdmig_mig_event *ev, void *ctx);

/*
 * What rdmig_mig_source() and rdmig_mig_dest() return when the outcome is
 * unknown (state RDMIG_MIG_UNKNOWN): the hand-over was cut and could not be
 * settled within the grace. Neither side runs the guest; see
 * rdmig_mig_unknown_advice().
 */
#define RDMIG_MIG_EUNKNOWN (-ENOTRECOVERABLE)

/*
 * What an operator must do after RDMIG_MIG_EUNKNOWN on this side (source
 * or destination), in a few sentences for a log or a terminal.
 */
const char *rdmig_mig_unknown_advice(bool source);

/*
 * A new connection for settling a cut hand-over (opts.settle_conn). Source:
 * connect to the destination again (same address, key and transport
 * settings). Destination: accept the next connection on the listener.
 * Either within `timeout_ms`, -ETIMEDOUT when nothing came; the engine
 * destroys the connection it gets.
 */
typedef int (*rdmig_mig_conn_fn)(void *ctx, int timeout_ms, struct rdmig_conn **out,
				 struct rdmig_err *err);

/* Test hooks: where in the hand-over to fail, and how (rdmig_mig_opts.test_fault_*). */
enum rdmig_handover_step {
	RDMIG_STEP_NONE = 0,
	RDMIG_STEP_FINAL,    /* source: before sending FINAL; destination: on receiving it */
	RDMIG_STEP_MANIFEST, /* source: before the manifest; destination: on MANIFEST_END */
	RDMIG_STEP_VERIFIED, /* source: on receiving VERIFIED; destination: before sending it */
	RDMIG_STEP_GO,	     /* source: decided, before sending GO; destination: on receiving it */
	RDMIG_STEP_GO_ACK,   /* source: on receiving GO_ACK; destination: before sending it */
};

enum rdmig_fault_action {
	RDMIG_FAULT_DROP = 0, /* abort the connection there (a send does not happen) */
	RDMIG_FAULT_KILL,     /* SIGKILL this process */
	RDMIG_FAULT_STOP,     /* SIGSTOP this process (the test sends SIGCONT) */
};

/* "go-ack:drop", "verified:stop", ... for the test options of the tools and tests. */
int rdmig_test_fault_parse(const char *s, enum rdmig_handover_step *step,
			   enum rdmig_fault_action *action, struct rdmig_err *err);
const char *rdmig_handover_step_name(enum rdmig_handover_step s);

struct rdmig_mig_opts {
	uint64_t downtime_limit_ns; /* default 300 ms */
	uint64_t max_bandwidth;	    /* bytes/s, 0 = unlimited */
	enum rdmig_throttle_policy throttle;
	unsigned max_throttle; /* permille, default 990 */
	bool dirty_auto;       /* pick the best dirty source */
	enum rdmig_dirty_kind dirty_source;
	bool cold;		      /* stop the guest first, one pass */
	uint64_t timeout_ns;	      /* whole migration, default 10 min */
	uint64_t progress_timeout_ns; /* no new minimum dirty set for this long: abort (60 s) */
	unsigned min_rounds;	      /* do not switch over before this many rounds (bulk = 1) */
	unsigned max_rounds;  /* 0: unlimited; reached: fail (the guest does not converge) */
	const char *dump_ram; /* source: RAM at switchover; dest: RAM as committed */
	uint64_t resume_ns;   /* dest: run the resumed guest this long (default 500 ms) */
	uint64_t max_ram;     /* dest: refuse guests larger than this (default 64 GiB) */
	/*
	 * Hand-over deadlines. commit_timeout_ns: how long either side waits for
	 * the next hand-over message (FINAL once the final fences are in, each
	 * manifest message, VERIFIED, GO or CANCEL, GO_ACK, DONE; default 30 s).
	 * commit_grace_ns: how long a cut hand-over is tried to be settled
	 * (default 60 s).
	 */
	uint64_t commit_timeout_ns;
	uint64_t commit_grace_ns;
#define RDMIG_COMMIT_MIN_NS 1000000000ull    /* both: at least 1 s ... */
#define RDMIG_COMMIT_MAX_NS 3600000000000ull /* ... and at most 1 h */
	/* Settling: the new connection (see rdmig_mig_conn_fn); NULL: none, unsettled. */
	rdmig_mig_conn_fn settle_conn;
	void *settle_ctx;
	rdmig_mig_event_fn on_event;
	void *ev_ctx;
	volatile sig_atomic_t *cancel; /* set non-zero to cancel (e.g. from SIGINT) */
	/* Testing hooks: corrupt one page at the destination before verify. */
	int64_t test_corrupt_page; /* -1: off */
	/* Testing hook: fail the hand-over at this step (RDMIG_STEP_NONE: off). */
	enum rdmig_handover_step test_fault_step;
	enum rdmig_fault_action test_fault_action;
	/* Testing hook: destination, on GO, before the guest starts (ctx: ev_ctx). */
	void (*test_dest_ram)(const struct rdmig_guest *g, void *ctx);
	/*
	 * NUMA placement (numa/plan.h), owned by the caller, NULL: none. Worker /
	 * receiver i pins itself to plan worker i; the destination binds region r
	 * to the plan's region_node[r] before registering it.
	 */
	const struct rdmig_numa_plan *plan;
	/*
	 * Destination: back the received guest RAM with transparent huge pages
	 * (rdmig_guest_cfg.hugepages), set before the RAM is bound and
	 * registered. Local only: nothing on the wire.
	 */
	bool hugepages;
	/*
	 * Destination: on commit, hand the resumed, running guest to the caller
	 * here (who destroys it, or migrates it on) instead of running it for
	 * resume_ns and freeing it. Untouched on failure.
	 */
	struct rdmig_guest **keep_guest;
};

void rdmig_mig_opts_defaults(struct rdmig_mig_opts *o);

/*
 * Check options against each other and this kernel before connecting
 * (engine/options.c): limits, --cold, and, for a source guest `gc` (NULL on
 * the destination), the dirty-page source it would use against huge pages
 * and `backend`. 0, or a negative errno with the message the engine would
 * fail with later.
 */
int rdmig_mig_opts_check(const struct rdmig_mig_opts *o, enum rdmig_backend backend,
			 const struct rdmig_guest_cfg *gc, struct rdmig_err *err);

/*
 * Migrate `guest` (running or not) to the peer of `c`. On success the guest
 * is stopped here (it runs on the destination now) and 0 is returned. On
 * failure or cancel before GO the guest keeps running, its memory
 * untouched, remote access is revoked, and a negative errno with the cause
 * is returned. RDMIG_MIG_EUNKNOWN: decided GO but the destination never
 * confirmed; the guest stays paused here and must not be resumed before an
 * operator knows the destination does not run it. `stats` (may be NULL)
 * receives the final figures either way.
 */
int rdmig_mig_source(struct rdmig_conn *c, struct rdmig_guest *guest,
		     const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
		     struct rdmig_err *err);

/*
 * Receive a migration on `c`: allocate the guest the source describes,
 * expose it, receive, revoke remote access, verify every page, and run the
 * guest once the source says GO. On failure, cancel or an unknown outcome
 * (RDMIG_MIG_EUNKNOWN) the guest never ran here and nothing is kept.
 */
int rdmig_mig_dest(struct rdmig_conn *c, const struct rdmig_mig_opts *opts,
		   struct rdmig_mig_stats *stats, struct rdmig_err *err);

#endif
