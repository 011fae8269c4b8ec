/* SPDX-License-Identifier: MIT */
/*
 * rdmig wire format: encoders and validating decoders (see wire.h and
 * docs/protocol.md).
 *
 * Every byte handed to a decoder may come from a hostile or broken peer. The
 * decoders check the buffer length before each read, read fields only with
 * the rdmig_get_be*() helpers, and write to `out` only once the whole message
 * has been accepted (the LAYOUT decoder fills `out` as it goes; on failure
 * its contents are unspecified and *n is untouched). Errors are -EPROTO
 * (malformed), -EMSGSIZE (length beyond the type's limit) or
 * -EPROTONOSUPPORT (other protocol version), each with one phrase naming the
 * field and its value.
 */
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <zstd.h>

/* Header flag bits this version understands; anything else is refused. */
#define HDR_F_KNOWN RDMIG_HDR_F_ZSTD

/* LAYOUT flag bits this version understands. */
#define LAYOUT_F_KNOWN (RDMIG_REG_REMOTE_WRITE | RDMIG_REG_REMOTE_READ)

/* Largest errno a peer may report in an ERROR message (Linux MAX_ERRNO). */
#define WIRE_MAX_ERRNO 4095

#define LAYOUT_MAX_LEN (4u + RDMIG_MAX_REGIONS * RDMIG_WIRE_LAYOUT_ENTRY_LEN)
#define RINGS_MAX_LEN  (4u + RDMIG_MAX_CHANNELS * RDMIG_WIRE_RING_LEN)

/* The codecs below spell out every offset: a size change must revisit them. */
_Static_assert(RDMIG_WIRE_HDR_LEN == 16, "header codec covers 16 bytes");
_Static_assert(RDMIG_WIRE_HELLO_LEN == 48, "HELLO codec covers 48 bytes");
_Static_assert(RDMIG_WIRE_HELLO_LEN <= 56, "HELLO exceeds an IB connect request's private data");
_Static_assert(RDMIG_WIRE_LAYOUT_ENTRY_LEN == 32 + RDMIG_REGION_NAME_MAX, "LAYOUT entry codec");
_Static_assert(RDMIG_WIRE_WRITE_LEN == 16 && RDMIG_WIRE_FENCE_LEN == 24 &&
		   RDMIG_WIRE_CREDIT_LEN == 8 && RDMIG_WIRE_RING_LEN == 24,
	       "fixed payload codecs");

const char *rdmig_msg_type_name(uint8_t type)
{
	switch (type) {
	case RDMIG_MSG_HELLO:
		return "HELLO";
	case RDMIG_MSG_HELLO_ACK:
		return "HELLO_ACK";
	case RDMIG_MSG_AUTH:
		return "AUTH";
	case RDMIG_MSG_LAYOUT:
		return "LAYOUT";
	case RDMIG_MSG_APP:
		return "APP";
	case RDMIG_MSG_ERROR:
		return "ERROR";
	case RDMIG_MSG_BYE:
		return "BYE";
	case RDMIG_MSG_RINGS:
		return "RINGS";
	case RDMIG_MSG_WRITE:
		return "WRITE";
	case RDMIG_MSG_FENCE:
		return "FENCE";
	case RDMIG_MSG_STREAM_DATA:
		return "STREAM_DATA";
	case RDMIG_MSG_STREAM_EOF:
		return "STREAM_EOF";
	case RDMIG_MSG_CREDIT:
		return "CREDIT";
	case RDMIG_MSG_KEEPALIVE:
		return "KEEPALIVE";
	}
	return "unknown";
}

/* ---- header ----------------------------------------------------------- */

size_t rdmig_wire_hdr_encode(void *buf, uint8_t type, uint16_t chan, uint16_t app_type,
			     uint32_t length)
{
	return rdmig_wire_hdr_encode_flags(buf, type, RDMIG_HDR_F_NONE, chan, app_type, length);
}

size_t rdmig_wire_hdr_encode_flags(void *buf, uint8_t type, uint16_t flags, uint16_t chan,
				   uint16_t app_type, uint32_t length)
{
	uint8_t *p = buf;

	rdmig_put_be32(p, RDMIG_WIRE_MAGIC);
	p[4] = RDMIG_WIRE_VERSION;
	p[5] = type;
	rdmig_put_be16(p + 6, flags);
	rdmig_put_be32(p + 8, length);
	rdmig_put_be16(p + 12, chan);
	rdmig_put_be16(p + 14, app_type);
	return RDMIG_WIRE_HDR_LEN;
}

