/* SPDX-License-Identifier: MIT */
/*
 * rdma backend, connection management: address and route resolution,
 * connect, listen, accept (grouping the channels of one connection by
 * token), and the rdma_cm events of established connections.
 *
 * Every channel is its own rdma_cm id and RC QP; its 48-byte HELLO rides in
 * the private data of the connect request, the acceptor's HELLO (role
 * acceptor: the HELLO_ACK) in that of the reply.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "rdma_int.h"

static struct rd_listener *to_rl(struct rdmig_listener *l)
{
	return container_of(l, struct rd_listener, base);
}

/* ---- messages ---------------------------------------------------------- */

static int no_device_err(struct rdmig_err *err, const char *host, int code, const char *what)
{
	char names[128];

	if (!rdmig_rdma_devices(names, sizeof(names)))
		return rdmig_seterr(
		    err, -ENODEV,
		    "no RDMA device can reach %s (ibv_devices lists none): use "
		    "--backend tcp, or soft-roce-setup/ to create a SoftRoCE device",
		    host);
	return rdmig_seterr(err, code,
			    "no RDMA device can reach %s (%s; RDMA devices here: %s): use "
			    "--backend tcp, or an address on a network interface that has an "
			    "RDMA device",
			    host, what, names);
}

static const char *addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a = NULL;
	uint16_t port = 0;
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa && sa->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	} else if (sa && sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	}
	if (a)
		inet_ntop(sa->sa_family, a, ip, sizeof(ip));
	snprintf(buf, len, sa && sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
	return buf;
}

static int resolve(const char *host, uint16_t port, bool passive, struct sockaddr_storage *out,
		   struct rdmig_err *err)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	char ps[8];
	int ret;

	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	snprintf(ps, sizeof(ps), "%u", port);
	ret = getaddrinfo(host, ps, &hints, &res);
	if (ret)
		return rdmig_seterr(err, -EHOSTUNREACH, "cannot resolve '%s': %s", host,
				    gai_strerror(ret));
	memset(out, 0, sizeof(*out));
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

/* A setup failure the peer caused (its HELLOs), rather than a local shortage. */
static bool failure_is_peer(int code)
{
	return code == -EPROTO || code == -EXDEV;
}

static void set_ack_timeout(struct rdma_cm_id *id)
{
	uint8_t t = RD_ACK_TIMEOUT;

	/* Emulated devices are slow: a short ACK timeout retransmits for nothing. */
	if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &t, sizeof(t)))
		log_debug("rdma: RDMA_OPTION_ID_ACK_TIMEOUT not supported: %s", strerror(errno));
}

/* Wait for the next event on `ec` (its fd is non-blocking) until `deadline`. */
static int next_event(struct rdma_event_channel *ec, int64_t deadline, struct rdma_cm_event **ev)
{
	for (;;) {
		struct pollfd pfd = {.fd = ec->fd, .events = POLLIN};
		int64_t left;

		if (!rdma_get_cm_event(ec, ev))
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return rdmig_neg_errno();
		left = deadline < 0 ? -1 : deadline - rdmig_now_ms();
		if (deadline >= 0 && left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, left > 1000 || left < 0 ? 1000 : (int)left) < 0 && errno != EINTR)
			return rdmig_neg_errno();
	}
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) ? rdmig_neg_errno() : 0;
}

/*
 * A reason the connector can print: "rdmig: ..." in the reject private data
 * (an IB CM REJ carries at most 148 bytes of it).
 */
static void reject(struct rdma_cm_id *id, const char *why)
{
	char buf[148];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "rdmig: %s", why);

	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	if (rdma_reject(id, buf, (uint8_t)(n + 1)))
		log_debug("rdma: rdma_reject: %s", strerror(errno));
}

static void reject_reason(const void *pdata, uint8_t len, char *out, size_t outlen)
{
	const char *p = pdata;
	size_t n = 0;

	out[0] = '\0';
	if (!p || len < 8 || strncmp(p, "rdmig: ", 7))
		return;
	p += 7;
	len -= 7;
	while (n < len && n + 3 < outlen && p[n] >= 0x20 && p[n] < 0x7f) {
		out[n + 2] = p[n];
		n++;
	}
	if (n) {
		out[0] = ':';
		out[1] = ' ';
		out[n + 2] = '\0';
	}
}

/* ---- connect ----------------------------------------------------------- */

