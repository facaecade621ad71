/*
 * ifaces: which interfaces the live sensor captures, and their life cycle.
 *
 * Interfaces are kept in one array that only grows: the slot number is the
 * sensor-local interface index carried by every record, and a slot keeps its
 * kernel ifindex and name after the interface closes so the index is never
 * handed to another interface (the receiver's files name interfaces by it).
 * The receiver needs the announcement of a closed interface again after a
 * reconnect anyway, for spooled batches that still reference it.
 */
#include "ifaces.h"

#include <inttypes.h>
#include <net/if.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "bpf.h"
#include "capture_live.h"
#include "core/log.h"
#include "ifwatch.h"
#include "pods.h"

#define PS_IFACES_TIMEOUT_MS 100 /* ring block timeout: latency bound */
#define PS_IFACES_MAX_ADDRS 16
#define PS_IFACES_FILTER_MAX 8192
#define PS_IFACES_UID_MAX 64                          /* a pod UID is a 36-character UUID */
#define PS_IFACES_DESC_MAX (PS_WIRE_MAX_DESC_LEN + 1) /* pod: interface, UID, labels */

typedef struct slot {
    int ifindex;
    char name[IF_NAMESIZE];
    char uid[PS_IFACES_UID_MAX]; /* owning pod's UID, "" when none is known */
    char *label;                 /* announced name: NS/POD for a pod, else the name */
    uint32_t index;
    ps_capture_live *live;
    int closing;                   /* graceful close under way (ps_capture_live_close_graceful) */
    int reopen;                    /* the link was wanted again while closing */
    ps_link pending;               /* its state then */
    const char *why;               /* why it is closing (a string literal) */
    int warned;                    /* an open failure already logged for this slot */
    int announced;                 /* ps_uplink_add_iface done */
    ps_capture_live_counters base; /* earlier openings of this interface: STATS are
                                    * cumulative for an index within a session */
    ps_capture_live_series series;
    uint64_t evicted;          /* packets evicted from the spool (dropPolicy oldest) */
    ps_series *evicted_series; /* ... as sensor_drops{reason="spool_evicted"} */
} slot;

struct ps_ifaces {
    ps_ifaces_opts o;
    const ps_config *cfg;
    ps_ifsel sel;
    ps_ifwatch *watch;
    ps_pods *pods;  /* NULL without Kubernetes */
    ps_link *links; /* every link now present, as last reported */
    size_t n_links, cap_links;
    uv_timer_t stats_timer;
    slot *slots;
    size_t n_slots, cap_slots;
    char *addrs[PS_IFACES_MAX_ADDRS];
    size_t n_addrs;
    char filter[PS_IFACES_FILTER_MAX];
    char err[PS_IFACES_FILTER_MAX + 512];
    int stopped, fatal;
    void (*stop_done)(void *ud);
    ps_metric *m_packets, *m_bytes, *m_kdrops, *m_ifdrops, *m_sdrops;
    ps_capture_live_counters closed; /* sum over closed interfaces */
    uint32_t opened_total;
};

/* ---- receiver addresses ---- */

