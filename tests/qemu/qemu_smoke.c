/* SPDX-License-Identifier: MIT */
/*
 * QEMU tier smoke test: drives real qemu-system-x86_64 processes (TCG)
 * through the rdmig QMP client.
 *
 *   greeting        greeting, version, prelaunch -> cont -> running, events,
 *                   a reply larger than one read (query-qmp-schema)
 *   errors          QMP errors come back as "QMP <cmd> failed: <class>: <desc>";
 *                   a reply with a uint64 beyond INT64_MAX still parses
 *   not_qmp         sockets that are not QMP are rejected within the timeout
 *   migrate         QEMU-to-QEMU live migration over unix:, guest memory checked
 *   migrate_fail    migration to a socket nobody listens on fails, the source
 *                   keeps running and can then migrate to a real destination
 *
 * The guest is a 64 KiB firmware image written by this test (-bios): real-mode
 * code that increments byte 0 of each of 128 pages at 0x10000 forever. With
 * the guest stopped, every page equals the previous one except at most one
 * edge where it is one lower (where the loop was); a page lost or stale in
 * migration breaks that, because increments preserve differences.
 *
 * Usage: qemu_smoke [TEST...]
 *   RDMIG_QEMU=/path/to/qemu-system-x86_64   instead of the one on PATH
 *   RDMIG_QEMU_ACCEL=kvm                     instead of tcg
 *   RDMIG_QEMU_STRICT=1                      fail on damaged guest memory even
 *                                            where QEMU's TCG is known to lose
 *                                            dirty pages (before 9.0)
 *   RDMIG_KEEP_TMP=1                         keep the temporary directory and logs
 * Exit: 0 pass, 1 fail, 77 QEMU not installed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "qmp.h"
#include "rdmig/err.h"

#define QMP_TIMEOUT_MS	   10000
#define START_TIMEOUT_MS   15000
#define MIGRATE_TIMEOUT_MS 120000
#define FAKE_TIMEOUT_MS	   1000

/* Guest layout, see the firmware in write_bios(). */
#define GUEST_BASE  0x10000u
#define GUEST_PAGES 128u
#define PAGE	    4096u

#define MAX_VMS 8

/* The temporary directory is kept short so that socket paths fit sun_path (108). */
#define TMP_LEN	 72
#define PATH_LEN 160

struct vm {
	pid_t pid;
	char name[16];
	char qmp_path[PATH_LEN];
	char log_path[PATH_LEN];
	struct rdmig_qmp *qmp;
};

static char g_qemu[PATH_MAX];
static char g_tmp[TMP_LEN];
static char g_bios[PATH_LEN];
static struct vm g_vms[MAX_VMS];
static pid_t g_main_pid;
static int g_ver[3];	    /* from `qemu --version` */
static const char *g_accel; /* -accel value, "tcg" unless RDMIG_QEMU_ACCEL says otherwise */
static int g_lossy_tcg;	    /* TCG dirty tracking known to lose writes, see main() */

/* ---- reporting --------------------------------------------------------- */

#define FAIL(...) fail_at(__LINE__, __VA_ARGS__)

