/*
 * test_codec: round trips of every codec over compressible, incompressible,
 * empty, tiny and ~16 MiB inputs, and every way a hostile stream can lie
 * (wrong raw_len, truncation, trailing bytes, garbage, bombs).
 *
 * Every buffer handed to the codec is malloc'd at its exact size, so ASan
 * reports any read or write one byte past what the codec was allowed to use.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "testutil.h"

static const ps_codec all_codecs[] = {PS_CODEC_NONE, PS_CODEC_ZLIB, PS_CODEC_LZ4};
#define NCODECS (sizeof(all_codecs) / sizeof(all_codecs[0]))

/* Looks like a batch of captured traffic: repeated headers with a few
 * changing bytes, and payloads of IMIX-ish sizes. */
static void fill_packets(uint8_t *p, size_t n, uint64_t seed)
{
    static const size_t sizes[] = {64, 64, 64, 64, 64, 64, 64, 576, 576, 576, 1514};
    uint64_t s = seed | 1;
    size_t off = 0, k = 0;
    while (off < n) {
        size_t len = sizes[k++ % (sizeof(sizes) / sizeof(sizes[0]))];
        for (size_t i = 0; i < len && off < n; i++, off++) {
            if (i == 18 || i == 19 || i == 38)
                p[off] = (uint8_t)(tu_rng_next(&s) >> 56); /* ids, checksums */
            else
                p[off] = (uint8_t)(i < 54 ? 0x45 + i : (i * 7) & 0xff);
        }
    }
}

static int is_error(int rc)
{
    return rc == PS_CODEC_E_SIZE || rc == PS_CODEC_E_CORRUPT;
}

/* Compresses src, returns the compressed bytes in an exact-size buffer. */
static uint8_t *compress_exact(ps_codec c, int level, const uint8_t *src, size_t n, size_t *clen)
{
    size_t bound = ps_codec_bound(c, n);
    assert_true(bound >= n);
    uint8_t *tmp = malloc(bound ? bound : 1);
    assert_non_null(tmp);
    assert_int_equal(ps_codec_compress(c, level, src, n, tmp, bound, clen), PS_CODEC_OK);
    assert_true(*clen <= bound);
    uint8_t *out = tu_dup_exact(tmp, *clen);
    free(tmp);
    return out;
}

/* Truncation points worth trying: all of them for short streams, a spread
 * (always including the last byte) for long ones. */
static size_t next_cut(size_t cut, size_t clen)
{
    if (clen <= 512)
        return cut + 1;
    if (cut + 1 >= clen - 64)
        return cut + 1;
    size_t step = clen / 97 + 1;
    return cut + step < clen - 64 ? cut + step : clen - 64;
}

/*
 * Full check of one input: round trip, then wrong raw_len (smaller, larger),
 * truncated stream, trailing byte. Output buffers are exactly raw_len.
 */
static void check_codec_on(ps_codec c, int level, const uint8_t *src_in, size_t n)
{
    uint8_t *src = tu_dup_exact(src_in, n);
    size_t clen = 0;
    uint8_t *comp = compress_exact(c, level, src, n, &clen);
    if (c == PS_CODEC_NONE)
        assert_int_equal(clen, n);

    uint8_t *out = malloc(n ? n : 1);
    assert_non_null(out);
    assert_int_equal(ps_codec_decompress(c, comp, clen, out, n), PS_CODEC_OK);
    if (n)
        assert_memory_equal(out, src, n);

    /* Declared size one smaller / one larger / much larger than the truth. */
    if (n > 0) {
        uint8_t *small = malloc(n - 1 ? n - 1 : 1);
        assert_non_null(small);
        assert_true(is_error(ps_codec_decompress(c, comp, clen, small, n - 1)));
        free(small);
    }
    uint8_t *big = malloc(n + 1);
    assert_non_null(big);
    assert_true(is_error(ps_codec_decompress(c, comp, clen, big, n + 1)));
    free(big);
    big = malloc(2 * n + 4096);
    assert_non_null(big);
    assert_true(is_error(ps_codec_decompress(c, comp, clen, big, 2 * n + 4096)));
    free(big);

    /* Truncated streams, each copied to an exact-size buffer. */
    for (size_t cut = 0; cut < clen; cut = next_cut(cut, clen)) {
        uint8_t *t = tu_dup_exact(comp, cut);
        int rc = ps_codec_decompress(c, t, cut, out, n);
        if (!is_error(rc))
            fail_msg("%s: truncated to %zu of %zu bytes gave %d", ps_codec_name(c), cut, clen, rc);
        free(t);
    }

    /* One byte after the stream. */
    uint8_t *trail = malloc(clen + 1);
    assert_non_null(trail);
    if (clen)
        memcpy(trail, comp, clen);
    trail[clen] = 0;
    assert_true(is_error(ps_codec_decompress(c, trail, clen + 1, out, n)));
    free(trail);

    free(out);
    free(comp);
    free(src);
}

