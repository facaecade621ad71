/*
 * fuzz_hello: the session handshake decoder, the first thing an
 * unauthenticated peer reaches. The input is a HELLO payload; what decodes
 * is checked against the limits the receiver relies on.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > PS_WIRE_MAX_HELLO_FRAME)
        return 0;
    ps_hello h;
    memset(&h, 0, sizeof(h));
    if (ps_wire_decode_hello(data, (uint32_t)size, &h) == PS_WIRE_OK) {
        /* What session.c trusts after a successful decode. */
        if (h.id_len == 0 || h.id_len > PS_WIRE_MAX_ID_LEN || h.token_len > PS_WIRE_MAX_TOKEN_LEN)
            abort();
        if (h.id < (const char *)data || h.id + h.id_len > (const char *)data + size)
            abort();
        if (h.token_len &&
            (h.token < (const char *)data || h.token + h.token_len > (const char *)data + size))
            abort();
    }
    return 0;
}
