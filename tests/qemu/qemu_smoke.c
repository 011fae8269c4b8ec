/* SPDX-License-Identifier: MIT */
/*
 * QEMU tier smoke test: drives real qemu-system-x86_64 processes (TCG)
 * through the rdmig QMP client.
 *
 *   greeting        greeting, version, prelaunch -> cont -> running, events,
 *                   a reply larger than one read (query-qmp-schema)
 *   errors          QMP errors come back as "QMP <cmd> failed: <class>: <desc>";
 *                   a reply with a uint64 beyond INT64_MAX still parses
 *   not_qmp         sockets that are not QMP are rejected within the timeout
 *   migrate         QEMU-to-QEMU live migration over unix:, guest memory checked
 *   migrate_fail    migration to a socket nobody listens on fails, the source
 *                   keeps running and can then migrate to a real destination
 *
 * The guest is a 64 KiB firmware image written by this test (-bios): real-mode
 * code that increments byte 0 of each of 128 pages at 0x10000 forever, the
 * same pattern as tests/qemu/guest.S and checked the same way (qh_check_incr).
 *
 * Usage: qemu_smoke [TEST...]
 *   RDMIG_QEMU=/path/to/qemu-system-x86_64   instead of the one on PATH
 *   RDMIG_QEMU_ACCEL=kvm                     instead of tcg
 *   RDMIG_QEMU_STRICT=1                      fail on damaged guest memory even
 *                                            where QEMU's TCG is known to lose
 *                                            dirty pages (before 9.0)
 *   RDMIG_KEEP_TMP=1                         keep the temporary directory and logs
 * Exit: 0 pass, 1 fail, 77 QEMU not installed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "qemu_smoke.h"

int g_ver[3];
bool g_lossy_tcg;

static char g_bios[QH_PATH];
static const char *g_accel; /* "tcg" unless RDMIG_QEMU_ACCEL says otherwise */

/*
 * The firmware. The reset vector (file offset 0xfff0, physical 0xfffffff0)
 * jumps to F000:0000, the start of the file as mapped below 1 MiB:
 *
 *   0: fa              cli
 *   1: b8 00 10        mov  ax, 0x1000          ; first page, 0x10000
 *   4: 8e c0           mov  es, ax
 *   6: 26 fe 06 00 00  inc  byte [es:0]
 *  11: 05 00 01        add  ax, 0x100           ; next 4 KiB page
 *  14: 3d 00 90        cmp  ax, 0x9000          ; 128 pages
 *  17: 72 f1           jb   4
 *  19: eb ec           jmp  1
 */
static int write_bios(struct rdmig_err *err)
{
	static const unsigned char code[] = {0xfa, 0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x26,
					     0xfe, 0x06, 0x00, 0x00, 0x05, 0x00, 0x01,
					     0x3d, 0x00, 0x90, 0x72, 0xf1, 0xeb, 0xec};
	static const unsigned char reset[] = {0xea, 0x00, 0x00, 0x00, 0xf0};
	static unsigned char img[65536];
	FILE *f;

	memset(img, 0xf4, sizeof(img)); /* hlt */
	memcpy(img, code, sizeof(code));
	memcpy(img + 0xfff0, reset, sizeof(reset));
	snprintf(g_bios, sizeof(g_bios), "%s/guest.bin", qh_tmp());
	f = fopen(g_bios, "wb");
	if (!f || fwrite(img, sizeof(img), 1, f) != 1 || fclose(f))
		return rdmig_seterr_errno(err, rdmig_neg_errno(), "write %s", g_bios);
	return 0;
}

/* ---- helpers of every test ------------------------------------------------- */

int vm_start(struct qh_vm *vm, const char *name, bool paused, const char *uri)
{
	struct qh_vm_cfg cfg = {.name = name,
				.accel = g_accel,
				.mem_mib = 64,
				.bios = g_bios,
				.paused = paused,
				.incoming = uri ? QH_INCOMING_URI : QH_SOURCE,
				.uri = uri};
	struct rdmig_err err = RDMIG_ERR_INIT;
	double t0 = rdmig_now_s();

	if (qh_vm_start(vm, &cfg, &err))
		return FAIL("%s", err.msg);
	printf("  started %s (pid %d, %.0f ms)\n", name, (int)vm->p.pid,
	       (rdmig_now_s() - t0) * 1000);
	return 0;
}

int vm_cmd(struct qh_vm *vm, const char *cmd, json_t *args, json_t **ret)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_cmd(vm, cmd, args, ret, &err))
		return FAIL("%s", err.msg);
	return 0;
}

int expect_status(struct qh_vm *vm, const char *want)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_expect_status(vm, want, &err))
		return FAIL("%s", err.msg);
	printf("  %s: status %s\n", vm->p.name, want);
	return 0;
}

int expect_guest_running(struct qh_vm *vm)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint8_t seen[2];

	if (qh_guest_runs(vm, GUEST_BASE, seen, &err))
		return FAIL("%s", err.msg);
	printf("  %s: guest runs (counter %u -> %u)\n", vm->p.name, seen[0], seen[1]);
	return 0;
}

int wait_event(struct qh_vm *vm, const char *name, int timeout_ms)
{
	struct rdmig_err err = RDMIG_ERR_INIT;

	if (qh_wait_event(vm, name, timeout_ms, &err))
		return FAIL("%s", err.msg);
	printf("  %s: event %s\n", vm->p.name, name);
	return 0;
}

/* ---- main ---------------------------------------------------------------- */

static const struct qh_test tests[] = {
    {"greeting", test_greeting},	 {"errors", test_errors},
    {"not_qmp", test_not_qmp},		 {"migrate", test_migrate},
    {"migrate_fail", test_migrate_fail},
};

int main(int argc, char **argv)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	rdmig_log_init();
	rc = qh_need_qemu("qemu_smoke");
	if (rc)
		return rc;
	if (qh_setup("rdmig-qemu", &err) || write_bios(&err) || qh_qemu_version(g_ver, &err))
		return FAIL("%s", err.msg), 1;
	g_accel = getenv("RDMIG_QEMU_ACCEL");
	if (!g_accel || !*g_accel)
		g_accel = "tcg";
	printf("qemu: %s, version %d.%d.%d, -accel %s\n", qh_qemu(), g_ver[0], g_ver[1], g_ver[2],
	       g_accel);
	g_lossy_tcg = qh_tcg_lossy(g_accel, g_ver);
	if (g_lossy_tcg)
		printf("note: TCG migration of QEMU < 9.0 may lose dirty pages; damaged guest "
		       "memory is a warning (RDMIG_QEMU_STRICT=1 or RDMIG_QEMU_ACCEL=kvm for a "
		       "strict check)\n");
	return qh_run_tests(tests, sizeof(tests) / sizeof(tests[0]), argc, argv, 1);
}
