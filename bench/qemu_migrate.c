/* SPDX-License-Identifier: MIT */
/*
 * qemu_migrate: one live migration of the QEMU test guest (tests/qemu/guest.S)
 * between two local QEMUs, for bench/compare.
 *
 *   qemu_migrate --mode qemu|relay --img IMG [--transport tcp|rdma]
 *                [--multifd N] [--host ADDR] [--rdmig PATH] [--accel tcg|kvm]
 *                [--mem MIB] [--downtime-limit MS] [--samples FILE]
 *                [--label NAME] [--timeout S]
 *
 *   --mode qemu    QEMU's own transport: the destination gets
 *                  migrate-incoming tcp:HOST:PORT (or rdma:HOST:PORT) and the
 *                  source `migrate` to it.
 *   --mode relay   rdmig's relay: `rdmig qemu dst` next to the destination and
 *                  `rdmig qemu migrate --backend tcp|rdma [--multifd N]`.
 *
 * Both modes poll the source's query-migrate every 100 ms over a second QMP
 * socket of the bench's own (--poll-ms) and write one sample per poll to --samples
 * (`t_ms transferred_bytes mbps status`). The result is one JSON object on
 * stdout, taken from the source's final query-migrate (the same figures for
 * every variant): total_ms, downtime_ms, setup_ms, transferred, mbps, plus
 * the relay's own JSON result in "rdmig" for the relay mode.
 * Exit: 0 migrated and the destination runs, 1 failure, 2 usage, 77 no QEMU.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "qmp.h"
#include "rdmig/err.h"

#define QMP_MS 10000
#define PL     256

struct qvm {
	pid_t pid;
	char qmp[PL];  /* for the relay / orchestrator */
	char bqmp[PL]; /* for this bench */
	char log[PL];
	struct rdmig_qmp *q;
};

static char g_tmp[64];
static pid_t g_kids[8];
static int g_nkids;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "qemu_migrate: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

static int rm_entry(const char *p, const struct stat *st, int f, struct FTW *w)
{
	(void)st, (void)f, (void)w;
	return remove(p), 0;
}

