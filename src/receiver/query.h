/*
 * query: the extraction behind GET /api/packets (docs/http.md): one pcapng
 * stream with exactly the packets of a time window, of selected interfaces,
 * passing a BPF filter, in timestamp order across every capture file of the
 * output directory (completed ones and those being written).
 *
 * Selection: every pcapng file of the prefix (filename.h) is described by
 * its index (index.h), or, for .part files and files not indexed yet, by a
 * scan at open (a .part's scan is kept between queries and continued). A
 * file is read only if its time range overlaps the window
 * and one of its interfaces matches the selectors and has packets in the
 * window. Interfaces are matched by their pcapng name, "SENSOR/IFACE" or,
 * for pods, "SENSOR/NAMESPACE/POD" (docs/protocol.md, "Pod interfaces"):
 *   pod=NS/NAME     the name ends in "/NS/NAME" after a non-empty sensor
 *   namespace=NS    the name has three or more parts, the second to last NS
 *   sensor=ID       the name starts with "ID/"
 *   iface=NAME      the name ends in "/NAME" after a non-empty sensor (with
 *                   sensor=ID: is exactly "ID/NAME")
 * Selectors combine with AND; none selects every interface.
 *
 * Order: the output is a k-way merge of one stream per (file, interface):
 * within a file, the packets of one interface are in capture order (a
 * sensor sends them so, the receiver writes them so); across files and
 * interfaces the merge orders them (ties keep file and interface order). A
 * stream is opened when the merge reaches its first timestamp (from the
 * index) and closed at its end; a file is open while one of its streams is.
 * The streams of a file do not read it each: one scanner per file reads
 * each block once, through a window shared by the file's streams (up to
 * PS_QUERY_SHARED, less when many files are selected), and queues the
 * offset of each packet block for its interface's stream. A stream whose
 * queue reaches its bound (PS_QUERY_MEMORY / 8 bytes shared by all
 * streams) reads the file on its own from there, and a stream whose next
 * block has left the shared window (its interface's packets come much
 * earlier in the file than the others') reads through its own window
 * (PS_QUERY_WINDOW, less when there are many streams, at least 8 KiB; a
 * block larger than a window grows it for that block). So memory and
 * descriptors (one per open file) follow the files and streams that
 * overlap in time, not the number of files. A stream stops at its first
 * packet more than PS_QUERY_DISORDER_NS past the window.
 *
 * Output: a Section Header Block, then one Interface Description Block per
 * distinct (name, link type) before its first packet (the input's
 * if_description, snaplen the largest of the inputs', nanosecond
 * resolution), and an Enhanced Packet Block per packet with the original
 * timestamp, caplen, origlen and bytes. Input options other than the IDB's
 * name and description are not copied.
 *
 * Bucket objects: with opts.src, files the directory does not hold (objects
 * of the S3 bucket, s3extract.h) are selected the same way from the index
 * given with each, and those selected are made local (fetched into a
 * cache) before ps_query_open returns, so a bucket that fails is the
 * request's error, not a short answer.
 *
 * Threads: a query is used by one thread at a time (an HTTP connection's);
 * queries share nothing but libpcap's compiler, which is serialised.
 * Classic pcap files are not read (query.c, docs/http.md).
 */
#ifndef PS_QUERY_H
#define PS_QUERY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <pcap/pcap.h>

#include "index.h"

#define PS_QUERY_DISORDER_NS (10ull * 1000000000ull)
#define PS_QUERY_MAX_SELECTOR 512
#define PS_QUERY_MAX_FILTER 4096
#define PS_QUERY_MAX_STREAMS 100000 /* (file, interface) streams one query may merge */
#define PS_QUERY_WINDOW (64u << 10) /* read size per open stream ... */
#define PS_QUERY_MEMORY (64u << 20) /* ... less when streams * WINDOW is above this */
#define PS_QUERY_SHARED (8u << 20)  /* a file's window shared by its streams (see above) */

/* Errors of ps_query_open the caller answers with 400 (others: 500). */
#define PS_QUERY_E_FILTER (-2) /* the BPF filter does not compile */
#define PS_QUERY_E_LIMIT (-3)  /* too many streams: narrow the window or selection */
/* Codes a source's fetch returns (query.h passes them through). */
#define PS_QUERY_E_REMOTE (-4) /* the bucket failed: 502 */
#define PS_QUERY_E_TOOBIG (-5) /* needs more than the object cache holds: 400 */
#define PS_QUERY_E_BUSY (-6)   /* the cache is held by other extractions: 503 */

