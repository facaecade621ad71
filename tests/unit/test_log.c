/*
 * Unit tests for core/log: level names and parsing, filtering, the text and
 * JSON line formats (read back from a temporary file and parsed), escaping,
 * truncation of huge messages, the stderr fallback, and whole lines under
 * concurrent writers.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "testutil.h"

static char tmp_path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/ps-test-log-XXXXXX");
    int fd = mkstemp(tmp_path);
    if (fd < 0)
        return -1;
    close(fd);
    unlink(tmp_path); /* ps_log_open must create it */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ps_log_free();
    ps_log_set_level(PS_LOG_INFO);
    unlink(tmp_path);
    return 0;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* "2026-11-26T08:50:50.123Z", and within a minute of now. */
static void check_ts(const char *ts, size_t len)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    assert_int_equal(len, strlen(pat));
    for (size_t i = 0; i < len; i++) {
        if (pat[i] == 'd')
            assert_true(ts[i] >= '0' && ts[i] <= '9');
        else
            assert_int_equal(ts[i], pat[i]);
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char tmp[32];
    memcpy(tmp, ts, 19);
    tmp[19] = '\0';
    assert_non_null(strptime(tmp, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    assert_true(t <= now + 1 && t >= now - 60);
}

/* ---- a minimal JSON reader for one flat object of strings ---- */

typedef struct jfield {
    char key[32];
    char *val;
} jfield;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses a JSON string at *p (at the opening quote) into out; returns 0. */
static int jstring(const char **p, char *out, size_t outlen)
{
    const char *s = *p;
    size_t n = 0;
    if (*s++ != '"')
        return -1;
    while (*s && *s != '"') {
        unsigned cp;
        if ((unsigned char)*s < 0x20)
            return -1; /* raw control characters are invalid JSON */
        if (*s != '\\') {
            cp = (unsigned char)*s++;
            if (n + 1 < outlen)
                out[n++] = (char)cp;
            continue;
        }
        s++;
        switch (*s++) {
        case '"':
            cp = '"';
            break;
        case '\\':
            cp = '\\';
            break;
        case '/':
            cp = '/';
            break;
        case 'n':
            cp = '\n';
            break;
        case 't':
            cp = '\t';
            break;
        case 'r':
            cp = '\r';
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'u':
            cp = 0;
            for (int i = 0; i < 4; i++) {
                int h = hexval(*s++);
                if (h < 0)
                    return -1;
                cp = cp * 16 + (unsigned)h;
            }
            break;
        default:
            return -1;
        }
        /* encode as UTF-8 */
        char enc[4];
        size_t el;
        if (cp < 0x80) {
            enc[0] = (char)cp, el = 1;
        } else if (cp < 0x800) {
            enc[0] = (char)(0xc0 | (cp >> 6)), enc[1] = (char)(0x80 | (cp & 0x3f)), el = 2;
        } else {
            enc[0] = (char)(0xe0 | (cp >> 12)), enc[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
            enc[2] = (char)(0x80 | (cp & 0x3f)), el = 3;
        }
        for (size_t i = 0; i < el; i++)
            if (n + 1 < outlen)
                out[n++] = enc[i];
    }
    if (*s != '"')
        return -1;
    out[n] = '\0';
    *p = s + 1;
    return 0;
}

/* Parses {"k":"v",...}\n; fills up to 8 fields; returns the count or -1. */
static int jparse(const char *line, jfield *f, int max, size_t vallen)
{
    const char *p = line;
    int n = 0;
    if (*p++ != '{')
        return -1;
    while (*p != '}') {
        if (n == max)
            return -1;
        if (jstring(&p, f[n].key, sizeof(f[n].key)) || *p++ != ':')
            return -1;
        f[n].val = malloc(vallen);
        assert_non_null(f[n].val);
        if (jstring(&p, f[n].val, vallen)) {
            free(f[n].val);
            return -1;
        }
        n++;
        if (*p == ',')
            p++;
        else if (*p != '}')
            return -1;
    }
    p++;
    if (strcmp(p, "\n") != 0)
        return -1;
    return n;
}

static void jfree(jfield *f, int n)
{
    for (int i = 0; i < n; i++)
        free(f[i].val);
}

static const char *jget(jfield *f, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(f[i].key, key) == 0)
            return f[i].val;
    return NULL;
}

/* ---- tests ---- */

static void test_level_parse(void **state)
{
    (void)state;
    ps_log_level l;
    assert_int_equal(ps_log_level_parse("debug", &l), 0);
    assert_int_equal(l, PS_LOG_DEBUG);
    assert_int_equal(ps_log_level_parse("info", &l), 0);
    assert_int_equal(l, PS_LOG_INFO);
    assert_int_equal(ps_log_level_parse("warn", &l), 0);
    assert_int_equal(l, PS_LOG_WARN);
    assert_int_equal(ps_log_level_parse("warning", &l), 0);
    assert_int_equal(l, PS_LOG_WARN);
    assert_int_equal(ps_log_level_parse("error", &l), 0);
    assert_int_equal(l, PS_LOG_ERROR);
    assert_int_equal(ps_log_level_parse("DEBUG", &l), 0);
    assert_int_equal(l, PS_LOG_DEBUG);
    l = PS_LOG_ERROR;
    assert_int_equal(ps_log_level_parse("verbose", &l), -1);
    assert_int_equal(ps_log_level_parse("", &l), -1);
    assert_int_equal(ps_log_level_parse(NULL, &l), -1);
    assert_int_equal(l, PS_LOG_ERROR); /* untouched on failure */

    assert_string_equal(ps_log_level_name(PS_LOG_DEBUG), "debug");
    assert_string_equal(ps_log_level_name(PS_LOG_INFO), "info");
    assert_string_equal(ps_log_level_name(PS_LOG_WARN), "warn");
    assert_string_equal(ps_log_level_name(PS_LOG_ERROR), "error");
    for (int i = PS_LOG_DEBUG; i <= PS_LOG_ERROR; i++) {
        assert_int_equal(ps_log_level_parse(ps_log_level_name((ps_log_level)i), &l), 0);
        assert_int_equal((int)l, i);
    }

    ps_log_set_level(PS_LOG_WARN);
    assert_int_equal(ps_log_get_level(), PS_LOG_WARN);
    ps_log_set_level(PS_LOG_DEBUG);
    assert_int_equal(ps_log_get_level(), PS_LOG_DEBUG);
}

static void test_text_line(void **state)
{
    (void)state;
    assert_int_equal(ps_log_open(PS_LOG_INFO, 0, tmp_path), 0);
    ps_info("receiver", "listening on %s:%d", "0.0.0.0", 8081);
    ps_log_free();

    char *s = tu_slurp(tmp_path, NULL);
    assert_int_equal(count_lines(s), 1);
    check_ts(s, 24);
    assert_string_equal(s + 24, " INFO  receiver: listening on 0.0.0.0:8081\n");
    free(s);

    struct stat st;
    assert_int_equal(stat(tmp_path, &st), 0);
    assert_int_equal(st.st_mode & 0027, 0); /* 0640 minus the umask */
}

static void test_text_levels_and_escaping(void **state)
{
    (void)state;
    assert_int_equal(ps_log_open(PS_LOG_DEBUG, 0, tmp_path), 0);
    ps_debug("a", "d");
    ps_warn("b", "w");
    ps_error("c", "e");
    ps_info(NULL, "two\nlines\x01");
    ps_log_free();

    char *s = tu_slurp(tmp_path, NULL);
    assert_int_equal(count_lines(s), 4);
    char *l1 = s, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    char *l4 = strchr(l3, '\n') + 1;
    assert_memory_equal(l1 + 24, " DEBUG a: d\n", 12);
    assert_memory_equal(l2 + 24, " WARN  b: w\n", 12);
    assert_memory_equal(l3 + 24, " ERROR c: e\n", 12);
    /* a newline in a message must not start a forged second line */
    assert_string_equal(l4 + 24, " INFO  -: two\\nlines\\x01\n");
    free(s);
}

static void test_filtering(void **state)
{
    (void)state;
    assert_int_equal(ps_log_open(PS_LOG_WARN, 0, tmp_path), 0);
    assert_int_equal(ps_log_get_level(), PS_LOG_WARN);
    ps_debug("t", "no-debug");
    ps_info("t", "no-info");
    ps_warn("t", "yes-warn");
    ps_error("t", "yes-error");
    ps_log_set_level(PS_LOG_ERROR);
    ps_warn("t", "no-warn-2");
    ps_log_set_level(PS_LOG_DEBUG);
    ps_debug("t", "yes-debug");
    ps_log_free();

    char *s = tu_slurp(tmp_path, NULL);
    assert_int_equal(count_lines(s), 3);
    assert_null(strstr(s, "no-"));
    assert_non_null(strstr(s, "yes-warn"));
    assert_non_null(strstr(s, "yes-error"));
    assert_non_null(strstr(s, "yes-debug"));
    free(s);
}

static void test_json_line(void **state)
{
    (void)state;
    const char *msg = "say \"hi\"\nback\\slash\ttab \x01\x1f caf\xc3\xa9 \xe2\x82\xac";
    assert_int_equal(ps_log_open(PS_LOG_DEBUG, 1, tmp_path), 0);
    ps_warn("recv\"er", "%s", msg);
    ps_debug("receiver", "plain");
    ps_log_free();

    char *s = tu_slurp(tmp_path, NULL);
    assert_int_equal(count_lines(s), 2);
    char *second = strchr(s, '\n') + 1;
    second[-1] = '\0';
    char line[4096];
    snprintf(line, sizeof(line), "%s\n", s);
    /* escaping: no raw quote inside the message, no raw control bytes */
    assert_non_null(strstr(line, "say \\\"hi\\\"\\nback\\\\slash\\ttab \\u0001\\u001f"));

    jfield f[8];
    int n = jparse(line, f, 8, 4096);
    assert_int_equal(n, 4);
    assert_string_equal(f[0].key, "ts"); /* field order is part of the format */
    assert_string_equal(f[1].key, "level");
    assert_string_equal(f[2].key, "component");
    assert_string_equal(f[3].key, "msg");
    check_ts(jget(f, n, "ts"), strlen(jget(f, n, "ts")));
    assert_string_equal(jget(f, n, "level"), "warn");
    assert_string_equal(jget(f, n, "component"), "recv\"er");
    assert_string_equal(jget(f, n, "msg"), msg);
    jfree(f, n);

    n = jparse(second, f, 8, 4096);
    assert_int_equal(n, 4);
    assert_string_equal(jget(f, n, "level"), "debug");
    assert_string_equal(jget(f, n, "msg"), "plain");
    jfree(f, n);
    free(s);
}

static void test_json_invalid_utf8(void **state)
{
    (void)state;
    assert_int_equal(ps_log_open(PS_LOG_INFO, 1, tmp_path), 0);
    ps_info("x", "bad \xff\xc3 end \xed\xa0\x80!"); /* stray, cut, surrogate */
    ps_log_free();
    char *s = tu_slurp(tmp_path, NULL);
    jfield f[8];
    int n = jparse(s, f, 8, 4096);
    assert_int_equal(n, 4);
    assert_string_equal(jget(f, n, "msg"),
                        "bad \xef\xbf\xbd\xef\xbf\xbd end \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!");
    jfree(f, n);
    free(s);
}

static void test_truncation(void **state)
{
    (void)state;
    size_t big = 100000;
    char *msg = malloc(big + 1);
    assert_non_null(msg);
    memset(msg, 'x', big);
    msg[big] = '\0';

    for (int json = 0; json <= 1; json++) {
        unlink(tmp_path);
        assert_int_equal(ps_log_open(PS_LOG_INFO, json, tmp_path), 0);
        ps_info("big", "%s", msg);
        /* escaping that would overflow the line is cut too */
        if (json) {
            memset(msg, '\x01', 5000);
            ps_info("big", "%s", msg);
        }
        ps_log_free();
        char *s = tu_slurp(tmp_path, NULL);
        assert_int_equal(count_lines(s), json ? 2 : 1);
        char *nl = strchr(s, '\n');
        assert_true(nl - s < 10000);
        assert_true(nl - s > 8000);
        assert_non_null(strstr(s, "...[truncated]"));
        if (json) {
            jfield f[8];
            char *line2 = strdup(nl + 1);
            assert_non_null(line2);
            nl[1] = '\0';
            int n = jparse(s, f, 8, 20000);
            assert_int_equal(n, 4);
            jfree(f, n);
            n = jparse(line2, f, 8, 20000);
            free(line2);
            assert_int_equal(n, 4);
            const char *m = jget(f, n, "msg");
            assert_true(strlen(m) > 1000);
            assert_string_equal(m + strlen(m) - 14, "...[truncated]");
            jfree(f, n);
        }
        free(s);
    }
    free(msg);
}

static void test_append_and_errno(void **state)
{
    (void)state;
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "old\n", 4), 4);
    close(fd);

    assert_int_equal(ps_log_open(PS_LOG_INFO, 0, tmp_path), 0);
    errno = EAGAIN;
    ps_info("t", "new");
    assert_int_equal(errno, EAGAIN); /* logging must not clobber errno */
    ps_log_free();
    char *s = tu_slurp(tmp_path, NULL);
    assert_int_equal(count_lines(s), 2);
    assert_memory_equal(s, "old\n", 4);
    assert_non_null(strstr(s, " INFO  t: new\n"));
    free(s);
}

