/*
 * get: fetch a window of packets from the receiver, optionally then follow.
 *
 * Both transfers (the window from /api/packets, the live stream from /live)
 * run on one libcurl multi handle on the calling thread: with --follow the
 * live stream is opened at the same moment the window is asked for, so no
 * packet falls between them. The window ends at T0 (now, when the command
 * starts); the live stream's packets stamped at or before T0 are dropped,
 * since they belong to the window. While the window is still streaming,
 * the live stream is held in memory up to LIVE_HOLD bytes, then paused
 * (libcurl stops reading the socket; the receiver cuts a live client that
 * falls too far behind, which is reported).
 *
 * The live section is scanned block by block (a pcapng section of its own,
 * appended after the window's: a multi-section pcapng file, which Wireshark,
 * tshark and tcpdump read) and the selectors and the BPF filter are applied
 * here as well as sent to the receiver, so the output holds exactly what was
 * asked even from a receiver whose /live knows fewer selectors.
 */
#include "get.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <pcap/pcap.h>

#include "core/curlload.h"
#include "core/pcapng.h"

#define DEFAULT_RECEIVER "http://127.0.0.1:8080"
#define LIVE_HOLD (256u << 20)   /* live bytes held while the window streams */
#define MAX_BLOCK (64u << 20)    /* larger pcapng blocks are refused */
#define ERR_BODY_MAX (16u << 10) /* the receiver's error answer, kept for the message */
#define MAX_IFS 4096             /* interfaces in one live section */
#define MAX_LINKTYPES 16         /* BPF programs compiled for the live section */

typedef struct opts {
    const char *receiver, *token_file, *from, *to, *since, *pod, *ns, *sensor, *iface, *filter,
        *limit, *out;
    int follow, quiet;
} opts;

/* ---- the live section's scanner ---- */

typedef struct iface {
    uint16_t linktype;
    int keep;     /* the selectors pick it */
    int base10;   /* if_tsresol: 10^-exp (1) or 2^-exp (0) */
    unsigned exp; /* if_tsresol's exponent, 6 by default */
} iface;

typedef struct prog {
    int linktype;
    struct bpf_program bpf;
    int ok;
} prog;

typedef struct scanner {
    const opts *o;
    uint64_t seam_ns;   /* drop EPBs stamped at or before */
    unsigned char *blk; /* the block being assembled */
    size_t nblk, capblk, want;
    int swap;
    iface *ifs;
    uint32_t n_ifs;
    prog progs[MAX_LINKTYPES];
    int n_progs;
    char err[256];
} scanner;

typedef struct xfer {
    CURL *h;
    int live;
    long code;     /* the HTTP status, once known */
    char *errbody; /* the body of an error answer */
    size_t nerr;
    int done, failed;
    CURLcode result;
    char curlerr[CURL_ERROR_SIZE];
    char note[256];
    int matched_zero;
} xfer;

typedef struct run {
    opts o;
    FILE *out;
    char *tmp_path; /* -w FILE: written here, renamed at the end */
    xfer win, live;
    scanner sc;
    unsigned char *hold; /* live bytes held while the window streams */
    size_t nhold;
    int held_paused;
    uint64_t bytes, packets;
    int progress;
    struct timespec t0;
    int write_failed;
    char write_err[256];
} run;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint16_t rd16(const scanner *s, const unsigned char *p)
{
    uint16_t v = (uint16_t)(p[0] | p[1] << 8);
    return s->swap ? (uint16_t)(v >> 8 | v << 8) : v;
}

static uint32_t rd32(const scanner *s, const unsigned char *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return s->swap ? __builtin_bswap32(v) : v;
}

static double elapsed(const run *r)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - r->t0.tv_sec) + (double)(now.tv_nsec - r->t0.tv_nsec) / 1e9;
}

