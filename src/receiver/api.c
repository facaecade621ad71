/*
 * api: receiver readiness, status snapshots and HTTP routes (see api.h).
 *
 * Why snapshots instead of locks: the hub and the writer are single-threaded
 * structures of the packet loop. Rather than lock them, the loop serialises
 * what the HTTP side may show (sensors as JSON, the writer's per-file
 * knowledge as tab-separated lines) every 250 ms and swaps the result in
 * under a mutex held for a pointer swap. The capture list itself comes from
 * the directory (readdir at request time), so files from earlier runs and
 * other file sets are listed too; the writer's lines add packet times and
 * sensors for the files this process wrote (earlier runs' files show null).
 */
#include "api.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/http.h"
#include "core/log.h"
#include "filename.h"
#include "livefeed.h"
#include "query.h"
#include "s3cache.h"
#include "s3extract.h"
#include "tier.h"
#include "writer.h"

#define API_PUBLISH_MS 250
#define API_FILES_EVERY 4 /* the file list changes slowly: publish it every second */
#define API_MAX_LISTED_FILES 100000
#define API_S3_LIST_TTL_MS 10000 /* the status page asks every 2 s */
/* Throughput chart: a sample every API_RATE_EVERY publishes (5 s), the last
 * API_RATE_SAMPLES of them (10 minutes), for at most API_RATE_SENSORS. */
#define API_RATE_EVERY 20
#define API_RATE_SAMPLES 120
#define API_RATE_SENSORS 32

typedef struct rate_series {
    char id[256]; /* "" free */
    double bps[API_RATE_SAMPLES];
    int seen; /* in the current sample */
} rate_series;
#define API_BUSY_LOG_NS 10000000000ll /* one "busy" line per 10 s */
#define API_EXTRACT_BLOCK (256u << 10)

struct ps_api {
    uv_loop_t *loop;
    ps_hub *hub;
    ps_writer *writer;
    ps_livefeed *live;
    const ps_config *cfg;
    ps_http *http;
    uv_timer_t timer;
    int timer_on;
    unsigned ticks;
    int listening;
    char *dir, *prefix; /* copies of the writer's; NULL with stdout output */
    ps_snapshot sensors_json, files_meta;
    ps_tier *tier;          /* tier.peers: the other receivers' sensors, or NULL */
    char self_name[256];    /* with a tier: this receiver's name in its entries */
    char instance[40];      /* random, per process: how the tier recognises itself */
    atomic_int extractions; /* /api/packets streams in progress (HTTP threads) */
    int max_extractions;    /* http.maxExtractions */
    _Atomic int64_t busy_logged_ns;
    atomic_int stopping; /* set before the HTTP server stops: streams end */
    ps_format format;
    char app[64];
    /* /api/packets counters (NULL without metrics: ps_series_add skips) */
    ps_series *x_ok, *x_bad, *x_busy, *x_err, *x_packets, *x_read, *x_skipped, *x_scanned;
    /* output.s3: the bucket's capture objects, listed at most every
     * API_S3_LIST_TTL_MS (HTTP threads, under s3_mu) */
    int s3_on;
    ps_s3_opts s3o;
    char *s3_prefix;
    /* A tier sharing one bucket (output.s3.prefix holds "{receiver}"):
     * objects are listed under s3_base, and each key is
     * s3_base RECEIVER s3_tail NAME; s3_self is this receiver's RECEIVER.
     * s3_tail NULL: no tier, every key is s3_prefix NAME. */
    char *s3_base, *s3_tail, *s3_self;
    pthread_mutex_t s3_mu;
    struct file_row *s3_rows;
    size_t s3_n;
    uint64_t s3_at_ms;
    int s3_list_failed;     /* the last listing failed (s3_list_err says why) */
    uint64_t s3_list_ok_ms; /* when a listing last succeeded, 0 never */
    char s3_list_err[1100]; /* under s3_mu */
    uint64_t s3_pruned_at;  /* the listing (s3_at_ms) the index cache was pruned by */
    ps_s3cache *s3cache;    /* /api/packets' bucket objects (output.s3.cacheMB), or NULL */
    ps_series *b_bytes, *b_objects, *b_scanned, *b_cache; /* its metrics, or NULL */
    ps_snapshot rates_json;                               /* /api/throughput */
    ps_jobs *jobs;                                        /* capture jobs, or NULL */
    rate_series *rates;                                   /* API_RATE_SENSORS, loop thread only */
    unsigned rate_pos, rate_n; /* next sample's slot, samples taken (<= API_RATE_SAMPLES) */
};

/* ---- snapshots (loop thread) ---- */

/* "2026-11-26T08:50:50.123456789Z", or null for 0. */
static int json_time(ps_buf *out, uint64_t ns)
{
    time_t t = (time_t)(ns / 1000000000u);
    struct tm tm;
    char s[64], d[24];
    if (ns == 0 || !gmtime_r(&t, &tm)) /* packet times come from sensors */
        return ps_buf_append(out, "null", 4);
    strftime(s, sizeof(s), "\"%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(d, sizeof(d), ".%09uZ\"", (unsigned)(ns % 1000000000u));
    return ps_buf_append(out, s, strlen(s)) | ps_buf_append(out, d, strlen(d));
}

static int json_kv_u64(ps_buf *out, const char *key, uint64_t v)
{
    char s[64];
    snprintf(s, sizeof(s), ",\"%s\":%" PRIu64, key, v);
    return ps_buf_append(out, s, strlen(s));
}

static int json_kv_double(ps_buf *out, const char *key, double v)
{
    char s[64];
    snprintf(s, sizeof(s), ",\"%s\":%.3f", key, v);
    return ps_buf_append(out, s, strlen(s));
}

typedef struct sensors_json {
    ps_buf *j;
    int first;
    const char *receiver; /* with a tier: this receiver's name, for each entry */
} sensors_json;

/* The value of "key=" in a pod interface's description (docs/protocol.md):
 * up to the next space, except for labels, the last field. */
static int desc_field(ps_buf *j, const char *desc, const char *key)
{
    size_t kl = strlen(key);
    const char *p = desc;
    while (p && *p) {
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t n = strcmp(key, "labels") == 0 ? strlen(v) : strcspn(v, " ");
            char *tmp = strndup(v, n);
            if (!tmp)
                return -1;
            int rc = ps_json_str(j, tmp);
            free(tmp);
            return rc;
        }
        p = strchr(p, ' ');
        p = p ? p + 1 : NULL;
    }
    return ps_buf_append(j, "null", 4);
}

static int append_pod(ps_buf *j, const ps_hub_pod *p, int first)
{
    const char *desc = p->desc ? p->desc : "";
    int rc = ps_buf_append(j, first ? "{\"name\":" : ",{\"name\":", first ? 8 : 9);
    rc |= ps_json_str(j, p->name);
    rc |= ps_buf_append(j, ",\"iface\":", 9) | desc_field(j, desc, "iface");
    rc |= ps_buf_append(j, ",\"uid\":", 7) | desc_field(j, desc, "uid");
    rc |= ps_buf_append(j, ",\"labels\":", 10) | desc_field(j, desc, "labels");
    rc |= json_kv_u64(j, "packets", p->packets) | json_kv_u64(j, "drops", p->drops);
    rc |= ps_buf_append(j, "}", 1);
    return rc;
}

static int append_sensor(void *ud, const ps_hub_sensor *r)
{
    sensors_json *sj = ud;
    ps_buf *j = sj->j;
    char sess[40];
    snprintf(sess, sizeof(sess), "\"%016" PRIx64 "\"", r->session);
    int rc = ps_buf_append(j, sj->first ? "{\"id\":" : ",{\"id\":", sj->first ? 6 : 7);
    sj->first = 0;
    rc |= ps_json_str(j, r->id);
    rc |= ps_buf_append(j, ",\"session\":", 11) | ps_buf_append(j, sess, strlen(sess));
    rc |= ps_buf_append(j, ",\"address\":", 11) | ps_json_str(j, r->addr);
    rc |= ps_buf_append(j, ",\"connected\":", 13) |
          ps_buf_append(j, r->connected ? "true" : "false", r->connected ? 4 : 5);
    rc |= ps_buf_append(j, ",\"connected_since\":", 19) | json_time(j, r->connected_ns);
    rc |= json_kv_u64(j, "packets", r->packets) | json_kv_u64(j, "bytes", r->bytes) |
          json_kv_u64(j, "batches", r->batches) |
          json_kv_u64(j, "duplicate_batches", r->duplicates) |
          json_kv_u64(j, "sequence_gaps", r->gaps) | json_kv_u64(j, "drops", r->drops) |
          json_kv_double(j, "packets_per_second", r->pps) |
          json_kv_double(j, "bytes_per_second", r->bps);
    if (sj->receiver)
        rc |= ps_buf_append(j, ",\"receiver\":", 12) | ps_json_str(j, sj->receiver);
    rc |= ps_buf_append(j, ",\"pods\":[", 9);
    for (size_t i = 0; i < r->n_pods; i++)
        rc |= append_pod(j, &r->pods[i], i == 0);
    rc |= ps_buf_append(j, "]}", 2);
    return rc ? -1 : 0;
}

