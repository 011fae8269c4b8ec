/* SPDX-License-Identifier: MIT */
/*
 * Fault injection through the library (issue #8), source and destination in
 * separate processes (the destination, and the killed source, are exec'd:
 * libibverbs/librdmacm state must not cross a fork).
 *
 *   fault_check kill-dest STATE   SIGKILL the destination when the source
 *                                 enters STATE (bulk, dirty, switchover,
 *                                 final-copy, or "all")
 *   fault_check kill-src STATE    the source process SIGKILLs itself on
 *                                 entering STATE; the destination must
 *                                 discard and exit 1 within the bound
 *   fault_check migrate           one live migration, integrity-checked
 *                                 (used under netem loss)
 *   fault_check expect-fail       a migration that must fail within the
 *                                 bound (heavy loss), source guest running
 *   fault_check soak [N]          N back-to-back migrations between two
 *                                 long-lived processes that swap roles
 * Options: --backend tcp|rdma --host H --size MIB --bound SECONDS
 *          --timeout SECONDS (expect-fail: the engine's whole-migration
 *          timeout) --iterations N
 *
 * After every fault: detected within --bound (default 60 s), the source
 * guest still runs with its RAM passing the incr check, throttle released,
 * open fds / threads back to baseline, on rdma every MR and QP released
 * (`rdma res show mr|qp`, this process and system-wide), and a retry to a
 * fresh destination completes with identical dumps that pass the incr check.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest.h"
#include "incr_check.h"
#include "migrate.h"
#include "rdmig/transport.h"

#define VCPUS 2

static const char *backend_name = "tcp";
static const char *host = "127.0.0.1";
static uint64_t guest_mib = 32;
static double bound_s = 60;
static double timeout_s = 30;
static unsigned iterations = 5;
static char tmpdir[256];
static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("FAIL: " __VA_ARGS__);                                              \
			printf("\n");                                                              \
			fflush(stdout);                                                            \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int count_proc(pid_t pid, const char *what)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/%d/%s", (int)pid, what);
	return count_dir(p);
}

static bool is_rdma(void)
{
	return !strcmp(backend_name, "rdma");
}

/*
 * Entries of `rdma res show KIND` (mr, qp), of process `pid` or of all
 * (pid 0); -1 when the tool does not answer. Only user QPs are counted
 * (the kernel's own QP0/QP1 have no pid).
 */
static int rdma_res_count(const char *kind, pid_t pid)
{
	char cmd[64], line[512], tag[32];
	FILE *f;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "rdma res show %s 2>/dev/null", kind);
	snprintf(tag, sizeof(tag), " pid %d ", (int)pid);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "link ", 5) && strncmp(line, "dev ", 4))
			continue;
		if (pid ? strstr(line, tag) != NULL : strstr(line, " pid ") != NULL)
			n++;
	}
	if (pclose(f) != 0)
		return -1;
	return n;
}

static void check_rdma_res(const char *what, pid_t pid, int mr0, int qp0)
{
	int mr, qp;

	if (!is_rdma())
		return;
	mr = rdma_res_count("mr", pid);
	qp = rdma_res_count("qp", pid);
	if (mr < 0 || qp < 0) {
		printf("note: %s: `rdma res show` unavailable, MR/QP counts not checked\n", what);
		return;
	}
	CHECK(mr == mr0 && qp == qp0, "%s: %s MRs %d (baseline %d), QPs %d (baseline %d)", what,
	      pid ? "this process's" : "system-wide", mr, mr0, qp, qp0);
}

/* Wait for `pid` at most `secs`; on timeout SIGKILL it, reap, return -ETIMEDOUT. */
static int wait_bounded(pid_t pid, double secs, int *status)
{
	double end = now_s() + secs;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0)
			return -errno;
		if (now_s() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return -ETIMEDOUT;
		}
		usleep(5000);
	}
}

static struct rdmig_xport_cfg xcfg(uint16_t port)
{
	struct rdmig_xport_cfg cfg = {.host = host, .port = port, .channels = 2};

