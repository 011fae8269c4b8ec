/* SPDX-License-Identifier: MIT */
/*
 * Source side of a live migration.
 *
 * Threads: the caller's thread runs the state machine (harvest, plan,
 * convergence, switchover, manifest); one worker per data channel posts that
 * channel's runs and fences them. Workers only touch their own `struct
 * worker` and the connection's per-channel send path; the hand-over of run
 * lists goes through `lock`/`cv`.
 *
 * Invariant for integrity: dirty tracking starts before the bulk round reads
 * any page, so every page written after it was read is harvested again;
 * the final harvest happens with every vCPU paused, so the last round sends
 * everything that differs from what the destination already has.
 *
 * Invariant for the hand-over: `go` is set before GO is sent, and once it
 * is set the guest is never resumed here (rdmig/migrate.h).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "converge.h"
#include "log.h"
#include "plan.h"
#include "source_int.h"

/* Longest wait for the destination's ROUND_VERIFIED before another round. */
#define ACK_WAIT_MS 100
/* Shortest interval between two harvests. */
#define MIN_ROUND_NS (5 * 1000000ull)

void src_set_state(struct mig_src *m, enum rdmig_mig_state s)
{
	m->st.state = s;
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	/* The caller hears every state as an event; the log only when it asks for detail. */
	log_debug("source: %s", rdmig_mig_state_name(s));
	rdmig_mig_emit(m->o, RDMIG_EV_STATE, &m->st);
}

/*
 * Switchover cost besides copying: a few round trips, and in full mode the
 * destination's pass over the whole guest. In rounds mode the final check
 * covers only the final round's pages, which the copy term already scales
 * with.
 */
static double estimate_fixed_s(const struct mig_src *m)
{
	struct timespec a, b;
	uint64_t t, n = 0, sink = 0;
	const uint64_t sample = 8ull << 20;

	if (m->o->verify != RDMIG_VERIFY_FULL)
		return 0.01;
	/* CPU time, not wall time: a busy host must not make the estimate explode. */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	for (unsigned r = 0; r < m->nreg && n < sample; r++)
		for (uint64_t p = 0; p < m->reg[r].pages && n < sample; p++, n += RDMIG_PAGE_SIZE)
			sink ^= rdmig_page_sum(m->reg[r].addr + p * RDMIG_PAGE_SIZE);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	t = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ull + (uint64_t)b.tv_nsec -
	    (uint64_t)a.tv_nsec + (sink & 1);
	if (!n)
		return 0.01;
	/* The destination hashes the whole guest before it commits. */
	return ((double)t / 1e9) * ((double)m->ram / (double)n) + 0.01;
}

/* The VM may not throttle (no op): then the policy only predicts. */
static void set_throttle(struct mig_src *m, unsigned permille)
{
	if (m->vm->ops->throttle)
		m->vm->ops->throttle(m->vm->ctx, permille);
}

/* The VMM's description, checked before anything is registered or sent. */
static int vm_check(const struct rdmig_vm *vm, struct rdmig_err *err)
{
	if (!vm || !vm->ops || !vm->ops->pause || !vm->ops->resume)
		return rdmig_seterr(err, -EINVAL, "the VM needs ops with pause and resume");
	if (vm->nregions < 1 || vm->nregions > RDMIG_MIG_MAX_REGIONS)
		return rdmig_seterr(err, -EINVAL, "the VM has %u RAM regions, expected 1 to %d",
				    vm->nregions, RDMIG_MIG_MAX_REGIONS);
	if (vm->config_len > RDMIG_VM_CONFIG_MAX || (vm->config_len && !vm->config))
		return rdmig_seterr(err, -EINVAL,
				    "the VM's config blob is %zu bytes, at most %u (and not NULL)",
				    vm->config_len, RDMIG_VM_CONFIG_MAX);
	for (unsigned r = 0; r < vm->nregions; r++) {
		const struct rdmig_vm_region *vr = &vm->regions[r];

		if (!vr->addr || (uintptr_t)vr->addr % RDMIG_PAGE_SIZE || !vr->len ||
		    vr->len % RDMIG_PAGE_SIZE)
			return rdmig_seterr(err, -EINVAL,
					    "VM RAM region %u (%p, %" PRIu64
					    " bytes) is not page-aligned memory of whole pages",
					    r, vr->addr, vr->len);
	}
	return 0;
}

