/* SPDX-License-Identifier: MIT */
/*
 * tcp backend, the receiving side of a data channel: a resumable frame state
 * machine (struct tcp_rx) that reads headers, checks each WRITE prefix
 * against the region table, receives its payload straight into the region
 * (or inflates a compressed one into it) and checks every FENCE against
 * what arrived. Everything here runs under the channel's rx_lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "tcp_int.h"

int tcp_rx_header(struct tcp_conn *tc, unsigned chan, const char *kind, size_t max,
		  int64_t deadline, int timeout_ms, const char *waiting, struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;
	struct tcp_rx *rx = &tc->ch[chan].rx;
	struct rdmig_err e = RDMIG_ERR_INIT;
	ssize_t n;
	int ret = 0;

	/* Up to `max` bytes: on page channels the WRITE prefix comes with its header. */
	while (rx->got < RDMIG_WIRE_HDR_LEN) {
		n = tcp_io_recv_some(tcp_ch_io(tc, chan), rx->buf + rx->got, max - rx->got,
				     deadline);
		if (n <= 0) {
			ret = n ? (int)n : TCP_EOF;
			break;
		}
		rx->got += (size_t)n;
	}
	if (ret == -ETIMEDOUT)
		return rdmig_seterr(err, ret, "no %s on %s channel %u from %s within %d ms",
				    waiting, kind, chan, tc->peer, timeout_ms);
	if (ret == TCP_EOF && rx->got == 0)
		return rdmig_conn_fail(c, err, -ECONNRESET,
				       "peer %s closed the connection (%s channel %u)", tc->peer,
				       kind, chan);
	if (ret == TCP_EOF)
		return rdmig_conn_fail(c, err, -ECONNRESET,
				       "%s channel %u from %s: truncated frame header, connection "
				       "closed after %zu of %u bytes",
				       kind, chan, tc->peer, rx->got, RDMIG_WIRE_HDR_LEN);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "receiving on %s channel %u from %s: %s", kind,
				       chan, tc->peer, strerror(-ret));
	ret = rdmig_wire_hdr_decode(rx->buf, RDMIG_WIRE_HDR_LEN, RDMIG_CTRL_MAX_PAYLOAD, &rx->hdr,
				    &e);
	if (!ret && rx->hdr.chan != chan)
		ret = rdmig_seterr(&e, -EPROTO, "%s for channel %u",
				   rdmig_msg_type_name(rx->hdr.type), rx->hdr.chan);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "malformed frame on %s channel %u from %s: %s",
				       kind, chan, tc->peer, e.msg);
	return 0;
}

int tcp_rx_unexpected(struct tcp_conn *tc, unsigned chan, const char *kind, struct rdmig_err *err)
{
	return rdmig_conn_fail(&tc->base, err, -EPROTO,
			       "unexpected %s on %s channel %u from %s: a channel carries page "
			       "writes or a stream, not both",
			       rdmig_msg_type_name(tc->ch[chan].rx.hdr.type), kind, chan, tc->peer);
}

