/* SPDX-License-Identifier: MIT */
/*
 * Pre-shared-key authentication of a connection, before anything is exposed.
 *
 * rdmig_auth_psk() is an rdmig_auth_fn: set cfg.auth = rdmig_auth_psk and
 * cfg.auth_ctx = a loaded struct rdmig_auth_key on both sides. It runs a
 * mutual HMAC-SHA256 challenge-response (docs/protocol.md, "Authentication";
 * docs/security.md for what it does and does not protect). The key is read
 * from a file that only its owner may access.
 */
#ifndef RDMIG_AUTH_H
#define RDMIG_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rdmig/err.h"
#include "rdmig/transport.h"

#pragma GCC visibility push(default)

#define RDMIG_AUTH_KEY_MIN 16
#define RDMIG_AUTH_KEY_MAX 1024
#define RDMIG_KEY_FILE_ENV "RDMIG_KEY_FILE"

struct rdmig_auth_key {
	uint8_t key[RDMIG_AUTH_KEY_MAX];
	size_t len;
};

/*
 * Key files. A key file is a regular file that neither group nor others may
 * access, of at most RDMIG_AUTH_KEY_MAX bytes as stored (a longer file is
 * refused with its size and the limit, never cut). One line ending, "\n" or
 * "\r\n", is then dropped (editors and echo add one; a lone "\r" is part of
 * the key), and what remains must be at least RDMIG_AUTH_KEY_MIN bytes.
 * Errors name the file and what to do.
 *
 * A loaded key lives until rdmig_auth_key_wipe() (or rdmig_auth_key_free()),
 * which every owner calls on every way out; the loaders wipe their own
 * buffers. The key must outlive every listener and connection whose
 * cfg.auth_ctx (or cfg.tls_key, read only during rdmig_listen() and
 * rdmig_connect()) points at it.
 */
int rdmig_auth_key_load(const char *path, struct rdmig_auth_key *key, struct rdmig_err *err);
/* Wipe a key from memory (explicit_bzero: never optimised away). NULL is fine. */
void rdmig_auth_key_wipe(struct rdmig_auth_key *key);

/*
 * The key file to use: `opt` if given, else $RDMIG_KEY_FILE if set and not
 * empty, else NULL (unauthenticated).
 */
const char *rdmig_auth_key_path(const char *opt);

/*
 * Load the key named by `opt` or $RDMIG_KEY_FILE. Returns 1 when neither
 * names one (the caller decides whether to run unauthenticated, and says
 * so), 0 when *key is loaded, or a negative errno (*key is then wiped).
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

/* The hook. ctx is a const struct rdmig_auth_key *. */
int rdmig_auth_psk(struct rdmig_conn *c, bool is_server, void *ctx, struct rdmig_err *err);

#pragma GCC visibility pop

#endif
