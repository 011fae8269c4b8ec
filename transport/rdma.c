/* SPDX-License-Identifier: MIT */
/*
 * rdma backend, setup and teardown: device query, PD and completion
 * channel, each channel's CQs, QP, buffers and pre-posted receives, the
 * HELLO a channel advertises, region registration, drain and close (in
 * reverse order of creation), and the ops table. Connection management is in
 * rdma_cm.c, the progress thread in rdma_progress.c, data operations in
 * rdma_data.c, byte streams in rdma_stream.c; rdma_int.h says who owns what.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "rdma_int.h"

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

static void cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

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
	rc->read_spin_ns = RD_READ_SPIN_NS;
	env = getenv("RDMIG_RDMA_READ_SPIN_US");
	if (env && *env && strtoull(env, NULL, 10) <= 10000)
		rc->read_spin_ns = strtoull(env, NULL, 10) * 1000;

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
	/* Nothing here is open to the peer's writes: the stream ring comes after auth. */

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
		goto out_free_sbuf;
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
	/* No ring here: its key goes out in RINGS, after authentication (rd_post_auth). */
	h->caps |= RDMIG_CAP_KEEPALIVE | RDMIG_CAP_LATE_RINGS;
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
	if (ctrl && (h->stream_ring || h->ring_rkey || h->ring_addr))
		return rdmig_seterr(err, -EPROTO,
				    "HELLO of the control channel carries a stream ring");
	if (!ctrl &&
	    (h->stream_ring || h->ring_rkey || h->ring_addr || !(h->caps & RDMIG_CAP_LATE_RINGS)))
		return rdmig_seterr(err, -EPROTO,
				    "HELLO of data channel %u offers its stream ring before "
				    "authentication: the peer is an older rdmig, upgrade it",
				    h->chan_index);
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
	if (!(h->caps & RDMIG_CAP_LATE_RINGS))
		return rdmig_seterr(
		    err, -EPROTO,
		    "%s: the peer does not announce stream rings after authentication "
		    "(capability 0x%x): it is an older rdmig, upgrade it",
		    ch->name, RDMIG_CAP_LATE_RINGS);
	ch->peer = *h;
	rc->base.peer_caps = h->caps;
	return 0;
}

static uint8_t min_u8(int dev, uint8_t peer)
{
	int v = dev < RD_MAX_RD_ATOM ? dev : RD_MAX_RD_ATOM;

	if (v < 0)
		v = 0;
	return (uint8_t)(v < peer ? v : peer);
}

void rd_rdma_conn_param(struct rdma_conn_param *p, const struct rd_conn *rc, uint8_t peer_resp,
			uint8_t peer_init, const void *pdata, uint8_t len)
{
	memset(p, 0, sizeof(*p));
	p->private_data = pdata;
	p->private_data_len = len;
	/*
	 * Post-copy reads the peer's memory (rdmig_read), either way. The CM
	 * grants the queue pair remote read access only with responder
	 * resources; the peer's memory stays closed unless it registers a
	 * region for reading and exposes it.
	 */
	p->responder_resources = min_u8(rc->dattr.max_qp_rd_atom, peer_resp);
	p->initiator_depth = min_u8(rc->dattr.max_qp_init_rd_atom, peer_init);
	p->flow_control = 1;
	p->retry_count = 7;
	/*
	 * 7 = retry forever on receiver-not-ready: a control sender waits for
	 * the receiver to repost, and a stream writer for a notification slot.
	 * A peer that is gone is detected by rdma_cm, not by RNR.
	 */
	p->rnr_retry_count = 7;
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
	 * Destination memory may be written by the peer; source memory is read
	 * by the peer only in post-copy, when registered for it. Source memory
	 * is otherwise only read by the local device, but LOCAL_WRITE makes the kernel
	 * pin writable pages (breaking copy-on-write and zero-page sharing), so
	 * later writes by the guest land in the very pages the device reads.
	 */
	access = IBV_ACCESS_LOCAL_WRITE;
	if (r->flags & RDMIG_REG_REMOTE_WRITE)
		access |= IBV_ACCESS_REMOTE_WRITE;
	/* Post-copy source: the destination fetches the pages it still lacks. */
	if (r->flags & RDMIG_REG_REMOTE_READ)
		access |= IBV_ACCESS_REMOTE_READ;
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
	log_debug("rdma: region '%s' %llu bytes at %p: lkey 0x%x rkey 0x%x%s%s", r->name,
		  (unsigned long long)r->len, r->addr, mr->lkey, mr->rkey,
		  (access & IBV_ACCESS_REMOTE_WRITE) ? " (remote write)" : "",
		  (access & IBV_ACCESS_REMOTE_READ) ? " (remote read)" : "");
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
	rd_progress_stop(rc);
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
		if (ch->ring_mr)
			atomic_fetch_sub(&rc->base.st_rings_remote, 1);
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
    .accept_finish = rd_accept_finish,
    .connect = rd_connect,
    .post_auth = rd_post_auth,
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
    .read = rd_read,
    .stream_send = rd_stream_send,
    .stream_recv = rd_stream_recv,
    .stream_shutdown = rd_stream_shutdown,
    .stream_send_fd = rd_stream_send_fd,
    .stream_recv_fd = rd_stream_recv_fd,
};
