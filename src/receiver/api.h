/*
 * api: the receiver's HTTP side. Starts the process's HTTP server
 * (src/core/http.h) and serves, besides the probes and /metrics:
 *   /                   status page (HTML + inline JavaScript, no external assets)
 *   /api/sensors        JSON: sensors, their addresses, counters and rates
 *   /api/captures       JSON: capture files, sizes, packet times, sensors; with
 *                       output.s3 also the bucket's (ListObjectsV2, cached 10 s)
 *   /captures/NAME      a capture file, streamed from disk, Range requests; with
 *                       output.s3, one no longer on disk is streamed through
 *                       from the bucket (Range passed on)
 *   /live               a never-ending pcapng stream (src/receiver/livefeed.h)
 *   /api/jobs, /api/jobs/ID, /api/alertmanager
 *                       capture jobs (GET, POST, DELETE; src/receiver/jobs.h)
 *   /api/throughput     JSON: each sensor's bytes/s over the last 10 minutes,
 *                       sampled every 5 s (the status page's chart)
 *   /api/packets        one pcapng: a time window of selected interfaces from
 *                       every capture file, merged by time (query.h); at most
 *                       http.maxExtractions at once, each streamed by its
 *                       connection's thread
 *
 * Threads: a loop timer (every 250 ms) has the hub copy its counters into
 * the metrics registry (ps_hub_publish), publishes readiness, and
 * publishes JSON/text snapshots for the HTTP threads (ps_snapshot). The
 * HTTP threads read only those snapshots, the registry, and the capture
 * directory (readdir/stat/open, read-only). Nothing on the packet path
 * takes a lock.
 *
 * Readiness: listening (not shutting down), the last write of the capture
 * files succeeded, and the output directory is writable (access(2) W_OK,
 * which also catches read-only mounts and immutable directories for root).
 */
#ifndef PS_RECEIVER_API_H
#define PS_RECEIVER_API_H

#include <uv.h>

#include "core/config.h"
#include "core/metrics.h"
#include "hub.h"
#include "jobs.h"
#include "livefeed.h"
#include "s3.h"
#include "writer.h"

typedef struct ps_api ps_api;

/* What the HTTP side shows; borrowed, each must outlive ps_api_free. */
typedef struct ps_api_opts {
    ps_hub *hub;
    ps_writer *writer;     /* capture directory, per-file metadata */
    ps_livefeed *livefeed; /* /live, or NULL */
    ps_metrics *metrics;   /* served as /metrics */
    const ps_config *cfg;  /* http.enable, http.listen, http.token */
    /* output.s3 on: the bucket (its strings borrowed, as above), and the
     * object key prefix; NULL: off. Each HTTP request that needs the bucket
     * uses a ps_s3 of its own. */
    const ps_s3_opts *s3;
    const char *s3_key_prefix;
    ps_jobs *jobs; /* capture jobs, or NULL (stdout output) */
} ps_api_opts;

/* Starts, with http.enable, the HTTP server, and the publish timer on loop,
 * into *out. -1 on failure (out of memory, an http.listen that cannot be
 * bound) with err set and *out untouched. */
int ps_api_open(ps_api **out, uv_loop_t *loop, const ps_api_opts *o, char *err, size_t errlen);
/* The receiver stopped listening (shutdown): readiness goes false. */
void ps_api_set_listening(ps_api *a, int listening);
/* Stops the timer (loop thread). Call before the loop's final run. */
void ps_api_stop(ps_api *a);
/* Ends the /live streams, stops the HTTP server (joins its threads) and
 * frees. After the loop ended, before the hub, the live feed and the
 * registry are freed. NULL: no-op. */
void ps_api_free(ps_api *a);

#endif
