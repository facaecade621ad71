/*
 * query: file selection, pcapng reading, BPF filtering and the k-way merge
 * of GET /api/packets (see query.h).
 *
 * Why one stream per (file, interface) and not per file: a file of a
 * shared file set interleaves the batches of every sensor as they arrived,
 * so its packets are not in time order (offline sensors may send an hour in
 * a second); one interface's packets are. Streams of one file share its
 * descriptor but each reads through its own window, so a query for one pod
 * reads each file once, and a query for everything reads a file once per
 * interface (from the page cache after the first). A per-file reorder
 * buffer was rejected: no bound on it is right for every sender.
 *
 * Why everything is decided at open: response headers (the number of
 * matching interfaces, files read) go out before the first packet, and a
 * bad filter must be a 400, not a cut stream.
 *
 * Classic pcap files hold no interface names and a single link type; the
 * receiver refuses extraction with --format pcap (api.c), and pcap files
 * left in a pcapng directory are ignored.
 */
#include "query.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/pcapng.h"
#include "filename.h"
#include "index.h"
#include "pcapread.h"

#define Q_NS 1000000000ull
#define Q_MAX_FILES 1000000

/* libpcap's compiler is not reentrant in every version we build against. */
static pthread_mutex_t compile_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct q_file {
    char *name;          /* as listed; a .part may since have been renamed */
    uint64_t start, end; /* the bytes that can hold packets of the window */
    int fd, refs;        /* shared by its open streams */
} q_file;

typedef struct q_out {
    char *name, *desc;
    uint32_t linktype, snaplen;
    int32_t out_id; /* -1 until its IDB is written */
    int filter;     /* index into q->filters, -1 none */
} q_out;

typedef struct q_filter {
    uint32_t linktype;
    int ok; /* compiled; 0: not for this link type, its interfaces pass nothing */
    struct bpf_program prog;
} q_filter;

enum { ST_PENDING, ST_OPEN, ST_DONE };

typedef struct q_stream {
    uint32_t file, if_id, out;
    uint8_t tsresol;
    uint8_t state;
    uint64_t key; /* ST_PENDING: a lower bound of its timestamps; ST_OPEN: cur's */
    ps_pcapread r;
    ps_pcapread_epb cur;
} q_stream;

struct ps_query {
    char *dir;
    ps_query_opts o;
    q_file *files;
    size_t nfiles;
    q_out *outs;
    size_t nouts, capouts;
    q_filter *filters;
    size_t nfilters;
    q_stream *streams;
    size_t nstreams, capstreams;
    uint32_t *heap; /* stream indices, min-heap on (key, index) */
    size_t nheap;
    uint32_t next_out_id;
    ps_buf out;
    size_t window; /* read size per open stream */
    int started, done, failed;
    ps_query_stats st;
};

/* ---- pure helpers ---- */

static int ends_with_component(const char *name, const char *suffix)
{
    size_t nl = strlen(name), sl = strlen(suffix);
    /* "X/" + suffix with X non-empty */
    return sl > 0 && nl >= sl + 2 && name[nl - sl - 1] == '/' &&
           memcmp(name + nl - sl, suffix, sl) == 0;
}

int ps_query_name_matches(const char *name, const ps_query_opts *o)
{
    if (o->pod && !ends_with_component(name, o->pod))
        return 0;
    if (o->ns) {
        const char *last = strrchr(name, '/');
        if (!last || last == name)
            return 0;
        const char *prev = last - 1;
        while (prev > name && *prev != '/')
            prev--;
        size_t nl = strlen(o->ns);
        if (prev == name || (size_t)(last - prev - 1) != nl || memcmp(prev + 1, o->ns, nl) != 0)
            return 0;
    }
    size_t sl = o->sensor ? strlen(o->sensor) : 0;
    if (o->sensor && (strncmp(name, o->sensor, sl) != 0 || name[sl] != '/' || name[sl + 1] == '\0'))
        return 0;
    if (o->iface) {
        if (o->sensor ? strcmp(name + sl + 1, o->iface) != 0 : !ends_with_component(name, o->iface))
            return 0;
    }
    return 1;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int month_days(int y, int m)
{
    static const int md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : md[m - 1];
}

static int parse_rfc3339(const char *s, uint64_t *out)
{
    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
        digits(&p, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || sec > 60)
        return -1;
    uint64_t frac = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n < 9)
                frac = frac * 10 + (uint64_t)(*p - '0');
            n++;
            p++;
        }
        if (n == 0)
            return -1;
        for (; n < 9; n++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
    int64_t secs =
        days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off;
    if (secs < 0 || (uint64_t)secs > (UINT64_MAX - frac) / Q_NS)
        return -1;
    *out = (uint64_t)secs * Q_NS + frac;
    return 0;
}

