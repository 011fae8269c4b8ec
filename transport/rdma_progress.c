/* SPDX-License-Identifier: MIT */
/*
 * rdma backend, connection health and progress: the first-error slot and
 * the peer-gone state every waiter checks, the progress thread that reaps
 * completions (send and receive CQs, received frames queued or consumed)
 * and rdma_cm events, and the keepalive that calls a silent peer dead.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "rdma_int.h"

/* ---- time and waiting ------------------------------------------------- */

int rd_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline)
{
	int64_t now = rdmig_now_ms(), until = now + RD_WAIT_SLICE_MS;
	struct timespec ts;

	if (deadline >= 0) {
		if (now >= deadline)
			return -ETIMEDOUT;
		if (deadline < until)
			until = deadline;
	}
	ts.tv_sec = until / 1000;
	ts.tv_nsec = (until % 1000) * 1000000;
	pthread_cond_timedwait(cv, mu, &ts);
	return 0;
}

/* ---- failure ----------------------------------------------------------- */

void rd_kick_all(struct rd_conn *rc)
{
	for (unsigned i = 0; i < rc->nch; i++) {
		if (!rc->ch[i].locks_init)
			continue;
		pthread_cond_broadcast(&rc->ch[i].tx_cond);
		pthread_cond_broadcast(&rc->ch[i].rx_cond);
	}
}

int rd_fail(struct rd_conn *rc, struct rdmig_err *err, int code, const char *fmt, ...)
{
	char msg[RDMIG_ERR_MSG_MAX];
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!atomic_load(&rc->base.fail.taken) && !atomic_load(&rc->closing))
		log_warn("rdma: %s", msg);
	if (atomic_exchange(&rc->fail_claim, true)) {
		/* Another thread is recording the first error: report that one. */
		for (int i = 0;
		     i < 2000 && !atomic_load_explicit(&rc->fail_ready, memory_order_acquire); i++)
			sched_yield();
		ret = rd_failed(rc, err);
		if (!ret)
			ret = rdmig_seterr(err, code, "%s", msg);
	} else {
		ret = rdmig_conn_fail(&rc->base, err, code, "%s", msg);
		atomic_store_explicit(&rc->fail_ready, true, memory_order_release);
	}
	rd_kick_all(rc);
	return ret;
}

int rd_failed(struct rd_conn *rc, struct rdmig_err *err)
{
	int code;

	if (!atomic_load(&rc->base.fail.taken))
		return 0;
	/*
	 * The slot is taken before its message is written. Failures recorded
	 * by rd_fail() or an abort publish fail_ready; one recorded directly by
	 * transport.c does not, so wait a little and then read it anyway.
	 */
	for (int i = 0; i < 2000 && !atomic_load_explicit(&rc->fail_ready, memory_order_acquire);
	     i++)
		sched_yield();
	code = rc->base.fail.err.code;
	if (!code)
		return rdmig_seterr(err, -ECONNABORTED, "connection failed");
	if (err && !err->code)
		*err = rc->base.fail.err;
	return code;
}

void rd_peer_gone(struct rd_conn *rc, bool from_event, const char *fmt, ...)
{
	va_list ap;

	if (atomic_load(&rc->closing))
		return;
	pthread_mutex_lock(&rc->gone_lock);
	/* An rdma_cm event names the cause better than a flushed queue does. */
	if (!atomic_load(&rc->peer_gone) || (from_event && !rc->gone_from_event)) {
		va_start(ap, fmt);
		vsnprintf(rc->gone_msg, sizeof(rc->gone_msg), fmt, ap);
		va_end(ap);
		rc->gone_from_event = from_event;
		atomic_store(&rc->peer_gone, true);
	}
	pthread_mutex_unlock(&rc->gone_lock);
	rd_kick_all(rc);
}

