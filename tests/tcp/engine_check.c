/* SPDX-License-Identifier: MIT */
/*
 * Engine checks through the library, source and destination in two
 * processes on loopback (or any backend/host given):
 *
 *   engine_check cancel  [--backend B --host H]   cancel in every state
 *   engine_check corrupt [...]   a page corrupted at the destination is named
 *   engine_check cold    [...]   stopped guest, one pass, verified
 *
 * After a cancel or failure the source guest must still run (its work
 * counter moves), its RAM must still pass the incr check, and the process
 * must be back to its baseline of open files and threads.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest.h"
#include "incr_check.h"
#include "migrate.h"
#include "rdmig/transport.h"

static const char *backend_name = "tcp";
static const char *host = "127.0.0.1";
static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("FAIL: " __VA_ARGS__);                                              \
			printf("\n");                                                              \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

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

static struct rdmig_xport_cfg xcfg(uint16_t port)
{
	struct rdmig_xport_cfg cfg = {.host = host, .port = port, .channels = 2};

	rdmig_backend_parse(backend_name, &cfg.backend, NULL);
	return cfg;
}

/*
 * The destination: `engine_check dest FD CORRUPT DUMP --backend B --host H`,
 * run as its own process. It is exec'd, not just forked, because
 * libibverbs/librdmacm state (device contexts cached by librdmacm) must not
 * be used across a fork. It writes its port to FD; exit 0 means committed.
 */
static int run_dest(int fd, int64_t corrupt_page, const char *dump)
{
	struct rdmig_xport_cfg cfg = xcfg(0);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l;
	struct rdmig_mig_opts o;
	struct rdmig_conn *c;
	uint16_t p;
	int ret;

	cfg.channels = RDMIG_MAX_CHANNELS;
	if (rdmig_listen(&cfg, &l, &err)) {
		fprintf(stderr, "dest: %s\n", err.msg);
		return 3;
	}
	p = rdmig_listener_port(l);
	if (write(fd, &p, sizeof(p)) != sizeof(p))
		return 3;
	close(fd);
	if (rdmig_accept(l, 60000, &c, &err)) {
		fprintf(stderr, "dest: %s\n", err.msg);
		return 3;
	}
	rdmig_mig_opts_defaults(&o);
	o.test_corrupt_page = corrupt_page;
	o.dump_ram = dump && *dump ? dump : NULL;
	o.resume_ns = 0;
	ret = rdmig_mig_dest(c, &o, NULL, &err);
	if (ret)
		fprintf(stderr, "dest: %s\n", err.msg);
	rdmig_conn_destroy(c);
	rdmig_listener_destroy(l);
	return ret ? 1 : 0;
}

