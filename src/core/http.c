/*
 * http: libmicrohttpd wrapper shared by the sensor and the receiver.
 *
 * Why one thread per connection: a capture download or a live stream may
 * last minutes, and a blocking content callback is the simplest correct way
 * to feed it; the connection limit bounds the threads. The packet loop never
 * calls into libmicrohttpd and never takes a lock an HTTP thread may hold
 * for long: readiness is an atomic plus a mutex-protected string, metrics
 * are atomics, snapshots are swapped pointers.
 *
 * Why our own connection table rather than MHD_OPTION_PER_IP_CONNECTION_LIMIT
 * alone: libmicrohttpd refuses the newcomer when a limit is reached, so 64
 * slow clients (or 16 from the node's address, which kubelet shares) lock
 * the probes out; and its inactivity timeout restarts with every byte, so a
 * client trickling one byte a second is never cut. The table (slots filled
 * from MHD's connection notifications, all under `cmu`) knows which
 * connections have not sent a complete request yet; the accept policy
 * closes the oldest of those to admit a newcomer (shutdown(2) on the
 * socket: the descriptor stays MHD's, and MHD reports CLOSED before it
 * closes it, so the slot is never stale), and a watchdog thread closes the
 * ones past the header deadline. A separate probe port was rejected: it
 * would need a second port on every node (the sensor uses the host's
 * network) and chart changes, and could be slowlorised the same way. MHD's
 * own limits stay as a backstop above ours (room for connections being
 * closed).
 */
#include "http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hostport.h"
#include "log.h"
#include "net.h"

#define PS_HTTP_TIMEOUT_SEC 60
#define PS_HTTP_REASON_MAX 256
#define SLOW_ANSWER_NS 1000000000ull /* an open route's answer older than this is a slow reader */
#define LOG_EVERY_NS 10000000000ull  /* one refusal line per reason per 10 s */

/* Why a connection was closed or refused: the {reason} label. */
enum {
    RJ_HEADER_TIMEOUT,
    RJ_SOURCE_LIMIT,
    RJ_CONNECTION_LIMIT,
    RJ_BUSY,
    RJ_HOST,
    RJ_CROSS_ORIGIN,
    RJ_COUNT
};
static const char *const rj_names[RJ_COUNT] = {"header_timeout", "source_limit", "connection_limit",
                                               "busy",           "host",         "cross_origin"};
static const char *const rj_why[RJ_COUNT] = {
    "no complete request within http.headerTimeoutSec",
    "over http.maxConnectionsPerSource",
    "over http.maxConnections",
    "too many requests in progress (http.maxConnections)",
    "Host header is not an IP literal, localhost or in http.allowedHosts",
    "cross-origin request"};

typedef enum conn_state {
    CS_FREE = 0,
    CS_IDLE,      /* no complete request yet, or between keep-alive requests */
    CS_OPEN,      /* answering a probe, /metrics or a refusal */
    CS_PROTECTED, /* serving a protected route */
    CS_CLOSING,   /* shut down by us; MHD has not reported it closed yet */
} conn_state;

typedef struct conn {
    conn_state state;
    int fd;
    unsigned char ip[16]; /* IPv4 as ::ffff:a.b.c.d, so both families compare */
    uint64_t since_ns;    /* when it entered its state */
} conn;

struct ps_http {
    struct MHD_Daemon *d;
    ps_http_opts o;
    char *token;
    char **allowed; /* copy of o.allowed_hosts */
    int port;
    char addr[PS_HOSTPORT_HOST_MAX + 8]; /* "ADDR:PORT" as bound */
    atomic_int ready;
    atomic_int stopping;
    pthread_mutex_t mu; /* guards reason */
    char reason[PS_HTTP_REASON_MAX];

    /* The connection table: guarded by cmu. */
    pthread_mutex_t cmu;
    conn *conns;
    unsigned nslots; /* MHD's hard limit: max_conns plus room for closing ones */
    unsigned max_conns, per_source, protected_max;
    uint64_t header_timeout_ns;
    unsigned protected_now; /* connections in CS_PROTECTED */
    uint64_t last_log_ns[RJ_COUNT];
    unsigned unlogged[RJ_COUNT];
    ps_series *rejected[RJ_COUNT];

    /* The header-deadline watchdog. */
    pthread_t watchdog;
    pthread_cond_t wake; /* with cmu */
    int watchdog_on, watchdog_stop;
};

