/* SPDX-License-Identifier: MIT */
/*
 * The destination's verification of what it received (engine/verify.c).
 *
 * Per page it keeps the round and checksum of the last copy the source
 * announced (MANIFEST), and the round whose copy was found to match. A page
 * is verified when the match is for its last announced round; a page never
 * announced must be zero (the destination's RAM starts zeroed).
 *
 * rounds mode: background threads check each announced copy once the
 * round's fence has landed on every channel, and pages never announced once
 * the bulk round has ended. A copy that does not match is not an error yet
 * (the source may already be rewriting the page): it goes on a suspect
 * list, and rdmig_vfy_finish() checks again those suspects whose last copy
 * has not matched. Everything else at switchover is the final round's own
 * checks, so the downtime verifies O(dirty) pages.
 * full mode: no background work; rdmig_vfy_finish() checks every page.
 * off: nothing is checked.
 *
 * Threads: one control thread calls _manifest, _round_end and _finish;
 * receivers call _fence; the checks run on the verifier's own threads.
 */
#ifndef RDMIG_ENGINE_VERIFY_H
#define RDMIG_ENGINE_VERIFY_H

#include <stdint.h>

#include "rdmig/migrate.h"
#include "proto.h"

struct rdmig_vfy;

struct rdmig_vfy_cfg {
	enum rdmig_verify_mode mode;
	unsigned nregions;
	uint8_t *addr[RDMIG_MIG_MAX_REGIONS];
	uint64_t pages[RDMIG_MIG_MAX_REGIONS];
	unsigned channels; /* whose fences a round waits for */
	unsigned threads;  /* background checkers (rounds mode), >= 1 */
	/*
	 * Rounds mode: every round up to `round` is checked (called from a
	 * checker thread, or from the control thread inside _round_end).
	 */
	void (*ack)(void *ctx, uint32_t round, uint64_t checked);
	void *ctx;
};

int rdmig_vfy_create(const struct rdmig_vfy_cfg *cfg, struct rdmig_vfy **out,
		     struct rdmig_err *err);
/* Stops and joins the checkers; NULL is fine. */
void rdmig_vfy_destroy(struct rdmig_vfy *v);

/* Memory the verifier holds for the guest, in bytes. */
uint64_t rdmig_vfy_overhead(const struct rdmig_vfy *v);

/* Record the checksums of a decoded MANIFEST and queue their checks. */
int rdmig_vfy_manifest(struct rdmig_vfy *v, const struct rdmig_msg_manifest *mf,
		       struct rdmig_err *err);

/* MANIFEST_END: `pages` must be what this round's MANIFESTs carried. */
int rdmig_vfy_round_end(struct rdmig_vfy *v, uint32_t round, uint64_t pages, struct rdmig_err *err);

/* Channel `chan` has landed everything up to the fence of `round`. */
void rdmig_vfy_fence(struct rdmig_vfy *v, unsigned chan, uint32_t round);

/* Pages checked so far (every copy counts). */
uint64_t rdmig_vfy_checked(struct rdmig_vfy *v);

/*
 * Post-copy: the pages set in `bitmap` (bit p = page p of `region`) are not
 * checked by _finish: post-copy drops their copies here and checks each one
 * it fetches. The bitmap must outlive _finish.
 */
void rdmig_vfy_except(struct rdmig_vfy *v, unsigned region, const uint64_t *bitmap);
/*
 * Every final fence is in and remote access is revoked: finish the checks
 * (wait for the queued ones, re-check suspects; full mode: every page).
 * 0 when every page's last copy matched (*verified: pages of the guest), or
 * -EILSEQ with the first bad page in *f and the message in err.
 */
int rdmig_vfy_finish(struct rdmig_vfy *v, struct rdmig_msg_verify_fail *f, uint64_t *verified,
		     struct rdmig_err *err);

#endif
