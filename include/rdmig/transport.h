/* SPDX-License-Identifier: MIT */
/*
 * rdmig transport: one interface, two backends (rdma, tcp).
 *
 * A connection has one control channel and `channels` data channels. Each
 * data channel is one RC queue pair (rdma) or one socket (tcp) and is meant
 * to be driven by one thread at a time on each side; control send and
 * control receive may each be used by one thread concurrently.
 *
 * Data channels carry either one-sided page writes plus fences, or a byte
 * stream, never both at once (decided by the user of the connection: the
 * engine uses pages, the QEMU relay uses streams).
 *
 * All functions return 0 or a negative errno and fill `err` (may be NULL)
 * with a message. Once a connection has failed (failed work completion,
 * disconnect, malformed peer message) every later call returns the first
 * error; rdmig_conn_failed() tells.
 */
#ifndef RDMIG_TRANSPORT_H
#define RDMIG_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rdmig/err.h"

/* librdmig exports what its public headers declare (cmake/librdmig.map). */
#pragma GCC visibility push(default)

#define RDMIG_DEFAULT_PORT     18515
#define RDMIG_MAX_CHANNELS     64
#define RDMIG_MAX_REGIONS      64
#define RDMIG_REGION_NAME_MAX  32
#define RDMIG_CTRL_MAX_PAYLOAD (64 * 1024)

enum rdmig_backend {
	RDMIG_BACKEND_TCP = 0,
	RDMIG_BACKEND_RDMA = 1,
};

const char *rdmig_backend_name(enum rdmig_backend b);
/* "tcp" / "rdma" */
int rdmig_backend_parse(const char *s, enum rdmig_backend *out, struct rdmig_err *err);

/*
 * RDMA devices offered to user space (libibverbs' list): their count, and
 * their names comma-separated into `names` (may be NULL) when it has room.
 */
int rdmig_rdma_devices(char *names, size_t len);
/* Completion vectors of device `name` (NULL: the first), 0 if it cannot be opened. */
int rdmig_rdma_comp_vectors(const char *name);
/* What "--backend auto" means on this host: rdma when a device exists, else tcp. */
enum rdmig_backend rdmig_backend_auto(void);

struct rdmig_conn;
struct rdmig_listener;

/*
 * Authentication hook: runs on both sides once the control channel and
 * every data channel are up, before any memory is registered for the
 * peer's access (regions, and on rdma the stream rings). It may use
 * rdmig_ctrl_send/recv. Returns 0 when the peer is authenticated. On the
 * accepting side it runs on a thread of the listener, several at a time
 * for different connections, each bounded by connect_timeout_ms.
 */
typedef int (*rdmig_auth_fn)(struct rdmig_conn *c, bool is_server, void *ctx,
			     struct rdmig_err *err);

struct rdmig_xport_cfg {
	enum rdmig_backend backend;
	const char *host; /* connect: peer; listen: bind address (NULL = any) */
	uint16_t port;	  /* 0 on listen: ephemeral, see rdmig_listener_port() */
	/*
	 * Data channels, 1..RDMIG_MAX_CHANNELS (default 1). On a listener, the
	 * most a connector may ask for: more is refused with a message naming
	 * both numbers.
	 */
	unsigned channels;
	unsigned depth;	       /* send queue depth per channel (0: device default) */
	unsigned inline_size;  /* rdma max inline data (0: default) */
	unsigned signal_every; /* signal every Nth send WR (0: depth / 4) */
	size_t stream_ring;    /* rdma stream ring bytes per channel (0: 1 MiB) */
	/*
	 * 0: 10000. Connector: the channels' setup, and each answer of the
	 * handshake. Listener: the bound on each stage of a connection's setup
	 * (a socket's HELLO; all channels arriving, twice this on tcp; then
	 * authentication); a connection past it is dropped.
	 */
	int connect_timeout_ms;
	/*
	 * Dead-peer bound (0: 15000 ms). rdma: fail when nothing, not even a
	 * keepalive, arrived for this long. tcp: TCP_USER_TIMEOUT, the longest
	 * sent data may stay unacknowledged.
	 */
	int peer_timeout_ms;
	rdmig_auth_fn auth; /* NULL: unauthenticated (tools warn) */
	void *auth_ctx;
	/*
	 * tcp connector: zstd level 1..19 for page writes, 0 off. Used only when
	 * the peer announced the capability (a tcp acceptor always does), and
	 * per frame only when it saves bytes. rdma ignores it.
	 */
	int compress_level;
	/*
	 * rdma: completion vector for data channel i's CQs is comp_vector[i] for
	 * i < ncomp_vector (modulo the device's num_comp_vectors; negative: 0).
	 * NULL: vector 0. The array must outlive every listener and connection
	 * made with this configuration. tcp ignores it.
	 */
	const int *comp_vector;
	unsigned ncomp_vector;
	/*
	 * tcp: run every socket over TLS 1.3 with an external PSK derived from
	 * tls_key (the pre-shared key file's bytes, at least 16; only read during
	 * rdmig_listen() and rdmig_connect()). Both sides must agree. rdma
	 * refuses it: rdmig does not encrypt RoCE traffic.
	 */
	bool tls;
	const uint8_t *tls_key;
	size_t tls_key_len;
};