static int cmp_addr(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Numeric, scope-less, deduplicated addresses of res into out, sorted so
 * that a resolver's changing order is not taken for a change. */
static size_t collect_addrs(const struct addrinfo *res, char out[][64], size_t max)
{
    size_t n = 0;
    for (const struct addrinfo *a = res; a && n < max; a = a->ai_next) {
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
            continue;
        char host[NI_MAXHOST];
        if (getnameinfo(a->ai_addr, a->ai_addrlen, host, sizeof(host), NULL, 0, NI_NUMERICHOST))
            continue;
        char *pct = strchr(host, '%'); /* fe80::1%eth0: pcap wants no scope */
        if (pct)
            *pct = '\0';
        if (strlen(host) >= 64)
            continue;
        int dup = 0;
        for (size_t i = 0; i < n; i++)
            dup |= strcmp(out[i], host) == 0;
        if (!dup)
            memcpy(out[n++], host, strlen(host) + 1);
    }
    qsort(out, n, sizeof(out[0]), cmp_addr);
    return n;
}

static int set_addrs(ps_ifaces *f, char addrs[][64], size_t n)
{
    int same = n == f->n_addrs;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(addrs[i], f->addrs[i]) == 0;
    if (same)
        return 0;
    for (size_t i = 0; i < f->n_addrs; i++)
        free(f->addrs[i]);
    f->n_addrs = 0;
    for (size_t i = 0; i < n; i++) {
        f->addrs[i] = strdup(addrs[i]);
        if (!f->addrs[i])
            break;
        f->n_addrs++;
    }
    return 1;
}

/* ---- filters ---- */

/* Builds the filter of ifname into f->filter. PS_BPF_* code. */
static int build_filter(ps_ifaces *f, const char *ifname)
{
    const ps_config *c = f->cfg;
    ps_bpf_spec s = {.mode = c->pcap_mode,
                     .capture_ports = &c->capture_ports,
                     .iface_ports = ps_bpf_iface_ports(c, ifname),
                     .ignore_ports = &c->ignore_ports,
                     .user_filter = c->filter,
                     .receiver_addrs = (const char *const *)f->addrs,
                     .n_receiver_addrs = f->n_addrs,
                     .receiver_port = c->server_port};
    return ps_bpf_build(&s, f->filter, sizeof(f->filter));
}

/* Compiles expr for a generic Ethernet link without any interface. */
static int check_compiles(const char *expr, uint32_t snaplen, char *err, size_t errlen)
{
    pcap_t *p = pcap_open_dead(DLT_EN10MB, (int)snaplen);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct bpf_program prog;
    int rc = pcap_compile(p, &prog, expr, 1, PCAP_NETMASK_UNKNOWN);
    if (rc != 0)
        snprintf(err, errlen, "invalid capture filter \"%s\": %s", expr, pcap_geterr(p));
    else
        pcap_freecode(&prog);
    pcap_close(p);
    return rc == 0 ? 0 : -1;
}

/* ---- interfaces ---- */

static slot *slot_by_index(ps_ifaces *f, uint32_t index)
{
    for (size_t i = 0; i < f->n_slots; i++)
        if (f->slots[i].index == index)
            return &f->slots[i];
    return NULL;
}

/* Counts an evicted batch's packets against their interfaces. */
static void count_evicted(void *ud, const ps_batch *b)
{
    ps_ifaces *f = ud;
    ps_record_iter it;
    ps_record r;
    ps_record_iter_init(&it, b->raw.data, b->raw_len);
    while (ps_record_iter_next(&it, &r) == PS_WIRE_OK) {
        slot *s = slot_by_index(f, r.iface);
        if (!s)
            continue;
        s->evicted++;
        if (s->evicted_series)
            ps_series_add(s->evicted_series, 1);
    }
}

/* Called before each drain: may the capture add packets to the batcher?
 * With spool.dropPolicy oldest, room is made by evicting the oldest unsent
 * batches; otherwise (or when none is left) new packets are the ones
 * dropped, counted by the capture as spool_full. */
static int blocked(void *ud)
{
    ps_ifaces *f = ud;
    if (f->cfg->spool_drop_oldest)
        while (ps_uplink_spool_full(f->o.uplink) &&
               ps_uplink_evict_oldest(f->o.uplink, count_evicted, f) > 0)
            ;
    return ps_uplink_spool_full(f->o.uplink);
}

static void add_counters(ps_capture_live_counters *to, const ps_capture_live_counters *c)
{
    to->packets += c->packets;
    to->bytes += c->bytes;
    to->kernel_drops += c->kernel_drops;
    to->if_drops += c->if_drops;
    to->drops_spool_full += c->drops_spool_full;
    to->drops_oom += c->drops_oom;
}

static void send_stats(ps_ifaces *f, slot *s, const ps_capture_live_counters *cur)
{
    ps_capture_live_counters c = s->base;
    add_counters(&c, cur);
    ps_stats st = {.index = s->index,
                   .packets = c.packets,
                   .bytes = c.bytes,
                   .kernel_drops = c.kernel_drops,
                   .if_drops = c.if_drops,
                   .sensor_drops = c.drops_spool_full + c.drops_oom + s->evicted,
                   .timestamp_ns = 0};
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) == 0)
        st.timestamp_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    ps_uplink_send_stats(f->o.uplink, &st);
}

