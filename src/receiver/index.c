/*
 * index: per-file side indexes and the thread that keeps them (see index.h).
 *
 * Why a scan after close rather than the writer noting interfaces as it
 * goes: the writer's record path and its file sets (writer.c, fileset.c)
 * stay untouched, and the index says exactly what the file holds, whatever
 * wrote it (an earlier version, a repaired .part). The price is one read of
 * each completed file, on a thread of its own, while it is still in the
 * page cache.
 *
 * Why JSON: an index is a few hundred bytes per interface, read once per
 * query and file; being able to `cat` it beats a binary format's speed.
 */
#include "index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/log.h"
#include "core/pcapng.h"
#include "filename.h"
#include "pcapread.h"

#define IX_WINDOW (4u << 20)
#define IX_MAX_JSON (64u << 20) /* a larger .idx is not ours */

void ps_index_free(ps_index *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->nifs; i++) {
        free(x->ifs[i].name);
        free(x->ifs[i].desc);
    }
    free(x->ifs);
    free(x->chunks);
    memset(x, 0, sizeof(*x));
}

static int add_iface(ps_index *x, size_t *cap, const ps_pcapread_idb *d)
{
    if (x->nifs == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        ps_index_iface *t = realloc(x->ifs, nc * sizeof(*t));
        if (!t)
            return -1;
        x->ifs = t;
        *cap = nc;
    }
    ps_index_iface *f = &x->ifs[x->nifs];
    memset(f, 0, sizeof(*f));
    f->name = strdup(d->name);
    f->desc = strdup(d->desc);
    if (!f->name || !f->desc) {
        free(f->name);
        free(f->desc);
        return -1;
    }
    f->linktype = d->linktype;
    f->snaplen = d->snaplen;
    f->tsresol = d->tsresol;
    x->nifs++;
    return 0;
}

static ps_index_chunk *new_chunk(ps_index *x, size_t *cap, uint64_t offset)
{
    if (x->nchunks == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ps_index_chunk *t = realloc(x->chunks, nc * sizeof(*t));
        if (!t)
            return NULL;
        x->chunks = t;
        *cap = nc;
    }
    ps_index_chunk *c = &x->chunks[x->nchunks++];
    memset(c, 0, sizeof(*c));
    c->offset = offset;
    return c;
}

/* Scans from out->data_end (0: a fresh out) up to size, adding to out. On
 * failure out is freed. */
static int scan_from(int fd, uint64_t size, uint64_t chunk_bytes, ps_index *out, char *err,
                     size_t errlen)
{
    ps_pcapread r;
    if (ps_pcapread_init(&r, fd, size, IX_WINDOW) != 0) {
        snprintf(err, errlen, "%s",
                 errno == ENOMEM ? "out of memory" : "not a pcapng file in host byte order");
        ps_pcapread_free(&r);
        ps_index_free(out);
        return -1;
    }
    if (out->data_end > 0)
        ps_pcapread_seek(&r, out->data_end);
    size_t cap = out->nifs, ccap = out->nchunks; /* realloc grows them when full */
    ps_pcapread_block b;
    ps_index_chunk *ch = out->nchunks ? &out->chunks[out->nchunks - 1] : NULL;
    uint64_t stop = 0;
    int k;
    while ((k = ps_pcapread_next(&r, &b)) == 1) {
        if (!ch || b.off - ch->offset >= chunk_bytes) {
            if (!(ch = new_chunk(out, &ccap, b.off))) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
        }
        if (b.type == PS_PCAPNG_IDB) {
            ps_pcapread_idb d;
            if (ps_pcapread_parse_idb(b.data, b.len, &d) != 0) {
                stop = b.off; /* readers stop before it, as we do */
                break;
            }
            if (out->nifs >= PS_INDEX_MAX_IFACES)
                continue;
            if (add_iface(out, &cap, &d) != 0) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
        } else if (b.type == PS_PCAPNG_EPB) {
            ps_pcapread_epb e;
            if (ps_pcapread_parse_epb(b.data, b.len, &e) != 0 || e.if_id >= out->nifs)
                continue;
            ps_index_iface *f = &out->ifs[e.if_id];
            uint64_t ns = ps_pcapread_ts_ns(e.ts, f->tsresol);
            if (f->packets == 0 || ns < f->first_ns)
                f->first_ns = ns;
            if (f->packets == 0 || ns > f->last_ns)
                f->last_ns = ns;
            f->packets++;
            if (out->packets == 0 || ns < out->first_ns)
                out->first_ns = ns;
            if (out->packets == 0 || ns > out->last_ns)
                out->last_ns = ns;
            out->packets++;
            if (ch->packets == 0 || ns < ch->first_ns)
                ch->first_ns = ns;
            if (ch->packets == 0 || ns > ch->last_ns)
                ch->last_ns = ns;
            ch->packets++;
        }
    }
    if (k < 0) {
        snprintf(err, errlen, "read error: %s", strerror(errno));
        goto fail;
    }
    out->size = size;
    out->data_end = stop ? stop : r.off; /* up to the last complete block */
    ps_pcapread_free(&r);
    return 0;
fail:
    ps_pcapread_free(&r);
    ps_index_free(out);
    return -1;
}