/* WRITE prefix complete: check it against our regions and aim the payload. */
static int rx_write_start(struct tcp_conn *tc, unsigned chan, struct rdmig_err *err)
{
	struct tcp_rx *rx = &tc->ch[chan].rx;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_wire_write w;
	int ret;

	rx->zstd = rx->hdr.flags & RDMIG_HDR_F_ZSTD;
	ret = rdmig_wire_write_decode(rx->buf + RDMIG_WIRE_HDR_LEN, RDMIG_WIRE_WRITE_LEN, &w, &e);
	if (!ret && !rx->zstd && rx->hdr.length != RDMIG_WIRE_WRITE_LEN + (uint64_t)w.len)
		ret = rdmig_seterr(&e, -EPROTO,
				   "WRITE: length %" PRIu32 " disagrees with frame length %" PRIu32,
				   w.len, rx->hdr.length);
	/* We always announce zstd on tcp; the peer must have announced it too. */
	if (!ret && rx->zstd && !(tc->base.peer_caps & RDMIG_CAP_ZSTD))
		ret = rdmig_seterr(&e, -EPROTO,
				   "compressed WRITE, but the peer did not announce zstd "
				   "(capability 0x%x) in its HELLO",
				   RDMIG_CAP_ZSTD);
	if (!ret) {
		pthread_rwlock_rdlock(&tc->reg_rw);
		ret = rdmig_wire_write_check(&w, tc->reg_len, tc->reg_writable, RDMIG_MAX_REGIONS,
					     &e);
		if (!ret) {
			rx->dst = tc->reg_addr[w.region] + w.offset;
			rx->gen = tc->reg_gen[w.region];
		}
		pthread_rwlock_unlock(&tc->reg_rw);
	}
	if (ret)
		return rdmig_conn_fail(&tc->base, err, ret,
				       "rejected WRITE on page channel %u from %s: %s", chan,
				       tc->peer, e.msg);
	rx->region = w.region;
	rx->wlen = w.len;
	rx->flen = w.len;
	if (rx->zstd) {
		/* The header decoder bounded this to RDMIG_WIRE_MAX_DATA + RDMIG_WIRE_ZSTD_SLACK.
		 */
		rx->flen = rx->hdr.length - RDMIG_WIRE_WRITE_LEN;
		if (!rx->dctx)
			rx->dctx = ZSTD_createDCtx();
		if (rx->zcap < rx->flen) {
			free(rx->zbuf);
			rx->zcap = 0;
			rx->zbuf = malloc(rx->flen);
			if (rx->zbuf)
				rx->zcap = rx->flen;
		}
		if (!rx->dctx || !rx->zbuf)
			return rdmig_conn_fail(&tc->base, err, -ENOMEM,
					       "page channel %u: out of memory for a compressed "
					       "WRITE of %" PRIu32 " bytes",
					       chan, rx->flen);
		/* The data lands in zbuf; inflating it into the region comes after. */
		rx->zdst = rx->dst;
		rx->dst = rx->zbuf;
	}
	rx->left = rx->flen;
	rx->state = RX_PAYLOAD;
	return 0;
}

/*
 * A compressed WRITE has arrived in rx->zbuf: check the frame, then inflate
 * it into the region. The output bound is exactly [offset, offset + len) of
 * the region, so no frame, however crafted, writes outside the range that
 * rdmig_wire_write_check() accepted.
 */
static int rx_write_inflate(struct tcp_conn *tc, unsigned chan, struct rdmig_err *err)
{
	struct tcp_rx *rx = &tc->ch[chan].rx;
	struct rdmig_err e = RDMIG_ERR_INIT;
	size_t n;
	int ret;

	ret = rdmig_wire_zstd_check(rx->zbuf, rx->flen, rx->wlen, &e);
	if (ret)
		return rdmig_conn_fail(&tc->base, err, ret,
				       "rejected WRITE on page channel %u from %s: %s", chan,
				       tc->peer, e.msg);
	pthread_rwlock_rdlock(&tc->reg_rw);
	if (tc->reg_gen[rx->region] != rx->gen) {
		pthread_rwlock_unlock(&tc->reg_rw);
		return rdmig_conn_fail(&tc->base, err, -ECANCELED,
				       "page channel %u from %s: region %" PRIu32
				       " was deregistered while a WRITE into it was arriving",
				       chan, tc->peer, rx->region);
	}
	n = ZSTD_decompressDCtx(rx->dctx, rx->zdst, rx->wlen, rx->zbuf, rx->flen);
	pthread_rwlock_unlock(&tc->reg_rw);
	if (ZSTD_isError(n))
		return rdmig_conn_fail(&tc->base, err, -EPROTO,
				       "rejected WRITE on page channel %u from %s: zstd data does "
				       "not decompress: %s",
				       chan, tc->peer, ZSTD_getErrorName(n));
	if (n != rx->wlen)
		return rdmig_conn_fail(&tc->base, err, -EPROTO,
				       "rejected WRITE on page channel %u from %s: zstd data "
				       "decompressed to %zu bytes, the prefix says %" PRIu32,
				       chan, tc->peer, n, rx->wlen);
	return 0;
}