static void evaluate(ps_ifaces *f, const ps_link *l);

static size_t count_open(const ps_ifaces *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n_slots; i++)
        n += f->slots[i].live != NULL;
    return n;
}

/* The last block is in: final counters to the receiver (its last ISB covers
 * every packet of this capture), then maybe open the link again. */
static void on_live_closed(void *ud, ps_capture_live *l, const ps_capture_live_counters *c)
{
    ps_ifaces *f = ud;
    uint32_t idx = ps_capture_live_index(l); /* = the slot's position */
    if (idx >= f->n_slots || f->slots[idx].live != l)
        return;
    slot *s = &f->slots[idx];
    send_stats(f, s, c);
    add_counters(&s->base, c);
    add_counters(&f->closed, c);
    ps_info("sensor",
            "stopped capturing on %s (#%" PRIu32 ", %s): packets=%" PRIu64 " bytes=%" PRIu64
            " kernel_drops=%" PRIu64 " if_drops=%" PRIu64 " sensor_drops=%" PRIu64,
            s->name, s->index, s->why, c->packets, c->bytes, c->kernel_drops, c->if_drops,
            c->drops_spool_full + c->drops_oom);
    s->live = NULL; /* ps_capture_live frees itself after this callback */
    s->closing = 0;
    if (s->reopen && !f->stopped && !f->fatal) {
        s->reopen = 0;
        ps_link again = s->pending;
        evaluate(f, &again); /* may move f->slots: s is not used after */
    }
    s = NULL;
    if (f->stopped && f->stop_done && count_open(f) == 0) {
        void (*done)(void *) = f->stop_done;
        f->stop_done = NULL;
        done(f->o.ud);
    }
}

/* Closing waits for the kernel to hand over the ring's last, partly filled
 * block (it does so after the block timeout): closing at once would lose
 * the packets of the last PS_IFACES_TIMEOUT_MS without counting them. */
static void close_slot(slot *s, const char *why)
{
    if (!s->live || s->closing)
        return;
    s->closing = 1;
    s->reopen = 0;
    s->why = why;
    ps_capture_live_close_graceful(s->live, on_live_closed);
}

/* Why a capture socket failed, if the link itself says so: the kernel
 * flags the socket (ENETDOWN, seen as POLLERR) as the interface goes down or
 * away, usually before its netlink message reaches us. NULL: not that. */
static const char *link_gone_reason(const slot *s)
{
    unsigned idx = if_nametoindex(s->name);
    if (idx == 0 || (int)idx != s->ifindex)
        return "interface removed";
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, s->name, strnlen(s->name, IFNAMSIZ - 1));
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    close(fd);
    if (rc != 0)
        return "interface removed";
    return (ifr.ifr_flags & IFF_UP) ? NULL : "interface down";
}

static void on_live_error(void *ud, ps_capture_live *l, const char *msg)
{
    ps_ifaces *f = ud;
    for (size_t i = 0; i < f->n_slots; i++) {
        slot *s = &f->slots[i];
        if (s->live == l) {
            if (s->closing)
                return; /* already closing: the drain hit the error */
            const char *why = link_gone_reason(s);
            if (why) {
                /* The ordinary end of a pod's interface, not a fault. */
                ps_debug("sensor", "%s", msg);
                close_slot(s, why);
            } else {
                ps_warn("sensor", "%s", msg);
                close_slot(s, "read error");
            }
            return;
        }
    }
}

