/* SPDX-License-Identifier: MIT */
/*
 * rdma_with_host COMMAND [ARG...]: run a backend-neutral test program on the
 * RDMA device of this machine. Skips (77, with a SKIP line) when there is no
 * device; otherwise every argument "@HOST@" is replaced by the IPv4 address
 * under the first RDMA device (see th_rdma_host()) and COMMAND is executed.
 * ctest cannot know that address when it is configured: it exists only
 * inside the VM the tests run in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th_rdma.h"

int main(int argc, char **argv)
{
	char host[256];
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: rdma_with_host COMMAND [ARG...]  (@HOST@ in ARGs is "
				"replaced by the RDMA device's address)\n");
		return 2;
	}
	ret = th_require_rdma(argv[1]);
	if (ret)
		return ret;
	th_rdma_host(getenv("RDMIG_TEST_HOST"), host, sizeof(host));
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "@HOST@"))
			argv[i] = host;
	fflush(stdout);
	execvp(argv[1], argv + 1);
	perror(argv[1]);
	return 1;
}
