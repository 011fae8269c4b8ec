/* SPDX-License-Identifier: MIT */
/*
 * tcp backend, the sending side of a page channel: WRITE frames batched into
 * few sendmsg() calls, optionally compressed with zstd, and FENCE frames.
 * Everything here runs under the channel's tx_lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tcp_int.h"

#define TCP_BATCH_FRAMES 64 /* WRITE frames per sendmsg() */
#define TCP_BATCH_BYTES	 (8u << 20)
/*
 * Compression (cfg.compress_level, peer announced RDMIG_CAP_ZSTD): frames
 * are cut at TCP_ZCHUNK bytes and compressed into the channel's scratch
 * buffer, which holds what one batch sends (a frame that would not fit
 * flushes the batch first). A frame is compressed into at most len - 1
 * bytes, so one that does not shrink goes out plain.
 */
#define TCP_ZCHUNK   (1u << 20)
#define TCP_ZSCRATCH TCP_BATCH_BYTES

struct wbatch {
	struct tcp_conn *tc;
	unsigned chan;
	unsigned n;	 /* frames in the batch */
	size_t bytes;	 /* payload bytes in the batch */
	uint64_t frames; /* frames of this call */
	int level;	 /* zstd level, 0: frames go out plain */
	size_t zused;	 /* bytes of ch->zbuf the batch's compressed frames use */
	struct iovec iov[2 * TCP_BATCH_FRAMES];
	uint8_t hdr[TCP_BATCH_FRAMES][TCP_FRAME_PREFIX];
};

static int batch_flush(struct wbatch *b)
{
	int ret;

	if (!b->n)
		return 0;
	/*
	 * MSG_MORE: page frames are never latency-critical, so let the kernel
	 * fill whole segments across frames instead of pushing each frame's
	 * tail as a runt (TCP_NODELAY is on); the fence, sent without it,
	 * pushes everything out.
	 */
	ret = tcp_io_send_all(tcp_ch_io(b->tc, b->chan), b->iov, (int)(2 * b->n), MSG_MORE);
	b->n = 0;
	b->bytes = 0;
	b->zused = 0;
	return ret;
}

/*
 * Compress src into the channel's scratch buffer: the compressed size, or 0
 * when the frame should go out plain (it does not shrink). May flush the
 * batch to free the scratch buffer; *flush_ret has that result.
 */
static size_t batch_compress(struct wbatch *b, const uint8_t *src, uint32_t len, int *flush_ret)
{
	struct tcp_chan *ch = &b->tc->ch[b->chan];
	size_t z;

	*flush_ret = 0;
	if (len < 2)
		return 0;
	if (b->zused + len > TCP_ZSCRATCH) {
		*flush_ret = batch_flush(b);
		if (*flush_ret)
			return 0;
	}
	/* At most len - 1 bytes: zstd fails with dstSize_tooSmall when it would not save. */
	z = ZSTD_compressCCtx(ch->cctx, ch->zbuf + b->zused, len - 1, src, len, b->level);
	return ZSTD_isError(z) ? 0 : z;
}

static int batch_add(struct wbatch *b, uint32_t rreg, uint64_t roff, const uint8_t *src,
		     uint32_t len)
{
	struct rdmig_wire_write w = {.region = rreg, .len = len, .offset = roff};
	struct rdmig_conn *c = &b->tc->base;
	uint16_t flags = RDMIG_HDR_F_NONE;
	const uint8_t *data = src;
	size_t dlen = len;
	uint8_t *h;
	int ret;

	if (b->level) {
		size_t z = batch_compress(b, src, len, &ret);

		if (ret)
			return ret;
		if (z) {
			data = b->tc->ch[b->chan].zbuf + b->zused;
			dlen = z;
			b->zused += z;
			flags = RDMIG_HDR_F_ZSTD;
		}
	}
	h = b->hdr[b->n];
	rdmig_wire_hdr_encode_flags(h, RDMIG_MSG_WRITE, flags, (uint16_t)b->chan, 0,
				    (uint32_t)(RDMIG_WIRE_WRITE_LEN + dlen));
	rdmig_wire_write_encode(h + RDMIG_WIRE_HDR_LEN, &w);
	b->iov[2 * b->n] = (struct iovec){.iov_base = h, .iov_len = TCP_FRAME_PREFIX};
	b->iov[2 * b->n + 1] = (struct iovec){.iov_base = (void *)data, .iov_len = dlen};
	b->n++;
	b->bytes += len;
	b->frames++;
	atomic_fetch_add(&c->st_bytes_on_wire, dlen);
	if (b->n == TCP_BATCH_FRAMES || b->bytes >= TCP_BATCH_BYTES)
		return batch_flush(b);
	return 0;
}