static void fatal(ps_ifaces *f, const char *msg)
{
    if (f->fatal)
        return;
    f->fatal = 1;
    f->o.on_fatal(f->o.ud, msg);
}

static void make_series(ps_ifaces *f, slot *s)
{
    if (!f->o.metrics || s->series.packets)
        return;
    s->series.packets = f->m_packets ? ps_metric_series(f->m_packets, s->name, NULL, NULL) : NULL;
    s->series.bytes = f->m_bytes ? ps_metric_series(f->m_bytes, s->name, NULL, NULL) : NULL;
    s->series.kernel_drops =
        f->m_kdrops ? ps_metric_series(f->m_kdrops, s->name, NULL, NULL) : NULL;
    s->series.if_drops = f->m_ifdrops ? ps_metric_series(f->m_ifdrops, s->name, NULL, NULL) : NULL;
    s->series.drops_spool_full =
        f->m_sdrops ? ps_metric_series(f->m_sdrops, s->name, "spool_full", NULL) : NULL;
    s->series.drops_oom = f->m_sdrops ? ps_metric_series(f->m_sdrops, s->name, "oom", NULL) : NULL;
    s->evicted_series =
        f->m_sdrops ? ps_metric_series(f->m_sdrops, s->name, "spool_evicted", NULL) : NULL;
}

/* The slot an interface had before: a pod's, by UID, wherever its
 * interface is now (a pod whose sandbox is recreated on a new interface
 * keeps its index, so its packets stay under one name in the files);
 * otherwise the same kernel link under the same name. */
