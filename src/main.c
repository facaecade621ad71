/*
 * main: the command line. Subcommands sensor, receiver, check-config;
 * --version and --help. Builds the configuration in layers (defaults, file,
 * flags, environment), opens the log, and hands over to the sensor or
 * receiver loop. Usage errors exit 2, configuration errors 1.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/net.h"
#include "receiver/receiver.h"
#include "sensor/sensor.h"

extern char **environ;

#define MAX_FLAGS 64

static const char usage_text[] =
    "usage: packetstreamer <command> [options]\n"
    "\n"
    "commands:\n"
    "  sensor        stream packets to a receiver\n"
    "  receiver      accept sensor streams and write pcapng/pcap files\n"
    "  check-config  validate a configuration file (exit 0 valid, 1 invalid)\n"
    "  --version     print the version\n"
    "  --help        this text; 'packetstreamer COMMAND --help' for a command\n";

static const char sensor_usage[] =
    "usage: packetstreamer sensor [options]\n"
    "  --config F             YAML configuration (see docs/configuration.md)\n"
    "  --receiver HOST:PORT   where to send (output.server.address/port)\n"
    "  --read-file PCAP       stream a pcap/pcapng file, exit 0 once all is acknowledged\n"
    "  --filter BPF           only packets matching this BPF expression (capture.filter)\n"
    "  --codec C              none, zlib or lz4 (compression.codec, default lz4)\n"
    "  --id NAME              sensor id (sensor.id, default the host name)\n"
    "  --interface NAME|GLOB  capture on these interfaces (live capture; repeatable)\n"
    "  --auth-key-file F      shared token sent in the handshake (auth.keyFile)\n"
    "  --tls-cert F --tls-key F  client certificate and key for mutual TLS\n"
    "  --tls-ca F             CA the receiver's certificate must chain to (enables TLS)\n"
    "  --http ADDR:PORT       health, readiness and metrics (http.listen, "
    "default " PS_HTTP_LISTEN_SENSOR ")\n"
    "  --user USER[:GROUP]    started as root, switch to this user keeping only\n"
    "                         NET_RAW and NET_ADMIN (privileges.user; tcpdump's -Z)\n"
    "  --log-level L          debug, info, warn or error\n"
    "  --log-format F         text or json\n"
    "Environment variables PACKETSTREAMER_<KEY> override the file and the flags.\n";

static const char receiver_usage[] =
    "usage: packetstreamer receiver [options]\n"
    "  --config F             YAML configuration (see docs/configuration.md)\n"
    "  --listen ADDR:PORT     listen address (input.address/port, default 0.0.0.0:8081)\n"
    "  --output DIR|-         capture directory, dir/prefix, or - for stdout\n"
    "                         (output.file.path, default ./captures)\n"
    "  --format F             pcapng (default), pcap (microseconds) or pcap-ns\n"
    "  --auth-key-file F      require this shared token from sensors (auth.keyFile)\n"
    "  --tls-cert F --tls-key F  server certificate and key (enables TLS)\n"
    "  --tls-ca F             require client certificates signed by this CA (mutual TLS)\n"
    "  --http ADDR:PORT       probes, metrics, captures, live stream, status page\n"
    "                         (http.listen, default " PS_HTTP_LISTEN_RECEIVER ")\n"
    "  --log-level L          debug, info, warn or error\n"
    "  --log-format F         text or json\n"
    "Environment variables PACKETSTREAMER_<KEY> override the file and the flags.\n";

typedef struct flag {
    const char *key;
    char *value;
    const char *origin;
} flag;

typedef struct cli {
    const char *config_file;
    flag flags[MAX_FLAGS];
    int n;
    char *interfaces; /* --interface values joined by commas */
} cli;

static int add_flag(cli *c, const char *key, const char *value, const char *origin)
{
    if (c->n >= MAX_FLAGS) {
        fprintf(stderr, "packetstreamer: too many options\n");
        return -1;
    }
    c->flags[c->n].key = key;
    c->flags[c->n].value = strdup(value);
    c->flags[c->n].origin = origin;
    if (!c->flags[c->n].value)
        return -1;
    c->n++;
    return 0;
}

static void free_cli(cli *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->flags[i].value);
    free(c->interfaces);
}

static int add_hostport(cli *c, const char *opt, const char *value, const char *host_key,
                        const char *port_key)
{
    char host[256], port[16];
    int p;
    if (ps_split_hostport(value, host, sizeof(host), &p) != 0) {
        fprintf(stderr, "packetstreamer: %s: '%s' is not HOST:PORT (IPv6 as [ADDR]:PORT)\n", opt,
                value);
        return -1;
    }
    snprintf(port, sizeof(port), "%d", p);
    if (add_flag(c, host_key, host, opt) != 0 || add_flag(c, port_key, port, opt) != 0)
        return -1;
    return 0;
}

