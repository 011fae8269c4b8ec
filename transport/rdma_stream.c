/* SPDX-License-Identifier: MIT */
/*
 * rdma backend, byte streams: a credit-based ring in registered memory,
 * filled with one-sided writes.
 *
 * Each side owns, per data channel, a receive ring of stream_ring bytes
 * registered for remote write once the auth hook has succeeded, never
 * before; the addresses and rkeys of all of them go to the peer in one
 * RINGS frame on the control channel (rd_post_auth). A sender copies data into its own staging
 * buffer (the same size as the peer's ring, byte i of the stream at i % size, so that one SGE maps
 * to one contiguous piece of the ring) and posts an RDMA WRITE_WITH_IMM to the same offset of the
 * peer's ring; the immediate is the byte count, so the receiver learns of the data from its recv
 * completion. Chunks never wrap: they are split at the ring's end. The receiver sends a CREDIT
 * (bytes consumed so far) whenever it has consumed a quarter of the ring since the last one; the
 * sender never has more than a ring's worth of bytes unconsumed. STREAM_EOF is a SEND after the
 * last chunk: RC ordering puts it behind every chunk.
 *
 * Ownership: the sending thread owns tx_pos and the staging buffer (under
 * tx_lock, which the receiving thread also takes to post a CREDIT); the
 * progress thread applies credits (tx_lock) and announced bytes (rx_lock);
 * the receiving thread owns rx_consumed and credit_sent (under rx_lock) and
 * copies out of the ring without a lock: bytes between rx_consumed and
 * rx_written cannot change until they are credited back.
 *
 * The descriptor calls skip the copies: rd_stream_send_fd() reads the
 * caller's descriptor straight into the staging buffer (after waiting for
 * it outside tx_lock, then without blocking inside it), and
 * rd_stream_recv_fd() writes straight out of the receive ring.
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "rdma_int.h"

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

int rd_post_auth(struct rdmig_conn *c, struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rdmig_wire_ring ring[RDMIG_MAX_CHANNELS];
	uint8_t buf[4 + RDMIG_MAX_CHANNELS * RDMIG_WIRE_RING_LEN];
	size_t len = 0;
	int ret;

	for (unsigned i = 0; i < c->nchan; i++) {
		struct rd_chan *ch = rd_data(rc, i);
		struct ibv_mr *mr = NULL;
		uint8_t *mem = NULL;

		/* The peer writes into it, nothing else may. */
		ret = rd_buf_alloc(rc, c->cfg.stream_ring,
				   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &mem, &mr,
				   "stream receive ring", err);
		if (ret)
			return ret;
		pthread_mutex_lock(&ch->rx_lock);
		ch->ring = mem;
		ch->ring_mr = mr;
		ch->ring_size = c->cfg.stream_ring;
		pthread_mutex_unlock(&ch->rx_lock);
		atomic_fetch_add(&c->st_rings_remote, 1);
		ring[i] = (struct rdmig_wire_ring){
		    .size = ch->ring_size, .addr = (uintptr_t)mem, .rkey = mr->rkey};
	}
	len = rdmig_wire_rings_encode(buf, ring, c->nchan);
	ret = rdmig_setup_send(c, RDMIG_MSG_RINGS, buf, len, err);
	if (ret)
		return ret;
	atomic_fetch_add(&c->st_rkeys_sent, c->nchan);
	ret = rdmig_setup_recv(c, RDMIG_MSG_RINGS, buf, sizeof(buf), &len,
			       c->cfg.connect_timeout_ms, err);
	if (ret == -ETIMEDOUT)
		return rdmig_seterr(err, ret, "no RINGS from the peer within %d ms",
				    c->cfg.connect_timeout_ms);
	if (ret)
		return ret;
	ret = rdmig_wire_rings_decode(buf, len, ring, c->nchan, err);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "bad RINGS from peer: %s", rdmig_err_str(err));
	for (unsigned i = 0; i < c->nchan; i++) {
		struct rd_chan *ch = rd_data(rc, i);

		pthread_mutex_lock(&ch->tx_lock);
		ch->peer.stream_ring = ring[i].size;
		ch->peer.ring_addr = ring[i].addr;
		ch->peer.ring_rkey = ring[i].rkey;
		pthread_mutex_unlock(&ch->tx_lock);
	}
	return 0;
}

