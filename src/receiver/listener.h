/*
 * listener: the receiver's listening TCP socket. Binds, listens, and hands
 * each accepted connection (a malloc'd, initialised uv_tcp_t plus the peer's
 * printable address) to on_conn, which takes ownership.
 */
#ifndef PS_LISTENER_H
#define PS_LISTENER_H

#include <stddef.h>

#include <uv.h>

typedef struct ps_listener ps_listener;
typedef void (*ps_listener_cb)(void *ud, uv_tcp_t *tcp, const char *peer);

/* Returns -1 with a message naming ADDR:PORT and the reason on failure. */
int ps_listener_open(ps_listener **out, uv_loop_t *loop, const char *addr, int port,
                     ps_listener_cb on_conn, void *ud, char *err, size_t errlen);
/* The bound address, "127.0.0.1:8081" (the real port when 0 was asked). */
const char *ps_listener_addr(const ps_listener *l);
/* Stops accepting; frees itself once libuv has closed the socket. */
void ps_listener_close(ps_listener *l);

#endif
