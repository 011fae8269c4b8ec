/* SPDX-License-Identifier: MIT */
/*
 * rdma backend: verbs resources, the progress thread, regions, control
 * messages, one-sided page writes and fences. Connection setup is in
 * rdma_cm.c, byte streams in rdma_stream.c; rdma_int.h says who owns what.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
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

static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

/* ---- failure ----------------------------------------------------------- */

/* Broadcast without locking: safe under any lock; waiters re-check each slice. */
static void rd_kick_all(struct rd_conn *rc)
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
	rd_fail(rc, NULL, wc_status_errno(wc->status),
		"%s failed on %s: %s (wc status %d, vendor error 0x%x)",
		recv ? "receive" : rd_kind_name((enum rd_kind)(wc->wr_id >> 56)), ch->name,
		ibv_wc_status_str(wc->status), wc->status, wc->vendor_err);
}

/* ---- memory ------------------------------------------------------------ */

int rd_buf_alloc(struct rd_conn *rc, size_t len, int access, uint8_t **buf, struct ibv_mr **mr,
		 const char *what, struct rdmig_err *err)
{
	void *p;
	int ret;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "%s: mmap of %zu bytes", what,
					  len);
	*mr = ibv_reg_mr(rc->pd, p, len, access);
	if (!*mr) {
		ret = rdmig_neg_errno();
		munmap(p, len);
		return rdmig_seterr_errno(err, ret,
					  "%s: ibv_reg_mr of %zu bytes (memlock limit? see "
					  "'ulimit -l')",
					  what, len);
	}
	*buf = p;
	return 0;
}

void rd_buf_free(uint8_t **buf, struct ibv_mr **mr, size_t len)
{
	if (*mr) {
		int ret = ibv_dereg_mr(*mr);

		if (ret)
			log_warn("rdma: ibv_dereg_mr: %s", strerror(ret));
		*mr = NULL;
	}
	if (*buf) {
		munmap(*buf, len);
		*buf = NULL;
	}
}

/* ---- setup ------------------------------------------------------------- */

void rd_conn_init(struct rd_conn *rc)
{
	rc->wake_fd = -1;
	rc->nch = 1 + rc->base.nchan;
	pthread_mutex_init(&rc->ctrl_send_lock, NULL);
	pthread_mutex_init(&rc->gone_lock, NULL);
	for (unsigned i = 0; i < rc->nch; i++) {
		struct rd_chan *ch = &rc->ch[i];

		ch->rc = rc;
		ch->is_ctrl = i == 0;
		ch->index = i == 0 ? RDMIG_CHAN_CTRL : (uint16_t)(i - 1);
		if (ch->is_ctrl)
			snprintf(ch->name, sizeof(ch->name), "control channel");
		else
			snprintf(ch->name, sizeof(ch->name), "data channel %u", i - 1);
		pthread_mutex_init(&ch->tx_lock, NULL);
		pthread_mutex_init(&ch->rx_lock, NULL);
		cond_init_mono(&ch->tx_cond);
		cond_init_mono(&ch->rx_cond);
		ch->locks_init = true;
	}
	rc->inited = true;
}

static unsigned mtu_bytes(enum ibv_mtu m)
{
	return m >= IBV_MTU_256 && m <= IBV_MTU_4096 ? 128u << m : 0;
}

int rd_dev_setup(struct rd_conn *rc, struct ibv_context *verbs, uint8_t port, struct rdmig_err *err)
{
	const char *dev = ibv_get_device_name(verbs->device);
	const char *env;
	int ret;

	ret = ibv_query_device(verbs, &rc->dattr);
	if (ret)
		return rdmig_seterr_errno(err, rdmig_neg_pos(ret), "ibv_query_device(%s)", dev);
	ret = ibv_query_port(verbs, port, &rc->pattr);
	if (ret)
		return rdmig_seterr_errno(err, rdmig_neg_pos(ret), "ibv_query_port(%s, %u)", dev,
					  port);
	if (rc->pattr.state != IBV_PORT_ACTIVE)
		return rdmig_seterr(err, -ENETDOWN, "RDMA device %s port %u is %s, not active", dev,
				    port, ibv_port_state_str(rc->pattr.state));
	/* rdma_cm takes the path MTU from the port's active_mtu; say what it is. */
	log_info("rdma: %s port %u: active_mtu %u, max_mtu %u, max_msg_sz %u, max_qp_wr %d, "
		 "max_sge %d, max_cqe %d",
		 dev, port, mtu_bytes(rc->pattr.active_mtu), mtu_bytes(rc->pattr.max_mtu),
		 rc->pattr.max_msg_sz, rc->dattr.max_qp_wr, rc->dattr.max_sge, rc->dattr.max_cqe);

	rc->max_wr_bytes = RD_DEFAULT_MAX_WR;
	env = getenv("RDMIG_RDMA_MAX_WR");
	if (env && strtoull(env, NULL, 0) >= 4096)
		rc->max_wr_bytes = strtoull(env, NULL, 0);
	if (rc->pattr.max_msg_sz && rc->max_wr_bytes > rc->pattr.max_msg_sz)
		rc->max_wr_bytes = rc->pattr.max_msg_sz;
	if (rc->max_wr_bytes > (1u << 30))
		rc->max_wr_bytes = 1u << 30;

	rc->verbs = verbs;
	rc->pd = ibv_alloc_pd(verbs);
	if (!rc->pd) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "ibv_alloc_pd(%s)", dev);
		goto out;
	}
	rc->cc = ibv_create_comp_channel(verbs);
	if (!rc->cc) {
		ret =
		    rdmig_seterr_errno(err, rdmig_neg_errno(), "ibv_create_comp_channel(%s)", dev);
		goto out_dealloc_pd;
	}
	if (fcntl(rc->cc->fd, F_SETFL, fcntl(rc->cc->fd, F_GETFL) | O_NONBLOCK)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "completion channel O_NONBLOCK");
		goto out_destroy_cc;
	}
	return 0;

