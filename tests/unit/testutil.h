/*
 * testutil: the helpers more than one unit test needs, kept here once
 * instead of a copy per test file: deterministic random data, exact-size
 * copies, reading a whole file, a temporary directory made and removed, and
 * running a libuv loop for a while or until a flag is reached.
 *
 * Include after <cmocka.h>: failures are cmocka assertions. Every helper is
 * `static inline` so a test that uses only some of them still builds with
 * -Werror (no unused-function warning). Names start with tu_.
 */
#ifndef PS_TESTUTIL_H
#define PS_TESTUTIL_H

#include <ftw.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

/* ---- random data ----------------------------------------------------------- */

/* xorshift64*: deterministic, so a failure reproduces from its seed. */
static inline uint64_t tu_rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* n pseudo-random bytes, the same for the same seed (any seed, 0 too). */
static inline void tu_fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(tu_rng_next(&s) >> 56);
}

/* A malloc'd copy of exactly n bytes, so ASan catches a read past the end. */
static inline uint8_t *tu_dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n)
        memcpy(d, p, n);
    return d;
}

/* ---- files ----------------------------------------------------------------- */

/* The whole file, malloc'd and NUL-terminated (so text can be used as a
 * string); its length without the NUL in *len when len is not NULL. */
static inline void *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    assert_int_equal(ferror(f), 0);
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Makes /tmp/ps-test-<name>-XXXXXX into out (n bytes). Returns 0, or -1 if
 * it could not (a cmocka setup returns that as its failure). */
static inline int tu_mkdtemp(char *out, size_t n, const char *name)
{
    int w = snprintf(out, n, "/tmp/ps-test-%s-XXXXXX", name);
    if (w < 0 || (size_t)w >= n)
        return -1;
    return mkdtemp(out) ? 0 : -1;
}

static inline int tu_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Removes path and everything in it. Returns 0 or -1. */
static inline int tu_rm_rf(const char *path)
{
    return nftw(path, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- libuv loop ------------------------------------------------------------ */

static inline void tu_on_stop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs loop for ms milliseconds of wall time, then returns with the loop's
 * other handles as they are (its own timer closed). */
static inline void tu_run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    assert_int_equal(uv_timer_init(loop, &t), 0);
    assert_int_equal(uv_timer_start(&t, tu_on_stop, ms, 0), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* A deadline timer's callback: sets the int its data points at. */
static inline void tu_on_deadline(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Starts deadline (an initialised timer the caller owns and closes) so that
 * *expired turns 1 after ms; the caller steps the loop while it is 0. */
static inline void tu_deadline_start(uv_timer_t *deadline, int *expired, uint64_t ms)
{
    *expired = 0;
    deadline->data = expired;
    assert_int_equal(uv_timer_start(deadline, tu_on_deadline, ms, 0), 0);
}

/* Steps the deadline's loop until *flag reaches want; fails the test if ms
 * pass first. */
static inline void tu_run_until(uv_timer_t *deadline, const int *flag, int want, uint64_t ms)
{
    int expired;
    tu_deadline_start(deadline, &expired, ms);
    while (*flag < want && !expired)
        uv_run(deadline->loop, UV_RUN_ONCE);
    uv_timer_stop(deadline);
    assert_false(expired);
}

/* ---- callbacks ------------------------------------------------------------- */

struct ps_batch;

/* A batcher on_sealed for tests that do not look at sealed batches. */
static inline void tu_batch_ignore(void *ud, struct ps_batch *batch)
{
    (void)ud;
    (void)batch;
}

#endif
