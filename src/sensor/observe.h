/*
 * observe: the sensor's Prometheus metrics (prefix ps_sensor_obs_).
 *
 * The packet path keeps its plain counters (batcher and uplink totals, owned
 * by the loop thread). A loop timer calls ps_sensor_obs_publish() every
 * 250 ms, which copies them into registry series with relaxed atomic
 * stores: the HTTP thread reads the registry, never the loop's structures,
 * and the packet path never takes a lock. Counters are therefore at most one
 * publish period behind.
 */
#ifndef PS_OBSERVE_H
#define PS_OBSERVE_H

#include <stdint.h>

#include "batcher.h"
#include "core/metrics.h"
#include "recorder.h"
#include "uplink.h"

typedef struct ps_sensor_obs ps_sensor_obs;

/* Registers the sensor's families in m. NULL on OOM. */
ps_sensor_obs *ps_sensor_obs_new(ps_metrics *m);
void ps_sensor_obs_free(ps_sensor_obs *o);

typedef struct ps_sensor_sample {
    ps_batcher_totals batcher;
    ps_uplink_totals uplink;
    int connected;
    uint64_t dropped_oom;        /* packets the batcher could not take (out of memory) */
    ps_recorder_totals recorder; /* zero outside ondemand mode */
} ps_sensor_sample;

/* Loop thread only. NULL o: no-op. */
void ps_sensor_obs_publish(ps_sensor_obs *o, const ps_sensor_sample *s);

#endif