/*
 * The `n` staged bytes at `pos` to the same offset of the peer's ring, as
 * the next bytes of the stream. Under tx_lock.
 */
static int post_chunk(struct rd_chan *ch, uint64_t pos, uint64_t n, struct rdmig_err *err)
{
	uint64_t size = ch->peer.stream_ring;
	struct ibv_send_wr wr;
	struct ibv_sge sge;

	sge.addr = (uintptr_t)(ch->stage + pos);
	sge.length = (uint32_t)n;
	sge.lkey = ch->stage_mr->lkey;
	memset(&wr, 0, sizeof(wr));
	wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
	wr.imm_data = htobe32((uint32_t)n);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = n <= ch->max_inline ? IBV_SEND_INLINE : 0;
	wr.wr.rdma.remote_addr = ch->peer.ring_addr + pos;
	wr.wr.rdma.rkey = ch->peer.ring_rkey;
	ch->tx_pos += n;
	/*
	 * Signal once half the staging buffer awaits completion: whenever the
	 * sender blocks on staging space, a signaled write is outstanding.
	 */
	rd_wr_prep(ch, &wr, RD_K_STREAM, ch->tx_pos - ch->tx_done >= size / 2);
	return rd_post_chain(ch, &wr, err);
}

int rd_stream_send(struct rdmig_conn *c, unsigned chan, const void *buf, size_t len,
		   struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	const uint8_t *p = buf;
	uint64_t size = ch->peer.stream_ring;
	uint64_t chunk_max = min_u64(size / 4, rc->max_wr_bytes);
	int ret;

	if (!size)
		return rdmig_seterr(err, -EOPNOTSUPP, "the peer has no stream ring on %s",
				    ch->name);
	pthread_mutex_lock(&ch->tx_lock);
	ret = rd_check(rc, err);
	if (ret)
		goto out_unlock;
	if (ch->eof_sent) {
		ret = rdmig_seterr(err, -EPIPE, "stream on %s already shut down", ch->name);
		goto out_unlock;
	}
	if (!ch->stage) {
		ret = rd_buf_alloc(rc, size, IBV_ACCESS_LOCAL_WRITE, &ch->stage, &ch->stage_mr,
				   "stream staging buffer", err);
		if (ret)
			goto out_unlock;
	}
	while (len) {
		uint64_t base, space, pos, n;

		rd_reap_send(ch);
		/* Reusable: consumed by the peer and no longer read by our device. */
		base = min_u64(ch->peer_consumed, ch->tx_done);
		space = size - (ch->tx_pos - base);
		if (!space || ch->post_seq - ch->done_seq >= ch->depth) {
			ret = rd_check(rc, err);
			if (ret)
				goto out_unlock;
			rd_cond_wait(&ch->tx_cond, &ch->tx_lock, -1);
			continue;
		}
		pos = ch->tx_pos & (size - 1);
		n = min_u64(min_u64(len, space), min_u64(size - pos, chunk_max));
		memcpy(ch->stage + pos, p, n);
		ret = post_chunk(ch, pos, n, err);
		if (ret)
			goto out_unlock;
		p += n;
		len -= n;
	}
out_unlock:
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

static int send_credit(struct rd_chan *ch, uint64_t consumed, struct rdmig_err *err)
{
	uint8_t payload[RDMIG_WIRE_CREDIT_LEN];
	uint64_t seq;
	int ret;

	rdmig_wire_credit_encode(payload, consumed);
	pthread_mutex_lock(&ch->tx_lock);
	ret = rd_post_frame(ch, RDMIG_MSG_CREDIT, payload, sizeof(payload), RD_K_CREDIT, false,
			    &seq, err);
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

/*
 * Wait for unread bytes: the count (> 0) with *pos their offset in the
 * ring, 0 at end of stream, or a negative errno. Bytes between rx_consumed
 * and rx_written stay put until rx_advance() credits them back.
 */
static ssize_t rx_wait(struct rd_conn *rc, struct rd_chan *ch, int timeout_ms, uint64_t *pos,
		       struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	uint64_t avail;
	int ret;

	if (!ch->ring)
		return rdmig_seterr(err, -EOPNOTSUPP, "no stream ring on %s", ch->name);
	pthread_mutex_lock(&ch->rx_lock);
	/* Data that arrived before a disconnect is delivered first. */
	while (ch->rx_written == ch->rx_consumed) {
		if (ch->eof_rcvd) {
			pthread_mutex_unlock(&ch->rx_lock);
			return 0;
		}
		ret = rd_check(rc, err);
		if (!ret && rd_cond_wait(&ch->rx_cond, &ch->rx_lock, deadline))
			ret = rdmig_seterr(err, -ETIMEDOUT, "no stream data on %s within %d ms",
					   ch->name, timeout_ms);
		if (ret) {
			pthread_mutex_unlock(&ch->rx_lock);
			return ret;
		}
	}
	avail = ch->rx_written - ch->rx_consumed;
	*pos = ch->rx_consumed & (ch->ring_size - 1);
	pthread_mutex_unlock(&ch->rx_lock);
	return (ssize_t)min_u64(avail, SSIZE_MAX);
}

/* `n` bytes read out of the ring: consumed, and credited once a quarter is. */
static int rx_advance(struct rd_chan *ch, uint64_t n, struct rdmig_err *err)
{
	uint64_t credit = 0;

	pthread_mutex_lock(&ch->rx_lock);
	ch->rx_consumed += n;
	if (ch->rx_consumed - ch->credit_sent >= ch->ring_size / 4) {
		credit = ch->rx_consumed;
		ch->credit_sent = credit;
	}
	pthread_mutex_unlock(&ch->rx_lock);
	return credit ? send_credit(ch, credit, err) : 0;
}

ssize_t rd_stream_recv(struct rdmig_conn *c, unsigned chan, void *buf, size_t cap, int timeout_ms,
		       struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	uint64_t pos = 0, n, first;
	ssize_t avail = rx_wait(rc, ch, timeout_ms, &pos, err);
	int ret;

	if (avail <= 0)
		return avail;
	n = min_u64(cap, (uint64_t)avail);
	first = min_u64(n, ch->ring_size - pos);
	memcpy(buf, ch->ring + pos, first);
	if (n > first)
		memcpy((uint8_t *)buf + first, ch->ring, n - first);
	ret = rx_advance(ch, n, err);
	return ret ? ret : (ssize_t)n;
}

ssize_t rd_stream_recv_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max, int timeout_ms,
			  struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	uint64_t pos = 0, n, first;
	ssize_t avail = rx_wait(rc, ch, timeout_ms, &pos, err);
	int ret;

	if (avail <= 0)
		return avail;
	/* Straight out of the ring: it holds still until credited. */
	n = min_u64(max, (uint64_t)avail);
	first = min_u64(n, ch->ring_size - pos);
	ret = xport_fd_write_all(fd, ch->ring + pos, first);
	if (!ret && n > first)
		ret = xport_fd_write_all(fd, ch->ring, n - first);
	if (ret)
		return rdmig_seterr_errno(err, ret, "stream on %s: writing the local descriptor",
					  ch->name);
	ret = rx_advance(ch, n, err);
	return ret ? ret : (ssize_t)n;
}

/*
 * Read what `fd` has (it was seen readable) into the staging buffer, without
 * blocking: the sender holds tx_lock, which the progress thread needs.
 */
static ssize_t fd_read_now(int fd, uint8_t *buf, size_t len)
{
	ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);

	/* A pipe or a file, seen readable: one read returns what it holds. */
	return n < 0 && errno == ENOTSOCK ? read(fd, buf, len) : n;
}

