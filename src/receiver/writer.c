/*
 * writer: the record path of the receiver's capture files. Interfaces are
 * registered once and addressed by handle (an index), so the per-record
 * path is an array access, a size check and one EPB encode into the file
 * set's buffer. Where files go, their names, rotation's mechanics and
 * retention are fileset.c's; this file decides what goes into a file and
 * when a size rotation is due.
 *
 * IDBs are emitted lazily per file: each file has a generation number and
 * an interface remembers the generation it last wrote its IDB into, so
 * "reset the handle -> if_id map on rotation" is just a new generation.
 *
 * Every IDB carries snaplen PS_FILESET_SNAPLEN, the receiver's caplen limit,
 * not the sensor's: libpcap (tcpdump, Zeek, Suricata) refuses a section
 * whose IDBs disagree on snaplen, and any packet longer than its IDB's
 * snaplen, and one merged file holds interfaces of many sensors.
 *
 * Interface entries are counted references (one per session mapping the
 * handle): an entry nobody references is freed and its handle reused,
 * except while its IDB is in its set's current file, where it waits for
 * ps_writer_tick to see the file rotate, so a sensor that reconnects within
 * the file finds its interface and the file gets no second IDB for it.
 * That is what keeps a peer announcing ever new names from growing the
 * table beyond what its sessions hold (issue 13 item 3).
 *
 * A size rotation whose flush fails never fails the record (see
 * ps_fileset_rotate): the record stays buffered and ps_writer_flush(),
 * which acknowledgements wait on, reports.
 */
#include "writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcap/pcap.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/pcapng.h"
#include "fileset.h"
#include "recovery.h"

#define WR_FLUSH_AT (1u << 20)      /* flush once this much is buffered */
#define WR_BUF_HARD_MAX (64u << 20) /* refuse records past this if flushes fail */
#define WR_NS 1000000000ull

typedef struct wr_iface {
    char *sensor;
    char *ifname;
    char *desc;
    uint32_t linktype;
    ps_fileset *set;
    ps_buf idb;   /* pre-encoded IDB: identical in every file */
    uint64_t gen; /* generation of the file holding our IDB (0: none) */
    uint32_t if_id;
    uint64_t delivered;
    uint64_t meta_gen; /* generation of the file whose meta lists our sensor */
    uint32_t refs;     /* sessions mapping it; 0: freed when its IDB left the file */
    int next_free;     /* free slot list (sensor == NULL), -1 ends it */
} wr_iface;

struct ps_writer {
    ps_format format;
    int to_stdout;
    uint64_t rotate_bytes;
    ps_files *files;

    wr_iface *ifaces;
    size_t nifaces, capifaces;
    uint32_t *iface_tab;  /* open addressing on (sensor, name): handle + 1, 0 empty */
    size_t iface_tab_cap; /* power of two, at least twice nifaces */
    int free_head;        /* a free slot of ifaces, -1 none */
    size_t n_unref;       /* live entries with refs == 0 (waiting for a rotation) */
    size_t n_live;        /* entries in use */
    uint64_t packets;
    uint64_t uses; /* records taken: the sets' LRU clock (ps_fileset.last_use) */
};

static int is_pcapng(const ps_writer *w)
{
    return w->format == PS_FORMAT_PCAPNG;
}

static const char *dlt_name(uint32_t linktype)
{
    const char *n = linktype <= INT32_MAX ? pcap_datalink_val_to_name((int)linktype) : NULL;
    return n ? n : "unknown";
}

/* Emits the interface's IDB into the current file unless already there. */
static int ensure_idb(ps_fileset *s, wr_iface *f)
{
    if (f->gen == s->gen)
        return 0;
    if (ps_buf_append(&s->buf, f->idb.data, f->idb.len) != 0) {
        errno = ENOMEM;
        return -1;
    }
    s->file_bytes += f->idb.len;
    f->if_id = s->next_if_id++;
    f->gen = s->gen;
    return 0;
}

/* ---- public API ---------------------------------------------------------- */

