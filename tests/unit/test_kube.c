/*
 * test_kube: the pod list/watch client. Pure parts (Pod objects, watch
 * lines, the in-cluster environment) against valid, malformed and hostile
 * input; the client itself against the stand-in API server
 * (tests/lib/kubeapi.py, a subprocess speaking the real protocol over
 * HTTPS) on a real libuv loop: paging, watch events, bookmarks, 410
 * re-list, 401/403, token rotation, cut/slow/stalled streams, an API
 * server that is down, a wrong CA.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "core/curlload.h"
#include "sensor/kube.h"
#include "testutil.h"

/* ---- pure parsing ----------------------------------------------------------- */

static const char POD[] =
    "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"web-1\",\"namespace\":"
    "\"shop\",\"uid\":\"6f1c6c9e-8d7e-4c4b-9d0e-1f2a3b4c5d6e\",\"resourceVersion\":\"4711\","
    "\"labels\":{\"app\":\"web\",\"tier\":\"front\",\"app.kubernetes.io/part-of\":\"shop\"}},"
    "\"spec\":{\"nodeName\":\"node1\",\"hostNetwork\":false,\"containers\":[{\"name\":\"a\"}]},"
    "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.1.5\",\"podIPs\":[{\"ip\":\"10.244.1."
    "5\"},{\"ip\":\"fd00:10:244:1::5\"}]}}";

static void parse(const char *json, int want_rc, const char *want_err)
{
    ps_pod p;
    char err[256] = "";
    int rc = ps_kube_parse_pod(json, strlen(json), &p, err, sizeof(err));
    if (rc != want_rc)
        fail_msg("parse_pod(%s) = %d (%s), want %d", json, rc, err, want_rc);
    if (want_err && !strstr(err, want_err))
        fail_msg("parse_pod(%s): error \"%s\" does not name \"%s\"", json, err, want_err);
    ps_pod_clear(&p);
}

static void test_parse_pod(void **state)
{
    (void)state;
    ps_pod p;
    char err[256];
    assert_int_equal(ps_kube_parse_pod(POD, strlen(POD), &p, err, sizeof(err)), 0);
    assert_string_equal(p.uid, "6f1c6c9e-8d7e-4c4b-9d0e-1f2a3b4c5d6e");
    assert_string_equal(p.ns, "shop");
    assert_string_equal(p.name, "web-1");
    assert_int_equal(p.n_ips, 2);
    assert_string_equal(p.ips[0], "10.244.1.5");
    assert_string_equal(p.ips[1], "fd00:10:244:1::5");
    assert_int_equal(p.n_labels, 3);
    assert_string_equal(p.labels[0], "app=web"); /* the object's order */
    assert_string_equal(p.labels[1], "tier=front");
    assert_string_equal(p.labels[2], "app.kubernetes.io/part-of=shop");
    assert_string_equal(ps_pod_label(&p, "tier"), "front");
    assert_null(ps_pod_label(&p, "tie"));
    assert_null(ps_pod_label(&p, "app.kubernetes.io"));
    assert_int_equal(p.host_network, 0);
    assert_string_equal(p.phase, "Running");

    ps_pod c;
    assert_int_equal(ps_pod_copy(&c, &p), 0);
    ps_pod_clear(&p);
    assert_null(p.uid);
    assert_string_equal(c.labels[1], "tier=front");
    assert_string_equal(c.ips[1], "fd00:10:244:1::5");
    assert_string_equal(c.phase, "Running");
    ps_pod_clear(&c);

    /* a pending pod: no IP, no labels, no phase; an old server's podIP only */
    const char *pending = "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u1\"},"
                          "\"spec\":{\"hostNetwork\":true}}";
    assert_int_equal(ps_kube_parse_pod(pending, strlen(pending), &p, err, sizeof(err)), 0);
    assert_int_equal(p.n_ips, 0);
    assert_int_equal(p.n_labels, 0);
    assert_int_equal(p.host_network, 1);
    assert_string_equal(p.phase, "");
    ps_pod_clear(&p);
    const char *old = "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u1\"},"
                      "\"status\":{\"podIP\":\"10.0.0.9\"}}";
    assert_int_equal(ps_kube_parse_pod(old, strlen(old), &p, err, sizeof(err)), 0);
    assert_int_equal(p.n_ips, 1);
    assert_string_equal(p.ips[0], "10.0.0.9");
    ps_pod_clear(&p);
}