ssize_t rd_stream_send_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
			  struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	uint64_t size = ch->peer.stream_ring;
	uint64_t chunk_max = min_u64(size / 4, rc->max_wr_bytes);
	ssize_t got = 0;
	int ret = 0;

	if (!size)
		return rdmig_seterr(err, -EOPNOTSUPP, "the peer has no stream ring on %s",
				    ch->name);
	for (;;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		uint64_t base, space, pos, n;

		if (poll(&pf, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return rdmig_seterr_errno(err, -errno,
						  "stream on %s: waiting for the local descriptor",
						  ch->name);
		}
		pthread_mutex_lock(&ch->tx_lock);
		ret = rd_check(rc, err);
		if (!ret && ch->eof_sent)
			ret = rdmig_seterr(err, -EPIPE, "stream on %s already shut down", ch->name);
		if (!ret && !ch->stage)
			ret = rd_buf_alloc(rc, size, IBV_ACCESS_LOCAL_WRITE, &ch->stage,
					   &ch->stage_mr, "stream staging buffer", err);
		if (ret)
			break;
		rd_reap_send(ch);
		base = min_u64(ch->peer_consumed, ch->tx_done);
		space = size - (ch->tx_pos - base);
		if (!space || ch->post_seq - ch->done_seq >= ch->depth) {
			rd_cond_wait(&ch->tx_cond, &ch->tx_lock, -1);
			pthread_mutex_unlock(&ch->tx_lock);
			continue;
		}
		pos = ch->tx_pos & (size - 1);
		n = min_u64(min_u64(max, space), min_u64(size - pos, chunk_max));
		/* Straight into registered memory: no copy of the caller's. */
		got = fd_read_now(fd, ch->stage + pos, n);
		if (got > 0) {
			ret = post_chunk(ch, pos, (uint64_t)got, err);
			break;
		}
		if (got == 0)
			break;
		if (errno != EAGAIN && errno != EINTR) {
			ret = rdmig_seterr_errno(
			    err, -errno, "stream on %s: reading the local descriptor", ch->name);
			break;
		}
		pthread_mutex_unlock(&ch->tx_lock);
	}
	pthread_mutex_unlock(&ch->tx_lock);
	return ret ? ret : got;
}

