/*
 * hub_internal: what a session (session.c) uses of its hub, and nothing
 * else includes. The hub keeps the books (registry, counters, metrics);
 * the session decides what happened on its connection and tells the hub
 * through these calls, so every counter has one place that changes it.
 */
#ifndef PS_RECEIVER_HUB_INTERNAL_H
#define PS_RECEIVER_HUB_INTERNAL_H

#include <stdint.h>

#include "core/net.h"
#include "hub.h"

typedef struct ps_session ps_session;

/* Why a connection was refused or cut: the `reason` label of
 * packetstreamer_receiver_rejected_connections_total. */
#define PS_HUB_REASONS(X)                                                                          \
    X(garbage)                                                                                     \
    X(bad_magic)                                                                                   \
    X(unsupported_version)                                                                         \
    X(malformed_handshake)                                                                         \
    X(frame_too_long)                                                                              \
    X(decompression_bomb)                                                                          \
    X(bad_batch)                                                                                   \
    X(truncated)                                                                                   \
    X(data_before_handshake)                                                                       \
    X(protocol)                                                                                    \
    X(handshake_timeout)                                                                           \
    X(idle_timeout)                                                                                \
    X(max_connections)                                                                             \
    X(max_connections_per_source)                                                                  \
    X(tls_on_plaintext)                                                                            \
    X(plaintext_on_tls)                                                                            \
    X(tls_handshake)                                                                               \
    X(tls_error)                                                                                   \
    X(auth)                                                                                        \
    X(identity)                                                                                    \
    X(max_pending)                                                                                 \
    X(max_pending_per_source)                                                                      \
    X(session_in_use)                                                                              \
    X(sequence_jump)                                                                               \
    X(registry_full)                                                                               \
    X(slow_reader)                                                                                 \
    X(too_many_interfaces)                                                                         \
    X(memory_budget)

#define PS_HUB_REASON_ENUM(n) PS_REASON_##n,
typedef enum ps_hub_reason { PS_HUB_REASONS(PS_HUB_REASON_ENUM) PS_REASON_COUNT } ps_hub_reason;
#undef PS_HUB_REASON_ENUM

/* "garbage", ... ; "other" for PS_REASON_COUNT (a refusal without a label). */
const char *ps_hub_reason_name(ps_hub_reason r);

/* How far ahead of the last batch written a batch's sequence may be: a gap
 * is legal (the sensor evicted batches it never sent), a jump beyond this is
 * not; it would make every later honest batch look like a duplicate. 2^32
 * batches is years of sealing at any realistic rate. */
#define PS_HUB_MAX_SEQ_JUMP (1ull << 32)

/* A registry entry: what the receiver knows about one sensor process.
 * Sessions read it; the hub writes it (ps_hub_sensor_* and ps_hub_count_*).
 * An entry with an open connection (conn) is never removed; without one it
 * may be (expiry, the registry's cap), so a session keeps a pointer to its
 * entry only while it is that entry's conn. */
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
    ps_session *conn;      /* its current connection, if any */
    uint64_t rate_packets, rate_bytes, rate_t_ns; /* the rate window's start */
    double pps, bps;
    ps_hub_pod *pods; /* its pods' interfaces (announced as NS/POD), by name */
    uint32_t n_pods, cap_pods;
    /* private: the hub's own (registry bookkeeping) */
    struct ps_sensor_rec *prev, *hnext; /* creation-order list, hash chain */
    struct ps_hub_id_series *series;    /* its id's /metrics series, once published */
    uint64_t left_ms;                   /* hub clock when its connection left, 0 connected */
    uint64_t probe_ms;                  /* the last takeover probe of its connection */
    int dormant;                        /* expired: kept for the checkpoint only */
} ps_sensor_rec;

/* ---- settings and loop ---- */

/* The options the hub was built with (defaults filled in). */
const ps_hub_opts *ps_hub_options(const ps_hub *hub);
uv_loop_t *ps_hub_loop(const ps_hub *hub);

/* ---- the registry ---- */