static int appendf(ps_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int appendf(ps_buf *b, const char *fmt, ...)
{
    char t[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t, sizeof(t), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(t))
        return -1;
    return ps_buf_append(b, t, (size_t)n);
}

static int rate_visit(void *ud, const ps_hub_sensor *s)
{
    ps_api *a = ud;
    rate_series *free_slot = NULL;
    for (int k = 0; k < API_RATE_SENSORS; k++) {
        rate_series *r = &a->rates[k];
        if (r->id[0] && strcmp(r->id, s->id) == 0) {
            r->bps[a->rate_pos] = s->bps;
            r->seen = 1;
            return 0;
        }
        if (!r->id[0] && !free_slot)
            free_slot = r;
    }
    if (free_slot && s->connected) {
        memset(free_slot, 0, sizeof(*free_slot));
        snprintf(free_slot->id, sizeof(free_slot->id), "%s", s->id);
        free_slot->bps[a->rate_pos] = s->bps;
        free_slot->seen = 1;
    }
    return 0;
}

/* One sample of every sensor's rate, then the chart's JSON:
 * {"interval_sec":5,"samples":N,"sensors":[{"id":..,"bytes_per_second":[oldest..newest]}]}.
 * A sensor absent for a whole window leaves the chart. */
static void sample_rates(ps_api *a)
{
    if (!a->rates)
        return;
    for (int k = 0; k < API_RATE_SENSORS; k++) {
        a->rates[k].seen = 0;
        a->rates[k].bps[a->rate_pos] = 0;
    }
    ps_hub_foreach_sensor(a->hub, rate_visit, a);
    unsigned n = a->rate_n < API_RATE_SAMPLES ? a->rate_n + 1 : API_RATE_SAMPLES;
    ps_buf j = PS_BUF_INIT;
    int rc = appendf(&j, "{\"interval_sec\":%d,\"samples\":%u,\"sensors\":[",
                     API_RATE_EVERY * API_PUBLISH_MS / 1000, n);
    int first = 1;
    for (int k = 0; k < API_RATE_SENSORS && rc == 0; k++) {
        rate_series *r = &a->rates[k];
        if (!r->id[0])
            continue;
        double sum = 0;
        for (unsigned i = 0; i < API_RATE_SAMPLES; i++)
            sum += r->bps[i];
        if (!r->seen && sum == 0) {
            r->id[0] = '\0'; /* gone quiet for the whole window */
            continue;
        }
        rc |= ps_buf_append(&j, first ? "{\"id\":" : ",{\"id\":", first ? 6 : 7);
        rc |= ps_json_str(&j, r->id);
        rc |= ps_buf_append(&j, ",\"bytes_per_second\":[", 21);
        for (unsigned i = 0; i < n && rc == 0; i++) {
            unsigned slot = (a->rate_pos + API_RATE_SAMPLES + 1 - n + i) % API_RATE_SAMPLES;
            rc |= appendf(&j, "%s%.0f", i ? "," : "", r->bps[slot]);
        }
        rc |= ps_buf_append(&j, "]}", 2);
        first = 0;
    }
    rc |= ps_buf_append(&j, "]}\n", 3);
    if (rc == 0) {
        ps_snapshot_set(&a->rates_json, (char *)j.data, j.len);
        j.data = NULL;
    }
    ps_buf_free(&j);
    a->rate_pos = (a->rate_pos + 1) % API_RATE_SAMPLES;
    a->rate_n = n;
}

static void publish(ps_api *a)
{
    ps_hub_publish(a->hub); /* the registry's counters and the sensors' rates */
    if (a->s3cache && a->b_cache)
        ps_series_set(a->b_cache, (double)ps_s3cache_bytes(a->s3cache));

    ps_buf j = PS_BUF_INIT;
    sensors_json sj = {.j = &j, .first = 1, .receiver = a->tier ? a->self_name : NULL};
    int rc = ps_buf_append(&j, "[", 1);
    if (rc == 0)
        rc = ps_hub_foreach_sensor(a->hub, append_sensor, &sj);
    rc |= ps_buf_append(&j, "]\n", 2);
    if (rc == 0) {
        ps_snapshot_set(&a->sensors_json, (char *)j.data, j.len);
        j.data = NULL; /* handed over */
    }
    ps_buf_free(&j);

    if (a->ticks % API_RATE_EVERY == 0)
        sample_rates(a);
    if (a->ticks++ % API_FILES_EVERY == 0 || !a->listening) {
        ps_buf m = PS_BUF_INIT;
        if (ps_writer_files_meta(a->writer, &m) == 0 && ps_buf_append(&m, "", 1) == 0) {
            ps_snapshot_set(&a->files_meta, (char *)m.data, m.len);
            m.data = NULL;
        }
        ps_buf_free(&m);
    }

    if (!a->http)
        return;
    char reason[PATH_MAX + 64] = "";
    if (!a->listening)
        snprintf(reason, sizeof(reason), "not listening for sensors");
    else if (ps_hub_write_failing(a->hub))
        snprintf(reason, sizeof(reason), "writing capture files fails");
    else if (a->dir && access(a->dir, W_OK) != 0) /* root too: EROFS, EPERM (immutable) */
        snprintf(reason, sizeof(reason), "output directory is not writable: %s (%s)", a->dir,
                 strerror(errno));
    ps_http_set_ready(a->http, reason[0] == '\0', reason);
}

static void on_timer(uv_timer_t *t)
{
    publish(t->data);
}

/* ---- HTTP routes (HTTP threads) ---- */

#define API_RECEIVER_MAX 64 /* a receiver's name in a tier's object keys */

typedef struct file_row {
    char name[256];
    char receiver[API_RECEIVER_MAX]; /* another receiver's object in the bucket; "" ours */
    uint64_t size, mtime_ns;
    unsigned stored; /* ROW_LOCAL | ROW_S3 */
} file_row;

#define ROW_LOCAL 1u
#define ROW_S3 2u

static int row_cmp(const void *x, const void *y)
{
    const file_row *a = x, *b = y;
    int c = strcmp(a->name, b->name);
    return c ? c : strcmp(a->receiver, b->receiver);
}

/* The writer's line for name (meta points into text), or NULL. */
static const char *meta_find(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, name, n) == 0 && p[n] == '\t')
            return p + n + 1;
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* Only files that follow the capture-file grammar (filename.h) are listed
 * or served: a request's name never reaches the file system otherwise. */
static int served_name(const char *name, const char *prefix)
{
    ps_fname f;
    if (!name || !prefix || strlen(name) > 255)
        return 0;
    if (ps_fname_parse(name, prefix, &f) == 0)
        return 1;
    /* A capture job's files: job-NAME-STAMP-COUNTER.EXT (jobs.h); NAME may
     * hold '-', so each split is tried. */
    if (strncmp(name, "job-", 4) != 0)
        return 0;
    char p[256];
    for (const char *d = strchr(name + 4, '-'); d; d = strchr(d + 1, '-')) {
        size_t n = (size_t)(d - name);
        memcpy(p, name, n);
        p[n] = '\0';
        if (ps_fname_parse(name, p, &f) == 0)
            return 1;
    }
    return 0;
}

