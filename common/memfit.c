/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit.h"
#include "units.h"

/* One unsigned number from a file; false if unreadable or "max". */
static bool read_u64(const char *path, uint64_t *out)
{
	FILE *f = fopen(path, "re");
	char buf[64];
	bool ok = false;

	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f) && strncmp(buf, "max", 3)) {
		char *end;

		errno = 0;
		*out = strtoull(buf, &end, 10);
		ok = !errno && end != buf;
	}
	fclose(f);
	return ok;
}

static bool mem_available(uint64_t *out)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	unsigned long long kib;
	bool ok = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
			*out = (uint64_t)kib << 10;
			ok = true;
			break;
		}
	fclose(f);
	return ok;
}

/*
 * Mount point of the cgroup v2 hierarchy, or of the v1 one
 * that carries the memory controller. From /proc/self/mountinfo, whose
 * fields after " - " are: fstype source superopts.
 */
static bool cgroup_mount(bool v2, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[1024];
	bool ok = false;

	if (!f)
		return false;
	while (!ok && fgets(line, sizeof(line), f)) {
		char mnt[512], fstype[64], opts[512];
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %*s %511s", mnt) != 1 ||
		    sscanf(sep + 3, "%63s %*s %511s", fstype, opts) != 2)
			continue;
		if (v2 ? !strcmp(fstype, "cgroup2")
		       : !strcmp(fstype, "cgroup") && strstr(opts, "memory")) {
			snprintf(out, len, "%s", mnt);
			ok = true;
		}
	}
	fclose(f);
	return ok;
}

/* This process's cgroup path in the v2 ("0::") or v1 memory hierarchy. */
static bool cgroup_path(bool v2, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[1024];
	bool ok = false;

	if (!f)
		return false;
	while (!ok && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		/* "ID:CONTROLLERS:PATH": split into three strings. */
		*c1 = 0;
		*c2 = 0;
		c2[strcspn(c2 + 1, "\n") + 1] = 0;
		if (v2 ? !strcmp(line, "0") && c1[1] == 0 : strstr(c1 + 1, "memory") != NULL) {
			snprintf(out, len, "%s", c2 + 1);
			ok = true;
		}
	}
	fclose(f);
	return ok;
}

/*
 * Room left under the tightest cgroup limit, walking from this process's
 * cgroup up to the root (a parent's limit binds its children too).
 */
static bool cgroup_room(bool v2, uint64_t *room, char *where, size_t wlen)
{
	const char *limit_f = v2 ? "memory.max" : "memory.limit_in_bytes";
	const char *usage_f = v2 ? "memory.current" : "memory.usage_in_bytes";
	char mnt[512], path[1024], dir[1600], f[1700];
	bool found = false;

	if (!cgroup_mount(v2, mnt, sizeof(mnt)) || !cgroup_path(v2, path, sizeof(path)))
		return false;
	for (;;) {
		uint64_t lim, used;

		snprintf(dir, sizeof(dir), "%s%s", mnt, path);
		snprintf(f, sizeof(f), "%s/%s", dir, limit_f);
		/* v1 says "no limit" with a huge number: anything above 2^60. */
		if (read_u64(f, &lim) && lim < (1ull << 60)) {
			snprintf(f, sizeof(f), "%s/%s", dir, usage_f);
			if (!read_u64(f, &used))
				used = 0;
			if (!found || (used < lim ? lim - used : 0) < *room) {
				*room = used < lim ? lim - used : 0;
				snprintf(where, wlen,
					 "%s/%s (%" PRIu64 " MiB, %" PRIu64 " MiB used)", dir,
					 limit_f, lim >> 20, used >> 20);
				found = true;
			}
		}
		char *slash = strrchr(path, '/');

		if (!slash || !path[1])
			break;
		slash[slash == path ? 1 : 0] = 0;
	}
	return found;
}

int rdmig_mem_fit(uint64_t bytes, struct rdmig_err *err)
{
	char need[32], have[32], where[1800];
	uint64_t room = 0;

	if (mem_available(&room) && bytes > room)
		return rdmig_seterr(err, -ENOMEM,
				    "the guest needs %s of RAM here but only %s is available "
				    "(MemAvailable in /proc/meminfo): free memory or use a "
				    "bigger host",
				    rdmig_fmt_size(bytes, need, sizeof(need)),
				    rdmig_fmt_size(room, have, sizeof(have)));
	for (int v2 = 1; v2 >= 0; v2--)
		if (cgroup_room(v2, &room, where, sizeof(where)) && bytes > room)
			return rdmig_seterr(err, -ENOMEM,
					    "the guest needs %s of RAM here but this process's "
					    "cgroup has only %s left: %s; raise the limit",
					    rdmig_fmt_size(bytes, need, sizeof(need)),
					    rdmig_fmt_size(room, have, sizeof(have)), where);
	return 0;
}
