/* SPDX-License-Identifier: MIT */
/* Internal helpers shared by the source and destination state machines. */
#ifndef RDMIG_MIG_COMMON_H
#define RDMIG_MIG_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "rdmig/migrate.h"
#include "proto.h"

/* A fence sequence number with this bit set closes the migration's last round. */
#define RDMIG_SEQ_FINAL (1ull << 63)
/* How long a blocking control receive waits before checking for cancel. */
#define RDMIG_POLL_MS 200

/*
 * Pages travel in stripes of RDMIG_STRIPE_BYTES (region offsets), dealt to
 * the data channels in turn; a page always travels on the same channel, so
 * its copies land in the order they were sent. One stripe is one word of a
 * dirty bitmap (64 pages).
 */
#define RDMIG_STRIPE_BYTES (256 * 1024)

static inline unsigned rdmig_stripe_chan(uint64_t region_off, unsigned nchan)
{
	return (unsigned)((region_off / RDMIG_STRIPE_BYTES) % nchan);
}

/* Checksum of one page (XXH3, 64 bits). */
uint64_t rdmig_page_sum(const void *page);

/* True if the page is all zero bytes. */
int rdmig_page_is_zero(const void *page);

/*
 * The test hook (opts.test_fault_*) at `step`, if it is the configured one:
 * SIGKILL or SIGSTOP this process, or abort `c` and return true (the caller
 * then skips the send it was about to make). `side` names it in the log.
 */
bool rdmig_mig_test_fault(const struct rdmig_mig_opts *o, struct rdmig_conn *c,
			  enum rdmig_handover_step step, const char *side);

/* A fresh random migration id (RDMIG_MIG_ID_LEN bytes, never all zero). */
int rdmig_mig_new_id(uint8_t *id, struct rdmig_err *err);

/* Write the regions' bytes, in order, to the file at `path` (--dump-ram, for cmp). */
int rdmig_mig_dump(const struct rdmig_vm_region *regs, unsigned n, const char *path,
		   struct rdmig_err *err);

void rdmig_mig_emit(const struct rdmig_mig_opts *o, enum rdmig_event_type type,
		    const struct rdmig_mig_stats *st);

#endif
