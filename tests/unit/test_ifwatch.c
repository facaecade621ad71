/* Unit tests for sensor/ifwatch: interface selection rules and the rtnetlink
 * parser fed with hand-built (and deliberately broken) messages. */
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sensor/ifwatch.h"

static void test_select_default(void **state)
{
    (void)state;
    ps_ifsel s = {0};
    assert_int_equal(ps_ifsel_match(&s, "eth0", 0), 1);
    assert_int_equal(ps_ifsel_match(&s, "veth1234", 0), 1);
    assert_int_equal(ps_ifsel_match(&s, "lo", 1), 0);
    assert_int_equal(ps_ifsel_match(&s, "", 0), 0);
    assert_int_equal(ps_ifsel_match(&s, NULL, 0), 0);
}

static void test_select_include_exclude(void **state)
{
    (void)state;
    char *inc[] = {"eth0", "veth*", "lo"};
    char *exc[] = {"veth9*"};
    ps_ifsel s = {.include = inc, .n_include = 3, .exclude = exc, .n_exclude = 1};
    assert_int_equal(ps_ifsel_match(&s, "eth0", 0), 1);
    assert_int_equal(ps_ifsel_match(&s, "eth1", 0), 0);
    assert_int_equal(ps_ifsel_match(&s, "vethab", 0), 1);
    assert_int_equal(ps_ifsel_match(&s, "veth9ab", 0), 0);
    assert_int_equal(ps_ifsel_match(&s, "lo", 1), 1); /* named: loopback too */
    assert_int_equal(ps_ifsel_match(&s, "cali1", 0), 0);
    /* exclusions alone: everything else that is not loopback */
    char *exc2[] = {"docker*", "eth1"};
    ps_ifsel t = {.exclude = exc2, .n_exclude = 2};
    assert_int_equal(ps_ifsel_match(&t, "eth0", 0), 1);
    assert_int_equal(ps_ifsel_match(&t, "eth1", 0), 0);
    assert_int_equal(ps_ifsel_match(&t, "docker0", 0), 0);
    assert_int_equal(ps_ifsel_match(&t, "lo", 1), 0);
}

static void test_select_pods(void **state)
{
    (void)state;
    ps_ifsel s = {.pods = 1};
    const char *yes[] = {"veth1a2b", "cali0123456789a", "lxc12ab", "lxc_health", "eni0a1b2c3",
                         "gke12ab",  "azv1234",         "vnet0",   "tap0",       "vethwe-bridge"};
    const char *no[] = {"eth0",      "ens5",         "bond0",       "cni0",
                        "flannel.1", "vxlan.calico", "cilium_host", "cilium_vxlan",
                        "docker0",   "lo",           "tunl0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (ps_ifsel_match(&s, yes[i], 0) != 1)
            fail_msg("pod mode should pick %s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (ps_ifsel_match(&s, no[i], 0) != 0)
            fail_msg("pod mode should leave %s alone", no[i]);
    /* The uplink only when asked, and exclusions still win. */
    char *inc[] = {"eth0"};
    char *exc[] = {"lxc_health"};
    ps_ifsel t = {.include = inc, .n_include = 1, .exclude = exc, .n_exclude = 1, .pods = 1};
    assert_int_equal(ps_ifsel_match(&t, "eth0", 0), 1);
    assert_int_equal(ps_ifsel_match(&t, "eth1", 0), 0);
    assert_int_equal(ps_ifsel_match(&t, "cali1", 0), 1);
    assert_int_equal(ps_ifsel_match(&t, "lxc_health", 0), 0);
}

/* ---- netlink ---- */

typedef struct got {
    int n;
    ps_link l[8];
} got;

static void collect(void *ud, const ps_link *l)
{
    got *g = ud;
    if (g->n < 8)
        g->l[g->n++] = *l;
}

/* Appends one link message (name NULL: no IFLA_IFNAME; name_len: bytes of
 * the attribute payload, to build unterminated names). */
static size_t put_link(uint8_t *buf, size_t off, uint16_t type, int ifindex, unsigned flags,
                       const char *name, size_t name_len)
{
    struct nlmsghdr *nh = (struct nlmsghdr *)(buf + off);
    memset(nh, 0, NLMSG_SPACE(sizeof(struct ifinfomsg)) + RTA_SPACE(64));
    nh->nlmsg_type = type;
    struct ifinfomsg *ifi = NLMSG_DATA(nh);
    ifi->ifi_index = ifindex;
    ifi->ifi_flags = flags;
    size_t len = NLMSG_LENGTH(sizeof(*ifi));
    /* an unrelated attribute first, as the kernel sends many */
    struct rtattr *mtu = (struct rtattr *)((uint8_t *)nh + NLMSG_ALIGN(len));
    mtu->rta_type = IFLA_MTU;
    mtu->rta_len = RTA_LENGTH(4);
    len = NLMSG_ALIGN(len) + RTA_ALIGN(mtu->rta_len);
    if (name) {
        struct rtattr *rta = (struct rtattr *)((uint8_t *)nh + len);
        rta->rta_type = IFLA_IFNAME;
        rta->rta_len = (unsigned short)RTA_LENGTH(name_len);
        memcpy(RTA_DATA(rta), name, name_len);
        len += RTA_ALIGN(rta->rta_len);
    }
    nh->nlmsg_len = (uint32_t)len;
    return off + NLMSG_ALIGN(len);
}

static size_t put_type(uint8_t *buf, size_t off, uint16_t type)
{
    struct nlmsghdr *nh = (struct nlmsghdr *)(buf + off);
    memset(nh, 0, NLMSG_SPACE(sizeof(struct nlmsgerr)));
    nh->nlmsg_type = type;
    nh->nlmsg_len = NLMSG_LENGTH(type == NLMSG_ERROR ? sizeof(struct nlmsgerr) : 4);
    return off + NLMSG_ALIGN(nh->nlmsg_len);
}

static _Alignas(4) uint8_t buf[8192];

static void test_parse_good(void **state)
{
    (void)state;
    got g = {0};
    size_t off = put_link(buf, 0, RTM_NEWLINK, 3, IFF_UP, "veth0", 6);
    off = put_link(buf, off, RTM_NEWLINK, 1, IFF_UP | IFF_LOOPBACK, "lo", 3);
    off = put_link(buf, off, RTM_DELLINK, 7, 0, "cali12", 7);
    off = put_type(buf, off, RTM_NEWADDR); /* ignored */
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.l[0].ifindex, 3);
    assert_string_equal(g.l[0].name, "veth0");
    assert_true(g.l[0].flags & IFF_UP);
    assert_int_equal(g.l[0].removed, 0);
    assert_true(g.l[1].flags & IFF_LOOPBACK);
    assert_string_equal(g.l[2].name, "cali12");
    assert_int_equal(g.l[2].removed, 1);

    memset(&g, 0, sizeof(g));
    off = put_link(buf, 0, RTM_NEWLINK, 4, 0, "eth0", 5);
    off = put_type(buf, off, NLMSG_DONE);
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), 1);
    assert_int_equal(g.n, 1);
    off = put_type(buf, 0, NLMSG_ERROR);
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), -2);
    assert_int_equal(ps_ifwatch_parse(buf, 0, collect, &g), 0);
}

