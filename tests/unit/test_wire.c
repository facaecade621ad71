/*
 * test_wire: protocol v1 and v2 encoders and decoders.
 *
 * Frames are built two ways: by the encoders under test and by a small,
 * independent serializer here that writes exactly the byte tables of
 * docs/protocol.md (and can write invalid values the encoders refuse). Each
 * valid case checks that both agree byte for byte; each invalid case checks
 * the decoder's error and that the encoder refuses it, leaving its buffer
 * untouched. Inputs are copied into exact-size malloc'd buffers so ASan
 * reports any read past the length a decoder was given.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/wire.h"
#include "testutil.h"

#define MIN_LIMIT (64u * 1024)
#define MAX_DEF PS_WIRE_MAX_FRAME_DEFAULT

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* The independent serializer: big-endian by hand, no validation. */
typedef struct raw {
    uint8_t b[24576]; /* the largest JOB_START is 20 603 bytes */
    size_t n;
} raw;

static void r_u8(raw *r, uint8_t v)
{
    assert_true(r->n < sizeof(r->b));
    r->b[r->n++] = v;
}
static void r_u16(raw *r, uint16_t v)
{
    r_u8(r, (uint8_t)(v >> 8));
    r_u8(r, (uint8_t)v);
}
static void r_u32(raw *r, uint32_t v)
{
    r_u16(r, (uint16_t)(v >> 16));
    r_u16(r, (uint16_t)v);
}
static void r_u64(raw *r, uint64_t v)
{
    r_u32(r, (uint32_t)(v >> 32));
    r_u32(r, (uint32_t)v);
}
static void r_bytes(raw *r, const void *p, size_t n)
{
    assert_true(n <= sizeof(r->b) - r->n);
    if (n)
        memcpy(r->b + r->n, p, n);
    r->n += n;
}
static void r_str(raw *r, const char *s, uint16_t n)
{
    r_u16(r, n);
    r_bytes(r, s, n);
}

/* 5000 bytes of 'a', for ids, tokens, names and texts at their limits. */
static char long_a[5000];

static const char *errname(int rc)
{
    return ps_wire_strerror(rc);
}

#define EXPECT_RC(got, want)                                                                       \
    do {                                                                                           \
        int got_ = (got), want_ = (want);                                                          \
        if (got_ != want_)                                                                         \
            fail_msg("line %d: got %s (%d), want %s (%d)", line, errname(got_), got_,              \
                     errname(want_), want_);                                                       \
    } while (0)

/* The encoder either appends exactly the frame `r` describes (want_ok) or
 * fails and leaves the buffer's bytes and length as they were. */
static void check_encoder(int rc, ps_buf *b, uint8_t type, const raw *r, int want_ok, int line)
{
    if (want_ok) {
        if (rc != 0)
            fail_msg("line %d: encoder refused a valid frame", line);
        assert_int_equal(b->len, 3 + PS_WIRE_HDR_LEN + r->n);
        uint8_t hdr[PS_WIRE_HDR_LEN] = {(uint8_t)(r->n >> 24),
                                        (uint8_t)(r->n >> 16),
                                        (uint8_t)(r->n >> 8),
                                        (uint8_t)r->n,
                                        type,
                                        0,
                                        0,
                                        0};
        assert_memory_equal(b->data + 3, hdr, PS_WIRE_HDR_LEN);
        assert_memory_equal(b->data + 3 + PS_WIRE_HDR_LEN, r->b, r->n);
    } else {
        if (rc != -1)
            fail_msg("line %d: encoder accepted an invalid frame", line);
        assert_int_equal(b->len, 3);
    }
    assert_memory_equal(b->data, "xyz", 3);
}

static void buf_with_xyz(ps_buf *b)
{
    *b = (ps_buf)PS_BUF_INIT;
    assert_int_equal(ps_buf_append(b, "xyz", 3), 0);
}

/* ------------------------------------------------------------------------ */
/* Names                                                                    */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(ps_wire_strerror(PS_WIRE_OK), "ok");
    assert_string_equal(ps_wire_strerror(PS_WIRE_NEED_MORE), "need_more");
    assert_string_equal(ps_wire_strerror(PS_WIRE_E_TRUNCATED), "truncated");
    assert_string_equal(ps_wire_strerror(PS_WIRE_E_TOO_LONG), "too_long");
    assert_string_equal(ps_wire_strerror(PS_WIRE_E_BAD_MAGIC), "bad_magic");
    assert_string_equal(ps_wire_strerror(PS_WIRE_E_VERSION), "version");
    assert_string_equal(ps_wire_strerror(PS_WIRE_E_BAD_TYPE), "bad_type");
    assert_string_equal(ps_wire_strerror(PS_WIRE_E_RESERVED), "reserved");
    assert_string_equal(ps_wire_strerror(PS_WIRE_E_BAD_VALUE), "bad_value");
    assert_string_equal(ps_wire_strerror(PS_WIRE_E_TRAILING), "trailing");
    assert_string_equal(ps_wire_strerror(-100), "unknown");
    assert_string_equal(ps_wire_strerror(7), "unknown");

    assert_string_equal(ps_frame_type_name(PS_FRAME_HELLO), "hello");
    assert_string_equal(ps_frame_type_name(PS_FRAME_ACCEPT), "accept");
    assert_string_equal(ps_frame_type_name(PS_FRAME_REJECT), "reject");
    assert_string_equal(ps_frame_type_name(PS_FRAME_IFACE), "iface");
    assert_string_equal(ps_frame_type_name(PS_FRAME_BATCH), "batch");
    assert_string_equal(ps_frame_type_name(PS_FRAME_STATS), "stats");
    assert_string_equal(ps_frame_type_name(PS_FRAME_ACK), "ack");
    assert_string_equal(ps_frame_type_name(PS_FRAME_HEARTBEAT), "heartbeat");
    assert_string_equal(ps_frame_type_name(PS_FRAME_BYE), "bye");
    assert_string_equal(ps_frame_type_name(PS_FRAME_JOB_START), "job_start");
    assert_string_equal(ps_frame_type_name(PS_FRAME_JOB_STOP), "job_stop");
    assert_string_equal(ps_frame_type_name(PS_FRAME_JOB_STATUS), "job_status");
    assert_string_equal(ps_frame_type_name(0), "unknown");
    assert_string_equal(ps_frame_type_name(0x16), "unknown");
    assert_string_equal(ps_frame_type_name(-1), "unknown");
}

/* ------------------------------------------------------------------------ */
/* Frame header                                                             */

static int is_known_type(int t)
{
    return t == 0x01 || t == 0x02 || t == 0x03 || (t >= 0x10 && t <= 0x15) ||
           (t >= 0x20 && t <= 0x22);
}

/* The receiver answers the highest version both speak: a v1-only sensor
 * gets 1, a jobs sensor 2, unless the receiver is capped at 1. */
static void test_pick_version(void **state)
{
    (void)state;
    ps_hello h = {.version_min = 1, .version_max = 1};
    assert_int_equal(ps_wire_pick_version(&h, PS_WIRE_VERSION_MAX), 1);
    h.version_max = 2;
    assert_int_equal(ps_wire_pick_version(&h, PS_WIRE_VERSION_MAX), 2);
    assert_int_equal(ps_wire_pick_version(&h, 1), 1);
    assert_int_equal(ps_wire_pick_version(&h, 0), 1);
    h.version_max = 0xFFFF;
    assert_int_equal(ps_wire_pick_version(&h, PS_WIRE_VERSION_MAX), 2);
    assert_int_equal(ps_wire_pick_version(&h, 0xFFFF), 2);
    h.version_min = 2;
    assert_int_equal(ps_wire_pick_version(&h, PS_WIRE_VERSION_MAX), 2);
    assert_int_equal(ps_wire_pick_version(&h, 1), 0);
}

/* v1 sessions know exactly v1's nine types; v2 adds the three JOB_*. */
static void test_type_allowed(void **state)
{
    (void)state;
    for (int t = -1; t < 300; t++) {
        int v1 = t == 0x01 || t == 0x02 || t == 0x03 || (t >= 0x10 && t <= 0x15);
        int v2 = v1 || (t >= 0x20 && t <= 0x22);
        assert_int_equal(ps_wire_type_allowed(t, 1), v1);
        assert_int_equal(ps_wire_type_allowed(t, 2), v2);
        assert_int_equal(ps_wire_type_allowed(t, 0), 0);
        assert_int_equal(ps_wire_type_allowed(t, 3), 0);
    }
}

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t h[PS_WIRE_HDR_LEN];
    ps_wire_frame_header(h, PS_FRAME_BATCH, 0x01020304);
    const uint8_t want[] = {0x01, 0x02, 0x03, 0x04, 0x11, 0, 0, 0};
    assert_memory_equal(h, want, sizeof(want));

    ps_frame f;
    size_t used = 0;
    /* Fewer than 8 bytes: always NEED_MORE, whatever they hold. */
    assert_int_equal(ps_wire_frame_parse(NULL, 0, MAX_DEF, &f, &used), PS_WIRE_NEED_MORE);
    uint8_t junk[7] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    for (size_t k = 0; k < sizeof(junk); k++) {
        uint8_t *p = tu_dup_exact(junk, k);
        assert_int_equal(ps_wire_frame_parse(p, k, MAX_DEF, &f, &used), PS_WIRE_NEED_MORE);
        free(p);
    }

    /* Every type byte: known ones wait for the payload, others fail. */
    for (int t = 0; t < 256; t++) {
        ps_wire_frame_header(h, (uint8_t)t, 10);
        uint8_t *p = tu_dup_exact(h, sizeof(h));
        int rc = ps_wire_frame_parse(p, sizeof(h), MAX_DEF, &f, &used);
        assert_int_equal(rc, is_known_type(t) ? PS_WIRE_NEED_MORE : PS_WIRE_E_BAD_TYPE);
        if (is_known_type(t))
            assert_string_not_equal(ps_frame_type_name(t), "unknown");
        else
            assert_string_equal(ps_frame_type_name(t), "unknown");
        free(p);
    }

    /* Any non-zero bit in flags or reserved. */
    for (int byte = 5; byte < 8; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            ps_wire_frame_header(h, PS_FRAME_ACK, 8);
            h[byte] = (uint8_t)(1u << bit);
            assert_int_equal(ps_wire_frame_parse(h, sizeof(h), MAX_DEF, &f, &used),
                             PS_WIRE_E_RESERVED);
        }
    }

    /* Too long is known from the header alone, before any payload. */
    ps_wire_frame_header(h, PS_FRAME_BATCH, 1001);
    assert_int_equal(ps_wire_frame_parse(h, 8, 1000, &f, &used), PS_WIRE_E_TOO_LONG);
    ps_wire_frame_header(h, PS_FRAME_BATCH, 1000);
    assert_int_equal(ps_wire_frame_parse(h, 8, 1000, &f, &used), PS_WIRE_NEED_MORE);
    ps_wire_frame_header(h, PS_FRAME_BATCH, 0xFFFFFFFFu);
    assert_int_equal(ps_wire_frame_parse(h, 8, MAX_DEF, &f, &used), PS_WIRE_E_TOO_LONG);
    /* The hard cap holds whatever max_payload says. */
    ps_wire_frame_header(h, PS_FRAME_BATCH, PS_WIRE_MAX_FRAME_HARD + 1);
    assert_int_equal(ps_wire_frame_parse(h, 8, 0xFFFFFFFFu, &f, &used), PS_WIRE_E_TOO_LONG);
    ps_wire_frame_header(h, PS_FRAME_BATCH, PS_WIRE_MAX_FRAME_HARD);
    assert_int_equal(ps_wire_frame_parse(h, 8, 0xFFFFFFFFu, &f, &used), PS_WIRE_NEED_MORE);
    /* Checks come in order: type, then reserved, then length. */
    ps_wire_frame_header(h, 0x99, 0xFFFFFFFFu);
    h[5] = 1;
    assert_int_equal(ps_wire_frame_parse(h, 8, 0, &f, &used), PS_WIRE_E_BAD_TYPE);
    ps_wire_frame_header(h, PS_FRAME_ACK, 0xFFFFFFFFu);
    h[7] = 1;
    assert_int_equal(ps_wire_frame_parse(h, 8, 0, &f, &used), PS_WIRE_E_RESERVED);

    /* Empty payload with max 0; then two frames back to back. */
    ps_wire_frame_header(h, PS_FRAME_ACK, 0);
    assert_int_equal(ps_wire_frame_parse(h, 8, 0, &f, &used), PS_WIRE_OK);
    assert_int_equal(used, 8);
    assert_int_equal(f.len, 0);
    assert_int_equal(f.type, PS_FRAME_ACK);

    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_wire_encode_ack(&b, 5), 0);
    assert_int_equal(ps_wire_encode_heartbeat(&b, 6), 0);
    uint8_t *p = tu_dup_exact(b.data, b.len);
    assert_int_equal(ps_wire_frame_parse(p, b.len, MAX_DEF, &f, &used), PS_WIRE_OK);
    assert_int_equal(used, 16);
    assert_int_equal(f.type, PS_FRAME_ACK);
    assert_ptr_equal(f.payload, p + 8);
    assert_int_equal(f.len, 8);
    size_t off = used;
    assert_int_equal(ps_wire_frame_parse(p + off, b.len - off, MAX_DEF, &f, &used), PS_WIRE_OK);
    assert_int_equal(f.type, PS_FRAME_HEARTBEAT);
    uint64_t v = 0;
    assert_int_equal(ps_wire_decode_u64(f.payload, f.len, &v), PS_WIRE_OK);
    assert_int_equal(v, 6);
    free(p);
    ps_buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* HELLO                                                                    */

