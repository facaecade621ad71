/*
 * test_uplink: the sensor's uplink against a hand-written receiver on
 * 127.0.0.1, both on one libuv loop. The receiver speaks the wire protocol
 * (core/wire.h) and follows a script per test: ACCEPT with a last_seq, ACK
 * batches or not, REJECT, hang up on HELLO, close after n batches. The
 * assertions are what a user sees: batches arrive once and in order,
 * what the receiver lacked after a reconnect is resent and what it had is
 * not, the spool drains, retries back off, a REJECT is fatal (busy is
 * not), and evicted batches are counted and never sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <uv.h>

#include "core/log.h"
#include "core/net.h"
#include "core/wire.h"
#include "sensor/batcher.h"
#include "sensor/uplink.h"

#define MAX_SEQS 64
#define MAX_CONNS 16
#define DEADLINE_MS 10000

enum { SRV_ACCEPT, SRV_REJECT, SRV_HANGUP };

typedef struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    /* script */
    int mode;
    int hangups;            /* SRV_ACCEPT after this many hangups on HELLO */
    uint16_t reject_code;   /* SRV_REJECT */
    uint64_t last_seq;      /* ACCEPT's */
    uint64_t last_seq_once; /* if nonzero, ACCEPT's for the next HELLO only */
    int ack;                /* ACK every batch */
    int close_after;        /* close the connection after this many batches, 0: never */
    /* what happened */
    ps_conn *conn;
    int conns;
    uint64_t accept_ns[MAX_CONNS];
    int hellos;
    uint64_t sessions[MAX_CONNS]; /* each HELLO's session */
    char id[64];
    int ifaces;         /* IFACE frames on the current connection */
    int batch_no_iface; /* batches that came before any IFACE on their connection */
    int conn_batches;
    uint64_t seqs[MAX_SEQS];
    int seq_conn[MAX_SEQS]; /* which connection (1-based) carried it */
    uint32_t seq_records[MAX_SEQS];
    int nseqs;
    int byes;
    uint64_t bye_seq;
} srv;

typedef struct T {
    uv_loop_t loop;
    uv_timer_t tick;
    srv s;
    ps_batcher *batcher;
    ps_uplink *up;
    int fatals;
    char fatal_msg[1024];
    int acked_calls;
    int closed;
    int close_on_fatal;
} T;

/* ---- the receiver ---- */

static int srv_send(ps_conn *c, ps_buf *b)
{
    int rc = ps_conn_send(c, b->data, b->len);
    ps_buf_free(b);
    return rc;
}

static int srv_on_frame(ps_conn *c, const ps_frame *f)
{
    srv *s = ps_conn_data(c);
    ps_buf b = PS_BUF_INIT;
    switch (f->type) {
    case PS_FRAME_HELLO: {
        ps_hello h;
        assert_int_equal(ps_wire_decode_hello(f->payload, f->len, &h), PS_WIRE_OK);
        snprintf(s->id, sizeof(s->id), "%.*s", (int)h.id_len, h.id);
        if (s->hellos < MAX_CONNS)
            s->sessions[s->hellos] = h.session;
        s->hellos++;
        if (s->hangups > 0 || s->mode == SRV_HANGUP) {
            if (s->hangups > 0)
                s->hangups--;
            ps_conn_close(c, 0, "hangup");
            return -1;
        }
        if (s->mode == SRV_REJECT) {
            const char *why = "bad token";
            ps_reject r = {
                .code = s->reject_code, .reason = why, .reason_len = (uint16_t)strlen(why)};
            assert_int_equal(ps_wire_encode_reject(&b, &r), 0);
            srv_send(c, &b);
            ps_conn_close_graceful(c, 0, "rejected");
            return -1;
        }
        ps_accept a = {.version = PS_WIRE_VERSION,
                       .codec = PS_CODEC_NONE,
                       .max_frame = PS_WIRE_MAX_FRAME_DEFAULT,
                       .max_batch_raw = PS_WIRE_MAX_BATCH_RAW_DEFAULT,
                       .last_seq = s->last_seq_once ? s->last_seq_once : s->last_seq};
        s->last_seq_once = 0;
        assert_int_equal(ps_wire_encode_accept(&b, &a), 0);
        return srv_send(c, &b);
    }
    case PS_FRAME_IFACE:
        s->ifaces++;
        return 0;
    case PS_FRAME_BATCH: {
        ps_batch_hdr h;
        assert_int_equal(
            ps_wire_decode_batch(f->payload, f->len, PS_WIRE_MAX_BATCH_RAW_DEFAULT, &h),
            PS_WIRE_OK);
        assert_true(s->nseqs < MAX_SEQS);
        if (s->ifaces == 0)
            s->batch_no_iface++;
        s->seq_conn[s->nseqs] = s->conns;
        s->seq_records[s->nseqs] = h.records;
        s->seqs[s->nseqs++] = h.seq;
        s->conn_batches++;
        if (s->ack) {
            assert_int_equal(ps_wire_encode_ack(&b, h.seq), 0);
            srv_send(c, &b);
        }
        if (s->close_after && s->conn_batches == s->close_after) {
            ps_conn_close(c, 0, "receiver gone");
            return -1;
        }
        return 0;
    }
    case PS_FRAME_BYE:
        assert_int_equal(ps_wire_decode_u64(f->payload, f->len, &s->bye_seq), PS_WIRE_OK);
        s->byes++;
        return 0;
    default:
        return 0; /* STATS, HEARTBEAT */
    }
}

