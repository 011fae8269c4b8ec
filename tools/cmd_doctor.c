/* SPDX-License-Identifier: MIT */
/*
 * rdmig doctor: what this host offers a migration, finding by finding, each
 * [ok], [warn] or [fail] with the fix where one applies; --json for scripts.
 *
 * Every check records its facts into one JSON document as it goes; the text
 * report is printed alongside, the JSON one at the end. Checks never stop
 * the report: a check that cannot run becomes a finding.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <infiniband/verbs.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fileutil.h"
#include "cli.h"
#include "dirty_probe.h"
#include "rdmig/err.h"
#include "rdmig/version.h"
#include "topo.h"
#include "units.h"

extern char **environ;

#define CMD		   "doctor"
#define DEFAULT_GUEST_SIZE (1ULL << 30)
/* Pinned beyond guest RAM: queue buffers, control and staging areas. */
#define MEMLOCK_MARGIN	 (64ULL << 20)
#define CAP_IPC_LOCK_BIT 14
#define QEMU_BIN	 "qemu-system-x86_64"
/* Generous: under TCG in the test VM, QEMU loads ~100 libraries over 9p. */
#define SPAWN_TIMEOUT_MS 30000

enum level { LV_OK, LV_WARN, LV_FAIL };

static const char *const level_key[] = {"ok", "warn", "fail"};
static const char *const level_tag[] = {"[ok]  ", "[warn]", "[fail]"};

struct doctor {
	bool json;
	uint64_t guest_size;
	int count[3];
	json_t *root;	  /* the whole report */
	json_t *findings; /* array of {section, level, what, fix} */
	json_t *sec;	  /* the current section's facts */
	const char *sec_key;
	int rdma_devices; /* usable through libibverbs */
};

/* ---- output ---------------------------------------------------------- */

/* A JSON string, or null for NULL or text that is not UTF-8. */
static json_t *jstr(const char *s)
{
	json_t *j = s ? json_string(s) : NULL;

	return j ? j : json_null();
}

