/* SPDX-License-Identifier: MIT */
/*
 * Fault injection through the library (issue #8), source and destination in
 * separate processes (peers of tests/lib/th_peer.h, always exec'd:
 * libibverbs/librdmacm state must not cross a fork).
 *
 *   fault_check kill-dest STATE   SIGKILL the destination when the source
 *                                 enters STATE (bulk, dirty, switchover,
 *                                 final-copy, or "all")
 *   fault_check kill-src STATE    the source process SIGKILLs itself on
 *                                 entering STATE; the destination must
 *                                 discard and exit 1 within the bound
 *   fault_check migrate           one live migration, integrity-checked
 *                                 (used under netem loss)
 *   fault_check expect-fail       a migration that must fail within the
 *                                 bound (heavy loss), source guest running
 *   fault_check soak [N]          N back-to-back migrations between two
 *                                 long-lived processes that swap roles
 *   fault_check handover src|dst|both [STEP|all] [--actions A,B]
 *                                 the switchover matrix (fault_handover.c)
 * Options: --backend tcp|rdma --host H --size MIB --bound SECONDS
 *          --timeout SECONDS (expect-fail: the engine's whole-migration
 *          timeout) --iterations N --commit SECONDS --grace SECONDS
 *          (handover: the peers' --commit-timeout and --commit-grace)
 *
 * After every fault: detected within --bound (default 60 s), the source
 * guest still runs with its RAM passing the incr check, throttle released,
 * open fds / threads back to baseline, on rdma every MR and QP released
 * (`rdma res show mr|qp`, this process and system-wide), and a retry to a
 * fresh destination completes with identical dumps that pass the incr check.
 *
 * The peers are modes too, started by the test itself:
 *   fault_check dest DUMP          listen, send the port, receive; exit 0 =
 *                                  committed, 1 = discarded
 *   fault_check src STATE PORT:DUMP  a source (STATE: SIGKILL itself there)
 *   fault_check peer               the soak's other process
 *   fault_check hdst SPEC DUMP, hsrc SPEC PORT:DUMP
 *                                  the matrix's two sides (SPEC: STEP:FAULT
 *                                  or none)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_check.h"
#include "rdmig/guest.h"
#include "incr_check.h"
#include "th_check.h"
#include "th_guest.h"
#include "th_tmp.h"

struct fc_opts fc = {
    .backend = "tcp",
    .host = "127.0.0.1",
    .guest_mib = 32,
    .bound_s = 60,
    .timeout_s = 30,
    .iterations = 5,
    .commit_s = 2,
    .grace_s = 3,
};

bool fc_is_rdma(void)
{
	return !strcmp(fc.backend, "rdma");
}

struct rdmig_xport_cfg fc_xcfg(uint16_t port)
{
	struct rdmig_xport_cfg cfg = {.host = fc.host, .port = port, .channels = 2};

	rdmig_backend_parse(fc.backend, &cfg.backend, NULL);
	return cfg;
}

struct rdmig_guest *fc_new_guest(void)
{
	return th_guest_new(fc.guest_mib << 20, FC_VCPUS, 11, true);
}

int fc_listen(struct rdmig_listener **l, struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = fc_xcfg(0);

	cfg.channels = RDMIG_MAX_CHANNELS;
	return rdmig_listen(&cfg, l, err);
}

int fc_dest_receive(struct rdmig_listener *l, const char *dump, struct rdmig_guest **keep,
		    struct rdmig_err *err)
{
	struct rdmig_mig_opts o;

	rdmig_mig_opts_defaults(&o);
	o.dump_ram = dump && *dump ? dump : NULL;
	o.resume_ns = 0;
	o.keep_guest = keep;
	return th_migrate_dest(l, &o, NULL, err);
}

int fc_source_migrate(struct rdmig_guest *g, uint16_t port, const struct rdmig_mig_opts *o,
		      struct rdmig_mig_stats *st, struct rdmig_err *err)
{
	struct rdmig_xport_cfg cfg = fc_xcfg(port);

	return th_migrate_source(&cfg, g, o, st, err);
}

/* ---- the peers -------------------------------------------------------------- */

/* `fault_check dest DUMP`: port to the channel, exit 0 = committed, 1 = discarded. */
static int run_dest(const char *dump)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l;
	int ret;

	if (fc_listen(&l, &err) || th_chan_send_port(th_peer_fd(), rdmig_listener_port(l), &err)) {
		fprintf(stderr, "dest: %s\n", err.msg);
		return 3;
	}
	ret = fc_dest_receive(l, dump, NULL, &err);
	if (ret)
		fprintf(stderr, "dest: discarded: %s\n", err.msg);
	rdmig_listener_destroy(l);
	return ret ? 1 : 0;
}

