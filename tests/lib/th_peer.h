/* SPDX-License-Identifier: MIT */
/*
 * Two-process tests: the other end of a migration or a connection runs as a
 * second process, which is this same test program started again.
 *
 * The peer is always exec'd (/proc/self/exe), never just forked: libibverbs
 * and librdmacm state (device contexts, registered memory) must not cross a
 * fork, and a fresh image has no threads, locks or buffers of the parent's.
 * Parent and peer share a channel (a unix socketpair) for the listening
 * port, verdicts and commands; the peer also gets the parent's seed.
 *
 * Two ways to start one:
 *   th_peer_start()  with the arguments the peer needs (a mode of its own,
 *                    e.g. `engine_check dest ...`): the peer's main() sees
 *                    them and takes th_peer_fd() as its channel.
 *   th_split()       with this process's own arguments: the peer goes down
 *                    the same path as the parent and, at the same th_split()
 *                    call (they are counted), takes the other role. Setup
 *                    before that call must be deterministic: it runs twice.
 *
 * The parent reaps every peer with th_peer_wait(), which never waits
 * forever: past its timeout the peer is killed. A peer is killed too when
 * the thread that started it dies, so no peer outlives a crashed test.
 */
#ifndef RDMIG_TEST_TH_PEER_H
#define RDMIG_TEST_TH_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rdmig/err.h"

/* Environment of a peer, set by the parent (the seed one a user may set too). */
#define TH_ENV_PEER    "RDMIG_TEST_PEER"    /* "role:n": the n-th th_split() (0: started) */
#define TH_ENV_PEER_FD "RDMIG_TEST_PEER_FD" /* the peer's end of the channel */
#define TH_ENV_SEED    "RDMIG_TEST_SEED"    /* see th_seed_init() */

struct th_peer {
	pid_t pid;     /* 0: not running (never started, or reaped) */
	int fd;	       /* the parent's end of the channel, -1 once closed */
	int status;    /* waitpid() status, valid after th_peer_wait() returned 0 */
	char role[32]; /* for messages */
};

/* Called by th_init(): keeps argv for th_split() and reads a peer's environment. */
void th_peer_init_(int argc, char **argv);

/*
 * Start peer `role`: this program with `argv` (argv[0] is the name it shows
 * in ps; NULL: the arguments this process got). Returns 0 or a negative
 * errno; p->fd is our end of the channel.
 */
int th_peer_start(struct th_peer *p, const char *role, const char *const *argv,
		  struct rdmig_err *err);

/*
 * Start a peer that listens and sends its port over the channel
 * (th_chan_send_port()), and wait at most `timeout_ms` for it. On failure
 * the peer is killed and reaped.
 */
int th_peer_start_port(struct th_peer *p, const char *role, const char *const *argv, uint16_t *port,
		       int timeout_ms, struct rdmig_err *err);

enum th_side {
	TH_SIDE_PARENT = 0, /* this process: *p is the peer just started */
	TH_SIDE_PEER = 1,   /* this process is the peer this call started in the parent */
	TH_SIDE_SKIP = 2,   /* a peer at an earlier split: the parent's business, go on */
};

/*
 * Split here into this process and a peer running the same arguments, in
 * role `role`. Returns an enum th_side, or a negative errno (parent).
 */
int th_split(struct th_peer *p, const char *role, struct rdmig_err *err);

/* In a peer: the role it was started in and its end of the channel; NULL / -1 otherwise. */
const char *th_peer_role(void);
int th_peer_fd(void);

/*
 * Wait at most `timeout_ms` for the peer to exit; past that, SIGKILL it,
 * reap it and return -ETIMEDOUT. Closes our end of the channel either way.
 * 0 when it exited by itself, status in p->status.
 */
int th_peer_wait(struct th_peer *p, int timeout_ms, struct rdmig_err *err);
/* Close our end of the channel (the peer reads end of file). */
void th_peer_close(struct th_peer *p);

/* What a waitpid() status says, for messages: "exit 1", "killed by SIGKILL". */
const char *th_status_str(int status, char *buf, size_t len);
bool th_exited(int status, int code);
bool th_killed(int status, int sig);

/*
 * The channel: whole messages of a known length, or text lines. Timeouts in
 * milliseconds (-1: none); the other end closing is -EPIPE.
 */
int th_chan_send(int fd, const void *buf, size_t len, struct rdmig_err *err);
int th_chan_recv(int fd, void *buf, size_t len, int timeout_ms, struct rdmig_err *err);
int th_chan_send_port(int fd, uint16_t port, struct rdmig_err *err);
int th_chan_recv_port(int fd, uint16_t *port, int timeout_ms, struct rdmig_err *err);
int th_chan_printf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line without its newline; -EMSGSIZE when it does not fit in `len`. */
int th_chan_getline(int fd, char *buf, size_t len, int timeout_ms, struct rdmig_err *err);

#endif
