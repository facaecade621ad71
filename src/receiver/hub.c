/*
 * hub: the receiver's shared state and policy (see hub.h): the sensor
 * registry, the open sessions, the counters and the metrics table.
 *
 * Why the hub keeps every counter and the session only reports events
 * (hub_internal.h): the numbers a user sees (the summary line, /metrics,
 * /api/sensors) then each have one place that changes them, and the
 * session's code is the protocol alone.
 *
 * The registry is a list in creation order (what /api/sensors shows) plus
 * a hash on (id, session), since every HELLO looks its entry up and an
 * attacker chooses how many there are. Entries leave it two ways: expiry
 * (tick, O(n) a second) and the cap (make_room). Either folds the entry's
 * counters into its id's "retired" sums first, so the per-sensor counters
 * in /metrics never go backwards. What exactly-once needs of an entry is
 * its last_seq alone; an expired entry that has one stays, dormant and
 * hidden, until the cap needs its room (that sensor then resends from its
 * spool: duplicates, never loss).
 */
#include "hub.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/net.h"
#include "core/wire.h"
#include "hub_internal.h"
#include "jobs.h"
#include "recovery.h"
#include "session.h"

#define HUB_RATE_WINDOW_NS 1000000000ull
/* Refusal log lines: at most HUB_LOG_BURST per reason per window. */
#define HUB_LOG_BURST 10
#define HUB_LOG_WINDOW_MS 10000
#define HUB_PROBE_EVERY_MS 1000
/* Label of the per-sensor series of the ids beyond max_sensor_series. */
#define HUB_OTHER_ID "_other"
/* The shared inflate buffer is kept up to this size; a larger one (a large
 * batch) is freed once no batch has needed it for HUB_INFLATE_IDLE_MS. */
#define HUB_INFLATE_KEEP (4u << 20)
#define HUB_INFLATE_IDLE_MS 2000

#define HUB_NAME(n) #n,
static const char *const reason_names[] = {PS_HUB_REASONS(HUB_NAME)};
#undef HUB_NAME

/* The tls_handshake_failures_total{reason} labels (see ps_tls_failure_label). */
static const char *const tls_reason_names[] = {"expired_certificate",
                                               "unknown_ca",
                                               "no_certificate",
                                               "bad_certificate",
                                               "hostname_mismatch",
                                               "protocol",
                                               "plaintext",
                                               "timeout",
                                               "eof",
                                               "other"};
#define HUB_TLS_REASONS (sizeof(tls_reason_names) / sizeof(tls_reason_names[0]))

/* ---- the metrics table ---- */

/* The families, in registration order (the order of /metrics). */
enum {
    R_REJECTED,
    R_TLS,
    R_AUTH,
    R_CONNECTIONS,
    R_CONNECTED,
    R_KNOWN,
    R_FORGOTTEN,
    R_PACKETS,
    R_BYTES,
    R_BATCHES,
    R_DUPS,
    R_GAPS,
    R_DROPS,
    R_ROTATED,
    R_DELETED,
    R_CLOSED_EARLY,
    R_OPEN_FILES,
    R_CHECKPOINT_FAILED,
    R_DISK,
    R_FILE_BYTES,
    R_WRITE_FAILING,
    R_DECODE,
    R_ACKS,
    R_ACK_LATENCY,
    R_MEM_BYTES,
    R_MEM_WAITS,
    R_IFACES,
    R_COUNT
};

/* What ps_hub_publish copies from: the loop's plain numbers at one instant. */
typedef struct hub_sample {
    uint64_t connections, connected, known, forgotten;
    uint64_t rotated, deleted, disk, file_bytes, write_failing;
    uint64_t closed_early[2]; /* idle, open_limit */
    uint64_t open_files, checkpoint_failed;
    uint64_t decode[PS_HUB_WIRE_REASONS + 1]; /* by wire reason, then io */
    uint64_t acks;
    uint64_t mem_bytes, mem_waits;
    uint64_t ifaces;
} hub_sample;

typedef enum {
    SRC_EVENT,      /* counted as it happens (ps_hub_count_*) */
    SRC_SAMPLE,     /* copied from hub_sample at off */
    SRC_PER_SENSOR, /* summed per sensor id from ps_sensor_rec at off */
} hub_src;

typedef struct hub_metric {
    ps_metric_type type;
    const char *name, *help, *label; /* label: the one label name, or NULL */
    hub_src src;
    size_t off;
    int n;                       /* series created up front */
    const char *(*value)(int i); /* their label values */
} hub_metric;

static const char *reason_value(int i)
{
    return reason_names[i];
}

static const char *tls_value(int i)
{
    return tls_reason_names[i];
}

static const char *closed_early_value(int i)
{
    return i == 0 ? "idle" : "open_limit";
}

static const char *decode_value(int i)
{
    return i == 0 ? "other" : i < PS_HUB_WIRE_REASONS ? ps_wire_strerror(-i) : "io";
}

#define SAMPLE(f) SRC_SAMPLE, offsetof(hub_sample, f), 1, NULL
#define PER_SENSOR(f) SRC_PER_SENSOR, offsetof(ps_sensor_rec, f), 0, NULL

static const char decode_help[] =
    "Sensor connections closed on an error, by reason: the protocol rule a frame broke "
    "(truncated, too_long, bad_value, ...; other: any other), or io (a read, write or memory "
    "failure).";