/* Receive the rest of a WRITE's payload straight into the region. */
static int rx_write_payload(struct tcp_conn *tc, unsigned chan, int64_t deadline, int timeout_ms,
			    struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;
	struct tcp_chan *ch = &tc->ch[chan];
	struct tcp_rx *rx = &ch->rx;
	struct iovec iov[2];
	struct msghdr m;
	size_t extra = 0;
	short ev;
	ssize_t n;
	int ret;

	while (rx->left) {
		/*
		 * The payload goes straight into the region; the second iovec
		 * takes the start of the next frame (every frame of a page
		 * channel has at least TCP_FRAME_PREFIX bytes), saving a recv()
		 * per frame.
		 */
		iov[0] = (struct iovec){.iov_base = rx->dst, .iov_len = rx->left};
		iov[1] = (struct iovec){.iov_base = rx->buf, .iov_len = TCP_FRAME_PREFIX};
		memset(&m, 0, sizeof(m));
		m.msg_iov = iov;
		m.msg_iovlen = 2;
		pthread_rwlock_rdlock(&tc->reg_rw);
		if (tc->reg_gen[rx->region] != rx->gen) {
			pthread_rwlock_unlock(&tc->reg_rw);
			return rdmig_conn_fail(c, err, -ECANCELED,
					       "page channel %u from %s: region %" PRIu32
					       " was deregistered while a WRITE into it was "
					       "arriving",
					       chan, tc->peer, rx->region);
		}
		ev = POLLIN;
		if (ch->ssl) {
			/* TLS: decrypted straight into the region, one record's worth at most. */
			n = tcp_io_recv_once(tcp_ch_io(tc, chan), rx->dst, rx->left, &ev);
		} else {
			n = recvmsg(ch->fd, &m, MSG_DONTWAIT);
			if (n < 0)
				n = rdmig_neg_errno();
		}
		pthread_rwlock_unlock(&tc->reg_rw);
		if (n > 0) {
			if ((size_t)n > rx->left) {
				extra = (size_t)n - rx->left;
				n = rx->left;
			}
			rx->dst += n;
			rx->left -= (uint32_t)n;
			continue;
		}
		if (n == 0)
			return rdmig_conn_fail(
			    c, err, -ECONNRESET,
			    "page channel %u from %s: truncated WRITE, connection "
			    "closed after %" PRIu32 " of %" PRIu32 " payload bytes",
			    chan, tc->peer, rx->flen - rx->left, rx->flen);
		if (n == -EINTR)
			continue;
		if (n != -EAGAIN && n != -EWOULDBLOCK)
			return rdmig_conn_fail(c, err, (int)n,
					       "receiving WRITE on page channel %u from %s: %s",
					       chan, tc->peer, strerror((int)-n));
		ret = tcp_wait_fd(ch->fd, ev, deadline);
		if (ret == -ETIMEDOUT)
			return rdmig_seterr(err, ret,
					    "page channel %u from %s: WRITE stalled, %" PRIu32
					    " of %" PRIu32 " bytes still missing after %d ms",
					    chan, tc->peer, rx->left, rx->flen, timeout_ms);
		if (ret)
			return rdmig_conn_fail(c, err, ret, "waiting on page channel %u: %s", chan,
					       strerror(-ret));
	}
	if (rx->zstd) {
		ret = rx_write_inflate(tc, chan, err);
		if (ret)
			return ret;
	}
	rx->bytes += rx->wlen;
	rx->writes++;
	atomic_fetch_add(&c->st_bytes_received, rx->wlen);
	rx->state = RX_HDR;
	rx->got = extra;
	return 0;
}