/* Fills defaults for every zero field. */
void rdmig_xport_cfg_defaults(struct rdmig_xport_cfg *cfg);

/*
 * Listen / accept / connect. A listener accepts any number of connections:
 * from rdmig_listen() to rdmig_listener_destroy() a thread of its own takes
 * them in, several handshakes at a time, whether or not rdmig_accept() is
 * waiting (docs/security.md, "The listener").
 */
int rdmig_listen(const struct rdmig_xport_cfg *cfg, struct rdmig_listener **out,
		 struct rdmig_err *err);
uint16_t rdmig_listener_port(const struct rdmig_listener *l);
/*
 * The next connection that completed its handshake and authentication, in
 * the order they completed. A peer that fails, stalls or misbehaves is
 * logged (warning, with its address and the reason) and dropped, never
 * reported here: this returns -ETIMEDOUT (timeout_ms < 0: wait forever) or
 * an error of the listener itself (its socket or device is gone).
 */
int rdmig_accept(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn **out,
		 struct rdmig_err *err);
void rdmig_listener_destroy(struct rdmig_listener *l);

/* What a listener did with what reached it, since rdmig_listen(). */
struct rdmig_listener_stats {
	uint64_t accepted;   /* connections rdmig_accept() handed out */
	uint64_t ready;	     /* now: authenticated, waiting for rdmig_accept() */
	uint64_t handshakes; /* now: being set up or authenticated */
	/*
	 * Dropped before rdmig_accept(): one count per socket, incomplete
	 * connection or connection, the sum of the causes below.
	 */
	uint64_t dropped;
	uint64_t refused;     /* malformed, or against a rule (version, channel count, ...) */
	uint64_t closed;      /* the peer went away before the end of its handshake */
	uint64_t timed_out;   /* not through within connect_timeout_ms */
	uint64_t evicted;     /* made room for a newer one under the per-address or global limits */
	uint64_t auth_failed; /* the auth hook refused the peer */
	uint64_t busy;	      /* no room left, nothing to evict */
	/* The last drop as logged: "dropping connection from ADDR:PORT: REASON". */
	char last_drop[RDMIG_ERR_MSG_MAX];
};

void rdmig_listener_stats(const struct rdmig_listener *l, struct rdmig_listener_stats *out);

int rdmig_connect(const struct rdmig_xport_cfg *cfg, struct rdmig_conn **out,
		  struct rdmig_err *err);
/* Drains and releases everything (safe on half-built connections and NULL). */
void rdmig_conn_destroy(struct rdmig_conn *c);

unsigned rdmig_conn_channels(const struct rdmig_conn *c);
enum rdmig_backend rdmig_conn_backend(const struct rdmig_conn *c);
bool rdmig_conn_failed(const struct rdmig_conn *c, struct rdmig_err *err);
/* Mark the connection failed (e.g. from a cancel); wakes blocked waiters. */
void rdmig_conn_abort(struct rdmig_conn *c, int code, const char *why);

/* ---- Regions ---------------------------------------------------------- */

#define RDMIG_REG_REMOTE_WRITE 0x1 /* destination guest RAM: peer may write */
#define RDMIG_REG_REMOTE_READ  0x2 /* source guest RAM in post-copy: peer may read */

