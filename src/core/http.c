/*
 * http: libmicrohttpd wrapper shared by the sensor and the receiver.
 *
 * Why one thread per connection: a capture download or a live stream may
 * last minutes, and a blocking content callback is the simplest correct way
 * to feed it; the connection limit bounds the threads. The packet loop never
 * calls into libmicrohttpd and never takes a lock an HTTP thread may hold
 * for long: readiness is an atomic plus a mutex-protected string, metrics
 * are atomics, snapshots are swapped pointers.
 */
#include "http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "hostport.h"
#include "net.h"

#define PS_HTTP_MAX_CONNECTIONS 64
#define PS_HTTP_TIMEOUT_SEC 60
#define PS_HTTP_REASON_MAX 256

struct ps_http {
    struct MHD_Daemon *d;
    ps_http_opts o;
    char *token;
    int port;
    char addr[PS_HOSTPORT_HOST_MAX + 8]; /* "ADDR:PORT" as bound */
    atomic_int ready;
    atomic_int stopping;
    pthread_mutex_t mu; /* guards reason */
    char reason[PS_HTTP_REASON_MAX];
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

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

int ps_http_capture_name_ok(const char *name, const char *prefix)
{
    if (!name || !prefix)
        return 0;
    size_t n = strlen(name), pl = strlen(prefix);
    if (n == 0 || n > 255 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    if (strstr(name, ".."))
        return 0;
    if (n <= pl + 1 || strncmp(name, prefix, pl) != 0 || name[pl] != '-')
        return 0;
    return ends_with(name, n, ".pcapng") || ends_with(name, n, ".pcap") ||
           ends_with(name, n, ".pcapng.part") || ends_with(name, n, ".pcap.part");
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

void ps_snapshot_destroy(ps_snapshot *s)
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
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ps_http_is_loopback(ci->client_addr))
        return 1;
    if (!h->token) {
        *rc = ps_http_respond_text(c, MHD_HTTP_FORBIDDEN,
                                   "forbidden: captures are served to loopback clients only "
                                   "(kubectl port-forward) unless http.token is set\n");
        return 0;
    }
    const char *auth =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (ps_http_bearer_ok(auth, h->token))
        return 1;
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    ps_http *h = cls;
    (void)version;
    (void)upload;
    /* A request body is never wanted; refuse it before reading it. */
    if (*upload_size != 0)
        return MHD_NO;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        int rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        MHD_destroy_response(r);
        return rc == MHD_YES ? MHD_YES : MHD_NO;
    }
    int rc;
    if (strcmp(url, "/healthz") == 0)
        rc = ps_http_respond_text(c, MHD_HTTP_OK, "ok\n");
    else if (strcmp(url, "/readyz") == 0)
        rc = respond_ready(h, c);
    else if (strcmp(url, "/metrics") == 0)
        rc = respond_metrics(h, c);
    else if (!access_ok(h, c, &rc))
        ;
    else if (!h->o.route || (rc = h->o.route(h->o.ud, c, url)) == PS_HTTP_NOT_FOUND)
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

ps_http *ps_http_start(const ps_http_opts *o, char *err, size_t errlen)
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
    h->token = o->token && *o->token ? strdup(o->token) : NULL;
    pthread_mutex_init(&h->mu, NULL);
    snprintf(h->reason, sizeof(h->reason), "starting");
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
        flags, (uint16_t)port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, res->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)PS_HTTP_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)PS_HTTP_TIMEOUT_SEC, MHD_OPTION_UNESCAPE_CALLBACK,
        on_unescape, NULL, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
    freeaddrinfo(res);
    if (!h->d) {
        snprintf(err, errlen, "cannot serve HTTP on %s: %s", o->listen,
                 errno ? strerror(errno) : "libmicrohttpd failed to start");
        free(h->token);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
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

void ps_http_stop(ps_http *h)
{
    if (!h)
        return;
    atomic_store(&h->stopping, 1);
    MHD_stop_daemon(h->d);
    free(h->token);
    pthread_mutex_destroy(&h->mu);
    free(h);
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
