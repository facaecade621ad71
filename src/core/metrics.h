/*
 * metrics: counters and gauges for the Prometheus text exposition format.
 *
 * A registry holds metric families (name, help, type, label names); a family
 * holds series (one per label-value tuple). Code on the packet path looks a
 * series up ONCE (ps_metric_series, which takes the registry's mutex) and
 * then updates it with relaxed atomics (ps_series_add / ps_series_set): no
 * lock, no allocation per packet. Rendering (from the HTTP thread) takes the
 * mutex only to walk the lists and reads values atomically, so it never
 * blocks an update.
 *
 * Names follow Prometheus conventions: packetstreamer_ prefix, base units in
 * the name (_bytes, _seconds), _total for counters. Series are never freed
 * before the registry (interfaces that come and go keep their last values,
 * which is what rate() wants); ps_series_remove() exists for label sets that
 * must disappear (a sensor that left long ago).
 */
#ifndef PS_METRICS_H
#define PS_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "buf.h"

#define PS_METRICS_MAX_LABELS 3

#define PS_METRICS_MAX_BUCKETS 16

typedef enum ps_metric_type {
    PS_METRIC_COUNTER,
    PS_METRIC_GAUGE,
    PS_METRIC_HISTOGRAM
} ps_metric_type;

typedef struct ps_series {
    _Atomic uint64_t value; /* counters: the count; gauges: a double's bits;
                             * histograms: the observation count */
    struct ps_series *next;
    int removed;
    char *labels[PS_METRICS_MAX_LABELS];
    /* Histograms only: per-bucket (not cumulative) counts, the last one for
     * values above every bound, and the sum as a double's bits. */
    _Atomic uint64_t *buckets;
    _Atomic uint64_t sum;
    const double *bounds; /* the family's, ascending */
    int n_bounds;
} ps_series;

typedef struct ps_metric ps_metric;
typedef struct ps_metrics ps_metrics;

ps_metrics *ps_metrics_new(void);
void ps_metrics_free(ps_metrics *m);

/* Registers a family (or returns the existing one of that name). label_names:
 * NULL or up to PS_METRICS_MAX_LABELS names, comma-separated ("sensor,iface").
 * NULL on OOM or a bad name. */
ps_metric *ps_metrics_family(ps_metrics *m, ps_metric_type type, const char *name, const char *help,
                             const char *label_names);

/* A histogram family with fixed upper bounds (ascending, finite, at most
 * PS_METRICS_MAX_BUCKETS; copied). Rendered as NAME_bucket{le=...}
 * (cumulative, +Inf last), NAME_sum and NAME_count. NULL on OOM or bad
 * arguments. */
ps_metric *ps_metrics_histogram(ps_metrics *m, const char *name, const char *help,
                                const char *label_names, const double *bounds, int n_bounds);

/* Records one observation in a histogram series: a few relaxed atomic
 * operations (the sum is a compare-and-swap loop), no lock. */
void ps_series_observe(ps_series *s, double v);

/* The series for these label values (as many as the family has labels; the
 * rest ignored), created at zero on first use. NULL on OOM. Takes a lock:
 * call at setup time and keep the pointer. */
ps_series *ps_metric_series(ps_metric *f, const char *v1, const char *v2, const char *v3);
void ps_series_remove(ps_metric *f, ps_series *s);

static inline void ps_series_add(ps_series *s, uint64_t n)
{
    atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}
static inline void ps_series_set_u64(ps_series *s, uint64_t v)
{
    atomic_store_explicit(&s->value, v, memory_order_relaxed);
}
void ps_series_set(ps_series *s, double v); /* gauges */
uint64_t ps_series_get_u64(const ps_series *s);
double ps_series_get(const ps_series *s); /* gauges */

/* Appends the whole registry in text format 0.0.4 (# HELP, # TYPE, series
 * with escaped label values). Returns 0 or -1 on OOM. */
int ps_metrics_render(ps_metrics *m, ps_buf *out);

#endif
