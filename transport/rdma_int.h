/* SPDX-License-Identifier: MIT */
/*
 * Internal to the rdma backend: rdma.c (setup, teardown, the ops table),
 * rdma_cm.c (connection management), rdma_progress.c (failure state,
 * completions, the progress thread, keepalive), rdma_data.c (posting, control
 * messages, page writes, fences) and rdma_stream.c (byte streams).
 *
 * One connection = one control channel + nchan data channels; each channel
 * is its own rdma_cm id and RC queue pair with its own send CQ and recv CQ.
 * All QPs of a connection share one PD and one completion channel, and the
 * ids share one rdma_cm event channel.
 *
 * Threads and ownership
 *   - Application threads post work and wait on condition variables.
 *   - One progress thread per connection (started once every channel is
 *     established) sleeps in poll() on the completion channel, the rdma_cm
 *     event channel and an eventfd. It alone reaps the recv CQs; it reaps
 *     send CQs too (application threads may also reap a send CQ
 *     opportunistically, under tx_lock). It turns rdma_cm events
 *     (DISCONNECTED, DEVICE_REMOVAL, ADDR_CHANGE) into connection failures.
 *   - rd_chan.tx_lock guards everything on the send side of a QP: posting,
 *     send CQ reaping, SQ accounting, the frame slots, stream sender state
 *     (staging buffer, tx_pos, peer_consumed). tx_cond is broadcast when send
 *     completions were reaped, credits arrived, or the connection failed.
 *   - rd_chan.rx_lock guards the receive side: the recv buffer ring, the
 *     queue of received frames, stream receiver state. rx_cond is broadcast
 *     on new frames, stream data, end of stream or failure.
 *   - Lock order: rx_lock may be held while taking tx_lock, never the
 *     reverse; nobody waits on a condition while holding the other lock.
 *   - rd_fail() may be called with any lock held: it records the error and
 *     broadcasts without locking; waiters wait in bounded slices
 *     (RD_WAIT_SLICE_MS) and re-check the failure slot, which closes the
 *     window of a broadcast sent between their check and their wait.
 */
#ifndef RDMIG_RDMA_INT_H
#define RDMIG_RDMA_INT_H

#include <infiniband/verbs.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "xport.h"

#define RD_CTRL_SLOTS	 16 /* pre-posted control receive buffers */
#define RD_CTRL_SLOT_LEN (RDMIG_WIRE_HDR_LEN + RDMIG_CTRL_MAX_PAYLOAD)
/* The control send buffer: one frame, then the constant KEEPALIVE frame. */
#define RD_CTRL_SBUF_LEN  (RD_CTRL_SLOT_LEN + RD_FRAME_LEN)
#define RD_CTRL_DEPTH	  8  /* control send queue: sends wait for completion */
#define RD_FRAME_LEN	  64 /* data-channel frames: FENCE, CREDIT, STREAM_EOF */
#define RD_DEFAULT_DEPTH  256
#define RD_MIN_DEPTH	  4
#define RD_DEFAULT_INLINE 64
#define RD_MAX_SGE	  16
#define RD_POST_BATCH	  16 /* work requests per ibv_post_send call */
#define RD_MAX_RD_ATOM	  16 /* RDMA READs in flight per queue pair, each way */
/*
 * A reader polls the send CQ itself this long before it sleeps until the
 * progress thread reaps the completion: a post-copy page fault waits on it,
 * and the way through the completion channel and the progress thread adds
 * two thread wake-ups to every read. RDMIG_RDMA_READ_SPIN_US
 * (0..10000) overrides it for experiments.
 */
#define RD_READ_SPIN_NS	 (50 * 1000)
#define RD_WAIT_SLICE_MS 100
/*
 * Largest single RDMA WRITE: bigger runs are split. Large messages on the
 * software device (rxe) under emulation retransmit whole messages on a
 * timeout and may never complete; 256 KiB is still efficient on hardware.
 * RDMIG_RDMA_MAX_WR (bytes) overrides it for experiments.
 */
#define RD_DEFAULT_MAX_WR (256u << 10)
/* rdma_cm ACK timeout exponent: 4.096 us * 2^18 = about 1 s per retry. */
#define RD_ACK_TIMEOUT 18
#define RD_RESOLVE_MS  2000

/* Work request kinds, in the top byte of wr_id, to name what failed. */
enum rd_kind {
	RD_K_WRITE = 1,
	RD_K_FENCE,
	RD_K_CREDIT,
	RD_K_EOF,
	RD_K_STREAM,
	RD_K_CTRL,
	RD_K_KEEPALIVE,
	RD_K_READ,
};
#define RD_SEQ_MASK ((1ULL << 56) - 1)

