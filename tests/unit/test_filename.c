/* Unit tests for filename: the capture-file name grammar the writer writes
 * and recovery reads back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "receiver/filename.h"

#define T2020 ((time_t)1577934245) /* 2020-01-02T03:04:05Z */

static void test_format(void **state)
{
    (void)state;
    char name[256];
    assert_int_equal(ps_fname_format(name, sizeof name, "cap", T2020, 7, 1), 0);
    assert_string_equal(name, "cap-20200102T030405Z-000007.pcapng");
    assert_int_equal(ps_fname_format(name, sizeof name, "cap-node_1", T2020, 1234567, 0), 0);
    assert_string_equal(name, "cap-node_1-20200102T030405Z-1234567.pcap");
    /* Exactly fitting, and one byte short. */
    size_t len = strlen("cap-20200102T030405Z-000007.pcapng");
    assert_int_equal(ps_fname_format(name, len + 1, "cap", T2020, 7, 1), 0);
    errno = 0;
    assert_int_equal(ps_fname_format(name, len, "cap", T2020, 7, 1), -1);
    assert_int_equal(errno, ENAMETOOLONG);
}

/* Whatever the writer makes, recovery and the writer's own scan read back. */
static void test_roundtrip(void **state)
{
    (void)state;
    static const uint64_t counters[] = {1, 999999, 1000000, 9999999999999999999ull};
    char name[256], part[262];
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++) {
        for (int ng = 0; ng <= 1; ng++) {
            assert_int_equal(ps_fname_format(name, sizeof name, "run", T2020, counters[i], ng), 0);
            ps_fname f;
            assert_int_equal(ps_fname_parse(name, "run", &f), 0);
            assert_null(f.key);
            assert_true(f.counter == counters[i]);
            assert_int_equal(f.pcapng, ng);
            assert_int_equal(f.part, 0);
            snprintf(part, sizeof part, "%s%s", name, PS_FNAME_PART);
            assert_int_equal(ps_fname_parse(part, "run", &f), 0);
            assert_int_equal(f.part, 1);
            assert_true(f.counter == counters[i]);
        }
    }
}

/* A perSensor set's file: its own prefix sees no KEY; the base prefix
 * (recovery) sees the KEY, even one with '-' and digits in it. */
static void test_key(void **state)
{
    (void)state;
    char *key = ps_fname_key("node-7/eth0:1");
    assert_non_null(key);
    assert_string_equal(key, "node-7_eth0_1");
    char prefix[128], name[256];
    snprintf(prefix, sizeof prefix, "cap-%s", key);
    assert_int_equal(ps_fname_format(name, sizeof name, prefix, T2020, 3, 1), 0);
    ps_fname f;
    assert_int_equal(ps_fname_parse(name, prefix, &f), 0);
    assert_null(f.key);
    assert_int_equal(ps_fname_parse(name, "cap", &f), 0);
    assert_non_null(f.key);
    assert_int_equal(f.key_len, strlen(key));
    assert_memory_equal(f.key, key, f.key_len);
    assert_true(f.counter == 3);
    free(key);

    /* A KEY that looks like a stamp and counter. */
    assert_int_equal(
        ps_fname_parse("cap-20200102T030405Z-1-20200102T030405Z-000002.pcapng", "cap", &f), 0);
    assert_int_equal(f.key_len, strlen("20200102T030405Z-1"));
    assert_true(f.counter == 2);
}

static void test_key_sanitize(void **state)
{
    (void)state;
    char *k = ps_fname_key("");
    assert_string_equal(k, "_");
    free(k);
    k = ps_fname_key("../../etc");
    assert_string_equal(k, ".._.._etc");
    free(k);
    char longid[200];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    k = ps_fname_key(longid);
    assert_int_equal(strlen(k), PS_FNAME_KEY_MAX);
    free(k);
}

static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "cap",
        "cap-",
        "cap.pcapng",
        "capx-20200102T030405Z-000001.pcapng",    /* another prefix */
        "cap_20200102T030405Z-000001.pcapng",     /* no dash after the prefix */
        "cap-20200102T030405Z-000001.pcapng.tmp", /* unknown suffix */
        "cap-20200102T030405Z-000001.txt",
        "cap-20200102T030405Z-.pcapng",                     /* no counter */
        "cap-20200102T030405Z000001.pcapng",                /* no dash before it */
        "cap-2020010T030405Z-000001.pcapng",                /* short stamp */
        "cap-20200102X030405Z-000001.pcapng",               /* stamp shape */
        "cap-20200102T030405-000001.pcapng",                /* no Z */
        "cap-20200102T030405Z-00000000000000000001.pcapng", /* 20 digits */
        "cap--20200102T030405Z-000001.pcapng",              /* empty KEY */
        "cap-a b-20200102T030405Z-000001.pcapng",           /* KEY alphabet */
        "cap-x20200102T030405Z-000001.pcapng",              /* KEY without its dash */
        "cap-20200102T030405Z-000001.pcap.pcapng",
        "cap-20200102T030405Z-000001.pcapng.part.part",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ps_fname f;
        if (ps_fname_parse(bad[i], "cap", &f) == 0)
            fail_msg("accepted %s", bad[i]);
    }
    /* 19 digits are fine; a KEY of 64 bytes is, 65 is not. */
    ps_fname f;
    assert_int_equal(ps_fname_parse("cap-20200102T030405Z-9999999999999999999.pcap", "cap", &f), 0);
    char name[256];
    snprintf(name, sizeof name, "cap-%s-20200102T030405Z-000001.pcapng",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(ps_fname_parse(name, "cap", &f), 0);
    snprintf(name, sizeof name, "cap-%s-20200102T030405Z-000001.pcapng",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(ps_fname_parse(name, "cap", &f), -1);
}

/* The names the receiver's HTTP API lists and serves are exactly the
 * grammar's: nothing that could leave the directory or name another file. */
static void test_served_names(void **state)
{
    (void)state;
    ps_fname f;
    const char *p = "packetstreamer";
    assert_int_equal(ps_fname_parse("packetstreamer-20261126T085050Z-000001.pcapng", p, &f), 0);
    assert_int_equal(ps_fname_parse("packetstreamer-node-1-20261126T085050Z-000001.pcap", p, &f),
                     0);
    assert_int_equal(ps_fname_parse("packetstreamer-20261126T085050Z-000002.pcapng.part", p, &f),
                     0);
    static const char *const bad[] = {
        "",
        "../packetstreamer-1.pcapng",
        "packetstreamer-..pcapng",
        "packetstreamer-/../../etc/passwd",
        "/etc/passwd",
        "/packetstreamer-1.pcapng",
        "packetstreamer-1.pcapng/",
        "..\\packetstreamer-1.pcapng",
        "packetstreamer-1\\x.pcapng",
        "packetstreamer-%2e%2e.pcapng",
        "packetstreamer-1.pcapng%00.txt",
        ".packetstreamer-1.pcapng",
        "packetstreamer-1.txt",
        "packetstreamer.pcapng",
        "other-20261126T085050Z-000001.pcapng",
        "packetstreamerx-1.pcapng",
        "packetstreamer-1 .pcapng",
        "packetstreamer-1.pcapng.part.part",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ps_fname_parse(bad[i], p, &f) == 0)
            fail_msg("accepted '%s'", bad[i]);
    }
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname, "packetstreamer-", 15);
    strcpy(longname + 290, ".pcapng");
    assert_int_equal(ps_fname_parse(longname, p, &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),  cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_key),     cmocka_unit_test(test_key_sanitize),
        cmocka_unit_test(test_rejects), cmocka_unit_test(test_served_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
