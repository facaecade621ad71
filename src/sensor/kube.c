/*
 * kube: list and watch this node's pods (see kube.h).
 *
 * One transfer at a time, a small state machine: LIST (paged, limit 500,
 * following metadata.continue) until a page without continue, then WATCH
 * from the list's resourceVersion. A watch that ends is re-opened from the
 * last resourceVersion seen (an event's or a BOOKMARK's); 410 Gone, as an
 * HTTP status or as an ERROR event, means that version has left the
 * server's history: re-list, and report the pods the new list no longer has
 * as deleted before PS_KUBE_SYNCED. Failures wait an exponential, jittered
 * backoff (0.5 s doubling to 30 s) so a fleet of sensors does not hammer a
 * recovering API server in step; a 429 or 5xx with Retry-After (API
 * Priority and Fairness throttling, a server shutting down) waits at least
 * that long, capped at RETRY_AFTER_MAX_MS.
 *
 * libcurl's multi interface is driven by the loop: CURLMOPT_SOCKETFUNCTION
 * maps curl's sockets onto uv_poll handles, CURLMOPT_TIMERFUNCTION onto a
 * uv_timer, and both call curl_multi_socket_action. A thread with the easy
 * interface was rejected: the pod table and the callbacks belong to the
 * loop, and a blocked thread cannot be stopped promptly. A hand-written
 * HTTP/1.1 client was rejected too (chunked encoding, TLS verification,
 * HTTP/2: libcurl has them right).
 *
 * The module keeps its own table of the pods it reported (uid,
 * resourceVersion and the pod) so that a re-list reports only what changed
 * and what vanished. Watch lines are bounded (4 MiB without a newline is an
 * error) and so are list pages (64 MiB), error bodies (64 KiB) and the token
 * file (64 KiB). The token is read before every request and never appears in
 * a message; the Status message of a refusal does, stripped of control
 * characters.
 *
 * Teardown: ps_kube_stop may be called from any of the module's callbacks,
 * and those may run inside a curl callback; curl forbids removing a handle
 * there, so the stop is recorded and carried out once curl has returned.
 */
#include "kube.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "core/curlload.h"
#include "core/log.h"

#define LINE_MAX_BYTES (4u << 20)  /* one watch event */
#define PAGE_MAX_BYTES (64u << 20) /* one list page */
#define ERRBODY_MAX (64u << 10)    /* a refusal's Status */
#define TOKEN_MAX (64u << 10)
#define PAGE_LIMIT 500
#define RV_MAX 128
#define CONTINUE_MAX 8192
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define RETRY_AFTER_MAX_MS 120000 /* a larger Retry-After is taken as this */
#define CONNECT_TIMEOUT_MS 10000L
#define LIST_TIMEOUT_MS 60000L
#define WATCH_TIMEOUT_DEFAULT 300
#define MSG_MAX 512

typedef struct known {
    ps_pod pod;
    char rv[RV_MAX];
    int seen; /* in the list being read */
} known;

typedef struct pollctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct ps_kube *k;
    struct pollctx *next;
} pollctx;

enum { REQ_NONE, REQ_LIST, REQ_WATCH };

struct ps_kube {
    uv_loop_t *loop;
    char *server, *token_file, *ca_file, *node;
    void (*on_pod)(void *ud, ps_kube_event_type t, const ps_pod *pod);
    void (*on_state)(void *ud, int connected, const char *message);
    void *ud;
    unsigned watch_timeout; /* seconds */

    CURLM *multi;
    uv_timer_t t_curl, t_retry, t_stall;
    pollctx *polls;

    /* the transfer in flight */
    CURL *easy;
    struct curl_slist *hdrs;
    int req;
    long status;
    char *body; /* list page, error body, or the watch's partial line */
    size_t len, cap;
    int too_big;
    int got_event; /* watch: at least one event line */
    int relist;    /* watch: an ERROR 410 asked for a list */
    int stream_err;
    char stream_msg[MSG_MAX];
    uint64_t started; /* uv_now when the transfer began */
    char curl_err[CURL_ERROR_SIZE];

    /* list/watch state */
    char rv[RV_MAX];         /* last resourceVersion, "" before the first list */
    char cont[CONTINUE_MAX]; /* continue token of the list being read */
    char list_rv[RV_MAX];
    int listing; /* a list is being read (pages) */
    int need_list;
    unsigned backoff_ms;
    unsigned retry_after_ms; /* the server's Retry-After for the next fail(), 0: none */
    uint64_t rng;

    known *pods;
    size_t n, cap_pods;

    int connected; /* -1 unknown, 0, 1 */
    int in_curl;   /* depth of curl_multi_socket_action */
    int stopped, torn_down, free_requested, done_called;
    int pending_closes;
    void (*done)(void *ud);
    void *done_ud;
};

/* ---- pods ------------------------------------------------------------------ */

void ps_pod_clear(ps_pod *p)
{
    if (!p)
        return;
    free(p->uid);
    free(p->ns);
    free(p->name);
    free(p->phase);
    for (int i = 0; i < p->n_ips; i++)
        free(p->ips[i]);
    for (int i = 0; i < p->n_labels; i++)
        free(p->labels[i]);
    memset(p, 0, sizeof(*p));
}

static int dup_into(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

int ps_pod_copy(ps_pod *dst, const ps_pod *src)
{
    memset(dst, 0, sizeof(*dst));
    if (dup_into(&dst->uid, src->uid) || dup_into(&dst->ns, src->ns) ||
        dup_into(&dst->name, src->name) || dup_into(&dst->phase, src->phase))
        goto oom;
    for (int i = 0; i < src->n_ips && i < PS_KUBE_MAX_IPS; i++) {
        if (dup_into(&dst->ips[i], src->ips[i]))
            goto oom;
        dst->n_ips = i + 1;
    }
    for (int i = 0; i < src->n_labels && i < PS_KUBE_MAX_LABELS; i++) {
        if (dup_into(&dst->labels[i], src->labels[i]))
            goto oom;
        dst->n_labels = i + 1;
    }
    dst->host_network = src->host_network;
    return 0;
oom:
    ps_pod_clear(dst);
    return -1;
}

const char *ps_pod_label(const ps_pod *p, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 0; i < p->n_labels; i++)
        if (strncmp(p->labels[i], key, kl) == 0 && p->labels[i][kl] == '=')
            return p->labels[i] + kl + 1;
    return NULL;
}