/* ---- pure helpers ---- */

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

ps_range_result ps_http_parse_range(const char *hdr, uint64_t size, uint64_t *start, uint64_t *len)
{
    if (!hdr || strncasecmp(hdr, "bytes=", 6) != 0)
        return PS_RANGE_NONE;
    const char *p = hdr + 6;
    while (*p == ' ')
        p++;
    const char *dash = strchr(p, '-');
    if (!dash || strchr(p, ','))
        return PS_RANGE_NONE; /* malformed or several ranges: send it all */
    const char *q = dash + 1;
    size_t qn = strlen(q);
    while (qn > 0 && q[qn - 1] == ' ')
        qn--;
    uint64_t a, b;
    if (dash == p) { /* suffix: the last N bytes */
        if (parse_u64(q, qn, &b) != 0)
            return PS_RANGE_NONE;
        if (b == 0 || size == 0)
            return PS_RANGE_UNSATISFIABLE;
        *len = b < size ? b : size;
        *start = size - *len;
        return PS_RANGE_OK;
    }
    if (parse_u64(p, (size_t)(dash - p), &a) != 0)
        return PS_RANGE_NONE;
    if (qn == 0) {
        b = UINT64_MAX;
    } else {
        if (parse_u64(q, qn, &b) != 0 || b < a)
            return PS_RANGE_NONE;
    }
    if (a >= size)
        return PS_RANGE_UNSATISFIABLE;
    if (b >= size)
        b = size - 1;
    *start = a;
    *len = b - a + 1;
    return PS_RANGE_OK;
}

int ps_json_str(ps_buf *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (ps_buf_append(out, "\"", 1) != 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[7];
        size_t n = 0;
        if (*p == '"' || *p == '\\') {
            e[0] = '\\';
            e[1] = (char)*p;
            n = 2;
        } else if (*p < 0x20 || *p >= 0x7f) {
            memcpy(e, "\\u00", 4);
            e[4] = hex[*p >> 4];
            e[5] = hex[*p & 15];
            n = 6;
        } else {
            e[0] = (char)*p;
            n = 1;
        }
        if (ps_buf_append(out, e, n) != 0)
            return -1;
    }
    return ps_buf_append(out, "\"", 1);
}

int ps_http_bearer_ok(const char *hdr, const char *token)
{
    if (!hdr || !token || !*token)
        return 0;
    if (strncasecmp(hdr, "Bearer ", 7) != 0)
        return 0;
    const char *t = hdr + 7;
    while (*t == ' ')
        t++;
    size_t tl = strlen(token), gl = strlen(t);
    while (gl > 0 && t[gl - 1] == ' ')
        gl--;
    /* The length check leaks only the length; the bytes are compared in
     * constant time over the configured token's length. */
    return gl == tl && CRYPTO_memcmp(t, token, tl) == 0;
}

int ps_http_is_loopback(const struct sockaddr *sa)
{
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof(in));
        return (ntohl(in.sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof(in6));
        if (IN6_IS_ADDR_LOOPBACK(&in6.sin6_addr))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr) && in6.sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

/* 1 if s is empty or ":PORT" (1..5 digits) up to its end. */
static int port_suffix_ok(const char *s)
{
    if (*s == '\0')
        return 1;
    if (*s != ':')
        return 0;
    size_t n = strlen(s + 1);
    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 1; i <= n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int ps_http_host_ok(const char *host, const char *const *allowed, int n)
{
    char name[256];
    if (!host)
        return 1;
    size_t len = strlen(host);
    if (len == 0 || len >= sizeof(name))
        return 0;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        struct in6_addr a6;
        size_t k = close ? (size_t)(close - host - 1) : 0;
        if (!close || k == 0 || !port_suffix_ok(close + 1))
            return 0;
        memcpy(name, host + 1, k);
        name[k] = '\0';
        return inet_pton(AF_INET6, name, &a6) == 1;
    }
    const char *colon = strchr(host, ':');
    size_t k = colon ? (size_t)(colon - host) : len;
    if (k == 0 || (colon && !port_suffix_ok(colon)))
        return 0; /* also an unbracketed IPv6 address: browsers never send one */
    memcpy(name, host, k);
    name[k] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1)
        return 1;
    if (k > 1 && name[k - 1] == '.')
        name[--k] = '\0';
    if (strcasecmp(name, "localhost") == 0)
        return 1;
    for (int i = 0; allowed && i < n; i++)
        if (allowed[i] && strcasecmp(name, allowed[i]) == 0)
            return 1;
    return 0;
}