static void srv_on_close(ps_conn *c, int err, const char *reason)
{
    srv *s = ps_conn_data(c);
    (void)err;
    (void)reason;
    if (s->conn == c)
        s->conn = NULL;
}

static const ps_conn_cbs srv_cbs = {.on_frame = srv_on_frame, .on_close = srv_on_close};

static void srv_on_connection(uv_stream_t *l, int status)
{
    srv *s = l->data;
    assert_int_equal(status, 0);
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    assert_non_null(tcp);
    assert_int_equal(uv_tcp_init(s->loop, tcp), 0);
    assert_int_equal(uv_accept(l, (uv_stream_t *)tcp), 0);
    assert_true(s->conns < MAX_CONNS);
    s->accept_ns[s->conns++] = uv_hrtime();
    s->ifaces = 0;
    s->conn_batches = 0;
    s->conn = ps_conn_new(tcp, &srv_cbs, s, PS_WIRE_MAX_FRAME_DEFAULT, "sensor");
    assert_non_null(s->conn);
    assert_int_equal(ps_conn_start(s->conn), 0);
}

static void srv_listen(srv *s, uv_loop_t *loop)
{
    s->loop = loop;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_init(loop, &s->listener), 0);
    s->listener.data = s;
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 16, srv_on_connection), 0);
    struct sockaddr_in got;
    int len = sizeof(got);
    assert_int_equal(uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len), 0);
    s->port = ntohs(got.sin_port);
}

/* ---- the sensor side ---- */

static void on_fatal(void *ud, const char *msg)
{
    T *t = ud;
    t->fatals++;
    snprintf(t->fatal_msg, sizeof(t->fatal_msg), "%s", msg);
}

static void on_acked(void *ud)
{
    ((T *)ud)->acked_calls++;
}

static void on_tick(uv_timer_t *h)
{
    (void)h; /* only wakes uv_run(UV_RUN_ONCE) up */
}

