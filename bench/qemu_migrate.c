/* SPDX-License-Identifier: MIT */
/*
 * qemu_migrate: one live migration of the QEMU test guest (tests/qemu/guest.S)
 * between two local QEMUs, for bench/compare.
 *
 *   qemu_migrate --mode qemu|relay --img IMG [--transport tcp|rdma]
 *                [--multifd N] [--host ADDR] [--rdmig PATH] [--accel tcg|kvm]
 *                [--mem MIB] [--downtime-limit MS] [--samples FILE]
 *                [--label NAME] [--timeout S] [--fill MIB]
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
 * the relay's own JSON result in "rdmig" for the relay mode, and "cpu": the
 * CPU time each process spent and how busy the whole host was while the
 * migration ran (a ratio against QEMU's own transport means little unless
 * it says whether both runs had CPU to spare).
 *
 * --fill MIB: IMG is the written guest (guest.S built with FILL, MIB of RAM
 * written once, then idle). The migration starts once the guest has written
 * all of it, and afterwards the destination is stopped and every dword of
 * the range compared with what the guest wrote ("checked": true in the
 * result; a difference fails the run).
 * QEMUs and relays are started by the QEMU test harness (tests/lib/qemu_harness.h).
 * Exit: 0 migrated and the destination runs, 1 failure, 2 usage, 77 no QEMU.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "clock.h"
#include "qemu_harness.h"

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

static int cmd(struct qh_vm *vm, const char *c, json_t *args, json_t **ret)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_cmd(vm, c, args, ret, &err))
		return die("%s", err.msg);
	return 0;
}

/* Same parameters on both QEMUs (QEMU's own transport; the relay sets its own). */
static int setup_qemu(struct qh_vm *vm, unsigned multifd, unsigned downtime_ms)
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
	srand((unsigned)(getpid() ^ (unsigned)rdmig_now_ms()));
	return 20000 + rand() % 20000;
}

/* What the poll of the source's query-migrate writes and watches. */
struct poll_ctx {
	FILE *samples;
	double t0;	      /* seconds */
	struct qh_proc *orch; /* the orchestrator (relay mode), else NULL */
	bool orch_gone;	      /* it has exited: one more poll, then stop */
};

static bool on_poll(json_t *info, void *arg)
{
	struct poll_ctx *pc = arg;
	json_t *ram = json_object_get(info, "ram");

	if (pc->samples && ram)
		fprintf(pc->samples, "%.0f %.0f %.1f %s\n", (rdmig_now_s() - pc->t0) * 1e3,
			qh_num(ram, "transferred"), qh_num(ram, "mbps"), qh_mig_status(info));
	if (!pc->orch)
		return false;
	if (pc->orch_gone)
		return true;
	pc->orch_gone = qh_exited(pc->orch);
	return false;
}

/*
 * CPU accounting. A process's user + system time comes from /proc/PID/stat,
 * which stays readable until the process is reaped, so an orchestrator that
 * has just exited still counts. The host's share of busy CPU comes from
 * /proc/stat's first line: busy = user + nice + system + irq + softirq +
 * steal, out of that plus idle and iowait (guest time is inside user).
 */
static double proc_cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	size_t n;
	FILE *f;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command name may hold spaces and ')': the fields start after the last ')'. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static int host_cpu(unsigned long long *busy, unsigned long long *all)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return -1;
	*busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	*all = *busy + v[3] + v[4];
	return 0;
}

struct cpu_mark {
	double t;
	unsigned long long busy, all;
	double ms[4]; /* source QEMU, destination QEMU, source relay, destination relay */
};

static void cpu_mark(struct cpu_mark *m, const pid_t pids[4])
{
	m->t = rdmig_now_s();
	if (host_cpu(&m->busy, &m->all))
		m->busy = m->all = 0;
	for (int i = 0; i < 4; i++)
		m->ms[i] = proc_cpu_ms(pids[i]);
}

/*
 * The "cpu" object: wall time from the start of the migration to its end,
 * the host's busy share over it (1.0: every CPU busy) and each process's CPU
 * time over it; the relays are `rdmig qemu migrate`, which holds the source
 * relay, and `rdmig qemu dst`, present in relay mode only. -1: not readable.
 */
