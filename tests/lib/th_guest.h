/* SPDX-License-Identifier: MIT */
/*
 * Migrations in two-process tests: a synthetic incr guest, whether it still
 * runs, and the two ends of one migration over a fresh connection.
 */
#ifndef RDMIG_TEST_TH_GUEST_H
#define RDMIG_TEST_TH_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "rdmig/guest.h"
#include "rdmig/transport.h"

/*
 * An incr guest of `size` bytes in 2 regions with `vcpus` vCPUs, started
 * when `start` (and given 20 ms to write). A test cannot go on without its
 * guest: on failure this prints the reason and exits 1.
 */
struct rdmig_guest *th_guest_new(uint64_t size, unsigned vcpus, uint64_t seed, bool start);

/* The guest runs: its work counter moves within `timeout_ms` (a busy host can be slow). */
bool th_guest_moves(struct rdmig_guest *g, int timeout_ms);

/* Source: connect with `cfg`, migrate `g`, close the connection. */
int th_migrate_source(const struct rdmig_xport_cfg *cfg, struct rdmig_guest *g,
		      const struct rdmig_mig_opts *o, struct rdmig_mig_stats *st,
		      struct rdmig_err *err);

/* Destination: accept one connection on `l` (60 s at most), receive, close it. */
int th_migrate_dest(struct rdmig_listener *l, const struct rdmig_mig_opts *o,
		    struct rdmig_mig_stats *st, struct rdmig_err *err);

#endif