static pid_t start_dest(uint16_t *port, int64_t corrupt_page, const char *dump)
{
	char fdarg[16], corrupt[32];
	int pfd[2];
	pid_t pid;

	if (pipe(pfd))
		return -1;
	snprintf(fdarg, sizeof(fdarg), "%d", pfd[1]);
	snprintf(corrupt, sizeof(corrupt), "%lld", (long long)corrupt_page);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		execl("/proc/self/exe", "engine_check", "dest", fdarg, corrupt, dump ? dump : "",
		      "--backend", backend_name, "--host", host, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	if (read(pfd[0], port, sizeof(*port)) != sizeof(*port)) {
		close(pfd[0]);
		waitpid(pid, NULL, 0);
		return -1;
	}
	close(pfd[0]);
	return pid;
}

struct cancel_at {
	enum rdmig_mig_state state;
	volatile sig_atomic_t flag;
	bool seen;
};

static void cancel_event(const struct rdmig_mig_event *ev, void *arg)
{
	struct cancel_at *ca = arg;

	if (ev->type == RDMIG_EV_STATE && ev->stats->state == ca->state) {
		ca->seen = true;
		ca->flag = 1;
	}
}

static struct rdmig_guest *new_guest(unsigned vcpus, uint64_t size)
{
	struct rdmig_guest_cfg gc = {
	    .ram_size = size, .nregions = 2, .vcpus = vcpus, .workload = RDMIG_WL_INCR, .seed = 7};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *g;

	if (rdmig_guest_create(&gc, &g, &err)) {
		printf("FAIL: guest: %s\n", err.msg);
		exit(1);
	}
	return g;
}

/* The guest still runs: its work counter moves (within 10 s, for a busy or emulated host). */
static bool guest_moves(struct rdmig_guest *g)
{
	uint64_t w0 = rdmig_guest_work(g);

	for (int i = 0; i < 1000; i++) {
		usleep(10000);
		if (rdmig_guest_work(g) > w0)
			return true;
	}
	return false;
}

static int run_source(struct rdmig_guest *g, uint16_t port, struct rdmig_mig_opts *o,
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

static void check_cancel(void)
{
	/*
	 * Cancel is honoured until the source has handed over the manifest
	 * (verify); from then on the destination's verdict decides, so that
	 * both sides never end up running the guest.
	 */
	static const enum rdmig_mig_state states[] = {RDMIG_MIG_SETUP, RDMIG_MIG_BULK,
						      RDMIG_MIG_DIRTY, RDMIG_MIG_SWITCHOVER,
						      RDMIG_MIG_FINAL_COPY};
	struct rdmig_guest *g = new_guest(1, 32 << 20);
	struct rdmig_err err = RDMIG_ERR_INIT;
	int fds0, thr0;

	rdmig_guest_start(g, NULL, &err);
	usleep(20000);
	fds0 = thr0 = -1;
	for (unsigned i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		struct cancel_at ca = {.state = states[i]};
		struct rdmig_mig_opts o;
		struct rdmig_mig_stats st;
		uint16_t port;
		pid_t dst;
		int ret, status;

		/* Twice per state: cancel must be repeatable. */
		for (int rep = 0; rep < 2; rep++) {
			int before = failures;

			ca.flag = 0;
			ca.seen = false;
			dst = start_dest(&port, -1, NULL);
			CHECK(dst > 0, "destination did not start");
			if (dst <= 0)
				return;
			rdmig_mig_opts_defaults(&o);
			o.on_event = cancel_event;
			o.ev_ctx = &ca;
			o.cancel = &ca.flag;
			if (states[i] < RDMIG_MIG_SWITCHOVER) {
				o.min_rounds = 1000; /* never switch over by itself */
				o.max_bandwidth = 64 << 20;
			}
			rdmig_err_clear(&err);
			ret = run_source(g, port, &o, &st, &err);
			waitpid(dst, &status, 0);
			CHECK(ca.seen, "cancel: state %s never reached",
			      rdmig_mig_state_name(states[i]));
			CHECK(ret == -ECANCELED, "cancel in %s: returned %d (%s)",
			      rdmig_mig_state_name(states[i]), ret, err.msg);
			CHECK(st.state == RDMIG_MIG_CANCELLED, "cancel in %s: final state %s",
			      rdmig_mig_state_name(states[i]), rdmig_mig_state_name(st.state));
			CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1,
			      "cancel in %s: destination should discard and exit 1, status %d",
			      rdmig_mig_state_name(states[i]), status);
			CHECK(rdmig_guest_running(g) && guest_moves(g),
			      "cancel in %s: source guest not running",
			      rdmig_mig_state_name(states[i]));
			CHECK(rdmig_guest_throttle(g) == 0, "cancel in %s: throttle left at %u",
			      rdmig_mig_state_name(states[i]), rdmig_guest_throttle(g));
			/*
			 * Baseline after the first run: librdmacm opens its device
			 * files once per process, on first use, and keeps them.
			 */
			if (fds0 < 0) {
				fds0 = count_dir("/proc/self/fd");
				thr0 = count_dir("/proc/self/task");
			}
			CHECK(count_dir("/proc/self/fd") == fds0,
			      "cancel in %s: %d fds, baseline %d", rdmig_mig_state_name(states[i]),
			      count_dir("/proc/self/fd"), fds0);
			CHECK(count_dir("/proc/self/task") == thr0,
			      "cancel in %s: %d threads, baseline %d",
			      rdmig_mig_state_name(states[i]), count_dir("/proc/self/task"), thr0);
			if (failures == before)
				printf(
				    "ok: cancel in %s (%d): source running, destination discarded, "
				    "resources at baseline\n",
				    rdmig_mig_state_name(states[i]), rep + 1);
		}
	}
	rdmig_guest_pause(g);
	CHECK(rdmig_guest_check_incr(g, &err) == 0, "source RAM after cancels: %s", err.msg);
	rdmig_guest_destroy(g);
}

static void check_corrupt(void)
{
	struct rdmig_guest *g = new_guest(1, 16 << 20);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	uint16_t port;
	pid_t dst;
	int ret, status;

	rdmig_guest_start(g, NULL, &err);
	dst = start_dest(&port, 100, NULL);
	rdmig_mig_opts_defaults(&o);
	ret = run_source(g, port, &o, &st, &err);
	waitpid(dst, &status, 0);
	CHECK(ret == -EILSEQ, "corrupt page: returned %d (%s)", ret, err.msg);
	CHECK(strstr(err.msg, "page 100 ") != NULL, "corrupt page not named: %s", err.msg);
	CHECK(rdmig_guest_running(g) && guest_moves(g), "corrupt: source guest not running");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1, "corrupt: destination status %d",
	      status);
	if (ret == -EILSEQ)
		printf("ok: corrupted page caught: %s\n", err.msg);
	rdmig_guest_destroy(g);
}

