/* SPDX-License-Identifier: MIT */
/*
 * `rdmig qemu src|dst|migrate` as child processes, and a TCP proxy in front
 * of a destination relay that can hold up or cut the control session.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "qemu_harness.h"

#define LISTEN_MS 15000 /* the destination relay says "listening PORT" */
#define MAX_ARGS  40

/* Append the NULL-terminated `list` (may be NULL); false when argv is full. */
static bool add_args(const char **argv, int *n, const char *const *list)
{
	for (; list && *list; list++) {
		if (*n == MAX_ARGS)
			return false;
		argv[(*n)++] = *list;
	}
	return true;
}

/*
 * argv = "RDMIG qemu SUB OPT1 VAL1 OPT2 VAL2 --backend B [--key-file K]
 * MORE... EXTRA..." (more and extra NULL-terminated, may be NULL).
 */
static int relay_argv(const char **argv, const struct qh_relay *r, const char *sub,
		      const char *const pairs[4], const char *const *more, const char *const *extra,
		      const char *name, struct rdmig_err *err)
{
	const char *const head[] = {r->rdmig, "qemu",	sub,	     pairs[0],	 pairs[1],
				    pairs[2], pairs[3], "--backend", r->backend, NULL};
	const char *const key[] = {"--key-file", r->key_file, NULL};
	int n = 0;

	if (!add_args(argv, &n, head) || !add_args(argv, &n, r->key_file ? key : NULL) ||
	    !add_args(argv, &n, more) || !add_args(argv, &n, extra))
		return rdmig_seterr(err, -E2BIG, "%s: more than %d arguments", name, MAX_ARGS);
	argv[n] = NULL;
	return 0;
}

/* Ready to be used, as the child's own output or files say. */
typedef bool (*ready_fn)(struct qh_proc *p, const void *arg);

/* Spawn argv and wait until `ready` says so; `what` names what was awaited. */
static int spawn_ready(struct qh_proc *p, const char *name, const char *const *argv, bool split,
		       ready_fn ready, const void *arg, const char *what, struct rdmig_err *err)
{
	int64_t deadline;
	int ret = qh_spawn(p, name, argv, split, err);

	if (ret)
		return ret;
	deadline = rdmig_deadline_ms(LISTEN_MS);
	while (!ready(p, arg)) {
		if (qh_exited(p)) {
			qh_show_log(p);
			return rdmig_seterr(err, -ECHILD, "%s exited at start-up (status %d)", name,
					    p->status);
		}
		if (rdmig_ms_left(deadline) == 0) {
			qh_show_log(p);
			return rdmig_seterr(err, -ETIMEDOUT, "%s: no %s within %d s", name, what,
					    LISTEN_MS / 1000);
		}
		rdmig_sleep_ms(20);
	}
	return 0;
}

/* Its stdout has one machine-readable line, "listening PORT". */
static bool says_listening(struct qh_proc *p, const void *arg)
{
	unsigned *port = (unsigned *)arg;
	char *out = qh_read_text(p->out);
	bool found = out && sscanf(out, "listening %u", port) == 1 && *port;

	free(out);
	return found;
}

static bool socket_there(struct qh_proc *p, const void *arg)
{
	struct stat st;

	(void)p;
	return !stat(arg, &st) && S_ISSOCK(st.st_mode);
}

int qh_relay_dst_spawn(struct qh_proc *p, const char *name, const struct qh_relay *r,
		       const char *incoming, const char *qmp, const char *const *extra,
		       unsigned *port, struct rdmig_err *err)
{
	char inc[QH_PATH + 8], listen[300];
	const char *argv[MAX_ARGS + 1];
	const char *const with_qmp[] = {"--qmp", qmp, NULL};
	int ret;

	*port = 0;
	snprintf(inc, sizeof(inc), "unix:%s", incoming);
	snprintf(listen, sizeof(listen), "%s:0", r->host);
	ret = relay_argv(argv, r, "dst",
			 (const char *const[4]){"--listen", listen, "--qemu-incoming", inc},
			 qmp ? with_qmp : NULL, extra, name, err);
	if (ret)
		return ret;
	return spawn_ready(p, name, argv, true, says_listening, port, "\"listening\" line", err);
}

