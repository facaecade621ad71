/*
 * config_value: one value from its string form into its ps_config field,
 * checked against its key's type and range. YAML scalars, flags,
 * environment variables and the table's defaults all come through
 * cfg_set_from_string(), so a value means the same wherever it is written.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"

#define PORT_MIN 1
#define PORT_MAX 65535

/* ---- errors ---- */

int cfg_errf(const errctx *e, const char *fmt, ...)
{
    if (!e->err || e->errlen == 0)
        return -1;
    const char *name = e->name ? e->name : "config";
    int n = e->line > 0 ? snprintf(e->err, e->errlen, "%s:%d: ", name, e->line)
                        : snprintf(e->err, e->errlen, "%s: ", name);
    if (n < 0 || (size_t)n >= e->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err + n, e->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* A value as shown in a message: bounded and without control characters,
 * so a hostile or binary value cannot forge lines in a log or terminal. */
const char *cfg_show(const char *v, char *buf, size_t buflen)
{
    size_t i, n = strlen(v), lim = buflen - 4;
    for (i = 0; i < n && i < lim; i++) {
        unsigned char ch = (unsigned char)v[i];
        buf[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (i < n)
        memcpy(buf + i, "...", 3), i += 3;
    buf[i] = '\0';
    return buf;
}

/* ---- value parsing ---- */

static void store_uint(void *field, size_t size, uint64_t v)
{
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;
    switch (size) {
    case 1:
        memcpy(field, &u8, 1);
        break;
    case 2:
        memcpy(field, &u16, 2);
        break;
    case 4:
        memcpy(field, &u32, 4);
        break;
    default:
        memcpy(field, &v, sizeof(v));
        break;
    }
}

void *cfg_field(ps_config *c, const key_def *k)
{
    return (char *)c + k->off;
}

/* Copies s without leading and trailing blanks into buf (bounded). */
static const char *trim(const char *s, char *buf, size_t buflen)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n >= buflen)
        n = buflen - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return buf;
}

enum { INT_OK = 0, INT_JUNK = -1, INT_RANGE = -2 };

/* Decimal only: YAML 1.1's octal, hex and "1_000" forms are errors, not
 * surprises. Negative and overflowing values are range errors. Blanks
 * around the number are allowed (env values, "80, 443"). */
static int parse_uint(const char *s, uint64_t *out)
{
    int neg = 0, over = 0;
    uint64_t v = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    if (!isdigit((unsigned char)*s))
        return INT_JUNK;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned dgt = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - dgt) / 10)
            over = 1;
        else
            v = v * 10 + dgt;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s)
        return INT_JUNK;
    if ((neg && v != 0) || over)
        return INT_RANGE;
    *out = v;
    return INT_OK;
}

