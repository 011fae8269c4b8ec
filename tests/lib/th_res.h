/* SPDX-License-Identifier: MIT */
/*
 * Resource baselines: after a failure, a cancel or a migration, a process
 * must hold what it held before. Counted from /proc (open file descriptors,
 * threads) and, for rdma, from `rdma res show` (memory regions and queue
 * pairs, of one process or of every process).
 */
#ifndef RDMIG_TEST_TH_RES_H
#define RDMIG_TEST_TH_RES_H

#include <stdbool.h>
#include <sys/types.h>

/* Entries of /proc/PID/fd and /proc/PID/task (pid 0: this process); -1 if unreadable. */
int th_count_fds(pid_t pid);
int th_count_threads(pid_t pid);

struct th_res {
	int fds, threads;
};

void th_res_take(struct th_res *r, pid_t pid);
/* Checks (th_check.h) that process `pid` is back at `base`; `what` names the moment. */
bool th_res_check(const struct th_res *base, pid_t pid, const char *what);

/*
 * Entries of `rdma res show KIND` (KIND: mr, qp) of process `pid`, or of
 * every process (pid 0); -1 when the tool does not answer. Only user objects
 * count (the kernel's own QP0/QP1 have no pid).
 */
int th_rdma_res_count(const char *kind, pid_t pid);

struct th_rdma_res {
	int mr, qp; /* -1: unknown */
};

void th_rdma_res_take(struct th_rdma_res *r, pid_t pid);
/*
 * Checks that MRs and QPs of `pid` (0: all processes) are at `base`; a note,
 * not a failure, where `rdma res show` does not answer.
 */
bool th_rdma_res_check(const struct th_rdma_res *base, pid_t pid, const char *what);

/* A thread of this process found by its name (comm): where it may and did run. */
struct th_task {
	int tid;
	char cpus[256]; /* Cpus_allowed_list */
	int last_cpu;	/* field 39 of its stat: the CPU it last ran on, -1 unknown */
};

/* 0, or -ENOENT when no thread has that name. */
int th_task_find(const char *comm, struct th_task *t);

#endif
