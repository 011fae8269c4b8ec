/* SPDX-License-Identifier: MIT */
/*
 * rdma_cm_pingpong: two processes (the client is this program again, exec'd:
 * tests/lib/th_peer.h) connect through rdmig's rdma backend (librdmacm
 * connect/accept of a control and two data channels) and exchange control
 * messages both ways, each side checking every byte of what it received. Sizes: 1 byte, 4 KiB + 3
 * and the 64 KiB maximum.
 *
 *   rdma_cm_pingpong [--mode pingpong|reject|fault] [--host ADDR] [--channels N]
 *                    [--seed S]
 *
 * --mode reject: before the ping-pong, raw librdmacm connect requests that
 *   rdmig must refuse: a garbage HELLO, a HELLO from an "acceptor", and a
 *   control channel whose data channels never come (dropped on expiry). Each
 *   must be REJECTED with an "rdmig: ..." reason; the listener must then
 *   still accept a good connection.
 * --mode fault: the client is a destination (exposes a 16 MiB region) and
 *   checks that rdmig_conn_abort() wakes a thread blocked in
 *   rdmig_wait_fence(). The server, a source, keeps writing the region and
 *   fencing on data channel 0; it kills the client with SIGKILL and checks
 *   that the writer and its blocked waiters (control receive, wait_fence on
 *   channel 1, 60 s timeouts) all fail within FAULT_BOUND_MS with a message,
 *   and that teardown completes.
 *
 * Exit: 0 pass, 1 fail, 77 no RDMA device.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rdma/rdma_cma.h>

#include "clock.h"
#include "log.h"
#include "rdmig/transport.h"
#include "th_check.h"
#include "th_content.h"
#include "th_pair.h"
#include "th_rdma.h"

#define WAIT_MS	       60000
#define MSG_PING       0x101
#define MSG_PONG       0x102
#define MSG_DONE       0x103
#define FAULT_BOUND_MS 30000
#define EXPIRE_MS      4000 /* listener connect timeout in reject mode: group expiry */

enum mode { MODE_PINGPONG, MODE_REJECT, MODE_FAULT };
static enum mode g_mode = MODE_PINGPONG;

static const size_t sizes[] = {1, 4096 + 3, RDMIG_CTRL_MAX_PAYLOAD};
#define NROUNDS (sizeof(sizes) / sizeof(sizes[0]))

static char g_host[256];
static unsigned g_channels = 2;
static uint64_t g_seed;

/* Deterministic content: both sides compute what the other must have sent. */
static uint64_t msg_key(unsigned dir, unsigned round)
{
	return th_mix64(g_seed ^ ((uint64_t)dir << 56) ^ ((uint64_t)round << 48));
}

static int fail(const char *what, const struct rdmig_err *err)
{
	TH_CHECK(false, "%s: %s", what, rdmig_err_str(err));
	return 1;
}

static int check_msg(const uint8_t *buf, size_t len, uint16_t type, uint16_t want_type,
		     unsigned dir, unsigned round)
{
	uint64_t first;
	uint8_t want;

	if (!TH_CHECK_UINT(type, ==, want_type, "round %u: message type", round) ||
	    !TH_CHECK_UINT(len, ==, sizes[round], "round %u: message length", round))
		return 1;
	if (th_content_compare(buf, 0, len, msg_key(dir, round), 0, &first)) {
		th_content_fill(&want, first, 1, msg_key(dir, round), 0);
		TH_CHECK(false, "round %u: byte %" PRIu64 " is 0x%02x, expected 0x%02x", round,
			 first, buf[first], want);
		return 1;
	}
	TH_CHECK(true, "round %u: %zu bytes of type 0x%x intact", round, len, type);
	return 0;
}

static void fill(uint8_t *buf, unsigned dir, unsigned round)
{
	th_content_fill(buf, 0, sizes[round], msg_key(dir, round), 0);
}

static struct rdmig_xport_cfg base_cfg(uint16_t port)
{
	struct rdmig_xport_cfg cfg = {
	    .backend = RDMIG_BACKEND_RDMA,
	    .host = g_host,
	    .port = port,
	    .channels = g_channels,
	    .connect_timeout_ms = g_mode == MODE_REJECT ? EXPIRE_MS : 20000,
	};
	return cfg;
}

/* ---- reject mode: raw librdmacm connect requests ------------------------ */

