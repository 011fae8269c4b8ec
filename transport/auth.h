/* SPDX-License-Identifier: MIT */
/*
 * Pre-shared-key authentication of a connection, before anything is exposed.
 *
 * rdmig_auth_psk() is an rdmig_auth_fn: set cfg.auth = rdmig_auth_psk and
 * cfg.auth_ctx = a loaded struct rdmig_auth_key on both sides. It runs a
 * mutual HMAC-SHA256 challenge-response over AUTH frames (docs/protocol.md,
 * "Authentication"; docs/security.md for what it does and does not protect).
 * The key is read from a file that only its owner may access
 * (transport/auth_key.c).
 */
#ifndef RDMIG_AUTH_H
#define RDMIG_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rdmig/err.h"
#include "rdmig/transport.h"

#define RDMIG_AUTH_KEY_MIN   16
#define RDMIG_AUTH_KEY_MAX   1024
#define RDMIG_AUTH_NONCE_LEN 32
#define RDMIG_AUTH_MAC_LEN   32 /* HMAC-SHA256 */
#define RDMIG_AUTH_VERSION   1
#define RDMIG_KEY_FILE_ENV   "RDMIG_KEY_FILE"

/* AUTH frame payloads: step byte, version byte, 2 reserved, then the body. */
enum rdmig_auth_step {
	RDMIG_AUTH_CLIENT_NONCE = 1, /* connector -> acceptor: nonce_c */
	RDMIG_AUTH_SERVER_NONCE = 2, /* acceptor -> connector: nonce_s */
	RDMIG_AUTH_CLIENT_PROOF = 3, /* connector -> acceptor: HMAC(connector transcript) */
	RDMIG_AUTH_SERVER_PROOF = 4, /* acceptor -> connector: status, HMAC(acceptor transcript) */
};
#define RDMIG_AUTH_HDR_LEN  4
#define RDMIG_AUTH_MSG_MAX  (RDMIG_AUTH_HDR_LEN + 4 + RDMIG_AUTH_MAC_LEN)
#define RDMIG_AUTH_ACCEPTED 0
#define RDMIG_AUTH_REJECTED 1

struct rdmig_auth_key {
	uint8_t key[RDMIG_AUTH_KEY_MAX];
	size_t len;
};

/*
 * Key files (transport/auth_key.c). A key file is a regular file that
 * neither group nor others may access, of at most RDMIG_AUTH_KEY_MAX bytes
 * as stored (a longer file is refused with its size and the limit, never
 * cut). One line ending, "\n" or "\r\n", is then dropped (editors and echo
 * add one; a lone "\r" is part of the key), and what remains must be at
 * least RDMIG_AUTH_KEY_MIN bytes. Errors name the file and what to do.
 *
 * A loaded key lives until rdmig_auth_key_wipe() (or rdmig_auth_key_free()),
 * which every owner calls on every way out; the loaders wipe their own
 * buffers. The key must outlive every listener and connection whose
 * cfg.auth_ctx (or cfg.tls_key, read only during rdmig_listen() and
 * rdmig_connect()) points at it.
 */
int rdmig_auth_key_load(const char *path, struct rdmig_auth_key *key, struct rdmig_err *err);
/*
 * The rules above applied to the `len` bytes of a key file's content (`path`
 * names it in messages). Exposed for tests and fuzzing.
 */
int rdmig_auth_key_parse(const uint8_t *raw, size_t len, const char *path,
			 struct rdmig_auth_key *key, struct rdmig_err *err);
/* Wipe a key from memory (explicit_bzero: never optimised away). NULL is fine. */
void rdmig_auth_key_wipe(struct rdmig_auth_key *key);

/*
 * The key file to use: `opt` if given, else $RDMIG_KEY_FILE if set and not
 * empty, else NULL (unauthenticated).
 */
const char *rdmig_auth_key_path(const char *opt);

/*
 * For the tools: load the key named by `opt` or $RDMIG_KEY_FILE. Returns 1
 * when neither names one (the caller prints RDMIG_AUTH_NO_KEY_WARNING and
 * runs unauthenticated), 0 when *key is loaded, or a negative errno (*key
 * is then wiped).
 */
int rdmig_auth_key_from_opt(const char *opt, struct rdmig_auth_key *key, struct rdmig_err *err);

/*
 * The same into memory of the key's own: a page locked against swapping
 * (when the memlock limit allows) and left out of core dumps. *out is NULL
 * when the result is not 0. Release with rdmig_auth_key_free(), which wipes.
 */
int rdmig_auth_key_new(const char *opt, struct rdmig_auth_key **out, struct rdmig_err *err);
/* Wipe, unlock and unmap a key from rdmig_auth_key_new(); NULL is fine. */
void rdmig_auth_key_free(struct rdmig_auth_key *key);
#define RDMIG_AUTH_NO_KEY_WARNING                                                                  \
	"rdmig: warning: no --key-file: the peer is not authenticated (fine for local testing "    \
	"only)"

/* The hook. ctx is a const struct rdmig_auth_key *. */
int rdmig_auth_psk(struct rdmig_conn *c, bool is_server, void *ctx, struct rdmig_err *err);

/*
 * HMAC over the transcript of one side's proof: "rdmig-auth-v1", the
 * proving role (enum rdmig_role), the channel count, nonce_c, nonce_s.
 * Exposed for tests and fuzzing.
 */
int rdmig_auth_mac(const struct rdmig_auth_key *key, unsigned role, unsigned nchan,
		   const uint8_t *nonce_c, const uint8_t *nonce_s, uint8_t *mac,
		   struct rdmig_err *err);

/*
 * Decode one AUTH payload: checks step, version, reserved bytes and exact
 * length; *body points at the step's body. Exposed for fuzzing.
 */
int rdmig_auth_msg_decode(const uint8_t *buf, size_t len, unsigned want_step, const uint8_t **body,
			  struct rdmig_err *err);

#endif
