/* SPDX-License-Identifier: MIT */
/*
 * The synthetic guest as a user of the public engine API: its RAM, config
 * and vCPU states as an rdmig_vm on the source, and on the destination a
 * guest built from the source's config, into whose RAM the engine receives.
 *
 * The blobs, big-endian like the rest of the wire: config is vCPUs and
 * workload (be32), seed and dirty rate (be64), 24 bytes; state is one
 * record per vCPU of position, RNG, work and a zero word (be64 each).
 */
#include "guest_int.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "log.h"
#include "memfit.h"

#define VCPU_STATE_LEN 32

void rdmig_guest_config_encode(const struct rdmig_guest_cfg *gc, uint8_t *out)
{
	rdmig_put_be32(out, gc->vcpus);
	rdmig_put_be32(out + 4, (uint32_t)gc->workload);
	rdmig_put_be64(out + 8, gc->seed);
	rdmig_put_be64(out + 16, gc->dirty_rate);
}

int rdmig_guest_config_decode(const void *config, size_t len, struct rdmig_guest_cfg *gc,
			      struct rdmig_err *err)
{
	const uint8_t *b = config;

	memset(gc, 0, sizeof(*gc));
	if (len != RDMIG_GUEST_VM_CONFIG)
		return rdmig_seterr(err, -EPROTO,
				    "synthetic guest: config of %zu bytes, expected %d (is the "
				    "source a synthetic guest?)",
				    len, RDMIG_GUEST_VM_CONFIG);
	gc->vcpus = rdmig_get_be32(b);
	gc->workload = (enum rdmig_workload)rdmig_get_be32(b + 4);
	gc->seed = rdmig_get_be64(b + 8);
	gc->dirty_rate = rdmig_get_be64(b + 16);
	if (gc->vcpus > RDMIG_GUEST_MAX_VCPUS)
		return rdmig_seterr(err, -EPROTO, "synthetic guest: %u vCPUs, at most %d",
				    gc->vcpus, RDMIG_GUEST_MAX_VCPUS);
	if ((uint32_t)gc->workload > RDMIG_WL_HOTSET)
		return rdmig_seterr(err, -EPROTO, "synthetic guest: unknown workload %u",
				    (unsigned)gc->workload);
	return 0;
}

static int vm_pause(void *ctx, struct rdmig_err *err)
{
	(void)err;
	rdmig_guest_pause(ctx);
	return 0;
}

static void vm_resume(void *ctx)
{
	rdmig_guest_resume(ctx);
}

static void vm_throttle(void *ctx, unsigned permille)
{
	rdmig_guest_set_throttle(ctx, permille);
}

static int vm_save_state(void *ctx, void *buf, size_t cap, size_t *len, struct rdmig_err *err)
{
	struct rdmig_guest *g = ctx;
	struct rdmig_vcpu_state st[RDMIG_GUEST_MAX_VCPUS];
	uint8_t *b = buf;

	if ((size_t)g->cfg.vcpus * VCPU_STATE_LEN > cap)
		return rdmig_seterr(err, -EOVERFLOW, "%u vCPU states do not fit %zu bytes",
				    g->cfg.vcpus, cap);
	rdmig_guest_save_vcpus(g, st);
	for (unsigned i = 0; i < g->cfg.vcpus; i++, b += VCPU_STATE_LEN) {
		rdmig_put_be64(b, st[i].pos);
		rdmig_put_be64(b + 8, st[i].rng);
		rdmig_put_be64(b + 16, st[i].work);
		rdmig_put_be64(b + 24, 0);
	}
	*len = (size_t)g->cfg.vcpus * VCPU_STATE_LEN;
	return 0;
}

static const struct rdmig_vm_ops guest_vm_ops = {
    .pause = vm_pause,
    .resume = vm_resume,
    .throttle = vm_throttle,
    .save_state = vm_save_state,
};

void rdmig_guest_vm(struct rdmig_guest *g, struct rdmig_vm *vm)
{
	*vm = (struct rdmig_vm){.nregions = g->cfg.nregions,
				.config = g->vm_config,
				.config_len = RDMIG_GUEST_VM_CONFIG,
				.running = rdmig_guest_running(g),
				.ops = &guest_vm_ops,
				.ctx = g};
	for (unsigned r = 0; r < g->cfg.nregions; r++)
		vm->regions[r] = (struct rdmig_vm_region){.name = g->regions[r].name,
							  .addr = g->regions[r].addr,
							  .len = g->regions[r].len,
							  .node = -1,
							  .hugepages = g->cfg.hugepages};
	rdmig_guest_config_encode(&g->cfg, g->vm_config);
}

int rdmig_mig_source(struct rdmig_conn *c, struct rdmig_guest *guest,
		     const struct rdmig_mig_opts *opts, struct rdmig_mig_stats *stats,
		     struct rdmig_err *err)
{
	struct rdmig_mig_stats st;
	uint64_t work0 = rdmig_guest_work(guest);
	struct rdmig_vm vm;
	int ret;

	rdmig_guest_vm(guest, &vm);
	ret = rdmig_migrate_source(c, &vm, opts, &st, err);
	/* It runs at the destination now: its threads go, its RAM stays the caller's. */
	if (!ret)
		rdmig_guest_stop(guest);
	st.guest_work = rdmig_guest_work(guest) - work0;
	if (stats)
		*stats = st;
	return ret;
}