int rd_stream_shutdown(struct rdmig_conn *c, unsigned chan, struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct rd_chan *ch = rd_data(rc, chan);
	uint64_t seq;
	int ret;

	pthread_mutex_lock(&ch->tx_lock);
	ret = rd_check(rc, err);
	if (ret || ch->eof_sent)
		goto out_unlock;
	ret = rd_post_frame(ch, RDMIG_MSG_STREAM_EOF, NULL, 0, RD_K_EOF, true, &seq, err);
	if (ret)
		goto out_unlock;
	ch->eof_sent = true;
	/* Everything before the EOF has been acknowledged once the EOF has. */
	ret = rd_wait_seq(ch, seq, -1, 0, err);
out_unlock:
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

int rd_stream_rx_data(struct rd_chan *ch, uint32_t n, char *why, size_t whylen)
{
	if (!ch->ring) {
		snprintf(why, whylen, "stream data but no stream ring");
		return -EPROTO;
	}
	if (ch->eof_rcvd) {
		snprintf(why, whylen, "%u bytes of stream data after STREAM_EOF", n);
		return -EPROTO;
	}
	if (!n || ch->rx_written - ch->rx_consumed + n > ch->ring_size) {
		snprintf(why, whylen,
			 "stream ring overrun: %u bytes announced with %llu of %llu unread", n,
			 (unsigned long long)(ch->rx_written - ch->rx_consumed),
			 (unsigned long long)ch->ring_size);
		return -EPROTO;
	}
	ch->rx_written += n;
	pthread_cond_broadcast(&ch->rx_cond);
	return 0;
}

int rd_stream_rx_credit(struct rd_chan *ch, uint64_t consumed, char *why, size_t whylen)
{
	int ret = 0;

	pthread_mutex_lock(&ch->tx_lock);
	if (consumed < ch->peer_consumed || consumed > ch->tx_pos) {
		snprintf(why, whylen, "CREDIT of %llu bytes outside %llu..%llu",
			 (unsigned long long)consumed, (unsigned long long)ch->peer_consumed,
			 (unsigned long long)ch->tx_pos);
		ret = -EPROTO;
	} else {
		ch->peer_consumed = consumed;
		pthread_cond_broadcast(&ch->tx_cond);
	}
	pthread_mutex_unlock(&ch->tx_lock);
	return ret;
}

void rd_stream_free(struct rd_chan *ch)
{
	rd_buf_free(&ch->stage, &ch->stage_mr, ch->peer.stream_ring);
}
