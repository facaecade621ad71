/*
 * pods: the pods of this node, the host interface of each, and the
 * selection. A small table keyed by pod UID, rebuilt cheaply (a node runs
 * at most a few hundred pods) whenever the API or the kernel says something
 * changed; ifaces.c is then told to look at its links again.
 */
#include "pods.h"

#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "podmap.h"
#include "podsel.h"

typedef struct pod_entry {
    ps_pod pod;
    int ifindex; /* host interface, 0 = not found (yet), or hostNetwork */
} pod_entry;

struct ps_pods {
    ps_pods_opts o;
    ps_kube *kube;
    ps_podmap *map;
    ps_podsel *sel;
    pod_entry *pods;
    size_t n, cap;
    int active;    /* a list was read: pods decide */
    int degraded;  /* the API failed before any list: interface rules decide */
    int connected; /* the API answers, now */
    int stopped;
    ps_series *m_connected, *m_known, *m_selected, *m_mapped, *m_skipped;
};

int ps_pods_wanted(const ps_config *cfg)
{
    if (cfg->kube_enabled == PS_KUBE_ENABLED_FALSE)
        return 0;
    if (cfg->kube_enabled == PS_KUBE_ENABLED_TRUE)
        return 1;
    return ps_kube_in_cluster(cfg->kube_token_file);
}

static pod_entry *find(ps_pods *p, const char *uid)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->pods[i].pod.uid, uid) == 0)
            return &p->pods[i];
    return NULL;
}

static int finished(const ps_pod *pod)
{
    return pod->phase &&
           (strcmp(pod->phase, "Succeeded") == 0 || strcmp(pod->phase, "Failed") == 0);
}

/* The host interface of a pod: the first of its addresses the kernel can
 * place (a dual-stack pod maps once). hostNetwork pods have none of their
 * own: their traffic is the node's. */
static int locate(const ps_pods *p, const ps_pod *pod)
{
    if (pod->host_network)
        return 0;
    /* A finished pod (a Job's) keeps its IP in the API after its sandbox is
     * gone, and the IP may already belong to a new pod. */
    if (finished(pod))
        return 0;
    for (int i = 0; i < pod->n_ips; i++) {
        int idx = ps_podmap_lookup(p->map, pod->ips[i]);
        if (idx > 0)
            return idx;
    }
    return 0;
}

static void publish(ps_pods *p)
{
    uint64_t selected = 0, mapped = 0;
    for (size_t i = 0; i < p->n; i++) {
        selected += ps_podsel_match(p->sel, &p->pods[i].pod) == 1;
        mapped += p->pods[i].ifindex > 0;
    }
    if (p->m_known)
        ps_series_set(p->m_known, (double)p->n);
    if (p->m_selected)
        ps_series_set(p->m_selected, (double)selected);
    if (p->m_mapped)
        ps_series_set(p->m_mapped, (double)mapped);
    if (p->m_skipped && p->map)
        ps_series_set_u64(p->m_skipped, (uint64_t)ps_podmap_skipped(p->map));
}

/* Places every pod again. Returns 1 when an answer changed. A pod keeps
 * its interface while that interface exists and nothing places the pod
 * elsewhere: on a bridge, the neighbour entry that placed it ages out when
 * the pod is idle, and an idle pod must not lose its capture for that. */
static int relocate(ps_pods *p)
{
    int changed = 0;
    for (size_t i = 0; i < p->n; i++) {
        int idx = locate(p, &p->pods[i].pod);
        char name[IF_NAMESIZE];
        if (idx == 0 && p->pods[i].ifindex > 0 && !p->pods[i].pod.host_network &&
            !finished(&p->pods[i].pod) && if_indextoname((unsigned)p->pods[i].ifindex, name))
            idx = p->pods[i].ifindex;
        if (idx != p->pods[i].ifindex) {
            pod_entry *e = &p->pods[i];
            if (idx > 0)
                ps_debug("sensor", "pod %s/%s is on interface #%d", e->pod.ns, e->pod.name, idx);
            e->ifindex = idx;
            changed = 1;
        }
    }
    return changed;
}

static void changed(ps_pods *p)
{
    publish(p);
    if (!p->stopped && p->active && p->o.on_change)
        p->o.on_change(p->o.ud);
}