static ps_hello base_hello(void)
{
    ps_hello h = {
        .version_min = 1,
        .version_max = 1,
        .codecs = PS_CODEC_ALL_MASK,
        .codec = PS_CODEC_LZ4,
        .max_frame = PS_WIRE_MAX_FRAME_DEFAULT,
        .max_batch_raw = PS_WIRE_MAX_BATCH_RAW_DEFAULT,
        .session = 0x0102030405060708ULL,
        .id = "node-1",
        .id_len = 6,
        .token = "s3cret",
        .token_len = 6,
    };
    return h;
}

static void raw_hello(raw *r, const ps_hello *h, uint16_t reserved)
{
    r_bytes(r, "PSTR", 4);
    r_u16(r, h->version_min);
    r_u16(r, h->version_max);
    r_u8(r, h->codecs);
    r_u8(r, h->codec);
    r_u16(r, reserved);
    r_u32(r, h->max_frame);
    r_u32(r, h->max_batch_raw);
    r_u64(r, h->session);
    r_str(r, h->id, h->id_len);
    r_str(r, h->token, h->token_len);
}

static void hello_case(const ps_hello *h, uint16_t reserved, int want, int line)
{
    raw r = {.n = 0};
    raw_hello(&r, h, reserved);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_hello d;
    memset(&d, 0, sizeof(d));
    EXPECT_RC(ps_wire_decode_hello(p, (uint32_t)r.n, &d), want);
    if (want == PS_WIRE_OK) {
        assert_int_equal(d.version_min, h->version_min);
        assert_int_equal(d.version_max, h->version_max);
        assert_int_equal(d.codecs, h->codecs);
        assert_int_equal(d.codec, h->codec);
        assert_int_equal(d.max_frame, h->max_frame);
        assert_int_equal(d.max_batch_raw, h->max_batch_raw);
        assert_true(d.session == h->session);
        assert_int_equal(d.id_len, h->id_len);
        assert_ptr_equal(d.id, (const char *)p + 30); /* points into the input */
        assert_memory_equal(d.id, h->id, h->id_len);
        assert_int_equal(d.token_len, h->token_len);
        if (h->token_len)
            assert_memory_equal(d.token, h->token, h->token_len);
    }
    free(p);
    if (reserved == 0) {
        ps_buf b;
        buf_with_xyz(&b);
        check_encoder(ps_wire_encode_hello(&b, h), &b, PS_FRAME_HELLO, &r, want == PS_WIRE_OK,
                      line);
        ps_buf_free(&b);
    }
}
#define HELLO(h, want) hello_case(&(h), 0, (want), __LINE__)

static void test_hello_golden(void **state)
{
    (void)state;
    ps_hello h = base_hello();
    h.codec = PS_CODEC_ZLIB;
    h.codecs = 0x3;
    h.id = "n1";
    h.id_len = 2;
    h.token = "";
    h.token_len = 0;
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_wire_encode_hello(&b, &h), 0);
    const uint8_t want[] = {
        0x00, 0x00, 0x00, 0x22, 0x01, 0x00, 0x00, 0x00, /* frame: 34 bytes, HELLO */
        'P',  'S',  'T',  'R',                          /* magic */
        0x00, 0x01, 0x00, 0x01,                         /* versions 1..1 */
        0x03, 0x01, 0x00, 0x00,                         /* codecs none|zlib, zlib, reserved */
        0x01, 0x40, 0x00, 0x00,                         /* max_frame 20 MiB */
        0x01, 0x10, 0x00, 0x00,                         /* max_batch_raw 17 MiB */
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* session */
        0x00, 0x02, 'n',  '1',                          /* id */
        0x00, 0x00,                                     /* token */
    };
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    ps_buf_free(&b);
}

static void test_hello(void **state)
{
    (void)state;
    ps_hello base = base_hello(), h;
    int line = __LINE__;

    HELLO(base, PS_WIRE_OK);
    /* Boundary values that are valid. */
    h = base;
    h.id = long_a;
    h.id_len = PS_WIRE_MAX_ID_LEN;
    h.token = long_a;
    h.token_len = PS_WIRE_MAX_TOKEN_LEN;
    HELLO(h, PS_WIRE_OK);
    h = base;
    h.id = "a";
    h.id_len = 1;
    h.token = NULL;
    h.token_len = 0;
    HELLO(h, PS_WIRE_OK);
    h = base;
    h.id = "AZaz09._:-";
    h.id_len = 10;
    h.token = "\0\xff\n/";
    h.token_len = 4; /* tokens are opaque bytes */
    HELLO(h, PS_WIRE_OK);
    h = base;
    h.id = "...";
    h.id_len = 3;
    HELLO(h, PS_WIRE_OK);
    h = base;
    h.version_max = 0xFFFF;
    h.session = 0;
    HELLO(h, PS_WIRE_OK);
    h = base;
    h.max_frame = MIN_LIMIT;
    h.max_batch_raw = MIN_LIMIT;
    HELLO(h, PS_WIRE_OK);
    h = base;
    h.max_frame = PS_WIRE_MAX_FRAME_HARD;
    h.max_batch_raw = PS_WIRE_MAX_FRAME_HARD;
    h.session = UINT64_MAX;
    HELLO(h, PS_WIRE_OK);
    for (int c = 0; c < PS_CODEC_COUNT; c++) {
        h = base;
        h.codecs = (uint8_t)(1u << c);
        h.codec = (uint8_t)c;
        HELLO(h, PS_WIRE_OK);
    }

    /* Versions: v1 and v2 share HELLO's layout; a range with neither is
     * not parsed past byte 8. */
    h = base;
    h.version_min = 1;
    h.version_max = 2;
    HELLO(h, PS_WIRE_OK);
    h.version_min = 2;
    h.version_max = 2;
    HELLO(h, PS_WIRE_OK);
    h.version_min = 2;
    h.version_max = 3;
    HELLO(h, PS_WIRE_OK);
    h.version_min = 3;
    h.version_max = 4;
    HELLO(h, PS_WIRE_E_VERSION);
    h.version_min = 3;
    h.version_max = 0xFFFF;
    HELLO(h, PS_WIRE_E_VERSION);
    h.version_min = 0;
    h.version_max = 1;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h.version_min = 0;
    h.version_max = 0;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h.version_min = 3;
    h.version_max = 2;
    HELLO(h, PS_WIRE_E_BAD_VALUE);

    /* Codecs. */
    h = base;
    h.codecs = 0;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h = base;
    h.codecs = 0x0F;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h = base;
    h.codecs = 0x80 | 0x1;
    h.codec = 0;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h = base;
    h.codecs = 0x3;
    h.codec = PS_CODEC_LZ4; /* preferred but not offered */
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h = base;
    h.codec = PS_CODEC_COUNT;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h.codec = 0xFF;
    HELLO(h, PS_WIRE_E_BAD_VALUE);

    /* Limits. */
    h = base;
    h.max_frame = MIN_LIMIT - 1;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h = base;
    h.max_frame = PS_WIRE_MAX_FRAME_HARD + 1;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h = base;
    h.max_batch_raw = 0;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h = base;
    h.max_batch_raw = 0xFFFFFFFFu;
    HELLO(h, PS_WIRE_E_BAD_VALUE);

    /* Id: length and characters. */
    h = base;
    h.id = "";
    h.id_len = 0;
    HELLO(h, PS_WIRE_E_BAD_VALUE);
    h = base;
    h.id = long_a;
    h.id_len = PS_WIRE_MAX_ID_LEN + 1;
    HELLO(h, PS_WIRE_E_TOO_LONG);
    h.id_len = 0xFFFF;
    /* Too big for the raw serializer's buffer; the encoder alone refuses. */
    {
        ps_buf b;
        buf_with_xyz(&b);
        assert_int_equal(ps_wire_encode_hello(&b, &h), -1);
        assert_int_equal(b.len, 3);
        ps_buf_free(&b);
    }
    static const char *const bad_ids[] = {"a/b", "/", "a b", "a\nb", "a\0b", "\x80",
                                          "a*",  "é", ".",   "..",   "a\\b", "a@b"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        h = base;
        h.id = bad_ids[i];
        h.id_len = (uint16_t)(i == 4 ? 3 : strlen(bad_ids[i]));
        HELLO(h, PS_WIRE_E_BAD_VALUE);
    }

    /* Token length. */
    h = base;
    h.token = long_a;
    h.token_len = PS_WIRE_MAX_TOKEN_LEN + 1;
    HELLO(h, PS_WIRE_E_TOO_LONG);

    /* Reserved bytes (raw only: the encoder always writes zero). */
    h = base;
    hello_case(&h, 1, PS_WIRE_E_RESERVED, __LINE__);
    hello_case(&h, 0x8000, PS_WIRE_E_RESERVED, __LINE__);

    /* Bad magic, however short or long the payload. */
    raw r = {.n = 0};
    raw_hello(&r, &base, 0);
    for (int i = 0; i < 4; i++) {
        uint8_t *p = tu_dup_exact(r.b, r.n);
        p[i] ^= 0x20;
        ps_hello d;
        EXPECT_RC(ps_wire_decode_hello(p, (uint32_t)r.n, &d), PS_WIRE_E_BAD_MAGIC);
        EXPECT_RC(ps_wire_decode_hello(p, 4, &d), PS_WIRE_E_BAD_MAGIC);
        free(p);
    }

    /* A HELLO offering neither v1 nor v2 is refused from its first 8 bytes
     * alone: what follows may be laid out differently in other versions. */
    {
        const uint8_t v3[] = {'P', 'S', 'T', 'R', 0, 3, 0, 9};
        uint8_t *p = tu_dup_exact(v3, sizeof(v3));
        ps_hello d;
        EXPECT_RC(ps_wire_decode_hello(p, sizeof(v3), &d), PS_WIRE_E_VERSION);
        assert_int_equal(d.version_min, 3);
        assert_int_equal(d.version_max, 9);
        free(p);
    }

    /* Trailing byte. */
    {
        raw t = r;
        r_u8(&t, 0);
        uint8_t *p = tu_dup_exact(t.b, t.n);
        ps_hello d;
        EXPECT_RC(ps_wire_decode_hello(p, (uint32_t)t.n, &d), PS_WIRE_E_TRAILING);
        free(p);
    }

    /* id_len / token_len pointing past the end. */
    {
        raw t = {.n = 0};
        raw_hello(&t, &base, 0);
        t.b[29] = 200; /* id_len 200, only a few bytes follow */
        uint8_t *p = tu_dup_exact(t.b, t.n);
        ps_hello d;
        EXPECT_RC(ps_wire_decode_hello(p, (uint32_t)t.n, &d), PS_WIRE_E_TRUNCATED);
        free(p);
    }
    {
        raw t = {.n = 0};
        raw_hello(&t, &base, 0);
        t.b[t.n - 7] = 7; /* token_len 7 of 6 */
        uint8_t *p = tu_dup_exact(t.b, t.n);
        ps_hello d;
        EXPECT_RC(ps_wire_decode_hello(p, (uint32_t)t.n, &d), PS_WIRE_E_TRUNCATED);
        free(p);
    }
}

