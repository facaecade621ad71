/*
 * main: the command line. Subcommands sensor, receiver, check-config;
 * --version and --help. Builds the configuration in layers (defaults, file,
 * flags, environment), opens the log, and hands over to the sensor or
 * receiver loop. Usage errors exit 2, configuration errors 1. The flags
 * themselves are the table in cli.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client/get.h"
#include "client/job.h"
#include "core/curlload.h"
#include "core/config.h"
#include "core/log.h"
#include "receiver/receiver.h"
#include "sensor/podsel.h"
#include "sensor/sensor.h"

extern char **environ;

/* How far build_config goes: check-config validates values but does not
 * read referenced files (they may live only on the target machine). */
enum { CHECK_NONE = 0, CHECK_VALID = 1, CHECK_FILES = 2 };

/* Defaults, then the file, the flags and the environment, then validation. */
static int build_config(ps_config *cfg, ps_role role, const ps_cli *c, int validate)
{
    char err[PS_CONFIG_ERR_MAX];
    if (ps_config_init(cfg, role) != 0) {
        fprintf(stderr, "packetstreamer: out of memory\n");
        return -1;
    }
    if (c->config_file && ps_config_load_file(cfg, c->config_file, err, sizeof(err)) != 0)
        goto fail;
    if (ps_cli_apply(c, cfg, err, sizeof(err)) != 0)
        goto fail;
    if (ps_config_apply_env(cfg, environ, err, sizeof(err)) != 0)
        goto fail;
    if (validate >= CHECK_VALID && ps_config_validate(cfg, err, sizeof(err)) != 0)
        goto fail;
    /* The sensor's pure checks that need its own modules (core does not
     * know them). */
    if (validate >= CHECK_VALID && role == PS_ROLE_SENSOR && cfg->pods_label_selector) {
        char why[PS_CONFIG_ERR_MAX - 64];
        if (ps_podsel_check(cfg->pods_label_selector, why, sizeof(why)) != 0) {
            snprintf(err, sizeof(err), "capture.pods.labelSelector: %s", why);
            goto fail;
        }
    }
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
    ps_cli c;
    int rc = ps_cli_parse(role == PS_ROLE_SENSOR ? PS_CLI_SENSOR : PS_CLI_RECEIVER, argc, argv, &c);
    if (rc != 0) {
        ps_cli_free(&c);
        return rc > 0 ? 0 : 2;
    }
    ps_config cfg;
    rc = build_config(&cfg, role, &c, CHECK_FILES);
    ps_cli_free(&c);
    if (rc != 0)
        return 1;
    int code = 1;
    if (open_log(&cfg) == 0)
        code = role == PS_ROLE_SENSOR ? ps_sensor_run(&cfg) : ps_receiver_run(&cfg);
    ps_log_free();
    ps_config_free(&cfg);
    return code;
}

static int run_check_config(int argc, char **argv)
{
    ps_cli c;
    int rc = ps_cli_parse(PS_CLI_CHECK, argc, argv, &c);
    if (rc != 0) {
        ps_cli_free(&c);
        return rc > 0 ? 0 : 2;
    }
    if (c.reference) {
        /* The generated blocks of docs/configuration.md (make docs). */
        if (strcmp(c.reference, "flags") == 0) {
            ps_cli_print_reference(stdout);
            rc = 0;
        } else if ((rc = ps_config_print_reference(stdout, c.reference)) != 0) {
            fprintf(stderr, "packetstreamer: --print-reference: '%s' is not keys or flags\n",
                    c.reference);
        }
        ps_cli_free(&c);
        return rc == 0 ? 0 : 2;
    }
    if (!c.config_file) {
        fprintf(stderr, "packetstreamer: check-config needs --config FILE\n");
        ps_cli_usage(PS_CLI_CHECK, stderr);
        ps_cli_free(&c);
        return 2;
    }
    ps_config cfg;
    ps_role role = PS_ROLE_RECEIVER;
    if (c.role) {
        if (strcmp(c.role, "sensor") == 0) {
            role = PS_ROLE_SENSOR;
        } else if (strcmp(c.role, "receiver") != 0) {
            fprintf(stderr, "packetstreamer: --role: '%s' is not sensor or receiver\n", c.role);
            ps_cli_free(&c);
            return 2;
        }
    } else {
        /* Guess from the file itself: only sensors send to a server. */
        if (build_config(&cfg, PS_ROLE_SENSOR, &c, CHECK_NONE) != 0) {
            ps_cli_free(&c);
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
    ps_cli_free(&c);
    return rc == 0 ? 0 : 1;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2) {
        ps_cli_main_usage(stderr);
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
        ps_cli_main_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "sensor") == 0)
        return run_role(argc - 1, argv + 1, PS_ROLE_SENSOR);
    if (strcmp(cmd, "receiver") == 0)
        return run_role(argc - 1, argv + 1, PS_ROLE_RECEIVER);
    if (strcmp(cmd, "check-config") == 0)
        return run_check_config(argc - 1, argv + 1);
    if (strcmp(cmd, "get") == 0)
        return ps_get_main(argc - 1, argv + 1);
    if (strcmp(cmd, "job") == 0)
        return ps_job_main(argc - 1, argv + 1);
    fprintf(stderr, "packetstreamer: unknown command '%s'\n", cmd);
    ps_cli_main_usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    int code = dispatch(argc, argv);
    ps_curl_unload(); /* libcurl, if a feature loaded it (core/curlload.h) */
    return code;
}
