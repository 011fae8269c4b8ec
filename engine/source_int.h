/* SPDX-License-Identifier: MIT */
/*
 * The source side's shared state, for its three parts:
 *   source.c          setup, the state machine (rounds, convergence,
 *                     switchover) and the end of a migration;
 *   source_send.c     the per-channel workers, dispatch and the rounds'
 *                     manifests;
 *   source_handover.c what the destination says, and the two-step
 *                     hand-over (FINAL, VERIFIED, GO, GO_ACK) with its
 *                     settling when it is cut.
 * Private to the engine.
 */
#ifndef RDMIG_ENGINE_SOURCE_INT_H
#define RDMIG_ENGINE_SOURCE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "dirty.h"
#include "mig_common.h"
#include "proto.h"
#include "runs.h"

/* Runs planned per dispatch; a round larger than this goes out in chunks. */
#define RUNS_PER_CHUNK (64 * 1024)

struct src_region {
	uint32_t lreg, rreg;
	uint8_t *addr;
	uint64_t len, pages;
	uint64_t *bitmap;
	size_t words;
	/*
	 * Checksum of each page as it was when last sent, taken by the worker
	 * that sent it and carried to the destination in that round's
	 * MANIFEST. A page changed after its checksum was taken is dirty and is
	 * sent (and summed) again; the final round runs with the guest paused,
	 * so each page's last checksum describes exactly what the destination
	 * holds.
	 */
	uint64_t *sums;
	uint64_t *pc; /* post-copy: the pages the destination lacks at the switch */
};

struct mig_src;

struct worker {
	struct mig_src *m;
	pthread_t th;
	unsigned chan;
	struct rdmig_run *runs;
	size_t n, cap;
	bool fence;    /* fence after this chunk */
	bool scan;     /* this dispatch finds the zero pages of the worker's stripes */
	uint64_t seq;  /* fence sequence number */
	uint64_t zero; /* zero pages its scans found */
	int ret;
	struct rdmig_err err;
	uint64_t gen_seen;
	uint64_t bytes;	  /* bytes written, for the rate limit */
	uint64_t t_start; /* rate-limit epoch */
};

struct mig_src {
	struct rdmig_conn *c;
	const struct rdmig_vm *vm;
	const struct rdmig_mig_opts *o;
	struct src_region reg[RDMIG_MIG_MAX_REGIONS];
	unsigned nreg;
	int8_t lreg_idx[RDMIG_MAX_REGIONS]; /* transport region id -> reg[] index */
	uint64_t ram, pages;

	struct worker w[RDMIG_MAX_CHANNELS];
	unsigned nw, started;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t gen;  /* bumped per dispatch */
	unsigned done; /* workers finished with the current dispatch */
	bool quit;
	atomic_bool stop; /* tell workers to give up early */
	_Atomic uint64_t sent_bytes, sent_pages;

	struct rdmig_run *plan;
	uint8_t *mbuf;	/* one MANIFEST being built */
	uint8_t *defer; /* the final round's MANIFESTs, sent after FINAL: be32 length + message */
	size_t defer_len, defer_cap;
	bool deferring;
	uint32_t dst_round;   /* the destination has checked every round up to this */
	uint32_t ended_round; /* the last round whose MANIFEST_END went */
	struct rdmig_mig_stats st;
	struct rdmig_dirty *dirty;
	bool paused;	    /* the migration stopped the guest (cold, switchover) */
	bool manifest_sent; /* MANIFEST_END went (or may have): VERIFIED is possible */
	bool dst_gave_up;   /* VERIFY_FAIL or CANCEL: the destination discards by itself */
	bool go;	    /* decided GO: irrevocable, the guest never resumes here */
	uint8_t id[RDMIG_MIG_ID_LEN];
	char ids[RDMIG_MIG_ID_STR];
	bool hook_paused; /* the soft-dirty harvest hook stopped it for a moment */
	uint64_t t0;
	uint64_t t_pause; /* switchover: the guest stopped here */
	uint8_t *state;	  /* the VM's state blob for FINAL, RDMIG_VM_STATE_MAX bytes */
	bool pc;	  /* this migration switches to post-copy */
	bool pc_phase;	  /* GO went: the destination runs the guest, its pages follow */
	uint64_t pc_pages;
};

static inline bool cancelled(const struct mig_src *m)
{
	return m->o->cancel && *m->o->cancel;
}

static inline bool summing(const struct mig_src *m)
{
	return m->o->verify != RDMIG_VERIFY_OFF;
}

static inline double ms_since(uint64_t t)
{
	return (double)(rdmig_now_ns() - t) / 1e6;
}

/* source.c */
void src_set_state(struct mig_src *m, enum rdmig_mig_state s);

/* source_send.c */
void src_progress(struct mig_src *m);
uint64_t src_count_bits(const struct mig_src *m);
int src_manifest_flush(struct mig_src *m, struct rdmig_err *err);
/*
 * Checksums of pages [first, first + count) of region r into mo, a message
 * of `type` for `round`; each full message goes to the destination (direct)
 * or through the final round's deferral, and mo starts again.
 * src_manifest_end sends what mo still holds.
 */
int src_manifest_sums(struct mig_src *m, struct rdmig_manifest_out *mo, uint16_t type, bool direct,
		      uint32_t round, unsigned r, uint64_t first, uint64_t count,
		      struct rdmig_err *err);
int src_manifest_end(struct mig_src *m, struct rdmig_manifest_out *mo, uint16_t type, bool direct,
		     struct rdmig_err *err);
int src_plan_bulk(struct mig_src *m, struct rdmig_err *err);
int src_send_round(struct mig_src *m, uint64_t seq, uint64_t *bytes_out, struct rdmig_err *err);
int src_workers_start(struct mig_src *m, struct rdmig_err *err);
void src_workers_stop(struct mig_src *m);

/* source_postcopy.c */
struct rdmig_conv;
bool src_pc_due(const struct mig_src *m, const struct rdmig_conv *cv);
int src_pc_prepare(struct mig_src *m, struct rdmig_err *err);
int src_pc_announce(struct mig_src *m, uint32_t round, struct rdmig_err *err);
/* After GO (broken: GO_ACK did not come, the cause in err): until PC_DONE. */
int src_pc_serve(struct mig_src *m, bool broken, struct rdmig_err *err);

/* source_handover.c */
bool src_dst_caught_up(const struct mig_src *m);
/* Before the switch to post-copy: until the destination has checked every round sent. */
int src_pc_wait_dst(struct mig_src *m, struct rdmig_err *err);
/*
 * From FINAL to GO_ACK (and DONE, unless post-copy goes on). In post-copy,
 * *pc_broken says GO went but GO_ACK did not come (the cause in err).
 */
int src_handover(struct mig_src *m, const struct rdmig_msg_final *fin, bool *pc_broken,
		 struct rdmig_err *err);
int src_poll_dst(struct mig_src *m, int timeout_ms, struct rdmig_err *err);
void src_probe_dst(struct mig_src *m);
void src_settle_aborted(struct mig_src *m);
int src_settle_go(struct mig_src *m, struct rdmig_err *err);

#endif