/* Where a message type may travel. */
enum chan_kind {
	CHAN_CTRL, /* control channel only: chan must be 0xffff */
	CHAN_DATA, /* data channel only: chan < RDMIG_MAX_CHANNELS */
	CHAN_ANY,  /* either */
};

static enum chan_kind type_chan_kind(uint8_t type)
{
	switch (type) {
	case RDMIG_MSG_AUTH:
	case RDMIG_MSG_LAYOUT:
	case RDMIG_MSG_APP:
	case RDMIG_MSG_RINGS:
		return CHAN_CTRL;
	case RDMIG_MSG_WRITE:
	case RDMIG_MSG_FENCE:
	case RDMIG_MSG_STREAM_DATA:
	case RDMIG_MSG_STREAM_EOF:
	case RDMIG_MSG_CREDIT:
		return CHAN_DATA;
	default:
		return CHAN_ANY;
	}
}

/* Payload length limits of one type; min == max for fixed sizes. */
static int type_len_ok(uint8_t type, uint16_t flags, uint32_t len, uint32_t max_ctrl,
		       struct rdmig_err *err)
{
	const char *name = rdmig_msg_type_name(type);
	uint64_t lo = 0, hi = 0;

	switch (type) {
	case RDMIG_MSG_HELLO:
	case RDMIG_MSG_HELLO_ACK:
		lo = hi = RDMIG_WIRE_HELLO_LEN;
		break;
	case RDMIG_MSG_AUTH:
	case RDMIG_MSG_APP:
		hi = max_ctrl;
		break;
	case RDMIG_MSG_LAYOUT:
		lo = 4;
		hi = LAYOUT_MAX_LEN < max_ctrl ? LAYOUT_MAX_LEN : max_ctrl;
		break;
	case RDMIG_MSG_RINGS:
		lo = 4 + RDMIG_WIRE_RING_LEN;
		hi = RINGS_MAX_LEN < max_ctrl ? RINGS_MAX_LEN : max_ctrl;
		break;
	case RDMIG_MSG_ERROR:
		lo = 4;
		hi = max_ctrl;
		break;
	case RDMIG_MSG_BYE:
	case RDMIG_MSG_KEEPALIVE:
	case RDMIG_MSG_STREAM_EOF:
		break;
	case RDMIG_MSG_WRITE:
		lo = RDMIG_WIRE_WRITE_LEN;
		hi = (uint64_t)RDMIG_WIRE_WRITE_LEN + RDMIG_WIRE_MAX_DATA;
		if (flags & RDMIG_HDR_F_ZSTD) {
			/* Compressed data is never empty, and may exceed the plain maximum a bit.
			 */
			lo = RDMIG_WIRE_WRITE_LEN + 1;
			hi += RDMIG_WIRE_ZSTD_SLACK;
		}
		break;
	case RDMIG_MSG_FENCE:
		lo = hi = RDMIG_WIRE_FENCE_LEN;
		break;
	case RDMIG_MSG_STREAM_DATA:
		lo = 1;
		hi = RDMIG_WIRE_MAX_DATA;
		break;
	case RDMIG_MSG_CREDIT:
		lo = hi = RDMIG_WIRE_CREDIT_LEN;
		break;
	}

	if (lo == hi && len != lo)
		return rdmig_seterr(err, lo < len ? -EMSGSIZE : -EPROTO,
				    "%s: payload length %" PRIu32 ", expected %" PRIu64, name, len,
				    lo);
	if (len > hi)
		return rdmig_seterr(err, -EMSGSIZE,
				    "%s: payload length %" PRIu32 " exceeds the maximum %" PRIu64,
				    name, len, hi);
	if (len < lo)
		return rdmig_seterr(err, -EPROTO,
				    "%s: payload length %" PRIu32 " below the minimum %" PRIu64,
				    name, len, lo);
	if (type == RDMIG_MSG_LAYOUT && (len - 4) % RDMIG_WIRE_LAYOUT_ENTRY_LEN)
		return rdmig_seterr(err, -EPROTO,
				    "LAYOUT: payload length %" PRIu32 " is not 4 + n * %u", len,
				    RDMIG_WIRE_LAYOUT_ENTRY_LEN);
	if (type == RDMIG_MSG_RINGS && (len - 4) % RDMIG_WIRE_RING_LEN)
		return rdmig_seterr(err, -EPROTO,
				    "RINGS: payload length %" PRIu32 " is not 4 + n * %u", len,
				    RDMIG_WIRE_RING_LEN);
	return 0;
}

