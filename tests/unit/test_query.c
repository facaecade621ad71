/* Unit tests for receiver/query (time parameters, interface selectors, the
 * merge over files) and receiver/index (scan, save, load, staleness, a .part
 * file's incomplete tail). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/pcapng.h"
#include "receiver/index.h"
#include "receiver/query.h"
#include "testutil.h"

#define NOW 1764921600000000000ull /* 2025-12-05T08:00:00Z */

static uint64_t t(const char *s)
{
    uint64_t v = 0;
    char err[256];
    int rc = ps_query_parse_time(s, NOW, &v, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", s, err);
    return v;
}

static int bad(const char *s)
{
    uint64_t v;
    char err[256] = "";
    int rc = ps_query_parse_time(s, NOW, &v, err, sizeof(err));
    if (rc == 0)
        return 0;
    assert_true(err[0] != '\0');
    return 1;
}

static void test_rfc3339(void **state)
{
    (void)state;
    assert_int_equal(t("2025-12-05T08:00:00Z"), NOW);
    assert_int_equal(t("2025-12-05t08:00:00z"), NOW);
    assert_int_equal(t("2025-12-05 08:00:00Z"), NOW);
    assert_int_equal(t("2025-12-05T09:30:00+01:30"), NOW);
    assert_int_equal(t("2025-12-05T03:00:00-05:00"), NOW);
    assert_int_equal(t("2025-12-05T08:00:00.5Z"), NOW + 500000000);
    assert_int_equal(t("2025-12-05T08:00:00.123456789Z"), NOW + 123456789);
    /* beyond nanoseconds: cut, not rounded */
    assert_int_equal(t("2025-12-05T08:00:00.1234567899Z"), NOW + 123456789);
    assert_int_equal(t("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(t("2024-02-29T00:00:00Z"), 1709164800000000000ull);
    assert_int_equal(t("2000-03-01T00:00:00Z"), 951868800000000000ull);
    assert_true(bad("2025-12-05T08:00:00"));   /* no zone */
    assert_true(bad("2025-12-05"));            /* a date only */
    assert_true(bad("2025-13-05T08:00:00Z"));  /* month */
    assert_true(bad("2025-02-29T08:00:00Z"));  /* not a leap year */
    assert_true(bad("2025-12-05T24:00:00Z"));  /* hour */
    assert_true(bad("2025-12-05T08:00:00.Z")); /* empty fraction */
    assert_true(bad("2025-12-05T08:00:00Zjunk"));
    assert_true(bad("2025-12-05T08:00:00+0100"));
    assert_true(bad("1969-12-31T23:59:59Z")); /* before the epoch */
    assert_true(bad(""));
    assert_true(bad("yesterday"));
    assert_true(bad("1764921600"));
}

static void test_relative(void **state)
{
    (void)state;
    assert_int_equal(t("now"), NOW);
    assert_int_equal(t("-5m"), NOW - 300000000000ull);
    assert_int_equal(t("now-5m"), NOW - 300000000000ull);
    assert_int_equal(t("-90s"), NOW - 90000000000ull);
    assert_int_equal(t("-2h"), NOW - 7200000000000ull);
    assert_int_equal(t("-1h30m"), NOW - 5400000000000ull);
    assert_int_equal(t("-250ms"), NOW - 250000000ull);
    assert_int_equal(t("-3us"), NOW - 3000ull);
    assert_int_equal(t("-7ns"), NOW - 7ull);
    assert_int_equal(t("-1d"), NOW - 86400000000000ull);
    assert_int_equal(t("-30000d"), 0);
    assert_true(bad("-1000000d")); /* overflows */ /* before the epoch: clamped */
    assert_true(bad("-"));
    assert_true(bad("-5"));
    assert_true(bad("-5x"));
    assert_true(bad("-m"));
    assert_true(bad("+5m"));
    assert_true(bad("-99999999999999999999s"));
    assert_true(bad("now-"));
}

static int m(const char *name, const char *pod, const char *ns, const char *sensor,
             const char *iface)
{
    ps_query_opts o = {.pod = pod, .ns = ns, .sensor = sensor, .iface = iface};
    return ps_query_name_matches(name, &o);
}

static void test_selectors(void **state)
{
    (void)state;
    assert_true(m("node-1/shop/web-1", NULL, NULL, NULL, NULL));
    assert_true(m("node-1/shop/web-1", "shop/web-1", NULL, NULL, NULL));
    assert_false(m("node-1/shop/web-10", "shop/web-1", NULL, NULL, NULL));
    assert_false(m("node-1/xshop/web-1", "shop/web-1", NULL, NULL, NULL));
    assert_false(m("shop/web-1", "shop/web-1", NULL, NULL, NULL)); /* no sensor part */
    assert_false(m("/shop/web-1", "shop/web-1", NULL, NULL, NULL));
    assert_true(m("node-1/shop/web-1", NULL, "shop", NULL, NULL));
    assert_false(m("node-1/shop/web-1", NULL, "sho", NULL, NULL));
    assert_false(m("node-1/eth0", NULL, "node-1", NULL, NULL)); /* not a pod */
    assert_false(m("shop/web-1", NULL, "shop", NULL, NULL));
    assert_true(m("node-1/eth0", NULL, NULL, "node-1", NULL));
    assert_true(m("node-1/shop/web-1", NULL, NULL, "node-1", NULL));
    assert_false(m("node-10/eth0", NULL, NULL, "node-1", NULL));
    assert_false(m("node-1/", NULL, NULL, "node-1", NULL));
    assert_true(m("node-1/eth0", NULL, NULL, NULL, "eth0"));
    assert_false(m("node-1/veth0", NULL, NULL, NULL, "eth0"));
    assert_true(m("node-1/shop/web-1", NULL, NULL, NULL, "shop/web-1"));
    assert_true(m("node-1/eth0", NULL, NULL, "node-1", "eth0"));
    assert_false(m("node-2/eth0", NULL, NULL, "node-1", "eth0"));
    /* with sensor=, iface= is the whole rest */
    assert_false(m("node-1/shop/eth0", NULL, NULL, "node-1", "eth0"));
    assert_true(m("node-1/shop/web-1", "shop/web-1", "shop", "node-1", NULL));
    assert_false(m("node-1/shop/web-1", "shop/web-1", "other", NULL, NULL));
}

/* ---- files ---- */

typedef struct pkt {
    uint32_t ifc;
    uint64_t ts;
    uint8_t byte;
} pkt;

static void write_file(const char *path, const char *const *names, size_t nnames, const pkt *p,
                       size_t n, size_t cut)
{
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_shb(&b, "test", NULL), 0);
    for (size_t i = 0; i < nnames; i++)
        assert_int_equal(ps_pcapng_idb(&b, 1, 262144, names[i], i == 0 ? "the first" : NULL), 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t data[61];
        memset(data, p[i].byte, sizeof(data));
        assert_int_equal(ps_pcapng_epb(&b, p[i].ifc, p[i].ts, 61, 100, data), 0);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.data, b.len - cut), (ssize_t)(b.len - cut));
    close(fd);
    ps_buf_free(&b);
}

static void test_index_scan_save_load(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "idx"), 0);
    const char *names[] = {"s1/eth0", "s1/ns/pod"};
    pkt p[] = {{1, 500, 1}, {0, 300, 2}, {1, 700, 3}, {0, 100, 4}};
    char path[512];
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000001.pcapng", dir);
    write_file(path, names, 2, p, 4, 0);
    ps_index x;
    char err[512];
    assert_int_equal(ps_index_build(dir, "ps-20251205T080000Z-000001.pcapng", &x, err, sizeof(err)),
                     0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(x.size, (uint64_t)st.st_size);
    assert_int_equal(x.data_end, (uint64_t)st.st_size);
    assert_int_equal(x.packets, 4);
    assert_int_equal(x.first_ns, 100);
    assert_int_equal(x.last_ns, 700);
    assert_int_equal(x.nifs, 2);
    assert_string_equal(x.ifs[0].name, "s1/eth0");
    assert_string_equal(x.ifs[0].desc, "the first");
    assert_string_equal(x.ifs[1].desc, "");
    assert_int_equal(x.ifs[0].first_ns, 100);
    assert_int_equal(x.ifs[0].last_ns, 300);
    assert_int_equal(x.ifs[1].first_ns, 500);
    assert_int_equal(x.ifs[1].packets, 2);
    assert_int_equal(x.ifs[1].tsresol, 9);
    ps_index_free(&x);

    /* saved: loads back the same; a file of another size makes it stale */
    assert_int_equal(
        ps_index_load(dir, "ps-20251205T080000Z-000001.pcapng", (uint64_t)st.st_size, &x), 0);
    assert_int_equal(x.nifs, 2);
    assert_string_equal(x.ifs[1].name, "s1/ns/pod");
    assert_int_equal(x.ifs[1].last_ns, 700);
    ps_index_free(&x);
    assert_int_equal(
        ps_index_load(dir, "ps-20251205T080000Z-000001.pcapng", (uint64_t)st.st_size + 4, &x), -1);
    /* a damaged index is ignored */
    char ipath[600];
    snprintf(ipath, sizeof(ipath), "%s/.index/ps-20251205T080000Z-000001.pcapng.idx", dir);
    FILE *f = fopen(ipath, "w");
    assert_non_null(f);
    fputs("{\"v\":1,\"size\":", f);
    fclose(f);
    assert_int_equal(
        ps_index_load(dir, "ps-20251205T080000Z-000001.pcapng", (uint64_t)st.st_size, &x), -1);

    /* a .part whose last block is incomplete: read up to the block before,
     * and no index is saved for it */
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000002.pcapng.part", dir);
    write_file(path, names, 2, p, 4, 10);
    assert_int_equal(
        ps_index_build(dir, "ps-20251205T080000Z-000002.pcapng.part", &x, err, sizeof(err)), 0);
    assert_int_equal(x.packets, 3);
    assert_int_equal(x.last_ns, 700);
    assert_int_equal(x.first_ns, 300);
    assert_true(x.data_end < x.size);
    ps_index_free(&x);
    snprintf(ipath, sizeof(ipath), "%s/.index/ps-20251205T080000Z-000002.pcapng.part.idx", dir);
    assert_int_equal(access(ipath, F_OK), -1);

    /* not pcapng: refused with a reason */
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000003.pcapng", dir);
    f = fopen(path, "w");
    fputs("hello, not a capture", f);
    fclose(f);
    assert_int_equal(ps_index_build(dir, "ps-20251205T080000Z-000003.pcapng", &x, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "pcapng"));
    tu_rm_rf(dir);
}

