/*
 * fuzz_batch: a BATCH payload through what session.c does with it: header
 * decode with a raw-size bound, decompression (none, zlib, lz4, whichever the
 * header names) into a buffer of exactly the declared size, then record
 * iteration. Decompression bombs and lying lengths must end in an error.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/codec.h"
#include "core/wire.h"

#define FUZZ_MAX_RAW (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > UINT32_MAX)
        return 0;
    ps_batch_hdr b;
    if (ps_wire_decode_batch(data, (uint32_t)size, FUZZ_MAX_RAW, &b) != PS_WIRE_OK)
        return 0;
    if (b.raw_len > FUZZ_MAX_RAW)
        abort(); /* the decoder's bound is what keeps bombs out */
    const uint8_t *raw = b.payload;
    uint8_t *buf = NULL;
    if (b.codec != PS_CODEC_NONE) {
        buf = malloc(b.raw_len ? b.raw_len : 1);
        if (!buf)
            return 0;
        if (ps_codec_decompress((ps_codec)b.codec, b.payload, b.payload_len, buf, b.raw_len) !=
            PS_CODEC_OK) {
            free(buf);
            return 0;
        }
        raw = buf;
    }
    ps_record_iter it;
    ps_record r;
    uint64_t sum = 0;
    ps_record_iter_init(&it, raw, b.raw_len);
    while (ps_record_iter_next(&it, &r) == PS_WIRE_OK) {
        if (r.caplen > PS_WIRE_MAX_CAPLEN || r.caplen > r.origlen)
            abort();
        for (uint32_t k = 0; k < r.caplen; k += 512)
            sum += r.data[k]; /* touch the record: ASan checks the bounds */
    }
    free(buf);
    return sum == 0xdeadbeef ? 1 : 0;
}