int rd_check(struct rd_conn *rc, struct rdmig_err *err)
{
	char msg[sizeof(rc->gone_msg)];
	int ret = rd_failed(rc, err);

	if (ret || !atomic_load(&rc->peer_gone))
		return ret;
	pthread_mutex_lock(&rc->gone_lock);
	memcpy(msg, rc->gone_msg, sizeof(msg));
	pthread_mutex_unlock(&rc->gone_lock);
	return rd_fail(rc, err, -ECONNRESET, "%s", msg);
}

const char *rd_kind_name(enum rd_kind k)
{
	switch (k) {
	case RD_K_WRITE:
		return "RDMA WRITE";
	case RD_K_FENCE:
		return "SEND of FENCE";
	case RD_K_CREDIT:
		return "SEND of CREDIT";
	case RD_K_EOF:
		return "SEND of STREAM_EOF";
	case RD_K_STREAM:
		return "RDMA WRITE_WITH_IMM of stream data";
	case RD_K_CTRL:
		return "SEND of a control message";
	case RD_K_KEEPALIVE:
		return "SEND of KEEPALIVE";
	case RD_K_READ:
		return "RDMA READ";
	}
	return "work request";
}

static int wc_status_errno(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_PROT_ERR:
	case IBV_WC_LOC_ACCESS_ERR:
		return -EACCES;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return -ETIMEDOUT;
	case IBV_WC_LOC_LEN_ERR:
	case IBV_WC_REM_INV_REQ_ERR:
		return -EPROTO;
	default:
		return -EIO;
	}
}

static void rd_wc_error(struct rd_chan *ch, const struct ibv_wc *wc, bool recv)
{
	struct rd_conn *rc = ch->rc;

	if (atomic_load(&rc->closing))
		return;
	if (wc->status == IBV_WC_WR_FLUSH_ERR) {
		/* The queue pair went to the error state: the peer disconnected. */
		rd_peer_gone(rc, false, "peer closed the connection (queue pair of %s flushed)",
			     ch->name);
		return;
	}
	/* Say who refused: the reader's user must know it was the peer's memory. */
	if (!recv && (enum rd_kind)(wc->wr_id >> 56) == RD_K_READ &&
	    (wc->status == IBV_WC_REM_ACCESS_ERR || wc->status == IBV_WC_REM_INV_REQ_ERR)) {
		rd_fail(rc, NULL, -EACCES,
			"the peer refused an RDMA READ on %s: %s (%s) (wc status %d, vendor "
			"error 0x%x)",
			ch->name, ibv_wc_status_str(wc->status),
			wc->status == IBV_WC_REM_ACCESS_ERR
			    ? "its region was revoked or is not exposed for reading"
			    : "it grants no RDMA READ resources: an rdmig without post-copy reads?",
			wc->status, wc->vendor_err);
		return;
	}
	rd_fail(rc, NULL, wc_status_errno(wc->status),
		"%s failed on %s: %s (wc status %d, vendor error 0x%x)",
		recv ? "receive" : rd_kind_name((enum rd_kind)(wc->wr_id >> 56)), ch->name,
		ibv_wc_status_str(wc->status), wc->status, wc->vendor_err);
}

/* ---- progress thread --------------------------------------------------- */

void rd_reap_send(struct rd_chan *ch)
{
	struct ibv_wc wc[16];
	bool progress = false;
	int n;

	if (!ch->scq)
		return;
	do {
		n = ibv_poll_cq(ch->scq, 16, wc);
		for (int i = 0; i < n; i++) {
			uint64_t seq = wc[i].wr_id & RD_SEQ_MASK;

			if (wc[i].status != IBV_WC_SUCCESS) {
				rd_wc_error(ch, &wc[i], false);
				progress = true;
				continue;
			}
			/* A signaled completion retires every earlier WR of the QP. */
			if (seq > ch->done_seq) {
				ch->done_seq = seq;
				if (ch->mark[seq % ch->depth] > ch->tx_done)
					ch->tx_done = ch->mark[seq % ch->depth];
				progress = true;
			}
		}
	} while (n == 16);
	if (n < 0)
		rd_fail(ch->rc, NULL, -EIO, "%s: ibv_poll_cq(send) failed", ch->name);
	if (progress)
		pthread_cond_broadcast(&ch->tx_cond);
}

