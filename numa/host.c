/* SPDX-License-Identifier: MIT */
/*
 * Placement for this host: what a command needs to plan its workers, found
 * once (topology, the RDMA device that carries the data, its node and
 * completion vectors) and the plan made from it, with the guest's RAM
 * sampled here and nowhere else in the tools.
 */
#include "plan.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "rdmig/transport.h"

/* Whether `dev` is one of the comma-separated `names`. */
static bool listed(const char *names, const char *dev)
{
	size_t len = strlen(dev);

	for (const char *p = names; *p;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);

		if (n == len && !strncmp(p, dev, len))
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

int rdmig_numa_host_load(struct rdmig_numa_host *h, const char *device, const char *xml_path,
			 const char *synthetic, struct rdmig_err *err)
{
	char names[1024];
	int ndev, ret;

	memset(h, 0, sizeof(*h));
	h->dev_node = -1;
	ret = rdmig_numa_topo_load(&h->topo, xml_path, synthetic, err);
	if (ret)
		return ret;
	ndev = rdmig_rdma_devices(names, sizeof(names));
	if (device) {
		if (snprintf(h->device, sizeof(h->device), "%s", device) >= (int)sizeof(h->device))
			return rdmig_seterr(err, -EINVAL, "RDMA device name '%s' is too long",
					    device);
	} else if (ndev == 1 && !xml_path && !synthetic) {
		/* rdma_cm has no choice to make, so neither does the plan. */
		if (snprintf(h->device, sizeof(h->device), "%s", names) >= (int)sizeof(h->device))
			h->device[0] = '\0';
	}
	if (!h->device[0])
		return 0;
	h->device_present = listed(names, h->device);
	h->dev_node = rdmig_topo_ibdev_numa_node(h->device);
	h->num_comp_vectors = h->device_present ? rdmig_rdma_comp_vectors(h->device) : 0;
	return 0;
}

unsigned rdmig_numa_host_vectors(const struct rdmig_numa_host *h, unsigned n, int *vec)
{
	/*
	 * The host knows no vector locality (the planner's comp_vector_node
	 * is NULL), where rdmig_numa_plan() deals vector i % count to channel
	 * i whatever the policy: these are the vectors every plan of this host
	 * names, known before the channel count is.
	 */
	if (h->num_comp_vectors <= 0)
		return 0;
	for (unsigned i = 0; i < n; i++)
		vec[i] = (int)(i % (unsigned)h->num_comp_vectors);
	return n;
}

int rdmig_numa_host_plan(const struct rdmig_numa_host *h, const struct rdmig_numa_want *w,
			 struct rdmig_numa_plan *p, struct rdmig_err *err)
{
	struct rdmig_numa_region reg[RDMIG_NUMA_MAX_REGIONS];
	struct rdmig_numa_input in = {
	    .topo = &h->topo,
	    .dev_node = h->dev_node,
	    .num_comp_vectors = h->num_comp_vectors,
	    .channels = w->channels,
	    .avoid = w->avoid,
	    .policy = w->policy,
	    .cpulist = w->cpulist,
	};

	if (w->nmem > RDMIG_NUMA_MAX_REGIONS)
		return rdmig_seterr(err, -EINVAL, "too many guest regions (%u, at most %d)",
				    w->nmem, RDMIG_NUMA_MAX_REGIONS);
	for (unsigned r = 0; r < w->nmem; r++) {
		reg[r].len = w->mem[r].len;
		reg[r].node = rdmig_numa_region_node(w->mem[r].addr, w->mem[r].len,
						     RDMIG_NUMA_REGION_SAMPLES, NULL);
	}
	in.regions = w->nmem ? reg : NULL;
	in.nregions = w->nmem;
	return rdmig_numa_plan(&in, p, err);
}

unsigned rdmig_numa_plan_vectors(const struct rdmig_numa_plan *p, int *vec)
{
	unsigned n = 0;

	for (unsigned i = 0; p && i < p->nworkers; i++) {
		vec[i] = p->w[i].comp_vector;
		n += vec[i] >= 0;
	}
	return n ? p->nworkers : 0;
}
