/* SPDX-License-Identifier: MIT */
/*
 * Common layer of the transport: argument validation, the region table,
 * memlock accounting, the layout exchange, the auth gate and the counters.
 * Backends (tcp_*.c, rdma*.c) only move bytes; everything that must behave the
 * same on both lives here so that the engine cannot tell them apart.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "units.h"
#include "xport.h"

#define CTRL_FRAME_MAX (RDMIG_WIRE_HDR_LEN + RDMIG_CTRL_MAX_PAYLOAD)

const char *rdmig_backend_name(enum rdmig_backend b)
{
	return b == RDMIG_BACKEND_RDMA ? "rdma" : "tcp";
}

int rdmig_backend_parse(const char *s, enum rdmig_backend *out, struct rdmig_err *err)
{
	if (s && !strcmp(s, "tcp")) {
		*out = RDMIG_BACKEND_TCP;
		return 0;
	}
	if (s && !strcmp(s, "rdma")) {
		*out = RDMIG_BACKEND_RDMA;
		return 0;
	}
	return rdmig_seterr(err, -EINVAL, "invalid backend '%s': expected rdma or tcp", s ? s : "");
}

static const struct rdmig_xport_ops *ops_for(enum rdmig_backend b)
{
	return b == RDMIG_BACKEND_RDMA ? &rdmig_rdma_ops : &rdmig_tcp_ops;
}

void rdmig_xport_cfg_defaults(struct rdmig_xport_cfg *cfg)
{
	if (!cfg->channels)
		cfg->channels = 1;
	if (!cfg->signal_every && cfg->depth)
		cfg->signal_every = cfg->depth / 4 ? cfg->depth / 4 : 1;
	if (!cfg->stream_ring)
		cfg->stream_ring = 1u << 20;
	if (!cfg->connect_timeout_ms)
		cfg->connect_timeout_ms = 10000;
	if (!cfg->peer_timeout_ms)
		cfg->peer_timeout_ms = 15000;
	if (!cfg->port)
		cfg->port = 0;
}

static int cfg_check(const struct rdmig_xport_cfg *cfg, bool listening, struct rdmig_err *err)
{
	if (cfg->backend != RDMIG_BACKEND_TCP && cfg->backend != RDMIG_BACKEND_RDMA)
		return rdmig_seterr(err, -EINVAL, "unknown backend %d", (int)cfg->backend);
	if (cfg->channels < 1 || cfg->channels > RDMIG_MAX_CHANNELS)
		return rdmig_seterr(err, -EINVAL,
				    "channels expects a value between 1 and %d, got %u",
				    RDMIG_MAX_CHANNELS, cfg->channels);
	if (cfg->compress_level < 0 || cfg->compress_level > 19)
		return rdmig_seterr(err, -EINVAL,
				    "compression level expects a value between 0 (off) and 19, "
				    "got %d",
				    cfg->compress_level);
	/* Three keepalives must fit: one late or lost is not a dead peer. */
	if (cfg->peer_timeout_ms < 3 * RDMIG_KEEPALIVE_INTERVAL_MS ||
	    cfg->peer_timeout_ms > 3600 * 1000)
		return rdmig_seterr(err, -EINVAL,
				    "peer timeout expects a value between %d s and 3600 s, got "
				    "%.3f s",
				    3 * RDMIG_KEEPALIVE_INTERVAL_MS / 1000,
				    (double)cfg->peer_timeout_ms / 1e3);
	if (cfg->tls && cfg->backend == RDMIG_BACKEND_RDMA)
		return rdmig_seterr(
		    err, -EINVAL,
		    "--tls works on the tcp backend only: rdmig does not encrypt RoCE "
		    "traffic; see docs/security.md");
	if (cfg->tls && (!cfg->tls_key || cfg->tls_key_len < 16))
		return rdmig_seterr(err, -EINVAL,
				    "--tls needs a pre-shared key of at least 16 bytes: pass "
				    "--key-file PATH (or set $RDMIG_KEY_FILE) on both sides");
	if (!listening && (!cfg->host || !*cfg->host))
		return rdmig_seterr(err, -EINVAL, "connect needs a peer address");
	if (!listening && !cfg->port)
		return rdmig_seterr(err, -EINVAL, "connect needs a peer port");
	if (cfg->host && strlen(cfg->host) >= 256)
		return rdmig_seterr(err, -EINVAL, "address too long");
	if (cfg->stream_ring & (cfg->stream_ring - 1) || cfg->stream_ring < 4096 ||
	    cfg->stream_ring > (1u << 30))
		return rdmig_seterr(err, -EINVAL,
				    "stream ring expects a power of two between 4 KiB and 1 GiB");
	return 0;
}

