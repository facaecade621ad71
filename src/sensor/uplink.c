/*
 * uplink: the connection state machine; what is sent and kept is the
 * spool's (spool.h).
 *
 *   IDLE -> RESOLVING -> CONNECTING -> HANDSHAKE -> READY
 *     ^_____________ backoff timer <____ any failure ___|
 *
 * With TLS the connection is wrapped right after connect (net.c does the
 * handshake); the handshake timer covers TLS and HELLO together. A heartbeat
 * timer sends HEARTBEAT when nothing else was sent for heartbeat_ms, so an
 * idle but healthy sensor is not cut by the receiver's idle timeout.
 */
#include "uplink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include "core/log.h"
#include "core/net.h"
#include "home.h"
#include "spool.h"

#define PS_UPLINK_HANDSHAKE_MS 10000
#define PS_UPLINK_BACKOFF_MIN_MS 100
#define PS_UPLINK_BACKOFF_MAX_MS 5000
/* Bytes handed to libuv but not yet to the kernel (over TLS: ciphertext
 * copies not yet released, ps_conn_write_queue): beyond this, batches wait
 * in the spool unsent, where spool.dropPolicy oldest can still evict them.
 * The kernel's socket buffer holds more behind it, so 1 MiB keeps the
 * socket busy; over TLS it is also the memory the ciphertext takes. */
#define PS_UPLINK_WRITE_WINDOW (1u << 20)

typedef enum {
    UP_IDLE,
    UP_RESOLVING,
    UP_CONNECTING,
    UP_HANDSHAKE,
    UP_READY,
} up_state;

typedef struct up_iface {
    uint32_t index, linktype, snaplen;
    char *name, *desc;
    uint64_t job; /* 0: the continuous capture */
} up_iface;

struct ps_uplink {
    uv_loop_t *loop;
    ps_batcher *batcher;
    ps_uplink_opts o;
    char *host, *id, *token, *server_name;
    char target[300];
    uint64_t session;
    up_state state;
    uint16_t version; /* the session's (ACCEPT), valid in UP_READY */
    ps_conn *conn;
    uv_getaddrinfo_t gai;
    int resolving;
    uv_connect_t creq;
    uv_tcp_t *connecting;
    int connect_pending;
    uv_timer_t timer;
    uv_timer_t hb;
    uint64_t last_send_ms;
    ps_spool spool;
    uint64_t backoff_ms;
    uint64_t down_since_ms;
    char last_err[256];
    up_iface *ifaces;
    size_t n_ifaces;
    ps_buf scratch;
    int closing;
    void (*close_done)(void *ud);
    uint64_t connects, reconnects;
    ps_home home;                    /* the tier member this sensor sticks to */
    struct sockaddr_storage attempt; /* the address of the current attempt */
    int attempting;                  /* an attempt is under way, not yet accepted */
    char attempt_text[PS_HOME_ADDR_LEN];
};

static void up_connect(ps_uplink *u);
static void up_pump(ps_uplink *u);
static void up_maybe_finish_close(ps_uplink *u);
static uint64_t new_session(void);

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void release_batch(void *batcher, ps_batch *b)
{
    ps_batcher_release(batcher, b);
}

ps_uplink *ps_uplink_new(uv_loop_t *loop, ps_batcher *batcher, const ps_uplink_opts *o)
{
    ps_uplink *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->loop = loop;
    u->batcher = batcher;
    u->o = *o;
    u->host = dupstr(o->host);
    u->id = dupstr(o->sensor_id);
    u->token = dupstr(o->token ? o->token : "");
    u->server_name = dupstr(o->server_name ? o->server_name : o->host);
    if (!u->host || !u->id || !u->token || !u->server_name || uv_timer_init(loop, &u->timer) != 0) {
        free(u->host);
        free(u->id);
        free(u->token);
        free(u->server_name);
        free(u);
        return NULL;
    }
    uv_timer_init(loop, &u->hb); /* cannot fail once the first one worked */
    u->timer.data = u;
    u->hb.data = u;
    if (strchr(o->host, ':'))
        snprintf(u->target, sizeof(u->target), "[%s]:%d", o->host, o->port);
    else
        snprintf(u->target, sizeof(u->target), "%s:%d", o->host, o->port);
    u->session = new_session();
    u->backoff_ms = PS_UPLINK_BACKOFF_MIN_MS;
    ps_spool_init(&u->spool, o->spool_bytes, release_batch, batcher);
    return u;
}

