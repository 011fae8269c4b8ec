/* SPDX-License-Identifier: MIT */
/*
 * The migration engine: live pre-copy of a VM's RAM over an rdmig
 * connection, RAM registered in place and written one-sidedly into the
 * destination's RAM (docs/embedding.md shows a VMM using it).
 *
 * Source:      rdmig_migrate_source(conn, vm, opts, ...): the VMM describes
 *              its RAM regions, its dirty log (or none: rdmig tracks the
 *              writes itself), pause/resume/throttle, and its state blob.
 * Destination: rdmig_migrate_dest(conn, dest, opts, ...): the VMM provides
 *              RAM for the source's layout (prepare), takes the state blob
 *              and runs the VM on GO (start), or drops it (discard).
 * rdmig/guest.h wraps both for the synthetic test guest (rdmig_mig_source,
 * rdmig_mig_dest).
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
 * The source's main thread runs the state machine and calls every VM op;
 * one worker thread per data channel writes that channel's share of each
 * round and fences it. opts.cancel may be set from any thread (or a signal
 * handler); it is honoured until the source decides GO, and on the
 * destination until it sends VERIFIED.
 */
#ifndef RDMIG_MIGRATE_H
#define RDMIG_MIGRATE_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

#include "rdmig/err.h"
#include "rdmig/transport.h"

#pragma GCC visibility push(default)

struct rdmig_numa_plan; /* rdmig_mig_opts.plan, made by the rdmig tool's planner */
struct rdmig_guest;	/* rdmig/guest.h: the synthetic guest */
struct rdmig_guest_cfg; /* rdmig/guest.h */

/* The page size rdmig copies, tracks and verifies by. */
#define RDMIG_PAGE_SIZE 4096u
/* At most this many RAM regions per VM. */
#define RDMIG_MIG_MAX_REGIONS 8
/* The VM's config blob (SETUP) and state blob (FINAL and STATE) are at most this long. */
#define RDMIG_VM_CONFIG_MAX 4096u
#define RDMIG_VM_STATE_MAX  (16u << 20)

/* Where the source finds the pages written between two rounds. */
enum rdmig_dirty_kind {
	RDMIG_DIRTY_NONE = 0,	/* nothing: only a cold (stop-and-copy) migration */
	RDMIG_DIRTY_VMM_LOG,	/* the VMM's own log (rdmig_vm_ops.dirty_log) */
	RDMIG_DIRTY_SOFT_DIRTY, /* clear_refs + /proc/self/pagemap bit 55 */
	RDMIG_DIRTY_UFFD_WP,	/* userfaultfd async write-protect + PAGEMAP_SCAN */
};
const char *rdmig_dirty_kind_name(enum rdmig_dirty_kind kind);
/* Parse "auto|uffd-wp|soft-dirty|vmm-bitmap|none"; auto -> *is_auto. */
int rdmig_dirty_parse(const char *s, enum rdmig_dirty_kind *out, bool *is_auto,
		      struct rdmig_err *err);
/*
 * Whether this kernel offers rdmig's own trackers: a full round trip of
 * userfaultfd async write-protect with PAGEMAP_SCAN, and of soft-dirty
 * (which clears every soft-dirty bit of the process: never while a
 * soft-dirty migration runs). 0 when it works, else why not.
 */
int rdmig_probe_uffd_wp_async(struct rdmig_err *err);
int rdmig_probe_soft_dirty(struct rdmig_err *err);
/* The source the engine picks from those results and whether the VMM logs its own writes. */
enum rdmig_dirty_kind rdmig_dirty_pick(int uffd_wp_rc, int soft_dirty_rc, bool have_vmm_log);

enum rdmig_mig_state {
	RDMIG_MIG_SETUP = 0,
	RDMIG_MIG_BULK,
	RDMIG_MIG_DIRTY,
	RDMIG_MIG_SWITCHOVER,
	RDMIG_MIG_FINAL_COPY,
	RDMIG_MIG_VERIFY,
	RDMIG_MIG_PREPARED, /* destination: VERIFIED sent, waiting for GO or CANCEL */
	RDMIG_MIG_COMMIT,   /* source: decided GO; destination: the guest runs */
	RDMIG_MIG_POSTCOPY, /* the guest runs at the destination, its last pages follow */
	RDMIG_MIG_SETTLING, /* the hand-over was cut: settling over a new connection */
	/* Final states from here on. */
	RDMIG_MIG_COMPLETED,
	RDMIG_MIG_FAILED,
	RDMIG_MIG_CANCELLED,
	RDMIG_MIG_UNKNOWN, /* not settled within the grace: see rdmig_mig_unknown_advice() */
};
const char *rdmig_mig_state_name(enum rdmig_mig_state s);

