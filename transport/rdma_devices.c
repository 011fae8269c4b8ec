/* SPDX-License-Identifier: MIT */
/*
 * Which RDMA devices this host offers to user space. The one place that
 * answers "is there RDMA here?": libibverbs' own device list, the same list
 * rdma_cm will later resolve addresses against, never a directory listing.
 */
#include <infiniband/verbs.h>
#include <stdio.h>
#include <string.h>

#include "rdmig/transport.h"

int rdmig_rdma_devices(char *names, size_t len)
{
	struct ibv_device **devs;
	size_t off = 0;
	int n = 0;

	if (names && len)
		names[0] = '\0';
	devs = ibv_get_device_list(&n);
	if (!devs)
		return 0;
	for (int i = 0; names && i < n && off + 2 < len; i++) {
		int w = snprintf(names + off, len - off, "%s%s", i ? "," : "",
				 ibv_get_device_name(devs[i]));

		if (w < 0 || (size_t)w >= len - off)
			break;
		off += (size_t)w;
	}
	ibv_free_device_list(devs);
	return n;
}

int rdmig_rdma_comp_vectors(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	int n = 0;

	for (int i = 0; list && list[i]; i++) {
		struct ibv_context *ctx;

		if (name && strcmp(ibv_get_device_name(list[i]), name))
			continue;
		ctx = ibv_open_device(list[i]);
		if (ctx) {
			n = ctx->num_comp_vectors > 0 ? ctx->num_comp_vectors : 0;
			ibv_close_device(ctx);
		}
		break;
	}
	if (list)
		ibv_free_device_list(list);
	return n;
}

enum rdmig_backend rdmig_backend_auto(void)
{
	return rdmig_rdma_devices(NULL, 0) > 0 ? RDMIG_BACKEND_RDMA : RDMIG_BACKEND_TCP;
}