static int fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_at(int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL qemu_smoke.c:%d: ", line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- processes and the temporary directory ----------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void kill_vm(struct vm *vm)
{
	if (vm->pid > 0) {
		kill(vm->pid, SIGKILL);
		while (waitpid(vm->pid, NULL, 0) < 0 && errno == EINTR)
			;
		vm->pid = 0;
	}
}

static void cleanup(void)
{
	if (getpid() != g_main_pid)
		return;
	for (int i = 0; i < MAX_VMS; i++) {
		kill_vm(&g_vms[i]);
		rdmig_qmp_close(g_vms[i].qmp);
		g_vms[i].qmp = NULL;
	}
	if (g_tmp[0] && !getenv("RDMIG_KEEP_TMP"))
		nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	else if (g_tmp[0])
		fprintf(stderr, "kept %s\n", g_tmp);
	g_tmp[0] = '\0';
}

/*
 * On SIGINT/SIGTERM: kill and reap the QEMUs (both async-signal-safe), then
 * remove the directory as a best effort. Children also get SIGKILL from
 * PR_SET_PDEATHSIG should this process be killed outright.
 */
static void on_signal(int sig)
{
	for (int i = 0; i < MAX_VMS; i++)
		if (g_vms[i].pid > 0) {
			kill(g_vms[i].pid, SIGKILL);
			waitpid(g_vms[i].pid, NULL, 0);
			g_vms[i].pid = 0;
		}
	if (g_tmp[0] && !getenv("RDMIG_KEEP_TMP"))
		nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* fork+exec with stdout/stderr to `log_path`; the child dies with us. */
static pid_t spawn(const char *const argv[], const char *log_path)
{
	pid_t parent = getpid();
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		FAIL("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int out = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);

		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
			_exit(127);
		if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(127);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static void dump_log(const char *title, const char *path)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	fprintf(stderr, "---- %s (%s)\n", title, path);
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "   | %s", line);
	fclose(f);
}

static int find_qemu(void)
{
	const char *env = getenv("RDMIG_QEMU");
	const char *path = getenv("PATH");
	char dirs[4096];

	if (env && *env) {
		snprintf(g_qemu, sizeof(g_qemu), "%s", env);
		return access(g_qemu, X_OK) ? -1 : 0;
	}
	snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		snprintf(g_qemu, sizeof(g_qemu), "%s/qemu-system-x86_64", *d ? d : ".");
		if (!access(g_qemu, X_OK))
			return 0;
	}
	g_qemu[0] = '\0';
	return -1;
}

/*
 * The firmware. The reset vector (file offset 0xfff0, physical 0xfffffff0)
 * jumps to F000:0000, the start of the file as mapped below 1 MiB:
 *
 *   0: fa              cli
 *   1: b8 00 10        mov  ax, 0x1000          ; first page, 0x10000
 *   4: 8e c0           mov  es, ax
 *   6: 26 fe 06 00 00  inc  byte [es:0]
 *  11: 05 00 01        add  ax, 0x100           ; next 4 KiB page
 *  14: 3d 00 90        cmp  ax, 0x9000          ; 128 pages
 *  17: 72 f1           jb   4
 *  19: eb ec           jmp  1
 */
static int write_bios(void)
{
	static const unsigned char code[] = {0xfa, 0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x26,
					     0xfe, 0x06, 0x00, 0x00, 0x05, 0x00, 0x01,
					     0x3d, 0x00, 0x90, 0x72, 0xf1, 0xeb, 0xec};
	static const unsigned char reset[] = {0xea, 0x00, 0x00, 0x00, 0xf0};
	static unsigned char img[65536];
	FILE *f;

	memset(img, 0xf4, sizeof(img)); /* hlt */
	memcpy(img, code, sizeof(code));
	memcpy(img + 0xfff0, reset, sizeof(reset));
	snprintf(g_bios, sizeof(g_bios), "%s/guest.bin", g_tmp);
	f = fopen(g_bios, "wb");
	if (!f || fwrite(img, sizeof(img), 1, f) != 1 || fclose(f))
		return FAIL("write %s: %s", g_bios, strerror(errno));
	return 0;
}

/* ---- VMs ---------------------------------------------------------------- */

static void vm_stop(struct vm *vm, int show_log)
{
	rdmig_qmp_close(vm->qmp);
	vm->qmp = NULL;
	kill_vm(vm);
	if (show_log)
		dump_log(vm->name, vm->log_path);
	vm->name[0] = '\0';
}

static void vm_stop_all(int show_logs)
{
	for (int i = 0; i < MAX_VMS; i++)
		if (g_vms[i].name[0])
			vm_stop(&g_vms[i], show_logs);
}

/*
 * Start a QEMU and connect to its QMP socket. `paused` adds -S, `incoming`
 * (a migration URI) adds -incoming.
 */
static struct vm *vm_start(const char *name, int paused, const char *incoming)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char qmp_arg[PATH_LEN + 32], vm_name[64];
	const char *argv[40];
	struct vm *vm = NULL;
	double t0 = now_s();
	int argc = 0, rc;

	for (int i = 0; i < MAX_VMS && !vm; i++)
		if (!g_vms[i].name[0])
			vm = &g_vms[i];
	if (!vm) {
		FAIL("more than %d VMs", MAX_VMS);
		return NULL;
	}
	memset(vm, 0, sizeof(*vm));
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s/%s.qmp", g_tmp, name);
	snprintf(vm->log_path, sizeof(vm->log_path), "%s/%s.log", g_tmp, name);
	snprintf(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off", vm->qmp_path);
	snprintf(vm_name, sizeof(vm_name), "rdmig-smoke-%s", name);

	argv[argc++] = g_qemu;
	argv[argc++] = "-name";
	argv[argc++] = vm_name;
	argv[argc++] = "-accel";
	argv[argc++] = g_accel;
	argv[argc++] = "-M";
	argv[argc++] = "pc";
	argv[argc++] = "-m";
	argv[argc++] = "64";
	argv[argc++] = "-nographic";
	argv[argc++] = "-nodefaults";
	argv[argc++] = "-display";
	argv[argc++] = "none";
	argv[argc++] = "-serial";
	argv[argc++] = "none";
	argv[argc++] = "-monitor";
	argv[argc++] = "none";
	argv[argc++] = "-qmp";
	argv[argc++] = qmp_arg;
	argv[argc++] = "-bios";
	argv[argc++] = g_bios;
	if (paused)
		argv[argc++] = "-S";
	if (incoming) {
		argv[argc++] = "-incoming";
		argv[argc++] = incoming;
	}
	argv[argc] = NULL;

	vm->pid = spawn(argv, vm->log_path);
	if (vm->pid < 0) {
		vm->pid = 0;
		return NULL;
	}

	/* QEMU creates the socket during start-up: retry until it answers. */
	for (;;) {
		int status;

		rdmig_err_clear(&err);
		rc = rdmig_qmp_open(vm->qmp_path, QMP_TIMEOUT_MS, &vm->qmp, &err);
		if (!rc)
			break;
		if (waitpid(vm->pid, &status, WNOHANG) == vm->pid) {
			vm->pid = 0;
			FAIL("%s: QEMU exited during start-up (status 0x%x)", name, status);
			return NULL;
		}
		if ((rc != -ENOENT && rc != -ECONNREFUSED) ||
		    now_s() - t0 > START_TIMEOUT_MS / 1000.0) {
			FAIL("%s: %s", name, rdmig_err_str(&err));
			return NULL;
		}
		sleep_ms(20);
	}
	printf("  started %s (pid %d, %.0f ms)\n", name, (int)vm->pid, (now_s() - t0) * 1000);
	return vm;
}

static int vm_cmd(struct vm *vm, const char *cmd, json_t *args, json_t **ret)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	int rc = rdmig_qmp_cmd(vm->qmp, cmd, args, ret, QMP_TIMEOUT_MS, &err);

	if (rc)
		return FAIL("%s: %s", vm->name, rdmig_err_str(&err));
	return 0;
}

