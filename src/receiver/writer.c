/*
 * writer: the receiver's capture files (rotation, retention, .part files,
 * per-sensor file sets, stdout). The path rules and naming are documented in
 * writer.h.
 *
 * A "file set" is the sequence of files one prefix produces: one set in
 * total, or one per sensor with per_sensor. Each set owns its current file,
 * its encode buffer, its name counter and the list of its completed files
 * (for retention). Interfaces are registered once and addressed by handle
 * (an index), so the per-record path is an array access, a size check and
 * one EPB encode into the set's buffer.
 *
 * Why a .part file: readers (the HTTP file list, an operator's tcpdump) must
 * never pick up a file that is still growing, and a crash must leave an
 * obvious partial file rather than one that looks complete. The rename to
 * the final name is the commit point; on_file_closed runs after it.
 *
 * IDBs are emitted lazily per file: each file gets a generation number and
 * an interface remembers the generation it last wrote its IDB into, so
 * "reset the handle -> if_id map on rotation" is just a new generation.
 *
 * Every IDB carries snaplen 262144, the receiver's caplen limit, not the
 * sensor's: libpcap (tcpdump, Zeek, Suricata) refuses a section whose IDBs
 * disagree on snaplen, and any packet longer than its IDB's snaplen, and one
 * merged file holds interfaces of many sensors.
 *
 * Errors go to err/errno for the caller to act on. Only what the caller cannot
 * see or name is logged here: which file could not be completed or deleted,
 * and a size rotation put off because writes fail. That rotation never fails
 * the record: the session would drop the connection mid-batch and the resent
 * batch would duplicate the records already taken. The record stays
 * buffered and ps_writer_flush(), which acknowledgements wait on, reports.
 */
#include "writer.h"

#include "recovery.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pcap/pcap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "../core/buf.h"
#include "../core/log.h"
#include "../core/pcapng.h"

#define WR_DEFAULT_PREFIX "packetstreamer"
#define WR_FLUSH_AT (1u << 20)      /* flush once this much is buffered */
#define WR_BUF_HARD_MAX (64u << 20) /* refuse records past this if flushes fail */
#define WR_SNAPLEN 262144u          /* the largest caplen the receiver accepts */
#define WR_SENSOR_NAME_MAX 64
#define WR_OPEN_ATTEMPTS 1000 /* names to try when others write the same dir */
#define WR_NS 1000000000ull

/* What the receiver knows about a file's contents (files of this run only:
 * files found from earlier runs have first_ns == 0). Kept for the HTTP
 * capture list, see ps_writer_files_meta(). */
typedef struct wr_meta {
    uint64_t first_ns, last_ns, packets;
    char *sensors; /* comma-separated sensor ids, NULL if none */
} wr_meta;

typedef struct wr_done {
    char *name; /* file name inside the directory */
    uint64_t size;
    uint64_t counter;
    wr_meta meta;
} wr_done;

typedef struct wr_set {
    char *key;    /* sanitized sensor id, NULL for the single set */
    char *prefix; /* file-name prefix: PREFIX or PREFIX-KEY */
    int has_linktype;
    uint32_t linktype; /* classic pcap: fixed by the set's first interface */

    int open; /* a current file exists (for stdout: the stream has started) */
    int fd;
    uint64_t gen;        /* generation of the current file */
    uint32_t next_if_id; /* next pcapng interface id in the current file */
    uint64_t file_bytes; /* current file: written + buffered */
    uint64_t file_packets;
    uint64_t opened_ns;
    wr_meta meta;        /* current file's contents */
    uint64_t counter;    /* current file's counter */
    int rotate_deferred; /* a size rotation is pending on failing writes */
    uint64_t next_counter;
    char final[PATH_MAX];
    char part[PATH_MAX];
    ps_buf buf;

    wr_done *done; /* completed files, oldest first */
    size_t ndone, capdone;
    uint64_t done_bytes;
} wr_set;

typedef struct wr_iface {
    char *sensor;
    char *ifname;
    char *desc;
    uint32_t linktype;
    wr_set *set;
    ps_buf idb;   /* pre-encoded IDB: identical in every file */
    uint64_t gen; /* generation of the file holding our IDB (0: none) */
    uint32_t if_id;
    uint64_t delivered;
    uint64_t meta_gen; /* generation of the file whose meta lists our sensor */
} wr_iface;