/* ------------------------------------------------------------------------ */
/* ACCEPT                                                                   */

static ps_accept base_accept(void)
{
    ps_accept a = {
        .version = 1,
        .codec = PS_CODEC_ZLIB,
        .max_frame = PS_WIRE_MAX_FRAME_DEFAULT,
        .max_batch_raw = PS_WIRE_MAX_BATCH_RAW_DEFAULT,
        .last_seq = 42,
    };
    return a;
}

static void raw_accept(raw *r, const ps_accept *a, uint8_t reserved)
{
    r_u16(r, a->version);
    r_u8(r, a->codec);
    r_u8(r, reserved);
    r_u32(r, a->max_frame);
    r_u32(r, a->max_batch_raw);
    r_u64(r, a->last_seq);
}

static void accept_case(const ps_accept *a, uint8_t reserved, int want, int line)
{
    raw r = {.n = 0};
    raw_accept(&r, a, reserved);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_accept d;
    EXPECT_RC(ps_wire_decode_accept(p, (uint32_t)r.n, &d), want);
    if (want == PS_WIRE_OK) {
        assert_int_equal(d.version, a->version);
        assert_int_equal(d.codec, a->codec);
        assert_int_equal(d.max_frame, a->max_frame);
        assert_int_equal(d.max_batch_raw, a->max_batch_raw);
        assert_true(d.last_seq == a->last_seq);
    }
    free(p);
    if (reserved == 0) {
        ps_buf b;
        buf_with_xyz(&b);
        check_encoder(ps_wire_encode_accept(&b, a), &b, PS_FRAME_ACCEPT, &r, want == PS_WIRE_OK,
                      line);
        ps_buf_free(&b);
    }
}
#define ACCEPT(a, want) accept_case(&(a), 0, (want), __LINE__)

static void test_accept(void **state)
{
    (void)state;
    ps_accept base = base_accept(), a;
    int line = __LINE__;
    ACCEPT(base, PS_WIRE_OK);
    a = base;
    a.last_seq = 0;
    a.codec = PS_CODEC_NONE;
    a.max_frame = MIN_LIMIT;
    a.max_batch_raw = PS_WIRE_MAX_FRAME_HARD;
    ACCEPT(a, PS_WIRE_OK);
    a.last_seq = UINT64_MAX;
    a.codec = PS_CODEC_LZ4;
    a.max_frame = PS_WIRE_MAX_FRAME_HARD;
    a.max_batch_raw = MIN_LIMIT;
    ACCEPT(a, PS_WIRE_OK);

    a = base;
    a.version = 2;
    ACCEPT(a, PS_WIRE_OK);
    a.version = 0;
    ACCEPT(a, PS_WIRE_E_VERSION);
    a.version = 3;
    ACCEPT(a, PS_WIRE_E_VERSION);
    a.version = 0xFFFF;
    ACCEPT(a, PS_WIRE_E_VERSION);
    a = base;
    a.codec = PS_CODEC_COUNT;
    ACCEPT(a, PS_WIRE_E_BAD_VALUE);
    a = base;
    a.max_frame = MIN_LIMIT - 1;
    ACCEPT(a, PS_WIRE_E_BAD_VALUE);
    a = base;
    a.max_batch_raw = PS_WIRE_MAX_FRAME_HARD + 1;
    ACCEPT(a, PS_WIRE_E_BAD_VALUE);
    accept_case(&base, 1, PS_WIRE_E_RESERVED, __LINE__);
    accept_case(&base, 0x80, PS_WIRE_E_RESERVED, __LINE__);

    raw r = {.n = 0};
    raw_accept(&r, &base, 0);
    r_u8(&r, 0);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_accept d;
    EXPECT_RC(ps_wire_decode_accept(p, (uint32_t)r.n, &d), PS_WIRE_E_TRAILING);
    EXPECT_RC(ps_wire_decode_accept(p, (uint32_t)r.n - 2, &d), PS_WIRE_E_TRUNCATED);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* REJECT                                                                   */

static void raw_reject(raw *r, const ps_reject *j)
{
    r_u16(r, j->code);
    r_str(r, j->reason, j->reason_len);
}

static void reject_case(const ps_reject *j, int want, int line)
{
    raw r = {.n = 0};
    raw_reject(&r, j);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_reject d;
    EXPECT_RC(ps_wire_decode_reject(p, (uint32_t)r.n, &d), want);
    if (want == PS_WIRE_OK) {
        assert_int_equal(d.code, j->code);
        assert_int_equal(d.reason_len, j->reason_len);
        if (j->reason_len)
            assert_memory_equal(d.reason, j->reason, j->reason_len);
    }
    free(p);
    ps_buf b;
    buf_with_xyz(&b);
    check_encoder(ps_wire_encode_reject(&b, j), &b, PS_FRAME_REJECT, &r, want == PS_WIRE_OK, line);
    ps_buf_free(&b);
}
#define REJECT(j, want) reject_case(&(j), (want), __LINE__)

static void test_reject(void **state)
{
    (void)state;
    int line = __LINE__;
    ps_reject j = {PS_REJECT_AUTH, "bad token", 9};
    REJECT(j, PS_WIRE_OK);
    for (uint16_t c = PS_REJECT_PROTOCOL; c <= PS_REJECT_UNSUPPORTED; c++) {
        j.code = c;
        REJECT(j, PS_WIRE_OK);
    }
    j.code = 0xFFFF; /* unknown codes pass: newer receivers may add some */
    REJECT(j, PS_WIRE_OK);
    j = (ps_reject){PS_REJECT_BUSY, NULL, 0};
    REJECT(j, PS_WIRE_OK);
    j = (ps_reject){PS_REJECT_BUSY, long_a, PS_WIRE_MAX_REASON_LEN};
    REJECT(j, PS_WIRE_OK);
    j.reason_len = PS_WIRE_MAX_REASON_LEN + 1;
    REJECT(j, PS_WIRE_E_TOO_LONG);
    j = (ps_reject){0, "x", 1};
    REJECT(j, PS_WIRE_E_BAD_VALUE);

    raw r = {.n = 0};
    raw_reject(&r, &(ps_reject){PS_REJECT_CODEC, "codec", 5});
    r_u8(&r, '!');
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_reject d;
    EXPECT_RC(ps_wire_decode_reject(p, (uint32_t)r.n, &d), PS_WIRE_E_TRAILING);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* IFACE                                                                    */

static ps_iface base_iface(void)
{
    ps_iface i = {
        .index = 3,
        .linktype = 1,
        .snaplen = 65535,
        .name = "eth0",
        .name_len = 4,
        .desc = "pod web-1 (default)",
        .desc_len = 19,
    };
    return i;
}

/* v1 layout; raw_iface2 appends v2's job. */
static void raw_iface(raw *r, const ps_iface *i)
{
    r_u32(r, i->index);
    r_u32(r, i->linktype);
    r_u32(r, i->snaplen);
    r_str(r, i->name, i->name_len);
    r_str(r, i->desc, i->desc_len);
}

static void raw_iface2(raw *r, const ps_iface *i)
{
    raw_iface(r, i);
    r_u64(r, i->job);
}

static void iface_case_v(const ps_iface *i, uint16_t version, int want, int line)
{
    raw r = {.n = 0};
    if (version >= 2)
        raw_iface2(&r, i);
    else
        raw_iface(&r, i);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_iface d;
    memset(&d, 0xA5, sizeof(d));
    EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)r.n, version, &d), want);
    if (want == PS_WIRE_OK) {
        assert_true(d.job == (version >= 2 ? i->job : 0));
        assert_int_equal(d.index, i->index);
        assert_int_equal(d.linktype, i->linktype);
        assert_int_equal(d.snaplen, i->snaplen);
        assert_int_equal(d.name_len, i->name_len);
        assert_memory_equal(d.name, i->name, i->name_len);
        assert_int_equal(d.desc_len, i->desc_len);
        if (i->desc_len)
            assert_memory_equal(d.desc, i->desc, i->desc_len);
    }
    free(p);
    ps_buf b;
    buf_with_xyz(&b);
    check_encoder(ps_wire_encode_iface_ver(&b, i, version), &b, PS_FRAME_IFACE, &r,
                  want == PS_WIRE_OK, line);
    ps_buf_free(&b);
    if (version == 1) { /* the v1 sensor's encoder */
        buf_with_xyz(&b);
        check_encoder(ps_wire_encode_iface(&b, i), &b, PS_FRAME_IFACE, &r, want == PS_WIRE_OK,
                      line);
        ps_buf_free(&b);
    }
}
#define IFACE(i, want) iface_case_v(&(i), 1, (want), __LINE__)
#define IFACE2(i, want) iface_case_v(&(i), 2, (want), __LINE__)

/* Whatever a name came from, its sanitised copy encodes, and names that
 * were fine stay as they were. */
static void test_iface_name_dup(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"eth0", "eth0"},
        {"del\x7fname.pcap", "del_name.pcap"},
        {"a/b", "a/b"}, /* a pod: NAMESPACE/POD */
        {"a/b/c", "a_b_c"},
        {"/a", "_a"},
        {"a/", "a_"},
        {"../a", ".._a"},
        {"tab\there\n", "tab_here_"},
        {"", "_"},
        {".", "_"},
        {"..", "_"},
        {"...", "..."},
        {"\xc3\xa9th0", "\xc3\xa9th0"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char *d = ps_wire_ifname_dup(cases[k].in);
        assert_non_null(d);
        assert_string_equal(d, cases[k].want);
        ps_iface i = base_iface();
        i.name = d;
        i.name_len = (uint16_t)strlen(d);
        IFACE(i, PS_WIRE_OK);
        free(d);
    }
    char big[PS_WIRE_MAX_DESC_LEN + 100];
    memset(big, 'n', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    char *n = ps_wire_ifname_dup(big), *d = ps_wire_ifdesc_dup(big);
    assert_non_null(n);
    assert_non_null(d);
    assert_int_equal(strlen(n), PS_WIRE_MAX_IFNAME_LEN);
    assert_int_equal(strlen(d), PS_WIRE_MAX_DESC_LEN);
    ps_iface i = base_iface();
    i.name = n;
    i.name_len = (uint16_t)strlen(n);
    i.desc = d;
    i.desc_len = (uint16_t)strlen(d);
    IFACE(i, PS_WIRE_OK);
    free(n);
    free(d);
    char *e = ps_wire_ifdesc_dup(NULL);
    assert_non_null(e);
    assert_string_equal(e, "");
    free(e);
}