static void check_all_codecs(const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < NCODECS; i++)
        check_codec_on(all_codecs[i], 0, src, n);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(ps_codec_name(PS_CODEC_NONE), "none");
    assert_string_equal(ps_codec_name(PS_CODEC_ZLIB), "zlib");
    assert_string_equal(ps_codec_name(PS_CODEC_LZ4), "lz4");
    assert_null(ps_codec_name(PS_CODEC_COUNT));
    assert_null(ps_codec_name(-1));
    assert_null(ps_codec_name(255));

    ps_codec c = PS_CODEC_COUNT;
    assert_int_equal(ps_codec_parse("none", &c), 0);
    assert_int_equal(c, PS_CODEC_NONE);
    assert_int_equal(ps_codec_parse("zlib", &c), 0);
    assert_int_equal(c, PS_CODEC_ZLIB);
    assert_int_equal(ps_codec_parse("LZ4", &c), 0);
    assert_int_equal(c, PS_CODEC_LZ4);
    assert_int_equal(ps_codec_parse("zstd", &c), -1);
    assert_int_equal(ps_codec_parse("", &c), -1);
    assert_int_equal(ps_codec_parse("lz4 ", &c), -1);
    assert_int_equal(ps_codec_parse(NULL, &c), -1);

    assert_string_equal(ps_codec_strerror(PS_CODEC_OK), "ok");
    assert_string_equal(ps_codec_strerror(PS_CODEC_E_UNKNOWN), "unknown_codec");
    assert_string_equal(ps_codec_strerror(PS_CODEC_E_SPACE), "no_space");
    assert_string_equal(ps_codec_strerror(PS_CODEC_E_CORRUPT), "corrupt");
    assert_string_equal(ps_codec_strerror(PS_CODEC_E_SIZE), "size");
    assert_string_equal(ps_codec_strerror(PS_CODEC_E_NOMEM), "nomem");
    assert_string_equal(ps_codec_strerror(-99), "unknown");
    assert_int_equal(PS_CODEC_ALL_MASK, 0x7);
}

static void test_bound(void **state)
{
    (void)state;
    assert_int_equal(ps_codec_bound(PS_CODEC_NONE, 0), 0);
    assert_int_equal(ps_codec_bound(PS_CODEC_NONE, 12345), 12345);
    assert_true(ps_codec_bound(PS_CODEC_ZLIB, 0) > 0);
    assert_true(ps_codec_bound(PS_CODEC_LZ4, 0) > 0);
    assert_true(ps_codec_bound(PS_CODEC_ZLIB, 16u << 20) > 16u << 20);
    assert_true(ps_codec_bound(PS_CODEC_LZ4, 16u << 20) > 16u << 20);
    /* The default frame limit (20 MiB) holds a worst-case 16 MiB batch. */
    assert_true(ps_codec_bound(PS_CODEC_ZLIB, 16u << 20) + 20 <= 20u << 20);
    assert_true(ps_codec_bound(PS_CODEC_LZ4, 16u << 20) + 20 <= 20u << 20);
    /* LZ4 works on int sizes: larger inputs have no bound, and are refused. */
    assert_int_equal(ps_codec_bound(PS_CODEC_LZ4, (size_t)INT_MAX + 1), 0);
    assert_int_equal(ps_codec_bound(PS_CODEC_LZ4, SIZE_MAX), 0);
    assert_int_equal(ps_codec_bound(PS_CODEC_ZLIB, SIZE_MAX), 0);
    assert_int_equal(ps_codec_bound(PS_CODEC_COUNT, 10), 0);
    assert_int_equal(ps_codec_bound((ps_codec)77, 10), 0);

    uint8_t in[1] = {0}, out[16];
    size_t olen = 0;
    assert_int_equal(
        ps_codec_compress(PS_CODEC_LZ4, 0, in, (size_t)INT_MAX + 1, out, sizeof(out), &olen),
        PS_CODEC_E_SIZE);
    assert_int_equal(ps_codec_decompress(PS_CODEC_LZ4, in, (size_t)INT_MAX + 1, out, 16),
                     PS_CODEC_E_SIZE);
    assert_int_equal(ps_codec_decompress(PS_CODEC_LZ4, in, 1, out, (size_t)INT_MAX + 1),
                     PS_CODEC_E_SIZE);
}

