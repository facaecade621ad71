/*
 * podsel: capture.pods as a compiled predicate over pods.
 *
 * The label selector is parsed once, at start, into a list of requirements
 * (a hand-written recursive-descent parser over the small grammar of
 * k8s.io/apimachinery/pkg/labels: there is no C library for it, and the
 * grammar is a dozen lines). Matching is then a walk over a handful of
 * requirements and a pod's labels, cheap enough to redo on every pod event.
 *
 * Errors quote the selector and give the 0-based offset of the problem, so
 * a user can find it in a long selector; positions count bytes.
 */
#include "podsel.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define MAX_REQS 64
#define MAX_VALUES 64
#define MAX_KEY 317  /* prefix (253) '/' name (63) */
#define MAX_VALUE 63 /* label values */

typedef enum op { OP_IN, OP_NOTIN, OP_EXISTS, OP_NOT_EXISTS, OP_GT, OP_LT } op;

typedef struct req {
    char *key;
    op op;
    char **values; /* OP_IN, OP_NOTIN: the set; OP_GT, OP_LT: one integer */
    int n_values;
    int64_t num;
} req;

struct ps_podsel {
    char **ns;
    size_t n_ns;
    char **excl;
    size_t n_excl;
    req *reqs;
    int n_reqs;
};

/* ---- parsing ---- */

typedef struct parser {
    const char *sel; /* the whole selector, for messages */
    const char *p;
    char *err;
    size_t errlen;
} parser;

static int fail(parser *ps, const char *what)
{
    ps_errbuf(ps->err, ps->errlen, "label selector \"%s\": %s at %zu", ps->sel, what,
              (size_t)(ps->p - ps->sel));
    return -1;
}

static void skip_ws(parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t')
        ps->p++;
}

/* The characters a key or value token may hold; anything else ends it. */
static int token_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == '/';
}

/* [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])? of at most max bytes. */
static int valid_name(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return 0;
    if (!isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return 0;
    return 1;
}

/* A DNS subdomain: lowercase labels of [a-z0-9-] joined by dots. */
static int valid_prefix(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-'))
            return 0;
        if (label == 0 && c == '-')
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0 && s[len - 1] != '-';
}

static int valid_key(const char *s, size_t len)
{
    const char *slash = memchr(s, '/', len);
    if (!slash)
        return valid_name(s, len, 63);
    if (memchr(slash + 1, '/', len - (size_t)(slash + 1 - s)))
        return 0;
    return valid_prefix(s, (size_t)(slash - s)) &&
           valid_name(slash + 1, len - (size_t)(slash + 1 - s), 63);
}

static int valid_value(const char *s, size_t len)
{
    return len == 0 || valid_name(s, len, MAX_VALUE);
}

/* A key or value token: its start and length. */
static size_t token(parser *ps, const char **start)
{
    skip_ws(ps);
    *start = ps->p;
    while (token_char(*ps->p))
        ps->p++;
    return (size_t)(ps->p - *start);
}

static int add_value(parser *ps, req *r, const char *s, size_t len)
{
    if (!valid_value(s, len)) {
        ps->p = s;
        return fail(ps, "invalid label value (at most 63 of [A-Za-z0-9-_.], beginning and "
                        "ending alphanumeric)");
    }
    if (r->n_values == MAX_VALUES)
        return fail(ps, "more than 64 values in one set");
    if (!r->values && !(r->values = calloc(MAX_VALUES, sizeof(char *))))
        return fail(ps, "out of memory");
    if (!(r->values[r->n_values] = strndup(s, len)))
        return fail(ps, "out of memory");
    r->n_values++;
    return 0;
}

static int parse_set(parser *ps, req *r)
{
    skip_ws(ps);
    if (*ps->p != '(')
        return fail(ps, "'(' expected");
    ps->p++;
    for (;;) {
        const char *v;
        size_t len = token(ps, &v);
        if (add_value(ps, r, v, len) != 0)
            return -1;
        skip_ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == ')') {
            ps->p++;
            break;
        }
        return fail(ps, "',' or ')' expected");
    }
    if (r->n_values == 1 && r->values[0][0] == '\0')
        return fail(ps, "the set of values of 'in' and 'notin' cannot be empty");
    return 0;
}