/* ---- parsing (pure) --------------------------------------------------------- */

/* DNS subdomain (RFC 1123, as the API validates names and namespaces). */
static int dns_name_ok(const char *s, size_t maxlen)
{
    size_t n = strlen(s);
    if (n == 0 || n > maxlen)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* A uid, resourceVersion: printable ASCII, no space, bounded. */
static int token_ok(const char *s, size_t maxlen)
{
    size_t n = strlen(s);
    if (n == 0 || n > maxlen)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static int label_char(char c, int key)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || (key && c == '/');
}

static int label_ok(const char *k, size_t kl, const char *v, size_t vl)
{
    if (kl == 0 || kl > 253 + 1 + 63 || vl > 63 || strlen(k) != kl || strlen(v) != vl)
        return 0;
    for (size_t i = 0; i < kl; i++)
        if (!label_char(k[i], 1))
            return 0;
    for (size_t i = 0; i < vl; i++)
        if (!label_char(v[i], 0))
            return 0;
    return 1;
}

static const char *str_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Fills out from a Pod object, and rv (rvlen bytes, may be NULL) with its
 * metadata.resourceVersion when it has a valid one ("" otherwise). */
static int parse_pod_obj(json_t *o, ps_pod *out, char *rv, size_t rvlen, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (rv && rvlen)
        rv[0] = '\0';
    if (!json_is_object(o)) {
        ps_errbuf(err, errlen, "pod: not a JSON object");
        return -1;
    }
    json_t *kind = json_object_get(o, "kind");
    if (kind && (!json_is_string(kind) || strcmp(json_string_value(kind), "Pod") != 0)) {
        ps_errbuf(err, errlen, "pod: kind is not \"Pod\"");
        return -1;
    }
    json_t *md = json_object_get(o, "metadata");
    if (!json_is_object(md)) {
        ps_errbuf(err, errlen, "pod: no metadata object");
        return -1;
    }
    const char *uid = str_field(md, "uid"), *ns = str_field(md, "namespace"),
               *name = str_field(md, "name");
    if (!uid || !token_ok(uid, 128)) {
        ps_errbuf(err, errlen, "pod: metadata.uid missing or invalid");
        return -1;
    }
    if (!ns || !dns_name_ok(ns, PS_KUBE_MAX_NAME)) {
        ps_errbuf(err, errlen, "pod: metadata.namespace missing or invalid");
        return -1;
    }
    if (!name || !dns_name_ok(name, PS_KUBE_MAX_NAME)) {
        ps_errbuf(err, errlen, "pod %s: metadata.name missing or invalid", ns);
        return -1;
    }
    const char *mrv = str_field(md, "resourceVersion");
    if (rv && rvlen && mrv && token_ok(mrv, rvlen - 1))
        snprintf(rv, rvlen, "%s", mrv);

    json_t *labels = json_object_get(md, "labels");
    if (labels && !json_is_object(labels) && !json_is_null(labels)) {
        ps_errbuf(err, errlen, "pod %s/%s: metadata.labels is not an object", ns, name);
        return -1;
    }
    json_t *spec = json_object_get(o, "spec");
    if (spec && !json_is_object(spec)) {
        ps_errbuf(err, errlen, "pod %s/%s: spec is not an object", ns, name);
        return -1;
    }
    json_t *hn = spec ? json_object_get(spec, "hostNetwork") : NULL;
    if (hn && !json_is_boolean(hn)) {
        ps_errbuf(err, errlen, "pod %s/%s: spec.hostNetwork is not a boolean", ns, name);
        return -1;
    }
    json_t *st = json_object_get(o, "status");
    if (st && !json_is_object(st)) {
        ps_errbuf(err, errlen, "pod %s/%s: status is not an object", ns, name);
        return -1;
    }
    const char *phase = "";
    json_t *ph = st ? json_object_get(st, "phase") : NULL;
    if (ph) {
        if (!json_is_string(ph) || !token_ok(json_string_value(ph), 32)) {
            ps_errbuf(err, errlen, "pod %s/%s: status.phase invalid", ns, name);
            return -1;
        }
        phase = json_string_value(ph);
    }

    if (dup_into(&out->uid, uid) || dup_into(&out->ns, ns) || dup_into(&out->name, name) ||
        dup_into(&out->phase, phase))
        goto oom;
    out->host_network = hn && json_is_true(hn);

    if (json_is_object(labels)) {
        const char *k;
        json_t *v;
        json_object_foreach(labels, k, v)
        {
            if (!json_is_string(v) ||
                !label_ok(k, strlen(k), json_string_value(v), json_string_length(v))) {
                ps_errbuf(err, errlen, "pod %s/%s: metadata.labels has an invalid label", ns, name);
                ps_pod_clear(out);
                return -1;
            }
            if (out->n_labels == PS_KUBE_MAX_LABELS) {
                ps_debug("kube", "pod %s/%s: more than %d labels, the rest ignored", ns, name,
                         PS_KUBE_MAX_LABELS);
                break;
            }
            size_t kl = strlen(k), vl = json_string_length(v);
            char *l = malloc(kl + vl + 2);
            if (!l)
                goto oom;
            memcpy(l, k, kl);
            l[kl] = '=';
            memcpy(l + kl + 1, json_string_value(v), vl);
            l[kl + vl + 1] = '\0';
            out->labels[out->n_labels++] = l;
        }
    }

    /* status.podIPs (dual stack) or, from older servers, status.podIP */
    json_t *ips = st ? json_object_get(st, "podIPs") : NULL;
    json_t *ip1 = st ? json_object_get(st, "podIP") : NULL;
    if (ips && !json_is_array(ips) && !json_is_null(ips)) {
        ps_errbuf(err, errlen, "pod %s/%s: status.podIPs is not an array", ns, name);
        ps_pod_clear(out);
        return -1;
    }
    size_t nips = json_is_array(ips) ? json_array_size(ips) : 0;
    for (size_t i = 0; i < nips || (nips == 0 && i == 0 && json_is_string(ip1)); i++) {
        const char *ip;
        if (nips) {
            json_t *e = json_array_get(ips, i);
            ip = json_is_object(e) ? str_field(e, "ip") : NULL;
        } else {
            ip = json_string_value(ip1);
        }
        unsigned char a[16];
        if (!ip || strlen(ip) > 45 ||
            (inet_pton(AF_INET, ip, a) != 1 && inet_pton(AF_INET6, ip, a) != 1)) {
            ps_errbuf(err, errlen, "pod %s/%s: status.podIPs[%zu] is not an IP address", ns, name,
                      i);
            ps_pod_clear(out);
            return -1;
        }
        if (out->n_ips == PS_KUBE_MAX_IPS)
            break;
        if (dup_into(&out->ips[out->n_ips], ip))
            goto oom;
        out->n_ips++;
    }
    return 0;
oom:
    ps_pod_clear(out);
    ps_errbuf(err, errlen, "out of memory");
    return -1;
}

static json_t *load(const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        ps_errbuf(err, errlen, "invalid JSON at byte %d: %s", je.position, je.text);
    return j;
}

int ps_kube_parse_pod(const char *json, size_t len, ps_pod *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(json, len, err, errlen);
    if (!j)
        return -1;
    int rc = parse_pod_obj(j, out, NULL, 0, err, errlen);
    json_decref(j);
    return rc;
}

static int parse_event_obj(json_t *j, const char **type, ps_pod *pod, char *rv, size_t rvlen,
                           int *code, char *err, size_t errlen)
{
    static const char *const types[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
    if (!json_is_object(j)) {
        ps_errbuf(err, errlen, "watch event: not a JSON object");
        return -1;
    }
    const char *t = str_field(j, "type");
    json_t *obj = json_object_get(j, "object");
    *type = NULL;
    for (size_t i = 0; t && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(t, types[i]) == 0)
            *type = types[i];
    if (!*type) {
        ps_errbuf(err, errlen, "watch event: missing or unknown type");
        return -1;
    }
    if (!json_is_object(obj)) {
        ps_errbuf(err, errlen, "watch event %s: no object", *type);
        return -1;
    }
    if (strcmp(*type, "ERROR") == 0) {
        json_t *c = json_object_get(obj, "code");
        *code = json_is_integer(c) && json_integer_value(c) >= 0 && json_integer_value(c) <= 999
                    ? (int)json_integer_value(c)
                    : 0;
        return 0;
    }
    if (strcmp(*type, "BOOKMARK") == 0) {
        json_t *md = json_object_get(obj, "metadata");
        const char *r = json_is_object(md) ? str_field(md, "resourceVersion") : NULL;
        if (!r || !token_ok(r, rvlen ? rvlen - 1 : 0)) {
            ps_errbuf(err, errlen,
                      "watch event BOOKMARK: metadata.resourceVersion missing or "
                      "invalid");
            return -1;
        }
        snprintf(rv, rvlen, "%s", r);
        return 0;
    }
    if (parse_pod_obj(obj, pod, rv, rvlen, err, errlen) != 0)
        return -1;
    if (!rvlen || !rv[0]) {
        ps_pod_clear(pod);
        ps_errbuf(err, errlen, "watch event %s: metadata.resourceVersion missing or invalid",
                  *type);
        return -1;
    }
    return 0;
}

int ps_kube_parse_event(const char *line, size_t len, const char **type, ps_pod *pod, char *rv,
                        size_t rvlen, int *code, char *err, size_t errlen)
{
    memset(pod, 0, sizeof(*pod));
    *type = NULL;
    *code = 0;
    if (rvlen)
        rv[0] = '\0';
    json_t *j = load(line, len, err, errlen);
    if (!j)
        return -1;
    int rc = parse_event_obj(j, type, pod, rv, rvlen, code, err, errlen);
    json_decref(j);
    return rc;
}

int ps_kube_env_server(char *out, size_t outlen, char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !host[0]) {
        ps_errbuf(err, errlen,
                  "KUBERNETES_SERVICE_HOST is not set: not in a cluster; set "
                  "kubernetes.apiServer");
        return -1;
    }
    if (!port || !port[0])
        port = "443";
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (errno || *end || p < 1 || p > 65535 || strlen(port) > 5) {
        ps_errbuf(err, errlen, "KUBERNETES_SERVICE_PORT is not a port number");
        return -1;
    }
    unsigned char a[16];
    int v6 = inet_pton(AF_INET6, host, a) == 1;
    if (!v6 && !dns_name_ok(host, 253) && inet_pton(AF_INET, host, a) != 1) {
        ps_errbuf(err, errlen, "KUBERNETES_SERVICE_HOST is neither an address nor a host name");
        return -1;
    }
    int w = snprintf(out, outlen, v6 ? "https://[%s]:%ld" : "https://%s:%ld", host, p);
    if (w < 0 || (size_t)w >= outlen) {
        ps_errbuf(err, errlen, "KUBERNETES_SERVICE_HOST is too long");
        return -1;
    }
    return 0;
}

int ps_kube_in_cluster(const char *token_file)
{
    const char *h = getenv("KUBERNETES_SERVICE_HOST");
    if (!h || !h[0])
        return 0;
    return access(token_file ? token_file : PS_KUBE_DEFAULT_TOKEN, R_OK) == 0;
}

/* ---- state and callbacks ----------------------------------------------------- */

static void set_state(ps_kube *k, int connected, const char *msg)
{
    if (k->stopped || k->connected == connected)
        return;
    k->connected = connected;
    if (k->on_state)
        k->on_state(k->ud, connected, msg ? msg : "");
}

static void emit(ps_kube *k, ps_kube_event_type t, const ps_pod *p)
{
    if (!k->stopped && k->on_pod)
        k->on_pod(k->ud, t, p);
}

static known *find_known(ps_kube *k, const char *uid)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->pods[i].pod.uid, uid) == 0)
            return &k->pods[i];
    return NULL;
}

