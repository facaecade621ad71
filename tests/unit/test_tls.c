/*
 * test_tls: context building, error messages, identity matching and file
 * rotation in core/tls.c. Certificates are made with the openssl CLI in a
 * temporary directory (the integration tests cover handshakes end to end).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "core/tls.h"
#include "testutil.h"
#include "testcerts.h"

static int setup(void **state)
{
    (void)state;
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "tls"), 0);
    make_ca("ca");
    make_ca("ca2");
    make_leaf("ca", "server", "DNS:localhost,IP:127.0.0.1");
    make_leaf("ca", "node-1", "DNS:node-1.example,DNS:alias-1");
    make_leaf("ca2", "server2", "DNS:localhost");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(dir);
}

static void test_server_and_client_contexts(void **state)
{
    (void)state;
    char err[512];
    ps_tls *t = NULL;
    ps_tls_opts o = {.server = 1,
                     .cert_file = p("server.crt"),
                     .key_file = p("server.key"),
                     .ca_file = p("ca.crt"),
                     .require_client_cert = 1};
    assert_int_equal(ps_tls_new(&t, &o, err, sizeof(err)), 0);
    SSL *ssl = ps_tls_new_ssl(t, NULL);
    assert_non_null(ssl);
    assert_int_equal(SSL_get_verify_mode(ssl), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    SSL_free(ssl);
    ps_tls_free(t);

    ps_tls_opts c = {.ca_file = p("ca.crt")};
    assert_int_equal(ps_tls_new(&t, &c, err, sizeof(err)), 0);
    ssl = ps_tls_new_ssl(t, "receiver.example");
    assert_non_null(ssl);
    assert_int_equal(SSL_get_verify_mode(ssl), SSL_VERIFY_PEER);
    assert_string_equal(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), "receiver.example");
    assert_int_equal(SSL_CTX_get_min_proto_version(SSL_get_SSL_CTX(ssl)), TLS1_2_VERSION);
    SSL_free(ssl);
    /* An IP address is verified as one, and sent as no SNI (RFC 6066). */
    ssl = ps_tls_new_ssl(t, "127.0.0.1");
    assert_non_null(ssl);
    assert_null(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    SSL_free(ssl);
    ps_tls_free(t);
}