bool fc_start_mode(struct th_peer *p, const char *role, const char *mode, const char *a1,
		   const char *a2, uint16_t *port)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	const char *argv[20];
	char mib[24], commit[24], grace[24];
	int n = 0;

	snprintf(mib, sizeof(mib), "%" PRIu64, fc.guest_mib);
	snprintf(commit, sizeof(commit), "%g", fc.commit_s);
	snprintf(grace, sizeof(grace), "%g", fc.grace_s);
	argv[n++] = "fault_check";
	argv[n++] = mode;
	if (a1)
		argv[n++] = a1;
	if (a2)
		argv[n++] = a2;
	argv[n++] = "--backend";
	argv[n++] = fc.backend;
	argv[n++] = "--host";
	argv[n++] = fc.host;
	argv[n++] = "--size";
	argv[n++] = mib;
	argv[n++] = "--commit";
	argv[n++] = commit;
	argv[n++] = "--grace";
	argv[n++] = grace;
	argv[n] = NULL;
	return TH_CHECK_CALL(port ? th_peer_start_port(p, role, argv, port, 60000, &err)
				  : th_peer_start(p, role, argv, &err),
			     &err, "%s started", role);
}

bool fc_start_dest(struct th_peer *p, uint16_t *port, const char *dump)
{
	return fc_start_mode(p, "destination", "dest", dump ? dump : "", NULL, port);
}

bool fc_start_src(struct th_peer *p, const char *state, const char *port_dump)
{
	return fc_start_mode(p, "source", "src", state, port_dump, NULL);
}

bool fc_start_peer(struct th_peer *p)
{
	return fc_start_mode(p, "peer", "peer", NULL, NULL, NULL);
}

/* ---- state names ---------------------------------------------------------- */

const enum rdmig_mig_state fc_states[] = {RDMIG_MIG_BULK, RDMIG_MIG_DIRTY, RDMIG_MIG_SWITCHOVER,
					  RDMIG_MIG_FINAL_COPY};
const unsigned fc_nstates = sizeof(fc_states) / sizeof(fc_states[0]);

int fc_parse_state(const char *s, enum rdmig_mig_state *out)
{
	for (unsigned i = 0; i < fc_nstates; i++) {
		char name[32];

		snprintf(name, sizeof(name), "%s", rdmig_mig_state_name(fc_states[i]));
		for (char *p = name; *p; p++)
			if (*p == ' ' || *p == '_')
				*p = '-';
		if (!strcmp(s, name) || !strcmp(s, rdmig_mig_state_name(fc_states[i]))) {
			*out = fc_states[i];
			return 0;
		}
	}
	return -1;
}

void fc_phase_opts(struct rdmig_mig_opts *o, enum rdmig_mig_state state)
{
	rdmig_mig_opts_defaults(o);
	if (state == RDMIG_MIG_BULK) {
		o->max_bandwidth = 8 << 20; /* bulk lasts seconds */
	} else if (state == RDMIG_MIG_DIRTY) {
		o->min_rounds = 1000; /* never switches over by itself */
		o->max_bandwidth = 32 << 20;
	} else {
		o->min_rounds = 3;
	}
}

/* ---- integrity -------------------------------------------------------------- */

bool fc_dumps_ok(const char *what, const char *src, const char *dst)
{
	struct rdmig_err err = RDMIG_ERR_INIT, ea = RDMIG_ERR_INIT, eb = RDMIG_ERR_INIT;
	size_t ls = 0, ld = 0;
	uint8_t *a = NULL, *b = NULL;
	bool ok = false;

	th_read_file(src, &a, &ls, &ea);
	th_read_file(dst, &b, &ld, &eb);
	if (TH_CHECK(a && b, "%s: dump missing (%s; %s)", what, a ? "ok" : ea.msg,
		     b ? "ok" : eb.msg)) {
		ok = TH_CHECK_UINT(ls, ==, ld, "%s: dump sizes", what);
		ok = TH_CHECK_UINT(ls, ==, fc.guest_mib << 20, "%s: dump size", what) && ok;
		ok = TH_CHECK(ls == ld && !memcmp(a, b, ls),
			      "%s: source and destination dumps differ", what) &&
		     ok;
		ok = TH_CHECK(rdmig_check_incr_image(b, ld, FC_VCPUS, &err) == 0,
			      "%s: incr check: %s", what, err.msg) &&
		     ok;
	}
	free(a);
	free(b);
	unlink(src);
	unlink(dst);
	return ok;
}

