/*
 * capture: packets from a capture file, through libpcap.
 *
 * libpcap opens pcap and pcapng alike; asking for nanosecond precision makes
 * it scale microsecond files up instead of truncating nanosecond ones, so
 * timestamps survive exactly. caplen and origlen are passed through untouched.
 */
#include "capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <pcap/pcap.h>

struct ps_capture_file {
    pcap_t *p;
    char *name;
    uint64_t dropped;
    /* Classic pcap (not pcapng): 1000 for a microsecond file, 1 for a
     * nanosecond one, 0 when its magic could not be read (stdin). */
    unsigned classic_frac_ns;
    int classic;
};

/* The fraction unit of a classic pcap file from its magic (either byte
 * order): 1000 ns for microsecond files, 1 for nanosecond ones, 0 when it
 * cannot be told (not a regular file, or not classic pcap). */
static unsigned classic_unit(const char *path)
{
    /* Only a regular file may be opened twice: reading a named pipe's magic
     * here would take it from libpcap, which then reads garbage. */
    struct stat st;
    if (strcmp(path, "-") == 0 || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    unsigned char m[4];
    size_t n = fread(m, 1, sizeof(m), fp);
    fclose(fp);
    if (n != sizeof(m))
        return 0;
    uint32_t le =
        (uint32_t)m[0] | (uint32_t)m[1] << 8 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 24;
    uint32_t be =
        (uint32_t)m[3] | (uint32_t)m[2] << 8 | (uint32_t)m[1] << 16 | (uint32_t)m[0] << 24;
    if (le == 0xa1b2c3d4u || be == 0xa1b2c3d4u)
        return 1000;
    if (le == 0xa1b23c4du || be == 0xa1b23c4du)
        return 1;
    return 0;
}

/*
 * A classic pcap record holds seconds and fraction as unsigned 32-bit fields
 * (pcap-savefile(5)), so seconds run to 2106. libpcap hands both back
 * sign-extended, the fraction of a microsecond file already multiplied by
 * 1000: a record after 2038-01-19 would come out in 1901. Undo that from the
 * raw fields. A fraction beyond one second carries into the seconds, as
 * Wireshark shows it, rather than wrapping.
 */
uint64_t ps_capture_classic_ts(int64_t tv_sec, int64_t tv_frac, unsigned unit_ns)
{
    if (unit_ns == 0) /* unknown unit: a scaled microsecond field is a multiple of 1000 */
        unit_ns = (tv_frac >= 0 && tv_frac < 1000000000) || tv_frac % 1000 != 0 ? 1 : 1000;
    uint64_t sec = (uint32_t)tv_sec;
    uint64_t frac = unit_ns == 1 ? (uint32_t)tv_frac : (uint32_t)(tv_frac / 1000);
    return sec * 1000000000u + frac * unit_ns;
}

int ps_capture_file_open(ps_capture_file **out, const char *path, const char *filter, char *err,
                         size_t errlen)
{
    char ebuf[PCAP_ERRBUF_SIZE] = "";
    pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, ebuf);
    if (!p) {
        snprintf(err, errlen, "cannot read capture file '%s': %s", path, ebuf);
        return -1;
    }
    if (filter && *filter) {
        struct bpf_program prog;
        if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) != 0) {
            snprintf(err, errlen, "invalid filter \"%s\": %s", filter, pcap_geterr(p));
            pcap_close(p);
            return -1;
        }
        int rc = pcap_setfilter(p, &prog);
        pcap_freecode(&prog);
        if (rc != 0) {
            snprintf(err, errlen, "cannot apply filter \"%s\": %s", filter, pcap_geterr(p));
            pcap_close(p);
            return -1;
        }
    }
    ps_capture_file *f = calloc(1, sizeof(*f));
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!f || !(f->name = strdup(*base ? base : "file"))) {
        free(f);
        pcap_close(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->p = p;
    /* pcapng carries 64-bit timestamps that libpcap converts correctly. */
    f->classic = pcap_major_version(p) == 2;
    f->classic_frac_ns = f->classic ? classic_unit(path) : 0;
    *out = f;
    return 0;
}

uint32_t ps_capture_linktype(int dlt)
{
    /* libpcap hands out DLT_ values; files and the wire carry LINKTYPE_
     * values. They are equal except for a few historical DLTs whose numbers
     * differ between platforms (pcap-linktype(7)). */
    switch (dlt) {
    case 11: /* DLT_ATM_RFC1483 */
        return 100;
    case 12: /* DLT_RAW on most platforms */
    case 14: /* DLT_RAW on OpenBSD */
        return 101;
    case 15: /* DLT_SLIP_BSDOS */
        return 102;
    case 16: /* DLT_PPP_BSDOS */
        return 103;
    case 19: /* DLT_ATM_CLIP */
        return 106;
    default:
        return (uint32_t)dlt;
    }
}

uint32_t ps_capture_file_linktype(const ps_capture_file *f)
{
    return ps_capture_linktype(pcap_datalink(f->p));
}

uint32_t ps_capture_file_snaplen(const ps_capture_file *f)
{
    int s = pcap_snapshot(f->p);
    return s > 0 && (uint32_t)s <= PS_WIRE_MAX_CAPLEN ? (uint32_t)s : PS_WIRE_MAX_CAPLEN;
}

const char *ps_capture_file_name(const ps_capture_file *f)
{
    return f->name;
}

int ps_capture_file_read(ps_capture_file *f, ps_batcher *b, uint32_t iface, int max, char *err,
                         size_t errlen)
{
    int n = 0;
    while (n < max) {
        struct pcap_pkthdr *h;
        const u_char *data;
        int rc = pcap_next_ex(f->p, &h, &data);
        if (rc == PCAP_ERROR_BREAK)
            return n;
        if (rc != 1) {
            snprintf(err, errlen, "reading capture file: %s", pcap_geterr(f->p));
            return -1;
        }
        /* libpcap already refuses caplen above its maximum; origlen below
         * caplen is a corrupt record we must not forward as is. */
        uint32_t origlen = h->len < h->caplen ? h->caplen : h->len;
        uint64_t ts = f->classic
                          ? ps_capture_classic_ts(h->ts.tv_sec, h->ts.tv_usec, f->classic_frac_ns)
                          : (uint64_t)h->ts.tv_sec * 1000000000u + (uint64_t)h->ts.tv_usec;
        if (ps_batcher_add(b, iface, ts, h->caplen, origlen, data) != 0)
            f->dropped++;
        n++;
    }
    return n;
}

uint64_t ps_capture_file_dropped(const ps_capture_file *f)
{
    return f->dropped;
}

void ps_capture_file_free(ps_capture_file *f)
{
    if (!f)
        return;
    pcap_close(f->p);
    free(f->name);
    free(f);
}
