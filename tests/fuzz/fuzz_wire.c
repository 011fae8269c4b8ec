/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: every decoder of transport/wire.c on untrusted bytes,
 * and the key file rules of transport/auth_key.c. Byte 0 picks the decoder
 * (0: a whole control/data frame, header first and then the payload decoder
 * its type selects, as a receiver does; 4: rdma_cm private data; 5: a key
 * file's content); the rest is the input. A decoder must either reject the
 * input or return fields that pass the documented bounds: anything else
 * aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth_wire.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int cond)
{
	if (!cond)
		abort();
}

static void payload(uint8_t type, const uint8_t *p, size_t n)
{
	static const uint64_t region_len[4] = {4096, 1u << 20, 0, UINT64_MAX};
	static const uint8_t writable[4] = {1, 1, 0, 1};
	struct rdmig_wire_region regs[RDMIG_MAX_REGIONS];
	struct rdmig_wire_ring rings[RDMIG_MAX_CHANNELS];
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_wire_hello h;
	struct rdmig_wire_write w;
	struct rdmig_fence f;
	char msg[64];
	uint64_t v;
	uint32_t cnt;
	int code;

	switch (type) {
	case RDMIG_MSG_HELLO:
	case RDMIG_MSG_HELLO_ACK:
		if (!rdmig_wire_hello_decode(p, n, &h, &e))
			must(h.nchan >= 1 && h.nchan <= RDMIG_MAX_CHANNELS);
		break;
	case RDMIG_MSG_LAYOUT:
		if (!rdmig_wire_layout_decode(p, n, regs, RDMIG_MAX_REGIONS, &cnt, &e)) {
			must(cnt <= RDMIG_MAX_REGIONS);
			for (uint32_t i = 0; i < cnt; i++)
				must(memchr(regs[i].name, 0, sizeof(regs[i].name)) != NULL);
		}
		break;
	case RDMIG_MSG_WRITE:
		if (!rdmig_wire_write_decode(p, n, &w, &e) &&
		    !rdmig_wire_write_check(&w, region_len, writable, 4, &e)) {
			must(w.region < 4 && writable[w.region]);
			must(w.offset <= region_len[w.region] &&
			     w.len <= region_len[w.region] - w.offset);
			must(w.len <= RDMIG_WIRE_MAX_DATA);
		}
		break;
	case RDMIG_MSG_RINGS:
		/* The receiver's channel count: what the length implies, capped like nchan. */
		cnt = n >= 4 ? (uint32_t)((n - 4) / RDMIG_WIRE_RING_LEN) : 1;
		if (cnt > RDMIG_MAX_CHANNELS)
			cnt = RDMIG_MAX_CHANNELS;
		if (!rdmig_wire_rings_decode(p, n, rings, cnt, &e)) {
			for (uint32_t i = 0; i < cnt; i++) {
				must(rings[i].size >= 4096 && rings[i].size <= (1u << 30) &&
				     !(rings[i].size & (rings[i].size - 1)));
				must(rings[i].addr && rings[i].rkey &&
				     rings[i].addr <= UINT64_MAX - rings[i].size);
			}
		}
		break;
	case RDMIG_MSG_FENCE:
		rdmig_wire_fence_decode(p, n, &f, &e);
		break;
	case RDMIG_MSG_CREDIT:
		rdmig_wire_credit_decode(p, n, &v, &e);
		break;
	case RDMIG_MSG_ERROR:
		if (!rdmig_wire_error_decode(p, n, &code, msg, sizeof(msg), &e)) {
			must(code <= -1 && code >= -4095);
			must(strlen(msg) < sizeof(msg));
		}
		break;
	default:
		break;
	}
	/* A rejected input always carries a message. */
	must(!e.code || e.msg[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_wire_hello h;
	struct rdmig_wire_hdr hdr;
	struct rdmig_auth_key k;
	uint8_t type;

	if (size < 1)
		return 0;
	switch (data[0] % 6) {
	case 0: /* a frame as a receiver sees it */
		if (!rdmig_wire_hdr_decode(data + 1, size - 1, RDMIG_CTRL_MAX_PAYLOAD, &hdr, &e)) {
			size_t have = size - 1 - RDMIG_WIRE_HDR_LEN;

			must(hdr.magic == RDMIG_WIRE_MAGIC);
			if (hdr.length <= have)
				payload(hdr.type, data + 1 + RDMIG_WIRE_HDR_LEN, hdr.length);
		}
		break;
	case 1: /* the first frame of a tcp socket */
		if (!rdmig_wire_pdata_decode(data + 1, size - 1, &type, &h, &e))
			must(type == RDMIG_MSG_HELLO || type == RDMIG_MSG_HELLO_ACK);
		break;
	case 2: /* a payload of a chosen type */
		if (size >= 2)
			payload(data[1], data + 2, size - 2);
		break;
	case 3: /* the WRITE prefix alone, as tcp reads it before the data */
		if (size - 1 >= RDMIG_WIRE_WRITE_LEN)
			payload(RDMIG_MSG_WRITE, data + 1, RDMIG_WIRE_WRITE_LEN);
		break;
	case 4: /* rdma_cm private data of a connect request */
		if (!rdmig_wire_cm_decode(data + 1, size - 1, RDMIG_MSG_HELLO, &h, &e))
			must(h.nchan >= 1 && h.nchan <= RDMIG_MAX_CHANNELS);
		break;
	default: /* a key file: at most one line ending dropped, never cut */
		memset(&k, 0, sizeof(k));
		if (!rdmig_auth_key_parse(data + 1, size - 1, "fuzz", &k, &e)) {
			must(size - 1 <= RDMIG_AUTH_KEY_MAX);
			must(k.len >= RDMIG_AUTH_KEY_MIN && k.len <= size - 1 &&
			     k.len + 2 >= size - 1);
			must(!memcmp(k.key, data + 1, k.len));
		}
		break;
	}
	must(!e.code || e.msg[0]);
	return 0;
}