static int vm_status(struct vm *vm, char *buf, size_t len)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (rdmig_qmp_status(vm->qmp, buf, len, &err))
		return FAIL("%s: %s", vm->name, rdmig_err_str(&err));
	return 0;
}

static int expect_status(struct vm *vm, const char *want)
{
	char st[64];

	if (vm_status(vm, st, sizeof(st)))
		return -1;
	if (strcmp(st, want))
		return FAIL("%s: status is \"%s\", expected \"%s\"", vm->name, st, want);
	printf("  %s: status %s\n", vm->name, st);
	return 0;
}

/* Poll query-status until `want` (transitions such as finish-migrate pass). */
static int wait_status(struct vm *vm, const char *want, int timeout_ms)
{
	double end = now_s() + timeout_ms / 1000.0;
	char st[64];

	for (;;) {
		if (vm_status(vm, st, sizeof(st)))
			return -1;
		if (!strcmp(st, want)) {
			printf("  %s: status %s\n", vm->name, st);
			return 0;
		}
		if (now_s() > end)
			return FAIL("%s: status still \"%s\" after %d ms, expected \"%s\"",
				    vm->name, st, timeout_ms, want);
		sleep_ms(20);
	}
}

/* Wait for event `name`, skipping others. */
static int wait_event(struct vm *vm, const char *name, int timeout_ms)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	double end = now_s() + timeout_ms / 1000.0;

	for (;;) {
		json_t *ev = NULL;
		int left = (int)((end - now_s()) * 1000);
		int rc = rdmig_qmp_next_event(vm->qmp, left > 0 ? left : 0, &ev, &err);
		const char *got;

		if (rc)
			return FAIL("%s: waiting for event %s: %s", vm->name, name,
				    rdmig_err_str(&err));
		if (!ev)
			return FAIL("%s: no %s event within %d ms", vm->name, name, timeout_ms);
		got = json_string_value(json_object_get(ev, "event"));
		if (got && !strcmp(got, name)) {
			printf("  %s: event %s\n", vm->name, name);
			json_decref(ev);
			return 0;
		}
		json_decref(ev);
	}
}

/* Copy guest-physical memory out through pmemsave. */
static int read_guest(struct vm *vm, uint64_t addr, size_t len, unsigned char *buf)
{
	char path[PATH_LEN];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s.mem", g_tmp, vm->name);
	if (vm_cmd(vm, "pmemsave",
		   json_pack("{s:I, s:I, s:s}", "val", (json_int_t)addr, "size", (json_int_t)len,
			     "filename", path),
		   NULL))
		return -1;
	f = fopen(path, "rb");
	if (!f)
		return FAIL("%s: open %s: %s", vm->name, path, strerror(errno));
	n = fread(buf, 1, len, f);
	fclose(f);
	unlink(path);
	if (n != len)
		return FAIL("%s: pmemsave wrote %zu of %zu bytes", vm->name, n, len);
	return 0;
}

/* The guest runs: its first counter changes (within 10 s on a loaded host). */
static int expect_guest_running(struct vm *vm)
{
	unsigned char first, now;

	if (read_guest(vm, GUEST_BASE, 1, &first))
		return -1;
	for (int i = 0; i < 200; i++) {
		sleep_ms(50);
		if (read_guest(vm, GUEST_BASE, 1, &now))
			return -1;
		if (now != first) {
			printf("  %s: guest runs (counter %u -> %u)\n", vm->name, first, now);
			return 0;
		}
	}
	return FAIL("%s: guest counter stays at %u for 10 s: the guest does not run", vm->name,
		    first);
}

struct scan {
	unsigned int bad;   /* counters that are neither equal to nor one below the previous */
	unsigned int edges; /* places where a counter is one below the previous */
	unsigned int dirty; /* non-zero bytes other than the counters */
};