static json_t *cpu_json(const struct cpu_mark *a, const struct cpu_mark *b, bool relays)
{
	static const char *const names[4] = {"src_qemu_ms", "dst_qemu_ms", "src_relay_ms",
					     "dst_relay_ms"};
	double busy =
	    b->all > a->all ? (double)(b->busy - a->busy) / (double)(b->all - a->all) : -1;
	json_t *j = json_pack("{s:f, s:f, s:i}", "wall_ms", (b->t - a->t) * 1e3, "host_busy", busy,
			      "ncpu", (int)sysconf(_SC_NPROCESSORS_ONLN));

	for (int i = 0; j && i < (relays ? 4 : 2); i++)
		json_object_set_new(
		    j, names[i],
		    json_real(a->ms[i] < 0 || b->ms[i] < 0 ? -1 : b->ms[i] - a->ms[i]));
	return j;
}

/* Start `rdmig qemu dst` for `dst` and `rdmig qemu migrate` from `src`. */
static int start_relay(struct qh_proc *relay, struct qh_proc *orch, const struct qh_relay *r,
		       struct qh_vm *src, struct qh_vm *dst, unsigned multifd, unsigned downtime)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char mf[16], dl[16];
	const char *extra[8] = {"--max-bandwidth", "0", "--downtime-limit", dl};
	unsigned port;
	int n = 4;

	snprintf(mf, sizeof(mf), "%u", multifd);
	snprintf(dl, sizeof(dl), "%ums", downtime);
	if (multifd > 1) {
		extra[n++] = "--multifd";
		extra[n++] = mf;
	}
	extra[n] = NULL;
	if (qh_relay_dst_start(relay, "relay", r, dst, true, &port, &err) ||
	    qh_relay_migrate_start(orch, "orch", r, src->qmp, port, extra, &err))
		return die("%s", err.msg);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: qemu_migrate --mode qemu|relay --img IMG [--transport tcp|rdma]\n"
		   "         [--multifd N] [--host ADDR] [--rdmig PATH] [--accel tcg|kvm]\n"
		   "         [--mem MIB] [--downtime-limit MS] [--samples FILE] [--label NAME]\n"
		   "         [--timeout S] [--poll-ms MS] [--fill MIB]\n");
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
					   {"fill", required_argument, NULL, 'F'},
					   {NULL, 0, NULL, 0}};
	const char *mode = NULL, *img = NULL, *samples = NULL, *label = NULL;
	struct qh_relay r = {.rdmig = "rdmig", .host = "127.0.0.1", .backend = "tcp"};
	struct qh_vm_cfg cfg = {.accel = "tcg", .mem_mib = 128, .second_qmp = true};
	unsigned multifd = 1, downtime = 2000, timeout_s = 300, poll_ms = 100, fill_mib = 0;
	bool checked = false;
	static struct qh_vm src, dst;
	static struct qh_proc relay, orch;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct poll_ctx pc = {0};
	char disk[QH_PATH], uri[QH_PATH], status[64] = "";
	json_t *last = NULL, *fin = NULL, *rj = NULL, *res, *cpu;
	struct cpu_mark c0, c1;
	pid_t pids[4];
	int opt, ret, rc = 1;

	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 'm':
			mode = optarg;
			break;
		case 'i':
			img = optarg;
			break;
		case 't':
			r.backend = optarg;
			break;
		case 'f':
			multifd = (unsigned)atoi(optarg);
			break;
		case 'H':
			r.host = optarg;
			break;
		case 'r':
			r.rdmig = optarg;
			break;
		case 'a':
			cfg.accel = optarg;
			break;
		case 'M':
			cfg.mem_mib = (unsigned)atoi(optarg);
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
		case 'F':
			fill_mib = (unsigned)atoi(optarg);
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
	    (strcmp(r.backend, "tcp") && strcmp(r.backend, "rdma")) || multifd < 1 ||
	    multifd > 16 || fill_mib > 8192 || (fill_mib && cfg.mem_mib < fill_mib + 2)) {
		if (fill_mib && cfg.mem_mib < fill_mib + 2)
			fprintf(stderr, "qemu_migrate: --fill %u needs --mem of at least %u\n",
				fill_mib, fill_mib + 2);
		usage(stderr);
		return 2;
	}
	ret = qh_need_qemu("qemu_migrate");
	if (ret)
		return ret;
	if (qh_setup("qmig", &err) || qh_guest_disk(img, "guest.img", disk, sizeof(disk), &err))
		return die("%s", err.msg), 1;
	cfg.disk = disk;
	cfg.name = "src";
	cfg.incoming = QH_SOURCE;
	if (qh_vm_start(&src, &cfg, &err))
		return die("%s", err.msg), 1;
	cfg.name = "dst";
	cfg.incoming = !strcmp(mode, "relay") ? QH_INCOMING_UNIX : QH_INCOMING_DEFER;
	if (qh_vm_start(&dst, &cfg, &err))
		return die("%s", err.msg), 1;
	if (fill_mib) {
		if (qh_wait_filled(&src, 300000, &err))
			return die("%s", err.msg), 1;
	} else {
		rdmig_sleep_ms(1000); /* let the guest dirty its range */
	}

	if (!strcmp(mode, "qemu")) {
		if (setup_qemu(&src, multifd, downtime) || setup_qemu(&dst, multifd, downtime))
			return 1;
		snprintf(uri, sizeof(uri), "%s:%s:%d", r.backend, r.host, free_port());
		if (cmd(&dst, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL))
			return 1;
		rdmig_sleep_ms(200);
		if (cmd(&src, "migrate", json_pack("{s:s}", "uri", uri), NULL))
			return 1;
	} else {
		if (start_relay(&relay, &orch, &r, &src, &dst, multifd, downtime))
			return 1;
		pc.orch = &orch;
	}

	/* Poll the source until the migration ends. */
	if (samples && !(pc.samples = fopen(samples, "w")))
		return die("%s: %s", samples, strerror(errno)), 1;
	pc.t0 = rdmig_now_s();
	pids[0] = src.p.pid;
	pids[1] = dst.p.pid;
	pids[2] = orch.pid;
	pids[3] = relay.pid;
	cpu_mark(&c0, pids);
	if (pc.samples)
		fprintf(pc.samples, "0 0 0 start\n");
	ret =
	    qh_poll_migrate(&src, (int)poll_ms, (int)(timeout_s * 1000), on_poll, &pc, &last, &err);
	cpu_mark(&c1, pids);
	cpu = cpu_json(&c0, &c1, pc.orch != NULL);
	if (last)
		snprintf(status, sizeof(status), "%s", qh_mig_status(last));
	if (ret == -ETIMEDOUT) {
		cmd(&src, "migrate_cancel", NULL, NULL);
		die("timeout after %u s (status %s)", timeout_s, status);
	} else if (ret) {
		die("%s", err.msg);
	}
	if (last && qh_mig_ended(status))
		fin = last;
	else
		json_decref(last);
	if (pc.samples)
		fclose(pc.samples);
	if (pc.orch) {
		rdmig_err_clear(&err);
		qh_wait(&orch, -1, &err);
		rj = json_load_file(orch.out, 0, NULL);
		if (!rj) {
			qh_show_log(&orch);
			qh_show_log(&relay);
		}
	}
	/* The destination must run. */
	if (!strcmp(status, "completed")) {
		rdmig_err_clear(&err);
		if (qh_wait_status(&dst, "running", 30000, &err))
			die("after the migration: %s", err.msg);
		else
			rc = 0;
		if (!rc && fill_mib) {
			rc = qh_cmd(&dst, "stop", NULL, NULL, &err) ||
			     qh_check_fill(&dst, QH_GUEST_START, (size_t)fill_mib << 20, &err)
			    ? die("destination: %s", err.msg),
			1 : 0;
			checked = !rc;
			if (checked)
				fprintf(stderr,
					"qemu_migrate: destination: %u MiB written guest intact\n",
					fill_mib);
		}
	} else {
		qh_show_log(&src.p);
		qh_show_log(&dst.p);
	}
	{
		json_t *ram = fin ? json_object_get(fin, "ram") : NULL;

		res = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:i}",
				"label", label ? label : mode, "mode", mode, "transport", r.backend,
				"multifd", (int)multifd, "status", status, "accel", cfg.accel,
				"total_ms", qh_num(fin, "total-time"), "downtime_ms",
				qh_num(fin, "downtime"), "setup_ms", qh_num(fin, "setup-time"),
				"transferred", qh_num(ram, "transferred"), "mbps",
				qh_num(ram, "mbps"), "ok", rc == 0);
		if (res) {
			json_object_set_new(res, "fill_mib", json_integer(fill_mib));
			json_object_set_new(res, "checked", json_boolean(checked));
		}
		if (res && cpu)
			json_object_set_new(res, "cpu", cpu);
		else
			json_decref(cpu);
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
	return rc;
}