int rdmig_wire_hdr_decode(const void *buf, size_t len, uint32_t max_ctrl,
			  struct rdmig_wire_hdr *out, struct rdmig_err *err)
{
	const uint8_t *p = buf;
	struct rdmig_wire_hdr h;
	const char *name;
	int ret;

	if (len < RDMIG_WIRE_HDR_LEN)
		return rdmig_seterr(err, -EPROTO, "header: truncated, %zu of %u bytes", len,
				    RDMIG_WIRE_HDR_LEN);
	h.magic = rdmig_get_be32(p);
	if (h.magic != RDMIG_WIRE_MAGIC)
		return rdmig_seterr(err, -EPROTO,
				    "header: bad magic 0x%08" PRIx32 " (expected 0x%08x \"RDMG\"): "
				    "peer is not rdmig",
				    h.magic, RDMIG_WIRE_MAGIC);
	h.version = p[4];
	if (h.version != RDMIG_WIRE_VERSION)
		return rdmig_seterr(
		    err, -EPROTONOSUPPORT,
		    "header: peer speaks wire version %u, this side speaks version %u", h.version,
		    RDMIG_WIRE_VERSION);
	h.type = p[5];
	name = rdmig_msg_type_name(h.type);
	if (!strcmp(name, "unknown"))
		return rdmig_seterr(err, -EPROTO, "header: unknown message type %u", h.type);
	h.flags = rdmig_get_be16(p + 6);
	if (h.flags & ~HDR_F_KNOWN)
		return rdmig_seterr(err, -EPROTO, "%s: unknown header flags 0x%04x", name,
				    h.flags & ~HDR_F_KNOWN);
	if ((h.flags & RDMIG_HDR_F_ZSTD) && h.type != RDMIG_MSG_WRITE)
		return rdmig_seterr(err, -EPROTO,
				    "%s: header flags 0x%04x (zstd) are allowed on WRITE only",
				    name, h.flags);
	h.length = rdmig_get_be32(p + 8);
	h.chan = rdmig_get_be16(p + 12);
	h.app_type = rdmig_get_be16(p + 14);

	switch (type_chan_kind(h.type)) {
	case CHAN_CTRL:
		if (h.chan != RDMIG_CHAN_CTRL)
			return rdmig_seterr(err, -EPROTO,
					    "%s: channel %u, expected the control channel 0xffff",
					    name, h.chan);
		break;
	case CHAN_DATA:
		if (h.chan >= RDMIG_MAX_CHANNELS)
			return rdmig_seterr(err, -EPROTO,
					    "%s: channel %u is not a data channel (0..%u)", name,
					    h.chan, RDMIG_MAX_CHANNELS - 1);
		break;
	case CHAN_ANY:
		if (h.chan != RDMIG_CHAN_CTRL && h.chan >= RDMIG_MAX_CHANNELS)
			return rdmig_seterr(err, -EPROTO,
					    "%s: channel %u is neither 0xffff nor 0..%u", name,
					    h.chan, RDMIG_MAX_CHANNELS - 1);
		break;
	}

	if (h.type == RDMIG_MSG_APP) {
		if (h.app_type > 0x7fff)
			return rdmig_seterr(
			    err, -EPROTO, "APP: application type 0x%04x above 0x7fff", h.app_type);
	} else if (h.app_type) {
		return rdmig_seterr(err, -EPROTO, "%s: application type 0x%04x, expected 0", name,
				    h.app_type);
	}

	ret = type_len_ok(h.type, h.flags, h.length, max_ctrl, err);
	if (ret)
		return ret;
	*out = h;
	return 0;
}

/* ---- HELLO ------------------------------------------------------------ */

size_t rdmig_wire_hello_encode(void *buf, const struct rdmig_wire_hello *h)
{
	uint8_t *p = buf;

	rdmig_put_be32(p, h->caps);
	rdmig_put_be16(p + 4, h->role);
	rdmig_put_be16(p + 6, h->nchan);
	rdmig_put_be16(p + 8, h->chan_index);
	rdmig_put_be16(p + 10, h->reserved0);
	rdmig_put_be32(p + 12, h->max_ctrl);
	rdmig_put_be64(p + 16, h->token);
	rdmig_put_be64(p + 24, h->stream_ring);
	rdmig_put_be32(p + 32, h->ring_rkey);
	rdmig_put_be32(p + 36, h->reserved1);
	rdmig_put_be64(p + 40, h->ring_addr);
	return RDMIG_WIRE_HELLO_LEN;
}

