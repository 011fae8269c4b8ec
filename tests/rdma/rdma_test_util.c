/* SPDX-License-Identifier: MIT */
#include "rdma_test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <infiniband/verbs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FALLBACK_HOST "10.0.2.15" /* rxe0 on eth0 in soft-roce-setup/rxe-vm */

int rdma_test_device_count(void)
{
	struct ibv_device **devs;
	int n = 0;

	devs = ibv_get_device_list(&n);
	if (devs)
		ibv_free_device_list(devs);
	return n;
}

int rdma_test_require_device(const char *test)
{
	if (rdma_test_device_count() > 0)
		return 0;
	printf("SKIP: %s: no RDMA device (ibv_get_device_list() found none). Run the rdma tier "
	       "inside soft-roce-setup/rxe-vm, or create a SoftRoCE device with "
	       "'rdma link add rxe0 type rxe netdev IF'.\n",
	       test);
	fflush(stdout);
	return RDMA_TEST_SKIP;
}

/* First entry of /sys/class/infiniband in name order, into dev. */
static int first_sysfs_device(char *dev, size_t len)
{
	struct dirent **list;
	int n, found = -1;

	n = scandir("/sys/class/infiniband", &list, NULL, alphasort);
	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (found < 0 && list[i]->d_name[0] != '.') {
			snprintf(dev, len, "%s", list[i]->d_name);
			found = 0;
		}
		free(list[i]);
	}
	free(list);
	return found;
}

static int netdev_of(const char *dev, char *ifname, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gid_attrs/ndevs/0", dev);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(ifname, (int)len, f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	ifname[strcspn(ifname, "\n")] = '\0';
	return ifname[0] ? 0 : -1;
}

static int ipv4_of(const char *ifname, char *buf, size_t len)
{
	struct ifaddrs *ifa, *i;
	int ret = -1;

	if (getifaddrs(&ifa))
		return -1;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    strcmp(i->ifa_name, ifname))
			continue;
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, buf,
			  (socklen_t)len);
		ret = 0;
		break;
	}
	freeifaddrs(ifa);
	return ret;
}

void rdma_test_host(const char *override, char *buf, size_t len)
{
	char dev[256], ifname[256];
	const char *env;

	if (override && *override) {
		snprintf(buf, len, "%s", override);
		printf("host %s (from --host)\n", buf);
		return;
	}
	if (!first_sysfs_device(dev, sizeof(dev)) && !netdev_of(dev, ifname, sizeof(ifname)) &&
	    !ipv4_of(ifname, buf, len)) {
		printf("host %s (IPv4 address of %s, the netdev under RDMA device %s)\n", buf,
		       ifname, dev);
		return;
	}
	env = getenv("RDMIG_RXE_IP");
	if (env && *env) {
		snprintf(buf, len, "%s", env);
		printf("host %s (from RDMIG_RXE_IP: no IPv4 address found through sysfs)\n", buf);
		return;
	}
	snprintf(buf, len, "%s", FALLBACK_HOST);
	printf("host %s (fallback: no IPv4 address found through sysfs)\n", buf);
}