static void human(double v, char *out, size_t len)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    snprintf(out, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void show_progress(run *r, int final)
{
    if (!r->progress)
        return;
    double t = elapsed(r);
    char b[32], rate[32];
    human((double)r->bytes, b, sizeof(b));
    human(t > 0 ? (double)r->bytes / t : 0, rate, sizeof(rate));
    fprintf(stderr, "\r%s, %" PRIu64 " packets, %s/s%s   %s", b, r->packets, rate,
            r->live.h && r->win.done ? ", following" : "", final ? "\n" : "");
    fflush(stderr);
}

static int emit(run *r, const void *p, size_t n)
{
    if (r->write_failed)
        return -1;
    if (n && fwrite(p, 1, n, r->out) != n) {
        r->write_failed = 1;
        snprintf(r->write_err, sizeof(r->write_err), "cannot write %s: %s",
                 r->o.out && strcmp(r->o.out, "-") ? r->o.out : "to stdout", strerror(errno));
        return -1;
    }
    r->bytes += n;
    return 0;
}

/* Counts the EPBs of the window's pcapng as it passes (for the progress
 * line): a light walk over block headers that never holds a block. */
typedef struct counter {
    unsigned char hdr[12];
    size_t nhdr;
    uint64_t skip; /* bytes left of the current block */
    int swap;
} counter;

static counter win_count;

static void count_blocks(run *r, const unsigned char *p, size_t n)
{
    counter *c = &win_count;
    while (n) {
        if (c->skip) {
            size_t k = n < c->skip ? n : (size_t)c->skip;
            c->skip -= k;
            p += k;
            n -= k;
            continue;
        }
        size_t k = sizeof(c->hdr) - c->nhdr < n ? sizeof(c->hdr) - c->nhdr : n;
        memcpy(c->hdr + c->nhdr, p, k);
        c->nhdr += k;
        p += k;
        n -= k;
        if (c->nhdr < sizeof(c->hdr))
            return;
        uint32_t type = (uint32_t)c->hdr[0] | (uint32_t)c->hdr[1] << 8 | (uint32_t)c->hdr[2] << 16 |
                        (uint32_t)c->hdr[3] << 24;
        uint32_t len = (uint32_t)c->hdr[4] | (uint32_t)c->hdr[5] << 8 | (uint32_t)c->hdr[6] << 16 |
                       (uint32_t)c->hdr[7] << 24;
        if (type == PS_PCAPNG_SHB) /* the same in either byte order */
            c->swap = !(c->hdr[8] == 0x4D && c->hdr[9] == 0x3C);
        if (c->swap) {
            type = __builtin_bswap32(type);
            len = __builtin_bswap32(len);
        }
        if (type == PS_PCAPNG_EPB)
            r->packets++;
        c->nhdr = 0;
        c->skip = len >= 12 ? len - 12 : 0;
    }
}

/* ---- selectors over interface names "SENSOR/REST" ---- */

static int name_selected(const opts *o, const char *name)
{
    const char *slash = strchr(name, '/');
    const char *rest = slash ? slash + 1 : name;
    size_t slen = slash ? (size_t)(slash - name) : 0;
    if (o->sensor && (strlen(o->sensor) != slen || strncmp(o->sensor, name, slen) != 0))
        return 0;
    if (o->iface && strcmp(rest, o->iface) != 0)
        return 0;
    if (o->pod && strcmp(rest, o->pod) != 0)
        return 0;
    if (o->ns) {
        size_t n = strlen(o->ns);
        if (strncmp(rest, o->ns, n) != 0 || rest[n] != '/' || strchr(rest + n + 1, '/'))
            return 0;
    }
    return 1;
}

static prog *program_for(scanner *s, int linktype)
{
    for (int i = 0; i < s->n_progs; i++)
        if (s->progs[i].linktype == linktype)
            return &s->progs[i];
    if (s->n_progs == MAX_LINKTYPES)
        return NULL;
    prog *p = &s->progs[s->n_progs++];
    p->linktype = linktype;
    pcap_t *dead = pcap_open_dead(linktype, 262144);
    p->ok = dead && pcap_compile(dead, &p->bpf, s->o->filter, 1, PCAP_NETMASK_UNKNOWN) == 0;
    if (dead)
        pcap_close(dead);
    return p;
}

/* EPB timestamp in ns since the epoch, with the interface's resolution. */
static uint64_t epb_ns(const iface *f, uint64_t units)
{
    if (f->base10) {
        if (f->exp <= 9) {
            uint64_t m = 1;
            for (unsigned i = f->exp; i < 9; i++)
                m *= 10;
            return units * m;
        }
        uint64_t d = 1;
        for (unsigned i = 9; i < f->exp && i < 28; i++)
            d *= 10;
        return units / d;
    }
    return (uint64_t)((unsigned __int128)units * 1000000000u >> (f->exp < 64 ? f->exp : 63));
}

static int scan_idb(scanner *s, const unsigned char *b, uint32_t len)
{
    if (len < 20) {
        snprintf(s->err, sizeof(s->err), "live stream: interface block of %" PRIu32 " bytes", len);
        return -1;
    }
    if (s->n_ifs == MAX_IFS) {
        snprintf(s->err, sizeof(s->err), "live stream: more than %d interfaces", MAX_IFS);
        return -1;
    }
    iface *f = &s->ifs[s->n_ifs++];
    memset(f, 0, sizeof(*f));
    f->linktype = rd16(s, b + 8);
    f->base10 = 1;
    f->exp = 6;
    char name[512] = "";
    size_t off = 16, end = len - 4;
    while (off + 4 <= end) {
        uint16_t code = rd16(s, b + off), olen = rd16(s, b + off + 2);
        if (code == 0 || off + 4 + olen > end)
            break;
        if (code == 2 && olen < sizeof(name)) {
            memcpy(name, b + off + 4, olen);
            name[olen] = '\0';
        } else if (code == 9 && olen >= 1) {
            f->base10 = !(b[off + 4] & 0x80);
            f->exp = b[off + 4] & 0x7f;
        }
        off += 4 + (((size_t)olen + 3) & ~(size_t)3);
    }
    f->keep = name_selected(s->o, name);
    return 0;
}

/* 1: write the block, 0: drop it, -1: malformed. */
static int scan_block(scanner *s, const unsigned char *b, uint32_t len)
{
    uint32_t type = rd32(s, b);
    if (type == PS_PCAPNG_SHB) {
        s->n_ifs = 0;
        return 1;
    }
    if (type == PS_PCAPNG_IDB)
        return scan_idb(s, b, len) == 0 ? 1 : -1;
    if (type != PS_PCAPNG_EPB)
        return 1;
    if (len < PS_PCAPNG_EPB_OVERHEAD) {
        snprintf(s->err, sizeof(s->err), "live stream: packet block of %" PRIu32 " bytes", len);
        return -1;
    }
    uint32_t id = rd32(s, b + 8), caplen = rd32(s, b + 20), origlen = rd32(s, b + 24);
    if (id >= s->n_ifs || caplen > len - PS_PCAPNG_EPB_OVERHEAD) {
        snprintf(s->err, sizeof(s->err), "live stream: bad packet block");
        return -1;
    }
    const iface *f = &s->ifs[id];
    if (!f->keep)
        return 0;
    uint64_t units = (uint64_t)rd32(s, b + 12) << 32 | rd32(s, b + 16);
    if (epb_ns(f, units) <= s->seam_ns)
        return 0;
    if (s->o->filter) {
        prog *p = program_for(s, f->linktype);
        if (!p || !p->ok)
            return 0; /* the receiver compiled it; a link type it cannot take matches nothing */
        struct pcap_pkthdr h = {.caplen = caplen, .len = origlen};
        if (!pcap_offline_filter(&p->bpf, &h, b + 28))
            return 0;
    }
    return 1;
}

/* Feeds live bytes through the scanner to the output, one whole block at a
 * time (the block's length is checked before it is held). */
static int live_feed(run *r, const unsigned char *p, size_t n)
{
    scanner *s = &r->sc;
    while (n) {
        size_t want = s->want ? s->want : 12;
        size_t k = want - s->nblk < n ? want - s->nblk : n;
        memcpy(s->blk + s->nblk, p, k);
        s->nblk += k;
        p += k;
        n -= k;
        if (s->nblk < want)
            continue;
        if (!s->want) { /* a header is complete: how long is the block? */
            if (s->blk[0] == 0x0A && s->blk[1] == 0x0D && s->blk[2] == 0x0D && s->blk[3] == 0x0A)
                s->swap = !(s->blk[8] == 0x4D && s->blk[9] == 0x3C);
            uint32_t len = rd32(s, s->blk + 4);
            if (len < 12 || len % 4 || len > MAX_BLOCK) {
                snprintf(s->err, sizeof(s->err), "live stream: block length %" PRIu32, len);
                return -1;
            }
            if (s->capblk < len) {
                unsigned char *nb = realloc(s->blk, len);
                if (!nb) {
                    snprintf(s->err, sizeof(s->err), "out of memory");
                    return -1;
                }
                s->blk = nb;
                s->capblk = len;
            }
            s->want = len;
            if (s->nblk < len)
                continue;
        }
        int keep = scan_block(s, s->blk, (uint32_t)s->want);
        if (keep < 0)
            return -1;
        if (keep) {
            if (rd32(s, s->blk) == PS_PCAPNG_EPB)
                r->packets++;
            if (emit(r, s->blk, s->want) != 0)
                return -1;
        }
        s->nblk = 0;
        s->want = 0;
    }
    return 0;
}

/* ---- libcurl callbacks ---- */

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n;
    static const char matched[] = "X-Packetstreamer-Matched:", note[] = "X-Packetstreamer-Note:";
    if (len > sizeof(matched) && strncasecmp(buf, matched, sizeof(matched) - 1) == 0) {
        const char *v = buf + sizeof(matched) - 1;
        while (*v == ' ')
            v++;
        x->matched_zero = *v == '0';
    } else if (len > sizeof(note) && strncasecmp(buf, note, sizeof(note) - 1) == 0) {
        size_t k = len - (sizeof(note) - 1);
        if (k >= sizeof(x->note))
            k = sizeof(x->note) - 1;
        memcpy(x->note, buf + sizeof(note) - 1, k);
        x->note[k] = '\0';
        x->note[strcspn(x->note, "\r\n")] = '\0';
    }
    return len;
}

