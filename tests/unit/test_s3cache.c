/* Unit tests for s3cache: the bounded on-disk cache of bucket objects that
 * the extraction API reads. What matters to a user: the directory never
 * holds more than the limit, objects a running query holds are never
 * deleted, the least recently used go first, and a restart finds what was
 * there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "receiver/s3cache.h"
#include "testutil.h"

typedef struct filler {
    size_t len;
    uint8_t byte;
    int calls;
    int fail; /* return this code instead of writing */
    size_t short_by;
} filler;

static int fill(void *ud, int fd, char *err, size_t errlen)
{
    filler *f = ud;
    f->calls++;
    if (f->fail) {
        snprintf(err, errlen, "the bucket did not answer");
        return f->fail;
    }
    uint8_t buf[4096];
    memset(buf, f->byte, sizeof(buf));
    size_t left = f->len - f->short_by;
    while (left) {
        size_t n = left < sizeof(buf) ? left : sizeof(buf);
        if (write(fd, buf, n) != (ssize_t)n)
            return -1;
        left -= n;
    }
    return 0;
}

/* Bytes of the regular files directly in dir (what a user's du sees). */
static uint64_t dir_bytes(const char *dir, int *files)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t total = 0;
    *files = 0;
    while (d && (e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
            total += (uint64_t)st.st_size;
            (*files)++;
        }
    }
    if (d)
        closedir(d);
    return total;
}

static int exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof(p), "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < sizeof(p));
    return access(p, F_OK) == 0;
}

static int acq(ps_s3cache *c, const char *name, filler *f)
{
    char path[PATH_MAX], err[512];
    return ps_s3cache_acquire(c, name, f->len, fill, f, path, sizeof(path), NULL, err, sizeof(err));
}

static void test_lru_bound_and_held(void **state)
{
    (void)state;
    char dir[PATH_MAX], sub[PATH_MAX + 16], err[512], path[PATH_MAX];
    assert_int_equal(tu_mkdtemp(dir, sizeof(dir), "s3cache"), 0);
    snprintf(sub, sizeof(sub), "%s/c", dir);
    ps_s3cache *c = NULL;
    assert_int_equal(ps_s3cache_open(&c, sub, 100000, err, sizeof(err)), 0);
    filler a = {.len = 40000, .byte = 'a'}, b = {.len = 40000, .byte = 'b'},
           d = {.len = 40000, .byte = 'd'};
    uint64_t got = 0;
    assert_int_equal(ps_s3cache_acquire(c, "a.pcapng", a.len, fill, &a, path, sizeof(path), &got,
                                        err, sizeof(err)),
                     0);
    assert_int_equal(got, 40000);
    size_t len = 0;
    uint8_t *body = tu_slurp(path, &len);
    assert_non_null(body);
    assert_int_equal(len, 40000);
    assert_int_equal(body[0], 'a');
    free(body);
    assert_int_equal(acq(c, "rx-b@b.pcapng", &b), 0);
    /* present: no second download */
    assert_int_equal(ps_s3cache_acquire(c, "a.pcapng", a.len, fill, &a, path, sizeof(path), &got,
                                        err, sizeof(err)),
                     0);
    assert_int_equal(got, 0);
    assert_int_equal(a.calls, 1);
    ps_s3cache_release(c, "a.pcapng");
    ps_s3cache_release(c, "a.pcapng");
    /* a and b held by nobody? b still held: d evicts a (not held), not b */
    assert_int_equal(acq(c, "d.pcapng", &d), 0);
    assert_false(exists(sub, "a.pcapng"));
    assert_true(exists(sub, "rx-b@b.pcapng"));
    assert_int_equal(ps_s3cache_bytes(c), 80000);
    /* every entry held: no room, nothing deleted */
    filler e = {.len = 40000, .byte = 'e'};
    assert_int_equal(acq(c, "e.pcapng", &e), PS_S3CACHE_E_FULL);
    assert_int_equal(e.calls, 0);
    assert_true(exists(sub, "rx-b@b.pcapng") && exists(sub, "d.pcapng"));
    /* released: the least recently used (b, acquired before d) goes first */
    ps_s3cache_release(c, "rx-b@b.pcapng");
    ps_s3cache_release(c, "d.pcapng");
    assert_int_equal(acq(c, "e.pcapng", &e), 0);
    assert_false(exists(sub, "rx-b@b.pcapng"));
    assert_true(exists(sub, "d.pcapng"));
    ps_s3cache_release(c, "e.pcapng");
    /* larger than the whole cache */
    filler big = {.len = 100001, .byte = 'x'};
    assert_int_equal(acq(c, "big.pcapng", &big), PS_S3CACHE_E_TOOBIG);
    assert_int_equal(big.calls, 0);
    /* a failed or short download leaves nothing behind */
    filler bad = {.len = 1000, .fail = -7};
    assert_int_equal(acq(c, "bad.pcapng", &bad), -7);
    filler shrt = {.len = 1000, .short_by = 10, .byte = 's'};
    assert_int_equal(acq(c, "short.pcapng", &shrt), -1);
    assert_int_equal(ps_s3cache_bytes(c), 80000);
    int files = 0;
    assert_int_equal(dir_bytes(sub, &files), 80000);
    assert_int_equal(files, 2);
    /* not a cache name: refused before the file system */
    assert_int_equal(acq(c, "../x", &a), -1);
    assert_int_equal(acq(c, ".hidden", &a), -1);
    ps_s3cache_free(c);

    /* a restart with a lower limit: files taken in, the oldest deleted to fit */
    int fd = open(strcat(strcpy(path, sub), "/.x.pcapng.tmp1.1"), O_CREAT | O_WRONLY, 0640);
    assert_true(fd >= 0);
    close(fd);
    struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    assert_int_equal(utimensat(AT_FDCWD, strcat(strcpy(path, sub), "/d.pcapng"), old, 0), 0);
    assert_int_equal(ps_s3cache_open(&c, sub, 50000, err, sizeof(err)), 0);
    assert_int_equal(ps_s3cache_bytes(c), 40000);
    assert_false(exists(sub, "d.pcapng"));
    assert_true(exists(sub, "e.pcapng"));
    assert_false(exists(sub, ".x.pcapng.tmp1.1"));
    assert_int_equal(ps_s3cache_acquire(c, "e.pcapng", e.len, fill, &e, path, sizeof(path), &got,
                                        err, sizeof(err)),
                     0);
    assert_int_equal(got, 0);
    ps_s3cache_release(c, "e.pcapng");
    ps_s3cache_free(c);
    tu_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru_bound_and_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