	rdmig_backend_parse(backend_name, &cfg.backend, NULL);
	return cfg;
}

static struct rdmig_guest *new_guest(void)
{
	struct rdmig_guest_cfg gc = {.ram_size = guest_mib << 20,
				     .nregions = 2,
				     .vcpus = VCPUS,
				     .workload = RDMIG_WL_INCR,
				     .seed = 11};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *g;

	if (rdmig_guest_create(&gc, &g, &err) || rdmig_guest_start(g, NULL, &err)) {
		printf("FAIL: guest: %s\n", err.msg);
		exit(1);
	}
	usleep(20000);
	return g;
}

static bool guest_moves(struct rdmig_guest *g)
{
	uint64_t w0 = rdmig_guest_work(g);

	usleep(50000);
	return rdmig_guest_work(g) > w0;
}

/* ---- the destination process ------------------------------------------- */

static int listen_port(struct rdmig_listener **l, struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = xcfg(0);

	cfg.channels = RDMIG_MAX_CHANNELS;
	return rdmig_listen(&cfg, l, err);
}

/* keep: NULL, or where the committed guest goes, still running. */
static int dest_receive(struct rdmig_listener *l, const char *dump, struct rdmig_guest **keep,
			struct rdmig_err *err)
{
	struct rdmig_mig_opts o;
	struct rdmig_conn *c;
	int ret;

	ret = rdmig_accept(l, 60000, &c, err);
	if (ret)
		return ret;
	rdmig_mig_opts_defaults(&o);
	o.dump_ram = dump && *dump ? dump : NULL;
	o.resume_ns = 0;
	o.keep_guest = keep;
	ret = rdmig_mig_dest(c, &o, NULL, err);
	rdmig_conn_destroy(c);
	return ret;
}

/* `fault_check dest FD DUMP ...`: port to FD, exit 0 = committed, 1 = discarded. */
static int run_dest(int fd, const char *dump)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l;
	uint16_t p;
	int ret;

	if (listen_port(&l, &err)) {
		fprintf(stderr, "dest: %s\n", err.msg);
		return 3;
	}
	p = rdmig_listener_port(l);
	if (write(fd, &p, sizeof(p)) != sizeof(p))
		return 3;
	close(fd);
	ret = dest_receive(l, dump, NULL, &err);
	if (ret)
		fprintf(stderr, "dest: discarded: %s\n", err.msg);
	rdmig_listener_destroy(l);
	return ret ? 1 : 0;
}

static void common_args(const char **argv, int *n)
{
	static char mib[24];

	snprintf(mib, sizeof(mib), "%" PRIu64, guest_mib);
	argv[(*n)++] = "--backend";
	argv[(*n)++] = backend_name;
	argv[(*n)++] = "--host";
	argv[(*n)++] = host;
	argv[(*n)++] = "--size";
	argv[(*n)++] = mib;
	argv[*n] = NULL;
}

/* Fork + exec a helper mode; its first pipe write (a port) lands in *port. */
static pid_t spawn_helper(const char *mode, const char *a1, const char *a2, uint16_t *port)
{
	char fdarg[16];
	const char *argv[16];
	int pfd[2], n = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	snprintf(fdarg, sizeof(fdarg), "%d", pfd[1]);
	argv[n++] = "fault_check";
	argv[n++] = mode;
	argv[n++] = fdarg;
	argv[n++] = a1;
	argv[n++] = a2;
	common_args(argv, &n);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		fcntl(pfd[1], F_SETFD, 0);
		execv("/proc/self/exe", (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	if (port) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};

		if (poll(&p, 1, 60000) != 1 || read(pfd[0], port, sizeof(*port)) != sizeof(*port)) {
			close(pfd[0]);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -1;
		}
	}
	close(pfd[0]);
	return pid;
}

static pid_t start_dest(uint16_t *port, const char *dump)
{
	return spawn_helper("dest", dump ? dump : "", "", port);
}

/* ---- state names --------------------------------------------------------- */

static const enum rdmig_mig_state fault_states[] = {RDMIG_MIG_BULK, RDMIG_MIG_DIRTY,
						    RDMIG_MIG_SWITCHOVER, RDMIG_MIG_FINAL_COPY};
