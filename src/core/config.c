/*
 * config: defaults, YAML file, flags and environment, all through one table.
 *
 * Every key exists exactly once, in key_table below: its dotted path, its
 * type, where it lands in ps_config, its range or allowed values and its
 * default. The YAML walker, ps_config_set() (flags), the environment names,
 * the typo suggestions and the docs check all read that table, so a new key
 * is one line here plus one row in docs/configuration.md (a unit test fails
 * until the row exists).
 *
 * The YAML is read with libyaml's event API rather than the document API
 * because events keep the line of every key and value, and because an alias
 * arrives as its own event: we reject it on sight, which makes
 * "billion laughs" style expansion impossible instead of merely bounded.
 *
 * Errors are strict on purpose: an unknown key, a duplicate key or a value
 * of the wrong type fails loudly with FILE:LINE, the key's full path and,
 * for typos, the nearest valid key. A capture tool that silently ignores
 * "capturePort: [443]" captures the wrong traffic, which is worse than not
 * starting. Unknown PACKETSTREAMER_* environment variables are the one
 * exception, see ps_config_apply_env().
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <yaml.h>

#define MIB (1024ull * 1024ull)
#define PORT_MIN 1
#define PORT_MAX 65535
/* Longest dotted path we build while walking YAML; longer is unknown anyway. */
#define PATH_MAX_LEN 256
/* A config file is a few KiB; the cap keeps a wrong --config (a pcap, a
 * device) from being slurped whole. */
#define FILE_MAX (1024 * 1024)
#define ENV_PREFIX "PACKETSTREAMER_"

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
    size_t off, size;  /* the field in ps_config */
    size_t count_off;  /* K_STRLIST: its int count */
    uint64_t min, max; /* K_INT: value range; strings: length (max 0: none) */
    uint64_t scale;    /* K_INT: stored value = written value * scale */
    const enum_def *e; /* K_ENUM */
    unsigned flags;    /* KF_* */
    const char *def;   /* default, applied by ps_config_init */
} key_def;

/* ---- enumerations ---- */

static const char *const pcap_mode_names[] = {"all", "allow", "deny"};
static const char *const log_format_names[] = {"text", "json"};
static const char *const format_names[] = {"pcapng", "pcap", "pcap-ns"};