int qh_relay_dst_start(struct qh_proc *p, const char *name, const struct qh_relay *r,
		       const struct qh_vm *dst, bool with_qmp, unsigned *port,
		       struct rdmig_err *err)
{
	return qh_relay_dst_spawn(p, name, r, dst->incoming, with_qmp ? dst->qmp : NULL, NULL, port,
				  err);
}

int qh_relay_src_start(struct qh_proc *p, const char *name, const struct qh_relay *r, unsigned port,
		       const char *sock, const char *const *extra, struct rdmig_err *err)
{
	const char *argv[MAX_ARGS + 1];
	char dst[300];
	int ret;

	snprintf(dst, sizeof(dst), "%s:%u", r->host, port);
	ret = relay_argv(argv, r, "src", (const char *const[4]){"--connect", dst, "--socket", sock},
			 NULL, extra, name, err);
	if (ret)
		return ret;
	unlink(sock);
	return spawn_ready(p, name, argv, false, socket_there, sock, "socket", err);
}

int qh_relay_migrate_start(struct qh_proc *p, const char *name, const struct qh_relay *r,
			   const char *src_qmp, unsigned port, const char *const *extra,
			   struct rdmig_err *err)
{
	static const char *const json[] = {"--json", NULL};
	const char *argv[MAX_ARGS + 1];
	char dst[300];
	int ret;

	snprintf(dst, sizeof(dst), "%s:%u", r->host, port);
	ret = relay_argv(argv, r, "migrate",
			 (const char *const[4]){"--src-qmp", src_qmp, "--dst", dst}, json, extra,
			 name, err);
	if (ret)
		return ret;
	return qh_spawn(p, name, argv, true, err);
}

/* ---- the proxy ------------------------------------------------------------------ */

#define PROXY_PAIRS 32
#define PROXY_BUF   (64 * 1024)
/* The HELLO of a control session as relay_msg.c encodes it (JSON_COMPACT). */
#define CONTROL_HELLO "\"kind\":\"control\""

/* One direction of a pair: bytes read from `from`, not yet written to `to`. */
struct proxy_dir {
	int from, to;
	size_t len, off;
	bool eof;
	char buf[PROXY_BUF];
};

struct proxy_pair {
	bool used, control;
	struct proxy_dir d[2]; /* 0: client -> relay, 1: relay -> client */
};

struct qh_proxy {
	int lfd;
	uint16_t upstream, port;
	_Atomic int mode;
	_Atomic bool stop;
	_Atomic unsigned controls;
	pthread_t thread;
	bool started;
	struct proxy_pair pairs[PROXY_PAIRS];
};