static void test_iface(void **state)
{
    (void)state;
    int line = __LINE__;
    ps_iface base = base_iface(), i;
    IFACE(base, PS_WIRE_OK);
    i = base;
    i.index = UINT32_MAX;
    i.linktype = 0xFFFF;
    i.snaplen = PS_WIRE_MAX_CAPLEN;
    i.name = long_a;
    i.name_len = PS_WIRE_MAX_IFNAME_LEN;
    i.desc = long_a;
    i.desc_len = PS_WIRE_MAX_DESC_LEN;
    IFACE(i, PS_WIRE_OK);
    i = base;
    i.index = 0;
    i.linktype = 0;
    i.snaplen = 1;
    i.name = "x";
    i.name_len = 1;
    i.desc = NULL;
    i.desc_len = 0;
    IFACE(i, PS_WIRE_OK);
    /* Names are bytes: spaces, UTF-8, backslashes and colons are fine. */
    static const char *const good_names[] = {
        "any", "veth1234@if5", "my nic", "\xc3\xa9th0", "\\Device\\NPF_{X}", "br-0:1", "..."};
    for (size_t k = 0; k < sizeof(good_names) / sizeof(good_names[0]); k++) {
        i = base;
        i.name = good_names[k];
        i.name_len = (uint16_t)strlen(good_names[k]);
        IFACE(i, PS_WIRE_OK);
    }

    i = base;
    i.linktype = 0x10000;
    IFACE(i, PS_WIRE_E_BAD_VALUE);
    i = base;
    i.snaplen = 0;
    IFACE(i, PS_WIRE_E_BAD_VALUE);
    i = base;
    i.snaplen = PS_WIRE_MAX_CAPLEN + 1;
    IFACE(i, PS_WIRE_E_TOO_LONG);
    i = base;
    i.name = "";
    i.name_len = 0;
    IFACE(i, PS_WIRE_E_BAD_VALUE);
    i = base;
    i.name = long_a;
    i.name_len = PS_WIRE_MAX_IFNAME_LEN + 1;
    IFACE(i, PS_WIRE_E_TOO_LONG);
    static const char *const bad_names[] = {"a\0b", "a\tb", "a\x7f", "\x1b[31m", ".",    "..",
                                            "/",    "/a",   "a/",    "a/b/c",    "../a", "a/.."};
    for (size_t k = 0; k < sizeof(bad_names) / sizeof(bad_names[0]); k++) {
        i = base;
        i.name = bad_names[k];
        i.name_len = (uint16_t)(k == 0 ? 3 : strlen(bad_names[k]));
        IFACE(i, PS_WIRE_E_BAD_VALUE);
    }
    i = base; /* a pod's interface: NAMESPACE/POD */
    i.name = "payments/api-7d4b9";
    i.name_len = (uint16_t)strlen(i.name);
    IFACE(i, PS_WIRE_OK);
    i = base;
    i.desc = long_a;
    i.desc_len = PS_WIRE_MAX_DESC_LEN + 1;
    IFACE(i, PS_WIRE_E_TOO_LONG);
    i = base;
    i.desc = "a\0b";
    i.desc_len = 3;
    IFACE(i, PS_WIRE_E_BAD_VALUE);
    i = base;
    i.desc = "tab\there/slash\n";
    i.desc_len = 15; /* descriptions are free text otherwise */
    IFACE(i, PS_WIRE_OK);

    raw r = {.n = 0};
    raw_iface(&r, &base);
    r_u8(&r, 0);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_iface d;
    EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)r.n, 1, &d), PS_WIRE_E_TRAILING);
    free(p);
    /* name_len past the end */
    r.n = 0;
    raw_iface(&r, &base);
    r.b[13] = 100;
    p = tu_dup_exact(r.b, r.n);
    EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)r.n, 1, &d), PS_WIRE_E_TRUNCATED);
    free(p);
}

/* v2: the same fields and rules, then a u64 job; the layout follows the
 * session's version, never a guess from the length. */
static void test_iface_v2(void **state)
{
    (void)state;
    int line = __LINE__;
    ps_iface base = base_iface(), i;
    IFACE2(base, PS_WIRE_OK); /* job 0: the continuous capture */
    i = base;
    i.job = 1;
    IFACE2(i, PS_WIRE_OK);
    i.job = UINT64_MAX;
    i.name = long_a;
    i.name_len = PS_WIRE_MAX_IFNAME_LEN;
    i.desc = long_a;
    i.desc_len = PS_WIRE_MAX_DESC_LEN;
    IFACE2(i, PS_WIRE_OK);
    i = base;
    i.job = 7;
    i.name = "payments/api-7d4b9";
    i.name_len = (uint16_t)strlen(i.name);
    IFACE2(i, PS_WIRE_OK);
    /* The v1 checks hold in v2. */
    i = base;
    i.job = 7;
    i.snaplen = 0;
    IFACE2(i, PS_WIRE_E_BAD_VALUE);
    i = base;
    i.job = 7;
    i.name = "a/b/c";
    i.name_len = 5;
    IFACE2(i, PS_WIRE_E_BAD_VALUE);
    i = base;
    i.desc = long_a;
    i.desc_len = PS_WIRE_MAX_DESC_LEN + 1;
    IFACE2(i, PS_WIRE_E_TOO_LONG);
    /* A job in v1 cannot be expressed: the encoder refuses it. */
    i = base;
    i.job = 3;
    ps_buf b;
    buf_with_xyz(&b);
    raw none = {.n = 0};
    check_encoder(ps_wire_encode_iface(&b, &i), &b, PS_FRAME_IFACE, &none, 0, line);
    check_encoder(ps_wire_encode_iface_ver(&b, &i, 1), &b, PS_FRAME_IFACE, &none, 0, line);
    /* Versions this build does not speak. */
    check_encoder(ps_wire_encode_iface_ver(&b, &base, 0), &b, PS_FRAME_IFACE, &none, 0, line);
    check_encoder(ps_wire_encode_iface_ver(&b, &base, 3), &b, PS_FRAME_IFACE, &none, 0, line);
    ps_buf_free(&b);

    /* A v2 IFACE read as v1 has 8 trailing bytes; a v1 one read as v2 is
     * truncated; each strict prefix of the job is truncated. */
    raw r = {.n = 0};
    i = base;
    i.job = 0x0102030405060708ULL;
    raw_iface2(&r, &i);
    ps_iface d;
    uint8_t *p = tu_dup_exact(r.b, r.n);
    EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)r.n, 1, &d), PS_WIRE_E_TRAILING);
    EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)r.n, 2, &d), PS_WIRE_OK);
    assert_true(d.job == 0x0102030405060708ULL);
    EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)r.n, 0, &d), PS_WIRE_E_VERSION);
    EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)r.n, 3, &d), PS_WIRE_E_VERSION);
    free(p);
    for (size_t cut = r.n - 8; cut < r.n; cut++) {
        p = tu_dup_exact(r.b, cut);
        EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)cut, 2, &d), PS_WIRE_E_TRUNCATED);
        free(p);
    }
    r_u8(&r, 0);
    p = tu_dup_exact(r.b, r.n);
    EXPECT_RC(ps_wire_decode_iface(p, (uint32_t)r.n, 2, &d), PS_WIRE_E_TRAILING);
    free(p);
    /* The byte table: ... desc, then the job big-endian. */
    buf_with_xyz(&b);
    assert_int_equal(ps_wire_encode_iface_ver(&b, &i, 2), 0);
    const uint8_t tail[] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(b.data + b.len - 8, tail, 8);
    ps_buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* JOB_START, JOB_STOP, JOB_STATUS (v2)                                     */

static ps_job_start base_job(void)
{
    ps_job_start j = {
        .job = 5,
        .start_ns = 1700000000000000000ULL,
        .end_ns = 1700000030000000000ULL,
        .max_packets = 1000,
        .max_bytes = 0,
        .preroll_sec = 10,
        .name = "web-incident-1",
        .name_len = 14,
        .namespaces = "payments,shop",
        .namespaces_len = 13,
        .pods = "payments/api-7d4b9",
        .pods_len = 18,
        .label_selector = "app=api,tier!=db",
        .label_selector_len = 16,
        .interfaces = "eth*,cali*",
        .interfaces_len = 10,
        .filter = "tcp port 443",
        .filter_len = 12,
    };
    return j;
}

static void raw_job(raw *r, const ps_job_start *j, uint32_t reserved)
{
    r_u64(r, j->job);
    r_u64(r, j->start_ns);
    r_u64(r, j->end_ns);
    r_u64(r, j->max_packets);
    r_u64(r, j->max_bytes);
    r_u32(r, j->preroll_sec);
    r_u32(r, reserved);
    r_str(r, j->name, j->name_len);
    r_str(r, j->namespaces, j->namespaces_len);
    r_str(r, j->pods, j->pods_len);
    r_str(r, j->label_selector, j->label_selector_len);
    r_str(r, j->interfaces, j->interfaces_len);
    r_str(r, j->filter, j->filter_len);
}

static void str_eq(const char *got, uint16_t got_len, const char *want, uint16_t want_len)
{
    assert_int_equal(got_len, want_len);
    if (want_len)
        assert_memory_equal(got, want, want_len);
}

static void job_case(const ps_job_start *j, uint32_t reserved, int want, int line)
{
    raw r = {.n = 0};
    raw_job(&r, j, reserved);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_job_start d;
    memset(&d, 0, sizeof(d));
    EXPECT_RC(ps_wire_decode_job_start(p, (uint32_t)r.n, &d), want);
    if (want == PS_WIRE_OK) {
        assert_true(d.job == j->job);
        assert_true(d.start_ns == j->start_ns);
        assert_true(d.end_ns == j->end_ns);
        assert_true(d.max_packets == j->max_packets);
        assert_true(d.max_bytes == j->max_bytes);
        assert_int_equal(d.preroll_sec, j->preroll_sec);
        assert_ptr_equal(d.name, (const char *)p + 50); /* points into the input */
        str_eq(d.name, d.name_len, j->name, j->name_len);
        str_eq(d.namespaces, d.namespaces_len, j->namespaces, j->namespaces_len);
        str_eq(d.pods, d.pods_len, j->pods, j->pods_len);
        str_eq(d.label_selector, d.label_selector_len, j->label_selector, j->label_selector_len);
        str_eq(d.interfaces, d.interfaces_len, j->interfaces, j->interfaces_len);
        str_eq(d.filter, d.filter_len, j->filter, j->filter_len);
    }
    free(p);
    if (reserved == 0) {
        ps_buf b;
        buf_with_xyz(&b);
        check_encoder(ps_wire_encode_job_start(&b, j), &b, PS_FRAME_JOB_START, &r,
                      want == PS_WIRE_OK, line);
        ps_buf_free(&b);
    }
}
#define JOB(j, want) job_case(&(j), 0, (want), __LINE__)

