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

#include <fnmatch.h>
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
#include "podsel.h"
#include "pods.h"
#include "recorder.h"

#define PS_IFACES_TIMEOUT_MS 100 /* ring block timeout: latency bound */
#define PS_IFACES_MAX_ADDRS 16
#define PS_IFACES_FILTER_MAX 8192
#define PS_IFACES_UID_MAX 64                          /* a pod UID is a 36-character UUID */
#define PS_IFACES_DESC_MAX (PS_WIRE_MAX_DESC_LEN + 1) /* pod: interface, UID, labels */
#define PS_IFACES_JOB_TICK_MS 100
/* A job's capture holds its first packets this long after the seam before
 * it reads the preroll, so the recorder's ring blocks up to the seam have
 * been handed over (PS_IFACES_TIMEOUT_MS) and drained. */
#define PS_IFACES_SEAM_WAIT_MS 300
/* With no packet on the job's capture this long after it opened, the seam is
 * the moment it opened. */
#define PS_IFACES_SEAM_IDLE_MS 400
#define PS_IFACES_JOB_PENDING_BYTES (32u << 20) /* packets held while the preroll waits */
#define PS_IFACES_JOBS_KEPT 256                 /* finished jobs remembered (JOB_START replies) */

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

typedef struct job job;

/* One job's capture on one host interface: its own handle (the job's
 * kernel filter) and its own wire index. */
typedef struct jcap {
    ps_ifaces *f;
    job *job;
    uint32_t host;  /* the host interface's slot index (the recorder's key) */
    uint32_t index; /* its own index on the wire */
    ps_capture_live *live;
    int closing, closed;
    int live_state; /* 0: preroll pending, packets held; 1: packets go out */
    int seam_set;
    uint64_t seam;      /* ts of the first packet (or the opening time): preroll < seam <= live */
    uint64_t opened_ns; /* CLOCK_REALTIME after the filter was set */
    uint64_t opened_ms, seam_ms;
    ps_recorder *pending; /* packets held until the preroll is out */
    struct bpf_program prog;
    int has_prog;
    uint64_t packets, bytes, drops; /* delivered (preroll included), dropped here */
    ps_capture_live_counters last;  /* the handle's counters, last read */
} jcap;

struct job {
    job *next;
    uint64_t id, start_ns, end_ns, max_packets, max_bytes;
    uint32_t preroll;
    char *name, *namespaces, *pods, *selector, *interfaces, *filter;
    ps_podsel *sel;
    int state;       /* ps_job_state */
    int final_state; /* while stopping */
    int stopping;
    int limit_hit;
    char msg[512];
    uint64_t packets, bytes, lost;
    jcap **caps;
    size_t n_caps;
};

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
    ps_metric *m_packets, *m_bytes, *m_kdrops, *m_ifdrops, *m_sdrops, *m_waits;
    ps_capture_live_counters closed; /* sum over closed interfaces */
    uint32_t opened_total;
    uint32_t next_index; /* wire indexes: host interfaces and job captures */
    ps_recorder *rec;    /* capture.mode ondemand */
    job *jobs;
    uv_timer_t job_timer;
    size_t open_jcaps;
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
    to->spool_waits += c->spool_waits;
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
    slot *s = NULL;
    for (size_t i = 0; i < f->n_slots && !s; i++)
        if (f->slots[i].live == l)
            s = &f->slots[i];
    if (!s)
        return;
    if (s->announced)
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
    if (f->stopped && f->stop_done && count_open(f) == 0 && f->open_jcaps == 0) {
        void (*done)(void *) = f->stop_done;
        f->stop_done = NULL;
        done(f->o.ud);
    }
}

/* Closing waits for the kernel to hand over the ring's last, partly filled
 * block (it does so after the block timeout): closing at once would lose
 * the packets of the last PS_IFACES_TIMEOUT_MS without counting them. */
static void close_host_jcaps(ps_ifaces *f, uint32_t host);

