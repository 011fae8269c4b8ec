/* SPDX-License-Identifier: MIT */
/*
 * auth_check: the pre-shared-key handshake (transport/auth.c) and the bounds
 * on exposure, end to end over the tcp backend on loopback.
 *
 *   auth_check good     same key both sides: the transfer lands intact
 *   auth_check wrong    different keys: both sides fail with their message,
 *                       the destination registered nothing and sent no rkey
 *   auth_check nokey    one side without a key (each way): fails clearly
 *   auth_check replay   the source's AUTH frames of a genuine session,
 *                       recorded by a relay, replayed raw: rejected
 *   auth_check keyfile  mode 0644, short key, missing file: clear errors
 *   auth_check revoke-commit | revoke-cancel
 *                       after the destination revoked (commit or cancel),
 *                       a WRITE frame is rejected and no byte lands
 *
 * The parent is the destination (listener), a forked child the source; the
 * fork happens before any transport state exists. Every wait is bounded.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "auth.h"
#include "rdmig/transport.h"
#include "wire.h"

#define WAIT_MS	   30000
#define REGION_LEN (4u << 20)
#define MSG_PING   1
#define MSG_GO	   2 /* destination -> source: 1 byte, the scenario step */

static const char *g_role = "main";
static atomic_int g_failed;
static char g_dir[64];
static char g_key_a[128], g_key_b[128], g_key_open[128], g_key_short[128];

static bool check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("[%s] %s ", g_role, ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		atomic_store(&g_failed, 1);
	return ok;
}

static bool has(const struct rdmig_err *e, const char *needle)
{
	return e->msg[0] && strstr(e->msg, needle) != NULL;
}

/* ---- keys ---------------------------------------------------------------- */

static void write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
	if (chmod(path, mode)) {
		perror(path);
		exit(1);
	}
}

static void make_keys(void)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/auth_check.XXXXXX");
	if (!mkdtemp(g_dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(g_key_a, sizeof(g_key_a), "%s/a.key", g_dir);
	snprintf(g_key_b, sizeof(g_key_b), "%s/b.key", g_dir);
	snprintf(g_key_open, sizeof(g_key_open), "%s/open.key", g_dir);
	snprintf(g_key_short, sizeof(g_key_short), "%s/short.key", g_dir);
	write_file(g_key_a, "0123456789abcdef-key-A-0123456789\n", 34, 0600);
	write_file(g_key_b, "0123456789abcdef-key-B-0123456789\n", 34, 0600);
	write_file(g_key_open, "0123456789abcdef-key-A-0123456789\n", 34, 0644);
	write_file(g_key_short, "tooshort\n", 9, 0600);
}

static void remove_keys(void)
{
	unlink(g_key_a);
	unlink(g_key_b);
	unlink(g_key_open);
	unlink(g_key_short);
	rmdir(g_dir);
}

static void load_key(const char *path, struct rdmig_auth_key *k)
{
	struct rdmig_err e = RDMIG_ERR_INIT;

	if (rdmig_auth_key_load(path, k, &e)) {
		check(false, "loading %s: %s", path, e.msg);
		exit(1);
	}
}

/* Wraps the hook to record the destination's counters as auth ends. */
struct spy {
	const struct rdmig_auth_key *key;
	bool ran;
	struct rdmig_xport_stats st;
};

static int spy_auth(struct rdmig_conn *c, bool is_server, void *ctx, struct rdmig_err *err)
{
	struct spy *s = ctx;
	int ret = rdmig_auth_psk(c, is_server, (void *)s->key, err);

	rdmig_xport_stats(c, &s->st);
	s->ran = true;
	return ret;
}

static void cfg_init(struct rdmig_xport_cfg *cfg, struct spy *s, const struct rdmig_auth_key *k)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = RDMIG_BACKEND_TCP;
	cfg->host = "127.0.0.1";
	cfg->channels = 1;
	cfg->connect_timeout_ms = WAIT_MS;
	if (s) {
		s->key = k;
		cfg->auth = spy_auth;
		cfg->auth_ctx = s;
	} else if (k) {
		cfg->auth = rdmig_auth_psk;
		cfg->auth_ctx = (void *)k;
	}
	rdmig_xport_cfg_defaults(cfg);
}

