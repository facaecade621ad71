/*
 * log: leveled, timestamped log lines to stderr or to a file (logFilename),
 * as text ("2026-11-26T08:50:50.123Z INFO  receiver: message") or as JSON
 * lines ({"ts":"...","level":"info","component":"receiver","msg":"..."}).
 *
 * One process-wide logger, set up once by main before threads start; writes
 * are single write(2) calls of whole lines, so lines from the codec worker
 * threads never interleave. Secrets (keys, tokens) are never passed here.
 */
#ifndef PS_LOG_H
#define PS_LOG_H

#include <stddef.h>

typedef enum ps_log_level {
    PS_LOG_DEBUG = 0,
    PS_LOG_INFO = 1,
    PS_LOG_WARN = 2,
    PS_LOG_ERROR = 3,
} ps_log_level;

/* Returns 0, or -1 when the file cannot be opened (errno set); the logger then
 * keeps writing to stderr. filename NULL or "" means stderr. */
int ps_log_open(ps_log_level level, int json, const char *filename);
/* Closes the log file, synchronously, and goes back to stderr: the logger
 * stays usable (main calls it last, after every thread has stopped). */
void ps_log_free(void);
void ps_log_set_level(ps_log_level level);
ps_log_level ps_log_get_level(void);
/* "debug", "info", "warn"/"warning", "error" -> 0 and *out; else -1. */
int ps_log_level_parse(const char *s, ps_log_level *out);
const char *ps_log_level_name(ps_log_level level);

void ps_log(ps_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills a caller's error buffer (docs/hacking.md, "Errors": the `char *err,
 * size_t errlen` parameters) with one formatted sentence; err may be NULL. */
void ps_errbuf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define ps_debug(comp, ...) ps_log(PS_LOG_DEBUG, comp, __VA_ARGS__)
#define ps_info(comp, ...) ps_log(PS_LOG_INFO, comp, __VA_ARGS__)
#define ps_warn(comp, ...) ps_log(PS_LOG_WARN, comp, __VA_ARGS__)
#define ps_error(comp, ...) ps_log(PS_LOG_ERROR, comp, __VA_ARGS__)

#endif
