/* SPDX-License-Identifier: MIT */
/*
 * QEMU tier: stock QEMU migrating through the rdmig relay (`rdmig qemu ...`).
 *
 *   plain        one stream, destination -incoming unix:PATH, integrity check
 *   multifd      --multifd 4 (5 streams), destination -incoming defer, integrity
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

#include "auth.h"
#include "clock.h"
#include "log.h"
#include "qemu_harness.h"
#include "relay.h"
#include "rdmig/transport.h"

#define FAIL QH_FAIL

static char g_disk[QH_PATH];
static const char *g_accel = "tcg";
static bool g_lossy;
static unsigned g_len = 100u << 20; /* RDMIG_QEMU_GUEST_MIB; the image must match */
static struct qh_relay g_relay = {.host = "127.0.0.1", .backend = "tcp"};
static char g_key[QH_PATH], g_key_bad[QH_PATH]; /* the run's key, and another one */

/* ---- VMs and relays ------------------------------------------------------------ */

/* The test guest, with a second QMP socket for the relay or the orchestrator. */
static struct qh_vm_cfg guest(const char *name, enum qh_incoming incoming)
{
	return (struct qh_vm_cfg){.name = name,
				  .accel = g_accel,
				  .mem_mib = 128,
				  .disk = g_disk,
				  .second_qmp = true,
				  .incoming = incoming};
}

static int vm_start(struct qh_vm *vm, const char *name, enum qh_incoming incoming)
{
	struct qh_vm_cfg cfg = guest(name, incoming);
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_vm_start(vm, &cfg, &err))
		return FAIL("%s", err.msg);
	return 0;
}

static int relay_start(struct qh_proc *p, const char *name, struct qh_vm *vm, bool with_qmp,
		       unsigned *port)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_relay_dst_start(p, name, &g_relay, vm, with_qmp, port, &err))
		return FAIL("%s", err.msg);
	return 0;
}

/* Running now, its counters moving. */
static int expect_guest_running(struct qh_vm *vm)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_expect_status(vm, "running", &err) || qh_guest_runs(vm, QH_GUEST_START, NULL, &err))
		return FAIL("%s", err.msg);
	return 0;
}

static int expect_status(struct qh_vm *vm, const char *want)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_expect_status(vm, want, &err))
		return FAIL("%s", err.msg);
	return 0;
}

/* Running, then stopped, then the whole range checked. */
static int check_integrity(struct qh_vm *vm)
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

static int migrate_spawn(struct qh_proc *p, const char *qmp, unsigned port,
			 const char *const *extra)
{
	return migrate_spawn_as(&g_relay, p, qmp, port, extra);
}

/* Wait for the orchestrator to exit (p->status). */
static int migrate_wait(struct qh_proc *p, int timeout_ms)
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
static int migrate_run(struct qh_vm *src, struct qh_vm *dst, unsigned port,
		       const char *const *extra, unsigned streams, json_t **summary)
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

static int migrate_ok(struct qh_vm *src, struct qh_vm *dst, unsigned port, const char *const *extra,
		      unsigned streams)
{
	return migrate_run(src, dst, port, extra, streams, NULL);
}

/*
 * The orchestrator `m` has ended with status `status` and the line of its
 * stderr that says why ("rdmig qemu migrate: ...") mentions `want`.
 */
static int ended_with(struct qh_proc *m, int status, const char *want)
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

static int failed_with(struct qh_proc *m, const char *want)
{
	return ended_with(m, 1, want);
}

