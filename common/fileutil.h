/* SPDX-License-Identifier: MIT */
/* Reading the small one-line files of /proc and /sys. */
#ifndef RDMIG_FILEUTIL_H
#define RDMIG_FILEUTIL_H

#include <stddef.h>

/*
 * First line of a small file, without its newline, into buf (always
 * terminated; empty on failure). Returns 0, or -1 if it cannot be read.
 */
int rdmig_read_line(const char *path, char *buf, size_t len);

/* The same with a printf-style path. */
int rdmig_read_linef(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
