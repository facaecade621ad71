/*
 * batcher: packet records -> sealed batches -> compressed payloads.
 *
 * Threading: everything here runs on the loop thread except compress_work,
 * which touches only its own batch (raw in, comp out) and the read-only
 * options. Completion (compress_done) is back on the loop thread.
 */
#include "batcher.h"

#include <stdlib.h>

#include "core/log.h"

/* Released batches kept for reuse whatever opts.pool_bytes says. */
#define PS_BATCHER_POOL_MIN 8
/* Adaptive compression: a batch that shrinks by less than 1/32 (3 %) is
 * not worth the codec's CPU (encrypted traffic, already compressed files).
 * After one, batches go out stored without trying, then a single batch is
 * tried again (the probe) so a change in the traffic is noticed. While the
 * probe is on a worker, the batches behind it go stored too: at line rate
 * dozens are sealed meanwhile, and compressing them all made the probing
 * cost more than the rest of the sensor. Each probe that fails doubles the
 * stored run, from PS_BATCHER_SKIP_MIN up to PS_BATCHER_SKIP_MAX batches;
 * one that shrinks the data ends it. */
#define PS_BATCHER_MIN_SAVING_SHIFT 5
#define PS_BATCHER_SKIP_MIN 16
#define PS_BATCHER_SKIP_MAX 256
/* Batches on the workers at once (libuv's pool has 4 threads); more are
 * sent stored rather than queued. */
#define PS_BATCHER_MAX_BUSY 4

struct ps_batcher {
    uv_loop_t *loop;
    ps_batcher_opts o;
    ps_batch *open;
    ps_batch *pool; /* released batches kept for reuse */
    unsigned pool_len;
    size_t pool_mem; /* bytes the pooled batches hold */
    unsigned busy;
    /* adaptive compression (see above) */
    int distrust;       /* the codec stopped paying: send stored, probe now and then */
    int probing;        /* the probe batch is on a worker */
    unsigned skip_left; /* batches still to send stored before the next probe */
    unsigned skip_run;  /* length of the current stored run */
    uint64_t next_seq;
    ps_batcher_totals totals;
};

ps_batcher *ps_batcher_new(uv_loop_t *loop, const ps_batcher_opts *o)
{
    ps_batcher *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->loop = loop;
    b->o = *o;
    b->next_seq = 1;
    return b;
}

void ps_batcher_set_ud(ps_batcher *b, void *ud)
{
    b->o.ud = ud;
}

static ps_batch *batch_get(ps_batcher *b)
{
    ps_batch *batch = b->pool;
    if (batch) {
        b->pool = batch->next;
        b->pool_len--;
        b->pool_mem -= ps_batch_mem(batch);
    } else {
        batch = calloc(1, sizeof(*batch));
        if (!batch)
            return NULL;
    }
    ps_buf raw = batch->raw, comp = batch->comp;
    memset(batch, 0, sizeof(*batch));
    batch->raw = raw;
    batch->comp = comp;
    ps_buf_reset(&batch->raw);
    ps_buf_reset(&batch->comp);
    batch->owner = b;
    /* One reservation up front so appends rarely grow the buffer, of exactly
     * the block size and some slack: the spool charges the capacity, so a
     * doubled buffer would hold half as many batches as its size says. */
    if (ps_buf_reserve_exact(&batch->raw, b->o.block_bytes + PS_WIRE_REC_HDR_LEN + 2048) != 0) {
        ps_buf_free(&batch->raw);
        ps_buf_free(&batch->comp);
        free(batch);
        return NULL;
    }
    return batch;
}

int ps_batcher_add(ps_batcher *b, uint32_t iface, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                   const uint8_t *data)
{
    if (!b->open) {
        b->open = batch_get(b);
        if (!b->open)
            return -1;
        b->open->opened_ms = uv_now(b->loop);
    }
    ps_batch *batch = b->open;
    size_t need = PS_WIRE_REC_HDR_LEN + (size_t)caplen;
    if (ps_buf_reserve(&batch->raw, need) != 0)
        return -1;
    ps_wire_record_put(batch->raw.data + batch->raw.len, iface, ts_ns, caplen, origlen, data);
    batch->raw.len += need;
    batch->records++;
    b->totals.packets++;
    b->totals.bytes += caplen;
    if (batch->raw.len >= b->o.block_bytes)
        ps_batcher_flush(b);
    return 0;
}

static void batch_finish(ps_batch *batch)
{
    ps_batcher *b = batch->owner;
    ps_wire_batch_prefix(batch->prefix, batch->seq, (uint8_t)batch->codec, batch->records,
                         batch->raw_len, batch->payload_len);
    batch->state = PS_BATCH_READY;
    b->totals.wire_bytes += batch->payload_len;
    b->o.on_ready(b->o.ud, batch);
}

static void compress_work(uv_work_t *w)
{
    ps_batch *batch = w->data;
    const ps_batcher *b = batch->owner;
    size_t out = 0; /* batch->comp was sized by want_codec */
    batch->comp_err = ps_codec_compress(b->o.codec, b->o.level, batch->raw.data, batch->raw.len,
                                        batch->comp.data, batch->comp.cap, &out);
    batch->comp.len = out;
}

