/* SPDX-License-Identifier: MIT */
/*
 * qemu_smoke, the QEMU tier's smoke test, in three parts:
 *
 *   qemu_smoke.c     the runner, the firmware guest, helpers every test uses
 *   smoke_qmp.c      the QMP client against QEMU and against sockets that
 *                    are not QMP (greeting, errors, not_qmp)
 *   smoke_migrate.c  QEMU-to-QEMU migrations, guest memory checked (migrate,
 *                    migrate_fail)
 */
#ifndef RDMIG_TESTS_QEMU_SMOKE_H
#define RDMIG_TESTS_QEMU_SMOKE_H

#include <stdbool.h>

#include <jansson.h>

#include "qemu_harness.h"

#define FAIL QH_FAIL

/* The firmware (qemu_smoke.c) increments byte 0 of GUEST_PAGES pages from GUEST_BASE. */
#define GUEST_BASE  0x10000u
#define GUEST_PAGES 128u
#define GUEST_LEN   (GUEST_PAGES * 4096u)

extern int g_ver[3];	 /* from `qemu --version` */
extern bool g_lossy_tcg; /* qh_tcg_lossy(): damaged memory is a warning */

/* Start QEMU on the firmware guest (-S when `paused`, -incoming `uri` unless NULL). */
int vm_start(struct qh_vm *vm, const char *name, bool paused, const char *uri);

/* QMP command; failures are reported. */
int vm_cmd(struct qh_vm *vm, const char *cmd, json_t *args, json_t **ret);

/* Run status is `want` now. */
int expect_status(struct qh_vm *vm, const char *want);

/* The guest's first counter moves. */
int expect_guest_running(struct qh_vm *vm);

/* QMP event `name` arrives within timeout_ms. */
int wait_event(struct qh_vm *vm, const char *name, int timeout_ms);

int test_greeting(void);
int test_errors(void);
int test_not_qmp(void);
int test_migrate(void);
int test_migrate_fail(void);

#endif