static void test_empty(void **state)
{
    (void)state;
    uint8_t dummy = 0;
    check_all_codecs(&dummy, 0);
    /* NULL pointers with zero lengths are fine too. */
    for (size_t i = 0; i < NCODECS; i++) {
        ps_codec c = all_codecs[i];
        size_t bound = ps_codec_bound(c, 0), clen = 99;
        uint8_t *comp = malloc(bound ? bound : 1);
        assert_non_null(comp);
        assert_int_equal(ps_codec_compress(c, 0, NULL, 0, comp, bound, &clen), PS_CODEC_OK);
        assert_int_equal(ps_codec_decompress(c, comp, clen, NULL, 0), PS_CODEC_OK);
        free(comp);
    }
    /* An empty stream is not a valid zlib or lz4 encoding of anything. */
    assert_int_equal(ps_codec_decompress(PS_CODEC_NONE, NULL, 0, NULL, 0), PS_CODEC_OK);
    assert_true(is_error(ps_codec_decompress(PS_CODEC_ZLIB, NULL, 0, NULL, 0)));
    assert_true(is_error(ps_codec_decompress(PS_CODEC_LZ4, NULL, 0, NULL, 0)));
}

static void test_one_byte(void **state)
{
    (void)state;
    for (int v = 0; v < 256; v += 85) {
        uint8_t b = (uint8_t)v;
        check_all_codecs(&b, 1);
    }
}

static void test_small(void **state)
{
    (void)state;
    static const size_t sizes[] = {2, 15, 20, 64, 257, 1514, 4096, 65536, 65537};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = malloc(sizes[i]);
        assert_non_null(p);
        fill_packets(p, sizes[i], i + 1);
        check_all_codecs(p, sizes[i]);
        tu_fill_random(p, sizes[i], i + 100);
        check_all_codecs(p, sizes[i]);
        free(p);
    }
}

static void test_compressible_shrinks(void **state)
{
    (void)state;
    size_t n = 1u << 20;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    fill_packets(p, n, 7);
    for (size_t i = 1; i < NCODECS; i++) {
        size_t clen = 0;
        uint8_t *comp = compress_exact(all_codecs[i], 1, p, n, &clen);
        assert_true(clen < n / 4);
        free(comp);
    }
    free(p);
}

static void test_zlib_levels(void **state)
{
    (void)state;
    size_t n = 200000;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    fill_packets(p, n, 3);
    /* 0 is the default (6); out-of-range levels are clamped, not refused. */
    static const int levels[] = {0, 1, 5, 6, 9, -3, 42};
    size_t len6 = 0, len0 = 0;
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        size_t clen = 0;
        uint8_t *comp = compress_exact(PS_CODEC_ZLIB, levels[i], p, n, &clen);
        uint8_t *out = malloc(n);
        assert_non_null(out);
        assert_int_equal(ps_codec_decompress(PS_CODEC_ZLIB, comp, clen, out, n), PS_CODEC_OK);
        assert_memory_equal(out, p, n);
        if (levels[i] == 6)
            len6 = clen;
        if (levels[i] == 0)
            len0 = clen;
        free(out);
        free(comp);
    }
    assert_int_equal(len0, len6);
    free(p);
}

