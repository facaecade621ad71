/*
 * tier: a background thread that polls the other receivers of a tier for
 * their sensors (see tier.h). Blocking libcurl calls are fine here: nothing
 * else runs on this thread, and the HTTP threads only read the last
 * answers under a mutex.
 */
#include "tier.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "core/curlload.h"
#include "core/hostport.h"
#include "core/log.h"

#define TIER_MAX_PEERS 64
#define TIER_MAX_BODY (16u << 20)
#define TIER_TIMEOUT_MS 3000L

typedef struct peer {
    char address[NI_MAXHOST + 16]; /* "IP:PORT" as asked */
    char receiver[256];
    char instance[64]; /* its PS_TIER_INSTANCE_HEADER */
    int ok;
    char error[256];
    json_t *sensors; /* the answer's array, NULL when not ok or ourselves */
    time_t checked;
} peer;

struct ps_tier {
    ps_tier_opts o;
    char *host, *token, *self; /* self: our instance id */
    int port;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    peer peers[TIER_MAX_PEERS]; /* under mu */
    int n_peers;
};

typedef struct body {
    char *data;
    size_t len;
    int too_big;
} body;

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    peer *pe = ud;
    size_t len = size * n, hl = strlen(PS_TIER_INSTANCE_HEADER);
    if (len > hl + 1 && strncasecmp(p, PS_TIER_INSTANCE_HEADER, hl) == 0 && p[hl] == ':') {
        const char *v = p + hl + 1;
        size_t vl = len - hl - 1;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        if (vl < sizeof(pe->instance)) {
            memcpy(pe->instance, v, vl);
            pe->instance[vl] = '\0';
        }
    }
    return len;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    body *b = ud;
    size_t add = size * n;
    if (b->len + add > TIER_MAX_BODY) {
        b->too_big = 1;
        return 0; /* aborts the transfer */
    }
    char *d = realloc(b->data, b->len + add + 1);
    if (!d)
        return 0;
    memcpy(d + b->len, p, add);
    b->len += add;
    d[b->len] = '\0';
    b->data = d;
    return add;
}

/* Asks one address; fills pe (not under the mutex: pe is a local copy). */
static void ask(ps_tier *t, peer *pe)
{
    char url[sizeof(((peer *)0)->address) + 64];
    snprintf(url, sizeof(url), "http://%s/api/sensors?scope=local", pe->address);
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(pe->error, sizeof(pe->error), "out of memory");
        return;
    }
    body b = {0};
    struct curl_slist *hdr = NULL;
    char auth[1100];
    if (t->token && t->token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", t->token);
        hdr = curl_slist_append(NULL, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, pe);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, TIER_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (hdr)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(pe->error, sizeof(pe->error), "%s",
                 b.too_big ? "answer larger than 16 MiB" : curl_easy_strerror(rc));
    } else if (status != 200) {
        snprintf(pe->error, sizeof(pe->error), "HTTP %ld%s", status,
                 status == 401 || status == 403 ? " (does http.token match the peer's?)" : "");
    } else {
        json_error_t je;
        json_t *arr = json_loadb(b.data ? b.data : "", b.len, 0, &je);
        if (!json_is_array(arr)) {
            snprintf(pe->error, sizeof(pe->error), "not a JSON array: %s", je.text);
            json_decref(arr);
        } else {
            /* Its entries carry its name; an empty answer names nobody. */
            json_t *first = json_array_get(arr, 0);
            const char *name = first ? json_string_value(json_object_get(first, "receiver")) : NULL;
            snprintf(pe->receiver, sizeof(pe->receiver), "%s", name ? name : "");
            pe->ok = 1;
            pe->sensors = arr;
        }
    }
    free(b.data);
}

