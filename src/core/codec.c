/*
 * codec: batch compression with zlib (RFC 1950 stream) and LZ4 (block
 * format), or none.
 *
 * Decompression never trusts the stream: the output buffer is exactly the
 * raw_len the batch header declared (already bounded by the negotiated
 * maximum), each library is told that capacity, and anything but a complete
 * stream producing exactly raw_len bytes with no input left over is an error.
 * A decompression bomb therefore costs raw_len bytes and a little CPU.
 *
 * No globals: each call sets up its own library state, so any thread may
 * call any function at any time.
 */
#include "codec.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

#include <lz4.h>
/* Makes z_stream.next_in a pointer to const, as our input is. */
#define ZLIB_CONST
#include <zlib.h>

/* Stands in for a NULL pointer when a length is 0: zlib rejects a NULL
 * next_out and memcpy/LZ4 must not be handed NULL. */
static const uint8_t empty_src[1];

static const char *const codec_names[PS_CODEC_COUNT] = {"none", "zlib", "lz4"};

const char *ps_codec_name(int codec)
{
    if (codec < 0 || codec >= PS_CODEC_COUNT)
        return NULL;
    return codec_names[codec];
}

int ps_codec_parse(const char *name, ps_codec *codec)
{
    if (!name)
        return -1;
    for (int i = 0; i < PS_CODEC_COUNT; i++) {
        if (strcasecmp(name, codec_names[i]) == 0) {
            *codec = (ps_codec)i;
            return 0;
        }
    }
    return -1;
}

const char *ps_codec_strerror(int err)
{
    switch (err) {
    case PS_CODEC_OK:
        return "ok";
    case PS_CODEC_E_UNKNOWN:
        return "unknown_codec";
    case PS_CODEC_E_SPACE:
        return "no_space";
    case PS_CODEC_E_CORRUPT:
        return "corrupt";
    case PS_CODEC_E_SIZE:
        return "size";
    case PS_CODEC_E_NOMEM:
        return "nomem";
    }
    return "unknown";
}

/* 0 for an unknown codec or an input too large for the codec (LZ4 blocks are
 * limited to LZ4_MAX_INPUT_SIZE, about 2 GiB), which compress then refuses. */
size_t ps_codec_bound(ps_codec codec, size_t n)
{
    switch (codec) {
    case PS_CODEC_NONE:
        return n;
    case PS_CODEC_ZLIB:
        /* compressBound adds ~0.03% + 13; keep that from wrapping. */
        if (n > ULONG_MAX / 2)
            return 0;
        return (size_t)compressBound((uLong)n);
    case PS_CODEC_LZ4:
        if (n > LZ4_MAX_INPUT_SIZE)
            return 0;
        return (size_t)LZ4_compressBound((int)n);
    case PS_CODEC_COUNT:
        break;
    }
    return 0;
}

static int zlib_compress(int level, const uint8_t *src, size_t src_len, uint8_t *dst,
                         size_t dst_cap, size_t *out_len)
{
    if (level <= 0)
        level = 6;
    if (level > 9)
        level = 9;
    uLongf dlen = (uLongf)dst_cap;
    int rc = compress2(dst, &dlen, src, (uLong)src_len, level);
    switch (rc) {
    case Z_OK:
        *out_len = (size_t)dlen;
        return PS_CODEC_OK;
    case Z_BUF_ERROR:
        return PS_CODEC_E_SPACE;
    case Z_MEM_ERROR:
        return PS_CODEC_E_NOMEM;
    }
    return PS_CODEC_E_CORRUPT; /* Z_STREAM_ERROR: cannot happen with our level */
}

static int lz4_compress(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap,
                        size_t *out_len)
{
    if (src_len > LZ4_MAX_INPUT_SIZE)
        return PS_CODEC_E_SIZE;
    if (dst_cap > INT_MAX)
        dst_cap = INT_MAX;
    int n = LZ4_compress_default((const char *)src, (char *)dst, (int)src_len, (int)dst_cap);
    if (n <= 0)
        return PS_CODEC_E_SPACE;
    *out_len = (size_t)n;
    return PS_CODEC_OK;
}