static void test_parse_bad(void **state)
{
    (void)state;
    got g = {0};
    /* name not terminated inside its attribute */
    size_t off = put_link(buf, 0, RTM_NEWLINK, 3, IFF_UP, "veth0", 5);
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), -1);
    /* empty name */
    off = put_link(buf, 0, RTM_NEWLINK, 3, IFF_UP, "", 1);
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), -1);
    /* name longer than IFNAMSIZ */
    off = put_link(buf, 0, RTM_NEWLINK, 3, IFF_UP, "abcdefghijklmnopqrstuvwxyz", 27);
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), -1);
    /* no name at all */
    off = put_link(buf, 0, RTM_NEWLINK, 3, IFF_UP, NULL, 0);
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), -1);
    /* bad ifindex */
    off = put_link(buf, 0, RTM_NEWLINK, 0, IFF_UP, "x", 2);
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), -1);
    assert_int_equal(g.n, 0);
    /* message too short for an ifinfomsg */
    off = put_link(buf, 0, RTM_NEWLINK, 3, IFF_UP, "veth0", 6);
    ((struct nlmsghdr *)buf)->nlmsg_len = NLMSG_LENGTH(4);
    assert_int_equal(ps_ifwatch_parse(buf, NLMSG_ALIGN(NLMSG_LENGTH(4)), collect, &g), -1);
    /* truncated datagram: every prefix of a good one is refused or partial,
     * never read past its end (ASan watches) */
    off = put_link(buf, 0, RTM_NEWLINK, 3, IFF_UP, "veth0", 6);
    size_t end = put_link(buf, off, RTM_NEWLINK, 4, IFF_UP, "veth1", 6);
    for (size_t cut = 1; cut < end; cut++) {
        static uint8_t copy[sizeof(buf)];
        memcpy(copy, buf, cut);
        memset(&g, 0, sizeof(g));
        int rc = ps_ifwatch_parse(copy, cut, collect, &g);
        if (cut == off)
            assert_int_equal(rc, 0);
        else
            assert_int_equal(rc, -1);
        assert_int_equal(g.n, cut >= off ? 1 : 0);
    }
    /* attribute whose length runs past the message: the walk stops, no name */
    off = put_link(buf, 0, RTM_NEWLINK, 3, IFF_UP, "veth0", 6);
    struct rtattr *first = (struct rtattr *)(buf + NLMSG_LENGTH(sizeof(struct ifinfomsg)));
    first->rta_len = 2000;
    memset(&g, 0, sizeof(g));
    assert_int_equal(ps_ifwatch_parse(buf, off, collect, &g), -1);
    assert_int_equal(g.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_default), cmocka_unit_test(test_select_include_exclude),
        cmocka_unit_test(test_select_pods),    cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