static void test_parse_pod_hostile(void **state)
{
    (void)state;
    parse("", -1, "invalid JSON");
    parse("[]", -1, "not a JSON object");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\"}}", -1, "metadata.uid");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":7}}", -1, "metadata.uid");
    parse("{\"metadata\":{\"name\":\"p\",\"uid\":\"u\"}}", -1, "metadata.namespace");
    parse("{\"metadata\":{\"name\":\"P Q\",\"namespace\":\"n\",\"uid\":\"u\"}}", -1,
          "metadata.name");
    parse("{\"metadata\":{\"name\":\"p\\nq\",\"namespace\":\"n\",\"uid\":\"u\"}}", -1,
          "metadata.name");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\\u0000x\"}}", -1,
          "invalid JSON"); /* NUL inside a string: refused by the parser */
    parse("{\"kind\":\"Secret\",\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":"
          "\"u\"}}",
          -1, "kind");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\",\"uid\":\"v\"}}", -1,
          "invalid JSON"); /* duplicate key */
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\",\"labels\":[1]}}", -1,
          "metadata.labels");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\",\"labels\":{\"a\":"
          "1}}}",
          -1, "metadata.labels");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\",\"labels\":{\"a,b\":"
          "\"c\"}}}",
          -1, "metadata.labels"); /* would split a selector's list */
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\",\"labels\":{\"a\":"
          "\"x=y\"}}}",
          -1, "metadata.labels");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\"},\"spec\":{"
          "\"hostNetwork\":\"yes\"}}",
          -1, "spec.hostNetwork");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\"},\"spec\":5}", -1,
          "spec");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\"},\"status\":{"
          "\"podIPs\":[{\"ip\":\"10.0.0.300\"}]}}",
          -1, "status.podIPs");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\"},\"status\":{"
          "\"podIPs\":[\"10.0.0.1\"]}}",
          -1, "status.podIPs");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\"},\"status\":{"
          "\"podIP\":\"eth0\"}}",
          -1, "status.podIPs");
    parse("{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\"},\"status\":{"
          "\"phase\":\"Run ning\"}}",
          -1, "status.phase");
    /* lengths: a 253-byte name is the limit, 254 is refused */
    char big[600];
    memset(big, 'a', 253);
    big[253] = '\0';
    char buf[1024];
    snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"n\",\"uid\":\"u\"}}",
             big);
    parse(buf, 0, NULL);
    memset(big, 'a', 254);
    big[254] = '\0';
    snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"n\",\"uid\":\"u\"}}",
             big);
    parse(buf, -1, "metadata.name");
    /* deep nesting is refused by the parser's depth limit, not the stack */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 1);
    assert_non_null(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    parse(deep, -1, "invalid JSON");
    free(deep);

    /* more IPs and labels than a pod can hold: the first ones, no overflow */
    char many[8192];
    int w =
        snprintf(many, sizeof(many),
                 "{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"uid\":\"u\",\"labels\":{");
    for (int i = 0; i < 100; i++)
        w += snprintf(many + w, sizeof(many) - (size_t)w, "%s\"k%d\":\"v%d\"", i ? "," : "", i, i);
    w += snprintf(many + w, sizeof(many) - (size_t)w, "}},\"status\":{\"podIPs\":[");
    for (int i = 0; i < 10; i++)
        w += snprintf(many + w, sizeof(many) - (size_t)w, "%s{\"ip\":\"10.0.0.%d\"}", i ? "," : "",
                      i);
    snprintf(many + w, sizeof(many) - (size_t)w, "]}}");
    ps_pod p;
    char err[256];
    assert_int_equal(ps_kube_parse_pod(many, strlen(many), &p, err, sizeof(err)), 0);
    assert_int_equal(p.n_labels, PS_KUBE_MAX_LABELS);
    assert_string_equal(p.labels[PS_KUBE_MAX_LABELS - 1], "k63=v63");
    assert_int_equal(p.n_ips, PS_KUBE_MAX_IPS);
    assert_string_equal(p.ips[3], "10.0.0.3");
    ps_pod_clear(&p);
}

static int event(const char *line, const char **type, ps_pod *pod, char *rv, int *code)
{
    char err[256];
    return ps_kube_parse_event(line, strlen(line), type, pod, rv, 64, code, err, sizeof(err));
}

