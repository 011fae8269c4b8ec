/* SPDX-License-Identifier: MIT */
/*
 * Machine topology, first piece of the numa module: what hwloc sees (NUMA
 * nodes, cores, PUs, packages, memory per node) and which NUMA node an RDMA
 * device hangs off. Planning code that places workers takes these as plain
 * data, so it can be fed synthetic topologies (hwloc XML) in tests.
 */
#ifndef RDMIG_NUMA_TOPO_H
#define RDMIG_NUMA_TOPO_H

#include <stdbool.h>
#include <stdint.h>

#include "rdmig/err.h"

#define RDMIG_TOPO_MAX_NODES 64

struct rdmig_topo_node {
	int os_index;	    /* the kernel's node number (node0, node1, ...) */
	int pus;	    /* PUs local to the node; 0 for memory-only nodes */
	uint64_t mem_total; /* bytes */
	int64_t mem_free;   /* bytes, -1 when unknown (XML topology, no libnuma) */
};

struct rdmig_topo_summary {
	int nodes; /* NUMA nodes (hwloc reports at least one) */
	int cores;
	int pus; /* hardware threads */
	int packages;
	uint64_t mem_total; /* sum over nodes, bytes */
	int nnode;	    /* entries in node[]: min(nodes, RDMIG_TOPO_MAX_NODES) */
	struct rdmig_topo_node node[RDMIG_TOPO_MAX_NODES];
};

/*
 * Fill *s from this machine (xml_path NULL) or from an hwloc XML export
 * (`lstopo --of xml`), for tests of placement on topologies we do not have.
 */
int rdmig_topo_summarize(struct rdmig_topo_summary *s, const char *xml_path, struct rdmig_err *err);

/*
 * NUMA node of the RDMA device `ibdev` (e.g. "mlx5_0", "rxe0") from sysfs,
 * or -1 if unknown: the device reports none (single-node machines, most VMs)
 * or does not exist. A software device (rxe, siw) has no bus device of its
 * own; its node is taken from the netdev under port 1.
 */
int rdmig_topo_ibdev_numa_node(const char *ibdev);

/*
 * Whether RDMA device `ibdev` is implemented in software (rxe): it has no
 * bus device of its own in sysfs, only the netdev it runs on. False for an
 * unknown device.
 */
bool rdmig_topo_ibdev_software(const char *ibdev);

/* The same under another sysfs root (tests build a fake tree). */
int rdmig_topo_ibdev_numa_node_at(const char *sysfs_root, const char *ibdev);

#endif