/*
 * Check the counters of a stopped guest: the loop was at some page k, pages
 * before it were incremented once more than pages from k on. So there is at
 * most one edge; with none, the first and last counters are equal, with one,
 * the first is one above the last. `verbose` names the first few bad pages.
 */
static void scan_pages(const unsigned char *m, int verbose, struct scan *sc)
{
	unsigned char first = m[0], last = m[(GUEST_PAGES - 1) * PAGE];

	memset(sc, 0, sizeof(*sc));
	for (unsigned int p = 0; p < GUEST_PAGES; p++) {
		for (unsigned int i = 1; i < PAGE; i++)
			if (m[p * PAGE + i] && !sc->dirty++ && verbose)
				fprintf(stderr, "  page %u: byte %u is 0x%02x, expected 0\n", p, i,
					m[p * PAGE + i]);
		if (p) {
			unsigned char prev = m[(p - 1) * PAGE], cur = m[p * PAGE];

			if (cur == prev)
				continue;
			if ((unsigned char)(prev - cur) == 1) {
				sc->edges++;
				continue;
			}
			if (sc->bad++ < 5 && verbose)
				fprintf(stderr,
					"  page %u: counter %u after %u: lost or stale page\n", p,
					cur, prev);
		}
	}
	if ((unsigned char)(first - last) != (sc->edges ? 1 : 0)) {
		sc->bad++;
		if (verbose)
			fprintf(stderr, "  first counter %u, last %u with %u edges\n", first, last,
				sc->edges);
	}
}

/* The counters as runs of equal values, "0-40:17 41-127:16", for a failure report. */
static void print_runs(const unsigned char *m)
{
	unsigned int from = 0;

	fprintf(stderr, "  counters (pages:value):");
	for (unsigned int p = 1; p <= GUEST_PAGES; p++)
		if (p == GUEST_PAGES || m[p * PAGE] != m[from * PAGE]) {
			fprintf(stderr, " %u-%u:%u", from, p - 1, m[from * PAGE]);
			from = p;
		}
	fputc('\n', stderr);
}

static int scan_ok(const struct scan *sc)
{
	return !sc->bad && !sc->dirty && sc->edges <= 1;
}

/*
 * With the guest stopped: counters stand still and scan_pages() finds
 * nothing wrong. The checker is shown to fail on doctored copies first.
 */
static int check_guest_memory(struct vm *vm)
{
	static unsigned char a[GUEST_PAGES * PAGE], b[GUEST_PAGES * PAGE];
	static const unsigned int probe[] = {0, 1, GUEST_PAGES / 2, GUEST_PAGES - 1};
	struct scan sc;

	if (read_guest(vm, GUEST_BASE, sizeof(a), a))
		return -1;
	sleep_ms(100);
	if (read_guest(vm, GUEST_BASE, sizeof(b), b))
		return -1;
	if (memcmp(a, b, sizeof(a)))
		return FAIL("%s: guest memory changes while the guest is stopped", vm->name);

	for (unsigned int i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
		memcpy(b, a, sizeof(b));
		b[probe[i] * PAGE] -= 3; /* a stale page */
		scan_pages(b, 0, &sc);
		if (scan_ok(&sc))
			return FAIL("checker misses a stale counter in page %u", probe[i]);
		memcpy(b, a, sizeof(b));
		b[probe[i] * PAGE + 100] = 0x5a; /* a stray write */
		scan_pages(b, 0, &sc);
		if (scan_ok(&sc))
			return FAIL("checker misses a stray byte in page %u", probe[i]);
	}

	scan_pages(a, 1, &sc);
	if (!scan_ok(&sc) && g_lossy_tcg) {
		print_runs(a);
		printf("  WARN %s: guest memory damaged (%u bad counters, %u edges, %u stray "
		       "bytes): the known TCG dirty-tracking bug of QEMU < 9.0, not counted "
		       "(RDMIG_QEMU_STRICT=1 counts it)\n",
		       vm->name, sc.bad, sc.edges, sc.dirty);
		return 0;
	}
	if (!scan_ok(&sc)) {
		print_runs(a);
		return FAIL("%s: guest memory damaged: %u bad counters, %u edges (at most 1), "
			    "%u stray bytes",
			    vm->name, sc.bad, sc.edges, sc.dirty);
	}
	printf("  %s: guest memory intact (%u pages, counter %u, %u edge; checker self-test "
	       "ok)\n",
	       vm->name, GUEST_PAGES, a[0], sc.edges);
	return 0;
}

/* ---- migration ---------------------------------------------------------- */

