/*
 * net: framed protocol connections over libuv TCP streams.
 *
 * The receive side reads straight into one growable buffer. When a frame
 * header says how long the frame is, the buffer is grown to hold exactly that
 * frame (never more than max_frame + header), so a large batch arrives in a
 * few big reads with no copy. Complete frames are handed out in place; what is
 * left of a partial frame is moved to the front once per read.
 *
 * With TLS the socket's bytes go into a ciphertext buffer that OpenSSL reads
 * through a BIO of our own (conn_bio); the plaintext lands in the same
 * receive buffer, so framing and its length checks are identical for both.
 * Writes are encrypted at once into a ciphertext buffer sized for the send,
 * which the BIO appends to and one uv_write per send takes over whole. Why
 * not OpenSSL's memory BIOs: each costs a copy of every byte (the socket's
 * bytes into the read BIO, the write BIO's bytes out into a write request),
 * ~0.1 CPU s per million 1400-byte packets on each side (docs/performance.md).
 */
#include "net.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls.h"
#include "wire.h"

#define PS_NET_READ_CHUNK (256 * 1024)
#define PS_NET_TLS_CHUNK (64 * 1024)
/* Frames at least this large are read up to their end and no further. */
#define PS_NET_WHOLE_FRAME_MIN (64 * 1024)
#define PS_TLS_RECORD_TYPE_HANDSHAKE 0x16
/* Receive buffers up to this size are granted without asking the budget and
 * kept between frames; larger ones exist only while a large frame arrives.
 * A read reserves a chunk behind a partial frame of up to a chunk, so a
 * stream of frames that each fit a chunk stays within two. */
#define PS_NET_RX_BASE (2 * PS_NET_READ_CHUNK + PS_WIRE_HDR_LEN)

/* One budget, many connections: see ps_conn_budget in net.h. Waiting
 * connections form a FIFO, woken in order when memory is given back. */
struct ps_conn_budget {
    size_t limit, used;
    uint64_t waits;
    ps_conn *wait_head, *wait_tail;
};

struct ps_conn {
    uv_tcp_t *tcp;
    ps_conn_cbs cbs;
    void *ud;
    uint32_t max_frame;
    ps_buf rx;
    size_t rx_off; /* rx bytes before this offset are dispatched frames */
    size_t want;   /* bytes the frame being received needs in total */
    int closing;
    int reading;
    int paused;
    int close_err;
    char close_reason[256];
    char peer[64];
    int first_seen; /* the first bytes from the peer were checked */
    /* TLS */
    SSL *ssl; /* reads and writes through conn_bio */
    int tls_server, tls_ready, tls_started;
    ps_buf pending; /* plaintext sent before the handshake completed */
    ps_buf cin;     /* ciphertext read from the socket, OpenSSL reads from cin_off */
    size_t cin_off;
    ps_buf cout; /* ciphertext OpenSSL wrote, not yet handed to a uv_write */
    const char *fail_label;
    size_t tls_out; /* ciphertext bytes in write requests not yet completed */
    /* memory budget */
    ps_conn_budget *budget;
    size_t charged;     /* rx.cap as charged to the budget */
    uint64_t held_ms;   /* uv_now when it began to hold some, or last cut a frame since */
    int starved;        /* reading stopped until the budget has room */
    ps_conn *wait_next; /* in the budget's FIFO while starved */
};

static void on_write(uv_write_t *req, int status);

/* Received bytes not yet cut into frames. */
static size_t rx_pending(const ps_conn *c)
{
    return c->rx.len - c->rx_off;
}

/* Brings the budget's account of c in line with rx.cap; giving memory back
 * wakes the connections waiting for it. */
