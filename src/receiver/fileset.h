/*
 * fileset: where the receiver's capture files go, and how each one is
 * started, completed and, under retention, deleted. The writer (writer.h)
 * puts records into the current file of a set; everything about paths,
 * names, rotation's mechanics and retention is here.
 *
 * Output path (opts.path), decided once at open:
 *  - "-", "stdout" or "/dev/stdout": one stream on fd 1 (never closed), no
 *    rotation, retention, .part or on_file_closed; per_sensor is ignored.
 *  - a directory when it is an existing directory, ends in '/', or does not
 *    exist and its last component has no '.' (after a leading one), so the
 *    default "./captures" is a directory. Prefix "packetstreamer".
 *  - otherwise DIR/PREFIX: DIR = dirname(path), PREFIX = basename(path) minus
 *    a ".pcapng"/".pcap" suffix: "/data/run.pcapng" or an existing regular
 *    file "/tmp/dump_file" give /data/run-... or /tmp/dump_file-....
 * The directory is created (mkdir -p, 0750) and probed for writability.
 *
 * A file set is the sequence of files one prefix produces: one set in total,
 * or one per sensor KEY with per_sensor (PREFIX-KEY). File names follow
 * filename.h: UTC of the file's creation and a per-set counter that
 * continues after the highest one found in the directory (NAME.part
 * included), so a restart never reuses a name; nothing is ever overwritten.
 * A file is written as NAME.part and renamed to NAME once complete.
 * Retention counts the set's completed files in the directory, earlier
 * runs' included, and deletes oldest first.
 *
 * Open files (per_sensor only; the single set keeps its file open): a set
 * whose file took no record for idle_close_seconds (0: never) has it
 * completed by ps_files_tick, as a rotation would, so files of departed
 * sensors do not stay open; the next record starts a new file. At most
 * max_open_files per-sensor files are open at once (0: no limit of its own),
 * and never more than a quarter of RLIMIT_NOFILE's soft limit (at least 4),
 * read at open: starting one more
 * first completes the least recently used other file. When creating a file
 * or reading the directory fails with EMFILE or ENFILE, the least recently
 * used other file is completed and the call retried once. A file completed
 * early is a complete file like any other (checkpoint, rename, retention).
 *
 * Single-threaded: call from the receiver's event loop only.
 */
#ifndef PS_FILESET_H
#define PS_FILESET_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"

/* Every file's snaplen (pcap header, pcapng IDBs): the largest caplen the
 * receiver accepts. libpcap refuses IDBs that disagree, and one file holds
 * interfaces of many sensors. */
#define PS_FILESET_SNAPLEN 262144u

typedef struct ps_files ps_files;

typedef struct ps_files_opts {
    const char *path; /* directory, dir/prefix, or "-" for stdout */
    ps_format format;
    uint32_t rotate_seconds;  /* 0 = never (ps_files_tick) */
    uint32_t max_files;       /* 0 = unlimited: completed files kept per set */
    uint64_t max_total_bytes; /* 0 = unlimited: completed files' bytes per set */
    int per_sensor;
    /* per_sensor only (see "Open files" above); 0 = never / unlimited. */
    uint32_t idle_close_seconds;
    uint32_t max_open_files;
    const char *app; /* shb_userappl; NULL: "packetstreamer" */
    unsigned mode;   /* capture files' permission bits; 0 means 0640 */
    /* As in ps_writer_opts (writer.h). */
    int (*checkpoint)(void *ud, ps_buf *out);
    void (*on_recovered)(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq);
    void (*on_file_closed)(void *ud, const char *path, uint64_t packets, uint64_t bytes);
    void *ud;
} ps_files_opts;

/* What the receiver knows about a file's contents (files of this run only:
 * files found from earlier runs have first_ns == 0). */
typedef struct ps_file_meta {
    uint64_t first_ns, last_ns, packets;
    char *sensors; /* comma-separated sensor ids, NULL if none */
} ps_file_meta;

typedef struct ps_file_done {
    char *name; /* file name inside the directory */
    uint64_t size;
    uint64_t counter;
    ps_file_meta meta;
} ps_file_done;

/*
 * One file set. The first group of fields is the record path's (writer.c):
 * it appends encoded blocks to buf and keeps file_bytes/file_packets and
 * the pcapng interface ids up to date. The rest belongs to fileset.c.
 */
