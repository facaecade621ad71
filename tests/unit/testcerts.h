/*
 * testcerts: throw-away certificates for the unit tests that need TLS
 * (test_tls, test_net), made with the openssl CLI in a temporary directory
 * `dir` that the including test creates in its setup and removes in its
 * teardown. Include after <cmocka.h>: failures are cmocka assertions.
 */
#ifndef PS_TESTCERTS_H
#define PS_TESTCERTS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static char dir[256];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

static const char *p(const char *name)
{
    static char bufs[8][512];
    static int n;
    char *b = bufs[n++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static void make_ca(const char *name)
{
    sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
       "-keyout %s.key -out %s.crt -subj /CN=%s -addext basicConstraints=critical,CA:TRUE "
       "2>/dev/null",
       dir, name, name, name);
}

static void make_leaf(const char *ca, const char *name, const char *san)
{
    sh("cd %s && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
       "-keyout %s.key -out %s.csr -subj /CN=%s 2>/dev/null && "
       "printf 'subjectAltName=%s\\n' > %s.ext && "
       "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days 2 "
       "-extfile %s.ext -out %s.crt 2>/dev/null",
       dir, name, name, name, san, name, name, ca, ca, name, name);
}

#endif