static void budget_sync(ps_conn *c)
{
    ps_conn_budget *b = c->budget;
    size_t charge = c->rx.cap > PS_NET_RX_BASE ? c->rx.cap : 0; /* the base is free */
    if (!b || c->charged == charge)
        return;
    int gave = charge < c->charged;
    if (c->charged == 0)
        c->held_ms = uv_now(c->tcp->loop);
    b->used = b->used - c->charged + charge;
    c->charged = charge;
    if (gave)
        ps_conn_budget_wake(b);
}

static void budget_wait(ps_conn *c)
{
    if (c->starved)
        return;
    c->starved = 1;
    c->budget->waits++;
    c->wait_next = NULL;
    if (c->budget->wait_tail)
        c->budget->wait_tail->wait_next = c;
    else
        c->budget->wait_head = c;
    c->budget->wait_tail = c;
}

static void budget_unlink(ps_conn *c)
{
    ps_conn_budget *b = c->budget;
    if (!b || !c->starved)
        return;
    ps_conn *prev = NULL;
    for (ps_conn *p = b->wait_head; p; prev = p, p = p->wait_next) {
        if (p != c)
            continue;
        if (prev)
            prev->wait_next = c->wait_next;
        else
            b->wait_head = c->wait_next;
        if (b->wait_tail == c)
            b->wait_tail = prev;
        break;
    }
    c->starved = 0;
    c->wait_next = NULL;
}

/* Makes room for `room` more bytes after the pending ones. Dispatched frames
 * are dropped from the front lazily: the partial frame at the end is moved to
 * the front only when the space behind it is too small, not after every
 * read (that moved almost every byte a second time). Returns 1 when the
 * budget has no room for the growth (c now waits), -1 on OOM. */
static int rx_reserve(ps_conn *c, size_t room)
{
    if (c->rx_off > 0 && c->rx.cap - c->rx.len < room) {
        size_t pending = rx_pending(c);
        memmove(c->rx.data, c->rx.data + c->rx_off, pending);
        c->rx.len = pending;
        c->rx_off = 0;
    }
    if (c->rx.cap - c->rx.len >= room)
        return 0;
    size_t need = c->rx.len + room;
    ps_conn_budget *b = c->budget;
    if (b && b->limit && need > PS_NET_RX_BASE && b->used - c->charged + need > b->limit) {
        budget_wait(c);
        return 1;
    }
    /* Exact growth: what the budget charges is what is allocated. */
    int rc = b ? ps_buf_reserve_exact(&c->rx, room) : ps_buf_reserve(&c->rx, room);
    budget_sync(c);
    return rc;
}

/* After a read's frames are dispatched and nothing is left: a buffer grown
 * for a large frame goes back at once, so a peer's one large frame does not
 * hold memory for the connection's life. */
static void rx_shrink(ps_conn *c)
{
    if (c->rx.len == 0 && c->rx.cap > PS_NET_RX_BASE) {
        ps_buf_free(&c->rx);
        budget_sync(c);
    }
}

typedef struct ps_write_req {
    uv_write_t req;
    ps_conn_done_cb done;
    void *arg;
    size_t len;
    size_t tls_out; /* bytes counted in the connection's tls_out */
    uint8_t *own;   /* ciphertext taken over from cout, freed with the request */
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
    if (c->ssl)
        return c->tls_out;
    return uv_stream_get_write_queue_size((const uv_stream_t *)c->tcp);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    ps_conn *c = h->data;
    if (c->ssl) {
        /* What OpenSSL left unread (part of a record) moves to the front
         * once it is all that is left, so cin stays about a chunk. */
        if (c->cin_off > 0) {
            ps_buf_consume(&c->cin, c->cin_off);
            c->cin_off = 0;
        }
        if (ps_buf_reserve(&c->cin, PS_NET_TLS_CHUNK) != 0) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        buf->base = (char *)c->cin.data + c->cin.len;
        buf->len = c->cin.cap - c->cin.len;
        return;
    }
    size_t room = PS_NET_READ_CHUNK;
    /* A frame larger than a chunk is read whole into room reserved for it. */
    if (c->want > rx_pending(c) && c->want - rx_pending(c) > room)
        room = c->want - rx_pending(c);
    if (rx_reserve(c, room) != 0) {
        buf->base = NULL;
        buf->len = 0; /* libuv reports UV_ENOBUFS to on_read (c->starved: wait) */
        return;
    }
    buf->base = (char *)c->rx.data + c->rx.len;
    buf->len = c->rx.cap - c->rx.len;
    /* Inside a large frame (a data batch), read no further than its end:
     * the frame is then complete, dispatched and dropped whole, and no
     * partial next frame is left behind to move to the front. Otherwise
     * read at most a chunk, which a full batch frame (block size plus
     * headers) never fits in: its first read learns its length, the second
     * completes it. */
    size_t limit = PS_NET_READ_CHUNK;
    if (c->want >= PS_NET_WHOLE_FRAME_MIN && c->want > rx_pending(c))
        limit = c->want - rx_pending(c);
    if (buf->len > limit)
        buf->len = limit;
}

