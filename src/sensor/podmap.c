/*
 * podmap: pod IP -> host interface, from the kernel's routes, neighbours and
 * bridge FDB, kept current over rtnetlink on the libuv loop.
 *
 * Why the kernel's tables and not the CNI's files or the interface names:
 * every CNI leaves its own state somewhere else (Calico in its datastore,
 * the bridge plugin in /var/lib/cni, Cilium in BPF maps), but all of them
 * must make the kernel deliver a pod's packets, and the kernel says where
 * through a host route (point-to-point CNIs) or a neighbour entry plus a
 * bridge FDB entry (bridge CNIs). Names (cali* = Calico) would say which
 * interfaces are pods, not which pod is which.
 *
 * One table holds three kinds of entries (host routes, neighbours, FDB) in a
 * chained hash keyed by what a lookup starts from (an IP for routes and
 * neighbours, a MAC for the FDB), so a lookup is two or three short chain
 * walks. Entries live in one array with a free list; a table is bounded per
 * kind. Dumps replace their kind by generation: each entry carries the
 * generation that last reported it, and the end of a dump sweeps the older
 * ones, so state lost with dropped events (ENOBUFS) does not linger.
 *
 * As in ifwatch.c, netlink is parsed as untrusted input: NLMSG_OK/RTA_OK
 * bound every walk, every attribute's size is checked before it is read,
 * datagrams not from the kernel (nl_pid != 0) are ignored, and a truncated
 * one (MSG_TRUNC) is answered with new dumps. Dumps run one at a time (the
 * kernel refuses a second on one socket) and are matched by sequence
 * number, so a stale dump's NLMSG_DONE cannot end the current one.
 */
#include "podmap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

/* ---- the table ---- */

#define NBUCKETS 4096 /* power of two; ~4 entries a chain when every table is full */
#define NIL (-1)

typedef struct ent {
    int32_t next; /* in its bucket's chain, or in the free list */
    uint32_t gen; /* the generation of its kind that last reported it */
    uint8_t kind; /* PS_PODMAP_ROUTES, _NEIGH, _FDB */
    uint8_t family;
    uint16_t vlan;   /* FDB */
    uint8_t key[16]; /* route, neighbour: the address; FDB: the MAC */
    int32_t ifindex; /* route: output interface; neighbour: device; FDB: port */
    int32_t master;  /* FDB: the bridge */
    uint32_t prio;   /* route: metric */
    uint8_t mac[6];  /* neighbour: link-layer address */
} ent;

struct ps_podmap_table {
    int32_t bucket[NBUCKETS];
    ent *e;
    int32_t cap, used; /* slots allocated; slots ever handed out */
    int32_t free_list;
    int32_t count[PS_PODMAP_KINDS];
    uint32_t gen[PS_PODMAP_KINDS];
    unsigned long skipped;
    int intr; /* NLM_F_DUMP_INTR seen since the last dump_begin */
};

ps_podmap_table *ps_podmap_table_new(void)
{
    ps_podmap_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    for (int i = 0; i < NBUCKETS; i++)
        t->bucket[i] = NIL;
    t->free_list = NIL;
    return t;
}

void ps_podmap_table_free(ps_podmap_table *t)
{
    if (!t)
        return;
    free(t->e);
    free(t);
}

unsigned long ps_podmap_table_skipped(const ps_podmap_table *t)
{
    return t->skipped;
}

static uint32_t hash(int kind, int family, const uint8_t key[16])
{
    uint32_t h = 2166136261u; /* FNV-1a */
    h = (h ^ (uint32_t)kind) * 16777619u;
    h = (h ^ (uint32_t)family) * 16777619u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h & (NBUCKETS - 1);
}

static int same_key(const ent *e, int kind, int family, const uint8_t key[16])
{
    return e->kind == kind && e->family == family && memcmp(e->key, key, 16) == 0;
}