/* Run a migration expected to fail; its error must mention `want`. */
static int migrate_fails_as(const struct qh_relay *r, const char *qmp, unsigned port,
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
static json_t *summary_of(struct qh_proc *m)
{
	char *out = qh_read_text(m->out);
	json_t *j = out ? json_loads(out, 0, NULL) : NULL;

	if (!j)
		FAIL("%s: no JSON summary in: %s", m->name, out ? out : "(out of memory)");
	free(out);
	return j;
}

/* JSON member `key` of `j` is the string `want`. */
static int expect_jstr(json_t *j, const char *key, const char *want)
{
	const char *v = json_string_value(json_object_get(j, key));

	if (!v || strcmp(v, want))
		return FAIL("JSON \"%s\" is \"%s\", expected \"%s\"", key, v ? v : "(none)", want);
	return 0;
}

/* `p`'s log (stderr) mentions `want`. */
static int log_mentions(struct qh_proc *p, const char *want)
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

/* A relay variant of g_relay with another key file (NULL: none). */
static struct qh_relay keyed(const char *key_file)
{
	struct qh_relay r = g_relay;

	r.key_file = key_file;
	return r;
}

/* ---- tests ---------------------------------------------------------------------- */

static const char *const fast[] = {"--max-bandwidth", "0", "--downtime-limit", "2s", NULL};

/* A source and a destination with its relay; the source's guest runs. */
static int pair_start(struct qh_vm *src, struct qh_vm *dst, enum qh_incoming incoming,
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
	unsigned port;

	if (pair_start(&src, &dst, QH_INCOMING_DEFER, &relay, &port))
		return -1;
	return migrate_ok(&src, &dst, port, extra, 5);
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

/* ---- authentication ------------------------------------------------------------- */

/* A key file of 32 random bytes, mode 0600. */
static int make_key(const char *path)
{
	unsigned char k[32];
	int fd;

	if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k))
		return FAIL("getrandom: %s", strerror(errno));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return FAIL("%s: %s", path, strerror(errno));
	if (write(fd, k, sizeof(k)) != (ssize_t)sizeof(k)) {
		close(fd);
		return FAIL("%s: %s", path, strerror(errno));
	}
	close(fd);
	return 0;
}

/* A unix socket address for `path`; false if it does not fit. */
static bool sun_of(struct sockaddr_un *sa, const char *path)
{
	size_t len = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (len >= sizeof(sa->sun_path))
		return false;
	memcpy(sa->sun_path, path, len + 1);
	return true;
}

/*
 * Play the source QEMU: connect to the source relay's socket, send a
 * migration stream's magic and `n` more bytes, half-close, and wait (20 s at
 * most) until the relay closes its side: at once when it could not open the
 * stream, after the destination's end of stream when it could.
 */
static int play_source(const char *sock, size_t n)
{
	struct sockaddr_un sa;
	static char chunk[64 * 1024];
	int64_t deadline = rdmig_deadline_ms(20000);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {.tv_sec = 1};
	int rc = 0;

	if (fd < 0 || !sun_of(&sa, sock) || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		return FAIL("connect to %s: %s", sock, strerror(errno));
	memset(chunk, 0x5a, sizeof(chunk));
	/* Best effort: a relay that refuses closes the socket under our feet. */
	if (send(fd, "QEVM", 4, MSG_NOSIGNAL) == 4)
		while (n) {
			size_t len = n < sizeof(chunk) ? n : sizeof(chunk);
			ssize_t w = send(fd, chunk, len, MSG_NOSIGNAL);

			if (w <= 0)
				break;
			n -= (size_t)w;
		}
	shutdown(fd, SHUT_WR);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t r = recv(fd, chunk, sizeof(chunk), 0);

		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			break;
		if (rdmig_ms_left(deadline) == 0) {
			rc = FAIL("the source relay kept %s open for 20 s", sock);
			break;
		}
	}
	close(fd);
	return rc;
}

/* The sink has seen exactly `conns` connections and `bytes` bytes (waiting 20 s for them). */
static int sink_saw(struct qh_sink *sk, unsigned conns, uint64_t bytes)
{
	int64_t deadline = rdmig_deadline_ms(20000);

	while ((atomic_load(&sk->conns) != conns || atomic_load(&sk->bytes) != bytes) &&
	       rdmig_ms_left(deadline) > 0)
		rdmig_sleep_ms(20);
	/* What arrives late still counts: give a leak a moment to show. */
	rdmig_sleep_ms(200);
	if (atomic_load(&sk->conns) != conns || atomic_load(&sk->bytes) != bytes)
		return FAIL("the destination's incoming socket saw %u connection(s) and %llu "
			    "byte(s), expected %u and %llu",
			    atomic_load(&sk->conns), (unsigned long long)atomic_load(&sk->bytes),
			    conns, (unsigned long long)bytes);
	printf("  incoming socket: %u connection(s), %llu byte(s)\n", conns,
	       (unsigned long long)bytes);
	return 0;
}

/* A source relay as `r` says, fed `n` bytes by play_source(). */
static int through_src(const struct qh_relay *r, const char *name, unsigned port,
		       const char *const *extra, size_t n, struct qh_proc *p)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char sock[QH_PATH];

	snprintf(sock, sizeof(sock), "%s/%s.sock", qh_tmp(), name);
	if (qh_relay_src_start(p, name, r, port, sock, extra, &err))
		return FAIL("%s", err.msg);
	return play_source(sock, n);
}

