/* Unit tests for sensor/podmap: the rtnetlink parser and table fed with
 * hand-built (and deliberately broken) datagrams, and the watcher against
 * real kernel objects: a node network namespace with routed pods (veth,
 * host routes) and a bridge pod (bridge, veth port, neighbour and FDB
 * entries the kernel learns from the pod's own packets). The live tests
 * need root (CI runs them as root) and skip otherwise. Namespaces are
 * pspm-<pid>-*, deleted in teardown. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sensor/podmap.h"
#include "testutil.h"

/* ---- datagram builders ---- */

static _Alignas(4) uint8_t buf[65536];
static size_t off;

static struct nlmsghdr *msg(uint16_t type, uint16_t flags, const void *hdr, size_t hlen)
{
    struct nlmsghdr *nh = (struct nlmsghdr *)(buf + off);
    memset(nh, 0, NLMSG_SPACE(hlen));
    nh->nlmsg_type = type;
    nh->nlmsg_flags = flags;
    nh->nlmsg_len = (uint32_t)NLMSG_LENGTH(hlen);
    memcpy(NLMSG_DATA(nh), hdr, hlen);
    return nh;
}

static void attr(struct nlmsghdr *nh, uint16_t type, const void *p, size_t n)
{
    struct rtattr *rta = (struct rtattr *)((uint8_t *)nh + NLMSG_ALIGN(nh->nlmsg_len));
    memset(rta, 0, RTA_SPACE(n));
    rta->rta_type = type;
    rta->rta_len = (unsigned short)RTA_LENGTH(n);
    memcpy(RTA_DATA(rta), p, n);
    nh->nlmsg_len = (uint32_t)(NLMSG_ALIGN(nh->nlmsg_len) + RTA_LENGTH(n));
}

static void u32a(struct nlmsghdr *nh, uint16_t type, uint32_t v)
{
    attr(nh, type, &v, 4);
}

static void end(struct nlmsghdr *nh)
{
    off += NLMSG_ALIGN(nh->nlmsg_len);
}

static int ipbytes(const char *ip, uint8_t out[16])
{
    if (inet_pton(AF_INET, ip, out) == 1)
        return AF_INET;
    assert_int_equal(inet_pton(AF_INET6, ip, out), 1);
    return AF_INET6;
}

typedef struct rt {
    uint16_t type, flags;
    const char *dst;
    int dst_len;   /* -1: host length */
    int oif;       /* 0: none */
    int prio;      /* -1: none */
    int table;     /* rtm_table */
    int rta_table; /* -1: none */
    int rtype;     /* 0: unicast */
} rt;

/* A route message; the fields left 0 take the usual values of a CNI's host
 * route (RTM_NEWROUTE, main table, unicast, host length). */
static struct nlmsghdr *route_msg(rt r)
{
    uint8_t a[16];
    int family = ipbytes(r.dst, a);
    struct rtmsg rtm = {.rtm_family = (uint8_t)family,
                        .rtm_dst_len =
                            (uint8_t)(r.dst_len < 0 ? (family == AF_INET ? 32 : 128) : r.dst_len),
                        .rtm_table = (uint8_t)(r.table ? r.table : RT_TABLE_MAIN),
                        .rtm_protocol = RTPROT_BOOT,
                        .rtm_scope = RT_SCOPE_LINK,
                        .rtm_type = (uint8_t)(r.rtype ? r.rtype : RTN_UNICAST)};
    struct nlmsghdr *nh = msg(r.type ? r.type : RTM_NEWROUTE, r.flags, &rtm, sizeof(rtm));
    if (r.rta_table >= 0)
        u32a(nh, RTA_TABLE, r.rta_table ? (uint32_t)r.rta_table : RT_TABLE_MAIN);
    attr(nh, RTA_DST, a, family == AF_INET ? 4 : 16);
    if (r.prio >= 0)
        u32a(nh, RTA_PRIORITY, (uint32_t)r.prio);
    if (r.oif)
        u32a(nh, RTA_OIF, (uint32_t)r.oif);
    return nh;
}

static void route(uint16_t type, const char *dst, int oif, int prio)
{
    end(route_msg((rt){.type = type, .dst = dst, .dst_len = -1, .oif = oif, .prio = prio}));
}

static const uint8_t MAC1[6] = {0x0a, 0x58, 0x0a, 0x58, 0x00, 0x05};
static const uint8_t MAC2[6] = {0x0a, 0x58, 0x0a, 0x58, 0x00, 0x06};

static struct nlmsghdr *neigh_msg(uint16_t type, const char *ip, int dev, const uint8_t *mac,
                                  uint16_t state, uint8_t flags)
{
    uint8_t a[16];
    int family = ipbytes(ip, a);
    struct ndmsg ndm = {.ndm_family = (uint8_t)family,
                        .ndm_ifindex = dev,
                        .ndm_state = state,
                        .ndm_flags = flags,
                        .ndm_type = RTN_UNICAST};
    struct nlmsghdr *nh = msg(type, 0, &ndm, sizeof(ndm));
    attr(nh, NDA_DST, a, family == AF_INET ? 4 : 16);
    if (mac)
        attr(nh, NDA_LLADDR, mac, 6);
    return nh;
}

static void neigh(uint16_t type, const char *ip, int dev, const uint8_t *mac, uint16_t state)
{
    end(neigh_msg(type, ip, dev, mac, state, 0));
}

static struct nlmsghdr *fdb_msg(uint16_t type, int port, const uint8_t *mac, int master, int vlan)
{
    struct ndmsg ndm = {.ndm_family = AF_BRIDGE,
                        .ndm_ifindex = port,
                        .ndm_state = NUD_REACHABLE,
                        .ndm_flags = NTF_MASTER};
    struct nlmsghdr *nh = msg(type, 0, &ndm, sizeof(ndm));
    if (mac)
        attr(nh, NDA_LLADDR, mac, 6);
    if (master)
        u32a(nh, NDA_MASTER, (uint32_t)master);
    if (vlan >= 0) {
        uint16_t v = (uint16_t)vlan;
        attr(nh, NDA_VLAN, &v, 2);
    }
    return nh;
}

static void fdb(uint16_t type, int port, const uint8_t *mac, int master)
{
    end(fdb_msg(type, port, mac, master, 1));
}