static size_t read_all(ps_query *q, uint8_t **out)
{
    size_t len = 0, cap = 1 << 16;
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    for (;;) {
        if (cap - len < 100) {
            cap *= 2;
            b = realloc(b, cap);
            assert_non_null(b);
        }
        ssize_t n = ps_query_read(q, b + len, 100); /* small reads: blocks span calls */
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *out = b;
    return len;
}

/* The EPBs of an output stream: (if_id, ts, first byte). */
static size_t epbs(const uint8_t *b, size_t len, pkt *out, size_t max, char names[][64],
                   size_t *nnames)
{
    size_t off = 0, n = 0;
    *nnames = 0;
    while (off + 12 <= len) {
        uint32_t type, bl;
        memcpy(&type, b + off, 4);
        memcpy(&bl, b + off + 4, 4);
        assert_true(bl >= 12 && off + bl <= len);
        if (type == PS_PCAPNG_IDB) {
            uint16_t ol;
            memcpy(&ol, b + off + 18, 2);
            snprintf(names[*nnames], 64, "%.*s", (int)ol, (const char *)b + off + 20);
            (*nnames)++;
        } else if (type == PS_PCAPNG_EPB && n < max) {
            uint32_t hi, lo;
            memcpy(&out[n].ifc, b + off + 8, 4);
            memcpy(&hi, b + off + 12, 4);
            memcpy(&lo, b + off + 16, 4);
            out[n].ts = ((uint64_t)hi << 32) | lo;
            out[n].byte = b[off + 28];
            n++;
        }
        off += bl;
    }
    assert_int_equal(off, len);
    return n;
}

static void test_merge(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "merge"), 0);
    /* two files whose times overlap, interfaces in different IDB orders,
     * each interface in order within its file, the file not */
    const char *n1[] = {"a/eth0", "b/ns/pod"};
    const char *n2[] = {"b/ns/pod", "a/eth0", "c/eth1"};
    pkt f1[] = {{0, 10, 1}, {0, 30, 2}, {0, 50, 3}, {1, 5, 4}, {1, 25, 5}, {1, 45, 6}};
    pkt f2[] = {{1, 20, 7}, {1, 40, 8}, {0, 35, 9}, {0, 60, 10}, {2, 1, 11}}; /* a/eth0 first */
    char path[512];
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000001.pcapng", dir);
    write_file(path, n1, 2, f1, 6, 0);
    snprintf(path, sizeof(path), "%s/ps-20251205T080001Z-000002.pcapng.part", dir);
    write_file(path, n2, 3, f2, 5, 7); /* the last packet (c/eth1) incomplete */

    ps_query_opts o = {.from_ns = 0, .to_ns = 1000, .app = "t"};
    ps_query *q;
    char err[512];
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    ps_query_stats st;
    ps_query_get_stats(q, &st);
    assert_int_equal(st.files, 2);
    assert_int_equal(st.files_read, 2);
    assert_int_equal(st.files_scanned, 2); /* no index yet (the .part never has one) */
    assert_int_equal(st.streams, 4);       /* c/eth1 has no complete packet */
    uint8_t *b;
    size_t len = read_all(q, &b);
    ps_query_free(q);
    pkt got[16];
    char names[8][64];
    size_t nn;
    size_t n = epbs(b, len, got, 16, names, &nn);
    free(b);
    static const uint8_t order[] = {4, 1, 7, 5, 2, 9, 8, 6, 3, 10};
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(got[i].byte, order[i]);
        if (i)
            assert_true(got[i].ts >= got[i - 1].ts);
    }
    assert_int_equal(nn, 2);
    assert_string_equal(names[0], "b/ns/pod");
    assert_string_equal(names[1], "a/eth0");
    assert_int_equal(got[0].ifc, 0);
    assert_int_equal(got[1].ifc, 1);

    /* a window and a pod: the completed file's index is used now */
    o = (ps_query_opts){.from_ns = 20, .to_ns = 44, .pod = "ns/pod", .app = "t"};
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    ps_query_get_stats(q, &st);
    assert_int_equal(st.files_scanned, 1);
    assert_int_equal(st.streams, 2);
    len = read_all(q, &b);
    ps_query_free(q);
    n = epbs(b, len, got, 16, names, &nn);
    free(b);
    assert_int_equal(n, 2); /* b/ns/pod: 25 in the first file, 35 in the .part */
    assert_int_equal(got[0].byte, 5);
    assert_int_equal(got[1].byte, 9);

    /* a window that ends before the second file: it is skipped */
    o = (ps_query_opts){.from_ns = 0, .to_ns = 4, .app = "t"};
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    ps_query_get_stats(q, &st);
    assert_int_equal(st.files_read, 0);
    assert_int_equal(st.files_skipped, 2);
    assert_int_equal(st.streams, 0);
    assert_int_equal(st.ifaces_named, 3);
    len = read_all(q, &b);
    ps_query_free(q);
    n = epbs(b, len, got, 16, names, &nn);
    free(b);
    assert_int_equal(n, 0);
    assert_int_equal(nn, 0);

    /* a bad filter: libpcap's words */
    o = (ps_query_opts){.from_ns = 0, .to_ns = 1000, .filter = "tcp port", .app = "t"};
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), PS_QUERY_E_FILTER);
    assert_non_null(strstr(err, "syntax"));
    o.filter = "ether[28] = 0";
    o.limit = 2;
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    len = read_all(q, &b);
    ps_query_free(q);
    n = epbs(b, len, got, 16, names, &nn);
    free(b);
    assert_int_equal(n, 0); /* every byte is 1..10 */
    o.filter = "ether[28] > 4";
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    len = read_all(q, &b);
    ps_query_free(q);
    n = epbs(b, len, got, 16, names, &nn);
    free(b);
    assert_int_equal(n, 2); /* the limit */
    assert_int_equal(got[0].byte, 7);
    assert_int_equal(got[1].byte, 5);
    tu_rm_rf(dir);
}

