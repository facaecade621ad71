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

#include <pcap/pcap.h>

struct ps_capture_file {
    pcap_t *p;
    char *name;
    uint64_t dropped;
};

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
    /* Interface names go on the wire without '/' (it separates SENSOR/IFACE). */
    for (char *c = f->name; *c; c++)
        if (*c == '/' || (unsigned char)*c < 0x20)
            *c = '_';
    f->p = p;
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
        uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000000u + (uint64_t)h->ts.tv_usec;
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
