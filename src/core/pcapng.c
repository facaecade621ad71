/*
 * pcapng: block encoders for the receiver's capture files, and the classic
 * pcap headers.
 *
 * Every encoder computes the block's exact size first, reserves it once and
 * then stores fields directly. That keeps the "buffer unchanged on failure"
 * promise of buf.h without rollback code, and makes the EPB (one per packet,
 * the receiver's hot path) a single bounds check plus a memcpy.
 *
 * Values are stored in host byte order: pcapng readers learn the order from
 * the SHB's byte-order magic, pcap readers from the file magic. Option
 * strings are written without a terminating NUL (as the format requires);
 * a NULL or empty string means "option absent", since an empty value tells a
 * reader nothing and some readers reject zero-length string options.
 */
#include "pcapng.h"

#include <string.h>

#define PCAPNG_BYTE_ORDER_MAGIC 0x1A2B3C4Du
#define PCAP_MAGIC_US 0xA1B2C3D4u
#define PCAP_MAGIC_NS 0xA1B23C4Du

#define OPT_ENDOFOPT 0
#define OPT_SHB_OS 3
#define OPT_SHB_USERAPPL 4
#define OPT_IF_NAME 2
#define OPT_IF_DESCRIPTION 3
#define OPT_IF_TSRESOL 9
#define OPT_ISB_IFRECV 4
#define OPT_ISB_IFDROP 5
#define OPT_ISB_OSDROP 7
#define OPT_ISB_USRDELIV 8

/* Option values are 16-bit lengths; blocks are 32-bit lengths. */
#define OPT_MAX_LEN 0xFFFFu

static inline size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