static void conn_dispatch(ps_conn *c)
{
    size_t off = c->rx_off;
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
            char why[160];
            if (rc == PS_WIRE_E_TOO_LONG)
                snprintf(why, sizeof(why),
                         "frame of %" PRIu32 " bytes exceeds the negotiated maximum of %" PRIu32
                         " bytes",
                         ps_get_u32be(c->rx.data + off), c->max_frame);
            else
                snprintf(why, sizeof(why), "bad frame header: %s", ps_wire_strerror(rc));
            ps_conn_close(c, PS_CONN_E_WIRE(rc), why);
            break;
        }
        off += used;
        c->want = 0;
        if (c->charged)
            c->held_ms = uv_now(c->tcp->loop); /* holding, but making progress */
        if (c->cbs.on_frame(c, &f) != 0)
            break;
    }
    if (!c->closing) {
        c->rx_off = off;
        if (c->rx_off == c->rx.len) {
            c->rx.len = c->rx_off = 0;
            rx_shrink(c);
        }
        if (c->cbs.on_read_done)
            c->cbs.on_read_done(c);
    }
}

static void on_close_handle(uv_handle_t *h)
{
    ps_conn *c = h->data;
    c->cbs.on_close(c, c->close_err, c->close_reason);
    budget_unlink(c);
    ps_buf_free(&c->rx);
    budget_sync(c);
    if (c->pending.data)
        OPENSSL_cleanse(c->pending.data, c->pending.cap); /* may hold the token */
    ps_buf_free(&c->pending);
    SSL_free(c->ssl);
    ps_buf_free(&c->cin);
    ps_buf_free(&c->cout);
    free(c->tcp);
    free(c);
}

static void send_plain_reject(ps_conn *c, const char *why)
{
    ps_buf out = PS_BUF_INIT;
    ps_reject r = {.code = PS_REJECT_PROTOCOL, .reason = why, .reason_len = (uint16_t)strlen(why)};
    if (ps_wire_encode_reject(&out, &r) == 0 && out.len > 0) {
        ps_write_req *w = malloc(sizeof(*w) + out.len);
        if (w) {
            w->tls_out = 0;
            w->own = NULL;
            w->done = NULL;
            w->arg = NULL;
            w->len = out.len;
            memcpy(w->data, out.data, out.len);
            uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)out.len);
            if (uv_write(&w->req, (uv_stream_t *)c->tcp, &b, 1, on_write) != 0)
                free(w);
        }
    }
    ps_buf_free(&out);
}

/* Hands the ciphertext OpenSSL wrote to one uv_write, which owns it from
 * then on; `done` rides on it. */