static int setup(struct mig_src *m, struct rdmig_err *err)
{
	struct rdmig_msg_setup s = {0};
	static_assert(RDMIG_SETUP_MAX_LEN <= RDMIG_CTRL_MAX_PAYLOAD, "SETUP fits one message");
	uint8_t buf[RDMIG_SETUP_MAX_LEN + 300]; /* SETUP out; SETUP_OK or CANCEL back */
	uint16_t type;
	uint64_t t;
	size_t len;
	int ret;

	m->nreg = m->vm->nregions;
	s.version = RDMIG_ENGINE_VERSION;
	s.page_size = RDMIG_PAGE_SIZE;
	s.nregions = m->nreg;
	s.channels = rdmig_conn_channels(m->c);
	s.config_len = (uint32_t)m->vm->config_len;
	if (s.config_len)
		memcpy(s.config, m->vm->config, s.config_len);
	ret = rdmig_mig_new_id(m->id, err);
	if (ret)
		return ret;
	memcpy(s.id, m->id, RDMIG_MIG_ID_LEN);
	s.verify = m->o->verify;
	s.flags = m->o->postcopy ? RDMIG_SETUP_F_POSTCOPY : 0;
	m->st.verify = m->o->verify;
	rdmig_mig_id_str(m->id, m->ids);
	snprintf(m->st.migration_id, sizeof(m->st.migration_id), "%s", m->ids);
	for (unsigned r = 0; r < m->nreg; r++) {
		const struct rdmig_vm_region *gr = &m->vm->regions[r];
		struct src_region *sr = &m->reg[r];
		char name[32];

		s.region_len[r] = gr->len;
		/* Where the region lives now, so the destination can put it there too. */
		s.region_node[r] =
		    gr->node >= 0 ? gr->node : rdmig_numa_region_node(gr->addr, gr->len, 256, NULL);
		if (s.region_node[r] > RDMIG_SETUP_MAX_NODE)
			s.region_node[r] = -1;
		sr->addr = gr->addr;
		sr->len = gr->len;
		sr->pages = gr->len / RDMIG_PAGE_SIZE;
		sr->words = (sr->pages + 63) / 64;
		sr->bitmap = calloc(sr->words, 8);
		sr->sums = calloc(sr->pages, sizeof(uint64_t));
		if (!sr->bitmap || !sr->sums)
			return rdmig_seterr(err, -ENOMEM, "out of memory for dirty bitmaps");
		m->st.setup.overhead_bytes += sr->words * 8 + sr->pages * sizeof(uint64_t);
		m->ram += gr->len;
		m->pages += sr->pages;
		t = rdmig_now_ns();
		if (gr->name)
			snprintf(name, sizeof(name), "%s", gr->name);
		else
			snprintf(name, sizeof(name), "ram%u", r);
		/*
		 * Post-copy: readable by the peer, so that the switch costs no
		 * registration; the keys leave only at the switch (src_pc_announce).
		 */
		ret = rdmig_reg(m->c, name, gr->addr, gr->len,
				m->o->postcopy ? RDMIG_REG_REMOTE_READ : 0, &sr->lreg, err);
		m->st.setup.register_ms += ms_since(t);
		if (ret)
			return ret;
		m->lreg_idx[sr->lreg] = (int8_t)r;
	}
	m->st.ram_bytes = m->ram;
	len = rdmig_msg_setup_encode(buf, &s);
	ret = rdmig_ctrl_send(m->c, RDMIG_EMSG_SETUP, buf, len, err);
	if (ret)
		return ret;
	/*
	 * The destination sends its LAYOUT, then SETUP_OK; or CANCEL with its
	 * reason when it refuses (memlock, size). The transport keeps the layout
	 * when it passes by, so waiting for the application message sees both.
	 */
	ret = rdmig_ctrl_recv(m->c, &type, buf, sizeof(buf), &len, 60000, err);
	if (ret)
		return ret;
	if (type == RDMIG_EMSG_CANCEL) {
		char why[260];
		int code;

		if (rdmig_msg_cancel_decode(buf, len, &code, why, sizeof(why), err))
			return -EPROTO;
		return rdmig_seterr(err, code, "destination refused: %s", why);
	}
	if (type != RDMIG_EMSG_SETUP_OK)
		return rdmig_seterr(err, -EPROTO, "expected SETUP_OK, got message 0x%x", type);
	/* The layout must match what we described, region by region. */
	if (rdmig_remote_count(m->c) != m->nreg)
		return rdmig_seterr(err, -EPROTO,
				    "destination exposed %u regions for a guest of %u",
				    rdmig_remote_count(m->c), m->nreg);
	for (unsigned r = 0; r < m->nreg; r++) {
		const struct rdmig_remote_region *rr = rdmig_remote_get(m->c, r);

		if (rr->len != m->reg[r].len)
			return rdmig_seterr(err, -EPROTO,
					    "destination region %u is %" PRIu64
					    " bytes, source %" PRIu64,
					    r, rr->len, m->reg[r].len);
		m->reg[r].rreg = rr->id;
	}
	m->plan = malloc(RUNS_PER_CHUNK * sizeof(*m->plan));
	m->mbuf = malloc(RDMIG_MANIFEST_MAX);
	if (!m->plan || !m->mbuf)
		return rdmig_seterr(err, -ENOMEM, "out of memory for the round plan");
	m->st.setup.overhead_fixed_bytes = RUNS_PER_CHUNK * sizeof(*m->plan) + RDMIG_MANIFEST_MAX +
					   m->nw * 2 * RUNS_PER_CHUNK * sizeof(struct rdmig_run);
	return 0;
}