static void link_msg(uint16_t type, int family, int ifindex, unsigned flags)
{
    struct ifinfomsg ifi = {
        .ifi_family = (uint8_t)family, .ifi_index = ifindex, .ifi_flags = flags};
    struct nlmsghdr *nh = msg(type, 0, &ifi, sizeof(ifi));
    u32a(nh, IFLA_MTU, 1500);
    end(nh);
}

static void done_msg(uint16_t flags)
{
    int32_t zero = 0;
    end(msg(NLMSG_DONE, flags | NLM_F_MULTI, &zero, 4));
}

/* Parses buf[0, off) into t and starts a new datagram. */
static int feed(ps_podmap_table *t, int *done)
{
    uint8_t *copy = tu_dup_exact(buf, off); /* ASan: no read past the end */
    int rc = ps_podmap_parse(t, copy, off, done);
    free(copy);
    off = 0;
    return rc;
}

#define LK(t, ip) ps_podmap_table_lookup((t), (ip))

/* ---- pure tests ---- */

static void test_routes(void **state)
{
    (void)state;
    ps_podmap_table *t = ps_podmap_table_new();
    assert_non_null(t);
    route(RTM_NEWROUTE, "10.77.0.5", 5, -1);
    route(RTM_NEWROUTE, "fd77::5", 5, 1024);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.77.0.5"), 5);
    assert_int_equal(LK(t, "fd77::5"), 5);
    assert_int_equal(LK(t, "FD77:0::5"), 5); /* any text form */
    assert_int_equal(LK(t, "10.77.0.6"), 0);
    assert_int_equal(LK(t, "fd77::6"), 0);
    const char *bad[] = {"", "10.77.0.256", "10.77.0.5/32", "fd77::5%eth0", "pod", " 10.77.0.5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (LK(t, bad[i]) != -1)
            fail_msg("%s should not parse", bad[i]);
    assert_int_equal(LK(t, NULL), -1);

    /* the same route again (a dump after events): no change */
    route(RTM_NEWROUTE, "10.77.0.5", 5, -1);
    assert_int_equal(feed(t, NULL), 0);

    /* the lower metric wins; deleting it falls back */
    route(RTM_NEWROUTE, "10.77.0.7", 6, 100);
    route(RTM_NEWROUTE, "10.77.0.7", 7, 50);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.77.0.7"), 7);
    route(RTM_DELROUTE, "10.77.0.7", 7, 50);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.77.0.7"), 6);
    /* a delete of a route not held changes nothing */
    route(RTM_DELROUTE, "10.77.0.7", 7, 50);
    assert_int_equal(feed(t, NULL), 0);

    /* replace moves the route to another interface */
    end(route_msg(
        (rt){.flags = NLM_F_REPLACE, .dst = "10.77.0.7", .dst_len = -1, .oif = 8, .prio = 100}));
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.77.0.7"), 8);
    route(RTM_DELROUTE, "10.77.0.7", 8, 100);
    route(RTM_DELROUTE, "10.77.0.5", 5, -1);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.77.0.7"), 0);
    assert_int_equal(LK(t, "10.77.0.5"), 0);
    assert_int_equal(LK(t, "fd77::5"), 5);

    /* not host routes with one interface in the main table: ignored */
    rt ignored[] = {
        {.dst = "10.77.1.0", .dst_len = 24, .oif = 5, .prio = -1, .rta_table = -1},
        {.dst = "10.77.1.1", .dst_len = -1, .oif = 5, .prio = -1, .table = 100, .rta_table = -1},
        {.dst = "10.77.1.2", .dst_len = -1, .oif = 5, .prio = -1, .rta_table = 100},
        {.dst = "10.77.1.3",
         .dst_len = -1,
         .oif = 5,
         .prio = -1,
         .table = RT_TABLE_LOCAL,
         .rta_table = RT_TABLE_LOCAL,
         .rtype = RTN_LOCAL},
        {.dst = "10.77.1.4", .dst_len = -1, .oif = 5, .prio = -1, .rtype = RTN_BLACKHOLE},
        {.dst = "10.77.1.5", .dst_len = -1, .oif = 0, .prio = -1}, /* gateway only */
        {.dst = "fd77::1:0", .dst_len = 112, .oif = 5, .prio = -1},
    };
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
        end(route_msg(ignored[i]));
    /* a cached clone, a multipath route and a source-specific route */
    struct nlmsghdr *nh = route_msg((rt){.dst = "10.77.1.6", .dst_len = -1, .oif = 5, .prio = -1});
    ((struct rtmsg *)NLMSG_DATA(nh))->rtm_flags = RTM_F_CLONED;
    end(nh);
    nh = route_msg((rt){.dst = "10.77.1.7", .dst_len = -1, .oif = 0, .prio = -1});
    struct rtnexthop nhs[2] = {{.rtnh_len = sizeof(struct rtnexthop), .rtnh_ifindex = 5},
                               {.rtnh_len = sizeof(struct rtnexthop), .rtnh_ifindex = 6}};
    attr(nh, RTA_MULTIPATH, nhs, sizeof(nhs));
    end(nh);
    nh = route_msg((rt){.dst = "fd77::1:8", .dst_len = -1, .oif = 5, .prio = -1});
    ((struct rtmsg *)NLMSG_DATA(nh))->rtm_src_len = 64;
    end(nh);
    /* multicast routing family (RTNL_FAMILY_IPMR): another family, ignored */
    struct rtmsg ipmr = {
        .rtm_family = 128, .rtm_dst_len = 32, .rtm_table = RT_TABLE_MAIN, .rtm_type = RTN_UNICAST};
    nh = msg(RTM_NEWROUTE, 0, &ipmr, sizeof(ipmr));
    u32a(nh, RTA_OIF, 5);
    end(nh);
    assert_int_equal(feed(t, NULL), 0);
    const char *none[] = {"10.77.1.0", "10.77.1.1", "10.77.1.2", "10.77.1.3", "10.77.1.4",
                          "10.77.1.5", "fd77::1:0", "10.77.1.6", "10.77.1.7", "fd77::1:8"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        if (LK(t, none[i]) != 0)
            fail_msg("%s should map to nothing", none[i]);
    ps_podmap_table_free(t);
}

static void test_bridge(void **state)
{
    (void)state;
    enum { BR = 3, PORT = 9, PORT2 = 10, ETH = 2, CALI = 12 };
    ps_podmap_table *t = ps_podmap_table_new();
    assert_non_null(t);
    neigh(RTM_NEWNEIGH, "10.88.0.5", BR, MAC1, NUD_REACHABLE);
    neigh(RTM_NEWNEIGH, "fd88::5", BR, MAC1, NUD_STALE);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), 0); /* MAC known, port not yet */
    fdb(RTM_NEWNEIGH, PORT, MAC1, BR);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), PORT);
    assert_int_equal(LK(t, "fd88::5"), PORT); /* dual stack: one interface */

    /* a host route wins over the neighbour; when it goes, the bridge again */
    route(RTM_NEWROUTE, "10.88.0.5", CALI, -1);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), CALI);
    assert_int_equal(LK(t, "fd88::5"), PORT);
    route(RTM_DELROUTE, "10.88.0.5", CALI, -1);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), PORT);

    /* the MAC moves to another port (a pod re-created with the same MAC) */
    fdb(RTM_NEWNEIGH, PORT2, MAC1, BR);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), PORT2);

    /* entries that are not a bridge's learned ports: ignored */
    fdb(RTM_NEWNEIGH, ETH, MAC2, 0); /* the device's own table (self) */
    fdb(RTM_NEWNEIGH, BR, MAC2, BR); /* the bridge's own address */
    neigh(RTM_NEWNEIGH, "10.88.0.6", BR, MAC2, NUD_REACHABLE);
    neigh(RTM_NEWNEIGH, "192.168.1.1", ETH, MAC2, NUD_REACHABLE); /* LAN neighbour */
    end(neigh_msg(RTM_NEWNEIGH, "10.88.0.7", BR, MAC1, NUD_REACHABLE, NTF_PROXY));
    struct nlmsghdr *nh = fdb_msg(RTM_NEWNEIGH, PORT, NULL, BR, -1);
    uint8_t ib[20] = {1}; /* an InfiniBand address: not Ethernet */
    attr(nh, NDA_LLADDR, ib, sizeof(ib));
    end(nh);
    assert_int_equal(feed(t, NULL), 1); /* the two neighbours are stored */
    assert_int_equal(LK(t, "10.88.0.6"), 0);
    assert_int_equal(LK(t, "192.168.1.1"), 0);
    assert_int_equal(LK(t, "10.88.0.7"), 0);

    /* a neighbour that fails to resolve, or is deleted, maps to nothing */
    neigh(RTM_NEWNEIGH, "10.88.0.5", BR, NULL, NUD_INCOMPLETE);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), 0);
    assert_int_equal(LK(t, "fd88::5"), PORT2);
    neigh(RTM_NEWNEIGH, "10.88.0.5", BR, MAC1, NUD_STALE);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), PORT2);
    neigh(RTM_DELNEIGH, "fd88::5", BR, MAC1, NUD_STALE);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "fd88::5"), 0);
    neigh(RTM_NEWNEIGH, "fd88::5", BR, MAC1, NUD_FAILED);
    assert_int_equal(feed(t, NULL), 0);

    /* the FDB entry ages out */
    fdb(RTM_DELNEIGH, PORT2, MAC1, BR);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), 0);
    ps_podmap_table_free(t);
}