struct ps_writer {
    ps_format format;
    int to_stdout;
    char *dir; /* NULL for stdout */
    char *prefix;
    uint64_t rotate_bytes;
    uint32_t rotate_seconds;
    uint32_t max_files;
    uint64_t max_total_bytes;
    int per_sensor;
    unsigned mode;
    char *app;
    char os[256];
    void (*on_file_closed)(void *ud, const char *path, uint64_t packets, uint64_t bytes);
    int (*checkpoint)(void *ud, ps_buf *out);
    void *ud;

    wr_set **sets;
    size_t nsets, capsets;
    wr_iface *ifaces;
    size_t nifaces, capifaces;
    uint32_t *iface_tab;  /* open addressing on (sensor, name): handle + 1, 0 empty */
    size_t iface_tab_cap; /* power of two, at least twice nifaces */
    uint64_t next_gen;
    ps_writer_totals totals;
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint64_t now_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * WR_NS + (uint64_t)ts.tv_nsec;
}

static int is_pcapng(const ps_writer *w)
{
    return w->format == PS_FORMAT_PCAPNG;
}

static const char *file_ext(const ps_writer *w)
{
    return is_pcapng(w) ? "pcapng" : "pcap";
}

static const char *dlt_name(uint32_t linktype)
{
    const char *n = linktype <= INT32_MAX ? pcap_datalink_val_to_name((int)linktype) : NULL;
    return n ? n : "unknown";
}

