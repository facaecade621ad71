/*
 * capture_live: packets from a network interface, through libpcap, driven by
 * the libuv loop.
 *
 * Each interface is a libpcap handle on a memory-mapped TPACKET_V3 ring
 * (pcap_set_buffer_size bytes), in non-blocking mode, watched with uv_poll on
 * its selectable descriptor. Immediate mode is off: the kernel hands over a
 * ring block when it is full or after timeout_ms, so a wakeup carries many
 * packets. Each wakeup drains a bounded number of packets (the rest wakes the
 * loop again) and copies each straight from the ring into the batcher: the
 * only copy on the sensor's path. Nothing here blocks.
 *
 * When the uplink's spool is full (opts.blocked returns non-zero) reading
 * stops for up to 50 ms, leaving packets in the ring, until
 * ps_capture_live_resume says an ACK made room. If none comes in time,
 * packets are taken off the ring again and counted as sensor drops with
 * reason "spool_full" (so a long receiver outage does not show as kernel
 * drops) until the spool has room; a ring that overflows during the wait
 * counts its losses as kernel drops. A batcher allocation failure is counted
 * as reason "oom". Every counter is kept per interface.
 */
#ifndef PS_CAPTURE_LIVE_H
#define PS_CAPTURE_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "batcher.h"
#include "core/metrics.h"

typedef struct ps_capture_live ps_capture_live;

/* Metrics series of one interface; any may be NULL. Updated once per wakeup
 * and per statistics read, not per packet. */
typedef struct ps_capture_live_series {
    ps_series *packets, *bytes, *kernel_drops, *if_drops, *drops_spool_full, *drops_oom;
    ps_series *spool_waits;
} ps_capture_live_series;

typedef struct ps_capture_live_opts {
    uv_loop_t *loop;
    ps_batcher *batcher;
    const char *ifname;
    uint32_t index; /* the sensor-local interface number records carry */
    uint32_t snaplen;
    int promisc;
    uint32_t buffer_bytes;
    int timeout_ms;
    int (*blocked)(void *ud); /* non-zero: drop (spool full) */
    /* A read error (interface gone or down). The caller closes the handle;
     * capture has already stopped. */
    void (*on_error)(void *ud, ps_capture_live *l, const char *msg);
    void *ud;
    ps_capture_live_series series;
    /* Optional: where packets go instead of the batcher (the flight
     * recorder, a job's seam logic). Returns 0 when the packet was taken
     * (counted as captured), -1 when it was dropped (counted as "oom"). Runs
     * inside the drain: it must not close l. */
    int (*sink)(void *sink_ud, uint32_t index, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                const uint8_t *data);
    void *sink_ud;
} ps_capture_live_opts;

#define PS_CAPTURE_LIVE_E_OTHER -1
/* No CAP_NET_RAW; or promiscuous mode refused (CAP_NET_ADMIN on systems that
 * want it: Linux grants it with CAP_NET_RAW through PACKET_MR_PROMISC). */
#define PS_CAPTURE_LIVE_E_PERM -2
#define PS_CAPTURE_LIVE_E_NODEV -3  /* no such interface (it went away meanwhile) */
#define PS_CAPTURE_LIVE_E_FILTER -4 /* the filter does not compile */

/*
 * Opens and activates the interface with filter (NULL or "" for none) and
 * starts polling it. Returns 0, or one of PS_CAPTURE_LIVE_E_* with a message in err
 * naming the interface (and the capability, or quoting the filter and
 * libpcap's words).
 */
int ps_capture_live_open(ps_capture_live **out, const ps_capture_live_opts *o, const char *filter,
                         char *err, size_t errlen);
/* Replaces the filter (e.g. the receiver's addresses changed). 0 or -1. */
int ps_capture_live_set_filter(ps_capture_live *l, const char *filter, char *err, size_t errlen);
uint32_t ps_capture_live_linktype(const ps_capture_live *l); /* LINKTYPE_ */
uint32_t ps_capture_live_snaplen(const ps_capture_live *l);
uint32_t ps_capture_live_index(const ps_capture_live *l);
const char *ps_capture_live_name(const ps_capture_live *l);
/* Non-zero when timestamps are nanosecond (the kernel gave them). */
int ps_capture_live_nano(const ps_capture_live *l);

/* Reads whatever the ring hands out now. Note that a partly filled ring
 * block is handed out only once full or timeout_ms old. */
void ps_capture_live_drain(ps_capture_live *l);

typedef struct ps_capture_live_counters {
    uint64_t packets, bytes; /* handed to the batcher; bytes: sum of caplen */
    uint64_t kernel_drops;   /* ps_drop: ring full */
    uint64_t if_drops;       /* ps_ifdrop: dropped by the interface/driver */
    uint64_t drops_spool_full, drops_oom;
    uint64_t spool_waits; /* times reading stopped for a full spool (not drops) */
} ps_capture_live_counters;
/* Reads the kernel counters (pcap_stats) and returns every counter since
 * open; sensor drops = drops_spool_full + drops_oom. */
void ps_capture_live_counters_get(ps_capture_live *l, ps_capture_live_counters *c);

/* The spool has room again: a capture waiting for it reads at once. */
void ps_capture_live_resume(ps_capture_live *l);

/* Stops polling and frees the handle (asynchronously: the descriptor is
 * closed once libuv has let go of it). l is invalid afterwards. Packets in a
 * partly filled ring block are lost: prefer ps_capture_live_close_graceful. */
void ps_capture_live_close(ps_capture_live *l);

/*
 * Closes without losing what the kernel already captured: keeps reading for
 * timeout_ms plus a margin, long enough for the kernel to retire the ring's
 * current block (TPACKET_V3 hands out partly filled blocks only on timeout;
 * it does so even when the interface went down or away), drains the ring,
 * then calls done with the final counters and frees l (as ps_capture_live_close).
 * on_error is not called any more once closing.
 */
void ps_capture_live_close_graceful(ps_capture_live *l,
                                    void (*done)(void *ud, ps_capture_live *l,
                                                 const ps_capture_live_counters *c));

#endif
