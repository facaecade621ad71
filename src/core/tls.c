/*
 * tls: building OpenSSL contexts from files or PEM text, with one policy for
 * both roles, and reloading them when mounted Secret files change.
 *
 * Why a wrapper: the policy (versions, ciphers, verification flags) must be
 * identical everywhere it is applied, and rotation needs to know which files
 * a context came from. Everything here runs on the loop thread.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3's defaults are all
 * AEAD already. */
#define PS_TLS12_CIPHERS                                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

typedef struct file_stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    int exists;
} file_stamp;

enum { F_CERT, F_KEY, F_CA, F_COUNT };

struct ps_tls {
    int server;
    int require_client_cert;
    int insecure_skip_verify;
    char *file[F_COUNT];
    char *pem[F_COUNT];
    file_stamp stamp[F_COUNT];
    file_stamp failed[F_COUNT]; /* stamps of material that did not load */
    int have_failed;
    SSL_CTX *ctx;
};

/* Encrypted keys are not supported: never let OpenSSL prompt on a tty. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static void ssl_err(char *err, size_t errlen, const char *what, const char *src)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s %s: %s", what, src, buf);
}

static BIO *pem_bio(const char *pem)
{
    return BIO_new_mem_buf(pem, -1);
}

static int load_cert(SSL_CTX *ctx, const ps_tls *t, char *err, size_t errlen)
{
    if (t->file[F_CERT]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, t->file[F_CERT]) != 1) {
            ssl_err(err, errlen, "cannot load certificate", t->file[F_CERT]);
            return -1;
        }
        return 0;
    }
    if (!t->pem[F_CERT])
        return 0;
    BIO *b = pem_bio(t->pem[F_CERT]);
    X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, no_password, NULL) : NULL;
    int rc = x && SSL_CTX_use_certificate(ctx, x) == 1 ? 0 : -1;
    X509_free(x);
    while (rc == 0) { /* the rest of the chain */
        X509 *ca = PEM_read_bio_X509(b, NULL, no_password, NULL);
        if (!ca)
            break;
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            rc = -1;
        }
    }
    BIO_free(b);
    if (rc != 0)
        ssl_err(err, errlen, "cannot load certificate", "from tls.certPem");
    ERR_clear_error(); /* the end-of-chain "no start line" */
    return rc;
}

static int load_key(SSL_CTX *ctx, const ps_tls *t, char *err, size_t errlen)
{
    if (t->file[F_KEY]) {
        if (SSL_CTX_use_PrivateKey_file(ctx, t->file[F_KEY], SSL_FILETYPE_PEM) != 1) {
            ssl_err(err, errlen, "cannot load private key", t->file[F_KEY]);
            return -1;
        }
    } else if (t->pem[F_KEY]) {
        BIO *b = pem_bio(t->pem[F_KEY]);
        EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
        int rc = k && SSL_CTX_use_PrivateKey(ctx, k) == 1 ? 0 : -1;
        EVP_PKEY_free(k);
        BIO_free(b);
        if (rc != 0) {
            ssl_err(err, errlen, "cannot load private key", "from tls.keyPem");
            return -1;
        }
    } else {
        return 0;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err(err, errlen, "private key does not match certificate",
                t->file[F_CERT] ? t->file[F_CERT] : "tls.certPem");
        return -1;
    }
    return 0;
}

static int load_ca(SSL_CTX *ctx, const ps_tls *t, char *err, size_t errlen)
{
    if (t->file[F_CA]) {
        if (SSL_CTX_load_verify_locations(ctx, t->file[F_CA], NULL) != 1) {
            ssl_err(err, errlen, "cannot load CA", t->file[F_CA]);
            return -1;
        }
        if (t->server) {
            /* Tells clients which CA to pick a certificate for. */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->file[F_CA]);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
            ERR_clear_error();
        }
        return 0;
    }
    if (t->pem[F_CA]) {
        BIO *b = pem_bio(t->pem[F_CA]);
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        int n = 0;
        for (X509 *x; b && (x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL;) {
            if (X509_STORE_add_cert(store, x) == 1)
                n++;
            X509_free(x);
        }
        BIO_free(b);
        ERR_clear_error();
        if (n == 0) {
            snprintf(err, errlen, "cannot load CA from tls.caPem: no certificate found");
            return -1;
        }
        return 0;
    }
    if (!t->server && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_err(err, errlen, "cannot load", "the system CA store");
        return -1;
    }
    return 0;
}

