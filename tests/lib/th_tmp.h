/* SPDX-License-Identifier: MIT */
/* Temporary files of a test: one directory per process, gone when it exits. */
#ifndef RDMIG_TEST_TH_TMP_H
#define RDMIG_TEST_TH_TMP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rdmig/err.h"

/*
 * This process's directory under $TMPDIR (default /tmp), made on first use
 * and removed, with everything in it, when the process exits normally.
 * NULL, after a line saying why, if it cannot be made.
 */
const char *th_tmpdir(void);

/* "TMPDIR/name" into buf (empty when there is no directory); returns buf. */
char *th_tmp_path(char *buf, size_t len, const char *name);

/* Create or replace `path` with `len` bytes of `buf`, with permissions `mode`. */
int th_write_file(const char *path, const void *buf, size_t len, mode_t mode,
		  struct rdmig_err *err);

/* A whole file into a malloc'd buffer (*buf, *len); the caller frees it. */
int th_read_file(const char *path, uint8_t **buf, size_t *len, struct rdmig_err *err);

#endif