static void forget(ps_kube *k, known *e)
{
    ps_pod_clear(&e->pod);
    *e = k->pods[--k->n];
}

/* An ADDED/MODIFIED pod or a listed one: reported unless unchanged. Takes
 * the pod's strings. */
static void upsert(ps_kube *k, ps_pod *pod, const char *rv)
{
    known *e = find_known(k, pod->uid);
    if (e) {
        e->seen = 1;
        if (rv[0] && strcmp(e->rv, rv) == 0) {
            ps_pod_clear(pod);
            return;
        }
        ps_pod_clear(&e->pod);
        e->pod = *pod;
        memset(pod, 0, sizeof(*pod));
        snprintf(e->rv, sizeof(e->rv), "%s", rv);
        emit(k, PS_KUBE_POD_UPSERT, &e->pod);
        return;
    }
    if (k->n == k->cap_pods) {
        size_t cap = k->cap_pods ? k->cap_pods * 2 : 32;
        known *n = realloc(k->pods, cap * sizeof(*n));
        if (!n) {
            ps_error("kube", "out of memory: pod %s/%s is not tracked", pod->ns, pod->name);
            ps_pod_clear(pod);
            return;
        }
        k->pods = n;
        k->cap_pods = cap;
    }
    e = &k->pods[k->n++];
    e->pod = *pod;
    memset(pod, 0, sizeof(*pod));
    snprintf(e->rv, sizeof(e->rv), "%s", rv);
    e->seen = 1;
    emit(k, PS_KUBE_POD_UPSERT, &e->pod);
}