/* Identity within a key: what makes two entries of one address distinct. */
static int same_id(const ent *e, const ent *want)
{
    switch (e->kind) {
    case PS_PODMAP_ROUTES:
        return e->ifindex == want->ifindex && e->prio == want->prio;
    case PS_PODMAP_NEIGH:
        return e->ifindex == want->ifindex;
    default:
        return e->master == want->master && e->vlan == want->vlan;
    }
}

static void unlink_at(ps_podmap_table *t, int32_t *link)
{
    int32_t i = *link;
    *link = t->e[i].next;
    t->count[t->e[i].kind]--;
    t->e[i].next = t->free_list;
    t->free_list = i;
}

/* Removes every entry for which drop() says so; 1 when any went. */
static int drop_where(ps_podmap_table *t, int (*drop)(const ent *e, const void *arg),
                      const void *arg)
{
    int any = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        int32_t *link = &t->bucket[b];
        while (*link != NIL) {
            if (drop(&t->e[*link], arg)) {
                unlink_at(t, link);
                any = 1;
            } else {
                link = &t->e[*link].next;
            }
        }
    }
    return any;
}

/* Removes the entries of want's key (and identity, when exact) and returns
 * 1 when any went. With exact 0 and a route, drops the routes of want's
 * address and metric through other interfaces (NLM_F_REPLACE). */
static int del_entry(ps_podmap_table *t, const ent *want, int exact)
{
    int any = 0;
    int32_t *link = &t->bucket[hash(want->kind, want->family, want->key)];
    while (*link != NIL) {
        const ent *e = &t->e[*link];
        int hit = same_key(e, want->kind, want->family, want->key) &&
                  (exact ? same_id(e, want) : e->prio == want->prio && e->ifindex != want->ifindex);
        if (hit) {
            unlink_at(t, link);
            any = 1;
        } else {
            link = &t->e[*link].next;
        }
    }
    return any;
}

/* Stores want (or renews the entry with its identity). 1 when the table
 * changed, 0 when not, -3 out of memory. A full table skips and counts. */
static int put_entry(ps_podmap_table *t, const ent *want)
{
    uint32_t b = hash(want->kind, want->family, want->key);
    for (int32_t i = t->bucket[b]; i != NIL; i = t->e[i].next) {
        ent *e = &t->e[i];
        if (!same_key(e, want->kind, want->family, want->key) || !same_id(e, want))
            continue;
        e->gen = t->gen[e->kind];
        int changed = e->ifindex != want->ifindex || memcmp(e->mac, want->mac, 6) != 0;
        e->ifindex = want->ifindex;
        memcpy(e->mac, want->mac, 6);
        return changed;
    }
    if (t->count[want->kind] >= PS_PODMAP_MAX_ENTRIES) {
        t->skipped++;
        return 0;
    }
    int32_t i = t->free_list;
    if (i != NIL) {
        t->free_list = t->e[i].next;
    } else {
        if (t->used == t->cap) {
            int32_t ncap = t->cap ? t->cap * 2 : 64;
            if (ncap > PS_PODMAP_MAX_ENTRIES * PS_PODMAP_KINDS)
                ncap = PS_PODMAP_MAX_ENTRIES * PS_PODMAP_KINDS;
            ent *ne = realloc(t->e, (size_t)ncap * sizeof(*ne));
            if (!ne) {
                t->skipped++;
                return -3;
            }
            t->e = ne;
            t->cap = ncap;
        }
        i = t->used++;
    }
    t->e[i] = *want;
    t->e[i].gen = t->gen[want->kind];
    t->e[i].next = t->bucket[b];
    t->bucket[b] = i;
    t->count[want->kind]++;
    return 1;
}

void ps_podmap_table_dump_begin(ps_podmap_table *t, int kind)
{
    if (kind < 0 || kind >= PS_PODMAP_KINDS)
        return;
    t->gen[kind]++;
    t->intr = 0;
}

typedef struct {
    int kind;
    uint32_t gen;
} stale_arg;

static int is_stale(const ent *e, const void *arg)
{
    const stale_arg *a = arg;
    return e->kind == a->kind && e->gen != a->gen;
}

