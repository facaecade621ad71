/*
 * job: the capture job commands (see job.h).
 *
 * One blocking libcurl easy transfer per command: the answers are small
 * JSON documents, kept whole in memory (bounded by RESP_MAX) and parsed
 * with jansson. The request body is built with jansson too, so names and
 * filters never need escaping by hand. Validation is the receiver's: the
 * client checks only what it must to build the request, so a receiver with
 * other limits is never second-guessed.
 */
#include "job.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "core/curlload.h"

#define DEFAULT_RECEIVER "http://127.0.0.1:8080"
#define RESP_MAX (4u << 20)
#define MAX_LIST 64

typedef struct opts {
    const char *receiver, *token_file, *label_selector, *filter, *duration, *packets, *bytes,
        *preroll;
    const char *pods[MAX_LIST], *nss[MAX_LIST], *sensors[MAX_LIST], *ifaces[MAX_LIST];
    int n_pods, n_nss, n_sensors, n_ifaces;
    int json;
} opts;

typedef struct resp {
    char *data;
    size_t len;
    int too_big;
} resp;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    resp *r = ud;
    size_t len = size * n;
    if (r->len + len > RESP_MAX) {
        r->too_big = 1;
        return 0;
    }
    char *d = realloc(r->data, r->len + len + 1);
    if (!d)
        return 0;
    memcpy(d + r->len, p, len);
    r->data = d;
    r->len += len;
    d[r->len] = '\0';
    return len;
}

static int read_token(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "packetstreamer job: --token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = fread(out, 1, len - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    if (!n || strpbrk(out, "\r\n")) {
        fprintf(stderr, "packetstreamer job: --token-file %s: %s\n", path,
                n ? "more than one line" : "empty");
        return -1;
    }
    return 0;
}

/* One request; *code the HTTP status, *out the parsed answer (or NULL).
 * 0, or -1 after printing why the receiver could not be asked. */
static int request(const opts *o, const char *method, const char *path, const char *body,
                   long *code, json_t **out)
{
    const char *base = o->receiver ? o->receiver : getenv("PACKETSTREAMER_RECEIVER_URL");
    if (!base || !*base)
        base = DEFAULT_RECEIVER;
    size_t blen = strlen(base);
    while (blen && base[blen - 1] == '/')
        blen--;
    char url[4096], token[4096] = "", auth[4200];
    snprintf(url, sizeof(url), "%.*s%s", (int)blen, base, path);
    if (o->token_file && read_token(o->token_file, token, sizeof(token)) != 0)
        return -1;
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    resp r = {0};
    if (!h) {
        fprintf(stderr, "packetstreamer job: out of memory\n");
        return -1;
    }
    if (token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "packetstreamer job: %s: %s\n", url,
                r.too_big ? "answer too large" : curl_easy_strerror(rc));
        free(r.data);
        return -1;
    }
    *out = r.data ? json_loadb(r.data, r.len, 0, NULL) : NULL;
    if (!*out && *code >= 200 && *code < 300) {
        fprintf(stderr, "packetstreamer job: %s answered HTTP %ld without JSON: %.200s\n", url,
                *code, r.data ? r.data : "");
        free(r.data);
        return -1;
    }
    if (!*out) /* a plain-text refusal (401, 403, 404 of an old receiver) */
        *out = json_pack("{s:s}", "error", r.data ? r.data : "");
    free(r.data);
    return 0;
}

static int refused(long code, json_t *j)
{
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *f = json_string_value(json_object_get(j, "field"));
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", e && *e ? e : "no reason given");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    fprintf(stderr, "packetstreamer job: the receiver refused (HTTP %ld)%s%s%s: %s%s\n", code,
            f ? " [" : "", f ? f : "", f ? "]" : "", msg,
            code == 401 ? " (pass --token-file with the receiver's http.token)" : "");
    return 1;
}

static void usage(FILE *f)
{
    fputs("usage: packetstreamer job start NAME [options]\n"
          "       packetstreamer job list [ID] [--json]\n"
          "       packetstreamer job stop ID\n"
          "\n"
          "Start, list and stop capture jobs on a receiver (docs/http.md, \"Capture jobs\").\n"
          "\n"
          "  --receiver URL       the receiver's HTTP address (default\n"
          "                       $PACKETSTREAMER_RECEIVER_URL, else " DEFAULT_RECEIVER ")\n"
          "  --token-file F       send the token in F (the receiver's http.token)\n"
          "start:\n"
          "  --pod NS/NAME        capture this pod (repeatable)\n"
          "  --namespace NS       pods of this namespace (repeatable)\n"
          "  --sensor GLOB        only sensors whose id matches (repeatable)\n"
          "  --label-selector SEL pods matching this label selector\n"
          "  --iface GLOB         interfaces whose name matches (repeatable)\n"
          "  --filter BPF         only packets matching this BPF expression\n"
          "  --duration DUR       how long (30s, 5m, 1h; default: the receiver's)\n"
          "  --packets N          stop after N packets\n"
          "  --bytes N            stop after N bytes\n"
          "  --preroll SEC        first the SEC seconds before the job (ondemand sensors)\n"
          "  --json               print the answer as JSON\n"
          "  --help               this text\n",
          f);
}

