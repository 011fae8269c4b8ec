/* SPDX-License-Identifier: MIT */
/*
 * Big-endian byte order for wire formats, written out byte by byte so no
 * struct is ever cast onto a buffer and no alignment is assumed.
 */
#ifndef RDMIG_BYTES_H
#define RDMIG_BYTES_H

#include <stdint.h>

static inline void rdmig_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void rdmig_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void rdmig_put_be64(uint8_t *p, uint64_t v)
{
	rdmig_put_be32(p, (uint32_t)(v >> 32));
	rdmig_put_be32(p + 4, (uint32_t)v);
}
static inline uint16_t rdmig_get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t rdmig_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t rdmig_get_be64(const uint8_t *p)
{
	return ((uint64_t)rdmig_get_be32(p) << 32) | rdmig_get_be32(p + 4);
}

#endif