static void test_links(void **state)
{
    (void)state;
    enum { VETH = 5, BR = 3, PORT = 9 };
    ps_podmap_table *t = ps_podmap_table_new();
    assert_non_null(t);
    route(RTM_NEWROUTE, "10.77.0.5", VETH, -1);
    route(RTM_NEWROUTE, "fd77::5", VETH, 1024);
    neigh(RTM_NEWNEIGH, "10.88.0.5", BR, MAC1, NUD_REACHABLE);
    fdb(RTM_NEWNEIGH, PORT, MAC1, BR);
    assert_int_equal(feed(t, NULL), 1);

    /* up, or a port's bridge attributes: nothing changes */
    link_msg(RTM_NEWLINK, AF_UNSPEC, VETH, IFF_UP | IFF_RUNNING);
    link_msg(RTM_NEWLINK, AF_BRIDGE, PORT, IFF_UP);
    assert_int_equal(feed(t, NULL), 0);
    assert_int_equal(LK(t, "10.77.0.5"), VETH);
    assert_int_equal(LK(t, "10.88.0.5"), PORT);

    /* down: its routes are gone (the kernel does not say so for IPv4) */
    link_msg(RTM_NEWLINK, AF_UNSPEC, VETH, 0);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.77.0.5"), 0);
    assert_int_equal(LK(t, "fd77::5"), 0);
    assert_int_equal(LK(t, "10.88.0.5"), PORT);

    /* a port that leaves its bridge takes its FDB entries along */
    link_msg(RTM_DELLINK, AF_BRIDGE, PORT, IFF_UP);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), 0);
    /* and a removed port too */
    fdb(RTM_NEWNEIGH, PORT, MAC1, BR);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), PORT);
    link_msg(RTM_DELLINK, AF_UNSPEC, PORT, 0);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), 0);
    /* a removed bridge: its neighbours and its FDB */
    fdb(RTM_NEWNEIGH, PORT, MAC1, BR);
    route(RTM_NEWROUTE, "10.77.0.5", VETH, -1);
    assert_int_equal(feed(t, NULL), 1);
    link_msg(RTM_DELLINK, AF_UNSPEC, BR, 0);
    assert_int_equal(feed(t, NULL), 1);
    fdb(RTM_NEWNEIGH, PORT, MAC1, BR); /* the FDB entry alone: no neighbour left */
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), 0);
    assert_int_equal(LK(t, "10.77.0.5"), VETH); /* others' routes stay */
    ps_podmap_table_free(t);
}