static int parse_int_value(const key_def *k, const char *v, uint64_t min, uint64_t max,
                           const char *what, uint64_t *out, const errctx *e)
{
    char shown[80];
    int r = parse_uint(v, out);
    if (r == INT_JUNK)
        return cfg_errf(e, "key '%s': expected %s, got '%s'", k->name, what,
                        cfg_show(v, shown, sizeof(shown)));
    if (r == INT_RANGE || *out < min || *out > max)
        return cfg_errf(e, "key '%s': %s is out of range %" PRIu64 "..%" PRIu64, k->name,
                        cfg_show(v, shown, sizeof(shown)), min, max);
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"true", "yes", "on", "1"};
    static const char *const f[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, f[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

void cfg_enum_list(const enum_def *ed, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (int v = 0; v < ed->count && n < outlen; v++) {
        const char *name = ed->name(v);
        int w = snprintf(out + n, outlen - n, "%s%s", v ? ", " : "", name ? name : "?");
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

int cfg_check_name(const key_def *k, const char *v, const char *what, const errctx *e)
{
    char shown[80];
    size_t n = strlen(v);
    if (n < k->min || (k->max && n > k->max))
        return cfg_errf(e, "key '%s': %s must be %" PRIu64 "..%" PRIu64 " characters long, got %zu",
                        k->name, what, k->min, k->max, n);
    for (const char *p = v; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (k->flags & KF_ID) {
            if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
                return cfg_errf(e,
                                "key '%s': '%s' may only contain letters, digits, '.', '_' "
                                "and '-'",
                                k->name, cfg_show(v, shown, sizeof(shown)));
        } else if (k->flags & KF_IFNAME) {
            if (ch <= ' ' || ch == 0x7f || strchr("/,;=", ch))
                return cfg_errf(e,
                                "key '%s': '%s' is not a valid interface name (no blanks, "
                                "'/', ',', ';' or '=')",
                                k->name, cfg_show(v, shown, sizeof(shown)));
        }
    }
    /* The id names files and directories on the receiver. */
    if ((k->flags & KF_ID) && v[0] == '.')
        return cfg_errf(e, "key '%s': '%s' must not start with '.'", k->name,
                        cfg_show(v, shown, sizeof(shown)));
    return 0;
}

static int set_string(ps_config *c, const key_def *k, const char *v, const errctx *e)
{
    char **slot = cfg_field(c, k);
    char *copy = NULL;

    if (k->flags) {
        if (cfg_check_name(k, v, "the value", e))
            return -1;
    } else if (strlen(v) < k->min) {
        return cfg_errf(e, "key '%s': must not be empty", k->name);
    }
    /* An empty string unsets an optional key, so "" in a file or an empty
     * flag can clear a value set by an earlier layer. */
    if (v[0]) {
        copy = strdup(v);
        if (!copy)
            return cfg_errf(e, "key '%s': out of memory", k->name);
    }
    free(*slot);
    *slot = copy;
    return 0;
}

int cfg_ports_add(ps_port_list *l, const key_def *k, const char *item, const errctx *e)
{
    uint64_t v;
    if (parse_int_value(k, item, PORT_MIN, PORT_MAX, "a port number", &v, e))
        return -1;
    if (l->count >= PS_CONFIG_MAX_PORTS)
        return cfg_errf(e, "key '%s': more than %d ports", k->name, PS_CONFIG_MAX_PORTS);
    l->ports[l->count++] = (uint16_t)v;
    return 0;
}

static int is_blank(const char *s)
{
    return s[strspn(s, " \t")] == '\0';
}

/* Comma-separated ports; empty items are skipped so "80,443," is fine. */
int cfg_ports_from_string(ps_port_list *l, const key_def *k, const char *s, const errctx *e)
{
    l->count = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        char *item = strndup(s, len);
        if (!item)
            return cfg_errf(e, "key '%s': out of memory", k->name);
        int r = is_blank(item) ? 0 : cfg_ports_add(l, k, item, e);
        free(item);
        if (r)
            return -1;
        s += len;
        if (*s == ',')
            s++;
    }
    return 0;
}

void cfg_strlist_clear(char **items, int *count)
{
    for (int i = 0; i < *count; i++) {
        free(items[i]);
        items[i] = NULL;
    }
    *count = 0;
}

int cfg_strlist_add(char **items, int *count, const key_def *k, const char *v, const errctx *e)
{
    if (cfg_check_name(k, v, "an entry", e))
        return -1;
    if (*count >= PS_CONFIG_MAX_INTERFACES)
        return cfg_errf(e, "key '%s': more than %d entries", k->name, PS_CONFIG_MAX_INTERFACES);
    items[*count] = strdup(v);
    if (!items[*count])
        return cfg_errf(e, "key '%s': out of memory", k->name);
    (*count)++;
    return 0;
}

int *cfg_strlist_count(ps_config *c, const key_def *k)
{
    return (int *)(void *)((char *)c + k->count_off);
}

/* Replaces the list only once every entry parsed, so a bad flag leaves the
 * previous layer's list intact. */
static int strlist_from_string(ps_config *c, const key_def *k, const char *s, const errctx *e)
{
    char *tmp[PS_CONFIG_MAX_INTERFACES] = {0};
    int n = 0;
    char **items = cfg_field(c, k);
    int *count = cfg_strlist_count(c, k);

    while (*s) {
        size_t len = strcspn(s, ",");
        char *raw = strndup(s, len);
        if (!raw) {
            cfg_strlist_clear(tmp, &n);
            return cfg_errf(e, "key '%s': out of memory", k->name);
        }
        char *item = raw;
        while (*item == ' ' || *item == '\t')
            item++;
        char *end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        int r = *item ? cfg_strlist_add(tmp, &n, k, item, e) : 0;
        free(raw);
        if (r) {
            cfg_strlist_clear(tmp, &n);
            return -1;
        }
        s += len;
        if (*s == ',')
            s++;
    }
    cfg_strlist_clear(items, count);
    memcpy(items, tmp, sizeof(tmp[0]) * (size_t)n);
    *count = n;
    return 0;
}

void cfg_ifports_clear(ps_config *c)
{
    for (int i = 0; i < c->iface_ports_count; i++) {
        free(c->iface_ports[i].iface);
        c->iface_ports[i].iface = NULL;
        c->iface_ports[i].ports.count = 0;
    }
    c->iface_ports_count = 0;
}

/* Adds an interface with no ports yet; returns its entry or NULL. */
ps_iface_ports *cfg_ifports_add(ps_config *c, const key_def *k, const char *iface, const errctx *e)
{
    char shown[80];
    if (cfg_check_name(k, iface, "an interface name", e))
        return NULL;
    for (int i = 0; i < c->iface_ports_count; i++) {
        if (strcmp(c->iface_ports[i].iface, iface) == 0) {
            cfg_errf(e, "key '%s': interface '%s' is listed twice", k->name,
                     cfg_show(iface, shown, sizeof(shown)));
            return NULL;
        }
    }
    if (c->iface_ports_count >= PS_CONFIG_MAX_IFACE_PORTS) {
        cfg_errf(e, "key '%s': more than %d interfaces", k->name, PS_CONFIG_MAX_IFACE_PORTS);
        return NULL;
    }
    ps_iface_ports *ip = &c->iface_ports[c->iface_ports_count];
    ip->iface = strdup(iface);
    if (!ip->iface) {
        cfg_errf(e, "key '%s': out of memory", k->name);
        return NULL;
    }
    ip->ports.count = 0;
    c->iface_ports_count++;
    return ip;
}

/* "eth0=80,443;eth1=53": the flag and environment form of the map. */
static int ifports_from_string(ps_config *c, const key_def *k, const char *s, const errctx *e)
{
    char shown[80];
    cfg_ifports_clear(c);
    while (*s) {
        size_t len = strcspn(s, ";");
        char *item = strndup(s, len);
        if (!item)
            return cfg_errf(e, "key '%s': out of memory", k->name);
        char *name = item;
        while (*name == ' ' || *name == '\t')
            name++;
        int r = 0;
        if (*name) {
            char *eq = strchr(name, '=');
            if (!eq) {
                r = cfg_errf(e, "key '%s': expected NAME=PORT,PORT;NAME=PORT, got '%s'", k->name,
                             cfg_show(name, shown, sizeof(shown)));
            } else {
                char *end = eq;
                while (end > name && (end[-1] == ' ' || end[-1] == '\t'))
                    end--;
                *end = '\0';
                ps_iface_ports *ip = cfg_ifports_add(c, k, name, e);
                r = ip ? cfg_ports_from_string(&ip->ports, k, eq + 1, e) : -1;
            }
        }
        free(item);
        if (r)
            return -1;
        s += len;
        if (*s == ';')
            s++;
    }
    return 0;
}

/* Sets key k from its string form: the one code path for YAML scalars,
 * flags and environment variables. */
int cfg_set_from_string(ps_config *c, const key_def *k, const char *v, const errctx *e)
{
    char buf[64], list[128], shown[80];
    uint64_t u;
    int b;

    switch (k->type) {
    case K_STR:
        return set_string(c, k, v, e);
    case K_INT:
        if (parse_int_value(k, v, k->min, k->max, "an integer", &u, e))
            return -1;
        store_uint(cfg_field(c, k), k->size, k->scale ? u * k->scale : u);
        return 0;
    case K_BOOL:
        if (parse_bool(trim(v, buf, sizeof(buf)), &b) != 0)
            return cfg_errf(e,
                            "key '%s': expected a boolean (true/false, yes/no, on/off), got '%s'",
                            k->name, cfg_show(v, shown, sizeof(shown)));
        store_uint(cfg_field(c, k), k->size, (uint64_t)b);
        return 0;
    case K_ENUM: {
        /* Case-insensitive: the original's docs wrote "Allow|Deny|All". */
        trim(v, buf, sizeof(buf));
        for (char *p = buf; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (strlen(v) >= sizeof(buf) - 1 || k->e->parse(buf, &b) != 0) {
            cfg_enum_list(k->e, list, sizeof(list));
            return cfg_errf(e, "key '%s': '%s' is not one of %s", k->name,
                            cfg_show(v, shown, sizeof(shown)), list);
        }
        store_uint(cfg_field(c, k), k->size, (uint64_t)b);
        return 0;
    }
    case K_PORTS: {
        ps_port_list l = {{0}, 0};
        if (cfg_ports_from_string(&l, k, v, e))
            return -1;
        memcpy(cfg_field(c, k), &l, sizeof(l));
        return 0;
    }
    case K_STRLIST:
        return strlist_from_string(c, k, v, e);
    case K_IFPORTS:
        return ifports_from_string(c, k, v, e);
    case K_UNSUPPORTED:
    default:
        return cfg_unsupported_key(e, k->name);
    }
}

const char *cfg_type_desc(const key_def *k)
{
    switch (k->type) {
    case K_STR:
        return "a string";
    case K_INT:
        return "an integer";
    case K_BOOL:
        return "a boolean";
    case K_ENUM:
        return "a single value";
    case K_PORTS:
        return "a list of ports";
    case K_STRLIST:
        return "a list of names";
    case K_IFPORTS:
        return "a mapping of interface name to a list of ports";
    default:
        return "nothing";
    }
}