int ps_index_scan(int fd, uint64_t size, uint64_t chunk_bytes, ps_index *out, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof(*out));
    return scan_from(fd, size, chunk_bytes, out, err, errlen);
}

int ps_index_scan_more(int fd, uint64_t size, uint64_t chunk_bytes, ps_index *x, char *err,
                       size_t errlen)
{
    if (x->data_end > size) {
        snprintf(err, errlen, "the file shrank");
        ps_index_free(x);
        return -1;
    }
    return scan_from(fd, size, chunk_bytes, x, err, errlen);
}

int ps_index_dup(const ps_index *src, ps_index *dst)
{
    *dst = *src;
    dst->ifs = NULL;
    dst->chunks = NULL;
    dst->nifs = dst->nchunks = 0;
    if (src->nifs && !(dst->ifs = calloc(src->nifs, sizeof(*dst->ifs))))
        return -1;
    for (size_t i = 0; i < src->nifs; i++) {
        dst->ifs[i] = src->ifs[i];
        dst->ifs[i].name = strdup(src->ifs[i].name);
        dst->ifs[i].desc = strdup(src->ifs[i].desc ? src->ifs[i].desc : "");
        dst->nifs++;
        if (!dst->ifs[i].name || !dst->ifs[i].desc) {
            ps_index_free(dst);
            return -1;
        }
    }
    if (src->nchunks) {
        if (!(dst->chunks = malloc(src->nchunks * sizeof(*dst->chunks)))) {
            ps_index_free(dst);
            return -1;
        }
        memcpy(dst->chunks, src->chunks, src->nchunks * sizeof(*dst->chunks));
        dst->nchunks = src->nchunks;
    }
    return 0;
}

/* ---- .idx files ---- */

static int idx_path(char *out, size_t outlen, const char *dir, const char *name, const char *suffix)
{
    int n = snprintf(out, outlen, "%s/%s/%s%s%s", dir, PS_INDEX_DIR, name, PS_INDEX_EXT, suffix);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *v)
{
    json_t *j = json_object_get(o, key);
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return -1;
    *v = (uint64_t)json_integer_value(j);
    return 0;
}

static int get_str(json_t *o, const char *key, char **v)
{
    json_t *j = json_object_get(o, key);
    if (!json_is_string(j))
        return -1;
    *v = strdup(json_string_value(j));
    return *v ? 0 : -1;
}

