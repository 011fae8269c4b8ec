/* SPDX-License-Identifier: MIT */
/*
 * Seed corpus for the fuzz targets: a handful of valid messages made with
 * the real encoders, prefixed with the selector byte each target reads.
 * fuzz_engine_proto's SETUP is the current engine version's.
 *   gen_corpus DIR   writes into DIR/fuzz_wire/ and DIR/fuzz_engine_proto/
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto.h"
#include "wire.h"

static const char *g_dir;

static void put(const char *target, const char *name, uint8_t sel, const void *buf, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", g_dir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", g_dir, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(&sel, 1, 1, f) != 1 || fwrite(buf, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
}

/* A whole frame: header + payload, selector 0 of fuzz_wire. */
static void frame(const char *name, uint8_t type, uint16_t chan, const void *p, size_t n)
{
	uint8_t buf[4096];

	rdmig_wire_hdr_encode(buf, type, chan, 0, (uint32_t)n);
	memcpy(buf + RDMIG_WIRE_HDR_LEN, p, n);
	put("fuzz_wire", name, 0, buf, RDMIG_WIRE_HDR_LEN + n);
}

int main(int argc, char **argv)
{
	uint8_t b[8192], p[4096];
	struct rdmig_wire_hello h = {.caps = RDMIG_CAP_STREAMS | RDMIG_CAP_AUTH,
				     .role = RDMIG_ROLE_CONNECTOR,
				     .nchan = 4,
				     .chan_index = RDMIG_CHAN_CTRL,
				     .max_ctrl = RDMIG_CTRL_MAX_PAYLOAD,
				     .token = 0x1122334455667788ull};
	struct rdmig_wire_region r[2] = {{.id = 0,
					  .flags = RDMIG_REG_REMOTE_WRITE,
					  .len = 1 << 20,
					  .addr = 0x7f0000000000,
					  .rkey = 0x1234,
					  .name = "ram0"},
					 {.id = 1,
					  .flags = RDMIG_REG_REMOTE_WRITE,
					  .len = 4096,
					  .addr = 0x7f0000100000,
					  .rkey = 0x5678,
					  .name = "ram1"}};
	struct rdmig_wire_ring rings[2] = {{.size = 1 << 20, .addr = 0x7f0000200000, .rkey = 0x99},
					   {.size = 1 << 20, .addr = 0x7f0000300000, .rkey = 0x9a}};
	struct rdmig_wire_write w = {.region = 1, .len = 64, .offset = 4096};
	struct rdmig_fence f = {.seq = 7, .bytes = 1 << 20, .writes = 16};
	struct rdmig_msg_setup s = {
	    .version = RDMIG_ENGINE_VERSION,
	    .page_size = 4096,
	    .nregions = 2,
	    .channels = 2,
	    .region_len = {1 << 20, 1 << 16},
	    .config_len = 24,
	    .config = {0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1},
	    .id = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}};
	struct rdmig_msg_resolve rs = {
	    .id = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	    .value = RDMIG_DECIDED_GO};
	struct rdmig_msg_verify_fail vf = {
	    .region = 0, .page = 3, .expected = 1, .found = 2, .mismatches = 1};
	static const uint8_t state[64] = {0, 0, 0, 0, 0, 0, 0, 7};
	static struct rdmig_msg_final fin = {
	    .rounds = 3, .state_len = sizeof(state), .final_seq = 9, .state = state};
	uint64_t sums[4] = {1, 2, 3, 4};
	size_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR\n");
		return 2;
	}
	g_dir = argv[1];
	mkdir(g_dir, 0755);

	n = rdmig_wire_hello_encode(p, &h);
	frame("hello", RDMIG_MSG_HELLO, RDMIG_CHAN_CTRL, p, n);
	n = rdmig_wire_pdata_encode(b, RDMIG_MSG_HELLO, &h);
	put("fuzz_wire", "pdata_hello", 1, b, n);
	n = rdmig_wire_layout_encode(p, r, 2);
	frame("layout", RDMIG_MSG_LAYOUT, RDMIG_CHAN_CTRL, p, n);
	n = rdmig_wire_write_encode(p, &w);
	memset(p + n, 0xab, w.len);
	frame("write", RDMIG_MSG_WRITE, 0, p, n + w.len);
	put("fuzz_wire", "write_prefix", 3, p, n);
	n = rdmig_wire_fence_encode(p, &f);
	frame("fence", RDMIG_MSG_FENCE, 0, p, n);
	n = rdmig_wire_credit_encode(p, 1 << 20);
	frame("credit", RDMIG_MSG_CREDIT, 0, p, n);
	n = rdmig_wire_error_encode(p, sizeof(p), -71, "bad control message from peer");
	frame("error", RDMIG_MSG_ERROR, RDMIG_CHAN_CTRL, p, n);
	b[0] = RDMIG_MSG_LAYOUT;
	n = rdmig_wire_layout_encode(b + 1, r, 1);
	put("fuzz_wire", "payload_layout", 2, b, n + 1);
	n = rdmig_wire_rings_encode(p, rings, 2);
	frame("rings", RDMIG_MSG_RINGS, RDMIG_CHAN_CTRL, p, n);
	h.caps |= RDMIG_CAP_LATE_RINGS;
	n = rdmig_wire_cm_encode(b, RDMIG_MSG_HELLO, &h);
	put("fuzz_wire", "cm_hello", 4, b, n);
	put("fuzz_wire", "key_crlf", 5, "0123456789abcdefghij\r\n", 22);

	n = rdmig_msg_setup_encode(b, &s);
	put("fuzz_engine_proto", "setup", 0, b, n);
	n = rdmig_msg_final_encode(b, &fin);
	put("fuzz_engine_proto", "final", 1, b, n);
	n = rdmig_msg_state_encode(b, 100, state, sizeof(state));
	put("fuzz_engine_proto", "state", 0x88, b, n); /* 0x88 % 9 == 1 */
	{
		struct rdmig_manifest_out mo;
		struct rdmig_msg_verified ver = {.pages = 42, .fence_us = 1, .verify_us = 3};
		static uint8_t mb[RDMIG_MANIFEST_MAX];

		rdmig_manifest_begin(&mo, mb, 3);
		rdmig_manifest_add(&mo, 0, 8, sums, 4);
		rdmig_manifest_add(&mo, 2, 100, sums, 2);
		put("fuzz_engine_proto", "manifest", 2, mo.buf, mo.len);
		n = rdmig_msg_round_encode(b, 3, 6);
		put("fuzz_engine_proto", "round_end", 3, b, n);
		n = rdmig_msg_verified_encode(b, &ver);
		put("fuzz_engine_proto", "verified", 0x81, b, n); /* 0x81 % 9 == 3 */
	}
	n = rdmig_msg_verify_fail_encode(b, &vf);
	put("fuzz_engine_proto", "verify_fail", 4, b, n);
	n = rdmig_msg_cancel_encode(b, -125, "migration cancelled at the destination");
	put("fuzz_engine_proto", "cancel", 5, b, n);
	/* The id fuzz_engine_proto checks against, so that the accepting path is reached. */
	n = rdmig_msg_id_encode(b, rs.id);
	put("fuzz_engine_proto", "go", 6, b, n);
	n = rdmig_msg_resolve_encode(b, &rs);
	put("fuzz_engine_proto", "resolve", 7, b, n);
	rs.value = RDMIG_DST_DISCARDED;
	n = rdmig_msg_resolve_encode(b, &rs);
	put("fuzz_engine_proto", "resolved", 8, b, n);
	return 0;
}
