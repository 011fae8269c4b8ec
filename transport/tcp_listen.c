/* SPDX-License-Identifier: MIT */
/*
 * tcp backend, accepting side: the listening socket, sockets whose TLS
 * handshake or HELLO is still arriving (pending), and sockets filed by the
 * token of their HELLO until their connection is complete (groups).
 * Everything runs in the listener thread (accept.c); pending sockets and
 * groups persist across calls, bounded per address and in all, and expiring.
 * A peer's failure drops that peer's sockets (rdmig_listen_drop()), never the
 * listener.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "clock.h"
#include "log.h"
#include "tcp_int.h"

static struct tcp_listener *to_tcp_listener(struct rdmig_listener *l)
{
	return container_of(l, struct tcp_listener, base);
}

/* "1.2.3.4:5" or "[::1]:5"; IPv4-mapped IPv6 addresses are shown as IPv4. */
static void fmt_sockaddr(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(out, len, "%s:%u", a, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], a, sizeof(a));
			snprintf(out, len, "%s:%u", a, ntohs(s6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
			snprintf(out, len, "[%s]:%u", a, ntohs(s6->sin6_port));
		}
	} else {
		snprintf(out, len, "(address family %d)", ss->ss_family);
	}
}

/*
 * Read what the peer already sent before closing, so that the close does
 * not turn into a reset that could destroy an ERROR frame we just sent.
 */
static void drain_close(int *fd)
{
	uint8_t scratch[4096];

	if (*fd < 0)
		return;
	for (int i = 0; i < 16; i++)
		if (recv(*fd, scratch, sizeof(scratch), MSG_DONTWAIT) <= 0)
			break;
	tcp_close_fd(fd);
}

/* Best effort: tell a rejected peer why, in a frame it can decode. */
static void send_error_frame(int fd, SSL *ssl, int code, const char *msg)
{
	uint8_t buf[RDMIG_WIRE_HDR_LEN + 4 + 256];
	size_t n;

	n = rdmig_wire_error_encode(buf + RDMIG_WIRE_HDR_LEN, sizeof(buf) - RDMIG_WIRE_HDR_LEN,
				    code, msg);
	rdmig_wire_hdr_encode(buf, RDMIG_MSG_ERROR, RDMIG_CHAN_CTRL, 0, (uint32_t)n);
	if (ssl) {
		ERR_clear_error();
		if (SSL_write(ssl, buf, (int)(RDMIG_WIRE_HDR_LEN + n)) <= 0)
			log_debug("could not send ERROR frame over TLS");
		return;
	}
	if (send(fd, buf, RDMIG_WIRE_HDR_LEN + n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("could not send ERROR frame: %s", strerror(errno));
}

int tcp_listen(struct rdmig_listener *l, struct rdmig_err *err)
{
	struct tcp_listener *tl = to_tcp_listener(l);
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char port[8], where[TCP_PEER_MAX];
	int one = 1, zero = 0, ret = 0, fd = -1;

	tl->fd = -1;
	for (unsigned i = 0; i < TCP_MAX_GROUPS; i++) {
		tl->grp[i].ctrl_fd = -1;
		for (unsigned j = 0; j < RDMIG_MAX_CHANNELS; j++)
			tl->grp[i].data_fd[j] = -1;
	}
	tl->inited = true;
	ret = tcp_tls_ctx_new(&l->cfg, true, &tl->tls_ctx, tl->tls_psk, err);
	if (ret)
		return ret;

	tcp_fmt_hostport(l->cfg.host ? l->cfg.host : "*", l->cfg.port, where, sizeof(where));
	snprintf(port, sizeof(port), "%u", l->cfg.port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;

	if (!l->cfg.host || !*l->cfg.host) {
		/* Any address: one IPv6 socket that also takes IPv4, else IPv4 alone. */
		struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
					  .sin6_port = htons(l->cfg.port),
					  .sin6_addr = IN6ADDR_ANY_INIT};
		struct sockaddr_in s4 = {.sin_family = AF_INET,
					 .sin_port = htons(l->cfg.port),
					 .sin_addr.s_addr = htonl(INADDR_ANY)};

		fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd >= 0) {
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, (struct sockaddr *)&s6, sizeof(s6)) || listen(fd, SOMAXCONN)) {
				ret = rdmig_neg_errno();
				tcp_close_fd(&fd);
			}
		}
		if (fd < 0 && ret != -EADDRINUSE) {
			fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
			if (fd < 0)
				return rdmig_seterr_errno(err, rdmig_neg_errno(), "listening on %s",
							  where);
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, (struct sockaddr *)&s4, sizeof(s4)) || listen(fd, SOMAXCONN)) {
				ret = rdmig_neg_errno();
				tcp_close_fd(&fd);
			}
		}
	} else {
		ret = getaddrinfo(l->cfg.host, port, &hints, &res);
		if (ret) {
			int code = ret == EAI_SYSTEM ? rdmig_neg_errno() : -EADDRNOTAVAIL;

			return rdmig_seterr(
			    err, code, "cannot resolve listen address '%s': %s", l->cfg.host,
			    ret == EAI_SYSTEM ? strerror(-code) : gai_strerror(ret));
		}
		ret = -EADDRNOTAVAIL;
		for (ai = res; ai && fd < 0; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				    ai->ai_protocol);
			if (fd < 0) {
				ret = rdmig_neg_errno();
				continue;
			}
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, SOMAXCONN)) {
				ret = rdmig_neg_errno();
				tcp_close_fd(&fd);
			}
		}
		freeaddrinfo(res);
	}
	if (fd < 0) {
		if (ret == -EADDRINUSE)
			return rdmig_seterr(err, ret,
					    "cannot listen on %s: the port is already in use "
					    "(another rdmig listener?)",
					    where);
		return rdmig_seterr_errno(err, ret, "cannot listen on %s", where);
	}
	tl->fd = fd;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "getsockname on %s", where);
	l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	fmt_sockaddr(&ss, where, sizeof(where));
	log_info("listening on %s%s", where, tl->tls_ctx ? " (TLS)" : "");
	return 0;
}

