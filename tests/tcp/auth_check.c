/* SPDX-License-Identifier: MIT */
/*
 * auth_check: the pre-shared-key handshake (transport/auth.c) and the bounds
 * on exposure, end to end over the tcp backend on loopback.
 *
 *   auth_check good     same key both sides: the transfer lands intact
 *   auth_check wrong    different keys: both sides fail with their message,
 *                       the destination registered nothing and sent no rkey
 *   auth_check nokey    one side without a key (each way): fails clearly
 *   auth_check replay   the source's AUTH frames of a genuine session,
 *                       recorded by a relay, replayed raw: rejected
 *   auth_check keyfile  mode 0644, short key, missing file: clear errors
 *   auth_check revoke-commit | revoke-cancel
 *                       after the destination revoked (commit or cancel),
 *                       a WRITE frame is rejected and no byte lands
 *
 * The parent is the destination (listener), the source a peer process
 * (tests/lib/th_peer.h: this program again, split at run_pair()). Every
 * wait is bounded.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "auth_wire.h"
#include "bytes.h"
#include "clock.h"
#include "rdmig/transport.h"
#include "th_check.h"
#include "th_content.h"
#include "th_pair.h"
#include "th_relay.h"
#include "th_sock.h"
#include "th_tmp.h"
#include "wire.h"

#define WAIT_MS	   30000
#define REGION_LEN (4u << 20)
#define MSG_PING   1
#define MSG_GO	   2 /* destination -> source: 1 byte, the scenario step */

static char g_key_a[300], g_key_b[300], g_key_open[300], g_key_short[300];

static bool has(const struct rdmig_err *e, const char *needle)
{
	return e->msg[0] && strstr(e->msg, needle) != NULL;
}

static bool has_s(const char *s, const char *needle)
{
	return s[0] && strstr(s, needle) != NULL;
}

/* ---- keys ---------------------------------------------------------------- */

/* The key files, in this process's temporary directory (the peer makes its own). */
static void make_keys(void)
{
	static const struct {
		char *path;
		const char *name, *text;
		mode_t mode;
	} keys[] = {
	    {g_key_a, "a.key", "0123456789abcdef-key-A-0123456789\n", 0600},
	    {g_key_b, "b.key", "0123456789abcdef-key-B-0123456789\n", 0600},
	    {g_key_open, "open.key", "0123456789abcdef-key-A-0123456789\n", 0644},
	    {g_key_short, "short.key", "tooshort\n", 0600},
	};
	struct rdmig_err e = RDMIG_ERR_INIT;

	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		th_tmp_path(keys[i].path, sizeof(g_key_a), keys[i].name);
		if (th_write_file(keys[i].path, keys[i].text, strlen(keys[i].text), keys[i].mode,
				  &e)) {
			printf("FAIL: %s\n", e.msg);
			exit(1);
		}
	}
}

static void load_key(const char *path, struct rdmig_auth_key *k)
{
	struct rdmig_err e = RDMIG_ERR_INIT;

	if (!TH_CHECK_CALL(rdmig_auth_key_load(path, k, &e), &e, "loading %s", path))
		exit(1);
}

/* Wraps the hook to record the destination's counters as auth ends. */
struct spy {
	const struct rdmig_auth_key *key;
	bool ran;
	struct rdmig_xport_stats st;
};

/* The hook runs on the listener's handshake thread: the test reads its record under this. */
static pthread_mutex_t g_spy_lock = PTHREAD_MUTEX_INITIALIZER;

static int spy_auth(struct rdmig_conn *c, bool is_server, void *ctx, struct rdmig_err *err)
{
	struct spy *s = ctx;
	int ret = rdmig_auth_psk(c, is_server, (void *)s->key, err);

	pthread_mutex_lock(&g_spy_lock);
	rdmig_xport_stats(c, &s->st);
	s->ran = true;
	pthread_mutex_unlock(&g_spy_lock);
	return ret;
}