static void test_job_start_golden(void **state)
{
    (void)state;
    ps_job_start j = {.job = 0x0102030405060708ULL,
                      .start_ns = 0x10,
                      .end_ns = 0x20,
                      .max_packets = 3,
                      .max_bytes = 4,
                      .preroll_sec = 5,
                      .name = "x-1",
                      .name_len = 3,
                      .filter = "ip",
                      .filter_len = 2};
    const uint8_t want[] = {
        0, 0, 0,   0x41, 0x20, 0, 0, 0,    /* header: 65 bytes, JOB_START */
        1, 2, 3,   4,    5,    6, 7, 8,    /* job */
        0, 0, 0,   0,    0,    0, 0, 0x10, /* start_ns */
        0, 0, 0,   0,    0,    0, 0, 0x20, /* end_ns */
        0, 0, 0,   0,    0,    0, 0, 3,    /* max_packets */
        0, 0, 0,   0,    0,    0, 0, 4,    /* max_bytes */
        0, 0, 0,   5,    0,    0, 0, 0,    /* preroll_sec, reserved */
        0, 3, 'x', '-',  '1',              /* name */
        0, 0, 0,   0,    0,    0, 0, 0,    /* namespaces, pods, selector, interfaces */
        0, 2, 'i', 'p',                    /* filter */
    };
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_wire_encode_job_start(&b, &j), 0);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    ps_buf_free(&b);

    const uint8_t stop[] = {0, 0, 0, 8, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02};
    assert_int_equal(ps_wire_encode_job_stop(&b, 0x102), 0);
    assert_int_equal(b.len, sizeof(stop));
    assert_memory_equal(b.data, stop, sizeof(stop));
    ps_buf_free(&b);

    ps_job_status st = {.job = 9,
                        .state = PS_JOB_FAILED,
                        .packets = 1,
                        .bytes = 2,
                        .drops = 3,
                        .msg = "no",
                        .msg_len = 2};
    const uint8_t stw[] = {
        0, 0, 0,   0x2c, 0x22, 0, 0, 0, /* header: 44 bytes, JOB_STATUS */
        0, 0, 0,   0,    0,    0, 0, 9, /* job */
        0, 0, 0,   4,    0,    0, 0, 0, /* state failed, reserved */
        0, 0, 0,   0,    0,    0, 0, 1, /* packets */
        0, 0, 0,   0,    0,    0, 0, 2, /* bytes */
        0, 0, 0,   0,    0,    0, 0, 3, /* drops */
        0, 2, 'n', 'o',                 /* msg */
    };
    assert_int_equal(ps_wire_encode_job_status(&b, &st), 0);
    assert_int_equal(b.len, sizeof(stw));
    assert_memory_equal(b.data, stw, sizeof(stw));
    ps_buf_free(&b);
}

static void test_job_start(void **state)
{
    (void)state;
    int line = __LINE__;
    ps_job_start base = base_job(), j;
    JOB(base, PS_WIRE_OK);
    /* At the limits. */
    j = base;
    j.job = UINT64_MAX;
    j.start_ns = 0;
    j.end_ns = 0; /* no deadline */
    j.max_packets = UINT64_MAX;
    j.max_bytes = UINT64_MAX;
    j.preroll_sec = PS_WIRE_MAX_PREROLL_SEC;
    j.name = "abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxy";
    j.name_len = PS_WIRE_MAX_JOB_NAME_LEN;
    j.namespaces = j.pods = j.label_selector = j.interfaces = j.filter = long_a;
    j.namespaces_len = j.pods_len = j.label_selector_len = j.interfaces_len = j.filter_len =
        PS_WIRE_MAX_JOB_SEL_LEN;
    JOB(j, PS_WIRE_OK);
    j = base; /* every selector empty: no constraint */
    j.namespaces_len = j.pods_len = j.label_selector_len = j.interfaces_len = j.filter_len = 0;
    j.namespaces = j.pods = j.label_selector = j.interfaces = j.filter = NULL;
    j.preroll_sec = 0;
    JOB(j, PS_WIRE_OK);
    j = base;
    j.end_ns = j.start_ns; /* a deadline of now */
    JOB(j, PS_WIRE_OK);
    j = base;
    j.name = "-";
    j.name_len = 1;
    JOB(j, PS_WIRE_OK);

    /* Values out of their domain. */
    j = base;
    j.job = 0;
    JOB(j, PS_WIRE_E_BAD_VALUE);
    j = base;
    j.end_ns = j.start_ns - 1;
    JOB(j, PS_WIRE_E_BAD_VALUE);
    j = base;
    j.preroll_sec = PS_WIRE_MAX_PREROLL_SEC + 1;
    JOB(j, PS_WIRE_E_BAD_VALUE);
    j.preroll_sec = UINT32_MAX;
    JOB(j, PS_WIRE_E_BAD_VALUE);
    j = base;
    j.name_len = 0;
    JOB(j, PS_WIRE_E_BAD_VALUE);
    j = base;
    j.name = long_a;
    j.name_len = PS_WIRE_MAX_JOB_NAME_LEN + 1;
    JOB(j, PS_WIRE_E_TOO_LONG);
    static const char *const bad_names[] = {"Web",  "a_b", "a.b", "a/b", "a b",
                                            "a\0b", "..",  "é",   "A",   "a\n"};
    for (size_t k = 0; k < sizeof(bad_names) / sizeof(bad_names[0]); k++) {
        j = base;
        j.name = bad_names[k];
        j.name_len = (uint16_t)(k == 5 ? 3 : strlen(bad_names[k]));
        JOB(j, PS_WIRE_E_BAD_VALUE);
    }
    /* Each selector string: too long, or holding a NUL. */
    for (int f = 0; f < 5; f++) {
        for (int mode = 0; mode < 2; mode++) {
            j = base;
            const char **sp[] = {&j.namespaces, &j.pods, &j.label_selector, &j.interfaces,
                                 &j.filter};
            uint16_t *lp[] = {&j.namespaces_len, &j.pods_len, &j.label_selector_len,
                              &j.interfaces_len, &j.filter_len};
            if (mode == 0) {
                *sp[f] = long_a;
                *lp[f] = PS_WIRE_MAX_JOB_SEL_LEN + 1;
                JOB(j, PS_WIRE_E_TOO_LONG);
            } else {
                *sp[f] = "ab\0c";
                *lp[f] = 4;
                JOB(j, PS_WIRE_E_BAD_VALUE);
            }
        }
    }
    /* Reserved bits, one at a time. */
    for (int bit = 0; bit < 32; bit++)
        job_case(&base, 1u << bit, PS_WIRE_E_RESERVED, __LINE__);

    /* Trailing and truncated. */
    raw r = {.n = 0};
    raw_job(&r, &base, 0);
    size_t full = r.n;
    r_u8(&r, 0);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_job_start d;
    EXPECT_RC(ps_wire_decode_job_start(p, (uint32_t)r.n, &d), PS_WIRE_E_TRAILING);
    free(p);
    for (size_t cut = 0; cut < full; cut++) {
        p = tu_dup_exact(r.b, cut);
        EXPECT_RC(ps_wire_decode_job_start(p, (uint32_t)cut, &d), PS_WIRE_E_TRUNCATED);
        free(p);
    }
    /* A length field past the end (filter_len 0x0100 of 12). */
    r.n = full;
    size_t at = full - 12 - 2; /* filter_len's high byte */
    assert_true(full > 14 && at < sizeof(r.b));
    r.b[at % sizeof(r.b)] = 1;
    p = tu_dup_exact(r.b, full);
    EXPECT_RC(ps_wire_decode_job_start(p, (uint32_t)full, &d), PS_WIRE_E_TRUNCATED);
    free(p);
    /* A length above its limit is too_long before it is compared with
     * what is left. */
    r.b[at % sizeof(r.b)] = 0xFF;
    p = tu_dup_exact(r.b, full);
    EXPECT_RC(ps_wire_decode_job_start(p, (uint32_t)full, &d), PS_WIRE_E_TOO_LONG);
    free(p);
}

static void test_job_stop(void **state)
{
    (void)state;
    int line = __LINE__;
    ps_buf b = PS_BUF_INIT;
    uint64_t v = 0;
    for (uint64_t job = 1; job != 0; job = job < UINT64_MAX / 3 ? job * 3 : 0) {
        ps_buf_reset(&b);
        assert_int_equal(ps_wire_encode_job_stop(&b, job), 0);
        assert_int_equal(b.len, 16);
        assert_int_equal(b.data[4], PS_FRAME_JOB_STOP);
        uint8_t *p = tu_dup_exact(b.data + 8, 8);
        EXPECT_RC(ps_wire_decode_job_stop(p, 8, &v), PS_WIRE_OK);
        assert_true(v == job);
        for (uint32_t cut = 0; cut < 8; cut++)
            EXPECT_RC(ps_wire_decode_job_stop(p, cut, &v), PS_WIRE_E_TRUNCATED);
        free(p);
    }
    ps_buf_reset(&b);
    assert_int_equal(ps_wire_encode_job_stop(&b, 0), -1);
    assert_int_equal(b.len, 0);
    uint8_t zero[9] = {0};
    uint8_t *p = tu_dup_exact(zero, 8);
    EXPECT_RC(ps_wire_decode_job_stop(p, 8, &v), PS_WIRE_E_BAD_VALUE);
    free(p);
    p = tu_dup_exact(zero, 9);
    EXPECT_RC(ps_wire_decode_job_stop(p, 9, &v), PS_WIRE_E_TRAILING);
    free(p);
    ps_buf_free(&b);
}

static void raw_status(raw *r, const ps_job_status *s, uint32_t reserved)
{
    r_u64(r, s->job);
    r_u32(r, s->state);
    r_u32(r, reserved);
    r_u64(r, s->packets);
    r_u64(r, s->bytes);
    r_u64(r, s->drops);
    r_str(r, s->msg, s->msg_len);
}

static void status_case(const ps_job_status *s, uint32_t reserved, int want, int line)
{
    raw r = {.n = 0};
    raw_status(&r, s, reserved);
    uint8_t *p = tu_dup_exact(r.b, r.n);
    ps_job_status d;
    memset(&d, 0, sizeof(d));
    EXPECT_RC(ps_wire_decode_job_status(p, (uint32_t)r.n, &d), want);
    if (want == PS_WIRE_OK) {
        assert_true(d.job == s->job);
        assert_int_equal(d.state, s->state);
        assert_true(d.packets == s->packets);
        assert_true(d.bytes == s->bytes);
        assert_true(d.drops == s->drops);
        str_eq(d.msg, d.msg_len, s->msg, s->msg_len);
    }
    free(p);
    if (reserved == 0) {
        ps_buf b;
        buf_with_xyz(&b);
        check_encoder(ps_wire_encode_job_status(&b, s), &b, PS_FRAME_JOB_STATUS, &r,
                      want == PS_WIRE_OK, line);
        ps_buf_free(&b);
    }
}
#define STATUS(s, want) status_case(&(s), 0, (want), __LINE__)

