/* SPDX-License-Identifier: MIT */
/*
 * The tcp backend over TLS (cfg.tls): a transfer with the right key lands
 * intact, a wrong key and a TLS / plain mismatch fail on both sides with a
 * clear message, and what crosses the socket does not contain the pages.
 *
 * usage: tls_check good|wrong|mismatch|spy
 *
 * The parent is the destination (listener), the source a peer process
 * (tests/lib/th_peer.h: this program again, split at run_pair()). In `spy`
 * the source connects through a relay (tests/lib/th_relay.h) that records
 * every byte it forwards; a marker written all over the source's region
 * must show up in that record without TLS and must not with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rdmig/auth.h"
#include "clock.h"
#include "rdmig/transport.h"
#include "th_check.h"
#include "th_content.h"
#include "th_pair.h"
#include "th_relay.h"
#include "th_tmp.h"

#define WAIT_MS	   10000
#define REGION_LEN (8u << 20)
#define NCHAN	   2
#define MARKER	   "rdmig-tls-check plaintext marker, must not leak:"
#define CHUNK	   64 /* MARKER (48 bytes) + 16 hex digits */

static struct rdmig_auth_key g_ka, g_kb;
static struct rdmig_xport_cfg g_scfg; /* the source's config, set before run_pair() */

static bool has(const char *s, const char *needle)
{
	return strstr(s, needle) != NULL;
}

static void make_key(struct rdmig_auth_key *k, char fill)
{
	memset(k, 0, sizeof(*k));
	memset(k->key, fill, 32);
	k->len = 32;
}

static void cfg_init(struct rdmig_xport_cfg *cfg, bool tls, const struct rdmig_auth_key *k)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = RDMIG_BACKEND_TCP;
	cfg->host = "127.0.0.1";
	cfg->channels = NCHAN;
	cfg->connect_timeout_ms = WAIT_MS / 2;
	if (k) {
		cfg->auth = rdmig_auth_psk;
		cfg->auth_ctx = (void *)k;
	}
	cfg->tls = tls;
	if (tls && k) {
		cfg->tls_key = k->key;
		cfg->tls_key_len = k->len;
	}
	rdmig_xport_cfg_defaults(cfg);
}

static void fill(uint8_t *p)
{
	char chunk[CHUNK + 1];

	for (size_t i = 0; i < REGION_LEN / CHUNK; i++) {
		snprintf(chunk, sizeof(chunk), "%s%016zx", MARKER, i);
		memcpy(p + i * CHUNK, chunk, CHUNK);
	}
}

static bool intact(const uint8_t *p)
{
	char chunk[CHUNK + 1];

	for (size_t i = 0; i < REGION_LEN / CHUNK; i++) {
		snprintf(chunk, sizeof(chunk), "%s%016zx", MARKER, i);
		if (memcmp(p + i * CHUNK, chunk, CHUNK))
			return false;
	}
	return true;
}

typedef void (*dst_fn)(struct rdmig_listener *l);
typedef void (*src_fn)(uint16_t port);

/*
 * This process listens and runs `dst`; the source peer, this program again
 * at this same call, gets the port and runs `src`. 0 when both passed.
 */
static int run_pair(const struct rdmig_xport_cfg *lcfg, dst_fn dst, src_fn src)
{
	return th_pair_run_simple(lcfg, dst, src, WAIT_MS * 3) ? 0 : 1;
}

/* ---- a transfer over every channel ---------------------------------------- */

struct fence_arg {
	struct rdmig_conn *c;
	unsigned chan;
	int ret;
	struct rdmig_err e;
};

static void *fence_thread(void *arg)
{
	struct fence_arg *a = arg;
	struct rdmig_fence f;

	a->ret = rdmig_wait_fence(a->c, a->chan, WAIT_MS, &f, &a->e);
	if (!a->ret && f.bytes != REGION_LEN / NCHAN)
		a->ret = -EPROTO;
	return NULL;
}

