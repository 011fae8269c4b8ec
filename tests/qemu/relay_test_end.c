/* SPDX-License-Identifier: MIT */
/*
 * QEMU tier, relay_test (relay_test.c has the overview): where the guest
 * runs when the end of a migration goes wrong, and post-copy with its
 * recovery and its loss.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "rdmig/auth.h"
#include "clock.h"
#include "log.h"
#include "qemu_harness.h"
#include "relay.h"
#include "rdmig/transport.h"

#include "relay_test.h"

/* ---- where the guest runs when the end goes wrong ------------------------------------ */

int test_dst_fails(void)
{
	/* A device the destination lacks: its state, sent last, fails the destination's load. */
	static const char *const rng[] = {"-device", "virtio-rng-pci", NULL};
	static struct qh_vm src, dst;
	static struct qh_proc relay, m;
	struct qh_vm_cfg cfg = guest_cfg("src", QH_SOURCE);
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *j, *info = NULL;
	unsigned port;
	int rc;

	cfg.extra = rng;
	if (qh_vm_start(&src, &cfg, &err))
		return FAIL("%s", err.msg);
	if (vm_start(&dst, "dst", QH_INCOMING_UNIX) ||
	    relay_start(&relay, "relay", &dst, true, &port) || expect_guest_running(&src))
		return -1;
	if (migrate_spawn(&m, src.qmp, port, fast) || migrate_wait(&m, 120000) ||
	    failed_with(&m, "so the source VM was resumed"))
		return -1;
	j = summary_of(&m);
	if (!j)
		return -1;
	rc = expect_jstr(j, "status", "failed") || expect_jstr(j, "src_status", "running");
	if (!rc && !json_is_true(json_object_get(j, "src_resumed")))
		rc = FAIL("JSON src_resumed is not true");
	json_decref(j);
	if (rc)
		return -1;
	/* It was the late case: the source had completed, and was resumed. */
	if (qh_cmd(&src, "query-migrate", NULL, &info, &err))
		return FAIL("%s", err.msg);
	rc = strcmp(qh_mig_status(info), "completed")
		 ? FAIL("the source's migration is \"%s\", not completed: not the case under test",
			qh_mig_status(info))
		 : 0;
	json_decref(info);
	if (rc || expect_guest_running(&src))
		return -1;
	if (qh_wait(&dst.p, 10000, &err))
		return FAIL("the destination QEMU still runs after failing its load: %s", err.msg);
	printf("  source completed, destination QEMU exited (status %d), source resumed and "
	       "running\n",
	       dst.p.status);
	return 0;
}

/* Until the source's migration is `arg` (pre-switchover, completed). */
static bool mig_is(json_t *info, void *arg)
{
	return !strcmp(qh_mig_status(info), arg);
}

static int wait_src_mig(struct qh_vm *vm, const char *want)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *last = NULL;
	int rc = qh_poll_migrate(vm, 50, 90000, mig_is, (void *)want, &last, &err);

	if (!rc && strcmp(qh_mig_status(last), want))
		rc = FAIL("the source's migration ended \"%s\" instead of reaching \"%s\"",
			  qh_mig_status(last), want);
	else if (rc)
		FAIL("%s", err.msg);
	json_decref(last);
	return rc;
}

