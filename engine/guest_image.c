/* SPDX-License-Identifier: MIT */
/* The synthetic guest's RAM as a whole: seeded prefill, and a dump to a file for cmp. */
#include "guest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int rdmig_guest_prefill(struct rdmig_guest *g, unsigned percent, uint64_t seed,
			struct rdmig_err *err)
{
	uint64_t x = seed | 1;

	if (g->started)
		return rdmig_seterr(err, -EBUSY, "guest: prefill only before the vCPUs start");
	if (percent > 100)
		return rdmig_seterr(err, -EINVAL, "guest: prefill expects 0 to 100 percent");
	if (g->cfg.workload == RDMIG_WL_INCR && percent)
		return rdmig_seterr(err, -EINVAL,
				    "guest: prefill does not go with the incr workload, whose "
				    "check needs every byte but byte 0 zero");
	for (uint64_t p = 0; p < g->npages; p++) {
		uint64_t *w = (uint64_t *)(void *)(g->ram + p * RDMIG_PAGE_SIZE);

		/* xorshift64: decide the page, then fill it */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (x % 100 >= percent)
			continue;
		for (unsigned i = 0; i < RDMIG_PAGE_SIZE / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w[i] = x;
		}
	}
	return 0;
}

int rdmig_guest_dump(const struct rdmig_guest *g, const char *path, struct rdmig_err *err)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "dump guest RAM to %s: open",
					  path);
	for (unsigned r = 0; r < g->cfg.nregions && !ret; r++) {
		const uint8_t *p = g->regions[r].addr;
		uint64_t left = g->regions[r].len;

		while (left) {
			size_t chunk = left > (1u << 30) ? (1u << 30) : (size_t)left;
			ssize_t n = write(fd, p, chunk);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				ret = rdmig_seterr_errno(err, n < 0 ? rdmig_neg_errno() : -EIO,
							 "dump guest RAM to %s: write of %s", path,
							 g->regions[r].name);
				break;
			}
			p += n;
			left -= (uint64_t)n;
		}
	}
	if (close(fd) && !ret)
		ret =
		    rdmig_seterr_errno(err, rdmig_neg_errno(), "dump guest RAM to %s: close", path);
	return ret;
}
