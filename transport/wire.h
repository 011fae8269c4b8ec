/* SPDX-License-Identifier: MIT */
/*
 * rdmig wire format, version 1. docs/protocol.md is the prose description.
 *
 * Every message starts with a 16-byte header; all integers are big-endian
 * on the wire. Encoders write into caller buffers and return the encoded
 * size; decoders take untrusted bytes, validate every field before use and
 * return 0 or a negative errno with a message naming the field. The structs
 * below are the decoded, host-order forms; nothing is ever cast onto a
 * received buffer.
 */
#ifndef RDMIG_WIRE_H
#define RDMIG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "bytes.h"
#include "rdmig/err.h"
#include "rdmig/transport.h"

#define RDMIG_WIRE_MAGIC   0x52444d47u /* "RDMG" */
#define RDMIG_WIRE_VERSION 1
#define RDMIG_WIRE_HDR_LEN 16

/* Largest data payload in one tcp WRITE or STREAM_DATA frame. */
#define RDMIG_WIRE_MAX_DATA (16u * 1024 * 1024)

enum rdmig_msg_type {
	RDMIG_MSG_HELLO = 1,	    /* channel setup, both directions */
	RDMIG_MSG_HELLO_ACK = 2,    /* accepting side's answer */
	RDMIG_MSG_AUTH = 3,	    /* auth hook payload (opaque to the transport) */
	RDMIG_MSG_LAYOUT = 4,	    /* destination's exposed regions */
	RDMIG_MSG_APP = 5,	    /* application control message (engine, relay) */
	RDMIG_MSG_ERROR = 6,	    /* peer reports a fatal error, then closes */
	RDMIG_MSG_BYE = 7,	    /* orderly close */
	RDMIG_MSG_RINGS = 9,	    /* rdma: stream rings, after authentication */
	RDMIG_MSG_WRITE = 16,	    /* tcp: page write, payload follows */
	RDMIG_MSG_FENCE = 17,	    /* every earlier write of the channel landed */
	RDMIG_MSG_STREAM_DATA = 18, /* tcp: stream bytes follow; rdma: ring notice */
	RDMIG_MSG_STREAM_EOF = 19,  /* stream half-close */
	RDMIG_MSG_CREDIT = 20,	    /* rdma stream: receiver consumed bytes */
	RDMIG_MSG_KEEPALIVE = 21,
};

/* Header flags. */
#define RDMIG_HDR_F_NONE 0
/*
 * WRITE only, on data channels, and only when both sides announced
 * RDMIG_CAP_ZSTD: the data after the 16-byte prefix is one zstd frame whose
 * content size is the prefix's `len` (which stays the uncompressed length).
 * The header's `length` is then 16 + the compressed bytes.
 */
#define RDMIG_HDR_F_ZSTD 0x1

/*
 * Compressed data of one WRITE: 1..RDMIG_WIRE_MAX_DATA + this many bytes.
 * zstd's worst-case expansion of a 16 MiB input (ZSTD_COMPRESSBOUND) is
 * 1/256 of it, exactly this; rdmig only sends a compressed frame when it is
 * smaller than the plain one, so this is the bound for other senders.
 */
#define RDMIG_WIRE_ZSTD_SLACK (RDMIG_WIRE_MAX_DATA >> 8)

/* Capability bits (HELLO.caps). */
#define RDMIG_CAP_STREAMS 0x1
#define RDMIG_CAP_AUTH	  0x2
#define RDMIG_CAP_ZSTD	  0x4
/*
 * The sender sends a KEEPALIVE on the control channel at least every
 * RDMIG_KEEPALIVE_INTERVAL_MS while connected, so that the receiver can call
 * a silent peer dead (rdma; see docs/reliability.md).
 */
#define RDMIG_CAP_KEEPALIVE	    0x8
#define RDMIG_KEEPALIVE_INTERVAL_MS 1000
/*
 * rdma: the stream rings' addresses and keys travel in a RINGS frame once
 * the auth hook has succeeded, never in HELLO / HELLO_ACK (whose ring fields
 * are then zero). Both sides must announce it: a peer that does not is an
 * older rdmig that would expose its rings before authentication.
 */
#define RDMIG_CAP_LATE_RINGS 0x10

struct rdmig_wire_hdr {
	uint32_t magic;
	uint8_t version;
	uint8_t type; /* enum rdmig_msg_type */
	uint16_t flags;
	uint32_t length;   /* payload bytes after the header */
	uint16_t chan;	   /* data channel index, 0xffff for control */
	uint16_t app_type; /* RDMIG_MSG_APP: the application's type; else 0 */
};

#define RDMIG_CHAN_CTRL 0xffffu

