/*
 * upload: copies each completed capture file to S3-compatible object
 * storage (s3.h), from a worker thread of its own, so the receiver's loop
 * never waits on the network or the disk for it.
 *
 * What is uploaded: every completed file of the writer's directory whose
 * name follows filename.h for the writer's prefix (every file set, every
 * sensor KEY), as OUTPUT_S3_PREFIX + NAME. At open, the directory is read:
 * completed files not confirmed yet (earlier runs' included, so turning
 * uploads on uploads what is already there) are queued, oldest name first;
 * then ps_upload_file_closed queues each file the writer completes.
 *
 * Confirmed: an upload counts (metrics, the journal, deleteLocal) only after
 * a HEAD of the object returned the file's size and, where the ETag is an
 * MD5 (not under SSE-KMS), the MD5 the file has (a multipart upload's
 * MD5-of-parts). A file queued at open is first HEADed: an object that
 * already matches (uploaded before a crash) is confirmed without sending it
 * again, so every file arrives once.
 *
 * The journal, DIR/.PREFIX.s3-journal, lists confirmed files, one line each
 * ("NAME\tSIZE\ts3://BUCKET/KEY"), appended and fsynced by the worker after
 * each confirmation, compacted at open (lines of files that are gone are
 * dropped). A file counts as confirmed at open only if its line names the
 * same size and destination; so a new bucket or prefix uploads everything
 * again. With deleteLocal the file is unlinked after its line is on disk
 * (and at open, if a crash came between).
 *
 * Side indexes (s3extract.h): after a pcapng file is confirmed (never
 * before, and never holding back its journal line or its delete), its index
 * (index.h; built then if missing) is PUT as KEY.idx. A failed index upload
 * is logged and queued again (same backoff), until it succeeds or the
 * receiver stops; it is not counted as a failed upload. With deleteLocal the
 * file's index is moved to DIR/.s3cache/.index/NAME.idx before the unlink,
 * so extractions plan the file's old windows without asking the bucket.
 *
 * Failures: an upload that fails is retried after a pause that doubles from
 * 1 second up to retry_max_sec, with jitter, the file going to the end of
 * the queue; it is retried until it succeeds or the file is gone (then it
 * is dropped and logged). A file that vanishes before upload (retention)
 * is counted as failed. Messages are rate-limited (one per 10 seconds, with
 * the count of those not shown) and never contain credentials.
 *
 * Threads: open, ps_upload_file_closed, get_stats and free from the loop
 * thread (file_closed only takes the queue's mutex); the worker owns the
 * ps_s3 and the journal. Metrics are updated from the worker (atomic).
 */
#ifndef PS_UPLOAD_H
#define PS_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"
#include "s3.h"

typedef struct ps_upload ps_upload;

typedef struct ps_upload_opts {
    const char *dir;        /* the writer's output directory */
    const char *prefix;     /* the writer's file-name prefix */
    const char *key_prefix; /* output.s3.prefix, NULL: none */
    ps_s3_opts s3;          /* its cancel is ignored: the module sets its own */
    int delete_local;
    uint32_t retry_max_sec; /* 0: 300 */
    ps_metrics *metrics;    /* NULL: none */
} ps_upload_opts;

/* Reads and compacts the journal, queues what is pending, starts the worker.
 * Fails (err set) on an unreadable directory, an unwritable journal, OOM. */
int ps_upload_open(ps_upload **out, const ps_upload_opts *o, char *err, size_t errlen);

/* The writer completed path (DIR/NAME); queued unless already queued. */
void ps_upload_file_closed(ps_upload *u, const char *path);

typedef struct ps_upload_stats {
    uint64_t pending;  /* queued or in flight */
    uint64_t uploaded; /* confirmed since open */
    uint64_t failed;   /* failed attempts since open */
    uint64_t bytes;    /* bytes of the files confirmed */
} ps_upload_stats;
void ps_upload_get_stats(ps_upload *u, ps_upload_stats *st);

/* Stops the worker (a transfer in flight is cut within about a second; a
 * multipart upload is aborted) and frees u. What is pending is found again
 * at the next open. NULL is a no-op. */
void ps_upload_free(ps_upload *u);

#endif
