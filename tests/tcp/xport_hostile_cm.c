/* SPDX-License-Identifier: MIT */
/*
 * xport_check hostile, raw rdma_cm peers (xport_hostile.h): connect requests
 * built by hand with librdmacm, each id on its own event channel with a small
 * QP of its own, that never run rdmig's handshake past their HELLO.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/rdma_cma.h>

#include "bytes.h"
#include "th_check.h"
#include "th_content.h"
#include "wire.h"
#include "xport_hostile.h"

struct cm_raw {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	bool qp;
	struct rdmig_wire_hello ack; /* the HELLO_ACK of an established channel */
	bool have_ack;
};

static int raw_event(struct cm_raw *r, enum rdma_cm_event_type want, int timeout_ms,
		     struct rdma_cm_event **ev)
{
	struct pollfd p = {.fd = r->ec->fd, .events = POLLIN};

	if (poll(&p, 1, timeout_ms) != 1 || rdma_get_cm_event(r->ec, ev))
		return -ETIMEDOUT;
	if ((*ev)->event != want) {
		int st = (*ev)->event == RDMA_CM_EVENT_REJECTED ? -ECONNREFUSED : -EPROTO;

		if (st == -EPROTO)
			th_note("raw rdma_cm peer: %s, expected %s", rdma_event_str((*ev)->event),
				rdma_event_str(want));
		rdma_ack_cm_event(*ev);
		return st;
	}
	return 0;
}

static void raw_close(struct cm_raw *r)
{
	if (r->qp)
		rdma_destroy_qp(r->id);
	if (r->id)
		rdma_destroy_id(r->id);
	if (r->ec)
		rdma_destroy_event_channel(r->ec);
	memset(r, 0, sizeof(*r));
}

/* Resolve, create a QP, send the connect request with `pdata`. */
static int raw_connect(struct cm_raw *r, const char *host, uint16_t port, const void *pdata,
		       uint8_t plen)
{
	struct rdma_conn_param p = {.private_data = pdata,
				    .private_data_len = plen,
				    .retry_count = 7,
				    .rnr_retry_count = 7};
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap = {.max_send_wr = 2, .max_recv_wr = 2, .max_send_sge = 1, .max_recv_sge = 1}};
	struct rdma_cm_event *ev;
	struct addrinfo *ai;
	char ps[8];
	int ret;

	memset(r, 0, sizeof(*r));
	r->ec = rdma_create_event_channel();
	if (!r->ec || rdma_create_id(r->ec, &r->id, NULL, RDMA_PS_TCP))
		return -errno;
	snprintf(ps, sizeof(ps), "%u", port);
	if (getaddrinfo(host, ps, NULL, &ai))
		return -EHOSTUNREACH;
	ret = rdma_resolve_addr(r->id, NULL, ai->ai_addr, 2000) ? -errno : 0;
	freeaddrinfo(ai);
	if (ret || (ret = raw_event(r, RDMA_CM_EVENT_ADDR_RESOLVED, 10000, &ev)))
		return ret;
	rdma_ack_cm_event(ev);
	if (rdma_resolve_route(r->id, 2000))
		return -errno;
	if ((ret = raw_event(r, RDMA_CM_EVENT_ROUTE_RESOLVED, 10000, &ev)))
		return ret;
	rdma_ack_cm_event(ev);
	if (rdma_create_qp(r->id, NULL, &qa))
		return -errno;
	r->qp = true;
	return rdma_connect(r->id, &p) ? -errno : 0;
}

static void hello_pdata(uint8_t *b, uint16_t chan, uint16_t nchan, uint64_t token)
{
	struct rdmig_wire_hello h = {.caps =
					 RDMIG_CAP_STREAMS | RDMIG_CAP_AUTH | RDMIG_CAP_LATE_RINGS,
				     .role = RDMIG_ROLE_CONNECTOR,
				     .nchan = nchan,
				     .chan_index = chan,
				     .max_ctrl = RDMIG_CTRL_MAX_PAYLOAD,
				     .token = token};

	rdmig_wire_cm_encode(b, RDMIG_MSG_HELLO, &h);
}

