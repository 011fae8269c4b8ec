/* SPDX-License-Identifier: MIT */
/*
 * QEMU tier: stock QEMU migrating through the rdmig relay (`rdmig qemu ...`).
 *
 *   plain        one stream, destination -incoming unix:PATH, integrity check
 *   multifd      --multifd 4 (5 streams), destination -incoming defer, integrity;
 *                the 5 streams share one rdmig connection: one handshake of 5
 *                channels on the destination relay, not five
 *   kill_relay   the destination relay is killed mid-migration: the orchestrator
 *                fails with a clear message, the source keeps running, and a
 *                second migration to a fresh destination passes the integrity check
 *   bad_input    unreachable destination, missing QMP socket, a socket that is
 *                not QMP, a capability mismatch, a multifd-compression
 *                mismatch, a destination relay without --qmp: each a clear
 *                error, the source still running
 *   auth_sink    a keyed destination relay in front of a sink counting what
 *                reaches "QEMU's incoming socket": an unkeyed or wrong-keyed
 *                `rdmig qemu src`, and garbage, get 0 bytes through; the
 *                same relay then carries a keyed one (and one over TLS); a
 *                keyed source refuses an unkeyed destination relay
 *   auth_qemu    the same with real QEMUs: unkeyed and wrong-keyed `rdmig qemu
 *                migrate` and an unkeyed source relay are refused, the
 *                destination stays in inmigrate; then a keyed migration
 *                through that relay passes the integrity check
 *   fallback     `rdmig qemu src --streams 2` fed 5 connections at once (more
 *                than one stream set holds): 3 sets on the destination relay,
 *                every connection and every byte reaches its incoming socket
 *   set_break    `rdmig qemu src --streams 4` with one connection: the
 *                destination relay killed, the source relay shuts that
 *                connection down, and the next one takes a new set to a relay
 *                restarted on the same address
 *   socket_perms `rdmig qemu src --socket-mode/--socket-group` give the socket
 *                that mode and group (stat), other users cannot connect, bad
 *                values are usage errors
 *   idle_control a control session that goes silent is dropped (--control-idle)
 *                and never keeps the orchestrator from the destination QEMU
 *   dst_fails    the destination QEMU fails to load the device state after the
 *                source completed: the source is resumed and runs
 *   unknown      after the source completed the destination relay cannot be
 *                reached (a proxy cuts it off): exit 3, "outcome unknown", the
 *                source left paused while the guest runs on the destination
 *   postcopy     --postcopy with a guest that dirties memory faster than
 *                --max-bandwidth moves it: completes only through post-copy,
 *                switched when pre-copy stopped converging; integrity check
 *   postcopy_recover  the destination relay killed in post-copy: both QEMUs
 *                pause, a relay restarted on the same address lets the
 *                orchestrator recover (migrate-recover, migrate resume), the
 *                migration completes, integrity check
 *   postcopy_lost the destination QEMU killed in post-copy: "the guest is
 *                lost", exit 1, nothing resumed
 *
 * Every relay and orchestrator runs with --key-file (a key made for the run)
 * unless a test says otherwise.
 *
 * The guest is tests/qemu/guest.S (a boot sector incrementing byte 0 of every
 * page of 1..101 MiB). After a migration the destination must run (its
 * counters move), then it is stopped and the range read with pmemsave and
 * checked (qh_check_incr, tests/lib/qemu_guest.c).
 *
 * Usage: relay_test RDMIG GUEST_IMG [TEST...]
 *   RDMIG_QEMU_BACKEND=rdma    relay over rdma instead of tcp (the rdma tier)
 *   RDMIG_QEMU_HOST=ADDR       relay address (default 127.0.0.1; $RDMIG_RXE_IP for rdma)
 *   RDMIG_QEMU_GUEST_MIB=N     size of the guest's range (the image must be built for it)
 *   RDMIG_QEMU_ACCEL=kvm|tcg   instead of probing (KVM if a guest boots with it)
 *   RDMIG_QEMU_STRICT=1        damaged memory fails under TCG of QEMU < 9.0 too
 *   RDMIG_KEEP_TMP=1           keep the temporary directory
 * Exit: 0 pass, 1 fail, 77 QEMU or (for rdma) an RDMA device missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "rdmig/auth.h"
#include "clock.h"
#include "log.h"
#include "qemu_harness.h"
#include "relay.h"
#include "rdmig/transport.h"

#include "relay_test.h"

char g_disk[QH_PATH];
const char *g_accel = "tcg";
bool g_lossy;
unsigned g_len = 100u << 20; /* RDMIG_QEMU_GUEST_MIB; the image must match */
struct qh_relay g_relay = {.host = "127.0.0.1", .backend = "tcp"};
char g_key[QH_PATH], g_key_bad[QH_PATH]; /* the run's key, and another one */

