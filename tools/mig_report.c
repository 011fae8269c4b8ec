/* SPDX-License-Identifier: MIT */
/*
 * What rdmig listen and rdmig migrate print: a progress line on a terminal,
 * or JSON lines (state and round events, the plan, the summary; fields in
 * docs/json.md), and the summary in words.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rdmig/migrate.h"
#include "mig.h"
#include "units.h"

static json_t *event_new(const struct mig_out *o, const char *event)
{
	json_t *j = json_object();

	if (!j)
		return NULL;
	cli_jset(j, "event", json_string(event));
	cli_jset(j, "command", json_string(o->cmd));
	cli_jset(j, "side", json_string(o->side));
	return j;
}

static json_t *jrate(double v)
{
	return isfinite(v) ? json_integer((json_int_t)llround(v)) : json_null();
}

static void print_stats_json(const struct mig_out *o, const char *event,
			     const struct rdmig_mig_stats *s)
{
	json_t *j = event_new(o, event);

	if (!j)
		return;
	cli_jset(j, "state", json_string(rdmig_mig_state_name(s->state)));
	cli_jset(j, "round", json_integer(s->round));
	cli_jset(j, "bytes", cli_juint(s->bytes_sent));
	cli_jset(j, "ram_bytes", cli_juint(s->ram_bytes));
	cli_jset(j, "dirty_bytes", cli_juint(s->dirty_bytes));
	cli_jset(j, "bandwidth", jrate(s->bandwidth));
	cli_jset(j, "dirty_rate", jrate(s->dirty_rate));
	cli_jset(j, "throttle", cli_jreal((double)s->throttle / 1000, 3));
	cli_jset(j, "predicted_downtime_ms", cli_jreal(s->predicted_downtime_ms, 1));
	cli_jset(j, "elapsed_ms", cli_jreal(s->total_ms, 1));
	cli_json_print(j, false);
}

void mig_on_event(const struct rdmig_mig_event *ev, void *ctx)
{
	struct mig_out *o = ctx;
	const struct rdmig_mig_stats *s = ev->stats;
	char a[32], b[32];

	if (o->json) {
		if (ev->type != RDMIG_EV_PROGRESS)
			print_stats_json(o, ev->type == RDMIG_EV_STATE ? "state" : "round", s);
		return;
	}
	if (ev->type == RDMIG_EV_STATE && s->state >= RDMIG_MIG_COMPLETED)
		return; /* the summary says how it ended */
	if (ev->type == RDMIG_EV_STATE && !o->tty) {
		fprintf(stderr, "rdmig %s: %s\n", o->side, rdmig_mig_state_name(s->state));
		return;
	}
	if (!o->tty)
		return;
	/* A terminal gets one line, rewritten at most ten times a second. */
	if (ev->type == RDMIG_EV_PROGRESS && s->total_ms - o->last_line_ms < 100)
		return;
	o->last_line_ms = s->total_ms;
	fprintf(stderr,
		"\r\033[K%-12s round %u  %s / %s  %.1f MiB/s  dirty %.1f MiB/s  throttle %u%%  "
		"downtime~%.0f ms",
		rdmig_mig_state_name(s->state), s->round,
		rdmig_fmt_size(s->bytes_sent, a, sizeof(a)),
		rdmig_fmt_size(s->ram_bytes, b, sizeof(b)), s->bandwidth / 1048576,
		s->dirty_rate / 1048576, s->throttle / 10, s->predicted_downtime_ms);
	o->line_open = true;
}

void mig_print_plan(const struct mig_out *o, const struct rdmig_numa_plan *p,
		    const struct rdmig_numa_topo *t)
{
	json_t *j;

	if (!o->json) {
		fprintf(stderr, "rdmig %s: placement\n", o->cmd);
		rdmig_numa_plan_print(stderr, p, t);
		return;
	}
	j = event_new(o, "plan");
	if (!j)
		return;
	cli_jset(j, "plan", rdmig_numa_plan_to_json(p, t));
	cli_json_print(j, false);
}

static double per_gib(double v, uint64_t ram)
{
	return ram ? v / ((double)ram / (1ull << 30)) : 0;
}

