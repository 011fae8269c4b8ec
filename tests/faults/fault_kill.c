/* SPDX-License-Identifier: MIT */
/*
 * kill -9 of either peer in each state of the migration, and the plain and
 * expected-to-fail migrations net_faults runs under netem (fault_check.c has
 * the overview and what every fault is checked with).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "fault_check.h"
#include "rdmig/guest.h"
#include "incr_check.h"
#include "th_check.h"
#include "th_guest.h"
#include "th_tmp.h"

/* ---- source side: act when a state is entered ---------------------------- */

struct trigger {
	enum rdmig_mig_state state;
	pid_t victim; /* kill-dest: SIGKILL this; 0: SIGKILL ourselves */
	bool fired;
	double t_fired;
};

static void trigger_event(const struct rdmig_mig_event *ev, void *arg)
{
	struct trigger *t = arg;

	if (ev->type != RDMIG_EV_STATE || ev->stats->state != t->state || t->fired)
		return;
	t->fired = true;
	t->t_fired = rdmig_now_s();
	kill(t->victim ? t->victim : getpid(), SIGKILL);
}

/* `fault_check src STATE|none PORT:DUMP`: a source process; exit 0 on completion. */
int fc_run_src(const char *statename, const char *port_dump)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct trigger t = {.victim = 0};
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	struct rdmig_guest *g;
	char dump[256] = "";
	unsigned port = 0;
	int ret;

	if (sscanf(port_dump, "%u:%255s", &port, dump) < 1)
		return 3;
	if (strcmp(statename, "none")) {
		if (fc_parse_state(statename, &t.state))
			return 3;
		fc_phase_opts(&o, t.state);
		o.on_event = trigger_event;
		o.ev_ctx = &t;
	} else {
		rdmig_mig_opts_defaults(&o);
		o.min_rounds = 3;
	}
	o.dump_ram = *dump ? dump : NULL;
	g = fc_new_guest();
	ret = fc_source_migrate(g, (uint16_t)port, &o, &st, &err);
	if (ret)
		fprintf(stderr, "src: %s\n", err.msg);
	rdmig_guest_destroy(g);
	return ret ? 1 : 0;
}

/* ---- kill -9 of the destination ------------------------------------------- */

void fc_kill_dest_one(enum rdmig_mig_state state, struct th_res *base)
{
	const char *sn = rdmig_mig_state_name(state);
	struct rdmig_err err = RDMIG_ERR_INIT, werr = RDMIG_ERR_INIT;
	struct rdmig_guest *g = fc_new_guest();
	struct th_rdma_res rdma0 = {0, 0}, none = {0, 0};
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	struct trigger t = {.state = state};
	struct th_peer dst;
	char what[64], sbuf[64];
	uint16_t port;
	int ret, before = th_failures();
	double detect;

	snprintf(what, sizeof(what), "kill -9 destination in %s", sn);
	if (fc_is_rdma())
		th_rdma_res_take(&rdma0, 0);
	if (!fc_start_dest(&dst, &port, NULL))
		return;
	t.victim = dst.pid;
	fc_phase_opts(&o, state);
	o.on_event = trigger_event;
	o.ev_ctx = &t;
	ret = fc_source_migrate(g, port, &o, &st, &err);
	detect = rdmig_now_s() - t.t_fired;
	TH_CHECK(!th_peer_wait(&dst, 60000, &werr), "%s: destination: %s", what, werr.msg);
	TH_CHECK(t.fired, "%s: state never reached (ret %d: %s)", what, ret, err.msg);
	TH_CHECK(th_killed(dst.status, SIGKILL), "%s: destination: %s", what,
		 th_status_str(dst.status, sbuf, sizeof(sbuf)));
	TH_CHECK(ret != 0 && ret != -ECANCELED && st.state == RDMIG_MIG_FAILED,
		 "%s: source returned %d, state %s (%s)", what, ret, rdmig_mig_state_name(st.state),
		 err.msg);
	if (t.fired)
		TH_CHECK(detect <= fc.bound_s, "%s: detected after %.1f s, bound %.0f s", what,
			 detect, fc.bound_s);
	TH_CHECK(rdmig_guest_running(g) && th_guest_moves(g, 10000), "%s: source guest not running",
		 what);
	TH_CHECK_UINT(rdmig_guest_throttle(g), ==, 0, "%s: throttle released", what);
	rdmig_guest_pause(g);
	TH_CHECK(rdmig_guest_check_incr(g, &err) == 0, "%s: source RAM: %s", what, err.msg);
	rdmig_guest_resume(g);
	if (base->fds < 0)
		th_res_take(base, 0);
	th_res_check(base, 0, what);
	if (fc_is_rdma()) {
		th_rdma_res_check(&none, getpid(), what);
		th_rdma_res_check(&rdma0, 0, what);
	}
	if (th_failures() == before)
		printf("ok: %s: source failed after %.3f s (\"%s\"), guest running, RAM intact, "
		       "fds/threads/MRs/QPs at baseline\n",
		       what, detect, err.msg);
	fflush(stdout);
	fc_retry_in_process(what, g);
	rdmig_guest_destroy(g);
}

/* ---- kill -9 of the source -------------------------------------------------- */