static int wait_fence_locked(struct tcp_conn *tc, unsigned chan, int timeout_ms,
			     struct rdmig_fence *f, struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;
	struct tcp_rx *rx = &tc->ch[chan].rx;
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	struct rdmig_err e = RDMIG_ERR_INIT;
	size_t want;
	int ret;

	for (;;) {
		switch (rx->state) {
		case RX_STREAM:
			return tcp_rx_unexpected(tc, chan, "page", err);
		case RX_HDR:
			ret = tcp_rx_header(tc, chan, "page", TCP_FRAME_PREFIX, deadline,
					    timeout_ms, "fence", err);
			if (ret)
				return ret;
			if (rx->hdr.type == RDMIG_MSG_KEEPALIVE) {
				rx->got -= RDMIG_WIRE_HDR_LEN;
				memmove(rx->buf, rx->buf + RDMIG_WIRE_HDR_LEN, rx->got);
				break;
			}
			if (rx->hdr.type != RDMIG_MSG_WRITE && rx->hdr.type != RDMIG_MSG_FENCE)
				return tcp_rx_unexpected(tc, chan, "page", err);
			rx->state = RX_SMALL;
			break;
		case RX_SMALL:
			want = RDMIG_WIRE_HDR_LEN + (rx->hdr.type == RDMIG_MSG_WRITE
							 ? RDMIG_WIRE_WRITE_LEN
							 : RDMIG_WIRE_FENCE_LEN);
			ret = tcp_io_recv_fill(tcp_ch_io(tc, chan), rx->buf, want, &rx->got,
					       deadline);
			if (ret == -ETIMEDOUT)
				return rdmig_seterr(
				    err, ret, "no fence on page channel %u from %s within %d ms",
				    chan, tc->peer, timeout_ms);
			if (ret == TCP_EOF)
				return rdmig_conn_fail(
				    c, err, -ECONNRESET,
				    "page channel %u from %s: truncated %s, connection closed "
				    "after %zu of %zu bytes",
				    chan, tc->peer, rdmig_msg_type_name(rx->hdr.type), rx->got,
				    want);
			if (ret)
				return rdmig_conn_fail(c, err, ret,
						       "receiving on page channel %u from %s: %s",
						       chan, tc->peer, strerror(-ret));
			if (rx->hdr.type == RDMIG_MSG_WRITE) {
				ret = rx_write_start(tc, chan, err);
				if (ret)
					return ret;
				break;
			}
			ret = rdmig_wire_fence_decode(rx->buf + RDMIG_WIRE_HDR_LEN,
						      RDMIG_WIRE_FENCE_LEN, f, &e);
			if (ret)
				return rdmig_conn_fail(c, err, ret,
						       "malformed FENCE on page channel %u from "
						       "%s: %s",
						       chan, tc->peer, e.msg);
			if (f->bytes != rx->bytes || f->writes != rx->writes)
				return rdmig_conn_fail(
				    c, err, -EPROTO,
				    "fence %" PRIu64
				    " on page channel %u from %s: the peer sent %" PRIu64
				    " bytes in %" PRIu64 " writes since the last fence, %" PRIu64
				    " bytes in %" PRIu64 " writes arrived",
				    f->seq, chan, tc->peer, f->bytes, f->writes, rx->bytes,
				    rx->writes);
			rx->bytes = 0;
			rx->writes = 0;
			rx->state = RX_HDR;
			rx->got = 0;
			return 0;
		case RX_PAYLOAD:
			ret = rx_write_payload(tc, chan, deadline, timeout_ms, err);
			if (ret)
				return ret;
			break;
		}
	}
}

int tcp_wait_fence(struct rdmig_conn *c, unsigned chan, int timeout_ms, struct rdmig_fence *f,
		   struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	int ret;

	pthread_mutex_lock(&tc->ch[chan].rx_lock);
	ret = wait_fence_locked(tc, chan, timeout_ms, f, err);
	pthread_mutex_unlock(&tc->ch[chan].rx_lock);
	return ret;
}
