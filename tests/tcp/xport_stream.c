/* SPDX-License-Identifier: MIT */
/*
 * xport_check stream (xport_check.c has the overview): seeded byte streams
 * both ways over every channel at once, sent and received in random sizes,
 * checked byte for byte; end of stream must arrive and stay.
 *
 * With --fd the streams go through the descriptor calls instead
 * (rdmig_stream_send_fd/recv_fd): each sender feeds the transport from a
 * local descriptor that a helper thread writes the content into, each
 * receiver has the transport write into a local descriptor that a helper
 * thread reads and checks. Even channels use a unix socket pair (what the
 * QEMU relay has), odd ones a pipe, so both kinds of descriptor are spliced.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "th_check.h"
#include "th_content.h"
#include "xport_check.h"

/* ---- stream ----------------------------------------------------------------- */

struct stream_ctx {
	struct rdmig_conn *c;
	unsigned ch;
	uint64_t total;
	uint64_t key;
	uint64_t seed;
	uint64_t done;
	bool ok;
	char why[512];
	/* --fd: [0] read end, [1] write end; the helper's own result. */
	int local[2];
	uint64_t helper_done;
	bool helper_ok;
	char helper_why[256];
};

#define FD_STEP_MAX (256u * 1024)

static void *stream_send_thread(void *arg)
{
	struct stream_ctx *x = arg;
	struct th_rng r = {x->seed ^ x->key};
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint8_t *buf = malloc(256 * 1024);
	int ret = 0;

	x->ok = false;
	if (!buf) {
		snprintf(x->why, sizeof(x->why), "out of memory");
		return NULL;
	}
	while (x->done < x->total && !ret) {
		uint64_t n = th_rng_range(&r, 1, 256 * 1024);

		if (n > x->total - x->done)
			n = x->total - x->done;
		content_fill(buf, x->done, n, x->key);
		ret = rdmig_stream_send(x->c, x->ch, buf, n, &e);
		if (!ret)
			x->done += n;
	}
	if (!ret)
		ret = rdmig_stream_shutdown(x->c, x->ch, &e);
	if (ret)
		snprintf(x->why, sizeof(x->why), "send after %" PRIu64 " bytes: %s", x->done,
			 rdmig_err_str(&e));
	x->ok = !ret;
	free(buf);
	return NULL;
}

static void *stream_recv_thread(void *arg)
{
	struct stream_ctx *x = arg;
	struct th_rng r = {x->seed ^ x->key ^ 0x5a5a};
	struct rdmig_err e = RDMIG_ERR_INIT;
	uint8_t *buf = malloc(256 * 1024), *exp = malloc(256 * 1024);
	ssize_t n;

	x->ok = false;
	if (!buf || !exp) {
		snprintf(x->why, sizeof(x->why), "out of memory");
		goto out;
	}
	for (;;) {
		size_t cap = (size_t)th_rng_range(&r, 1, 256 * 1024);

		n = rdmig_stream_recv(x->c, x->ch, buf, cap, WAIT_MS, &e);
		if (n < 0) {
			snprintf(x->why, sizeof(x->why), "receive after %" PRIu64 " bytes: %s",
				 x->done, rdmig_err_str(&e));
			goto out;
		}
		if (n == 0)
			break;
		if ((size_t)n > cap || x->done + (uint64_t)n > x->total) {
			snprintf(x->why, sizeof(x->why),
				 "receive returned %zd bytes for a %zu-byte buffer at %" PRIu64
				 " of %" PRIu64,
				 n, cap, x->done, x->total);
			goto out;
		}
		content_fill(exp, x->done, (size_t)n, x->key);
		if (memcmp(exp, buf, (size_t)n)) {
			size_t i = 0;

			while (exp[i] == buf[i])
				i++;
			snprintf(x->why, sizeof(x->why),
				 "byte %" PRIu64 " of the stream is 0x%02x, expected 0x%02x",
				 x->done + i, buf[i], exp[i]);
			goto out;
		}
		x->done += (uint64_t)n;
	}
	if (x->done != x->total) {
		snprintf(x->why, sizeof(x->why),
			 "end of stream after %" PRIu64 " of %" PRIu64 " bytes", x->done, x->total);
		goto out;
	}
	/* End of stream is sticky. */
	n = rdmig_stream_recv(x->c, x->ch, buf, 4096, WAIT_MS, &e);
	if (n != 0) {
		snprintf(x->why, sizeof(x->why), "receive after end of stream returned %zd (%s)", n,
			 n < 0 ? rdmig_err_str(&e) : "data");
		goto out;
	}
	x->ok = true;
out:
	free(buf);
	free(exp);
	return NULL;
}

