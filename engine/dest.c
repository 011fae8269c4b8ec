/* SPDX-License-Identifier: MIT */
/*
 * Destination side of a live migration.
 *
 * Threads: the caller's thread follows the control channel (setup,
 * manifest, hand-over); one receiver per data channel sits in
 * rdmig_wait_fence(), which on tcp is also what lands the pages, and
 * records the last fence it saw. The RAM is only ever written by the
 * transport (remote writes or tcp receives) until every final fence is in;
 * then remote access is revoked, and only then is the RAM verified, so no
 * leaked key can change it after the check.
 *
 * The guest runs here only on the source's GO. Before VERIFIED is sent any
 * failure discards; once it is sent ("prepared") this side neither runs
 * nor discards on its own (migrate.h): a cut hand-over is settled
 * (engine/settle.c) or ends unknown, never running here.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "memfit.h"
#include "mig_common.h"
#include "proto.h"
#include "bytes.h"
#include "plan.h"
#include "settle.h"

struct receiver {
	struct mig_dst *m;
	pthread_t th;
	unsigned chan;
	_Atomic uint64_t last_seq;
	atomic_bool finished;
	int ret;
	struct rdmig_err err;
};

struct mig_dst {
	struct rdmig_conn *c;
	const struct rdmig_mig_opts *o;
	struct rdmig_guest *g;
	struct rdmig_msg_setup setup;
	uint64_t region_pages[RDMIG_GUEST_MAX_REGIONS];
	uint64_t *sums[RDMIG_GUEST_MAX_REGIONS];
	uint64_t sums_got;
	struct receiver rx[RDMIG_MAX_CHANNELS];
	unsigned nrx;
	struct rdmig_msg_final fin;
	bool have_final;
	bool prepared; /* VERIFIED sent (or tried): no discarding on our own */
	bool running;  /* the guest runs here: GO came */
	char ids[RDMIG_MIG_ID_STR];
	struct rdmig_mig_stats st;
	uint64_t t0;
};

static void set_state(struct mig_dst *m, enum rdmig_mig_state s)
{
	m->st.state = s;
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	/* The caller hears every state as an event; the log only when it asks for detail. */
	log_debug("destination: %s", rdmig_mig_state_name(s));
	rdmig_mig_emit(m->o, RDMIG_EV_STATE, &m->st);
}

static void *receiver_main(void *arg)
{
	struct receiver *r = arg;
	struct rdmig_err perr = RDMIG_ERR_INIT;
	struct rdmig_fence f;
	char name[16];

	if (rdmig_numa_pin_self(r->m->o->plan, r->chan, &perr))
		log_warn("receiver %u: %s", r->chan, rdmig_err_str(&perr));
	/* Named after pinning: "rdmig-rxN" shows up only once it is placed. */
	snprintf(name, sizeof(name), "rdmig-rx%u", r->chan);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		/*
		 * The source fences every channel every round and fails a round
		 * that takes longer than its progress timeout: a longer silence
		 * is a fault, with the hand-over deadline as slack.
		 */
		r->ret = rdmig_wait_fence(
		    r->m->c, r->chan,
		    (int)((r->m->o->progress_timeout_ns + r->m->o->commit_timeout_ns) / 1000000ull),
		    &f, &r->err);
		if (r->ret) {
			rdmig_conn_abort(r->m->c, r->ret, rdmig_err_str(&r->err));
			break;
		}
		atomic_store(&r->last_seq, f.seq);
		if (f.seq & RDMIG_SEQ_FINAL)
			break;
	}
	atomic_store(&r->finished, true);
	return NULL;
}

/*
 * Put region r on the node the source reported for it, when there is a plan
 * that places (not off, not one node) and this host has that node. Binding
 * is an optimisation: a failure is a warning, never the migration.
 */
