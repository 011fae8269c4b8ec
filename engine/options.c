/* SPDX-License-Identifier: MIT */
/*
 * Migration options checked against each other and against this kernel,
 * before anything connects. The engine refuses the same combinations again
 * when it gets to them (source.c, dirty_start), with the same words, for
 * callers that do not ask first.
 */
#include <errno.h>

#include "dirty.h"
#include "rdmig/guest.h"
#include "rdmig/migrate.h"

/* The dirty-page source a migration with these options would start. */
static enum rdmig_dirty_kind dirty_kind(const struct rdmig_mig_opts *o)
{
	if (o->cold)
		return RDMIG_DIRTY_NONE;
	return o->dirty_auto ? rdmig_dirty_best(false) : o->dirty_source;
}

static int check_limits(const struct rdmig_mig_opts *o, struct rdmig_err *err)
{
	if (o->downtime_limit_ns < 1000000ull)
		return rdmig_seterr(err, -EINVAL,
				    "--downtime-limit expects at least 1ms, e.g. 300ms or 1s");
	if (o->max_throttle > 990)
		return rdmig_seterr(err, -EINVAL,
				    "--max-throttle expects a value between 0 and 99 (percent)");
	if (!o->timeout_ns || !o->progress_timeout_ns)
		return rdmig_seterr(err, -EINVAL,
				    "--timeout and --progress-timeout expect a duration > 0");
	if (o->max_rounds && o->min_rounds > o->max_rounds)
		return rdmig_seterr(err, -EINVAL,
				    "--min-rounds %u is above --max-rounds %u: the migration would "
				    "give up before it may switch over",
				    o->min_rounds, o->max_rounds);
	if (!o->max_ram)
		return rdmig_seterr(err, -EINVAL, "--max-ram expects a size > 0");
	if (o->commit_timeout_ns < RDMIG_COMMIT_MIN_NS ||
	    o->commit_timeout_ns > RDMIG_COMMIT_MAX_NS)
		return rdmig_seterr(err, -EINVAL,
				    "--commit-timeout expects a duration between 1s and 3600s "
				    "(how long each side waits for the next hand-over message), "
				    "e.g. 30s");
	if (o->commit_grace_ns < RDMIG_COMMIT_MIN_NS || o->commit_grace_ns > RDMIG_COMMIT_MAX_NS)
		return rdmig_seterr(err, -EINVAL,
				    "--commit-grace expects a duration between 1s and 3600s (how "
				    "long a cut hand-over is tried to be settled), e.g. 60s");
	return 0;
}

static int check_postcopy(const struct rdmig_mig_opts *o, struct rdmig_err *err)
{
	if (o->postcopy_recover_ns > RDMIG_COMMIT_MAX_NS)
		return rdmig_seterr(err, -EINVAL,
				    "--postcopy-recover expects a duration up to 3600s (0: none)");
	if (o->postcopy == RDMIG_POSTCOPY_OFF)
		return 0;
	if ((unsigned)o->postcopy > RDMIG_POSTCOPY_AUTO ||
	    (o->postcopy == RDMIG_POSTCOPY_TIME && !o->postcopy_after_ns))
		return rdmig_seterr(err, -EINVAL,
				    "post-copy: expected a round count, a time > 0, or auto");
	if (o->cold)
		return rdmig_seterr(err, -EINVAL,
				    "--cold copies the guest in one pass while it is stopped: "
				    "post-copy has nothing to do; drop one of them");
	if (o->postcopy == RDMIG_POSTCOPY_AUTO && o->throttle == RDMIG_THROTTLE_OFF)
		return rdmig_seterr(
		    err, -EINVAL,
		    "--postcopy-after auto switches when the throttle policy would "
		    "throttle beyond 20%%: it needs --throttle adaptive or step, or "
		    "give a round count or a time");
	return 0;
}

static int check_cold(const struct rdmig_mig_opts *o, struct rdmig_err *err)
{
	if (!o->cold)
		return 0;
	if (o->min_rounds > 1)
		return rdmig_seterr(err, -EINVAL,
				    "--cold copies the guest in one pass: --min-rounds %u cannot "
				    "be met; drop one of them",
				    o->min_rounds);
	if (!o->dirty_auto && o->dirty_source != RDMIG_DIRTY_NONE)
		return rdmig_seterr(err, -EINVAL,
				    "--cold tracks no dirty pages: --dirty-source %s would not be "
				    "used; drop one of them",
				    rdmig_dirty_kind_name(o->dirty_source));
	return 0;
}

int rdmig_mig_opts_check(const struct rdmig_mig_opts *o, enum rdmig_backend backend,
			 const struct rdmig_guest_cfg *gc, struct rdmig_err *err)
{
	enum rdmig_dirty_kind kind;
	int ret;

	ret = check_limits(o, err);
	if (!ret)
		ret = check_cold(o, err);
	if (!ret)
		ret = check_postcopy(o, err);
	if (ret || !gc)
		return ret;
	kind = dirty_kind(o);
	if (kind == RDMIG_DIRTY_NONE && !o->cold && gc->vcpus)
		return rdmig_seterr(err, -ENOTSUP,
				    "no dirty-page tracking on this kernel for a running guest: "
				    "use --cold (stop the guest and copy once), or a kernel with "
				    "userfaultfd write-protect (6.7+) or soft-dirty");
	/* Before the rdma rule: this one no backend can lift. */
	if (kind == RDMIG_DIRTY_SOFT_DIRTY && gc->hugepages)
		return rdmig_seterr(err, -ENOTSUP,
				    "soft-dirty tracking cannot be used with huge pages (it "
				    "tracks a 2 MiB page as one unit, so the guest would never "
				    "converge): drop --hugepages, or use --dirty-source uffd-wp "
				    "(Linux 6.7+) or --cold");
	if (kind == RDMIG_DIRTY_SOFT_DIRTY && backend == RDMIG_BACKEND_RDMA)
		return rdmig_seterr(err, -ENOTSUP,
				    "soft-dirty tracking cannot see writes to memory registered "
				    "for RDMA (the kernel never clears pinned pages): use a kernel "
				    "with userfaultfd write-protect (Linux 6.7+), the tcp backend, "
				    "or --cold");
	return 0;
}
