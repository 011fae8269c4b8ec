/* SPDX-License-Identifier: MIT */
/* rdmig doctor: memory: the memlock limit, NUMA, huge pages and dirty-page tracking. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "rdmig/migrate.h"
#include "doctor.h"
#include "fileutil.h"
#include "topo.h"
#include "units.h"

/* Pinned beyond guest RAM: queue buffers, control and staging areas. */
#define MEMLOCK_MARGIN	 (64ULL << 20)
#define CAP_IPC_LOCK_BIT 14

/* ---- memlock --------------------------------------------------------- */

/* CapEff bit; -1 if unknown. */
static int has_cap_eff(int bit)
{
	char line[256];
	unsigned long long caps;
	FILE *f = fopen("/proc/self/status", "re");
	int ret = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1) {
			ret = (caps >> bit) & 1;
			break;
		}
	fclose(f);
	return ret;
}

/*
 * The kernel checks capable(CAP_IPC_LOCK) in the initial user namespace: a
 * container's root holding it in its own namespace is still limited.
 */
static bool in_initial_userns(void)
{
	char line[128];
	unsigned long a, b, c;

	if (rdmig_read_line("/proc/self/uid_map", line, sizeof(line)) < 0)
		return true;
	return sscanf(line, "%lu %lu %lu", &a, &b, &c) == 3 && a == 0 && b == 0 &&
	       c == 4294967295UL;
}

static void fmt_limit(rlim_t v, char *buf, size_t len)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, len, "unlimited");
	else
		rdmig_fmt_size((uint64_t)v, buf, len);
}

void check_memlock(struct doctor *d)
{
	char cur[32], max[32], guest[32], need_s[32], fix[512];
	uint64_t need = d->guest_size + MEMLOCK_MARGIN;
	bool capped, init_ns;
	struct rlimit rl;
	int cap;

	section(d, "memlock", "memlock (pinning guest RAM for RDMA)");
	if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0) {
		finding(d, LV_WARN, NULL, "getrlimit(RLIMIT_MEMLOCK): %s", strerror(errno));
		return;
	}
	cap = has_cap_eff(CAP_IPC_LOCK_BIT);
	init_ns = in_initial_userns();
	fmt_limit(rl.rlim_cur, cur, sizeof(cur));
	fmt_limit(rl.rlim_max, max, sizeof(max));
	rdmig_fmt_size(d->guest_size, guest, sizeof(guest));
	rdmig_fmt_size(need, need_s, sizeof(need_s));
	cli_jset(d->sec, "soft_bytes",
		 rl.rlim_cur == RLIM_INFINITY ? json_null() : cli_juint(rl.rlim_cur));
	cli_jset(d->sec, "hard_bytes",
		 rl.rlim_max == RLIM_INFINITY ? json_null() : cli_juint(rl.rlim_max));
	cli_jset(d->sec, "unlimited", json_boolean(rl.rlim_cur == RLIM_INFINITY));
	cli_jset(d->sec, "ram_bytes", cli_juint(d->guest_size));
	cli_jset(d->sec, "needed_bytes", cli_juint(need));
	cli_jset(d->sec, "cap_ipc_lock", cap < 0 ? json_null() : json_boolean(cap == 1));
	cli_jset(d->sec, "initial_user_namespace", json_boolean(init_ns));

	capped = rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < need;
	if (cap == 1 && init_ns) {
		cli_jset(d->sec, "sufficient", json_true());
		finding(d, LV_OK, NULL,
			"CAP_IPC_LOCK held: RDMA registration is not limited by RLIMIT_MEMLOCK "
			"(soft limit %s)",
			cur);
		if (capped)
			detail(d,
			       "a process without CAP_IPC_LOCK (e.g. QEMU as a user) would be: "
			       "%s is below %s",
			       cur, need_s);
		return;
	}
	cli_jset(d->sec, "sufficient", json_boolean(!capped));
	if (cap == 1)
		detail(d, "CAP_IPC_LOCK is held only inside a user namespace: the kernel still "
			  "applies RLIMIT_MEMLOCK");
	if (!capped) {
		finding(d, LV_OK, NULL, "RLIMIT_MEMLOCK %s covers a %s guest plus %llu MiB margin",
			cur, guest, MEMLOCK_MARGIN >> 20);
		return;
	}
	snprintf(fix, sizeof(fix),
		 "ulimit -l unlimited (root is needed above the hard limit, %s); "
		 "'* - memlock unlimited' in /etc/security/limits.conf (new logins); "
		 "LimitMEMLOCK=infinity (systemd units)",
		 max);
	finding(d, d->rdma_devices ? LV_FAIL : LV_WARN, fix,
		"RLIMIT_MEMLOCK %s is below %s (a %s guest + margin): RDMA registration of "
		"guest RAM would fail with ENOMEM%s",
		cur, need_s, guest,
		d->rdma_devices ? " (the tcp backend is not affected)"
				: "; matters once an RDMA device is used");
}

