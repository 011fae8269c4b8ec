/* SPDX-License-Identifier: MIT */
/*
 * Migration orchestrator (see orchestrate.h).
 *
 * Order: source QMP -> destination relay control session -> compare and set
 * capabilities/parameters on both sides -> source relay -> destination
 * incoming ready -> migrate -> follow -> destination running. Every QMP reply
 * is checked; any failure after `migrate` was issued runs migrate_cancel,
 * and when that comes too late (the source had completed) settle() finds
 * out where the guest runs before anything is resumed (orchestrate.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "clock.h"
#include "log.h"
#include "orchestrate_int.h"
#include "qmp.h"
#include "relay.h"

#define POLL_MS		200
#define DST_RUN_TIMEOUT 30.0 /* s from "completed" to a running destination */
#define CANCEL_TIMEOUT	15.0
#define UNLIMITED_BW	(1ull << 40) /* QEMU has no "unlimited": 1 TiB/s */

/*
 * Capabilities that change the stream format: both sides must agree. The
 * orchestrator sets multifd itself; the others it only compares.
 */
static const char *const must_match[] = {"multifd",  "postcopy-ram",	"postcopy-preempt",
					 "compress", "x-ignore-shared", "x-colo",
					 "xbzrle"};

int orch_src_cmd(struct orch *m, const char *cmd, json_t *args, json_t **ret, struct rdmig_err *err)
{
	int rc = rdmig_qmp_cmd(m->src, cmd, args, ret, QMP_TIMEOUT_MS, err);

	if (rc)
		rdmig_err_prefix(err, "source QEMU");
	return rc;
}

int orch_dst_call(struct orch *m, json_t *req, json_t **reply, struct rdmig_err *err)
{
	int rc;

	if (!m->ctrl) {
		json_decref(req);
		m->ctrl_lost = true;
		return rdmig_seterr(err, -ENOTCONN,
				    "no control session with the destination "
				    "relay at %s",
				    m->dst_addr);
	}
	rc = rdmig_relay_ctrl_call(m->ctrl, req, reply, CTRL_TIMEOUT_MS, err);

	if (rc && rc != -EREMOTEIO) {
		m->ctrl_lost = true;
		rdmig_err_prefix(err, "lost the destination relay at %s", m->dst_addr);
	}
	return rc;
}

static json_t *caps_map(json_t *list)
{
	json_t *map = json_object(), *v;
	size_t i;

	json_array_foreach(list, i, v)
	{
		const char *name = json_string_value(json_object_get(v, "capability"));

		if (name && json_is_boolean(json_object_get(v, "state")))
			json_object_set(map, name, json_object_get(v, "state"));
	}
	return map;
}

/* ---- setup ------------------------------------------------------------------ */