/* ---- --fd ------------------------------------------------------------------- */

static int local_pair(unsigned ch, int fds[2])
{
	return ch % 2 ? pipe(fds) : socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
}

static bool write_all_fd(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* Sender's helper: the content into the write end, in random sizes, then EOF. */
static void *feed_thread(void *arg)
{
	struct stream_ctx *x = arg;
	struct th_rng r = {x->seed ^ x->key ^ 0xfeed};
	uint8_t *buf = malloc(FD_STEP_MAX);

	x->helper_ok = false;
	if (!buf) {
		snprintf(x->helper_why, sizeof(x->helper_why), "out of memory");
		goto out;
	}
	while (x->helper_done < x->total) {
		uint64_t n = th_rng_range(&r, 1, FD_STEP_MAX);

		if (n > x->total - x->helper_done)
			n = x->total - x->helper_done;
		content_fill(buf, x->helper_done, n, x->key);
		if (!write_all_fd(x->local[1], buf, n)) {
			snprintf(x->helper_why, sizeof(x->helper_why),
				 "writing the local descriptor after %" PRIu64 " bytes: %s",
				 x->helper_done, strerror(errno));
			goto out;
		}
		x->helper_done += n;
	}
	x->helper_ok = true;
out:
	close(x->local[1]);
	x->local[1] = -1;
	free(buf);
	return NULL;
}

/*
 * The descriptor calls until the descriptor's end (send) or end of stream
 * (receive), each asking for a random size: true when exactly x->total
 * bytes moved, else x->why says what went wrong.
 */
static bool fd_steps(struct stream_ctx *x, bool send, uint64_t salt)
{
	struct th_rng r = {x->seed ^ x->key ^ salt};
	struct rdmig_err e = RDMIG_ERR_INIT;
	const char *what = send ? "send from descriptor" : "receive into descriptor";
	ssize_t n;

	for (;;) {
		size_t max = (size_t)th_rng_range(&r, 1, FD_STEP_MAX);

		n = send ? rdmig_stream_send_fd(x->c, x->ch, x->local[0], max, &e)
			 : rdmig_stream_recv_fd(x->c, x->ch, x->local[1], max, WAIT_MS, &e);
		if (n < 0) {
			snprintf(x->why, sizeof(x->why), "%s after %" PRIu64 " bytes: %s", what,
				 x->done, rdmig_err_str(&e));
			return false;
		}
		if (n == 0)
			break;
		if ((size_t)n > max) {
			snprintf(x->why, sizeof(x->why), "%s: %zd bytes when asked for at most %zu",
				 what, n, max);
			return false;
		}
		x->done += (uint64_t)n;
	}
	if (x->done != x->total) {
		snprintf(x->why, sizeof(x->why), "%s after %" PRIu64 " of %" PRIu64 " bytes",
			 send ? "the descriptor's end" : "end of stream", x->done, x->total);
		return false;
	}
	return true;
}

static void *stream_send_fd_thread(void *arg)
{
	struct stream_ctx *x = arg;
	struct rdmig_err e = RDMIG_ERR_INIT;

	x->ok = false;
	if (!fd_steps(x, true, 0))
		return NULL;
	if (rdmig_stream_shutdown(x->c, x->ch, &e)) {
		snprintf(x->why, sizeof(x->why), "shutdown: %s", rdmig_err_str(&e));
		return NULL;
	}
	x->ok = true;
	return NULL;
}

/* Receiver's helper: reads the read end to its end, checking every byte. */
static void *check_thread(void *arg)
{
	struct stream_ctx *x = arg;
	struct th_rng r = {x->seed ^ x->key ^ 0xc4ec};
	uint8_t *buf = malloc(FD_STEP_MAX), *exp = malloc(FD_STEP_MAX);
	ssize_t n;

	x->helper_ok = false;
	if (!buf || !exp) {
		snprintf(x->helper_why, sizeof(x->helper_why), "out of memory");
		goto out;
	}
	for (;;) {
		n = read(x->local[0], buf, (size_t)th_rng_range(&r, 1, FD_STEP_MAX));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(x->helper_why, sizeof(x->helper_why),
				 "reading the local descriptor: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (x->helper_done + (uint64_t)n > x->total) {
			snprintf(x->helper_why, sizeof(x->helper_why),
				 "%zd bytes more at %" PRIu64 " of %" PRIu64, n, x->helper_done,
				 x->total);
			goto out;
		}
		content_fill(exp, x->helper_done, (size_t)n, x->key);
		if (memcmp(exp, buf, (size_t)n)) {
			size_t i = 0;

			while (exp[i] == buf[i])
				i++;
			snprintf(x->helper_why, sizeof(x->helper_why),
				 "byte %" PRIu64
				 " through the descriptor is 0x%02x, expected 0x%02x",
				 x->helper_done + i, buf[i], exp[i]);
			goto out;
		}
		x->helper_done += (uint64_t)n;
	}
	if (x->helper_done != x->total)
		snprintf(x->helper_why, sizeof(x->helper_why),
			 "the descriptor's end after %" PRIu64 " of %" PRIu64 " bytes",
			 x->helper_done, x->total);
	else
		x->helper_ok = true;
out:
	/* After a mismatch the receiver's writes fail instead of waiting forever. */
	close(x->local[0]);
	x->local[0] = -1;
	free(buf);
	free(exp);
	return NULL;
}

static void *stream_recv_fd_thread(void *arg)
{
	struct stream_ctx *x = arg;
	struct rdmig_err e = RDMIG_ERR_INIT;
	ssize_t n;

	x->ok = false;
	if (!fd_steps(x, false, 0x5a5a))
		goto out;
	n = rdmig_stream_recv_fd(x->c, x->ch, x->local[1], 4096, WAIT_MS, &e);
	if (n != 0) {
		snprintf(x->why, sizeof(x->why),
			 "receive into descriptor after end of stream returned %zd (%s)", n,
			 n < 0 ? rdmig_err_str(&e) : "data");
		goto out;
	}
	x->ok = true;
out:
	/* The checker sees the end (or, after a failure, a short stream). */
	close(x->local[1]);
	x->local[1] = -1;
	return NULL;
}

/* Bad arguments are refused before anything is sent or received. */
static bool fd_args_refused(struct rdmig_conn *c)
{
	struct rdmig_err e = RDMIG_ERR_INIT;
	bool ok = true;
	ssize_t n;

	n = rdmig_stream_send_fd(c, 0, -1, 4096, &e);
	ok &= TH_CHECK(n == -EINVAL, "send from descriptor -1 refused: %zd (%s)", n,
		       rdmig_err_str(&e));
	rdmig_err_clear(&e);
	n = rdmig_stream_recv_fd(c, 0, 1, 0, 0, &e);
	ok &= TH_CHECK(n == -EINVAL, "receive of 0 bytes refused: %zd (%s)", n, rdmig_err_str(&e));
	rdmig_err_clear(&e);
	n = rdmig_stream_send_fd(c, RDMIG_MAX_CHANNELS, 0, 4096, &e);
	ok &= TH_CHECK(n < 0,
		       "send from descriptor on a channel that does not exist refused: "
		       "%zd (%s)",
		       n, rdmig_err_str(&e));
	return ok;
}

static void *(*const send_fn[2])(void *) = {stream_send_thread, stream_send_fd_thread};
static void *(*const recv_fn[2])(void *) = {stream_recv_thread, stream_recv_fd_thread};

/* --fd: each context's local descriptor pair and helper thread. */
static bool helpers_start(struct stream_ctx *x, void *(*fn)(void *), pthread_t *t)
{
	if (local_pair(x->ch, x->local)) {
		snprintf(x->why, sizeof(x->why), "local descriptor pair: %s", strerror(errno));
		x->local[0] = x->local[1] = -1;
		return false;
	}
	if (pthread_create(t, NULL, fn, x)) {
		snprintf(x->why, sizeof(x->why), "pthread_create failed");
		close(x->local[0]);
		close(x->local[1]);
		x->local[0] = x->local[1] = -1;
		return false;
	}
	return true;
}

bool stream_run(struct rdmig_conn *c, bool server)
{
	unsigned nch = rdmig_conn_channels(c), fd = g_opt.fd ? 1 : 0;
	struct stream_ctx tx[RDMIG_MAX_CHANNELS], rx[RDMIG_MAX_CHANNELS];
	pthread_t tth[RDMIG_MAX_CHANNELS], rth[RDMIG_MAX_CHANNELS];
	pthread_t thelp[RDMIG_MAX_CHANNELS], rhelp[RDMIG_MAX_CHANNELS];
	bool thas[RDMIG_MAX_CHANNELS] = {0}, rhas[RDMIG_MAX_CHANNELS] = {0};
	uint64_t per = g_opt.size / nch;
	unsigned ts = 0, rs = 0;
	bool ok = true;
	double t0 = rdmig_now_s(), t1;

	if (fd && !fd_args_refused(c))
		ok = false;
	for (unsigned i = 0; i < nch; i++) {
		/* Key by direction and channel, so that both ends agree. */
		uint64_t k_out = th_mix64(g_opt.seed ^ (server ? 0xd0000 : 0x50000) ^ i);
		uint64_t k_in = th_mix64(g_opt.seed ^ (server ? 0x50000 : 0xd0000) ^ i);

		tx[i] = (struct stream_ctx){.c = c,
					    .ch = i,
					    .total = per,
					    .key = k_out,
					    .seed = g_opt.seed,
					    .local = {-1, -1},
					    .helper_ok = true};
		rx[i] = (struct stream_ctx){.c = c,
					    .ch = i,
					    .total = per,
					    .key = k_in,
					    .seed = g_opt.seed,
					    .local = {-1, -1},
					    .helper_ok = true};
	}
	for (unsigned i = 0; i < nch; i++) {
		if (fd && !(rhas[i] = helpers_start(&rx[i], check_thread, &rhelp[i])))
			break;
		if (pthread_create(&rth[i], NULL, recv_fn[fd], &rx[i]))
			break;
		rs++;
		if (fd && !(thas[i] = helpers_start(&tx[i], feed_thread, &thelp[i])))
			break;
		if (pthread_create(&tth[i], NULL, send_fn[fd], &tx[i]))
			break;
		ts++;
	}
	if (rs < nch || ts < nch) {
		TH_CHECK(false, "starting the threads of channel %u failed", rs < nch ? rs : ts);
		rdmig_conn_abort(c, -ECANCELED, "test aborted");
		ok = false;
	}
	for (unsigned i = 0; i < nch; i++) {
		if (i < ts)
			pthread_join(tth[i], NULL);
		/* A feeder still writing after a failed send sees EPIPE, not a hang. */
		if (tx[i].local[0] >= 0)
			close(tx[i].local[0]);
		if (thas[i])
			pthread_join(thelp[i], NULL);
	}
	for (unsigned i = 0; i < nch; i++) {
		if (i < rs)
			pthread_join(rth[i], NULL);
		else if (rx[i].local[1] >= 0)
			close(rx[i].local[1]);
		if (rhas[i])
			pthread_join(rhelp[i], NULL);
		if (rx[i].local[0] >= 0)
			close(rx[i].local[0]);
	}
	t1 = rdmig_now_s();
	for (unsigned i = 0; i < ts; i++) {
		if (!tx[i].ok)
			ok = TH_CHECK(false, "stream channel %u: %s", i, tx[i].why);
		if (!tx[i].helper_ok)
			ok = TH_CHECK(false, "stream channel %u, feeding: %s", i, tx[i].helper_why);
	}
	for (unsigned i = 0; i < rs; i++) {
		if (!rx[i].ok)
			ok = TH_CHECK(false, "stream channel %u: %s", i, rx[i].why);
		if (!rx[i].helper_ok)
			ok =
			    TH_CHECK(false, "stream channel %u, checking: %s", i, rx[i].helper_why);
	}
	if (ok) {
		TH_CHECK(true,
			 "%" PRIu64
			 " bytes each way over %u channels%s, verified byte for byte, end of "
			 "stream seen and sticky: %.3f s",
			 per * nch, nch,
			 fd ? " through local descriptors (unix sockets and pipes)" : "", t1 - t0);
		barrier(c);
	}
	print_stats(c);
	return ok && !th_failures();
}