static void spy_reset(struct spy *s)
{
	pthread_mutex_lock(&g_spy_lock);
	memset(&s->st, 0, sizeof(s->st));
	s->ran = false;
	pthread_mutex_unlock(&g_spy_lock);
}

static void cfg_init(struct rdmig_xport_cfg *cfg, struct spy *s, const struct rdmig_auth_key *k)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = RDMIG_BACKEND_TCP;
	cfg->host = "127.0.0.1";
	cfg->channels = 1;
	cfg->connect_timeout_ms = WAIT_MS;
	if (s) {
		s->key = k;
		cfg->auth = spy_auth;
		cfg->auth_ctx = s;
	} else if (k) {
		cfg->auth = rdmig_auth_psk;
		cfg->auth_ctx = (void *)k;
	}
	rdmig_xport_cfg_defaults(cfg);
}

/*
 * A refused source, seen from the destination: rdmig_accept() hands out
 * nothing (a peer's failure is never the listener's), and the listener
 * drops the connection, counted as an authentication failure and logged
 * with the peer's address and `want`. Every wait bounded by WAIT_MS.
 */
static void expect_auth_drop(struct rdmig_listener *l, const char *what, const char *want)
{
	struct rdmig_listener_stats st, before;
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int64_t until = rdmig_now_ms() + WAIT_MS;
	int ret = -ETIMEDOUT;

	rdmig_listener_stats(l, &before);
	for (;;) {
		rdmig_listener_stats(l, &st);
		if (st.dropped > before.dropped || rdmig_now_ms() >= until)
			break;
		ret = rdmig_accept(l, 100, &c, &e);
		if (ret != -ETIMEDOUT)
			break;
		rdmig_err_clear(&e);
	}
	TH_CHECK(ret == -ETIMEDOUT && !c, "%s: rdmig_accept() hands out nothing (%d): %s", what,
		 ret, e.msg);
	TH_CHECK(st.auth_failed == before.auth_failed + 1 && st.dropped == before.dropped + 1 &&
		     has_s(st.last_drop, want) && has_s(st.last_drop, "from 127.0.0.1:"),
		 "%s: the listener dropped it (%llu dropped, %llu failed authentication): %s", what,
		 (unsigned long long)(st.dropped - before.dropped),
		 (unsigned long long)(st.auth_failed - before.auth_failed), st.last_drop);
	rdmig_conn_destroy(c);
}

static void check_nothing_exposed(const struct spy *sp)
{
	struct spy s;

	pthread_mutex_lock(&g_spy_lock);
	s = *sp;
	pthread_mutex_unlock(&g_spy_lock);
	TH_CHECK(s.ran, "the auth hook ran on the destination");
	TH_CHECK(s.st.regions_remote == 0 && s.st.rkeys_sent == 0 && s.st.regs_total == 0 &&
		     s.st.rings_remote == 0,
		 "destination counters after the failed handshake: regions_remote %llu, "
		 "rkeys_sent %llu, regs_total %llu, rings_remote %llu (all must be 0)",
		 (unsigned long long)s.st.regions_remote, (unsigned long long)s.st.rkeys_sent,
		 (unsigned long long)s.st.regs_total, (unsigned long long)s.st.rings_remote);
}

/* ---- two processes ------------------------------------------------------- */

typedef void (*dst_fn)(struct rdmig_listener *l);
typedef void (*src_fn)(uint16_t port);

/*
 * This process listens and runs `dst`; the source peer, this program again
 * at this same call, gets the port and runs `src`. 0 when both passed.
 */
static int run_pair(const struct rdmig_xport_cfg *lcfg, dst_fn dst, src_fn src)
{
	return th_pair_run_simple(lcfg, dst, src, WAIT_MS * 2) ? 0 : 1;
}

/* The pattern of round `round`: a different key per round. */
static void fill(uint8_t *p, size_t len, unsigned round)
{
	th_content_fill(p, 0, len, 0xa17c4ec0 + round, 0);
}