/* ---- connection lifetime ---------------------------------------------- */

struct rdmig_conn *rdmig_conn_alloc(const struct rdmig_xport_cfg *cfg, bool server)
{
	const struct rdmig_xport_ops *ops = ops_for(cfg->backend);
	struct rdmig_conn *c;

	c = calloc(1, ops->conn_size);
	if (!c)
		return NULL;
	c->ops = ops;
	c->cfg = *cfg;
	if (cfg->host)
		snprintf(c->host, sizeof(c->host), "%s", cfg->host);
	c->cfg.host = c->host;
	c->is_server = server;
	c->nchan = cfg->channels;
	pthread_mutex_init(&c->reg_lock, NULL);
	return c;
}

static int run_auth(struct rdmig_conn *c, struct rdmig_err *err)
{
	int ret;

	if (!c->cfg.auth) {
		c->authenticated = false;
		return 0;
	}
	ret = c->cfg.auth(c, c->is_server, c->cfg.auth_ctx, err);
	if (ret) {
		rdmig_err_prefix(err, "authentication failed");
		return ret;
	}
	c->authenticated = true;
	return 0;
}

int rdmig_conn_secure(struct rdmig_conn *c, struct rdmig_err *err)
{
	int ret = run_auth(c, err);

	/* Only now may the backend register anything for the peer's access. */
	if (!ret && c->ops->post_auth)
		ret = c->ops->post_auth(c, err);
	return ret;
}

int rdmig_connect(const struct rdmig_xport_cfg *cfg_in, struct rdmig_conn **out,
		  struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = *cfg_in;
	struct rdmig_conn *c;
	int ret;

	*out = NULL;
	rdmig_xport_cfg_defaults(&cfg);
	ret = cfg_check(&cfg, false, err);
	if (ret)
		return ret;
	c = rdmig_conn_alloc(&cfg, false);
	if (!c)
		return rdmig_seterr(err, -ENOMEM, "out of memory for a connection");
	ret = c->ops->connect(c, err);
	/* The TLS key was only needed for the handshake: keep no pointer to it. */
	c->cfg.tls_key = NULL;
	c->cfg.tls_key_len = 0;
	if (ret)
		goto out_destroy;
	ret = rdmig_conn_secure(c, err);
	if (ret)
		goto out_destroy;
	*out = c;
	return 0;
out_destroy:
	rdmig_conn_destroy(c);
	return ret;
}

int rdmig_listen(const struct rdmig_xport_cfg *cfg_in, struct rdmig_listener **out,
		 struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = *cfg_in;
	const struct rdmig_xport_ops *ops;
	struct rdmig_listener *l;
	int ret;

	*out = NULL;
	rdmig_xport_cfg_defaults(&cfg);
	ret = cfg_check(&cfg, true, err);
	if (ret)
		return ret;
	ops = ops_for(cfg.backend);
	l = calloc(1, ops->listener_size);
	if (!l)
		return rdmig_seterr(err, -ENOMEM, "out of memory for a listener");
	l->ops = ops;
	l->cfg = cfg;
	if (cfg.host)
		snprintf(l->host, sizeof(l->host), "%s", cfg.host);
	l->cfg.host = l->host[0] ? l->host : NULL;
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0) {
		ret = rdmig_seterr_errno(err, rdmig_neg_errno(), "eventfd for a listener");
		free(l);
		return ret;
	}
	ret = ops->listen(l, err);
	l->cfg.tls_key = NULL;
	l->cfg.tls_key_len = 0;
	if (!ret)
		ret = rdmig_acceptor_start(l, err);
	if (ret) {
		rdmig_listener_destroy(l);
		return ret;
	}
	*out = l;
	return 0;
}

uint16_t rdmig_listener_port(const struct rdmig_listener *l)
{
	return l->port;
}

int rdmig_accept(struct rdmig_listener *l, int timeout_ms, struct rdmig_conn **out,
		 struct rdmig_err *err)
{
	*out = NULL;
	return rdmig_acceptor_take(l, timeout_ms, out, err);
}

void rdmig_listener_destroy(struct rdmig_listener *l)
{
	if (!l)
		return;
	/* The thread first: it is the only user of the backend's listener state. */
	rdmig_acceptor_stop(l);
	l->ops->listener_close(l);
	close(l->wake_fd);
	free(l);
}

void rdmig_conn_destroy(struct rdmig_conn *c)
{
	if (!c)
		return;
	/* Drain first so that no posted work refers to memory being deregistered. */
	if (c->ops->drain)
		c->ops->drain(c);
	rdmig_revoke(c);
	c->ops->close(c);
	pthread_mutex_destroy(&c->reg_lock);
	free(c);
}

