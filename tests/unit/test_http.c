/* Unit tests for the pure parts of core/http: Range parsing, JSON string
 * escaping, capture-name checks (path tricks), bearer tokens, loopback
 * detection, URL unescaping, snapshots. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/hostport.h"
#include "core/http.h"

static void range_ok(const char *h, uint64_t size, uint64_t start, uint64_t len)
{
    uint64_t s = 99, l = 99;
    assert_int_equal(ps_http_parse_range(h, size, &s, &l), PS_RANGE_OK);
    assert_int_equal(s, start);
    assert_int_equal(l, len);
}

static void test_range(void **state)
{
    (void)state;
    uint64_t s, l;
    range_ok("bytes=0-9", 100, 0, 10);
    range_ok("bytes=10-", 100, 10, 90);
    range_ok("bytes=-10", 100, 90, 10);
    range_ok("bytes=-1000", 100, 0, 100);   /* suffix longer than the body */
    range_ok("bytes=90-1000", 100, 90, 10); /* end clamped */
    range_ok("bytes=99-99", 100, 99, 1);
    range_ok("BYTES=1-2", 100, 1, 2);
    /* unsatisfiable: 416 */
    assert_int_equal(ps_http_parse_range("bytes=100-", 100, &s, &l), PS_RANGE_UNSATISFIABLE);
    assert_int_equal(ps_http_parse_range("bytes=200-300", 100, &s, &l), PS_RANGE_UNSATISFIABLE);
    assert_int_equal(ps_http_parse_range("bytes=-0", 100, &s, &l), PS_RANGE_UNSATISFIABLE);
    assert_int_equal(ps_http_parse_range("bytes=0-", 0, &s, &l), PS_RANGE_UNSATISFIABLE);
    /* ignored (whole body, 200) */
    static const char *const ignored[] = {
        NULL,         "",          "bytes=",     "bytes=-",
        "bytes=5-2",  "bytes=a-b", "items=0-1",  "bytes=0-1,3-4",
        "bytes=1-2x", "bytes=--1", "bytes=+1-2", "bytes=99999999999999999999-"};
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
        assert_int_equal(ps_http_parse_range(ignored[i], 100, &s, &l), PS_RANGE_NONE);
}

static void json_is(const char *in, const char *want)
{
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_json_str(&b, in), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    ps_buf_free(&b);
}

static void test_json(void **state)
{
    (void)state;
    json_is("", "\"\"");
    json_is("node-1", "\"node-1\"");
    json_is("a\"b\\c", "\"a\\\"b\\\\c\"");
    json_is("l1\nl2\t\x01", "\"l1\\u000al2\\u0009\\u0001\"");
    json_is("</script>", "\"</script>\""); /* served as JSON, never inlined in HTML */
    json_is("\xc3\xa9\x7f", "\"\\u00c3\\u00a9\\u007f\"");
}

static void test_bearer(void **state)
{
    (void)state;
    assert_true(ps_http_bearer_ok("Bearer s3cret", "s3cret"));
    assert_true(ps_http_bearer_ok("bearer  s3cret ", "s3cret"));
    assert_false(ps_http_bearer_ok("Bearer s3cre", "s3cret"));
    assert_false(ps_http_bearer_ok("Bearer s3cret2", "s3cret"));
    assert_false(ps_http_bearer_ok("Basic czNjcmV0", "s3cret"));
    assert_false(ps_http_bearer_ok("Bearer ", "s3cret"));
    assert_false(ps_http_bearer_ok("s3cret", "s3cret"));
    assert_false(ps_http_bearer_ok(NULL, "s3cret"));
    assert_false(ps_http_bearer_ok("Bearer x", NULL));
    assert_false(ps_http_bearer_ok("Bearer ", ""));
}

static void test_loopback(void **state)
{
    (void)state;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
    assert_true(ps_http_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET, "127.200.1.1", &a4.sin_addr);
    assert_true(ps_http_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET, "10.0.0.1", &a4.sin_addr);
    assert_false(ps_http_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET, "128.0.0.1", &a4.sin_addr);
    assert_false(ps_http_is_loopback((struct sockaddr *)&a4));
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::1", &a6.sin6_addr);
    assert_true(ps_http_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr);
    assert_true(ps_http_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "::ffff:10.0.0.1", &a6.sin6_addr);
    assert_false(ps_http_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "fe80::1", &a6.sin6_addr);
    assert_false(ps_http_is_loopback((struct sockaddr *)&a6));
    assert_false(ps_http_is_loopback(NULL));
}

