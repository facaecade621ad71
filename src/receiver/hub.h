/*
 * hub: the receiver's centre. One per receiver process, on its event loop.
 *
 * Owns the sensor registry (what is known per (sensor id, session id): the
 * last batch written, so a reconnecting sensor resumes exactly where the
 * files end, and its counters), the list of open connections (each a
 * session, session.h, which speaks the protocol), and the receiver's
 * counters and metrics. It does not own what it is given in ps_hub_opts:
 * the writer, the live feed, the TLS context, the registry.
 *
 * The hub's policy, in one place: connection limits on accept (pre-handshake
 * connections have their own smaller budget, in all and per address); one
 * (sensor id, session) bound to one connection at a time (a second one is
 * refused while the first is open); one writer
 * flush per read covering every session, after which each session's
 * batches now on disk are acknowledged (an ACK always means "written");
 * while flushes fail no session reads, so sensors keep their batches in
 * their spools; handshake deadlines (always, also while writes fail) and
 * idle ones; a graceful stop that acknowledges what is written before
 * closing.
 *
 * Bounds: the registry holds at most limits.max_sensors entries, found by
 * hash; a disconnected entry expires after limits.sensor_expiry_ms (hidden,
 * kept only for its last batch if it wrote any). ps_hub_publish is O(entries
 * + ids), and /metrics has per-sensor series for at most
 * limits.max_sensor_series ids. Refusal log lines are rate-limited per
 * reason. Memory one peer can cost: receive buffers for large frames come
 * from one budget over all sessions (limits.memory_budget; net.h's
 * ps_conn_budget), batches inflate into one buffer shared by all sessions,
 * interfaces per session and the bytes queued to a peer are bounded.
 *
 * Metrics: every packetstreamer_receiver_* family is registered by
 * ps_hub_new from one table in hub.c. Rejections, TLS and auth failures
 * are counted into the registry as they happen; the rest are plain loop
 * counters copied into it by ps_hub_publish (the HTTP threads read the
 * registry, never the hub).
 *
 * Single-threaded: every function runs on the hub's loop.
 */
#ifndef PS_RECEIVER_HUB_H
#define PS_RECEIVER_HUB_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "core/tls.h"
#include "livefeed.h"
#include "writer.h"

typedef struct ps_hub ps_hub;
typedef struct ps_jobs ps_jobs;

/* Defaults of the limits below whose 0 means "default". */
#define PS_HUB_MAX_PENDING_DEFAULT 128
#define PS_HUB_MAX_PENDING_PER_SOURCE_DEFAULT 16
#define PS_HUB_MAX_SENSORS_DEFAULT 16384
#define PS_HUB_MAX_SENSOR_SERIES_DEFAULT 1024
#define PS_HUB_SENSOR_EXPIRY_MS_DEFAULT 600000

typedef struct ps_hub_limits {
    uint64_t handshake_timeout_ms; /* TLS handshake + HELLO, from accept. 0 = never */
    uint64_t idle_timeout_ms;      /* no frame for this long: cut. 0 = never */
    uint32_t max_connections;      /* all connections. 0 = unlimited */
    uint32_t max_per_source;       /* all connections from one address. 0 = unlimited */
    /* Connections still in their handshake (TLS + HELLO), counted apart so
     * that unauthenticated ones cannot fill max_connections: in all, and
     * from one address. 0: the defaults above. */
    uint32_t max_pending, max_pending_per_source;
    /* Registry entries (id, session) kept; beyond, disconnected ones are
     * forgotten (never-written ones first). 0: default. */
    uint32_t max_sensors;
    /* Sensor ids with their own per-sensor series in /metrics; later ids
     * are summed under sensor="_other". 0: default. */
    uint32_t max_sensor_series;
    /* A sensor disconnected this long leaves /api/sensors (and the registry
     * if it never wrote a batch; else its last batch stays for the
     * checkpoint and its return). 0: default. */
    uint64_t sensor_expiry_ms;
    /* Memory one peer can make the receiver hold (issue 13, items 1, 3, 4). */
    uint64_t memory_budget;          /* large-frame receive buffers, all sessions; 0 = unlimited */
    uint32_t max_inflate_ratio;      /* batch raw_len / compressed bytes; 0 = unlimited */
    uint32_t max_ifaces_per_session; /* interfaces mapped at once; 0 = PS_HUB_MAX_IFACES */
    uint64_t max_write_queue;        /* bytes queued to one peer; 0 = unlimited */
} ps_hub_limits;

/* The protocol's interface index range, and so the most a session maps. */
#define PS_HUB_MAX_IFACES 65536

/* Everything a hub is built from. Pointers are borrowed: they must outlive
 * the hub. */
typedef struct ps_hub_opts {
    ps_writer *writer;        /* required */
    ps_livefeed *livefeed;    /* /live clients, or NULL */
    ps_tls *tls;              /* server TLS context, NULL for plaintext */
    const char *token;        /* required auth token, or NULL */
    char *const *allowed_ids; /* certificate identity patterns (CN / DNS SAN) */
    int n_allowed_ids;
    int require_id_match;   /* HELLO id must be one of the certificate's names */
    uint32_t max_frame;     /* 0: PS_WIRE_MAX_FRAME_DEFAULT */
    uint32_t max_batch_raw; /* 0: PS_WIRE_MAX_BATCH_RAW_DEFAULT */
    ps_hub_limits limits;
    ps_metrics *metrics; /* where the receiver's metrics go, or NULL for none */
    /* Capture jobs (jobs.h), or NULL: v2 sessions get their frames, job
     * interfaces their file sets, flushed with the writer before an ACK. */
    ps_jobs *jobs;
    /* Called when the last session has closed after ps_hub_stop (at once
     * if none was open). May be NULL. */
    void (*on_idle)(void *ud);
    void *ud;
} ps_hub_opts;