static const hub_metric metric_defs[R_COUNT] = {
    [R_REJECTED] = {PS_METRIC_COUNTER, "packetstreamer_receiver_rejected_connections_total",
                    "Connections refused or closed because of what the peer sent or did, by "
                    "reason.",
                    "reason", SRC_EVENT, 0, PS_REASON_COUNT, reason_value},
    [R_TLS] = {PS_METRIC_COUNTER, "packetstreamer_receiver_tls_handshake_failures_total",
               "TLS handshakes that failed, by reason.", "reason", SRC_EVENT, 0,
               (int)HUB_TLS_REASONS, tls_value},
    [R_AUTH] = {PS_METRIC_COUNTER, "packetstreamer_receiver_auth_failures_total",
                "Handshakes refused for a wrong or missing token or a disallowed certificate "
                "identity.",
                NULL, SRC_EVENT, 0, 1, NULL},
    [R_CONNECTIONS] = {PS_METRIC_COUNTER, "packetstreamer_receiver_connections_total",
                       "TCP connections accepted from sensors.", NULL, SAMPLE(connections)},
    [R_CONNECTED] = {PS_METRIC_GAUGE, "packetstreamer_receiver_sensors_connected",
                     "Sensors with an established session now.", NULL, SAMPLE(connected)},
    [R_KNOWN] = {PS_METRIC_GAUGE, "packetstreamer_receiver_sensors_known",
                 "Sensor sessions the receiver remembers (connected, recently gone, or kept for "
                 "their last written batch); at most limits.maxSensors.",
                 NULL, SAMPLE(known)},
    [R_FORGOTTEN] = {PS_METRIC_COUNTER, "packetstreamer_receiver_sensors_forgotten_total",
                     "Disconnected sensor sessions with written batches forgotten because the "
                     "registry was full (if one returns, it resends what it still holds).",
                     NULL, SAMPLE(forgotten)},
    [R_PACKETS] = {PS_METRIC_COUNTER, "packetstreamer_receiver_packets_total",
                   "Packets written to capture files, by sensor.", "sensor", PER_SENSOR(packets)},
    [R_BYTES] = {PS_METRIC_COUNTER, "packetstreamer_receiver_packet_bytes_total",
                 "Captured bytes of the packets written, by sensor.", "sensor", PER_SENSOR(bytes)},
    [R_BATCHES] = {PS_METRIC_COUNTER, "packetstreamer_receiver_batches_total",
                   "Batches written, by sensor.", "sensor", PER_SENSOR(batches)},
    [R_DUPS] = {PS_METRIC_COUNTER, "packetstreamer_receiver_duplicate_batches_total",
                "Batches received again after a reconnect and dropped (already written), by "
                "sensor.",
                "sensor", PER_SENSOR(duplicates)},
    [R_GAPS] = {PS_METRIC_COUNTER, "packetstreamer_receiver_sequence_gaps_total",
                "Times a sensor's batch sequence skipped ahead (batches lost before the "
                "receiver), by sensor.",
                "sensor", PER_SENSOR(gaps)},
    [R_DROPS] = {PS_METRIC_COUNTER, "packetstreamer_receiver_sensor_dropped_packets_total",
                 "Packets the sensors report as dropped (kernel, interface and sensor drops), by "
                 "sensor.",
                 "sensor", PER_SENSOR(drops)},
    [R_ROTATED] = {PS_METRIC_COUNTER, "packetstreamer_receiver_files_rotated_total",
                   "Capture files completed (closed and renamed).", NULL, SAMPLE(rotated)},
    [R_DELETED] = {PS_METRIC_COUNTER, "packetstreamer_receiver_files_deleted_total",
                   "Capture files deleted by retention.", NULL, SAMPLE(deleted)},
    [R_CLOSED_EARLY] = {PS_METRIC_COUNTER, "packetstreamer_receiver_files_closed_early_total",
                        "Per-sensor capture files completed before rotation was due, by reason: "
                        "idle (no record for output.file.idleCloseSec), open_limit (to stay "
                        "under output.file.maxOpenFiles, or when out of file descriptors).",
                        "reason", SRC_SAMPLE, offsetof(hub_sample, closed_early), 2,
                        closed_early_value},
    [R_OPEN_FILES] = {PS_METRIC_GAUGE, "packetstreamer_receiver_open_files",
                      "Capture files open for writing now.", NULL, SAMPLE(open_files)},
    [R_CHECKPOINT_FAILED] = {PS_METRIC_COUNTER, "packetstreamer_receiver_checkpoint_failures_total",
                             "Capture files completed without their restart checkpoint (out of "
                             "memory): after a restart their sensors may resend batches.",
                             NULL, SAMPLE(checkpoint_failed)},
    [R_DISK] = {PS_METRIC_GAUGE, "packetstreamer_receiver_disk_bytes",
                "Bytes of capture files on disk in the writer's file sets.", NULL, SAMPLE(disk)},
    [R_FILE_BYTES] = {PS_METRIC_COUNTER, "packetstreamer_receiver_file_bytes_total",
                      "Bytes written to capture files (headers and blocks included).", NULL,
                      SAMPLE(file_bytes)},
    [R_WRITE_FAILING] = {PS_METRIC_GAUGE, "packetstreamer_receiver_write_failing",
                         "1 while writing capture files fails (acknowledgements are held).", NULL,
                         SAMPLE(write_failing)},
    [R_DECODE] = {PS_METRIC_COUNTER, "packetstreamer_receiver_decode_errors_total", decode_help,
                  "reason", SRC_SAMPLE, offsetof(hub_sample, decode), PS_HUB_WIRE_REASONS + 1,
                  decode_value},
    [R_ACKS] = {PS_METRIC_COUNTER, "packetstreamer_receiver_acks_total",
                "Acknowledgements sent to sensors (each after the batches are on disk).", NULL,
                SAMPLE(acks)},
    [R_ACK_LATENCY] = {PS_METRIC_HISTOGRAM, "packetstreamer_receiver_ack_latency_seconds",
                       "Time from receiving the oldest batch an acknowledgement covers to sending "
                       "it (the batches are then on disk).",
                       NULL, SRC_EVENT, 0, 1, NULL},
    [R_MEM_BYTES] = {PS_METRIC_GAUGE, "packetstreamer_receiver_buffer_bytes",
                     "Bytes of receive buffers grown for large frames (what "
                     "limits.memoryBudgetMB bounds) plus the shared inflate buffer.",
                     NULL, SAMPLE(mem_bytes)},
    [R_MEM_WAITS] = {PS_METRIC_COUNTER, "packetstreamer_receiver_memory_waits_total",
                     "Times a sensor connection stopped being read because the receive buffers "
                     "had reached limits.memoryBudgetMB.",
                     NULL, SAMPLE(mem_waits)},
    [R_IFACES] = {PS_METRIC_GAUGE, "packetstreamer_receiver_interfaces",
                  "Interface entries held for capture files: those of connected sessions, and "
                  "released ones whose description is still in the current file.",
                  NULL, SAMPLE(ifaces)},
};

static const double ack_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};

#define HUB_PER_SENSOR (R_DROPS - R_PACKETS + 1)

/* Per sensor id, created on first publish (at most max_sensor_series of
 * them, then the shared HUB_OTHER_ID one); never freed before the hub. */
