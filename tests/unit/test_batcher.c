/* Unit tests for sensor/batcher: records land in sealed batches byte for
 * byte; adaptive compression stops paying for a codec that does not shrink
 * the data, probes one batch at a time with a doubling stored run, and
 * resumes when the data compresses again, and never queues more than the
 * workers can take; released batches are reused and
 * charge the spool what they hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sensor/batcher.h"
#include "testutil.h"

#define BLOCK (16 * 1024)
#define PKT 1000

typedef struct ctx {
    uv_loop_t loop;
    ps_batcher *b;
    int ready, compressed; /* batches ready, of which sent compressed */
    ps_batch *seen[8];     /* distinct batch objects handed out */
    int nseen;
} ctx;

static void on_ready(void *ud, ps_batch *batch)
{
    ctx *c = ud;
    c->ready++;
    if (batch->codec != PS_CODEC_NONE)
        c->compressed++;
    int known = 0;
    for (int i = 0; i < c->nseen; i++)
        known |= c->seen[i] == batch;
    if (!known && c->nseen < 8)
        c->seen[c->nseen++] = batch;
    ps_batcher_release(c->b, batch);
}

static void setup_ctx_opts(ctx *c, ps_codec codec, int store_when_busy)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(uv_loop_init(&c->loop), 0);
    ps_batcher_opts o = {.codec = codec,
                         .block_bytes = BLOCK,
                         .wait_ms = 1000,
                         .pool_bytes = 1 << 20,
                         .store_when_busy = store_when_busy,
                         .on_sealed = tu_batch_ignore,
                         .on_ready = on_ready,
                         .ud = c};
    c->b = ps_batcher_new(&c->loop, &o);
    assert_non_null(c->b);
}

static void setup_ctx(ctx *c, ps_codec codec)
{
    setup_ctx_opts(c, codec, 1);
}

static void teardown_ctx(ctx *c)
{
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(ps_batcher_busy(c->b), 0);
    ps_batcher_free(c->b);
    assert_int_equal(uv_loop_close(&c->loop), 0);
}

/* Fills one batch of packets: "poor" ones compress by about 1 % (random
 * bytes behind a few zero bytes), "good" ones by far more than 3 %. */
static void fill(ctx *c, int good, uint64_t *seed)
{
    uint8_t pkt[PKT];
    for (int n = 0; n < BLOCK / PKT + 1; n++) {
        for (size_t i = 0; i < sizeof(pkt); i++)
            pkt[i] = good ? (uint8_t) "abcdefgh"[i % 8] : (uint8_t)(tu_rng_next(seed) >> 56);
        memset(pkt, 0, 12);
        assert_int_equal(ps_batcher_add(c->b, 0, 1, PKT, PKT, pkt), 0);
    }
}

/* Seals batches one at a time, each compression result known before the
 * next batch (the loop runs in between). Returns how many were compressed. */
static int run_batches(ctx *c, int n, int good, uint64_t *seed)
{
    int before = c->compressed;
    for (int i = 0; i < n; i++) {
        fill(c, good, seed);
        uv_run(&c->loop, UV_RUN_DEFAULT);
    }
    return c->compressed - before;
}

static void poor_data_is_probed_with_doubling_runs(void **state)
{
    (void)state;
    ctx c;
    uint64_t seed = 1;
    setup_ctx(&c, PS_CODEC_LZ4);
    /* Tried: batch 1, then probes after stored runs of 16, 32, 64, 128, 256,
     * 256: batches 1, 18, 51, 116, 245, 502, 759. */
    assert_int_equal(run_batches(&c, 1000, 0, &seed), 7);
    ps_batcher_totals t;
    ps_batcher_get_totals(c.b, &t);
    assert_int_equal(t.batches, 1000);
    assert_int_equal(t.stored_batches, 1000 - 7);
    assert_int_equal(c.ready, 1000);
    teardown_ctx(&c);
}

static void batches_behind_a_probe_go_stored(void **state)
{
    (void)state;
    ctx c;
    uint64_t seed = 2;
    setup_ctx(&c, PS_CODEC_LZ4);
    assert_int_equal(run_batches(&c, 17, 0, &seed), 1); /* distrust, 16 stored */
    /* The next batch is the probe; ten more sealed while it is on a worker
     * go out stored instead of joining it. */
    for (int i = 0; i < 11; i++)
        fill(&c, 0, &seed);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.compressed, 2);
    assert_int_equal(c.ready, 28);
    teardown_ctx(&c);
}