/* A received frame waiting for its consumer (control message or fence). */
struct rd_rxq_ent {
	uint32_t slot;
	uint32_t len;
	struct rdmig_fence fence; /* data channels: the decoded FENCE */
};

struct rd_conn;

struct rd_chan {
	struct rd_conn *rc;
	bool is_ctrl;
	uint16_t index; /* RDMIG_CHAN_CTRL or the data channel index */
	char name[24];	/* "control channel", "data channel 3" */

	struct rdma_cm_id *id;
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *qp;
	bool qp_created, established;
	struct rdmig_wire_hello peer; /* the peer's HELLO for this channel */

	/* Fixed at setup. */
	unsigned depth;	     /* send queue slots */
	unsigned sig_every;  /* signal every Nth send WR */
	unsigned max_inline; /* as granted by the device */
	unsigned max_sge;    /* send SGEs per WR */
	unsigned nrecv;	     /* pre-posted receive buffers */
	size_t rslot;	     /* bytes per receive buffer */

	bool locks_init;
	/* ---- send side: tx_lock ---- */
	pthread_mutex_t tx_lock;
	pthread_cond_t tx_cond;
	uint64_t post_seq; /* send WRs posted; the nth WR has seq n */
	uint64_t done_seq; /* highest seq known complete (signaled completion reaped) */
	unsigned unsig;	   /* unsignaled WRs since the last signaled one */
	uint64_t *mark;	   /* [seq % depth]: stream tx_pos after that WR */
	uint8_t *frames;   /* [seq % depth]: small frames being sent */
	struct ibv_mr *frames_mr;
	uint8_t *sbuf; /* control: one whole outgoing frame */
	struct ibv_mr *sbuf_mr;
	/* stream sender */
	uint8_t *stage; /* mirrors the peer's ring: byte i of the stream at i % size */
	struct ibv_mr *stage_mr;
	uint64_t tx_pos;	/* stream bytes posted */
	uint64_t tx_done;	/* stream bytes whose WRITE completed locally */
	uint64_t peer_consumed; /* from the peer's last CREDIT */
	bool eof_sent;

	/* ---- receive side: rx_lock ---- */
	pthread_mutex_t rx_lock;
	pthread_cond_t rx_cond;
	uint8_t *rbuf;
	struct ibv_mr *rbuf_mr;
	unsigned rq_posted;	/* receive WRs currently posted */
	struct rd_rxq_ent *rxq; /* nrecv entries */
	unsigned rxq_head, rxq_count;
	/* stream receiver: this side's ring, written by the peer; set up after auth */
	uint8_t *ring;
	struct ibv_mr *ring_mr;
	uint64_t ring_size;
	uint64_t rx_written;  /* bytes the peer announced (sum of immediates) */
	uint64_t rx_consumed; /* bytes handed to the application */
	uint64_t credit_sent; /* rx_consumed value of the last CREDIT */
	bool eof_rcvd;
};

struct rd_conn {
	struct rdmig_conn base; /* first: transport.c allocates and frees it */
	bool inited;
	atomic_bool closing; /* drain started: errors from here on are expected */
	/*
	 * Set (release) once base.fail is completely written by rd_fail() or
	 * after rdmig_conn_abort() (rd_wake): rdmig_err_slot_put() marks the
	 * slot taken before it copies the message in.
	 */
	atomic_bool fail_ready;
	atomic_bool fail_claim; /* the rd_fail() that won publishes fail_ready */

	struct rdma_event_channel *ec;
	struct ibv_context *verbs; /* borrowed from the first id */
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_device_attr dattr;
	struct ibv_port_attr pattr;
	uint64_t max_wr_bytes; /* split RDMA WRITEs above this */
	uint64_t read_spin_ns; /* RD_READ_SPIN_NS, or RDMIG_RDMA_READ_SPIN_US (experiments) */
	uint64_t token;

	pthread_t thr;
	bool thr_started;
	int wake_fd; /* eventfd; -1 when absent */
	atomic_bool stop;

	pthread_mutex_t ctrl_send_lock; /* one control send at a time (one sbuf) */

	pthread_mutex_t gone_lock; /* gone_msg */
	atomic_bool peer_gone;
	bool gone_from_event;
	char gone_msg[160];

	/*
	 * Keepalive (peer announced RDMIG_CAP_KEEPALIVE): the progress thread
	 * sends one every RDMIG_KEEPALIVE_INTERVAL_MS and fails the connection
	 * when nothing at all was received for peer_timeout_ms. Only the
	 * progress thread touches ka_*; last_rx_ms is written by it too.
	 */
	bool ka_on;
	int peer_timeout_ms;
	int64_t ka_sent_ms;
	_Atomic int64_t last_rx_ms;

	unsigned nch;				   /* 1 + nchan */
	struct rd_chan ch[RDMIG_MAX_CHANNELS + 1]; /* [0] control, [1 + i] data i */
};