static size_t keep_error(xfer *x, const char *p, size_t n)
{
    size_t k = ERR_BODY_MAX - x->nerr < n ? ERR_BODY_MAX - x->nerr : n;
    if (k) {
        char *nb = realloc(x->errbody, x->nerr + k + 1);
        if (!nb)
            return 0;
        memcpy(nb + x->nerr, p, k);
        x->nerr += k;
        nb[x->nerr] = '\0';
        x->errbody = nb;
    }
    return n;
}

static size_t on_window(char *p, size_t size, size_t n, void *ud)
{
    run *r = ud;
    size_t len = size * n;
    curl_easy_getinfo(r->win.h, CURLINFO_RESPONSE_CODE, &r->win.code);
    if (r->win.code >= 300)
        return keep_error(&r->win, p, len);
    count_blocks(r, (const unsigned char *)p, len);
    return emit(r, p, len) == 0 ? len : 0;
}

static size_t on_live(char *p, size_t size, size_t n, void *ud)
{
    run *r = ud;
    size_t len = size * n;
    curl_easy_getinfo(r->live.h, CURLINFO_RESPONSE_CODE, &r->live.code);
    if (r->live.code >= 300)
        return keep_error(&r->live, p, len);
    if (!r->win.done) {
        if (r->nhold + len > LIVE_HOLD) {
            r->held_paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        unsigned char *nb = realloc(r->hold, r->nhold + len);
        if (!nb)
            return 0;
        memcpy(nb + r->nhold, p, len);
        r->hold = nb;
        r->nhold += len;
        return len;
    }
    return live_feed(r, (const unsigned char *)p, len) == 0 ? len : 0;
}

/* ---- requests ---- */

static int add_param(CURL *h, char *url, size_t cap, const char *key, const char *value)
{
    if (!value)
        return 0;
    char *esc = curl_easy_escape(h, value, 0);
    if (!esc)
        return -1;
    size_t used = strlen(url);
    int k = snprintf(url + used, cap - used, "%s%s=%s", strchr(url, '?') ? "&" : "?", key, esc);
    curl_free(esc);
    return k < 0 || (size_t)k >= cap - used ? -1 : 0;
}

static int setup(run *r, xfer *x, const char *url, struct curl_slist *hdrs)
{
    x->h = curl_easy_init();
    if (!x->h)
        return -1;
    curl_easy_setopt(x->h, CURLOPT_URL, url);
    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, x->live ? on_live : on_window);
    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->curlerr);
    curl_easy_setopt(x->h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->h, CURLOPT_PROTOCOLS_STR, "http,https");
    return 0;
}