/* "5m", "1h30m", "250ms": nanoseconds. */
static int parse_duration(const char *p, uint64_t *out)
{
    static const struct {
        const char *u;
        uint64_t ns;
    } units[] = {{"ns", 1},        {"us", 1000},       {"ms", 1000000},    {"s", Q_NS},
                 {"m", 60 * Q_NS}, {"h", 3600 * Q_NS}, {"d", 86400 * Q_NS}};
    uint64_t total = 0;
    if (*p == '\0')
        return -1;
    while (*p) {
        uint64_t v = 0;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (v > UINT64_MAX / 10)
                return -1;
            v = v * 10 + (uint64_t)(*p++ - '0');
            n++;
        }
        if (n == 0)
            return -1;
        size_t best = 0, bl = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t ul = strlen(units[i].u);
            if (strncmp(p, units[i].u, ul) == 0 && ul > bl) {
                best = i;
                bl = ul;
            }
        }
        if (bl == 0)
            return -1;
        p += bl;
        if (v > (UINT64_MAX - total) / units[best].ns)
            return -1;
        total += v * units[best].ns;
    }
    *out = total;
    return 0;
}

int ps_query_parse_time(const char *s, uint64_t now_ns, uint64_t *out, char *err, size_t errlen)
{
    if (!s || !*s) {
        snprintf(err, errlen, "empty");
        return -1;
    }
    const char *rel = NULL;
    if (strcmp(s, "now") == 0) {
        *out = now_ns;
        return 0;
    }
    if (s[0] == '-')
        rel = s + 1;
    else if (strncmp(s, "now-", 4) == 0)
        rel = s + 4;
    if (rel) {
        uint64_t d;
        if (parse_duration(rel, &d) != 0) {
            snprintf(err, errlen,
                     "\"%.64s\" is not a duration before now (like -5m, -90s, -2h, -1h30m)", s);
            return -1;
        }
        *out = d > now_ns ? 0 : now_ns - d;
        return 0;
    }
    if (parse_rfc3339(s, out) != 0) {
        snprintf(err, errlen,
                 "\"%.64s\" is not an RFC 3339 time (like 2026-12-05T07:30:00.5Z or "
                 "2026-12-05T08:30:00+01:00), \"now\" or a duration before now (like -5m)",
                 s);
        return -1;
    }
    return 0;
}

/* ---- the heap ---- */

static int before(const ps_query *q, uint32_t a, uint32_t b)
{
    uint64_t ka = q->streams[a].key, kb = q->streams[b].key;
    return ka < kb || (ka == kb && a < b);
}

static void heap_push(ps_query *q, uint32_t s)
{
    size_t i = q->nheap++;
    q->heap[i] = s;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(q, q->heap[i], q->heap[p]))
            break;
        uint32_t t = q->heap[i];
        q->heap[i] = q->heap[p];
        q->heap[p] = t;
        i = p;
    }
}

static uint32_t heap_pop(ps_query *q)
{
    uint32_t top = q->heap[0];
    q->heap[0] = q->heap[--q->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->nheap && before(q, q->heap[l], q->heap[m]))
            m = l;
        if (r < q->nheap && before(q, q->heap[r], q->heap[m]))
            m = r;
        if (m == i)
            break;
        uint32_t t = q->heap[i];
        q->heap[i] = q->heap[m];
        q->heap[m] = t;
        i = m;
    }
    return top;
}

/* ---- open: files, interfaces, filters ---- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_name(char **names, size_t n, const char *want)
{
    return bsearch(&want, names, n, sizeof(char *), name_cmp) != NULL;
}

/* The directory's pcapng capture files, sorted; "X.part" is left out when
 * "X" is listed too (renamed while we read the directory). */