static void unescape_is(const char *in, const char *want)
{
    char buf[128];
    strcpy(buf, in);
    size_t n = ps_http_unescape(buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_host(void **state)
{
    (void)state;
    const char *allowed[] = {"capture.internal", "RX.example"};
    const char *good[] = {"127.0.0.1",  "127.0.0.1:8080",        "10.1.2.3:80", "[::1]",
                          "[::1]:8080", "[fe80::1]:1",           "localhost",   "LocalHost:8080",
                          "localhost.", "capture.internal:8080", "rx.EXAMPLE",  NULL};
    for (int i = 0; good[i]; i++)
        assert_true(ps_http_host_ok(good[i], allowed, 2));
    assert_true(ps_http_host_ok(NULL, NULL, 0)); /* HTTP/1.0: no browser */
    const char *bad[] = {"attacker.example",
                         "attacker.example:8080",
                         "localhost.attacker.example",
                         "127.0.0.1.attacker.example",
                         "127.1",
                         "::1",
                         "[::1",
                         "[::1]x",
                         "[nothost]:80",
                         "127.0.0.1:",
                         "127.0.0.1:123456",
                         "127.0.0.1:8o",
                         ":8080",
                         "",
                         "capture.internal.evil",
                         "x.capture.internal",
                         NULL};
    for (int i = 0; bad[i]; i++)
        assert_false(ps_http_host_ok(bad[i], allowed, 2));
    assert_false(ps_http_host_ok("capture.internal", NULL, 0));
}

static void test_cross_origin(void **state)
{
    (void)state;
    assert_false(ps_http_cross_origin(NULL, NULL, "127.0.0.1:8080"));
    assert_false(ps_http_cross_origin("http://127.0.0.1:8080", NULL, "127.0.0.1:8080"));
    assert_false(ps_http_cross_origin("HTTPS://LOCALHOST:8080", NULL, "localhost:8080"));
    assert_false(ps_http_cross_origin(NULL, "same-origin", "127.0.0.1:8080"));
    assert_false(ps_http_cross_origin(NULL, "none", NULL));
    assert_true(ps_http_cross_origin("http://attacker.example", NULL, "127.0.0.1:8080"));
    assert_true(ps_http_cross_origin("http://127.0.0.1:9090", NULL, "127.0.0.1:8080"));
    assert_true(ps_http_cross_origin("null", NULL, "127.0.0.1:8080"));
    assert_true(ps_http_cross_origin("http://127.0.0.1:8080", NULL, NULL));
    assert_true(ps_http_cross_origin(NULL, "cross-site", "127.0.0.1:8080"));
    assert_true(ps_http_cross_origin(NULL, "same-site", "127.0.0.1:8080"));
}

static void test_unescape(void **state)
{
    (void)state;
    unescape_is("/captures/a%2eb", "/captures/a.b");
    unescape_is("%2e%2E%2f", "../");
    unescape_is("a%00b", "a%00b"); /* never cut at a NUL */
    unescape_is("a%zzb%4", "a%zzb%4");
    unescape_is("%5c", "\\");
    unescape_is("plain+text", "plain+text");
}

static void test_snapshot(void **state)
{
    (void)state;
    ps_snapshot s;
    ps_snapshot_init(&s);
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_snapshot_get(&s, &b), 0);
    assert_int_equal(b.len, 0);
    ps_snapshot_set(&s, strdup("one"), 3);
    ps_snapshot_set(&s, strdup("two!"), 4); /* frees "one" */
    assert_int_equal(ps_snapshot_get(&s, &b), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "two!", 4);
    ps_buf_free(&b);
    ps_snapshot_free(&s);
}

/* The one HOST:PORT grammar: what config validation, the flags and the HTTP
 * server accept. */
static void test_hostport_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        unsigned flags;
        const char *host;
        int port; /* -1: rejected */
    } cases[] = {
        {"127.0.0.1:8080", 0, "127.0.0.1", 8080},
        {"127.0.0.1:0", PS_HOSTPORT_PORT0, "127.0.0.1", 0},
        {"127.0.0.1:0", 0, NULL, -1}, /* a peer to dial needs a port */
        {"[::1]:8080", 0, "::1", 8080},
        {"[::]:0", PS_HOSTPORT_PORT0, "::", 0},
        {"localhost:65535", 0, "localhost", 65535},
        {"0.0.0.0:1", 0, "0.0.0.0", 1},
        {"::1:8080", 0, NULL, -1},   /* bare IPv6 */
        {"[::1]8080", 0, NULL, -1},  /* no colon after ']' */
        {"[::1]:", 0, NULL, -1},     /* no port */
        {"host:", 0, NULL, -1},      /* no port */
        {":8080", 0, NULL, -1},      /* no host */
        {"[]:8080", 0, NULL, -1},    /* empty brackets */
        {"8080", 0, NULL, -1},       /* no host at all */
        {"host:65536", 0, NULL, -1}, /* out of range */
        {"host:123456", 0, NULL, -1},
        {"host:+80", 0, NULL, -1}, /* digits only */
        {"host: 80", 0, NULL, -1},
        {"ho st:80", 0, NULL, -1},  /* blanks in the host */
        {"host\n:80", 0, NULL, -1}, /* control characters */
        {"a/b:80", 0, NULL, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ps_hostport hp;
        int r = ps_hostport_parse(cases[i].in, cases[i].flags, &hp);
        if (cases[i].port < 0) {
            if (r != -1)
                print_error("accepted '%s'\n", cases[i].in);
            assert_int_equal(r, -1);
            continue;
        }
        assert_int_equal(r, 0);
        assert_string_equal(hp.host, cases[i].host);
        assert_int_equal(hp.port, cases[i].port);
    }
    char longhost[300];
    memset(longhost, 'a', 256);
    strcpy(longhost + 256, ":80");
    ps_hostport hp;
    assert_int_equal(ps_hostport_parse(longhost, 0, &hp), -1);
    assert_int_equal(ps_hostport_parse(NULL, 0, &hp), -1);
}

