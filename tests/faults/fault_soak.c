/* SPDX-License-Identifier: MIT */
/*
 * soak: two long-lived processes swapping roles.
 *
 * One guest goes A -> B -> A -> ...: the destination keeps the committed
 * guest running (rdmig_mig_opts.keep_guest) and migrates that same guest
 * back next time, so every hop carries the pages the previous ones wrote.
 * The peer process (`fault_check peer`) reads one command a line from its
 * channel:
 *   "dest DUMP"        listen, answer "port N", receive and keep the guest,
 *                      answer "done RC"
 *   "src PORT DUMP"    migrate the guest it holds (a fresh one if it holds
 *                      none), answer "done RC"
 *   "quit", or the channel closing: exit
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "fault_check.h"
#include "rdmig/guest.h"
#include "th_check.h"
#include "th_guest.h"
#include "th_tmp.h"

/* Received guest, running: hand it on, or check it really runs. */
static void hold_guest(struct rdmig_guest **held, struct rdmig_guest *got, const char *what)
{
	rdmig_guest_destroy(*held);
	*held = got;
	TH_CHECK(got && rdmig_guest_running(got) && th_guest_moves(got, 10000),
		 "%s: the received guest does not run", what);
}

int fc_run_peer(void)
{
	int fd = th_peer_fd();
	struct rdmig_guest *held = NULL;
	char line[512], dump[400];
	unsigned port;

	while (!th_chan_getline(fd, line, sizeof(line), -1, NULL)) {
		struct rdmig_err err = RDMIG_ERR_INIT;
		int ret;

		if (sscanf(line, "dest %399s", dump) == 1) {
			struct rdmig_guest *got = NULL;
			struct rdmig_listener *l;

			ret = fc_listen(&l, &err);
			if (ret) {
				th_chan_printf(fd, "done %d\n", ret);
				continue;
			}
			th_chan_printf(fd, "port %u\n", rdmig_listener_port(l));
			ret = fc_dest_receive(l, dump, &got, &err);
			rdmig_listener_destroy(l);
			if (!ret) {
				int before = th_failures();

				hold_guest(&held, got, "peer");
				if (th_failures() != before)
					ret = -EIO;
			}
		} else if (sscanf(line, "src %u %399s", &port, dump) == 2) {
			struct rdmig_mig_opts o;
			struct rdmig_mig_stats st;

			if (!held)
				held = fc_new_guest();
			rdmig_mig_opts_defaults(&o);
			o.min_rounds = 3;
			o.dump_ram = dump;
			ret = fc_source_migrate(held, (uint16_t)port, &o, &st, &err);
			/* Migrated: it runs over there now. Failed: it still runs here. */
			if (!ret) {
				rdmig_guest_destroy(held);
				held = NULL;
			}
		} else {
			break;
		}
		if (ret)
			fprintf(stderr, "peer: %s\n", err.msg);
		th_chan_printf(fd, "done %d\n", ret);
	}
	rdmig_guest_destroy(held);
	return 0;
}

/* A -> B: this process is the source, the peer receives. */
static int hop_out(struct th_peer *peer, struct rdmig_guest **held, const char *sd, const char *dd,
		   const char *what)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_mig_opts o;
	struct rdmig_mig_stats st;
	unsigned port = 0;
	char line[128];
	int ret = -1;

	if (!*held)
		*held = fc_new_guest();
	th_chan_printf(peer->fd, "dest %s\n", dd);
	if (!th_chan_getline(peer->fd, line, sizeof(line), 60000, &err) &&
	    sscanf(line, "port %u", &port) == 1) {
		rdmig_mig_opts_defaults(&o);
		o.min_rounds = 3;
		o.dump_ram = sd;
		ret = fc_source_migrate(*held, (uint16_t)port, &o, &st, &err);
	}
	TH_CHECK(ret == 0, "%s: source: %s", what, port ? err.msg : "peer gave no port");
	if (!ret) {
		rdmig_guest_destroy(*held);
		*held = NULL;
	}
	return ret;
}