static void test_job_status(void **state)
{
    (void)state;
    int line = __LINE__;
    ps_job_status base = {.job = 5,
                          .state = PS_JOB_RUNNING,
                          .packets = 10,
                          .bytes = 1000,
                          .drops = 1},
                  s;
    STATUS(base, PS_WIRE_OK);
    for (uint32_t st = 0; st < 8; st++) {
        s = base;
        s.state = st;
        STATUS(s, st >= PS_JOB_RUNNING && st <= PS_JOB_FAILED ? PS_WIRE_OK : PS_WIRE_E_BAD_VALUE);
    }
    s = base;
    s.state = UINT32_MAX;
    STATUS(s, PS_WIRE_E_BAD_VALUE);
    s = base;
    s.job = UINT64_MAX;
    s.state = PS_JOB_FAILED;
    s.packets = s.bytes = s.drops = UINT64_MAX;
    s.msg = long_a;
    s.msg_len = PS_WIRE_MAX_JOB_MSG_LEN;
    STATUS(s, PS_WIRE_OK);
    s.msg_len = PS_WIRE_MAX_JOB_MSG_LEN + 1;
    STATUS(s, PS_WIRE_E_TOO_LONG);
    s = base;
    s.msg = "bad\0filter";
    s.msg_len = 10;
    STATUS(s, PS_WIRE_E_BAD_VALUE);
    s = base;
    s.msg = "syntax error in filter expression: tab\there";
    s.msg_len = (uint16_t)strlen(s.msg);
    STATUS(s, PS_WIRE_OK);
    s = base;
    s.job = 0;
    STATUS(s, PS_WIRE_E_BAD_VALUE);
    for (int bit = 0; bit < 32; bit++)
        status_case(&base, 1u << bit, PS_WIRE_E_RESERVED, __LINE__);

    raw r = {.n = 0};
    s = base;
    s.msg = "oops";
    s.msg_len = 4;
    raw_status(&r, &s, 0);
    size_t full = r.n;
    ps_job_status d;
    for (size_t cut = 0; cut < full; cut++) {
        uint8_t *p = tu_dup_exact(r.b, cut);
        EXPECT_RC(ps_wire_decode_job_status(p, (uint32_t)cut, &d), PS_WIRE_E_TRUNCATED);
        free(p);
    }
    r_u8(&r, 'x');
    uint8_t *p = tu_dup_exact(r.b, r.n);
    EXPECT_RC(ps_wire_decode_job_status(p, (uint32_t)r.n, &d), PS_WIRE_E_TRAILING);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* STATS, ACK, HEARTBEAT, BYE                                               */

static void test_stats(void **state)
{
    (void)state;
    ps_stats s = {7, 1, 2, 3, 4, 5, 6};
    ps_stats big = {UINT32_MAX,     UINT64_MAX,     UINT64_MAX - 1, UINT64_MAX - 2,
                    UINT64_MAX - 3, UINT64_MAX - 4, UINT64_MAX - 5};
    ps_stats zero = {0, 0, 0, 0, 0, 0, 0};
    const ps_stats *cases[] = {&s, &big, &zero};
    for (size_t k = 0; k < 3; k++) {
        const ps_stats *c = cases[k];
        raw r = {.n = 0};
        r_u32(&r, c->index);
        r_u64(&r, c->packets);
        r_u64(&r, c->bytes);
        r_u64(&r, c->kernel_drops);
        r_u64(&r, c->if_drops);
        r_u64(&r, c->sensor_drops);
        r_u64(&r, c->timestamp_ns);
        assert_int_equal(r.n, 52);
        ps_buf b;
        buf_with_xyz(&b);
        check_encoder(ps_wire_encode_stats(&b, c), &b, PS_FRAME_STATS, &r, 1, __LINE__);
        ps_buf_free(&b);
        uint8_t *p = tu_dup_exact(r.b, r.n);
        ps_stats d;
        assert_int_equal(ps_wire_decode_stats(p, 52, &d), PS_WIRE_OK);
        assert_int_equal(d.index, c->index);
        assert_true(d.packets == c->packets && d.bytes == c->bytes);
        assert_true(d.kernel_drops == c->kernel_drops && d.if_drops == c->if_drops);
        assert_true(d.sensor_drops == c->sensor_drops && d.timestamp_ns == c->timestamp_ns);
        assert_int_equal(ps_wire_decode_stats(p, 51, &d), PS_WIRE_E_TRUNCATED);
        free(p);
        r_u8(&r, 0);
        p = tu_dup_exact(r.b, r.n);
        assert_int_equal(ps_wire_decode_stats(p, 53, &d), PS_WIRE_E_TRAILING);
        free(p);
    }
}

static void test_u64_frames(void **state)
{
    (void)state;
    static const uint64_t vals[] = {0, 1, 0x0102030405060708ULL, UINT64_MAX};
    int (*enc[])(ps_buf *, uint64_t) = {ps_wire_encode_ack, ps_wire_encode_heartbeat,
                                        ps_wire_encode_bye};
    const uint8_t types[] = {PS_FRAME_ACK, PS_FRAME_HEARTBEAT, PS_FRAME_BYE};
    for (size_t e = 0; e < 3; e++) {
        for (size_t k = 0; k < 4; k++) {
            raw r = {.n = 0};
            r_u64(&r, vals[k]);
            ps_buf b;
            buf_with_xyz(&b);
            check_encoder(enc[e](&b, vals[k]), &b, types[e], &r, 1, __LINE__);
            ps_buf_free(&b);
            uint8_t *p = tu_dup_exact(r.b, 8);
            uint64_t v = 0;
            assert_int_equal(ps_wire_decode_u64(p, 8, &v), PS_WIRE_OK);
            assert_true(v == vals[k]);
            for (uint32_t n = 0; n < 8; n++)
                assert_int_equal(ps_wire_decode_u64(p, n, &v), PS_WIRE_E_TRUNCATED);
            free(p);
        }
    }
    uint8_t nine[9] = {0};
    uint64_t v;
    assert_int_equal(ps_wire_decode_u64(nine, 9, &v), PS_WIRE_E_TRAILING);
}

/* ------------------------------------------------------------------------ */
/* BATCH and records                                                        */

typedef struct rec {
    uint32_t iface;
    uint64_t ts;
    uint32_t caplen, origlen;
    uint8_t fill;
} rec;

/* Builds a record blob with ps_wire_record_put (what the sensor uses). */
static uint8_t *make_records(const rec *rs, size_t n, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += PS_WIRE_REC_HDR_LEN + rs[i].caplen;
    uint8_t *p = malloc(total ? total : 1);
    assert_non_null(p);
    uint8_t *data = malloc(PS_WIRE_MAX_CAPLEN + 1);
    assert_non_null(data);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memset(data, rs[i].fill, rs[i].caplen);
        ps_wire_record_put(p + off, rs[i].iface, rs[i].ts, rs[i].caplen, rs[i].origlen, data);
        off += PS_WIRE_REC_HDR_LEN + rs[i].caplen;
    }
    free(data);
    *len = total;
    return p;
}

static const rec sample_recs[] = {
    {0, 1700000000123456789ULL, 60, 60, 0xAA},
    {1, 1700000000123456790ULL, 0, 0, 0},
    {7, UINT64_MAX, 1514, 9000, 0x55},
    {UINT32_MAX, 0, 1, 1, 0x01},
};
#define NSAMPLE_RECS (sizeof(sample_recs) / sizeof(sample_recs[0]))

/* Appends a whole BATCH frame: prefix + compressed records. */
static void append_batch(ps_buf *out, uint64_t seq, ps_codec codec, const rec *rs, size_t n)
{
    size_t raw_len = 0;
    uint8_t *rawp = make_records(rs, n, &raw_len);
    size_t bound = ps_codec_bound(codec, raw_len), clen = 0;
    uint8_t *comp = malloc(bound ? bound : 1);
    assert_non_null(comp);
    assert_int_equal(ps_codec_compress(codec, 0, rawp, raw_len, comp, bound, &clen), 0);
    uint8_t prefix[PS_WIRE_HDR_LEN + PS_WIRE_BATCH_HDR_LEN];
    ps_wire_batch_prefix(prefix, seq, (uint8_t)codec, (uint32_t)n, (uint32_t)raw_len,
                         (uint32_t)clen);
    assert_int_equal(ps_buf_append(out, prefix, sizeof(prefix)), 0);
    assert_int_equal(ps_buf_append(out, comp, clen), 0);
    free(comp);
    free(rawp);
}

static void test_batch_prefix_golden(void **state)
{
    (void)state;
    uint8_t p[28];
    ps_wire_batch_prefix(p, 0x1122334455667788ULL, PS_CODEC_LZ4, 3, 0x100, 0x80);
    const uint8_t want[] = {
        0x00, 0x00, 0x00, 0x94, 0x11, 0x00, 0x00, 0x00, /* frame: 20 + 128 bytes, BATCH */
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* seq */
        0x02, 0x00, 0x00, 0x00,                         /* codec lz4, reserved */
        0x00, 0x00, 0x00, 0x03,                         /* records */
        0x00, 0x00, 0x01, 0x00,                         /* raw_len */
    };
    assert_memory_equal(p, want, sizeof(want));

    uint8_t r[PS_WIRE_REC_HDR_LEN + 2];
    const uint8_t d[2] = {0xde, 0xad};
    ps_wire_record_put(r, 0x01020304, 0x0506070809101112ULL, 2, 0x1000, d);
    const uint8_t want_r[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x10, 0x11,
                              0x12, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x10, 0x00, 0xde, 0xad};
    assert_memory_equal(r, want_r, sizeof(want_r));
}

/* Full receiver path: parse frame, decode batch, decompress, iterate. */
static void test_batch_roundtrip(void **state)
{
    (void)state;
    for (int c = 0; c < PS_CODEC_COUNT; c++) {
        ps_buf b = PS_BUF_INIT;
        append_batch(&b, 9, (ps_codec)c, sample_recs, NSAMPLE_RECS);
        uint8_t *p = tu_dup_exact(b.data, b.len);
        ps_frame f;
        size_t used;
        assert_int_equal(ps_wire_frame_parse(p, b.len, MAX_DEF, &f, &used), PS_WIRE_OK);
        assert_int_equal(used, b.len);
        assert_int_equal(f.type, PS_FRAME_BATCH);
        ps_batch_hdr h;
        assert_int_equal(ps_wire_decode_batch(f.payload, f.len, MAX_DEF, &h), PS_WIRE_OK);
        assert_true(h.seq == 9);
        assert_int_equal(h.codec, c);
        assert_int_equal(h.records, NSAMPLE_RECS);
        assert_ptr_equal(h.payload, f.payload + 20);
        assert_int_equal(h.payload_len, f.len - 20);
        uint8_t *rawp = malloc(h.raw_len);
        assert_non_null(rawp);
        assert_int_equal(
            ps_codec_decompress((ps_codec)h.codec, h.payload, h.payload_len, rawp, h.raw_len), 0);
        ps_record_iter it;
        ps_record_iter_init(&it, rawp, h.raw_len);
        ps_record r;
        for (size_t k = 0; k < NSAMPLE_RECS; k++) {
            assert_int_equal(ps_record_iter_next(&it, &r), PS_WIRE_OK);
            assert_int_equal(r.iface, sample_recs[k].iface);
            assert_true(r.ts_ns == sample_recs[k].ts);
            assert_int_equal(r.caplen, sample_recs[k].caplen);
            assert_int_equal(r.origlen, sample_recs[k].origlen);
            for (uint32_t j = 0; j < r.caplen; j++)
                assert_int_equal(r.data[j], sample_recs[k].fill);
        }
        assert_int_equal(ps_record_iter_next(&it, &r), PS_WIRE_NEED_MORE);
        assert_int_equal(ps_record_iter_next(&it, &r), PS_WIRE_NEED_MORE);
        free(rawp);
        free(p);
        ps_buf_free(&b);
    }
}

/* A batch header (20 bytes) with payload_len zero bytes after it. */
static void batch_case(uint64_t seq, uint8_t codec, const uint8_t res[3], uint32_t records,
                       uint32_t raw_len, uint32_t payload_len, uint32_t max_raw, int want, int line)
{
    size_t n = PS_WIRE_BATCH_HDR_LEN + (size_t)payload_len;
    uint8_t *p = calloc(1, n);
    assert_non_null(p);
    uint8_t prefix[28];
    ps_wire_batch_prefix(prefix, seq, codec, records, raw_len, payload_len);
    memcpy(p, prefix + 8, 20);
    if (res)
        memcpy(p + 9, res, 3);
    ps_batch_hdr h;
    EXPECT_RC(ps_wire_decode_batch(p, (uint32_t)n, max_raw, &h), want);
    if (want == PS_WIRE_OK) {
        assert_true(h.seq == seq);
        assert_int_equal(h.codec, codec);
        assert_int_equal(h.records, records);
        assert_int_equal(h.raw_len, raw_len);
        assert_int_equal(h.payload_len, payload_len);
        assert_ptr_equal(h.payload, p + 20);
    }
    free(p);
}
#define BATCH(seq, codec, res, records, raw_len, plen, max_raw, want)                              \
    batch_case(seq, codec, res, records, raw_len, plen, max_raw, want, __LINE__)