static size_t mismatches(const uint8_t *p, size_t len, unsigned round)
{
	uint64_t first;

	return th_content_compare(p, 0, len, 0xa17c4ec0 + round, 0, &first);
}

/* ---- keys on both sides: good and wrong ---------------------------------- */

static struct rdmig_auth_key g_ka, g_kb;
static struct spy g_spy;
static struct rdmig_xport_cfg g_scfg; /* the source's config, set before run_pair() */

/* Destination of a transfer: register, expose, wait for the fence, compare. */
static bool dst_transfer(struct rdmig_conn *c, uint8_t *mem, unsigned round)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_fence f;
	uint32_t id;
	int ret;

	ret = rdmig_reg(c, "ram", mem, REGION_LEN, RDMIG_REG_REMOTE_WRITE, &id, &e);
	if (!ret)
		ret = rdmig_expose(c, &e);
	if (!TH_CHECK_CALL(ret, &e, "register and expose"))
		return false;
	if (!TH_CHECK_CALL(rdmig_wait_fence(c, 0, WAIT_MS, &f, &e), &e, "fence"))
		return false;
	return TH_CHECK(mismatches(mem, REGION_LEN, round) == 0 && f.bytes == REGION_LEN,
			"%u bytes landed intact (fence says %llu)", REGION_LEN,
			(unsigned long long)f.bytes);
}

static int src_write(struct rdmig_conn *c, const uint8_t *mem, struct rdmig_err *e)
{
	uint32_t id;
	struct rdmig_run r = {.len = REGION_LEN};
	int ret;

	ret = rdmig_reg(c, "src", (void *)mem, REGION_LEN, 0, &id, e);
	if (ret)
		return ret;
	r.lreg = id;
	r.rreg = rdmig_remote_get(c, 0)->id;
	ret = rdmig_write(c, 0, &r, 1, e);
	return ret ? ret : rdmig_fence(c, 0, 1, e);
}

static void dst_good(struct rdmig_listener *l)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t *mem = th_map(REGION_LEN);

	if (TH_CHECK_CALL(rdmig_accept(l, WAIT_MS, &c, &e), &e, "accept with the right key"))
		dst_transfer(c, mem, 0);
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static void src_good(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t *mem = th_map(REGION_LEN);

	fill(mem, REGION_LEN, 0);
	g_scfg.port = port;
	if (TH_CHECK_CALL(rdmig_connect(&g_scfg, &c, &e), &e, "connect with the right key")) {
		int ret = rdmig_recv_layout(c, WAIT_MS, &e);

		if (!ret)
			ret = src_write(c, mem, &e);
		TH_CHECK_CALL(ret, &e, "write %u bytes and fence", REGION_LEN);
	}
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static void dst_wrong(struct rdmig_listener *l)
{
	expect_auth_drop(l, "accept refused", "authentication failed: peer does not know the key");
	check_nothing_exposed(&g_spy);
}

static void src_wrong(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	g_scfg.port = port;
	ret = rdmig_connect(&g_scfg, &c, &e);
	TH_CHECK(ret == -EACCES &&
		     has(&e, "authentication failed: the destination rejected our proof"),
		 "connect refused (%d): %s", ret, e.msg);
	rdmig_conn_destroy(c);
}

static int t_good(void)
{
	struct rdmig_xport_cfg lcfg;

	cfg_init(&lcfg, NULL, &g_ka);
	cfg_init(&g_scfg, NULL, &g_ka);
	return run_pair(&lcfg, dst_good, src_good);
}

static int t_wrong(void)
{
	struct rdmig_xport_cfg lcfg;

	cfg_init(&lcfg, &g_spy, &g_ka);
	cfg_init(&g_scfg, NULL, &g_kb);
	return run_pair(&lcfg, dst_wrong, src_wrong);
}

/* ---- one side without a key ---------------------------------------------- */

static void dst_keyed_src_none(struct rdmig_listener *l)
{
	expect_auth_drop(l, "keyed destination refuses an unkeyed source",
			 "authentication failed: the peer has no key configured");
	check_nothing_exposed(&g_spy);
}

static void src_none(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	g_scfg.port = port;
	ret = rdmig_connect(&g_scfg, &c, &e);
	if (!ret)
		ret = rdmig_recv_layout(c, WAIT_MS, &e);
	TH_CHECK(ret && has(&e, "authentication failed") && has(&e, "requires a key") &&
		     (!c || rdmig_remote_count(c) == 0),
		 "unkeyed source gets no layout (%d): %s", ret, e.msg);
	rdmig_conn_destroy(c);
}

static void dst_none(struct rdmig_listener *l)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint16_t type;
	uint8_t buf[64];
	size_t len;
	int ret;

	ret = rdmig_accept(l, WAIT_MS, &c, &e);
	if (!ret)
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &e);
	TH_CHECK(ret && has(&e, "requires a key"), "unkeyed destination is told (%d): %s", ret,
		 e.msg);
	rdmig_conn_destroy(c);
}