static int parse_number(parser *ps, req *r)
{
    const char *v;
    size_t len = token(ps, &v);
    char buf[24];
    if (len == 0 || len >= sizeof(buf)) {
        ps->p = v;
        return fail(ps, "an integer expected after '>' or '<'");
    }
    memcpy(buf, v, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long n = strtoll(buf, &end, 10);
    if (errno || *end) {
        ps->p = v;
        return fail(ps, "an integer expected after '>' or '<'");
    }
    r->num = n;
    return 0;
}

/* One requirement: !key | key | key OP value | key [not]in (values). */
static int parse_req(parser *ps, req *r)
{
    skip_ws(ps);
    int negated = 0;
    if (*ps->p == '!') {
        negated = 1;
        ps->p++;
    }
    const char *k;
    size_t klen = token(ps, &k);
    if (klen == 0)
        return fail(ps, "a label key expected");
    if (!valid_key(k, klen)) {
        ps->p = k;
        return fail(ps, "invalid label key (a name of at most 63 of [A-Za-z0-9-_.], beginning "
                        "and ending alphanumeric, optionally prefixed by a DNS subdomain and '/')");
    }
    if (!(r->key = strndup(k, klen)))
        return fail(ps, "out of memory");
    skip_ws(ps);
    if (negated) {
        r->op = OP_NOT_EXISTS;
        if (*ps->p != ',' && *ps->p != '\0')
            return fail(ps, "',' or the end expected after '!key'");
        return 0;
    }
    const char *p = ps->p;
    if (*p == ',' || *p == '\0') {
        r->op = OP_EXISTS;
        return 0;
    }
    if (p[0] == '!' && p[1] == '=') {
        r->op = OP_NOTIN;
        ps->p += 2;
    } else if (p[0] == '=' && p[1] == '=') {
        r->op = OP_IN;
        ps->p += 2;
    } else if (p[0] == '=') {
        r->op = OP_IN;
        ps->p += 1;
    } else if (p[0] == '>' || p[0] == '<') {
        r->op = p[0] == '>' ? OP_GT : OP_LT;
        ps->p += 1;
        return parse_number(ps, r);
    } else {
        const char *w;
        size_t wlen = token(ps, &w);
        if (wlen == 2 && strncmp(w, "in", 2) == 0)
            r->op = OP_IN;
        else if (wlen == 5 && strncmp(w, "notin", 5) == 0)
            r->op = OP_NOTIN;
        else {
            ps->p = w;
            return fail(ps, "an operator expected (=, ==, !=, in, notin, >, <)");
        }
        return parse_set(ps, r);
    }
    const char *v;
    size_t vlen = token(ps, &v);
    return add_value(ps, r, v, vlen);
}

static void free_reqs(req *reqs, int n)
{
    for (int i = 0; i < n; i++) {
        free(reqs[i].key);
        for (int j = 0; j < reqs[i].n_values; j++)
            free(reqs[i].values[j]);
        free(reqs[i].values);
    }
    free(reqs);
}

static int parse_selector(const char *sel, req **out, int *n_out, char *err, size_t errlen)
{
    *out = NULL;
    *n_out = 0;
    parser ps = {sel, sel, err, errlen};
    skip_ws(&ps);
    if (*ps.p == '\0')
        return 0; /* empty: everything */
    req *reqs = calloc(MAX_REQS, sizeof(*reqs));
    if (!reqs) {
        ps_errbuf(err, errlen, "out of memory");
        return -1;
    }
    int n = 0;
    for (;;) {
        if (n == MAX_REQS) {
            fail(&ps, "more than 64 requirements");
            goto bad;
        }
        if (parse_req(&ps, &reqs[n++]) != 0)
            goto bad;
        skip_ws(&ps);
        if (*ps.p == '\0')
            break;
        if (*ps.p != ',') {
            fail(&ps, "',' or the end expected");
            goto bad;
        }
        ps.p++;
    }
    *out = reqs;
    *n_out = n;
    return 0;
bad:
    free_reqs(reqs, n);
    return -1;
}

int ps_podsel_check(const char *label_selector, char *err, size_t errlen)
{
    req *reqs;
    int n;
    if (!label_selector)
        return 0;
    if (parse_selector(label_selector, &reqs, &n, err, errlen) != 0)
        return -1;
    free_reqs(reqs, n);
    return 0;
}

static int copy_list(char ***dst, size_t *n_dst, char *const *src, size_t n)
{
    *n_dst = 0;
    if (n == 0)
        return 0;
    if (!(*dst = calloc(n, sizeof(char *))))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!((*dst)[i] = strdup(src[i])))
            return -1;
        (*n_dst)++;
    }
    return 0;
}