static void remove_pod(ps_kube *k, ps_pod *pod)
{
    known *e = find_known(k, pod->uid);
    if (e) {
        emit(k, PS_KUBE_POD_DELETE, &e->pod);
        /* the callback may not free k (kube.h), but re-find: it is cheap */
        e = find_known(k, pod->uid);
        if (e)
            forget(k, e);
    }
    ps_pod_clear(pod);
}

/* ---- requests --------------------------------------------------------------- */

static void start_request(ps_kube *k);
static void schedule(ps_kube *k, uint64_t ms);

static uint64_t rnd(ps_kube *k)
{
    uint64_t x = k->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    k->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Reports the failure, then waits the backoff (jittered: 75..100 % of the
 * current step, so sensors that failed together spread out). */
static void fail(ps_kube *k, const char *msg)
{
    set_state(k, 0, msg);
    unsigned d = k->backoff_ms;
    uint64_t delay = d - (unsigned)(rnd(k) % (d / 4 + 1));
    if (delay < BACKOFF_MIN_MS / 2)
        delay = BACKOFF_MIN_MS / 2;
    if (k->retry_after_ms > delay)
        delay = k->retry_after_ms;
    k->retry_after_ms = 0;
    ps_debug("kube", "%s; retrying in %" PRIu64 " ms", msg, delay);
    k->backoff_ms = d * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d * 2;
    schedule(k, delay);
}

static void clean_msg(char *s)
{
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            *p = ' ';
}

/* The message of a Status body, cleaned, or "" */
static void status_message(const char *body, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *m = json_is_object(j) ? str_field(j, "message") : NULL;
    if (m)
        snprintf(out, outlen, "%.300s", m);
    json_decref(j);
    clean_msg(out);
}

static int read_token(ps_kube *k, char *tok, size_t toklen, char *msg, size_t msglen)
{
    FILE *f = fopen(k->token_file, "r");
    if (!f) {
        snprintf(msg, msglen, "cannot read the token file %s: %s", k->token_file, strerror(errno));
        return -1;
    }
    size_t n = fread(tok, 1, toklen - 1, f);
    int bad = ferror(f) || (n == toklen - 1 && fgetc(f) != EOF);
    fclose(f);
    if (bad) {
        snprintf(msg, msglen, "cannot read the token file %s: unreadable or longer than %zu bytes",
                 k->token_file, toklen - 1);
        return -1;
    }
    tok[n] = '\0';
    while (n &&
           (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' ' || tok[n - 1] == '\t'))
        tok[--n] = '\0';
    if (!n || !token_ok(tok, toklen)) {
        snprintf(msg, msglen, "the token file %s is empty or holds characters a token cannot have",
                 k->token_file);
        return -1;
    }
    return 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    ps_kube *k = ud;
    size_t len = size * n;
    if (len <= 2 && (len == 0 || p[0] == '\r' || p[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) {
            k->status = code;
            if (code == 200)
                set_state(k, 1, "connected");
        }
    }
    return k->stopped ? 0 : len;
}

static int append(ps_kube *k, const char *p, size_t n, size_t max)
{
    if (k->len + n > max) {
        k->too_big = 1;
        return -1;
    }
    if (k->len + n + 1 > k->cap) {
        size_t cap = k->cap ? k->cap : 16384;
        while (cap < k->len + n + 1)
            cap *= 2;
        char *b = realloc(k->body, cap);
        if (!b)
            return -1;
        k->body = b;
        k->cap = cap;
    }
    memcpy(k->body + k->len, p, n);
    k->len += n;
    k->body[k->len] = '\0';
    return 0;
}

static void stall_arm(ps_kube *k);

/* A well-formed pod event whose pod the sensor cannot use (an invalid name,
 * label or IP): skipped with a warning, the resourceVersion moves on, and
 * a pod known under that uid is forgotten (reported deleted: what it is now
 * cannot be matched). 0 when handled so; -1 when the line is not even a
 * well-formed event. */
static int unusable_pod(ps_kube *k, const char *line, size_t len, const char *why)
{
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    const char *type = json_is_object(j) ? str_field(j, "type") : NULL;
    json_t *obj = json_object_get(j, "object");
    json_t *md = json_is_object(obj) ? json_object_get(obj, "metadata") : NULL;
    const char *rv = json_is_object(md) ? str_field(md, "resourceVersion") : NULL;
    const char *uid = json_is_object(md) ? str_field(md, "uid") : NULL;
    int rc = -1;
    if (type && rv && token_ok(rv, RV_MAX - 1) &&
        (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0 ||
         strcmp(type, "DELETED") == 0)) {
        ps_warn("kube", "watch event %s skipped: %s", type, why);
        snprintf(k->rv, sizeof(k->rv), "%s", rv);
        k->got_event = 1;
        known *e = uid ? find_known(k, uid) : NULL;
        if (e) {
            ps_pod gone = e->pod;
            memset(&e->pod, 0, sizeof(e->pod));
            forget(k, e);
            emit(k, PS_KUBE_POD_DELETE, &gone);
            ps_pod_clear(&gone);
        }
        rc = 0;
    }
    json_decref(j);
    return rc;
}

/* One complete watch line. -1 ends the stream (k->stream_msg says why). */
static int watch_line(ps_kube *k, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (!len)
        return 0;
    const char *type;
    ps_pod pod;
    char rv[RV_MAX], err[256];
    int code;
    if (ps_kube_parse_event(line, len, &type, &pod, rv, sizeof(rv), &code, err, sizeof(err)) != 0) {
        if (unusable_pod(k, line, len, err) == 0)
            return k->stopped ? -1 : 0;
        /* A line we cannot read may be a deletion: the table can no longer
         * be trusted, so re-list. */
        snprintf(k->stream_msg, sizeof(k->stream_msg), "unreadable watch event (%s)", err);
        k->relist = 1;
        k->stream_err = 1;
        return -1;
    }
    k->got_event = 1;
    if (strcmp(type, "ERROR") == 0) {
        if (code == 410) {
            ps_debug("kube", "watch: resourceVersion %s expired (410), re-listing", k->rv);
            k->relist = 1;
        } else {
            char m[320] = "";
            json_t *j = json_loadb(line, len, 0, NULL);
            const char *sm = str_field(json_object_get(j, "object"), "message");
            if (sm)
                snprintf(m, sizeof(m), ": %.300s", sm);
            json_decref(j);
            clean_msg(m);
            snprintf(k->stream_msg, sizeof(k->stream_msg),
                     "the watch ended with an error event (code %d)%s", code, m);
            k->stream_err = 1;
        }
        return -1;
    }
    snprintf(k->rv, sizeof(k->rv), "%s", rv);
    if (strcmp(type, "BOOKMARK") == 0)
        return 0;
    if (strcmp(type, "DELETED") == 0)
        remove_pod(k, &pod);
    else
        upsert(k, &pod, rv);
    return k->stopped ? -1 : 0;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    ps_kube *k = ud;
    size_t len = size * n;
    if (k->stopped)
        return 0;
    if (!k->status) { /* the headers' end was not seen (it always is): ask */
        long code = 0;
        curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &code);
        k->status = code;
        if (code == 200)
            set_state(k, 1, "connected");
        if (k->stopped)
            return 0;
    }
    if (k->status != 200 || k->req == REQ_LIST) {
        size_t max = k->status == 200 ? PAGE_MAX_BYTES : ERRBODY_MAX;
        if (append(k, p, len, max) != 0)
            return k->status == 200 || !k->too_big ? 0 : len; /* keep the head of an error */
        return len;
    }
    stall_arm(k);
    size_t off = 0;
    while (off < len) {
        const char *nl = memchr(p + off, '\n', len - off);
        size_t take = nl ? (size_t)(nl - (p + off)) : len - off;
        if (append(k, p + off, take, LINE_MAX_BYTES) != 0) {
            snprintf(k->stream_msg, sizeof(k->stream_msg),
                     k->too_big ? "a watch event is longer than %u bytes"
                                : "out of memory reading a watch event",
                     LINE_MAX_BYTES);
            k->stream_err = 1;
            k->relist = 1;
            return 0;
        }
        off += take;
        if (!nl)
            break;
        off++;
        int rc = watch_line(k, k->body, k->len);
        k->len = 0;
        if (rc != 0)
            return 0;
    }
    return len;
}

static void end_transfer(ps_kube *k)
{
    if (k->easy) {
        curl_multi_remove_handle(k->multi, k->easy);
        curl_easy_cleanup(k->easy);
        k->easy = NULL;
    }
    curl_slist_free_all(k->hdrs);
    k->hdrs = NULL;
    k->req = REQ_NONE;
    k->len = 0;
    k->too_big = 0;
    if (k->cap > (1u << 20)) { /* a big list page: do not keep its buffer */
        free(k->body);
        k->body = NULL;
        k->cap = 0;
    }
    uv_timer_stop(&k->t_stall);
}

static int build_url(ps_kube *k, char *url, size_t urllen)
{
    CURL *e = k->easy;
    char *sel = NULL, *extra = NULL;
    char fs[600];
    snprintf(fs, sizeof(fs), "spec.nodeName=%s", k->node);
    sel = curl_easy_escape(e, fs, 0);
    if (!sel)
        return -1;
    int w;
    if (k->req == REQ_LIST) {
        if (k->cont[0]) {
            extra = curl_easy_escape(e, k->cont, 0);
            if (!extra) {
                curl_free(sel);
                return -1;
            }
        }
        w = snprintf(url, urllen, "%s/api/v1/pods?fieldSelector=%s&limit=%d%s%s", k->server, sel,
                     PAGE_LIMIT, extra ? "&continue=" : "", extra ? extra : "");
    } else {
        extra = curl_easy_escape(e, k->rv, 0);
        if (!extra) {
            curl_free(sel);
            return -1;
        }
        w = snprintf(url, urllen,
                     "%s/api/v1/pods?fieldSelector=%s&watch=1&resourceVersion=%s&"
                     "allowWatchBookmarks=true&timeoutSeconds=%u",
                     k->server, sel, extra, k->watch_timeout);
    }
    curl_free(sel);
    curl_free(extra);
    return w < 0 || (size_t)w >= urllen ? -1 : 0;
}

static void start_request(ps_kube *k)
{
    if (k->stopped)
        return;
    char tok[TOKEN_MAX], msg[MSG_MAX];
    if (read_token(k, tok, sizeof(tok), msg, sizeof(msg)) != 0) {
        fail(k, msg);
        return;
    }
    k->req = k->need_list ? REQ_LIST : REQ_WATCH;
    if (k->req == REQ_LIST && !k->listing) {
        /* a new list: every known pod is unseen until a page has it */
        k->listing = 1;
        k->cont[0] = '\0';
        k->list_rv[0] = '\0';
        for (size_t i = 0; i < k->n; i++)
            k->pods[i].seen = 0;
    }
    k->status = 0;
    k->len = 0;
    k->too_big = 0;
    k->got_event = 0;
    k->relist = 0;
    k->stream_err = 0;
    k->stream_msg[0] = '\0';
    k->curl_err[0] = '\0';
    k->started = uv_now(k->loop);

    char url[CONTINUE_MAX * 3 + 1024];
    char auth[TOKEN_MAX + 32];
    k->easy = curl_easy_init();
    int ok = k->easy != NULL && build_url(k, url, sizeof(url)) == 0;
    if (ok) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
        struct curl_slist *h = curl_slist_append(NULL, auth);
        struct curl_slist *h2 = h ? curl_slist_append(h, "Accept: application/json") : NULL;
        if (!h2)
            curl_slist_free_all(h);
        k->hdrs = h2;
        ok = h2 != NULL;
    }
    /* the token stays in our stack copy and curl's; wipe ours */
    explicit_bzero(tok, sizeof(tok));
    explicit_bzero(auth, sizeof(auth));
    if (!ok) {
        end_transfer(k);
        fail(k, "out of memory starting a request to the API server");
        return;
    }
    CURL *e = k->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->hdrs) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CAINFO, k->ca_file) != CURLE_OK;
    /* only the cluster's CA: not the system's directory of public CAs */
    bad |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "packetstreamer/" PS_VERSION) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS) != CURLE_OK;
    if (k->req == REQ_LIST)
        bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, LIST_TIMEOUT_MS) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, k->curl_err) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, k) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, k) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, k) != CURLE_OK;
    if (bad || curl_multi_add_handle(k->multi, e) != CURLM_OK) {
        end_transfer(k);
        fail(k, "libcurl refused the request's options (built without HTTPS?)");
        return;
    }
    if (k->req == REQ_WATCH)
        stall_arm(k);
}

