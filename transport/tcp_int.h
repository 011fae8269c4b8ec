/* SPDX-License-Identifier: MIT */
/*
 * Internal to the tcp backend: tcp_conn.c (connect, HELLO, control channel,
 * regions, lifecycle, the ops table), tcp_listen.c (listener, pending
 * sockets, token groups), tcp_io.c (socket I/O, plain or TLS), tcp_tls.c
 * (TLS context, PSK, handshake), tcp_write.c (page writes and fences),
 * tcp_rx.c (the data channel receive state machine) and tcp_stream.c.
 *
 * One control socket and one socket per data channel. The connector opens
 * the control socket first and sends a HELLO frame (header + 48-byte HELLO,
 * chan_index 0xffff) with a random 64-bit token; once the HELLO_ACK is back
 * it opens one socket per data channel, each with a HELLO carrying its index
 * and the same token. The acceptor reads every socket's HELLO under a
 * timeout, answers each with a HELLO_ACK and groups sockets by token; a
 * connection goes to its handshake (accept.c) when its control socket and
 * every data socket have arrived. Incomplete groups stay in the listener
 * (bounded per address and in all, expiring) so that connectors may
 * interleave.
 *
 * Data channels carry WRITE frames (header, 16-byte prefix, payload read
 * straight from the region with sendmsg, received straight into the region
 * with recv) and FENCE frames, or STREAM_DATA / STREAM_EOF frames. On the
 * destination the thread in wait_fence is what receives a channel's writes.
 *
 * Locking and ownership:
 *  - ch[i].tx_lock serialises senders of a channel (write, fence, stream
 *    send/shutdown); ch[i].rx_lock serialises its receivers (wait_fence,
 *    stream_recv). A sender and a receiver of one channel never share state.
 *  - ctrl_tx_lock / ctrl_rx_lock do the same for the control socket.
 *  - Receive state (partial header, payload in progress) lives in the
 *    channel, not on the stack, so a receive that times out resumes where it
 *    stopped on the next call.
 *  - reg_rw guards this backend's copy of the region table. A receiver holds
 *    it for reading only across one non-blocking recv() into region memory,
 *    so dereg (write lock) waits for at most one copy and no byte lands in a
 *    region after rdmig_revoke() has returned.
 *  - Socket descriptors are set once during setup and only closed by close();
 *    wake() shuts them down so that blocked threads return.
 *
 * TLS (cfg.tls): every socket gets a TLS 1.3 session right after the TCP
 * connect / accept and before its HELLO, authenticated by an external PSK
 * derived from the pre-shared key (no certificates). Every byte then goes
 * through tcp_io_send_all() / tcp_io_recv_once(), which use SSL_write /
 * SSL_read on a non-blocking socket and poll on WANT_READ / WANT_WRITE;
 * payload still lands straight in the region. A socket's SSL object is used
 * by its sender and its receiver, so each call into it holds the socket's
 * ssl_lock (never across a poll).
 */
#ifndef RDMIG_TCP_INT_H
#define RDMIG_TCP_INT_H

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/ssl.h>
#include <zstd.h>

#include "xport.h"

#define TCP_PEER_MAX	300 /* "[v6 address]:port", or a host name and port */
#define TCP_HELLO_FRAME RDMIG_WIRE_PDATA_LEN
/*
 * Accepted sockets whose HELLO has not arrived yet, and connections with
 * some but not all of their sockets, in all and per peer address. Past a
 * limit the oldest of that address (else of the address holding the most)
 * is dropped for the newcomer: rdmig_limit_victim().
 */
#define TCP_MAX_PENDING	     128
#define TCP_PENDING_PER_ADDR 32
#define TCP_MAX_GROUPS	     32
#define TCP_GROUPS_PER_ADDR  16
#define TCP_FRAME_PREFIX     (RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_WRITE_LEN)
#define TCP_RX_SMALL	     (RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_FENCE_LEN)
#define TCP_EOF		     1 /* tcp_io_recv_fill(): the peer closed the socket */
#define TCP_PSK_LEN	     32

