/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the rdma test tier: find the RDMA device and the IPv4 address
 * of the network interface under it, and skip loudly when there is none.
 */
#ifndef RDMIG_RDMA_TEST_UTIL_H
#define RDMIG_RDMA_TEST_UTIL_H

#include <stddef.h>

#define RDMA_TEST_SKIP 77

/* Number of RDMA devices libibverbs sees. */
int rdma_test_device_count(void);

/*
 * Print the loud skip line and return RDMA_TEST_SKIP when there is no RDMA
 * device; return 0 when there is one.
 */
int rdma_test_require_device(const char *test);

/*
 * The address tests connect to: `override` if given (--host), else the IPv4
 * address of the netdev under the first RDMA device
 * (/sys/class/infiniband/DEV/ports/1/gid_attrs/ndevs/0), else $RDMIG_RXE_IP,
 * else 10.0.2.15. Says on stdout where the address came from.
 */
void rdma_test_host(const char *override, char *buf, size_t len);

#endif