/* ---- NUMA ------------------------------------------------------------ */

void check_numa(struct doctor *d)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_topo_summary t;
	char mem[32], freeb[32];
	json_t *jnodes, *jdevnodes;
	size_t i;
	json_t *v;

	section(d, "numa", "NUMA");
	if (rdmig_topo_summarize(&t, NULL, &err)) {
		finding(d, LV_WARN, NULL, "topology unknown: %s", rdmig_err_str(&err));
		return;
	}
	cli_jset(d->sec, "numa_nodes", json_integer(t.nodes));
	cli_jset(d->sec, "packages", json_integer(t.packages));
	cli_jset(d->sec, "cores", json_integer(t.cores));
	cli_jset(d->sec, "ncpus", json_integer(t.pus));
	jnodes = json_array();
	cli_jset(d->sec, "nodes", jnodes);
	for (int n = 0; n < t.nnode; n++) {
		json_t *jn = json_object();

		cli_jset(jn, "node", json_integer(t.node[n].os_index));
		cli_jset(jn, "ncpus", json_integer(t.node[n].pus));
		cli_jset(jn, "mem_bytes", cli_juint(t.node[n].mem_total));
		cli_jset(jn, "free_bytes",
			 t.node[n].mem_free >= 0 ? cli_juint((uint64_t)t.node[n].mem_free) : NULL);
		json_array_append_new(jnodes, jn);
	}

	if (t.nodes <= 1)
		finding(d, LV_OK, NULL,
			"1 NUMA node: placement is trivial (%d package(s), %d cores, %d PUs)",
			t.packages, t.cores, t.pus);
	else
		finding(d, LV_OK, NULL,
			"%d NUMA nodes, %d package(s), %d cores, %d PUs: workers are placed on "
			"the RDMA device's node",
			t.nodes, t.packages, t.cores, t.pus);
	for (int n = 0; n < t.nnode; n++) {
		rdmig_fmt_size(t.node[n].mem_total, mem, sizeof(mem));
		if (t.node[n].mem_free >= 0)
			rdmig_fmt_size((uint64_t)t.node[n].mem_free, freeb, sizeof(freeb));
		detail(d, "node%d: %d PUs, %s memory%s%s%s", t.node[n].os_index, t.node[n].pus, mem,
		       t.node[n].mem_free >= 0 ? " (" : "", t.node[n].mem_free >= 0 ? freeb : "",
		       t.node[n].mem_free >= 0 ? " free)" : "");
	}

	jdevnodes = json_object();
	cli_jset(d->sec, "device_nodes", jdevnodes);
	/* The devices check_rdma() found, with their drivers. */
	json_array_foreach(json_object_get(json_object_get(d->root, "rdma"), "devices"), i, v)
	{
		const char *name = json_string_value(json_object_get(v, "name"));
		const char *drv = json_string_value(json_object_get(v, "driver"));
		bool soft = drv && (!strcmp(drv, "rxe") || !strcmp(drv, "siw"));
		int node;

		if (!name)
			continue;
		node = rdmig_topo_ibdev_numa_node(name);
		cli_jset(jdevnodes, name, json_integer(node));
		if (t.nodes <= 1)
			continue;
		if (node >= 0)
			finding(d, LV_OK, NULL, "%s is on NUMA node %d", name, node);
		else if (soft)
			finding(d, LV_OK, NULL,
				"%s is a software device (%s) with no NUMA node of its own: "
				"workers are not tied to one node",
				name, drv);
		else
			finding(d, LV_WARN, NULL,
				"%s: NUMA node unknown (sysfs numa_node -1): workers cannot be "
				"placed next to it",
				name);
	}
}

/* ---- hugepages ------------------------------------------------------- */