/* Where the downtime went; the destination reports only its own steps. */
static json_t *breakdown_json(const struct rdmig_mig_stats *s, bool source)
{
	const struct rdmig_mig_breakdown *d = &s->down;
	json_t *j = json_object();

	if (!j)
		return json_null();
	if (source) {
		double known = d->harvest_ms + d->final_copy_ms + d->handover_ms + d->verified_ms +
			       d->commit_ms;

		cli_jset(j, "harvest_ms", cli_jreal(d->harvest_ms, 3));
		cli_jset(j, "final_copy_ms", cli_jreal(d->final_copy_ms, 3));
		cli_jset(j, "handover_ms", cli_jreal(d->handover_ms, 3));
		cli_jset(j, "verified_wait_ms", cli_jreal(d->verified_ms, 3));
		cli_jset(j, "commit_ms", cli_jreal(d->commit_ms, 3));
		cli_jset(j, "other_ms",
			 cli_jreal(s->downtime_ms > known ? s->downtime_ms - known : 0, 3));
		cli_jset(j, "final_pages", cli_juint(d->final_pages));
	}
	cli_jset(j, "fences_ms", cli_jreal(d->fences_ms, 3));
	cli_jset(j, "revoke_ms", cli_jreal(d->revoke_ms, 3));
	cli_jset(j, "verify_ms", cli_jreal(d->verify_ms, 3));
	if (!source)
		cli_jset(j, "verify_pages", cli_juint(d->verify_pages));
	cli_jset(j, "harvest_ms_per_gib_final",
		 source ? cli_jreal(per_gib(d->harvest_ms, s->ram_bytes), 3) : json_null());
	return j;
}

/* What preparing cost, per GiB of guest, so a large guest's cost is known in advance. */
static json_t *setup_json(const struct rdmig_mig_stats *s)
{
	const struct rdmig_mig_setup_cost *c = &s->setup;
	json_t *j = json_object();

	if (!j)
		return json_null();
	cli_jset(j, "prepare_ms", cli_jreal(c->prepare_ms, 1));
	cli_jset(j, "prepare_ms_per_gib", cli_jreal(per_gib(c->prepare_ms, s->ram_bytes), 1));
	cli_jset(j, "register_ms", cli_jreal(c->register_ms, 1));
	cli_jset(j, "register_ms_per_gib", cli_jreal(per_gib(c->register_ms, s->ram_bytes), 1));
	cli_jset(j, "zero_scan_ms", cli_jreal(c->zero_scan_ms, 1));
	cli_jset(j, "bulk_ms", cli_jreal(c->bulk_ms, 1));
	cli_jset(j, "bulk_bytes", cli_juint(c->bulk_bytes));
	cli_jset(j, "bulk_rate",
		 c->bulk_ms > 0 ? jrate((double)c->bulk_bytes / (c->bulk_ms / 1e3)) : json_null());
	cli_jset(j, "overhead_bytes", cli_juint(c->overhead_bytes));
	cli_jset(j, "overhead_fixed_bytes", cli_juint(c->overhead_fixed_bytes));
	cli_jset(j, "overhead_bytes_per_gib",
		 cli_juint((uint64_t)per_gib((double)c->overhead_bytes, s->ram_bytes)));
	return j;
}

/* What the post-copy moved and how long the guest waited for its pages. */
static json_t *postcopy_json(const struct rdmig_mig_stats *s)
{
	json_t *j = json_object();

	if (!j)
		return NULL;
	cli_jset(j, "pages", cli_juint(s->pc_pages));
	cli_jset(j, "demand_pages", cli_juint(s->pc_demand));
	cli_jset(j, "bytes", cli_juint(s->pc_bytes));
	cli_jset(j, "ms", cli_jreal(s->pc_ms, 1));
	cli_jset(j, "fetch_p50_us", cli_jreal(s->pc_fetch_p50_us, 0));
	cli_jset(j, "fetch_p99_us", cli_jreal(s->pc_fetch_p99_us, 0));
	cli_jset(j, "fetch_max_us", cli_jreal(s->pc_fetch_max_us, 0));
	cli_jset(j, "recoveries", json_integer(s->pc_recoveries));
	cli_jset(j, "guest_work", cli_juint(s->pc_guest_work));
	return j;
}

