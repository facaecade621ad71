/*
 * pods: which pod owns which host interface, and whether it is selected.
 *
 * Joins the Kubernetes API's view of this node's pods (kube.h) with the
 * kernel's view of where their addresses live (podmap.h) and the user's
 * selection (podsel.h, capture.pods.*). ifaces.c asks, for a link, who owns
 * it (ps_pods_owner) and whether that pod is wanted (ps_pods_wants); it is
 * told through on_change whenever an answer may have changed, and then asks
 * again for every link it knows.
 *
 * Degraded modes: until the first pod list has been read, pod interfaces
 * wait (ps_pods_pending); if the API fails first (unreachable, refusing),
 * ps_pods_active() stays 0 and capture follows the interface rules alone,
 * as without Kubernetes, until a list is read. Once active, it stays active while
 * the API is lost: the pods last known keep their interfaces, and the
 * watch reconnects with backoff. packetstreamer_sensor_kubernetes_connected
 * says which it is.
 */
#ifndef PS_PODS_H
#define PS_PODS_H

#include <uv.h>

#include "core/config.h"
#include "core/metrics.h"
#include "kube.h"

typedef struct ps_pods ps_pods;

typedef struct ps_pods_opts {
    uv_loop_t *loop;
    const ps_config *cfg;
    ps_metrics *metrics; /* may be NULL */
    void (*on_change)(void *ud);
    void *ud;
} ps_pods_opts;

/* Whether cfg asks for Kubernetes (kubernetes.enabled true, or auto and in
 * a cluster). */
int ps_pods_wanted(const ps_config *cfg);
/* Starts the API watch and the address map. 0, or -1 with err (a bad
 * selector, no node name, no netlink socket). */
int ps_pods_open(ps_pods **out, const ps_pods_opts *o, char *err, size_t errlen);
/* 1 once the pod list has been read: pods decide for their interfaces. */
int ps_pods_active(const ps_pods *p);
/* 1 from open until the first list is read or the first attempt fails:
 * pod interfaces wait (capturing them by interface rules for the moment a
 * list takes would capture pods the selection leaves out). on_change runs
 * when this ends either way. 0 for NULL. */
int ps_pods_pending(const ps_pods *p);
/* The pod whose traffic crosses host interface ifindex, or NULL. */
const ps_pod *ps_pods_owner(const ps_pods *p, int ifindex);
/* 1 when capture.pods.* selects pod. */
int ps_pods_wants(const ps_pods *p, const ps_pod *pod);
/* 1 when capture.pods.* selects every pod (no namespace list, no exclusion,
 * no label selector): then an interface of unknown owner is captured too. */
int ps_pods_selects_all(const ps_pods *p);
/* The pcapng interface description of a pod seen on ifname (docs/protocol.md,
 * "Pod interfaces"): "iface=IFNAME uid=UID labels=k=v,k=v", with as many
 * whole labels as fit in outlen. 0, or -1 when not even the UID fits. */
int ps_pods_describe(const ps_pod *pod, const char *ifname, char *out, size_t outlen);
/* Stops the watch; handles close on the loop (no callback after this). */
void ps_pods_stop(ps_pods *p);
void ps_pods_free(ps_pods *p);

#endif
