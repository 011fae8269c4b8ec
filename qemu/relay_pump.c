/* SPDX-License-Identifier: MIT */
/*
 * Stream sets and pipes: one QEMU connection (a unix socket) joined to one
 * data channel of a set's rdmig connection.
 *
 * Each pipe is moved by two detached threads, one per direction, each
 * moving at most RDMIG_RELAY_BUF bytes a step through the transport's
 * descriptor calls (rdmig_stream_send_fd/recv_fd: spliced on tcp, straight
 * into and out of registered memory on rdma, never through a buffer of the
 * relay's), so a slow side stalls its peer instead of growing a queue. End
 * of stream is passed on as a half-close; an error in either direction
 * fails the whole set: its rdmig connection is aborted and every unix
 * socket of the set shut down both ways, so both QEMUs see it on every
 * channel at once. Ownership and locking: struct relay_owner and struct
 * relay_set (relay_int.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "relay_int.h"

struct relay_pipe {
	struct relay_pipe *next;
	struct relay_owner *owner;
	struct relay_set *set;
	struct rdmig_conn *conn; /* the set's */
	unsigned chan;
	int fd;
	atomic_int threads;
	char name[RELAY_NAME_MAX];
};

/*
 * One chunk in one direction: 1 when it moved, 0 at end of stream, negative
 * on error (with `err` set, unless the pipe is failing already and the
 * error is only the echo of that).
 */
typedef int (*pipe_step_fn)(struct relay_pipe *p, struct rdmig_err *err);

void relay_owner_init(struct relay_owner *o)
{
	pthread_condattr_t ca;

	memset(o, 0, sizeof(*o));
	pthread_mutex_init(&o->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->cond, &ca);
	pthread_condattr_destroy(&ca);
}

void relay_owner_fini(struct relay_owner *o)
{
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->cond);
}

void relay_owner_error(struct relay_owner *o, const struct rdmig_err *e)
{
	if (rdmig_err_slot_put(&o->first, e))
		log_warn("%s", e->msg);
}

int relay_set_new(struct relay_owner *o, struct rdmig_conn *conn, struct relay_set **out,
		  struct rdmig_err *err)
{
	struct relay_set *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s) {
		rdmig_conn_destroy(conn);
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	}
	s->owner = o;
	s->conn = conn;
	s->nchan = rdmig_conn_channels(conn);
	atomic_init(&s->refs, 1);
	pthread_mutex_lock(&o->lock);
	s->id = ++o->sets;
	pthread_mutex_unlock(&o->lock);
	*out = s;
	return 0;
}

void relay_set_put(struct relay_set *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	rdmig_conn_destroy(s->conn);
	free(s);
}

/*
 * Under o->lock: abort the connection, so the peer relay sees every stream
 * of the set fail, and shut every local socket of the set down, so QEMU
 * does too and each pipe's threads wake up.
 */
static void set_fail_locked(struct relay_set *s, const struct rdmig_err *e)
{
	struct relay_owner *o = s->owner;

	if (atomic_exchange(&s->failed, 1))
		return;
	if (!o->stopping)
		relay_owner_error(o, e);
	rdmig_conn_abort(s->conn, e->code ? e->code : -EIO, e->msg);
	for (struct relay_pipe *p = o->pipes; p; p = p->next)
		if (p->set == s)
			shutdown(p->fd, SHUT_RDWR);
}

void relay_set_fail(struct relay_set *s, const struct rdmig_err *e)
{
	pthread_mutex_lock(&s->owner->lock);
	set_fail_locked(s, e);
	pthread_mutex_unlock(&s->owner->lock);
}

