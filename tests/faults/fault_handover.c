/* SPDX-License-Identifier: MIT */
/*
 * The switchover fault matrix (issue #12): for each step of the hand-over
 * (FINAL, manifest, VERIFIED, GO, GO_ACK) and each fault of either side,
 * injected with the engine's test hooks (rdmig_mig_opts.test_fault_*):
 *   kill   the side SIGKILLs itself at the step
 *   stop   the side SIGSTOPs itself; the test sends SIGCONT only once the
 *          other side has finished, so every deadline of the other side
 *          has passed
 *   drop   the side aborts its connection at the step, before or instead
 *          of its send (with GO and GO_ACK this is the lost message that
 *          RESOLVE settles)
 *
 *   fault_check handover src|dst|both [STEP|all] [--actions kill,stop,drop]
 *
 * Both sides are exec'd peers (`fault_check hsrc` / `hdst`) with short
 * deadlines (--commit, --grace). Every cell checks:
 *   - the exit status of each side: 0 completed (the guest runs at the
 *     destination), 1 failed (the guest runs at the source), 3 unknown
 *     (neither runs it), or killed, against the table below;
 *   - never both running: a destination that started the guest ("ran"),
 *     and a source whose guest runs at the end, never together;
 *   - the copy that runs has the source's bytes: the destination's RAM as
 *     started equals the source's RAM at its GO decision and passes the incr
 *     edge check, or the source's running guest passes it;
 *   - a source that ended unknown holds its guest paused, RAM intact;
 *   - resources: each side's open fds (rdma device contexts aside, which
 *     librdmacm keeps once opened) and threads back where they were before
 *     the migration, no MR or QP left in either process, and on rdma
 *     `rdma res show mr|qp` back to the baseline once both have exited.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "fault_check.h"
#include "fileutil.h"
#include "rdmig/guest.h"
#include "incr_check.h"
#include "th_check.h"
#include "th_guest.h"
#include "th_tmp.h"

/* A side's exit in the table: an exit status, or K for SIGKILL (the injected kill). */
#define K (-9)

struct cell_expect {
	int src, dst;
};

/* [step - 1][action]: what each side must end with, when `side` is faulted. */
static const struct cell_expect expect_src_fault[5][3] = {
    /*                drop      kill     stop */
    [0] = {{1, 1}, {K, 1}, {1, 1}}, /* FINAL */
    [1] = {{1, 1}, {K, 1}, {1, 1}}, /* manifest */
    [2] = {{1, 1}, {K, 3}, {1, 3}}, /* VERIFIED */
    [3] = {{0, 0}, {K, 3}, {3, 3}}, /* GO */
    [4] = {{0, 0}, {K, 0}, {0, 0}}, /* GO_ACK */
};
static const struct cell_expect expect_dst_fault[5][3] = {
    [0] = {{1, 1}, {1, K}, {1, 1}}, [1] = {{1, 1}, {1, K}, {1, 1}}, [2] = {{1, 1}, {1, K}, {1, 1}},
    [3] = {{0, 0}, {3, K}, {3, 0}}, [4] = {{0, 0}, {3, K}, {3, 0}},
};

static const char *const action_names[] = {"drop", "kill", "stop"};

/* ---- resources of a peer --------------------------------------------------- */

#define MAX_FDS 128

/*
 * The open fds of this process, but those of the rdma device contexts that
 * librdmacm opens on first use and keeps for the life of the process: what
 * each one points to.
 */
struct fd_set_names {
	int n;
	char name[MAX_FDS][64];
};

static void list_fds(struct fd_set_names *s)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	s->n = 0;
	if (!d)
		return;
	while ((e = readdir(d)) && s->n < MAX_FDS) {
		char path[300], target[64] = "?";
		ssize_t len;

		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len > 0)
			target[len] = '\0';
		/* A device context's command file and its async event file. */
		if (!strncmp(target, "/dev/infiniband/", 16) ||
		    !strcmp(target, "anon_inode:[infinibandevent]"))
			continue;
		snprintf(s->name[s->n++], sizeof(s->name[0]), "%s", target);
	}
	closedir(d);
}

struct peer_res {
	struct fd_set_names fds;
	int threads;
};

static void *idle_thread(void *arg)
{
	return arg;
}

