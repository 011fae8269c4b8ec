/* SPDX-License-Identifier: MIT */
/*
 * Plain sockets for tests that play a peer by hand (raw frames, replays,
 * fake listeners): connect, listen, and whole-buffer send and receive with
 * a bound on every wait.
 */
#ifndef RDMIG_TEST_TH_SOCK_H
#define RDMIG_TEST_TH_SOCK_H

#include <stddef.h>
#include <stdint.h>

#include "rdmig/err.h"

/*
 * A TCP socket connected to `host` (an IPv4 literal; NULL: 127.0.0.1) port
 * `port`, with send and receive timeouts of `io_timeout_ms` (0: none); -1
 * when it cannot connect.
 */
int th_tcp_connect(const char *host, uint16_t port, int io_timeout_ms);

/* A TCP socket listening on `host` (NULL: 127.0.0.1), a free port into *port; -1 on failure. */
int th_tcp_listen(const char *host, uint16_t *port);

/* All of buf, or a negative errno (-EPIPE: the other end is gone). */
int th_send_all(int fd, const void *buf, size_t len, struct rdmig_err *err);
/*
 * Exactly len bytes within `timeout_ms` in all (-1: no bound); -ETIMEDOUT,
 * or -EPIPE when the other end closes first.
 */
int th_recv_all(int fd, void *buf, size_t len, int timeout_ms, struct rdmig_err *err);

#endif