static int append_file(ps_buf *j, const file_row *f, const char *meta, int first)
{
    unsigned long long fn = 0, ln = 0, pk = 0;
    size_t nl = strlen(f->name), pl = strlen(PS_FNAME_PART);
    int complete = !(nl >= pl && strcmp(f->name + nl - pl, PS_FNAME_PART) == 0);
    const char *sensors = NULL;
    size_t slen = 0;
    if (meta && sscanf(meta, "%llu\t%llu\t%llu\t%d\t", &fn, &ln, &pk, &complete) == 4) {
        sensors = meta;
        for (int tabs = 0; tabs < 4 && sensors; tabs++) {
            sensors = strchr(sensors, '\t');
            sensors = sensors ? sensors + 1 : NULL;
        }
        slen = sensors ? strcspn(sensors, "\n") : 0;
    } else {
        meta = NULL;
    }
    int rc = ps_buf_append(j, first ? "{\"name\":" : ",{\"name\":", first ? 8 : 9);
    rc |= ps_json_str(j, f->name);
    rc |= json_kv_u64(j, "size", f->size);
    rc |= ps_buf_append(j, ",\"modified\":", 12) | json_time(j, f->mtime_ns);
    rc |= ps_buf_append(j, ",\"first_packet\":", 16) | json_time(j, meta ? fn : 0);
    rc |= ps_buf_append(j, ",\"last_packet\":", 15) | json_time(j, meta ? ln : 0);
    if (meta)
        rc |= json_kv_u64(j, "packets", pk);
    else
        rc |= ps_buf_append(j, ",\"packets\":null", 15);
    rc |= ps_buf_append(j, ",\"sensors\":", 11);
    if (!meta) {
        rc |= ps_buf_append(j, "null", 4);
    } else {
        rc |= ps_buf_append(j, "[", 1);
        for (size_t i = 0, start = 0; i <= slen && slen; i++) {
            if (i == slen || sensors[i] == ',') {
                char id[300];
                size_t n = i - start < sizeof(id) - 1 ? i - start : sizeof(id) - 1;
                memcpy(id, sensors + start, n);
                id[n] = '\0';
                rc |= ps_buf_append(j, start ? "," : "", start ? 1 : 0) | ps_json_str(j, id);
                start = i + 1;
            }
        }
        rc |= ps_buf_append(j, "]", 1);
    }
    rc |= ps_buf_append(j, ",\"complete\":", 12) |
          ps_buf_append(j, complete ? "true" : "false", complete ? 4 : 5);
    const char *stored = f->stored == (ROW_LOCAL | ROW_S3) ? "local+s3"
                         : f->stored == ROW_S3             ? "s3"
                                                           : "local";
    rc |= ps_buf_append(j, ",\"stored\":", 10) | ps_json_str(j, stored);
    if (f->receiver[0])
        rc |= ps_buf_append(j, ",\"receiver\":", 12) | ps_json_str(j, f->receiver);
    rc |= ps_buf_append(j, ",\"url\":", 7);
    char url[400];
    snprintf(url, sizeof(url), "/captures/%s%s%s", f->name, f->receiver[0] ? "?receiver=" : "",
             f->receiver);
    rc |= ps_json_str(j, url) | ps_buf_append(j, "}", 1);
    return rc ? -1 : 0;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct s3_listing {
    ps_api *a;
    file_row *rows;
    size_t n, cap;
    int oom;
} s3_listing;

static void on_listed(void *ud, const ps_s3_listed *o)
{
    s3_listing *l = ud;
    ps_api *a = l->a;
    const char *base = a->s3_base ? a->s3_base : "";
    size_t pl = strlen(base);
    if (strncmp(o->key, base, pl) != 0)
        return;
    const char *name = o->key + pl;
    char who[API_RECEIVER_MAX] = "";
    if (a->s3_tail) { /* RECEIVER s3_tail NAME */
        const char *t = strstr(name, a->s3_tail);
        size_t rl = t ? (size_t)(t - name) : 0;
        if (!t || rl == 0 || rl >= sizeof(who) || memchr(name, '/', rl))
            return;
        memcpy(who, name, rl);
        who[rl] = '\0';
        name = t + strlen(a->s3_tail);
        if (strcmp(who, a->s3_self) == 0)
            who[0] = '\0';
    }
    if (!served_name(name, a->prefix) || strstr(name, PS_FNAME_PART))
        return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        file_row *r = realloc(l->rows, nc * sizeof(*r));
        if (!r) {
            l->oom = 1;
            return;
        }
        l->rows = r;
        l->cap = nc;
    }
    file_row *f = &l->rows[l->n++];
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->receiver, sizeof(f->receiver), "%s", who);
    f->size = o->size;
    f->stored = ROW_S3;
    f->mtime_ns = 0;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (o->last_modified &&
        sscanf(o->last_modified, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec) == 6) {
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        time_t t = timegm(&tm);
        if (t > 0)
            f->mtime_ns = (uint64_t)t * 1000000000u;
    }
}

/* A copy of the bucket's capture objects (sorted), listed again when the
 * cached list is older than API_S3_LIST_TTL_MS. On a failure the last list
 * is kept and the failure logged. 0, or -1 on OOM. With failed (not NULL):
 * 1 if the last listing failed (why in failed_why), else 0. */
static int s3_rows_get_ex(ps_api *a, file_row **out, size_t *n, int *failed, char *failed_why,
                          size_t whylen, uint64_t *age_ms)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&a->s3_mu);
    if (!a->s3_at_ms || mono_ms() - a->s3_at_ms >= API_S3_LIST_TTL_MS) {
        ps_s3 *s3 = NULL;
        char err[1024];
        s3_listing l = {.a = a};
        a->s3_at_ms = mono_ms();
        int rc = ps_s3_new(&s3, &a->s3o, err, sizeof(err));
        if (rc == 0)
            rc = ps_s3_list(s3, a->s3_base ? a->s3_base : "", API_MAX_LISTED_FILES, on_listed, &l,
                            err, sizeof(err));
        ps_s3_free(s3);
        if (rc != 0 || l.oom) {
            ps_warn("receiver", "listing the bucket (/api/captures, /api/packets): %s",
                    l.oom ? "out of memory" : err);
            free(l.rows);
            a->s3_list_failed = 1;
            snprintf(a->s3_list_err, sizeof(a->s3_list_err), "listing the bucket: %s",
                     l.oom ? "out of memory" : err);
        } else {
            a->s3_list_failed = 0;
            a->s3_list_ok_ms = a->s3_at_ms;
            if (l.n > 1)
                qsort(l.rows, l.n, sizeof(*l.rows), row_cmp);
            free(a->s3_rows);
            a->s3_rows = l.rows;
            a->s3_n = l.n;
        }
    }
    int rc = 0;
    if (failed) {
        *failed = a->s3_list_failed;
        snprintf(failed_why, whylen, "%s", a->s3_list_err);
        *age_ms = a->s3_list_ok_ms ? mono_ms() - a->s3_list_ok_ms : UINT64_MAX;
    }
    if (a->s3_n) {
        *out = malloc(a->s3_n * sizeof(**out));
        if (*out) {
            memcpy(*out, a->s3_rows, a->s3_n * sizeof(**out));
            *n = a->s3_n;
        } else {
            rc = -1;
        }
    }
    pthread_mutex_unlock(&a->s3_mu);
    return rc;
}

static int s3_rows_get(ps_api *a, file_row **out, size_t *n)
{
    return s3_rows_get_ex(a, out, n, NULL, NULL, 0, NULL);
}

static int route_captures_list(ps_api *a, struct MHD_Connection *c)
{
    if (!a->dir)
        return ps_http_respond(c, MHD_HTTP_OK, "application/json", "[]\n", 3);
    DIR *d = opendir(a->dir);
    if (!d)
        return ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    "cannot read the capture directory\n");
    file_row *rows = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int oom = 0;
    while ((e = readdir(d)) != NULL && n < API_MAX_LISTED_FILES) {
        if (!served_name(e->d_name, a->prefix))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            file_row *r = realloc(rows, nc * sizeof(*r));
            if (!r) {
                oom = 1;
                break;
            }
            rows = r;
            cap = nc;
        }
        snprintf(rows[n].name, sizeof(rows[n].name), "%s", e->d_name);
        rows[n].receiver[0] = '\0';
        rows[n].stored = ROW_LOCAL;
        rows[n].size = (uint64_t)st.st_size;
        rows[n].mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(rows, n, sizeof(*rows), row_cmp);
    if (a->s3_on && !oom) {
        /* a file on disk and in the bucket (same size) is one entry */
        file_row *s3r = NULL;
        size_t s3n = 0, local = n;
        if (s3_rows_get(a, &s3r, &s3n) != 0)
            oom = 1;
        for (size_t i = 0; i < s3n && !oom; i++) {
            file_row *f = local ? bsearch(&s3r[i], rows, local, sizeof(*rows), row_cmp) : NULL;
            if (f) {
                if (f->size == s3r[i].size && !strstr(f->name, PS_FNAME_PART))
                    f->stored |= ROW_S3;
                continue;
            }
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                file_row *r = realloc(rows, nc * sizeof(*r));
                if (!r) {
                    oom = 1;
                    break;
                }
                rows = r;
                cap = nc;
            }
            rows[n++] = s3r[i];
        }
        free(s3r);
        if (n > local)
            qsort(rows, n, sizeof(*rows), row_cmp);
    }
    ps_buf meta = PS_BUF_INIT, j = PS_BUF_INIT;
    int rc = oom || ps_snapshot_get(&a->files_meta, &meta) != 0 || ps_buf_append(&meta, "", 1);
    rc |= ps_buf_append(&j, "[", 1);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = append_file(&j, &rows[i],
                         meta.data ? meta_find((const char *)meta.data, rows[i].name) : NULL,
                         i == 0);
    rc |= ps_buf_append(&j, "]\n", 2);
    int res = rc ? ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n")
                 : ps_http_respond(c, MHD_HTTP_OK, "application/json", j.data, j.len);
    free(rows);
    ps_buf_free(&meta);
    ps_buf_free(&j);
    return res;
}