/* One rdma_cm event of the connecting side during setup. */
static int connect_event(struct rd_conn *rc, const struct rdma_cm_event *ev, unsigned *established,
			 struct rdmig_err *err)
{
	struct rd_chan *ch = ev->id->context;
	const char *host = rc->base.host;
	struct rdmig_wire_hello h;
	struct rdma_conn_param p;
	uint8_t pdata[RDMIG_WIRE_CM_LEN];
	char why[160];
	int ret;

	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		set_ack_timeout(ev->id);
		if (rdma_resolve_route(ev->id, RD_RESOLVE_MS))
			return rdmig_seterr_errno(err, rdmig_neg_errno(), "%s: rdma_resolve_route",
						  ch->name);
		return 0;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		if (!rc->pd) {
			ret = rd_dev_setup(rc, ev->id->verbs, ev->id->port_num, err);
			if (ret)
				return ret;
		} else if (ev->id->verbs != rc->verbs) {
			return rdmig_seterr(err, -EXDEV,
					    "%s resolved to device %s, the control channel to %s",
					    ch->name, ibv_get_device_name(ev->id->verbs->device),
					    ibv_get_device_name(rc->verbs->device));
		}
		ret = rd_chan_setup(ch, err);
		if (ret)
			return ret;
		rd_hello_make(ch, &h);
		rdmig_wire_cm_encode(pdata, RDMIG_MSG_HELLO, &h);
		rd_rdma_conn_param(&p, rc, RDMA_MAX_RESP_RES, RDMA_MAX_INIT_DEPTH, pdata,
				   sizeof(pdata));
		if (rdma_connect(ev->id, &p))
			return rdmig_seterr_errno(err, rdmig_neg_errno(), "%s: rdma_connect",
						  ch->name);
		return 0;
	case RDMA_CM_EVENT_ESTABLISHED:
		if (ev->param.conn.private_data_len < RDMIG_WIRE_CM_LEN)
			return rdmig_seterr(
			    err, -EPROTO,
			    "%s: the peer's reply carries %u bytes of private data, "
			    "not a HELLO: is it an rdmig listener?",
			    ch->name, ev->param.conn.private_data_len);
		ret = rdmig_wire_cm_decode(ev->param.conn.private_data,
					   ev->param.conn.private_data_len, RDMIG_MSG_HELLO_ACK, &h,
					   err);
		if (!ret)
			ret = rd_hello_accept(ch, &h, err);
		if (ret) {
			rdmig_err_prefix(err, "bad HELLO_ACK from %s", host);
			return ret;
		}
		ch->established = true;
		(*established)++;
		return 0;
	case RDMA_CM_EVENT_ADDR_ERROR:
		return no_device_err(err, host, -ENETUNREACH, "address resolution failed");
	case RDMA_CM_EVENT_ROUTE_ERROR:
		return no_device_err(err, host, -EHOSTUNREACH, "route resolution failed");
	case RDMA_CM_EVENT_REJECTED:
		reject_reason(ev->param.conn.private_data, ev->param.conn.private_data_len, why,
			      sizeof(why));
		return rdmig_seterr(err, -ECONNREFUSED,
				    "%s:%u rejected %s (RDMA_CM_EVENT_REJECTED, status %d%s)%s",
				    host, rc->base.cfg.port, ch->name, ev->status,
				    why[0] ? "" : ": nobody listening?", why);
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_CONNECT_ERROR:
		return rdmig_seterr(err, -EHOSTUNREACH, "connecting %s to %s:%u: %s (status %d)",
				    ch->name, host, rc->base.cfg.port, rdma_event_str(ev->event),
				    ev->status);
	case RDMA_CM_EVENT_DISCONNECTED:
		return rdmig_seterr(err, -ECONNRESET,
				    "%s:%u closed %s during setup (RDMA_CM_EVENT_DISCONNECTED)",
				    host, rc->base.cfg.port, ch->name);
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return rdmig_seterr(err, -ENODEV, "RDMA device removed while connecting");
	default:
		log_debug("rdma: %s: ignoring %s during connect", ch->name,
			  rdma_event_str(ev->event));
		return 0;
	}
}

