/*
 * query: file selection, pcapng reading, BPF filtering and the k-way merge
 * of GET /api/packets (see query.h).
 *
 * Why one stream per (file, interface) and not per file: a file of a
 * shared file set interleaves the batches of every sensor as they arrived,
 * so its packets are not in time order (offline sensors may send an hour in
 * a second); one interface's packets are. A per-file reorder buffer was
 * rejected: no bound on it is right for every sender.
 *
 * Why a scanner per file feeding the streams queues of offsets: when each
 * stream read the file through its own window, a query for every interface
 * read (pread, a copy from the page cache) and parsed each block once per
 * interface: 33 times in bench/extract.py, 4.6 GB of copies for 133 MB of
 * output (docs/performance.md). Now the blocks are read once into a window
 * the file's streams share, and the scanner walks them once, queueing each
 * packet's offset for its stream; a stream looks only at its own blocks.
 * Offsets rather than pointers or copies, because the window moves: a
 * stream's block is fetched again when it is written, from the shared
 * window when it is still there, from the stream's own window otherwise.
 * The queues are bounded: a stream whose queue is full leaves the scanner
 * and scans on its own, as every stream used to, so one interface far
 * behind the others costs reads, not memory. Packets are written straight
 * into the HTTP server's buffer (ps_query_read), not assembled in a
 * buffer of ours first.
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
#include "core/strvec.h"
#include "filename.h"
#include "index.h"
#include "pcapread.h"

#define Q_NS 1000000000ull
#define Q_MAX_FILES 1000000

/* libpcap's compiler is not reentrant in every version we build against. */
static pthread_mutex_t compile_mu = PTHREAD_MUTEX_INITIALIZER;

/* Bytes [off, off + len) of a file. */
typedef struct q_win {
    uint8_t *buf;
    size_t cap, len;
    uint64_t off;
} q_win;

typedef struct q_file {
    char *name;            /* as listed; a .part may since have been renamed */
    char *path;            /* where to read it: NULL DIR/name; a fetched or refetched copy */
    uint64_t size;         /* its index's: a refetched copy holds at least this */
    int remote;            /* a remote file (opts.src): fetched at open */
    uint64_t start, end;   /* the bytes that can hold packets of the window */
    int fd, refs;          /* shared by its open streams */
    uint32_t first, nstrm; /* its streams: q->streams[first, first + nstrm) */
    q_win win;             /* shared by its open streams (allocated while refs > 0) */
    uint64_t scan;         /* the scanner's next block (see scan_for) */
    int scan_state;        /* 0 running, 1 at the end, -1 read error */
    uint32_t *map, nmap;   /* if_id -> stream, UINT32_MAX none (once opened) */
    q_win sown;            /* the scanner's own window, when behind the shared one */
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
    uint32_t curlen; /* ST_OPEN: length of the current packet's block at pos, 0 none */
    uint64_t pos;    /* ST_OPEN: offset of that block, or of the next block to look at */
    uint64_t key;    /* ST_PENDING: a lower bound of its timestamps; ST_OPEN: the packet's */
    q_win own;       /* while pos is behind the file's shared window */
    uint64_t *qo;    /* offsets of its blocks found by the file's scanner: qo[qhead, +qlen) */
    uint32_t qcap, qhead, qlen;
    uint8_t detached; /* its queue hit q->qmax: reads on its own from dpos */
    uint64_t dpos;
} q_stream;

