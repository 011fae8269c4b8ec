/* SPDX-License-Identifier: MIT */
/*
 * Engine checks through the library, source and destination in two
 * processes on loopback (or any backend/host given):
 *
 *   engine_check cancel  [--backend B --host H]   cancel in every state
 *   engine_check corrupt [...]   a page corrupted at the destination is named
 *                                (rounds and full verification; a page sent
 *                                in every round, once, or never)
 *   engine_check cold    [...]   stopped guest, one pass, verified
 *
 * After a cancel or failure the source guest must still run (its work
 * counter moves), its RAM must still pass the incr check, and the process
 * must be back to its baseline of open files and threads.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rdmig/guest.h"
#include "incr_check.h"
#include "rdmig/guest.h"
#include "rdmig/transport.h"
#include "th_check.h"
#include "th_guest.h"
#include "th_peer.h"
#include "th_res.h"

#define PEER_MS 120000 /* the destination's whole run, after the source returned */

static const char *backend_name = "tcp";
static const char *host = "127.0.0.1";

static struct rdmig_xport_cfg xcfg(uint16_t port)
{
	struct rdmig_xport_cfg cfg = {.host = host, .port = port, .channels = 2};

	rdmig_backend_parse(backend_name, &cfg.backend, NULL);
	return cfg;
}

/*
 * The destination: `engine_check dest CORRUPT DUMP --backend B --host H`, a
 * peer (tests/lib/th_peer.h) that sends its port over the channel. Exit 0
 * means committed.
 */
static int run_dest(int64_t corrupt_page, const char *dump)
{
	struct rdmig_xport_cfg cfg = xcfg(0);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l;
	struct rdmig_mig_opts o;
	int ret;

	cfg.channels = RDMIG_MAX_CHANNELS;
	if (rdmig_listen(&cfg, &l, &err) ||
	    th_chan_send_port(th_peer_fd(), rdmig_listener_port(l), &err)) {
		fprintf(stderr, "dest: %s\n", err.msg);
		return 3;
	}
	rdmig_mig_opts_defaults(&o);
	o.test_corrupt_page = corrupt_page;
	o.dump_ram = dump && *dump ? dump : NULL;
	o.resume_ns = 0;
	ret = th_migrate_dest(l, &o, NULL, &err);
	if (ret)
		fprintf(stderr, "dest: %s\n", err.msg);
	rdmig_listener_destroy(l);
	return ret ? 1 : 0;
}

/*
 * One migration of g to a fresh destination (which corrupts `corrupt_page`
 * unless it is -1); the destination's exit status into *status. false, as a
 * failed check, when the destination does not come up.
 */
static bool migrate_once(struct rdmig_guest *g, int64_t corrupt_page, const char *what,
			 const struct rdmig_mig_opts *o, struct rdmig_mig_stats *st, int *ret,
			 struct rdmig_err *err, int *status)
{
	struct rdmig_err perr = RDMIG_ERR_INIT;
	struct rdmig_xport_cfg cfg;
	struct th_peer dst;
	char corrupt[32];
	const char *argv[] = {"engine_check", "dest",	corrupt, "",  "--backend",
			      backend_name,   "--host", host,	 NULL};
	uint16_t port;

	snprintf(corrupt, sizeof(corrupt), "%lld", (long long)corrupt_page);
	if (!TH_CHECK_CALL(th_peer_start_port(&dst, "destination", argv, &port, 60000, &perr),
			   &perr, "%s: destination started", what))
		return false;
	cfg = xcfg(port);
	*ret = th_migrate_source(&cfg, g, o, st, err);
	TH_CHECK_CALL(th_peer_wait(&dst, PEER_MS, &perr), &perr, "%s: destination ended", what);
	*status = dst.status;
	return true;
}

struct cancel_at {
	enum rdmig_mig_state state;
	volatile sig_atomic_t flag;
	bool seen;
};

static void cancel_event(const struct rdmig_mig_event *ev, void *arg)
{
	struct cancel_at *ca = arg;

	if (ev->type == RDMIG_EV_STATE && ev->stats->state == ca->state) {
		ca->seen = true;
		ca->flag = 1;
	}
}