static void src_keyed_dst_none(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	int ret;

	g_scfg.port = port;
	ret = rdmig_connect(&g_scfg, &c, &e);
	TH_CHECK(ret == -EACCES && has(&e, "authentication failed: the peer has no key configured"),
		 "keyed source refuses an unkeyed destination (%d): %s", ret, e.msg);
	rdmig_conn_destroy(c);
}

static int t_nokey(void)
{
	struct rdmig_xport_cfg lcfg;
	int rc;

	cfg_init(&lcfg, &g_spy, &g_ka);
	cfg_init(&g_scfg, NULL, NULL);
	rc = run_pair(&lcfg, dst_keyed_src_none, src_none);
	cfg_init(&lcfg, NULL, NULL);
	cfg_init(&g_scfg, NULL, &g_ka);
	return run_pair(&lcfg, dst_none, src_keyed_dst_none) || rc;
}

/* ---- replay of a recorded handshake -------------------------------------- */

#define REC_MAX 4096

/* One frame: header and payload; returns the type, -1 on error. */
static int read_frame(int fd, uint8_t *buf, size_t cap, size_t *len)
{
	uint32_t plen;

	if (th_recv_all(fd, buf, RDMIG_WIRE_HDR_LEN, WAIT_MS, NULL))
		return -1;
	plen = rdmig_get_be32(buf + 8);
	if (plen > cap - RDMIG_WIRE_HDR_LEN ||
	    th_recv_all(fd, buf + RDMIG_WIRE_HDR_LEN, plen, WAIT_MS, NULL))
		return -1;
	*len = RDMIG_WIRE_HDR_LEN + plen;
	return buf[5];
}

/* The AUTH frames (type 3) recorded on the control socket, in order. */
static size_t auth_frames(const uint8_t *rec, size_t nrec, const uint8_t **f, size_t *flen,
			  size_t max)
{
	size_t off = RDMIG_WIRE_PDATA_LEN, n = 0;

	while (off + RDMIG_WIRE_HDR_LEN <= nrec && n < max) {
		uint32_t plen = rdmig_get_be32(rec + off + 8);

		if (off + RDMIG_WIRE_HDR_LEN + plen > nrec)
			break;
		if (rec[off + 5] == RDMIG_MSG_AUTH) {
			f[n] = rec + off;
			flen[n++] = RDMIG_WIRE_HDR_LEN + plen;
		}
		off += RDMIG_WIRE_HDR_LEN + plen;
	}
	return n;
}

static void dst_replay(struct rdmig_listener *l)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	uint8_t buf[64];
	uint16_t type;
	size_t len;
	int ret;

	ret = rdmig_accept(l, WAIT_MS, &c, &e);
	if (TH_CHECK_CALL(ret, &e, "genuine session through the relay")) {
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &e);
		if (!ret)
			ret = rdmig_ctrl_send(c, MSG_PING, "pong", 4, &e);
		TH_CHECK_CALL(ret, &e, "genuine session exchanged a message");
	}
	rdmig_conn_destroy(c);
	spy_reset(&g_spy);
	expect_auth_drop(l, "replayed handshake refused",
			 "authentication failed: peer does not know the key");
	check_nothing_exposed(&g_spy);
}