int rdmig_wire_hello_decode(const void *buf, size_t len, struct rdmig_wire_hello *out,
			    struct rdmig_err *err)
{
	const uint8_t *p = buf;
	struct rdmig_wire_hello h;

	if (len != RDMIG_WIRE_HELLO_LEN)
		return rdmig_seterr(err, -EPROTO, "HELLO: payload length %zu, expected %u", len,
				    RDMIG_WIRE_HELLO_LEN);
	h.caps = rdmig_get_be32(p);
	h.role = rdmig_get_be16(p + 4);
	h.nchan = rdmig_get_be16(p + 6);
	h.chan_index = rdmig_get_be16(p + 8);
	h.reserved0 = rdmig_get_be16(p + 10);
	h.max_ctrl = rdmig_get_be32(p + 12);
	h.token = rdmig_get_be64(p + 16);
	h.stream_ring = rdmig_get_be64(p + 24);
	h.ring_rkey = rdmig_get_be32(p + 32);
	h.reserved1 = rdmig_get_be32(p + 36);
	h.ring_addr = rdmig_get_be64(p + 40);

	if (h.role != RDMIG_ROLE_CONNECTOR && h.role != RDMIG_ROLE_ACCEPTOR)
		return rdmig_seterr(err, -EPROTO,
				    "HELLO: role %u is neither connector (1) nor "
				    "acceptor (2)",
				    h.role);
	if (h.nchan < 1 || h.nchan > RDMIG_MAX_CHANNELS)
		return rdmig_seterr(err, -EPROTO, "HELLO: channel count %u outside 1..%u", h.nchan,
				    RDMIG_MAX_CHANNELS);
	if (h.chan_index != RDMIG_CHAN_CTRL && h.chan_index >= h.nchan)
		return rdmig_seterr(err, -EPROTO,
				    "HELLO: channel index %u is neither 0xffff nor below the "
				    "channel count %u",
				    h.chan_index, h.nchan);
	if (h.reserved0)
		return rdmig_seterr(err, -EPROTO, "HELLO: reserved0 is 0x%04x, must be zero",
				    h.reserved0);
	if (h.reserved1)
		return rdmig_seterr(
		    err, -EPROTO, "HELLO: reserved1 is 0x%08" PRIx32 ", must be zero", h.reserved1);
	*out = h;
	return 0;
}

/* ---- rdma_cm private data: HELLO frame --------------------------------- */

size_t rdmig_wire_pdata_encode(void *buf, uint8_t type, const struct rdmig_wire_hello *h)
{
	uint8_t *p = buf;

	rdmig_wire_hdr_encode(p, type, h->chan_index, 0, RDMIG_WIRE_HELLO_LEN);
	rdmig_wire_hello_encode(p + RDMIG_WIRE_HDR_LEN, h);
	return RDMIG_WIRE_PDATA_LEN;
}

int rdmig_wire_pdata_decode(const void *buf, size_t len, uint8_t *type,
			    struct rdmig_wire_hello *out, struct rdmig_err *err)
{
	const uint8_t *p = buf;
	struct rdmig_wire_hello h;
	struct rdmig_wire_hdr hdr;
	int ret;

	if (len < RDMIG_WIRE_PDATA_LEN)
		return rdmig_seterr(err, -EPROTO, "HELLO: frame truncated, %zu of %u bytes", len,
				    RDMIG_WIRE_PDATA_LEN);
	/* max_ctrl plays no part: HELLO's length is fixed. */
	ret = rdmig_wire_hdr_decode(p, len, RDMIG_WIRE_HELLO_LEN, &hdr, err);
	if (ret)
		return ret;
	if (hdr.type != RDMIG_MSG_HELLO && hdr.type != RDMIG_MSG_HELLO_ACK)
		return rdmig_seterr(err, -EPROTO, "HELLO: frame carries %s, not HELLO or HELLO_ACK",
				    rdmig_msg_type_name(hdr.type));
	for (size_t i = RDMIG_WIRE_PDATA_LEN; i < len; i++)
		if (p[i])
			return rdmig_seterr(
			    err, -EPROTO, "HELLO: byte %zu past the frame is 0x%02x, must be zero",
			    i, p[i]);
	ret = rdmig_wire_hello_decode(p + RDMIG_WIRE_HDR_LEN, RDMIG_WIRE_HELLO_LEN, &h, err);
	if (ret)
		return ret;
	if (hdr.chan != h.chan_index)
		return rdmig_seterr(err, -EPROTO,
				    "HELLO: header channel %u disagrees with channel index %u",
				    hdr.chan, h.chan_index);
	*type = hdr.type;
	*out = h;
	return 0;
}