/*
 * Register `len` bytes at `addr`. On rdma this pins the memory; the memlock
 * limit is checked first and a shortfall is reported with the number needed
 * and how to raise it. Returns the local region id in *id.
 */
int rdmig_reg(struct rdmig_conn *c, const char *name, void *addr, uint64_t len, unsigned flags,
	      uint32_t *id, struct rdmig_err *err);

/*
 * Send the layout of every region registered with RDMIG_REG_REMOTE_WRITE or
 * RDMIG_REG_REMOTE_READ (id, name, length, remote key, and in the flags the
 * access the peer has) to the peer. Either side of a connection may expose:
 * the destination its guest RAM for writes, a post-copy source its guest
 * RAM for reads. Refused unless the auth hook has succeeded or the
 * connection was configured without one.
 */
int rdmig_expose(struct rdmig_conn *c, struct rdmig_err *err);

/* Deregister every region; old remote keys stop working. */
void rdmig_revoke(struct rdmig_conn *c);

struct rdmig_remote_region {
	uint32_t id;
	uint64_t len;
	char name[RDMIG_REGION_NAME_MAX];
	uint32_t flags; /* RDMIG_REG_REMOTE_*: the access this side has */
};

/* Wait for the peer's layout (the source, before writing). */
int rdmig_recv_layout(struct rdmig_conn *c, int timeout_ms, struct rdmig_err *err);
unsigned rdmig_remote_count(const struct rdmig_conn *c);
const struct rdmig_remote_region *rdmig_remote_get(const struct rdmig_conn *c, unsigned i);

/* ---- One-sided page writes and fences --------------------------------- */

/* One run: `len` bytes from local region lreg at loff to remote rreg at roff. */
struct rdmig_run {
	uint32_t lreg;
	uint32_t rreg;
	uint64_t loff;
	uint64_t roff;
	uint64_t len;
};

/*
 * Post writes on one data channel. Runs contiguous on both sides are merged,
 * runs contiguous on the remote side only are gathered (up to the device's
 * scatter-gather limit). Blocks while the send queue is full. Completion of
 * this call does not mean the data has landed: use a fence.
 */
int rdmig_write(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
		struct rdmig_err *err);

struct rdmig_fence {
	uint64_t seq;	 /* chosen by the sender, echoed to the receiver */
	uint64_t bytes;	 /* bytes written on this channel since the last fence */
	uint64_t writes; /* runs written on this channel since the last fence */
};

/*
 * Source: post a fence on `chan` after every write posted before it, and
 * wait until the local send queue has drained. The destination's
 * rdmig_wait_fence() returns it once every earlier write of the channel has
 * landed in its memory. bytes/writes are filled in by the transport.
 */
int rdmig_fence(struct rdmig_conn *c, unsigned chan, uint64_t seq, struct rdmig_err *err);

/*
 * Destination: wait for the next fence on `chan`. On tcp this is also what
 * receives the channel's page writes into the regions, so one thread per
 * channel must be in here while the source writes. The transport checks that
 * bytes/writes match what it received where it can (tcp).
 */
int rdmig_wait_fence(struct rdmig_conn *c, unsigned chan, int timeout_ms, struct rdmig_fence *f,
		     struct rdmig_err *err);

/* ---- One-sided page reads (post-copy) ---------------------------------- */

/*
 * One-sided reads on data channel `chan`: for each run, `len` bytes of the
 * peer's region rreg at roff into local region lreg at loff. Returns when
 * every byte has landed in local memory, or with the connection's error.
 * The remote region must be in the peer's layout with RDMIG_REG_REMOTE_READ
 * and the ranges inside both regions (checked before anything is posted).
 * One thread per channel at a time; other channels may read concurrently.
 * rdma: RDMA READs, merged and scattered like writes; a read the peer
 * refuses (region revoked or not exposed for reading) fails the connection.
 * tcp: -EOPNOTSUPP, tcp has no one-sided reads (the engine asks over a
 * request/reply stream there).
 */
int rdmig_read(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
	       struct rdmig_err *err);

/* ---- Control messages -------------------------------------------------- */

/*
 * Small, reliable, ordered messages both ways. `type` is the application's
 * (engine, relay) own message type, 0..0x7fff; payload up to
 * RDMIG_CTRL_MAX_PAYLOAD bytes.
 */
