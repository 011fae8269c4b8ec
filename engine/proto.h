/* SPDX-License-Identifier: MIT */
/*
 * The engine's control messages, carried as application messages
 * (rdmig_ctrl_send type = RDMIG_EMSG_*) on the transport's control channel.
 * Big-endian, fixed layouts, every field validated on decode; see
 * docs/protocol.md, "Migration messages".
 */
#ifndef RDMIG_ENGINE_PROTO_H
#define RDMIG_ENGINE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rdmig/err.h"
#include "rdmig/migrate.h"
#include "rdmig/transport.h"

/*
 * 2: SETUP carries the migration id; the two-step hand-over (VERIFIED, GO, GO_ACK, DONE).
 * 3: verification per round (SETUP's verify mode, MANIFEST per round, ROUND_VERIFIED),
 *    VERIFIED carries the destination's switchover timings.
 * 4: the VM is the embedder's: SETUP carries an opaque config blob instead of
 *    the synthetic guest's vCPUs, workload, seed and rate; FINAL an opaque
 *    state blob instead of the vCPU states.
 * 5: post-copy: SETUP's flags (POSTCOPY), PC_SET and PC_SET_END before FINAL,
 *    PC_DONE and DONE after GO_ACK, PC_RESUME / PC_RESUMED on a new connection.
 */
#define RDMIG_ENGINE_VERSION 5

enum rdmig_emsg {
	RDMIG_EMSG_SETUP = 0x200,  /* src -> dst: RAM layout, VM config, migration id */
	RDMIG_EMSG_SETUP_OK,	   /* dst -> src: allocated, registered, exposed */
	RDMIG_EMSG_ROUND,	   /* reserved (version 1: round progress, never sent) */
	RDMIG_EMSG_FINAL,	   /* src -> dst: last round sent; the VM's state */
	RDMIG_EMSG_MANIFEST,	   /* src -> dst: checksums of pages one round sent */
	RDMIG_EMSG_MANIFEST_END,   /* src -> dst: a round's checksums are all sent */
	RDMIG_EMSG_VERIFIED,	   /* dst -> src: remote access revoked, every page verified */
	RDMIG_EMSG_VERIFY_FAIL,	   /* dst -> src: a page does not match */
	RDMIG_EMSG_CANCEL,	   /* either way: give up, with a reason */
	RDMIG_EMSG_GO,		   /* src -> dst: the source decided GO, irrevocably */
	RDMIG_EMSG_GO_ACK,	   /* dst -> src: the guest runs at the destination */
	RDMIG_EMSG_DONE,	   /* src -> dst: GO_ACK (or RESOLVED) arrived, nothing is open */
	RDMIG_EMSG_RESOLVE,	   /* src -> dst, new connection: the source's decision */
	RDMIG_EMSG_RESOLVED,	   /* dst -> src: what the destination did with it */
	RDMIG_EMSG_ROUND_VERIFIED, /* dst -> src: every round up to this one is checked */
	RDMIG_EMSG_STATE,	   /* src -> dst: more of the VM's state, after FINAL */
	RDMIG_EMSG_PC_SET,	   /* src -> dst: pages post-copy fetches, with their checksums */
	RDMIG_EMSG_PC_SET_END,	   /* src -> dst: the set is complete (page count) */
	RDMIG_EMSG_PC_DONE,	   /* dst -> src: every page placed; the figures */
	RDMIG_EMSG_PC_RESUME,	   /* src -> dst, new connection: carry on with post-copy */
	RDMIG_EMSG_PC_RESUMED,	   /* dst -> src: go on (the source exposes its RAM again) */
};

/* SETUP flags. */
#define RDMIG_SETUP_F_POSTCOPY 0x1u /* the source may switch to post-copy */
#define RDMIG_SETUP_F_KNOWN    RDMIG_SETUP_F_POSTCOPY

/* A migration's id: 128 random bits, chosen by the source, in SETUP. */
#define RDMIG_MIG_ID_LEN 16
/* The id as 32 lower-case hex digits and a NUL. */
#define RDMIG_MIG_ID_STR 33
void rdmig_mig_id_str(const uint8_t *id, char *out);

struct rdmig_msg_setup {
	uint32_t version;
	uint32_t page_size;
	uint32_t nregions;
	uint32_t channels;
	uint64_t region_len[RDMIG_MIG_MAX_REGIONS];
	/* NUMA node holding most of each region at the source, -1 unknown (0..1023). */
	int32_t region_node[RDMIG_MIG_MAX_REGIONS];
	uint8_t id[RDMIG_MIG_ID_LEN]; /* never all zero */
	uint32_t verify;	      /* enum rdmig_verify_mode; on the wire + 1 (0 refused) */
	uint32_t flags;		      /* RDMIG_SETUP_F_* */
	uint32_t config_len;	      /* the VM's config blob, opaque to the engine */
	uint8_t config[RDMIG_VM_CONFIG_MAX];
};