/*
 * Accepting side: connect requests are grouped by the token of their HELLO
 * until the control channel and every data channel of a connection have
 * arrived; only then are they accepted. Incomplete groups are kept across
 * rd_accept() calls, at most RD_MAX_PENDING of them and RD_PENDING_PER_ADDR
 * per peer address (past that the oldest goes: rdmig_limit_victim()), each
 * until it expires.
 */
#define RD_MAX_PENDING	    32
#define RD_PENDING_PER_ADDR 16
struct rd_pending {
	bool used;
	uint64_t token;
	uint16_t nchan;
	unsigned have;
	int64_t since, expires;			       /* rdmig_now_ms() */
	char addr[RDMIG_ADDR_MAX];		       /* the peer's address: the limits' key */
	char peer[64];				       /* address and port, for messages */
	struct rdma_cm_id *id[RDMIG_MAX_CHANNELS + 1]; /* [0] control, [1 + i] data i */
	struct rdmig_wire_hello hello[RDMIG_MAX_CHANNELS + 1];
	/* Each request's RDMA READ resources, as this side must see them (rdma_accept(3)). */
	uint8_t resp[RDMIG_MAX_CHANNELS + 1], init[RDMIG_MAX_CHANNELS + 1];
};

/* Only the listener thread (accept.c) touches it, from listen to close. */
struct rd_listener {
	struct rdmig_listener base; /* first: transport.c allocates and frees it */
	bool inited;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct rd_pending pend[RD_MAX_PENDING];
};

static inline struct rd_conn *to_rd(struct rdmig_conn *c)
{
	return container_of(c, struct rd_conn, base);
}

static inline struct rd_chan *rd_data(struct rd_conn *rc, unsigned chan)
{
	return &rc->ch[1 + chan];
}

/* ---- rdma_progress.c: failure state, completions, the progress thread ---- */