static int tls_flush(ps_conn *c, ps_conn_done_cb done, void *arg)
{
    size_t n = c->cout.len;
    if (n == 0) {
        /* A send that produced no ciphertext has no write to hang `done` on;
         * refuse it rather than call `done` from inside sendv. */
        if (done)
            return UV_EINVAL;
        return 0;
    }
    if (n > UINT_MAX)
        return UV_E2BIG;
    ps_write_req *w = malloc(sizeof(*w));
    if (!w)
        return UV_ENOMEM;
    w->done = done;
    w->arg = arg;
    w->len = n;
    w->tls_out = 0;
    w->own = c->cout.data;
    c->cout = (ps_buf)PS_BUF_INIT;
    uv_buf_t b = uv_buf_init((char *)w->own, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)c->tcp, &b, 1, on_write);
    if (rc != 0) {
        free(w->own);
        free(w);
        return rc;
    }
    w->tls_out = n;
    c->tls_out += n;
    return 0;
}

static void tls_fail(ps_conn *c, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char lib[200] = "";
    char why[256];
    if (e)
        ERR_error_string_n(e, lib, sizeof(lib));
    long v = SSL_get_verify_result(c->ssl);
    c->fail_label = ps_tls_failure_label(c->ssl, e);
    /* "error:0A000086:SSL routines::certificate verify failed": the last part
     * is the reason; the verify result says which certificate check. */
    const char *reason = strrchr(lib, ':');
    reason = reason ? reason + 1 : (e ? lib : "connection closed");
    if (v != X509_V_OK)
        snprintf(why, sizeof(why), "%s: %s (%s)", what, reason, X509_verify_cert_error_string(v));
    else
        snprintf(why, sizeof(why), "%s: %s", what, reason);
    ERR_clear_error();
    tls_flush(c, NULL, NULL); /* our alert, if any */
    ps_conn_close_graceful(c, PS_CONN_E_TLS, why);
}

/* conn_bio: OpenSSL's transport. Reads take from cin (empty: "retry", as a
 * socket with nothing to read would say), writes append to cout. */
static int conn_bio_write(BIO *b, const char *data, size_t len, size_t *written)
{
    ps_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (ps_buf_append(&c->cout, data, len) != 0)
        return 0; /* out of memory: not a retry, SSL_write fails */
    *written = len;
    return 1;
}

static int conn_bio_read(BIO *b, char *out, size_t len, size_t *readbytes)
{
    ps_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t avail = c->cin.len - c->cin_off;
    if (avail == 0) {
        BIO_set_retry_read(b);
        *readbytes = 0;
        return 0;
    }
    size_t n = len < avail ? len : avail;
    memcpy(out, c->cin.data + c->cin_off, n);
    c->cin_off += n;
    if (c->cin_off == c->cin.len)
        c->cin.len = c->cin_off = 0;
    *readbytes = n;
    return 1;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    ps_conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* tls_flush sends cout */
    case BIO_CTRL_PENDING:
        return c ? (long)(c->cin.len - c->cin_off) : 0;
    case BIO_CTRL_WPENDING:
        return c ? (long)c->cout.len : 0;
    default:
        return 0;
    }
}

static int conn_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *conn_bio_method;
static uv_once_t conn_bio_once = UV_ONCE_INIT;

