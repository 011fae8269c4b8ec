/* SPDX-License-Identifier: MIT */
/*
 * Placement planner: topology + guest regions + device locality in, plan
 * out. Everything below rdmig_numa_topo_load() is pure and deterministic.
 */
#include "plan.h"

#include <errno.h>
#include <hwloc.h>
#include <jansson.h>
#include <stdarg.h>
#include <string.h>

#include "units.h"

/* ---- CPU sets ------------------------------------------------------------ */

void rdmig_cpuset_zero(struct rdmig_cpuset *s)
{
	memset(s, 0, sizeof(*s));
}

void rdmig_cpuset_set(struct rdmig_cpuset *s, int cpu)
{
	if (cpu >= 0 && cpu < RDMIG_NUMA_MAX_CPUS)
		s->bits[cpu / 64] |= 1ull << (cpu % 64);
}

bool rdmig_cpuset_isset(const struct rdmig_cpuset *s, int cpu)
{
	return cpu >= 0 && cpu < RDMIG_NUMA_MAX_CPUS && (s->bits[cpu / 64] >> (cpu % 64)) & 1;
}

int rdmig_cpuset_count(const struct rdmig_cpuset *s)
{
	int n = 0;

	for (size_t i = 0; i < sizeof(s->bits) / sizeof(s->bits[0]); i++)
		n += __builtin_popcountll(s->bits[i]);
	return n;
}

char *rdmig_cpuset_format(const struct rdmig_cpuset *s, char *buf, size_t len)
{
	size_t off = 0;
	int cpu = 0;

	if (!len)
		return buf;
	buf[0] = '\0';
	while (cpu < RDMIG_NUMA_MAX_CPUS) {
		int lo, hi, n;

		if (!rdmig_cpuset_isset(s, cpu)) {
			cpu++;
			continue;
		}
		lo = hi = cpu;
		while (hi + 1 < RDMIG_NUMA_MAX_CPUS && rdmig_cpuset_isset(s, hi + 1))
			hi++;
		n = lo == hi ? snprintf(buf + off, len - off, "%s%d", off ? "," : "", lo)
			     : snprintf(buf + off, len - off, "%s%d-%d", off ? "," : "", lo, hi);
		if (n < 0 || (size_t)n >= len - off) {
			buf[len - 1] = '\0';
			return buf;
		}
		off += (size_t)n;
		cpu = hi + 1;
	}
	return buf;
}

static int parse_cpu_num(const char *s, const char **end, struct rdmig_err *err)
{
	long v = 0;

	if (*s < '0' || *s > '9')
		return rdmig_seterr(err, -EINVAL, "expected a CPU number at '%s'", s);
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (*s++ - '0');
		if (v >= RDMIG_NUMA_MAX_CPUS)
			return rdmig_seterr(err, -EINVAL, "CPU number too large (at most %d)",
					    RDMIG_NUMA_MAX_CPUS - 1);
	}
	*end = s;
	return (int)v;
}

int rdmig_cpuset_parse(const char *s, struct rdmig_cpuset *out, struct rdmig_err *err)
{
	const char *p = s;

	rdmig_cpuset_zero(out);
	if (!s || !*s)
		return rdmig_seterr(err, -EINVAL, "empty CPU list");
	for (;;) {
		int lo, hi;

		lo = parse_cpu_num(p, &p, err);
		if (lo < 0)
			return rdmig_err_prefix(err, "CPU list '%s'", s), lo;
		hi = lo;
		if (*p == '-') {
			hi = parse_cpu_num(p + 1, &p, err);
			if (hi < 0)
				return rdmig_err_prefix(err, "CPU list '%s'", s), hi;
			if (hi < lo)
				return rdmig_seterr(err, -EINVAL,
						    "CPU list '%s': range %d-%d runs backwards", s,
						    lo, hi);
		}
		for (int c = lo; c <= hi; c++)
			rdmig_cpuset_set(out, c);
		if (!*p)
			return 0;
		if (*p != ',' || !p[1])
			return rdmig_seterr(
			    err, -EINVAL, "CPU list '%s': unexpected '%c' (use e.g. 0-3,8)", s, *p);
		p++;
	}
}

/* ---- policy -------------------------------------------------------------- */