int ps_writer_open(ps_writer **out, const ps_writer_opts *o, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!out || !o) {
        ps_errbuf(err, errlen, "output path is empty");
        errno = EINVAL;
        return -1;
    }
    ps_writer *w = calloc(1, sizeof *w);
    if (!w) {
        ps_errbuf(err, errlen, "out of memory");
        errno = ENOMEM;
        return -1;
    }
    w->format = o->format;
    w->rotate_bytes = o->rotate_bytes;
    w->free_head = -1;
    ps_files_opts fo = {.path = o->path,
                        .format = o->format,
                        .rotate_seconds = o->rotate_seconds,
                        .max_files = o->max_files,
                        .max_total_bytes = o->max_total_bytes,
                        .per_sensor = o->per_sensor,
                        .idle_close_seconds = o->idle_close_seconds,
                        .max_open_files = o->max_open_files,
                        .app = o->app,
                        .mode = o->mode,
                        .checkpoint = o->checkpoint,
                        .on_recovered = o->on_recovered,
                        .on_file_closed = o->on_file_closed,
                        .ud = o->ud};
    if (ps_files_open(&w->files, &fo, err, errlen) != 0) {
        int e = errno;
        free(w);
        errno = e;
        return -1;
    }
    w->to_stdout = ps_files_to_stdout(w->files);
    *out = w;
    return 0;
}

/* Interfaces are looked up by (sensor, name) only when announced, but every
 * reconnect of every sensor re-announces all of them: hash, not scan. */
static size_t iface_hash(const char *sensor, const char *ifname)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over "sensor\0ifname" */
    for (const char *p = sensor;; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
        if (!*p)
            break;
    }
    for (const char *p = ifname; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32));
}

static int iface_find(const ps_writer *w, const char *sensor, const char *ifname)
{
    if (!w->iface_tab_cap)
        return -1;
    size_t mask = w->iface_tab_cap - 1;
    for (size_t i = iface_hash(sensor, ifname) & mask;; i = (i + 1) & mask) {
        uint32_t v = w->iface_tab[i];
        if (!v)
            return -1;
        const wr_iface *f = &w->ifaces[v - 1];
        if (strcmp(f->ifname, ifname) == 0 && strcmp(f->sensor, sensor) == 0)
            return (int)(v - 1);
    }
}

static void iface_tab_insert(ps_writer *w, size_t idx)
{
    size_t mask = w->iface_tab_cap - 1;
    size_t i = iface_hash(w->ifaces[idx].sensor, w->ifaces[idx].ifname) & mask;
    while (w->iface_tab[i])
        i = (i + 1) & mask;
    w->iface_tab[i] = (uint32_t)idx + 1;
}

/* Makes room for one more interface, keeping the table at most half full. */
static int iface_tab_reserve(ps_writer *w)
{
    if ((w->nifaces + 1) * 2 <= w->iface_tab_cap)
        return 0;
    size_t cap = w->iface_tab_cap ? w->iface_tab_cap * 2 : 64;
    uint32_t *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return -1;
    free(w->iface_tab);
    w->iface_tab = tab;
    w->iface_tab_cap = cap;
    for (size_t i = 0; i < w->nifaces; i++)
        iface_tab_insert(w, i);
    return 0;
}

static char *dup_or_null(const char *s, int *failed)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = 1;
    return d;
}