static void group_drop(struct tcp_group *g)
{
	SSL_free(g->ctrl_ssl);
	g->ctrl_ssl = NULL;
	tcp_close_fd(&g->ctrl_fd);
	for (unsigned i = 0; i < RDMIG_MAX_CHANNELS; i++) {
		SSL_free(g->data_ssl[i]);
		g->data_ssl[i] = NULL;
		tcp_close_fd(&g->data_fd[i]);
	}
	g->used = false;
	g->ndata = 0;
}

static void pending_close(struct tcp_pending *p)
{
	SSL_free(p->ssl);
	p->ssl = NULL;
	tcp_close_fd(&p->fd);
}

void tcp_listener_close(struct rdmig_listener *l)
{
	struct tcp_listener *tl = to_tcp_listener(l);

	if (!tl->inited)
		return;
	tcp_close_fd(&tl->fd);
	for (unsigned i = 0; i < tl->npend; i++)
		pending_close(&tl->pend[i]);
	tl->npend = 0;
	for (unsigned i = 0; i < TCP_MAX_GROUPS; i++)
		group_drop(&tl->grp[i]);
	SSL_CTX_free(tl->tls_ctx);
	tl->tls_ctx = NULL;
	OPENSSL_cleanse(tl->tls_psk, sizeof(tl->tls_psk));
	tl->inited = false;
}

/* How long a socket may take to send its HELLO; incomplete connections get twice that. */
static int64_t hello_timeout_ms(const struct tcp_listener *tl)
{
	return tl->base.cfg.connect_timeout_ms > 0 ? tl->base.cfg.connect_timeout_ms : 10000;
}

static void pending_remove(struct tcp_listener *tl, unsigned i)
{
	tl->pend[i] = tl->pend[--tl->npend];
}