static int open_sides(struct orch *m, struct rdmig_err *err)
{
	json_t *caps = NULL, *info = NULL, *dq = NULL;
	const char *ms, *dst_status, *ver;
	char st[32];
	int maj, min, mic, rc;

	rc = rdmig_qmp_open(m->o->src_qmp, QMP_TIMEOUT_MS, &m->src, err);
	if (rc) {
		rdmig_err_prefix(err, "source QMP socket");
		return rc;
	}
	rdmig_qmp_version(m->src, &maj, &min, &mic);
	snprintf(m->res->src_version, sizeof(m->res->src_version), "%d.%d.%d", maj, min, mic);
	if (rdmig_qmp_status(m->src, st, sizeof(st), err))
		return rdmig_err_prefix(err, "source QEMU"), err->code;
	if (strcmp(st, "running") && strcmp(st, "paused"))
		return rdmig_seterr(err, -EINVAL, "source QEMU is \"%s\", not running or paused",
				    st);
	if (orch_src_cmd(m, "query-migrate", NULL, &info, err))
		return err->code;
	ms = json_string_value(json_object_get(info, "status"));
	if (ms && (!strcmp(ms, "setup") || !strcmp(ms, "active") || !strcmp(ms, "device") ||
		   !strcmp(ms, "cancelling") || !strcmp(ms, "pre-switchover"))) {
		json_decref(info);
		return rdmig_seterr(err, -EBUSY, "source QEMU already has a migration \"%s\"", ms);
	}
	json_decref(info);
	if (orch_src_cmd(m, "query-migrate-capabilities", NULL, &caps, err) ||
	    orch_src_cmd(m, "query-migrate-parameters", NULL, &m->src_params, err)) {
		json_decref(caps);
		return err->code;
	}
	m->src_caps = caps_map(caps);
	json_decref(caps);
	if (!json_is_object(m->src_params))
		return rdmig_seterr(
		    err, -EPROTO, "source QEMU: query-migrate-parameters did not return an object");

	rc = rdmig_relay_ctrl_open(&m->o->xport, &m->ctrl, err);
	if (rc) {
		/* A refused key is its own answer; anything else may be a relay not started. */
		rdmig_err_prefix(err, "destination relay at %s%s", m->dst_addr,
				 rc == -EACCES || rc == -EPERM || rc == -EREMOTEIO
				     ? ""
				     : " (is `rdmig qemu dst` running there?)");
		return rc;
	}
	rc = orch_dst_call(m, json_pack("{s:s}", "op", "query"), &dq, err);
	if (rc)
		return rc;
	dst_status = json_string_value(json_object_get(dq, "status"));
	ver = json_string_value(json_object_get(dq, "version"));
	snprintf(m->res->dst_version, sizeof(m->res->dst_version), "%s", ver ? ver : "?");
	m->dst_caps = json_incref(json_object_get(dq, "capabilities"));
	m->dst_params = json_incref(json_object_get(dq, "parameters"));
	if (!dst_status || !json_is_object(m->dst_caps) || !json_is_object(m->dst_params)) {
		json_decref(dq);
		return rdmig_seterr(err, -EPROTO, "destination relay: malformed query reply");
	}
	if (strcmp(dst_status, "inmigrate")) {
		rc =
		    rdmig_seterr(err, -EINVAL,
				 "destination QEMU is \"%s\", not waiting for an incoming "
				 "migration (start it with -incoming unix:PATH or -incoming defer)",
				 dst_status);
		json_decref(dq);
		return rc;
	}
	json_decref(dq);
	return 0;
}

static int cap_state(json_t *map, const char *name)
{
	json_t *v = json_object_get(map, name);

	return v ? json_is_true(v) : -1; /* -1: this QEMU does not know it */
}

/*
 * Parameters the multifd stream's format depends on: the destination
 * decodes what the source encodes, so they must be the same on both QEMUs
 * (the compression level is the sender's alone and may differ).
 */
static const char *const multifd_params_match[] = {"multifd-compression"};

static int params_agree(struct orch *m, struct rdmig_err *err)
{
	for (size_t i = 0; i < sizeof(multifd_params_match) / sizeof(multifd_params_match[0]);
	     i++) {
		const char *name = multifd_params_match[i];
		json_t *s = json_object_get(m->src_params, name);
		json_t *d = json_object_get(m->dst_params, name);
		char sv[64], dv[64];

		if (!s && !d)
			continue;
		if (s && d && json_equal(s, d))
			continue;
		snprintf(sv, sizeof(sv), "%s", s ? json_string_value(s) ?: "?" : "unknown");
		snprintf(dv, sizeof(dv), "%s", d ? json_string_value(d) ?: "?" : "unknown");
		return rdmig_seterr(err, -EINVAL,
				    "parameter mismatch: \"%s\" is \"%s\" at the source QEMU and "
				    "\"%s\" at the destination QEMU; the destination could not "
				    "decode the stream: set it the same on both "
				    "(migrate-set-parameters)",
				    name, sv, dv);
	}
	return 0;
}

/*
 * postcopy-preempt (its own channel for the pages the destination faults
 * on) where it survives a recovery: QEMU 7.2's destination stops listening
 * once the main channel of a resumed migration is in, so the resumed
 * preempt channel is refused and post-copy pauses again (relay_test
 * postcopy_recover, with QEMU 7.2.22). 8.0 reworked that path.
 */
static bool preempt_works(struct orch *m)
{
	int smaj = 0, dmaj = 0;

	sscanf(m->res->src_version, "%d", &smaj);
	sscanf(m->res->dst_version, "%d", &dmaj);
	return smaj >= 8 && dmaj >= 8;
}

