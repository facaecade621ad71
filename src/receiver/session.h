/*
 * session: one sensor connection on the receiver.
 *
 * Decodes the sensor's frames in order: HELLO (answered with ACCEPT or
 * REJECT), IFACE (mapped to a writer interface), BATCH (checked, inflated
 * into a bounded buffer, its records handed to the writer), STATS, BYE.
 * Once per read the writer is flushed and the highest batch now on disk is
 * acknowledged, so an ACK always means "written".
 *
 * Sessions share a ps_hub: the writer, the limits, and the sensor registry
 * that remembers the last sequence written per (sensor id, session id) so a
 * reconnecting sensor resumes exactly where the files end.
 */
#ifndef PS_SESSION_H
#define PS_SESSION_H

#include <stdint.h>
#include <uv.h>

#include "core/metrics.h"
#include "writer.h"

typedef struct ps_session ps_session;
struct ps_live;

/* What the receiver knows about one sensor process. */
typedef struct ps_sensor_rec {
    struct ps_sensor_rec *next;
    char *id;
    uint64_t session;
    uint64_t last_seq;       /* highest batch handed to the writer */
    uint64_t packets, bytes; /* records written */
    uint64_t batches, duplicates, gaps;
    uint64_t drops;        /* sum over its interfaces of the last STATS drop counters */
    uint64_t connected_ns; /* CLOCK_REALTIME of its last handshake */
    char addr[80];         /* peer address of its last connection */
    ps_session *live;      /* its current connection, if any */
} ps_sensor_rec;

#define PS_HUB_REJECT_CODES 8 /* PS_REJECT_* codes 1..7; 0 counts unknown ones */
#define PS_HUB_WIRE_REASONS 9 /* -PS_WIRE_E_* 1..8; 0 counts other ones */

typedef struct ps_hub_counters {
    uint64_t connections, rejected, decode_errors, duplicates, packets, bytes;
    uint64_t rejected_by[PS_HUB_REJECT_CODES]; /* by PS_REJECT_* code */
    uint64_t decode_io;                        /* decode_errors: I/O or memory failures */
    uint64_t decode_wire[PS_HUB_WIRE_REASONS]; /* decode_errors: by -PS_WIRE_E_* */
    uint64_t acks;                             /* ACK frames sent */
} ps_hub_counters;

typedef struct ps_hub {
    uv_loop_t *loop;
    ps_writer *writer;
    uint32_t max_frame;
    uint32_t max_batch_raw;
    const char *token; /* required auth token or NULL */
    ps_sensor_rec *sensors;
    ps_session *sessions; /* open connections */
    unsigned n_sessions;
    int stopping;
    int write_failing; /* the last flush failed: ACKs are held */
    ps_hub_counters counters;
    ps_metrics *metrics;                 /* the process registry (owned by receiver.c) */
    struct ps_live *live;                /* /live clients (api.c), or NULL */
    ps_series *ack_latency;              /* histogram, seconds (api.c), or NULL */
    void (*on_idle)(struct ps_hub *hub); /* the last session closed while stopping */
} ps_hub;

/* Takes ownership of tcp (accepted, malloc'd). */
void ps_session_start(ps_hub *hub, uv_tcp_t *tcp, const char *peer);
/* Flushes, acknowledges what is written and closes every session. */
void ps_hub_stop(ps_hub *hub);
/* Closes every session at once (the shutdown deadline passed). */
void ps_hub_abort(ps_hub *hub);
void ps_hub_free(ps_hub *hub);

#endif
