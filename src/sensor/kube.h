/*
 * kube: the pods of this node, from the Kubernetes API (list, then watch).
 *
 * In-cluster configuration as client-go does it: the API server from
 * kubernetes.apiServer or KUBERNETES_SERVICE_HOST/PORT, a bearer token read
 * from kubernetes.tokenFile (re-read before every request, so a rotated
 * projected token is picked up), the CA from kubernetes.caFile. TLS to the
 * API server is always verified (libcurl, OpenSSL); there is no switch to
 * turn that off.
 *
 * Protocol: GET /api/v1/pods?fieldSelector=spec.nodeName=NODE (paged with
 * limit/continue), then GET ...&watch=1&resourceVersion=RV&
 * allowWatchBookmarks=true, a chunked stream of one JSON event per line.
 * ADDED/MODIFIED/DELETED update the table; BOOKMARK advances the
 * resourceVersion; ERROR with code 410 (Gone: the version expired) and a
 * 410 answer mean re-list. A stream that ends or stalls (no byte for
 * 1.5 x the watch's timeoutSeconds) is re-opened from the last
 * resourceVersion; errors back off exponentially (0.5 s .. 30 s, jittered).
 * 401/403 are reported with the permission they lack ("list pods at the
 * cluster scope", from the Status object's message).
 *
 * The HTTP transfers run on libcurl's multi interface driven by the libuv
 * loop (curl_multi_socket_action with uv_poll and a uv_timer): nothing
 * blocks the loop, and no thread is used. JSON is parsed with jansson;
 * every field is checked for type and length before use, and an object the
 * sensor cannot use (no uid, an over-long name) is skipped with a warning
 * (a known pod that turns unusable is reported deleted). A watch line that
 * is not an event, or is longer than 4 MiB, drops the stream and re-lists.
 *
 * Pure parts (no I/O), unit-tested directly: ps_kube_parse_pod (one Pod
 * object), ps_kube_parse_event (one watch line), ps_kube_env_server.
 *
 * Callbacks run on the loop thread. on_pod receives each pod as it is now;
 * after a (re-)list, pods that vanished in between are reported as
 * PS_KUBE_POD_DELETE before PS_KUBE_SYNCED, and pods whose resourceVersion
 * did not change are not reported again. The ps_pod passed to a callback is
 * valid during the call only (ps_pod_copy to keep it). A callback may call
 * ps_kube_stop (not ps_kube_free); nothing is reported after it.
 *
 * Prefixes: ps_kube_, and ps_pod_ for the pod record it hands out.
 * ps_kube_open loads libcurl (core/curlload.h) and fails with its reason
 * when it cannot.
 */
#ifndef PS_KUBE_H
#define PS_KUBE_H

#include <stddef.h>

#include <uv.h>

#define PS_KUBE_MAX_IPS 4     /* status.podIPs; dual stack needs 2 */
#define PS_KUBE_MAX_LABELS 64 /* more are ignored (with a debug line) */
#define PS_KUBE_MAX_NAME 253  /* DNS subdomain: namespace, pod name */
#define PS_KUBE_MAX_LABEL 382 /* "key=value": key 253 + 1 + 63, value 63 */

/* One pod: what selection and mapping need. Strings are owned by the
 * struct (ps_pod_copy / ps_pod_clear). */
typedef struct ps_pod {
    char *uid;                  /* metadata.uid */
    char *ns;                   /* metadata.namespace */
    char *name;                 /* metadata.name */
    char *ips[PS_KUBE_MAX_IPS]; /* status.podIPs[].ip (else status.podIP), text form */
    int n_ips;
    char *labels[PS_KUBE_MAX_LABELS]; /* "key=value", in the object's order */
    int n_labels;
    int host_network; /* spec.hostNetwork */
    char *phase;      /* status.phase, "" when absent */
} ps_pod;

/* Deep copy; 0, or -1 on out of memory (dst is then cleared). */
int ps_pod_copy(ps_pod *dst, const ps_pod *src);
/* Frees what the pod holds and zeroes it. */
void ps_pod_clear(ps_pod *p);
/* The value of label key, or NULL. */
const char *ps_pod_label(const ps_pod *p, const char *key);

typedef enum ps_kube_event_type {
    PS_KUBE_POD_UPSERT, /* added, or changed */
    PS_KUBE_POD_DELETE,
    PS_KUBE_SYNCED, /* a list was read in full (pod is NULL) */
} ps_kube_event_type;

typedef struct ps_kube_opts {
    uv_loop_t *loop;
    const char *api_server; /* "https://HOST:PORT"; NULL: from the environment */
    const char *token_file; /* NULL: the service-account default */
    const char *ca_file;    /* NULL: the service-account default */
    const char *node_name;  /* required */
    void (*on_pod)(void *ud, ps_kube_event_type t, const ps_pod *pod);
    /* connected: 1 when a list or watch answered, 0 when the API is lost;
     * message says why (no secret in it). Called on every change only. */
    void (*on_state)(void *ud, int connected, const char *message);
    void *ud;
    /* the watch's timeoutSeconds; 0: 300. The server ends a watch after it
     * and the sensor re-opens it; a watch silent for 1.5 x this long is
     * taken for stalled. Tests use a few seconds. */
    unsigned watch_timeout_sec;
} ps_kube_opts;

#define PS_KUBE_DEFAULT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define PS_KUBE_DEFAULT_TOKEN PS_KUBE_DEFAULT_DIR "/token"
#define PS_KUBE_DEFAULT_CA PS_KUBE_DEFAULT_DIR "/ca.crt"

/* 1 when this process looks like it runs in a cluster: the
 * KUBERNETES_SERVICE_HOST variable is set and token_file (NULL: default)
 * is readable. */
int ps_kube_in_cluster(const char *token_file);

/* "https://HOST:PORT" from KUBERNETES_SERVICE_HOST/_PORT (an IPv6 host is
 * bracketed). 0, or -1 with a message when unset or malformed. */
int ps_kube_env_server(char *out, size_t outlen, char *err, size_t errlen);

/* Parses one Pod object (JSON text of len bytes). 0, or -1 with a message
 * naming the field at fault. */
int ps_kube_parse_pod(const char *json, size_t len, ps_pod *out, char *err, size_t errlen);

/* Parses one watch event line. Sets *type to "ADDED", "MODIFIED",
 * "DELETED", "BOOKMARK" or "ERROR" (static strings); for pod events fills
 * pod (the caller clears it; it is zeroed otherwise, and on failure); for
 * BOOKMARK and pod events copies metadata.resourceVersion into rv (a pod
 * event without one is an error); for ERROR sets *code to the Status code
 * (410 = Gone; 0 when absent). 0, or -1 with a message. */
int ps_kube_parse_event(const char *line, size_t len, const char **type, ps_pod *pod, char *rv,
                        size_t rvlen, int *code, char *err, size_t errlen);

typedef struct ps_kube ps_kube;

/* Checks the options (node name, server URL, readable CA), then starts the
 * first list on the loop. A server that does not answer is not an error
 * here: on_state reports it. 0, or -1 with a message. */
int ps_kube_open(ps_kube **out, const ps_kube_opts *o, char *err, size_t errlen);
/* Ends every transfer and timer; done(ud) runs from the loop once every
 * handle is closed. No callback of the opts runs after the call. */
void ps_kube_stop(ps_kube *k, void (*done)(void *ud), void *ud);
/* After stop's done (or when the loop has run the closes). NULL is a no-op.
 * Called earlier (or without stop), it stops and leaves the memory to the
 * last close callback: the loop must run once more. */
void ps_kube_free(ps_kube *k);

#endif
