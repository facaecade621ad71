/* Unit tests for upload: what is pending at open (the directory against the
 * journal of confirmed uploads), the journal's compaction, deleteLocal's
 * deletion of files confirmed before a crash, queue deduplication, and that
 * nothing is deleted or confirmed while the bucket cannot be reached. The
 * uploads themselves are tested against a real S3 server in
 * tests/integration/test_s3.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "receiver/upload.h"
#include "testutil.h"

#define NAME(n) "cap-20200102T030405Z-00000" #n ".pcapng"

typedef struct fixture {
    char dir[256];
    char journal[512];
} fixture;

static void write_file(const char *dir, const char *name, size_t size)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < size; i++)
        fputc('x', f);
    fclose(f);
}

static int exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (!fx || tu_mkdtemp(fx->dir, sizeof(fx->dir), "upload") != 0)
        return -1;
    snprintf(fx->journal, sizeof(fx->journal), "%s/.cap.s3-journal", fx->dir);
    write_file(fx->dir, NAME(1), 10);
    write_file(fx->dir, NAME(2), 20);
    write_file(fx->dir, NAME(3), 30);
    write_file(fx->dir, NAME(4) ".part", 40); /* still being written */
    write_file(fx->dir, "notes.txt", 5);      /* not a capture */
    FILE *j = fopen(fx->journal, "w");
    if (!j)
        return -1;
    fprintf(j, "%s\t10\ts3://bkt/pre/%s\n", NAME(1), NAME(1)); /* confirmed */
    fprintf(j, "%s\t99\ts3://bkt/pre/%s\n", NAME(2), NAME(2)); /* another size */
    fprintf(j, "%s\t30\ts3://old/pre/%s\n", NAME(3), NAME(3)); /* another bucket */
    fprintf(j, "%s\t5\ts3://bkt/pre/%s\n", NAME(9), NAME(9));  /* file gone */
    fprintf(j, "%s\t10", NAME(3));                             /* torn by a crash */
    fclose(j);
    /* refused at once: nothing listens on port 1 */
    setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    tu_rm_rf(fx->dir);
    free(fx);
    return 0;
}

static ps_upload *open_upload(fixture *fx, int delete_local)
{
    ps_upload_opts o = {.dir = fx->dir,
                        .prefix = "cap",
                        .key_prefix = "pre/",
                        .s3 = {.endpoint = "http://127.0.0.1:1",
                               .region = "us-east-1",
                               .bucket = "bkt",
                               .path_style = 1,
                               .part_size = 5u << 20},
                        .delete_local = delete_local,
                        .retry_max_sec = 1};
    ps_upload *u = NULL;
    char err[256] = "";
    if (ps_upload_open(&u, &o, err, sizeof(err)) != 0)
        fail_msg("ps_upload_open: %s", err);
    return u;
}

static char *journal_text(const fixture *fx)
{
    size_t len = 0;
    char *t = tu_slurp(fx->journal, &len);
    assert_non_null(t);
    char *z = realloc(t, len + 1);
    assert_non_null(z);
    z[len] = '\0';
    return z;
}

static void test_pending_from_directory_and_journal(void **state)
{
    fixture *fx = *state;
    ps_upload *u = open_upload(fx, 0);
    ps_upload_stats st;
    ps_upload_get_stats(u, &st);
    /* 2 (wrong size) and 3 (other bucket); not 1 (confirmed), not the
     * .part, not notes.txt */
    assert_int_equal(st.pending, 2);
    /* a file already queued is not queued twice; a new one is */
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", fx->dir, NAME(3));
    ps_upload_file_closed(u, path);
    ps_upload_get_stats(u, &st);
    assert_int_equal(st.pending, 2);
    write_file(fx->dir, NAME(5), 50);
    snprintf(path, sizeof(path), "%s/%s", fx->dir, NAME(5));
    ps_upload_file_closed(u, path);
    ps_upload_get_stats(u, &st);
    assert_int_equal(st.pending, 3);
    /* the bucket refuses connections: attempts fail, nothing is confirmed */
    for (int i = 0; i < 100 && st.failed == 0; i++) {
        usleep(20000);
        ps_upload_get_stats(u, &st);
    }
    assert_true(st.failed >= 1);
    assert_int_equal(st.uploaded, 0);
    assert_int_equal(st.pending, 3);
    ps_upload_free(u);
    /* compacted: only the confirmed line is left */
    char *j = journal_text(fx);
    char want[256];
    snprintf(want, sizeof(want), "%s\t10\ts3://bkt/pre/%s\n", NAME(1), NAME(1));
    assert_string_equal(j, want);
    free(j);
    for (int n = 1; n <= 3; n++) {
        char name[64];
        snprintf(name, sizeof(name), "cap-20200102T030405Z-00000%d.pcapng", n);
        assert_true(exists(fx->dir, name));
    }
}

static void test_delete_local_finishes_confirmed_deletes(void **state)
{
    fixture *fx = *state;
    ps_upload *u = open_upload(fx, 1);
    ps_upload_stats st;
    ps_upload_get_stats(u, &st);
    assert_int_equal(st.pending, 2);
    ps_upload_free(u);
    /* confirmed before a crash: deleted now; the unconfirmed stay */
    assert_false(exists(fx->dir, NAME(1)));
    assert_true(exists(fx->dir, NAME(2)));
    assert_true(exists(fx->dir, NAME(3)));
    assert_true(exists(fx->dir, NAME(4) ".part"));
    char *j = journal_text(fx);
    assert_string_equal(j, ""); /* nothing left to remember */
    free(j);
}

static void test_unreadable_directory(void **state)
{
    (void)state;
    ps_upload_opts o = {.dir = "/nonexistent/ps-upload",
                        .prefix = "cap",
                        .s3 = {.endpoint = "http://127.0.0.1:1", .bucket = "bkt"}};
    ps_upload *u = NULL;
    char err[256] = "";
    assert_int_not_equal(ps_upload_open(&u, &o, err, sizeof(err)), 0);
    assert_null(u);
    assert_non_null(strstr(err, "/nonexistent/ps-upload"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pending_from_directory_and_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_local_finishes_confirmed_deletes, setup,
                                        teardown),
        cmocka_unit_test(test_unreadable_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