int test_unknown(void)
{
	static struct qh_vm src, dst;
	static struct qh_proc relay, m;
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct qh_proxy *px = NULL;
	unsigned port;
	json_t *j;
	int rc = -1;

	if (strcmp(g_relay.backend, "tcp")) {
		printf("  SKIP: the proxy that cuts the relay off speaks tcp only\n");
		return 0;
	}
	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port))
		return -1;
	/* The source waits before switching over: the cut then comes right after completion. */
	if (qh_cmd(&src, "migrate-set-capabilities",
		   json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
			     "pause-before-switchover", "state", 1),
		   NULL, &err) ||
	    qh_proxy_start((uint16_t)port, &px, &err))
		return FAIL("%s", err.msg);
	if (migrate_spawn(&m, src.qmp, qh_proxy_port(px), fast) ||
	    wait_src_mig(&src, "pre-switchover"))
		goto out;
	if (qh_proxy_controls(px) != 1) {
		FAIL("the proxy saw %u control sessions, expected 1", qh_proxy_controls(px));
		goto out;
	}
	qh_proxy_set(px, QH_PROXY_STALL_CONTROL);
	if (qh_cmd(&src, "migrate-continue", json_pack("{s:s}", "state", "pre-switchover"), NULL,
		   &err)) {
		FAIL("%s", err.msg);
		goto out;
	}
	if (wait_src_mig(&src, "completed"))
		goto out;
	qh_proxy_set(px, QH_PROXY_CUT_CONTROL);
	printf("  source completed; the destination relay cut off\n");
	if (migrate_wait(&m, 90000) || ended_with(&m, 3, "outcome unknown") ||
	    log_mentions(&m, "resume the source with `cont`"))
		goto out;
	j = summary_of(&m);
	if (!j)
		goto out;
	rc =
	    expect_jstr(j, "status", "unknown") || expect_jstr(j, "dst_status", "unknown") ? -1 : 0;
	json_decref(j);
	/* Not resumed: the guest runs on the destination, once. */
	if (!rc && (expect_status(&src, "postmigrate") || expect_guest_running(&dst)))
		rc = -1;
	if (!rc)
		printf("  source left paused (postmigrate); the guest runs on the destination\n");
out:
	qh_proxy_stop(px);
	return rc;
}

/* ---- post-copy -------------------------------------------------------------------- */

/*
 * The guest increments every page of its range in a loop that takes far
 * less than a second, so at 32 MiB/s every pass finds the whole range dirty
 * again and a 1 ms downtime limit is never met: pre-copy cannot converge.
 */
#define NO_CONVERGE "--max-bandwidth", "32M", "--downtime-limit", "1ms"

/* The summary says post-copy ran, over the streams it should have. */
static int expect_postcopy(json_t *j, bool recovered)
{
	bool preempt = json_is_true(json_object_get(j, "postcopy_preempt"));
	json_int_t rec = json_integer_value(json_object_get(j, "recoveries"));
	json_int_t streams = json_integer_value(json_object_get(j, "streams"));

	if (!json_is_true(json_object_get(j, "postcopy")))
		return FAIL(
		    "JSON postcopy is not true: the migration did not go through post-copy");
	if (json_is_true(json_object_get(j, "guest_lost")) ||
	    json_is_true(json_object_get(j, "postcopy_paused")))
		return FAIL("JSON says guest_lost or postcopy_paused on success");
	if (recovered ? rec < 1 : rec != 0)
		return FAIL("JSON recoveries is %lld, expected %s", rec, recovered ? ">= 1" : "0");
	/* The main channel (and the preempt one) at the start and again at every recovery. */
	if (streams != (1 + preempt) * (1 + rec))
		return FAIL("%lld streams carried, expected %lld (preempt %s, %lld recoveries)",
			    streams, (1 + preempt) * (1 + rec), preempt ? "on" : "off", rec);
	printf("  post-copy from %lld ms, %lld page requests from the destination, preempt %s, "
	       "%lld recoveries\n",
	       json_integer_value(json_object_get(j, "postcopy_start_ms")),
	       json_integer_value(json_object_get(j, "postcopy_requests")), preempt ? "on" : "off",
	       rec);
	return 0;
}

int test_postcopy(void)
{
	static const char *const extra[] = {"--postcopy", NO_CONVERGE, NULL};
	static struct qh_vm src, dst;
	static struct qh_proc relay;
	json_t *j = NULL;
	unsigned port;
	int rc;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port))
		return -1;
	rc = migrate_run(&src, &dst, port, extra, 0, &j);
	if (!rc)
		rc = expect_postcopy(j, false);
	/* Switched because pre-copy did not converge: at the start of the third pass. */
	if (!rc && json_integer_value(json_object_get(j, "passes")) < 3)
		rc = FAIL("post-copy after %lld passes: the non-convergence rule needs 3",
			  json_integer_value(json_object_get(j, "passes")));
	json_decref(j);
	return rc;
}

