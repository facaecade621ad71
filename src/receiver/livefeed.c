/*
 * livefeed: per-client pcapng streams fed by the receiver loop (see livefeed.h).
 *
 * Why a byte ring per client rather than a shared queue of batches: each
 * client has its own interface numbering (IDBs are emitted the first time
 * that client sees an interface) and its own filter, so the loop encodes
 * once per client; the rings keep a slow client's backlog its own problem
 * and bound it (PS_LIVEFEED_RING_BYTES).
 */
#include "livefeed.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/http.h"
#include "core/log.h"
#include "core/pcapng.h"
#include "core/wire.h"
#include "query.h"

#define LIVE_SNAPLEN 262144u
#define LIVE_FILTER_MAX 300
#define LIVE_POLL_NS 10000000L /* consumer wait between ring checks */
#define LIVE_BLOCK 65536

typedef struct live_if {
    char *sensor, *ifname, *full, *desc;
    uint32_t linktype;
    uint32_t refs; /* ps_livefeed_iface calls not yet released */
} live_if;

typedef struct live_client {
    struct live_client *next;
    ps_livefeed *owner;
    uint8_t *ring;
    size_t cap;
    _Atomic uint64_t head; /* bytes ever produced (loop) */
    _Atomic uint64_t tail; /* bytes ever consumed (HTTP thread) */
    atomic_int cut;
    int listed;
    char *sensor, *iface;            /* filters, NULL: any; immutable */
    char *pod, *ns, *ifsel, *filter; /* /api/packets' selectors and BPF (query.h) */
    /* Loop-owned: the filter compiled per link type met, on first use. */
    struct live_prog {
        uint32_t linktype;
        int ok; /* compiled; 0: the filter does not apply to it, nothing passes */
        struct bpf_program prog;
    } * progs;
    size_t nprogs;
    /* Loop-owned: client interface id per writer handle, -1 none yet. */
    int32_t *ifid;
    size_t nifid;
    uint32_t next_ifid;
} live_client;

struct ps_livefeed {
    pthread_mutex_t mu; /* clients list */
    live_client *clients;
    atomic_int nclients;
    atomic_int stopping;
    char *app;
    live_if *ifs; /* by writer handle; loop only */
    size_t nifs;
    ps_buf scratch; /* loop only */
    ps_series *g_clients, *c_cut, *c_dropped, *c_packets;
};

ps_livefeed *ps_livefeed_new(ps_metrics *m, const char *app)
{
    ps_livefeed *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    pthread_mutex_init(&l->mu, NULL);
    l->app = strdup(app);
    ps_metric *f;
    f = ps_metrics_family(m, PS_METRIC_GAUGE, "packetstreamer_live_clients",
                          "Clients connected to /live now.", NULL);
    l->g_clients = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
    f = ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_live_clients_cut_total",
                          "/live clients cut off because they did not keep up.", NULL);
    l->c_cut = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
    f = ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_live_dropped_packets_total",
                          "Packets a /live client missed when it was cut off (the capture files "
                          "have them).",
                          NULL);
    l->c_dropped = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
    f = ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_live_packets_total",
                          "Packets queued to /live clients (a packet counts once per client).",
                          NULL);
    l->c_packets = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
    if (!l->app || !l->g_clients || !l->c_cut || !l->c_dropped || !l->c_packets) {
        ps_livefeed_free(l);
        return NULL;
    }
    return l;
}

void ps_livefeed_stop(ps_livefeed *l)
{
    if (l)
        atomic_store(&l->stopping, 1);
}