int cm_garbage(const char *host, uint16_t port, char *why, size_t len)
{
	uint8_t b[RDMIG_WIRE_CM_LEN];
	struct rdma_cm_event *ev;
	struct cm_raw r;
	int ret;

	why[0] = 0;
	memset(b, 0xc3, sizeof(b));
	ret = raw_connect(&r, host, port, b, sizeof(b));
	if (!ret && !(ret = raw_event(&r, RDMA_CM_EVENT_REJECTED, 30000, &ev))) {
		size_t n = ev->param.conn.private_data_len;

		if (n >= len)
			n = len - 1;
		if (ev->param.conn.private_data)
			memcpy(why, ev->param.conn.private_data, n);
		why[n] = 0;
		rdma_ack_cm_event(ev);
	}
	raw_close(&r);
	return ret;
}

struct cm_group {
	unsigned n;
	struct cm_raw ch[]; /* [0] control, [1 + i] data i */
};

int cm_group_open(const char *host, uint16_t port, unsigned nchan, uint64_t token,
		  struct cm_group **out)
{
	struct cm_group *g = calloc(1, sizeof(*g) + (1 + nchan) * sizeof(g->ch[0]));
	uint8_t b[RDMIG_WIRE_CM_LEN];
	int ret = 0;

	*out = g;
	if (!g)
		return -ENOMEM;
	g->n = 1 + nchan;
	for (unsigned i = 0; i < g->n && !ret; i++) {
		hello_pdata(b, i ? (uint16_t)(i - 1) : RDMIG_CHAN_CTRL, (uint16_t)nchan, token);
		ret = raw_connect(&g->ch[i], host, port, b, sizeof(b));
	}
	for (unsigned i = 0; i < g->n && !ret; i++) {
		struct rdma_cm_event *ev;

		ret = raw_event(&g->ch[i], RDMA_CM_EVENT_ESTABLISHED, 30000, &ev);
		if (ret)
			break;
		g->ch[i].have_ack = ev->param.conn.private_data_len >= RDMIG_WIRE_CM_LEN &&
				    !rdmig_wire_cm_decode(ev->param.conn.private_data,
							  ev->param.conn.private_data_len,
							  RDMIG_MSG_HELLO_ACK, &g->ch[i].ack, NULL);
		rdma_ack_cm_event(ev);
	}
	return ret;
}

bool cm_group_rings_hidden(const struct cm_group *g)
{
	if (!g)
		return false;
	for (unsigned i = 0; i < g->n; i++) {
		const struct rdmig_wire_hello *h = &g->ch[i].ack;

		if (!g->ch[i].have_ack || h->stream_ring || h->ring_addr || h->ring_rkey)
			return false;
	}
	return true;
}

void cm_group_close(struct cm_group *g)
{
	if (!g)
		return;
	for (unsigned i = 0; i < g->n; i++)
		raw_close(&g->ch[i]);
	free(g);
}

struct cm_flood {
	unsigned n;
	struct cm_raw r[];
};

unsigned cm_flood_open(const char *host, uint16_t port, unsigned n, uint64_t seed,
		       struct cm_flood **out)
{
	struct cm_flood *f = calloc(1, sizeof(*f) + n * sizeof(f->r[0]));
	uint8_t b[RDMIG_WIRE_CM_LEN];
	unsigned sent = 0;

	*out = f;
	if (!f)
		return 0;
	f->n = n;
	for (unsigned i = 0; i < n; i++) {
		hello_pdata(b, RDMIG_CHAN_CTRL, 1, th_mix64(seed ^ (0xf100 + i)));
		sent += raw_connect(&f->r[i], host, port, b, sizeof(b)) == 0;
	}
	return sent;
}

void cm_flood_close(struct cm_flood *f)
{
	if (!f)
		return;
	for (unsigned i = 0; i < f->n; i++)
		raw_close(&f->r[i]);
	free(f);
}

int cm_ring_mrs(pid_t pid, unsigned size)
{
	char line[512], tag[32], len[40];
	FILE *p = popen("rdma res show mr 2>/dev/null", "r");
	int n = 0;

	if (!p)
		return -1;
	snprintf(tag, sizeof(tag), " pid %d ", (int)pid);
	snprintf(len, sizeof(len), " mrlen %u ", size);
	while (fgets(line, sizeof(line), p))
		n += strstr(line, tag) && strstr(line, len);
	return pclose(p) ? -1 : n;
}
