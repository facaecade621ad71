/*
 * pcapng: encoders for the pcapng blocks the receiver writes (Section Header,
 * Interface Description, Enhanced Packet, Interface Statistics), and the
 * classic pcap file header and record header.
 *
 * Pure: each function appends one block to a ps_buf in host byte order (the
 * byte-order magic tells readers which one) and returns 0, or -1 on OOM or a
 * value out of range (the buffer is then unchanged). Layouts follow
 * draft-ietf-opsawg-pcapng; every block is padded to 32 bits.
 */
#ifndef PS_PCAPNG_H
#define PS_PCAPNG_H

#include <stdint.h>

#include "buf.h"

#define PS_PCAPNG_SHB 0x0A0D0D0Au
#define PS_PCAPNG_IDB 0x00000001u
#define PS_PCAPNG_EPB 0x00000006u
#define PS_PCAPNG_ISB 0x00000005u
#define PS_PCAPNG_NRB 0x00000004u
#define PS_PCAPNG_OPT_CUSTOM_BIN_NOCOPY 19373 /* custom option: binary, not copied */
#define PS_PCAPNG_EPB_OVERHEAD 32             /* block header/trailer + fixed fields */

/* Section header: shb_userappl = app (e.g. "packetstreamer 0.1.0"),
 * shb_os = os (may be NULL). Section length -1 (unknown). */
int ps_pcapng_shb(ps_buf *out, const char *app, const char *os);

/* Interface description with if_name, if_description (may be NULL) and
 * if_tsresol = 9 (nanoseconds). */
int ps_pcapng_idb(ps_buf *out, uint16_t linktype, uint32_t snaplen, const char *name,
                  const char *desc);

/* Enhanced packet with a nanosecond timestamp. Inline: the receiver's hot
 * path. Caller guarantees caplen <= origlen semantics were checked. */
int ps_pcapng_epb(ps_buf *out, uint32_t if_id, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                  const uint8_t *data);

typedef struct ps_pcapng_isb_counters {
    uint64_t ts_ns;
    uint64_t recv;      /* isb_ifrecv: packets the sensor captured */
    uint64_t drop;      /* isb_ifdrop: kernel + interface drops */
    uint64_t osdrop;    /* isb_osdrop: drops inside the sensor */
    uint64_t delivered; /* isb_usrdeliv: packets written to this file set */
} ps_pcapng_isb_counters;

int ps_pcapng_isb(ps_buf *out, uint32_t if_id, const ps_pcapng_isb_counters *c);

/* A Name Resolution Block with no records and one custom option (binary,
 * not to be copied: PS_PCAPNG_OPT_CUSTOM_BIN_NOCOPY) holding pen + data.
 * Wireshark, tshark and libpcap read past it without showing a frame,
 * unlike a Custom Block, which Wireshark 4 lists as one; len <= 65531. */
int ps_pcapng_nrb_custom(ps_buf *out, uint32_t pen, const uint8_t *data, uint32_t len);

/* Classic pcap: 24-byte file header (nanosecond magic a1b23c4d when ns) and a
 * 16-byte record header + data; microsecond files truncate ts_ns. */
int ps_pcap_file_header(ps_buf *out, int nanosecond, uint32_t snaplen, uint32_t linktype);
int ps_pcap_record(ps_buf *out, int nanosecond, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                   const uint8_t *data);

#endif
