/*
 * metrics: a small Prometheus registry. Families and series are linked lists
 * appended under one mutex; values are atomics so updates never wait.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ps_metric {
    struct ps_metric *next;
    ps_metrics *owner;
    ps_metric_type type;
    char *name, *help;
    char *label_names[PS_METRICS_MAX_LABELS];
    int n_labels;
    ps_series *series;
    double bounds[PS_METRICS_MAX_BUCKETS]; /* histograms */
    int n_bounds;
};

struct ps_metrics {
    pthread_mutex_t mu;
    ps_metric *families, *last;
};

ps_metrics *ps_metrics_new(void)
{
    ps_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

static void free_series(ps_series *s)
{
    for (int i = 0; i < PS_METRICS_MAX_LABELS; i++)
        free(s->labels[i]);
    free((void *)(uintptr_t)s->buckets);
    free(s);
}

static void free_family(ps_metric *f)
{
    while (f->series) {
        ps_series *n = f->series->next;
        free_series(f->series);
        f->series = n;
    }
    for (int i = 0; i < f->n_labels; i++)
        free(f->label_names[i]);
    free(f->name);
    free(f->help);
    free(f);
}

void ps_metrics_free(ps_metrics *m)
{
    if (!m)
        return;
    while (m->families) {
        ps_metric *n = m->families->next;
        free_family(m->families);
        m->families = n;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int valid_name(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == ':'))
            return 0;
    return 1;
}

ps_metric *ps_metrics_family(ps_metrics *m, ps_metric_type type, const char *name, const char *help,
                             const char *label_names)
{
    if (!valid_name(name))
        return NULL;
    pthread_mutex_lock(&m->mu);
    for (ps_metric *f = m->families; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            pthread_mutex_unlock(&m->mu);
            return f;
        }
    }
    ps_metric *f = calloc(1, sizeof(*f));
    if (!f)
        goto oom;
    f->owner = m;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help)
        goto oom;
    if (label_names && *label_names) {
        const char *p = label_names;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (f->n_labels == PS_METRICS_MAX_LABELS)
                goto oom;
            f->label_names[f->n_labels] = strndup(p, len);
            if (!f->label_names[f->n_labels] || !valid_name(f->label_names[f->n_labels])) {
                f->n_labels++;
                goto oom;
            }
            f->n_labels++;
            p += len;
            if (*p == ',')
                p++;
        }
    }
    if (m->last)
        m->last->next = f;
    else
        m->families = f;
    m->last = f;
    pthread_mutex_unlock(&m->mu);
    return f;
oom:
    pthread_mutex_unlock(&m->mu);
    if (f)
        free_family(f);
    return NULL;
}

ps_series *ps_metric_series(ps_metric *f, const char *v1, const char *v2, const char *v3)
{
    const char *vals[PS_METRICS_MAX_LABELS] = {v1, v2, v3};
    ps_metrics *m = f->owner;
    pthread_mutex_lock(&m->mu);
    ps_series *last = NULL;
    for (ps_series *s = f->series; s; s = s->next) {
        last = s;
        if (s->removed)
            continue;
        int same = 1;
        for (int i = 0; i < f->n_labels && same; i++)
            same = strcmp(s->labels[i], vals[i] ? vals[i] : "") == 0;
        if (same) {
            pthread_mutex_unlock(&m->mu);
            return s;
        }
    }
    ps_series *s = calloc(1, sizeof(*s));
    if (!s)
        goto oom;
    for (int i = 0; i < f->n_labels; i++) {
        s->labels[i] = strdup(vals[i] ? vals[i] : "");
        if (!s->labels[i])
            goto oom;
    }
    if (f->type == PS_METRIC_GAUGE)
        ps_series_set(s, 0.0);
    if (f->type == PS_METRIC_HISTOGRAM) {
        s->buckets = calloc((size_t)f->n_bounds + 1, sizeof(*s->buckets));
        if (!s->buckets)
            goto oom;
        s->bounds = f->bounds;
        s->n_bounds = f->n_bounds;
        /* calloc'd: count 0, sum +0.0 (all bits zero) */
    }
    /* Appended at the tail so a concurrent render walking the list sees a
     * fully built node or none. */
    if (last)
        last->next = s;
    else
        f->series = s;
    pthread_mutex_unlock(&m->mu);
    return s;
oom:
    pthread_mutex_unlock(&m->mu);
    if (s)
        free_series(s);
    return NULL;
}

void ps_series_remove(ps_metric *f, ps_series *s)
{
    pthread_mutex_lock(&f->owner->mu);
    s->removed = 1;
    pthread_mutex_unlock(&f->owner->mu);
}