static void rxq_push(struct rd_chan *ch, uint32_t slot, uint32_t len, const struct rdmig_fence *f)
{
	struct rd_rxq_ent *e = &ch->rxq[(ch->rxq_head + ch->rxq_count) % ch->nrecv];

	e->slot = slot;
	e->len = len;
	if (f)
		e->fence = *f;
	ch->rxq_count++;
}

/* A SEND received on a data channel: FENCE, CREDIT or STREAM_EOF. */
static int data_frame(struct rd_chan *ch, uint32_t slot, uint32_t len, bool *repost, char *why,
		      size_t whylen)
{
	const uint8_t *p = ch->rbuf + (size_t)slot * ch->rslot;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr h;
	struct rdmig_fence f;
	uint64_t consumed;

	*repost = true;
	if (rdmig_wire_hdr_decode(p, len, RDMIG_CTRL_MAX_PAYLOAD, &h, &e))
		goto bad;
	if (RDMIG_WIRE_HDR_LEN + (size_t)h.length != len) {
		rdmig_seterr(&e, -EPROTO, "%s frame of %u bytes says its payload is %u bytes",
			     rdmig_msg_type_name(h.type), len, h.length);
		goto bad;
	}
	if (h.chan != ch->index) {
		rdmig_seterr(&e, -EPROTO, "%s for channel %u", rdmig_msg_type_name(h.type), h.chan);
		goto bad;
	}
	switch (h.type) {
	case RDMIG_MSG_FENCE:
		if (rdmig_wire_fence_decode(p + RDMIG_WIRE_HDR_LEN, h.length, &f, &e))
			goto bad;
		/* The slot comes back when the fence is consumed: that bounds the queue. */
		rxq_push(ch, slot, len, &f);
		*repost = false;
		pthread_cond_broadcast(&ch->rx_cond);
		return 0;
	case RDMIG_MSG_CREDIT:
		if (rdmig_wire_credit_decode(p + RDMIG_WIRE_HDR_LEN, h.length, &consumed, &e))
			goto bad;
		return rd_stream_rx_credit(ch, consumed, why, whylen);
	case RDMIG_MSG_STREAM_EOF:
		if (ch->eof_rcvd) {
			snprintf(why, whylen, "second STREAM_EOF");
			return -EPROTO;
		}
		ch->eof_rcvd = true;
		pthread_cond_broadcast(&ch->rx_cond);
		return 0;
	default:
		rdmig_seterr(&e, -EPROTO, "unexpected %s on a data channel",
			     rdmig_msg_type_name(h.type));
		goto bad;
	}
bad:
	snprintf(why, whylen, "%s", rdmig_err_str(&e));
	return e.code ? e.code : -EPROTO;
}

/* A well-formed KEEPALIVE on the control channel (anything else is queued). */
static bool is_keepalive(struct rd_chan *ch, uint32_t slot, uint32_t len)
{
	struct rdmig_wire_hdr h;

	return len == RDMIG_WIRE_HDR_LEN &&
	       !rdmig_wire_hdr_decode(ch->rbuf + (size_t)slot * ch->rslot, len,
				      RDMIG_CTRL_MAX_PAYLOAD, &h, NULL) &&
	       h.type == RDMIG_MSG_KEEPALIVE && h.length == 0;
}

