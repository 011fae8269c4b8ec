/* SPDX-License-Identifier: MIT */
/*
 * Post-copy at the source: when to switch, the set of pages the
 * destination lacks (PC_SET, with the checksums of the paused guest's
 * pages), and serving it after GO until its PC_DONE.
 *
 * Serving: on rdma there is nothing to do, the destination reads the
 * guest's RAM itself (registered for remote read at setup, its keys sent
 * only at the switch, to this authenticated connection); on tcp one thread
 * per data channel answers the destination's requests. The guest stays
 * paused here and its RAM unchanged, so whatever is read is what the
 * checksums describe. A broken link is recovered by connecting again
 * (opts.settle_conn) with PC_RESUME within opts.postcopy_recover_ns; past
 * that the guest is lost at the destination, and this side keeps the
 * complete copy, paused, for the operator (RDMIG_MIG_EPCLOST).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "converge.h"
#include "log.h"
#include "postcopy.h"
#include "source_int.h"

/* How long one reconnect attempt may take, and the pause between attempts. */
#define RECONNECT_MS 5000
#define RETRY_MS     200

bool src_pc_due(const struct mig_src *m, const struct rdmig_conv *cv)
{
	const struct rdmig_mig_opts *o = m->o;
	unsigned bound = RDMIG_POSTCOPY_AUTO_THROTTLE;

	switch (o->postcopy) {
	case RDMIG_POSTCOPY_ROUNDS:
		return m->st.round >= o->postcopy_rounds;
	case RDMIG_POSTCOPY_TIME:
		return rdmig_now_ns() - m->t0 >= o->postcopy_after_ns;
	case RDMIG_POSTCOPY_AUTO:
		/* Throttling harder than this to converge costs the guest more than post-copy. */
		if (o->max_throttle < bound)
			bound = o->max_throttle;
		return cv->throttle > bound;
	case RDMIG_POSTCOPY_OFF:
		break;
	}
	return false;
}

/*
 * At the switch, the guest paused and harvested: the dirty pages are the
 * set. They move to pc[], are summed as they are now (the destination's
 * check), and the bitmaps are left empty, so the final round sends nothing.
 */
int src_pc_prepare(struct mig_src *m, struct rdmig_err *err)
{
	m->pc_pages = 0;
	for (unsigned r = 0; r < m->nreg; r++) {
		struct src_region *sr = &m->reg[r];

		sr->pc = malloc(sr->words * 8);
		if (!sr->pc)
			return rdmig_seterr(err, -ENOMEM, "out of memory for the post-copy set");
		memcpy(sr->pc, sr->bitmap, sr->words * 8);
		memset(sr->bitmap, 0, sr->words * 8);
		for (size_t w = 0; w < sr->words; w++)
			for (uint64_t b = sr->pc[w]; b; b &= b - 1) {
				uint64_t pg = w * 64 + (uint64_t)__builtin_ctzll(b);

				sr->sums[pg] = rdmig_page_sum(sr->addr + pg * RDMIG_PAGE_SIZE);
				m->pc_pages++;
			}
	}
	m->st.postcopy = true;
	m->st.pc_pages = m->pc_pages;
	return 0;
}

/*
 * Before FINAL: the guest's RAM readable by this connection's peer (its
 * keys), then the set with its checksums, as PC_SET messages of the final
 * round, and PC_SET_END.
 */
int src_pc_announce(struct mig_src *m, uint32_t round, struct rdmig_err *err)
{
	struct rdmig_manifest_out mo;
	uint8_t end[RDMIG_ROUND_MSG_LEN];
	int ret;

	ret = rdmig_expose(m->c, err);
	if (ret)
		return ret;
	rdmig_manifest_begin(&mo, m->mbuf, round);
	for (unsigned r = 0; r < m->nreg; r++) {
		const struct src_region *sr = &m->reg[r];
		uint64_t pg = 0;

		while (pg < sr->pages) {
			uint64_t first;

			if (!(sr->pc[pg / 64] >> (pg % 64) & 1)) {
				pg++;
				continue;
			}
			for (first = pg; pg < sr->pages && (sr->pc[pg / 64] >> (pg % 64) & 1); pg++)
				;
			/* Before FINAL, while the final round's MANIFESTs are held back. */
			ret = src_manifest_sums(m, &mo, RDMIG_EMSG_PC_SET, true, round, r, first,
						pg - first, err);
			if (ret)
				return ret;
		}
	}
	ret = src_manifest_end(m, &mo, RDMIG_EMSG_PC_SET, true, err);
	if (ret)
		return ret;
	rdmig_msg_round_encode(end, round, m->pc_pages);
	return rdmig_ctrl_send(m->c, RDMIG_EMSG_PC_SET_END, end, sizeof(end), err);
}

/* ---- serving (tcp) ----------------------------------------------------- */

struct pc_server {
	struct mig_src *m;
	struct rdmig_conn *c;
	unsigned chan;
	pthread_t th;
	bool started;
	atomic_bool *stop;
	int ret;
	struct rdmig_err err;
};