/* Drop a pending socket: count and log it, close it, forget it. */
static void pending_drop(struct tcp_listener *tl, unsigned i, enum rdmig_drop_cause cause,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void pending_drop(struct tcp_listener *tl, unsigned i, enum rdmig_drop_cause cause,
			 const char *fmt, ...)
{
	struct tcp_pending *p = &tl->pend[i];
	va_list ap;

	va_start(ap, fmt);
	rdmig_listen_vdrop(&tl->base, cause, p->peer, fmt, ap);
	va_end(ap);
	pending_close(p);
	pending_remove(tl, i);
}

/* Refuse a socket whose HELLO was wrong: count and log, tell the peer, close. */
static void reject(struct tcp_listener *tl, unsigned i, int code, const char *why)
{
	struct tcp_pending *p = &tl->pend[i];

	rdmig_listen_drop(&tl->base, RDMIG_DROP_REFUSED, p->peer, "%s", why);
	send_error_frame(p->fd, p->ssl, code, why);
	SSL_free(p->ssl);
	p->ssl = NULL;
	drain_close(&p->fd);
	pending_remove(tl, i);
}

/* Make room for a socket from `addr`: evict a pending one under the limits. */
static void pending_admit(struct tcp_listener *tl, const char *addr)
{
	struct rdmig_limit_ent ent[TCP_MAX_PENDING];
	unsigned held;
	int v;

	for (unsigned i = 0; i < tl->npend; i++)
		ent[i] =
		    (struct rdmig_limit_ent){.addr = tl->pend[i].addr, .since = tl->pend[i].since};
	v = rdmig_limit_victim(ent, tl->npend, addr, TCP_PENDING_PER_ADDR, TCP_MAX_PENDING, &held);
	if (v < 0)
		return;
	if (!strcmp(tl->pend[v].addr, addr))
		pending_drop(tl, (unsigned)v, RDMIG_DROP_EVICTED,
			     "evicted, the oldest of %u sockets from %s without a HELLO yet (limit "
			     "%d per address), for a newer one",
			     held, addr, TCP_PENDING_PER_ADDR);
	else
		pending_drop(tl, (unsigned)v, RDMIG_DROP_EVICTED,
			     "evicted, the oldest of the %u sockets from %s without a HELLO yet, "
			     "the most of any address, for one from %s (limit %d in all)",
			     held, tl->pend[v].addr, addr, TCP_MAX_PENDING);
}

static void accept_new(struct tcp_listener *tl)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	/* Bounded so that a flood of connections cannot starve the handshakes in progress. */
	for (int k = 0; k < 16; k++) {
		struct tcp_pending *p;
		char addr[RDMIG_ADDR_MAX];

		sl = sizeof(ss);
		fd = accept4(tl->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("accept on port %u: %s", tl->base.port, strerror(errno));
			return;
		}
		rdmig_addr_ip((struct sockaddr *)&ss, addr, sizeof(addr));
		pending_admit(tl, addr);
		p = &tl->pend[tl->npend++];
		memset(p, 0, sizeof(*p));
		p->fd = fd;
		p->events = POLLIN;
		fmt_sockaddr(&ss, p->peer, sizeof(p->peer));
		snprintf(p->addr, sizeof(p->addr), "%s", addr);
		if (tl->tls_ctx) {
			p->ssl = tcp_tls_new(tl->tls_ctx, fd, tl->tls_psk, true);
			if (!p->ssl) {
				pending_drop(tl, tl->npend - 1, RDMIG_DROP_BUSY,
					     "no memory for its TLS session");
				continue;
			}
		}
		p->since = rdmig_now_ms();
		p->deadline = p->since + hello_timeout_ms(tl);
		log_debug("connection from %s", p->peer);
	}
}

static struct tcp_group *group_find(struct tcp_listener *tl, uint64_t token)
{
	for (unsigned i = 0; i < TCP_MAX_GROUPS; i++)
		if (tl->grp[i].used && tl->grp[i].token == token)
			return &tl->grp[i];
	return NULL;
}