static void test_done_error(void **state)
{
    (void)state;
    ps_podmap_table *t = ps_podmap_table_new();
    assert_non_null(t);
    int done = 0;
    assert_int_equal(feed(t, &done), 0); /* empty */
    assert_int_equal(done, 0);
    route(RTM_NEWROUTE, "10.77.0.5", 5, -1);
    assert_int_equal(feed(t, &done), 1);
    assert_int_equal(done, 0);
    route(RTM_NEWROUTE, "10.77.0.6", 5, -1);
    done_msg(0);
    route(RTM_NEWROUTE, "10.77.0.7", 5, -1); /* after DONE: not read */
    assert_int_equal(feed(t, &done), 1);
    assert_int_equal(done, 1);
    assert_int_equal(LK(t, "10.77.0.6"), 5);
    assert_int_equal(LK(t, "10.77.0.7"), 0);
    done_msg(0);
    assert_int_equal(feed(t, NULL), 0); /* done may be NULL */

    /* an interrupted dump: DONE says so, until the next dump begins */
    ps_podmap_table_dump_begin(t, PS_PODMAP_ROUTES);
    struct nlmsghdr *nh = route_msg((rt){.dst = "10.77.0.5", .dst_len = -1, .oif = 5, .prio = -1});
    nh->nlmsg_flags |= NLM_F_MULTI | NLM_F_DUMP_INTR;
    end(nh);
    done = 0;
    assert_int_equal(feed(t, &done), 0);
    assert_int_equal(done, 0);
    done_msg(0);
    assert_int_equal(feed(t, &done), 0);
    assert_int_equal(done, 2);
    ps_podmap_table_dump_begin(t, PS_PODMAP_ROUTES);
    done_msg(NLM_F_DUMP_INTR); /* on DONE itself */
    assert_int_equal(feed(t, &done), 0);
    assert_int_equal(done, 2);
    ps_podmap_table_dump_begin(t, PS_PODMAP_ROUTES);
    done_msg(0);
    assert_int_equal(feed(t, &done), 0);
    assert_int_equal(done, 1);

    /* an error message */
    struct nlmsgerr e = {.error = -EBUSY};
    route(RTM_NEWROUTE, "10.77.0.8", 5, -1);
    end(msg(NLMSG_ERROR, 0, &e, sizeof(e)));
    route(RTM_NEWROUTE, "10.77.0.9", 5, -1);
    done = 0;
    assert_int_equal(feed(t, &done), -2);
    assert_int_equal(done, 0);
    assert_int_equal(LK(t, "10.77.0.8"), 5); /* before it: applied */
    assert_int_equal(LK(t, "10.77.0.9"), 0);
    /* unrelated messages and NOOP are skipped */
    struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_index = 5};
    end(msg(RTM_NEWADDR, 0, &ifa, sizeof(ifa)));
    int32_t zero = 0;
    end(msg(NLMSG_NOOP, 0, &zero, 4));
    assert_int_equal(feed(t, NULL), 0);
    ps_podmap_table_free(t);
}

static void test_dump_sweep(void **state)
{
    (void)state;
    ps_podmap_table *t = ps_podmap_table_new();
    assert_non_null(t);
    route(RTM_NEWROUTE, "10.77.0.1", 5, -1);
    route(RTM_NEWROUTE, "10.77.0.2", 6, -1);
    route(RTM_NEWROUTE, "10.77.0.3", 7, -1);
    neigh(RTM_NEWNEIGH, "10.88.0.5", 3, MAC1, NUD_REACHABLE);
    fdb(RTM_NEWNEIGH, 9, MAC1, 3);
    assert_int_equal(feed(t, NULL), 1);

    /* events were lost: .3 went away unseen; a new dump reports .1 and .2,
     * and an event during the dump adds .4 */
    ps_podmap_table_dump_begin(t, PS_PODMAP_ROUTES);
    route(RTM_NEWROUTE, "10.77.0.1", 5, -1);
    assert_int_equal(feed(t, NULL), 0);
    route(RTM_NEWROUTE, "10.77.0.4", 8, -1);
    assert_int_equal(feed(t, NULL), 1);
    route(RTM_NEWROUTE, "10.77.0.2", 6, -1);
    done_msg(0);
    int done = 0;
    assert_int_equal(feed(t, &done), 0);
    assert_int_equal(done, 1);
    assert_int_equal(ps_podmap_table_dump_end(t, PS_PODMAP_ROUTES), 1);
    assert_int_equal(LK(t, "10.77.0.1"), 5);
    assert_int_equal(LK(t, "10.77.0.2"), 6);
    assert_int_equal(LK(t, "10.77.0.3"), 0);
    assert_int_equal(LK(t, "10.77.0.4"), 8);
    assert_int_equal(LK(t, "10.88.0.5"), 9); /* other tables untouched */

    /* an empty FDB dump empties the FDB only */
    ps_podmap_table_dump_begin(t, PS_PODMAP_FDB);
    assert_int_equal(ps_podmap_table_dump_end(t, PS_PODMAP_FDB), 1);
    assert_int_equal(LK(t, "10.88.0.5"), 0);
    assert_int_equal(LK(t, "10.77.0.1"), 5);
    /* nothing stale: nothing dropped */
    ps_podmap_table_dump_begin(t, PS_PODMAP_NEIGH);
    neigh(RTM_NEWNEIGH, "10.88.0.5", 3, MAC1, NUD_STALE);
    assert_int_equal(feed(t, NULL), 0);
    assert_int_equal(ps_podmap_table_dump_end(t, PS_PODMAP_NEIGH), 0);
    /* kinds out of range are ignored */
    ps_podmap_table_dump_begin(t, PS_PODMAP_KINDS);
    assert_int_equal(ps_podmap_table_dump_end(t, -1), 0);
    ps_podmap_table_free(t);
}

/* One broken message between two good ones. */
typedef struct bad_case {
    const char *what;
    void (*build)(void);
} bad_case;

static struct nlmsghdr *good_route(void)
{
    return route_msg((rt){.dst = "10.77.0.9", .dst_len = -1, .oif = 5, .prio = -1});
}

