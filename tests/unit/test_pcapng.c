/*
 * test_pcapng: the pcapng and pcap encoders against hand-computed bytes.
 *
 * The expected arrays are written out byte by byte (little-endian, the only
 * byte order we build for) from the pcapng draft and the pcap man page, not
 * produced by the code under test, so a layout mistake cannot cancel out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/pcapng.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "expected bytes below are little-endian"
#endif

static void assert_buf(const ps_buf *b, const uint8_t *want, size_t n)
{
    assert_int_equal(b->len, n);
    assert_memory_equal(b->data, want, n);
}

static void test_shb_with_options(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x0A, 0x0D, 0x0D, 0x0A,                         /* block type */
        0x34, 0x00, 0x00, 0x00,                         /* total length 52 */
        0x4D, 0x3C, 0x2B, 0x1A,                         /* byte-order magic */
        0x01, 0x00, 0x00, 0x00,                         /* version 1.0 */
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* section length -1 */
        0x03, 0x00, 0x05, 0x00, 'L',  'i',  'n',  'u',  /* shb_os "Linux" */
        'x',  0x00, 0x00, 0x00,                         /* padding */
        0x04, 0x00, 0x02, 0x00, 'p',  's',  0x00, 0x00, /* shb_userappl "ps" */
        0x00, 0x00, 0x00, 0x00,                         /* opt_endofopt */
        0x34, 0x00, 0x00, 0x00,                         /* total length */
    };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_shb(&b, "ps", "Linux"), 0);
    assert_buf(&b, want, sizeof want);
    ps_buf_free(&b);
}

static void test_shb_without_options(void **state)
{
    (void)state;
    static const uint8_t want[] =
        {
            0x0A, 0x0D, 0x0D, 0x0A, 0x1C, 0x00, 0x00, 0x00, 0x4D, 0x3C,
            0x2B, 0x1A, 0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF,
            0xFF, 0xFF, 0xFF, 0xFF, 0x1C, 0x00, 0x00, 0x00, /* 28 bytes, no option list */
        };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_shb(&b, NULL, ""), 0);
    assert_buf(&b, want, sizeof want);
    ps_buf_free(&b);
}

static void test_idb(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x01, 0x00, 0x00, 0x00,                         /* block type */
        0x34, 0x00, 0x00, 0x00,                         /* total length 52 */
        0x01, 0x00, 0x00, 0x00,                         /* linktype 1, reserved */
        0x00, 0x00, 0x04, 0x00,                         /* snaplen 262144 */
        0x02, 0x00, 0x07, 0x00, 's',  '1',  '/',  'e',  /* if_name */
        't',  'h',  '0',  0x00,                         /* ... + 1 pad */
        0x03, 0x00, 0x03, 0x00, 'p',  'o',  'd',  0x00, /* if_description */
        0x09, 0x00, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, /* if_tsresol 9 */
        0x00, 0x00, 0x00, 0x00,                         /* opt_endofopt */
        0x34, 0x00, 0x00, 0x00,                         /* total length */
    };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_idb(&b, 1, 262144, "s1/eth0", "pod"), 0);
    assert_buf(&b, want, sizeof want);
    ps_buf_free(&b);
}

static void test_idb_no_description(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x01, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, /* total length 40 */
        0x71, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, /* linktype 113, snaplen 65535 */
        0x02, 0x00, 0x04, 0x00, 'a',  '/',  'l',  'o',  /* if_name, no padding */
        0x09, 0x00, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, /* if_tsresol */
        0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00,
    };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_idb(&b, 113, 65535, "a/lo", NULL), 0);
    assert_buf(&b, want, sizeof want);
    ps_buf_free(&b);
}

static void test_epb(void **state)
{
    (void)state;
    static const uint8_t data[] = {1, 2, 3, 4, 5};
    static const uint8_t want[] = {
        0x06, 0x00, 0x00, 0x00,                         /* block type */
        0x28, 0x00, 0x00, 0x00,                         /* total length 40 */
        0x02, 0x00, 0x00, 0x00,                         /* interface id */
        0x67, 0x45, 0x23, 0x01,                         /* ts high */
        0xEF, 0xCD, 0xAB, 0x89,                         /* ts low */
        0x05, 0x00, 0x00, 0x00,                         /* caplen */
        0x3C, 0x00, 0x00, 0x00,                         /* origlen 60 */
        0x01, 0x02, 0x03, 0x04, 0x05, 0x00, 0x00, 0x00, /* data + padding */
        0x28, 0x00, 0x00, 0x00,                         /* total length */
    };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_epb(&b, 2, 0x0123456789ABCDEFull, 5, 60, data), 0);
    assert_buf(&b, want, sizeof want);
    ps_buf_free(&b);
}

/* caplen 0..4 on a reused buffer full of 0xFF: lengths are 32 + pad and the
 * padding is zeroed, not left over from earlier contents. */
static void test_epb_padding(void **state)
{
    (void)state;
    static const uint8_t data[] = {0xA1, 0xA2, 0xA3, 0xA4};
    static const uint32_t want_total[] = {32, 36, 36, 36, 36};
    ps_buf b = PS_BUF_INIT;
    for (uint32_t caplen = 0; caplen <= 4; caplen++) {
        assert_int_equal(ps_buf_reserve(&b, 4096), 0);
        memset(b.data, 0xFF, b.cap);
        ps_buf_reset(&b);
        assert_int_equal(ps_buf_append(&b, "\x11\x22\x33", 3), 0); /* unaligned start */
        assert_int_equal(ps_pcapng_epb(&b, 0, 7, caplen, 100, data), 0);
        uint32_t total = want_total[caplen];
        assert_int_equal(b.len, 3 + total);
        const uint8_t *blk = b.data + 3;
        uint32_t v;
        memcpy(&v, blk + 4, 4);
        assert_int_equal(v, total);
        memcpy(&v, blk + total - 4, 4);
        assert_int_equal(v, total);
        memcpy(&v, blk + 20, 4);
        assert_int_equal(v, caplen);
        assert_memory_equal(blk + 28, data, caplen);
        for (uint32_t i = 28 + caplen; i < total - 4; i++)
            assert_int_equal(blk[i], 0);
    }
    ps_buf_free(&b);
}

