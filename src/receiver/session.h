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
#include "core/tls.h"
#include "writer.h"

typedef struct ps_session ps_session;
struct ps_livefeed;

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

#define PS_HUB_WIRE_REASONS 9 /* -PS_WIRE_E_* 1..8; 0 counts other ones */

typedef struct ps_hub_counters {
    uint64_t connections, rejected, decode_errors, duplicates, packets, bytes;
    uint64_t auth_failures;
    uint64_t decode_io;                        /* decode_errors: I/O or memory failures */
    uint64_t decode_wire[PS_HUB_WIRE_REASONS]; /* decode_errors: by -PS_WIRE_E_* */
    uint64_t acks;                             /* ACK frames sent */
} ps_hub_counters;

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
    X(identity)

#define PS_HUB_REASON_ENUM(n) PS_REASON_##n,
typedef enum ps_hub_reason { PS_HUB_REASONS(PS_HUB_REASON_ENUM) PS_REASON_COUNT } ps_hub_reason;
#undef PS_HUB_REASON_ENUM

/* The tls_handshake_failures_total{reason} labels (see ps_tls_failure_label). */
#define PS_HUB_TLS_REASONS(X)                                                                      \
    X(expired_certificate)                                                                         \
    X(unknown_ca)                                                                                  \
    X(no_certificate)                                                                              \
    X(bad_certificate)                                                                             \
    X(hostname_mismatch)                                                                           \
    X(protocol)                                                                                    \
    X(plaintext)                                                                                   \
    X(timeout)                                                                                     \
    X(eof)                                                                                         \
    X(other)

typedef struct ps_hub_limits {
    uint64_t handshake_timeout_ms; /* TLS handshake + HELLO, from accept */
    uint64_t idle_timeout_ms;      /* no frame for this long: cut. 0 = never */
    uint32_t max_connections;
    uint32_t max_per_source; /* 0 = unlimited */
} ps_hub_limits;

typedef struct ps_hub {
    uv_loop_t *loop;
    ps_writer *writer;
    uint32_t max_frame;
    uint32_t max_batch_raw;
    const char *token;        /* required auth token or NULL */
    ps_tls *tls;              /* server TLS context, NULL for plaintext */
    char *const *allowed_ids; /* certificate identity patterns (CN / DNS SAN) */
    int n_allowed_ids;
    int require_id_match; /* HELLO id must be one of the certificate's names */
    ps_hub_limits limits;
    ps_sensor_rec *sensors;
    ps_session *sessions; /* open connections */
    unsigned n_sessions;
    int stopping;
    int write_failing; /* the last flush failed: ACKs are held */
    ps_hub_counters counters;
    ps_metrics *metrics; /* the process registry (owned by receiver.c) */
    ps_metric *m_rejected, *m_tls_failures;
    ps_series *m_auth_failures;
    uint64_t rejected_by_reason[PS_REASON_COUNT];
    struct ps_livefeed *live;            /* /live clients (api.c), or NULL */
    ps_series *ack_latency;              /* histogram, seconds (api.c), or NULL */
    void (*on_idle)(struct ps_hub *hub); /* the last session closed while stopping */
} ps_hub;

/* What earlier runs wrote (writer's on_recovered): remembered so that the
 * sensor resumes after it and resends are dropped as duplicates. */
void ps_hub_recovered(ps_hub *hub, const char *id, size_t id_len, uint64_t session, uint64_t seq);
/* Appends a checkpoint of every (sensor, session, last sequence) known
 * (writer's checkpoint callback). */
int ps_hub_checkpoint(ps_hub *hub, ps_buf *out);

/* Retries a failed flush (called by the receiver's 1-second tick). */
void ps_hub_retry(ps_hub *hub);
/* Registers the hub's counters in hub->metrics. -1 on OOM. */
int ps_hub_init_metrics(ps_hub *hub);
/* Takes ownership of tcp (accepted, malloc'd). Enforces the connection
 * limits, and with TLS picks up rotated certificate files first. */
void ps_session_start(ps_hub *hub, uv_tcp_t *tcp, const char *peer);
/* Cuts sessions past their handshake or idle deadline. Call about once a
 * second. */
void ps_hub_tick(ps_hub *hub);
/* Appends " rejected_<reason>=N ... tls_failures_<label>=N auth_failures=N"
 * for every non-zero counter (the receiver's final summary line). */
void ps_hub_counters_kv(const ps_hub *hub, char *out, size_t outlen);
const char *ps_hub_reason_name(ps_hub_reason r);
/* Flushes, acknowledges what is written and closes every session. */
void ps_hub_stop(ps_hub *hub);
/* Closes every session at once (the shutdown deadline passed). */
void ps_hub_abort(ps_hub *hub);
void ps_hub_free(ps_hub *hub);

#endif
