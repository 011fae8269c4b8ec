/* SPDX-License-Identifier: MIT */
/*
 * Post-copy through the relay: when to switch, and recovering a post-copy
 * whose relay streams broke (orchestrate.h says what is promised).
 *
 * Recovery is QEMU's own: a broken channel pauses both QEMUs in
 * postcopy-paused, each keeping its half of the guest. The destination
 * relay (the same process, or a new one on the same address) has its QEMU
 * listen again with migrate-recover, and the source QEMU is told `migrate`
 * with resume to the in-process source relay, whose socket never went away:
 * the resumed channels are new relay streams like the first ones.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "orchestrate_int.h"

#define RETRY_MS  500
#define RESUME_MS 10000 /* from `migrate` with resume to the source connected */

/* Pre-copy has stopped converging: two passes in a row left at least 9/10 of the one before. */
static bool not_converging(const struct orch *m)
{
	const uint64_t *l = m->pc_left;

	return m->pc_pass >= 3 && l[2] && l[0] * 10 >= l[1] * 9 && l[1] * 10 >= l[2] * 9;
}

int orch_postcopy_maybe_start(struct orch *m, json_t *info, struct rdmig_err *err)
{
	const struct rdmig_qemu_migrate_opts *o = m->o;
	/* dirty-sync-count is 1 during the first pass, N + 1 once N are done. */
	unsigned pass = (unsigned)orch_ram_u64(info, "dirty-sync-count");
	uint64_t left = orch_ram_u64(info, "remaining");
	int64_t ms = (int64_t)((rdmig_now_s() - m->t0) * 1000);
	char why[96] = "";

	if (!o->postcopy || m->res->postcopy || !pass)
		return 0;
	if (pass != m->pc_pass) {
		m->pc_left[2] = m->pc_left[1];
		m->pc_left[1] = m->pc_left[0];
		m->pc_left[0] = left;
		m->pc_pass = pass;
	} else if (left > m->pc_left[0]) {
		m->pc_left[0] = left;
	}
	if (o->postcopy_after_passes && pass > o->postcopy_after_passes)
		snprintf(why, sizeof(why), "after %u pass(es)", o->postcopy_after_passes);
	else if (o->postcopy_after_ms && (uint64_t)ms >= o->postcopy_after_ms)
		snprintf(why, sizeof(why), "after %.1f s of pre-copy", ms / 1000.0);
	else if (!o->postcopy_after_passes && !o->postcopy_after_ms && not_converging(m))
		snprintf(why, sizeof(why),
			 "pre-copy is not converging (%.1f, %.1f, %.1f MiB left at the last "
			 "passes)",
			 m->pc_left[2] / 1048576.0, m->pc_left[1] / 1048576.0,
			 m->pc_left[0] / 1048576.0);
	if (!why[0])
		return 0;
	if (orch_src_cmd(m, "migrate-start-postcopy", NULL, NULL, err))
		return err->code;
	m->res->postcopy = true;
	m->res->postcopy_start_ms = ms;
	log_info("switching to post-copy (%s), in pass %u", why, pass);
	if (m->o->progress)
		fprintf(stderr, "%sswitching to post-copy: %s\n", isatty(2) ? "\n" : "", why);
	return 0;
}

/* The source QEMU's migration status into buf; negative errno when QMP failed. */
static int src_state(struct orch *m, char *buf, size_t len, struct rdmig_err *err)
{
	json_t *info = NULL;

	if (orch_src_cmd(m, "query-migrate", NULL, &info, err))
		return err->code;
	snprintf(buf, len, "%s", json_string_value(json_object_get(info, "status")) ?: "none");
	json_decref(info);
	return 0;
}

/* Post-copy is over for good: say why and what that means for the guest. */
static int lost(struct orch *m, int code, const char *why, struct rdmig_err *err)
{
	char cause[RDMIG_ERR_MSG_MAX];

	snprintf(cause, sizeof(cause), "%s", why);
	m->res->guest_lost = true;
	rdmig_err_clear(err);
	return rdmig_seterr(err, code,
			    "post-copy cannot be recovered: %s. The guest is lost: its running "
			    "state and the pages already moved were on the destination, the "
			    "rest only on the source, and neither QEMU holds all of it (docs/"
			    "reliability.md, QEMU post-copy)",
			    cause);
}