#define NSTATES (sizeof(fault_states) / sizeof(fault_states[0]))

static int parse_state(const char *s, enum rdmig_mig_state *out)
{
	for (unsigned i = 0; i < NSTATES; i++) {
		char name[32];

		snprintf(name, sizeof(name), "%s", rdmig_mig_state_name(fault_states[i]));
		for (char *p = name; *p; p++)
			if (*p == ' ' || *p == '_')
				*p = '-';
		if (!strcmp(s, name) || !strcmp(s, rdmig_mig_state_name(fault_states[i]))) {
			*out = fault_states[i];
			return 0;
		}
	}
	return -1;
}

/* Options that keep the source in `state` long enough to act there. */
static void phase_opts(struct rdmig_mig_opts *o, enum rdmig_mig_state state)
{
	rdmig_mig_opts_defaults(o);
	if (state == RDMIG_MIG_BULK) {
		o->max_bandwidth = 8 << 20; /* bulk lasts seconds */
	} else if (state == RDMIG_MIG_DIRTY) {
		o->min_rounds = 1000; /* never switches over by itself */
		o->max_bandwidth = 32 << 20;
	} else {
		o->min_rounds = 3;
	}
}

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
	t->t_fired = now_s();
	kill(t->victim ? t->victim : getpid(), SIGKILL);
}

static int source_migrate(struct rdmig_guest *g, uint16_t port, const struct rdmig_mig_opts *o,
			  struct rdmig_mig_stats *st, struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = xcfg(port);
	struct rdmig_conn *c;
	int ret;

	ret = rdmig_connect(&cfg, &c, err);
	if (ret)
		return ret;
	ret = rdmig_mig_source(c, g, o, st, err);
	rdmig_conn_destroy(c);
	return ret;
}

/* `fault_check src FD STATE|none PORT:DUMP`: a source process; exit 0 on completion. */
static int run_src(const char *statename, const char *port_dump)
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
		if (parse_state(statename, &t.state))
			return 3;
		phase_opts(&o, t.state);
		o.on_event = trigger_event;
		o.ev_ctx = &t;
	} else {
		rdmig_mig_opts_defaults(&o);
		o.min_rounds = 3;
	}
	o.dump_ram = *dump ? dump : NULL;
	g = new_guest();
	ret = source_migrate(g, (uint16_t)port, &o, &st, &err);
	if (ret)
		fprintf(stderr, "src: %s\n", err.msg);
	rdmig_guest_destroy(g);
	return ret ? 1 : 0;
}

/* ---- integrity ------------------------------------------------------------ */

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat sb;
	uint8_t *buf;

	if (!f)
		return NULL;
	if (fstat(fileno(f), &sb) || !(buf = malloc((size_t)sb.st_size + 1))) {
		fclose(f);
		return NULL;
	}
	*len = fread(buf, 1, (size_t)sb.st_size, f);
	fclose(f);
	return buf;
}

/* Both dumps identical and the destination's passes the incr edge check. */
static bool dumps_ok(const char *what, const char *src, const char *dst)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	size_t ls = 0, ld = 0;
	uint8_t *a = read_file(src, &ls), *b = read_file(dst, &ld);
	bool ok = true;

	CHECK(a && b, "%s: dump missing (%s, %s)", what, a ? "ok" : src, b ? "ok" : dst);
	if (!a || !b) {
		ok = false;
	} else {
		CHECK(ls == ld && ls == guest_mib << 20, "%s: dump sizes %zu / %zu", what, ls, ld);
		CHECK(ls == ld && !memcmp(a, b, ls), "%s: source and destination dumps differ",
		      what);
		CHECK(rdmig_check_incr_image(b, ld, VCPUS, &err) == 0, "%s: incr check: %s", what,
		      err.msg);
		ok = ls == ld && ls == guest_mib << 20 && !memcmp(a, b, ls) && err.code == 0;
	}
	free(a);
	free(b);
	unlink(src);
	unlink(dst);
	return ok;
}