typedef struct ps_hub_id_series {
    struct ps_hub_id_series *hnext;
    char *id;
    ps_series *s[HUB_PER_SENSOR];
    uint64_t retired[HUB_PER_SENSOR]; /* counts of its entries that left the registry */
    uint64_t sum[HUB_PER_SENSOR];     /* ps_hub_publish's running sums */
} hub_id_series;

typedef struct hub_loglimit {
    uint64_t start_ms;
    uint32_t logged;
    uint64_t skipped;
} hub_loglimit;

struct ps_hub {
    uv_loop_t *loop;
    ps_hub_opts o;
    ps_sensor_rec *sensors, *tail; /* newest first */
    ps_sensor_rec **buckets;       /* hash on (id, session) */
    size_t n_buckets, n_sensors;
    int registry_full;     /* the last ps_hub_sensor_get found no room */
    ps_session **sessions; /* open connections, oldest first */
    unsigned n_sessions, cap_sessions;
    int stopping;
    int write_failing; /* the last flush failed: ACKs are held */
    ps_hub_counters counters;
    uint64_t rejected_by_reason[PS_REASON_COUNT];
    uint64_t tls_failures[HUB_TLS_REASONS];

    /* Metrics (all NULL without a registry). */
    ps_metric *family[R_COUNT];
    ps_series **series[R_COUNT]; /* the up-front series of each family */
    /* Room for every up-front series of the table (register_metrics checks). */
    ps_series *series_store[PS_REASON_COUNT + HUB_TLS_REASONS + PS_HUB_WIRE_REASONS + 32];
    hub_id_series **ids; /* one per id with its own series */
    size_t n_ids;
    hub_id_series **id_buckets; /* hash on id */
    size_t n_id_buckets;
    hub_id_series other; /* ids beyond max_sensor_series (series made when needed) */
    hub_loglimit loglimit[PS_REASON_COUNT];

    /* Memory (issue 13 item 1): see ps_hub_budget, ps_hub_inflate_buf. */
    ps_conn_budget *budget;
    ps_buf inflate;
    uint64_t inflate_used_ms; /* loop time of its last use */
};

/* The hub's clock for expiry and rate limits (ms, monotonic). */
static uint64_t hub_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* FNV-1a */
static uint64_t hash_bytes(const char *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return h;
}

static size_t rec_bucket(const ps_hub *hub, const char *id, size_t id_len, uint64_t session)
{
    uint64_t h = hash_bytes(id, id_len, 0xcbf29ce484222325ull);
    h = (h ^ session) * 0x100000001b3ull;
    return (size_t)(h ^ (h >> 29)) & (hub->n_buckets - 1);
}

static int register_metrics(ps_hub *hub)
{
    ps_metrics *m = hub->o.metrics;
    size_t used = 0;
    for (int r = 0; r < R_COUNT; r++) {
        const hub_metric *d = &metric_defs[r];
        hub->family[r] =
            d->type == PS_METRIC_HISTOGRAM
                ? ps_metrics_histogram(m, d->name, d->help, d->label, ack_bounds,
                                       (int)(sizeof(ack_bounds) / sizeof(ack_bounds[0])))
                : ps_metrics_family(m, d->type, d->name, d->help, d->label);
        if (!hub->family[r])
            return -1;
        hub->series[r] = &hub->series_store[used];
        used += (size_t)d->n;
        if (used > sizeof(hub->series_store) / sizeof(hub->series_store[0]))
            return -1; /* the store is sized for the table */
        /* Every label exists from the start, at zero, as rate() prefers. */
        for (int i = 0; i < d->n; i++) {
            hub->series[r][i] =
                ps_metric_series(hub->family[r], d->value ? d->value(i) : NULL, NULL, NULL);
            if (!hub->series[r][i])
                return -1;
        }
    }
    return 0;
}

static int make_series(ps_hub *hub, hub_id_series *s, const char *id)
{
    for (int k = 0; k < HUB_PER_SENSOR; k++) {
        s->s[k] = ps_metric_series(hub->family[R_PACKETS + k], id, NULL, NULL);
        if (!s->s[k])
            return -1;
    }
    return 0;
}

/* A sensor id's series: its own while there is room, else the shared one.
 * NULL on OOM (tried again at the next publish). */
static hub_id_series *id_series(ps_hub *hub, const char *id)
{
    size_t b = (size_t)hash_bytes(id, strlen(id), 0xcbf29ce484222325ull) & (hub->n_id_buckets - 1);
    for (hub_id_series *s = hub->id_buckets[b]; s; s = s->hnext)
        if (strcmp(s->id, id) == 0)
            return s;
    if (hub->n_ids >= hub->o.limits.max_sensor_series) {
        if (!hub->other.s[0] && make_series(hub, &hub->other, HUB_OTHER_ID) != 0)
            return NULL;
        return &hub->other;
    }
    hub_id_series **n = realloc(hub->ids, (hub->n_ids + 1) * sizeof(*n));
    if (!n)
        return NULL;
    hub->ids = n;
    hub_id_series *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->id = strdup(id);
    if (!s->id || make_series(hub, s, id) != 0) {
        /* Series already made stay in the registry, unused: OOM only. */
        free(s->id);
        free(s);
        return NULL;
    }
    s->hnext = hub->id_buckets[b];
    hub->id_buckets[b] = s;
    hub->ids[hub->n_ids++] = s;
    return s;
}

static uint64_t rec_counter(const ps_sensor_rec *r, int k)
{
    uint64_t v;
    memcpy(&v, (const char *)r + metric_defs[R_PACKETS + k].off, sizeof(v));
    return v;
}

static void update_rate(ps_sensor_rec *r, uint64_t now)
{
    if (r->rate_t_ns == 0) {
        r->rate_packets = r->packets;
        r->rate_bytes = r->bytes;
        r->rate_t_ns = now;
    } else if (now - r->rate_t_ns >= HUB_RATE_WINDOW_NS) {
        double dt = (double)(now - r->rate_t_ns) / 1e9;
        r->pps = (double)(r->packets - r->rate_packets) / dt;
        r->bps = (double)(r->bytes - r->rate_bytes) / dt;
        r->rate_packets = r->packets;
        r->rate_bytes = r->bytes;
        r->rate_t_ns = now;
    }
}

