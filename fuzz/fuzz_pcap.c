/*
 * fuzz_pcap: libpcap's pcap and pcapng reader as the sensor uses it
 * (capture.c: offline, nanosecond precision), fed from memory with fmemopen.
 * Capture files given to --read-file are uploaded by users: not trusted.
 */
#include <pcap/pcap.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    FILE *f = fmemopen((void *)(uintptr_t)data, size, "rb");
    if (!f)
        return 0;
    char ebuf[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_NANO, ebuf);
    if (!p) {
        fclose(f);
        return 0;
    }
    struct pcap_pkthdr *h;
    const u_char *pkt;
    unsigned sum = 0;
    (void)pcap_datalink(p);
    (void)pcap_snapshot(p);
    for (int n = 0; n < 100000 && pcap_next_ex(p, &h, &pkt) == 1; n++)
        if (h->caplen > 0)
            sum += pkt[h->caplen - 1];
    pcap_close(p); /* closes f */
    return sum == 0xdeadbeefu ? 1 : 0;
}
