/*
 * fileset: the receiver's output directory and file sets (path rules,
 * naming, rotation's mechanics, retention, .part files, stdout). The rules
 * are documented in fileset.h; names come from filename.h.
 *
 * Each set owns its current file, its encode buffer (filled by the record
 * path in writer.c), its name counter and the list of its completed files
 * (for retention).
 *
 * Why a .part file: readers (the HTTP file list, an operator's tcpdump) must
 * never pick up a file that is still growing, and a crash must leave an
 * obvious partial file rather than one that looks complete. The rename to
 * the final name is the commit point; on_file_closed runs after it.
 *
 * Each file gets a generation number, so the record path can tell "this
 * interface's IDB is already in the current file" with one compare.
 *
 * Errors go to err/errno for the caller to act on. Only what the caller
 * cannot see or name is logged here: which file could not be completed or
 * deleted, and a size rotation put off because writes fail. That rotation
 * never fails the record: the session would drop the connection mid-batch
 * and the resent batch would duplicate the records already taken. The
 * record stays buffered and the next flush, which acknowledgements wait on,
 * reports.
 */
#include "fileset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pcapng.h"
#include "filename.h"
#include "recovery.h"

#define FS_DEFAULT_PREFIX "packetstreamer"
#define FS_OPEN_ATTEMPTS 1000 /* names to try when others write the same dir */
#define FS_NS 1000000000ull
#define FS_LOG_EVERY_NS (60 * FS_NS)

struct ps_files {
    ps_format format;
    int to_stdout;
    char *dir; /* NULL for stdout */
    char *prefix;
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

    ps_fileset **sets;
    size_t nsets, capsets;
    uint64_t next_gen;
    ps_files_totals totals;

    /* Open per-sensor files (fileset.h, "Open files"). */
    uint64_t idle_ns;         /* 0: never close for idleness */
    uint64_t max_open;        /* 0: unlimited */
    uint64_t limit_logged_ns; /* the "closed early" line, at most once a minute */
};

static uint64_t now_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * FS_NS + (uint64_t)ts.tv_nsec;
}