unsigned rdmig_conn_channels(const struct rdmig_conn *c)
{
	return c->nchan;
}

enum rdmig_backend rdmig_conn_backend(const struct rdmig_conn *c)
{
	return c->cfg.backend;
}

int rdmig_conn_fail(struct rdmig_conn *c, struct rdmig_err *err, int code, const char *fmt, ...)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	const struct rdmig_err *first;
	va_list ap;

	va_start(ap, fmt);
	rdmig_vseterr(&e, code, fmt, ap);
	va_end(ap);
	if (rdmig_err_slot_put(&c->fail, &e))
		log_debug("connection failed: %s", e.msg);
	first = rdmig_err_slot_get(&c->fail);
	/* Report the first error of the connection, which may be another thread's. */
	if (err && !err->code)
		*err = *first;
	return first->code;
}

bool rdmig_conn_failed(const struct rdmig_conn *c, struct rdmig_err *err)
{
	const struct rdmig_err *first = rdmig_err_slot_get(&((struct rdmig_conn *)c)->fail);

	if (!first)
		return false;
	if (err && !err->code)
		*err = *first;
	return true;
}

void rdmig_conn_abort(struct rdmig_conn *c, int code, const char *why)
{
	rdmig_conn_fail(c, NULL, code, "%s", why);
	if (c->ops->wake)
		c->ops->wake(c);
}

/* Every public call on a failed connection reports the original cause. */
#define CHECK_ALIVE(c, err)                                                                        \
	do {                                                                                       \
		if (rdmig_conn_failed((c), (err)))                                                 \
			return (c)->fail.err.code;                                                 \
	} while (0)

static int check_chan(const struct rdmig_conn *c, unsigned chan, struct rdmig_err *err)
{
	if (chan >= c->nchan)
		return rdmig_seterr(err, -EINVAL, "channel %u out of range (connection has %u)",
				    chan, c->nchan);
	return 0;
}

/* ---- memlock ----------------------------------------------------------- */

uint64_t rdmig_memlock_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return 0;
	if (rl.rlim_cur == RLIM_INFINITY)
		return UINT64_MAX;
	return rl.rlim_cur;
}

int rdmig_memlock_check(uint64_t already, uint64_t bytes, struct rdmig_err *err)
{
	uint64_t limit = rdmig_memlock_limit();
	char need[32], have[32];

	if (limit == UINT64_MAX || already + bytes <= limit)
		return 0;
	rdmig_fmt_size(already + bytes, need, sizeof(need));
	rdmig_fmt_size(limit, have, sizeof(have));
	return rdmig_seterr(err, -ENOMEM,
			    "pinning guest RAM for RDMA needs a memlock limit of at least %s "
			    "(%llu KiB) but the limit is %s: raise it with 'ulimit -l unlimited' "
			    "(or 'ulimit -l %llu'), LimitMEMLOCK=infinity for a systemd unit, or "
			    "'* - memlock unlimited' in /etc/security/limits.conf",
			    need, (unsigned long long)((already + bytes + 1023) / 1024), have,
			    (unsigned long long)((already + bytes + 1023) / 1024));
}

/* ---- regions ----------------------------------------------------------- */

/* A region with either flag is reachable by the peer and goes into the layout. */
#define REMOTE_ACCESS (RDMIG_REG_REMOTE_WRITE | RDMIG_REG_REMOTE_READ)

struct rdmig_region *rdmig_region_get(struct rdmig_conn *c, uint32_t id)
{
	if (id >= RDMIG_MAX_REGIONS || !c->regions[id].used)
		return NULL;
	return &c->regions[id];
}

const struct rdmig_remote *rdmig_remote_find(const struct rdmig_conn *c, uint32_t id)
{
	for (unsigned i = 0; i < c->nremote; i++)
		if (c->remote[i].pub.id == id)
			return &c->remote[i];
	return NULL;
}

