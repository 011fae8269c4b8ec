/* SPDX-License-Identifier: MIT */
#include "th_res.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileutil.h"
#include "th_check.h"

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int count_proc(pid_t pid, const char *what)
{
	char path[64];

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	else
		snprintf(path, sizeof(path), "/proc/self/%s", what);
	return count_dir(path);
}

int th_count_fds(pid_t pid)
{
	return count_proc(pid, "fd");
}

int th_count_threads(pid_t pid)
{
	return count_proc(pid, "task");
}

void th_res_take(struct th_res *r, pid_t pid)
{
	r->fds = th_count_fds(pid);
	r->threads = th_count_threads(pid);
}

bool th_res_check(const struct th_res *base, pid_t pid, const char *what)
{
	struct th_res now;
	bool ok;

	th_res_take(&now, pid);
	ok = TH_CHECK_INT(now.fds, ==, base->fds, "%s: open fds of %s back at the baseline", what,
			  pid ? "the peer" : "this process");
	return TH_CHECK_INT(now.threads, ==, base->threads,
			    "%s: threads of %s back at the baseline", what,
			    pid ? "the peer" : "this process") &&
	       ok;
}

int th_rdma_res_count(const char *kind, pid_t pid)
{
	char cmd[64], line[512], tag[32];
	FILE *f;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "rdma res show %s 2>/dev/null", kind);
	snprintf(tag, sizeof(tag), " pid %d ", (int)pid);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "link ", 5) && strncmp(line, "dev ", 4))
			continue;
		if (pid ? strstr(line, tag) != NULL : strstr(line, " pid ") != NULL)
			n++;
	}
	if (pclose(f) != 0)
		return -1;
	return n;
}

void th_rdma_res_take(struct th_rdma_res *r, pid_t pid)
{
	r->mr = th_rdma_res_count("mr", pid);
	r->qp = th_rdma_res_count("qp", pid);
}

bool th_rdma_res_check(const struct th_rdma_res *base, pid_t pid, const char *what)
{
	const char *whose = pid ? "this process's" : "system-wide";
	struct th_rdma_res now;
	bool ok;

	th_rdma_res_take(&now, pid);
	if (now.mr < 0 || now.qp < 0 || base->mr < 0 || base->qp < 0) {
		th_note("note: %s: `rdma res show` unavailable, MR/QP counts not checked", what);
		return true;
	}
	ok = TH_CHECK_INT(now.mr, ==, base->mr, "%s: %s MRs back at the baseline", what, whose);
	return TH_CHECK_INT(now.qp, ==, base->qp, "%s: %s QPs back at the baseline", what, whose) &&
	       ok;
}

/* Field 39 of /proc/.../stat: the CPU the task last ran on. */
static int last_cpu(const char *stat)
{
	const char *p = strrchr(stat, ')');
	int field = 2;

	if (!p)
		return -1;
	for (p++; *p && field < 39; p++)
		if (*p == ' ')
			field++;
	return field == 39 ? atoi(p) : -1;
}

/* The value of "Key:" in a /proc status file, into out. */
static int status_field(const char *path, const char *key, char *out, size_t len)
{
	char line[512];
	size_t klen = strlen(key);
	FILE *f = fopen(path, "r");
	int ret = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) || line[klen] != ':')
			continue;
		snprintf(out, len, "%s", line + klen + 1 + strspn(line + klen + 1, " \t"));
		out[strcspn(out, "\n")] = '\0';
		ret = 0;
		break;
	}
	fclose(f);
	return ret;
}

int th_task_find(const char *comm, struct th_task *t)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int ret = -ENOENT;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		char path[300], name[64], stat[1024];

		if (e->d_name[0] == '.' ||
		    rdmig_read_linef(name, sizeof(name), "/proc/self/task/%s/comm", e->d_name) ||
		    strcmp(name, comm))
			continue;
		memset(t, 0, sizeof(*t));
		t->tid = atoi(e->d_name);
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		if (status_field(path, "Cpus_allowed_list", t->cpus, sizeof(t->cpus)))
			continue;
		t->last_cpu =
		    rdmig_read_linef(stat, sizeof(stat), "/proc/self/task/%s/stat", e->d_name)
			? -1
			: last_cpu(stat);
		ret = 0;
		break;
	}
	closedir(d);
	return ret;
}