typedef struct ps_fileset {
    ps_buf buf;          /* the current file's bytes not yet written */
    int open;            /* a current file exists (stdout: the stream started) */
    uint64_t gen;        /* generation of the current file, unique per ps_files */
    uint32_t next_if_id; /* next pcapng interface id in the current file */
    uint64_t file_bytes; /* current file: written + buffered */
    uint64_t file_packets;
    int has_linktype;
    uint32_t linktype; /* classic pcap: fixed by the set's first interface */
    uint64_t last_use; /* the writer's use count at this set's last record (LRU) */

    char *key;    /* sensor KEY, NULL for the single set */
    char *prefix; /* file-name prefix: PREFIX or PREFIX-KEY */
    int fd;
    uint64_t opened_ns;
    ps_file_meta meta;   /* current file's contents */
    uint64_t counter;    /* current file's counter */
    int rotate_deferred; /* a size rotation is pending on failing writes */
    uint64_t next_counter;
    uint64_t tick_use;  /* last_use when ps_files_tick last saw it change */
    uint64_t active_ns; /* when ps_files_tick last saw it change */
    char final[PATH_MAX];
    char part[PATH_MAX];
    ps_file_done *done; /* completed files, oldest first */
    size_t ndone, capdone;
    uint64_t done_bytes;
} ps_fileset;

/* Resolves the path, creates and probes the directory, runs recovery
 * (recovery.h) when on_recovered is set, and (without per_sensor) creates
 * the single set. No file is created until the first ps_fileset_start. */
int ps_files_open(ps_files **fs, const ps_files_opts *o, char *err, size_t errlen);

int ps_files_to_stdout(const ps_files *fs);

/* The set a sensor's records go to, created (and its directory scan done)
 * on first use. NULL with err and errno on failure. */
ps_fileset *ps_files_set_for(ps_files *fs, const char *sensor, char *err, size_t errlen);

/* Starts the set's next file: its header goes into the (empty) buffer and
 * NAME.part is created. 0, or -1 with errno. */
int ps_fileset_start(ps_files *fs, ps_fileset *s);

/* Writes the set's buffer out. On error exactly the bytes write(2) accepted
 * are consumed, so a retry continues the file byte for byte. */
int ps_fileset_flush(ps_files *fs, ps_fileset *s);

/* Size rotation: completes the current file. If the flush fails the file
 * stays current (logged once, "rotation deferred") and grows past the limit
 * until a later attempt succeeds; a failed close or rename is logged and the
 * next file starts anyway. Never fails the caller's record. */
void ps_fileset_rotate(ps_files *fs, ps_fileset *s);

/* Notes one record for the file list (ps_files_meta): sensor is the
 * record's sensor id the first time it appears in the current file, else
 * NULL. OOM only loses the sensor from the list. */
void ps_fileset_note(ps_fileset *s, uint64_t ts_ns, const char *sensor);

/* Flushes every set; 0, or -1 with the first errno. */
int ps_files_flush(ps_files *fs);

/* Completes files older than rotate_seconds, and per-sensor files idle for
 * idle_close_seconds. now_ns: CLOCK_REALTIME; call about once a second. */
int ps_files_tick(ps_files *fs, uint64_t now_ns);

typedef struct ps_files_totals {
    uint64_t bytes; /* written to files since open */
    uint64_t files_closed;
    uint64_t files_deleted;       /* by retention */
    uint64_t checkpoint_failures; /* files closed without their checkpoint */
    uint64_t closed_idle;         /* per-sensor files completed for idleness */
    uint64_t closed_open_limit;   /* ... to stay under max_open_files or after EMFILE */
    uint64_t open_files;          /* files open now (a gauge) */
} ps_files_totals;
void ps_files_get_totals(const ps_files *fs, ps_files_totals *t);

/* Output directory and file-name prefix (NULL for stdout). */
const char *ps_files_dir(const ps_files *fs);
const char *ps_files_prefix(const ps_files *fs);
/* Completed files known (this run's and those found at open) plus what
 * reached the open files. */
uint64_t ps_files_disk_bytes(const ps_files *fs);
/* The file list of ps_writer_files_meta (writer.h). 0, or -1 on OOM. */
int ps_files_meta(const ps_files *fs, ps_buf *out);

/* Flushes, closes and renames every open file, frees fs. 0, or -1 if a
 * flush failed (the .part file is then left for repair). NULL is a no-op. */
int ps_files_close(ps_files *fs);

#endif
