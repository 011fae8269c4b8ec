/* SPDX-License-Identifier: MIT */
/*
 * The run: finding QEMU, the temporary directory, child processes and what
 * happens to them when the program ends, however it ends.
 *
 * Every child is remembered from qh_spawn() until it is reaped, so that
 * exit, a signal or the end of a test can kill what is left; children also
 * get SIGKILL from PR_SET_PDEATHSIG should this process be killed outright.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "qemu_harness.h"
#include "qemu_int.h"

#define MAX_PROCS 32
#define TMP_LEN	  72 /* leaves room for TMP/NAME.xx within sun_path (108) */
#define MAX_TEXT  (16u << 20)

static char g_qemu[PATH_MAX];
static char g_tmp[TMP_LEN];
static pid_t g_main;
static struct qh_proc *g_procs[MAX_PROCS];

int qh_fail_at(const char *file, int line, const char *fmt, ...)
{
	const char *base = strrchr(file, '/');
	va_list ap;

	fprintf(stderr, "FAIL %s:%d: ", base ? base + 1 : file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* ---- QEMU ------------------------------------------------------------------ */

int qh_need_qemu(const char *prog)
{
	const char *env = getenv("RDMIG_QEMU");
	char dirs[4096];

	if (env && *env) {
		snprintf(g_qemu, sizeof(g_qemu), "%s", env);
		if (!access(g_qemu, X_OK))
			return 0;
		fprintf(stderr, "%s: SKIP: RDMIG_QEMU=%s is not an executable\n", prog, env);
		return QH_EXIT_SKIP;
	}
	snprintf(dirs, sizeof(dirs), "%s", getenv("PATH") ?: "/usr/local/bin:/usr/bin:/bin");
	for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		snprintf(g_qemu, sizeof(g_qemu), "%s/qemu-system-x86_64", *d ? d : ".");
		if (!access(g_qemu, X_OK))
			return 0;
	}
	g_qemu[0] = '\0';
	fprintf(stderr,
		"%s: SKIP: qemu-system-x86_64 not found on PATH (apt-get install "
		"qemu-system-x86, or set RDMIG_QEMU)\n",
		prog);
	return QH_EXIT_SKIP;
}

const char *qh_qemu(void)
{
	return g_qemu;
}

const char *qh_tmp(void)
{
	return g_tmp;
}

/* ---- the temporary directory and cleanup ------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void remove_tmp(void)
{
	if (g_tmp[0] && !getenv("RDMIG_KEEP_TMP"))
		nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	else if (g_tmp[0])
		fprintf(stderr, "kept %s\n", g_tmp);
}

static void cleanup(void)
{
	if (getpid() != g_main)
		return;
	qh_kill_all(false);
	remove_tmp();
	g_tmp[0] = '\0';
}

/*
 * Kill and reap the children (both async-signal-safe), then remove the
 * directory as a best effort: nftw() is not async-signal-safe, but the
 * process is going anyway and a stale directory is all it can cost.
 */
static void on_signal(int sig)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (g_procs[i] && g_procs[i]->pid > 0) {
			kill(g_procs[i]->pid, SIGKILL);
			waitpid(g_procs[i]->pid, NULL, 0);
		}
	if (g_tmp[0] && !getenv("RDMIG_KEEP_TMP"))
		nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	signal(sig, SIG_DFL);
	raise(sig);
}

int qh_setup(const char *name, struct rdmig_err *err)
{
	struct sigaction sa = {.sa_handler = on_signal};
	const char *tmpdir = getenv("TMPDIR");

	if (g_tmp[0])
		return rdmig_seterr(err, -EALREADY, "qh_setup: called twice");
	if (!tmpdir || !*tmpdir || strlen(tmpdir) + strlen(name) + sizeof("/-XXXXXX") > TMP_LEN)
		tmpdir = "/tmp";
	if ((size_t)snprintf(g_tmp, sizeof(g_tmp), "%s/%s-XXXXXX", tmpdir, name) >= sizeof(g_tmp))
		return rdmig_seterr(err, -ENAMETOOLONG, "temporary directory name %s too long",
				    name);
	if (!mkdtemp(g_tmp)) {
		int ret = rdmig_neg_errno();

		rdmig_seterr_errno(err, ret, "mkdtemp %s", g_tmp);
		g_tmp[0] = '\0';
		return ret;
	}
	g_main = getpid();
	atexit(cleanup);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* ---- processes ------------------------------------------------------------------ */

static void forget(struct qh_proc *p)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (g_procs[i] == p)
			g_procs[i] = NULL;
}

static void reaped(struct qh_proc *p, int st)
{
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	p->pid = 0;
	forget(p);
}

int qh_spawn(struct qh_proc *p, const char *name, const char *const argv[], bool split_stdout,
	     struct rdmig_err *err)
{
	pid_t parent = getpid();
	int slot = -1;