static int encode_idb(ps_buf *out, const char *sensor, const char *ifname, const char *desc,
                      uint32_t linktype)
{
    size_t n = strlen(sensor) + 1 + strlen(ifname) + 1;
    char *name = malloc(n);
    if (!name)
        return -1;
    snprintf(name, n, "%s/%s", sensor, ifname);
    int rc = ps_pcapng_idb(out, (uint16_t)linktype, PS_FILESET_SNAPLEN, name, desc);
    free(name);
    return rc;
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int ps_writer_iface(ps_writer *w, const char *sensor, const char *ifname, const char *desc,
                    uint32_t linktype, uint32_t snaplen, char *err, size_t errlen)
{
    (void)snaplen; /* see the IDB note at the top */
    if (!w || !sensor || !ifname) {
        ps_errbuf(err, errlen, "interface without a sensor or a name");
        errno = EINVAL;
        return -1;
    }
    if (is_pcapng(w) && linktype > UINT16_MAX) {
        ps_errbuf(err, errlen, "interface %s/%s has link type %u, which pcapng cannot store",
                  sensor, ifname, linktype);
        errno = EINVAL;
        return -1;
    }

    int found = iface_find(w, sensor, ifname);
    wr_iface *f = found >= 0 ? &w->ifaces[found] : NULL;
    ps_fileset *s = f ? f->set : ps_files_set_for(w->files, sensor, err, errlen);
    if (!s)
        return -1;
    if (!is_pcapng(w) && s->has_linktype && s->linktype != linktype) {
        ps_errbuf(err, errlen,
                  "interface %s/%s has link type %u (%s) but this pcap file set holds link type "
                  "%u (%s); use --format pcapng for mixed link types",
                  sensor, ifname, linktype, dlt_name(linktype), s->linktype, dlt_name(s->linktype));
        errno = EINVAL;
        return -1;
    }

    if (f && f->refs++ == 0)
        w->n_unref--;
    if (f) {
        /* A sensor re-announcing an interface (reconnect, or the interface
         * changed): same handle; a changed description or link type gets a
         * fresh IDB in the current file rather than contradicting the old. */
        if (f->linktype == linktype && same_str(f->desc, desc))
            return (int)(f - w->ifaces);
        int failed = 0;
        char *d = dup_or_null(desc, &failed);
        ps_buf idb = PS_BUF_INIT;
        if (failed || (is_pcapng(w) && encode_idb(&idb, sensor, ifname, desc, linktype) != 0)) {
            free(d);
            ps_buf_free(&idb);
            ps_writer_iface_release(w, (int)(f - w->ifaces));
            ps_errbuf(err, errlen, "interface %s/%s: cannot encode its description", sensor,
                      ifname);
            errno = ENOMEM;
            return -1;
        }
        free(f->desc);
        f->desc = d;
        ps_buf_free(&f->idb);
        f->idb = idb;
        f->linktype = linktype;
        f->gen = 0;
        return (int)(f - w->ifaces);
    }

    if (w->free_head < 0 && w->nifaces >= INT32_MAX) {
        ps_errbuf(err, errlen, "too many interfaces");
        errno = ENOSPC;
        return -1;
    }
    if (iface_tab_reserve(w) != 0)
        goto oom;
    if (w->free_head < 0 && w->nifaces == w->capifaces) {
        size_t cap = w->capifaces ? w->capifaces * 2 : 16;
        wr_iface *p = realloc(w->ifaces, cap * sizeof *p);
        if (!p)
            goto oom;
        w->ifaces = p;
        w->capifaces = cap;
    }
    wr_iface nf = {.linktype = linktype, .set = s, .refs = 1, .next_free = -1};
    int failed = 0;
    nf.sensor = dup_or_null(sensor, &failed);
    nf.ifname = dup_or_null(ifname, &failed);
    nf.desc = dup_or_null(desc, &failed);
    if (failed || (is_pcapng(w) && encode_idb(&nf.idb, sensor, ifname, desc, linktype) != 0)) {
        free(nf.sensor);
        free(nf.ifname);
        free(nf.desc);
        ps_buf_free(&nf.idb);
        goto oom;
    }
    if (!s->has_linktype) {
        s->has_linktype = 1;
        s->linktype = linktype;
    }
    size_t idx = w->nifaces;
    if (w->free_head >= 0) {
        idx = (size_t)w->free_head;
        w->free_head = w->ifaces[idx].next_free;
    } else {
        w->nifaces++;
    }
    w->ifaces[idx] = nf;
    iface_tab_insert(w, idx);
    w->n_live++;
    return (int)idx;

oom:
    ps_errbuf(err, errlen, "interface %s/%s: out of memory (or names too long)", sensor, ifname);
    errno = ENOMEM;
    return -1;
}

/* Takes slot idx out of the hash table (linear probing: the entries after
 * it in its run move back so that every lookup still finds them). */
static void iface_tab_remove(ps_writer *w, size_t idx)
{
    size_t mask = w->iface_tab_cap - 1;
    size_t i = iface_hash(w->ifaces[idx].sensor, w->ifaces[idx].ifname) & mask;
    while (w->iface_tab[i] != idx + 1)
        i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask; w->iface_tab[j]; j = (j + 1) & mask) {
        const wr_iface *g = &w->ifaces[w->iface_tab[j] - 1];
        size_t k = iface_hash(g->sensor, g->ifname) & mask;
        /* Entry j may fill hole i unless its home k lies cyclically in (i, j]. */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            w->iface_tab[i] = w->iface_tab[j];
            i = j;
        }
    }
    w->iface_tab[i] = 0;
}