int ps_codec_compress(ps_codec codec, int level, const uint8_t *src, size_t src_len, uint8_t *dst,
                      size_t dst_cap, size_t *out_len)
{
    if ((int)codec < 0 || (int)codec >= PS_CODEC_COUNT)
        return PS_CODEC_E_UNKNOWN;
    if (!src)
        src = empty_src;
    uint8_t dummy;
    if (!dst) {
        if (dst_cap != 0)
            return PS_CODEC_E_SPACE;
        dst = &dummy; /* never written: capacity is 0 */
    }
    switch (codec) {
    case PS_CODEC_NONE:
        if (src_len > dst_cap)
            return PS_CODEC_E_SPACE;
        if (src_len)
            memcpy(dst, src, src_len);
        *out_len = src_len;
        return PS_CODEC_OK;
    case PS_CODEC_ZLIB:
        return zlib_compress(level, src, src_len, dst, dst_cap, out_len);
    case PS_CODEC_LZ4:
        return lz4_compress(src, src_len, dst, dst_cap, out_len);
    case PS_CODEC_COUNT:
        break;
    }
    return PS_CODEC_E_UNKNOWN;
}

/*
 * inflate into exactly raw_len bytes. avail_in/avail_out are uInt, so both
 * sides are fed in chunks of at most UINT_MAX; batches are far smaller, but
 * the function stays correct for any size_t.
 */
static int zlib_decompress(const uint8_t *src, size_t src_len, uint8_t *dst, size_t raw_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    int rc = inflateInit(&zs);
    if (rc != Z_OK)
        return rc == Z_MEM_ERROR ? PS_CODEC_E_NOMEM : PS_CODEC_E_CORRUPT;
    zs.next_in = src;
    zs.next_out = dst;
    size_t in_left = src_len, out_left = raw_len;
    int ret;
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            zs.avail_in = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
            in_left -= zs.avail_in;
        }
        if (zs.avail_out == 0 && out_left) {
            zs.avail_out = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
            out_left -= zs.avail_out;
        }
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            /* Complete stream: it must have filled dst exactly and used all
             * of the input (bytes after the stream are not ours to ignore). */
            if (zs.avail_out != 0 || out_left != 0)
                ret = PS_CODEC_E_SIZE;
            else if (zs.avail_in != 0 || in_left != 0)
                ret = PS_CODEC_E_CORRUPT;
            else
                ret = PS_CODEC_OK;
            break;
        }
        if (rc == Z_OK)
            continue;
        if (rc == Z_BUF_ERROR) {
            /* No progress possible. Output full: the stream wants to produce
             * more than raw_len (a bomb, or a lying header). Input used up:
             * the stream is truncated. Otherwise the loop refills. */
            if (zs.avail_out == 0 && out_left == 0) {
                ret = PS_CODEC_E_SIZE;
                break;
            }
            if (zs.avail_in == 0 && in_left == 0) {
                ret = PS_CODEC_E_CORRUPT;
                break;
            }
            continue;
        }
        ret = rc == Z_MEM_ERROR ? PS_CODEC_E_NOMEM : PS_CODEC_E_CORRUPT;
        break;
    }
    inflateEnd(&zs);
    return ret;
}

static int lz4_decompress(const uint8_t *src, size_t src_len, uint8_t *dst, size_t raw_len)
{
    if (src_len > INT_MAX || raw_len > INT_MAX)
        return PS_CODEC_E_SIZE;
    /* LZ4_decompress_safe never writes past raw_len; it fails when the block
     * is malformed, would overflow dst, or has bytes after its last sequence. */
    int n = LZ4_decompress_safe((const char *)src, (char *)dst, (int)src_len, (int)raw_len);
    if (n < 0)
        return PS_CODEC_E_CORRUPT;
    if ((size_t)n != raw_len)
        return PS_CODEC_E_SIZE;
    return PS_CODEC_OK;
}

int ps_codec_decompress(ps_codec codec, const uint8_t *src, size_t src_len, uint8_t *dst,
                        size_t raw_len)
{
    if ((int)codec < 0 || (int)codec >= PS_CODEC_COUNT)
        return PS_CODEC_E_UNKNOWN;
    if (!src) {
        if (src_len != 0)
            return PS_CODEC_E_CORRUPT;
        src = empty_src;
    }
    uint8_t dummy;
    if (!dst) {
        if (raw_len != 0)
            return PS_CODEC_E_SPACE;
        dst = &dummy; /* zlib refuses a NULL next_out even with no room */
    }
    switch (codec) {
    case PS_CODEC_NONE:
        if (src_len != raw_len)
            return PS_CODEC_E_SIZE;
        if (raw_len)
            memcpy(dst, src, raw_len);
        return PS_CODEC_OK;
    case PS_CODEC_ZLIB:
        return zlib_decompress(src, src_len, dst, raw_len);
    case PS_CODEC_LZ4:
        return lz4_decompress(src, src_len, dst, raw_len);
    case PS_CODEC_COUNT:
        break;
    }
    return PS_CODEC_E_UNKNOWN;
}