static void poll_once(ps_tier *t)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", t->port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int grc = getaddrinfo(t->host, port, &hints, &res);
    peer fresh[TIER_MAX_PEERS];
    int n = 0;
    if (grc != 0) {
        memset(&fresh[0], 0, sizeof(fresh[0]));
        snprintf(fresh[0].address, sizeof(fresh[0].address), "%s:%d", t->host, t->port);
        snprintf(fresh[0].error, sizeof(fresh[0].error), "cannot resolve: %s", gai_strerror(grc));
        fresh[0].checked = time(NULL);
        n = 1;
    }
    for (struct addrinfo *a = res; a && n < TIER_MAX_PEERS; a = a->ai_next) {
        char ip[NI_MAXHOST];
        if (getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST))
            continue;
        peer *pe = &fresh[n];
        memset(pe, 0, sizeof(*pe));
        if (strchr(ip, ':'))
            snprintf(pe->address, sizeof(pe->address), "[%s]:%d", ip, t->port);
        else
            snprintf(pe->address, sizeof(pe->address), "%s:%d", ip, t->port);
        int dup = 0;
        for (int k = 0; k < n; k++)
            dup |= strcmp(fresh[k].address, pe->address) == 0;
        if (dup)
            continue;
        ask(t, pe);
        pe->checked = time(NULL);
        if (pe->ok && strcmp(pe->instance, t->self) == 0) {
            json_decref(pe->sensors); /* ourselves */
            pe->sensors = NULL;
        }
        n++;
    }
    if (res)
        freeaddrinfo(res);
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->n_peers; i++)
        json_decref(t->peers[i].sensors);
    memcpy(t->peers, fresh, (size_t)n * sizeof(fresh[0]));
    t->n_peers = n;
    pthread_mutex_unlock(&t->mu);
}

static void *run(void *arg)
{
    ps_tier *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        pthread_mutex_unlock(&t->mu);
        poll_once(t);
        pthread_mutex_lock(&t->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += t->o.refresh_sec;
        while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int ps_tier_open(ps_tier **out, const ps_tier_opts *o, char *err, size_t errlen)
{
    if (ps_curl_load(err, errlen) != 0)
        return -1;
    ps_tier *t = calloc(1, sizeof(*t));
    if (!t) {
        ps_errbuf(err, errlen, "out of memory");
        return -1;
    }
    t->o = *o;
    if (!t->o.refresh_sec)
        t->o.refresh_sec = 5;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    ps_hostport hp;
    if (!o->peers || ps_hostport_parse(o->peers, 0, &hp) != 0) {
        char why[400];
        ps_errbuf(err, errlen, "tier.peers: %s",
                  ps_hostport_explain(o->peers ? o->peers : "", "NAME", why, sizeof(why)));
        ps_tier_free(t);
        return -1;
    }
    t->port = hp.port;
    t->host = strdup(hp.host);
    t->self = strdup(o->instance ? o->instance : "");
    t->token = o->token ? strdup(o->token) : NULL;
    if (!t->host || !t->self || (o->token && !t->token)) {
        ps_errbuf(err, errlen, "out of memory");
        ps_tier_free(t);
        return -1;
    }
    if (pthread_create(&t->thread, NULL, run, t) != 0) {
        ps_errbuf(err, errlen, "cannot start the tier thread");
        ps_tier_free(t);
        return -1;
    }
    t->started = 1;
    *out = t;
    return 0;
}

int ps_tier_append_sensors(ps_tier *t, json_t *arr)
{
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->n_peers && rc == 0; i++) {
        json_t *s = t->peers[i].sensors;
        size_t k;
        json_t *v;
        json_array_foreach(s, k, v)
        {
            if (json_is_object(v) && json_array_append_new(arr, json_deep_copy(v)) != 0)
                rc = -1;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

json_t *ps_tier_status(ps_tier *t)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->n_peers; i++) {
        const peer *p = &t->peers[i];
        char when[40] = "";
        struct tm tm;
        if (p->checked && gmtime_r(&p->checked, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        int self = p->ok && strcmp(p->instance, t->self) == 0;
        json_t *o = json_pack(
            "{s:s, s:s, s:b, s:b, s:s?, s:I, s:s}", "address", p->address, "receiver", p->receiver,
            "ok", p->ok, "self", self, "error", p->ok ? NULL : p->error, "sensors",
            (json_int_t)(p->sensors ? json_array_size(p->sensors) : 0), "checked", when);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return arr;
}

void ps_tier_free(ps_tier *t)
{
    if (!t)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->mu);
        t->stop = 1;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    for (int i = 0; i < t->n_peers; i++)
        json_decref(t->peers[i].sensors);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->host);
    free(t->self);
    free(t->token);
    free(t);
}