void rd_reap_recv(struct rd_chan *ch)
{
	struct rd_conn *rc = ch->rc;
	struct ibv_wc wc[16];
	char why[RDMIG_ERR_MSG_MAX];
	int n, ret;

	do {
		n = ibv_poll_cq(ch->rcq, 16, wc);
		for (int i = 0; i < n; i++) {
			uint32_t slot = (uint32_t)wc[i].wr_id;
			bool repost = true;

			ch->rq_posted--;
			if (wc[i].status != IBV_WC_SUCCESS) {
				rd_wc_error(ch, &wc[i], true);
				continue;
			}
			if (atomic_load(&rc->closing))
				continue;
			/* Anything from the peer proves it alive, not only KEEPALIVE. */
			atomic_store_explicit(&rc->last_rx_ms, rdmig_now_ms(),
					      memory_order_relaxed);
			ret = 0;
			if (ch->is_ctrl) {
				if (wc[i].opcode == IBV_WC_RECV &&
				    is_keepalive(ch, slot, wc[i].byte_len)) {
					/* Consumed here: the application never sees it. */
				} else if (wc[i].opcode != IBV_WC_RECV) {
					snprintf(why, sizeof(why),
						 "unexpected RDMA write with "
						 "immediate");
					ret = -EPROTO;
				} else {
					rxq_push(ch, slot, wc[i].byte_len, NULL);
					repost = false;
					pthread_cond_broadcast(&ch->rx_cond);
				}
			} else if (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
				ret = rd_stream_rx_data(ch, be32toh(wc[i].imm_data), why,
							sizeof(why));
			} else if (wc[i].opcode == IBV_WC_RECV) {
				ret =
				    data_frame(ch, slot, wc[i].byte_len, &repost, why, sizeof(why));
			} else {
				snprintf(why, sizeof(why), "unexpected completion opcode %d",
					 wc[i].opcode);
				ret = -EPROTO;
			}
			if (ret) {
				rd_fail(rc, NULL, ret, "malformed message from peer on %s: %s",
					ch->name, why);
				continue;
			}
			if (repost && (ret = rd_post_recv(ch, slot)))
				rd_fail(rc, NULL, ret, "%s: ibv_post_recv: %s", ch->name,
					strerror(-ret));
		}
	} while (n == 16);
	if (n < 0)
		rd_fail(rc, NULL, -EIO, "%s: ibv_poll_cq(recv) failed", ch->name);
}

static void reap_chan(struct rd_chan *ch, struct ibv_cq *cq)
{
	if (cq == ch->scq) {
		pthread_mutex_lock(&ch->tx_lock);
		rd_reap_send(ch);
		pthread_mutex_unlock(&ch->tx_lock);
	} else {
		pthread_mutex_lock(&ch->rx_lock);
		rd_reap_recv(ch);
		pthread_mutex_unlock(&ch->rx_lock);
	}
}

void rd_reap_rx(struct rd_chan *ch)
{
	if (ch->rcq)
		reap_chan(ch, ch->rcq);
}

static void rd_cq_events(struct rd_conn *rc)
{
	struct ibv_cq *cq;
	void *ctx;

	while (!ibv_get_cq_event(rc->cc, &cq, &ctx)) {
		ibv_ack_cq_events(cq, 1);
		/* Re-arm before reaping so that nothing lands unnoticed in between. */
		if (ibv_req_notify_cq(cq, 0))
			rd_fail(rc, NULL, -EIO, "ibv_req_notify_cq failed");
		reap_chan(ctx, cq);
	}
}

/*
 * Progress thread: send a KEEPALIVE when one is due and call the peer dead
 * when nothing arrived for peer_timeout_ms. The keepalive is a constant
 * frame in its own part of the control send buffer, so it needs no
 * completion before the next one; it is skipped (not waited for) while the
 * send queue is full. Returns the milliseconds until the next tick.
 */
