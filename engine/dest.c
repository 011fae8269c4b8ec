/* SPDX-License-Identifier: MIT */
/*
 * Destination side of a live migration.
 *
 * Threads: the caller's thread follows the control channel (setup,
 * manifest, commit); one receiver per data channel sits in
 * rdmig_wait_fence(), which on tcp is also what lands the pages, and
 * records the last fence it saw. The RAM is only ever written by the
 * transport (remote writes or tcp receives) until commit.
 *
 * Nothing is kept unless every page verifies: on any failure the guest RAM
 * is unmapped and remote access revoked.
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
	struct rdmig_mig_stats st;
	uint64_t t0;
};

static void set_state(struct mig_dst *m, enum rdmig_mig_state s)
{
	m->st.state = s;
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	log_info("destination: %s", rdmig_mig_state_name(s));
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
		/* The source fences every channel every round; a long silence is a fault. */
		r->ret = rdmig_wait_fence(r->m->c, r->chan,
					  (int)(r->m->o->progress_timeout_ns / 1000000ull) + 60000,
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
	if (type != RDMIG_EMSG_SETUP)
		return rdmig_seterr(err, -EPROTO, "expected SETUP, got message 0x%x", type);
	ret = rdmig_msg_setup_decode(buf, len, m->o->max_ram, &m->setup, err);
	if (ret)
		return ret;
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

/* Wait until every channel has delivered the final fence: all data landed. */
static int wait_final(struct mig_dst *m, struct rdmig_err *err)
{
	uint64_t deadline = rdmig_now_ns() + 120 * 1000000000ull;
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
			    "%u of %u channels delivered their final fence in 120 s", n, m->nrx);
		if (rdmig_conn_failed(m->c, err))
			return err && err->code ? err->code : -ECONNRESET;
		usleep(1000);
	}
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

static int follow(struct mig_dst *m, struct rdmig_err *err)
{
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
			continue;
		}
		if (ret)
			break;
		if (type == RDMIG_EMSG_CANCEL) {
			char why[260];
			int code;

			ret = rdmig_msg_cancel_decode(buf, len, &code, why, sizeof(why), err);
			if (!ret)
				ret = rdmig_seterr(err, code, "source cancelled: %s", why);
			break;
		}
		if (type == RDMIG_EMSG_FINAL) {
			ret = rdmig_msg_final_decode(buf, len, m->setup.vcpus, &m->fin, err);
			if (ret)
				break;
			if (!(m->fin.final_seq & RDMIG_SEQ_FINAL)) {
				ret = rdmig_seterr(err, -EPROTO,
						   "FINAL without the final fence mark");
				break;
			}
			m->have_final = true;
			m->st.round = m->fin.rounds;
			set_state(m, RDMIG_MIG_FINAL_COPY);
			continue;
		}
		if (type == RDMIG_EMSG_MANIFEST) {
			struct rdmig_msg_manifest mf;

			if (!m->have_final) {
				ret = rdmig_seterr(err, -EPROTO, "MANIFEST before FINAL");
				break;
			}
			ret = rdmig_msg_manifest_decode(buf, len, m->region_pages,
							m->setup.nregions, &mf, err);
			if (ret)
				break;
			for (uint32_t i = 0; i < mf.count; i++)
				m->sums[mf.region][mf.first_page + i] =
				    rdmig_get_be64(mf.sums + 8 * i);
			m->sums_got += mf.count;
			continue;
		}
		if (type == RDMIG_EMSG_MANIFEST_END) {
			uint64_t total, want = 0;

			ret = rdmig_msg_u64_decode(buf, len, &total, err);
			if (ret)
				break;
			for (unsigned r = 0; r < m->setup.nregions; r++)
				want += m->region_pages[r];
			if (!m->have_final || total != want || m->sums_got != want) {
				ret = rdmig_seterr(err, -EPROTO,
						   "manifest incomplete: %" PRIu64 " of %" PRIu64
						   " checksums",
						   m->sums_got, want);
				break;
			}
			break; /* all sent: verify */
		}
		ret = rdmig_seterr(err, -EPROTO, "unexpected migration message 0x%x", type);
		break;
	}
	free(buf);
	return ret;
}

static int run(struct mig_dst *m, uint64_t *t_commit, struct rdmig_err *err)
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
	set_state(m, RDMIG_MIG_VERIFY);
	ret = verify(m, err);
	if (ret)
		return ret;
	set_state(m, RDMIG_MIG_COMMIT);
	rdmig_msg_u64_encode(b, m->st.verified_pages);
	/*
	 * The commit is decided here, once every page verified. If telling the
	 * source fails (on rdma, its close can flush our SEND before the ACK is
	 * seen, although the message arrived), the guest must still run here:
	 * discarding it could leave it running nowhere. A source that really
	 * never heard resumes after its commit timeout (docs/reliability.md).
	 */
	if (rdmig_ctrl_send(m->c, RDMIG_EMSG_COMMITTED, b, sizeof(b), err)) {
		log_warn("committed, but the source may not have heard: %s", rdmig_err_str(err));
		rdmig_err_clear(err);
	}
	*t_commit = rdmig_now_ns();
	return 0;
}

int rdmig_mig_dest(struct rdmig_conn *c, const struct rdmig_mig_opts *opts,
		   struct rdmig_mig_stats *stats, struct rdmig_err *err)
{
	struct mig_dst *m;
	uint64_t t_commit = 0;
	int ret;

	m = calloc(1, sizeof(*m));
	if (!m)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	m->c = c;
	m->o = opts;
	m->t0 = rdmig_now_ns();
	ret = run(m, &t_commit, err);
	if (ret) {
		uint8_t b[300];
		size_t n = rdmig_msg_cancel_encode(b, ret, rdmig_err_str(err));

		if (!rdmig_conn_failed(c, NULL))
			rdmig_ctrl_send(c, RDMIG_EMSG_CANCEL, b, n, NULL);
		rdmig_conn_abort(c, ret, rdmig_err_str(err));
	}
	/* Remote access ends here whatever happened: no old key works any more. */
	for (unsigned i = 0; i < m->nrx; i++) {
		if (!atomic_load(&m->rx[i].finished))
			rdmig_conn_abort(c, -ECANCELED, "migration over");
		pthread_join(m->rx[i].th, NULL);
	}
	rdmig_revoke(c);
	if (!ret) {
		struct rdmig_err e2 = RDMIG_ERR_INIT;

		if (opts->dump_ram && rdmig_guest_dump(m->g, opts->dump_ram, &e2))
			log_err("%s", rdmig_err_str(&e2));
		if (opts->test_dest_ram)
			opts->test_dest_ram(m->g, opts->ev_ctx);
		/* The guest resumes where the source's vCPUs stopped. */
		rdmig_err_clear(&e2);
		if (m->setup.vcpus && rdmig_guest_start(m->g, m->fin.vcpu, &e2)) {
			log_err("committed, but the guest does not resume: %s", rdmig_err_str(&e2));
		} else if (opts->keep_guest) {
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
	} else {
		m->st.state = ret == -ECANCELED ? RDMIG_MIG_CANCELLED : RDMIG_MIG_FAILED;
	}
	(void)t_commit;
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