/* Adaptive compression's bookkeeping for a batch back from the codec. */
static void learn(ps_batcher *b, const ps_batch *batch, int ok)
{
    int poor =
        ok && batch->raw.len - (batch->raw.len >> PS_BATCHER_MIN_SAVING_SHIFT) <= batch->comp.len;
    if (batch->probe)
        b->probing = 0;
    if (poor && !b->distrust) {
        b->distrust = 1;
        b->skip_run = b->skip_left = PS_BATCHER_SKIP_MIN;
    } else if (batch->probe && !ok) {
        b->skip_left = b->skip_run; /* the codec failed (memory): try later */
    } else if (batch->probe && poor) {
        b->skip_run = b->skip_run * 2 > PS_BATCHER_SKIP_MAX ? PS_BATCHER_SKIP_MAX : b->skip_run * 2;
        b->skip_left = b->skip_run;
    } else if (batch->probe) {
        b->distrust = 0; /* it pays again */
    }
}

static void send_stored(ps_batcher *b, ps_batch *batch)
{
    batch->codec = PS_CODEC_NONE;
    batch->payload = batch->raw.data;
    batch->payload_len = batch->raw_len;
    if (b->o.codec != PS_CODEC_NONE)
        b->totals.stored_batches++;
    batch_finish(batch);
}

static void compress_done(uv_work_t *w, int status)
{
    ps_batch *batch = w->data;
    ps_batcher *b = batch->owner;
    b->busy--;
    int ok = status == 0 && batch->comp_err == PS_CODEC_OK;
    learn(b, batch, ok);
    if (ok && batch->comp.len < batch->raw.len) {
        batch->codec = b->o.codec;
        batch->payload = batch->comp.data;
        batch->payload_len = (uint32_t)batch->comp.len;
        batch_finish(batch);
        return;
    }
    /* Each batch names its codec, so data that did not shrink (or a codec
     * that failed for lack of memory) goes out stored: nothing is lost and
     * the receiver never inflates what was not deflated. */
    if (!ok)
        ps_warn("sensor", "batch %llu sent uncompressed: %s", (unsigned long long)batch->seq,
                status ? uv_strerror(status) : ps_codec_strerror(batch->comp_err));
    send_stored(b, batch);
}

/* Whether the batch about to be sealed goes to the codec (adaptive
 * compression's decision, see the top of the file). */
static int want_codec(ps_batcher *b, ps_batch *batch)
{
    if (b->o.codec == PS_CODEC_NONE)
        return 0;
    /* The workers are behind (the capture CPU is saturated): sending this
     * one stored keeps capture from waiting and memory from piling up. An
     * offline reader waits on the spool instead, so it keeps its codec. */
    if (b->o.store_when_busy && b->busy >= PS_BATCHER_MAX_BUSY)
        return 0;
    if (b->distrust) {
        if (b->probing || b->skip_left > 0) {
            if (b->skip_left > 0)
                b->skip_left--;
            return 0;
        }
        b->probing = 1;
        batch->probe = 1;
    }
    /* The output buffer is sized here, before on_sealed charges the batch
     * to the spool, so the spool bounds what compression holds too. */
    size_t bound = ps_codec_bound(b->o.codec, batch->raw.len);
    if (bound == 0 || ps_buf_reserve_exact(&batch->comp, bound) != 0) {
        if (batch->probe) {
            batch->probe = b->probing = 0;
            b->skip_left = b->skip_run;
        }
        return 0;
    }
    return 1;
}

void ps_batcher_flush(ps_batcher *b)
{
    ps_batch *batch = b->open;
    if (!batch || batch->records == 0)
        return;
    b->open = NULL;
    batch->seq = b->next_seq++;
    batch->raw_len = (uint32_t)batch->raw.len;
    batch->state = PS_BATCH_COMPRESSING;
    b->totals.batches++;
    b->totals.raw_bytes += batch->raw.len;
    int compress = want_codec(b, batch);
    b->o.on_sealed(b->o.ud, batch);
    if (!compress) {
        send_stored(b, batch);
        return;
    }
    batch->work.data = batch;
    b->busy++;
    int rc = uv_queue_work(b->loop, &batch->work, compress_work, compress_done);
    if (rc != 0) {
        /* The pool refused (cannot happen with a live loop): do it here. */
        compress_work(&batch->work);
        compress_done(&batch->work, 0);
    }
}

void ps_batcher_tick(ps_batcher *b)
{
    if (b->open && b->open->records > 0 && uv_now(b->loop) - b->open->opened_ms >= b->o.wait_ms)
        ps_batcher_flush(b);
}

void ps_batcher_release(ps_batcher *b, ps_batch *batch)
{
    /* Reusing buffers is what keeps the steady state free of page faults:
     * at line rate a fresh 256 KiB batch every few hundred microseconds
     * costs more in first touches than the copies into it. */
    if (b->distrust)
        ps_buf_free(&batch->comp); /* sent stored for a while: only probes need one */
    size_t mem = ps_batch_mem(batch);
    if (b->pool_len < PS_BATCHER_POOL_MIN || b->pool_mem + mem <= b->o.pool_bytes) {
        batch->next = b->pool;
        b->pool = batch;
        b->pool_len++;
        b->pool_mem += mem;
        return;
    }
    ps_buf_free(&batch->raw);
    ps_buf_free(&batch->comp);
    free(batch);
}

unsigned ps_batcher_busy(const ps_batcher *b)
{
    return b->busy;
}

size_t ps_batch_mem(const ps_batch *batch)
{
    return batch->raw.cap + batch->comp.cap;
}

void ps_batcher_get_totals(const ps_batcher *b, ps_batcher_totals *t)
{
    *t = b->totals;
}

static void batch_destroy(ps_batch *batch)
{
    ps_buf_free(&batch->raw);
    ps_buf_free(&batch->comp);
    free(batch);
}

void ps_batcher_free(ps_batcher *b)
{
    if (!b)
        return;
    if (b->open)
        batch_destroy(b->open);
    while (b->pool) {
        ps_batch *n = b->pool->next;
        batch_destroy(b->pool);
        b->pool = n;
    }
    free(b);
}
