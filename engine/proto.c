/* SPDX-License-Identifier: MIT */
#include "proto.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "bytes.h"
#include "rdmig/transport.h"

#define SETUP_FIXED  56 /* 40 bytes of fields, then the 16-byte migration id */
#define SETUP_ID     40
#define SETUP_REGION 12 /* be64 length, be32 signed NUMA node */

static bool id_is_zero(const uint8_t *id)
{
	uint8_t acc = 0;

	for (unsigned i = 0; i < RDMIG_MIG_ID_LEN; i++)
		acc |= id[i];
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
	rdmig_put_be32(b, m->version);
	rdmig_put_be32(b + 4, m->page_size);
	rdmig_put_be32(b + 8, m->nregions);
	rdmig_put_be32(b + 12, m->vcpus);
	rdmig_put_be32(b + 16, m->workload);
	rdmig_put_be32(b + 20, m->channels);
	rdmig_put_be64(b + 24, m->seed);
	rdmig_put_be64(b + 32, m->dirty_rate);
	memcpy(b + SETUP_ID, m->id, RDMIG_MIG_ID_LEN);
	for (uint32_t i = 0; i < m->nregions; i++) {
		rdmig_put_be64(b + SETUP_FIXED + SETUP_REGION * i, m->region_len[i]);
		rdmig_put_be32(b + SETUP_FIXED + SETUP_REGION * i + 8, (uint32_t)m->region_node[i]);
	}
	return SETUP_FIXED + SETUP_REGION * (size_t)m->nregions;
}

int rdmig_msg_setup_decode(const uint8_t *b, size_t len, uint64_t max_ram,
			   struct rdmig_msg_setup *m, struct rdmig_err *err)
{
	uint64_t total = 0;

	if (len < SETUP_ID)
		return rdmig_seterr(err, -EPROTO, "SETUP: %zu bytes, expected at least %d", len,
				    SETUP_FIXED);
	memset(m, 0, sizeof(*m));
	m->version = rdmig_get_be32(b);
	m->page_size = rdmig_get_be32(b + 4);
	m->nregions = rdmig_get_be32(b + 8);
	m->vcpus = rdmig_get_be32(b + 12);
	m->workload = rdmig_get_be32(b + 16);
	m->channels = rdmig_get_be32(b + 20);
	m->seed = rdmig_get_be64(b + 24);
	m->dirty_rate = rdmig_get_be64(b + 32);
	/* The version before the length: an older source's SETUP is shorter. */
	if (m->version != RDMIG_ENGINE_VERSION)
		return rdmig_seterr(err, -EPROTO,
				    "SETUP: source speaks migration protocol version %u, this "
				    "destination version %d",
				    m->version, RDMIG_ENGINE_VERSION);
	if (len < SETUP_FIXED)
		return rdmig_seterr(err, -EPROTO, "SETUP: %zu bytes, expected at least %d", len,
				    SETUP_FIXED);
	memcpy(m->id, b + SETUP_ID, RDMIG_MIG_ID_LEN);
	if (id_is_zero(m->id))
		return rdmig_seterr(err, -EPROTO, "SETUP: migration id is all zero");
	if (m->page_size != RDMIG_PAGE_SIZE)
		return rdmig_seterr(err, -EPROTO, "SETUP: page size %u, this destination uses %u",
				    m->page_size, RDMIG_PAGE_SIZE);
	if (m->nregions < 1 || m->nregions > RDMIG_GUEST_MAX_REGIONS)
		return rdmig_seterr(err, -EPROTO, "SETUP: %u regions, expected 1 to %d",
				    m->nregions, RDMIG_GUEST_MAX_REGIONS);
	if (len != SETUP_FIXED + SETUP_REGION * (size_t)m->nregions)
		return rdmig_seterr(err, -EPROTO, "SETUP: %zu bytes for %u regions, expected %zu",
				    len, m->nregions,
				    SETUP_FIXED + SETUP_REGION * (size_t)m->nregions);
	if (m->vcpus > RDMIG_GUEST_MAX_VCPUS)
		return rdmig_seterr(err, -EPROTO, "SETUP: %u vCPUs, at most %d", m->vcpus,
				    RDMIG_GUEST_MAX_VCPUS);
	if (m->workload > RDMIG_WL_HOTSET)
		return rdmig_seterr(err, -EPROTO, "SETUP: unknown workload %u", m->workload);
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
	return 0;
}