int rdmig_reg(struct rdmig_conn *c, const char *name, void *addr, uint64_t len, unsigned flags,
	      uint32_t *id, struct rdmig_err *err)
{
	struct rdmig_region *r = NULL;
	int ret;

	CHECK_ALIVE(c, err);
	if (!addr || !len)
		return rdmig_seterr(err, -EINVAL, "region '%s': empty region", name ? name : "");
	if (flags & ~(RDMIG_REG_REMOTE_WRITE | RDMIG_REG_REMOTE_READ))
		return rdmig_seterr(err, -EINVAL, "region '%s': unknown flags 0x%x",
				    name ? name : "", flags);
	if (name && strlen(name) >= RDMIG_REGION_NAME_MAX)
		return rdmig_seterr(err, -EINVAL, "region name '%s' longer than %d bytes", name,
				    RDMIG_REGION_NAME_MAX - 1);
	pthread_mutex_lock(&c->reg_lock);
	for (uint32_t i = 0; i < RDMIG_MAX_REGIONS; i++) {
		if (!c->regions[i].used) {
			r = &c->regions[i];
			r->id = i;
			break;
		}
	}
	if (!r) {
		ret =
		    rdmig_seterr(err, -ENOSPC, "too many regions (at most %d)", RDMIG_MAX_REGIONS);
		goto out_unlock;
	}
	/* Only the rdma backend pins memory; tcp reads and writes it with syscalls. */
	if (c->cfg.backend == RDMIG_BACKEND_RDMA) {
		ret = rdmig_memlock_check(c->pinned_bytes, len, err);
		if (ret) {
			rdmig_err_prefix(err, "region '%s'", name ? name : "");
			goto out_unlock;
		}
	}
	memset(r, 0, sizeof(*r));
	r->id = (uint32_t)(r - c->regions);
	snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
	r->addr = addr;
	r->len = len;
	r->flags = flags;
	ret = c->ops->reg(c, r, err);
	if (ret) {
		memset(r, 0, sizeof(*r));
		goto out_unlock;
	}
	r->used = true;
	if (c->cfg.backend == RDMIG_BACKEND_RDMA)
		c->pinned_bytes += len;
	atomic_fetch_add(&c->st_regs_total, 1);
	if (flags & REMOTE_ACCESS)
		atomic_fetch_add(&c->st_regions_remote, 1);
	*id = r->id;
out_unlock:
	pthread_mutex_unlock(&c->reg_lock);
	return ret;
}

void rdmig_revoke(struct rdmig_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->reg_lock);
	for (unsigned i = 0; i < RDMIG_MAX_REGIONS; i++) {
		struct rdmig_region *r = &c->regions[i];

		if (!r->used)
			continue;
		c->ops->dereg(c, r);
		if (r->flags & REMOTE_ACCESS)
			atomic_fetch_sub(&c->st_regions_remote, 1);
		if (c->cfg.backend == RDMIG_BACKEND_RDMA)
			c->pinned_bytes -= r->len;
		atomic_fetch_add(&c->st_deregs_total, 1);
		memset(r, 0, sizeof(*r));
	}
	pthread_mutex_unlock(&c->reg_lock);
}

/* ---- control channel --------------------------------------------------- */

static int send_frame(struct rdmig_conn *c, uint8_t type, uint16_t app_type, const void *payload,
		      size_t len, struct rdmig_err *err)
{
	uint8_t *frame;
	int ret;

	if (len > RDMIG_CTRL_MAX_PAYLOAD)
		return rdmig_seterr(err, -EMSGSIZE,
				    "control message of %zu bytes exceeds the %d-byte limit", len,
				    RDMIG_CTRL_MAX_PAYLOAD);
	frame = malloc(RDMIG_WIRE_HDR_LEN + len);
	if (!frame)
		return rdmig_seterr(err, -ENOMEM, "out of memory for a control message");
	rdmig_wire_hdr_encode(frame, type, RDMIG_CHAN_CTRL, app_type, (uint32_t)len);
	if (len)
		memcpy(frame + RDMIG_WIRE_HDR_LEN, payload, len);
	ret = c->ops->ctrl_send(c, frame, RDMIG_WIRE_HDR_LEN + len, err);
	free(frame);
	if (!ret)
		atomic_fetch_add(&c->st_ctrl_sent, 1);
	return ret;
}

static int store_layout(struct rdmig_conn *c, const uint8_t *p, size_t len, struct rdmig_err *err)
{
	struct rdmig_wire_region regs[RDMIG_MAX_REGIONS];
	uint32_t n;
	int ret;

	ret = rdmig_wire_layout_decode(p, len, regs, RDMIG_MAX_REGIONS, &n, err);
	if (ret)
		return rdmig_conn_fail(c, err, ret, "bad LAYOUT from peer: %s", rdmig_err_str(err));
	pthread_mutex_lock(&c->reg_lock);
	for (uint32_t i = 0; i < n; i++) {
		struct rdmig_remote *r = &c->remote[i];

		r->pub.id = regs[i].id;
		r->pub.len = regs[i].len;
		r->pub.flags = regs[i].flags;
		memcpy(r->pub.name, regs[i].name, sizeof(r->pub.name));
		r->addr = regs[i].addr;
		r->rkey = regs[i].rkey;
	}
	c->nremote = n;
	pthread_mutex_unlock(&c->reg_lock);
	return 0;
}

/*
 * Receive control frames until one the caller wants arrives. LAYOUT is kept
 * whenever it comes; ERROR and BYE end the connection with the peer's word.
 */