/* One request: validated against the guest, answered from its RAM. */
static int serve_one(struct pc_server *s, const uint8_t *req, struct rdmig_err *err)
{
	const struct mig_src *m = s->m;
	uint32_t region, count;
	uint64_t first;
	int ret;

	pc_req_decode(req, &region, &count, &first);
	if (region >= m->nreg || !count || count > PC_BATCH_PAGES || first > m->reg[region].pages ||
	    count > m->reg[region].pages - first)
		return rdmig_seterr(err, -EPROTO,
				    "post-copy: the destination asked for %u pages at %" PRIu64
				    " of region %u, outside the guest",
				    count, first, region);
	ret = rdmig_stream_send(s->c, s->chan, req, PC_REQ_LEN, err);
	if (!ret)
		ret =
		    rdmig_stream_send(s->c, s->chan, m->reg[region].addr + first * RDMIG_PAGE_SIZE,
				      (size_t)count * RDMIG_PAGE_SIZE, err);
	return ret;
}

static void *serve_main(void *arg)
{
	struct pc_server *s = arg;
	uint8_t req[PC_REQ_LEN];
	size_t got = 0;
	char name[16];

	snprintf(name, sizeof(name), "rdmig-pcs%u", s->chan);
	pthread_setname_np(pthread_self(), name);
	while (!atomic_load(s->stop)) {
		ssize_t n = rdmig_stream_recv(s->c, s->chan, req + got, sizeof(req) - got,
					      RDMIG_POLL_MS, &s->err);

		if (n == -ETIMEDOUT) {
			rdmig_err_clear(&s->err);
			continue;
		}
		if (n <= 0) {
			s->ret = (int)n;
			break;
		}
		got += (size_t)n;
		if (got < sizeof(req))
			continue;
		got = 0;
		s->ret = serve_one(s, req, &s->err);
		if (s->ret) {
			rdmig_conn_abort(s->c, s->ret, rdmig_err_str(&s->err));
			break;
		}
	}
	return NULL;
}

/*
 * Serve on `c` until PC_DONE comes (0, its figures in *d) or the link
 * breaks (its error).
 */
static int serve_on(struct mig_src *m, struct rdmig_conn *c, struct rdmig_msg_pc_done *d,
		    struct rdmig_err *err)
{
	struct pc_server srv[RDMIG_MAX_CHANNELS];
	atomic_bool stop = false;
	unsigned n = rdmig_conn_backend(c) == RDMIG_BACKEND_TCP ? rdmig_conn_channels(c) : 0;
	uint8_t buf[RDMIG_PC_DONE_LEN + 300];
	uint16_t type;
	size_t len;
	int ret = 0;

	memset(srv, 0, sizeof(srv));
	for (unsigned i = 0; i < n && !ret; i++) {
		srv[i] = (struct pc_server){
		    .m = m, .c = c, .chan = i, .stop = &stop, .err = RDMIG_ERR_INIT};
		if (pthread_create(&srv[i].th, NULL, serve_main, &srv[i]))
			ret = rdmig_seterr(err, -EAGAIN, "post-copy: cannot start server %u", i);
		else
			srv[i].started = true;
	}
	while (!ret) {
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, RDMIG_POLL_MS, err);
		if (ret == -ETIMEDOUT) {
			rdmig_err_clear(err);
			ret = 0;
			continue;
		}
		if (ret)
			break;
		if (type == RDMIG_EMSG_PC_DONE) {
			ret = rdmig_msg_pc_done_decode(buf, len, m->id, d, err);
			break;
		}
		/* Its verification acknowledgements may still trail the hand-over. */
		if (type == RDMIG_EMSG_ROUND_VERIFIED)
			continue;
		ret = rdmig_seterr(err, -EPROTO, "post-copy: unexpected message 0x%x", type);
	}
	atomic_store(&stop, true);
	if (ret)
		rdmig_conn_abort(c, ret, rdmig_err_str(err));
	for (unsigned i = 0; i < n; i++)
		if (srv[i].started)
			pthread_join(srv[i].th, NULL);
	return ret;
}

/* The guest's RAM on a new connection, readable by its peer. */
static int expose_again(struct mig_src *m, struct rdmig_conn *c, struct rdmig_err *err)
{
	for (unsigned r = 0; r < m->nreg; r++) {
		char name[32];
		uint32_t id;
		int ret;

		snprintf(name, sizeof(name), "ram%u", r);
		ret = rdmig_reg(c, name, m->reg[r].addr, m->reg[r].len, RDMIG_REG_REMOTE_READ, &id,
				err);
		if (ret)
			return ret;
	}
	return rdmig_expose(c, err);
}

/*
 * Connect again until the destination takes PC_RESUME (0: *out serves on;
 * *done when it answers that every page is there) or the window closes.
 */
static int reconnect(struct mig_src *m, uint64_t deadline, struct rdmig_conn **out, bool *done,
		     struct rdmig_msg_pc_done *d, struct rdmig_err *err)
{
	const struct rdmig_mig_opts *o = m->o;
	uint8_t buf[RDMIG_PC_DONE_LEN + 300];

