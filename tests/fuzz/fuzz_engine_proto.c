/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the engine's control-message decoders (engine/proto.c).
 * Byte 0 picks the decoder, the rest is the message payload. Accepted
 * messages must satisfy the bounds the decoders promise.
 *   0 SETUP  1 FINAL  2 MANIFEST  3 u64 (MANIFEST_END, VERIFIED)
 *   4 VERIFY_FAIL  5 CANCEL  6 id (GO, GO_ACK, DONE)  7 RESOLVE  8 RESOLVED
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t region_pages[3] = {256, 1, 1u << 20};
	static const uint8_t id[RDMIG_MIG_ID_LEN] = {1, 2,  3,	4,  5,	6,  7,	8,
						     9, 10, 11, 12, 13, 14, 15, 16};
	struct rdmig_msg_resolve r;
	static struct rdmig_msg_final fin;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_msg_setup s;
	struct rdmig_msg_manifest m;
	struct rdmig_msg_verify_fail vf;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	char why[300];
	uint64_t v;
	uint32_t round;
	int code;

	if (size < 1)
		return 0;
	switch (data[0] % 9) {
	case 0:
		if (!rdmig_msg_setup_decode(p, n, 1ull << 30, &s, &e)) {
			uint64_t total = 0;

			must(s.nregions >= 1 && s.nregions <= RDMIG_MIG_MAX_REGIONS);
			must(s.config_len <= RDMIG_VM_CONFIG_MAX);
			for (uint32_t i = 0; i < s.nregions; i++)
				total += s.region_len[i];
			must(total <= 1ull << 30);
		}
		break;
	case 1:
		if (data[0] & 0x80) {
			const uint8_t *d;
			size_t k;

			/* A STATE 100 bytes into a 70000-byte state. */
			if (!rdmig_msg_state_decode(p, n, 100, 70000, &d, &k, &e))
				must(k >= 1 && k <= 69900 && d == p + RDMIG_STATE_FIXED &&
				     RDMIG_STATE_FIXED + k == n);
		} else if (!rdmig_msg_final_decode(p, n, &fin, &e))
			must(fin.state_len <= RDMIG_VM_STATE_MAX &&
			     fin.inline_len <= fin.state_len &&
			     RDMIG_FINAL_FIXED + (size_t)fin.inline_len == n &&
			     fin.state == p + RDMIG_FINAL_FIXED);
		break;
	case 2:
		if (!rdmig_msg_manifest_decode(p, n, region_pages, 3, &m, &e)) {
			struct rdmig_manifest_group g;
			size_t off = 0;
			uint32_t groups = 0;

			must(m.round >= 1 && m.groups >= 1);
			while (rdmig_manifest_next(&m, &off, &g)) {
				must(g.region < 3 && g.count >= 1);
				must(g.first_page <= region_pages[g.region] &&
				     g.count <= region_pages[g.region] - g.first_page);
				must(g.sums >= p && g.sums + 8ull * g.count <= p + n);
				groups++;
			}
			must(groups == m.groups && off == m.body_len);
		}
		break;
	case 3:
		if (data[0] & 0x80) {
			struct rdmig_msg_verified ver;

			if (!rdmig_msg_verified_decode(p, n, &ver, &e))
				must(n == RDMIG_VERIFIED_LEN);
		} else if (!rdmig_msg_round_decode(p, n, "MANIFEST_END", &round, &v, &e)) {
			must(n == RDMIG_ROUND_MSG_LEN && round >= 1);
		}
		break;
	case 4:
		rdmig_msg_verify_fail_decode(p, n, &vf, &e);
		break;
	case 5:
		if (!rdmig_msg_cancel_decode(p, n, &code, why, sizeof(why), &e))
			must(code < 0 && strlen(why) < sizeof(why));
		break;
	case 6:
		if (!rdmig_msg_id_decode(p, n, id, "GO", &e))
			must(n == RDMIG_MIG_ID_LEN && !memcmp(p, id, n));
		break;
	default:
		if (!rdmig_msg_resolve_decode(
			p, n, data[0] % 9 == 7 ? RDMIG_EMSG_RESOLVE : RDMIG_EMSG_RESOLVED, &r,
			&e)) {
			uint8_t acc = 0;

			for (unsigned i = 0; i < RDMIG_MIG_ID_LEN; i++)
				acc |= r.id[i];
			must(n == RDMIG_RESOLVE_LEN && acc && r.value >= 1 && r.value <= 2);
		}
		break;
	}
	must(!e.code || e.msg[0]);
	return 0;
}