int rdmig_numa_policy_parse(const char *s, enum rdmig_numa_policy *p, struct rdmig_cpuset *cpus,
			    struct rdmig_err *err)
{
	if (!s)
		return rdmig_seterr(err, -EINVAL, "--numa expects auto, off or a CPU list");
	if (!strcmp(s, "auto")) {
		*p = RDMIG_NUMA_AUTO;
		return 0;
	}
	if (!strcmp(s, "off")) {
		*p = RDMIG_NUMA_OFF;
		return 0;
	}
	if (rdmig_cpuset_parse(s, cpus, err) < 0) {
		rdmig_err_prefix(err, "--numa expects auto, off or a CPU list");
		return -EINVAL;
	}
	*p = RDMIG_NUMA_CPULIST;
	return 0;
}

const char *rdmig_numa_policy_name(enum rdmig_numa_policy p)
{
	switch (p) {
	case RDMIG_NUMA_AUTO:
		return "auto";
	case RDMIG_NUMA_CPULIST:
		return "cpulist";
	case RDMIG_NUMA_OFF:
		return "off";
	}
	return "?";
}

/* ---- topology from hwloc ------------------------------------------------- */

int rdmig_numa_topo_node_index(const struct rdmig_numa_topo *t, int os_index)
{
	for (int i = 0; i < t->nnode; i++)
		if (t->node[i].os_index == os_index)
			return i;
	return -1;
}

static void topo_mark_cpu(struct rdmig_numa_topo *t, int cpu, enum rdmig_cpu_state st)
{
	if (cpu < 0 || cpu >= RDMIG_NUMA_MAX_CPUS)
		return;
	t->cpu_state[cpu] = (uint8_t)st;
	if (cpu + 1 > t->cpu_slots)
		t->cpu_slots = cpu + 1;
}

int rdmig_numa_topo_load(struct rdmig_numa_topo *t, const char *xml_path, const char *synthetic,
			 struct rdmig_err *err)
{
	hwloc_const_bitmap_t complete, online;
	hwloc_topology_t topo;
	unsigned idx;
	int ret = 0, npu;

	memset(t, 0, sizeof(*t));
	for (int c = 0; c < RDMIG_NUMA_MAX_CPUS; c++) {
		t->cpu_node[c] = -1;
		t->cpu_core[c] = -1;
	}
	if (hwloc_topology_init(&topo) < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "hwloc_topology_init");
	if (xml_path && hwloc_topology_set_xml(topo, xml_path) < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "hwloc: load XML topology %s",
					 xml_path);
		goto out_destroy;
	}
	if (synthetic && hwloc_topology_set_synthetic(topo, synthetic) < 0) {
		ret =
		    rdmig_seterr(err, -EINVAL, "hwloc: invalid synthetic topology '%s'", synthetic);
		goto out_destroy;
	}
	if (hwloc_topology_load(topo) < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "hwloc_topology_load");
		goto out_destroy;
	}

	t->npackages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
	for (int i = 0; i < hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE); i++) {
		hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)i);
		hwloc_obj_t pkg;

		if (!obj || t->nnode == RDMIG_TOPO_MAX_NODES)
			break;
		pkg = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_PACKAGE, obj);
		t->node[t->nnode].os_index = (int)obj->os_index;
		t->node[t->nnode].package = pkg ? (int)pkg->logical_index : -1;
		t->node[t->nnode].mem = obj->attr ? obj->attr->numanode.local_memory : 0;
		t->nnode++;
	}

	/* Online PUs are objects; offline ones only appear in the complete set. */
	online = hwloc_topology_get_allowed_cpuset(topo);
	npu = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
	for (int i = 0; i < npu; i++) {
		hwloc_obj_t pu = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, (unsigned)i);
		hwloc_obj_t core;
		int cpu;

		if (!pu || pu->os_index >= RDMIG_NUMA_MAX_CPUS)
			continue;
		cpu = (int)pu->os_index;
		topo_mark_cpu(t, cpu,
			      hwloc_bitmap_isset(online, pu->os_index) ? RDMIG_CPU_ONLINE
								       : RDMIG_CPU_OFFLINE);
		core = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_CORE, pu);
		t->cpu_core[cpu] = core ? (int)core->logical_index : 100000 + cpu;
		t->cpu_smt[cpu] = core && pu->parent == core ? (uint8_t)pu->sibling_rank : 0;
		for (int n = 0; n < t->nnode; n++) {
			hwloc_obj_t no =
			    hwloc_get_numanode_obj_by_os_index(topo, (unsigned)t->node[n].os_index);

			if (no && no->cpuset && hwloc_bitmap_isset(no->cpuset, pu->os_index)) {
				t->cpu_node[cpu] = (int16_t)n;
				break;
			}
		}
	}
	complete = hwloc_topology_get_complete_cpuset(topo);
	hwloc_bitmap_foreach_begin(idx, complete)
	{
		if (idx < RDMIG_NUMA_MAX_CPUS && t->cpu_state[idx] == RDMIG_CPU_ABSENT)
			topo_mark_cpu(t, (int)idx, RDMIG_CPU_OFFLINE);
	}
	hwloc_bitmap_foreach_end();

	for (int c = 0; c < t->cpu_slots; c++)
		if (t->cpu_state[c] == RDMIG_CPU_ONLINE && t->cpu_node[c] >= 0)
			t->node[t->cpu_node[c]].ncpu++;

