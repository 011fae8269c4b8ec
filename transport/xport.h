/* SPDX-License-Identifier: MIT */
/*
 * Internal: the backend function table, the state that every backend
 * shares, and what transport.c offers the backends and the auth hook (the
 * declarations at the end). transport.c owns the public entry points
 * (validation, counters, region table, layout exchange, auth hook); a
 * backend only moves bytes.
 *
 * A backend's connection struct embeds `struct rdmig_conn` as its first
 * member and is reached with container_of(); transport.c allocates
 * ops->conn_size bytes so the backend never allocates the base.
 */
#ifndef RDMIG_XPORT_H
#define RDMIG_XPORT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>

#include "rdmig/transport.h"
#include "wire.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

#define RDMIG_ADDR_MAX 64 /* an IP address as text, with room to spare */

struct rdmig_region {
	bool used;
	uint32_t id;
	char name[RDMIG_REGION_NAME_MAX];
	void *addr;
	uint64_t len;
	unsigned flags;
	uint64_t rkey; /* rdma: mr->rkey; tcp: 0 */
	void *handle;  /* rdma: struct ibv_mr * */
};

struct rdmig_remote {
	struct rdmig_remote_region pub;
	uint64_t addr; /* the peer's virtual address (rdma) */
	uint64_t rkey;
};

struct rdmig_chan_acct {
	uint64_t bytes; /* since the last fence */
	uint64_t writes;
};

struct rdmig_conn {
	const struct rdmig_xport_ops *ops;
	struct rdmig_xport_cfg cfg;
	char host[256];
	char peer_addr[RDMIG_ADDR_MAX]; /* acceptor: the peer's IP address, set by the backend */
	bool is_server;
	bool authenticated;
	unsigned nchan;
	uint32_t peer_caps;

	pthread_mutex_t reg_lock; /* regions[] and remote[] */
	struct rdmig_region regions[RDMIG_MAX_REGIONS];
	uint64_t pinned_bytes;
	struct rdmig_remote remote[RDMIG_MAX_REGIONS];
	unsigned nremote;

	struct rdmig_chan_acct tx[RDMIG_MAX_CHANNELS]; /* owned by each channel's sender */

	/* Counters are atomics: channels are driven by different threads. */
	_Atomic uint64_t st_regions_remote, st_rkeys_sent, st_regs_total, st_deregs_total;
	_Atomic uint64_t st_bytes_written, st_writes_posted, st_bytes_received;
	_Atomic uint64_t st_fences_sent, st_fences_received, st_ctrl_sent, st_ctrl_received;
	_Atomic uint64_t st_bytes_on_wire; /* see ops->counts_wire */
	_Atomic uint64_t st_rings_remote;  /* rdma stream rings registered for remote write */
	_Atomic uint64_t st_bytes_read, st_reads_posted;

	struct rdmig_err_slot fail; /* first fatal error of the connection */
};

struct rdmig_acceptor; /* accept.c */

struct rdmig_listener {
	const struct rdmig_xport_ops *ops;
	struct rdmig_xport_cfg cfg; /* cfg.tls_key is cleared once ops->listen has used it */
	char host[256];
	uint16_t port; /* bound port */
	/*
	 * An eventfd, readable once the listener is being destroyed: a
	 * backend's accept polls it with its own descriptors and returns
	 * -ETIMEDOUT when it is readable.
	 */
	int wake_fd;
	struct rdmig_acceptor *acc;
};

/*
 * Accepting side (accept.c). A listener thread calls ops->accept in a loop;
 * each connection it returns gets a handshake thread (ops->accept_finish,
 * the auth hook, ops->post_auth) under a deadline of cfg.connect_timeout_ms
 * and the limits below; only connections that got through all of it reach
 * rdmig_accept(). Whatever a peer does fails its own connection alone.
 */
#define RDMIG_HS_MAX	      32  /* connections being authenticated at once */
#define RDMIG_HS_PER_ADDR     16  /* of them from one address */
#define RDMIG_READY_MAX	      16  /* authenticated, waiting for rdmig_accept() */
#define RDMIG_ACCEPT_SLICE_MS 200 /* longest ops->accept call: deadlines are policed between */
#define RDMIG_ACCEPT_DROPPED  1	  /* ops->accept: a connection was dropped, see there */