	memset(p, 0, sizeof(*p));
	for (int i = 0; i < MAX_PROCS && slot < 0; i++)
		if (!g_procs[i])
			slot = i;
	if (slot < 0)
		return rdmig_seterr(err, -EMFILE, "%s: more than %d child processes", name,
				    MAX_PROCS);
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", g_tmp, name);
	if (split_stdout)
		snprintf(p->out, sizeof(p->out), "%s/%s.out", g_tmp, name);
	/* Never read a previous process's output under the same name. */
	unlink(p->log);
	if (split_stdout)
		unlink(p->out);
	fflush(stdout);
	fflush(stderr);
	p->pid = fork();
	if (p->pid < 0) {
		p->pid = 0;
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "%s: fork", name);
	}
	if (p->pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int e = open(p->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		int o = split_stdout ? open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0600) : e;

		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
			_exit(127);
		if (in < 0 || e < 0 || o < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(127);
		execvp(argv[0], (char *const *)argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	g_procs[slot] = p;
	return 0;
}

bool qh_exited(struct qh_proc *p)
{
	pid_t r;
	int st;

	if (p->pid <= 0)
		return true;
	r = waitpid(p->pid, &st, WNOHANG);
	if (r == p->pid) {
		reaped(p, st);
		return true;
	}
	if (r < 0 && errno == ECHILD) {
		/* Reaped behind our back: nothing is left to wait for. */
		p->status = -1;
		p->pid = 0;
		forget(p);
		return true;
	}
	return false;
}

void qh_kill(struct qh_proc *p)
{
	int st;

	if (p->pid > 0) {
		pid_t r;

		kill(p->pid, SIGKILL);
		while ((r = waitpid(p->pid, &st, 0)) < 0 && errno == EINTR)
			;
		if (r == p->pid)
			reaped(p, st);
		p->pid = 0;
	}
	forget(p);
}

int qh_wait(struct qh_proc *p, int timeout_ms, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);

	while (!qh_exited(p)) {
		if (rdmig_ms_left(deadline) == 0) {
			qh_kill(p);
			return rdmig_seterr(err, -ETIMEDOUT, "%s still running after %d ms: killed",
					    p->name, timeout_ms);
		}
		rdmig_sleep_ms(20);
	}
	return 0;
}

char *qh_read_text(const char *path)
{
	size_t n = 0, cap = 4096;
	char *buf = malloc(cap), *bigger;
	FILE *f = fopen(path, "r");

	while (buf && f && n < MAX_TEXT) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (n < cap - 1)
			break;
		cap *= 2;
		bigger = realloc(buf, cap);
		if (!bigger)
			free(buf);
		buf = bigger;
	}
	if (f)
		fclose(f);
	if (buf)
		buf[n] = '\0';
	return buf;
}

static void show_file(const char *title, const char *path)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	fprintf(stderr, "---- %s (%s)\n", title, path);
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "   | %s%s", line, strchr(line, '\n') ? "" : "\n");
	fclose(f);
}

void qh_show_log(const struct qh_proc *p)
{
	show_file(p->name, p->log);
	if (p->out[0])
		show_file(p->name, p->out);
}

void qh_kill_all(bool show_logs)
{
	for (int i = 0; i < MAX_PROCS; i++) {
		struct qh_proc *p = g_procs[i];

		if (!p)
			continue;
		if (show_logs)
			qh_show_log(p);
		qh_kill(p);
	}
}

int qh_qemu_version(int ver[3], struct rdmig_err *err)
{
	static struct qh_proc p;
	const char *argv[] = {g_qemu, "--version", NULL};
	char *text;
	int ret;

	ret = qh_spawn(&p, "version", argv, false, err);
	if (!ret)
		ret = qh_wait(&p, 10000, err);
	if (ret)
		return ret;
	text = qh_read_text(p.log);
	if (!text)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	if (sscanf(text, "QEMU emulator version %d.%d.%d", &ver[0], &ver[1], &ver[2]) != 3)
		ret = rdmig_seterr(err, -EPROTO, "cannot parse `%s --version`: \"%.*s\"", g_qemu,
				   (int)strcspn(text, "\n"), text);
	free(text);
	return ret;
}

/* ---- the test runner ------------------------------------------------------------ */

static bool named(const char *name, int argc, char **argv, int first)
{
	if (argc <= first)
		return true;
	for (int i = first; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

int qh_run_tests(const struct qh_test *tests, size_t n, int argc, char **argv, int first)
{
	double t_all = rdmig_now_s();
	int failed = 0, ran = 0;

	for (size_t i = 0; i < n; i++) {
		double t0;
		int rc;

		if (!named(tests[i].name, argc, argv, first))
			continue;
		printf("== %s\n", tests[i].name);
		t0 = rdmig_now_s();
		rc = tests[i].fn();
		qh_end_test(rc != 0);
		printf("%s %s (%.2f s)\n", rc ? "FAIL" : "ok", tests[i].name, rdmig_now_s() - t0);
		failed += rc != 0;
		ran++;
	}
	if (!ran) {
		fprintf(stderr, "no test matches; tests:");
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, " %s", tests[i].name);
		fputc('\n', stderr);
		return 1;
	}
	printf("%s: %d of %d tests failed (%.2f s)\n", failed ? "FAIL" : "PASS", failed, ran,
	       rdmig_now_s() - t_all);
	return failed ? 1 : 0;
}