out_destroy_cc:
	ibv_destroy_comp_channel(rc->cc);
	rc->cc = NULL;
out_dealloc_pd:
	ibv_dealloc_pd(rc->pd);
	rc->pd = NULL;
out:
	rc->verbs = NULL;
	return ret;
}

static unsigned clamp_u(unsigned v, unsigned lo, unsigned hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

int rd_post_recv(struct rd_chan *ch, uint32_t slot)
{
	struct ibv_sge sge = {
	    .addr = (uintptr_t)(ch->rbuf + (size_t)slot * ch->rslot),
	    .length = (uint32_t)ch->rslot,
	    .lkey = ch->rbuf_mr->lkey,
	};
	struct ibv_recv_wr wr = {.wr_id = slot, .sg_list = &sge, .num_sge = 1}, *bad;
	int ret = ibv_post_recv(ch->qp, &wr, &bad);

	if (ret)
		return rdmig_neg_pos(ret);
	ch->rq_posted++;
	return 0;
}

int rd_chan_setup(struct rd_chan *ch, struct rdmig_err *err)
{
	struct rd_conn *rc = ch->rc;
	const struct rdmig_xport_cfg *cfg = &rc->base.cfg;
	struct ibv_qp_init_attr qa;
	unsigned maxwr = (unsigned)rc->dattr.max_qp_wr, maxcqe = (unsigned)rc->dattr.max_cqe;
	unsigned want_inline;
	int ret, vec;

	if (ch->is_ctrl) {
		ch->depth = clamp_u(RD_CTRL_DEPTH, 1, maxwr);
		ch->nrecv = clamp_u(RD_CTRL_SLOTS, 1, maxwr);
		ch->rslot = RD_CTRL_SLOT_LEN;
	} else {
		ch->depth = cfg->depth ? cfg->depth : RD_DEFAULT_DEPTH;
		ch->depth = clamp_u(ch->depth, RD_MIN_DEPTH, maxwr);
		/* The peer has at most its own depth of sends in flight. */
		ch->nrecv = ch->depth;
		ch->rslot = RD_FRAME_LEN;
	}
	if (maxcqe && ch->depth + 1 > maxcqe)
		ch->depth = maxcqe - 1;
	if (maxcqe && ch->nrecv + 1 > maxcqe)
		ch->nrecv = maxcqe - 1;
	ch->sig_every = cfg->signal_every ? cfg->signal_every : ch->depth / 4;
	ch->sig_every = clamp_u(ch->sig_every, 1, ch->depth);
	ch->max_sge = clamp_u((unsigned)rc->dattr.max_sge, 1, RD_MAX_SGE);
	want_inline = cfg->inline_size ? cfg->inline_size : RD_DEFAULT_INLINE;

	/* Memory first, so that the QP goes before the buffers it points to. */
	ch->mark = calloc(ch->depth, sizeof(*ch->mark));
	ch->rxq = calloc(ch->nrecv, sizeof(*ch->rxq));
	if (!ch->mark || !ch->rxq) {
		ret = rdmig_seterr(err, -ENOMEM, "%s: out of memory", ch->name);
		goto out_free_arrays;
	}
	ret = rd_buf_alloc(rc, ch->nrecv * ch->rslot, IBV_ACCESS_LOCAL_WRITE, &ch->rbuf,
			   &ch->rbuf_mr, "receive buffers", err);
	if (ret)
		goto out_free_arrays;
	if (ch->is_ctrl)
		ret = rd_buf_alloc(rc, RD_CTRL_SBUF_LEN, IBV_ACCESS_LOCAL_WRITE, &ch->sbuf,
				   &ch->sbuf_mr, "control send buffer", err);
	else
		ret = rd_buf_alloc(rc, (size_t)ch->depth * RD_FRAME_LEN, IBV_ACCESS_LOCAL_WRITE,
				   &ch->frames, &ch->frames_mr, "frame buffers", err);
	if (ret)
		goto out_free_rbuf;
	if (!ch->is_ctrl) {
		/* The stream receive ring: the peer writes into it, nothing else may. */
		ch->ring_size = cfg->stream_ring;
		ret = rd_buf_alloc(rc, ch->ring_size,
				   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &ch->ring,
				   &ch->ring_mr, "stream receive ring", err);
		if (ret)
			goto out_free_sbuf;
	}

	vec = 0;
	if (!ch->is_ctrl && cfg->comp_vector && ch->index < cfg->ncomp_vector &&
	    cfg->comp_vector[ch->index] > 0 && rc->verbs->num_comp_vectors > 0)
		vec = cfg->comp_vector[ch->index] % rc->verbs->num_comp_vectors;
	if (vec)
		log_debug("%s: completion vector %d of %d", ch->name, vec,
			  rc->verbs->num_comp_vectors);
	ch->scq = ibv_create_cq(rc->verbs, (int)ch->depth + 1, ch, rc->cc, vec);
	if (!ch->scq) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "%s: ibv_create_cq(send, %u)",
					 ch->name, ch->depth + 1);
		goto out_free_ring;
	}
	ch->rcq = ibv_create_cq(rc->verbs, (int)ch->nrecv + 1, ch, rc->cc, vec);
	if (!ch->rcq) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "%s: ibv_create_cq(recv, %u)",
					 ch->name, ch->nrecv + 1);
		goto out_destroy_scq;
	}

	memset(&qa, 0, sizeof(qa));
	qa.qp_context = ch;
	qa.send_cq = ch->scq;
	qa.recv_cq = ch->rcq;
	qa.qp_type = IBV_QPT_RC;
	qa.sq_sig_all = 0; /* selective signaling */
	qa.cap.max_send_wr = ch->depth;
	qa.cap.max_recv_wr = ch->nrecv;
	qa.cap.max_send_sge = ch->max_sge;
	qa.cap.max_recv_sge = 1;
	qa.cap.max_inline_data = want_inline;
	ret = rdma_create_qp(ch->id, rc->pd, &qa);
	if (ret && errno == EINVAL && want_inline) {
		/* Some devices refuse inline data; frames then go from registered memory. */
		qa.cap.max_inline_data = 0;
		ret = rdma_create_qp(ch->id, rc->pd, &qa);
	}
	if (ret) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(),
					 "%s: rdma_create_qp(depth %u, recv %u, sge %u, inline %u)",
					 ch->name, ch->depth, ch->nrecv, ch->max_sge, want_inline);
		goto out_destroy_rcq;
	}
	ch->qp = ch->id->qp;
	ch->qp_created = true;
	ch->max_inline = qa.cap.max_inline_data;

	for (uint32_t s = 0; s < ch->nrecv; s++) {
		ret = rd_post_recv(ch, s);
		if (ret) {
			ret = rdmig_seterr_errno(err, ret, "%s: ibv_post_recv", ch->name);
			goto out_destroy_qp;
		}
	}
	log_debug("rdma: %s: depth %u signal every %u, recv %u x %zu, sge %u, inline %u", ch->name,
		  ch->depth, ch->sig_every, ch->nrecv, ch->rslot, ch->max_sge, ch->max_inline);
	return 0;