static void test_parse_event(void **state)
{
    (void)state;
    const char *type;
    ps_pod pod;
    char rv[64], line[4096];
    int code;
    snprintf(line, sizeof(line), "{\"type\":\"MODIFIED\",\"object\":%s}", POD);
    assert_int_equal(event(line, &type, &pod, rv, &code), 0);
    assert_string_equal(type, "MODIFIED");
    assert_string_equal(rv, "4711");
    assert_string_equal(pod.name, "web-1");
    ps_pod_clear(&pod);
    snprintf(line, sizeof(line), "{\"type\":\"DELETED\",\"object\":%s}", POD);
    assert_int_equal(event(line, &type, &pod, rv, &code), 0);
    assert_string_equal(type, "DELETED");
    ps_pod_clear(&pod);

    assert_int_equal(event("{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":"
                           "\"v1\",\"metadata\":{\"resourceVersion\":\"9001\"}}}",
                           &type, &pod, rv, &code),
                     0);
    assert_string_equal(type, "BOOKMARK");
    assert_string_equal(rv, "9001");
    assert_null(pod.uid);

    assert_int_equal(event("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":"
                           "\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old "
                           "resource version: 1 (50)\",\"reason\":\"Expired\",\"code\":410}}",
                           &type, &pod, rv, &code),
                     0);
    assert_string_equal(type, "ERROR");
    assert_int_equal(code, 410);

    /* malformed and hostile lines */
    assert_int_equal(event("{\"type\":\"ADDED\"}", &type, &pod, rv, &code), -1);
    assert_int_equal(event("{\"type\":\"EXPLODED\",\"object\":{}}", &type, &pod, rv, &code), -1);
    assert_int_equal(event("{\"object\":{}}", &type, &pod, rv, &code), -1);
    assert_int_equal(event("{\"type\":7,\"object\":{}}", &type, &pod, rv, &code), -1);
    assert_int_equal(
        event("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}", &type, &pod, rv, &code), -1);
    assert_int_equal(event("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{"
                           "\"resourceVersion\":\"1 2\"}}}",
                           &type, &pod, rv, &code),
                     -1);
    char longrv[200];
    memset(longrv, '7', 100);
    longrv[100] = '\0';
    snprintf(line, sizeof(line),
             "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"%s\"}}}",
             longrv);
    assert_int_equal(event(line, &type, &pod, rv, &code), -1); /* longer than rvlen 64 */
    /* a pod event without a resourceVersion cannot be resumed from */
    assert_int_equal(event("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"p\","
                           "\"namespace\":\"n\",\"uid\":\"u\"}}}",
                           &type, &pod, rv, &code),
                     -1);
    assert_null(pod.uid);
    assert_int_equal(
        event("{\"type\":\"ERROR\",\"object\":{\"code\":\"410\"}}", &type, &pod, rv, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(event("{\"type\":\"ADDED\",\"object\":{}} trailing", &type, &pod, rv, &code),
                     -1);
}

static void test_env_server(void **state)
{
    (void)state;
    char out[300], err[256];
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    assert_int_equal(ps_kube_env_server(out, sizeof(out), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
    assert_int_equal(ps_kube_in_cluster(NULL), 0);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    assert_int_equal(ps_kube_env_server(out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "https://10.96.0.1:443");
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    assert_int_equal(ps_kube_env_server(out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "https://10.96.0.1:6443");
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    assert_int_equal(ps_kube_env_server(out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "https://[fd00:10:96::1]:6443");
    setenv("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc", 1);
    assert_int_equal(ps_kube_env_server(out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "https://kubernetes.default.svc:6443");
    const char *bad_ports[] = {"0", "65536", "443x", "-1", "", "000000443"};
    for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
        setenv("KUBERNETES_SERVICE_PORT", bad_ports[i], 1);
        int rc = ps_kube_env_server(out, sizeof(out), err, sizeof(err));
        if (bad_ports[i][0]) /* "" means unset: 443 */
            assert_int_equal(rc, -1);
        else
            assert_string_equal(out, "https://kubernetes.default.svc:443");
    }
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    const char *bad_hosts[] = {"a b", "evil/path", "x@y", "host:1", "ex\nample"};
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        setenv("KUBERNETES_SERVICE_HOST", bad_hosts[i], 1);
        assert_int_equal(ps_kube_env_server(out, sizeof(out), err, sizeof(err)), -1);
    }
    char small[12];
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    assert_int_equal(ps_kube_env_server(small, sizeof(small), err, sizeof(err)), -1);
    /* in a cluster: the variable and a readable token */
    assert_int_equal(ps_kube_in_cluster("/nonexistent/token"), 0);
    assert_int_equal(ps_kube_in_cluster(PS_SOURCE_DIR "/CMakeLists.txt"), 1);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void test_open_checks(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    ps_kube *k = NULL;
    char err[256];
    ps_kube_opts o = {.loop = &loop,
                      .api_server = "https://127.0.0.1:1",
                      .token_file = "/nonexistent",
                      .ca_file = PS_SOURCE_DIR "/CMakeLists.txt",
                      .node_name = NULL};
    assert_int_equal(ps_kube_open(&k, &o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "node name"));
    o.node_name = "node1";
    o.api_server = "http://127.0.0.1:1"; /* plain HTTP: the token would travel in clear */
    assert_int_equal(ps_kube_open(&k, &o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "https://"));
    o.api_server = "https://127.0.0.1:1";
    o.ca_file = "/nonexistent/ca.crt";
    assert_int_equal(ps_kube_open(&k, &o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/ca.crt"));
    assert_null(k);
    uv_loop_close(&loop);
}

/* ---- the stand-in --------------------------------------------------------------- */

typedef struct standin {
    pid_t pid;
    FILE *in, *out;
    char dir[128];
    char url[128], ca[256], token_file[256];
} standin;

static void sa_start(standin *s, const char *extra)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(tu_mkdtemp(s->dir, sizeof(s->dir), "kube"), 0);
    int to[2], from[2];
    assert_int_equal(pipe(to), 0);
    assert_int_equal(pipe(from), 0);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "exec /usr/bin/python3 %s/tests/lib/kubeapi.py --dir %s/api --node node1 %s "
             "2>>%s/log",
             PS_SOURCE_DIR, s->dir, extra ? extra : "", s->dir);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    s->in = fdopen(to[1], "w");
    s->out = fdopen(from[0], "r");
    assert_non_null(s->in);
    assert_non_null(s->out);
    char line[4096];
    assert_non_null(fgets(line, sizeof(line), s->out));
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    snprintf(s->url, sizeof(s->url), "%s", json_string_value(json_object_get(j, "url")));
    snprintf(s->ca, sizeof(s->ca), "%s", json_string_value(json_object_get(j, "ca")));
    snprintf(s->token_file, sizeof(s->token_file), "%s",
             json_string_value(json_object_get(j, "token_file")));
    json_decref(j);
}

/* Sends one command (a JSON object's text), returns the answer (decref). */
static json_t *sa_cmd(standin *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(s->in, fmt, ap);
    va_end(ap);
    fputc('\n', s->in);
    fflush(s->in);
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    assert_non_null(line);
    assert_non_null(fgets(line, (int)cap, s->out));
    json_t *j = json_loads(line, 0, NULL);
    free(line);
    assert_non_null(j);
    if (!json_is_true(json_object_get(j, "ok")))
        fail_msg("stand-in: %s", json_string_value(json_object_get(j, "error")));
    return j;
}

static void sa_do(standin *s, const char *cmd)
{
    json_decref(sa_cmd(s, "%s", cmd));
}

/* The uid of a pod the stand-in just made or changed. */
static void sa_add(standin *s, const char *name, const char *node, char *uid, size_t uidlen)
{
    json_t *j = sa_cmd(s,
                       "{\"cmd\":\"add\",\"name\":\"%s\",\"ns\":\"shop\",\"node\":\"%s\","
                       "\"labels\":{\"app\":\"web\",\"name\":\"%s\"},\"ips\":[\"10.244.1.7\"]}",
                       name, node, name);
    if (uid)
        snprintf(uid, uidlen, "%s",
                 json_string_value(json_object_get(
                     json_object_get(json_object_get(j, "pod"), "metadata"), "uid")));
    json_decref(j);
}

static void sa_stop(standin *s)
{
    if (s->pid > 0) {
        fputs("{\"cmd\":\"quit\"}\n", s->in);
        fflush(s->in);
        char line[256];
        if (!fgets(line, sizeof(line), s->out))
            kill(s->pid, SIGKILL);
        int st;
        waitpid(s->pid, &st, 0);
    }
    fclose(s->in);
    fclose(s->out);
    tu_rm_rf(s->dir);
}

/* Sends text, as is, as one line of every open watch stream. */
static void sa_inject(standin *s, const char *text)
{
    json_t *c = json_pack("{s:s,s:s}", "cmd", "inject", "line", text);
    assert_non_null(c);
    char *t = json_dumps(c, JSON_COMPACT);
    assert_non_null(t);
    sa_do(s, t);
    free(t);
    json_decref(c);
}

/* The stand-in's current resourceVersion. */
static long sa_rv(standin *s)
{
    json_t *j = sa_cmd(s, "{\"cmd\":\"info\"}");
    long rv = (long)json_integer_value(json_object_get(j, "rv"));
    json_decref(j);
    return rv;
}

/* The requests the stand-in saw whose query has key (NULL: all). */
static size_t sa_count(standin *s, const char *key, const char *value)
{
    json_t *j = sa_cmd(s, "{\"cmd\":\"requests\"}");
    json_t *reqs = json_object_get(j, "requests"), *r;
    size_t i, n = 0;
    json_array_foreach(reqs, i, r)
    {
        json_t *q = json_object_get(r, "query");
        const char *v = key ? json_string_value(json_object_get(q, key)) : "";
        if (v && (!value || strcmp(v, value) == 0))
            n++;
    }
    json_decref(j);
    return n;
}

/* The last watch request's value of key. */
static void sa_last_watch(standin *s, const char *key, char *out, size_t outlen)
{
    json_t *j = sa_cmd(s, "{\"cmd\":\"requests\"}");
    json_t *reqs = json_object_get(j, "requests"), *r;
    size_t i;
    out[0] = '\0';
    json_array_foreach(reqs, i, r)
    {
        json_t *q = json_object_get(r, "query");
        if (json_object_get(q, "watch"))
            snprintf(out, outlen, "%s", json_string_value(json_object_get(q, key)));
    }
    json_decref(j);
}

static size_t sa_bad_auth(standin *s)
{
    json_t *j = sa_cmd(s, "{\"cmd\":\"requests\"}");
    json_t *reqs = json_object_get(j, "requests"), *r;
    size_t i, n = 0;
    json_array_foreach(reqs, i, r) n += json_is_false(json_object_get(r, "auth_ok"));
    json_decref(j);
    return n;
}

/* ---- what the client reported ---------------------------------------------------- */

#define MAXEV 512

typedef struct ev {
    int type;
    char uid[64], name[64], labels[256];
} ev;

typedef struct rec {
    ev ev[MAXEV];
    int n, synced;
    int states[64], n_states;
    char msg[1024];
    int stop_on_first; /* calls ps_kube_stop from on_pod */
    ps_kube *k;
    int done, after_stop;
} rec;

static void on_done(void *ud)
{
    ((rec *)ud)->done++;
}

static void on_pod(void *ud, ps_kube_event_type t, const ps_pod *p)
{
    rec *r = ud;
    if (r->done || (r->stop_on_first && r->n))
        r->after_stop++;
    if (t == PS_KUBE_SYNCED) {
        assert_null(p);
        r->synced++;
    }
    assert_true(r->n < MAXEV);
    ev *e = &r->ev[r->n++];
    memset(e, 0, sizeof(*e));
    e->type = (int)t;
    if (p) {
        snprintf(e->uid, sizeof(e->uid), "%s", p->uid);
        snprintf(e->name, sizeof(e->name), "%s", p->name);
        size_t w = 0;
        for (int i = 0; i < p->n_labels && w < sizeof(e->labels); i++)
            w += (size_t)snprintf(e->labels + w, sizeof(e->labels) - w, "%s%s", i ? "," : "",
                                  p->labels[i]);
    }
    if (r->stop_on_first)
        ps_kube_stop(r->k, on_done, r);
}

static void on_state(void *ud, int connected, const char *msg)
{
    rec *r = ud;
    if (r->done)
        r->after_stop++;
    assert_true(r->n_states < 64);
    r->states[r->n_states++] = connected;
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
}

static int count(const rec *r, int type, const char *name)
{
    int n = 0;
    for (int i = 0; i < r->n; i++)
        n += r->ev[i].type == type && (!name || strcmp(r->ev[i].name, name) == 0);
    return n;
}

static int last_state(const rec *r)
{
    return r->n_states ? r->states[r->n_states - 1] : -1;
}

typedef struct live {
    uv_loop_t loop;
    uv_timer_t deadline;
    standin sa;
    rec *r;
    ps_kube *k;
} live;

typedef int (*pred)(const rec *r, const void *arg);

static int run_until(live *l, pred p, const void *arg, uint64_t ms)
{
    int expired;
    tu_deadline_start(&l->deadline, &expired, ms);
    while (!p(l->r, arg) && !expired)
        uv_run(&l->loop, UV_RUN_ONCE);
    uv_timer_stop(&l->deadline);
    return !expired;
}

static int p_synced(const rec *r, const void *arg)
{
    return r->synced >= *(const int *)arg;
}

static int p_events(const rec *r, const void *arg)
{
    return r->n >= *(const int *)arg;
}

static int p_state(const rec *r, const void *arg)
{
    return last_state(r) == *(const int *)arg;
}

static void wait_synced(live *l, int n)
{
    if (!run_until(l, p_synced, &n, 15000))
        fail_msg("not synced %d times (state %d: %s)", n, last_state(l->r), l->r->msg);
}

static void wait_events(live *l, int n)
{
    if (!run_until(l, p_events, &n, 15000))
        fail_msg("%d events, want %d (state %d: %s)", l->r->n, n, last_state(l->r), l->r->msg);
}

static void wait_state(live *l, int want, uint64_t ms)
{
    if (!run_until(l, p_state, &want, ms))
        fail_msg("state %d, want %d (%s)", last_state(l->r), want, l->r->msg);
}

static void live_start(live *l, const char *extra, unsigned watch_timeout)
{
    memset(l, 0, sizeof(*l));
    l->r = calloc(1, sizeof(rec));
    assert_non_null(l->r);
    assert_int_equal(uv_loop_init(&l->loop), 0);
    assert_int_equal(uv_timer_init(&l->loop, &l->deadline), 0);
    sa_start(&l->sa, extra);
    (void)watch_timeout;
}

static void live_open(live *l, unsigned watch_timeout, const char *ca)
{
    ps_kube_opts o = {.loop = &l->loop,
                      .api_server = l->sa.url,
                      .token_file = l->sa.token_file,
                      .ca_file = ca ? ca : l->sa.ca,
                      .node_name = "node1",
                      .on_pod = on_pod,
                      .on_state = on_state,
                      .ud = l->r,
                      .watch_timeout_sec = watch_timeout};
    char err[256];
    if (ps_kube_open(&l->k, &o, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    l->r->k = l->k;
}

static void live_end(live *l)
{
    if (l->k) {
        if (!l->r->done)
            ps_kube_stop(l->k, on_done, l->r);
        /* no callback of the options after stop, even with traffic in flight */
        tu_run_for(&l->loop, 50);
        assert_int_equal(l->r->done, 1);
        ps_kube_free(l->k);
    }
    assert_int_equal(l->r->after_stop, 0);
    sa_stop(&l->sa);
    uv_close((uv_handle_t *)&l->deadline, NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&l->loop), 0);
    free(l->r);
}

/* ---- live tests ------------------------------------------------------------------- */

static void test_list_paged_then_watch(void **state)
{
    (void)state;
    live l;
    live_start(&l, "--page-size 2 --bookmark-interval 0.3", 0);
    char uid[64], other[64];
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p%d", i);
        sa_add(&l.sa, name, "node1", NULL, 0);
    }
    sa_add(&l.sa, "elsewhere", "node2", NULL, 0);
    live_open(&l, 30, NULL);
    wait_synced(&l, 1);
    /* 5 pods in 3 pages, each reported once, before SYNCED; node2's not */
    assert_int_equal(l.r->n, 6);
    assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, NULL), 5);
    assert_int_equal(l.r->ev[5].type, PS_KUBE_SYNCED);
    assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, "elsewhere"), 0);
    assert_string_equal(l.r->ev[0].labels, "app=web,name=p0");
    assert_int_equal(sa_count(&l.sa, "continue", NULL), 2);
    assert_int_equal(sa_count(&l.sa, "limit", "500"), 3);
    assert_int_equal(l.r->n_states, 1);
    assert_int_equal(l.r->states[0], 1);

    /* the watch: add, modify, delete */
    sa_add(&l.sa, "new", "node1", uid, sizeof(uid));
    wait_events(&l, 7);
    assert_int_equal(l.r->ev[6].type, PS_KUBE_POD_UPSERT);
    assert_string_equal(l.r->ev[6].uid, uid);
    sa_do(&l.sa, "{\"cmd\":\"modify\",\"name\":\"new\",\"ns\":\"shop\",\"labels\":{\"app\":"
                 "\"db\"}}");
    wait_events(&l, 8);
    assert_int_equal(l.r->ev[7].type, PS_KUBE_POD_UPSERT);
    assert_string_equal(l.r->ev[7].labels, "app=db");
    sa_do(&l.sa, "{\"cmd\":\"delete\",\"name\":\"new\",\"ns\":\"shop\"}");
    wait_events(&l, 9);
    assert_int_equal(l.r->ev[8].type, PS_KUBE_POD_DELETE);
    assert_string_equal(l.r->ev[8].uid, uid);
    char wrv[64];
    sa_last_watch(&l.sa, "allowWatchBookmarks", wrv, sizeof(wrv));
    assert_string_equal(wrv, "true");

    /* a bookmark moves the resourceVersion past events of other nodes: the
     * next watch starts from there, not from the last pod event */
    sa_add(&l.sa, "elsewhere2", "node2", other, sizeof(other));
    tu_run_for(&l.loop, 800); /* > 2 bookmark intervals */
    sa_do(&l.sa, "{\"cmd\":\"drop\"}");
    size_t watches = sa_count(&l.sa, "watch", NULL);
    for (int i = 0; i < 40 && sa_count(&l.sa, "watch", NULL) == watches; i++)
        tu_run_for(&l.loop, 50);
    assert_true(sa_count(&l.sa, "watch", NULL) > watches);
    /* the stand-in's rv: 100 + 6 adds + new (add, modify, delete) + elsewhere2 */
    sa_last_watch(&l.sa, "resourceVersion", wrv, sizeof(wrv));
    assert_string_equal(wrv, "110");
    assert_int_equal(l.r->n, 9); /* nothing more reported */
    live_end(&l);
}

static void relist_after_gone(const char *gone_as)
{
    live l;
    live_start(&l, NULL, 0);
    char keep[64], gone[64], fresh[64];
    sa_add(&l.sa, "keep", "node1", keep, sizeof(keep));
    sa_add(&l.sa, "gone", "node1", gone, sizeof(gone));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "{\"cmd\":\"set\",\"gone_as\":\"%s\"}", gone_as);
    sa_do(&l.sa, cmd);
    live_open(&l, 30, NULL);
    wait_synced(&l, 1);
    assert_int_equal(l.r->n, 3);

    /* the watch is cut; meanwhile one pod goes, one comes, and the server
     * forgets the history the client would resume from */
    sa_do(&l.sa, "{\"cmd\":\"stop\"}");
    wait_state(&l, 0, 15000);
    sa_do(&l.sa, "{\"cmd\":\"delete\",\"name\":\"gone\",\"ns\":\"shop\"}");
    sa_add(&l.sa, "fresh", "node1", fresh, sizeof(fresh));
    sa_do(&l.sa, "{\"cmd\":\"compact\"}");
    sa_do(&l.sa, "{\"cmd\":\"start\"}");
    wait_synced(&l, 2);
    /* exactly: fresh added, gone deleted (before SYNCED), keep untouched */
    assert_int_equal(l.r->n, 6);
    int del = -1, add = -1;
    for (int i = 3; i < 6; i++) {
        if (l.r->ev[i].type == PS_KUBE_POD_DELETE)
            del = i;
        if (l.r->ev[i].type == PS_KUBE_POD_UPSERT)
            add = i;
    }
    assert_true(del >= 3 && add >= 3);
    assert_string_equal(l.r->ev[del].uid, gone);
    assert_string_equal(l.r->ev[del].name, "gone");
    assert_string_equal(l.r->ev[add].uid, fresh);
    assert_int_equal(l.r->ev[5].type, PS_KUBE_SYNCED);
    assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, "keep"), 1);
    assert_int_equal(last_state(l.r), 1);
    /* two lists: at start and after the 410 */
    assert_int_equal(sa_count(&l.sa, "limit", NULL), 2);
    live_end(&l);
}

