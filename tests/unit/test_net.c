/*
 * test_net: ps_conn's write accounting over real TLS on 127.0.0.1.
 *
 * Over TLS a send is encrypted into a ciphertext copy that a write request
 * holds until its completion callback runs. The kernel usually takes those
 * bytes at once, so libuv's own write queue is empty while the copy is still
 * alive; a sender that paced itself on libuv's queue alone piled up copies
 * (the sensor's uplink window). ps_conn_write_queue() must therefore count
 * every ciphertext byte of a write until that write's `done` has run, then
 * drop back to 0. A plaintext conn reports libuv's queue. Certificates are
 * made with the openssl CLI in a temporary directory (mutual TLS, as the
 * chart deploys it); the frames are valid wire frames (a data batch) and the
 * server checks that they arrive intact. Last, the memory budget shared by
 * connections (ps_conn_budget): a frame beyond it is not read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <uv.h>

#include "core/codec.h"
#include "core/net.h"
#include "core/tls.h"
#include "core/wire.h"
#include "testcerts.h"
#include "testutil.h"

#define BIG (256 * 1024) /* one sendv of test 1 */
#define NSMALL 4         /* sendv calls in a row in test 2 */
#define SMALL (64 * 1024)
/* Ciphertext is plaintext plus a few dozen bytes per 16 KiB TLS record. */
#define TLS_SLACK(n) ((n) / 256 + 1024)
#define DEADLINE_MS 10000

static int setup(void **state)
{
    (void)state;
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "net"), 0);
    make_ca("ca");
    make_leaf("ca", "server", "DNS:localhost,IP:127.0.0.1");
    make_leaf("ca", "sensor", "DNS:sensor.example");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(dir);
}

/* One client conn and the server conn it was accepted as, on one loop. */
typedef struct pair {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t deadline;
    int timed_out;
    uv_connect_t connect_req;
    uv_tcp_t *client_tcp; /* owned by client once it exists */
    ps_conn *client, *server;
    ps_tls *client_tls, *server_tls;
    int connect_status;
    int closed; /* conns whose on_close ran */
    int unexpected_close;
    /* What the server must receive, in order. */
    const uint8_t *expect[NSMALL];
    size_t expect_len[NSMALL];
    int nexpect;
    int frames_ok, frames_bad;
    ps_conn_budget *budget; /* given to the server conn, or NULL */
    /* Writes: done callbacks and the accounting seen from inside them. */
    int done, done_bad_status;
    size_t outstanding; /* plaintext bytes of writes whose done has not run */
    int undercounted;   /* a done saw write_queue below the outstanding bytes */
} pair;

typedef struct write_arg {
    pair *pr;
    size_t len;
} write_arg;

static int on_frame(ps_conn *c, const ps_frame *f)
{
    pair *pr = ps_conn_data(c);
    int i = pr->frames_ok + pr->frames_bad;
    ps_batch_hdr b;
    if (c == pr->server && i < pr->nexpect && f->type == PS_FRAME_BATCH &&
        (size_t)f->len + PS_WIRE_HDR_LEN == pr->expect_len[i] &&
        memcmp(f->payload, pr->expect[i] + PS_WIRE_HDR_LEN, f->len) == 0 &&
        ps_wire_decode_batch(f->payload, f->len, PS_WIRE_MAX_BATCH_RAW_DEFAULT, &b) == PS_WIRE_OK &&
        b.seq == (uint64_t)i + 1)
        pr->frames_ok++;
    else
        pr->frames_bad++;
    return 0;
}

static void on_close(ps_conn *c, int err, const char *reason)
{
    (void)reason;
    pair *pr = ps_conn_data(c);
    if (err != 0)
        pr->unexpected_close++;
    if (c == pr->client) {
        pr->client = NULL;
        pr->client_tcp = NULL;
    }
    if (c == pr->server)
        pr->server = NULL;
    pr->closed++;
}

static const ps_conn_cbs cbs = {.on_frame = on_frame, .on_close = on_close};

/* Runs the loop until *flag reaches want, or fails after DEADLINE_MS. */
static void run_until(pair *pr, const int *flag, int want)
{
    tu_run_until(&pr->deadline, flag, want, DEADLINE_MS);
}

static void on_done(void *arg, int status)
{
    write_arg *w = arg;
    pair *pr = w->pr;
    if (status != 0)
        pr->done_bad_status++;
    pr->outstanding -= w->len;
    /* The writes still in flight are still counted. */
    if (pr->client && ps_conn_write_queue(pr->client) < pr->outstanding)
        pr->undercounted++;
    pr->done++;
}

