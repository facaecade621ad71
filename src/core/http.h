/*
 * http: the process's one HTTP server (libmicrohttpd), for probes, metrics
 * and, on the receiver, the capture API (src/receiver/api.c).
 *
 * Threads: libmicrohttpd runs its own listening thread and one thread per
 * connection (so a long download or a live stream never holds up another
 * request). Nothing here ever runs on, or waits for, the libuv loop that
 * moves packets. The loop publishes what the HTTP side needs through:
 *  - the metrics registry (atomics, see metrics.h);
 *  - ps_http_set_ready(): an atomic flag plus a reason string under a mutex,
 *    called from a timer (at most every ~250 ms), never per packet;
 *  - ps_snapshot: an immutable blob swapped under a mutex by a timer.
 *
 * Built-in routes, open to everyone: /healthz (alive: 200 "ok"), /readyz
 * (200 "ready" or 503 "not ready: REASON"), /metrics (Prometheus text format
 * 0.0.4: the registry, then process_* resource metrics read from /proc/self).
 * Every other path ("protected") goes through the access rule, then to
 * opts.route:
 *  - a request a browser marks as cross-origin (an Origin header that is not
 *    http(s)://HOST, or Sec-Fetch-Site other than same-origin/none) gets 403;
 *  - a loopback client (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104), while
 *    opts.trust_loopback is set, is served if its Host header is an IP
 *    literal, "localhost" or one of opts.allowed_hosts (any port); another
 *    Host gets 421: that is how a DNS-rebound browser page arrives;
 *  - otherwise, with opts.token set, "Authorization: Bearer TOKEN" is
 *    required (compared in constant time), else 401 with WWW-Authenticate;
 *  - otherwise 403: without a token, captures never leave the host.
 * Only GET and HEAD are served (405 otherwise), and, when opts.write_route
 * is set, POST and DELETE: the access rule is applied on the headers, then
 * the body (at most PS_HTTP_MAX_BODY bytes, else 413) is handed whole to
 * write_route.
 *
 * Prefixes: ps_http_ for the server; the helpers the routes share with it
 * keep their own, ps_snapshot_ (published blobs), ps_range_ (Range
 * requests) and ps_json_ (JSON string escaping).
 *
 * Connection budget (slowloris): at most opts.max_connections connections
 * are counted, at most opts.max_per_source of them from one IP address. A
 * connection is "idle" until its request headers are complete and again
 * between keep-alive requests; an idle one is closed after
 * opts.header_timeout_sec even if it trickles bytes. When a new connection
 * would exceed a budget, the oldest idle connection of that budget (or one
 * stuck for over a second in the answer of an open route, a slow reader) is
 * closed to make room; only if there is none is the newcomer refused. So a
 * probe, which sends its request at once, always finds a place while slow
 * clients hold idle connections, from one address or many. Protected
 * requests in progress are kept below max_connections by a reserve for the
 * open routes: beyond it they get 503. Every closure or refusal is counted
 * in packetstreamer_http_rejected_connections_total{reason} and logged at
 * most once per 10 s per reason.
 *
 * The pure helpers at the end (range parsing, JSON escaping, name checks,
 * bearer check, URL unescaping) do no I/O and are unit-tested directly.
 */
#ifndef PS_HTTP_H
#define PS_HTTP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "buf.h"
#include "config.h"
#include "metrics.h"

typedef struct ps_http ps_http;

/* A route for paths other than the built-in ones. Called on an HTTP thread
 * for GET/HEAD requests that passed the access rule; url is unescaped (see
 * ps_http_unescape). Returns the MHD result of queueing a response, or
 * PS_HTTP_NOT_FOUND to let the server answer 404. */
#define PS_HTTP_NOT_FOUND (-1)
typedef int (*ps_http_route_fn)(void *ud, struct MHD_Connection *c, const char *url);
/* POST and DELETE on protected paths: method is "POST" or "DELETE", body
 * the request body (NUL-terminated, len bytes, "" when none). Same return. */
typedef int (*ps_http_write_fn)(void *ud, struct MHD_Connection *c, const char *method,
                                const char *url, const char *body, size_t len);
#define PS_HTTP_MAX_BODY (256u * 1024)

typedef struct ps_http_opts {
    const char *listen;  /* "ADDR:PORT" ([v6]:PORT); port 0 picks one */
    const char *token;   /* http.token, or NULL: non-loopback clients get 403 */
    ps_metrics *metrics; /* rendered by /metrics (not owned) */
    ps_http_route_fn route;
    ps_http_write_fn write_route; /* NULL: POST and DELETE get 405 */
    void *ud;
    /* Budgets and trust (http.*); 0 / NULL take the defaults below. */
    unsigned max_connections;         /* http.maxConnections */
    unsigned max_per_source;          /* http.maxConnectionsPerSource */
    unsigned header_timeout_sec;      /* http.headerTimeoutSec */
    int distrust_loopback;            /* !http.trustLoopback */
    const char *const *allowed_hosts; /* http.allowedHosts (copied) */
    int allowed_hosts_count;
} ps_http_opts;