static int wait_event(struct rdma_event_channel *ec, enum rdma_cm_event_type want,
		      struct rdma_cm_event **ev, int timeout_ms)
{
	struct pollfd pfd = {.fd = ec->fd, .events = POLLIN};

	if (poll(&pfd, 1, timeout_ms) != 1) {
		TH_CHECK(false, "no rdma_cm event within %d ms (waiting for %s)", timeout_ms,
			 rdma_event_str(want));
		return -1;
	}
	if (rdma_get_cm_event(ec, ev)) {
		TH_CHECK(false, "rdma_get_cm_event: %s", strerror(errno));
		return -1;
	}
	if ((*ev)->event != want) {
		TH_CHECK(false, "got %s (status %d), expected %s", rdma_event_str((*ev)->event),
			 (*ev)->status, rdma_event_str(want));
		rdma_ack_cm_event(*ev);
		return -1;
	}
	return 0;
}

/*
 * Connect one raw rdma_cm id with `pdata` as private data; the listener must
 * answer REJECTED with a reason containing `want`.
 */
static int expect_reject(uint16_t port, const uint8_t *pdata, uint8_t plen, const char *want,
			 const char *what)
{
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id = NULL;
	struct rdma_cm_event *ev;
	struct rdma_conn_param p = {.private_data = pdata,
				    .private_data_len = plen,
				    .retry_count = 7,
				    .rnr_retry_count = 7};
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap = {.max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1}};
	struct addrinfo *ai;
	char ps[8], reason[160] = "";
	int status = 1;

	ec = rdma_create_event_channel();
	if (!ec || rdma_create_id(ec, &id, NULL, RDMA_PS_TCP)) {
		TH_CHECK(false, "%s: rdma_create_id: %s", what, strerror(errno));
		goto out;
	}
	snprintf(ps, sizeof(ps), "%u", port);
	if (getaddrinfo(g_host, ps, NULL, &ai)) {
		TH_CHECK(false, "%s: getaddrinfo(%s)", what, g_host);
		goto out;
	}
	if (rdma_resolve_addr(id, NULL, ai->ai_addr, 2000)) {
		freeaddrinfo(ai);
		TH_CHECK(false, "%s: rdma_resolve_addr: %s", what, strerror(errno));
		goto out;
	}
	freeaddrinfo(ai);
	if (wait_event(ec, RDMA_CM_EVENT_ADDR_RESOLVED, &ev, 5000))
		goto out;
	rdma_ack_cm_event(ev);
	if (rdma_resolve_route(id, 2000) || wait_event(ec, RDMA_CM_EVENT_ROUTE_RESOLVED, &ev, 5000))
		goto out;
	rdma_ack_cm_event(ev);
	if (rdma_create_qp(id, NULL, &qa)) {
		TH_CHECK(false, "%s: rdma_create_qp: %s", what, strerror(errno));
		goto out;
	}
	if (rdma_connect(id, &p)) {
		TH_CHECK(false, "%s: rdma_connect: %s", what, strerror(errno));
		goto out_qp;
	}
	if (wait_event(ec, RDMA_CM_EVENT_REJECTED, &ev, 3 * EXPIRE_MS))
		goto out_qp;
	if (ev->param.conn.private_data && ev->param.conn.private_data_len) {
		size_t n = ev->param.conn.private_data_len;

		if (n >= sizeof(reason))
			n = sizeof(reason) - 1;
		memcpy(reason, ev->param.conn.private_data, n);
		reason[n] = '\0';
	}
	rdma_ack_cm_event(ev);
	if (strncmp(reason, "rdmig: ", 7) || !strstr(reason, want)) {
		TH_CHECK(false, "%s: rejected with reason '%s', expected 'rdmig: ...%s...'", what,
			 reason, want);
		goto out_qp;
	}
	TH_CHECK(true, "%s: rejected with '%s'", what, reason);
	status = 0;
out_qp:
	rdma_destroy_qp(id);
out:
	if (id)
		rdma_destroy_id(id);
	if (ec)
		rdma_destroy_event_channel(ec);
	return status;
}

/*
 * The connect request's private data, encoded by hand (big-endian) so the
 * test does not trust wire.c: "RDMG", version, type HELLO, reserved, then
 * the 48-byte HELLO.
 */
