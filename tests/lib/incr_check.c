/* SPDX-License-Identifier: MIT */
/*
 * The incr check (incr_check.h). It walks RAM as a list of spans, the
 * guest's regions or one raw image, so that it needs nothing from the
 * guest but its public accessors.
 */
#include "incr_check.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CHECK_REPORT 4 /* bad pages named in the message */

struct span {
	const char *name; /* NULL for a raw image: pages are named by number alone */
	const uint8_t *addr;
	uint64_t first, npages; /* page range of the whole RAM this span holds */
};

struct check_ctx {
	const struct span *spans;
	unsigned nspans;
	unsigned hint; /* the span of the last lookup: pages are mostly walked in order */
	uint64_t bad;
	char *msg;
	size_t msg_len, msg_used;
};

static const struct span *span_of(struct check_ctx *c, uint64_t page)
{
	const struct span *s = &c->spans[c->hint];

	if (page - s->first < s->npages)
		return s;
	for (unsigned i = 0; i < c->nspans; i++) {
		if (page - c->spans[i].first < c->spans[i].npages) {
			c->hint = i;
			return &c->spans[i];
		}
	}
	return NULL; /* not reached: callers stay below the total page count */
}

static const uint8_t *page_at(struct check_ctx *c, uint64_t page)
{
	const struct span *s = span_of(c, page);

	return s->addr + (page - s->first) * RDMIG_PAGE_SIZE;
}

static uint8_t b0(struct check_ctx *c, uint64_t page)
{
	return page_at(c, page)[0];
}

/* Offset of the first nonzero byte of the page other than byte 0, or 0. */
static unsigned first_nonzero(const uint8_t *page)
{
	uint64_t acc = 0, w;

	for (unsigned i = 1; i < 8; i++)
		if (page[i])
			return i;
	for (unsigned i = 8; i < RDMIG_PAGE_SIZE; i += 8) {
		memcpy(&w, page + i, 8);
		acc |= w;
	}
	if (!acc)
		return 0;
	for (unsigned i = 8; i < RDMIG_PAGE_SIZE; i++)
		if (page[i])
			return i;
	return 0;
}

static void check_report(struct check_ctx *c, uint64_t page, unsigned vcpu, unsigned off,
			 uint8_t found, uint8_t expected)
{
	const struct span *s;
	char name[64];
	int n;

	if (c->bad++ >= CHECK_REPORT || c->msg_used >= c->msg_len)
		return;
	s = span_of(c, page);
	if (s->name)
		snprintf(name, sizeof(name), "%s page %" PRIu64, s->name, page - s->first);
	else
		snprintf(name, sizeof(name), "page %" PRIu64, page);
	n = snprintf(c->msg + c->msg_used, c->msg_len - c->msg_used,
		     "%s%s (vcpu %u): byte %u is %u, expected %u", c->bad > 1 ? "; " : "", name,
		     vcpu, off, found, expected);
	if (n > 0)
		c->msg_used += (size_t)n;
}

/*
 * The slice [first, first + len) is valid when byte 0 is either the same
 * everywhere, or v + 1 on a prefix [0, k) and v on the rest [k, len) for
 * some k in 1..len-1 (mod 256): the vCPU had incremented the prefix one more
 * time when it stopped. Walking forward, that is at most one step that drops
 * by exactly 1 and no other change. Returns true and the pattern if valid.
 */
static bool slice_fast(struct check_ctx *c, uint64_t first, uint64_t len, uint8_t *v, uint64_t *k)
{
	uint64_t edge = 0;

	for (uint64_t i = 1; i < len; i++) {
		uint8_t d = (uint8_t)(b0(c, first + i - 1) - b0(c, first + i));

		if (d == 0)
			continue;
		if (d != 1 || edge)
			return false;
		edge = i;
	}
	*v = b0(c, first + len - 1);
	*k = edge;
	return true;
}

/*
 * For an invalid slice, the valid pattern closest to it (fewest pages
 * differing), so the report blames the pages that are actually wrong. In a
 * valid slice the most common value is v or v + 1, so trying both of those
 * as v finds an exact match whenever there is one; for garbage it is just a
 * reasonable guess.
 */