static void src_replay(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct th_relay *r = NULL;
	const uint8_t *f[4], *rec0, *rec1;
	size_t flen[4], nf, len, nrec0, nrec1;
	uint8_t buf[256];
	uint16_t type;
	int fd0 = -1, fd1 = -1, ret;

	if (!TH_CHECK_CALL(th_relay_start(port, REC_MAX, &r, &e), &e, "relay setup"))
		return;
	g_scfg.port = th_relay_port(r);
	ret = rdmig_connect(&g_scfg, &c, &e);
	if (!ret)
		ret = rdmig_ctrl_send(c, MSG_PING, "ping", 4, &e);
	if (!ret)
		ret = rdmig_ctrl_recv(c, &type, buf, sizeof(buf), &len, WAIT_MS, &e);
	TH_CHECK_CALL(ret, &e, "genuine session through the relay");
	rdmig_conn_destroy(c);
	th_relay_stop(r, WAIT_MS);
	/* What the source sent on its control and data sockets. */
	rec0 = th_relay_record(r, 0, 0, &nrec0);
	rec1 = th_relay_record(r, 1, 0, &nrec1);
	nf = auth_frames(rec0, nrec0, f, flen, 4);
	if (!TH_CHECK(nf == 2 && nrec1 >= RDMIG_WIRE_PDATA_LEN,
		      "recorded %zu AUTH frames of the source (expected 2), data HELLO %zu bytes",
		      nf, nrec1))
		goto out;

	/* Replay: same HELLOs, same client nonce, same proof, straight to the destination. */
	fd0 = th_tcp_connect(NULL, port, WAIT_MS);
	ret = fd0 >= 0 && !th_send_all(fd0, rec0, RDMIG_WIRE_PDATA_LEN, NULL) &&
	      !th_recv_all(fd0, buf, RDMIG_WIRE_PDATA_LEN, WAIT_MS, NULL);
	fd1 = ret ? th_tcp_connect(NULL, port, WAIT_MS) : -1;
	ret = ret && fd1 >= 0 && !th_send_all(fd1, rec1, RDMIG_WIRE_PDATA_LEN, NULL) &&
	      !th_recv_all(fd1, buf, RDMIG_WIRE_PDATA_LEN, WAIT_MS, NULL);
	if (TH_CHECK(ret, "replayed HELLOs accepted by the destination")) {
		int t;

		ret = !th_send_all(fd0, f[0], flen[0], NULL);
		t = ret ? read_frame(fd0, buf, sizeof(buf), &len) : -1;
		TH_CHECK(t == RDMIG_MSG_AUTH &&
			     len == RDMIG_WIRE_HDR_LEN + 4 + RDMIG_AUTH_NONCE_LEN,
			 "destination answered the replayed nonce with a fresh challenge");
		ret = t == RDMIG_MSG_AUTH && !th_send_all(fd0, f[1], flen[1], NULL);
		t = ret ? read_frame(fd0, buf, sizeof(buf), &len) : -1;
		TH_CHECK(t == RDMIG_MSG_AUTH && len >= RDMIG_WIRE_HDR_LEN + 5 &&
			     buf[RDMIG_WIRE_HDR_LEN] == RDMIG_AUTH_SERVER_PROOF &&
			     buf[RDMIG_WIRE_HDR_LEN + 4] == RDMIG_AUTH_REJECTED,
			 "replayed proof rejected by the destination");
		t = read_frame(fd0, buf, sizeof(buf), &len);
		TH_CHECK(t != RDMIG_MSG_LAYOUT, "no LAYOUT (no rkey) after the replay");
	}
out:
	if (fd0 >= 0)
		close(fd0);
	if (fd1 >= 0)
		close(fd1);
	th_relay_destroy(r);
}