/* Compare, then set capabilities and parameters on both sides. */
static int configure(struct orch *m, struct rdmig_err *err)
{
	const struct rdmig_qemu_migrate_opts *o = m->o;
	struct {
		const char *name;
		bool want;
		bool only_if_both; /* left alone unless both QEMUs know it */
	} set[] = {{"multifd", o->multifd > 0, false},
		   {"auto-converge", o->auto_converge, false},
		   {"postcopy-ram", o->postcopy, false},
		   {"postcopy-preempt", o->postcopy, true}};
	json_t *src_list = json_array(), *dst_caps = json_object();
	json_t *src_p = json_object(), *dst_p = json_object();
	int rc = 0;

	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
		int s = cap_state(m->src_caps, set[i].name),
		    d = cap_state(m->dst_caps, set[i].name);

		/* Without --postcopy its capabilities are compared below, not set. */
		if (!o->postcopy && !strncmp(set[i].name, "postcopy-", 9))
			continue;
		if (set[i].only_if_both && (s < 0 || d < 0))
			continue;
		if (!strcmp(set[i].name, "postcopy-preempt") && !preempt_works(m)) {
			/* Off on both, so that a leftover "on" cannot split the format. */
			set[i].want = false;
		}
		if (!strcmp(set[i].name, "postcopy-preempt"))
			m->res->preempt = set[i].want;
		if (set[i].want && s < 0) {
			rc = rdmig_seterr(err, -EOPNOTSUPP,
					  "capability mismatch: the source QEMU (%s) has no \"%s\" "
					  "capability",
					  m->res->src_version, set[i].name);
			goto out;
		}
		if (set[i].want && d < 0) {
			rc = rdmig_seterr(err, -EOPNOTSUPP,
					  "capability mismatch: the destination QEMU (%s) has no "
					  "\"%s\" capability",
					  m->res->dst_version, set[i].name);
			goto out;
		}
		if (s >= 0)
			json_array_append_new(src_list,
					      json_pack("{s:s, s:b}", "capability", set[i].name,
							"state", set[i].want));
		if (d >= 0)
			json_object_set_new(dst_caps, set[i].name, json_boolean(set[i].want));
	}
	/* The rest of the format-changing ones must already agree. */
	for (size_t i = 0; i < sizeof(must_match) / sizeof(must_match[0]); i++) {
		int s = cap_state(m->src_caps, must_match[i]);
		int d = cap_state(m->dst_caps, must_match[i]);

		if (!strcmp(must_match[i], "multifd") ||
		    (o->postcopy && !strncmp(must_match[i], "postcopy-", 9)))
			continue;
		if ((s > 0) != (d > 0)) {
			rc = rdmig_seterr(err, -EINVAL,
					  "capability mismatch: \"%s\" is %s at the source QEMU "
					  "and %s at the destination QEMU; set it the same on both",
					  must_match[i],
					  s > 0	  ? "on"
					  : s < 0 ? "unknown"
						  : "off",
					  d > 0	  ? "on"
					  : d < 0 ? "unknown"
						  : "off");
			goto out;
		}
	}

	if (o->multifd) {
		if (!json_object_get(m->src_params, "multifd-channels") ||
		    !json_object_get(m->dst_params, "multifd-channels")) {
			rc = rdmig_seterr(
			    err, -EOPNOTSUPP, "the %s QEMU has no \"multifd-channels\" parameter",
			    json_object_get(m->src_params, "multifd-channels") ? "destination"
									       : "source");
			goto out;
		}
		json_object_set_new(src_p, "multifd-channels", json_integer(o->multifd));
		json_object_set_new(dst_p, "multifd-channels", json_integer(o->multifd));
		rc = params_agree(m, err);
		if (rc)
			goto out;
	}
	if (o->downtime_ms >= 0) {
		if (!json_object_get(m->src_params, "downtime-limit")) {
			rc = rdmig_seterr(err, -EOPNOTSUPP,
					  "the source QEMU has no \"downtime-limit\" parameter");
			goto out;
		}
		json_object_set_new(src_p, "downtime-limit", json_integer(o->downtime_ms));
		if (json_object_get(m->dst_params, "downtime-limit"))
			json_object_set_new(dst_p, "downtime-limit", json_integer(o->downtime_ms));
	}
	if (o->max_bandwidth >= 0) {
		json_int_t bw = o->max_bandwidth ? o->max_bandwidth : (json_int_t)UNLIMITED_BW;

		if (!json_object_get(m->src_params, "max-bandwidth")) {
			rc = rdmig_seterr(err, -EOPNOTSUPP,
					  "the source QEMU has no \"max-bandwidth\" parameter");
			goto out;
		}
		json_object_set_new(src_p, "max-bandwidth", json_integer(bw));
		if (json_object_get(m->dst_params, "max-bandwidth"))
			json_object_set_new(dst_p, "max-bandwidth", json_integer(bw));
	}

	if (orch_src_cmd(m, "migrate-set-capabilities",
			 json_pack("{s:O}", "capabilities", src_list), NULL, err)) {
		rc = err->code;
		goto out;
	}
	rc = orch_dst_call(
	    m, json_pack("{s:s, s:O}", "op", "set-capabilities", "capabilities", dst_caps), NULL,
	    err);
	if (rc)
		goto out;
	if (json_object_size(src_p) &&
	    orch_src_cmd(m, "migrate-set-parameters", json_incref(src_p), NULL, err)) {
		rc = err->code;
		goto out;
	}
	if (json_object_size(dst_p))
		rc = orch_dst_call(
		    m, json_pack("{s:s, s:O}", "op", "set-parameters", "parameters", dst_p), NULL,
		    err);