/* Capture files that are not in the directory (objects of a bucket,
 * s3extract.h), described by their index. They join the directory's files
 * in name order (then by `who`, "" first); a remote file with who "" and
 * the name of a directory file is left out (the local copy is read). */
typedef struct ps_query_remote {
    const char *name;  /* the capture file's name */
    const char *who;   /* the receiver that wrote it, "" this one */
    const ps_index *x; /* its index; borrowed during ps_query_open */
} ps_query_remote;

typedef struct ps_query_source {
    const ps_query_remote *remote;
    size_t nremote;
    /* Called once by ps_query_open, with the remote files it selected
     * (which[0..n), n > 0, indices into remote): makes each readable as a
     * local file, its path in paths[i] (malloc'd; the query frees them).
     * 0, or a negative code (PS_QUERY_E_REMOTE, _TOOBIG, _BUSY, -1) with
     * err, which ps_query_open returns. */
    int (*fetch)(void *ud, const size_t *which, size_t n, char **paths, char *err, size_t errlen);
    /* Optional: a completed directory file (name) vanished before it was
     * read (deleted once uploaded): a copy of it, at least min_size bytes,
     * into path. 0, or -1 (the file's packets are then missing from the
     * answer, as when retention deletes a file during a query). May be
     * called from ps_query_read. */
    int (*refetch)(void *ud, const char *name, uint64_t min_size, char *path, size_t pathlen);
    void *ud; /* must outlive the query */
} ps_query_source;

typedef struct ps_query_opts {
    uint64_t from_ns, to_ns; /* inclusive */
    const char *pod;         /* "NS/NAME", or NULL */
    const char *ns, *sensor, *iface;
    const char *filter;         /* BPF, or NULL */
    uint64_t limit;             /* packets; 0: no limit */
    const char *app;            /* shb_userappl */
    const ps_query_source *src; /* more files than the directory's, or NULL */
} ps_query_opts;

typedef struct ps_query ps_query;

typedef struct ps_query_stats {
    unsigned files;         /* capture files in the directory (pcapng) */
    unsigned files_read;    /* files with at least one stream */
    unsigned files_skipped; /* ruled out by their index or scan */
    unsigned files_scanned; /* had no usable index: scanned at open */
    unsigned remote;        /* remote files (src) considered, included in files */
    unsigned remote_read;   /* of them, read (included in files_read) */
    unsigned refetched;     /* local files gone during the query, read from src */
    unsigned ifaces_named;  /* distinct interface names matching the selectors */
    unsigned streams;       /* (file, interface) streams to merge */
    uint64_t packets;       /* packets written so far */
    uint64_t bytes_read;    /* read from capture files so far */
} ps_query_stats;

/* Selects files and interfaces of DIR/PREFIX-* and compiles the filter.
 * 0 with *out set, or a negative code with err: PS_QUERY_E_FILTER (err is
 * libpcap's message), PS_QUERY_E_LIMIT, -1 (OOM, unreadable directory). */
int ps_query_open(ps_query **out, const char *dir, const char *prefix, const ps_query_opts *o,
                  char *err, size_t errlen);
void ps_query_get_stats(const ps_query *q, ps_query_stats *st);
/* Fills buf with the next bytes of the stream: > 0 bytes, 0 at its end, -1
 * on an error (a read error, OOM; the stream is then cut). */
ssize_t ps_query_read(ps_query *q, uint8_t *buf, size_t max);
void ps_query_free(ps_query *q);
/* Frees the scans of .part files kept between queries (query.c); call once
 * no query runs (after the HTTP server stopped). */
void ps_query_cleanup(void);

/* ---- pure helpers ---- */

/* A time parameter: RFC 3339 ("2026-12-05T07:30:00Z", fractional seconds
 * up to nanoseconds, "z", "t" or a space, numeric offsets "+01:00"), "now",
 * or a duration before now: "-5m", "-90s", "-2h", "-1h30m", "-250ms",
 * "now-5m" (units ns, us, ms, s, m, h, d). 0, or -1 with err (without the
 * parameter's name, which the caller adds). */
int ps_query_parse_time(const char *s, uint64_t now_ns, uint64_t *out, char *err, size_t errlen);

/* 1 if an interface name matches the selectors of o (see above). */
int ps_query_name_matches(const char *name, const ps_query_opts *o);

/* Compiles a BPF filter for a link type (libpcap, optimised, netmask
 * unknown; serialised across threads). 0 (free prog with pcap_freecode),
 * PS_QUERY_E_FILTER with libpcap's message in err, or -1 (OOM). Also used
 * by /live (livefeed.c). */
int ps_query_compile(const char *filter, uint32_t linktype, struct bpf_program *prog, char *err,
                     size_t errlen);

#endif