/*
 * Post-copy (docs/reliability.md, "Post-copy"): after some pre-copy rounds
 * the source pauses the guest, sends its state and the list of pages the
 * destination does not hold current (with their checksums), and the guest
 * resumes at the destination at once. The destination then fetches every
 * such page exactly once: the ones the guest touches first, on demand
 * (rdma: an RDMA READ of the source's registered RAM; tcp: a request and
 * its reply on a data channel), the rest in the background. From the
 * switch until the last page has arrived the guest exists in two halves:
 * if the source dies, it is lost. A broken link is recovered when the
 * source reconnects within postcopy_recover_ns.
 */
enum rdmig_postcopy_mode {
	RDMIG_POSTCOPY_OFF = 0,
	RDMIG_POSTCOPY_ROUNDS, /* after postcopy_rounds rounds (the bulk round is 1) */
	RDMIG_POSTCOPY_TIME,   /* once postcopy_after_ns of pre-copy have passed */
	/*
	 * when the convergence model asks for a throttle above
	 * RDMIG_POSTCOPY_AUTO_THROTTLE (or above max_throttle): switch instead
	 */
	RDMIG_POSTCOPY_AUTO,
};
#define RDMIG_POSTCOPY_AUTO_THROTTLE 200 /* permille */
/*
 * Parse --postcopy-after: "auto", a round count N (>= 1) or a duration
 * (a number with a unit: 500ms, 2s).
 */
int rdmig_postcopy_parse(const char *s, enum rdmig_postcopy_mode *mode, unsigned *rounds,
			 uint64_t *after_ns, struct rdmig_err *err);

/*
 * What rdmig_migrate_source() and rdmig_migrate_dest() return when a
 * post-copy broke and was not recovered within postcopy_recover_ns. Source:
 * the guest is paused with all of its RAM and state as of the switch; the
 * VMM may resume it (vm.ops.resume) once it knows the destination does not
 * run it (the destination process is gone). Destination: the guest that ran
 * here lacked pages; it was stopped and discard() was called.
 */
#define RDMIG_MIG_EPCLOST (-ENOLINK)

enum rdmig_throttle_policy {
	RDMIG_THROTTLE_ADAPTIVE = 0,
	RDMIG_THROTTLE_STEP,
	RDMIG_THROTTLE_OFF,
};
const char *rdmig_throttle_name(enum rdmig_throttle_policy p);
int rdmig_throttle_parse(const char *s, enum rdmig_throttle_policy *out, struct rdmig_err *err);

/*
 * End-to-end verification (docs/protocol.md, "Verification"). rounds: the
 * destination checks each round's pages in the background as the round's
 * fence lands, and only the final round's pages in the downtime; full: it
 * checks every page after remote access is revoked; off: nothing is checked.
 */
enum rdmig_verify_mode {
	RDMIG_VERIFY_ROUNDS = 0,
	RDMIG_VERIFY_FULL,
	RDMIG_VERIFY_OFF,
};
const char *rdmig_verify_name(enum rdmig_verify_mode v);
int rdmig_verify_parse(const char *s, enum rdmig_verify_mode *out, struct rdmig_err *err);

/*
 * Where the downtime went (milliseconds). The source measures its own
 * steps and the commit round trip; the destination's steps travel in
 * VERIFIED. Setup costs are paid before the guest is paused.
 */
struct rdmig_mig_breakdown {
	double harvest_ms;     /* source: final harvest with the guest paused */
	double final_copy_ms;  /* source: posting the final round and its fences */
	double handover_ms;    /* source: FINAL and the last manifest sent */
	double fences_ms;      /* destination: waiting for every final fence */
	double revoke_ms;      /* destination: revoking remote access */
	double verify_ms;      /* destination: checks still open at switchover */
	double verified_ms;    /* source: manifest sent -> VERIFIED here (the three above + RTT) */
	double commit_ms;      /* source: VERIFIED -> GO_ACK (GO, the guest starts, GO_ACK) */
	uint64_t final_pages;  /* pages of the final round */
	uint64_t verify_pages; /* pages the destination checked in the downtime */
};