const char *ps_uplink_target(const ps_uplink *u)
{
    return u->target;
}

void ps_uplink_get_totals(const ps_uplink *u, ps_uplink_totals *t)
{
    ps_spool_totals st;
    ps_spool_get_totals(&u->spool, &st);
    *t = (ps_uplink_totals){.acked_batches = st.acked_batches,
                            .acked_packets = st.acked_packets,
                            .connects = u->connects,
                            .reconnects = u->reconnects,
                            .spool_bytes = st.bytes,
                            .spool_batches = st.batches,
                            .resent_batches = st.resent_batches,
                            .evicted_batches = st.evicted_batches,
                            .evicted_packets = st.evicted_packets};
}

int ps_uplink_spool_full(const ps_uplink *u)
{
    return ps_spool_full(&u->spool);
}

int ps_uplink_drained(const ps_uplink *u)
{
    return ps_spool_empty(&u->spool);
}

/* ---- spool ---- */

void ps_uplink_on_sealed(void *ud, ps_batch *b)
{
    ps_uplink *u = ud;
    b->sender = u;
    ps_spool_push(&u->spool, b);
}

void ps_uplink_on_ready(void *ud, ps_batch *b)
{
    ps_uplink *u = ud;
    ps_spool_charge(&u->spool, b);
    up_pump(u);
}

uint64_t ps_uplink_evict_oldest(ps_uplink *u, void (*each)(void *ud, const ps_batch *b), void *ud)
{
    return ps_spool_evict_oldest(&u->spool, each, ud);
}

static void on_batch_written(void *arg, int status)
{
    ps_batch *b = arg;
    ps_uplink *u = b->sender;
    (void)status; /* a failed write shows up as a closed connection */
    ps_spool_written(&u->spool, b);
    if (status == 0)
        up_pump(u); /* room in the write window */
}

static void up_pump(ps_uplink *u)
{
    if (u->state != UP_READY || !u->conn)
        return;
    /* A quarter of the spool at most, so a small spool still has unsent
     * batches to evict. */
    uint64_t window = u->o.spool_bytes / 4 < PS_UPLINK_WRITE_WINDOW ? u->o.spool_bytes / 4
                                                                    : PS_UPLINK_WRITE_WINDOW;
    ps_batch *b;
    while ((b = ps_spool_next(&u->spool)) && ps_conn_write_queue(u->conn) < window) {
        uv_buf_t bufs[2] = {
            uv_buf_init((char *)b->prefix, sizeof(b->prefix)),
            uv_buf_init((char *)(uintptr_t)b->payload, b->payload_len),
        };
        int rc = ps_conn_sendv(u->conn, bufs, 2, on_batch_written, b);
        if (rc != 0) {
            ps_conn_close(u->conn, rc, uv_strerror(rc));
            return;
        }
        ps_spool_sent(&u->spool, b);
        u->last_send_ms = uv_now(u->loop);
    }
}

/* ---- connection ---- */

static void on_retry_timer(uv_timer_t *t)
{
    up_connect(t->data);
}

static void up_schedule_retry(ps_uplink *u, const char *why)
{
    snprintf(u->last_err, sizeof(u->last_err), "%s", why);
    if (u->attempting) /* this receiver did not take us: counts against it as a home */
        ps_home_failed(&u->home, (const struct sockaddr *)&u->attempt, uv_now(u->loop));
    u->attempting = 0;
    u->state = UP_IDLE;
    if (u->closing) {
        up_maybe_finish_close(u);
        return;
    }
    uint64_t now = uv_now(u->loop);
    if (now - u->down_since_ms >= u->o.connect_timeout_ms) {
        char msg[700];
        snprintf(msg, sizeof(msg), "cannot reach receiver %s: %s (gave up after %llu s)", u->target,
                 u->last_err, (unsigned long long)(now - u->down_since_ms) / 1000);
        u->o.on_fatal(u->o.ud, msg);
        return;
    }
    /* Full jitter around the current step keeps a fleet of sensors from
     * reconnecting in lockstep after a receiver restart. */
    uint32_t r = 0;
    uv_random(NULL, NULL, &r, sizeof(r), 0, NULL);
    uint64_t delay = u->backoff_ms / 2 + (r % (u->backoff_ms + 1));
    u->backoff_ms =
        u->backoff_ms * 2 > PS_UPLINK_BACKOFF_MAX_MS ? PS_UPLINK_BACKOFF_MAX_MS : u->backoff_ms * 2;
    ps_warn("sensor", "receiver %s: %s; retrying in %llu ms", u->target, why,
            (unsigned long long)delay);
    uv_timer_start(&u->timer, on_retry_timer, delay, 0);
}