/* A file with 400 packets of two interfaces, times interleaved (each
 * interface in order), cut into chunks of 1 KiB: a narrow window reads a
 * few chunks, and finds exactly what a whole read finds. */
static void test_chunks(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "chunks"), 0);
    const char *names[] = {"a/eth0", "b/eth0"};
    pkt p[400];
    for (size_t i = 0; i < 400; i++)
        p[i] = (pkt){(uint32_t)(i % 2), 1000 + i * 10 + (i % 2), (uint8_t)i};
    char path[512];
    const char *name = "ps-20251205T080000Z-000001.pcapng";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    write_file(path, names, 2, p, 400, 0);
    int fd = open(path, O_RDONLY);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    ps_index x;
    char err[512];
    assert_int_equal(ps_index_scan(fd, (uint64_t)st.st_size, 1024, &x, err, sizeof(err)), 0);
    close(fd);
    assert_true(x.nchunks > 20);
    uint64_t total = 0;
    for (size_t i = 0; i < x.nchunks; i++) {
        total += x.chunks[i].packets;
        if (i)
            assert_true(x.chunks[i].offset > x.chunks[i - 1].offset);
    }
    assert_int_equal(total, 400);
    assert_int_equal(ps_index_save(dir, name, &x, err, sizeof(err)), 0);
    ps_index_free(&x);
    assert_int_equal(ps_index_load(dir, name, (uint64_t)st.st_size, &x), 0);
    assert_true(x.nchunks > 20);
    ps_index_free(&x);

    ps_query_opts o = {.from_ns = 2000, .to_ns = 2300, .app = "t"};
    ps_query *q;
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    uint8_t *b;
    size_t len = read_all(q, &b);
    ps_query_stats qs;
    ps_query_get_stats(q, &qs);
    ps_query_free(q);
    assert_int_equal(qs.files_scanned, 0);
    assert_true(qs.bytes_read > 0 && qs.bytes_read < (uint64_t)st.st_size / 4);
    pkt got[64];
    char nm[8][64];
    size_t nn, n = epbs(b, len, got, 64, nm, &nn);
    free(b);
    assert_int_equal(n, 31); /* i = 100..130 */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i].byte, 100 + i);
    tu_rm_rf(dir);
}

