/* Unit tests for sensor/capture_live on the loopback interface: packets go
 * from the ring into the batcher, a graceful close loses nothing still in a
 * partly filled ring block, drops while blocked are counted by reason, and
 * the metrics series follow. Needs CAP_NET_RAW (skipped without it); the
 * traffic is a few datagrams to 127.0.0.1 on a port of its own. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sensor/capture_live.h"
#include "testutil.h"

typedef struct ctx {
    uv_loop_t loop;
    ps_batcher *b;
    int blocked;
    int closed;
    ps_capture_live_counters final;
} ctx;

static void on_ready(void *ud, ps_batch *batch)
{
    ctx *c = ud;
    ps_batcher_release(c->b, batch);
}

static int is_blocked(void *ud)
{
    return ((ctx *)ud)->blocked;
}

static void on_closed(void *ud, ps_capture_live *l, const ps_capture_live_counters *cnt)
{
    ctx *c = ud;
    (void)l;
    c->closed = 1;
    c->final = *cnt;
}

static void send_udp(int port, int n)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char msg[100];
    for (int i = 0; i < n; i++) {
        int len = snprintf(msg, sizeof(msg), "capture-live-test-%d", i);
        assert_true(sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&to, sizeof(to)) == len);
    }
    close(fd);
}

static void test_loopback_capture(void **state)
{
    (void)state;
    ctx c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(uv_loop_init(&c.loop), 0);
    ps_batcher_opts bo = {.codec = PS_CODEC_NONE,
                          .block_bytes = 64 * 1024,
                          .wait_ms = 10,
                          .on_sealed = tu_batch_ignore,
                          .on_ready = on_ready,
                          .ud = &c};
    c.b = ps_batcher_new(&c.loop, &bo);
    assert_non_null(c.b);
    ps_metrics *m = ps_metrics_new();
    ps_metric *fp = ps_metrics_family(m, PS_METRIC_COUNTER, "pk_total", "p", "iface");
    ps_metric *fd = ps_metrics_family(m, PS_METRIC_COUNTER, "sd_total", "d", "iface,reason");
    int port = 20000 + (int)(getpid() % 20000);
    char filter[64];
    snprintf(filter, sizeof(filter), "udp dst port %d", port);
    ps_capture_live_opts o = {
        .loop = &c.loop,
        .batcher = c.b,
        .ifname = "lo",
        .index = 7,
        .snaplen = 65535,
        .buffer_bytes = 1 << 20,
        .timeout_ms = 100,
        .blocked = is_blocked,
        .ud = &c,
        .series = {.packets = ps_metric_series(fp, "lo", NULL, NULL),
                   .drops_spool_full = ps_metric_series(fd, "lo", "spool_full", NULL)}};
    ps_capture_live *l = NULL;
    char err[512];
    int rc = ps_capture_live_open(&l, &o, filter, err, sizeof(err));
    if (rc == PS_CAPTURE_LIVE_E_PERM) {
        ps_batcher_free(c.b);
        ps_metrics_free(m);
        uv_loop_close(&c.loop);
        skip();
    }
    assert_int_equal(rc, 0);
    assert_int_equal(ps_capture_live_linktype(l), 1);
    assert_int_equal(ps_capture_live_index(l), 7);
    assert_string_equal(ps_capture_live_name(l), "lo");

    /* captured: 5 datagrams, read as the block timeout hands them over */
    send_udp(port, 5);
    tu_run_for(&c.loop, 300);
    ps_capture_live_counters cnt;
    ps_capture_live_counters_get(l, &cnt);
    assert_int_equal(cnt.packets, 5);

    /* blocked (spool full): taken off the ring and counted, not batched */
    c.blocked = 1;
    send_udp(port, 3);
    tu_run_for(&c.loop, 300);
    ps_capture_live_counters_get(l, &cnt);
    assert_int_equal(cnt.packets, 5);
    assert_int_equal(cnt.drops_spool_full, 3);
    c.blocked = 0;

    /* closed right after sending: the graceful close still gets them */
    send_udp(port, 4);
    ps_capture_live_close_graceful(l, on_closed);
    while (!c.closed)
        uv_run(&c.loop, UV_RUN_ONCE);
    assert_int_equal(c.final.packets, 9);
    assert_int_equal(c.final.drops_spool_full, 3);
    assert_int_equal(c.final.bytes, 9 * (14 + 20 + 8) + 5 * 19 + 4 * 19);
    uv_run(&c.loop, UV_RUN_DEFAULT); /* the handle frees itself */

    ps_batcher_flush(c.b);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    ps_batcher_totals t;
    ps_batcher_get_totals(c.b, &t);
    assert_int_equal(t.packets, 9);

    ps_buf out = PS_BUF_INIT;
    assert_int_equal(ps_metrics_render(m, &out), 0);
    assert_int_equal(ps_buf_append(&out, "", 1), 0);
    assert_non_null(strstr((char *)out.data, "pk_total{iface=\"lo\"} 9\n"));
    assert_non_null(strstr((char *)out.data, "sd_total{iface=\"lo\",reason=\"spool_full\"} 3\n"));
    ps_buf_free(&out);
    ps_metrics_free(m);
    ps_batcher_free(c.b);
    assert_int_equal(uv_loop_close(&c.loop), 0);
}

static void test_errors_name_the_interface(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    ps_capture_live_opts o = {.loop = &loop,
                              .ifname = "pslc-nosuch0",
                              .snaplen = 65535,
                              .buffer_bytes = 1 << 20,
                              .timeout_ms = 100};
    ps_capture_live *l = NULL;
    char err[512];
    int rc = ps_capture_live_open(&l, &o, NULL, err, sizeof(err));
    assert_true(rc == PS_CAPTURE_LIVE_E_NODEV || rc == PS_CAPTURE_LIVE_E_PERM);
    assert_null(l);
    assert_non_null(strstr(err, "pslc-nosuch0"));
    o.ifname = "lo";
    rc = ps_capture_live_open(&l, &o, "udp port", err, sizeof(err));
    if (rc != PS_CAPTURE_LIVE_E_PERM) {
        assert_int_equal(rc, PS_CAPTURE_LIVE_E_FILTER);
        assert_non_null(strstr(err, "invalid filter \"udp port\" on lo: "));
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_capture),
        cmocka_unit_test(test_errors_name_the_interface),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