static int recv_frame(struct rdmig_conn *c, uint8_t want, uint16_t *app_type, void *buf, size_t cap,
		      size_t *len, int timeout_ms, struct rdmig_err *err)
{
	struct rdmig_wire_hdr h;
	uint8_t *frame;
	size_t flen;
	int ret;

	frame = malloc(CTRL_FRAME_MAX);
	if (!frame)
		return rdmig_seterr(err, -ENOMEM, "out of memory for a control message");
	for (;;) {
		ret = c->ops->ctrl_recv(c, frame, CTRL_FRAME_MAX, &flen, timeout_ms, err);
		if (ret)
			break;
		ret = rdmig_wire_hdr_decode(frame, flen, RDMIG_CTRL_MAX_PAYLOAD, &h, err);
		if (ret) {
			ret = rdmig_conn_fail(c, err, ret, "bad control message from peer: %s",
					      rdmig_err_str(err));
			break;
		}
		if (flen != RDMIG_WIRE_HDR_LEN + (size_t)h.length) {
			ret = rdmig_conn_fail(c, err, -EPROTO,
					      "control frame of %zu bytes, header says %u + %d",
					      flen, h.length, RDMIG_WIRE_HDR_LEN);
			break;
		}
		atomic_fetch_add(&c->st_ctrl_received, 1);
		if (h.type == RDMIG_MSG_ERROR) {
			char msg[256];
			int code = -EPROTO;

			if (rdmig_wire_error_decode(frame + RDMIG_WIRE_HDR_LEN, h.length, &code,
						    msg, sizeof(msg), NULL))
				snprintf(msg, sizeof(msg), "(unreadable error message)");
			ret = rdmig_conn_fail(c, err, code < 0 ? code : -EPROTO,
					      "peer reported: %s", msg);
			break;
		}
		if (h.type == RDMIG_MSG_BYE) {
			ret = rdmig_conn_fail(c, err, -ECONNRESET, "peer closed the connection");
			break;
		}
		/* Keys of the peer's memory are only taken from an authenticated peer. */
		if ((h.type == RDMIG_MSG_LAYOUT || h.type == RDMIG_MSG_RINGS) && c->cfg.auth &&
		    !c->authenticated) {
			ret = rdmig_conn_fail(c, err, -EPROTO,
					      "protocol error: %s before authentication",
					      rdmig_msg_type_name(h.type));
			break;
		}
		if (h.type == RDMIG_MSG_LAYOUT && want != RDMIG_MSG_LAYOUT) {
			ret = store_layout(c, frame + RDMIG_WIRE_HDR_LEN, h.length, err);
			if (ret)
				break;
			continue;
		}
		if (h.type != want) {
			ret = rdmig_conn_fail(
			    c, err, -EPROTO, "protocol error: expected %s, peer sent %s",
			    rdmig_msg_type_name(want), rdmig_msg_type_name(h.type));
			break;
		}
		if (h.length > cap) {
			ret = rdmig_seterr(
			    err, -EMSGSIZE,
			    "control message of %u bytes does not fit a %zu-byte buffer", h.length,
			    cap);
			break;
		}
		if (app_type)
			*app_type = h.app_type;
		memcpy(buf, frame + RDMIG_WIRE_HDR_LEN, h.length);
		*len = h.length;
		break;
	}
	free(frame);
	return ret;
}

int rdmig_ctrl_send(struct rdmig_conn *c, uint16_t type, const void *payload, size_t len,
		    struct rdmig_err *err)
{
	CHECK_ALIVE(c, err);
	if (type > 0x7fff)
		return rdmig_seterr(err, -EINVAL, "control message type %u out of range", type);
	return send_frame(c, RDMIG_MSG_APP, type, payload, len, err);
}

int rdmig_ctrl_recv(struct rdmig_conn *c, uint16_t *type, void *buf, size_t cap, size_t *len,
		    int timeout_ms, struct rdmig_err *err)
{
	const struct rdmig_err *first = rdmig_err_slot_get(&c->fail);
	struct rdmig_err e = RDMIG_ERR_INIT;
	int ret;

	if (!first)
		return recv_frame(c, RDMIG_MSG_APP, type, buf, cap, len, timeout_ms, err);
	/*
	 * What a peer said before it closed is still delivered, as a socket
	 * delivers what came before EOF: a CANCEL sent just before hanging up
	 * decides the hand-over. Only what is already here, without waiting;
	 * then the failure. Any other failure ends receiving at once.
	 */
	if (first->code != -ECONNRESET)
		CHECK_ALIVE(c, err);
	ret = recv_frame(c, RDMIG_MSG_APP, type, buf, cap, len, 0, &e);
	if (ret == -ETIMEDOUT) {
		rdmig_conn_failed(c, err);
		return first->code;
	}
	if (ret && err && !err->code)
		*err = e;
	return ret;
}