/* An index that cannot be saved (here .index is a file, as on a read-only
 * directory) does not lose the file: each query scans it. */
static void test_unsaved_index(void **state)
{
    (void)state;
    char dir[256], path[512], err[512];
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "unsaved"), 0);
    const char *names[] = {"a/ns/pod"};
    pkt p[] = {{0, 10, 1}, {0, 20, 2}};
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000001.pcapng", dir);
    write_file(path, names, 1, p, 2, 0);
    snprintf(path, sizeof(path), "%s/.index", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    ps_index x;
    assert_int_equal(ps_index_build(dir, "ps-20251205T080000Z-000001.pcapng", &x, err, sizeof(err)),
                     1);
    assert_non_null(strstr(err, ".index"));
    assert_int_equal(x.packets, 2);
    ps_index_free(&x);
    ps_query_opts o = {.from_ns = 0, .to_ns = 100, .pod = "ns/pod", .app = "t"};
    ps_query *q;
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    uint8_t *b;
    size_t len = read_all(q, &b);
    ps_query_stats st;
    ps_query_get_stats(q, &st);
    ps_query_free(q);
    assert_int_equal(st.files_scanned, 1);
    assert_int_equal(st.packets, 2);
    free(b);
    (void)len;
    tu_rm_rf(dir);
}

