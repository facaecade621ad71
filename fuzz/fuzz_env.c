/*
 * fuzz_env: the command line and environment layers of the configuration,
 * as main.c applies them: flags (ps_cli_parse, ps_cli_apply: every value
 * through ps_config_set), then PACKETSTREAMER_* variables
 * (ps_config_apply_env), then the cross-key validation. fuzz_config covers
 * the YAML layer.
 *
 * Input: the first byte picks the command (sensor or receiver); the rest is
 * cut at '\n' into items. An item starting with '-' is a command-line
 * argument; any other is an environment entry, prefixed with
 * "PACKETSTREAMER_" so that the fuzzer reaches real keys
 * ("HTTP_MAX_CONNECTIONS=64").
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ITEMS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 65536)
        return 0;
    ps_cli_cmd cmd = data[0] & 1 ? PS_CLI_RECEIVER : PS_CLI_SENSOR;
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char *argv[MAX_ITEMS + 2], *envp[MAX_ITEMS + 1];
    int argc = 0, envc = 0;
    argv[argc++] = cmd == PS_CLI_SENSOR ? "sensor" : "receiver";
    for (char *p = buf; p && argc < MAX_ITEMS && envc < MAX_ITEMS;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        /* --help (or an abbreviation of it) only prints the usage. */
        if (p[0] == '-' && strncmp(p, "--he", 4) != 0) {
            argv[argc++] = p;
        } else if (p[0] != '-' && p[0] != '\0') {
            size_t n = strlen(p);
            char *e = malloc(n + 16);
            if (e) {
                memcpy(e, "PACKETSTREAMER_", 15);
                memcpy(e + 15, p, n + 1);
                envp[envc++] = e;
            }
        }
        p = nl ? nl + 1 : NULL;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;

    ps_config c;
    ps_cli cli;
    char err[PS_CONFIG_ERR_MAX];
    if (ps_config_init(&c, cmd == PS_CLI_SENSOR ? PS_ROLE_SENSOR : PS_ROLE_RECEIVER) == 0) {
        int rc = ps_cli_parse(cmd, argc, argv, &cli);
        if (rc == 0 && ps_cli_apply(&cli, &c, err, sizeof(err)) == 0 &&
            ps_config_apply_env(&c, envp, err, sizeof(err)) == 0)
            ps_config_validate(&c, err, sizeof(err));
        ps_cli_free(&cli);
        ps_config_free(&c);
    }
    for (int i = 0; i < envc; i++)
        free(envp[i]);
    free(buf);
    return 0;
}