/* Bytes that are not rdmig's to the relay's tcp port; it must shrug them off. */
static int send_garbage(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static const char junk[] = "GET / HTTP/1.0\r\n\r\nQEVM\0\0\0\3";
	struct timeval tv = {.tv_sec = 20};
	char buf[256];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		return FAIL("connect to port %u: %s", port, strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, junk, sizeof(junk), MSG_NOSIGNAL) < 0)
		return close(fd), FAIL("send: %s", strerror(errno));
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	close(fd);
	return 0;
}

static int test_auth_sink(void)
{
	static struct qh_proc relay, tls_relay, open_relay, s1, s2, s3, s4, s5, s6;
	static const char *const tls[] = {"--tls", NULL};
	const size_t n = 1 << 20;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct qh_relay nokey = keyed(NULL), badkey = keyed(g_key_bad);
	bool tcp = !strcmp(g_relay.backend, "tcp");
	struct qh_sink sk;
	char path[QH_PATH];
	unsigned port, port2;
	uint64_t want = 0;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/sink.in", qh_tmp());
	if (qh_sink_start(&sk, path, &err))
		return FAIL("%s", err.msg);
	if (qh_relay_dst_spawn(&relay, "relay", &g_relay, path, NULL, NULL, &port, &err)) {
		FAIL("%s", err.msg);
		goto out;
	}
	printf("  a source relay without a key\n");
	if (through_src(&nokey, "src-nokey", port, NULL, n, &s1) || sink_saw(&sk, 0, 0) ||
	    log_mentions(&s1, "--key-file"))
		goto out;
	printf("  a source relay with another key\n");
	if (through_src(&badkey, "src-badkey", port, NULL, n, &s2) || sink_saw(&sk, 0, 0) ||
	    log_mentions(&s2, "key"))
		goto out;
	if (tcp) {
		printf("  a connection that is not rdmig's\n");
		if (send_garbage(port) || sink_saw(&sk, 0, 0))
			goto out;
	}
	if (qh_exited(&relay)) {
		FAIL("the destination relay exited after refusing connections (status %d)",
		     relay.status);
		goto out;
	}
	printf("  the same relay, a source relay with the key\n");
	want += n + 4;
	if (through_src(&g_relay, "src-key", port, NULL, n, &s3) || sink_saw(&sk, 1, want) ||
	    log_mentions(&relay, "dropping connection from "))
		goto out;

	printf("  a keyed source relay, a destination relay without a key\n");
	if (qh_relay_dst_spawn(&open_relay, "open-relay", &nokey, path, NULL, NULL, &port2, &err)) {
		FAIL("%s", err.msg);
		goto out;
	}
	if (through_src(&g_relay, "src-key2", port2, NULL, n, &s4) || sink_saw(&sk, 1, want) ||
	    log_mentions(&s4, "has no key configured"))
		goto out;
	if (tcp) {
		printf(
		    "  --tls on the destination relay: a source relay without it, then with it\n");
		if (qh_relay_dst_spawn(&tls_relay, "tls-relay", &g_relay, path, NULL, tls, &port2,
				       &err)) {
			FAIL("%s", err.msg);
			goto out;
		}
		want += n + 4;
		if (through_src(&g_relay, "src-notls", port2, NULL, n, &s5) ||
		    sink_saw(&sk, 1, want - n - 4) || log_mentions(&s5, "requires TLS") ||
		    through_src(&g_relay, "src-tls", port2, tls, n, &s6) || sink_saw(&sk, 2, want))
			goto out;
	}
	rc = 0;
out:
	qh_sink_stop(&sk);
	return rc;
}

/* Start `migrate unix:SOCK` on `vm` by its own QMP; the migration must fail. */
static int qemu_migrate_fails(struct qh_vm *vm, const char *sock)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char uri[QH_PATH + 8];
	json_t *last = NULL;
	const char *st;
	int rc;

	snprintf(uri, sizeof(uri), "unix:%s", sock);
	if (qh_cmd(vm, "migrate", json_pack("{s:s}", "uri", uri), NULL, &err) ||
	    qh_poll_migrate(vm, 100, 60000, NULL, NULL, &last, &err)) {
		json_decref(last);
		return FAIL("%s", err.msg);
	}
	st = qh_mig_status(last);
	rc = strcmp(st, "failed") ? FAIL("the source's migration ended \"%s\", not failed", st) : 0;
	if (!rc)
		printf("  -> source QEMU: migration failed (%s)\n",
		       json_string_value(json_object_get(last, "error-desc")) ?: "no error-desc");
	json_decref(last);
	return rc;
}