/* Highest NUMA node number SETUP accepts (the kernel's MAX_NUMNODES limit). */
#define RDMIG_SETUP_MAX_NODE 1023
/* Largest SETUP message: 64 fixed bytes, 12 per region, the config blob. */
#define RDMIG_SETUP_MAX_LEN (64 + 12 * RDMIG_MIG_MAX_REGIONS + RDMIG_VM_CONFIG_MAX)

/*
 * FINAL: rounds (be32), the state's whole length (be32), final fence (be64),
 * then the state's first min(length, RDMIG_FINAL_INLINE) bytes; STATE
 * messages carry the rest, in order.
 */
#define RDMIG_FINAL_FIXED  16
#define RDMIG_FINAL_INLINE (RDMIG_CTRL_MAX_PAYLOAD - RDMIG_FINAL_FIXED)
struct rdmig_msg_final {
	uint32_t rounds;
	uint32_t state_len; /* the whole state, at most RDMIG_VM_STATE_MAX */
	uint64_t final_seq;
	/* encode: the whole state; decode: the inline part, pointing into the message */
	const uint8_t *state;
	uint32_t inline_len; /* decode: bytes of the state FINAL itself carries */
};

/*
 * STATE: offset (be32), 4 zero bytes, then 1 .. RDMIG_STATE_CHUNK bytes of
 * the state at that offset. The decoder wants the offset where the state
 * received so far (`have` bytes) ends, and no byte past `total`.
 */
#define RDMIG_STATE_FIXED 8
#define RDMIG_STATE_CHUNK (RDMIG_CTRL_MAX_PAYLOAD - RDMIG_STATE_FIXED)
size_t rdmig_msg_state_encode(uint8_t *buf, uint32_t offset, const uint8_t *data, size_t n);
int rdmig_msg_state_decode(const uint8_t *buf, size_t len, uint32_t have, uint32_t total,
			   const uint8_t **data, size_t *n, struct rdmig_err *err);

/*
 * MANIFEST: round (be32), groups (be32), then per group region (be32),
 * count (be32), first page (be64) and count checksums (be64): the pages one
 * round sent, as runs. A message never exceeds RDMIG_MANIFEST_MAX bytes.
 */
#define RDMIG_MANIFEST_MAX   RDMIG_CTRL_MAX_PAYLOAD
#define RDMIG_MANIFEST_FIXED 8
#define RDMIG_MANIFEST_GROUP 16

struct rdmig_msg_manifest {
	uint32_t round;
	uint32_t groups;
	const uint8_t *body; /* the groups, validated, pointing into the message */
	size_t body_len;
};

struct rdmig_manifest_group {
	uint32_t region;
	uint32_t count;
	uint64_t first_page;
	const uint8_t *sums; /* count big-endian u64s */
};

/* Builder: start a message for `round` in buf (RDMIG_MANIFEST_MAX bytes). */
struct rdmig_manifest_out {
	uint8_t *buf;
	size_t len;
	uint32_t groups;
};
void rdmig_manifest_begin(struct rdmig_manifest_out *o, uint8_t *buf, uint32_t round);
/* Appends up to `count` checksums as one group; returns how many fit (0: full). */
uint32_t rdmig_manifest_add(struct rdmig_manifest_out *o, uint32_t region, uint64_t first_page,
			    const uint64_t *sums, uint32_t count);

/* Checks every group: region < nregions, 1 <= count, pages inside the region, exact length. */
int rdmig_msg_manifest_decode(const uint8_t *buf, size_t len, const uint64_t *region_pages,
			      uint32_t nregions, struct rdmig_msg_manifest *m,
			      struct rdmig_err *err);
/* The group at *off of a decoded message; advances *off. false after the last. */
bool rdmig_manifest_next(const struct rdmig_msg_manifest *m, size_t *off,
			 struct rdmig_manifest_group *g);

/*
 * MANIFEST_END and ROUND_VERIFIED: round (be32), 4 zero bytes, a count
 * (be64): the pages that round's MANIFESTs carried, or the pages the
 * destination has checked so far.
 */
#define RDMIG_ROUND_MSG_LEN 16
size_t rdmig_msg_round_encode(uint8_t *buf, uint32_t round, uint64_t count);
int rdmig_msg_round_decode(const uint8_t *buf, size_t len, const char *what, uint32_t *round,
			   uint64_t *count, struct rdmig_err *err);

/*
 * VERIFIED: pages verified (be64), then what the destination spent in the
 * switchover, in microseconds (be32 each): waiting for the final fences,
 * revoking remote access, verifying; 4 zero bytes.
 */
