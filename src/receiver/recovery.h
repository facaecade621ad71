/*
 * recovery: what a restarted receiver learns from its own files.
 *
 * After each batch the writer appends a small block (a batch marker: sensor
 * id, session, sequence) right after the batch's records, in
 * the same buffer, so a marker is on disk only if every record before it is.
 * Each file also ends with a checkpoint listing the last sequence of every
 * (sensor, session) the receiver knows: one block while it fits (64 KiB,
 * about 1500 entries), else as many consecutive blocks as it needs, each
 * naming its part and the number of parts, so a checkpoint has no size
 * limit. At start:
 *
 *   - each PREFIX-*.pcapng.part left by a crash (names as in filename.h, any
 *     KEY: every set under the prefix) is cut back to just after its
 *     last batch marker (so no half batch survives to be written again when
 *     the sensor resends it), gets a checkpoint of its own markers, and is
 *     renamed to its final name; a classic pcap .part is cut back to its last
 *     complete record (pcap has no room for markers: see docs/reliability.md);
 *   - the trailing checkpoints of all completed files, and the markers of the
 *     files just repaired, give the last sequence written per (sensor,
 *     session); sensors that reconnect resume after it, and the receiver
 *     drops what it already has.
 *
 * Both are a pcapng custom option (private enterprise number 32473, RFC
 * 5612's documentation PEN; binary, not to be copied) on an otherwise empty
 * Name Resolution Block: Wireshark, tshark, capinfos and tcpdump read past
 * it and show no extra frame.
 */
#ifndef PS_RECOVERY_H
#define PS_RECOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"

#define PS_RECOVERY_PEN 32473u

typedef struct ps_recovery_entry {
    const char *id;
    uint64_t session;
    uint64_t seq;
} ps_recovery_entry;

/* Appends a batch marker / a checkpoint (one or more whole custom blocks,
 * all or none). -1 on OOM or an id outside 1..PS_WIRE_MAX_ID_LEN bytes;
 * out is then as it was. */
int ps_recovery_marker(ps_buf *out, const char *id, uint64_t session, uint64_t seq);
int ps_recovery_checkpoint(ps_buf *out, const ps_recovery_entry *e, size_t n);

typedef void (*ps_recovery_cb)(void *ud, const char *id, size_t id_len, uint64_t session,
                               uint64_t seq);

/* Decodes a custom block's data (after the PEN). 1 if it was a marker or a
 * checkpoint or one part of one (cb called per entry), 0 if it is not ours,
 * -1 if malformed (then cb is never called). */
int ps_recovery_parse(const uint8_t *data, size_t len, ps_recovery_cb cb, void *ud);

typedef struct ps_recovery_report {
    unsigned repaired;   /* .part files cut back and renamed */
    uint64_t bytes_cut;  /* bytes removed from them */
    unsigned files_read; /* completed files whose checkpoint was read */
    uint64_t entries;    /* distinct (sensor, session) reported to cb */
} ps_recovery_report;

/* Repairs and reads dir/prefix-* as described above, then calls cb once per
 * (sensor, session) with the highest sequence found. Errors (an unreadable
 * directory, out of memory) return -1 with err set; a file that cannot be
 * repaired is logged and left alone, a checkpoint with a missing part is
 * logged and its other parts are used. */
int ps_recovery_run(const char *dir, const char *prefix, ps_format format, ps_recovery_cb cb,
                    void *ud, ps_recovery_report *rep, char *err, size_t errlen);

#endif