out:
	json_decref(src_list);
	json_decref(dst_caps);
	json_decref(src_p);
	json_decref(dst_p);
	return rc;
}

/*
 * The private directory is mkdtemp's 0700; a socket meant for a group (a
 * QEMU running as its own user) needs that group to be able to reach it.
 */
static int open_sock_dir(struct orch *m, unsigned mode, struct rdmig_err *err)
{
	snprintf(m->sock_dir, sizeof(m->sock_dir), "/tmp/rdmig-qemu-src-XXXXXX");
	if (!mkdtemp(m->sock_dir)) {
		m->sock_dir[0] = '\0';
		return rdmig_seterr_errno(err, rdmig_neg_errno(),
					  "cannot create a directory for the relay socket");
	}
	snprintf(m->sock_path, sizeof(m->sock_path), "%s/relay.sock", m->sock_dir);
	if (m->o->socket_set_group && chown(m->sock_dir, (uid_t)-1, (gid_t)m->o->socket_gid))
		return rdmig_seterr_errno(err, rdmig_neg_errno(),
					  "cannot give %s group %u (this user must be root or a "
					  "member of that group)",
					  m->sock_dir, m->o->socket_gid);
	if ((mode & 070) && chmod(m->sock_dir, 0710))
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "chmod 0710 %s", m->sock_dir);
	return 0;
}

/*
 * The connections QEMU opens for this migration, one stream set for all:
 * the main channel (with its return path), each multifd channel, and the
 * post-copy preempt channel where it is on (configure() has decided that).
 */
static unsigned relay_streams(const struct orch *m)
{
	unsigned n = 1 + m->o->multifd + (m->o->postcopy && m->res->preempt);

	/* Past one connection's channels the source relay opens a second set. */
	return n < RDMIG_MAX_CHANNELS ? n : RDMIG_MAX_CHANNELS;
}

static int start_relay(struct orch *m, struct rdmig_err *err)
{
	struct rdmig_relay_src_cfg cfg = {.xport = m->o->xport,
					  .path = m->sock_path,
					  .mode = m->o->socket_mode,
					  .set_group = m->o->socket_set_group,
					  .gid = m->o->socket_gid,
					  .streams = relay_streams(m)};
	unsigned mode = cfg.mode ? cfg.mode : RDMIG_RELAY_SOCK_MODE_DEFAULT;
	int rc;

	rc = rdmig_relay_sock_mode_check(mode, err);
	if (rc)
		return rc;
	if (m->o->relay_socket) {
		snprintf(m->sock_path, sizeof(m->sock_path), "%s", m->o->relay_socket);
	} else {
		rc = open_sock_dir(m, mode, err);
		if (rc)
			return rc;
	}
	return rdmig_relay_src_start(&cfg, &m->relay, err);
}

/* ---- follow ------------------------------------------------------------------ */

uint64_t orch_ram_u64(json_t *info, const char *key)
{
	json_t *v = json_object_get(json_object_get(info, "ram"), key);

	return json_is_number(v) ? (uint64_t)json_number_value(v) : 0;
}

static int64_t top_i64(json_t *info, const char *key)
{
	json_t *v = json_object_get(info, key);

	return json_is_number(v) ? (int64_t)json_number_value(v) : -1;
}