/* A retry from `g` (running) to a fresh destination: completes, dumps agree. */
static void retry_in_process(const char *what, struct rdmig_guest *g)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char sd[300], dd[300];
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	uint16_t port;
	pid_t dst;
	int ret, status = -1;

	snprintf(sd, sizeof(sd), "%s/retry-src.bin", tmpdir);
	snprintf(dd, sizeof(dd), "%s/retry-dst.bin", tmpdir);
	dst = start_dest(&port, dd);
	CHECK(dst > 0, "%s: retry destination did not start", what);
	if (dst <= 0)
		return;
	rdmig_mig_opts_defaults(&o);
	o.min_rounds = 3;
	o.dump_ram = sd;
	ret = source_migrate(g, port, &o, &st, &err);
	CHECK(wait_bounded(dst, 120, &status) == 0, "%s: retry destination hung", what);
	CHECK(ret == 0, "%s: retry failed: %s", what, err.msg);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: retry destination status %d",
	      what, status);
	if (ret == 0 && dumps_ok(what, sd, dd))
		printf("ok: %s: retry to a fresh destination completed in %u rounds, dumps equal, "
		       "incr check passed\n",
		       what, st.round);
}

/* ---- kill -9 of the destination ------------------------------------------- */

static void kill_dest_one(enum rdmig_mig_state state, int *fds0, int *thr0)
{
	const char *sn = rdmig_mig_state_name(state);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *g = new_guest();
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	struct trigger t = {.state = state};
	char what[64];
	uint16_t port;
	int ret, status, before = failures, mr0 = 0, qp0 = 0;
	double detect;

	snprintf(what, sizeof(what), "kill -9 destination in %s", sn);
	if (is_rdma()) {
		mr0 = rdma_res_count("mr", 0);
		qp0 = rdma_res_count("qp", 0);
	}
	t.victim = start_dest(&port, NULL);
	CHECK(t.victim > 0, "%s: destination did not start", what);
	if (t.victim <= 0)
		return;
	phase_opts(&o, state);
	o.on_event = trigger_event;
	o.ev_ctx = &t;
	ret = source_migrate(g, port, &o, &st, &err);
	detect = now_s() - t.t_fired;
	waitpid(t.victim, &status, 0);
	CHECK(t.fired, "%s: state never reached (ret %d: %s)", what, ret, err.msg);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s: destination status %d", what,
	      status);
	CHECK(ret != 0 && ret != -ECANCELED && st.state == RDMIG_MIG_FAILED,
	      "%s: source returned %d, state %s (%s)", what, ret, rdmig_mig_state_name(st.state),
	      err.msg);
	if (t.fired)
		CHECK(detect <= bound_s, "%s: detected after %.1f s, bound %.0f s", what, detect,
		      bound_s);
	CHECK(rdmig_guest_running(g) && guest_moves(g), "%s: source guest not running", what);
	CHECK(rdmig_guest_throttle(g) == 0, "%s: throttle left at %u", what,
	      rdmig_guest_throttle(g));
	rdmig_guest_pause(g);
	CHECK(rdmig_guest_check_incr(g, &err) == 0, "%s: source RAM: %s", what, err.msg);
	rdmig_guest_resume(g);
	if (*fds0 < 0) {
		*fds0 = count_dir("/proc/self/fd");
		*thr0 = count_dir("/proc/self/task");
	}
	CHECK(count_dir("/proc/self/fd") == *fds0, "%s: %d fds, baseline %d", what,
	      count_dir("/proc/self/fd"), *fds0);
	CHECK(count_dir("/proc/self/task") == *thr0, "%s: %d threads, baseline %d", what,
	      count_dir("/proc/self/task"), *thr0);
	check_rdma_res(what, getpid(), 0, 0);
	check_rdma_res(what, 0, mr0, qp0);
	if (failures == before)
		printf("ok: %s: source failed after %.3f s (\"%s\"), guest running, RAM intact, "
		       "fds/threads/MRs/QPs at baseline\n",
		       what, detect, err.msg);
	fflush(stdout);
	retry_in_process(what, g);
	rdmig_guest_destroy(g);
}