/* What preparing the migration cost, before the guest was paused. */
struct rdmig_mig_setup_cost {
	double prepare_ms;	 /* destination: faulting guest RAM in (parallel) */
	double register_ms;	 /* either side: registering guest RAM with the transport */
	double zero_scan_ms;	 /* source: finding the zero pages (parallel, in the workers) */
	double bulk_ms;		 /* source: the bulk round, first write to last fence */
	uint64_t bulk_bytes;	 /* source: bytes the bulk round wrote */
	uint64_t overhead_bytes; /* memory rdmig holds per page of guest (bitmaps, checksums) */
	uint64_t overhead_fixed_bytes; /* and whatever the guest's size (run lists, buffers) */
};

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
	enum rdmig_verify_mode verify;
	uint64_t verified_background; /* destination: page copies checked before switchover */
	struct rdmig_mig_breakdown down;
	struct rdmig_mig_setup_cost setup;
	/* Post-copy: all zero unless the migration switched to it. */
	bool postcopy;
	uint64_t pc_pages;	/* pages the destination lacked at the switch */
	uint64_t pc_demand;	/* of them, fetched because the guest touched them */
	uint64_t pc_bytes;	/* page bytes fetched after the switch (refetches included) */
	double pc_ms;		/* the switch (GO) to the last page placed */
	double pc_fetch_p50_us; /* on-demand fetches: the guest's fault to its page placed */
	double pc_fetch_p99_us;
	double pc_fetch_max_us;
	unsigned pc_recoveries; /* broken links recovered during post-copy */
	/* Destination, synthetic guest (rdmig_mig_dest): work it did while its pages came. */
	uint64_t pc_guest_work;
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
	/* rdmig_mig_dest (synthetic guest): run the resumed guest this long (default 500 ms) */
	uint64_t resume_ns;
	uint64_t max_ram; /* dest: refuse guests larger than this (default 64 GiB) */
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
	/* Source: how the destination checks what it received (carried in SETUP). */
	enum rdmig_verify_mode verify;
	/*
	 * Testing hook: the destination corrupts page N of region 0 each time a
	 * fence lands on the channel that carries it, as a transport that
	 * damaged every copy would.
	 */
	int64_t test_corrupt_page; /* -1: off */
	/* Testing hook: fail the hand-over at this step (RDMIG_STEP_NONE: off). */
	enum rdmig_handover_step test_fault_step;
	enum rdmig_fault_action test_fault_action;
	/* rdmig_mig_dest's testing hook: on GO, before the guest starts (ctx: ev_ctx). */
	void (*test_dest_ram)(const struct rdmig_guest *g, void *ctx);
	/*
	 * NUMA placement (numa/include/plan.h), owned by the caller, NULL: none. Worker /
	 * receiver i pins itself to plan worker i; the destination binds region r
	 * to the plan's region_node[r] before registering it.
	 */
	const struct rdmig_numa_plan *plan;
	/*
	 * rdmig_mig_dest (synthetic guest): back the received guest RAM with
	 * transparent huge pages (rdmig_guest_cfg.hugepages), set before the RAM
	 * is bound and registered. Local only: nothing on the wire.
	 */
	bool hugepages;
	/*
	 * rdmig_mig_dest (synthetic guest): on commit, hand the resumed, running
	 * guest to the caller here (who destroys it, or migrates it on) instead
	 * of running it for resume_ns and freeing it. Untouched on failure.
	 */
	struct rdmig_guest **keep_guest;
	/*
	 * Post-copy (source; the destination follows what SETUP says). The
	 * destination needs userfaultfd; a source that asks for post-copy is
	 * refused at SETUP by one that cannot.
	 */
	enum rdmig_postcopy_mode postcopy;
	unsigned postcopy_rounds;
	uint64_t postcopy_after_ns;
	/*
	 * Both sides: how long a post-copy whose connection broke waits for the
	 * source to connect again (settle_conn on both sides; default 60 s, 0:
	 * no recovery, the guest is lost at once).
	 */
	uint64_t postcopy_recover_ns;
	/* Testing hook (destination): sleep this long after each background fetch. */
	unsigned test_pc_pace_us;
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

/* ---- the VM, as the VMM hands it to rdmig ------------------------------ */

/*
 * One region of guest RAM: the VMM's own mapping, which rdmig registers in
 * place (zero-copy) and never unmaps. The region array is read once, at
 * the start of a migration; the memory must stay mapped until it returns.
 */
struct rdmig_vm_region {
	const char *name; /* shown in logs; NULL: "ramN" */
	void *addr;	  /* page-aligned */
	uint64_t len;	  /* a positive multiple of RDMIG_PAGE_SIZE */
	/*
	 * Source: the NUMA node holding it, -1: rdmig asks the kernel. On the
	 * destination, prepare() receives the source's node per region.
	 */
	int node;
	/* Backed by transparent huge pages: soft-dirty tracking is refused for it. */
	bool hugepages;
};

/*
 * What the source's main thread calls. Each op that returns int returns 0
 * or a negative errno and fills err; rdmig then fails the migration (before
 * GO: the VM resumes and keeps running at the source).
 */