/* A .part that grows between queries: the second query continues the
 * first one's scan (a torn block at the end then completed, a new
 * interface announced later) and finds everything. */
static void test_part_grows(void **state)
{
    (void)state;
    char dir[256], path[512], err[512];
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "grow"), 0);
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000001.pcapng.part", dir);
    ps_buf b = PS_BUF_INIT;
    uint8_t d[61];
    memset(d, 7, sizeof(d));
    assert_int_equal(ps_pcapng_shb(&b, "t", NULL), 0);
    assert_int_equal(ps_pcapng_idb(&b, 1, 262144, "a/eth0", NULL), 0);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(ps_pcapng_epb(&b, 0, 100 + i, 61, 61, d), 0);
    size_t first = b.len - 20; /* the last EPB torn */
    assert_int_equal(ps_pcapng_idb(&b, 1, 262144, "b/ns/pod", NULL), 0);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(ps_pcapng_epb(&b, i % 2, 200 + i, 61, 61, d), 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.data, first), (ssize_t)first);

    ps_query_opts o = {.from_ns = 0, .to_ns = 1000, .app = "t"};
    ps_query *q;
    uint8_t *out;
    ps_query_stats st;
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    size_t len = read_all(q, &out);
    ps_query_get_stats(q, &st);
    ps_query_free(q);
    free(out);
    assert_int_equal(st.packets, 9);
    (void)len;

    assert_int_equal(write(fd, b.data + first, b.len - first), (ssize_t)(b.len - first));
    close(fd);
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    len = read_all(q, &out);
    ps_query_get_stats(q, &st);
    ps_query_free(q);
    pkt got[32];
    char nm[8][64];
    size_t nn, n = epbs(out, len, got, 32, nm, &nn);
    free(out);
    assert_int_equal(n, 20);
    assert_int_equal(nn, 2);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i].ts, i < 10 ? 100 + i : 200 + (i - 10));
    o.pod = "ns/pod";
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    len = read_all(q, &out);
    ps_query_get_stats(q, &st);
    ps_query_free(q);
    free(out);
    assert_int_equal(st.packets, 5);

    /* the file rewritten, shorter than what was scanned: started over */
    write_file(path, (const char *[]){"c/eth9"}, 1, (pkt[]){{0, 5, 1}}, 1, 0);
    o.pod = NULL;
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    len = read_all(q, &out);
    n = epbs(out, len, got, 32, nm, &nn);
    ps_query_free(q);
    free(out);
    assert_int_equal(n, 1);
    assert_string_equal(nm[0], "c/eth9");
    ps_buf_free(&b);
    ps_query_cleanup();
    tu_rm_rf(dir);
}

