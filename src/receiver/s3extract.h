/*
 * s3extract: the bucket side of one GET /api/packets (query.h): turns the
 * bucket's capture objects that are not on disk into remote files for the
 * query (ps_query_source), and fetches those it selects into the object
 * cache (s3cache.h).
 *
 * An object's index (index.h), in this order:
 *   1. CACHE/.index/CNAME.idx: fetched before, or this receiver's own index
 *      moved there by the upload when it deleted the file (upload.h);
 *   2. the object KEY.idx the uploading receiver put next to KEY, fetched
 *      into 1;
 *   3. none (an object uploaded by an older version, or whose index upload
 *      failed): the object itself is fetched into the cache and scanned,
 *      its index saved as 1 ("scanned" in the stats).
 * An index must describe an object of the listed size, or it is ignored.
 * CNAME is the file's name for this receiver's objects, RECEIVER@NAME for
 * another receiver's (a tier sharing the bucket).
 *
 * Fetching: whole objects, into the cache, held until ps_s3extract_free,
 * so the cache never deletes a file a query reads. A query that needs more
 * bytes of objects than the cache's limit is refused (PS_QUERY_E_TOOBIG)
 * before anything is fetched; one whose objects would fit but for those
 * other extractions hold answers PS_QUERY_E_BUSY. Every bucket failure
 * (unreachable, refused, an object gone) is PS_QUERY_E_REMOTE with the
 * reason, never a shorter answer.
 *
 * Threads: one extraction's thread (an HTTP connection's); it uses a ps_s3
 * of its own. Prefix ps_s3extract_.
 */
#ifndef PS_S3EXTRACT_H
#define PS_S3EXTRACT_H

#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"
#include "core/strvec.h"
#include "query.h"
#include "s3.h"
#include "s3cache.h"

typedef struct ps_s3extract_obj {
    const char *key;  /* the capture object's key */
    const char *name; /* its capture file name */
    const char *who;  /* the receiver that wrote it, "" this one */
    uint64_t size;
} ps_s3extract_obj;

typedef struct ps_s3extract_opts {
    const ps_s3_opts *s3;       /* copied by ps_s3_new */
    ps_s3cache *cache;          /* borrowed; outlives the extraction */
    const char *own_key_prefix; /* this receiver's keys: PREFIX NAME (refetch) */
    ps_series *fetched_bytes;   /* counters, NULL: none */
    ps_series *fetched_objects, *scanned;
} ps_s3extract_opts;

typedef struct ps_s3extract ps_s3extract;

typedef struct ps_s3extract_stats {
    unsigned objects;     /* bucket objects described */
    unsigned idx_fetched; /* indexes fetched from the bucket */
    unsigned scanned;     /* objects without an index: fetched and scanned */
    unsigned fetched;     /* objects fetched into the cache (not found there) */
    uint64_t fetched_bytes;
} ps_s3extract_stats;

/* Describes the objects (objs[0..n), strings copied). 0 with *out, or
 * PS_QUERY_E_REMOTE / _TOOBIG / _BUSY / -1 with err. */
int ps_s3extract_open(ps_s3extract **out, const ps_s3extract_opts *o, const ps_s3extract_obj *objs,
                      size_t n, char *err, size_t errlen);
/* What ps_query_opts.src points to; valid until ps_s3extract_free. */
const ps_query_source *ps_s3extract_source(ps_s3extract *x);
void ps_s3extract_get_stats(const ps_s3extract *x, ps_s3extract_stats *st);
/* Releases the cache's objects it holds and frees x (after the query that
 * used its source). NULL: no-op. */
void ps_s3extract_free(ps_s3extract *x);

/* The cache name of an object (see above) into out: 0, or -1 when it is
 * not one (too long, a character outside [A-Za-z0-9._@-]). */
int ps_s3extract_cname(const char *who, const char *name, char *out, size_t outlen);

/* Deletes cached indexes (CACHE/.index) of objects no longer listed
 * (not in cnames, sorted; a bucket lifecycle rule deleted them) that are
 * older than min_age_sec. */
void ps_s3extract_prune(const char *cache_dir, const ps_strvec *cnames, unsigned min_age_sec);

#endif
