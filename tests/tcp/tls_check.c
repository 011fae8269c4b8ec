/* SPDX-License-Identifier: MIT */
/*
 * The tcp backend over TLS (cfg.tls): a transfer with the right key lands
 * intact, a wrong key and a TLS / plain mismatch fail on both sides with a
 * clear message, and what crosses the socket does not contain the pages.
 *
 * usage: tls_check good|wrong|mismatch|spy
 *
 * The parent is the destination (listener), a forked child the source. In
 * `spy` the source connects through a relay thread that records every byte
 * it forwards; a marker written all over the source's region must show up
 * in that record without TLS and must not with it.
 */
#include <errno.h>
#include <fcntl.h>
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

#include "auth.h"
#include "rdmig/transport.h"

#define WAIT_MS	   10000
#define REGION_LEN (8u << 20)
#define NCHAN	   2
#define MARKER	   "rdmig-tls-check plaintext marker, must not leak:"
#define CHUNK	   64 /* MARKER (48 bytes) + 16 hex digits */

static const char *g_role = "main";
static atomic_int g_failed;
static struct rdmig_auth_key g_ka, g_kb;
static struct rdmig_xport_cfg g_scfg; /* the source's config, set before fork */

static bool check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s %s: ", ok ? "ok  " : "FAIL", g_role);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		atomic_store(&g_failed, 1);
	return ok;
}

static bool has(const char *s, const char *needle)
{
	return strstr(s, needle) != NULL;
}

static void make_key(struct rdmig_auth_key *k, char fill)
{
	memset(k, 0, sizeof(*k));
	memset(k->key, fill, 32);
	k->len = 32;
}

static void cfg_init(struct rdmig_xport_cfg *cfg, bool tls, const struct rdmig_auth_key *k)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = RDMIG_BACKEND_TCP;
	cfg->host = "127.0.0.1";
	cfg->channels = NCHAN;
	cfg->connect_timeout_ms = WAIT_MS / 2;
	if (k) {
		cfg->auth = rdmig_auth_psk;
		cfg->auth_ctx = (void *)k;
	}
	cfg->tls = tls;
	if (tls && k) {
		cfg->tls_key = k->key;
		cfg->tls_key_len = k->len;
	}
	rdmig_xport_cfg_defaults(cfg);
}

static void fill(uint8_t *p)
{
	char chunk[CHUNK + 1];

	for (size_t i = 0; i < REGION_LEN / CHUNK; i++) {
		snprintf(chunk, sizeof(chunk), "%s%016zx", MARKER, i);
		memcpy(p + i * CHUNK, chunk, CHUNK);
	}
}

static bool intact(const uint8_t *p)
{
	char chunk[CHUNK + 1];

	for (size_t i = 0; i < REGION_LEN / CHUNK; i++) {
		snprintf(chunk, sizeof(chunk), "%s%016zx", MARKER, i);
		if (memcmp(p + i * CHUNK, chunk, CHUNK))
			return false;
	}
	return true;
}

static uint8_t *map_region(void)
{
	void *p =
	    mmap(NULL, REGION_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

typedef void (*dst_fn)(struct rdmig_listener *l);
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
			dst(l);
	}
	close(pfd[1]);
	rdmig_listener_destroy(l);
	for (int i = 0; i < WAIT_MS * 3 / 50; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
		usleep(50 * 1000);
	}
	check(false, "source process did not finish: killing it");
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return 1;
}

/* ---- a transfer over every channel ---------------------------------------- */

struct fence_arg {
	struct rdmig_conn *c;
	unsigned chan;
	int ret;
	struct rdmig_err e;
};

static void *fence_thread(void *arg)
{
	struct fence_arg *a = arg;
	struct rdmig_fence f;

	a->ret = rdmig_wait_fence(a->c, a->chan, WAIT_MS, &f, &a->e);
	if (!a->ret && f.bytes != REGION_LEN / NCHAN)
		a->ret = -EPROTO;
	return NULL;
}