/* Per sensor id (an id may have had several sessions): one pass over the
 * entries, each of which knows its id's series, so O(entries + ids). */
static void publish_per_sensor(ps_hub *hub)
{
    for (size_t i = 0; i < hub->n_ids; i++)
        memcpy(hub->ids[i]->sum, hub->ids[i]->retired, sizeof(hub->ids[i]->sum));
    memcpy(hub->other.sum, hub->other.retired, sizeof(hub->other.sum));
    for (ps_sensor_rec *r = hub->sensors; r; r = r->next) {
        if (!r->series)
            r->series = id_series(hub, r->id);
        if (!r->series) {
            ps_debug("receiver", "out of memory: no metrics for sensor %s yet", r->id);
            continue;
        }
        for (int k = 0; k < HUB_PER_SENSOR; k++)
            r->series->sum[k] += rec_counter(r, k);
    }
    for (size_t i = 0; i < hub->n_ids; i++)
        for (int k = 0; k < HUB_PER_SENSOR; k++)
            ps_series_set_u64(hub->ids[i]->s[k], hub->ids[i]->sum[k]);
    if (hub->other.s[0])
        for (int k = 0; k < HUB_PER_SENSOR; k++)
            ps_series_set_u64(hub->other.s[k], hub->other.sum[k]);
}

void ps_hub_publish(ps_hub *hub)
{
    uint64_t now = uv_hrtime();
    hub_sample smp = {0};
    for (ps_sensor_rec *r = hub->sensors; r; r = r->next) {
        update_rate(r, now);
        if (r->conn)
            smp.connected++;
    }
    if (!hub->o.metrics)
        return;
    smp.known = hub->n_sensors;
    smp.forgotten = hub->counters.sensors_forgotten;
    ps_writer_totals wt;
    ps_writer_get_totals(hub->o.writer, &wt);
    smp.connections = hub->counters.connections;
    smp.rotated = wt.files_closed;
    smp.deleted = wt.files_deleted;
    smp.closed_early[0] = wt.closed_idle;
    smp.closed_early[1] = wt.closed_open_limit;
    smp.open_files = wt.open_files;
    smp.checkpoint_failed = wt.checkpoint_failures;
    smp.disk = ps_writer_disk_bytes(hub->o.writer);
    smp.file_bytes = wt.bytes;
    smp.write_failing = hub->write_failing ? 1 : 0;
    memcpy(smp.decode, hub->counters.decode_wire, sizeof(hub->counters.decode_wire));
    smp.decode[PS_HUB_WIRE_REASONS] = hub->counters.decode_io;
    smp.acks = hub->counters.acks;
    smp.mem_bytes = ps_conn_budget_used(hub->budget) + hub->inflate.cap;
    smp.mem_waits = ps_conn_budget_waits(hub->budget);
    smp.ifaces = ps_writer_iface_count(hub->o.writer);
    for (int r = 0; r < R_COUNT; r++) {
        const hub_metric *d = &metric_defs[r];
        if (d->src != SRC_SAMPLE)
            continue;
        for (int i = 0; i < d->n; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&smp + d->off + (size_t)i * sizeof(v), sizeof(v));
            if (d->type == PS_METRIC_GAUGE)
                ps_series_set(hub->series[r][i], (double)v);
            else
                ps_series_set_u64(hub->series[r][i], v);
        }
    }
    publish_per_sensor(hub);
}

/* ---- lifecycle ---- */

int ps_hub_new(ps_hub **out, uv_loop_t *loop, const ps_hub_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!o->writer) {
        snprintf(err, errlen, "the receiver's hub needs a writer");
        return -1;
    }
    ps_hub *hub = calloc(1, sizeof(*hub));
    if (!hub) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    hub->loop = loop;
    hub->o = *o;
    if (!hub->o.max_frame)
        hub->o.max_frame = PS_WIRE_MAX_FRAME_DEFAULT;
    if (!hub->o.max_batch_raw)
        hub->o.max_batch_raw = PS_WIRE_MAX_BATCH_RAW_DEFAULT;
    ps_hub_limits *lim = &hub->o.limits;
    if (!lim->max_pending)
        lim->max_pending = PS_HUB_MAX_PENDING_DEFAULT;
    if (!lim->max_pending_per_source)
        lim->max_pending_per_source = PS_HUB_MAX_PENDING_PER_SOURCE_DEFAULT;
    if (!lim->max_sensors)
        lim->max_sensors = PS_HUB_MAX_SENSORS_DEFAULT;
    if (!lim->max_sensor_series)
        lim->max_sensor_series = PS_HUB_MAX_SENSOR_SERIES_DEFAULT;
    if (!lim->sensor_expiry_ms)
        lim->sensor_expiry_ms = PS_HUB_SENSOR_EXPIRY_MS_DEFAULT;
    hub->n_buckets = 64;
    hub->n_id_buckets = 64;
    while (hub->n_id_buckets < lim->max_sensor_series && hub->n_id_buckets < (1u << 16))
        hub->n_id_buckets *= 2;
    hub->buckets = calloc(hub->n_buckets, sizeof(*hub->buckets));
    hub->id_buckets = calloc(hub->n_id_buckets, sizeof(*hub->id_buckets));
    hub->other.id = (char *)HUB_OTHER_ID;
    if (!hub->buckets || !hub->id_buckets) {
        snprintf(err, errlen, "out of memory");
        ps_hub_free(hub);
        return -1;
    }
    /* The budget must hold the largest frame, or such a frame waits forever. */
    uint64_t floor = (uint64_t)hub->o.max_frame + (512u << 10);
    if (hub->o.limits.memory_budget && hub->o.limits.memory_budget < floor)
        hub->o.limits.memory_budget = floor;
    if (!hub->o.limits.max_ifaces_per_session ||
        hub->o.limits.max_ifaces_per_session > PS_HUB_MAX_IFACES)
        hub->o.limits.max_ifaces_per_session = PS_HUB_MAX_IFACES;
    hub->budget = ps_conn_budget_new((size_t)hub->o.limits.memory_budget);
    if (!hub->budget) {
        snprintf(err, errlen, "out of memory");
        ps_hub_free(hub);
        return -1;
    }
    if (hub->o.metrics && register_metrics(hub) != 0) {
        snprintf(err, errlen, "out of memory");
        ps_hub_free(hub);
        return -1;
    }
    *out = hub;
    return 0;
}

