/* SPDX-License-Identifier: MIT */
/*
 * rdma_memlock: with RLIMIT_MEMLOCK lowered to 64 KiB, registering 16 MiB on
 * an rdma connection must fail with -ENOMEM and a message that names the
 * amount needed (16384 KiB) and `ulimit -l`, and must register nothing.
 *
 * Two processes: this one accepts and waits; the client, this program again
 * (exec'd: tests/lib/th_peer.h), connects with the normal limit, lowers its
 * own limit, and runs the checks. Exit: 0 pass, 1 fail, 77 no RDMA device.
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
#include <unistd.h>

#include "log.h"
#include "rdmig/transport.h"
#include "th_check.h"
#include "th_pair.h"
#include "th_rdma.h"

#define WAIT_MS	 60000
#define LIMIT	 (64u * 1024)
#define BIG	 (16u * 1024 * 1024)
#define SMALL	 (16u * 1024)
#define MSG_DONE 0x201

static char g_host[256];

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
	th_note("rdmig_reg(16 MiB, flags 0x%x) = %d: %s", flags, ret, msg);
	ok &= TH_CHECK_INT(ret, ==, -ENOMEM, "16 MiB registration fails with -ENOMEM");
	ok &= TH_CHECK_HAS(msg, "ulimit -l", "the message names 'ulimit -l'");
	ok &= TH_CHECK_HAS(msg, "16384", "the message names the 16384 KiB needed");
	rdmig_xport_stats(c, &after);
	ok &= TH_CHECK(after.regs_total == before.regs_total &&
			   after.regions_remote == before.regions_remote,
		       "nothing was registered");
	if (!ret)
		rdmig_revoke(c);
	return ok;
}

static bool client(uint16_t port, void *arg)
{
	struct rdmig_xport_cfg cfg = base_cfg(port);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct rlimit rl = {.rlim_cur = LIMIT, .rlim_max = LIMIT};
	void *mem;
	bool ok = true;
	uint32_t id;
	int ret;

	(void)arg;
	mem = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return false;
	}
	memset(mem, 0x5a, BIG);
	/* Connect with the normal limit: the connection's own buffers are pinned too. */
	if (rdmig_connect(&cfg, &c, &err)) {
		TH_CHECK(false, "rdmig_connect: %s", rdmig_err_str(&err));
		return false;
	}
	if (setrlimit(RLIMIT_MEMLOCK, &rl)) {
		perror("setrlimit(RLIMIT_MEMLOCK)");
		rdmig_conn_destroy(c);
		return false;
	}
	th_note("RLIMIT_MEMLOCK lowered to %u bytes", LIMIT);
	ok &= TH_CHECK_UINT(rdmig_memlock_limit(), ==, LIMIT,
			    "rdmig_memlock_limit() sees the new limit");
	ok &= big_reg_fails(c, mem, 0);
	ok &= big_reg_fails(c, mem, RDMIG_REG_REMOTE_WRITE);
	ok &= TH_CHECK(!rdmig_conn_failed(c, NULL), "the connection is still usable");

	/* Control: what fits under the limit still registers. */
	rdmig_err_clear(&err);
	ret = rdmig_reg(c, "small", mem, SMALL, 0, &id, &err);
	if (geteuid() == 0)
		ok &=
		    TH_CHECK_CALL(ret, &err, "16 KiB registration under the 64 KiB limit succeeds");
	else
		th_note("note: 16 KiB registration as non-root: %s (the kernel also counts the "
			"connection's own pinned buffers)",
			ret ? rdmig_err_str(&err) : "ok");
	rdmig_revoke(c);

	rdmig_err_clear(&err);
	ok &= TH_CHECK_CALL(rdmig_ctrl_send(c, MSG_DONE, NULL, 0, &err), &err,
			    "rdmig_ctrl_send(done)");
	rdmig_conn_destroy(c);
	munmap(mem, BIG);
	return ok;
}

static bool server(struct rdmig_listener *l, struct th_peer *peer, void *arg)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint16_t type = 0;
	uint8_t buf[16];
	size_t len = 0;
	bool ok;

	(void)peer;
	(void)arg;
	if (!TH_CHECK_CALL(rdmig_accept(l, WAIT_MS, &c, &err), &err, "rdmig_accept"))
		return false;
	ok = TH_CHECK_CALL(rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &err), &err,
			   "rdmig_ctrl_recv(done)") &&
	     TH_CHECK_UINT(type, ==, MSG_DONE, "DONE from the client");
	rdmig_conn_destroy(c);
	return ok;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {.name = "host", .has_arg = required_argument, .val = 'H'},
	    {.name = "help", .has_arg = no_argument, .val = 'h'},
	    {0},
	};
	struct th_pair pair = {.roles = {"server", "client"},
			       .listener = server,
			       .connector = client,
			       .timeout_ms = WAIT_MS};
	struct rdmig_xport_cfg cfg;
	const char *host = NULL;
	int opt, ret;

	th_init(argc, argv);
	th_set_role("main");
	rdmig_log_init();
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'H') {
			host = optarg;
			continue;
		}
		fprintf(stderr, "usage: rdma_memlock [--host ADDR]\n");
		return opt == 'h' ? 0 : TH_EXIT_USAGE;
	}
	ret = th_require_rdma("rdma_memlock");
	if (ret)
		return ret;
	th_rdma_host(host, g_host, sizeof(g_host));

	cfg = base_cfg(0);
	ret = th_pair_run(&cfg, &pair);
	th_set_role("main");
	return th_summary("rdma_memlock", ret);
}