/* ~16 MiB, the default max_batch_raw: compressible and incompressible. */
static void test_large(void **state)
{
    (void)state;
    size_t n = (16u << 20) - 12345;
    uint8_t *src = malloc(n);
    assert_non_null(src);
    for (int kind = 0; kind < 2; kind++) {
        if (kind == 0)
            fill_packets(src, n, 11);
        else
            tu_fill_random(src, n, 12);
        for (size_t i = 0; i < NCODECS; i++) {
            ps_codec c = all_codecs[i];
            size_t clen = 0;
            uint8_t *comp = compress_exact(c, 1, src, n, &clen);
            uint8_t *out = malloc(n);
            assert_non_null(out);
            assert_int_equal(ps_codec_decompress(c, comp, clen, out, n), PS_CODEC_OK);
            assert_memory_equal(out, src, n);
            assert_true(is_error(ps_codec_decompress(c, comp, clen, out, n - 1)));
            uint8_t *big = malloc(n + 1);
            assert_non_null(big);
            assert_true(is_error(ps_codec_decompress(c, comp, clen, big, n + 1)));
            free(big);
            assert_true(is_error(ps_codec_decompress(c, comp, clen - 1, out, n)));
            assert_true(is_error(ps_codec_decompress(c, comp, clen / 2, out, n)));
            free(out);
            free(comp);
        }
    }
    free(src);
}

static void test_dst_too_small(void **state)
{
    (void)state;
    size_t n = 10000;
    uint8_t *src = malloc(n);
    assert_non_null(src);
    tu_fill_random(src, n, 5);
    for (size_t i = 0; i < NCODECS; i++) {
        size_t cap = n / 2, clen = 0;
        uint8_t *dst = malloc(cap);
        assert_non_null(dst);
        assert_int_equal(ps_codec_compress(all_codecs[i], 0, src, n, dst, cap, &clen),
                         PS_CODEC_E_SPACE);
        free(dst);
        assert_int_equal(ps_codec_compress(all_codecs[i], 0, src, n, NULL, 0, &clen),
                         PS_CODEC_E_SPACE);
    }
    /* A NULL destination for a non-empty output. */
    assert_int_equal(ps_codec_decompress(PS_CODEC_NONE, src, 10, NULL, 10), PS_CODEC_E_SPACE);
    free(src);
}

static void test_garbage(void **state)
{
    (void)state;
    uint64_t s = 99;
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = (size_t)(tu_rng_next(&s) % 300);
        size_t raw = (size_t)(tu_rng_next(&s) % 5000);
        uint8_t *g = malloc(n ? n : 1);
        assert_non_null(g);
        tu_fill_random(g, n, tu_rng_next(&s));
        uint8_t *out = malloc(raw ? raw : 1);
        assert_non_null(out);
        for (size_t i = 1; i < NCODECS; i++) {
            int rc = ps_codec_decompress(all_codecs[i], g, n, out, raw);
            /* Random bytes decoding to exactly raw bytes is possible but
             * vanishingly rare for the fixed seed; anything else is an error. */
            assert_true(rc == PS_CODEC_OK || is_error(rc));
        }
        free(out);
        free(g);
    }
    /* Specific garbage: not a zlib header, an lz4 token promising more. */
    uint8_t bad1[] = {0x12, 0x34, 0x56, 0x78, 0x9a};
    uint8_t out[64];
    assert_int_equal(ps_codec_decompress(PS_CODEC_ZLIB, bad1, sizeof(bad1), out, sizeof(out)),
                     PS_CODEC_E_CORRUPT);
    uint8_t bad2[] = {0xF0, 0xFF, 0xFF, 0xFF, 0x10};
    assert_true(is_error(ps_codec_decompress(PS_CODEC_LZ4, bad2, sizeof(bad2), out, 64)));
}

/* Corrupt a valid stream byte by byte: any result but a crash is fine, and
 * a zlib stream's adler32 catches payload damage. */
static void test_bitflips(void **state)
{
    (void)state;
    size_t n = 3000;
    uint8_t *src = malloc(n);
    assert_non_null(src);
    fill_packets(src, n, 21);
    uint64_t s = 5;
    for (size_t i = 1; i < NCODECS; i++) {
        size_t clen = 0;
        uint8_t *comp = compress_exact(all_codecs[i], 0, src, n, &clen);
        uint8_t *out = malloc(n);
        assert_non_null(out);
        for (int iter = 0; iter < 3000; iter++) {
            uint8_t *m = tu_dup_exact(comp, clen);
            size_t pos = (size_t)(tu_rng_next(&s) % clen);
            m[pos] ^= (uint8_t)(1u << (tu_rng_next(&s) % 8));
            int rc = ps_codec_decompress(all_codecs[i], m, clen, out, n);
            assert_true(rc == PS_CODEC_OK || is_error(rc));
            if (all_codecs[i] == PS_CODEC_ZLIB && rc == PS_CODEC_OK)
                assert_memory_equal(out, src, n);
            free(m);
        }
        free(out);
        free(comp);
    }
    free(src);
}