static void progress(struct orch *m, json_t *info, const char *st, const char *dst_st, bool final)
{
	static double last;
	double t = rdmig_now_s() - m->t0;
	double mib = 1048576.0;
	char pc[48] = "";

	if (!m->o->progress || (!final && t - last < 1.0 && isatty(2) == 0))
		return;
	last = t;
	if (m->res->postcopy)
		snprintf(pc, sizeof(pc), "  page requests %" PRIu64,
			 orch_ram_u64(info, "postcopy-requests"));
	fprintf(stderr,
		"%s[%6.1f s] %-15s sent %8.1f MiB  left %7.1f MiB  %7.1f Mbit/s  pass %" PRIu64
		"%s  streams %u  dst %s%s",
		isatty(2) ? "\r" : "", t, st, orch_ram_u64(info, "transferred") / mib,
		orch_ram_u64(info, "remaining") / mib,
		json_number_value(json_object_get(json_object_get(info, "ram"), "mbps")),
		orch_ram_u64(info, "dirty-sync-count"), pc, rdmig_relay_src_streams(m->relay),
		dst_st, isatty(2) && !final ? "" : "\n");
}

static bool in_progress(const char *st)
{
	static const char *const active[] = {
	    "none",	  "setup",	 "active",	    "device",	       "pre-switchover",
	    "cancelling", "wait-unplug", "postcopy-active", "postcopy-paused", "postcopy-recover"};

	for (size_t i = 0; i < sizeof(active) / sizeof(active[0]); i++)
		if (!strcmp(st, active[i]))
			return true;
	return false;
}

/* Drain QMP events of the source (MIGRATION status changes are logged). */
static void drain_events(struct orch *m)
{
	json_t *ev = NULL;

	while (!rdmig_qmp_next_event(m->src, 0, &ev, NULL) && ev) {
		const char *name = json_string_value(json_object_get(ev, "event"));

		if (name && !strcmp(name, "MIGRATION"))
			log_info("source event MIGRATION %s",
				 json_string_value(
				     json_object_get(json_object_get(ev, "data"), "status")));
		json_decref(ev);
	}
}

/*
 * A cancel or a timeout: honoured in pre-copy; in post-copy the guest runs
 * on the destination already, so it is only said, once.
 */
static int stop_asked(struct orch *m, double t, struct rdmig_err *err)
{
	const struct rdmig_qemu_migrate_opts *o = m->o;
	const char *why = NULL;

	if (o->cancel && *o->cancel)
		why = "cancelled by signal";
	else if (o->timeout_ms && t * 1000 > (double)o->timeout_ms)
		why = "timed out (--timeout)";
	if (!why)
		return 0;
	if (!m->res->postcopy) {
		if (o->cancel && *o->cancel)
			return rdmig_seterr(err, -ECANCELED, "cancelled by signal");
		return rdmig_seterr(err, -ETIMEDOUT,
				    "timed out after %.0f s (--timeout), migration not finished",
				    t);
	}
	if (!m->pc_cancel_said)
		log_warn("%s, but post-copy has started: the guest runs on the destination and "
			 "the migration cannot be cancelled; it goes on until it completes",
			 why);
	m->pc_cancel_said = true;
	return 0;
}

/* The destination relay's view, once a second; 1 when its QEMU failed the load. */
static int check_dst(struct orch *m, char *dst_st, size_t len, struct rdmig_err *err)
{
	json_t *r = NULL;
	const char *ds, *dm, *de;
	int rc;

	/* In post-copy a lost relay is recovered, not fatal: streams may go on. */
	if (m->res->postcopy && m->ctrl_lost && orch_ctrl_reopen(m, err)) {
		snprintf(dst_st, len, "unreachable");
		return 0;
	}
	if (orch_dst_call(m, json_pack("{s:s}", "op", "status"), &r, err)) {
		if (!m->res->postcopy)
			return err->code;
		snprintf(dst_st, len, "unreachable");
		return 0;
	}
	ds = json_string_value(json_object_get(r, "status"));
	dm = json_string_value(json_object_get(r, "migration"));
	de = json_string_value(json_object_get(r, "error"));
	snprintf(dst_st, len, "%s", ds ? ds : "?");
	rc = 0;
	if (dm && !strcmp(dm, "failed")) {
		m->res->guest_lost = m->res->postcopy;
		rc =
		    rdmig_seterr(err, -EIO, "the destination QEMU failed to load the migration: %s",
				 de && *de ? de : "no error-desc");
	}
	json_decref(r);
	return rc;
}