static void check_cold(void)
{
	struct rdmig_guest *g = new_guest(2, 16 << 20);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	uint16_t port;
	pid_t dst;
	int ret, status;

	rdmig_guest_start(g, NULL, &err);
	usleep(20000);
	rdmig_guest_pause(g);
	dst = start_dest(&port, -1, NULL);
	rdmig_mig_opts_defaults(&o);
	o.cold = true;
	ret = run_source(g, port, &o, &st, &err);
	waitpid(dst, &status, 0);
	CHECK(ret == 0, "cold: %s", err.msg);
	CHECK(st.round == 2 || st.round == 1, "cold: %u rounds", st.round);
	CHECK(st.verified_pages == (16 << 20) / RDMIG_PAGE_SIZE, "cold: %" PRIu64 " pages verified",
	      st.verified_pages);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "cold: destination status %d", status);
	if (!ret)
		printf("ok: cold migration, %" PRIu64 " pages verified, %" PRIu64 " zero pages\n",
		       st.verified_pages, st.zero_pages);
	rdmig_guest_destroy(g);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--backend"))
			backend_name = argv[i + 1];
		else if (!strcmp(argv[i], "--host"))
			host = argv[i + 1];
	}
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(mode, "dest") && argc >= 5) {
		for (int i = 5; i + 1 < argc; i += 2) {
			if (!strcmp(argv[i], "--backend"))
				backend_name = argv[i + 1];
			else if (!strcmp(argv[i], "--host"))
				host = argv[i + 1];
		}
		return run_dest(atoi(argv[2]), atoll(argv[3]), argv[4]);
	}
	if (!strcmp(mode, "cancel"))
		check_cancel();
	else if (!strcmp(mode, "corrupt"))
		check_corrupt();
	else if (!strcmp(mode, "cold"))
		check_cold();
	else {
		fprintf(stderr,
			"usage: engine_check cancel|corrupt|cold [--backend B] [--host H]\n");
		return 2;
	}
	printf("%s: %s\n", mode, failures ? "FAILED" : "passed");
	return failures ? 1 : 0;
}