int rdmig_ctrl_send_error(struct rdmig_conn *c, int code, const char *msg, struct rdmig_err *err)
{
	uint8_t buf[4 + 256];
	size_t len;

	/* Sent even on a failed connection: telling the peer is the point. */
	len = rdmig_wire_error_encode(buf, sizeof(buf), code, msg);
	return send_frame(c, RDMIG_MSG_ERROR, 0, buf, len, err);
}

/* Auth hooks exchange AUTH frames, which the application path never sees (xport.h). */

int rdmig_auth_send(struct rdmig_conn *c, const void *payload, size_t len, struct rdmig_err *err)
{
	CHECK_ALIVE(c, err);
	return send_frame(c, RDMIG_MSG_AUTH, 0, payload, len, err);
}

int rdmig_auth_recv(struct rdmig_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms,
		    struct rdmig_err *err)
{
	CHECK_ALIVE(c, err);
	return recv_frame(c, RDMIG_MSG_AUTH, NULL, buf, cap, len, timeout_ms, err);
}

int rdmig_setup_send(struct rdmig_conn *c, uint8_t type, const void *payload, size_t len,
		     struct rdmig_err *err)
{
	CHECK_ALIVE(c, err);
	return send_frame(c, type, 0, payload, len, err);
}

int rdmig_setup_recv(struct rdmig_conn *c, uint8_t type, void *buf, size_t cap, size_t *len,
		     int timeout_ms, struct rdmig_err *err)
{
	CHECK_ALIVE(c, err);
	return recv_frame(c, type, NULL, buf, cap, len, timeout_ms, err);
}

/* ---- layout exchange --------------------------------------------------- */

int rdmig_expose(struct rdmig_conn *c, struct rdmig_err *err)
{
	struct rdmig_wire_region regs[RDMIG_MAX_REGIONS];
	uint8_t buf[4 + RDMIG_MAX_REGIONS * RDMIG_WIRE_LAYOUT_ENTRY_LEN];
	uint32_t n = 0;
	size_t len;
	int ret;

	CHECK_ALIVE(c, err);
	/* The exposing side alone decides exposure, and only to an authenticated peer. */
	if (c->cfg.auth && !c->authenticated)
		return rdmig_seterr(err, -EACCES,
				    "refusing to expose regions: peer not authenticated");
	pthread_mutex_lock(&c->reg_lock);
	for (unsigned i = 0; i < RDMIG_MAX_REGIONS; i++) {
		const struct rdmig_region *r = &c->regions[i];

		if (!r->used || !(r->flags & REMOTE_ACCESS))
			continue;
		memset(&regs[n], 0, sizeof(regs[n]));
		regs[n].id = r->id;
		regs[n].flags = r->flags;
		regs[n].len = r->len;
		regs[n].addr = (uint64_t)(uintptr_t)r->addr;
		regs[n].rkey = r->rkey;
		memcpy(regs[n].name, r->name, sizeof(regs[n].name));
		n++;
	}
	pthread_mutex_unlock(&c->reg_lock);
	len = rdmig_wire_layout_encode(buf, regs, n);
	ret = send_frame(c, RDMIG_MSG_LAYOUT, 0, buf, len, err);
	if (!ret && c->cfg.backend == RDMIG_BACKEND_RDMA)
		atomic_fetch_add(&c->st_rkeys_sent, n);
	return ret;
}

int rdmig_recv_layout(struct rdmig_conn *c, int timeout_ms, struct rdmig_err *err)
{
	uint8_t *buf;
	size_t len;
	int ret;

	CHECK_ALIVE(c, err);
	buf = malloc(RDMIG_CTRL_MAX_PAYLOAD);
	if (!buf)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	ret = recv_frame(c, RDMIG_MSG_LAYOUT, NULL, buf, RDMIG_CTRL_MAX_PAYLOAD, &len, timeout_ms,
			 err);
	if (!ret)
		ret = store_layout(c, buf, len, err);
	free(buf);
	return ret;
}

unsigned rdmig_remote_count(const struct rdmig_conn *c)
{
	return c->nremote;
}

const struct rdmig_remote_region *rdmig_remote_get(const struct rdmig_conn *c, unsigned i)
{
	return i < c->nremote ? &c->remote[i].pub : NULL;
}

/* ---- data plane -------------------------------------------------------- */

/*
 * A write or read call: the connection, the channel, and every run against
 * both regions before anything is posted: a bad run must not leave half of a call on the wire.
 * `need` is the access the peer's layout must grant (a layout may now hold regions exposed for
 * reading only, or for writing only).
 */
