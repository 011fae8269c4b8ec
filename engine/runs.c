/* SPDX-License-Identifier: MIT */
#include "runs.h"

size_t rdmig_runs_coalesce(struct rdmig_run *runs, size_t n)
{
	size_t w = 0;

	if (!n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		struct rdmig_run *a = &runs[w];
		const struct rdmig_run *b = &runs[i];

		/* The overflow guards keep a wrapped sum from looking contiguous. */
		if (a->lreg == b->lreg && a->rreg == b->rreg && a->len <= UINT64_MAX - a->loff &&
		    a->len <= UINT64_MAX - a->roff && a->loff + a->len == b->loff &&
		    a->roff + a->len == b->roff && b->len <= UINT64_MAX - a->len) {
			a->len += b->len;
			continue;
		}
		if (++w != i)
			runs[w] = *b;
	}
	return w + 1;
}

/* First set bit at or after `pos`, or a value >= npages if none. */
static uint64_t next_set(const uint64_t *bitmap, uint64_t npages, uint64_t pos)
{
	uint64_t nwords = (npages + 63) / 64, i = pos / 64, word;

	if (pos >= npages)
		return npages;
	word = bitmap[i] & (~0ULL << (pos % 64));
	while (!word) {
		if (++i >= nwords)
			return npages;
		word = bitmap[i];
	}
	return i * 64 + (uint64_t)__builtin_ctzll(word);
}

/* First clear bit at or after `pos`, or a value >= npages if none. */
static uint64_t next_clear(const uint64_t *bitmap, uint64_t npages, uint64_t pos)
{
	uint64_t nwords = (npages + 63) / 64, i = pos / 64, word;

	if (pos >= npages)
		return npages;
	word = ~bitmap[i] & (~0ULL << (pos % 64));
	while (!word) {
		if (++i >= nwords)
			return npages;
		word = ~bitmap[i];
	}
	return i * 64 + (uint64_t)__builtin_ctzll(word);
}

size_t rdmig_runs_from_bitmap(const uint64_t *bitmap, uint64_t npages, uint64_t page_size,
			      uint32_t lreg, uint32_t rreg, uint64_t first_page,
			      uint64_t max_run_bytes, struct rdmig_run *out, size_t cap,
			      uint64_t *next_page)
{
	uint64_t max_pages = UINT64_MAX, start, end;
	size_t n = 0;

	if (max_run_bytes && page_size) {
		max_pages = max_run_bytes / page_size;
		if (!max_pages)
			max_pages = 1;
	}

	start = next_set(bitmap, npages, first_page);
	while (start < npages && n < cap) {
		end = next_clear(bitmap, npages, start + 1);
		if (end > npages)
			end = npages;
		if (end - start > max_pages)
			end = start + max_pages;
		out[n++] = (struct rdmig_run){
		    .lreg = lreg,
		    .rreg = rreg,
		    .loff = start * page_size,
		    .roff = start * page_size,
		    .len = (end - start) * page_size,
		};
		start = next_set(bitmap, npages, end);
	}
	*next_page = start < npages ? start : npages;
	return n;
}