/* ---- destination ------------------------------------------------------- */

struct guest_dest {
	const struct rdmig_mig_opts *o;
	struct rdmig_guest *g;
	uint64_t work0; /* the vCPUs' work counters as they arrived */
};

static int dest_prepare(void *ctx, const void *config, size_t config_len,
			const struct rdmig_vm_layout *lay, struct rdmig_vm_region *regions,
			struct rdmig_err *err)
{
	struct guest_dest *d = ctx;
	struct rdmig_guest_cfg gc;
	int ret;

	ret = rdmig_guest_config_decode(config, config_len, &gc, err);
	if (ret)
		return ret;
	for (unsigned r = 0; r < lay->nregions; r++)
		gc.ram_size += lay->len[r];
	gc.nregions = lay->nregions;
	gc.hugepages = d->o->hugepages;
	/* Refuse here, named, rather than be OOM-killed once pages arrive. */
	ret = rdmig_mem_fit(gc.ram_size, err);
	if (!ret)
		ret = rdmig_guest_create(&gc, &d->g, err);
	if (ret) {
		rdmig_err_prefix(err, "cannot hold the guest");
		return ret;
	}
	/* The guest is split the same way on both sides; check, never assume. */
	for (unsigned r = 0; r < lay->nregions; r++) {
		const struct rdmig_guest_region *gr = rdmig_guest_region(d->g, r);

		if (gr->len != lay->len[r]) {
			ret = rdmig_seterr(err, -EPROTO,
					   "guest layout mismatch: region %u is %" PRIu64
					   " bytes here, %" PRIu64 " at the source",
					   r, gr->len, lay->len[r]);
			rdmig_guest_destroy(d->g);
			d->g = NULL;
			return ret;
		}
		regions[r] = (struct rdmig_vm_region){.name = gr->name,
						      .addr = gr->addr,
						      .len = gr->len,
						      .node = lay->node[r],
						      .hugepages = gc.hugepages};
	}
	return 0;
}

static int dest_start(void *ctx, const void *state, size_t state_len, struct rdmig_err *err)
{
	struct guest_dest *d = ctx;
	struct rdmig_vcpu_state st[RDMIG_GUEST_MAX_VCPUS] = {0};
	unsigned vcpus = rdmig_guest_cfg(d->g)->vcpus;
	const uint8_t *b = state;

	if (d->o->test_dest_ram)
		d->o->test_dest_ram(d->g, d->o->ev_ctx);
	if (state_len != (size_t)vcpus * VCPU_STATE_LEN)
		return rdmig_seterr(err, -EPROTO, "%zu bytes of vCPU state for %u vCPUs", state_len,
				    vcpus);
	if (!vcpus)
		return 0;
	for (unsigned i = 0; i < vcpus; i++, b += VCPU_STATE_LEN) {
		st[i].pos = rdmig_get_be64(b);
		st[i].rng = rdmig_get_be64(b + 8);
		st[i].work = rdmig_get_be64(b + 16);
		d->work0 += st[i].work;
	}
	/* The guest resumes where the source's vCPUs stopped. */
	return rdmig_guest_start(d->g, st, err);
}

static void dest_discard(void *ctx)
{
	struct guest_dest *d = ctx;

	rdmig_guest_destroy(d->g);
	d->g = NULL;
}

static const struct rdmig_vm_dest_ops guest_dest_ops = {
    .prepare = dest_prepare,
    .start = dest_start,
    .discard = dest_discard,
};

int rdmig_mig_dest(struct rdmig_conn *c, const struct rdmig_mig_opts *opts,
		   struct rdmig_mig_stats *stats, struct rdmig_err *err)
{
	struct guest_dest d = {.o = opts};
	struct rdmig_vm_dest vd = {.ops = &guest_dest_ops, .ctx = &d};
	struct rdmig_mig_stats st;
	int ret;

	ret = rdmig_migrate_dest(c, &vd, opts, &st, err);
	/* Post-copy ends when every page is here: what the guest did meanwhile. */
	if (!ret && d.g && st.postcopy)
		st.pc_guest_work = rdmig_guest_work(d.g) - d.work0;
	if (!ret && d.g) {
		if (opts->keep_guest) {
			*opts->keep_guest = d.g;
			d.g = NULL;
		} else if (rdmig_guest_cfg(d.g)->vcpus) {
			if (opts->resume_ns)
				usleep((useconds_t)(opts->resume_ns / 1000));
			st.guest_work = rdmig_guest_work(d.g);
			rdmig_guest_pause(d.g);
			rdmig_guest_stop(d.g);
		}
		/*
		 * Post-copy: the RAM was never whole before the guest ran, so the
		 * dump is of the guest as it stopped here (every page placed).
		 */
		if (d.g && st.postcopy && opts->dump_ram) {
			struct rdmig_err derr = RDMIG_ERR_INIT;

			if (rdmig_guest_dump(d.g, opts->dump_ram, &derr))
				log_err("%s", rdmig_err_str(&derr));
		}
	}
	/* Failed: discard() freed it already. */
	rdmig_guest_destroy(d.g);
	if (stats)
		*stats = st;
	return ret;
}