out_destroy_qp:
	rdma_destroy_qp(ch->id); /* drops the receives already posted */
	ch->qp = NULL;
	ch->qp_created = false;
	ch->rq_posted = 0;
out_destroy_rcq:
	ibv_destroy_cq(ch->rcq);
	ch->rcq = NULL;
out_destroy_scq:
	ibv_destroy_cq(ch->scq);
	ch->scq = NULL;
out_free_ring:
	rd_buf_free(&ch->ring, &ch->ring_mr, ch->ring_size);
out_free_sbuf:
	rd_buf_free(&ch->sbuf, &ch->sbuf_mr, RD_CTRL_SBUF_LEN);
	rd_buf_free(&ch->frames, &ch->frames_mr, (size_t)ch->depth * RD_FRAME_LEN);
out_free_rbuf:
	rd_buf_free(&ch->rbuf, &ch->rbuf_mr, ch->nrecv * ch->rslot);
out_free_arrays:
	free(ch->mark);
	free(ch->rxq);
	ch->mark = NULL;
	ch->rxq = NULL;
	return ret;
}

void rd_hello_make(struct rd_chan *ch, struct rdmig_wire_hello *h)
{
	struct rd_conn *rc = ch->rc;

	rdmig_hello_fill(&rc->base, h, ch->index, rc->token);
	h->caps |= RDMIG_CAP_KEEPALIVE;
	if (!ch->is_ctrl && ch->ring_mr) {
		h->stream_ring = ch->ring_size;
		h->ring_rkey = ch->ring_mr->rkey;
		h->ring_addr = (uintptr_t)ch->ring;
	}
}

int rd_hello_check(const struct rdmig_wire_hello *h, enum rdmig_role role, struct rdmig_err *err)
{
	bool ctrl = h->chan_index == RDMIG_CHAN_CTRL;

	if (h->role != role)
		return rdmig_seterr(err, -EPROTO, "HELLO with role %s, expected %s",
				    h->role == RDMIG_ROLE_CONNECTOR ? "connector" : "acceptor",
				    role == RDMIG_ROLE_CONNECTOR ? "connector" : "acceptor");
	if (h->max_ctrl < RDMIG_CTRL_MAX_PAYLOAD)
		return rdmig_seterr(err, -EPROTO,
				    "peer accepts control messages up to %u bytes, this side "
				    "sends up to %u",
				    h->max_ctrl, RDMIG_CTRL_MAX_PAYLOAD);
	if (ctrl) {
		if (h->stream_ring || h->ring_rkey || h->ring_addr)
			return rdmig_seterr(err, -EPROTO,
					    "HELLO of the control channel carries a stream ring");
	} else if (h->stream_ring) {
		if (h->stream_ring & (h->stream_ring - 1) || h->stream_ring < 4096 ||
		    h->stream_ring > (1u << 30) || !h->ring_addr || !h->ring_rkey)
			return rdmig_seterr(
			    err, -EPROTO,
			    "HELLO of data channel %u: stream ring of %llu bytes at "
			    "0x%llx (rkey 0x%x) is not a power of two in 4 KiB..1 GiB "
			    "with an address and a key",
			    h->chan_index, (unsigned long long)h->stream_ring,
			    (unsigned long long)h->ring_addr, h->ring_rkey);
	}
	return 0;
}