enum rdmig_role {
	RDMIG_ROLE_CONNECTOR = 1,
	RDMIG_ROLE_ACCEPTOR = 2,
};

/*
 * HELLO / HELLO_ACK payload: 48 bytes. Also the rdma_cm private data (an RC
 * connect request carries at most 56 bytes of it).
 */
#define RDMIG_WIRE_HELLO_LEN 48
struct rdmig_wire_hello {
	uint32_t caps;
	uint16_t role;	     /* enum rdmig_role */
	uint16_t nchan;	     /* data channels of the connection, 1..RDMIG_MAX_CHANNELS */
	uint16_t chan_index; /* which channel this is: 0xffff control, else < nchan */
	uint16_t reserved0;
	uint32_t max_ctrl;    /* largest control payload accepted */
	uint64_t token;	      /* ties the data channels to their control channel */
	uint64_t stream_ring; /* rdma: receive ring bytes per channel, else 0 */
	uint32_t ring_rkey;   /* rdma: rkey of this side's receive ring for this channel, else 0 */
	uint32_t reserved1;
	uint64_t ring_addr; /* rdma: address of that ring, else 0 */
};

/* LAYOUT payload: 4-byte count, then 64 bytes per region. */
#define RDMIG_WIRE_LAYOUT_ENTRY_LEN 64
struct rdmig_wire_region {
	uint32_t id;
	uint32_t flags;
	uint64_t len;
	uint64_t addr;
	uint64_t rkey;
	char name[RDMIG_REGION_NAME_MAX]; /* NUL-terminated on decode */
};

/* WRITE payload prefix: 16 bytes, then `len` data bytes. */
#define RDMIG_WIRE_WRITE_LEN 16
struct rdmig_wire_write {
	uint32_t region;
	uint32_t len;
	uint64_t offset;
};

/*
 * RINGS payload (rdma, control channel, after authentication): a 4-byte
 * count (the connection's data channels), then 24 bytes per data channel in
 * index order: the sender's receive ring for that channel.
 */
#define RDMIG_WIRE_RING_LEN 24
struct rdmig_wire_ring {
	uint64_t size; /* bytes, a power of two in 4 KiB..1 GiB */
	uint64_t addr; /* virtual address at the sender */
	uint32_t rkey; /* remote key, not 0 */
};

/* FENCE payload: 24 bytes. */
#define RDMIG_WIRE_FENCE_LEN 24

/* CREDIT payload: 8 bytes, total bytes consumed so far. */
#define RDMIG_WIRE_CREDIT_LEN 8

/* ERROR payload: 4-byte negative errno, then a message (not NUL-terminated). */

/* ---- header ---- */
size_t rdmig_wire_hdr_encode(void *buf, uint8_t type, uint16_t chan, uint16_t app_type,
			     uint32_t length);
/* The same with header flags (RDMIG_HDR_F_ZSTD on a compressed WRITE). */
size_t rdmig_wire_hdr_encode_flags(void *buf, uint8_t type, uint16_t flags, uint16_t chan,
				   uint16_t app_type, uint32_t length);
/*
 * Validate magic, version, type, and that `length` does not exceed the
 * largest payload of its type (max_ctrl for control messages). Also refused:
 * unknown flags, app_type other than 0 outside APP, and a channel that does
 * not fit the type (see docs/protocol.md). `len` may include the payload;
 * checking that `length` payload bytes really follow is the caller's job.
 */
int rdmig_wire_hdr_decode(const void *buf, size_t len, uint32_t max_ctrl,
			  struct rdmig_wire_hdr *out, struct rdmig_err *err);

/* ---- payloads (encode returns bytes written) ---- */
size_t rdmig_wire_hello_encode(void *buf, const struct rdmig_wire_hello *h);
/*
 * `len` must be exactly RDMIG_WIRE_HELLO_LEN. rdma_cm may deliver more
 * private data than was sent (IB pads it): check that at least that many
 * bytes arrived, then pass exactly RDMIG_WIRE_HELLO_LEN.
 */
int rdmig_wire_hello_decode(const void *buf, size_t len, struct rdmig_wire_hello *out,
			    struct rdmig_err *err);

/*
 * A whole HELLO / HELLO_ACK frame, header and payload (64 bytes): the first
 * frame of every tcp socket, checked in one call (magic, version, type, the
 * header's channel against chan_index, then the HELLO). The decoder accepts
 * a longer buffer when the excess is zero. (The "pdata" name is historical:
 * at 64 bytes the frame exceeds the 56 bytes of private data an IB connect
 * request carries, so rdma sends the bare 48-byte HELLO.)
 */