static void on_retry(uv_timer_t *t)
{
    start_request(t->data);
}

static void schedule(ps_kube *k, uint64_t ms)
{
    if (!k->stopped)
        uv_timer_start(&k->t_retry, on_retry, ms, 0);
}

/* The list's end: pods it did not have vanished while we were not
 * watching. */
static void list_done(ps_kube *k)
{
    for (size_t i = 0; i < k->n && !k->stopped;) {
        if (k->pods[i].seen) {
            i++;
            continue;
        }
        ps_pod gone = k->pods[i].pod;
        k->pods[i] = k->pods[--k->n];
        emit(k, PS_KUBE_POD_DELETE, &gone);
        ps_pod_clear(&gone);
    }
    k->listing = 0;
    k->need_list = 0;
    snprintf(k->rv, sizeof(k->rv), "%s", k->list_rv);
    emit(k, PS_KUBE_SYNCED, NULL);
}

/* One list page. 1 = more pages, 0 = the last, -1 with msg. */
static int list_page(ps_kube *k, char *msg, size_t msglen)
{
    char err[256];
    json_t *j = load(k->body ? k->body : "", k->len, err, sizeof(err));
    if (!j) {
        snprintf(msg, msglen, "the pod list is not JSON (%s)", err);
        return -1;
    }
    json_t *md = json_object_get(j, "metadata"), *items = json_object_get(j, "items");
    const char *kind = str_field(j, "kind");
    const char *rv = json_is_object(md) ? str_field(md, "resourceVersion") : NULL;
    const char *cont = json_is_object(md) ? str_field(md, "continue") : NULL;
    if ((kind && strcmp(kind, "PodList") != 0) || !rv || !token_ok(rv, RV_MAX - 1) ||
        !(json_is_array(items) || json_is_null(items) || !items)) {
        json_decref(j);
        snprintf(msg, msglen,
                 "the answer to the pod list is not a PodList with a "
                 "resourceVersion");
        return -1;
    }
    if (cont && cont[0] && strlen(cont) >= CONTINUE_MAX) {
        json_decref(j);
        snprintf(msg, msglen, "the pod list's continue token is longer than %d bytes",
                 CONTINUE_MAX - 1);
        return -1;
    }
    if (!k->list_rv[0])
        snprintf(k->list_rv, sizeof(k->list_rv), "%s", rv);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        ps_pod pod;
        char prv[RV_MAX];
        if (parse_pod_obj(it, &pod, prv, sizeof(prv), err, sizeof(err)) != 0) {
            ps_warn("kube", "pod list item %zu skipped: %s", i, err);
            continue;
        }
        upsert(k, &pod, prv);
        if (k->stopped)
            break;
    }
    snprintf(k->cont, sizeof(k->cont), "%s", cont ? cont : "");
    json_decref(j);
    return k->cont[0] ? 1 : 0;
}

