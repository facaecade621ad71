/*
 * s3cache: an LRU of whole files under a byte bound (see s3cache.h).
 *
 * Why whole objects and not the byte ranges a query needs: the query
 * reads a cached object exactly as a local capture file (its Section
 * Header Block at offset 0, blocks at the offsets its index names), so a
 * cache entry is simply a file, and an object fetched once serves every
 * later window of it. The price is fetching a whole rotated file for a
 * short window; files are rotated small enough (output.file.rotateSizeMB)
 * that this stays a few seconds of transfer.
 *
 * Why the bookkeeping is in memory and rebuilt at open: the directory is
 * the truth (a crash leaves files and temporaries, nothing else), and a
 * few thousand entries are scanned linearly faster than any index would
 * pay for itself.
 */
#include "s3cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct ent {
    char *name;
    uint64_t size, used;
    int refs;
    int loading; /* being filled by the caller that added it */
} ent;

struct ps_s3cache {
    char *dir;
    uint64_t limit;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* a download ended */
    ent **v;
    size_t n, cap;
    uint64_t bytes, clock, seq;
};

int ps_s3cache_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 255 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '@'))
            return 0;
    }
    return 1;
}

/* Under mu. */
static ent *find(ps_s3cache *c, const char *name, size_t *at)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i]->name, name) == 0) {
            if (at)
                *at = i;
            return c->v[i];
        }
    return NULL;
}

/* Under mu: forgets entry i (deleting its file when unlink_it). */
static void drop(ps_s3cache *c, size_t i, int unlink_it)
{
    ent *e = c->v[i];
    if (unlink_it) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", c->dir, e->name);
        unlink(path);
    }
    c->bytes -= e->size;
    free(e->name);
    free(e);
    c->v[i] = c->v[--c->n];
}

/* Under mu. */
static ent *add(ps_s3cache *c, const char *name, uint64_t size, uint64_t used)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 64;
        ent **t = realloc(c->v, nc * sizeof(*t));
        if (!t)
            return NULL;
        c->v = t;
        c->cap = nc;
    }
    ent *e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    e->size = size;
    e->used = used;
    c->v[c->n++] = e;
    c->bytes += size;
    return e;
}

/* Under mu: deletes the least recently used entries nobody holds until
 * `need` more bytes fit. 0, or -1 when held entries leave no room. */
static int make_room(ps_s3cache *c, uint64_t need)
{
    while (c->bytes + need > c->limit) {
        size_t victim = c->n;
        for (size_t i = 0; i < c->n; i++) {
            const ent *e = c->v[i];
            if (e->refs == 0 && !e->loading && (victim == c->n || e->used < c->v[victim]->used))
                victim = i;
        }
        if (victim == c->n)
            return -1;
        drop(c, victim, 1);
    }
    return 0;
}

typedef struct found {
    char *name;
    uint64_t size;
    int64_t mtime;
} found;

static int found_cmp(const void *x, const void *y)
{
    const found *a = x, *b = y;
    return a->mtime < b->mtime ? -1 : a->mtime > b->mtime ? 1 : strcmp(a->name, b->name);
}

int ps_s3cache_open(ps_s3cache **out, const char *dir, uint64_t limit, char *err, size_t errlen)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    ps_s3cache *c = calloc(1, sizeof(*c));
    found *fs = NULL;
    size_t nf = 0, capf = 0;
    int oom = !c || !(c->dir = strdup(dir));
    struct dirent *de;
    while (!oom && (de = readdir(d)) != NULL) {
        struct stat st;
        if (de->d_name[0] == '.' && strstr(de->d_name, ".tmp")) {
            unlinkat(dirfd(d), de->d_name, 0); /* a download a crash cut */
            continue;
        }
        if (!ps_s3cache_name_ok(de->d_name) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (nf == capf) {
            size_t nc = capf ? capf * 2 : 64;
            found *t = realloc(fs, nc * sizeof(*t));
            if (!t) {
                oom = 1;
                break;
            }
            fs = t;
            capf = nc;
        }
        if (!(fs[nf].name = strdup(de->d_name))) {
            oom = 1;
            break;
        }
        fs[nf].size = (uint64_t)st.st_size;
        fs[nf].mtime = (int64_t)st.st_mtime;
        nf++;
    }
    closedir(d);
    if (nf > 1)
        qsort(fs, nf, sizeof(*fs), found_cmp);
    if (c) {
        c->limit = limit;
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv, NULL);
    }
    for (size_t i = 0; i < nf && !oom; i++)
        if (!add(c, fs[i].name, fs[i].size, ++c->clock))
            oom = 1;
    for (size_t i = 0; i < nf; i++)
        free(fs[i].name);
    free(fs);
    if (oom) {
        snprintf(err, errlen, "out of memory");
        ps_s3cache_free(c);
        return -1;
    }
    make_room(c, 0); /* the limit was lowered: nothing is held yet */
    *out = c;
    return 0;
}

