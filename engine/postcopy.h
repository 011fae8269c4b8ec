/* SPDX-License-Identifier: MIT */
/*
 * Post-copy, the parts both sides share, and the destination's side
 * (engine/dest_postcopy.c). The source's side lives with the source
 * (engine/source_postcopy.c, source_int.h). docs/protocol.md, "Post-copy";
 * docs/architecture.md says why the destination places pages the way it
 * does.
 *
 * On tcp a fetch is a request and its reply on a data channel's stream:
 * the request is PC_REQ_LEN bytes (region be32, page count be32, first page
 * be64); the reply repeats those bytes, then the pages. On rdma the
 * destination reads the pages itself (rdmig_read) from the source's guest
 * RAM, which the source exposed for remote read at the switch.
 */
#ifndef RDMIG_ENGINE_POSTCOPY_H
#define RDMIG_ENGINE_POSTCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "bytes.h"
#include "proto.h"
#include "rdmig/migrate.h"

#define PC_REQ_LEN 16
/* The most pages one fetch asks for (background fetches; a fault asks for one). */
#define PC_BATCH_PAGES 16

static inline void pc_req_encode(uint8_t *b, uint32_t region, uint32_t count, uint64_t first)
{
	rdmig_put_be32(b, region);
	rdmig_put_be32(b + 4, count);
	rdmig_put_be64(b + 8, first);
}

static inline void pc_req_decode(const uint8_t *b, uint32_t *region, uint32_t *count,
				 uint64_t *first)
{
	*region = rdmig_get_be32(b);
	*count = rdmig_get_be32(b + 4);
	*first = rdmig_get_be64(b + 8);
}

/* ---- destination (engine/dest_postcopy.c) ------------------------------ */

struct rdmig_pcd;

struct rdmig_pcd_cfg {
	const struct rdmig_mig_opts *o;
	const uint8_t *id; /* the migration's, RDMIG_MIG_ID_LEN bytes */
	unsigned nregions;
	uint8_t *addr[RDMIG_MIG_MAX_REGIONS]; /* the VMM's guest RAM */
	uint64_t pages[RDMIG_MIG_MAX_REGIONS];
	unsigned channels;
};

/*
 * At SETUP, when the source may switch to post-copy: checks that this
 * kernel gives userfaultfd missing-page faults on anonymous memory (the
 * source hears why not) and allocates the set. Nothing is armed yet.
 */
int rdmig_pcd_create(const struct rdmig_pcd_cfg *cfg, struct rdmig_pcd **out,
		     struct rdmig_err *err);
/* PC_SET: these pages are not current here; their checksums as the source holds them. */
int rdmig_pcd_set(struct rdmig_pcd *p, const struct rdmig_msg_manifest *mf, struct rdmig_err *err);
/* PC_SET_END: the set is complete; `count` must be the pages it named. */
int rdmig_pcd_set_end(struct rdmig_pcd *p, uint64_t count, struct rdmig_err *err);
/* A PC_SET started (the source switches to post-copy), and whether it ended. */
bool rdmig_pcd_switching(const struct rdmig_pcd *p);
bool rdmig_pcd_set_complete(const struct rdmig_pcd *p);
/* Region r's set, bit p = page p (for the verifier, which leaves those pages to post-copy). */
const uint64_t *rdmig_pcd_missing(const struct rdmig_pcd *p, unsigned r);
/*
 * Remote write access is revoked and the pre-copy pages are verified: drop
 * the stale copies of the set's pages and register the guest RAM for
 * missing-page faults. From here a touch of such a page waits for its fetch.
 */
int rdmig_pcd_arm(struct rdmig_pcd *p, struct rdmig_err *err);
/*
 * GO came: start serving faults and fetching over `c` (the migration's
 * connection; the source's layout arrived on it before PC_SET).
 */
int rdmig_pcd_start(struct rdmig_pcd *p, struct rdmig_conn *c, struct rdmig_err *err);
/*
 * The guest runs: wait until every page is placed (recovering a broken
 * link within opts.postcopy_recover_ns), tell the source (PC_DONE) and wait
 * for its DONE. Figures go to st. RDMIG_MIG_EPCLOST when the source did
 * not come back: the guest here lacks pages.
 */
int rdmig_pcd_finish(struct rdmig_pcd *p, struct rdmig_mig_stats *st, struct rdmig_err *err);
/*
 * Stops everything and closes the userfaultfd, which releases any thread
 * still waiting on a missing page (it then reads zeros: only after a
 * failure, when the guest is discarded). Safe on NULL and half-built ones.
 */
void rdmig_pcd_destroy(struct rdmig_pcd *p);

#endif