/* Joins dir and name into out; -1 (ENAMETOOLONG) if it does not fit. */
static int join_path(char *out, size_t outlen, const char *dir, const char *name,
                     const char *suffix)
{
    const char *sep = dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/";
    int n = snprintf(out, outlen, "%s%s%s%s", dir, sep, name, suffix);
    if (n < 0 || (size_t)n >= outlen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* ---- path rules ---------------------------------------------------------- */

/* Splits path into the output directory and the file-name prefix following
 * the rules in writer.h. */
static int resolve_path(const char *path, char **dir, char **prefix)
{
    size_t n = strlen(path);
    const char *pfx = WR_DEFAULT_PREFIX;
    size_t pfxlen = strlen(pfx);
    size_t dirlen = n;
    const char *dirsrc = path;

    int is_dir;
    struct stat st;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (path[n - 1] == '/')
        is_dir = 1;
    else if (stat(path, &st) == 0)
        is_dir = S_ISDIR(st.st_mode);
    else
        is_dir = strchr(base + 1, '.') == NULL; /* base is non-empty here */

    if (is_dir) {
        /* Drop trailing slashes, but keep "/" itself. */
        while (dirlen > 1 && path[dirlen - 1] == '/')
            dirlen--;
    } else {
        if (!slash) {
            dirsrc = ".";
            dirlen = 1;
        } else {
            dirlen = slash == path ? 1 : (size_t)(slash - path);
        }
        pfx = base;
        pfxlen = strlen(base);
        static const char *const exts[] = {".pcapng", ".pcap"};
        for (size_t i = 0; i < 2; i++) {
            size_t el = strlen(exts[i]);
            if (pfxlen > el && strcmp(base + pfxlen - el, exts[i]) == 0) {
                pfxlen -= el;
                break;
            }
        }
    }

    *dir = strndup(dirsrc, dirlen);
    *prefix = strndup(pfx, pfxlen);
    if (!*dir || !*prefix) {
        free(*dir);
        free(*prefix);
        *dir = *prefix = NULL;
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* mkdir -p with mode 0750 for the components it creates. */
static int mkdir_p(const char *dir)
{
    char tmp[PATH_MAX];
    size_t n = strlen(dir);
    if (n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
            return -1;
        tmp[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* access(W_OK) says yes to root on a read-only mount and knows nothing of
 * quotas or SELinux: creating a file is the only honest test. */
static int check_writable(const char *dir, const char *prefix, char *err, size_t errlen)
{
    char probe[PATH_MAX];
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, ".%.200s-probe-XXXXXX", prefix);
    if (join_path(probe, sizeof probe, dir, name, "") != 0) {
        set_err(err, errlen, "output directory %s: %s", dir, strerror(errno));
        return -1;
    }
    int fd = mkstemp(probe);
    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "output directory %s is not writable: %s", dir, strerror(e));
        errno = e;
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

/* Matches "PREFIX-YYYYmmddTHHMMSSZ-N.pcap[ng][.part]" exactly and extracts N.
 * Exact matching keeps "PREFIX-SENSOR-..." files of other sets (and files a
 * user put there) out of this set's counters and retention. */
static int parse_name(const char *name, const char *prefix, size_t plen, uint64_t *counter,
                      int *is_part)
{
    if (strncmp(name, prefix, plen) != 0)
        return -1;
    const char *p = name + plen;
    if (*p++ != '-')
        return -1;
    static const char shape[] = "DDDDDDDDTDDDDDDZ-";
    for (size_t i = 0; shape[i]; i++, p++) {
        if (shape[i] == 'D' ? (*p < '0' || *p > '9') : *p != shape[i])
            return -1;
    }
    uint64_t v = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits == 19) /* keeps v * 10 + 9 below 2^64 */
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (digits == 0)
        return -1;
    if (strncmp(p, ".pcapng", 7) == 0)
        p += 7;
    else if (strncmp(p, ".pcap", 5) == 0)
        p += 5;
    else
        return -1;
    if (strcmp(p, ".part") == 0)
        *is_part = 1;
    else if (*p == '\0')
        *is_part = 0;
    else
        return -1;
    *counter = v;
    return 0;
}

/* ---- file sets ----------------------------------------------------------- */

static int done_add(wr_set *s, const char *name, uint64_t size, uint64_t counter)
{
    if (s->ndone == s->capdone) {
        size_t cap = s->capdone ? s->capdone * 2 : 16;
        wr_done *d = realloc(s->done, cap * sizeof *d);
        if (!d)
            return -1;
        s->done = d;
        s->capdone = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    s->done[s->ndone++] = (wr_done){copy, size, counter, {0, 0, 0, NULL}};
    s->done_bytes += size;
    return 0;
}

static int done_cmp(const void *a, const void *b)
{
    const wr_done *x = a, *y = b;
    if (x->counter != y->counter)
        return x->counter < y->counter ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Reads the directory once per set: the highest counter (so new names never
 * collide with earlier runs) and the completed files retention must count. */
static int set_scan(ps_writer *w, wr_set *s, char *err, size_t errlen)
{
    DIR *d = opendir(w->dir);
    if (!d) {
        int e = errno;
        set_err(err, errlen, "output directory %s: %s", w->dir, strerror(e));
        errno = e;
        return -1;
    }
    size_t plen = strlen(s->prefix);
    uint64_t max = 0;
    int e = 0;
    for (;;) {
        /* errno is readdir's only way to tell an error from the end. */
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            e = errno;
            break;
        }
        uint64_t counter;
        int is_part;
        if (parse_name(de->d_name, s->prefix, plen, &counter, &is_part) != 0)
            continue;
        if (counter > max)
            max = counter;
        if (is_part)
            continue; /* unfinished (crashed run): kept for repair, not counted */
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (done_add(s, de->d_name, (uint64_t)st.st_size, counter) != 0) {
            closedir(d);
            set_err(err, errlen, "out of memory scanning %s", w->dir);
            errno = ENOMEM;
            return -1;
        }
    }
    closedir(d);
    if (e) {
        set_err(err, errlen, "output directory %s: %s", w->dir, strerror(e));
        errno = e;
        return -1;
    }
    if (s->ndone > 1)
        qsort(s->done, s->ndone, sizeof *s->done, done_cmp);
    s->next_counter = max + 1;
    return 0;
}

static void set_free(wr_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ndone; i++) {
        free(s->done[i].name);
        free(s->done[i].meta.sensors);
    }
    free(s->done);
    free(s->meta.sensors);
    ps_buf_free(&s->buf);
    free(s->key);
    free(s->prefix);
    free(s);
}

/* Sensor ids come from the network: keep file names to a safe alphabet so an
 * id like "../../etc" cannot leave the directory. */
static char *sanitize_sensor(const char *sensor)
{
    size_t n = strlen(sensor);
    if (n > WR_SENSOR_NAME_MAX)
        n = WR_SENSOR_NAME_MAX;
    char *s = malloc(n ? n + 1 : 2);
    if (!s)
        return NULL;
    if (n == 0)
        return strcpy(s, "_");
    for (size_t i = 0; i < n; i++) {
        char c = sensor[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        s[i] = ok ? c : '_';
    }
    s[n] = '\0';
    return s;
}

/* Creates a set (key NULL: the single set) and scans the directory for it. */
static wr_set *set_new(ps_writer *w, const char *sensor, char *err, size_t errlen)
{
    if (w->nsets == w->capsets) {
        size_t cap = w->capsets ? w->capsets * 2 : 4;
        wr_set **p = realloc(w->sets, cap * sizeof *p);
        if (!p)
            goto oom;
        w->sets = p;
        w->capsets = cap;
    }
    wr_set *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->fd = -1;
    s->next_counter = 1;
    if (sensor) {
        s->key = sanitize_sensor(sensor);
        size_t n = s->key ? strlen(w->prefix) + 1 + strlen(s->key) + 1 : 0;
        s->prefix = n ? malloc(n) : NULL;
        if (s->prefix)
            snprintf(s->prefix, n, "%s-%s", w->prefix, s->key);
    } else {
        s->prefix = strdup(w->prefix ? w->prefix : "");
    }
    if (!s->prefix) {
        set_free(s);
        goto oom;
    }
    if (!w->to_stdout && set_scan(w, s, err, errlen) != 0) {
        int e = errno;
        set_free(s);
        errno = e;
        return NULL;
    }
    w->sets[w->nsets++] = s;
    return s;

oom:
    set_err(err, errlen, "out of memory");
    errno = ENOMEM;
    return NULL;
}

static wr_set *set_for_sensor(ps_writer *w, const char *sensor, char *err, size_t errlen)
{
    if (!w->per_sensor || w->to_stdout)
        return w->sets[0];
    char *key = sanitize_sensor(sensor);
    if (!key) {
        set_err(err, errlen, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < w->nsets; i++) {
        if (strcmp(w->sets[i]->key, key) == 0) {
            free(key);
            return w->sets[i];
        }
    }
    free(key);
    return set_new(w, sensor, err, errlen);
}

/* ---- files --------------------------------------------------------------- */

/* Writes the set's buffer out. On error exactly the bytes write(2) accepted
 * are consumed, so a retry continues the file byte for byte. */
static int set_flush(ps_writer *w, wr_set *s)
{
    size_t off = 0;
    int rc = 0;
    while (off < s->buf.len) {
        ssize_t n = write(s->fd, s->buf.data + off, s->buf.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO; /* no progress and no reason: do not spin */
            rc = -1;
            break;
        }
        off += (size_t)n;
    }
    int e = errno;
    w->totals.bytes += off;
    ps_buf_consume(&s->buf, off);
    errno = e;
    return rc;
}

static void file_forget(wr_set *s)
{
    free(s->meta.sensors);
    memset(&s->meta, 0, sizeof(s->meta));
    s->open = 0;
    s->fd = -1;
    s->file_bytes = s->file_packets = 0;
    ps_buf_reset(&s->buf);
}

/* Starts the set's next file: header into the (empty) buffer, then
 * NAME.part created with O_EXCL under a name that exists in neither form. */
static int file_open(ps_writer *w, wr_set *s)
{
    int rc = is_pcapng(w) ? ps_pcapng_shb(&s->buf, w->app, w->os[0] ? w->os : NULL)
                          : ps_pcap_file_header(&s->buf, w->format == PS_FORMAT_PCAP_NS, WR_SNAPLEN,
                                                s->linktype);
    if (rc != 0) {
        errno = ENOMEM;
        return -1;
    }
    uint64_t now = now_realtime_ns();

    if (w->to_stdout) {
        s->fd = STDOUT_FILENO;
    } else {
        time_t t = (time_t)(now / WR_NS);
        struct tm tm;
        char stamp[32];
        gmtime_r(&t, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);

        int fd = -1;
        for (int attempt = 0; fd < 0; attempt++) {
            char name[NAME_MAX + 1];
            struct stat st;
            uint64_t counter = s->next_counter++;
            int n = snprintf(name, sizeof name, "%s-%s-%06llu.%s", s->prefix, stamp,
                             (unsigned long long)counter, file_ext(w));
            if (n < 0 || (size_t)n + 5 >= sizeof name) {
                errno = ENAMETOOLONG;
                goto fail;
            }
            if (join_path(s->final, sizeof s->final, w->dir, name, "") != 0 ||
                join_path(s->part, sizeof s->part, w->dir, name, ".part") != 0)
                goto fail;
            if (lstat(s->final, &st) == 0) {
                if (attempt >= WR_OPEN_ATTEMPTS) {
                    errno = EEXIST;
                    goto fail;
                }
                continue;
            }
            fd = open(s->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)w->mode);
            if (fd >= 0)
                s->counter = counter;
            else if (errno != EEXIST || attempt >= WR_OPEN_ATTEMPTS)
                goto fail;
        }
        s->fd = fd;
    }
    s->open = 1;
    s->gen = w->next_gen++;
    s->next_if_id = 0;
    s->file_bytes = s->buf.len;
    s->file_packets = 0;
    s->opened_ns = now;
    return 0;

fail:;
    int e = errno;
    ps_buf_reset(&s->buf);
    errno = e;
    return -1;
}

/* Renames without ever replacing an existing file. */
static int rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* File system without RENAME_NOREPLACE: a check, then rename. Only a
     * concurrent writer using our exact name could slip in between. */
    struct stat st;
    if (lstat(to, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(from, to);
}

/* Deletes the set's oldest completed files while it is over its limits. */
static void retention(ps_writer *w, wr_set *s)
{
    size_t drop = 0;
    uint64_t bytes = s->done_bytes;
    while (drop < s->ndone && ((w->max_files && s->ndone - drop > w->max_files) ||
                               (w->max_total_bytes && bytes > w->max_total_bytes))) {
        char path[PATH_MAX];
        wr_done *d = &s->done[drop];
        if (join_path(path, sizeof path, w->dir, d->name, "") == 0) {
            if (unlink(path) == 0)
                w->totals.files_deleted++;
            else if (errno != ENOENT)
                ps_warn("writer", "retention: cannot delete %s: %s", path, strerror(errno));
        }
        /* Not deleted (gone already, or refused): stop counting it either
         * way, otherwise one stuck file would block retention forever. */
        bytes -= d->size;
        free(d->name);
        free(d->meta.sensors);
        drop++;
    }
    if (drop) {
        memmove(s->done, s->done + drop, (s->ndone - drop) * sizeof *s->done);
        s->ndone -= drop;
        s->done_bytes = bytes;
    }
}

/* Completes the current file: flush, close, rename, callback, retention.
 * With final == 0 (rotation) a failed flush changes nothing, so the caller
 * can retry; with final != 0 (writer close) the file is left as .part. */
static int file_close(ps_writer *w, wr_set *s, int final)
{
    if (!s->open)
        return 0;
    /* A failed flush below may leave this checkpoint in the middle of the
     * file once later records follow; recovery reads only the last one. */
    if (is_pcapng(w) && !w->to_stdout && w->checkpoint) {
        size_t before = s->buf.len;
        if (w->checkpoint(w->ud, &s->buf) == 0)
            s->file_bytes += s->buf.len - before;
    }
    if (set_flush(w, s) != 0) {
        if (!final)
            return -1;
        int e = errno;
        if (!w->to_stdout) {
            ps_error("writer", "cannot complete %s: %s; %zu bytes not written, file left as is",
                     s->part, strerror(e), s->buf.len);
            close(s->fd);
        }
        file_forget(s);
        errno = e;
        return -1;
    }
    if (w->to_stdout) {
        file_forget(s); /* fd 1 belongs to the process, not to us */
        return 0;
    }
    uint64_t packets = s->file_packets, bytes = s->file_bytes;
    wr_meta meta = s->meta; /* file_forget() would free it */
    s->meta.sensors = NULL;
    int rc = close(s->fd);
    int e = errno;
    file_forget(s);
    if (rc != 0 || rename_noreplace(s->part, s->final) != 0) {
        /* Data may be incomplete (close) or the name taken (rename): the
         * .part stays where an operator can see it. */
        if (rc == 0)
            e = errno;
        ps_error("writer", "cannot complete %s: %s: %s; file left as is", s->part,
                 rc ? "close" : "rename", strerror(e));
        free(meta.sensors);
        errno = e;
        return -1;
    }
    w->totals.files_closed++;
    const char *name = strrchr(s->final, '/');
    name = name ? name + 1 : s->final;
    /* Untracked on OOM: the file is only exempt from retention this run. */
    if (done_add(s, name, bytes, s->counter) == 0)
        s->done[s->ndone - 1].meta = meta; /* takes the sensors string */
    else
        free(meta.sensors);
    if (w->on_file_closed)
        w->on_file_closed(w->ud, s->final, packets, bytes);
    retention(w, s);
    return 0;
}

/* Records the outcome of a size rotation (see the top of the file): a failed
 * flush changed nothing, so the file stays current and grows past the limit
 * until a later record's rotation succeeds; a failed close or rename was
 * logged and the next file starts anyway. */
static void rotate_for_size(wr_set *s, int rc)
{
    if (rc == 0) {
        if (s->rotate_deferred)
            ps_info("writer", "writes work again; rotation of %s done", s->final);
        s->rotate_deferred = 0;
    } else if (s->open && !s->rotate_deferred) {
        ps_warn("writer", "cannot complete %s: %s; rotation deferred", s->part, strerror(errno));
        s->rotate_deferred = 1;
    }
}

/* Adds one record to the current file's meta: a compare per record, and a
 * string append only the first time an interface appears in a file. OOM
 * only loses the sensor from the list. */
static void meta_note(wr_set *s, wr_iface *f, uint64_t ts_ns)
{
    wr_meta *m = &s->meta;
    if (m->packets == 0 || ts_ns < m->first_ns)
        m->first_ns = ts_ns;
    if (ts_ns > m->last_ns)
        m->last_ns = ts_ns;
    m->packets++;
    if (f->meta_gen == s->gen)
        return;
    f->meta_gen = s->gen;
    size_t il = strlen(f->sensor), ol = m->sensors ? strlen(m->sensors) : 0;
    for (const char *p = m->sensors; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == il && memcmp(p, f->sensor, il) == 0)
            return;
        p += n + (comma ? 1 : 0);
    }
    char *n = realloc(m->sensors, ol + il + 2);
    if (!n)
        return;
    if (ol)
        n[ol++] = ',';
    memcpy(n + ol, f->sensor, il + 1);
    m->sensors = n;
}

/* Emits the interface's IDB into the current file unless already there. */
static int ensure_idb(wr_set *s, wr_iface *f)
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
    if (!out || !o || !o->path || !o->path[0]) {
        set_err(err, errlen, "output path is empty");
        errno = EINVAL;
        return -1;
    }
    if (o->format != PS_FORMAT_PCAPNG && o->format != PS_FORMAT_PCAP &&
        o->format != PS_FORMAT_PCAP_NS) {
        set_err(err, errlen, "unknown output format %d", (int)o->format);
        errno = EINVAL;
        return -1;
    }
    ps_writer *w = calloc(1, sizeof *w);
    if (!w)
        goto oom;
    w->format = o->format;
    w->rotate_bytes = o->rotate_bytes;
    w->rotate_seconds = o->rotate_seconds;
    w->max_files = o->max_files;
    w->max_total_bytes = o->max_total_bytes;
    w->per_sensor = o->per_sensor;
    /* Captures hold credentials and personal data: never world-readable by
     * default (the umask can only make this stricter). */
    w->mode = o->mode ? o->mode & 0666u : 0640u;
    w->on_file_closed = o->on_file_closed;
    w->checkpoint = o->checkpoint;
    w->ud = o->ud;
    w->next_gen = 1;
    w->app = strdup(o->app ? o->app : WR_DEFAULT_PREFIX);
    if (!w->app)
        goto oom;
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(w->os, sizeof w->os, "%.80s %.80s %.80s", u.sysname, u.release, u.machine);

    if (ps_config_path_is_stdout(o->path)) {
        w->to_stdout = 1;
        if (fcntl(STDOUT_FILENO, F_GETFL) < 0) {
            set_err(err, errlen, "output %s: standard output is not open", o->path);
            ps_writer_close(w);
            errno = EBADF;
            return -1;
        }
    } else {
        if (resolve_path(o->path, &w->dir, &w->prefix) != 0)
            goto oom;
        if (mkdir_p(w->dir) != 0) {
            int e = errno;
            set_err(err, errlen, "cannot create output directory %s: %s", w->dir, strerror(e));
            ps_writer_close(w);
            errno = e;
            return -1;
        }
        if (check_writable(w->dir, w->prefix, err, errlen) != 0) {
            int e = errno;
            ps_writer_close(w);
            errno = e;
            return -1;
        }
    }
    /* Before any set scans the directory: repaired .part files take their
     * final names, and the caller learns what earlier runs wrote. */
    if (!w->to_stdout && o->on_recovered) {
        ps_recovery_report rep;
        if (ps_recovery_run(w->dir, w->prefix, w->format, o->on_recovered, o->ud, &rep, err,
                            errlen) != 0) {
            ps_writer_close(w);
            errno = EIO;
            return -1;
        }
        if (rep.entries)
            ps_info("writer", "%s: %u files repaired, %u checkpoints read, %llu sequence facts",
                    w->dir, rep.repaired, rep.files_read, (unsigned long long)rep.entries);
    }
    /* The single set exists from the start so its directory scan (and any
     * error in it) happens here; per-sensor sets appear with their sensor. */
    if (!w->per_sensor || w->to_stdout) {
        if (!set_new(w, NULL, err, errlen)) {
            int e = errno;
            ps_writer_close(w);
            errno = e;
            return -1;
        }
    }
    *out = w;
    return 0;

oom:
    ps_writer_close(w);
    set_err(err, errlen, "out of memory");
    errno = ENOMEM;
    return -1;
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
    int rc = ps_pcapng_idb(out, (uint16_t)linktype, WR_SNAPLEN, name, desc);
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
        set_err(err, errlen, "interface without a sensor or a name");
        errno = EINVAL;
        return -1;
    }
    if (is_pcapng(w) && linktype > UINT16_MAX) {
        set_err(err, errlen, "interface %s/%s has link type %u, which pcapng cannot store", sensor,
                ifname, linktype);
        errno = EINVAL;
        return -1;
    }

    int found = iface_find(w, sensor, ifname);
    wr_iface *f = found >= 0 ? &w->ifaces[found] : NULL;
    wr_set *s = f ? f->set : set_for_sensor(w, sensor, err, errlen);
    if (!s)
        return -1;
    if (!is_pcapng(w) && s->has_linktype && s->linktype != linktype) {
        set_err(err, errlen,
                "interface %s/%s has link type %u (%s) but this pcap file set holds link type "
                "%u (%s); use --format pcapng for mixed link types",
                sensor, ifname, linktype, dlt_name(linktype), s->linktype, dlt_name(s->linktype));
        errno = EINVAL;
        return -1;
    }

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
            set_err(err, errlen, "interface %s/%s: cannot encode its description", sensor, ifname);
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

    if (w->nifaces >= INT32_MAX) {
        set_err(err, errlen, "too many interfaces");
        errno = ENOSPC;
        return -1;
    }
    if (iface_tab_reserve(w) != 0)
        goto oom;
    if (w->nifaces == w->capifaces) {
        size_t cap = w->capifaces ? w->capifaces * 2 : 16;
        wr_iface *p = realloc(w->ifaces, cap * sizeof *p);
        if (!p)
            goto oom;
        w->ifaces = p;
        w->capifaces = cap;
    }
    wr_iface nf = {.linktype = linktype, .set = s};
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
    w->ifaces[w->nifaces] = nf;
    iface_tab_insert(w, w->nifaces);
    return (int)w->nifaces++;

oom:
    set_err(err, errlen, "interface %s/%s: out of memory (or names too long)", sensor, ifname);
    errno = ENOMEM;
    return -1;
}

int ps_writer_record(ps_writer *w, int iface, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                     const uint8_t *data)
{
    if (!w || iface < 0 || (size_t)iface >= w->nifaces) {
        errno = EINVAL;
        return -1;
    }
    wr_iface *f = &w->ifaces[iface];
    wr_set *s = f->set;
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
            rotate_for_size(s, file_close(w, s, 0));
    }
    /* While writes keep failing, memory is the limit: stop taking records
     * once a retry cannot bring the buffer back under it. */
    if (s->buf.len >= WR_BUF_HARD_MAX && set_flush(w, s) != 0 && s->buf.len >= WR_BUF_HARD_MAX)
        return -1;
    if (!s->open && file_open(w, s) != 0)
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
    meta_note(s, f, ts_ns);
    f->delivered++;
    w->totals.packets++;

    /* Best effort: a failure here keeps the bytes buffered and surfaces in
     * the next ps_writer_flush(), which is what acknowledgements wait for. */
    if (s->buf.len >= WR_FLUSH_AT) {
        int e = errno;
        (void)set_flush(w, s);
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
    wr_set *s = w->ifaces[iface].set;
    if (!is_pcapng(w) || w->to_stdout || !s->open)
        return 0;
    size_t before = s->buf.len;
    if (ps_recovery_marker(&s->buf, sensor, session, seq) != 0) {
        errno = ENOMEM;
        return -1;
    }
    s->file_bytes += s->buf.len - before;
    if (w->rotate_bytes && s->file_bytes >= w->rotate_bytes)
        rotate_for_size(s, file_close(w, s, 0));
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
    wr_set *s = f->set;
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
    if (!w)
        return 0;
    int rc = 0, e = 0;
    for (size_t i = 0; i < w->nsets; i++) {
        wr_set *s = w->sets[i];
        if (s->open && s->buf.len && set_flush(w, s) != 0 && rc == 0) {
            rc = -1;
            e = errno;
        }
    }
    if (rc)
        errno = e;
    return rc;
}

int ps_writer_tick(ps_writer *w, uint64_t now_ns)
{
    if (!w || w->to_stdout || w->rotate_seconds == 0)
        return 0;
    uint64_t age = (uint64_t)w->rotate_seconds * WR_NS;
    int rc = 0, e = 0;
    for (size_t i = 0; i < w->nsets; i++) {
        wr_set *s = w->sets[i];
        if (s->open && now_ns >= s->opened_ns && now_ns - s->opened_ns >= age &&
            file_close(w, s, 0) != 0 && rc == 0) {
            rc = -1;
            e = errno;
        }
    }
    if (rc)
        errno = e;
    return rc;
}

void ps_writer_get_totals(const ps_writer *w, ps_writer_totals *t)
{
    if (!t)
        return;
    if (!w) {
        memset(t, 0, sizeof *t);
        return;
    }
    *t = w->totals;
}

const char *ps_writer_dir(const ps_writer *w)
{
    return w ? w->dir : NULL;
}

const char *ps_writer_prefix(const ps_writer *w)
{
    return w ? w->prefix : NULL;
}

uint64_t ps_writer_disk_bytes(const ps_writer *w)
{
    uint64_t n = 0;
    for (size_t i = 0; w && !w->to_stdout && i < w->nsets; i++) {
        const wr_set *s = w->sets[i];
        n += s->done_bytes;
        if (s->open)
            n += s->file_bytes - s->buf.len; /* what reached the file */
    }
    return n;
}

static int meta_line(ps_buf *out, const char *name, const char *suffix, const wr_meta *m,
                     int complete)
{
    char line[NAME_MAX + 128];
    int n = snprintf(line, sizeof line, "%s%s\t%llu\t%llu\t%llu\t%d\t", name, suffix,
                     (unsigned long long)m->first_ns, (unsigned long long)m->last_ns,
                     (unsigned long long)m->packets, complete);
    if (n < 0 || (size_t)n >= sizeof line)
        return 0; /* cannot happen with NAME_MAX names; skip rather than cut */
    const char *sensors = m->sensors ? m->sensors : "";
    if (ps_buf_append(out, line, (size_t)n) != 0 ||
        ps_buf_append(out, sensors, strlen(sensors)) != 0 || ps_buf_append(out, "\n", 1) != 0)
        return -1;
    return 0;
}

int ps_writer_files_meta(const ps_writer *w, ps_buf *out)
{
    for (size_t i = 0; w && !w->to_stdout && i < w->nsets; i++) {
        const wr_set *s = w->sets[i];
        for (size_t k = 0; k < s->ndone; k++)
            if (s->done[k].meta.packets && meta_line(out, s->done[k].name, "", &s->done[k].meta, 1))
                return -1;
        if (s->open) {
            const char *name = strrchr(s->part, '/');
            name = name ? name + 1 : s->part;
            if (meta_line(out, name, "", &s->meta, 0) != 0)
                return -1;
        }
    }
    return 0;
}

int ps_writer_close(ps_writer *w)
{
    if (!w)
        return 0;
    int rc = 0, e = 0;
    for (size_t i = 0; i < w->nsets; i++) {
        if (file_close(w, w->sets[i], 1) != 0 && rc == 0) {
            rc = -1;
            e = errno;
        }
        set_free(w->sets[i]);
    }
    free(w->sets);
    for (size_t i = 0; i < w->nifaces; i++) {
        wr_iface *f = &w->ifaces[i];
        free(f->sensor);
        free(f->ifname);
        free(f->desc);
        ps_buf_free(&f->idb);
    }
    free(w->ifaces);
    free(w->iface_tab);
    free(w->dir);
    free(w->prefix);
    free(w->app);
    free(w);
    if (rc)
        errno = e;
    return rc;
}