enum tcp_rx_state {
	RX_HDR,	    /* reading a frame header */
	RX_SMALL,   /* reading a WRITE prefix or a FENCE payload */
	RX_PAYLOAD, /* receiving WRITE data into a region */
	RX_STREAM,  /* STREAM_DATA bytes left for stream_recv */
};

struct tcp_rx {
	enum tcp_rx_state state;
	uint8_t buf[TCP_RX_SMALL]; /* header, then prefix or fence payload */
	size_t got;		   /* bytes of buf filled */
	struct rdmig_wire_hdr hdr; /* of the frame in progress */
	/* RX_PAYLOAD: where the rest of the WRITE goes. */
	uint32_t region;
	uint32_t gen;
	uint8_t *dst;	 /* region memory, or zbuf for a compressed WRITE */
	uint32_t wlen;	 /* uncompressed WRITE length */
	uint32_t flen;	 /* bytes of the frame after the prefix (compressed: zstd bytes) */
	uint32_t left;	 /* of flen */
	bool zstd;	 /* the WRITE in progress is compressed */
	uint8_t *zdst;	 /* compressed: where its wlen bytes go in the region */
	ZSTD_DCtx *dctx; /* created at the first compressed WRITE, freed at close */
	uint8_t *zbuf;	 /* compressed data of the WRITE in progress */
	size_t zcap;
	uint64_t stream_left; /* RX_STREAM */
	bool eof;	      /* STREAM_EOF seen: every later stream_recv returns 0 */
	uint64_t bytes;	      /* WRITE payload bytes since the last fence */
	uint64_t writes;      /* WRITE frames since the last fence */
};

struct tcp_chan {
	int fd;
	SSL *ssl; /* TLS: under ssl_lock */
	pthread_mutex_t ssl_lock;
	pthread_mutex_t tx_lock;
	bool eof_sent;
	ZSTD_CCtx *cctx; /* under tx_lock: created at the first compressed write */
	uint8_t *zbuf;	 /* under tx_lock: the compressed frames of a batch */
	pthread_mutex_t rx_lock;
	struct tcp_rx rx;
};

struct tcp_conn {
	struct rdmig_conn base;
	bool inited; /* locks initialised and fds valid or -1 */
	char peer[TCP_PEER_MAX];
	int ctrl_fd;
	SSL *ctrl_ssl;
	pthread_mutex_t ctrl_ssl_lock;
	SSL_CTX *tls_ctx; /* NULL: plain tcp */
	uint8_t tls_psk[TCP_PSK_LEN];
	pthread_mutex_t ctrl_tx_lock;
	pthread_mutex_t ctrl_rx_lock;
	uint8_t *ctrl_buf; /* one frame in progress, kept across timeouts */
	size_t ctrl_got;
	struct rdmig_wire_hdr ctrl_hdr;

	pthread_rwlock_t reg_rw;
	uint64_t reg_len[RDMIG_MAX_REGIONS];
	uint8_t reg_writable[RDMIG_MAX_REGIONS];
	uint8_t *reg_addr[RDMIG_MAX_REGIONS];
	uint32_t reg_gen[RDMIG_MAX_REGIONS]; /* bumped on every reg and dereg */

	struct tcp_chan ch[RDMIG_MAX_CHANNELS];
};

struct tcp_pending {
	int fd;
	SSL *ssl;     /* TLS: handshake first, then the HELLO */
	bool hs_done; /* TLS handshake complete */
	short events; /* what the handshake waits for */
	size_t got;
	int64_t since, deadline;
	uint8_t buf[TCP_HELLO_FRAME];
	char peer[TCP_PEER_MAX];
	char addr[RDMIG_ADDR_MAX]; /* peer without the port: the limits' key */
};