void fc_kill_src_one(enum rdmig_mig_state state)
{
	const char *sn = rdmig_mig_state_name(state);
	struct rdmig_err err = RDMIG_ERR_INIT;
	char what[64], dd[300], sd[300], arg[400], statearg[32], sbuf[64];
	struct th_rdma_res rdma0 = {0, 0};
	struct th_peer dst, src;
	int before = th_failures();
	pid_t dst_pid, src_pid;
	double t_killed, detect;
	struct stat sb;
	uint16_t port;
	int ret;

	snprintf(what, sizeof(what), "kill -9 source in %s", sn);
	snprintf(statearg, sizeof(statearg), "%s", sn);
	for (char *p = statearg; *p; p++)
		if (*p == ' ' || *p == '_')
			*p = '-';
	th_tmp_path(dd, sizeof(dd), "ks-dst.bin");
	unlink(dd);
	if (fc_is_rdma())
		th_rdma_res_take(&rdma0, 0);
	if (!fc_start_dest(&dst, &port, dd))
		return;
	dst_pid = dst.pid;
	snprintf(arg, sizeof(arg), "%u:", port);
	if (!fc_start_src(&src, statearg, arg)) {
		th_peer_wait(&dst, 0, NULL);
		return;
	}
	src_pid = src.pid;
	TH_CHECK(!th_peer_wait(&src, 300000, &err), "%s: source never reached the state: %s", what,
		 err.msg);
	t_killed = rdmig_now_s();
	TH_CHECK(th_killed(src.status, SIGKILL), "%s: source was not killed in that state: %s",
		 what, th_status_str(src.status, sbuf, sizeof(sbuf)));
	rdmig_err_clear(&err);
	ret = th_peer_wait(&dst, (int)((fc.bound_s + 30) * 1000), &err);
	TH_CHECK(!ret, "%s: destination still there %.0f s after the kill: %s", what,
		 fc.bound_s + 30, err.msg);
	detect = rdmig_now_s() - t_killed;
	TH_CHECK(detect <= fc.bound_s, "%s: destination took %.1f s, bound %.0f s", what, detect,
		 fc.bound_s);
	TH_CHECK(!ret && th_exited(dst.status, 1), "%s: destination must discard and exit 1: %s",
		 what, th_status_str(dst.status, sbuf, sizeof(sbuf)));
	TH_CHECK(stat(dd, &sb) != 0, "%s: destination left a committed RAM dump", what);
	TH_CHECK(kill(dst_pid, 0) != 0 && kill(src_pid, 0) != 0, "%s: leftover process", what);
	if (fc_is_rdma())
		th_rdma_res_check(&rdma0, 0, what);
	if (th_failures() == before)
		printf("ok: %s: destination discarded and exited 1 after %.3f s, no leftover "
		       "process, MRs/QPs at baseline\n",
		       what, detect);
	fflush(stdout);

	/* Retry: a fresh source process to a fresh destination. */
	th_tmp_path(sd, sizeof(sd), "ks-src.bin");
	if (!fc_start_dest(&dst, &port, dd))
		return;
	snprintf(arg, sizeof(arg), "%u:%s", port, sd);
	if (!fc_start_src(&src, "none", arg)) {
		th_peer_wait(&dst, 0, NULL);
		return;
	}
	rdmig_err_clear(&err);
	TH_CHECK(!th_peer_wait(&src, 300000, &err) && th_exited(src.status, 0),
		 "%s: retry source: %s", what,
		 err.code ? err.msg : th_status_str(src.status, sbuf, sizeof(sbuf)));
	rdmig_err_clear(&err);
	TH_CHECK(!th_peer_wait(&dst, 120000, &err) && th_exited(dst.status, 0),
		 "%s: retry destination: %s", what,
		 err.code ? err.msg : th_status_str(dst.status, sbuf, sizeof(sbuf)));
	if (fc_dumps_ok(what, sd, dd))
		printf("ok: %s: retry with a fresh source and destination completed, dumps equal, "
		       "incr check passed\n",
		       what);
}

/* ---- plain migration and expected failure (netem) --------------------------- */

void fc_plain_migrate(void)
{
	struct rdmig_guest *g = fc_new_guest();

	fc_retry_in_process("migration", g);
	rdmig_guest_destroy(g);
}

void fc_expect_fail(void)
{
	struct rdmig_err err = RDMIG_ERR_INIT, werr = RDMIG_ERR_INIT;
	struct rdmig_guest *g = fc_new_guest();
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	struct th_peer dst;
	char sbuf[64];
	uint16_t port;
	int ret, wret, before = th_failures();
	double t0, took;

	if (!fc_start_dest(&dst, &port, NULL))
		return;
	rdmig_mig_opts_defaults(&o);
	o.timeout_ns = (uint64_t)(fc.timeout_s * 1e9);
	o.progress_timeout_ns = o.timeout_ns / 2;
	t0 = rdmig_now_s();
	ret = fc_source_migrate(g, port, &o, &st, &err);
	took = rdmig_now_s() - t0;
	printf("expect-fail: source returned %d after %.1f s: %s\n", ret, took,
	       ret ? err.msg : "completed");
	TH_CHECK(ret != 0, "expect-fail: the migration completed");
	TH_CHECK(took <= fc.bound_s, "expect-fail: failure took %.1f s, bound %.0f s", took,
		 fc.bound_s);
	wret = th_peer_wait(&dst, (int)((fc.bound_s + 150) * 1000), &werr);
	TH_CHECK(!wret, "expect-fail: destination hung: %s", werr.msg);
	TH_CHECK(ret == 0 || (!wret && th_exited(dst.status, 1)),
		 "expect-fail: destination must discard and exit 1: %s",
		 th_status_str(dst.status, sbuf, sizeof(sbuf)));
	TH_CHECK(rdmig_guest_running(g) && th_guest_moves(g, 10000),
		 "expect-fail: source guest not running");
	rdmig_guest_pause(g);
	TH_CHECK(rdmig_guest_check_incr(g, &err) == 0, "expect-fail: source RAM: %s", err.msg);
	if (th_failures() == before)
		printf("ok: heavy loss: failed within %.1f s (bound %.0f s), source guest running, "
		       "RAM intact, destination discarded\n",
		       took, fc.bound_s);
	rdmig_guest_destroy(g);
}