static void check_nothing_exposed(const struct spy *s)
{
	check(s->ran, "the auth hook ran on the destination");
	check(s->st.regions_remote == 0 && s->st.rkeys_sent == 0 && s->st.regs_total == 0,
	      "destination counters after the failed handshake: regions_remote %llu, "
	      "rkeys_sent %llu, regs_total %llu (all must be 0)",
	      (unsigned long long)s->st.regions_remote, (unsigned long long)s->st.rkeys_sent,
	      (unsigned long long)s->st.regs_total);
}

/* ---- two processes ------------------------------------------------------- */

typedef void (*dst_fn)(struct rdmig_listener *l, uint16_t port);
typedef void (*src_fn)(uint16_t port);

static int run_pair(const struct rdmig_xport_cfg *lcfg, dst_fn dst, src_fn src)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_listener *l = NULL;
	int pfd[2], st = 0;
	uint16_t port = 0;
	pid_t pid;

	if (pipe(pfd)) {
		perror("pipe");
		return 1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};

		close(pfd[1]);
		g_role = "src";
		if (poll(&p, 1, WAIT_MS) != 1 || read(pfd[0], &port, sizeof(port)) != sizeof(port))
			_exit(1);
		src(port);
		fflush(stdout);
		_exit(atomic_load(&g_failed) ? 1 : 0);
	}
	close(pfd[0]);
	g_role = "dst";
	if (check(!rdmig_listen(lcfg, &l, &e), "listen: %s", e.msg[0] ? e.msg : "ok")) {
		port = rdmig_listener_port(l);
		if (write(pfd[1], &port, sizeof(port)) == sizeof(port))
			dst(l, port);
	}
	close(pfd[1]);
	rdmig_listener_destroy(l);
	for (int i = 0; i < WAIT_MS * 2 / 50; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
		usleep(50 * 1000);
	}
	check(false, "source process did not finish: killing it");
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return 1;
}

static void fill(uint8_t *p, size_t len, unsigned round)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + i / 4096 + round * 101 + 7);
}

static size_t mismatches(const uint8_t *p, size_t len, unsigned round)
{
	size_t bad = 0;

	for (size_t i = 0; i < len; i++)
		bad += p[i] != (uint8_t)(i * 31 + i / 4096 + round * 101 + 7);
	return bad;
}

