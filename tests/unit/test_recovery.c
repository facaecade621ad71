/* Unit tests for receiver/recovery: marker and checkpoint encoding, and the
 * repair of .part files left by a crash (cut back to the last whole batch). */
#include <fcntl.h>
#include <pcap/pcap.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/pcapng.h"
#include "receiver/recovery.h"
#include "testutil.h"

typedef struct seen {
    char id[64];
    uint64_t session, seq;
} seen;

static seen g_seen[16];
static int g_nseen;

static void collect(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    (void)ud;
    assert_true(g_nseen < 16 && id_len < 64);
    memcpy(g_seen[g_nseen].id, id, id_len);
    g_seen[g_nseen].id[id_len] = '\0';
    g_seen[g_nseen].session = session;
    g_seen[g_nseen].seq = seq;
    g_nseen++;
}

/* The last sequence reported for (id, session); fails the test if none. */
static uint64_t seq_of(const char *id, uint64_t session)
{
    for (int i = 0; i < g_nseen; i++)
        if (strcmp(g_seen[i].id, id) == 0 && g_seen[i].session == session)
            return g_seen[i].seq;
    fail_msg("no sequence reported for %s/%llu", id, (unsigned long long)session);
    return 0;
}

/* The custom option's data inside our NRB (see pcapng.c). */
static const uint8_t *nrb_data(const ps_buf *b, size_t *len)
{
    uint32_t type, olen;
    memcpy(&type, b->data, 4);
    assert_int_equal(type, PS_PCAPNG_NRB);
    uint16_t code, ol;
    memcpy(&code, b->data + 12, 2);
    memcpy(&ol, b->data + 14, 2);
    assert_int_equal(code, PS_PCAPNG_OPT_CUSTOM_BIN_NOCOPY);
    memcpy(&olen, b->data + 16, 4);
    assert_int_equal(olen, PS_RECOVERY_PEN);
    *len = ol - 4u;
    return b->data + 20;
}

static void test_marker_and_checkpoint_roundtrip(void **state)
{
    (void)state;
    ps_buf b = PS_BUF_INIT;
    size_t len;
    g_nseen = 0;
    assert_int_equal(ps_recovery_marker(&b, "node-1", 0x1122334455667788ull, 42), 0);
    const uint8_t *d = nrb_data(&b, &len);
    assert_int_equal(ps_recovery_parse(d, len, collect, NULL), 1);
    assert_int_equal(g_nseen, 1);
    assert_string_equal(g_seen[0].id, "node-1");
    assert_true(g_seen[0].session == 0x1122334455667788ull && g_seen[0].seq == 42);
    ps_buf_free(&b);

    ps_recovery_entry e[3] = {{"a", 1, 10}, {"bb", 2, 20}, {"ccc", 3, 30}};
    assert_int_equal(ps_recovery_checkpoint(&b, e, 3), 0);
    d = nrb_data(&b, &len);
    g_nseen = 0;
    assert_int_equal(ps_recovery_parse(d, len, collect, NULL), 1);
    assert_int_equal(g_nseen, 3);
    assert_int_equal(seq_of("bb", 2), 20);
    /* Every strict prefix of the data is malformed, and nothing is reported
     * from a malformed block. */
    for (size_t n = 4; n + 3 < len; n++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, d, n);
        g_nseen = 0;
        assert_int_equal(ps_recovery_parse(copy, n, collect, NULL), -1);
        assert_int_equal(g_nseen, 0);
        free(copy);
    }
    ps_buf_free(&b);
    /* Not ours, and an empty id. */
    assert_int_equal(ps_recovery_parse((const uint8_t *)"XXXXabcdefgh", 12, collect, NULL), 0);
    uint8_t bad[4 + 18] = {'P', 'S', 'B', '1'};
    assert_int_equal(ps_recovery_parse(bad, sizeof bad, collect, NULL), -1);
    assert_int_equal(ps_recovery_marker(&b, "", 1, 1), -1);
    assert_int_equal(b.len, 0);
}

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    return tu_mkdtemp(g_dir, sizeof(g_dir), "recovery");
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(g_dir);
}

static void write_file(const char *name, const ps_buf *b, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b->data, 1, len, f), len);
    fclose(f);
}

static off_t size_of(const char *name)
{
    char path[256];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return stat(path, &sb) == 0 ? sb.st_size : -1;
}