static void hello_bytes(uint8_t *b, uint8_t version, uint16_t role, uint16_t nchan, uint16_t chan,
			uint64_t token)
{
	memset(b, 0, 56);
	b[0] = 'R', b[1] = 'D', b[2] = 'M', b[3] = 'G';
	b[4] = version;
	b[5] = 1; /* HELLO */
	b += 8;
	b[3] = 0x1; /* caps: streams */
	b[4] = (uint8_t)(role >> 8), b[5] = (uint8_t)role;
	b[6] = (uint8_t)(nchan >> 8), b[7] = (uint8_t)nchan;
	b[8] = (uint8_t)(chan >> 8), b[9] = (uint8_t)chan;
	b[12] = 0, b[13] = 1, b[14] = 0, b[15] = 0; /* max_ctrl 65536 */
	for (int i = 0; i < 8; i++)
		b[16 + i] = (uint8_t)(token >> (56 - 8 * i));
}

static int reject_checks(uint16_t port)
{
	uint8_t b[56];
	int bad = 0;

	th_content_fill(b, 0, sizeof(b), msg_key(7, 0), 0);
	for (int i = 0; i < 56; i++)
		b[i] |= 0x80; /* garbage: no magic */
	bad |= expect_reject(port, b, sizeof(b), "magic", "garbage HELLO");
	hello_bytes(b, 2, 1, 1, 0xffff, g_seed | 3);
	bad |= expect_reject(port, b, sizeof(b), "version 2", "HELLO of another wire version");
	hello_bytes(b, 1, 2, 1, 0xffff, g_seed | 1);
	bad |= expect_reject(port, b, sizeof(b), "connector", "HELLO from an acceptor");
	hello_bytes(b, 1, 1, 2, 0xffff, g_seed | 2);
	bad |= expect_reject(port, b, sizeof(b), "did not arrive",
			     "control channel without its data channels");
	return bad;
}

/* ---- fault mode ---------------------------------------------------------- */

#define FAULT_REGION (16u << 20)
#define FAULT_RUN    (1u << 20)

struct waiter {
	struct rdmig_conn *c;
	unsigned chan;
	uint64_t rounds;
	int timeout_ms;
	int ret;
	int64_t done_at;
	struct rdmig_err err;
};

static void *fence_waiter(void *arg)
{
	struct waiter *w = arg;
	struct rdmig_fence f;

	w->ret = rdmig_wait_fence(w->c, w->chan, w->timeout_ms, &f, &w->err);
	w->done_at = rdmig_now_ms();
	return NULL;
}