static int rd_keepalive_tick(struct rd_conn *rc)
{
	struct rd_chan *ch = &rc->ch[0];
	int64_t now = rdmig_now_ms();
	int64_t heard = atomic_load_explicit(&rc->last_rx_ms, memory_order_relaxed);
	uint64_t seq;

	if (!rc->ka_on || atomic_load(&rc->closing) || atomic_load(&rc->base.fail.taken) ||
	    atomic_load(&rc->peer_gone))
		return -1;
	if (now - heard > rc->peer_timeout_ms) {
		rd_fail(rc, NULL, -ETIMEDOUT,
			"nothing received from the peer for %.1f s (limit %.1f s): the peer "
			"or the network is down",
			(double)(now - heard) / 1e3, (double)rc->peer_timeout_ms / 1e3);
		return -1;
	}
	if (now - rc->ka_sent_ms >= RDMIG_KEEPALIVE_INTERVAL_MS) {
		pthread_mutex_lock(&ch->tx_lock);
		rd_reap_send(ch);
		if (ch->post_seq - ch->done_seq < ch->depth &&
		    !rd_post_send(ch, ch->sbuf + RD_CTRL_SLOT_LEN, RDMIG_WIRE_HDR_LEN,
				  ch->sbuf_mr->lkey, RD_K_KEEPALIVE, false, &seq, NULL))
			rc->ka_sent_ms = now;
		pthread_mutex_unlock(&ch->tx_lock);
	}
	return (int)(rc->ka_sent_ms + RDMIG_KEEPALIVE_INTERVAL_MS - now > 0
			 ? rc->ka_sent_ms + RDMIG_KEEPALIVE_INTERVAL_MS - now
			 : 1);
}

static void *rd_progress(void *arg)
{
	struct rd_conn *rc = arg;
	struct pollfd pfd[3] = {
	    {.fd = rc->cc->fd, .events = POLLIN},
	    {.fd = rc->ec->fd, .events = POLLIN},
	    {.fd = rc->wake_fd, .events = POLLIN},
	};

	/* Completions that arrived before the CQs were armed. */
	for (unsigned i = 0; i < rc->nch; i++) {
		reap_chan(&rc->ch[i], rc->ch[i].rcq);
		reap_chan(&rc->ch[i], rc->ch[i].scq);
	}
	while (!atomic_load(&rc->stop)) {
		int wait_ms = rd_keepalive_tick(rc);

		if (poll(pfd, 3, wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			rd_fail(rc, NULL, rdmig_neg_errno(), "rdma progress thread: poll: %s",
				strerror(errno));
			break;
		}
		/* Completions first: what arrived before a disconnect stays readable. */
		if (pfd[0].revents)
			rd_cq_events(rc);
		if (pfd[1].revents)
			rd_cm_events(rc);
		if (pfd[2].revents) {
			uint64_t v;

			if (read(rc->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
		}
	}
	return NULL;
}

int rd_conn_start(struct rd_conn *rc, struct rdmig_err *err)
{
	int ret;

	rc->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rc->wake_fd < 0) {
		rc->wake_fd = -1;
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "eventfd");
	}
	if (fcntl(rc->ec->fd, F_SETFL, fcntl(rc->ec->fd, F_GETFL) | O_NONBLOCK))
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "event channel O_NONBLOCK");
	for (unsigned i = 0; i < rc->nch; i++) {
		if (ibv_req_notify_cq(rc->ch[i].scq, 0) || ibv_req_notify_cq(rc->ch[i].rcq, 0))
			return rdmig_seterr(err, -EIO, "%s: ibv_req_notify_cq failed",
					    rc->ch[i].name);
	}
	/* Keepalives only to and from a peer that announced them. */
	rc->ka_on = rc->base.peer_caps & RDMIG_CAP_KEEPALIVE;
	rc->peer_timeout_ms = rc->base.cfg.peer_timeout_ms;
	rdmig_wire_hdr_encode(rc->ch[0].sbuf + RD_CTRL_SLOT_LEN, RDMIG_MSG_KEEPALIVE,
			      RDMIG_CHAN_CTRL, 0, 0);
	rc->ka_sent_ms = 0;
	atomic_store(&rc->last_rx_ms, rdmig_now_ms());
	ret = pthread_create(&rc->thr, NULL, rd_progress, rc);
	if (ret)
		return rdmig_seterr_errno(err, -ret, "rdma progress thread");
	rc->thr_started = true;
	return 0;
}

void rd_progress_stop(struct rd_conn *rc)
{
	uint64_t one = 1;

	if (!rc->thr_started)
		return;
	atomic_store(&rc->stop, true);
	if (write(rc->wake_fd, &one, sizeof(one)) < 0)
		log_warn("rdma: waking the progress thread: %s", strerror(errno));
	pthread_join(rc->thr, NULL);
	rc->thr_started = false;
}