static void check_cancel(void)
{
	/*
	 * Cancel is honoured until the source decides GO (it does so on
	 * VERIFIED): in verify the source still holds the decision, and a
	 * destination that verified meanwhile reads CANCEL and discards.
	 */
	static const enum rdmig_mig_state states[] = {RDMIG_MIG_SETUP,	    RDMIG_MIG_BULK,
						      RDMIG_MIG_DIRTY,	    RDMIG_MIG_SWITCHOVER,
						      RDMIG_MIG_FINAL_COPY, RDMIG_MIG_VERIFY};
	struct rdmig_guest *g = th_guest_new(32 << 20, 1, 7, true);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct th_res base = {-1, -1};

	for (unsigned i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		const char *sn = rdmig_mig_state_name(states[i]);
		struct cancel_at ca = {.state = states[i]};
		struct rdmig_mig_opts o;
		struct rdmig_mig_stats st;
		int ret, status = -1;

		/* Twice per state: cancel must be repeatable. */
		for (int rep = 0; rep < 2; rep++) {
			char what[64], sbuf[64];
			int before = th_failures();

			snprintf(what, sizeof(what), "cancel in %s", sn);
			ca.flag = 0;
			ca.seen = false;
			rdmig_mig_opts_defaults(&o);
			o.on_event = cancel_event;
			o.ev_ctx = &ca;
			o.cancel = &ca.flag;
			if (states[i] < RDMIG_MIG_SWITCHOVER) {
				o.min_rounds = 1000; /* never switch over by itself */
				o.max_bandwidth = 64 << 20;
			}
			rdmig_err_clear(&err);
			if (!migrate_once(g, -1, what, &o, &st, &ret, &err, &status))
				return;
			TH_CHECK(ca.seen, "cancel: state %s never reached", sn);
			TH_CHECK_INT(ret, ==, -ECANCELED, "%s: source returned (%s)", what,
				     err.msg);
			TH_CHECK(st.state == RDMIG_MIG_CANCELLED, "%s: final state %s", what,
				 rdmig_mig_state_name(st.state));
			TH_CHECK(th_exited(status, 1),
				 "%s: destination should discard and exit 1: %s", what,
				 th_status_str(status, sbuf, sizeof(sbuf)));
			TH_CHECK(rdmig_guest_running(g) && th_guest_moves(g, 10000),
				 "%s: source guest not running", what);
			TH_CHECK_UINT(rdmig_guest_throttle(g), ==, 0, "%s: throttle released",
				      what);
			/*
			 * Baseline after the first run: librdmacm opens its device
			 * files once per process, on first use, and keeps them.
			 */
			if (base.fds < 0)
				th_res_take(&base, 0);
			th_res_check(&base, 0, what);
			if (th_failures() == before)
				printf(
				    "ok: cancel in %s (%d): source running, destination discarded, "
				    "resources at baseline\n",
				    sn, rep + 1);
		}
	}
	rdmig_guest_pause(g);
	TH_CHECK(rdmig_guest_check_incr(g, &err) == 0, "source RAM after cancels: %s", err.msg);
	rdmig_guest_destroy(g);
}

/*
 * One corrupted-page case: `g` migrated with `verify`; the destination
 * damages page 100 at every fence of its channel and must name it.
 */
static void corrupt_case(struct rdmig_guest *g, enum rdmig_verify_mode verify, bool idle,
			 const char *what)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	char sbuf[64];
	int ret, status = -1;

	rdmig_mig_opts_defaults(&o);
	o.verify = verify;
	if (!migrate_once(g, 100, what, &o, &st, &ret, &err, &status))
		return;
	TH_CHECK_INT(ret, ==, -EILSEQ, "%s: source returned (%s)", what, err.msg);
	TH_CHECK_HAS(err.msg, "page 100 ", "%s: corrupt page named", what);
	/* An idle guest's vCPUs run but do no work units. */
	TH_CHECK(rdmig_guest_running(g) && (idle || th_guest_moves(g, 10000)),
		 "%s: source guest not running", what);
	TH_CHECK(th_exited(status, 1), "%s: destination must exit 1: %s", what,
		 th_status_str(status, sbuf, sizeof(sbuf)));
	if (ret == -EILSEQ)
		printf("ok: %s: corrupted page caught: %s\n", what, err.msg);
}