static void saturated_workers_send_stored(void **state)
{
    (void)state;
    ctx c;
    uint64_t seed = 6;
    setup_ctx(&c, PS_CODEC_LZ4);
    /* Ten compressible batches sealed before any compression completes:
     * four go to the workers, the rest out stored instead of queueing. */
    for (int i = 0; i < 10; i++)
        fill(&c, 1, &seed);
    assert_int_equal(ps_batcher_busy(c.b), 4);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.compressed, 4);
    assert_int_equal(c.ready, 10);
    /* and with the workers free again, compression goes on */
    assert_int_equal(run_batches(&c, 5, 1, &seed), 5);
    teardown_ctx(&c);
}

static void offline_reader_queues_for_the_codec(void **state)
{
    (void)state;
    ctx c;
    uint64_t seed = 7;
    setup_ctx_opts(&c, PS_CODEC_LZ4, 0);
    /* Without store_when_busy every batch waits for its turn on a worker. */
    for (int i = 0; i < 10; i++)
        fill(&c, 1, &seed);
    assert_int_equal(ps_batcher_busy(c.b), 10);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.compressed, 10);
    teardown_ctx(&c);
}

static void compression_resumes_when_data_shrinks_again(void **state)
{
    (void)state;
    ctx c;
    uint64_t seed = 3;
    setup_ctx(&c, PS_CODEC_LZ4);
    assert_int_equal(run_batches(&c, 20, 0, &seed), 2);
    /* Stored until the next probe (after a run of 32 from batch 18), which
     * shrinks: from then on every batch is compressed. */
    int n = run_batches(&c, 100, 1, &seed);
    assert_int_equal(n, 100 - (50 - 20));
    teardown_ctx(&c);
}

static void codec_none_never_compresses(void **state)
{
    (void)state;
    ctx c;
    uint64_t seed = 4;
    setup_ctx(&c, PS_CODEC_NONE);
    assert_int_equal(run_batches(&c, 10, 1, &seed), 0);
    ps_batcher_totals t;
    ps_batcher_get_totals(c.b, &t);
    assert_int_equal(t.stored_batches, 0); /* stored counts only a codec not used */
    teardown_ctx(&c);
}

static void released_batches_are_reused(void **state)
{
    (void)state;
    ctx c;
    uint64_t seed = 5;
    setup_ctx(&c, PS_CODEC_NONE);
    run_batches(&c, 50, 1, &seed);
    /* One batch at a time is in use, so one object serves them all. */
    assert_int_equal(c.nseen, 1);
    /* The spool charges what a batch holds: the block and a little slack,
     * not a power of two twice its size. */
    assert_int_equal(ps_batch_mem(c.seen[0]), BLOCK + PS_WIRE_REC_HDR_LEN + 2048);
    teardown_ctx(&c);
}

static void records_are_copied_byte_for_byte(void **state)
{
    (void)state;
    ctx c;
    setup_ctx(&c, PS_CODEC_NONE);
    uint8_t pkt[300];
    for (size_t i = 0; i < sizeof(pkt); i++)
        pkt[i] = (uint8_t)(i * 7);
    assert_int_equal(ps_batcher_add(c.b, 3, 123456789, 300, 1500, pkt), 0);
    assert_int_equal(ps_batcher_add(c.b, 4, 987654321, 20, 20, pkt + 100), 0);
    ps_batcher_flush(c.b);
    assert_int_equal(c.ready, 1);
    /* on_ready released it to the pool; its buffer is intact until reused */
    ps_batch *batch = c.seen[0];
    ps_record_iter it;
    ps_record_iter_init(&it, batch->raw.data, batch->raw.len);
    ps_record r;
    assert_int_equal(ps_record_iter_next(&it, &r), PS_WIRE_OK);
    assert_int_equal(r.iface, 3);
    assert_int_equal(r.ts_ns, 123456789);
    assert_int_equal(r.caplen, 300);
    assert_int_equal(r.origlen, 1500);
    assert_memory_equal(r.data, pkt, 300);
    assert_int_equal(ps_record_iter_next(&it, &r), PS_WIRE_OK);
    assert_int_equal(r.iface, 4);
    assert_memory_equal(r.data, pkt + 100, 20);
    assert_int_equal(ps_record_iter_next(&it, &r), PS_WIRE_NEED_MORE);
    teardown_ctx(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(poor_data_is_probed_with_doubling_runs),
        cmocka_unit_test(batches_behind_a_probe_go_stored),
        cmocka_unit_test(saturated_workers_send_stored),
        cmocka_unit_test(offline_reader_queues_for_the_codec),
        cmocka_unit_test(compression_resumes_when_data_shrinks_again),
        cmocka_unit_test(codec_none_never_compresses),
        cmocka_unit_test(released_batches_are_reused),
        cmocka_unit_test(records_are_copied_byte_for_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