static void test_relist_410_event(void **state)
{
    (void)state;
    relist_after_gone("event");
}

static void test_relist_410_http(void **state)
{
    (void)state;
    relist_after_gone("http");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_unauthorized_then_fixed(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    size_t len;
    char *good = tu_slurp(l.sa.token_file, &len);
    write_file(l.sa.token_file, "not-the-token-S3CR3T\n");
    live_open(&l, 30, NULL);
    wait_state(&l, 0, 10000);
    assert_non_null(strstr(l.r->msg, "401"));
    assert_non_null(strstr(l.r->msg, l.sa.token_file));
    assert_null(strstr(l.r->msg, "S3CR3T"));
    assert_int_equal(l.r->synced, 0);
    /* the token is read before every request: fixing the file is enough */
    write_file(l.sa.token_file, good);
    wait_synced(&l, 1);
    assert_int_equal(last_state(l.r), 1);
    free(good);
    live_end(&l);
}

static void test_forbidden_names_permission(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    sa_do(&l.sa, "{\"cmd\":\"set\",\"deny\":true}");
    live_open(&l, 30, NULL);
    wait_state(&l, 0, 10000);
    assert_non_null(strstr(l.r->msg, "RBAC: the service account may not list pods at the cluster "
                                     "scope (needs get, list, watch on pods)"));
    assert_non_null(strstr(l.r->msg, "User \"system:serviceaccount:ps:sensor\" cannot list "
                                     "resource \"pods\""));
    size_t len;
    char *tok = tu_slurp(l.sa.token_file, &len);
    tok[strcspn(tok, "\n")] = '\0';
    assert_null(strstr(l.r->msg, tok));
    free(tok);
    /* retried with a growing, jittered backoff: 0.375-0.5 s, then 0.75-1 s,
     * then 1.5-2 s: 3 or 4 attempts in 3.5 s, not a tight loop */
    tu_run_for(&l.loop, 3500);
    size_t tries = sa_count(&l.sa, "limit", NULL);
    if (tries < 3 || tries > 4)
        fail_msg("%zu attempts in 3.5 s", tries);
    assert_int_equal(l.r->n_states, 1); /* once per change, not per retry */
    sa_do(&l.sa, "{\"cmd\":\"set\",\"deny\":false}");
    wait_synced(&l, 1);
    live_end(&l);
}

/* API Priority and Fairness answers a client over its share 429 with
 * Retry-After: the sensor waits that long, not its 0.5 s backoff. */
static void test_throttled_honours_retry_after(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    sa_do(&l.sa, "{\"cmd\":\"set\",\"throttle\":2,\"retry_after\":2}");
    live_open(&l, 30, NULL);
    wait_state(&l, 0, 10000);
    assert_non_null(strstr(l.r->msg, "429"));
    assert_non_null(strstr(l.r->msg, "Too many requests"));
    assert_non_null(strstr(l.r->msg, "retrying after 2 s (Retry-After)"));
    /* the backoff alone would have tried 3 times by 1.5 s */
    tu_run_for(&l.loop, 1500);
    assert_int_equal(sa_count(&l.sa, "limit", NULL), 1);
    tu_run_for(&l.loop, 1000);
    assert_int_equal(sa_count(&l.sa, "limit", NULL), 2);
    assert_int_equal(l.r->synced, 0);
    wait_synced(&l, 1);
    assert_int_equal(sa_count(&l.sa, "limit", NULL), 3);
    live_end(&l);
}

static void test_token_rotation(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    live_open(&l, 30, NULL);
    wait_synced(&l, 1);
    tu_run_for(&l.loop, 300);             /* the watch is open (with the old token) */
    sa_do(&l.sa, "{\"cmd\":\"rotate\"}"); /* the old token is refused from now on */
    sa_do(&l.sa, "{\"cmd\":\"drop\"}");
    sa_add(&l.sa, "after", "node1", NULL, 0);
    wait_events(&l, 2);
    assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, "after"), 1);
    assert_int_equal(sa_bad_auth(&l.sa), 0); /* the new token at the first try */
    assert_int_equal(l.r->n_states, 1);
    live_end(&l);
}