static void rec_free(ps_sensor_rec *r)
{
    for (uint32_t i = 0; i < r->n_pods; i++) {
        free(r->pods[i].name);
        free(r->pods[i].desc);
    }
    free(r->pods);
    free(r->id);
    free(r);
}

void ps_hub_free(ps_hub *hub)
{
    if (!hub)
        return;
    while (hub->sensors) {
        ps_sensor_rec *r = hub->sensors;
        hub->sensors = r->next;
        rec_free(r);
    }
    for (size_t i = 0; i < hub->n_ids; i++) {
        free(hub->ids[i]->id);
        free(hub->ids[i]);
    }
    free(hub->ids);
    free(hub->id_buckets);
    free(hub->buckets);
    free(hub->sessions);
    ps_conn_budget_free(hub->budget);
    ps_buf_free(&hub->inflate);
    free(hub);
}

const ps_hub_opts *ps_hub_options(const ps_hub *hub)
{
    return &hub->o;
}

uv_loop_t *ps_hub_loop(const ps_hub *hub)
{
    return hub->loop;
}

ps_conn_budget *ps_hub_budget(ps_hub *hub)
{
    return hub->budget;
}

ps_buf *ps_hub_inflate_buf(ps_hub *hub)
{
    hub->inflate_used_ms = uv_now(hub->loop);
    return &hub->inflate;
}

/* ---- the registry ---- */

static ps_sensor_rec *rec_find(const ps_hub *hub, const char *id, size_t id_len, uint64_t session)
{
    for (ps_sensor_rec *r = hub->buckets[rec_bucket(hub, id, id_len, session)]; r; r = r->hnext)
        if (r->session == session && strlen(r->id) == id_len && memcmp(r->id, id, id_len) == 0)
            return r;
    return NULL;
}

/* Doubles the hash table once it holds as many entries as buckets (the
 * table stays as it is when that fails: only longer chains). */
static void rec_grow(ps_hub *hub)
{
    if (hub->n_sensors < hub->n_buckets || hub->n_buckets >= ((size_t)1 << 24))
        return;
    ps_sensor_rec **nb = calloc(hub->n_buckets * 2, sizeof(*nb));
    if (!nb)
        return;
    free(hub->buckets);
    hub->buckets = nb;
    hub->n_buckets *= 2;
    for (ps_sensor_rec *r = hub->sensors; r; r = r->next) {
        size_t b = rec_bucket(hub, r->id, strlen(r->id), r->session);
        r->hnext = nb[b];
        nb[b] = r;
    }
}

/* Takes a disconnected entry out of the registry; its counters go on in
 * its id's retired sums. */