static int test_auth_qemu(void)
{
	static struct qh_vm src, dst;
	static struct qh_proc relay, s1;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct qh_relay nokey = keyed(NULL), badkey = keyed(g_key_bad);
	char sock[QH_PATH];
	unsigned port;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port))
		return -1;
	printf("  rdmig qemu migrate without a key\n");
	if (migrate_fails_as(&nokey, src.qmp, port, fast, "--key-file"))
		return -1;
	printf("  rdmig qemu migrate with another key\n");
	if (migrate_fails_as(&badkey, src.qmp, port, fast, "key"))
		return -1;
	printf("  QEMU's migrate into a source relay without a key\n");
	snprintf(sock, sizeof(sock), "%s/src-nokey.sock", qh_tmp());
	if (qh_relay_src_start(&s1, "src-nokey", &nokey, port, sock, NULL, &err))
		return FAIL("%s", err.msg);
	if (qemu_migrate_fails(&src, sock) || log_mentions(&s1, "--key-file"))
		return -1;
	if (expect_guest_running(&src) || expect_status(&dst, "inmigrate"))
		return -1;
	printf("  source running, destination still waiting; now with the key\n");
	return migrate_ok(&src, &dst, port, fast, 1);
}

/* ---- the source relay's socket ---------------------------------------------------- */

/* Mode and group of `path` are `mode` and `gid`. */
static int expect_sock(const char *path, unsigned mode, unsigned gid)
{
	struct stat st;

	if (stat(path, &st))
		return FAIL("stat %s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != mode || st.st_gid != gid)
		return FAIL("%s: mode %04o group %u, expected a socket with %04o group %u", path,
			    (unsigned)(st.st_mode & 07777), (unsigned)st.st_gid, mode, gid);
	printf("  %s: mode %04o group %u\n", strrchr(path, '/') + 1, mode, gid);
	return 0;
}

/* Whether a process of user `uid` and group `gid` (only) can connect to `path`: 0 or -errno. */
static int connect_as(const char *path, uid_t uid, gid_t gid)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (!pid) {
		struct sockaddr_un sa;
		int fd;

		if (!sun_of(&sa, path) || setgroups(0, NULL) || setgid(gid) || setuid(uid))
			_exit(100);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		_exit(fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ? 0
										  : errno & 0x7f);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) == 100)
		return -ECHILD;
	return -WEXITSTATUS(st);
}