/* Follow the migration until it ends; 0 when the source says "completed". */
static int follow(struct orch *m, struct rdmig_err *err)
{
	double next_dst = 0;
	char dst_st[32] = "inmigrate";

	for (;;) {
		json_t *info = NULL;
		const char *st;
		double t = rdmig_now_s() - m->t0;

		if (stop_asked(m, t, err))
			return err->code;
		drain_events(m);
		if (orch_src_cmd(m, "query-migrate", NULL, &info, err)) {
			/* The source's half of the guest went with it. */
			if (m->res->postcopy)
				m->res->guest_lost = true;
			return err->code;
		}
		st = json_string_value(json_object_get(info, "status"));
		st = st ? st : "none";
		snprintf(m->res->mig_status, sizeof(m->res->mig_status), "%s", st);
		m->res->transferred = orch_ram_u64(info, "transferred");
		m->res->passes = (unsigned)orch_ram_u64(info, "dirty-sync-count");
		m->res->postcopy_requests = orch_ram_u64(info, "postcopy-requests");
		m->res->mbps =
		    json_number_value(json_object_get(json_object_get(info, "ram"), "mbps"));
		if (!strcmp(st, "completed")) {
			m->res->total_ms = top_i64(info, "total-time");
			m->res->downtime_ms = top_i64(info, "downtime");
			m->res->setup_ms = top_i64(info, "setup-time");
			progress(m, info, st, dst_st, true);
			json_decref(info);
			return 0;
		}
		if (!in_progress(st)) {
			const char *desc = json_string_value(json_object_get(info, "error-desc"));
			struct rdmig_err rerr = RDMIG_ERR_INIT;
			int rc;

			progress(m, info, st, dst_st, true);
			if (m->relay && rdmig_relay_src_error(m->relay, &rerr))
				rc = rdmig_seterr(
				    err, -EIO, "migration %s: relay to %s: %s (source QEMU: %s)",
				    st, m->dst_addr, rerr.msg, desc ? desc : "no error-desc");
			else
				rc = rdmig_seterr(err, -EIO, "migration %s: source QEMU: %s", st,
						  desc ? desc : "no error-desc");
			if (m->res->postcopy)
				m->res->guest_lost = true;
			json_decref(info);
			return rc;
		}
		progress(m, info, st, dst_st, false);
		if (!strcmp(st, "active") && orch_postcopy_maybe_start(m, info, err)) {
			json_decref(info);
			return err->code;
		}
		json_decref(info);
		st = m->res->mig_status; /* info's strings are gone */
		if (!strcmp(st, "postcopy-active") || !strcmp(st, "postcopy-recover"))
			m->res->postcopy = true; /* whoever started it */
		if (!strcmp(st, "postcopy-paused")) {
			m->res->postcopy = true;
			if (orch_postcopy_recover(m, err))
				return err->code;
			continue;
		}

		/* The destination relay: alive, and its QEMU still receiving. */
		if (t >= next_dst) {
			next_dst = t + 1.0;
			if (check_dst(m, dst_st, sizeof(dst_st), err))
				return err->code;
		}
		rdmig_sleep_ms(POLL_MS);
	}
}

/* After "completed": the destination must report running. */
static int wait_dst_running(struct orch *m, struct rdmig_err *err)
{
	double end = rdmig_now_s() + DST_RUN_TIMEOUT;
	bool conted = false;

	for (;;) {
		json_t *r = NULL;
		const char *ds;

		/*
		 * After post-copy nothing is resumed whatever the answer, so a relay
		 * that went away gets the whole wait to come back and say.
		 */
		if ((m->res->postcopy && orch_ctrl_reopen(m, err)) ||
		    orch_dst_call(m, json_pack("{s:s}", "op", "status"), &r, err)) {
			if (!m->res->postcopy || rdmig_now_s() > end)
				return err->code;
			rdmig_sleep_ms(500);
			continue;
		}
		ds = json_string_value(json_object_get(r, "status"));
		snprintf(m->res->dst_status, sizeof(m->res->dst_status), "%s", ds ? ds : "?");
		json_decref(r);
		if (!strcmp(m->res->dst_status, "running"))
			return 0;
		/* Started with -S (as libvirt does): it waits for cont. */
		if (!strcmp(m->res->dst_status, "paused") && !conted) {
			if (orch_dst_call(m, json_pack("{s:s}", "op", "cont"), NULL, err))
				return err->code;
			conted = true;
			continue;
		}
		if (rdmig_now_s() > end)
			return rdmig_seterr(
			    err, -ETIMEDOUT,
			    "the source completed but the destination QEMU is still "
			    "\"%s\" after %.0f s",
			    m->res->dst_status, DST_RUN_TIMEOUT);
		rdmig_sleep_ms(100);
	}
}