/*
 * Threads of this process once the count holds still for 100 ms (at most
 * 2 s): a thread just joined can linger in /proc for a moment.
 */
static int settled_threads(void)
{
	int last = th_count_threads(0), same = 0;

	for (int i = 0; i < 200 && same < 10; i++) {
		int now;

		rdmig_sleep_ms(10);
		now = th_count_threads(0);
		same = now == last ? same + 1 : 0;
		last = now;
	}
	return last;
}

/*
 * The baseline. One thread is started and joined first: a sanitizer's
 * runtime starts a helper thread of its own with the first thread a process
 * creates, and that one must be counted before, not after.
 */
static void res_take(struct peer_res *r)
{
	pthread_t th;

	if (!pthread_create(&th, NULL, idle_thread, NULL))
		pthread_join(th, NULL);
	list_fds(&r->fds);
	r->threads = settled_threads();
}

/* "1" when this process is back at `base` and holds no MR or QP; else what differs. */
static void res_verdict(const struct peer_res *base, char *out, size_t len)
{
	struct peer_res now;
	int mr = 0, qp = 0, off;

	list_fds(&now.fds);
	now.threads = settled_threads();
	if (fc_is_rdma()) {
		mr = th_rdma_res_count("mr", getpid());
		qp = th_rdma_res_count("qp", getpid());
	}
	if (now.fds.n == base->fds.n && now.threads == base->threads && mr <= 0 && qp <= 0) {
		snprintf(out, len, "1");
		return;
	}
	off = snprintf(out, len, "fds:%d/%d,threads:%d/%d,mr:%d,qp:%d", now.fds.n, base->fds.n,
		       now.threads, base->threads, mr, qp);
	/* Name what is open now and was not before (no spaces: one word on the channel). */
	for (int i = 0; i < now.fds.n && off > 0 && (size_t)off < len; i++) {
		bool old = false;

		for (int j = 0; j < base->fds.n && !old; j++)
			old = !strcmp(now.fds.name[i], base->fds.name[j]);
		if (!old)
			off += snprintf(out + off, len - (size_t)off, ",new:%s", now.fds.name[i]);
	}
	for (char *p = out; *p; p++)
		if (*p == ' ')
			*p = '_';
}

/* ---- the peers -------------------------------------------------------------- */

static int parse_spec(const char *spec, struct rdmig_mig_opts *o)
{
	if (!strcmp(spec, "none"))
		return 0;
	return rdmig_test_fault_parse(spec, &o->test_fault_step, &o->test_fault_action, NULL);
}

static void handover_opts(struct rdmig_mig_opts *o)
{
	rdmig_mig_opts_defaults(o);
	o->commit_timeout_ns = (uint64_t)(fc.commit_s * 1e9);
	o->commit_grace_ns = (uint64_t)(fc.grace_s * 1e9);
}

static int exit_of(int ret)
{
	return ret == 0 ? 0 : ret == RDMIG_MIG_EUNKNOWN ? 3 : 1;
}

/* The destination tells the test the moment its guest starts: it may be killed next. */
static void hdst_event(const struct rdmig_mig_event *ev, void *ctx)
{
	(void)ctx;
	if (ev->type == RDMIG_EV_STATE && ev->stats->state == RDMIG_MIG_COMMIT)
		th_chan_printf(th_peer_fd(), "ran\n");
}

static int hdst_accept(void *ctx, int timeout_ms, struct rdmig_conn **out, struct rdmig_err *err)
{
	return rdmig_accept(ctx, timeout_ms, out, err);
}

/* `fault_check hdst SPEC DUMP`: one migration, exit 0 / 1 / 3 as rdmig listen. */
int fc_run_hdst(const char *spec, const char *dump)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l;
	struct rdmig_mig_opts o;
	struct peer_res base;
	char res[256];
	int ret;

	handover_opts(&o);
	/*
	 * The baseline is taken before the listener exists and the verdict after
	 * it is destroyed: a source that failed keeps reconnecting to tell this
	 * side it aborted (RESOLVE) while the verdict is taken, and each attempt
	 * has a handshake thread of the listener's; destroying the listener must
	 * join them all.
	 */
	res_take(&base);
	if (parse_spec(spec, &o) || fc_listen(&l, &err) ||
	    th_chan_send_port(th_peer_fd(), rdmig_listener_port(l), &err)) {
		fprintf(stderr, "hdst: %s\n", err.msg);
		return 2;
	}
	o.dump_ram = *dump ? dump : NULL;
	o.resume_ns = 0;
	o.on_event = hdst_event;
	o.settle_conn = hdst_accept;
	o.settle_ctx = l;
	ret = th_migrate_dest(l, &o, NULL, &err);
	if (ret)
		fprintf(stderr, "hdst: %s\n", err.msg);
	rdmig_listener_destroy(l);
	res_verdict(&base, res, sizeof(res));
	th_chan_printf(th_peer_fd(), "result %d %s\n", exit_of(ret), res);
	return exit_of(ret);
}