static void summary_json(const struct mig_out *o, int ret, const struct rdmig_mig_stats *s,
			 const char *backend, unsigned channels, const struct mig_zsum *z,
			 const char *errmsg)
{
	json_t *j = cli_json_summary(o->cmd, ret, errmsg);

	if (!j)
		return;
	cli_jset(j, "side", json_string(o->side));
	cli_jset(j, "migration_id",
		 s->migration_id[0] ? json_string(s->migration_id) : json_null());
	if (ret == RDMIG_MIG_EUNKNOWN)
		cli_jset(j, "advice",
			 json_string(rdmig_mig_unknown_advice(!strcmp(o->side, "source"))));
	cli_jset(j, "backend", json_string(backend));
	cli_jset(j, "channels", json_integer(channels));
	cli_jset(j, "total_ms", cli_jreal(s->total_ms, 1));
	cli_jset(j, "downtime_ms", cli_jreal(s->downtime_ms, 1));
	cli_jset(j, "rounds", json_integer(s->round));
	cli_jset(j, "bytes", cli_juint(s->bytes_sent));
	cli_jset(j, "pages_sent", cli_juint(s->pages_sent));
	cli_jset(j, "zero_pages", cli_juint(s->zero_pages));
	cli_jset(j, "verified_pages", cli_juint(s->verified_pages));
	cli_jset(j, "ram_bytes", cli_juint(s->ram_bytes));
	cli_jset(j, "dirty_source", json_string(rdmig_dirty_kind_name(s->dirty_source)));
	cli_jset(j, "max_throttle", cli_jreal((double)s->max_throttle / 1000, 3));
	cli_jset(j, "guest_work", cli_juint(s->guest_work));
	cli_jset(j, "harvest_ms_per_gib", cli_jreal(s->harvest_ms_per_gib, 3));
	cli_jset(j, "verify", json_string(rdmig_verify_name(s->verify)));
	cli_jset(j, "verified_background", cli_juint(s->verified_background));
	cli_jset(j, "downtime_breakdown", breakdown_json(s, !strcmp(o->side, "source")));
	cli_jset(j, "setup", setup_json(s));
	cli_jset(j, "postcopy", s->postcopy ? postcopy_json(s) : json_null());
	if (z && z->level) {
		cli_jset(j, "compress_level", json_integer(z->level));
		cli_jset(j, "bytes_on_wire", cli_juint(z->on_wire));
		/* Nothing sent (all zero pages): no ratio. */
		cli_jset(j, "compress_ratio",
			 z->on_wire ? cli_jreal((double)z->bytes / (double)z->on_wire, 2)
				    : json_null());
	}
	cli_json_print(j, false);
}

static void summary_text(const struct mig_out *o, int ret, const struct rdmig_mig_stats *s,
			 const char *backend, unsigned channels, const struct mig_zsum *z,
			 const char *errmsg)
{
	char a[32], b[32];

	printf("rdmig %s: %s\n", o->side, cli_status_name(ret));
	if (ret && errmsg)
		printf("  error          %s\n", errmsg);
	if (s->migration_id[0])
		printf("  migration id   %s\n", s->migration_id);
	printf("  backend        %s, %u channel(s)\n", backend, channels);
	printf("  total          %.1f ms\n", s->total_ms);
	if (!strcmp(o->side, "source")) {
		printf("  downtime       %.1f ms\n", s->downtime_ms);
		printf("  rounds         %u\n", s->round);
		printf("  sent           %s in %" PRIu64 " pages (%" PRIu64
		       " zero pages skipped)\n",
		       rdmig_fmt_size(s->bytes_sent, a, sizeof(a)), s->pages_sent, s->zero_pages);
		printf("  dirty source   %s (%.2f ms per GiB harvested)\n",
		       rdmig_dirty_kind_name(s->dirty_source), s->harvest_ms_per_gib);
		printf("  max throttle   %.1f%%\n", (double)s->max_throttle / 10);
		printf("  guest work     %" PRIu64 " units during migration\n", s->guest_work);
		if (z && z->level && !z->on_wire)
			printf("  compression    zstd level %d: no page data sent\n", z->level);
		else if (z && z->level)
			printf("  compression    zstd level %d: %s of pages in %s on the wire "
			       "(ratio %.2f)\n",
			       z->level, rdmig_fmt_size(z->bytes, a, sizeof(a)),
			       rdmig_fmt_size(z->on_wire, b, sizeof(b)),
			       (double)z->bytes / (double)z->on_wire);
	}
	printf("  verified pages %" PRIu64 " (verify %s)\n", s->verified_pages,
	       rdmig_verify_name(s->verify));
	if (s->postcopy)
		printf("  post-copy      %" PRIu64 " pages after the switch (%" PRIu64
		       " on demand, fetch p50 %.0f us, p99 %.0f us, max %.0f us) in %.0f ms, "
		       "%u recover%s\n",
		       s->pc_pages, s->pc_demand, s->pc_fetch_p50_us, s->pc_fetch_p99_us,
		       s->pc_fetch_max_us, s->pc_ms, s->pc_recoveries,
		       s->pc_recoveries == 1 ? "y" : "ies");
}

void mig_print_summary(struct mig_out *o, int ret, const struct rdmig_mig_stats *s,
		       const char *backend, unsigned channels, const struct mig_zsum *z,
		       const char *errmsg)
{
	if (o->line_open)
		fprintf(stderr, "\n");
	o->line_open = false;
	if (o->json)
		summary_json(o, ret, s, backend, channels, z, errmsg);
	else
		summary_text(o, ret, s, backend, channels, z, errmsg);
	fflush(stdout);
}