static void dst_transfer(struct rdmig_listener *l)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct fence_arg fa[NCHAN];
	pthread_t th[NCHAN];
	uint8_t *mem = map_region();
	char msg[64] = "";
	uint16_t type = 0;
	size_t len = 0;
	uint32_t id;
	bool ok = true;

	if (!check(!rdmig_accept(l, WAIT_MS, &c, &e), "accept: %s", e.msg[0] ? e.msg : "ok"))
		goto out;
	if (!check(!rdmig_reg(c, "ram", mem, REGION_LEN, RDMIG_REG_REMOTE_WRITE, &id, &e) &&
		       !rdmig_expose(c, &e),
		   "register and expose: %s", e.msg[0] ? e.msg : "ok"))
		goto out;
	for (unsigned i = 0; i < NCHAN; i++) {
		fa[i] = (struct fence_arg){.c = c, .chan = i, .e = RDMIG_ERR_INIT};
		pthread_create(&th[i], NULL, fence_thread, &fa[i]);
	}
	for (unsigned i = 0; i < NCHAN; i++) {
		pthread_join(th[i], NULL);
		ok &= check(!fa[i].ret, "fence on channel %u: %s", i,
			    fa[i].e.msg[0] ? fa[i].e.msg : "ok");
	}
	if (ok)
		check(intact(mem), "%u bytes landed intact", REGION_LEN);
	check(!rdmig_ctrl_recv(c, &type, msg, sizeof(msg) - 1, &len, WAIT_MS, &e) && type == 7 &&
		  len == 5 && !memcmp(msg, "done!", 5),
	      "control message over the same connection: %s", e.msg[0] ? e.msg : "ok");
out:
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

/* Connect to `port`, write the whole region (half per channel), fence, say done. */
static void src_transfer(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t *mem = map_region();
	uint32_t id;
	int ret;

	fill(mem);
	g_scfg.port = port;
	if (check(!rdmig_connect(&g_scfg, &c, &e), "connect: %s", e.msg[0] ? e.msg : "ok")) {
		ret = rdmig_recv_layout(c, WAIT_MS, &e);
		if (!ret)
			ret = rdmig_reg(c, "src", mem, REGION_LEN, 0, &id, &e);
		for (unsigned i = 0; i < NCHAN && !ret; i++) {
			struct rdmig_run r = {.lreg = id,
					      .rreg = rdmig_remote_get(c, 0)->id,
					      .loff = (uint64_t)i * (REGION_LEN / NCHAN),
					      .roff = (uint64_t)i * (REGION_LEN / NCHAN),
					      .len = REGION_LEN / NCHAN};

			ret = rdmig_write(c, i, &r, 1, &e);
			if (!ret)
				ret = rdmig_fence(c, i, 1, &e);
		}
		if (!ret)
			ret = rdmig_ctrl_send(c, 7, "done!", 5, &e);
		check(!ret, "write %u bytes over %u channels and fence: %s", REGION_LEN, NCHAN,
		      e.msg[0] ? e.msg : "ok");
	}
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static int t_good(void)
{
	struct rdmig_xport_cfg lcfg;

	make_key(&g_ka, 'a');
	cfg_init(&lcfg, true, &g_ka);
	cfg_init(&g_scfg, true, &g_ka);
	return run_pair(&lcfg, dst_transfer, src_transfer) || atomic_load(&g_failed);
}

/* ---- failures: the listener accepts nothing, the connector says why -------- */

static const char *g_want_src; /* what the source's error must say */
static const char *g_want_dst; /* what the listener's log must say */

/* The listener's side: no connection, and its log names the cause. */
static void dst_refuses(struct rdmig_listener *l)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	char path[] = "/tmp/tls_check_log_XXXXXX", log[8192] = "";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO), ret;
	ssize_t n;

	if (fd < 0 || saved < 0) {
		check(false, "temporary log file: %s", strerror(errno));
		return;
	}
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	ret = rdmig_accept(l, WAIT_MS / 2 + 2000, &c, &e);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, log, sizeof(log) - 1, 0);
	log[n > 0 ? n : 0] = 0;
	close(fd);
	unlink(path);
	check(ret == -ETIMEDOUT && !c, "no connection accepted (%d): %s", ret, e.msg);
	check(has(log, g_want_dst), "listener log says '%s': %s", g_want_dst, log);
	rdmig_conn_destroy(c);
}

