/*
 * cli: the command line's flags as one table (name, commands, config key,
 * help), from which the getopt arrays and each command's --help are built,
 * so a flag cannot be parsed by one command and listed by another, and the
 * defaults --help shows are the key table's (ps_config_key_default).
 *
 * A flag either sets configuration keys (ps_cli_apply replays them onto a
 * ps_config with ps_config_set, origin "--flag", after the file and before
 * the environment) or steers the command itself (--config, --role,
 * --print-reference, --help). Usage errors print the message and the
 * command's usage on stderr; main.c turns them into exit 2.
 */
#ifndef PS_CLI_H
#define PS_CLI_H

#include <stdio.h>

#include "core/config.h"

#define PS_CLI_MAX_FLAGS 64 /* key settings collected from one command line */
#define PS_CLI_MAX_TABLE 32 /* rows of the flag table */

typedef enum ps_cli_cmd { PS_CLI_SENSOR, PS_CLI_RECEIVER, PS_CLI_CHECK } ps_cli_cmd;

typedef struct ps_cli_setting {
    const char *key;
    char *value;
    const char *origin; /* "--receiver" */
} ps_cli_setting;

typedef struct ps_cli {
    const char *config_file; /* --config */
    const char *role;        /* check-config --role */
    const char *reference;   /* check-config --print-reference FORMAT (hidden) */
    ps_cli_setting set[PS_CLI_MAX_FLAGS];
    int n;
    char *lists[PS_CLI_MAX_TABLE]; /* repeatable flags, values joined by commas */
} ps_cli;

/* Parses argv (argv[0] is the command name) for cmd into c (zeroed here).
 * Returns 0 to go on, 1 when --help was printed to stdout, -1 on a usage
 * error (reported on stderr). Call ps_cli_free() in every case. */
int ps_cli_parse(ps_cli_cmd cmd, int argc, char **argv, ps_cli *c);
/* Applies the collected settings to cfg, in command-line order. */
int ps_cli_apply(const ps_cli *c, ps_config *cfg, char *err, size_t errlen);
void ps_cli_free(ps_cli *c);

/* The command's usage: synopsis, then only the flags cmd accepts. */
void ps_cli_usage(ps_cli_cmd cmd, FILE *out);
/* The flag -> key table of docs/configuration.md (markdown), the block
 * between its "GENERATED: flags" markers. */
void ps_cli_print_reference(FILE *out);

/* The top-level usage (commands). */
void ps_cli_main_usage(FILE *out);

#endif