/* `rdmig qemu src ... EXTRA` is refused as bad usage, saying `want`. */
static int src_usage_error(const char *name, const char *const *extra, const char *want)
{
	static struct qh_proc p;
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *argv[16] = {g_relay.rdmig, "qemu",	      "src",
				"--connect",   "127.0.0.1:1", "--socket"};
	char sock[QH_PATH];
	int n = 7;

	snprintf(sock, sizeof(sock), "%s/never.sock", qh_tmp());
	argv[6] = sock;
	for (; *extra; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	if (qh_spawn(&p, name, argv, false, &err) || qh_wait(&p, 10000, &err))
		return FAIL("%s", err.msg);
	if (p.status != 2)
		return qh_show_log(&p),
		       FAIL("%s exited %d, expected 2 (bad usage)", name, p.status);
	if (log_mentions(&p, want))
		return -1;
	printf("  %s: refused, \"%s\"\n", name, want);
	return 0;
}

static int test_socket_perms(void)
{
	static struct qh_proc def, grp, num;
	static const char *const bad_mode[] = {"--socket-mode", "0666", NULL};
	static const char *const not_octal[] = {"--socket-mode", "0680", NULL};
	static const char *const no_group[] = {"--socket-group", "rdmig-no-such-group", NULL};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct group *g = geteuid() == 0 ? getgrnam("daemon") : getgrgid(getegid());
	const char *gargs[] = {"--socket-mode", "0660", "--socket-group", NULL, NULL};
	const char *nargs[] = {"--socket-group", NULL, NULL};
	char dir[64] = "/tmp/rdmig-sock-XXXXXX", s1[QH_PATH], s2[QH_PATH], s3[QH_PATH];
	char gname[64], gnum[16];
	unsigned gid;
	int rc = -1;

	if (!g)
		return FAIL("no group to test --socket-group with (daemon, or this process's)");
	snprintf(gname, sizeof(gname), "%s", g->gr_name);
	gid = (unsigned)g->gr_gid;
	snprintf(gnum, sizeof(gnum), "%u", gid);
	gargs[3] = gname;
	nargs[1] = gnum;
	/* Not under the run's 0700 directory: other users must be able to try. */
	if (!mkdtemp(dir) || chmod(dir, 0711))
		return FAIL("%s: %s", dir, strerror(errno));
	snprintf(s1, sizeof(s1), "%s/default.sock", dir);
	snprintf(s2, sizeof(s2), "%s/group.sock", dir);
	snprintf(s3, sizeof(s3), "%s/gid.sock", dir);
	if (qh_relay_src_start(&def, "src-default", &g_relay, 1, s1, NULL, &err) ||
	    qh_relay_src_start(&grp, "src-group", &g_relay, 1, s2, gargs, &err) ||
	    qh_relay_src_start(&num, "src-gid", &g_relay, 1, s3, nargs, &err)) {
		FAIL("%s", err.msg);
		goto out;
	}
	if (expect_sock(s1, 0600, (unsigned)getegid()) || expect_sock(s2, 0660, gid) ||
	    expect_sock(s3, 0600, gid))
		goto out;
	if (geteuid() == 0) {
		/* nobody, in a group of its own or in the socket's. */
		int other = connect_as(s2, 65534, 65534), member = connect_as(s2, 65534, gid),
		    owner_only = connect_as(s1, 65534, (gid_t)getegid());

		if (other != -EACCES || member != 0 || owner_only != -EACCES) {
			FAIL("connecting as uid 65534: outsider %d, group member %d, to the 0600 "
			     "socket %d; expected %d, 0, %d",
			     other, member, owner_only, -EACCES, -EACCES);
			goto out;
		}
		printf("  as another user: refused unless in the socket's group (0660)\n");
	} else {
		printf("  not root: connecting as another user not tried\n");
	}
	rc = src_usage_error("mode-0666", bad_mode, "every local user") ||
		     src_usage_error("mode-0680", not_octal, "octal") ||
		     src_usage_error("no-group", no_group, "no group named")
		 ? -1
		 : 0;
out:
	qh_kill(&def);
	qh_kill(&grp);
	qh_kill(&num);
	unlink(s1);
	unlink(s2);
	unlink(s3);
	rmdir(dir);
	return rc;
}

/* ---- control sessions ---------------------------------------------------------------- */

struct ctl_client {
	struct rdmig_auth_key key;
	struct rdmig_conn *c;
};

/* Open a control session to the relay at `port` with the run's key, as an orchestrator does. */
static int ctl_open(struct ctl_client *cc, unsigned port)
{
	struct rdmig_xport_cfg x = {.host = g_relay.host, .port = (uint16_t)port};
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (rdmig_backend_parse(g_relay.backend, &x.backend, &err) ||
	    rdmig_auth_key_load(g_key, &cc->key, &err))
		return FAIL("%s", err.msg);
	x.auth = rdmig_auth_psk;
	x.auth_ctx = &cc->key;
	if (rdmig_relay_ctrl_open(&x, &cc->c, &err))
		return FAIL("control session: %s", err.msg);
	return 0;
}

/* One request `op`; 0 when it was answered "ok", else the error (message in err). */
static int ctl_call(struct ctl_client *cc, const char *op, struct rdmig_err *err)
{
	return rdmig_relay_ctrl_call(cc->c, json_pack("{s:s}", "op", op), NULL, 15000, err);
}

static void ctl_close(struct ctl_client *cc)
{
	rdmig_conn_destroy(cc->c);
	cc->c = NULL;
	rdmig_auth_key_wipe(&cc->key);
}

static int test_idle_control(void)
{
	static const char *const idle2[] = {"--control-idle", "2s", NULL};
	static struct qh_vm src, dst;
	static struct qh_proc relay, idler;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct ctl_client cc = {0};
	unsigned port, iport;
	int rc = -1;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port))
		return -1;
	printf("  --control-idle 2s: a session silent for 3 s is dropped\n");
	if (qh_relay_dst_spawn(&idler, "idler", &g_relay, dst.incoming, dst.qmp, idle2, &iport,
			       &err))
		return FAIL("%s", err.msg);
	if (ctl_open(&cc, iport))
		return -1;
	if (ctl_call(&cc, "query", &err)) {
		FAIL("query: %s", err.msg);
		goto out;
	}
	rdmig_sleep_ms(3000);
	if (!ctl_call(&cc, "status", &err)) {
		FAIL("a control session silent for 3 s still works with --control-idle 2s");
		goto out;
	}
	printf("  -> %s\n", err.msg);
	if (log_mentions(&idler, "no request for 2 s: dropped"))
		goto out;
	ctl_close(&cc);
	qh_kill(&idler);

	printf("  a session holding the destination QEMU goes silent; the orchestrator comes\n");
	if (ctl_open(&cc, port))
		goto out;
	if (ctl_call(&cc, "query", &err)) {
		FAIL("query: %s", err.msg);
		goto out;
	}
	if (migrate_ok(&src, &dst, port, fast, 1))
		goto out;
	rdmig_err_clear(&err);
	if (!ctl_call(&cc, "status", &err)) {
		FAIL("the silent session survived the orchestrator's");
		goto out;
	}
	rc = log_mentions(&relay, "dropped");