int rd_connect(struct rdmig_conn *c, struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	struct sockaddr_storage dst;
	unsigned established = 0;
	int64_t deadline;
	int ret;

	rd_conn_init(rc);
	while (!rc->token)
		if (getrandom(&rc->token, sizeof(rc->token), 0) != sizeof(rc->token))
			return rdmig_seterr_errno(err, rdmig_neg_errno(), "getrandom");
	ret = resolve(c->host, c->cfg.port, false, &dst, err);
	if (ret)
		return ret;
	rc->ec = rdma_create_event_channel();
	if (!rc->ec)
		return no_device_err(err, c->host, rdmig_neg_errno(),
				     "rdma_create_event_channel failed");
	ret = set_nonblock(rc->ec->fd);
	if (ret)
		return rdmig_seterr_errno(err, ret, "event channel O_NONBLOCK");
	/* All channels resolve and connect in parallel; the acceptor groups them. */
	for (unsigned i = 0; i < rc->nch; i++) {
		struct rd_chan *ch = &rc->ch[i];

		if (rdma_create_id(rc->ec, &ch->id, ch, RDMA_PS_TCP)) {
			ch->id = NULL;
			return no_device_err(err, c->host, rdmig_neg_errno(),
					     "rdma_create_id failed");
		}
		if (rdma_resolve_addr(ch->id, NULL, (struct sockaddr *)&dst, RD_RESOLVE_MS)) {
			char what[96];

			snprintf(what, sizeof(what), "rdma_resolve_addr: %s", strerror(errno));
			return no_device_err(err, c->host, rdmig_neg_errno(), what);
		}
	}
	deadline = rdmig_now_ms() + c->cfg.connect_timeout_ms;
	while (established < rc->nch) {
		struct rdma_cm_event *ev;

		ret = next_event(rc->ec, deadline, &ev);
		if (ret == -ETIMEDOUT)
			return rdmig_seterr(err, ret,
					    "connecting to %s:%u timed out after %d ms (%u of %u "
					    "channels up)%s",
					    c->host, c->cfg.port, c->cfg.connect_timeout_ms,
					    established, rc->nch,
					    established ? ""
							: ": is the destination listening? On "
							  "SoftRoCE after a link flap, see whether "
							  "`rdma res show qp type GSI` says ERR "
							  "(docs/reliability.md)");
		if (ret)
			return rdmig_seterr_errno(err, ret, "rdma_get_cm_event");
		ret = connect_event(rc, ev, &established, err);
		rdma_ack_cm_event(ev);
		if (ret)
			return ret; /* transport.c destroys the half-built connection */
	}
	log_info("rdma: connected to %s:%u with %u data channels", c->host, c->cfg.port, c->nchan);
	return rd_conn_start(rc, err);
}

/* ---- listen ------------------------------------------------------------ */

int rd_listen(struct rdmig_listener *l, struct rdmig_err *err)
{
	struct rd_listener *rl = to_rl(l);
	const char *host = l->cfg.host ? l->cfg.host : "*";
	struct sockaddr_storage ss;
	char as[64];
	int ret;

	rl->inited = true;
	rl->ec = rdma_create_event_channel();
	if (!rl->ec)
		return no_device_err(err, host, rdmig_neg_errno(),
				     "rdma_create_event_channel failed");
	ret = set_nonblock(rl->ec->fd);
	if (ret)
		return rdmig_seterr_errno(err, ret, "event channel O_NONBLOCK");
	if (rdma_create_id(rl->ec, &rl->id, NULL, RDMA_PS_TCP)) {
		rl->id = NULL;
		return no_device_err(err, host, rdmig_neg_errno(), "rdma_create_id failed");
	}
	if (l->cfg.host) {
		ret = resolve(l->cfg.host, l->cfg.port, true, &ss, err);
		if (ret)
			return ret;
	} else {
		/* IPv6 wildcard: also accepts IPv4 (rdma_cm ids are not v6-only). */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		memset(&ss, 0, sizeof(ss));
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons(l->cfg.port);
	}
	ret = rdma_bind_addr(rl->id, (struct sockaddr *)&ss);
	if (ret && !l->cfg.host && errno == EAFNOSUPPORT) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		memset(&ss, 0, sizeof(ss));
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_ANY);
		s4->sin_port = htons(l->cfg.port);
		ret = rdma_bind_addr(rl->id, (struct sockaddr *)&ss);
	}
	if (ret) {
		ret = rdmig_neg_errno();
		if (ret == -EADDRINUSE)
			return rdmig_seterr(err, ret, "rdma: %s is already in use",
					    addr_str((struct sockaddr *)&ss, as, sizeof(as)));
		return no_device_err(err, host, ret, "rdma_bind_addr failed");
	}
	if (rdma_listen(rl->id, 64))
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "rdma_listen on %s",
					  addr_str((struct sockaddr *)&ss, as, sizeof(as)));
	l->port = ntohs(rdma_get_src_port(rl->id));
	log_info("rdma: listening on %s port %u", host, l->port);
	return 0;
}