/* ---- LAYOUT ----------------------------------------------------------- */

size_t rdmig_wire_layout_encode(void *buf, const struct rdmig_wire_region *r, uint32_t n)
{
	uint8_t *p = buf;

	rdmig_put_be32(p, n);
	p += 4;
	for (uint32_t i = 0; i < n; i++, p += RDMIG_WIRE_LAYOUT_ENTRY_LEN) {
		size_t nl = strnlen(r[i].name, RDMIG_REGION_NAME_MAX - 1);

		rdmig_put_be32(p, r[i].id);
		rdmig_put_be32(p + 4, r[i].flags);
		rdmig_put_be64(p + 8, r[i].len);
		rdmig_put_be64(p + 16, r[i].addr);
		rdmig_put_be64(p + 24, r[i].rkey);
		/* Always NUL-terminated and zero-padded, truncated if need be. */
		memset(p + 32, 0, RDMIG_REGION_NAME_MAX);
		memcpy(p + 32, r[i].name, nl);
	}
	return 4 + (size_t)n * RDMIG_WIRE_LAYOUT_ENTRY_LEN;
}

int rdmig_wire_layout_decode(const void *buf, size_t len, struct rdmig_wire_region *out,
			     uint32_t max, uint32_t *n, struct rdmig_err *err)
{
	const uint8_t *p = buf;
	uint32_t count;

	if (len < 4)
		return rdmig_seterr(err, -EPROTO, "LAYOUT: truncated, %zu of 4 count bytes", len);
	count = rdmig_get_be32(p);
	if (count > RDMIG_MAX_REGIONS)
		return rdmig_seterr(err, -EPROTO, "LAYOUT: region count %" PRIu32 " above %u",
				    count, RDMIG_MAX_REGIONS);
	if (count > max)
		return rdmig_seterr(err, -EPROTO,
				    "LAYOUT: region count %" PRIu32 " above the %" PRIu32
				    " this side accepts",
				    count, max);
	/* count <= 64: the product cannot overflow. */
	if (len != 4 + (size_t)count * RDMIG_WIRE_LAYOUT_ENTRY_LEN)
		return rdmig_seterr(err, -EPROTO,
				    "LAYOUT: region count %" PRIu32
				    " disagrees with payload length "
				    "%zu (expected %zu)",
				    count, len, 4 + (size_t)count * RDMIG_WIRE_LAYOUT_ENTRY_LEN);

	p += 4;
	for (uint32_t i = 0; i < count; i++, p += RDMIG_WIRE_LAYOUT_ENTRY_LEN) {
		struct rdmig_wire_region *r = &out[i];
		const uint8_t *name = p + 32;

		r->id = rdmig_get_be32(p);
		r->flags = rdmig_get_be32(p + 4);
		r->len = rdmig_get_be64(p + 8);
		r->addr = rdmig_get_be64(p + 16);
		r->rkey = rdmig_get_be64(p + 24);

		if (!memchr(name, 0, RDMIG_REGION_NAME_MAX))
			return rdmig_seterr(err, -EPROTO,
					    "LAYOUT: region %" PRIu32 " name not NUL-terminated "
					    "within %u bytes",
					    r->id, RDMIG_REGION_NAME_MAX);
		memcpy(r->name, name, RDMIG_REGION_NAME_MAX);
		if (r->flags & ~LAYOUT_F_KNOWN)
			return rdmig_seterr(
			    err, -EPROTO, "LAYOUT: region %" PRIu32 " has unknown flags 0x%" PRIx32,
			    r->id, r->flags & ~LAYOUT_F_KNOWN);
		if (!r->len)
			return rdmig_seterr(err, -EPROTO, "LAYOUT: region %" PRIu32 " length 0",
					    r->id);
		if (r->addr > UINT64_MAX - r->len)
			return rdmig_seterr(err, -EPROTO,
					    "LAYOUT: region %" PRIu32 " address 0x%" PRIx64
					    " + length %" PRIu64 " overflows",
					    r->id, r->addr, r->len);
		for (uint32_t j = 0; j < i; j++)
			if (out[j].id == r->id)
				return rdmig_seterr(err, -EPROTO,
						    "LAYOUT: region id %" PRIu32
						    " appears twice (entries %" PRIu32
						    " and %" PRIu32 ")",
						    r->id, j, i);
	}
	*n = count;
	return 0;
}

