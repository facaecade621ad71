/*
 * config_yaml: loads a YAML file into a ps_config, key by key.
 *
 * The YAML is read with libyaml's event API rather than the document API
 * because events keep the line of every key and value, and because an alias
 * arrives as its own event: we reject it on sight, which makes
 * "billion laughs" style expansion impossible instead of merely bounded.
 *
 * Errors are strict on purpose: an unknown key, a duplicate key or a value
 * of the wrong type fails loudly with FILE:LINE, the key's full path and,
 * for typos, the nearest valid key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config_int.h"

/* A config file is a few KiB; the cap keeps a wrong --config (a pcap, a
 * device) from being slurped whole. */
#define FILE_MAX (1024 * 1024)

/* ---- YAML ---- */

typedef struct seen_key {
    char *path;
    int line;
} seen_key;

typedef struct loader {
    yaml_parser_t parser;
    ps_config *c;
    const char *name;
    const char *text;
    size_t len;
    char *err;
    size_t errlen;
    seen_key *seen;
    size_t nseen, capseen;
} loader;

static errctx ectx(const loader *L, int line)
{
    errctx e = {L->err, L->errlen, L->name, line};
    return e;
}

static int ev_line(const yaml_event_t *ev)
{
    return (int)ev->start_mark.line + 1;
}

static int syntax_error(loader *L)
{
    const yaml_parser_t *p = &L->parser;
    errctx e = ectx(L, (int)p->problem_mark.line + 1);

    if (p->error == YAML_MEMORY_ERROR)
        return cfg_errf(&e, "out of memory");
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors (bad encoding) carry a byte offset, not a mark. */
        int line = 1;
        for (size_t i = 0; i < p->problem_offset && i < L->len; i++)
            line += L->text[i] == '\n';
        e.line = line;
        return cfg_errf(&e, "YAML syntax error: %s", p->problem ? p->problem : "unreadable input");
    }
    /* libyaml's message for a tab is cryptic; it is the usual mistake. */
    size_t at = p->problem_mark.index;
    const char *tab =
        at < L->len && L->text[at] == '\t' ? "; YAML does not allow tabs for indentation" : "";
    if (p->context)
        return cfg_errf(&e, "YAML syntax error: %s (%s at line %d)%s",
                        p->problem ? p->problem : "invalid YAML", p->context,
                        (int)p->context_mark.line + 1, tab);
    return cfg_errf(&e, "YAML syntax error: %s%s", p->problem ? p->problem : "invalid YAML", tab);
}

/* The next event; aliases are refused here, once, for the whole walk. */
static int next_event(loader *L, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&L->parser, ev))
        return syntax_error(L);
    if (ev->type == YAML_ALIAS_EVENT) {
        char shown[80];
        errctx e = ectx(L, ev_line(ev));
        cfg_errf(&e, "YAML aliases (*%s) are not supported; write the value out",
                 cfg_show((const char *)ev->data.alias.anchor, shown, sizeof(shown)));
        yaml_event_delete(ev);
        return -1;
    }
    return 0;
}

static const char *scalar(const yaml_event_t *ev)
{
    return (const char *)ev->data.scalar.value;
}

