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
#include "th_peer.h"
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

	th_set_role("client");
	mem = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(mem, 0x5a, BIG);
	/* Connect with the normal limit: the connection's own buffers are pinned too. */
	if (rdmig_connect(&cfg, &c, &err)) {
		TH_CHECK(false, "rdmig_connect: %s", rdmig_err_str(&err));
		return 1;
	}
	if (setrlimit(RLIMIT_MEMLOCK, &rl)) {
		perror("setrlimit(RLIMIT_MEMLOCK)");
		rdmig_conn_destroy(c);
		return 1;
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

	if (!TH_CHECK_CALL(rdmig_accept(l, WAIT_MS, &c, &err), &err, "rdmig_accept"))
		return 1;
	if (TH_CHECK_CALL(rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &err), &err,
			  "rdmig_ctrl_recv(done)") &&
	    TH_CHECK_UINT(type, ==, MSG_DONE, "DONE from the client"))
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
	int opt, ret, status, side;
	struct th_peer client_peer;
	char sbuf[64];
	uint16_t port;

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

	side = th_split(&client_peer, "client", &err);
	if (side == TH_SIDE_PEER) {
		th_set_role("client");
		if (!TH_CHECK_CALL(th_chan_recv_port(th_peer_fd(), &port, WAIT_MS, &err), &err,
				   "the listening port"))
			exit(TH_EXIT_FAIL);
		exit(client(port));
	}
	th_set_role("server");
	if (!TH_CHECK_CALL(side, &err, "starting the client"))
		return TH_EXIT_FAIL;
	cfg = base_cfg(0);
	if (!TH_CHECK_CALL(rdmig_listen(&cfg, &l, &err), &err, "rdmig_listen")) {
		th_peer_wait(&client_peer, 0, NULL);
		return TH_EXIT_FAIL;
	}
	port = rdmig_listener_port(l);
	status =
	    TH_CHECK_CALL(th_chan_send_port(client_peer.fd, port, &err), &err, "sending the port")
		? server(l)
		: 1;
	rdmig_listener_destroy(l);
	th_set_role("main");
	if (!TH_CHECK(!th_peer_wait(&client_peer, WAIT_MS, &err) &&
			  th_exited(client_peer.status, 0),
		      "client exit status: %s",
		      err.code ? err.msg : th_status_str(client_peer.status, sbuf, sizeof(sbuf))))
		status = 1;
	return th_summary("rdma_memlock", status == 0);
}