/* One method for the process, kept to its end (as OpenSSL's own are). */
static void conn_bio_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ps_conn");
    if (m &&
        (BIO_meth_set_write_ex(m, conn_bio_write) != 1 ||
         BIO_meth_set_read_ex(m, conn_bio_read) != 1 || BIO_meth_set_ctrl(m, conn_bio_ctrl) != 1 ||
         BIO_meth_set_create(m, conn_bio_create) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    conn_bio_method = m;
}

static int tls_write(ps_conn *c, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len > 0) {
        int n = SSL_write(c->ssl, b, len > INT_MAX ? INT_MAX : (int)len);
        if (n <= 0)
            return UV_EPROTO;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

static int tls_handshake(ps_conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->tls_ready = 1;
        int rc = 0;
        if (c->pending.len > 0) {
            rc = tls_write(c, c->pending.data, c->pending.len);
            OPENSSL_cleanse(c->pending.data, c->pending.len);
            ps_buf_reset(&c->pending);
        }
        if (rc == 0)
            rc = tls_flush(c, NULL, NULL);
        if (rc != 0) {
            ps_conn_close(c, rc, "cannot send after the TLS handshake");
            return -1;
        }
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (tls_flush(c, NULL, NULL) != 0) {
            ps_conn_close(c, UV_EIO, "cannot send the TLS handshake");
            return -1;
        }
        return 0;
    }
    tls_fail(c, "TLS handshake failed");
    return -1;
}

/* Moves the plaintext OpenSSL can produce into rx. Returns 1 when the peer
 * sent close_notify, -1 when the connection was closed, else 0. */
static int tls_read_plain(ps_conn *c)
{
    for (;;) {
        size_t room = PS_NET_TLS_CHUNK;
        if (c->want > rx_pending(c) && c->want - rx_pending(c) > room)
            room = c->want - rx_pending(c);
        int rr = rx_reserve(c, room);
        if (rr > 0) {
            /* The budget is spent: the rest waits in cin, and no
             * more is read from the socket until memory comes back. */
            if (c->reading) {
                uv_read_stop((uv_stream_t *)c->tcp);
                c->reading = 0;
            }
            return 0;
        }
        if (rr != 0) {
            ps_conn_close(c, UV_ENOBUFS, "out of memory");
            return -1;
        }
        size_t cap = c->rx.cap - c->rx.len;
        int n = SSL_read(c->ssl, c->rx.data + c->rx.len, cap > INT_MAX ? INT_MAX : (int)cap);
        if (n > 0) {
            c->rx.len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN)
            return 1;
        tls_fail(c, "TLS error");
        return -1;
    }
}

static void on_read_tls(ps_conn *c, const uint8_t *data, size_t n)
{
    if (!c->first_seen) {
        c->first_seen = 1;
        if (c->tls_server && data[0] != PS_TLS_RECORD_TYPE_HANDSHAKE) {
            c->fail_label = "plaintext";
            send_plain_reject(c, "this receiver requires TLS: enable tls on the sensor");
            ps_conn_close_graceful(c, PS_CONN_E_PLAIN_ON_TLS,
                                   "plaintext on a TLS port (the sensor does not use TLS)");
            return;
        }
    }
    (void)n; /* already in cin: on_read counted it */
    if (!c->tls_ready && (tls_handshake(c) != 0 || !c->tls_ready))
        return;
    if (c->paused || c->starved)
        return; /* left in cin until ps_conn_resume / the budget wakes c */
    int eof = tls_read_plain(c);
    if (eof < 0)
        return;
    if (tls_flush(c, NULL, NULL) != 0) { /* e.g. a key update answer */
        ps_conn_close(c, UV_EIO, "cannot send");
        return;
    }
    conn_dispatch(c);
    if (eof == 1 && !c->closing)
        ps_conn_close(c, UV_EOF, "connection closed by peer");
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ps_conn *c = s->data;
    if (nread == UV_ENOBUFS && c->starved) {
        /* No budget for this frame yet: stop reading, the peer's TCP
         * window fills and it waits; ps_conn_budget_wake resumes. */
        if (c->reading) {
            uv_read_stop((uv_stream_t *)c->tcp);
            c->reading = 0;
        }
        return;
    }
    if (nread < 0) {
        /* A connect-and-close (a TCP probe) sent nothing: an ordinary EOF. */
        if (nread == UV_EOF && c->ssl && !c->tls_ready && (c->first_seen || !c->tls_server)) {
            ps_conn_close(c, PS_CONN_E_TLS,
                          c->tls_server ? "connection closed during the TLS handshake"
                                        : "connection closed by the receiver during the TLS "
                                          "handshake (TLS not enabled there, or it refused "
                                          "the connection: see its log)");
            c->fail_label = "eof";
            return;
        }
        if (nread == UV_EOF && rx_pending(c) > 0) {
            char why[160];
            snprintf(why, sizeof(why),
                     "truncated frame: connection closed with %zu bytes of an "
                     "incomplete frame",
                     rx_pending(c));
            ps_conn_close(c, PS_CONN_E_TRUNCATED, why);
            return;
        }
        ps_conn_close(c, (int)nread,
                      nread == UV_EOF ? "connection closed by peer" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    if (c->ssl) {
        c->cin.len += (size_t)nread;
        on_read_tls(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    c->rx.len += (size_t)nread;
    if (!c->first_seen) {
        c->first_seen = 1;
        if (c->rx.data[c->rx_off] == PS_TLS_RECORD_TYPE_HANDSHAKE) {
            c->fail_label = "tls_on_plaintext";
            ps_conn_close(c, PS_CONN_E_TLS_ON_PLAIN, "TLS handshake on a plaintext port");
            return;
        }
    }
    conn_dispatch(c);
}

int ps_conn_use_tls(ps_conn *c, SSL *ssl, int server)
{
    uv_once(&conn_bio_once, conn_bio_init);
    BIO *bio = conn_bio_method ? BIO_new(conn_bio_method) : NULL;
    if (!ssl || !bio) {
        SSL_free(ssl);
        BIO_free(bio);
        return UV_ENOMEM;
    }
    BIO_set_data(bio, c);
    SSL_set_bio(ssl, bio, bio); /* one reference, taken by ssl */
    if (server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    c->ssl = ssl;
    c->tls_server = server;
    return 0;
}

SSL *ps_conn_ssl(const ps_conn *c)
{
    return c->ssl;
}

int ps_conn_secure(const ps_conn *c)
{
    return c->ssl && c->tls_ready;
}

const char *ps_conn_fail_label(const ps_conn *c)
{
    return c->fail_label;
}

int ps_conn_start(ps_conn *c)
{
    int rc = uv_read_start((uv_stream_t *)c->tcp, on_alloc, on_read);
    if (rc == 0)
        c->reading = 1;
    if (rc == 0 && c->ssl && !c->tls_server && !c->tls_started) {
        c->tls_started = 1;
        tls_handshake(c); /* the ClientHello; failures close c */
    }
    return rc;
}

void ps_conn_pause(ps_conn *c)
{
    if ((c->reading || c->starved) && !c->closing) {
        if (c->reading)
            uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = 0;
        c->paused = 1;
    }
}

int ps_conn_paused(const ps_conn *c)
{
    return c->paused;
}

/* Starts reading again and handles what waited (in cin, or
 * complete frames in rx). */
static void conn_restart(ps_conn *c)
{
    if (ps_conn_start(c) != 0) {
        ps_conn_close(c, UV_EIO, "cannot resume reading");
        return;
    }
    if (c->ssl && c->tls_ready) {
        int eof = tls_read_plain(c); /* what waited in cin */
        if (eof < 0)
            return;
        if (tls_flush(c, NULL, NULL) != 0) {
            ps_conn_close(c, UV_EIO, "cannot send");
            return;
        }
        if (eof == 1) {
            conn_dispatch(c);
            if (!c->closing)
                ps_conn_close(c, UV_EOF, "connection closed by peer");
            return;
        }
    }
    if (rx_pending(c) > 0)
        conn_dispatch(c); /* frames that arrived before the pause */
}

void ps_conn_resume(ps_conn *c)
{
    if (c->paused && !c->closing) {
        c->paused = 0;
        if (!c->starved)
            conn_restart(c);
    }
}

int ps_conn_budget_waiting(const ps_conn_budget *b)
{
    return b && b->wait_head != NULL;
}

size_t ps_conn_budget_held(const ps_conn *c, uint64_t *since_ms)
{
    if (since_ms)
        *since_ms = c->held_ms;
    return c->charged;
}

int ps_conn_starved(const ps_conn *c)
{
    return c->starved;
}

size_t ps_conn_rx_bytes(const ps_conn *c)
{
    return c->rx.cap;
}

ps_conn_budget *ps_conn_budget_new(size_t limit)
{
    ps_conn_budget *b = calloc(1, sizeof(*b));
    if (b)
        b->limit = limit;
    return b;
}

void ps_conn_budget_free(ps_conn_budget *b)
{
    free(b);
}

void ps_conn_set_budget(ps_conn *c, ps_conn_budget *b)
{
    c->budget = b;
    budget_sync(c);
}

size_t ps_conn_budget_used(const ps_conn_budget *b)
{
    return b ? b->used : 0;
}

uint64_t ps_conn_budget_waits(const ps_conn_budget *b)
{
    return b ? b->waits : 0;
}

void ps_conn_budget_wake(ps_conn_budget *b)
{
    /* Each woken connection tries again; one that still finds no room goes
     * back to the end of the queue (budget_wait), so the loop takes only
     * the connections waiting now. */
    ps_conn *list = b->wait_head;
    b->wait_head = b->wait_tail = NULL;
    while (list && b->used < b->limit) {
        ps_conn *c = list;
        list = c->wait_next;
        c->starved = 0;
        c->wait_next = NULL;
        if (!c->paused && !c->closing)
            conn_restart(c);
    }
    /* The rest keep waiting, ahead of any that joined meanwhile. */
    if (list) {
        ps_conn *tail = list;
        while (tail->wait_next)
            tail = tail->wait_next;
        tail->wait_next = b->wait_head;
        if (!b->wait_head)
            b->wait_tail = tail;
        b->wait_head = list;
    }
}

static void on_write(uv_write_t *req, int status)
{
    ps_write_req *w = (ps_write_req *)req;
    ps_conn *c = req->handle->data; /* valid: cancelled writes complete before on_close */
    c->tls_out -= w->tls_out;
    if (w->done)
        w->done(w->arg, status);
    free(w->own);
    free(w);
}

int ps_conn_send(ps_conn *c, const void *frame, size_t len)
{
    if (c->closing)
        return UV_ECANCELED;
    if (c->ssl) {
        if (!c->tls_ready)
            return ps_buf_append(&c->pending, frame, len) == 0 ? 0 : UV_ENOMEM;
        int rc = tls_write(c, frame, len);
        return rc ? rc : tls_flush(c, NULL, NULL);
    }
    ps_write_req *w = malloc(sizeof(*w) + len);
    if (!w)
        return UV_ENOMEM;
    w->tls_out = 0;
    w->own = NULL;
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
    if (c->ssl) {
        if (!c->tls_ready)
            return UV_ENOTCONN;
        /* cout sized once for the whole send: a record (16 KiB) costs at
         * most 5 bytes of header, 8 of explicit nonce and 16 of tag
         * (TLS 1.2 GCM; 1.3 less), so appending never reallocates. */
        size_t plain = 0;
        for (unsigned i = 0; i < nbufs; i++)
            plain += bufs[i].len;
        if (ps_buf_reserve_exact(&c->cout, plain + (plain / 16384 + 1) * 32) != 0)
            return UV_ENOMEM;
        size_t total = 0;
        for (unsigned i = 0; i < nbufs; i++) {
            int rc = tls_write(c, bufs[i].base, bufs[i].len);
            if (rc != 0)
                return rc;
            total += bufs[i].len;
        }
        if (total == 0)
            return UV_EINVAL;
        return tls_flush(c, done, arg);
    }
    ps_write_req *w = malloc(sizeof(*w));
    if (!w)
        return UV_ENOMEM;
    w->tls_out = 0;
    w->own = NULL;
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
    if (c->ssl && c->tls_ready) {
        SSL_shutdown(c->ssl); /* close_notify: the peer knows nothing was cut */
        tls_flush(c, NULL, NULL);
        ERR_clear_error();
    }
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
