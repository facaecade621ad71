/*
 * capture_live: libpcap live handles on the libuv loop.
 *
 * Why pcap_create/pcap_activate rather than pcap_open_live: only that path
 * sets the ring size, the timestamp precision and immediate mode, and only
 * pcap_activate's return codes tell a missing capability (PCAP_ERROR_PERM_*)
 * from a missing interface, which the operator needs to hear about.
 *
 * Why a bounded drain: one busy interface must not starve the others, the
 * uplink's writes and ACKs. epoll (under uv_poll) is level-triggered, so what
 * is left in the ring wakes us again on the next loop iteration. The bound
 * is in bytes as well as packets: nothing is sent while a drain runs, so a
 * drain must stay well below the spool (8 MiB by default). Bounded by
 * packets alone (8192), a backlog of 1400-byte packets filled the whole spool
 * in one callback before the first batch went out, and the packets after it
 * were dropped as spool_full at the start of every busy capture.
 *
 * Why a hold: when the spool is full the ring is still a buffer. Draining it
 * into spool_full drops at once threw packets away that an ACK a few
 * milliseconds later had room for; so the capture first stops reading for
 * up to PS_CAPTURE_LIVE_HOLD_MS (resumed at once by ps_capture_live_resume
 * when an ACK frees room). A receiver that stays away longer gets the old
 * behaviour: the ring is drained and its packets counted as spool_full, so a
 * long outage is not blamed on the kernel.
 */
#include "capture_live.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcap/pcap.h>

#include "capture.h"
#include "core/wire.h"

#define PS_CAPTURE_LIVE_DISPATCH_CNT 512
#define PS_CAPTURE_LIVE_DISPATCH_ROUNDS 16
/* Captured bytes after which a drain from the loop returns (checked per
 * packet: one round of 512 large packets could be 128 MiB). */
#define PS_CAPTURE_LIVE_DRAIN_BYTES (1u << 20)
/* How long a full spool leaves packets in the ring before they are dropped:
 * well under what the default ring holds at the rates it is sized for
 * (4 MiB is 100 ms at 40 MB/s). */
#define PS_CAPTURE_LIVE_HOLD_MS 50

struct ps_capture_live {
    pcap_t *p;
    uv_poll_t poll;
    ps_capture_live_opts o;
    char *name;
    uint32_t linktype, snaplen;
    int nano;
    int dropping;         /* spool full during this dispatch round */
    int held;             /* not reading: spool full, waiting for room (hold_timer) */
    int hold_spent;       /* this full spell already held once: drop now */
    uint64_t budget_left; /* bytes this drain may still take */
    int failed;
    int closing;
    int open_handles; /* poll, hold timer (and the close timer once closing) */
    uv_timer_t close_timer;
    uv_timer_t hold_timer;
    void (*close_done)(void *ud, ps_capture_live *l, const ps_capture_live_counters *c);
    ps_capture_live_counters c;
    ps_capture_live_counters pushed; /* what the metrics series already hold */
    uint32_t last_drop, last_ifdrop; /* pcap_stats' 32-bit values, for wrap */
};

static void series_push(ps_series *s, uint64_t now, uint64_t *pushed)
{
    if (s && now > *pushed)
        ps_series_add(s, now - *pushed);
    *pushed = now;
}

static void push_metrics(ps_capture_live *l)
{
    const ps_capture_live_series *s = &l->o.series;
    series_push(s->packets, l->c.packets, &l->pushed.packets);
    series_push(s->bytes, l->c.bytes, &l->pushed.bytes);
    series_push(s->kernel_drops, l->c.kernel_drops, &l->pushed.kernel_drops);
    series_push(s->if_drops, l->c.if_drops, &l->pushed.if_drops);
    series_push(s->drops_spool_full, l->c.drops_spool_full, &l->pushed.drops_spool_full);
    series_push(s->drops_oom, l->c.drops_oom, &l->pushed.drops_oom);
    series_push(s->spool_waits, l->c.spool_waits, &l->pushed.spool_waits);
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *data)
{
    ps_capture_live *l = (ps_capture_live *)user;
    /* Dropped packets count too: the bound is on the time the loop waits. */
    if (h->caplen >= l->budget_left) {
        l->budget_left = 0;
        pcap_breakloop(l->p);
    } else {
        l->budget_left -= h->caplen;
    }
    if (l->dropping) {
        l->c.drops_spool_full++;
        return;
    }
    /* libpcap never hands out more than the snap length; the wire format's
     * own bound is checked again so a surprise cannot become a bad record. */
    uint32_t caplen = h->caplen;
    if (caplen > PS_WIRE_MAX_CAPLEN)
        caplen = PS_WIRE_MAX_CAPLEN;
    uint32_t origlen = h->len < caplen ? caplen : h->len;
    uint64_t frac = (uint64_t)h->ts.tv_usec * (l->nano ? 1u : 1000u);
    uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000000u + frac;
    if (l->o.sink ? l->o.sink(l->o.sink_ud, l->o.index, ts, caplen, origlen, data) != 0
                  : ps_batcher_add(l->o.batcher, l->o.index, ts, caplen, origlen, data) != 0) {
        l->c.drops_oom++;
        return;
    }
    l->c.packets++;
    l->c.bytes += caplen; /* what the receiver gets (docs/protocol.md, STATS) */
}

