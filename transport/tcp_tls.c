/* SPDX-License-Identifier: MIT */
/*
 * tcp backend, TLS sessions (cfg.tls): a TLS 1.3 context that only accepts
 * an external PSK derived from the pre-shared key (no certificates), and the
 * connector's handshake (the acceptor's runs in tcp_listen.c's accept loop).
 * The bytes themselves, and what OpenSSL's results mean, are in tcp_io.c.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/hmac.h>

#include "tcp_int.h"

#define TCP_PSK_ID "rdmig-tls-psk-v1"

/* The TLS PSK: HMAC-SHA256 of a fixed label under the pre-shared key. */
static int tls_psk_derive(const uint8_t *key, size_t len, uint8_t *psk)
{
	static const char label[] = "rdmig tls 1.3 external psk v1";
	unsigned int n = TCP_PSK_LEN;

	if (!HMAC(EVP_sha256(), key, (int)len, (const unsigned char *)label, sizeof(label) - 1, psk,
		  &n) ||
	    n != TCP_PSK_LEN)
		return -EIO;
	return 0;
}

/* A TLS 1.3 session holding the external PSK (TLS_AES_128_GCM_SHA256). */
static SSL_SESSION *tls_psk_session(SSL *ssl, const uint8_t *psk)
{
	static const unsigned char suite[2] = {0x13, 0x01};
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, suite);
	SSL_SESSION *s;

	if (!cipher || !psk)
		return NULL;
	s = SSL_SESSION_new();
	if (!s || !SSL_SESSION_set1_master_key(s, psk, TCP_PSK_LEN) ||
	    !SSL_SESSION_set_cipher(s, cipher) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static int tls_use_session(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
			   SSL_SESSION **sess)
{
	SSL_SESSION *s = tls_psk_session(ssl, SSL_get_app_data(ssl));

	*sess = NULL;
	if (!s)
		return 0;
	if (md && EVP_MD_get_type(md) != EVP_MD_get_type(SSL_CIPHER_get_handshake_digest(
					     SSL_SESSION_get0_cipher(s)))) {
		/* Not usable with the hash this handshake settled on: offer no PSK. */
		SSL_SESSION_free(s);
		return 1;
	}
	*id = (const unsigned char *)TCP_PSK_ID;
	*idlen = strlen(TCP_PSK_ID);
	*sess = s;
	return 1;
}

static int tls_find_session(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	*sess = NULL;
	if (idlen != strlen(TCP_PSK_ID) || memcmp(id, TCP_PSK_ID, idlen))
		return 1; /* unknown identity: no PSK, the handshake fails */
	*sess = tls_psk_session(ssl, SSL_get_app_data(ssl));
	return *sess ? 1 : 0;
}

int tcp_tls_ctx_new(const struct rdmig_xport_cfg *cfg, bool server, SSL_CTX **out, uint8_t *psk,
		    struct rdmig_err *err)
{
	char why[256];
	SSL_CTX *ctx;

	*out = NULL;
	if (!cfg->tls)
		return 0;
	ERR_clear_error();
	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
	    !SSL_CTX_set_num_tickets(ctx, 0) ||
	    tls_psk_derive(cfg->tls_key, cfg->tls_key_len, psk)) {
		SSL_CTX_free(ctx);
		return rdmig_seterr(err, -ENOMEM, "TLS: cannot set up a context: %s",
				    tcp_tls_reason(why, sizeof(why)));
	}
	/* Framing detects truncation; a peer's plain close is end of file. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (server)
		SSL_CTX_set_psk_find_session_callback(ctx, tls_find_session);
	else
		SSL_CTX_set_psk_use_session_callback(ctx, tls_use_session);
	*out = ctx;
	return 0;
}

SSL *tcp_tls_new(SSL_CTX *ctx, int fd, uint8_t *psk, bool server)
{
	SSL *ssl = SSL_new(ctx);

	if (!ssl)
		return NULL;
	if (!SSL_set_fd(ssl, fd)) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_app_data(ssl, psk);
	if (server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	return ssl;
}

bool tcp_tls_not_tls(void)
{
	unsigned long e = ERR_peek_last_error();
	int r = ERR_GET_REASON(e);

	return ERR_GET_LIB(e) == ERR_LIB_SSL &&
	       (r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_UNKNOWN_PROTOCOL ||
		r == SSL_R_HTTP_REQUEST || r == SSL_R_PACKET_LENGTH_TOO_LONG ||
		r == SSL_R_RECORD_LENGTH_MISMATCH);
}

int tcp_tls_connect(struct tcp_conn *tc, int fd, SSL **out, const char *what, int64_t deadline,
		    struct rdmig_err *err)
{
	char why[256];
	short ev;
	int n, saved, ret;
	ssize_t r;

	ret = tcp_set_nonblock(fd, true);
	if (ret)
		return rdmig_seterr_errno(err, ret, "TLS on the %s to %s", what, tc->peer);
	*out = tcp_tls_new(tc->tls_ctx, fd, tc->tls_psk, false);
	if (!*out)
		return rdmig_seterr(err, -ENOMEM, "TLS on the %s to %s: %s", what, tc->peer,
				    tcp_tls_reason(why, sizeof(why)));
	for (;;) {
		ERR_clear_error();
		errno = 0;
		n = SSL_do_handshake(*out);
		saved = errno;
		if (n == 1)
			return 0;
		ev = POLLIN;
		r = tcp_tls_result(*out, n, saved, &ev);
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN) {
			ret = tcp_wait_fd(fd, ev, deadline);
			if (ret == -ETIMEDOUT)
				return rdmig_seterr(err, ret,
						    "no TLS handshake from %s on the %s within %d "
						    "ms: does the listener run with --tls?",
						    tc->peer, what,
						    tc->base.cfg.connect_timeout_ms);
			if (ret)
				return rdmig_seterr_errno(err, ret, "TLS handshake with %s",
							  tc->peer);
			continue;
		}
		if (r == -EPROTO && tcp_tls_not_tls())
			return rdmig_seterr(
			    err, -EPROTO,
			    "%s answered the TLS handshake on the %s in plain text: "
			    "the listener does not run with --tls (both sides must)",
			    tc->peer, what);
		if (r == -EPROTO)
			return rdmig_seterr(
			    err, -EACCES,
			    "TLS handshake with %s on the %s failed (%s): both sides "
			    "need --tls and the same --key-file",
			    tc->peer, what, tcp_tls_reason(why, sizeof(why)));
		return rdmig_seterr(err, -ECONNRESET,
				    "%s closed the %s during the TLS handshake: does the listener "
				    "run with --tls and the same --key-file?",
				    tc->peer, what);
	}
}