static void b_short_rtmsg(void)
{
    struct nlmsghdr *nh = good_route();
    nh->nlmsg_len = NLMSG_LENGTH(4);
    end(nh);
}
static void b_attr_overrun(void)
{
    struct nlmsghdr *nh = good_route();
    struct rtattr *first = (struct rtattr *)((uint8_t *)nh + NLMSG_SPACE(sizeof(struct rtmsg)));
    first->rta_len = 2000;
    end(nh);
}
static void b_attr_tiny(void)
{
    struct nlmsghdr *nh = good_route();
    struct rtattr *first = (struct rtattr *)((uint8_t *)nh + NLMSG_SPACE(sizeof(struct rtmsg)));
    first->rta_len = 2;
    end(nh);
}
static void b_attr_leftover(void)
{
    struct nlmsghdr *nh = good_route();
    memset((uint8_t *)nh + nh->nlmsg_len, 0, 4);
    nh->nlmsg_len += 2; /* two bytes that cannot be an attribute */
    end(nh);
}
static void b_dst_len(void)
{
    struct nlmsghdr *nh = good_route();
    uint8_t a[16] = {0};
    attr(nh, RTA_DST, a, 16); /* an IPv6 address in an IPv4 route */
    end(nh);
}
static void b_dst_len_v4(void)
{
    struct nlmsghdr *nh = route_msg((rt){.dst = "fd77::9", .dst_len = -1, .oif = 5, .prio = -1});
    uint8_t a[4] = {10, 77, 0, 9};
    attr(nh, RTA_DST, a, 4);
    end(nh);
}
static void b_prefix_too_long(void)
{
    end(route_msg((rt){.dst = "10.77.0.9", .dst_len = 33, .oif = 5, .prio = -1}));
}
static void b_no_dst(void)
{
    struct rtmsg rtm = {.rtm_family = AF_INET,
                        .rtm_dst_len = 32,
                        .rtm_table = RT_TABLE_MAIN,
                        .rtm_type = RTN_UNICAST};
    struct nlmsghdr *nh = msg(RTM_NEWROUTE, 0, &rtm, sizeof(rtm));
    u32a(nh, RTA_OIF, 5);
    end(nh);
}
static void b_oif_size(void)
{
    struct nlmsghdr *nh = route_msg((rt){.dst = "10.77.0.9", .dst_len = -1, .prio = -1});
    uint16_t v = 5;
    attr(nh, RTA_OIF, &v, 2);
    end(nh);
}
static void b_oif_zero(void)
{
    struct nlmsghdr *nh = route_msg((rt){.dst = "10.77.0.9", .dst_len = -1, .prio = -1});
    u32a(nh, RTA_OIF, 0);
    end(nh);
}
static void b_prio_size(void)
{
    struct nlmsghdr *nh = good_route();
    uint64_t v = 5;
    attr(nh, RTA_PRIORITY, &v, 8);
    end(nh);
}
static void b_table_size(void)
{
    struct nlmsghdr *nh = good_route();
    uint8_t v[3] = {254, 0, 0};
    attr(nh, RTA_TABLE, v, 3);
    end(nh);
}
static void b_neigh_no_dst(void)
{
    struct ndmsg ndm = {.ndm_family = AF_INET, .ndm_ifindex = 3, .ndm_state = NUD_REACHABLE};
    struct nlmsghdr *nh = msg(RTM_NEWNEIGH, 0, &ndm, sizeof(ndm));
    attr(nh, NDA_LLADDR, MAC1, 6);
    end(nh);
}
static void b_neigh_dst_size(void)
{
    struct ndmsg ndm = {.ndm_family = AF_INET6, .ndm_ifindex = 3, .ndm_state = NUD_REACHABLE};
    struct nlmsghdr *nh = msg(RTM_NEWNEIGH, 0, &ndm, sizeof(ndm));
    uint8_t a[4] = {10, 88, 0, 5};
    attr(nh, NDA_DST, a, 4);
    attr(nh, NDA_LLADDR, MAC1, 6);
    end(nh);
}
static void b_neigh_ifindex(void)
{
    end(neigh_msg(RTM_NEWNEIGH, "10.88.0.5", 0, MAC1, NUD_REACHABLE, 0));
}
static void b_neigh_short(void)
{
    struct nlmsghdr *nh = neigh_msg(RTM_NEWNEIGH, "10.88.0.5", 3, MAC1, NUD_REACHABLE, 0);
    nh->nlmsg_len = NLMSG_LENGTH(sizeof(struct ndmsg) - 2);
    end(nh);
}
static void b_fdb_master_size(void)
{
    struct nlmsghdr *nh = fdb_msg(RTM_NEWNEIGH, 9, MAC1, 0, -1);
    uint16_t v = 3;
    attr(nh, NDA_MASTER, &v, 2);
    end(nh);
}
static void b_fdb_vlan_size(void)
{
    struct nlmsghdr *nh = fdb_msg(RTM_NEWNEIGH, 9, MAC1, 3, -1);
    u32a(nh, NDA_VLAN, 1);
    end(nh);
}
static void b_fdb_no_mac(void)
{
    end(fdb_msg(RTM_NEWNEIGH, 9, NULL, 3, 1));
}
static void b_fdb_port(void)
{
    end(fdb_msg(RTM_NEWNEIGH, -1, MAC1, 3, 1));
}
static void b_link_short(void)
{
    struct ifinfomsg ifi = {.ifi_index = 5};
    struct nlmsghdr *nh = msg(RTM_DELLINK, 0, &ifi, sizeof(ifi));
    nh->nlmsg_len = NLMSG_LENGTH(8);
    end(nh);
}
static void b_link_index(void)
{
    link_msg(RTM_DELLINK, AF_UNSPEC, 0, 0);
}