static void test_dropped_and_slow_streams(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    live_open(&l, 30, NULL);
    wait_synced(&l, 1);
    /* every change made while streams are cut mid-line arrives once */
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "d%d", i);
        sa_add(&l.sa, name, "node1", NULL, 0);
        sa_do(&l.sa, "{\"cmd\":\"drop\"}");
    }
    wait_events(&l, 7);
    tu_run_for(&l.loop, 300);
    assert_int_equal(l.r->n, 7);
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "d%d", i);
        assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, name), 1);
    }
    assert_int_equal(l.r->synced, 1); /* resumed, not re-listed */
    /* a stream that dribbles 7 bytes at a time */
    sa_do(&l.sa, "{\"cmd\":\"set\",\"slow\":0.002,\"slow_piece\":7}");
    sa_do(&l.sa, "{\"cmd\":\"modify\",\"name\":\"d1\",\"ns\":\"shop\",\"labels\":{\"x\":\"y\"}}");
    sa_do(&l.sa, "{\"cmd\":\"delete\",\"name\":\"d2\",\"ns\":\"shop\"}");
    wait_events(&l, 9);
    assert_string_equal(l.r->ev[7].name, "d1");
    assert_string_equal(l.r->ev[7].labels, "x=y");
    assert_int_equal(l.r->ev[8].type, PS_KUBE_POD_DELETE);
    assert_string_equal(l.r->ev[8].name, "d2");
    assert_int_equal(l.r->n_states, 1);
    live_end(&l);
}

