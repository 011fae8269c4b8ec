/* SPDX-License-Identifier: MIT */
/*
 * The QMP client (qemu/qmp.c) against real QEMU and against sockets that
 * are not QMP: greeting, errors, not_qmp.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "qemu_smoke.h"

#define FAKE_TIMEOUT_MS 1000

int test_greeting(void)
{
	static struct qh_vm vm;
	int major, minor, micro;
	json_t *schema = NULL;
	size_t n;

	if (vm_start(&vm, "greet", true, NULL))
		return -1;
	rdmig_qmp_version(vm.q, &major, &minor, &micro);
	printf("  greeting: QEMU %d.%d.%d, package \"%s\"\n", major, minor, micro,
	       rdmig_qmp_package(vm.q));
	if (major != g_ver[0] || minor != g_ver[1] || micro != g_ver[2])
		return FAIL("greeting says %d.%d.%d, `qemu --version` says %d.%d.%d", major, minor,
			    micro, g_ver[0], g_ver[1], g_ver[2]);
	if (major < 2)
		return FAIL("implausible QEMU version %d.%d.%d", major, minor, micro);

	/* -S: prelaunch until cont; cont emits RESUME. */
	if (expect_status(&vm, "prelaunch"))
		return -1;
	if (vm_cmd(&vm, "cont", NULL, NULL) || expect_status(&vm, "running") ||
	    wait_event(&vm, "RESUME", 5000) || expect_guest_running(&vm))
		return -1;

	/* A reply of a few hundred KiB arrives over many reads. */
	if (vm_cmd(&vm, "query-qmp-schema", NULL, &schema))
		return -1;
	n = json_array_size(schema);
	json_decref(schema);
	if (n < 100)
		return FAIL("query-qmp-schema returned %zu entries, expected hundreds", n);
	printf("  query-qmp-schema: %zu entries\n", n);
	return expect_status(&vm, "running");
}

/* Run `cmd`, expect -EREMOTEIO with a message starting with `prefix`. */
static int expect_qmp_error(struct qh_vm *vm, const char *cmd, json_t *args, const char *prefix,
			    const char *contains)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	json_t *ret = (json_t *)1;
	int rc = rdmig_qmp_cmd(vm->q, cmd, args, &ret, QH_QMP_MS, &err);

	if (rc != -EREMOTEIO)
		return FAIL("%s: rc %d (%s), expected -EREMOTEIO", cmd, rc, rdmig_err_str(&err));
	if (ret)
		return FAIL("%s: *ret not cleared on error", cmd);
	if (strncmp(err.msg, prefix, strlen(prefix)) || !strstr(err.msg, contains))
		return FAIL("%s: message \"%s\", expected \"%s...%s...\"", cmd, err.msg, prefix,
			    contains);
	printf("  %s -> %s\n", cmd, err.msg);
	return 0;
}

int test_errors(void)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	static struct qh_vm vm;
	json_t *params = NULL;
	double bw, dl;
	int rc;

	if (vm_start(&vm, "errors", false, NULL))
		return -1;
	if (expect_qmp_error(&vm, "no-such-command", NULL,
			     "QMP no-such-command failed: CommandNotFound: ", "no-such-command") ||
	    expect_qmp_error(&vm, "migrate", NULL, "QMP migrate failed: GenericError: ", "uri") ||
	    expect_qmp_error(&vm, "query-status", json_pack("{s:i}", "bogus", 1),
			     "QMP query-status failed: GenericError: ", "bogus") ||
	    expect_qmp_error(&vm, "qmp_capabilities", NULL,
			     "QMP qmp_capabilities failed: CommandNotFound: ", "negotiation"))
		return -1;

	/* Arguments that are not an object are refused locally (and freed). */
	rc = rdmig_qmp_cmd(vm.q, "query-status", json_integer(1), NULL, QH_QMP_MS, &err);
	if (rc != -EINVAL)
		return FAIL("non-object arguments: rc %d, expected -EINVAL", rc);
	printf("  non-object arguments -> %s\n", err.msg);

	/*
	 * QEMU accepts -1 for a uint64 parameter and then prints 2^64-1, beyond
	 * jansson's integers: the reply must still parse (its integers as reals).
	 */
	if (vm_cmd(&vm, "migrate-set-parameters", json_pack("{s:i}", "max-bandwidth", -1), NULL) ||
	    vm_cmd(&vm, "query-migrate-parameters", NULL, &params))
		return -1;
	bw = json_number_value(json_object_get(params, "max-bandwidth"));
	dl = json_number_value(json_object_get(params, "downtime-limit"));
	json_decref(params);
	if (bw < 1.8e19 || dl != 300)
		return FAIL(
		    "query-migrate-parameters: max-bandwidth %g, downtime-limit %g; expected "
		    "2^64-1 and 300",
		    bw, dl);
	printf("  uint64 2^64-1 in a reply -> parsed, max-bandwidth %g, downtime-limit %g\n", bw,
	       dl);

	/* The handle stays usable after errors. */
	return expect_status(&vm, "running");
}