/*
 * Soft-dirty harvests must stop the guest's writers around read-and-clear.
 * Only resume a guest this hook paused: at switchover the guest stays stopped.
 */
static int pause_writers(void *ctx, bool pause, struct rdmig_err *err)
{
	struct mig_src *m = ctx;

	if (pause && !m->paused && m->vm->running) {
		int ret = m->vm->ops->pause(m->vm->ctx, err);

		if (ret)
			return ret;
		m->hook_paused = true;
	} else if (!pause && m->hook_paused) {
		m->hook_paused = false;
		m->vm->ops->resume(m->vm->ctx);
	}
	return 0;
}

static int dirty_start(struct mig_src *m, struct rdmig_err *err)
{
	struct rdmig_dirty_region dr[RDMIG_MIG_MAX_REGIONS];
	bool vmm_log = m->vm->ops->dirty_log != NULL, huge = false;
	enum rdmig_dirty_kind kind;

	for (unsigned r = 0; r < m->nreg; r++)
		huge |= m->vm->regions[r].hugepages;
	/* A VMM that logs its own writes (KVM) is the only one that sees them all. */
	if (m->o->cold)
		kind = RDMIG_DIRTY_NONE;
	else if (m->o->dirty_auto)
		kind = vmm_log ? RDMIG_DIRTY_VMM_LOG : rdmig_dirty_best(false);
	else
		kind = m->o->dirty_source;
	if (vmm_log && kind != RDMIG_DIRTY_VMM_LOG && kind != RDMIG_DIRTY_NONE)
		return rdmig_seterr(err, -EINVAL,
				    "the VM has its own dirty log: --dirty-source %s would miss "
				    "the writes only it sees (use auto or vmm-bitmap)",
				    rdmig_dirty_kind_name(kind));
	if (kind == RDMIG_DIRTY_NONE && !m->o->cold && m->vm->running)
		return rdmig_seterr(err, -ENOTSUP,
				    "no dirty-page tracking on this kernel for a running guest: "
				    "use --cold (stop the guest and copy once), or a kernel with "
				    "userfaultfd write-protect (6.7+) or soft-dirty");
	/*
	 * The kernel leaves pages pinned for RDMA soft-dirty forever (clear_refs
	 * skips pinned PTEs), so on rdma every round would be the whole guest.
	 */
	if (kind == RDMIG_DIRTY_SOFT_DIRTY && rdmig_conn_backend(m->c) == RDMIG_BACKEND_RDMA)
		return rdmig_seterr(err, -ENOTSUP,
				    "soft-dirty tracking cannot see writes to memory registered "
				    "for RDMA (the kernel never clears pinned pages): use a kernel "
				    "with userfaultfd write-protect (Linux 6.7+), the tcp backend, "
				    "or --cold");
	/* soft-dirty sees a transparent huge page as one unit: 2 MiB per write. */
	if (kind == RDMIG_DIRTY_SOFT_DIRTY && huge)
		return rdmig_seterr(err, -ENOTSUP,
				    "soft-dirty tracking cannot be used with huge pages (it "
				    "tracks a 2 MiB page as one unit, so the guest would never "
				    "converge): drop --hugepages, or use --dirty-source uffd-wp "
				    "(Linux 6.7+) or --cold");
	for (unsigned r = 0; r < m->nreg; r++) {
		dr[r].addr = m->reg[r].addr;
		dr[r].len = m->reg[r].len;
		dr[r].bitmap = m->reg[r].bitmap;
	}
	m->st.dirty_source = kind;
	int ret = rdmig_dirty_create(kind, dr, m->nreg, RDMIG_PAGE_SIZE, &m->dirty, err);
	if (ret)
		return ret;
	m->dirty->pause_writers = pause_writers;
	m->dirty->pause_ctx = m;
	m->dirty->vmm_harvest = m->vm->ops->dirty_log;
	m->dirty->vmm_ctx = m->vm->ctx;
	return rdmig_dirty_start(m->dirty, err);
}