out:
	ctl_close(&cc);
	return rc;
}

/* ---- where the guest runs when the end goes wrong ------------------------------------ */

static int test_dst_fails(void)
{
	/* A device the destination lacks: its state, sent last, fails the destination's load. */
	static const char *const rng[] = {"-device", "virtio-rng-pci", NULL};
	static struct qh_vm src, dst;
	static struct qh_proc relay, m;
	struct qh_vm_cfg cfg = guest("src", QH_SOURCE);
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *j, *info = NULL;
	unsigned port;
	int rc;

	cfg.extra = rng;
	if (qh_vm_start(&src, &cfg, &err))
		return FAIL("%s", err.msg);
	if (vm_start(&dst, "dst", QH_INCOMING_UNIX) ||
	    relay_start(&relay, "relay", &dst, true, &port) || expect_guest_running(&src))
		return -1;
	if (migrate_spawn(&m, src.qmp, port, fast) || migrate_wait(&m, 120000) ||
	    failed_with(&m, "so the source VM was resumed"))
		return -1;
	j = summary_of(&m);
	if (!j)
		return -1;
	rc = expect_jstr(j, "status", "failed") || expect_jstr(j, "src_status", "running");
	if (!rc && !json_is_true(json_object_get(j, "src_resumed")))
		rc = FAIL("JSON src_resumed is not true");
	json_decref(j);
	if (rc)
		return -1;
	/* It was the late case: the source had completed, and was resumed. */
	if (qh_cmd(&src, "query-migrate", NULL, &info, &err))
		return FAIL("%s", err.msg);
	rc = strcmp(qh_mig_status(info), "completed")
		 ? FAIL("the source's migration is \"%s\", not completed: not the case under test",
			qh_mig_status(info))
		 : 0;
	json_decref(info);
	if (rc || expect_guest_running(&src))
		return -1;
	if (qh_wait(&dst.p, 10000, &err))
		return FAIL("the destination QEMU still runs after failing its load: %s", err.msg);
	printf("  source completed, destination QEMU exited (status %d), source resumed and "
	       "running\n",
	       dst.p.status);
	return 0;
}

/* Until the source's migration is `arg` (pre-switchover, completed). */
static bool mig_is(json_t *info, void *arg)
{
	return !strcmp(qh_mig_status(info), arg);
}

static int wait_src_mig(struct qh_vm *vm, const char *want)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *last = NULL;
	int rc = qh_poll_migrate(vm, 50, 90000, mig_is, (void *)want, &last, &err);

	if (!rc && strcmp(qh_mig_status(last), want))
		rc = FAIL("the source's migration ended \"%s\" instead of reaching \"%s\"",
			  qh_mig_status(last), want);
	else if (rc)
		FAIL("%s", err.msg);
	json_decref(last);
	return rc;
}

