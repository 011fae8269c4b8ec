/* SPDX-License-Identifier: MIT */
/*
 * The source's side of the conversation with the destination after the
 * rounds start: ROUND_VERIFIED, its CANCEL or VERIFY_FAIL, and the two-step
 * hand-over (FINAL, VERIFIED, GO, GO_ACK). Once `go` is set the guest never
 * resumes here; a hand-over cut after that is settled through the settle
 * service (settle.h) rather than guessed.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "log.h"
#include "settle.h"
#include "source_int.h"

/* The destination's CANCEL or VERIFY_FAIL as this side's error; it discards by itself. */
static int dst_refused(struct mig_src *m, uint16_t type, const uint8_t *buf, size_t len,
		       struct rdmig_err *err)
{
	struct rdmig_msg_verify_fail f;
	char why[260];
	int code, ret;

	m->dst_gave_up = true;
	if (type == RDMIG_EMSG_CANCEL) {
		if (rdmig_msg_cancel_decode(buf, len, &code, why, sizeof(why), err))
			return -EPROTO;
		return rdmig_seterr(err, code, "destination cancelled: %s", why);
	}
	ret = rdmig_msg_verify_fail_decode(buf, len, &f, err);
	if (ret)
		return ret;
	return rdmig_seterr(
	    err, -EILSEQ,
	    "destination verify failed: region %u page %" PRIu64 " (offset 0x%" PRIx64
	    ") has checksum %016" PRIx64 ", source sent %016" PRIx64 "; %" PRIu64 " page(s) differ",
	    f.region, f.page, f.page * RDMIG_PAGE_SIZE, f.found, f.expected, f.mismatches);
}

/*
 * Read what the destination said meanwhile, waiting up to timeout_ms for
 * the first message: ROUND_VERIFIED moves dst_round; CANCEL or VERIFY_FAIL
 * end the migration.
 */
static int dst_refused(struct mig_src *m, uint16_t type, const uint8_t *buf, size_t len,
		       struct rdmig_err *err);

int src_poll_dst(struct mig_src *m, int timeout_ms, struct rdmig_err *err)
{
	uint8_t buf[512];
	uint16_t type;
	size_t len;
	uint32_t round;
	uint64_t checked;
	int ret;

	for (;;) {
		ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, timeout_ms, err);
		if (ret == -ETIMEDOUT) {
			rdmig_err_clear(err);
			return 0;
		}
		if (ret)
			return ret;
		if (type == RDMIG_EMSG_CANCEL || type == RDMIG_EMSG_VERIFY_FAIL)
			return dst_refused(m, type, buf, len, err);
		if (type != RDMIG_EMSG_ROUND_VERIFIED)
			return rdmig_seterr(err, -EPROTO,
					    "unexpected message 0x%x from the destination during "
					    "the rounds",
					    type);
		ret = rdmig_msg_round_decode(buf, len, "ROUND_VERIFIED", &round, &checked, err);
		if (ret)
			return ret;
		if (round > m->ended_round)
			return rdmig_seterr(err, -EPROTO,
					    "ROUND_VERIFIED for round %u, only %u rounds ended",
					    round, m->ended_round);
		if (round > m->dst_round)
			m->dst_round = round;
		timeout_ms = 0;
	}
}

/* Rounds mode: has the destination checked everything sent so far? */
bool src_dst_caught_up(const struct mig_src *m)
{
	return m->o->verify != RDMIG_VERIFY_ROUNDS || m->dst_round >= m->ended_round;
}

int src_pc_wait_dst(struct mig_src *m, struct rdmig_err *err)
{
	uint64_t deadline = rdmig_now_ns() + m->o->commit_timeout_ns;

	while (!src_dst_caught_up(m)) {
		int ret = src_poll_dst(m, RDMIG_POLL_MS, err);

		if (ret)
			return ret;
		if (cancelled(m))
			return rdmig_seterr(err, -ECANCELED, "migration cancelled");
		if (rdmig_now_ns() > deadline)
			return rdmig_seterr(err, -ETIMEDOUT,
					    "the destination did not check the rounds it holds "
					    "within %.0f s (--commit-timeout)",
					    (double)m->o->commit_timeout_ns / 1e9);
	}
	return 0;
}

/*
 * Wait for VERIFIED until `deadline`. The source has not decided yet, so a
 * cancel still counts; the destination's CANCEL or VERIFY_FAIL end it.
 */
