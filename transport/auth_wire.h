/* SPDX-License-Identifier: MIT */
/*
 * The authentication exchange's wire format and pieces, private to the
 * transport and to the tests and fuzz targets that check them; the public
 * part (keys and the hook) is rdmig/auth.h. AUTH frames are described in
 * docs/protocol.md, "Authentication".
 */
#ifndef RDMIG_AUTH_WIRE_H
#define RDMIG_AUTH_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "rdmig/auth.h"
#include "rdmig/err.h"

#define RDMIG_AUTH_NONCE_LEN 32
#define RDMIG_AUTH_MAC_LEN   32 /* HMAC-SHA256 */
#define RDMIG_AUTH_VERSION   1

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

/*
 * The key-file rules of rdmig/auth.h applied to the `len` bytes of a key
 * file's content (`path` names it in messages). For tests and fuzzing.
 */
int rdmig_auth_key_parse(const uint8_t *raw, size_t len, const char *path,
			 struct rdmig_auth_key *key, struct rdmig_err *err);

/*
 * HMAC over the transcript of one side's proof: "rdmig-auth-v1", the
 * proving role (enum rdmig_role), the channel count, nonce_c, nonce_s.
 * For tests and fuzzing.
 */
int rdmig_auth_mac(const struct rdmig_auth_key *key, unsigned role, unsigned nchan,
		   const uint8_t *nonce_c, const uint8_t *nonce_s, uint8_t *mac,
		   struct rdmig_err *err);

/*
 * Decode one AUTH payload: checks step, version, reserved bytes and exact
 * length; *body points at the step's body. For fuzzing.
 */
int rdmig_auth_msg_decode(const uint8_t *buf, size_t len, unsigned want_step, const uint8_t **body,
			  struct rdmig_err *err);

#endif