static int expect_not_qmp(enum qh_fake_mode mode, const char *what, int want_rc, const char *want)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_qmp *qmp = NULL;
	struct qh_fake fk;
	char path[QH_PATH];
	double t0, dt;
	int rc;

	snprintf(path, sizeof(path), "%s/fake.sock", qh_tmp());
	if (qh_fake_start(&fk, path, mode, &err))
		return FAIL("%s", err.msg);
	t0 = rdmig_now_s();
	rc = rdmig_qmp_open(path, FAKE_TIMEOUT_MS, &qmp, &err);
	dt = rdmig_now_s() - t0;
	rdmig_qmp_close(qmp);
	qh_fake_stop(&fk);

	if (!rc)
		return FAIL("%s: accepted as QMP", what);
	if (qmp)
		return FAIL("%s: handle returned despite the error", what);
	if (rc != want_rc || !strstr(err.msg, want))
		return FAIL("%s: rc %d \"%s\", expected rc %d and \"%s\"", what, rc, err.msg,
			    want_rc, want);
	if (dt > FAKE_TIMEOUT_MS / 1000.0 + 0.5)
		return FAIL("%s: took %.2f s with a %d ms timeout", what, dt, FAKE_TIMEOUT_MS);
	printf("  %-28s %.2f s: %s\n", what, dt, err.msg);
	return 0;
}

int test_not_qmp(void)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_qmp *qmp = NULL;
	char path[QH_PATH];
	int rc;

	if (expect_not_qmp(QH_FAKE_GARBAGE, "another protocol", -EPROTO,
			   "is not a QMP socket: it sent \"SSH-2.0") ||
	    expect_not_qmp(QH_FAKE_JSON, "JSON, not a greeting", -EPROTO,
			   "is not a QMP socket: greeting is {\"hello\"") ||
	    expect_not_qmp(QH_FAKE_SILENT, "silent", -ETIMEDOUT,
			   "is not a QMP socket: no greeting within 1000 ms") ||
	    expect_not_qmp(QH_FAKE_HANGUP, "hangs up", -ECONNRESET,
			   "is not a QMP socket: connection closed") ||
	    expect_not_qmp(QH_FAKE_HUGE, "endless line", -EMSGSIZE,
			   "is not a QMP socket: it sent a line longer than") ||
	    expect_not_qmp(QH_FAKE_BAD_REPLY, "greets, then non-JSON", -EPROTO,
			   "malformed QMP reply") ||
	    expect_not_qmp(QH_FAKE_ODD_REPLY, "greets, then odd reply", -EPROTO,
			   "malformed QMP reply"))
		return -1;

	/* No socket at all: the connect error, for callers to retry on. */
	snprintf(path, sizeof(path), "%s/nothing.sock", qh_tmp());
	rc = rdmig_qmp_open(path, FAKE_TIMEOUT_MS, &qmp, &err);
	if (rc != -ENOENT || qmp)
		return FAIL("missing socket: rc %d \"%s\", expected -ENOENT", rc, err.msg);
	printf("  %-28s %s\n", "missing socket", err.msg);
	return 0;
}