/* 0, or -1 with err set (out of memory, no writer). */
int ps_hub_new(ps_hub **out, uv_loop_t *loop, const ps_hub_opts *o, char *err, size_t errlen);
/* After every session has closed (the loop has run out). NULL: no-op. */
void ps_hub_free(ps_hub *hub);

/* ---- the writer's recovery callbacks ---- */

/* What earlier runs wrote (writer's on_recovered): remembered so that the
 * sensor resumes after it and resends are dropped as duplicates. */
void ps_hub_recovered(ps_hub *hub, const char *id, size_t id_len, uint64_t session, uint64_t seq);
/* Appends a checkpoint of every (sensor, session, last sequence) known
 * (writer's checkpoint callback). 0, or -1 on OOM. */
int ps_hub_checkpoint(ps_hub *hub, ps_buf *out);

/* ---- connections ---- */

/* Takes ownership of tcp (accepted, malloc'd; see listener.h). Enforces the
 * connection limits, and with TLS picks up rotated certificate files first. */
void ps_hub_accept(ps_hub *hub, uv_tcp_t *tcp, const char *peer);
/* About once a second: cuts sessions past their handshake or idle
 * deadline, rotates the files whose time is up (now_ns: CLOCK_REALTIME),
 * and retries a failed flush. */
void ps_hub_tick(ps_hub *hub, uint64_t now_ns);
/* Flushes, acknowledges what is written and closes every session
 * gracefully; on_idle follows once they are gone. */
void ps_hub_stop(ps_hub *hub);
/* Closes every session at once (the shutdown deadline passed). */
void ps_hub_abort(ps_hub *hub);

/* ---- observation ---- */

#define PS_HUB_WIRE_REASONS 9 /* -PS_WIRE_E_* 1..8; 0 counts other ones */

typedef struct ps_hub_counters {
    uint64_t connections;   /* accepted (refused by a limit ones not counted) */
    uint64_t rejected;      /* handshakes answered with REJECT */
    uint64_t decode_errors; /* connections closed on an error of the peer's or ours */
    uint64_t decode_io;     /* ...of which I/O or memory failures */
    uint64_t decode_wire[PS_HUB_WIRE_REASONS]; /* ...of which by -PS_WIRE_E_* */
    uint64_t duplicates;                       /* batches received again and dropped */
    uint64_t packets, bytes;                   /* records written */
    uint64_t auth_failures;                    /* wrong token or certificate identity */
    uint64_t acks;                             /* ACK frames sent */
    uint64_t sensors_forgotten; /* entries with a written batch dropped at the registry's cap */
} ps_hub_counters;

void ps_hub_get_counters(const ps_hub *hub, ps_hub_counters *out);
unsigned ps_hub_session_count(const ps_hub *hub);
/* Nonzero while the last flush of the capture files failed (ACKs held). */
int ps_hub_write_failing(const ps_hub *hub);

/* A pod a sensor captures (an interface it announced as NAMESPACE/POD) and
 * the counters of its last STATS: packets captured, packets dropped. */
typedef struct ps_hub_pod {
    char *name;     /* NAMESPACE/POD */
    char *desc;     /* "iface=IFNAME uid=UID labels=k=v,..." (docs/protocol.md) */
    uint32_t index; /* the sensor's interface index, latest */
    uint64_t packets, drops;
} ps_hub_pod;

/* One sensor record, as seen from outside: valid during the callback. */
typedef struct ps_hub_sensor {
    const char *id;
    uint64_t session;
    const char *addr;      /* peer address of its last connection */
    int connected;         /* it has an open session now */
    uint64_t connected_ns; /* CLOCK_REALTIME of its last handshake, 0 never */
    uint64_t last_seq;     /* highest batch written */
    uint64_t packets, bytes, batches, duplicates, gaps;
    uint64_t drops;         /* its last reported drops, summed over interfaces */
    double pps, bps;        /* packets and bytes per second, as of ps_hub_publish */
    const ps_hub_pod *pods; /* the pods it has announced, in order of first sight */
    size_t n_pods;
} ps_hub_sensor;

/* Entries in the registry now (expired ones with a written batch included). */
size_t ps_hub_sensors_known(const ps_hub *hub);

/* Calls fn for every sensor record but expired ones, newest first, until fn returns
 * nonzero; returns that value, or 0. */
int ps_hub_foreach_sensor(const ps_hub *hub, int (*fn)(void *ud, const ps_hub_sensor *s), void *ud);

/* Copies the loop's counters (the hub's and the writer's totals) into the
 * metrics registry and updates the sensors' rates. About every 250 ms. */
void ps_hub_publish(ps_hub *hub);

/* Appends " rejected_<reason>=N ... tls_failures_<label>=N auth_failures=N"
 * for every non-zero counter (the receiver's final summary line). */
void ps_hub_counters_kv(const ps_hub *hub, char *out, size_t outlen);

#endif