static void check_corrupt(void)
{
	struct rdmig_guest *g = th_guest_new(16 << 20, 1, 7, true);
	struct rdmig_guest_cfg ic = {
	    .ram_size = 16 << 20, .nregions = 2, .vcpus = 1, .workload = RDMIG_WL_IDLE, .seed = 7};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *idle = NULL;

	/* The page is rewritten all the time: its last copy is checked in the downtime. */
	corrupt_case(g, RDMIG_VERIFY_ROUNDS, false, "corrupt, rounds, busy page");
	corrupt_case(g, RDMIG_VERIFY_FULL, false, "corrupt, full, busy page");
	rdmig_guest_destroy(g);
	/* Sent once, in the bulk round: only the background check sees its one copy. */
	if (!TH_CHECK_CALL(rdmig_guest_create(&ic, &idle, &err), &err, "idle guest") ||
	    !TH_CHECK_CALL(rdmig_guest_prefill(idle, 100, 7, &err), &err, "prefill") ||
	    !TH_CHECK_CALL(rdmig_guest_start(idle, NULL, &err), &err, "idle guest start"))
		goto out;
	corrupt_case(idle, RDMIG_VERIFY_ROUNDS, true, "corrupt, rounds, page sent once");
	rdmig_guest_destroy(idle);
	idle = NULL;
	/* Never sent (zero at the source): the check of the zero pages must see it. */
	if (!TH_CHECK_CALL(rdmig_guest_create(&ic, &idle, &err), &err, "empty guest") ||
	    !TH_CHECK_CALL(rdmig_guest_start(idle, NULL, &err), &err, "empty guest start"))
		goto out;
	corrupt_case(idle, RDMIG_VERIFY_ROUNDS, true, "corrupt, rounds, zero page");
out:
	rdmig_guest_destroy(idle);
}

static void check_cold(void)
{
	struct rdmig_guest *g = th_guest_new(16 << 20, 2, 7, true);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	char sbuf[64];
	int ret, status = -1;

	rdmig_guest_pause(g);
	rdmig_mig_opts_defaults(&o);
	o.cold = true;
	if (!migrate_once(g, -1, "cold", &o, &st, &ret, &err, &status))
		return;
	TH_CHECK(ret == 0, "cold: %s", err.msg);
	TH_CHECK(st.round == 2 || st.round == 1, "cold: %u rounds", st.round);
	TH_CHECK_UINT(st.verified_pages, ==, (16 << 20) / RDMIG_PAGE_SIZE, "cold: pages verified");
	TH_CHECK(th_exited(status, 0), "cold: destination must exit 0: %s",
		 th_status_str(status, sbuf, sizeof(sbuf)));
	if (!ret)
		printf("ok: cold migration, %" PRIu64 " pages verified, %" PRIu64 " zero pages\n",
		       st.verified_pages, st.zero_pages);
	rdmig_guest_destroy(g);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int first = !strcmp(mode, "dest") ? 4 : 2;

	th_init(argc, argv);
	for (int i = first; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--backend"))
			backend_name = argv[i + 1];
		else if (!strcmp(argv[i], "--host"))
			host = argv[i + 1];
	}
	if (!strcmp(mode, "dest") && argc >= 4 && th_peer_fd() >= 0)
		return run_dest(atoll(argv[2]), argv[3]);
	if (!strcmp(mode, "cancel"))
		check_cancel();
	else if (!strcmp(mode, "corrupt"))
		check_corrupt();
	else if (!strcmp(mode, "cold"))
		check_cold();
	else {
		fprintf(stderr,
			"usage: engine_check cancel|corrupt|cold [--backend B] [--host H]\n");
		return TH_EXIT_USAGE;
	}
	return th_summary(mode, true);
}