static void *map_region(void)
{
	void *p =
	    mmap(NULL, REGION_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

/* ---- keys on both sides: good and wrong ---------------------------------- */

static struct rdmig_auth_key g_ka, g_kb;
static struct spy g_spy;
static struct rdmig_xport_cfg g_scfg; /* the source's config, set before fork */

/* Destination of a transfer: register, expose, wait for the fence, compare. */
static bool dst_transfer(struct rdmig_conn *c, uint8_t *mem, unsigned round)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_fence f;
	uint32_t id;

	if (!check(!rdmig_reg(c, "ram", mem, REGION_LEN, RDMIG_REG_REMOTE_WRITE, &id, &e) &&
		       !rdmig_expose(c, &e),
		   "register and expose: %s", e.msg[0] ? e.msg : "ok"))
		return false;
	if (!check(!rdmig_wait_fence(c, 0, WAIT_MS, &f, &e), "fence: %s", e.msg[0] ? e.msg : "ok"))
		return false;
	return check(mismatches(mem, REGION_LEN, round) == 0 && f.bytes == REGION_LEN,
		     "%u bytes landed intact (fence says %llu)", REGION_LEN,
		     (unsigned long long)f.bytes);
}

static int src_write(struct rdmig_conn *c, const uint8_t *mem, struct rdmig_err *e)
{
	uint32_t id;
	struct rdmig_run r = {.len = REGION_LEN};
	int ret;

	ret = rdmig_reg(c, "src", (void *)mem, REGION_LEN, 0, &id, e);
	if (ret)
		return ret;
	r.lreg = id;
	r.rreg = rdmig_remote_get(c, 0)->id;
	ret = rdmig_write(c, 0, &r, 1, e);
	return ret ? ret : rdmig_fence(c, 0, 1, e);
}

static void dst_good(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t *mem = map_region();

	(void)port;
	if (check(!rdmig_accept(l, WAIT_MS, &c, &e), "accept with the right key: %s",
		  e.msg[0] ? e.msg : "ok"))
		dst_transfer(c, mem, 0);
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static void src_good(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t *mem = map_region();

	fill(mem, REGION_LEN, 0);
	g_scfg.port = port;
	if (check(!rdmig_connect(&g_scfg, &c, &e), "connect with the right key: %s",
		  e.msg[0] ? e.msg : "ok")) {
		int ret = rdmig_recv_layout(c, WAIT_MS, &e);

		if (!ret)
			ret = src_write(c, mem, &e);
		check(!ret, "write %u bytes and fence: %s", REGION_LEN, e.msg[0] ? e.msg : "ok");
	}
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static void dst_wrong(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	(void)port;
	ret = rdmig_accept(l, WAIT_MS, &c, &e);
	check(ret == -EACCES && has(&e, "authentication failed: peer does not know the key"),
	      "accept refused (%d): %s", ret, e.msg);
	check_nothing_exposed(&g_spy);
	rdmig_conn_destroy(c);
}

static void src_wrong(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	g_scfg.port = port;
	ret = rdmig_connect(&g_scfg, &c, &e);
	check(ret == -EACCES &&
		  has(&e, "authentication failed: the destination rejected our proof"),
	      "connect refused (%d): %s", ret, e.msg);
	rdmig_conn_destroy(c);
}

static int t_good(void)
{
	struct rdmig_xport_cfg lcfg;

	cfg_init(&lcfg, NULL, &g_ka);
	cfg_init(&g_scfg, NULL, &g_ka);
	return run_pair(&lcfg, dst_good, src_good);
}

static int t_wrong(void)
{
	struct rdmig_xport_cfg lcfg;

	cfg_init(&lcfg, &g_spy, &g_ka);
	cfg_init(&g_scfg, NULL, &g_kb);
	return run_pair(&lcfg, dst_wrong, src_wrong);
}

/* ---- one side without a key ---------------------------------------------- */

static void dst_keyed_src_none(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	(void)port;
	ret = rdmig_accept(l, WAIT_MS, &c, &e);
	check(ret == -EACCES && has(&e, "authentication failed: the peer has no key configured"),
	      "keyed destination refuses an unkeyed source (%d): %s", ret, e.msg);
	check_nothing_exposed(&g_spy);
	rdmig_conn_destroy(c);
}

static void src_none(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	g_scfg.port = port;
	ret = rdmig_connect(&g_scfg, &c, &e);
	if (!ret)
		ret = rdmig_recv_layout(c, WAIT_MS, &e);
	check(ret && has(&e, "authentication failed") && has(&e, "requires a key") &&
		  (!c || rdmig_remote_count(c) == 0),
	      "unkeyed source gets no layout (%d): %s", ret, e.msg);
	rdmig_conn_destroy(c);
}

static void dst_none(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint16_t type;
	uint8_t buf[64];
	size_t len;
	int ret;

	(void)port;
	ret = rdmig_accept(l, WAIT_MS, &c, &e);
	if (!ret)
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &e);
	check(ret && has(&e, "requires a key"), "unkeyed destination is told (%d): %s", ret, e.msg);
	rdmig_conn_destroy(c);
}

static void src_keyed_dst_none(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	g_scfg.port = port;
	ret = rdmig_connect(&g_scfg, &c, &e);
	check(ret == -EACCES && has(&e, "authentication failed: the peer has no key configured"),
	      "keyed source refuses an unkeyed destination (%d): %s", ret, e.msg);
	rdmig_conn_destroy(c);
}

static int t_nokey(void)
{
	struct rdmig_xport_cfg lcfg;
	int rc;

	cfg_init(&lcfg, &g_spy, &g_ka);
	cfg_init(&g_scfg, NULL, NULL);
	rc = run_pair(&lcfg, dst_keyed_src_none, src_none);
	cfg_init(&lcfg, NULL, NULL);
	cfg_init(&g_scfg, NULL, &g_ka);
	return run_pair(&lcfg, dst_none, src_keyed_dst_none) || rc;
}

/* ---- replay of a recorded handshake -------------------------------------- */

#define REC_MAX 4096

struct relay {
	int lfd;
	uint16_t upstream;
	uint8_t rec[2][REC_MAX]; /* client -> server bytes of the first two sockets */
	size_t nrec[2];
	pthread_t th;
};

static int tcp_connect(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Relays two sockets until both directions close, recording client -> server. */
static void *relay_thread(void *arg)
{
	struct relay *r = arg;
	int cfd[2] = {-1, -1}, ufd[2] = {-1, -1};
	struct pollfd p[4];
	uint8_t buf[65536];
	unsigned open = 0;

	for (unsigned i = 0; i < 2; i++) {
		struct pollfd lp = {.fd = r->lfd, .events = POLLIN};

		if (poll(&lp, 1, WAIT_MS) != 1)
			break;
		cfd[i] = accept(r->lfd, NULL, NULL);
		ufd[i] = tcp_connect(r->upstream);
		if (cfd[i] < 0 || ufd[i] < 0)
			break;
		open++;
		/* The data socket connects only after the control HELLO_ACK came back. */
		if (i == 0) {
			for (;;) {
				struct pollfd q[3] = {{.fd = cfd[0], .events = POLLIN},
						      {.fd = ufd[0], .events = POLLIN},
						      {.fd = r->lfd, .events = POLLIN}};
				ssize_t n;

				if (poll(q, 3, WAIT_MS) <= 0 || q[2].revents)
					break;
				if (q[0].revents) {
					n = read(cfd[0], buf, sizeof(buf));
					if (n <= 0)
						break;
					if (r->nrec[0] + (size_t)n <= REC_MAX) {
						memcpy(r->rec[0] + r->nrec[0], buf, (size_t)n);
						r->nrec[0] += (size_t)n;
					}
					if (write(ufd[0], buf, (size_t)n) != n)
						break;
				}
				if (q[1].revents) {
					n = read(ufd[0], buf, sizeof(buf));
					if (n <= 0 || write(cfd[0], buf, (size_t)n) != n)
						break;
				}
			}
		}
	}
	while (open == 2) {
		ssize_t n;
		int live = 0;

		for (unsigned i = 0; i < 2; i++) {
			p[2 * i] = (struct pollfd){.fd = cfd[i], .events = POLLIN};
			p[2 * i + 1] = (struct pollfd){.fd = ufd[i], .events = POLLIN};
		}
		if (poll(p, 4, WAIT_MS) <= 0)
			break;
		for (unsigned k = 0; k < 4; k++) {
			unsigned i = k / 2;
			int from = k & 1 ? ufd[i] : cfd[i], to = k & 1 ? cfd[i] : ufd[i];

			if (!p[k].revents)
				continue;
			live++;
			n = read(from, buf, sizeof(buf));
			if (n <= 0)
				goto out;
			if (!(k & 1) && r->nrec[i] + (size_t)n <= REC_MAX) {
				memcpy(r->rec[i] + r->nrec[i], buf, (size_t)n);
				r->nrec[i] += (size_t)n;
			}
			if (write(to, buf, (size_t)n) != n)
				goto out;
		}
		if (!live)
			break;
	}
out:
	for (unsigned i = 0; i < 2; i++) {
		if (cfd[i] >= 0)
			close(cfd[i]);
		if (ufd[i] >= 0)
			close(ufd[i]);
	}
	return NULL;
}

static bool read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, WAIT_MS) != 1)
			return false;
		n = read(fd, (uint8_t *)buf + got, len - got);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return true;
}