/* The headers both kinds of download carry. */
static void download_headers(struct MHD_Response *r, const char *name)
{
    int ng = strstr(name, ".pcapng") != NULL;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            ng ? "application/x-pcapng" : "application/vnd.tcpdump.pcap");
    char disp[320];
    snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", name); /* name is [A-Za-z0-9._-] */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disp);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
}

typedef struct s3_download {
    ps_s3 *s3;
    ps_s3_stream *st;
} s3_download;

/* libmicrohttpd runs a thread per connection: blocking here is allowed. */
static ssize_t s3_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    s3_download *d = cls;
    long n = ps_s3_stream_read(d->st, buf, max);
    return n > 0 ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void s3_download_free(void *cls)
{
    s3_download *d = cls;
    ps_s3_stream_free(d->st);
    ps_s3_free(d->s3);
    free(d);
}

/* A capture in the bucket (deleted locally after its upload): HEAD for the
 * size, then the object streamed through, Range passed on. */
/* A prefix with one "{receiver}" followed by a non-empty tail ("cap/{receiver}/")
 * is shared by a tier: the listing and downloads cover every receiver's
 * objects. This receiver's name is what the expanded prefix has in place
 * of "{receiver}". Out of memory leaves the bucket view to our own objects. */
static void split_tier_prefix(ps_api *a, const char *raw)
{
    const char *mark = raw ? strstr(raw, "{receiver}") : NULL;
    const char *exp = a->s3_prefix ? a->s3_prefix : "";
    a->s3_base = strdup(exp);
    if (!mark || strstr(mark + 10, "{receiver}") || !mark[10])
        return;
    size_t bl = (size_t)(mark - raw), tl = strlen(mark + 10), el = strlen(exp);
    if (el < bl + tl + 1)
        return;
    char *base = strndup(raw, bl), *tail = strdup(mark + 10);
    char *self = strndup(exp + bl, el - bl - tl);
    if (!base || !tail || !self || strchr(self, '/')) {
        free(base);
        free(tail);
        free(self);
        return;
    }
    free(a->s3_base);
    a->s3_base = base;
    a->s3_tail = tail;
    a->s3_self = self;
}

/* Which receiver's object a download of name means, in a tier sharing a
 * bucket: ?receiver=R, else ours when we have it, else the only one there
 * is. 0 with who filled ("" ours), or -1 with a response queued in *res. */
static int pick_receiver(ps_api *a, struct MHD_Connection *c, const char *name, char *who,
                         size_t wholen, int *res)
{
    who[0] = '\0';
    const char *want = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "receiver");
    if (want) {
        size_t n = strlen(want);
        int ok = n > 0 && n < wholen && strcmp(want, ".") && strcmp(want, "..");
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char)want[i]) || want[i] == '-' || want[i] == '.' ||
                 want[i] == '_';
        if (!ok) {
            *res = ps_http_respond_text(c, MHD_HTTP_BAD_REQUEST,
                                        "receiver: a receiver's name ([A-Za-z0-9._-])\n");
            return -1;
        }
        if (!a->s3_tail) {
            *res = ps_http_respond_text(c, MHD_HTTP_NOT_FOUND,
                                        "receiver: this bucket is not shared by a tier\n");
            return -1;
        }
        if (strcmp(want, a->s3_self) != 0)
            snprintf(who, wholen, "%s", want);
        return 0;
    }
    if (!a->s3_tail)
        return 0;
    file_row *rows = NULL;
    size_t n = 0;
    if (s3_rows_get(a, &rows, &n) != 0) {
        *res = ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return -1;
    }
    size_t found = 0, own = 0;
    char names[512] = "";
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].name, name) != 0)
            continue;
        if (!rows[i].receiver[0]) {
            own = 1;
            continue;
        }
        if (!found++)
            snprintf(who, wholen, "%s", rows[i].receiver);
        size_t k = strlen(names);
        snprintf(names + k, sizeof(names) - k, "%s%s", k ? ", " : "", rows[i].receiver);
    }
    free(rows);
    if (own || found == 0) {
        who[0] = '\0';
        return 0;
    }
    if (found > 1) {
        char msg[700];
        snprintf(msg, sizeof(msg),
                 "%s is held by several receivers of the tier (%s): add ?receiver=NAME\n", name,
                 names);
        *res = ps_http_respond_text(c, MHD_HTTP_CONFLICT, msg);
        return -1;
    }
    return 0;
}

/* The object key of capture NAME: another receiver's (who, of a tier
 * sharing the bucket) or ours (who ""). 0, or -1 when it does not fit. */
static int object_key(const ps_api *a, const char *who, const char *name, char *key, size_t keylen)
{
    int n = who[0] ? snprintf(key, keylen, "%s%s%s%s", a->s3_base, who, a->s3_tail, name)
                   : snprintf(key, keylen, "%s%s", a->s3_prefix ? a->s3_prefix : "", name);
    return n >= 0 && (size_t)n < keylen ? 0 : -1;
}