static int list_files(const char *dir, const char *prefix, char ***out, size_t *nout, char *err,
                      size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int oom = 0;
    while ((e = readdir(d)) != NULL && n < Q_MAX_FILES) {
        ps_fname f;
        if (ps_fname_parse(e->d_name, prefix, &f) != 0 || !f.pcapng)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **t = realloc(names, nc * sizeof(*t));
            if (!t) {
                oom = 1;
                break;
            }
            names = t;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) {
            oom = 1;
            break;
        }
        n++;
    }
    closedir(d);
    if (oom) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    size_t w = 0, pl = strlen(PS_FNAME_PART);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (l > pl && strcmp(names[i] + l - pl, PS_FNAME_PART) == 0) {
            char *final = strndup(names[i], l - pl);
            int dup = final && has_name(names, n, final);
            free(final);
            if (dup) {
                free(names[i]);
                continue;
            }
        }
        names[w++] = names[i];
    }
    *out = names;
    *nout = w;
    return 0;
}

static int find_out(ps_query *q, const ps_index_iface *f)
{
    for (size_t i = 0; i < q->nouts; i++)
        if (q->outs[i].linktype == f->linktype && strcmp(q->outs[i].name, f->name) == 0) {
            if (f->snaplen > q->outs[i].snaplen)
                q->outs[i].snaplen = f->snaplen;
            return (int)i;
        }
    if (q->nouts == q->capouts) {
        size_t nc = q->capouts ? q->capouts * 2 : 16;
        q_out *t = realloc(q->outs, nc * sizeof(*t));
        if (!t)
            return -1;
        q->outs = t;
        q->capouts = nc;
    }
    q_out *o = &q->outs[q->nouts];
    o->name = strdup(f->name);
    o->desc = strdup(f->desc ? f->desc : "");
    if (!o->name || !o->desc) {
        free(o->name);
        free(o->desc);
        return -1;
    }
    o->linktype = f->linktype;
    o->snaplen = f->snaplen ? f->snaplen : 262144;
    o->out_id = -1;
    o->filter = -1;
    return (int)q->nouts++;
}

static int add_stream(ps_query *q, uint32_t file, uint32_t if_id, const ps_index_iface *f, int out)
{
    if (q->nstreams >= PS_QUERY_MAX_STREAMS)
        return PS_QUERY_E_LIMIT;
    if (q->nstreams == q->capstreams) {
        size_t nc = q->capstreams ? q->capstreams * 2 : 64;
        q_stream *t = realloc(q->streams, nc * sizeof(*t));
        if (!t)
            return -1;
        q->streams = t;
        q->capstreams = nc;
    }
    q_stream *s = &q->streams[q->nstreams++];
    memset(s, 0, sizeof(*s));
    s->file = file;
    s->if_id = if_id;
    s->out = (uint32_t)out;
    s->tsresol = f->tsresol;
    s->state = ST_PENDING;
    s->key = f->first_ns > q->o.from_ns ? f->first_ns : q->o.from_ns;
    s->r.fd = -1;
    return 0;
}

/* ---- .part files: scans kept between requests ---- */

/* A .part file only grows (the writer appends; recovery cuts only before
 * the receiver serves), so the scan of one request is continued by the
 * next from where it stopped instead of starting over: a query's cost for
 * the file being written is what was appended since the last one. Keyed
 * by path and inode (a new file under the same name starts over); the
 * least recently used of Q_PART_CACHE entries goes. */
#define Q_PART_CACHE 64

typedef struct part_entry {
    char *path;
    dev_t dev;
    ino_t ino;
    uint64_t used;
    ps_index x;
} part_entry;

static pthread_mutex_t part_mu = PTHREAD_MUTEX_INITIALIZER;
static part_entry part_cache[Q_PART_CACHE]; /* under part_mu */
static uint64_t part_clock;

static void part_drop(part_entry *e)
{
    free(e->path);
    ps_index_free(&e->x);
    memset(e, 0, sizeof(*e));
}

void ps_query_cleanup(void)
{
    pthread_mutex_lock(&part_mu);
    for (size_t i = 0; i < Q_PART_CACHE; i++)
        part_drop(&part_cache[i]);
    pthread_mutex_unlock(&part_mu);
}

/* Fills *x for the .part at path: 0, 1 if it cannot be read (errno ENOENT
 * when it is gone), -1 on OOM. */
