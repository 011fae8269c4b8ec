/* SPDX-License-Identifier: MIT */
/*
 * A recording TCP relay on loopback: what a man in the middle sees. Every
 * connection to its port is forwarded to an upstream port, both ways, by one
 * thread, and every byte it forwards is recorded (up to a cap per
 * direction). For replaying a recorded handshake, or showing that page data
 * does or does not cross the wire in plain text.
 */
#ifndef RDMIG_TEST_TH_RELAY_H
#define RDMIG_TEST_TH_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "rdmig/err.h"

#define TH_RELAY_MAX_CONNS 8

struct th_relay;

/* Listen on 127.0.0.1 (a free port) and forward to 127.0.0.1:upstream. */
int th_relay_start(uint16_t upstream, size_t record_max, struct th_relay **out,
		   struct rdmig_err *err);
uint16_t th_relay_port(const struct th_relay *r);

/*
 * Wait until every connection it forwarded has been closed both ways (at most
 * `timeout_ms`), then stop the thread and close every socket. The records
 * stay until th_relay_destroy(). Idempotent.
 */
void th_relay_stop(struct th_relay *r, int timeout_ms);
void th_relay_destroy(struct th_relay *r);

/* After stop: connections in accept order, and what went each way. */
unsigned th_relay_conns(const struct th_relay *r);
/* dir 0: client -> upstream, 1: upstream -> client. */
const uint8_t *th_relay_record(const struct th_relay *r, unsigned conn, int dir, size_t *len);
size_t th_relay_total(const struct th_relay *r);

#endif
