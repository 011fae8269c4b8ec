/* SPDX-License-Identifier: MIT */
/*
 * librdmig's public API in one include: #include <rdmig/rdmig.h> and build
 * with `pkg-config --cflags --libs rdmig` or CMake's find_package(rdmig)
 * (docs/embedding.md).
 *
 *   rdmig/version.h    version macros and rdmig_version()
 *   rdmig/err.h        the error convention every call follows
 *   rdmig/transport.h  connections, regions, one-sided writes, fences,
 *                      control messages, byte streams (rdma and tcp)
 *   rdmig/migrate.h    the migration engine: a VMM's RAM, dirty log,
 *                      pause/resume and state, migrated live
 *   rdmig/guest.h      the synthetic test/demo guest and its adapter
 */
#ifndef RDMIG_RDMIG_H
#define RDMIG_RDMIG_H

#include "rdmig/version.h"
#include "rdmig/err.h"
#include "rdmig/transport.h"
#include "rdmig/auth.h"
#include "rdmig/migrate.h"
#include "rdmig/guest.h"

#endif