static void on_handshake_timeout(uv_timer_t *t)
{
    ps_uplink *u = t->data;
    if (u->state == UP_HANDSHAKE && u->conn)
        ps_conn_close(u->conn, UV_ETIMEDOUT, "no answer to the handshake");
}

static int up_announce(ps_uplink *u, const up_iface *f)
{
    ps_iface w = {.index = f->index,
                  .linktype = f->linktype,
                  .snaplen = f->snaplen,
                  .name = f->name,
                  .name_len = (uint16_t)strlen(f->name),
                  .desc = f->desc,
                  .desc_len = (uint16_t)strlen(f->desc),
                  .job = f->job};
    if (f->job && u->version < PS_WIRE_VERSION_JOBS)
        return 0; /* a v1 receiver has no jobs: it never started this one */
    ps_buf_reset(&u->scratch);
    if (ps_wire_encode_iface_ver(&u->scratch, &w, u->version) != 0 ||
        ps_conn_send(u->conn, u->scratch.data, u->scratch.len) != 0)
        return -1;
    return 0;
}

static int up_send_ifaces(ps_uplink *u)
{
    for (size_t i = 0; i < u->n_ifaces; i++)
        if (up_announce(u, &u->ifaces[i]) != 0)
            return -1;
    return 0;
}

static void on_heartbeat(uv_timer_t *t)
{
    ps_uplink *u = t->data;
    if (u->state != UP_READY || !u->conn || uv_now(u->loop) - u->last_send_ms < u->o.heartbeat_ms)
        return;
    ps_buf_reset(&u->scratch);
    uint64_t now_ns = 0;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        now_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (ps_wire_encode_heartbeat(&u->scratch, now_ns) == 0 &&
        ps_conn_send(u->conn, u->scratch.data, u->scratch.len) == 0)
        u->last_send_ms = uv_now(u->loop);
}

/* The session id makes (sensor, session, seq) unique across restarts of
 * this sensor; uniqueness, not secrecy, is what it needs. */
static uint64_t new_session(void)
{
    uint64_t v;
    if (uv_random(NULL, NULL, &v, sizeof(v), 0, NULL) != 0)
        v = (uint64_t)uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
    return v;
}

/* The receiver claims to have written batches this session never sent:
 * another client used our (id, session) (or the receiver is broken).
 * Believing it would drop the spool and make every later batch a
 * "duplicate" there, so the stream goes on under a new session instead:
 * everything unacknowledged is sent again (perhaps twice, never lost). */
static int refuse_accept(ps_uplink *u, uint64_t claimed)
{
    uint64_t old = u->session;
    u->session = new_session();
    ps_error("sensor",
             "receiver %s says batch %llu of session %016llx is written, but this sensor sent "
             "only up to %llu: another client may have used this sensor's id and session; "
             "continuing as session %016llx (unacknowledged batches are sent again)",
             u->target, (unsigned long long)claimed, (unsigned long long)old,
             (unsigned long long)ps_spool_last_sent(&u->spool), (unsigned long long)u->session);
    ps_conn_close(u->conn, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE),
                  "receiver's ACCEPT claims batches this sensor never sent");
    return -1;
}

