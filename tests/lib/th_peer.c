/* SPDX-License-Identifier: MIT */
#include "th_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "th_check.h"
#include "th_sock.h"

extern char **environ;

static char **g_argv;	     /* this process's arguments, for th_split() */
static char g_peer_role[32]; /* "" in a parent */
static int g_peer_seq;	     /* > 0: started by the n-th th_split() of the parent */
static int g_peer_fd = -1;   /* a peer's end of the channel */
static int g_splits;	     /* th_split() calls so far */

void th_peer_init_(int argc, char **argv)
{
	const char *peer = getenv(TH_ENV_PEER), *fd = getenv(TH_ENV_PEER_FD);
	const char *colon;
	char *end;
	long v;

	(void)argc;
	g_argv = argv;
	if (peer && (colon = strrchr(peer, ':'))) {
		snprintf(g_peer_role, sizeof(g_peer_role), "%.*s", (int)(colon - peer), peer);
		g_peer_seq = atoi(colon + 1);
	}
	if (fd) {
		errno = 0;
		v = strtol(fd, &end, 10);
		if (!errno && !*end && v >= 0 && fcntl((int)v, F_GETFD) >= 0) {
			g_peer_fd = (int)v;
			/* Ours alone: not for programs this peer runs in turn. */
			fcntl(g_peer_fd, F_SETFD, FD_CLOEXEC);
		}
	}
	unsetenv(TH_ENV_PEER);
	unsetenv(TH_ENV_PEER_FD);
}

const char *th_peer_role(void)
{
	return g_peer_role[0] ? g_peer_role : NULL;
}

int th_peer_fd(void)
{
	return g_peer_fd;
}

/*
 * The peer's environment: ours without any TH_ENV_* of our own, plus its
 * role, channel and seed. Built before fork: between fork and exec the child
 * may only make async-signal-safe calls (the parent may have threads).
 */
static char **peer_env(char *role, char *fd, char *seed)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 4, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], TH_ENV_PEER "=", strlen(TH_ENV_PEER) + 1) &&
		    strncmp(environ[i], TH_ENV_PEER_FD "=", strlen(TH_ENV_PEER_FD) + 1) &&
		    (!seed || strncmp(environ[i], TH_ENV_SEED "=", strlen(TH_ENV_SEED) + 1)))
			env[k++] = environ[i];
	env[k++] = role;
	env[k++] = fd;
	if (seed)
		env[k++] = seed;
	env[k] = NULL;
	return env;
}

static int spawn(struct th_peer *p, const char *role, int seq, const char *const *argv,
		 struct rdmig_err *err)
{
	char rolevar[96], fdvar[48], seedvar[64];
	pid_t parent = getpid(), pid;
	uint64_t seed;
	char **env;
	int sv[2];