/* Source: write the whole remote region and fence, until something fails. */
static void *writer(void *arg)
{
	struct waiter *w = arg;
	struct rdmig_run runs[FAULT_REGION / FAULT_RUN];
	const struct rdmig_remote_region *rr = rdmig_remote_get(w->c, 0);
	uint32_t lreg = (uint32_t)w->timeout_ms; /* the local region id rides here */

	for (unsigned i = 0; i < FAULT_REGION / FAULT_RUN; i++)
		runs[i] = (struct rdmig_run){.lreg = lreg,
					     .rreg = rr->id,
					     .loff = (uint64_t)i * FAULT_RUN,
					     .roff = (uint64_t)i * FAULT_RUN,
					     .len = FAULT_RUN};
	for (;;) {
		w->ret = rdmig_write(w->c, w->chan, runs, FAULT_REGION / FAULT_RUN, &w->err);
		if (!w->ret)
			w->ret = rdmig_fence(w->c, w->chan, w->rounds + 1, &w->err);
		if (w->ret)
			break;
		__atomic_store_n(&w->rounds, w->rounds + 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&w->done_at, rdmig_now_ms(), __ATOMIC_RELEASE);
	return NULL;
}

/* Client: abort must wake a thread blocked in wait_fence; then wait to be killed. */
static int client_fault(struct rdmig_conn *c, int report_fd)
{
	struct waiter w = {.c = c, .timeout_ms = -1, .err = RDMIG_ERR_INIT};
	struct rdmig_err err = RDMIG_ERR_INIT;
	pthread_t t;
	int64_t t0;
	char verdict = 'N';
	uint32_t id;
	void *mem;

	mem = mmap(NULL, FAULT_REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED ||
	    rdmig_reg(c, "ram", mem, FAULT_REGION, RDMIG_REG_REMOTE_WRITE, &id, &err) ||
	    rdmig_expose(c, &err)) {
		TH_CHECK(false, "exposing a region: %s", rdmig_err_str(&err));
		return 1;
	}
	if (pthread_create(&t, NULL, fence_waiter, &w))
		return 1;
	usleep(500 * 1000);
	t0 = rdmig_now_ms();
	rdmig_conn_abort(c, -ECANCELED, "cancelled by the test");
	pthread_join(t, NULL);
	if (w.ret == -ECANCELED && w.done_at - t0 < 2000 && strstr(w.err.msg, "cancelled")) {
		TH_CHECK(true,
			 "rdmig_conn_abort woke the blocked wait_fence after %lld ms: "
			 "%s",
			 (long long)(w.done_at - t0), rdmig_err_str(&w.err));
		verdict = 'Y';
	} else {
		TH_CHECK(false, "wait_fence after abort returned %d after %lld ms: %s", w.ret,
			 (long long)(w.done_at - t0), rdmig_err_str(&w.err));
	}
	if (th_chan_send(report_fd, &verdict, 1, NULL))
		return 1;
	for (;;)
		pause(); /* the server kills us */
}

/* Server: kill the client, and see the writer and both blocked waiters fail in bounded time. */
static int server_fault(struct rdmig_conn *c, const struct th_peer *client)
{
	struct waiter w = {.c = c, .chan = 1, .timeout_ms = 60000, .err = RDMIG_ERR_INIT};
	struct waiter wr = {.c = c, .chan = 0, .err = RDMIG_ERR_INIT};
	struct rdmig_err err = RDMIG_ERR_INIT;
	uint16_t type;
	uint8_t buf[64];
	size_t len;
	pthread_t t, tw;
	char verdict = 0;
	int64_t t0, t1, t2;
	uint32_t lreg;
	void *mem;
	int ret, status = 0;

	mem = mmap(NULL, FAULT_REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || rdmig_recv_layout(c, 60000, &err) ||
	    rdmig_reg(c, "src", mem, FAULT_REGION, 0, &lreg, &err)) {
		TH_CHECK(false, "setting up the source: %s", rdmig_err_str(&err));
		return 1;
	}
	memset(mem, 0x3c, FAULT_REGION);
	wr.timeout_ms = (int)lreg;
	if (th_chan_recv(client->fd, &verdict, 1, WAIT_MS, &err) || verdict != 'Y') {
		TH_CHECK(false, "the client's abort check did not pass");
		status = 1;
	}
	if (pthread_create(&tw, NULL, writer, &wr))
		return 1;
	if (pthread_create(&t, NULL, fence_waiter, &w))
		return 1;
	/* Kill while writes are flowing: after the first complete round. */
	for (int i = 0; i < 600 && !__atomic_load_n(&wr.rounds, __ATOMIC_ACQUIRE) &&
			!__atomic_load_n(&wr.done_at, __ATOMIC_ACQUIRE);
	     i++)
		usleep(100 * 1000);
	t0 = rdmig_now_ms();
	kill(client->pid, SIGKILL);
	th_note("killed the client (SIGKILL) after %llu write rounds of %u MiB",
		(unsigned long long)__atomic_load_n(&wr.rounds, __ATOMIC_ACQUIRE),
		FAULT_REGION >> 20);
	ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, 60000, &err);
	t1 = rdmig_now_ms();
	pthread_join(t, NULL);
	pthread_join(tw, NULL);
	if (ret && ret != -ETIMEDOUT && t1 - t0 < FAULT_BOUND_MS) {
		TH_CHECK(true, "blocked control receive failed after %lld ms: %d: %s",
			 (long long)(t1 - t0), ret, rdmig_err_str(&err));
	} else {
		TH_CHECK(false, "control receive returned %d after %lld ms: %s", ret,
			 (long long)(t1 - t0), rdmig_err_str(&err));
		status = 1;
	}
	if (w.ret && w.ret != -ETIMEDOUT && w.done_at - t0 < FAULT_BOUND_MS) {
		TH_CHECK(true, "blocked wait_fence failed after %lld ms: %d: %s",
			 (long long)(w.done_at - t0), w.ret, rdmig_err_str(&w.err));
	} else {
		TH_CHECK(false, "wait_fence returned %d after %lld ms: %s", w.ret,
			 (long long)(w.done_at - t0), rdmig_err_str(&w.err));
		status = 1;
	}
	if (wr.ret && wr.done_at - t0 < FAULT_BOUND_MS && wr.done_at >= t0) {
		TH_CHECK(true, "the writer failed %lld ms after the kill: %d: %s",
			 (long long)(wr.done_at - t0), wr.ret, rdmig_err_str(&wr.err));
	} else {
		TH_CHECK(false, "the writer returned %d at %+lld ms: %s", wr.ret,
			 (long long)(wr.done_at - t0), rdmig_err_str(&wr.err));
		status = 1;
	}
	if (!rdmig_conn_failed(c, NULL)) {
		TH_CHECK(false, "the connection does not report a failure");
		status = 1;
	}
	rdmig_conn_destroy(c);
	t2 = rdmig_now_ms();
	if (!TH_CHECK(t2 - t1 < 5000, "teardown after the peer died took %lld ms",
		      (long long)(t2 - t1)))
		status = 1;
	munmap(mem, FAULT_REGION);
	return status;
}