static int t_replay(void)
{
	struct rdmig_xport_cfg lcfg;

	cfg_init(&lcfg, &g_spy, &g_ka);
	cfg_init(&g_scfg, NULL, &g_ka);
	return run_pair(&lcfg, dst_replay, src_replay);
}

/* ---- key files ----------------------------------------------------------- */

/* One key file of `len` bytes of `text`; the result of loading it; the key into *k. */
static int load_bytes(const char *name, const void *text, size_t len, struct rdmig_auth_key *k,
		      struct rdmig_err *e)
{
	char path[300];

	th_tmp_path(path, sizeof(path), name);
	if (th_write_file(path, text, len, 0600, e))
		return -EIO;
	return rdmig_auth_key_load(path, k, e);
}

/* The exact rules: one line ending, limits on the stored bytes, a lone CR kept. */
static void rules_of_key_files(void)
{
	static uint8_t big[4096];
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_auth_key k, *pk = NULL;
	int ret;

	memset(big, 'k', sizeof(big));
	ret = load_bytes("crlf.key", "0123456789abcdefghij\r\n", 22, &k, &e);
	TH_CHECK(!ret && k.len == 20 && !memcmp(k.key, "0123456789abcdefghij", 20),
		 "CRLF ending dropped: %d, %zu bytes %s", ret, k.len, e.msg);
	ret = load_bytes("cr.key", "0123456789abcdefghij\r", 21, &k, &e);
	TH_CHECK(!ret && k.len == 21 && k.key[20] == '\r',
		 "a lone trailing CR is part of the key: %d, %zu bytes %s", ret, k.len, e.msg);
	ret = load_bytes("nlnl.key", "0123456789abcdefghij\n\n", 22, &k, &e);
	TH_CHECK(!ret && k.len == 21 && k.key[20] == '\n',
		 "only one line ending is dropped: %d, %zu bytes %s", ret, k.len, e.msg);
	ret = load_bytes("max.key", big, RDMIG_AUTH_KEY_MAX, &k, &e);
	TH_CHECK(!ret && k.len == RDMIG_AUTH_KEY_MAX && k.key[RDMIG_AUTH_KEY_MAX - 1] == 'k',
		 "a key of exactly %d bytes loads whole: %d, %zu bytes %s", RDMIG_AUTH_KEY_MAX, ret,
		 k.len, e.msg);
	rdmig_err_clear(&e);
	big[RDMIG_AUTH_KEY_MAX] = '\n';
	ret = load_bytes("maxnl.key", big, RDMIG_AUTH_KEY_MAX + 1, &k, &e);
	TH_CHECK(ret == -EFBIG && has(&e, "1025 bytes") && has(&e, "limit of 1024") && k.len == 0,
		 "%d bytes and a newline refused on the stored size, not cut: %s",
		 RDMIG_AUTH_KEY_MAX, e.msg);
	rdmig_err_clear(&e);
	ret = load_bytes("big.key", big, sizeof(big), &k, &e);
	TH_CHECK(ret == -EFBIG && has(&e, "4096 bytes") && has(&e, "limit of 1024") &&
		     has(&e, "big.key"),
		 "a 4096-byte file refused with its size and the limit: %s", e.msg);
	rdmig_err_clear(&e);
	ret = load_bytes("short.crlf.key", "0123456789abcde\r\n", 17, &k, &e);
	TH_CHECK(ret == -EINVAL && has(&e, "holds 15 bytes") && has(&e, "at least 16"),
		 "15 bytes and CRLF refused as too short: %s", e.msg);
	rdmig_err_clear(&e);
	/* The tools' loader: its own locked page, wiped and unmapped by the free. */
	ret = rdmig_auth_key_new(g_key_a, &pk, &e);
	TH_CHECK(!ret && pk && pk->len == 33 && !memcmp(pk->key, "0123456789abcdef-key-A-", 23),
		 "rdmig_auth_key_new loads the key file: %d %s", ret, e.msg);
	rdmig_auth_key_free(pk);
	pk = NULL;
	ret = rdmig_auth_key_new(g_key_open, &pk, &e);
	TH_CHECK(ret == -EACCES && !pk, "rdmig_auth_key_new keeps the mode rule: %s", e.msg);
	rdmig_err_clear(&e);
	rdmig_auth_key_wipe(&k);
	TH_CHECK(k.len == 0 && k.key[0] == 0, "rdmig_auth_key_wipe clears the key");
}

