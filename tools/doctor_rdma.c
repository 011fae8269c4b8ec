/* SPDX-License-Identifier: MIT */
/*
 * rdmig doctor: RDMA devices as libibverbs offers them, each device's ports
 * and GIDs, and why a device the kernel has may be invisible to user space.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <infiniband/verbs.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "doctor.h"
#include "fileutil.h"
#include "topo.h"
#include "units.h"

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

			cli_jset(jg, "index", json_integer(i));
			cli_jset(jg, "gid", cli_jstr(str));
			cli_jset(jg, "type", type[0] ? cli_jstr(type) : NULL);
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
	cli_jset(jp, "port", json_integer(p));
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

	cli_jset(jp, "state", cli_jstr(port_state_str(pa.state)));
	cli_jset(jp, "active", json_boolean(pa.state == IBV_PORT_ACTIVE));
	cli_jset(jp, "active_mtu", json_integer(mtu_bytes(pa.active_mtu)));
	cli_jset(jp, "max_mtu", json_integer(mtu_bytes(pa.max_mtu)));
	cli_jset(jp, "link_layer", cli_jstr(link_layer_str(pa.link_layer)));
	cli_jset(jp, "netdev", ndev[0] ? cli_jstr(ndev) : NULL);
	cli_jset(jp, "gid_table_len", json_integer(pa.gid_tbl_len));
	cli_jset(jp, "gid0", have_g0 ? cli_jstr(g0) : NULL);
	cli_jset(jp, "gid0_type", type0[0] ? cli_jstr(type0) : NULL);
	cli_jset(jp, "rocev2_gid_index", gs.v2_index >= 0 ? json_integer(gs.v2_index) : NULL);
	cli_jset(jp, "rocev2_gid", gs.v2_index >= 0 ? cli_jstr(gs.v2) : NULL);
	cli_jset(jp, "rocev2_routable_gid_index",
		 gs.routable_index >= 0 ? json_integer(gs.routable_index) : NULL);
	cli_jset(jp, "rocev2_routable_gid", gs.routable_index >= 0 ? cli_jstr(gs.routable) : NULL);
	cli_jset(jp, "gids", jgids);

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
	cli_jset(jd, "name", cli_jstr(name));
	cli_jset(jd, "driver", cli_jstr(drv));
	cli_jset(jd, "node_type", cli_jstr(ibv_node_type_str(dev->node_type)));
	cli_jset(jd, "transport", cli_jstr(transport_str(dev->transport_type)));
	cli_jset(jd, "node", json_integer(node));

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
	cli_jset(jd, "fw_ver", cli_jstr(a.fw_ver));
	cli_jset(jd, "max_qp", json_integer(a.max_qp));
	cli_jset(jd, "max_mr_size", cli_juint(a.max_mr_size));
	cli_jset(jd, "max_sge", json_integer(a.max_sge));
	cli_jset(jd, "phys_port_cnt", json_integer(a.phys_port_cnt));

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
	cli_jset(jd, "ports", jports);
	for (int p = 1; p <= a.phys_port_cnt; p++)
		check_port(d, ctx, name, (uint8_t)p, jports);
out_close:
	ibv_close_device(ctx);
}

/* Open and describe every device libibverbs lists; the errno of a failed listing. */
static int inspect_devices(struct doctor *d, json_t *jdevs)
{
	struct ibv_device **list;
	int num = 0;

	list = ibv_get_device_list(&num);
	if (!list)
		return errno;
	for (int i = 0; i < num; i++)
		check_device(d, list[i], jdevs);
	ibv_free_device_list(list);
	return 0;
}

void check_rdma(struct doctor *d)
{
	int providers, kernel_devs, num, list_errno = 0;
	char names[1024];
	bool uverbs;
	json_t *jdevs;

	section(d, "rdma", "RDMA devices");
	providers = count_glob("/etc/libibverbs.d/*.driver");
	/* The kernel's view, to tell why libibverbs may not see what it has. */
	kernel_devs = count_glob("/sys/class/infiniband/*");
	uverbs = path_exists("/sys/class/infiniband_verbs");
	/* The same answer every rdmig command gets to "is there RDMA here". */
	num = rdmig_rdma_devices(names, sizeof(names));
	cli_jset(d->sec, "providers_configured", json_integer(providers));
	cli_jset(d->sec, "kernel_devices", json_integer(kernel_devs));
	cli_jset(d->sec, "kernel_uverbs", json_boolean(uverbs));
	cli_jset(d->sec, "device_count", json_integer(num));
	jdevs = json_array();
	cli_jset(d->sec, "devices", jdevs);
	list_errno = inspect_devices(d, jdevs);

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