static slot *find_slot(ps_ifaces *f, int ifindex, const char *name, const ps_pod *owner)
{
    for (size_t i = 0; i < f->n_slots; i++) {
        slot *s = &f->slots[i];
        if (owner ? strcmp(s->uid, owner->uid) == 0 && !s->live
                  : s->uid[0] == '\0' && s->ifindex == ifindex && strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

/* The name a pod's interface is announced under: NAMESPACE/POD (the
 * receiver puts the sensor id in front). A name the wire cannot carry
 * (over 255 bytes) keeps the interface's own. */
static char *pod_label(const ps_pod *owner, const char *ifname)
{
    char buf[PS_WIRE_MAX_IFNAME_LEN + 1];
    int n = owner ? snprintf(buf, sizeof(buf), "%s/%s", owner->ns, owner->name) : -1;
    return strdup(n > 0 && (size_t)n < sizeof(buf) ? buf : ifname);
}

static slot *new_slot(ps_ifaces *f, int ifindex, const char *name, const ps_pod *owner)
{
    if (owner && strlen(owner->uid) >= PS_IFACES_UID_MAX)
        owner = NULL; /* not a UID the API server makes */
    char *label = pod_label(owner, name);
    if (!label)
        return NULL;
    if (f->n_slots == f->cap_slots) {
        size_t cap = f->cap_slots ? f->cap_slots * 2 : 16;
        slot *n = realloc(f->slots, cap * sizeof(*n));
        if (!n) {
            free(label);
            return NULL;
        }
        f->slots = n;
        f->cap_slots = cap;
    }
    slot *s = &f->slots[f->n_slots];
    memset(s, 0, sizeof(*s));
    s->ifindex = ifindex;
    snprintf(s->name, sizeof(s->name), "%s", name);
    if (owner)
        snprintf(s->uid, sizeof(s->uid), "%s", owner->uid);
    s->label = label;
    s->index = (uint32_t)f->n_slots;
    return s;
}

/* The pod that owns link l, when pods decide (Kubernetes on and listed). */
static const ps_pod *owner_of(const ps_ifaces *f, const ps_link *l)
{
    return ps_pods_active(f->pods) ? ps_pods_owner(f->pods, l->ifindex) : NULL;
}

static int is_pod_pattern(const char *name)
{
    static const ps_ifsel pods_only = {.pods = 1};
    return ps_ifsel_match(&pods_only, name, 0);
}

/* Whether link l is captured: the interface rules, then, once pods decide,
 * capture.pods for a pod's interface. A pod-style interface whose owner is
 * not known is left alone unless every pod is selected: it is most likely a
 * pod whose watch event is still on its way, and it may be one the user
 * excluded. */
static int wanted(const ps_ifaces *f, const ps_link *l, const ps_pod *owner)
{
    if (l->removed || !(l->flags & IFF_UP) ||
        !ps_ifsel_match(&f->sel, l->name, (l->flags & IFF_LOOPBACK) != 0))
        return 0;
    if (!ps_pods_active(f->pods))
        return !(ps_pods_pending(f->pods) && is_pod_pattern(l->name) &&
                 !ps_pods_selects_all(f->pods));
    if (owner)
        return ps_pods_wants(f->pods, owner);
    return !is_pod_pattern(l->name) || ps_pods_selects_all(f->pods);
}

static void open_link(ps_ifaces *f, const ps_link *l, const ps_pod *owner)
{
    int rc = build_filter(f, l->name);
    if (rc == PS_BPF_NOTHING) {
        ps_debug("sensor", "%s: pcapMode allow gives it no port: not captured", l->name);
        return;
    }
    if (rc != PS_BPF_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s: %s", l->name, ps_bpf_strerror(rc));
        fatal(f, msg);
        return;
    }
    slot *s = find_slot(f, l->ifindex, l->name, owner);
    int fresh = s == NULL;
    if (fresh && !(s = new_slot(f, l->ifindex, l->name, owner))) {
        ps_error("sensor", "out of memory opening %s", l->name);
        return;
    }
    if (!fresh && owner) { /* the pod, on what may be a new interface */
        s->ifindex = l->ifindex;
        snprintf(s->name, sizeof(s->name), "%s", l->name);
    }
    make_series(f, s);
    ps_capture_live_opts lo = {.loop = f->o.loop,
                               .batcher = f->o.batcher,
                               .ifname = l->name,
                               .index = s->index,
                               .snaplen = f->cfg->input_packet_len,
                               .promisc = f->cfg->promiscuous,
                               .buffer_bytes = f->cfg->buffer_size_mb << 20,
                               .timeout_ms = PS_IFACES_TIMEOUT_MS,
                               .blocked = blocked,
                               .on_error = on_live_error,
                               .ud = f,
                               .series = s->series};
    rc = ps_capture_live_open(&s->live, &lo, f->filter, f->err, sizeof(f->err));
    if (rc == PS_CAPTURE_LIVE_E_PERM || rc == PS_CAPTURE_LIVE_E_FILTER) {
        if (fresh) {
            free(s->label);
            s->label = NULL;
        }
        fatal(f, f->err);
        return;
    }
    if (rc != 0) {
        /* Pods' links come and go fast: one that vanished between the event
         * and the open is normal, so it is only a debug line. */
        if (rc == PS_CAPTURE_LIVE_E_NODEV || s->warned)
            ps_debug("sensor", "%s", f->err);
        else
            ps_warn("sensor", "%s", f->err);
        s->warned = 1;
        if (fresh)
            f->n_slots++; /* keep the slot: its index stays reserved for it */
        return;
    }
    if (fresh)
        f->n_slots++;
    if (!s->announced) {
        char desc[PS_IFACES_DESC_MAX] = "";
        if (owner && ps_pods_describe(owner, s->name, desc, sizeof(desc)) != 0)
            desc[0] = '\0'; /* labels too long to describe: the name still says who */
        if (ps_uplink_add_iface(f->o.uplink, s->index, ps_capture_live_linktype(s->live),
                                ps_capture_live_snaplen(s->live), s->label, desc) != 0) {
            ps_error("sensor", "out of memory announcing %s", s->name);
            ps_capture_live_close(s->live);
            s->live = NULL;
            return;
        }
        s->announced = 1;
    }
    s->warned = 0;
    f->opened_total++;
    ps_info("sensor",
            "capturing on %s%s%s (#%" PRIu32 ", linktype %" PRIu32 ", %s timestamps)%s%s%s",
            s->name, s->uid[0] ? " as pod " : "", s->uid[0] ? s->label : "", s->index,
            ps_capture_live_linktype(s->live), ps_capture_live_nano(s->live) ? "ns" : "us",
            f->filter[0] ? " filter \"" : "", f->filter, f->filter[0] ? "\"" : "");
}

/* The slot capturing ifindex and not closing, or else one closing. */
static slot *active_slot(ps_ifaces *f, int ifindex)
{
    slot *closing = NULL;
    for (size_t i = 0; i < f->n_slots; i++) {
        slot *s = &f->slots[i];
        if (s->live && s->ifindex == ifindex) {
            if (!s->closing)
                return s;
            closing = s;
        }
    }
    return closing;
}

/* Decides for link l in its current state: open, keep, close, or close
 * and open again under another identity (its pod became known or changed). */
static void evaluate(ps_ifaces *f, const ps_link *l)
{
    if (f->stopped || f->fatal)
        return;
    const ps_pod *owner = owner_of(f, l);
    int want = wanted(f, l, owner);
    const char *uid = owner ? owner->uid : "";
    slot *a = active_slot(f, l->ifindex);
    if (a && a->closing) {
        /* Same link, same name, back before its close finished (a quick
         * down/up): open it again once closed, under the same index. */
        a->reopen = want && strcmp(a->name, l->name) == 0 && strcmp(a->uid, uid) == 0;
        a->pending = *l;
        if (a->reopen || !want)
            return;
        a = NULL; /* renamed: a new interface, opened now */
    }
    if (a && want && strcmp(a->name, l->name) == 0 && strcmp(a->uid, uid) != 0) {
        /* Its owner changed: the old capture ends before the new one
         * starts, so no packet is in both. */
        close_slot(a, owner ? "pod identified" : "pod gone");
        a->reopen = 1;
        a->pending = *l;
        return;
    }
    if (a && (!want || strcmp(a->name, l->name) != 0))
        close_slot(a, l->removed                      ? "interface removed"
                      : strcmp(a->name, l->name) != 0 ? "interface renamed"
                      : !(l->flags & IFF_UP)          ? "interface down"
                      : owner                         ? "pod no longer selected"
                                                      : "no longer selected");
    else if (a)
        return; /* already capturing it */
    if (want)
        open_link(f, l, owner);
}

/* Keeps the table of present links, so a change of pods can be applied to
 * every link without waiting for the kernel to speak again. */
static void remember_link(ps_ifaces *f, const ps_link *l)
{
    size_t i = 0;
    while (i < f->n_links && f->links[i].ifindex != l->ifindex)
        i++;
    if (l->removed) {
        if (i < f->n_links)
            f->links[i] = f->links[--f->n_links];
        return;
    }
    if (i == f->n_links) {
        if (f->n_links == f->cap_links) {
            size_t cap = f->cap_links ? f->cap_links * 2 : 32;
            ps_link *n = realloc(f->links, cap * sizeof(*n));
            if (!n) {
                ps_warn("sensor",
                        "out of memory: a pod change will reach %s at its next link event",
                        l->name);
                return;
            }
            f->links = n;
            f->cap_links = cap;
        }
        f->n_links++;
    }
    f->links[i] = *l;
}

static void on_link(void *ud, const ps_link *l)
{
    ps_ifaces *f = ud;
    if (f->stopped || f->fatal)
        return;
    remember_link(f, l);
    evaluate(f, l);
}

/* Pods changed (a watch event, or the kernel moved an address): decide
 * again for every link. */
static void on_pods_change(void *ud)
{
    ps_ifaces *f = ud;
    for (size_t i = 0; i < f->n_links && !f->stopped && !f->fatal; i++) {
        ps_link l = f->links[i]; /* evaluate() may not touch the table, but copy anyway */
        evaluate(f, &l);
    }
}

static void on_dump_done(void *ud)
{
    ps_ifaces *f = ud;
    if (count_open(f) == 0 && !f->fatal)
        ps_warn("sensor", "no interface to capture on yet; waiting for one to appear");
}

static void on_stats_timer(uv_timer_t *t)
{
    ps_ifaces *f = t->data;
    for (size_t i = 0; i < f->n_slots; i++) {
        slot *s = &f->slots[i];
        if (!s->live)
            continue;
        ps_capture_live_counters c;
        ps_capture_live_counters_get(s->live, &c);
        send_stats(f, s, &c);
    }
}

/* ---- life cycle ---- */

void ps_ifaces_receiver_resolved(ps_ifaces *f, const struct addrinfo *res)
{
    if (!f || f->stopped)
        return;
    char addrs[PS_IFACES_MAX_ADDRS][64];
    size_t n = collect_addrs(res, addrs, PS_IFACES_MAX_ADDRS);
    if (n == 0 || !set_addrs(f, addrs, n))
        return;
    char list[PS_IFACES_MAX_ADDRS * 66] = "";
    for (size_t i = 0, off = 0; i < f->n_addrs && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", f->addrs[i]);
    ps_info("sensor", "receiver address changed (now %s); rebuilding capture filters", list);
    for (size_t i = 0; i < f->n_slots; i++) {
        slot *s = &f->slots[i];
        if (!s->live)
            continue;
        int rc = build_filter(f, s->name);
        if (rc == PS_BPF_OK &&
            ps_capture_live_set_filter(s->live, f->filter, f->err, sizeof(f->err)) == 0)
            continue;
        if (rc != PS_BPF_OK)
            snprintf(f->err, sizeof(f->err), "%s: %s", s->name, ps_bpf_strerror(rc));
        fatal(f, f->err);
        return;
    }
}

static void register_metrics(ps_ifaces *f)
{
    ps_metrics *m = f->o.metrics;
    if (!m)
        return;
    f->m_packets = ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_captured_packets_total",
                                     "Packets captured on the interface", "iface");
    f->m_bytes =
        ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_captured_bytes_total",
                          "Bytes captured on the interface (sum of capture lengths)", "iface");
    f->m_kdrops =
        ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_kernel_drops_total",
                          "Packets the kernel dropped: capture ring full (ps_drop)", "iface");
    f->m_ifdrops =
        ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_interface_drops_total",
                          "Packets the interface or driver dropped (ps_ifdrop)", "iface");
    f->m_sdrops = ps_metrics_family(m, PS_METRIC_COUNTER, "packetstreamer_sensor_drops_total",
                                    "Packets the sensor dropped, by reason", "iface,reason");
}

