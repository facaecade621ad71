/* Unit tests for the sensor's spool: ordering, cumulative acknowledgement,
 * resends after a reconnect, eviction of never-sent batches, memory limit,
 * and when a batch's memory goes back (never while a write holds it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sensor/spool.h"

#define NB 6

typedef struct fixture {
    ps_spool sp;
    ps_batch b[NB]; /* b[i] has seq i + 1, i + 1 records, 100 bytes */
    int released[NB];
} fixture;

static void on_release(void *ud, ps_batch *b)
{
    fixture *f = ud;
    f->released[b - f->b]++;
}

static void setup(fixture *f, uint64_t limit)
{
    memset(f, 0, sizeof(*f));
    ps_spool_init(&f->sp, limit, on_release, f);
    for (int i = 0; i < NB; i++) {
        f->b[i].seq = (uint64_t)i + 1;
        f->b[i].records = (uint32_t)i + 1;
        f->b[i].state = PS_BATCH_READY;
        f->b[i].raw.cap = 100; /* what ps_batch_mem charges */
    }
}

static void push(fixture *f, int n)
{
    for (int i = 0; i < n; i++)
        ps_spool_push(&f->sp, &f->b[i]);
}

/* Writes every ready batch, as the uplink's pump does. */
static int send_all(fixture *f)
{
    int n = 0;
    ps_batch *b;
    while ((b = ps_spool_next(&f->sp))) {
        ps_spool_sent(&f->sp, b);
        n++;
    }
    return n;
}

static void test_ack_in_order(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    push(&f, 4);
    ps_spool_totals t;
    ps_spool_get_totals(&f.sp, &t);
    assert_int_equal(t.batches, 4);
    assert_int_equal(t.bytes, 400);
    assert_int_equal(send_all(&f), 4);
    assert_int_equal(ps_spool_last_sent(&f.sp), 4);
    for (int i = 0; i < 4; i++)
        ps_spool_written(&f.sp, &f.b[i]);
    /* Cumulative: ACK 2 frees 1 and 2, and nothing is released twice. */
    assert_int_equal(ps_spool_ack(&f.sp, 2), 2);
    assert_int_equal(f.released[0], 1);
    assert_int_equal(f.released[1], 1);
    assert_int_equal(f.released[2], 0);
    ps_spool_get_totals(&f.sp, &t);
    assert_int_equal(t.acked_batches, 2);
    assert_int_equal(t.acked_packets, 1 + 2);
    assert_int_equal(t.batches, 2);
    assert_int_equal(t.bytes, 200);
    assert_false(ps_spool_empty(&f.sp));
    assert_int_equal(ps_spool_ack(&f.sp, 2), 0); /* repeated ACK: nothing */
    assert_int_equal(ps_spool_ack(&f.sp, 4), 2);
    assert_true(ps_spool_empty(&f.sp));
    for (int i = 0; i < 4; i++)
        assert_int_equal(f.released[i], 1);
}

/* An ACK can overtake the write completion: memory goes back only once the
 * write no longer references it. */
static void test_release_waits_for_write(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    push(&f, 1);
    send_all(&f);
    ps_spool_ack(&f.sp, 1);
    assert_int_equal(f.released[0], 0);
    ps_spool_written(&f.sp, &f.b[0]);
    assert_int_equal(f.released[0], 1);
}

/* After a reconnect everything unacknowledged goes again, oldest first, and
 * is counted as resent; a batch the receiver had (ACCEPT's last_seq) not. */
static void test_rewind_resends(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    push(&f, 3);
    assert_int_equal(send_all(&f), 3);
    for (int i = 0; i < 3; i++)
        ps_spool_written(&f.sp, &f.b[i]);
    assert_null(ps_spool_next(&f.sp));
    /* Connection lost; the new receiver says it has seq 1. */
    ps_spool_ack(&f.sp, 1);
    ps_spool_rewind(&f.sp);
    assert_ptr_equal(ps_spool_next(&f.sp), &f.b[1]);
    ps_spool_push(&f.sp, &f.b[3]); /* sealed while reconnecting */
    assert_int_equal(send_all(&f), 3);
    ps_spool_totals t;
    ps_spool_get_totals(&f.sp, &t);
    assert_int_equal(t.resent_batches, 2); /* 2 and 3; 4 is new */
    assert_int_equal(ps_spool_last_sent(&f.sp), 4);
}

