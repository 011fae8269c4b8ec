/* SPDX-License-Identifier: MIT */
/*
 * Settling a cut hand-over. Neither side runs the guest while it waits, and
 * neither gives up before the grace has passed: the source connects again
 * and again, the destination accepts whatever comes and serves only the
 * migration it holds.
 */
#include "settle.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* Wait between two attempts of the source: a refused connect returns at once. */
#define RETRY_MS 200
/* The destination's accept slices: short, to see the grace end. */
#define ACCEPT_SLICE_MS 250

static int ms_until(uint64_t deadline_ns)
{
	uint64_t now = rdmig_now_ns();

	return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

static int min_ms(int a, uint64_t b_ns)
{
	uint64_t b = b_ns / 1000000;

	return (uint64_t)a < b ? a : (int)b;
}

/* A CANCEL from the peer, as "destination: WHY" in err. */
static int peer_cancel(const uint8_t *buf, size_t len, const char *who, struct rdmig_err *err)
{
	char why[260];
	int code;

	if (rdmig_msg_cancel_decode(buf, len, &code, why, sizeof(why), err))
		return -EPROTO;
	return rdmig_seterr(err, code, "%s: %s", who, why);
}

/* One RESOLVE on a fresh connection; 0 with *out, else why not. */
static int resolve_once(const struct rdmig_mig_opts *o, struct rdmig_conn *c, const uint8_t *id,
			enum rdmig_decision decision, int wait_ms, enum rdmig_dst_outcome *out,
			struct rdmig_err *err)
{
	struct rdmig_msg_resolve r = {.value = decision};
	uint8_t buf[300];
	uint16_t type;
	size_t len;
	int ret;

	memcpy(r.id, id, RDMIG_MIG_ID_LEN);
	len = rdmig_msg_resolve_encode(buf, &r);
	ret = rdmig_ctrl_send(c, RDMIG_EMSG_RESOLVE, buf, len, err);
	if (!ret)
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, wait_ms, err);
	if (ret)
		return ret;
	if (type == RDMIG_EMSG_CANCEL)
		return peer_cancel(buf, len, "destination", err);
	if (type != RDMIG_EMSG_RESOLVED)
		return rdmig_seterr(err, -EPROTO, "expected RESOLVED, got message 0x%x", type);
	ret = rdmig_msg_resolve_decode(buf, len, RDMIG_EMSG_RESOLVED, &r, err);
	if (!ret && memcmp(r.id, id, RDMIG_MIG_ID_LEN))
		ret = rdmig_seterr(err, -EPROTO, "RESOLVED for another migration");
	if (ret)
		return ret;
	*out = (enum rdmig_dst_outcome)r.value;
	/* The destination serves until it knows we heard; a lost DONE only costs it time. */
	len = rdmig_msg_id_encode(buf, id);
	rdmig_ctrl_send(c, RDMIG_EMSG_DONE, buf, len, NULL);
	(void)o;
	return 0;
}

int rdmig_settle_src(const struct rdmig_mig_opts *o, const uint8_t *id,
		     enum rdmig_decision decision, enum rdmig_dst_outcome *out,
		     struct rdmig_err *err)
{
	uint64_t deadline = rdmig_now_ns() + o->commit_grace_ns;
	struct rdmig_err last = RDMIG_ERR_INIT;
	char ids[RDMIG_MIG_ID_STR];
	unsigned tries = 0;

	rdmig_mig_id_str(id, ids);
	if (!o->settle_conn)
		return rdmig_seterr(err, -ENOTCONN,
				    "no way to reach the destination again (no settle_conn)");
	while (ms_until(deadline) > 0) {
		struct rdmig_conn *c = NULL;
		int left = ms_until(deadline), ret;

		tries++;
		rdmig_err_clear(&last);
		ret = o->settle_conn(o->settle_ctx, left, &c, &last);
		if (!ret) {
			ret = resolve_once(o, c, id, decision,
					   min_ms(ms_until(deadline), o->commit_timeout_ns), out,
					   &last);
			rdmig_conn_destroy(c);
			if (!ret) {
				log_info(
				    "migration %s settled after %u attempt(s): the destination "
				    "says %s",
				    ids, tries,
				    *out == RDMIG_DST_RUNNING ? "the guest runs there"
							      : "it discarded the guest");
				return 0;
			}
		}
		log_info("settling migration %s: %s", ids, rdmig_err_str(&last));
		rdmig_sleep_ms(min_ms(RETRY_MS, (uint64_t)ms_until(deadline) * 1000000ull));
	}
	return rdmig_seterr(err, -ETIMEDOUT,
			    "the destination could not be told within %.0f s (%u attempt(s), last: "
			    "%s)",
			    (double)o->commit_grace_ns / 1e9, tries,
			    last.code ? rdmig_err_str(&last) : "no attempt");
}

/* ---- destination ------------------------------------------------------- */