/* ---- VMs and relays ------------------------------------------------------------ */

/* The test guest, with a second QMP socket for the relay or the orchestrator. */
struct qh_vm_cfg guest_cfg(const char *name, enum qh_incoming incoming)
{
	return (struct qh_vm_cfg){.name = name,
				  .accel = g_accel,
				  .mem_mib = 128,
				  .disk = g_disk,
				  .second_qmp = true,
				  .incoming = incoming};
}

int vm_start(struct qh_vm *vm, const char *name, enum qh_incoming incoming)
{
	struct qh_vm_cfg cfg = guest_cfg(name, incoming);
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_vm_start(vm, &cfg, &err))
		return FAIL("%s", err.msg);
	return 0;
}

int relay_start(struct qh_proc *p, const char *name, struct qh_vm *vm, bool with_qmp,
		unsigned *port)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_relay_dst_start(p, name, &g_relay, vm, with_qmp, port, &err))
		return FAIL("%s", err.msg);
	return 0;
}

/* Running now, its counters moving. */
int expect_guest_running(struct qh_vm *vm)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_expect_status(vm, "running", &err) || qh_guest_runs(vm, QH_GUEST_START, NULL, &err))
		return FAIL("%s", err.msg);
	return 0;
}

int expect_status(struct qh_vm *vm, const char *want)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_expect_status(vm, want, &err))
		return FAIL("%s", err.msg);
	return 0;
}

/* Running, then stopped, then the whole range checked. */
int check_integrity(struct qh_vm *vm)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (expect_guest_running(vm))
		return -1;
	if (qh_cmd(vm, "stop", NULL, NULL, &err) || qh_expect_status(vm, "paused", &err) ||
	    qh_check_incr(vm, QH_GUEST_START, g_len, g_lossy, &err))
		return FAIL("%s", err.msg);
	return 0;
}

/*
 * Start `rdmig qemu migrate --src-qmp QMP --dst HOST:PORT --timeout 90s EXTRA...`
 * as relay `r` says (key, backend).
 */
static int migrate_spawn_as(const struct qh_relay *r, struct qh_proc *p, const char *qmp,
			    unsigned port, const char *const *extra)
{
	const char *args[24] = {"--timeout", "90s"};
	struct rdmig_err err = RDMIG_ERR_INIT;
	int n = 2;

	for (; extra && *extra && n < 23; extra++)
		args[n++] = *extra;
	args[n] = NULL;
	if (qh_relay_migrate_start(p, "migrate", r, qmp, port, args, &err))
		return FAIL("%s", err.msg);
	return 0;
}

int migrate_spawn(struct qh_proc *p, const char *qmp, unsigned port, const char *const *extra)
{
	return migrate_spawn_as(&g_relay, p, qmp, port, extra);
}

/* Wait for the orchestrator to exit (p->status). */
int migrate_wait(struct qh_proc *p, int timeout_ms)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_wait(p, timeout_ms, &err)) {
		qh_show_log(p);
		return FAIL("%s", err.msg);
	}
	return 0;
}

/*
 * Run a migration to completion; 0 if it exited 0 and the JSON agrees
 * (`streams` carried, unless 0). *summary (may be NULL) receives its JSON.
 */