/* Wait at most one slice; returns -ETIMEDOUT once `deadline` (ms, -1 none) passed. */
int rd_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline);
/* Broadcast every channel's conditions without locking: safe under any lock. */
void rd_kick_all(struct rd_conn *rc);
/* Record a fatal error (first wins), wake every waiter; returns the first code. */
int rd_fail(struct rd_conn *rc, struct rdmig_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 0 if alive, else the first error's code (and message into err). */
int rd_failed(struct rd_conn *rc, struct rdmig_err *err);
/*
 * The peer went away (DISCONNECTED, or our queue pair was flushed). What was
 * already received stays readable; the connection fails (-ECONNRESET) when a
 * caller finds nothing left to read, or at once for senders (rd_check).
 */
void rd_peer_gone(struct rd_conn *rc, bool from_event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* rd_failed(), plus: fail the connection now if the peer is gone. */
int rd_check(struct rd_conn *rc, struct rdmig_err *err);
const char *rd_kind_name(enum rd_kind k);
/* Reap a channel's send CQ (caller holds ch->tx_lock): progress thread and senders. */
void rd_reap_send(struct rd_chan *ch);
/* Reap a channel's recv CQ (takes rx_lock): progress thread only. */
void rd_reap_rx(struct rd_chan *ch);
/* Reap a channel's recv CQ, rx_lock held: the progress thread, or drain once it stopped. */
void rd_reap_recv(struct rd_chan *ch);
/* Once all channels are up: arm the CQs and start the progress thread. */
int rd_conn_start(struct rd_conn *rc, struct rdmig_err *err);
/* Stop and join the progress thread, if it was started. */
void rd_progress_stop(struct rd_conn *rc);

/* ---- rdma.c: setup and teardown ---- */

void rd_conn_init(struct rd_conn *rc);
/* Device query, PD and completion channel, from the first channel's verbs context. */
int rd_dev_setup(struct rd_conn *rc, struct ibv_context *verbs, uint8_t port,
		 struct rdmig_err *err);
/* CQs, QP (on ch->id), buffers, receive ring, pre-posted receives. */
int rd_chan_setup(struct rd_chan *ch, struct rdmig_err *err);
/* Fill our HELLO (or HELLO_ACK) for a channel. */
void rd_hello_make(struct rd_chan *ch, struct rdmig_wire_hello *h);
/* Check a decoded HELLO on its own: role, control size, stream ring. */
int rd_hello_check(const struct rdmig_wire_hello *h, enum rdmig_role role, struct rdmig_err *err);
/* Check the peer's HELLO for a channel (also token, index, count) and remember it. */
int rd_hello_accept(struct rd_chan *ch, const struct rdmig_wire_hello *h, struct rdmig_err *err);
/*
 * Connection parameters of a channel. RDMA READ resources both ways: what
 * the device allows, at most RD_MAX_RD_ATOM, and on the accepting side at
 * most what the connect request reported (peer_resp: the connector's
 * initiator depth; peer_init: its responder resources); the connector
 * passes RDMA_MAX_RESP_RES / RDMA_MAX_INIT_DEPTH, "no bound".
 */
void rd_rdma_conn_param(struct rdma_conn_param *p, const struct rd_conn *rc, uint8_t peer_resp,
			uint8_t peer_init, const void *pdata, uint8_t len);
/* Receive buffer and memory helpers. */
int rd_buf_alloc(struct rd_conn *rc, size_t len, int access, uint8_t **buf, struct ibv_mr **mr,
		 const char *what, struct rdmig_err *err);
void rd_buf_free(uint8_t **buf, struct ibv_mr **mr, size_t len);

/* ---- rdma_data.c: posting and the data operations ---- */

/*
 * Send side (caller holds ch->tx_lock). rd_wr_prep assigns the next seq and
 * the signaled flag; rd_post_chain posts; rd_wait_seq waits until `seq` is
 * complete, polling the send CQ itself for the first spin_ns (0: none)
 * before it sleeps. A caller checks the send queue has room before it posts.
 */
uint64_t rd_wr_prep(struct rd_chan *ch, struct ibv_send_wr *wr, enum rd_kind kind, bool force);
int rd_post_chain(struct rd_chan *ch, struct ibv_send_wr *wr, struct rdmig_err *err);
int rd_wait_seq(struct rd_chan *ch, uint64_t seq, int64_t deadline, uint64_t spin_ns,
		struct rdmig_err *err);
/* Post one SEND of len bytes at buf (registered under lkey; inline when it fits). */
int rd_post_send(struct rd_chan *ch, const void *buf, uint32_t len, uint32_t lkey,
		 enum rd_kind kind, bool force_signal, uint64_t *seq, struct rdmig_err *err);
/* Post a small frame (header + payload <= RD_FRAME_LEN) on a data channel. */
int rd_post_frame(struct rd_chan *ch, uint8_t type, const void *payload, uint32_t plen,
		  enum rd_kind kind, bool force_signal, uint64_t *seq, struct rdmig_err *err);
/* Post receive buffer `slot` again (setup, or once its frame is consumed). */
int rd_post_recv(struct rd_chan *ch, uint32_t slot);
/* The data operations of the ops table. */
int rd_ctrl_send(struct rdmig_conn *c, const void *msg, size_t len, struct rdmig_err *err);
int rd_ctrl_recv(struct rdmig_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms,
		 struct rdmig_err *err);
int rd_write(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
	     struct rdmig_err *err);
int rd_fence(struct rdmig_conn *c, unsigned chan, const struct rdmig_fence *f,
	     struct rdmig_err *err);
int rd_wait_fence(struct rdmig_conn *c, unsigned chan, int timeout_ms, struct rdmig_fence *f,
		  struct rdmig_err *err);
int rd_read(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
	    struct rdmig_err *err);

/* ---- rdma_cm.c ---- */
int rd_connect(struct rdmig_conn *c, struct rdmig_err *err);
int rd_listen(struct rdmig_listener *l, struct rdmig_err *err);
int rd_accept(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn *c,
	      struct rdmig_err *err);
/* Handshake thread: wait until every channel is established, start the progress thread. */
int rd_accept_finish(struct rdmig_conn *c, int64_t deadline, struct rdmig_err *err);
void rd_listener_close(struct rdmig_listener *l);
/* Progress thread: handle pending events of the connection's event channel. */
void rd_cm_events(struct rd_conn *rc);

/* ---- rdma_stream.c ---- */
ssize_t rd_stream_send_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
			  struct rdmig_err *err);
ssize_t rd_stream_recv_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max, int timeout_ms,
			  struct rdmig_err *err);
int rd_stream_send(struct rdmig_conn *c, unsigned chan, const void *buf, size_t len,
		   struct rdmig_err *err);
ssize_t rd_stream_recv(struct rdmig_conn *c, unsigned chan, void *buf, size_t cap, int timeout_ms,
		       struct rdmig_err *err);
int rd_stream_shutdown(struct rdmig_conn *c, unsigned chan, struct rdmig_err *err);
/* Progress thread, rx_lock held: a WRITE_WITH_IMM announced `n` bytes. */
int rd_stream_rx_data(struct rd_chan *ch, uint32_t n, char *why, size_t whylen);
/* Progress thread, rx_lock held: a CREDIT arrived. */
int rd_stream_rx_credit(struct rd_chan *ch, uint64_t consumed, char *why, size_t whylen);
void rd_stream_free(struct rd_chan *ch);
/*
 * After authentication, both sides: register this side's receive rings for
 * remote write, send their addresses and keys in RINGS, take the peer's.
 */
int rd_post_auth(struct rdmig_conn *c, struct rdmig_err *err);

#endif
