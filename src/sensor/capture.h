/*
 * capture: packets from a capture file: a pcap or pcapng file read with
 * libpcap (--read-file), with nanosecond timestamps kept and an optional BPF
 * filter applied, into the batcher. Live interfaces are capture_live.h, which
 * feeds the same batcher and shares ps_capture_linktype().
 */
#ifndef PS_CAPTURE_H
#define PS_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

#include "batcher.h"

typedef struct ps_capture_file ps_capture_file;

/* The LINKTYPE_ value (what files and the wire carry) for a libpcap DLT_. */
uint32_t ps_capture_linktype(int dlt);

/* Opens path; filter may be NULL. On error returns -1 with a message naming
 * the file (and quoting the filter and libpcap's words when it is at fault). */
int ps_capture_file_open(ps_capture_file **out, const char *path, const char *filter, char *err,
                         size_t errlen);
/* The nanosecond timestamp of a classic pcap record from the timeval libpcap
 * returned for it (nanosecond precision requested), read as the format's
 * unsigned 32-bit fields. unit_ns: 1000 for a microsecond file, 1 for a
 * nanosecond one, 0 if unknown (guessed from the value). */
uint64_t ps_capture_classic_ts(int64_t tv_sec, int64_t tv_frac, unsigned unit_ns);
uint32_t ps_capture_file_linktype(const ps_capture_file *f);
uint32_t ps_capture_file_snaplen(const ps_capture_file *f);
/* The interface name announced for the file: its base name. */
const char *ps_capture_file_name(const ps_capture_file *f);

/*
 * Reads up to max packets into the batcher under interface number iface.
 * Returns the number read (> 0), 0 at the end of the file, or -1 with err set
 * (a truncated or corrupt file: what was read before stays valid).
 */
int ps_capture_file_read(ps_capture_file *f, ps_batcher *b, uint32_t iface, int max, char *err,
                         size_t errlen);
uint64_t ps_capture_file_dropped(const ps_capture_file *f); /* OOM in the batcher */
/* Closes the file and frees f, synchronously. NULL is a no-op. */
void ps_capture_file_free(ps_capture_file *f);

#endif