/* One interface's packets are early in the file but late in time (but for
 * its first), the others' at the end but early: the merge needs the end of
 * the file while that interface's stream is open at its start.
 * With 3000 streams a stream's queue holds at most 64 MiB / 8 / 3000 block
 * offsets, fewer than the 100000 packets of the late interface, so its
 * stream stops being fed by the file's scanner and reads on its own; and
 * its packets span more than the file's shared window (9.6 MB), so it reads
 * them through its own window. The output must still be every packet, in
 * time order. */
static void test_lagging_interface(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "lag"), 0);
    enum { NIF = 3000, NA = 100000 };
    static char nbuf[NIF][16];
    static const char *names[NIF];
    for (size_t i = 0; i < NIF; i++) {
        snprintf(nbuf[i], sizeof(nbuf[i]), "s/i%zu", i);
        names[i] = nbuf[i];
    }
    pkt *p = malloc((NA + NIF - 1) * sizeof(*p));
    assert_non_null(p);
    for (size_t i = 0; i < NA; i++)
        p[i] = (pkt){0, i == 0 ? 500 : 1000000 + i * 10, (uint8_t)(i % 251)};
    for (size_t j = 1; j < NIF; j++)
        p[NA + j - 1] = (pkt){(uint32_t)j, 1000 + j, (uint8_t)(j % 7)};
    char path[512];
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000001.pcapng", dir);
    write_file(path, names, NIF, p, NA + NIF - 1, 0);

    ps_query_opts o = {.from_ns = 0, .to_ns = 3000000, .app = "t"};
    ps_query *q;
    char err[512];
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    uint8_t *b;
    size_t len = read_all(q, &b);
    ps_query_stats qs;
    ps_query_get_stats(q, &qs);
    ps_query_free(q);
    assert_int_equal(qs.streams, NIF);
    pkt *got = malloc((NA + NIF) * sizeof(*got));
    static char nm[NIF][64];
    size_t nn, n = epbs(b, len, got, NA + NIF, nm, &nn);
    free(b);
    assert_int_equal(n, NA + NIF - 1);
    assert_int_equal(nn, NIF);
    assert_int_equal(got[0].ts, 500);
    assert_string_equal(nm[got[0].ifc], "s/i0");
    for (size_t j = 1; j < NIF; j++) {
        pkt *g = &got[j];
        assert_int_equal(g->ts, 1000 + j);
        assert_int_equal(g->byte, j % 7);
        assert_string_equal(nm[g->ifc], names[j]);
    }
    for (size_t i = 1; i < NA; i++) {
        pkt *g = &got[NIF - 1 + i];
        assert_int_equal(g->ts, 1000000 + i * 10);
        assert_int_equal(g->byte, i % 251);
        assert_string_equal(nm[g->ifc], "s/i0");
    }
    free(got);
    free(p);
    tu_rm_rf(dir);
}