/* A batch still compressing holds back everything after it: order on the
 * wire is sequence order. */
static void test_next_waits_for_ready(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    f.b[1].state = PS_BATCH_COMPRESSING;
    push(&f, 3);
    assert_int_equal(send_all(&f), 1);
    f.b[1].state = PS_BATCH_READY;
    assert_int_equal(send_all(&f), 2);
}

/* Eviction takes the oldest batch never written to any connection, so the
 * receiver cannot have it and the count of lost packets is exact. */
static void test_evict_oldest_unsent(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    push(&f, 2);
    send_all(&f); /* 1 and 2 are on the wire */
    f.b[2].state = PS_BATCH_COMPRESSING;
    ps_spool_push(&f.sp, &f.b[2]);
    ps_spool_push(&f.sp, &f.b[3]);
    ps_spool_push(&f.sp, &f.b[4]);
    assert_int_equal(ps_spool_evict_oldest(&f.sp, NULL, NULL), 4); /* b[3]: 4 records */
    assert_int_equal(f.released[3], 1);
    assert_int_equal(f.released[2], 0);
    ps_spool_totals t;
    ps_spool_get_totals(&f.sp, &t);
    assert_int_equal(t.evicted_batches, 1);
    assert_int_equal(t.evicted_packets, 4);
    assert_int_equal(t.batches, 4);
    /* The remaining order is intact: 1, 2, 3, 5. */
    ps_spool_rewind(&f.sp);
    f.b[2].state = PS_BATCH_READY;
    ps_batch *b;
    uint64_t want[] = {1, 2, 3, 5};
    for (int i = 0; (b = ps_spool_next(&f.sp)); i++) {
        assert_int_equal(b->seq, want[i]);
        ps_spool_sent(&f.sp, b);
    }
    /* Everything was written once: nothing qualifies any more. */
    assert_int_equal(ps_spool_evict_oldest(&f.sp, NULL, NULL), 0);
}

static void count_each(void *ud, const ps_batch *b)
{
    *(uint64_t *)ud += b->seq;
}

static void test_evict_tail_and_each(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    push(&f, 2);
    uint64_t seen = 0;
    assert_int_equal(ps_spool_evict_oldest(&f.sp, count_each, &seen), 1);
    assert_int_equal(seen, 1);
    assert_int_equal(ps_spool_evict_oldest(&f.sp, count_each, &seen), 2);
    assert_int_equal(seen, 1 + 2);
    assert_true(ps_spool_empty(&f.sp));
    /* The queue is usable again after emptying from the tail. */
    ps_spool_push(&f.sp, &f.b[2]);
    assert_ptr_equal(ps_spool_next(&f.sp), &f.b[2]);
}

static void test_full(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 300);
    push(&f, 2);
    assert_false(ps_spool_full(&f.sp));
    ps_spool_push(&f.sp, &f.b[2]);
    assert_true(ps_spool_full(&f.sp));
    /* Compression grew batch 1: charged again, not twice. */
    f.b[0].comp.cap = 50;
    ps_spool_charge(&f.sp, &f.b[0]);
    ps_spool_totals t;
    ps_spool_get_totals(&f.sp, &t);
    assert_int_equal(t.bytes, 350);
    send_all(&f);
    for (int i = 0; i < 3; i++)
        ps_spool_written(&f.sp, &f.b[i]);
    ps_spool_ack(&f.sp, 1);
    assert_false(ps_spool_full(&f.sp));
    ps_spool_get_totals(&f.sp, &t);
    assert_int_equal(t.bytes, 200);
}

static void test_clear(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1 << 20);
    push(&f, 3);
    ps_spool_sent(&f.sp, ps_spool_next(&f.sp)); /* b[0] held by a write */
    ps_spool_clear(&f.sp);
    assert_true(ps_spool_empty(&f.sp));
    assert_int_equal(f.released[0], 0);
    assert_int_equal(f.released[1], 1);
    assert_int_equal(f.released[2], 1);
    ps_spool_written(&f.sp, &f.b[0]);
    assert_int_equal(f.released[0], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ack_in_order),
        cmocka_unit_test(test_release_waits_for_write),
        cmocka_unit_test(test_rewind_resends),
        cmocka_unit_test(test_next_waits_for_ready),
        cmocka_unit_test(test_evict_oldest_unsent),
        cmocka_unit_test(test_evict_tail_and_each),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