int ps_http_cross_origin(const char *origin, const char *sec_fetch_site, const char *host)
{
    if (sec_fetch_site && strcasecmp(sec_fetch_site, "same-origin") != 0 &&
        strcasecmp(sec_fetch_site, "none") != 0)
        return 1;
    if (!origin)
        return 0;
    const char *rest;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    else
        return 1; /* "null" (sandboxed, file:) or another scheme */
    return !host || !*host || strcasecmp(rest, host) != 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t ps_http_unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        int hi, lo;
        if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* ---- snapshots ---- */

void ps_snapshot_init(ps_snapshot *s)
{
    pthread_mutex_init(&s->mu, NULL);
    s->data = NULL;
    s->len = 0;
}

void ps_snapshot_free(ps_snapshot *s)
{
    free(s->data);
    s->data = NULL;
    pthread_mutex_destroy(&s->mu);
}

void ps_snapshot_set(ps_snapshot *s, char *data, size_t len)
{
    pthread_mutex_lock(&s->mu);
    char *old = s->data;
    s->data = data;
    s->len = data ? len : 0;
    pthread_mutex_unlock(&s->mu);
    free(old);
}

int ps_snapshot_get(ps_snapshot *s, ps_buf *out)
{
    pthread_mutex_lock(&s->mu);
    int rc = s->data ? ps_buf_append(out, s->data, s->len) : 0;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- process metrics (/proc/self) ---- */

static int read_small_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    return 0;
}

static int render_process(ps_buf *out)
{
    char stat[1024], line[512];
    double cpu = 0, start = 0, rss = 0, vsz = 0;
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (read_small_file("/proc/self/stat", stat, sizeof(stat)) == 0 && tck > 0) {
        /* Fields after the command name, which may contain spaces. */
        const char *p = strrchr(stat, ')');
        unsigned long long ut = 0, st = 0, starttime = 0, vsize = 0;
        long long rsspages = 0;
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                        "%*d %llu %llu %lld",
                        &ut, &st, &starttime, &vsize, &rsspages) == 5) {
            cpu = (double)(ut + st) / (double)tck;
            vsz = (double)vsize;
            rss = (double)rsspages * (double)page;
            char pstat[4096];
            if (read_small_file("/proc/stat", pstat, sizeof(pstat)) == 0) {
                const char *b = strstr(pstat, "\nbtime ");
                if (b)
                    start = strtod(b + 7, NULL) + (double)starttime / (double)tck;
            }
        }
    }
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                fds++;
        closedir(d);
        fds--; /* the directory stream's own descriptor */
    }
    long maxfds = sysconf(_SC_OPEN_MAX);
    snprintf(line, sizeof(line),
             "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
             "# TYPE process_cpu_seconds_total counter\n"
             "process_cpu_seconds_total %.17g\n",
             cpu);
    int rc = ps_buf_append(out, line, strlen(line));
    snprintf(line, sizeof(line),
             "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
             "# TYPE process_resident_memory_bytes gauge\n"
             "process_resident_memory_bytes %.17g\n"
             "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
             "# TYPE process_virtual_memory_bytes gauge\n"
             "process_virtual_memory_bytes %.17g\n",
             rss, vsz);
    rc |= ps_buf_append(out, line, strlen(line));
    snprintf(line, sizeof(line),
             "# HELP process_start_time_seconds Start time of the process since unix epoch in "
             "seconds.\n"
             "# TYPE process_start_time_seconds gauge\n"
             "process_start_time_seconds %.17g\n"
             "# HELP process_open_fds Number of open file descriptors.\n"
             "# TYPE process_open_fds gauge\n"
             "process_open_fds %d\n"
             "# HELP process_max_fds Maximum number of open file descriptors.\n"
             "# TYPE process_max_fds gauge\n"
             "process_max_fds %ld\n",
             start, fds, maxfds);
    rc |= ps_buf_append(out, line, strlen(line));
    return rc ? -1 : 0;
}