/* Remote files (opts.src, the bucket's objects): merged with the
 * directory's in timestamp order, the local copy preferred over a remote
 * one of the same name, only the selected ones fetched, a fetch error
 * returned as is, and a local file deleted after open read from its copy
 * (refetch). */
typedef struct src_ctx {
    char rdir[256];
    int fetches, refetches;
    size_t fetched[8], nfetched;
    int fail;
} src_ctx;

static int t_fetch(void *ud, const size_t *which, size_t n, char **paths, char *err, size_t errlen)
{
    src_ctx *c = ud;
    c->fetches++;
    if (c->fail) {
        snprintf(err, errlen, "the bucket did not answer");
        return c->fail;
    }
    static const char *const rnames[] = {"ps-20251205T080002Z-000003.pcapng",
                                         "ps-20251205T080000Z-000001.pcapng"};
    for (size_t i = 0; i < n; i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", c->rdir, rnames[which[i]]);
        paths[i] = strdup(p);
        c->fetched[c->nfetched++] = which[i];
    }
    return 0;
}

static int t_refetch(void *ud, const char *name, uint64_t min_size, char *path, size_t pathlen)
{
    src_ctx *c = ud;
    (void)min_size;
    c->refetches++;
    snprintf(path, pathlen, "%s/%s", c->rdir, name);
    return 0;
}