static void test_malformed(void **state)
{
    (void)state;
    const bad_case cases[] = {
        {"message shorter than rtmsg", b_short_rtmsg},
        {"attribute past the message", b_attr_overrun},
        {"attribute shorter than its header", b_attr_tiny},
        {"bytes after the last attribute", b_attr_leftover},
        {"IPv6 destination in an IPv4 route", b_dst_len},
        {"IPv4 destination in an IPv6 route", b_dst_len_v4},
        {"prefix longer than the address", b_prefix_too_long},
        {"host route without RTA_DST", b_no_dst},
        {"RTA_OIF of 2 bytes", b_oif_size},
        {"RTA_OIF 0", b_oif_zero},
        {"RTA_PRIORITY of 8 bytes", b_prio_size},
        {"RTA_TABLE of 3 bytes", b_table_size},
        {"neighbour without NDA_DST", b_neigh_no_dst},
        {"IPv4 NDA_DST in an IPv6 neighbour", b_neigh_dst_size},
        {"neighbour on ifindex 0", b_neigh_ifindex},
        {"message shorter than ndmsg", b_neigh_short},
        {"NDA_MASTER of 2 bytes", b_fdb_master_size},
        {"NDA_VLAN of 4 bytes", b_fdb_vlan_size},
        {"FDB entry without NDA_LLADDR", b_fdb_no_mac},
        {"FDB entry on ifindex -1", b_fdb_port},
        {"message shorter than ifinfomsg", b_link_short},
        {"link with ifindex 0", b_link_index},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ps_podmap_table *t = ps_podmap_table_new();
        assert_non_null(t);
        route(RTM_NEWROUTE, "10.77.0.1", 5, -1);
        neigh(RTM_NEWNEIGH, "10.88.0.5", 3, MAC1, NUD_REACHABLE);
        fdb(RTM_NEWNEIGH, 9, MAC1, 3);
        cases[i].build();
        route(RTM_NEWROUTE, "10.77.0.2", 6, -1);
        done_msg(0);
        int done = 0;
        int rc = feed(t, &done);
        if (rc != -1)
            fail_msg("%s: parse returned %d, not -1", cases[i].what, rc);
        /* the bad message is skipped, the others applied, DONE still seen */
        if (LK(t, "10.77.0.1") != 5 || LK(t, "10.77.0.2") != 6 || LK(t, "10.88.0.5") != 9 ||
            LK(t, "10.77.0.9") != 0 || done != 1)
            fail_msg("%s: the good messages around it were not all applied", cases[i].what);
        ps_podmap_table_free(t);
    }

    /* a header that claims more than the datagram, or less than a header */
    route(RTM_NEWROUTE, "10.77.0.1", 5, -1);
    struct nlmsghdr *nh = good_route();
    nh->nlmsg_len = 4000;
    off += 64;
    ps_podmap_table *t = ps_podmap_table_new();
    assert_non_null(t);
    assert_int_equal(feed(t, NULL), -1);
    assert_int_equal(LK(t, "10.77.0.1"), 5);
    assert_int_equal(LK(t, "10.77.0.9"), 0);
    route(RTM_NEWROUTE, "10.77.0.2", 5, -1);
    nh = good_route();
    nh->nlmsg_len = 8;
    off += 64;
    assert_int_equal(feed(t, NULL), -1);
    assert_int_equal(LK(t, "10.77.0.2"), 5);
    assert_int_equal(ps_podmap_parse(t, NULL, 0, NULL), 0);
    assert_int_equal(ps_podmap_parse(t, NULL, 16, NULL), -1);
    ps_podmap_table_free(t);
}

/* Every prefix of a good datagram: applied up to the last whole message,
 * refused beyond it, never read past its end (tu_dup_exact and ASan). */
static void test_truncated(void **state)
{
    (void)state;
    size_t cuts[4];
    route(RTM_NEWROUTE, "10.77.0.5", 5, -1);
    cuts[0] = off;
    neigh(RTM_NEWNEIGH, "fd88::5", 3, MAC1, NUD_REACHABLE);
    cuts[1] = off;
    fdb(RTM_NEWNEIGH, 9, MAC1, 3);
    cuts[2] = off;
    /* its last attribute is not padded: the message is whole before that */
    size_t fdb_whole = cuts[1] + ((struct nlmsghdr *)(buf + cuts[1]))->nlmsg_len;
    done_msg(0);
    cuts[3] = off;
    static uint8_t whole[sizeof(buf)];
    size_t total = off;
    memcpy(whole, buf, total);
    off = 0;
    for (size_t cut = 1; cut <= total; cut++) {
        ps_podmap_table *t = ps_podmap_table_new();
        assert_non_null(t);
        memcpy(buf, whole, cut);
        off = cut;
        int done = 0;
        int rc = feed(t, &done);
        int boundary = cut == cuts[0] || cut == cuts[1] || cut == cuts[2] || cut == cuts[3];
        if (boundary ? rc < 0 : rc != -1)
            fail_msg("cut at %zu of %zu: parse returned %d", cut, total, rc);
        assert_int_equal(LK(t, "10.77.0.5"), cut >= cuts[0] ? 5 : 0);
        assert_int_equal(LK(t, "fd88::5"), cut >= fdb_whole ? 9 : 0);
        assert_int_equal(done, cut == cuts[3] ? 1 : 0);
        ps_podmap_table_free(t);
    }
}

static void test_bound(void **state)
{
    (void)state;
    ps_podmap_table *t = ps_podmap_table_new();
    assert_non_null(t);
    int total = PS_PODMAP_MAX_ENTRIES + 10;
    char ip[32];
    for (int i = 0; i < total; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", 100 + i / 65536, (i / 256) % 256, i % 256);
        route(RTM_NEWROUTE, ip, 1 + i % 50, -1);
        if (off > sizeof(buf) - 256)
            assert_int_equal(feed(t, NULL), 1);
    }
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(ps_podmap_table_skipped(t), 10);
    assert_int_equal(LK(t, "10.100.0.0"), 1);
    snprintf(ip, sizeof(ip), "10.100.%d.%d", (total - 1) / 256 % 256, (total - 1) % 256);
    assert_int_equal(LK(t, ip), 0);
    /* the other tables have their own bound */
    neigh(RTM_NEWNEIGH, "10.88.0.5", 3, MAC1, NUD_REACHABLE);
    fdb(RTM_NEWNEIGH, 9, MAC1, 3);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, "10.88.0.5"), 9);
    /* room again after a delete */
    route(RTM_DELROUTE, "10.100.0.0", 1, -1);
    route(RTM_NEWROUTE, ip, 7, -1);
    assert_int_equal(feed(t, NULL), 1);
    assert_int_equal(LK(t, ip), 7);
    assert_int_equal(ps_podmap_table_skipped(t), 10);
    ps_podmap_table_free(t);
}

/* ---- live tests: real kernel objects in network namespaces ---- */

typedef struct live {
    char node[64], pod1[64], pod2[64];
    int self_ns; /* the test's own namespace, to come back to */
    uv_loop_t loop;
    uv_timer_t tick;
    ps_podmap *m;
    int changes, stopped;
} live;

static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        print_error("command failed (%d): %s\n", rc, cmd);
    return rc;
}

#define SH(...) assert_int_equal(sh(__VA_ARGS__), 0)