struct ps_query {
    char *dir;
    ps_query_opts o;
    int (*refetch)(void *ud, const char *name, uint64_t min_size, char *path, size_t pathlen);
    void *src_ud;
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
    size_t window;                  /* read size of a stream's own window */
    size_t shared_max, shared_want; /* a file's shared window: most bytes kept, read size */
    uint32_t qmax;                  /* entries of a stream's queue */
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

/* Restores the heap after the top's key grew (or the top was replaced). */
static void heap_down(ps_query *q)
{
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
}

static void heap_pop(ps_query *q)
{
    q->heap[0] = q->heap[--q->nheap];
    heap_down(q);
}

/* ---- open: files, interfaces, filters ---- */

static int has_name(char **names, size_t n, const char *want)
{
    return n && bsearch(&want, names, n, sizeof(char *), ps_strcmp_p) != NULL;
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
        qsort(names, n, sizeof(*names), ps_strcmp_p);
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

/* One capture file to consider: a directory file or a remote one. */
typedef struct q_cand {
    const char *name, *who;
    size_t i; /* into names, or into src->remote */
    int remote;
} q_cand;

static int cand_cmp(const void *a, const void *b)
{
    const q_cand *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c == 0)
        c = strcmp(x->who, y->who);
    return c ? c : x->remote - y->remote;
}

/* Has the remote files the query selected fetched (src->fetch). */
static int fetch_remote(ps_query *q, char *err, size_t errlen)
{
    size_t n = 0;
    for (size_t i = 0; i < q->nfiles; i++)
        n += q->files[i].remote >= 0;
    if (n == 0)
        return 0;
    size_t *which = calloc(n, sizeof(*which)), *at = calloc(n, sizeof(*at));
    char **paths = calloc(n, sizeof(*paths));
    if (!which || !at || !paths) {
        free(which);
        free(at);
        free(paths);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0, k = 0; i < q->nfiles; i++)
        if (q->files[i].remote >= 0) {
            which[k] = (size_t)q->files[i].remote;
            at[k++] = i;
        }
    int rc = q->o.src->fetch(q->o.src->ud, which, n, paths, err, errlen);
    for (size_t k = 0; k < n; k++) {
        if (rc == 0 && !paths[k]) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
        q->files[at[k]].path = paths[k]; /* freed with the query */
    }
    free(which);
    free(at);
    free(paths);
    return rc;
}

static int select_files(ps_query *q, const char *prefix, char *err, size_t errlen)
{
    char **names = NULL;
    size_t n = 0;
    if (list_files(q->dir, prefix, &names, &n, err, errlen) != 0)
        return -1;
    const ps_query_source *src = q->o.src;
    size_t nrem = src ? src->nremote : 0;
    int rc = 0;
    q->files = calloc(n + nrem ? n + nrem : 1, sizeof(*q->files));
    q_cand *cands = calloc(n + nrem ? n + nrem : 1, sizeof(*cands));
    size_t ncand = 0;
    char **seen = NULL; /* distinct matching names, for ifaces_named */
    size_t nseen = 0, capseen = 0;
    if (!q->files || !cands)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < n; i++)
        cands[ncand++] = (q_cand){.name = names[i], .who = "", .i = i};
    for (size_t i = 0; rc == 0 && i < nrem; i++) {
        const ps_query_remote *r = &src->remote[i];
        if (!r->who[0] && has_name(names, n, r->name))
            continue; /* ours, still on disk: the local copy */
        cands[ncand++] = (q_cand){.name = r->name, .who = r->who, .i = i, .remote = 1};
    }
    if (rc == 0 && ncand > 1)
        qsort(cands, ncand, sizeof(*cands), cand_cmp);
    for (size_t c = 0; c < ncand && rc == 0; c++) {
        ps_index xl;
        const ps_index *xp = &xl;
        const q_cand *cd = &cands[c];
        q->st.files++;
        if (cd->remote) {
            q->st.remote++;
            xp = src->remote[cd->i].x;
        } else {
            int d = describe(q, &names[cd->i], &xl);
            if (d < 0) {
                rc = -1;
                break;
            }
            if (d > 0)
                continue;
        }
        const ps_index *x = xp;
        int overlaps = x->packets > 0 && x->first_ns <= q->o.to_ns && x->last_ns >= q->o.from_ns;
        size_t before_streams = q->nstreams;
        for (size_t k = 0; k < x->nifs && rc == 0; k++) {
            const ps_index_iface *f = &x->ifs[k];
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
            q_file *qf = &q->files[q->nfiles];
            if (cd->remote) {
                if (!(qf->name = strdup(cd->name)))
                    rc = -1;
                qf->remote = (int)cd->i;
                q->st.remote_read++;
            } else {
                qf->name = names[cd->i];
                names[cd->i] = NULL;
                qf->remote = -1;
            }
            if (rc == 0) {
                q->nfiles++;
                qf->first = (uint32_t)before_streams;
                qf->nstrm = (uint32_t)(q->nstreams - before_streams);
                qf->size = x->size;
                window_bytes(x, q->o.from_ns, q->o.to_ns, &qf->start, &qf->end);
                qf->fd = -1;
                q->st.files_read++;
            }
        } else {
            q->st.files_skipped++;
        }
        if (!cd->remote)
            ps_index_free(&xl);
    }
    free(cands);
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
    if (rc == 0)
        rc = fetch_remote(q, err, errlen);
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
    if (o->src) {
        q->refetch = o->src->refetch;
        q->src_ud = o->src->ud;
    }
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
    q->o.src = NULL;
    q->st.streams = (unsigned)q->nstreams;
    /* Many streams (many interfaces or sensors) share a memory budget:
     * smaller windows rather than more memory. */
    q->window = PS_QUERY_WINDOW;
    if (q->nstreams > PS_QUERY_MEMORY / PS_QUERY_WINDOW)
        q->window = PS_QUERY_MEMORY / q->nstreams < 8192 ? 8192 : PS_QUERY_MEMORY / q->nstreams;
    /* Files whose streams are open at once share the same budget (less
     * when many files are read side by side). */
    q->shared_max = PS_QUERY_SHARED;
    if (q->nfiles > PS_QUERY_MEMORY / PS_QUERY_SHARED)
        q->shared_max =
            PS_QUERY_MEMORY / q->nfiles < (256u << 10) ? (256u << 10) : PS_QUERY_MEMORY / q->nfiles;
    q->shared_want = q->shared_max / 4;
    q->qmax = 1u << 20;
    if (q->nstreams > 0 && PS_QUERY_MEMORY / 8 / q->nstreams < q->qmax)
        q->qmax = PS_QUERY_MEMORY / 8 / q->nstreams < 256
                      ? 256
                      : (uint32_t)(PS_QUERY_MEMORY / 8 / q->nstreams);
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

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void win_free(q_win *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

/* Makes [pos, pos + n) of fd available in w, reading up to `want` bytes
 * ahead and keeping the bytes from lo (<= pos) it already holds, so that
 * the blocks other streams are at stay in place. 1, 0 if those bytes are
 * past end (or the file is shorter now), -1 on a read error or OOM. */
static int win_load(ps_query *q, q_win *w, int fd, uint64_t end, uint64_t lo, uint64_t pos,
                    size_t n, size_t want, size_t cap_min)
{
    if (pos > end || n > end - pos)
        return 0;
    uint64_t hi = pos + (n > want ? n : want);
    if (hi > end)
        hi = end;
    size_t span = (size_t)(hi - lo), keep = 0;
    if (w->len > 0 && lo >= w->off && lo < w->off + w->len) {
        keep = (size_t)(w->off + w->len - lo);
        if (keep > span)
            keep = span;
    }
    if (span > w->cap) {
        size_t nc = span > cap_min ? span : cap_min;
        uint8_t *nb = malloc(nc);
        if (!nb) {
            errno = ENOMEM;
            return -1;
        }
        if (keep)
            memcpy(nb, w->buf + (lo - w->off), keep);
        free(w->buf);
        w->buf = nb;
        w->cap = nc;
    } else if (keep && lo != w->off) {
        memmove(w->buf, w->buf + (lo - w->off), keep);
    }
    w->off = lo;
    w->len = keep;
    while (w->len < span) {
        ssize_t k = pread(fd, w->buf + w->len, span - w->len, (off_t)(lo + w->len));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            w->len = 0;
            return -1;
        }
        if (k == 0)
            break; /* truncated under us: what we have */
        w->len += (size_t)k;
        q->st.bytes_read += (uint64_t)k;
    }
    return pos - w->off <= w->len && n <= w->len - (pos - w->off);
}

static inline const uint8_t *win_at(const q_win *w, uint64_t pos, size_t n)
{
    if (pos >= w->off && pos - w->off <= w->len && n <= w->len - (pos - w->off))
        return w->buf + (pos - w->off);
    return NULL;
}

/* The earliest offset an open stream still needs (its current packet's
 * block, its next queued block, where it scans on its own): 1, or 0 when
 * it needs nothing behind the file's scanner. */
static int low_pos(const q_stream *o, uint64_t *out)
{
    if (o->state != ST_OPEN)
        return 0;
    if (o->curlen)
        *out = o->pos;
    else if (o->qlen)
        *out = o->qo[o->qhead];
    else if (o->detached)
        *out = o->dpos;
    else
        return 0;
    return 1;
}

/* Points *p at n bytes at pos of file f (valid until the next call for
 * that file). From the file's shared window, moved forward when pos is
 * past it: it then keeps the bytes that the scanner and the file's open
 * streams still need, down to shared_max behind pos. A reader further
 * behind (a stream whose interface's packets come later in the file than
 * the others') reads through its own window (own) until it catches up.
 * 1, 0 past the end, -1. */
static int need(ps_query *q, q_file *f, q_win *own, uint64_t pos, size_t n, const uint8_t **p)
{
    if ((*p = win_at(&f->win, pos, n)) != NULL || (*p = win_at(own, pos, n)) != NULL)
        return 1;
    q_win *w = &f->win;
    int k;
    if (pos >= w->off) {
        size_t ahead = n > q->shared_want ? n : q->shared_want;
        uint64_t lo = pos, o;
        if (f->scan_state == 0 && f->scan < lo && f->scan >= w->off &&
            pos - f->scan + ahead <= q->shared_max)
            lo = f->scan;
        for (uint32_t i = f->first; i < f->first + f->nstrm; i++)
            if (low_pos(&q->streams[i], &o) && o < lo && o >= w->off &&
                pos - o + ahead <= q->shared_max)
                lo = o;
        k = win_load(q, w, f->fd, f->end, lo, pos, n, q->shared_want, q->shared_max);
        if (k == 1) {
            *p = w->buf + (pos - w->off);
            win_free(own); /* caught up */
        }
    } else {
        k = win_load(q, own, f->fd, f->end, pos, pos, n, q->window, q->window);
        if (k == 1)
            *p = own->buf + (pos - own->off);
    }
    return k;
}

/* The block at pos, checked as pcapread.h says a reader checks (an
 * incomplete or malformed block, one larger than PS_PCAPREAD_MAX_BLOCK, a
 * second Section Header Block end the file): 1 with *blk, *type, *len; 0
 * at the end; -1 on a read error. */
static int block_at(ps_query *q, q_file *f, q_win *own, uint64_t pos, const uint8_t **blk,
                    uint32_t *type, uint32_t *len)
{
    const uint8_t *h;
    int k = need(q, f, own, pos, 8, &h);
    if (k != 1)
        return k;
    *type = get_u32(h);
    *len = get_u32(h + 4);
    if (*len < 12 || *len % 4 || *len > PS_PCAPREAD_MAX_BLOCK ||
        (*type == PS_PCAPNG_SHB && pos > 0))
        return 0;
    if ((k = need(q, f, own, pos, *len, blk)) != 1)
        return k;
    return get_u32(*blk + *len - 4) == *len;
}

static void queue_free(q_stream *s)
{
    free(s->qo);
    s->qo = NULL;
    s->qcap = s->qhead = s->qlen = 0;
}

/* Appends a block offset to the stream's queue: 0, or -1 when the queue
 * is at its bound (or memory is short): the stream then reads on its own. */
static int queue_push(ps_query *q, q_stream *s, uint64_t off)
{
    if (s->qhead + s->qlen == s->qcap) {
        if (s->qhead > 0) {
            memmove(s->qo, s->qo + s->qhead, s->qlen * sizeof(*s->qo));
            s->qhead = 0;
        } else {
            uint32_t nc = s->qcap ? s->qcap * 2 : 256;
            if (nc > q->qmax)
                return -1;
            uint64_t *t = realloc(s->qo, nc * sizeof(*t));
            if (!t)
                return -1;
            s->qo = t;
            s->qcap = nc;
        }
    }
    s->qo[s->qhead + s->qlen++] = off;
    return 0;
}

/* Advances the file's scanner, which reads each block once and queues the
 * offsets of the EPBs of the file's streams, until stream s has one queued,
 * reads on its own, or the scanner ends. 0, or -1 on a read error. */
static int scan_for(ps_query *q, q_file *f, q_stream *s)
{
    while (s->qlen == 0 && !s->detached && f->scan_state == 0) {
        const uint8_t *blk;
        uint32_t type, len;
        uint64_t pos = f->scan;
        int k = block_at(q, f, &f->sown, pos, &blk, &type, &len);
        if (k != 1) {
            f->scan_state = k < 0 ? -1 : 1;
            win_free(&f->sown);
            break;
        }
        f->scan = pos + len;
        if (type != PS_PCAPNG_EPB || len < PS_PCAPNG_EPB_OVERHEAD)
            continue;
        uint32_t id = get_u32(blk + 8);
        if (id >= f->nmap || f->map[id] == UINT32_MAX)
            continue;
        q_stream *o = &q->streams[f->map[id]];
        if (o->state == ST_DONE || o->detached)
            continue;
        if (queue_push(q, o, pos) != 0) {
            o->detached = 1; /* its blocks before pos are queued; from pos on it scans */
            o->dpos = pos;
        }
    }
    return f->scan_state < 0 ? -1 : 0;
}

static void stream_close(ps_query *q, q_stream *s)
{
    q_file *f = &q->files[s->file];
    if (s->state == ST_OPEN) {
        win_free(&s->own);
        if (--f->refs == 0) {
            if (f->fd >= 0)
                close(f->fd);
            f->fd = -1;
            win_free(&f->win);
            win_free(&f->sown);
        }
    }
    queue_free(s);
    s->state = ST_DONE;
    if (f->refs == 0 && f->map) {
        uint32_t i = f->first;
        while (i < f->first + f->nstrm && q->streams[i].state == ST_DONE)
            i++;
        if (i == f->first + f->nstrm) { /* the file is finished with */
            free(f->map);
            f->map = NULL;
            f->nmap = 0;
        }
    }
}

/* Opens the stream's file (shared) and checks its Section Header Block;
 * the first time, starts the file's scanner. 0, 1 if the file is gone or
 * not one we read (the stream ends), -1 on error. */
static int stream_open(ps_query *q, q_stream *s)
{
    q_file *f = &q->files[s->file];
    if (f->fd < 0) {
        char path[PATH_MAX];
        if (f->path)
            snprintf(path, sizeof(path), "%s", f->path);
        else
            snprintf(path, sizeof(path), "%s/%s", q->dir, f->name);
        f->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        size_t nl = strlen(f->name), pl = strlen(PS_FNAME_PART);
        int part = nl > pl && strcmp(f->name + nl - pl, PS_FNAME_PART) == 0;
        if (f->fd < 0 && errno == ENOENT && part && !f->path) {
            path[strlen(path) - pl] = '\0'; /* completed since: same bytes, final name */
            f->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        }
        if (f->fd < 0 && errno == ENOENT && f->remote < 0 && !f->path && q->refetch) {
            /* deleted once uploaded (output.s3.deleteLocal): its bucket copy,
             * the same bytes (a .part's under its final name, longer) */
            char name[PATH_MAX], copy[PATH_MAX];
            snprintf(name, sizeof(name), "%.*s", (int)(part ? nl - pl : nl), f->name);
            if (q->refetch(q->src_ud, name, f->end, copy, sizeof(copy)) == 0) {
                f->path = strdup(copy);
                q->st.refetched++;
                f->fd = f->path ? open(copy, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK) : -1;
                if (!f->path)
                    errno = ENOMEM;
            } else {
                errno = ENOENT;
            }
        }
        if (f->fd < 0) {
            s->state = ST_DONE;
            return errno == ENOENT ? 1 : -1; /* deleted by retention meanwhile */
        }
        uint8_t h[12];
        ssize_t k;
        do
            k = f->end >= sizeof(h) ? pread(f->fd, h, sizeof(h), 0) : 0;
        while (k < 0 && errno == EINTR);
        if (k != (ssize_t)sizeof(h) || get_u32(h) != PS_PCAPNG_SHB ||
            get_u32(h + 8) != 0x1A2B3C4Du) {
            int e = k < 0 ? errno : EINVAL;
            close(f->fd);
            f->fd = -1;
            s->state = ST_DONE;
            return e == EIO ? -1 : 1;
        }
        if (!f->map) {
            /* if_id -> stream; the file's streams are in if_id order */
            uint32_t n = q->streams[f->first + f->nstrm - 1].if_id + 1;
            if (!(f->map = malloc(n * sizeof(*f->map)))) {
                close(f->fd);
                f->fd = -1;
                s->state = ST_DONE;
                errno = ENOMEM;
                return -1;
            }
            memset(f->map, 0xff, n * sizeof(*f->map));
            for (uint32_t i = f->first; i < f->first + f->nstrm; i++)
                f->map[q->streams[i].if_id] = i;
            f->nmap = n;
            f->scan = f->start;
        }
    }
    f->refs++;
    s->state = ST_OPEN;
    s->curlen = 0;
    return 0;
}

/* Moves the stream to its next packet: 1 (s->pos, curlen, key set), 0 at
 * its end (closed), -1 on a read error. Its blocks come from its queue,
 * filled by the file's scanner, or, once detached, from its own scan. */
static int stream_next(ps_query *q, q_stream *s)
{
    const q_out *o = &q->outs[s->out];
    const struct bpf_program *prog = o->filter >= 0 ? &q->filters[o->filter].prog : NULL;
    if (o->filter >= 0 && !q->filters[o->filter].ok) {
        stream_close(q, s); /* the filter does not apply to its link type */
        return 0;
    }
    q_file *f = &q->files[s->file];
    s->curlen = 0;
    int k;
    for (;;) {
        const uint8_t *blk;
        uint32_t type, len;
        uint64_t pos;
        if (s->qlen == 0 && !s->detached) {
            if ((k = scan_for(q, f, s)) < 0)
                break;
            if (s->qlen == 0 && !s->detached) {
                k = 0; /* the scanner reached the end */
                break;
            }
        }
        if (s->qlen > 0) {
            pos = s->qo[s->qhead++];
            s->qlen--;
        } else {
            pos = s->dpos;
        }
        s->pos = pos;
        if ((k = block_at(q, f, &s->own, pos, &blk, &type, &len)) != 1)
            break;
        if (pos == s->dpos && s->detached)
            s->dpos = pos + len;
        if (type != PS_PCAPNG_EPB || len < PS_PCAPNG_EPB_OVERHEAD || get_u32(blk + 8) != s->if_id)
            continue;
        ps_pcapread_epb e;
        if (ps_pcapread_parse_epb(blk, len, &e) != 0)
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
            struct pcap_pkthdr ph = {.caplen = e.caplen, .len = e.origlen};
            if (pcap_offline_filter(prog, &ph, e.data) == 0)
                continue;
        }
        s->curlen = len;
        s->key = ns;
        return 1;
    }
    stream_close(q, s);
    return k < 0 ? -1 : 0;
}