#define RDMIG_WIRE_PDATA_LEN (RDMIG_WIRE_HDR_LEN + RDMIG_WIRE_HELLO_LEN)
/*
 * rdma_cm private data: an 8-byte prefix (magic u32, version u8, type u8 =
 * HELLO or HELLO_ACK, reserved u16 = 0) then the 48-byte HELLO: 56 bytes,
 * the most an RC connect request may carry. The prefix is what lets a
 * version mismatch be named at connect time on rdma, as on tcp.
 */
#define RDMIG_WIRE_CM_LEN (8 + RDMIG_WIRE_HELLO_LEN)
size_t rdmig_wire_cm_encode(void *buf, uint8_t type, const struct rdmig_wire_hello *h);
/* Validates the prefix (naming both versions on a mismatch), the type, then the HELLO. */
int rdmig_wire_cm_decode(const void *buf, size_t len, uint8_t type, struct rdmig_wire_hello *h,
			 struct rdmig_err *err);

size_t rdmig_wire_pdata_encode(void *buf, uint8_t type, const struct rdmig_wire_hello *h);
int rdmig_wire_pdata_decode(const void *buf, size_t len, uint8_t *type,
			    struct rdmig_wire_hello *out, struct rdmig_err *err);

/* Encodes n entries; buf must hold 4 + n * 64 bytes. */
size_t rdmig_wire_layout_encode(void *buf, const struct rdmig_wire_region *r, uint32_t n);
/* Decodes at most `max` entries; rejects counts that disagree with len. */
int rdmig_wire_layout_decode(const void *buf, size_t len, struct rdmig_wire_region *out,
			     uint32_t max, uint32_t *n, struct rdmig_err *err);

/* Encodes n entries; buf must hold 4 + n * 24 bytes. */
size_t rdmig_wire_rings_encode(void *buf, const struct rdmig_wire_ring *r, uint32_t n);
/*
 * Decodes exactly `want` entries (the connection's data channels): refuses
 * another count, a length other than 4 + want * 24, a size that is not a
 * power of two in 4 KiB..1 GiB, a zero address or key, addr + size past
 * 2^64, and non-zero reserved bytes.
 */
int rdmig_wire_rings_decode(const void *buf, size_t len, struct rdmig_wire_ring *out, uint32_t want,
			    struct rdmig_err *err);

size_t rdmig_wire_write_encode(void *buf, const struct rdmig_wire_write *w);
/*
 * `len` is the bytes in buf: the 16-byte prefix alone, or the prefix and its
 * data, in which case it must equal 16 + w->len. A receiver that reads the
 * prefix alone must itself check hdr.length == RDMIG_WIRE_WRITE_LEN + len.
 */
int rdmig_wire_write_decode(const void *buf, size_t len, struct rdmig_wire_write *out,
			    struct rdmig_err *err);
/*
 * Check a decoded WRITE against the local region table: known region,
 * offset + len inside it (no overflow), len <= RDMIG_WIRE_MAX_DATA.
 */
int rdmig_wire_write_check(const struct rdmig_wire_write *w, const uint64_t *region_len,
			   const uint8_t *region_writable, uint32_t nregions,
			   struct rdmig_err *err);

/*
 * A RDMIG_HDR_F_ZSTD WRITE's compressed data `z` (zlen bytes, the header's
 * length minus the prefix), checked before anything is decompressed: 1 to
 * RDMIG_WIRE_MAX_DATA + RDMIG_WIRE_ZSTD_SLACK bytes, exactly one zstd frame
 * spanning all of it, and a content size recorded in the frame equal to
 * `len`, the prefix's uncompressed length. The decompression itself must
 * still check that it produced exactly `len` bytes into a `len`-byte output.
 */
int rdmig_wire_zstd_check(const void *z, size_t zlen, uint32_t len, struct rdmig_err *err);

size_t rdmig_wire_fence_encode(void *buf, const struct rdmig_fence *f);
int rdmig_wire_fence_decode(const void *buf, size_t len, struct rdmig_fence *out,
			    struct rdmig_err *err);

size_t rdmig_wire_credit_encode(void *buf, uint64_t consumed);
int rdmig_wire_credit_decode(const void *buf, size_t len, uint64_t *consumed,
			     struct rdmig_err *err);

size_t rdmig_wire_error_encode(void *buf, size_t cap, int code, const char *msg);
/*
 * The code must be -1..-4095. The message is cut to msgcap - 1 bytes and
 * NUL-terminated, with bytes outside printable ASCII replaced by '?'.
 */
int rdmig_wire_error_decode(const void *buf, size_t len, int *code, char *msg, size_t msgcap,
			    struct rdmig_err *err);

const char *rdmig_msg_type_name(uint8_t type);

#endif