static int name_index(const char *const *names, int count, const char *s)
{
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static int pcap_mode_parse(const char *s, int *out)
{
    int i = name_index(pcap_mode_names, 3, s);
    if (i < 0)
        return -1;
    *out = i;
    return 0;
}

static const char *pcap_mode_name(int v)
{
    return v >= 0 && v < 3 ? pcap_mode_names[v] : NULL;
}

static int log_format_parse(const char *s, int *out)
{
    int i = name_index(log_format_names, 2, s);
    if (i < 0)
        return -1;
    *out = i;
    return 0;
}

static const char *log_format_name(int v)
{
    return v >= 0 && v < 2 ? log_format_names[v] : NULL;
}

static const char *const drop_policy_names[] = {"newest", "oldest"};

static int drop_policy_parse(const char *s, int *out)
{
    int i = name_index(drop_policy_names, 2, s);
    if (i < 0)
        return -1;
    *out = i;
    return 0;
}

static const char *drop_policy_name(int v)
{
    return v >= 0 && v < 2 ? drop_policy_names[v] : NULL;
}

const char *ps_format_name(ps_format f)
{
    return (int)f >= 0 && (int)f < 3 ? format_names[f] : NULL;
}

int ps_format_parse(const char *s, ps_format *f)
{
    for (int i = 0; s && i < 3; i++) {
        if (strcasecmp(s, format_names[i]) == 0) {
            if (f)
                *f = (ps_format)i;
            return 0;
        }
    }
    return -1;
}

static int format_parse_cb(const char *s, int *out)
{
    ps_format f;
    if (ps_format_parse(s, &f) != 0)
        return -1;
    *out = (int)f;
    return 0;
}

static const char *format_name_cb(int v)
{
    return ps_format_name((ps_format)v);
}

static int codec_parse_cb(const char *s, int *out)
{
    ps_codec codec;
    if (ps_codec_parse(s, &codec) != 0)
        return -1;
    *out = (int)codec;
    return 0;
}

static const char *codec_name_cb(int v)
{
    return ps_codec_name(v);
}

static int log_level_parse_cb(const char *s, int *out)
{
    ps_log_level l;
    if (ps_log_level_parse(s, &l) != 0)
        return -1;
    *out = (int)l;
    return 0;
}

static const char *log_level_name_cb(int v)
{
    return ps_log_level_name((ps_log_level)v);
}

static const enum_def pcap_mode_enum = {pcap_mode_parse, pcap_mode_name, 3};
static const enum_def format_enum = {format_parse_cb, format_name_cb, 3};
static const enum_def codec_enum = {codec_parse_cb, codec_name_cb, PS_CODEC_COUNT};
static const enum_def log_level_enum = {log_level_parse_cb, log_level_name_cb, 4};
static const enum_def log_format_enum = {log_format_parse, log_format_name, 2};
static const enum_def drop_policy_enum = {drop_policy_parse, drop_policy_name, 2};

/* ---- the key table ---- */

#define FIELD(f) .off = offsetof(ps_config, f), .size = sizeof(((ps_config *)0)->f)

static const key_def key_table[] = {
    /* Deepfence PacketStreamer's keys, meanings unchanged. */
    {.name = "input.address", .type = K_STR, FIELD(input_address), .def = "0.0.0.0"},
    {.name = "input.port", .type = K_INT, FIELD(input_port), .min = 1, .max = 65535, .def = "8081"},
    {.name = "output.server.address", .type = K_STR, FIELD(server_address)},
    {.name = "output.server.port",
     .type = K_INT,
     FIELD(server_port),
     .min = 1,
     .max = 65535,
     .def = "8081"},
    {.name = "output.file.path", .type = K_STR, FIELD(file_path), .min = 1, .def = "./captures"},
    {.name = "output.plugins", .type = K_UNSUPPORTED},
    {.name = "tls.enable", .type = K_BOOL, FIELD(tls_enable), .def = "false"},
    /* Go's yaml.v3 lower-cases untagged field names, so the original read
     * "certfile"; its chart wrote "certFile". Both load. */
    {.name = "tls.certFile", .alt = "tls.certfile", .type = K_STR, FIELD(tls_cert_file)},
    {.name = "tls.keyFile", .alt = "tls.keyfile", .type = K_STR, FIELD(tls_key_file)},
    {.name = "auth.enable", .type = K_BOOL, FIELD(auth_enable), .def = "false"},
    {.name = "auth.key", .type = K_STR, FIELD(auth_key)},
    {.name = "compressBlockSize",
     .type = K_INT,
     FIELD(compress_block_size_kb),
     .min = 1,
     .max = 16384,
     .def = "256"},
    {.name = "inputPacketLen",
     .type = K_INT,
     FIELD(input_packet_len),
     .min = 1,
     .max = 262144,
     .def = "65535"},
    {.name = "gatherMaxWaitSec",
     .type = K_INT,
     FIELD(gather_max_wait_sec),
     .min = 0,
     .max = 3600,
     .def = "1"},
    {.name = "logFilename", .type = K_STR, FIELD(log_filename)},
    {.name = "pcapMode", .type = K_ENUM, FIELD(pcap_mode), .e = &pcap_mode_enum, .def = "all"},
    {.name = "capturePorts", .type = K_PORTS, FIELD(capture_ports)},
    {.name = "captureInterfacesPorts",
     .type = K_IFPORTS,
     FIELD(iface_ports),
     .min = 1,
     .max = 64,
     .flags = KF_IFNAME},
    {.name = "ignorePorts", .type = K_PORTS, FIELD(ignore_ports)},

    /* packetstreamer's own keys. */
    {.name = "tls.caFile", .type = K_STR, FIELD(tls_ca_file)},
    {.name = "auth.keyFile", .type = K_STR, FIELD(auth_key_file)},
    {.name = "gatherMaxWaitMs",
     .type = K_INT,
     FIELD(gather_max_wait_ms),
     .min = 0,
     .max = 3600000,
     .def = "0"},
    {.name = "output.file.format",
     .type = K_ENUM,
     FIELD(format),
     .e = &format_enum,
     .def = "pcapng"},
    {.name = "output.file.rotateSizeMB",
     .type = K_INT,
     FIELD(rotate_bytes),
     .min = 0,
     .max = 1048576,
     .scale = MIB,
     .def = "0"},
    {.name = "output.file.rotateSeconds",
     .type = K_INT,
     FIELD(rotate_seconds),
     .min = 0,
     .max = 31536000,
     .def = "0"},
    {.name = "output.file.maxFiles",
     .type = K_INT,
     FIELD(max_files),
     .min = 0,
     .max = 1000000,
     .def = "0"},
    {.name = "output.file.maxTotalSizeMB",
     .type = K_INT,
     FIELD(max_total_bytes),
     .min = 0,
     .max = 1ull << 30,
     .scale = MIB,
     .def = "0"},
    {.name = "output.file.perSensor", .type = K_BOOL, FIELD(per_sensor), .def = "false"},
    {.name = "compression.codec", .type = K_ENUM, FIELD(codec), .e = &codec_enum, .def = "lz4"},
    {.name = "compression.zlibLevel",
     .type = K_INT,
     FIELD(zlib_level),
     .min = 1,
     .max = 9,
     .def = "6"},
    {.name = "capture.interfaces",
     .type = K_STRLIST,
     FIELD(interfaces),
     .count_off = offsetof(ps_config, interfaces_count),
     .min = 1,
     .max = 64,
     .flags = KF_IFNAME},
    {.name = "capture.filter", .type = K_STR, FIELD(filter)},
    {.name = "capture.excludeInterfaces",
     .type = K_STRLIST,
     FIELD(exclude_interfaces),
     .count_off = offsetof(ps_config, exclude_interfaces_count),
     .min = 1,
     .max = 64,
     .flags = KF_IFNAME},
    {.name = "capture.podInterfaces", .type = K_BOOL, FIELD(pod_interfaces), .def = "false"},
    {.name = "capture.bufferSizeMB",
     .type = K_INT,
     FIELD(buffer_size_mb),
     .min = 1,
     .max = 1024,
     .def = "4"},
    {.name = "capture.promiscuous", .type = K_BOOL, FIELD(promiscuous), .def = "false"},
    {.name = "capture.statsIntervalSec",
     .type = K_INT,
     FIELD(stats_interval_sec),
     .min = 1,
     .max = 3600,
     .def = "5"},
    /* Default: the host name, set by ps_config_init. */
    {.name = "sensor.id", .type = K_STR, FIELD(sensor_id), .min = 1, .max = 253, .flags = KF_ID},
    {.name = "sensor.readFile", .type = K_STR, FIELD(read_file)},
    {.name = "sensor.readPacketsPerSec",
     .type = K_INT,
     FIELD(read_pps),
     .min = 0,
     .max = 100000000,
     .def = "0"},
    {.name = "sensor.shutdownDeadlineSec",
     .type = K_INT,
     FIELD(shutdown_deadline_sec),
     .min = 0,
     .max = 3600,
     .def = "20"},
    /* "USER[:GROUP]", names or numbers; resolved and applied by sensor/privs.c. */
    {.name = "privileges.user", .type = K_STR, FIELD(privileges_user), .min = 1, .max = 65},
    {.name = "sensor.connectTimeoutSec",
     .type = K_INT,
     FIELD(connect_timeout_sec),
     .min = 0,
     .max = 86400,
     .def = "30"},
    {.name = "spool.size",
     .type = K_INT,
     FIELD(spool_size_mb),
     .min = 1,
     .max = 65536,
     .def = "12"},
    {.name = "spool.dropPolicy",
     .type = K_ENUM,
     FIELD(spool_drop_oldest),
     .e = &drop_policy_enum,
     .def = "newest"},
    {.name = "tls.certPem", .type = K_STR, FIELD(tls_cert_pem), .max = 1048576},
    {.name = "tls.keyPem", .type = K_STR, FIELD(tls_key_pem), .max = 1048576},
    {.name = "tls.caPem", .type = K_STR, FIELD(tls_ca_pem), .max = 1048576},
    {.name = "tls.serverName", .type = K_STR, FIELD(tls_server_name), .min = 1, .max = 253},
    {.name = "tls.insecureSkipVerify",
     .type = K_BOOL,
     FIELD(tls_insecure_skip_verify),
     .def = "false"},
    {.name = "tls.clientCaFile", .type = K_STR, FIELD(tls_client_ca_file)},
    {.name = "tls.requireClientCert",
     .type = K_BOOL,
     FIELD(tls_require_client_cert),
     .def = "true"},
    {.name = "tls.allowedIdentities",
     .type = K_STRLIST,
     FIELD(tls_allowed_ids),
     .count_off = offsetof(ps_config, tls_allowed_ids_count),
     .min = 1,
     .max = 253},
    {.name = "tls.requireIdMatch", .type = K_BOOL, FIELD(tls_require_id_match), .def = "false"},
    {.name = "limits.handshakeTimeoutSec",
     .type = K_INT,
     FIELD(handshake_timeout_sec),
     .min = 1,
     .max = 3600,
     .def = "10"},
    {.name = "limits.idleTimeoutSec",
     .type = K_INT,
     FIELD(idle_timeout_sec),
     .min = 0,
     .max = 86400,
     .def = "60"},
    {.name = "limits.maxConnections",
     .type = K_INT,
     FIELD(max_connections),
     .min = 1,
     .max = 1000000,
     .def = "1024"},
    {.name = "limits.maxConnectionsPerSource",
     .type = K_INT,
     FIELD(max_connections_per_source),
     .min = 0,
     .max = 1000000,
     .def = "0"},
    {.name = "output.file.mode",
     .type = K_STR,
     FIELD(file_mode),
     .min = 1,
     .max = 4,
     .def = "0640"},
    {.name = "log.level", .type = K_ENUM, FIELD(log_level), .e = &log_level_enum, .def = "info"},
    {.name = "log.format", .type = K_ENUM, FIELD(log_json), .e = &log_format_enum, .def = "text"},
    /* HTTP server (probes, metrics, captures). http.listen's default depends
     * on the role and is set by ps_config_init. */
    {.name = "http.enable", .type = K_BOOL, FIELD(http_enable), .def = "true"},
    {.name = "http.listen", .type = K_STR, FIELD(http_listen), .min = 1, .max = 300},
    {.name = "http.token", .type = K_STR, FIELD(http_token), .max = PS_AUTH_KEY_MAX},
};

#define NKEYS (sizeof(key_table) / sizeof(key_table[0]))

/* ---- errors ---- */

typedef struct errctx {
    char *err;
    size_t errlen;
    const char *name; /* file name, or the origin of a flag/env value */
    int line;         /* 0: no line (flags, environment, whole-file errors) */
} errctx;

static int errf(const errctx *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int errf(const errctx *e, const char *fmt, ...)
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
static const char *show(const char *v, char *buf, size_t buflen)
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

/* ---- table lookups ---- */

static const key_def *find_key(const char *path)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &key_table[i];
        if (strcmp(k->name, path) == 0 || (k->alt && strcmp(k->alt, path) == 0))
            return k;
    }
    return NULL;
}