static int await_verified(struct mig_src *m, uint64_t deadline, struct rdmig_err *err)
{
	uint8_t buf[512];
	uint16_t type;
	size_t len;
	int ret;

	for (;;) {
		if (cancelled(m))
			return rdmig_seterr(err, -ECANCELED, "migration cancelled");
		ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, RDMIG_POLL_MS, err);
		if (ret == -ETIMEDOUT) {
			rdmig_err_clear(err);
			if (rdmig_now_ns() > deadline)
				return rdmig_seterr(err, -ETIMEDOUT,
						    "the destination did not verify within %.0f s "
						    "(--commit-timeout)",
						    (double)m->o->commit_timeout_ns / 1e9);
			continue;
		}
		if (ret)
			return ret;
		if (type == RDMIG_EMSG_VERIFIED) {
			struct rdmig_msg_verified v;

			ret = rdmig_msg_verified_decode(buf, len, &v, err);
			if (ret)
				return ret;
			m->st.verified_pages = v.pages;
			m->st.down.fences_ms = (double)v.fence_us / 1e3;
			m->st.down.revoke_ms = (double)v.revoke_us / 1e3;
			m->st.down.verify_ms = (double)v.verify_us / 1e3;
			return 0;
		}
		/* Acknowledgements of the last rounds, overtaken by the switchover. */
		if (type == RDMIG_EMSG_ROUND_VERIFIED)
			continue;
		if (type == RDMIG_EMSG_VERIFY_FAIL || type == RDMIG_EMSG_CANCEL)
			return dst_refused(m, type, buf, len, err);
		return rdmig_seterr(err, -EPROTO,
				    "unexpected message 0x%x while waiting for VERIFIED", type);
	}
}

/* Decided GO: wait for GO_ACK. Any failure leaves the outcome to settle. */
static int await_go_ack(struct mig_src *m, struct rdmig_err *err)
{
	uint8_t buf[300];
	uint16_t type;
	size_t len;
	int ret;

	ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len,
			      (int)(m->o->commit_timeout_ns / 1000000), err);
	if (ret == -ETIMEDOUT) {
		rdmig_err_clear(err);
		return rdmig_seterr(err, -ETIMEDOUT, "no GO_ACK within %.0f s (--commit-timeout)",
				    (double)m->o->commit_timeout_ns / 1e9);
	}
	if (ret)
		return ret;
	if (type != RDMIG_EMSG_GO_ACK)
		return rdmig_seterr(err, -EPROTO, "expected GO_ACK, got message 0x%x", type);
	return rdmig_msg_id_decode(buf, len, m->id, "GO_ACK", err);
}

/*
 * The two-step hand-over, from FINAL on (rdmig/migrate.h). Returns 0 once GO_ACK
 * came; any error before `go` is an abort, after it a cut hand-over.
 */
int src_handover(struct mig_src *m, const struct rdmig_msg_final *fin, bool *pc_broken,
		 struct rdmig_err *err)
{
	const struct rdmig_mig_opts *o = m->o;
	uint64_t deadline, t = rdmig_now_ns();
	uint8_t *buf;
	size_t len;
	int ret;

