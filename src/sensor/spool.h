/*
 * spool: the sensor's queue of sealed batches, in sequence order, each kept
 * until the receiver acknowledges it (cumulative ACK) or spool.dropPolicy
 * "oldest" evicts it. Pure bookkeeping, no I/O: the uplink (uplink.h) does
 * the sending and calls in here.
 *
 * head is the oldest unacknowledged batch, the cursor the next one to write
 * on the current connection (ps_spool_rewind puts it back at the head after
 * a reconnect: everything not acknowledged goes again). A batch leaves the
 * queue when acknowledged or evicted, and goes to release (the batcher's
 * pool) once no write references it any more.
 *
 * Memory is charged per batch (ps_batch_mem) against limit; the caller asks
 * ps_spool_full() before producing more.
 */
#ifndef PS_SPOOL_H
#define PS_SPOOL_H

#include <stdint.h>

#include "batcher.h"

typedef struct ps_spool_totals {
    uint64_t bytes, batches; /* in the spool now */
    uint64_t acked_batches, acked_packets;
    uint64_t resent_batches; /* written again after a reconnect */
    uint64_t evicted_batches, evicted_packets;
} ps_spool_totals;

/* Fields are the module's; use the functions. A plain struct so the uplink
 * can embed it and tests can put one on the stack. */
typedef struct ps_spool {
    ps_batch *head, *tail, *cursor;
    uint64_t limit;
    uint64_t last_sent_seq; /* highest sequence ever written */
    ps_spool_totals totals;
    void (*release)(void *ud, ps_batch *b);
    void *ud;
} ps_spool;

/* limit: spool bytes. release takes batches the spool is done with. */
void ps_spool_init(ps_spool *sp, uint64_t limit, void (*release)(void *ud, ps_batch *b), void *ud);

/* Appends a just-sealed batch (sequence order) and charges its memory. */
void ps_spool_push(ps_spool *sp, ps_batch *b);
/* Charges b's memory again (it changed, e.g. once compressed). */
void ps_spool_charge(ps_spool *sp, ps_batch *b);

/* The next batch to write on this connection: the cursor when it is ready,
 * else NULL. */
ps_batch *ps_spool_next(const ps_spool *sp);
/* b (the one ps_spool_next gave) was handed to a write: it is referenced
 * until ps_spool_written, and the cursor moves on. Counts a resend when b
 * was written before. */
void ps_spool_sent(ps_spool *sp, ps_batch *b);
/* A write of b completed (well or not). */
void ps_spool_written(ps_spool *sp, ps_batch *b);

/* Removes every batch up to seq from the head. Returns the batches removed.
 * The caller checks seq against last_sent_seq (an ACK for a batch never
 * sent is the peer's error). */
uint64_t ps_spool_ack(ps_spool *sp, uint64_t seq);
/* New connection: write again from the oldest unacknowledged batch. */
void ps_spool_rewind(ps_spool *sp);

/*
 * spool.dropPolicy "oldest": removes the oldest batch that was never written
 * to any connection (so the receiver cannot have it: a count of what is lost
 * stays exact). each (may be NULL) sees the batch first. Returns the number
 * of packets evicted, 0 if no batch qualified.
 */
uint64_t ps_spool_evict_oldest(ps_spool *sp, void (*each)(void *ud, const ps_batch *b), void *ud);

int ps_spool_full(const ps_spool *sp);
/* True when every pushed batch has been acknowledged or evicted. */
int ps_spool_empty(const ps_spool *sp);
uint64_t ps_spool_last_sent(const ps_spool *sp);
void ps_spool_get_totals(const ps_spool *sp, ps_spool_totals *t);

/* Drops every batch (shutdown): released now unless a write still holds it. */
void ps_spool_clear(ps_spool *sp);

#endif