int ps_podsel_new(ps_podsel **out, char *const *namespaces, size_t n_namespaces,
                  char *const *exclude, size_t n_exclude, const char *label_selector, char *err,
                  size_t errlen)
{
    ps_podsel *s = calloc(1, sizeof(*s));
    if (!s || copy_list(&s->ns, &s->n_ns, namespaces, n_namespaces) != 0 ||
        copy_list(&s->excl, &s->n_excl, exclude, n_exclude) != 0) {
        ps_podsel_free(s);
        ps_errbuf(err, errlen, "out of memory");
        return -1;
    }
    if (label_selector && parse_selector(label_selector, &s->reqs, &s->n_reqs, err, errlen) != 0) {
        ps_podsel_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* ---- matching ---- */

static const char *label_of(const ps_pod *pod, const char *key)
{
    size_t klen = strlen(key);
    for (int i = 0; i < pod->n_labels; i++) {
        const char *l = pod->labels[i];
        if (l && strncmp(l, key, klen) == 0 && l[klen] == '=')
            return l + klen + 1;
    }
    return NULL;
}

static int in_set(const req *r, const char *v)
{
    for (int i = 0; i < r->n_values; i++)
        if (strcmp(r->values[i], v) == 0)
            return 1;
    return 0;
}

static int req_match(const req *r, const ps_pod *pod)
{
    const char *v = label_of(pod, r->key);
    switch (r->op) {
    case OP_IN:
        return v && in_set(r, v);
    case OP_NOTIN:
        return !v || !in_set(r, v);
    case OP_EXISTS:
        return v != NULL;
    case OP_NOT_EXISTS:
        return v == NULL;
    case OP_GT:
    case OP_LT: {
        if (!v || !*v)
            return 0;
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || *end)
            return 0;
        return r->op == OP_GT ? n > r->num : n < r->num;
    }
    }
    return 0;
}

static int listed(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

int ps_podsel_match(const ps_podsel *s, const ps_pod *pod)
{
    const char *ns = pod->ns ? pod->ns : "";
    if (s->n_ns && !listed(s->ns, s->n_ns, ns))
        return 0;
    if (listed(s->excl, s->n_excl, ns))
        return 0;
    for (int i = 0; i < s->n_reqs; i++)
        if (!req_match(&s->reqs[i], pod))
            return 0;
    return 1;
}

int ps_podsel_is_all(const ps_podsel *s)
{
    return s->n_ns == 0 && s->n_excl == 0 && s->n_reqs == 0;
}

void ps_podsel_free(ps_podsel *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_ns; i++)
        free(s->ns[i]);
    free(s->ns);
    for (size_t i = 0; i < s->n_excl; i++)
        free(s->excl[i]);
    free(s->excl);
    free_reqs(s->reqs, s->n_reqs);
    free(s);
}
