/*
 * s3extract: index acquisition and object fetching for extractions from
 * the bucket (see s3extract.h).
 *
 * Why indexes are planned before the query and objects fetched only after
 * it selected them: an index is a few KiB and says which objects can hold
 * the window's packets of the selected interfaces; the objects are
 * megabytes. So a narrow question costs one small GET per object the
 * first time (then nothing: indexes are kept in the cache's .index) and
 * only the objects that matter.
 *
 * Why whole objects rather than the index's chunk ranges: see s3cache.c.
 */
#include "s3extract.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strvec.h"

#define X_MAX_IDX (64u << 20) /* index.c refuses larger ones too */

typedef struct x_obj {
    char *key, *name, *who, *cname;
    uint64_t size;
    ps_index x;
    int has_x;
} x_obj;

struct ps_s3extract {
    ps_s3extract_opts o;
    char *own_key_prefix;
    ps_s3 *s3;
    x_obj *objs;
    size_t n;
    ps_query_remote *remote; /* objs with an index */
    size_t nremote;
    size_t *remote_obj; /* remote[i] is objs[remote_obj[i]] */
    ps_query_source src;
    ps_strvec held; /* cache names acquired, released at free */
    ps_s3extract_stats st;
};

int ps_s3extract_cname(const char *who, const char *name, char *out, size_t outlen)
{
    int n = who && who[0] ? snprintf(out, outlen, "%s@%s", who, name)
                          : snprintf(out, outlen, "%s", name);
    if (n < 0 || (size_t)n >= outlen || !ps_s3cache_name_ok(out))
        return -1;
    return 0;
}

static void count(ps_series *s, uint64_t n)
{
    if (s && n)
        ps_series_add(s, n);
}

/* ---- GET into a file ---- */

typedef struct to_fd {
    int fd;
    uint64_t got, max;
    int werr;
} to_fd;

static int sink_fd(void *ud, const void *data, size_t len)
{
    to_fd *t = ud;
    if (t->got + len > t->max) {
        t->werr = EFBIG;
        return 1;
    }
    const uint8_t *p = data;
    while (len) {
        ssize_t k = write(t->fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            t->werr = k < 0 ? errno : EIO;
            return 1;
        }
        p += k;
        len -= (size_t)k;
        t->got += (uint64_t)k;
    }
    return 0;
}

/* GET key into fd, at most max bytes. 0; PS_S3_E_NOTFOUND; PS_QUERY_E_REMOTE
 * (the bucket failed) or -1 (a local write failed) with err. */
static int get_to_fd(ps_s3 *s3, const char *key, int fd, uint64_t max, uint64_t *got, char *err,
                     size_t errlen)
{
    to_fd t = {.fd = fd, .max = max};
    uint64_t total = 0;
    char why[1024];
    int rc = ps_s3_get(s3, key, 0, 0, &total, sink_fd, &t, why, sizeof(why));
    *got = t.got;
    if (rc == 0)
        return 0;
    if (t.werr) {
        snprintf(err, errlen, "%s: %s", key,
                 t.werr == EFBIG ? "larger than expected" : strerror(t.werr));
        return t.werr == EFBIG ? PS_QUERY_E_REMOTE : -1;
    }
    if (rc == PS_S3_E_NOTFOUND)
        return PS_S3_E_NOTFOUND;
    snprintf(err, errlen, "the bucket did not answer for %.300s: %s", key, why);
    return PS_QUERY_E_REMOTE;
}

typedef struct fill_ctx {
    ps_s3extract *x;
    const char *key;
    uint64_t size;
} fill_ctx;

static int fill_object(void *ud, int fd, char *err, size_t errlen)
{
    fill_ctx *f = ud;
    uint64_t got = 0;
    int rc = get_to_fd(f->x->s3, f->key, fd, f->size, &got, err, errlen);
    if (rc == PS_S3_E_NOTFOUND) {
        snprintf(err, errlen, "%.300s is no longer in the bucket (deleted by a lifecycle rule?)",
                 f->key);
        return PS_QUERY_E_REMOTE;
    }
    return rc;
}

/* Object cname (key, size) in the cache, fetched if missing, acquired
 * (the caller releases it): 0 with its path, or a PS_QUERY_E_* code / -1
 * with err. */
static int cache_get(ps_s3extract *x, const char *cname, const char *key, uint64_t size, char *path,
                     size_t pathlen, char *err, size_t errlen)
{
    fill_ctx f = {.x = x, .key = key, .size = size};
    uint64_t fetched = 0;
    int rc = ps_s3cache_acquire(x->o.cache, cname, size, fill_object, &f, path, pathlen, &fetched,
                                err, errlen);
    if (rc == PS_S3CACHE_E_TOOBIG)
        return PS_QUERY_E_TOOBIG;
    if (rc == PS_S3CACHE_E_FULL)
        return PS_QUERY_E_BUSY;
    if (rc != 0)
        return rc;
    if (fetched) {
        x->st.fetched++;
        x->st.fetched_bytes += fetched;
        count(x->o.fetched_objects, 1);
        count(x->o.fetched_bytes, fetched);
    }
    return 0;
}