#define FINAL_FIXED 16

size_t rdmig_msg_final_encode(uint8_t *b, const struct rdmig_msg_final *m)
{
	rdmig_put_be32(b, m->rounds);
	rdmig_put_be32(b + 4, m->vcpus);
	rdmig_put_be64(b + 8, m->final_seq);
	for (uint32_t i = 0; i < m->vcpus; i++) {
		uint8_t *p = b + FINAL_FIXED + 32 * i;

		rdmig_put_be64(p, m->vcpu[i].pos);
		rdmig_put_be64(p + 8, m->vcpu[i].rng);
		rdmig_put_be64(p + 16, m->vcpu[i].work);
		rdmig_put_be64(p + 24, 0);
	}
	return FINAL_FIXED + 32 * (size_t)m->vcpus;
}

int rdmig_msg_final_decode(const uint8_t *b, size_t len, uint32_t vcpus, struct rdmig_msg_final *m,
			   struct rdmig_err *err)
{
	if (len < FINAL_FIXED)
		return rdmig_seterr(err, -EPROTO, "FINAL: %zu bytes", len);
	memset(m, 0, sizeof(*m));
	m->rounds = rdmig_get_be32(b);
	m->vcpus = rdmig_get_be32(b + 4);
	m->final_seq = rdmig_get_be64(b + 8);
	if (m->vcpus != vcpus)
		return rdmig_seterr(err, -EPROTO, "FINAL: %u vCPU states for a %u-vCPU guest",
				    m->vcpus, vcpus);
	if (len != FINAL_FIXED + 32 * (size_t)m->vcpus)
		return rdmig_seterr(err, -EPROTO, "FINAL: %zu bytes for %u vCPUs", len, m->vcpus);
	for (uint32_t i = 0; i < m->vcpus; i++) {
		const uint8_t *p = b + FINAL_FIXED + 32 * i;

		m->vcpu[i].pos = rdmig_get_be64(p);
		m->vcpu[i].rng = rdmig_get_be64(p + 8);
		m->vcpu[i].work = rdmig_get_be64(p + 16);
	}
	return 0;
}

size_t rdmig_msg_manifest_encode(uint8_t *b, uint32_t region, uint64_t first_page,
				 const uint64_t *sums, uint32_t count)
{
	rdmig_put_be32(b, region);
	rdmig_put_be32(b + 4, count);
	rdmig_put_be64(b + 8, first_page);
	for (uint32_t i = 0; i < count; i++)
		rdmig_put_be64(b + 16 + 8 * i, sums[i]);
	return 16 + 8 * (size_t)count;
}

int rdmig_msg_manifest_decode(const uint8_t *b, size_t len, const uint64_t *region_pages,
			      uint32_t nregions, struct rdmig_msg_manifest *m,
			      struct rdmig_err *err)
{
	if (len < 16)
		return rdmig_seterr(err, -EPROTO, "MANIFEST: %zu bytes", len);
	m->region = rdmig_get_be32(b);
	m->count = rdmig_get_be32(b + 4);
	m->first_page = rdmig_get_be64(b + 8);
	m->sums = b + 16;
	if (m->region >= nregions)
		return rdmig_seterr(err, -EPROTO, "MANIFEST: region %u of %u", m->region, nregions);
	if (!m->count || m->count > RDMIG_MANIFEST_PER_MSG || len != 16 + 8 * (size_t)m->count)
		return rdmig_seterr(err, -EPROTO, "MANIFEST: %u checksums in %zu bytes", m->count,
				    len);
	if (m->first_page > region_pages[m->region] ||
	    m->count > region_pages[m->region] - m->first_page)
		return rdmig_seterr(err, -EPROTO,
				    "MANIFEST: pages %llu+%u beyond region %u (%llu pages)",
				    (unsigned long long)m->first_page, m->count, m->region,
				    (unsigned long long)region_pages[m->region]);
	return 0;
}

size_t rdmig_msg_u64_encode(uint8_t *b, uint64_t v)
{
	rdmig_put_be64(b, v);
	return 8;
}

int rdmig_msg_u64_decode(const uint8_t *b, size_t len, uint64_t *v, struct rdmig_err *err)
{
	if (len != 8)
		return rdmig_seterr(err, -EPROTO, "message of %zu bytes, expected 8", len);
	*v = rdmig_get_be64(b);
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