/* Connector: ping, expect pong, for every size; then DONE. */
static bool client(uint16_t port, void *arg)
{
	struct rdmig_xport_cfg cfg = base_cfg(port);
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t *out = malloc(RDMIG_CTRL_MAX_PAYLOAD), *in = malloc(RDMIG_CTRL_MAX_PAYLOAD);
	uint16_t type_done = 0;
	size_t len_done = 0;
	int status = 1;

	(void)arg;
	if (!out || !in)
		goto out;
	if (g_mode == MODE_REJECT && reject_checks(port))
		goto out;
	if (rdmig_connect(&cfg, &c, &err)) {
		fail("rdmig_connect", &err);
		goto out;
	}
	if (rdmig_conn_backend(c) != RDMIG_BACKEND_RDMA || rdmig_conn_channels(c) != g_channels) {
		TH_CHECK(false, "connection is %s with %u channels",
			 rdmig_backend_name(rdmig_conn_backend(c)), rdmig_conn_channels(c));
		goto out;
	}
	th_note("connected to %s:%u, %u data channels", g_host, port, g_channels);
	if (g_mode == MODE_FAULT) {
		status = client_fault(c, th_peer_fd());
		goto out;
	}
	for (unsigned r = 0; r < NROUNDS; r++) {
		uint16_t type = 0;
		size_t len = 0;

		fill(out, 0, r);
		if (rdmig_ctrl_send(c, MSG_PING, out, sizes[r], &err)) {
			fail("rdmig_ctrl_send(ping)", &err);
			goto out;
		}
		if (rdmig_ctrl_recv(c, &type, in, RDMIG_CTRL_MAX_PAYLOAD, &len, WAIT_MS, &err)) {
			fail("rdmig_ctrl_recv(pong)", &err);
			goto out;
		}
		if (check_msg(in, len, type, MSG_PONG, 1, r))
			goto out;
	}
	if (rdmig_ctrl_send(c, MSG_DONE, NULL, 0, &err)) {
		fail("rdmig_ctrl_send(done)", &err);
		goto out;
	}
	/*
	 * Wait for the server's answer before closing: whoever closes first
	 * must not have a send of its own in flight, or the disconnect may
	 * flush it before the peer's ACK is processed.
	 */
	if (rdmig_ctrl_recv(c, &type_done, in, RDMIG_CTRL_MAX_PAYLOAD, &len_done, WAIT_MS, &err) ||
	    type_done != MSG_DONE) {
		fail("rdmig_ctrl_recv(done answer)", &err);
		goto out;
	}
	status = 0;
out:
	rdmig_conn_destroy(c);
	free(out);
	free(in);
	return status == 0;
}