enum {
    OPT_CONFIG = 256,
    OPT_RECEIVER,
    OPT_READ_FILE,
    OPT_FILTER,
    OPT_CODEC,
    OPT_ID,
    OPT_INTERFACE,
    OPT_LISTEN,
    OPT_OUTPUT,
    OPT_FORMAT,
    OPT_HTTP,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CA,
    OPT_AUTH_KEY_FILE,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_ROLE,
    OPT_USER,
    OPT_HELP,
};

static const struct option sensor_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"receiver", required_argument, NULL, OPT_RECEIVER},
    {"read-file", required_argument, NULL, OPT_READ_FILE},
    {"filter", required_argument, NULL, OPT_FILTER},
    {"codec", required_argument, NULL, OPT_CODEC},
    {"id", required_argument, NULL, OPT_ID},
    {"interface", required_argument, NULL, OPT_INTERFACE},
    {"http", required_argument, NULL, OPT_HTTP},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"auth-key-file", required_argument, NULL, OPT_AUTH_KEY_FILE},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"user", required_argument, NULL, OPT_USER},
    {"relinquish-privileges", required_argument, NULL, OPT_USER}, /* tcpdump's long -Z */
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const struct option receiver_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"http", required_argument, NULL, OPT_HTTP},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"auth-key-file", required_argument, NULL, OPT_AUTH_KEY_FILE},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const struct option check_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"role", required_argument, NULL, OPT_ROLE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Returns 0 to go on, 1 when --help was printed, -1 on a usage error. */
/* Flags that set one configuration key (and maybe switch a feature on). */
static const struct {
    int opt;
    const char *flag, *key, *enables;
} flag_keys[] = {
    {OPT_READ_FILE, "--read-file", "sensor.readFile", NULL},
    {OPT_FILTER, "--filter", "capture.filter", NULL},
    {OPT_CODEC, "--codec", "compression.codec", NULL},
    {OPT_ID, "--id", "sensor.id", NULL},
    {OPT_OUTPUT, "--output", "output.file.path", NULL},
    {OPT_FORMAT, "--format", "output.file.format", NULL},
    {OPT_TLS_CERT, "--tls-cert", "tls.certFile", "tls.enable"},
    {OPT_TLS_KEY, "--tls-key", "tls.keyFile", NULL},
    {OPT_TLS_CA, "--tls-ca", "tls.caFile", "tls.enable"},
    {OPT_AUTH_KEY_FILE, "--auth-key-file", "auth.keyFile", "auth.enable"},
    {OPT_LOG_LEVEL, "--log-level", "log.level", NULL},
    {OPT_LOG_FORMAT, "--log-format", "log.format", NULL},
    {OPT_HTTP, "--http", "http.listen", "http.enable"},
    {OPT_USER, "--user", "privileges.user", NULL},
};

/* 1 if o is a flag_keys option (rc set by adding it), 0 if not. */
static int add_flag_key(cli *c, int o, const char *value, int *rc)
{
    for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++) {
        if (flag_keys[i].opt != o)
            continue;
        *rc = add_flag(c, flag_keys[i].key, value, flag_keys[i].flag);
        if (*rc == 0 && flag_keys[i].enables)
            *rc = add_flag(c, flag_keys[i].enables, "true", flag_keys[i].flag);
        return 1;
    }
    return 0;
}

static int parse_flags(int argc, char **argv, const struct option *opts, const char *usage, cli *c,
                       const char **role)
{
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        if (add_flag_key(c, o, optarg, &rc)) {
            if (rc != 0)
                return -1;
            continue;
        }
        switch (o) {
        case OPT_CONFIG:
            c->config_file = optarg;
            break;
        case OPT_RECEIVER:
            rc = add_hostport(c, "--receiver", optarg, "output.server.address",
                              "output.server.port");
            break;
        case OPT_LISTEN:
            rc = add_hostport(c, "--listen", optarg, "input.address", "input.port");
            break;
        case OPT_INTERFACE: {
            size_t old = c->interfaces ? strlen(c->interfaces) : 0;
            char *n = realloc(c->interfaces, old + strlen(optarg) + 2);
            if (!n)
                return -1;
            if (old)
                n[old++] = ',';
            strcpy(n + old, optarg);
            c->interfaces = n;
            break;
        }
        case OPT_ROLE:
            *role = optarg;
            break;
        case OPT_HELP:
            fputs(usage, stdout);
            return 1;
        default:
            if (optopt)
                fprintf(stderr, "packetstreamer: option %s needs a value\n", argv[optind - 1]);
            else
                fprintf(stderr, "packetstreamer: unknown option '%s'\n", argv[optind - 1]);
            fputs(usage, stderr);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "packetstreamer: unexpected argument '%s'\n", argv[optind]);
        fputs(usage, stderr);
        return -1;
    }
    if (c->interfaces && add_flag(c, "capture.interfaces", c->interfaces, "--interface") != 0)
        return -1;
    return 0;
}

/* How far build_config goes: check-config validates values but does not
 * read referenced files (they may live only on the target machine). */
