/*
 * podsel: does capture.pods select a pod (pure, no I/O).
 *
 * A pod is selected when its namespace is in capture.pods.namespaces (or
 * that list is empty), is not in capture.pods.excludeNamespaces, and its
 * labels match capture.pods.labelSelector. The selector has Kubernetes'
 * syntax (k8s.io/apimachinery labels.Parse): requirements separated by
 * commas, all of which must hold:
 *
 *   key=value  key==value  key!=value  key in (a,b)  key notin (a,b)
 *   key        !key
 *
 * with keys "[prefix/]name" (prefix a DNS subdomain <= 253, name <= 63 of
 * [A-Za-z0-9._-] starting and ending alphanumeric) and values the same
 * shape <= 63 or empty. "!=" and "notin" match a pod without the key, as in
 * Kubernetes. Whitespace around tokens is allowed. An empty selector
 * selects every pod.
 */
#ifndef PS_PODSEL_H
#define PS_PODSEL_H

#include <stddef.h>

#include "kube.h"

typedef struct ps_podsel ps_podsel;

/* Compiles a selection. Lists are copied. Returns 0, or -1 with a message
 * that quotes the selector and says where and why it is wrong ("label
 * selector \"app in (a\": ')' expected at 10"). */
int ps_podsel_new(ps_podsel **out, char *const *namespaces, size_t n_namespaces,
                  char *const *exclude, size_t n_exclude, const char *label_selector, char *err,
                  size_t errlen);
/* Validates a label selector alone (configuration checks). 0, or -1. */
int ps_podsel_check(const char *label_selector, char *err, size_t errlen);
/* 1 when the pod is selected, 0 when not. */
int ps_podsel_match(const ps_podsel *s, const ps_pod *pod);
/* 1 when every pod is selected (no namespace list, no exclusion, empty
 * selector). */
int ps_podsel_is_all(const ps_podsel *s);
void ps_podsel_free(ps_podsel *s);

#endif
