/*
 * observe: mirrors the sensor's loop-owned counters into the metrics
 * registry (see observe.h for why it is a periodic copy).
 */
#include "observe.h"

#include <stdlib.h>

enum {
    O_PACKETS,
    O_BYTES,
    O_BATCHES,
    O_RAW,
    O_WIRE,
    O_RATIO,
    O_SPOOL_BYTES,
    O_SPOOL_BATCHES,
    O_CONNECTED,
    O_CONNECTS,
    O_RECONNECTS,
    O_ACKED_PACKETS,
    O_ACKED_BATCHES,
    O_RESENT,
    O_DROP_OOM,
    O_REC_BYTES,
    O_REC_PACKETS,
    O_REC_EVICT_AGE,
    O_REC_EVICT_ROOM,
    O_N
};

struct ps_sensor_obs {
    ps_series *s[O_N];
};

typedef struct def {
    ps_metric_type type;
    const char *name, *help, *labels, *label_value;
} def;

static const def defs[O_N] = {
    [O_PACKETS] = {PS_METRIC_COUNTER, "packetstreamer_sensor_packets_total",
                   "Packets read (captured, or from --read-file) and put into batches.", NULL,
                   NULL},
    [O_BYTES] = {PS_METRIC_COUNTER, "packetstreamer_sensor_packet_bytes_total",
                 "Captured bytes of the packets put into batches.", NULL, NULL},
    [O_BATCHES] = {PS_METRIC_COUNTER, "packetstreamer_sensor_batches_total",
                   "Batches sealed for sending.", NULL, NULL},
    [O_RAW] = {PS_METRIC_COUNTER, "packetstreamer_sensor_batch_raw_bytes_total",
               "Bytes of sealed batches before compression.", NULL, NULL},
    [O_WIRE] = {PS_METRIC_COUNTER, "packetstreamer_sensor_batch_wire_bytes_total",
                "Bytes of sealed batches after compression (what goes on the wire).", NULL, NULL},
    [O_RATIO] = {PS_METRIC_GAUGE, "packetstreamer_sensor_compression_ratio",
                 "Raw bytes divided by wire bytes since start (1 without compression).", NULL,
                 NULL},
    [O_SPOOL_BYTES] = {PS_METRIC_GAUGE, "packetstreamer_sensor_spool_bytes",
                       "Bytes of batches held until the receiver acknowledges them.", NULL, NULL},
    [O_SPOOL_BATCHES] = {PS_METRIC_GAUGE, "packetstreamer_sensor_spool_batches",
                         "Batches held until the receiver acknowledges them.", NULL, NULL},
    [O_CONNECTED] = {PS_METRIC_GAUGE, "packetstreamer_sensor_receiver_connected",
                     "1 while a session with the receiver is established, else 0.", NULL, NULL},
    [O_CONNECTS] = {PS_METRIC_COUNTER, "packetstreamer_sensor_connects_total",
                    "Sessions established with the receiver.", NULL, NULL},
    [O_RECONNECTS] = {PS_METRIC_COUNTER, "packetstreamer_sensor_reconnects_total",
                      "Sessions established after the first one.", NULL, NULL},
    [O_ACKED_PACKETS] = {PS_METRIC_COUNTER, "packetstreamer_sensor_acked_packets_total",
                         "Packets the receiver acknowledged as written.", NULL, NULL},
    [O_ACKED_BATCHES] = {PS_METRIC_COUNTER, "packetstreamer_sensor_acked_batches_total",
                         "Batches the receiver acknowledged as written.", NULL, NULL},
    [O_RESENT] = {PS_METRIC_COUNTER, "packetstreamer_sensor_resent_batches_total",
                  "Batches sent again after a reconnect.", NULL, NULL},
    [O_DROP_OOM] = {PS_METRIC_COUNTER, "packetstreamer_sensor_dropped_packets_total",
                    "Packets the sensor dropped, by reason.", "reason", "out_of_memory"},
    [O_REC_BYTES] = {PS_METRIC_GAUGE, "packetstreamer_sensor_recorder_bytes",
                     "Bytes the flight recorder holds (capture.mode ondemand).", NULL, NULL},
    [O_REC_PACKETS] = {PS_METRIC_GAUGE, "packetstreamer_sensor_recorder_packets",
                       "Packets the flight recorder holds (capture.mode ondemand).", NULL, NULL},
    [O_REC_EVICT_AGE] = {PS_METRIC_COUNTER, "packetstreamer_sensor_recorder_evicted_total",
                         "Packets the flight recorder let go, by reason: age (older than "
                         "capture.recorder.seconds) or room (capture.recorder.sizeMB full).",
                         "reason", "age"},
    [O_REC_EVICT_ROOM] = {PS_METRIC_COUNTER, "packetstreamer_sensor_recorder_evicted_total",
                          "Packets the flight recorder let go, by reason: age (older than "
                          "capture.recorder.seconds) or room (capture.recorder.sizeMB full).",
                          "reason", "room"},
};

ps_sensor_obs *ps_sensor_obs_new(ps_metrics *m)
{
    ps_sensor_obs *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    for (int i = 0; i < O_N; i++) {
        ps_metric *f =
            ps_metrics_family(m, defs[i].type, defs[i].name, defs[i].help, defs[i].labels);
        o->s[i] = f ? ps_metric_series(f, defs[i].label_value, NULL, NULL) : NULL;
        if (!o->s[i]) {
            free(o);
            return NULL;
        }
    }
    return o;
}

void ps_sensor_obs_free(ps_sensor_obs *o)
{
    free(o); /* the series belong to the registry */
}

void ps_sensor_obs_publish(ps_sensor_obs *o, const ps_sensor_sample *s)
{
    if (!o)
        return;
    ps_series_set_u64(o->s[O_PACKETS], s->batcher.packets);
    ps_series_set_u64(o->s[O_REC_BYTES], s->recorder.bytes);
    ps_series_set_u64(o->s[O_REC_PACKETS], s->recorder.packets);
    ps_series_set_u64(o->s[O_REC_EVICT_AGE], s->recorder.evicted_age);
    ps_series_set_u64(o->s[O_REC_EVICT_ROOM], s->recorder.evicted_room);
    ps_series_set_u64(o->s[O_BYTES], s->batcher.bytes);
    ps_series_set_u64(o->s[O_BATCHES], s->batcher.batches);
    ps_series_set_u64(o->s[O_RAW], s->batcher.raw_bytes);
    ps_series_set_u64(o->s[O_WIRE], s->batcher.wire_bytes);
    ps_series_set(o->s[O_RATIO], s->batcher.wire_bytes
                                     ? (double)s->batcher.raw_bytes / (double)s->batcher.wire_bytes
                                     : 1.0);
    ps_series_set(o->s[O_SPOOL_BYTES], (double)s->uplink.spool_bytes);
    ps_series_set(o->s[O_SPOOL_BATCHES], (double)s->uplink.spool_batches);
    ps_series_set(o->s[O_CONNECTED], s->connected ? 1.0 : 0.0);
    ps_series_set_u64(o->s[O_CONNECTS], s->uplink.connects);
    ps_series_set_u64(o->s[O_RECONNECTS], s->uplink.reconnects);
    ps_series_set_u64(o->s[O_ACKED_PACKETS], s->uplink.acked_packets);
    ps_series_set_u64(o->s[O_ACKED_BATCHES], s->uplink.acked_batches);
    ps_series_set_u64(o->s[O_RESENT], s->uplink.resent_batches);
    ps_series_set_u64(o->s[O_DROP_OOM], s->dropped_oom);
}