static void src_refused(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct timespec t0, t1;
	long ms;
	int ret;

	g_scfg.port = port;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = rdmig_connect(&g_scfg, &c, &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	check(ret < 0 && !c, "connect refused (%d) after %ld ms: %s", ret, ms, e.msg);
	check(ms < g_scfg.connect_timeout_ms + 500, "within the connect timeout");
	check(has(e.msg, g_want_src), "the error says '%s'", g_want_src);
	rdmig_conn_destroy(c);
}

static int t_wrong(void)
{
	struct rdmig_xport_cfg lcfg;

	make_key(&g_ka, 'a');
	make_key(&g_kb, 'b');
	cfg_init(&lcfg, true, &g_ka);
	cfg_init(&g_scfg, true, &g_kb);
	g_want_src = "same --key-file";
	g_want_dst = "TLS handshake failed";
	return run_pair(&lcfg, dst_refuses, src_refused) || atomic_load(&g_failed);
}

static int t_mismatch(void)
{
	struct rdmig_xport_cfg lcfg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	int ret;

	make_key(&g_ka, 'a');
	/* TLS connector, plain listener. */
	cfg_init(&lcfg, false, &g_ka);
	cfg_init(&g_scfg, true, &g_ka);
	g_want_src = "does not run with --tls";
	g_want_dst = "the peer speaks TLS (--tls) and this listener does not";
	ret = run_pair(&lcfg, dst_refuses, src_refused);
	/* Plain connector, TLS listener. */
	cfg_init(&lcfg, true, &g_ka);
	cfg_init(&g_scfg, false, &g_ka);
	g_want_src = "this listener requires TLS";
	g_want_dst = "does not speak TLS";
	ret |= run_pair(&lcfg, dst_refuses, src_refused);
	/* Configuration errors. */
	g_role = "main";
	cfg_init(&lcfg, true, NULL);
	check(rdmig_listen(&lcfg, &(struct rdmig_listener *){NULL}, &e) == -EINVAL &&
		  has(e.msg, "--key-file"),
	      "--tls without a key refused: %s", e.msg);
	cfg_init(&lcfg, true, &g_ka);
	lcfg.backend = RDMIG_BACKEND_RDMA;
	e = (struct rdmig_err)RDMIG_ERR_INIT;
	check(rdmig_listen(&lcfg, &(struct rdmig_listener *){NULL}, &e) == -EINVAL &&
		  has(e.msg, "does not encrypt RoCE"),
	      "--tls on rdma refused: %s", e.msg);
	return ret || atomic_load(&g_failed);
}

/* ---- what crosses the socket ---------------------------------------------- */

#define RELAY_MAX_PAIRS 8
#define RECORD_MAX	(3 * REGION_LEN)

struct relay {
	int lfd;
	uint16_t port, upstream;
	atomic_bool stop;
	int fd[RELAY_MAX_PAIRS][2]; /* [client, upstream] */
	atomic_uint npairs;
	atomic_uint closed; /* sockets at end of file */
	uint8_t *rec;
	size_t nrec;
};

static int tcp_connect_lo(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Forward both ways between each client and its upstream socket, recording everything. */
static void *relay_thread(void *arg)
{
	struct relay *r = arg;
	static uint8_t buf[1 << 16];

	while (!atomic_load(&r->stop)) {
		struct pollfd p[1 + 2 * RELAY_MAX_PAIRS];
		unsigned np = 0;

		p[np++] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
		for (unsigned i = 0; i < r->npairs; i++)
			for (int s = 0; s < 2; s++)
				p[np++] = (struct pollfd){.fd = r->fd[i][s], .events = POLLIN};
		if (poll(p, np, 100) <= 0)
			continue;
		for (unsigned i = 0; i < r->npairs; i++) {
			for (int s = 0; s < 2; s++) {
				struct pollfd *q = &p[1 + 2 * i + (unsigned)s];
				ssize_t n;

				if (q->fd < 0 || !q->revents)
					continue;
				n = recv(q->fd, buf, sizeof(buf), 0);
				if (n <= 0) {
					shutdown(r->fd[i][!s], SHUT_WR);
					r->fd[i][s] = -r->fd[i][s] - 2; /* stop polling it */
					atomic_fetch_add(&r->closed, 1);
					continue;
				}
				if (r->nrec + (size_t)n <= RECORD_MAX) {
					memcpy(r->rec + r->nrec, buf, (size_t)n);
					r->nrec += (size_t)n;
				}
				write_all(r->fd[i][!s], buf, (size_t)n);
			}
		}
		if ((p[0].revents & POLLIN) && r->npairs < RELAY_MAX_PAIRS) {
			int cfd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
			int ufd = cfd >= 0 ? tcp_connect_lo(r->upstream) : -1;

			if (cfd >= 0 && ufd >= 0) {
				r->fd[r->npairs][0] = cfd;
				r->fd[r->npairs][1] = ufd;
				r->npairs++;
			} else if (cfd >= 0) {
				close(cfd);
			}
		}
	}
	return NULL;
}

static int relay_start(struct relay *r, uint16_t upstream, pthread_t *th)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);

	memset(r, 0, sizeof(*r));
	r->upstream = upstream;
	r->rec = malloc(RECORD_MAX);
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!r->rec || r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(r->lfd, 16) || getsockname(r->lfd, (struct sockaddr *)&a, &sl))
		return -1;
	r->port = ntohs(a.sin_port);
	return pthread_create(th, NULL, relay_thread, r) ? -1 : 0;
}