int migrate_run(struct qh_vm *src, struct qh_vm *dst, unsigned port, const char *const *extra,
		unsigned streams, json_t **summary)
{
	static struct qh_proc m;
	double t0 = rdmig_now_s();
	char *out;
	json_t *j;
	int rc = 0;

	if (migrate_spawn(&m, src->qmp, port, extra) || migrate_wait(&m, 120000))
		return -1;
	if (m.status) {
		qh_show_log(&m);
		return FAIL("rdmig qemu migrate exited %d", m.status);
	}
	out = qh_read_text(m.out);
	j = out ? json_loads(out, 0, NULL) : NULL;
	if (!j) {
		rc = FAIL("no JSON result in: %s", out ? out : "(out of memory)");
		free(out);
		return rc;
	}
	free(out);
	printf("  migrated in %.2f s: total %lld ms, downtime %lld ms, %.1f MiB, %lld streams, "
	       "%lld passes%s\n",
	       rdmig_now_s() - t0, json_integer_value(json_object_get(j, "total_ms")),
	       json_integer_value(json_object_get(j, "downtime_ms")),
	       json_integer_value(json_object_get(j, "bytes")) / 1048576.0,
	       json_integer_value(json_object_get(j, "streams")),
	       json_integer_value(json_object_get(j, "passes")),
	       json_is_true(json_object_get(j, "postcopy")) ? ", through post-copy" : "");
	if (streams && json_integer_value(json_object_get(j, "streams")) != (json_int_t)streams) {
		rc = FAIL("%lld streams carried, expected %u",
			  json_integer_value(json_object_get(j, "streams")), streams);
	}
	if (strcmp(json_string_value(json_object_get(j, "dst_status")) ?: "", "running"))
		rc = FAIL("JSON says the destination is not running");
	if (summary)
		*summary = j;
	else
		json_decref(j);
	if (rc || expect_status(src, "postmigrate"))
		return -1;
	return check_integrity(dst);
}

int migrate_ok(struct qh_vm *src, struct qh_vm *dst, unsigned port, const char *const *extra,
	       unsigned streams)
{
	return migrate_run(src, dst, port, extra, streams, NULL);
}

/*
 * The orchestrator `m` has ended with status `status` and the line of its
 * stderr that says why ("rdmig qemu migrate: ...") mentions `want`.
 */
int ended_with(struct qh_proc *m, int status, const char *want)
{
	char *log = qh_read_text(m->log);
	const char *line = log ? strstr(log, "rdmig qemu migrate:") : NULL;
	int rc = 0;

	if (m->status != status)
		rc = FAIL("%s exited %d, expected %d", m->name, m->status, status);
	else if (!line || !strstr(line, want))
		rc = FAIL("%s: its error does not mention \"%s\"", m->name, want);
	else
		printf("  -> %.*s\n", (int)strcspn(line, "\n"), line);
	if (rc)
		qh_show_log(m);
	free(log);
	return rc;
}

int failed_with(struct qh_proc *m, const char *want)
{
	return ended_with(m, 1, want);
}

/* Run a migration expected to fail; its error must mention `want`. */
int migrate_fails_as(const struct qh_relay *r, const char *qmp, unsigned port,
		     const char *const *extra, const char *want)
{
	static struct qh_proc m;

	if (migrate_spawn_as(r, &m, qmp, port, extra) || migrate_wait(&m, 60000))
		return -1;
	return failed_with(&m, want);
}

static int migrate_fails(const char *qmp, unsigned port, const char *const *extra, const char *want)
{
	return migrate_fails_as(&g_relay, qmp, port, extra, want);
}

/* The orchestrator's JSON summary, or NULL (having failed the test). */
json_t *summary_of(struct qh_proc *m)
{
	char *out = qh_read_text(m->out);
	json_t *j = out ? json_loads(out, 0, NULL) : NULL;

	if (!j)
		FAIL("%s: no JSON summary in: %s", m->name, out ? out : "(out of memory)");
	free(out);
	return j;
}

/* JSON member `key` of `j` is the string `want`. */
int expect_jstr(json_t *j, const char *key, const char *want)
{
	const char *v = json_string_value(json_object_get(j, key));

	if (!v || strcmp(v, want))
		return FAIL("JSON \"%s\" is \"%s\", expected \"%s\"", key, v ? v : "(none)", want);
	return 0;
}