static void iface_free(ps_writer *w, size_t idx)
{
    wr_iface *f = &w->ifaces[idx];
    iface_tab_remove(w, idx);
    free(f->sensor);
    free(f->ifname);
    free(f->desc);
    ps_buf_free(&f->idb);
    memset(f, 0, sizeof(*f));
    f->next_free = w->free_head;
    w->free_head = (int)idx;
    w->n_live--;
}

/* Its IDB is in the set's open file: a reconnect within the file reuses it. */
static int idb_in_current_file(const wr_iface *f)
{
    return f->set->open && f->gen == f->set->gen;
}

void ps_writer_iface_release(ps_writer *w, int iface)
{
    if (!w || iface < 0 || (size_t)iface >= w->nifaces || !w->ifaces[iface].sensor ||
        w->ifaces[iface].refs == 0)
        return;
    wr_iface *f = &w->ifaces[iface];
    if (--f->refs > 0)
        return;
    if (idb_in_current_file(f))
        w->n_unref++; /* ps_writer_tick frees it after the file rotates */
    else
        iface_free(w, (size_t)iface);
}

size_t ps_writer_iface_count(const ps_writer *w)
{
    return w ? w->n_live : 0;
}

int ps_writer_record(ps_writer *w, int iface, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                     const uint8_t *data)
{
    if (!w || iface < 0 || (size_t)iface >= w->nifaces) {
        errno = EINVAL;
        return -1;
    }
    wr_iface *f = &w->ifaces[iface];
    ps_fileset *s = f->set;
    int ng = is_pcapng(w);
    if (!ng && ts_ns / WR_NS > UINT32_MAX) {
        errno = EOVERFLOW;
        return -1;
    }

    /* Classic pcap: rotate before a record that would take a non-empty
     * file past the limit. pcapng rotates between batches instead
     * (ps_writer_batch_end), so a batch marker never leaves its batch. */
    if (!ng && s->open && w->rotate_bytes && !w->to_stdout && s->file_packets > 0) {
        uint64_t need =
            ng ? PS_PCAPNG_EPB_OVERHEAD + (((uint64_t)caplen + 3) & ~3ull) : 16 + (uint64_t)caplen;
        if (ng && f->gen != s->gen)
            need += f->idb.len;
        if (s->file_bytes + need > w->rotate_bytes)
            ps_fileset_rotate(w->files, s);
    }
    /* While writes keep failing, memory is the limit: stop taking records
     * once a retry cannot bring the buffer back under it. */
    if (s->buf.len >= WR_BUF_HARD_MAX && ps_fileset_flush(w->files, s) != 0 &&
        s->buf.len >= WR_BUF_HARD_MAX)
        return -1;
    if (!s->open && ps_fileset_start(w->files, s) != 0)
        return -1;
    if (ng && ensure_idb(s, f) != 0)
        return -1;

    size_t before = s->buf.len;
    int rc =
        ng ? ps_pcapng_epb(&s->buf, f->if_id, ts_ns, caplen, origlen, data)
           : ps_pcap_record(&s->buf, w->format == PS_FORMAT_PCAP_NS, ts_ns, caplen, origlen, data);
    if (rc != 0) {
        errno = ENOMEM;
        return -1;
    }
    s->file_bytes += s->buf.len - before;
    s->file_packets++;
    /* The file list names each file's sensors: once per interface and file. */
    ps_fileset_note(s, ts_ns, f->meta_gen == s->gen ? NULL : f->sensor);
    f->meta_gen = s->gen;
    f->delivered++;
    w->packets++;
    s->last_use = ++w->uses;

    /* Best effort: a failure here keeps the bytes buffered and surfaces in
     * the next ps_writer_flush(), which is what acknowledgements wait for. */
    if (s->buf.len >= WR_FLUSH_AT) {
        int e = errno;
        (void)ps_fileset_flush(w->files, s);
        errno = e;
    }
    return 0;
}

