/* SPDX-License-Identifier: MIT */
#include "fileutil.h"
#include "topo.h"

#include <errno.h>
#include <hwloc.h>
#include <limits.h>
#include <stdbool.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int rdmig_topo_summarize(struct rdmig_topo_summary *s, const char *xml_path, struct rdmig_err *err)
{
	hwloc_topology_t topo;
	bool have_libnuma;
	int ret = 0;

	memset(s, 0, sizeof(*s));
	if (hwloc_topology_init(&topo) < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "hwloc_topology_init");
	if (xml_path && hwloc_topology_set_xml(topo, xml_path) < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "hwloc: load XML topology %s",
					 xml_path);
		goto out_destroy;
	}
	if (hwloc_topology_load(topo) < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "hwloc_topology_load");
		goto out_destroy;
	}

	s->nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	s->cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
	s->pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
	s->packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
	/* Free memory is only this machine's, and only libnuma reports it. */
	have_libnuma = !xml_path && numa_available() >= 0;

	for (int i = 0; i < s->nodes; i++) {
		hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)i);
		struct rdmig_topo_node *n;
		long long freeb;
		int w;

		if (!obj)
			break;
		s->mem_total += obj->attr ? obj->attr->numanode.local_memory : 0;
		if (s->nnode == RDMIG_TOPO_MAX_NODES)
			continue;
		n = &s->node[s->nnode++];
		n->os_index = (int)obj->os_index;
		n->mem_total = obj->attr ? obj->attr->numanode.local_memory : 0;
		w = obj->cpuset ? hwloc_bitmap_weight(obj->cpuset) : 0;
		n->pus = w > 0 ? w : 0;
		n->mem_free = -1;
		if (have_libnuma && numa_node_size64(n->os_index, &freeb) >= 0)
			n->mem_free = freeb;
	}

out_destroy:
	hwloc_topology_destroy(topo);
	return ret;
}

static int parse_node(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < -1 || v > INT_MAX)
		return -1;
	return (int)v;
}

/*
 * numa_node of a sysfs device directory or of its nearest ancestor that has
 * one: a virtio NIC's node sits on the PCI function above the virtio device.
 */
static int device_node(const char *devlink, const char *sysfs_root)
{
	char path[PATH_MAX], file[PATH_MAX + 16], val[32];
	size_t stop = strlen(sysfs_root) + strlen("/devices");
	char *slash;

	if (!realpath(devlink, path))
		return -1;
	for (int depth = 0; depth < 4 && strlen(path) > stop; depth++) {
		if (snprintf(file, sizeof(file), "%s/numa_node", path) < (int)sizeof(file) &&
		    rdmig_read_line(file, val, sizeof(val)) == 0)
			return parse_node(val);
		slash = strrchr(path, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	return -1;
}

int rdmig_topo_ibdev_numa_node_at(const char *sysfs_root, const char *ibdev)
{
	char path[PATH_MAX], ndev[64], root[PATH_MAX];
	int node;

	if (!ibdev || !*ibdev || strchr(ibdev, '/') || strlen(ibdev) > 64)
		return -1;
	/* realpath() resolves the root too, so the walk's stop point matches. */
	if (!realpath(sysfs_root, root))
		return -1;

	if (snprintf(path, sizeof(path), "%s/class/infiniband/%s/device", root, ibdev) >=
	    (int)sizeof(path))
		return -1;
	node = device_node(path, root);
	if (node >= 0)
		return node;

	if (snprintf(path, sizeof(path), "%s/class/infiniband/%s/ports/1/gid_attrs/ndevs/0", root,
		     ibdev) >= (int)sizeof(path))
		return -1;
	if (rdmig_read_line(path, ndev, sizeof(ndev)) < 0 || !ndev[0] || strchr(ndev, '/'))
		return -1;
	if (snprintf(path, sizeof(path), "%s/class/net/%s/device", root, ndev) >= (int)sizeof(path))
		return -1;
	return device_node(path, root);
}

int rdmig_topo_ibdev_numa_node(const char *ibdev)
{
	return rdmig_topo_ibdev_numa_node_at("/sys", ibdev);
}

bool rdmig_topo_ibdev_software(const char *ibdev)
{
	char path[PATH_MAX];
	struct stat st;

	if (!ibdev || !*ibdev || strchr(ibdev, '/') || strlen(ibdev) > 64)
		return false;
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s", ibdev);
	if (stat(path, &st))
		return false;
	/* rxe has no "device" link: device_node()'s fallback above. */
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device", ibdev);
	return stat(path, &st) != 0;
}