static void pipe_put(struct relay_pipe *p)
{
	struct relay_owner *o = p->owner;

	if (atomic_fetch_sub(&p->threads, 1) != 1)
		return;
	pthread_mutex_lock(&o->lock);
	for (struct relay_pipe **pp = &o->pipes; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pthread_mutex_unlock(&o->lock);
	log_info("%s: closed", p->name);
	close(p->fd);
	atomic_fetch_sub(&p->set->live, 1);
	relay_set_put(p->set);
	free(p);
	pthread_mutex_lock(&o->lock);
	o->live--;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

/* unix -> rdmig: the transport reads QEMU's socket itself (no buffer of ours). */
static int step_up(struct relay_pipe *p, struct rdmig_err *err)
{
	ssize_t n = rdmig_stream_send_fd(p->conn, p->chan, p->fd, RDMIG_RELAY_BUF, err);

	if (n < 0) {
		rdmig_err_prefix(err, "%s", p->name);
		return -EIO;
	}
	if (n == 0) {
		if (!p->set->failed && rdmig_stream_shutdown(p->conn, p->chan, err))
			return -EIO;
		rdmig_err_clear(err);
		return 0;
	}
	atomic_fetch_add(&p->owner->up, (uint64_t)n);
	return 1;
}

/* rdmig -> unix: the transport writes into QEMU's socket itself. */
static int step_down(struct relay_pipe *p, struct rdmig_err *err)
{
	ssize_t n = rdmig_stream_recv_fd(p->conn, p->chan, p->fd, RDMIG_RELAY_BUF, -1, err);

	if (n < 0) {
		rdmig_err_prefix(err, "%s", p->name);
		return -EIO;
	}
	if (n == 0) {
		shutdown(p->fd, SHUT_WR);
		return 0;
	}
	atomic_fetch_add(&p->owner->down, (uint64_t)n);
	return 1;
}

static void pipe_run(struct relay_pipe *p, pipe_step_fn step)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	while (step(p, &err) > 0)
		;
	if (err.code)
		relay_set_fail(p->set, &err);
	pipe_put(p);
}

static void *pipe_up(void *arg)
{
	pipe_run(arg, step_up);
	return NULL;
}

static void *pipe_down(void *arg)
{
	pipe_run(arg, step_down);
	return NULL;
}

int relay_pipe_start(struct relay_set *s, unsigned chan, int fd, const char *name,
		     struct rdmig_err *err)
{
	struct relay_owner *o = s->owner;
	struct relay_pipe *p = calloc(1, sizeof(*p));
	pthread_attr_t attr;
	pthread_t t;
	int ret;

	if (!p) {
		close(fd);
		return rdmig_seterr(err, -ENOMEM, "relay: out of memory");
	}
	p->owner = o;
	p->set = s;
	p->conn = s->conn;
	p->chan = chan;
	p->fd = fd;
	snprintf(p->name, sizeof(p->name), "%s", name);
	atomic_init(&p->threads, 2);
	atomic_fetch_add(&s->refs, 1);
	atomic_fetch_add(&s->live, 1);
	pthread_mutex_lock(&o->lock);
	p->next = o->pipes;
	o->pipes = p;
	o->live++;
	o->opened++;
	pthread_mutex_unlock(&o->lock);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = -pthread_create(&t, &attr, pipe_up, p);
	if (ret) {
		rdmig_seterr_errno(err, ret, "%s: thread", name);
		relay_set_fail(s, err);
		atomic_store(&p->threads, 1); /* only this call's put is left */
		pipe_put(p);
		pthread_attr_destroy(&attr);
		return ret;
	}
	ret = -pthread_create(&t, &attr, pipe_down, p);
	pthread_attr_destroy(&attr);
	if (ret) {
		rdmig_seterr_errno(err, ret, "%s: thread", name);
		relay_set_fail(s, err);
		pipe_put(p); /* pipe_up exits after the fail and puts the last reference */
		return ret;
	}
	log_info("%s: open", name);
	return 0;
}

void relay_cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *lock, int ms)
{
	struct timespec ts = rdmig_abstime_ms(CLOCK_MONOTONIC, ms > 0 ? (unsigned)ms : 0);

	pthread_cond_timedwait(cond, lock, &ts);
}

void relay_owner_drain(struct relay_owner *o, int timeout_ms, volatile sig_atomic_t *stop)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);

	pthread_mutex_lock(&o->lock);
	while (o->live && !(stop && *stop)) {
		int left = rdmig_ms_left(deadline);

		if (left == 0)
			break;
		relay_cond_wait_ms(&o->cond, &o->lock, left < 0 || left > 1000 ? 1000 : left);
	}
	pthread_mutex_unlock(&o->lock);
}

void relay_owner_stop(struct relay_owner *o)
{
	struct rdmig_err e = RDMIG_ERR_INIT;

	rdmig_seterr(&e, -ECANCELED, "relay stopped");
	pthread_mutex_lock(&o->lock);
	o->stopping = true;
	for (struct relay_pipe *p = o->pipes; p; p = p->next)
		set_fail_locked(p->set, &e);
	while (o->live)
		pthread_cond_wait(&o->cond, &o->lock);
	pthread_mutex_unlock(&o->lock);
}
