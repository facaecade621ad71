/*
 * net: framed protocol connections over libuv TCP streams.
 *
 * The receive side reads straight into one growable buffer. When a frame
 * header says how long the frame is, the buffer is grown to hold exactly that
 * frame (never more than max_frame + header), so a large batch arrives in a
 * few big reads with no copy. Complete frames are handed out in place; what is
 * left of a partial frame is moved to the front once per read.
 */
#include "net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PS_NET_READ_CHUNK (256 * 1024)

struct ps_conn {
    uv_tcp_t *tcp;
    ps_conn_cbs cbs;
    void *ud;
    uint32_t max_frame;
    ps_buf rx;
    size_t want; /* bytes the frame being received needs in total */
    int closing;
    int reading;
    int paused;
    int close_err;
    char close_reason[256];
    char peer[64];
};

typedef struct ps_write_req {
    uv_write_t req;
    ps_conn_done_cb done;
    void *arg;
    size_t len;
    uint8_t data[]; /* copied frame for ps_conn_send */
} ps_write_req;

ps_conn *ps_conn_new(uv_tcp_t *tcp, const ps_conn_cbs *cbs, void *ud, uint32_t max_frame,
                     const char *peer)
{
    ps_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->tcp = tcp;
    c->cbs = *cbs;
    c->ud = ud;
    c->max_frame = max_frame;
    snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "?");
    tcp->data = c;
    return c;
}

void *ps_conn_data(const ps_conn *c)
{
    return c->ud;
}

const char *ps_conn_peer(const ps_conn *c)
{
    return c->peer;
}

void ps_conn_set_max_frame(ps_conn *c, uint32_t max_frame)
{
    c->max_frame = max_frame;
}

size_t ps_conn_write_queue(const ps_conn *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)c->tcp);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    ps_conn *c = h->data;
    size_t room = PS_NET_READ_CHUNK;
    /* A frame larger than a chunk is read whole into room reserved for it. */
    if (c->want > c->rx.len && c->want - c->rx.len > room)
        room = c->want - c->rx.len;
    if (ps_buf_reserve(&c->rx, room) != 0) {
        buf->base = NULL;
        buf->len = 0; /* libuv reports UV_ENOBUFS to on_read */
        return;
    }
    buf->base = (char *)c->rx.data + c->rx.len;
    buf->len = c->rx.cap - c->rx.len;
}

static void conn_dispatch(ps_conn *c)
{
    size_t off = 0;
    while (!c->closing && !c->paused) {
        ps_frame f;
        size_t used = 0;
        int rc = ps_wire_frame_parse(c->rx.data + off, c->rx.len - off, c->max_frame, &f, &used);
        if (rc == PS_WIRE_NEED_MORE) {
            if (c->rx.len - off >= PS_WIRE_HDR_LEN)
                c->want = PS_WIRE_HDR_LEN + (size_t)ps_get_u32be(c->rx.data + off);
            else
                c->want = 0;
            break;
        }
        if (rc != PS_WIRE_OK) {
            char why[128];
            snprintf(why, sizeof(why), "bad frame header: %s", ps_wire_strerror(rc));
            ps_conn_close(c, PS_CONN_E_WIRE(rc), why);
            break;
        }
        off += used;
        c->want = 0;
        if (c->cbs.on_frame(c, &f) != 0)
            break;
    }
    if (!c->closing) {
        ps_buf_consume(&c->rx, off);
        if (c->cbs.on_read_done)
            c->cbs.on_read_done(c);
    }
}

static void on_close_handle(uv_handle_t *h)
{
    ps_conn *c = h->data;
    c->cbs.on_close(c, c->close_err, c->close_reason);
    ps_buf_free(&c->rx);
    free(c->tcp);
    free(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    ps_conn *c = s->data;
    if (nread < 0) {
        ps_conn_close(c, (int)nread,
                      nread == UV_EOF ? "connection closed by peer" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    c->rx.len += (size_t)nread;
    conn_dispatch(c);
}

int ps_conn_start(ps_conn *c)
{
    int rc = uv_read_start((uv_stream_t *)c->tcp, on_alloc, on_read);
    if (rc == 0)
        c->reading = 1;
    return rc;
}

void ps_conn_pause(ps_conn *c)
{
    if (c->reading && !c->closing) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = 0;
        c->paused = 1;
    }
}

void ps_conn_resume(ps_conn *c)
{
    if (c->paused && !c->closing) {
        c->paused = 0;
        if (ps_conn_start(c) != 0) {
            ps_conn_close(c, UV_EIO, "cannot resume reading");
            return;
        }
        if (c->rx.len > 0)
            conn_dispatch(c); /* frames that arrived before the pause */
    }
}

static void on_write(uv_write_t *req, int status)
{
    ps_write_req *w = (ps_write_req *)req;
    if (w->done)
        w->done(w->arg, status);
    free(w);
}

int ps_conn_send(ps_conn *c, const void *frame, size_t len)
{
    if (c->closing)
        return UV_ECANCELED;
    ps_write_req *w = malloc(sizeof(*w) + len);
    if (!w)
        return UV_ENOMEM;
    w->done = NULL;
    w->arg = NULL;
    w->len = len;
    memcpy(w->data, frame, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)c->tcp, &b, 1, on_write);
    if (rc != 0)
        free(w);
    return rc;
}

int ps_conn_sendv(ps_conn *c, const uv_buf_t *bufs, unsigned nbufs, ps_conn_done_cb done, void *arg)
{
    if (c->closing)
        return UV_ECANCELED;
    ps_write_req *w = malloc(sizeof(*w));
    if (!w)
        return UV_ENOMEM;
    w->done = done;
    w->arg = arg;
    w->len = 0;
    int rc = uv_write(&w->req, (uv_stream_t *)c->tcp, bufs, nbufs, on_write);
    if (rc != 0)
        free(w);
    return rc;
}

static void set_close(ps_conn *c, int err, const char *reason)
{
    c->closing = 1;
    c->close_err = err;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason ? reason : "");
    if (c->reading)
        uv_read_stop((uv_stream_t *)c->tcp);
    c->reading = 0;
}

void ps_conn_close(ps_conn *c, int err, const char *reason)
{
    /* Also escalates a graceful close whose peer stopped reading. */
    if (!c->closing)
        set_close(c, err, reason);
    if (!uv_is_closing((uv_handle_t *)c->tcp))
        uv_close((uv_handle_t *)c->tcp, on_close_handle);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    ps_conn *c = req->data;
    free(req);
    if (!uv_is_closing((uv_handle_t *)c->tcp))
        uv_close((uv_handle_t *)c->tcp, on_close_handle);
}

void ps_conn_close_graceful(ps_conn *c, int err, const char *reason)
{
    if (c->closing)
        return;
    set_close(c, err, reason);
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req) {
        req->data = c;
        if (uv_shutdown(req, (uv_stream_t *)c->tcp, on_shutdown) == 0)
            return;
        free(req);
    }
    uv_close((uv_handle_t *)c->tcp, on_close_handle);
}

void ps_sockaddr_str(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        uv_ip4_name(in, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(out, len, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(out, len, "[%s]:%d", ip, port);
    } else {
        snprintf(out, len, "?");
    }
}

int ps_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
        if (memchr(s, ':', hl))
            return -1; /* bare IPv6 needs brackets */
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    char *endp;
    long p = strtol(colon + 1, &endp, 10);
    if (colon[1] == '\0' || *endp != '\0' || p < 1 || p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}