/* ---- kill -9 of the source -------------------------------------------------- */

static void kill_src_one(enum rdmig_mig_state state)
{
	const char *sn = rdmig_mig_state_name(state);
	char what[64], dd[300], sd[300], arg[400], statearg[32];
	int status = -1, before = failures, mr0 = 0, qp0 = 0;
	uint16_t port;
	pid_t dst, src;
	double t_killed, detect;
	struct stat sb;

	snprintf(what, sizeof(what), "kill -9 source in %s", sn);
	snprintf(statearg, sizeof(statearg), "%s", sn);
	for (char *p = statearg; *p; p++)
		if (*p == ' ' || *p == '_')
			*p = '-';
	snprintf(dd, sizeof(dd), "%s/ks-dst.bin", tmpdir);
	unlink(dd);
	if (is_rdma()) {
		mr0 = rdma_res_count("mr", 0);
		qp0 = rdma_res_count("qp", 0);
	}
	dst = start_dest(&port, dd);
	CHECK(dst > 0, "%s: destination did not start", what);
	if (dst <= 0)
		return;
	snprintf(arg, sizeof(arg), "%u:", port);
	src = spawn_helper("src", statearg, arg, NULL);
	CHECK(wait_bounded(src, 300, &status) == 0, "%s: source never reached the state", what);
	t_killed = now_s();
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	      "%s: source was not killed in that state (status %d)", what, status);
	status = -1;
	CHECK(wait_bounded(dst, bound_s + 30, &status) == 0,
	      "%s: destination still there %.0f s after the kill", what, bound_s + 30);
	detect = now_s() - t_killed;
	CHECK(detect <= bound_s, "%s: destination took %.1f s, bound %.0f s", what, detect,
	      bound_s);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1,
	      "%s: destination must discard and exit 1, status %d", what, status);
	CHECK(stat(dd, &sb) != 0, "%s: destination left a committed RAM dump", what);
	CHECK(kill(dst, 0) != 0 && kill(src, 0) != 0, "%s: leftover process", what);
	check_rdma_res(what, 0, mr0, qp0);
	if (failures == before)
		printf("ok: %s: destination discarded and exited 1 after %.3f s, no leftover "
		       "process, MRs/QPs at baseline\n",
		       what, detect);
	fflush(stdout);

	/* Retry: a fresh source process to a fresh destination. */
	snprintf(sd, sizeof(sd), "%s/ks-src.bin", tmpdir);
	dst = start_dest(&port, dd);
	CHECK(dst > 0, "%s: retry destination did not start", what);
	if (dst <= 0)
		return;
	snprintf(arg, sizeof(arg), "%u:%s", port, sd);
	src = spawn_helper("src", "none", arg, NULL);
	status = -1;
	CHECK(wait_bounded(src, 300, &status) == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "%s: retry source status %d", what, status);
	status = -1;
	CHECK(wait_bounded(dst, 120, &status) == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "%s: retry destination status %d", what, status);
	if (dumps_ok(what, sd, dd))
		printf("ok: %s: retry with a fresh source and destination completed, dumps equal, "
		       "incr check passed\n",
		       what);
}

/* ---- plain migration and expected failure (netem) --------------------------- */

static void plain_migrate(void)
{
	struct rdmig_guest *g = new_guest();

	retry_in_process("migration", g);
	rdmig_guest_destroy(g);
}