#define PS_HTTP_DEFAULT_MAX_CONNECTIONS 64
#define PS_HTTP_DEFAULT_MAX_PER_SOURCE 16
#define PS_HTTP_DEFAULT_HEADER_TIMEOUT_SEC 10

/* Fills o's budget and trust fields from the http.* keys of c (listen,
 * token and the rest are left to the caller). */
void ps_http_opts_from_config(ps_http_opts *o, const ps_config *c);

/* Starts the server into *out. On failure returns -1 with err set (*out
 * untouched): an address that is not ADDR:PORT (ps_hostport_parse, port 0
 * allowed) or cannot be bound, or out of memory. Callers treat that as a
 * startup error. Registers packetstreamer_build_info{version} in metrics. */
int ps_http_open(ps_http **out, const ps_http_opts *o, char *err, size_t errlen);
/* Stops accepting, waits for every connection thread, frees. NULL: no-op.
 * Routes that stream forever must watch ps_http_stopping(). */
void ps_http_free(ps_http *h);
int ps_http_stopping(const ps_http *h);
/* The port actually bound (useful with port 0). */
int ps_http_port(const ps_http *h);
/* "ADDR:PORT" as bound, the port resolved when http.listen asked for 0
 * (ps_hostport_format: IPv6 in brackets). Valid until ps_http_free(). */
const char *ps_http_addr(const ps_http *h);

/* Readiness as the loop sees it; reason (may be NULL) says why not. */
void ps_http_set_ready(ps_http *h, int ready, const char *reason);

/* Response helpers for routes: a copied body with a content type. */
int ps_http_respond(struct MHD_Connection *c, unsigned status, const char *type, const void *body,
                    size_t len);
int ps_http_respond_text(struct MHD_Connection *c, unsigned status, const char *text);

/* ---- snapshots: data the loop publishes for the HTTP threads ---- */

typedef struct ps_snapshot {
    pthread_mutex_t mu;
    char *data;
    size_t len;
} ps_snapshot;

void ps_snapshot_init(ps_snapshot *s);
void ps_snapshot_free(ps_snapshot *s);
/* Takes ownership of data (malloc'd, may be NULL); frees the previous one. */
void ps_snapshot_set(ps_snapshot *s, char *data, size_t len);
/* Appends a copy of the current data to out. 0, or -1 on OOM. */
int ps_snapshot_get(ps_snapshot *s, ps_buf *out);

/* ---- pure helpers ---- */

typedef enum ps_range_result {
    PS_RANGE_NONE = 0,      /* no usable Range header: send the whole body (200) */
    PS_RANGE_OK = 1,        /* one satisfiable range: 206, *start, *len set */
    PS_RANGE_UNSATISFIABLE, /* 416 with Content-Range: bytes * / size */
} ps_range_result;

/* Parses a Range header value against a body of `size` bytes. Supports one
 * range, "bytes=A-B", "bytes=A-" and "bytes=-N" (suffix). Malformed values,
 * other units and multiple ranges are ignored (PS_RANGE_NONE), as RFC 9110
 * allows. A syntactically valid range starting at or past the end, or a
 * zero-length suffix, is PS_RANGE_UNSATISFIABLE. */
ps_range_result ps_http_parse_range(const char *hdr, uint64_t size, uint64_t *start, uint64_t *len);

/* Appends s as a JSON string, quotes included. Control characters and bytes
 * >= 0x80 become \u00XX escapes, so the output is ASCII and always valid
 * (non-ASCII bytes are shown as Latin-1: ids and names here are ASCII). */
int ps_json_str(ps_buf *out, const char *s);

/* 1 if hdr is "Bearer TOKEN" for this token (scheme case-insensitive,
 * token compared in constant time over its length). */
int ps_http_bearer_ok(const char *hdr, const char *token);

/* 1 for 127.0.0.0/8, ::1 and IPv4-mapped 127.0.0.0/8. */
int ps_http_is_loopback(const struct sockaddr *sa);

/* 1 if a Host header value names this server in a way a DNS-rebound page
 * cannot: an IPv4 literal (dotted quad), a bracketed IPv6 literal, or
 * "localhost" or one of allowed[0..n) (case-insensitive, one trailing dot
 * ignored), each optionally followed by ":PORT". NULL (no Host header, as
 * in HTTP/1.0, which no browser sends) is accepted. */
int ps_http_host_ok(const char *host, const char *const *allowed, int n);

/* 1 if a browser says the request comes from another origin: an Origin
 * header other than "http://HOST" or "https://HOST" (HOST being the Host
 * header, compared case-insensitively; "null" is foreign), or a
 * Sec-Fetch-Site header other than "same-origin" or "none". Any argument
 * may be NULL (header absent). */
int ps_http_cross_origin(const char *origin, const char *sec_fetch_site, const char *host);

/* Decodes %XX in place (libmicrohttpd's unescape callback). "%00" is left
 * as is rather than cutting the string, so a NUL trick reaches the name
 * checks (and fails them) instead of being silently truncated. Returns the
 * new length. */
size_t ps_http_unescape(char *s);

#endif
