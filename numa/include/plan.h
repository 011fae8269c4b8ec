/* SPDX-License-Identifier: MIT */
/*
 * NUMA placement: where each migration worker runs, which completion vector
 * each channel's CQ uses, and which node each guest RAM region should live
 * on at the destination.
 *
 * Three steps, kept apart so the middle one is pure and testable:
 *   1. describe the host:   rdmig_numa_topo_load() (hwloc: this machine, an
 *                           XML export or a synthetic description)
 *   2. plan:                rdmig_numa_plan() -- plain data in, plain data out
 *   3. apply (numa/apply.c) rdmig_numa_pin_self(), rdmig_numa_bind() and the
 *                           region node query rdmig_numa_region_nodes()
 *
 * The engine runs one worker (source) or receiver (destination) per data
 * channel, so the plan has one worker per channel: worker i drives channel i.
 */
#ifndef RDMIG_NUMA_PLAN_H
#define RDMIG_NUMA_PLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rdmig/err.h"
#include "topo.h"

#define RDMIG_NUMA_MAX_CPUS    1024
#define RDMIG_NUMA_MAX_WORKERS 64 /* = RDMIG_MAX_CHANNELS */
#define RDMIG_NUMA_MAX_REGIONS 64
#define RDMIG_NUMA_MAX_NOTES   12
#define RDMIG_NUMA_NOTE_MAX    200

/* A set of CPU numbers (the kernel's numbering), 0..RDMIG_NUMA_MAX_CPUS-1. */
struct rdmig_cpuset {
	uint64_t bits[RDMIG_NUMA_MAX_CPUS / 64];
};

void rdmig_cpuset_zero(struct rdmig_cpuset *s);
void rdmig_cpuset_set(struct rdmig_cpuset *s, int cpu);
bool rdmig_cpuset_isset(const struct rdmig_cpuset *s, int cpu);
int rdmig_cpuset_count(const struct rdmig_cpuset *s);
/* "0-3,8" into buf (always terminated); "" for an empty set. */
char *rdmig_cpuset_format(const struct rdmig_cpuset *s, char *buf, size_t len);
/*
 * Parse a CPU list ("0-3,8,10-11") strictly: numbers, ranges lo-hi with
 * lo <= hi, commas, no spaces or empty items. Only the syntax is checked
 * here; rdmig_numa_plan() checks the CPUs against the host.
 */
int rdmig_cpuset_parse(const char *s, struct rdmig_cpuset *out, struct rdmig_err *err);

enum rdmig_cpu_state {
	RDMIG_CPU_ABSENT = 0, /* not in the topology */
	RDMIG_CPU_OFFLINE,    /* in the machine but not online (or not allowed to us) */
	RDMIG_CPU_ONLINE,
};

/* The host as the planner sees it: plain data, so tests can build or edit it. */
struct rdmig_numa_topo {
	int nnode; /* entries in node[] */
	struct {
		int os_index; /* node number as the kernel names it */
		int package;  /* logical package index, -1 unknown */
		uint64_t mem; /* bytes */
		int ncpu;     /* online CPUs local to the node (0: memory-only node) */
	} node[RDMIG_TOPO_MAX_NODES];
	int npackages;
	int cpu_slots;				/* highest CPU number + 1 */
	uint8_t cpu_state[RDMIG_NUMA_MAX_CPUS]; /* enum rdmig_cpu_state */
	int16_t cpu_node[RDMIG_NUMA_MAX_CPUS];	/* index into node[], -1 none */
	int32_t cpu_core[RDMIG_NUMA_MAX_CPUS];	/* core id, same for SMT siblings */
	uint8_t cpu_smt[RDMIG_NUMA_MAX_CPUS];	/* 0 for a core's first PU, 1 next... */
};

/*
 * Load a topology with hwloc: this machine when both `xml_path` and
 * `synthetic` are NULL, else an XML export (`lstopo --of xml`) or a
 * synthetic description ("pack:2 numa:2 core:2 pu:2").
 */
int rdmig_numa_topo_load(struct rdmig_numa_topo *t, const char *xml_path, const char *synthetic,
			 struct rdmig_err *err);

/* Index into t->node[] of kernel node `os_index`, or -1. */
int rdmig_numa_topo_node_index(const struct rdmig_numa_topo *t, int os_index);