void fc_retry_in_process(const char *what, struct rdmig_guest *g)
{
	struct rdmig_err err = RDMIG_ERR_INIT, werr = RDMIG_ERR_INIT;
	char sd[300], dd[300], sbuf[64];
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	struct th_peer dst;
	uint16_t port;
	int ret;

	th_tmp_path(sd, sizeof(sd), "retry-src.bin");
	th_tmp_path(dd, sizeof(dd), "retry-dst.bin");
	if (!fc_start_dest(&dst, &port, dd))
		return;
	rdmig_mig_opts_defaults(&o);
	o.min_rounds = 3;
	/*
	 * The retry proves integrity, not convergence speed. The flat-out incr
	 * guest touches every page of its RAM many times a second even at the
	 * 99% throttle ceiling, so when a loaded emulated host drops the link
	 * to ~30 MiB/s no round can shrink below the whole guest: allow a
	 * downtime that fits it, so the retry converges whatever the load.
	 */
	o.downtime_limit_ns = 10ull * 1000000000ull;
	o.dump_ram = sd;
	ret = fc_source_migrate(g, port, &o, &st, &err);
	TH_CHECK(!th_peer_wait(&dst, 120000, &werr), "%s: retry destination: %s", what, werr.msg);
	TH_CHECK(ret == 0, "%s: retry failed: %s", what, err.msg);
	TH_CHECK(th_exited(dst.status, 0), "%s: retry destination: %s", what,
		 th_status_str(dst.status, sbuf, sizeof(sbuf)));
	if (ret == 0 && fc_dumps_ok(what, sd, dd))
		printf("ok: %s: retry to a fresh destination completed in %u rounds, dumps equal, "
		       "incr check passed\n",
		       what, st.round);
}

/* ---- main -------------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr, "usage: fault_check kill-dest|kill-src STATE|all | migrate | expect-fail "
			"| soak | handover src|dst|both [STEP|all] [--actions drop,kill,stop]\n"
			"       [--backend B] [--host H] [--size MIB] [--bound S] [--timeout S] "
			"[--iterations N | --long] [--commit S] [--grace S]\n"
			"  STATE: bulk, dirty, switchover, final-copy\n"
			"  STEP: final, manifest, verified, go, go-ack\n");
	return TH_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	const char *pos[4] = {0};
	const char *actions = "drop,kill,stop";
	unsigned npos = 0;
	bool peer;

	th_init(argc, argv);
	peer = th_peer_fd() >= 0;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--long")) {
			fc.iterations = 50;
		} else if (!strncmp(argv[i], "--", 2) && i + 1 < argc) {
			const char *k = argv[i], *v = argv[++i];

			if (!strcmp(k, "--backend"))
				fc.backend = v;
			else if (!strcmp(k, "--host"))
				fc.host = v;
			else if (!strcmp(k, "--size"))
				fc.guest_mib = strtoull(v, NULL, 10);
			else if (!strcmp(k, "--bound"))
				fc.bound_s = atof(v);
			else if (!strcmp(k, "--timeout"))
				fc.timeout_s = atof(v);
			else if (!strcmp(k, "--iterations"))
				fc.iterations = (unsigned)atoi(v);
			else if (!strcmp(k, "--commit"))
				fc.commit_s = atof(v);
			else if (!strcmp(k, "--grace"))
				fc.grace_s = atof(v);
			else if (!strcmp(k, "--actions"))
				actions = v;
			else
				return usage();
		} else if (npos < 4) {
			pos[npos++] = argv[i];
		}
	}
	if (peer && !strcmp(mode, "dest") && npos >= 1)
		return run_dest(pos[0]);
	if (peer && !strcmp(mode, "src") && npos >= 2)
		return fc_run_src(pos[0], pos[1]);
	if (peer && !strcmp(mode, "peer"))
		return fc_run_peer();
	if (peer && !strcmp(mode, "hdst") && npos >= 2)
		return fc_run_hdst(pos[0], pos[1]);
	if (peer && !strcmp(mode, "hsrc") && npos >= 2)
		return fc_run_hsrc(pos[0], pos[1]);
	if (fc.guest_mib < 4)
		return usage();
	if (!th_tmpdir())
		return TH_EXIT_FAIL;
	if (!strcmp(mode, "kill-dest") || !strcmp(mode, "kill-src")) {
		bool all = npos < 1 || !strcmp(pos[0], "all");
		enum rdmig_mig_state one = RDMIG_MIG_BULK;
		struct th_res base = {-1, -1};

		if (!all && fc_parse_state(pos[0], &one))
			return usage();
		for (unsigned i = 0; i < fc_nstates; i++) {
			if (!all && fc_states[i] != one)
				continue;
			if (mode[5] == 'd')
				fc_kill_dest_one(fc_states[i], &base);
			else
				fc_kill_src_one(fc_states[i]);
		}
	} else if (!strcmp(mode, "migrate")) {
		fc_plain_migrate();
	} else if (!strcmp(mode, "expect-fail")) {
		fc_expect_fail();
	} else if (!strcmp(mode, "handover")) {
		int ret;

		if (npos < 1 || fc.commit_s < 1 || fc.grace_s < 1)
			return usage();
		ret = fc_handover(pos[0], npos >= 2 ? pos[1] : "all", actions);
		if (ret)
			return ret == TH_EXIT_USAGE ? usage() : ret;
	} else if (!strcmp(mode, "soak")) {
		if (npos >= 1)
			fc.iterations = (unsigned)atoi(pos[0]);
		if (!fc.iterations)
			return usage();
		fc_soak();
	} else {
		return usage();
	}
	return th_summary(mode, true);
}