out_destroy:
	hwloc_topology_destroy(topo);
	return ret;
}

/* ---- planner ------------------------------------------------------------- */

static void add_note(struct rdmig_numa_plan *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_note(struct rdmig_numa_plan *p, const char *fmt, ...)
{
	va_list ap;

	if (p->nnotes == RDMIG_NUMA_MAX_NOTES)
		return;
	va_start(ap, fmt);
	vsnprintf(p->notes[p->nnotes++], RDMIG_NUMA_NOTE_MAX, fmt, ap);
	va_end(ap);
}

static void online_cpus(const struct rdmig_numa_topo *t, struct rdmig_cpuset *s)
{
	rdmig_cpuset_zero(s);
	for (int c = 0; c < t->cpu_slots; c++)
		if (t->cpu_state[c] == RDMIG_CPU_ONLINE)
			rdmig_cpuset_set(s, c);
}

/*
 * Candidate CPUs of node index n, best first: first PU of every core before
 * any SMT sibling, so that workers get cores of their own while there are
 * enough. With `avoid`, vCPU CPUs are left out.
 */
static int node_candidates(const struct rdmig_numa_topo *t, int n, const struct rdmig_cpuset *avoid,
			   int *out)
{
	int k = 0;

	for (int rank = 0; rank < 256; rank++) {
		bool more = false;

		for (int c = 0; c < t->cpu_slots; c++) {
			if (t->cpu_state[c] != RDMIG_CPU_ONLINE || t->cpu_node[c] != n)
				continue;
			if (avoid && rdmig_cpuset_isset(avoid, c))
				continue;
			if (t->cpu_smt[c] > rank)
				more = true;
			else if (t->cpu_smt[c] == rank)
				out[k++] = c;
		}
		if (!more)
			break;
	}
	return k;
}

/*
 * Split `channels` over nodes in proportion to weight[] (largest remainder).
 * Ties go to the device's node, then to the heavier node, then the lower index.
 */
static void apportion(const uint64_t *weight, int nnode, int dev_idx, unsigned channels,
		      unsigned *count)
{
	unsigned __int128 total = 0, rem[RDMIG_TOPO_MAX_NODES];
	unsigned given = 0;

	for (int n = 0; n < nnode; n++)
		total += weight[n];
	for (int n = 0; n < nnode; n++) {
		unsigned __int128 share = (unsigned __int128)channels * weight[n];

		count[n] = total ? (unsigned)(share / total) : 0;
		rem[n] = total ? share % total : 0;
		given += count[n];
	}
	while (given < channels) {
		int best = -1;

		for (int n = 0; n < nnode; n++) {
			if (!weight[n])
				continue;
			if (best < 0 || rem[n] > rem[best] ||
			    (rem[n] == rem[best] &&
			     ((n == dev_idx) > (best == dev_idx) ||
			      ((n == dev_idx) == (best == dev_idx) && weight[n] > weight[best]))))
				best = n;
		}
		if (best < 0)
			break;
		count[best]++;
		rem[best] = 0; /* each node gets at most one extra */
		given++;
	}
}

static int comp_vector_for(const struct rdmig_numa_input *in, unsigned i, int node,
			   unsigned rank_on_node)
{
	int nlocal = 0, k = 0;

	if (in->num_comp_vectors <= 0)
		return -1;
	if (in->comp_vector_node && node >= 0) {
		for (int v = 0; v < in->num_comp_vectors; v++)
			nlocal += in->comp_vector_node[v] == node;
		if (nlocal > 0) {
			unsigned want = rank_on_node % (unsigned)nlocal;

			for (int v = 0; v < in->num_comp_vectors; v++)
				if (in->comp_vector_node[v] == node && (unsigned)k++ == want)
					return v;
		}
	}
	return (int)(i % (unsigned)in->num_comp_vectors);
}

static int plan_cpulist(const struct rdmig_numa_input *in, struct rdmig_numa_plan *p,
			struct rdmig_err *err)
{
	const struct rdmig_numa_topo *t = in->topo;
	int cpus[RDMIG_NUMA_MAX_CPUS], ncpu = 0;
	struct rdmig_cpuset on;
	char buf[256];

	online_cpus(t, &on);
	for (int c = 0; c < RDMIG_NUMA_MAX_CPUS; c++) {
		if (!rdmig_cpuset_isset(in->cpulist, c))
			continue;
		if (c >= t->cpu_slots || t->cpu_state[c] == RDMIG_CPU_ABSENT)
			return rdmig_seterr(err, -EINVAL,
					    "CPU %d does not exist on this host (CPUs %s)", c,
					    rdmig_cpuset_format(&on, buf, sizeof(buf)));
		if (t->cpu_state[c] != RDMIG_CPU_ONLINE)
			return rdmig_seterr(err, -EINVAL, "CPU %d is not online (online CPUs: %s)",
					    c, rdmig_cpuset_format(&on, buf, sizeof(buf)));
		if (in->avoid && rdmig_cpuset_isset(in->avoid, c))
			add_note(p, "CPU %d also runs a guest vCPU (as the CPU list asks)", c);
		cpus[ncpu++] = c;
	}
	if (!ncpu)
		return rdmig_seterr(err, -EINVAL, "the CPU list is empty");
	for (unsigned i = 0; i < in->channels; i++) {
		struct rdmig_numa_worker *w = &p->w[i];
		int c = cpus[i % (unsigned)ncpu];

		rdmig_cpuset_set(&w->cpus, c);
		w->node = t->cpu_node[c] >= 0 ? t->node[t->cpu_node[c]].os_index : -1;
		w->shared = in->channels > (unsigned)ncpu;
		if (t->cpu_node[c] >= 0)
			p->node_workers[t->cpu_node[c]]++;
	}
	if (in->channels > (unsigned)ncpu)
		add_note(p, "%u workers on %d listed CPU(s): workers share CPUs", in->channels,
			 ncpu);
	return 0;
}

static void plan_auto(const struct rdmig_numa_input *in, struct rdmig_numa_plan *p)
{
	const struct rdmig_numa_topo *t = in->topo;
	int cand[RDMIG_NUMA_MAX_CPUS];
	uint64_t weight[RDMIG_TOPO_MAX_NODES] = {0}, known = 0, unknown = 0;
	unsigned count[RDMIG_TOPO_MAX_NODES] = {0};
	int dev_idx = in->dev_node >= 0 ? rdmig_numa_topo_node_index(t, in->dev_node) : -1;
	unsigned next = 0;
	char sz[32];

	if (dev_idx >= 0 && !t->node[dev_idx].ncpu)
		dev_idx = -1; /* a CPU-less node cannot host a worker */
	for (unsigned r = 0; r < in->nregions; r++) {
		int n = in->regions[r].node >= 0
			    ? rdmig_numa_topo_node_index(t, in->regions[r].node)
			    : -1;

		if (n >= 0 && t->node[n].ncpu) {
			weight[n] += in->regions[r].len;
			known += in->regions[r].len;
		} else {
			unknown += in->regions[r].len;
		}
	}
	if (!known) {
		/* Nothing known about the memory: the NIC's node, else every node. */
		for (int n = 0; n < t->nnode; n++)
			weight[n] = (dev_idx < 0 || n == dev_idx) && t->node[n].ncpu ? 1 : 0;
		if (in->nregions && !p->trivial)
			add_note(p, "guest RAM node unknown: workers go to %s",
				 dev_idx >= 0 ? "the device's node" : "every node evenly");
	} else if (unknown) {
		add_note(p, "%s of guest RAM on unknown or CPU-less nodes is not counted",
			 rdmig_fmt_size(unknown, sz, sizeof(sz)));
	}
	apportion(weight, t->nnode, dev_idx, in->channels, count);

	for (int n = 0; n < t->nnode; n++) {
		int k;
		bool used_avoided = false;

		if (!count[n])
			continue;
		k = node_candidates(t, n, in->avoid, cand);
		if (!k) {
			k = node_candidates(t, n, NULL, cand);
			used_avoided = k > 0;
		}
		if (used_avoided)
			add_note(p, "node %d: every CPU runs a guest vCPU; workers share them",
				 t->node[n].os_index);
		if (p->trivial) {
			/* One node: keep workers off vCPUs, let the scheduler do the rest. */
			struct rdmig_cpuset all;

			rdmig_cpuset_zero(&all);
			for (int j = 0; j < k; j++)
				rdmig_cpuset_set(&all, cand[j]);
			for (unsigned j = 0; j < count[n]; j++) {
				p->w[next].node = t->node[n].os_index;
				p->w[next].cpus = all;
				next++;
			}
			p->node_workers[n] = count[n];
			continue;
		}
		for (unsigned j = 0; j < count[n]; j++) {
			struct rdmig_numa_worker *w = &p->w[next++];

			w->node = t->node[n].os_index;
			rdmig_cpuset_set(&w->cpus, cand[j % (unsigned)k]);
			w->shared = count[n] > (unsigned)k;
		}
		p->node_workers[n] = count[n];
		if (count[n] > (unsigned)k)
			add_note(p, "node %d: %u workers on %d CPU(s): workers share CPUs",
				 t->node[n].os_index, count[n], k);
	}
}

int rdmig_numa_plan(const struct rdmig_numa_input *in, struct rdmig_numa_plan *p,
		    struct rdmig_err *err)
{
	const struct rdmig_numa_topo *t = in->topo;
	unsigned rank[RDMIG_TOPO_MAX_NODES] = {0};
	int ret = 0;

	memset(p, 0, sizeof(*p));
	if (!t || t->nnode < 1)
		return rdmig_seterr(err, -EINVAL, "placement needs a topology with a NUMA node");
	if (in->channels < 1 || in->channels > RDMIG_NUMA_MAX_WORKERS)
		return rdmig_seterr(err, -EINVAL, "channels must be 1..%d, got %u",
				    RDMIG_NUMA_MAX_WORKERS, in->channels);
	if (in->nregions > RDMIG_NUMA_MAX_REGIONS || (in->nregions && !in->regions))
		return rdmig_seterr(err, -EINVAL, "too many guest regions (%u, at most %d)",
				    in->nregions, RDMIG_NUMA_MAX_REGIONS);
	if (in->policy == RDMIG_NUMA_CPULIST && !in->cpulist)
		return rdmig_seterr(err, -EINVAL, "CPU list policy without a CPU list");

	p->policy = in->policy;
	p->nnode = t->nnode;
	p->dev_node = in->dev_node;
	p->num_comp_vectors = in->num_comp_vectors > 0 ? in->num_comp_vectors : 0;
	if (in->avoid)
		p->avoid = *in->avoid;
	p->trivial = t->nnode == 1;
	p->nworkers = in->channels;
	for (int n = 0; n < t->nnode; n++)
		p->node_os[n] = t->node[n].os_index;
	for (unsigned i = 0; i < in->channels; i++) {
		p->w[i].chan = i;
		p->w[i].node = -1;
	}
	if (p->trivial && in->policy != RDMIG_NUMA_OFF)
		add_note(p, "1 NUMA node: placement is trivial");
	if (in->dev_node >= 0 && rdmig_numa_topo_node_index(t, in->dev_node) < 0)
		add_note(p, "device node %d is not in this topology; ignored", in->dev_node);

	switch (in->policy) {
	case RDMIG_NUMA_OFF:
		add_note(p, "placement off: workers are not pinned, memory is not bound");
		break;
	case RDMIG_NUMA_CPULIST:
		ret = plan_cpulist(in, p, err);
		if (ret) {
			rdmig_err_prefix(err, "--numa");
			return ret;
		}
		break;
	case RDMIG_NUMA_AUTO:
		plan_auto(in, p);
		break;
	default:
		return rdmig_seterr(err, -EINVAL, "unknown placement policy %d", (int)in->policy);
	}

	for (unsigned i = 0; i < in->channels; i++) {
		int n = p->w[i].node >= 0 ? rdmig_numa_topo_node_index(t, p->w[i].node) : -1;

		p->w[i].comp_vector = comp_vector_for(in, i, p->w[i].node, n >= 0 ? rank[n] : i);
		if (n >= 0)
			rank[n]++;
	}

	p->nregions = in->nregions;
	for (unsigned r = 0; r < in->nregions; r++) {
		int node = in->regions[r].node;

		p->region_len[r] = in->regions[r].len;
		p->region_node[r] = -1;
		if (node >= 0 && rdmig_numa_topo_node_index(t, node) >= 0)
			p->node_bytes[rdmig_numa_topo_node_index(t, node)] += in->regions[r].len;
		if (in->policy == RDMIG_NUMA_OFF || p->trivial || node < 0)
			continue;
		if (rdmig_numa_topo_node_index(t, node) < 0) {
			add_note(p, "region %u: node %d does not exist here; left unbound", r,
				 node);
			continue;
		}
		p->region_node[r] = node;
	}
	return 0;
}

/* ---- printing ------------------------------------------------------------ */

static void node_cpus(const struct rdmig_numa_topo *t, int n, struct rdmig_cpuset *s)
{
	rdmig_cpuset_zero(s);
	for (int c = 0; c < t->cpu_slots; c++)
		if (t->cpu_state[c] == RDMIG_CPU_ONLINE && t->cpu_node[c] == n)
			rdmig_cpuset_set(s, c);
}

void rdmig_numa_plan_print(FILE *out, const struct rdmig_numa_plan *p,
			   const struct rdmig_numa_topo *t)
{
	char buf[512], sz[32];
	struct rdmig_cpuset s;

	if (t) {
		int ncpu = 0;

		for (int c = 0; c < t->cpu_slots; c++)
			ncpu += t->cpu_state[c] == RDMIG_CPU_ONLINE;
		fprintf(out, "topology: %d package(s), %d NUMA node(s), %d online CPU(s)\n",
			t->npackages, t->nnode, ncpu);
		for (int n = 0; n < t->nnode; n++) {
			node_cpus(t, n, &s);
			fprintf(out, "  node %-3d %-10s CPUs %s", t->node[n].os_index,
				rdmig_fmt_size(t->node[n].mem, sz, sizeof(sz)),
				t->node[n].ncpu ? rdmig_cpuset_format(&s, buf, sizeof(buf))
						: "(none)");
			if (t->node[n].package >= 0)
				fprintf(out, ", package %d", t->node[n].package);
			fprintf(out, "\n");
		}
	}
	fprintf(out, "plan: policy %s, %u worker(s), device node %s",
		rdmig_numa_policy_name(p->policy), p->nworkers, p->dev_node >= 0 ? "" : "unknown");
	if (p->dev_node >= 0)
		fprintf(out, "%d", p->dev_node);
	if (p->num_comp_vectors > 0)
		fprintf(out, ", %d completion vector(s)", p->num_comp_vectors);
	fprintf(out, "\n");
	if (rdmig_cpuset_count(&p->avoid))
		fprintf(out, "  vCPU CPUs %s (workers kept off them where possible)\n",
			rdmig_cpuset_format(&p->avoid, buf, sizeof(buf)));
	for (int n = 0; n < p->nnode; n++) {
		if (!p->node_workers[n] && !p->node_bytes[n])
			continue;
		fprintf(out, "  node %-3d %u worker(s), guest RAM %s\n", p->node_os[n],
			p->node_workers[n], rdmig_fmt_size(p->node_bytes[n], sz, sizeof(sz)));
	}
	for (unsigned i = 0; i < p->nworkers; i++) {
		const struct rdmig_numa_worker *w = &p->w[i];

		fprintf(out, "  worker %-2u channel %-2u ", i, w->chan);
		if (w->node >= 0)
			fprintf(out, "node %-3d ", w->node);
		else
			fprintf(out, "node -   ");
		fprintf(out, "CPUs %-12s",
			rdmig_cpuset_count(&w->cpus)
			    ? rdmig_cpuset_format(&w->cpus, buf, sizeof(buf))
			    : "any");
		if (w->comp_vector >= 0)
			fprintf(out, " vector %d", w->comp_vector);
		else
			fprintf(out, " vector default");
		fprintf(out, "%s\n", w->shared ? " (shared CPU)" : "");
	}
	for (unsigned r = 0; r < p->nregions; r++) {
		fprintf(out, "  region %-2u %-10s ", r,
			rdmig_fmt_size(p->region_len[r], sz, sizeof(sz)));
		if (p->region_node[r] >= 0)
			fprintf(out, "bind to node %d\n", p->region_node[r]);
		else
			fprintf(out, "not bound\n");
	}
	for (unsigned i = 0; i < p->nnotes; i++)
		fprintf(out, "note: %s\n", p->notes[i]);
}

json_t *rdmig_numa_plan_to_json(const struct rdmig_numa_plan *p, const struct rdmig_numa_topo *t)
{
	json_t *root = json_object(), *arr;
	char buf[512];
	struct rdmig_cpuset s;

	if (!root)
		return NULL;
	if (t) {
		json_t *topo = json_object(), *nodes = json_array();

		for (int n = 0; n < t->nnode; n++) {
			node_cpus(t, n, &s);
			json_array_append_new(
			    nodes,
			    json_pack("{s:i, s:I, s:s, s:i, s:i}", "node", t->node[n].os_index,
				      "mem_bytes", (json_int_t)t->node[n].mem, "cpus",
				      rdmig_cpuset_format(&s, buf, sizeof(buf)), "ncpus",
				      t->node[n].ncpu, "package", t->node[n].package));
		}
		json_object_set_new(topo, "packages", json_integer(t->npackages));
		json_object_set_new(topo, "nodes", nodes);
		json_object_set_new(root, "topology", topo);
	}
	json_object_set_new(root, "policy", json_string(rdmig_numa_policy_name(p->policy)));
	json_object_set_new(root, "numa_nodes", json_integer(p->nnode));
	json_object_set_new(root, "trivial", json_boolean(p->trivial));
	json_object_set_new(root, "device_node",
			    p->dev_node >= 0 ? json_integer(p->dev_node) : json_null());
	json_object_set_new(root, "comp_vectors",
			    p->num_comp_vectors > 0 ? json_integer(p->num_comp_vectors)
						    : json_null());
	json_object_set_new(root, "vcpu_cpus",
			    rdmig_cpuset_count(&p->avoid)
				? json_string(rdmig_cpuset_format(&p->avoid, buf, sizeof(buf)))
				: json_null());
	arr = json_array();
	for (int n = 0; n < p->nnode; n++)
		json_array_append_new(arr, json_pack("{s:i, s:i, s:I}", "node", p->node_os[n],
						     "workers", (int)p->node_workers[n],
						     "guest_bytes", (json_int_t)p->node_bytes[n]));
	json_object_set_new(root, "nodes", arr);
	arr = json_array();
	for (unsigned i = 0; i < p->nworkers; i++) {
		const struct rdmig_numa_worker *w = &p->w[i];

		json_array_append_new(
		    arr, json_pack("{s:i, s:[i], s:o, s:s, s:o, s:b}", "worker", (int)i, "channels",
				   (int)w->chan, "node",
				   w->node >= 0 ? json_integer(w->node) : json_null(), "cpus",
				   rdmig_cpuset_format(&w->cpus, buf, sizeof(buf)), "comp_vector",
				   w->comp_vector >= 0 ? json_integer(w->comp_vector) : json_null(),
				   "shared", w->shared));
	}
	json_object_set_new(root, "workers", arr);
	arr = json_array();
	for (unsigned r = 0; r < p->nregions; r++)
		json_array_append_new(arr, json_pack("{s:i, s:I, s:o}", "region", (int)r, "bytes",
						     (json_int_t)p->region_len[r], "bind_node",
						     p->region_node[r] >= 0
							 ? json_integer(p->region_node[r])
							 : json_null()));
	json_object_set_new(root, "regions", arr);
	arr = json_array();
	for (unsigned i = 0; i < p->nnotes; i++)
		json_array_append_new(arr, json_string(p->notes[i]));
	json_object_set_new(root, "notes", arr);
	return root;
}

int rdmig_numa_plan_print_json(FILE *out, const struct rdmig_numa_plan *p,
			       const struct rdmig_numa_topo *t)
{
	json_t *j = rdmig_numa_plan_to_json(p, t);
	int ret;

	if (!j)
		return -ENOMEM;
	ret = json_dumpf(j, out, JSON_COMPACT) < 0 ? -EIO : 0;
	json_decref(j);
	return ret;
}