static int route_download_s3(ps_api *a, struct MHD_Connection *c, const char *name)
{
    char key[PATH_MAX], err[1024], who[API_RECEIVER_MAX];
    int picked;
    if (pick_receiver(a, c, name, who, sizeof(who), &picked) != 0)
        return picked;
    if (object_key(a, who, name, key, sizeof(key)) != 0)
        return ps_http_respond_text(c, MHD_HTTP_NOT_FOUND, "no such capture\n");
    s3_download *d = calloc(1, sizeof(*d));
    if (!d || ps_s3_new(&d->s3, &a->s3o, err, sizeof(err)) != 0) {
        free(d);
        return ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    ps_s3_object obj;
    int rc = ps_s3_head(d->s3, key, &obj, err, sizeof(err));
    if (rc != 0) {
        s3_download_free(d);
        if (rc == PS_S3_E_NOTFOUND)
            return ps_http_respond_text(c, MHD_HTTP_NOT_FOUND, "no such capture\n");
        ps_warn("receiver", "download of %s from the bucket: %s", name, err);
        return ps_http_respond_text(c, MHD_HTTP_BAD_GATEWAY, "the bucket did not answer\n");
    }
    uint64_t size = obj.size, start = 0, len = size;
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    ps_range_result rr = ps_http_parse_range(range, size, &start, &len);
    char cr[96];
    struct MHD_Response *r;
    unsigned status = MHD_HTTP_OK;
    if (rr == PS_RANGE_UNSATISFIABLE) {
        s3_download_free(d);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        int res = MHD_queue_response(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
        MHD_destroy_response(r);
        return res;
    }
    if (len == 0) { /* an empty object: nothing to fetch */
        s3_download_free(d);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        rc = ps_s3_stream_open(d->s3, key, start, len, &d->st, err, sizeof(err));
        if (rc != 0) {
            s3_download_free(d);
            ps_warn("receiver", "download of %s from the bucket: %s", name, err);
            return ps_http_respond_text(
                c, rc == PS_S3_E_NOTFOUND ? MHD_HTTP_NOT_FOUND : MHD_HTTP_BAD_GATEWAY,
                "the bucket did not answer\n");
        }
        r = MHD_create_response_from_callback(len, 64 * 1024, s3_reader, d, s3_download_free);
        if (!r) {
            s3_download_free(d);
            return MHD_NO;
        }
    }
    if (!r)
        return MHD_NO;
    download_headers(r, name);
    if (rr == PS_RANGE_OK) {
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, start + len - 1,
                 size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        status = MHD_HTTP_PARTIAL_CONTENT;
    }
    int res = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return res;
}

static int route_download(ps_api *a, struct MHD_Connection *c, const char *name)
{
    if (!a->dir)
        return ps_http_respond_text(c, MHD_HTTP_NOT_FOUND, "captures go to stdout\n");
    if (!served_name(name, a->prefix))
        return ps_http_respond_text(c, MHD_HTTP_BAD_REQUEST, "not a capture file name\n");
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", a->dir, name) >= sizeof(path))
        return ps_http_respond_text(c, MHD_HTTP_BAD_REQUEST, "name too long\n");
    const char *who = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "receiver");
    if (who && a->s3_on && !(a->s3_self && strcmp(who, a->s3_self) == 0) &&
        !strstr(name, PS_FNAME_PART))
        return route_download_s3(a, c, name); /* another receiver's object */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 && errno == ENOENT && a->s3_on && !strstr(name, PS_FNAME_PART))
        return route_download_s3(a, c, name);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return ps_http_respond_text(c, MHD_HTTP_NOT_FOUND, "no such capture\n");
    }
    uint64_t size = (uint64_t)st.st_size, start = 0, len = size;
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    ps_range_result rr = ps_http_parse_range(range, size, &start, &len);
    char cr[96];
    if (rr == PS_RANGE_UNSATISFIABLE) {
        close(fd);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        int rc = MHD_queue_response(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
        MHD_destroy_response(r);
        return rc;
    }
    /* Streamed from the descriptor by libmicrohttpd (sendfile where it
     * can): the file is never read into memory. It owns fd from here. */
    struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(len, fd, start);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    download_headers(r, name);
    unsigned status = MHD_HTTP_OK;
    if (rr == PS_RANGE_OK) {
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, start + len - 1,
                 size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        status = MHD_HTTP_PARTIAL_CONTENT;
    }
    int rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static const char status_page[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<title>packetstreamer receiver</title>\n<style>\n"
    "body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}"
    "th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".up{color:#080}.down{color:#a00}#err{color:#a00}small{color:#666}\n"
    "</style></head><body>\n"
    "<h1>packetstreamer receiver</h1>\n"
    "<p><small>Refreshes every 2 s. <a href=\"/metrics\">metrics</a> &middot; "
    "<a href=\"/api/sensors\">/api/sensors</a> &middot; <a href=\"/api/captures\">/api/captures</a>"
    "</small> <span id=\"err\"></span></p>\n"
    "<h2>Sensors</h2>\n<table id=\"sensors\"><thead><tr><th>sensor</th><th>state</th>"
    "<th>address</th><th>connected since</th><th>packets</th><th>packets/s</th><th>bytes/s</th>"
    "<th>drops</th><th>gaps</th><th>pods (packets)</th><th>receiver</th></tr></thead>"
    "<tbody></tbody></table>\n"
    "<h2>Throughput</h2>\n<p><small>Bytes per second of each sensor over the last 10 minutes "
    "(a sample every 5 s).</small></p>\n"
    "<svg id=\"chart\" width=\"720\" height=\"180\" "
    "viewBox=\"0 0 720 180\" role=\"img\" aria-label=\"throughput per sensor\"></svg>\n"
    "<div id=\"legend\"></div>\n"
    "<h2>Capture jobs</h2>\n<table id=\"jobs\"><thead><tr><th>id</th><th>name</th>"
    "<th>state</th><th>selector</th><th>filter</th><th>started</th><th>ends</th>"
    "<th>packets</th><th>sensors</th><th>files</th></tr></thead><tbody></tbody></table>\n"
    "<h2>Capture files</h2>\n<table id=\"files\"><thead><tr><th>file</th><th>size</th>"
    "<th>packets</th><th>first packet</th><th>last packet</th><th>sensors</th><th>state</th>"
    "</tr></thead><tbody></tbody></table>\n"
    "<script>\n"
    "function td(t,c){var e=document.createElement('td');e.textContent=t==null?'':String(t);"
    "if(c)e.className=c;return e}\n"
    "function fill(id,rows,mk){var b=document.querySelector('#'+id+' tbody');"
    "while(b.firstChild)b.removeChild(b.firstChild);rows.forEach(function(r){"
    "var tr=document.createElement('tr');mk(r).forEach(function(c){tr.appendChild(c)});"
    "b.appendChild(tr)})}\n"
    "function size(n){var u=['B','KiB','MiB','GiB','TiB'],i=0;while(n>=1024&&i<4){n/=1024;i++}"
    "return (i?n.toFixed(1):n)+' '+u[i]}\n"
    "function refresh(){Promise.all([fetch('/api/sensors'),fetch('/api/captures')]).then("
    "function(r){if(!r[0].ok||!r[1].ok)throw new Error('HTTP '+r[0].status+'/'+r[1].status);"
    "return Promise.all([r[0].json(),r[1].json()])}).then(function(d){"
    "document.getElementById('err').textContent='';"
    "fill('sensors',d[0],function(s){return [td(s.id),"
    "td(s.connected?'connected':'disconnected',s.connected?'up':'down'),td(s.address),"
    "td(s.connected_since),td(s.packets,'n'),td(s.packets_per_second.toFixed(1),'n'),"
    "td(s.bytes_per_second.toFixed(0),'n'),td(s.drops,'n'),td(s.sequence_gaps,'n'),"
    "td((s.pods||[]).map(function(p){return p.name+' ('+p.packets+')'}).join(', ')),"
    "td(s.receiver||'')]});"
    "fill('files',d[1],function(f){var "
    "c=document.createElement('td'),a=document.createElement('a');"
    "a.href=f.url;a.textContent=f.name;a.setAttribute('download',f.name);c.appendChild(a);"
    "return [c,td(size(f.size),'n'),td(f.packets,'n'),td(f.first_packet),td(f.last_packet),"
    "td(f.sensors?f.sensors.join(', '):''),td(f.complete?'complete':'in progress')]})"
    "}).catch(function(e){document.getElementById('err').textContent='update failed: '+e})}\n"
    "var "
    "SVG=document.getElementById('chart').namespaceURI,COLORS=['#1f77b4','#d62728','#2ca02c','#"
    "ff7f0e',"
    "'#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'];\n"
    "function svg(n,a){var e=document.createElementNS(SVG,n);for(var k in a)"
    "e.setAttribute(k,a[k]);return e}\n"
    "function chart(d){var c=document.getElementById('chart'),lg=document.getElementById('legend');"
    "while(c.firstChild)c.removeChild(c.firstChild);while(lg.firstChild)lg.removeChild(lg."
    "firstChild);"
    "var W=720,H=180,L=60,max=1;d.sensors.forEach(function(s){s.bytes_per_second.forEach("
    "function(v){if(v>max)max=v})});"
    "c.appendChild(svg('line',{x1:L,y1:H-20,x2:W,y2:H-20,stroke:'#999'}));"
    "c.appendChild(svg('line',{x1:L,y1:10,x2:L,y2:H-20,stroke:'#999'}));"
    "var t=svg('text',{x:2,y:18,'font-size':11});t.textContent=size(max)+'/s';c.appendChild(t);"
    "t=svg('text',{x:L,y:H-4,'font-size':11});t.textContent='-10 min';c.appendChild(t);"
    "t=svg('text',{x:W-30,y:H-4,'font-size':11});t.textContent='now';c.appendChild(t);"
    "d.sensors.forEach(function(s,i){var v=s.bytes_per_second,n=120,pts=[];"
    "v.forEach(function(y,k){pts.push((L+(W-L)*(n-v.length+k)/(n-1)).toFixed(1)+','+"
    "(H-20-(H-30)*y/max).toFixed(1))});var col=COLORS[i%COLORS.length];"
    "c.appendChild(svg('polyline',{points:pts.join(' '),fill:'none',stroke:col,"
    "'stroke-width':1.5}));var sp=document.createElement('span');sp.style.color=col;"
    "sp.textContent='\\u25a0 '+s.id+'  ';lg.appendChild(sp)})}\n"
    "function jobs(d){fill('jobs',d,function(j){var s=j.selector||{},sel=[];"
    "['sensors','namespaces','pods','interfaces'].forEach(function(k){if(s[k]&&s[k].length)"
    "sel.push(k+'='+s[k].join(','))});if(s.labelSelector)sel.push('labels='+s.labelSelector);"
    "var per=j.sensors||{};return [td(j.id,'n'),td(j.name),td(j.state+(j.reason?' ('+j.reason+')'"
    ":''),j.state=='running'?'up':''),td(sel.join(' ')),td(j.filter),td(j.start),td(j.end),"
    "td(j.packets_written,'n'),td(Object.keys(per).map(function(k){return k+': '+"
    "per[k].packets_written+(per[k].state?' '+per[k].state:'')}).join(', ')),"
    "td((j.files||[]).join(', '))]})}\n"
    "function refresh2(){fetch('/api/throughput').then(function(r){return r.json()}).then(chart)"
    ".catch(function(){});fetch('/api/jobs?full=1').then(function(r){return r.json()})"
    ".then(jobs).catch(function(){})}\n"
    "refresh();refresh2();setInterval(refresh,2000);setInterval(refresh2,5000);\n"
    "</script>\n</body></html>\n";

/* The page needs nothing but its own inline code and same-origin fetches;
 * the policy says so, so injected markup could do nothing either (all data
 * goes in through textContent anyway). */
static int respond_status_page(struct MHD_Connection *c)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sizeof(status_page) - 1, (void *)(uintptr_t)status_page, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; "
                            "style-src 'unsafe-inline'; connect-src 'self'; "
                            "frame-ancestors 'none'");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    int rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

static int respond_json(struct MHD_Connection *c, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text)
        return ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    int rc = ps_http_respond(c, MHD_HTTP_OK, "application/json", text, strlen(text));
    free(text);
    return rc;
}

/* This receiver's sensors; with a tier (and without ?scope=local, which is
 * what the peers ask), the other receivers' too, each naming its receiver. */
static int route_sensors(ps_api *a, struct MHD_Connection *c)
{
    ps_buf b = PS_BUF_INIT;
    int rc = ps_snapshot_get(&a->sensors_json, &b);
    if (rc == 0 && b.len == 0)
        rc = ps_buf_append(&b, "[]\n", 3);
    if (rc != 0) {
        ps_buf_free(&b);
        return ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    const char *scope = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "scope");
    if (!a->tier || (scope && strcmp(scope, "local") == 0)) {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
        ps_buf_free(&b);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(r, PS_TIER_INSTANCE_HEADER, a->instance);
        rc = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return rc;
    }
    json_t *all = json_loadb((const char *)b.data, b.len, 0, NULL);
    ps_buf_free(&b);
    if (!json_is_array(all) || ps_tier_append_sensors(a->tier, all) != 0) {
        json_decref(all);
        return ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    return respond_json(c, all);
}

/* The tier's receivers and whether they answered; [] without a tier. */
static int route_tier(ps_api *a, struct MHD_Connection *c)
{
    return respond_json(c, a->tier ? ps_tier_status(a->tier) : json_array());
}

static int respond_status_json(struct MHD_Connection *c, int status, char *body)
{
    if (!body)
        return ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    size_t n = strlen(body);
    char *t = realloc(body, n + 2);
    if (t) {
        body = t;
        body[n++] = '\n';
        body[n] = '\0';
    }
    int rc = ps_http_respond(c, (unsigned)status, "application/json", body, n);
    free(body);
    return rc;
}

static int no_jobs(struct MHD_Connection *c)
{
    return respond_status_json(
        c, 409, strdup("{\"error\":\"capture jobs need an output directory (output.file.path)\"}"));
}

static int route_jobs_get(ps_api *a, struct MHD_Connection *c, const char *url)
{
    char *body = NULL;
    if (!a->jobs)
        return strcmp(url, "/api/jobs") == 0 ? respond_status_json(c, 200, strdup("[]"))
                                             : no_jobs(c);
    if (strcmp(url, "/api/jobs") == 0) {
        const char *full = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "full");
        if (full && strcmp(full, "1") == 0)
            return respond_status_json(c, 200, ps_jobs_summary_json(a->jobs));
        int st = ps_jobs_http_list(a->jobs, &body);
        return respond_status_json(c, st, body);
    }
    int st = ps_jobs_http_get(a->jobs, url + 10, &body);
    return respond_status_json(c, st, body);
}

/* POST /api/jobs, DELETE /api/jobs/ID, POST /api/alertmanager. */
static int route_write(void *ud, struct MHD_Connection *c, const char *method, const char *url,
                       const char *body, size_t len)
{
    ps_api *a = ud;
    int post = strcmp(method, "POST") == 0;
    char *out = NULL;
    int st;
    if (post && strcmp(url, "/api/jobs") == 0) {
        if (!a->jobs)
            return no_jobs(c);
        st = ps_jobs_http_create(a->jobs, body, len, &out);
    } else if (post && strcmp(url, "/api/alertmanager") == 0) {
        if (!a->jobs)
            return no_jobs(c);
        st = ps_jobs_http_alertmanager(a->jobs, body, len, &out);
    } else if (!post && strncmp(url, "/api/jobs/", 10) == 0) {
        if (!a->jobs)
            return no_jobs(c);
        st = ps_jobs_http_delete(a->jobs, url + 10, &out);
    } else {
        return PS_HTTP_NOT_FOUND;
    }
    return respond_status_json(c, st, out);
}

/* ---- /api/packets ---- */

static void count(ps_series *s, uint64_t n)
{
    if (s)
        ps_series_add(s, n);
}

/* {"error": CODE, "reason": SENTENCE} with status, counted by kind. */
static int respond_error(ps_api *a, struct MHD_Connection *c, unsigned status, const char *code,
                         const char *reason)
{
    count(status == MHD_HTTP_BAD_REQUEST           ? a->x_bad
          : status == MHD_HTTP_SERVICE_UNAVAILABLE ? a->x_busy
                                                   : a->x_err,
          1);
    json_t *v = json_pack("{s:s,s:s}", "error", code, "reason", reason);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text)
        return ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    size_t n = strlen(text);
    int rc = ps_http_respond(c, status, "application/json", text, n);
    free(text);
    return rc;
}

