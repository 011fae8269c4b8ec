/* SPDX-License-Identifier: MIT */
/*
 * fault_check's parts (tests/faults/fault_check.c has the overview):
 *   fault_check.c  options, the peers (destination, source) and what every
 *                  fault is checked with afterwards (dumps, a retry)
 *   fault_kill.c   kill -9 of either peer in each state; plain and
 *                  expected-to-fail migrations (netem)
 *   fault_soak.c   one guest migrated A -> B -> A ... between two processes
 *   fault_handover.c  the switchover matrix: each fault at each hand-over step
 */
#ifndef RDMIG_FAULT_CHECK_H
#define RDMIG_FAULT_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "rdmig/guest.h"
#include "rdmig/transport.h"
#include "th_peer.h"
#include "th_res.h"

#define FC_VCPUS 2

/* Options, set once by main(). */
struct fc_opts {
	const char *backend;
	const char *host;
	uint64_t guest_mib;
	double bound_s;	  /* detection bound */
	double timeout_s; /* expect-fail: the engine's whole-migration timeout */
	unsigned iterations;
	double commit_s; /* handover: --commit-timeout of both peers */
	double grace_s;	 /* handover: --commit-grace of both peers */
};
extern struct fc_opts fc;

bool fc_is_rdma(void);
struct rdmig_xport_cfg fc_xcfg(uint16_t port);
/* The test's incr guest, running. */
struct rdmig_guest *fc_new_guest(void);
int fc_listen(struct rdmig_listener **l, struct rdmig_err *err);
/* keep: NULL, or where the committed guest goes, still running. */
int fc_dest_receive(struct rdmig_listener *l, const char *dump, struct rdmig_guest **keep,
		    struct rdmig_err *err);
int fc_source_migrate(struct rdmig_guest *g, uint16_t port, const struct rdmig_mig_opts *o,
		      struct rdmig_mig_stats *st, struct rdmig_err *err);

/*
 * Start `fault_check MODE A1 A2` with this run's options (NULL args are
 * left out); with `port`, a listener that sends its port.
 */
bool fc_start_mode(struct th_peer *p, const char *role, const char *mode, const char *a1,
		   const char *a2, uint16_t *port);
/* A destination peer that commits to `dump` (NULL: none); its port in *port. */
bool fc_start_dest(struct th_peer *p, uint16_t *port, const char *dump);
/* A source peer: `fault_check src STATE|none PORT:DUMP`. */
bool fc_start_src(struct th_peer *p, const char *state, const char *port_dump);
/* The peer long-lived for the soak. */
bool fc_start_peer(struct th_peer *p);

/* The fault states, and options that keep the source in one long enough to act there. */
extern const enum rdmig_mig_state fc_states[];
extern const unsigned fc_nstates;
int fc_parse_state(const char *s, enum rdmig_mig_state *out);
void fc_phase_opts(struct rdmig_mig_opts *o, enum rdmig_mig_state state);

/* Both dumps identical and the destination's passes the incr check; removes both. */
bool fc_dumps_ok(const char *what, const char *src, const char *dst);
/* A retry from `g` (running) to a fresh destination: completes, dumps agree. */
void fc_retry_in_process(const char *what, struct rdmig_guest *g);

/* The modes. */
int fc_run_src(const char *statename, const char *port_dump);
void fc_kill_dest_one(enum rdmig_mig_state state, struct th_res *base);
void fc_kill_src_one(enum rdmig_mig_state state);
void fc_plain_migrate(void);
void fc_expect_fail(void);
int fc_run_peer(void);
void fc_soak(void);
/* The hand-over matrix (fault_handover.c) and its peers. */
int fc_handover(const char *sides, const char *steps, const char *actions);
int fc_run_hdst(const char *spec, const char *dump);
int fc_run_hsrc(const char *spec, const char *port_dump);

#endif
