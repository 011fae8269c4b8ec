/* SPDX-License-Identifier: MIT */
/*
 * rdma_smoke: the first RDMA device, opened straight through libibverbs:
 * query the device and port 1 (which must be active), allocate a PD and
 * register a buffer for remote write, and say what was found. Exits 77 with
 * a SKIP line when there is no device, 1 on any failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <infiniband/verbs.h>

#include "th_rdma.h"

#define BUF_LEN (1u << 20)

static const char *mtu_str(enum ibv_mtu m)
{
	switch (m) {
	case IBV_MTU_256:
		return "256";
	case IBV_MTU_512:
		return "512";
	case IBV_MTU_1024:
		return "1024";
	case IBV_MTU_2048:
		return "2048";
	case IBV_MTU_4096:
		return "4096";
	}
	return "?";
}

static const char *link_str(uint8_t l)
{
	return l == IBV_LINK_LAYER_ETHERNET	? "Ethernet"
	       : l == IBV_LINK_LAYER_INFINIBAND ? "InfiniBand"
						: "unspecified";
}

int main(void)
{
	struct ibv_device **devs;
	struct ibv_context *ctx = NULL;
	struct ibv_device_attr da;
	struct ibv_port_attr pa;
	struct ibv_pd *pd = NULL;
	struct ibv_mr *mr = NULL;
	void *buf = NULL;
	int n = 0, ret, status = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ret = th_require_rdma("rdma_smoke");
	if (ret)
		return ret;
	devs = ibv_get_device_list(&n);
	if (!devs || !n) {
		printf("FAIL: ibv_get_device_list: %s\n", strerror(errno));
		return 1;
	}
	printf("%d RDMA device(s); using the first: %s (%s)\n", n, ibv_get_device_name(devs[0]),
	       ibv_node_type_str(devs[0]->node_type));

	ctx = ibv_open_device(devs[0]);
	if (!ctx) {
		printf("FAIL: ibv_open_device(%s): %s\n", ibv_get_device_name(devs[0]),
		       strerror(errno));
		goto out_free_list;
	}
	ret = ibv_query_device(ctx, &da);
	if (ret) {
		printf("FAIL: ibv_query_device: %s\n", strerror(ret));
		goto out_close_device;
	}
	printf("device: fw %s, %u port(s), max_qp %d, max_qp_wr %d, max_sge %d, max_cqe %d, "
	       "max_mr_size %llu\n",
	       da.fw_ver, da.phys_port_cnt, da.max_qp, da.max_qp_wr, da.max_sge, da.max_cqe,
	       (unsigned long long)da.max_mr_size);
	ret = ibv_query_port(ctx, 1, &pa);
	if (ret) {
		printf("FAIL: ibv_query_port(1): %s\n", strerror(ret));
		goto out_close_device;
	}
	printf("port 1: state %s, link layer %s, active_mtu %s, max_mtu %s, max_msg_sz %u, "
	       "gid_tbl_len %d\n",
	       ibv_port_state_str(pa.state), link_str(pa.link_layer), mtu_str(pa.active_mtu),
	       mtu_str(pa.max_mtu), pa.max_msg_sz, pa.gid_tbl_len);
	if (pa.state != IBV_PORT_ACTIVE) {
		printf("FAIL: port 1 is %s, expected PORT_ACTIVE\n", ibv_port_state_str(pa.state));
		goto out_close_device;
	}

	pd = ibv_alloc_pd(ctx);
	if (!pd) {
		printf("FAIL: ibv_alloc_pd: %s\n", strerror(errno));
		goto out_close_device;
	}
	if (posix_memalign(&buf, 4096, BUF_LEN)) {
		printf("FAIL: out of memory\n");
		goto out_dealloc_pd;
	}
	memset(buf, 0xa5, BUF_LEN);
	mr = ibv_reg_mr(pd, buf, BUF_LEN, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr) {
		printf("FAIL: ibv_reg_mr of %u bytes: %s (memlock limit? 'ulimit -l')\n", BUF_LEN,
		       strerror(errno));
		goto out_free_buf;
	}
	printf("registered %u bytes at %p: lkey 0x%x rkey 0x%x\n", BUF_LEN, buf, mr->lkey,
	       mr->rkey);
	status = 0;
	printf("PASS: rdma_smoke\n");

	ret = ibv_dereg_mr(mr);
	if (ret) {
		printf("FAIL: ibv_dereg_mr: %s\n", strerror(ret));
		status = 1;
	}
out_free_buf:
	free(buf);
out_dealloc_pd:
	ret = ibv_dealloc_pd(pd);
	if (ret) {
		printf("FAIL: ibv_dealloc_pd: %s\n", strerror(ret));
		status = 1;
	}
out_close_device:
	ibv_close_device(ctx);
out_free_list:
	ibv_free_device_list(devs);
	return status;
}