static void format_time(uint64_t ns, char *out, size_t len)
{
    time_t s = (time_t)(ns / 1000000000u);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%09" PRIu64 "Z", base, ns % 1000000000u);
}

/* The receiver's reason, from its JSON error answer. */
static void report_refusal(const char *what, const xfer *x)
{
    const char *reason = NULL;
    json_t *j = x->errbody ? json_loads(x->errbody, 0, NULL) : NULL;
    if (j && json_is_object(j)) {
        json_t *e = json_object_get(j, "error");
        if (!json_is_string(e))
            e = json_object_get(j, "reason");
        if (json_is_string(e))
            reason = json_string_value(e);
    }
    char plain[512] = "";
    if (!reason && x->errbody) {
        snprintf(plain, sizeof(plain), "%s", x->errbody);
        plain[strcspn(plain, "\r\n")] = '\0';
        reason = plain;
    }
    fprintf(stderr, "packetstreamer get: the receiver refused the %s (HTTP %ld): %s%s\n", what,
            x->code, reason && *reason ? reason : "no reason given",
            x->code == 401 ? " (pass --token-file with the receiver's http.token)" : "");
    json_decref(j);
}

static int read_token(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "packetstreamer get: --token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = fread(out, 1, len - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    if (!n || strpbrk(out, "\r\n")) {
        fprintf(stderr, "packetstreamer get: --token-file %s: %s\n", path,
                n ? "more than one line" : "empty");
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fputs(
        "usage: packetstreamer get [options]\n"
        "\n"
        "Fetch the packets of a time window from a receiver as one pcapng\n"
        "(GET /api/packets, docs/http.md), optionally followed by the live stream.\n"
        "\n"
        "  --receiver URL     the receiver's HTTP address (default $PACKETSTREAMER_RECEIVER_URL,\n"
        "                     else " DEFAULT_RECEIVER ")\n"
        "  --token-file F     send the token in F (the receiver's http.token)\n"
        "  --since DUR        the last DUR (5m, 90s, 2h): --from -DUR\n"
        "  --from T, --to T   the window: RFC 3339 (2026-12-04T14:02:00Z) or -DUR; --to\n"
        "                     defaults to now\n"
        "  --pod NS/NAME      only this pod's interfaces\n"
        "  --namespace NS     only pods of this namespace\n"
        "  --sensor ID        only this sensor (node)\n"
        "  --iface NAME       only this interface (its name on the sensor)\n"
        "  --filter BPF       only packets matching this BPF expression (pcap-filter(7))\n"
        "  --limit N          at most N packets\n"
        "  -w FILE            write to FILE (- for stdout, the default when stdout is not\n"
        "                     a terminal); written as FILE.part, renamed when complete\n"
        "  --follow           then go on with the live stream, until interrupted\n"
        "  -q, --quiet        no progress line\n"
        "  --help             this text\n",
        f);
}

