/*
 * writer: the receiver's capture files. Takes records from all sessions and
 * appends them to the current file of the right file set, rotating by size
 * and time, applying retention, and renaming "NAME.part" to "NAME" once a
 * file is complete.
 *
 * In pcapng each (sensor, interface) gets an Interface Description Block
 * named "SENSOR/IFACE" the first time one of its packets goes into a file,
 * so every file stands alone; all IDBs carry snaplen 262144 (libpcap
 * refuses IDBs that disagree). Classic pcap holds one link type: the first
 * interface of a file set fixes it and an interface with another link type
 * is refused (ps_writer_iface returns -1 with a message).
 *
 * Output path rules (stdout, a directory, DIR/PREFIX), file sets, .part
 * files, rotation's mechanics, retention, and how many per-sensor files stay
 * open (idle ones are completed; at most max_open_files): fileset.h. File names:
 * filename.h, PREFIX[-SENSOR]-YYYYmmddTHHMMSSZ-NNNNNN.EXT, where SENSOR is
 * the sensor id made safe for a file name (ps_fname_key); sensors whose ids
 * map to the same SENSOR share a file set.
 *
 * Records are encoded into an in-memory buffer; ps_writer_flush() writes it
 * out with large write(2) calls. A record is "written" (and may be
 * acknowledged to the sensor) once a flush that followed it returned 0.
 * Single-threaded: call from the receiver's event loop only.
 */
#ifndef PS_WRITER_H
#define PS_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"

typedef struct ps_writer ps_writer;

typedef struct ps_writer_opts {
    const char *path; /* directory, dir/prefix, or "-" for stdout */
    ps_format format;
    uint64_t rotate_bytes;    /* 0 = never */
    uint32_t rotate_seconds;  /* 0 = never */
    uint32_t max_files;       /* 0 = unlimited: completed files kept per set */
    uint64_t max_total_bytes; /* 0 = unlimited: completed files' bytes per set */
    int per_sensor;
    /* per_sensor only: a file idle this long is completed; at most this many
     * files open (fileset.h, "Open files"). 0 = never / unlimited. */
    uint32_t idle_close_seconds;
    uint32_t max_open_files;
    const char *app; /* shb_userappl */
    /* pcapng files only (not stdout), both may be NULL:
     * checkpoint appends the receiver's sequence checkpoint to a file about
     * to close (ps_recovery_checkpoint); on_recovered receives, at open, each
     * (sensor, session, last sequence) that earlier runs left in the files,
     * after .part files from a crash have been repaired (recovery.h). */
    int (*checkpoint)(void *ud, ps_buf *out);
    void (*on_recovered)(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq);
    unsigned mode; /* capture files' permission bits; 0 means 0640 */
    /* Called after a file is closed and renamed to its final name. */
    void (*on_file_closed)(void *ud, const char *path, uint64_t packets, uint64_t bytes);
    void *ud;
} ps_writer_opts;

/* Creates the output directory if needed and checks it is writable. No file
 * is created until the first record. */
int ps_writer_open(ps_writer **w, const ps_writer_opts *o, char *err, size_t errlen);

/* Registers (sensor, interface); returns a handle >= 0 for ps_writer_record,
 * the same handle again for the same (sensor, name), or -1 with err set.
 * Each successful call takes a reference the caller gives back with
 * ps_writer_iface_release once it will not use the handle any more. */
int ps_writer_iface(ps_writer *w, const char *sensor, const char *ifname, const char *desc,
                    uint32_t linktype, uint32_t snaplen, char *err, size_t errlen);
/* Gives back one reference. The last one frees the entry (and its handle
 * may be reused for another interface) at once, or, while the entry's IDB
 * is in its file set's current file, at the first ps_writer_tick after that
 * file rotated, so a sensor reconnecting within the file gets the same
 * handle and the file no second IDB. Memory: entries held by references,
 * plus those waiting for their file to rotate. */
void ps_writer_iface_release(ps_writer *w, int iface);
/* Interface entries held now (referenced or waiting for a rotation). */
size_t ps_writer_iface_count(const ps_writer *w);

/* Appends one record. Returns 0 or -1 with errno. caplen <= origlen and
 * caplen <= 262144 checked by the caller (wire record iterator). On -1 the
 * record was not taken: ENOMEM, EINVAL (bad handle), EOVERFLOW (a classic
 * pcap timestamp past 2106), a new file that cannot be created, or 64 MiB
 * buffered while writes fail. A size rotation whose flush fails is deferred,
 * not reported here: the record is buffered and the next ps_writer_flush()
 * returns the error. */
int ps_writer_record(ps_writer *w, int iface, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                     const uint8_t *data);

/*
 * Ends a batch of records from (sensor, session): in pcapng files a batch
 * marker follows the batch's records (recovery.h), and a size rotation, if
 * due, happens here, between batches, so a batch never spans two files
 * (files may exceed rotate_bytes by up to one batch). iface: any handle of
 * that sensor (it names the file set). Classic pcap and stdout: no marker.
 */
int ps_writer_batch_end(ps_writer *w, int iface, const char *sensor, uint64_t session,
                        uint64_t seq);

/* Interface statistics (pcapng ISB; ignored for classic pcap). */
int ps_writer_iface_stats(ps_writer *w, int iface, uint64_t ts_ns, uint64_t recv, uint64_t drop,
                          uint64_t osdrop);

/* Writes out buffered bytes. 0, or -1 with errno (e.g. ENOSPC). */
int ps_writer_flush(ps_writer *w);

/* Rotates files whose time is up, completes idle per-sensor files, and frees
 * released interface entries whose file has rotated. now_ns:
 * CLOCK_REALTIME; call about once a second. */
int ps_writer_tick(ps_writer *w, uint64_t now_ns);

typedef struct ps_writer_totals {
    uint64_t packets; /* records accepted since open */
    uint64_t bytes;   /* bytes written to files since open */
    uint64_t files_closed;
    uint64_t files_deleted;       /* by retention */
    uint64_t checkpoint_failures; /* files closed without their checkpoint (OOM) */
    uint64_t closed_idle;         /* per-sensor files completed after idle_close_seconds */
    uint64_t closed_open_limit;   /* ... to stay under max_open_files, or on EMFILE */
    uint64_t open_files;          /* capture files open now */
} ps_writer_totals;
void ps_writer_get_totals(const ps_writer *w, ps_writer_totals *t);

/* Output directory and file-name prefix (NULL for stdout). */
const char *ps_writer_dir(const ps_writer *w);
const char *ps_writer_prefix(const ps_writer *w);
/* Bytes of this writer's files on disk: completed files it knows of (this
 * run's and those found at open), plus what reached the open files. */
uint64_t ps_writer_disk_bytes(const ps_writer *w);

/* Appends one line per file written by this process, current ones included:
 * "NAME\tFIRST_NS\tLAST_NS\tPACKETS\tCOMPLETE\tSENSOR,SENSOR\n" (an open
 * file under its NAME.part). The writer is single-threaded: the receiver
 * calls this from its loop and publishes the text for the HTTP threads.
 * 0, or -1 on OOM. */
int ps_writer_files_meta(const ps_writer *w, ps_buf *out);

/* Flushes, closes and renames every open file, frees w. Returns 0, or -1 if a
 * flush failed (the .part file is then left for repair). NULL is a no-op. */
int ps_writer_free(ps_writer *w);

#endif
