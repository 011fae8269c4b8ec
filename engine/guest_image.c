/* SPDX-License-Identifier: MIT */
/* The synthetic guest's RAM as a whole: seeded prefill, and a dump to a file for cmp. */
#include "guest_int.h"

#include <errno.h>

#include "mig_common.h"

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
	struct rdmig_vm_region r[RDMIG_GUEST_MAX_REGIONS];

	for (unsigned i = 0; i < g->cfg.nregions; i++)
		r[i] = (struct rdmig_vm_region){.name = g->regions[i].name,
						.addr = g->regions[i].addr,
						.len = g->regions[i].len};
	return rdmig_mig_dump(r, g->cfg.nregions, path, err);
}