/* Why something was dropped before rdmig_accept() handed it out. */
enum rdmig_drop_cause {
	RDMIG_DROP_REFUSED, /* malformed, or refused by a rule (version, channels, ...) */
	RDMIG_DROP_CLOSED,  /* the peer went away first */
	RDMIG_DROP_TIMEOUT, /* not complete within cfg.connect_timeout_ms */
	RDMIG_DROP_EVICTED, /* made room for a newer one under a limit */
	RDMIG_DROP_AUTH,    /* the auth hook refused the peer */
	RDMIG_DROP_BUSY,    /* no room: a limit reached with nothing to evict */
};

/*
 * Log one dropped socket, incomplete connection or connection (log_warn,
 * "dropping connection from PEER: REASON") and count it in the listener's
 * stats. Safe from any thread.
 */
void rdmig_listen_drop(struct rdmig_listener *l, enum rdmig_drop_cause cause, const char *peer,
		       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void rdmig_listen_vdrop(struct rdmig_listener *l, enum rdmig_drop_cause cause, const char *peer,
			const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

/* An entry under a limit: its peer's address and when it arrived (rdmig_now_ms()). */
struct rdmig_limit_ent {
	const char *addr;
	int64_t since;
};

/*
 * Admission of a newcomer from `addr` among the n entries under a limit of
 * `per_addr` entries per address and `global` in all: -1 when it fits, else
 * the entry to evict first: the oldest of `addr` when that address is at
 * its limit, else the oldest of the address holding the most entries (so
 * that idle sockets from one place cannot keep anyone else out). *held is
 * set to the count of the victim's address.
 */
int rdmig_limit_victim(const struct rdmig_limit_ent *e, unsigned n, const char *addr,
		       unsigned per_addr, unsigned global, unsigned *held);

/* The IP address of sa as text (IPv4-mapped IPv6 as IPv4), for limits and messages. */
void rdmig_addr_ip(const struct sockaddr *sa, char *out, size_t len);

/* accept.c, for transport.c: the listener thread and the ready queue. */
int rdmig_acceptor_start(struct rdmig_listener *l, struct rdmig_err *err);
int rdmig_acceptor_take(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn **out,
			struct rdmig_err *err);
void rdmig_acceptor_stop(struct rdmig_listener *l);

/*
 * Backend operations. Every op returns 0 or a negative errno and records a
 * message in `err`. The common layer has validated arguments (channel index,
 * region ids, bounds of local runs) before calling.
 */
struct rdmig_xport_ops {
	const char *name;
	size_t conn_size;     /* sizeof the backend's connection struct */
	size_t listener_size; /* sizeof the backend's listener struct */
	/*
	 * write() adds the payload bytes it put on the wire to st_bytes_on_wire
	 * itself (tcp, which may compress); otherwise the common layer adds the
	 * run bytes.
	 */
	bool counts_wire;

	/* Bind and listen on cfg->host:cfg->port; set l->port. */
	int (*listen)(struct rdmig_listener *l, struct rdmig_err *err);
	/*
	 * Listener thread: wait at most timeout_ms (less once l->wake_fd is
	 * readable) for a connection whose control and data channels have all
	 * arrived with valid HELLOs, at most cfg.channels data channels, and
	 * set it up in c (peer_addr, host, nchan, peer_caps) without waiting on
	 * that peer again. Returns 0 (c goes on to accept_finish, the auth hook
	 * and post_auth on its own thread), -ETIMEDOUT, RDMIG_ACCEPT_DROPPED
	 * when a connection failed during setup (dropped through
	 * rdmig_listen_drop(); c must be destroyed), or another negative errno
	 * when the listener itself is broken. Sockets and connect requests that
	 * are refused, time out or get evicted are dropped inside, under the
	 * backend's own per-address and global limits.
	 */
	int (*accept)(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn *c,
		      struct rdmig_err *err);
	/*
	 * Optional, handshake thread: what remains of the setup that waits on
	 * the peer (rdma: every channel established), by `deadline`. Must return
	 * soon once the connection is aborted.
	 */
	int (*accept_finish)(struct rdmig_conn *c, int64_t deadline, struct rdmig_err *err);
	void (*listener_close)(struct rdmig_listener *l);

	/* Connect control + c->nchan data channels, hello done. */
	int (*connect)(struct rdmig_conn *c, struct rdmig_err *err);
	/*
	 * Optional, both sides, once the auth hook succeeded (or the connection
	 * has none): set up and exchange what must not exist before
	 * authentication (rdma: stream rings registered for remote write, and
	 * their keys). Bounded by cfg.connect_timeout_ms.
	 */
	int (*post_auth)(struct rdmig_conn *c, struct rdmig_err *err);
	/*
	 * Optional: stop traffic and drain every queue (disconnect, flush
	 * outstanding work requests). Called before the common layer
	 * deregisters the regions, so no posted work still refers to them.
	 */
	void (*drain)(struct rdmig_conn *c);
	/* Release everything; must tolerate a half-built connection. */
	void (*close)(struct rdmig_conn *c);
	/* Wake threads blocked in this connection (after rdmig_conn_abort). */
	void (*wake)(struct rdmig_conn *c);

	/* Register / deregister r->addr, r->len; fill r->rkey, r->handle. */
	int (*reg)(struct rdmig_conn *c, struct rdmig_region *r, struct rdmig_err *err);
	void (*dereg)(struct rdmig_conn *c, struct rdmig_region *r);

	/* One framed control message (wire header + payload already encoded). */
	int (*ctrl_send)(struct rdmig_conn *c, const void *msg, size_t len, struct rdmig_err *err);
	/* Receive one framed control message into buf (header + payload). */
	int (*ctrl_recv)(struct rdmig_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms,
			 struct rdmig_err *err);

	/* Post runs (already validated against local and remote bounds). */
	int (*write)(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
		     struct rdmig_err *err);
	/* Post the fence after every earlier write and wait for local drain. */
	int (*fence)(struct rdmig_conn *c, unsigned chan, const struct rdmig_fence *f,
		     struct rdmig_err *err);
	int (*wait_fence)(struct rdmig_conn *c, unsigned chan, int timeout_ms,
			  struct rdmig_fence *f, struct rdmig_err *err);
	/*
	 * One-sided reads of runs (validated: the remote regions allow reading)
	 * into local memory; returns once every byte has landed, or fails.
	 */
	int (*read)(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
		    struct rdmig_err *err);

	int (*stream_send)(struct rdmig_conn *c, unsigned chan, const void *buf, size_t len,
			   struct rdmig_err *err);
	ssize_t (*stream_recv)(struct rdmig_conn *c, unsigned chan, void *buf, size_t cap,
			       int timeout_ms, struct rdmig_err *err);
	int (*stream_shutdown)(struct rdmig_conn *c, unsigned chan, struct rdmig_err *err);
	/* rdmig_stream_send_fd() / rdmig_stream_recv_fd(), max > 0. */
	ssize_t (*stream_send_fd)(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
				  struct rdmig_err *err);
	ssize_t (*stream_recv_fd)(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
				  int timeout_ms, struct rdmig_err *err);
};

extern const struct rdmig_xport_ops rdmig_tcp_ops;
extern const struct rdmig_xport_ops rdmig_rdma_ops;

/*
 * Every byte of buf into fd (the descriptor calls' caller's), waiting for
 * it when it is full: 0 or a negative errno.
 */
int xport_fd_write_all(int fd, const void *buf, size_t len);

/*
 * Record a fatal connection error (first one wins) and return its code.
 * Backends call this for failed completions, disconnects and malformed
 * peer messages, so every later call reports the cause.
 */
int rdmig_conn_fail(struct rdmig_conn *c, struct rdmig_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Look up a local region by id (NULL if unknown). Caller holds no lock: ids are stable. */
struct rdmig_region *rdmig_region_get(struct rdmig_conn *c, uint32_t id);
/* Look up a remote region by id (NULL if unknown). */
const struct rdmig_remote *rdmig_remote_find(const struct rdmig_conn *c, uint32_t id);

/* A connection of this configuration, not yet set up by a backend (free with rdmig_conn_destroy).
 */
struct rdmig_conn *rdmig_conn_alloc(const struct rdmig_xport_cfg *cfg, bool server);
/* Both sides, after the backend's setup: the auth hook, then ops->post_auth. */
int rdmig_conn_secure(struct rdmig_conn *c, struct rdmig_err *err);

/* Hello: what both backends exchange when a channel is set up. */
void rdmig_hello_fill(struct rdmig_conn *c, struct rdmig_wire_hello *h, uint16_t chan_index,
		      uint64_t token);

/*
 * AUTH frames of the control channel, which the application path never
 * sees. Only an auth hook (auth.c) uses them, before anything is exposed.
 */
int rdmig_auth_send(struct rdmig_conn *c, const void *payload, size_t len, struct rdmig_err *err);
int rdmig_auth_recv(struct rdmig_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms,
		    struct rdmig_err *err);

/* The same for the other frames of the transport's own (RINGS), from ops->post_auth. */
int rdmig_setup_send(struct rdmig_conn *c, uint8_t type, const void *payload, size_t len,
		     struct rdmig_err *err);
int rdmig_setup_recv(struct rdmig_conn *c, uint8_t type, void *buf, size_t cap, size_t *len,
		     int timeout_ms, struct rdmig_err *err);

#endif