static void bind_region(struct mig_dst *m, unsigned r, const struct rdmig_guest_region *gr)
{
	const struct rdmig_numa_plan *p = m->o->plan;
	struct rdmig_err berr = RDMIG_ERR_INIT;
	int node = m->setup.region_node[r];
	bool have = false;

	if (!p || p->policy == RDMIG_NUMA_OFF || p->trivial || node < 0)
		return;
	for (int n = 0; n < p->nnode; n++)
		have |= p->node_os[n] == node;
	if (!have) {
		log_info("guest region %u: the source has it on NUMA node %d, which this host "
			 "lacks: not bound",
			 r, node);
		return;
	}
	if (rdmig_numa_bind(gr->addr, gr->len, node, &berr))
		log_warn("guest region %u: %s", r, rdmig_err_str(&berr));
	else
		log_info("guest region %u bound to NUMA node %d (as at the source)", r, node);
}

/*
 * RESOLVE where SETUP was due: a source settles a migration this call does
 * not hold (a listener that discarded it went on to wait for the next
 * source). A source that aborted only wants to stop trying: the guest does
 * not run here, say so. One that decided GO must not take a stranger's
 * word: it hears that this side does not know the migration, and keeps
 * trying until its grace ends.
 */
static int stray_resolve(struct mig_dst *m, const uint8_t *buf, size_t len, struct rdmig_err *err)
{
	struct rdmig_msg_resolve r;
	uint8_t out[RDMIG_RESOLVE_LEN];
	char ids[RDMIG_MIG_ID_STR];
	int ret = rdmig_msg_resolve_decode(buf, len, RDMIG_EMSG_RESOLVE, &r, err);

	if (ret)
		return ret;
	rdmig_mig_id_str(r.id, ids);
	if (r.value == RDMIG_DECIDED_ABORTED) {
		r.value = RDMIG_DST_DISCARDED;
		rdmig_ctrl_send(m->c, RDMIG_EMSG_RESOLVED, out, rdmig_msg_resolve_encode(out, &r),
				NULL);
		return rdmig_seterr(
		    err, -ESRCH,
		    "the source of migration %s, which it aborted, asked whether it "
		    "runs here: it does not (nothing to do)",
		    ids);
	}
	return rdmig_seterr(err, -ESRCH,
			    "a source asked to settle migration %s (decided GO), which this "
			    "destination does not hold",
			    ids);
}

static int setup(struct mig_dst *m, struct rdmig_err *err)
{
	struct rdmig_guest_cfg gc = {0};
	uint8_t buf[256];
	uint16_t type;
	size_t len;
	int ret;

	set_state(m, RDMIG_MIG_SETUP);
	ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, 60000, err);
	if (ret)
		return ret;
	if (type == RDMIG_EMSG_RESOLVE)
		return stray_resolve(m, buf, len, err);
	if (type != RDMIG_EMSG_SETUP)
		return rdmig_seterr(err, -EPROTO, "expected SETUP, got message 0x%x", type);
	ret = rdmig_msg_setup_decode(buf, len, m->o->max_ram, &m->setup, err);
	if (ret)
		return ret;
	rdmig_mig_id_str(m->setup.id, m->ids);
	snprintf(m->st.migration_id, sizeof(m->st.migration_id), "%s", m->ids);
	if (m->setup.channels != rdmig_conn_channels(m->c))
		return rdmig_seterr(err, -EPROTO, "SETUP says %u channels, connection has %u",
				    m->setup.channels, rdmig_conn_channels(m->c));
	for (unsigned r = 0; r < m->setup.nregions; r++)
		gc.ram_size += m->setup.region_len[r];
	gc.nregions = m->setup.nregions;
	gc.vcpus = m->setup.vcpus;
	gc.workload = (enum rdmig_workload)m->setup.workload;
	gc.seed = m->setup.seed;
	gc.dirty_rate = m->setup.dirty_rate;
	gc.hugepages = m->o->hugepages;
	/* Refuse here, named, rather than be OOM-killed once pages arrive. */
	ret = rdmig_mem_fit(gc.ram_size, err);
	if (ret) {
		rdmig_err_prefix(err, "cannot hold the guest");
		return ret;
	}
	ret = rdmig_guest_create(&gc, &m->g, err);
	if (ret) {
		rdmig_err_prefix(err, "cannot hold the guest");
		return ret;
	}
	/* The guest is split the same way on both sides; check, never assume. */
	for (unsigned r = 0; r < m->setup.nregions; r++) {
		const struct rdmig_guest_region *gr = rdmig_guest_region(m->g, r);
		uint32_t id;

		if (gr->len != m->setup.region_len[r])
			return rdmig_seterr(err, -EPROTO,
					    "guest layout mismatch: region %u is %" PRIu64
					    " bytes here, %" PRIu64 " at the source",
					    r, gr->len, m->setup.region_len[r]);
		m->region_pages[r] = gr->len / RDMIG_PAGE_SIZE;
		m->sums[r] = calloc(m->region_pages[r], sizeof(uint64_t));
		if (!m->sums[r])
			return rdmig_seterr(err, -ENOMEM, "out of memory for checksums");
		/* Before registration: an RDMA registration faults the pages in. */
		bind_region(m, r, gr);
		ret =
		    rdmig_reg(m->c, gr->name, gr->addr, gr->len, RDMIG_REG_REMOTE_WRITE, &id, err);
		if (ret)
			return ret;
		m->st.ram_bytes += gr->len;
	}
	ret = rdmig_expose(m->c, err);
	if (ret)
		return ret;
	for (unsigned i = 0; i < m->setup.channels; i++) {
		struct receiver *r = &m->rx[i];

		r->m = m;
		r->chan = i;
		r->err = (struct rdmig_err)RDMIG_ERR_INIT;
		if (pthread_create(&r->th, NULL, receiver_main, r))
			return rdmig_seterr(err, -EAGAIN, "cannot start receiver thread %u", i);
		m->nrx++;
	}
	return rdmig_ctrl_send(m->c, RDMIG_EMSG_SETUP_OK, NULL, 0, err);
}