void check_hugepages(struct doctor *d)
{
	long long total, freep, size_kb;
	char line[256], mode[32] = "", sz[32], pool[32];
	char *lb, *rb;

	section(d, "hugepages", "huge pages");
	total = proc_field("/proc/meminfo", "HugePages_Total");
	freep = proc_field("/proc/meminfo", "HugePages_Free");
	size_kb = proc_field("/proc/meminfo", "Hugepagesize");
	cli_jset(d->sec, "total", total >= 0 ? json_integer(total) : NULL);
	cli_jset(d->sec, "free", freep >= 0 ? json_integer(freep) : NULL);
	cli_jset(d->sec, "page_bytes", size_kb >= 0 ? json_integer(size_kb * 1024) : NULL);
	if (total < 0 || size_kb < 0) {
		finding(d, LV_OK, NULL, "hugetlb pages: not reported by /proc/meminfo");
	} else {
		rdmig_fmt_size((uint64_t)size_kb * 1024, sz, sizeof(sz));
		rdmig_fmt_size((uint64_t)(freep > 0 ? freep : 0) * (uint64_t)size_kb * 1024, pool,
			       sizeof(pool));
		if (total == 0)
			finding(d, LV_OK, NULL,
				"hugetlb pages: none reserved (%s pages); guests use normal or "
				"transparent huge pages",
				sz);
		else
			finding(d, LV_OK, NULL,
				"hugetlb pages: %lld of %lld free (%s pages, %s free)", freep,
				total, sz, pool);
	}

	/* "always [madvise] never": the bracketed word is the mode. */
	if (rdmig_read_line("/sys/kernel/mm/transparent_hugepage/enabled", line, sizeof(line)) ==
		0 &&
	    (lb = strchr(line, '[')) && (rb = strchr(lb, ']'))) {
		snprintf(mode, sizeof(mode), "%.*s", (int)(rb - lb - 1), lb + 1);
		cli_jset(d->sec, "thp", cli_jstr(mode));
		finding(d, LV_OK, NULL, "transparent huge pages: %s", mode);
	} else {
		cli_jset(d->sec, "thp", NULL);
		finding(d, LV_OK, NULL, "transparent huge pages: not available in this kernel");
	}
}

/* ---- dirty tracking -------------------------------------------------- */

void check_dirty(struct doctor *d)
{
	struct rdmig_err ue = RDMIG_ERR_INIT, se = RDMIG_ERR_INIT;
	enum rdmig_dirty_kind kind;
	int urc, src;

	section(d, "dirty", "dirty-page tracking");
	urc = rdmig_probe_uffd_wp_async(&ue);
	src = rdmig_probe_soft_dirty(&se);
	kind = rdmig_dirty_pick(urc, src, false);
	cli_jset(d->sec, "uffd_wp_async", json_boolean(urc == 0));
	cli_jset(d->sec, "uffd_wp_async_error", urc ? cli_jstr(rdmig_err_str(&ue)) : NULL);
	cli_jset(d->sec, "soft_dirty", json_boolean(src == 0));
	cli_jset(d->sec, "soft_dirty_error", src ? cli_jstr(rdmig_err_str(&se)) : NULL);
	cli_jset(d->sec, "dirty_source", cli_jstr(rdmig_dirty_kind_name(kind)));

	if (urc == 0)
		finding(d, LV_OK, NULL, "userfaultfd async write-protect + PAGEMAP_SCAN: works");
	else
		finding(d, LV_WARN,
			urc == -EOPNOTSUPP || urc == -ENOTTY ? "boot a Linux 6.7+ kernel" : NULL,
			"userfaultfd async write-protect + PAGEMAP_SCAN: %s", rdmig_err_str(&ue));
	if (src == 0)
		finding(d, LV_OK, NULL, "soft-dirty (clear_refs + pagemap bit 55): works");
	else
		finding(d, urc == 0 ? LV_OK : LV_WARN, NULL, "soft-dirty: %s%s", rdmig_err_str(&se),
			urc == 0 ? "; not needed, uffd-wp works" : "");

	switch (kind) {
	case RDMIG_DIRTY_UFFD_WP:
	case RDMIG_DIRTY_SOFT_DIRTY:
		finding(d, LV_OK, NULL, "dirty source for rdmig's own guests: %s",
			rdmig_dirty_kind_name(kind));
		break;
	case RDMIG_DIRTY_VMM_LOG:
	case RDMIG_DIRTY_NONE:
		finding(d, LV_WARN,
			"boot Linux 6.7+ (uffd-wp) or a kernel with CONFIG_MEM_SOFT_DIRTY=y",
			"dirty source: none from the kernel: rdmig's own guests migrate cold "
			"(stop and copy); library users can hand over their VMM's dirty bitmap "
			"(vmm-bitmap)");
		break;
	}
}