/* Runs the loop until cond holds; 0 if the deadline passed first. */
static int run_until(T *t, int (*cond)(T *), uint64_t ms)
{
    uint64_t end = uv_hrtime() + ms * 1000000u;
    while (!cond(t)) {
        if (uv_hrtime() > end)
            return 0;
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    return 1;
}

static int never(T *t)
{
    (void)t;
    return 0;
}

static void start(T *t, uint64_t spool_bytes, uint64_t connect_timeout_ms)
{
    ps_log_set_level(PS_LOG_ERROR);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    uv_timer_init(&t->loop, &t->tick);
    uv_timer_start(&t->tick, on_tick, 5, 5);
    srv_listen(&t->s, &t->loop);
    ps_batcher_opts bo = {.codec = PS_CODEC_NONE,
                          .block_bytes = 1 << 20,
                          .wait_ms = 60000,
                          .pool_bytes = 1 << 20,
                          .on_sealed = ps_uplink_on_sealed,
                          .on_ready = ps_uplink_on_ready};
    t->batcher = ps_batcher_new(&t->loop, &bo);
    assert_non_null(t->batcher);
    ps_uplink_opts uo = {.host = "127.0.0.1",
                         .port = t->s.port,
                         .sensor_id = "node-1",
                         .codec = PS_CODEC_NONE,
                         .max_batch_raw = (1 << 20) + PS_WIRE_REC_HDR_LEN + PS_WIRE_MAX_CAPLEN,
                         .spool_bytes = spool_bytes,
                         .connect_timeout_ms = connect_timeout_ms,
                         .on_acked = on_acked,
                         .on_fatal = on_fatal,
                         .ud = t};
    t->up = ps_uplink_new(&t->loop, t->batcher, &uo);
    assert_non_null(t->up);
    ps_batcher_set_ud(t->batcher, t->up);
    assert_int_equal(ps_uplink_add_iface(t->up, 0, 1, 65535, "eth0", "test"), 0);
}

/* One sealed batch of n packets. */
static void seal(T *t, int n)
{
    uint8_t pkt[60] = {0};
    for (int i = 0; i < n; i++)
        assert_int_equal(
            ps_batcher_add(t->batcher, 0, 1000 + (uint64_t)i, sizeof(pkt), sizeof(pkt), pkt), 0);
    ps_batcher_flush(t->batcher);
}

static void on_uplink_closed(void *ud)
{
    ((T *)ud)->closed = 1;
}

static int is_closed(T *t)
{
    return t->closed;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish(T *t)
{
    if (!t->closed) {
        ps_uplink_stop(t->up, on_uplink_closed);
        assert_true(run_until(t, is_closed, DEADLINE_MS));
    }
    ps_uplink_free(t->up);
    ps_batcher_free(t->batcher);
    if (t->s.conn)
        ps_conn_close(t->s.conn, 0, "test over");
    uv_close((uv_handle_t *)&t->s.listener, on_handle_closed);
    uv_close((uv_handle_t *)&t->tick, on_handle_closed);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&t->loop), 0);
}

static ps_uplink_totals totals(T *t)
{
    ps_uplink_totals ut;
    ps_uplink_get_totals(t->up, &ut);
    return ut;
}

static int drained(T *t)
{
    return ps_uplink_drained(t->up);
}

static int connected(T *t)
{
    return ps_uplink_connected(t->up);
}

/* ---- tests ---- */

/* Batches arrive once, in order, after the interface announcement; the
 * receiver's ACKs empty the spool; a finished sensor says BYE. */
