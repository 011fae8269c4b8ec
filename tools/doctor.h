/* SPDX-License-Identifier: MIT */
/*
 * rdmig doctor: what this host offers a migration, finding by finding, each
 * [ok], [warn] or [fail] with the fix where one applies; --json for scripts.
 *
 * Every check records its facts into one JSON document as it goes (its
 * section); the text report is printed alongside, the JSON one at the end.
 * Checks never stop the report: a check that cannot run becomes a finding.
 *
 *   tools/cmd_doctor.c   the report itself: sections, findings, the command
 *   tools/doctor_env.c   environment (kernel, VM or not) and QEMU
 *   tools/doctor_rdma.c  RDMA devices, ports and GIDs
 *   tools/doctor_mem.c   memlock, NUMA, huge pages, dirty-page tracking
 */
#ifndef RDMIG_TOOLS_DOCTOR_H
#define RDMIG_TOOLS_DOCTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"

enum level { LV_OK, LV_WARN, LV_FAIL };

struct doctor {
	bool json;
	uint64_t guest_size;
	int count[3];
	json_t *root;	  /* the whole report */
	json_t *findings; /* array of {section, level, what, fix} */
	json_t *sec;	  /* the current section's facts */
	const char *sec_key;
	int rdma_devices; /* usable through libibverbs */
};

/* Start section `key` (JSON) titled `title` (text). */
void section(struct doctor *d, const char *key, const char *title);
/* One finding of the current section; `fix` may be NULL. */
void finding(struct doctor *d, enum level lv, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An indented fact under the last finding; text report only (JSON has the data). */
void detail(struct doctor *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Small file helpers. */
bool path_exists(const char *path);
int count_glob(const char *pattern);
/* "Key:   value kB" from a /proc file such as /proc/meminfo; -1 if absent. */
long long proc_field(const char *file, const char *key);

void check_environment(struct doctor *d);
void check_qemu(struct doctor *d);
void check_rdma(struct doctor *d);
/* After check_rdma(): the limit's severity depends on having a device. */
void check_memlock(struct doctor *d);
/* After check_rdma(): reports the node of the devices it found. */
void check_numa(struct doctor *d);
void check_hugepages(struct doctor *d);
void check_dirty(struct doctor *d);

#endif
