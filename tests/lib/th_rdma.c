/* SPDX-License-Identifier: MIT */
#include "th_rdma.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileutil.h"
#include "rdmig/transport.h"
#include "th_check.h"

#define FALLBACK_HOST "10.0.2.15" /* rxe0 on eth0 in soft-roce-setup/rxe-vm */

int th_require_rdma(const char *test)
{
	char names[256];

	if (rdmig_rdma_devices(names, sizeof(names)) > 0)
		return 0;
	return th_skip("%s: no RDMA device (libibverbs lists none). Run the rdma tier inside "
		       "soft-roce-setup/rxe-vm, or create a SoftRoCE device with "
		       "'rdma link add rxe0 type rxe netdev IF'.",
		       test);
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
	if (rdmig_read_linef(ifname, len, "/sys/class/infiniband/%s/ports/1/gid_attrs/ndevs/0",
			     dev))
		return -1;
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

void th_rdma_host(const char *override, char *buf, size_t len)
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