/* The unsupported key at or above path ("output.plugins.s3.bucket"). */
static const key_def *find_unsupported(const char *path)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &key_table[i];
        size_t n = strlen(k->name);
        if (k->type == K_UNSUPPORTED && strncmp(path, k->name, n) == 0 &&
            (path[n] == '\0' || path[n] == '.'))
            return k;
    }
    return NULL;
}

/* A section is a proper prefix of some key: "output", "output.server". */
static int is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < NKEYS; i++) {
        const char *name = key_table[i].name;
        if (key_table[i].type != K_UNSUPPORTED && strncmp(name, path, n) == 0 && name[n] == '.')
            return 1;
    }
    return 0;
}

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
    for (size_t i = 0; i < NKEYS; i++) {
        const char *name = key_table[i].name;
        if (key_table[i].type == K_UNSUPPORTED)
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
    return is_section(parent);
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

static int unknown_key(const errctx *e, const char *path)
{
    char hint[PATH_MAX_LEN + 32], shown[80];
    suggest(path, hint, sizeof(hint));
    return errf(e, "unknown key '%s'%s", show(path, shown, sizeof(shown)), hint);
}

static int unsupported_key(const errctx *e, const char *path)
{
    char shown[80];
    return errf(e,
                "%s is not supported by packetstreamer (the receiver writes capture "
                "files under output.file.path; see docs/configuration.md)",
                show(path, shown, sizeof(shown)));
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

static void *field_of(ps_config *c, const key_def *k)
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
        return errf(e, "key '%s': expected %s, got '%s'", k->name, what,
                    show(v, shown, sizeof(shown)));
    if (r == INT_RANGE || *out < min || *out > max)
        return errf(e, "key '%s': %s is out of range %" PRIu64 "..%" PRIu64, k->name,
                    show(v, shown, sizeof(shown)), min, max);
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

static void enum_list(const enum_def *ed, char *out, size_t outlen)
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

static int check_name(const key_def *k, const char *v, const char *what, const errctx *e)
{
    char shown[80];
    size_t n = strlen(v);
    if (n < k->min || (k->max && n > k->max))
        return errf(e, "key '%s': %s must be %" PRIu64 "..%" PRIu64 " characters long, got %zu",
                    k->name, what, k->min, k->max, n);
    for (const char *p = v; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (k->flags & KF_ID) {
            if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
                return errf(e,
                            "key '%s': '%s' may only contain letters, digits, '.', '_' "
                            "and '-'",
                            k->name, show(v, shown, sizeof(shown)));
        } else if (k->flags & KF_IFNAME) {
            if (ch <= ' ' || ch == 0x7f || strchr("/,;=", ch))
                return errf(e,
                            "key '%s': '%s' is not a valid interface name (no blanks, "
                            "'/', ',', ';' or '=')",
                            k->name, show(v, shown, sizeof(shown)));
        }
    }
    /* The id names files and directories on the receiver. */
    if ((k->flags & KF_ID) && v[0] == '.')
        return errf(e, "key '%s': '%s' must not start with '.'", k->name,
                    show(v, shown, sizeof(shown)));
    return 0;
}

static int set_string(ps_config *c, const key_def *k, const char *v, const errctx *e)
{
    char **slot = field_of(c, k);
    char *copy = NULL;

    if (k->flags) {
        if (check_name(k, v, "the value", e))
            return -1;
    } else if (strlen(v) < k->min) {
        return errf(e, "key '%s': must not be empty", k->name);
    }
    /* An empty string unsets an optional key, so "" in a file or an empty
     * flag can clear a value set by an earlier layer. */
    if (v[0]) {
        copy = strdup(v);
        if (!copy)
            return errf(e, "key '%s': out of memory", k->name);
    }
    free(*slot);
    *slot = copy;
    return 0;
}

static int ports_add(ps_port_list *l, const key_def *k, const char *item, const errctx *e)
{
    uint64_t v;
    if (parse_int_value(k, item, PORT_MIN, PORT_MAX, "a port number", &v, e))
        return -1;
    if (l->count >= PS_CONFIG_MAX_PORTS)
        return errf(e, "key '%s': more than %d ports", k->name, PS_CONFIG_MAX_PORTS);
    l->ports[l->count++] = (uint16_t)v;
    return 0;
}

static int is_blank(const char *s)
{
    return s[strspn(s, " \t")] == '\0';
}

/* Comma-separated ports; empty items are skipped so "80,443," is fine. */
static int ports_from_string(ps_port_list *l, const key_def *k, const char *s, const errctx *e)
{
    l->count = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        char *item = strndup(s, len);
        if (!item)
            return errf(e, "key '%s': out of memory", k->name);
        int r = is_blank(item) ? 0 : ports_add(l, k, item, e);
        free(item);
        if (r)
            return -1;
        s += len;
        if (*s == ',')
            s++;
    }
    return 0;
}

static void strlist_clear(char **items, int *count)
{
    for (int i = 0; i < *count; i++) {
        free(items[i]);
        items[i] = NULL;
    }
    *count = 0;
}

static int strlist_add(char **items, int *count, const key_def *k, const char *v, const errctx *e)
{
    if (check_name(k, v, "an entry", e))
        return -1;
    if (*count >= PS_CONFIG_MAX_INTERFACES)
        return errf(e, "key '%s': more than %d entries", k->name, PS_CONFIG_MAX_INTERFACES);
    items[*count] = strdup(v);
    if (!items[*count])
        return errf(e, "key '%s': out of memory", k->name);
    (*count)++;
    return 0;
}

static int *strlist_count(ps_config *c, const key_def *k)
{
    return (int *)(void *)((char *)c + k->count_off);
}

/* Replaces the list only once every entry parsed, so a bad flag leaves the
 * previous layer's list intact. */
static int strlist_from_string(ps_config *c, const key_def *k, const char *s, const errctx *e)
{
    char *tmp[PS_CONFIG_MAX_INTERFACES] = {0};
    int n = 0;
    char **items = field_of(c, k);
    int *count = strlist_count(c, k);

    while (*s) {
        size_t len = strcspn(s, ",");
        char *raw = strndup(s, len);
        if (!raw) {
            strlist_clear(tmp, &n);
            return errf(e, "key '%s': out of memory", k->name);
        }
        char *item = raw;
        while (*item == ' ' || *item == '\t')
            item++;
        char *end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        int r = *item ? strlist_add(tmp, &n, k, item, e) : 0;
        free(raw);
        if (r) {
            strlist_clear(tmp, &n);
            return -1;
        }
        s += len;
        if (*s == ',')
            s++;
    }
    strlist_clear(items, count);
    memcpy(items, tmp, sizeof(tmp[0]) * (size_t)n);
    *count = n;
    return 0;
}

static void ifports_clear(ps_config *c)
{
    for (int i = 0; i < c->iface_ports_count; i++) {
        free(c->iface_ports[i].iface);
        c->iface_ports[i].iface = NULL;
        c->iface_ports[i].ports.count = 0;
    }
    c->iface_ports_count = 0;
}

/* Adds an interface with no ports yet; returns its entry or NULL. */
static ps_iface_ports *ifports_add(ps_config *c, const key_def *k, const char *iface,
                                   const errctx *e)
{
    char shown[80];
    if (check_name(k, iface, "an interface name", e))
        return NULL;
    for (int i = 0; i < c->iface_ports_count; i++) {
        if (strcmp(c->iface_ports[i].iface, iface) == 0) {
            errf(e, "key '%s': interface '%s' is listed twice", k->name,
                 show(iface, shown, sizeof(shown)));
            return NULL;
        }
    }
    if (c->iface_ports_count >= PS_CONFIG_MAX_IFACE_PORTS) {
        errf(e, "key '%s': more than %d interfaces", k->name, PS_CONFIG_MAX_IFACE_PORTS);
        return NULL;
    }
    ps_iface_ports *ip = &c->iface_ports[c->iface_ports_count];
    ip->iface = strdup(iface);
    if (!ip->iface) {
        errf(e, "key '%s': out of memory", k->name);
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
    ifports_clear(c);
    while (*s) {
        size_t len = strcspn(s, ";");
        char *item = strndup(s, len);
        if (!item)
            return errf(e, "key '%s': out of memory", k->name);
        char *name = item;
        while (*name == ' ' || *name == '\t')
            name++;
        int r = 0;
        if (*name) {
            char *eq = strchr(name, '=');
            if (!eq) {
                r = errf(e, "key '%s': expected NAME=PORT,PORT;NAME=PORT, got '%s'", k->name,
                         show(name, shown, sizeof(shown)));
            } else {
                char *end = eq;
                while (end > name && (end[-1] == ' ' || end[-1] == '\t'))
                    end--;
                *end = '\0';
                ps_iface_ports *ip = ifports_add(c, k, name, e);
                r = ip ? ports_from_string(&ip->ports, k, eq + 1, e) : -1;
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
static int set_from_string(ps_config *c, const key_def *k, const char *v, const errctx *e)
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
        store_uint(field_of(c, k), k->size, k->scale ? u * k->scale : u);
        return 0;
    case K_BOOL:
        if (parse_bool(trim(v, buf, sizeof(buf)), &b) != 0)
            return errf(e, "key '%s': expected a boolean (true/false, yes/no, on/off), got '%s'",
                        k->name, show(v, shown, sizeof(shown)));
        store_uint(field_of(c, k), k->size, (uint64_t)b);
        return 0;
    case K_ENUM: {
        /* Case-insensitive: the original's docs wrote "Allow|Deny|All". */
        trim(v, buf, sizeof(buf));
        for (char *p = buf; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (strlen(v) >= sizeof(buf) - 1 || k->e->parse(buf, &b) != 0) {
            enum_list(k->e, list, sizeof(list));
            return errf(e, "key '%s': '%s' is not one of %s", k->name,
                        show(v, shown, sizeof(shown)), list);
        }
        store_uint(field_of(c, k), k->size, (uint64_t)b);
        return 0;
    }
    case K_PORTS: {
        ps_port_list l = {{0}, 0};
        if (ports_from_string(&l, k, v, e))
            return -1;
        memcpy(field_of(c, k), &l, sizeof(l));
        return 0;
    }
    case K_STRLIST:
        return strlist_from_string(c, k, v, e);
    case K_IFPORTS:
        return ifports_from_string(c, k, v, e);
    case K_UNSUPPORTED:
    default:
        return unsupported_key(e, k->name);
    }
}

static const char *type_desc(const key_def *k)
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
        return errf(&e, "out of memory");
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors (bad encoding) carry a byte offset, not a mark. */
        int line = 1;
        for (size_t i = 0; i < p->problem_offset && i < L->len; i++)
            line += L->text[i] == '\n';
        e.line = line;
        return errf(&e, "YAML syntax error: %s", p->problem ? p->problem : "unreadable input");
    }
    /* libyaml's message for a tab is cryptic; it is the usual mistake. */
    size_t at = p->problem_mark.index;
    const char *tab =
        at < L->len && L->text[at] == '\t' ? "; YAML does not allow tabs for indentation" : "";
    if (p->context)
        return errf(&e, "YAML syntax error: %s (%s at line %d)%s",
                    p->problem ? p->problem : "invalid YAML", p->context,
                    (int)p->context_mark.line + 1, tab);
    return errf(&e, "YAML syntax error: %s%s", p->problem ? p->problem : "invalid YAML", tab);
}

/* The next event; aliases are refused here, once, for the whole walk. */
static int next_event(loader *L, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&L->parser, ev))
        return syntax_error(L);
    if (ev->type == YAML_ALIAS_EVENT) {
        char shown[80];
        errctx e = ectx(L, ev_line(ev));
        errf(&e, "YAML aliases (*%s) are not supported; write the value out",
             show((const char *)ev->data.alias.anchor, shown, sizeof(shown)));
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
            return errf(&e, "duplicate key '%s' (first set at line %d)",
                        show(path, shown, sizeof(shown)), L->seen[i].line);
    if (L->nseen == L->capseen) {
        size_t cap = L->capseen ? L->capseen * 2 : 32;
        seen_key *s = realloc(L->seen, cap * sizeof(*s));
        if (!s)
            return errf(&e, "out of memory");
        L->seen = s;
        L->capseen = cap;
    }
    L->seen[L->nseen].path = strdup(path);
    if (!L->seen[L->nseen].path)
        return errf(&e, "out of memory");
    L->seen[L->nseen++].line = line;
    return 0;
}

static int scalar_value(loader *L, const key_def *k, const yaml_event_t *ev, const char **out)
{
    errctx e = ectx(L, ev_line(ev));
    if (has_nul(ev))
        return errf(&e, "key '%s': the value contains a NUL character", k->name);
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
            r = errf(&e, "key '%s': list entries must be single values, got %s", k->name,
                     got_desc(&ev));
        else if (is_null(&ev))
            r = errf(&e, "key '%s': empty list entry", k->name);
        else if (scalar_value(L, k, &ev, &v))
            r = -1;
        else if (ports)
            r = ports_add(&l, k, v, &e);
        else
            r = strlist_add(tmp, &n, k, v, &e);
        yaml_event_delete(&ev);
        if (r)
            break;
    }
    if (r) {
        strlist_clear(tmp, &n);
        return -1;
    }
    if (ports) {
        *ports = l;
    } else {
        char **items = field_of(L->c, k);
        int *count = strlist_count(L->c, k);
        strlist_clear(items, count);
        memcpy(items, tmp, sizeof(tmp[0]) * (size_t)n);
        *count = n;
    }
    return 0;
}

/* captureInterfacesPorts as a mapping; the MAPPING_START is consumed. */
static int parse_ifports(loader *L, const key_def *k)
{
    char path[PATH_MAX_LEN];
    ifports_clear(L->c);
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
            return errf(&e, "key '%s': interface names must be plain strings", k->name);
        }
        /* Checked before the path is built, which bounds its length. */
        if (check_name(k, scalar(&kev), "an interface name", &e)) {
            yaml_event_delete(&kev);
            return -1;
        }
        snprintf(path, sizeof(path), "%s.%s", k->name, scalar(&kev));
        ps_iface_ports *ip = NULL;
        int r = seen_check(L, path, e.line);
        if (!r) {
            ip = ifports_add(L->c, k, scalar(&kev), &e);
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
            r = scalar_value(L, k, &vev, &v) ? -1 : ports_from_string(&ip->ports, k, v, &e);
        else
            r = errf(&e, "key '%s': expected a list of ports for '%s', got a mapping", k->name,
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
        r = is_null(ev) ? 0 : scalar_value(L, k, ev, &v) ? -1 : set_from_string(L->c, k, v, &e);
    } else if (ev->type == YAML_SEQUENCE_START_EVENT && k->type == K_PORTS) {
        r = parse_list(L, k, field_of(L->c, k));
    } else if (ev->type == YAML_SEQUENCE_START_EVENT && k->type == K_STRLIST) {
        r = parse_list(L, k, NULL);
    } else if (ev->type == YAML_MAPPING_START_EVENT && k->type == K_IFPORTS) {
        r = parse_ifports(L, k);
    } else if (k->type == K_ENUM) {
        enum_list(k->e, list, sizeof(list));
        r = errf(&e, "key '%s': expected one of %s, got %s", k->name, list, got_desc(ev));
    } else {
        r = errf(&e, "key '%s': expected %s, got %s", k->name, type_desc(k), got_desc(ev));
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
        return unsupported_key(&e, path);
    if (next_event(L, &ev))
        return -1;
    int null = is_null(&ev), map = ev.type == YAML_MAPPING_START_EVENT;
    yaml_event_delete(&ev);
    if (null)
        return 0;
    if (!map)
        return unsupported_key(&e, path);
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
    return unsupported_key(&e, path);
}

static int parse_key(loader *L, const char *path, int line)
{
    errctx e = ectx(L, line);
    const key_def *k;
    yaml_event_t ev;

    if ((k = find_unsupported(path)) != NULL)
        return parse_unsupported(L, k, path, line);
    if ((k = find_key(path)) != NULL) {
        if (seen_check(L, k->name, line) || next_event(L, &ev))
            return -1;
        return parse_value(L, k, &ev);
    }
    if (!is_section(path))
        return unknown_key(&e, path);
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
            r = errf(&e, "key '%s': expected a mapping of keys, got '%s'", path,
                     show(scalar(&ev), shown, sizeof(shown)));
        else
            r = errf(&e, "key '%s': expected a mapping of keys, got %s", path, got_desc(&ev));
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
            return errf(&e, "keys must be plain strings");
        }
        int n = prefix ? snprintf(path, sizeof(path), "%s.%s", prefix, scalar(&ev))
                       : snprintf(path, sizeof(path), "%s", scalar(&ev));
        yaml_event_delete(&ev);
        if (n < 0 || (size_t)n >= sizeof(path))
            return unknown_key(&e, path);
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
            return errf(&e, "YAML syntax error: expected a document");
        if (docs++)
            return errf(&e, "more than one YAML document; put every key in one document");
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
                return errf(&e, "the top level must be a mapping of keys (like 'input:')");
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
        return errf(&e, "out of memory");
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
        return errf(&e, "no config file name");
    f = fopen(path, "rb");
    if (!f)
        return errf(&e, "cannot open config file: %s", strerror(errno));
    buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return errf(&e, "out of memory");
    }
    for (;;) {
        if (len == cap) {
            if (cap > FILE_MAX) {
                free(buf);
                fclose(f);
                return errf(&e, "config file is larger than %d bytes", FILE_MAX);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return errf(&e, "out of memory");
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
        return errf(&e, "cannot read config file: %s", strerror(saved));
    }
    fclose(f);
    if (len > FILE_MAX) {
        free(buf);
        return errf(&e, "config file is larger than %d bytes", FILE_MAX);
    }
    int r = ps_config_load_string(c, buf, len, path, err, errlen);
    free(buf);
    return r;
}

/* ---- init, free, set, env, validate ---- */

/* The host name, made into a valid sensor.id (see KF_ID). */
static char *default_sensor_id(void)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    host[253] = '\0';
    for (char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            *p = '-';
    if (host[0] == '\0' || host[0] == '.')
        return strdup("sensor");
    return strdup(host);
}

int ps_config_init(ps_config *c, ps_role role)
{
    memset(c, 0, sizeof(*c));
    c->role = role;
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &key_table[i];
        errctx e = {NULL, 0, "default", 0};
        if (k->def && set_from_string(c, k, k->def, &e) != 0) {
            ps_config_free(c);
            return -1;
        }
    }
    c->sensor_id = default_sensor_id();
    c->http_listen =
        strdup(role == PS_ROLE_SENSOR ? PS_HTTP_LISTEN_SENSOR : PS_HTTP_LISTEN_RECEIVER);
    if (!c->sensor_id || !c->http_listen) {
        ps_config_free(c);
        return -1;
    }
    return 0;
}

void ps_config_free(ps_config *c)
{
    if (!c)
        return;
    ps_role role = c->role;
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &key_table[i];
        if (k->type == K_STR) {
            char **slot = field_of(c, k);
            free(*slot);
            *slot = NULL;
        } else if (k->type == K_STRLIST) {
            strlist_clear(field_of(c, k), strlist_count(c, k));
        }
    }
    ifports_clear(c);
    /* Zeroed so that a second free, or a free after a failed init, is safe. */
    memset(c, 0, sizeof(*c));
    c->role = role;
}

