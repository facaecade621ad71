/*
 * recorder: one contiguous byte ring, records written in place.
 *
 * Why one ring for all interfaces rather than one per interface: the bound
 * the user sets is the sensor's memory, and a busy interface should be able
 * to use what quiet ones leave; one ring in arrival order gives that with
 * eviction from a single tail. Why a byte ring rather than a list of
 * malloc'ed packets: no allocation per packet, no fragmentation, and the
 * memory is exactly max_bytes whatever the packet sizes.
 *
 * A record is u32 len (header + data rounded to 8; 0 marks "wrapped, go to
 * the start") | u32 iface | u64 ts | u32 caplen | u32 origlen | data. A
 * record never straddles the end: when it does not fit there, the rest of
 * the ring's end is skipped (marker, or fewer than a header's bytes).
 *
 * Room evictions per interface are kept as (second, count) pairs, the last
 * PS_RECORDER_LOST_PAIRS seconds in which any happened: enough to say how
 * much of a preroll window is missing.
 */
#include "recorder.h"

#include <stdlib.h>
#include <string.h>

#define PS_RECORDER_MIN_BYTES 4096u
#define PS_RECORDER_LOST_PAIRS 64
#define PS_RECORDER_MAX_IFACES (1u << 20)

typedef struct lost_pair {
    uint64_t sec, count;
} lost_pair;

typedef struct iface_lost {
    lost_pair p[PS_RECORDER_LOST_PAIRS];
    unsigned first, n;
} iface_lost;

struct ps_recorder {
    uint8_t *buf;
    size_t cap;
    size_t head, tail; /* write and read offsets */
    uint64_t n;        /* records held */
    uint64_t held;     /* bytes of the records held */
    uint64_t max_age_ns;
    uint64_t newest_ts;
    iface_lost **lost; /* by interface, allocated at its first room eviction */
    size_t n_lost;
    uint64_t added, evicted_age, evicted_room, refused;
};

