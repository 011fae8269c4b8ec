/* SPDX-License-Identifier: MIT */
/*
 * xport_check stream (xport_check.c has the overview): seeded byte streams
 * both ways over every channel at once, sent and received in random sizes,
 * checked byte for byte; end of stream must arrive and stay.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
};

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

bool stream_run(struct rdmig_conn *c, bool server)
{
	unsigned nch = rdmig_conn_channels(c);
	struct stream_ctx tx[RDMIG_MAX_CHANNELS], rx[RDMIG_MAX_CHANNELS];
	pthread_t tth[RDMIG_MAX_CHANNELS], rth[RDMIG_MAX_CHANNELS];
	uint64_t per = g_opt.size / nch;
	unsigned ts = 0, rs = 0;
	bool ok = true;
	double t0 = rdmig_now_s(), t1;

	for (unsigned i = 0; i < nch; i++) {
		/* Key by direction and channel, so that both ends agree. */
		uint64_t k_out = th_mix64(g_opt.seed ^ (server ? 0xd0000 : 0x50000) ^ i);
		uint64_t k_in = th_mix64(g_opt.seed ^ (server ? 0x50000 : 0xd0000) ^ i);

		tx[i] = (struct stream_ctx){
		    .c = c, .ch = i, .total = per, .key = k_out, .seed = g_opt.seed};
		rx[i] = (struct stream_ctx){
		    .c = c, .ch = i, .total = per, .key = k_in, .seed = g_opt.seed};
	}
	for (unsigned i = 0; i < nch; i++) {
		if (pthread_create(&rth[i], NULL, stream_recv_thread, &rx[i]))
			break;
		rs++;
		if (pthread_create(&tth[i], NULL, stream_send_thread, &tx[i]))
			break;
		ts++;
	}
	if (rs < nch || ts < nch) {
		TH_CHECK(false, "pthread_create failed");
		rdmig_conn_abort(c, -ECANCELED, "test aborted");
		ok = false;
	}
	for (unsigned i = 0; i < ts; i++)
		pthread_join(tth[i], NULL);
	for (unsigned i = 0; i < rs; i++)
		pthread_join(rth[i], NULL);
	t1 = rdmig_now_s();
	for (unsigned i = 0; i < ts; i++)
		if (!tx[i].ok)
			ok = TH_CHECK(false, "stream channel %u: %s", i, tx[i].why);
	for (unsigned i = 0; i < rs; i++)
		if (!rx[i].ok)
			ok = TH_CHECK(false, "stream channel %u: %s", i, rx[i].why);
	if (ok) {
		TH_CHECK(true,
			 "%" PRIu64
			 " bytes each way over %u channels, verified byte for byte, end of "
			 "stream seen and sticky: %.3f s",
			 per * nch, nch, t1 - t0);
		barrier(c);
	}
	print_stats(c);
	return ok && !th_failures();
}
