/*
 * recorder: the flight recorder, a bounded ring of the most recent packets of
 * every watched interface (capture.mode ondemand).
 *
 * One ring per sensor, shared by all interfaces, in arrival order: a packet
 * is kept until it is older than max_age_ns (measured against the newest
 * packet added, or the clock given to ps_recorder_expire) or until room is
 * needed for a newer one (the whole ring never holds more than max_bytes,
 * headers included). Every eviction is counted, by reason; packets evicted
 * for room (not for age) are also counted per interface and second, so a
 * reader of a window learns how many of its packets are gone.
 *
 * Memory: max_bytes, reserved at the first packet (the pages are touched
 * as the ring fills), plus a few bytes per interface. Each packet costs
 * PS_RECORDER_REC_HDR + its capture length rounded up to 8 bytes.
 *
 * Pure: no I/O, no clock, no libuv; loop thread only (not thread-safe).
 */
#ifndef PS_RECORDER_H
#define PS_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include <pcap/pcap.h>

#include "core/wire.h"

#define PS_RECORDER_REC_HDR 24

typedef struct ps_recorder ps_recorder;

typedef struct ps_recorder_opts {
    uint64_t max_bytes;  /* ring size; at least 4096 is used */
    uint64_t max_age_ns; /* 0: no age bound */
} ps_recorder_opts;

/* NULL only when out of memory (the ring itself is allocated at the first
 * packet). */
ps_recorder *ps_recorder_new(const ps_recorder_opts *o);
/* Keeps one packet, evicting the oldest as needed. 0, or -1 when it cannot
 * be kept (larger than the ring, or out of memory); counted as refused. */
int ps_recorder_add(ps_recorder *r, uint32_t iface, uint64_t ts_ns, uint32_t caplen,
                    uint32_t origlen, const uint8_t *data);
/* Evicts every packet older than now_ns - max_age_ns (an idle interface's
 * packets still age out). */
void ps_recorder_expire(ps_recorder *r, uint64_t now_ns);

/* A window to read: one interface's packets with from_ns <= ts < to_ns (to_ns
 * 0: no upper bound) that pass filter (NULL: all; a program compiled for the
 * interface's link type, applied with pcap_offline_filter). */
typedef struct ps_recorder_window {
    uint32_t iface;
    uint64_t from_ns, to_ns;
    const struct bpf_program *filter;
} ps_recorder_window;

/* Calls cb for each packet of the window, oldest first (rec->data points
 * into the ring: valid during the call only; cb must not add to r). cb
 * returning non-zero stops the reading. Returns the number of packets
 * given to cb; *lost (may be NULL) receives the number of the interface's
 * packets with ts >= from_ns that were evicted for room before they aged
 * out (they would have been in the window, filter unknown). */
uint64_t ps_recorder_read(const ps_recorder *r, const ps_recorder_window *w,
                          int (*cb)(void *ud, const ps_record *rec), void *ud, uint64_t *lost);

typedef struct ps_recorder_totals {
    uint64_t packets, bytes;            /* held now; bytes: ring bytes (headers included) */
    uint64_t added;                     /* packets ever kept */
    uint64_t evicted_age, evicted_room; /* packets evicted, by reason */
    uint64_t refused;                   /* packets that could not be kept */
    uint64_t mem;                       /* bytes of memory reserved */
} ps_recorder_totals;
void ps_recorder_get_totals(const ps_recorder *r, ps_recorder_totals *t);
void ps_recorder_free(ps_recorder *r);

#endif