static int parse_args(opts *o, int argc, char **argv)
{
    enum {
        O_RECEIVER = 256,
        O_TOKEN,
        O_SINCE,
        O_FROM,
        O_TO,
        O_POD,
        O_NS,
        O_SENSOR,
        O_IFACE,
        O_FILTER,
        O_LIMIT,
        O_FOLLOW,
        O_HELP
    };
    static const struct option lo[] = {{"receiver", required_argument, 0, O_RECEIVER},
                                       {"token-file", required_argument, 0, O_TOKEN},
                                       {"since", required_argument, 0, O_SINCE},
                                       {"from", required_argument, 0, O_FROM},
                                       {"to", required_argument, 0, O_TO},
                                       {"pod", required_argument, 0, O_POD},
                                       {"namespace", required_argument, 0, O_NS},
                                       {"sensor", required_argument, 0, O_SENSOR},
                                       {"iface", required_argument, 0, O_IFACE},
                                       {"filter", required_argument, 0, O_FILTER},
                                       {"limit", required_argument, 0, O_LIMIT},
                                       {"follow", no_argument, 0, O_FOLLOW},
                                       {"quiet", no_argument, 0, 'q'},
                                       {"help", no_argument, 0, O_HELP},
                                       {0, 0, 0, 0}};
    memset(o, 0, sizeof(*o));
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "w:q", lo, NULL)) != -1) {
        switch (c) {
        case O_RECEIVER:
            o->receiver = optarg;
            break;
        case O_TOKEN:
            o->token_file = optarg;
            break;
        case O_SINCE:
            o->since = optarg;
            break;
        case O_FROM:
            o->from = optarg;
            break;
        case O_TO:
            o->to = optarg;
            break;
        case O_POD:
            o->pod = optarg;
            break;
        case O_NS:
            o->ns = optarg;
            break;
        case O_SENSOR:
            o->sensor = optarg;
            break;
        case O_IFACE:
            o->iface = optarg;
            break;
        case O_FILTER:
            o->filter = optarg;
            break;
        case O_LIMIT:
            o->limit = optarg;
            break;
        case O_FOLLOW:
            o->follow = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'w':
            o->out = optarg;
            break;
        case O_HELP:
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "packetstreamer get: %s '%s'\n",
                    optopt ? "option needs a value or is unknown:" : "unknown option",
                    argv[optind - 1]);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "packetstreamer get: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->since && o->from) {
        fprintf(stderr, "packetstreamer get: --since and --from both set; use one\n");
        return -1;
    }
    if (o->since && (o->since[0] == '-' || !o->since[0])) {
        fprintf(stderr, "packetstreamer get: --since %s: a duration such as 5m, 90s or 2h\n",
                o->since);
        return -1;
    }
    if (!o->since && !o->from) {
        fprintf(stderr, "packetstreamer get: which window? pass --since DUR or --from T\n");
        return -1;
    }
    if (o->follow && o->to) {
        fprintf(stderr, "packetstreamer get: --follow goes on after the window, which then ends "
                        "now: it cannot be used with --to\n");
        return -1;
    }
    if (o->pod && !strchr(o->pod, '/')) {
        fprintf(stderr, "packetstreamer get: --pod %s: NAMESPACE/NAME expected\n", o->pod);
        return -1;
    }
    if (o->filter && o->follow) {
        /* Check the expression here, not after the window has been fetched. */
        pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
        struct bpf_program p;
        if (!dead || pcap_compile(dead, &p, o->filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
            fprintf(stderr, "packetstreamer get: --filter \"%s\": %s\n", o->filter,
                    dead ? pcap_geterr(dead) : "out of memory");
            if (dead)
                pcap_close(dead);
            return -1;
        }
        pcap_freecode(&p);
        pcap_close(dead);
    }
    return 0;
}