static int test_unknown(void)
{
	static struct qh_vm src, dst;
	static struct qh_proc relay, m;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct qh_proxy *px = NULL;
	unsigned port;
	json_t *j;
	int rc = -1;

	if (strcmp(g_relay.backend, "tcp")) {
		printf("  SKIP: the proxy that cuts the relay off speaks tcp only\n");
		return 0;
	}
	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port))
		return -1;
	/* The source waits before switching over: the cut then comes right after completion. */
	if (qh_cmd(&src, "migrate-set-capabilities",
		   json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
			     "pause-before-switchover", "state", 1),
		   NULL, &err) ||
	    qh_proxy_start((uint16_t)port, &px, &err))
		return FAIL("%s", err.msg);
	if (migrate_spawn(&m, src.qmp, qh_proxy_port(px), fast) ||
	    wait_src_mig(&src, "pre-switchover"))
		goto out;
	if (qh_proxy_controls(px) != 1) {
		FAIL("the proxy saw %u control sessions, expected 1", qh_proxy_controls(px));
		goto out;
	}
	qh_proxy_set(px, QH_PROXY_STALL_CONTROL);
	if (qh_cmd(&src, "migrate-continue", json_pack("{s:s}", "state", "pre-switchover"), NULL,
		   &err)) {
		FAIL("%s", err.msg);
		goto out;
	}
	if (wait_src_mig(&src, "completed"))
		goto out;
	qh_proxy_set(px, QH_PROXY_CUT_CONTROL);
	printf("  source completed; the destination relay cut off\n");
	if (migrate_wait(&m, 90000) || ended_with(&m, 3, "outcome unknown") ||
	    log_mentions(&m, "resume the source with `cont`"))
		goto out;
	j = summary_of(&m);
	if (!j)
		goto out;
	rc =
	    expect_jstr(j, "status", "unknown") || expect_jstr(j, "dst_status", "unknown") ? -1 : 0;
	json_decref(j);
	/* Not resumed: the guest runs on the destination, once. */
	if (!rc && (expect_status(&src, "postmigrate") || expect_guest_running(&dst)))
		rc = -1;
	if (!rc)
		printf("  source left paused (postmigrate); the guest runs on the destination\n");
out:
	qh_proxy_stop(px);
	return rc;
}

/* ---- post-copy -------------------------------------------------------------------- */

/*
 * The guest increments every page of its range in a loop that takes far
 * less than a second, so at 32 MiB/s every pass finds the whole range dirty
 * again and a 1 ms downtime limit is never met: pre-copy cannot converge.
 */
#define NO_CONVERGE "--max-bandwidth", "32M", "--downtime-limit", "1ms"

/* The summary says post-copy ran, over the streams it should have. */
static int expect_postcopy(json_t *j, bool recovered)
{
	bool preempt = json_is_true(json_object_get(j, "postcopy_preempt"));
	json_int_t rec = json_integer_value(json_object_get(j, "recoveries"));
	json_int_t streams = json_integer_value(json_object_get(j, "streams"));

	if (!json_is_true(json_object_get(j, "postcopy")))
		return FAIL(
		    "JSON postcopy is not true: the migration did not go through post-copy");
	if (json_is_true(json_object_get(j, "guest_lost")) ||
	    json_is_true(json_object_get(j, "postcopy_paused")))
		return FAIL("JSON says guest_lost or postcopy_paused on success");
	if (recovered ? rec < 1 : rec != 0)
		return FAIL("JSON recoveries is %lld, expected %s", rec, recovered ? ">= 1" : "0");
	/* The main channel (and the preempt one) at the start and again at every recovery. */
	if (streams != (1 + preempt) * (1 + rec))
		return FAIL("%lld streams carried, expected %lld (preempt %s, %lld recoveries)",
			    streams, (1 + preempt) * (1 + rec), preempt ? "on" : "off", rec);
	printf("  post-copy from %lld ms, %lld page requests from the destination, preempt %s, "
	       "%lld recoveries\n",
	       json_integer_value(json_object_get(j, "postcopy_start_ms")),
	       json_integer_value(json_object_get(j, "postcopy_requests")), preempt ? "on" : "off",
	       rec);
	return 0;
}

static int test_postcopy(void)
{
	static const char *const extra[] = {"--postcopy", NO_CONVERGE, NULL};
	static struct qh_vm src, dst;
	static struct qh_proc relay;
	json_t *j = NULL;
	unsigned port;
	int rc;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port))
		return -1;
	rc = migrate_run(&src, &dst, port, extra, 0, &j);
	if (!rc)
		rc = expect_postcopy(j, false);
	/* Switched because pre-copy did not converge: at the start of the third pass. */
	if (!rc && json_integer_value(json_object_get(j, "passes")) < 3)
		rc = FAIL("post-copy after %lld passes: the non-convergence rule needs 3",
			  json_integer_value(json_object_get(j, "passes")));
	json_decref(j);
	return rc;
}

/*
 * Post-copy under way and slow enough to be caught there: switched to 1 s
 * into the first pass, with most of the guest still to copy, and the
 * background copy limited (max-postcopy-bandwidth, on the source's own
 * QMP) so that it would take about 16 s for the whole guest.
 */
