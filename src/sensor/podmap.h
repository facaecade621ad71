/*
 * podmap: which host interface a pod's IP address lives behind (rtnetlink).
 *
 * Two CNI shapes, both read from the kernel's own tables:
 *
 * - Routed (point-to-point) CNIs: Calico cali*, Cilium lxc*, AWS VPC CNI
 *   eni*, kindnet/ptp veth*. The node has a host route to the pod IP
 *   (/32 or /128) whose output interface is the pod's interface.
 * - Bridge CNIs (bridge plugin, flannel's cni0): the pod IP is on the
 *   bridge's subnet. Its neighbour entry (RTM_NEWNEIGH on the bridge) gives
 *   the pod's MAC, and the bridge's forwarding database (AF_BRIDGE
 *   RTM_NEWNEIGH, NDA_MASTER = bridge) gives the port that MAC is behind:
 *   the pod's veth.
 *
 * A host route wins over a neighbour entry. Only routes in the main table
 * with a single output interface and host-length prefixes count; routes
 * through the node's uplinks are not pods, but podmap does not judge that:
 * it reports what the kernel says, and the caller decides.
 *
 * The watcher subscribes to RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE,
 * RTMGRP_NEIGH (and link removals, to drop FDB entries of ports that left)
 * and dumps each table at start and after lost events (ENOBUFS). It runs on
 * the libuv loop; on_change runs (on the loop) after any change that may
 * alter a lookup, at most once per loop iteration's batch of messages.
 *
 * The parser, ps_podmap_parse, is pure and checks every length it reads
 * (netlink is untrusted input, as in ifwatch.c).
 */
#ifndef PS_PODMAP_H
#define PS_PODMAP_H

#include <stddef.h>

#include <uv.h>

typedef struct ps_podmap ps_podmap;

/* Opens the rtnetlink socket and starts the dumps. 0, or -1 with a message. */
int ps_podmap_open(ps_podmap **out, uv_loop_t *loop, void (*on_change)(void *ud), void *ud,
                   char *err, size_t errlen);
/* The ifindex of the host interface behind ip (IPv4 or IPv6 text form),
 * 0 when unknown, -1 when ip does not parse. */
int ps_podmap_lookup(const ps_podmap *m, const char *ip);
/* Stops watching; done(ud) runs from the loop once the handle is closed. */
void ps_podmap_stop(ps_podmap *m, void (*done)(void *ud), void *ud);
/* After stop's done. NULL is a no-op. */
void ps_podmap_free(ps_podmap *m);

/* ---- pure part, for tests and fuzzing ---- */

/* A table built from parsed messages; podmap.c keeps one. */
typedef struct ps_podmap_table ps_podmap_table;
ps_podmap_table *ps_podmap_table_new(void);
void ps_podmap_table_free(ps_podmap_table *t);
/* Applies every route/neighbour/FDB/link message of one datagram to t.
 * Returns 1 when t changed, 0 when not, -1 when the datagram is malformed
 * (messages before the bad one were applied), -2 on a netlink error
 * message, -3 on out of memory. *done is set when it ends a dump. */
int ps_podmap_parse(ps_podmap_table *t, const void *buf, size_t len, int *done);
/* As ps_podmap_lookup, on a table. */
int ps_podmap_table_lookup(const ps_podmap_table *t, const char *ip);

#endif
