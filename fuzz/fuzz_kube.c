/*
 * fuzz_kube: one line of a Kubernetes watch stream (ps_kube_parse_event),
 * the bytes an API server, or whatever answers in its place, sends the
 * sensor. Whatever the input, a pod the parser accepts has a uid, a
 * namespace and a name within the limits, at most PS_KUBE_MAX_IPS addresses
 * and PS_KUBE_MAX_LABELS labels of the "key=value" form, and a
 * resourceVersion that fits its buffer; ps_pod_copy reproduces it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sensor/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const ps_pod *p)
{
    if (!p->uid || !p->uid[0] || !p->ns || !p->name || !p->phase)
        abort();
    if (strlen(p->ns) > PS_KUBE_MAX_NAME || strlen(p->name) > PS_KUBE_MAX_NAME)
        abort();
    if (p->n_ips < 0 || p->n_ips > PS_KUBE_MAX_IPS || p->n_labels < 0 ||
        p->n_labels > PS_KUBE_MAX_LABELS)
        abort();
    for (int i = 0; i < p->n_ips; i++)
        if (!p->ips[i] || strlen(p->ips[i]) > 45)
            abort();
    for (int i = 0; i < p->n_labels; i++)
        if (!p->labels[i] || strlen(p->labels[i]) > PS_KUBE_MAX_LABEL ||
            !strchr(p->labels[i], '=') || p->labels[i][0] == '=')
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    const char *type;
    ps_pod pod, copy;
    char rv[64], err[256];
    int code;
    int rc = ps_kube_parse_event((const char *)data, size, &type, &pod, rv, sizeof(rv), &code, err,
                                 sizeof(err));
    if (rc != 0) {
        if (rc != -1 || pod.uid || !err[0])
            abort();
        return 0;
    }
    if (!type || strnlen(rv, sizeof(rv)) == sizeof(rv))
        abort();
    if (strcmp(type, "ERROR") == 0) {
        if (code < 0 || code > 999 || pod.uid)
            abort();
        return 0;
    }
    if (!rv[0])
        abort();
    if (strcmp(type, "BOOKMARK") == 0) {
        if (pod.uid)
            abort();
        return 0;
    }
    check(&pod);
    if (ps_pod_copy(&copy, &pod) == 0) {
        check(&copy);
        if (strcmp(copy.uid, pod.uid) != 0 || copy.n_labels != pod.n_labels ||
            copy.n_ips != pod.n_ips)
            abort();
        ps_pod_clear(&copy);
    }
    ps_pod_clear(&pod);
    return 0;
}