/* Refuse and destroy every id of an incomplete connection; count it as one drop. */
static void pending_drop(struct rd_listener *rl, struct rd_pending *g, enum rdmig_drop_cause cause,
			 const char *why)
{
	rdmig_listen_drop(&rl->base, cause, g->peer, "%s", why);
	for (unsigned i = 0; i <= RDMIG_MAX_CHANNELS; i++) {
		if (!g->id[i])
			continue;
		reject(g->id[i], why);
		rdma_destroy_id(g->id[i]);
		g->id[i] = NULL;
	}
	memset(g, 0, sizeof(*g));
}

void rd_listener_close(struct rdmig_listener *l)
{
	struct rd_listener *rl = to_rl(l);

	if (!rl->inited)
		return;
	for (unsigned i = 0; i < RD_MAX_PENDING; i++)
		if (rl->pend[i].used)
			pending_drop(rl, &rl->pend[i], RDMIG_DROP_CLOSED, "listener closed");
	if (rl->id)
		rdma_destroy_id(rl->id);
	rl->id = NULL;
	if (rl->ec)
		rdma_destroy_event_channel(rl->ec);
	rl->ec = NULL;
	rl->inited = false;
}

/* ---- accept ------------------------------------------------------------ */

static struct rd_pending *pending_of(struct rd_listener *rl, const struct rdma_cm_id *id)
{
	for (unsigned i = 0; i < RD_MAX_PENDING; i++) {
		struct rd_pending *g = &rl->pend[i];

		if (!g->used)
			continue;
		for (unsigned j = 0; j <= RDMIG_MAX_CHANNELS; j++)
			if (g->id[j] == id)
				return g;
	}
	return NULL;
}

static void refuse(struct rd_listener *rl, struct rdma_cm_id *id, const char *why)
{
	char as[64];

	rdmig_listen_drop(&rl->base, RDMIG_DROP_REFUSED,
			  addr_str(rdma_get_peer_addr(id), as, sizeof(as)), "%s", why);
	reject(id, why);
	rdma_destroy_id(id);
}

/* A free group for a new token from `addr`, evicting one under the limits if need be. */
static struct rd_pending *pending_new(struct rd_listener *rl, const char *addr)
{
	struct rdmig_limit_ent ent[RD_MAX_PENDING];
	struct rd_pending *used[RD_MAX_PENDING];
	char why[200];
	unsigned n = 0, held;
	int v;

	for (unsigned i = 0; i < RD_MAX_PENDING; i++) {
		if (!rl->pend[i].used)
			continue;
		used[n] = &rl->pend[i];
		ent[n++] =
		    (struct rdmig_limit_ent){.addr = rl->pend[i].addr, .since = rl->pend[i].since};
	}
	v = rdmig_limit_victim(ent, n, addr, RD_PENDING_PER_ADDR, RD_MAX_PENDING, &held);
	if (v >= 0) {
		if (!strcmp(ent[v].addr, addr))
			snprintf(
			    why, sizeof(why),
			    "incomplete connection evicted, the oldest of %u from %s (limit %d "
			    "per address), for a newer one",
			    held, addr, RD_PENDING_PER_ADDR);
		else
			snprintf(why, sizeof(why),
				 "incomplete connection evicted, the oldest of the %u from %s, the "
				 "most of any address, for one from %s (limit %d in all)",
				 held, ent[v].addr, addr, RD_MAX_PENDING);
		pending_drop(rl, used[v], RDMIG_DROP_EVICTED, why);
	}
	for (unsigned i = 0; i < RD_MAX_PENDING; i++)
		if (!rl->pend[i].used)
			return &rl->pend[i];
	return NULL;
}

