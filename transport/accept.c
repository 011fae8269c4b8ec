/* SPDX-License-Identifier: MIT */
/*
 * The accepting side's common half. A listener thread calls the backend's
 * accept, which groups channels by token and never waits on one peer; every
 * connection it returns gets a handshake thread of its own (ops->accept_finish,
 * the auth hook, ops->post_auth) under a deadline of cfg.connect_timeout_ms
 * and under per-address and global limits; connections that get through
 * wait in a bounded queue for rdmig_accept(). A peer can fail, stall or
 * crowd out only its own connections: rdmig_accept() reports timeouts and
 * failures of the listener itself, nothing else.
 *
 * Locking: acc->lock guards the handshake slots' state, the ready queue, the
 * stats and the listener's fatal error; ready_cond is broadcast when a
 * connection becomes ready or the listener fails. A handshake thread owns
 * its connection until it marks its slot done, under the lock; the listener
 * thread aborts a connection (deadline, eviction) only while its slot is
 * running, under the same lock, so the two never race on it. Aborting wakes
 * the handshake thread through the backend's wake op: it takes the
 * connection's own locks, which no thread holds while it takes acc->lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "xport.h"

/* Room for evicted handshakes that are still unwinding next to RDMIG_HS_MAX live ones. */
#define HS_SLOTS (2 * RDMIG_HS_MAX)

enum hs_state {
	HS_FREE,
	HS_RUNNING, /* its thread owns the connection */
	HS_DONE,    /* its thread is finishing: join it */
};

struct hs_slot {
	struct rdmig_acceptor *acc;
	enum hs_state state; /* acc->lock */
	struct rdmig_conn *c;
	pthread_t thr;
	int64_t started, deadline;
	int abort_code; /* acc->lock: set when the listener thread aborted it */
	enum rdmig_drop_cause abort_cause;
	char abort_why[200];
};

struct rdmig_acceptor {
	struct rdmig_listener *l;
	pthread_t thr;
	bool thr_started;
	atomic_bool stop;
	pthread_mutex_t lock;
	pthread_cond_t ready_cond;
	struct rdmig_conn *ready[RDMIG_READY_MAX]; /* a ring: ready_head, nready */
	unsigned ready_head, nready;
	struct hs_slot hs[HS_SLOTS];
	struct rdmig_listener_stats st;
	struct rdmig_err fatal; /* the listener's own failure: code 0 while none */
};

/* ---- helpers the backends share ---------------------------------------- */

void rdmig_addr_ip(const struct sockaddr *sa, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (sa && sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, a,
			  sizeof(a));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6))
			inet_ntop(AF_INET, &a6->s6_addr[12], a, sizeof(a));
		else
			inet_ntop(AF_INET6, a6, a, sizeof(a));
	}
	snprintf(out, len, "%s", a);
}

int rdmig_limit_victim(const struct rdmig_limit_ent *e, unsigned n, const char *addr,
		       unsigned per_addr, unsigned global, unsigned *held)
{
	unsigned same = 0, best_cnt = 0;
	int oldest = -1, best = -1;

	*held = 0;
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(e[i].addr, addr))
			continue;
		same++;
		if (oldest < 0 || e[i].since < e[oldest].since)
			oldest = (int)i;
	}
	if (same >= per_addr && oldest >= 0) {
		*held = same;
		return oldest;
	}
	if (n < global)
		return -1;
	/* The oldest entry of the address that holds the most: n is small, so n^2 is. */
	for (unsigned i = 0; i < n; i++) {
		unsigned cnt = 0;

		for (unsigned j = 0; j < n; j++)
			cnt += !strcmp(e[i].addr, e[j].addr);
		if (cnt > best_cnt || (cnt == best_cnt && e[i].since < e[best].since)) {
			best = (int)i;
			best_cnt = cnt;
		}
	}
	*held = best_cnt;
	return best;
}

