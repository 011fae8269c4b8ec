/* SPDX-License-Identifier: MIT */
/* rdmig doctor: the environment (kernel, virtual machine or not, rdmig's test VM) and QEMU. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "doctor.h"
#include "fileutil.h"

extern char **environ;

#define QEMU_BIN "qemu-system-x86_64"
/* Generous: under TCG in the test VM, QEMU loads ~100 libraries over 9p. */
#define SPAWN_TIMEOUT_MS 30000

/* ---- environment ----------------------------------------------------- */

static bool cpu_has_hypervisor_flag(void)
{
	char line[8192], *tok, *save;
	bool found = false;
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		for (tok =
			 strtok_r(strchr(line, ':') ? strchr(line, ':') + 1 : line, " \t\n", &save);
		     tok; tok = strtok_r(NULL, " \t\n", &save))
			if (!strcmp(tok, "hypervisor"))
				found = true;
		break; /* the first CPU speaks for all */
	}
	fclose(f);
	return found;
}

struct mounts_info {
	char root_fstype[64];
	bool has_9p;
};

static void scan_mounts(struct mounts_info *m)
{
	char dev[512], mnt[512], type[64];
	FILE *f = fopen("/proc/mounts", "re");
	int c;

	memset(m, 0, sizeof(*m));
	if (!f)
		return;
	while (fscanf(f, "%511s %511s %63s", dev, mnt, type) == 3) {
		if (!strcmp(mnt, "/"))
			snprintf(m->root_fstype, sizeof(m->root_fstype), "%s",
				 type); /* last wins */
		if (!strcmp(type, "9p"))
			m->has_9p = true;
		while ((c = fgetc(f)) != EOF && c != '\n')
			;
	}
	fclose(f);
}

void check_environment(struct doctor *d)
{
	char vendor[128], product[128];
	static const char *const vm_env[] = {"RDMIG_IN_RXE_VM", "RDMIG_RXE_VM"};
	const char *env_name = NULL;
	bool hv, have_vendor, have_product, env_vm, root_overlay, test_vm;
	struct mounts_info m;
	struct utsname u;

	section(d, "environment", "environment");
	if (uname(&u) == 0) {
		cli_jset(d->sec, "kernel", cli_jstr(u.release));
		cli_jset(d->sec, "machine", cli_jstr(u.machine));
		finding(d, LV_OK, NULL, "kernel %s (%s)", u.release, u.machine);
	} else {
		finding(d, LV_WARN, NULL, "uname: %s", strerror(errno));
	}

	hv = cpu_has_hypervisor_flag();
	have_vendor = rdmig_read_line("/sys/class/dmi/id/sys_vendor", vendor, sizeof(vendor)) == 0;
	have_product =
	    rdmig_read_line("/sys/class/dmi/id/product_name", product, sizeof(product)) == 0;
	cli_jset(d->sec, "virtualized", json_boolean(hv));
	cli_jset(d->sec, "sys_vendor", have_vendor ? cli_jstr(vendor) : NULL);
	cli_jset(d->sec, "product_name", have_product ? cli_jstr(product) : NULL);
	finding(d, LV_OK, NULL, "%s (cpuid hypervisor bit %s; DMI vendor %s, product %s)",
		hv ? "virtual machine" : "bare metal", hv ? "set" : "clear",
		have_vendor ? vendor : "unknown", have_product ? product : "unknown");

	/*
	 * soft-roce-setup/rxe-vm: the host's root read-only over 9p under a tmpfs
	 * overlay, and a marker in the environment (RDMIG_IN_RXE_VM today; the
	 * shorter RDMIG_RXE_VM is accepted too).
	 */
	scan_mounts(&m);
	for (size_t i = 0; i < sizeof(vm_env) / sizeof(vm_env[0]) && !env_name; i++)
		if (getenv(vm_env[i]) && !strcmp(getenv(vm_env[i]), "1"))
			env_name = vm_env[i];
	env_vm = env_name != NULL;
	root_overlay = !strcmp(m.root_fstype, "overlay");
	test_vm = env_vm || (root_overlay && m.has_9p);
	cli_jset(d->sec, "rdmig_test_vm", json_boolean(test_vm));
	cli_jset(d->sec, "root_fstype", cli_jstr(m.root_fstype[0] ? m.root_fstype : NULL));
	cli_jset(d->sec, "has_9p", json_boolean(m.has_9p));
	cli_jset(d->sec, "test_vm_env", cli_jstr(env_name));
	if (test_vm)
		finding(d, LV_OK, NULL, "inside rdmig's SoftRoCE test VM (%s%sroot fs %s%s)",
			env_vm ? env_name : "", env_vm ? "=1, " : "",
			m.root_fstype[0] ? m.root_fstype : "unknown",
			m.has_9p ? ", 9p mounted" : "");
	else
		finding(d, LV_OK, NULL, "host, not rdmig's SoftRoCE test VM (root fs %s%s)",
			m.root_fstype[0] ? m.root_fstype : "unknown",
			root_overlay ? ", an overlay without 9p: a container?" : "");
}