int ps_s3cache_acquire(ps_s3cache *c, const char *name, uint64_t size, ps_s3cache_fill fill,
                       void *ud, char *path, size_t pathlen, uint64_t *fetched, char *err,
                       size_t errlen)
{
    if (fetched)
        *fetched = 0;
    if (!ps_s3cache_name_ok(name) ||
        (size_t)snprintf(path, pathlen, "%s/%s", c->dir, name) >= pathlen) {
        snprintf(err, errlen, "%.300s is not a cache name", name);
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    for (;;) {
        size_t at;
        ent *e = find(c, name, &at);
        if (!e)
            break;
        if (e->loading) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        if (e->size == size) {
            e->refs++;
            e->used = ++c->clock;
            pthread_mutex_unlock(&c->mu);
            return 0;
        }
        if (e->refs > 0) { /* replaced in the bucket while a query reads the old one */
            pthread_mutex_unlock(&c->mu);
            snprintf(err, errlen, "%s changed in the bucket while being read; try again", name);
            return PS_S3CACHE_E_FULL;
        }
        drop(c, at, 1);
    }
    if (size > c->limit) {
        pthread_mutex_unlock(&c->mu);
        snprintf(err, errlen, "%s (%llu bytes) is larger than the cache (%llu bytes)", name,
                 (unsigned long long)size, (unsigned long long)c->limit);
        return PS_S3CACHE_E_TOOBIG;
    }
    if (make_room(c, size) != 0) {
        pthread_mutex_unlock(&c->mu);
        snprintf(err, errlen,
                 "the cache (%llu bytes) is held by extractions in progress: no room for %s",
                 (unsigned long long)c->limit, name);
        return PS_S3CACHE_E_FULL;
    }
    ent *e = add(c, name, size, ++c->clock);
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->loading = 1;
    e->refs = 1;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp%ld.%llu", c->dir, name, (long)getpid(),
             (unsigned long long)++c->seq);
    pthread_mutex_unlock(&c->mu);

    int rc = 0;
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0)
        rc = fill(ud, fd, err, errlen);
    struct stat st;
    if (rc == 0 && fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && (uint64_t)st.st_size != size) {
        snprintf(err, errlen, "%s: got %llu bytes, expected %llu", name,
                 (unsigned long long)st.st_size, (unsigned long long)size);
        rc = -1;
    }
    if (fd >= 0 && close(fd) != 0 && rc == 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
        rc = -1;
    }
    if (rc != 0 && fd >= 0)
        unlink(tmp);
    pthread_mutex_lock(&c->mu);
    size_t at = 0;
    e = find(c, name, &at);
    if (!e) {
        /* not reached: a loading entry is held, so never evicted */
        if (rc == 0) {
            snprintf(err, errlen, "%s: left the cache while loading", name);
            rc = -1;
        }
    } else if (rc != 0) {
        drop(c, at, 0);
    } else {
        e->loading = 0;
        if (fetched)
            *fetched = size;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void ps_s3cache_release(ps_s3cache *c, const char *name)
{
    pthread_mutex_lock(&c->mu);
    ent *e = find(c, name, NULL);
    if (e && e->refs > 0)
        e->refs--;
    pthread_mutex_unlock(&c->mu);
}

uint64_t ps_s3cache_bytes(ps_s3cache *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t b = c->bytes;
    pthread_mutex_unlock(&c->mu);
    return b;
}

uint64_t ps_s3cache_limit(const ps_s3cache *c)
{
    return c->limit;
}

const char *ps_s3cache_dir(const ps_s3cache *c)
{
    return c->dir;
}

void ps_s3cache_free(ps_s3cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i]->name);
        free(c->v[i]);
    }
    free(c->v);
    if (c->dir) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
    }
    free(c->dir);
    free(c);
}