static int count_packets(const char *name)
{
    char path[256], eb[PCAP_ERRBUF_SIZE];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    pcap_t *p = pcap_open_offline(path, eb);
    assert_non_null(p);
    struct pcap_pkthdr *h;
    const u_char *d;
    int n = 0, rc;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1)
        n++;
    assert_int_equal(rc, PCAP_ERROR_BREAK); /* a clean end, not a truncated file */
    pcap_close(p);
    return n;
}

static void add_epbs(ps_buf *b, int n)
{
    uint8_t data[60] = {0};
    for (int i = 0; i < n; i++) {
        data[0] = (uint8_t)i;
        assert_int_equal(ps_pcapng_epb(b, 0, 1000 + (uint64_t)i, 60, 60, data), 0);
    }
}

static void test_repair_pcapng_cuts_to_last_batch(void **state)
{
    (void)state;
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_shb(&b, "test", NULL), 0);
    assert_int_equal(ps_pcapng_idb(&b, 1, 262144, "n1/eth0", NULL), 0);
    add_epbs(&b, 2);
    assert_int_equal(ps_recovery_marker(&b, "n1", 7, 1), 0);
    add_epbs(&b, 3);
    assert_int_equal(ps_recovery_marker(&b, "n1", 7, 2), 0);
    size_t whole = b.len;
    add_epbs(&b, 2); /* batch 3: records on disk, marker never written */
    write_file("cap-20200101T000000Z-000002.pcapng.part", &b, b.len - 30); /* torn block */

    /* An older completed file whose checkpoint knows another sensor. */
    ps_buf old = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_shb(&old, "test", NULL), 0);
    ps_recovery_entry e = {"n2", 9, 5};
    assert_int_equal(ps_recovery_checkpoint(&old, &e, 1), 0);
    write_file("cap-20200101T000000Z-000001.pcapng", &old, old.len);
    /* Not ours: other prefixes and garbage .part files are left alone. */
    write_file("other-20200101T000000Z-000001.pcapng.part", &old, 10);
    write_file("cap-20200101T000000Z-000003.pcapng.part", &old, 7);

    g_nseen = 0;
    ps_recovery_report rep;
    char err[256];
    assert_int_equal(
        ps_recovery_run(g_dir, "cap", PS_FORMAT_PCAPNG, collect, NULL, &rep, err, sizeof err), 0);
    assert_int_equal(rep.repaired, 1);
    assert_int_equal(rep.files_read, 1);
    assert_int_equal(seq_of("n1", 7), 2);
    assert_int_equal(seq_of("n2", 9), 5);
    assert_int_equal(size_of("cap-20200101T000000Z-000002.pcapng.part"), -1);
    /* Cut right after batch 2's marker, then a checkpoint of what it holds. */
    ps_buf cp = PS_BUF_INIT;
    ps_recovery_entry mine = {"n1", 7, 2};
    assert_int_equal(ps_recovery_checkpoint(&cp, &mine, 1), 0);
    assert_int_equal(size_of("cap-20200101T000000Z-000002.pcapng"), (off_t)(whole + cp.len));
    assert_int_equal(count_packets("cap-20200101T000000Z-000002.pcapng"), 5);
    assert_true(size_of("other-20200101T000000Z-000001.pcapng.part") == 10);
    assert_true(size_of("cap-20200101T000000Z-000003.pcapng.part") == 7);

    /* A second start reads the repaired file's new tail: same facts. */
    g_nseen = 0;
    assert_int_equal(
        ps_recovery_run(g_dir, "cap", PS_FORMAT_PCAPNG, collect, NULL, &rep, err, sizeof err), 0);
    assert_int_equal(rep.repaired, 0);
    assert_int_equal(rep.files_read, 2);
    assert_int_equal(seq_of("n1", 7), 2);
    assert_int_equal(seq_of("n2", 9), 5);
    ps_buf_free(&cp);
    ps_buf_free(&old);
    ps_buf_free(&b);
}

/* Recovery reads names by the writer's grammar (filename.h): a perSensor
 * set's files (PREFIX-KEY-...) are covered, a user's file that merely
 * starts with the prefix is not touched, however valid its contents. */
