/* SPDX-License-Identifier: MIT */
/*
 * tcp backend, byte streams: STREAM_DATA frames of at most
 * RDMIG_WIRE_MAX_DATA bytes and one STREAM_EOF per direction, on a data
 * channel that carries no page writes. Senders hold the channel's tx_lock,
 * the receiver its rx_lock.
 */
#include <errno.h>
#include <inttypes.h>

#include "clock.h"
#include "tcp_int.h"

int tcp_stream_send(struct rdmig_conn *c, unsigned chan, const void *buf, size_t len,
		    struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	struct tcp_chan *ch = &tc->ch[chan];
	const uint8_t *p = buf;
	uint8_t hdr[RDMIG_WIRE_HDR_LEN];
	struct iovec iov[2];
	int ret = 0;

	pthread_mutex_lock(&ch->tx_lock);
	if (ch->eof_sent) {
		pthread_mutex_unlock(&ch->tx_lock);
		return rdmig_seterr(err, -EPIPE, "stream channel %u to %s: already shut down", chan,
				    tc->peer);
	}
	while (len && !ret) {
		uint32_t n = len > RDMIG_WIRE_MAX_DATA ? RDMIG_WIRE_MAX_DATA : (uint32_t)len;

		rdmig_wire_hdr_encode(hdr, RDMIG_MSG_STREAM_DATA, (uint16_t)chan, 0, n);
		iov[0] = (struct iovec){.iov_base = hdr, .iov_len = sizeof(hdr)};
		iov[1] = (struct iovec){.iov_base = (void *)p, .iov_len = n};
		ret = tcp_io_send_all(tcp_ch_io(tc, chan), iov, 2, 0);
		p += n;
		len -= n;
	}
	pthread_mutex_unlock(&ch->tx_lock);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "sending on stream channel %u to %s: %s", chan,
				       tc->peer, strerror(-ret));
	return 0;
}

int tcp_stream_shutdown(struct rdmig_conn *c, unsigned chan, struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	struct tcp_chan *ch = &tc->ch[chan];
	uint8_t hdr[RDMIG_WIRE_HDR_LEN];
	int ret = 0;

	pthread_mutex_lock(&ch->tx_lock);
	if (!ch->eof_sent) {
		rdmig_wire_hdr_encode(hdr, RDMIG_MSG_STREAM_EOF, (uint16_t)chan, 0, 0);
		ret = tcp_io_send_buf(tcp_ch_io(tc, chan), hdr, sizeof(hdr));
		ch->eof_sent = !ret;
	}
	pthread_mutex_unlock(&ch->tx_lock);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "sending end of stream on channel %u to %s: %s",
				       chan, tc->peer, strerror(-ret));
	return 0;
}

static ssize_t stream_recv_locked(struct tcp_conn *tc, unsigned chan, void *buf, size_t cap,
				  int timeout_ms, struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;
	struct tcp_rx *rx = &tc->ch[chan].rx;
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	ssize_t n;
	int ret;

	for (;;) {
		if (rx->eof)
			return 0;
		switch (rx->state) {
		case RX_SMALL:
		case RX_PAYLOAD:
			return tcp_rx_unexpected(tc, chan, "stream", err);
		case RX_HDR:
			ret = tcp_rx_header(tc, chan, "stream", RDMIG_WIRE_HDR_LEN, deadline,
					    timeout_ms, "data", err);
			if (ret)
				return ret;
			rx->got = 0;
			switch (rx->hdr.type) {
			case RDMIG_MSG_STREAM_DATA:
				rx->stream_left = rx->hdr.length;
				rx->state = RX_STREAM;
				break;
			case RDMIG_MSG_STREAM_EOF:
				rx->eof = true;
				return 0;
			case RDMIG_MSG_KEEPALIVE:
				break;
			default:
				/* Keep the header in buf for the message. */
				rx->got = RDMIG_WIRE_HDR_LEN;
				return tcp_rx_unexpected(tc, chan, "stream", err);
			}
			break;
		case RX_STREAM:
			n = tcp_io_recv_some(tcp_ch_io(tc, chan), buf,
					     cap < rx->stream_left ? cap : (size_t)rx->stream_left,
					     deadline);
			if (n == -ETIMEDOUT)
				return rdmig_seterr(err, -ETIMEDOUT,
						    "no data on stream channel %u from %s within "
						    "%d ms",
						    chan, tc->peer, timeout_ms);
			if (n == 0)
				return rdmig_conn_fail(c, err, -ECONNRESET,
						       "stream channel %u from %s: connection "
						       "closed with %" PRIu64
						       " bytes of a frame still missing",
						       chan, tc->peer, rx->stream_left);
			if (n < 0)
				return rdmig_conn_fail(c, err, (int)n,
						       "receiving on stream channel %u from %s: %s",
						       chan, tc->peer, strerror((int)-n));
			rx->stream_left -= (uint64_t)n;
			if (!rx->stream_left)
				rx->state = RX_HDR;
			return n;
		}
	}
}

ssize_t tcp_stream_recv(struct rdmig_conn *c, unsigned chan, void *buf, size_t cap, int timeout_ms,
			struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	ssize_t n;

	pthread_mutex_lock(&tc->ch[chan].rx_lock);
	n = stream_recv_locked(tc, chan, buf, cap, timeout_ms, err);
	pthread_mutex_unlock(&tc->ch[chan].rx_lock);
	return n;
}
