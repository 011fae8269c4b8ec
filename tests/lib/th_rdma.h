/* SPDX-License-Identifier: MIT */
/* The rdma tier's view of this host: is there a device, and which address to use. */
#ifndef RDMIG_TEST_TH_RDMA_H
#define RDMIG_TEST_TH_RDMA_H

#include <stddef.h>

/*
 * 0 when libibverbs offers an RDMA device (rdmig_rdma_devices()); else a
 * loud SKIP line saying how to get one, and TH_EXIT_SKIP.
 */
int th_require_rdma(const char *test);

/*
 * The address tests connect to: `override` if given (--host), else the IPv4
 * address of the netdev under the first RDMA device
 * (/sys/class/infiniband/DEV/ports/1/gid_attrs/ndevs/0), else $RDMIG_RXE_IP,
 * else 10.0.2.15. Says on stdout where the address came from.
 */
void th_rdma_host(const char *override, char *buf, size_t len);

#endif
