/* SPDX-License-Identifier: MIT */
/*
 * Mutual HMAC-SHA256 challenge-response on a pre-shared key.
 *
 *   connector                                 acceptor
 *   CLIENT_NONCE  nonce_c            ->
 *                                    <-       SERVER_NONCE  nonce_s
 *   CLIENT_PROOF  HMAC(K, T(connector))  ->   checks it
 *                                    <-       SERVER_PROOF  status, HMAC(K, T(acceptor))
 *   checks it
 *
 * T(role) = "rdmig-auth-v1" 0 || role || nchan || nonce_c || nonce_s.
 * Both nonces are fresh on each side every time, so a recorded proof never
 * matches a new challenge (replay); the role is in the transcript and the
 * acceptor only ever computes acceptor proofs, so a proof cannot be
 * reflected back to the side that made it. The connector proves first: an
 * unauthenticated connector never sees a MAC of the acceptor's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "auth_wire.h"
#include "xport.h"

#define AUTH_LABEL "rdmig-auth-v1"

/* ---- messages ---------------------------------------------------------- */

static size_t body_len(unsigned step)
{
	switch (step) {
	case RDMIG_AUTH_CLIENT_NONCE:
	case RDMIG_AUTH_SERVER_NONCE:
		return RDMIG_AUTH_NONCE_LEN;
	case RDMIG_AUTH_CLIENT_PROOF:
		return RDMIG_AUTH_MAC_LEN;
	case RDMIG_AUTH_SERVER_PROOF:
		return 4 + RDMIG_AUTH_MAC_LEN;
	default:
		return 0;
	}
}

int rdmig_auth_msg_decode(const uint8_t *buf, size_t len, unsigned want_step, const uint8_t **body,
			  struct rdmig_err *err)
{
	size_t want = body_len(want_step);

	if (!want)
		return rdmig_seterr(err, -EINVAL, "unknown AUTH step %u", want_step);
	if (len < RDMIG_AUTH_HDR_LEN)
		return rdmig_seterr(err, -EPROTO, "malformed AUTH message: %zu bytes", len);
	if (buf[1] != RDMIG_AUTH_VERSION)
		return rdmig_seterr(err, -EPROTO,
				    "AUTH version %u, this side speaks %d: upgrade the older side",
				    buf[1], RDMIG_AUTH_VERSION);
	if (buf[0] != want_step)
		return rdmig_seterr(err, -EPROTO, "malformed AUTH message: step %u, expected %u",
				    buf[0], want_step);
	if (buf[2] || buf[3])
		return rdmig_seterr(err, -EPROTO, "malformed AUTH message: reserved bytes set");
	if (len != RDMIG_AUTH_HDR_LEN + want)
		return rdmig_seterr(err, -EPROTO,
				    "malformed AUTH message: step %u of %zu bytes, expected %zu",
				    want_step, len, RDMIG_AUTH_HDR_LEN + want);
	*body = buf + RDMIG_AUTH_HDR_LEN;
	return 0;
}

static size_t msg_put(uint8_t *buf, unsigned step, const void *body, size_t len)
{
	buf[0] = (uint8_t)step;
	buf[1] = RDMIG_AUTH_VERSION;
	buf[2] = 0;
	buf[3] = 0;
	memcpy(buf + RDMIG_AUTH_HDR_LEN, body, len);
	return RDMIG_AUTH_HDR_LEN + len;
}

int rdmig_auth_mac(const struct rdmig_auth_key *key, unsigned role, unsigned nchan,
		   const uint8_t *nonce_c, const uint8_t *nonce_s, uint8_t *mac,
		   struct rdmig_err *err)
{
	uint8_t t[sizeof(AUTH_LABEL) + 4 + 2 * RDMIG_AUTH_NONCE_LEN];
	unsigned int maclen = 0;
	size_t n = 0;