void ps_livefeed_free(ps_livefeed *l)
{
    if (!l)
        return;
    /* The HTTP server has stopped: every client's free callback ran. */
    for (size_t i = 0; i < l->nifs; i++) {
        free(l->ifs[i].sensor);
        free(l->ifs[i].ifname);
        free(l->ifs[i].full);
        free(l->ifs[i].desc);
    }
    free(l->ifs);
    ps_buf_free(&l->scratch);
    free(l->app);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ---- loop side ---- */

int ps_livefeed_iface(ps_livefeed *l, int handle, const char *sensor, const char *ifname,
                      const char *desc, uint32_t linktype)
{
    if (!l || handle < 0)
        return 0;
    if ((size_t)handle >= l->nifs) {
        size_t n = (size_t)handle + 1;
        live_if *t = realloc(l->ifs, n * sizeof(*t));
        if (!t)
            return -1;
        memset(t + l->nifs, 0, (n - l->nifs) * sizeof(*t));
        l->ifs = t;
        l->nifs = n;
    }
    live_if *f = &l->ifs[handle];
    if (f->full && strcmp(f->sensor, sensor) == 0 && strcmp(f->ifname, ifname) == 0) {
        f->refs++; /* writer handles are stable for (sensor, name) while referenced */
        return 0;
    }
    if (f->full) {
        /* A handle the writer reused for another interface (only after an
         * out-of-memory skipped a reference here): forget the old one. */
        f->refs = 1;
        ps_livefeed_iface_release(l, handle);
    }
    size_t fl = strlen(sensor) + strlen(ifname) + 2;
    f->sensor = strdup(sensor);
    f->ifname = strdup(ifname);
    f->desc = strdup(desc ? desc : "");
    f->full = malloc(fl);
    if (!f->sensor || !f->ifname || !f->desc || !f->full) {
        free(f->sensor);
        free(f->ifname);
        free(f->desc);
        free(f->full);
        memset(f, 0, sizeof(*f));
        return -1;
    }
    snprintf(f->full, fl, "%s/%s", sensor, ifname);
    f->linktype = linktype;
    f->refs = 1;
    return 0;
}

void ps_livefeed_iface_release(ps_livefeed *l, int handle)
{
    if (!l || handle < 0 || (size_t)handle >= l->nifs)
        return;
    live_if *f = &l->ifs[handle];
    if (!f->full || --f->refs > 0)
        return;
    free(f->sensor);
    free(f->ifname);
    free(f->full);
    free(f->desc);
    memset(f, 0, sizeof(*f));
    /* The writer may give this handle to another interface: every client
     * must send that one's IDB first. */
    pthread_mutex_lock(&l->mu);
    for (live_client *c = l->clients; c; c = c->next)
        if ((size_t)handle < c->nifid)
            c->ifid[handle] = -1;
    pthread_mutex_unlock(&l->mu);
}

int ps_livefeed_active(ps_livefeed *l)
{
    return l && atomic_load_explicit(&l->nclients, memory_order_relaxed) > 0;
}

static int ring_put(live_client *c, const uint8_t *p, size_t n)
{
    uint64_t head = atomic_load_explicit(&c->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&c->tail, memory_order_acquire);
    if (n > c->cap - (size_t)(head - tail))
        return -1;
    size_t at = (size_t)(head % c->cap), first = c->cap - at < n ? c->cap - at : n;
    memcpy(c->ring + at, p, first);
    memcpy(c->ring, p + first, n - first);
    atomic_store_explicit(&c->head, head + n, memory_order_release);
    return 0;
}

static int client_wants(const live_client *c, const live_if *f)
{
    if (c->sensor && strcmp(c->sensor, f->sensor) != 0)
        return 0;
    if (c->iface && strcmp(c->iface, f->ifname) != 0 && strcmp(c->iface, f->full) != 0)
        return 0;
    if (c->pod || c->ns || c->ifsel) {
        ps_query_opts o = {.pod = c->pod, .ns = c->ns, .sensor = c->sensor, .iface = c->ifsel};
        if (!ps_query_name_matches(f->full, &o))
            return 0;
    }
    return 1;
}

/* The client's filter for a link type, compiled on first use (the loop
 * thread; a few hundred microseconds once per link type and client). NULL
 * when it does not compile for it (nothing passes) or on OOM. */
static const struct bpf_program *prog_for(live_client *c, uint32_t linktype)
{
    for (size_t i = 0; i < c->nprogs; i++)
        if (c->progs[i].linktype == linktype)
            return c->progs[i].ok ? &c->progs[i].prog : NULL;
    struct live_prog *t = realloc(c->progs, (c->nprogs + 1) * sizeof(*t));
    if (!t)
        return NULL;
    c->progs = t;
    struct live_prog *p = &c->progs[c->nprogs++];
    char err[512];
    p->linktype = linktype;
    p->ok = ps_query_compile(c->filter, linktype, &p->prog, err, sizeof(err)) == 0;
    return p->ok ? &p->prog : NULL;
}

/* Encodes the batch's records for one client into l->scratch; returns the
 * packet count, or -1 on OOM. */
static long encode_for(ps_livefeed *l, live_client *c, const int *ifmap, uint32_t ifmap_len,
                       const uint8_t *raw, size_t raw_len)
{
    ps_record_iter it;
    ps_record r;
    long n = 0;
    ps_buf_reset(&l->scratch);
    ps_record_iter_init(&it, raw, raw_len);
    while (ps_record_iter_next(&it, &r) == PS_WIRE_OK) {
        if (r.iface >= ifmap_len || ifmap[r.iface] < 0 || (size_t)ifmap[r.iface] >= l->nifs)
            continue;
        size_t h = (size_t)ifmap[r.iface];
        const live_if *f = &l->ifs[h];
        if (!f->full || !client_wants(c, f))
            continue;
        if (c->filter) {
            const struct bpf_program *prog = prog_for(c, f->linktype);
            struct pcap_pkthdr ph = {.caplen = r.caplen, .len = r.origlen};
            if (!prog || pcap_offline_filter(prog, &ph, r.data) == 0)
                continue;
        }
        if (h >= c->nifid) {
            int32_t *t = realloc(c->ifid, (h + 1) * sizeof(*t));
            if (!t)
                return -1;
            for (size_t k = c->nifid; k <= h; k++)
                t[k] = -1;
            c->ifid = t;
            c->nifid = h + 1;
        }
        if (c->ifid[h] < 0) {
            if (ps_pcapng_idb(&l->scratch, (uint16_t)f->linktype, LIVE_SNAPLEN, f->full,
                              f->desc[0] ? f->desc : NULL) != 0)
                return -1;
            c->ifid[h] = (int32_t)c->next_ifid++;
        }
        if (ps_pcapng_epb(&l->scratch, (uint32_t)c->ifid[h], r.ts_ns, r.caplen, r.origlen,
                          r.data) != 0)
            return -1;
        n++;
    }
    return n;
}

void ps_livefeed_batch(ps_livefeed *l, const int *ifmap, uint32_t ifmap_len, const uint8_t *raw,
                       size_t raw_len)
{
    if (!ps_livefeed_active(l))
        return;
    pthread_mutex_lock(&l->mu);
    for (live_client *c = l->clients; c; c = c->next) {
        if (atomic_load(&c->cut))
            continue;
        long n = encode_for(l, c, ifmap, ifmap_len, raw, raw_len);
        if (n == 0)
            continue;
        if (n < 0 || ring_put(c, l->scratch.data, l->scratch.len) != 0) {
            /* Its stream would have a hole: end it rather than lie. */
            atomic_store(&c->cut, 1);
            ps_series_add(l->c_cut, 1);
            if (n > 0)
                ps_series_add(l->c_dropped, (uint64_t)n);
            ps_warn("live", "a /live client does not keep up: cut off");
            continue;
        }
        ps_series_add(l->c_packets, (uint64_t)n);
    }
    pthread_mutex_unlock(&l->mu);
}

/* ---- HTTP side ---- */

static ssize_t live_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    live_client *c = cls;
    (void)pos;
    for (;;) {
        uint64_t head = atomic_load_explicit(&c->head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&c->tail, memory_order_relaxed);
        if (head != tail) {
            size_t n = head - tail < max ? (size_t)(head - tail) : max;
            size_t at = (size_t)(tail % c->cap), first = c->cap - at < n ? c->cap - at : n;
            memcpy(buf, c->ring + at, first);
            memcpy(buf + first, c->ring, n - first);
            atomic_store_explicit(&c->tail, tail + n, memory_order_release);
            return (ssize_t)n;
        }
        if (atomic_load(&c->cut))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (atomic_load(&c->owner->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        /* Thread per connection: waiting here blocks only this client. */
        struct timespec ts = {0, LIVE_POLL_NS};
        nanosleep(&ts, NULL);
    }
}

static void client_free(live_client *c)
{
    free(c->ring);
    free(c->sensor);
    free(c->iface);
    free(c->pod);
    free(c->ns);
    free(c->ifsel);
    free(c->filter);
    for (size_t i = 0; i < c->nprogs; i++)
        if (c->progs[i].ok)
            pcap_freecode(&c->progs[i].prog);
    free(c->progs);
    free(c->ifid);
    free(c);
}

static void live_done(void *cls)
{
    live_client *c = cls;
    ps_livefeed *l = c->owner;
    pthread_mutex_lock(&l->mu);
    if (c->listed) {
        for (live_client **pp = &l->clients; *pp; pp = &(*pp)->next) {
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        }
        atomic_fetch_sub(&l->nclients, 1);
        ps_series_set(l->g_clients, (double)atomic_load(&l->nclients));
    }
    pthread_mutex_unlock(&l->mu);
    client_free(c);
}

static char *filter_arg_max(struct MHD_Connection *conn, const char *key, size_t max, int *bad)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
    if (!v || !*v)
        return NULL;
    size_t n = strnlen(v, max + 1);
    if (n > max) {
        *bad = 1;
        return NULL;
    }
    char *s = strdup(v);
    if (!s)
        *bad = 1;
    return s;
}

static char *filter_arg(struct MHD_Connection *conn, const char *key, int *bad)
{
    return filter_arg_max(conn, key, LIVE_FILTER_MAX, bad);
}

/* 400 {"error": code, "reason": reason}, as /api/packets answers. */
static int respond_json_error(struct MHD_Connection *conn, const char *code, const char *reason)
{
    ps_buf j = PS_BUF_INIT;
    int rc = ps_buf_append(&j, "{\"error\":", 9) | ps_json_str(&j, code) |
             ps_buf_append(&j, ",\"reason\":", 10) | ps_json_str(&j, reason) |
             ps_buf_append(&j, "}", 1);
    rc = rc ? ps_http_respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n")
            : ps_http_respond(conn, MHD_HTTP_BAD_REQUEST, "application/json", j.data, j.len);
    ps_buf_free(&j);
    return rc;
}

int ps_livefeed_respond(ps_livefeed *l, struct MHD_Connection *conn)
{
    if (!l || atomic_load(&l->stopping))
        return ps_http_respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down\n");
    int bad = 0;
    live_client *c = calloc(1, sizeof(*c));
    if (!c)
        return MHD_NO;
    c->owner = l;
    c->cap = PS_LIVEFEED_RING_BYTES;
    c->ring = malloc(c->cap);
    c->sensor = filter_arg(conn, "sensor", &bad);
    c->iface = filter_arg(conn, "interface", &bad);
    c->pod = filter_arg(conn, "pod", &bad);
    c->ns = filter_arg(conn, "namespace", &bad);
    c->ifsel = filter_arg(conn, "iface", &bad);
    c->filter = filter_arg_max(conn, "filter", PS_QUERY_MAX_FILTER, &bad);
    char why[PS_QUERY_MAX_FILTER + 300] = "";
    if (!bad && c->pod) {
        const char *slash = strchr(c->pod, '/');
        if (!slash || slash == c->pod || !slash[1] || strchr(slash + 1, '/'))
            snprintf(why, sizeof(why), "pod: \"%.200s\" is not NAMESPACE/NAME", c->pod);
    }
    if (!bad && !why[0] && c->filter) {
        /* Checked now against Ethernet so a typo is a 400, not a silent
         * stream; compiled again per link type as interfaces appear. */
        struct bpf_program prog;
        int k = ps_query_compile(c->filter, DLT_EN10MB, &prog, why, sizeof(why));
        if (k == 0)
            pcap_freecode(&prog);
        else if (k != PS_QUERY_E_FILTER)
            bad = 1;
    }
    if (why[0]) {
        int is_filter = strncmp(why, "filter", 6) == 0;
        client_free(c);
        return respond_json_error(conn, is_filter ? "bad_filter" : "bad_selector", why);
    }
    ps_buf shb = PS_BUF_INIT;
    if (!c->ring || bad || ps_pcapng_shb(&shb, l->app, NULL) != 0 ||
        ring_put(c, shb.data, shb.len) != 0) {
        ps_buf_free(&shb);
        client_free(c);
        return ps_http_respond_text(conn, MHD_HTTP_BAD_REQUEST, "bad filter or out of memory\n");
    }
    ps_buf_free(&shb);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, LIVE_BLOCK, live_read, c, live_done);
    if (!r) {
        client_free(c);
        return MHD_NO;
    }
    pthread_mutex_lock(&l->mu);
    int full = atomic_load(&l->nclients) >= PS_LIVEFEED_MAX_CLIENTS;
    if (!full) {
        c->next = l->clients;
        l->clients = c;
        c->listed = 1;
        atomic_fetch_add(&l->nclients, 1);
        ps_series_set(l->g_clients, (double)atomic_load(&l->nclients));
    }
    pthread_mutex_unlock(&l->mu);
    if (full) {
        MHD_destroy_response(r); /* frees c through live_done */
        return ps_http_respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "too many /live clients\n");
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-pcapng");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    int rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r); /* the connection keeps its reference */
    return rc;
}