/* `p`'s log (stderr) mentions `want`. */
int log_mentions(struct qh_proc *p, const char *want)
{
	char *log = qh_read_text(p->log);
	bool found = log && strstr(log, want);

	free(log);
	if (!found) {
		qh_show_log(p);
		return FAIL("%s's log does not mention \"%s\"", p->name, want);
	}
	return 0;
}

/* Lines of `p`'s log (stderr) that contain both `a` and `b`; -1 if unreadable. */
int log_count(struct qh_proc *p, const char *a, const char *b)
{
	char *log = qh_read_text(p->log);
	int n = 0;

	if (!log)
		return -1;
	for (char *line = log, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (strstr(line, a) && strstr(line, b))
			n++;
	}
	free(log);
	return n;
}

/*
 * A destination relay whose log says what it opened (RDMIG_LOG=info): its
 * stream sets ("stream set N open: C channels") and the transport's
 * handshakes ("... with C data channels ...: authenticating").
 */
int relay_start_verbose(struct qh_proc *p, const char *name, struct qh_vm *vm, unsigned *port)
{
	int rc;

	setenv("RDMIG_LOG", "info", 1);
	rc = relay_start(p, name, vm, true, port);
	unsetenv("RDMIG_LOG");
	return rc;
}

/* `p`'s log has exactly `want` lines with both `a` and `b`. */
int expect_log_count(struct qh_proc *p, const char *a, const char *b, int want)
{
	int n = log_count(p, a, b);

	if (n != want) {
		qh_show_log(p);
		return FAIL("%s's log has %d line(s) with \"%s\" and \"%s\", expected %d", p->name,
			    n, a, b, want);
	}
	printf("  %s: %d line(s) with \"%s\" and \"%s\"\n", p->name, n, a, b);
	return 0;
}

/* A relay variant of g_relay with another key file (NULL: none). */
struct qh_relay keyed(const char *key_file)
{
	struct qh_relay r = g_relay;

	r.key_file = key_file;
	return r;
}

/* ---- tests ---------------------------------------------------------------------- */

const char *const fast[] = {"--max-bandwidth", "0", "--downtime-limit", "2s", NULL};

/* A source and a destination with its relay; the source's guest runs. */
int pair_start(struct qh_vm *src, struct qh_vm *dst, enum qh_incoming incoming,
	       struct qh_proc *relay, unsigned *port)
{
	if (vm_start(src, "src", QH_SOURCE) || vm_start(dst, "dst", incoming) ||
	    relay_start(relay, "relay", dst, true, port))
		return -1;
	return expect_guest_running(src);
}

static int test_plain(void)
{
	static struct qh_vm src, dst;
	static struct qh_proc relay;
	unsigned port;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port))
		return -1;
	return migrate_ok(&src, &dst, port, fast, 1);
}

static int test_multifd(void)
{
	static const char *const extra[] = {
	    "--multifd", "4", "--max-bandwidth", "0", "--downtime-limit", "2s", NULL};
	static struct qh_vm src, dst;
	static struct qh_proc relay;
	json_t *j = NULL;
	unsigned port;
	int rc;

	if (vm_start(&src, "src", QH_SOURCE) || vm_start(&dst, "dst", QH_INCOMING_DEFER) ||
	    relay_start_verbose(&relay, "relay", &dst, &port) || expect_guest_running(&src))
		return -1;
	rc = migrate_run(&src, &dst, port, extra, 5, &j);
	if (!rc && json_integer_value(json_object_get(j, "relay_connections")) != 1)
		rc = FAIL("the source relay opened %lld rdmig connections, expected 1",
			  json_integer_value(json_object_get(j, "relay_connections")));
	json_decref(j);
	/* The destination's own count: one set of 5 channels, five streams on it. */
	if (rc || expect_log_count(&relay, "stream set ", " open: ", 1) ||
	    expect_log_count(&relay, "stream set 1 open: ", "5 channels", 1) ||
	    expect_log_count(&relay, "with 5 data channels", "authenticating", 1) ||
	    expect_log_count(&relay, "(set 1, channel", "): open", 5))
		return -1;
	return 0;
}

