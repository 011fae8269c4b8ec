/* SPDX-License-Identifier: MIT */
#include "mig_common.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

#include "log.h"
#include "units.h"

static const char *const state_names[] = {
    [RDMIG_MIG_SETUP] = "setup",	   [RDMIG_MIG_BULK] = "bulk",
    [RDMIG_MIG_DIRTY] = "dirty-rounds",	   [RDMIG_MIG_SWITCHOVER] = "switchover",
    [RDMIG_MIG_FINAL_COPY] = "final-copy", [RDMIG_MIG_VERIFY] = "verify",
    [RDMIG_MIG_PREPARED] = "prepared",	   [RDMIG_MIG_COMMIT] = "commit",
    [RDMIG_MIG_POSTCOPY] = "postcopy",	   [RDMIG_MIG_SETTLING] = "settling",
    [RDMIG_MIG_COMPLETED] = "completed",   [RDMIG_MIG_FAILED] = "failed",
    [RDMIG_MIG_CANCELLED] = "cancelled",   [RDMIG_MIG_UNKNOWN] = "unknown",
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
	o->commit_timeout_ns = 30 * 1000000000ull;
	o->commit_grace_ns = 60 * 1000000000ull;
	o->test_corrupt_page = -1;
	o->postcopy_recover_ns = 60 * 1000000000ull;
}

int rdmig_postcopy_parse(const char *s, enum rdmig_postcopy_mode *mode, unsigned *rounds,
			 uint64_t *after_ns, struct rdmig_err *err)
{
	char *end;
	unsigned long v;

	if (s && !strcmp(s, "auto")) {
		*mode = RDMIG_POSTCOPY_AUTO;
		return 0;
	}
	errno = 0;
	end = NULL;
	v = s && *s >= '0' && *s <= '9' ? strtoul(s, &end, 10) : 0;
	/* A bare number counts rounds (0: at once, no pre-copy); with a unit it is a time. */
	if (end && end != s && !errno && !*end && v <= 1000000) {
		*mode = RDMIG_POSTCOPY_ROUNDS;
		*rounds = (unsigned)v;
		return 0;
	}
	if (s && v && !errno && !rdmig_parse_duration(s, 1000000000ull, after_ns, NULL) &&
	    *after_ns) {
		*mode = RDMIG_POSTCOPY_TIME;
		return 0;
	}
	return rdmig_seterr(err, -EINVAL,
			    "invalid post-copy switch '%s': expected auto, a number of rounds "
			    "(1 = right after the bulk round, 0 = at once) or a time such as 2s "
			    "or 500ms",
			    s ? s : "");
}

static const char *const verify_names[] = {"rounds", "full", "off"};

const char *rdmig_verify_name(enum rdmig_verify_mode v)
{
	return (unsigned)v < 3 ? verify_names[v] : "unknown";
}

int rdmig_verify_parse(const char *s, enum rdmig_verify_mode *out, struct rdmig_err *err)
{
	for (int i = 0; i < 3; i++)
		if (s && !strcmp(s, verify_names[i])) {
			*out = (enum rdmig_verify_mode)i;
			return 0;
		}
	return rdmig_seterr(err, -EINVAL,
			    "invalid verify mode '%s': expected rounds (default), full or off",
			    s ? s : "");
}

static const char *const step_names[] = {
    [RDMIG_STEP_NONE] = "none",
    [RDMIG_STEP_FINAL] = "final",
    [RDMIG_STEP_MANIFEST] = "manifest",
    [RDMIG_STEP_VERIFIED] = "verified",
    [RDMIG_STEP_GO] = "go",
    [RDMIG_STEP_GO_ACK] = "go-ack",
};
static const char *const action_names[] = {
    [RDMIG_FAULT_DROP] = "drop",
    [RDMIG_FAULT_KILL] = "kill",
    [RDMIG_FAULT_STOP] = "stop",
};

const char *rdmig_handover_step_name(enum rdmig_handover_step s)
{
	return (unsigned)s <= RDMIG_STEP_GO_ACK ? step_names[s] : "unknown";
}

