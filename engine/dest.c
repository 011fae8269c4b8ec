/* SPDX-License-Identifier: MIT */
/*
 * Destination side of a live migration.
 *
 * Threads: the caller's thread follows the control channel (setup,
 * manifest, hand-over); one receiver per data channel sits in
 * rdmig_wait_fence(), which on tcp is also what lands the pages, and
 * records the last fence it saw; the verifier's threads (engine/verify.c)
 * check each round's pages once its fences are in, while the next round
 * arrives. The RAM is only ever written by the transport (remote writes or
 * tcp receives) until every final fence is in; then remote access is
 * revoked, and only then are the checks still open (the final round's
 * pages, and any copy that did not match in the background) done, so no
 * leaked key can change a page after its last check.
 *
 * The RAM is the VMM's (rdmig_vm_dest_ops.prepare), registered in place.
 * The guest runs here only on the source's GO. Before VERIFIED is sent any
 * failure discards; once it is sent ("prepared") this side neither runs
 * nor discards on its own (rdmig/migrate.h): a cut hand-over is settled
 * (engine/settle.c) or ends unknown, never running here.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "mig_common.h"
#include "proto.h"
#include "bytes.h"
#include "plan.h"
#include "postcopy.h"
#include "settle.h"
#include "verify.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
/* RAM is prepared in pieces of this size, taken in turn by the threads. */
#define PREPARE_CHUNK (64ull << 20)

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
	const struct rdmig_vm_dest *vd;
	bool have_vm; /* prepare() succeeded: discard() is owed unless the VM runs */
	struct rdmig_vm_region reg[RDMIG_MIG_MAX_REGIONS]; /* the VMM's RAM */
	struct rdmig_msg_setup setup;
	uint64_t region_pages[RDMIG_MIG_MAX_REGIONS];
	struct rdmig_vfy *vfy;
	uint32_t ended_round;	/* the last MANIFEST_END's round */
	uint64_t checked_final; /* pages the verifier had checked when FINAL came */
	struct receiver rx[RDMIG_MAX_CHANNELS];
	unsigned nrx;
	struct rdmig_msg_final fin;
	uint8_t *state;	     /* the VM's state, kept for start() (fin.state points here) */
	uint32_t state_have; /* bytes of it received (FINAL, then STATE) */
	bool have_final;
	bool prepared;	       /* VERIFIED sent (or tried): no discarding on our own */
	bool running;	       /* the guest runs here: GO came */
	struct rdmig_pcd *pcd; /* the source may switch to post-copy */
	bool pc;	       /* it did: the set came, the guest starts with pages missing */
	bool pc_start_failed;
	bool pc_lost; /* the post-copy did not finish: the guest here is incomplete */
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

/*
 * The test hook: every fence on the channel that carries the page leaves it
 * damaged, as a transport that corrupted each copy would. Only this thread
 * writes the page's channel on tcp, so nothing races with it here.
 */
