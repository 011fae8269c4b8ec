/* SPDX-License-Identifier: MIT */
/*
 * Live pre-copy migration of a guest over an rdmig transport connection.
 *
 * Source:      rdmig_mig_source(conn, guest, opts, ...)
 * Destination: rdmig_mig_dest(conn, opts, ...)
 *
 * States (both sides report every change as an event):
 *   setup -> bulk -> dirty rounds -> switchover -> final copy -> verify ->
 *   commit -> completed; any failure or cancel -> failed / cancelled, with
 *   the source guest running untouched and the destination discarding.
 *
 * The source's main thread runs the state machine; one worker thread per
 * data channel writes that channel's share of each round and fences it.
 * rdmig_mig_cancel() may be called from any thread (or a signal handler
 * through a flag the caller polls in its event callback).
 */
#ifndef RDMIG_MIGRATE_H
#define RDMIG_MIGRATE_H

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
	RDMIG_MIG_COMMIT,
	RDMIG_MIG_COMPLETED,
	RDMIG_MIG_FAILED,
	RDMIG_MIG_CANCELLED,
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
};

struct rdmig_mig_event {
	enum rdmig_event_type type;
	const struct rdmig_mig_stats *stats;
};

typedef void (*rdmig_mig_event_fn)(const struct rdmig_mig_event *ev, void *ctx);

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
	rdmig_mig_event_fn on_event;
	void *ev_ctx;
	volatile sig_atomic_t *cancel; /* set non-zero to cancel (e.g. from SIGINT) */
	/* Testing hooks: corrupt one page at the destination before verify. */
	int64_t test_corrupt_page; /* -1: off */
	/* Testing hook: destination, after commit, before the RAM is freed (ctx: ev_ctx). */
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
 * failure or cancel the guest keeps running, its memory untouched, remote
 * access is revoked, and a negative errno with the cause is returned.
 * `stats` (may be NULL) receives the final figures either way.
 */
int rdmig_mig_source(struct rdmig_conn *c, struct rdmig_guest *guest,
		     const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
		     struct rdmig_err *err);

/*
 * Receive a migration on `c`: allocate the guest the source describes,
 * expose it, receive, verify every page, commit, resume the guest. On
 * failure nothing is kept and remote access is revoked.
 */
int rdmig_mig_dest(struct rdmig_conn *c, const struct rdmig_mig_opts *opts,
		   struct rdmig_mig_stats *stats, struct rdmig_err *err);

#endif
