/* SPDX-License-Identifier: MIT */
/*
 * QEMU-to-QEMU live migration over unix:, with the guest's memory checked
 * after it: migrate, migrate_fail.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "qemu_smoke.h"

#define MIGRATE_TIMEOUT_MS 120000

static int wait_status(struct qh_vm *vm, const char *want, int timeout_ms)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_wait_status(vm, want, timeout_ms, &err))
		return FAIL("%s", err.msg);
	printf("  %s: status %s\n", vm->p.name, want);
	return 0;
}

struct progress {
	double t0, last_print;
	char last[64];
};

/* A progress line when the status changes, else once a second. */
static bool print_progress(json_t *info, void *arg)
{
	struct progress *pr = arg;
	json_t *ram = json_object_get(info, "ram");
	const char *st = qh_mig_status(info);
	double t = rdmig_now_s() - pr->t0;

	if (strcmp(st, pr->last) || t - pr->last_print >= 1.0) {
		printf("  [%6.2f s] migrate %-10s %8.1f of %.1f MiB sent, %.1f MiB left, %.0f "
		       "passes\n",
		       t, st, qh_num(ram, "transferred") / 1048576.0,
		       qh_num(ram, "total") / 1048576.0, qh_num(ram, "remaining") / 1048576.0,
		       qh_num(ram, "dirty-sync-count"));
		snprintf(pr->last, sizeof(pr->last), "%s", st);
		pr->last_print = t;
	}
	return false;
}

/* Poll query-migrate on `src` until the migration has ended; *out its final reply. */
static int wait_migration(struct qh_vm *src, int timeout_ms, json_t **out)
{
	struct progress pr = {.t0 = rdmig_now_s()};
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_poll_migrate(src, 50, timeout_ms, print_progress, &pr, out, &err)) {
		json_decref(*out);
		*out = NULL;
		return FAIL("%s", err.msg);
	}
	return 0;
}

/* Migrate a running `src` into `dst` (started with -incoming `uri`) and check both. */
static int migrate_and_check(struct qh_vm *src, struct qh_vm *dst, const char *uri)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *info = NULL;
	const char *st;
	int rc;

	if (expect_status(dst, "inmigrate") || expect_status(src, "running") ||
	    expect_guest_running(src))
		return -1;
	if (vm_cmd(src, "migrate", json_pack("{s:s}", "uri", uri), NULL) ||
	    wait_migration(src, MIGRATE_TIMEOUT_MS, &info))
		return -1;
	st = qh_mig_status(info);
	if (strcmp(st, "completed")) {
		const char *desc = json_string_value(json_object_get(info, "error-desc"));

		rc = FAIL("migration ended \"%s\": %s", st, desc ? desc : "(no error-desc)");
		json_decref(info);
		return rc;
	}
	printf("  completed: total %.0f ms, downtime %.0f ms, setup %.0f ms, %.1f MiB sent\n",
	       qh_num(info, "total-time"), qh_num(info, "downtime"), qh_num(info, "setup-time"),
	       qh_num(json_object_get(info, "ram"), "transferred") / 1048576.0);
	json_decref(info);

	if (wait_status(dst, "running", QH_QMP_MS) || wait_event(dst, "RESUME", 5000) ||
	    wait_status(src, "postmigrate", QH_QMP_MS) || wait_event(src, "STOP", 5000))
		return -1;
	if (expect_guest_running(dst))
		return -1;
	if (vm_cmd(dst, "stop", NULL, NULL) || expect_status(dst, "paused"))
		return -1;
	if (qh_check_incr(dst, GUEST_BASE, GUEST_LEN, g_lossy_tcg, &err))
		return FAIL("%s", err.msg);
	return 0;
}

int test_migrate(void)
{
	static struct qh_vm src, dst;
	char uri[QH_PATH + 16];

	snprintf(uri, sizeof(uri), "unix:%s/migrate.sock", qh_tmp());
	if (vm_start(&src, "src", false, NULL) || vm_start(&dst, "dst", false, uri))
		return -1;
	return migrate_and_check(&src, &dst, uri);
}

int test_migrate_fail(void)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	char nobody[QH_PATH + 16], uri[QH_PATH + 16];
	static struct qh_vm src, dst;
	json_t *info = NULL;
	int rc;

	snprintf(nobody, sizeof(nobody), "unix:%s/nobody.sock", qh_tmp());
	if (vm_start(&src, "src2", false, NULL) || expect_status(&src, "running"))
		return -1;

	rc = qh_cmd(&src, "migrate", json_pack("{s:s}", "uri", nobody), NULL, &err);
	if (rc == -EREMOTEIO) {
		printf("  migrate to %s -> %s\n", nobody, err.msg);
	} else if (rc) {
		return FAIL("migrate: %s", err.msg);
	} else {
		const char *desc, *st;

		if (wait_migration(&src, 30000, &info))
			return -1;
		st = qh_mig_status(info);
		desc = json_string_value(json_object_get(info, "error-desc"));
		printf("  migrate to %s -> %s: %s\n", nobody, st, desc ? desc : "(no error-desc)");
		rc = strcmp(st, "failed")
			 ? FAIL("migration to %s ended \"%s\", expected \"failed\"", nobody, st)
			 : 0;
		json_decref(info);
		if (rc)
			return rc;
	}
	if (expect_status(&src, "running") || expect_guest_running(&src))
		return -1;

	/* The failed attempt leaves the source able to migrate for real. */
	snprintf(uri, sizeof(uri), "unix:%s/migrate2.sock", qh_tmp());
	if (vm_start(&dst, "dst2", false, uri))
		return -1;
	return migrate_and_check(&src, &dst, uri);
}
