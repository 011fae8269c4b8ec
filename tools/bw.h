/* SPDX-License-Identifier: MIT */
/*
 * rdmig bw: one-sided write bandwidth between registered regions, in the
 * spirit of perftest's ib_write_bw, over either backend.
 *
 *   tools/cmd_bw.c  options (perftest's flags with perftest's meaning), the
 *                   size sweep, the report (text table and JSON)
 *   tools/bw_run.c  the measurement: server and client over the transport
 */
#ifndef RDMIG_TOOLS_BW_H
#define RDMIG_TOOLS_BW_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"

#define BW_MAX_SIZE  (1ull << 30)
#define BW_MAX_TOTAL (4ull << 30) /* size x channels */

struct bw_opts {
	bool listen;
	bool once;	   /* server: exit after one client run (a sweep is one run) */
	bool json;	   /* client: the summary object on stdout */
	bool verify;	   /* seeded pattern, checked byte for byte by the server */
	bool report_gbits; /* text table in Gb/s instead of MiB/s */
	bool all;	   /* -a: sweep message sizes */
	bool backend_auto;
	const char *device; /* -d: RDMA device, NULL none named */
	char host[256];
	uint16_t port;
	uint64_t size;
	unsigned channels;
	unsigned depth;
	double duration; /* seconds per message size */
	uint64_t seed;
	int compress; /* tcp client: zstd level, 0 off */
	const char *key_file;
	/* backend, host, port, depth, key and TLS: the template of every connection */
	struct rdmig_xport_cfg cfg;
};

/* One message size measured by the client. */
struct bw_result {
	uint64_t size;		/* message bytes */
	uint64_t msgs;		/* messages written (perftest's iterations) */
	double secs;		/* first write to the last fence acknowledged */
	double peak_bps;	/* bytes/s of the fullest 100 ms window of posted writes */
	double src_cpu_s;	/* this process */
	double dst_cpu_s;	/* the server, as it reports */
	int verify;		/* 0 off, 1 ok, 2 mismatch */
	uint64_t bad;		/* first wrong byte's offset on a mismatch */
	uint64_t bytes_on_wire; /* tcp: page payload after compression */
};

/* Serve clients until one run ends (--once) or forever. Returns an exit status. */
int bw_serve(const struct bw_opts *o);

/*
 * Measure message size `size` over a new connection; `more`: another size
 * follows on a new connection (the server stays for it). 0, or a negative
 * errno with err filled.
 */
int bw_measure(const struct bw_opts *o, uint64_t size, bool more, struct bw_result *r,
	       struct rdmig_err *err);

#endif