static void test_hostport_format(void **state)
{
    (void)state;
    char out[64], why[160];
    assert_string_equal(ps_hostport_format("10.0.0.1", 80, out, sizeof(out)), "10.0.0.1:80");
    assert_string_equal(ps_hostport_format("::1", 8080, out, sizeof(out)), "[::1]:8080");
    /* formatting then parsing gives the same address back */
    ps_hostport hp;
    assert_int_equal(ps_hostport_parse(ps_hostport_format("fe80::1", 9, out, sizeof(out)), 0, &hp),
                     0);
    assert_string_equal(hp.host, "fe80::1");
    assert_int_equal(hp.port, 9);
    assert_string_equal(ps_hostport_explain("a\tb", "ADDR", why, sizeof(why)),
                        "'a?b' is not ADDR:PORT (IPv6 as [ADDR]:PORT)");
}

/* An address the server cannot bind is an error returned to the caller. */
static void test_start_unbindable(void **state)
{
    (void)state;
    char err[512];
    ps_http_opts o = {.listen = "127.0.0.1:0"};
    ps_http *h = NULL;
    assert_int_equal(ps_http_open(&h, &o, err, sizeof(err)), 0);
    assert_non_null(h);
    assert_true(ps_http_port(h) > 0);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", ps_http_port(h));
    assert_string_equal(ps_http_addr(h), want);
    /* the same address again: in use */
    ps_http_opts o2 = {.listen = want};
    ps_http *h2 = NULL;
    assert_int_equal(ps_http_open(&h2, &o2, err, sizeof(err)), -1);
    assert_null(h2);
    assert_non_null(strstr(err, want));
    ps_http_free(h);
    ps_http_opts o3 = {.listen = "::1:80"};
    assert_int_equal(ps_http_open(&h2, &o3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "http.listen"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_hostport_parse),
        cmocka_unit_test(test_hostport_format),
        cmocka_unit_test(test_start_unbindable),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_cross_origin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