/* Under way: QEMU's query-migrate says active with more than 2 MiB sent. */
static bool under_way(json_t *info, void *arg)
{
	bool *reached = arg;

	*reached = !strcmp(qh_mig_status(info), "active") &&
		   qh_num(json_object_get(info, "ram"), "transferred") > 2 << 20;
	return *reached;
}

static int test_kill_relay(void)
{
	static const char *const slow[] = {"--max-bandwidth", "8M", NULL};
	static struct qh_vm src, dst, dst2;
	static struct qh_proc relay, relay2, m;
	struct rdmig_err err = RDMIG_ERR_INIT;
	bool reached = false;
	unsigned port, port2;
	json_t *last = NULL;
	int rc;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port) ||
	    migrate_spawn(&m, src.qmp, port, slow))
		return -1;
	rc = qh_poll_migrate(&src, 50, 15000, under_way, &reached, &last, &err);
	json_decref(last);
	if (rc && rc != -ETIMEDOUT)
		return FAIL("%s", err.msg);
	if (!reached)
		return qh_show_log(&m), FAIL("migration never became active");
	qh_kill(&relay);
	printf("  killed the destination relay mid-migration\n");
	if (migrate_wait(&m, 60000) || failed_with(&m, "cancelled, source VM running") ||
	    expect_guest_running(&src))
		return -1;
	qh_vm_stop(&dst);

	/* A fresh destination. */
	if (vm_start(&dst2, "dst2", QH_INCOMING_UNIX) ||
	    relay_start(&relay2, "relay2", &dst2, true, &port2))
		return -1;
	return migrate_ok(&src, &dst2, port2, fast, 1);
}

static int set_postcopy(struct qh_vm *vm, bool on)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_cmd(vm, "migrate-set-capabilities",
		   json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "postcopy-ram",
			     "state", on),
		   NULL, &err))
		return FAIL("%s", err.msg);
	return 0;
}

static int set_param_str(struct qh_vm *vm, const char *name, const char *value)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_cmd(vm, "migrate-set-parameters", json_pack("{s:s}", name, value), NULL, &err))
		return FAIL("%s", err.msg);
	return 0;
}

static int test_bad_input(void)
{
	static const char *const multifd2[] = {"--multifd", "2", "--max-bandwidth", "0", NULL};
	static struct qh_vm src, dst;
	static struct qh_proc relay, bare;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct qh_fake fk;
	unsigned port, port2;
	char path[QH_PATH];
	int rc;

	if (vm_start(&src, "src", QH_SOURCE) || vm_start(&dst, "dst", QH_INCOMING_UNIX) ||
	    relay_start(&relay, "relay", &dst, true, &port))
		return -1;

	printf("  unreachable destination\n");
	if (migrate_fails(src.qmp, 1, fast, "destination relay at"))
		return -1;

	printf("  wrong socket path\n");
	snprintf(path, sizeof(path), "%s/nothing.qmp", qh_tmp());
	if (migrate_fails(path, port, fast, "source QMP socket"))
		return -1;

	printf("  a socket that is not QMP\n");
	snprintf(path, sizeof(path), "%s/fake.sock", qh_tmp());
	if (qh_fake_start(&fk, path, QH_FAKE_GARBAGE, &err))
		return FAIL("%s", err.msg);
	rc = migrate_fails(path, port, fast, "is not a QMP socket");
	qh_fake_stop(&fk);
	if (rc)
		return -1;

	printf("  capability mismatch (postcopy-ram on the source only)\n");
	if (set_postcopy(&src, true) ||
	    migrate_fails(src.qmp, port, fast, "capability mismatch: \"postcopy-ram\"") ||
	    set_postcopy(&src, false))
		return -1;

	printf("  multifd-compression differs (zlib on the source only)\n");
	if (set_param_str(&src, "multifd-compression", "zlib") ||
	    migrate_fails(src.qmp, port, multifd2, "parameter mismatch: \"multifd-compression\"") ||
	    set_param_str(&src, "multifd-compression", "none"))
		return -1;

	printf("  destination relay without --qmp\n");
	if (relay_start(&bare, "bare", &dst, false, &port2) ||
	    migrate_fails(src.qmp, port2, fast, "without --qmp"))
		return -1;

	/* Nothing of that touched the source VM nor the destination. */
	if (expect_guest_running(&src) || expect_status(&dst, "inmigrate"))
		return -1;
	printf("  source still running, destination still waiting\n");
	return 0;
}