	if (rdmig_mig_test_fault(o, m->c, RDMIG_STEP_FINAL, "source"))
		return rdmig_seterr(err, -ECONNABORTED, "test: dropped instead of FINAL");
	buf = malloc(RDMIG_CTRL_MAX_PAYLOAD);
	if (!buf)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	len = rdmig_msg_final_encode(buf, fin);
	/* Unverified, FINAL (with the rest of the state) closes the hand-over. */
	if (!summing(m))
		m->manifest_sent = true;
	ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_FINAL, buf, len, err);
	/* A state longer than FINAL holds follows in order, before the manifest. */
	for (uint32_t off = RDMIG_FINAL_INLINE; !ret && off < fin->state_len;) {
		size_t n = fin->state_len - off;

		if (n > RDMIG_STATE_CHUNK)
			n = RDMIG_STATE_CHUNK;
		len = rdmig_msg_state_encode(buf, off, fin->state + off, n);
		ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_STATE, buf, len, err);
		off += (uint32_t)n;
	}
	free(buf);
	if (ret)
		return ret;

	src_set_state(m, RDMIG_MIG_VERIFY);
	if (rdmig_mig_test_fault(o, m->c, RDMIG_STEP_MANIFEST, "source"))
		return rdmig_seterr(err, -ECONNABORTED, "test: dropped instead of the manifest");
	ret = src_manifest_flush(m, err);
	if (ret)
		return ret;
	m->st.down.handover_ms = ms_since(t);
	t = rdmig_now_ns();
	deadline = t + o->commit_timeout_ns;
	ret = await_verified(m, deadline, err);
	if (ret)
		return ret;
	m->st.down.verified_ms = ms_since(t);
	t = rdmig_now_ns();
	rdmig_mig_test_fault(o, m->c, RDMIG_STEP_VERIFIED, "source");
	/* The decision is taken now: whatever held us up since VERIFIED counts. */
	if (rdmig_conn_failed(m->c, err))
		return err && err->code ? err->code : -ECONNRESET;
	if (rdmig_now_ns() > deadline)
		return rdmig_seterr(err, -ETIMEDOUT,
				    "VERIFIED came, but the commit deadline (%.0f s) had passed "
				    "before this side could decide",
				    (double)o->commit_timeout_ns / 1e9);
	if (cancelled(m))
		return rdmig_seterr(err, -ECANCELED, "migration cancelled");

	m->go = true;
	log_info("migration %s: decided GO", m->ids);
	if (o->dump_ram) {
		struct rdmig_err derr = RDMIG_ERR_INIT;

		/* Paused since the final harvest: this is what the destination holds. */
		if (rdmig_mig_dump(m->vm->regions, m->nreg, o->dump_ram, &derr))
			log_err("%s", rdmig_err_str(&derr));
	}
	src_set_state(m, RDMIG_MIG_COMMIT);
	if (!rdmig_mig_test_fault(o, m->c, RDMIG_STEP_GO, "source")) {
		uint8_t b[RDMIG_MIG_ID_LEN];

		len = rdmig_msg_id_encode(b, m->id);
		ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_GO, b, len, err);
		if (ret)
			return ret;
	}
	ret = await_go_ack(m, err);
	if (ret && m->pc) {
		/* The destination may run the guest: post-copy's recovery finds out. */
		*pc_broken = true;
		return 0;
	}
	if (ret)
		return ret;
	/* The guest runs at the destination: the downtime ends here, not after our cleanup. */
	m->st.down.commit_ms = ms_since(t);
	m->st.downtime_ms = ms_since(m->t_pause);
	/* Post-copy: DONE waits for the destination's PC_DONE. */
	if (m->pc)
		return 0;
	if (!rdmig_mig_test_fault(o, m->c, RDMIG_STEP_GO_ACK, "source")) {
		uint8_t b[RDMIG_MIG_ID_LEN];

		len = rdmig_msg_id_encode(b, m->id);
		/* Only spares the destination its wait: the guest runs there either way. */
		rdmig_ctrl_send(m->c, RDMIG_EMSG_DONE, b, len, NULL);
	}
	return 0;
}

/*
 * Aborting after the manifest: is the destination still on this connection?
 * One that gave up waiting for GO has closed it and waits for RESOLVE
 * instead; a CANCEL sent into the closed connection would never reach it.
 * Reading what is already here tells (a late VERIFIED is dropped: the
 * decision is taken).
 */
void src_probe_dst(struct mig_src *m)
{
	uint8_t buf[512];
	uint16_t type;
	size_t len;

	if (rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, 0, NULL))
		return;
	if (type == RDMIG_EMSG_CANCEL || type == RDMIG_EMSG_VERIFY_FAIL)
		m->dst_gave_up = true;
}

/*
 * Decided GO, and the hand-over was cut (the cause in err): settle it. 0 when
 * the destination runs the guest; RDMIG_MIG_EUNKNOWN when it could not be
 * told; an error with `go` cleared when it says it discarded the guest, so
 * the guest may run here again.
 */
int src_settle_go(struct mig_src *m, struct rdmig_err *err)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	enum rdmig_dst_outcome out;
	char cause[RDMIG_ERR_MSG_MAX];

	snprintf(cause, sizeof(cause), "%s", rdmig_err_str(err));
	log_warn("migration %s: decided GO, then %s: settling (up to %.0f s)", m->ids, cause,
		 (double)m->o->commit_grace_ns / 1e9);
	src_set_state(m, RDMIG_MIG_SETTLING);
	rdmig_err_clear(err);
	if (rdmig_settle_src(m->o, m->id, RDMIG_DECIDED_GO, &out, &e))
		return rdmig_seterr(err, RDMIG_MIG_EUNKNOWN,
				    "outcome unknown for migration %s: decided GO, then %s; %s. "
				    "The guest stays paused here",
				    m->ids, cause, rdmig_err_str(&e));
	if (out == RDMIG_DST_RUNNING)
		return 0;
	/* Only a destination that never started it says so: it may run here again. */
	m->go = false;
	m->dst_gave_up = true;
	return rdmig_seterr(err, -ECONNABORTED,
			    "the destination discarded migration %s after GO: the guest runs here",
			    m->ids);
}

/*
 * Aborted after the manifest went, on a connection that failed: the
 * destination may be prepared and waiting for word. Best effort: the guest
 * runs here already, this only spares the destination its grace.
 */
void src_settle_aborted(struct mig_src *m)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	enum rdmig_dst_outcome out;

	if (rdmig_settle_src(m->o, m->id, RDMIG_DECIDED_ABORTED, &out, &e))
		log_warn("migration %s: could not tell the destination that it was aborted: %s",
			 m->ids, rdmig_err_str(&e));
}