struct tcp_group {
	bool used;
	uint64_t token;
	uint16_t nchan;
	uint32_t caps;
	int ctrl_fd;
	SSL *ctrl_ssl;
	unsigned ndata;
	int data_fd[RDMIG_MAX_CHANNELS];
	SSL *data_ssl[RDMIG_MAX_CHANNELS];
	int64_t since, deadline;
	char peer[TCP_PEER_MAX];
	char addr[RDMIG_ADDR_MAX];
};

/* Only the listener thread (accept.c) touches it, from listen to close. */
struct tcp_listener {
	struct rdmig_listener base;
	bool inited;
	int fd;
	SSL_CTX *tls_ctx; /* NULL: plain tcp */
	uint8_t tls_psk[TCP_PSK_LEN];
	unsigned npend;
	struct tcp_pending pend[TCP_MAX_PENDING];
	struct tcp_group grp[TCP_MAX_GROUPS];
	/* listening socket, wake_fd, pending sockets, groups' sockets */
	struct pollfd pfd[2 + TCP_MAX_PENDING + TCP_MAX_GROUPS * (RDMIG_MAX_CHANNELS + 1)];
};

static inline struct tcp_conn *to_tcp(struct rdmig_conn *c)
{
	return container_of(c, struct tcp_conn, base);
}

/* One socket of a connection: plain, or TLS when ssl is set. */
struct tcp_io {
	int fd;
	SSL *ssl;
	pthread_mutex_t *lk; /* serialises calls into ssl */
};

static inline struct tcp_io tcp_ch_io(struct tcp_conn *tc, unsigned chan)
{
	return (struct tcp_io){tc->ch[chan].fd, tc->ch[chan].ssl, &tc->ch[chan].ssl_lock};
}

/* ---- tcp_io.c: callers serialise each direction (tx/rx lock, listener lock) ---- */

/* Wait for `events` on fd. 0 when ready (or in error: the next call tells), -ETIMEDOUT. */
int tcp_wait_fd(int fd, short events, int64_t deadline);
/* The reason of the last OpenSSL failure of this thread, for messages. */
const char *tcp_tls_reason(char *buf, size_t len);
/*
 * One SSL call's outcome in this backend's convention: n > 0 done, 0 end of
 * file, -EAGAIN with *events to poll for, -EINTR to retry, or a negative
 * errno.
 */
ssize_t tcp_tls_result(SSL *ssl, int n, int saved_errno, short *events);
/* One non-blocking receive: n > 0, 0 at end of file, -EAGAIN (*events), -EINTR or an errno. */
ssize_t tcp_io_recv_once(struct tcp_io io, void *buf, size_t len, short *events);
/* Bytes received (> 0), 0 at end of file, -ETIMEDOUT or another negative errno. */
ssize_t tcp_io_recv_some(struct tcp_io io, void *buf, size_t len, int64_t deadline);
/* Fill buf up to `want` bytes (*got already there, kept across timeouts). 0, TCP_EOF or -errno. */
int tcp_io_recv_fill(struct tcp_io io, uint8_t *buf, size_t want, size_t *got, int64_t deadline);
/*
 * Send every byte of iov (modified in place) with sendmsg `flags` besides
 * MSG_NOSIGNAL, or with SSL_write on a TLS socket. 0 or a negative errno.
 */
int tcp_io_send_all(struct tcp_io io, struct iovec *iov, int iovcnt, int flags);
/* tcp_io_send_all() of one buffer, no flags. */
int tcp_io_send_buf(struct tcp_io io, const void *buf, size_t len);
/* O_NONBLOCK on or off: 0 or a negative errno. */
int tcp_set_nonblock(int fd, bool on);
/* Nagle off, keepalive and TCP_USER_TIMEOUT on an established socket (logs failures). */
void tcp_tune_socket(int fd, int user_timeout_ms);
/* "host:port", or "[v6 address]:port". */
void tcp_fmt_hostport(const char *host, uint16_t port, char *out, size_t len);
/* Close *fd if open and set it to -1. */
void tcp_close_fd(int *fd);