	memcpy(t, AUTH_LABEL, sizeof(AUTH_LABEL)); /* with its NUL */
	n += sizeof(AUTH_LABEL);
	rdmig_put_be16(t + n, (uint16_t)role);
	n += 2;
	rdmig_put_be16(t + n, (uint16_t)nchan);
	n += 2;
	memcpy(t + n, nonce_c, RDMIG_AUTH_NONCE_LEN);
	n += RDMIG_AUTH_NONCE_LEN;
	memcpy(t + n, nonce_s, RDMIG_AUTH_NONCE_LEN);
	n += RDMIG_AUTH_NONCE_LEN;
	if (!HMAC(EVP_sha256(), key->key, (int)key->len, t, n, mac, &maclen) ||
	    maclen != RDMIG_AUTH_MAC_LEN)
		return rdmig_seterr(err, -EIO, "HMAC-SHA256 failed in libcrypto");
	return 0;
}

/* ---- the exchange ------------------------------------------------------ */

struct auth_run {
	struct rdmig_conn *c;
	const struct rdmig_auth_key *key;
	int timeout_ms;
	uint8_t nc[RDMIG_AUTH_NONCE_LEN];
	uint8_t ns[RDMIG_AUTH_NONCE_LEN];
	uint8_t mac[RDMIG_AUTH_MAC_LEN];
};

static int send_step(struct auth_run *a, unsigned step, const void *body, size_t len,
		     struct rdmig_err *err)
{
	uint8_t buf[RDMIG_AUTH_MSG_MAX];
	int ret;

	ret = rdmig_auth_send(a->c, buf, msg_put(buf, step, body, len), err);
	OPENSSL_cleanse(buf, sizeof(buf));
	return ret;
}

static int recv_step(struct auth_run *a, unsigned step, uint8_t *buf, const uint8_t **body,
		     struct rdmig_err *err)
{
	size_t len = 0;
	int ret;

	ret = rdmig_auth_recv(a->c, buf, RDMIG_AUTH_MSG_MAX, &len, a->timeout_ms, err);
	if (ret == -ETIMEDOUT)
		return rdmig_seterr(err, ret, "no answer from the peer within %d ms",
				    a->timeout_ms);
	if (ret)
		return ret;
	return rdmig_auth_msg_decode(buf, len, step, body, err);
}

static int fresh_nonce(uint8_t *n, struct rdmig_err *err)
{
	if (RAND_bytes(n, RDMIG_AUTH_NONCE_LEN) != 1)
		return rdmig_seterr(err, -EIO, "no random nonce: libcrypto RAND_bytes failed");
	return 0;
}

/* Tell the peer why, best effort: its next receive fails with our message. */
static void tell_peer(struct rdmig_conn *c, int code, const char *msg)
{
	rdmig_ctrl_send_error(c, code, msg, NULL);
}

/* The exchange's buffers: MACs and message copies, wiped whatever the outcome. */
struct auth_bufs {
	uint8_t msg[RDMIG_AUTH_MSG_MAX];
	uint8_t want[RDMIG_AUTH_MAC_LEN];
	uint8_t body[4 + RDMIG_AUTH_MAC_LEN];
};

static int run_connector(struct auth_run *a, struct auth_bufs *b, struct rdmig_err *err)
{
	unsigned nchan = rdmig_conn_channels(a->c);
	const uint8_t *p;
	int ret;

	ret = fresh_nonce(a->nc, err);
	if (!ret)
		ret = send_step(a, RDMIG_AUTH_CLIENT_NONCE, a->nc, sizeof(a->nc), err);
	if (!ret)
		ret = recv_step(a, RDMIG_AUTH_SERVER_NONCE, b->msg, &p, err);
	if (ret)
		return ret;
	memcpy(a->ns, p, sizeof(a->ns));
	ret = rdmig_auth_mac(a->key, RDMIG_ROLE_CONNECTOR, nchan, a->nc, a->ns, a->mac, err);
	if (!ret)
		ret = send_step(a, RDMIG_AUTH_CLIENT_PROOF, a->mac, sizeof(a->mac), err);
	if (!ret)
		ret = recv_step(a, RDMIG_AUTH_SERVER_PROOF, b->msg, &p, err);
	if (ret)
		return ret;
	memcpy(b->body, p, sizeof(b->body));
	if (b->body[0] == RDMIG_AUTH_REJECTED)
		return rdmig_seterr(err, -EACCES,
				    "the destination rejected our proof (is "
				    "this the key the destination uses?)");
	if (b->body[0] != RDMIG_AUTH_ACCEPTED || b->body[1] || b->body[2] || b->body[3])
		return rdmig_seterr(err, -EPROTO, "malformed AUTH message: status %u", b->body[0]);
	ret = rdmig_auth_mac(a->key, RDMIG_ROLE_ACCEPTOR, nchan, a->nc, a->ns, b->want, err);
	if (ret)
		return ret;
	if (CRYPTO_memcmp(b->want, b->body + 4, sizeof(b->want))) {
		tell_peer(a->c, -EACCES, "authentication failed: the source rejected our proof");
		return rdmig_seterr(err, -EACCES, "peer does not know the key");
	}
	return 0;
}

