/*
 * home: rendezvous hashing over a receiver tier, with a sticky home. The
 * properties a tier relies on: sensors spread over the receivers, a removed
 * receiver moves only its own sensors, an added one moves none that have a
 * home, and a home that keeps failing is left.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sensor/home.h"

#define MAX_ADDRS 8

typedef struct addrs {
    struct addrinfo ai[MAX_ADDRS];
    struct sockaddr_in sa[MAX_ADDRS];
    int n;
} addrs;

/* An addrinfo list of 10.0.0.N for each N in list (0-terminated). */
static const struct addrinfo *mk(addrs *a, const int *list)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; list[i] && i < MAX_ADDRS; i++, a->n++) {
        a->sa[i].sin_family = AF_INET;
        a->sa[i].sin_port = htons(8081);
        char t[32];
        snprintf(t, sizeof(t), "10.0.0.%d", list[i]);
        inet_pton(AF_INET, t, &a->sa[i].sin_addr);
        a->ai[i].ai_family = AF_INET;
        a->ai[i].ai_addr = (struct sockaddr *)&a->sa[i];
        a->ai[i].ai_addrlen = sizeof(a->sa[i]);
        if (i)
            a->ai[i - 1].ai_next = &a->ai[i];
    }
    return a->n ? &a->ai[0] : NULL;
}

static int last_octet(const struct addrinfo *ai)
{
    return ntohl(((const struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) & 0xff;
}

/* A new sensor picks the highest weight, the same every time. */
static void test_pick_is_highest_weight(void **state)
{
    (void)state;
    addrs a;
    const struct addrinfo *res = mk(&a, (const int[]){1, 2, 3, 0});
    ps_home h;
    memset(&h, 0, sizeof(h));
    for (int s = 0; s < 50; s++) {
        char id[32];
        snprintf(id, sizeof(id), "node-%d", s);
        int best = 0;
        uint64_t wb = 0;
        for (int k = 1; k <= 3; k++) {
            char t[32];
            snprintf(t, sizeof(t), "10.0.0.%d", k);
            uint64_t w = ps_home_weight(id, t);
            if (!best || w > wb) {
                best = k;
                wb = w;
            }
        }
        assert_int_equal(last_octet(ps_home_pick(&h, id, res, 0)), best);
        assert_int_equal(last_octet(ps_home_pick(&h, id, res, 0)), best);
    }
}

/* 300 sensors over 3 receivers: each gets a fair share (within 25 %). */
static void test_spread(void **state)
{
    (void)state;
    addrs a;
    const struct addrinfo *res = mk(&a, (const int[]){1, 2, 3, 0});
    ps_home h;
    memset(&h, 0, sizeof(h));
    int count[4] = {0};
    for (int s = 0; s < 300; s++) {
        char id[32];
        snprintf(id, sizeof(id), "ip-10-1-%d-%d.ec2.internal", s / 7, s);
        count[last_octet(ps_home_pick(&h, id, res, 0))]++;
    }
    for (int k = 1; k <= 3; k++)
        assert_in_range(count[k], 75, 125);
}

/* Removing a receiver moves exactly its sensors; adding one moves none
 * that have a home. */
static void test_minimal_moves(void **state)
{
    (void)state;
    addrs a3, a2, a4;
    const struct addrinfo *three = mk(&a3, (const int[]){1, 2, 3, 0});
    const struct addrinfo *two = mk(&a2, (const int[]){1, 3, 0});
    const struct addrinfo *four = mk(&a4, (const int[]){1, 2, 3, 4, 0});
    int moved_away = 0, homes_on_2 = 0;
    for (int s = 0; s < 200; s++) {
        char id[32];
        snprintf(id, sizeof(id), "sensor-%d", s);
        ps_home h;
        memset(&h, 0, sizeof(h));
        const struct addrinfo *p = ps_home_pick(&h, id, three, 0);
        ps_home_accepted(&h, p->ai_addr);
        int home = last_octet(p);
        homes_on_2 += home == 2;
        /* a fourth receiver joins: nobody with a home moves */
        assert_int_equal(last_octet(ps_home_pick(&h, id, four, 0)), home);
        /* receiver 2 leaves: only its sensors move */
        int now = last_octet(ps_home_pick(&h, id, two, 0));
        if (home == 2) {
            assert_int_not_equal(now, 2);
            moved_away++;
        } else {
            assert_int_equal(now, home);
        }
    }
    assert_int_equal(moved_away, homes_on_2);
    assert_true(homes_on_2 > 0);
}

/* A home still in DNS but refusing: kept for PS_HOME_FAILS attempts, then
 * left for the next-ranked; failures are forgotten after a while. */
static void test_failing_home_is_left(void **state)
{
    (void)state;
    addrs a;
    const struct addrinfo *res = mk(&a, (const int[]){1, 2, 3, 0});
    ps_home h;
    memset(&h, 0, sizeof(h));
    const char *id = "node-a";
    const struct addrinfo *p = ps_home_pick(&h, id, res, 0);
    ps_home_accepted(&h, p->ai_addr);
    int home = last_octet(p);
    for (int i = 0; i < PS_HOME_FAILS - 1; i++) {
        ps_home_failed(&h, p->ai_addr, 1000 + (uint64_t)i);
        assert_int_equal(last_octet(ps_home_pick(&h, id, res, 1000 + (uint64_t)i)), home);
    }
    ps_home_failed(&h, p->ai_addr, 2000);
    const struct addrinfo *q = ps_home_pick(&h, id, res, 2000);
    assert_int_not_equal(last_octet(q), home);
    ps_home_accepted(&h, q->ai_addr);
    assert_int_equal(last_octet(ps_home_pick(&h, id, res, 3000)), last_octet(q));
    /* the new home is sticky even when the old one recovers */
    assert_int_equal(last_octet(ps_home_pick(&h, id, res, 2000 + PS_HOME_FORGET_MS + 1)),
                     last_octet(q));
}

/* Every receiver failing: the best-ranked is tried again, never nothing. */
static void test_all_failing(void **state)
{
    (void)state;
    addrs a;
    const struct addrinfo *res = mk(&a, (const int[]){1, 2, 0});
    ps_home h;
    memset(&h, 0, sizeof(h));
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < PS_HOME_FAILS; i++)
            ps_home_failed(&h, a.ai[k].ai_addr, 10);
    assert_non_null(ps_home_pick(&h, "x", res, 10));
    assert_null(ps_home_pick(&h, "x", NULL, 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_is_highest_weight),
        cmocka_unit_test(test_spread),
        cmocka_unit_test(test_minimal_moves),
        cmocka_unit_test(test_failing_home_is_left),
        cmocka_unit_test(test_all_failing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