struct hsrc_ctx {
	uint16_t port;
};

static int hsrc_connect(void *ctx, int timeout_ms, struct rdmig_conn **out, struct rdmig_err *err)
{
	struct hsrc_ctx *h = ctx;
	struct rdmig_xport_cfg cfg = fc_xcfg(h->port);

	cfg.connect_timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
	return rdmig_connect(&cfg, out, err);
}

/*
 * `fault_check hsrc SPEC PORT:DUMP`: migrate a running incr guest. Reports
 * whether the guest runs here at the end, and whether its RAM passes the
 * incr check (running: checked paused, then resumed; unknown: it must be
 * paused, and intact).
 */
int fc_run_hsrc(const char *spec, const char *port_dump)
{
	struct rdmig_err err = RDMIG_ERR_INIT, cerr = RDMIG_ERR_INIT;
	struct hsrc_ctx h = {0};
	char dump[256] = "";
	unsigned port = 0;
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	struct rdmig_guest *g;
	struct peer_res base;
	bool running, moves, incr_ok = true;
	char res[256];
	int ret;

	handover_opts(&o);
	if (parse_spec(spec, &o) || sscanf(port_dump, "%u:%255s", &port, dump) < 1 || !port ||
	    port > 65535)
		return 2;
	h.port = (uint16_t)port;
	res_take(&base);
	g = fc_new_guest();
	o.min_rounds = 2;
	o.dump_ram = *dump ? dump : NULL;
	o.settle_conn = hsrc_connect;
	o.settle_ctx = &h;
	ret = fc_source_migrate(g, h.port, &o, &st, &err);
	if (ret)
		fprintf(stderr, "hsrc: %s\n", err.msg);
	running = rdmig_guest_running(g);
	moves = running && th_guest_moves(g, 10000);
	if (ret) {
		/* Failed: the guest runs on; unknown: it is paused. Either way, RAM intact. */
		rdmig_guest_pause(g);
		incr_ok = rdmig_guest_check_incr(g, &cerr) == 0;
		if (!incr_ok)
			fprintf(stderr, "hsrc: incr check: %s\n", cerr.msg);
		if (running)
			rdmig_guest_resume(g);
	}
	rdmig_guest_destroy(g);
	res_verdict(&base, res, sizeof(res));
	th_chan_printf(th_peer_fd(), "result %d %d %d %s\n", exit_of(ret), running && moves,
		       incr_ok, res);
	return exit_of(ret);
}

/* ---- one cell ------------------------------------------------------------- */

struct side {
	struct th_peer p;
	bool done, stopped, continued, ran;
	int result; /* from its "result" line, -1 when none came */
	int running, incr_ok;
	char res[256];
	double t_done;
};

