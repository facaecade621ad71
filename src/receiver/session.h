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

/* What the receiver knows about one sensor process. */
typedef struct ps_sensor_rec {
    struct ps_sensor_rec *next;
    char *id;
    uint64_t session;
    uint64_t last_seq;       /* highest batch handed to the writer */
    uint64_t packets, bytes; /* records written */
    uint64_t batches, duplicates, gaps;
    ps_session *live; /* its current connection, if any */
} ps_sensor_rec;

typedef struct ps_hub_counters {
    uint64_t connections, rejected, decode_errors, duplicates, packets, bytes;
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
    void (*on_idle)(struct ps_hub *hub); /* the last session closed while stopping */
} ps_hub;

/* What earlier runs wrote (writer's on_recovered): remembered so that the
 * sensor resumes after it and resends are dropped as duplicates. */
void ps_hub_recovered(ps_hub *hub, const char *id, size_t id_len, uint64_t session, uint64_t seq);
/* Appends a checkpoint of every (sensor, session, last sequence) known
 * (writer's checkpoint callback). */
int ps_hub_checkpoint(ps_hub *hub, ps_buf *out);

/* Takes ownership of tcp (accepted, malloc'd). */
void ps_session_start(ps_hub *hub, uv_tcp_t *tcp, const char *peer);
/* Retries a failed flush (called by the receiver's 1-second tick). */
void ps_hub_retry(ps_hub *hub);
/* Flushes, acknowledges what is written and closes every session. */
void ps_hub_stop(ps_hub *hub);
/* Closes every session at once (the shutdown deadline passed). */
void ps_hub_abort(ps_hub *hub);
void ps_hub_free(ps_hub *hub);

#endif