static void on_connection(uv_stream_t *server, int status)
{
    pair *pr = server->data;
    assert_int_equal(status, 0);
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    assert_non_null(tcp);
    assert_int_equal(uv_tcp_init(&pr->loop, tcp), 0);
    assert_int_equal(uv_accept(server, (uv_stream_t *)tcp), 0);
    pr->server = ps_conn_new(tcp, &cbs, pr, PS_WIRE_MAX_FRAME_DEFAULT, "client");
    assert_non_null(pr->server);
    if (pr->budget)
        ps_conn_set_budget(pr->server, pr->budget);
    if (pr->server_tls)
        assert_int_equal(ps_conn_use_tls(pr->server, ps_tls_new_ssl(pr->server_tls, NULL), 1), 0);
    assert_int_equal(ps_conn_start(pr->server), 0);
}

static void on_connect(uv_connect_t *req, int status)
{
    pair *pr = req->data;
    pr->connect_status = status;
    if (status != 0)
        return;
    uv_tcp_nodelay(pr->client_tcp, 1);
    pr->client = ps_conn_new(pr->client_tcp, &cbs, pr, PS_WIRE_MAX_FRAME_DEFAULT, "server");
    assert_non_null(pr->client);
    if (pr->client_tls)
        assert_int_equal(
            ps_conn_use_tls(pr->client, ps_tls_new_ssl(pr->client_tls, "127.0.0.1"), 0), 0);
    assert_int_equal(ps_conn_start(pr->client), 0);
}

static int both_up(const pair *pr)
{
    if (!pr->client || !pr->server)
        return 0;
    if (!pr->client_tls)
        return 1;
    return ps_conn_secure(pr->client) && ps_conn_secure(pr->server);
}

static void pair_open_budget(pair *pr, int tls, ps_conn_budget *budget)
{
    memset(pr, 0, sizeof(*pr));
    pr->budget = budget;
    char err[512];
    if (tls) {
        ps_tls_opts so = {.server = 1,
                          .cert_file = p("server.crt"),
                          .key_file = p("server.key"),
                          .ca_file = p("ca.crt"),
                          .require_client_cert = 1};
        assert_int_equal(ps_tls_new(&pr->server_tls, &so, err, sizeof(err)), 0);
        ps_tls_opts co = {
            .cert_file = p("sensor.crt"), .key_file = p("sensor.key"), .ca_file = p("ca.crt")};
        assert_int_equal(ps_tls_new(&pr->client_tls, &co, err, sizeof(err)), 0);
    }
    assert_int_equal(uv_loop_init(&pr->loop), 0);
    assert_int_equal(uv_timer_init(&pr->loop, &pr->deadline), 0);

    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_init(&pr->loop, &pr->listener), 0);
    pr->listener.data = pr;
    assert_int_equal(uv_tcp_bind(&pr->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&pr->listener, 8, on_connection), 0);
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    assert_int_equal(uv_tcp_getsockname(&pr->listener, (struct sockaddr *)&bound, &blen), 0);

    pr->client_tcp = malloc(sizeof(*pr->client_tcp));
    assert_non_null(pr->client_tcp);
    assert_int_equal(uv_tcp_init(&pr->loop, pr->client_tcp), 0);
    pr->connect_req.data = pr;
    assert_int_equal(uv_tcp_connect(&pr->connect_req, pr->client_tcp,
                                    (const struct sockaddr *)&bound, on_connect),
                     0);

    /* Until both ends are connected and, over TLS, both handshakes are done. */
    tu_deadline_start(&pr->deadline, &pr->timed_out, DEADLINE_MS);
    while (!both_up(pr) && !pr->timed_out && pr->connect_status == 0 && pr->closed == 0)
        uv_run(&pr->loop, UV_RUN_ONCE);
    uv_timer_stop(&pr->deadline);
    assert_int_equal(pr->connect_status, 0);
    assert_int_equal(pr->closed, 0);
    assert_false(pr->timed_out);
    assert_true(both_up(pr));
    /* Nothing of the handshake is still counted. */
    assert_int_equal(ps_conn_write_queue(pr->client), 0);
    assert_int_equal(ps_conn_write_queue(pr->server), 0);
}

static void pair_close(pair *pr)
{
    /* Both are alive here: close them in one step, before either sees EOF. */
    ps_conn_close(pr->client, 0, "test done");
    ps_conn_close(pr->server, 0, "test done");
    uv_close((uv_handle_t *)&pr->listener, NULL);
    uv_close((uv_handle_t *)&pr->deadline, NULL);
    uv_run(&pr->loop, UV_RUN_DEFAULT);
    assert_int_equal(pr->closed, 2);
    assert_int_equal(pr->unexpected_close, 0);
    assert_int_equal(uv_loop_close(&pr->loop), 0);
    ps_tls_free(pr->client_tls);
    ps_tls_free(pr->server_tls);
}

static void pair_open(pair *pr, int tls)
{
    pair_open_budget(pr, tls, NULL);
}