/* An Enhanced Packet Block into dst (as ps_pcapng_epb): its length. */
static size_t put_epb(uint8_t *dst, uint32_t if_id, uint64_t ts, const ps_pcapread_epb *e)
{
    size_t padded = ((size_t)e->caplen + 3) & ~(size_t)3;
    size_t total = PS_PCAPNG_EPB_OVERHEAD + padded;
    ps_put_u32ne(dst, PS_PCAPNG_EPB);
    ps_put_u32ne(dst + 4, (uint32_t)total);
    ps_put_u32ne(dst + 8, if_id);
    ps_put_u32ne(dst + 12, (uint32_t)(ts >> 32));
    ps_put_u32ne(dst + 16, (uint32_t)ts);
    ps_put_u32ne(dst + 20, e->caplen);
    ps_put_u32ne(dst + 24, e->origlen);
    memcpy(dst + 28, e->data, e->caplen);
    memset(dst + 28 + e->caplen, 0, padded - e->caplen);
    ps_put_u32ne(dst + 28 + padded, (uint32_t)total);
    return total;
}

/* One step of the merge: a stream opened, or the earliest packet written to
 * dst (room bytes free; *wrote set) or, when it does not fit or its
 * interface's IDB must go first, to q->out if spill is set. 1 (a step
 * taken), 0 (no room: nothing done), -1 on error. */