static int receivers_error(struct mig_dst *m, struct rdmig_err *err)
{
	for (unsigned i = 0; i < m->nrx; i++)
		if (atomic_load(&m->rx[i].finished) && m->rx[i].ret) {
			if (err && !err->code)
				*err = m->rx[i].err;
			return m->rx[i].ret;
		}
	return 0;
}

/* Every receiver has seen the final fence: all data landed, FINAL is due. */
static bool final_fences_in(const struct mig_dst *m)
{
	for (unsigned i = 0; i < m->nrx; i++)
		if (!(atomic_load(&m->rx[i].last_seq) & RDMIG_SEQ_FINAL))
			return false;
	return m->nrx > 0;
}

/* Wait until every channel has delivered the final fence: all data landed. */
static int wait_final(struct mig_dst *m, struct rdmig_err *err)
{
	uint64_t deadline = rdmig_now_ns() + m->o->commit_timeout_ns;
	int ret;

	for (;;) {
		unsigned n = 0;

		ret = receivers_error(m, err);
		if (ret)
			return ret;
		for (unsigned i = 0; i < m->nrx; i++)
			if (atomic_load(&m->rx[i].last_seq) == m->fin.final_seq)
				n++;
		if (n == m->nrx)
			return 0;
		if (rdmig_now_ns() > deadline)
			return rdmig_seterr(
			    err, -ETIMEDOUT,
			    "%u of %u channels delivered their final fence in %.0f s "
			    "(--commit-timeout)",
			    n, m->nrx, (double)m->o->commit_timeout_ns / 1e9);
		if (rdmig_conn_failed(m->c, err))
			return err && err->code ? err->code : -ECONNRESET;
		usleep(1000);
	}
}

/* Receivers are done once the final fence is in: join them before revoking. */
static void receivers_join(struct mig_dst *m)
{
	for (unsigned i = 0; i < m->nrx; i++) {
		if (!atomic_load(&m->rx[i].finished))
			rdmig_conn_abort(m->c, -ECANCELED, "migration over");
		pthread_join(m->rx[i].th, NULL);
	}
	m->nrx = 0;
}