static uint64_t ram_field(json_t *info, const char *key)
{
	json_t *v = json_object_get(json_object_get(info, "ram"), key);

	return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static json_int_t int_field(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

/*
 * Poll query-migrate on `src` until the migration is no longer in progress;
 * *final receives the final status. Prints progress.
 */
static int wait_migration(struct vm *src, int timeout_ms, char *final, size_t len, json_t **out)
{
	double t0 = now_s(), last_print = 0;
	char last[64] = "";

	for (;;) {
		json_t *info = NULL;
		const char *st;
		double t = now_s() - t0;

		if (vm_cmd(src, "query-migrate", NULL, &info))
			return -1;
		st = json_string_value(json_object_get(info, "status"));
		if (!st)
			st = "none";
		if (strcmp(st, last) || t - last_print >= 1.0) {
			printf("  [%6.2f s] migrate %-10s %8.1f of %.1f MiB sent, %.1f MiB left, "
			       "%" PRIu64 " passes\n",
			       t, st, ram_field(info, "transferred") / 1048576.0,
			       ram_field(info, "total") / 1048576.0,
			       ram_field(info, "remaining") / 1048576.0,
			       ram_field(info, "dirty-sync-count"));
			snprintf(last, sizeof(last), "%s", st);
			last_print = t;
		}
		if (strcmp(st, "setup") && strcmp(st, "active") && strcmp(st, "device") &&
		    strcmp(st, "pre-switchover") && strcmp(st, "cancelling") &&
		    strcmp(st, "wait-unplug") && strcmp(st, "none")) {
			snprintf(final, len, "%s", st);
			*out = info;
			return 0;
		}
		json_decref(info);
		if (t * 1000 > timeout_ms)
			return FAIL("%s: migration still \"%s\" after %d ms", src->name, st,
				    timeout_ms);
		sleep_ms(50);
	}
}

/* Migrate a running `src` into `dst` (started with -incoming `uri`) and check both. */
static int migrate_and_check(struct vm *src, struct vm *dst, const char *uri)
{
	json_t *info = NULL;
	char st[64];
	int rc;

	if (expect_status(dst, "inmigrate") || expect_status(src, "running") ||
	    expect_guest_running(src))
		return -1;
	if (vm_cmd(src, "migrate", json_pack("{s:s}", "uri", uri), NULL))
		return -1;
	if (wait_migration(src, MIGRATE_TIMEOUT_MS, st, sizeof(st), &info))
		return -1;
	if (strcmp(st, "completed")) {
		const char *desc = json_string_value(json_object_get(info, "error-desc"));

		rc = FAIL("migration ended \"%s\": %s", st, desc ? desc : "(no error-desc)");
		json_decref(info);
		return rc;
	}
	printf("  completed: total %lld ms, downtime %lld ms, setup %lld ms, %.1f MiB sent\n",
	       (long long)int_field(info, "total-time"), (long long)int_field(info, "downtime"),
	       (long long)int_field(info, "setup-time"),
	       ram_field(info, "transferred") / 1048576.0);
	json_decref(info);

	if (wait_status(dst, "running", QMP_TIMEOUT_MS) || wait_event(dst, "RESUME", 5000) ||
	    wait_status(src, "postmigrate", QMP_TIMEOUT_MS) || wait_event(src, "STOP", 5000))
		return -1;
	if (expect_guest_running(dst))
		return -1;
	if (vm_cmd(dst, "stop", NULL, NULL) || expect_status(dst, "paused"))
		return -1;
	return check_guest_memory(dst);
}

/* ---- tests -------------------------------------------------------------- */

/* "QEMU emulator version 7.2.22 (Debian ...)" from `qemu --version`. */
static int qemu_cli_version(int *maj, int *min, int *mic)
{
	char path[PATH_LEN], line[256];
	const char *argv[] = {g_qemu, "--version", NULL};
	pid_t pid;
	int status, n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/version.txt", g_tmp);
	pid = spawn(argv, path);
	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	f = fopen(path, "r");
	if (f && fgets(line, sizeof(line), f))
		n = sscanf(line, "QEMU emulator version %d.%d.%d", maj, min, mic);
	if (f)
		fclose(f);
	unlink(path);
	if (n != 3)
		return FAIL("cannot parse `%s --version`", g_qemu);
	return 0;
}

static int test_greeting(void)
{
	int major, minor, micro;
	json_t *schema = NULL;
	struct vm *vm;
	size_t n;

	vm = vm_start("greet", 1, NULL);
	if (!vm)
		return -1;
	rdmig_qmp_version(vm->qmp, &major, &minor, &micro);
	printf("  greeting: QEMU %d.%d.%d, package \"%s\"\n", major, minor, micro,
	       rdmig_qmp_package(vm->qmp));
	if (major != g_ver[0] || minor != g_ver[1] || micro != g_ver[2])
		return FAIL("greeting says %d.%d.%d, `qemu --version` says %d.%d.%d", major, minor,
			    micro, g_ver[0], g_ver[1], g_ver[2]);
	if (major < 2)
		return FAIL("implausible QEMU version %d.%d.%d", major, minor, micro);

	/* -S: prelaunch until cont; cont emits RESUME. */
	if (expect_status(vm, "prelaunch"))
		return -1;
	if (vm_cmd(vm, "cont", NULL, NULL) || expect_status(vm, "running") ||
	    wait_event(vm, "RESUME", 5000) || expect_guest_running(vm))
		return -1;

	/* A reply of a few hundred KiB arrives over many reads. */
	if (vm_cmd(vm, "query-qmp-schema", NULL, &schema))
		return -1;
	n = json_array_size(schema);
	json_decref(schema);
	if (n < 100)
		return FAIL("query-qmp-schema returned %zu entries, expected hundreds", n);
	printf("  query-qmp-schema: %zu entries\n", n);
	return expect_status(vm, "running");
}

/* Run `cmd`, expect -EREMOTEIO with a message starting with `prefix`. */
static int expect_qmp_error(struct vm *vm, const char *cmd, json_t *args, const char *prefix,
			    const char *contains)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *ret = (json_t *)1;
	int rc = rdmig_qmp_cmd(vm->qmp, cmd, args, &ret, QMP_TIMEOUT_MS, &err);

	if (rc != -EREMOTEIO)
		return FAIL("%s: rc %d (%s), expected -EREMOTEIO", cmd, rc, rdmig_err_str(&err));
	if (ret)
		return FAIL("%s: *ret not cleared on error", cmd);
	if (strncmp(err.msg, prefix, strlen(prefix)) || !strstr(err.msg, contains))
		return FAIL("%s: message \"%s\", expected \"%s...%s...\"", cmd, err.msg, prefix,
			    contains);
	printf("  %s -> %s\n", cmd, err.msg);
	return 0;
}

static int test_errors(void)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *params = NULL;
	double bw, dl;
	struct vm *vm = vm_start("errors", 0, NULL);
	int rc;

	if (!vm)
		return -1;
	if (expect_qmp_error(vm, "no-such-command", NULL,
			     "QMP no-such-command failed: CommandNotFound: ", "no-such-command") ||
	    expect_qmp_error(vm, "migrate", NULL, "QMP migrate failed: GenericError: ", "uri") ||
	    expect_qmp_error(vm, "query-status", json_pack("{s:i}", "bogus", 1),
			     "QMP query-status failed: GenericError: ", "bogus") ||
	    expect_qmp_error(vm, "qmp_capabilities", NULL,
			     "QMP qmp_capabilities failed: CommandNotFound: ", "negotiation"))
		return -1;

	/* Arguments that are not an object are refused locally (and freed). */
	rc = rdmig_qmp_cmd(vm->qmp, "query-status", json_integer(1), NULL, QMP_TIMEOUT_MS, &err);
	if (rc != -EINVAL)
		return FAIL("non-object arguments: rc %d, expected -EINVAL", rc);
	printf("  non-object arguments -> %s\n", err.msg);

	/*
	 * QEMU accepts -1 for a uint64 parameter and then prints 2^64-1, beyond
	 * jansson's integers: the reply must still parse (its integers as reals).
	 */
	if (vm_cmd(vm, "migrate-set-parameters", json_pack("{s:i}", "max-bandwidth", -1), NULL) ||
	    vm_cmd(vm, "query-migrate-parameters", NULL, &params))
		return -1;
	bw = json_number_value(json_object_get(params, "max-bandwidth"));
	dl = json_number_value(json_object_get(params, "downtime-limit"));
	json_decref(params);
	if (bw < 1.8e19 || dl != 300)
		return FAIL(
		    "query-migrate-parameters: max-bandwidth %g, downtime-limit %g; expected "
		    "2^64-1 and 300",
		    bw, dl);
	printf("  uint64 2^64-1 in a reply -> parsed, max-bandwidth %g, downtime-limit %g\n", bw,
	       dl);

	/* The handle stays usable after errors. */
	return expect_status(vm, "running");
}