static void test_batch_decode(void **state)
{
    (void)state;
    const uint32_t M = 1u << 20;
    BATCH(1, PS_CODEC_NONE, NULL, 1, 20, 20, M, PS_WIRE_OK);
    BATCH(UINT64_MAX, PS_CODEC_ZLIB, NULL, 5, 1000, 7, M, PS_WIRE_OK);
    BATCH(2, PS_CODEC_NONE, NULL, 0, 0, 0, M, PS_WIRE_OK); /* empty batch */
    BATCH(2, PS_CODEC_LZ4, NULL, 0, 0, 1, M, PS_WIRE_OK);
    /* raw_len at and over the bound */
    BATCH(3, PS_CODEC_LZ4, NULL, 1, M, 100, M, PS_WIRE_OK);
    BATCH(3, PS_CODEC_LZ4, NULL, 1, M + 1, 100, M, PS_WIRE_E_TOO_LONG);
    BATCH(3, PS_CODEC_LZ4, NULL, 1, 0xFFFFFFFFu, 100, M, PS_WIRE_E_TOO_LONG);
    /* whatever max_batch_raw says, the hard cap holds */
    BATCH(3, PS_CODEC_LZ4, NULL, 1, PS_WIRE_MAX_FRAME_HARD, 100, 0xFFFFFFFFu, PS_WIRE_OK);
    BATCH(3, PS_CODEC_LZ4, NULL, 1, PS_WIRE_MAX_FRAME_HARD + 1, 100, 0xFFFFFFFFu,
          PS_WIRE_E_TOO_LONG);
    /* seq 0, codec out of range */
    BATCH(0, PS_CODEC_NONE, NULL, 1, 20, 20, M, PS_WIRE_E_BAD_VALUE);
    BATCH(1, PS_CODEC_COUNT, NULL, 1, 20, 20, M, PS_WIRE_E_BAD_VALUE);
    BATCH(1, 0xFF, NULL, 1, 20, 20, M, PS_WIRE_E_BAD_VALUE);
    /* reserved bytes */
    const uint8_t r1[3] = {1, 0, 0}, r2[3] = {0, 0, 0x80};
    BATCH(1, PS_CODEC_NONE, r1, 1, 20, 20, M, PS_WIRE_E_RESERVED);
    BATCH(1, PS_CODEC_NONE, r2, 1, 20, 20, M, PS_WIRE_E_RESERVED);
    /* records consistent with raw_len */
    BATCH(1, PS_CODEC_NONE, NULL, 3, 60, 60, M, PS_WIRE_OK);
    BATCH(1, PS_CODEC_NONE, NULL, 3, 59, 59, M, PS_WIRE_E_BAD_VALUE);
    BATCH(1, PS_CODEC_ZLIB, NULL, 0xFFFFFFFFu, 1000, 9, M, PS_WIRE_E_BAD_VALUE);
    BATCH(1, PS_CODEC_NONE, NULL, 0, 20, 20, M, PS_WIRE_E_BAD_VALUE);
    BATCH(1, PS_CODEC_NONE, NULL, 1, 0, 0, M, PS_WIRE_E_BAD_VALUE);
    BATCH(1, PS_CODEC_NONE, NULL, 1, 19, 19, M, PS_WIRE_E_BAD_VALUE);
    /* codec none: payload is the records, exactly */
    BATCH(1, PS_CODEC_NONE, NULL, 1, 20, 21, M, PS_WIRE_E_BAD_VALUE);
    BATCH(1, PS_CODEC_NONE, NULL, 1, 21, 20, M, PS_WIRE_E_BAD_VALUE);

    ps_batch_hdr h;
    uint8_t z[20] = {0};
    for (uint32_t n = 0; n < 20; n++) {
        uint8_t *p = tu_dup_exact(z, n);
        assert_int_equal(ps_wire_decode_batch(p, n, M, &h), PS_WIRE_E_TRUNCATED);
        free(p);
    }
}

/* Iterates an exact-size copy of blob[0..len); returns the final rc and
 * the number of records seen before it. */
static int iterate(const uint8_t *blob, size_t len, size_t *count)
{
    uint8_t *p = tu_dup_exact(blob, len);
    ps_record_iter it;
    ps_record_iter_init(&it, p, len);
    ps_record r;
    int rc;
    *count = 0;
    while ((rc = ps_record_iter_next(&it, &r)) == PS_WIRE_OK) {
        assert_true(r.data >= p && r.data + r.caplen <= p + len);
        (*count)++;
    }
    /* An error does not move the iterator: asking again says the same. */
    assert_int_equal(ps_record_iter_next(&it, &r), rc);
    free(p);
    return rc;
}

static void test_records(void **state)
{
    (void)state;
    size_t len, count;
    uint8_t *blob = make_records(sample_recs, NSAMPLE_RECS, &len);

    /* Every prefix: clean end exactly at record boundaries, else truncated. */
    size_t bounds[NSAMPLE_RECS + 1], nb = 0, off = 0;
    bounds[nb++] = 0;
    for (size_t k = 0; k < NSAMPLE_RECS; k++) {
        off += PS_WIRE_REC_HDR_LEN + sample_recs[k].caplen;
        bounds[nb++] = off;
    }
    for (size_t cut = 0; cut <= len; cut++) {
        size_t whole = 0;
        int at_boundary = 0;
        for (size_t k = 0; k < nb; k++) {
            if (bounds[k] <= cut)
                whole = k;
            if (bounds[k] == cut)
                at_boundary = 1;
        }
        int rc = iterate(blob, cut, &count);
        assert_int_equal(rc, at_boundary ? PS_WIRE_NEED_MORE : PS_WIRE_E_TRUNCATED);
        assert_int_equal(count, whole);
    }
    free(blob);

    assert_int_equal(iterate(NULL, 0, &count), PS_WIRE_NEED_MORE);

    /* caplen at the maximum is fine; one more is too long, checked before
     * whether the data is there. */
    rec big = {1, 2, PS_WIRE_MAX_CAPLEN, PS_WIRE_MAX_CAPLEN, 0x11};
    blob = make_records(&big, 1, &len);
    assert_int_equal(iterate(blob, len, &count), PS_WIRE_NEED_MORE);
    assert_int_equal(count, 1);
    free(blob);
    big.caplen = big.origlen = PS_WIRE_MAX_CAPLEN + 1;
    blob = make_records(&big, 1, &len);
    assert_int_equal(iterate(blob, len, &count), PS_WIRE_E_TOO_LONG);
    assert_int_equal(iterate(blob, PS_WIRE_REC_HDR_LEN, &count), PS_WIRE_E_TOO_LONG);
    free(blob);
    uint8_t hdr[PS_WIRE_REC_HDR_LEN];
    ps_put_u32be(hdr, 0);
    ps_put_u64be(hdr + 4, 0);
    ps_put_u32be(hdr + 12, 0xFFFFFFFFu);
    ps_put_u32be(hdr + 16, 0xFFFFFFFFu);
    assert_int_equal(iterate(hdr, sizeof(hdr), &count), PS_WIRE_E_TOO_LONG);

    /* caplen > origlen; caplen == origlen and 0/0 are fine (above). */
    rec bad[2] = {{1, 2, 10, 10, 0}, {1, 3, 11, 10, 0}};
    blob = make_records(bad, 2, &len);
    assert_int_equal(iterate(blob, len, &count), PS_WIRE_E_BAD_VALUE);
    assert_int_equal(count, 1);
    free(blob);

    /* Header complete, data short by one byte. */
    rec one = {1, 2, 100, 100, 0x33};
    blob = make_records(&one, 1, &len);
    assert_int_equal(iterate(blob, len - 1, &count), PS_WIRE_E_TRUNCATED);
    assert_int_equal(iterate(blob, PS_WIRE_REC_HDR_LEN - 1, &count), PS_WIRE_E_TRUNCATED);
    assert_int_equal(iterate(blob, 1, &count), PS_WIRE_E_TRUNCATED);
    free(blob);
}

/* ------------------------------------------------------------------------ */
/* Every valid frame: prefixes, and random mutations                        */

#define MAX_SAMPLES 48
static ps_buf samples[MAX_SAMPLES];
static uint16_t sample_ver[MAX_SAMPLES]; /* the session version to decode it as */
static size_t nsamples;

static ps_buf *new_sample_v(uint16_t version)
{
    assert_true(nsamples < MAX_SAMPLES);
    samples[nsamples] = (ps_buf)PS_BUF_INIT;
    sample_ver[nsamples] = version;
    return &samples[nsamples++];
}

static ps_buf *new_sample(void)
{
    return new_sample_v(1);
}