int ps_podmap_table_dump_end(ps_podmap_table *t, int kind)
{
    if (kind < 0 || kind >= PS_PODMAP_KINDS)
        return 0;
    stale_arg a = {kind, t->gen[kind]};
    return drop_where(t, is_stale, &a);
}

/* ---- lookup ---- */

static int parse_ip(const char *ip, int *family, uint8_t key[16])
{
    memset(key, 0, 16);
    if (!ip)
        return -1;
    if (inet_pton(AF_INET, ip, key) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, ip, key) == 1) {
        *family = AF_INET6;
        return 0;
    }
    return -1;
}

/* The port of a bridge behind which mac was learned, or 0. */
static int fdb_port(const ps_podmap_table *t, int bridge, const uint8_t mac[6])
{
    uint8_t key[16] = {0};
    memcpy(key, mac, 6);
    for (int32_t i = t->bucket[hash(PS_PODMAP_FDB, AF_BRIDGE, key)]; i != NIL; i = t->e[i].next) {
        const ent *e = &t->e[i];
        if (same_key(e, PS_PODMAP_FDB, AF_BRIDGE, key) && e->master == bridge)
            return e->ifindex;
    }
    return 0;
}

int ps_podmap_table_lookup(const ps_podmap_table *t, const char *ip)
{
    int family;
    uint8_t key[16];
    if (parse_ip(ip, &family, key) != 0)
        return -1;
    const ent *best = NULL;
    for (int32_t i = t->bucket[hash(PS_PODMAP_ROUTES, family, key)]; i != NIL; i = t->e[i].next) {
        const ent *e = &t->e[i];
        if (same_key(e, PS_PODMAP_ROUTES, family, key) && (!best || e->prio < best->prio))
            best = e;
    }
    if (best)
        return best->ifindex;
    for (int32_t i = t->bucket[hash(PS_PODMAP_NEIGH, family, key)]; i != NIL; i = t->e[i].next) {
        const ent *e = &t->e[i];
        if (!same_key(e, PS_PODMAP_NEIGH, family, key))
            continue;
        int port = fdb_port(t, e->ifindex, e->mac);
        if (port > 0)
            return port;
    }
    return 0;
}

/* ---- parsing ---- */

#define BAD 1 /* a well-framed message with bad content: skipped */

/* Fills tb[type] with the last attribute of each type <= max. 0, or BAD
 * when the attributes do not exactly fill the message's payload. */
static int attrs(const struct nlmsghdr *nh, size_t hdr, const struct rtattr **tb, int max)
{
    memset(tb, 0, sizeof(*tb) * (size_t)(max + 1));
    size_t off = NLMSG_LENGTH(NLMSG_ALIGN(hdr));
    if (nh->nlmsg_len < NLMSG_LENGTH(hdr))
        return BAD;
    if (nh->nlmsg_len <= off)
        return 0; /* no attributes */
    int rlen = (int)(nh->nlmsg_len - off);
    const struct rtattr *rta = (const struct rtattr *)((const char *)nh + off);
    for (; RTA_OK(rta, rlen); rta = RTA_NEXT(rta, rlen))
        if (rta->rta_type <= max)
            tb[rta->rta_type] = rta;
    /* RTA_NEXT may step past the end by the last attribute's padding. */
    return rlen <= 0 ? 0 : BAD;
}

static int u32_attr(const struct rtattr *a, uint32_t *v)
{
    if (RTA_PAYLOAD(a) != 4)
        return BAD;
    memcpy(v, RTA_DATA(a), 4);
    return 0;
}

static int addr_len(int family)
{
    return family == AF_INET ? 4 : 16;
}

typedef struct {
    int ifindex;
    int l3;  /* drop routes and neighbours (down or gone) */
    int fdb; /* drop FDB entries of the port and of the bridge */
} link_arg;

static int on_link_dropped(const ent *e, const void *arg)
{
    const link_arg *a = arg;
    if (e->kind == PS_PODMAP_FDB)
        return a->fdb && (e->ifindex == a->ifindex || e->master == a->ifindex);
    return a->l3 && e->ifindex == a->ifindex;
}