static int open_output(run *r)
{
    const char *out = r->o.out;
    if (!out || strcmp(out, "-") == 0) {
        if (!out && isatty(STDOUT_FILENO)) {
            fprintf(stderr, "packetstreamer get: not writing pcapng to a terminal: pass -w FILE, "
                            "or pipe it (-w - | wireshark -k -i -)\n");
            return -1;
        }
        r->out = stdout;
        return 0;
    }
    size_t n = strlen(out) + sizeof(".part");
    r->tmp_path = malloc(n);
    if (!r->tmp_path) {
        fprintf(stderr, "packetstreamer get: out of memory\n");
        return -1;
    }
    snprintf(r->tmp_path, n, "%s.part", out);
    r->out = fopen(r->tmp_path, "wbx");
    if (!r->out) {
        fprintf(stderr, "packetstreamer get: cannot create %s: %s\n", r->tmp_path,
                errno == EEXIST ? "it exists (another fetch to the same file?)" : strerror(errno));
        free(r->tmp_path);
        r->tmp_path = NULL;
        return -1;
    }
    return 0;
}

/* Closes the output; renames FILE.part to FILE when ok, removes it when not. */
static int close_output(run *r, int ok)
{
    if (!r->out || r->out == stdout) {
        if (r->out && fflush(stdout) != 0 && ok) {
            fprintf(stderr, "packetstreamer get: cannot write to stdout: %s\n", strerror(errno));
            return -1;
        }
        return 0;
    }
    int rc = 0;
    if (fclose(r->out) != 0 && ok) {
        fprintf(stderr, "packetstreamer get: cannot write %s: %s\n", r->tmp_path, strerror(errno));
        ok = 0;
        rc = -1;
    }
    r->out = NULL;
    if (ok && rename(r->tmp_path, r->o.out) != 0) {
        fprintf(stderr, "packetstreamer get: cannot rename %s to %s: %s\n", r->tmp_path, r->o.out,
                strerror(errno));
        ok = 0;
        rc = -1;
    }
    if (!ok)
        unlink(r->tmp_path);
    return rc;
}

