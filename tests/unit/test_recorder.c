/* Unit tests for the flight recorder: the memory bound holds whatever the
 * packet sizes, packets come back in order and byte for byte, eviction by
 * age and by room (counted, and reported as lost for a window), windows by
 * interface and time, and a BPF filter applied with pcap_offline_filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <pcap/pcap.h>

#include "sensor/recorder.h"

#define SEC 1000000000ull

/* Ethernet + IPv4 + UDP to dport, padded to len bytes; byte 42.. holds tag. */
static void udp_packet(uint8_t *p, size_t len, uint16_t dport, uint32_t tag)
{
    memset(p, 0, len);
    p[12] = 0x08; /* IPv4 */
    p[14] = 0x45;
    uint16_t iplen = (uint16_t)(len - 14);
    p[16] = (uint8_t)(iplen >> 8);
    p[17] = (uint8_t)iplen;
    p[22] = 64;
    p[23] = 17; /* UDP */
    p[26] = 10, p[29] = 1, p[30] = 10, p[33] = 2;
    p[34] = 0x30, p[35] = 0x39; /* sport 12345 */
    p[36] = (uint8_t)(dport >> 8);
    p[37] = (uint8_t)dport;
    uint16_t ulen = (uint16_t)(len - 34);
    p[38] = (uint8_t)(ulen >> 8);
    p[39] = (uint8_t)ulen;
    if (len >= 46)
        memcpy(p + 42, &tag, 4);
}

typedef struct got {
    uint64_t n;
    uint32_t tags[4096];
    uint64_t ts[4096];
    uint32_t caplen[4096];
    int mismatch;
} got;

static int collect(void *ud, const ps_record *rec)
{
    got *g = ud;
    if (g->n < 4096) {
        uint32_t tag = 0;
        if (rec->caplen >= 46)
            memcpy(&tag, rec->data + 42, 4);
        g->tags[g->n] = tag;
        g->ts[g->n] = rec->ts_ns;
        g->caplen[g->n] = rec->caplen;
        /* the rest of the packet is what udp_packet wrote */
        uint8_t ref[2048];
        uint16_t dport = (uint16_t)(rec->data[36] << 8 | rec->data[37]);
        udp_packet(ref, rec->caplen, dport, tag);
        if (memcmp(ref, rec->data, rec->caplen) != 0)
            g->mismatch = 1;
    }
    g->n++;
    return 0;
}

static void test_order_and_bytes(void **state)
{
    (void)state;
    ps_recorder_opts o = {.max_bytes = 1 << 20, .max_age_ns = 30 * SEC};
    ps_recorder *r = ps_recorder_new(&o);
    assert_non_null(r);
    uint8_t pkt[1500];
    for (uint32_t i = 0; i < 100; i++) {
        size_t len = 60 + (i * 37) % 1400;
        udp_packet(pkt, len, 53, i);
        assert_int_equal(
            ps_recorder_add(r, i % 2, 100 * SEC + i, (uint32_t)len, (uint32_t)len + 4, pkt), 0);
    }
    got *g = calloc(1, sizeof(*g));
    ps_recorder_window w = {.iface = 1, .from_ns = 0};
    uint64_t lost = 99;
    assert_int_equal(ps_recorder_read(r, &w, collect, g, &lost), 50);
    assert_int_equal(lost, 0);
    assert_false(g->mismatch);
    for (uint32_t i = 0; i < 50; i++) {
        assert_int_equal(g->tags[i], 2 * i + 1);
        assert_int_equal(g->ts[i], 100 * SEC + 2 * i + 1);
        assert_int_equal(g->caplen[i], 60 + ((2 * i + 1) * 37) % 1400);
    }
    /* a time window: [from, to) */
    memset(g, 0, sizeof(*g));
    w = (ps_recorder_window){.iface = 0, .from_ns = 100 * SEC + 10, .to_ns = 100 * SEC + 20};
    assert_int_equal(ps_recorder_read(r, &w, collect, g, NULL), 5);
    assert_int_equal(g->tags[0], 10);
    assert_int_equal(g->tags[4], 18);
    ps_recorder_totals t;
    ps_recorder_get_totals(r, &t);
    assert_int_equal(t.packets, 100);
    assert_int_equal(t.added, 100);
    assert_int_equal(t.evicted_age + t.evicted_room, 0);
    free(g);
    ps_recorder_free(r);
}