static void refused(ps_kube *k, char *msg, size_t msglen)
{
    char sm[320];
    status_message(k->body ? k->body : "", k->len, sm, sizeof(sm));
    const char *verb = k->req == REQ_LIST ? "list" : "watch";
    if (k->status == 401)
        snprintf(msg, msglen,
                 "the API server refused the service account token (401 Unauthorized%s%s); "
                 "check kubernetes.tokenFile %s",
                 sm[0] ? ": " : "", sm, k->token_file);
    else if (k->status == 403)
        snprintf(msg, msglen,
                 "RBAC: the service account may not %s pods at the cluster scope (needs get, "
                 "list, watch on pods)%s%s",
                 verb, sm[0] ? ": " : "", sm);
    else
        snprintf(msg, msglen, "the API server answered %ld to the pod %s%s%s", k->status, verb,
                 sm[0] ? ": " : "", sm);
    /* CURLINFO_RETRY_AFTER reads both forms (seconds, HTTP date); -1 or 0
     * when absent. Only throttling and server errors carry a meaningful one. */
    curl_off_t ra = 0;
    if ((k->status == 429 || k->status >= 500) &&
        curl_easy_getinfo(k->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) {
        k->retry_after_ms =
            ra >= RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : (unsigned)ra * 1000u;
        size_t used = strlen(msg);
        if (used < msglen)
            snprintf(msg + used, msglen - used, "; retrying after %u s (Retry-After)",
                     k->retry_after_ms / 1000);
    }
}

static void transfer_failed(ps_kube *k, CURLcode rc, char *msg, size_t msglen)
{
    const char *detail = k->curl_err[0] ? k->curl_err : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        snprintf(msg, msglen, "TLS: cannot verify the API server %s against the CA file %s (%s)",
                 k->server, k->ca_file, detail);
        break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(msg, msglen, "cannot reach the API server %s (%s)", k->server, detail);
        break;
    default:
        snprintf(msg, msglen, "the pod %s from %s failed (%s)",
                 k->req == REQ_LIST ? "list" : "watch", k->server, detail);
    }
    clean_msg(msg);
}