/* A connect request (its event already acknowledged): validate and group it. */
static void connect_request(struct rd_listener *rl, struct rdma_cm_id *id, const uint8_t *pdata,
			    unsigned plen, const struct rdma_conn_param *req)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rd_pending *g = NULL;
	struct rdmig_wire_hello h;
	char addr[RDMIG_ADDR_MAX], why[160];
	unsigned slot;
	int timeout;

	if (plen < RDMIG_WIRE_CM_LEN) {
		snprintf(why, sizeof(why), "no HELLO (%u bytes of private data)", plen);
		refuse(rl, id, why);
		return;
	}
	if (rdmig_wire_cm_decode(pdata, plen, RDMIG_MSG_HELLO, &h, &e) ||
	    rd_hello_check(&h, RDMIG_ROLE_CONNECTOR, &e)) {
		refuse(rl, id, rdmig_err_str(&e));
		return;
	}
	if (h.nchan > rl->base.cfg.channels) {
		/* Read by the connector's user: both numbers and both ways out. */
		snprintf(why, sizeof(why),
			 "the destination allows at most %u data channels, this side asked for %u: "
			 "use --channels %u or raise the destination's --channels",
			 rl->base.cfg.channels, h.nchan, rl->base.cfg.channels);
		refuse(rl, id, why);
		return;
	}
	for (unsigned i = 0; i < RD_MAX_PENDING && !g; i++)
		if (rl->pend[i].used && rl->pend[i].token == h.token)
			g = &rl->pend[i];
	if (!g) {
		rdmig_addr_ip(rdma_get_peer_addr(id), addr, sizeof(addr));
		g = pending_new(rl, addr);
		if (!g) {
			refuse(rl, id, "too many incomplete connections");
			return;
		}
		memset(g, 0, sizeof(*g));
		g->used = true;
		g->token = h.token;
		g->nchan = h.nchan;
		memcpy(g->addr, addr, sizeof(g->addr));
		addr_str(rdma_get_peer_addr(id), g->peer, sizeof(g->peer));
		timeout = rl->base.cfg.connect_timeout_ms;
		g->since = rdmig_now_ms();
		g->expires = g->since + (timeout > 1000 ? timeout : 1000);
	}
	if (h.nchan != g->nchan) {
		refuse(rl, id, "channel count differs from the other channels of the connection");
		return;
	}
	slot = h.chan_index == RDMIG_CHAN_CTRL ? 0 : 1u + h.chan_index;
	if (g->id[slot]) {
		refuse(rl, id, "channel already connected");
		return;
	}
	g->id[slot] = id;
	g->hello[slot] = h;
	g->resp[slot] = req->responder_resources;
	g->init[slot] = req->initiator_depth;
	g->have++;
	id->context = NULL;
}

static struct rd_pending *pending_complete(struct rd_listener *rl)
{
	for (unsigned i = 0; i < RD_MAX_PENDING; i++)
		if (rl->pend[i].used && rl->pend[i].have == 1u + rl->pend[i].nchan)
			return &rl->pend[i];
	return NULL;
}

/* Drops expired groups; returns the earliest expiry left (-1: none). */
static int64_t pending_expire(struct rd_listener *rl)
{
	int64_t now = rdmig_now_ms(), next = -1;

	for (unsigned i = 0; i < RD_MAX_PENDING; i++) {
		struct rd_pending *g = &rl->pend[i];
		char why[128];

		if (!g->used)
			continue;
		if (g->expires <= now) {
			snprintf(why, sizeof(why),
				 "incomplete connection: %u of %u channels arrived in time: the "
				 "other channels of the connection did not arrive",
				 g->have, 1u + g->nchan);
			pending_drop(rl, g, RDMIG_DROP_TIMEOUT, why);
			continue;
		}
		if (next < 0 || g->expires < next)
			next = g->expires;
	}
	return next;
}

/* Pending events of the listener channel; returns < 0 on a fatal listener error. */
static int listener_events(struct rd_listener *rl, struct rdmig_err *err)
{
	struct rdma_cm_event *ev;

	while (!rdma_get_cm_event(rl->ec, &ev)) {
		enum rdma_cm_event_type type = ev->event;
		struct rdma_cm_id *id = ev->id;
		struct rdma_conn_param req = {0};
		uint8_t pdata[256];
		unsigned plen = 0;
		struct rd_pending *g;

		if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			req = ev->param.conn;
			req.private_data = NULL;
			plen = ev->param.conn.private_data_len;
			if (plen > sizeof(pdata))
				plen = sizeof(pdata);
			if (plen)
				memcpy(pdata, ev->param.conn.private_data, plen);
		}
		/* Acknowledge first: rdma_destroy_id() waits for it. */
		rdma_ack_cm_event(ev);
		if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			connect_request(rl, id, pdata, plen, &req);
			continue;
		}
		if (id == rl->id) {
			if (type == RDMA_CM_EVENT_DEVICE_REMOVAL ||
			    type == RDMA_CM_EVENT_ADDR_CHANGE)
				return rdmig_seterr(err, -ENODEV, "rdma listener: %s",
						    rdma_event_str(type));
			continue;
		}
		g = pending_of(rl, id);
		if (g) {
			char why[96];

			snprintf(why, sizeof(why), "%s on a pending connection request",
				 rdma_event_str(type));
			pending_drop(rl, g, RDMIG_DROP_CLOSED, why);
		}
	}
	return 0;
}