static int verify(struct mig_dst *m, struct rdmig_err *err)
{
	struct rdmig_msg_verify_fail f = {0};
	bool bad = false;

	if (m->o->test_corrupt_page >= 0) {
		const struct rdmig_guest_region *gr = rdmig_guest_region(m->g, 0);
		uint64_t p = (uint64_t)m->o->test_corrupt_page;

		if (p < m->region_pages[0]) {
			log_warn("test: corrupting page %" PRIu64 " before verification", p);
			gr->addr[p * RDMIG_PAGE_SIZE + 123] ^= 0x5a;
		}
	}
	for (unsigned r = 0; r < m->setup.nregions; r++) {
		const struct rdmig_guest_region *gr = rdmig_guest_region(m->g, r);

		for (uint64_t p = 0; p < m->region_pages[r]; p++) {
			uint64_t s = rdmig_page_sum(gr->addr + p * RDMIG_PAGE_SIZE);

			if (s == m->sums[r][p]) {
				m->st.verified_pages++;
				continue;
			}
			if (!bad) {
				f.region = r;
				f.page = p;
				f.expected = m->sums[r][p];
				f.found = s;
				bad = true;
			}
			f.mismatches++;
		}
	}
	if (bad) {
		uint8_t b[64];
		size_t n = rdmig_msg_verify_fail_encode(b, &f);

		rdmig_ctrl_send(m->c, RDMIG_EMSG_VERIFY_FAIL, b, n, NULL);
		return rdmig_seterr(err, -EILSEQ,
				    "verify failed: region %u page %" PRIu64 " (offset 0x%" PRIx64
				    ") has checksum %016" PRIx64 ", the source sent %016" PRIx64
				    "; %" PRIu64 " page(s) differ",
				    f.region, f.page, f.page * RDMIG_PAGE_SIZE, f.found, f.expected,
				    f.mismatches);
	}
	return 0;
}

static int source_cancelled(const uint8_t *buf, size_t len, struct rdmig_err *err)
{
	char why[260];
	int code;
	int ret = rdmig_msg_cancel_decode(buf, len, &code, why, sizeof(why), err);

	return ret ? ret : rdmig_seterr(err, code, "source cancelled: %s", why);
}

/* One message of the follow loop; 1 when MANIFEST_END closed the manifest. */
static int follow_msg(struct mig_dst *m, uint16_t type, const uint8_t *buf, size_t len,
		      struct rdmig_err *err)
{
	struct rdmig_msg_manifest mf;
	uint64_t total, want = 0;
	int ret;

	switch (type) {
	case RDMIG_EMSG_CANCEL:
		return source_cancelled(buf, len, err);
	case RDMIG_EMSG_FINAL:
		ret = rdmig_msg_final_decode(buf, len, m->setup.vcpus, &m->fin, err);
		if (ret)
			return ret;
		if (!(m->fin.final_seq & RDMIG_SEQ_FINAL))
			return rdmig_seterr(err, -EPROTO, "FINAL without the final fence mark");
		m->have_final = true;
		m->st.round = m->fin.rounds;
		set_state(m, RDMIG_MIG_FINAL_COPY);
		if (rdmig_mig_test_fault(m->o, m->c, RDMIG_STEP_FINAL, "destination"))
			return rdmig_seterr(err, -ECONNABORTED, "test: dropped at FINAL");
		return 0;
	case RDMIG_EMSG_MANIFEST:
		if (!m->have_final)
			return rdmig_seterr(err, -EPROTO, "MANIFEST before FINAL");
		ret = rdmig_msg_manifest_decode(buf, len, m->region_pages, m->setup.nregions, &mf,
						err);
		if (ret)
			return ret;
		for (uint32_t i = 0; i < mf.count; i++)
			m->sums[mf.region][mf.first_page + i] = rdmig_get_be64(mf.sums + 8 * i);
		m->sums_got += mf.count;
		return 0;
	case RDMIG_EMSG_MANIFEST_END:
		ret = rdmig_msg_u64_decode(buf, len, &total, err);
		if (ret)
			return ret;
		for (unsigned r = 0; r < m->setup.nregions; r++)
			want += m->region_pages[r];
		if (!m->have_final || total != want || m->sums_got != want)
			return rdmig_seterr(err, -EPROTO,
					    "manifest incomplete: %" PRIu64 " of %" PRIu64
					    " checksums",
					    m->sums_got, want);
		if (rdmig_mig_test_fault(m->o, m->c, RDMIG_STEP_MANIFEST, "destination"))
			return rdmig_seterr(err, -ECONNABORTED, "test: dropped at MANIFEST_END");
		return 1;
	}
	return rdmig_seterr(err, -EPROTO, "unexpected migration message 0x%x", type);
}

