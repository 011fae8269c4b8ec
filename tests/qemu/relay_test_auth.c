/* SPDX-License-Identifier: MIT */
/*
 * QEMU tier, relay_test (relay_test.c has the overview): authentication
 * on every relay path, the source relay's socket (its permissions, and more
 * connections than one stream set holds), and control sessions that go
 * silent.
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

/* ---- authentication ------------------------------------------------------------- */

/* A key file of 32 random bytes, mode 0600. */
int make_key(const char *path)
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

int test_auth_sink(void)
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

/* Send "QEVM" and `n` more bytes on `fd`; -1 (having failed the test) if it cannot. */
static int feed(int fd, size_t n, const char *what)
{
	static char chunk[64 * 1024];

	memset(chunk, 0xa5, sizeof(chunk));
	if (send(fd, "QEVM", 4, MSG_NOSIGNAL) != 4)
		return FAIL("%s: send: %s", what, strerror(errno));
	while (n) {
		ssize_t w = send(fd, chunk, n < sizeof(chunk) ? n : sizeof(chunk), MSG_NOSIGNAL);

		if (w <= 0)
			return FAIL("%s: send: %s", what, strerror(errno));
		n -= (size_t)w;
	}
	return 0;
}

/* Connect to the source relay's socket; -1 (having failed the test) if it cannot. */
static int sock_connect(const char *sock)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || !sun_of(&sa, sock) || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		if (fd >= 0)
			close(fd);
		return FAIL("connect to %s: %s", sock, strerror(errno));
	}
	return fd;
}

/*
 * `rdmig qemu src --streams 2` taking 5 connections that are all open at
 * once, as QEMU's multifd channels are: the source relay must open another
 * stream set whenever one is full (3 sets of 2 channels), and every
 * connection must reach the destination's incoming socket with all its
 * bytes, its end of stream passed back.
 */
int test_fallback(void)
{
	enum { CONNS = 5 };
	static const char *const two[] = {"--streams", "2", NULL};
	static struct qh_proc relay, src;
	static char chunk[64 * 1024];
	const size_t n = 256 << 10;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct timeval tv = {.tv_sec = 20};
	int fds[CONNS], rc = -1, i;
	char path[QH_PATH], sock[QH_PATH];
	struct qh_sink sk;
	unsigned port;

	for (i = 0; i < CONNS; i++)
		fds[i] = -1;
	snprintf(path, sizeof(path), "%s/sink-fallback.in", qh_tmp());
	snprintf(sock, sizeof(sock), "%s/src-fallback.sock", qh_tmp());
	if (qh_sink_start(&sk, path, &err))
		return FAIL("%s", err.msg);
	setenv("RDMIG_LOG", "info", 1);
	rc = qh_relay_dst_spawn(&relay, "relay-fallback", &g_relay, path, NULL, NULL, &port, &err);
	unsetenv("RDMIG_LOG");
	if (rc || qh_relay_src_start(&src, "src-fallback", &g_relay, port, sock, two, &err)) {
		rc = FAIL("%s", err.msg);
		goto out;
	}
	rc = -1;
	for (i = 0; i < CONNS; i++) {
		fds[i] = sock_connect(sock);
		if (fds[i] < 0 || feed(fds[i], n, "a connection"))
			goto out;
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	printf("  %d connections open at once, %zu bytes each\n", CONNS, n + 4);
	if (sink_saw(&sk, CONNS, CONNS * (uint64_t)(n + 4)))
		goto out;
	/* End of stream each way: the sink closes, the relay passes it back. */
	for (i = 0; i < CONNS; i++) {
		shutdown(fds[i], SHUT_WR);
		if (recv(fds[i], chunk, sizeof(chunk), 0) != 0) {
			FAIL("connection %d: no end of stream from the source relay", i);
			goto out;
		}
	}
	if (expect_log_count(&relay, "stream set ", " open: 2 channels", 3) ||
	    expect_log_count(&relay, "with 2 data channels", "authenticating", 3) ||
	    expect_log_count(&relay, ", channel ", "): open", CONNS) || qh_exited(&src))
		goto out;
	rc = 0;
out:
	for (i = 0; i < CONNS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	qh_sink_stop(&sk);
	return rc;
}

/*
 * A stream set that breaks with channels to spare: `rdmig qemu src --streams
 * 4` carries one connection, the destination relay is killed, and the
 * source relay must shut that connection down (as QEMU needs to notice) and
 * carry the next connection on a new set to the relay restarted on the same
 * address, never on a channel of the broken one.
 */
int test_set_break(void)
{
	static const char *const four[] = {"--streams", "4", NULL};
	static struct qh_proc relay, relay2, src;
	const size_t n = 64 << 10;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct timeval tv = {.tv_sec = 20};
	char path[QH_PATH], sock[QH_PATH], listen[300], buf[256];
	const char *const same_port[] = {"--listen", listen, NULL};
	int a = -1, b = -1, rc = -1;
	unsigned port, port2;
	struct qh_sink sk;
	ssize_t r;

	snprintf(path, sizeof(path), "%s/sink-break.in", qh_tmp());
	snprintf(sock, sizeof(sock), "%s/src-break.sock", qh_tmp());
	if (qh_sink_start(&sk, path, &err))
		return FAIL("%s", err.msg);
	if (qh_relay_dst_spawn(&relay, "relay-break", &g_relay, path, NULL, NULL, &port, &err) ||
	    qh_relay_src_start(&src, "src-break", &g_relay, port, sock, four, &err)) {
		FAIL("%s", err.msg);
		goto out;
	}
	a = sock_connect(sock);
	if (a < 0 || feed(a, n, "first connection") || sink_saw(&sk, 1, n + 4))
		goto out;
	qh_kill(&relay);
	printf("  killed the destination relay with 1 of 4 channels in use\n");
	setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r = recv(a, buf, sizeof(buf), 0);
	if (r > 0 || (r < 0 && errno == EAGAIN)) {
		FAIL("the source relay did not shut the broken set's connection down");
		goto out;
	}
	printf("  the source relay shut its connection down\n");
	snprintf(listen, sizeof(listen), "%s:%u", g_relay.host, port);
	setenv("RDMIG_LOG", "info", 1);
	rc = qh_relay_dst_spawn(&relay2, "relay-break2", &g_relay, path, NULL, same_port, &port2,
				&err);
	unsetenv("RDMIG_LOG");
	if (rc || port2 != port) {
		rc = rc ? FAIL("%s", err.msg) : FAIL("restarted on port %u, not %u", port2, port);
		goto out;
	}
	rc = -1;
	b = sock_connect(sock);
	if (b < 0 || feed(b, n, "second connection") || sink_saw(&sk, 2, 2 * (n + 4)) ||
	    expect_log_count(&relay2, "stream set 1 open: ", "4 channels", 1) ||
	    expect_log_count(&relay2, "(set 1, channel 0)", "): open", 1))
		goto out;
	rc = 0;
out:
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
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

int test_auth_qemu(void)
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

int test_socket_perms(void)
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

int test_idle_control(void)
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