static void transfer_done(ps_kube *k, CURLcode rc)
{
    char msg[MSG_MAX];
    int req = k->req;
    long status = k->status;
    if (!status)
        curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &status), k->status = status;

    if (req == REQ_LIST) {
        if (rc == CURLE_OK && status == 200) {
            int more = list_page(k, msg, sizeof(msg));
            end_transfer(k);
            if (k->stopped)
                return;
            if (more < 0) {
                k->listing = 0;
                fail(k, msg);
            } else if (more) {
                start_request(k);
            } else {
                k->backoff_ms = BACKOFF_MIN_MS;
                list_done(k);
                schedule(k, 0);
            }
            return;
        }
        if (rc == CURLE_OK && status == 410 && k->cont[0]) {
            /* the continue token expired: the list starts over */
            end_transfer(k);
            k->listing = 0;
            ps_debug("kube", "list continuation expired (410), listing again");
            schedule(k, 0);
            return;
        }
        if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && status && status != 200))
            refused(k, msg, sizeof(msg));
        else if (rc == CURLE_WRITE_ERROR && k->too_big)
            snprintf(msg, sizeof(msg), "a pod list page is larger than %u bytes", PAGE_MAX_BYTES);
        else
            transfer_failed(k, rc, msg, sizeof(msg));
        end_transfer(k);
        k->listing = 0;
        fail(k, msg);
        return;
    }

    /* a watch */
    if (status == 200) {
        int lived = uv_now(k->loop) - k->started >= 1000;
        int got = k->got_event, relist = k->relist, serr = k->stream_err;
        snprintf(msg, sizeof(msg), "%s", k->stream_msg);
        if (rc != CURLE_OK && !serr && !relist)
            ps_debug("kube", "watch stream cut (%s); resuming from %s",
                     k->curl_err[0] ? k->curl_err : curl_easy_strerror(rc), k->rv);
        end_transfer(k);
        if (k->stopped)
            return;
        if (relist)
            k->need_list = 1;
        if (serr) {
            ps_warn("kube", "%s", msg);
            fail(k, msg);
        } else if (relist || got || lived) {
            k->backoff_ms = BACKOFF_MIN_MS;
            schedule(k, 0);
        } else {
            /* ended at once and empty: do not spin */
            unsigned d = k->backoff_ms;
            k->backoff_ms = d * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d * 2;
            schedule(k, d);
        }
        return;
    }
    if (status == 410) {
        end_transfer(k);
        k->need_list = 1;
        schedule(k, 0);
        return;
    }
    if (status)
        refused(k, msg, sizeof(msg));
    else
        transfer_failed(k, rc, msg, sizeof(msg));
    end_transfer(k);
    fail(k, msg);
}

/* ---- teardown ------------------------------------------------------------------ */

static void really_free(ps_kube *k)
{
    for (size_t i = 0; i < k->n; i++)
        ps_pod_clear(&k->pods[i].pod);
    free(k->pods);
    free(k->body);
    free(k->server);
    free(k->token_file);
    free(k->ca_file);
    free(k->node);
    free(k);
}

static void closed(ps_kube *k)
{
    if (--k->pending_closes > 0 || !k->torn_down)
        return;
    if (!k->done_called) {
        k->done_called = 1;
        if (k->done)
            k->done(k->done_ud);
    }
    if (k->free_requested)
        really_free(k);
}

static void on_timer_closed(uv_handle_t *h)
{
    closed(h->data);
}

static void on_poll_closed(uv_handle_t *h)
{
    pollctx *c = h->data;
    ps_kube *k = c->k;
    free(c);
    closed(k);
}

static void close_poll(ps_kube *k, pollctx *c)
{
    for (pollctx **pp = &k->polls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    uv_poll_stop(&c->poll);
    k->pending_closes++;
    uv_close((uv_handle_t *)&c->poll, on_poll_closed);
}

static void teardown(ps_kube *k)
{
    if (k->torn_down)
        return;
    end_transfer(k);
    if (k->multi) {
        CURLM *m = k->multi;
        k->multi = NULL;
        curl_multi_cleanup(m); /* may call on_socket with REMOVE */
    }
    while (k->polls)
        close_poll(k, k->polls);
    uv_timer_t *ts[] = {&k->t_curl, &k->t_retry, &k->t_stall};
    for (size_t i = 0; i < 3; i++) {
        uv_timer_stop(ts[i]);
        k->pending_closes++;
        uv_close((uv_handle_t *)ts[i], on_timer_closed);
    }
    k->torn_down = 1;
}

/* ---- libcurl on libuv ------------------------------------------------------------ */

static void check_done(ps_kube *k)
{
    CURLMsg *m;
    int left;
    while (!k->stopped && k->multi && (m = curl_multi_info_read(k->multi, &left))) {
        if (m->msg == CURLMSG_DONE && m->easy_handle == k->easy)
            transfer_done(k, m->data.result);
    }
}

static void socket_action(ps_kube *k, curl_socket_t fd, int flags)
{
    int running;
    k->in_curl++;
    curl_multi_socket_action(k->multi, fd, flags, &running);
    k->in_curl--;
    check_done(k);
    if (k->stopped)
        teardown(k);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    pollctx *c = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    socket_action(c->k, c->fd, flags);
}

static void on_curl_timer(uv_timer_t *t)
{
    socket_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    ps_kube *k = userp;
    pollctx *c = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (c) {
            if (k->multi)
                curl_multi_assign(k->multi, s, NULL);
            close_poll(k, c);
        }
        return 0;
    }
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return -1;
        c->fd = s;
        c->k = k;
        if (uv_poll_init_socket(k->loop, &c->poll, s) != 0) {
            free(c);
            return -1;
        }
        c->poll.data = c;
        c->next = k->polls;
        k->polls = c;
        curl_multi_assign(k->multi, s, c);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev |= UV_WRITABLE;
    return uv_poll_start(&c->poll, ev, on_poll) == 0 ? 0 : -1;
}