/* JSON integers are signed 64-bit: larger values (max_mr_size) become reals. */
static json_t *juint(uint64_t v)
{
	return v <= (uint64_t)LLONG_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

static void set(json_t *obj, const char *key, json_t *val)
{
	json_object_set_new(obj, key, val ? val : json_null());
}

static void section(struct doctor *d, const char *key, const char *title)
{
	d->sec_key = key;
	d->sec = json_object();
	json_object_set_new(d->root, key, d->sec);
	if (!d->json)
		printf("\n== %s\n", title);
}

static void finding(struct doctor *d, enum level lv, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finding(struct doctor *d, enum level lv, const char *fix, const char *fmt, ...)
{
	char what[1024];
	json_t *f;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	d->count[lv]++;
	f = json_object();
	set(f, "section", jstr(d->sec_key));
	set(f, "level", jstr(level_key[lv]));
	set(f, "what", jstr(what));
	set(f, "fix", jstr(fix));
	json_array_append_new(d->findings, f);
	if (!d->json) {
		printf("%s %s\n", level_tag[lv], what);
		if (fix)
			printf("       fix: %s\n", fix);
	}
}

/* An indented fact under the last finding; text report only (JSON has the data). */
static void detail(struct doctor *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void detail(struct doctor *d, const char *fmt, ...)
{
	va_list ap;

	if (d->json)
		return;
	fputs("       ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ---- small file helpers ---------------------------------------------- */

static bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int count_glob(const char *pattern)
{
	glob_t g;
	int n;

	if (glob(pattern, 0, NULL, &g) != 0)
		return 0;
	n = (int)g.gl_pathc;
	globfree(&g);
	return n;
}

/* "Key:   value kB" from a /proc file such as /proc/meminfo; -1 if absent. */
static long long proc_field(const char *file, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long long v = -1;
	FILE *f = fopen(file, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoll(line + klen + 1, NULL, 0);
			break;
		}
	fclose(f);
	return v;
}

/* ---- environment ----------------------------------------------------- */

static bool cpu_has_hypervisor_flag(void)
{
	char line[8192], *tok, *save;
	bool found = false;
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		for (tok =
			 strtok_r(strchr(line, ':') ? strchr(line, ':') + 1 : line, " \t\n", &save);
		     tok; tok = strtok_r(NULL, " \t\n", &save))
			if (!strcmp(tok, "hypervisor"))
				found = true;
		break; /* the first CPU speaks for all */
	}
	fclose(f);
	return found;
}

struct mounts_info {
	char root_fstype[64];
	bool has_9p;
};

static void scan_mounts(struct mounts_info *m)
{
	char dev[512], mnt[512], type[64];
	FILE *f = fopen("/proc/mounts", "re");
	int c;

	memset(m, 0, sizeof(*m));
	if (!f)
		return;
	while (fscanf(f, "%511s %511s %63s", dev, mnt, type) == 3) {
		if (!strcmp(mnt, "/"))
			snprintf(m->root_fstype, sizeof(m->root_fstype), "%s",
				 type); /* last wins */
		if (!strcmp(type, "9p"))
			m->has_9p = true;
		while ((c = fgetc(f)) != EOF && c != '\n')
			;
	}
	fclose(f);
}

static void check_environment(struct doctor *d)
{
	char vendor[128], product[128];
	static const char *const vm_env[] = {"RDMIG_IN_RXE_VM", "RDMIG_RXE_VM"};
	const char *env_name = NULL;
	bool hv, have_vendor, have_product, env_vm, root_overlay, test_vm;
	struct mounts_info m;
	struct utsname u;

	section(d, "environment", "environment");
	if (uname(&u) == 0) {
		set(d->sec, "kernel", jstr(u.release));
		set(d->sec, "machine", jstr(u.machine));
		finding(d, LV_OK, NULL, "kernel %s (%s)", u.release, u.machine);
	} else {
		finding(d, LV_WARN, NULL, "uname: %s", strerror(errno));
	}

	hv = cpu_has_hypervisor_flag();
	have_vendor = rdmig_read_line("/sys/class/dmi/id/sys_vendor", vendor, sizeof(vendor)) == 0;
	have_product =
	    rdmig_read_line("/sys/class/dmi/id/product_name", product, sizeof(product)) == 0;
	set(d->sec, "virtualized", json_boolean(hv));
	set(d->sec, "sys_vendor", have_vendor ? jstr(vendor) : NULL);
	set(d->sec, "product_name", have_product ? jstr(product) : NULL);
	finding(d, LV_OK, NULL, "%s (cpuid hypervisor bit %s; DMI vendor %s, product %s)",
		hv ? "virtual machine" : "bare metal", hv ? "set" : "clear",
		have_vendor ? vendor : "unknown", have_product ? product : "unknown");

	/*
	 * soft-roce-setup/rxe-vm: the host's root read-only over 9p under a tmpfs
	 * overlay, and a marker in the environment (RDMIG_IN_RXE_VM today; the
	 * shorter RDMIG_RXE_VM is accepted too).
	 */
	scan_mounts(&m);
	for (size_t i = 0; i < sizeof(vm_env) / sizeof(vm_env[0]) && !env_name; i++)
		if (getenv(vm_env[i]) && !strcmp(getenv(vm_env[i]), "1"))
			env_name = vm_env[i];
	env_vm = env_name != NULL;
	root_overlay = !strcmp(m.root_fstype, "overlay");
	test_vm = env_vm || (root_overlay && m.has_9p);
	set(d->sec, "rdmig_test_vm", json_boolean(test_vm));
	set(d->sec, "root_fstype", jstr(m.root_fstype[0] ? m.root_fstype : NULL));
	set(d->sec, "has_9p", json_boolean(m.has_9p));
	set(d->sec, "test_vm_env", jstr(env_name));
	if (test_vm)
		finding(d, LV_OK, NULL, "inside rdmig's SoftRoCE test VM (%s%sroot fs %s%s)",
			env_vm ? env_name : "", env_vm ? "=1, " : "",
			m.root_fstype[0] ? m.root_fstype : "unknown",
			m.has_9p ? ", 9p mounted" : "");
	else
		finding(d, LV_OK, NULL, "host, not rdmig's SoftRoCE test VM (root fs %s%s)",
			m.root_fstype[0] ? m.root_fstype : "unknown",
			root_overlay ? ", an overlay without 9p: a container?" : "");
}

/* ---- RDMA devices ---------------------------------------------------- */

static const char *transport_str(enum ibv_transport_type t)
{
	switch (t) {
	case IBV_TRANSPORT_IB:
		return "InfiniBand";
	case IBV_TRANSPORT_IWARP:
		return "iWARP";
	case IBV_TRANSPORT_USNIC:
		return "usNIC";
	case IBV_TRANSPORT_USNIC_UDP:
		return "usNIC-UDP";
	case IBV_TRANSPORT_UNSPECIFIED:
		return "unspecified";
	default:
		return "unknown";
	}
}

static const char *link_layer_str(uint8_t ll)
{
	switch (ll) {
	case IBV_LINK_LAYER_INFINIBAND:
		return "InfiniBand";
	case IBV_LINK_LAYER_ETHERNET:
		return "Ethernet";
	default:
		return "unspecified";
	}
}

static int mtu_bytes(enum ibv_mtu m)
{
	return m >= IBV_MTU_256 && m <= IBV_MTU_4096 ? 128 << m : 0;
}

/*
 * Kernel driver of an RDMA device: the bus device's driver (mlx5_core,
 * ...). Software devices (rxe, siw) sit on a netdev instead and are known
 * by their name.
 */
static void ib_driver(const char *name, char *buf, size_t len)
{
	char path[PATH_MAX], link[PATH_MAX];
	ssize_t n;

	if (!strncmp(name, "rxe", 3) || !strncmp(name, "siw", 3)) {
		snprintf(buf, len, "%.3s", name);
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device/driver", name);
	n = readlink(path, link, sizeof(link) - 1);
	if (n > 0) {
		link[n] = '\0';
		if (snprintf(buf, len, "%s", strrchr(link, '/') ? strrchr(link, '/') + 1 : link) <
		    (int)len)
			return;
	}
	snprintf(buf, len, "unknown");
}

static const char *driver_desc(const char *drv)
{
	if (!strcmp(drv, "rxe"))
		return " (SoftRoCE)";
	if (!strcmp(drv, "siw"))
		return " (soft iWARP)";
	return "";
}

static void fmt_gid(const union ibv_gid *gid, char *buf, size_t len)
{
	if (!inet_ntop(AF_INET6, gid->raw, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

static bool gid_is_zero(const union ibv_gid *gid)
{
	for (size_t i = 0; i < sizeof(gid->raw); i++)
		if (gid->raw[i])
			return false;
	return true;
}

static const char *port_state_str(enum ibv_port_state st)
{
	switch (st) {
	case IBV_PORT_NOP:
		return "PORT_NOP";
	case IBV_PORT_DOWN:
		return "PORT_DOWN";
	case IBV_PORT_INIT:
		return "PORT_INIT";
	case IBV_PORT_ARMED:
		return "PORT_ARMED";
	case IBV_PORT_ACTIVE:
		return "PORT_ACTIVE";
	case IBV_PORT_ACTIVE_DEFER:
		return "PORT_ACTIVE_DEFER";
	}
	return "PORT_UNKNOWN";
}

/* fe80::/10: a GID made from the MAC, present with or without an IP address. */
static bool gid_is_link_local(const union ibv_gid *gid)
{
	return gid->raw[0] == 0xfe && (gid->raw[1] & 0xc0) == 0x80;
}

#define GID_JSON_MAX 64 /* entries listed in JSON; the scan itself covers the table */

struct gid_scan {
	int v2_index;	    /* first RoCE v2 GID, -1 if none */
	int routable_index; /* first RoCE v2 GID from an IP address, -1 if none */
	char v2[INET6_ADDRSTRLEN], routable[INET6_ADDRSTRLEN];
};

/* Walk the GID table once: JSON list of the used entries, and the two we report. */
static void scan_gids(struct ibv_context *ctx, const char *name, uint8_t p, int len, json_t *jgids,
		      struct gid_scan *gs)
{
	char type[32], str[INET6_ADDRSTRLEN];
	union ibv_gid gid;
	size_t listed = 0;

	gs->v2_index = gs->routable_index = -1;
	for (int i = 0; i < len; i++) {
		if (ibv_query_gid(ctx, p, i, &gid) || gid_is_zero(&gid))
			continue;
		fmt_gid(&gid, str, sizeof(str));
		/* The kernel answers EINVAL for entries without a type: unused ones. */
		if (rdmig_read_linef(type, sizeof(type),
				     "/sys/class/infiniband/%s/ports/%u/gid_attrs/types/%d", name,
				     p, i) < 0)
			type[0] = '\0';
		if (listed++ < GID_JSON_MAX) {
			json_t *jg = json_object();

			set(jg, "index", json_integer(i));
			set(jg, "gid", jstr(str));
			set(jg, "type", type[0] ? jstr(type) : NULL);
			json_array_append_new(jgids, jg);
		}
		if (strcmp(type, "RoCE v2"))
			continue;
		if (gs->v2_index < 0) {
			gs->v2_index = i;
			memcpy(gs->v2, str, sizeof(str));
		}
		if (gs->routable_index < 0 && !gid_is_link_local(&gid)) {
			gs->routable_index = i;
			memcpy(gs->routable, str, sizeof(str));
		}
	}
}

static void check_port(struct doctor *d, struct ibv_context *ctx, const char *name, uint8_t p,
		       json_t *jports)
{
	char ndev[64], type0[32], g0[INET6_ADDRSTRLEN], fix[192];
	const char *ifname;
	struct ibv_port_attr pa;
	union ibv_gid gid;
	struct gid_scan gs;
	json_t *jp, *jgids;
	bool eth, have_g0;
	int ret;

	jp = json_object();
	json_array_append_new(jports, jp);
	set(jp, "port", json_integer(p));
	ret = ibv_query_port(ctx, p, &pa);
	if (ret) {
		finding(d, LV_FAIL, NULL, "%s port %u: ibv_query_port: %s", name, p, strerror(ret));
		return;
	}
	eth = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
	if (rdmig_read_linef(ndev, sizeof(ndev),
			     "/sys/class/infiniband/%s/ports/%u/gid_attrs/ndevs/0", name, p) < 0)
		ndev[0] = '\0';
	ifname = ndev[0] ? ndev : "IF";

	have_g0 = ibv_query_gid(ctx, p, 0, &gid) == 0;
	if (have_g0)
		fmt_gid(&gid, g0, sizeof(g0));
	if (rdmig_read_linef(type0, sizeof(type0),
			     "/sys/class/infiniband/%s/ports/%u/gid_attrs/types/0", name, p) < 0)
		type0[0] = '\0';
	jgids = json_array();
	scan_gids(ctx, name, p, pa.gid_tbl_len, jgids, &gs);

	set(jp, "state", jstr(port_state_str(pa.state)));
	set(jp, "active", json_boolean(pa.state == IBV_PORT_ACTIVE));
	set(jp, "active_mtu", json_integer(mtu_bytes(pa.active_mtu)));
	set(jp, "max_mtu", json_integer(mtu_bytes(pa.max_mtu)));
	set(jp, "link_layer", jstr(link_layer_str(pa.link_layer)));
	set(jp, "netdev", ndev[0] ? jstr(ndev) : NULL);
	set(jp, "gid_table_len", json_integer(pa.gid_tbl_len));
	set(jp, "gid0", have_g0 ? jstr(g0) : NULL);
	set(jp, "gid0_type", type0[0] ? jstr(type0) : NULL);
	set(jp, "rocev2_gid_index", gs.v2_index >= 0 ? json_integer(gs.v2_index) : NULL);
	set(jp, "rocev2_gid", gs.v2_index >= 0 ? jstr(gs.v2) : NULL);
	set(jp, "rocev2_routable_gid_index",
	    gs.routable_index >= 0 ? json_integer(gs.routable_index) : NULL);
	set(jp, "rocev2_routable_gid", gs.routable_index >= 0 ? jstr(gs.routable) : NULL);
	set(jp, "gids", jgids);

	if (pa.state == IBV_PORT_ACTIVE) {
		finding(d, LV_OK, NULL, "%s port %u: PORT_ACTIVE, active MTU %d, %s%s%s%s", name, p,
			mtu_bytes(pa.active_mtu), link_layer_str(pa.link_layer),
			eth ? " (RoCE)" : "", ndev[0] ? ", netdev " : "", ndev);
	} else {
		if (eth)
			snprintf(fix, sizeof(fix), "ip link set %s up", ifname);
		else
			snprintf(fix, sizeof(fix),
				 "check the link and that a subnet manager (opensm) runs on the "
				 "fabric");
		finding(d, LV_WARN, fix, "%s port %u: %s, not PORT_ACTIVE (%s%s%s)", name, p,
			port_state_str(pa.state), link_layer_str(pa.link_layer),
			ndev[0] ? ", netdev " : "", ndev);
	}
	if (have_g0)
		detail(d, "gid[0] %s%s%s%s", g0, type0[0] ? " (" : "", type0, type0[0] ? ")" : "");
	if (!eth)
		return;
	if (gs.v2_index >= 0)
		detail(d, "first RoCE v2 gid: [%d] %s", gs.v2_index, gs.v2);
	if (gs.routable_index >= 0 && gs.routable_index != gs.v2_index)
		detail(d, "first RoCE v2 gid from an IP address: [%d] %s", gs.routable_index,
		       gs.routable);
	if (gs.routable_index < 0) {
		snprintf(fix, sizeof(fix), "ip addr add ADDR/PREFIX dev %s", ifname);
		finding(d, LV_WARN, fix,
			"%s port %u: no RoCE v2 GID from an IP address: librdmacm cannot reach "
			"this port until %s has one",
			name, p, ifname);
	}
}

static void check_device(struct doctor *d, struct ibv_device *dev, json_t *jdevs)
{
	const char *name = ibv_get_device_name(dev);
	char drv[64], sz[32];
	struct ibv_device_attr a;
	struct ibv_context *ctx;
	json_t *jd, *jports;
	int ret, node;

	ib_driver(name, drv, sizeof(drv));
	node = rdmig_topo_ibdev_numa_node(name);
	jd = json_object();
	json_array_append_new(jdevs, jd);
	set(jd, "name", jstr(name));
	set(jd, "driver", jstr(drv));
	set(jd, "node_type", jstr(ibv_node_type_str(dev->node_type)));
	set(jd, "transport", jstr(transport_str(dev->transport_type)));
	set(jd, "numa_node", json_integer(node));

	ctx = ibv_open_device(dev);
	if (!ctx) {
		finding(d, LV_FAIL, "check that /dev/infiniband/uverbs* exists and is readable",
			"%s: ibv_open_device: %s", name, strerror(errno));
		return;
	}
	ret = ibv_query_device(ctx, &a);
	if (ret) {
		finding(d, LV_FAIL, NULL, "%s: ibv_query_device: %s", name, strerror(ret));
		goto out_close;
	}
	d->rdma_devices++;
	set(jd, "fw_ver", jstr(a.fw_ver));
	set(jd, "max_qp", json_integer(a.max_qp));
	set(jd, "max_mr_size", juint(a.max_mr_size));
	set(jd, "max_sge", json_integer(a.max_sge));
	set(jd, "phys_port_cnt", json_integer(a.phys_port_cnt));

	finding(d, LV_OK, NULL, "%s: driver %s%s, node type %s, transport %s, %u port(s)", name,
		drv, driver_desc(drv), ibv_node_type_str(dev->node_type),
		transport_str(dev->transport_type), a.phys_port_cnt);
	if (a.max_mr_size == UINT64_MAX)
		snprintf(sz, sizeof(sz), "unlimited");
	else
		rdmig_fmt_size(a.max_mr_size, sz, sizeof(sz));
	detail(d, "max_qp %d, max_mr_size %s, max_sge %d, NUMA node %d%s", a.max_qp, sz, a.max_sge,
	       node, node < 0 ? " (unknown)" : "");

	jports = json_array();
	set(jd, "ports", jports);
	for (int p = 1; p <= a.phys_port_cnt; p++)
		check_port(d, ctx, name, (uint8_t)p, jports);
out_close:
	ibv_close_device(ctx);
}

static void check_rdma(struct doctor *d)
{
	int providers, kernel_devs, num = 0, list_errno = 0;
	struct ibv_device **list;
	bool uverbs;
	json_t *jdevs;

	section(d, "rdma", "RDMA devices");
	providers = count_glob("/etc/libibverbs.d/*.driver");
	kernel_devs = count_glob("/sys/class/infiniband/*");
	uverbs = path_exists("/sys/class/infiniband_verbs");
	set(d->sec, "providers_configured", json_integer(providers));
	set(d->sec, "kernel_devices", json_integer(kernel_devs));
	set(d->sec, "kernel_uverbs", json_boolean(uverbs));
	jdevs = json_array();
	set(d->sec, "devices", jdevs);

	list = ibv_get_device_list(&num);
	if (!list) {
		list_errno = errno;
		num = 0;
	}
	for (int i = 0; i < num; i++)
		check_device(d, list[i], jdevs);
	if (list)
		ibv_free_device_list(list);

	if (num == 0 && kernel_devs > 0) {
		if (providers == 0)
			finding(d, LV_FAIL, "apt-get install ibverbs-providers",
				"the kernel has %d RDMA device(s) but libibverbs has no provider "
				"drivers (/etc/libibverbs.d is empty)",
				kernel_devs);
		else if (!uverbs || count_glob("/dev/infiniband/uverbs*") == 0)
			finding(d, LV_FAIL, "modprobe ib_uverbs",
				"the kernel has %d RDMA device(s) but no /dev/infiniband/uverbs*: "
				"ib_uverbs is not loaded",
				kernel_devs);
		else
			finding(d, LV_FAIL,
				"check that ibverbs-providers matches the kernel driver, and "
				"RDMAV_DRIVERS",
				"the kernel has %d RDMA device(s) but libibverbs opens none%s%s",
				kernel_devs, list_errno ? ": " : "",
				list_errno ? strerror(list_errno) : "");
	} else if (num == 0) {
		finding(d, LV_WARN, NULL,
			"no RDMA device: the tcp backend will carry migrations; to get one: "
			"soft-roce-setup/rxe-host (kernel with rdma_rxe) or soft-roce-setup/rxe-vm "
			"-- COMMAND (any host)");
		if (!uverbs)
			detail(d, "the running kernel has no RDMA support loaded "
				  "(no /sys/class/infiniband_verbs)");
		if (providers == 0)
			finding(d, LV_WARN, "apt-get install ibverbs-providers",
				"libibverbs has no provider drivers (/etc/libibverbs.d is empty): "
				"it would not see a device either");
	}
}

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

static void check_memlock(struct doctor *d)
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
	set(d->sec, "soft", rl.rlim_cur == RLIM_INFINITY ? json_null() : juint(rl.rlim_cur));
	set(d->sec, "hard", rl.rlim_max == RLIM_INFINITY ? json_null() : juint(rl.rlim_max));
	set(d->sec, "unlimited", json_boolean(rl.rlim_cur == RLIM_INFINITY));
	set(d->sec, "guest_size", juint(d->guest_size));
	set(d->sec, "needed", juint(need));
	set(d->sec, "cap_ipc_lock", cap < 0 ? json_null() : json_boolean(cap == 1));
	set(d->sec, "initial_user_namespace", json_boolean(init_ns));

	capped = rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < need;
	if (cap == 1 && init_ns) {
		set(d->sec, "sufficient", json_true());
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
	set(d->sec, "sufficient", json_boolean(!capped));
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

static void check_numa(struct doctor *d)
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
	set(d->sec, "nodes", json_integer(t.nodes));
	set(d->sec, "packages", json_integer(t.packages));
	set(d->sec, "cores", json_integer(t.cores));
	set(d->sec, "pus", json_integer(t.pus));
	jnodes = json_array();
	set(d->sec, "node", jnodes);
	for (int n = 0; n < t.nnode; n++) {
		json_t *jn = json_object();

		set(jn, "os_index", json_integer(t.node[n].os_index));
		set(jn, "pus", json_integer(t.node[n].pus));
		set(jn, "mem_total", juint(t.node[n].mem_total));
		set(jn, "mem_free",
		    t.node[n].mem_free >= 0 ? juint((uint64_t)t.node[n].mem_free) : NULL);
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
	set(d->sec, "device_node", jdevnodes);
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
		set(jdevnodes, name, json_integer(node));
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

static void check_hugepages(struct doctor *d)
{
	long long total, freep, size_kb;
	char line[256], mode[32] = "", sz[32], pool[32];
	char *lb, *rb;

	section(d, "hugepages", "huge pages");
	total = proc_field("/proc/meminfo", "HugePages_Total");
	freep = proc_field("/proc/meminfo", "HugePages_Free");
	size_kb = proc_field("/proc/meminfo", "Hugepagesize");
	set(d->sec, "total", total >= 0 ? json_integer(total) : NULL);
	set(d->sec, "free", freep >= 0 ? json_integer(freep) : NULL);
	set(d->sec, "page_size", size_kb >= 0 ? json_integer(size_kb * 1024) : NULL);
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
		set(d->sec, "thp", jstr(mode));
		finding(d, LV_OK, NULL, "transparent huge pages: %s", mode);
	} else {
		set(d->sec, "thp", NULL);
		finding(d, LV_OK, NULL, "transparent huge pages: not available in this kernel");
	}
}

/* ---- dirty tracking -------------------------------------------------- */

static void check_dirty(struct doctor *d)
{
	struct rdmig_err ue = RDMIG_ERR_INIT, se = RDMIG_ERR_INIT;
	enum rdmig_dirty_kind kind;
	int urc, src;

	section(d, "dirty", "dirty-page tracking");
	urc = rdmig_probe_uffd_wp_async(&ue);
	src = rdmig_probe_soft_dirty(&se);
	kind = rdmig_dirty_pick(urc, src, false);
	set(d->sec, "uffd_wp_async", json_boolean(urc == 0));
	set(d->sec, "uffd_wp_async_error", urc ? jstr(rdmig_err_str(&ue)) : NULL);
	set(d->sec, "soft_dirty", json_boolean(src == 0));
	set(d->sec, "soft_dirty_error", src ? jstr(rdmig_err_str(&se)) : NULL);
	set(d->sec, "source", jstr(rdmig_dirty_kind_name(kind)));

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

/* ---- QEMU ------------------------------------------------------------ */

/* Full path of `prog` in $PATH, or -1. */
static int find_in_path(const char *prog, char *out, size_t len)
{
	const char *path = getenv("PATH"), *p, *colon;
	size_t n;

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (p = path;; p = colon + 1) {
		colon = strchr(p, ':');
		n = colon ? (size_t)(colon - p) : strlen(p);
		/* An empty element is the current directory. */
		if ((size_t)snprintf(out, len, "%.*s/%s", (int)n, n ? p : ".", prog) < len &&
		    access(out, X_OK) == 0)
			return 0;
		if (!colon)
			return -1;
	}
}

/*
 * Run `path arg` with stdin and stderr on /dev/null and return the first
 * line of its stdout. Killed after SPAWN_TIMEOUT_MS.
 */
static int first_line_of(const char *path, const char *arg, char *out, size_t len)
{
	char *const argv[] = {(char *)path, (char *)arg, NULL};
	posix_spawn_file_actions_t fa;
	size_t got = 0;
	int pfd[2], ret, status;
	struct timespec t0, t;
	pid_t pid;
	char *nl;

	out[0] = '\0';
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	ret = posix_spawn(&pid, path, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (ret) {
		close(pfd[0]);
		return -ret;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got + 1 < len) {
		struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
		long left;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = SPAWN_TIMEOUT_MS -
		       ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&pf, 1, (int)left) == 0) {
			kill(pid, SIGKILL);
			ret = -ETIMEDOUT;
			break;
		}
		n = read(pfd[0], out + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		out[got] = '\0';
		if (strchr(out, '\n'))
			break;
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out[got] = '\0';
	nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	if (!ret && !out[0])
		ret = -EIO;
	return ret;
}

static void check_qemu(struct doctor *d)
{
	char path[PATH_MAX], ver[256];
	bool kvm = path_exists("/dev/kvm");
	int ret;

	section(d, "qemu", "QEMU");
	set(d->sec, "kvm", json_boolean(kvm));
	if (find_in_path(QEMU_BIN, path, sizeof(path)) < 0) {
		set(d->sec, "path", NULL);
		set(d->sec, "version", NULL);
		finding(d, LV_WARN, "apt-get install qemu-system-x86",
			"%s not found in PATH: the QEMU plug-in and QEMU tests need it", QEMU_BIN);
	} else {
		ret = first_line_of(path, "--version", ver, sizeof(ver));
		set(d->sec, "path", jstr(path));
		set(d->sec, "version", ret ? NULL : jstr(ver));
		if (ret == -ETIMEDOUT)
			finding(d, LV_WARN, NULL, "%s: no answer to --version within %d s", path,
				SPAWN_TIMEOUT_MS / 1000);
		else if (ret)
			finding(d, LV_WARN, NULL, "%s: '%s --version' failed: %s", path, QEMU_BIN,
				strerror(-ret));
		else
			finding(d, LV_OK, NULL, "%s: %s", path, ver);
	}
	detail(d, "/dev/kvm %s (informational: QEMU falls back to TCG without it)",
	       kvm ? "present" : "absent");
}

/* ---- command --------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: rdmig doctor [--json] [--guest-size SIZE]\n"
		"\n"
		"Report what this host offers a migration: environment, RDMA devices and\n"
		"ports, memlock limit, NUMA topology, huge pages, dirty-page tracking and\n"
		"QEMU. Each finding is [ok], [warn] or [fail], with the fix where one applies.\n"
		"\n"
		"Options:\n"
		"  --guest-size SIZE  guest RAM to check the memlock limit against\n"
		"                     (default 1G; K, M, G, T suffixes)\n"
		"  --json             print one JSON object with every finding and fact\n"
		"  -h, --help         show this help\n"
		"\n"
		"Exit status: 0 unless a finding makes every migration impossible (none\n"
		"does today: the tcp backend needs nothing checked here), 1 if the report\n"
		"cannot be written, 2 on bad usage.\n");
}

int cmd_doctor(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_GUEST_SIZE };
	static const struct option opts[] = {
	    {.name = "help", .has_arg = no_argument, .val = 'h'},
	    {.name = "json", .has_arg = no_argument, .val = OPT_JSON},
	    {.name = "guest-size", .has_arg = required_argument, .val = OPT_GUEST_SIZE},
	    {0},
	};
	struct doctor d = {.guest_size = DEFAULT_GUEST_SIZE};
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *summary;
	int c, ret = RDMIG_EXIT_OK;

	opterr = 0; /* our own messages, naming the command */
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return RDMIG_EXIT_OK;
		case OPT_JSON:
			d.json = true;
			break;
		case OPT_GUEST_SIZE:
			if (rdmig_parse_size(optarg, &d.guest_size, &err))
				return cli_usage_error(CMD, "--guest-size: %s",
						       rdmig_err_str(&err));
			if (d.guest_size == 0)
				return cli_usage_error(CMD, "--guest-size must be more than 0");
			break;
		case ':':
			return cli_usage_error(CMD, "option '%s' needs a value", argv[optind - 1]);
		default:
			return cli_usage_error(CMD, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);

	d.root = json_object();
	d.findings = json_array();
	if (!d.root || !d.findings) {
		fprintf(stderr, "rdmig doctor: out of memory\n");
		ret = RDMIG_EXIT_FAIL;
		goto out_free;
	}
	set(d.root, "rdmig_version", jstr(RDMIG_VERSION_STRING));
	if (!d.json)
		printf("rdmig %s doctor\n", RDMIG_VERSION_STRING);

	/* RDMA before memlock: the limit's severity depends on having a device. */
	check_environment(&d);
	check_rdma(&d);
	check_memlock(&d);
	check_numa(&d);
	check_hugepages(&d);
	check_dirty(&d);
	check_qemu(&d);

	summary = json_object();
	set(summary, "ok", json_integer(d.count[LV_OK]));
	set(summary, "warnings", json_integer(d.count[LV_WARN]));
	set(summary, "failures", json_integer(d.count[LV_FAIL]));
	/* No finding blocks the tcp backend, so none decides the exit status yet. */
	set(summary, "migration_possible", json_true());
	json_object_set(d.root, "findings", d.findings);
	set(d.root, "summary", summary);

	if (d.json) {
		if (json_dumpf(d.root, stdout, JSON_INDENT(2)) < 0)
			ret = RDMIG_EXIT_FAIL;
		putchar('\n');
	} else {
		printf("\nrdmig doctor: %d ok, %d warnings, %d failures\n", d.count[LV_OK],
		       d.count[LV_WARN], d.count[LV_FAIL]);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "rdmig doctor: writing the report: %s\n", strerror(errno));
		ret = RDMIG_EXIT_FAIL;
	}
out_free:
	json_decref(d.findings);
	json_decref(d.root);
	return ret;
}