enum rdmig_numa_policy {
	RDMIG_NUMA_AUTO = 0, /* plan from memory and device locality */
	RDMIG_NUMA_CPULIST,  /* the user's CPUs, round-robin over workers */
	RDMIG_NUMA_OFF,	     /* no pinning, no binding */
};

/* "auto", "off" or a CPU list; *cpus receives the list for RDMIG_NUMA_CPULIST. */
int rdmig_numa_policy_parse(const char *s, enum rdmig_numa_policy *p, struct rdmig_cpuset *cpus,
			    struct rdmig_err *err);
const char *rdmig_numa_policy_name(enum rdmig_numa_policy p);

/* A guest RAM region (or a large part of one) and the node holding most of it. */
struct rdmig_numa_region {
	uint64_t len;
	int node; /* kernel node number, -1 unknown */
};

struct rdmig_numa_input {
	const struct rdmig_numa_topo *topo;
	const struct rdmig_numa_region *regions; /* may be NULL when nregions is 0 */
	unsigned nregions;
	int dev_node;			  /* the RDMA device's / NIC's kernel node, -1 unknown */
	int num_comp_vectors;		  /* of the device, 0 unknown */
	const int *comp_vector_node;	  /* node of each vector (kernel number), NULL unknown */
	unsigned channels;		  /* 1..RDMIG_NUMA_MAX_WORKERS */
	const struct rdmig_cpuset *avoid; /* CPUs running guest vCPUs, NULL none */
	enum rdmig_numa_policy policy;
	const struct rdmig_cpuset *cpulist; /* RDMIG_NUMA_CPULIST only */
};

struct rdmig_numa_worker {
	unsigned chan;		  /* the data channel this worker drives */
	int node;		  /* kernel node number, -1 unplaced (policy off) */
	struct rdmig_cpuset cpus; /* empty: do not pin */
	int comp_vector;	  /* for the channel's CQ; -1: the transport's default */
	bool shared;		  /* shares its CPU with another worker */
};

struct rdmig_numa_plan {
	enum rdmig_numa_policy policy;
	int nnode;		   /* NUMA nodes of the host */
	int dev_node;		   /* as given */
	int num_comp_vectors;	   /* as given, 0 unknown */
	struct rdmig_cpuset avoid; /* as given: vCPU CPUs (empty: none) */
	bool trivial;		   /* one node: nothing to decide */
	unsigned nworkers;
	struct rdmig_numa_worker w[RDMIG_NUMA_MAX_WORKERS];
	/* Per topology node (same index as topo->node[]). */
	int node_os[RDMIG_TOPO_MAX_NODES];
	unsigned node_workers[RDMIG_TOPO_MAX_NODES];
	uint64_t node_bytes[RDMIG_TOPO_MAX_NODES]; /* guest RAM known to be there */
	/* Destination: node each region's memory goes to; -1 leave it alone. */
	unsigned nregions;
	uint64_t region_len[RDMIG_NUMA_MAX_REGIONS];
	int region_node[RDMIG_NUMA_MAX_REGIONS];
	unsigned nnotes;
	char notes[RDMIG_NUMA_MAX_NOTES][RDMIG_NUMA_NOTE_MAX];
};

/*
 * Plan placement. Pure: reads only `in`. Errors (-EINVAL) name the bad
 * input, e.g. "CPU 9 is not online" or "CPU 64 does not exist on this host
 * (CPUs 0-7)". Decisions worth knowing about (shared CPUs, vCPU CPUs used
 * anyway, single node) are recorded as notes in the plan.
 */
int rdmig_numa_plan(const struct rdmig_numa_input *in, struct rdmig_numa_plan *p,
		    struct rdmig_err *err);

/* ---- this host (numa/host.c) ------------------------------------------- */

/*
 * This host as placement sees it, found once per command: its topology and
 * the RDMA device that carries the data, with that device's node and
 * completion vectors. Every plan the command makes comes from it.
 */
struct rdmig_numa_host {
	struct rdmig_numa_topo topo;
	char device[64];      /* "": none known (no device, or several and none named) */
	bool device_present;  /* libibverbs lists `device` */
	int dev_node;	      /* kernel node, -1 unknown */
	int num_comp_vectors; /* of the device, 0 unknown */
};

/*
 * Describe this machine, or the topology of an hwloc XML export or synthetic
 * description (then no device is picked for the caller). `device` names the
 * RDMA device; NULL takes this host's only one when it has exactly one (the
 * one rdma_cm will use). A named device that is absent is kept, with node
 * and vectors unknown (device_present false), for the caller to report.
 */