static int postcopy_slowly(struct qh_vm *src, struct qh_proc *m, unsigned port)
{
	static const char *const extra[] = {
	    "--postcopy", "--postcopy-after", "1s", NO_CONVERGE, "--recover-wait", "60s", NULL};
	struct rdmig_err err = RDMIG_ERR_INIT;
	char st[32];

	if (qh_cmd(src, "migrate-set-parameters",
		   json_pack("{s:I}", "max-postcopy-bandwidth", (json_int_t)(g_len / 16)), NULL,
		   &err))
		return FAIL("%s", err.msg);
	if (migrate_spawn(m, src->qmp, port, extra) || wait_src_mig(src, "postcopy-active"))
		return -1;
	rdmig_sleep_ms(1000);
	/* The guest left the source at the switch. */
	if (qh_status(src, st, sizeof(st), &err))
		return FAIL("%s", err.msg);
	if (!strcmp(st, "running"))
		return FAIL("the source VM still runs in post-copy");
	return 0;
}

static int test_postcopy_recover(void)
{
	static struct qh_vm src, dst;
	static struct qh_proc relay, relay2, m;
	struct rdmig_err err = RDMIG_ERR_INIT;
	char listen[300];
	const char *const same_port[] = {"--listen", listen, NULL};
	unsigned port, port2;
	json_t *j;
	int rc;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port) ||
	    postcopy_slowly(&src, &m, port))
		return -1;
	qh_kill(&relay);
	printf("  killed the destination relay in post-copy\n");
	if (wait_src_mig(&src, "postcopy-paused"))
		return -1;
	printf("  the source QEMU paused post-copy; restarting the relay on port %u\n", port);
	/* The later --listen wins: the new relay takes the old one's address. */
	snprintf(listen, sizeof(listen), "%s:%u", g_relay.host, port);
	if (qh_relay_dst_spawn(&relay2, "relay2", &g_relay, dst.incoming, dst.qmp, same_port,
			       &port2, &err))
		return FAIL("%s", err.msg);
	if (port2 != port)
		return FAIL("the restarted relay listens on %u, not %u", port2, port);
	if (migrate_wait(&m, 120000))
		return -1;
	if (m.status) {
		qh_show_log(&m);
		return FAIL("rdmig qemu migrate exited %d", m.status);
	}
	j = summary_of(&m);
	if (!j)
		return -1;
	rc = expect_jstr(j, "status", "completed") || expect_jstr(j, "dst_status", "running") ||
		     expect_postcopy(j, true)
		 ? -1
		 : 0;
	json_decref(j);
	if (rc || log_mentions(&m, "post-copy paused") || expect_status(&src, "postmigrate"))
		return -1;
	return check_integrity(&dst);
}

static int test_postcopy_lost(void)
{
	static struct qh_vm src, dst;
	static struct qh_proc relay, m;
	unsigned port;
	json_t *j;
	int rc;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port) ||
	    postcopy_slowly(&src, &m, port))
		return -1;
	qh_kill(&dst.p);
	printf("  killed the destination QEMU in post-copy\n");
	if (migrate_wait(&m, 90000) || failed_with(&m, "guest is lost"))
		return -1;
	j = summary_of(&m);
	if (!j)
		return -1;
	rc = expect_jstr(j, "status", "failed");
	if (!rc && !json_is_true(json_object_get(j, "guest_lost")))
		rc = FAIL("JSON guest_lost is not true");
	json_decref(j);
	/* Nothing was resumed: the source keeps its half, stopped where post-copy left it. */
	return rc || expect_status(&src, "finish-migrate") ? -1 : 0;
}

/* ---- main ---------------------------------------------------------------------- */

static const struct qh_test tests[] = {{"plain", test_plain},
				       {"multifd", test_multifd},
				       {"kill_relay", test_kill_relay},
				       {"bad_input", test_bad_input},
				       {"auth_sink", test_auth_sink},
				       {"auth_qemu", test_auth_qemu},
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
	probe = guest("kvmprobe", QH_SOURCE);
	g_accel = qh_pick_accel(&probe, QH_GUEST_START);
	g_lossy = qh_tcg_lossy(g_accel, ver);
	printf("qemu %d.%d.%d, -accel %s, relay backend %s%s\n", ver[0], ver[1], ver[2], g_accel,
	       g_relay.backend,
	       g_lossy ? "; TCG of QEMU < 9.0 may lose dirty pages: damaged memory is a WARN "
			 "(RDMIG_QEMU_STRICT=1 makes it fail)"
		       : "");
	return qh_run_tests(tests, sizeof(tests) / sizeof(tests[0]), argc, argv, 3);
}