/* Drop an incomplete connection: count and log it, close its sockets. */
static void group_forget(struct tcp_listener *tl, struct tcp_group *g, enum rdmig_drop_cause cause,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void group_forget(struct tcp_listener *tl, struct tcp_group *g, enum rdmig_drop_cause cause,
			 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rdmig_listen_vdrop(&tl->base, cause, g->peer, fmt, ap);
	va_end(ap);
	group_drop(g);
}

/* A free group for a new token from `addr`, evicting one under the limits if need be. */
static struct tcp_group *group_new(struct tcp_listener *tl, const char *addr)
{
	struct rdmig_limit_ent ent[TCP_MAX_GROUPS];
	struct tcp_group *used[TCP_MAX_GROUPS];
	unsigned n = 0, held;
	int v;

	for (unsigned i = 0; i < TCP_MAX_GROUPS; i++) {
		if (!tl->grp[i].used)
			continue;
		used[n] = &tl->grp[i];
		ent[n++] =
		    (struct rdmig_limit_ent){.addr = tl->grp[i].addr, .since = tl->grp[i].since};
	}
	v = rdmig_limit_victim(ent, n, addr, TCP_GROUPS_PER_ADDR, TCP_MAX_GROUPS, &held);
	if (v >= 0 && !strcmp(ent[v].addr, addr))
		group_forget(
		    tl, used[v], RDMIG_DROP_EVICTED,
		    "incomplete connection evicted, the oldest of %u from %s (limit %d per "
		    "address), for a newer one",
		    held, addr, TCP_GROUPS_PER_ADDR);
	else if (v >= 0)
		group_forget(
		    tl, used[v], RDMIG_DROP_EVICTED,
		    "incomplete connection evicted, the oldest of the %u from %s, the most "
		    "of any address, for one from %s (limit %d in all)",
		    held, ent[v].addr, addr, TCP_MAX_GROUPS);
	for (unsigned i = 0; i < TCP_MAX_GROUPS; i++)
		if (!tl->grp[i].used)
			return &tl->grp[i];
	return NULL;
}

/*
 * A pending socket's whole HELLO frame has arrived: validate it, answer it
 * and file it under its token. Returns the group when that completed it.
 */
static struct tcp_group *hello_done(struct tcp_listener *tl, unsigned i, struct rdmig_conn *c)
{
	struct tcp_pending *p = &tl->pend[i];
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint8_t ack[TCP_HELLO_FRAME];
	struct rdmig_wire_hello h, a;
	struct tcp_group *g;
	char why[RDMIG_ERR_MSG_MAX];
	uint8_t type;
	int ret;

	ret = rdmig_wire_pdata_decode(p->buf, sizeof(p->buf), &type, &h, &e);
	if (ret) {
		reject(tl, i, ret, e.msg);
		return NULL;
	}
	if (type != RDMIG_MSG_HELLO || h.role != RDMIG_ROLE_CONNECTOR) {
		snprintf(why, sizeof(why), "expected HELLO from a connector, got %s with role %u",
			 rdmig_msg_type_name(type), h.role);
		reject(tl, i, -EPROTO, why);
		return NULL;
	}
	if (h.max_ctrl < RDMIG_CTRL_MAX_PAYLOAD) {
		snprintf(why, sizeof(why),
			 "HELLO: peer accepts control messages of %u bytes, this side needs %u",
			 h.max_ctrl, RDMIG_CTRL_MAX_PAYLOAD);
		reject(tl, i, -EPROTO, why);
		return NULL;
	}
	if (h.nchan > tl->base.cfg.channels) {
		/* Read by the connector's user: both numbers and both ways out. */
		snprintf(why, sizeof(why),
			 "the destination allows at most %u data channels, this side asked for %u: "
			 "use --channels %u or raise the destination's --channels",
			 tl->base.cfg.channels, h.nchan, tl->base.cfg.channels);
		reject(tl, i, -ERANGE, why);
		return NULL;
	}

	g = group_find(tl, h.token);
	if (g && h.nchan != g->nchan) {
		snprintf(why, sizeof(why),
			 "HELLO: channel count %u disagrees with %u in the connection's other "
			 "sockets",
			 h.nchan, g->nchan);
		reject(tl, i, -EPROTO, why);
		group_forget(tl, g, RDMIG_DROP_REFUSED,
			     "one of its sockets announced %u channels, the others %u", h.nchan,
			     g->nchan);
		return NULL;
	}
	if (g && ((h.chan_index == RDMIG_CHAN_CTRL && g->ctrl_fd >= 0) ||
		  (h.chan_index != RDMIG_CHAN_CTRL && g->data_fd[h.chan_index] >= 0))) {
		snprintf(why, sizeof(why),
			 "HELLO: channel 0x%x of token %016" PRIx64 " arrived twice", h.chan_index,
			 h.token);
		reject(tl, i, -EPROTO, why);
		return NULL;
	}
	if (!g) {
		g = group_new(tl, p->addr);
		if (!g) {
			snprintf(why, sizeof(why), "%d connections already being set up",
				 TCP_MAX_GROUPS);
			reject(tl, i, -EBUSY, why);
			return NULL;
		}
		g->used = true;
		g->token = h.token;
		g->nchan = h.nchan;
		g->ndata = 0;
		g->since = rdmig_now_ms();
		/* Long enough for the slowest connector that still meets its own timeout. */
		g->deadline = g->since + 2 * hello_timeout_ms(tl);
		memcpy(g->peer, p->peer, sizeof(g->peer));
		memcpy(g->addr, p->addr, sizeof(g->addr));
	}

	rdmig_hello_fill(c, &a, h.chan_index, h.token);
	a.nchan = h.nchan;
	memset(ack, 0, sizeof(ack));
	rdmig_wire_pdata_encode(ack, RDMIG_MSG_HELLO_ACK, &a);
	/* A fresh socket's send buffer always takes 64 bytes (and a TLS record of them). */
	if (p->ssl ? tcp_io_send_buf((struct tcp_io){p->fd, p->ssl, NULL}, ack, sizeof(ack)) != 0
		   : send(p->fd, ack, sizeof(ack), MSG_DONTWAIT | MSG_NOSIGNAL) !=
			 (ssize_t)sizeof(ack)) {
		pending_drop(tl, i, RDMIG_DROP_CLOSED, "sending HELLO_ACK: %s", strerror(errno));
		group_forget(tl, g, RDMIG_DROP_CLOSED, "one of its sockets failed");
		return NULL;
	}
	if (h.chan_index == RDMIG_CHAN_CTRL) {
		g->ctrl_fd = p->fd;
		g->ctrl_ssl = p->ssl;
		g->caps = h.caps;
		snprintf(g->peer, sizeof(g->peer), "%s", p->peer);
	} else {
		g->data_fd[h.chan_index] = p->fd;
		g->data_ssl[h.chan_index] = p->ssl;
		g->ndata++;
	}
	p->fd = -1;
	p->ssl = NULL;
	pending_remove(tl, i);
	if (g->ctrl_fd >= 0 && g->ndata == g->nchan)
		return g;
	return NULL;
}

/*
 * Progress on a pending socket: its TLS handshake first (cfg.tls), then
 * what it has of its HELLO; may complete a group.
 */
static struct tcp_group *pending_read(struct tcp_listener *tl, unsigned i, struct rdmig_conn *c)
{
	struct tcp_pending *p = &tl->pend[i];
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_wire_hdr hdr;
	char why[256];
	ssize_t n;
	short ev = POLLIN;
	int saved;

	if (p->ssl && !p->hs_done) {
		ERR_clear_error();
		errno = 0;
		n = SSL_do_handshake(p->ssl);
		saved = errno;
		if (n != 1) {
			n = tcp_tls_result(p->ssl, (int)n, saved, &ev);
			if (n == -EAGAIN || n == -EINTR) {
				p->events = ev;
				return NULL;
			}
			if (n == -EPROTO && tcp_tls_not_tls()) {
				rdmig_listen_drop(&tl->base, RDMIG_DROP_REFUSED, p->peer,
						  "it does not speak TLS and this listener runs "
						  "with --tls");
				/* It is a plain rdmig connector: tell it in its own terms. */
				send_error_frame(p->fd, NULL, -EPROTO,
						 "this listener requires TLS: connect with --tls "
						 "and the same --key-file");
			} else {
				rdmig_listen_drop(
				    &tl->base,
				    n == -EPROTO ? RDMIG_DROP_REFUSED : RDMIG_DROP_CLOSED, p->peer,
				    "TLS handshake failed (%s): does the peer use --tls with the "
				    "same --key-file?",
				    n == -EPROTO ? tcp_tls_reason(why, sizeof(why))
						 : "connection closed");
			}
			SSL_free(p->ssl);
			p->ssl = NULL;
			drain_close(&p->fd);
			pending_remove(tl, i);
			return NULL;
		}
		p->hs_done = true;
		p->events = POLLIN;
	}
	/* Until the socket is drained: TLS may hold decrypted bytes poll cannot see. */
	while (p->got < sizeof(p->buf)) {
		size_t before = p->got;

		n = tcp_io_recv_once((struct tcp_io){p->fd, p->ssl, NULL}, p->buf + p->got,
				     sizeof(p->buf) - p->got, &ev);
		if (n == -EAGAIN || n == -EINTR)
			return NULL;
		if (n <= 0) {
			pending_drop(tl, i, RDMIG_DROP_CLOSED, "%s after %zu bytes of its HELLO",
				     n == 0 ? "closed" : strerror((int)-n), p->got);
			return NULL;
		}
		p->got += (size_t)n;
		/* Judge the header as soon as it is there: garbage is refused without waiting. */
		if (before < RDMIG_WIRE_HDR_LEN && p->got >= RDMIG_WIRE_HDR_LEN &&
		    rdmig_wire_hdr_decode(p->buf, RDMIG_WIRE_HDR_LEN, 0, &hdr, &e)) {
			/* A TLS record (handshake, version 3.x): a --tls connector. */
			if (!p->ssl && p->buf[0] == 0x16 && p->buf[1] == 0x03)
				snprintf(e.msg, sizeof(e.msg),
					 "the peer speaks TLS (--tls) and this listener does not: "
					 "both sides must agree");
			reject(tl, i, e.code, e.msg);
			return NULL;
		}
	}
	return hello_done(tl, i, c);
}

static void expire(struct tcp_listener *tl, int64_t now)
{
	for (unsigned i = 0; i < tl->npend;) {
		struct tcp_pending *p = &tl->pend[i];

		if (now < p->deadline) {
			i++;
			continue;
		}
		pending_drop(tl, i, RDMIG_DROP_TIMEOUT,
			     "no complete HELLO within %lld ms (%zu of %d bytes)",
			     (long long)hello_timeout_ms(tl), p->got, TCP_HELLO_FRAME);
	}
	for (unsigned i = 0; i < TCP_MAX_GROUPS; i++) {
		struct tcp_group *g = &tl->grp[i];

		if (!g->used || now < g->deadline)
			continue;
		group_forget(tl, g, RDMIG_DROP_TIMEOUT,
			     "incomplete connection: %s and %u of %u data channels arrived in time",
			     g->ctrl_fd >= 0 ? "control channel" : "no control channel", g->ndata,
			     g->nchan);
	}
}

static int64_t next_expiry(const struct tcp_listener *tl, int64_t deadline)
{
	int64_t t = deadline;

	for (unsigned i = 0; i < tl->npend; i++)
		if (t < 0 || tl->pend[i].deadline < t)
			t = tl->pend[i].deadline;
	for (unsigned i = 0; i < TCP_MAX_GROUPS; i++)
		if (tl->grp[i].used && (t < 0 || tl->grp[i].deadline < t))
			t = tl->grp[i].deadline;
	return t;
}

/* Move a complete group's sockets into the connection. */
static int group_take(struct tcp_group *g, struct tcp_conn *tc, struct rdmig_err *err)
{
	struct rdmig_conn *c = &tc->base;
	int ret;

	ret = tcp_conn_init(tc, err);
	if (ret) {
		group_drop(g);
		return ret;
	}
	c->nchan = g->nchan;
	c->peer_caps = g->caps;
	snprintf(tc->peer, sizeof(tc->peer), "%s", g->peer);
	/* The peer's address, for messages of the common layer and its limits. */
	snprintf(c->host, sizeof(c->host), "%.*s", (int)sizeof(c->host) - 1, g->peer);
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", g->addr);
	tc->ctrl_fd = g->ctrl_fd;
	tc->ctrl_ssl = g->ctrl_ssl;
	g->ctrl_fd = -1;
	g->ctrl_ssl = NULL;
	for (unsigned i = 0; i < g->nchan; i++) {
		tc->ch[i].fd = g->data_fd[i];
		tc->ch[i].ssl = g->data_ssl[i];
		g->data_fd[i] = -1;
		g->data_ssl[i] = NULL;
	}
	group_drop(g);
	/* TLS sockets stay non-blocking: SSL calls never block, they poll. */
	ret = tc->ctrl_ssl ? 0 : tcp_set_nonblock(tc->ctrl_fd, false);
	tcp_tune_socket(tc->ctrl_fd, c->cfg.peer_timeout_ms);
	for (unsigned i = 0; i < c->nchan && !ret; i++) {
		ret = tc->ch[i].ssl ? 0 : tcp_set_nonblock(tc->ch[i].fd, false);
		tcp_tune_socket(tc->ch[i].fd, c->cfg.peer_timeout_ms);
	}
	if (ret)
		return rdmig_seterr_errno(err, ret, "setting up the connection from %s", tc->peer);
	log_info("connection from %s with %u data channels%s: authenticating", tc->peer, c->nchan,
		 tc->ctrl_ssl ? " over TLS" : "");
	return 0;
}

int tcp_accept(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn *c,
	       struct rdmig_err *err)
{
	struct tcp_listener *tl = to_tcp_listener(l);
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	struct tcp_group *done = NULL;
	char peer[TCP_PEER_MAX];
	int ret = 0;

	for (;;) {
		int64_t wake_at;
		unsigned np = 0, npend;
		int n, wait;

		expire(tl, rdmig_now_ms());
		tl->pfd[np++] = (struct pollfd){.fd = tl->fd, .events = POLLIN};
		tl->pfd[np++] = (struct pollfd){.fd = l->wake_fd, .events = POLLIN};
		npend = tl->npend;
		for (unsigned i = 0; i < npend; i++)
			tl->pfd[np++] =
			    (struct pollfd){.fd = tl->pend[i].fd, .events = tl->pend[i].events};
		/* A socket of an incomplete group only becomes readable when its peer gives up. */
		for (unsigned i = 0; i < TCP_MAX_GROUPS; i++) {
			struct tcp_group *g = &tl->grp[i];

			if (!g->used)
				continue;
			tl->pfd[np++] = (struct pollfd){.fd = g->ctrl_fd, .events = POLLIN};
			for (unsigned j = 0; j < g->nchan; j++)
				tl->pfd[np++] =
				    (struct pollfd){.fd = g->data_fd[j], .events = POLLIN};
		}
		wake_at = next_expiry(tl, deadline);
		wait = rdmig_ms_left(wake_at);
		if (wait >= 0 && wait < INT_MAX && wake_at != deadline)
			wait++; /* past the expiry, not just before it */
		n = poll(tl->pfd, np, wait);
		if (n < 0 && errno != EINTR) {
			ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "waiting for connections");
			break;
		}
		if (n > 0) {
			/* Groups first: their pollfds follow the pending ones, which may move. */
			for (unsigned i = 0, k = 2 + npend; i < TCP_MAX_GROUPS; i++) {
				struct tcp_group *g = &tl->grp[i];
				bool gone = false;

				if (!g->used)
					continue;
				for (unsigned j = 0; j < 1u + g->nchan; j++, k++)
					if (tl->pfd[k].fd >= 0 && tl->pfd[k].revents)
						gone = true;
				if (gone)
					group_forget(
					    tl, g, RDMIG_DROP_CLOSED,
					    "incomplete connection: the peer closed or sent "
					    "data before all %u data channels arrived",
					    g->nchan);
			}
			/* Pending sockets, last to first so that removals skip none. */
			for (unsigned i = npend; i-- > 0 && !done;)
				if (tl->pfd[2 + i].revents)
					done = pending_read(tl, i, c);
			if (done)
				break;
			if (tl->pfd[0].revents)
				accept_new(tl);
			if (tl->pfd[1].revents) {
				ret = -ETIMEDOUT; /* the listener is closing */
				break;
			}
		}
		if (deadline >= 0 && rdmig_now_ms() >= deadline) {
			ret = rdmig_seterr(err, -ETIMEDOUT, "no connection on port %u within %d ms",
					   l->port, timeout_ms);
			break;
		}
	}
	if (!done)
		return ret;
	snprintf(peer, sizeof(peer), "%s", done->peer);
	ret = group_take(done, to_tcp(c), err);
	if (!ret)
		return 0;
	rdmig_listen_drop(l, RDMIG_DROP_BUSY, peer, "%s", rdmig_err_str(err));
	return RDMIG_ACCEPT_DROPPED;
}
