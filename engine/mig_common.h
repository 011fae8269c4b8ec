/* SPDX-License-Identifier: MIT */
/* Internal helpers shared by the source and destination state machines. */
#ifndef RDMIG_MIG_COMMON_H
#define RDMIG_MIG_COMMON_H

#include <stdint.h>

#include "clock.h"
#include "migrate.h"

/* A fence sequence number with this bit set closes the migration's last round. */
#define RDMIG_SEQ_FINAL (1ull << 63)
/* How long a blocking control receive waits before checking for cancel. */
#define RDMIG_POLL_MS 200

/* Checksum of one page (XXH3, 64 bits). */
uint64_t rdmig_page_sum(const void *page);

/* True if the page is all zero bytes. */
int rdmig_page_is_zero(const void *page);

void rdmig_mig_emit(const struct rdmig_mig_opts *o, enum rdmig_event_type type,
		    const struct rdmig_mig_stats *st);

#endif