static SSL_CTX *build_ctx(const ps_tls *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(t->server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        ssl_err(err, errlen, "cannot create", "a TLS context");
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, PS_TLS12_CIPHERS) != 1) {
        ssl_err(err, errlen, "cannot set", "the TLS policy");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Sessions are long-lived and never resumed: no tickets to send. */
    SSL_CTX_set_num_tickets(ctx, 0);
    if (load_cert(ctx, t, err, errlen) != 0 || load_key(ctx, t, err, errlen) != 0 ||
        load_ca(ctx, t, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (t->server) {
        int have_ca = t->file[F_CA] || t->pem[F_CA];
        int mode = SSL_VERIFY_NONE;
        if (have_ca)
            mode = SSL_VERIFY_PEER | (t->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
        SSL_CTX_set_verify(ctx, mode, NULL);
    } else {
        SSL_CTX_set_verify(ctx, t->insecure_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    }
    SSL_CTX_set_verify_depth(ctx, 8);
    return ctx;
}

static void stamp_of(const char *path, file_stamp *s)
{
    struct stat st;
    memset(s, 0, sizeof(*s));
    if (!path || stat(path, &st) != 0)
        return;
    s->exists = 1;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->size = st.st_size;
    s->mtime = st.st_mtim;
    s->ctime = st.st_ctim;
}

static int stamp_eq(const file_stamp *a, const file_stamp *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static char *dup_opt(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

void ps_tls_free(ps_tls *t)
{
    if (!t)
        return;
    for (int i = 0; i < F_COUNT; i++) {
        free(t->file[i]);
        if (t->pem[i]) {
            OPENSSL_cleanse(t->pem[i], strlen(t->pem[i])); /* may hold a key */
            free(t->pem[i]);
        }
    }
    SSL_CTX_free(t->ctx);
    free(t);
}

int ps_tls_new(ps_tls **out, const ps_tls_opts *o, char *err, size_t errlen)
{
    ps_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int oom = 0;
    t->server = o->server;
    t->require_client_cert = o->require_client_cert;
    t->insecure_skip_verify = o->insecure_skip_verify;
    t->file[F_CERT] = dup_opt(o->cert_pem ? NULL : o->cert_file, &oom);
    t->file[F_KEY] = dup_opt(o->key_pem ? NULL : o->key_file, &oom);
    t->file[F_CA] = dup_opt(o->ca_pem ? NULL : o->ca_file, &oom);
    t->pem[F_CERT] = dup_opt(o->cert_pem, &oom);
    t->pem[F_KEY] = dup_opt(o->key_pem, &oom);
    t->pem[F_CA] = dup_opt(o->ca_pem, &oom);
    if (oom) {
        snprintf(err, errlen, "out of memory");
        ps_tls_free(t);
        return -1;
    }
    for (int i = 0; i < F_COUNT; i++)
        stamp_of(t->file[i], &t->stamp[i]);
    t->ctx = build_ctx(t, err, errlen);
    if (!t->ctx) {
        ps_tls_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int ps_tls_maybe_reload(ps_tls *t, char *err, size_t errlen)
{
    file_stamp now[F_COUNT];
    int changed = 0, same_as_failed = t->have_failed;
    for (int i = 0; i < F_COUNT; i++) {
        stamp_of(t->file[i], &now[i]);
        if (!stamp_eq(&now[i], &t->stamp[i]))
            changed = 1;
        if (!stamp_eq(&now[i], &t->failed[i]))
            same_as_failed = 0;
    }
    if (!changed || same_as_failed)
        return 0;
    SSL_CTX *ctx = build_ctx(t, err, errlen);
    if (!ctx) {
        /* Half-updated files (a cert without its new key) fail here; we try
         * again once they change again, and say so only once. */
        memcpy(t->failed, now, sizeof(now));
        t->have_failed = 1;
        return -1;
    }
    SSL_CTX_free(t->ctx); /* live SSLs keep their own reference */
    t->ctx = ctx;
    memcpy(t->stamp, now, sizeof(now));
    t->have_failed = 0;
    return 1;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *ps_tls_new_ssl(ps_tls *t, const char *host)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return NULL;
    if (t->server || !host)
        return ssl;
    if (is_ip_literal(host)) {
        if (!t->insecure_skip_verify &&
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1) {
            SSL_free(ssl);
            return NULL;
        }
        return ssl;
    }
    /* RFC 6066: SNI carries DNS names only. */
    if (SSL_set_tlsext_host_name(ssl, host) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    if (!t->insecure_skip_verify) {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(ssl, host) != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

int ps_tls_peer_names(SSL *ssl, int (*fn)(void *arg, const char *name), void *arg)
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (!x)
        return -1;
    int rc = 0;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && rc == 0 && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
        int n = ASN1_STRING_length(g->d.dNSName);
        char name[256];
        /* Embedded NULs would let "a\0.evil" pose as "a". */
        if (n <= 0 || n >= (int)sizeof(name) || memchr(d, 0, (size_t)n))
            continue;
        memcpy(name, d, (size_t)n);
        name[n] = '\0';
        rc = fn(arg, name);
    }
    GENERAL_NAMES_free(sans);
    if (rc != 0)
        return rc;
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    if (n > 0 && (size_t)n == strlen(cn))
        rc = fn(arg, cn);
    return rc;
}

int ps_tls_name_allowed(const char *name, char *const *patterns, int npatterns)
{
    for (int i = 0; i < npatterns; i++)
        if (fnmatch(patterns[i], name, FNM_CASEFOLD) == 0)
            return 1;
    return 0;
}

const char *ps_tls_failure_label(SSL *ssl, unsigned long err)
{
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    switch (v) {
    case X509_V_OK:
        break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "expired_certificate";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        return "unknown_ca";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "hostname_mismatch";
    default:
        return "bad_certificate";
    }
    if (ERR_GET_LIB(err) != ERR_LIB_SSL)
        return "other";
    switch (ERR_GET_REASON(err)) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return "no_certificate";
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        return "expired_certificate";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        return "unknown_ca";
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return "bad_certificate";
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
        return "plaintext";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
        return "protocol";
    default:
        return "other";
    }
}