/* migrate_cancel and wait until the source has left the migration. */
static void cancel_source(struct orch *m)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	double end = rdmig_now_s() + CANCEL_TIMEOUT;

	if (!m->src)
		return;
	if (rdmig_qmp_cmd(m->src, "migrate_cancel", NULL, NULL, QMP_TIMEOUT_MS, &e))
		log_warn("migrate_cancel: %s", e.msg);
	while (rdmig_now_s() < end) {
		json_t *info = NULL;
		const char *st;
		bool busy;

		rdmig_err_clear(&e);
		if (rdmig_qmp_cmd(m->src, "query-migrate", NULL, &info, QMP_TIMEOUT_MS, &e))
			break;
		st = json_string_value(json_object_get(info, "status"));
		busy = st && in_progress(st) && strcmp(st, "none");
		json_decref(info);
		if (!busy)
			break;
		rdmig_sleep_ms(100);
	}
}

/* The source's query-migrate status into buf; "unknown" when it cannot be read. */
static void src_mig_status(struct orch *m, char *buf, size_t len)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	json_t *info = NULL;
	const char *st;

	snprintf(buf, len, "unknown");
	if (!m->src || rdmig_qmp_cmd(m->src, "query-migrate", NULL, &info, QMP_TIMEOUT_MS, &e))
		return;
	st = json_string_value(json_object_get(info, "status"));
	snprintf(buf, len, "%s", st ? st : "none");
	json_decref(info);
}

int orch_ctrl_reopen(struct orch *m, struct rdmig_err *err)
{
	int rc;

	if (m->ctrl && !m->ctrl_lost)
		return 0;
	rdmig_conn_destroy(m->ctrl);
	m->ctrl = NULL;
	m->ctrl_lost = false;
	rc = rdmig_relay_ctrl_open(&m->o->xport, &m->ctrl, err);
	if (rc) {
		m->ctrl_lost = true;
		rdmig_err_prefix(err, "destination relay at %s", m->dst_addr);
	}
	return rc;
}

/*
 * Ask the destination relay to fence its QEMU (relay_dst.c, op "fence"):
 * 0 with *running set when it could say, else the reason it could not. A
 * control session that failed on the way may still deliver a late reply,
 * so the question goes out on a fresh one then.
 */
static int dst_fence(struct orch *m, bool *running, char *detail, size_t len, struct rdmig_err *err)
{
	const char *st, *det;
	json_t *r = NULL;
	int rc;

	rc = orch_ctrl_reopen(m, err);
	if (rc)
		return rc;
	rc = orch_dst_call(m, json_pack("{s:s}", "op", "fence"), &r, err);
	if (rc)
		return rc;
	st = json_string_value(json_object_get(r, "status"));
	det = json_string_value(json_object_get(r, "detail"));
	if (!st || !json_is_boolean(json_object_get(r, "running"))) {
		json_decref(r);
		return rdmig_seterr(err, -EPROTO, "destination relay: malformed fence reply");
	}
	*running = json_is_true(json_object_get(r, "running"));
	snprintf(m->res->dst_status, sizeof(m->res->dst_status), "%s", st);
	snprintf(detail, len, "%s%s%s", st, det && *det ? ": " : "", det ? det : "");
	json_decref(r);
	return 0;
}

/*
 * The migration failed (rc, err) after `migrate` was issued. Cancel it; if
 * the source had completed by then, the guest has left it and only the
 * destination can say whether it runs there (orchestrate.h has the cases).
 */
static int settle(struct orch *m, int rc, struct rdmig_err *err)
{
	struct rdmig_err ferr = RDMIG_ERR_INIT, cerr = RDMIG_ERR_INIT;
	char ms[32];
	bool running = false;

	cancel_source(m);
	src_mig_status(m, ms, sizeof(ms));
	m->end = END_CANCELLED;
	if (strcmp(ms, "completed"))
		return rc;
	m->end = END_SAID;
	log_warn("the source QEMU completed but the migration failed (%s): asking the "
		 "destination whether the guest runs there",
		 err->msg);
	if (dst_fence(m, &running, m->dst_detail, sizeof(m->dst_detail), &ferr)) {
		struct rdmig_err first = *err;

		m->res->outcome_unknown = true;
		snprintf(m->res->dst_status, sizeof(m->res->dst_status), "unknown");
		rdmig_err_clear(err);
		/* What to do first: a message cut at its end still says it. */
		return rdmig_seterr(err, rc,
				    "outcome unknown: the source QEMU completed and is paused; "
				    "whether the guest runs on the destination cannot be known. "
				    "Check the destination QEMU (query-status): if it runs, quit "
				    "the source; if not, resume the source with `cont`. Cause: %s; "
				    "asking again: %s",
				    first.msg, ferr.msg);
	}
	if (running) {
		log_warn("the guest runs on the destination after all: migration completed");
		rdmig_err_clear(err);
		return 0;
	}
	if (rdmig_qmp_cmd(m->src, "cont", NULL, NULL, QMP_TIMEOUT_MS, &cerr)) {
		rdmig_err_prefix(
		    err,
		    "the source QEMU completed, the destination QEMU does not run the "
		    "guest (%s) and resuming the source failed (%s): run `cont` on the "
		    "source QEMU",
		    m->dst_detail, cerr.msg);
		return rc;
	}
	m->res->src_resumed = true;
	m->end = END_RESUMED;
	return rc;
}