int ps_config_set(ps_config *c, const char *key, const char *value, const char *origin, char *err,
                  size_t errlen)
{
    errctx e = {err, errlen, origin ? origin : key, 0};
    const key_def *k;
    char shown[80];

    if (err && errlen)
        err[0] = '\0';
    if (!key || !value)
        return errf(&e, "no key or value");
    if (find_unsupported(key))
        return unsupported_key(&e, key);
    k = find_key(key);
    if (!k) {
        if (is_section(key))
            return errf(&e, "'%s' is a group of keys, not a key", show(key, shown, sizeof(shown)));
        return unknown_key(&e, key);
    }
    return set_from_string(c, k, value, &e);
}

char *ps_config_env_name(const char *key, char *out, size_t outlen)
{
    size_t n = 0;
    if (!out || outlen == 0)
        return out;
    out[0] = '\0';
    if (!key)
        return out;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (n + 1 < outlen)                                                                        \
            out[n++] = (char)(ch);                                                                 \
    } while (0)
    for (const char *p = ENV_PREFIX; *p; p++)
        PUT(*p);
    for (size_t i = 0; key[i]; i++) {
        unsigned char ch = (unsigned char)key[i];
        unsigned char prev = i ? (unsigned char)key[i - 1] : 0;
        unsigned char next = (unsigned char)key[i + 1];
        if (ch == '.' || ch == '-') {
            PUT('_');
            continue;
        }
        /* camelCase word starts: "rotateSize" -> ROTATE_SIZE; an acronym
         * stays whole ("SizeMB" -> SIZE_MB) until a word follows it. */
        if (isupper(ch) && prev && prev != '.' &&
            (islower(prev) || isdigit(prev) || (isupper(prev) && islower(next))))
            PUT('_');
        PUT(toupper(ch));
    }
