/* SPDX-License-Identifier: MIT */
/*
 * xport_check hostile: what xport_hostile.c (the cases, both backends, and
 * raw tcp peers) and xport_hostile_cm.c (raw rdma_cm peers) share.
 */
#ifndef RDMIG_XPORT_HOSTILE_H
#define RDMIG_XPORT_HOSTILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define HOSTILE_RING (4u << 20) /* stream ring bytes: a size no other MR of the test has */
#define FLOOD_TCP    200	/* idle sockets held open */
#define FLOOD_GROUPS 100	/* control channels whose data channels never come (tcp) */
/*
 * Idle rdma_cm connect requests held open. Each costs the raw peer a QP and
 * an event channel on rxe inside an emulated VM; 48 is three times the
 * listener's per-address limit of incomplete connections (16), enough to see
 * every kind of eviction, and sets up in seconds there.
 */
#define FLOOD_RDMA 48

/* ---- raw rdma_cm peers (xport_hostile_cm.c) ---- */

/* Connect with private data that is not an rdmig HELLO: 0 when REJECTED, its reason in why. */
int cm_garbage(const char *host, uint16_t port, char *why, size_t len);

/* A connection's channels by hand: control + nchan data, valid HELLOs, nothing after. */
struct cm_group;
/* 0 once every channel is ESTABLISHED; *out is set either way (close it). */
int cm_group_open(const char *host, uint16_t port, unsigned nchan, uint64_t token,
		  struct cm_group **out);
/* Every HELLO_ACK received has zero stream ring size, address and key. */
bool cm_group_rings_hidden(const struct cm_group *g);
void cm_group_close(struct cm_group *g);

/* n connect requests, each a control channel alone whose data channels never come. */
struct cm_flood;
unsigned cm_flood_open(const char *host, uint16_t port, unsigned n, uint64_t seed,
		       struct cm_flood **out);
void cm_flood_close(struct cm_flood *f);

/* MRs of `size` bytes that `rdma res show mr` lists for process pid; -1 if it cannot tell. */
int cm_ring_mrs(pid_t pid, unsigned size);

/* ---- xport_hostile.c ---- */

int run_hostile(void);
int run_hostile_client(void);

#endif