int rdmig_numa_host_load(struct rdmig_numa_host *h, const char *device, const char *xml_path,
			 const char *synthetic, struct rdmig_err *err);

/* Guest RAM whose NUMA node the plan follows. */
struct rdmig_numa_mem {
	const void *addr;
	uint64_t len;
};

/* Pages sampled per region to find its node (the engine's SETUP uses the same). */
#define RDMIG_NUMA_REGION_SAMPLES 256

/* What the caller wants placed; the policy comes parsed (rdmig_numa_policy_parse). */
struct rdmig_numa_want {
	unsigned channels;
	enum rdmig_numa_policy policy;
	const struct rdmig_cpuset *cpulist; /* RDMIG_NUMA_CPULIST only */
	const struct rdmig_cpuset *avoid;   /* CPUs running guest vCPUs, NULL none */
	const struct rdmig_numa_mem *mem;   /* guest RAM (sampled here), NULL: unknown */
	unsigned nmem;
};

/* Plan `w` on host `h`: rdmig_numa_plan() with the host's facts and the RAM's nodes. */
int rdmig_numa_host_plan(const struct rdmig_numa_host *h, const struct rdmig_numa_want *w,
			 struct rdmig_numa_plan *p, struct rdmig_err *err);

/*
 * The completion vectors every plan of host `h` gives channels 0..n-1, for
 * callers that need them before the channel count (and so the plan) is
 * known, such as an rdma listener. Returns n, or 0 when the device's vector
 * count is unknown (the transport's default then).
 */
unsigned rdmig_numa_host_vectors(const struct rdmig_numa_host *h, unsigned n, int *vec);

/* The plan's vector for each channel into vec[]; p->nworkers, or 0 when it names none. */
unsigned rdmig_numa_plan_vectors(const struct rdmig_numa_plan *p, int *vec);

/* ---- printing ------------------------------------------------------------ */

/* Human-readable plan (and topology summary when `t` is given). */
void rdmig_numa_plan_print(FILE *out, const struct rdmig_numa_plan *p,
			   const struct rdmig_numa_topo *t);
/* The plan (and topology when `t` is given) as a jansson object; NULL when out of memory. */
struct json_t *rdmig_numa_plan_to_json(const struct rdmig_numa_plan *p,
				       const struct rdmig_numa_topo *t);
/* The plan as one compact JSON object, no newline. Returns 0, -ENOMEM or -EIO. */
int rdmig_numa_plan_print_json(FILE *out, const struct rdmig_numa_plan *p,
			       const struct rdmig_numa_topo *t);

/* ---- apply (numa/apply.c) ---------------------------------------------- */

/*
 * Pin the calling thread to the CPUs of worker `idx` of `p`. No-op (0) when
 * p is NULL, the policy is off, or the worker has no CPUs.
 */
int rdmig_numa_pin_self(const struct rdmig_numa_plan *p, unsigned idx, struct rdmig_err *err);

/*
 * Bind [addr, addr+len) to kernel node `node` (mbind MPOL_BIND, moving pages
 * already there). Call before the memory is registered or touched.
 */
int rdmig_numa_bind(void *addr, uint64_t len, int node, struct rdmig_err *err);

/*
 * Apply the plan's region binding to region `r` at addr/len: skips (returns
 * 0) when the plan is NULL/off/trivial or has no node for r.
 */
int rdmig_numa_bind_region(const struct rdmig_numa_plan *p, unsigned r, void *addr, uint64_t len,
			   struct rdmig_err *err);

/*
 * Where [addr, addr+len) lives: samples up to `samples` pages with
 * move_pages(2) (nodes NULL = query), adds the bytes each sampled page
 * stands for to bytes[node] (array of RDMIG_TOPO_MAX_NODES entries indexed by
 * kernel node, may be NULL) and returns the node holding most, or -1 when no
 * sampled page is populated.
 */
int rdmig_numa_region_node(const void *addr, uint64_t len, unsigned samples, uint64_t *bytes);

/*
 * 0 when every CPU of `s` is one this process may run on (its affinity
 * mask), else -EINVAL naming the first that is not and the ones that are.
 */
int rdmig_cpuset_usable(const struct rdmig_cpuset *s, struct rdmig_err *err);

/* Kernel node of each page, for tests: nodes[i] >= 0, or a negative errno per page. */
int rdmig_numa_query_pages(const void *const *pages, unsigned n, int *nodes, struct rdmig_err *err);

#endif