/* ---- RINGS ------------------------------------------------------------ */

size_t rdmig_wire_rings_encode(void *buf, const struct rdmig_wire_ring *r, uint32_t n)
{
	uint8_t *p = buf;

	rdmig_put_be32(p, n);
	p += 4;
	for (uint32_t i = 0; i < n; i++, p += RDMIG_WIRE_RING_LEN) {
		rdmig_put_be64(p, r[i].size);
		rdmig_put_be64(p + 8, r[i].addr);
		rdmig_put_be32(p + 16, r[i].rkey);
		rdmig_put_be32(p + 20, 0);
	}
	return 4 + (size_t)n * RDMIG_WIRE_RING_LEN;
}

int rdmig_wire_rings_decode(const void *buf, size_t len, struct rdmig_wire_ring *out, uint32_t want,
			    struct rdmig_err *err)
{
	const uint8_t *p = buf;
	uint32_t count;

	if (len < 4)
		return rdmig_seterr(err, -EPROTO, "RINGS: truncated, %zu of 4 count bytes", len);
	count = rdmig_get_be32(p);
	if (count != want || count > RDMIG_MAX_CHANNELS)
		return rdmig_seterr(err, -EPROTO,
				    "RINGS: %" PRIu32 " rings for a connection of %" PRIu32
				    " data channels",
				    count, want);
	if (len != 4 + (size_t)count * RDMIG_WIRE_RING_LEN)
		return rdmig_seterr(err, -EPROTO,
				    "RINGS: ring count %" PRIu32 " disagrees with payload length "
				    "%zu (expected %zu)",
				    count, len, 4 + (size_t)count * RDMIG_WIRE_RING_LEN);
	p += 4;
	for (uint32_t i = 0; i < count; i++, p += RDMIG_WIRE_RING_LEN) {
		uint64_t size = rdmig_get_be64(p), addr = rdmig_get_be64(p + 8);
		uint32_t rkey = rdmig_get_be32(p + 16), rsv = rdmig_get_be32(p + 20);

		if (size < 4096 || size > (1u << 30) || (size & (size - 1)))
			return rdmig_seterr(err, -EPROTO,
					    "RINGS: ring of data channel %" PRIu32 " has %" PRIu64
					    " bytes, not a power of two in 4 KiB..1 GiB",
					    i, size);
		if (!addr || !rkey)
			return rdmig_seterr(err, -EPROTO,
					    "RINGS: ring of data channel %" PRIu32
					    " without an address or a key (0x%" PRIx64
					    ", 0x%" PRIx32 ")",
					    i, addr, rkey);
		if (addr > UINT64_MAX - size)
			return rdmig_seterr(err, -EPROTO,
					    "RINGS: ring of data channel %" PRIu32
					    " address 0x%" PRIx64 " + %" PRIu64 " bytes overflows",
					    i, addr, size);
		if (rsv)
			return rdmig_seterr(err, -EPROTO,
					    "RINGS: ring of data channel %" PRIu32
					    " reserved bytes 0x%08" PRIx32 ", must be zero",
					    i, rsv);
		out[i] = (struct rdmig_wire_ring){.size = size, .addr = addr, .rkey = rkey};
	}
	return 0;
}

/* ---- WRITE ------------------------------------------------------------ */

size_t rdmig_wire_write_encode(void *buf, const struct rdmig_wire_write *w)
{
	uint8_t *p = buf;

	rdmig_put_be32(p, w->region);
	rdmig_put_be32(p + 4, w->len);
	rdmig_put_be64(p + 8, w->offset);
	return RDMIG_WIRE_WRITE_LEN;
}

int rdmig_wire_write_decode(const void *buf, size_t len, struct rdmig_wire_write *out,
			    struct rdmig_err *err)
{
	const uint8_t *p = buf;
	struct rdmig_wire_write w;

