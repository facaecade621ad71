/*
 * listener: accept loop. Accepting is cheap and never blocks; everything a
 * connection does afterwards belongs to its session.
 */
#include "listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/net.h"

struct ps_listener {
    uv_tcp_t tcp;
    ps_listener_cb on_conn;
    void *ud;
    char addr[80];
};

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
    ps_listener *l = server->data;
    if (status != 0) {
        ps_warn("receiver", "accept on %s failed: %s", l->addr, uv_strerror(status));
        return;
    }
    uv_tcp_t *c = malloc(sizeof(*c));
    if (!c || uv_tcp_init(server->loop, c) != 0) {
        free(c);
        ps_error("receiver", "out of memory accepting a connection");
        return;
    }
    if (uv_accept(server, (uv_stream_t *)c) != 0) {
        uv_close((uv_handle_t *)c, free_handle);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char peer[80] = "?";
    if (uv_tcp_getpeername(c, (struct sockaddr *)&ss, &len) == 0)
        ps_sockaddr_str((struct sockaddr *)&ss, peer, sizeof(peer));
    uv_tcp_nodelay(c, 1);
    l->on_conn(l->ud, c, peer);
}

int ps_listener_open(ps_listener **out, uv_loop_t *loop, const char *addr, int port,
                     ps_listener_cb on_conn, void *ud, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: not an IP address", addr, port);
        return -1;
    }
    ps_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->on_conn = on_conn;
    l->ud = ud;
    l->tcp.data = l;
    uv_tcp_init(loop, &l->tcp);
    int rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", addr, port, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, free_handle);
        return -1;
    }
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) == 0)
        ps_sockaddr_str((struct sockaddr *)&ss, l->addr, sizeof(l->addr));
    else
        snprintf(l->addr, sizeof(l->addr), "%s:%d", addr, port);
    *out = l;
    return 0;
}

const char *ps_listener_addr(const ps_listener *l)
{
    return l->addr;
}

void ps_listener_close(ps_listener *l)
{
    if (l)
        uv_close((uv_handle_t *)&l->tcp, free_handle);
}