struct rdmig_vm_ops {
	/*
	 * Stop the guest: after it returns, nothing writes guest RAM until
	 * resume. Called at switchover, around soft-dirty harvests and for a
	 * cold migration; a no-op on a guest that does not run.
	 */
	int (*pause)(void *ctx, struct rdmig_err *err);
	/* Let the guest run again after pause. Must not fail. */
	void (*resume)(void *ctx);
	/*
	 * Optional: slow the guest's writers to (1000 - permille) / 1000 of
	 * their speed; 0 lifts it. NULL: rdmig cannot throttle this VM.
	 */
	void (*throttle)(void *ctx, unsigned permille);
	/*
	 * Optional: the VMM's dirty log (as KVM_GET_DIRTY_LOG gives it). OR
	 * into `bitmap` (bit i = page i of region `region`, RDMIG_PAGE_SIZE
	 * granule) every page written since the previous call, and re-arm the
	 * log atomically per page, so a later write is reported later. The
	 * first call reports writes since the migration started. NULL: rdmig
	 * tracks the writes itself (userfaultfd write-protect or soft-dirty,
	 * opts.dirty_source), which sees only writes by this process's CPUs.
	 */
	int (*dirty_log)(void *ctx, unsigned region, uint64_t *bitmap, struct rdmig_err *err);
	/*
	 * Optional: after pause at switchover, write the device/vCPU state to
	 * buf (cap = RDMIG_VM_STATE_MAX bytes), its length to *len. It travels
	 * in the downtime (FINAL, then STATE messages of 64 KiB) and reaches
	 * the destination's start(). NULL: no state.
	 */
	int (*save_state)(void *ctx, void *buf, size_t cap, size_t *len, struct rdmig_err *err);
};

struct rdmig_vm {
	struct rdmig_vm_region regions[RDMIG_MIG_MAX_REGIONS];
	unsigned nregions; /* 1 .. RDMIG_MIG_MAX_REGIONS */
	/*
	 * What the destination's VMM needs to build a compatible VM (machine
	 * type, vCPU count, ...), opaque to rdmig, at most RDMIG_VM_CONFIG_MAX
	 * bytes; carried in SETUP and handed to the destination's prepare().
	 */
	const void *config;
	size_t config_len;
	/* The guest runs now (false: rdmig may copy it without dirty tracking). */
	bool running;
	const struct rdmig_vm_ops *ops;
	void *ctx; /* passed to every op */
};

/* The source's RAM layout, as the destination's prepare() receives it. */
struct rdmig_vm_layout {
	unsigned nregions;
	uint64_t len[RDMIG_MIG_MAX_REGIONS];
	int node[RDMIG_MIG_MAX_REGIONS]; /* the source's node, -1 unknown */
};

/* What the destination's thread calls; `ctx` is rdmig_vm_dest.ctx. */
struct rdmig_vm_dest_ops {
	/*
	 * Check `config` (config_len bytes, the source's rdmig_vm.config) and
	 * provide RAM for `layout`: fill regions[r] (r < layout->nregions) with
	 * zeroed, page-aligned mappings of exactly layout->len[r] bytes that
	 * rdmig registers in place. Refusing (a negative errno, with err) fails
	 * the migration, and the source hears why.
	 */
	int (*prepare)(void *ctx, const void *config, size_t config_len,
		       const struct rdmig_vm_layout *layout, struct rdmig_vm_region *regions,
		       struct rdmig_err *err);
	/*
	 * GO came: the RAM is complete and verified. Load `state` (the source's
	 * save_state output) and run the VM. Irrevocable: the source never
	 * resumes its copy, so an error here is only logged.
	 */
	int (*start)(void *ctx, const void *state, size_t state_len, struct rdmig_err *err);
	/* The migration failed or was cancelled after prepare: the VM never ran; drop it. */
	void (*discard)(void *ctx);
};

struct rdmig_vm_dest {
	const struct rdmig_vm_dest_ops *ops;
	void *ctx;
};

/*
 * Migrate `vm` (running or not) to the peer of `c`. On success the guest
 * is paused here (it runs on the destination now; the VMM tears its copy
 * down) and 0 is returned. On failure or cancel before GO the guest is
 * resumed if rdmig paused it, its memory untouched, remote access is
 * revoked, and a negative errno with the cause is returned.
 * RDMIG_MIG_EUNKNOWN: decided GO but the destination never confirmed; the
 * guest stays paused here and must not be resumed before an operator knows
 * the destination does not run it. `stats` (may be NULL) receives the
 * final figures either way.
 */
int rdmig_migrate_source(struct rdmig_conn *c, const struct rdmig_vm *vm,
			 const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
			 struct rdmig_err *err);

/*
 * Receive a migration on `c` into RAM `dest` provides: prepare, expose,
 * receive, revoke remote access, verify every page, and start the VM once
 * the source says GO; 0 then, and the VM runs (the VMM's from here on). On
 * failure, cancel or an unknown outcome (RDMIG_MIG_EUNKNOWN) the VM never
 * ran here and discard() was called if prepare() had succeeded.
 */
int rdmig_migrate_dest(struct rdmig_conn *c, const struct rdmig_vm_dest *dest,
		       const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
		       struct rdmig_err *err);

#pragma GCC visibility pop

#endif