typedef struct extract {
    ps_api *api;
    ps_query *q;
    ps_s3extract *sx; /* the bucket's side, or NULL */
} extract;

static ssize_t extract_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    extract *x = cls;
    (void)pos;
    if (atomic_load(&x->api->stopping))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    ssize_t n = ps_query_read(x->q, (uint8_t *)buf, max);
    if (n > 0)
        return n;
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    ps_warn("api", "an extraction failed while streaming: %s; its stream is cut", strerror(errno));
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void extract_done(void *cls)
{
    extract *x = cls;
    ps_query_stats st;
    ps_query_get_stats(x->q, &st);
    count(x->api->x_packets, st.packets);
    ps_query_free(x->q);
    ps_s3extract_free(x->sx); /* after the query: releases the cached objects it read */
    atomic_fetch_sub(&x->api->extractions, 1);
    free(x);
}

/* A selector or the filter: NULL when absent or empty; *bad set when too
 * long or holding a control character. */
static const char *arg(struct MHD_Connection *c, const char *key, size_t max, char *why,
                       size_t whylen)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
    if (!v || !*v)
        return NULL;
    size_t n = strnlen(v, max + 1);
    if (n > max && !why[0])
        snprintf(why, whylen, "%s: longer than %zu bytes", key, max);
    for (const unsigned char *p = (const unsigned char *)v; *p && !why[0]; p++)
        if (*p < 0x20 || *p == 0x7f)
            snprintf(why, whylen, "%s: holds a control character", key);
    return v;
}

static int parse_limit(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 12)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v == 0)
        return -1;
    *out = v;
    return 0;
}

static void header_u64(struct MHD_Response *r, const char *name, uint64_t v)
{
    char text[24];
    snprintf(text, sizeof(text), "%" PRIu64, v);
    MHD_add_response_header(r, name, text);
}

/* The bucket's capture objects this receiver does not have on disk,
 * described for the query (s3extract.h). 0 with *out (NULL without
 * output.s3), or a PS_QUERY_E_* code / -1 with why. When the bucket
 * cannot be listed now but was before, that listing is used (the objects
 * and indexes it needs may be cached) and note says so; never listed: the
 * request fails. */
static int bucket_side(ps_api *a, ps_s3extract **out, char *note, size_t notelen, char *why,
                       size_t whylen)
{
    *out = NULL;
    note[0] = '\0';
    if (!a->s3cache)
        return 0;
    file_row *rows = NULL;
    size_t n = 0;
    int failed = 0;
    uint64_t age_ms = 0;
    if (s3_rows_get_ex(a, &rows, &n, &failed, why, whylen, &age_ms) != 0) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (failed && age_ms == UINT64_MAX) {
        free(rows);
        return PS_QUERY_E_REMOTE; /* why: the listing's error */
    }
    if (failed) {
        snprintf(note, notelen, "%.400s; answered from the bucket's listing of %" PRIu64 " s ago",
                 why, age_ms / 1000);
        for (char *p = note; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
    }
    ps_s3extract_obj *objs = calloc(n ? n : 1, sizeof(*objs));
    char **keys = calloc(n ? n : 1, sizeof(*keys));
    ps_strvec cnames = PS_STRVEC_INIT;
    size_t no = 0;
    int rc = objs && keys ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const file_row *f = &rows[i];
        ps_fname fn;
        char cname[300], path[PATH_MAX];
        if (ps_fname_parse(f->name, a->prefix, &fn) != 0 || !fn.pcapng || fn.part ||
            ps_s3extract_cname(f->receiver, f->name, cname, sizeof(cname)) != 0)
            continue; /* what the query reads locally: this file set's pcapng files */
        if (ps_strvec_add(&cnames, cname) != 0) {
            rc = -1;
            break;
        }
        snprintf(path, sizeof(path), "%s/%s", a->dir, f->name);
        if (!f->receiver[0] && access(path, F_OK) == 0)
            continue; /* on disk: read there */
        char key[PATH_MAX];
        if (object_key(a, f->receiver, f->name, key, sizeof(key)) != 0)
            continue; /* not a key S3 accepts (1024 bytes at most) */
        if (!(keys[no] = strdup(key))) {
            rc = -1;
            break;
        }
        objs[no] = (ps_s3extract_obj){
            .key = keys[no], .name = f->name, .who = f->receiver, .size = f->size};
        no++;
    }
    if (rc == 0) {
        /* indexes of objects a lifecycle rule deleted: once per listing */
        uint64_t at;
        pthread_mutex_lock(&a->s3_mu);
        at = a->s3_at_ms;
        int prune = at != a->s3_pruned_at && n < API_MAX_LISTED_FILES;
        a->s3_pruned_at = at;
        pthread_mutex_unlock(&a->s3_mu);
        if (prune) {
            ps_strvec_sort(&cnames);
            ps_s3extract_prune(ps_s3cache_dir(a->s3cache), &cnames, 3600);
        }
        ps_s3_opts s3o = a->s3o;
        s3o.cancel = &a->stopping; /* a fetch in progress ends at shutdown */
        ps_s3extract_opts so = {.s3 = &s3o,
                                .cache = a->s3cache,
                                .own_key_prefix = a->s3_prefix ? a->s3_prefix : "",
                                .fetched_bytes = a->b_bytes,
                                .fetched_objects = a->b_objects,
                                .scanned = a->b_scanned};
        rc = ps_s3extract_open(out, &so, objs, no, why, whylen);
    } else {
        snprintf(why, whylen, "out of memory");
    }
    ps_strvec_free(&cnames);
    for (size_t i = 0; keys && i < no; i++)
        free(keys[i]);
    free(keys);
    free(objs);
    free(rows);
    return rc;
}

