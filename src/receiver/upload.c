/*
 * upload: one worker thread and a FIFO of file names under a mutex.
 *
 * The queue is not itself persistent: what must survive a restart is which
 * files are confirmed (the journal); everything else in the directory is
 * pending by definition, so the startup scan rebuilds the queue, files the
 * writer completed during shutdown included, and the loop thread never
 * writes or fsyncs anything for an upload. One worker, one transfer at a
 * time: captures are written at disk speed and one connection with
 * keep-alive sustains that; parallel transfers would add threads and
 * ordering questions for little gain.
 *
 * On a failure the worker pauses (doubling, jittered) before its next
 * attempt at any file, not only the failing one: when the server or the
 * credentials are the problem, every file would fail the same way.
 */
#include "upload.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strvec.h"
#include "filename.h"
#include "index.h"
#include "s3cache.h"

#define UPLOAD_LOG_INTERVAL_MS 10000u

typedef struct item {
    struct item *next;
    int from_scan; /* may have been uploaded by an earlier run: HEAD first */
    int idx_only;  /* the file is confirmed: its index's upload is retried */
    char name[];
} item;

/* Metrics rows, in hub.c's table style. */
enum { M_PENDING, M_UPLOADED, M_FAILED, M_BYTES, M_SECONDS, M_COUNT };
typedef struct upload_metric {
    ps_metric_type type;
    const char *name, *help;
} upload_metric;
static const upload_metric metric_defs[M_COUNT] = {
    [M_PENDING] = {PS_METRIC_GAUGE, "packetstreamer_receiver_s3_pending",
                   "Completed capture files waiting for their upload to S3 (or being uploaded)."},
    [M_UPLOADED] = {PS_METRIC_COUNTER, "packetstreamer_receiver_s3_uploaded_total",
                    "Capture files uploaded to S3 and confirmed (size and checksum read back)."},
    [M_FAILED] = {PS_METRIC_COUNTER, "packetstreamer_receiver_s3_failed_total",
                  "Upload attempts that failed (each is retried), and files that vanished "
                  "before their upload."},
    [M_BYTES] = {PS_METRIC_COUNTER, "packetstreamer_receiver_s3_uploaded_bytes_total",
                 "Bytes of the capture files uploaded and confirmed."},
    [M_SECONDS] = {PS_METRIC_HISTOGRAM, "packetstreamer_receiver_s3_upload_seconds",
                   "Time to upload and confirm one file."},
};
static const double seconds_bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

/* A confirmed file from the journal. */
typedef struct done_entry {
    char *line; /* "NAME\tSIZE\tDEST" */
} done_entry;

struct ps_upload {
    /* fixed at open */
    char *dir, *prefix, *key_prefix, *journal_path, *bucket_name;
    int delete_local;
    uint32_t retry_max_sec;
    ps_s3 *s3;
    ps_series *m[M_COUNT];
    pthread_t thread;
    int started;

    /* shared with the worker, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
    char *in_flight; /* the name being uploaded, for dedup */
    uint64_t n_pending;
    _Atomic int stop; /* also the s3 client's cancel flag */

    /* worker's own */
    int journal_fd;
    unsigned failures; /* consecutive */
    unsigned wait_ms;  /* pause before the next attempt after a failure */
    unsigned seed;
    uint64_t last_log_ms, suppressed;

