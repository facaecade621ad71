/*
 * pcapread: a small sequential reader of pcapng files, for the extraction
 * API (query.h) and the file index (index.h).
 *
 * Reads blocks through a window (pread, no mmap) so a file of any size costs
 * the window's memory only; the window grows to hold the largest block met,
 * up to PS_PCAPREAD_MAX_BLOCK. Only what the receiver writes is understood:
 * one section in host byte order. A file in the other byte order, or
 * without a Section Header Block, is refused at init. Reading stops (end of
 * file) at the first block that is incomplete (a .part file being written:
 * its tail is a block the writer has not finished), malformed, larger than
 * PS_PCAPREAD_MAX_BLOCK, or at a second Section Header Block.
 *
 * Not thread-safe: one reader per thread. The caller owns fd.
 */
#ifndef PS_PCAPREAD_H
#define PS_PCAPREAD_H

#include <stddef.h>
#include <stdint.h>

#define PS_PCAPREAD_MAX_BLOCK (8u << 20)
#define PS_PCAPREAD_NAME_MAX 256
#define PS_PCAPREAD_DESC_MAX 1025

typedef struct ps_pcapread {
    int fd;
    uint64_t limit;  /* bytes that may be read: the file's size when opened */
    uint64_t off;    /* next block's offset */
    uint8_t *win;    /* window: bytes [win_off, win_off + win_len) of the file */
    size_t win_cap;  /* allocated */
    size_t win_want; /* bytes read per refill */
    uint64_t win_off;
    size_t win_len;
    int blocks; /* blocks returned so far */
} ps_pcapread;

typedef struct ps_pcapread_block {
    uint32_t type, len;
    uint64_t off;        /* of the block in the file */
    const uint8_t *data; /* the whole block; valid until the next call */
} ps_pcapread_block;

/* Starts reading fd (not owned) up to limit bytes, window bytes at a time.
 * 0, or -1: not a host-order pcapng file (or a read error, errno set), or
 * out of memory (errno ENOMEM). Free with ps_pcapread_free in every case. */
int ps_pcapread_init(ps_pcapread *r, int fd, uint64_t limit, size_t window);
/* Continues at off, which must be a block boundary the caller knows (an
 * index's chunk offset). */
void ps_pcapread_seek(ps_pcapread *r, uint64_t off);
/* The next block: 1, 0 at the end (see above), -1 on a read error. */
int ps_pcapread_next(ps_pcapread *r, ps_pcapread_block *b);
void ps_pcapread_free(ps_pcapread *r);

typedef struct ps_pcapread_idb {
    uint16_t linktype;
    uint32_t snaplen;
    uint8_t tsresol; /* if_tsresol, 6 when absent */
    char name[PS_PCAPREAD_NAME_MAX];
    char desc[PS_PCAPREAD_DESC_MAX];
} ps_pcapread_idb;

/* An Interface Description Block's fields (longer names are cut). 0, or -1
 * if malformed. */
int ps_pcapread_parse_idb(const uint8_t *blk, uint32_t len, ps_pcapread_idb *out);

typedef struct ps_pcapread_epb {
    uint32_t if_id;
    uint64_t ts; /* in the interface's units (ps_pcapread_ts_ns) */
    uint32_t caplen, origlen;
    const uint8_t *data; /* caplen bytes inside the block */
} ps_pcapread_epb;

/* An Enhanced Packet Block's fields. 0, or -1 if caplen does not fit. */
int ps_pcapread_parse_epb(const uint8_t *blk, uint32_t len, ps_pcapread_epb *out);

/* A timestamp in if_tsresol units, as nanoseconds (saturating). */
uint64_t ps_pcapread_ts_ns(uint64_t ts, uint8_t tsresol);

#endif