static int add(const char **list, int *n, const char *v, const char *flag)
{
    if (*n >= MAX_LIST) {
        fprintf(stderr, "packetstreamer job: more than %d %s\n", MAX_LIST, flag);
        return -1;
    }
    list[(*n)++] = v;
    return 0;
}

/* getopt over argv[1..]: argv[0] is the verb. 1 --help, -1 usage error. */
static int parse(opts *o, int argc, char **argv, int *first_arg)
{
    enum {
        O_RECEIVER = 256,
        O_TOKEN,
        O_POD,
        O_NS,
        O_SENSOR,
        O_LABELS,
        O_IFACE,
        O_FILTER,
        O_DURATION,
        O_PACKETS,
        O_BYTES,
        O_PREROLL,
        O_JSON,
        O_HELP
    };
    static const struct option lo[] = {{"receiver", required_argument, 0, O_RECEIVER},
                                       {"token-file", required_argument, 0, O_TOKEN},
                                       {"pod", required_argument, 0, O_POD},
                                       {"namespace", required_argument, 0, O_NS},
                                       {"sensor", required_argument, 0, O_SENSOR},
                                       {"label-selector", required_argument, 0, O_LABELS},
                                       {"iface", required_argument, 0, O_IFACE},
                                       {"filter", required_argument, 0, O_FILTER},
                                       {"duration", required_argument, 0, O_DURATION},
                                       {"packets", required_argument, 0, O_PACKETS},
                                       {"bytes", required_argument, 0, O_BYTES},
                                       {"preroll", required_argument, 0, O_PREROLL},
                                       {"json", no_argument, 0, O_JSON},
                                       {"help", no_argument, 0, O_HELP},
                                       {0, 0, 0, 0}};
    memset(o, 0, sizeof(*o));
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case O_RECEIVER:
            o->receiver = optarg;
            break;
        case O_TOKEN:
            o->token_file = optarg;
            break;
        case O_POD:
            if (!strchr(optarg, '/')) {
                fprintf(stderr, "packetstreamer job: --pod %s: NAMESPACE/NAME expected\n", optarg);
                return -1;
            }
            rc = add(o->pods, &o->n_pods, optarg, "--pod");
            break;
        case O_NS:
            rc = add(o->nss, &o->n_nss, optarg, "--namespace");
            break;
        case O_SENSOR:
            rc = add(o->sensors, &o->n_sensors, optarg, "--sensor");
            break;
        case O_LABELS:
            o->label_selector = optarg;
            break;
        case O_IFACE:
            rc = add(o->ifaces, &o->n_ifaces, optarg, "--iface");
            break;
        case O_FILTER:
            o->filter = optarg;
            break;
        case O_DURATION:
            o->duration = optarg;
            break;
        case O_PACKETS:
            o->packets = optarg;
            break;
        case O_BYTES:
            o->bytes = optarg;
            break;
        case O_PREROLL:
            o->preroll = optarg;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_HELP:
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "packetstreamer job: %s '%s'\n",
                    optopt ? "option needs a value or is unknown:" : "unknown option",
                    argv[optind - 1]);
            usage(stderr);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    *first_arg = optind;
    return 0;
}

static int number(const char *flag, const char *s, json_int_t *v)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (!*s || *end || errno || n < 0) {
        fprintf(stderr, "packetstreamer job: %s %s: a non-negative integer expected\n", flag, s);
        return -1;
    }
    *v = (json_int_t)n;
    return 0;
}

static json_t *strings(const char *const *v, int n)
{
    json_t *a = json_array();
    for (int k = 0; k < n && a; k++)
        json_array_append_new(a, json_string(v[k]));
    return a;
}

static void print_json(json_t *j)
{
    char *t = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (t)
        printf("%s\n", t);
    free(t);
}