/* The state letter of /proc/PID/stat: 'T' while stopped. */
static char proc_state(pid_t pid)
{
	char buf[512];
	const char *p;

	if (rdmig_read_linef(buf, sizeof(buf), "/proc/%d/stat", (int)pid))
		return '?';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

static void reap(struct side *s, double t0)
{
	pid_t r;

	if (s->done || !s->p.pid)
		return;
	r = waitpid(s->p.pid, &s->p.status, WNOHANG);
	if (r == s->p.pid) {
		s->p.pid = 0;
		s->done = true;
		s->t_done = rdmig_now_s() - t0;
	}
}

/* Everything the peer said on its channel: "ran", "result ...". */
static void read_lines(struct side *s)
{
	char line[512];

	s->result = -1;
	while (!th_chan_getline(s->p.fd, line, sizeof(line), 0, NULL)) {
		int a, b, c;
		char res[256];

		if (!strcmp(line, "ran"))
			s->ran = true;
		else if (sscanf(line, "result %d %d %d %255s", &a, &b, &c, res) == 4) {
			s->result = a;
			s->running = b;
			s->incr_ok = c;
			snprintf(s->res, sizeof(s->res), "%s", res);
		} else if (sscanf(line, "result %d %255s", &a, res) == 2) {
			s->result = a;
			snprintf(s->res, sizeof(s->res), "%s", res);
		}
	}
	th_peer_close(&s->p);
}

/*
 * Wait for both sides. A side that stopped itself is continued once the
 * other one has finished (every deadline of the other side has passed);
 * `cap_s` bounds the whole cell.
 */
static bool wait_both(struct side *src, struct side *dst, double cap_s, const char *what)
{
	double t0 = rdmig_now_s();
	struct side *sides[2] = {src, dst};

	while (!(src->done && dst->done)) {
		for (int i = 0; i < 2; i++) {
			struct side *s = sides[i], *other = sides[1 - i];

			reap(s, t0);
			if (s->done)
				continue;
			if (!s->stopped && proc_state(s->p.pid) == 'T')
				s->stopped = true;
			if (s->stopped && !s->continued && other->done) {
				kill(s->p.pid, SIGCONT);
				s->continued = true;
			}
		}
		if (rdmig_now_s() - t0 > cap_s) {
			TH_CHECK(false, "%s: still running after %.0f s: killed", what, cap_s);
			for (int i = 0; i < 2; i++)
				if (!sides[i]->done) {
					kill(sides[i]->p.pid, SIGKILL);
					kill(sides[i]->p.pid, SIGCONT);
					waitpid(sides[i]->p.pid, &sides[i]->p.status, 0);
					sides[i]->p.pid = 0;
					sides[i]->done = true;
				}
			return false;
		}
		rdmig_sleep_ms(10);
	}
	return true;
}

static bool status_is(int status, int want)
{
	return want == K ? th_killed(status, SIGKILL) : th_exited(status, want);
}

static const char *want_str(int want, char *buf, size_t len)
{
	if (want == K)
		snprintf(buf, len, "killed");
	else
		snprintf(buf, len, "exit %d", want);
	return buf;
}

/* One cell: `faulted` ("src"/"dst") at `step` with `action`. */
static void run_cell(const char *faulted, enum rdmig_handover_step step,
		     enum rdmig_fault_action action, char *row, size_t rowlen)
{
	const struct cell_expect *ex = strcmp(faulted, "src") ? &expect_dst_fault[step - 1][action]
							      : &expect_src_fault[step - 1][action];
	struct side src = {0}, dst = {0};
	struct th_rdma_res rdma0 = {0, 0};
	char what[96], spec[32], sd[300], dd[300], arg[320], b1[64], b2[64];
	const char *sstep = rdmig_handover_step_name(step);
	uint16_t port;
	int before = th_failures();
	double t0 = rdmig_now_s();
	struct stat sb;
	bool ok_wait;

	snprintf(what, sizeof(what), "%s %s at %s", faulted, action_names[action], sstep);
	snprintf(spec, sizeof(spec), "%s:%s", sstep, action_names[action]);
	th_tmp_path(sd, sizeof(sd), "ho-src.bin");
	th_tmp_path(dd, sizeof(dd), "ho-dst.bin");
	unlink(sd);
	unlink(dd);
	if (fc_is_rdma())
		th_rdma_res_take(&rdma0, 0);
	if (!fc_start_mode(&dst.p, "destination", "hdst", strcmp(faulted, "dst") ? "none" : spec,
			   dd, &port))
		return;
	snprintf(arg, sizeof(arg), "%u:%s", port, sd);
	if (!fc_start_mode(&src.p, "source", "hsrc", strcmp(faulted, "src") ? "none" : spec, arg,
			   NULL)) {
		th_peer_wait(&dst.p, 0, NULL);
		return;
	}
	ok_wait = wait_both(&src, &dst, 60 + 4 * (fc.commit_s + fc.grace_s), what);
	read_lines(&src);
	read_lines(&dst);

	TH_CHECK(ok_wait && status_is(src.p.status, ex->src), "%s: source: %s, expected %s", what,
		 th_status_str(src.p.status, b1, sizeof(b1)), want_str(ex->src, b2, sizeof(b2)));
	TH_CHECK(ok_wait && status_is(dst.p.status, ex->dst), "%s: destination: %s, expected %s",
		 what, th_status_str(dst.p.status, b1, sizeof(b1)),
		 want_str(ex->dst, b2, sizeof(b2)));
	/* The one invariant: never two running copies. */
	TH_CHECK(!(dst.ran && src.running == 1), "%s: BOTH RUN the guest", what);
	if (dst.result >= 0)
		TH_CHECK((dst.result == 0) == dst.ran, "%s: destination exit %d, but its guest %s",
			 what, dst.result, dst.ran ? "ran" : "never ran");
	if (src.result == 1)
		TH_CHECK(src.running == 1, "%s: source failed, but its guest does not run", what);
	if (src.result == 3 || src.result == 0)
		TH_CHECK(src.running == 0, "%s: source exit %d, but its guest runs", what,
			 src.result);
	if (src.result >= 0)
		TH_CHECK(src.incr_ok == 1, "%s: the source's RAM fails the incr check", what);
	if (dst.ran) {
		char cw[128];

		snprintf(cw, sizeof(cw), "%s: the destination's running copy", what);
		fc_dumps_ok(cw, sd, dd);
	} else {
		TH_CHECK(stat(dd, &sb) != 0, "%s: a destination that never ran left a RAM dump",
			 what);
	}
	if (src.result >= 0)
		TH_CHECK(!strcmp(src.res, "1"), "%s: source resources not at baseline: %s", what,
			 src.res);
	if (dst.result >= 0)
		TH_CHECK(!strcmp(dst.res, "1"), "%s: destination resources not at baseline: %s",
			 what, dst.res);
	if (fc_is_rdma())
		th_rdma_res_check(&rdma0, 0, what);
	unlink(sd);
	unlink(dd);
	snprintf(row, rowlen, "| %s | %s | %s | %s | %s | %.1f |", faulted, sstep,
		 action_names[action], th_status_str(src.p.status, b1, sizeof(b1)),
		 th_status_str(dst.p.status, b2, sizeof(b2)), rdmig_now_s() - t0);
	if (th_failures() == before)
		printf("ok: %s: source %s, destination %s%s, never both running, in %.1f s\n", what,
		       th_status_str(src.p.status, b1, sizeof(b1)),
		       th_status_str(dst.p.status, b2, sizeof(b2)),
		       dst.ran ? " (the guest ran there, dumps equal, incr check passed)" : "",
		       rdmig_now_s() - t0);
	fflush(stdout);
}

/* `fault_check handover src|dst|both [STEP|all] [--actions kill,stop,drop]`. */
int fc_handover(const char *sides, const char *steps, const char *actions)
{
	static char rows[64][160];
	unsigned nrows = 0;
	double t0 = rdmig_now_s();
	enum rdmig_handover_step one = RDMIG_STEP_NONE;
	enum rdmig_fault_action a0;

	if (strcmp(steps, "all")) {
		char probe[40];

		snprintf(probe, sizeof(probe), "%s:drop", steps);
		if (rdmig_test_fault_parse(probe, &one, &a0, NULL))
			return TH_EXIT_USAGE;
	}
	for (int side = 0; side < 2; side++) {
		const char *faulted = side ? "dst" : "src";

		if (strcmp(sides, "both") && strcmp(sides, faulted))
			continue;
		for (unsigned st = RDMIG_STEP_FINAL; st <= RDMIG_STEP_GO_ACK; st++) {
			if (one != RDMIG_STEP_NONE && st != one)
				continue;
			for (unsigned a = 0; a < 3; a++) {
				if (!strstr(actions, action_names[a]) || nrows >= 64)
					continue;
				run_cell(faulted, (enum rdmig_handover_step)st,
					 (enum rdmig_fault_action)a, rows[nrows], sizeof(rows[0]));
				nrows++;
			}
		}
	}
	printf("handover matrix (%s, %" PRIu64 " MiB guest, --commit-timeout %gs "
	       "--commit-grace %gs), %u cells in %.1f s:\n",
	       fc.backend, fc.guest_mib, fc.commit_s, fc.grace_s, nrows, rdmig_now_s() - t0);
	printf("| faulted | step | fault | source | destination | seconds |\n");
	for (unsigned i = 0; i < nrows; i++)
		printf("%s\n", rows[i]);
	return 0;
}