static void expect_fail(void)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *g = new_guest();
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	uint16_t port;
	pid_t dst;
	int ret, status = -1, before = failures;
	double t0, took;

	dst = start_dest(&port, NULL);
	CHECK(dst > 0, "expect-fail: destination did not start");
	if (dst <= 0)
		return;
	rdmig_mig_opts_defaults(&o);
	o.timeout_ns = (uint64_t)(timeout_s * 1e9);
	o.progress_timeout_ns = o.timeout_ns / 2;
	t0 = now_s();
	ret = source_migrate(g, port, &o, &st, &err);
	took = now_s() - t0;
	printf("expect-fail: source returned %d after %.1f s: %s\n", ret, took,
	       ret ? err.msg : "completed");
	CHECK(ret != 0, "expect-fail: the migration completed");
	CHECK(took <= bound_s, "expect-fail: failure took %.1f s, bound %.0f s", took, bound_s);
	CHECK(wait_bounded(dst, bound_s + 150, &status) == 0, "expect-fail: destination hung");
	CHECK(ret == 0 || (WIFEXITED(status) && WEXITSTATUS(status) == 1),
	      "expect-fail: destination status %d", status);
	CHECK(rdmig_guest_running(g) && guest_moves(g), "expect-fail: source guest not running");
	rdmig_guest_pause(g);
	CHECK(rdmig_guest_check_incr(g, &err) == 0, "expect-fail: source RAM: %s", err.msg);
	if (failures == before)
		printf("ok: heavy loss: failed within %.1f s (bound %.0f s), source guest running, "
		       "RAM intact, destination discarded\n",
		       took, bound_s);
	rdmig_guest_destroy(g);
}

/* ---- soak: two long-lived processes swapping roles --------------------------- */

/*
 * One guest goes A -> B -> A -> ...: the destination keeps the committed
 * guest running (rdmig_mig_opts.keep_guest) and migrates that same guest
 * back next time, so every hop carries the pages the previous ones wrote.
 * The peer process (`fault_check peer IN OUT`) reads one command a line:
 *   "dest DUMP"        listen, answer "port N", receive and keep the guest,
 *                      answer "done RC"
 *   "src PORT DUMP"    migrate the guest it holds (a fresh one if it holds
 *                      none), answer "done RC"
 *   "quit"
 */

/* Received guest, running: hand it on, or check it really runs. */
static void hold_guest(struct rdmig_guest **held, struct rdmig_guest *got, const char *what)
{
	rdmig_guest_destroy(*held);
	*held = got;
	CHECK(got && rdmig_guest_running(got) && guest_moves(got),
	      "%s: the received guest does not run", what);
}

static int run_peer(int in, int out)
{
	FILE *fi = fdopen(in, "r"), *fo = fdopen(out, "w");
	char line[512], dump[400];
	struct rdmig_guest *held = NULL;
	unsigned port;

	if (!fi || !fo)
		return 3;
	setvbuf(fo, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), fi)) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		int ret;

		if (sscanf(line, "dest %399s", dump) == 1) {
			struct rdmig_listener *l;

			ret = listen_port(&l, &err);
			if (ret) {
				fprintf(fo, "done %d\n", ret);
				continue;
			}
			struct rdmig_guest *got = NULL;

			fprintf(fo, "port %u\n", rdmig_listener_port(l));
			ret = dest_receive(l, dump, &got, &err);
			rdmig_listener_destroy(l);
			if (!ret) {
				int before = failures;

				hold_guest(&held, got, "peer");
				if (failures != before)
					ret = -EIO;
			}
		} else if (sscanf(line, "src %u %399s", &port, dump) == 2) {
			struct rdmig_mig_opts o;
			struct rdmig_mig_stats st;

			if (!held)
				held = new_guest();
			rdmig_mig_opts_defaults(&o);
			o.min_rounds = 3;
			o.dump_ram = dump;
			ret = source_migrate(held, (uint16_t)port, &o, &st, &err);
			/* Migrated: it runs over there now. Failed: it still runs here. */
			if (!ret) {
				rdmig_guest_destroy(held);
				held = NULL;
			}
		} else {
			break;
		}
		if (ret)
			fprintf(stderr, "peer: %s\n", err.msg);
		fprintf(fo, "done %d\n", ret);
	}
	rdmig_guest_destroy(held);
	return 0;
}

static bool peer_line(FILE *f, int fd, char *buf, size_t len, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	/* Lines are short and come whole (line-buffered writer). */
	if (poll(&p, 1, timeout_ms) != 1)
		return false;
	return fgets(buf, (int)len, f) != NULL;
}