int rdmig_test_fault_parse(const char *s, enum rdmig_handover_step *step,
			   enum rdmig_fault_action *action, struct rdmig_err *err)
{
	const char *colon = s ? strchr(s, ':') : NULL;
	size_t n = colon ? (size_t)(colon - s) : 0;

	for (unsigned i = RDMIG_STEP_FINAL; colon && i <= RDMIG_STEP_GO_ACK; i++) {
		if (strlen(step_names[i]) != n || strncmp(s, step_names[i], n))
			continue;
		for (unsigned a = 0; a < 3; a++)
			if (!strcmp(colon + 1, action_names[a])) {
				*step = (enum rdmig_handover_step)i;
				*action = (enum rdmig_fault_action)a;
				return 0;
			}
	}
	return rdmig_seterr(err, -EINVAL,
			    "test fault '%s': expected STEP:ACTION, STEP one of final, manifest, "
			    "verified, go, go-ack, ACTION one of drop, kill, stop",
			    s ? s : "");
}

bool rdmig_mig_test_fault(const struct rdmig_mig_opts *o, struct rdmig_conn *c,
			  enum rdmig_handover_step step, const char *side)
{
	if (o->test_fault_step != step)
		return false;
	log_warn("test: %s: %s at hand-over step %s", side, action_names[o->test_fault_action],
		 step_names[step]);
	switch (o->test_fault_action) {
	case RDMIG_FAULT_KILL:
		kill(getpid(), SIGKILL);
		break;
	case RDMIG_FAULT_STOP:
		raise(SIGSTOP);
		break;
	case RDMIG_FAULT_DROP:
		rdmig_conn_abort(c, -ECONNABORTED, "test: connection dropped in the hand-over");
		return true;
	}
	return false;
}

int rdmig_mig_new_id(uint8_t *id, struct rdmig_err *err)
{
	uint8_t acc = 0;
	ssize_t n;

	do {
		n = getrandom(id, RDMIG_MIG_ID_LEN, 0);
	} while (n < 0 && errno == EINTR);
	if (n != RDMIG_MIG_ID_LEN)
		return rdmig_seterr_errno(err, n < 0 ? rdmig_neg_errno() : -EIO,
					  "cannot draw a migration id: getrandom");
	for (unsigned i = 0; i < RDMIG_MIG_ID_LEN; i++)
		acc |= id[i];
	/* All zero means "no id" on the wire; 2^-128, but cheap to rule out. */
	if (!acc)
		id[0] = 1;
	return 0;
}

const char *rdmig_mig_unknown_advice(bool source)
{
	if (source)
		return "This source handed the guest over (it decided GO) but the destination "
		       "never confirmed that it runs it. The guest is paused here: do not resume "
		       "it until you know the destination does not run it. Check the "
		       "destination's log or summary for this migration id: if it completed "
		       "there, the guest runs there and this copy must be destroyed; if it "
		       "failed, was cancelled or ended 'unknown', or its process is gone, the "
		       "destination never started it and you may resume it here.";
	return "This destination verified the guest but heard neither GO nor CANCEL from the "
	       "source, which could not be reached. The guest was not started here, never will "
	       "be, and its RAM is released: do not start it here. The source holds the only "
	       "copy: running if it aborted, paused if it decided GO. Check the source's log or "
	       "summary for this migration id; if it ended 'unknown' (paused), resume it there.";
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

int rdmig_mig_dump(const struct rdmig_vm_region *regs, unsigned n, const char *path,
		   struct rdmig_err *err)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "dump guest RAM to %s: open",
					  path);
	for (unsigned r = 0; r < n && !ret; r++) {
		const uint8_t *p = regs[r].addr;
		uint64_t left = regs[r].len;

		while (left) {
			size_t chunk = left > (1u << 30) ? (1u << 30) : (size_t)left;
			ssize_t k = write(fd, p, chunk);

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				ret = rdmig_seterr_errno(err, k < 0 ? rdmig_neg_errno() : -EIO,
							 "dump guest RAM to %s: write of region %u",
							 path, r);
				break;
			}
			p += k;
			left -= (uint64_t)k;
		}
	}
	if (close(fd) && !ret)
		ret =
		    rdmig_seterr_errno(err, rdmig_neg_errno(), "dump guest RAM to %s: close", path);
	return ret;
}
