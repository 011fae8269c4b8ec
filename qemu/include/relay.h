/* SPDX-License-Identifier: MIT */
/*
 * QEMU migration relay: carries QEMU's own migration streams over rdmig.
 *
 * Source side: a unix socket that QEMU's `migrate unix:PATH` connects to.
 * The connections QEMU opens for one migration (the main channel with its
 * return path, each multifd channel, the post-copy preempt channel) share
 * one rdmig connection, a stream set: it is connected and authenticated
 * once, and each QEMU connection takes the next free data channel of it as
 * a full-duplex byte stream, so multifd channels still land on separate
 * queue pairs (rdma) or sockets (tcp). The set has as many channels as the
 * source relay was told QEMU opens (cfg.streams; `rdmig qemu migrate` knows
 * it); once every channel is taken, or the set broke, or all its streams
 * have ended, the next QEMU connection opens a new set, so a count that is
 * too small (or unknown: 1) costs handshakes, never a migration.
 *
 * Destination side: an rdmig listener taking sets of up to
 * RDMIG_MAX_CHANNELS channels. Each stream announced on a set is joined to
 * a fresh connection to the destination QEMU's incoming unix socket; a control
 * connection (from `rdmig qemu migrate`) drives the destination QEMU through
 * the relay's own QMP socket, so no QMP socket crosses hosts.
 *
 * Both sides authenticate with the pre-shared key of xport.auth before
 * anything else: the listener only ever hands out connections whose peer
 * proved the key, so nothing reaches the destination QEMU's incoming socket
 * and no control operation runs for a peer that did not (docs/security.md).
 *
 * Connections are told apart by a HELLO control message (JSON): a stream
 * set names its channel count, a control session is driven by requests.
 * On a set, each stream is announced by a STREAM message naming its data
 * channel and its index in the order QEMU connected. Streams are opened
 * strictly one after the other: the source relay waits for the
 * destination's answer (its QEMU connection is open) before taking the
 * next one, because QEMU before 8.0 takes the first incoming connection as
 * the main channel. docs/protocol.md documents the messages.
 *
 * Each stream is moved by two threads (unix -> rdmig, rdmig -> unix), at
 * most RDMIG_RELAY_BUF bytes a step, through the transport's descriptor
 * calls (no buffer of the relay's). End of stream is passed on as a
 * half-close; an error in either direction of any stream aborts the set's
 * rdmig connection and shuts every unix socket of the set down both ways,
 * so both QEMUs see it (post-copy recovery re-opens all of them anyway).
 */
#ifndef RDMIG_QEMU_RELAY_H
#define RDMIG_QEMU_RELAY_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "rdmig/err.h"
#include "rdmig/transport.h"

/* Application control message types on relay connections (JSON payloads). */
/* {"kind": "set", "version": 2, "channels": N} or {"kind": "control", "version": 2} */
#define RDMIG_RELAY_MSG_HELLO  0x300
#define RDMIG_RELAY_MSG_REQ    0x301 /* control request {"op": ...} */
#define RDMIG_RELAY_MSG_REPLY  0x302 /* {"ok": true, ...} or {"ok": false, "error": "..."} */
#define RDMIG_RELAY_MSG_STREAM 0x303 /* on a set: {"channel": C, "index": I} */

/* 2: stream sets (version 1 had one rdmig connection per stream). */
#define RDMIG_RELAY_VERSION 2

/* Most bytes one direction of one stream moves in one step. */
#define RDMIG_RELAY_BUF (256u * 1024)

/* ---- source side ---------------------------------------------------------- */

struct rdmig_relay_src;

/* Who may connect to the source relay's unix socket (it takes migration streams). */
#define RDMIG_RELAY_SOCK_MODE_DEFAULT 0600
#define RDMIG_RELAY_SOCK_MODE_ALLOWED 0770 /* never "others": any local user could write */

struct rdmig_relay_src_cfg {
	struct rdmig_xport_cfg xport; /* destination relay: host, port, backend, key */
	const char *path;	      /* unix socket to serve */
	unsigned mode;		      /* permission bits, 0: RDMIG_RELAY_SOCK_MODE_DEFAULT */
	bool set_group;		      /* give the socket group `gid` (else the creator's) */
	unsigned gid;
	/*
	 * Data channels of a stream set: the connections QEMU opens for one
	 * migration (multifd channels + 1, or 1; +1 for postcopy-preempt),
	 * 1..RDMIG_MAX_CHANNELS; 0: 1, one set per QEMU connection.
	 */
	unsigned streams;
};