int ps_index_load(const char *dir, const char *name, uint64_t size, ps_index *out)
{
    memset(out, 0, sizeof(*out));
    char path[PATH_MAX];
    if (idx_path(path, sizeof(path), dir, name, "") != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)IX_MAX_JSON) {
        close(fd);
        return -1;
    }
    /* One read: json_loadfd reads a byte per system call. */
    size_t len = (size_t)st.st_size, got = 0;
    char *text = malloc(len + 1);
    while (text && got < len) {
        ssize_t k = read(fd, text + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    json_error_t je;
    json_t *root = text && got == len ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    free(text);
    if (!root)
        return -1;
    uint64_t v = 0;
    json_t *ifs = json_object_get(root, "interfaces");
    json_t *chunks = json_object_get(root, "chunks");
    int bad = get_u64(root, "v", &v) != 0 || v != 2 || get_u64(root, "size", &out->size) != 0 ||
              out->size != size || get_u64(root, "data_end", &out->data_end) != 0 ||
              out->data_end > size || get_u64(root, "first_ns", &out->first_ns) != 0 ||
              get_u64(root, "last_ns", &out->last_ns) != 0 ||
              get_u64(root, "packets", &out->packets) != 0 || !json_is_array(ifs) ||
              json_array_size(ifs) > PS_INDEX_MAX_IFACES || !json_is_array(chunks);
    if (!bad && json_array_size(chunks) > 0) {
        out->chunks = calloc(json_array_size(chunks), sizeof(*out->chunks));
        bad = !out->chunks;
    }
    for (size_t i = 0; !bad && i < json_array_size(chunks); i++) {
        json_t *c = json_array_get(chunks, i);
        ps_index_chunk *x = &out->chunks[i];
        bad = !json_is_array(c) || json_array_size(c) != 4;
        for (size_t k = 0; !bad && k < 4; k++) {
            json_t *e = json_array_get(c, k);
            uint64_t *dst = k == 0   ? &x->offset
                            : k == 1 ? &x->first_ns
                            : k == 2 ? &x->last_ns
                                     : &x->packets;
            bad = !json_is_integer(e) || json_integer_value(e) < 0;
            if (!bad)
                *dst = (uint64_t)json_integer_value(e);
        }
        /* in file order, inside the data */
        bad = bad || x->offset >= out->data_end || (i > 0 && x->offset <= x[-1].offset);
        if (!bad)
            out->nchunks++;
    }
    if (!bad && json_array_size(ifs) > 0) {
        out->ifs = calloc(json_array_size(ifs), sizeof(*out->ifs));
        bad = !out->ifs;
    }
    for (size_t i = 0; !bad && i < json_array_size(ifs); i++) {
        json_t *o = json_array_get(ifs, i);
        ps_index_iface *f = &out->ifs[i];
        uint64_t lt = 0, sl = 0, tr = 0;
        bad = get_str(o, "name", &f->name) != 0;
        if (!bad) {
            out->nifs++; /* owns name from here, for ps_index_free */
            bad = get_str(o, "desc", &f->desc) != 0 || get_u64(o, "linktype", &lt) != 0 ||
                  lt > 0xffff || get_u64(o, "snaplen", &sl) != 0 || sl > UINT32_MAX ||
                  get_u64(o, "tsresol", &tr) != 0 || tr > 0xff ||
                  get_u64(o, "first_ns", &f->first_ns) != 0 ||
                  get_u64(o, "last_ns", &f->last_ns) != 0 ||
                  get_u64(o, "packets", &f->packets) != 0;
            f->linktype = (uint32_t)lt;
            f->snaplen = (uint32_t)sl;
            f->tsresol = (uint8_t)tr;
        }
    }
    json_decref(root);
    if (bad) {
        ps_index_free(out);
        return -1;
    }
    return 0;
}

static json_t *to_json(const ps_index *x)
{
    json_t *ifs = json_array();
    json_t *root =
        json_pack("{s:i,s:I,s:I,s:I,s:I,s:I}", "v", 2, "size", (json_int_t)x->size, "data_end",
                  (json_int_t)x->data_end, "first_ns", (json_int_t)x->first_ns, "last_ns",
                  (json_int_t)x->last_ns, "packets", (json_int_t)x->packets);
    if (!ifs || !root || json_object_set(root, "interfaces", ifs) != 0) {
        json_decref(ifs);
        json_decref(root);
        return NULL;
    }
    json_decref(ifs); /* root holds it */
    json_t *chunks = json_array();
    if (!chunks || json_object_set_new(root, "chunks", chunks) != 0) {
        json_decref(root);
        return NULL;
    }
    for (size_t i = 0; i < x->nchunks; i++) {
        const ps_index_chunk *c = &x->chunks[i];
        if (json_array_append_new(chunks, json_pack("[IIII]", (json_int_t)c->offset,
                                                    (json_int_t)c->first_ns, (json_int_t)c->last_ns,
                                                    (json_int_t)c->packets)) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    for (size_t i = 0; i < x->nifs; i++) {
        const ps_index_iface *f = &x->ifs[i];
        json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "name", f->name, "desc",
                              f->desc ? f->desc : "", "linktype", (json_int_t)f->linktype,
                              "snaplen", (json_int_t)f->snaplen, "tsresol", (json_int_t)f->tsresol,
                              "first_ns", (json_int_t)f->first_ns, "last_ns",
                              (json_int_t)f->last_ns, "packets", (json_int_t)f->packets);
        /* json_pack refuses strings that are not UTF-8: such a name is kept
         * out of the index, which then fails as a whole (the file is
         * scanned at query time instead). */
        if (!o || json_array_append_new(ifs, o) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

int ps_index_save(const char *dir, const char *name, const ps_index *x, char *err, size_t errlen)
{
    /* The builder and queries may save the same index at once: each
     * writes its own temporary, the last rename wins (same content). */
    static atomic_uint seq;
    char sub[PATH_MAX], tmp[PATH_MAX], final[PATH_MAX], sfx[64];
    snprintf(sfx, sizeof(sfx), ".tmp%ld.%u", (long)getpid(), atomic_fetch_add(&seq, 1));
    if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", dir, PS_INDEX_DIR) >= sizeof(sub) ||
        idx_path(tmp, sizeof(tmp), dir, name, sfx) != 0 ||
        idx_path(final, sizeof(final), dir, name, "") != 0) {
        snprintf(err, errlen, "index path for %s is too long", name);
        return -1;
    }
    if (mkdir(sub, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", sub, strerror(errno));
        return -1;
    }
    json_t *root = to_json(x);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!text) {
        snprintf(err, errlen,
                 "cannot encode the index of %s (out of memory or a name that is not "
                 "UTF-8)",
                 name);
        return -1;
    }
    size_t len = strlen(text);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    int ok = fd >= 0;
    size_t done = 0;
    while (ok && done < len) {
        ssize_t k = write(fd, text + done, len - done);
        if (k < 0 && errno == EINTR)
            continue;
        ok = k > 0;
        if (ok)
            done += (size_t)k;
    }
    int e = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    free(text);
    if (ok && rename(tmp, final) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        if (fd >= 0)
            unlink(tmp);
        snprintf(err, errlen, "cannot write %s: %s", final, strerror(e));
        return -1;
    }
    return 0;
}

int ps_index_build(const char *dir, const char *name, ps_index *out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        snprintf(err, errlen, "path too long: %s/%s", dir, name);
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    ps_index x;
    char why[256];
    int rc = ps_index_scan(fd, (uint64_t)st.st_size, PS_INDEX_CHUNK, &x, why, sizeof(why));
    close(fd);
    if (rc != 0) {
        snprintf(err, errlen, "cannot index %s: %s", path, why);
        errno = EINVAL;
        return -1;
    }
    size_t nl = strlen(name), pl = strlen(PS_FNAME_PART);
    int part = nl >= pl && strcmp(name + nl - pl, PS_FNAME_PART) == 0;
    rc = part ? 0 : ps_index_save(dir, name, &x, err, errlen) == 0 ? 0 : 1;
    if (out)
        *out = x;
    else
        ps_index_free(&x);
    return rc;
}

/* ---- the builder thread ---- */

typedef struct ix_job {
    struct ix_job *next;
    char name[];
} ix_job;

struct ps_index_builder {
    char *dir, *prefix;
    pthread_t thread;
    pthread_mutex_t mu; /* guards the queue and stop */
    pthread_cond_t cv;
    ix_job *head, *tail;
    int stop;
};

static int is_capture(const char *name, const char *prefix, int *part)
{
    ps_fname f;
    if (ps_fname_parse(name, prefix, &f) != 0 || !f.pcapng)
        return 0;
    *part = f.part;
    return 1;
}

/* Deletes indexes whose capture file is gone (retention deleted it) and
 * temporaries a crash left. */
static void sweep_orphans(ps_index_builder *b)
{
    char sub[PATH_MAX];
    snprintf(sub, sizeof(sub), "%s/%s", b->dir, PS_INDEX_DIR);
    DIR *d = opendir(sub);
    struct dirent *e;
    size_t el = strlen(PS_INDEX_EXT);
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n <= el || n >= PATH_MAX)
            continue;
        char cap[PATH_MAX];
        struct stat st;
        const char *tmp = strstr(e->d_name, PS_INDEX_EXT ".tmp");
        if (tmp) { /* a temporary left by a crash */
            unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (strcmp(e->d_name + n - el, PS_INDEX_EXT) != 0)
            continue;
        snprintf(cap, sizeof(cap), "%s/%.*s", b->dir, (int)(n - el), e->d_name);
        if (lstat(cap, &st) != 0 && errno == ENOENT)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d)
        closedir(d);
}

/* Indexes the completed files that have none. Runs on the builder thread
 * at start. */
static void sweep(ps_index_builder *b)
{
    sweep_orphans(b);
    DIR *d = opendir(b->dir);
    struct dirent *e;
    unsigned built = 0;
    while (d && (e = readdir(d)) != NULL) {
        int part = 0;
        if (!is_capture(e->d_name, b->prefix, &part) || part)
            continue;
        pthread_mutex_lock(&b->mu);
        int stop = b->stop;
        pthread_mutex_unlock(&b->mu);
        if (stop)
            break;
        struct stat st;
        ps_index x;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (ps_index_load(b->dir, e->d_name, (uint64_t)st.st_size, &x) == 0) {
            ps_index_free(&x);
            continue;
        }
        char err[PATH_MAX + 128];
        int rc = ps_index_build(b->dir, e->d_name, NULL, err, sizeof(err));
        if (rc == 0)
            built++;
        else if (rc > 0 || errno != ENOENT)
            ps_warn("index", "%s", err);
    }
    if (d)
        closedir(d);
    if (built)
        ps_info("index", "indexed %u capture file(s) of %s that had no index", built, b->dir);
}

static void *builder_main(void *arg)
{
    ps_index_builder *b = arg;
    sweep(b);
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->stop)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->stop)
            break;
        ix_job *j = b->head;
        b->head = j->next;
        if (!b->head)
            b->tail = NULL;
        pthread_mutex_unlock(&b->mu);
        char err[PATH_MAX + 128];
        int rc = ps_index_build(b->dir, j->name, NULL, err, sizeof(err));
        if (rc > 0 || (rc < 0 && errno != ENOENT))
            ps_warn("index", "%s", err);
        free(j);
        sweep_orphans(b);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int ps_index_builder_open(ps_index_builder **out, const char *dir, const char *prefix, char *err,
                          size_t errlen)
{
    ps_index_builder *b = calloc(1, sizeof(*b));
    if (!b || !(b->dir = strdup(dir)) || !(b->prefix = strdup(prefix))) {
        if (b) {
            free(b->dir);
            free(b);
        }
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (pthread_create(&b->thread, NULL, builder_main, b) != 0) {
        snprintf(err, errlen, "cannot start the index thread");
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        free(b->dir);
        free(b->prefix);
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

void ps_index_builder_add(ps_index_builder *b, const char *path)
{
    if (!b || !path)
        return;
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    size_t n = strlen(name);
    ix_job *j = malloc(sizeof(*j) + n + 1);
    if (!j)
        return;
    memcpy(j->name, name, n + 1);
    j->next = NULL;
    pthread_mutex_lock(&b->mu);
    if (b->tail)
        b->tail->next = j;
    else
        b->head = j;
    b->tail = j;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void ps_index_builder_free(ps_index_builder *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    while (b->head) {
        ix_job *j = b->head;
        b->head = j->next;
        free(j);
    }
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b->dir);
    free(b->prefix);
    free(b);
}