int ps_ifaces_open(ps_ifaces **out, const ps_ifaces_opts *o, char *err, size_t errlen)
{
    ps_ifaces *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->o = *o;
    f->cfg = o->cfg;
    f->sel.include = o->cfg->interfaces;
    f->sel.n_include = o->cfg->interfaces_count;
    f->sel.exclude = o->cfg->exclude_interfaces;
    f->sel.n_exclude = o->cfg->exclude_interfaces_count;
    f->sel.pods = o->cfg->pod_interfaces;

    /* The receiver's addresses, now: capture starts before the first
     * connection, and must not see that connection either. Blocking is fine
     * here, before the loop runs. */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int grc = getaddrinfo(o->cfg->server_address, NULL, &hints, &res);
    if (grc == 0) {
        char addrs[PS_IFACES_MAX_ADDRS][64];
        set_addrs(f, addrs, collect_addrs(res, addrs, PS_IFACES_MAX_ADDRS));
        freeaddrinfo(res);
    } else {
        ps_warn("sensor",
                "cannot resolve receiver '%s' yet (%s): its stream is excluded from capture once "
                "it resolves",
                o->cfg->server_address, gai_strerror(grc));
    }

    /* A filter that cannot compile fails now, not when a pod appears. */
    int rc = build_filter(f, "");
    if (rc != PS_BPF_OK && rc != PS_BPF_NOTHING) {
        snprintf(err, errlen, "%s", ps_bpf_strerror(rc));
        ps_ifaces_free(f);
        return -1;
    }
    if (rc == PS_BPF_OK && check_compiles(f->filter, o->cfg->input_packet_len, err, errlen) != 0) {
        ps_ifaces_free(f);
        return -1;
    }
    register_metrics(f);
    if (ps_pods_wanted(o->cfg)) {
        ps_pods_opts po = {.loop = o->loop,
                           .cfg = o->cfg,
                           .metrics = o->metrics,
                           .on_change = on_pods_change,
                           .ud = f};
        /* Fatal even in auto mode: running on would capture the pods the
         * user's selection leaves out. */
        if (ps_pods_open(&f->pods, &po, err, errlen) != 0) {
            ps_ifaces_free(f);
            return -1;
        }
    }
    if (ps_ifwatch_open(&f->watch, o->loop, on_link, on_dump_done, f, err, errlen) != 0) {
        ps_ifaces_free(f);
        return -1;
    }
    uv_timer_init(o->loop, &f->stats_timer);
    f->stats_timer.data = f;
    uint64_t iv = (uint64_t)o->cfg->stats_interval_sec * 1000;
    uv_timer_start(&f->stats_timer, on_stats_timer, iv, iv);
    *out = f;
    return 0;
}