/* Acceptor: expect ping, answer pong, for every size; then wait for DONE. */
static bool server(struct rdmig_listener *l, struct th_peer *client, void *arg)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t *out = malloc(RDMIG_CTRL_MAX_PAYLOAD), *in = malloc(RDMIG_CTRL_MAX_PAYLOAD);
	uint16_t type = 0;
	size_t len = 0;
	int status = 1;

	(void)arg;
	if (!out || !in)
		goto out;
	if (rdmig_accept(l, WAIT_MS, &c, &err)) {
		fail("rdmig_accept", &err);
		goto out;
	}
	if (rdmig_conn_channels(c) != g_channels) {
		TH_CHECK(false, "accepted %u channels, expected %u", rdmig_conn_channels(c),
			 g_channels);
		goto out;
	}
	th_note("accepted, %u data channels", rdmig_conn_channels(c));
	if (g_mode == MODE_FAULT) {
		status = server_fault(c, client);
		c = NULL; /* destroyed, and timed, by server_fault */
		goto out;
	}
	for (unsigned r = 0; r < NROUNDS; r++) {
		if (rdmig_ctrl_recv(c, &type, in, RDMIG_CTRL_MAX_PAYLOAD, &len, WAIT_MS, &err)) {
			fail("rdmig_ctrl_recv(ping)", &err);
			goto out;
		}
		if (check_msg(in, len, type, MSG_PING, 0, r))
			goto out;
		fill(out, 1, r);
		if (rdmig_ctrl_send(c, MSG_PONG, out, sizes[r], &err)) {
			fail("rdmig_ctrl_send(pong)", &err);
			goto out;
		}
	}
	if (rdmig_ctrl_recv(c, &type, in, RDMIG_CTRL_MAX_PAYLOAD, &len, WAIT_MS, &err)) {
		fail("rdmig_ctrl_recv(done)", &err);
		goto out;
	}
	if (type != MSG_DONE || len) {
		TH_CHECK(false, "expected DONE, got type 0x%x with %zu bytes", type, len);
		goto out;
	}
	if (rdmig_ctrl_send(c, MSG_DONE, NULL, 0, &err)) {
		fail("rdmig_ctrl_send(done answer)", &err);
		goto out;
	}
	/* The client closes first (see client()); its close ends this receive. */
	rdmig_ctrl_recv(c, &type, in, RDMIG_CTRL_MAX_PAYLOAD, &len, WAIT_MS, NULL);
	status = 0;
out:
	rdmig_conn_destroy(c);
	free(out);
	free(in);
	if (g_mode == MODE_FAULT)
		kill(client->pid, SIGKILL); /* in case the server failed before killing it */
	return status == 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: rdma_cm_pingpong [--mode pingpong|reject|fault] [--host ADDR] "
		"[--channels 1..%d] [--seed S]\n",
		RDMIG_MAX_CHANNELS);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {.name = "host", .has_arg = required_argument, .val = 'H'},
	    {.name = "mode", .has_arg = required_argument, .val = 'm'},
	    {.name = "channels", .has_arg = required_argument, .val = 'c'},
	    {.name = "seed", .has_arg = required_argument, .val = 's'},
	    {.name = "help", .has_arg = no_argument, .val = 'h'},
	    {0},
	};
	static const char *const mode_names[] = {"pingpong", "reject", "fault"};
	struct th_pair pair = {.roles = {"server", "client"},
			       .listener = server,
			       .connector = client,
			       .timeout_ms = WAIT_MS};
	struct rdmig_xport_cfg cfg;
	const char *host = NULL, *seed_arg = NULL;
	char what[64], *end;
	int opt, ret;
	bool ok;

	th_init(argc, argv);
	th_set_role("main");
	th_set_verbose(true);
	rdmig_log_init();
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'H':
			host = optarg;
			break;
		case 'm':
			if (!strcmp(optarg, "pingpong"))
				g_mode = MODE_PINGPONG;
			else if (!strcmp(optarg, "reject"))
				g_mode = MODE_REJECT;
			else if (!strcmp(optarg, "fault"))
				g_mode = MODE_FAULT;
			else {
				usage();
				return TH_EXIT_USAGE;
			}
			break;
		case 'c':
			errno = 0;
			g_channels = (unsigned)strtoul(optarg, &end, 10);
			if (errno || *end || g_channels < 1 || g_channels > RDMIG_MAX_CHANNELS) {
				usage();
				return TH_EXIT_USAGE;
			}
			break;
		case 's':
			seed_arg = optarg;
			break;
		default:
			usage();
			return opt == 'h' ? 0 : TH_EXIT_USAGE;
		}
	}
	if (th_seed_init(seed_arg, &g_seed)) {
		usage();
		return TH_EXIT_USAGE;
	}
	ret = th_require_rdma("rdma_cm_pingpong");
	if (ret)
		return ret;
	th_rdma_host(host, g_host, sizeof(g_host));
	if (!th_peer_role())
		th_note("seed %" PRIu64 ", %u data channels", g_seed, g_channels);

	/* The client: this program again (exec'd: rdma_cm state must not cross a fork). */
	pair.peer_signal = g_mode == MODE_FAULT ? SIGKILL : 0;
	cfg = base_cfg(0);
	ok = th_pair_run(&cfg, &pair);
	th_set_role("main");
	snprintf(what, sizeof(what), "rdma_cm_pingpong --mode %s", mode_names[g_mode]);
	return th_summary(what, ok);
}