static void dst_transfer(struct rdmig_listener *l)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct fence_arg fa[NCHAN];
	pthread_t th[NCHAN];
	uint8_t *mem = th_map(REGION_LEN);
	char msg[64] = "";
	uint16_t type = 0;
	size_t len = 0;
	uint32_t id;
	bool ok = true;
	int ret;

	if (!TH_CHECK_CALL(rdmig_accept(l, WAIT_MS, &c, &e), &e, "accept"))
		goto out;
	ret = rdmig_reg(c, "ram", mem, REGION_LEN, RDMIG_REG_REMOTE_WRITE, &id, &e);
	if (!ret)
		ret = rdmig_expose(c, &e);
	if (!TH_CHECK_CALL(ret, &e, "register and expose"))
		goto out;
	for (unsigned i = 0; i < NCHAN; i++) {
		fa[i] = (struct fence_arg){.c = c, .chan = i, .e = RDMIG_ERR_INIT};
		pthread_create(&th[i], NULL, fence_thread, &fa[i]);
	}
	for (unsigned i = 0; i < NCHAN; i++) {
		pthread_join(th[i], NULL);
		ok &= TH_CHECK_CALL(fa[i].ret, &fa[i].e, "fence on channel %u", i);
	}
	if (ok)
		TH_CHECK(intact(mem), "%u bytes landed intact", REGION_LEN);
	ret = rdmig_ctrl_recv(c, &type, msg, sizeof(msg) - 1, &len, WAIT_MS, &e);
	if (TH_CHECK_CALL(ret, &e, "control message over the same connection"))
		TH_CHECK(type == 7 && len == 5 && !memcmp(msg, "done!", 5),
			 "control message: type %u, %zu bytes \"%.*s\"", type, len, (int)len, msg);
out:
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

/* Connect to `port`, write the whole region (half per channel), fence, say done. */
static void src_transfer(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t *mem = th_map(REGION_LEN);
	uint32_t id;
	int ret;

	fill(mem);
	g_scfg.port = port;
	if (TH_CHECK_CALL(rdmig_connect(&g_scfg, &c, &e), &e, "connect")) {
		ret = rdmig_recv_layout(c, WAIT_MS, &e);
		if (!ret)
			ret = rdmig_reg(c, "src", mem, REGION_LEN, 0, &id, &e);
		for (unsigned i = 0; i < NCHAN && !ret; i++) {
			struct rdmig_run r = {.lreg = id,
					      .rreg = rdmig_remote_get(c, 0)->id,
					      .loff = (uint64_t)i * (REGION_LEN / NCHAN),
					      .roff = (uint64_t)i * (REGION_LEN / NCHAN),
					      .len = REGION_LEN / NCHAN};

			ret = rdmig_write(c, i, &r, 1, &e);
			if (!ret)
				ret = rdmig_fence(c, i, 1, &e);
		}
		if (!ret)
			ret = rdmig_ctrl_send(c, 7, "done!", 5, &e);
		TH_CHECK_CALL(ret, &e, "write %u bytes over %u channels and fence", REGION_LEN,
			      NCHAN);
	}
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static int t_good(void)
{
	struct rdmig_xport_cfg lcfg;

	make_key(&g_ka, 'a');
	cfg_init(&lcfg, true, &g_ka);
	cfg_init(&g_scfg, true, &g_ka);
	return run_pair(&lcfg, dst_transfer, src_transfer) || th_failures();
}

/* ---- failures: the listener accepts nothing, the connector says why -------- */

static const char *g_want_src; /* what the source's error must say */
static const char *g_want_dst; /* what the listener's log must say */

/* The listener's side: no connection, and its log names the cause. */
static void dst_refuses(struct rdmig_listener *l)
{
	struct rdmig_listener_stats st;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	char path[300], log[8192] = "";
	int fd, saved = dup(STDERR_FILENO), ret;
	ssize_t n;

	th_tmp_path(path, sizeof(path), "listener.log");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || saved < 0) {
		TH_CHECK(false, "temporary log file: %s", strerror(errno));
		return;
	}
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	ret = rdmig_accept(l, WAIT_MS / 2 + 2000, &c, &e);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, log, sizeof(log) - 1, 0);
	log[n > 0 ? n : 0] = 0;
	close(fd);
	unlink(path);
	TH_CHECK(ret == -ETIMEDOUT && !c, "no connection accepted (%d): %s", ret, e.msg);
	/*
	 * The listener's thread logs the drop, possibly before stderr was
	 * redirected: its stats keep the same line.
	 */
	rdmig_listener_stats(l, &st);
	TH_CHECK(has(log, g_want_dst) || has(st.last_drop, g_want_dst),
		 "listener log says '%s': %s%s", g_want_dst, log, st.last_drop);
	TH_CHECK(st.dropped >= 1 && st.accepted == 0,
		 "the listener dropped the connection (%llu dropped, %llu accepted)",
		 (unsigned long long)st.dropped, (unsigned long long)st.accepted);
	rdmig_conn_destroy(c);
}

static void src_refused(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int64_t t0, ms;
	int ret;

	g_scfg.port = port;
	t0 = rdmig_now_ms();
	ret = rdmig_connect(&g_scfg, &c, &e);
	ms = rdmig_now_ms() - t0;
	TH_CHECK(ret < 0 && !c, "connect refused (%d) after %lld ms: %s", ret, (long long)ms,
		 e.msg);
	TH_CHECK(ms < g_scfg.connect_timeout_ms + 500, "within the connect timeout");
	TH_CHECK(has(e.msg, g_want_src), "the error says '%s'", g_want_src);
	rdmig_conn_destroy(c);
}

