/* Unit tests for core/metrics: exposition text, escaping, lock-free updates
 * racing a renderer. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

static char *render(ps_metrics *m)
{
    static char text[65536];
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_metrics_render(m, &b), 0);
    assert_true(b.len < sizeof(text));
    memcpy(text, b.data, b.len);
    text[b.len] = '\0';
    ps_buf_free(&b);
    return text;
}

static void test_counter_and_gauge_text(void **state)
{
    (void)state;
    ps_metrics *m = ps_metrics_new();
    ps_metric *c = ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_packets_total",
                                     "Packets written.", "sensor,iface");
    ps_metric *g = ps_metrics_family(m, PS_METRIC_GAUGE, "packetstreamer_ratio", "A ratio.", NULL);
    assert_non_null(c);
    assert_non_null(g);
    ps_series *s = ps_metric_series(c, "n1", "eth0", NULL);
    ps_series_add(s, 41);
    ps_series_add(s, 1);
    assert_ptr_equal(ps_metric_series(c, "n1", "eth0", NULL), s);
    ps_series_set(ps_metric_series(g, NULL, NULL, NULL), 2.5);
    const char *t = render(m);
    assert_string_equal(t, "# HELP packetstreamer_packets_total Packets written.\n"
                           "# TYPE packetstreamer_packets_total counter\n"
                           "packetstreamer_packets_total{sensor=\"n1\",iface=\"eth0\"} 42\n"
                           "# HELP packetstreamer_ratio A ratio.\n"
                           "# TYPE packetstreamer_ratio gauge\n"
                           "packetstreamer_ratio 2.5\n");
    ps_metrics_free(m);
}

static void test_escaping_and_removal(void **state)
{
    (void)state;
    ps_metrics *m = ps_metrics_new();
    ps_metric *c = ps_metrics_family(m, PS_METRIC_COUNTER, "x_total", "back\\slash\nnl", "l");
    ps_series *s = ps_metric_series(c, "a\"b\\c\nd", NULL, NULL);
    ps_series_add(s, 1);
    const char *t = render(m);
    assert_non_null(strstr(t, "# HELP x_total back\\\\slash\\nnl\n"));
    assert_non_null(strstr(t, "x_total{l=\"a\\\"b\\\\c\\nd\"} 1\n"));
    ps_series_remove(c, s);
    assert_null(strstr(render(m), "x_total{"));
    /* Bad names are refused, not rendered. */
    assert_null(ps_metrics_family(m, PS_METRIC_COUNTER, "9bad", "", NULL));
    assert_null(ps_metrics_family(m, PS_METRIC_COUNTER, "bad-name", "", NULL));
    assert_null(ps_metrics_family(m, PS_METRIC_COUNTER, "ok", "", "a,b,c,d"));
    ps_metrics_free(m);
}

static void *adder(void *arg)
{
    ps_series *s = arg;
    for (int i = 0; i < 200000; i++)
        ps_series_add(s, 1);
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    ps_metrics *m = ps_metrics_new();
    ps_metric *c = ps_metrics_family(m, PS_METRIC_COUNTER, "n_total", "n", "t");
    ps_series *s = ps_metric_series(c, "x", NULL, NULL);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, adder, s);
    for (int i = 0; i < 50; i++) {
        ps_metric_series(c, i % 2 ? "y" : "z", NULL, NULL);
        (void)render(m);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(ps_series_get_u64(s), 400000);
    assert_non_null(strstr(render(m), "n_total{t=\"x\"} 400000\n"));
    ps_metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    ps_metrics *m = ps_metrics_new();
    static const double b[] = {0.001, 0.01, 0.1};
    static const double unsorted[] = {0.1, 0.01};
    assert_null(ps_metrics_histogram(m, "bad_seconds", "x", NULL, unsorted, 2));
    assert_null(ps_metrics_histogram(m, "bad_seconds", "x", NULL, b, 0));
    ps_metric *h = ps_metrics_histogram(m, "lat_seconds", "Latency.", "sensor", b, 3);
    assert_non_null(h);
    ps_series *s = ps_metric_series(h, "n1", NULL, NULL);
    assert_non_null(s);
    ps_series_observe(s, 0.0005); /* le 0.001 */
    ps_series_observe(s, 0.001);  /* le 0.001: bounds are inclusive */
    ps_series_observe(s, 0.05);   /* le 0.1 */
    ps_series_observe(s, 3);      /* +Inf */
    const char *t = render(m);
    assert_non_null(strstr(t, "# TYPE lat_seconds histogram\n"
                              "lat_seconds_bucket{sensor=\"n1\",le=\"0.001\"} 2\n"
                              "lat_seconds_bucket{sensor=\"n1\",le=\"0.01\"} 2\n"
                              "lat_seconds_bucket{sensor=\"n1\",le=\"0.1\"} 3\n"
                              "lat_seconds_bucket{sensor=\"n1\",le=\"+Inf\"} 4\n"
                              "lat_seconds_sum{sensor=\"n1\"} 3.05"));
    assert_non_null(strstr(t, "lat_seconds_count{sensor=\"n1\"} 4\n"));
    ps_metrics_free(m);
}

static void *observer(void *arg)
{
    for (int i = 0; i < 100000; i++)
        ps_series_observe(arg, 0.5);
    return NULL;
}

static void test_histogram_concurrent(void **state)
{
    (void)state;
    ps_metrics *m = ps_metrics_new();
    static const double b[] = {1};
    ps_series *s =
        ps_metric_series(ps_metrics_histogram(m, "h_seconds", "h", NULL, b, 1), NULL, NULL, NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, observer, s);
    for (int i = 0; i < 20; i++)
        render(m);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    const char *t = render(m);
    assert_non_null(strstr(t, "h_seconds_bucket{le=\"1\"} 400000\n"));
    assert_non_null(strstr(t, "h_seconds_sum 200000\n"));
    assert_non_null(strstr(t, "h_seconds_count 400000\n"));
    ps_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge_text), cmocka_unit_test(test_escaping_and_removal),
        cmocka_unit_test(test_concurrent_updates),     cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
