/* SPDX-License-Identifier: MIT */
/*
 * A small QMP (QEMU Machine Protocol) client over a unix socket.
 *
 * rdmig_qmp_open() connects, checks the greeting and leaves capabilities
 * negotiation mode; rdmig_qmp_cmd() then runs one command at a time and
 * waits for the reply carrying its "id". Asynchronous events that arrive in
 * between are queued (bounded, oldest dropped first) for
 * rdmig_qmp_next_event().
 *
 * Timeouts are in milliseconds and bound the whole call; a negative value
 * waits forever, 0 only takes what is already readable.
 *
 * Thread-compatibility: a handle belongs to one thread at a time; distinct
 * handles are independent. QEMU serves one client per QMP socket, so a
 * second rdmig_qmp_open() on a socket in use waits for a greeting that
 * never comes and fails with -ETIMEDOUT.
 */
#ifndef RDMIG_QMP_H
#define RDMIG_QMP_H

#include <stddef.h>

#include <jansson.h>

#include "rdmig/err.h"

/* Upper bound of one line (one JSON message) received from QEMU. */
#define RDMIG_QMP_MAX_LINE (16u << 20)

/* Events kept for rdmig_qmp_next_event(); older ones are dropped beyond it. */
#define RDMIG_QMP_MAX_EVENTS 1024

struct rdmig_qmp;

/*
 * Connect to the QMP socket at `path`, read the greeting, record QEMU's
 * version and negotiate capabilities (none are enabled).
 * A peer that is not QMP fails with "PATH is not a QMP socket: ...":
 * -EPROTO for a wrong greeting, -ETIMEDOUT for silence, -ECONNRESET when it
 * hangs up. Connection errors are returned as is (-ENOENT, -ECONNREFUSED,
 * ...), so that a caller waiting for QEMU to start can retry on those.
 */
int rdmig_qmp_open(const char *path, int timeout_ms, struct rdmig_qmp **out, struct rdmig_err *err);

/* Close the connection and free queued events; NULL is a no-op. */
void rdmig_qmp_close(struct rdmig_qmp *qmp);

/*
 * Execute `execute` with `args` (a JSON object whose reference is stolen,
 * or NULL for none) and wait for its reply.
 * On success *ret (if ret is not NULL) receives a new reference to the
 * "return" member. Errors:
 *   -EREMOTEIO  QEMU answered with an error: "QMP <execute> failed: <class>: <desc>"
 *   -EPROTO     a line that is not JSON or not a QMP message: "malformed QMP reply ..."
 *   -ETIMEDOUT  no reply in time (a late reply is recognised by its id and dropped)
 *   -ECONNRESET QEMU closed the connection
 *   -EMSGSIZE   a line longer than RDMIG_QMP_MAX_LINE
 * After -ECONNRESET, -EMSGSIZE or an I/O error the handle is broken and
 * every later call fails with -EPIPE.
 * QEMU prints uint64 values above INT64_MAX (e.g. max-bandwidth after it was
 * set to -1), which jansson's integers cannot hold: a message containing one
 * is parsed with all its integers as reals, so read numbers of replies with
 * json_number_value() where that can happen.
 */
int rdmig_qmp_cmd(struct rdmig_qmp *qmp, const char *execute, json_t *args, json_t **ret,
		  int timeout_ms, struct rdmig_err *err);

/*
 * Take the oldest queued event, reading from the socket if none is queued.
 * Returns 0 with *ev set to a new reference to the whole event object
 * ({"event": NAME, "data": ..., "timestamp": ...}), or 0 with *ev = NULL if
 * no event arrived within timeout_ms (a timeout is not an error here, so
 * that polling does not fill `err`); negative errno on failure.
 */
int rdmig_qmp_next_event(struct rdmig_qmp *qmp, int timeout_ms, json_t **ev, struct rdmig_err *err);

/*
 * Run status: the "status" member of query-status ("running", "paused",
 * "prelaunch", "inmigrate", "postmigrate", "finish-migrate", ...) copied
 * into buf. -ERANGE if it does not fit. Uses a 10 s timeout.
 */
int rdmig_qmp_status(struct rdmig_qmp *qmp, char *buf, size_t len, struct rdmig_err *err);

/* QEMU version from the greeting; any pointer may be NULL. */
void rdmig_qmp_version(const struct rdmig_qmp *qmp, int *major, int *minor, int *micro);

/* The greeting's "package" string (e.g. a distribution's version), "" if none. */
const char *rdmig_qmp_package(const struct rdmig_qmp *qmp);

#endif
