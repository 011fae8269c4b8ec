/* SPDX-License-Identifier: MIT */
#include "th_guest.h"

#include <stdio.h>
#include <stdlib.h>

#include "clock.h"

#define ACCEPT_MS 60000

struct rdmig_guest *th_guest_new(uint64_t size, unsigned vcpus, uint64_t seed, bool start)
{
	struct rdmig_guest_cfg gc = {.ram_size = size,
				     .nregions = 2,
				     .vcpus = vcpus,
				     .workload = RDMIG_WL_INCR,
				     .seed = seed};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *g = NULL;

	if (rdmig_guest_create(&gc, &g, &err) || (start && rdmig_guest_start(g, NULL, &err))) {
		printf("FAIL: guest: %s\n", err.msg);
		exit(1);
	}
	if (start)
		rdmig_sleep_ms(20);
	return g;
}

bool th_guest_moves(struct rdmig_guest *g, int timeout_ms)
{
	uint64_t w0 = rdmig_guest_work(g);
	int64_t deadline = rdmig_deadline_ms(timeout_ms);

	do {
		rdmig_sleep_ms(10);
		if (rdmig_guest_work(g) > w0)
			return true;
	} while (rdmig_ms_left(deadline) > 0);
	return false;
}

int th_migrate_source(const struct rdmig_xport_cfg *cfg, struct rdmig_guest *g,
		      const struct rdmig_mig_opts *o, struct rdmig_mig_stats *st,
		      struct rdmig_err *err)
{
	struct rdmig_conn *c;
	int ret;

	ret = rdmig_connect(cfg, &c, err);
	if (ret)
		return ret;
	ret = rdmig_mig_source(c, g, o, st, err);
	rdmig_conn_destroy(c);
	return ret;
}

int th_migrate_dest(struct rdmig_listener *l, const struct rdmig_mig_opts *o,
		    struct rdmig_mig_stats *st, struct rdmig_err *err)
{
	struct rdmig_conn *c;
	int ret;

	ret = rdmig_accept(l, ACCEPT_MS, &c, err);
	if (ret)
		return ret;
	ret = rdmig_mig_dest(c, o, st, err);
	rdmig_conn_destroy(c);
	return ret;
}