#undef PUT
    out[n] = '\0';
    return out;
}

/* Kubernetes injects <SERVICE>_PORT=tcp://10.0.0.1:8081 for every Service;
 * a Service named "packetstreamer-input" would collide with a port key. */
static int is_service_link(const char *v)
{
    return strncmp(v, "tcp://", 6) == 0 || strncmp(v, "udp://", 6) == 0 ||
           strncmp(v, "sctp://", 7) == 0;
}

int ps_config_apply_env(ps_config *c, char *const *envp, char *err, size_t errlen)
{
    char name[PATH_MAX_LEN];
    if (err && errlen)
        err[0] = '\0';
    if (!envp)
        return 0;
    /* Only names that map to a key are read; any other PACKETSTREAMER_*
     * variable is ignored, because Kubernetes injects service links
     * (PACKETSTREAMER_SERVICE_HOST, PACKETSTREAMER_PORT=tcp://...) for a
     * Service of that name and those must not stop the process. */
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &key_table[i];
        if (k->type == K_UNSUPPORTED)
            continue;
        ps_config_env_name(k->name, name, sizeof(name));
        size_t nl = strlen(name);
        const char *val = NULL;
        for (char *const *ep = envp; *ep; ep++) {
            if (strncmp(*ep, name, nl) == 0 && (*ep)[nl] == '=') {
                val = *ep + nl + 1;
                break;
            }
        }
        /* Empty means unset: manifests often template "VAR: ''". */
        if (!val || !val[0])
            continue;
        if (k->type == K_INT && is_service_link(val))
            continue;
        if (ps_config_set(c, k->name, val, name, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int is_stdout_path(const char *p)
{
    return p && (strcmp(p, "stdout") == 0 || strcmp(p, "/dev/stdout") == 0 || strcmp(p, "-") == 0);
}

/* ADDR:PORT or [V6]:PORT with a port 0..65535 (0: any free port). */
static int valid_hostport(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || colon[1] == '\0' || strlen(colon + 1) > 5)
        return 0;
    if (s[0] == '[' && colon[-1] != ']')
        return 0;
    unsigned long port = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    return port <= 65535;
}

/* USER[:GROUP]: each part a name or number of [A-Za-z0-9._-], not starting
 * with '-' (getpwnam would take it, a reader of ps(1) would not). */
static int valid_user_spec(const char *s)
{
    const char *colon = strchr(s, ':');
    size_t ulen = colon ? (size_t)(colon - s) : strlen(s);
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    if (ulen == 0 || ulen > 32 || s[0] == '-' || strspn(s, ok) != ulen)
        return 0;
    if (!colon)
        return 1;
    const char *g = colon + 1;
    size_t glen = strlen(g);
    return glen > 0 && glen <= 32 && g[0] != '-' && strspn(g, ok) == glen;
}

int ps_config_validate(const ps_config *c, char *err, size_t errlen)
{
    errctx e = {err, errlen, "config", 0};
    if (err && errlen)
        err[0] = '\0';

    if (c->tls_enable &&
        (!c->tls_cert_file && !c->tls_cert_pem) != (!c->tls_key_file && !c->tls_key_pem))
        return errf(&e, "tls.certFile and tls.keyFile must be set together");
    if (c->tls_cert_file && c->tls_cert_pem)
        return errf(&e, "tls.certFile and tls.certPem are both set; use one");
    if (c->tls_key_file && c->tls_key_pem)
        return errf(&e, "tls.keyFile and tls.keyPem are both set; use one");
    if (c->tls_ca_file && c->tls_ca_pem)
        return errf(&e, "tls.caFile and tls.caPem are both set; use one");
    if (!c->file_mode || strspn(c->file_mode, "01234567") != strlen(c->file_mode) ||
        strtoul(c->file_mode, NULL, 8) > 0666)
        return errf(&e,
                    "output.file.mode must be an octal mode of at most 0666 (e.g. 0640), "
                    "got '%s'",
                    c->file_mode ? c->file_mode : "");
    if (c->auth_enable && !c->auth_key && !c->auth_key_file)
        return errf(&e, "auth.enable is true but neither auth.key nor auth.keyFile is set");
    if (c->auth_key && strlen(c->auth_key) > PS_AUTH_KEY_MAX)
        return errf(&e, "auth.key is longer than %d bytes", PS_AUTH_KEY_MAX);
    if (c->auth_enable && c->auth_key && c->auth_key_file)
        return errf(&e, "auth.key and auth.keyFile are both set; use one");

    if (c->http_enable && (!c->http_listen || !valid_hostport(c->http_listen)))
        return errf(&e, "http.listen: '%s' is not ADDR:PORT (IPv6 as [ADDR]:PORT)",
                    c->http_listen ? c->http_listen : "");

    if (c->role == PS_ROLE_SENSOR) {
        if (!c->server_address)
            return errf(&e, "no receiver address: set output.server.address in the config or "
                            "pass --receiver HOST:PORT");
        if (c->gather_max_wait_sec == 0 && c->gather_max_wait_ms == 0)
            return errf(&e, "gatherMaxWaitSec and gatherMaxWaitMs are both 0: a partial batch "
                            "would never be sent; set gatherMaxWaitMs (e.g. 200) or "
                            "gatherMaxWaitSec");
        if ((uint64_t)c->spool_size_mb * 1024 < c->compress_block_size_kb)
            return errf(&e,
                        "spool.size (%" PRIu32 " MiB) cannot hold one batch of "
                        "compressBlockSize (%" PRIu32 " KiB)",
                        c->spool_size_mb, c->compress_block_size_kb);
        if (!c->sensor_id)
            return errf(&e, "sensor.id is not set");
        if (c->privileges_user && !valid_user_spec(c->privileges_user)) {
            char shown[80];
            return errf(&e,
                        "privileges.user: '%s' is not USER[:GROUP] (names or numbers, e.g. "
                        "65532:65532)",
                        show(c->privileges_user, shown, sizeof(shown)));
        }
    } else {
        if (c->tls_enable &&
            ((!c->tls_cert_file && !c->tls_cert_pem) || (!c->tls_key_file && !c->tls_key_pem)))
            return errf(&e, "tls.enable is true but tls.certFile and tls.keyFile are not set: "
                            "the receiver needs its certificate and private key");
        if (!c->file_path)
            return errf(&e, "output.file.path is not set");
        if (c->per_sensor && is_stdout_path(c->file_path))
            return errf(&e, "output.file.perSensor cannot split a single stdout stream; "
                            "set output.file.path to a directory");
        if (c->max_total_bytes && c->rotate_bytes > c->max_total_bytes)
            return errf(&e, "output.file.rotateSizeMB is larger than output.file.maxTotalSizeMB: "
                            "retention would delete the file being written");
    }
    return 0;
}

unsigned ps_config_file_mode(const ps_config *c)
{
    return c->file_mode ? (unsigned)strtoul(c->file_mode, NULL, 8) & 0666u : 0640u;
}

const char *ps_config_key_name(size_t i)
{
    for (size_t j = 0; j < NKEYS; j++) {
        if (key_table[j].type == K_UNSUPPORTED)
            continue;
        if (i-- == 0)
            return key_table[j].name;
    }
    return NULL;
}

int ps_config_load_key_file(ps_config *c, char *err, size_t errlen)
{
    if (!c->auth_enable || !c->auth_key_file)
        return 0;
    FILE *f = fopen(c->auth_key_file, "re");
    if (!f) {
        snprintf(err, errlen, "auth.keyFile: cannot read '%s': %s", c->auth_key_file,
                 strerror(errno));
        return -1;
    }
    char buf[PS_AUTH_KEY_MAX + 2];
    size_t n = fread(buf, 1, sizeof(buf), f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, errlen, "auth.keyFile: cannot read '%s'", c->auth_key_file);
        return -1;
    }
    /* Secrets mounted from Kubernetes or written by echo end in a newline
     * that is not part of the token. */
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n == 0 || n > PS_AUTH_KEY_MAX || memchr(buf, '\0', n)) {
        snprintf(err, errlen, "auth.keyFile: '%s' must hold a token of 1 to %d bytes",
                 c->auth_key_file, PS_AUTH_KEY_MAX);
        return -1;
    }
    char *key = strndup(buf, n);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (!key) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(c->auth_key);
    c->auth_key = key;
    return 0;
}