static int run(struct mig_src *m, struct rdmig_err *err)
{
	const struct rdmig_mig_opts *o = m->o;
	struct rdmig_conv cv;
	uint64_t round_bytes, t_round, t_harvest, t_min = 0, min_dirty = UINT64_MAX, dirty;
	struct rdmig_msg_final fin = {0};
	bool pc_broken = false;
	int ret;

	src_set_state(m, RDMIG_MIG_SETUP);
	ret = setup(m, err);
	if (ret)
		return ret;
	if (cancelled(m))
		return rdmig_seterr(err, -ECANCELED, "migration cancelled");
	if (o->cold && m->vm->running) {
		ret = m->vm->ops->pause(m->vm->ctx, err);
		if (ret)
			return ret;
		m->paused = true;
	}
	ret = dirty_start(m, err);
	if (ret)
		return ret;
	ret = src_workers_start(m, err);
	if (ret)
		return ret;
	rdmig_conv_init(&cv, (double)o->downtime_limit_ns / 1e9, estimate_fixed_s(m), o->throttle,
			o->max_throttle);

	/* Round 1: everything that is not zero. */
	src_set_state(m, RDMIG_MIG_BULK);
	m->st.round = 1;
	ret = src_plan_bulk(m, err);
	if (ret)
		return ret;
	t_harvest = rdmig_now_ns();
	t_round = t_harvest;
	/*
	 * --postcopy-after 0: no pre-copy at all. The pages that are not zero
	 * stay planned, become the post-copy set at the switch and cross once.
	 */
	if (o->postcopy == RDMIG_POSTCOPY_ROUNDS && !o->postcopy_rounds) {
		m->pc = true;
		m->st.round = 0;
		log_info("migration %s: post-copy from the start", m->ids);
	} else {
		ret = src_send_round(m, 1, &round_bytes, err);
		if (ret)
			return ret;
	}
	m->st.setup.bulk_ms = ms_since(t_round);
	m->st.setup.bulk_bytes = m->pc ? 0 : round_bytes;

	if (!o->cold && !m->pc) {
		src_set_state(m, RDMIG_MIG_DIRTY);
		for (;;) {
			struct rdmig_conv_obs obs;
			uint64_t now = rdmig_now_ns();

			/* Tiny rounds back to back would only burn CPU: give the guest 5 ms. */
			if (now - t_harvest < MIN_ROUND_NS) {
				usleep((useconds_t)((MIN_ROUND_NS - (now - t_harvest)) / 1000));
				now = rdmig_now_ns();
			}

			obs.sent_bytes = round_bytes;
			obs.round_s = (double)(now - t_round) / 1e9;
			obs.throttle = m->st.throttle;
			ret = rdmig_dirty_harvest(m->dirty, err);
			if (ret)
				return ret;
			dirty = src_count_bits(m) * RDMIG_PAGE_SIZE;
			obs.dirty_bytes = dirty;
			obs.dirty_s = (double)(rdmig_now_ns() - t_harvest) / 1e9;
			t_harvest = rdmig_now_ns();
			rdmig_conv_observe(&cv, &obs);

			m->st.round_bytes = round_bytes;
			m->st.dirty_bytes = dirty;
			m->st.bandwidth = cv.bw;
			m->st.dirty_rate = cv.rate * (1.0 - (double)m->st.throttle / 1000.0);
			m->st.predicted_downtime_ms = cv.predicted_s * 1e3;
			src_progress(m);
			rdmig_mig_emit(o, RDMIG_EV_ROUND, &m->st);

			ret = src_poll_dst(m, 0, err);
			if (ret)
				return ret;
			/*
			 * Post-copy when the option says so, even where pre-copy would
			 * converge now: the user asked for it (auto only fires when it
			 * would not).
			 */
			if (src_pc_due(m, &cv) && m->st.round >= o->min_rounds) {
				/*
				 * The destination checks the rounds it has in the
				 * background; another round would only add to them, so
				 * wait for it (the guest runs meanwhile).
				 */
				ret = src_pc_wait_dst(m, err);
				if (ret)
					return ret;
				m->pc = true;
				log_info("migration %s: switching to post-copy after round %u",
					 m->ids, m->st.round);
				break;
			}
			/*
			 * Rounds mode: switch over only once the destination has
			 * checked what it holds, so that the downtime checks the
			 * final round alone. Waiting here costs the guest nothing;
			 * while the destination is behind, rounds go on.
			 */
			if (cv.switch_now && m->st.round >= o->min_rounds &&
			    !src_dst_caught_up(m)) {
				ret = src_poll_dst(m, ACK_WAIT_MS, err);
				if (ret)
					return ret;
				/* The dirty set is small enough: the destination is what
				 * progresses. */
				t_min = t_harvest;
			}
			if (cv.switch_now && m->st.round >= o->min_rounds && src_dst_caught_up(m))
				break;

			if (cancelled(m))
				return rdmig_seterr(err, -ECANCELED, "migration cancelled");
			if (dirty < min_dirty) {
				min_dirty = dirty;
				t_min = t_harvest;
			} else if (t_harvest - t_min > o->progress_timeout_ns) {
				return rdmig_seterr(
				    err, -ETIMEDOUT,
				    "no progress: the dirty set has not shrunk below "
				    "%" PRIu64 " bytes for %.0f s (dirty rate %.1f MiB/s, "
				    "bandwidth %.1f MiB/s): raise --max-bandwidth, the "
				    "downtime limit, or allow more throttling",
				    min_dirty, (double)o->progress_timeout_ns / 1e9,
				    m->st.dirty_rate / 1048576, cv.bw / 1048576);
			}
			if (rdmig_now_ns() - m->t0 > o->timeout_ns)
				return rdmig_seterr(err, -ETIMEDOUT,
						    "migration did not finish within %.0f s",
						    (double)o->timeout_ns / 1e9);
			if (o->max_rounds && m->st.round >= o->max_rounds)
				return rdmig_seterr(err, -ETIMEDOUT,
						    "no convergence after %u rounds (predicted "
						    "downtime %.0f ms, limit %.0f ms)",
						    m->st.round, cv.predicted_s * 1e3,
						    (double)o->downtime_limit_ns / 1e6);

			/* auto: a throttle above its bound means switching, never throttling. */
			if (o->postcopy == RDMIG_POSTCOPY_AUTO &&
			    cv.throttle > RDMIG_POSTCOPY_AUTO_THROTTLE)
				cv.throttle = RDMIG_POSTCOPY_AUTO_THROTTLE;
			if (cv.throttle != m->st.throttle) {
				m->st.throttle = cv.throttle;
				if (cv.throttle > m->st.max_throttle)
					m->st.max_throttle = cv.throttle;
				set_throttle(m, cv.throttle);
			}
			m->st.round++;
			t_round = rdmig_now_ns();
			ret = src_send_round(m, m->st.round, &round_bytes, err);
			if (ret)
				return ret;
		}
	}

	/* Switchover: stop the guest, send what is left, hand over the vCPUs. */
	src_set_state(m, RDMIG_MIG_SWITCHOVER);
	m->t_pause = rdmig_now_ns();
	if (!m->paused) {
		ret = m->vm->ops->pause(m->vm->ctx, err);
		if (ret)
			return ret;
		m->paused = true;
	}
	set_throttle(m, 0);
	m->st.throttle = 0;
	ret = rdmig_dirty_harvest(m->dirty, err);
	if (ret)
		return ret;
	m->st.down.harvest_ms = ms_since(m->t_pause);
	/* Post-copy: what is dirty now is fetched by the destination later; nothing goes now. */
	if (m->pc) {
		ret = src_pc_prepare(m, err);
		if (ret)
			return ret;
	}
	src_set_state(m, RDMIG_MIG_FINAL_COPY);
	m->st.round++;
	t_round = rdmig_now_ns();
	/* Its checksums follow FINAL (the hand-over's order), so keep them for now. */
	m->deferring = true;
	ret = src_send_round(m, RDMIG_SEQ_FINAL | m->st.round, &round_bytes, err);
	if (ret)
		return ret;
	m->st.down.final_copy_ms = ms_since(t_round);
	m->st.down.final_pages = round_bytes / RDMIG_PAGE_SIZE;
	fin.rounds = m->st.round;
	fin.final_seq = RDMIG_SEQ_FINAL | m->st.round;
	if (m->vm->ops->save_state) {
		size_t slen = 0;

		m->state = malloc(RDMIG_VM_STATE_MAX);
		if (!m->state)
			return rdmig_seterr(err, -ENOMEM, "out of memory for the VM's state");
		ret = m->vm->ops->save_state(m->vm->ctx, m->state, RDMIG_VM_STATE_MAX, &slen, err);
		if (!ret && slen > RDMIG_VM_STATE_MAX)
			ret = rdmig_seterr(err, -EOVERFLOW,
					   "the VM saved %zu bytes of state, at most %u", slen,
					   RDMIG_VM_STATE_MAX);
		if (ret) {
			rdmig_err_prefix(err, "saving the VM's state");
			return ret;
		}
		fin.state = m->state;
		fin.state_len = (uint32_t)slen;
	}
	if (m->pc) {
		ret = src_pc_announce(m, m->st.round, err);
		if (ret)
			return ret;
	}
	ret = src_handover(m, &fin, &pc_broken, err);
	if (ret)
		return ret;
	if (m->pc)
		return src_pc_serve(m, pc_broken, err);
	return 0;
}