static inline void put_u64ne(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* Length of a string option, 0 when absent; SIZE_MAX when too long. */
static size_t str_opt_len(const char *s)
{
    if (!s || !*s)
        return 0;
    size_t n = strlen(s);
    if (n > OPT_MAX_LEN)
        return SIZE_MAX;
    return n;
}

/* Space a string option of value length n takes, header and padding included. */
static inline size_t str_opt_size(size_t n)
{
    return n ? 4 + pad4(n) : 0;
}

/* Stores an option (code, length, value, zero padding); returns the next
 * write position. n == 0 writes nothing: callers use it for absent options. */
static uint8_t *put_opt(uint8_t *p, uint16_t code, const void *v, size_t n)
{
    if (n == 0)
        return p;
    ps_put_u16ne(p, code);
    ps_put_u16ne(p + 2, (uint16_t)n);
    memcpy(p + 4, v, n);
    size_t padded = pad4(n);
    memset(p + 4 + n, 0, padded - n);
    return p + 4 + padded;
}

static uint8_t *put_opt_u64(uint8_t *p, uint16_t code, uint64_t v)
{
    ps_put_u16ne(p, code);
    ps_put_u16ne(p + 2, 8);
    put_u64ne(p + 4, v);
    return p + 12;
}

static uint8_t *put_endofopt(uint8_t *p)
{
    ps_put_u32ne(p, 0); /* code 0, length 0 */
    return p + 4;
}

int ps_pcapng_shb(ps_buf *out, const char *app, const char *os)
{
    size_t la = str_opt_len(app), lo = str_opt_len(os);
    if (la == SIZE_MAX || lo == SIZE_MAX)
        return -1;
    size_t opts = str_opt_size(lo) + str_opt_size(la);
    if (opts)
        opts += 4; /* opt_endofopt only terminates a non-empty list */
    size_t total = 28 + opts;
    if (ps_buf_reserve(out, total) != 0)
        return -1;

    uint8_t *p = out->data + out->len;
    ps_put_u32ne(p, PS_PCAPNG_SHB);
    ps_put_u32ne(p + 4, (uint32_t)total);
    ps_put_u32ne(p + 8, PCAPNG_BYTE_ORDER_MAGIC);
    ps_put_u16ne(p + 12, 1);       /* major */
    ps_put_u16ne(p + 14, 0);       /* minor */
    put_u64ne(p + 16, UINT64_MAX); /* section length: not known in advance */
    p += 24;
    p = put_opt(p, OPT_SHB_OS, os, lo);
    p = put_opt(p, OPT_SHB_USERAPPL, app, la);
    if (opts)
        p = put_endofopt(p);
    ps_put_u32ne(p, (uint32_t)total);
    out->len += total;
    return 0;
}

int ps_pcapng_idb(ps_buf *out, uint16_t linktype, uint32_t snaplen, const char *name,
                  const char *desc)
{
    size_t ln = str_opt_len(name), ld = str_opt_len(desc);
    if (ln == SIZE_MAX || ld == SIZE_MAX)
        return -1;
    /* if_tsresol (4 + 1 value byte + 3 padding) and opt_endofopt always. */
    size_t total = 20 + str_opt_size(ln) + str_opt_size(ld) + 8 + 4;
    if (ps_buf_reserve(out, total) != 0)
        return -1;

    uint8_t *p = out->data + out->len;
    ps_put_u32ne(p, PS_PCAPNG_IDB);
    ps_put_u32ne(p + 4, (uint32_t)total);
    ps_put_u16ne(p + 8, linktype);
    ps_put_u16ne(p + 10, 0); /* reserved */
    ps_put_u32ne(p + 12, snaplen);
    p += 16;
    p = put_opt(p, OPT_IF_NAME, name, ln);
    p = put_opt(p, OPT_IF_DESCRIPTION, desc, ld);
    const uint8_t tsresol = 9; /* 10^-9: timestamps are in nanoseconds */
    p = put_opt(p, OPT_IF_TSRESOL, &tsresol, 1);
    p = put_endofopt(p);
    ps_put_u32ne(p, (uint32_t)total);
    out->len += total;
    return 0;
}

int ps_pcapng_epb(ps_buf *out, uint32_t if_id, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                  const uint8_t *data)
{
    /* The block length field is 32 bits: refuse what cannot be described. */
    if (caplen > UINT32_MAX - PS_PCAPNG_EPB_OVERHEAD - 3)
        return -1;
    size_t padded = pad4(caplen);
    size_t total = PS_PCAPNG_EPB_OVERHEAD + padded;
    if (ps_buf_reserve(out, total) != 0)
        return -1;

    uint8_t *p = out->data + out->len;
    ps_put_u32ne(p, PS_PCAPNG_EPB);
    ps_put_u32ne(p + 4, (uint32_t)total);
    ps_put_u32ne(p + 8, if_id);
    ps_put_u32ne(p + 12, (uint32_t)(ts_ns >> 32));
    ps_put_u32ne(p + 16, (uint32_t)ts_ns);
    ps_put_u32ne(p + 20, caplen);
    ps_put_u32ne(p + 24, origlen);
    if (caplen)
        memcpy(p + 28, data, caplen);
    /* Zero the padding and store the trailer in one go: at most 3 + 4 bytes. */
    memset(p + 28 + caplen, 0, padded - caplen);
    ps_put_u32ne(p + 28 + padded, (uint32_t)total);
    out->len += total;
    return 0;
}

int ps_pcapng_isb(ps_buf *out, uint32_t if_id, const ps_pcapng_isb_counters *c)
{
    size_t total = 20 + 4 * 12 + 4 + 4;
    if (ps_buf_reserve(out, total) != 0)
        return -1;

    uint8_t *p = out->data + out->len;
    ps_put_u32ne(p, PS_PCAPNG_ISB);
    ps_put_u32ne(p + 4, (uint32_t)total);
    ps_put_u32ne(p + 8, if_id);
    ps_put_u32ne(p + 12, (uint32_t)(c->ts_ns >> 32));
    ps_put_u32ne(p + 16, (uint32_t)c->ts_ns);
    p += 20;
    p = put_opt_u64(p, OPT_ISB_IFRECV, c->recv);
    p = put_opt_u64(p, OPT_ISB_IFDROP, c->drop);
    p = put_opt_u64(p, OPT_ISB_OSDROP, c->osdrop);
    p = put_opt_u64(p, OPT_ISB_USRDELIV, c->delivered);
    p = put_endofopt(p);
    ps_put_u32ne(p, (uint32_t)total);
    out->len += total;
    return 0;
}

int ps_pcapng_nrb_custom(ps_buf *out, uint32_t pen, const uint8_t *data, uint32_t len)
{
    if (len > OPT_MAX_LEN - 4)
        return -1;
    /* header 8 | nrb_record_end 4 | option header 4 | pen 4 | data | endofopt 4 | trailer 4 */
    size_t total = 8 + 4 + 4 + 4 + pad4(len) + 4 + 4;
    if (ps_buf_reserve(out, total) != 0)
        return -1;
    uint8_t *p = out->data + out->len;
    memset(p, 0, total);
    ps_put_u32ne(p, PS_PCAPNG_NRB);
    ps_put_u32ne(p + 4, (uint32_t)total);
    /* p + 8: nrb_record_end, all zero */
    ps_put_u16ne(p + 12, PS_PCAPNG_OPT_CUSTOM_BIN_NOCOPY);
    ps_put_u16ne(p + 14, (uint16_t)(4 + len));
    ps_put_u32ne(p + 16, pen);
    if (len)
        memcpy(p + 20, data, len);
    /* endofopt and padding are the zeros already there */
    ps_put_u32ne(p + total - 4, (uint32_t)total);
    out->len += total;
    return 0;
}

int ps_pcap_file_header(ps_buf *out, int nanosecond, uint32_t snaplen, uint32_t linktype)
{
    if (ps_buf_reserve(out, 24) != 0)
        return -1;
    uint8_t *p = out->data + out->len;
    ps_put_u32ne(p, nanosecond ? PCAP_MAGIC_NS : PCAP_MAGIC_US);
    ps_put_u16ne(p + 4, 2); /* version 2.4 */
    ps_put_u16ne(p + 6, 4);
    ps_put_u32ne(p + 8, 0);  /* thiszone: timestamps are UTC */
    ps_put_u32ne(p + 12, 0); /* sigfigs */
    ps_put_u32ne(p + 16, snaplen);
    ps_put_u32ne(p + 20, linktype);
    out->len += 24;
    return 0;
}

int ps_pcap_record(ps_buf *out, int nanosecond, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                   const uint8_t *data)
{
    uint64_t sec = ts_ns / 1000000000u;
    uint32_t frac = (uint32_t)(ts_ns % 1000000000u);
    /* ts_sec is 32 bits (until 2106): a later time cannot be stored. */
    if (sec > UINT32_MAX)
        return -1;
    if (!nanosecond)
        frac /= 1000; /* truncate, as capture tools do */
    size_t total = 16 + (size_t)caplen;
    if (ps_buf_reserve(out, total) != 0)
        return -1;
    uint8_t *p = out->data + out->len;
    ps_put_u32ne(p, (uint32_t)sec);
    ps_put_u32ne(p + 4, frac);
    ps_put_u32ne(p + 8, caplen);
    ps_put_u32ne(p + 12, origlen);
    if (caplen)
        memcpy(p + 16, data, caplen);
    out->len += total;
    return 0;
}