static int on_accept(ps_uplink *u, const ps_frame *f)
{
    ps_accept a;
    int rc = ps_wire_decode_accept(f->payload, f->len, &a);
    uint16_t vmax = u->o.on_job_start ? PS_WIRE_VERSION_JOBS : PS_WIRE_VERSION;
    if (rc != PS_WIRE_OK || a.version < PS_WIRE_VERSION || a.version > vmax ||
        a.codec != u->o.codec || a.max_batch_raw < u->o.max_batch_raw) {
        ps_conn_close(u->conn, PS_CONN_E_WIRE(rc ? rc : PS_WIRE_E_BAD_VALUE),
                      "receiver sent an ACCEPT we cannot use");
        return -1;
    }
    if (a.last_seq > ps_spool_last_sent(&u->spool))
        return refuse_accept(u, a.last_seq);
    uv_timer_stop(&u->timer);
    ps_conn_set_max_frame(u->conn, a.max_frame);
    u->state = UP_READY;
    u->version = a.version;
    u->last_send_ms = uv_now(u->loop);
    if (u->o.heartbeat_ms) {
        uint64_t tick = u->o.heartbeat_ms / 4 ? u->o.heartbeat_ms / 4 : 1;
        uv_timer_start(&u->hb, on_heartbeat, tick, tick);
    }
    u->backoff_ms = PS_UPLINK_BACKOFF_MIN_MS;
    u->connects++;
    if (u->connects > 1)
        u->reconnects++;
    if (u->attempting)
        ps_home_accepted(&u->home, (const struct sockaddr *)&u->attempt);
    u->attempting = 0;
    ps_info("sensor",
            "connected to receiver %s at %s (session %016llx, codec %s, resume after %llu)",
            u->target, u->attempt_text, (unsigned long long)u->session, ps_codec_name(a.codec),
            (unsigned long long)a.last_seq);
    /* Whatever the receiver already wrote needs no resend. */
    ps_spool_ack(&u->spool, a.last_seq);
    ps_spool_rewind(&u->spool);
    if (up_send_ifaces(u) != 0) {
        ps_conn_close(u->conn, UV_ENOMEM, "cannot announce interfaces");
        return -1;
    }
    up_pump(u);
    if (u->o.on_acked)
        u->o.on_acked(u->o.ud);
    return 0;
}

