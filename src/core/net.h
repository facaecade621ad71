/*
 * net: a framed, full-duplex protocol connection over a libuv TCP stream
 * (prefix ps_conn_, after the object; ps_sockaddr_str and ps_split_hostport
 * are its address helpers).
 *
 * A ps_conn owns its uv_tcp_t and a receive buffer. Bytes that arrive are cut
 * into wire frames (wire.h) and handed to on_frame one at a time; a frame's
 * declared length is checked against max_frame before its payload is
 * buffered, so a peer can never make us hold more than one maximal frame.
 * After a batch of frames from one read, on_read_done runs (the receiver uses
 * it to flush its files and acknowledge once per read, not once per frame).
 *
 * Sending: ps_conn_send() copies a small encoded frame; ps_conn_sendv() sends
 * caller memory without copying and calls `done` when libuv no longer needs
 * it (on success and on cancellation alike), which is how the sensor's spool
 * keeps batch memory alive exactly as long as a write references it.
 *
 * Closing: ps_conn_close() is idempotent; on_close runs exactly once, after
 * which the ps_conn is freed and must not be used. Pending write callbacks
 * fire (with a non-zero status) before on_close.
 *
 * TLS: ps_conn_use_tls() before ps_conn_start() makes the connection speak
 * TLS (OpenSSL over a BIO of this module's own): ciphertext read from the
 * socket is what SSL_read decrypts into the plaintext the frame parser cuts,
 * and what SSL_write produces is taken over by one uv_write per send. The
 * handshake is driven by reads; sends made before it completes are queued
 * (copied) and go out once it does. Nothing above this module changes: the
 * frame callbacks see plaintext either way. With TLS, ps_conn_sendv() copies
 * the caller's bytes into SSL at call time (encryption), so `done` means
 * "the encrypted copy was written" and the caller's memory is in fact free
 * as soon as sendv returns; `done` still fires exactly once, from the loop,
 * never from inside sendv.
 */
#ifndef PS_NET_H
#define PS_NET_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "wire.h"

typedef struct ps_conn ps_conn;

typedef struct ps_conn_cbs {
    /* Returns 0 to go on, -1 to stop: the callee has called ps_conn_close. */
    int (*on_frame)(ps_conn *c, const ps_frame *f);
    void (*on_read_done)(ps_conn *c); /* may be NULL */
    /* err: 0 for a clean local close, a uv error (UV_EOF, ...) or a negative
     * ps_wire_err (as PS_CONN_E_WIRE(e)); reason is a human-readable text. */
    void (*on_close)(ps_conn *c, int err, const char *reason);
} ps_conn_cbs;

/* Wire errors are reported below libuv's error range. */
#define PS_CONN_E_WIRE(e) (-10000 + (e))
#define PS_CONN_IS_WIRE_ERR(e) ((e) <= -10000 + 0 && (e) > -10100)
/* TLS failures; ps_conn_fail_label() names the kind for metrics. */
#define PS_CONN_E_TLS (-10200)          /* handshake or record layer failed */
#define PS_CONN_E_TLS_ON_PLAIN (-10201) /* a TLS ClientHello on a plaintext conn */
#define PS_CONN_E_PLAIN_ON_TLS (-10202) /* plaintext where a TLS handshake was due */
#define PS_CONN_E_TRUNCATED (-10203)    /* EOF in the middle of a frame */

/* Takes an initialised, connected uv_tcp_t allocated with malloc: the conn
 * owns it from now on (and frees it). peer is a printable address. */
ps_conn *ps_conn_new(uv_tcp_t *tcp, const ps_conn_cbs *cbs, void *ud, uint32_t max_frame,
                     const char *peer);
int ps_conn_start(ps_conn *c);

/* Speak TLS on this connection (call before ps_conn_start). Takes ownership
 * of ssl (made by ps_tls_new_ssl) in every case. server: the accepting side;
 * a server that sees plaintext instead of a ClientHello answers with a
 * plaintext REJECT saying TLS is required, so the peer's error is clear. */