/*
 * Bind and listen on the unix socket cfg->path (an existing socket file is
 * replaced, any other file is refused), with exactly cfg->mode and group,
 * and serve it from a thread: each accepted connection is carried to the
 * destination relay described by cfg->xport, on a data channel of the
 * current stream set (cfg->xport.channels is replaced by cfg->streams). The
 * socket never exists with wider permissions than asked for. cfg->xport's
 * auth context and TLS key must outlive the relay.
 */
int rdmig_relay_src_start(const struct rdmig_relay_src_cfg *cfg, struct rdmig_relay_src **out,
			  struct rdmig_err *err);

/* -EINVAL with a message when `mode` is not what a relay socket may have. */
int rdmig_relay_sock_mode_check(unsigned mode, struct rdmig_err *err);

/*
 * Stop accepting and remove the socket; give streams up to `grace_ms` to end
 * on their own, then abort the rest and wait for them. NULL is a no-op.
 */
void rdmig_relay_src_stop(struct rdmig_relay_src *r, int grace_ms);

/* First error any stream of this relay met; false if none. */
bool rdmig_relay_src_error(struct rdmig_relay_src *r, struct rdmig_err *out);

/* Streams opened so far (QEMU connections carried). */
unsigned rdmig_relay_src_streams(struct rdmig_relay_src *r);

/* Stream sets opened so far (rdmig connections, each one handshake). */
unsigned rdmig_relay_src_sets(struct rdmig_relay_src *r);

/* Bytes moved so far: source QEMU -> destination and back. */
void rdmig_relay_src_bytes(struct rdmig_relay_src *r, uint64_t *up, uint64_t *down);

/* ---- destination side ----------------------------------------------------- */

/* A control session that sends no request for this long is dropped. */
#define RDMIG_RELAY_CTRL_IDLE_MS 30000

struct rdmig_relay_dst_cfg {
	struct rdmig_xport_cfg xport; /* listen address, port, backend, key */
	const char *incoming_path;    /* destination QEMU's incoming unix socket */
	const char *qmp_path;	      /* destination QEMU's QMP socket, NULL: no control */
	bool once;		      /* exit after the first control session ends */
	int ctrl_idle_ms;	      /* 0: RDMIG_RELAY_CTRL_IDLE_MS */
};

/*
 * Listen and serve until *stop becomes non-zero (checked a few times a
 * second) or, with cfg->once, until the first control session has ended
 * (the peer closed it; a session dropped as idle or stale does not count).
 * Connections that fail authentication, a HELLO or a request are logged
 * and the relay goes on. `on_listening` (may be NULL) is called with the
 * bound port once listening.
 *
 * Control sessions: one at a time holds the destination QEMU's QMP socket.
 * A newcomer waits for it at most RELAY_LOCK_WAIT_MS (relay_int.h); a holder
 * idle for RELAY_CTRL_STALE_MS by then is dropped for it, one busy past
 * that makes the newcomer fail with "busy". Every operation has a deadline.
 */
int rdmig_relay_dst_run(const struct rdmig_relay_dst_cfg *cfg, volatile sig_atomic_t *stop,
			void (*on_listening)(uint16_t port), struct rdmig_err *err);

/* ---- control client (the orchestrator) ------------------------------------ */

/* Connect to a destination relay and announce a control session. */
int rdmig_relay_ctrl_open(const struct rdmig_xport_cfg *xcfg, struct rdmig_conn **out,
			  struct rdmig_err *err);

/*
 * Send request `req` (reference stolen) and wait for the reply. A reply with
 * "ok": false fails with -EREMOTEIO and its "error" as the message. On
 * success *reply (if not NULL) receives a new reference to the whole reply.
 */
int rdmig_relay_ctrl_call(struct rdmig_conn *c, json_t *req, json_t **reply, int timeout_ms,
			  struct rdmig_err *err);

/* JSON helpers shared by both ends: one message of `type` as JSON. */
int rdmig_relay_send_json(struct rdmig_conn *c, uint16_t type, json_t *msg, struct rdmig_err *err);
int rdmig_relay_recv_json(struct rdmig_conn *c, uint16_t want, json_t **out, int timeout_ms,
			  struct rdmig_err *err);

#endif