static int up_on_reject(ps_uplink *u, ps_conn *c, const ps_frame *f)
{
    ps_reject r;
    char reason[PS_WIRE_MAX_REASON_LEN + 1] = "";
    if (ps_wire_decode_reject(f->payload, f->len, &r) != PS_WIRE_OK) {
        ps_conn_close(c, PS_CONN_E_WIRE(PS_WIRE_E_TRUNCATED), "malformed REJECT");
        return -1;
    }
    /* The reason is the peer's text: keep it printable in our logs. */
    for (uint16_t i = 0; i < r.reason_len; i++) {
        unsigned char ch = (unsigned char)r.reason[i];
        reason[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    reason[r.reason_len] = '\0';
    if (r.code == PS_REJECT_BUSY || r.code == PS_REJECT_INTERNAL) {
        char why[PS_WIRE_MAX_REASON_LEN + 64];
        snprintf(why, sizeof(why), "receiver busy: %s", reason);
        ps_conn_close(c, UV_EAGAIN, why);
        return -1;
    }
    char msg[PS_WIRE_MAX_REASON_LEN + 400];
    snprintf(msg, sizeof(msg), "receiver %s rejected this sensor (code %u): %s", u->target, r.code,
             reason);
    ps_conn_close(c, UV_ECONNREFUSED, "rejected");
    /* A rejection (bad token, unusable link type) will not heal by itself:
     * retrying would only hide it. */
    u->o.on_fatal(u->o.ud, msg);
    return -1;
}

static int up_on_frame(ps_conn *c, const ps_frame *f)
{
    ps_uplink *u = ps_conn_data(c);
    if (f->type == PS_FRAME_REJECT)
        return up_on_reject(u, c, f);
    if (u->state == UP_HANDSHAKE && f->type == PS_FRAME_ACCEPT)
        return on_accept(u, f);
    if (u->state == UP_READY && f->type == PS_FRAME_ACK) {
        uint64_t seq;
        if (ps_wire_decode_u64(f->payload, f->len, &seq) != PS_WIRE_OK ||
            seq > ps_spool_last_sent(&u->spool)) {
            ps_conn_close(c, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE),
                          "receiver acknowledged a batch never sent");
            return -1;
        }
        ps_spool_ack(&u->spool, seq);
        if (u->o.on_acked)
            u->o.on_acked(u->o.ud);
        return 0;
    }
    if (u->state == UP_READY && f->type == PS_FRAME_HEARTBEAT)
        return 0;
    if (u->state == UP_READY && u->o.on_job_start && ps_wire_type_allowed(f->type, u->version) &&
        (f->type == PS_FRAME_JOB_START || f->type == PS_FRAME_JOB_STOP)) {
        int rc;
        if (f->type == PS_FRAME_JOB_START) {
            ps_job_start j;
            rc = ps_wire_decode_job_start(f->payload, f->len, &j);
            if (rc == PS_WIRE_OK)
                u->o.on_job_start(u->o.ud, &j);
        } else {
            uint64_t job;
            rc = ps_wire_decode_job_stop(f->payload, f->len, &job);
            if (rc == PS_WIRE_OK && u->o.on_job_stop)
                u->o.on_job_stop(u->o.ud, job);
        }
        if (rc != PS_WIRE_OK) {
            ps_conn_close(c, PS_CONN_E_WIRE(rc), "malformed job frame from the receiver");
            return -1;
        }
        return 0;
    }
    char why[96];
    snprintf(why, sizeof(why), "unexpected %s frame from the receiver",
             ps_frame_type_name(f->type));
    ps_conn_close(c, PS_CONN_E_WIRE(PS_WIRE_E_BAD_TYPE), why);
    return -1;
}

static void up_on_close(ps_conn *c, int err, const char *reason)
{
    ps_uplink *u = ps_conn_data(c);
    (void)err;
    u->conn = NULL;
    uv_timer_stop(&u->timer);
    uv_timer_stop(&u->hb);
    if (u->state == UP_READY)
        u->down_since_ms = uv_now(u->loop);
    /* Everything not acknowledged goes again on the next connection. */
    ps_spool_rewind(&u->spool);
    up_schedule_retry(u, reason && *reason ? reason : "connection closed");
}

static const ps_conn_cbs up_cbs = {
    .on_frame = up_on_frame,
    .on_read_done = NULL,
    .on_close = up_on_close,
};

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_connected(uv_connect_t *req, int status)
{
    ps_uplink *u = req->data;
    uv_tcp_t *tcp = u->connecting;
    u->connect_pending = 0;
    u->connecting = NULL;
    if (!tcp) { /* closed by ps_uplink_stop */
        up_schedule_retry(u, "closing");
        return;
    }
    if (status != 0 || u->closing) {
        uv_close((uv_handle_t *)tcp, free_handle);
        up_schedule_retry(u, status ? uv_strerror(status) : "closing");
        return;
    }
    uv_tcp_nodelay(tcp, 1);
    u->conn = ps_conn_new(tcp, &up_cbs, u, PS_WIRE_MAX_FRAME_DEFAULT, u->target);
    if (!u->conn) {
        uv_close((uv_handle_t *)tcp, free_handle);
        up_schedule_retry(u, "out of memory");
        return;
    }
    if (u->o.tls) {
        /* Every connection is a new session: pick up rotated files. */
        char err[512];
        int rl = ps_tls_maybe_reload(u->o.tls, err, sizeof(err));
        if (rl > 0)
            ps_info("sensor", "TLS certificate files changed: using the new ones");
        else if (rl < 0)
            ps_warn("sensor",
                    "TLS certificate files changed but do not load (%s); still using "
                    "the previous ones",
                    err);
    }
    if (u->o.tls && ps_conn_use_tls(u->conn, ps_tls_new_ssl(u->o.tls, u->server_name), 0) != 0) {
        u->state = UP_HANDSHAKE;
        ps_conn_close(u->conn, UV_ENOMEM, "cannot set up TLS");
        return;
    }
    ps_hello h = {.version_min = PS_WIRE_VERSION,
                  .version_max = u->o.on_job_start ? PS_WIRE_VERSION_JOBS : PS_WIRE_VERSION,
                  .codecs = (uint8_t)(1u << u->o.codec),
                  .codec = (uint8_t)u->o.codec,
                  .max_frame = PS_WIRE_MAX_FRAME_DEFAULT,
                  .max_batch_raw = u->o.max_batch_raw,
                  .session = u->session,
                  .id = u->id,
                  .id_len = (uint16_t)strlen(u->id),
                  .token = u->token,
                  .token_len = (uint16_t)strlen(u->token)};
    ps_buf_reset(&u->scratch);
    int rc = ps_wire_encode_hello(&u->scratch, &h);
    if (rc == 0)
        rc = ps_conn_send(u->conn, u->scratch.data, u->scratch.len);
    if (rc == 0)
        rc = ps_conn_start(u->conn);
    if (rc != 0) {
        ps_conn_close(u->conn, rc ? rc : UV_EINVAL, "cannot send the handshake");
        return;
    }
    u->state = UP_HANDSHAKE;
    uv_timer_start(&u->timer, on_handshake_timeout, PS_UPLINK_HANDSHAKE_MS, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    ps_uplink *u = req->data;
    u->resolving = 0;
    if (status != 0 || u->closing) {
        if (res)
            uv_freeaddrinfo(res);
        char why[300];
        snprintf(why, sizeof(why), "cannot resolve '%s': %s", u->host,
                 status ? uv_strerror(status) : "closing");
        up_schedule_retry(u, why);
        return;
    }
    if (u->o.on_resolved)
        u->o.on_resolved(u->o.ud, res);
    const struct addrinfo *pick = ps_home_pick(&u->home, u->id, res, uv_now(u->loop));
    if (!pick || pick->ai_addrlen > sizeof(u->attempt)) {
        uv_freeaddrinfo(res);
        up_schedule_retry(u, "the name resolves to no IPv4 or IPv6 address");
        return;
    }
    char t[PS_HOME_ADDR_LEN] = "?";
    ps_home_addr_text(pick->ai_addr, t);
    if (u->home.home[0] && strcmp(t, u->home.home) != 0)
        ps_warn("sensor",
                "receiver %s: home receiver %s is gone (not resolved, or unreachable %d times); "
                "moving to %s",
                u->target, u->home.home, PS_HOME_FAILS, t);
    memcpy(u->attempt_text, t, sizeof(t));
    memcpy(&u->attempt, pick->ai_addr, pick->ai_addrlen);
    u->attempting = 1;
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    if (!tcp || uv_tcp_init(u->loop, tcp) != 0) {
        free(tcp);
        uv_freeaddrinfo(res);
        up_schedule_retry(u, "out of memory");
        return;
    }
    u->connecting = tcp;
    u->connect_pending = 1;
    u->creq.data = u;
    u->state = UP_CONNECTING;
    int rc = uv_tcp_connect(&u->creq, tcp, (const struct sockaddr *)&u->attempt, on_connected);
    uv_freeaddrinfo(res);
    if (rc != 0) {
        u->connecting = NULL;
        u->connect_pending = 0;
        uv_close((uv_handle_t *)tcp, free_handle);
        up_schedule_retry(u, uv_strerror(rc));
    }
}

static void up_connect(ps_uplink *u)
{
    if (u->closing)
        return;
    char port[16];
    snprintf(port, sizeof(port), "%d", u->o.port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    u->gai.data = u;
    u->state = UP_RESOLVING;
    /* Resolved again on every attempt: Service IPs and endpoints change. */
    int rc = uv_getaddrinfo(u->loop, &u->gai, on_resolved, u->host, port, &hints);
    if (rc != 0) {
        up_schedule_retry(u, uv_strerror(rc));
        return;
    }
    u->resolving = 1;
}

void ps_uplink_start(ps_uplink *u)
{
    u->down_since_ms = uv_now(u->loop);
    up_connect(u);
}

int ps_uplink_add_iface(ps_uplink *u, uint32_t index, uint32_t linktype, uint32_t snaplen,
                        const char *name, const char *desc)
{
    return ps_uplink_add_iface_job(u, index, linktype, snaplen, name, desc, 0);
}

int ps_uplink_add_iface_job(ps_uplink *u, uint32_t index, uint32_t linktype, uint32_t snaplen,
                            const char *name, const char *desc, uint64_t job)
{
    up_iface *n = realloc(u->ifaces, (u->n_ifaces + 1) * sizeof(*n));
    if (!n)
        return -1;
    u->ifaces = n;
    up_iface *f = &n[u->n_ifaces];
    f->index = index;
    f->linktype = linktype;
    f->snaplen = snaplen;
    f->name = ps_wire_ifname_dup(name);
    f->desc = ps_wire_ifdesc_dup(desc);
    f->job = job;
    if (!f->name || !f->desc) {
        free(f->name);
        free(f->desc);
        return -1;
    }
    u->n_ifaces++;
    if (u->state == UP_READY && u->conn && up_announce(u, f) != 0)
        ps_conn_close(u->conn, UV_ENOMEM, "cannot announce an interface");
    return 0;
}

int ps_uplink_send_stats(ps_uplink *u, const ps_stats *st)
{
    if (u->state != UP_READY || !u->conn || u->closing)
        return -1; /* nothing may follow BYE */
    ps_buf_reset(&u->scratch);
    if (ps_wire_encode_stats(&u->scratch, st) != 0 ||
        ps_conn_send(u->conn, u->scratch.data, u->scratch.len) != 0)
        return -1;
    return 0;
}

int ps_uplink_send_job_status(ps_uplink *u, const ps_job_status *st)
{
    if (u->state != UP_READY || !u->conn || u->closing || u->version < PS_WIRE_VERSION_JOBS)
        return -1;
    ps_buf_reset(&u->scratch);
    if (ps_wire_encode_job_status(&u->scratch, st) != 0 ||
        ps_conn_send(u->conn, u->scratch.data, u->scratch.len) != 0)
        return -1;
    return 0;
}

uint16_t ps_uplink_version(const ps_uplink *u)
{
    return u->state == UP_READY && u->conn ? u->version : 0;
}

/* ---- shutdown ---- */

static void on_timer_closed(uv_handle_t *h)
{
    ps_uplink *u = h->data;
    if (u->close_done)
        u->close_done(u->o.ud);
}

/* The two timers close one after the other, so on_timer_closed (which may
 * free u) runs last. */
static void on_hb_closed(uv_handle_t *h)
{
    ps_uplink *u = h->data;
    uv_close((uv_handle_t *)&u->timer, on_timer_closed);
}

static void up_maybe_finish_close(ps_uplink *u)
{
    if (u->conn || u->resolving || u->connect_pending || uv_is_closing((uv_handle_t *)&u->hb))
        return;
    uv_close((uv_handle_t *)&u->hb, on_hb_closed);
}

void ps_uplink_stop(ps_uplink *u, void (*done)(void *ud))
{
    if (u->closing)
        return;
    u->closing = 1;
    u->close_done = done;
    uv_timer_stop(&u->timer);
    uv_timer_stop(&u->hb);
    if (u->conn) {
        if (u->state == UP_READY) {
            ps_buf_reset(&u->scratch);
            if (ps_wire_encode_bye(&u->scratch, ps_spool_last_sent(&u->spool)) == 0)
                ps_conn_send(u->conn, u->scratch.data, u->scratch.len);
        }
        /* Graceful only when everything is acknowledged: then the receiver
         * is responsive and the BYE is worth delivering. */
        if (ps_spool_empty(&u->spool))
            ps_conn_close_graceful(u->conn, 0, "sensor finished");
        else
            ps_conn_close(u->conn, 0, "sensor stopping");
    }
    if (u->resolving)
        uv_cancel((uv_req_t *)&u->gai);
    if (u->connecting) {
        uv_close((uv_handle_t *)u->connecting, free_handle);
        u->connecting = NULL; /* on_connected still runs, with UV_ECANCELED */
    }
    up_maybe_finish_close(u);
}

int ps_uplink_connected(const ps_uplink *u)
{
    return u->state == UP_READY && u->conn != NULL;
}

void ps_uplink_free(ps_uplink *u)
{
    if (!u)
        return;
    ps_spool_clear(&u->spool);
    for (size_t i = 0; i < u->n_ifaces; i++) {
        free(u->ifaces[i].name);
        free(u->ifaces[i].desc);
    }
    free(u->ifaces);
    ps_buf_free(&u->scratch);
    free(u->host);
    free(u->id);
    free(u->token);
    free(u->server_name);
    free(u);
}
