/*
 * s3cache: a bounded on-disk cache of whole bucket objects, so the
 * extraction API (query.h) reads objects the receiver no longer has (or
 * never had: another receiver's) as local files.
 *
 * Layout: DIR/NAME, one file per object, NAME a cache name of
 * [A-Za-z0-9._@-] not starting with '.' (s3extract.h makes them: the
 * capture file's name, "RECEIVER@NAME" for another receiver's object).
 * Temporaries are DIR/.NAME.tmpPID.SEQ, removed at open. Subdirectories
 * (DIR/.index, the indexes of cached objects) are not this module's and not
 * counted.
 *
 * Bound: the objects' bytes, those being downloaded included, never exceed
 * the limit. Room is made by deleting the least recently acquired objects
 * that no caller holds; an object held (acquired and not released: a
 * running query reads it) is never deleted. At open the files found are
 * taken in, oldest modification first, and deleted beyond the limit.
 *
 * Threads: any (HTTP threads); every call takes the cache's mutex, which
 * is not held while an object downloads. Two callers wanting the same
 * object: the second waits for the first's download.
 */
#ifndef PS_S3CACHE_H
#define PS_S3CACHE_H

#include <stddef.h>
#include <stdint.h>

#define PS_S3CACHE_DIR ".s3cache" /* under the output directory (api.c, upload.c) */
#define PS_S3CACHE_E_TOOBIG (-20) /* the object alone is larger than the limit */
#define PS_S3CACHE_E_FULL (-21)   /* objects held by callers leave no room */

typedef struct ps_s3cache ps_s3cache;

/* Writes the object's bytes to fd (a new empty file). 0, or a negative
 * code (returned by acquire) with err. */
typedef int (*ps_s3cache_fill)(void *ud, int fd, char *err, size_t errlen);

/* Creates DIR (mode 0750) if needed, removes temporaries, takes in what is
 * there. 0, or -1 with err (a directory that cannot be made or read, OOM). */
int ps_s3cache_open(ps_s3cache **out, const char *dir, uint64_t limit, char *err, size_t errlen);

/* Holds the object `name` of `size` bytes: present with that size, or
 * made room for and filled by fill (a file left with another size is an
 * error). 0 with DIR/NAME in path; PS_S3CACHE_E_TOOBIG, PS_S3CACHE_E_FULL
 * (err says why), fill's code, or -1 (a local error, err says which).
 * Each 0 is matched by one ps_s3cache_release. *fetched (may be NULL)
 * receives the bytes downloaded by this call (0 when present). */
int ps_s3cache_acquire(ps_s3cache *c, const char *name, uint64_t size, ps_s3cache_fill fill,
                       void *ud, char *path, size_t pathlen, uint64_t *fetched, char *err,
                       size_t errlen);

void ps_s3cache_release(ps_s3cache *c, const char *name);

/* Bytes of the objects cached (and being downloaded). */
uint64_t ps_s3cache_bytes(ps_s3cache *c);
uint64_t ps_s3cache_limit(const ps_s3cache *c);
const char *ps_s3cache_dir(const ps_s3cache *c);

/* 1 if name is a cache name (see above). */
int ps_s3cache_name_ok(const char *name);

/* Frees the bookkeeping; the files stay for the next open. Nothing may be
 * held. NULL: no-op. */
void ps_s3cache_free(ps_s3cache *c);

#endif
