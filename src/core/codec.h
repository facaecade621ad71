/*
 * codec: batch compression, one enum value per codec carried on the wire.
 *
 * Pure functions over caller-owned memory. Decompression is bounded: the
 * caller states the exact decompressed size it expects (the batch header's
 * raw_len, already checked against the negotiated maximum), and anything that
 * would produce more or fewer bytes is an error, so a decompression bomb costs
 * at most raw_len bytes of output buffer and never an unbounded allocation.
 */
#ifndef PS_CODEC_H
#define PS_CODEC_H

#include <stddef.h>
#include <stdint.h>

typedef enum ps_codec {
    PS_CODEC_NONE = 0,
    PS_CODEC_ZLIB = 1,
    PS_CODEC_LZ4 = 2,
    PS_CODEC_COUNT = 3,
} ps_codec;

#define PS_CODEC_ALL_MASK ((1u << PS_CODEC_COUNT) - 1)

typedef enum ps_codec_err {
    PS_CODEC_OK = 0,
    PS_CODEC_E_UNKNOWN = -1, /* codec value not known */
    PS_CODEC_E_SPACE = -2,   /* destination too small */
    PS_CODEC_E_CORRUPT = -3, /* input is not a valid stream */
    PS_CODEC_E_SIZE = -4,    /* output size differs from the expected size */
    PS_CODEC_E_NOMEM = -5,
} ps_codec_err;

/* "none", "zlib", "lz4"; NULL for an unknown value. */
const char *ps_codec_name(int codec);
/* Returns 0 and sets *codec, or -1 for an unknown name. */
int ps_codec_parse(const char *name, ps_codec *codec);
const char *ps_codec_strerror(int err);

/* Largest compressed size for src_len input bytes (for sizing dst). */
size_t ps_codec_bound(ps_codec codec, size_t src_len);

/*
 * Compresses src into dst (capacity dst_cap, at least ps_codec_bound()).
 * level: zlib 1..9 (0 means default 6), ignored by others. Sets *out_len.
 * PS_CODEC_NONE copies. Thread-safe: no shared state.
 */
int ps_codec_compress(ps_codec codec, int level, const uint8_t *src, size_t src_len, uint8_t *dst,
                      size_t dst_cap, size_t *out_len);

/*
 * Decompresses src into dst, which must hold exactly raw_len bytes; fails with
 * PS_CODEC_E_SIZE unless the stream decodes to exactly raw_len bytes.
 */
int ps_codec_decompress(ps_codec codec, const uint8_t *src, size_t src_len, uint8_t *dst,
                        size_t raw_len);

#endif