/*
 * Rounds, FINAL and the manifest, until MANIFEST_END. Once every final
 * fence is in, each next message must come within the commit timeout: a
 * source that stops there holds a paused guest, and this side must not
 * wait for it for ever.
 */
static int follow(struct mig_dst *m, struct rdmig_err *err)
{
	uint64_t last = 0, timeout = m->o->commit_timeout_ns;
	uint8_t *buf;
	uint16_t type;
	size_t len;
	int ret = 0;

	buf = malloc(RDMIG_CTRL_MAX_PAYLOAD);
	if (!buf)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	set_state(m, RDMIG_MIG_BULK);
	for (;;) {
		if (m->o->cancel && *m->o->cancel) {
			ret =
			    rdmig_seterr(err, -ECANCELED, "migration cancelled at the destination");
			break;
		}
		ret = rdmig_ctrl_recv(m->c, &type, buf, RDMIG_CTRL_MAX_PAYLOAD, &len, RDMIG_POLL_MS,
				      err);
		if (ret == -ETIMEDOUT) {
			rdmig_err_clear(err);
			ret = receivers_error(m, err);
			if (ret)
				break;
			if (!last && final_fences_in(m))
				last = rdmig_now_ns();
			if (last && rdmig_now_ns() - last > timeout) {
				ret = rdmig_seterr(err, -ETIMEDOUT,
						   "the source went silent in the hand-over: no %s "
						   "for %.0f s (--commit-timeout)",
						   m->have_final ? "manifest" : "FINAL",
						   (double)timeout / 1e9);
				break;
			}
			continue;
		}
		if (ret)
			break;
		last = m->have_final || final_fences_in(m) ? rdmig_now_ns() : 0;
		ret = follow_msg(m, type, buf, len, err);
		if (ret)
			break;
	}
	free(buf);
	return ret > 0 ? 0 : ret;
}

/*
 * A CANCEL that is already here: the source gave up while this side was
 * busy (stopped, slow to verify). Checked before VERIFIED, so that such a
 * destination discards rather than waits to be told again.
 */
static int cancel_pending(struct mig_dst *m, struct rdmig_err *err)
{
	uint8_t buf[300];
	uint16_t type;
	size_t len;
	int ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, 0, NULL);

	if (ret)
		return 0; /* nothing, or a dead connection: VERIFIED will tell */
	if (type == RDMIG_EMSG_CANCEL)
		return source_cancelled(buf, len, err);
	return rdmig_seterr(err, -EPROTO, "unexpected message 0x%x before VERIFIED", type);
}

/* Run the guest: GO came (on the connection or in RESOLVE). Nothing here undoes it. */
static void commit(void *ctx)
{
	struct mig_dst *m = ctx;
	const struct rdmig_mig_opts *o = m->o;
	struct rdmig_err e = RDMIG_ERR_INIT;

	if (m->running)
		return;
	m->running = true;
	if (o->dump_ram && rdmig_guest_dump(m->g, o->dump_ram, &e))
		log_err("%s", rdmig_err_str(&e));
	if (o->test_dest_ram)
		o->test_dest_ram(m->g, o->ev_ctx);
	/* The guest resumes where the source's vCPUs stopped. */
	rdmig_err_clear(&e);
	if (m->setup.vcpus && rdmig_guest_start(m->g, m->fin.vcpu, &e))
		log_err("migration %s: GO, but the guest does not resume: %s", m->ids,
			rdmig_err_str(&e));
	set_state(m, RDMIG_MIG_COMMIT);
}

/*
 * Prepared: wait for GO or CANCEL. 0 with the guest running (GO), the
 * source's reason (CANCEL), or 1 when the hand-over was cut (the
 * connection failed, or nothing came in time) and must be settled.
 */