static int step(ps_query *q, uint8_t *dst, size_t room, int spill, size_t *wrote)
{
    *wrote = 0;
    if (q->nheap == 0 || (q->o.limit && q->st.packets >= q->o.limit)) {
        q->done = 1;
        return 1;
    }
    q_stream *s = &q->streams[q->heap[0]];
    int k;
    if (s->state == ST_PENDING) {
        k = stream_open(q, s);
        if (k == 0)
            k = stream_next(q, s);
        else if (k > 0)
            k = 0;
    } else {
        const uint8_t *blk;
        ps_pcapread_epb e;
        k = need(q, &q->files[s->file], &s->own, s->pos, s->curlen, &blk);
        if (k == 1 && ps_pcapread_parse_epb(blk, s->curlen, &e) != 0)
            k = 0; /* cannot be: it parsed when found */
        if (k == 1) {
            q_out *o = &q->outs[s->out];
            size_t total = PS_PCAPNG_EPB_OVERHEAD + (((size_t)e.caplen + 3) & ~(size_t)3);
            if (o->out_id >= 0 && total <= room) {
                *wrote = put_epb(dst, (uint32_t)o->out_id, s->key, &e);
            } else if (!spill) {
                return 0;
            } else {
                if (o->out_id < 0) {
                    if (ps_pcapng_idb(&q->out, (uint16_t)o->linktype, o->snaplen, o->name,
                                      o->desc[0] ? o->desc : NULL) != 0)
                        return -1;
                    o->out_id = (int32_t)q->next_out_id++;
                }
                if (ps_pcapng_epb(&q->out, (uint32_t)o->out_id, s->key, e.caplen, e.origlen,
                                  e.data) != 0)
                    return -1;
            }
            q->st.packets++;
            k = stream_next(q, s);
        } else {
            stream_close(q, s); /* its bytes went away under us */
        }
    }
    if (k == 1)
        heap_down(q); /* its key only grew */
    else
        heap_pop(q);
    return k < 0 ? -1 : 1;
}

ssize_t ps_query_read(ps_query *q, uint8_t *buf, size_t max)
{
    size_t n = 0;
    while (n < max) {
        if (q->out.len > 0) {
            size_t c = q->out.len < max - n ? q->out.len : max - n;
            memcpy(buf + n, q->out.data, c);
            ps_buf_consume(&q->out, c);
            n += c;
            /* The first call returns the Section Header Block alone: the
             * client sees the stream start while the first packets are
             * still being read. */
            if (!q->started)
                break;
            continue;
        }
        if (!q->started || q->done || q->failed)
            break;
        size_t w;
        int k = step(q, buf + n, max - n, n == 0, &w);
        if (k < 0)
            q->failed = 1;
        if (k <= 0)
            break;
        n += w;
    }
    q->started = 1;
    if (n == 0)
        return q->failed ? -1 : 0;
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
        free(q->files[i].win.buf);
        free(q->files[i].sown.buf);
        free(q->files[i].map);
        free(q->files[i].name);
        free(q->files[i].path);
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