/* A finished transfer: 0 ok, -1 failed (reported). */
static int finished(run *r, xfer *x, CURLcode res)
{
    x->done = 1;
    x->result = res;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->code);
    const char *what = x->live ? "live stream" : "window";
    if (r->write_failed) {
        fprintf(stderr, "packetstreamer get: %s\n", r->write_err);
        return x->failed = -1;
    }
    if (x->live && r->sc.err[0]) {
        fprintf(stderr, "packetstreamer get: %s\n", r->sc.err);
        return x->failed = -1;
    }
    if (res != CURLE_OK) {
        char *url = NULL;
        curl_easy_getinfo(x->h, CURLINFO_EFFECTIVE_URL, &url);
        fprintf(stderr, "packetstreamer get: cannot fetch the %s from %s: %s\n", what,
                url ? url : "the receiver", x->curlerr[0] ? x->curlerr : curl_easy_strerror(res));
        return x->failed = -1;
    }
    if (x->code >= 300) {
        report_refusal(what, x);
        return x->failed = -1;
    }
    if (x->live) {
        fprintf(stderr, "packetstreamer get: the receiver ended the live stream%s\n",
                r->held_paused ? " (it was held back while the window streamed; it cuts live "
                                 "clients that fall behind)"
                               : "");
        return x->failed = -1;
    }
    return 0;
}

