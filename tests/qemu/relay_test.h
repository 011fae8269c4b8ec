/* SPDX-License-Identifier: MIT */
/*
 * relay_test's parts (relay_test.c has the overview and the list of tests):
 *   relay_test.c       globals, VMs, relays and migrations, the basic tests, main
 *   relay_test_auth.c  authentication, the source relay's socket, control sessions
 *   relay_test_end.c   where the guest runs when the end goes wrong, post-copy
 */
#ifndef RDMIG_RELAY_TEST_H
#define RDMIG_RELAY_TEST_H

#include <stdbool.h>

#include <jansson.h>

#include "qemu_harness.h"

#define FAIL QH_FAIL

/* The run's settings (relay_test.c, from the environment). */
extern char g_disk[QH_PATH];
extern const char *g_accel;
extern bool g_lossy;
extern unsigned g_len;
extern struct qh_relay g_relay;
extern char g_key[QH_PATH], g_key_bad[QH_PATH];

/* Fast pre-copy: no bandwidth cap, a generous downtime. */
extern const char *const fast[];

/* ---- VMs, relays and migrations (relay_test.c) */
struct qh_vm_cfg guest_cfg(const char *name, enum qh_incoming incoming);
int vm_start(struct qh_vm *vm, const char *name, enum qh_incoming incoming);
int relay_start(struct qh_proc *p, const char *name, struct qh_vm *vm, bool with_qmp,
		unsigned *port);
int expect_guest_running(struct qh_vm *vm);
int expect_status(struct qh_vm *vm, const char *want);
int check_integrity(struct qh_vm *vm);
int migrate_spawn(struct qh_proc *p, const char *qmp, unsigned port, const char *const *extra);
int migrate_wait(struct qh_proc *p, int timeout_ms);
int migrate_run(struct qh_vm *src, struct qh_vm *dst, unsigned port, const char *const *extra,
		unsigned streams, json_t **summary);
int migrate_ok(struct qh_vm *src, struct qh_vm *dst, unsigned port, const char *const *extra,
	       unsigned streams);
int ended_with(struct qh_proc *m, int status, const char *want);
int failed_with(struct qh_proc *m, const char *want);
int migrate_fails_as(const struct qh_relay *r, const char *qmp, unsigned port,
		     const char *const *extra, const char *want);
json_t *summary_of(struct qh_proc *m);
int expect_jstr(json_t *j, const char *key, const char *want);
int log_mentions(struct qh_proc *p, const char *want);
int log_count(struct qh_proc *p, const char *a, const char *b);
int expect_log_count(struct qh_proc *p, const char *a, const char *b, int want);
int relay_start_verbose(struct qh_proc *p, const char *name, struct qh_vm *vm, unsigned *port);
struct qh_relay keyed(const char *key_file);

/* ---- relay_test.c */
int pair_start(struct qh_vm *src, struct qh_vm *dst, enum qh_incoming incoming,
	       struct qh_proc *relay, unsigned *port);

/* ---- relay_test_auth.c */
int make_key(const char *path);
int test_auth_sink(void);
int test_auth_qemu(void);
int test_fallback(void);
int test_set_break(void);
int test_socket_perms(void);
int test_idle_control(void);

/* ---- relay_test_end.c */
int test_dst_fails(void);
int test_unknown(void);
int test_postcopy(void);
int test_postcopy_recover(void);
int test_postcopy_lost(void);

#endif
