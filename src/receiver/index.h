/*
 * index: a side index per completed pcapng capture file, so the extraction
 * API (query.h) opens only the files that can hold what a request asks for.
 *
 * For each file DIR/NAME the index DIR/.index/NAME.idx (JSON) records the
 * file's size, its packets' earliest and latest timestamps and count, and
 * its interfaces in IDB order (the IDB's if_id is the position): name
 * ("SENSOR/IFACE", "SENSOR/NAMESPACE/POD"), description, link type,
 * snaplen, if_tsresol, and each interface's own earliest/latest timestamp
 * and packet count. An index whose size differs from the file's is stale
 * and ignored. Indexes live in a hidden subdirectory so that a glob of the
 * directory's files (mergecap) and the file list never see them.
 *
 * Who writes them: the builder, a thread of its own, indexes each file the
 * writer completes (ps_index_builder_add, called after the rename) and, at
 * start, every completed file of the prefix that has no index (files from
 * before an upgrade, from a crash, or whose index was deleted); it also
 * deletes indexes whose file is gone (retention; output.s3.deleteLocal
 * moves a file's index out of .index first, upload.h). Indexing a file reads it
 * once (block headers and IDBs; a just-closed file is in the page cache)
 * away from the packet loop. A query that finds no index scans the file
 * itself and saves what it found (ps_index_build).
 *
 * Prefix ps_index_ (files and scans) and ps_index_builder_ (the thread).
 * ps_index_scan/load/save/build are pure functions of their arguments and
 * the file system, callable from any thread; writes are atomic (a unique
 * temporary name, then rename).
 */
#ifndef PS_INDEX_H
#define PS_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define PS_INDEX_DIR ".index"
#define PS_INDEX_EXT ".idx"
#define PS_INDEX_MAX_IFACES 65536 /* more IDBs than this: the rest are not indexed */

typedef struct ps_index_iface {
    char *name, *desc; /* malloc'd; desc "" when absent */
    uint32_t linktype, snaplen;
    uint8_t tsresol;
    uint64_t first_ns, last_ns, packets; /* this interface's packets in the file */
} ps_index_iface;

/* A stretch of the file starting at a block boundary: the packets in
 * [offset, next chunk's offset or data_end). first_ns/last_ns are their
 * earliest and latest timestamps (0 when packets == 0). */
typedef struct ps_index_chunk {
    uint64_t offset, first_ns, last_ns, packets;
} ps_index_chunk;

typedef struct ps_index {
    uint64_t size;                       /* bytes of the file described (its size when scanned) */
    uint64_t data_end;                   /* end of its last complete block: readers stop here */
    uint64_t first_ns, last_ns, packets; /* all packets; first_ns == 0 when none */
    ps_index_iface *ifs;                 /* ifs[i] is if_id i */
    size_t nifs;
    ps_index_chunk *chunks; /* in file order, about chunk_bytes each */
    size_t nchunks;
} ps_index;

/* Scans fd (a pcapng file, not owned) up to size bytes into *out: up to the
 * last complete block when the file is still being written; a new chunk at
 * the first block boundary past every chunk_bytes (PS_INDEX_CHUNK for
 * ps_index_build). 0, or -1 with err: not a pcapng file in host byte order,
 * a read error, OOM. */
#define PS_INDEX_CHUNK (4u << 20)
int ps_index_scan(int fd, uint64_t size, uint64_t chunk_bytes, ps_index *out, char *err,
                  size_t errlen);

/* Continues a scan of a growing file (a .part): x describes its first
 * x->data_end bytes; reads on from there up to size. 0, or -1 with err (x
 * is then freed). */
int ps_index_scan_more(int fd, uint64_t size, uint64_t chunk_bytes, ps_index *x, char *err,
                       size_t errlen);
/* A deep copy. 0, or -1 on OOM (dst empty). */
int ps_index_dup(const ps_index *src, ps_index *dst);

/* Reads DIR/.index/NAME.idx. 0 if present, well formed and describing a
 * file of `size` bytes; -1 otherwise (*out then empty). */
int ps_index_load(const char *dir, const char *name, uint64_t size, ps_index *out);

/* Writes DIR/.index/NAME.idx atomically (creating DIR/.index, mode 0750).
 * 0, or -1 with err. */
int ps_index_save(const char *dir, const char *name, const ps_index *x, char *err, size_t errlen);

/* Opens DIR/NAME (a regular file, no symlink), scans it and, unless it ends
 * in .part, saves the index. 0, or 1 if the scan worked but the index could
 * not be saved (err says why: a read-only directory, an interface name that
 * is not UTF-8; the file is then scanned again by each query), with *out
 * filled in both cases when out is not NULL; -1 with err if the file cannot
 * be read or is not pcapng (errno ENOENT when it is gone). */
int ps_index_build(const char *dir, const char *name, ps_index *out, char *err, size_t errlen);

/* Releases what x holds (not x). */
void ps_index_free(ps_index *x);

typedef struct ps_index_builder ps_index_builder;

/* Starts the builder thread for DIR/PREFIX-* (filename.h). It first
 * removes orphan indexes and indexes the completed pcapng files that have
 * none. 0, or -1 with err (OOM, no thread). */
int ps_index_builder_open(ps_index_builder **out, const char *dir, const char *prefix, char *err,
                          size_t errlen);
/* Any thread: queues the completed file at path (its directory must be the
 * builder's) for indexing. Never blocks on the scan; OOM loses the entry
 * (a query then scans the file itself). NULL b: no-op. */
void ps_index_builder_add(ps_index_builder *b, const char *path);
/* Stops the thread (a scan in progress finishes; the queue is dropped),
 * joins it and frees. NULL: no-op. */
void ps_index_builder_free(ps_index_builder *b);

#endif