static int await_go(struct mig_dst *m, struct rdmig_err *err)
{
	uint64_t deadline = rdmig_now_ns() + m->o->commit_timeout_ns;
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint8_t buf[300];
	uint16_t type;
	size_t len;
	int ret;

	for (;;) {
		uint64_t now = rdmig_now_ns();

		/* Cancel is not honoured here: only the source may still decide. */
		if (now >= deadline) {
			log_warn("migration %s: prepared, but neither GO nor CANCEL came within "
				 "%.0f s",
				 m->ids, (double)m->o->commit_timeout_ns / 1e9);
			return 1;
		}
		ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len,
				      (int)((deadline - now) / 1000000) + 1, &e);
		if (ret == -ETIMEDOUT) {
			rdmig_err_clear(&e);
			continue;
		}
		if (ret) {
			log_warn("migration %s: prepared, and the connection failed: %s", m->ids,
				 rdmig_err_str(&e));
			return 1;
		}
		if (type == RDMIG_EMSG_CANCEL)
			return source_cancelled(buf, len, err);
		if (type == RDMIG_EMSG_GO && !rdmig_msg_id_decode(buf, len, m->setup.id, "GO", &e))
			break;
		/* A source that sends anything else is broken: but it might still say GO. */
		log_warn("migration %s: prepared, and the source sent %s", m->ids,
			 e.code ? rdmig_err_str(&e) : "an unexpected message");
		rdmig_conn_abort(m->c, -EPROTO, "unexpected message while prepared");
		return 1;
	}
	if (rdmig_mig_test_fault(m->o, m->c, RDMIG_STEP_GO, "destination"))
		log_warn("test: dropped the connection on GO");
	commit(m);
	return 0;
}

/*
 * The guest runs: tell the source (GO_ACK) and wait for its DONE; without
 * DONE it may not have heard, so serve its RESOLVE for the grace.
 */
static void acknowledge(struct mig_dst *m)
{
	struct rdmig_settle_dst s = {
	    .o = m->o, .id = m->setup.id, .running = true, .go = commit, .ctx = m};
	struct rdmig_err e = RDMIG_ERR_INIT;
	enum rdmig_dst_outcome out;
	uint8_t buf[300];
	uint16_t type;
	size_t len;
	int ret = 0;

	if (!rdmig_mig_test_fault(m->o, m->c, RDMIG_STEP_GO_ACK, "destination")) {
		len = rdmig_msg_id_encode(buf, m->setup.id);
		ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_GO_ACK, buf, len, &e);
	}
	if (!ret && !rdmig_conn_failed(m->c, &e))
		ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len,
				      (int)(m->o->commit_timeout_ns / 1000000), &e);
	else
		ret = ret ? ret : -ECONNABORTED;
	if (!ret && type == RDMIG_EMSG_DONE &&
	    !rdmig_msg_id_decode(buf, len, m->setup.id, "DONE", &e))
		return;
	log_warn("migration %s: the guest runs here, but the source may not know (%s): "
		 "serving its RESOLVE for %.0f s",
		 m->ids, e.code ? rdmig_err_str(&e) : "no DONE",
		 (double)m->o->commit_grace_ns / 1e9);
	rdmig_conn_abort(m->c, -ECONNABORTED, "hand-over cut after GO");
	set_state(m, RDMIG_MIG_SETTLING);
	rdmig_err_clear(&e);
	if (rdmig_settle_dst(&s, &out, &e))
		log_warn("migration %s: %s; the guest runs here", m->ids, rdmig_err_str(&e));
	set_state(m, RDMIG_MIG_COMMIT);
}

/* The hand-over was cut while prepared: settle, or end unknown. */
static int settle(struct mig_dst *m, struct rdmig_err *err)
{
	struct rdmig_settle_dst s = {.o = m->o, .id = m->setup.id, .go = commit, .ctx = m};
	struct rdmig_err e = RDMIG_ERR_INIT;
	enum rdmig_dst_outcome out = RDMIG_DST_DISCARDED;
	int ret;

	rdmig_conn_abort(m->c, -ECONNABORTED, "hand-over cut while prepared");
	set_state(m, RDMIG_MIG_SETTLING);
	ret = rdmig_settle_dst(&s, &out, &e);
	if (s.running)
		return 0;
	if (!ret)
		return rdmig_seterr(err, -ECANCELED,
				    "the source aborted migration %s (settled after the hand-over "
				    "was cut): discarded",
				    m->ids);
	return rdmig_seterr(err, RDMIG_MIG_EUNKNOWN,
			    "outcome unknown for migration %s: verified here, but the source "
			    "sent neither GO nor CANCEL and %s; the guest was not started here "
			    "and its RAM is released",
			    m->ids, rdmig_err_str(&e));
}