static int t_keyfile(void)
{
	struct rdmig_auth_key k;
	struct rdmig_err e = RDMIG_ERR_INIT;
	char missing[300];
	int ret;

	th_set_role("key");
	ret = rdmig_auth_key_load(g_key_open, &k, &e);
	TH_CHECK(ret == -EACCES && has(&e, "mode 0644") && has(&e, "chmod 600") &&
		     has(&e, g_key_open),
		 "mode 0644 refused: %s", e.msg);
	rdmig_err_clear(&e);
	ret = rdmig_auth_key_load(g_key_short, &k, &e);
	TH_CHECK(ret == -EINVAL && has(&e, "at least 16"), "short key refused: %s", e.msg);
	rdmig_err_clear(&e);
	th_tmp_path(missing, sizeof(missing), "none.key");
	ret = rdmig_auth_key_load(missing, &k, &e);
	TH_CHECK(ret == -ENOENT && has(&e, missing), "missing file: %s", e.msg);
	rdmig_err_clear(&e);
	ret = rdmig_auth_key_load(g_key_a, &k, &e);
	TH_CHECK(!ret && k.len == 33, "0600 key loads, trailing newline dropped (%zu bytes)",
		 k.len);
	rules_of_key_files();
	setenv(RDMIG_KEY_FILE_ENV, g_key_b, 1);
	TH_CHECK(!strcmp(rdmig_auth_key_path(NULL), g_key_b) &&
		     !strcmp(rdmig_auth_key_path(g_key_a), g_key_a),
		 "RDMIG_KEY_FILE is the default, an option overrides it");
	unsetenv(RDMIG_KEY_FILE_ENV);
	TH_CHECK(rdmig_auth_key_path(NULL) == NULL, "no option, no environment: no key");
	{
		struct rdmig_auth_key *none = NULL;
		int r = rdmig_auth_key_new(NULL, &none, &e);

		TH_CHECK(r == 1 && !none, "rdmig_auth_key_new without a key file: %d", r);
	}
	rdmig_auth_key_wipe(&k);
	return th_failures() ? 1 : 0;
}

/* ---- revocation ---------------------------------------------------------- */

static bool g_cancel;

/*
 * Round 0 lands; then the destination revokes (after commit, or on cancel
 * mid-migration as engine/dest.c does) and tells the source, which writes
 * round 1 with its old layout: the WRITE frame must be refused, the
 * connection fail and no byte of round 1 land.
 */
static void dst_revoke(struct rdmig_listener *l)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_xport_stats st;
	struct rdmig_conn *c = NULL;
	struct rdmig_fence f;
	uint8_t *mem = th_map(REGION_LEN);
	uint8_t step = g_cancel ? 2 : 1;
	uint64_t before;
	int ret;

	if (!TH_CHECK_CALL(rdmig_accept(l, WAIT_MS, &c, &e), &e, "accept"))
		goto out;
	if (!dst_transfer(c, mem, 0))
		goto out;
	rdmig_revoke(c);
	rdmig_xport_stats(c, &st);
	before = st.bytes_received;
	TH_CHECK(st.regions_remote == 0 && st.deregs_total == st.regs_total,
		 "revoked after %s: regions_remote %llu, %llu of %llu registrations undone",
		 g_cancel ? "cancel" : "commit", (unsigned long long)st.regions_remote,
		 (unsigned long long)st.deregs_total, (unsigned long long)st.regs_total);
	if (!TH_CHECK_CALL(rdmig_ctrl_send(c, MSG_GO, &step, 1, &e), &e, "tell the source"))
		goto out;
	ret = rdmig_wait_fence(c, 0, WAIT_MS, &f, &e);
	rdmig_xport_stats(c, &st);
	TH_CHECK(ret && rdmig_conn_failed(c, NULL), "stale WRITE frame refused (%d): %s", ret,
		 e.msg);
	TH_CHECK(st.bytes_received == before && mismatches(mem, REGION_LEN, 0) == 0,
		 "no byte landed after revoke (%llu bytes received before, %llu after)",
		 (unsigned long long)before, (unsigned long long)st.bytes_received);