/* A whole BATCH frame of `len` bytes (header included), sequence seq: one
 * uncompressed record filling the payload with pseudo-random bytes. */
static uint8_t *make_batch_frame(size_t len, uint64_t seq)
{
    size_t payload = len - PS_WIRE_HDR_LEN - PS_WIRE_BATCH_HDR_LEN;
    size_t caplen = payload - PS_WIRE_REC_HDR_LEN;
    assert_true(caplen <= PS_WIRE_MAX_CAPLEN);
    uint8_t *f = malloc(len);
    assert_non_null(f);
    ps_wire_batch_prefix(f, seq, PS_CODEC_NONE, 1, (uint32_t)payload, (uint32_t)payload);
    uint8_t *data = malloc(caplen);
    assert_non_null(data);
    tu_fill_random(data, caplen, seq);
    ps_wire_record_put(f + PS_WIRE_HDR_LEN + PS_WIRE_BATCH_HDR_LEN, 0, 1000000000ull * seq,
                       (uint32_t)caplen, (uint32_t)caplen, data);
    free(data);
    return f;
}

/* One 256 KiB sendv: its ciphertext is counted from the moment sendv returns
 * (the kernel has taken some or all of it, so libuv's queue alone would say
 * less) until its done runs, then nothing is. */
static void test_tls_write_counted_until_done(void **state)
{
    (void)state;
    pair pr;
    pair_open(&pr, 1);
    uint8_t *frame = make_batch_frame(BIG, 1);
    pr.expect[0] = frame;
    pr.expect_len[0] = BIG;
    pr.nexpect = 1;

    write_arg w = {.pr = &pr, .len = BIG};
    uv_buf_t b = uv_buf_init((char *)frame, BIG);
    pr.outstanding = BIG;
    assert_int_equal(ps_conn_sendv(pr.client, &b, 1, on_done, &w), 0);
    size_t q = ps_conn_write_queue(pr.client);
    assert_true(q >= BIG);
    assert_true(q <= BIG + TLS_SLACK(BIG));
    /* The case under test: libuv's own queue holds less than the write. */
    assert_true(uv_stream_get_write_queue_size((uv_stream_t *)pr.client_tcp) < BIG);
    assert_int_equal(pr.done, 0); /* done never runs from inside sendv */

    /* Step the loop: the bytes stay counted until done, then drop to 0. */
    tu_deadline_start(&pr.deadline, &pr.timed_out, DEADLINE_MS);
    int steps = 0;
    while ((pr.done < 1 || pr.frames_ok + pr.frames_bad < 1) && !pr.timed_out) {
        uv_run(&pr.loop, UV_RUN_ONCE);
        steps++;
        if (pr.done == 0)
            assert_true(ps_conn_write_queue(pr.client) >= BIG);
        else
            assert_int_equal(ps_conn_write_queue(pr.client), 0);
    }
    uv_timer_stop(&pr.deadline);
    assert_false(pr.timed_out);
    assert_true(steps >= 1);
    assert_int_equal(pr.done, 1);
    assert_int_equal(pr.done_bad_status, 0);
    assert_int_equal(pr.undercounted, 0);
    assert_int_equal(ps_conn_write_queue(pr.client), 0);
    assert_int_equal(pr.frames_ok, 1);
    assert_int_equal(pr.frames_bad, 0);

    pair_close(&pr);
    free(frame);
}

/* Several sendv calls before the loop runs: all their ciphertext is counted
 * at once; each done leaves the later writes counted; all done: 0. */
static void test_tls_several_writes_add_up(void **state)
{
    (void)state;
    pair pr;
    pair_open(&pr, 1);
    uint8_t *frames[NSMALL];
    write_arg w[NSMALL];
    size_t sum = 0;
    for (int i = 0; i < NSMALL; i++) {
        frames[i] = make_batch_frame(SMALL, (uint64_t)i + 1);
        pr.expect[i] = frames[i];
        pr.expect_len[i] = SMALL;
        w[i] = (write_arg){.pr = &pr, .len = SMALL};
    }
    pr.nexpect = NSMALL;
    for (int i = 0; i < NSMALL; i++) {
        uv_buf_t b = uv_buf_init((char *)frames[i], SMALL);
        pr.outstanding += SMALL;
        assert_int_equal(ps_conn_sendv(pr.client, &b, 1, on_done, &w[i]), 0);
        sum += SMALL;
        size_t q = ps_conn_write_queue(pr.client);
        assert_true(q >= sum);
        assert_true(q <= sum + TLS_SLACK(sum));
    }
    assert_true(uv_stream_get_write_queue_size((uv_stream_t *)pr.client_tcp) < sum);
    assert_int_equal(pr.done, 0);

    run_until(&pr, &pr.done, NSMALL);
    run_until(&pr, &pr.frames_ok, NSMALL);
    assert_int_equal(pr.done_bad_status, 0);
    assert_int_equal(pr.undercounted, 0);
    assert_int_equal(ps_conn_write_queue(pr.client), 0);
    assert_int_equal(pr.frames_bad, 0);

    pair_close(&pr);
    for (int i = 0; i < NSMALL; i++)
        free(frames[i]);
}