static void soak(void)
{
	int to_peer[2], from_peer[2], fds0[2] = {-1, -1}, thr0[2] = {-1, -1};
	int pfds0[2] = {-1, -1}, pthr0[2] = {-1, -1};
	int mr0 = 0, qp0 = 0, ok_iters = 0;
	struct rdmig_guest *held = NULL; /* the one guest, when it is on this side */
	char a1[16], a2[16], sd[300], dd[300], line[128];
	const char *argv[16];
	double t0 = now_s();
	FILE *from;
	pid_t peer;
	int n = 0, status;

	if (pipe2(to_peer, O_CLOEXEC) || pipe2(from_peer, O_CLOEXEC))
		exit(1);
	snprintf(a1, sizeof(a1), "%d", to_peer[0]);
	snprintf(a2, sizeof(a2), "%d", from_peer[1]);
	argv[n++] = "fault_check";
	argv[n++] = "peer";
	argv[n++] = a1;
	argv[n++] = a2;
	argv[n++] = "x";
	common_args(argv, &n);
	fflush(stdout);
	peer = fork();
	if (peer == 0) {
		fcntl(to_peer[0], F_SETFD, 0);
		fcntl(from_peer[1], F_SETFD, 0);
		execv("/proc/self/exe", (char *const *)argv);
		_exit(127);
	}
	close(to_peer[0]);
	close(from_peer[1]);
	from = fdopen(from_peer[0], "r");
	if (is_rdma()) {
		mr0 = rdma_res_count("mr", 0);
		qp0 = rdma_res_count("qp", 0);
	}
	snprintf(sd, sizeof(sd), "%s/soak-src.bin", tmpdir);
	snprintf(dd, sizeof(dd), "%s/soak-dst.bin", tmpdir);
	for (unsigned i = 0; i < iterations; i++) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		bool a_src = i % 2 == 0;
		char what[64];
		int before = failures, ret = -1, pret = -1;

		snprintf(what, sizeof(what), "soak %u/%u (%s)", i + 1, iterations,
			 a_src ? "A -> B" : "B -> A");
		if (a_src) {
			unsigned port = 0;
			struct rdmig_mig_opts o;
			struct rdmig_mig_stats st;

			if (!held)
				held = new_guest();
			dprintf(to_peer[1], "dest %s\n", dd);
			if (peer_line(from, from_peer[0], line, sizeof(line), 60000) &&
			    sscanf(line, "port %u", &port) == 1) {
				rdmig_mig_opts_defaults(&o);
				o.min_rounds = 3;
				o.dump_ram = sd;
				ret = source_migrate(held, (uint16_t)port, &o, &st, &err);
			}
			CHECK(ret == 0, "%s: source: %s", what,
			      port ? err.msg : "peer gave no port");
			if (!ret) {
				rdmig_guest_destroy(held);
				held = NULL;
			}
		} else {
			struct rdmig_listener *l;
			struct rdmig_guest *got = NULL;

			if (listen_port(&l, &err) == 0) {
				dprintf(to_peer[1], "src %u %s\n", rdmig_listener_port(l), sd);
				ret = dest_receive(l, dd, &got, &err);
				rdmig_listener_destroy(l);
			}
			CHECK(ret == 0, "%s: destination: %s", what, err.msg);
			if (!ret)
				hold_guest(&held, got, what);
		}
		CHECK(peer_line(from, from_peer[0], line, sizeof(line), 300000) &&
			  sscanf(line, "done %d", &pret) == 1 && pret == 0,
		      "%s: peer reported %d", what, pret);
		dumps_ok(what, sd, dd);
		/*
		 * Baselines once both roles ran in each process, one per parity: the
		 * side that holds the guest has its vCPU threads too.
		 */
		if (i == 1 || i == 2) {
			fds0[i % 2] = count_dir("/proc/self/fd");
			thr0[i % 2] = count_dir("/proc/self/task");
			pfds0[i % 2] = count_proc(peer, "fd");
			pthr0[i % 2] = count_proc(peer, "task");
		}
		if (i >= 3) {
			unsigned p = i % 2;

			CHECK(count_dir("/proc/self/fd") == fds0[p] &&
				  count_dir("/proc/self/task") == thr0[p],
			      "%s: A has %d fds / %d threads, baseline %d / %d", what,
			      count_dir("/proc/self/fd"), count_dir("/proc/self/task"), fds0[p],
			      thr0[p]);
			CHECK(count_proc(peer, "fd") == pfds0[p] &&
				  count_proc(peer, "task") == pthr0[p],
			      "%s: B has %d fds / %d threads, baseline %d / %d", what,
			      count_proc(peer, "fd"), count_proc(peer, "task"), pfds0[p], pthr0[p]);
		}
		check_rdma_res(what, 0, mr0, qp0);
		if (failures == before) {
			ok_iters++;
			printf("ok: %s: completed, dumps equal, incr check passed, the guest runs "
			       "on, resources at baseline\n",
			       what);
		}
		fflush(stdout);
	}
	rdmig_guest_destroy(held);
	dprintf(to_peer[1], "quit\n");
	close(to_peer[1]);
	CHECK(wait_bounded(peer, 30, &status) == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "soak: peer process status %d", status);
	fclose(from);
	printf("soak: %d/%u migrations clean in %.1f s\n", ok_iters, iterations, now_s() - t0);
}