/* One frame: header and payload; returns the type, -1 on error. */
static int read_frame(int fd, uint8_t *buf, size_t cap, size_t *len)
{
	uint32_t plen;

	if (!read_full(fd, buf, RDMIG_WIRE_HDR_LEN))
		return -1;
	plen = rdmig_get_be32(buf + 8);
	if (plen > cap - RDMIG_WIRE_HDR_LEN || !read_full(fd, buf + RDMIG_WIRE_HDR_LEN, plen))
		return -1;
	*len = RDMIG_WIRE_HDR_LEN + plen;
	return buf[5];
}

/* The AUTH frames (type 3) recorded on the control socket, in order. */
static size_t auth_frames(const struct relay *r, const uint8_t **f, size_t *flen, size_t max)
{
	size_t off = RDMIG_WIRE_PDATA_LEN, n = 0;

	while (off + RDMIG_WIRE_HDR_LEN <= r->nrec[0] && n < max) {
		uint32_t plen = rdmig_get_be32(r->rec[0] + off + 8);

		if (off + RDMIG_WIRE_HDR_LEN + plen > r->nrec[0])
			break;
		if (r->rec[0][off + 5] == RDMIG_MSG_AUTH) {
			f[n] = r->rec[0] + off;
			flen[n++] = RDMIG_WIRE_HDR_LEN + plen;
		}
		off += RDMIG_WIRE_HDR_LEN + plen;
	}
	return n;
}