static void slice_best(struct check_ctx *c, uint64_t first, uint64_t len, uint8_t *best_v,
		       uint64_t *best_k)
{
	uint64_t hist[256] = {0}, best = UINT64_MAX;
	unsigned mode = 0;

	for (uint64_t i = 0; i < len; i++)
		hist[b0(c, first + i)]++;
	for (unsigned x = 1; x < 256; x++)
		if (hist[x] > hist[mode])
			mode = x;
	for (int cand = 0; cand < 2; cand++) {
		uint8_t v = (uint8_t)(mode - cand), hi = (uint8_t)(v + 1);
		uint64_t before = 0, after = 0;

		/* mismatches(k) = #{i < k: b != v+1} + #{i >= k: b != v} */
		for (uint64_t i = 0; i < len; i++)
			after += b0(c, first + i) != v;
		for (uint64_t k = 0; k < len; k++) {
			if (before + after < best) {
				best = before + after;
				*best_v = v;
				*best_k = k;
			}
			before += b0(c, first + k) != hi;
			after -= b0(c, first + k) != v;
		}
	}
}

static int check_incr(const struct span *spans, unsigned nspans, unsigned vcpus,
		      struct rdmig_err *err)
{
	char list[RDMIG_ERR_MSG_MAX];
	struct check_ctx c = {
	    .spans = spans, .nspans = nspans, .msg = list, .msg_len = sizeof(list)};
	uint64_t npages = spans[nspans - 1].first + spans[nspans - 1].npages;
	unsigned nslices = vcpus ? vcpus : 1;

	list[0] = '\0';
	for (unsigned s = 0; s < nslices; s++) {
		uint64_t first, len, k = 0;
		uint8_t v = 0;

		rdmig_incr_slice(npages, vcpus, s, &first, &len);
		if (len == 0)
			continue;
		if (!slice_fast(&c, first, len, &v, &k))
			slice_best(&c, first, len, &v, &k);
		for (uint64_t i = 0; i < len; i++) {
			const uint8_t *page = page_at(&c, first + i);
			uint8_t exp = (uint8_t)(i < k ? v + 1 : v);
			unsigned off;

			if (page[0] != exp) {
				check_report(&c, first + i, s, 0, page[0], exp);
				continue;
			}
			off = first_nonzero(page);
			if (off)
				check_report(&c, first + i, s, off, page[off], 0);
		}
	}
	if (c.bad == 0)
		return 0;
	return rdmig_seterr(err, -EILSEQ, "incr check: %" PRIu64 " bad page%s of %" PRIu64 ": %s%s",
			    c.bad, c.bad == 1 ? "" : "s", npages, list,
			    c.bad > CHECK_REPORT ? "; ..." : "");
}

int rdmig_check_incr_image(const uint8_t *ram, uint64_t len, unsigned vcpus, struct rdmig_err *err)
{
	struct span s = {.addr = ram, .npages = len / RDMIG_PAGE_SIZE};

	if (!ram || len == 0 || len % RDMIG_PAGE_SIZE)
		return rdmig_seterr(err, -EINVAL,
				    "incr check: image of %" PRIu64
				    " bytes is not a whole number of %u-byte pages",
				    len, RDMIG_PAGE_SIZE);
	return check_incr(&s, 1, vcpus, err);
}

int rdmig_guest_check_incr(const struct rdmig_guest *g, struct rdmig_err *err)
{
	struct span spans[RDMIG_GUEST_MAX_REGIONS];
	unsigned n = rdmig_guest_nregions(g);
	uint64_t page = 0;

	for (unsigned i = 0; i < n; i++) {
		const struct rdmig_guest_region *r = rdmig_guest_region(g, i);

		spans[i] = (struct span){.name = r->name,
					 .addr = r->addr,
					 .first = page,
					 .npages = r->len / RDMIG_PAGE_SIZE};
		page += spans[i].npages;
	}
	return check_incr(spans, n, rdmig_guest_cfg(g)->vcpus, err);
}