/* Plaintext: the queue is libuv's, and empty once a small send completed. */
static void test_plain_small_send_leaves_queue_empty(void **state)
{
    (void)state;
    pair pr;
    pair_open(&pr, 0);
    assert_null(ps_conn_ssl(pr.client));
    uint8_t *frame = make_batch_frame(1024, 1);
    pr.expect[0] = frame;
    pr.expect_len[0] = 1024;
    pr.nexpect = 1;

    write_arg w = {.pr = &pr, .len = 1024};
    uv_buf_t b = uv_buf_init((char *)frame, 1024);
    pr.outstanding = 1024;
    assert_int_equal(ps_conn_sendv(pr.client, &b, 1, on_done, &w), 0);
    assert_int_equal(ps_conn_write_queue(pr.client),
                     uv_stream_get_write_queue_size((uv_stream_t *)pr.client_tcp));

    run_until(&pr, &pr.done, 1);
    run_until(&pr, &pr.frames_ok, 1);
    assert_int_equal(pr.done_bad_status, 0);
    assert_int_equal(ps_conn_write_queue(pr.client), 0);
    assert_int_equal(pr.frames_bad, 0);

    pair_close(&pr);
    free(frame);
}

/* A BATCH frame of `len` bytes whose payload is random (the server checks
 * bytes and header only): larger than one record can be. */
static uint8_t *make_big_frame(size_t len, uint64_t seq)
{
    size_t payload = len - PS_WIRE_HDR_LEN - PS_WIRE_BATCH_HDR_LEN;
    uint8_t *f = malloc(len);
    assert_non_null(f);
    ps_wire_batch_prefix(f, seq, PS_CODEC_NONE, 1, (uint32_t)payload, (uint32_t)payload);
    tu_fill_random(f + PS_WIRE_HDR_LEN + PS_WIRE_BATCH_HDR_LEN, payload, seq);
    return f;
}

static void on_budget_done(void *arg, int status)
{
    (void)status;
    ((pair *)arg)->done++;
}

/* A memory budget: a large frame that fits is received and its buffer given
 * back once dispatched; one that does not fit is not read at all (the conn
 * waits, counted), so the receiver's memory stays within the budget. */
static void test_budget_bounds_large_frames(void **state)
{
    (void)state;
    ps_conn_budget *b = ps_conn_budget_new(2u << 20);
    assert_non_null(b);
    pair pr;
    pair_open_budget(&pr, 0, b);
    size_t fits = 1536 * 1024, too_big = 3u << 20;
    uint8_t *f1 = make_big_frame(fits, 1), *f2 = make_big_frame(too_big, 2);
    pr.expect[0] = f1;
    pr.expect_len[0] = fits;
    pr.expect[1] = f2;
    pr.expect_len[1] = too_big;
    pr.nexpect = 2;
    uv_buf_t b1 = uv_buf_init((char *)f1, (unsigned)fits);
    assert_int_equal(ps_conn_sendv(pr.client, &b1, 1, on_budget_done, &pr), 0);
    run_until(&pr, &pr.frames_ok, 1);
    /* Dispatched: the grown buffer went back, nothing is charged. */
    assert_int_equal(ps_conn_budget_used(b), 0);
    assert_true(ps_conn_rx_bytes(pr.server) <= 512 * 1024 + PS_WIRE_HDR_LEN);
    assert_int_equal(ps_conn_budget_waits(b), 0);

    uv_buf_t b2 = uv_buf_init((char *)f2, (unsigned)too_big);
    assert_int_equal(ps_conn_sendv(pr.client, &b2, 1, on_budget_done, &pr), 0);
    for (int i = 0; i < 200 && !ps_conn_starved(pr.server); i++)
        uv_run(&pr.loop, UV_RUN_NOWAIT);
    assert_true(ps_conn_starved(pr.server));
    assert_int_equal(ps_conn_budget_waits(b), 1);
    assert_false(ps_conn_budget_used(b) > (2u << 20));
    assert_int_equal(pr.frames_ok, 1);
    assert_true(ps_conn_budget_waiting(b));

    pair_close(&pr);
    assert_int_equal(ps_conn_budget_used(b), 0);
    assert_false(ps_conn_budget_waiting(b));
    ps_conn_budget_free(b);
    free(f1);
    free(f2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_write_counted_until_done),
        cmocka_unit_test(test_tls_several_writes_add_up),
        cmocka_unit_test(test_plain_small_send_leaves_queue_empty),
        cmocka_unit_test(test_budget_bounds_large_frames),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