static int scan_part(const char *path, ps_index *x)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        errno = e;
        return 1;
    }
    char err[256];
    int rc = 0;
    pthread_mutex_lock(&part_mu);
    part_entry *e = NULL, *victim = NULL;
    for (size_t i = 0; i < Q_PART_CACHE && !e; i++) {
        part_entry *c = &part_cache[i];
        if (c->path && strcmp(c->path, path) == 0)
            e = c;
        else if (!victim || (victim->path && (!c->path || c->used < victim->used)))
            victim = c;
    }
    if (e && (e->dev != st.st_dev || e->ino != st.st_ino || e->x.data_end > (uint64_t)st.st_size)) {
        part_drop(e); /* another file under this name */
        victim = e;
        e = NULL;
    }
    if (e) {
        if (ps_index_scan_more(fd, (uint64_t)st.st_size, PS_INDEX_CHUNK, &e->x, err, sizeof(err)) !=
            0) {
            part_drop(e);
            rc = 1;
        }
    } else {
        e = victim;
        part_drop(e);
        if (ps_index_scan(fd, (uint64_t)st.st_size, PS_INDEX_CHUNK, &e->x, err, sizeof(err)) != 0)
            rc = errno == ENOMEM ? -1 : 1;
        else if (!(e->path = strdup(path))) {
            ps_index_free(&e->x);
            rc = -1;
        } else {
            e->dev = st.st_dev;
            e->ino = st.st_ino;
        }
    }
    if (rc == 0) {
        e->used = ++part_clock;
        if (ps_index_dup(&e->x, x) != 0)
            rc = -1;
    }
    pthread_mutex_unlock(&part_mu);
    close(fd);
    errno = rc == 1 ? EINVAL : rc < 0 ? ENOMEM : 0;
    return rc;
}

/* The index of DIR/NAME (stored, or scanned now). 0, 1 if the file is gone
 * or unreadable (skipped), -1 on OOM. *name may change to the final name of
 * a .part renamed since the listing. */
static int describe(ps_query *q, char **name, ps_index *x)
{
    char path[PATH_MAX], err[PATH_MAX + 128];
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", q->dir, *name) >= sizeof(path))
            return 1;
        struct stat st;
        size_t nl = strlen(*name), pl = strlen(PS_FNAME_PART);
        int part = nl > pl && strcmp(*name + nl - pl, PS_FNAME_PART) == 0;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (!part && ps_index_load(q->dir, *name, (uint64_t)st.st_size, x) == 0)
                return 0;
            q->st.files_scanned++;
            if (part) {
                int k = scan_part(path, x);
                if (k <= 0)
                    return k;
            } else if (ps_index_build(q->dir, *name, x, err, sizeof(err)) >= 0) {
                return 0; /* saved or not: this request has what it needs */
            }
            if (errno == ENOMEM)
                return -1;
            if (errno != ENOENT)
                return 1;
        } else if (errno != ENOENT || !part) {
            return 1;
        }
        if (!part)
            return 1;
        (*name)[nl - pl] = '\0'; /* completed meanwhile: read it under its final name */
    }
    return 1;
}

