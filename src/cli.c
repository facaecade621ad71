/*
 * cli: the flag table, and the getopt arrays and usage texts built from it
 * (see cli.h). Like curl's options table, one row per flag and command
 * drives both parsing and help.
 */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "core/hostport.h"

#define FOR_S (1u << PS_CLI_SENSOR)
#define FOR_R (1u << PS_CLI_RECEIVER)
#define FOR_C (1u << PS_CLI_CHECK)

typedef enum flag_kind {
    F_KEY,      /* sets key (and enables, to "true") */
    F_HOSTPORT, /* HOST:PORT into key (host) and key2 (port) */
    F_LIST,     /* repeatable: values joined by commas into key */
    F_CONFIG,   /* --config */
    F_ROLE,     /* check-config --role */
    F_REF,      /* check-config --print-reference */
    F_HELP,
} flag_kind;

typedef struct flag_def {
    const char *name;
    unsigned cmds; /* FOR_* */
    flag_kind kind;
    const char *arg;  /* the value's name in usage; NULL: no value */
    const char *key;  /* F_KEY, F_LIST, F_HOSTPORT (host) */
    const char *key2; /* F_HOSTPORT: the port key */
    const char *enables;
    const char *help; /* NULL: not listed */
} flag_def;

/* Rows for the same flag name with different commands differ in help only;
 * the order is the order of --help. */
static const flag_def flags[] = {
    {"config", FOR_S | FOR_R | FOR_C, F_CONFIG, "F", NULL, NULL, NULL,
     "YAML configuration (see docs/configuration.md)"},
    {"role", FOR_C, F_ROLE, "sensor|receiver", NULL, NULL, NULL,
     "check as this role (default: a file with output.server is a sensor's)"},
    {"print-reference", FOR_C, F_REF, "FORMAT", NULL, NULL, NULL, NULL},
    {"receiver", FOR_S, F_HOSTPORT, "HOST:PORT", "output.server.address", "output.server.port",
     NULL, "where to send"},
    {"listen", FOR_R, F_HOSTPORT, "ADDR:PORT", "input.address", "input.port", NULL,
     "listen address for sensors"},
    {"output", FOR_R, F_KEY, "DIR|-", "output.file.path", NULL, NULL,
     "capture directory, dir/prefix, or - for stdout"},
    {"format", FOR_R, F_KEY, "F", "output.file.format", NULL, NULL,
     "pcapng, pcap (microseconds) or pcap-ns"},
    {"read-file", FOR_S, F_KEY, "PCAP", "sensor.readFile", NULL, NULL,
     "stream a pcap/pcapng file, exit 0 once all is acknowledged"},
    {"filter", FOR_S, F_KEY, "BPF", "capture.filter", NULL, NULL,
     "only packets matching this BPF expression"},
    {"codec", FOR_S, F_KEY, "C", "compression.codec", NULL, NULL, "none, zlib or lz4"},
    {"id", FOR_S, F_KEY, "NAME", "sensor.id", NULL, NULL, "sensor id"},
    {"interface", FOR_S, F_LIST, "NAME|GLOB", "capture.interfaces", NULL, NULL,
     "capture on these interfaces (live capture; repeatable)"},
    {"auth-key-file", FOR_S, F_KEY, "F", "auth.keyFile", NULL, "auth.enable",
     "shared token sent in the handshake"},
    {"auth-key-file", FOR_R, F_KEY, "F", "auth.keyFile", NULL, "auth.enable",
     "require this shared token from sensors"},
    {"tls-cert", FOR_S, F_KEY, "F", "tls.certFile", NULL, "tls.enable",
     "client certificate for mutual TLS (with --tls-key)"},
    {"tls-cert", FOR_R, F_KEY, "F", "tls.certFile", NULL, "tls.enable",
     "server certificate (with --tls-key; enables TLS)"},
    {"tls-key", FOR_S | FOR_R, F_KEY, "F", "tls.keyFile", NULL, NULL, "private key of --tls-cert"},
    {"tls-ca", FOR_S, F_KEY, "F", "tls.caFile", NULL, "tls.enable",
     "CA the receiver's certificate must chain to (enables TLS)"},
    {"tls-ca", FOR_R, F_KEY, "F", "tls.caFile", NULL, "tls.enable",
     "require client certificates signed by this CA (mutual TLS)"},
    {"http", FOR_S, F_KEY, "ADDR:PORT", "http.listen", NULL, "http.enable",
     "health, readiness and metrics"},
    {"http", FOR_R, F_KEY, "ADDR:PORT", "http.listen", NULL, "http.enable",
     "probes, metrics, captures, live stream, status page"},
    {"user", FOR_S, F_KEY, "USER[:GROUP]", "privileges.user", NULL, NULL,
     "started as root, switch to this user keeping only NET_RAW and NET_ADMIN (tcpdump's -Z)"},
    {"relinquish-privileges", FOR_S, F_KEY, "USER[:GROUP]", "privileges.user", NULL, NULL,
     "the same as --user (tcpdump's long form of -Z)"},
    {"log-level", FOR_S | FOR_R, F_KEY, "L", "log.level", NULL, NULL, "debug, info, warn or error"},
    {"log-format", FOR_S | FOR_R, F_KEY, "F", "log.format", NULL, NULL, "text or json"},
    {"help", FOR_S | FOR_R | FOR_C, F_HELP, NULL, NULL, NULL, NULL, "this text"},
};