#define RDMIG_VERIFIED_LEN 24
struct rdmig_msg_verified {
	uint64_t pages;
	uint32_t fence_us, revoke_us, verify_us;
};
size_t rdmig_msg_verified_encode(uint8_t *buf, const struct rdmig_msg_verified *m);
int rdmig_msg_verified_decode(const uint8_t *buf, size_t len, struct rdmig_msg_verified *m,
			      struct rdmig_err *err);

struct rdmig_msg_verify_fail {
	uint32_t region;
	uint64_t page;
	uint64_t expected;
	uint64_t found;
	uint64_t mismatches;
};

size_t rdmig_msg_setup_encode(uint8_t *buf, const struct rdmig_msg_setup *m);
int rdmig_msg_setup_decode(const uint8_t *buf, size_t len, uint64_t max_ram,
			   struct rdmig_msg_setup *m, struct rdmig_err *err);

size_t rdmig_msg_final_encode(uint8_t *buf, const struct rdmig_msg_final *m);
/* buf: RDMIG_CTRL_MAX_PAYLOAD bytes; the state beyond RDMIG_FINAL_INLINE is left to STATE. */
int rdmig_msg_final_decode(const uint8_t *buf, size_t len, struct rdmig_msg_final *m,
			   struct rdmig_err *err);

size_t rdmig_msg_verify_fail_encode(uint8_t *buf, const struct rdmig_msg_verify_fail *m);
int rdmig_msg_verify_fail_decode(const uint8_t *buf, size_t len, struct rdmig_msg_verify_fail *m,
				 struct rdmig_err *err);

/*
 * GO, GO_ACK and DONE: the migration id alone (16 bytes). The decoder
 * refuses any other length and an id other than `want`, naming `what`.
 */
size_t rdmig_msg_id_encode(uint8_t *buf, const uint8_t *id);
int rdmig_msg_id_decode(const uint8_t *buf, size_t len, const uint8_t *want, const char *what,
			struct rdmig_err *err);

/* RESOLVE's decision: what the source did with the guest. */
enum rdmig_decision {
	RDMIG_DECIDED_GO = 1,	   /* handed over: it never resumes the guest */
	RDMIG_DECIDED_ABORTED = 2, /* kept: the guest runs (or will run) at the source */
};

/* RESOLVED's state: what the destination did on hearing it. */
enum rdmig_dst_outcome {
	RDMIG_DST_RUNNING = 1,	 /* the guest runs here */
	RDMIG_DST_DISCARDED = 2, /* the guest was never started here and is gone */
};

/* RESOLVE and RESOLVED: id (16 bytes), value (be32), 4 reserved zero bytes. */
#define RDMIG_RESOLVE_LEN 24

struct rdmig_msg_resolve {
	uint8_t id[RDMIG_MIG_ID_LEN];
	uint32_t value; /* enum rdmig_decision (RESOLVE) or rdmig_dst_outcome (RESOLVED) */
};

size_t rdmig_msg_resolve_encode(uint8_t *buf, const struct rdmig_msg_resolve *m);
/* `type` is RDMIG_EMSG_RESOLVE or RDMIG_EMSG_RESOLVED: which values are valid. */
int rdmig_msg_resolve_decode(const uint8_t *buf, size_t len, uint16_t type,
			     struct rdmig_msg_resolve *m, struct rdmig_err *err);

/*
 * PC_SET is laid out as MANIFEST (the round is the final round, whose own
 * MANIFEST_END follows FINAL) and decoded by the same function; PC_SET_END
 * as MANIFEST_END (the set's page count). PC_RESUME and PC_RESUMED carry
 * the migration id alone, like GO.
 *
 * PC_DONE: id (16 bytes), pages placed, of them on demand, bytes fetched
 * (be64 each), fetch latency p50, p99 and max in microseconds, recoveries
 * (be32 each).
 */
#define RDMIG_PC_DONE_LEN 56
struct rdmig_msg_pc_done {
	uint64_t pages, demand, bytes;
	uint32_t p50_us, p99_us, max_us, recoveries;
};
size_t rdmig_msg_pc_done_encode(uint8_t *buf, const uint8_t *id, const struct rdmig_msg_pc_done *m);
int rdmig_msg_pc_done_decode(const uint8_t *buf, size_t len, const uint8_t *want,
			     struct rdmig_msg_pc_done *m, struct rdmig_err *err);

/* CANCEL: 4-byte negative errno + message text (at most 256 bytes). */
size_t rdmig_msg_cancel_encode(uint8_t *buf, int code, const char *why);
int rdmig_msg_cancel_decode(const uint8_t *buf, size_t len, int *code, char *why, size_t cap,
			    struct rdmig_err *err);

#endif