static int run(struct mig_dst *m, struct rdmig_err *err)
{
	uint8_t b[8];
	int ret;

	ret = setup(m, err);
	if (ret)
		return ret;
	ret = follow(m, err);
	if (ret)
		return ret;
	ret = wait_final(m, err);
	if (ret)
		return ret;
	/* Every write has landed: no key may reach this RAM from here on, before it is checked. */
	receivers_join(m);
	rdmig_revoke(m->c);
	set_state(m, RDMIG_MIG_VERIFY);
	ret = verify(m, err);
	if (ret)
		return ret;
	if (rdmig_mig_test_fault(m->o, m->c, RDMIG_STEP_VERIFIED, "destination"))
		return rdmig_seterr(err, -ECONNABORTED, "test: dropped instead of VERIFIED");
	ret = cancel_pending(m, err);
	if (ret)
		return ret;
	/*
	 * From the send on, the source may decide GO on what it heard: even a
	 * send that failed may have arrived, so this side is prepared either way.
	 */
	m->prepared = true;
	rdmig_msg_u64_encode(b, m->st.verified_pages);
	if (rdmig_ctrl_send(m->c, RDMIG_EMSG_VERIFIED, b, sizeof(b), NULL))
		log_warn("migration %s: sending VERIFIED failed: it may have arrived", m->ids);
	set_state(m, RDMIG_MIG_PREPARED);
	ret = await_go(m, err);
	if (ret < 0)
		return ret;
	if (ret)
		return settle(m, err);
	acknowledge(m);
	return 0;
}

int rdmig_mig_dest(struct rdmig_conn *c, const struct rdmig_mig_opts *opts,
		   struct rdmig_mig_stats *stats, struct rdmig_err *err)
{
	struct mig_dst *m;
	int ret;

	/* The engine's own limits too, for callers that did not ask first. */
	ret = rdmig_mig_opts_check(opts, rdmig_conn_backend(c), NULL, err);
	if (ret)
		return ret;
	m = calloc(1, sizeof(*m));
	if (!m)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	m->c = c;
	m->o = opts;
	m->t0 = rdmig_now_ns();
	ret = run(m, err);
	if (ret && !m->prepared) {
		uint8_t b[300];
		size_t n = rdmig_msg_cancel_encode(b, ret, rdmig_err_str(err));

		if (!rdmig_conn_failed(c, NULL))
			rdmig_ctrl_send(c, RDMIG_EMSG_CANCEL, b, n, NULL);
	}
	if (ret)
		rdmig_conn_abort(c, ret, rdmig_err_str(err));
	/* Remote access ends here whatever happened: no old key works any more. */
	receivers_join(m);
	rdmig_revoke(c);
	if (m->running) {
		if (ret)
			log_err("migration %s: the guest runs here, although: %s", m->ids,
				rdmig_err_str(err));
		rdmig_err_clear(err);
		ret = 0;
		if (opts->keep_guest) {
			*opts->keep_guest = m->g;
			m->g = NULL;
		} else if (m->setup.vcpus) {
			if (opts->resume_ns)
				usleep((useconds_t)(opts->resume_ns / 1000));
			m->st.guest_work = rdmig_guest_work(m->g);
			rdmig_guest_pause(m->g);
			rdmig_guest_stop(m->g);
		}
		m->st.state = RDMIG_MIG_COMPLETED;
	} else if (ret == RDMIG_MIG_EUNKNOWN) {
		m->st.state = RDMIG_MIG_UNKNOWN;
	} else {
		m->st.state = ret == -ECANCELED ? RDMIG_MIG_CANCELLED : RDMIG_MIG_FAILED;
	}
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	rdmig_mig_emit(opts, RDMIG_EV_STATE, &m->st);
	if (stats)
		*stats = m->st;
	rdmig_guest_destroy(m->g);
	for (unsigned r = 0; r < RDMIG_GUEST_MAX_REGIONS; r++)
		free(m->sums[r]);
	free(m);
	return ret;
}