/* A failed post-copy's message: what became of the guest first. */
static void postcopy_said(struct orch *m, struct rdmig_err *err)
{
	if (m->res->postcopy_paused)
		return;
	if (!m->res->guest_lost)
		rdmig_err_prefix(err, "post-copy migration to %s", m->dst_addr);
	else if (strncmp(err->msg, "post-copy cannot be recovered", 29))
		rdmig_err_prefix(err,
				 "post-copy failed for good and the guest is lost (neither QEMU "
				 "holds all of its memory; docs/reliability.md, QEMU post-copy)");
}

int rdmig_qemu_migrate(const struct rdmig_qemu_migrate_opts *o,
		       struct rdmig_qemu_migrate_result *res, struct rdmig_err *err)
{
	struct orch m = {.o = o, .res = res};
	bool started = false;
	json_t *r = NULL;
	int rc;

	memset(res, 0, sizeof(*res));
	m.t0 = rdmig_now_s();
	if (strchr(o->xport.host, ':'))
		snprintf(m.dst_addr, sizeof(m.dst_addr), "[%s]:%u", o->xport.host, o->xport.port);
	else
		snprintf(m.dst_addr, sizeof(m.dst_addr), "%s:%u", o->xport.host, o->xport.port);

	rc = open_sides(&m, err);
	if (!rc)
		rc = configure(&m, err);
	if (!rc)
		rc = start_relay(&m, err);
	if (!rc) {
		rc = orch_dst_call(&m, json_pack("{s:s}", "op", "start-incoming"), &r, err);
		json_decref(r);
	}
	if (!rc) {
		char uri[128];

		snprintf(uri, sizeof(uri), "unix:%s", m.sock_path);
		m.t0 = rdmig_now_s();
		rc = orch_src_cmd(&m, "migrate", json_pack("{s:s}", "uri", uri), NULL, err);
		started = !rc;
	}
	if (!rc)
		rc = follow(&m, err);
	if (!rc)
		rc = wait_dst_running(&m, err);
	/* Post-copy is never cancelled nor resumed at the source (orchestrate.h). */
	if (rc && started && !res->postcopy)
		rc = settle(&m, rc, err);
	if (m.src) {
		struct rdmig_err e = RDMIG_ERR_INIT;

		if (rdmig_qmp_status(m.src, res->src_status, sizeof(res->src_status), &e))
			snprintf(res->src_status, sizeof(res->src_status), "unknown");
	}
	if (m.relay) {
		uint64_t down;

		res->streams = rdmig_relay_src_streams(m.relay);
		res->sets = rdmig_relay_src_sets(m.relay);
		rdmig_relay_src_bytes(m.relay, &res->relayed, &down);
		rdmig_relay_src_stop(m.relay, rc ? 0 : 2000);
	}
	if (m.sock_dir[0])
		rmdir(m.sock_dir);
	rdmig_conn_destroy(m.ctrl);
	rdmig_qmp_close(m.src);
	json_decref(m.src_caps);
	json_decref(m.dst_caps);
	json_decref(m.src_params);
	json_decref(m.dst_params);
	if (rc && res->postcopy)
		postcopy_said(&m, err);
	else if (rc && started && m.end == END_CANCELLED)
		rdmig_err_prefix(err, "migration to %s cancelled, source VM %s", m.dst_addr,
				 res->src_status);
	else if (rc && started && m.end == END_RESUMED)
		rdmig_err_prefix(
		    err,
		    "migration to %s failed after the source QEMU completed; the "
		    "destination QEMU does not run the guest (%s), so the source VM was "
		    "resumed and is %s",
		    m.dst_addr, m.dst_detail, res->src_status);
	return rc;
}
