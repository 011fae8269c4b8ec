/* SPDX-License-Identifier: MIT */
/*
 * QEMU VMs: one command line for every test guest, start-up until QMP
 * answers, and the waits tests and the bench make on QMP.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "qemu_harness.h"
#include "qemu_int.h"

#define MAX_VMS	 16
#define START_MS 20000 /* QEMU up and its QMP socket answering, on a loaded host */

/* VMs whose QMP connection qh_end_test() closes. */
static struct qh_vm *g_vms[MAX_VMS];

static void vm_forget(struct qh_vm *vm)
{
	for (int i = 0; i < MAX_VMS; i++)
		if (g_vms[i] == vm)
			g_vms[i] = NULL;
}

static int vm_remember(struct qh_vm *vm, struct rdmig_err *err)
{
	int slot = -1;

	for (int i = 0; i < MAX_VMS; i++) {
		if (g_vms[i] == vm)
			return 0;
		if (!g_vms[i] && slot < 0)
			slot = i;
	}
	if (slot < 0)
		return rdmig_seterr(err, -EMFILE, "more than %d VMs at a time", MAX_VMS);
	g_vms[slot] = vm;
	return 0;
}

int qh_vm_start(struct qh_vm *vm, const struct qh_vm_cfg *cfg, struct rdmig_err *err)
{
	char own[QH_PATH + 32], other[QH_PATH + 32], drive[QH_PATH + 64], inc[QH_PATH + 8];
	char mem[16], vname[48];
	const char *argv[40], *name = cfg->name;
	int64_t deadline;
	int n = 0, ret;

	memset(vm, 0, sizeof(*vm));
	if (!name || !*name || !cfg->mem_mib || (!cfg->disk && !cfg->bios) ||
	    (cfg->incoming == QH_INCOMING_URI && !cfg->uri))
		return rdmig_seterr(err, -EINVAL,
				    "VM %s: needs a name, memory, a disk or firmware (and a URI "
				    "with QH_INCOMING_URI)",
				    name ? name : "?");
	ret = vm_remember(vm, err);
	if (ret)
		return ret;
	snprintf(vm->qmp, sizeof(vm->qmp), "%s/%s.qmp", qh_tmp(), name);
	snprintf(vm->own_qmp, sizeof(vm->own_qmp), "%s/%s.tq", qh_tmp(), name);
	snprintf(vm->incoming, sizeof(vm->incoming), "%s/%s.in", qh_tmp(), name);
	snprintf(own, sizeof(own), "unix:%s,server=on,wait=off", vm->own_qmp);
	snprintf(other, sizeof(other), "unix:%s,server=on,wait=off", vm->qmp);
	snprintf(inc, sizeof(inc), "unix:%s", vm->incoming);
	snprintf(mem, sizeof(mem), "%u", cfg->mem_mib);
	snprintf(vname, sizeof(vname), "rdmig-%s", name);

	argv[n++] = qh_qemu();
	argv[n++] = "-name";
	argv[n++] = vname;
	argv[n++] = "-accel";
	argv[n++] = cfg->accel ? cfg->accel : "tcg";
	argv[n++] = "-M";
	argv[n++] = "pc";
	argv[n++] = "-m";
	argv[n++] = mem;
	argv[n++] = "-nographic";
	argv[n++] = "-nodefaults";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-serial";
	argv[n++] = "none";
	argv[n++] = "-monitor";
	argv[n++] = "none";
	if (cfg->disk) {
		snprintf(drive, sizeof(drive), "file=%s,format=raw,if=ide,snapshot=on", cfg->disk);
		argv[n++] = "-drive";
		argv[n++] = drive;
	}
	if (cfg->bios) {
		argv[n++] = "-bios";
		argv[n++] = cfg->bios;
	}
	argv[n++] = "-qmp";
	argv[n++] = own;
	if (cfg->second_qmp) {
		argv[n++] = "-qmp";
		argv[n++] = other;
	} else {
		vm->qmp[0] = '\0';
	}
	if (cfg->paused)
		argv[n++] = "-S";
	if (cfg->incoming != QH_SOURCE) {
		argv[n++] = "-incoming";
		argv[n++] = cfg->incoming == QH_INCOMING_UNIX	 ? inc
			    : cfg->incoming == QH_INCOMING_DEFER ? "defer"
								 : cfg->uri;
	}
	for (const char *const *x = cfg->extra; x && *x; x++) {
		if (n == (int)(sizeof(argv) / sizeof(argv[0])) - 1)
			return rdmig_seterr(err, -E2BIG, "VM %s: too many QEMU arguments", name);
		argv[n++] = *x;
	}
	argv[n] = NULL;
	ret = qh_spawn(&vm->p, name, argv, false, err);
	if (ret)
		return ret;

	/* QEMU creates the socket during start-up: retry until it answers. */
	deadline = rdmig_deadline_ms(START_MS);
	for (;;) {
		struct rdmig_err qerr = RDMIG_ERR_INIT;

		ret = rdmig_qmp_open(vm->own_qmp, QH_QMP_MS, &vm->q, &qerr);
		if (!ret)
			return 0;
		if (qh_exited(&vm->p)) {
			qh_show_log(&vm->p);
			return rdmig_seterr(err, -ECHILD,
					    "%s: QEMU exited during start-up (status %d)", name,
					    vm->p.status);
		}
		if ((ret != -ENOENT && ret != -ECONNREFUSED) || rdmig_ms_left(deadline) == 0)
			return rdmig_seterr(err, ret, "%s: %s", name, rdmig_err_str(&qerr));
		rdmig_sleep_ms(20);
	}
}