static void rec_remove(ps_hub *hub, ps_sensor_rec *r)
{
    if (!r->series && hub->o.metrics)
        r->series = id_series(hub, r->id);
    if (r->series)
        for (int k = 0; k < HUB_PER_SENSOR; k++)
            r->series->retired[k] += rec_counter(r, k);
    ps_sensor_rec **pp = &hub->buckets[rec_bucket(hub, r->id, strlen(r->id), r->session)];
    while (*pp && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = r->hnext;
    if (r->prev)
        r->prev->next = r->next;
    else
        hub->sensors = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        hub->tail = r->prev;
    hub->n_sensors--;
    rec_free(r);
}

/* The registry is full: forgets disconnected entries that never wrote a
 * batch (oldest first, up to a sixteenth of the cap at once, so a flood of
 * new ids costs O(1) amortised), else the one with a written batch gone the
 * longest. -1 when every entry has a connection. */
static int make_room(ps_hub *hub)
{
    size_t budget = hub->o.limits.max_sensors / 16 ? hub->o.limits.max_sensors / 16 : 1;
    size_t freed = 0;
    ps_sensor_rec *victim = NULL;
    for (ps_sensor_rec *r = hub->tail, *prev; r && freed < budget; r = prev) {
        prev = r->prev;
        if (r->conn)
            continue;
        if (r->last_seq == 0) {
            rec_remove(hub, r);
            freed++;
        } else if (!victim || r->left_ms < victim->left_ms) {
            victim = r;
        }
    }
    if (freed)
        return 0;
    if (!victim)
        return -1;
    if (ps_hub_log_refusal(hub, PS_REASON_registry_full))
        ps_warn("receiver",
                "%zu sensor sessions known (limits.maxSensors): forgetting sensor %s session "
                "%016" PRIx64 " (written up to batch %" PRIu64
                "); if it returns, it resends what it still holds",
                hub->n_sensors, victim->id, victim->session, victim->last_seq);
    hub->counters.sensors_forgotten++;
    rec_remove(hub, victim);
    return 0;
}

/* capped: a new entry must fit in limits.max_sensors (not for what the
 * files recovered at start-up). */
static ps_sensor_rec *sensor_get(ps_hub *hub, const char *id, size_t id_len, uint64_t session,
                                 int capped)
{
    hub->registry_full = 0;
    id_len = strnlen(id, id_len); /* the key is what strndup keeps */
    ps_sensor_rec *r = rec_find(hub, id, id_len, session);
    if (r)
        return r;
    if (capped && hub->n_sensors >= hub->o.limits.max_sensors && make_room(hub) != 0) {
        hub->registry_full = 1;
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->id = strndup(id, id_len);
    if (!r->id) {
        free(r);
        return NULL;
    }
    r->session = session;
    r->left_ms = hub_now_ms();
    r->next = hub->sensors;
    if (r->next)
        r->next->prev = r;
    else
        hub->tail = r;
    hub->sensors = r;
    size_t b = rec_bucket(hub, id, id_len, session);
    r->hnext = hub->buckets[b];
    hub->buckets[b] = r;
    hub->n_sensors++;
    rec_grow(hub);
    return r;
}

ps_sensor_rec *ps_hub_sensor_get(ps_hub *hub, const char *id, size_t id_len, uint64_t session)
{
    return sensor_get(hub, id, id_len, session, 1);
}

int ps_hub_registry_full(const ps_hub *hub)
{
    return hub->registry_full;
}

size_t ps_hub_sensors_known(const ps_hub *hub)
{
    return hub->n_sensors;
}

int ps_hub_sensor_probe_due(ps_hub *hub, ps_sensor_rec *rec)
{
    (void)hub;
    uint64_t now = hub_now_ms();
    if (rec->probe_ms && now - rec->probe_ms < HUB_PROBE_EVERY_MS)
        return 0;
    rec->probe_ms = now;
    return 1;
}

/* Disconnected entries past the expiry: gone if they never wrote a batch,
 * else dormant (hidden; kept for the checkpoint and their return). */
static void expire_sensors(ps_hub *hub, uint64_t now_ms)
{
    for (ps_sensor_rec *r = hub->sensors, *next; r; r = next) {
        next = r->next;
        if (r->conn || r->dormant || now_ms - r->left_ms < hub->o.limits.sensor_expiry_ms)
            continue;
        if (r->last_seq == 0)
            rec_remove(hub, r);
        else
            r->dormant = 1;
    }
}

void ps_hub_sensor_connected(ps_hub *hub, ps_sensor_rec *rec, ps_session *s, const char *peer)
{
    (void)hub;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rec->conn = s;
    rec->left_ms = 0;
    rec->dormant = 0;
    rec->connected_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    snprintf(rec->addr, sizeof(rec->addr), "%s", peer);
}

void ps_hub_sensor_detach(ps_sensor_rec *rec, const ps_session *s)
{
    if (rec->conn == s) {
        rec->conn = NULL;
        rec->left_ms = hub_now_ms();
    }
}

void ps_hub_count_batch(ps_hub *hub, ps_sensor_rec *rec, uint64_t seq, uint32_t records,
                        uint64_t bytes)
{
    rec->last_seq = seq;
    rec->packets += records;
    rec->bytes += bytes;
    rec->batches++;
    hub->counters.packets += records;
    hub->counters.bytes += bytes;
}

void ps_hub_count_duplicate(ps_hub *hub, ps_sensor_rec *rec)
{
    rec->duplicates++;
    hub->counters.duplicates++;
}

void ps_hub_count_gap(ps_sensor_rec *rec)
{
    rec->gaps++;
}

void ps_hub_sensor_drops(ps_sensor_rec *rec, uint64_t drops)
{
    rec->drops = drops;
}

void ps_hub_sensor_iface(ps_hub *hub, ps_sensor_rec *rec, uint32_t index, const char *name,
                         const char *desc)
{
    const char *slash = strchr(name, '/');
    if (!slash || slash == name || !slash[1] || strchr(slash + 1, '/'))
        return; /* not NAMESPACE/POD: a plain interface */
    ps_hub_pod *p = NULL;
    for (uint32_t i = 0; i < rec->n_pods && !p; i++)
        if (strcmp(rec->pods[i].name, name) == 0)
            p = &rec->pods[i];
    if (!p) {
        if (rec->n_pods >= hub->o.limits.max_ifaces_per_session)
            return; /* listed no further; its packets are written all the same */
        if (rec->n_pods == rec->cap_pods) {
            uint32_t cap = rec->cap_pods ? rec->cap_pods * 2 : 8;
            ps_hub_pod *n = realloc(rec->pods, cap * sizeof(*n));
            if (!n)
                return;
            rec->pods = n;
            rec->cap_pods = cap;
        }
        p = &rec->pods[rec->n_pods];
        memset(p, 0, sizeof(*p));
        if (!(p->name = strdup(name)))
            return;
        rec->n_pods++;
    }
    char *d = strdup(desc);
    if (d) {
        free(p->desc);
        p->desc = d;
    }
    p->index = index;
}

void ps_hub_sensor_iface_stats(ps_sensor_rec *rec, uint32_t index, uint64_t packets, uint64_t drops)
{
    for (uint32_t i = 0; i < rec->n_pods; i++)
        if (rec->pods[i].index == index) {
            rec->pods[i].packets = packets;
            rec->pods[i].drops = drops;
            return;
        }
}

void ps_hub_recovered(ps_hub *hub, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    ps_sensor_rec *r = sensor_get(hub, id, id_len, session, 0);
    if (!r) {
        ps_error("receiver", "out of memory recovering sensor state");
        return;
    }
    if (seq > r->last_seq)
        r->last_seq = seq;
}

int ps_hub_checkpoint(ps_hub *hub, ps_buf *out)
{
    size_t n = 0;
    for (ps_sensor_rec *r = hub->sensors; r; r = r->next)
        n++;
    ps_recovery_entry *e = calloc(n ? n : 1, sizeof(*e));
    if (!e)
        return -1;
    n = 0;
    for (ps_sensor_rec *r = hub->sensors; r; r = r->next)
        if (r->last_seq > 0)
            e[n++] = (ps_recovery_entry){.id = r->id, .session = r->session, .seq = r->last_seq};
    int rc = n ? ps_recovery_checkpoint(out, e, n) : 0;
    free(e);
    return rc;
}

/* ---- counting ---- */

const char *ps_hub_reason_name(ps_hub_reason r)
{
    return r < PS_REASON_COUNT ? reason_names[r] : "other";
}

void ps_hub_count_reason(ps_hub *hub, ps_hub_reason r)
{
    if (r >= PS_REASON_COUNT)
        return;
    hub->rejected_by_reason[r]++;
    if (hub->o.metrics)
        ps_series_add(hub->series[R_REJECTED][r], 1);
}

/* The one line for the refusals whose own lines were skipped. */
static void log_skipped(ps_hub *hub, int r)
{
    hub_loglimit *l = &hub->loglimit[r];
    if (l->skipped)
        ps_warn("receiver",
                "%" PRIu64 " more connections refused or cut [reason=%s] (log lines skipped: at "
                "most %d per %d s)",
                l->skipped, reason_names[r], HUB_LOG_BURST, HUB_LOG_WINDOW_MS / 1000);
    l->skipped = 0;
}

int ps_hub_log_refusal(ps_hub *hub, ps_hub_reason r)
{
    if (r >= PS_REASON_COUNT)
        return 1;
    hub_loglimit *l = &hub->loglimit[r];
    uint64_t now = hub_now_ms();
    if (l->start_ms == 0 || now - l->start_ms >= HUB_LOG_WINDOW_MS) {
        log_skipped(hub, r);
        l->start_ms = now;
        l->logged = 0;
    }
    if (l->logged < HUB_LOG_BURST) {
        l->logged++;
        return 1;
    }
    l->skipped++;
    return 0;
}

/* The summary lines of windows that have ended (tick), or of all (stop). */
static void flush_log_limits(ps_hub *hub, int all)
{
    uint64_t now = hub_now_ms();
    for (int r = 0; r < PS_REASON_COUNT; r++)
        if (all || now - hub->loglimit[r].start_ms >= HUB_LOG_WINDOW_MS)
            log_skipped(hub, r);
}

void ps_hub_count_rejected(ps_hub *hub, ps_hub_reason r)
{
    hub->counters.rejected++;
    ps_hub_count_reason(hub, r);
}

void ps_hub_count_decode_error(ps_hub *hub, int err)
{
    hub->counters.decode_errors++;
    if (err == 0)
        return; /* the connection's own verdict: in the total only */
    if (err == UV_ENOMEM || err == UV_EIO) {
        hub->counters.decode_io++;
    } else if (err <= PS_CONN_E_WIRE(0)) {
        int w = PS_CONN_E_WIRE(0) - err; /* -PS_WIRE_E_* */
        hub->counters.decode_wire[w < PS_HUB_WIRE_REASONS ? w : 0]++;
    } else {
        hub->counters.decode_wire[0]++;
    }
}

void ps_hub_count_tls_failure(ps_hub *hub, const char *label)
{
    if (!label)
        return;
    for (size_t i = 0; i < HUB_TLS_REASONS; i++) {
        if (strcmp(label, tls_reason_names[i]) == 0) {
            hub->tls_failures[i]++;
            if (hub->o.metrics)
                ps_series_add(hub->series[R_TLS][i], 1);
            return;
        }
    }
    /* A label the table does not know yet still shows in /metrics. */
    ps_series *se = hub->o.metrics ? ps_metric_series(hub->family[R_TLS], label, NULL, NULL) : NULL;
    if (se)
        ps_series_add(se, 1);
}

void ps_hub_count_auth_failure(ps_hub *hub)
{
    hub->counters.auth_failures++;
    if (hub->o.metrics)
        ps_series_add(hub->series[R_AUTH][0], 1);
}

void ps_hub_get_counters(const ps_hub *hub, ps_hub_counters *out)
{
    *out = hub->counters;
}

unsigned ps_hub_session_count(const ps_hub *hub)
{
    return hub->n_sessions;
}

int ps_hub_write_failing(const ps_hub *hub)
{
    return hub->write_failing;
}

int ps_hub_foreach_sensor(const ps_hub *hub, int (*fn)(void *ud, const ps_hub_sensor *s), void *ud)
{
    for (const ps_sensor_rec *r = hub->sensors; r; r = r->next) {
        if (r->dormant)
            continue;
        ps_hub_sensor v = {.id = r->id,
                           .session = r->session,
                           .addr = r->addr,
                           .connected = r->conn != NULL,
                           .connected_ns = r->connected_ns,
                           .last_seq = r->last_seq,
                           .packets = r->packets,
                           .bytes = r->bytes,
                           .batches = r->batches,
                           .duplicates = r->duplicates,
                           .gaps = r->gaps,
                           .drops = r->drops,
                           .pps = r->pps,
                           .bps = r->bps,
                           .pods = r->pods,
                           .n_pods = r->n_pods};
        int rc = fn(ud, &v);
        if (rc)
            return rc;
    }
    return 0;
}

void ps_hub_counters_kv(const ps_hub *hub, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < PS_REASON_COUNT && n < outlen; i++)
        if (hub->rejected_by_reason[i])
            n += (size_t)snprintf(out + n, outlen - n, " rejected_%s=%" PRIu64, reason_names[i],
                                  hub->rejected_by_reason[i]);
    for (size_t i = 0; i < HUB_TLS_REASONS && n < outlen; i++)
        if (hub->tls_failures[i])
            n += (size_t)snprintf(out + n, outlen - n, " tls_failures_%s=%" PRIu64,
                                  tls_reason_names[i], hub->tls_failures[i]);
    if (n < outlen)
        snprintf(out + n, outlen - n, " auth_failures=%" PRIu64, hub->counters.auth_failures);
}

/* ---- sessions ---- */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* "1.2.3.4:5" -> "1.2.3.4", "[::1]:5" -> "[::1]" */
static size_t host_len(const char *peer)
{
    const char *colon = strrchr(peer, ':');
    return colon ? (size_t)(colon - peer) : strlen(peer);
}

static void refuse(ps_hub *hub, uv_tcp_t *tcp, const char *peer, ps_hub_reason r, const char *why)
{
    ps_hub_count_reason(hub, r);
    if (ps_hub_log_refusal(hub, r))
        ps_warn("receiver", "closing connection from %s (sensor ?): %s [reason=%s]", peer, why,
                reason_names[r]);
    uv_close((uv_handle_t *)tcp, free_handle);
}

/* The limits of hub.h; 0 to go on, -1 when tcp was refused. */
static int check_limits(ps_hub *hub, uv_tcp_t *tcp, const char *peer)
{
    char why[200];
    const ps_hub_limits *lim = &hub->o.limits;
    if (lim->max_connections && hub->n_sessions >= lim->max_connections) {
        snprintf(why, sizeof(why), "%u connections open (limits.maxConnections)", hub->n_sessions);
        refuse(hub, tcp, peer, PS_REASON_max_connections, why);
        return -1;
    }
    if (lim->max_per_source) {
        size_t hl = host_len(peer);
        uint32_t same = 0;
        for (unsigned i = 0; i < hub->n_sessions; i++) {
            const char *op = ps_session_peer(hub->sessions[i]);
            if (host_len(op) == hl && memcmp(op, peer, hl) == 0)
                same++;
        }
        if (same >= lim->max_per_source) {
            snprintf(why, sizeof(why),
                     "%u connections open from %.*s "
                     "(limits.maxConnectionsPerSource)",
                     same, (int)hl, peer);
            refuse(hub, tcp, peer, PS_REASON_max_connections_per_source, why);
            return -1;
        }
    }
    return 0;
}

/* The pre-handshake budget: unauthenticated connections, in all and from
 * one address, so that idle sockets can neither fill max_connections nor
 * lock out other addresses. 0 to go on, -1 when tcp was refused. */
static int check_pending(ps_hub *hub, uv_tcp_t *tcp, const char *peer)
{
    char why[200];
    const ps_hub_limits *lim = &hub->o.limits;
    size_t hl = host_len(peer);
    uint32_t pending = 0, same = 0;
    for (unsigned i = 0; i < hub->n_sessions; i++) {
        if (!ps_session_pending(hub->sessions[i]))
            continue;
        pending++;
        const char *op = ps_session_peer(hub->sessions[i]);
        if (host_len(op) == hl && memcmp(op, peer, hl) == 0)
            same++;
    }
    if (pending >= lim->max_pending) {
        snprintf(why, sizeof(why), "%u connections in their handshake (limits.maxPending)",
                 pending);
        refuse(hub, tcp, peer, PS_REASON_max_pending, why);
        return -1;
    }
    if (same >= lim->max_pending_per_source) {
        snprintf(why, sizeof(why),
                 "%u connections from %.*s in their handshake (limits.maxPendingPerSource)", same,
                 (int)hl, peer);
        refuse(hub, tcp, peer, PS_REASON_max_pending_per_source, why);
        return -1;
    }
    return 0;
}

void ps_hub_accept(ps_hub *hub, uv_tcp_t *tcp, const char *peer)
{
    if (check_limits(hub, tcp, peer) != 0 || check_pending(hub, tcp, peer) != 0)
        return;
    if (hub->n_sessions == hub->cap_sessions) {
        unsigned nc = hub->cap_sessions ? hub->cap_sessions * 2 : 16;
        ps_session **n = realloc(hub->sessions, nc * sizeof(*n));
        if (!n) {
            ps_error("receiver", "out of memory accepting a connection");
            uv_close((uv_handle_t *)tcp, free_handle);
            return;
        }
        hub->sessions = n;
        hub->cap_sessions = nc;
    }
    SSL *ssl = NULL;
    if (hub->o.tls) {
        char err[512];
        int rl = ps_tls_maybe_reload(hub->o.tls, err, sizeof(err));
        if (rl > 0)
            ps_info("receiver", "TLS certificate files changed: new connections use the new "
                                "material");
        else if (rl < 0)
            ps_warn("receiver",
                    "TLS certificate files changed but do not load (%s); still "
                    "using the previous ones",
                    err);
        ssl = ps_tls_new_ssl(hub->o.tls, NULL);
        if (!ssl) {
            ps_error("receiver", "out of memory accepting a TLS connection");
            uv_close((uv_handle_t *)tcp, free_handle);
            return;
        }
    }
    ps_session *s = ps_session_new(hub, tcp, ssl, peer);
    if (!s)
        return;
    hub->sessions[hub->n_sessions++] = s;
    hub->counters.connections++;
    ps_session_start(s, hub->write_failing);
}

void ps_hub_session_closed(ps_hub *hub, ps_session *s)
{
    for (unsigned i = 0; i < hub->n_sessions; i++) {
        if (hub->sessions[i] == s) {
            memmove(&hub->sessions[i], &hub->sessions[i + 1],
                    (hub->n_sessions - i - 1) * sizeof(*hub->sessions));
            hub->n_sessions--;
            break;
        }
    }
    if (hub->stopping && hub->n_sessions == 0 && hub->o.on_idle)
        hub->o.on_idle(hub->o.ud);
}

/* One flush covers every session. While writes fail (a full disk) every
 * session stops reading, so sensors keep their batches in their spools
 * instead of the receiver piling them up in memory; the tick retries and
 * reading resumes once a flush succeeds. */
void ps_hub_flush_and_ack(ps_hub *hub)
{
    int need = hub->write_failing;
    for (unsigned i = 0; i < hub->n_sessions && !need; i++)
        if (ps_session_unacked(hub->sessions[i]))
            need = 1;
    if (!need)
        return;
    if (ps_writer_flush(hub->o.writer) != 0 || ps_jobs_flush(hub->o.jobs) != 0) {
        if (!hub->write_failing) {
            ps_error("receiver",
                     "writing captures failed: %s; holding acknowledgements and "
                     "pausing sensors until it works again",
                     strerror(errno));
            for (unsigned i = 0; i < hub->n_sessions; i++)
                ps_session_pause(hub->sessions[i], 1);
        }
        hub->write_failing = 1;
        return;
    }
    if (hub->write_failing) {
        ps_info("receiver", "writing captures works again: resuming sensors");
        hub->write_failing = 0;
        for (unsigned i = 0; i < hub->n_sessions; i++)
            ps_session_pause(hub->sessions[i], 0);
    }
    for (unsigned i = 0; i < hub->n_sessions; i++) {
        double latency;
        if (ps_session_ack(hub->sessions[i], &latency) == 1) {
            hub->counters.acks++;
            if (hub->o.metrics)
                ps_series_observe(hub->series[R_ACK_LATENCY][0], latency);
        }
    }
}

void ps_hub_tick(ps_hub *hub, uint64_t now_ns)
{
    uint64_t now = uv_now(hub->loop);
    /* Closing is deferred (the session stays listed until libuv closed
     * it), so the array does not change under this loop. */
    for (unsigned i = 0; i < hub->n_sessions; i++)
        ps_session_check_deadlines(hub->sessions[i], now);
    expire_sensors(hub, hub_now_ms());
    flush_log_limits(hub, 0);
    if (ps_writer_tick(hub->o.writer, now_ns) != 0 && !hub->write_failing)
        ps_error("receiver", "rotating capture files failed: %s", strerror(errno));
    ps_jobs_tick(hub->o.jobs, now_ns);
    if (hub->write_failing)
        ps_hub_flush_and_ack(hub);
    /* A large batch's inflate buffer goes back once large batches stop. */
    if (hub->inflate.cap > HUB_INFLATE_KEEP && now - hub->inflate_used_ms >= HUB_INFLATE_IDLE_MS)
        ps_buf_free(&hub->inflate);
}

void ps_hub_stop(ps_hub *hub)
{
    hub->stopping = 1;
    flush_log_limits(hub, 1);
    ps_hub_flush_and_ack(hub);
    for (unsigned i = 0; i < hub->n_sessions; i++)
        ps_session_close(hub->sessions[i], 1, "receiver shutting down");
    if (hub->n_sessions == 0 && hub->o.on_idle)
        hub->o.on_idle(hub->o.ud);
}

void ps_hub_abort(ps_hub *hub)
{
    for (unsigned i = 0; i < hub->n_sessions; i++)
        ps_session_close(hub->sessions[i], 0, "shutdown deadline passed");
}