/* Random sizes through a small ring: never more than its size held, the
 * packets held are always the newest ones, in order, with nothing missing
 * between them. */
static void test_bound_by_bytes(void **state)
{
    (void)state;
    ps_recorder_opts o = {.max_bytes = 64 * 1024, .max_age_ns = 0};
    ps_recorder *r = ps_recorder_new(&o);
    uint8_t pkt[2048];
    srand(7);
    got *g = calloc(1, sizeof(*g));
    for (uint32_t i = 0; i < 20000; i++) {
        size_t len = 46 + (size_t)rand() % 1954;
        udp_packet(pkt, len, 80, i);
        assert_int_equal(ps_recorder_add(r, 0, SEC + i, (uint32_t)len, (uint32_t)len, pkt), 0);
        ps_recorder_totals t;
        ps_recorder_get_totals(r, &t);
        assert_true(t.bytes <= 64 * 1024);
        assert_int_equal(t.packets + t.evicted_room, i + 1);
        if (i % 997 == 0 || i == 19999) {
            memset(g, 0, sizeof(*g));
            ps_recorder_window w = {.iface = 0};
            assert_int_equal(ps_recorder_read(r, &w, collect, g, NULL), t.packets);
            assert_false(g->mismatch);
            for (uint64_t k = 0; k < g->n; k++)
                assert_int_equal(g->tags[k], i + 1 - t.packets + k);
            /* a ring of 64 KiB holds more than 20 full-size packets */
            assert_true(i < 100 || t.packets > 20);
        }
    }
    ps_recorder_totals t;
    ps_recorder_get_totals(r, &t);
    assert_true(t.evicted_room > 15000);
    assert_int_equal(t.evicted_age, 0);
    assert_int_equal(t.mem >= 64 * 1024, 1);
    assert_true(t.mem < 64 * 1024 + 4096);
    free(g);
    ps_recorder_free(r);
}

static void test_eviction_by_age(void **state)
{
    (void)state;
    ps_recorder_opts o = {.max_bytes = 1 << 20, .max_age_ns = 10 * SEC};
    ps_recorder *r = ps_recorder_new(&o);
    uint8_t pkt[100];
    for (uint32_t i = 0; i < 30; i++) { /* one packet a second, 1000 s .. 1029 s */
        udp_packet(pkt, sizeof(pkt), 53, i);
        assert_int_equal(ps_recorder_add(r, 3, (1000 + i) * SEC, sizeof(pkt), sizeof(pkt), pkt), 0);
    }
    ps_recorder_totals t;
    ps_recorder_get_totals(r, &t);
    /* newest is 1029 s: kept are ts >= 1019 s */
    assert_int_equal(t.packets, 11);
    assert_int_equal(t.evicted_age, 19);
    assert_int_equal(t.evicted_room, 0);
    /* no packets for a while: the clock alone ages them out */
    ps_recorder_expire(r, 1035 * SEC);
    ps_recorder_get_totals(r, &t);
    assert_int_equal(t.packets, 5);
    got *g = calloc(1, sizeof(*g));
    ps_recorder_window w = {.iface = 3, .from_ns = 0};
    uint64_t lost = 9;
    assert_int_equal(ps_recorder_read(r, &w, collect, g, &lost), 5);
    assert_int_equal(g->tags[0], 25);
    assert_int_equal(lost, 0); /* aged out is not lost: it is outside any preroll */
    ps_recorder_expire(r, 2000 * SEC);
    ps_recorder_get_totals(r, &t);
    assert_int_equal(t.packets, 0);
    assert_int_equal(t.bytes, 0);
    /* and it fills again from empty */
    assert_int_equal(ps_recorder_add(r, 3, 2000 * SEC, sizeof(pkt), sizeof(pkt), pkt), 0);
    memset(g, 0, sizeof(*g));
    assert_int_equal(ps_recorder_read(r, &w, collect, g, NULL), 1);
    free(g);
    ps_recorder_free(r);
}

