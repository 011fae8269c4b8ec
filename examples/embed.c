/* SPDX-License-Identifier: MIT */
/*
 * Embedding librdmig: one process plays both hosts. A destination thread
 * registers a buffer for remote writes and exposes it; the source writes its
 * own buffer into it with one one-sided write and a fence; then the bytes
 * are compared. Usage: embed [tcp|rdma [ADDRESS]] (default: tcp 127.0.0.1;
 * rdma needs an address of an RDMA device). No key: loopback testing only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdmig/rdmig.h>

#define LEN	   (4u << 20)
#define WAIT_MS	   10000
#define MSG_LANDED 1 /* our own control message: destination has the bytes */

struct dest {
	struct rdmig_listener *l;
	unsigned char *buf;
	int ret;
	struct rdmig_err err;
};

static void *dest_run(void *arg)
{
	struct dest *d = arg;
	struct rdmig_conn *c = NULL;
	struct rdmig_fence f;
	uint32_t id;

	d->ret = rdmig_accept(d->l, WAIT_MS, &c, &d->err);
	if (!d->ret)
		d->ret = rdmig_reg(c, "ram", d->buf, LEN, RDMIG_REG_REMOTE_WRITE, &id, &d->err);
	if (!d->ret)
		d->ret = rdmig_expose(c, &d->err);
	/* On tcp, waiting for the fence is also what receives the writes. */
	if (!d->ret)
		d->ret = rdmig_wait_fence(c, 0, WAIT_MS, &f, &d->err);
	if (!d->ret && f.bytes != LEN)
		d->ret = rdmig_seterr(&d->err, -EPROTO, "fence covers %llu bytes, not %u",
				      (unsigned long long)f.bytes, LEN);
	if (!d->ret)
		d->ret = rdmig_ctrl_send(c, MSG_LANDED, NULL, 0, &d->err);
	rdmig_conn_destroy(c);
	return NULL;
}

static int source_run(const struct rdmig_xport_cfg *cfg, unsigned char *buf, struct rdmig_err *err)
{
	struct rdmig_run run = {.len = LEN};
	struct rdmig_conn *c = NULL;
	uint16_t type;
	char ack[16];
	size_t len;
	int ret;

	ret = rdmig_connect(cfg, &c, err);
	if (!ret)
		ret = rdmig_recv_layout(c, WAIT_MS, err);
	if (!ret && (rdmig_remote_count(c) != 1 || rdmig_remote_get(c, 0)->len != LEN))
		ret = rdmig_seterr(err, -EPROTO, "destination exposed an unexpected layout");
	if (!ret)
		ret = rdmig_reg(c, "ram", buf, LEN, 0, &run.lreg, err);
	if (!ret) {
		run.rreg = rdmig_remote_get(c, 0)->id;
		ret = rdmig_write(c, 0, &run, 1, err);
	}
	if (!ret)
		ret = rdmig_fence(c, 0, 1, err);
	/* Keep the connection until the destination says the bytes landed. */
	if (!ret)
		ret = rdmig_ctrl_recv(c, &type, ack, sizeof(ack), &len, WAIT_MS, err);
	if (!ret && type != MSG_LANDED)
		ret = rdmig_seterr(err, -EPROTO, "unexpected control message %u", type);
	rdmig_conn_destroy(c);
	return ret;
}

int main(int argc, char **argv)
{
	struct rdmig_xport_cfg cfg = {.backend = RDMIG_BACKEND_TCP, .host = "127.0.0.1"};
	struct rdmig_err err = RDMIG_ERR_INIT;
	struct dest d = {.err = RDMIG_ERR_INIT};
	unsigned char *src = NULL;
	pthread_t t;
	int ret;

	/* A librdmig.so other than the one these headers came with: stop. */
	if (strcmp(rdmig_version(), RDMIG_VERSION_STRING)) {
		fprintf(stderr, "embed: built with rdmig %s headers, running with librdmig %s\n",
			RDMIG_VERSION_STRING, rdmig_version());
		return 1;
	}
	if (argc > 1 && rdmig_backend_parse(argv[1], &cfg.backend, &err)) {
		fprintf(stderr, "embed: %s\nusage: embed [tcp|rdma [ADDRESS]]\n", err.msg);
		return 2;
	}
	if (argc > 2)
		cfg.host = argv[2];
	src = malloc(LEN);
	d.buf = calloc(1, LEN);
	if (!src || !d.buf) {
		ret = rdmig_seterr(&err, -ENOMEM, "cannot allocate two buffers of %u bytes", LEN);
		goto out;
	}
	srandom(1);
	for (size_t i = 0; i < LEN; i++)
		src[i] = (unsigned char)random();

	ret = rdmig_listen(&cfg, &d.l, &err); /* port 0: an ephemeral one */
	if (ret)
		goto out;
	cfg.port = rdmig_listener_port(d.l);
	if (pthread_create(&t, NULL, dest_run, &d)) {
		ret = rdmig_seterr(&err, -EAGAIN, "cannot start the destination thread");
		goto out;
	}
	ret = source_run(&cfg, src, &err);
	pthread_join(t, NULL);
	if (!ret && d.ret) {
		ret = d.ret;
		err = d.err;
	}
	if (!ret && memcmp(src, d.buf, LEN))
		ret = rdmig_seterr(&err, -EIO, "the destination's bytes differ from the source's");
out:
	rdmig_listener_destroy(d.l);
	if (ret)
		fprintf(stderr, "embed: %s\n", rdmig_err_str(&err));
	else
		printf("embed: librdmig %s: %u bytes written over %s, fenced, identical\n",
		       rdmig_version(), LEN, rdmig_backend_name(cfg.backend));
	free(d.buf);
	free(src);
	return ret ? 1 : 0;
}