	memset(p, 0, sizeof(*p));
	p->fd = -1;
	snprintf(p->role, sizeof(p->role), "%s", role);
	if (!argv)
		argv = (const char *const *)g_argv;
	if (!argv || !argv[0])
		return rdmig_seterr(err, -EINVAL, "starting the %s: th_init() was not called",
				    role);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "starting the %s: socketpair",
					  role);
	snprintf(rolevar, sizeof(rolevar), "%s=%s:%d", TH_ENV_PEER, role, seq);
	snprintf(fdvar, sizeof(fdvar), "%s=%d", TH_ENV_PEER_FD, sv[1]);
	if (th_seed(&seed))
		snprintf(seedvar, sizeof(seedvar), "%s=0x%" PRIx64, TH_ENV_SEED, seed);
	env = peer_env(rolevar, fdvar, th_seed(NULL) ? seedvar : NULL);
	if (!env) {
		close(sv[0]);
		close(sv[1]);
		return rdmig_seterr(err, -ENOMEM, "starting the %s: out of memory", role);
	}
	fflush(NULL); /* our buffered lines first, then the peer's */
	pid = fork();
	if (pid == 0) {
		/* Dies with the thread that started it; gone already: do not run at all. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		fcntl(sv[1], F_SETFD, 0);
		execve("/proc/self/exe", (char *const *)argv, env);
		_exit(127);
	}
	free(env);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "starting the %s: fork", role);
	}
	p->pid = pid;
	p->fd = sv[0];
	return 0;
}

int th_peer_start(struct th_peer *p, const char *role, const char *const *argv,
		  struct rdmig_err *err)
{
	return spawn(p, role, 0, argv, err);
}

int th_peer_start_port(struct th_peer *p, const char *role, const char *const *argv, uint16_t *port,
		       int timeout_ms, struct rdmig_err *err)
{
	int ret = spawn(p, role, 0, argv, err);

	if (!ret)
		ret = th_chan_recv_port(p->fd, port, timeout_ms, err);
	if (ret && p->pid)
		th_peer_wait(p, 0, NULL);
	if (ret)
		rdmig_err_prefix(err, "the %s process", role);
	return ret;
}

int th_split(struct th_peer *p, const char *role, struct rdmig_err *err)
{
	int n = ++g_splits, ret;

	if (g_peer_seq > 0)
		return n == g_peer_seq ? TH_SIDE_PEER : TH_SIDE_SKIP;
	ret = spawn(p, role, n, NULL, err);
	return ret ? ret : TH_SIDE_PARENT;
}

void th_peer_close(struct th_peer *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

int th_peer_wait(struct th_peer *p, int timeout_ms, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	int ret;

	th_peer_close(p);
	if (!p->pid)
		return rdmig_seterr(err, -ECHILD, "the %s process: not running", p->role);
	for (;;) {
		pid_t r = waitpid(p->pid, &p->status, WNOHANG);

		if (r == p->pid) {
			p->pid = 0;
			return 0;
		}
		if (r < 0 && errno != EINTR) {
			ret = rdmig_seterr_errno(err, rdmig_neg_errno(),
						 "waiting for the %s process", p->role);
			p->pid = 0;
			return ret;
		}
		if (deadline >= 0 && rdmig_now_ms() >= deadline)
			break;
		rdmig_sleep_ms(5);
	}
	kill(p->pid, SIGKILL);
	while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
		;
	p->pid = 0;
	return rdmig_seterr(err, -ETIMEDOUT, "the %s process did not exit within %d ms: killed",
			    p->role, timeout_ms);
}

const char *th_status_str(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "status 0x%x", status);
	return buf;
}

bool th_exited(int status, int code)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

bool th_killed(int status, int sig)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

/* ---- the channel ---------------------------------------------------------- */

int th_chan_send(int fd, const void *buf, size_t len, struct rdmig_err *err)
{
	int ret = th_send_all(fd, buf, len, err);

	if (ret)
		rdmig_err_prefix(err, "peer channel");
	return ret;
}

int th_chan_recv(int fd, void *buf, size_t len, int timeout_ms, struct rdmig_err *err)
{
	int ret = th_recv_all(fd, buf, len, timeout_ms, err);

	if (ret)
		rdmig_err_prefix(err, "peer channel");
	return ret;
}

int th_chan_send_port(int fd, uint16_t port, struct rdmig_err *err)
{
	return th_chan_send(fd, &port, sizeof(port), err);
}

int th_chan_recv_port(int fd, uint16_t *port, int timeout_ms, struct rdmig_err *err)
{
	int ret = th_chan_recv(fd, port, sizeof(*port), timeout_ms, err);

	if (!ret && !*port)
		ret = rdmig_seterr(err, -EPROTO, "peer channel: port 0 from the peer");
	if (ret)
		rdmig_err_prefix(err, "waiting for the listening port");
	return ret;
}

int th_chan_printf(int fd, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -EMSGSIZE;
	return th_chan_send(fd, line, (size_t)n, NULL);
}

int th_chan_getline(int fd, char *buf, size_t len, int timeout_ms, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	size_t n = 0;

	/* A byte at a time: nothing of the next line may be read ahead and lost. */
	for (;;) {
		char c;
		int ret = th_chan_recv(fd, &c, 1, rdmig_ms_left(deadline), err);

		if (ret)
			return ret;
		if (c == '\n')
			break;
		if (n + 1 >= len)
			return rdmig_seterr(err, -EMSGSIZE,
					    "peer channel: line longer than %zu bytes", len);
		buf[n++] = c;
	}
	buf[n] = '\0';
	return 0;
}