static int setup_samples(void **state)
{
    (void)state;
    ps_hello h = base_hello();
    assert_int_equal(ps_wire_encode_hello(new_sample(), &h), 0);
    h.id = long_a;
    h.id_len = PS_WIRE_MAX_ID_LEN;
    h.token = long_a;
    h.token_len = PS_WIRE_MAX_TOKEN_LEN;
    assert_int_equal(ps_wire_encode_hello(new_sample(), &h), 0);
    h.token_len = 0;
    h.id_len = 1;
    assert_int_equal(ps_wire_encode_hello(new_sample(), &h), 0);

    ps_accept a = base_accept();
    assert_int_equal(ps_wire_encode_accept(new_sample(), &a), 0);
    ps_reject j = {PS_REJECT_AUTH, "bad token", 9};
    assert_int_equal(ps_wire_encode_reject(new_sample(), &j), 0);
    j.reason_len = 0;
    assert_int_equal(ps_wire_encode_reject(new_sample(), &j), 0);

    ps_iface i = base_iface();
    assert_int_equal(ps_wire_encode_iface(new_sample(), &i), 0);
    i.desc_len = 0;
    i.name = long_a;
    i.name_len = PS_WIRE_MAX_IFNAME_LEN;
    assert_int_equal(ps_wire_encode_iface(new_sample(), &i), 0);

    for (int c = 0; c < PS_CODEC_COUNT; c++)
        append_batch(new_sample(), 1 + (uint64_t)c, (ps_codec)c, sample_recs, NSAMPLE_RECS);
    append_batch(new_sample(), 5, PS_CODEC_NONE, NULL, 0);
    append_batch(new_sample(), 6, PS_CODEC_ZLIB, NULL, 0);
    append_batch(new_sample(), 7, PS_CODEC_LZ4, sample_recs, 1);

    ps_stats s = {1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(ps_wire_encode_stats(new_sample(), &s), 0);
    assert_int_equal(ps_wire_encode_ack(new_sample(), 17), 0);
    assert_int_equal(ps_wire_encode_heartbeat(new_sample(), 1700000000000000000ULL), 0);
    assert_int_equal(ps_wire_encode_bye(new_sample(), 18), 0);

    /* v2 */
    i = base_iface();
    i.job = 0;
    assert_int_equal(ps_wire_encode_iface_ver(new_sample_v(2), &i, 2), 0);
    i.job = 77;
    assert_int_equal(ps_wire_encode_iface_ver(new_sample_v(2), &i, 2), 0);
    ps_job_start js = base_job();
    assert_int_equal(ps_wire_encode_job_start(new_sample_v(2), &js), 0);
    js.namespaces_len = js.pods_len = js.label_selector_len = js.interfaces_len = 0;
    assert_int_equal(ps_wire_encode_job_start(new_sample_v(2), &js), 0);
    js.filter = long_a;
    js.filter_len = 300;
    assert_int_equal(ps_wire_encode_job_start(new_sample_v(2), &js), 0);
    assert_int_equal(ps_wire_encode_job_stop(new_sample_v(2), 5), 0);
    ps_job_status st = {5, PS_JOB_RUNNING, 1, 2, 3, NULL, 0};
    assert_int_equal(ps_wire_encode_job_status(new_sample_v(2), &st), 0);
    st.state = PS_JOB_FAILED;
    st.msg = "bad filter";
    st.msg_len = 10;
    assert_int_equal(ps_wire_encode_job_status(new_sample_v(2), &st), 0);
    return 0;
}

static int teardown_samples(void **state)
{
    (void)state;
    for (size_t k = 0; k < nsamples; k++)
        ps_buf_free(&samples[k]);
    nsamples = 0;
    return 0;
}

static int valid_rc(int rc)
{
    return rc == PS_WIRE_OK || (rc <= PS_WIRE_E_TRUNCATED && rc >= PS_WIRE_E_TRAILING);
}

/*
 * What a receiver (or sensor) does with one frame: decode it by type and, for
 * a batch, decompress into an exact raw_len buffer and walk the records.
 * Returns the first non-OK result. *codec_rc gets the decompression result.
 */
static int decode_any(const ps_frame *f, uint16_t version, uint32_t max_raw, int *codec_rc)
{
    *codec_rc = PS_CODEC_OK;
    switch (f->type) {
    case PS_FRAME_HELLO: {
        ps_hello h;
        return ps_wire_decode_hello(f->payload, f->len, &h);
    }
    case PS_FRAME_ACCEPT: {
        ps_accept a;
        return ps_wire_decode_accept(f->payload, f->len, &a);
    }
    case PS_FRAME_REJECT: {
        ps_reject j;
        return ps_wire_decode_reject(f->payload, f->len, &j);
    }
    case PS_FRAME_IFACE: {
        ps_iface i;
        return ps_wire_decode_iface(f->payload, f->len, version, &i);
    }
    case PS_FRAME_JOB_START: {
        ps_job_start j;
        return ps_wire_decode_job_start(f->payload, f->len, &j);
    }
    case PS_FRAME_JOB_STOP: {
        uint64_t v;
        return ps_wire_decode_job_stop(f->payload, f->len, &v);
    }
    case PS_FRAME_JOB_STATUS: {
        ps_job_status j;
        return ps_wire_decode_job_status(f->payload, f->len, &j);
    }
    case PS_FRAME_STATS: {
        ps_stats s;
        return ps_wire_decode_stats(f->payload, f->len, &s);
    }
    case PS_FRAME_ACK:
    case PS_FRAME_HEARTBEAT:
    case PS_FRAME_BYE: {
        uint64_t v;
        return ps_wire_decode_u64(f->payload, f->len, &v);
    }
    case PS_FRAME_BATCH: {
        ps_batch_hdr b;
        int rc = ps_wire_decode_batch(f->payload, f->len, max_raw, &b);
        if (rc != PS_WIRE_OK)
            return rc;
        assert_true(b.raw_len <= max_raw);
        assert_true(b.payload + b.payload_len == f->payload + f->len);
        uint8_t *rawp = malloc(b.raw_len ? b.raw_len : 1);
        assert_non_null(rawp);
        *codec_rc =
            ps_codec_decompress((ps_codec)b.codec, b.payload, b.payload_len, rawp, b.raw_len);
        assert_true(*codec_rc == PS_CODEC_OK || *codec_rc == PS_CODEC_E_SIZE ||
                    *codec_rc == PS_CODEC_E_CORRUPT);
        if (*codec_rc == PS_CODEC_OK) {
            ps_record_iter it;
            ps_record r;
            ps_record_iter_init(&it, rawp, b.raw_len);
            while ((rc = ps_record_iter_next(&it, &r)) == PS_WIRE_OK)
                assert_true(r.data + r.caplen <= rawp + b.raw_len);
            assert_true(rc == PS_WIRE_NEED_MORE || valid_rc(rc));
            rc = rc == PS_WIRE_NEED_MORE ? PS_WIRE_OK : rc;
        }
        free(rawp);
        return rc;
    }
    }
    fail_msg("frame_parse returned an unknown type %d", f->type);
    return 0;
}

static void test_samples_valid(void **state)
{
    (void)state;
    for (size_t k = 0; k < nsamples; k++) {
        ps_buf *s = &samples[k];
        uint8_t *p = tu_dup_exact(s->data, s->len);
        ps_frame f;
        size_t used = 0;
        assert_int_equal(ps_wire_frame_parse(p, s->len, MAX_DEF, &f, &used), PS_WIRE_OK);
        assert_int_equal(used, s->len);
        int crc;
        assert_int_equal(decode_any(&f, sample_ver[k], PS_WIRE_MAX_BATCH_RAW_DEFAULT, &crc),
                         PS_WIRE_OK);
        assert_int_equal(crc, PS_CODEC_OK);
        free(p);
    }
}

/* Every strict prefix of every valid frame: the frame parser waits for more,
 * and a decoder given a truncated payload fails. */
static void test_prefixes(void **state)
{
    (void)state;
    for (size_t k = 0; k < nsamples; k++) {
        ps_buf *s = &samples[k];
        for (size_t cut = 0; cut < s->len; cut++) {
            uint8_t *p = tu_dup_exact(s->data, cut);
            ps_frame f;
            size_t used;
            assert_int_equal(ps_wire_frame_parse(p, cut, MAX_DEF, &f, &used), PS_WIRE_NEED_MORE);
            free(p);
        }
        uint32_t plen = (uint32_t)(s->len - PS_WIRE_HDR_LEN);
        for (uint32_t cut = 0; cut < plen; cut++) {
            uint8_t *p = tu_dup_exact(s->data + PS_WIRE_HDR_LEN, cut);
            ps_frame f = {s->data[4], p, cut};
            int crc;
            int rc = decode_any(&f, sample_ver[k], PS_WIRE_MAX_BATCH_RAW_DEFAULT, &crc);
            /* A compressed batch cut after its header still decodes as a
             * header; the codec then finds the stream cut short. */
            if (rc == PS_WIRE_OK) {
                assert_int_equal(f.type, PS_FRAME_BATCH);
                assert_true(cut >= PS_WIRE_BATCH_HDR_LEN);
                assert_int_not_equal(s->data[8 + 8], PS_CODEC_NONE);
                assert_int_not_equal(crc, PS_CODEC_OK);
            } else {
                if (!valid_rc(rc) || rc == PS_WIRE_NEED_MORE)
                    fail_msg("sample %zu cut %u: rc %d", k, cut, rc);
            }
            free(p);
        }
    }
}

/* Deterministic mutation fuzzing of the valid frames. */
static void test_mutations(void **state)
{
    (void)state;
    static const uint32_t interesting32[] = {0,      1,          19,         20,
                                             21,     0xFFFF,     0x10000,    PS_WIRE_MAX_CAPLEN,
                                             262145, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF};
    static const uint8_t interesting8[] = {0, 1, 2, 3, 0x7F, 0x80, 0xFF, '/', '.'};
    const uint32_t max_raw = 1u << 20;
    uint64_t s = 0x5EED;
    size_t n_ok = 0, n_err = 0, n_more = 0, n_decomp = 0;
    uint8_t *scratch = malloc(32768);
    assert_non_null(scratch);

    for (int iter = 0; iter < 100000; iter++) {
        size_t which = (size_t)(tu_rng_next(&s) % nsamples);
        ps_buf *smp = &samples[which];
        size_t len = smp->len;
        assert_true(len + 64 <= 32768);
        memcpy(scratch, smp->data, len);
        int nmut = 1 + (int)(tu_rng_next(&s) % 4);
        for (int m = 0; m < nmut; m++) {
            uint64_t r = tu_rng_next(&s);
            size_t pos = len ? (size_t)((r >> 8) % len) : 0;
            switch (r % 7) {
            case 0: /* flip a bit */
                if (len)
                    scratch[pos] ^= (uint8_t)(1u << ((r >> 40) % 8));
                break;
            case 1: /* interesting byte */
                if (len)
                    scratch[pos] = interesting8[(r >> 40) % sizeof(interesting8)];
                break;
            case 2: /* interesting u16, e.g. a string length */
                if (len >= 2) {
                    pos = pos > len - 2 ? len - 2 : pos;
                    ps_put_u16be(scratch + pos,
                                 (uint16_t)interesting32[(r >> 40) % 12] ^ ((r >> 56) & 1));
                }
                break;
            case 3: /* interesting u32 */
                if (len >= 4) {
                    pos = pos > len - 4 ? len - 4 : pos;
                    ps_put_u32be(scratch + pos, interesting32[(r >> 40) % 12]);
                }
                break;
            case 4: /* truncate */
                len = len ? (size_t)((r >> 8) % len) : 0;
                break;
            case 5: { /* append random bytes */
                size_t add = 1 + (size_t)((r >> 8) % 16);
                for (size_t a = 0; a < add; a++)
                    scratch[len++] = (uint8_t)(tu_rng_next(&s) >> 56);
                break;
            }
            case 6: /* random byte */
                if (len)
                    scratch[pos] = (uint8_t)(r >> 56);
                break;
            }
        }
        /* Usually make the header agree with the new length, so mutations
         * reach the payload decoders instead of stopping at NEED_MORE. */
        if (len >= PS_WIRE_HDR_LEN && tu_rng_next(&s) % 4 != 0)
            ps_put_u32be(scratch, (uint32_t)(len - PS_WIRE_HDR_LEN));

        uint8_t *p = tu_dup_exact(scratch, len);
        size_t off = 0;
        for (;;) {
            ps_frame f;
            size_t used = 0;
            int rc = ps_wire_frame_parse(p + off, len - off, MAX_DEF, &f, &used);
            if (rc == PS_WIRE_NEED_MORE) {
                n_more++;
                break;
            }
            assert_true(valid_rc(rc));
            if (rc != PS_WIRE_OK) {
                n_err++;
                break;
            }
            assert_true(used >= PS_WIRE_HDR_LEN && used <= len - off);
            assert_true(f.payload == p + off + PS_WIRE_HDR_LEN);
            int crc;
            rc = decode_any(&f, sample_ver[which], max_raw, &crc);
            assert_true(valid_rc(rc));
            if (f.type == PS_FRAME_BATCH && rc == PS_WIRE_OK && crc == PS_CODEC_OK)
                n_decomp++;
            if (rc == PS_WIRE_OK)
                n_ok++;
            else
                n_err++;
            off += used;
        }
        free(p);

        /* The record iterator on its own, over mutated record blobs. */
        if (iter % 4 == 0) {
            size_t rlen;
            uint8_t *blob = make_records(sample_recs, NSAMPLE_RECS, &rlen);
            for (int m = 0; m < 2 && rlen > 0; m++) {
                uint64_t r = tu_rng_next(&s);
                size_t pos = (size_t)((r >> 8) % rlen);
                if (r % 3 == 0 && pos + 4 <= rlen)
                    ps_put_u32be(blob + pos, interesting32[(r >> 40) % 12]);
                else if (r % 3 == 1)
                    blob[pos] = (uint8_t)(r >> 56);
                else
                    rlen = pos;
            }
            size_t count;
            int rc = iterate(blob, rlen, &count);
            assert_true(rc == PS_WIRE_NEED_MORE || valid_rc(rc));
            assert_true(rc != PS_WIRE_OK);
            free(blob);
        }
    }
    free(scratch);
    /* The loop really exercised every outcome. */
    assert_true(n_ok > 1000);
    assert_true(n_err > 1000);
    assert_true(n_more > 100);
    assert_true(n_decomp > 100);
}

int main(void)
{
    memset(long_a, 'a', sizeof(long_a));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),           cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_hello_golden),    cmocka_unit_test(test_hello),
        cmocka_unit_test(test_accept),          cmocka_unit_test(test_reject),
        cmocka_unit_test(test_iface),           cmocka_unit_test(test_iface_name_dup),
        cmocka_unit_test(test_iface_v2),        cmocka_unit_test(test_type_allowed),
        cmocka_unit_test(test_pick_version),    cmocka_unit_test(test_job_start_golden),
        cmocka_unit_test(test_job_start),       cmocka_unit_test(test_job_stop),
        cmocka_unit_test(test_job_status),      cmocka_unit_test(test_stats),
        cmocka_unit_test(test_u64_frames),      cmocka_unit_test(test_batch_prefix_golden),
        cmocka_unit_test(test_batch_roundtrip), cmocka_unit_test(test_batch_decode),
        cmocka_unit_test(test_records),         cmocka_unit_test(test_samples_valid),
        cmocka_unit_test(test_prefixes),        cmocka_unit_test(test_mutations),
    };
    int rc = cmocka_run_group_tests(tests, setup_samples, teardown_samples);
    return rc;
}