/* ---- the connection table (see the top comment) ---- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ip_key(const struct sockaddr *sa, unsigned char out[16])
{
    memset(out, 0, 16);
    if (!sa)
        return;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof(in));
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in.sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof(in6));
        memcpy(out, &in6.sin6_addr, 16);
    }
}

static void ip_text(const unsigned char ip[16], char *out, size_t len)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(ip, mapped, 12) == 0)
        inet_ntop(AF_INET, ip + 12, out, (socklen_t)len);
    else
        inet_ntop(AF_INET6, ip, out, (socklen_t)len);
}

/* Counts a refusal and logs it, at most once per LOG_EVERY_NS per reason
 * (an attacker decides how often this runs). Called with cmu held. */
static void rejected_locked(ps_http *h, int why, const unsigned char ip[16], const char *what)
{
    if (h->rejected[why])
        ps_series_add(h->rejected[why], 1);
    uint64_t now = now_ns();
    if (h->last_log_ns[why] != 0 && now - h->last_log_ns[why] < LOG_EVERY_NS) {
        h->unlogged[why]++;
        return;
    }
    char a[INET6_ADDRSTRLEN], more[64] = "";
    ip_text(ip, a, sizeof(a));
    if (h->unlogged[why])
        snprintf(more, sizeof(more), " (and %u more in the last %llu s)", h->unlogged[why],
                 (unsigned long long)((now - h->last_log_ns[why]) / 1000000000u));
    ps_warn("http", "%s HTTP client %s: %s%s [reason=%s]", what, a, rj_why[why], more,
            rj_names[why]);
    h->last_log_ns[why] = now;
    h->unlogged[why] = 0;
}

static void rejected(ps_http *h, int why, struct MHD_Connection *c, const char *what)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    unsigned char ip[16];
    ip_key(ci ? ci->client_addr : NULL, ip);
    pthread_mutex_lock(&h->cmu);
    rejected_locked(h, why, ip, what);
    pthread_mutex_unlock(&h->cmu);
}

static int counted(const conn *k)
{
    return k->state == CS_IDLE || k->state == CS_OPEN || k->state == CS_PROTECTED;
}

/* An idle connection, or one stuck in the answer of an open route. */
static int evictable(const conn *k, uint64_t now)
{
    return k->state == CS_IDLE || (k->state == CS_OPEN && now - k->since_ns > SLOW_ANSWER_NS);
}

/* Closes k's socket under MHD (whose thread then sees the end and cleans
 * up); the slot stays until MHD reports the connection closed. */
static void evict_locked(ps_http *h, conn *k, int why)
{
    shutdown(k->fd, SHUT_RDWR);
    k->state = CS_CLOSING;
    rejected_locked(h, why, k->ip, "closing connection from");
}

/* The oldest evictable connection (of one address when ip is not NULL). */
static conn *oldest_locked(ps_http *h, const unsigned char *ip, uint64_t now)
{
    conn *best = NULL;
    for (unsigned i = 0; i < h->nslots; i++) {
        conn *k = &h->conns[i];
        if (!evictable(k, now) || (ip && memcmp(k->ip, ip, 16) != 0))
            continue;
        /* Idle ones first: a slow reader has at least sent a request. */
        if (!best || (k->state == CS_IDLE && best->state != CS_IDLE) ||
            (k->state == best->state && k->since_ns < best->since_ns))
            best = k;
    }
    return best;
}

/* MHD's accept policy (listening thread): make room or refuse. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    ps_http *h = cls;
    (void)addrlen;
    unsigned char ip[16];
    ip_key(addr, ip);
    uint64_t now = now_ns();
    enum MHD_Result ok = MHD_YES;
    pthread_mutex_lock(&h->cmu);
    unsigned total = 0, mine = 0;
    for (unsigned i = 0; i < h->nslots; i++) {
        if (!counted(&h->conns[i]))
            continue;
        total++;
        mine += memcmp(h->conns[i].ip, ip, 16) == 0;
    }
    if (mine >= h->per_source) {
        conn *v = oldest_locked(h, ip, now);
        if (v) {
            evict_locked(h, v, RJ_SOURCE_LIMIT);
            total--;
        } else {
            rejected_locked(h, RJ_SOURCE_LIMIT, ip, "refusing connection from");
            ok = MHD_NO;
        }
    }
    if (ok == MHD_YES && total >= h->max_conns) {
        conn *v = oldest_locked(h, NULL, now);
        if (v) {
            evict_locked(h, v, RJ_CONNECTION_LIMIT);
        } else {
            rejected_locked(h, RJ_CONNECTION_LIMIT, ip, "refusing connection from");
            ok = MHD_NO;
        }
    }
    pthread_mutex_unlock(&h->cmu);
    return ok;
}

static conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Moves k (may be NULL: an untracked connection) to state st. */
static void set_state(ps_http *h, conn *k, conn_state st)
{
    if (!k)
        return;
    pthread_mutex_lock(&h->cmu);
    if (k->state != CS_CLOSING && k->state != CS_FREE) {
        if (k->state == CS_PROTECTED)
            h->protected_now--;
        if (st == CS_PROTECTED)
            h->protected_now++;
        k->state = st;
        k->since_ns = now_ns();
    }
    pthread_mutex_unlock(&h->cmu);
}