static void test_hostile_watch_lines(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    char uid[64], line[1024];
    sa_add(&l.sa, "good", "node1", uid, sizeof(uid));
    sa_add(&l.sa, "other", "node1", NULL, 0);
    live_open(&l, 30, NULL);
    wait_synced(&l, 1);
    tu_run_for(&l.loop, 200); /* the watch is open */
    long rv = sa_rv(&l.sa);
    /* a new pod the sensor cannot use (a label key with a space): skipped */
    snprintf(line, sizeof(line),
             "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
             "\"metadata\":{\"name\":\"bad\",\"namespace\":\"shop\",\"uid\":\"u-bad\","
             "\"resourceVersion\":\"%ld\",\"labels\":{\"a b\":\"c\"}}}}",
             rv + 1);
    sa_inject(&l.sa, line);
    /* a known pod turns unusable (an IP that is not one): forgotten */
    snprintf(line, sizeof(line),
             "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
             "\"metadata\":{\"name\":\"good\",\"namespace\":\"shop\",\"uid\":\"%s\","
             "\"resourceVersion\":\"%ld\"},\"status\":{\"podIP\":\"999.1.1.1\"}}}",
             uid, rv + 2);
    sa_inject(&l.sa, line);
    wait_events(&l, 4);
    assert_int_equal(l.r->ev[3].type, PS_KUBE_POD_DELETE);
    assert_string_equal(l.r->ev[3].uid, uid);
    sa_add(&l.sa, "after", "node1", NULL, 0);
    wait_events(&l, 5);
    assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, "after"), 1);
    assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, "bad"), 0);
    assert_int_equal(l.r->synced, 1);
    assert_int_equal(l.r->n_states, 1);

    /* a line that is not an event: the table cannot be trusted, re-list;
     * the server still has "good" (valid there): reported again */
    sa_inject(&l.sa, "{\"type\":\"ADDED\",\"object\":");
    wait_synced(&l, 2);
    assert_int_equal(l.r->n, 7);
    assert_int_equal(l.r->ev[5].type, PS_KUBE_POD_UPSERT);
    assert_string_equal(l.r->ev[5].uid, uid);
    assert_int_equal(last_state(l.r), 1);
    assert_non_null(strstr(l.r->msg, "connected"));

    /* a line longer than 4 MiB: refused before it is all in memory */
    size_t big = (5u << 20);
    char *huge = malloc(big + 128);
    assert_non_null(huge);
    int w = snprintf(huge, 128, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"");
    memset(huge + w, 'a', big);
    strcpy(huge + w + big, "\"}}}");
    sa_inject(&l.sa, huge);
    free(huge);
    wait_synced(&l, 3);
    assert_int_equal(l.r->n, 8);        /* nothing changed: only SYNCED */
    assert_int_equal(l.r->n_states, 5); /* lost, back, lost, back */
    live_end(&l);
}

