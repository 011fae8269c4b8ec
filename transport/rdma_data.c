/* SPDX-License-Identifier: MIT */
/*
 * rdma backend, data operations: send queue accounting and posting, receive
 * reposting, control messages (SEND / RECV on the control QP), one-sided
 * page writes (RDMA WRITE, gathered and merged), fences and waiting for them,
 * and one-sided page reads (RDMA READ, merged and scattered) for post-copy.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "rdma_int.h"

/* ---- posting ----------------------------------------------------------- */

/* Wait for `n` free send queue slots (tx_lock held). */
static int rd_sq_reserve(struct rd_chan *ch, unsigned n, int64_t deadline, struct rdmig_err *err)
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

int rd_wait_seq(struct rd_chan *ch, uint64_t seq, int64_t deadline, uint64_t spin_ns,
		struct rdmig_err *err)
{
	uint64_t spin_end = spin_ns ? rdmig_now_ns() + spin_ns : 0;
	int ret;

	for (;;) {
		rd_reap_send(ch);
		if (ch->done_seq >= seq)
			return 0;
		ret = rd_check(ch->rc, err);
		if (ret)
			return ret;
		if (spin_end && rdmig_now_ns() < spin_end) {
			/* The progress thread takes this lock to reap this CQ too. */
			pthread_mutex_unlock(&ch->tx_lock);
			sched_yield();
			pthread_mutex_lock(&ch->tx_lock);
			continue;
		}
		if (rd_cond_wait(&ch->tx_cond, &ch->tx_lock, deadline))
			return rdmig_seterr(err, -ETIMEDOUT, "%s: send not completed in time",
					    ch->name);
	}
}

int rd_post_send(struct rd_chan *ch, const void *buf, uint32_t len, uint32_t lkey,
		 enum rd_kind kind, bool force_signal, uint64_t *seq, struct rdmig_err *err)
{
	struct ibv_sge sge = {.addr = (uintptr_t)buf, .length = len, .lkey = lkey};
	struct ibv_send_wr wr;

	memset(&wr, 0, sizeof(wr));
	wr.opcode = IBV_WR_SEND;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = len <= ch->max_inline ? IBV_SEND_INLINE : 0;
	*seq = rd_wr_prep(ch, &wr, kind, force_signal);
	return rd_post_chain(ch, &wr, err);
}

int rd_post_frame(struct rd_chan *ch, uint8_t type, const void *payload, uint32_t plen,
		  enum rd_kind kind, bool force_signal, uint64_t *seq, struct rdmig_err *err)
{
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
	return rd_post_send(ch, f, len, ch->frames_mr->lkey, kind, force_signal, seq, err);
}

/*
 * Take the oldest received frame of ch (rx_lock held), waiting until
 * `deadline`. Frames that arrived before a disconnect are delivered first.
 * 0 with *ent filled, 1 when the deadline passed (err untouched: the caller
 * names what did not come), or the connection's failure.
 */
static int rxq_pop(struct rd_chan *ch, int64_t deadline, struct rd_rxq_ent *ent,
		   struct rdmig_err *err)
{
	int ret;