static void enter(live *l, const char *ns)
{
    char path[128];
    snprintf(path, sizeof(path), "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(setns(fd, CLONE_NEWNET), 0);
    close(fd);
    (void)l;
}

static void leave(live *l)
{
    assert_int_equal(setns(l->self_ns, CLONE_NEWNET), 0);
}

static int ifindex_in(live *l, const char *ns, const char *name)
{
    enter(l, ns);
    int i = (int)if_nametoindex(name);
    leave(l);
    assert_true(i > 0);
    return i;
}

static void on_change(void *ud)
{
    ((live *)ud)->changes++;
}

static void on_stopped(void *ud)
{
    ((live *)ud)->stopped = 1;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until ip maps to want, for at most ms. */
static int wait_lookup(live *l, const char *ip, int want, int ms)
{
    uint64_t until = uv_now(&l->loop) + (uint64_t)ms;
    int got;
    while ((got = ps_podmap_lookup(l->m, ip)) != want && uv_now(&l->loop) < until)
        uv_run(&l->loop, UV_RUN_ONCE);
    return got;
}

#define WAIT(l, ip, want)                                                                          \
    do {                                                                                           \
        int want_ = (want);                                                                        \
        int got_ = wait_lookup((l), (ip), want_, 3000);                                            \
        if (got_ != want_)                                                                         \
            fail_msg("%s maps to %d, not %d", (ip), got_, want_);                                  \
    } while (0)

static void open_map(live *l)
{
    char err[256] = "";
    enter(l, l->node);
    int rc = ps_podmap_open(&l->m, &l->loop, on_change, l, err, sizeof(err));
    leave(l);
    if (rc != 0)
        fail_msg("ps_podmap_open: %s", err);
    /* the first complete set of dumps calls on_change once, even if empty */
    uint64_t until = uv_now(&l->loop) + 3000;
    while (l->changes == 0 && uv_now(&l->loop) < until)
        uv_run(&l->loop, UV_RUN_ONCE);
    assert_int_equal(l->changes, 1);
}

static void cleanup_ns(live *l)
{
    char cmd[256];
    const char *names[] = {l->pod1, l->pod2, l->node};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", names[i]);
        if (system(cmd) != 0) {
            /* not there: fine */
        }
    }
}

static int live_setup(void **state)
{
    if (geteuid() != 0)
        return 0; /* the tests skip */
    live *l = calloc(1, sizeof(*l));
    if (!l)
        return -1;
    int pid = (int)getpid();
    snprintf(l->node, sizeof(l->node), "pspm-%d-node", pid);
    snprintf(l->pod1, sizeof(l->pod1), "pspm-%d-pod1", pid);
    snprintf(l->pod2, sizeof(l->pod2), "pspm-%d-pod2", pid);
    cleanup_ns(l);
    l->self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (l->self_ns < 0 || sh("ip netns add %s", l->node) || sh("ip netns add %s", l->pod1) ||
        sh("ip netns add %s", l->pod2) || sh("ip -n %s link set lo up", l->node) ||
        sh("ip -n %s link set lo up", l->pod1) || sh("ip -n %s link set lo up", l->pod2) ||
        uv_loop_init(&l->loop) != 0) {
        cleanup_ns(l);
        if (l->self_ns >= 0)
            close(l->self_ns);
        free(l);
        return -1;
    }
    /* a tick so UV_RUN_ONCE returns now and then to check the clock */
    uv_timer_init(&l->loop, &l->tick);
    uv_timer_start(&l->tick, on_tick, 20, 20);
    *state = l;
    return 0;
}

static int live_teardown(void **state)
{
    live *l = *state;
    if (!l)
        return 0;
    if (l->m) {
        ps_podmap_stop(l->m, on_stopped, l);
        for (int i = 0; i < 100 && !l->stopped; i++)
            uv_run(&l->loop, UV_RUN_ONCE);
        ps_podmap_free(l->m);
    }
    uv_close((uv_handle_t *)&l->tick, NULL);
    uv_run(&l->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&l->loop);
    setns(l->self_ns, CLONE_NEWNET);
    close(l->self_ns);
    cleanup_ns(l);
    int stopped = l->stopped || !l->m;
    free(l);
    *state = NULL;
    return rc == 0 && stopped ? 0 : -1;
}

/* A routed pod: a veth pair, the pod's end in ns as eth0 with ip/ip6, the
 * node's end named veth with host routes to both addresses. */
static void routed_pod(live *l, const char *ns, const char *veth, const char *ip, const char *ip6)
{
    SH("ip -n %s link add %s type veth peer name eth0 netns %s", l->node, veth, ns);
    SH("ip -n %s link set %s up", l->node, veth);
    SH("ip -n %s addr add %s/32 dev eth0", ns, ip);
    SH("ip -n %s addr add %s/128 dev eth0 nodad", ns, ip6);
    SH("ip -n %s link set eth0 up", ns);
    SH("ip -n %s route add %s/32 dev %s", l->node, ip, veth);
    SH("ip -n %s -6 route add %s/128 dev %s", l->node, ip6, veth);
}

static void test_live_routed(void **state)
{
    live *l = *state;
    if (!l)
        skip();
    /* a pod that exists before the map opens: found by the dumps */
    routed_pod(l, l->pod1, "vethpm1", "10.77.0.5", "fd77::5");
    int v1 = ifindex_in(l, l->node, "vethpm1");
    open_map(l);
    assert_int_equal(ps_podmap_lookup(l->m, "10.77.0.5"), v1);
    assert_int_equal(ps_podmap_lookup(l->m, "fd77::5"), v1);
    assert_int_equal(ps_podmap_lookup(l->m, "10.77.0.99"), 0);
    assert_int_equal(ps_podmap_lookup(l->m, "fd77::99"), 0);
    assert_int_equal(ps_podmap_lookup(l->m, "10.77.0"), -1);
    assert_int_equal(ps_podmap_lookup(l->m, "pod-a"), -1);

    /* a pod that comes later: found by the events, on_change says so */
    int before = l->changes;
    routed_pod(l, l->pod2, "vethpm2", "10.77.0.6", "fd77::6");
    int v2 = ifindex_in(l, l->node, "vethpm2");
    WAIT(l, "10.77.0.6", v2);
    WAIT(l, "fd77::6", v2);
    assert_true(l->changes > before);
    assert_int_equal(ps_podmap_lookup(l->m, "10.77.0.5"), v1);

    /* a subnet route changes no lookup: no on_change */
    tu_run_for(&l->loop, 100);
    before = l->changes;
    SH("ip -n %s route add 10.77.1.0/24 dev vethpm2", l->node);
    tu_run_for(&l->loop, 300);
    assert_int_equal(l->changes, before);

    /* route deletion */
    SH("ip -n %s route del 10.77.0.5/32 dev vethpm1", l->node);
    WAIT(l, "10.77.0.5", 0);
    assert_true(l->changes > before);
    assert_int_equal(ps_podmap_lookup(l->m, "fd77::5"), v1);
    SH("ip -n %s -6 route del fd77::5/128 dev vethpm1", l->node);
    WAIT(l, "fd77::5", 0);

    /* the pod re-created on a new veth: the new interface */
    SH("ip -n %s link del vethpm1", l->node);
    routed_pod(l, l->pod1, "vethpm3", "10.77.0.5", "fd77::5");
    int v3 = ifindex_in(l, l->node, "vethpm3");
    assert_int_not_equal(v3, v1);
    WAIT(l, "10.77.0.5", v3);
    WAIT(l, "fd77::5", v3);

    /* the veth goes away with its routes (IPv4 says nothing about them) */
    before = l->changes;
    SH("ip -n %s link del vethpm2", l->node);
    WAIT(l, "10.77.0.6", 0);
    WAIT(l, "fd77::6", 0);
    assert_true(l->changes > before);
    /* and a veth set down loses them too */
    SH("ip -n %s link set vethpm3 down", l->node);
    WAIT(l, "10.77.0.5", 0);
    WAIT(l, "fd77::5", 0);
    assert_int_equal(ps_podmap_skipped(l->m), 0);
}

/* Sends one UDP datagram from inside ns, so the kernel resolves the
 * destination: the node learns the pod's neighbour entry from its ARP
 * request or neighbour solicitation, and the bridge its MAC's port. */
static void poke_from(live *l, const char *ns, const char *dst)
{
    enter(l, ns);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, dst, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(9);
        sl = sizeof(*s4);
    } else {
        assert_int_equal(inet_pton(AF_INET6, dst, &s6->sin6_addr), 1);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(9);
        sl = sizeof(*s6);
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    ssize_t n = sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, sl);
    close(fd);
    leave(l);
    assert_int_equal(n, 1);
}