static void test_stalled_stream(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    live_open(&l, 2, NULL); /* stalled after 3 s of silence */
    wait_synced(&l, 1);
    size_t watches = sa_count(&l.sa, "watch", NULL);
    sa_do(&l.sa, "{\"cmd\":\"set\",\"stall\":true}");
    sa_add(&l.sa, "held", "node1", NULL, 0);
    tu_run_for(&l.loop, 3600);
    assert_int_equal(l.r->n, 1);
    assert_true(sa_count(&l.sa, "watch", NULL) > watches); /* re-opened */
    sa_do(&l.sa, "{\"cmd\":\"set\",\"stall\":false}");
    wait_events(&l, 2);
    tu_run_for(&l.loop, 300);
    assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, "held"), 1);
    live_end(&l);
}

static void test_server_down_then_up(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    sa_add(&l.sa, "a", "node1", NULL, 0);
    sa_do(&l.sa, "{\"cmd\":\"stop\"}");
    live_open(&l, 30, NULL);
    wait_state(&l, 0, 10000);
    assert_non_null(strstr(l.r->msg, "cannot reach the API server"));
    assert_non_null(strstr(l.r->msg, l.sa.url));
    assert_int_equal(l.r->n, 0);
    sa_do(&l.sa, "{\"cmd\":\"start\"}");
    wait_synced(&l, 1);
    assert_int_equal(l.r->n_states, 2);
    assert_int_equal(l.r->states[0], 0);
    assert_int_equal(l.r->states[1], 1);
    assert_int_equal(count(l.r, PS_KUBE_POD_UPSERT, "a"), 1);
    live_end(&l);
}