static int run_acceptor(struct auth_run *a, struct auth_bufs *b, struct rdmig_err *err)
{
	unsigned nchan = rdmig_conn_channels(a->c);
	const uint8_t *p;
	int ret;

	ret = recv_step(a, RDMIG_AUTH_CLIENT_NONCE, b->msg, &p, err);
	if (ret)
		return ret;
	memcpy(a->nc, p, sizeof(a->nc));
	ret = fresh_nonce(a->ns, err);
	if (!ret)
		ret = send_step(a, RDMIG_AUTH_SERVER_NONCE, a->ns, sizeof(a->ns), err);
	if (!ret)
		ret = recv_step(a, RDMIG_AUTH_CLIENT_PROOF, b->msg, &p, err);
	if (!ret)
		ret =
		    rdmig_auth_mac(a->key, RDMIG_ROLE_CONNECTOR, nchan, a->nc, a->ns, b->want, err);
	if (ret)
		return ret;
	memset(b->body, 0, sizeof(b->body));
	if (CRYPTO_memcmp(b->want, p, sizeof(b->want))) {
		/* No MAC of ours goes to a peer that has not proved itself. */
		b->body[0] = RDMIG_AUTH_REJECTED;
		send_step(a, RDMIG_AUTH_SERVER_PROOF, b->body, sizeof(b->body), NULL);
		return rdmig_seterr(err, -EACCES, "peer does not know the key");
	}
	b->body[0] = RDMIG_AUTH_ACCEPTED;
	ret = rdmig_auth_mac(a->key, RDMIG_ROLE_ACCEPTOR, nchan, a->nc, a->ns, b->body + 4, err);
	if (!ret)
		ret = send_step(a, RDMIG_AUTH_SERVER_PROOF, b->body, sizeof(b->body), err);
	return ret;
}

int rdmig_auth_psk(struct rdmig_conn *c, bool is_server, void *ctx, struct rdmig_err *err)
{
	struct auth_bufs b;
	struct auth_run a;
	int ret;

	if (!ctx || !((const struct rdmig_auth_key *)ctx)->len)
		return rdmig_seterr(err, -EINVAL, "no key loaded for the auth hook");
	if (!(c->peer_caps & RDMIG_CAP_AUTH)) {
		tell_peer(c, -EACCES,
			  "authentication failed: the other end requires a key; run this side with "
			  "the same --key-file or RDMIG_KEY_FILE");
		return rdmig_seterr(err, -EACCES,
				    "the peer has no key configured (start it with the same "
				    "--key-file or RDMIG_KEY_FILE)");
	}
	memset(&a, 0, sizeof(a));
	a.c = c;
	a.key = ctx;
	a.timeout_ms = c->cfg.connect_timeout_ms > 0 ? c->cfg.connect_timeout_ms : 10000;
	ret = is_server ? run_acceptor(&a, &b, err) : run_connector(&a, &b, err);
	OPENSSL_cleanse(&a, sizeof(a));
	OPENSSL_cleanse(&b, sizeof(b));
	return ret;
}