/* Room evictions are reported for the window that wanted them. */
static void test_lost_reported(void **state)
{
    (void)state;
    ps_recorder_opts o = {.max_bytes = 16 * 1024, .max_age_ns = 60 * SEC};
    ps_recorder *r = ps_recorder_new(&o);
    uint8_t pkt[1000];
    /* iface 1: 10 packets at 500 s; then iface 2 floods at 510 s */
    for (uint32_t i = 0; i < 10; i++) {
        udp_packet(pkt, sizeof(pkt), 53, i);
        ps_recorder_add(r, 1, 500 * SEC + i, sizeof(pkt), sizeof(pkt), pkt);
    }
    for (uint32_t i = 0; i < 100; i++) {
        udp_packet(pkt, sizeof(pkt), 53, i);
        ps_recorder_add(r, 2, 510 * SEC + i, sizeof(pkt), sizeof(pkt), pkt);
    }
    got *g = calloc(1, sizeof(*g));
    uint64_t lost = 0;
    ps_recorder_window w = {.iface = 1, .from_ns = 495 * SEC};
    assert_int_equal(ps_recorder_read(r, &w, collect, g, &lost), 0);
    assert_int_equal(lost, 10);
    w.from_ns = 505 * SEC; /* a window after them lost nothing */
    assert_int_equal(ps_recorder_read(r, &w, collect, g, &lost), 0);
    assert_int_equal(lost, 0);
    w = (ps_recorder_window){.iface = 2, .from_ns = 500 * SEC};
    memset(g, 0, sizeof(*g));
    uint64_t n = ps_recorder_read(r, &w, collect, g, &lost);
    assert_int_equal(n + lost, 100);
    assert_int_equal(g->tags[0], 100 - n);
    free(g);
    ps_recorder_free(r);
}

static void test_filter(void **state)
{
    (void)state;
    ps_recorder_opts o = {.max_bytes = 1 << 20, .max_age_ns = 0};
    ps_recorder *r = ps_recorder_new(&o);
    uint8_t pkt[200];
    for (uint32_t i = 0; i < 60; i++) {
        udp_packet(pkt, sizeof(pkt), i % 3 == 0 ? 53 : 8080, i);
        ps_recorder_add(r, 0, SEC + i, sizeof(pkt), sizeof(pkt), pkt);
    }
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 65535);
    struct bpf_program prog;
    assert_int_equal(pcap_compile(dead, &prog, "udp dst port 53", 1, PCAP_NETMASK_UNKNOWN), 0);
    got *g = calloc(1, sizeof(*g));
    ps_recorder_window w = {.iface = 0, .from_ns = SEC + 30, .filter = &prog};
    assert_int_equal(ps_recorder_read(r, &w, collect, g, NULL), 10);
    for (uint64_t k = 0; k < 10; k++)
        assert_int_equal(g->tags[k], 30 + 3 * k);
    pcap_freecode(&prog);
    assert_int_equal(pcap_compile(dead, &prog, "tcp", 1, PCAP_NETMASK_UNKNOWN), 0);
    assert_int_equal(ps_recorder_read(r, &w, collect, g, NULL), 0);
    pcap_freecode(&prog);
    pcap_close(dead);
    free(g);
    ps_recorder_free(r);
}

static int stop_after_two(void *ud, const ps_record *rec)
{
    (void)rec;
    return ++*(int *)ud >= 2;
}

static void test_refused_and_stop(void **state)
{
    (void)state;
    ps_recorder_opts o = {.max_bytes = 4096, .max_age_ns = 0};
    ps_recorder *r = ps_recorder_new(&o);
    uint8_t big[4096];
    memset(big, 1, sizeof(big));
    assert_int_equal(ps_recorder_add(r, 0, 1, 3000, 3000, big), -1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ps_recorder_add(r, 0, 2 + (uint64_t)i, 100, 100, big), 0);
    int calls = 0;
    ps_recorder_window w = {.iface = 0};
    assert_int_equal(ps_recorder_read(r, &w, stop_after_two, &calls, NULL), 2);
    ps_recorder_totals t;
    ps_recorder_get_totals(r, &t);
    assert_int_equal(t.refused, 1);
    assert_int_equal(t.packets, 5);
    ps_recorder_free(r);
    ps_recorder_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_bytes), cmocka_unit_test(test_bound_by_bytes),
        cmocka_unit_test(test_eviction_by_age), cmocka_unit_test(test_lost_reported),
        cmocka_unit_test(test_filter),          cmocka_unit_test(test_refused_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