/* Compression for this call: the level, creating the channel's context on first use. */
static int write_level(struct tcp_conn *tc, unsigned chan, int *level, struct rdmig_err *err)
{
	struct tcp_chan *ch = &tc->ch[chan];

	*level = 0;
	if (!tc->base.cfg.compress_level || !(tc->base.peer_caps & RDMIG_CAP_ZSTD))
		return 0;
	if (!ch->cctx)
		ch->cctx = ZSTD_createCCtx();
	if (!ch->zbuf)
		ch->zbuf = malloc(TCP_ZSCRATCH);
	if (!ch->cctx || !ch->zbuf)
		return rdmig_seterr(err, -ENOMEM,
				    "out of memory for zstd compression on page channel %u", chan);
	*level = tc->base.cfg.compress_level;
	return 0;
}

/*
 * Runs contiguous on both sides are merged into one frame, runs longer than
 * RDMIG_WIRE_MAX_DATA (TCP_ZCHUNK when compressing) split over several. The fence's `writes` counts
 * frames, because frames are what the receiver can count: this adjusts
 * c->tx[chan].writes (owned by this sender), to which the common layer adds
 * the number of runs after we return.
 */
int tcp_write(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
	      struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	struct wbatch *b;
	const uint8_t *psrc = NULL;
	uint64_t proff = 0, plen = 0, fmax = RDMIG_WIRE_MAX_DATA;
	uint32_t prreg = 0;
	int ret = 0;

	b = malloc(sizeof(*b));
	if (!b)
		return rdmig_seterr(err, -ENOMEM, "out of memory for a write batch");
	b->tc = tc;
	b->chan = chan;
	b->n = 0;
	b->bytes = 0;
	b->frames = 0;
	b->zused = 0;

	pthread_mutex_lock(&tc->ch[chan].tx_lock);
	ret = write_level(tc, chan, &b->level, err);
	if (ret) {
		pthread_mutex_unlock(&tc->ch[chan].tx_lock);
		free(b);
		return ret;
	}
	if (b->level)
		fmax = TCP_ZCHUNK;
	for (size_t i = 0; i < n && !ret; i++) {
		const struct rdmig_region *r = rdmig_region_get(c, runs[i].lreg);
		const uint8_t *src = (const uint8_t *)r->addr + runs[i].loff;

		if (plen && prreg == runs[i].rreg && proff + plen == runs[i].roff &&
		    psrc + plen == src) {
			plen += runs[i].len;
		} else {
			if (plen)
				ret = batch_add(b, prreg, proff, psrc, (uint32_t)plen);
			prreg = runs[i].rreg;
			proff = runs[i].roff;
			psrc = src;
			plen = runs[i].len;
		}
		while (!ret && plen > fmax) {
			ret = batch_add(b, prreg, proff, psrc, (uint32_t)fmax);
			proff += fmax;
			psrc += fmax;
			plen -= fmax;
		}
	}
	if (!ret && plen)
		ret = batch_add(b, prreg, proff, psrc, (uint32_t)plen);
	if (!ret)
		ret = batch_flush(b);
	if (!ret)
		c->tx[chan].writes += b->frames - (uint64_t)n;
	pthread_mutex_unlock(&tc->ch[chan].tx_lock);
	free(b);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "sending WRITE on page channel %u to %s: %s",
				       chan, tc->peer, strerror(-ret));
	return 0;
}

int tcp_fence(struct rdmig_conn *c, unsigned chan, const struct rdmig_fence *f,
	      struct rdmig_err *err)
{
	struct tcp_conn *tc = to_tcp(c);
	uint8_t buf[RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_FENCE_LEN];
	int ret;

	rdmig_wire_hdr_encode(buf, RDMIG_MSG_FENCE, (uint16_t)chan, 0, RDMIG_WIRE_FENCE_LEN);
	rdmig_wire_fence_encode(buf + RDMIG_WIRE_HDR_LEN, f);
	/* Once in the socket, the earlier writes are ahead of it: nothing else to drain. */
	pthread_mutex_lock(&tc->ch[chan].tx_lock);
	ret = tcp_io_send_buf(tcp_ch_io(tc, chan), buf, sizeof(buf));
	pthread_mutex_unlock(&tc->ch[chan].tx_lock);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "sending FENCE on page channel %u to %s: %s",
				       chan, tc->peer, strerror(-ret));
	return 0;
}