/* A unix socket served by this test that is not QMP. */
enum fake_mode {
	FAKE_GARBAGE,	/* a line of another protocol */
	FAKE_JSON,	/* JSON, but not a QMP greeting */
	FAKE_SILENT,	/* accepts and says nothing */
	FAKE_HANGUP,	/* accepts and closes */
	FAKE_HUGE,	/* more than RDMIG_QMP_MAX_LINE bytes without a newline */
	FAKE_BAD_REPLY, /* QMP greeting, then a reply that is not JSON */
	FAKE_ODD_REPLY, /* QMP greeting, then a JSON object without return/error */
};

struct fake {
	enum fake_mode mode;
	int lfd;
};

#define FAKE_GREETING                                                                              \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 9}, "          \
	"\"package\": \"fake\"}, \"capabilities\": []}}\r\n"

static int send_str(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Wait (bounded) for the client to hang up, so it sees only what we sent. */
static void drain_until_eof(int fd)
{
	char buf[4096];
	double end = now_s() + 10;

	while (now_s() < end) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return;
		if (r < 0)
			sleep_ms(10);
	}
}

static void *fake_server(void *arg)
{
	struct fake *fk = arg;
	static char chunk[1 << 20];
	int fd = accept(fk->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	switch (fk->mode) {
	case FAKE_GARBAGE:
		send_str(fd, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
		break;
	case FAKE_JSON:
		send_str(fd, "{\"hello\": \"world\"}\r\n");
		break;
	case FAKE_SILENT:
		break;
	case FAKE_HANGUP:
		close(fd);
		return NULL;
	case FAKE_HUGE:
		memset(chunk, 'x', sizeof(chunk));
		chunk[sizeof(chunk) - 1] = '\0';
		for (unsigned int i = 0; i <= RDMIG_QMP_MAX_LINE / (sizeof(chunk) - 1); i++)
			if (send_str(fd, chunk))
				break;
		break;
	case FAKE_BAD_REPLY:
		send_str(fd, FAKE_GREETING);
		send_str(fd, "{\"return\": {}, \"id\": 1, oops\r\n");
		break;
	case FAKE_ODD_REPLY:
		send_str(fd, FAKE_GREETING);
		send_str(fd, "{\"id\": 1, \"result\": {}}\r\n");
		break;
	}
	drain_until_eof(fd);
	close(fd);
	return NULL;
}

static int expect_not_qmp(enum fake_mode mode, const char *what, int want_rc, const char *want)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct fake fk = {.mode = mode};
	struct rdmig_qmp *qmp = NULL;
	pthread_t th;
	double t0, dt;
	int rc;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake.sock", g_tmp);
	unlink(sa.sun_path);
	fk.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fk.lfd < 0 || bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fk.lfd, 4))
		return FAIL("fake socket %s: %s", sa.sun_path, strerror(errno));
	if (pthread_create(&th, NULL, fake_server, &fk)) {
		close(fk.lfd);
		return FAIL("pthread_create failed");
	}

	t0 = now_s();
	rc = rdmig_qmp_open(sa.sun_path, FAKE_TIMEOUT_MS, &qmp, &err);
	dt = now_s() - t0;
	rdmig_qmp_close(qmp);
	pthread_join(th, NULL);
	close(fk.lfd);
	unlink(sa.sun_path);

	if (!rc)
		return FAIL("%s: accepted as QMP", what);
	if (qmp)
		return FAIL("%s: handle returned despite the error", what);
	if (rc != want_rc || !strstr(err.msg, want))
		return FAIL("%s: rc %d \"%s\", expected rc %d and \"%s\"", what, rc, err.msg,
			    want_rc, want);
	if (dt > FAKE_TIMEOUT_MS / 1000.0 + 0.5)
		return FAIL("%s: took %.2f s with a %d ms timeout", what, dt, FAKE_TIMEOUT_MS);
	printf("  %-28s %.2f s: %s\n", what, dt, err.msg);
	return 0;
}