static void cleanup(void)
{
	for (int i = 0; i < g_nkids; i++)
		if (g_kids[i] > 0) {
			kill(g_kids[i], SIGKILL);
			waitpid(g_kids[i], NULL, 0);
		}
	g_nkids = 0;
	if (g_tmp[0] && !getenv("RDMIG_KEEP_TMP"))
		nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void on_signal(int sig)
{
	for (int i = 0; i < g_nkids; i++)
		if (g_kids[i] > 0)
			kill(g_kids[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Start argv with stdout and stderr to `log` (stdout to `out` if not NULL). */
static pid_t spawn(const char *const argv[], const char *log, const char *out)
{
	pid_t parent = getpid(), pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int e = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		int o = out ? open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600) : e;

		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
			_exit(127);
		if (in < 0 || e < 0 || o < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(127);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (pid > 0 && g_nkids < 8)
		g_kids[g_nkids++] = pid;
	return pid;
}

static void reaped(pid_t pid)
{
	for (int i = 0; i < g_nkids; i++)
		if (g_kids[i] == pid)
			g_kids[i] = 0;
}

static void show(const char *path)
{
	char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return;
	fprintf(stderr, "---- %s\n", path);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fclose(f);
}

static int vm_start(struct qvm *vm, const char *name, const char *incoming, const char *accel,
		    const char *img, unsigned mem)
{
	char a1[PL + 32], a2[PL + 32], drive[PL + 64], m[16];
	const char *argv[40];
	struct rdmig_err err = RDMIG_ERR_INIT;
	double t0 = now_ms();
	int n = 0, rc;

	snprintf(vm->qmp, PL, "%s/%s.qmp", g_tmp, name);
	snprintf(vm->bqmp, PL, "%s/%s.bq", g_tmp, name);
	snprintf(vm->log, PL, "%s/%s.log", g_tmp, name);
	snprintf(a1, sizeof(a1), "unix:%s,server=on,wait=off", vm->qmp);
	snprintf(a2, sizeof(a2), "unix:%s,server=on,wait=off", vm->bqmp);
	snprintf(drive, sizeof(drive), "file=%s,format=raw,if=ide,snapshot=on", img);
	snprintf(m, sizeof(m), "%u", mem);
	argv[n++] = "qemu-system-x86_64";
	argv[n++] = "-accel";
	argv[n++] = accel;
	argv[n++] = "-M";
	argv[n++] = "pc";
	argv[n++] = "-m";
	argv[n++] = m;
	argv[n++] = "-nographic";
	argv[n++] = "-nodefaults";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-serial";
	argv[n++] = "none";
	argv[n++] = "-monitor";
	argv[n++] = "none";
	argv[n++] = "-drive";
	argv[n++] = drive;
	argv[n++] = "-qmp";
	argv[n++] = a1;
	argv[n++] = "-qmp";
	argv[n++] = a2;
	if (incoming) {
		argv[n++] = "-incoming";
		argv[n++] = incoming;
	}
	argv[n] = NULL;
	vm->pid = spawn(argv, vm->log, NULL);
	if (vm->pid < 0)
		return die("fork: %s", strerror(errno));
	for (;;) {
		rdmig_err_clear(&err);
		rc = rdmig_qmp_open(vm->bqmp, QMP_MS, &vm->q, &err);
		if (!rc)
			return 0;
		if (waitpid(vm->pid, NULL, WNOHANG) == vm->pid) {
			reaped(vm->pid);
			show(vm->log);
			return die("%s: QEMU exited during start-up", name);
		}
		if ((rc != -ENOENT && rc != -ECONNREFUSED) || now_ms() - t0 > 20000)
			return die("%s: %s", name, rdmig_err_str(&err));
		sleep_ms(20);
	}
}

static int cmd(struct qvm *vm, const char *c, json_t *args, json_t **ret)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (rdmig_qmp_cmd(vm->q, c, args, ret, QMP_MS, &err))
		return die("%s", rdmig_err_str(&err));
	return 0;
}

static double num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return v && json_is_number(v) ? json_number_value(v) : 0;
}

/* Same parameters on both QEMUs (QEMU's own transport; the relay sets its own). */
static int setup_qemu(struct qvm *vm, unsigned multifd, unsigned downtime_ms)
{
	if (multifd > 1 &&
	    (cmd(vm, "migrate-set-capabilities",
		 json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "multifd", "state", 1),
		 NULL) ||
	     cmd(vm, "migrate-set-parameters", json_pack("{s:i}", "multifd-channels", multifd),
		 NULL)))
		return -1;
	/* max-bandwidth is in bytes per second; QEMU's default (32 MiB/s) would cap it. */
	return cmd(vm, "migrate-set-parameters",
		   json_pack("{s:I, s:I}", "downtime-limit", (json_int_t)downtime_ms,
			     "max-bandwidth", (json_int_t)1 << 40),
		   NULL);
}

static int free_port(void)
{
	srand((unsigned)(getpid() ^ (unsigned)now_ms()));
	return 20000 + rand() % 20000;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: qemu_migrate --mode qemu|relay --img IMG [--transport tcp|rdma]\n"
		   "         [--multifd N] [--host ADDR] [--rdmig PATH] [--accel tcg|kvm]\n"
		   "         [--mem MIB] [--downtime-limit MS] [--samples FILE] [--label NAME]\n"
		   "         [--timeout S] [--poll-ms MS]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"mode", required_argument, NULL, 'm'},
					   {"img", required_argument, NULL, 'i'},
					   {"transport", required_argument, NULL, 't'},
					   {"multifd", required_argument, NULL, 'f'},
					   {"host", required_argument, NULL, 'H'},
					   {"rdmig", required_argument, NULL, 'r'},
					   {"accel", required_argument, NULL, 'a'},
					   {"mem", required_argument, NULL, 'M'},
					   {"downtime-limit", required_argument, NULL, 'd'},
					   {"samples", required_argument, NULL, 's'},
					   {"label", required_argument, NULL, 'l'},
					   {"timeout", required_argument, NULL, 'T'},
					   {"help", no_argument, NULL, 'h'},
					   {"poll-ms", required_argument, NULL, 'p'},
					   {NULL, 0, NULL, 0}};
	const char *mode = NULL, *img = NULL, *tr = "tcp", *host = "127.0.0.1", *rdmig = "rdmig";
	const char *accel = "tcg", *samples = NULL, *label = NULL;
	unsigned multifd = 1, mem = 128, downtime = 2000, timeout_s = 300, poll_ms = 100;
	struct qvm src = {0}, dst = {0};
	pid_t relay = 0, orch = 0;
	char relay_out[PL], relay_log[PL], orch_out[PL], orch_log[PL], uri[PL], inc[PL + 8];
	char status[64] = "";
	json_t *fin = NULL, *rj = NULL, *res;
	FILE *sf = NULL;
	double t0;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 'm':
			mode = optarg;
			break;
		case 'i':
			img = optarg;
			break;
		case 't':
			tr = optarg;
			break;
		case 'f':
			multifd = (unsigned)atoi(optarg);
			break;
		case 'H':
			host = optarg;
			break;
		case 'r':
			rdmig = optarg;
			break;
		case 'a':
			accel = optarg;
			break;
		case 'M':
			mem = (unsigned)atoi(optarg);
			break;
		case 'd':
			downtime = (unsigned)atoi(optarg);
			break;
		case 's':
			samples = optarg;
			break;
		case 'l':
			label = optarg;
			break;
		case 'T':
			timeout_s = (unsigned)atoi(optarg);
			break;
		case 'p':
			poll_ms = (unsigned)atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!mode || !img || (strcmp(mode, "qemu") && strcmp(mode, "relay")) ||
	    (strcmp(tr, "tcp") && strcmp(tr, "rdma")) || multifd < 1 || multifd > 16) {
		usage(stderr);
		return 2;
	}
	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1")) {
		fprintf(stderr, "qemu_migrate: SKIP: qemu-system-x86_64 not installed\n");
		return 77;
	}
	snprintf(g_tmp, sizeof(g_tmp), "%s/qmig.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(g_tmp))
		return die("mkdtemp: %s", strerror(errno)), 1;
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	snprintf(inc, sizeof(inc), "unix:%s/dst.in", g_tmp);
	if (vm_start(&src, "src", NULL, accel, img, mem) ||
	    vm_start(&dst, "dst", !strcmp(mode, "relay") ? inc : "defer", accel, img, mem))
		return 1;
	sleep_ms(1000); /* let the guest dirty its range */

	if (!strcmp(mode, "qemu")) {
		if (setup_qemu(&src, multifd, downtime) || setup_qemu(&dst, multifd, downtime))
			return 1;
		snprintf(uri, sizeof(uri), "%s:%s:%d", tr, host, free_port());
		if (cmd(&dst, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL))
			return 1;
		sleep_ms(200);
		if (cmd(&src, "migrate", json_pack("{s:s}", "uri", uri), NULL))
			return 1;
	} else {
		const char *av[24];
		char listen[PL], port[16] = "", dsta[PL], mf[8], dl[16];
		int n = 0;

		snprintf(relay_out, PL, "%s/relay.out", g_tmp);
		snprintf(relay_log, PL, "%s/relay.log", g_tmp);
		snprintf(orch_out, PL, "%s/orch.out", g_tmp);
		snprintf(orch_log, PL, "%s/orch.log", g_tmp);
		snprintf(listen, PL, "%s:0", host);
		av[n++] = rdmig, av[n++] = "qemu", av[n++] = "dst", av[n++] = "--listen";
		av[n++] = listen, av[n++] = "--qemu-incoming", av[n++] = inc, av[n++] = "--qmp";
		av[n++] = dst.qmp, av[n++] = "--backend", av[n++] = tr, av[n] = NULL;
		relay = spawn(av, relay_log, relay_out);
		for (int i = 0; i < 300 && !port[0]; i++) {
			FILE *f = fopen(relay_out, "r");
			unsigned p;

			if (f) {
				if (fscanf(f, "listening %u", &p) == 1)
					snprintf(port, sizeof(port), "%u", p);
				fclose(f);
			}
			if (!port[0])
				sleep_ms(50);
		}
		if (!port[0]) {
			show(relay_log);
			return die("the destination relay did not start"), 1;
		}
		snprintf(dsta, PL, "%s:%s", host, port);
		snprintf(mf, sizeof(mf), "%u", multifd);
		snprintf(dl, sizeof(dl), "%ums", downtime);
		n = 0;
		av[n++] = rdmig, av[n++] = "qemu", av[n++] = "migrate", av[n++] = "--src-qmp";
		av[n++] = src.qmp, av[n++] = "--dst", av[n++] = dsta, av[n++] = "--backend";
		av[n++] = tr, av[n++] = "--max-bandwidth", av[n++] = "0";
		av[n++] = "--downtime-limit", av[n++] = dl, av[n++] = "--json";
		if (multifd > 1)
			av[n++] = "--multifd", av[n++] = mf;
		av[n] = NULL;
		orch = spawn(av, orch_log, orch_out);
	}

	/* Poll the source until the migration ends. */
	if (samples && !(sf = fopen(samples, "w")))
		return die("%s: %s", samples, strerror(errno)), 1;
	t0 = now_ms();
	if (sf)
		fprintf(sf, "0 0 0 start\n");
	for (;;) {
		json_t *r = NULL, *ram;
		const char *st;

		if (cmd(&src, "query-migrate", NULL, &r))
			break;
		st = json_string_value(json_object_get(r, "status"));
		snprintf(status, sizeof(status), "%s", st ? st : "none");
		ram = json_object_get(r, "ram");
		if (sf && ram)
			fprintf(sf, "%.0f %.0f %.1f %s\n", now_ms() - t0, num(ram, "transferred"),
				num(ram, "mbps"), status);
		if (!strcmp(status, "completed") || !strcmp(status, "failed") ||
		    !strcmp(status, "cancelled")) {
			fin = r;
			break;
		}
		json_decref(r);
		if (orch > 0 && waitpid(orch, NULL, WNOHANG) == orch) {
			reaped(orch);
			orch = -1; /* the orchestrator ended before the migration: poll once more */
		} else if (orch < 0) {
			break;
		}
		if (now_ms() - t0 > timeout_s * 1000.0) {
			cmd(&src, "migrate_cancel", NULL, NULL);
			die("timeout after %u s (status %s)", timeout_s, status);
			break;
		}
		sleep_ms((int)poll_ms);
	}
	if (sf)
		fclose(sf);
	if (orch > 0) {
		int st;

		waitpid(orch, &st, 0);
		reaped(orch);
	}
	if (!strcmp(mode, "relay")) {
		json_error_t je;

		rj = json_load_file(orch_out, 0, &je);
		if (!rj) {
			show(orch_log);
			show(relay_log);
		}
	}
	/* The destination must run. */
	if (!strcmp(status, "completed")) {
		char dst_st[64] = "";
		struct rdmig_err err = RDMIG_ERR_INIT;

		for (int i = 0; i < 300; i++) {
			rdmig_err_clear(&err);
			if (rdmig_qmp_status(dst.q, dst_st, sizeof(dst_st), &err) ||
			    !strcmp(dst_st, "running"))
				break;
			sleep_ms(100);
		}
		if (strcmp(dst_st, "running"))
			die("destination status \"%s\" after the migration", dst_st);
		else
			rc = 0;
	} else {
		show(src.log);
		show(dst.log);
	}
	{
		json_t *ram = fin ? json_object_get(fin, "ram") : NULL;

		res = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:i}",
				"label", label ? label : mode, "mode", mode, "transport", tr,
				"multifd", (int)multifd, "status", status, "accel", accel,
				"total_ms", fin ? num(fin, "total-time") : 0, "downtime_ms",
				fin ? num(fin, "downtime") : 0, "setup_ms",
				fin ? num(fin, "setup-time") : 0, "transferred",
				ram ? num(ram, "transferred") : 0, "mbps",
				ram ? num(ram, "mbps") : 0, "ok", rc == 0);
		if (res && rj)
			json_object_set_new(res, "rdmig", rj);
		else
			json_decref(rj);
		if (res) {
			char *s = json_dumps(res, JSON_COMPACT);

			printf("%s\n", s ? s : "{}");
			free(s);
		}
		json_decref(res);
	}
	json_decref(fin);
	rdmig_qmp_close(src.q);
	rdmig_qmp_close(dst.q);
	(void)relay;
	return rc;
}
