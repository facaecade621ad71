/*
 * s3: a small client for S3-compatible object storage, what the receiver's
 * uploads (upload.h) and capture listing need: put a file (one PUT with
 * Content-MD5, or a multipart upload), HEAD, ListObjectsV2, GET with a
 * range, and the AWS credential chain.
 *
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4, "aws:amz:REGION:s3");
 * this module only supplies what the signature covers: the payload's
 * SHA-256 in x-amz-content-sha256, query strings already in canonical form
 * (sorted, encoded, every name with '='), and the session token as a header.
 *
 * Credentials, looked up before each request in this order (the AWS SDKs'):
 *   1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *   2. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
 *      $HOME/.aws/credentials), profile AWS_PROFILE or "default";
 *   3. AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (IRSA): STS
 *      AssumeRoleWithWebIdentity at sts_endpoint, the answer kept until five
 *      minutes before it expires (the token file is read again each time, as
 *      the kubelet rotates it).
 * Static credentials are read again at most every 60 seconds. Secrets
 * never appear in messages.
 *
 * Thread: a ps_s3 is used by one thread at a time (the upload worker, or an
 * HTTP thread with its own ps_s3). Every call blocks for its network I/O.
 */
#ifndef PS_S3_H
#define PS_S3_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Errors (negative). */
#define PS_S3_E_IO -1       /* network, timeout, 5xx, throttling: worth retrying */
#define PS_S3_E_AUTH -2     /* no credentials, or the server refused them (401/403) */
#define PS_S3_E_NOTFOUND -3 /* no such object (HEAD, GET) or bucket */
#define PS_S3_E_FILE -4     /* the local file is gone or unreadable */
#define PS_S3_E_VERIFY -5   /* the object read back differs from the file */
#define PS_S3_E_CANCEL -6   /* the cancel flag was raised */
#define PS_S3_E_PROTO -7    /* an answer that makes no sense (bad XML, no ETag) */
#define PS_S3_E_NOMEM -8

typedef struct ps_s3 ps_s3;

typedef struct ps_s3_opts {
    const char *endpoint; /* "http[s]://HOST[:PORT]"; NULL: https://s3.REGION.amazonaws.com */
    const char *region;   /* NULL: us-east-1 */
    const char *bucket;
    int path_style;            /* ENDPOINT/BUCKET/KEY, else BUCKET.HOST/KEY */
    const char *storage_class; /* NULL: not sent */
    int sse;                   /* PS_CONFIG_SSE_* */
    const char *sse_kms_key_id;
    const char *sts_endpoint; /* NULL: https://sts.REGION.amazonaws.com */
    const char *ca_file;      /* PEM CAs for https (S3 and STS); NULL: the system store */
    uint64_t part_size;       /* multipart above this (at least 5 MiB) */
    /* Optional, kept (not copied): while nonzero, transfers stop with
     * PS_S3_E_CANCEL within about a second. */
    const _Atomic int *cancel;
} ps_s3_opts;

/* Copies o. Fails on OOM (err "out of memory") or when curl cannot start. */
int ps_s3_new(ps_s3 **out, const ps_s3_opts *o, char *err, size_t errlen);
void ps_s3_free(ps_s3 *s);

const char *ps_s3_strerror(int code);

typedef struct ps_s3_object {
    uint64_t size;
    char etag[80]; /* without quotes; "" when the server sent none */
} ps_s3_object;

/* HEAD key. 0 (obj filled), PS_S3_E_NOTFOUND, or another error. */
int ps_s3_head(ps_s3 *s, const char *key, ps_s3_object *obj, char *err, size_t errlen);

/* 0 if key exists with the file's size and, unless under SSE-KMS (where the
 * ETag is no MD5), an ETag that is the file's: S3's for an upload by this
 * client (the MD5 of a single PUT, or MD5(part MD5s)-N with this part size),
 * or the whole file's MD5 (servers that hash the assembled object).
 * PS_S3_E_NOTFOUND, PS_S3_E_VERIFY, or another error. */
int ps_s3_confirm(ps_s3 *s, const char *key, const char *path, char *err, size_t errlen);

/* Uploads the file at path as key: one PUT with Content-MD5 up to
 * part_size, else a multipart upload (parts with Content-MD5; aborted on
 * failure), then ps_s3_confirm. 0 only once confirmed; *bytes then holds
 * the size sent. */
int ps_s3_put_file(ps_s3 *s, const char *key, const char *path, uint64_t *bytes, char *err,
                   size_t errlen);

/* Receives a GET's body; returns 0 to go on, nonzero to stop (the call then
 * returns PS_S3_E_CANCEL). */
typedef int (*ps_s3_sink)(void *ud, const void *data, size_t len);

/* GET key, bytes [off, off + len) (len 0: to the end). *total receives the
 * object's size when the server says it (Content-Range or Content-Length),
 * before the first call of sink. */
int ps_s3_get(ps_s3 *s, const char *key, uint64_t off, uint64_t len, uint64_t *total,
              ps_s3_sink sink, void *ud, char *err, size_t errlen);

/* A GET read at the reader's pace (an HTTP download streamed through):
 * open sends GET key [off, off + len) (len 0: to the end) and returns once
 * the answer's status is known: 0 (200/206), PS_S3_E_NOTFOUND, another
 * error. read blocks until bytes arrive: the count, 0 at the end, -1 on
 * error. At most 256 KiB are buffered (the transfer pauses beyond). The
 * stream uses s's connection: s does nothing else until stream_free. */
typedef struct ps_s3_stream ps_s3_stream;
int ps_s3_stream_open(ps_s3 *s, const char *key, uint64_t off, uint64_t len, ps_s3_stream **out,
                      char *err, size_t errlen);
long ps_s3_stream_read(ps_s3_stream *st, void *buf, size_t max);
void ps_s3_stream_free(ps_s3_stream *st);

typedef struct ps_s3_listed {
    const char *key;
    uint64_t size;
    const char *last_modified; /* as the server wrote it (ISO 8601) */
} ps_s3_listed;

/* ListObjectsV2 under prefix, every page; cb per object, in key order.
 * Stops after max objects (0: no limit). */
int ps_s3_list(ps_s3 *s, const char *prefix, size_t max,
               void (*cb)(void *ud, const ps_s3_listed *o), void *ud, char *err, size_t errlen);

#endif