static int parse_link(ps_podmap_table *t, const struct nlmsghdr *nh)
{
    if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
        return -BAD;
    const struct ifinfomsg *ifi = NLMSG_DATA(nh);
    if (ifi->ifi_index <= 0)
        return -BAD;
    link_arg a = {.ifindex = ifi->ifi_index};
    if (ifi->ifi_family == AF_BRIDGE) {
        /* A port's bridge state; DELLINK: it left its bridge (it exists). */
        if (nh->nlmsg_type != RTM_DELLINK)
            return 0;
        a.fdb = 1;
    } else if (nh->nlmsg_type == RTM_DELLINK) {
        a.l3 = a.fdb = 1;
    } else if (!(ifi->ifi_flags & IFF_UP)) {
        a.l3 = 1; /* down: the kernel flushed its routes, silently for IPv4 */
    } else {
        return 0;
    }
    return drop_where(t, on_link_dropped, &a);
}

static int parse_route(ps_podmap_table *t, const struct nlmsghdr *nh)
{
    const struct rtattr *tb[RTA_MAX + 1];
    if (attrs(nh, sizeof(struct rtmsg), tb, RTA_MAX) != 0)
        return -BAD;
    const struct rtmsg *rtm = NLMSG_DATA(nh);
    if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6)
        return 0; /* multicast routing, MPLS, ... */
    int alen = addr_len(rtm->rtm_family);
    uint32_t table = rtm->rtm_table, oif = 0, prio = 0;
    if (tb[RTA_TABLE] && u32_attr(tb[RTA_TABLE], &table) != 0)
        return -BAD;
    if (tb[RTA_OIF] && u32_attr(tb[RTA_OIF], &oif) != 0)
        return -BAD;
    if (tb[RTA_PRIORITY] && u32_attr(tb[RTA_PRIORITY], &prio) != 0)
        return -BAD;
    if (tb[RTA_DST] && RTA_PAYLOAD(tb[RTA_DST]) != (size_t)alen)
        return -BAD;
    if (rtm->rtm_dst_len > alen * 8 || (rtm->rtm_dst_len > 0 && !tb[RTA_DST]))
        return -BAD;
    if (rtm->rtm_dst_len != alen * 8 || table != RT_TABLE_MAIN || rtm->rtm_type != RTN_UNICAST ||
        rtm->rtm_src_len != 0 || (rtm->rtm_flags & RTM_F_CLONED) || tb[RTA_MULTIPATH])
        return 0; /* not a host route with one interface in the main table */
    if (!tb[RTA_OIF])
        return 0; /* through a gateway only, or a nexthop object without compat */
    if (oif == 0 || oif > INT32_MAX)
        return -BAD;
    ent want = {
        .kind = PS_PODMAP_ROUTES, .family = rtm->rtm_family, .ifindex = (int32_t)oif, .prio = prio};
    memcpy(want.key, RTA_DATA(tb[RTA_DST]), (size_t)alen);
    if (nh->nlmsg_type == RTM_DELROUTE)
        return del_entry(t, &want, 1);
    int changed = 0;
    if (nh->nlmsg_flags & NLM_F_REPLACE)
        changed = del_entry(t, &want, 0);
    int rc = put_entry(t, &want);
    return rc < 0 ? rc : (rc | changed);
}