static void test_names_follow_the_grammar(void **state)
{
    (void)state;
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_shb(&b, "test", NULL), 0);
    assert_int_equal(ps_pcapng_idb(&b, 1, 262144, "node-1/eth0", NULL), 0);
    add_epbs(&b, 2);
    assert_int_equal(ps_recovery_marker(&b, "node-1", 3, 4), 0);
    write_file("cap-node-1-20200101T000000Z-000004.pcapng.part", &b, b.len);
    write_file("cap-notes.pcapng.part", &b, b.len);
    ps_buf cp = PS_BUF_INIT;
    ps_recovery_entry e = {"n9", 1, 8};
    assert_int_equal(ps_pcapng_shb(&cp, "test", NULL), 0);
    assert_int_equal(ps_recovery_checkpoint(&cp, &e, 1), 0);
    write_file("cap-notes.pcapng", &cp, cp.len);

    g_nseen = 0;
    ps_recovery_report rep;
    char err[256];
    assert_int_equal(
        ps_recovery_run(g_dir, "cap", PS_FORMAT_PCAPNG, collect, NULL, &rep, err, sizeof err), 0);
    assert_int_equal(rep.repaired, 1);
    assert_int_equal(rep.files_read, 0);
    assert_int_equal(seq_of("node-1", 3), 4);
    assert_int_equal(g_nseen, 1); /* nothing from cap-notes.pcapng */
    assert_int_equal(count_packets("cap-node-1-20200101T000000Z-000004.pcapng"), 2);
    assert_true(size_of("cap-notes.pcapng.part") == (off_t)b.len);
    assert_true(size_of("cap-notes.pcapng") == (off_t)cp.len);
    ps_buf_free(&cp);
    ps_buf_free(&b);
}

static void test_repair_pcap_keeps_whole_records(void **state)
{
    (void)state;
    ps_buf b = PS_BUF_INIT;
    uint8_t data[100] = {1, 2, 3};
    assert_int_equal(ps_pcap_file_header(&b, 1, 262144, 1), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ps_pcap_record(&b, 1, 1000 + (uint64_t)i, 100, 100, data), 0);
    size_t whole = b.len;
    assert_int_equal(ps_pcap_record(&b, 1, 2000, 100, 100, data), 0);
    write_file("cap-20200101T000000Z-000004.pcap.part", &b, whole + 50);
    ps_recovery_report rep;
    char err[256];
    assert_int_equal(
        ps_recovery_run(g_dir, "cap", PS_FORMAT_PCAP_NS, collect, NULL, &rep, err, sizeof err), 0);
    assert_int_equal(rep.repaired, 1);
    assert_int_equal(size_of("cap-20200101T000000Z-000004.pcap"), (off_t)whole);
    assert_int_equal(count_packets("cap-20200101T000000Z-000004.pcap"), 3);
    ps_buf_free(&b);
}

/* Whatever else sits in the output directory under our names: a symlinked
 * ".part" must not make recovery truncate the file it points to (outside the
 * directory), and a FIFO must not hang the receiver's start. */
static void test_recovery_opens_only_regular_files(void **state)
{
    (void)state;
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_shb(&b, "test", NULL), 0);
    assert_int_equal(ps_pcapng_idb(&b, 1, 262144, "n1/eth0", NULL), 0);
    add_epbs(&b, 2);
    assert_int_equal(ps_recovery_marker(&b, "n1", 7, 1), 0);
    add_epbs(&b, 1); /* a torn batch: recovery would cut here */

    char outside[64] = "/tmp/ps-recovery-victim-XXXXXX";
    int vfd = mkstemp(outside);
    assert_true(vfd >= 0);
    assert_int_equal(write(vfd, b.data, b.len), (ssize_t)b.len);
    close(vfd);
    char path[256];
    snprintf(path, sizeof path, "%s/cap-20200101T000000Z-000005.pcapng.part", g_dir);
    assert_int_equal(symlink(outside, path), 0);
    snprintf(path, sizeof path, "%s/cap-20200101T000000Z-000006.pcapng.part", g_dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(path, sizeof path, "%s/cap-20200101T000000Z-000007.pcapng", g_dir);
    assert_int_equal(mkfifo(path, 0600), 0);

    ps_recovery_report rep;
    char err[256];
    assert_int_equal(
        ps_recovery_run(g_dir, "cap", PS_FORMAT_PCAPNG, collect, NULL, &rep, err, sizeof err), 0);
    assert_int_equal(rep.repaired, 0);
    assert_int_equal(rep.files_read, 0);
    struct stat sb;
    assert_int_equal(stat(outside, &sb), 0);
    assert_int_equal(sb.st_size, (off_t)b.len); /* untouched */
    assert_int_equal(size_of("cap-20200101T000000Z-000005.pcapng"), -1);
    snprintf(path, sizeof path, "%s/cap-20200101T000000Z-000005.pcapng.part", g_dir);
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode)); /* left as it was */
    unlink(outside);
    ps_buf_free(&b);
}