void rdmig_listen_drop(struct rdmig_listener *l, enum rdmig_drop_cause cause, const char *peer,
		       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rdmig_listen_vdrop(l, cause, peer, fmt, ap);
	va_end(ap);
}

void rdmig_listen_vdrop(struct rdmig_listener *l, enum rdmig_drop_cause cause, const char *peer,
			const char *fmt, va_list ap)
{
	struct rdmig_acceptor *acc = l->acc;
	char why[RDMIG_ERR_MSG_MAX], line[RDMIG_ERR_MSG_MAX + 320];

	vsnprintf(why, sizeof(why), fmt, ap);
	snprintf(line, sizeof(line), "dropping connection from %s: %s", peer && *peer ? peer : "?",
		 why);
	log_warn("%s", line);
	if (!acc)
		return;
	pthread_mutex_lock(&acc->lock);
	acc->st.dropped++;
	switch (cause) {
	case RDMIG_DROP_REFUSED:
		acc->st.refused++;
		break;
	case RDMIG_DROP_CLOSED:
		acc->st.closed++;
		break;
	case RDMIG_DROP_TIMEOUT:
		acc->st.timed_out++;
		break;
	case RDMIG_DROP_EVICTED:
		acc->st.evicted++;
		break;
	case RDMIG_DROP_AUTH:
		acc->st.auth_failed++;
		break;
	case RDMIG_DROP_BUSY:
		acc->st.busy++;
		break;
	}
	snprintf(acc->st.last_drop, sizeof(acc->st.last_drop), "%.*s",
		 (int)sizeof(acc->st.last_drop) - 1, line);
	pthread_mutex_unlock(&acc->lock);
}

void rdmig_listener_stats(const struct rdmig_listener *l, struct rdmig_listener_stats *out)
{
	struct rdmig_acceptor *acc = l->acc;

	memset(out, 0, sizeof(*out));
	if (!acc)
		return;
	pthread_mutex_lock(&acc->lock);
	*out = acc->st;
	out->ready = acc->nready;
	for (unsigned i = 0; i < HS_SLOTS; i++)
		out->handshakes += acc->hs[i].state == HS_RUNNING;
	pthread_mutex_unlock(&acc->lock);
}

/* ---- handshakes -------------------------------------------------------- */

/* What a handshake failure that nobody forced counts as. */
static enum rdmig_drop_cause failure_cause(int code, bool authenticating)
{
	switch (code) {
	case -ETIMEDOUT:
		return RDMIG_DROP_TIMEOUT;
	case -ECONNRESET:
	case -ECONNABORTED:
	case -EPIPE:
	case -ENOTCONN:
		return RDMIG_DROP_CLOSED;
	case -EACCES:
		return authenticating ? RDMIG_DROP_AUTH : RDMIG_DROP_REFUSED;
	default:
		return RDMIG_DROP_REFUSED;
	}
}