static void dst_replay(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t buf[64];
	uint16_t type;
	size_t len;
	int ret;

	(void)port;
	ret = rdmig_accept(l, WAIT_MS, &c, &e);
	if (check(!ret, "genuine session through the relay: %s", e.msg[0] ? e.msg : "ok")) {
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &e);
		if (!ret)
			ret = rdmig_ctrl_send(c, MSG_PING, "pong", 4, &e);
		check(!ret, "genuine session exchanged a message: %s", e.msg[0] ? e.msg : "ok");
	}
	rdmig_conn_destroy(c);
	c = NULL;
	memset(&g_spy.st, 0, sizeof(g_spy.st));
	g_spy.ran = false;
	rdmig_err_clear(&e);
	ret = rdmig_accept(l, WAIT_MS, &c, &e);
	check(ret == -EACCES && has(&e, "authentication failed: peer does not know the key"),
	      "replayed handshake refused (%d): %s", ret, e.msg);
	check_nothing_exposed(&g_spy);
	rdmig_conn_destroy(c);
}

static void src_replay(uint16_t port)
{
	static struct relay r;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	const uint8_t *f[4];
	size_t flen[4], nf, len;
	uint8_t buf[256];
	uint16_t type;
	int fd0 = -1, fd1 = -1, ret;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r.upstream = port;
	r.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r.lfd < 0 || bind(r.lfd, (struct sockaddr *)&a, sizeof(a)) || listen(r.lfd, 4) ||
	    getsockname(r.lfd, (struct sockaddr *)&a, &alen) ||
	    pthread_create(&r.th, NULL, relay_thread, &r)) {
		check(false, "relay setup: %s", strerror(errno));
		return;
	}
	g_scfg.port = ntohs(a.sin_port);
	ret = rdmig_connect(&g_scfg, &c, &e);
	if (!ret)
		ret = rdmig_ctrl_send(c, MSG_PING, "ping", 4, &e);
	if (!ret)
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &e);
	check(!ret, "genuine session through the relay: %s", e.msg[0] ? e.msg : "ok");
	rdmig_conn_destroy(c);
	pthread_join(r.th, NULL);
	close(r.lfd);
	nf = auth_frames(&r, f, flen, 4);
	if (!check(nf == 2 && r.nrec[1] >= RDMIG_WIRE_PDATA_LEN,
		   "recorded %zu AUTH frames of the source (expected 2), data HELLO %zu bytes", nf,
		   r.nrec[1]))
		return;

	/* Replay: same HELLOs, same client nonce, same proof, straight to the destination. */
	fd0 = tcp_connect(port);
	ret = fd0 >= 0 && write(fd0, r.rec[0], RDMIG_WIRE_PDATA_LEN) == RDMIG_WIRE_PDATA_LEN &&
	      read_full(fd0, buf, RDMIG_WIRE_PDATA_LEN);
	fd1 = ret ? tcp_connect(port) : -1;
	ret = ret && fd1 >= 0 &&
	      write(fd1, r.rec[1], RDMIG_WIRE_PDATA_LEN) == RDMIG_WIRE_PDATA_LEN &&
	      read_full(fd1, buf, RDMIG_WIRE_PDATA_LEN);
	if (check(ret, "replayed HELLOs accepted by the destination")) {
		int t;

		ret = write(fd0, f[0], flen[0]) == (ssize_t)flen[0];
		t = ret ? read_frame(fd0, buf, sizeof(buf), &len) : -1;
		check(t == RDMIG_MSG_AUTH && len == RDMIG_WIRE_HDR_LEN + 4 + RDMIG_AUTH_NONCE_LEN,
		      "destination answered the replayed nonce with a fresh challenge");
		ret = t == RDMIG_MSG_AUTH && write(fd0, f[1], flen[1]) == (ssize_t)flen[1];
		t = ret ? read_frame(fd0, buf, sizeof(buf), &len) : -1;
		check(t == RDMIG_MSG_AUTH && len >= RDMIG_WIRE_HDR_LEN + 5 &&
			  buf[RDMIG_WIRE_HDR_LEN] == RDMIG_AUTH_SERVER_PROOF &&
			  buf[RDMIG_WIRE_HDR_LEN + 4] == RDMIG_AUTH_REJECTED,
		      "replayed proof rejected by the destination");
		t = read_frame(fd0, buf, sizeof(buf), &len);
		check(t != RDMIG_MSG_LAYOUT, "no LAYOUT (no rkey) after the replay");
	}
	if (fd0 >= 0)
		close(fd0);
	if (fd1 >= 0)
		close(fd1);
}