static void close_slot(ps_ifaces *f, slot *s, const char *why)
{
    if (!s->live || s->closing)
        return;
    close_host_jcaps(f, s->index);
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
                close_slot(f, s, why);
            } else {
                ps_warn("sensor", "%s", msg);
                close_slot(f, s, "read error");
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
    s->series.spool_waits = f->m_waits ? ps_metric_series(f->m_waits, s->name, NULL, NULL) : NULL;
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
    s->index = f->next_index++;
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

static int rec_sink(void *ud, uint32_t index, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                    const uint8_t *data)
{
    ps_ifaces *f = ud;
    return ps_recorder_add(f->rec, index, ts_ns, caplen, origlen, data);
}

static void job_apply_one(ps_ifaces *f, job *j, uint32_t host);

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
    if (f->rec) { /* ondemand: into the flight recorder, nothing on the wire */
        lo.blocked = NULL;
        lo.sink = rec_sink;
        lo.sink_ud = f;
    }
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
    if (!s->announced && !f->rec) {
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
    uint32_t host = s->index; /* s may move: jobs open captures by index */
    for (job *j = f->jobs; j; j = j->next)
        job_apply_one(f, j, host);
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
        close_slot(f, a, owner ? "pod identified" : "pod gone");
        a->reopen = 1;
        a->pending = *l;
        return;
    }
    if (a && (!want || strcmp(a->name, l->name) != 0))
        close_slot(f, a,
                   l->removed                      ? "interface removed"
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

static void jobs_stats(ps_ifaces *f);

static void on_stats_timer(uv_timer_t *t)
{
    ps_ifaces *f = t->data;
    for (size_t i = 0; i < f->n_slots; i++) {
        slot *s = &f->slots[i];
        if (!s->live || !s->announced)
            continue;
        ps_capture_live_counters c;
        ps_capture_live_counters_get(s->live, &c);
        send_stats(f, s, &c);
    }
    jobs_stats(f);
}

/* ---- capture jobs (protocol v2) ---- */

static uint64_t now_realtime_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void send_job_status(ps_ifaces *f, job *j)
{
    uint64_t drops = j->lost;
    for (size_t i = 0; i < j->n_caps; i++) {
        jcap *c = j->caps[i];
        drops += c->drops + c->last.kernel_drops + c->last.drops_spool_full + c->last.drops_oom;
    }
    ps_job_status st = {.job = j->id,
                        .state = (uint32_t)j->state,
                        .packets = j->packets,
                        .bytes = j->bytes,
                        .drops = drops,
                        .msg = j->msg,
                        .msg_len = (uint16_t)strlen(j->msg)};
    ps_uplink_send_job_status(f->o.uplink, &st);
}

static void send_jcap_stats(ps_ifaces *f, jcap *c)
{
    ps_stats st = {.index = c->index,
                   .packets = c->packets,
                   .bytes = c->bytes,
                   .kernel_drops = c->last.kernel_drops,
                   .if_drops = c->last.if_drops,
                   .sensor_drops = c->drops + c->last.drops_spool_full + c->last.drops_oom,
                   .timestamp_ns = now_realtime_ns()};
    ps_uplink_send_stats(f->o.uplink, &st);
}

/* One packet of the job out to the receiver, unless a stop condition says
 * no: the deadline (packets stamped at or after end_ns are not the job's),
 * or its packet and byte limits on this sensor. */
static int jcap_emit(jcap *c, uint64_t ts, uint32_t caplen, uint32_t origlen, const uint8_t *data)
{
    job *j = c->job;
    if (j->end_ns && ts >= j->end_ns)
        return 0;
    if ((j->max_packets && j->packets >= j->max_packets) ||
        (j->max_bytes && j->bytes >= j->max_bytes)) {
        j->limit_hit = 1;
        return 0;
    }
    if (ps_uplink_spool_full(c->f->o.uplink) ||
        ps_batcher_add(c->f->o.batcher, c->index, ts, caplen, origlen, data) != 0) {
        c->drops++;
        return 0;
    }
    c->packets++;
    c->bytes += caplen;
    j->packets++;
    j->bytes += caplen;
    if ((j->max_packets && j->packets >= j->max_packets) ||
        (j->max_bytes && j->bytes >= j->max_bytes))
        j->limit_hit = 1;
    return 0;
}

/* The job's own handle. Both it and the recorder's handle see each packet
 * with the same kernel timestamp, so a timestamp is the seam: before it the
 * recorder's copy is used, from it on the job's; a packet stamped before
 * the seam that reaches the job's handle late is the recorder's. */
static int jcap_sink(void *ud, uint32_t index, uint64_t ts, uint32_t caplen, uint32_t origlen,
                     const uint8_t *data)
{
    jcap *c = ud;
    (void)index;
    if (c->seam_set && ts < c->seam)
        return 0;
    if (c->live_state)
        return jcap_emit(c, ts, caplen, origlen, data);
    if (!c->seam_set) {
        c->seam_set = 1;
        c->seam = ts;
        c->seam_ms = uv_now(c->f->o.loop);
    }
    if (ps_recorder_add(c->pending, 0, ts, caplen, origlen, data) != 0)
        c->drops++;
    return 0;
}

static int emit_record(void *ud, const ps_record *r)
{
    jcap_emit(ud, r->ts_ns, r->caplen, r->origlen, r->data);
    return 0;
}

/* The preroll: the recorder's packets of the host interface from
 * start - preroll up to the seam that pass the job's filter, then what the
 * job's handle held meanwhile. */
static void jcap_go_live(ps_ifaces *f, jcap *c)
{
    if (c->live_state)
        return;
    job *j = c->job;
    if (!c->seam_set) {
        c->seam_set = 1;
        c->seam = c->opened_ns;
    }
    slot *h = slot_by_index(f, c->host);
    if (h && h->live && !h->closing)
        ps_capture_live_drain(h->live);
    uint64_t pre = (uint64_t)j->preroll * 1000000000u;
    ps_recorder_window w = {.iface = c->host,
                            .from_ns = j->start_ns > pre ? j->start_ns - pre : 0,
                            .to_ns = c->seam,
                            .filter = c->has_prog ? &c->prog : NULL};
    uint64_t lost = 0;
    uint64_t n = ps_recorder_read(f->rec, &w, emit_record, c, &lost);
    j->lost += lost;
    ps_recorder_window all = {.iface = 0};
    ps_recorder_read(c->pending, &all, emit_record, c, NULL);
    ps_recorder_totals pt;
    ps_recorder_get_totals(c->pending, &pt);
    c->drops += pt.evicted_room;
    ps_recorder_free(c->pending);
    c->pending = NULL;
    c->live_state = 1;
    ps_debug("sensor", "job %s: preroll of %" PRIu64 " packets (%" PRIu64 " lost) on #%" PRIu32,
             j->name, n, lost, c->index);
}

static void job_finished_all(ps_ifaces *f, job *j)
{
    for (size_t i = 0; i < j->n_caps; i++)
        if (!j->caps[i]->closed)
            return;
    if (!j->stopping)
        return;
    j->stopping = 0;
    j->state = j->final_state;
    ps_info("sensor", "job %s (%" PRIu64 ") %s: packets=%" PRIu64 " bytes=%" PRIu64, j->name, j->id,
            j->state == PS_JOB_STOPPED  ? "stopped"
            : j->state == PS_JOB_FAILED ? "failed"
                                        : "finished",
            j->packets, j->bytes);
    send_job_status(f, j);
}

static void on_jcap_closed(void *ud, ps_capture_live *l, const ps_capture_live_counters *cnt)
{
    jcap *c = ud;
    ps_ifaces *f = c->f;
    (void)l;
    c->last = *cnt;
    send_jcap_stats(f, c);
    c->live = NULL;
    c->closed = 1;
    f->open_jcaps--;
    job_finished_all(f, c->job);
    if (f->stopped && f->stop_done && count_open(f) == 0 && f->open_jcaps == 0) {
        void (*done)(void *) = f->stop_done;
        f->stop_done = NULL;
        done(f->o.ud);
    }
}

static void jcap_close(ps_ifaces *f, jcap *c)
{
    if (!c->live || c->closing)
        return;
    c->closing = 1;
    jcap_go_live(f, c); /* the preroll is the job's even if it ends now */
    ps_capture_live_close_graceful(c->live, on_jcap_closed);
}

static void close_host_jcaps(ps_ifaces *f, uint32_t host)
{
    for (job *j = f->jobs; j; j = j->next)
        for (size_t i = 0; i < j->n_caps; i++)
            if (j->caps[i]->host == host)
                jcap_close(f, j->caps[i]);
}

static int jcap_blocked(void *ud)
{
    jcap *c = ud;
    return blocked(c->f);
}

static void on_jcap_error(void *ud, ps_capture_live *l, const char *msg)
{
    jcap *c = ud;
    (void)l;
    ps_debug("sensor", "job %s: %s", c->job->name, msg);
    jcap_close(c->f, c);
}

static void job_finish(ps_ifaces *f, job *j, int state)
{
    if (j->state != PS_JOB_RUNNING || j->stopping)
        return;
    j->stopping = 1;
    j->final_state = state;
    for (size_t i = 0; i < j->n_caps; i++)
        jcap_close(f, j->caps[i]);
    job_finished_all(f, j);
}

/* Whether item is in the comma-joined list (glob: fnmatch patterns). */
static int list_has(const char *list, const char *item, int glob)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char one[4097];
        if (n < sizeof(one)) {
            memcpy(one, p, n);
            one[n] = '\0';
            if (glob ? fnmatch(one, item, 0) == 0 : strcmp(one, item) == 0)
                return 1;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

/* All the job's non-empty selectors hold for the host interface. */
static int job_matches(ps_ifaces *f, const job *j, const slot *s)
{
    if (j->interfaces[0] && !list_has(j->interfaces, s->name, 1))
        return 0;
    if (!j->namespaces[0] && !j->pods[0] && !j->selector[0])
        return 1;
    const ps_pod *owner = ps_pods_active(f->pods) ? ps_pods_owner(f->pods, s->ifindex) : NULL;
    if (!owner || (s->uid[0] && strcmp(owner->uid, s->uid) != 0))
        return 0;
    if (j->namespaces[0] && !list_has(j->namespaces, owner->ns, 0))
        return 0;
    if (j->pods[0]) {
        char nsname[600];
        snprintf(nsname, sizeof(nsname), "%s/%s", owner->ns, owner->name);
        if (!list_has(j->pods, nsname, 0))
            return 0;
    }
    return !j->sel || ps_podsel_match(j->sel, owner);
}

/* Opens the job's capture on the host interface with index host, when it
 * matches and has none yet. */
static void job_apply_one(ps_ifaces *f, job *j, uint32_t host)
{
    if (j->state != PS_JOB_RUNNING || j->stopping || f->stopped || f->fatal)
        return;
    slot *s = slot_by_index(f, host);
    if (!s || !s->live || s->closing || !job_matches(f, j, s))
        return;
    for (size_t i = 0; i < j->n_caps; i++)
        if (j->caps[i]->host == host && !j->caps[i]->closed)
            return;
    jcap **caps = realloc(j->caps, (j->n_caps + 1) * sizeof(*caps));
    jcap *c = calloc(1, sizeof(*c));
    if (caps)
        j->caps = caps;
    if (!caps || !c) {
        free(c);
        snprintf(j->msg, sizeof(j->msg), "out of memory opening %s", s->name);
        return;
    }
    c->f = f;
    c->job = j;
    c->host = host;
    /* The job's own filter, and the sensor's stream kept out as always;
     * none of the continuous capture's port rules. */
    char filter[PS_IFACES_FILTER_MAX];
    ps_bpf_spec spec = {.mode = PS_PCAP_ALL,
                        .user_filter = j->filter,
                        .receiver_addrs = (const char *const *)f->addrs,
                        .n_receiver_addrs = f->n_addrs,
                        .receiver_port = f->cfg->server_port};
    if (ps_bpf_build(&spec, filter, sizeof(filter)) != PS_BPF_OK) {
        snprintf(j->msg, sizeof(j->msg), "filter of job %s cannot be built", j->name);
        free(c);
        return;
    }
    c->index = f->next_index;
    ps_capture_live_opts lo = {.loop = f->o.loop,
                               .batcher = f->o.batcher,
                               .ifname = s->name,
                               .index = c->index,
                               .snaplen = f->cfg->input_packet_len,
                               .promisc = f->cfg->promiscuous,
                               .buffer_bytes = f->cfg->buffer_size_mb << 20,
                               .timeout_ms = PS_IFACES_TIMEOUT_MS,
                               .blocked = jcap_blocked,
                               .on_error = on_jcap_error,
                               .ud = c,
                               .sink = jcap_sink,
                               .sink_ud = c};
    if (ps_capture_live_open(&c->live, &lo, filter, f->err, sizeof(f->err)) != 0) {
        ps_warn("sensor", "job %s: %s", j->name, f->err);
        snprintf(j->msg, sizeof(j->msg), "%.500s", f->err);
        free(c);
        return;
    }
    f->next_index++;
    c->opened_ns = now_realtime_ns();
    c->opened_ms = uv_now(f->o.loop);
    c->live_state = 1;
    if (f->rec && j->preroll) {
        ps_recorder_opts po = {.max_bytes = PS_IFACES_JOB_PENDING_BYTES};
        c->pending = ps_recorder_new(&po);
        pcap_t *dead = pcap_open_dead((int)ps_capture_live_linktype(c->live),
                                      (int)ps_capture_live_snaplen(c->live));
        if (dead && j->filter[0])
            c->has_prog =
                pcap_compile(dead, &c->prog, j->filter, 1, PCAP_NETMASK_UNKNOWN) == 0 ? 1 : 0;
        int prog_ok = !j->filter[0] || c->has_prog;
        if (dead)
            pcap_close(dead);
        c->live_state = !c->pending || !prog_ok; /* no preroll rather than a wrong one */
    }
    j->caps[j->n_caps++] = c;
    f->open_jcaps++;
    char desc[PS_IFACES_DESC_MAX] = "";
    const ps_pod *owner = s->uid[0] ? ps_pods_owner(f->pods, s->ifindex) : NULL;
    if (owner && ps_pods_describe(owner, s->name, desc, sizeof(desc)) != 0)
        desc[0] = '\0';
    if (ps_uplink_add_iface_job(f->o.uplink, c->index, ps_capture_live_linktype(c->live),
                                ps_capture_live_snaplen(c->live), s->label, desc, j->id) != 0) {
        ps_error("sensor", "out of memory announcing job %s on %s", j->name, s->name);
        jcap_close(f, c);
        return;
    }
    ps_info("sensor", "job %s (%" PRIu64 ") capturing on %s as #%" PRIu32 "%s%s%s", j->name, j->id,
            s->label, c->index, filter[0] ? " filter \"" : "", filter, filter[0] ? "\"" : "");
}

static void job_apply(ps_ifaces *f, job *j)
{
    for (size_t i = 0; i < f->n_slots; i++)
        job_apply_one(f, j, f->slots[i].index);
}

static job *find_job(ps_ifaces *f, uint64_t id)
{
    for (job *j = f->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

static char *dupn(const char *p, uint16_t n)
{
    char *s = malloc((size_t)n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void job_free(job *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n_caps; i++) {
        ps_recorder_free(j->caps[i]->pending);
        if (j->caps[i]->has_prog)
            pcap_freecode(&j->caps[i]->prog);
        free(j->caps[i]);
    }
    free(j->caps);
    ps_podsel_free(j->sel);
    free(j->name);
    free(j->namespaces);
    free(j->pods);
    free(j->selector);
    free(j->interfaces);
    free(j->filter);
    free(j);
}

/* Forgets the oldest finished jobs beyond PS_IFACES_JOBS_KEPT. */
static void prune_jobs(ps_ifaces *f)
{
    size_t n = 0;
    for (job *j = f->jobs; j; j = j->next)
        n++;
    job **pp = &f->jobs;
    while (*pp && n > PS_IFACES_JOBS_KEPT) {
        job *j = *pp;
        if (j->state != PS_JOB_RUNNING && !j->stopping) {
            for (size_t i = 0; i < j->n_caps; i++)
                if (!j->caps[i]->closed)
                    goto keep;
            *pp = j->next;
            job_free(j);
            n--;
            continue;
        }
    keep:
        pp = &j->next;
    }
}

void ps_ifaces_job_start(ps_ifaces *f, const ps_job_start *js)
{
    if (!f || f->stopped)
        return;
    job *j = find_job(f, js->job);
    if (j) { /* re-sent after a reconnect: it runs already (or ran) */
        send_job_status(f, j);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (!j || !(j->name = dupn(js->name, js->name_len)) ||
        !(j->namespaces = dupn(js->namespaces, js->namespaces_len)) ||
        !(j->pods = dupn(js->pods, js->pods_len)) ||
        !(j->selector = dupn(js->label_selector, js->label_selector_len)) ||
        !(j->interfaces = dupn(js->interfaces, js->interfaces_len)) ||
        !(j->filter = dupn(js->filter, js->filter_len))) {
        ps_error("sensor", "out of memory starting job %" PRIu64, js->job);
        job_free(j);
        return;
    }
    j->id = js->job;
    j->start_ns = js->start_ns;
    j->end_ns = js->end_ns;
    j->max_packets = js->max_packets;
    j->max_bytes = js->max_bytes;
    j->preroll = js->preroll_sec;
    j->state = PS_JOB_RUNNING;
    j->next = f->jobs;
    f->jobs = j;
    if (j->selector[0] &&
        ps_podsel_new(&j->sel, NULL, 0, NULL, 0, j->selector, j->msg, sizeof(j->msg)) != 0)
        j->state = PS_JOB_FAILED;
    if (j->state == PS_JOB_RUNNING && j->filter[0] &&
        check_compiles(j->filter, f->cfg->input_packet_len, j->msg, sizeof(j->msg)) != 0)
        j->state = PS_JOB_FAILED;
    if (j->state == PS_JOB_RUNNING && (j->namespaces[0] || j->pods[0] || j->selector[0]) &&
        !f->pods)
        snprintf(j->msg, sizeof(j->msg),
                 "Kubernetes is off on this sensor: no interface matches a pod selector");
    ps_info("sensor",
            "job %s (%" PRIu64 ") %s: preroll %" PRIu32 " s, filter \"%s\", interfaces \"%s\", "
            "namespaces \"%s\", pods \"%s\", labels \"%s\"%s%s",
            j->name, j->id, j->state == PS_JOB_RUNNING ? "started" : "failed", j->preroll,
            j->filter, j->interfaces, j->namespaces, j->pods, j->selector, j->msg[0] ? ": " : "",
            j->msg);
    send_job_status(f, j);
    if (j->state == PS_JOB_RUNNING)
        job_apply(f, j);
    prune_jobs(f);
}

void ps_ifaces_job_stop(ps_ifaces *f, uint64_t id)
{
    job *j = f ? find_job(f, id) : NULL;
    if (j)
        job_finish(f, j, PS_JOB_STOPPED);
}

/* Every PS_IFACES_JOB_TICK_MS: seams that are due, deadlines, limits; the
 * recorder's age bound while interfaces are quiet. */
static void on_job_timer(uv_timer_t *t)
{
    ps_ifaces *f = t->data;
    uint64_t now_ns = now_realtime_ns();
    uint64_t now_ms = uv_now(f->o.loop);
    if (f->rec)
        ps_recorder_expire(f->rec, now_ns);
    for (job *j = f->jobs; j; j = j->next) {
        if (j->state != PS_JOB_RUNNING || j->stopping)
            continue;
        for (size_t i = 0; i < j->n_caps; i++) {
            jcap *c = j->caps[i];
            if (c->live_state || c->closing)
                continue;
            if (c->seam_set ? now_ms - c->seam_ms >= PS_IFACES_SEAM_WAIT_MS
                            : now_ms - c->opened_ms >= PS_IFACES_SEAM_IDLE_MS)
                jcap_go_live(f, c);
        }
        if (j->limit_hit || (j->end_ns && now_ns >= j->end_ns))
            job_finish(f, j, PS_JOB_FINISHED);
    }
}

static void jobs_stats(ps_ifaces *f)
{
    for (job *j = f->jobs; j; j = j->next) {
        if (j->state != PS_JOB_RUNNING)
            continue;
        for (size_t i = 0; i < j->n_caps; i++) {
            jcap *c = j->caps[i];
            if (!c->live || c->closing)
                continue;
            ps_capture_live_counters_get(c->live, &c->last);
            send_jcap_stats(f, c);
        }
        send_job_status(f, j);
    }
}

/* ---- life cycle ---- */

void ps_ifaces_spool_room(ps_ifaces *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_slots; i++)
        if (f->slots[i].live)
            ps_capture_live_resume(f->slots[i].live);
    for (job *j = f->jobs; j; j = j->next)
        for (size_t k = 0; k < j->n_caps; k++)
            if (j->caps[k] && j->caps[k]->live)
                ps_capture_live_resume(j->caps[k]->live);
}

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
    f->m_waits = ps_metrics_family(
        m, PS_METRIC_COUNTER, "packetstreamer_spool_waits_total",
        "Times capture stopped reading for up to 50 ms because the spool was full "
        "(the packets waited in the kernel ring; not drops)",
        "iface");
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
    if (o->cfg->capture_ondemand) {
        ps_recorder_opts ro = {.max_bytes = (uint64_t)o->cfg->recorder_mb << 20,
                               .max_age_ns = (uint64_t)o->cfg->recorder_seconds * 1000000000u};
        if (!(f->rec = ps_recorder_new(&ro))) {
            snprintf(err, errlen, "out of memory");
            ps_ifaces_free(f);
            return -1;
        }
    }
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
    uv_timer_init(o->loop, &f->job_timer);
    f->job_timer.data = f;
    uv_timer_start(&f->job_timer, on_job_timer, PS_IFACES_JOB_TICK_MS, PS_IFACES_JOB_TICK_MS);
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
    uv_timer_stop(&f->job_timer);
    if (!uv_is_closing((uv_handle_t *)&f->job_timer))
        uv_close((uv_handle_t *)&f->job_timer, NULL);
    for (job *j = f->jobs; j; j = j->next)
        for (size_t i = 0; i < j->n_caps; i++)
            jcap_close(f, j->caps[i]);
    for (size_t i = 0; i < f->n_slots; i++)
        close_slot(f, &f->slots[i], "sensor stopping");
    if (count_open(f) == 0 && f->open_jcaps == 0 && f->stop_done) {
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
    t->spool_waits = sum.spool_waits;
    t->opened_total = f->opened_total;
}

void ps_ifaces_recorder_totals(ps_ifaces *f, ps_recorder_totals *t)
{
    memset(t, 0, sizeof(*t));
    if (f && f->rec)
        ps_recorder_get_totals(f->rec, t);
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
    while (f->jobs) {
        job *j = f->jobs;
        f->jobs = j->next;
        job_free(j);
    }
    ps_recorder_free(f->rec);
    free(f->links);
    free(f->slots);
    free(f);
}
