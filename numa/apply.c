/* SPDX-License-Identifier: MIT */
/*
 * Applying a placement plan: thread affinity, memory binding, and the
 * queries that tell where guest memory actually is. The only code in numa/
 * that changes the running process.
 */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "plan.h"

int rdmig_numa_pin_self(const struct rdmig_numa_plan *p, unsigned idx, struct rdmig_err *err)
{
	const struct rdmig_numa_worker *w;
	char buf[256];
	cpu_set_t set;
	int ret;

	if (!p || p->policy == RDMIG_NUMA_OFF)
		return 0;
	if (idx >= p->nworkers)
		return rdmig_seterr(err, -EINVAL, "no worker %u in the placement plan (%u workers)",
				    idx, p->nworkers);
	w = &p->w[idx];
	if (!rdmig_cpuset_count(&w->cpus))
		return 0;
	CPU_ZERO(&set);
	for (int c = 0; c < RDMIG_NUMA_MAX_CPUS && c < CPU_SETSIZE; c++)
		if (rdmig_cpuset_isset(&w->cpus, c))
			CPU_SET(c, &set);
	ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (ret)
		return rdmig_seterr_errno(err, rdmig_neg_pos(ret), "pin worker %u to CPUs %s", idx,
					  rdmig_cpuset_format(&w->cpus, buf, sizeof(buf)));
	log_debug("worker %u pinned to CPUs %s (node %d)", idx,
		  rdmig_cpuset_format(&w->cpus, buf, sizeof(buf)), w->node);
	return 0;
}

int rdmig_numa_bind(void *addr, uint64_t len, int node, struct rdmig_err *err)
{
	unsigned long mask[RDMIG_TOPO_MAX_NODES / (8 * sizeof(unsigned long)) + 1] = {0};
	long page = sysconf(_SC_PAGESIZE);

	if (node < 0 || node >= RDMIG_TOPO_MAX_NODES)
		return rdmig_seterr(err, -EINVAL, "cannot bind memory to node %d", node);
	if (!addr || (uintptr_t)addr % (uintptr_t)page || !len)
		return rdmig_seterr(err, -EINVAL,
				    "memory to bind must be page-aligned and non-empty");
	mask[node / (8 * sizeof(unsigned long))] |= 1ul << (node % (8 * sizeof(unsigned long)));
	/* maxnode counts bits and the kernel reads one less than given. */
	if (mbind(addr, len, MPOL_BIND, mask, sizeof(mask) * 8, MPOL_MF_MOVE) < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "bind %llu bytes to node %d",
					  (unsigned long long)len, node);
	return 0;
}

int rdmig_numa_bind_region(const struct rdmig_numa_plan *p, unsigned r, void *addr, uint64_t len,
			   struct rdmig_err *err)
{
	int ret;

	if (!p || p->policy == RDMIG_NUMA_OFF || p->trivial || r >= p->nregions ||
	    p->region_node[r] < 0)
		return 0;
	ret = rdmig_numa_bind(addr, len, p->region_node[r], err);
	if (ret)
		rdmig_err_prefix(err, "guest region %u", r);
	else
		log_info("guest region %u bound to node %d", r, p->region_node[r]);
	return ret;
}

int rdmig_cpuset_usable(const struct rdmig_cpuset *s, struct rdmig_err *err)
{
	cpu_set_t allowed;
	char buf[256];

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return 0; /* unknown: pinning itself warns */
	for (int c = 0; c < RDMIG_NUMA_MAX_CPUS; c++) {
		struct rdmig_cpuset a;

		if (!rdmig_cpuset_isset(s, c) || (c < CPU_SETSIZE && CPU_ISSET(c, &allowed)))
			continue;
		rdmig_cpuset_zero(&a);
		for (int k = 0; k < CPU_SETSIZE && k < RDMIG_NUMA_MAX_CPUS; k++)
			if (CPU_ISSET(k, &allowed))
				rdmig_cpuset_set(&a, k);
		return rdmig_seterr(err, -EINVAL,
				    "CPU %d is not available to this process (CPUs %s)", c,
				    rdmig_cpuset_format(&a, buf, sizeof(buf)));
	}
	return 0;
}

int rdmig_numa_query_pages(const void *const *pages, unsigned n, int *nodes, struct rdmig_err *err)
{
	if (!n)
		return 0;
	/* nodes == NULL: move nothing, report where each page is in status[]. */
	if (move_pages(0, n, (void **)pages, NULL, nodes, 0) < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "move_pages query");
	return 0;
}

int rdmig_numa_region_node(const void *addr, uint64_t len, unsigned samples, uint64_t *bytes)
{
	uint64_t local[RDMIG_TOPO_MAX_NODES] = {0}, npages, step;
	long psz = sysconf(_SC_PAGESIZE);
	const void **pages;
	int *nodes, best = -1;
	unsigned n = 0;

	if (!addr || !len || psz <= 0)
		return -1;
	npages = (len + (uint64_t)psz - 1) / (uint64_t)psz;
	if (!samples)
		samples = 64;
	if (samples > npages)
		samples = (unsigned)npages;
	step = npages / samples;
	pages = calloc(samples, sizeof(*pages));
	nodes = calloc(samples, sizeof(*nodes));
	if (!pages || !nodes)
		goto out_free;
	for (unsigned i = 0; i < samples; i++)
		pages[n++] = (const uint8_t *)addr + (i * step) * (uint64_t)psz;
	if (rdmig_numa_query_pages(pages, n, nodes, NULL))
		goto out_free;
	for (unsigned i = 0; i < n; i++)
		if (nodes[i] >= 0 && nodes[i] < RDMIG_TOPO_MAX_NODES)
			local[nodes[i]] += step * (uint64_t)psz;
	for (int k = 0; k < RDMIG_TOPO_MAX_NODES; k++) {
		if (bytes)
			bytes[k] += local[k];
		if (local[k] && (best < 0 || local[k] > local[best]))
			best = k;
	}
out_free:
	free(pages);
	free(nodes);
	return best;
}