    _Atomic uint64_t uploaded, failed, bytes;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void set_pending_metric(ps_upload *u)
{
    if (u->m[M_PENDING])
        ps_series_set(u->m[M_PENDING], (double)u->n_pending);
}

/* Under mu. 1 if name is queued or in flight. */
static int queued(const ps_upload *u, const char *name)
{
    if (u->in_flight && strcmp(u->in_flight, name) == 0)
        return 1;
    for (const item *i = u->head; i; i = i->next)
        if (strcmp(i->name, name) == 0)
            return 1;
    return 0;
}

/* Under mu. */
static int enqueue_item(ps_upload *u, const char *name, int from_scan, int idx_only)
{
    if (!idx_only && queued(u, name))
        return 0;
    size_t n = strlen(name);
    item *i = malloc(sizeof(*i) + n + 1);
    if (!i)
        return -1;
    i->next = NULL;
    i->from_scan = from_scan;
    i->idx_only = idx_only;
    memcpy(i->name, name, n + 1);
    if (u->tail)
        u->tail->next = i;
    else
        u->head = i;
    u->tail = i;
    u->n_pending++;
    set_pending_metric(u);
    return 0;
}

static int enqueue(ps_upload *u, const char *name, int from_scan)
{
    return enqueue_item(u, name, from_scan, 0);
}

static void dest_of(const ps_upload *u, const char *name, char *key, size_t keylen, char *dest,
                    size_t destlen, const char *bucket)
{
    snprintf(key, keylen, "%s%s", u->key_prefix ? u->key_prefix : "", name);
    if (dest)
        snprintf(dest, destlen, "s3://%s/%s", bucket, key);
}

/* A failed attempt, logged at most once per UPLOAD_LOG_INTERVAL_MS. */
static void log_failure(ps_upload *u, int auth, const char *name, const char *why, unsigned wait_ms)
{
    uint64_t now = now_ms();
    if (u->last_log_ms && now - u->last_log_ms < UPLOAD_LOG_INTERVAL_MS) {
        u->suppressed++;
        ps_debug("upload", "upload of %s failed: %s", name, why);
        return;
    }
    char more[64] = "";
    if (u->suppressed)
        snprintf(more, sizeof(more), " (%" PRIu64 " similar messages not shown)", u->suppressed);
    u->last_log_ms = now;
    u->suppressed = 0;
    ps_log(auth ? PS_LOG_ERROR : PS_LOG_WARN, "upload",
           "upload of %s failed: %s; next attempt in %.1f s; nothing is deleted until an upload "
           "is confirmed%s",
           name, why, (double)wait_ms / 1000.0, more);
}

static int journal_append(ps_upload *u, const char *name, uint64_t size, const char *dest)
{
    char line[PATH_MAX + 1200];
    int n = snprintf(line, sizeof(line), "%s\t%" PRIu64 "\t%s\n", name, size, dest);
    if (n < 0 || (size_t)n >= sizeof(line))
        return -1;
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = write(u->journal_fd, line + off, (size_t)n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return fsync(u->journal_fd);
}

static unsigned backoff_ms(ps_upload *u)
{
    unsigned shift = u->failures > 20 ? 20 : u->failures - 1;
    uint64_t d = 1ull << shift;
    if (d > u->retry_max_sec)
        d = u->retry_max_sec;
    /* jitter: uniformly in [d/2, d] (at least 1 s) */
    uint64_t ms = d * 1000u / 2 + (uint64_t)rand_r(&u->seed) % (d * 1000u / 2 + 1);
    return (unsigned)(ms < 1000 ? 1000 : ms);
}

/* ---- side indexes (the extraction API's, index.h) ---- */

/* Where a confirmed file's index is: DIR/.index/NAME.idx while the file is
 * on disk, DIR/PS_S3CACHE_DIR/.index/NAME.idx once deleteLocal moved
 * it there. 0 with path, -1 if neither exists. */
static int index_path(const ps_upload *u, const char *name, char *path, size_t len)
{
    const char *dirs[2] = {"", "/" PS_S3CACHE_DIR};
    for (int i = 0; i < 2; i++) {
        if ((size_t)snprintf(path, len, "%s%s/%s/%s%s", u->dir, dirs[i], PS_INDEX_DIR, name,
                             PS_INDEX_EXT) < len &&
            access(path, R_OK) == 0)
            return 0;
    }
    return -1;
}

/* Before deleteLocal's unlink: makes sure the index exists (the builder
 * may not have got to the file yet) and moves it to the extraction
 * cache's index directory (s3extract.h), where the orphan sweep of the
 * builder does not delete it and extractions find it without asking the
 * bucket. Best effort: a query scans what has no index. */
static void keep_index(ps_upload *u, const char *name, uint64_t size)
{
    char from[PATH_MAX], to[PATH_MAX], sub[PATH_MAX], err[PATH_MAX + 256];
    ps_index x;
    if (ps_index_load(u->dir, name, size, &x) == 0)
        ps_index_free(&x);
    else if (ps_index_build(u->dir, name, NULL, err, sizeof(err)) != 0)
        return;
    snprintf(from, sizeof(from), "%s/%s/%s%s", u->dir, PS_INDEX_DIR, name, PS_INDEX_EXT);
    snprintf(sub, sizeof(sub), "%s/%s", u->dir, PS_S3CACHE_DIR);
    if (mkdir(sub, 0750) != 0 && errno != EEXIST)
        return;
    snprintf(sub, sizeof(sub), "%s/%s/%s", u->dir, PS_S3CACHE_DIR, PS_INDEX_DIR);
    if (mkdir(sub, 0750) != 0 && errno != EEXIST)
        return;
    if ((size_t)snprintf(to, sizeof(to), "%s/%s%s", sub, name, PS_INDEX_EXT) < sizeof(to) &&
        rename(from, to) != 0)
        ps_debug("upload", "cannot keep the index of %s: %s", name, strerror(errno));
}

/* PUTs the index of a confirmed pcapng file as KEY.idx (built if the
 * builder has not written it yet). 0, 1 to retry later, -1 when there is
 * none to send (the file is gone without one, or is not pcapng). */
static int put_index(ps_upload *u, const char *name, const char *key)
{
    char path[PATH_MAX], ikey[PATH_MAX + 700], err[PATH_MAX + 256];
    if (index_path(u, name, path, sizeof(path)) != 0) {
        if (ps_index_build(u->dir, name, NULL, err, sizeof(err)) != 0 ||
            index_path(u, name, path, sizeof(path)) != 0)
            return -1;
    }
    snprintf(ikey, sizeof(ikey), "%s%s", key, PS_INDEX_EXT);
    uint64_t bytes = 0;
    int rc = ps_s3_put_file(u->s3, ikey, path, &bytes, err, sizeof(err));
    if (rc == 0)
        return 0;
    if (rc == PS_S3_E_FILE && index_path(u, name, path, sizeof(path)) != 0)
        return -1;
    ps_warn("upload",
            "upload of the index of %s failed: %s; retried later (the capture's upload is "
            "confirmed; extractions from the bucket scan an object without index)",
            name, err);
    return 1;
}

/* The files extraction reads (query.h): pcapng, of any file set. */
static int is_pcapng(const ps_upload *u, const char *name)
{
    ps_fname f;
    return ps_fname_parse(name, u->prefix, &f) == 0 && f.pcapng && !f.part;
}

/* Uploads one file. 0 done (confirmed, or gone: drop it), 1 retry later. */
static int process(ps_upload *u, const item *it, const char *bucket)
{
    char path[PATH_MAX], key[PATH_MAX + 600], dest[PATH_MAX + 1000], err[1024];
    snprintf(path, sizeof(path), "%s/%s", u->dir, it->name);
    dest_of(u, it->name, key, sizeof(key), dest, sizeof(dest), bucket);
    if (it->idx_only) {
        if (put_index(u, it->name, key) <= 0)
            return 0;
        u->failures++;
        u->wait_ms = backoff_ms(u);
        return 1;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        ps_warn("upload", "%s is gone before its upload (deleted by retention?): not uploaded",
                path);
        atomic_fetch_add(&u->failed, 1);
        if (u->m[M_FAILED])
            ps_series_add(u->m[M_FAILED], 1);
        return 0;
    }
    uint64_t t0 = now_ms(), bytes = (uint64_t)st.st_size;
    int rc = PS_S3_E_NOTFOUND;
    if (it->from_scan)
        rc = ps_s3_confirm(u->s3, key, path, err, sizeof(err));
    if (rc == 0)
        ps_info("upload", "%s was already in %s (uploaded before a restart)", it->name, dest);
    /* A HEAD's refusal has no body to say why: the PUT's will. */
    else if (rc == PS_S3_E_NOTFOUND || rc == PS_S3_E_VERIFY || rc == PS_S3_E_AUTH)
        rc = ps_s3_put_file(u->s3, key, path, &bytes, err, sizeof(err));
    if (rc == PS_S3_E_CANCEL)
        return 1;
    if (rc == PS_S3_E_FILE && stat(path, &st) != 0) {
        ps_warn("upload", "%s vanished during its upload: not uploaded", path);
        atomic_fetch_add(&u->failed, 1);
        if (u->m[M_FAILED])
            ps_series_add(u->m[M_FAILED], 1);
        return 0;
    }
    if (rc != 0) {
        u->failures++;
        unsigned wait = u->wait_ms = backoff_ms(u);
        atomic_fetch_add(&u->failed, 1);
        if (u->m[M_FAILED])
            ps_series_add(u->m[M_FAILED], 1);
        log_failure(u, rc == PS_S3_E_AUTH, it->name, err, wait);
        return 1;
    }
    u->failures = 0;
    double secs = (double)(now_ms() - t0) / 1000.0;
    if (journal_append(u, it->name, bytes, dest) != 0)
        ps_error("upload",
                 "%s: cannot record the upload of %s (%s): it will be checked again "
                 "after a restart",
                 u->journal_path, it->name, strerror(errno));
    else if (u->delete_local) {
        if (is_pcapng(u, it->name))
            keep_index(u, it->name, bytes);
        if (unlink(path) != 0 && errno != ENOENT)
            ps_warn("upload", "cannot delete %s after its upload: %s", path, strerror(errno));
    }
    atomic_fetch_add(&u->uploaded, 1);
    atomic_fetch_add(&u->bytes, bytes);
    if (u->m[M_UPLOADED]) {
        ps_series_add(u->m[M_UPLOADED], 1);
        ps_series_add(u->m[M_BYTES], bytes);
        ps_series_observe(u->m[M_SECONDS], secs);
    }
    ps_info("upload", "uploaded %s to %s (%" PRIu64 " bytes, %.1f s, confirmed)", it->name, dest,
            bytes, secs);
    /* After the confirmation, never before nor instead: a failure here is
     * retried from the queue (pending the index's upload only). */
    if (is_pcapng(u, it->name) && put_index(u, it->name, key) > 0) {
        pthread_mutex_lock(&u->mu);
        if (enqueue_item(u, it->name, 0, 1) != 0)
            ps_warn("upload", "out of memory: the index of %s is not uploaded", it->name);
        pthread_mutex_unlock(&u->mu);
    }
    return 0;
}

static void *worker(void *arg)
{
    ps_upload *u = arg;
    pthread_mutex_lock(&u->mu);
    uint64_t resume_ms = 0;
    while (!atomic_load(&u->stop)) {
        uint64_t now = now_ms();
        if (!u->head || now < resume_ms) {
            if (!u->head) {
                pthread_cond_wait(&u->cv, &u->mu);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t wait = resume_ms - now;
                ts.tv_sec += (time_t)(wait / 1000u);
                ts.tv_nsec += (long)(wait % 1000u) * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&u->cv, &u->mu, &ts);
            }
            continue;
        }
        item *it = u->head;
        u->head = it->next;
        if (!u->head)
            u->tail = NULL;
        it->next = NULL;
        u->in_flight = it->name;
        pthread_mutex_unlock(&u->mu);

        int again = process(u, it, u->bucket_name);

        pthread_mutex_lock(&u->mu);
        u->in_flight = NULL;
        if (again) {
            /* to the end of the queue, so one bad file does not stop the rest */
            it->from_scan = 1; /* a cut transfer may have completed server-side */
            if (u->tail)
                u->tail->next = it;
            else
                u->head = it;
            u->tail = it;
            if (u->failures > 0)
                resume_ms = now_ms() + u->wait_ms;
        } else {
            free(it);
            u->n_pending--;
            set_pending_metric(u);
        }
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

/* ---- the journal and the startup scan ---- */

int ps_upload_open(ps_upload **out, const ps_upload_opts *o, char *err, size_t errlen)
{
    ps_upload *u = calloc(1, sizeof(*u));
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    u->journal_fd = -1;
    pthread_mutex_init(&u->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&u->cv, &ca);
    pthread_condattr_destroy(&ca);
    u->dir = strdup(o->dir);
    u->prefix = strdup(o->prefix);
    u->key_prefix = o->key_prefix && *o->key_prefix ? strdup(o->key_prefix) : NULL;
    u->delete_local = o->delete_local;
    u->retry_max_sec = o->retry_max_sec ? o->retry_max_sec : 300;
    u->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    size_t jl = strlen(o->dir) + strlen(o->prefix) + 32;
    u->journal_path = malloc(jl);
    if (!u->dir || !u->prefix || (o->key_prefix && *o->key_prefix && !u->key_prefix) ||
        !u->journal_path) {
        snprintf(err, errlen, "out of memory");
        ps_upload_free(u);
        return -1;
    }
    snprintf(u->journal_path, jl, "%s/.%s.s3-journal", o->dir, o->prefix);
    ps_s3_opts so = o->s3;
    so.cancel = &u->stop;
    if (ps_s3_new(&u->s3, &so, err, errlen) != 0) {
        ps_upload_free(u);
        return -1;
    }
    if (o->metrics) {
        for (int m = 0; m < M_COUNT; m++) {
            const upload_metric *d = &metric_defs[m];
            ps_metric *f = d->type == PS_METRIC_HISTOGRAM
                               ? ps_metrics_histogram(
                                     o->metrics, d->name, d->help, NULL, seconds_bounds,
                                     (int)(sizeof(seconds_bounds) / sizeof(seconds_bounds[0])))
                               : ps_metrics_family(o->metrics, d->type, d->name, d->help, NULL);
            u->m[m] = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
            if (!u->m[m]) {
                snprintf(err, errlen, "out of memory");
                ps_upload_free(u);
                return -1;
            }
        }
    }

    /* The files of the directory, sorted. */
    ps_strvec files = PS_STRVEC_INIT, confirmed = PS_STRVEC_INIT, keep = PS_STRVEC_INIT;
    DIR *d = opendir(o->dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", o->dir, strerror(errno));
        ps_upload_free(u);
        return -1;
    }
    struct dirent *de;
    int oom = 0;
    while ((de = readdir(d))) {
        ps_fname f;
        if (ps_fname_parse(de->d_name, o->prefix, &f) == 0 && !f.part &&
            ps_strvec_add(&files, de->d_name) != 0)
            oom = 1;
    }
    closedir(d);
    ps_strvec_sort(&files);

    /* The journal: a line counts if its file is here with that size and
     * the destination is today's. */
    FILE *jf = fopen(u->journal_path, "re");
    if (jf) {
        char line[PATH_MAX + 1200];
        while (!oom && fgets(line, sizeof(line), jf)) {
            size_t n = strlen(line);
            if (n == 0 || line[n - 1] != '\n')
                continue; /* a torn last line */
            line[n - 1] = '\0';
            char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
            if (!t1 || !t2)
                continue;
            *t1 = *t2 = '\0';
            char path[PATH_MAX + 1300], key[PATH_MAX + 600], dest[PATH_MAX + 1000];
            if (!ps_strvec_has(&files, line))
                continue; /* gone: forget it */
            snprintf(path, sizeof(path), "%s/%s", o->dir, line);
            dest_of(u, line, key, sizeof(key), dest, sizeof(dest), o->s3.bucket);
            struct stat st;
            if (stat(path, &st) != 0 || strtoull(t1 + 1, NULL, 10) != (uint64_t)st.st_size ||
                strcmp(t2 + 1, dest) != 0)
                continue;
            *t1 = *t2 = '\t';
            if (ps_strvec_add(&keep, line) != 0) {
                oom = 1;
                break;
            }
            *t1 = '\0';
            if (u->delete_local) {
                /* confirmed, but a crash came before the delete */
                if (unlink(path) == 0)
                    ps_info("upload", "deleted %s (its upload was confirmed before a restart)",
                            path);
                continue;
            }
            if (ps_strvec_add(&confirmed, line) != 0)
                oom = 1;
        }
        fclose(jf);
    }
    ps_strvec_sort(&confirmed);

    /* Compact: write what is kept to a new journal, fsync, rename. */
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", u->journal_path);
    int fd = oom ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int bad = fd < 0;
    for (size_t i = 0; !bad && i < keep.n; i++) {
        if (u->delete_local)
            break; /* their files are deleted: nothing to remember */
        size_t n = strlen(keep.v[i]);
        if (write(fd, keep.v[i], n) != (ssize_t)n || write(fd, "\n", 1) != 1)
            bad = 1;
    }
    if (!bad && (fsync(fd) != 0 || rename(tmp, u->journal_path) != 0))
        bad = 1;
    if (fd >= 0)
        close(fd);
    if (!bad) {
        u->journal_fd = open(u->journal_path, O_WRONLY | O_APPEND | O_CLOEXEC);
        bad = u->journal_fd < 0;
    }
    if (bad || oom) {
        snprintf(err, errlen, "%s: %s", oom ? "upload queue" : u->journal_path,
                 oom ? "out of memory" : strerror(errno));
        unlink(tmp);
        ps_strvec_free(&files);
        ps_strvec_free(&confirmed);
        ps_strvec_free(&keep);
        ps_upload_free(u);
        return -1;
    }
    for (size_t i = 0; i < files.n && !oom; i++) {
        if (ps_strvec_has(&confirmed, files.v[i]))
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", o->dir, files.v[i]);
        if (access(path, F_OK) != 0)
            continue; /* deleted above */
        if (enqueue(u, files.v[i], 1) != 0)
            oom = 1;
    }
    ps_strvec_free(&files);
    ps_strvec_free(&confirmed);
    ps_strvec_free(&keep);
    if (oom) {
        snprintf(err, errlen, "upload queue: out of memory");
        ps_upload_free(u);
        return -1;
    }
    u->bucket_name = strdup(o->s3.bucket ? o->s3.bucket : "");
    if (!u->bucket_name || pthread_create(&u->thread, NULL, worker, u) != 0) {
        snprintf(err, errlen, "cannot start the upload thread");
        ps_upload_free(u);
        return -1;
    }
    u->started = 1;
    if (u->n_pending)
        ps_info("upload", "%" PRIu64 " completed files in %s to upload", u->n_pending, o->dir);
    *out = u;
    return 0;
}

void ps_upload_file_closed(ps_upload *u, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    pthread_mutex_lock(&u->mu);
    if (enqueue(u, name, 0) != 0)
        ps_error("upload", "out of memory: %s will be uploaded after a restart", name);
    pthread_cond_signal(&u->cv);
    pthread_mutex_unlock(&u->mu);
}

void ps_upload_get_stats(ps_upload *u, ps_upload_stats *st)
{
    pthread_mutex_lock(&u->mu);
    st->pending = u->n_pending;
    pthread_mutex_unlock(&u->mu);
    st->uploaded = atomic_load(&u->uploaded);
    st->failed = atomic_load(&u->failed);
    st->bytes = atomic_load(&u->bytes);
}

void ps_upload_free(ps_upload *u)
{
    if (!u)
        return;
    if (u->started) {
        pthread_mutex_lock(&u->mu);
        atomic_store(&u->stop, 1);
        pthread_cond_broadcast(&u->cv);
        pthread_mutex_unlock(&u->mu);
        pthread_join(u->thread, NULL);
    }
    while (u->head) {
        item *i = u->head;
        u->head = i->next;
        free(i);
    }
    if (u->journal_fd >= 0)
        close(u->journal_fd);
    ps_s3_free(u->s3);
    pthread_cond_destroy(&u->cv);
    pthread_mutex_destroy(&u->mu);
    free(u->bucket_name);
    free(u->dir);
    free(u->prefix);
    free(u->key_prefix);
    free(u->journal_path);
    free(u);
}
