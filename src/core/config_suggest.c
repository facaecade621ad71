/*
 * config_suggest: the "did you mean" of an unknown key. A capture tool that
 * ignores "capturePort: [443]" captures the wrong traffic, so unknown keys
 * are errors, and the error names the nearest real key: a sibling at the
 * same level first, then the same leaf elsewhere, then the whole path.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"

/* ---- typo suggestions ---- */

#define LEV_MAX 128

/* Case-insensitive Levenshtein distance; LEV_MAX for over-long input. */
static size_t lev(const char *a, size_t la, const char *b, size_t lb)
{
    size_t row[LEV_MAX + 1];
    if (la >= LEV_MAX || lb >= LEV_MAX)
        return LEV_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static size_t lev_threshold(size_t len)
{
    return len / 3 > 2 ? len / 3 : 2;
}

/* Calls fn for every key and every section prefix of a key, as (text, len)
 * pairs into the key's name. Stops early when fn returns nonzero. */
typedef int (*cand_fn)(const char *cand, size_t len, void *arg);

static void for_each_candidate(cand_fn fn, void *arg)
{
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const char *name = cfg_keys[i].name;
        if (cfg_keys[i].type == K_UNSUPPORTED)
            continue;
        for (const char *p = name; (p = strchr(p, '.')) != NULL; p++)
            if (fn(name, (size_t)(p - name), arg))
                return;
        if (fn(name, strlen(name), arg))
            return;
    }
}

typedef struct suggest_state {
    const char *path;  /* the unknown path */
    size_t parent_len; /* length of its parent ("" at the root: 0) */
    const char *leaf;  /* its last segment */
    int pass;
    size_t best_d;
    const char *best;
    size_t best_len;
} suggest_state;

static size_t last_dot(const char *s, size_t len)
{
    for (size_t i = len; i > 0; i--)
        if (s[i - 1] == '.')
            return i - 1;
    return (size_t)-1;
}

static int suggest_cb(const char *cand, size_t len, void *arg)
{
    suggest_state *s = arg;
    size_t dot = last_dot(cand, len);
    size_t cparent = dot == (size_t)-1 ? 0 : dot;
    const char *cleaf = dot == (size_t)-1 ? cand : cand + dot + 1;
    size_t cleaf_len = len - (size_t)(cleaf - cand);
    size_t leaf_len = strlen(s->leaf);
    size_t d;

    switch (s->pass) {
    case 1: /* a sibling at the same level */
        if (cparent != s->parent_len || strncmp(cand, s->path, cparent) != 0)
            return 0;
        d = lev(s->leaf, leaf_len, cleaf, cleaf_len);
        if (d <= lev_threshold(leaf_len) && d < s->best_d)
            goto take;
        return 0;
    case 2: /* the same leaf name elsewhere ("port:" at the root) */
        if (len == strlen(cand) && cleaf_len == leaf_len &&
            strncasecmp(cleaf, s->leaf, leaf_len) == 0) {
            /* prefer a key under the same top-level section */
            size_t top = strcspn(s->path, ".");
            d = strncmp(cand, s->path, top) == 0 && cand[top] == '.' ? 0 : 1;
            if (d < s->best_d)
                goto take;
        }
        return 0;
    default: /* the whole path */
        d = lev(s->path, strlen(s->path), cand, len);
        if (d <= lev_threshold(strlen(s->path)) && d < s->best_d)
            goto take;
        return 0;
    }
take:
    s->best_d = d;
    s->best = cand;
    s->best_len = len;
    return 0;
}

static int is_parent_section(const char *path, size_t len)
{
    char parent[PATH_MAX_LEN];
    if (len >= sizeof(parent))
        return 0;
    memcpy(parent, path, len);
    parent[len] = '\0';
    return cfg_is_section(parent);
}

/* Writes " (did you mean 'x'?)" into out, or "" when nothing is close. */
static void suggest(const char *path, char *out, size_t outlen)
{
    suggest_state s = {.path = path, .best_d = (size_t)-1};
    size_t dot = last_dot(path, strlen(path));
    s.parent_len = dot == (size_t)-1 ? 0 : dot;
    s.leaf = dot == (size_t)-1 ? path : path + dot + 1;
    out[0] = '\0';
    /* Under a valid parent the leaf is what is wrong, so look at siblings
     * first; under an invalid one ("outptu.server.port" given as a flag or
     * a dotted key) the whole path is. */
    static const int by_leaf[] = {1, 2, 3}, by_path[] = {3, 1, 2};
    const int *order =
        s.parent_len == 0 || is_parent_section(path, s.parent_len) ? by_leaf : by_path;
    for (int i = 0; i < 3 && !s.best; i++) {
        s.pass = order[i];
        for_each_candidate(suggest_cb, &s);
    }
    if (s.best)
        snprintf(out, outlen, " (did you mean '%.*s'?)", (int)s.best_len, s.best);
}

int cfg_unknown_key(const errctx *e, const char *path)
{
    char hint[PATH_MAX_LEN + 32], shown[80];
    suggest(path, hint, sizeof(hint));
    return cfg_errf(e, "unknown key '%s'%s", cfg_show(path, shown, sizeof(shown)), hint);
}

int cfg_unsupported_key(const errctx *e, const char *path)
{
    char shown[80];
    return cfg_errf(e,
                    "%s is not supported by packetstreamer (the receiver writes capture "
                    "files under output.file.path; see docs/configuration.md)",
                    cfg_show(path, shown, sizeof(shown)));
}
