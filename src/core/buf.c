/*
 * buf: growable byte buffer. Growth doubles so appends are amortised O(1);
 * the packet path reuses buffers, so after warm-up it allocates nothing.
 */
#include "buf.h"

#include <stdlib.h>

int ps_buf_reserve(ps_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ps_buf_reserve_exact(ps_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    uint8_t *p = realloc(b->data, b->len + extra);
    if (!p)
        return -1;
    b->data = p;
    b->cap = b->len + extra;
    return 0;
}

int ps_buf_append(ps_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (ps_buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int ps_buf_append_zeros(ps_buf *b, size_t n)
{
    if (n == 0)
        return 0;
    if (ps_buf_reserve(b, n) != 0)
        return -1;
    memset(b->data + b->len, 0, n);
    b->len += n;
    return 0;
}

void ps_buf_reset(ps_buf *b)
{
    b->len = 0;
}

void ps_buf_free(ps_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ps_buf_consume(ps_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