int rd_hello_accept(struct rd_chan *ch, const struct rdmig_wire_hello *h, struct rdmig_err *err)
{
	struct rd_conn *rc = ch->rc;
	int ret;

	ret =
	    rd_hello_check(h, rc->base.is_server ? RDMIG_ROLE_CONNECTOR : RDMIG_ROLE_ACCEPTOR, err);
	if (ret)
		return ret;
	if (h->token != rc->token)
		return rdmig_seterr(err, -EPROTO, "%s: HELLO token 0x%016llx, expected 0x%016llx",
				    ch->name, (unsigned long long)h->token,
				    (unsigned long long)rc->token);
	if (h->chan_index != ch->index)
		return rdmig_seterr(err, -EPROTO, "%s: HELLO for channel index %u", ch->name,
				    h->chan_index);
	if (h->nchan != rc->base.nchan)
		return rdmig_seterr(err, -EPROTO, "%s: HELLO says %u data channels, expected %u",
				    ch->name, h->nchan, rc->base.nchan);
	ch->peer = *h;
	rc->base.peer_caps = h->caps;
	return 0;
}

void rd_rdma_conn_param(struct rdma_conn_param *p, const void *pdata, uint8_t len)
{
	memset(p, 0, sizeof(*p));
	p->private_data = pdata;
	p->private_data_len = len;
	/* Writes and sends only: no RDMA READ resources either way. */
	p->responder_resources = 0;
	p->initiator_depth = 0;
	p->flow_control = 1;
	p->retry_count = 7;
	/*
	 * 7 = retry forever on receiver-not-ready: a control sender waits for
	 * the receiver to repost, and a stream writer for a notification slot.
	 * A peer that is gone is detected by rdma_cm, not by RNR.
	 */
	p->rnr_retry_count = 7;
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

/* Progress thread, rx_lock held. */
static void rd_reap_recv(struct rd_chan *ch)
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
	struct ibv_send_wr wr;
	struct ibv_sge sge;

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
		if (ch->post_seq - ch->done_seq < ch->depth) {
			sge.addr = (uintptr_t)(ch->sbuf + RD_CTRL_SLOT_LEN);
			sge.length = RDMIG_WIRE_HDR_LEN;
			sge.lkey = ch->sbuf_mr->lkey;
			memset(&wr, 0, sizeof(wr));
			wr.opcode = IBV_WR_SEND;
			wr.sg_list = &sge;
			wr.num_sge = 1;
			wr.send_flags = RDMIG_WIRE_HDR_LEN <= ch->max_inline ? IBV_SEND_INLINE : 0;
			rd_wr_prep(ch, &wr, RD_K_KEEPALIVE, false);
			if (!rd_post_chain(ch, &wr, NULL))
				rc->ka_sent_ms = now;
		}
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

/* ---- send side --------------------------------------------------------- */

int rd_sq_reserve(struct rd_chan *ch, unsigned n, int64_t deadline, struct rdmig_err *err)
{
	int ret;

	for (;;) {
		if (ch->post_seq - ch->done_seq + n <= ch->depth)
			return 0;
		rd_reap_send(ch);
		if (ch->post_seq - ch->done_seq + n <= ch->depth)
			return 0;
		ret = rd_check(ch->rc, err);
		if (ret)
			return ret;
		if (rd_cond_wait(&ch->tx_cond, &ch->tx_lock, deadline))
			return rdmig_seterr(err, -ETIMEDOUT, "%s: send queue still full", ch->name);
	}
}

uint64_t rd_wr_prep(struct rd_chan *ch, struct ibv_send_wr *wr, enum rd_kind kind, bool force)
{
	uint64_t seq = ++ch->post_seq;
	/* Signal every sig_every-th WR, and always when the queue becomes full. */
	bool sig = force || ch->unsig + 1 >= ch->sig_every || seq - ch->done_seq >= ch->depth;

	wr->wr_id = ((uint64_t)kind << 56) | seq;
	if (sig)
		wr->send_flags |= IBV_SEND_SIGNALED;
	ch->unsig = sig ? 0 : ch->unsig + 1;
	ch->mark[seq % ch->depth] = ch->tx_pos;
	return seq;
}

int rd_post_chain(struct rd_chan *ch, struct ibv_send_wr *wr, struct rdmig_err *err)
{
	struct ibv_send_wr *bad = NULL;
	int ret = ibv_post_send(ch->qp, wr, &bad);

	if (ret)
		return rd_fail(
		    ch->rc, err, rdmig_neg_pos(ret), "%s: ibv_post_send of %s: %s", ch->name,
		    rd_kind_name((enum rd_kind)((bad ? bad : wr)->wr_id >> 56)), strerror(ret));
	return 0;
}

int rd_wait_seq(struct rd_chan *ch, uint64_t seq, int64_t deadline, struct rdmig_err *err)
{
	int ret;

	for (;;) {
		rd_reap_send(ch);
		if (ch->done_seq >= seq)
			return 0;
		ret = rd_check(ch->rc, err);
		if (ret)
			return ret;
		if (rd_cond_wait(&ch->tx_cond, &ch->tx_lock, deadline))
			return rdmig_seterr(err, -ETIMEDOUT, "%s: send not completed in time",
					    ch->name);
	}
}

int rd_post_frame(struct rd_chan *ch, uint8_t type, const void *payload, uint32_t plen,
		  enum rd_kind kind, bool force_signal, uint64_t *seq, struct rdmig_err *err)
{
	struct ibv_sge sge;
	struct ibv_send_wr wr;
	uint8_t *f;
	uint32_t len = RDMIG_WIRE_HDR_LEN + plen;
	int ret;

	ret = rd_sq_reserve(ch, 1, -1, err);
	if (ret)
		return ret;
	/* Slot of the next seq: free, since at most depth WRs are outstanding. */
	f = ch->frames + ((ch->post_seq + 1) % ch->depth) * RD_FRAME_LEN;
	rdmig_wire_hdr_encode(f, type, ch->index, 0, plen);
	if (plen)
		memcpy(f + RDMIG_WIRE_HDR_LEN, payload, plen);
	sge.addr = (uintptr_t)f;
	sge.length = len;
	sge.lkey = ch->frames_mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.opcode = IBV_WR_SEND;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = len <= ch->max_inline ? IBV_SEND_INLINE : 0;
	*seq = rd_wr_prep(ch, &wr, kind, force_signal);
	return rd_post_chain(ch, &wr, err);
}

/* ---- regions ----------------------------------------------------------- */

static int rd_reg(struct rdmig_conn *c, struct rdmig_region *r, struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct ibv_mr *mr;
	int access;

	if (!rc->pd)
		return rdmig_seterr(err, -ENOTCONN, "region '%s': connection not set up", r->name);
	/*
	 * Destination memory may be written by the peer, never read. Source
	 * memory is only read by the device, but LOCAL_WRITE makes the kernel
	 * pin writable pages (breaking copy-on-write and zero-page sharing), so
	 * later writes by the guest land in the very pages the device reads.
	 */
	access = IBV_ACCESS_LOCAL_WRITE;
	if (r->flags & RDMIG_REG_REMOTE_WRITE)
		access |= IBV_ACCESS_REMOTE_WRITE;
	mr = ibv_reg_mr(rc->pd, r->addr, r->len, access);
	if (!mr) {
		int ret = rdmig_neg_errno();

		return rdmig_seterr_errno(
		    err, ret, "region '%s': ibv_reg_mr of %llu bytes%s", r->name,
		    (unsigned long long)r->len,
		    ret == -ENOMEM || ret == -EPERM ? " (memlock limit? see 'ulimit -l')" : "");
	}
	r->handle = mr;
	r->rkey = mr->rkey;
	log_debug("rdma: region '%s' %llu bytes at %p: lkey 0x%x rkey 0x%x%s", r->name,
		  (unsigned long long)r->len, r->addr, mr->lkey, mr->rkey,
		  (access & IBV_ACCESS_REMOTE_WRITE) ? " (remote write)" : "");
	return 0;
}

static void rd_dereg(struct rdmig_conn *c, struct rdmig_region *r)
{
	int ret;

	if (!r->handle)
		return;
	ret = ibv_dereg_mr(r->handle);
	if (ret)
		log_warn("rdma: region '%s': ibv_dereg_mr: %s", r->name, strerror(ret));
	r->handle = NULL;
	r->rkey = 0;
}

/* ---- control messages -------------------------------------------------- */

static int rd_ctrl_send(struct rdmig_conn *c, const void *msg, size_t len, struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = &rc->ch[0];
	struct ibv_send_wr wr;
	struct ibv_sge sge;
	int64_t grace = -1;
	uint64_t seq;
	int ret;

	if (len > RD_CTRL_SLOT_LEN)
		return rdmig_seterr(err, -EMSGSIZE, "control frame of %zu bytes exceeds %u", len,
				    RD_CTRL_SLOT_LEN);
	if (!ch->qp)
		return rdmig_seterr(err, -ENOTCONN, "control channel not connected");
	pthread_mutex_lock(&rc->ctrl_send_lock);
	pthread_mutex_lock(&ch->tx_lock);
	/*
	 * No failure check before posting: an ERROR frame is sent on a failed
	 * connection on purpose; the queue pair itself says whether it can go.
	 */
	ret = rd_sq_reserve(ch, 1, -1, err);
	if (ret)
		goto out_unlock;
	memcpy(ch->sbuf, msg, len);
	sge.addr = (uintptr_t)ch->sbuf;
	sge.length = (uint32_t)len;
	sge.lkey = ch->sbuf_mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.opcode = IBV_WR_SEND;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = len <= ch->max_inline ? IBV_SEND_INLINE : 0;
	seq = rd_wr_prep(ch, &wr, RD_K_CTRL, true);
	ret = rd_post_chain(ch, &wr, err);
	if (ret)
		goto out_unlock;
	/* Wait for the completion: sbuf is reused by the next send. */
	for (;;) {
		rd_reap_send(ch);
		if (ch->done_seq >= seq)
			break;
		if (rd_failed(rc, NULL) || atomic_load(&rc->peer_gone)) {
			/* Give a send on a failing connection a moment to get out. */
			if (grace < 0)
				grace = rdmig_now_ms() + 1000;
			if (rdmig_now_ms() >= grace) {
				ret = rd_check(rc, err);
				goto out_unlock;
			}
		}
		rd_cond_wait(&ch->tx_cond, &ch->tx_lock, -1);
	}
out_unlock:
	pthread_mutex_unlock(&ch->tx_lock);
	pthread_mutex_unlock(&rc->ctrl_send_lock);
	return ret;
}

static int rd_ctrl_recv(struct rdmig_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms,
			struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = &rc->ch[0];
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	struct rdmig_wire_hdr h;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rd_rxq_ent ent;
	const uint8_t *p;
	int ret;

	if (!ch->qp)
		return rdmig_seterr(err, -ENOTCONN, "control channel not connected");
	pthread_mutex_lock(&ch->rx_lock);
	/* Frames that arrived before a disconnect are delivered first. */
	while (!ch->rxq_count) {
		ret = rd_check(rc, err);
		if (ret)
			goto out_unlock;
		if (rd_cond_wait(&ch->rx_cond, &ch->rx_lock, deadline)) {
			ret = rdmig_seterr(err, -ETIMEDOUT,
					   "no control message from the peer within %d ms",
					   timeout_ms);
			goto out_unlock;
		}
	}
	ent = ch->rxq[ch->rxq_head];
	ch->rxq_head = (ch->rxq_head + 1) % ch->nrecv;
	ch->rxq_count--;
	p = ch->rbuf + (size_t)ent.slot * ch->rslot;
	ret = rdmig_wire_hdr_decode(p, ent.len, RDMIG_CTRL_MAX_PAYLOAD, &h, &e);
	if (!ret && RDMIG_WIRE_HDR_LEN + (size_t)h.length != ent.len)
		ret = rdmig_seterr(&e, -EPROTO, "%s frame of %u bytes says its payload is %u bytes",
				   rdmig_msg_type_name(h.type), ent.len, h.length);
	if (ret) {
		ret = rd_fail(rc, err, ret, "malformed control message from peer: %s",
			      rdmig_err_str(&e));
	} else if (ent.len > cap) {
		ret = rdmig_seterr(err, -EMSGSIZE,
				   "control frame of %u bytes does not fit a %zu-byte buffer",
				   ent.len, cap);
	} else {
		memcpy(buf, p, ent.len);
		*len = ent.len;
	}
	if (rd_post_recv(ch, ent.slot) && !ret)
		ret = rd_fail(rc, err, -EIO, "control channel: ibv_post_recv failed");
out_unlock:
	pthread_mutex_unlock(&ch->rx_lock);
	return ret;
}

/* ---- page writes and fences -------------------------------------------- */

/* Post wr[0..n-1] as one chain (tx_lock held). */
static int post_batch(struct rd_chan *ch, struct ibv_send_wr *wr, unsigned n, unsigned *nsge,
		      struct rdmig_err *err)
{
	int ret = rd_sq_reserve(ch, n, -1, err);

	if (ret)
		return ret;
	for (unsigned i = 0; i < n; i++) {
		wr[i].next = i + 1 < n ? &wr[i + 1] : NULL;
		rd_wr_prep(ch, &wr[i], RD_K_WRITE, false);
		*nsge += (unsigned)wr[i].num_sge;
	}
	return rd_post_chain(ch, wr, err);
}

static int rd_write(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
		    struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	struct ibv_send_wr wr[RD_POST_BATCH];
	struct ibv_sge sge[RD_POST_BATCH][RD_MAX_SGE];
	unsigned batch = ch->depth < RD_POST_BATCH ? ch->depth : RD_POST_BATCH;
	const uint64_t max_wr = rc->max_wr_bytes;
	unsigned nwr = 0, posted = 0, nsge = 0;
	bool open = false; /* wr[nwr - 1] may still grow */
	uint64_t cur_len = 0;
	int ret = 0;

	pthread_mutex_lock(&ch->tx_lock);
	ret = rd_check(rc, err);
	if (ret)
		goto out_unlock;
	for (size_t i = 0; i < n; i++) {
		const struct rdmig_region *l = rdmig_region_get(c, runs[i].lreg);
		const struct rdmig_remote *rr = rdmig_remote_find(c, runs[i].rreg);
		const struct ibv_mr *mr = l ? l->handle : NULL;
		uint64_t laddr, raddr, left = runs[i].len;
		uint32_t rkey;

		if (!mr || !rr) {
			ret = rdmig_seterr(err, -EINVAL, "write: region %u/%u not registered",
					   runs[i].lreg, runs[i].rreg);
			goto out_post;
		}
		laddr = (uintptr_t)l->addr + runs[i].loff;
		raddr = rr->addr + runs[i].roff;
		rkey = (uint32_t)rr->rkey;
		while (left) {
			struct ibv_send_wr *w = open ? &wr[nwr - 1] : NULL;
			uint64_t take;

			/* Contiguous remotely: extend the open WR (merge or gather). */
			if (w && w->wr.rdma.rkey == rkey &&
			    w->wr.rdma.remote_addr + cur_len == raddr && cur_len < max_wr) {
				struct ibv_sge *last = &w->sg_list[w->num_sge - 1];

				take = left < max_wr - cur_len ? left : max_wr - cur_len;
				if (last->lkey == mr->lkey && last->addr + last->length == laddr) {
					last->length += (uint32_t)take;
				} else if ((unsigned)w->num_sge < ch->max_sge) {
					w->sg_list[w->num_sge++] =
					    (struct ibv_sge){.addr = laddr,
							     .length = (uint32_t)take,
							     .lkey = mr->lkey};
				} else {
					open = false;
					continue;
				}
				cur_len += take;
			} else {
				if (nwr == batch) {
					ret = post_batch(ch, wr, nwr, &nsge, err);
					if (ret)
						goto out_unlock;
					posted += nwr;
					nwr = 0;
				}
				take = left < max_wr ? left : max_wr;
				w = &wr[nwr];
				memset(w, 0, sizeof(*w));
				w->sg_list = sge[nwr];
				w->sg_list[0] = (struct ibv_sge){
				    .addr = laddr, .length = (uint32_t)take, .lkey = mr->lkey};
				w->num_sge = 1;
				w->opcode = IBV_WR_RDMA_WRITE;
				w->wr.rdma.remote_addr = raddr;
				w->wr.rdma.rkey = rkey;
				nwr++;
				open = true;
				cur_len = take;
			}
			laddr += take;
			raddr += take;
			left -= take;
		}
	}
out_post:
	if (nwr) {
		int r2 = post_batch(ch, wr, nwr, &nsge, err);

		if (!ret)
			ret = r2;
		posted += nwr;
	}
	log_debug("rdma: %s: %zu runs posted as %u RDMA WRITEs with %u SGEs", ch->name, n, posted,
		  nsge);
out_unlock:
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

static int rd_fence(struct rdmig_conn *c, unsigned chan, const struct rdmig_fence *f,
		    struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	uint8_t payload[RDMIG_WIRE_FENCE_LEN];
	uint64_t seq;
	int ret;

	rdmig_wire_fence_encode(payload, f);
	pthread_mutex_lock(&ch->tx_lock);
	ret = rd_check(rc, err);
	if (!ret)
		/*
		 * The fence is the signaled last WR: RC completes in order, so its
		 * completion retires every write posted before it.
		 */
		ret = rd_post_frame(ch, RDMIG_MSG_FENCE, payload, sizeof(payload), RD_K_FENCE, true,
				    &seq, err);
	if (!ret)
		ret = rd_wait_seq(ch, seq, -1, err);
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

static int rd_wait_fence(struct rdmig_conn *c, unsigned chan, int timeout_ms, struct rdmig_fence *f,
			 struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	struct rd_rxq_ent ent;
	int ret = 0;

	pthread_mutex_lock(&ch->rx_lock);
	while (!ch->rxq_count) {
		ret = rd_check(rc, err);
		if (ret)
			goto out_unlock;
		if (rd_cond_wait(&ch->rx_cond, &ch->rx_lock, deadline)) {
			ret = rdmig_seterr(err, -ETIMEDOUT, "no fence on %s within %d ms", ch->name,
					   timeout_ms);
			goto out_unlock;
		}
	}
	ent = ch->rxq[ch->rxq_head];
	ch->rxq_head = (ch->rxq_head + 1) % ch->nrecv;
	ch->rxq_count--;
	*f = ent.fence;
	if (rd_post_recv(ch, ent.slot))
		ret = rd_fail(rc, err, -EIO, "%s: ibv_post_recv failed", ch->name);
out_unlock:
	pthread_mutex_unlock(&ch->rx_lock);
	return ret;
}

/* ---- teardown ---------------------------------------------------------- */

static void rd_wake(struct rdmig_conn *c)
{
	struct rd_conn *rc = to_rd(c);

	if (!rc->inited)
		return;
	/* Called by rdmig_conn_abort() after it filled the failure slot. */
	if (atomic_load(&rc->base.fail.taken))
		atomic_store_explicit(&rc->fail_ready, true, memory_order_release);
	for (unsigned i = 0; i < rc->nch; i++) {
		struct rd_chan *ch = &rc->ch[i];

		pthread_mutex_lock(&ch->tx_lock);
		pthread_cond_broadcast(&ch->tx_cond);
		pthread_mutex_unlock(&ch->tx_lock);
		pthread_mutex_lock(&ch->rx_lock);
		pthread_cond_broadcast(&ch->rx_cond);
		pthread_mutex_unlock(&ch->rx_lock);
	}
}

static void stop_progress(struct rd_conn *rc)
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

/*
 * Disconnect, move every QP to the error state and reap what the device
 * flushes, so that no posted work refers to memory about to be deregistered.
 * Bounded: a device that does not flush within half a second is not waited for.
 */
static void rd_drain(struct rdmig_conn *c)
{
	struct rd_conn *rc = to_rd(c);
	struct ibv_qp_attr attr = {.qp_state = IBV_QPS_ERR};
	int64_t until;
	bool busy;

	if (!rc->inited || atomic_load(&rc->closing))
		return;
	atomic_store(&rc->closing, true);
	for (unsigned i = 0; i < rc->nch; i++)
		if (rc->ch[i].established)
			rdma_disconnect(rc->ch[i].id);
	for (unsigned i = 0; i < rc->nch; i++)
		if (rc->ch[i].qp)
			ibv_modify_qp(rc->ch[i].qp, &attr, IBV_QP_STATE);
	stop_progress(rc);
	rd_kick_all(rc);

	until = rdmig_now_ms() + 500;
	do {
		busy = false;
		for (unsigned i = 0; i < rc->nch; i++) {
			struct rd_chan *ch = &rc->ch[i];

			if (!ch->qp)
				continue;
			pthread_mutex_lock(&ch->tx_lock);
			rd_reap_send(ch);
			pthread_mutex_unlock(&ch->tx_lock);
			pthread_mutex_lock(&ch->rx_lock);
			rd_reap_recv(ch);
			busy |= ch->rq_posted > 0;
			pthread_mutex_unlock(&ch->rx_lock);
		}
		if (busy)
			usleep(1000);
	} while (busy && rdmig_now_ms() < until);
	if (busy)
		log_debug("rdma: receive queues not fully flushed after 500 ms");
}

static void rd_close(struct rdmig_conn *c)
{
	struct rd_conn *rc = to_rd(c);

	if (!rc->inited)
		return;
	rd_drain(c);
	/* Reverse order of creation: per channel QP, CQs, buffers; then PD, ids. */
	for (unsigned i = rc->nch; i-- > 0;) {
		struct rd_chan *ch = &rc->ch[i];

		if (ch->qp_created) {
			rdma_destroy_qp(ch->id);
			ch->qp = NULL;
			ch->qp_created = false;
		}
		if (ch->rcq && ibv_destroy_cq(ch->rcq))
			log_warn("rdma: %s: ibv_destroy_cq(recv) failed", ch->name);
		if (ch->scq && ibv_destroy_cq(ch->scq))
			log_warn("rdma: %s: ibv_destroy_cq(send) failed", ch->name);
		ch->rcq = ch->scq = NULL;
		rd_stream_free(ch);
		rd_buf_free(&ch->ring, &ch->ring_mr, ch->ring_size);
		rd_buf_free(&ch->frames, &ch->frames_mr, (size_t)ch->depth * RD_FRAME_LEN);
		rd_buf_free(&ch->sbuf, &ch->sbuf_mr, RD_CTRL_SBUF_LEN);
		rd_buf_free(&ch->rbuf, &ch->rbuf_mr, ch->nrecv * ch->rslot);
		free(ch->mark);
		free(ch->rxq);
		ch->mark = NULL;
		ch->rxq = NULL;
	}
	if (rc->cc && ibv_destroy_comp_channel(rc->cc))
		log_warn("rdma: ibv_destroy_comp_channel failed");
	rc->cc = NULL;
	if (rc->pd) {
		int ret = ibv_dealloc_pd(rc->pd);

		if (ret)
			log_warn("rdma: ibv_dealloc_pd: %s (a region still registered?)",
				 strerror(ret));
		rc->pd = NULL;
	}
	for (unsigned i = rc->nch; i-- > 0;) {
		if (rc->ch[i].id)
			rdma_destroy_id(rc->ch[i].id);
		rc->ch[i].id = NULL;
	}
	if (rc->ec)
		rdma_destroy_event_channel(rc->ec);
	rc->ec = NULL;
	if (rc->wake_fd >= 0)
		close(rc->wake_fd);
	rc->wake_fd = -1;
	for (unsigned i = 0; i < rc->nch; i++) {
		struct rd_chan *ch = &rc->ch[i];

		if (!ch->locks_init)
			continue;
		pthread_mutex_destroy(&ch->tx_lock);
		pthread_mutex_destroy(&ch->rx_lock);
		pthread_cond_destroy(&ch->tx_cond);
		pthread_cond_destroy(&ch->rx_cond);
		ch->locks_init = false;
	}
	pthread_mutex_destroy(&rc->ctrl_send_lock);
	pthread_mutex_destroy(&rc->gone_lock);
	rc->inited = false;
}

const struct rdmig_xport_ops rdmig_rdma_ops = {
    .name = "rdma",
    .conn_size = sizeof(struct rd_conn),
    .listener_size = sizeof(struct rd_listener),
    .listen = rd_listen,
    .accept = rd_accept,
    .listener_close = rd_listener_close,
    .connect = rd_connect,
    .drain = rd_drain,
    .close = rd_close,
    .wake = rd_wake,
    .reg = rd_reg,
    .dereg = rd_dereg,
    .ctrl_send = rd_ctrl_send,
    .ctrl_recv = rd_ctrl_recv,
    .write = rd_write,
    .fence = rd_fence,
    .wait_fence = rd_wait_fence,
    .stream_send = rd_stream_send,
    .stream_recv = rd_stream_recv,
    .stream_shutdown = rd_stream_shutdown,
};