typedef struct ssl_st SSL;
int ps_conn_use_tls(ps_conn *c, SSL *ssl, int server);
/* The connection's SSL (NULL for plaintext) and whether its handshake is done. */
SSL *ps_conn_ssl(const ps_conn *c);
int ps_conn_secure(const ps_conn *c);
/* After a TLS failure: a short label for metrics ("unknown_ca", ...). */
const char *ps_conn_fail_label(const ps_conn *c);
void ps_conn_set_max_frame(ps_conn *c, uint32_t max_frame);
void *ps_conn_data(const ps_conn *c);
const char *ps_conn_peer(const ps_conn *c);

int ps_conn_send(ps_conn *c, const void *frame, size_t len);
typedef void (*ps_conn_done_cb)(void *arg, int status);
/* Over TLS, sendv before the handshake completed returns UV_ENOTCONN. */
int ps_conn_sendv(ps_conn *c, const uv_buf_t *bufs, unsigned nbufs, ps_conn_done_cb done,
                  void *arg);
/* Memory the connection holds for writes: bytes queued in libuv and not yet
 * handed to the kernel; over TLS, every ciphertext byte not yet released,
 * including writes the kernel took whose completion has not run yet (a
 * sender that loops while the socket accepts would otherwise pile up
 * ciphertext copies beyond any window it sets). */
size_t ps_conn_write_queue(const ps_conn *c);

/*
 * A memory budget shared by many connections (the receiver's, across all
 * sessions): the bytes of receive buffers grown beyond the base every
 * connection has (512 KiB plus a frame header, never charged) to hold a
 * large frame. Such a buffer exists only while its frame arrives; it is
 * freed once the frame is dispatched. A connection whose next frame does
 * not fit in what is left waits: it stops reading (the peer's TCP window
 * fills) until memory comes back, and is woken in arrival order. The
 * budget must exceed the largest frame, or such a frame waits forever.
 * Counting: ps_conn_budget_waits counts every time a connection had to
 * wait. Owned by the caller; free it after every connection using it has
 * closed.
 */
typedef struct ps_conn_budget ps_conn_budget;
/* limit: bytes; 0 = unlimited (still counted). NULL on OOM. */
ps_conn_budget *ps_conn_budget_new(size_t limit);
void ps_conn_budget_free(ps_conn_budget *b);
/* Before ps_conn_start. */
void ps_conn_set_budget(ps_conn *c, ps_conn_budget *b);
size_t ps_conn_budget_used(const ps_conn_budget *b);
uint64_t ps_conn_budget_waits(const ps_conn_budget *b);
/* Resumes waiting connections while there is room (called by the module
 * itself whenever memory is given back). */
void ps_conn_budget_wake(ps_conn_budget *b);
/* Nonzero while some connection waits for the budget. */
int ps_conn_budget_waiting(const ps_conn_budget *b);
/* Nonzero while c waits for the budget. */
int ps_conn_starved(const ps_conn *c);
/* Bytes of the budget c holds now (a receive buffer grown for a frame),
 * and since when without completing a frame (uv_now of its loop; may be
 * NULL). */
size_t ps_conn_budget_held(const ps_conn *c, uint64_t *since_ms);
/* Bytes its receive buffer holds now (capacity). */
size_t ps_conn_rx_bytes(const ps_conn *c);

/* Stops and starts reading (backpressure from the writer). */
void ps_conn_pause(ps_conn *c);
void ps_conn_resume(ps_conn *c);
/* True between ps_conn_pause and ps_conn_resume. */
int ps_conn_paused(const ps_conn *c);

/* Closes at once: pending writes are cancelled. Calling it after
 * ps_conn_close_graceful() cuts a shutdown short (a peer that stopped reading). */
void ps_conn_close(ps_conn *c, int err, const char *reason);
/* Stops reading, lets queued writes (a REJECT, a last ACK) reach the peer,
 * shuts the write side down, then closes. */
void ps_conn_close_graceful(ps_conn *c, int err, const char *reason);

/* "1.2.3.4:5" or "[::1]:5" for a sockaddr. */
void ps_sockaddr_str(const struct sockaddr *sa, char *out, size_t len);

#endif