int ps_writer_batch_end(ps_writer *w, int iface, const char *sensor, uint64_t session, uint64_t seq)
{
    if (!w || iface < 0 || (size_t)iface >= w->nifaces) {
        errno = EINVAL;
        return -1;
    }
    ps_fileset *s = w->ifaces[iface].set;
    if (!is_pcapng(w) || w->to_stdout || !s->open)
        return 0;
    size_t before = s->buf.len;
    if (ps_recovery_marker(&s->buf, sensor, session, seq) != 0) {
        errno = ENOMEM;
        return -1;
    }
    s->file_bytes += s->buf.len - before;
    if (w->rotate_bytes && s->file_bytes >= w->rotate_bytes)
        ps_fileset_rotate(w->files, s);
    return 0;
}

int ps_writer_iface_stats(ps_writer *w, int iface, uint64_t ts_ns, uint64_t recv, uint64_t drop,
                          uint64_t osdrop)
{
    if (!w || iface < 0 || (size_t)iface >= w->nifaces) {
        errno = EINVAL;
        return -1;
    }
    if (!is_pcapng(w))
        return 0;
    wr_iface *f = &w->ifaces[iface];
    ps_fileset *s = f->set;
    /* No current file: statistics alone do not start one (no files without
     * packets); the counters are cumulative, so the next ISB catches up. */
    if (!s->open)
        return 0;
    if (ensure_idb(s, f) != 0)
        return -1;
    ps_pcapng_isb_counters c = {
        .ts_ns = ts_ns, .recv = recv, .drop = drop, .osdrop = osdrop, .delivered = f->delivered};
    size_t before = s->buf.len;
    if (ps_pcapng_isb(&s->buf, f->if_id, &c) != 0) {
        errno = ENOMEM;
        return -1;
    }
    s->file_bytes += s->buf.len - before;
    return 0;
}

int ps_writer_flush(ps_writer *w)
{
    return w ? ps_files_flush(w->files) : 0;
}

int ps_writer_tick(ps_writer *w, uint64_t now_ns)
{
    if (!w)
        return 0;
    int rc = ps_files_tick(w->files, now_ns);
    /* Unreferenced entries whose file has rotated since (O(n), and only
     * while there are some). */
    for (size_t i = 0; w->n_unref > 0 && i < w->nifaces; i++) {
        wr_iface *f = &w->ifaces[i];
        if (f->sensor && f->refs == 0 && !idb_in_current_file(f)) {
            w->n_unref--;
            iface_free(w, i);
        }
    }
    return rc;
}

void ps_writer_get_totals(const ps_writer *w, ps_writer_totals *t)
{
    if (!t)
        return;
    ps_files_totals ft;
    ps_files_get_totals(w ? w->files : NULL, &ft);
    *t = (ps_writer_totals){.packets = w ? w->packets : 0,
                            .bytes = ft.bytes,
                            .files_closed = ft.files_closed,
                            .files_deleted = ft.files_deleted,
                            .checkpoint_failures = ft.checkpoint_failures,
                            .closed_idle = ft.closed_idle,
                            .closed_open_limit = ft.closed_open_limit,
                            .open_files = ft.open_files};
}

const char *ps_writer_dir(const ps_writer *w)
{
    return w ? ps_files_dir(w->files) : NULL;
}

const char *ps_writer_prefix(const ps_writer *w)
{
    return w ? ps_files_prefix(w->files) : NULL;
}

uint64_t ps_writer_disk_bytes(const ps_writer *w)
{
    return w ? ps_files_disk_bytes(w->files) : 0;
}

int ps_writer_files_meta(const ps_writer *w, ps_buf *out)
{
    return w ? ps_files_meta(w->files, out) : 0;
}

int ps_writer_free(ps_writer *w)
{
    if (!w)
        return 0;
    int rc = ps_files_close(w->files), e = errno;
    for (size_t i = 0; i < w->nifaces; i++) {
        wr_iface *f = &w->ifaces[i];
        free(f->sensor);
        free(f->ifname);
        free(f->desc);
        ps_buf_free(&f->idb);
    }
    free(w->ifaces);
    free(w->iface_tab);
    free(w);
    if (rc)
        errno = e;
    return rc;
}