/* cache_get, held until ps_s3extract_free: for the objects the query reads. */
static int acquire(ps_s3extract *x, const char *cname, const char *key, uint64_t size, char *path,
                   size_t pathlen, char *err, size_t errlen)
{
    int rc = cache_get(x, cname, key, size, path, pathlen, err, errlen);
    if (rc != 0)
        return rc;
    if (ps_strvec_add(&x->held, cname) != 0) {
        ps_s3cache_release(x->o.cache, cname);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- indexes ---- */

/* GET KEY.idx into CACHE/.index/CNAME.idx. 0, 1 when the bucket has none,
 * or a PS_QUERY_E_* code / -1 with err. */
static int fetch_idx(ps_s3extract *x, const x_obj *ob, char *err, size_t errlen)
{
    static atomic_uint seq;
    const char *cdir = ps_s3cache_dir(x->o.cache);
    char sub[PATH_MAX], tmp[PATH_MAX], fin[PATH_MAX], key[PATH_MAX];
    if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", cdir, PS_INDEX_DIR) >= sizeof(sub) ||
        (size_t)snprintf(tmp, sizeof(tmp), "%s/.%s%s.tmp%ld.%u", sub, ob->cname, PS_INDEX_EXT,
                         (long)getpid(), atomic_fetch_add(&seq, 1)) >= sizeof(tmp) ||
        (size_t)snprintf(fin, sizeof(fin), "%s/%s%s", sub, ob->cname, PS_INDEX_EXT) >=
            sizeof(fin) ||
        (size_t)snprintf(key, sizeof(key), "%s%s", ob->key, PS_INDEX_EXT) >= sizeof(key)) {
        snprintf(err, errlen, "path too long for %s", ob->cname);
        return -1;
    }
    if (mkdir(sub, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", sub, strerror(errno));
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    uint64_t got = 0;
    int rc = get_to_fd(x->s3, key, fd, X_MAX_IDX, &got, err, errlen);
    if (close(fd) != 0 && rc == 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, fin) != 0) {
        snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        unlink(tmp);
    if (rc == PS_S3_E_NOTFOUND)
        return 1;
    if (rc == 0)
        x->st.idx_fetched++;
    return rc;
}

/* Fills ob->x. 0, or a PS_QUERY_E_* code / -1 with err. */
static int describe(ps_s3extract *x, x_obj *ob, char *err, size_t errlen)
{
    const char *cdir = ps_s3cache_dir(x->o.cache);
    if (ps_index_load(cdir, ob->cname, ob->size, &ob->x) == 0) {
        ob->has_x = 1;
        return 0;
    }
    int rc = fetch_idx(x, ob, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0 && ps_index_load(cdir, ob->cname, ob->size, &ob->x) == 0) {
        ob->has_x = 1;
        return 0;
    }
    /* No index in the bucket (or one for another size): fetch and scan.
     * Released at once: the scan saved the index, and only the objects the
     * query then selects are held, so scanning more objects than the cache
     * holds does not fill it with objects nobody reads. */
    char path[PATH_MAX];
    if ((rc = cache_get(x, ob->cname, ob->key, ob->size, path, sizeof(path), err, errlen)) != 0)
        return rc;
    char why[PATH_MAX + 256];
    rc = ps_index_build(cdir, ob->cname, &ob->x, why, sizeof(why));
    ps_s3cache_release(x->o.cache, ob->cname);
    if (rc < 0) {
        ps_warn("extract", "%s (bucket object %s): not read", why, ob->key);
        return 0; /* not pcapng: not ours to read, as a local file */
    }
    if (rc > 0)
        ps_warn("extract", "%s", why);
    ob->has_x = 1;
    x->st.scanned++;
    count(x->o.scanned, 1);
    return 0;
}

/* ---- the query's callbacks ---- */

static int on_fetch(void *ud, const size_t *which, size_t n, char **paths, char *err, size_t errlen)
{
    ps_s3extract *x = ud;
    uint64_t need = 0, limit = ps_s3cache_limit(x->o.cache);
    for (size_t i = 0; i < n; i++)
        need += x->objs[x->remote_obj[which[i]]].size;
    if (need > limit) {
        snprintf(err, errlen,
                 "the request needs %" PRIu64 " MiB of bucket objects (%zu objects), more than "
                 "the extraction cache holds (output.s3.cacheMB: %" PRIu64
                 " MiB): narrow the window or the selection, or raise output.s3.cacheMB",
                 (need + (1u << 20) - 1) >> 20, n, limit >> 20);
        return PS_QUERY_E_TOOBIG;
    }
    for (size_t i = 0; i < n; i++) {
        const x_obj *ob = &x->objs[x->remote_obj[which[i]]];
        char path[PATH_MAX];
        int rc = acquire(x, ob->cname, ob->key, ob->size, path, sizeof(path), err, errlen);
        if (rc != 0)
            return rc;
        if (!(paths[i] = strdup(path))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

static int on_refetch(void *ud, const char *name, uint64_t min_size, char *path, size_t pathlen)
{
    ps_s3extract *x = ud;
    char key[PATH_MAX], err[1024] = "";
    snprintf(key, sizeof(key), "%s%s", x->own_key_prefix ? x->own_key_prefix : "", name);
    ps_s3_object obj;
    int rc = ps_s3_head(x->s3, key, &obj, err, sizeof(err));
    if (rc == 0 && obj.size < min_size)
        rc = -1;
    if (rc == 0)
        rc = acquire(x, name, key, obj.size, path, pathlen, err, sizeof(err));
    if (rc != 0) {
        ps_warn("extract",
                "%s was deleted during an extraction and its bucket copy %s cannot be "
                "read (%s): its packets are missing from that answer",
                name, key, rc == -1 && !err[0] ? "smaller than the file" : err);
        return -1;
    }
    return 0;
}

/* ---- life cycle ---- */

int ps_s3extract_open(ps_s3extract **out, const ps_s3extract_opts *o, const ps_s3extract_obj *objs,
                      size_t n, char *err, size_t errlen)
{
    ps_s3extract *x = calloc(1, sizeof(*x));
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    x->o = *o;
    int rc = 0;
    x->objs = calloc(n ? n : 1, sizeof(*x->objs));
    x->remote = calloc(n ? n : 1, sizeof(*x->remote));
    x->remote_obj = calloc(n ? n : 1, sizeof(*x->remote_obj));
    if (o->own_key_prefix && !(x->own_key_prefix = strdup(o->own_key_prefix)))
        rc = -1;
    if (!x->objs || !x->remote || !x->remote_obj)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        x_obj *ob = &x->objs[x->n];
        char cname[300];
        if (ps_s3extract_cname(objs[i].who, objs[i].name, cname, sizeof(cname)) != 0)
            continue; /* cannot be: listed names follow filename.h */
        ob->key = strdup(objs[i].key);
        ob->name = strdup(objs[i].name);
        ob->who = strdup(objs[i].who);
        ob->cname = strdup(cname);
        ob->size = objs[i].size;
        x->n++;
        if (!ob->key || !ob->name || !ob->who || !ob->cname)
            rc = -1;
    }
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    if (rc == 0 && n > 0 && ps_s3_new(&x->s3, o->s3, err, errlen) != 0)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < x->n; i++) {
        x_obj *ob = &x->objs[i];
        x->st.objects++;
        rc = describe(x, ob, err, errlen);
        if (rc == 0 && ob->has_x) {
            x->remote[x->nremote] =
                (ps_query_remote){.name = ob->name, .who = ob->who, .x = &ob->x};
            x->remote_obj[x->nremote++] = i;
        }
    }
    if (rc != 0) {
        ps_s3extract_free(x);
        return rc;
    }
    x->src = (ps_query_source){.remote = x->remote,
                               .nremote = x->nremote,
                               .fetch = on_fetch,
                               .refetch = o->own_key_prefix ? on_refetch : NULL,
                               .ud = x};
    *out = x;
    return 0;
}

const ps_query_source *ps_s3extract_source(ps_s3extract *x)
{
    return &x->src;
}

void ps_s3extract_get_stats(const ps_s3extract *x, ps_s3extract_stats *st)
{
    *st = x->st;
}

void ps_s3extract_free(ps_s3extract *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->held.n; i++)
        ps_s3cache_release(x->o.cache, x->held.v[i]);
    ps_strvec_free(&x->held);
    for (size_t i = 0; i < x->n; i++) {
        free(x->objs[i].key);
        free(x->objs[i].name);
        free(x->objs[i].who);
        free(x->objs[i].cname);
        ps_index_free(&x->objs[i].x);
    }
    free(x->objs);
    free(x->remote);
    free(x->remote_obj);
    free(x->own_key_prefix);
    ps_s3_free(x->s3);
    free(x);
}

void ps_s3extract_prune(const char *cache_dir, const ps_strvec *cnames, unsigned min_age_sec)
{
    char sub[PATH_MAX];
    if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", cache_dir, PS_INDEX_DIR) >= sizeof(sub))
        return;
    DIR *d = opendir(sub);
    if (!d)
        return;
    time_t now = time(NULL);
    size_t el = strlen(PS_INDEX_EXT);
    struct dirent *e;
    unsigned pruned = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp") &&
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            now - st.st_mtime >= (time_t)min_age_sec) {
            unlinkat(dirfd(d), e->d_name, 0); /* a fetch a crash cut */
            continue;
        }
        if (len <= el || strcmp(e->d_name + len - el, PS_INDEX_EXT) != 0 ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            now - st.st_mtime < (time_t)min_age_sec)
            continue;
        char cname[NAME_MAX + 1];
        snprintf(cname, sizeof(cname), "%.*s", (int)(len - el), e->d_name);
        if (ps_strvec_has(cnames, cname))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            pruned++;
    }
    closedir(d);
    if (pruned)
        ps_debug("extract", "removed %u cached index(es) of objects no longer in the bucket",
                 pruned);
}