static int test_not_qmp(void)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_qmp *qmp = NULL;
	char path[PATH_LEN];
	int rc;

	if (expect_not_qmp(FAKE_GARBAGE, "another protocol", -EPROTO,
			   "is not a QMP socket: it sent \"SSH-2.0") ||
	    expect_not_qmp(FAKE_JSON, "JSON, not a greeting", -EPROTO,
			   "is not a QMP socket: greeting is {\"hello\"") ||
	    expect_not_qmp(FAKE_SILENT, "silent", -ETIMEDOUT,
			   "is not a QMP socket: no greeting within 1000 ms") ||
	    expect_not_qmp(FAKE_HANGUP, "hangs up", -ECONNRESET,
			   "is not a QMP socket: connection closed") ||
	    expect_not_qmp(FAKE_HUGE, "endless line", -EMSGSIZE,
			   "is not a QMP socket: it sent a line longer than") ||
	    expect_not_qmp(FAKE_BAD_REPLY, "greets, then non-JSON", -EPROTO,
			   "malformed QMP reply") ||
	    expect_not_qmp(FAKE_ODD_REPLY, "greets, then odd reply", -EPROTO,
			   "malformed QMP reply"))
		return -1;

	/* No socket at all: the connect error, for callers to retry on. */
	snprintf(path, sizeof(path), "%s/nothing.sock", g_tmp);
	rc = rdmig_qmp_open(path, FAKE_TIMEOUT_MS, &qmp, &err);
	if (rc != -ENOENT || qmp)
		return FAIL("missing socket: rc %d \"%s\", expected -ENOENT", rc, err.msg);
	printf("  %-28s %s\n", "missing socket", err.msg);
	return 0;
}

static int test_migrate(void)
{
	char uri[PATH_LEN];
	struct vm *src, *dst;

	snprintf(uri, sizeof(uri), "unix:%s/migrate.sock", g_tmp);
	src = vm_start("src", 0, NULL);
	if (!src)
		return -1;
	dst = vm_start("dst", 0, uri);
	if (!dst)
		return -1;
	return migrate_and_check(src, dst, uri);
}