	*out = NULL;
	while (rdmig_now_ns() < deadline) {
		struct rdmig_conn *c = NULL;
		uint64_t left = (deadline - rdmig_now_ns()) / 1000000;
		uint16_t type;
		size_t len;
		int ret;

		rdmig_err_clear(err);
		ret = o->settle_conn(o->settle_ctx,
				     left < RECONNECT_MS ? (int)left + 1 : RECONNECT_MS, &c, err);
		if (!ret)
			ret = rdmig_ctrl_send(c, RDMIG_EMSG_PC_RESUME, buf,
					      rdmig_msg_id_encode(buf, m->id), err);
		if (!ret)
			ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, RECONNECT_MS, err);
		if (!ret && type == RDMIG_EMSG_PC_DONE) {
			ret = rdmig_msg_pc_done_decode(buf, len, m->id, d, err);
			if (!ret) {
				*done = true;
				*out = c;
				return 0;
			}
		} else if (!ret && type == RDMIG_EMSG_PC_RESUMED) {
			ret = rdmig_msg_id_decode(buf, len, m->id, "PC_RESUMED", err);
			if (!ret)
				ret = expose_again(m, c, err);
			if (!ret) {
				*out = c;
				return 0;
			}
		} else if (!ret) {
			ret = rdmig_seterr(err, -EPROTO, "message 0x%x where PC_RESUMED was due",
					   type);
		}
		log_info("post-copy: reconnecting: %s", rdmig_err_str(err));
		rdmig_conn_destroy(c);
		usleep(RETRY_MS * 1000);
	}
	return err && err->code ? err->code : -ETIMEDOUT;
}

int src_pc_serve(struct mig_src *m, bool broken, struct rdmig_err *err)
{
	const struct rdmig_mig_opts *o = m->o;
	struct rdmig_conn *c = m->c, *own = NULL;
	struct rdmig_msg_pc_done d = {0};
	bool done = false;
	uint64_t t = rdmig_now_ns();
	int ret = broken ? (err && err->code ? err->code : -ECONNRESET) : 0;

	src_set_state(m, RDMIG_MIG_POSTCOPY);
	m->pc_phase = true;
	for (;;) {
		char cause[RDMIG_ERR_MSG_MAX];

		if (!ret)
			ret = serve_on(m, c, &d, err);
		if (!ret)
			break;
		snprintf(cause, sizeof(cause), "%s", rdmig_err_str(err));
		/* What the peer could read goes with the broken link. */
		rdmig_revoke(c);
		if (own)
			rdmig_conn_destroy(own);
		own = NULL;
		if (!o->postcopy_recover_ns || !o->settle_conn) {
			rdmig_err_clear(err);
			return rdmig_seterr(
			    err, RDMIG_MIG_EPCLOST,
			    "post-copy of migration %s: the link to the destination "
			    "broke (%s), recovery is off",
			    m->ids, cause);
		}
		log_warn("post-copy of migration %s: the link to the destination broke (%s): "
			 "reconnecting for up to %.0f s",
			 m->ids, cause, (double)o->postcopy_recover_ns / 1e9);
		ret = reconnect(m, rdmig_now_ns() + o->postcopy_recover_ns, &own, &done, &d, err);
		if (ret) {
			struct rdmig_err last = *err;

			rdmig_err_clear(err);
			return rdmig_seterr(
			    err, RDMIG_MIG_EPCLOST,
			    "post-copy of migration %s: the link to the destination broke (%s) and "
			    "it could not be reached again within %.0f s (--postcopy-recover; "
			    "last: %s)",
			    m->ids, cause, (double)o->postcopy_recover_ns / 1e9,
			    rdmig_err_str(&last));
		}
		c = own;
		m->st.pc_recoveries++;
		log_info("post-copy of migration %s: reconnected", m->ids);
		if (done)
			break;
	}
	m->st.pc_demand = d.demand;
	m->st.pc_bytes = d.bytes;
	m->st.pc_fetch_p50_us = d.p50_us;
	m->st.pc_fetch_p99_us = d.p99_us;
	m->st.pc_fetch_max_us = d.max_us;
	if (d.recoveries > m->st.pc_recoveries)
		m->st.pc_recoveries = d.recoveries;
	m->st.pc_ms = (double)(rdmig_now_ns() - t) / 1e6;
	atomic_fetch_add(&m->sent_bytes, d.bytes);
	atomic_fetch_add(&m->sent_pages, d.bytes / RDMIG_PAGE_SIZE);
	{
		uint8_t b[RDMIG_MIG_ID_LEN];

		/* Only spares the destination its wait: every page is there. */
		rdmig_ctrl_send(c, RDMIG_EMSG_DONE, b, rdmig_msg_id_encode(b, m->id), NULL);
	}
	if (own) {
		rdmig_revoke(own);
		rdmig_conn_destroy(own);
	}
	return 0;
}
