/*
 * ifaces: the live sensor's set of captured interfaces.
 *
 * Ties ifwatch (which links exist), the selection rules, the filter builder
 * (bpf) and capture_live (one libpcap handle per interface) together:
 *
 * - a link that is up and selected is opened with its filter and announced
 *   to the receiver (ps_uplink_add_iface) under a dense sensor-local index;
 *   a link that goes down, is removed, renamed or no longer selected is
 *   drained, its final counters are sent (STATS) and it is closed;
 * - an index is never given to a different interface during the process's
 *   life: the same kernel link with the same name gets its old index back
 *   when it comes up again, anything else a new one;
 * - every statsIntervalSec, each interface's counters go to the receiver
 *   (written as pcapng ISBs) and into the metrics registry;
 * - the receiver's addresses are resolved at start and on every connection
 *   attempt (ps_ifaces_receiver_resolved); when they change, every filter
 *   is rebuilt so the sensor's own stream stays out of the capture.
 *
 * A missing capability is fatal (on_fatal, naming the capability and the
 * interface); any other failure to open one interface is logged and that
 * interface is tried again at its next link event.
 */
#ifndef PS_IFACES_H
#define PS_IFACES_H

#include <stdint.h>

#include <uv.h>

#include "batcher.h"
#include "core/config.h"
#include "core/metrics.h"
#include "recorder.h"
#include "uplink.h"

typedef struct ps_ifaces ps_ifaces;

typedef struct ps_ifaces_opts {
    uv_loop_t *loop;
    const ps_config *cfg;
    ps_batcher *batcher;
    ps_uplink *uplink;
    ps_metrics *metrics; /* may be NULL */
    void (*on_fatal)(void *ud, const char *msg);
    void *ud;
} ps_ifaces_opts;

/* Checks the filter (compiled on a dead handle, so a bad expression fails at
 * start even before any interface is up), resolves the receiver and starts
 * watching links. Returns 0, or -1 with a message in err. */
int ps_ifaces_open(ps_ifaces **out, const ps_ifaces_opts *o, char *err, size_t errlen);
/* Uplink hook: an ACK freed spool space; captures waiting for it (see
 * capture_live.h) read again at once. */
void ps_ifaces_spool_room(ps_ifaces *f);
/* Uplink hook: the receiver's name resolved to res. */
void ps_ifaces_receiver_resolved(ps_ifaces *f, const struct addrinfo *res);
/* Stops watching and closes every interface gracefully (each keeps reading
 * until the kernel has handed over its last ring block, ~150 ms), sending
 * its final counters; done (may be NULL) runs once all are closed, possibly
 * before this returns. Packets stay in the batcher: flush it in done. */
void ps_ifaces_stop(ps_ifaces *f, void (*done)(void *ud));
void ps_ifaces_free(ps_ifaces *f);

/*
 * Capture jobs (protocol v2, docs/jobs.md). JOB_START opens the job's own
 * capture (its BPF filter, its own interface index announced with the job
 * id) on every watched interface that matches all of its non-empty
 * selectors, now and as matching interfaces appear while it runs; with a
 * preroll (ondemand mode) the flight recorder's packets from start -
 * preroll up to the seam (the first packet of the job's handle) go first.
 * It ends at JOB_STOP, end_ns, or its packet/byte limits on this sensor,
 * with final STATS per capture and a JOB_STATUS. A JOB_START for a known job
 * only answers with its status (the receiver re-sends it on reconnects).
 */
void ps_ifaces_job_start(ps_ifaces *f, const ps_job_start *j);
void ps_ifaces_job_stop(ps_ifaces *f, uint64_t job);

typedef struct ps_ifaces_totals {
    uint64_t packets, bytes, kernel_drops, if_drops, sensor_drops; /* sensor_drops: all */
    uint64_t evicted;     /* of which evicted from the spool (spool.dropPolicy oldest) */
    uint64_t spool_waits; /* times capture waited for spool room (capture_live.h) */
    uint32_t open_now, opened_total;
} ps_ifaces_totals;
void ps_ifaces_get_totals(ps_ifaces *f, ps_ifaces_totals *t);
/* The flight recorder's counters (all zero in continuous mode). */
void ps_ifaces_recorder_totals(ps_ifaces *f, ps_recorder_totals *t);

#endif
