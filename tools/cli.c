/* SPDX-License-Identifier: MIT */
/* Argument helpers, the pre-shared key and signals, shared by the rdmig commands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rdmig/auth.h"
#include "cli.h"

/* What a tool says when it runs without a key. */
#define NO_KEY_WARNING                                                                             \
	"rdmig: warning: no --key-file: the peer is not authenticated (fine for local testing "    \
	"only)"

volatile sig_atomic_t cli_cancel;

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "rdmig %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'rdmig %s --help'.\n", cmd);
	return RDMIG_EXIT_USAGE;
}

int cli_parse_hostport(const char *s, char *host, unsigned hostlen, unsigned short *port)
{
	const char *colon, *h = s;
	size_t hl;
	char *end;
	unsigned long p;

	if (*s == '[') { /* [v6addr]:port */
		const char *rb = strchr(s, ']');

		if (!rb)
			return -1;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb[1] == ':' ? rb + 1 : NULL;
		if (rb[1] && !colon)
			return -1;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			colon = NULL; /* bare IPv6 address without a port */
		hl = colon ? (size_t)(colon - s) : strlen(s);
	}
	if (hl >= hostlen)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (colon) {
		p = strtoul(colon + 1, &end, 10);
		if (!colon[1] || *end || p > 65535)
			return -1;
		*port = (unsigned short)p;
	}
	return 0;
}

int cli_parse_backend(const char *s, enum rdmig_backend *b, bool *is_auto, struct rdmig_err *err)
{
	*is_auto = s && !strcmp(s, "auto");
	if (*is_auto)
		return 0;
	if (rdmig_backend_parse(s, b, NULL))
		return rdmig_seterr(err, -EINVAL,
				    "invalid backend '%s': expected rdma or tcp, or auto",
				    s ? s : "");
	return 0;
}

/*
 * The keys of this process live here, not in the caller's storage (which may
 * be on its stack), so they outlast every connection the command makes (the
 * auth hook and TLS read them) and are wiped when the process exits, on every
 * path: success, failure and cancel.
 */
static struct rdmig_auth_key loaded_keys[4];
static unsigned nloaded_keys;

static void wipe_keys(void)
{
	for (unsigned i = 0; i < nloaded_keys; i++)
		rdmig_auth_key_wipe(&loaded_keys[i]);
	nloaded_keys = 0;
}

/* Move `key` into the process's key store; NULL when it is full. */
static struct rdmig_auth_key *keep_key(struct rdmig_auth_key *key)
{
	struct rdmig_auth_key *k;

	if (nloaded_keys >= sizeof(loaded_keys) / sizeof(loaded_keys[0]))
		return NULL;
	if (!nloaded_keys)
		atexit(wipe_keys);
	k = &loaded_keys[nloaded_keys++];
	*k = *key;
	rdmig_auth_key_wipe(key);
	return k;
}

int cli_key_setup(const char *cmd, const char *key_file, struct rdmig_xport_cfg *cfg,
		  struct rdmig_auth_key *key)
{
	struct rdmig_err err = RDMIG_ERR_INIT;
	int ret = rdmig_auth_key_from_opt(key_file, key, &err);

	if (ret < 0) {
		fprintf(stderr, "rdmig %s: %s\n", cmd, rdmig_err_str(&err));
		return RDMIG_EXIT_FAIL;
	}
	if (ret > 0 && cfg->tls)
		return cli_usage_error(cmd,
				       "--tls needs a pre-shared key: pass --key-file PATH (or "
				       "set $RDMIG_KEY_FILE) on both sides");
	if (ret > 0) {
		fprintf(stderr, "%s\n", NO_KEY_WARNING);
		return RDMIG_EXIT_OK;
	}
	key = keep_key(key);
	if (!key) {
		fprintf(stderr, "rdmig %s: too many keys loaded in one process\n", cmd);
		return RDMIG_EXIT_FAIL;
	}
	cfg->auth = rdmig_auth_psk;
	cfg->auth_ctx = key;
	if (cfg->tls) {
		cfg->tls_key = key->key;
		cfg->tls_key_len = key->len;
	}
	return RDMIG_EXIT_OK;
}

static void on_signal(int sig)
{
	(void)sig;
	cli_cancel = 1;
}

void cli_install_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}