static void test_corrupt(struct receiver *r)
{
	static const uint8_t mark[8] = {0xba, 0xdc, 0x0f, 0xfe, 0xe0, 0xdd, 0xf0, 0x0d};
	int64_t p = r->m->o->test_corrupt_page;
	const struct rdmig_vm_region *gr;

	if (p < 0 || (uint64_t)p >= r->m->region_pages[0] ||
	    rdmig_stripe_chan((uint64_t)p * RDMIG_PAGE_SIZE, r->m->setup.channels) != r->chan)
		return;
	gr = &r->m->reg[0];
	log_warn("test: corrupting page %" PRId64 " before verification", p);
	memcpy((uint8_t *)gr->addr + (uint64_t)p * RDMIG_PAGE_SIZE + 120, mark, sizeof(mark));
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
		test_corrupt(r);
		rdmig_vfy_fence(r->m->vfy, r->chan, (uint32_t)(f.seq & ~RDMIG_SEQ_FINAL));
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
static void bind_region(struct mig_dst *m, unsigned r, const struct rdmig_vm_region *gr)
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

static double ms_since(uint64_t t)
{
	return (double)(rdmig_now_ns() - t) / 1e6;
}

/* The verifier checked every round up to `round`: the source may switch over. */
static void round_checked(void *ctx, uint32_t round, uint64_t checked)
{
	struct mig_dst *m = ctx;
	uint8_t b[RDMIG_ROUND_MSG_LEN];

	/* A failed send fails the connection, which the control thread sees. */
	rdmig_ctrl_send(m->c, RDMIG_EMSG_ROUND_VERIFIED, b,
			rdmig_msg_round_encode(b, round, checked), NULL);
}

struct prepare {
	struct mig_dst *m;
	unsigned idx;
	pthread_t th;
	_Atomic uint64_t *next; /* next chunk to take, over all regions */
};

static void *prepare_main(void *arg)
{
	struct prepare *p = arg;
	struct mig_dst *m = p->m;
	struct rdmig_err perr = RDMIG_ERR_INIT;

	/* Pinned like receiver idx, so that first touch puts pages near it when unbound. */
	if (rdmig_numa_pin_self(m->o->plan, p->idx, &perr))
		log_debug("prepare %u: %s", p->idx, rdmig_err_str(&perr));
	for (;;) {
		uint64_t c = atomic_fetch_add(p->next, 1), off = c * PREPARE_CHUNK;
		unsigned r = 0;

		while (r < m->setup.nregions && off >= m->setup.region_len[r])
			off -= m->setup.region_len[r++];
		if (r >= m->setup.nregions)
			break;
		{
			const struct rdmig_vm_region *gr = &m->reg[r];
			uint64_t len =
			    gr->len - off < PREPARE_CHUNK ? gr->len - off : PREPARE_CHUNK;

			/* Older kernels: touch one byte per page (still zero, still parallel). */
			if (madvise((uint8_t *)gr->addr + off, len, MADV_POPULATE_WRITE))
				for (uint64_t o = 0; o < len; o += RDMIG_PAGE_SIZE)
					((volatile uint8_t *)gr->addr)[off + o] = 0;
		}
	}
	return NULL;
}

/*
 * Fault the guest's RAM in with one thread per data channel. Only a speed-up:
 * any page left unfaulted is faulted by its first write, as before.
 */
static void prepare_ram(struct mig_dst *m)
{
	struct prepare p[RDMIG_MAX_CHANNELS];
	_Atomic uint64_t next = 0;
	unsigned n = 0;

	for (unsigned i = 0; i < m->setup.channels; i++) {
		p[i] = (struct prepare){.m = m, .idx = i, .next = &next};
		if (pthread_create(&p[i].th, NULL, prepare_main, &p[i]))
			break;
		n++;
	}
	if (!n) {
		struct prepare one = {.m = m, .next = &next};

		prepare_main(&one);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(p[i].th, NULL);
}

/* Ask the VMM for RAM of the source's layout and check what it gives. */
static int vm_prepare(struct mig_dst *m, struct rdmig_err *err)
{
	struct rdmig_vm_layout lay = {.nregions = m->setup.nregions};
	int ret;

	for (unsigned r = 0; r < lay.nregions; r++) {
		lay.len[r] = m->setup.region_len[r];
		lay.node[r] = m->setup.region_node[r];
	}
	ret = m->vd->ops->prepare(m->vd->ctx, m->setup.config, m->setup.config_len, &lay, m->reg,
				  err);
	if (ret > 0)
		ret = -EIO; /* a callback bug must not look like success */
	if (ret) {
		rdmig_seterr(err, ret, "failed without a message");
		rdmig_err_prefix(err, "the VMM cannot take the VM");
		return ret;
	}
	m->have_vm = true;
	for (unsigned r = 0; r < lay.nregions; r++) {
		const struct rdmig_vm_region *vr = &m->reg[r];

		if (!vr->addr || (uintptr_t)vr->addr % RDMIG_PAGE_SIZE || vr->len != lay.len[r])
			return rdmig_seterr(err, -EINVAL,
					    "the VMM gave region %u as %p, %" PRIu64
					    " bytes: expected page-aligned memory of %" PRIu64
					    " bytes",
					    r, vr->addr, vr->len, lay.len[r]);
	}
	return 0;
}

static int setup(struct mig_dst *m, struct rdmig_err *err)
{
	struct rdmig_vfy_cfg vc = {0};
	uint8_t buf[RDMIG_SETUP_MAX_LEN];
	uint16_t type;
	uint64_t t;
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
	ret = vm_prepare(m, err);
	if (ret)
		return ret;
	for (unsigned r = 0; r < m->setup.nregions; r++) {
		const struct rdmig_vm_region *gr = &m->reg[r];

		m->region_pages[r] = gr->len / RDMIG_PAGE_SIZE;
		/* Before registration: an RDMA registration faults the pages in. */
		bind_region(m, r, gr);
		vc.addr[r] = gr->addr;
		vc.pages[r] = m->region_pages[r];
		m->st.ram_bytes += gr->len;
	}
	/*
	 * Fault the RAM in now, in parallel, rather than in the receive path
	 * while the bulk round arrives (where clearing fresh pages halves the
	 * rate); registration then pins pages that exist.
	 */
	t = rdmig_now_ns();
	prepare_ram(m);
	m->st.setup.prepare_ms = ms_since(t);
	t = rdmig_now_ns();
	for (unsigned r = 0; r < m->setup.nregions; r++) {
		const struct rdmig_vm_region *gr = &m->reg[r];
		char name[32];
		uint32_t id;

		if (gr->name)
			snprintf(name, sizeof(name), "%s", gr->name);
		else
			snprintf(name, sizeof(name), "ram%u", r);
		ret = rdmig_reg(m->c, name, gr->addr, gr->len, RDMIG_REG_REMOTE_WRITE, &id, err);
		if (ret)
			return ret;
	}
	m->st.setup.register_ms = ms_since(t);
	vc.mode = (enum rdmig_verify_mode)m->setup.verify;
	vc.nregions = m->setup.nregions;
	vc.channels = m->setup.channels;
	vc.threads = m->setup.channels;
	vc.ack = round_checked;
	vc.ctx = m;
	m->st.verify = vc.mode;
	ret = rdmig_vfy_create(&vc, &m->vfy, err);
	if (ret)
		return ret;
	m->st.setup.overhead_bytes = rdmig_vfy_overhead(m->vfy);
	if (m->setup.flags & RDMIG_SETUP_F_POSTCOPY) {
		struct rdmig_pcd_cfg pc = {.o = m->o,
					   .id = m->setup.id,
					   .nregions = m->setup.nregions,
					   .channels = m->setup.channels};

		for (unsigned r = 0; r < pc.nregions; r++) {
			pc.addr[r] = m->reg[r].addr;
			pc.pages[r] = m->region_pages[r];
		}
		/* Refused now, with the reason, rather than at the switch. */
		ret = rdmig_pcd_create(&pc, &m->pcd, err);
		if (ret)
			return ret;
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

/* Remote access is revoked: the checks still open, then VERIFY_FAIL or nothing. */
static int verify(struct mig_dst *m, struct rdmig_err *err)
{
	struct rdmig_msg_verify_fail f;
	int ret = rdmig_vfy_finish(m->vfy, &f, &m->st.verified_pages, err);

	if (ret == -EILSEQ) {
		uint8_t b[64];
		size_t n = rdmig_msg_verify_fail_encode(b, &f);

		rdmig_ctrl_send(m->c, RDMIG_EMSG_VERIFY_FAIL, b, n, NULL);
	}
	return ret;
}

static int source_cancelled(const uint8_t *buf, size_t len, struct rdmig_err *err)
{
	char why[260];
	int code;
	int ret = rdmig_msg_cancel_decode(buf, len, &code, why, sizeof(why), err);

	return ret ? ret : rdmig_seterr(err, code, "source cancelled: %s", why);
}

/* FINAL came, and as many STATE bytes as it announced. */
static bool state_complete(const struct mig_dst *m)
{
	return m->have_final && m->state_have == m->fin.state_len;
}

/* One message of the follow loop; 1 when MANIFEST_END closed the manifest. */
static int follow_msg(struct mig_dst *m, uint16_t type, const uint8_t *buf, size_t len,
		      struct rdmig_err *err)
{
	bool verifying = m->setup.verify != RDMIG_VERIFY_OFF;
	struct rdmig_msg_manifest mf;
	uint64_t total;
	uint32_t round;
	int ret;

	switch (type) {
	case RDMIG_EMSG_CANCEL:
		return source_cancelled(buf, len, err);
	case RDMIG_EMSG_PC_SET:
	case RDMIG_EMSG_PC_SET_END:
		if (!m->pcd || m->have_final)
			return rdmig_seterr(err, -EPROTO, "%s %s",
					    type == RDMIG_EMSG_PC_SET ? "PC_SET" : "PC_SET_END",
					    m->pcd ? "after FINAL" : "without post-copy in SETUP");
		if (type == RDMIG_EMSG_PC_SET_END) {
			ret = rdmig_msg_round_decode(buf, len, "PC_SET_END", &round, &total, err);
			if (!ret && round != m->ended_round + 1)
				ret = rdmig_seterr(err, -EPROTO,
						   "PC_SET_END for round %u after MANIFEST_END of "
						   "round %u",
						   round, m->ended_round);
			return ret ? ret : rdmig_pcd_set_end(m->pcd, total, err);
		}
		ret = rdmig_msg_manifest_decode(buf, len, m->region_pages, m->setup.nregions, &mf,
						err);
		if (!ret && mf.round != m->ended_round + 1)
			ret = rdmig_seterr(err, -EPROTO,
					   "PC_SET for round %u after MANIFEST_END of round %u",
					   mf.round, m->ended_round);
		return ret ? ret : rdmig_pcd_set(m->pcd, &mf, err);
	case RDMIG_EMSG_FINAL:
		ret = rdmig_msg_final_decode(buf, len, &m->fin, err);
		if (ret)
			return ret;
		/* buf is reused for the next message: the state waits for GO in its own copy. */
		if (m->fin.state_len) {
			m->state = malloc(m->fin.state_len);
			if (!m->state)
				return rdmig_seterr(err, -ENOMEM,
						    "out of memory for the VM's state");
			memcpy(m->state, m->fin.state, m->fin.inline_len);
		}
		m->state_have = m->fin.inline_len;
		m->fin.state = m->state;
		if (!(m->fin.final_seq & RDMIG_SEQ_FINAL))
			return rdmig_seterr(err, -EPROTO, "FINAL without the final fence mark");
		if (rdmig_pcd_switching(m->pcd) && !rdmig_pcd_set_complete(m->pcd))
			return rdmig_seterr(err, -EPROTO, "FINAL before PC_SET_END");
		m->pc = rdmig_pcd_set_complete(m->pcd);
		for (unsigned r = 0; m->pc && r < m->setup.nregions; r++)
			rdmig_vfy_except(m->vfy, r, rdmig_pcd_missing(m->pcd, r));
		/* Verifying, the final round's manifest follows FINAL; else FINAL closes. */
		if (verifying && m->fin.rounds != m->ended_round + 1)
			return rdmig_seterr(err, -EPROTO,
					    "FINAL says %u rounds after MANIFEST_END of round %u",
					    m->fin.rounds, m->ended_round);
		m->have_final = true;
		m->checked_final = rdmig_vfy_checked(m->vfy);
		m->st.verified_background = m->checked_final;
		m->st.round = m->fin.rounds;
		set_state(m, RDMIG_MIG_FINAL_COPY);
		if (rdmig_mig_test_fault(m->o, m->c, RDMIG_STEP_FINAL, "destination"))
			return rdmig_seterr(err, -ECONNABORTED, "test: dropped at FINAL");
		return verifying || !state_complete(m) ? 0 : 1;
	case RDMIG_EMSG_STATE: {
		const uint8_t *data;
		size_t n;

		if (!m->have_final || state_complete(m))
			return rdmig_seterr(err, -EPROTO, "STATE %s",
					    m->have_final ? "after the whole state came"
							  : "before FINAL");
		ret = rdmig_msg_state_decode(buf, len, m->state_have, m->fin.state_len, &data, &n,
					     err);
		if (ret)
			return ret;
		memcpy(m->state + m->state_have, data, n);
		m->state_have += (uint32_t)n;
		return verifying || !state_complete(m) ? 0 : 1;
	}
	case RDMIG_EMSG_MANIFEST:
		if (m->have_final && !state_complete(m))
			return rdmig_seterr(err, -EPROTO, "MANIFEST before the whole VM state");
		ret = rdmig_msg_manifest_decode(buf, len, m->region_pages, m->setup.nregions, &mf,
						err);
		if (ret)
			return ret;
		/* Rounds follow each other: only the round after the last one ended is open. */
		if (mf.round != m->ended_round + 1)
			return rdmig_seterr(err, -EPROTO,
					    "MANIFEST for round %u after MANIFEST_END of round %u",
					    mf.round, m->ended_round);
		return rdmig_vfy_manifest(m->vfy, &mf, err);
	case RDMIG_EMSG_MANIFEST_END:
		if (m->have_final && !state_complete(m))
			return rdmig_seterr(err, -EPROTO, "MANIFEST_END before the whole VM state");
		ret = rdmig_msg_round_decode(buf, len, "MANIFEST_END", &round, &total, err);
		if (ret)
			return ret;
		if (round != m->ended_round + 1)
			return rdmig_seterr(err, -EPROTO,
					    "MANIFEST_END for round %u after that of round %u",
					    round, m->ended_round);
		ret = rdmig_vfy_round_end(m->vfy, round, total, err);
		if (ret)
			return ret;
		m->ended_round = round;
		if (!m->have_final)
			return 0;
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
	/*
	 * Post-copy: pages are missing until fetched, so the faults must be
	 * served before anything touches the RAM, and a dump of the RAM as
	 * committed cannot be had (the synthetic guest dumps after its run).
	 */
	if (m->pc && rdmig_pcd_start(m->pcd, m->c, &e)) {
		log_err("migration %s: post-copy does not start: %s", m->ids, rdmig_err_str(&e));
		m->pc_start_failed = true;
		rdmig_err_clear(&e);
	}
	if (!m->pc && o->dump_ram && rdmig_mig_dump(m->reg, m->setup.nregions, o->dump_ram, &e))
		log_err("%s", rdmig_err_str(&e));
	/* The guest resumes where the source stopped it. */
	rdmig_err_clear(&e);
	if (m->vd->ops->start(m->vd->ctx, m->fin.state, m->fin.state_len, &e))
		log_err("migration %s: GO, but the VM does not resume: %s", m->ids,
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

/*
 * GO came and the guest runs with pages missing: GO_ACK, then every page
 * fetched (rdmig_pcd_finish: PC_DONE, DONE). A failure from here loses
 * the guest here; the source keeps its complete copy.
 */
static int postcopy(struct mig_dst *m, struct rdmig_err *err)
{
	uint8_t buf[RDMIG_MIG_ID_LEN];
	int ret;

	if (m->pc_start_failed) {
		m->pc_lost = true;
		return rdmig_seterr(err, RDMIG_MIG_EPCLOST, "post-copy did not start here");
	}
	if (!rdmig_mig_test_fault(m->o, m->c, RDMIG_STEP_GO_ACK, "destination"))
		rdmig_ctrl_send(m->c, RDMIG_EMSG_GO_ACK, buf, rdmig_msg_id_encode(buf, m->setup.id),
				NULL);
	set_state(m, RDMIG_MIG_POSTCOPY);
	ret = rdmig_pcd_finish(m->pcd, &m->st, err);
	if (ret) {
		m->pc_lost = true;
		return ret;
	}
	set_state(m, RDMIG_MIG_COMMIT);
	return 0;
}

static uint32_t us(double ms)
{
	return ms * 1e3 > (double)UINT32_MAX ? UINT32_MAX : (uint32_t)(ms * 1e3);
}

static int run(struct mig_dst *m, struct rdmig_err *err)
{
	struct rdmig_msg_verified v = {0};
	uint8_t b[RDMIG_VERIFIED_LEN];
	uint64_t t;
	int ret;

	ret = setup(m, err);
	if (ret)
		return ret;
	ret = follow(m, err);
	if (ret)
		return ret;
	t = rdmig_now_ns();
	ret = wait_final(m, err);
	if (ret)
		return ret;
	m->st.down.fences_ms = ms_since(t);
	/* Every write has landed: no key may reach this RAM from here on, before it is checked. */
	t = rdmig_now_ns();
	receivers_join(m);
	rdmig_revoke(m->c);
	m->st.down.revoke_ms = ms_since(t);
	set_state(m, RDMIG_MIG_VERIFY);
	t = rdmig_now_ns();
	ret = verify(m, err);
	if (ret)
		return ret;
	/* Post-copy: the stale copies go and the faults are armed before the guest can run. */
	if (m->pc) {
		ret = rdmig_pcd_arm(m->pcd, err);
		if (ret)
			return ret;
	}
	m->st.down.verify_ms = ms_since(t);
	m->st.down.verify_pages = rdmig_vfy_checked(m->vfy) - m->checked_final;
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
	v.pages = m->st.verified_pages;
	v.fence_us = us(m->st.down.fences_ms);
	v.revoke_us = us(m->st.down.revoke_ms);
	v.verify_us = us(m->st.down.verify_ms);
	if (rdmig_ctrl_send(m->c, RDMIG_EMSG_VERIFIED, b, rdmig_msg_verified_encode(b, &v), NULL))
		log_warn("migration %s: sending VERIFIED failed: it may have arrived", m->ids);
	set_state(m, RDMIG_MIG_PREPARED);
	ret = await_go(m, err);
	if (ret < 0)
		return ret;
	if (ret)
		return settle(m, err);
	if (m->pc)
		return postcopy(m, err);
	acknowledge(m);
	return 0;
}

int rdmig_migrate_dest(struct rdmig_conn *c, const struct rdmig_vm_dest *dest,
		       const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
		       struct rdmig_err *err)
{
	struct mig_dst *m;
	int ret;

	if (!dest || !dest->ops || !dest->ops->prepare || !dest->ops->start || !dest->ops->discard)
		return rdmig_seterr(err, -EINVAL,
				    "the destination VM needs ops with prepare, start and discard");
	/* The engine's own limits too, for callers that did not ask first. */
	ret = rdmig_mig_opts_check(opts, rdmig_conn_backend(c), NULL, err);
	if (ret)
		return ret;
	m = calloc(1, sizeof(*m));
	if (!m)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	m->c = c;
	m->vd = dest;
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
	/* The checkers read guest RAM: stopped before it goes. */
	rdmig_vfy_destroy(m->vfy);
	m->vfy = NULL;
	/*
	 * After the regions are revoked (the staging buffer is one); closing
	 * the userfaultfd releases a guest that waits on a page that never came.
	 */
	rdmig_pcd_destroy(m->pcd);
	m->pcd = NULL;
	if (m->pc_lost) {
		log_err("migration %s: %s: the guest here is incomplete and is dropped; the "
			"source holds the whole guest, paused",
			m->ids, rdmig_err_str(err));
		m->running = false;
		m->st.state = RDMIG_MIG_FAILED;
		if (ret != RDMIG_MIG_EPCLOST) {
			char why[RDMIG_ERR_MSG_MAX];

			snprintf(why, sizeof(why), "%s", rdmig_err_str(err));
			rdmig_err_clear(err);
			ret = rdmig_seterr(err, RDMIG_MIG_EPCLOST, "post-copy failed: %s", why);
		}
	} else if (m->running) {
		if (ret)
			log_err("migration %s: the guest runs here, although: %s", m->ids,
				rdmig_err_str(err));
		rdmig_err_clear(err);
		ret = 0;
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
	if (m->have_vm && !m->running)
		dest->ops->discard(dest->ctx);
	free(m->state);
	free(m);
	return ret;
}