static int is_pcapng(const ps_files *fs)
{
    return fs->format == PS_FORMAT_PCAPNG;
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
 * the rules in fileset.h. */
static int resolve_path(const char *path, char **dir, char **prefix)
{
    size_t n = strlen(path);
    const char *pfx = FS_DEFAULT_PREFIX;
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
        ps_errbuf(err, errlen, "output directory %s: %s", dir, strerror(errno));
        return -1;
    }
    int fd = mkstemp(probe);
    if (fd < 0) {
        int e = errno;
        ps_errbuf(err, errlen, "output directory %s is not writable: %s", dir, strerror(e));
        errno = e;
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

/* ---- file sets ----------------------------------------------------------- */

static int done_add(ps_fileset *s, const char *name, uint64_t size, uint64_t counter)
{
    if (s->ndone == s->capdone) {
        size_t cap = s->capdone ? s->capdone * 2 : 16;
        ps_file_done *d = realloc(s->done, cap * sizeof *d);
        if (!d)
            return -1;
        s->done = d;
        s->capdone = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    s->done[s->ndone++] = (ps_file_done){copy, size, counter, {0, 0, 0, NULL}};
    s->done_bytes += size;
    return 0;
}

static int done_cmp(const void *a, const void *b)
{
    const ps_file_done *x = a, *y = b;
    if (x->counter != y->counter)
        return x->counter < y->counter ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int evict_lru(ps_files *fs, const ps_fileset *keep, int why_errno);

static int out_of_fds(int e)
{
    return e == EMFILE || e == ENFILE;
}

/* Reads the directory once per set: the highest counter (so new names never
 * collide with earlier runs) and the completed files retention must count. */
static int set_scan(ps_files *fs, ps_fileset *s, char *err, size_t errlen)
{
    DIR *d = opendir(fs->dir);
    if (!d && out_of_fds(errno) && evict_lru(fs, s, errno) == 0)
        d = opendir(fs->dir);
    if (!d) {
        int e = errno;
        ps_errbuf(err, errlen, "output directory %s: %s", fs->dir, strerror(e));
        errno = e;
        return -1;
    }
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
        /* Only this set's names count: one with a KEY belongs to another
         * set (PREFIX-KEY-...), one outside the grammar to a user. */
        ps_fname fn;
        if (ps_fname_parse(de->d_name, s->prefix, &fn) != 0 || fn.key)
            continue;
        uint64_t counter = fn.counter;
        if (counter > max)
            max = counter;
        if (fn.part)
            continue; /* unfinished (crashed run): kept for repair, not counted */
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (done_add(s, de->d_name, (uint64_t)st.st_size, counter) != 0) {
            closedir(d);
            ps_errbuf(err, errlen, "out of memory scanning %s", fs->dir);
            errno = ENOMEM;
            return -1;
        }
    }
    closedir(d);
    if (e) {
        ps_errbuf(err, errlen, "output directory %s: %s", fs->dir, strerror(e));
        errno = e;
        return -1;
    }
    if (s->ndone > 1)
        qsort(s->done, s->ndone, sizeof *s->done, done_cmp);
    s->next_counter = max + 1;
    return 0;
}

static void set_free(ps_fileset *s)
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

/* Creates a set (key NULL: the single set) and scans the directory for it. */
static ps_fileset *set_new(ps_files *fs, const char *sensor, char *err, size_t errlen)
{
    if (fs->nsets == fs->capsets) {
        size_t cap = fs->capsets ? fs->capsets * 2 : 4;
        ps_fileset **p = realloc(fs->sets, cap * sizeof *p);
        if (!p)
            goto oom;
        fs->sets = p;
        fs->capsets = cap;
    }
    ps_fileset *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->fd = -1;
    s->next_counter = 1;
    if (sensor) {
        s->key = ps_fname_key(sensor);
        size_t n = s->key ? strlen(fs->prefix) + 1 + strlen(s->key) + 1 : 0;
        s->prefix = n ? malloc(n) : NULL;
        if (s->prefix)
            snprintf(s->prefix, n, "%s-%s", fs->prefix, s->key);
    } else {
        s->prefix = strdup(fs->prefix ? fs->prefix : "");
    }
    if (!s->prefix) {
        set_free(s);
        goto oom;
    }
    if (!fs->to_stdout && set_scan(fs, s, err, errlen) != 0) {
        int e = errno;
        set_free(s);
        errno = e;
        return NULL;
    }
    fs->sets[fs->nsets++] = s;
    return s;

oom:
    ps_errbuf(err, errlen, "out of memory");
    errno = ENOMEM;
    return NULL;
}

ps_fileset *ps_files_set_for(ps_files *fs, const char *sensor, char *err, size_t errlen)
{
    if (!fs->per_sensor || fs->to_stdout)
        return fs->sets[0];
    char *key = ps_fname_key(sensor);
    if (!key) {
        ps_errbuf(err, errlen, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < fs->nsets; i++) {
        if (strcmp(fs->sets[i]->key, key) == 0) {
            free(key);
            return fs->sets[i];
        }
    }
    free(key);
    return set_new(fs, sensor, err, errlen);
}

/* ---- files --------------------------------------------------------------- */

/* Writes the set's buffer out. On error exactly the bytes write(2) accepted
 * are consumed, so a retry continues the file byte for byte. */
int ps_fileset_flush(ps_files *fs, ps_fileset *s)
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
    fs->totals.bytes += off;
    ps_buf_consume(&s->buf, off);
    errno = e;
    return rc;
}

static void file_forget(ps_files *fs, ps_fileset *s)
{
    if (s->open && !fs->to_stdout && fs->totals.open_files > 0)
        fs->totals.open_files--;
    free(s->meta.sensors);
    memset(&s->meta, 0, sizeof(s->meta));
    s->open = 0;
    s->fd = -1;
    s->file_bytes = s->file_packets = 0;
    ps_buf_reset(&s->buf);
}

/* Starts the set's next file: header into the (empty) buffer, then
 * NAME.part created with O_EXCL under a name that exists in neither form. */
int ps_fileset_start(ps_files *fs, ps_fileset *s)
{
    int rc = is_pcapng(fs) ? ps_pcapng_shb(&s->buf, fs->app, fs->os[0] ? fs->os : NULL)
                           : ps_pcap_file_header(&s->buf, fs->format == PS_FORMAT_PCAP_NS,
                                                 PS_FILESET_SNAPLEN, s->linktype);
    if (rc != 0) {
        errno = ENOMEM;
        return -1;
    }
    uint64_t now = now_realtime_ns();

    if (fs->to_stdout) {
        s->fd = STDOUT_FILENO;
    } else {
        /* Make room first: a file completed now is cheaper than an EMFILE
         * later, which would fail some sensor's batch. */
        if (fs->max_open && fs->per_sensor && fs->totals.open_files >= fs->max_open)
            (void)evict_lru(fs, s, 0);
        time_t t = (time_t)(now / FS_NS);
        int fd = -1;
        for (int attempt = 0; fd < 0; attempt++) {
            char name[NAME_MAX + 1];
            struct stat st;
            uint64_t counter = s->next_counter++;
            /* Room left for the .part suffix: both names must fit. */
            if (ps_fname_format(name, sizeof name - strlen(PS_FNAME_PART), s->prefix, t, counter,
                                is_pcapng(fs)) != 0)
                goto fail;
            if (join_path(s->final, sizeof s->final, fs->dir, name, "") != 0 ||
                join_path(s->part, sizeof s->part, fs->dir, name, PS_FNAME_PART) != 0)
                goto fail;
            if (lstat(s->final, &st) == 0) {
                if (attempt >= FS_OPEN_ATTEMPTS) {
                    errno = EEXIST;
                    goto fail;
                }
                continue;
            }
            fd = open(s->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)fs->mode);
            if (fd < 0 && out_of_fds(errno) && evict_lru(fs, s, errno) == 0)
                fd = open(s->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)fs->mode);
            if (fd >= 0)
                s->counter = counter;
            else if (errno != EEXIST || attempt >= FS_OPEN_ATTEMPTS)
                goto fail;
        }
        s->fd = fd;
    }
    s->open = 1;
    if (!fs->to_stdout)
        fs->totals.open_files++;
    s->tick_use = s->last_use;
    s->active_ns = now;
    s->gen = fs->next_gen++;
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
static void retention(ps_files *fs, ps_fileset *s)
{
    size_t drop = 0;
    uint64_t bytes = s->done_bytes;
    while (drop < s->ndone && ((fs->max_files && s->ndone - drop > fs->max_files) ||
                               (fs->max_total_bytes && bytes > fs->max_total_bytes))) {
        char path[PATH_MAX];
        ps_file_done *d = &s->done[drop];
        if (join_path(path, sizeof path, fs->dir, d->name, "") == 0) {
            if (unlink(path) == 0)
                fs->totals.files_deleted++;
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
static int file_close(ps_files *fs, ps_fileset *s, int final)
{
    if (!s->open)
        return 0;
    /* A failed flush below may leave this checkpoint in the middle of the
     * file once later records follow; recovery reads only the last one. */
    if (is_pcapng(fs) && !fs->to_stdout && fs->checkpoint) {
        size_t before = s->buf.len;
        if (fs->checkpoint(fs->ud, &s->buf) == 0) {
            s->file_bytes += s->buf.len - before;
        } else {
            /* Only memory can fail it (it has no size limit); the file is
             * still whole, but a restart would not know what it holds. */
            s->buf.len = before;
            fs->totals.checkpoint_failures++;
            ps_error("writer",
                     "cannot add the restart checkpoint to %s: out of memory; after a restart "
                     "sensors may resend batches it already holds",
                     s->part);
        }
    }
    if (ps_fileset_flush(fs, s) != 0) {
        if (!final)
            return -1;
        int e = errno;
        if (!fs->to_stdout) {
            ps_error("writer", "cannot complete %s: %s; %zu bytes not written, file left as is",
                     s->part, strerror(e), s->buf.len);
            close(s->fd);
        }
        file_forget(fs, s);
        errno = e;
        return -1;
    }
    if (fs->to_stdout) {
        file_forget(fs, s); /* fd 1 belongs to the process, not to us */
        return 0;
    }
    uint64_t packets = s->file_packets, bytes = s->file_bytes;
    ps_file_meta meta = s->meta; /* file_forget() would free it */
    s->meta.sensors = NULL;
    int rc = close(s->fd);
    int e = errno;
    file_forget(fs, s);
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
    fs->totals.files_closed++;
    const char *name = strrchr(s->final, '/');
    name = name ? name + 1 : s->final;
    /* Untracked on OOM: the file is only exempt from retention this run. */
    if (done_add(s, name, bytes, s->counter) == 0)
        s->done[s->ndone - 1].meta = meta; /* takes the sensors string */
    else
        free(meta.sensors);
    if (fs->on_file_closed)
        fs->on_file_closed(fs->ud, s->final, packets, bytes);
    retention(fs, s);
    return 0;
}

void ps_fileset_rotate(ps_files *fs, ps_fileset *s)
{
    int rc = file_close(fs, s, 0);
    if (rc == 0) {
        if (s->rotate_deferred)
            ps_info("writer", "writes work again; rotation of %s done", s->final);
        s->rotate_deferred = 0;
    } else if (s->open && !s->rotate_deferred) {
        ps_warn("writer", "cannot complete %s: %s; rotation deferred", s->part, strerror(errno));
        s->rotate_deferred = 1;
    }
}

/*
 * Completes the least recently used open file other than keep's, to stay
 * under max_open_files (why_errno 0) or because the process ran out of file
 * descriptors (EMFILE, ENFILE). 0 if a file was closed. Only between
 * batches: the record path starts a file at a batch's first record, and a
 * batch's records all go to one set (keep).
 */
static int evict_lru(ps_files *fs, const ps_fileset *keep, int why_errno)
{
    ps_fileset *lru = NULL;
    for (size_t i = 0; i < fs->nsets; i++) {
        ps_fileset *s = fs->sets[i];
        if (s != keep && s->open && (!lru || s->last_use < lru->last_use))
            lru = s;
    }
    if (!lru)
        return -1;
    (void)file_close(fs, lru, 0);
    if (lru->open)
        return -1; /* its flush failed: it stays current, nothing was freed */
    fs->totals.closed_open_limit++;
    uint64_t now = now_realtime_ns();
    if (fs->limit_logged_ns == 0 || now - fs->limit_logged_ns >= FS_LOG_EVERY_NS) {
        fs->limit_logged_ns = now;
        if (why_errno)
            ps_warn("writer", "%s: completed %s early to free a file descriptor (%llu files open)",
                    strerror(why_errno), lru->final, (unsigned long long)fs->totals.open_files);
        else
            ps_warn("writer",
                    "%llu per-sensor files open, the limit: completed %s early (the least "
                    "recently used; logged once a minute)",
                    (unsigned long long)fs->max_open, lru->final);
    }
    return 0;
}

/* A compare per record, and a string append only the first time a sensor
 * appears in a file. */
void ps_fileset_note(ps_fileset *s, uint64_t ts_ns, const char *sensor)
{
    ps_file_meta *m = &s->meta;
    if (m->packets == 0 || ts_ns < m->first_ns)
        m->first_ns = ts_ns;
    if (ts_ns > m->last_ns)
        m->last_ns = ts_ns;
    m->packets++;
    if (!sensor)
        return;
    size_t il = strlen(sensor), ol = m->sensors ? strlen(m->sensors) : 0;
    for (const char *p = m->sensors; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == il && memcmp(p, sensor, il) == 0)
            return;
        p += n + (comma ? 1 : 0);
    }
    char *n = realloc(m->sensors, ol + il + 2);
    if (!n)
        return;
    if (ol)
        n[ol++] = ',';
    memcpy(n + ol, sensor, il + 1);
    m->sensors = n;
}

/* ---- the whole output ---------------------------------------------------- */

int ps_files_open(ps_files **out, const ps_files_opts *o, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!out || !o || !o->path || !o->path[0]) {
        ps_errbuf(err, errlen, "output path is empty");
        errno = EINVAL;
        return -1;
    }
    if (o->format != PS_FORMAT_PCAPNG && o->format != PS_FORMAT_PCAP &&
        o->format != PS_FORMAT_PCAP_NS) {
        ps_errbuf(err, errlen, "unknown output format %d", (int)o->format);
        errno = EINVAL;
        return -1;
    }
    ps_files *fs = calloc(1, sizeof *fs);
    if (!fs)
        goto oom;
    fs->format = o->format;
    fs->rotate_seconds = o->rotate_seconds;
    fs->max_files = o->max_files;
    fs->max_total_bytes = o->max_total_bytes;
    fs->per_sensor = o->per_sensor;
    fs->idle_ns = (uint64_t)o->idle_close_seconds * FS_NS;
    fs->max_open = o->max_open_files;
    /* Connections need descriptors too: files never take more than a
     * quarter of what the process may open. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        uint64_t cap = rl.rlim_cur / 4 < 4 ? 4 : (uint64_t)rl.rlim_cur / 4;
        if (fs->max_open == 0 || fs->max_open > cap)
            fs->max_open = cap;
    }
    /* Captures hold credentials and personal data: never world-readable by
     * default (the umask can only make this stricter). */
    fs->mode = o->mode ? o->mode & 0666u : 0640u;
    fs->on_file_closed = o->on_file_closed;
    fs->checkpoint = o->checkpoint;
    fs->ud = o->ud;
    fs->next_gen = 1;
    fs->app = strdup(o->app ? o->app : FS_DEFAULT_PREFIX);
    if (!fs->app)
        goto oom;
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(fs->os, sizeof fs->os, "%.80s %.80s %.80s", u.sysname, u.release, u.machine);

    if (ps_config_path_is_stdout(o->path)) {
        fs->to_stdout = 1;
        if (fcntl(STDOUT_FILENO, F_GETFL) < 0) {
            ps_errbuf(err, errlen, "output %s: standard output is not open", o->path);
            ps_files_close(fs);
            errno = EBADF;
            return -1;
        }
    } else {
        if (resolve_path(o->path, &fs->dir, &fs->prefix) != 0)
            goto oom;
        if (mkdir_p(fs->dir) != 0) {
            int e = errno;
            ps_errbuf(err, errlen, "cannot create output directory %s: %s", fs->dir, strerror(e));
            ps_files_close(fs);
            errno = e;
            return -1;
        }
        if (check_writable(fs->dir, fs->prefix, err, errlen) != 0) {
            int e = errno;
            ps_files_close(fs);
            errno = e;
            return -1;
        }
    }
    /* Before any set scans the directory: repaired .part files take their
     * final names, and the caller learns what earlier runs wrote. */
    if (!fs->to_stdout && o->on_recovered) {
        ps_recovery_report rep;
        if (ps_recovery_run(fs->dir, fs->prefix, fs->format, o->on_recovered, o->ud, &rep, err,
                            errlen) != 0) {
            ps_files_close(fs);
            errno = EIO;
            return -1;
        }
        if (rep.entries)
            ps_info("writer", "%s: %u files repaired, %u checkpoints read, %llu sequence facts",
                    fs->dir, rep.repaired, rep.files_read, (unsigned long long)rep.entries);
    }
    /* The single set exists from the start so its directory scan (and any
     * error in it) happens here; per-sensor sets appear with their sensor. */
    if (!fs->per_sensor || fs->to_stdout) {
        if (!set_new(fs, NULL, err, errlen)) {
            int e = errno;
            ps_files_close(fs);
            errno = e;
            return -1;
        }
    }
    *out = fs;
    return 0;

oom:
    ps_files_close(fs);
    ps_errbuf(err, errlen, "out of memory");
    errno = ENOMEM;
    return -1;
}

int ps_files_to_stdout(const ps_files *fs)
{
    return fs->to_stdout;
}

int ps_files_flush(ps_files *fs)
{
    if (!fs)
        return 0;
    int rc = 0, e = 0;
    for (size_t i = 0; i < fs->nsets; i++) {
        ps_fileset *s = fs->sets[i];
        if (s->open && s->buf.len && ps_fileset_flush(fs, s) != 0 && rc == 0) {
            rc = -1;
            e = errno;
        }
    }
    if (rc)
        errno = e;
    return rc;
}

/* A per-sensor file that took no record for idle_ns: its sensor has left
 * or gone quiet, and an open file would hold a descriptor for good. */
static int is_idle(ps_files *fs, ps_fileset *s, uint64_t now_ns)
{
    if (!fs->per_sensor || !fs->idle_ns)
        return 0;
    if (s->last_use != s->tick_use || now_ns < s->active_ns) {
        s->tick_use = s->last_use;
        s->active_ns = now_ns; /* active since the last tick (or the clock went back) */
        return 0;
    }
    return now_ns - s->active_ns >= fs->idle_ns;
}

int ps_files_tick(ps_files *fs, uint64_t now_ns)
{
    if (!fs || fs->to_stdout)
        return 0;
    uint64_t age = (uint64_t)fs->rotate_seconds * FS_NS;
    int rc = 0, e = 0;
    for (size_t i = 0; i < fs->nsets; i++) {
        ps_fileset *s = fs->sets[i];
        if (!s->open)
            continue;
        int old = age && now_ns >= s->opened_ns && now_ns - s->opened_ns >= age;
        int idle = !old && is_idle(fs, s, now_ns);
        if (!old && !idle)
            continue;
        if (file_close(fs, s, 0) != 0) {
            if (rc == 0) {
                rc = -1;
                e = errno;
            }
        } else if (idle) {
            fs->totals.closed_idle++;
            ps_debug("writer", "%s: no record for %llu s, completed", s->final,
                     (unsigned long long)(fs->idle_ns / FS_NS));
        }
    }
    if (rc)
        errno = e;
    return rc;
}

void ps_files_get_totals(const ps_files *fs, ps_files_totals *t)
{
    if (!t)
        return;
    if (!fs) {
        memset(t, 0, sizeof *t);
        return;
    }
    *t = fs->totals;
}

const char *ps_files_dir(const ps_files *fs)
{
    return fs ? fs->dir : NULL;
}

const char *ps_files_prefix(const ps_files *fs)
{
    return fs ? fs->prefix : NULL;
}

uint64_t ps_files_disk_bytes(const ps_files *fs)
{
    uint64_t n = 0;
    for (size_t i = 0; fs && !fs->to_stdout && i < fs->nsets; i++) {
        const ps_fileset *s = fs->sets[i];
        n += s->done_bytes;
        if (s->open)
            n += s->file_bytes - s->buf.len; /* what reached the file */
    }
    return n;
}

static int meta_line(ps_buf *out, const char *name, const char *suffix, const ps_file_meta *m,
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

int ps_files_meta(const ps_files *fs, ps_buf *out)
{
    for (size_t i = 0; fs && !fs->to_stdout && i < fs->nsets; i++) {
        const ps_fileset *s = fs->sets[i];
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

int ps_files_close(ps_files *fs)
{
    if (!fs)
        return 0;
    int rc = 0, e = 0;
    for (size_t i = 0; i < fs->nsets; i++) {
        if (file_close(fs, fs->sets[i], 1) != 0 && rc == 0) {
            rc = -1;
            e = errno;
        }
        set_free(fs->sets[i]);
    }
    free(fs->sets);
    free(fs->dir);
    free(fs->prefix);
    free(fs->app);
    free(fs);
    if (rc)
        errno = e;
    return rc;
}