static int t_replay(void)
{
	struct rdmig_xport_cfg lcfg;

	cfg_init(&lcfg, &g_spy, &g_ka);
	cfg_init(&g_scfg, NULL, &g_ka);
	return run_pair(&lcfg, dst_replay, src_replay);
}

/* ---- key files ----------------------------------------------------------- */

static int t_keyfile(void)
{
	struct rdmig_auth_key k;
	struct rdmig_err e = RDMIG_ERR_INIT;
	char missing[160];
	int ret;

	g_role = "key";
	ret = rdmig_auth_key_load(g_key_open, &k, &e);
	check(ret == -EACCES && has(&e, "mode 0644") && has(&e, "chmod 600") && has(&e, g_key_open),
	      "mode 0644 refused: %s", e.msg);
	rdmig_err_clear(&e);
	ret = rdmig_auth_key_load(g_key_short, &k, &e);
	check(ret == -EINVAL && has(&e, "at least 16"), "short key refused: %s", e.msg);
	rdmig_err_clear(&e);
	snprintf(missing, sizeof(missing), "%s/none.key", g_dir);
	ret = rdmig_auth_key_load(missing, &k, &e);
	check(ret == -ENOENT && has(&e, missing), "missing file: %s", e.msg);
	rdmig_err_clear(&e);
	ret = rdmig_auth_key_load(g_key_a, &k, &e);
	check(!ret && k.len == 33, "0600 key loads, trailing newline dropped (%zu bytes)", k.len);
	setenv(RDMIG_KEY_FILE_ENV, g_key_b, 1);
	check(!strcmp(rdmig_auth_key_path(NULL), g_key_b) &&
		  !strcmp(rdmig_auth_key_path(g_key_a), g_key_a),
	      "RDMIG_KEY_FILE is the default, an option overrides it");
	unsetenv(RDMIG_KEY_FILE_ENV);
	check(rdmig_auth_key_path(NULL) == NULL, "no option, no environment: no key");
	rdmig_auth_key_wipe(&k);
	return atomic_load(&g_failed) ? 1 : 0;
}

/* ---- revocation ---------------------------------------------------------- */

static bool g_cancel;

/*
 * Round 0 lands; then the destination revokes (after commit, or on cancel
 * mid-migration as engine/dest.c does) and tells the source, which writes
 * round 1 with its old layout: the WRITE frame must be refused, the
 * connection fail and no byte of round 1 land.
 */