void qh_vm_stop(struct qh_vm *vm)
{
	rdmig_qmp_close(vm->q);
	vm->q = NULL;
	qh_kill(&vm->p);
	vm_forget(vm);
}

void qh_end_test(bool failed)
{
	for (int i = 0; i < MAX_VMS; i++)
		if (g_vms[i]) {
			rdmig_qmp_close(g_vms[i]->q);
			g_vms[i]->q = NULL;
			g_vms[i] = NULL;
		}
	qh_kill_all(failed);
}

int qh_cmd(struct qh_vm *vm, const char *cmd, json_t *args, json_t **ret, struct rdmig_err *err)
{
	int rc;

	if (!vm->q) {
		json_decref(args);
		return rdmig_seterr(err, -ENOTCONN, "%s: %s: no QMP connection", vm->p.name, cmd);
	}
	rc = rdmig_qmp_cmd(vm->q, cmd, args, ret, QH_QMP_MS, err);
	if (rc)
		rdmig_err_prefix(err, "%s", vm->p.name);
	return rc;
}

int qh_status(struct qh_vm *vm, char *buf, size_t len, struct rdmig_err *err)
{
	int ret;

	if (!vm->q)
		return rdmig_seterr(err, -ENOTCONN, "%s: no QMP connection", vm->p.name);
	ret = rdmig_qmp_status(vm->q, buf, len, err);
	if (ret)
		rdmig_err_prefix(err, "%s", vm->p.name);
	return ret;
}

int qh_expect_status(struct qh_vm *vm, const char *want, struct rdmig_err *err)
{
	char st[64];
	int ret = qh_status(vm, st, sizeof(st), err);

	if (ret)
		return ret;
	if (strcmp(st, want))
		return rdmig_seterr(err, -EPROTO, "%s: status \"%s\", expected \"%s\"", vm->p.name,
				    st, want);
	return 0;
}

int qh_wait_status(struct qh_vm *vm, const char *want, int timeout_ms, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);
	char st[64];

	for (;;) {
		int ret = qh_status(vm, st, sizeof(st), err);

		if (ret)
			return ret;
		if (!strcmp(st, want))
			return 0;
		if (rdmig_ms_left(deadline) == 0)
			return rdmig_seterr(err, -ETIMEDOUT,
					    "%s: status still \"%s\" after %d ms, expected \"%s\"",
					    vm->p.name, st, timeout_ms, want);
		rdmig_sleep_ms(20);
	}
}

int qh_wait_event(struct qh_vm *vm, const char *event, int timeout_ms, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);

	if (!vm->q)
		return rdmig_seterr(err, -ENOTCONN, "%s: no QMP connection", vm->p.name);
	for (;;) {
		json_t *ev = NULL;
		const char *got;
		int ret = rdmig_qmp_next_event(vm->q, rdmig_ms_left(deadline), &ev, err);

		if (ret) {
			rdmig_err_prefix(err, "%s: waiting for event %s", vm->p.name, event);
			return ret;
		}
		if (!ev)
			return rdmig_seterr(err, -ETIMEDOUT, "%s: no %s event within %d ms",
					    vm->p.name, event, timeout_ms);
		got = json_string_value(json_object_get(ev, "event"));
		ret = got && !strcmp(got, event);
		json_decref(ev);
		if (ret)
			return 0;
	}
}

bool qh_mig_ended(const char *st)
{
	static const char *const going[] = {
	    "setup",	   "active", "device",		"pre-switchover",  "cancelling",
	    "wait-unplug", "none",   "postcopy-active", "postcopy-paused", "postcopy-recover"};

	for (size_t i = 0; i < sizeof(going) / sizeof(going[0]); i++)
		if (!strcmp(st, going[i]))
			return false;
	return true;
}

const char *qh_mig_status(json_t *info)
{
	const char *st = json_string_value(json_object_get(info, "status"));

	return st ? st : "none";
}

double qh_num(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_number(v) ? json_number_value(v) : 0;
}

int qh_poll_migrate(struct qh_vm *vm, int period_ms, int timeout_ms, qh_mig_fn until, void *arg,
		    json_t **last, struct rdmig_err *err)
{
	int64_t deadline = rdmig_deadline_ms(timeout_ms);

	*last = NULL;
	for (;;) {
		json_t *info = NULL;
		bool stop;
		int ret = qh_cmd(vm, "query-migrate", NULL, &info, err);

		if (ret)
			return ret;
		json_decref(*last);
		*last = info;
		/* `until` sees the final reply too (the bench samples it). */
		stop = until && until(info, arg);
		if (stop || qh_mig_ended(qh_mig_status(info)))
			return 0;
		if (rdmig_ms_left(deadline) == 0)
			return rdmig_seterr(err, -ETIMEDOUT,
					    "%s: migration still \"%s\" after %d ms", vm->p.name,
					    qh_mig_status(info), timeout_ms);
		rdmig_sleep_ms((unsigned)period_ms);
	}
}