/* ---- tcp_tls.c: contexts belong to a conn or listener, freed by its close ---- */

/* cfg->tls: a TLS 1.3 PSK-only context and the derived PSK; else *out = NULL. */
int tcp_tls_ctx_new(const struct rdmig_xport_cfg *cfg, bool server, SSL_CTX **out, uint8_t *psk,
		    struct rdmig_err *err);
/* An SSL object on fd in the given role; psk must outlive it (the owner's tls_psk). */
SSL *tcp_tls_new(SSL_CTX *ctx, int fd, uint8_t *psk, bool server);
/* The peer answered a TLS handshake with something that is not TLS. */
bool tcp_tls_not_tls(void);
/*
 * Connector: TLS handshake on a fresh socket (left non-blocking), bounded by
 * deadline. *out holds the SSL object even on failure (close() frees it).
 */
int tcp_tls_connect(struct tcp_conn *tc, int fd, SSL **out, const char *what, int64_t deadline,
		    struct rdmig_err *err);

/* ---- tcp_conn.c ---- */

/* Locks, descriptors at -1, the control buffer; tcp_close() undoes it, half-built or not. */
int tcp_conn_init(struct tcp_conn *tc, struct rdmig_err *err);

/* ---- tcp_listen.c: the listener thread alone ---- */

/* Ops of rdmig_tcp_ops (tcp_conn.c); xport.h documents each. */

int tcp_listen(struct rdmig_listener *l, struct rdmig_err *err);
int tcp_accept(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn *c,
	       struct rdmig_err *err);
void tcp_listener_close(struct rdmig_listener *l);

/* ---- tcp_write.c: the sender of a page channel, under its tx_lock ---- */

/* Ops (xport.h). */

int tcp_write(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
	      struct rdmig_err *err);
int tcp_fence(struct rdmig_conn *c, unsigned chan, const struct rdmig_fence *f,
	      struct rdmig_err *err);

/* ---- tcp_rx.c: the receiver of a data channel, under its rx_lock ---- */

/*
 * Read the next frame header of a data channel (resumable), reading at most
 * `max` bytes (a frame of the channel's kind is never shorter). 0 with
 * rx->hdr set, or a negative errno with err set; `kind` ("page", "stream")
 * and `waiting` name the channel's use in messages.
 */
int tcp_rx_header(struct tcp_conn *tc, unsigned chan, const char *kind, size_t max,
		  int64_t deadline, int timeout_ms, const char *waiting, struct rdmig_err *err);
/* Fail the connection: a frame of the other use (pages or stream) arrived. */
int tcp_rx_unexpected(struct tcp_conn *tc, unsigned chan, const char *kind, struct rdmig_err *err);
/* Op (xport.h): the thread waiting for a fence is what receives the channel's WRITEs. */
int tcp_wait_fence(struct rdmig_conn *c, unsigned chan, int timeout_ms, struct rdmig_fence *f,
		   struct rdmig_err *err);

/* ---- tcp_stream.c: senders under tx_lock, the receiver under rx_lock ---- */

/* Ops (xport.h). */

ssize_t tcp_stream_send_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
			   struct rdmig_err *err);
ssize_t tcp_stream_recv_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max, int timeout_ms,
			   struct rdmig_err *err);
int tcp_stream_send(struct rdmig_conn *c, unsigned chan, const void *buf, size_t len,
		    struct rdmig_err *err);
ssize_t tcp_stream_recv(struct rdmig_conn *c, unsigned chan, void *buf, size_t cap, int timeout_ms,
			struct rdmig_err *err);
int tcp_stream_shutdown(struct rdmig_conn *c, unsigned chan, struct rdmig_err *err);

#endif
