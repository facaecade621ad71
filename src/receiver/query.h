/*
 * query: the extraction behind GET /api/packets (docs/http.md): one pcapng
 * stream with exactly the packets of a time window, of selected interfaces,
 * passing a BPF filter, in timestamp order across every capture file of the
 * output directory (completed ones and those being written).
 *
 * Selection: every pcapng file of the prefix (filename.h) is described by
 * its index (index.h), or, for .part files and files not indexed yet, by a
 * scan at open (a .part's scan is kept between queries and continued). A file is read only if its time range overlaps the window
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
 * Order: the output is a k-way merge of one stream per (file, interface),
 * each read sequentially in file order: within a file, the packets of one
 * interface are in capture order (a sensor sends them so, the receiver
 * writes them so); across files and interfaces the merge orders them (ties
 * keep file and interface order). A stream is opened when the merge reaches
 * its first timestamp (from the index) and closed at its end, so memory
 * (PS_QUERY_WINDOW per open stream, less when there are many streams, at
 * least 8 KiB; a block larger than the window grows it for that block)
 * and descriptors (one per open file)
 * follow the streams that overlap in time, not the number of files. A stream stops at its first
 * packet more than PS_QUERY_DISORDER_NS past the window.
 *
 * Output: a Section Header Block, then one Interface Description Block per
 * distinct (name, link type) before its first packet (the input's
 * if_description, snaplen the largest of the inputs', nanosecond
 * resolution), and an Enhanced Packet Block per packet with the original
 * timestamp, caplen, origlen and bytes. Input options other than the IDB's
 * name and description are not copied.
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

#define PS_QUERY_DISORDER_NS (10ull * 1000000000ull)
#define PS_QUERY_MAX_SELECTOR 512
#define PS_QUERY_MAX_FILTER 4096
#define PS_QUERY_MAX_STREAMS 100000 /* (file, interface) streams one query may merge */
#define PS_QUERY_WINDOW (64u << 10) /* read size per open stream ... */
#define PS_QUERY_MEMORY (64u << 20) /* ... less when streams * WINDOW is above this */

/* Errors of ps_query_open the caller answers with 400 (others: 500). */
#define PS_QUERY_E_FILTER (-2) /* the BPF filter does not compile */
#define PS_QUERY_E_LIMIT (-3)  /* too many streams: narrow the window or selection */

typedef struct ps_query_opts {
    uint64_t from_ns, to_ns; /* inclusive */
    const char *pod;         /* "NS/NAME", or NULL */
    const char *ns, *sensor, *iface;
    const char *filter; /* BPF, or NULL */
    uint64_t limit;     /* packets; 0: no limit */
    const char *app;    /* shb_userappl */
} ps_query_opts;

typedef struct ps_query ps_query;

typedef struct ps_query_stats {
    unsigned files;         /* capture files in the directory (pcapng) */
    unsigned files_read;    /* files with at least one stream */
    unsigned files_skipped; /* ruled out by their index or scan */
    unsigned files_scanned; /* had no usable index: scanned at open */
    unsigned ifaces_named;  /* distinct interface names matching the selectors */
    unsigned streams;       /* (file, interface) streams to merge */
    uint64_t packets;       /* packets written so far */
    uint64_t bytes_read;    /* of capture files, by the streams closed so far */
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