static void test_open_failure_keeps_stderr(void **state)
{
    (void)state;
    char capture[sizeof(tmp_path) + 16];
    snprintf(capture, sizeof(capture), "%s.stderr", tmp_path);
    int cfd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(cfd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(cfd, STDERR_FILENO), STDERR_FILENO);

    errno = 0;
    int r = ps_log_open(PS_LOG_INFO, 0, "/nonexistent-dir/ps.log");
    int open_errno = errno;
    ps_info("t", "to-stderr");
    /* an empty name also means stderr */
    int r2 = ps_log_open(PS_LOG_INFO, 0, "");
    ps_info("t", "also-stderr");

    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(cfd);

    assert_int_equal(r, -1);
    assert_int_equal(open_errno, ENOENT);
    assert_int_equal(r2, 0);
    char *s = tu_slurp(capture, NULL);
    assert_non_null(strstr(s, " INFO  t: to-stderr\n"));
    assert_non_null(strstr(s, " INFO  t: also-stderr\n"));
    free(s);
    unlink(capture);
}

#define THREADS 4
#define LINES 400

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[3000];
    for (int i = 0; i < LINES; i++) {
        size_t n = (size_t)((i * 131 + id * 17) % (int)(sizeof(pad) - 1));
        memset(pad, 'a' + id, n);
        pad[n] = '\0';
        ps_info("thr", "id=%d seq=%d len=%zu pad=%s end", id, i, n, pad);
    }
    return NULL;
}

static void test_concurrent_lines_whole(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    assert_int_equal(ps_log_open(PS_LOG_INFO, 0, tmp_path), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    ps_log_free();

    char *s = tu_slurp(tmp_path, NULL);
    assert_int_equal(count_lines(s), THREADS * LINES);
    int seen[THREADS] = {0};
    for (char *line = s; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        int id, seq;
        size_t len;
        assert_int_equal(sscanf(line + 24, " INFO  thr: id=%d seq=%d len=%zu", &id, &seq, &len), 3);
        assert_true(id >= 0 && id < THREADS);
        assert_int_equal(seq, seen[id]++); /* each thread's lines in order */
        char *pad = strstr(line, "pad=") + 4;
        for (size_t i = 0; i < len; i++)
            assert_int_equal(pad[i], 'a' + id);
        assert_string_equal(pad + len, " end");
        line = nl + 1;
    }
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_level_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_levels_and_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filtering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_and_errno, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failure_keeps_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lines_whole, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
