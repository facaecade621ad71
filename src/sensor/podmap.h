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
 * A host route wins over a neighbour entry. Only unicast routes in the main
 * table with a single output interface, no source prefix and a host-length
 * destination count (not cached clones, not multipath); between two such
 * routes to one address the lower metric wins. Routes through the node's
 * uplinks are not pods, but podmap does not judge that: it reports what the
 * kernel says, and the caller decides. A neighbour entry counts only while
 * it has a 6-byte link-layer address (not INCOMPLETE/FAILED, not a proxy
 * entry) and only through a bridge FDB entry for that MAC whose port is not
 * the bridge itself; so a neighbour on a plain interface maps to nothing.
 * The node's own addresses (local table) map to nothing either: a
 * hostNetwork pod's IP is unknown here.
 *
 * The kernel drops the routes and neighbours of an interface that goes
 * down or away without telling (IPv4), so podmap does it itself on
 * RTM_NEWLINK without IFF_UP and on RTM_DELLINK; RTM_DELLINK also drops the
 * FDB entries of that port (and of that bridge), and an AF_BRIDGE
 * RTM_DELLINK (a port leaving its bridge) drops the port's FDB entries only.
 *
 * Bounds: each table (host routes, neighbours, FDB entries) holds at most
 * PS_PODMAP_MAX_ENTRIES; an entry that would exceed it is not stored and is
 * counted (ps_podmap_skipped). A node runs a few hundred pods at most; the
 * bound is for what else a node's tables may hold (a big LAN's
 * neighbours), and costs about 64 bytes an entry.
 *
 * The watcher subscribes to RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE,
 * RTMGRP_NEIGH (neighbours and FDB) and RTMGRP_LINK, and dumps routes,
 * neighbours and the FDB one after the other at start and again after lost
 * events (ENOBUFS, a truncated datagram) or an interrupted dump
 * (NLM_F_DUMP_INTR). A dump replaces its table: entries it did not report
 * (and no event renewed meanwhile) are dropped at its end. It runs on the
 * libuv loop. on_change runs (on the loop) after any change that may alter
 * a lookup, at most once per batch of datagrams read in one poll callback,
 * and once when the first complete set of dumps has been read (even when it
 * found nothing): from then on lookups reflect the kernel.
 *
 * The parser, ps_podmap_parse, is pure and checks every length it reads
 * (netlink is untrusted input, as in ifwatch.c).
 */
#ifndef PS_PODMAP_H
#define PS_PODMAP_H

#include <stddef.h>

#include <uv.h>

#define PS_PODMAP_MAX_ENTRIES 16384 /* per table: routes, neighbours, FDB */

typedef struct ps_podmap ps_podmap;

/* Opens the rtnetlink socket (in the calling thread's network namespace)
 * and starts the dumps. 0, or -1 with a message; *out untouched then. */
int ps_podmap_open(ps_podmap **out, uv_loop_t *loop, void (*on_change)(void *ud), void *ud,
                   char *err, size_t errlen);
/* The ifindex of the host interface behind ip (IPv4 dotted quad or IPv6
 * text form, as inet_pton reads them; no zone, no prefix length), 0 when
 * unknown, -1 when ip is NULL or does not parse. */
int ps_podmap_lookup(const ps_podmap *m, const char *ip);
/* Entries not stored because a table was full, since open. */
unsigned long ps_podmap_skipped(const ps_podmap *m);
/* Stops watching (no on_change afterwards); done(ud) runs from the loop
 * once the handle is closed. done may be NULL. Call once. */
void ps_podmap_stop(ps_podmap *m, void (*done)(void *ud), void *ud);
/* After stop's done (or, when the loop will not run again, after stop and
 * one more loop iteration). NULL is a no-op. */
void ps_podmap_free(ps_podmap *m);

/* ---- pure part, for tests and fuzzing ---- */

/* A table built from parsed messages; podmap.c keeps one. */
typedef struct ps_podmap_table ps_podmap_table;
/* NULL only on out of memory. */
ps_podmap_table *ps_podmap_table_new(void);
void ps_podmap_table_free(ps_podmap_table *t);
/* Applies every route/neighbour/FDB/link message of one datagram to t.
 * Returns 1 when t changed, 0 when not, -1 when the datagram is malformed,
 * -2 on a netlink error message (the walk ends there), -3 when an entry
 * could not be stored for want of memory. Malformed: bytes that do not
 * frame a message end the walk (the messages before were applied); a
 * well-framed message with bad content (an attribute overrunning it, a
 * fixed-size attribute of the wrong size, an address not of its family, a
 * required attribute missing, an index <= 0) is skipped and the walk goes
 * on, so a dump's NLMSG_DONE is still seen. On -1 and -3, t may have
 * changed. *done (when done is not NULL) is set to 1
 * when the datagram ends a dump (NLMSG_DONE) and to 2 when that dump was
 * interrupted (NLM_F_DUMP_INTR on any of its messages seen since the last
 * dump_begin), else left alone. */
int ps_podmap_parse(ps_podmap_table *t, const void *buf, size_t len, int *done);
/* As ps_podmap_lookup, on a table. */
int ps_podmap_table_lookup(const ps_podmap_table *t, const char *ip);
/* Entries not stored because a table was full. */
unsigned long ps_podmap_table_skipped(const ps_podmap_table *t);

/* Dumps: begin before requesting one, end after its NLMSG_DONE; end drops
 * the entries of that table neither the dump nor an event reported since
 * begin, and returns 1 when it dropped any. */
enum { PS_PODMAP_ROUTES, PS_PODMAP_NEIGH, PS_PODMAP_FDB, PS_PODMAP_KINDS };
void ps_podmap_table_dump_begin(ps_podmap_table *t, int kind);
int ps_podmap_table_dump_end(ps_podmap_table *t, int kind);

#endif