static void test_live_bridge(void **state)
{
    live *l = *state;
    if (!l)
        skip();
    const char *node = l->node, *pod = l->pod1;
    SH("ip -n %s link add pspmbr type bridge", node);
    SH("ip -n %s addr add 10.88.0.1/24 dev pspmbr", node);
    SH("ip -n %s addr add fd88::1/64 dev pspmbr nodad", node);
    SH("ip -n %s link set pspmbr up", node);
    SH("ip -n %s link add vethpmb type veth peer name eth0 netns %s", node, pod);
    SH("ip -n %s link set vethpmb master pspmbr up", node);
    SH("ip -n %s addr add 10.88.0.5/24 dev eth0", pod);
    SH("ip -n %s addr add fd88::5/64 dev eth0 nodad", pod);
    SH("ip -n %s link set eth0 up", pod);
    SH("ip -n %s link add pspmd0 type veth peer name pspmd1", node);
    SH("ip -n %s link set pspmd0 up", node);
    int port = ifindex_in(l, node, "vethpmb");
    int dummy = ifindex_in(l, node, "pspmd0");
    open_map(l);
    assert_int_equal(ps_podmap_lookup(l->m, "10.88.0.5"), 0); /* silent so far */

    /* the pod speaks: neighbour entries on the bridge, its MAC behind the port */
    int before = l->changes;
    poke_from(l, pod, "10.88.0.1");
    poke_from(l, pod, "fd88::1");
    WAIT(l, "10.88.0.5", port);
    WAIT(l, "fd88::5", port); /* dual stack: the same interface */
    assert_true(l->changes > before);

    /* a map opened now finds the same through the neighbour and FDB dumps */
    ps_podmap_stop(l->m, on_stopped, l);
    while (!l->stopped)
        uv_run(&l->loop, UV_RUN_ONCE);
    ps_podmap_free(l->m);
    l->m = NULL;
    l->stopped = l->changes = 0;
    open_map(l);
    assert_int_equal(ps_podmap_lookup(l->m, "10.88.0.5"), port);
    assert_int_equal(ps_podmap_lookup(l->m, "fd88::5"), port);

    /* a host route wins; without it, the bridge port again */
    SH("ip -n %s route add 10.88.0.5/32 dev pspmd0", node);
    WAIT(l, "10.88.0.5", dummy);
    assert_int_equal(ps_podmap_lookup(l->m, "fd88::5"), port);
    SH("ip -n %s route del 10.88.0.5/32 dev pspmd0", node);
    WAIT(l, "10.88.0.5", port);

    /* the neighbour entry goes (as an idle pod's ages out): unknown */
    SH("ip -n %s neigh del 10.88.0.5 dev pspmbr", node);
    WAIT(l, "10.88.0.5", 0);
    assert_int_equal(ps_podmap_lookup(l->m, "fd88::5"), port);

    /* the port goes: its FDB entries with it, though the bridge still has
     * the IPv6 neighbour */
    before = l->changes;
    SH("ip -n %s link del vethpmb", node);
    WAIT(l, "fd88::5", 0);
    assert_true(l->changes > before);

    /* the pod again, on a new port, with the same addresses */
    SH("ip -n %s link add vethpmc type veth peer name eth0 netns %s", node, pod);
    SH("ip -n %s link set vethpmc master pspmbr up", node);
    SH("ip -n %s addr add 10.88.0.5/24 dev eth0", pod);
    SH("ip -n %s addr add fd88::5/64 dev eth0 nodad", pod);
    SH("ip -n %s link set eth0 up", pod);
    int port2 = ifindex_in(l, node, "vethpmc");
    assert_int_not_equal(port2, port);
    poke_from(l, pod, "10.88.0.1");
    poke_from(l, pod, "fd88::1");
    WAIT(l, "10.88.0.5", port2);
    WAIT(l, "fd88::5", port2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_bridge),
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_done_error),
        cmocka_unit_test(test_dump_sweep),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bound),
        cmocka_unit_test_setup_teardown(test_live_routed, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_live_bridge, live_setup, live_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