#define NFLAGS (sizeof(flags) / sizeof(flags[0]))
_Static_assert(NFLAGS <= PS_CLI_MAX_TABLE, "PS_CLI_MAX_TABLE is too small for the flag table");

#define OPT_BASE 256

static const char *const cmd_names[] = {"sensor", "receiver", "check-config"};

static ps_role cmd_role(ps_cli_cmd cmd)
{
    return cmd == PS_CLI_SENSOR ? PS_ROLE_SENSOR : PS_ROLE_RECEIVER;
}

void ps_cli_main_usage(FILE *out)
{
    fputs("usage: packetstreamer <command> [options]\n"
          "\n"
          "commands:\n"
          "  sensor        stream packets to a receiver\n"
          "  receiver      accept sensor streams and write pcapng/pcap files\n"
          "  check-config  validate a configuration file (exit 0 valid, 1 invalid)\n"
          "  get           fetch a window of packets from a receiver (--help for options)\n"
          "  job           start, list and stop capture jobs on a receiver (--help)\n"
          "  --version     print the version\n"
          "  --help        this text; 'packetstreamer COMMAND --help' for a command\n",
          out);
}

/* "(KEY, default D)" for a row, from the key table; "" for command flags. */
static void key_note(const flag_def *f, ps_cli_cmd cmd, char *out, size_t len)
{
    out[0] = '\0';
    if (!f->key)
        return;
    const char *d = ps_config_key_default(f->key, cmd_role(cmd));
    char hp[300];
    if (f->kind == F_HOSTPORT) {
        const char *port = ps_config_key_default(f->key2, cmd_role(cmd));
        /* input.address/port: both have defaults; output.server: the host has none */
        if (d && port)
            d = ps_hostport_format(d, atoi(port), hp, sizeof(hp));
        else
            d = NULL;
        const char *leaf = strrchr(f->key2, '.');
        snprintf(out, len, "(%s/%s%s%s)", f->key, leaf ? leaf + 1 : f->key2, d ? ", default " : "",
                 d ? d : "");
        return;
    }
    /* words such as "the host name"; longer explanations stay in the docs */
    if (!d && (d = ps_config_key_default_words(f->key)) != NULL && strpbrk(d, "(`"))
        d = NULL;
    snprintf(out, len, "(%s%s%s)", f->key, d ? ", default " : "", d ? d : "");
}