	while (!ch->rxq_count) {
		ret = rd_check(ch->rc, err);
		if (ret)
			return ret;
		if (rd_cond_wait(&ch->rx_cond, &ch->rx_lock, deadline))
			return 1;
	}
	*ent = ch->rxq[ch->rxq_head];
	ch->rxq_head = (ch->rxq_head + 1) % ch->nrecv;
	ch->rxq_count--;
	return 0;
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

/* ---- control messages -------------------------------------------------- */

int rd_ctrl_send(struct rdmig_conn *c, const void *msg, size_t len, struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = &rc->ch[0];
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
	ret = rd_post_send(ch, ch->sbuf, (uint32_t)len, ch->sbuf_mr->lkey, RD_K_CTRL, true, &seq,
			   err);
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

int rd_ctrl_recv(struct rdmig_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms,
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
	/*
	 * Take what has completed before looking: a poll (timeout 0) by a
	 * process that was just resumed would otherwise miss a message the
	 * progress thread has not reaped yet, such as a CANCEL sent just
	 * before the peer closed.
	 */
	rd_reap_recv(ch);
	ret = rxq_pop(ch, deadline, &ent, err);
	if (ret > 0)
		ret = rdmig_seterr(err, -ETIMEDOUT, "no control message from the peer within %d ms",
				   timeout_ms);
	if (ret)
		goto out_unlock;
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

/* Post wr[0..n-1] as one chain (tx_lock held); `last` forces a signal on the final WR. */
static int post_batch(struct rd_chan *ch, struct ibv_send_wr *wr, unsigned n, enum rd_kind kind,
		      bool last, unsigned *nsge, struct rdmig_err *err)
{
	int ret = rd_sq_reserve(ch, n, -1, err);

	if (ret)
		return ret;
	for (unsigned i = 0; i < n; i++) {
		wr[i].next = i + 1 < n ? &wr[i + 1] : NULL;
		rd_wr_prep(ch, &wr[i], kind, last && i + 1 == n);
		*nsge += (unsigned)wr[i].num_sge;
	}
	return rd_post_chain(ch, wr, err);
}

/*
 * Post runs as RDMA WRITEs or READs (tx_lock held). Runs contiguous on the
 * remote side share one WR: merged into its last SGE when contiguous
 * locally too, else gathered (writes) or scattered (reads) over up to
 * max_sge SGEs. `signal_last` signals the final WR of the call.
 */
static int post_runs(struct rd_chan *ch, const struct rdmig_run *runs, size_t n,
		     enum ibv_wr_opcode opcode, enum rd_kind kind, unsigned max_sge,
		     bool signal_last, struct rdmig_err *err)
{
	struct rd_conn *rc = ch->rc;
	struct rdmig_conn *c = &rc->base;
	struct ibv_send_wr wr[RD_POST_BATCH];
	struct ibv_sge sge[RD_POST_BATCH][RD_MAX_SGE];
	unsigned batch = ch->depth < RD_POST_BATCH ? ch->depth : RD_POST_BATCH;
	const uint64_t max_wr = rc->max_wr_bytes;
	const char *op = kind == RD_K_READ ? "read" : "write";
	unsigned nwr = 0, posted = 0, nsge = 0;
	bool open = false; /* wr[nwr - 1] may still grow */
	uint64_t cur_len = 0;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		const struct rdmig_region *l = rdmig_region_get(c, runs[i].lreg);
		const struct rdmig_remote *rr = rdmig_remote_find(c, runs[i].rreg);
		const struct ibv_mr *mr = l ? l->handle : NULL;
		uint64_t laddr, raddr, left = runs[i].len;
		uint32_t rkey;

		if (!mr || !rr) {
			ret = rdmig_seterr(err, -EINVAL, "%s: region %u/%u not registered", op,
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
				} else if ((unsigned)w->num_sge < max_sge) {
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
					ret = post_batch(ch, wr, nwr, kind, false, &nsge, err);
					if (ret)
						return ret;
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
				w->opcode = opcode;
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
	/* What was built before a bad run still goes: writes have always done so. */
	if (nwr) {
		int r2 = post_batch(ch, wr, nwr, kind, signal_last, &nsge, err);

		if (!ret)
			ret = r2;
		posted += nwr;
	}
	log_debug("rdma: %s: %zu runs posted as %u %s with %u SGEs", ch->name, n, posted,
		  rd_kind_name(kind), nsge);
	return ret;
}

int rd_write(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
	     struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	int ret;

	pthread_mutex_lock(&ch->tx_lock);
	ret = rd_check(rc, err);
	if (!ret)
		ret =
		    post_runs(ch, runs, n, IBV_WR_RDMA_WRITE, RD_K_WRITE, ch->max_sge, false, err);
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

int rd_read(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
	    struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	unsigned max_sge = ch->max_sge;
	uint64_t before;
	int ret;

	/* A READ scatters into at most max_sge_rd local SGEs, which may be fewer. */
	if (rc->dattr.max_sge_rd > 0 && (unsigned)rc->dattr.max_sge_rd < max_sge)
		max_sge = (unsigned)rc->dattr.max_sge_rd;
	pthread_mutex_lock(&ch->tx_lock);
	ret = rd_check(rc, err);
	if (ret)
		goto out_unlock;
	before = ch->post_seq;
	ret = post_runs(ch, runs, n, IBV_WR_RDMA_READ, RD_K_READ, max_sge, true, err);
	/*
	 * Even after a failed post, wait for what went out: the caller may
	 * reuse its buffers as soon as this returns. RC completes in order, so
	 * the last signaled WR retires every READ before it. A page fault waits
	 * on this: poll the CQ here a while before sleeping on the progress
	 * thread (woken by the completion channel, never by a timer).
	 */
	if (ch->post_seq != before) {
		int r2 = rd_wait_seq(ch, ch->post_seq, -1, rc->read_spin_ns, err);

		if (!ret)
			ret = r2;
	}
out_unlock:
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

int rd_fence(struct rdmig_conn *c, unsigned chan, const struct rdmig_fence *f,
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
		ret = rd_wait_seq(ch, seq, -1, 0, err);
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

int rd_wait_fence(struct rdmig_conn *c, unsigned chan, int timeout_ms, struct rdmig_fence *f,
		  struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	struct rd_rxq_ent ent;
	int ret = 0;

	pthread_mutex_lock(&ch->rx_lock);
	ret = rxq_pop(ch, deadline, &ent, err);
	if (ret > 0)
		ret = rdmig_seterr(err, -ETIMEDOUT, "no fence on %s within %d ms", ch->name,
				   timeout_ms);
	if (ret)
		goto out_unlock;
	*f = ent.fence;
	if (rd_post_recv(ch, ent.slot))
		ret = rd_fail(rc, err, -EIO, "%s: ibv_post_recv failed", ch->name);
out_unlock:
	pthread_mutex_unlock(&ch->rx_lock);
	return ret;
}
