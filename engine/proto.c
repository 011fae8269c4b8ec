/* SPDX-License-Identifier: MIT */
#include "proto.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "bytes.h"
#include "rdmig/transport.h"

#define SETUP_FIXED  64 /* fields, the 16-byte migration id, verify, reserved */
#define SETUP_CONFIG 12 /* be32 length of the config blob that follows the regions */
#define SETUP_ID     40
#define SETUP_VERIFY 56
#define SETUP_REGION 12 /* be64 length, be32 signed NUMA node */
#define SETUP_FLAGS  16

static bool id_is_zero(const uint8_t *id)
{
	uint8_t acc = 0;

	for (unsigned i = 0; i < RDMIG_MIG_ID_LEN; i++)
		acc |= id[i];
	return !acc;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= b[i];
	return !acc;
}

void rdmig_mig_id_str(const uint8_t *id, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (unsigned i = 0; i < RDMIG_MIG_ID_LEN; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[2 * RDMIG_MIG_ID_LEN] = '\0';
}

size_t rdmig_msg_setup_encode(uint8_t *b, const struct rdmig_msg_setup *m)
{
	size_t regions = SETUP_FIXED + SETUP_REGION * (size_t)m->nregions;

	memset(b, 0, SETUP_FIXED);
	rdmig_put_be32(b, m->version);
	rdmig_put_be32(b + 4, m->page_size);
	rdmig_put_be32(b + 8, m->nregions);
	rdmig_put_be32(b + SETUP_CONFIG, m->config_len);
	rdmig_put_be32(b + 20, m->channels);
	rdmig_put_be32(b + SETUP_FLAGS, m->flags);
	memcpy(b + SETUP_ID, m->id, RDMIG_MIG_ID_LEN);
	rdmig_put_be32(b + SETUP_VERIFY, m->verify + 1);
	for (uint32_t i = 0; i < m->nregions; i++) {
		rdmig_put_be64(b + SETUP_FIXED + SETUP_REGION * i, m->region_len[i]);
		rdmig_put_be32(b + SETUP_FIXED + SETUP_REGION * i + 8, (uint32_t)m->region_node[i]);
	}
	memcpy(b + regions, m->config, m->config_len);
	return regions + m->config_len;
}

int rdmig_msg_setup_decode(const uint8_t *b, size_t len, uint64_t max_ram,
			   struct rdmig_msg_setup *m, struct rdmig_err *err)
{
	uint64_t total = 0;
	size_t regions;

	if (len < SETUP_ID)
		return rdmig_seterr(err, -EPROTO, "SETUP: %zu bytes, expected at least %d", len,
				    SETUP_FIXED);
	memset(m, 0, sizeof(*m));
	m->version = rdmig_get_be32(b);
	m->page_size = rdmig_get_be32(b + 4);
	m->nregions = rdmig_get_be32(b + 8);
	m->config_len = rdmig_get_be32(b + SETUP_CONFIG);
	m->channels = rdmig_get_be32(b + 20);
	/* The version before the length: an older source's SETUP is shorter. */
	if (m->version != RDMIG_ENGINE_VERSION)
		return rdmig_seterr(err, -EPROTO,
				    "SETUP: source speaks migration protocol version %u, this "
				    "destination version %d",
				    m->version, RDMIG_ENGINE_VERSION);
	if (len < SETUP_FIXED)
		return rdmig_seterr(err, -EPROTO, "SETUP: %zu bytes, expected at least %d", len,
				    SETUP_FIXED);
	m->flags = rdmig_get_be32(b + SETUP_FLAGS);
	if (m->flags & ~RDMIG_SETUP_F_KNOWN)
		return rdmig_seterr(err, -EPROTO, "SETUP: unknown flags 0x%x", m->flags);
	if (!all_zero(b + 24, 16) || !all_zero(b + SETUP_VERIFY + 4, 4))
		return rdmig_seterr(err, -EPROTO, "SETUP: reserved bytes are not zero");
	memcpy(m->id, b + SETUP_ID, RDMIG_MIG_ID_LEN);
	if (id_is_zero(m->id))
		return rdmig_seterr(err, -EPROTO, "SETUP: migration id is all zero");
	m->verify = rdmig_get_be32(b + SETUP_VERIFY);
	if (m->verify < 1 || m->verify > 3)
		return rdmig_seterr(
		    err, -EPROTO, "SETUP: verify mode %u, expected 1 (rounds), 2 (full) or 3 (off)",
		    m->verify);
	m->verify--;
	if (m->page_size != RDMIG_PAGE_SIZE)
		return rdmig_seterr(err, -EPROTO, "SETUP: page size %u, this destination uses %u",
				    m->page_size, RDMIG_PAGE_SIZE);
	if (m->nregions < 1 || m->nregions > RDMIG_MIG_MAX_REGIONS)
		return rdmig_seterr(err, -EPROTO, "SETUP: %u regions, expected 1 to %d",
				    m->nregions, RDMIG_MIG_MAX_REGIONS);
	if (m->config_len > RDMIG_VM_CONFIG_MAX)
		return rdmig_seterr(err, -EPROTO, "SETUP: VM config of %u bytes, at most %u",
				    m->config_len, RDMIG_VM_CONFIG_MAX);
	regions = SETUP_FIXED + SETUP_REGION * (size_t)m->nregions;
	if (len != regions + m->config_len)
		return rdmig_seterr(err, -EPROTO,
				    "SETUP: %zu bytes for %u regions and %u bytes of VM config, "
				    "expected %zu",
				    len, m->nregions, m->config_len, regions + m->config_len);
	if (m->channels < 1 || m->channels > RDMIG_MAX_CHANNELS)
		return rdmig_seterr(err, -EPROTO, "SETUP: %u channels", m->channels);
	for (uint32_t i = 0; i < m->nregions; i++) {
		m->region_len[i] = rdmig_get_be64(b + SETUP_FIXED + SETUP_REGION * i);
		m->region_node[i] = (int32_t)rdmig_get_be32(b + SETUP_FIXED + SETUP_REGION * i + 8);
		if (m->region_node[i] < -1 || m->region_node[i] > RDMIG_SETUP_MAX_NODE)
			return rdmig_seterr(err, -EPROTO,
					    "SETUP: region %u NUMA node %d, expected -1 (unknown) "
					    "to %d",
					    i, m->region_node[i], RDMIG_SETUP_MAX_NODE);
		if (!m->region_len[i] || m->region_len[i] % RDMIG_PAGE_SIZE)
			return rdmig_seterr(err, -EPROTO,
					    "SETUP: region %u length %llu is not a positive "
					    "multiple of the page size",
					    i, (unsigned long long)m->region_len[i]);
		if (m->region_len[i] > max_ram || total + m->region_len[i] > max_ram)
			return rdmig_seterr(err, -EFBIG,
					    "SETUP: guest RAM larger than this destination accepts "
					    "(%llu bytes; raise --max-ram)",
					    (unsigned long long)max_ram);
		total += m->region_len[i];
	}
	memcpy(m->config, b + regions, m->config_len);
	return 0;
}

static uint32_t final_inline(uint32_t state_len)
{
	return state_len < RDMIG_FINAL_INLINE ? state_len : RDMIG_FINAL_INLINE;
}

size_t rdmig_msg_final_encode(uint8_t *b, const struct rdmig_msg_final *m)
{
	uint32_t n = final_inline(m->state_len);

	rdmig_put_be32(b, m->rounds);
	rdmig_put_be32(b + 4, m->state_len);
	rdmig_put_be64(b + 8, m->final_seq);
	if (n)
		memcpy(b + RDMIG_FINAL_FIXED, m->state, n);
	return RDMIG_FINAL_FIXED + (size_t)n;
}

int rdmig_msg_final_decode(const uint8_t *b, size_t len, struct rdmig_msg_final *m,
			   struct rdmig_err *err)
{
	if (len < RDMIG_FINAL_FIXED)
		return rdmig_seterr(err, -EPROTO, "FINAL: %zu bytes, expected at least %d", len,
				    RDMIG_FINAL_FIXED);
	memset(m, 0, sizeof(*m));
	m->rounds = rdmig_get_be32(b);
	m->state_len = rdmig_get_be32(b + 4);
	m->final_seq = rdmig_get_be64(b + 8);
	if (m->state_len > RDMIG_VM_STATE_MAX)
		return rdmig_seterr(err, -EPROTO, "FINAL: VM state of %u bytes, at most %u",
				    m->state_len, RDMIG_VM_STATE_MAX);
	m->inline_len = final_inline(m->state_len);
	if (len != RDMIG_FINAL_FIXED + (size_t)m->inline_len)
		return rdmig_seterr(err, -EPROTO,
				    "FINAL: %zu bytes for a VM state of %u bytes, expected %zu",
				    len, m->state_len, RDMIG_FINAL_FIXED + (size_t)m->inline_len);
	m->state = b + RDMIG_FINAL_FIXED;
	return 0;
}

size_t rdmig_msg_state_encode(uint8_t *b, uint32_t offset, const uint8_t *data, size_t n)
{
	rdmig_put_be32(b, offset);
	rdmig_put_be32(b + 4, 0);
	memcpy(b + RDMIG_STATE_FIXED, data, n);
	return RDMIG_STATE_FIXED + n;
}

int rdmig_msg_state_decode(const uint8_t *b, size_t len, uint32_t have, uint32_t total,
			   const uint8_t **data, size_t *n, struct rdmig_err *err)
{
	uint32_t off;

	if (len <= RDMIG_STATE_FIXED)
		return rdmig_seterr(err, -EPROTO, "STATE: %zu bytes, expected more than %d", len,
				    RDMIG_STATE_FIXED);
	off = rdmig_get_be32(b);
	*n = len - RDMIG_STATE_FIXED;
	if (rdmig_get_be32(b + 4))
		return rdmig_seterr(err, -EPROTO, "STATE: reserved bytes are not zero");
	if (off != have)
		return rdmig_seterr(err, -EPROTO, "STATE at offset %u, expected %u (contiguous)",
				    off, have);
	if (have > total || *n > total - have)
		return rdmig_seterr(
		    err, -EPROTO, "STATE: %zu bytes at offset %u overrun the %u announced in FINAL",
		    *n, off, total);
	*data = b + RDMIG_STATE_FIXED;
	return 0;
}

void rdmig_manifest_begin(struct rdmig_manifest_out *o, uint8_t *buf, uint32_t round)
{
	o->buf = buf;
	o->len = RDMIG_MANIFEST_FIXED;
	o->groups = 0;
	rdmig_put_be32(buf, round);
	rdmig_put_be32(buf + 4, 0);
}

uint32_t rdmig_manifest_add(struct rdmig_manifest_out *o, uint32_t region, uint64_t first_page,
			    const uint64_t *sums, uint32_t count)
{
	size_t room = RDMIG_MANIFEST_MAX - o->len;
	uint8_t *g = o->buf + o->len;

	if (room < RDMIG_MANIFEST_GROUP + 8 || !count)
		return 0;
	if (count > (room - RDMIG_MANIFEST_GROUP) / 8)
		count = (uint32_t)((room - RDMIG_MANIFEST_GROUP) / 8);
	rdmig_put_be32(g, region);
	rdmig_put_be32(g + 4, count);
	rdmig_put_be64(g + 8, first_page);
	for (uint32_t i = 0; i < count; i++)
		rdmig_put_be64(g + RDMIG_MANIFEST_GROUP + 8 * i, sums[i]);
	o->len += RDMIG_MANIFEST_GROUP + 8 * (size_t)count;
	rdmig_put_be32(o->buf + 4, ++o->groups);
	return count;
}

int rdmig_msg_manifest_decode(const uint8_t *b, size_t len, const uint64_t *region_pages,
			      uint32_t nregions, struct rdmig_msg_manifest *m,
			      struct rdmig_err *err)
{
	size_t off = RDMIG_MANIFEST_FIXED;

	if (len < RDMIG_MANIFEST_FIXED + RDMIG_MANIFEST_GROUP + 8 || len > RDMIG_MANIFEST_MAX)
		return rdmig_seterr(err, -EPROTO, "MANIFEST: %zu bytes, expected %d to %d", len,
				    RDMIG_MANIFEST_FIXED + RDMIG_MANIFEST_GROUP + 8,
				    RDMIG_MANIFEST_MAX);
	m->round = rdmig_get_be32(b);
	m->groups = rdmig_get_be32(b + 4);
	m->body = b + RDMIG_MANIFEST_FIXED;
	m->body_len = len - RDMIG_MANIFEST_FIXED;
	if (!m->round)
		return rdmig_seterr(err, -EPROTO, "MANIFEST: round 0 (rounds count from 1)");
	if (!m->groups)
		return rdmig_seterr(err, -EPROTO, "MANIFEST: no groups");
	for (uint32_t i = 0; i < m->groups; i++) {
		uint32_t region, count;
		uint64_t first;

		if (len - off < RDMIG_MANIFEST_GROUP)
			return rdmig_seterr(err, -EPROTO,
					    "MANIFEST: group %u of %u starts beyond the %zu bytes",
					    i, m->groups, len);
		region = rdmig_get_be32(b + off);
		count = rdmig_get_be32(b + off + 4);
		first = rdmig_get_be64(b + off + 8);
		if (region >= nregions)
			return rdmig_seterr(err, -EPROTO, "MANIFEST: group %u: region %u of %u", i,
					    region, nregions);
		if (!count || count > (len - off - RDMIG_MANIFEST_GROUP) / 8)
			return rdmig_seterr(err, -EPROTO,
					    "MANIFEST: group %u: %u checksums, %zu bytes left", i,
					    count, len - off - RDMIG_MANIFEST_GROUP);
		if (first > region_pages[region] || count > region_pages[region] - first)
			return rdmig_seterr(err, -EPROTO,
					    "MANIFEST: pages %llu+%u beyond region %u (%llu pages)",
					    (unsigned long long)first, count, region,
					    (unsigned long long)region_pages[region]);
		off += RDMIG_MANIFEST_GROUP + 8 * (size_t)count;
	}
	if (off != len)
		return rdmig_seterr(err, -EPROTO, "MANIFEST: %zu bytes after %u groups of %zu",
				    len - off, m->groups, off);
	return 0;
}

bool rdmig_manifest_next(const struct rdmig_msg_manifest *m, size_t *off,
			 struct rdmig_manifest_group *g)
{
	const uint8_t *p = m->body + *off;

	if (*off >= m->body_len)
		return false;
	g->region = rdmig_get_be32(p);
	g->count = rdmig_get_be32(p + 4);
	g->first_page = rdmig_get_be64(p + 8);
	g->sums = p + RDMIG_MANIFEST_GROUP;
	*off += RDMIG_MANIFEST_GROUP + 8 * (size_t)g->count;
	return true;
}

size_t rdmig_msg_round_encode(uint8_t *b, uint32_t round, uint64_t count)
{
	rdmig_put_be32(b, round);
	rdmig_put_be32(b + 4, 0);
	rdmig_put_be64(b + 8, count);
	return RDMIG_ROUND_MSG_LEN;
}

int rdmig_msg_round_decode(const uint8_t *b, size_t len, const char *what, uint32_t *round,
			   uint64_t *count, struct rdmig_err *err)
{
	if (len != RDMIG_ROUND_MSG_LEN)
		return rdmig_seterr(err, -EPROTO, "%s: %zu bytes, expected %d", what, len,
				    RDMIG_ROUND_MSG_LEN);
	*round = rdmig_get_be32(b);
	*count = rdmig_get_be64(b + 8);
	if (!*round)
		return rdmig_seterr(err, -EPROTO, "%s: round 0 (rounds count from 1)", what);
	if (rdmig_get_be32(b + 4))
		return rdmig_seterr(err, -EPROTO, "%s: reserved bytes are not zero", what);
	return 0;
}

size_t rdmig_msg_verified_encode(uint8_t *b, const struct rdmig_msg_verified *m)
{
	rdmig_put_be64(b, m->pages);
	rdmig_put_be32(b + 8, m->fence_us);
	rdmig_put_be32(b + 12, m->revoke_us);
	rdmig_put_be32(b + 16, m->verify_us);
	rdmig_put_be32(b + 20, 0);
	return RDMIG_VERIFIED_LEN;
}

int rdmig_msg_verified_decode(const uint8_t *b, size_t len, struct rdmig_msg_verified *m,
			      struct rdmig_err *err)
{
	if (len != RDMIG_VERIFIED_LEN)
		return rdmig_seterr(err, -EPROTO, "VERIFIED: %zu bytes, expected %d", len,
				    RDMIG_VERIFIED_LEN);
	m->pages = rdmig_get_be64(b);
	m->fence_us = rdmig_get_be32(b + 8);
	m->revoke_us = rdmig_get_be32(b + 12);
	m->verify_us = rdmig_get_be32(b + 16);
	if (rdmig_get_be32(b + 20))
		return rdmig_seterr(err, -EPROTO, "VERIFIED: reserved bytes are not zero");
	return 0;
}

size_t rdmig_msg_verify_fail_encode(uint8_t *b, const struct rdmig_msg_verify_fail *m)
{
	rdmig_put_be32(b, m->region);
	rdmig_put_be32(b + 4, 0);
	rdmig_put_be64(b + 8, m->page);
	rdmig_put_be64(b + 16, m->expected);
	rdmig_put_be64(b + 24, m->found);
	rdmig_put_be64(b + 32, m->mismatches);
	return 40;
}

int rdmig_msg_verify_fail_decode(const uint8_t *b, size_t len, struct rdmig_msg_verify_fail *m,
				 struct rdmig_err *err)
{
	if (len != 40)
		return rdmig_seterr(err, -EPROTO, "VERIFY_FAIL: %zu bytes, expected 40", len);
	m->region = rdmig_get_be32(b);
	m->page = rdmig_get_be64(b + 8);
	m->expected = rdmig_get_be64(b + 16);
	m->found = rdmig_get_be64(b + 24);
	m->mismatches = rdmig_get_be64(b + 32);
	return 0;
}

size_t rdmig_msg_id_encode(uint8_t *b, const uint8_t *id)
{
	memcpy(b, id, RDMIG_MIG_ID_LEN);
	return RDMIG_MIG_ID_LEN;
}

int rdmig_msg_id_decode(const uint8_t *b, size_t len, const uint8_t *want, const char *what,
			struct rdmig_err *err)
{
	char got[RDMIG_MIG_ID_STR], exp[RDMIG_MIG_ID_STR];

	if (len != RDMIG_MIG_ID_LEN)
		return rdmig_seterr(err, -EPROTO, "%s: %zu bytes, expected %d", what, len,
				    RDMIG_MIG_ID_LEN);
	if (memcmp(b, want, RDMIG_MIG_ID_LEN)) {
		rdmig_mig_id_str(b, got);
		rdmig_mig_id_str(want, exp);
		return rdmig_seterr(err, -EPROTO, "%s for migration %s, this is migration %s", what,
				    got, exp);
	}
	return 0;
}

size_t rdmig_msg_resolve_encode(uint8_t *b, const struct rdmig_msg_resolve *m)
{
	memcpy(b, m->id, RDMIG_MIG_ID_LEN);
	rdmig_put_be32(b + 16, m->value);
	rdmig_put_be32(b + 20, 0);
	return RDMIG_RESOLVE_LEN;
}

int rdmig_msg_resolve_decode(const uint8_t *b, size_t len, uint16_t type,
			     struct rdmig_msg_resolve *m, struct rdmig_err *err)
{
	const char *what = type == RDMIG_EMSG_RESOLVE ? "RESOLVE" : "RESOLVED";
	uint32_t hi = type == RDMIG_EMSG_RESOLVE ? RDMIG_DECIDED_ABORTED : RDMIG_DST_DISCARDED;

	if (len != RDMIG_RESOLVE_LEN)
		return rdmig_seterr(err, -EPROTO, "%s: %zu bytes, expected %d", what, len,
				    RDMIG_RESOLVE_LEN);
	memcpy(m->id, b, RDMIG_MIG_ID_LEN);
	m->value = rdmig_get_be32(b + 16);
	if (id_is_zero(m->id))
		return rdmig_seterr(err, -EPROTO, "%s: migration id is all zero", what);
	if (m->value < 1 || m->value > hi)
		return rdmig_seterr(err, -EPROTO, "%s: %s %u, expected 1 to %u", what,
				    type == RDMIG_EMSG_RESOLVE ? "decision" : "state", m->value,
				    hi);
	if (rdmig_get_be32(b + 20))
		return rdmig_seterr(err, -EPROTO, "%s: reserved bytes are not zero", what);
	return 0;
}

size_t rdmig_msg_cancel_encode(uint8_t *b, int code, const char *why)
{
	size_t n = why ? strnlen(why, 256) : 0;

	rdmig_put_be32(b, (uint32_t)code);
	if (n)
		memcpy(b + 4, why, n);
	return 4 + n;
}

int rdmig_msg_cancel_decode(const uint8_t *b, size_t len, int *code, char *why, size_t cap,
			    struct rdmig_err *err)
{
	size_t n;

	if (len < 4 || len > 4 + 256)
		return rdmig_seterr(err, -EPROTO, "CANCEL: %zu bytes", len);
	*code = (int)rdmig_get_be32(b);
	if (*code >= 0 || *code < -4095)
		*code = -ECANCELED;
	n = len - 4 < cap - 1 ? len - 4 : cap - 1;
	memcpy(why, b + 4, n);
	why[n] = '\0';
	/* The text is the peer's: keep it printable. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
			why[i] = '?';
	return 0;
}

size_t rdmig_msg_pc_done_encode(uint8_t *b, const uint8_t *id, const struct rdmig_msg_pc_done *m)
{
	memcpy(b, id, RDMIG_MIG_ID_LEN);
	rdmig_put_be64(b + 16, m->pages);
	rdmig_put_be64(b + 24, m->demand);
	rdmig_put_be64(b + 32, m->bytes);
	rdmig_put_be32(b + 40, m->p50_us);
	rdmig_put_be32(b + 44, m->p99_us);
	rdmig_put_be32(b + 48, m->max_us);
	rdmig_put_be32(b + 52, m->recoveries);
	return RDMIG_PC_DONE_LEN;
}

int rdmig_msg_pc_done_decode(const uint8_t *b, size_t len, const uint8_t *want,
			     struct rdmig_msg_pc_done *m, struct rdmig_err *err)
{
	if (len != RDMIG_PC_DONE_LEN)
		return rdmig_seterr(err, -EPROTO, "PC_DONE: %zu bytes, expected %d", len,
				    RDMIG_PC_DONE_LEN);
	if (memcmp(b, want, RDMIG_MIG_ID_LEN))
		return rdmig_seterr(err, -EPROTO, "PC_DONE for another migration");
	m->pages = rdmig_get_be64(b + 16);
	m->demand = rdmig_get_be64(b + 24);
	m->bytes = rdmig_get_be64(b + 32);
	m->p50_us = rdmig_get_be32(b + 40);
	m->p99_us = rdmig_get_be32(b + 44);
	m->max_us = rdmig_get_be32(b + 48);
	m->recoveries = rdmig_get_be32(b + 52);
	if (m->demand > m->pages || m->p50_us > m->p99_us || m->p99_us > m->max_us)
		return rdmig_seterr(err, -EPROTO,
				    "PC_DONE: inconsistent figures (%llu of %llu on demand, "
				    "p50 %u us, p99 %u us, max %u us)",
				    (unsigned long long)m->demand, (unsigned long long)m->pages,
				    m->p50_us, m->p99_us, m->max_us);
	return 0;
}