static int parse_neigh(ps_podmap_table *t, const struct nlmsghdr *nh)
{
    const struct rtattr *tb[NDA_MAX + 1];
    if (attrs(nh, sizeof(struct ndmsg), tb, NDA_MAX) != 0)
        return -BAD;
    const struct ndmsg *ndm = NLMSG_DATA(nh);
    int del = nh->nlmsg_type == RTM_DELNEIGH;
    if (ndm->ndm_family == AF_BRIDGE) {
        uint32_t master = 0;
        uint16_t vlan = 0;
        if (tb[NDA_MASTER] && u32_attr(tb[NDA_MASTER], &master) != 0)
            return -BAD;
        if (tb[NDA_VLAN]) {
            if (RTA_PAYLOAD(tb[NDA_VLAN]) != 2)
                return -BAD;
            memcpy(&vlan, RTA_DATA(tb[NDA_VLAN]), 2);
        }
        if (!tb[NDA_LLADDR] || ndm->ndm_ifindex <= 0 || master > INT32_MAX)
            return -BAD;
        if (RTA_PAYLOAD(tb[NDA_LLADDR]) != 6 || master == 0 || (int)master == ndm->ndm_ifindex)
            return 0; /* not Ethernet, the device's own (self) table, or the bridge's address */
        ent want = {.kind = PS_PODMAP_FDB,
                    .family = AF_BRIDGE,
                    .vlan = vlan,
                    .ifindex = ndm->ndm_ifindex,
                    .master = (int32_t)master};
        memcpy(want.key, RTA_DATA(tb[NDA_LLADDR]), 6);
        return del ? del_entry(t, &want, 1) : put_entry(t, &want);
    }
    if (ndm->ndm_family != AF_INET && ndm->ndm_family != AF_INET6)
        return 0;
    int alen = addr_len(ndm->ndm_family);
    if (!tb[NDA_DST] || RTA_PAYLOAD(tb[NDA_DST]) != (size_t)alen || ndm->ndm_ifindex <= 0)
        return -BAD;
    if (ndm->ndm_flags & NTF_PROXY)
        return 0;
    ent want = {.kind = PS_PODMAP_NEIGH, .family = ndm->ndm_family, .ifindex = ndm->ndm_ifindex};
    memcpy(want.key, RTA_DATA(tb[NDA_DST]), (size_t)alen);
    /* No usable MAC (still resolving, failed, not Ethernet) is as no entry. */
    if (del || (ndm->ndm_state & (NUD_INCOMPLETE | NUD_FAILED)) || ndm->ndm_state == NUD_NONE ||
        !tb[NDA_LLADDR] || RTA_PAYLOAD(tb[NDA_LLADDR]) != 6)
        return del_entry(t, &want, 1);
    memcpy(want.mac, RTA_DATA(tb[NDA_LLADDR]), 6);
    return put_entry(t, &want);
}

int ps_podmap_parse(ps_podmap_table *t, const void *buf, size_t len, int *done)
{
    if (!t || (!buf && len) || len > (size_t)INT32_MAX)
        return -1;
    int rem = (int)len, changed = 0, bad = 0, oom = 0;
    const struct nlmsghdr *nh = buf;
    for (; NLMSG_OK(nh, rem); nh = NLMSG_NEXT(nh, rem)) {
        if (nh->nlmsg_flags & NLM_F_DUMP_INTR)
            t->intr = 1;
        int rc = 0;
        switch (nh->nlmsg_type) {
        case NLMSG_DONE:
            if (done)
                *done = t->intr ? 2 : 1;
            return bad ? -1 : oom ? -3 : changed;
        case NLMSG_ERROR:
            return -2;
        case RTM_NEWROUTE:
        case RTM_DELROUTE:
            rc = parse_route(t, nh);
            break;
        case RTM_NEWNEIGH:
        case RTM_DELNEIGH:
            rc = parse_neigh(t, nh);
            break;
        case RTM_NEWLINK:
        case RTM_DELLINK:
            rc = parse_link(t, nh);
            break;
        default:
            break;
        }
        if (rc == -BAD)
            bad = 1;
        else if (rc == -3)
            oom = 1;
        else if (rc > 0)
            changed = 1;
    }
    /* Bytes left that do not form a whole message: a truncated datagram. */
    if (rem != 0)
        bad = 1;
    return bad ? -1 : oom ? -3 : changed;
}

/* ---- the watcher ---- */

#define PS_PODMAP_BUF (64 * 1024) /* the kernel's dump datagrams are <= 32 KiB */
#define PS_PODMAP_RCVBUF (4 * 1024 * 1024)
#define ALL_DUMPS ((1u << PS_PODMAP_KINDS) - 1)

