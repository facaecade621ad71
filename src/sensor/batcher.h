/*
 * batcher: turns captured packets into sealed, compressed batches.
 *
 * Records are appended in place into the open batch's raw buffer (one memcpy
 * per packet, no allocation once buffers are warm). A batch is sealed when it
 * reaches the block size (compressBlockSize) or when it has been open for the
 * gather wait; sealing gives it the next sequence number and hands it to
 * on_sealed (the uplink queues it in order). Compression runs on libuv's
 * worker pool so capture never waits for it; on_ready fires on the loop
 * thread when the payload is ready to send. With codec "none" the raw buffer
 * is the payload and no thread hop happens; the same holds for batches that
 * adaptive compression sends stored because recent ones did not shrink, and
 * for batches sealed while four are already on the workers (the CPU is
 * saturated: capture comes first; opts.store_when_busy). A batch's compression buffer is sized
 * before on_sealed, so ps_batch_mem, which the spool charges, includes it.
 *
 * Batches come from and return to a pool (ps_batcher_release, up to
 * pool_bytes), so the steady state allocates nothing and touches no new
 * pages. The pool only holds batches that were once in use at the same
 * time, so it never takes more memory than the peak of the spool.
 */
#ifndef PS_BATCHER_H
#define PS_BATCHER_H

#include <stdint.h>

#include <uv.h>

#include "core/buf.h"
#include "core/codec.h"
#include "core/wire.h"

typedef enum ps_batch_state {
    PS_BATCH_FILLING = 0,
    PS_BATCH_COMPRESSING,
    PS_BATCH_READY,
} ps_batch_state;

typedef struct ps_batch {
    /* Owned by whoever holds the batch: the batcher's pool while released,
     * the consumer's queue (the uplink's spool) from on_sealed until
     * ps_batcher_release. */
    struct ps_batch *next;

    /* public: written by the batcher, read by anyone. seq, records, raw and
     * raw_len are final at on_sealed; codec, payload, payload_len and prefix
     * at on_ready. */
    uint64_t seq;
    uint32_t records;
    ps_batch_state state;
    ps_codec codec; /* codec of this batch's payload (none if it did not shrink) */
    ps_buf raw;     /* encoded records */
    uint32_t raw_len;
    const uint8_t *payload; /* raw.data, or comp.data when compressed */
    uint32_t payload_len;
    uint8_t prefix[PS_WIRE_HDR_LEN + PS_WIRE_BATCH_HDR_LEN]; /* frame + batch header */
    struct ps_batcher *owner;                                /* the batcher to release it to */

    /* Owned by the consumer (the uplink) from on_sealed until
     * ps_batcher_release: zero when the batch is sealed, never read or
     * written by the batcher. */
    int writes;       /* writes in flight that reference it */
    size_t spool_mem; /* bytes charged to the spool for it */
    int acked;
    void *sender; /* the uplink that queued it (for write completions) */

    /* private: the batcher's own. */
    ps_buf comp;        /* compressed payload, unused with codec none */
    int comp_err;       /* set by the worker thread, read on the loop */
    int probe;          /* adaptive compression's trial batch */
    uint64_t opened_ms; /* uv_now() when the first record went in */
    uv_work_t work;
} ps_batch;

typedef struct ps_batcher ps_batcher;

typedef struct ps_batcher_opts {
    ps_codec codec;
    int level;
    uint32_t block_bytes; /* seal when raw reaches this */
    uint64_t wait_ms;     /* seal when open this long (ps_batcher_tick) */
    int store_when_busy;  /* with four batches on the workers, send the next stored
                           * (live capture, which must not wait) instead of
                           * queueing it (offline reading, which can) */
    size_t pool_bytes;    /* keep released batches for reuse up to this much memory
                           * (at least 8 batches are kept whatever it says) */
    void (*on_sealed)(void *ud, ps_batch *b);
    void (*on_ready)(void *ud, ps_batch *b);
    void *ud;
} ps_batcher_opts;

ps_batcher *ps_batcher_new(uv_loop_t *loop, const ps_batcher_opts *o);
/* Sets the ud passed to on_sealed/on_ready (the uplink, created after). */
void ps_batcher_set_ud(ps_batcher *b, void *ud);
/* Appends one packet. Returns 0, or -1 on OOM (the packet is not added and
 * the caller counts it as a drop). */
int ps_batcher_add(ps_batcher *b, uint32_t iface, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                   const uint8_t *data);
/* Seals the open batch if it is not empty. */
void ps_batcher_flush(ps_batcher *b);
/* Seals the open batch if it is older than wait_ms. */
void ps_batcher_tick(ps_batcher *b);
void ps_batcher_release(ps_batcher *b, ps_batch *batch);
/* Batches being compressed (must be 0 before ps_batcher_free). */
unsigned ps_batcher_busy(const ps_batcher *b);
/* Bytes of memory the batch holds (spool accounting). */
size_t ps_batch_mem(const ps_batch *batch);
void ps_batcher_free(ps_batcher *b);

typedef struct ps_batcher_totals {
    uint64_t packets, bytes, batches, raw_bytes, wire_bytes;
    uint64_t stored_batches; /* sent uncompressed although a codec is set: they
                              * did not shrink, or adaptive compression skipped
                              * them (see batcher.c) */
} ps_batcher_totals;
void ps_batcher_get_totals(const ps_batcher *b, ps_batcher_totals *t);

#endif