void ps_ifaces_stop(ps_ifaces *f, void (*done)(void *ud))
{
    if (!f)
        return;
    if (f->stopped) {
        f->stop_done = done; /* a fatal error after a signal: nobody waits any more */
        return;
    }
    f->stopped = 1;
    f->stop_done = done;
    ps_ifwatch_close(f->watch);
    f->watch = NULL;
    ps_pods_stop(f->pods);
    uv_timer_stop(&f->stats_timer);
    if (!uv_is_closing((uv_handle_t *)&f->stats_timer))
        uv_close((uv_handle_t *)&f->stats_timer, NULL);
    for (size_t i = 0; i < f->n_slots; i++)
        close_slot(&f->slots[i], "sensor stopping");
    if (count_open(f) == 0 && f->stop_done) {
        f->stop_done = NULL;
        done(f->o.ud);
    }
}

void ps_ifaces_get_totals(ps_ifaces *f, ps_ifaces_totals *t)
{
    memset(t, 0, sizeof(*t));
    ps_capture_live_counters sum = f->closed;
    uint64_t evicted = 0;
    for (size_t i = 0; i < f->n_slots; i++) {
        evicted += f->slots[i].evicted;
        if (!f->slots[i].live)
            continue;
        ps_capture_live_counters c;
        ps_capture_live_counters_get(f->slots[i].live, &c);
        add_counters(&sum, &c);
        t->open_now++;
    }
    t->packets = sum.packets;
    t->bytes = sum.bytes;
    t->kernel_drops = sum.kernel_drops;
    t->if_drops = sum.if_drops;
    t->sensor_drops = sum.drops_spool_full + sum.drops_oom + evicted;
    t->evicted = evicted;
    t->opened_total = f->opened_total;
}

void ps_ifaces_free(ps_ifaces *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_addrs; i++)
        free(f->addrs[i]);
    for (size_t i = 0; i < f->n_slots; i++)
        free(f->slots[i].label);
    ps_pods_free(f->pods);
    free(f->links);
    free(f->slots);
    free(f);
}