static void test_wrong_ca(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    char ca[256], key[256], cmd[1024];
    snprintf(ca, sizeof(ca), "%s/other-ca.crt", l.sa.dir);
    snprintf(key, sizeof(key), "%s/other-ca.key", l.sa.dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=other-ca 2>/dev/null",
             key, ca);
    assert_int_equal(system(cmd), 0);
    sa_add(&l.sa, "a", "node1", NULL, 0);
    live_open(&l, 30, ca);
    wait_state(&l, 0, 10000);
    assert_non_null(strstr(l.r->msg, "TLS"));
    assert_non_null(strstr(l.r->msg, ca));
    tu_run_for(&l.loop, 1200); /* retried, never connected */
    assert_int_equal(l.r->n_states, 1);
    assert_int_equal(l.r->n, 0);
    assert_int_equal(sa_count(&l.sa, NULL, NULL), 0); /* no request ever reached it */
    live_end(&l);
}

static void test_stop_from_callback(void **state)
{
    (void)state;
    live l;
    live_start(&l, NULL, 0);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        sa_add(&l.sa, name, "node1", NULL, 0);
    }
    l.r->stop_on_first = 1;
    live_open(&l, 30, NULL);
    int one = 1;
    assert_true(run_until(&l, p_events, &one, 10000));
    tu_run_for(&l.loop, 100);
    assert_int_equal(l.r->n, 1); /* no callback after the stop */
    assert_int_equal(l.r->done, 1);
    live_end(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_pod),
        cmocka_unit_test(test_parse_pod_hostile),
        cmocka_unit_test(test_parse_event),
        cmocka_unit_test(test_env_server),
        cmocka_unit_test(test_open_checks),
        cmocka_unit_test(test_list_paged_then_watch),
        cmocka_unit_test(test_relist_410_event),
        cmocka_unit_test(test_relist_410_http),
        cmocka_unit_test(test_unauthorized_then_fixed),
        cmocka_unit_test(test_forbidden_names_permission),
        cmocka_unit_test(test_token_rotation),
        cmocka_unit_test(test_dropped_and_slow_streams),
        cmocka_unit_test(test_hostile_watch_lines),
        cmocka_unit_test(test_stalled_stream),
        cmocka_unit_test(test_server_down_then_up),
        cmocka_unit_test(test_wrong_ca),
        cmocka_unit_test(test_stop_from_callback),
        cmocka_unit_test(test_throttled_honours_retry_after),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ps_curl_unload();
    return rc;
}
