/* SPDX-License-Identifier: MIT */
/*
 * rdma_memlock: with RLIMIT_MEMLOCK lowered to 64 KiB, registering 16 MiB on
 * an rdma connection must fail with -ENOMEM and a message that names the
 * amount needed (16384 KiB) and `ulimit -l`, and must register nothing.
 *
 * Two processes (fork before any RDMA state): the parent accepts and waits;
 * the child connects with the normal limit, lowers its own limit, and runs
 * the checks. Exit: 0 pass, 1 fail, 77 no RDMA device.
 *
 *   rdma_memlock [--host ADDR]
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rdmig/transport.h"
#include "log.h"
#include "rdma_test_util.h"

#define WAIT_MS	 60000
#define LIMIT	 (64u * 1024)
#define BIG	 (16u * 1024 * 1024)
#define SMALL	 (16u * 1024)
#define MSG_DONE 0x201

static char g_host[256];
static const char *g_role = "main";

static bool check(bool ok, const char *what)
{
	printf("[%s] %s: %s\n", g_role, ok ? "ok" : "FAIL", what);
	return ok;
}

static struct rdmig_xport_cfg base_cfg(uint16_t port)
{
	struct rdmig_xport_cfg cfg = {
	    .backend = RDMIG_BACKEND_RDMA,
	    .host = g_host,
	    .port = port,
	    .channels = 1,
	    .connect_timeout_ms = 20000,
	};
	return cfg;
}

/* One 16 MiB registration under the low limit; `flags` as the engine would pass. */
static bool big_reg_fails(struct rdmig_conn *c, void *mem, unsigned flags)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_xport_stats before, after;
	const char *msg;
	uint32_t id = 0;
	bool ok = true;
	int ret;

	rdmig_xport_stats(c, &before);
	ret = rdmig_reg(c, "ram", mem, BIG, flags, &id, &err);
	msg = rdmig_err_str(&err);
	printf("[%s] rdmig_reg(16 MiB, flags 0x%x) = %d: %s\n", g_role, flags, ret, msg);
	ok &= check(ret == -ENOMEM, "16 MiB registration fails with -ENOMEM");
	ok &= check(strstr(msg, "ulimit -l") != NULL, "the message names 'ulimit -l'");
	ok &= check(strstr(msg, "16384") != NULL, "the message names the 16384 KiB needed");
	rdmig_xport_stats(c, &after);
	ok &= check(after.regs_total == before.regs_total &&
			after.regions_remote == before.regions_remote,
		    "nothing was registered");
	if (!ret)
		rdmig_revoke(c);
	return ok;
}

static int client(uint16_t port)
{
	struct rdmig_xport_cfg cfg = base_cfg(port);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct rlimit rl = {.rlim_cur = LIMIT, .rlim_max = LIMIT};
	void *mem;
	bool ok = true;
	uint32_t id;
	int ret;

	g_role = "client";
	mem = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(mem, 0x5a, BIG);
	/* Connect with the normal limit: the connection's own buffers are pinned too. */
	if (rdmig_connect(&cfg, &c, &err)) {
		printf("[client] FAIL: rdmig_connect: %s\n", rdmig_err_str(&err));
		return 1;
	}
	if (setrlimit(RLIMIT_MEMLOCK, &rl)) {
		perror("setrlimit(RLIMIT_MEMLOCK)");
		rdmig_conn_destroy(c);
		return 1;
	}
	printf("[client] RLIMIT_MEMLOCK lowered to %u bytes; rdmig_memlock_limit() = %llu\n", LIMIT,
	       (unsigned long long)rdmig_memlock_limit());
	ok &= check(rdmig_memlock_limit() == LIMIT, "rdmig_memlock_limit() sees the new limit");
	ok &= big_reg_fails(c, mem, 0);
	ok &= big_reg_fails(c, mem, RDMIG_REG_REMOTE_WRITE);
	ok &= check(!rdmig_conn_failed(c, NULL), "the connection is still usable");

	/* Control: what fits under the limit still registers. */
	rdmig_err_clear(&err);
	ret = rdmig_reg(c, "small", mem, SMALL, 0, &id, &err);
	if (geteuid() == 0)
		ok &= check(ret == 0, "16 KiB registration under the 64 KiB limit succeeds");
	else
		printf("[client] note: 16 KiB registration as non-root: %s (the kernel also "
		       "counts the connection's own pinned buffers)\n",
		       ret ? rdmig_err_str(&err) : "ok");
	rdmig_revoke(c);

	rdmig_err_clear(&err);
	if (rdmig_ctrl_send(c, MSG_DONE, NULL, 0, &err)) {
		printf("[client] FAIL: rdmig_ctrl_send(done): %s\n", rdmig_err_str(&err));
		ok = false;
	}
	rdmig_conn_destroy(c);
	munmap(mem, BIG);
	return ok ? 0 : 1;
}

static int server(struct rdmig_listener *l)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint16_t type = 0;
	uint8_t buf[16];
	size_t len = 0;
	int status = 1;

	if (rdmig_accept(l, WAIT_MS, &c, &err)) {
		printf("[server] FAIL: rdmig_accept: %s\n", rdmig_err_str(&err));
		return 1;
	}
	if (rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &err))
		printf("[server] FAIL: rdmig_ctrl_recv(done): %s\n", rdmig_err_str(&err));
	else if (type != MSG_DONE)
		printf("[server] FAIL: expected DONE, got type 0x%x\n", type);
	else
		status = 0;
	rdmig_conn_destroy(c);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {.name = "host", .has_arg = required_argument, .val = 'H'},
	    {.name = "help", .has_arg = no_argument, .val = 'h'},
	    {0},
	};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_listener *l = NULL;
	struct rdmig_xport_cfg cfg;
	const char *host = NULL;
	int opt, ret, status, wst = 0, pfd[2];
	uint16_t port;
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	rdmig_log_init();
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'H') {
			host = optarg;
			continue;
		}
		fprintf(stderr, "usage: rdma_memlock [--host ADDR]\n");
		return opt == 'h' ? 0 : 2;
	}
	ret = rdma_test_require_device("rdma_memlock");
	if (ret)
		return ret;
	rdma_test_host(host, g_host, sizeof(g_host));

	if (pipe(pfd)) {
		perror("pipe");
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		close(pfd[1]);
		if (read(pfd[0], &port, sizeof(port)) != sizeof(port) || !port)
			_exit(1);
		_exit(client(port));
	}
	close(pfd[0]);
	g_role = "server";
	cfg = base_cfg(0);
	if (rdmig_listen(&cfg, &l, &err)) {
		printf("[server] FAIL: rdmig_listen: %s\n", rdmig_err_str(&err));
		close(pfd[1]);
		waitpid(pid, &wst, 0);
		return 1;
	}
	port = rdmig_listener_port(l);
	if (write(pfd[1], &port, sizeof(port)) != sizeof(port))
		perror("write");
	close(pfd[1]);
	status = server(l);
	rdmig_listener_destroy(l);
	if (waitpid(pid, &wst, 0) < 0 || !WIFEXITED(wst) || WEXITSTATUS(wst)) {
		printf("[main] FAIL: client exited with status 0x%x\n", wst);
		status = 1;
	}
	printf("[main] %s: rdma_memlock\n", status ? "FAIL" : "PASS");
	return status;
}
