/* SPDX-License-Identifier: MIT */
/*
 * QEMU relay internals, shared by its files and nothing else (relay.h is
 * the module's public face):
 *
 *   relay_msg.c    control messages: JSON framing, HELLO, replies
 *   relay_pump.c   stream sets, and pipes: one unix socket <-> one stream of
 *                  a set, two threads
 *   relay_src.c    source relay (QEMU's `migrate unix:`)
 *   relay_dst.c    destination relay and its QMP proxy
 *   relay_ctrl.c   control client (the orchestrator's end)
 */
#ifndef RDMIG_QEMU_RELAY_INT_H
#define RDMIG_QEMU_RELAY_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "relay.h"

/* A stream's name in logs: "src stream INDEX (set ID, channel CHAN)". */
#define RELAY_NAME_MAX 64

/* A peer that has connected must say what it is (HELLO) within this. */
#define RELAY_HELLO_TIMEOUT_MS 15000

/*
 * Control sessions (relay_dst.c). The client waits RELAY_HELLO_TIMEOUT_MS
 * for the answer to its HELLO, which comes once the session holds the QMP
 * socket: so the wait for it (RELAY_LOCK_WAIT_MS) stays below that, and
 * covers a holder finishing one operation (RELAY_OP_MS) and then being idle
 * long enough to count as stale (RELAY_CTRL_STALE_MS). The orchestrator
 * sends a request at least once a second while it drives a migration, so a
 * session silent for RELAY_CTRL_STALE_MS is one nobody drives any more.
 */
#define RELAY_OP_MS	    8000
#define RELAY_CTRL_STALE_MS 3000
#define RELAY_LOCK_WAIT_MS  12000

/* ---- control messages (relay_msg.c) --------------------------------------- */

enum relay_kind {
	RELAY_SET,     /* a stream set: carries QEMU's migration connections */
	RELAY_CONTROL, /* the orchestrator driving the destination QEMU */
};

json_t *relay_reply_ok(void);
json_t *relay_reply_err(const char *msg);

/* Send `reply` (reference stolen; NULL is out of memory) as a REPLY. */
int relay_send_reply(struct rdmig_conn *c, json_t *reply, struct rdmig_err *err);

/* Turn a reply into 0, or -EREMOTEIO with the peer's message. */
int relay_check_reply(json_t *reply, struct rdmig_err *err);

/*
 * Client side of the handshake: announce a connection of `kind` (a set
 * announces its channel count, which is the connection's) and wait for the
 * answer.
 */
int relay_hello(struct rdmig_conn *c, enum relay_kind kind, struct rdmig_err *err);

/*
 * Server side: receive a HELLO and validate it. On success *kind is set.
 * *refused tells a HELLO of another version or kind, or a set whose
 * channel count is not its connection's (whose message is meant for the
 * peer), from a failed connection.
 */
int relay_hello_recv(struct rdmig_conn *c, enum relay_kind *kind, bool *refused,
		     struct rdmig_err *err);

/*
 * Source: announce stream `index` on data channel `chan` of a set and wait
 * for the destination's answer (its QEMU connection is open). A refusal is
 * -EREMOTEIO with the destination's message; anything else means the set's
 * control channel is of no further use.
 */
int relay_stream_open(struct rdmig_conn *c, unsigned chan, unsigned index, struct rdmig_err *err);

/*
 * Destination: the next STREAM announcement, validated against the
 * connection's channel count. -EPROTO: the peer broke the protocol; other
 * errors are the connection's own (-ECONNRESET: the peer closed it,
 * -ETIMEDOUT: nothing within timeout_ms, the set still usable).
 */
int relay_stream_recv(struct rdmig_conn *c, unsigned *chan, unsigned *index, int timeout_ms,
		      struct rdmig_err *err);

/* ---- stream sets and pipes (relay_pump.c) --------------------------------- */

struct relay_pipe;

/*
 * The pipes of one relay and what they have done. A pipe's two threads are
 * detached; the last one to finish unlinks it from `pipes` under `lock`,
 * then closes its socket and drops its reference to its set, so whoever
 * aborts pipes (relay_owner_stop, a failing set) does so under `lock` and
 * only touches live ones.
 */
struct relay_owner {
	pthread_mutex_t lock;
	pthread_cond_t cond;	  /* CLOCK_MONOTONIC; signalled when a pipe has gone */
	struct relay_pipe *pipes; /* live pipes, under lock */
	unsigned live;
	unsigned opened;
	unsigned sets; /* stream sets made */
	bool stopping;
	_Atomic uint64_t up, down; /* bytes unix->rdmig, rdmig->unix */
	struct rdmig_err_slot first;
};

void relay_owner_init(struct relay_owner *o);
void relay_owner_fini(struct relay_owner *o);

/* Record the relay's first error (logged once). */
void relay_owner_error(struct relay_owner *o, const struct rdmig_err *e);

/*
 * A stream set: one rdmig connection whose data channels each carry one of
 * QEMU's connections. Its references: the one who hands its channels out
 * (the source's accept thread, the destination's set session) and every
 * pipe on it; the last one destroys the connection. One failing stream
 * fails the set: the connection is aborted and every unix socket of the
 * set shut down both ways.
 */
struct relay_set {
	struct relay_owner *owner;
	struct rdmig_conn *conn;
	unsigned id;	/* 1, 2, ... in the order the owner made them */
	unsigned nchan; /* the connection's data channels */
	unsigned used;	/* channels handed out, by the holder of the first reference only */
	atomic_uint refs;
	atomic_uint live; /* pipes on it still running */
	atomic_int failed;
};

/* A set over `conn` (taken: destroyed on failure too), one reference held. */
int relay_set_new(struct relay_owner *o, struct rdmig_conn *conn, struct relay_set **out,
		  struct rdmig_err *err);
void relay_set_put(struct relay_set *s);

/* Fail the set (the first cause is the owner's error unless it is stopping). */
void relay_set_fail(struct relay_set *s, const struct rdmig_err *e);

/*
 * Join data channel `chan` of set `s` and the unix socket `fd` with two
 * threads. Takes a reference to `s` while it runs, and `fd`, which is closed
 * on failure too.
 */
int relay_pipe_start(struct relay_set *s, unsigned chan, int fd, const char *name,
		     struct rdmig_err *err);

/*
 * Wait until no pipe is live, `timeout_ms` has passed (negative: no limit)
 * or *stop (may be NULL) is set; *stop is looked at at least once a second.
 */
void relay_owner_drain(struct relay_owner *o, int timeout_ms, volatile sig_atomic_t *stop);

/* Abort every live pipe and wait until all have gone. */
void relay_owner_stop(struct relay_owner *o);

/* pthread_cond_timedwait() for `ms` on a CLOCK_MONOTONIC condition variable. */
void relay_cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *lock, int ms);

#endif