int ps_get_main(int argc, char **argv)
{
    run r;
    memset(&r, 0, sizeof(r));
    memset(&win_count, 0, sizeof(win_count));
    int a = parse_args(&r.o, argc, argv);
    if (a != 0)
        return a > 0 ? 0 : 2;
    char lerr[300];
    if (ps_curl_load(lerr, sizeof(lerr)) != 0) {
        fprintf(stderr, "packetstreamer get: %s\n", lerr);
        return 1;
    }
    opts *o = &r.o;
    const char *base = o->receiver ? o->receiver : getenv("PACKETSTREAMER_RECEIVER_URL");
    if (!base || !*base)
        base = DEFAULT_RECEIVER;
    size_t blen = strlen(base);
    while (blen && base[blen - 1] == '/')
        blen--;

    char token[4096] = "", auth[4200] = "";
    if (o->token_file && read_token(o->token_file, token, sizeof(token)) != 0)
        return 1;
    struct curl_slist *hdrs = NULL;
    if (token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(NULL, auth);
        if (!hdrs) {
            fprintf(stderr, "packetstreamer get: out of memory\n");
            return 1;
        }
    }

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t t0 = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    char from[64], to[64];
    if (o->since)
        snprintf(from, sizeof(from), "-%s", o->since);
    else
        snprintf(from, sizeof(from), "%s", o->from);
    if (o->to)
        snprintf(to, sizeof(to), "%s", o->to);
    else
        format_time(t0, to, sizeof(to));

    int rc = 1;
    CURLM *m = curl_multi_init();
    char url[8192], lurl[8192];
    snprintf(url, sizeof(url), "%.*s/api/packets", (int)blen, base);
    snprintf(lurl, sizeof(lurl), "%.*s/live", (int)blen, base);
    r.win.live = 0;
    r.live.live = 1;
    if (!m || setup(&r, &r.win, "", hdrs) != 0 ||
        add_param(r.win.h, url, sizeof(url), "from", from) != 0 ||
        add_param(r.win.h, url, sizeof(url), "to", to) != 0 ||
        add_param(r.win.h, url, sizeof(url), "pod", o->pod) != 0 ||
        add_param(r.win.h, url, sizeof(url), "namespace", o->ns) != 0 ||
        add_param(r.win.h, url, sizeof(url), "sensor", o->sensor) != 0 ||
        add_param(r.win.h, url, sizeof(url), "iface", o->iface) != 0 ||
        add_param(r.win.h, url, sizeof(url), "filter", o->filter) != 0 ||
        add_param(r.win.h, url, sizeof(url), "limit", o->limit) != 0) {
        fprintf(stderr, "packetstreamer get: out of memory or a selector too long\n");
        goto out;
    }
    curl_easy_setopt(r.win.h, CURLOPT_URL, url);
    if (o->follow) {
        /* /live knows sensor= and interface= (a pod's interface is
         * NAMESPACE/POD on its sensor); the rest is applied here too. */
        if (setup(&r, &r.live, "", hdrs) != 0 ||
            add_param(r.live.h, lurl, sizeof(lurl), "sensor", o->sensor) != 0 ||
            add_param(r.live.h, lurl, sizeof(lurl), "interface", o->pod ? o->pod : o->iface) != 0 ||
            add_param(r.live.h, lurl, sizeof(lurl), "namespace", o->ns) != 0 ||
            add_param(r.live.h, lurl, sizeof(lurl), "filter", o->filter) != 0) {
            fprintf(stderr, "packetstreamer get: out of memory or a selector too long\n");
            goto out;
        }
        curl_easy_setopt(r.live.h, CURLOPT_URL, lurl);
        r.sc.o = o;
        r.sc.seam_ns = t0;
        r.sc.ifs = calloc(MAX_IFS, sizeof(iface));
        r.sc.blk = malloc(64);
        r.sc.capblk = 64;
        if (!r.sc.ifs || !r.sc.blk) {
            fprintf(stderr, "packetstreamer get: out of memory\n");
            goto out;
        }
    }
    if (open_output(&r) != 0)
        goto out;
    r.progress = !o->quiet && isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &r.t0);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    curl_multi_add_handle(m, r.win.h);
    if (r.live.h)
        curl_multi_add_handle(m, r.live.h);
    int running = 1, failed = 0;
    double last = 0;
    while (running && !failed && !stop_requested) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            xfer *x = msg->easy_handle == r.win.h ? &r.win : &r.live;
            if (finished(&r, x, msg->data.result) != 0) {
                failed = 1;
                break;
            }
            if (x == &r.win && r.live.h) {
                /* The window is complete: the held live bytes follow it. */
                if (r.nhold && live_feed(&r, r.hold, r.nhold) != 0) {
                    fprintf(stderr, "packetstreamer get: %s\n",
                            r.sc.err[0] ? r.sc.err : r.write_err);
                    failed = 1;
                    break;
                }
                free(r.hold);
                r.hold = NULL;
                r.nhold = 0;
                if (r.held_paused)
                    curl_easy_pause(r.live.h, CURLPAUSE_CONT);
                fflush(r.out);
            }
        }
        if (failed || !running)
            break;
        if (r.win.done)
            fflush(r.out); /* live: each batch reaches a pipe reader now */
        double t = elapsed(&r);
        if (t - last >= 0.25) {
            show_progress(&r, 0);
            last = t;
        }
        curl_multi_poll(m, NULL, 0, 250, NULL);
    }
    show_progress(&r, 1);
    if (failed) {
        close_output(&r, 0);
    } else if (!r.win.done) {
        fprintf(stderr, "packetstreamer get: interrupted before the window was complete%s%s\n",
                r.tmp_path ? "; not written: " : "", r.tmp_path ? o->out : "");
        close_output(&r, 0);
    } else {
        if (!o->quiet && r.win.matched_zero)
            fprintf(stderr, "packetstreamer get: no packet matched%s%s\n", r.win.note[0] ? ":" : "",
                    r.win.note);
        rc = close_output(&r, 1) == 0 ? 0 : 1;
    }
out:
    if (r.win.h) {
        curl_multi_remove_handle(m, r.win.h);
        curl_easy_cleanup(r.win.h);
    }
    if (r.live.h) {
        curl_multi_remove_handle(m, r.live.h);
        curl_easy_cleanup(r.live.h);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(hdrs);
    free(r.win.errbody);
    free(r.live.errbody);
    free(r.hold);
    free(r.sc.blk);
    free(r.sc.ifs);
    for (int i = 0; i < r.sc.n_progs; i++)
        if (r.sc.progs[i].ok)
            pcap_freecode(&r.sc.progs[i].bpf);
    if (r.out && r.out != stdout)
        close_output(&r, 0);
    free(r.tmp_path);
    return rc;
}