int ps_query_compile(const char *filter, uint32_t linktype, struct bpf_program *prog, char *err,
                     size_t errlen)
{
    pthread_mutex_lock(&compile_mu);
    pcap_t *p =
        pcap_open_dead_with_tstamp_precision((int)linktype, 262144, PCAP_TSTAMP_PRECISION_NANO);
    int rc = -1;
    if (!p) {
        snprintf(err, errlen, "out of memory");
    } else if (pcap_compile(p, prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
        const char *name = pcap_datalink_val_to_name((int)linktype);
        snprintf(err, errlen, "filter \"%.200s\" (link type %s): %s", filter,
                 name ? name : "unknown", pcap_geterr(p));
        rc = PS_QUERY_E_FILTER;
    } else {
        rc = 0;
    }
    if (p)
        pcap_close(p);
    pthread_mutex_unlock(&compile_mu);
    return rc;
}

static int compile_one(ps_query *q, uint32_t linktype, struct bpf_program *prog, char *err,
                       size_t errlen)
{
    return ps_query_compile(q->o.filter, linktype, prog, err, errlen);
}

/* The filter compiled once per link type of the selected interfaces. One
 * that compiles for some link types but not others (a "vlan" filter on a
 * raw-IP interface) keeps the others' packets only; one that compiles for
 * none is the request's error. */
static int compile_filters(ps_query *q, char *err, size_t errlen)
{
    if (!q->o.filter || !*q->o.filter)
        return 0;
    q->filters = calloc(q->nouts + 1, sizeof(*q->filters));
    if (!q->filters) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int any = 0;
    char first[1024] = "";
    for (size_t i = 0; i < q->nouts; i++) {
        size_t k = 0;
        while (k < q->nfilters && q->filters[k].linktype != q->outs[i].linktype)
            k++;
        if (k == q->nfilters) {
            char why[1024];
            int rc = compile_one(q, q->outs[i].linktype, &q->filters[k].prog, why, sizeof(why));
            if (rc != 0 && rc != PS_QUERY_E_FILTER) {
                snprintf(err, errlen, "%s", why);
                return rc;
            }
            q->filters[k].linktype = q->outs[i].linktype;
            q->filters[k].ok = rc == 0;
            if (rc != 0 && !first[0])
                snprintf(first, sizeof(first), "%s", why);
            q->nfilters++;
        }
        q->outs[i].filter = (int)k;
        any |= q->filters[k].ok;
    }
    if (q->nouts > 0 && !any) {
        snprintf(err, errlen, "%s", first);
        return PS_QUERY_E_FILTER;
    }
    if (q->nouts == 0) { /* nothing to read: still tell a bad filter apart */
        struct bpf_program prog;
        int rc = compile_one(q, DLT_EN10MB, &prog, err, errlen);
        if (rc == 0)
            pcap_freecode(&prog);
        return rc;
    }
    return 0;
}

/* From the first chunk with a packet at or after from to the end of the
 * last chunk with a packet at or before to: the other chunks hold only
 * packets outside the window, whatever the order inside the file. */
static void window_bytes(const ps_index *x, uint64_t from, uint64_t to, uint64_t *start,
                         uint64_t *end)
{
    *start = 0;
    *end = x->data_end;
    size_t first = x->nchunks, last = x->nchunks;
    for (size_t i = 0; i < x->nchunks; i++) {
        const ps_index_chunk *c = &x->chunks[i];
        if (c->packets == 0 || c->last_ns < from || c->first_ns > to)
            continue;
        if (first == x->nchunks)
            first = i;
        last = i;
    }
    if (first == x->nchunks)
        return; /* no chunk says (an index without chunks): read it all */
    *start = x->chunks[first].offset;
    *end = last + 1 < x->nchunks ? x->chunks[last + 1].offset : x->data_end;
}

static int select_files(ps_query *q, const char *prefix, char *err, size_t errlen)
{
    char **names = NULL;
    size_t n = 0;
    if (list_files(q->dir, prefix, &names, &n, err, errlen) != 0)
        return -1;
    int rc = 0;
    q->files = calloc(n ? n : 1, sizeof(*q->files));
    char **seen = NULL; /* distinct matching names, for ifaces_named */
    size_t nseen = 0, capseen = 0;
    if (!q->files)
        rc = -1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        ps_index x;
        q->st.files++;
        int d = describe(q, &names[i], &x);
        if (d < 0) {
            rc = -1;
            break;
        }
        if (d > 0)
            continue;
        int overlaps = x.packets > 0 && x.first_ns <= q->o.to_ns && x.last_ns >= q->o.from_ns;
        size_t before_streams = q->nstreams;
        for (size_t k = 0; k < x.nifs && rc == 0; k++) {
            const ps_index_iface *f = &x.ifs[k];
            if (!ps_query_name_matches(f->name, &q->o))
                continue;
            int known = 0;
            for (size_t j = 0; j < nseen && !known; j++)
                known = strcmp(seen[j], f->name) == 0;
            if (!known) {
                if (nseen == capseen) {
                    size_t nc = capseen ? capseen * 2 : 16;
                    char **t = realloc(seen, nc * sizeof(*t));
                    if (!t) {
                        rc = -1;
                        break;
                    }
                    seen = t;
                    capseen = nc;
                }
                if (!(seen[nseen] = strdup(f->name))) {
                    rc = -1;
                    break;
                }
                nseen++;
            }
            if (!overlaps || f->packets == 0 || f->first_ns > q->o.to_ns ||
                f->last_ns < q->o.from_ns)
                continue;
            int out = find_out(q, f);
            rc = out < 0 ? -1 : add_stream(q, (uint32_t)q->nfiles, (uint32_t)k, f, out);
        }
        if (rc == 0 && q->nstreams > before_streams) {
            q_file *qf = &q->files[q->nfiles++];
            qf->name = names[i];
            names[i] = NULL;
            window_bytes(&x, q->o.from_ns, q->o.to_ns, &qf->start, &qf->end);
            qf->fd = -1;
            q->st.files_read++;
        } else {
            q->st.files_skipped++;
        }
        ps_index_free(&x);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    for (size_t j = 0; j < nseen; j++)
        free(seen[j]);
    free(seen);
    q->st.ifaces_named = (unsigned)nseen;
    if (rc == PS_QUERY_E_LIMIT)
        snprintf(err, errlen,
                 "the request would merge more than %d (file, interface) streams: narrow the "
                 "window or the selection",
                 PS_QUERY_MAX_STREAMS);
    else if (rc != 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

int ps_query_open(ps_query **out, const char *dir, const char *prefix, const ps_query_opts *o,
                  char *err, size_t errlen)
{
    ps_query *q = calloc(1, sizeof(*q));
    if (!q || !(q->dir = strdup(dir))) {
        free(q);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* The strings are used during open only (selection, compilation, the
     * SHB): they are not copied, and forgotten before returning. */
    q->o = *o;
    int rc = select_files(q, prefix, err, errlen);
    if (rc == 0)
        rc = compile_filters(q, err, errlen);
    if (rc == 0 && q->nstreams) {
        q->heap = malloc(q->nstreams * sizeof(*q->heap));
        if (!q->heap) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
        for (size_t i = 0; rc == 0 && i < q->nstreams; i++)
            heap_push(q, (uint32_t)i);
    }
    if (rc == 0 && ps_pcapng_shb(&q->out, o->app ? o->app : "packetstreamer", NULL) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    q->o.pod = q->o.ns = q->o.sensor = q->o.iface = q->o.filter = q->o.app = NULL;
    q->st.streams = (unsigned)q->nstreams;
    /* Many streams (many interfaces or sensors) share a memory budget:
     * smaller windows rather than more memory. */
    q->window = PS_QUERY_WINDOW;
    if (q->nstreams > PS_QUERY_MEMORY / PS_QUERY_WINDOW)
        q->window = PS_QUERY_MEMORY / q->nstreams < 8192 ? 8192 : PS_QUERY_MEMORY / q->nstreams;
    if (rc != 0) {
        ps_query_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

void ps_query_get_stats(const ps_query *q, ps_query_stats *st)
{
    *st = q->st;
}

/* ---- reading ---- */

static void stream_close(ps_query *q, q_stream *s)
{
    if (s->state == ST_OPEN) {
        q_file *f = &q->files[s->file];
        q->st.bytes_read += s->r.off > f->start ? s->r.off - f->start : 0;
        ps_pcapread_free(&s->r);
        if (--f->refs == 0 && f->fd >= 0) {
            close(f->fd);
            f->fd = -1;
        }
    }
    s->state = ST_DONE;
}

/* Opens the stream's file (shared) and reader. 0, 1 if the file is gone
 * (the stream ends), -1 on error. */
static int stream_open(ps_query *q, q_stream *s)
{
    q_file *f = &q->files[s->file];
    if (f->fd < 0) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", q->dir, f->name);
        f->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        size_t nl = strlen(f->name), pl = strlen(PS_FNAME_PART);
        if (f->fd < 0 && errno == ENOENT && nl > pl &&
            strcmp(f->name + nl - pl, PS_FNAME_PART) == 0) {
            path[strlen(path) - pl] = '\0'; /* completed since: same bytes, final name */
            f->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        }
        if (f->fd < 0) {
            s->state = ST_DONE;
            return errno == ENOENT ? 1 : -1; /* deleted by retention meanwhile */
        }
    }
    f->refs++;
    s->state = ST_OPEN;
    if (ps_pcapread_init(&s->r, f->fd, f->end, q->window) != 0) {
        int e = errno;
        stream_close(q, s);
        return e == ENOMEM || e == EIO ? -1 : 1;
    }
    if (f->start > 0)
        ps_pcapread_seek(&s->r, f->start);
    return 0;
}

/* Moves the stream to its next packet: 1 (s->cur, s->key set), 0 at its
 * end (closed), -1 on a read error. */
static int stream_next(ps_query *q, q_stream *s)
{
    ps_pcapread_block b;
    int k;
    const q_out *o = &q->outs[s->out];
    const struct bpf_program *prog = o->filter >= 0 ? &q->filters[o->filter].prog : NULL;
    if (o->filter >= 0 && !q->filters[o->filter].ok) {
        stream_close(q, s); /* the filter does not apply to its link type */
        return 0;
    }
    while ((k = ps_pcapread_next(&s->r, &b)) == 1) {
        if (b.type != PS_PCAPNG_EPB)
            continue;
        ps_pcapread_epb e;
        if (ps_pcapread_parse_epb(b.data, b.len, &e) != 0 || e.if_id != s->if_id)
            continue;
        uint64_t ns = ps_pcapread_ts_ns(e.ts, s->tsresol);
        if (ns > q->o.to_ns) {
            if (ns - q->o.to_ns > PS_QUERY_DISORDER_NS)
                break;
            continue;
        }
        if (ns < q->o.from_ns)
            continue;
        if (prog) {
            struct pcap_pkthdr h = {.caplen = e.caplen, .len = e.origlen};
            if (pcap_offline_filter(prog, &h, e.data) == 0)
                continue;
        }
        s->cur = e;
        s->key = ns;
        return 1;
    }
    stream_close(q, s);
    return k < 0 ? -1 : 0;
}

/* One step of the merge: a stream opened, or a packet appended to q->out.
 * 0, or -1 on error. */
static int step(ps_query *q)
{
    if (q->nheap == 0 || (q->o.limit && q->st.packets >= q->o.limit)) {
        q->done = 1;
        return 0;
    }
    uint32_t si = heap_pop(q);
    q_stream *s = &q->streams[si];
    int k;
    if (s->state == ST_PENDING) {
        k = stream_open(q, s);
        if (k != 0)
            return k < 0 ? -1 : 0;
        k = stream_next(q, s);
        if (k == 1)
            heap_push(q, si);
        return k < 0 ? -1 : 0;
    }
    q_out *o = &q->outs[s->out];
    if (o->out_id < 0) {
        if (ps_pcapng_idb(&q->out, (uint16_t)o->linktype, o->snaplen, o->name,
                          o->desc[0] ? o->desc : NULL) != 0)
            return -1;
        o->out_id = (int32_t)q->next_out_id++;
    }
    if (ps_pcapng_epb(&q->out, (uint32_t)o->out_id, s->key, s->cur.caplen, s->cur.origlen,
                      s->cur.data) != 0)
        return -1;
    q->st.packets++;
    k = stream_next(q, s);
    if (k == 1)
        heap_push(q, si);
    return k < 0 ? -1 : 0;
}

ssize_t ps_query_read(ps_query *q, uint8_t *buf, size_t max)
{
    /* The first call returns the Section Header Block alone: the client
     * sees the stream start while the first packets are still being read. */
    while (q->started && q->out.len < max && !q->done && !q->failed)
        if (step(q) != 0)
            q->failed = 1;
    if (q->out.len == 0)
        return q->failed ? -1 : 0;
    size_t n = q->out.len < max ? q->out.len : max;
    memcpy(buf, q->out.data, n);
    ps_buf_consume(&q->out, n);
    q->started = 1;
    return (ssize_t)n;
}

void ps_query_free(ps_query *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->nstreams; i++)
        stream_close(q, &q->streams[i]);
    for (size_t i = 0; i < q->nfiles; i++) {
        if (q->files[i].fd >= 0)
            close(q->files[i].fd);
        free(q->files[i].name);
    }
    for (size_t i = 0; i < q->nouts; i++) {
        free(q->outs[i].name);
        free(q->outs[i].desc);
    }
    for (size_t i = 0; i < q->nfilters; i++)
        if (q->filters[i].ok)
            pcap_freecode(&q->filters[i].prog);
    free(q->filters);
    free(q->outs);
    free(q->files);
    free(q->streams);
    free(q->heap);
    ps_buf_free(&q->out);
    free(q->dir);
    free(q);
}