static void test_deliver_ack_bye(void **state)
{
    (void)state;
    T t = {0};
    t.s.ack = 1;
    start(&t, 1 << 20, 60000);
    seal(&t, 2);
    ps_uplink_start(t.up);
    seal(&t, 3);
    assert_true(run_until(&t, connected, DEADLINE_MS));
    seal(&t, 4);
    assert_true(run_until(&t, drained, DEADLINE_MS));
    assert_string_equal(t.s.id, "node-1");
    assert_int_equal(t.s.nseqs, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(t.s.seqs[i], (uint64_t)i + 1);
    assert_int_equal(t.s.seq_records[2], 4);
    assert_int_equal(t.s.batch_no_iface, 0);
    ps_uplink_totals ut = totals(&t);
    assert_int_equal(ut.acked_batches, 3);
    assert_int_equal(ut.acked_packets, 2 + 3 + 4);
    assert_int_equal(ut.spool_batches, 0);
    assert_int_equal(ut.spool_bytes, 0);
    assert_int_equal(ut.connects, 1);
    assert_int_equal(ut.reconnects, 0);
    assert_int_equal(ut.resent_batches, 0);
    assert_true(t.acked_calls > 0);
    ps_uplink_stop(t.up, on_uplink_closed);
    assert_true(run_until(&t, is_closed, DEADLINE_MS));
    /* Let the BYE reach the receiver (it was sent before the close). */
    uint64_t end = uv_hrtime() + 200000000u;
    while (t.s.byes == 0 && uv_hrtime() < end)
        uv_run(&t.loop, UV_RUN_ONCE);
    assert_int_equal(t.s.byes, 1);
    assert_int_equal(t.s.bye_seq, 3);
    assert_int_equal(t.fatals, 0);
    finish(&t);
}

static int three_batches(T *t)
{
    return t->s.nseqs >= 3;
}

static int second_conn_ready(T *t)
{
    return t->s.conns >= 2 && ps_uplink_connected(t->up);
}

/* The receiver takes three batches, acknowledges none and goes away; it
 * comes back having written up to 2 (ACCEPT's last_seq). Only 3 goes again,
 * and once acknowledged the spool is empty. */
static void test_resend_after_reconnect(void **state)
{
    (void)state;
    T t = {0};
    t.s.close_after = 3;
    start(&t, 1 << 20, 60000);
    seal(&t, 1);
    seal(&t, 1);
    seal(&t, 1);
    ps_uplink_start(t.up);
    assert_true(run_until(&t, three_batches, DEADLINE_MS));
    assert_int_equal(totals(&t).spool_batches, 3); /* nothing acknowledged */
    t.s.close_after = 0;
    t.s.last_seq = 2;
    t.s.ack = 1;
    assert_true(run_until(&t, second_conn_ready, DEADLINE_MS));
    assert_true(run_until(&t, drained, DEADLINE_MS));
    assert_int_equal(t.s.nseqs, 4);
    assert_int_equal(t.s.seqs[3], 3);
    assert_int_equal(t.s.seq_conn[3], 2);
    assert_int_equal(t.s.batch_no_iface, 0); /* interfaces announced again */
    ps_uplink_totals ut = totals(&t);
    assert_int_equal(ut.connects, 2);
    assert_int_equal(ut.reconnects, 1);
    assert_int_equal(ut.resent_batches, 1);
    assert_int_equal(ut.acked_batches, 3);
    assert_int_equal(t.fatals, 0);
    finish(&t);
}

/* A receiver whose ACCEPT claims a batch this session never sent (another
 * client used our id and session and sent seq 2^62): refused, the sensor
 * goes on under a new session and every batch is delivered. */
static void test_accept_beyond_sent_refused(void **state)
{
    (void)state;
    T t = {0};
    t.s.last_seq_once = 1ull << 62;
    t.s.ack = 1;
    start(&t, 1 << 20, 60000);
    seal(&t, 1);
    seal(&t, 1);
    ps_uplink_start(t.up);
    assert_true(run_until(&t, second_conn_ready, DEADLINE_MS));
    assert_true(run_until(&t, drained, DEADLINE_MS));
    assert_int_equal(t.s.hellos, 2);
    assert_true(t.s.sessions[0] != t.s.sessions[1]);
    assert_int_equal(t.s.nseqs, 2); /* nothing went on the refused connection */
    assert_int_equal(t.s.seqs[0], 1);
    assert_int_equal(t.s.seqs[1], 2);
    assert_int_equal(t.s.seq_conn[0], 2);
    ps_uplink_totals ut = totals(&t);
    assert_int_equal(ut.acked_batches, 2);
    assert_int_equal(t.fatals, 0);
    finish(&t);
}

static int sixth_conn_ready(T *t)
{
    return t->s.conns >= 6 && ps_uplink_connected(t->up);
}

/* A receiver that hangs up on every HELLO: the waits between attempts at
 * least double (100 ms steps with jitter in [step/2, 3 step/2]), and a
 * good connection resets the step. */
static void test_backoff(void **state)
{
    (void)state;
    T t = {0};
    t.s.hangups = 4;
    start(&t, 1 << 20, 60000);
    ps_uplink_start(t.up);
    assert_true(run_until(&t, connected, DEADLINE_MS));
    assert_int_equal(t.s.conns, 5);
    /* The step before attempt k+1 is 100 ms * 2^(k-1): at least half. */
    uint64_t *a = t.s.accept_ns;
    assert_true(a[2] - a[1] >= 100u * 1000000u);
    assert_true(a[3] - a[2] >= 200u * 1000000u);
    assert_true(a[4] - a[3] >= 400u * 1000000u);
    /* Connected: the step is back to 100 ms; without the reset the next
     * wait would be at least 800 ms. */
    ps_conn_close(t.s.conn, 0, "restart");
    assert_true(run_until(&t, sixth_conn_ready, DEADLINE_MS));
    assert_int_equal(t.s.conns, 6);
    assert_true(a[5] - a[4] < 700u * 1000000u);
    assert_int_equal(t.fatals, 0);
    finish(&t);
}

static int has_fatal(T *t)
{
    return t->fatals > 0;
}

/* A rejection will not heal by itself: fatal at once, with the reason. */
static void test_reject_is_fatal(void **state)
{
    (void)state;
    T t = {0};
    t.s.mode = SRV_REJECT;
    t.s.reject_code = PS_REJECT_AUTH;
    start(&t, 1 << 20, 60000);
    ps_uplink_start(t.up);
    assert_true(run_until(&t, has_fatal, DEADLINE_MS));
    assert_int_equal(t.fatals, 1);
    assert_non_null(strstr(t.fatal_msg, "rejected"));
    assert_non_null(strstr(t.fatal_msg, "bad token"));
    assert_false(ps_uplink_connected(t.up));
    /* The sensor stops on fatal (sensor.c): nothing more is attempted. */
    ps_uplink_stop(t.up, on_uplink_closed);
    assert_true(run_until(&t, is_closed, DEADLINE_MS));
    run_until(&t, never, 300);
    assert_int_equal(t.s.conns, 1);
    finish(&t);
}

static int two_hellos(T *t)
{
    return t->s.hellos >= 2;
}

/* Busy is temporary: retried, not fatal. */
static void test_reject_busy_retries(void **state)
{
    (void)state;
    T t = {0};
    t.s.mode = SRV_REJECT;
    t.s.reject_code = PS_REJECT_BUSY;
    start(&t, 1 << 20, 60000);
    ps_uplink_start(t.up);
    assert_true(run_until(&t, two_hellos, DEADLINE_MS));
    assert_int_equal(t.fatals, 0);
    finish(&t);
}

/* Nobody listening for longer than connect_timeout: fatal, naming why. */
static void test_unreachable_gives_up(void **state)
{
    (void)state;
    T t = {0};
    start(&t, 1 << 20, 500);
    uv_close((uv_handle_t *)&t.s.listener, NULL); /* the port now refuses */
    uv_run(&t.loop, UV_RUN_NOWAIT);
    uint64_t t0 = uv_hrtime();
    ps_uplink_start(t.up);
    assert_true(run_until(&t, has_fatal, DEADLINE_MS));
    assert_true(uv_hrtime() - t0 >= 500u * 1000000u);
    assert_non_null(strstr(t.fatal_msg, "cannot reach receiver"));
    assert_int_equal(totals(&t).connects, 0);
    /* finish() closes the listener again otherwise. */
    uv_tcp_init(&t.loop, &t.s.listener);
    finish(&t);
}

static int hello_seen(T *t)
{
    return t->s.hellos >= 1;
}

/* While the receiver has not accepted, batches wait in the spool; the drop
 * policy "oldest" evicts the oldest never-sent one, counts its packets, and
 * it is never sent. */
static void test_evict_counts_and_never_sends(void **state)
{
    (void)state;
    T t = {0};
    t.s.hangups = 1; /* first attempt fails: batches stay unsent */
    t.s.ack = 1;
    start(&t, 1 << 20, 60000);
    ps_uplink_start(t.up);
    assert_true(run_until(&t, hello_seen, DEADLINE_MS));
    seal(&t, 5);
    seal(&t, 6);
    seal(&t, 7);
    assert_int_equal(ps_uplink_evict_oldest(t.up, NULL, NULL), 5);
    ps_uplink_totals ut = totals(&t);
    assert_int_equal(ut.evicted_batches, 1);
    assert_int_equal(ut.evicted_packets, 5);
    assert_int_equal(ut.spool_batches, 2);
    assert_true(run_until(&t, connected, DEADLINE_MS));
    assert_true(run_until(&t, drained, DEADLINE_MS));
    assert_int_equal(t.s.nseqs, 2);
    assert_int_equal(t.s.seqs[0], 2);
    assert_int_equal(t.s.seqs[1], 3);
    ut = totals(&t);
    assert_int_equal(ut.acked_packets, 6 + 7);
    /* Everything was written: nothing left to evict. */
    assert_int_equal(ps_uplink_evict_oldest(t.up, NULL, NULL), 0);
    finish(&t);
}

/* spool.bytes bounds what the sensor buffers while the receiver is away. */
static void test_spool_full(void **state)
{
    (void)state;
    T t = {0};
    start(&t, 64 * 1024, 60000);
    assert_false(ps_uplink_spool_full(t.up));
    for (int i = 0; i < 64 && !ps_uplink_spool_full(t.up); i++)
        seal(&t, 100);
    assert_true(ps_uplink_spool_full(t.up));
    while (ps_uplink_evict_oldest(t.up, NULL, NULL) > 0 && ps_uplink_spool_full(t.up))
        ;
    assert_false(ps_uplink_spool_full(t.up));
    assert_true(totals(&t).evicted_batches > 0);
    finish(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_ack_bye),
        cmocka_unit_test(test_resend_after_reconnect),
        cmocka_unit_test(test_accept_beyond_sent_refused),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_reject_is_fatal),
        cmocka_unit_test(test_reject_busy_retries),
        cmocka_unit_test(test_unreachable_gives_up),
        cmocka_unit_test(test_evict_counts_and_never_sends),
        cmocka_unit_test(test_spool_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
