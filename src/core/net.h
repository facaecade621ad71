/*
 * net: a framed, full-duplex protocol connection over a libuv TCP stream.
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
 * fire (with a non-zero status) before on_close. TLS will sit inside this
 * module, so nothing above it changes when it arrives.
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

/* Takes an initialised, connected uv_tcp_t allocated with malloc: the conn
 * owns it from now on (and frees it). peer is a printable address. */
ps_conn *ps_conn_new(uv_tcp_t *tcp, const ps_conn_cbs *cbs, void *ud, uint32_t max_frame,
                     const char *peer);
int ps_conn_start(ps_conn *c);
void ps_conn_set_max_frame(ps_conn *c, uint32_t max_frame);
void *ps_conn_data(const ps_conn *c);
const char *ps_conn_peer(const ps_conn *c);

int ps_conn_send(ps_conn *c, const void *frame, size_t len);
typedef void (*ps_conn_done_cb)(void *arg, int status);
int ps_conn_sendv(ps_conn *c, const uv_buf_t *bufs, unsigned nbufs, ps_conn_done_cb done,
                  void *arg);
/* Bytes queued in libuv and not yet handed to the kernel. */
size_t ps_conn_write_queue(const ps_conn *c);

/* Stops and starts reading (backpressure from the writer). */
void ps_conn_pause(ps_conn *c);
void ps_conn_resume(ps_conn *c);

/* Closes at once: pending writes are cancelled. Calling it after
 * ps_conn_close_graceful() cuts a shutdown short (a peer that stopped reading). */
void ps_conn_close(ps_conn *c, int err, const char *reason);
/* Stops reading, lets queued writes (a REJECT, a last ACK) reach the peer,
 * shuts the write side down, then closes. */
void ps_conn_close_graceful(ps_conn *c, int err, const char *reason);

/* "1.2.3.4:5" or "[::1]:5" for a sockaddr. */
void ps_sockaddr_str(const struct sockaddr *sa, char *out, size_t len);
/* Splits "HOST:PORT" / "[V6]:PORT" into host and port; -1 if malformed. */
int ps_split_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