static int test_migrate_fail(void)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char nobody[PATH_LEN], uri[PATH_LEN], st[64];
	json_t *info = NULL;
	struct vm *src, *dst;
	int rc;

	snprintf(nobody, sizeof(nobody), "unix:%s/nobody.sock", g_tmp);
	src = vm_start("src2", 0, NULL);
	if (!src)
		return -1;
	if (expect_status(src, "running"))
		return -1;

	rc = rdmig_qmp_cmd(src->qmp, "migrate", json_pack("{s:s}", "uri", nobody), NULL,
			   QMP_TIMEOUT_MS, &err);
	if (rc == -EREMOTEIO) {
		printf("  migrate to %s -> %s\n", nobody, err.msg);
	} else if (rc) {
		return FAIL("migrate: %s", rdmig_err_str(&err));
	} else {
		const char *desc;

		if (wait_migration(src, 30000, st, sizeof(st), &info))
			return -1;
		desc = json_string_value(json_object_get(info, "error-desc"));
		printf("  migrate to %s -> %s: %s\n", nobody, st, desc ? desc : "(no error-desc)");
		json_decref(info);
		if (strcmp(st, "failed"))
			return FAIL("migration to %s ended \"%s\", expected \"failed\"", nobody,
				    st);
	}
	if (expect_status(src, "running") || expect_guest_running(src))
		return -1;

	/* The failed attempt leaves the source able to migrate for real. */
	snprintf(uri, sizeof(uri), "unix:%s/migrate2.sock", g_tmp);
	dst = vm_start("dst2", 0, uri);
	if (!dst)
		return -1;
	return migrate_and_check(src, dst, uri);
}

static const struct {
	const char *name;
	int (*fn)(void);
} tests[] = {
    {"greeting", test_greeting},	 {"errors", test_errors},
    {"not_qmp", test_not_qmp},		 {"migrate", test_migrate},
    {"migrate_fail", test_migrate_fail},
};

static int selected(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return 1;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], name))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	const char *tmpdir = getenv("TMPDIR");
	int failed = 0, ran = 0;
	double t_all = now_s();

	setvbuf(stdout, NULL, _IOLBF, 0);
	rdmig_log_init();
	g_main_pid = getpid();

	if (find_qemu()) {
		printf("SKIP: qemu-system-x86_64 not found (apt-get install qemu-system-x86)\n");
		return 77;
	}

	/* Unix socket paths are limited to 107 bytes: fall back to /tmp for a long TMPDIR. */
	if (!tmpdir || !*tmpdir || strlen(tmpdir) + sizeof("/rdmig-qemu-XXXXXX") > TMP_LEN)
		tmpdir = "/tmp";
	snprintf(g_tmp, sizeof(g_tmp), "%s/rdmig-qemu-XXXXXX", tmpdir);
	if (!mkdtemp(g_tmp)) {
		fprintf(stderr, "FAIL: mkdtemp %s: %s\n", g_tmp, strerror(errno));
		g_tmp[0] = '\0';
		return 1;
	}
	atexit(cleanup);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if (write_bios() || qemu_cli_version(&g_ver[0], &g_ver[1], &g_ver[2]))
		return 1;
	g_accel = getenv("RDMIG_QEMU_ACCEL");
	if (!g_accel || !*g_accel)
		g_accel = "tcg";
	printf("qemu: %s, version %d.%d.%d, -accel %s\n", g_qemu, g_ver[0], g_ver[1], g_ver[2],
	       g_accel);
	/*
	 * Before 9.0 (upstream 03bfc2188f "physmem: Fix migration dirty bitmap
	 * coherency with TCG memory access", not in Debian's 7.2.x), TCG stores
	 * can bypass the migration dirty bitmap: a guest dirtying memory during
	 * migration arrives with stale pages now and then, often on a loaded
	 * host. That is QEMU's bug, not this test's subject, so it is reported
	 * without failing unless asked; with KVM or a fixed QEMU it fails.
	 */
	g_lossy_tcg = !strncmp(g_accel, "tcg", 3) && g_ver[0] < 9 && !getenv("RDMIG_QEMU_STRICT");
	if (g_lossy_tcg)
		printf("note: TCG migration of QEMU < 9.0 may lose dirty pages; damaged guest "
		       "memory is a warning (RDMIG_QEMU_STRICT=1 or RDMIG_QEMU_ACCEL=kvm for a "
		       "strict check)\n");

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		double t0;
		int rc;

		if (!selected(tests[i].name, argc, argv))
			continue;
		printf("== %s\n", tests[i].name);
		t0 = now_s();
		rc = tests[i].fn();
		vm_stop_all(rc != 0);
		printf("%s %s (%.2f s)\n", rc ? "FAIL" : "ok", tests[i].name, now_s() - t0);
		failed += rc != 0;
		ran++;
	}
	if (!ran) {
		fprintf(stderr, "no test matches; tests:");
		for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			fprintf(stderr, " %s", tests[i].name);
		fputc('\n', stderr);
		return 1;
	}
	printf("%s: %d of %d tests failed (%.2f s)\n", failed ? "FAIL" : "PASS", failed, ran,
	       now_s() - t_all);
	return failed ? 1 : 0;
}