/*
 * Listener thread: take a complete group into the connection and answer
 * every channel (rdma_accept) without waiting for the peer again; the
 * handshake thread waits for ESTABLISHED (rd_accept_finish).
 */
static int accept_group(struct rd_listener *rl, struct rd_pending *g, struct rd_conn *rc,
			struct rdmig_err *err)
{
	struct rdmig_conn *c = &rc->base;
	struct rd_pending grp = *g;
	int ret;

	/* From here the ids belong to the connection, whose close() releases them. */
	memset(g, 0, sizeof(*g));
	c->nchan = grp.nchan;
	rd_conn_init(rc);
	rc->token = grp.token;
	for (unsigned i = 0; i < rc->nch; i++) {
		rc->ch[i].id = grp.id[i];
		rc->ch[i].id->context = &rc->ch[i];
	}
	snprintf(c->host, sizeof(c->host), "%s", grp.peer);
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", grp.addr);

	rc->ec = rdma_create_event_channel();
	if (!rc->ec) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "rdma_create_event_channel");
		goto out_reject;
	}
	ret = set_nonblock(rc->ec->fd);
	if (ret) {
		rdmig_seterr_errno(err, ret, "event channel O_NONBLOCK");
		goto out_reject;
	}
	for (unsigned i = 0; i < rc->nch; i++) {
		if (rdma_migrate_id(rc->ch[i].id, rc->ec)) {
			ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "rdma_migrate_id");
			goto out_reject;
		}
	}
	ret = rd_dev_setup(rc, rc->ch[0].id->verbs, rc->ch[0].id->port_num, err);
	if (ret)
		goto out_reject;
	for (unsigned i = 0; i < rc->nch; i++) {
		struct rd_chan *ch = &rc->ch[i];
		struct rdmig_wire_hello h;
		struct rdma_conn_param p;
		uint8_t pdata[RDMIG_WIRE_CM_LEN];

		if (ch->id->verbs != rc->verbs) {
			ret = rdmig_seterr(err, -EXDEV, "%s arrived on another RDMA device",
					   ch->name);
			goto out_reject;
		}
		ret = rd_hello_accept(ch, &grp.hello[i], err);
		if (ret)
			goto out_reject;
		set_ack_timeout(ch->id);
		ret = rd_chan_setup(ch, err);
		if (ret)
			goto out_reject;
		rd_hello_make(ch, &h);
		rdmig_wire_cm_encode(pdata, RDMIG_MSG_HELLO_ACK, &h);
		rd_rdma_conn_param(&p, rc, grp.resp[i], grp.init[i], pdata, sizeof(pdata));
		if (rdma_accept(ch->id, &p)) {
			ret =
			    rdmig_seterr_errno(err, rdmig_neg_errno(), "%s: rdma_accept", ch->name);
			goto out_reject;
		}
		grp.id[i] = NULL; /* answered */
	}
	log_info("rdma: connection from %s with %u data channels: authenticating", c->host,
		 c->nchan);
	return 0;

out_reject:
	/* Channels not yet answered learn why; close() destroys every id. */
	for (unsigned i = 0; i < rc->nch; i++)
		if (grp.id[i])
			reject(grp.id[i], rdmig_err_str(err));
	return ret;
}