/* Connection start and end (listening thread). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    ps_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        *socket_context = NULL;
        if (!fi)
            return;
        pthread_mutex_lock(&h->cmu);
        for (unsigned i = 0; i < h->nslots; i++) {
            conn *k = &h->conns[i];
            if (k->state != CS_FREE)
                continue;
            k->state = CS_IDLE;
            k->fd = fi->connect_fd;
            ip_key(ai ? ai->client_addr : NULL, k->ip);
            k->since_ns = now_ns();
            *socket_context = k;
            break;
        }
        pthread_mutex_unlock(&h->cmu);
        return;
    }
    conn *k = *socket_context;
    if (!k)
        return;
    pthread_mutex_lock(&h->cmu);
    if (k->state == CS_PROTECTED)
        h->protected_now--;
    k->state = CS_FREE;
    k->fd = -1;
    pthread_mutex_unlock(&h->cmu);
    *socket_context = NULL;
}

/* A request is over (connection thread): idle again until the next one. */
/* A POST or DELETE body being received (opts.write_route), kept in
 * *con_cls until the request completes or is aborted. */
typedef struct req_body {
    char *data;
    size_t len, cap;
    int too_big, oom;
} req_body;

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    req_body *b = con_cls ? *con_cls : NULL;
    if (b) {
        free(b->data);
        free(b);
        *con_cls = NULL;
    }
    set_state(cls, conn_of(c), CS_IDLE);
}

static void *watchdog_main(void *arg)
{
    ps_http *h = arg;
    pthread_mutex_lock(&h->cmu);
    while (!h->watchdog_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&h->wake, &h->cmu, &ts);
        uint64_t now = now_ns();
        for (unsigned i = 0; i < h->nslots && !h->watchdog_stop; i++) {
            conn *k = &h->conns[i];
            if (k->state == CS_IDLE && now - k->since_ns > h->header_timeout_ns)
                evict_locked(h, k, RJ_HEADER_TIMEOUT);
        }
    }
    pthread_mutex_unlock(&h->cmu);
    return NULL;
}

/* ---- responses ---- */

int ps_http_respond(struct MHD_Connection *c, unsigned status, const char *type, const void *body,
                    size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    int rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

int ps_http_respond_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return ps_http_respond(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

static int respond_metrics(ps_http *h, struct MHD_Connection *c)
{
    ps_buf b = PS_BUF_INIT;
    int rc;
    if ((h->o.metrics && ps_metrics_render(h->o.metrics, &b) != 0) || render_process(&b) != 0)
        rc = ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    else
        rc = ps_http_respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data,
                             b.len);
    ps_buf_free(&b);
    return rc;
}

static int respond_ready(ps_http *h, struct MHD_Connection *c)
{
    char msg[PS_HTTP_REASON_MAX + 32];
    if (atomic_load(&h->ready))
        return ps_http_respond_text(c, MHD_HTTP_OK, "ready\n");
    pthread_mutex_lock(&h->mu);
    snprintf(msg, sizeof(msg), "not ready: %s\n", h->reason[0] ? h->reason : "starting");
    pthread_mutex_unlock(&h->mu);
    return ps_http_respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
}

/* The access rule of the header comment; returns 1 if the request may go
 * on, else queues 401/403 into *rc and returns 0. */
static int access_ok(ps_http *h, struct MHD_Connection *c, int *rc)
{
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *site = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-Fetch-Site");
    if (ps_http_cross_origin(origin, site, host)) {
        rejected(h, RJ_CROSS_ORIGIN, c, "refusing request from");
        *rc = ps_http_respond_text(c, MHD_HTTP_FORBIDDEN,
                                   "forbidden: cross-origin request (Origin or Sec-Fetch-Site "
                                   "says another site asked for it)\n");
        return 0;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const char *auth =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    /* A valid token is never what a rebound page has: no Host check then. */
    if (h->token && ps_http_bearer_ok(auth, h->token))
        return 1;
    if (!h->o.distrust_loopback && ci && ps_http_is_loopback(ci->client_addr)) {
        if (ps_http_host_ok(host, (const char *const *)h->allowed, h->o.allowed_hosts_count))
            return 1;
        rejected(h, RJ_HOST, c, "refusing request from");
        *rc = ps_http_respond_text(
            c, MHD_HTTP_MISDIRECTED_REQUEST,
            "misdirected request: the Host header is not an IP address, localhost or a name in "
            "http.allowedHosts (a page reached through DNS rebinding looks like this); connect "
            "to http://127.0.0.1:PORT/ or add the name to http.allowedHosts\n");
        return 0;
    }
    if (!h->token) {
        *rc = ps_http_respond_text(c, MHD_HTTP_FORBIDDEN,
                                   "forbidden: captures are served to loopback clients only "
                                   "(kubectl port-forward) unless http.token is set\n");
        return 0;
    }
    static const char msg[] = "unauthorized: send Authorization: Bearer TOKEN\n";
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sizeof(msg) - 1, (void *)(uintptr_t)msg, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        *rc = MHD_NO;
        return 0;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"packetstreamer\"");
    *rc = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, r);
    MHD_destroy_response(r);
    return 0;
}