/*
 * Post-copy under way and slow enough to be caught there: switched to 1 s
 * into the first pass, with most of the guest still to copy, and the
 * background copy limited (max-postcopy-bandwidth, on the source's own
 * QMP) so that it would take about 16 s for the whole guest.
 */
static int postcopy_slowly(struct qh_vm *src, struct qh_proc *m, unsigned port)
{
	static const char *const extra[] = {
	    "--postcopy", "--postcopy-after", "1s", NO_CONVERGE, "--recover-wait", "60s", NULL};
	struct rdmig_err err = RDMIG_ERR_INIT;
	char st[32];

	if (qh_cmd(src, "migrate-set-parameters",
		   json_pack("{s:I}", "max-postcopy-bandwidth", (json_int_t)(g_len / 16)), NULL,
		   &err))
		return FAIL("%s", err.msg);
	if (migrate_spawn(m, src->qmp, port, extra) || wait_src_mig(src, "postcopy-active"))
		return -1;
	rdmig_sleep_ms(1000);
	/* The guest left the source at the switch. */
	if (qh_status(src, st, sizeof(st), &err))
		return FAIL("%s", err.msg);
	if (!strcmp(st, "running"))
		return FAIL("the source VM still runs in post-copy");
	return 0;
}

int test_postcopy_recover(void)
{
	static struct qh_vm src, dst;
	static struct qh_proc relay, relay2, m;
	struct rdmig_err err = RDMIG_ERR_INIT;
	char listen[300];
	const char *const same_port[] = {"--listen", listen, NULL};
	unsigned port, port2;
	json_t *j;
	int rc;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port) ||
	    postcopy_slowly(&src, &m, port))
		return -1;
	qh_kill(&relay);
	printf("  killed the destination relay in post-copy\n");
	if (wait_src_mig(&src, "postcopy-paused"))
		return -1;
	printf("  the source QEMU paused post-copy; restarting the relay on port %u\n", port);
	/* The later --listen wins: the new relay takes the old one's address. */
	snprintf(listen, sizeof(listen), "%s:%u", g_relay.host, port);
	if (qh_relay_dst_spawn(&relay2, "relay2", &g_relay, dst.incoming, dst.qmp, same_port,
			       &port2, &err))
		return FAIL("%s", err.msg);
	if (port2 != port)
		return FAIL("the restarted relay listens on %u, not %u", port2, port);
	if (migrate_wait(&m, 120000))
		return -1;
	if (m.status) {
		qh_show_log(&m);
		return FAIL("rdmig qemu migrate exited %d", m.status);
	}
	j = summary_of(&m);
	if (!j)
		return -1;
	rc = expect_jstr(j, "status", "completed") || expect_jstr(j, "dst_status", "running") ||
		     expect_postcopy(j, true)
		 ? -1
		 : 0;
	json_decref(j);
	if (rc || log_mentions(&m, "post-copy paused") || expect_status(&src, "postmigrate"))
		return -1;
	return check_integrity(&dst);
}

int test_postcopy_lost(void)
{
	static struct qh_vm src, dst;
	static struct qh_proc relay, m;
	unsigned port;
	json_t *j;
	int rc;

	if (pair_start(&src, &dst, QH_INCOMING_UNIX, &relay, &port) ||
	    postcopy_slowly(&src, &m, port))
		return -1;
	qh_kill(&dst.p);
	printf("  killed the destination QEMU in post-copy\n");
	if (migrate_wait(&m, 90000) || failed_with(&m, "guest is lost"))
		return -1;
	j = summary_of(&m);
	if (!j)
		return -1;
	rc = expect_jstr(j, "status", "failed");
	if (!rc && !json_is_true(json_object_get(j, "guest_lost")))
		rc = FAIL("JSON guest_lost is not true");
	json_decref(j);
	/* Nothing was resumed: the source keeps its half, stopped where post-copy left it. */
	return rc || expect_status(&src, "finish-migrate") ? -1 : 0;
}