int rd_accept_finish(struct rdmig_conn *c, int64_t deadline, struct rdmig_err *err)
{
	struct rd_conn *rc = to_rd(c);
	unsigned established = 0;
	int ret;

	while (established < rc->nch) {
		struct rdma_cm_event *ev;
		struct rd_chan *ch;
		enum rdma_cm_event_type type;
		int64_t slice = rdmig_now_ms() + RD_WAIT_SLICE_MS;
		int status;

		/* In slices: an abort (deadline, eviction, closing listener) ends the wait. */
		ret = rdmig_conn_failed(c, err) ? c->fail.err.code : 0;
		if (ret)
			return ret;
		ret = next_event(rc->ec, deadline < slice ? deadline : slice, &ev);
		if (ret == -ETIMEDOUT && rdmig_now_ms() < deadline)
			continue;
		if (ret == -ETIMEDOUT)
			return rdmig_seterr(err, ret,
					    "%u of %u channels established within the connect "
					    "timeout",
					    established, rc->nch);
		if (ret)
			return rdmig_seterr_errno(err, ret, "rdma_get_cm_event");
		ch = ev->id->context;
		type = ev->event;
		status = ev->status;
		rdma_ack_cm_event(ev);
		if (type == RDMA_CM_EVENT_ESTABLISHED) {
			ch->established = true;
			established++;
		} else if (type != RDMA_CM_EVENT_TIMEWAIT_EXIT) {
			return rdmig_seterr(err, -ECONNABORTED, "%s on %s (status %d)",
					    rdma_event_str(type), ch->name, status);
		}
	}
	return rd_conn_start(rc, err);
}

int rd_accept(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn *c, struct rdmig_err *err)
{
	struct rd_listener *rl = to_rl(l);
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	struct rd_pending *g;
	char peer[64];
	int ret = 0;

	for (;;) {
		int64_t next = pending_expire(rl), now = rdmig_now_ms(), until = deadline;
		struct pollfd pfd[2] = {{.fd = rl->ec->fd, .events = POLLIN},
					{.fd = l->wake_fd, .events = POLLIN}};
		int wait_ms;

		g = pending_complete(rl);
		if (g)
			break;
		if (deadline >= 0 && now >= deadline)
			return rdmig_seterr(err, -ETIMEDOUT, "no rdma connection within %d ms",
					    timeout_ms);
		if (next >= 0 && (until < 0 || next < until))
			until = next;
		wait_ms = until < 0 ? 1000 : (int)(until - now < 1000 ? until - now : 1000);
		if (poll(pfd, 2, wait_ms) < 0 && errno != EINTR)
			return rdmig_seterr_errno(err, rdmig_neg_errno(), "poll");
		if (pfd[1].revents)
			return -ETIMEDOUT; /* the listener is closing */
		ret = listener_events(rl, err);
		if (ret)
			return ret;
	}
	snprintf(peer, sizeof(peer), "%s", g->peer);
	ret = accept_group(rl, g, to_rd(c), err);
	if (!ret)
		return 0;
	rdmig_listen_drop(l, failure_is_peer(ret) ? RDMIG_DROP_REFUSED : RDMIG_DROP_BUSY, peer,
			  "%s", rdmig_err_str(err));
	return RDMIG_ACCEPT_DROPPED;
}

/* ---- events of established connections (progress thread) ---------------- */

void rd_cm_events(struct rd_conn *rc)
{
	struct rdma_cm_event *ev;

	while (!rdma_get_cm_event(rc->ec, &ev)) {
		struct rd_chan *ch = ev->id->context;
		enum rdma_cm_event_type type = ev->event;

		rdma_ack_cm_event(ev);
		switch (type) {
		case RDMA_CM_EVENT_DISCONNECTED:
			/* Queue what already arrived before telling anyone. */
			for (unsigned i = 0; i < rc->nch; i++)
				rd_reap_rx(&rc->ch[i]);
			rd_peer_gone(rc, true,
				     "peer closed the connection (RDMA_CM_EVENT_DISCONNECTED on "
				     "%s)",
				     ch->name);
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			rd_fail(rc, NULL, -ENODEV,
				"RDMA device removed (RDMA_CM_EVENT_DEVICE_REMOVAL on %s)",
				ch->name);
			break;
		case RDMA_CM_EVENT_ADDR_CHANGE:
			rd_fail(rc, NULL, -ENETDOWN,
				"local address changed (RDMA_CM_EVENT_ADDR_CHANGE on %s): the "
				"RDMA path is gone",
				ch->name);
			break;
		case RDMA_CM_EVENT_TIMEWAIT_EXIT:
		case RDMA_CM_EVENT_ESTABLISHED:
			break;
		default:
			log_debug("rdma: %s: %s", ch->name, rdma_event_str(type));
			break;
		}
	}
}