int rdmig_ctrl_send(struct rdmig_conn *c, uint16_t type, const void *payload, size_t len,
		    struct rdmig_err *err);
/* timeout_ms < 0: forever. Returns -ETIMEDOUT, or -ECONNRESET on peer close. */
int rdmig_ctrl_recv(struct rdmig_conn *c, uint16_t *type, void *buf, size_t cap, size_t *len,
		    int timeout_ms, struct rdmig_err *err);

/*
 * Tell the peer why this side gives up (before destroying the connection):
 * the peer's next rdmig_ctrl_recv() fails with "peer reported: <msg>".
 */
int rdmig_ctrl_send_error(struct rdmig_conn *c, int code, const char *msg, struct rdmig_err *err);

/* ---- Byte streams ------------------------------------------------------ */

/*
 * Full-duplex, flow-controlled byte stream on a data channel. One thread may
 * send while another receives on the same channel.
 */
int rdmig_stream_send(struct rdmig_conn *c, unsigned chan, const void *buf, size_t len,
		      struct rdmig_err *err);
/* Returns bytes read (> 0), 0 at end of stream, or a negative errno. */
ssize_t rdmig_stream_recv(struct rdmig_conn *c, unsigned chan, void *buf, size_t cap,
			  int timeout_ms, struct rdmig_err *err);
/* Half-close: the peer reads end of stream after everything sent before. */
int rdmig_stream_shutdown(struct rdmig_conn *c, unsigned chan, struct rdmig_err *err);

/*
 * The same stream fed from, or drained into, a file descriptor of the
 * caller's (a socket, a pipe or a file), without copying the bytes through
 * a buffer of the caller's and, where the backend can, through user space
 * at all: tcp splices them through a pipe (TLS goes through a buffer of the
 * backend's), rdma reads them into its registered staging buffer and writes
 * them out of its receive ring. `fd` may be blocking or not; these calls
 * wait for it.
 *
 * rdmig_stream_send_fd() waits until `fd` is readable, reads at most `max`
 * bytes once and sends them: the bytes sent (> 0), 0 when `fd` is at end of
 * file (nothing is sent: the half-close stays the caller's), or a negative
 * errno, whose message says whether `fd` or the connection failed.
 *
 * rdmig_stream_recv_fd() waits up to `timeout_ms` (negative: no limit) for
 * stream data, receives at most `max` bytes and writes every one of them to
 * `fd` before it returns: the bytes moved (> 0), 0 at end of stream, or a
 * negative errno; after a failed write to `fd` the bytes of that call are
 * lost, so the stream is of no further use to the caller.
 */
ssize_t rdmig_stream_send_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
			     struct rdmig_err *err);
ssize_t rdmig_stream_recv_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
			     int timeout_ms, struct rdmig_err *err);

/* ---- Counters ---------------------------------------------------------- */

struct rdmig_xport_stats {
	uint64_t regions_remote; /* regions registered for remote write or read now */
	uint64_t rkeys_sent;	 /* remote keys that left this host */
	uint64_t regs_total;	 /* registrations ever made */
	uint64_t deregs_total;	 /* deregistrations ever made */
	uint64_t bytes_written;	 /* one-sided payload bytes posted (source) */
	uint64_t writes_posted;	 /* work requests / frames posted */
	uint64_t bytes_received; /* payload bytes landed (tcp dest) */
	uint64_t bytes_on_wire;	 /* page payload bytes sent after compression (source) */
	uint64_t fences_sent;
	uint64_t fences_received;
	uint64_t ctrl_sent;
	uint64_t ctrl_received;
	uint64_t rings_remote; /* rdma stream rings registered for remote write now */
	uint64_t bytes_read;   /* one-sided payload bytes read into this side (post-copy) */
	uint64_t reads_posted; /* runs read */
};

void rdmig_xport_stats(const struct rdmig_conn *c, struct rdmig_xport_stats *out);

/* Memlock: bytes this process may still pin, UINT64_MAX if unlimited. */
uint64_t rdmig_memlock_limit(void);
/* -ENOMEM with the actionable message if `bytes` more cannot be pinned. */
int rdmig_memlock_check(uint64_t already, uint64_t bytes, struct rdmig_err *err);

#pragma GCC visibility pop

#endif
