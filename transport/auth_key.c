/* SPDX-License-Identifier: MIT */
/*
 * Pre-shared key files: where the key comes from, the exact rules a file
 * must meet (rdmig/auth.h), and keeping the bytes out of places they could leak
 * to (swap, core dumps, freed memory). No libcrypto here, so that the rules
 * can be fuzzed on their own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth_wire.h"
#include "log.h"

const char *rdmig_auth_key_path(const char *opt)
{
	const char *env;

	if (opt && *opt)
		return opt;
	env = getenv(RDMIG_KEY_FILE_ENV);
	return env && *env ? env : NULL;
}

void rdmig_auth_key_wipe(struct rdmig_auth_key *key)
{
	if (key)
		explicit_bzero(key, sizeof(*key));
}

int rdmig_auth_key_parse(const uint8_t *raw, size_t len, const char *path,
			 struct rdmig_auth_key *key, struct rdmig_err *err)
{
	/* The limit is on what is stored: a line ending does not buy a longer key. */
	if (len > RDMIG_AUTH_KEY_MAX)
		return rdmig_seterr(err, -EFBIG,
				    "key file %s is %zu bytes, above the limit of %d: a key is "
				    "%d to %d bytes (e.g. head -c 32 /dev/urandom > %s)",
				    path, len, RDMIG_AUTH_KEY_MAX, RDMIG_AUTH_KEY_MIN,
				    RDMIG_AUTH_KEY_MAX, path);
	/* One line ending (echo, editors) is not part of the key; a lone CR is. */
	if (len >= 2 && raw[len - 2] == '\r' && raw[len - 1] == '\n')
		len -= 2;
	else if (len >= 1 && raw[len - 1] == '\n')
		len -= 1;
	if (len < RDMIG_AUTH_KEY_MIN)
		return rdmig_seterr(err, -EINVAL,
				    "key file %s holds %zu bytes, a key needs at least %d "
				    "(e.g. head -c 32 /dev/urandom > %s)",
				    path, len, RDMIG_AUTH_KEY_MIN, path);
	rdmig_auth_key_wipe(key);
	memcpy(key->key, raw, len);
	key->len = len;
	return 0;
}

int rdmig_auth_key_load(const char *path, struct rdmig_auth_key *key, struct rdmig_err *err)
{
	/* One byte more than the limit: a file that grew since fstat() still shows it. */
	uint8_t buf[RDMIG_AUTH_KEY_MAX + 1];
	struct stat st;
	size_t len = 0;
	int fd, ret = 0;

	rdmig_auth_key_wipe(key);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "key file %s", path);
	if (fstat(fd, &st)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "key file %s", path);
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = rdmig_seterr(err, -EINVAL, "key file %s is not a regular file", path);
		goto out_close;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		ret = rdmig_seterr(err, -EACCES,
				   "key file %s is accessible by group or others (mode %04o): "
				   "run chmod 600 %s",
				   path, (unsigned)(st.st_mode & 07777), path);
		goto out_close;
	}
	/* Refused before reading: no byte of an oversized file enters memory. */
	if (st.st_size > RDMIG_AUTH_KEY_MAX) {
		ret = rdmig_auth_key_parse(NULL, (size_t)st.st_size, path, key, err);
		goto out_close;
	}
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret =
			    rdmig_seterr_errno(err, rdmig_neg_errno(), "reading key file %s", path);
			goto out_wipe;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	ret = rdmig_auth_key_parse(buf, len, path, key, err);
out_wipe:
	explicit_bzero(buf, sizeof(buf));
out_close:
	close(fd);
	if (ret)
		rdmig_auth_key_wipe(key);
	return ret;
}

int rdmig_auth_key_from_opt(const char *opt, struct rdmig_auth_key *key, struct rdmig_err *err)
{
	const char *path = rdmig_auth_key_path(opt);

	rdmig_auth_key_wipe(key);
	if (!path)
		return 1;
	return rdmig_auth_key_load(path, key, err);
}

/* A whole number of pages: mlock and madvise work on pages. */
static size_t key_map_len(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t p = pg > 0 ? (size_t)pg : 4096;

	return (sizeof(struct rdmig_auth_key) + p - 1) / p * p;
}

int rdmig_auth_key_new(const char *opt, struct rdmig_auth_key **out, struct rdmig_err *err)
{
	size_t len = key_map_len();
	struct rdmig_auth_key *k;
	int ret;

	*out = NULL;
	if (!rdmig_auth_key_path(opt))
		return 1;
	k = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (k == MAP_FAILED)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "memory for the key");
	/* Best effort: the key is protected by its wiping even where these fail. */
	if (mlock(k, len))
		log_debug("key memory not locked (%s): it may reach swap", strerror(errno));
	if (madvise(k, len, MADV_DONTDUMP))
		log_debug("key memory stays in core dumps: %s", strerror(errno));
	ret = rdmig_auth_key_from_opt(opt, k, err);
	if (ret) {
		rdmig_auth_key_free(k);
		return ret;
	}
	*out = k;
	return 0;
}

void rdmig_auth_key_free(struct rdmig_auth_key *key)
{
	size_t len = key_map_len();

	if (!key)
		return;
	rdmig_auth_key_wipe(key);
	munlock(key, len);
	munmap(key, len);
}