struct ps_podmap {
    uv_poll_t poll;
    int fd;
    void (*on_change)(void *ud);
    void *ud;
    void (*done)(void *ud);
    void *done_ud;
    ps_podmap_table *t;
    unsigned char *buf;
    uint32_t seq;
    int dumping; /* the kind being dumped, or -1 */
    uint32_t dump_seq;
    unsigned pending; /* kinds still to dump, a bit each */
    int ready;        /* the first complete set of dumps was read */
    int stopped;
};

static int send_dump(ps_podmap *m, int kind)
{
    struct {
        struct nlmsghdr nh;
        union {
            struct rtmsg rtm;
            struct ndmsg ndm;
        } u;
    } req;
    memset(&req, 0, sizeof(req));
    if (kind == PS_PODMAP_ROUTES) {
        req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.u.rtm));
        req.nh.nlmsg_type = RTM_GETROUTE;
        req.u.rtm.rtm_family = AF_UNSPEC; /* every family: IPv4 and IPv6 */
    } else {
        req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.u.ndm));
        req.nh.nlmsg_type = RTM_GETNEIGH;
        req.u.ndm.ndm_family = kind == PS_PODMAP_FDB ? AF_BRIDGE : AF_UNSPEC;
    }
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nh.nlmsg_seq = ++m->seq;
    if (m->seq == 0)
        req.nh.nlmsg_seq = ++m->seq; /* events carry 0 */
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(m->fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -1;
    m->dumping = kind;
    m->dump_seq = req.nh.nlmsg_seq;
    return 0;
}

static const char *const kind_name[PS_PODMAP_KINDS] = {"routes", "neighbours", "bridge FDB"};

/* Starts the next pending dump when none runs. A refused request stays
 * pending and is tried again after the next datagram. 1 when the first
 * complete set of dumps has just been read. */
static int next_dump(ps_podmap *m)
{
    if (m->dumping >= 0)
        return 0;
    for (int k = 0; k < PS_PODMAP_KINDS; k++) {
        if (!(m->pending & (1u << k)))
            continue;
        ps_podmap_table_dump_begin(m->t, k);
        if (send_dump(m, k) != 0) {
            ps_warn("sensor", "pod interface map: cannot dump %s: %s", kind_name[k],
                    strerror(errno));
            return 0;
        }
        m->pending &= ~(1u << k);
        return 0;
    }
    if (!m->ready) {
        m->ready = 1;
        return 1;
    }
    return 0;
}

static void lost_events(ps_podmap *m, const char *why)
{
    ps_warn("sensor", "pod interface map %s; reading routes, neighbours and FDB again", why);
    m->pending = ALL_DUMPS;
}

static void on_netlink(uv_poll_t *h, int status, int events)
{
    ps_podmap *m = h->data;
    (void)events;
    if (status < 0) {
        ps_warn("sensor", "pod interface map: %s", uv_strerror(status));
        return;
    }
    int changed = 0;
    /* Bounded so a storm of events cannot monopolise the loop. */
    for (int i = 0; i < 64 && !m->stopped; i++) {
        struct sockaddr_nl from;
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(m->fd, m->buf, PS_PODMAP_BUF, MSG_DONTWAIT | MSG_TRUNC,
                             (struct sockaddr *)&from, &fromlen);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            if (errno == ENOBUFS) {
                lost_events(m, "lost events");
                continue;
            }
            ps_warn("sensor", "pod interface map: %s", strerror(errno));
            break;
        }
        if (fromlen != sizeof(from) || from.nl_pid != 0)
            continue; /* not from the kernel */
        if ((size_t)n > PS_PODMAP_BUF) {
            lost_events(m, "read a truncated message");
            continue;
        }
        /* Only a datagram of the running dump may end it. */
        uint32_t seq = (size_t)n >= sizeof(struct nlmsghdr)
                           ? ((const struct nlmsghdr *)(const void *)m->buf)->nlmsg_seq
                           : 0;
        int ours = m->dumping >= 0 && seq == m->dump_seq;
        int done = 0;
        int rc = ps_podmap_parse(m->t, m->buf, (size_t)n, ours ? &done : NULL);
        if (rc == -1 || rc == -3) {
            ps_warn("sensor", "pod interface map: %s",
                    rc == -1 ? "malformed netlink message ignored"
                             : "out of memory; an entry was not stored");
            changed = 1; /* some of it may have been applied */
        } else if (rc == -2) {
            if (ours) {
                ps_warn("sensor", "pod interface map: the kernel refused to dump %s",
                        kind_name[m->dumping]);
                m->dumping = -1;
            }
        } else if (rc > 0) {
            changed = 1;
        }
        if (done == 2) {
            m->pending |= 1u << m->dumping; /* inconsistent: read it again */
            m->dumping = -1;
        } else if (done == 1) {
            if (ps_podmap_table_dump_end(m->t, m->dumping) > 0)
                changed = 1;
            m->dumping = -1;
        }
        if (next_dump(m))
            changed = 1;
    }
    if (!m->stopped && next_dump(m))
        changed = 1;
    if (changed && m->ready && !m->stopped && m->on_change)
        m->on_change(m->ud);
}

