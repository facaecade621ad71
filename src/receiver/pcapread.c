/*
 * pcapread: sequential pcapng block reader (see pcapread.h).
 *
 * Why pread into a window rather than stdio or mmap: a file being written
 * (.part) grows under us and may be renamed or deleted (retention) while we
 * read; a fixed limit taken at open and explicit reads keep every length we
 * act on checked against bytes we actually hold. mmap would turn a file
 * truncated by someone else into SIGBUS.
 */
#include "pcapread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pcapng.h"

#define PR_BYTE_ORDER_MAGIC 0x1A2B3C4Du
#define PR_OPT_IF_NAME 2
#define PR_OPT_IF_DESCRIPTION 3
#define PR_OPT_IF_TSRESOL 9

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t get_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Makes [off, off + n) available in the window. 1, 0 past the limit, -1 on
 * a read error or OOM. */
static int fill(ps_pcapread *r, uint64_t off, size_t n)
{
    if (off > r->limit || n > r->limit - off)
        return 0;
    if (off >= r->win_off && off + n <= r->win_off + r->win_len)
        return 1;
    size_t want = n > r->win_want ? n : r->win_want;
    if (want > r->limit - off)
        want = (size_t)(r->limit - off);
    if (want > r->win_cap) {
        uint8_t *w = malloc(want);
        if (!w) {
            errno = ENOMEM;
            return -1;
        }
        free(r->win);
        r->win = w;
        r->win_cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = pread(r->fd, r->win + got, want - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r->win_len = 0;
            return -1;
        }
        if (k == 0)
            break; /* truncated under us: what we have */
        got += (size_t)k;
    }
    r->win_off = off;
    r->win_len = got;
    return got >= n ? 1 : 0;
}

int ps_pcapread_init(ps_pcapread *r, int fd, uint64_t limit, size_t window)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->limit = limit;
    r->win_want = window < 4096 ? 4096 : window;
    int k = fill(r, 0, 12);
    if (k <= 0) {
        if (k == 0)
            errno = EINVAL;
        return -1;
    }
    if (get_u32(r->win) != PS_PCAPNG_SHB || get_u32(r->win + 8) != PR_BYTE_ORDER_MAGIC) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

void ps_pcapread_seek(ps_pcapread *r, uint64_t off)
{
    r->off = off;
    if (off > 0 && r->blocks == 0)
        r->blocks = 1; /* past the Section Header Block */
}

int ps_pcapread_next(ps_pcapread *r, ps_pcapread_block *b)
{
    int k = fill(r, r->off, 8);
    if (k <= 0)
        return k;
    const uint8_t *h = r->win + (r->off - r->win_off);
    uint32_t type = get_u32(h), len = get_u32(h + 4);
    if (len < 12 || len % 4 || len > PS_PCAPREAD_MAX_BLOCK)
        return 0;
    if (type == PS_PCAPNG_SHB && r->blocks > 0)
        return 0; /* a second section: not ours to interpret */
    k = fill(r, r->off, len);
    if (k <= 0)
        return k;
    const uint8_t *blk = r->win + (r->off - r->win_off);
    if (get_u32(blk + len - 4) != len)
        return 0;
    b->type = type;
    b->len = len;
    b->off = r->off;
    b->data = blk;
    r->off += len;
    r->blocks++;
    return 1;
}

void ps_pcapread_free(ps_pcapread *r)
{
    free(r->win);
    r->win = NULL;
    r->win_cap = r->win_len = 0;
}

int ps_pcapread_parse_idb(const uint8_t *blk, uint32_t len, ps_pcapread_idb *out)
{
    memset(out, 0, sizeof(*out));
    out->tsresol = 6;
    if (len < 20)
        return -1;
    out->linktype = get_u16(blk + 8);
    out->snaplen = get_u32(blk + 12);
    size_t off = 16, end = len - 4;
    while (end - off >= 4) {
        uint16_t code = get_u16(blk + off), ol = get_u16(blk + off + 2);
        off += 4;
        size_t padded = ((size_t)ol + 3) & ~(size_t)3;
        if (code == 0)
            break;
        if (end - off < padded)
            return -1;
        const uint8_t *v = blk + off;
        if (code == PR_OPT_IF_NAME || code == PR_OPT_IF_DESCRIPTION) {
            char *dst = code == PR_OPT_IF_NAME ? out->name : out->desc;
            size_t cap = code == PR_OPT_IF_NAME ? sizeof(out->name) : sizeof(out->desc);
            size_t n = ol < cap - 1 ? ol : cap - 1;
            memcpy(dst, v, n);
            dst[n] = '\0';
            dst[strlen(dst)] = '\0'; /* an embedded NUL ends the string */
        } else if (code == PR_OPT_IF_TSRESOL && ol >= 1) {
            out->tsresol = v[0];
        }
        off += padded;
    }
    return 0;
}

int ps_pcapread_parse_epb(const uint8_t *blk, uint32_t len, ps_pcapread_epb *out)
{
    if (len < PS_PCAPNG_EPB_OVERHEAD)
        return -1;
    out->if_id = get_u32(blk + 8);
    out->ts = ((uint64_t)get_u32(blk + 12) << 32) | get_u32(blk + 16);
    out->caplen = get_u32(blk + 20);
    out->origlen = get_u32(blk + 24);
    if (out->caplen > len - PS_PCAPNG_EPB_OVERHEAD)
        return -1;
    out->data = blk + 28;
    return 0;
}

uint64_t ps_pcapread_ts_ns(uint64_t ts, uint8_t tsresol)
{
    unsigned n = tsresol & 0x7f;
    if (tsresol & 0x80) { /* 2^-n seconds */
        if (n > 63)
            return 0;
        uint64_t sec = n == 0 ? ts : ts >> n;
        uint64_t frac = n == 0 ? 0 : ts & ((1ull << n) - 1);
        /* frac * 1e9 / 2^n without overflow for n <= 34; coarser beyond. */
        uint64_t fns =
            n <= 34 ? (frac * 1000000000ull) >> n : (frac >> (n - 34)) * 1000000000ull >> 34;
        if (sec > (UINT64_MAX - fns) / 1000000000ull)
            return UINT64_MAX;
        return sec * 1000000000ull + fns;
    }
    if (n > 19)
        return 0;
    if (n <= 9) {
        uint64_t mul = 1;
        for (unsigned i = n; i < 9; i++)
            mul *= 10;
        return ts > UINT64_MAX / mul ? UINT64_MAX : ts * mul;
    }
    uint64_t div = 1;
    for (unsigned i = 9; i < n; i++)
        div *= 10;
    return ts / div;
}
