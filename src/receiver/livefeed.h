/*
 * livefeed: the receiver's /live endpoint, a never-ending pcapng stream of what
 * arrives from the moment a client connects.
 *
 * Producer and consumers: the receiver loop (producer) copies each written
 * batch's records, encoded as pcapng blocks, into a bounded byte ring per
 * client; each client's HTTP thread (consumer) drains its ring into the
 * socket. A client starts with a Section Header Block; an Interface
 * Description Block ("SENSOR/IFACE") precedes the first packet of each
 * interface it receives. The ring is single-producer single-consumer with
 * atomic positions, so neither side waits for the other.
 *
 * Slow clients: when a batch does not fit in a client's ring the client is
 * cut off (its stream ends; it would otherwise see a hole) and counted in
 * packetstreamer_live_clients_cut_total, with the packets it missed in
 * packetstreamer_live_dropped_packets_total. The capture files never wait
 * for a live client: live copies happen after the batch was handed to the
 * writer, and the producer never blocks.
 *
 * Filters (query string): sensor=ID keeps one sensor's packets; interface=
 * NAME keeps one interface, by its name on the sensor ("eth0") or its full
 * pcapng name ("node-1/eth0"); pod=NS/NAME, namespace=NS and iface=NAME
 * select as /api/packets does (query.h), and filter=BPF applies a libpcap
 * filter (checked at connect against Ethernet, 400 JSON if it does not
 * compile; compiled per link type by the loop the first time a client
 * meets one; an interface whose link type it does not compile for passes
 * nothing).
 *
 * The client list is guarded by a mutex taken by the loop once per batch
 * only while at least one client is connected (an atomic count says so),
 * and by an HTTP thread when a client comes or goes.
 */
#ifndef PS_RECEIVER_LIVEFEED_H
#define PS_RECEIVER_LIVEFEED_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "core/metrics.h"

#define PS_LIVEFEED_MAX_CLIENTS 16
#define PS_LIVEFEED_RING_BYTES (4u << 20)

typedef struct ps_livefeed ps_livefeed;

/* app: the SHB's shb_userappl. NULL on OOM. */
ps_livefeed *ps_livefeed_new(ps_metrics *m, const char *app);
/* Ends every stream (HTTP threads return end-of-stream); call before
 * stopping the HTTP server. */
void ps_livefeed_stop(ps_livefeed *l);
/* After the HTTP server stopped (no client left). NULL: no-op. */
void ps_livefeed_free(ps_livefeed *l);

/* HTTP thread: answers a /live request (queues the streaming response, or
 * 503 when PS_LIVEFEED_MAX_CLIENTS are connected). */
int ps_livefeed_respond(ps_livefeed *l, struct MHD_Connection *c);

/* Loop thread: writer handle -> (sensor, interface) for IDBs and filters;
 * call for every interface a session maps (each call a reference, as
 * ps_writer_iface's). 0, or -1 on OOM. */
int ps_livefeed_iface(ps_livefeed *l, int handle, const char *sensor, const char *ifname,
                      const char *desc, uint32_t linktype);
/* Loop thread: gives back one reference; the last frees the entry (the
 * writer may then reuse the handle for another interface: clients get that
 * one's IDB before its first packet). */
void ps_livefeed_iface_release(ps_livefeed *l, int handle);
/* Loop thread: nonzero while a client is connected (one atomic load). */
int ps_livefeed_active(ps_livefeed *l);
/* Loop thread: a validated batch's records (raw, the record encoding of
 * docs/protocol.md), with the session's map from sensor interface index to
 * writer handle. */
void ps_livefeed_batch(ps_livefeed *l, const int *ifmap, uint32_t ifmap_len, const uint8_t *raw,
                       size_t raw_len);

#endif
