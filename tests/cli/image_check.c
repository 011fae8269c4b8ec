/* SPDX-License-Identifier: MIT */
/*
 * image_check FILE VCPUS: the incr integrity check (testing.md) on a RAM
 * dump written by `rdmig migrate/listen --dump-ram`. Exit 0 when byte 0 of
 * the pages of every vCPU slice shows at most one +1 edge and every other
 * byte is zero; 1 with the bad pages named otherwise.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "incr_check.h"

int main(int argc, char **argv)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct stat st;
	void *p;
	int fd, ret;

	if (argc != 3) {
		fprintf(stderr, "usage: image_check FILE VCPUS\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) || !st.st_size) {
		perror(argv[1]);
		return 1;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	ret = rdmig_check_incr_image(p, (uint64_t)st.st_size, (unsigned)atoi(argv[2]), &err);
	if (ret) {
		printf("image_check: %s: %s\n", argv[1], err.msg);
		return 1;
	}
	printf("image_check: %s: incr pattern intact (%lld pages)\n", argv[1],
	       (long long)st.st_size / RDMIG_PAGE_SIZE);
	return 0;
}