/* Handshake thread: the rest of the setup, authentication, then the ready queue. */
static void *hs_main(void *arg)
{
	struct hs_slot *s = arg;
	struct rdmig_acceptor *acc = s->acc;
	struct rdmig_listener *l = acc->l;
	struct rdmig_conn *c = s->c;
	struct rdmig_err e = RDMIG_ERR_INIT;
	enum rdmig_drop_cause cause = RDMIG_DROP_REFUSED;
	bool authenticating = false;
	char peer[sizeof(c->host)], why[RDMIG_ERR_MSG_MAX];
	int ret = 0;

	if (l->ops->accept_finish)
		ret = l->ops->accept_finish(c, s->deadline, &e);
	if (!ret) {
		authenticating = true;
		ret = rdmig_conn_secure(c, &e);
	}
	snprintf(peer, sizeof(peer), "%s", c->host);
	pthread_mutex_lock(&acc->lock);
	if (s->abort_code) {
		/* Whatever the handshake said last, the listener's reason is the cause. */
		ret = s->abort_code;
		cause = s->abort_cause;
		snprintf(why, sizeof(why), "%s", s->abort_why);
	} else if (ret) {
		cause = failure_cause(ret, authenticating);
		snprintf(why, sizeof(why), "%s", rdmig_err_str(&e));
	} else if (acc->nready == RDMIG_READY_MAX) {
		ret = -EBUSY;
		cause = RDMIG_DROP_BUSY;
		snprintf(why, sizeof(why),
			 "authenticated, but %d connections already wait for rdmig_accept()",
			 RDMIG_READY_MAX);
	} else {
		acc->ready[(acc->ready_head + acc->nready++) % RDMIG_READY_MAX] = c;
		pthread_cond_broadcast(&acc->ready_cond);
	}
	s->state = HS_DONE;
	pthread_mutex_unlock(&acc->lock);
	if (!ret)
		return NULL;
	if (cause == RDMIG_DROP_BUSY)
		rdmig_ctrl_send_error(c, -EBUSY, "the destination is busy: try again later", NULL);
	rdmig_listen_drop(l, cause, peer, "%s", why);
	rdmig_conn_destroy(c);
	return NULL;
}

