/*
 * log: the process-wide logger.
 *
 * Every line is formatted completely into a buffer on the stack and handed
 * to the kernel with a single write(2). With O_APPEND (files) or a line that
 * fits PIPE_BUF (pipes, which is what a container runtime gives us as
 * stderr) the kernel keeps the line whole, so lines from the libuv worker
 * threads never interleave and no lock is needed on the hot path.
 *
 * The level check is one relaxed atomic load so that disabled debug calls
 * cost next to nothing. Messages longer than PS_LOG_MSG_MAX are cut and
 * marked; a log line must never be able to grow without bound.
 *
 * One line per call is a property operators grep for, so control characters
 * in a message are escaped in text mode too (a newline would otherwise let a
 * remote peer's string forge a second log line). JSON mode escapes to RFC
 * 8259 and replaces invalid UTF-8 with U+FFFD so every line parses.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define PS_LOG_MSG_MAX 8192
/* JSON escaping can turn one byte into six; the line buffer is bounded and
 * escaping stops (and marks the cut) when it would overflow. */
#define PS_LOG_LINE_MAX (PS_LOG_MSG_MAX + 1024)
#define PS_LOG_TRUNC_MARK "...[truncated]"

static atomic_int log_level = PS_LOG_INFO;
static atomic_int log_json = 0;
/* Written by ps_log_open/close, read by every ps_log call: atomic so that a
 * reopen is not a data race, though main does it before threads start. */
static atomic_int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

static ps_log_level clamp_level(ps_log_level level)
{
    if ((int)level < PS_LOG_DEBUG)
        return PS_LOG_DEBUG;
    if ((int)level > PS_LOG_ERROR)
        return PS_LOG_ERROR;
    return level;
}

int ps_log_open(ps_log_level level, int json, const char *filename)
{
    int fd = STDERR_FILENO, ret = 0;

    ps_log_set_level(level);
    atomic_store_explicit(&log_json, json ? 1 : 0, memory_order_relaxed);
    if (filename && filename[0]) {
        fd = open(filename, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            fd = STDERR_FILENO;
            ret = -1;
        }
    }
    int saved = errno;
    int old = atomic_exchange(&log_fd, fd);
    if (old != STDERR_FILENO && old != fd)
        close(old);
    errno = saved;
    return ret;
}

void ps_log_free(void)
{
    int old = atomic_exchange(&log_fd, STDERR_FILENO);
    if (old != STDERR_FILENO)
        close(old);
}

void ps_log_set_level(ps_log_level level)
{
    atomic_store_explicit(&log_level, (int)clamp_level(level), memory_order_relaxed);
}

ps_log_level ps_log_get_level(void)
{
    return (ps_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int ps_log_level_parse(const char *s, ps_log_level *out)
{
    static const struct {
        const char *name;
        ps_log_level level;
    } names[] = {
        {"debug", PS_LOG_DEBUG},  {"info", PS_LOG_INFO},   {"warn", PS_LOG_WARN},
        {"warning", PS_LOG_WARN}, {"error", PS_LOG_ERROR},
    };
    if (!s)
        return -1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            if (out)
                *out = names[i].level;
            return 0;
        }
    }
    return -1;
}

const char *ps_log_level_name(ps_log_level level)
{
    return level_names[clamp_level(level)];
}

/* A bounded appender: once full, further appends are dropped and the
 * caller notices through `full`. `cap` keeps room for the trailing mark. */
typedef struct line_buf {
    char *p;
    size_t len, cap;
    int full;
} line_buf;

static void lb_putn(line_buf *b, const char *s, size_t n)
{
    if (b->full || b->len + n > b->cap) {
        b->full = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void lb_puts(line_buf *b, const char *s)
{
    lb_putn(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid.
 * Overlong forms and surrogates are invalid, as RFC 3629 says. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned min;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2, cp = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, cp = s[0] & 0x0f, min = 0x800;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Appends s escaped: JSON string rules when json, else only control
 * characters (so text lines stay one line each). Stops at an escape
 * boundary when the buffer fills, never in the middle of one. */
static void lb_escaped(line_buf *b, const char *s, int json)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    char esc[8];

    for (size_t i = 0; i < n && !b->full;) {
        unsigned char ch = u[i];
        if (ch == '"' && json) {
            lb_puts(b, "\\\"");
        } else if (ch == '\\' && json) {
            lb_puts(b, "\\\\");
        } else if (ch == '\n') {
            lb_puts(b, "\\n");
        } else if (ch == '\r') {
            lb_puts(b, "\\r");
        } else if (ch == '\t') {
            lb_puts(b, json ? "\\t" : "\t");
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof(esc), json ? "\\u%04x" : "\\x%02x", ch);
            lb_puts(b, esc);
        } else if (ch >= 0x80 && json) {
            size_t l = utf8_len(u + i, n - i);
            if (l == 0) {
                lb_puts(b, "\\ufffd");
                i++;
                continue;
            }
            lb_putn(b, s + i, l);
            i += l;
            continue;
        } else {
            lb_putn(b, s + i, 1);
        }
        i++;
    }
}

static void format_ts(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm)) {
        snprintf(out, outlen, "1970-01-01T00:00:00.000Z");
        return;
    }
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a logging failure */
        }
        p += w;
        n -= (size_t)w;
    }
}

void ps_log(ps_log_level level, const char *component, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&log_level, memory_order_relaxed))
        return;

    int saved_errno = errno; /* callers may log and then still test errno */
    char msg[PS_LOG_MSG_MAX];
    char line[PS_LOG_LINE_MAX];
    char ts[40];
    int json = atomic_load_explicit(&log_json, memory_order_relaxed);
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        snprintf(msg, sizeof(msg), "(bad log format: %s)", fmt);
    int truncated = n >= (int)sizeof(msg);

    level = clamp_level(level);
    if (!component || !component[0])
        component = "-";
    format_ts(ts, sizeof(ts));

    /* Keep room for the truncation mark and the line end in every case. */
    line_buf b = {line, 0, sizeof(line) - sizeof(PS_LOG_TRUNC_MARK) - 4, 0};
    if (json) {
        lb_puts(&b, "{\"ts\":\"");
        lb_puts(&b, ts);
        lb_puts(&b, "\",\"level\":\"");
        lb_puts(&b, level_names[level]);
        lb_puts(&b, "\",\"component\":\"");
        lb_escaped(&b, component, 1);
        lb_puts(&b, "\",\"msg\":\"");
        lb_escaped(&b, msg, 1);
    } else {
        lb_puts(&b, ts);
        lb_puts(&b, " ");
        lb_puts(&b, level_tags[level]);
        lb_puts(&b, " ");
        lb_escaped(&b, component, 0);
        lb_puts(&b, ": ");
        lb_escaped(&b, msg, 0);
    }
    b.cap = sizeof(line);
    if (truncated || b.full) {
        b.full = 0;
        lb_puts(&b, PS_LOG_TRUNC_MARK);
    }
    lb_puts(&b, json ? "\"}\n" : "\n");

    write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), line, b.len);
    errno = saved_errno;
}

void ps_errbuf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