static void test_errors_name_the_file_not_the_key(void **state)
{
    (void)state;
    char err[512];
    ps_tls *t = NULL;
    ps_tls_opts o = {.server = 1, .cert_file = p("missing.crt"), .key_file = p("server.key")};
    assert_int_equal(ps_tls_new(&t, &o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing.crt"));
    assert_null(t);
    /* A key of another certificate. */
    ps_tls_opts m = {.server = 1, .cert_file = p("server.crt"), .key_file = p("node-1.key")};
    assert_int_equal(ps_tls_new(&t, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "match")); /* "key values mismatch" */
    /* Garbage PEM text: the message never quotes it. */
    ps_tls_opts g = {.server = 1, .cert_pem = p("server.crt"), .key_pem = "SECRET-KEY-TEXT"};
    assert_int_equal(ps_tls_new(&t, &g, err, sizeof(err)), -1);
    assert_null(strstr(err, "SECRET"));
}

static void test_pem_text(void **state)
{
    (void)state;
    char err[512];
    ps_tls *t = NULL;
    char *cert = tu_slurp(p("server.crt"), NULL), *key = tu_slurp(p("server.key"), NULL);
    char *ca = tu_slurp(p("ca.crt"), NULL);
    ps_tls_opts o = {.server = 1, .cert_pem = cert, .key_pem = key, .ca_pem = ca};
    assert_int_equal(ps_tls_new(&t, &o, err, sizeof(err)), 0);
    assert_int_equal(ps_tls_maybe_reload(t, err, sizeof(err)), 0); /* nothing to watch */
    ps_tls_free(t);
    free(cert);
    free(key);
    free(ca);
}

static int collect(void *arg, const char *name)
{
    char *out = arg;
    strcat(out, name);
    strcat(out, ";");
    return 0;
}

static void test_names_and_patterns(void **state)
{
    (void)state;
    char *pats[] = {"node-*", "*.sensors.example"};
    assert_true(ps_tls_name_allowed("node-7", pats, 2));
    assert_true(ps_tls_name_allowed("NODE-7", pats, 2));
    assert_true(ps_tls_name_allowed("a.sensors.example", pats, 2));
    assert_false(ps_tls_name_allowed("evil.example", pats, 2));
    assert_false(ps_tls_name_allowed("node-7", pats, 0));

    /* A real handshake over a BIO pair: the server sees the client's SANs,
     * then its CN. */
    char err[512];
    ps_tls *srv = NULL, *cli = NULL;
    ps_tls_opts so = {.server = 1,
                      .cert_file = p("server.crt"),
                      .key_file = p("server.key"),
                      .ca_file = p("ca.crt"),
                      .require_client_cert = 1};
    ps_tls_opts co = {
        .cert_file = p("node-1.crt"), .key_file = p("node-1.key"), .ca_file = p("ca.crt")};
    assert_int_equal(ps_tls_new(&srv, &so, err, sizeof(err)), 0);
    assert_int_equal(ps_tls_new(&cli, &co, err, sizeof(err)), 0);
    SSL *s = ps_tls_new_ssl(srv, NULL), *c = ps_tls_new_ssl(cli, "localhost");
    char got[256] = "";
    assert_int_equal(ps_tls_peer_names(s, collect, got), -1); /* no peer yet */
    BIO *bs, *bc;
    assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    int done_s = 0, done_c = 0;
    for (int i = 0; i < 20 && !(done_s && done_c); i++) {
        if (!done_c)
            done_c = SSL_do_handshake(c) == 1;
        if (!done_s)
            done_s = SSL_do_handshake(s) == 1;
    }
    assert_true(done_s && done_c);
    assert_int_equal(ps_tls_peer_names(s, collect, got), 0);
    assert_string_equal(got, "node-1.example;alias-1;node-1;");
    SSL_free(s);
    SSL_free(c);
    ps_tls_free(srv);
    ps_tls_free(cli);
}

static void test_reload_on_file_change(void **state)
{
    (void)state;
    char err[512];
    sh("cd %s && mkdir -p live v1 v2 && cp server.crt v1/tls.crt && cp server.key v1/tls.key && "
       "cp server2.crt v2/tls.crt && cp server2.key v2/tls.key && cp node-1.key v2/bad.key && "
       "ln -sfn ../v1 live/..data && ln -sf ..data/tls.crt live/tls.crt && "
       "ln -sf ..data/tls.key live/tls.key",
       dir);
    ps_tls *t = NULL;
    ps_tls_opts o = {.server = 1, .cert_file = p("live/tls.crt"), .key_file = p("live/tls.key")};
    assert_int_equal(ps_tls_new(&t, &o, err, sizeof(err)), 0);
    SSL *old = ps_tls_new_ssl(t, NULL);
    assert_int_equal(ps_tls_maybe_reload(t, err, sizeof(err)), 0);
    /* The Kubernetes Secret update: swap the ..data link. */
    sh("cd %s/live && ln -sfn ../v2 ..data.tmp && "
       "mv -T ..data.tmp ..data",
       dir);
    assert_int_equal(ps_tls_maybe_reload(t, err, sizeof(err)), 1);
    assert_int_equal(ps_tls_maybe_reload(t, err, sizeof(err)), 0);
    SSL *fresh = ps_tls_new_ssl(t, NULL);
    assert_ptr_not_equal(SSL_get_SSL_CTX(old), SSL_get_SSL_CTX(fresh));
    /* The old session's context is still alive (reference counted). */
    assert_non_null(SSL_get_certificate(old));
    /* A key that does not match: reported once, the previous context stays. */
    sh("cp %s/v2/bad.key %s/v2/tls.key", dir, dir);
    assert_int_equal(ps_tls_maybe_reload(t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "match")); /* "key values mismatch" */
    assert_int_equal(ps_tls_maybe_reload(t, err, sizeof(err)), 0);
    SSL *still = ps_tls_new_ssl(t, NULL);
    assert_ptr_equal(SSL_get_SSL_CTX(still), SSL_get_SSL_CTX(fresh));
    SSL_free(old);
    SSL_free(fresh);
    SSL_free(still);
    ps_tls_free(t);
}

static void test_failure_labels(void **state)
{
    (void)state;
    assert_string_equal(ps_tls_failure_label(NULL, 0), "other");
    unsigned long e = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED);
    assert_string_equal(ps_tls_failure_label(NULL, e), "no_certificate");
    e = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER);
    assert_string_equal(ps_tls_failure_label(NULL, e), "plaintext");
    e = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV1_ALERT_UNKNOWN_CA);
    assert_string_equal(ps_tls_failure_label(NULL, e), "unknown_ca");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_and_client_contexts),
        cmocka_unit_test(test_errors_name_the_file_not_the_key),
        cmocka_unit_test(test_pem_text),
        cmocka_unit_test(test_names_and_patterns),
        cmocka_unit_test(test_reload_on_file_change),
        cmocka_unit_test(test_failure_labels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