static void refuse(struct rdmig_conn *c, int code, const char *why)
{
	uint8_t buf[300];
	size_t n = rdmig_msg_cancel_encode(buf, code, why);

	rdmig_ctrl_send(c, RDMIG_EMSG_CANCEL, buf, n, NULL);
}

/* Answer RESOLVE; true once the source confirmed it heard (DONE). */
static bool answer(struct rdmig_settle_dst *s, struct rdmig_conn *c, enum rdmig_dst_outcome st,
		   int wait_ms)
{
	struct rdmig_msg_resolve r = {.value = st};
	uint8_t buf[64];
	uint16_t type;
	size_t len;

	memcpy(r.id, s->id, RDMIG_MIG_ID_LEN);
	len = rdmig_msg_resolve_encode(buf, &r);
	if (rdmig_ctrl_send(c, RDMIG_EMSG_RESOLVED, buf, len, NULL))
		return false;
	if (rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, wait_ms, NULL))
		return false;
	return type == RDMIG_EMSG_DONE && !rdmig_msg_id_decode(buf, len, s->id, "DONE", NULL);
}

/* One connection during the grace: 1 when it settled the migration. */
static int serve_one(struct rdmig_settle_dst *s, struct rdmig_conn *c, int wait_ms,
		     enum rdmig_dst_outcome *out)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_msg_resolve r;
	char ids[RDMIG_MIG_ID_STR], other[RDMIG_MIG_ID_STR], why[200];
	uint8_t buf[RDMIG_SETUP_MAX_LEN + 64];
	uint16_t type;
	size_t len;

	rdmig_mig_id_str(s->id, ids);
	if (rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, wait_ms, &e)) {
		log_warn("settling migration %s: a connection sent nothing: %s", ids,
			 rdmig_err_str(&e));
		return 0;
	}
	if (type != RDMIG_EMSG_RESOLVE) {
		snprintf(why, sizeof(why),
			 "busy settling migration %s: this destination takes no new migration "
			 "for up to %.0f s",
			 ids, (double)s->o->commit_grace_ns / 1e9);
		log_warn("settling migration %s: refused a connection that sent message 0x%x", ids,
			 type);
		refuse(c, -EBUSY, why);
		return 0;
	}
	if (rdmig_msg_resolve_decode(buf, len, type, &r, &e)) {
		refuse(c, -EPROTO, rdmig_err_str(&e));
		return 0;
	}
	if (memcmp(r.id, s->id, RDMIG_MIG_ID_LEN)) {
		rdmig_mig_id_str(r.id, other);
		snprintf(why, sizeof(why), "no migration %s here: this destination is settling %s",
			 other, ids);
		refuse(c, -ESRCH, why);
		return 0;
	}
	if (r.value == RDMIG_DECIDED_GO) {
		if (!s->running) {
			log_warn("migration %s: the source decided GO: the guest runs here", ids);
			s->go(s->ctx);
			s->running = true;
		}
		*out = RDMIG_DST_RUNNING;
		return answer(s, c, RDMIG_DST_RUNNING, wait_ms);
	}
	if (s->running) {
		/* Only a broken source says so after GO: the guest keeps running. */
		log_err("migration %s: the source says it aborted, but it sent GO and the guest "
			"runs here",
			ids);
		*out = RDMIG_DST_RUNNING;
		return answer(s, c, RDMIG_DST_RUNNING, wait_ms);
	}
	*out = RDMIG_DST_DISCARDED;
	answer(s, c, RDMIG_DST_DISCARDED, wait_ms);
	/* Decided either way: the source kept its guest, and heard it or not. */
	return 1;
}

int rdmig_settle_dst(struct rdmig_settle_dst *s, enum rdmig_dst_outcome *out, struct rdmig_err *err)
{
	const struct rdmig_mig_opts *o = s->o;
	uint64_t deadline = rdmig_now_ns() + o->commit_grace_ns;
	char ids[RDMIG_MIG_ID_STR];

	rdmig_mig_id_str(s->id, ids);
	if (!o->settle_conn)
		return rdmig_seterr(err, -ETIMEDOUT,
				    "no listener to hear the source again on (no settle_conn)");
	while (ms_until(deadline) > 0) {
		struct rdmig_err e = RDMIG_ERR_INIT;
		struct rdmig_conn *c = NULL;
		int ret;

		ret = o->settle_conn(o->settle_ctx, min_ms(ACCEPT_SLICE_MS, o->commit_grace_ns), &c,
				     &e);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret) {
			log_warn("settling migration %s: %s", ids, rdmig_err_str(&e));
			rdmig_sleep_ms(min_ms(RETRY_MS, (uint64_t)ms_until(deadline) * 1000000ull));
			continue;
		}
		ret = serve_one(s, c, min_ms(ms_until(deadline) + 1, o->commit_timeout_ns), out);
		rdmig_conn_destroy(c);
		if (ret)
			return 0;
	}
	return rdmig_seterr(err, -ETIMEDOUT, "the source did not come back within %.0f s",
			    (double)o->commit_grace_ns / 1e9);
}