static int check_runs(struct rdmig_conn *c, unsigned chan, const char *op, unsigned need,
		      const struct rdmig_run *runs, size_t n, uint64_t *bytes,
		      struct rdmig_err *err)
{
	int ret;

	CHECK_ALIVE(c, err);
	ret = check_chan(c, chan, err);
	if (ret)
		return ret;
	*bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const struct rdmig_run *r = &runs[i];
		const struct rdmig_region *l = rdmig_region_get(c, r->lreg);
		const struct rdmig_remote *rr = rdmig_remote_find(c, r->rreg);

		if (!l)
			return rdmig_seterr(err, -EINVAL, "%s: unknown local region %u", op,
					    r->lreg);
		if (!rr)
			return rdmig_seterr(
			    err, -EINVAL, "%s: unknown remote region %u (not in the peer's layout)",
			    op, r->rreg);
		if (!(rr->pub.flags & need))
			return rdmig_seterr(err, -EACCES,
					    "%s: the peer did not expose region '%s' (%u) for %s "
					    "(its layout flags 0x%x)",
					    op, rr->pub.name, r->rreg,
					    need == RDMIG_REG_REMOTE_READ ? "reading" : "writing",
					    rr->pub.flags);
		if (!r->len || r->loff > l->len || r->len > l->len - r->loff)
			return rdmig_seterr(err, -ERANGE,
					    "%s: local range 0x%llx+%llu outside region '%s' "
					    "(%llu bytes)",
					    op, (unsigned long long)r->loff,
					    (unsigned long long)r->len, l->name,
					    (unsigned long long)l->len);
		if (r->roff > rr->pub.len || r->len > rr->pub.len - r->roff)
			return rdmig_seterr(err, -ERANGE,
					    "%s: remote range 0x%llx+%llu outside region '%s' "
					    "(%llu bytes)",
					    op, (unsigned long long)r->roff,
					    (unsigned long long)r->len, rr->pub.name,
					    (unsigned long long)rr->pub.len);
		*bytes += r->len;
	}
	return 0;
}

int rdmig_write(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
		struct rdmig_err *err)
{
	uint64_t bytes;
	int ret = check_runs(c, chan, "write", RDMIG_REG_REMOTE_WRITE, runs, n, &bytes, err);

	if (ret)
		return ret;
	ret = c->ops->write(c, chan, runs, n, err);
	if (ret)
		return ret;
	c->tx[chan].bytes += bytes;
	c->tx[chan].writes += n;
	atomic_fetch_add(&c->st_bytes_written, bytes);
	if (!c->ops->counts_wire)
		atomic_fetch_add(&c->st_bytes_on_wire, bytes);
	atomic_fetch_add(&c->st_writes_posted, n);
	return 0;
}

int rdmig_read(struct rdmig_conn *c, unsigned chan, const struct rdmig_run *runs, size_t n,
	       struct rdmig_err *err)
{
	uint64_t bytes;
	int ret = check_runs(c, chan, "read", RDMIG_REG_REMOTE_READ, runs, n, &bytes, err);

	if (ret)
		return ret;
	ret = c->ops->read(c, chan, runs, n, err);
	if (ret)
		return ret;
	atomic_fetch_add(&c->st_bytes_read, bytes);
	atomic_fetch_add(&c->st_reads_posted, n);
	return 0;
}

int rdmig_fence(struct rdmig_conn *c, unsigned chan, uint64_t seq, struct rdmig_err *err)
{
	struct rdmig_fence f;
	int ret;

	CHECK_ALIVE(c, err);
	ret = check_chan(c, chan, err);
	if (ret)
		return ret;
	f.seq = seq;
	f.bytes = c->tx[chan].bytes;
	f.writes = c->tx[chan].writes;
	ret = c->ops->fence(c, chan, &f, err);
	if (ret)
		return ret;
	c->tx[chan].bytes = 0;
	c->tx[chan].writes = 0;
	atomic_fetch_add(&c->st_fences_sent, 1);
	return 0;
}

int rdmig_wait_fence(struct rdmig_conn *c, unsigned chan, int timeout_ms, struct rdmig_fence *f,
		     struct rdmig_err *err)
{
	int ret;

	CHECK_ALIVE(c, err);
	ret = check_chan(c, chan, err);
	if (ret)
		return ret;
	ret = c->ops->wait_fence(c, chan, timeout_ms, f, err);
	if (!ret)
		atomic_fetch_add(&c->st_fences_received, 1);
	return ret;
}

/* ---- streams ----------------------------------------------------------- */

