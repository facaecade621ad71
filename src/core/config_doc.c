/*
 * config_doc: the key reference, printed from the key table.
 *
 * docs/configuration.md holds this output between its "BEGIN GENERATED:
 * keys" and "END GENERATED: keys" markers (`make docs` rewrites it, and an
 * integration test fails when the two differ), and --help shows the same
 * defaults through ps_config_key_default(). A default is therefore written
 * once, in config_keys.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config_int.h"

static const char *role_text(unsigned roles)
{
    return roles == R_SR ? "S, R" : roles == R_S ? "S" : roles == R_R ? "R" : "";
}

/* A table cell: '|' would end it, so it is escaped. */
static void put_cell(FILE *out, const char *s)
{
    fputs("| ", out);
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
        if (!s[1])
            fputc(' ', out);
    }
}

static void type_text(const key_def *k, char *out, size_t len)
{
    const char *u = k->unit;
    switch (k->type) {
    case K_STR:
        snprintf(out, len, u ? "string (%s)" : "string", u);
        break;
    case K_INT:
        snprintf(out, len, u ? "integer, %s" : "integer", u);
        break;
    case K_BOOL:
        snprintf(out, len, "boolean");
        break;
    case K_ENUM:
        snprintf(out, len, "enum");
        break;
    case K_PORTS:
        snprintf(out, len, "list of ports");
        break;
    case K_STRLIST:
        snprintf(out, len, "list of %s", u ? u : "names");
        break;
    case K_IFPORTS:
        snprintf(out, len, "map: interface → list of ports");
        break;
    default:
        out[0] = '\0';
        break;
    }
}

static void default_text(const key_def *k, char *out, size_t len)
{
    if (k->type == K_UNSUPPORTED)
        out[0] = '\0';
    else if (k->doc_default)
        snprintf(out, len, "%s", k->doc_default);
    else if (k->def && k->def_receiver)
        snprintf(out, len, "sensor `%s`, receiver `%s`", k->def, k->def_receiver);
    else if (k->def)
        snprintf(out, len, "`%s`", k->def);
    else if (k->type == K_PORTS || k->type == K_STRLIST || k->type == K_IFPORTS)
        snprintf(out, len, "empty");
    else
        snprintf(out, len, "none");
}

static void range_text(const key_def *k, char *out, size_t len)
{
    out[0] = '\0';
    if (k->doc_range) {
        snprintf(out, len, "%s", k->doc_range);
        return;
    }
    switch (k->type) {
    case K_INT:
        snprintf(out, len, "%" PRIu64 "..%" PRIu64, k->min, k->max);
        break;
    case K_ENUM: {
        size_t n = 0;
        for (int v = 0; v < k->e->count && n < len; v++) {
            const char *name = k->e->name(v);
            int w = snprintf(out + n, len - n, "%s`%s`", v ? ", " : "", name ? name : "?");
            if (w < 0)
                break;
            n += (size_t)w;
        }
        break;
    }
    case K_PORTS:
        snprintf(out, len, "1..65535, at most %d", PS_CONFIG_MAX_PORTS);
        break;
    case K_IFPORTS:
        snprintf(out, len, "at most %d interfaces", PS_CONFIG_MAX_IFACE_PORTS);
        break;
    case K_STRLIST:
        snprintf(out, len, "at most %d entries", PS_CONFIG_MAX_INTERFACES);
        break;
    case K_STR:
        if (k->min && k->max)
            snprintf(out, len, "%" PRIu64 "..%" PRIu64 " characters", k->min, k->max);
        else if (k->min)
            snprintf(out, len, "non-empty");
        else if (k->max)
            snprintf(out, len, "at most %" PRIu64 " bytes", k->max);
        break;
    default:
        break;
    }
}

static void print_table(FILE *out, int orig)
{
    char buf[512], env[PATH_MAX_LEN];
    fputs("| Key | Type | Default | Range / values | Role | Environment variable | Meaning |\n"
          "|-----|------|---------|----------------|------|----------------------|---------|\n",
          out);
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const key_def *k = &cfg_keys[i];
        if (k->orig != orig)
            continue;
        snprintf(buf, sizeof(buf), "`%s`%s", k->name, orig ? " (original)" : "");
        put_cell(out, buf);
        type_text(k, buf, sizeof(buf));
        put_cell(out, buf);
        default_text(k, buf, sizeof(buf));
        put_cell(out, buf);
        range_text(k, buf, sizeof(buf));
        put_cell(out, buf);
        put_cell(out, role_text(k->roles));
        if (k->type == K_UNSUPPORTED)
            buf[0] = '\0';
        else
            snprintf(buf, sizeof(buf), "`%s`", ps_config_env_name(k->name, env, sizeof(env)));
        put_cell(out, buf);
        put_cell(out, k->help ? k->help : "");
        fputs("|\n", out);
    }
}

int ps_config_print_reference(FILE *out, const char *format)
{
    if (!format || strcmp(format, "keys") != 0)
        return -1;
    fputs("<!-- Generated from src/core/config_keys.c by `make docs`: edit the table there. -->\n"
          "\n### Original keys (Deepfence PacketStreamer)\n\n",
          out);
    print_table(out, 1);
    fputs("\n### packetstreamer's keys\n\n", out);
    print_table(out, 0);
    return ferror(out) ? -1 : 0;
}

const char *ps_config_key_default(const char *key, ps_role role)
{
    const key_def *k = key ? cfg_find_key(key) : NULL;
    if (!k)
        return NULL;
    if (role == PS_ROLE_RECEIVER && k->def_receiver)
        return k->def_receiver;
    return k->def;
}

const char *ps_config_key_default_words(const char *key)
{
    const key_def *k = key ? cfg_find_key(key) : NULL;
    return k ? k->doc_default : NULL;
}