static void live_fail(ps_capture_live *l, const char *what)
{
    if (l->failed)
        return;
    l->failed = 1;
    uv_poll_stop(&l->poll);
    if (l->closing)
        return; /* the interface went away while we wait for its last block */
    char msg[PCAP_ERRBUF_SIZE + 128];
    snprintf(msg, sizeof(msg), "capture on %s stopped: %s", l->name, what);
    if (l->o.on_error)
        l->o.on_error(l->o.ud, l, msg);
}

static void on_readable(uv_poll_t *h, int status, int events);

static void end_hold(ps_capture_live *l)
{
    l->held = 0;
    if (!l->failed && !l->closing)
        uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void on_hold_timer(uv_timer_t *t)
{
    ps_capture_live *l = t->data;
    l->hold_spent = 1; /* still no room: this spell's packets are dropped (counted) */
    end_hold(l);
}

void ps_capture_live_resume(ps_capture_live *l)
{
    if (!l || !l->held)
        return;
    uv_timer_stop(&l->hold_timer);
    end_hold(l);
}

/* One pcap_dispatch round. The break on_packet asks for ends the round that
 * saw it; should a libpcap leave it set past a round that ended on its own,
 * the next round would return at once with it, so that one is run again. */
static int dispatch(ps_capture_live *l)
{
    int n = pcap_dispatch(l->p, PS_CAPTURE_LIVE_DISPATCH_CNT, on_packet, (u_char *)l);
    if (n == PCAP_ERROR_BREAK && l->budget_left > 0)
        n = pcap_dispatch(l->p, PS_CAPTURE_LIVE_DISPATCH_CNT, on_packet, (u_char *)l);
    return n;
}

/* Up to rounds x PS_CAPTURE_LIVE_DISPATCH_CNT packets and about budget
 * bytes (the packet that crosses it is the last). may_hold: a full spool
 * stops the drain (see "Why a hold") instead of dropping, once per full
 * spell. */
static int drain(ps_capture_live *l, int rounds, uint64_t budget, int may_hold)
{
    l->budget_left = budget;
    for (int r = 0; r < rounds && l->budget_left > 0; r++) {
        l->dropping = l->o.blocked ? l->o.blocked(l->o.ud) != 0 : 0;
        if (!l->dropping) {
            l->hold_spent = 0;
        } else if (may_hold && !l->hold_spent) {
            l->held = 1;
            l->c.spool_waits++;
            push_metrics(l);
            uv_poll_stop(&l->poll);
            uv_timer_start(&l->hold_timer, on_hold_timer, PS_CAPTURE_LIVE_HOLD_MS, 0);
            break;
        }
        int n = dispatch(l);
        if (n < 0) {
            push_metrics(l);
            return n == PCAP_ERROR_BREAK ? 0 : -1;
        }
        if (n < PS_CAPTURE_LIVE_DISPATCH_CNT)
            break;
    }
    push_metrics(l);
    return 0;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    ps_capture_live *l = h->data;
    (void)events;
    if (status < 0 && l->closing) {
        /* POLLERR once the interface is gone: stop polling, the close timer
         * still drains what the kernel retires. */
        uv_poll_stop(&l->poll);
        return;
    }
    if (status < 0) {
        /* libuv reports POLLERR on a poll handle as UV_EBADF; on a packet
         * socket it means the interface went down or away (ENETDOWN). */
        live_fail(l, status == UV_EBADF ? "socket error (interface down or removed)"
                                        : uv_strerror(status));
        return;
    }
    if (drain(l, PS_CAPTURE_LIVE_DISPATCH_ROUNDS, PS_CAPTURE_LIVE_DRAIN_BYTES, 1) != 0)
        live_fail(l, pcap_geterr(l->p));
}

void ps_capture_live_drain(ps_capture_live *l)
{
    if (!l->failed && drain(l, 1 << 20, UINT64_MAX, 0) != 0)
        live_fail(l, pcap_geterr(l->p));
}

static int apply_filter(pcap_t *p, const char *ifname, const char *filter, char *err, size_t errlen)
{
    struct bpf_program prog;
    if (pcap_compile(p, &prog, filter ? filter : "", 1, PCAP_NETMASK_UNKNOWN) != 0) {
        snprintf(err, errlen, "invalid filter \"%s\" on %s: %s", filter ? filter : "", ifname,
                 pcap_geterr(p));
        return -1;
    }
    int rc = pcap_setfilter(p, &prog);
    pcap_freecode(&prog);
    if (rc != 0) {
        snprintf(err, errlen, "cannot apply filter \"%s\" on %s: %s", filter ? filter : "", ifname,
                 pcap_geterr(p));
        return -1;
    }
    return 0;
}

int ps_capture_live_set_filter(ps_capture_live *l, const char *filter, char *err, size_t errlen)
{
    return apply_filter(l->p, l->name, filter, err, errlen);
}

static int activate_error(pcap_t *p, int rc, const ps_capture_live_opts *o, char *err,
                          size_t errlen)
{
    const char *why = pcap_geterr(p);
    switch (rc) {
    case PCAP_ERROR_PERM_DENIED:
        snprintf(err, errlen,
                 "cannot capture on %s: permission denied (%s); the sensor needs CAP_NET_RAW: "
                 "run it as root or grant the capability (setcap cap_net_raw+ep, or "
                 "securityContext.capabilities.add: [NET_RAW] in Kubernetes)",
                 o->ifname, why);
        return PS_CAPTURE_LIVE_E_PERM;
    case PCAP_ERROR_PROMISC_PERM_DENIED:
        snprintf(err, errlen,
                 "cannot put %s in promiscuous mode: permission denied (%s); "
                 "capture.promiscuous needs CAP_NET_ADMIN",
                 o->ifname, why);
        return PS_CAPTURE_LIVE_E_PERM;
    case PCAP_ERROR_NO_SUCH_DEVICE:
        snprintf(err, errlen, "cannot capture on %s: no such interface", o->ifname);
        return PS_CAPTURE_LIVE_E_NODEV;
    case PCAP_ERROR_IFACE_NOT_UP:
        snprintf(err, errlen, "cannot capture on %s: interface is down", o->ifname);
        return PS_CAPTURE_LIVE_E_NODEV;
    default:
        snprintf(err, errlen, "cannot capture on %s: %s (%s)", o->ifname, pcap_statustostr(rc),
                 why);
        return PS_CAPTURE_LIVE_E_OTHER;
    }
}

int ps_capture_live_open(ps_capture_live **out, const ps_capture_live_opts *o, const char *filter,
                         char *err, size_t errlen)
{
    char ebuf[PCAP_ERRBUF_SIZE] = "";
    *out = NULL;
    pcap_t *p = pcap_create(o->ifname, ebuf);
    if (!p) {
        snprintf(err, errlen, "cannot capture on %s: %s", o->ifname, ebuf);
        return PS_CAPTURE_LIVE_E_OTHER;
    }
    uint32_t snaplen = o->snaplen > PS_WIRE_MAX_CAPLEN ? PS_WIRE_MAX_CAPLEN : o->snaplen;
    pcap_set_snaplen(p, (int)snaplen);
    pcap_set_promisc(p, o->promisc ? 1 : 0);
    pcap_set_buffer_size(p, (int)o->buffer_bytes);
    pcap_set_timeout(p, o->timeout_ms);
    pcap_set_immediate_mode(p, 0);
    int nano = pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO) == 0;
    int rc = pcap_activate(p);
    if (rc < 0) {
        rc = activate_error(p, rc, o, err, errlen);
        pcap_close(p);
        return rc;
    }
    /* Warnings (rc > 0, e.g. PCAP_WARNING_PROMISC_NOTSUP) leave a usable handle. */
    nano = nano && pcap_get_tstamp_precision(p) == PCAP_TSTAMP_PRECISION_NANO;
    if (apply_filter(p, o->ifname, filter, err, errlen) != 0) {
        pcap_close(p);
        return PS_CAPTURE_LIVE_E_FILTER;
    }
    if (pcap_setnonblock(p, 1, ebuf) != 0) {
        snprintf(err, errlen, "cannot capture on %s: %s", o->ifname, ebuf);
        pcap_close(p);
        return PS_CAPTURE_LIVE_E_OTHER;
    }
    int fd = pcap_get_selectable_fd(p);
    ps_capture_live *l = calloc(1, sizeof(*l));
    if (!l || !(l->name = strdup(o->ifname))) {
        free(l);
        pcap_close(p);
        snprintf(err, errlen, "out of memory");
        return PS_CAPTURE_LIVE_E_OTHER;
    }
    l->p = p;
    l->o = *o;
    l->o.ifname = l->name;
    l->nano = nano;
    l->linktype = ps_capture_linktype(pcap_datalink(p));
    int s = pcap_snapshot(p);
    l->snaplen = s > 0 && (uint32_t)s <= PS_WIRE_MAX_CAPLEN ? (uint32_t)s : PS_WIRE_MAX_CAPLEN;
    int urc = fd < 0 ? UV_EINVAL : uv_poll_init(o->loop, &l->poll, fd);
    if (urc != 0) {
        snprintf(err, errlen, "cannot capture on %s: no pollable descriptor (%s)", o->ifname,
                 uv_strerror(urc));
        free(l->name);
        free(l);
        pcap_close(p);
        return PS_CAPTURE_LIVE_E_OTHER;
    }
    l->poll.data = l;
    uv_timer_init(o->loop, &l->hold_timer);
    l->hold_timer.data = l;
    l->open_handles = 2;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    *out = l;
    return 0;
}