static void teardown(struct mig_src *m)
{
	src_workers_stop(m);
	if (m->dirty)
		rdmig_dirty_destroy(m->dirty);
	for (unsigned r = 0; r < RDMIG_MIG_MAX_REGIONS; r++) {
		free(m->reg[r].bitmap);
		free(m->reg[r].sums);
		free(m->reg[r].pc);
	}
	free(m->plan);
	free(m->mbuf);
	free(m->defer);
	free(m->state);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cv);
}

int rdmig_migrate_source(struct rdmig_conn *c, const struct rdmig_vm *vm,
			 const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
			 struct rdmig_err *err)
{
	struct mig_src *m;
	int ret;

	/* The engine's own limits too, for callers that did not ask first. */
	ret = rdmig_mig_opts_check(opts, rdmig_conn_backend(c), NULL, err);
	if (!ret)
		ret = vm_check(vm, err);
	if (ret)
		return ret;
	m = calloc(1, sizeof(*m));
	if (!m)
		return rdmig_seterr(err, -ENOMEM, "out of memory");
	m->c = c;
	m->vm = vm;
	m->o = opts;
	m->nw = rdmig_conn_channels(c);
	m->t0 = rdmig_now_ns();
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cv, NULL);

	ret = run(m, err);
	if (ret && !m->go && ret != -ECANCELED && cancelled(m)) {
		/* The cancel caused whatever failed last (e.g. an aborted connection). */
		rdmig_err_clear(err);
		ret = rdmig_seterr(err, -ECANCELED, "migration cancelled");
	}
	if (ret && !m->go) {
		uint8_t b[300];
		size_t n;

		if (m->manifest_sent && !m->dst_gave_up)
			src_probe_dst(m);
		/* Tell the destination to discard; it may be gone already. */
		n = rdmig_msg_cancel_encode(b, ret, rdmig_err_str(err));
		if (!rdmig_conn_failed(c, NULL) &&
		    !rdmig_ctrl_send(c, RDMIG_EMSG_CANCEL, b, n, NULL))
			m->dst_gave_up = true; /* it will read CANCEL, prepared or not */
	}
	if (ret) {
		atomic_store(&m->stop, true);
		rdmig_conn_abort(c, ret, rdmig_err_str(err));
	}
	if (m->dirty && m->dirty->harvests && m->ram)
		m->st.harvest_ms_per_gib = (double)m->dirty->harvest_ns / 1e6 /
					   (double)m->dirty->harvests /
					   ((double)m->ram / (1ull << 30));
	teardown(m);
	/* Local registrations go either way; the guest keeps its memory. */
	rdmig_revoke(c);
	if (ret && m->go && m->pc_phase) {
		/* Post-copy lost: paused here, complete, for the operator (rdmig/migrate.h). */
		m->st.state = RDMIG_MIG_UNKNOWN;
	} else if (ret && m->go) {
		ret = src_settle_go(m, err);
	}
	if (ret && !m->go) {
		/* The source guest carries on as if nothing happened. */
		set_throttle(m, 0);
		if (m->paused)
			vm->ops->resume(vm->ctx);
		m->st.throttle = 0;
		m->st.state = ret == -ECANCELED ? RDMIG_MIG_CANCELLED : RDMIG_MIG_FAILED;
		if (m->manifest_sent && !m->dst_gave_up)
			src_settle_aborted(m);
	} else if (ret) {
		/* Decided GO, not confirmed (or post-copy lost): paused here, for an operator. */
		m->st.state = RDMIG_MIG_UNKNOWN;
	} else {
		/* Set at GO_ACK; a settled hand-over ends when the destination said it runs. */
		if (!m->st.downtime_ms)
			m->st.downtime_ms = ms_since(m->t_pause);
		m->st.state = RDMIG_MIG_COMPLETED;
	}
	m->st.bytes_sent = atomic_load(&m->sent_bytes);
	m->st.pages_sent = atomic_load(&m->sent_pages);
	m->st.total_ms = (double)(rdmig_now_ns() - m->t0) / 1e6;
	rdmig_mig_emit(opts, RDMIG_EV_STATE, &m->st);
	if (stats)
		*stats = m->st;
	free(m);
	return ret;
}