void ps_cli_usage(ps_cli_cmd cmd, FILE *out)
{
    unsigned bit = 1u << cmd;
    if (cmd == PS_CLI_CHECK)
        fputs("usage: packetstreamer check-config --config F [options]\n"
              "  Loads F as the process would (with PACKETSTREAMER_* variables applied) and\n"
              "  exits 0 if it is valid, 1 with the reason on stderr if not.\n",
              out);
    else
        fprintf(out, "usage: packetstreamer %s [options]\n", cmd_names[cmd]);
    for (size_t i = 0; i < NFLAGS; i++) {
        const flag_def *f = &flags[i];
        if (!(f->cmds & bit) || !f->help)
            continue;
        char left[64], note[400];
        snprintf(left, sizeof(left), "--%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
        key_note(f, cmd, note, sizeof(note));
        /* one line when it fits in 100 columns, else the note goes below */
        if (2 + 23 + strlen(f->help) + 1 + strlen(note) <= 100)
            fprintf(out, "  %-22s %s%s%s\n", left, f->help, note[0] ? " " : "", note);
        else
            fprintf(out, "  %-22s %s\n  %-22s %s\n", left, f->help, "", note);
    }
    if (cmd != PS_CLI_CHECK)
        fputs("Environment variables PACKETSTREAMER_<KEY> override the file and the flags.\n", out);
}

static int add_setting(ps_cli *c, const char *key, const char *value, const char *origin)
{
    if (c->n >= PS_CLI_MAX_FLAGS) {
        fprintf(stderr, "packetstreamer: too many options\n");
        return -1;
    }
    char *v = strdup(value);
    if (!v) {
        fprintf(stderr, "packetstreamer: out of memory\n");
        return -1;
    }
    c->set[c->n++] = (ps_cli_setting){key, v, origin};
    return 0;
}

static int append_list(ps_cli *c, size_t i, const char *value)
{
    size_t old = c->lists[i] ? strlen(c->lists[i]) : 0;
    char *n = realloc(c->lists[i], old + strlen(value) + 2);
    if (!n) {
        fprintf(stderr, "packetstreamer: out of memory\n");
        return -1;
    }
    if (old)
        n[old++] = ',';
    strcpy(n + old, value);
    c->lists[i] = n;
    return 0;
}

/* The flag's "--name" as a static string for messages and origins. */
static const char *origin_of(const flag_def *f)
{
    static char names[PS_CLI_MAX_TABLE][40];
    size_t i = (size_t)(f - flags);
    if (!names[i][0])
        snprintf(names[i], sizeof(names[i]), "--%s", f->name);
    return names[i];
}

static int take(ps_cli *c, ps_cli_cmd cmd, const flag_def *f, const char *v)
{
    const char *origin = origin_of(f);
    switch (f->kind) {
    case F_KEY:
        if (add_setting(c, f->key, v, origin) != 0)
            return -1;
        return f->enables ? add_setting(c, f->enables, "true", origin) : 0;
    case F_HOSTPORT: {
        ps_hostport hp;
        char port[16], why[160];
        if (ps_hostport_parse(v, 0, &hp) != 0) {
            fprintf(stderr, "packetstreamer: %s: %s\n", origin,
                    ps_hostport_explain(v, "HOST", why, sizeof(why)));
            return -1;
        }
        snprintf(port, sizeof(port), "%d", hp.port);
        if (add_setting(c, f->key, hp.host, origin) != 0)
            return -1;
        return add_setting(c, f->key2, port, origin);
    }
    case F_LIST:
        return append_list(c, (size_t)(f - flags), v);
    case F_CONFIG:
        c->config_file = v;
        return 0;
    case F_ROLE:
        c->role = v;
        return 0;
    case F_REF:
        c->reference = v;
        return 0;
    case F_HELP:
    default:
        ps_cli_usage(cmd, stdout);
        return 1;
    }
}

int ps_cli_parse(ps_cli_cmd cmd, int argc, char **argv, ps_cli *c)
{
    struct option opts[PS_CLI_MAX_TABLE + 1];
    size_t n = 0;
    unsigned bit = 1u << cmd;

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NFLAGS; i++)
        if (flags[i].cmds & bit)
            opts[n++] =
                (struct option){flags[i].name, flags[i].arg ? required_argument : no_argument, NULL,
                                OPT_BASE + (int)i};
    opts[n] = (struct option){NULL, 0, NULL, 0};

    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o < OPT_BASE || (size_t)(o - OPT_BASE) >= NFLAGS) {
            if (optopt)
                fprintf(stderr, "packetstreamer: option %s needs a value\n", argv[optind - 1]);
            else
                fprintf(stderr, "packetstreamer: unknown option '%s'\n", argv[optind - 1]);
            ps_cli_usage(cmd, stderr);
            return -1;
        }
        int rc = take(c, cmd, &flags[o - OPT_BASE], optarg);
        if (rc != 0)
            return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "packetstreamer: unexpected argument '%s'\n", argv[optind]);
        ps_cli_usage(cmd, stderr);
        return -1;
    }
    for (size_t i = 0; i < NFLAGS; i++)
        if (c->lists[i] && add_setting(c, flags[i].key, c->lists[i], origin_of(&flags[i])) != 0)
            return -1;
    return 0;
}

/* A markdown cell's text: '|' escaped. */
static void put_md(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

void ps_cli_print_reference(FILE *out)
{
    fputs("<!-- Generated from src/cli.c by `make docs`: edit the flag table there. -->\n\n"
          "| Flag | Command | Key |\n"
          "|------|---------|-----|\n",
          out);
    for (size_t i = 0; i < NFLAGS; i++) {
        const flag_def *f = &flags[i];
        unsigned cmds = 0;
        if (!f->key)
            continue;
        /* one row per flag name: rows that differ only in help are merged */
        int seen = 0;
        for (size_t j = 0; j < NFLAGS; j++)
            if (strcmp(flags[j].name, f->name) == 0) {
                if (j < i)
                    seen = 1;
                cmds |= flags[j].cmds;
            }
        if (seen)
            continue;
        fprintf(out, "| `--%s", f->name);
        if (f->arg) {
            fputc(' ', out);
            put_md(out, f->arg);
        }
        fprintf(out, "`%s | %s | `%s`", f->kind == F_LIST ? " (repeatable)" : "",
                (cmds & (FOR_S | FOR_R)) == (FOR_S | FOR_R) ? "sensor, receiver"
                : cmds & FOR_S                              ? "sensor"
                                                            : "receiver",
                f->key);
        if (f->key2)
            fprintf(out, ", `%s`", f->key2);
        if (f->enables)
            fprintf(out, " (also sets `%s`)", f->enables);
        fputs(" |\n", out);
    }
}

int ps_cli_apply(const ps_cli *c, ps_config *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < c->n; i++)
        if (ps_config_set(cfg, c->set[i].key, c->set[i].value, c->set[i].origin, err, errlen) != 0)
            return -1;
    return 0;
}

void ps_cli_free(ps_cli *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->set[i].value);
    for (size_t i = 0; i < PS_CLI_MAX_TABLE; i++)
        free(c->lists[i]);
    memset(c, 0, sizeof(*c));
}