static int t_wrong(void)
{
	struct rdmig_xport_cfg lcfg;

	make_key(&g_ka, 'a');
	make_key(&g_kb, 'b');
	cfg_init(&lcfg, true, &g_ka);
	cfg_init(&g_scfg, true, &g_kb);
	g_want_src = "same --key-file";
	g_want_dst = "TLS handshake failed";
	return run_pair(&lcfg, dst_refuses, src_refused) || th_failures();
}

static int t_mismatch(void)
{
	struct rdmig_xport_cfg lcfg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	int ret;

	make_key(&g_ka, 'a');
	/* TLS connector, plain listener. */
	cfg_init(&lcfg, false, &g_ka);
	cfg_init(&g_scfg, true, &g_ka);
	g_want_src = "does not run with --tls";
	g_want_dst = "the peer speaks TLS (--tls) and this listener does not";
	ret = run_pair(&lcfg, dst_refuses, src_refused);
	/* Plain connector, TLS listener. */
	cfg_init(&lcfg, true, &g_ka);
	cfg_init(&g_scfg, false, &g_ka);
	g_want_src = "this listener requires TLS";
	g_want_dst = "does not speak TLS";
	ret |= run_pair(&lcfg, dst_refuses, src_refused);
	/* Configuration errors. */
	th_set_role("main");
	cfg_init(&lcfg, true, NULL);
	TH_CHECK(rdmig_listen(&lcfg, &(struct rdmig_listener *){NULL}, &e) == -EINVAL &&
		     has(e.msg, "--key-file"),
		 "--tls without a key refused: %s", e.msg);
	cfg_init(&lcfg, true, &g_ka);
	lcfg.backend = RDMIG_BACKEND_RDMA;
	e = (struct rdmig_err)RDMIG_ERR_INIT;
	TH_CHECK(rdmig_listen(&lcfg, &(struct rdmig_listener *){NULL}, &e) == -EINVAL &&
		     has(e.msg, "does not encrypt RoCE"),
		 "--tls on rdma refused: %s", e.msg);
	return ret || th_failures();
}

/* ---- what crosses the socket ---------------------------------------------- */

#define RECORD_MAX (3 * REGION_LEN) /* per direction of a connection */

/* A marker anywhere in what the relay forwarded, one connection and direction at a time. */
static bool relay_saw(const struct th_relay *r, const char *marker)
{
	for (unsigned i = 0; i < th_relay_conns(r); i++) {
		for (int d = 0; d < 2; d++) {
			size_t n;
			const uint8_t *rec = th_relay_record(r, i, d, &n);

			if (rec && memmem(rec, n, marker, strlen(marker)))
				return true;
		}
	}
	return false;
}

static bool g_spy_tls;

static void src_spied(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct th_relay *r;
	bool seen;

	if (!TH_CHECK_CALL(th_relay_start(port, RECORD_MAX, &r, &e), &e, "relay listening"))
		return;
	src_transfer(th_relay_port(r));
	/* Every socket at end of file (the destination closed too), or WAIT_MS passed. */
	th_relay_stop(r, WAIT_MS);
	seen = relay_saw(r, MARKER);
	TH_CHECK(th_relay_total(r) > REGION_LEN, "the relay saw %zu bytes", th_relay_total(r));
	if (g_spy_tls)
		TH_CHECK(!seen, "with --tls the page contents do not appear on the wire");
	else
		TH_CHECK(seen, "without --tls they do (the relay sees plaintext)");
	th_relay_destroy(r);
}

static int t_spy(void)
{
	struct rdmig_xport_cfg lcfg;
	int ret;

	make_key(&g_ka, 'a');
	g_spy_tls = false;
	cfg_init(&lcfg, false, &g_ka);
	cfg_init(&g_scfg, false, &g_ka);
	ret = run_pair(&lcfg, dst_transfer, src_spied);
	g_spy_tls = true;
	cfg_init(&lcfg, true, &g_ka);
	cfg_init(&g_scfg, true, &g_ka);
	ret |= run_pair(&lcfg, dst_transfer, src_spied);
	return ret || th_failures();
}

int main(int argc, char **argv)
{
	static const struct th_mode modes[] = {
	    {"good", t_good}, {"wrong", t_wrong}, {"mismatch", t_mismatch},
	    {"spy", t_spy},   {NULL, NULL},
	};
	const struct th_mode *m = th_mode_find(modes, argc > 1 ? argv[1] : NULL);
	int ret;

	th_init(argc, argv);
	if (!m) {
		fprintf(stderr, "usage: tls_check good|wrong|mismatch|spy\n");
		return TH_EXIT_USAGE;
	}
	th_set_verbose(true);
	ret = m->run();
	th_set_role(NULL);
	return th_summary(m->name, ret == 0);
}