/* ---- main ---------------------------------------------------------------------- */

static const struct qh_test tests[] = {{"plain", test_plain},
				       {"multifd", test_multifd},
				       {"kill_relay", test_kill_relay},
				       {"bad_input", test_bad_input},
				       {"auth_sink", test_auth_sink},
				       {"auth_qemu", test_auth_qemu},
				       {"fallback", test_fallback},
				       {"set_break", test_set_break},
				       {"socket_perms", test_socket_perms},
				       {"idle_control", test_idle_control},
				       {"dst_fails", test_dst_fails},
				       {"unknown", test_unknown},
				       {"postcopy", test_postcopy},
				       {"postcopy_recover", test_postcopy_recover},
				       {"postcopy_lost", test_postcopy_lost}};

/* Environment into the globals; 77 to skip, 1 on bad input, else 0. */
static int configure(void)
{
	const char *backend = getenv("RDMIG_QEMU_BACKEND"), *host = getenv("RDMIG_QEMU_HOST");
	const char *mib = getenv("RDMIG_QEMU_GUEST_MIB");
	char devs[128];

	if (backend && *backend)
		g_relay.backend = backend;
	if (mib) {
		char *end;
		unsigned long v = strtoul(mib, &end, 10);

		g_len = *mib && !*end && v >= 1 && v <= 100 ? (unsigned)v << 20 : 0;
	}
	if (!g_len)
		return FAIL("RDMIG_QEMU_GUEST_MIB must be 1..100"), 1;
	if (host && *host)
		g_relay.host = host;
	else if (!strcmp(g_relay.backend, "rdma") && getenv("RDMIG_RXE_IP"))
		g_relay.host = getenv("RDMIG_RXE_IP"); /* inside soft-roce-setup/rxe-vm */
	if (!strcmp(g_relay.backend, "rdma")) {
		if (rdmig_rdma_devices(devs, sizeof(devs)) <= 0) {
			fprintf(stderr, "relay_test: SKIP: no RDMA device (soft-roce-setup/rxe-vm "
					"-- ctest -L rdma)\n");
			return QH_EXIT_SKIP;
		}
		printf("RDMA devices: %s\n", devs);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct qh_vm_cfg probe;
	int ver[3], rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	rdmig_log_init();
	if (argc < 3) {
		fprintf(stderr, "usage: relay_test RDMIG GUEST_IMG [TEST...]\n");
		return 2;
	}
	g_relay.rdmig = argv[1];
	rc = qh_need_qemu("relay_test");
	if (!rc)
		rc = configure();
	if (rc)
		return rc;
	if (qh_setup("rdmig-relay", &err) ||
	    qh_guest_disk(argv[2], "guest.img", g_disk, sizeof(g_disk), &err) ||
	    qh_qemu_version(ver, &err))
		return FAIL("%s", err.msg), 1;
	snprintf(g_key, sizeof(g_key), "%s/key", qh_tmp());
	snprintf(g_key_bad, sizeof(g_key_bad), "%s/other-key", qh_tmp());
	if (make_key(g_key) || make_key(g_key_bad))
		return 1;
	g_relay.key_file = g_key;
	probe = guest_cfg("kvmprobe", QH_SOURCE);
	g_accel = qh_pick_accel(&probe, QH_GUEST_START);
	g_lossy = qh_tcg_lossy(g_accel, ver);
	printf("qemu %d.%d.%d, -accel %s, relay backend %s%s\n", ver[0], ver[1], ver[2], g_accel,
	       g_relay.backend,
	       g_lossy ? "; TCG of QEMU < 9.0 may lose dirty pages: damaged memory is a WARN "
			 "(RDMIG_QEMU_STRICT=1 makes it fail)"
		       : "");
	return qh_run_tests(tests, sizeof(tests) / sizeof(tests[0]), argc, argv, 3);
}