/* Moves k to CS_PROTECTED unless protected requests are at their share of
 * the connections (the rest is kept for probes and /metrics). */
static int take_protected(ps_http *h, conn *k)
{
    int ok = 1;
    pthread_mutex_lock(&h->cmu);
    if (h->protected_now >= h->protected_max) {
        ok = 0;
    } else if (k && k->state != CS_CLOSING && k->state != CS_FREE) {
        if (k->state != CS_PROTECTED)
            h->protected_now++;
        k->state = CS_PROTECTED;
        k->since_ns = now_ns();
    }
    pthread_mutex_unlock(&h->cmu);
    return ok;
}

/* POST and DELETE, for opts.write_route: the access rule is applied on the
 * headers, before a byte of the body is read, so an unauthorised client
 * cannot make us buffer anything; the body is then gathered up to
 * PS_HTTP_MAX_BODY (413 beyond) and handed over whole. */
static enum MHD_Result on_write_request(ps_http *h, struct MHD_Connection *c, const char *url,
                                        const char *method, const char *upload, size_t *upload_size,
                                        void **con_cls)
{
    req_body *b = *con_cls;
    conn *k = conn_of(c);
    int rc;
    if (!b) {
        set_state(h, k, CS_OPEN);
        if (!access_ok(h, c, &rc))
            return rc == MHD_YES ? MHD_YES : MHD_NO;
        b = calloc(1, sizeof(*b));
        if (!b)
            return MHD_NO;
        *con_cls = b;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (b->too_big || b->oom)
            return MHD_YES;
        if (n > PS_HTTP_MAX_BODY - b->len) {
            b->too_big = 1;
            return MHD_YES;
        }
        if (b->len + n + 1 > b->cap) {
            size_t nc = b->cap ? b->cap : 1024;
            while (nc < b->len + n + 1)
                nc *= 2;
            char *d = realloc(b->data, nc);
            if (!d) {
                b->oom = 1;
                return MHD_YES;
            }
            b->data = d;
            b->cap = nc;
        }
        memcpy(b->data + b->len, upload, n);
        b->len += n;
        b->data[b->len] = '\0';
        return MHD_YES;
    }
    if (b->too_big)
        rc = ps_http_respond_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
    else if (b->oom)
        rc = ps_http_respond_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    else if (!take_protected(h, k)) {
        rejected(h, RJ_BUSY, c, "answering 503 to");
        rc = ps_http_respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                  "busy: too many requests in progress, try again\n");
    } else if ((rc = h->o.write_route(h->o.ud, c, method, url, b->data ? b->data : "", b->len)) ==
               PS_HTTP_NOT_FOUND)
        rc = ps_http_respond_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    return rc == MHD_YES ? MHD_YES : MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    ps_http *h = cls;
    (void)version;
    /* The probes and /metrics are GET-only whatever the routes take. */
    int open_path =
        strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 || strcmp(url, "/metrics") == 0;
    int writes = h->o.write_route && !open_path;
    if (writes &&
        (strcmp(method, MHD_HTTP_METHOD_POST) == 0 || strcmp(method, MHD_HTTP_METHOD_DELETE) == 0))
        return on_write_request(h, c, url, method, upload, upload_size, con_cls);
    /* A request body is never wanted; refuse it before reading it. */
    if (*upload_size != 0)
        return MHD_NO;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        set_state(h, conn_of(c), CS_OPEN);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
                                writes ? "GET, HEAD, POST, DELETE" : "GET, HEAD");
        int rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        MHD_destroy_response(r);
        return rc == MHD_YES ? MHD_YES : MHD_NO;
    }
    int rc;
    conn *k = conn_of(c);
    set_state(h, k, CS_OPEN);
    if (strcmp(url, "/healthz") == 0)
        rc = ps_http_respond_text(c, MHD_HTTP_OK, "ok\n");
    else if (strcmp(url, "/readyz") == 0)
        rc = respond_ready(h, c);
    else if (strcmp(url, "/metrics") == 0)
        rc = respond_metrics(h, c);
    else if (!access_ok(h, c, &rc))
        ;
    else if (!take_protected(h, k)) {
        rejected(h, RJ_BUSY, c, "answering 503 to");
        rc = ps_http_respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                  "busy: too many requests in progress, try again\n");
    } else if (!h->o.route || (rc = h->o.route(h->o.ud, c, url)) == PS_HTTP_NOT_FOUND)
        rc = ps_http_respond_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    return rc == MHD_YES ? MHD_YES : MHD_NO;
}