static void on_pod(void *ud, ps_kube_event_type t, const ps_pod *pod)
{
    ps_pods *p = ud;
    if (p->stopped)
        return;
    if (t == PS_KUBE_SYNCED) {
        if (!p->active)
            ps_info("sensor", "kubernetes: %zu pods on this node; capturing by pod from now on",
                    p->n);
        p->active = 1;
        relocate(p);
        changed(p);
        return;
    }
    pod_entry *e = find(p, pod->uid);
    if (t == PS_KUBE_POD_DELETE) {
        if (!e)
            return;
        ps_debug("sensor", "pod %s/%s deleted", e->pod.ns, e->pod.name);
        ps_pod_clear(&e->pod);
        *e = p->pods[--p->n];
        changed(p);
        return;
    }
    if (!e) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 64;
            pod_entry *n = realloc(p->pods, cap * sizeof(*n));
            if (!n) {
                ps_error("sensor", "out of memory: pod %s/%s is not tracked", pod->ns, pod->name);
                return;
            }
            p->pods = n;
            p->cap = cap;
        }
        e = &p->pods[p->n];
        memset(e, 0, sizeof(*e));
        if (ps_pod_copy(&e->pod, pod) != 0) {
            ps_error("sensor", "out of memory: pod %s/%s is not tracked", pod->ns, pod->name);
            return;
        }
        p->n++;
    } else {
        ps_pod copy;
        memset(&copy, 0, sizeof(copy));
        if (ps_pod_copy(&copy, pod) != 0) {
            ps_error("sensor", "out of memory: update of pod %s/%s lost", pod->ns, pod->name);
            return;
        }
        ps_pod_clear(&e->pod);
        e->pod = copy;
    }
    relocate(p);
    changed(p);
}

static void on_state(void *ud, int connected, const char *message)
{
    ps_pods *p = ud;
    if (p->stopped)
        return;
    if (connected && !p->connected)
        ps_info("sensor", "kubernetes: connected to the API server");
    else if (!connected && p->active)
        ps_warn("sensor", "kubernetes: %s; keeping the %zu pods known, reconnecting", message,
                p->n);
    else if (!connected)
        ps_warn("sensor", "kubernetes: %s; capturing by interface rules until the API answers",
                message);
    p->connected = connected;
    if (p->m_connected)
        ps_series_set(p->m_connected, connected ? 1.0 : 0.0);
    if (!connected && !p->active && !p->degraded) {
        /* Until now pod interfaces waited for the first list; the API is
         * not answering, so the interface rules take over. */
        p->degraded = 1;
        if (p->o.on_change)
            p->o.on_change(p->o.ud);
    }
}

static void on_map_change(void *ud)
{
    ps_pods *p = ud;
    if (p->stopped)
        return;
    if (relocate(p))
        changed(p);
    else
        publish(p);
}

static void register_metrics(ps_pods *p)
{
    ps_metrics *m = p->o.metrics;
    if (!m)
        return;
    ps_metric *f =
        ps_metrics_family(m, PS_METRIC_GAUGE, "packetstreamer_sensor_kubernetes_connected",
                          "1 when the Kubernetes API answered the last list or watch, 0 "
                          "when it is unreachable or refuses",
                          NULL);
    p->m_connected = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
    f = ps_metrics_family(m, PS_METRIC_GAUGE, "packetstreamer_sensor_pods",
                          "Pods on this node known from the Kubernetes API, by state: known, "
                          "selected (by capture.pods), mapped (host interface found)",
                          "state");
    p->m_known = f ? ps_metric_series(f, "known", NULL, NULL) : NULL;
    p->m_selected = f ? ps_metric_series(f, "selected", NULL, NULL) : NULL;
    p->m_mapped = f ? ps_metric_series(f, "mapped", NULL, NULL) : NULL;
    f = ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_sensor_podmap_skipped_total",
                          "Kernel routes, neighbours and bridge entries not kept because the "
                          "pod map was full (sensor/podmap.h): pods behind them are not found",
                          NULL);
    p->m_skipped = f ? ps_metric_series(f, NULL, NULL, NULL) : NULL;
}

static const char *node_name(const ps_config *cfg)
{
    if (cfg->kube_node_name && cfg->kube_node_name[0])
        return cfg->kube_node_name;
    const char *env = getenv("NODE_NAME");
    return env && env[0] ? env : NULL;
}

