/*
 * buf: a growable byte buffer with big-endian put helpers.
 *
 * Every encoder in core/ (wire frames, pcapng and pcap blocks) appends into a
 * ps_buf so that callers own exactly one allocation per buffer and can reuse
 * it across batches without reallocating. All functions that grow the buffer
 * return 0 on success and -1 when memory cannot be allocated; the buffer is
 * left unchanged on failure, so a failed append never corrupts what is there.
 */
#ifndef PS_BUF_H
#define PS_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct ps_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} ps_buf;

#define PS_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Ensures room for at least `extra` more bytes after len; grows by doubling,
 * so appends are amortised O(1) but up to half of cap may never be used. */
int ps_buf_reserve(ps_buf *b, size_t extra);
/* The same, growing to exactly len + extra: for buffers whose size is known
 * up front and whose capacity is accounted (the sensor's spool). */
int ps_buf_reserve_exact(ps_buf *b, size_t extra);
int ps_buf_append(ps_buf *b, const void *p, size_t n);
/* Appends n zero bytes (used for pcapng padding). */
int ps_buf_append_zeros(ps_buf *b, size_t n);
void ps_buf_reset(ps_buf *b);
void ps_buf_free(ps_buf *b);
/* Removes the first n bytes, keeping the rest (n <= len). */
void ps_buf_consume(ps_buf *b, size_t n);

/* Unchecked stores: the caller has reserved the room. */
static inline void ps_put_u16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void ps_put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void ps_put_u64be(uint8_t *p, uint64_t v)
{
    ps_put_u32be(p, (uint32_t)(v >> 32));
    ps_put_u32be(p + 4, (uint32_t)v);
}
static inline uint16_t ps_get_u16be(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t ps_get_u32be(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t ps_get_u64be(const uint8_t *p)
{
    return ((uint64_t)ps_get_u32be(p) << 32) | ps_get_u32be(p + 4);
}

/* Host-order (little-endian on every platform we build for) stores used by the
 * file writers: pcap and pcapng are written in the writer's native order. */
static inline void ps_put_u16ne(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
static inline void ps_put_u32ne(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

#endif