static void test_remote_source(void **state)
{
    (void)state;
    char dir[256], path[600];
    src_ctx c = {0};
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "remote"), 0);
    assert_int_equal(tu_mkdtemp(c.rdir, sizeof(c.rdir), "remote-objs"), 0);
    const char *names[] = {"a/eth0", "b/ns/pod"};
    pkt local[] = {{0, 10, 1}, {0, 30, 2}, {1, 20, 3}};
    pkt remote[] = {{0, 15, 4}, {1, 25, 5}, {1, 40, 6}};
    pkt old[] = {{0, 500, 7}}; /* only in the bucket, outside the first window */
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000001.pcapng", dir);
    write_file(path, names, 2, local, 3, 0);
    /* the bucket: the same file (ours, also on disk) and another one */
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000001.pcapng", c.rdir);
    write_file(path, names, 2, local, 3, 0);
    snprintf(path, sizeof(path), "%s/ps-20251205T080002Z-000003.pcapng", c.rdir);
    write_file(path, names, 2, remote, 3, 0);
    snprintf(path, sizeof(path), "%s/ps-20251205T080003Z-000004.pcapng", c.rdir);
    write_file(path, names, 2, old, 1, 0);
    ps_index rx[3];
    char err[512];
    const char *rn[] = {"ps-20251205T080002Z-000003.pcapng", "ps-20251205T080000Z-000001.pcapng",
                        "ps-20251205T080003Z-000004.pcapng"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(ps_index_build(c.rdir, rn[i], &rx[i], err, sizeof(err)), 0);
    ps_query_remote rem[3] = {{.name = rn[0], .who = "", .x = &rx[0]},
                              {.name = rn[1], .who = "", .x = &rx[1]},
                              {.name = rn[2], .who = "rx-b", .x = &rx[2]}};
    ps_query_source src = {
        .remote = rem, .nremote = 3, .fetch = t_fetch, .refetch = t_refetch, .ud = &c};
    ps_query_opts o = {.from_ns = 0, .to_ns = 100, .app = "t", .src = &src};
    ps_query *q;
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), 0);
    ps_query_stats st;
    ps_query_get_stats(q, &st);
    assert_int_equal(st.files, 3);  /* the duplicate is not counted */
    assert_int_equal(st.remote, 2); /* 000003 and rx-b's 000004 */
    assert_int_equal(st.remote_read, 1);
    assert_int_equal(st.files_read, 2);
    assert_int_equal(c.fetches, 1);
    assert_int_equal(c.nfetched, 1);
    assert_int_equal(c.fetched[0], 0); /* only the selected object */
    /* the local file is deleted (uploaded, deleteLocal) before it is read */
    snprintf(path, sizeof(path), "%s/ps-20251205T080000Z-000001.pcapng", dir);
    assert_int_equal(unlink(path), 0);
    uint8_t *b;
    size_t len = read_all(q, &b);
    ps_query_get_stats(q, &st);
    assert_int_equal(st.refetched, 1);
    ps_query_free(q);
    assert_int_equal(c.refetches, 1);
    pkt got[16];
    char onames[8][64];
    size_t nn, n = epbs(b, len, got, 16, onames, &nn);
    free(b);
    static const uint8_t order[] = {1, 4, 3, 5, 2, 6};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i].byte, order[i]);

    /* a fetch that fails: its code and reason */
    c.fail = PS_QUERY_E_REMOTE;
    o.from_ns = 400;
    o.to_ns = 600;
    assert_int_equal(ps_query_open(&q, dir, "ps", &o, err, sizeof(err)), PS_QUERY_E_REMOTE);
    assert_non_null(strstr(err, "bucket"));
    for (int i = 0; i < 3; i++)
        ps_index_free(&rx[i]);
    tu_rm_rf(dir);
    tu_rm_rf(c.rdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_relative),
        cmocka_unit_test(test_selectors),
        cmocka_unit_test(test_index_scan_save_load),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_unsaved_index),
        cmocka_unit_test(test_part_grows),
        cmocka_unit_test(test_lagging_interface),
        cmocka_unit_test(test_remote_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
