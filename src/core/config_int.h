/*
 * config_int: what the config_*.c files share, and nothing else includes.
 *
 * The configuration is one table of keys (config_keys.c). Around it:
 * config_value.c parses a value from its string form into its field,
 * config_yaml.c walks a YAML file and hands each scalar to it,
 * config_suggest.c finds the nearest key for a typo, config_doc.c prints
 * the key reference that docs/configuration.md and --help show, and
 * config.c is the public API: defaults, layering, environment, validation.
 *
 * Errors are written into the caller's buffer by cfg_errf() as one line
 * "ORIGIN[:LINE]: message"; functions return 0 on success, -1 on error.
 */
#ifndef PS_CONFIG_INT_H
#define PS_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define MIB (1024ull * 1024ull)
/* Longest dotted path we build while walking YAML; longer is unknown anyway. */
#define PATH_MAX_LEN 256

typedef enum key_type {
    K_STR,
    K_INT,
    K_BOOL,
    K_ENUM,
    K_PORTS,       /* ps_port_list */
    K_STRLIST,     /* char *[] plus an int count */
    K_IFPORTS,     /* the captureInterfacesPorts map */
    K_UNSUPPORTED, /* an original key we deliberately do not implement */
} key_type;

/* Enumerations are parsed by the owning module's own parser (ps_codec_parse,
 * ps_log_level_parse, ...) so names never drift from what the code accepts;
 * values 0..count-1 are listed in error messages. */
typedef struct enum_def {
    int (*parse)(const char *s, int *out);
    const char *(*name)(int v);
    int count;
} enum_def;

#define KF_ID 1u     /* sensor id: [A-Za-z0-9._-], not starting with '.' */
#define KF_IFNAME 2u /* interface name or glob: no blanks, '/', ',', ';', '=' */

typedef struct key_def {
    const char *name;
    const char *alt; /* the original's spelling, also accepted in YAML */
    key_type type;
    size_t off, size;         /* the field in ps_config */
    size_t count_off;         /* K_STRLIST: its int count */
    uint64_t min, max;        /* K_INT: value range; strings: length (max 0: none) */
    uint64_t scale;           /* K_INT: stored value = written value * scale */
    const enum_def *e;        /* K_ENUM */
    unsigned flags;           /* KF_* */
    const char *def;          /* default, applied by ps_config_init (both roles) */
    const char *def_receiver; /* the receiver's default, when it differs */
    /* For people: docs/configuration.md's key tables and --help are
     * generated from these (config_doc.c), so they cannot drift. */
    unsigned roles;          /* R_S, R_R or R_SR: who reads the key */
    int orig;                /* a Deepfence PacketStreamer key */
    const char *unit;        /* ints: "seconds", "MiB"...; strings: "path"... */
    const char *doc_default; /* the default in words, for keys without .def */
    const char *doc_range;   /* the range in words, where min/max say too little */
    const char *help;        /* what the key does: one paragraph, no newline */
} key_def;

#define R_S 1u  /* read by the sensor */
#define R_R 2u  /* read by the receiver */
#define R_SR 3u /* both */

/* ---- the table (config_keys.c) ---- */

extern const key_def cfg_keys[];
extern const size_t cfg_nkeys;

const key_def *cfg_find_key(const char *path);
/* The unsupported key at or above path ("output.plugins.s3.bucket"). */
const key_def *cfg_find_unsupported(const char *path);
/* A section is a proper prefix of some key: "output", "output.server". */
int cfg_is_section(const char *path);

/* ---- errors and values (config_value.c) ---- */

typedef struct errctx {
    char *err;
    size_t errlen;
    const char *name; /* file name, or the origin of a flag/env value */
    int line;         /* 0: no line (flags, environment, whole-file errors) */
} errctx;

int cfg_errf(const errctx *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A value as shown in a message: bounded, control characters as '?'. */
const char *cfg_show(const char *v, char *buf, size_t buflen);

void *cfg_field(ps_config *c, const key_def *k);
int *cfg_strlist_count(ps_config *c, const key_def *k);
/* Sets key k from its string form: the one code path for YAML scalars,
 * flags, environment variables and defaults. */
int cfg_set_from_string(ps_config *c, const key_def *k, const char *v, const errctx *e);
int cfg_check_name(const key_def *k, const char *v, const char *what, const errctx *e);
int cfg_ports_add(ps_port_list *l, const key_def *k, const char *item, const errctx *e);
int cfg_ports_from_string(ps_port_list *l, const key_def *k, const char *s, const errctx *e);
void cfg_strlist_clear(char **items, int *count);
int cfg_strlist_add(char **items, int *count, const key_def *k, const char *v, const errctx *e);
void cfg_ifports_clear(ps_config *c);
/* Adds an interface with no ports yet; returns its entry or NULL. */
ps_iface_ports *cfg_ifports_add(ps_config *c, const key_def *k, const char *iface, const errctx *e);
/* "a, b, c": the names of an enumeration, for messages and docs. */
void cfg_enum_list(const enum_def *ed, char *out, size_t outlen);
/* "an integer", "a list of ports": what a key expects, for messages. */
const char *cfg_type_desc(const key_def *k);

/* ---- messages for unknown keys (config_suggest.c) ---- */

/* "unknown key 'x' (did you mean 'y'?)"; returns -1. */
int cfg_unknown_key(const errctx *e, const char *path);
int cfg_unsupported_key(const errctx *e, const char *path);

#endif