	if (len < RDMIG_WIRE_WRITE_LEN)
		return rdmig_seterr(err, -EPROTO, "WRITE: truncated, %zu of %u prefix bytes", len,
				    RDMIG_WIRE_WRITE_LEN);
	w.region = rdmig_get_be32(p);
	w.len = rdmig_get_be32(p + 4);
	w.offset = rdmig_get_be64(p + 8);
	/* With the data in the buffer, the prefix must describe exactly that much. */
	if (len > RDMIG_WIRE_WRITE_LEN && len - RDMIG_WIRE_WRITE_LEN != w.len)
		return rdmig_seterr(err, -EPROTO,
				    "WRITE: length %" PRIu32
				    " disagrees with %zu data bytes in the "
				    "frame",
				    w.len, len - RDMIG_WIRE_WRITE_LEN);
	*out = w;
	return 0;
}

int rdmig_wire_write_check(const struct rdmig_wire_write *w, const uint64_t *region_len,
			   const uint8_t *region_writable, uint32_t nregions, struct rdmig_err *err)
{
	uint64_t rlen;

	if (!region_len || w->region >= nregions)
		return rdmig_seterr(err, -EPROTO,
				    "WRITE: unknown region %" PRIu32 " (%" PRIu32 " regions)",
				    w->region, nregions);
	if (!region_writable || !region_writable[w->region])
		return rdmig_seterr(err, -EPROTO, "WRITE: region %" PRIu32 " is not writable",
				    w->region);
	if (!w->len)
		return rdmig_seterr(err, -EPROTO, "WRITE: length 0 to region %" PRIu32, w->region);
	if (w->len > RDMIG_WIRE_MAX_DATA)
		return rdmig_seterr(err, -EMSGSIZE,
				    "WRITE: length %" PRIu32 " exceeds the maximum %u", w->len,
				    RDMIG_WIRE_MAX_DATA);
	rlen = region_len[w->region];
	if (w->offset > rlen || w->len > rlen - w->offset)
		return rdmig_seterr(err, -EPROTO,
				    "WRITE: offset 0x%" PRIx64 " + length %" PRIu32
				    " beyond region %" PRIu32 " (length %" PRIu64 ")",
				    w->offset, w->len, w->region, rlen);
	return 0;
}

int rdmig_wire_zstd_check(const void *z, size_t zlen, uint32_t len, struct rdmig_err *err)
{
	unsigned long long content;
	size_t fsize;

	if (!zlen || zlen > (size_t)RDMIG_WIRE_MAX_DATA + RDMIG_WIRE_ZSTD_SLACK)
		return rdmig_seterr(err, zlen ? -EMSGSIZE : -EPROTO,
				    "WRITE: %zu bytes of compressed data, expected 1..%u", zlen,
				    RDMIG_WIRE_MAX_DATA + RDMIG_WIRE_ZSTD_SLACK);
	fsize = ZSTD_findFrameCompressedSize(z, zlen);
	if (ZSTD_isError(fsize))
		return rdmig_seterr(err, -EPROTO, "WRITE: compressed data is not a zstd frame: %s",
				    ZSTD_getErrorName(fsize));
	if (fsize != zlen)
		return rdmig_seterr(err, -EPROTO,
				    "WRITE: zstd frame of %zu bytes followed by %zu more bytes, "
				    "expected one frame",
				    fsize, zlen - fsize);
	content = ZSTD_getFrameContentSize(z, zlen);
	if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN)
		return rdmig_seterr(err, -EPROTO, "WRITE: zstd frame %s its decompressed size",
				    content == ZSTD_CONTENTSIZE_ERROR ? "is corrupt, cannot read"
								      : "does not record");
	if (content != len)
		return rdmig_seterr(err, -EPROTO,
				    "WRITE: zstd frame decompresses to %llu bytes, the prefix says "
				    "%" PRIu32,
				    content, len);
	return 0;
}

/* ---- FENCE, CREDIT ---------------------------------------------------- */

size_t rdmig_wire_fence_encode(void *buf, const struct rdmig_fence *f)
{
	uint8_t *p = buf;

	rdmig_put_be64(p, f->seq);
	rdmig_put_be64(p + 8, f->bytes);
	rdmig_put_be64(p + 16, f->writes);
	return RDMIG_WIRE_FENCE_LEN;
}

int rdmig_wire_fence_decode(const void *buf, size_t len, struct rdmig_fence *out,
			    struct rdmig_err *err)
{
	const uint8_t *p = buf;

