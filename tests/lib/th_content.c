/* SPDX-License-Identifier: MIT */
#include "th_content.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void *th_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		printf("FAIL: mmap of %zu bytes: %s\n", len, strerror(errno));
		exit(1);
	}
	return p;
}

uint64_t th_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t th_rng_next(struct th_rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return th_mix64(r->s);
}

uint64_t th_rng_range(struct th_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + th_rng_next(r) % (hi - lo + 1);
}

static uint64_t content_word(uint64_t key, uint64_t idx, unsigned flags)
{
	/* A page is 512 words. */
	if ((flags & TH_CONTENT_SPARSE) && th_mix64(key ^ ((idx >> 9) * 0xd6e8feb86659fd93ULL)) % 4)
		return 0;
	return th_mix64(key + (idx + 1) * 0x9e3779b97f4a7c15ULL);
}

void th_content_fill(uint8_t *dst, uint64_t pos, size_t len, uint64_t key, unsigned flags)
{
	while (len && (pos & 7)) {
		*dst++ = (uint8_t)(content_word(key, pos >> 3, flags) >> (8 * (pos & 7)));
		pos++;
		len--;
	}
	while (len >= 8) {
		uint64_t w = content_word(key, pos >> 3, flags);

		memcpy(dst, &w, 8); /* little-endian byte order of w, as the byte path */
		dst += 8;
		pos += 8;
		len -= 8;
	}
	while (len) {
		*dst++ = (uint8_t)(content_word(key, pos >> 3, flags) >> (8 * (pos & 7)));
		pos++;
		len--;
	}
}

uint64_t th_content_compare(const uint8_t *mem, uint64_t pos, uint64_t len, uint64_t key,
			    unsigned flags, uint64_t *first)
{
	enum { CHUNK = 1 << 20 };
	uint8_t *exp = malloc(CHUNK);
	uint64_t bad_pages = 0, last_bad_page = UINT64_MAX;

	*first = UINT64_MAX;
	if (!exp) {
		*first = pos;
		return 1;
	}
	for (uint64_t off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK;

		th_content_fill(exp, pos + off, n, key, flags);
		if (!memcmp(exp, mem + off, n))
			continue;
		for (size_t i = 0; i < n; i++) {
			if (exp[i] == mem[off + i])
				continue;
			if (*first == UINT64_MAX)
				*first = pos + off + i;
			if ((pos + off + i) / 4096 != last_bad_page) {
				last_bad_page = (pos + off + i) / 4096;
				bad_pages++;
			}
		}
	}
	free(exp);
	return bad_pages;
}