/* The answer to a failed ps_query_open or bucket_side. */
static int respond_open_error(ps_api *a, struct MHD_Connection *c, int rc, const char *why)
{
    switch (rc) {
    case PS_QUERY_E_FILTER:
        return respond_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_filter", why);
    case PS_QUERY_E_LIMIT:
    case PS_QUERY_E_TOOBIG:
        return respond_error(a, c, MHD_HTTP_BAD_REQUEST, "too_broad", why);
    case PS_QUERY_E_REMOTE:
        ps_warn("api", "/api/packets: %s", why);
        return respond_error(a, c, MHD_HTTP_BAD_GATEWAY, "bucket_unavailable", why);
    case PS_QUERY_E_BUSY:
        return respond_error(a, c, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", why);
    default:
        return respond_error(a, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", why);
    }
}

static int route_packets(ps_api *a, struct MHD_Connection *c)
{
    if (!a->dir)
        return respond_error(a, c, MHD_HTTP_NOT_FOUND, "no_files",
                             "captures go to stdout: there are no files to extract from");
    if (a->format != PS_FORMAT_PCAPNG)
        return respond_error(a, c, MHD_HTTP_NOT_IMPLEMENTED, "unsupported_format",
                             "extraction reads pcapng capture files; this receiver writes "
                             "classic pcap (--format pcap), which names no interfaces");
    char why[PS_QUERY_MAX_FILTER + 600] = "";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    ps_query_opts o = {.app = a->app};
    const char *from = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "from");
    const char *to = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "to");
    char terr[256];
    if (!from || !*from)
        return respond_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_time",
                             "from: missing (an RFC 3339 time, now, or a duration before now "
                             "like -5m)");
    if (ps_query_parse_time(from, now, &o.from_ns, terr, sizeof(terr)) != 0) {
        snprintf(why, sizeof(why), "from: %s", terr);
        return respond_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_time", why);
    }
    o.to_ns = now;
    if (to && *to && ps_query_parse_time(to, now, &o.to_ns, terr, sizeof(terr)) != 0) {
        snprintf(why, sizeof(why), "to: %s", terr);
        return respond_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_time", why);
    }
    if (o.from_ns > o.to_ns)
        return respond_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_range", "from is after to");
    o.pod = arg(c, "pod", PS_QUERY_MAX_SELECTOR, why, sizeof(why));
    o.ns = arg(c, "namespace", PS_QUERY_MAX_SELECTOR, why, sizeof(why));
    o.sensor = arg(c, "sensor", PS_QUERY_MAX_SELECTOR, why, sizeof(why));
    o.iface = arg(c, "iface", PS_QUERY_MAX_SELECTOR, why, sizeof(why));
    o.filter = arg(c, "filter", PS_QUERY_MAX_FILTER, why, sizeof(why));
    if (!why[0] && o.pod) {
        const char *slash = strchr(o.pod, '/');
        if (!slash || slash == o.pod || !slash[1] || strchr(slash + 1, '/'))
            snprintf(why, sizeof(why), "pod: \"%.200s\" is not NAMESPACE/NAME", o.pod);
    }
    if (!why[0] && o.ns && strchr(o.ns, '/'))
        snprintf(why, sizeof(why), "namespace: \"%.200s\" holds a /", o.ns);
    if (why[0])
        return respond_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_selector", why);
    const char *limit = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    if (limit && parse_limit(limit, &o.limit) != 0) {
        snprintf(why, sizeof(why), "limit: \"%.40s\" is not a packet count from 1 to 999999999999",
                 limit);
        return respond_error(a, c, MHD_HTTP_BAD_REQUEST, "bad_limit", why);
    }
    if (atomic_fetch_add(&a->extractions, 1) >= a->max_extractions) {
        atomic_fetch_sub(&a->extractions, 1);
        int64_t last = atomic_load(&a->busy_logged_ns), t = (int64_t)now;
        if (t - last >= API_BUSY_LOG_NS &&
            atomic_compare_exchange_strong(&a->busy_logged_ns, &last, t))
            ps_warn("api",
                    "/api/packets: %d extractions in progress (http.maxExtractions); "
                    "answering 503 busy (logged at most every 10 s)",
                    a->max_extractions);
        return respond_error(a, c, MHD_HTTP_SERVICE_UNAVAILABLE, "busy",
                             "too many extractions in progress; try again");
    }
    extract *x = calloc(1, sizeof(*x));
    char note[600] = "";
    int rc = x ? bucket_side(a, &x->sx, note, sizeof(note), why, sizeof(why)) : -1;
    if (rc == 0) {
        o.src = x->sx ? ps_s3extract_source(x->sx) : NULL;
        rc = ps_query_open(&x->q, a->dir, a->prefix, &o, why, sizeof(why));
    }
    if (rc != 0) {
        if (x)
            ps_s3extract_free(x->sx);
        free(x);
        atomic_fetch_sub(&a->extractions, 1);
        return respond_open_error(a, c, rc, x ? why : "out of memory");
    }
    x->api = a;
    ps_query_stats st;
    ps_query_get_stats(x->q, &st);
    ps_s3extract_stats bs = {0};
    if (x->sx)
        ps_s3extract_get_stats(x->sx, &bs);
    count(a->x_ok, 1);
    count(a->x_read, st.files_read);
    count(a->x_skipped, st.files_skipped);
    count(a->x_scanned, st.files_scanned);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, API_EXTRACT_BLOCK,
                                                               extract_read, x, extract_done);
    if (!r) {
        extract_done(x);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-pcapng");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION,
                            "attachment; filename=\"packets.pcapng\"");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    header_u64(r, "X-Packetstreamer-Files-Read", st.files_read);
    header_u64(r, "X-Packetstreamer-Files-Skipped", st.files_skipped);
    header_u64(r, "X-Packetstreamer-Files-Scanned", st.files_scanned);
    header_u64(r, "X-Packetstreamer-Streams", st.streams);
    if (x->sx) {
        header_u64(r, "X-Packetstreamer-Bucket-Objects", st.remote);
        header_u64(r, "X-Packetstreamer-Bucket-Read", st.remote_read);
        header_u64(r, "X-Packetstreamer-Bucket-Scanned", bs.scanned);
        header_u64(r, "X-Packetstreamer-Bucket-Fetched", bs.fetched);
        header_u64(r, "X-Packetstreamer-Bucket-Fetched-Bytes", bs.fetched_bytes);
        if (note[0])
            MHD_add_response_header(r, "X-Packetstreamer-Bucket-Note", note);
    }
    if (st.streams == 0) {
        MHD_add_response_header(r, "X-Packetstreamer-Matched", "0");
        MHD_add_response_header(r, "X-Packetstreamer-Note",
                                st.ifaces_named == 0
                                    ? "no interface in the capture files matches the selectors"
                                    : "the matching interfaces have no packets in the window");
    }
    rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