out:
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static void src_revoke(uint16_t port)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	struct rdmig_conn *c = NULL;
	struct rdmig_run r = {.len = REGION_LEN};
	uint8_t *mem = th_map(REGION_LEN);
	uint8_t step = 0;
	uint16_t type;
	size_t len;
	uint32_t id;
	int ret;

	fill(mem, REGION_LEN, 0);
	g_scfg.port = port;
	ret = rdmig_connect(&g_scfg, &c, &e);
	if (!ret)
		ret = rdmig_recv_layout(c, WAIT_MS, &e);
	if (!ret)
		ret = src_write(c, mem, &e);
	if (!TH_CHECK_CALL(ret, &e, "round 0 written"))
		goto out;
	ret = rdmig_ctrl_recv(c, &type, &step, 1, &len, WAIT_MS, &e);
	if (!TH_CHECK_CALL(ret, &e, "destination revoked") ||
	    !TH_CHECK_UINT(type, ==, MSG_GO, "destination revoked: message type"))
		goto out;
	/* A stale source: writes again with the layout it was given before. */
	fill(mem, REGION_LEN, 1);
	rdmig_reg(c, "src1", mem, REGION_LEN, 0, &id, &e);
	r.lreg = id;
	r.rreg = rdmig_remote_get(c, 0)->id;
	ret = rdmig_write(c, 0, &r, 1, &e);
	if (!ret)
		ret = rdmig_fence(c, 0, 2, &e);
	/* The local send may succeed; the destination's verdict is what counts. */
	th_note("stale write after revoke returned %d%s%s", ret, ret ? ": " : "", ret ? e.msg : "");
out:
	rdmig_conn_destroy(c);
	munmap(mem, REGION_LEN);
}

static int t_revoke(bool cancel)
{
	struct rdmig_xport_cfg lcfg;

	g_cancel = cancel;
	cfg_init(&lcfg, NULL, &g_ka);
	cfg_init(&g_scfg, NULL, &g_ka);
	return run_pair(&lcfg, dst_revoke, src_revoke);
}

static int t_revoke_commit(void)
{
	return t_revoke(false);
}

static int t_revoke_cancel(void)
{
	return t_revoke(true);
}

int main(int argc, char **argv)
{
	static const struct th_mode modes[] = {
	    {"good", t_good},
	    {"wrong", t_wrong},
	    {"nokey", t_nokey},
	    {"replay", t_replay},
	    {"keyfile", t_keyfile},
	    {"revoke-commit", t_revoke_commit},
	    {"revoke-cancel", t_revoke_cancel},
	    {NULL, NULL},
	};
	const struct th_mode *m = th_mode_find(modes, argc == 2 ? argv[1] : NULL);
	int rc;

	th_init(argc, argv);
	if (!m) {
		fprintf(stderr, "usage: auth_check good|wrong|nokey|replay|keyfile|"
				"revoke-commit|revoke-cancel\n");
		return TH_EXIT_USAGE;
	}
	th_set_verbose(true);
	make_keys();
	load_key(g_key_a, &g_ka);
	load_key(g_key_b, &g_kb);
	rc = m->run();
	th_set_role(NULL);
	return th_summary(m->name, rc == 0);
}