/* B -> A: the peer is the source, this process receives and keeps the guest. */
static int hop_back(struct th_peer *peer, struct rdmig_guest **held, const char *sd, const char *dd,
		    const char *what)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_guest *got = NULL;
	struct rdmig_listener *l;
	int ret = -1;

	if (fc_listen(&l, &err) == 0) {
		th_chan_printf(peer->fd, "src %u %s\n", rdmig_listener_port(l), sd);
		ret = fc_dest_receive(l, dd, &got, &err);
		rdmig_listener_destroy(l);
	}
	TH_CHECK(ret == 0, "%s: destination: %s", what, err.msg);
	if (!ret)
		hold_guest(held, got, what);
	return ret;
}

void fc_soak(void)
{
	struct th_res self0[2] = {{-1, -1}, {-1, -1}}, peer0[2] = {{-1, -1}, {-1, -1}};
	struct th_rdma_res rdma0 = {0, 0};
	struct rdmig_guest *held = NULL; /* the one guest, when it is on this side */
	struct rdmig_err err = RDMIG_ERR_INIT;
	char sd[300], dd[300], line[128], sbuf[64];
	double t0 = rdmig_now_s();
	struct th_peer peer;
	int ok_iters = 0;

	if (!fc_start_peer(&peer))
		return;
	if (fc_is_rdma())
		th_rdma_res_take(&rdma0, 0);
	th_tmp_path(sd, sizeof(sd), "soak-src.bin");
	th_tmp_path(dd, sizeof(dd), "soak-dst.bin");
	for (unsigned i = 0; i < fc.iterations; i++) {
		bool a_src = i % 2 == 0;
		char what[64];
		int before = th_failures(), pret = -1;

		snprintf(what, sizeof(what), "soak %u/%u (%s)", i + 1, fc.iterations,
			 a_src ? "A -> B" : "B -> A");
		if (a_src)
			hop_out(&peer, &held, sd, dd, what);
		else
			hop_back(&peer, &held, sd, dd, what);
		rdmig_err_clear(&err);
		TH_CHECK(!th_chan_getline(peer.fd, line, sizeof(line), 300000, &err) &&
			     sscanf(line, "done %d", &pret) == 1 && pret == 0,
			 "%s: peer reported %d%s%s", what, pret, err.code ? ": " : "", err.msg);
		fc_dumps_ok(what, sd, dd);
		/*
		 * Baselines once both roles ran in each process, one per parity: the
		 * side that holds the guest has its vCPU threads too.
		 */
		if (i == 1 || i == 2) {
			th_res_take(&self0[i % 2], 0);
			th_res_take(&peer0[i % 2], peer.pid);
		}
		if (i >= 3) {
			char who[96];

			snprintf(who, sizeof(who), "%s: A", what);
			th_res_check(&self0[i % 2], 0, who);
			snprintf(who, sizeof(who), "%s: B", what);
			th_res_check(&peer0[i % 2], peer.pid, who);
		}
		if (fc_is_rdma())
			th_rdma_res_check(&rdma0, 0, what);
		if (th_failures() == before) {
			ok_iters++;
			printf("ok: %s: completed, dumps equal, incr check passed, the guest runs "
			       "on, resources at baseline\n",
			       what);
		}
		fflush(stdout);
	}
	rdmig_guest_destroy(held);
	th_chan_printf(peer.fd, "quit\n");
	rdmig_err_clear(&err);
	TH_CHECK(!th_peer_wait(&peer, 30000, &err) && th_exited(peer.status, 0),
		 "soak: peer process: %s",
		 err.code ? err.msg : th_status_str(peer.status, sbuf, sizeof(sbuf)));
	printf("soak: %d/%u migrations clean in %.1f s\n", ok_iters, fc.iterations,
	       rdmig_now_s() - t0);
}