int ps_podmap_open(ps_podmap **out, uv_loop_t *loop, void (*on_change)(void *ud), void *ud,
                   char *err, size_t errlen)
{
    ps_podmap *m = calloc(1, sizeof(*m));
    if (!m || !(m->buf = malloc(PS_PODMAP_BUF)) || !(m->t = ps_podmap_table_new())) {
        if (m)
            free(m->buf);
        free(m);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    m->on_change = on_change;
    m->ud = ud;
    m->dumping = -1;
    m->pending = ALL_DUMPS;
    m->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK,
                             .nl_groups = RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE |
                                          RTMGRP_IPV6_ROUTE};
    const char *what = "socket";
    if (m->fd < 0)
        goto fail;
    /* A node drained onto this one brings a route, a neighbour and several
     * link and FDB messages a pod, in one burst; see ifwatch.c. */
    int rcvbuf = PS_PODMAP_RCVBUF;
    if (setsockopt(m->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0)
        (void)setsockopt(m->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    what = "bind";
    if (bind(m->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto fail;
    what = "dump request";
    ps_podmap_table_dump_begin(m->t, PS_PODMAP_ROUTES);
    if (send_dump(m, PS_PODMAP_ROUTES) != 0)
        goto fail;
    m->pending &= ~(1u << PS_PODMAP_ROUTES);
    if (uv_poll_init(loop, &m->poll, m->fd) != 0) {
        errno = EINVAL;
        what = "poll";
        goto fail;
    }
    m->poll.data = m;
    uv_poll_start(&m->poll, UV_READABLE, on_netlink);
    *out = m;
    return 0;
fail:
    snprintf(err, errlen, "cannot map pod addresses to interfaces (rtnetlink %s): %s", what,
             strerror(errno));
    if (m->fd >= 0)
        close(m->fd);
    ps_podmap_table_free(m->t);
    free(m->buf);
    free(m);
    return -1;
}

int ps_podmap_lookup(const ps_podmap *m, const char *ip)
{
    return ps_podmap_table_lookup(m->t, ip);
}

unsigned long ps_podmap_skipped(const ps_podmap *m)
{
    return ps_podmap_table_skipped(m->t);
}

static void on_closed(uv_handle_t *h)
{
    ps_podmap *m = h->data;
    close(m->fd);
    m->fd = -1;
    if (m->done)
        m->done(m->done_ud);
}

void ps_podmap_stop(ps_podmap *m, void (*done)(void *ud), void *ud)
{
    if (!m || m->stopped)
        return;
    m->stopped = 1;
    m->done = done;
    m->done_ud = ud;
    uv_poll_stop(&m->poll);
    uv_close((uv_handle_t *)&m->poll, on_closed);
}

void ps_podmap_free(ps_podmap *m)
{
    if (!m)
        return;
    if (m->fd >= 0)
        close(m->fd);
    ps_podmap_table_free(m->t);
    free(m->buf);
    free(m);
}
