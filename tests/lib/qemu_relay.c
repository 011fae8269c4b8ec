/* SPDX-License-Identifier: MIT */
/* `rdmig qemu dst` and `rdmig qemu migrate` as child processes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "qemu_harness.h"

#define LISTEN_MS 15000 /* the destination relay says "listening PORT" */
#define MAX_ARGS  40

int qh_relay_dst_start(struct qh_proc *p, const char *name, const struct qh_relay *r,
		       const struct qh_vm *dst, bool with_qmp, unsigned *port,
		       struct rdmig_err *err)
{
	char inc[QH_PATH + 8], listen[300];
	const char *argv[16];
	int64_t deadline;
	int n = 0, ret;

	*port = 0;
	snprintf(inc, sizeof(inc), "unix:%s", dst->incoming);
	snprintf(listen, sizeof(listen), "%s:0", r->host);
	argv[n++] = r->rdmig;
	argv[n++] = "qemu";
	argv[n++] = "dst";
	argv[n++] = "--listen";
	argv[n++] = listen;
	argv[n++] = "--qemu-incoming";
	argv[n++] = inc;
	argv[n++] = "--backend";
	argv[n++] = r->backend;
	if (with_qmp) {
		argv[n++] = "--qmp";
		argv[n++] = dst->qmp;
	}
	argv[n] = NULL;
	ret = qh_spawn(p, name, argv, true, err);
	if (ret)
		return ret;
	/* Its stdout has one machine-readable line, "listening PORT". */
	deadline = rdmig_deadline_ms(LISTEN_MS);
	for (;;) {
		char *out = qh_read_text(p->out);
		bool found = out && sscanf(out, "listening %u", port) == 1 && *port;

		free(out);
		if (found)
			return 0;
		if (qh_exited(p)) {
			qh_show_log(p);
			return rdmig_seterr(err, -ECHILD, "%s exited at start-up (status %d)", name,
					    p->status);
		}
		if (rdmig_ms_left(deadline) == 0) {
			qh_show_log(p);
			return rdmig_seterr(err, -ETIMEDOUT,
					    "%s: no \"listening\" line within %d s", name,
					    LISTEN_MS / 1000);
		}
		rdmig_sleep_ms(20);
	}
}

int qh_relay_migrate_start(struct qh_proc *p, const char *name, const struct qh_relay *r,
			   const char *src_qmp, unsigned port, const char *const *extra,
			   struct rdmig_err *err)
{
	char dst[300];
	const char *argv[MAX_ARGS + 1];
	int n = 0;

	snprintf(dst, sizeof(dst), "%s:%u", r->host, port);
	argv[n++] = r->rdmig;
	argv[n++] = "qemu";
	argv[n++] = "migrate";
	argv[n++] = "--src-qmp";
	argv[n++] = src_qmp;
	argv[n++] = "--dst";
	argv[n++] = dst;
	argv[n++] = "--backend";
	argv[n++] = r->backend;
	argv[n++] = "--json";
	for (; extra && *extra; extra++) {
		if (n == MAX_ARGS)
			return rdmig_seterr(err, -E2BIG, "%s: more than %d arguments", name,
					    MAX_ARGS);
		argv[n++] = *extra;
	}
	argv[n] = NULL;
	return qh_spawn(p, name, argv, true, err);
}