enum { CHECK_NONE = 0, CHECK_VALID = 1, CHECK_FILES = 2 };

/* Defaults, then the file, the flags and the environment, then validation. */
static int build_config(ps_config *cfg, ps_role role, const cli *c, int validate)
{
    char err[PS_CONFIG_ERR_MAX];
    if (ps_config_init(cfg, role) != 0) {
        fprintf(stderr, "packetstreamer: out of memory\n");
        return -1;
    }
    if (c->config_file && ps_config_load_file(cfg, c->config_file, err, sizeof(err)) != 0)
        goto fail;
    for (int i = 0; i < c->n; i++)
        if (ps_config_set(cfg, c->flags[i].key, c->flags[i].value, c->flags[i].origin, err,
                          sizeof(err)) != 0)
            goto fail;
    if (ps_config_apply_env(cfg, environ, err, sizeof(err)) != 0)
        goto fail;
    if (validate >= CHECK_VALID && ps_config_validate(cfg, err, sizeof(err)) != 0)
        goto fail;
    if (validate >= CHECK_FILES && ps_config_load_key_file(cfg, err, sizeof(err)) != 0)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "packetstreamer: %s\n", err);
    ps_config_free(cfg);
    return -1;
}

static int open_log(const ps_config *cfg)
{
    if (ps_log_open(cfg->log_level, cfg->log_json, cfg->log_filename) != 0) {
        fprintf(stderr, "packetstreamer: cannot open log file '%s': %s\n", cfg->log_filename,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int run_role(int argc, char **argv, ps_role role)
{
    cli c;
    memset(&c, 0, sizeof(c));
    const char *unused_role = NULL;
    int rc = parse_flags(argc, argv, role == PS_ROLE_SENSOR ? sensor_opts : receiver_opts,
                         role == PS_ROLE_SENSOR ? sensor_usage : receiver_usage, &c, &unused_role);
    if (rc != 0) {
        free_cli(&c);
        return rc > 0 ? 0 : 2;
    }
    ps_config cfg;
    rc = build_config(&cfg, role, &c, CHECK_FILES);
    free_cli(&c);
    if (rc != 0)
        return 1;
    int code = 1;
    if (open_log(&cfg) == 0)
        code = role == PS_ROLE_SENSOR ? ps_sensor_run(&cfg) : ps_receiver_run(&cfg);
    ps_log_close();
    ps_config_free(&cfg);
    return code;
}

static int run_check_config(int argc, char **argv)
{
    cli c;
    memset(&c, 0, sizeof(c));
    const char *role_name = NULL;
    static const char usage[] =
        "usage: packetstreamer check-config --config F [--role sensor|receiver]\n"
        "  Loads F as the process would (with PACKETSTREAMER_* variables applied) and\n"
        "  exits 0 if it is valid, 1 with the reason on stderr if not. Without --role,\n"
        "  a file with output.server is checked as a sensor's, otherwise as a receiver's.\n";
    int rc = parse_flags(argc, argv, check_opts, usage, &c, &role_name);
    if (rc != 0) {
        free_cli(&c);
        return rc > 0 ? 0 : 2;
    }
    if (!c.config_file) {
        fprintf(stderr, "packetstreamer: check-config needs --config FILE\n%s", usage);
        free_cli(&c);
        return 2;
    }
    ps_config cfg;
    ps_role role = PS_ROLE_RECEIVER;
    if (role_name) {
        if (strcmp(role_name, "sensor") == 0) {
            role = PS_ROLE_SENSOR;
        } else if (strcmp(role_name, "receiver") != 0) {
            fprintf(stderr, "packetstreamer: --role: '%s' is not sensor or receiver\n", role_name);
            free_cli(&c);
            return 2;
        }
    } else {
        /* Guess from the file itself: only sensors send to a server. */
        if (build_config(&cfg, PS_ROLE_SENSOR, &c, CHECK_NONE) != 0) {
            free_cli(&c);
            return 1;
        }
        if (cfg.server_address)
            role = PS_ROLE_SENSOR;
        ps_config_free(&cfg);
    }
    rc = build_config(&cfg, role, &c, CHECK_VALID);
    if (rc == 0) {
        printf("%s: valid %s configuration\n", c.config_file,
               role == PS_ROLE_SENSOR ? "sensor" : "receiver");
        ps_config_free(&cfg);
    }
    free_cli(&c);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    /* A closed stdout pipe (--output - | head) or a peer that vanished must
     * be an error return from write(2), not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("packetstreamer %s\n", PS_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "sensor") == 0)
        return run_role(argc - 1, argv + 1, PS_ROLE_SENSOR);
    if (strcmp(cmd, "receiver") == 0)
        return run_role(argc - 1, argv + 1, PS_ROLE_RECEIVER);
    if (strcmp(cmd, "check-config") == 0)
        return run_check_config(argc - 1, argv + 1);
    fprintf(stderr, "packetstreamer: unknown command '%s'\n%s", cmd, usage_text);
    return 2;
}
