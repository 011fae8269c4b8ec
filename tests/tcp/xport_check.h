/* SPDX-License-Identifier: MIT */
/*
 * xport_check's parts (xport_check.c has the overview):
 *   xport_check.c      options, the two-process driver, what every mode uses
 *   xport_transfer.c   transfer and fence
 *   xport_stream.c     stream
 *   xport_read.c       read (one-sided reads, post-copy)
 *   xport_malformed.c  malformed peers (tcp only): a raw peer by hand, fake
 *                      listeners, bad frames
 *   xport_tcp.c        tcp behaviours beyond bad frames: a receive resumed
 *                      after a timeout, abort, interleaved connectors,
 *                      expiry, dual stack
 *   xport_hostile.c    hostile peers before authentication, both backends
 *                      (raw rdma_cm peers in xport_hostile_cm.c)
 */
#ifndef RDMIG_XPORT_CHECK_H
#define RDMIG_XPORT_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rdmig/transport.h"
#include "th_sock.h"
#include "wire.h"

#define WAIT_MS 120000

/* Application control messages of this test. */
enum {
	MSG_SUM = 1,	 /* source -> destination: seed, size, xxh64 of the source region */
	MSG_VERDICT = 2, /* destination -> source: 1 byte, 1 = pass */
	MSG_ACK = 3,	 /* fence: destination -> source: chan, round, ok */
	MSG_DONE = 4,	 /* barrier before teardown */
	MSG_REVOKE = 5,	 /* read: reader -> exposer: revoke your regions (answered by MSG_ACK) */
};

struct opts {
	const char *mode;
	enum rdmig_backend backend;
	const char *host;
	uint64_t size;
	unsigned channels;
	unsigned rounds;
	uint64_t seed;
	int compress;  /* transfer: source's zstd level, and zero pages in the content */
	bool tls;      /* tcp over TLS, keyed by a fixed test key */
	bool fd;       /* stream: through the descriptor calls */
	uint16_t port; /* hostile-client: the listener to misbehave at */
};

extern struct opts g_opt;

/* ---- xport_check.c ---------------------------------------------------------- */

double mib_s(uint64_t bytes, double secs);
/* The content of key (tests/lib/th_content.h), sparse with --compress. */
void content_fill(uint8_t *dst, uint64_t pos, size_t len, uint64_t key);
uint64_t content_compare(const uint8_t *mem, uint64_t pos, uint64_t len, uint64_t key,
			 uint64_t *first);
/* Slice of channel ch: [lo, hi), 4 KiB aligned except for the last. */
void slice_of(uint64_t size, unsigned nch, unsigned ch, uint64_t *lo, uint64_t *hi);
const struct rdmig_remote_region *find_remote(struct rdmig_conn *c, const char *name);
void print_stats(struct rdmig_conn *c);
/* Both sides send DONE and wait for the peer's, so neither tears down early. */
void barrier(struct rdmig_conn *c);
void cfg_init(struct rdmig_xport_cfg *cfg, unsigned channels);

/* ---- the modes -------------------------------------------------------------- */

bool src_transfer(struct rdmig_conn *c, uint64_t size, uint64_t seed);
bool dst_transfer(struct rdmig_conn *c, uint64_t size, uint64_t seed);
bool fence_run(struct rdmig_conn *c, bool source);
bool stream_run(struct rdmig_conn *c, bool server);
bool read_run(struct rdmig_conn *c, bool server);
int run_malformed(void);

/* ---- the raw peer (xport_malformed.c), for xport_tcp.c ---------------------- */

#define VICTIM_LEN (1u << 20)

/* Blocking socket to HOST:port, every wait on it bounded by WAIT_MS. */
static inline int raw_connect(uint16_t port)
{
	return th_tcp_connect(g_opt.host, port, WAIT_MS);
}

static inline bool raw_send(int fd, const void *buf, size_t len)
{
	return !th_send_all(fd, buf, len, NULL);
}

static inline bool raw_recv(int fd, void *buf, size_t len)
{
	return !th_recv_all(fd, buf, len, WAIT_MS, NULL);
}

void raw_hello_frame(uint8_t *buf, uint8_t type, uint16_t role, uint16_t chan_index, uint16_t nchan,
		     uint64_t token);
/* The listener's answer to a refused HELLO on fd: an ERROR frame holding `want`, then close. */
void expect_error_reply(int fd, const char *what, const char *want);
/* Handshake by hand (1 data channel), read the LAYOUT; the region id of "ram" into *ram. */
bool raw_session(uint16_t port, int *cfd, int *dfd, uint32_t *ram);
/* A WRITE header and prefix for `len` payload bytes into buf; returns its length. */
size_t write_frame(uint8_t *buf, uint32_t region, uint64_t off, uint32_t len);

/* The good-connection proof: accept + destination transfer in a thread, source here. */
struct good_ctx {
	struct rdmig_listener *l;
	bool ok;
};

void *good_dst_thread(void *arg);
void good_src(const char *host, uint16_t port, const char *when);

/* ---- xport_tcp.c ------------------------------------------------------------ */

void resume_after_timeout(struct rdmig_listener *l, uint16_t port);
void abort_wakes(struct rdmig_listener *l, uint16_t port);
void interleaved(struct rdmig_listener *l, uint16_t port);
void expiry(struct rdmig_listener *l, uint16_t port);
void dual_stack(void);

#endif