/* Ask the destination relay to have its QEMU listen again; 1: not paused yet. */
static int dst_listen_again(struct orch *m, struct rdmig_err *err)
{
	json_t *r = NULL;
	const char *ms, *detail;
	char why[RDMIG_ERR_MSG_MAX];
	int rc;

	rc = orch_dst_call(m, json_pack("{s:s}", "op", "recover"), &r, err);
	if (rc)
		return rc;
	ms = json_string_value(json_object_get(r, "migration")) ?: "?";
	detail = json_string_value(json_object_get(r, "detail")) ?: "";
	if (json_is_true(json_object_get(r, "listening"))) {
		json_decref(r);
		return 0;
	}
	if (!strcmp(ms, "postcopy-active")) {
		json_decref(r);
		return 1;
	}
	if (!strcmp(ms, "exited"))
		snprintf(why, sizeof(why), "the destination QEMU has exited (%s)", detail);
	else
		snprintf(why, sizeof(why), "the destination QEMU's migration is \"%s\", not paused",
			 ms);
	json_decref(r);
	return lost(m, -EIO, why, err);
}

/*
 * `migrate` with resume returns before the source has connected: until its
 * state leaves postcopy-paused, a poll would take the old pause for a new
 * break and resume twice, which QEMU refuses.
 */
static int wait_resumed(struct orch *m, int64_t deadline, struct rdmig_err *err)
{
	int64_t until = rdmig_deadline_ms(RESUME_MS);
	char st[48];

	for (;;) {
		if (src_state(m, st, sizeof(st), err))
			return lost(m, err->code, err->msg, err);
		if (strcmp(st, "postcopy-paused"))
			return 0;
		if (rdmig_ms_left(until) == 0 || rdmig_ms_left(deadline) == 0) {
			/* Still paused: the next poll starts another recovery. */
			log_warn("post-copy: the source QEMU has not resumed within %d s",
				 RESUME_MS / 1000);
			return 0;
		}
		rdmig_sleep_ms(50);
	}
}

int orch_postcopy_recover(struct orch *m, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms((int)(m->o->recover_wait_ms ?: 300000));
	struct rdmig_err last = RDMIG_ERR_INIT;
	char st[48], uri[128];
	int rc;

	log_warn("post-copy paused: a relay stream broke; recovering over new streams (trying for "
		 "%" PRIu64 " s)",
		 (m->o->recover_wait_ms ?: 300000) / 1000);
	if (m->o->progress)
		fprintf(stderr, "%spost-copy paused: recovering\n", isatty(2) ? "\n" : "");
	for (;;) {
		if (rdmig_ms_left(deadline) == 0) {
			m->res->postcopy_paused = true;
			rdmig_err_clear(err);
			return rdmig_seterr(
			    err, -ETIMEDOUT,
			    "post-copy paused and not recovered within %" PRIu64
			    " s: both QEMUs wait in postcopy-paused with the guest stopped. Start "
			    "`rdmig qemu dst` again and recover by hand: migrate-recover on the "
			    "destination QEMU, then migrate with resume on the source through "
			    "`rdmig qemu src`. Last error: %s",
			    (m->o->recover_wait_ms ?: 300000) / 1000,
			    last.code ? last.msg : "none");
		}
		rdmig_err_clear(err);
		/* The source first: had it died, there is nothing to resume. */
		if (src_state(m, st, sizeof(st), err))
			return lost(m, err->code, err->msg, err);
		if (!strcmp(st, "completed") || !strcmp(st, "postcopy-active") ||
		    !strcmp(st, "postcopy-recover"))
			return 0; /* recovered meanwhile (a late reply of ours) */
		if (strcmp(st, "postcopy-paused")) {
			char why[96];

			snprintf(why, sizeof(why), "the source QEMU's migration is \"%s\"", st);
			return lost(m, -EIO, why, err);
		}
		rc = orch_ctrl_reopen(m, err);
		if (!rc)
			rc = dst_listen_again(m, err);
		if (m->res->guest_lost)
			return rc;
		if (rc == 1)
			rdmig_seterr(&last, -EAGAIN,
				     "the destination QEMU has not noticed the break yet");
		else if (rc)
			last = *err;
		if (!rc)
			break;
		rdmig_sleep_ms(RETRY_MS);
	}
	/* migrate-recover is listening: the source may connect now. */
	snprintf(uri, sizeof(uri), "unix:%s", m->sock_path);
	if (orch_src_cmd(m, "migrate", json_pack("{s:s, s:b}", "uri", uri, "resume", 1), NULL,
			 err)) {
		struct rdmig_err e = *err;

		if (src_state(m, st, sizeof(st), err))
			return lost(m, err->code, err->msg, err);
		*err = e;
		m->res->postcopy_paused = true;
		return rdmig_err_prefix(err, "post-copy paused: resuming the source failed"),
		       err->code;
	}
	m->res->recoveries++;
	log_info("post-copy recovery %u: the source QEMU resumes over new relay streams",
		 m->res->recoveries);
	return wait_resumed(m, deadline, err);
}