/* A checkpoint far past one block's 64 KiB: every entry comes back after a
 * restart, from a completed file and from a repaired .part alike; a damaged
 * part loses only its own entries. */
#define BIG_N 3000
static uint64_t g_big_seq[BIG_N];
static int g_big_bad;

static void collect_big(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    (void)ud;
    unsigned k;
    char buf[64];
    if (id_len >= sizeof buf) {
        g_big_bad++;
        return;
    }
    memcpy(buf, id, id_len);
    buf[id_len] = '\0';
    if (sscanf(buf, "sensor-%u", &k) != 1 || k >= BIG_N || session != k * 7u + 1 ||
        g_big_seq[k] != 0)
        g_big_bad++; /* unknown, or reported twice */
    else
        g_big_seq[k] = seq;
}

static int big_run(ps_recovery_report *rep)
{
    char err[256];
    memset(g_big_seq, 0, sizeof g_big_seq);
    g_big_bad = 0;
    assert_int_equal(
        ps_recovery_run(g_dir, "cap", PS_FORMAT_PCAPNG, collect_big, NULL, rep, err, sizeof err),
        0);
    assert_int_equal(g_big_bad, 0);
    int n = 0;
    for (int k = 0; k < BIG_N; k++)
        if (g_big_seq[k] == (uint64_t)k + 100)
            n++;
    return n;
}

static void test_checkpoint_has_no_size_limit(void **state)
{
    (void)state;
    static char ids[BIG_N][32];
    static ps_recovery_entry e[BIG_N];
    for (int k = 0; k < BIG_N; k++) {
        /* Long ids (~200 bytes would do too; these take ~40 per entry). */
        snprintf(ids[k], sizeof ids[k], "sensor-%d-padding-padding", k);
        e[k] = (ps_recovery_entry){ids[k], (uint64_t)k * 7u + 1, (uint64_t)k + 100};
    }
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_pcapng_shb(&b, "test", NULL), 0);
    size_t head = b.len;
    assert_int_equal(ps_recovery_checkpoint(&b, e, BIG_N), 0);
    assert_true(b.len - head > 2 * 65536); /* several blocks */
    write_file("cap-20200101T000000Z-000001.pcapng", &b, b.len);
    ps_recovery_report rep;
    assert_int_equal(big_run(&rep), BIG_N);
    assert_int_equal(rep.files_read, 1);
    assert_int_equal(rep.entries, BIG_N);

    /* The same facts in a crashed .part (a checkpoint, then a torn batch):
     * repair keeps them and writes them back as a multi-part checkpoint. */
    ps_buf p = PS_BUF_INIT;
    assert_int_equal(ps_buf_append(&p, b.data, b.len), 0);
    add_epbs(&p, 2);
    write_file("cap-20200101T000000Z-000002.pcapng.part", &p, p.len - 10);
    assert_int_equal(big_run(&rep), BIG_N);
    assert_int_equal(rep.repaired, 1);
    assert_int_equal(big_run(&rep), BIG_N);
    assert_int_equal(rep.files_read, 2);
    assert_int_equal(rep.entries, BIG_N); /* each (sensor, session) once */
    char path[256];
    snprintf(path, sizeof path, "%s/cap-20200101T000000Z-000002.pcapng", g_dir);
    assert_int_equal(unlink(path), 0);

    /* A part in the middle damaged: the parts after it still count. */
    uint8_t *mid = b.data + head + 70000; /* inside the second block */
    for (int i = 0; i < 64; i++)
        mid[i] ^= 0x5a;
    write_file("cap-20200101T000000Z-000001.pcapng", &b, b.len);
    int got = big_run(&rep);
    assert_true(got > 0 && got < BIG_N);
    ps_buf_free(&p);
    ps_buf_free(&b);
}

static void test_missing_dir_is_an_error(void **state)
{
    (void)state;
    ps_recovery_report rep;
    char err[256];
    assert_int_equal(ps_recovery_run("/nonexistent/dir", "cap", PS_FORMAT_PCAPNG, collect, NULL,
                                     &rep, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "/nonexistent/dir"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marker_and_checkpoint_roundtrip),
        cmocka_unit_test_setup_teardown(test_repair_pcapng_cuts_to_last_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair_pcap_keeps_whole_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_opens_only_regular_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_follow_the_grammar, setup, teardown),
        cmocka_unit_test(test_missing_dir_is_an_error),
        cmocka_unit_test_setup_teardown(test_checkpoint_has_no_size_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