static void dst_revoke(struct rdmig_listener *l, uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_stats st;
	struct rdmig_conn *c = NULL;
	struct rdmig_fence f;
	uint8_t *mem = map_region();
	uint8_t step = g_cancel ? 2 : 1;
	uint64_t before;
	int ret;

	(void)port;
	if (!check(!rdmig_accept(l, WAIT_MS, &c, &e), "accept: %s", e.msg[0] ? e.msg : "ok"))
		goto out;
	if (!dst_transfer(c, mem, 0))
		goto out;
	rdmig_revoke(c);
	rdmig_xport_stats(c, &st);
	before = st.bytes_received;
	check(st.regions_remote == 0 && st.deregs_total == st.regs_total,
	      "revoked after %s: regions_remote %llu, %llu of %llu registrations undone",
	      g_cancel ? "cancel" : "commit", (unsigned long long)st.regions_remote,
	      (unsigned long long)st.deregs_total, (unsigned long long)st.regs_total);
	if (!check(!rdmig_ctrl_send(c, MSG_GO, &step, 1, &e), "tell the source: %s",
		   e.msg[0] ? e.msg : "ok"))
		goto out;
	ret = rdmig_wait_fence(c, 0, WAIT_MS, &f, &e);
	rdmig_xport_stats(c, &st);
	check(ret && rdmig_conn_failed(c, NULL), "stale WRITE frame refused (%d): %s", ret, e.msg);
	check(st.bytes_received == before && mismatches(mem, REGION_LEN, 0) == 0,
	      "no byte landed after revoke (%llu bytes received before, %llu after)",
	      (unsigned long long)before, (unsigned long long)st.bytes_received);
out:
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static void src_revoke(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct rdmig_run r = {.len = REGION_LEN};
	uint8_t *mem = map_region();
	uint8_t step = 0;
	uint16_t type;
	size_t len;
	uint32_t id;
	int ret;

	fill(mem, REGION_LEN, 0);
	g_scfg.port = port;
	ret = rdmig_connect(&g_scfg, &c, &e);
	if (!ret)
		ret = rdmig_recv_layout(c, WAIT_MS, &e);
	if (!ret)
		ret = src_write(c, mem, &e);
	if (!check(!ret, "round 0 written: %s", e.msg[0] ? e.msg : "ok"))
		goto out;
	ret = rdmig_ctrl_recv(c, &type, &step, 1, &len, WAIT_MS, &e);
	if (!check(!ret && type == MSG_GO, "destination revoked: %s", e.msg[0] ? e.msg : "ok"))
		goto out;
	/* A stale source: writes again with the layout it was given before. */
	fill(mem, REGION_LEN, 1);
	rdmig_reg(c, "src1", mem, REGION_LEN, 0, &id, &e);
	r.lreg = id;
	r.rreg = rdmig_remote_get(c, 0)->id;
	ret = rdmig_write(c, 0, &r, 1, &e);
	if (!ret)
		ret = rdmig_fence(c, 0, 2, &e);
	/* The local send may succeed; the destination's verdict is what counts. */
	printf("[src] stale write after revoke returned %d%s%s\n", ret, ret ? ": " : "",
	       ret ? e.msg : "");
out:
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static int t_revoke(bool cancel)
{
	struct rdmig_xport_cfg lcfg;

	g_cancel = cancel;
	cfg_init(&lcfg, NULL, &g_ka);
	cfg_init(&g_scfg, NULL, &g_ka);
	return run_pair(&lcfg, dst_revoke, src_revoke);
}

int main(int argc, char **argv)
{
	const char *mode = argc == 2 ? argv[1] : "";
	int rc;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	make_keys();
	load_key(g_key_a, &g_ka);
	load_key(g_key_b, &g_kb);
	if (!strcmp(mode, "good"))
		rc = t_good();
	else if (!strcmp(mode, "wrong"))
		rc = t_wrong();
	else if (!strcmp(mode, "nokey"))
		rc = t_nokey();
	else if (!strcmp(mode, "replay"))
		rc = t_replay();
	else if (!strcmp(mode, "keyfile"))
		rc = t_keyfile();
	else if (!strcmp(mode, "revoke-commit"))
		rc = t_revoke(false);
	else if (!strcmp(mode, "revoke-cancel"))
		rc = t_revoke(true);
	else {
		fprintf(stderr, "usage: auth_check good|wrong|nokey|replay|keyfile|"
				"revoke-commit|revoke-cancel\n");
		remove_keys();
		return 2;
	}
	remove_keys();
	rc = rc || atomic_load(&g_failed);
	printf("auth_check %s: %s\n", mode, rc ? "FAIL" : "PASS");
	return rc ? 1 : 0;
}