uint32_t ps_capture_live_linktype(const ps_capture_live *l)
{
    return l->linktype;
}

uint32_t ps_capture_live_snaplen(const ps_capture_live *l)
{
    return l->snaplen;
}

uint32_t ps_capture_live_index(const ps_capture_live *l)
{
    return l->o.index;
}

const char *ps_capture_live_name(const ps_capture_live *l)
{
    return l->name;
}

int ps_capture_live_nano(const ps_capture_live *l)
{
    return l->nano;
}

void ps_capture_live_counters_get(ps_capture_live *l, ps_capture_live_counters *c)
{
    struct pcap_stat st;
    if (pcap_stats(l->p, &st) == 0) {
        /* 32-bit counters in libpcap's struct: accumulate deltas modulo 2^32
         * so a long-running capture never sees them go backwards. */
        l->c.kernel_drops += (uint32_t)(st.ps_drop - l->last_drop);
        /* ps_ifdrop is libpcap's difference of the interface's sysfs
         * counter since open; once the interface is gone that read gives 0
         * and the value would step back: no wrap is meant there. */
        if (st.ps_ifdrop >= l->last_ifdrop)
            l->c.if_drops += st.ps_ifdrop - l->last_ifdrop;
        l->last_drop = st.ps_drop;
        l->last_ifdrop = st.ps_ifdrop;
    }
    push_metrics(l);
    *c = l->c;
}