int rdmig_stream_send(struct rdmig_conn *c, unsigned chan, const void *buf, size_t len,
		      struct rdmig_err *err)
{
	int ret;

	CHECK_ALIVE(c, err);
	ret = check_chan(c, chan, err);
	if (ret)
		return ret;
	return len ? c->ops->stream_send(c, chan, buf, len, err) : 0;
}

ssize_t rdmig_stream_recv(struct rdmig_conn *c, unsigned chan, void *buf, size_t cap,
			  int timeout_ms, struct rdmig_err *err)
{
	int ret;

	CHECK_ALIVE(c, err);
	ret = check_chan(c, chan, err);
	if (ret)
		return ret;
	if (!cap)
		return rdmig_seterr(err, -EINVAL, "stream receive into an empty buffer");
	return c->ops->stream_recv(c, chan, buf, cap, timeout_ms, err);
}

int rdmig_stream_shutdown(struct rdmig_conn *c, unsigned chan, struct rdmig_err *err)
{
	int ret;

	CHECK_ALIVE(c, err);
	ret = check_chan(c, chan, err);
	if (ret)
		return ret;
	return c->ops->stream_shutdown(c, chan, err);
}

int xport_fd_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		struct pollfd pf = {.fd = fd, .events = POLLOUT};
		ssize_t n = write(fd, p, len);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return rdmig_neg_errno();
		if (poll(&pf, 1, -1) < 0 && errno != EINTR)
			return rdmig_neg_errno();
	}
	return 0;
}

ssize_t rdmig_stream_send_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
			     struct rdmig_err *err)
{
	int ret;

	CHECK_ALIVE(c, err);
	ret = check_chan(c, chan, err);
	if (ret)
		return ret;
	if (fd < 0 || !max)
		return rdmig_seterr(err, -EINVAL, "stream send from descriptor %d, %zu bytes", fd,
				    max);
	return c->ops->stream_send_fd(c, chan, fd, max, err);
}

ssize_t rdmig_stream_recv_fd(struct rdmig_conn *c, unsigned chan, int fd, size_t max,
			     int timeout_ms, struct rdmig_err *err)
{
	int ret;

	CHECK_ALIVE(c, err);
	ret = check_chan(c, chan, err);
	if (ret)
		return ret;
	if (fd < 0 || !max)
		return rdmig_seterr(err, -EINVAL, "stream receive into descriptor %d, %zu bytes",
				    fd, max);
	return c->ops->stream_recv_fd(c, chan, fd, max, timeout_ms, err);
}

/* ---- counters and hello ------------------------------------------------ */

void rdmig_xport_stats(const struct rdmig_conn *cc, struct rdmig_xport_stats *o)
{
	struct rdmig_conn *c = (struct rdmig_conn *)cc;

	o->regions_remote = atomic_load(&c->st_regions_remote);
	o->rkeys_sent = atomic_load(&c->st_rkeys_sent);
	o->regs_total = atomic_load(&c->st_regs_total);
	o->deregs_total = atomic_load(&c->st_deregs_total);
	o->bytes_written = atomic_load(&c->st_bytes_written);
	o->writes_posted = atomic_load(&c->st_writes_posted);
	o->bytes_received = atomic_load(&c->st_bytes_received);
	o->bytes_on_wire = atomic_load(&c->st_bytes_on_wire);
	o->fences_sent = atomic_load(&c->st_fences_sent);
	o->fences_received = atomic_load(&c->st_fences_received);
	o->ctrl_sent = atomic_load(&c->st_ctrl_sent);
	o->ctrl_received = atomic_load(&c->st_ctrl_received);
	o->rings_remote = atomic_load(&c->st_rings_remote);
	o->bytes_read = atomic_load(&c->st_bytes_read);
	o->reads_posted = atomic_load(&c->st_reads_posted);
}

void rdmig_hello_fill(struct rdmig_conn *c, struct rdmig_wire_hello *h, uint16_t chan_index,
		      uint64_t token)
{
	memset(h, 0, sizeof(*h));
	h->caps = RDMIG_CAP_STREAMS | (c->cfg.auth ? RDMIG_CAP_AUTH : 0);
	/* A tcp receiver can always decompress; rdma writes are one-sided, nothing to inflate. */
	if (c->cfg.backend == RDMIG_BACKEND_TCP)
		h->caps |= RDMIG_CAP_ZSTD;
	h->role = c->is_server ? RDMIG_ROLE_ACCEPTOR : RDMIG_ROLE_CONNECTOR;
	h->nchan = (uint16_t)c->nchan;
	h->chan_index = chan_index;
	h->max_ctrl = RDMIG_CTRL_MAX_PAYLOAD;
	h->token = token;
}