static int route(void *ud, struct MHD_Connection *c, const char *url)
{
    ps_api *a = ud;
    if (strcmp(url, "/api/jobs") == 0 || strncmp(url, "/api/jobs/", 10) == 0)
        return route_jobs_get(a, c, url);
    if (strcmp(url, "/api/throughput") == 0) {
        ps_buf b = PS_BUF_INIT;
        if (ps_snapshot_get(&a->rates_json, &b) != 0 ||
            (b.len == 0 &&
             ps_buf_append(&b, "{\"interval_sec\":5,\"samples\":0,\"sensors\":[]}\n", 44) != 0)) {
            ps_buf_free(&b);
            return ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
        int rc = ps_http_respond(c, MHD_HTTP_OK, "application/json", b.data, b.len);
        ps_buf_free(&b);
        return rc;
    }
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
        return respond_status_page(c);
    if (strcmp(url, "/api/sensors") == 0)
        return route_sensors(a, c);
    if (strcmp(url, "/api/tier") == 0)
        return route_tier(a, c);
    if (strcmp(url, "/api/captures") == 0)
        return route_captures_list(a, c);
    if (strncmp(url, "/captures/", 10) == 0)
        return route_download(a, c, url + 10);
    if (strcmp(url, "/live") == 0)
        return ps_livefeed_respond(a->live, c);
    if (strcmp(url, "/api/packets") == 0)
        return route_packets(a, c);
    return PS_HTTP_NOT_FOUND;
}

/* ---- lifecycle ---- */

static ps_api *api_start(uv_loop_t *loop, const ps_api_opts *o, char *err, size_t errlen)
{
    ps_api *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->hub = o->hub;
    a->writer = o->writer;
    a->live = o->livefeed;
    a->cfg = o->cfg;
    a->jobs = o->jobs;
    a->listening = 1;
    a->rates = calloc(API_RATE_SENSORS, sizeof(*a->rates));
    a->format = o->cfg->format;
    a->max_extractions = o->cfg->http_max_extractions ? (int)o->cfg->http_max_extractions : 4;
    snprintf(a->app, sizeof(a->app), "packetstreamer %s", PS_VERSION);
    /* Copies: the HTTP threads outlive the writer by a little. */
    const char *dir = ps_writer_dir(o->writer), *prefix = ps_writer_prefix(o->writer);
    a->dir = dir ? strdup(dir) : NULL;
    a->prefix = prefix ? strdup(prefix) : NULL;
    ps_snapshot_init(&a->sensors_json);
    ps_snapshot_init(&a->files_meta);
    pthread_mutex_init(&a->s3_mu, NULL);
    if (o->s3 && dir && prefix) {
        a->s3_on = 1;
        a->s3o = *o->s3;
        a->s3o.cancel = NULL;
        a->s3_prefix = o->s3_key_prefix ? strdup(o->s3_key_prefix) : NULL;
        split_tier_prefix(a, o->cfg ? o->cfg->s3_prefix : NULL);
        if (a->format == PS_FORMAT_PCAPNG && a->dir) {
            char cdir[PATH_MAX];
            snprintf(cdir, sizeof(cdir), "%s/%s", a->dir, PS_S3CACHE_DIR);
            uint64_t limit = o->cfg->s3_cache_bytes ? o->cfg->s3_cache_bytes : 1024ull << 20;
            if (ps_s3cache_open(&a->s3cache, cdir, limit, err, errlen) != 0) {
                ps_api_free(a);
                return NULL;
            }
        }
    }
    ps_snapshot_init(&a->rates_json);
    if (o->metrics) {
        ps_metric *f = ps_metrics_family(o->metrics, PS_METRIC_COUNTER,
                                         "packetstreamer_extract_requests_total",
                                         "/api/packets requests, by result.", "result");
        a->x_ok = f ? ps_metric_series(f, "ok", NULL, NULL) : NULL;
        a->x_bad = f ? ps_metric_series(f, "bad_request", NULL, NULL) : NULL;
        a->x_busy = f ? ps_metric_series(f, "busy", NULL, NULL) : NULL;
        a->x_err = f ? ps_metric_series(f, "error", NULL, NULL) : NULL;
        f = ps_metrics_family(o->metrics, PS_METRIC_COUNTER, "packetstreamer_extract_packets_total",
                              "Packets streamed by /api/packets.", NULL);
        a->x_packets = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
        f = ps_metrics_family(o->metrics, PS_METRIC_COUNTER, "packetstreamer_extract_files_total",
                              "Capture files considered by /api/packets requests: read, skipped "
                              "(ruled out by their index) or scanned (no usable index).",
                              "how");
        a->x_read = f ? ps_metric_series(f, "read", NULL, NULL) : NULL;
        a->x_skipped = f ? ps_metric_series(f, "skipped", NULL, NULL) : NULL;
        a->x_scanned = f ? ps_metric_series(f, "scanned", NULL, NULL) : NULL;
        if (a->s3cache) {
            f = ps_metrics_family(o->metrics, PS_METRIC_COUNTER,
                                  "packetstreamer_receiver_s3_query_fetched_bytes_total",
                                  "Bytes of bucket objects /api/packets fetched into its cache.",
                                  NULL);
            a->b_bytes = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
            f = ps_metrics_family(o->metrics, PS_METRIC_COUNTER,
                                  "packetstreamer_receiver_s3_query_fetched_objects_total",
                                  "Bucket objects /api/packets fetched into its cache.", NULL);
            a->b_objects = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
            f = ps_metrics_family(o->metrics, PS_METRIC_COUNTER,
                                  "packetstreamer_receiver_s3_query_scanned_total",
                                  "Bucket objects without an index in the bucket, fetched and "
                                  "scanned to plan an extraction.",
                                  NULL);
            a->b_scanned = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
            f = ps_metrics_family(o->metrics, PS_METRIC_GAUGE,
                                  "packetstreamer_receiver_s3_cache_bytes",
                                  "Bytes of bucket objects in the extraction cache "
                                  "(output.s3.cacheMB).",
                                  NULL);
            a->b_cache = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
        }
    }
    if ((dir && !a->dir) || (prefix && !a->prefix) ||
        (a->s3_on && o->s3_key_prefix && !a->s3_prefix) || !a->rates) {
        snprintf(err, errlen, "out of memory");
        ps_api_free(a);
        return NULL;
    }
    uint64_t rnd[2] = {0, 0};
    uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL);
    snprintf(a->instance, sizeof(a->instance), "%016" PRIx64 "%016" PRIx64, rnd[0], rnd[1]);
    if (o->cfg->tier_peers) {
        if (o->cfg->tier_name)
            snprintf(a->self_name, sizeof(a->self_name), "%s", o->cfg->tier_name);
        else if (gethostname(a->self_name, sizeof(a->self_name) - 1) != 0)
            snprintf(a->self_name, sizeof(a->self_name), "receiver");
        ps_tier_opts to = {.peers = o->cfg->tier_peers,
                           .instance = a->instance,
                           .token = o->cfg->http_token,
                           .refresh_sec = o->cfg->tier_refresh_sec};
        if (ps_tier_open(&a->tier, &to, err, errlen) != 0) {
            ps_api_free(a);
            return NULL;
        }
        ps_info("receiver", "tier: showing the sensors of every receiver of %s (this is %s)",
                o->cfg->tier_peers, a->self_name);
    }
    /* HTTP before the timer: a failure then frees a with no loop handle
     * pointing into it. */
    if (o->cfg->http_enable) {
        ps_http_opts ho = {.listen = o->cfg->http_listen,
                           .token = o->cfg->http_token,
                           .metrics = o->metrics,
                           .route = route,
                           .write_route = route_write,
                           .ud = a};
        ps_http_opts_from_config(&ho, o->cfg);
        if (ps_http_open(&a->http, &ho, err, errlen) != 0) {
            ps_api_free(a);
            return NULL;
        }
        ps_info("receiver", "HTTP (status, captures, live, metrics) on %s", ps_http_addr(a->http));
    }
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, on_timer, 0, API_PUBLISH_MS);
    a->timer_on = 1;
    return a;
}

int ps_api_open(ps_api **out, uv_loop_t *loop, const ps_api_opts *o, char *err, size_t errlen)
{
    ps_api *a = api_start(loop, o, err, errlen);
    if (!a)
        return -1;
    *out = a;
    return 0;
}

void ps_api_set_listening(ps_api *a, int listening)
{
    if (!a)
        return;
    a->listening = listening;
    publish(a);
}

void ps_api_stop(ps_api *a)
{
    if (a && a->timer_on) {
        uv_timer_stop(&a->timer);
        uv_close((uv_handle_t *)&a->timer, NULL);
        a->timer_on = 0;
    }
}

void ps_api_free(ps_api *a)
{
    if (!a)
        return;
    ps_livefeed_stop(a->live);     /* ends streams so the threads can be joined */
    atomic_store(&a->stopping, 1); /* and extractions */
    ps_http_free(a->http);
    ps_tier_free(a->tier); /* after the HTTP threads, which read it */
    ps_query_cleanup();
    free(a->dir);
    free(a->prefix);
    ps_snapshot_free(&a->sensors_json);
    ps_snapshot_free(&a->files_meta);
    free(a->s3_rows);
    free(a->s3_prefix);
    free(a->s3_base);
    free(a->s3_tail);
    free(a->s3_self);
    ps_s3cache_free(a->s3cache); /* after the HTTP threads: nothing is held */
    pthread_mutex_destroy(&a->s3_mu);
    ps_snapshot_free(&a->rates_json);
    free(a->rates);
    free(a);
}