	if (len != RDMIG_WIRE_FENCE_LEN)
		return rdmig_seterr(err, -EPROTO, "FENCE: payload length %zu, expected %u", len,
				    RDMIG_WIRE_FENCE_LEN);
	out->seq = rdmig_get_be64(p);
	out->bytes = rdmig_get_be64(p + 8);
	out->writes = rdmig_get_be64(p + 16);
	return 0;
}

size_t rdmig_wire_credit_encode(void *buf, uint64_t consumed)
{
	rdmig_put_be64(buf, consumed);
	return RDMIG_WIRE_CREDIT_LEN;
}

int rdmig_wire_credit_decode(const void *buf, size_t len, uint64_t *consumed, struct rdmig_err *err)
{
	if (len != RDMIG_WIRE_CREDIT_LEN)
		return rdmig_seterr(err, -EPROTO, "CREDIT: payload length %zu, expected %u", len,
				    RDMIG_WIRE_CREDIT_LEN);
	*consumed = rdmig_get_be64(buf);
	return 0;
}

/* ---- ERROR ------------------------------------------------------------ */

size_t rdmig_wire_error_encode(void *buf, size_t cap, int code, const char *msg)
{
	uint8_t *p = buf;
	size_t n;

	if (cap < 4)
		return 0;
	rdmig_put_be32(p, (uint32_t)(int32_t)code);
	n = msg ? strlen(msg) : 0;
	if (n > cap - 4)
		n = cap - 4;
	if (n)
		memcpy(p + 4, msg, n);
	return 4 + n;
}

int rdmig_wire_error_decode(const void *buf, size_t len, int *code, char *msg, size_t msgcap,
			    struct rdmig_err *err)
{
	const uint8_t *p = buf;
	int32_t c;
	size_t n;

	if (len < 4)
		return rdmig_seterr(err, -EPROTO, "ERROR: truncated, %zu of 4 code bytes", len);
	c = (int32_t)rdmig_get_be32(p);
	if (c >= 0 || c < -WIRE_MAX_ERRNO)
		return rdmig_seterr(err, -EPROTO,
				    "ERROR: code %" PRId32 " is not a negative errno (-1..-%d)", c,
				    WIRE_MAX_ERRNO);
	*code = c;
	if (!msg || !msgcap)
		return 0;
	n = len - 4;
	if (n > msgcap - 1)
		n = msgcap - 1;
	/* The peer's text ends up in logs: keep it to printable ASCII. */
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = p[4 + i];

		msg[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	msg[n] = '\0';
	return 0;
}

size_t rdmig_wire_cm_encode(void *buf, uint8_t type, const struct rdmig_wire_hello *h)
{
	uint8_t *p = buf;

	rdmig_put_be32(p, RDMIG_WIRE_MAGIC);
	p[4] = RDMIG_WIRE_VERSION;
	p[5] = type;
	rdmig_put_be16(p + 6, 0);
	rdmig_wire_hello_encode(p + 8, h);
	return RDMIG_WIRE_CM_LEN;
}

int rdmig_wire_cm_decode(const void *buf, size_t len, uint8_t type, struct rdmig_wire_hello *h,
			 struct rdmig_err *err)
{
	const uint8_t *p = buf;

	/* rdma_cm may pad private data (InfiniBand carries a fixed size): extra is ignored. */
	if (len < RDMIG_WIRE_CM_LEN)
		return rdmig_seterr(err, -EPROTO,
				    "connection private data of %zu bytes, an rdmig HELLO needs %d",
				    len, RDMIG_WIRE_CM_LEN);
	if (rdmig_get_be32(p) != RDMIG_WIRE_MAGIC)
		return rdmig_seterr(err, -EPROTO,
				    "connection private data without the rdmig magic (0x%08x): "
				    "not an rdmig peer",
				    rdmig_get_be32(p));
	if (p[4] != RDMIG_WIRE_VERSION)
		return rdmig_seterr(err, -EPROTONOSUPPORT,
				    "peer speaks rdmig wire version %u, this side version %d", p[4],
				    RDMIG_WIRE_VERSION);
	if (p[5] != type)
		return rdmig_seterr(err, -EPROTO, "expected %s in the private data, got %s",
				    rdmig_msg_type_name(type), rdmig_msg_type_name(p[5]));
	if (rdmig_get_be16(p + 6))
		return rdmig_seterr(err, -EPROTO, "connection private data: reserved bits set");
	return rdmig_wire_hello_decode(p + 8, RDMIG_WIRE_HELLO_LEN, h, err);
}