static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return ps_http_unescape(s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    ps_debug("http", "%s", msg);
}

/* Frees what ps_http_open allocated; the daemon and the watchdog are
 * already stopped (or were never started). */
static void http_free(ps_http *h)
{
    for (int i = 0; h->allowed && i < h->o.allowed_hosts_count; i++)
        free(h->allowed[i]);
    free(h->allowed);
    free(h->conns);
    free(h->token);
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->cmu);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static ps_http *http_start(const ps_http_opts *o, char *err, size_t errlen)
{
    ps_hostport hp;
    if (!o->listen || ps_hostport_parse(o->listen, PS_HOSTPORT_PORT0, &hp) != 0) {
        char why[160];
        snprintf(err, errlen, "http.listen: %s",
                 ps_hostport_explain(o->listen ? o->listen : "", "ADDR", why, sizeof(why)));
        return NULL;
    }
    const char *host = hp.host;
    int port = hp.port;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    int g = getaddrinfo(host[0] ? host : NULL, ports, &hints, &res);
    if (g != 0 || !res) {
        snprintf(err, errlen, "http.listen %s: %s", o->listen, gai_strerror(g));
        if (res)
            freeaddrinfo(res);
        return NULL;
    }
    ps_http *h = calloc(1, sizeof(*h));
    if (!h) {
        freeaddrinfo(res);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->o = *o;
    h->o.allowed_hosts = NULL; /* the copy in h->allowed is used */
    h->token = o->token && *o->token ? strdup(o->token) : NULL;
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->cmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(h->reason, sizeof(h->reason), "starting");
    h->max_conns = o->max_connections ? o->max_connections : PS_HTTP_DEFAULT_MAX_CONNECTIONS;
    h->per_source = o->max_per_source ? o->max_per_source : PS_HTTP_DEFAULT_MAX_PER_SOURCE;
    h->header_timeout_ns = (uint64_t)(o->header_timeout_sec ? o->header_timeout_sec
                                                            : PS_HTTP_DEFAULT_HEADER_TIMEOUT_SEC) *
                           1000000000u;
    unsigned reserve = h->max_conns / 8 > 4 ? h->max_conns / 8 : 4;
    h->protected_max = h->max_conns > reserve ? h->max_conns - reserve : 1;
    /* Room above our budget for connections we shut down that MHD has not
     * reaped yet: MHD refuses at its own limit before asking us. */
    h->nslots = h->max_conns + (h->max_conns / 4 > 16 ? h->max_conns / 4 : 16);
    h->conns = calloc(h->nslots, sizeof(*h->conns));
    int oom = !h->conns || (o->token && *o->token && !h->token);
    if (!oom && o->allowed_hosts_count > 0) {
        h->allowed = calloc((size_t)o->allowed_hosts_count, sizeof(char *));
        oom = !h->allowed;
        for (int i = 0; !oom && i < o->allowed_hosts_count; i++)
            oom = !(h->allowed[i] = strdup(o->allowed_hosts[i] ? o->allowed_hosts[i] : ""));
    }
    if (oom) {
        freeaddrinfo(res);
        snprintf(err, errlen, "out of memory");
        http_free(h);
        return NULL;
    }
    if (o->metrics) {
        ps_metric *f = ps_metrics_family(
            o->metrics, PS_METRIC_COUNTER, "packetstreamer_http_rejected_connections_total",
            "HTTP connections closed or requests refused, by reason (slowloris budgets, "
            "DNS-rebinding Host check, cross-origin requests).",
            "reason");
        for (int i = 0; f && i < RJ_COUNT; i++)
            h->rejected[i] = ps_metric_series(f, rj_names[i], NULL, NULL);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (res->ai_family == AF_INET6) {
        struct sockaddr_in6 a6;
        memcpy(&a6, res->ai_addr, sizeof(a6));
        /* [::] means every address, IPv4 ones included (dual stack). */
        flags |= IN6_IS_ADDR_UNSPECIFIED(&a6.sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    errno = 0;
    h->d = MHD_start_daemon(
        flags, (uint16_t)port, on_accept, h, on_request, h, MHD_OPTION_SOCK_ADDR, res->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, h->nslots, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)PS_HTTP_TIMEOUT_SEC, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape,
        NULL, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(64 * 1024), MHD_OPTION_END);
    freeaddrinfo(res);
    if (!h->d) {
        snprintf(err, errlen, "cannot serve HTTP on %s: %s", o->listen,
                 errno ? strerror(errno) : "libmicrohttpd failed to start");
        http_free(h);
        return NULL;
    }
    if (pthread_create(&h->watchdog, NULL, watchdog_main, h) != 0) {
        snprintf(err, errlen, "cannot start the HTTP watchdog thread");
        MHD_stop_daemon(h->d);
        http_free(h);
        return NULL;
    }
    h->watchdog_on = 1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : port;
    ps_hostport_format(host, h->port, h->addr, sizeof(h->addr));
    if (o->metrics) {
        ps_metric *f =
            ps_metrics_family(o->metrics, PS_METRIC_GAUGE, "packetstreamer_build_info",
                              "Always 1; the version label says which build runs.", "version");
        ps_series *s = f ? ps_metric_series(f, PS_VERSION, NULL, NULL) : NULL;
        if (s)
            ps_series_set(s, 1.0);
    }
    return h;
}

void ps_http_free(ps_http *h)
{
    if (!h)
        return;
    atomic_store(&h->stopping, 1);
    if (h->watchdog_on) {
        pthread_mutex_lock(&h->cmu);
        h->watchdog_stop = 1;
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->cmu);
        pthread_join(h->watchdog, NULL);
    }
    MHD_stop_daemon(h->d);
    http_free(h);
}

void ps_http_opts_from_config(ps_http_opts *o, const ps_config *c)
{
    o->max_connections = c->http_max_connections;
    o->max_per_source = c->http_max_connections_per_source;
    o->header_timeout_sec = c->http_header_timeout_sec;
    o->distrust_loopback = !c->http_trust_loopback;
    o->allowed_hosts = (const char *const *)c->http_allowed_hosts;
    o->allowed_hosts_count = c->http_allowed_hosts_count;
}

int ps_http_stopping(const ps_http *h)
{
    return atomic_load(&((ps_http *)(uintptr_t)h)->stopping);
}

int ps_http_port(const ps_http *h)
{
    return h->port;
}

const char *ps_http_addr(const ps_http *h)
{
    return h->addr;
}

void ps_http_set_ready(ps_http *h, int ready, const char *reason)
{
    if (!h)
        return;
    if (!ready) {
        pthread_mutex_lock(&h->mu);
        snprintf(h->reason, sizeof(h->reason), "%s", reason ? reason : "");
        pthread_mutex_unlock(&h->mu);
    }
    atomic_store(&h->ready, ready ? 1 : 0);
}

int ps_http_open(ps_http **out, const ps_http_opts *o, char *err, size_t errlen)
{
    ps_http *h = http_start(o, err, errlen);
    if (!h)
        return -1;
    *out = h;
    return 0;
}