/* Every socket at end of file (the destination closed too), or WAIT_MS passed. */
static bool relay_done(struct relay *r)
{
	unsigned n = atomic_load(&r->npairs);

	return n && atomic_load(&r->closed) == 2 * n;
}

static void relay_stop(struct relay *r, pthread_t th)
{
	for (int i = 0; i < WAIT_MS / 10 && !relay_done(r); i++)
		usleep(10 * 1000);
	atomic_store(&r->stop, true);
	pthread_join(th, NULL);
	for (unsigned i = 0; i < r->npairs; i++)
		for (int s = 0; s < 2; s++)
			close(r->fd[i][s] >= 0 ? r->fd[i][s] : -r->fd[i][s] - 2);
	close(r->lfd);
}

static bool g_spy_tls;

static void src_spied(uint16_t port)
{
	static struct relay r;
	pthread_t th;
	bool seen;

	if (!check(!relay_start(&r, port, &th), "relay listening"))
		return;
	src_transfer(r.port);
	relay_stop(&r, th);
	seen = memmem(r.rec, r.nrec, MARKER, strlen(MARKER)) != NULL;
	check(r.nrec > REGION_LEN, "the relay saw %zu bytes", r.nrec);
	if (g_spy_tls)
		check(!seen, "with --tls the page contents do not appear on the wire");
	else
		check(seen, "without --tls they do (the relay sees plaintext)");
	free(r.rec);
}

static int t_spy(void)
{
	struct rdmig_xport_cfg lcfg;
	int ret;

	make_key(&g_ka, 'a');
	g_spy_tls = false;
	cfg_init(&lcfg, false, &g_ka);
	cfg_init(&g_scfg, false, &g_ka);
	ret = run_pair(&lcfg, dst_transfer, src_spied);
	g_spy_tls = true;
	cfg_init(&lcfg, true, &g_ka);
	cfg_init(&g_scfg, true, &g_ka);
	ret |= run_pair(&lcfg, dst_transfer, src_spied);
	return ret || atomic_load(&g_failed);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int ret;

	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(mode, "good"))
		ret = t_good();
	else if (!strcmp(mode, "wrong"))
		ret = t_wrong();
	else if (!strcmp(mode, "mismatch"))
		ret = t_mismatch();
	else if (!strcmp(mode, "spy"))
		ret = t_spy();
	else {
		fprintf(stderr, "usage: tls_check good|wrong|mismatch|spy\n");
		return 2;
	}
	printf("%s\n", ret ? "FAILED" : "PASSED");
	return ret ? 1 : 0;
}