/* ---- QEMU ------------------------------------------------------------ */

/* Full path of `prog` in $PATH, or -1. */
static int find_in_path(const char *prog, char *out, size_t len)
{
	const char *path = getenv("PATH"), *p, *colon;
	size_t n;

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (p = path;; p = colon + 1) {
		colon = strchr(p, ':');
		n = colon ? (size_t)(colon - p) : strlen(p);
		/* An empty element is the current directory. */
		if ((size_t)snprintf(out, len, "%.*s/%s", (int)n, n ? p : ".", prog) < len &&
		    access(out, X_OK) == 0)
			return 0;
		if (!colon)
			return -1;
	}
}

/*
 * Run `path arg` with stdin and stderr on /dev/null and return the first
 * line of its stdout. Killed after SPAWN_TIMEOUT_MS.
 */
static int first_line_of(const char *path, const char *arg, char *out, size_t len)
{
	char *const argv[] = {(char *)path, (char *)arg, NULL};
	posix_spawn_file_actions_t fa;
	size_t got = 0;
	int pfd[2], ret, status;
	struct timespec t0, t;
	pid_t pid;
	char *nl;

	out[0] = '\0';
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	ret = posix_spawn(&pid, path, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (ret) {
		close(pfd[0]);
		return -ret;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got + 1 < len) {
		struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
		long left;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = SPAWN_TIMEOUT_MS -
		       ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&pf, 1, (int)left) == 0) {
			kill(pid, SIGKILL);
			ret = -ETIMEDOUT;
			break;
		}
		n = read(pfd[0], out + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		out[got] = '\0';
		if (strchr(out, '\n'))
			break;
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out[got] = '\0';
	nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	if (!ret && !out[0])
		ret = -EIO;
	return ret;
}

void check_qemu(struct doctor *d)
{
	char path[PATH_MAX], ver[256];
	bool kvm = path_exists("/dev/kvm");
	int ret;

	section(d, "qemu", "QEMU");
	cli_jset(d->sec, "kvm", json_boolean(kvm));
	if (find_in_path(QEMU_BIN, path, sizeof(path)) < 0) {
		cli_jset(d->sec, "path", NULL);
		cli_jset(d->sec, "version", NULL);
		finding(d, LV_WARN, "apt-get install qemu-system-x86",
			"%s not found in PATH: the QEMU plug-in and QEMU tests need it", QEMU_BIN);
	} else {
		ret = first_line_of(path, "--version", ver, sizeof(ver));
		cli_jset(d->sec, "path", cli_jstr(path));
		cli_jset(d->sec, "version", ret ? NULL : cli_jstr(ver));
		if (ret == -ETIMEDOUT)
			finding(d, LV_WARN, NULL, "%s: no answer to --version within %d s", path,
				SPAWN_TIMEOUT_MS / 1000);
		else if (ret)
			finding(d, LV_WARN, NULL, "%s: '%s --version' failed: %s", path, QEMU_BIN,
				strerror(-ret));
		else
			finding(d, LV_OK, NULL, "%s: %s", path, ver);
	}
	detail(d, "/dev/kvm %s (informational: QEMU falls back to TCG without it)",
	       kvm ? "present" : "absent");
}