static int on_timer(CURLM *m, long ms, void *userp)
{
    (void)m;
    ps_kube *k = userp;
    if (ms < 0)
        uv_timer_stop(&k->t_curl);
    else
        uv_timer_start(&k->t_curl, on_curl_timer, (uint64_t)ms, 0);
    return 0;
}

/* ---- stall ---------------------------------------------------------------------- */

static void on_stall(uv_timer_t *t)
{
    ps_kube *k = t->data;
    if (k->stopped || k->req != REQ_WATCH)
        return;
    ps_warn("kube",
            "the watch stream has been silent for %u s; re-opening it from "
            "resourceVersion %s",
            k->watch_timeout + k->watch_timeout / 2, k->rv);
    end_transfer(k);
    schedule(k, 0);
}

/* A healthy watch ends (the server's timeoutSeconds) or speaks (events,
 * bookmarks) well before 1.5 x its timeout; one that does neither is stuck
 * behind a dead connection or a broken proxy. */
static void stall_arm(ps_kube *k)
{
    uint64_t ms = (uint64_t)k->watch_timeout * 1500;
    uv_timer_start(&k->t_stall, on_stall, ms, 0);
}

/* ---- open / stop / free ---------------------------------------------------------- */

int ps_kube_open(ps_kube **out, const ps_kube_opts *o, char *err, size_t errlen)
{
    char envsrv[300];
    if (!o->loop || !o->node_name || !dns_name_ok(o->node_name, PS_KUBE_MAX_NAME)) {
        ps_errbuf(err, errlen, "kubernetes: the node name is missing or not a valid node name");
        return -1;
    }
    if (ps_curl_load(err, errlen) != 0)
        return -1;
    const char *server = o->api_server && o->api_server[0] ? o->api_server : NULL;
    if (!server) {
        if (ps_kube_env_server(envsrv, sizeof(envsrv), err, errlen) != 0)
            return -1;
        server = envsrv;
    }
    size_t sl = strlen(server);
    if (strncmp(server, "https://", 8) != 0 || sl <= 8 || sl > 300) {
        ps_errbuf(err, errlen, "kubernetes.apiServer %.300s: not an https:// URL", server);
        return -1;
    }
    for (size_t i = 0; i < sl; i++)
        if ((unsigned char)server[i] <= 0x20 || (unsigned char)server[i] >= 0x7f ||
            server[i] == '?' || server[i] == '#') {
            ps_errbuf(err, errlen, "kubernetes.apiServer: not a plain https://HOST:PORT URL");
            return -1;
        }
    const char *ca = o->ca_file ? o->ca_file : PS_KUBE_DEFAULT_CA;
    FILE *f = fopen(ca, "r");
    if (!f) {
        ps_errbuf(err, errlen, "kubernetes.caFile %s: %s", ca, strerror(errno));
        return -1;
    }
    fclose(f);

    ps_kube *k = calloc(1, sizeof(*k));
    if (!k) {
        ps_errbuf(err, errlen, "out of memory");
        return -1;
    }
    k->loop = o->loop;
    k->server = strndup(server, server[sl - 1] == '/' ? sl - 1 : sl);
    k->token_file = strdup(o->token_file ? o->token_file : PS_KUBE_DEFAULT_TOKEN);
    k->ca_file = strdup(ca);
    k->node = strdup(o->node_name);
    k->on_pod = o->on_pod;
    k->on_state = o->on_state;
    k->ud = o->ud;
    k->watch_timeout = o->watch_timeout_sec ? o->watch_timeout_sec : WATCH_TIMEOUT_DEFAULT;
    k->connected = -1;
    k->need_list = 1;
    k->backoff_ms = BACKOFF_MIN_MS;
    k->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)k;
    if (!k->rng)
        k->rng = 1;
    k->multi = curl_multi_init();
    if (!k->server || !k->token_file || !k->ca_file || !k->node || !k->multi) {
        if (k->multi)
            curl_multi_cleanup(k->multi);
        k->torn_down = 1;
        really_free(k);
        ps_errbuf(err, errlen, "out of memory");
        return -1;
    }
    uv_timer_init(k->loop, &k->t_curl);
    uv_timer_init(k->loop, &k->t_retry);
    uv_timer_init(k->loop, &k->t_stall);
    k->t_curl.data = k->t_retry.data = k->t_stall.data = k;
    curl_multi_setopt(k->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(k->multi, CURLMOPT_SOCKETDATA, k);
    curl_multi_setopt(k->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(k->multi, CURLMOPT_TIMERDATA, k);
    schedule(k, 0);
    *out = k;
    return 0;
}

void ps_kube_stop(ps_kube *k, void (*done)(void *ud), void *ud)
{
    if (!k || k->stopped)
        return;
    k->stopped = 1;
    k->done = done;
    k->done_ud = ud;
    uv_timer_stop(&k->t_retry);
    uv_timer_stop(&k->t_stall);
    if (!k->in_curl)
        teardown(k); /* else socket_action does it once curl has returned */
}

void ps_kube_free(ps_kube *k)
{
    if (!k)
        return;
    if (!k->stopped)
        ps_kube_stop(k, NULL, NULL);
    if (k->torn_down && k->pending_closes == 0)
        really_free(k);
    else
        k->free_requested = 1; /* the last close frees it */
}