ps_metric *ps_metrics_histogram(ps_metrics *m, const char *name, const char *help,
                                const char *label_names, const double *bounds, int n_bounds)
{
    if (n_bounds < 1 || n_bounds > PS_METRICS_MAX_BUCKETS)
        return NULL;
    for (int i = 0; i < n_bounds; i++)
        if (!(bounds[i] == bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return NULL;
    ps_metric *f = ps_metrics_family(m, PS_METRIC_HISTOGRAM, name, help, label_names);
    if (!f || f->type != PS_METRIC_HISTOGRAM)
        return NULL;
    pthread_mutex_lock(&m->mu);
    if (f->n_bounds == 0) { /* new family: no series can exist yet */
        memcpy(f->bounds, bounds, (size_t)n_bounds * sizeof(*bounds));
        f->n_bounds = n_bounds;
    }
    pthread_mutex_unlock(&m->mu);
    return f;
}

void ps_series_observe(ps_series *s, double v)
{
    if (!s || !s->buckets)
        return;
    int i = 0;
    while (i < s->n_bounds && v > s->bounds[i])
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&s->sum, memory_order_relaxed), nbits;
    do {
        double d;
        memcpy(&d, &old, sizeof(d));
        d += v;
        memcpy(&nbits, &d, sizeof(nbits));
    } while (!atomic_compare_exchange_weak_explicit(&s->sum, &old, nbits, memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_fetch_add_explicit(&s->value, 1, memory_order_relaxed);
}

void ps_series_set(ps_series *s, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    atomic_store_explicit(&s->value, bits, memory_order_relaxed);
}

uint64_t ps_series_get_u64(const ps_series *s)
{
    return atomic_load_explicit(&s->value, memory_order_relaxed);
}

double ps_series_get(const ps_series *s)
{
    uint64_t bits = atomic_load_explicit(&s->value, memory_order_relaxed);
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static int append_str(ps_buf *out, const char *s)
{
    return ps_buf_append(out, s, strlen(s));
}

/* Label values escape backslash, double quote and newline; HELP text
 * escapes backslash and newline (exposition format 0.0.4). */
static int append_escaped(ps_buf *out, const char *s, int quotes)
{
    for (; *s; s++) {
        const char *e = NULL;
        if (*s == '\\')
            e = "\\\\";
        else if (*s == '\n')
            e = "\\n";
        else if (*s == '"' && quotes)
            e = "\\\"";
        if (e ? append_str(out, e) != 0 : ps_buf_append(out, s, 1) != 0)
            return -1;
    }
    return 0;
}

/* NAME[SUFFIX]{labels[,le="LE"]} */
static int render_name(ps_buf *out, const ps_metric *f, const ps_series *s, const char *suffix,
                       const char *le)
{
    if (append_str(out, f->name) != 0 || append_str(out, suffix) != 0)
        return -1;
    if (f->n_labels > 0 || le) {
        for (int i = 0; i < f->n_labels; i++) {
            if (append_str(out, i ? "," : "{") != 0 || append_str(out, f->label_names[i]) ||
                append_str(out, "=\"") || append_escaped(out, s->labels[i], 1) ||
                append_str(out, "\""))
                return -1;
        }
        if (le && (append_str(out, f->n_labels ? ",le=\"" : "{le=\"") || append_str(out, le) ||
                   append_str(out, "\"")))
            return -1;
        if (append_str(out, "}") != 0)
            return -1;
    }
    return 0;
}

static int render_histogram(ps_buf *out, const ps_metric *f, const ps_series *s)
{
    char num[64], le[40];
    uint64_t cum = 0;
    /* Buckets are read one by one while observations go on: the count is
     * taken as the cumulative total so the +Inf bucket always equals it. */
    for (int i = 0; i <= s->n_bounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        if (i < s->n_bounds)
            snprintf(le, sizeof(le), "%.15g",
                     s->bounds[i]); /* 0.0005, not 0.00050000000000000001 */
        else
            snprintf(le, sizeof(le), "+Inf");
        snprintf(num, sizeof(num), " %llu\n", (unsigned long long)cum);
        if (render_name(out, f, s, "_bucket", le) != 0 || append_str(out, num) != 0)
            return -1;
    }
    uint64_t bits = atomic_load_explicit(&s->sum, memory_order_relaxed);
    double sum;
    memcpy(&sum, &bits, sizeof(sum));
    snprintf(num, sizeof(num), " %.17g\n", sum);
    if (render_name(out, f, s, "_sum", NULL) != 0 || append_str(out, num) != 0)
        return -1;
    snprintf(num, sizeof(num), " %llu\n", (unsigned long long)cum);
    if (render_name(out, f, s, "_count", NULL) != 0 || append_str(out, num) != 0)
        return -1;
    return 0;
}

static int render_series(ps_buf *out, const ps_metric *f, const ps_series *s)
{
    char num[64];
    if (f->type == PS_METRIC_HISTOGRAM)
        return render_histogram(out, f, s);
    if (render_name(out, f, s, "", NULL) != 0)
        return -1;
    if (f->type == PS_METRIC_COUNTER)
        snprintf(num, sizeof(num), " %llu\n", (unsigned long long)ps_series_get_u64(s));
    else
        snprintf(num, sizeof(num), " %.17g\n", ps_series_get(s));
    return append_str(out, num);
}

int ps_metrics_render(ps_metrics *m, ps_buf *out)
{
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    for (ps_metric *f = m->families; f && rc == 0; f = f->next) {
        rc |= append_str(out, "# HELP ") | append_str(out, f->name) | append_str(out, " ") |
              append_escaped(out, f->help, 0) | append_str(out, "\n# TYPE ") |
              append_str(out, f->name) |
              append_str(out, f->type == PS_METRIC_COUNTER ? " counter\n"
                              : f->type == PS_METRIC_GAUGE ? " gauge\n"
                                                           : " histogram\n");
        for (ps_series *s = f->series; s && rc == 0; s = s->next)
            if (!s->removed)
                rc = render_series(out, f, s);
    }
    pthread_mutex_unlock(&m->mu);
    return rc ? -1 : 0;
}