/* The record for (id, session), created on first sight. NULL on OOM. */
ps_sensor_rec *ps_hub_sensor_get(ps_hub *hub, const char *id, size_t id_len, uint64_t session);
/* Nonzero when ps_hub_sensor_get returned NULL because the registry is at
 * limits.maxSensors and every entry has a connection (not out of memory). */
int ps_hub_registry_full(const ps_hub *hub);
/* A second connection asks for rec's (id, session): 1 at most once a second,
 * when the caller should probe rec's connection (a HEARTBEAT, so a dead one
 * errors out and frees the session sooner). */
int ps_hub_sensor_probe_due(ps_hub *hub, ps_sensor_rec *rec);
/* s now speaks for rec (its handshake was accepted from peer). */
void ps_hub_sensor_connected(ps_hub *hub, ps_sensor_rec *rec, ps_session *s, const char *peer);
/* s no longer speaks for rec (it closed, or a newer connection took over). */
void ps_hub_sensor_detach(ps_sensor_rec *rec, const ps_session *s);
/* A validated batch went to the writer: records packets, bytes captured. */
void ps_hub_count_batch(ps_hub *hub, ps_sensor_rec *rec, uint64_t seq, uint32_t records,
                        uint64_t bytes);
void ps_hub_count_duplicate(ps_hub *hub, ps_sensor_rec *rec);
/* An interface announcement of the sensor's session: one whose name is
 * NAMESPACE/POD is remembered as a pod (for /api/sensors), under the
 * sensor's interface index. Bounded by limits.maxInterfacesPerSession. */
void ps_hub_sensor_iface(ps_hub *hub, ps_sensor_rec *rec, uint32_t index, const char *name,
                         const char *desc);
/* A STATS frame for that index: the pod's cumulative counters. */
void ps_hub_sensor_iface_stats(ps_sensor_rec *rec, uint32_t index, uint64_t packets,
                               uint64_t drops);
void ps_hub_count_gap(ps_sensor_rec *rec);
/* The sensor's drop counters, summed over its interfaces. */
void ps_hub_sensor_drops(ps_sensor_rec *rec, uint64_t drops);

/* ---- counting what happens to connections ---- */

/* A refused or cut connection, by label. */
void ps_hub_count_reason(ps_hub *hub, ps_hub_reason r);
/* Whether the log line for a refusal of reason r may be written now: at
 * most a burst per reason every few seconds, since a peer can trigger them
 * at will; the skipped ones are summed up in one later line. */
int ps_hub_log_refusal(ps_hub *hub, ps_hub_reason r);
/* A handshake answered with REJECT (label PS_REASON_COUNT: none). */
void ps_hub_count_rejected(ps_hub *hub, ps_hub_reason r);
/* A connection closed on an error: err a uv error, a PS_CONN_E_* code, or
 * a wire error as PS_CONN_E_WIRE(e); UV_ENOMEM and UV_EIO count as io. */
void ps_hub_count_decode_error(ps_hub *hub, int err);
/* A failed TLS handshake (label of ps_conn_fail_label, "plaintext", ...). */
void ps_hub_count_tls_failure(ps_hub *hub, const char *label);
void ps_hub_count_auth_failure(ps_hub *hub);

/* ---- memory ---- */

/* The budget every session's connection draws on (ps_conn_set_budget). */
ps_conn_budget *ps_hub_budget(ps_hub *hub);
/* The one inflate buffer all sessions share: a batch is inflated, checked,
 * written and fed to /live within one frame callback, and the loop runs one
 * callback at a time, so one buffer of max_batch_raw serves every session.
 * Valid until the callback returns; the hub shrinks it when unused. */
ps_buf *ps_hub_inflate_buf(ps_hub *hub);

/* ---- the shared flush ---- */

/* After a read: one flush covers every session, then each is
 * acknowledged what is on disk (see hub.h). */
void ps_hub_flush_and_ack(ps_hub *hub);
/* The session closed: the hub forgets it (and may go idle). */
void ps_hub_session_closed(ps_hub *hub, ps_session *s);

#endif
