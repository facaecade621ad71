/*
 * spool: an ordered, bounded queue of batches awaiting acknowledgement (see
 * spool.h). A singly linked list: batches arrive in sequence order and
 * leave from the head (ACK), except evictions, which take the oldest batch
 * never written, somewhere past the written ones.
 */
#include "spool.h"

#include <string.h>

void ps_spool_init(ps_spool *sp, uint64_t limit, void (*release)(void *ud, ps_batch *b), void *ud)
{
    memset(sp, 0, sizeof(*sp));
    sp->limit = limit;
    sp->release = release;
    sp->ud = ud;
}

void ps_spool_charge(ps_spool *sp, ps_batch *b)
{
    size_t mem = ps_batch_mem(b);
    sp->totals.bytes = sp->totals.bytes - b->spool_mem + mem;
    b->spool_mem = mem;
}

void ps_spool_push(ps_spool *sp, ps_batch *b)
{
    b->next = NULL;
    if (sp->tail)
        sp->tail->next = b;
    else
        sp->head = b;
    sp->tail = b;
    if (!sp->cursor)
        sp->cursor = b;
    sp->totals.batches++;
    ps_spool_charge(sp, b);
}

ps_batch *ps_spool_next(const ps_spool *sp)
{
    return sp->cursor && sp->cursor->state == PS_BATCH_READY ? sp->cursor : NULL;
}

void ps_spool_sent(ps_spool *sp, ps_batch *b)
{
    b->writes++;
    if (b->seq <= sp->last_sent_seq)
        sp->totals.resent_batches++;
    else
        sp->last_sent_seq = b->seq;
    sp->cursor = b->next;
}

void ps_spool_written(ps_spool *sp, ps_batch *b)
{
    b->writes--;
    if (b->acked && b->writes == 0)
        sp->release(sp->ud, b);
}

/* Takes b (after prev, NULL if b is the head) out of the queue for good:
 * acknowledged or evicted. */
static void spool_remove(ps_spool *sp, ps_batch *prev, ps_batch *b)
{
    if (prev)
        prev->next = b->next;
    else
        sp->head = b->next;
    if (sp->tail == b)
        sp->tail = prev;
    if (sp->cursor == b)
        sp->cursor = b->next;
    sp->totals.bytes -= b->spool_mem;
    sp->totals.batches--;
    b->acked = 1;
    if (b->writes == 0)
        sp->release(sp->ud, b);
}

uint64_t ps_spool_ack(ps_spool *sp, uint64_t seq)
{
    uint64_t n = 0;
    while (sp->head && sp->head->seq <= seq) {
        sp->totals.acked_batches++;
        sp->totals.acked_packets += sp->head->records;
        spool_remove(sp, NULL, sp->head);
        n++;
    }
    return n;
}

void ps_spool_rewind(ps_spool *sp)
{
    sp->cursor = sp->head;
}

uint64_t ps_spool_evict_oldest(ps_spool *sp, void (*each)(void *ud, const ps_batch *b), void *ud)
{
    /* Never-written batches are the tail of the queue: seq > last_sent_seq. */
    ps_batch *prev = NULL, *b = sp->head;
    while (b && (b->seq <= sp->last_sent_seq || b->state != PS_BATCH_READY || b->writes)) {
        prev = b;
        b = b->next;
    }
    if (!b)
        return 0;
    if (each)
        each(ud, b);
    uint64_t n = b->records;
    sp->totals.evicted_batches++;
    sp->totals.evicted_packets += n;
    spool_remove(sp, prev, b);
    return n;
}

int ps_spool_full(const ps_spool *sp)
{
    return sp->totals.bytes >= sp->limit;
}

int ps_spool_empty(const ps_spool *sp)
{
    return sp->head == NULL;
}

uint64_t ps_spool_last_sent(const ps_spool *sp)
{
    return sp->last_sent_seq;
}

void ps_spool_get_totals(const ps_spool *sp, ps_spool_totals *t)
{
    *t = sp->totals;
}

void ps_spool_clear(ps_spool *sp)
{
    while (sp->head) {
        ps_batch *b = sp->head;
        sp->head = b->next;
        b->acked = 1;
        if (b->writes == 0)
            sp->release(sp->ud, b);
    }
    sp->tail = sp->cursor = NULL;
}