/* Abort a running handshake (acc->lock held); its thread reports and drops it. */
static void hs_abort(struct hs_slot *s, int code, enum rdmig_drop_cause cause, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void hs_abort(struct hs_slot *s, int code, enum rdmig_drop_cause cause, const char *fmt, ...)
{
	va_list ap;

	if (s->state != HS_RUNNING || s->abort_code)
		return;
	va_start(ap, fmt);
	vsnprintf(s->abort_why, sizeof(s->abort_why), fmt, ap);
	va_end(ap);
	s->abort_code = code;
	s->abort_cause = cause;
	rdmig_conn_abort(s->c, code, s->abort_why);
}

/* Join finished handshake threads and free their slots. */
static void hs_reap(struct rdmig_acceptor *acc)
{
	for (unsigned i = 0; i < HS_SLOTS; i++) {
		struct hs_slot *s = &acc->hs[i];
		bool done;

		pthread_mutex_lock(&acc->lock);
		done = s->state == HS_DONE;
		pthread_mutex_unlock(&acc->lock);
		if (!done)
			continue;
		pthread_join(s->thr, NULL);
		pthread_mutex_lock(&acc->lock);
		s->state = HS_FREE;
		s->c = NULL;
		pthread_mutex_unlock(&acc->lock);
	}
}

/* Abort handshakes past their deadline; returns the ms to the next deadline (-1: none). */
static int hs_police(struct rdmig_acceptor *acc)
{
	int64_t now = rdmig_now_ms(), next = -1;

	pthread_mutex_lock(&acc->lock);
	for (unsigned i = 0; i < HS_SLOTS; i++) {
		struct hs_slot *s = &acc->hs[i];

		if (s->state != HS_RUNNING || s->abort_code)
			continue;
		if (now >= s->deadline) {
			hs_abort(s, -ETIMEDOUT, RDMIG_DROP_TIMEOUT,
				 "handshake not complete within %d ms (connect timeout): the peer "
				 "stalled",
				 acc->l->cfg.connect_timeout_ms);
			continue;
		}
		if (next < 0 || s->deadline < next)
			next = s->deadline;
	}
	pthread_mutex_unlock(&acc->lock);
	return next < 0 ? -1 : (int)(next - now);
}

/* Make room for a handshake from `addr` (acc->lock held): evict under the limits. */
static void hs_admit(struct rdmig_acceptor *acc, const char *addr)
{
	struct rdmig_limit_ent ent[HS_SLOTS];
	unsigned idx[HS_SLOTS], n = 0, held;
	int v;

	for (unsigned i = 0; i < HS_SLOTS; i++) {
		const struct hs_slot *s = &acc->hs[i];

		if (s->state != HS_RUNNING || s->abort_code)
			continue;
		ent[n] = (struct rdmig_limit_ent){.addr = s->c->peer_addr, .since = s->started};
		idx[n++] = i;
	}
	v = rdmig_limit_victim(ent, n, addr, RDMIG_HS_PER_ADDR, RDMIG_HS_MAX, &held);
	if (v < 0)
		return;
	if (!strcmp(ent[v].addr, addr))
		hs_abort(&acc->hs[idx[v]], -ECONNABORTED, RDMIG_DROP_EVICTED,
			 "evicted, the oldest of %u unauthenticated connections from %s (limit %d "
			 "per address), for a newer one",
			 held, addr, RDMIG_HS_PER_ADDR);
	else
		hs_abort(&acc->hs[idx[v]], -ECONNABORTED, RDMIG_DROP_EVICTED,
			 "evicted, the oldest of the %u unauthenticated connections from %s, "
			 "the most of any address, for one from %s (limit %d in all)",
			 held, ent[v].addr, addr, RDMIG_HS_MAX);
}

/* Listener thread: a grouped connection gets its own handshake thread. */
static void hs_start(struct rdmig_acceptor *acc, struct rdmig_conn *c)
{
	struct hs_slot *s = NULL;
	int ret;

	pthread_mutex_lock(&acc->lock);
	hs_admit(acc, c->peer_addr);
	for (unsigned i = 0; i < HS_SLOTS && !s; i++)
		if (acc->hs[i].state == HS_FREE)
			s = &acc->hs[i];
	if (s) {
		memset(s, 0, sizeof(*s));
		s->acc = acc;
		s->c = c;
		s->started = rdmig_now_ms();
		s->deadline = s->started + acc->l->cfg.connect_timeout_ms;
		s->state = HS_RUNNING;
		ret = pthread_create(&s->thr, NULL, hs_main, s);
		if (ret) {
			s->state = HS_FREE;
			s->c = NULL;
			s = NULL;
		}
	}
	pthread_mutex_unlock(&acc->lock);
	if (s)
		return;
	rdmig_ctrl_send_error(c, -EBUSY, "the destination is busy: try again later", NULL);
	rdmig_listen_drop(acc->l, RDMIG_DROP_BUSY, c->host,
			  "no handshake slot or thread free (%d handshakes at most)", HS_SLOTS);
	rdmig_conn_destroy(c);
}

/* ---- the listener thread ----------------------------------------------- */

static void *listener_main(void *arg)
{
	struct rdmig_acceptor *acc = arg;
	struct rdmig_listener *l = acc->l;
	struct rdmig_conn *c = NULL;
	bool nomem_logged = false;

	while (!atomic_load(&acc->stop)) {
		struct rdmig_err e = RDMIG_ERR_INIT;
		int wait, ret;

		hs_reap(acc);
		wait = hs_police(acc);
		if (wait < 0 || wait > RDMIG_ACCEPT_SLICE_MS)
			wait = RDMIG_ACCEPT_SLICE_MS;
		if (!c)
			c = rdmig_conn_alloc(&l->cfg, true);
		if (!c) {
			/* Connections wait in the backlog until memory comes back. */
			if (!nomem_logged)
				log_err("listener on port %u: out of memory for a connection",
					l->port);
			nomem_logged = true;
			rdmig_sleep_ms(RDMIG_ACCEPT_SLICE_MS);
			continue;
		}
		nomem_logged = false;
		ret = l->ops->accept(l, wait, c, &e);
		if (ret == 0) {
			hs_start(acc, c);
			c = NULL;
		} else if (ret == RDMIG_ACCEPT_DROPPED) {
			rdmig_conn_destroy(c);
			c = NULL;
		} else if (ret != -ETIMEDOUT) {
			log_err("listener on port %u failed: %s", l->port, rdmig_err_str(&e));
			pthread_mutex_lock(&acc->lock);
			acc->fatal = e;
			if (!acc->fatal.code)
				acc->fatal.code = ret;
			pthread_cond_broadcast(&acc->ready_cond);
			pthread_mutex_unlock(&acc->lock);
			break;
		}
	}
	rdmig_conn_destroy(c);
	return NULL;
}

int rdmig_acceptor_start(struct rdmig_listener *l, struct rdmig_err *err)
{
	struct rdmig_acceptor *acc;
	pthread_condattr_t ca;
	int ret;

	acc = calloc(1, sizeof(*acc));
	if (!acc)
		return rdmig_seterr(err, -ENOMEM, "out of memory for a listener");
	acc->l = l;
	pthread_mutex_init(&acc->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&acc->ready_cond, &ca);
	pthread_condattr_destroy(&ca);
	l->acc = acc;
	ret = pthread_create(&acc->thr, NULL, listener_main, acc);
	if (ret)
		return rdmig_seterr_errno(err, -ret, "starting the listener thread");
	acc->thr_started = true;
	return 0;
}

int rdmig_acceptor_take(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn **out,
			struct rdmig_err *err)
{
	struct rdmig_acceptor *acc = l->acc;
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	int ret = 0;

	pthread_mutex_lock(&acc->lock);
	while (!acc->nready && !acc->fatal.code) {
		int64_t now = rdmig_now_ms(), until = now + 1000;
		struct timespec ts;

		if (deadline >= 0 && now >= deadline) {
			ret = rdmig_seterr(err, -ETIMEDOUT, "no connection on port %u within %d ms",
					   l->port, timeout_ms);
			goto out_unlock;
		}
		if (deadline >= 0 && deadline < until)
			until = deadline;
		ts.tv_sec = until / 1000;
		ts.tv_nsec = (until % 1000) * 1000000;
		pthread_cond_timedwait(&acc->ready_cond, &acc->lock, &ts);
	}
	if (acc->nready) {
		*out = acc->ready[acc->ready_head];
		acc->ready_head = (acc->ready_head + 1) % RDMIG_READY_MAX;
		acc->nready--;
		acc->st.accepted++;
	} else {
		ret = rdmig_seterr(err, acc->fatal.code, "%s", acc->fatal.msg);
	}
out_unlock:
	pthread_mutex_unlock(&acc->lock);
	return ret;
}

void rdmig_acceptor_stop(struct rdmig_listener *l)
{
	struct rdmig_acceptor *acc = l->acc;
	uint64_t one = 1;

	if (!acc)
		return;
	atomic_store(&acc->stop, true);
	if (l->wake_fd >= 0 && write(l->wake_fd, &one, sizeof(one)) < 0)
		log_warn("waking the listener thread: %s", strerror(errno));
	if (acc->thr_started)
		pthread_join(acc->thr, NULL);
	/* The handshakes still running end with their connections. */
	pthread_mutex_lock(&acc->lock);
	for (unsigned i = 0; i < HS_SLOTS; i++)
		hs_abort(&acc->hs[i], -ECONNABORTED, RDMIG_DROP_CLOSED, "the listener is closing");
	pthread_mutex_unlock(&acc->lock);
	for (unsigned i = 0; i < HS_SLOTS; i++) {
		enum hs_state st;

		pthread_mutex_lock(&acc->lock);
		st = acc->hs[i].state;
		pthread_mutex_unlock(&acc->lock);
		if (st != HS_FREE)
			pthread_join(acc->hs[i].thr, NULL);
	}
	while (acc->nready) {
		rdmig_conn_destroy(acc->ready[acc->ready_head]);
		acc->ready_head = (acc->ready_head + 1) % RDMIG_READY_MAX;
		acc->nready--;
	}
	pthread_cond_destroy(&acc->ready_cond);
	pthread_mutex_destroy(&acc->lock);
	free(acc);
	l->acc = NULL;
}