static void on_handle_closed(uv_handle_t *h)
{
    ps_capture_live *l = h->data;
    if (--l->open_handles > 0)
        return;
    pcap_close(l->p);
    free(l->name);
    free(l);
}

void ps_capture_live_close(ps_capture_live *l)
{
    if (!l)
        return;
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, on_handle_closed);
    uv_close((uv_handle_t *)&l->hold_timer, on_handle_closed);
    if (l->closing) /* ps_capture_live_close_graceful started the close timer */
        uv_close((uv_handle_t *)&l->close_timer, on_handle_closed);
}

static void on_close_timer(uv_timer_t *t)
{
    ps_capture_live *l = t->data;
    /* Whatever the kernel retired meanwhile. pcap_dispatch may now fail
     * (interface gone) once the ring is empty: that is the end, not an error. */
    l->budget_left = UINT64_MAX;
    for (;;) {
        l->dropping = l->o.blocked ? l->o.blocked(l->o.ud) != 0 : 0;
        if (dispatch(l) <= 0)
            break;
    }
    ps_capture_live_counters c;
    ps_capture_live_counters_get(l, &c);
    if (l->close_done)
        l->close_done(l->o.ud, l, &c);
    ps_capture_live_close(l);
}

void ps_capture_live_close_graceful(ps_capture_live *l,
                                    void (*done)(void *ud, ps_capture_live *l,
                                                 const ps_capture_live_counters *c))
{
    if (!l || l->closing)
        return;
    l->closing = 1;
    l->close_done = done;
    uv_timer_init(l->poll.loop, &l->close_timer);
    l->close_timer.data = l;
    l->open_handles++;
    /* Held or not, the close timer drains what is left. */
    l->held = 0;
    uv_timer_stop(&l->hold_timer);
    uv_timer_start(&l->close_timer, on_close_timer, (uint64_t)l->o.timeout_ms + 50, 0);
}
