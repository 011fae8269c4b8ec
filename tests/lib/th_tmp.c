/* SPDX-License-Identifier: MIT */
#include "th_tmp.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];
static pid_t g_owner; /* the process that made g_dir removes it */

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_dir(void)
{
	if (g_dir[0] && getpid() == g_owner)
		nftw(g_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *th_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	if (g_dir[0])
		return g_dir;
	snprintf(g_dir, sizeof(g_dir), "%s/rdmig-test.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(g_dir)) {
		printf("FAIL: temporary directory %s: %s\n", g_dir, strerror(errno));
		g_dir[0] = '\0';
		return NULL;
	}
	g_owner = getpid();
	atexit(remove_dir);
	return g_dir;
}

char *th_tmp_path(char *buf, size_t len, const char *name)
{
	const char *dir = th_tmpdir();

	if (dir)
		snprintf(buf, len, "%s/%s", dir, name);
	else if (len)
		buf[0] = '\0';
	return buf;
}

int th_write_file(const char *path, const void *buf, size_t len, mode_t mode, struct rdmig_err *err)
{
	const char *p = buf;
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "writing %s: open", path);
	while (len && !ret) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			ret = rdmig_seterr_errno(err, n < 0 ? rdmig_neg_errno() : -EIO,
						 "writing %s", path);
		else
			p += n, len -= (size_t)n;
	}
	/* open() applies the umask and keeps the mode of a file that existed. */
	if (!ret && fchmod(fd, mode))
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "writing %s: chmod", path);
	if (close(fd) && !ret)
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "writing %s: close", path);
	return ret;
}

int th_read_file(const char *path, uint8_t **buf, size_t *len, struct rdmig_err *err)
{
	struct stat sb;
	size_t got = 0;
	int fd, ret = 0;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "reading %s: open", path);
	if (fstat(fd, &sb)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "reading %s: stat", path);
		goto out;
	}
	*buf = malloc((size_t)sb.st_size + 1);
	if (!*buf) {
		ret = rdmig_seterr(err, -ENOMEM, "reading %s: out of memory", path);
		goto out;
	}
	while (got < (size_t)sb.st_size) {
		ssize_t n = read(fd, *buf + got, (size_t)sb.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "reading %s", path);
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*len = got;
out:
	if (ret) {
		free(*buf);
		*buf = NULL;
	}
	close(fd);
	return ret;
}