static int tcp_connect_local(uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void pair_close(struct proxy_pair *pp)
{
	close(pp->d[0].from);
	close(pp->d[0].to);
	pp->used = false;
}

static void proxy_accept(struct qh_proxy *px)
{
	int c = accept4(px->lfd, NULL, NULL, SOCK_CLOEXEC), u;

	if (c < 0)
		return;
	if (atomic_load(&px->mode) == QH_PROXY_CUT_CONTROL) {
		close(c); /* the relay is out of reach from now on */
		return;
	}
	u = tcp_connect_local(px->upstream);
	for (int i = 0; u >= 0 && i < PROXY_PAIRS; i++) {
		struct proxy_pair *pp = &px->pairs[i];

		if (pp->used)
			continue;
		memset(pp, 0, sizeof(*pp));
		pp->used = true;
		pp->d[0].from = pp->d[1].to = c;
		pp->d[0].to = pp->d[1].from = u;
		return;
	}
	close(c);
	if (u >= 0)
		close(u);
}

/* Move what `revents` allows in direction d; false when the pair is done. */
static bool dir_step(struct qh_proxy *px, struct proxy_pair *pp, int k, short rin, short rout)
{
	struct proxy_dir *d = &pp->d[k];

	if (d->len == d->off && !d->eof && (rin & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t r = recv(d->from, d->buf, sizeof(d->buf), MSG_DONTWAIT);

		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		if (r <= 0) {
			d->eof = true;
			shutdown(d->to, SHUT_WR);
			return r == 0;
		}
		d->len = (size_t)r;
		d->off = 0;
		if (k == 0 && !pp->control &&
		    memmem(d->buf, d->len, CONTROL_HELLO, strlen(CONTROL_HELLO))) {
			pp->control = true;
			atomic_fetch_add(&px->controls, 1);
		}
	}
	if (d->len > d->off && (rout & POLLOUT)) {
		ssize_t w =
		    send(d->to, d->buf + d->off, d->len - d->off, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		if (w > 0)
			d->off += (size_t)w;
		if (d->off == d->len)
			d->len = d->off = 0;
	}
	return true;
}

static void *proxy_thread(void *arg)
{
	struct qh_proxy *px = arg;

	while (!atomic_load(&px->stop)) {
		struct pollfd pf[1 + 2 * PROXY_PAIRS];
		int idx[PROXY_PAIRS];
		int mode = atomic_load(&px->mode);
		nfds_t n = 1;

		pf[0] = (struct pollfd){.fd = px->lfd, .events = POLLIN};
		for (int i = 0; i < PROXY_PAIRS; i++) {
			struct proxy_pair *pp = &px->pairs[i];

			idx[i] = -1;
			if (!pp->used)
				continue;
			if (pp->control && mode == QH_PROXY_CUT_CONTROL) {
				pair_close(pp);
				continue;
			}
			if (pp->control && mode == QH_PROXY_STALL_CONTROL)
				continue; /* nothing moves, nothing is noticed */
			idx[i] = (int)n;
			for (int k = 0; k < 2; k++) {
				struct proxy_dir *d = &pp->d[k];

				pf[n].fd = d->from;
				pf[n].events = d->len == d->off && !d->eof ? POLLIN : 0;
				if (pp->d[1 - k].len > pp->d[1 - k].off)
					pf[n].events |= POLLOUT;
				n++;
			}
		}
		if (poll(pf, n, 50) <= 0)
			continue;
		if (pf[0].revents & POLLIN)
			proxy_accept(px);
		for (int i = 0; i < PROXY_PAIRS; i++) {
			struct proxy_pair *pp = &px->pairs[i];
			int a = idx[i];
			bool ok;

			if (a < 0 || !pp->used)
				continue;
			/* pf[a] is the client's socket, pf[a + 1] the relay's. */
			ok = dir_step(px, pp, 0, pf[a].revents, pf[a + 1].revents) &&
			     dir_step(px, pp, 1, pf[a + 1].revents, pf[a].revents);
			if (!ok || (pp->d[0].eof && pp->d[1].eof && !pp->d[0].len && !pp->d[1].len))
				pair_close(pp);
		}
	}
	return NULL;
}

int qh_proxy_start(uint16_t upstream, struct qh_proxy **out, struct rdmig_err *err)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	struct qh_proxy *px = calloc(1, sizeof(*px));
	int ret;

	*out = NULL;
	if (!px)
		return rdmig_seterr(err, -ENOMEM, "proxy: out of memory");
	px->upstream = upstream;
	px->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (px->lfd < 0 || bind(px->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(px->lfd, 16) || getsockname(px->lfd, (struct sockaddr *)&sa, &sl)) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "proxy: listen on 127.0.0.1");
		goto out_free;
	}
	px->port = ntohs(sa.sin_port);
	ret = -pthread_create(&px->thread, NULL, proxy_thread, px);
	if (ret) {
		rdmig_seterr_errno(err, ret, "proxy: thread");
		goto out_free;
	}
	px->started = true;
	*out = px;
	return 0;

out_free:
	if (px->lfd >= 0)
		close(px->lfd);
	free(px);
	return ret;
}

uint16_t qh_proxy_port(const struct qh_proxy *px)
{
	return px->port;
}

void qh_proxy_set(struct qh_proxy *px, enum qh_proxy_mode mode)
{
	atomic_store(&px->mode, (int)mode);
}

unsigned qh_proxy_controls(struct qh_proxy *px)
{
	return atomic_load(&px->controls);
}

void qh_proxy_stop(struct qh_proxy *px)
{
	if (!px)
		return;
	atomic_store(&px->stop, true);
	if (px->started)
		pthread_join(px->thread, NULL);
	for (int i = 0; i < PROXY_PAIRS; i++)
		if (px->pairs[i].used)
			pair_close(&px->pairs[i]);
	close(px->lfd);
	free(px);
}
