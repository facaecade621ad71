/*
 * tls: OpenSSL contexts for the sensor (client) and the receiver (server).
 *
 * A ps_tls holds the current SSL_CTX built from certificate, key and CA
 * material, each taken from a PEM file or from PEM text (an environment
 * variable on Fargate). Policy, the same on both sides: TLS 1.2 minimum,
 * 1.3 preferred, TLS 1.2 limited to ECDHE with AES-GCM or ChaCha20-Poly1305,
 * no compression, no renegotiation.
 *
 * Client: verifies the server's chain against the CA (the system store when
 * none is given) and its name (DNS name, or IP address when the name is a
 * literal address), and sends SNI for DNS names. insecure_skip_verify turns
 * verification off; the caller warns about it.
 *
 * Server: when a client CA is given, requests a client certificate and
 * verifies it; require_client_cert refuses handshakes without one.
 *
 * Rotation: ps_tls_maybe_reload() stats the files (inode, size, mtime,
 * ctime: a Kubernetes Secret update is a symlink swap, which changes the
 * inode) and rebuilds the SSL_CTX when they changed. SSL objects hold a
 * reference to the SSL_CTX they were made from, so established sessions keep
 * the old material and only new ones see the new. The receiver checks on
 * every accept, the sensor before every connection attempt.
 *
 * Private keys and passphrases are never logged: errors name files and
 * OpenSSL's reason, never contents.
 */
#ifndef PS_TLS_H
#define PS_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

typedef struct ps_tls ps_tls;

typedef struct ps_tls_opts {
    int server;
    /* Each piece: a file path or PEM text (text wins when both are given;
     * the config forbids both). NULL: not configured. */
    const char *cert_file, *cert_pem;
    const char *key_file, *key_pem;
    const char *ca_file, *ca_pem;
    int require_client_cert;  /* server, with a CA */
    int insecure_skip_verify; /* client */
} ps_tls_opts;

/* Builds the context. -1 with a message naming the file and the reason. */
int ps_tls_new(ps_tls **out, const ps_tls_opts *o, char *err, size_t errlen);
void ps_tls_free(ps_tls *t);

/* Rebuilds the context when a file changed since the last (re)load.
 * Returns 1 when reloaded, 0 when nothing changed, -1 when the new material
 * does not load (err says why; the previous context stays in use). */
int ps_tls_maybe_reload(ps_tls *t, char *err, size_t errlen);

/* A new SSL for one connection from the current context. Client: `host` is
 * the name to verify (and send as SNI unless it is an IP address). NULL on
 * OOM. The caller owns the SSL (net.c frees it). */
SSL *ps_tls_new_ssl(ps_tls *t, const char *host);

/* Identities of the peer's verified certificate: its DNS SANs, then its
 * subject CN. Calls fn for each until it returns non-zero; returns that
 * value, or 0. Returns -1 when the peer sent no certificate. */
int ps_tls_peer_names(SSL *ssl, int (*fn)(void *arg, const char *name), void *arg);

/* Does name match any of the glob patterns (fnmatch, case-insensitive)? */
int ps_tls_name_allowed(const char *name, char *const *patterns, int npatterns);

/* Labels a handshake failure for metrics: "expired_certificate",
 * "unknown_ca", "no_certificate", "bad_certificate", "hostname_mismatch",
 * "protocol" (version / cipher), "plaintext" or "other". */
const char *ps_tls_failure_label(SSL *ssl, unsigned long err);

#endif