/* ---- main -------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: fault_check kill-dest|kill-src STATE|all | migrate | expect-fail "
		"| soak  [--backend B] [--host H] [--size MIB] [--bound S] [--timeout S] "
		"[--iterations N | --long]\n  STATE: bulk, dirty, switchover, final-copy\n");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	const char *pos[4] = {0};
	unsigned npos = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--long")) {
			iterations = 50;
		} else if (!strncmp(argv[i], "--", 2) && i + 1 < argc) {
			const char *k = argv[i], *v = argv[++i];

			if (!strcmp(k, "--backend"))
				backend_name = v;
			else if (!strcmp(k, "--host"))
				host = v;
			else if (!strcmp(k, "--size"))
				guest_mib = strtoull(v, NULL, 10);
			else if (!strcmp(k, "--bound"))
				bound_s = atof(v);
			else if (!strcmp(k, "--timeout"))
				timeout_s = atof(v);
			else if (!strcmp(k, "--iterations"))
				iterations = (unsigned)atoi(v);
			else {
				usage();
				return 2;
			}
		} else if (npos < 4) {
			pos[npos++] = argv[i];
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(mode, "dest") && npos >= 2)
		return run_dest(atoi(pos[0]), pos[1]);
	if (!strcmp(mode, "src") && npos >= 3)
		return run_src(pos[1], pos[2]);
	if (!strcmp(mode, "peer") && npos >= 2)
		return run_peer(atoi(pos[0]), atoi(pos[1]));
	if (guest_mib < 4) {
		usage();
		return 2;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s/fault_check.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	if (!strcmp(mode, "kill-dest") || !strcmp(mode, "kill-src")) {
		bool all = npos < 1 || !strcmp(pos[0], "all");
		enum rdmig_mig_state one = RDMIG_MIG_BULK;
		int fds0 = -1, thr0 = -1;

		if (!all && parse_state(pos[0], &one)) {
			usage();
			return 2;
		}
		for (unsigned i = 0; i < NSTATES; i++) {
			if (!all && fault_states[i] != one)
				continue;
			if (mode[5] == 'd')
				kill_dest_one(fault_states[i], &fds0, &thr0);
			else
				kill_src_one(fault_states[i]);
		}
	} else if (!strcmp(mode, "migrate")) {
		plain_migrate();
	} else if (!strcmp(mode, "expect-fail")) {
		expect_fail();
	} else if (!strcmp(mode, "soak")) {
		if (npos >= 1)
			iterations = (unsigned)atoi(pos[0]);
		if (!iterations) {
			usage();
			return 2;
		}
		soak();
	} else {
		usage();
		rmdir(tmpdir);
		return 2;
	}
	rmdir(tmpdir);
	printf("%s: %s\n", mode, failures ? "FAILED" : "passed");
	return failures ? 1 : 0;
}