/* "key:" with nothing after it, "~" or "null": the key keeps its value. */
static int is_null(const yaml_event_t *ev)
{
    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = scalar(ev);
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static int has_nul(const yaml_event_t *ev)
{
    return strlen(scalar(ev)) != ev->data.scalar.length;
}

static const char *got_desc(const yaml_event_t *ev)
{
    return ev->type == YAML_SEQUENCE_START_EVENT ? "a list" : "a mapping";
}

/* Records that path was set at line; a second time is an error naming both. */
static int seen_check(loader *L, const char *path, int line)
{
    errctx e = ectx(L, line);
    char shown[80];
    for (size_t i = 0; i < L->nseen; i++)
        if (strcmp(L->seen[i].path, path) == 0)
            return cfg_errf(&e, "duplicate key '%s' (first set at line %d)",
                            cfg_show(path, shown, sizeof(shown)), L->seen[i].line);
    if (L->nseen == L->capseen) {
        size_t cap = L->capseen ? L->capseen * 2 : 32;
        seen_key *s = realloc(L->seen, cap * sizeof(*s));
        if (!s)
            return cfg_errf(&e, "out of memory");
        L->seen = s;
        L->capseen = cap;
    }
    L->seen[L->nseen].path = strdup(path);
    if (!L->seen[L->nseen].path)
        return cfg_errf(&e, "out of memory");
    L->seen[L->nseen++].line = line;
    return 0;
}

static int scalar_value(loader *L, const key_def *k, const yaml_event_t *ev, const char **out)
{
    errctx e = ectx(L, ev_line(ev));
    if (has_nul(ev))
        return cfg_errf(&e, "key '%s': the value contains a NUL character", k->name);
    *out = scalar(ev);
    return 0;
}

/* A YAML sequence for a list key; the SEQUENCE_START is consumed. */
static int parse_list(loader *L, const key_def *k, ps_port_list *ports)
{
    char *tmp[PS_CONFIG_MAX_INTERFACES] = {0};
    int n = 0, r = 0;
    ps_port_list l = {{0}, 0};

    for (;;) {
        yaml_event_t ev;
        const char *v = "";
        if (next_event(L, &ev)) {
            r = -1;
            break;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        errctx e = ectx(L, ev_line(&ev));
        if (ev.type != YAML_SCALAR_EVENT)
            r = cfg_errf(&e, "key '%s': list entries must be single values, got %s", k->name,
                         got_desc(&ev));
        else if (is_null(&ev))
            r = cfg_errf(&e, "key '%s': empty list entry", k->name);
        else if (scalar_value(L, k, &ev, &v))
            r = -1;
        else if (ports)
            r = cfg_ports_add(&l, k, v, &e);
        else
            r = cfg_strlist_add(tmp, &n, k, v, &e);
        yaml_event_delete(&ev);
        if (r)
            break;
    }
    if (r) {
        cfg_strlist_clear(tmp, &n);
        return -1;
    }
    if (ports) {
        *ports = l;
    } else {
        char **items = cfg_field(L->c, k);
        int *count = cfg_strlist_count(L->c, k);
        cfg_strlist_clear(items, count);
        memcpy(items, tmp, sizeof(tmp[0]) * (size_t)n);
        *count = n;
    }
    return 0;
}

/* captureInterfacesPorts as a mapping; the MAPPING_START is consumed. */
static int parse_ifports(loader *L, const key_def *k)
{
    char path[PATH_MAX_LEN];
    cfg_ifports_clear(L->c);
    for (;;) {
        yaml_event_t kev, vev;
        if (next_event(L, &kev))
            return -1;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return 0;
        }
        errctx e = ectx(L, ev_line(&kev));
        if (kev.type != YAML_SCALAR_EVENT || has_nul(&kev)) {
            yaml_event_delete(&kev);
            return cfg_errf(&e, "key '%s': interface names must be plain strings", k->name);
        }
        /* Checked before the path is built, which bounds its length. */
        if (cfg_check_name(k, scalar(&kev), "an interface name", &e)) {
            yaml_event_delete(&kev);
            return -1;
        }
        snprintf(path, sizeof(path), "%s.%s", k->name, scalar(&kev));
        ps_iface_ports *ip = NULL;
        int r = seen_check(L, path, e.line);
        if (!r) {
            ip = cfg_ifports_add(L->c, k, scalar(&kev), &e);
            r = ip ? 0 : -1;
        }
        yaml_event_delete(&kev);
        if (r || next_event(L, &vev))
            return -1;
        e.line = ev_line(&vev);
        const char *v = "";
        if (is_null(&vev)) /* no ports: the whole interface */
            r = 0;
        else if (vev.type == YAML_SEQUENCE_START_EVENT)
            r = parse_list(L, k, &ip->ports);
        else if (vev.type == YAML_SCALAR_EVENT)
            r = scalar_value(L, k, &vev, &v) ? -1 : cfg_ports_from_string(&ip->ports, k, v, &e);
        else
            r = cfg_errf(&e, "key '%s': expected a list of ports for '%s', got a mapping", k->name,
                         ip->iface);
        yaml_event_delete(&vev);
        if (r)
            return -1;
    }
}

static int parse_mapping(loader *L, const char *prefix);

/* The value of leaf key k; ev is its first event, deleted here. */
static int parse_value(loader *L, const key_def *k, yaml_event_t *ev)
{
    errctx e = ectx(L, ev_line(ev));
    const char *v = "";
    char list[128];
    int r;

    if (ev->type == YAML_SCALAR_EVENT) {
        r = is_null(ev) ? 0 : scalar_value(L, k, ev, &v) ? -1 : cfg_set_from_string(L->c, k, v, &e);
    } else if (ev->type == YAML_SEQUENCE_START_EVENT && k->type == K_PORTS) {
        r = parse_list(L, k, cfg_field(L->c, k));
    } else if (ev->type == YAML_SEQUENCE_START_EVENT && k->type == K_STRLIST) {
        r = parse_list(L, k, NULL);
    } else if (ev->type == YAML_MAPPING_START_EVENT && k->type == K_IFPORTS) {
        r = parse_ifports(L, k);
    } else if (k->type == K_ENUM) {
        cfg_enum_list(k->e, list, sizeof(list));
        r = cfg_errf(&e, "key '%s': expected one of %s, got %s", k->name, list, got_desc(ev));
    } else {
        r = cfg_errf(&e, "key '%s': expected %s, got %s", k->name, cfg_type_desc(k), got_desc(ev));
    }
    yaml_event_delete(ev);
    return r;
}

/* output.plugins: name the first key below it, which is what the user
 * actually tried to configure ("output.plugins.s3"). */
static int parse_unsupported(loader *L, const key_def *k, const char *path, int line)
{
    char full[PATH_MAX_LEN];
    yaml_event_t ev, kev;
    errctx e = ectx(L, line);

    if (strlen(path) > strlen(k->name))
        return cfg_unsupported_key(&e, path);
    if (next_event(L, &ev))
        return -1;
    int null = is_null(&ev), map = ev.type == YAML_MAPPING_START_EVENT;
    yaml_event_delete(&ev);
    if (null)
        return 0;
    if (!map)
        return cfg_unsupported_key(&e, path);
    if (next_event(L, &kev))
        return -1;
    if (kev.type == YAML_MAPPING_END_EVENT) { /* "plugins: {}" */
        yaml_event_delete(&kev);
        return 0;
    }
    if (kev.type == YAML_SCALAR_EVENT) {
        int n = snprintf(full, sizeof(full), "%s.%s", path, scalar(&kev));
        e.line = ev_line(&kev);
        if (n > 0 && (size_t)n < sizeof(full))
            path = full;
    }
    yaml_event_delete(&kev);
    return cfg_unsupported_key(&e, path);
}

static int parse_key(loader *L, const char *path, int line)
{
    errctx e = ectx(L, line);
    const key_def *k;
    yaml_event_t ev;

    if ((k = cfg_find_unsupported(path)) != NULL)
        return parse_unsupported(L, k, path, line);
    if ((k = cfg_find_key(path)) != NULL) {
        if (seen_check(L, k->name, line) || next_event(L, &ev))
            return -1;
        return parse_value(L, k, &ev);
    }
    if (!cfg_is_section(path))
        return cfg_unknown_key(&e, path);
    if (seen_check(L, path, line) || next_event(L, &ev))
        return -1;
    if (ev.type == YAML_MAPPING_START_EVENT) {
        yaml_event_delete(&ev);
        return parse_mapping(L, path);
    }
    int r = 0;
    if (!is_null(&ev)) {
        char shown[80];
        e.line = ev_line(&ev);
        if (ev.type == YAML_SCALAR_EVENT)
            r = cfg_errf(&e, "key '%s': expected a mapping of keys, got '%s'", path,
                         cfg_show(scalar(&ev), shown, sizeof(shown)));
        else
            r = cfg_errf(&e, "key '%s': expected a mapping of keys, got %s", path, got_desc(&ev));
    }
    yaml_event_delete(&ev);
    return r;
}

/* Keys of a mapping whose MAPPING_START is consumed. Dotted keys
 * ("output.server.port: 1") are accepted as the path they spell. */
static int parse_mapping(loader *L, const char *prefix)
{
    char path[PATH_MAX_LEN];
    for (;;) {
        yaml_event_t ev;
        if (next_event(L, &ev))
            return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        int line = ev_line(&ev);
        errctx e = ectx(L, line);
        if (ev.type != YAML_SCALAR_EVENT || has_nul(&ev)) {
            yaml_event_delete(&ev);
            return cfg_errf(&e, "keys must be plain strings");
        }
        int n = prefix ? snprintf(path, sizeof(path), "%s.%s", prefix, scalar(&ev))
                       : snprintf(path, sizeof(path), "%s", scalar(&ev));
        yaml_event_delete(&ev);
        if (n < 0 || (size_t)n >= sizeof(path))
            return cfg_unknown_key(&e, path);
        if (parse_key(L, path, line))
            return -1;
    }
}

static int parse_stream(loader *L)
{
    yaml_event_t ev;
    int docs = 0;

    if (next_event(L, &ev))
        return -1;
    yaml_event_delete(&ev); /* STREAM_START */
    for (;;) {
        if (next_event(L, &ev))
            return -1;
        yaml_event_type_t type = ev.type;
        errctx e = ectx(L, ev_line(&ev));
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            return 0;
        if (type != YAML_DOCUMENT_START_EVENT)
            return cfg_errf(&e, "YAML syntax error: expected a document");
        if (docs++)
            return cfg_errf(&e, "more than one YAML document; put every key in one document");
        if (next_event(L, &ev))
            return -1;
        e.line = ev_line(&ev);
        if (ev.type == YAML_MAPPING_START_EVENT) {
            yaml_event_delete(&ev);
            if (parse_mapping(L, NULL))
                return -1;
        } else {
            int null = is_null(&ev);
            yaml_event_delete(&ev);
            if (!null) /* an empty document is all defaults */
                return cfg_errf(&e, "the top level must be a mapping of keys (like 'input:')");
        }
        if (next_event(L, &ev)) /* DOCUMENT_END */
            return -1;
        yaml_event_delete(&ev);
    }
}

/* Reads the whole stream once for syntax alone, so that a file that is not
 * YAML reports that, rather than a key error the walk met before the
 * broken line. Config files are small; two passes cost nothing. */
static int check_syntax(loader *L)
{
    yaml_event_t ev;
    for (;;) {
        if (!yaml_parser_parse(&L->parser, &ev))
            return syntax_error(L);
        int end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (end)
            return 0;
    }
}

static int run_parser(loader *L, int (*fn)(loader *L))
{
    if (!yaml_parser_initialize(&L->parser)) {
        errctx e = ectx(L, 0);
        return cfg_errf(&e, "out of memory");
    }
    yaml_parser_set_input_string(&L->parser, (const unsigned char *)L->text, L->len);
    int r = fn(L);
    yaml_parser_delete(&L->parser);
    return r;
}

int ps_config_load_string(ps_config *c, const char *yaml, size_t len, const char *name, char *err,
                          size_t errlen)
{
    loader L = {.c = c, .name = name ? name : "config", .text = yaml ? yaml : "", .err = err};
    L.len = yaml ? len : 0;
    L.errlen = errlen;
    if (err && errlen)
        err[0] = '\0';
    int r = run_parser(&L, check_syntax);
    if (r == 0)
        r = run_parser(&L, parse_stream);
    for (size_t i = 0; i < L.nseen; i++)
        free(L.seen[i].path);
    free(L.seen);
    return r;
}

int ps_config_load_file(ps_config *c, const char *path, char *err, size_t errlen)
{
    errctx e = {err, errlen, path, 0};
    size_t len = 0, cap = 4096;
    char *buf;
    FILE *f;

    if (err && errlen)
        err[0] = '\0';
    if (!path)
        return cfg_errf(&e, "no config file name");
    f = fopen(path, "rb");
    if (!f)
        return cfg_errf(&e, "cannot open config file: %s", strerror(errno));
    buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return cfg_errf(&e, "out of memory");
    }
    for (;;) {
        if (len == cap) {
            if (cap > FILE_MAX) {
                free(buf);
                fclose(f);
                return cfg_errf(&e, "config file is larger than %d bytes", FILE_MAX);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return cfg_errf(&e, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        int saved = errno;
        free(buf);
        fclose(f);
        return cfg_errf(&e, "cannot read config file: %s", strerror(saved));
    }
    fclose(f);
    if (len > FILE_MAX) {
        free(buf);
        return cfg_errf(&e, "config file is larger than %d bytes", FILE_MAX);
    }
    int r = ps_config_load_string(c, buf, len, path, err, errlen);
    free(buf);
    return r;
}