int ps_pods_open(ps_pods **out, const ps_pods_opts *o, char *err, size_t errlen)
{
    const ps_config *c = o->cfg;
    const char *node = node_name(c);
    if (!node) {
        ps_errbuf(err, errlen,
                  "kubernetes: no node name: set kubernetes.nodeName or the NODE_NAME environment "
                  "variable (the chart sets it from the downward API, spec.nodeName)");
        return -1;
    }
    ps_pods *p = calloc(1, sizeof(*p));
    if (!p) {
        ps_errbuf(err, errlen, "out of memory");
        return -1;
    }
    p->o = *o;
    if (ps_podsel_new(&p->sel, c->pods_namespaces, (size_t)c->pods_namespaces_count,
                      c->pods_exclude_namespaces, (size_t)c->pods_exclude_namespaces_count,
                      c->pods_label_selector, err, errlen) != 0) {
        ps_pods_free(p);
        return -1;
    }
    register_metrics(p);
    if (p->m_connected)
        ps_series_set(p->m_connected, 0.0);
    if (ps_podmap_open(&p->map, o->loop, on_map_change, p, err, errlen) != 0) {
        ps_pods_free(p);
        return -1;
    }
    ps_kube_opts ko = {.loop = o->loop,
                       .api_server = c->kube_api_server,
                       .token_file = c->kube_token_file,
                       .ca_file = c->kube_ca_file,
                       .node_name = node,
                       .on_pod = on_pod,
                       .on_state = on_state,
                       .ud = p};
    if (ps_kube_open(&p->kube, &ko, err, errlen) != 0) {
        ps_pods_stop(p);
        ps_pods_free(p);
        return -1;
    }
    ps_info("sensor", "kubernetes: watching the pods of node %s", node);
    *out = p;
    return 0;
}

int ps_pods_active(const ps_pods *p)
{
    return p && p->active;
}

int ps_pods_pending(const ps_pods *p)
{
    return p && !p->active && !p->degraded;
}

const ps_pod *ps_pods_owner(const ps_pods *p, int ifindex)
{
    if (!p || ifindex <= 0)
        return NULL;
    for (size_t i = 0; i < p->n; i++)
        if (p->pods[i].ifindex == ifindex)
            return &p->pods[i].pod;
    return NULL;
}

int ps_pods_wants(const ps_pods *p, const ps_pod *pod)
{
    return ps_podsel_match(p->sel, pod) == 1;
}

int ps_pods_selects_all(const ps_pods *p)
{
    return ps_podsel_is_all(p->sel);
}

/* Orders "key=value" strings by key (a key never holds '='). */
static int by_key(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t lx = strcspn(x, "="), ly = strcspn(y, "=");
    int c = memcmp(x, y, lx < ly ? lx : ly);
    return c ? c : (lx > ly) - (lx < ly);
}

int ps_pods_describe(const ps_pod *pod, const char *ifname, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "iface=%s uid=%s labels=", ifname, pod->uid);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    size_t off = (size_t)n;
    const char *sorted[PS_KUBE_MAX_LABELS];
    int nl = pod->n_labels < PS_KUBE_MAX_LABELS ? pod->n_labels : PS_KUBE_MAX_LABELS;
    for (int i = 0; i < nl; i++)
        sorted[i] = pod->labels[i];
    qsort(sorted, (size_t)nl, sizeof(sorted[0]), by_key);
    for (int i = 0; i < nl; i++) {
        n = snprintf(out + off, outlen - off, "%s%s", i ? "," : "", sorted[i]);
        if (n < 0 || (size_t)n >= outlen - off) {
            out[off] = '\0'; /* the labels that fit, whole */
            return 0;
        }
        off += (size_t)n;
    }
    return 0;
}

static void noop_done(void *ud)
{
    (void)ud;
}

void ps_pods_stop(ps_pods *p)
{
    if (!p || p->stopped)
        return;
    p->stopped = 1;
    if (p->kube)
        ps_kube_stop(p->kube, noop_done, NULL);
    if (p->map)
        ps_podmap_stop(p->map, noop_done, NULL);
}

void ps_pods_free(ps_pods *p)
{
    if (!p)
        return;
    ps_kube_free(p->kube);
    ps_podmap_free(p->map);
    ps_podsel_free(p->sel);
    for (size_t i = 0; i < p->n; i++)
        ps_pod_clear(&p->pods[i].pod);
    free(p->pods);
    free(p);
}