static size_t rec_len(uint32_t caplen)
{
    return PS_RECORDER_REC_HDR + (((size_t)caplen + 7) & ~(size_t)7);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

ps_recorder *ps_recorder_new(const ps_recorder_opts *o)
{
    ps_recorder *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    uint64_t cap = o->max_bytes < PS_RECORDER_MIN_BYTES ? PS_RECORDER_MIN_BYTES : o->max_bytes;
    if (cap > SIZE_MAX / 2)
        cap = SIZE_MAX / 2;
    r->cap = (size_t)cap & ~(size_t)7;
    r->max_age_ns = o->max_age_ns;
    return r;
}

/* Offset of the oldest record, past a wrap. */
static size_t tail_pos(const ps_recorder *r, size_t t)
{
    if (r->cap - t < PS_RECORDER_REC_HDR || get32(r->buf + t) == 0)
        return 0;
    return t;
}

static void note_lost(ps_recorder *r, uint32_t iface, uint64_t ts)
{
    if (iface >= PS_RECORDER_MAX_IFACES)
        return;
    if (iface >= r->n_lost) {
        size_t n = iface + 1 > r->n_lost * 2 ? iface + 1 : r->n_lost * 2;
        iface_lost **m = realloc(r->lost, n * sizeof(*m));
        if (!m)
            return;
        memset(m + r->n_lost, 0, (n - r->n_lost) * sizeof(*m));
        r->lost = m;
        r->n_lost = n;
    }
    iface_lost *l = r->lost[iface];
    if (!l && !(l = r->lost[iface] = calloc(1, sizeof(*l))))
        return;
    uint64_t sec = ts / 1000000000u;
    if (l->n) {
        lost_pair *last = &l->p[(l->first + l->n - 1) % PS_RECORDER_LOST_PAIRS];
        if (last->sec >= sec) { /* evictions go oldest first: same second (or a late packet) */
            last->count++;
            return;
        }
    }
    if (l->n == PS_RECORDER_LOST_PAIRS) {
        l->first = (l->first + 1) % PS_RECORDER_LOST_PAIRS;
        l->n--;
    }
    l->p[(l->first + l->n) % PS_RECORDER_LOST_PAIRS] = (lost_pair){sec, 1};
    l->n++;
}

static void evict_one(ps_recorder *r, int for_room)
{
    r->tail = tail_pos(r, r->tail);
    const uint8_t *p = r->buf + r->tail;
    size_t len = get32(p);
    if (for_room) {
        r->evicted_room++;
        note_lost(r, get32(p + 4), get64(p + 8));
    } else {
        r->evicted_age++;
    }
    r->tail += len;
    r->held -= len;
    if (--r->n == 0)
        r->head = r->tail = 0;
    else /* never left on a wrap: the space after it is free to be written */
        r->tail = tail_pos(r, r->tail);
}

static void expire(ps_recorder *r, uint64_t now_ns)
{
    if (!r->max_age_ns || now_ns < r->max_age_ns)
        return;
    uint64_t limit = now_ns - r->max_age_ns;
    while (r->n) {
        size_t t = tail_pos(r, r->tail);
        if (get64(r->buf + t + 8) >= limit)
            break;
        evict_one(r, 0);
    }
}

void ps_recorder_expire(ps_recorder *r, uint64_t now_ns)
{
    if (r && r->buf)
        expire(r, now_ns);
}

/* Makes need contiguous bytes free at head; returns the offset. */
static size_t make_room(ps_recorder *r, size_t need)
{
    for (;;) {
        if (r->n == 0) {
            r->head = r->tail = 0;
            return 0;
        }
        size_t t = tail_pos(r, r->tail);
        if (r->head > t) {
            /* Not wrapped: the records are [tail, head); room at the end,
             * else at the start, before the tail. */
            if (r->cap - r->head >= need)
                return r->head;
            if (t >= need) {
                if (r->cap - r->head >= PS_RECORDER_REC_HDR)
                    memset(r->buf + r->head, 0, 4); /* wrap marker */
                r->head = 0;
                return 0;
            }
        } else if (t - r->head >= need) {
            /* Wrapped: [tail, end) then [0, head); room between. */
            return r->head;
        }
        evict_one(r, 1);
    }
}

int ps_recorder_add(ps_recorder *r, uint32_t iface, uint64_t ts_ns, uint32_t caplen,
                    uint32_t origlen, const uint8_t *data)
{
    size_t need = rec_len(caplen);
    if (need > r->cap / 2) {
        r->refused++;
        return -1;
    }
    if (!r->buf && !(r->buf = malloc(r->cap))) {
        r->refused++;
        return -1;
    }
    if (ts_ns > r->newest_ts)
        r->newest_ts = ts_ns;
    expire(r, r->newest_ts);
    size_t at = make_room(r, need);
    uint8_t *p = r->buf + at;
    uint32_t len32 = (uint32_t)need;
    memcpy(p, &len32, 4);
    memcpy(p + 4, &iface, 4);
    memcpy(p + 8, &ts_ns, 8);
    memcpy(p + 16, &caplen, 4);
    memcpy(p + 20, &origlen, 4);
    memcpy(p + PS_RECORDER_REC_HDR, data, caplen);
    if (r->n == 0)
        r->tail = at;
    r->head = at + need;
    r->tail = tail_pos(r, r->tail);
    r->n++;
    r->held += need;
    r->added++;
    return 0;
}

uint64_t ps_recorder_read(const ps_recorder *r, const ps_recorder_window *w,
                          int (*cb)(void *ud, const ps_record *rec), void *ud, uint64_t *lost)
{
    uint64_t given = 0;
    if (lost) {
        *lost = 0;
        const iface_lost *l = w->iface < r->n_lost ? r->lost[w->iface] : NULL;
        for (unsigned i = 0; l && i < l->n; i++) {
            const lost_pair *q = &l->p[(l->first + i) % PS_RECORDER_LOST_PAIRS];
            /* A second that straddles from_ns counts whole: better to
             * report a loss that was not than hide one that was. */
            if ((q->sec + 1) * 1000000000u > w->from_ns)
                *lost += q->count;
        }
    }
    size_t t = r->tail;
    for (uint64_t i = 0; i < r->n; i++) {
        t = tail_pos(r, t);
        const uint8_t *p = r->buf + t;
        t += get32(p);
        ps_record rec = {.iface = get32(p + 4),
                         .ts_ns = get64(p + 8),
                         .caplen = get32(p + 16),
                         .origlen = get32(p + 20),
                         .data = p + PS_RECORDER_REC_HDR};
        if (rec.iface != w->iface || rec.ts_ns < w->from_ns || (w->to_ns && rec.ts_ns >= w->to_ns))
            continue;
        if (w->filter) {
            struct pcap_pkthdr h = {.caplen = rec.caplen, .len = rec.origlen};
            h.ts.tv_sec = (time_t)(rec.ts_ns / 1000000000u);
            h.ts.tv_usec = (suseconds_t)(rec.ts_ns % 1000000000u / 1000u);
            if (pcap_offline_filter(w->filter, &h, rec.data) == 0)
                continue;
        }
        given++;
        if (cb(ud, &rec) != 0)
            break;
    }
    return given;
}

void ps_recorder_get_totals(const ps_recorder *r, ps_recorder_totals *t)
{
    *t = (ps_recorder_totals){.packets = r->n,
                              .bytes = r->held,
                              .added = r->added,
                              .evicted_age = r->evicted_age,
                              .evicted_room = r->evicted_room,
                              .refused = r->refused,
                              .mem = r->buf ? r->cap : 0};
    t->mem += r->n_lost * sizeof(*r->lost);
    for (size_t i = 0; i < r->n_lost; i++)
        t->mem += r->lost[i] ? sizeof(iface_lost) : 0;
}

void ps_recorder_free(ps_recorder *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_lost; i++)
        free(r->lost[i]);
    free(r->lost);
    free(r->buf);
    free(r);
}
