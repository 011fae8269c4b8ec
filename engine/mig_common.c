/* SPDX-License-Identifier: MIT */
#include "mig_common.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

static const char *const state_names[] = {
    [RDMIG_MIG_SETUP] = "setup",	   [RDMIG_MIG_BULK] = "bulk",
    [RDMIG_MIG_DIRTY] = "dirty-rounds",	   [RDMIG_MIG_SWITCHOVER] = "switchover",
    [RDMIG_MIG_FINAL_COPY] = "final-copy", [RDMIG_MIG_VERIFY] = "verify",
    [RDMIG_MIG_COMMIT] = "commit",	   [RDMIG_MIG_COMPLETED] = "completed",
    [RDMIG_MIG_FAILED] = "failed",	   [RDMIG_MIG_CANCELLED] = "cancelled",
};

const char *rdmig_mig_state_name(enum rdmig_mig_state s)
{
	if ((unsigned)s < sizeof(state_names) / sizeof(state_names[0]))
		return state_names[s];
	return "unknown";
}

static const char *const throttle_names[] = {"adaptive", "step", "off"};

const char *rdmig_throttle_name(enum rdmig_throttle_policy p)
{
	return (unsigned)p < 3 ? throttle_names[p] : "unknown";
}

int rdmig_throttle_parse(const char *s, enum rdmig_throttle_policy *out, struct rdmig_err *err)
{
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, throttle_names[i])) {
			*out = (enum rdmig_throttle_policy)i;
			return 0;
		}
	return rdmig_seterr(err, -EINVAL,
			    "invalid throttle policy '%s': expected adaptive, "
			    "step or off",
			    s ? s : "");
}

void rdmig_mig_opts_defaults(struct rdmig_mig_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->downtime_limit_ns = 300 * 1000000ull;
	o->throttle = RDMIG_THROTTLE_ADAPTIVE;
	o->max_throttle = 990;
	o->dirty_auto = true;
	o->timeout_ns = 600 * 1000000000ull;
	o->progress_timeout_ns = 60 * 1000000000ull;
	o->resume_ns = 500 * 1000000ull;
	o->max_ram = 64ull << 30;
	o->test_corrupt_page = -1;
}

uint64_t rdmig_page_sum(const void *page)
{
	return XXH3_64bits(page, RDMIG_PAGE_SIZE);
}

int rdmig_page_is_zero(const void *page)
{
	const uint64_t *w = page;

	/* OR in blocks: branch once per 64 bytes, the compiler vectorises it. */
	for (unsigned i = 0; i < RDMIG_PAGE_SIZE / 8; i += 8) {
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
		    w[i + 7])
			return 0;
	}
	return 1;
}

void rdmig_mig_emit(const struct rdmig_mig_opts *o, enum rdmig_event_type type,
		    const struct rdmig_mig_stats *st)
{
	struct rdmig_mig_event ev = {.type = type, .stats = st};

	if (o->on_event)
		o->on_event(&ev, o->ev_ctx);
}