static void test_isb(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x05, 0x00, 0x00, 0x00, /* block type */
        0x4C, 0x00, 0x00, 0x00, /* total length 76 */
        0x01, 0x00, 0x00, 0x00, /* interface id */
        0x01, 0x00, 0x00, 0x00, /* ts high */
        0x02, 0x00, 0x00, 0x00, /* ts low */
        0x04, 0x00, 0x08, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* ifrecv */
        0x05, 0x00, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* ifdrop */
        0x07, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* osdrop */
        0x08, 0x00, 0x08, 0x00, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* usrdeliv */
        0x00, 0x00, 0x00, 0x00,                                                 /* opt_endofopt */
        0x4C, 0x00, 0x00, 0x00,                                                 /* total length */
    };
    ps_pcapng_isb_counters c = {
        .ts_ns = 0x0000000100000002ull,
        .recv = 10,
        .drop = 2,
        .osdrop = 3,
        .delivered = 0x0102030405060708ull,
    };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_isb(&b, 1, &c), 0);
    assert_buf(&b, want, sizeof want);
    ps_buf_free(&b);
}

static void test_pcap_headers(void **state)
{
    (void)state;
    static const uint8_t want_us[] = {
        0xD4, 0xC3, 0xB2, 0xA1, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x71, 0x00, 0x00, 0x00,
    };
    static const uint8_t want_ns[] = {
        0x4D, 0x3C, 0xB2, 0xA1, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00,
    };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcap_file_header(&b, 0, 262144, 113), 0);
    assert_buf(&b, want_us, sizeof want_us);
    ps_buf_reset(&b);
    assert_int_equal(ps_pcap_file_header(&b, 1, 262144, 1), 0);
    assert_buf(&b, want_ns, sizeof want_ns);
    ps_buf_free(&b);
}

static void test_pcap_records(void **state)
{
    (void)state;
    static const uint8_t data[] = {0xAA, 0xBB, 0xCC};
    const uint64_t ts = 1700000000123456789ull;
    static const uint8_t want_us[] = {
        0x00, 0xF1, 0x53, 0x65, /* ts_sec 1700000000 */
        0x40, 0xE2, 0x01, 0x00, /* ts_usec 123456 (truncated) */
        0x03, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0xAA, 0xBB, 0xCC,
    };
    static const uint8_t want_ns[] = {
        0x00, 0xF1, 0x53, 0x65, /* ts_sec */
        0x15, 0xCD, 0x5B, 0x07, /* ts_nsec 123456789 */
        0x03, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0xAA, 0xBB, 0xCC,
    };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcap_record(&b, 0, ts, 3, 64, data), 0);
    assert_buf(&b, want_us, sizeof want_us);
    ps_buf_reset(&b);
    assert_int_equal(ps_pcap_record(&b, 1, ts, 3, 64, data), 0);
    assert_buf(&b, want_ns, sizeof want_ns);
    ps_buf_reset(&b);
    /* caplen 0: header only, data pointer unused. */
    assert_int_equal(ps_pcap_record(&b, 1, ts, 0, 64, NULL), 0);
    assert_int_equal(b.len, 16);
    ps_buf_free(&b);
}

/* Values that cannot be encoded fail and leave the buffer as it was. */
static void test_out_of_range_leaves_buffer(void **state)
{
    (void)state;
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_buf_append(&b, "abcd", 4), 0);

    size_t n = 70000;
    char *longstr = malloc(n + 1);
    assert_non_null(longstr);
    memset(longstr, 'x', n);
    longstr[n] = '\0';
    assert_int_equal(ps_pcapng_shb(&b, longstr, NULL), -1);
    assert_int_equal(ps_pcapng_idb(&b, 1, 100, "eth0", longstr), -1);
    free(longstr);

    assert_int_equal(ps_pcapng_epb(&b, 0, 0, UINT32_MAX - 2, UINT32_MAX, NULL), -1);
    /* ts_sec of a classic pcap record is 32 bits. */
    assert_int_equal(ps_pcap_record(&b, 0, (UINT32_MAX + 1ull) * 1000000000ull, 0, 0, NULL), -1);

    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "abcd", 4);
    ps_buf_free(&b);
}

/* A 65535-byte option value is the largest that fits its 16-bit length. */
static void test_max_option_length(void **state)
{
    (void)state;
    size_t n = 65535;
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, 'y', n);
    s[n] = '\0';
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_idb(&b, 1, 100, s, NULL), 0);
    assert_int_equal(b.len, 20 + 4 + 65536 + 8 + 4);
    uint16_t optlen;
    memcpy(&optlen, b.data + 18, 2);
    assert_int_equal(optlen, 65535);
    free(s);
    ps_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shb_with_options),
        cmocka_unit_test(test_shb_without_options),
        cmocka_unit_test(test_idb),
        cmocka_unit_test(test_idb_no_description),
        cmocka_unit_test(test_epb),
        cmocka_unit_test(test_epb_padding),
        cmocka_unit_test(test_isb),
        cmocka_unit_test(test_pcap_headers),
        cmocka_unit_test(test_pcap_records),
        cmocka_unit_test(test_out_of_range_leaves_buffer),
        cmocka_unit_test(test_max_option_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