/*
 * 1 MiB of zeros compressed (about 1 KiB of zlib, 4 KiB of lz4) declared as
 * raw_len 1 KiB: must fail, writing nothing past the 1 KiB buffer (ASan).
 */
static void test_bomb(void **state)
{
    (void)state;
    size_t n = 1u << 20;
    uint8_t *zeros = calloc(1, n);
    assert_non_null(zeros);
    for (size_t i = 0; i < NCODECS; i++) {
        size_t clen = 0;
        uint8_t *comp = compress_exact(all_codecs[i], 9, zeros, n, &clen);
        static const size_t claims[] = {0, 1, 1024, (1u << 20) - 1};
        for (size_t k = 0; k < sizeof(claims) / sizeof(claims[0]); k++) {
            uint8_t *out = malloc(claims[k] ? claims[k] : 1);
            assert_non_null(out);
            assert_true(is_error(ps_codec_decompress(all_codecs[i], comp, clen, out, claims[k])));
            free(out);
        }
        free(comp);
    }
    free(zeros);
}

static void test_unknown_codec(void **state)
{
    (void)state;
    uint8_t in[4] = {1, 2, 3, 4}, out[64];
    size_t olen = 0;
    const ps_codec bad[] = {PS_CODEC_COUNT, (ps_codec)7, (ps_codec)255, (ps_codec)-1};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ps_codec_compress(bad[i], 0, in, 4, out, sizeof(out), &olen),
                         PS_CODEC_E_UNKNOWN);
        assert_int_equal(ps_codec_decompress(bad[i], in, 4, out, 4), PS_CODEC_E_UNKNOWN);
    }
}

/* No shared state: threads compressing and decompressing at once agree with
 * a single-threaded run (and TSan-free ASan at least sees no corruption). */
typedef struct thread_arg {
    const uint8_t *src;
    size_t n;
    int ok;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *a = p;
    a->ok = 1;
    uint8_t *comp =
        malloc(ps_codec_bound(PS_CODEC_ZLIB, a->n) + ps_codec_bound(PS_CODEC_LZ4, a->n));
    uint8_t *out = malloc(a->n);
    if (!comp || !out) {
        a->ok = 0;
    } else {
        for (int iter = 0; iter < 20 && a->ok; iter++) {
            for (size_t i = 0; i < NCODECS; i++) {
                size_t clen = 0;
                ps_codec c = all_codecs[i];
                if (ps_codec_compress(c, 1, a->src, a->n, comp, ps_codec_bound(c, a->n), &clen) !=
                        PS_CODEC_OK ||
                    ps_codec_decompress(c, comp, clen, out, a->n) != PS_CODEC_OK ||
                    memcmp(out, a->src, a->n) != 0)
                    a->ok = 0;
            }
        }
    }
    free(comp);
    free(out);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    enum { NT = 4 };
    size_t n = 100000;
    uint8_t *src = malloc(n * NT);
    assert_non_null(src);
    pthread_t th[NT];
    thread_arg args[NT];
    for (int t = 0; t < NT; t++) {
        fill_packets(src + t * n, n, (uint64_t)t + 40);
        args[t] = (thread_arg){src + t * n, n, 0};
        assert_int_equal(pthread_create(&th[t], NULL, thread_main, &args[t]), 0);
    }
    for (int t = 0; t < NT; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_true(args[t].ok);
    }
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),         cmocka_unit_test(test_bound),
        cmocka_unit_test(test_empty),         cmocka_unit_test(test_one_byte),
        cmocka_unit_test(test_small),         cmocka_unit_test(test_compressible_shrinks),
        cmocka_unit_test(test_zlib_levels),   cmocka_unit_test(test_large),
        cmocka_unit_test(test_dst_too_small), cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_bitflips),      cmocka_unit_test(test_bomb),
        cmocka_unit_test(test_unknown_codec), cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