static int cmd_start(const opts *o, const char *name)
{
    json_t *b = json_object(), *sel = json_object();
    json_int_t v;
    json_object_set_new(b, "name", json_string(name));
    if (o->n_sensors)
        json_object_set_new(sel, "sensors", strings(o->sensors, o->n_sensors));
    if (o->n_nss)
        json_object_set_new(sel, "namespaces", strings(o->nss, o->n_nss));
    if (o->n_pods)
        json_object_set_new(sel, "pods", strings(o->pods, o->n_pods));
    if (o->n_ifaces)
        json_object_set_new(sel, "interfaces", strings(o->ifaces, o->n_ifaces));
    if (o->label_selector)
        json_object_set_new(sel, "labelSelector", json_string(o->label_selector));
    json_object_set_new(b, "selector", sel);
    if (o->filter)
        json_object_set_new(b, "filter", json_string(o->filter));
    if (o->duration)
        json_object_set_new(b, "duration", json_string(o->duration));
    int bad = 0;
    if (o->packets && !(bad |= number("--packets", o->packets, &v) != 0))
        json_object_set_new(b, "packets", json_integer(v));
    if (o->bytes && !(bad |= number("--bytes", o->bytes, &v) != 0))
        json_object_set_new(b, "bytes", json_integer(v));
    if (o->preroll && !(bad |= number("--preroll", o->preroll, &v) != 0))
        json_object_set_new(b, "preroll", json_integer(v));
    char *body = bad ? NULL : json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (bad)
        return 2;
    long code = 0;
    json_t *ans = NULL;
    int rc = request(o, "POST", "/api/jobs", body, &code, &ans);
    free(body);
    if (rc != 0)
        return 1;
    if (code != 201) {
        rc = refused(code, ans);
    } else if (o->json) {
        print_json(ans);
    } else {
        printf("job %" JSON_INTEGER_FORMAT " '%s' started: %s, until %s\n",
               json_integer_value(json_object_get(ans, "id")),
               json_string_value(json_object_get(ans, "name")),
               json_string_value(json_object_get(ans, "state")),
               json_string_value(json_object_get(ans, "end")));
    }
    json_decref(ans);
    return rc;
}

static const char *str_or(json_t *o, const char *k, const char *def)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : def;
}

static int cmd_list(const opts *o, const char *id)
{
    char path[256];
    snprintf(path, sizeof(path), id ? "/api/jobs/%s" : "/api/jobs", id);
    if (id && strspn(id, "0123456789") != strlen(id)) {
        fprintf(stderr, "packetstreamer job: %s: not a job id\n", id);
        return 2;
    }
    long code = 0;
    json_t *ans = NULL;
    if (request(o, "GET", path, NULL, &code, &ans) != 0)
        return 1;
    int rc = 0;
    if (code != 200) {
        rc = refused(code, ans);
    } else if (o->json || id) {
        print_json(ans);
    } else {
        printf("%-6s %-24s %-18s %-24s %12s  %s\n", "ID", "NAME", "STATE", "END", "PACKETS",
               "FILTER");
        size_t i;
        json_t *j;
        json_array_foreach(ans, i, j)
        {
            char st[64];
            const char *reason = str_or(j, "reason", NULL);
            snprintf(st, sizeof(st), "%s%s%s%s", str_or(j, "state", "?"), reason ? " (" : "",
                     reason ? reason : "", reason ? ")" : "");
            printf("%-6" JSON_INTEGER_FORMAT " %-24s %-18s %-24s %12" JSON_INTEGER_FORMAT "  %s\n",
                   json_integer_value(json_object_get(j, "id")), str_or(j, "name", "?"), st,
                   str_or(j, "end", "-"), json_integer_value(json_object_get(j, "packets_written")),
                   str_or(j, "filter", ""));
        }
    }
    json_decref(ans);
    return rc;
}

static int cmd_stop(const opts *o, const char *id)
{
    if (!*id || strspn(id, "0123456789") != strlen(id)) {
        fprintf(stderr, "packetstreamer job: %s: not a job id\n", id);
        return 2;
    }
    char path[256];
    snprintf(path, sizeof(path), "/api/jobs/%s", id);
    long code = 0;
    json_t *ans = NULL;
    if (request(o, "DELETE", path, NULL, &code, &ans) != 0)
        return 1;
    int rc = 0;
    if (code != 200)
        rc = refused(code, ans);
    else if (o->json)
        print_json(ans);
    else
        printf("job %s '%s' %s (%" JSON_INTEGER_FORMAT " packets written)\n", id,
               str_or(ans, "name", "?"), str_or(ans, "state", "?"),
               json_integer_value(json_object_get(ans, "packets_written")));
    json_decref(ans);
    return rc;
}

int ps_job_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1];
    opts o;
    int first;
    int p = parse(&o, argc - 1, argv + 1, &first);
    if (p != 0)
        return p > 0 ? 0 : 2;
    char lerr[300];
    if (ps_curl_load(lerr, sizeof(lerr)) != 0) {
        fprintf(stderr, "packetstreamer job: %s\n", lerr);
        return 1;
    }
    int nargs = argc - 1 - first;
    char **args = argv + 1 + first;
    if (strcmp(verb, "start") == 0 && nargs == 1)
        return cmd_start(&o, args[0]);
    if (strcmp(verb, "list") == 0 && nargs <= 1)
        return cmd_list(&o, nargs ? args[0] : NULL);
    if (strcmp(verb, "stop") == 0 && nargs == 1)
        return cmd_stop(&o, args[0]);
    if (strcmp(verb, "start") == 0 || strcmp(verb, "stop") == 0 || strcmp(verb, "list") == 0)
        fprintf(stderr, "packetstreamer job %s: %s\n", verb,
                strcmp(verb, "start") == 0  ? "one job NAME expected"
                : strcmp(verb, "stop") == 0 ? "one job ID expected"
                                            : "at most one job ID expected");
    else
        fprintf(stderr, "packetstreamer job: unknown verb '%s' (start, list, stop)\n", verb);
    usage(stderr);
    return 2;
}
