/*
 * recovery: batch markers, checkpoints, and the repair of files a crash left
 * behind (see recovery.h for the why).
 *
 * Marker and checkpoint data, big-endian:
 *   "PSB1" | entry            (one batch marker)
 *   "PSC1" | u32 n | n entries (a checkpoint that fits one block)
 *   "PSC2" | u32 part | u32 parts | u32 n | n entries (one part of a larger one)
 *   entry = u64 session | u64 seq | u16 id_len | id
 * An option holds at most 64 KiB, about 1500 entries. A larger checkpoint is
 * parts 0..parts-1 in consecutive blocks at the end of the file, so reading
 * it back is a walk from the file's end, one block back at a time, each
 * block found by the length field that ends the one before it; no index
 * and no side file to keep consistent. PSC1 stays for what fits, which
 * receivers that predate PSC2 still read.
 * carried as a custom option of an otherwise empty Name Resolution Block
 * (tools skip it; a pcapng Custom Block would show up in Wireshark as a
 * frame), followed by the option's zero padding. Files are read through a window so a
 * multi-gigabyte .part is walked with large reads, not one syscall per block.
 */
#include "recovery.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pcapng.h"
#include "core/wire.h"
#include "filename.h"

#define RC_WINDOW (4u << 20)
#define RC_MAX_TAIL (16u << 20) /* largest checkpoint we read back */

static int put_entry(ps_buf *out, const char *id, uint64_t session, uint64_t seq)
{
    size_t idl = strlen(id);
    if (idl == 0 || idl > PS_WIRE_MAX_ID_LEN || ps_buf_reserve(out, 18 + idl) != 0)
        return -1;
    uint8_t *p = out->data + out->len;
    ps_put_u64be(p, session);
    ps_put_u64be(p + 8, seq);
    ps_put_u16be(p + 16, (uint16_t)idl);
    memcpy(p + 18, id, idl);
    out->len += 18 + idl;
    return 0;
}

/* Largest option data one NRB can carry: the option length is 16 bits and
 * the PEN takes 4 of them. */
#define RC_OPT_MAX 65531u
/* "PSC2" | u32 part | u32 parts | u32 n */
#define RC_PART_HDR 16u

static int wrap(ps_buf *out, ps_buf *data)
{
    int rc = data->len <= RC_OPT_MAX
                 ? ps_pcapng_nrb_custom(out, PS_RECOVERY_PEN, data->data, (uint32_t)data->len)
                 : -1;
    ps_buf_free(data);
    return rc;
}

int ps_recovery_marker(ps_buf *out, const char *id, uint64_t session, uint64_t seq)
{
    ps_buf d = PS_BUF_INIT;
    if (ps_buf_append(&d, "PSB1", 4) != 0 || put_entry(&d, id, session, seq) != 0) {
        ps_buf_free(&d);
        return -1;
    }
    return wrap(out, &d);
}

static size_t entry_len(const ps_recovery_entry *e)
{
    return 18 + strlen(e->id);
}

/* One block's data: tag, [part, parts,] n, entries [from, to). */
static int put_block(ps_buf *out, const char *tag, uint32_t part, uint32_t parts,
                     const ps_recovery_entry *e, size_t from, size_t to)
{
    ps_buf d = PS_BUF_INIT;
    uint8_t hdr[12];
    size_t hl = 0;
    if (tag[3] == '2') {
        ps_put_u32be(hdr, part);
        ps_put_u32be(hdr + 4, parts);
        hl = 8;
    }
    ps_put_u32be(hdr + hl, (uint32_t)(to - from));
    hl += 4;
    if (ps_buf_append(&d, tag, 4) != 0 || ps_buf_append(&d, hdr, hl) != 0)
        goto fail;
    for (size_t i = from; i < to; i++)
        if (put_entry(&d, e[i].id, e[i].session, e[i].seq) != 0)
            goto fail;
    return wrap(out, &d);
fail:
    ps_buf_free(&d);
    return -1;
}

/* Where the part starting at entry from ends: as many entries as fit. */
static size_t part_end(const ps_recovery_entry *e, size_t n, size_t from)
{
    size_t used = RC_PART_HDR, i = from;
    while (i < n && used + entry_len(&e[i]) <= RC_OPT_MAX)
        used += entry_len(&e[i++]);
    return i;
}

int ps_recovery_checkpoint(ps_buf *out, const ps_recovery_entry *e, size_t n)
{
    size_t total = 8;
    for (size_t i = 0; i < n; i++) {
        size_t idl = strlen(e[i].id);
        if (idl == 0 || idl > PS_WIRE_MAX_ID_LEN)
            return -1;
        total += 18 + idl;
    }
    size_t before = out->len;
    /* What fits one block stays PSC1, which every receiver version reads. */
    if (total <= RC_OPT_MAX)
        return put_block(out, "PSC1", 0, 1, e, 0, n);
    size_t parts = 0;
    for (size_t i = 0; i < n; i = part_end(e, n, i))
        parts++;
    if (parts > UINT32_MAX)
        return -1;
    uint32_t part = 0;
    for (size_t i = 0; i < n; part++) {
        size_t end = part_end(e, n, i);
        if (put_block(out, "PSC2", part, (uint32_t)parts, e, i, end) != 0) {
            out->len = before; /* all parts or none */
            return -1;
        }
        i = end;
    }
    return 0;
}

static int parse_entry(const uint8_t **p, size_t *left, ps_recovery_cb cb, void *ud)
{
    if (*left < 18)
        return -1;
    uint64_t session = ps_get_u64be(*p);
    uint64_t seq = ps_get_u64be(*p + 8);
    uint16_t idl = ps_get_u16be(*p + 16);
    if (idl == 0 || idl > PS_WIRE_MAX_ID_LEN || *left - 18 < idl)
        return -1;
    if (cb)
        cb(ud, (const char *)*p + 18, idl, session, seq);
    *p += 18 + (size_t)idl;
    *left -= 18 + (size_t)idl;
    return 0;
}

/* As ps_recovery_parse; also tells which part of a checkpoint the block is
 * (PSB1 and PSC1: part 0 of 1). */
static int parse_data(const uint8_t *data, size_t len, ps_recovery_cb cb, void *ud, uint32_t *part,
                      uint32_t *parts)
{
    *part = 0;
    *parts = 1;
    if (len < 4)
        return 0;
    const uint8_t *p = data + 4;
    size_t left = len - 4;
    uint32_t n = 1;
    if (memcmp(data, "PSC2", 4) == 0) {
        if (left < 12)
            return -1;
        *part = ps_get_u32be(p);
        *parts = ps_get_u32be(p + 4);
        if (*parts == 0 || *part >= *parts)
            return -1;
        p += 8;
        left -= 8;
    }
    if (memcmp(data, "PSC1", 4) == 0 || memcmp(data, "PSC2", 4) == 0) {
        if (left < 4)
            return -1;
        n = ps_get_u32be(p);
        p += 4;
        left -= 4;
    } else if (memcmp(data, "PSB1", 4) != 0) {
        return 0;
    }
    /* Validate everything before reporting anything. */
    const uint8_t *q = p;
    size_t l = left;
    for (uint32_t i = 0; i < n; i++)
        if (parse_entry(&q, &l, NULL, NULL) != 0)
            return -1;
    if (l > 3)
        return -1; /* only block padding may follow */
    for (uint32_t i = 0; i < n; i++)
        parse_entry(&p, &left, cb, ud);
    return 1;
}

int ps_recovery_parse(const uint8_t *data, size_t len, ps_recovery_cb cb, void *ud)
{
    uint32_t part, parts;
    return parse_data(data, len, cb, ud, &part, &parts);
}

/* ---- a window over a file ---- */

typedef struct rc_file {
    int fd;
    uint64_t size;
    uint8_t *win;
    uint64_t win_off;
    size_t win_len;
} rc_file;

/* Pointer to n bytes at off, or NULL past the end or on a read error. */
static const uint8_t *rc_get(rc_file *f, uint64_t off, size_t n)
{
    if (n > RC_WINDOW || off > f->size || n > f->size - off)
        return NULL;
    if (off >= f->win_off && off + n <= f->win_off + f->win_len)
        return f->win + (off - f->win_off);
    size_t want = RC_WINDOW;
    if (want > f->size - off)
        want = (size_t)(f->size - off);
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(f->fd, f->win + got, want - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    f->win_off = off;
    f->win_len = got;
    return got >= n ? f->win : NULL;
}

/* ---- state: the last sequence per (sensor, session) ---- */

/* Hashed: a directory may hold thousands of files, each ending with a
 * checkpoint of every (sensor, session) the receiver knew, and a .part a
 * marker per batch; a list scan per fact would be quadratic. */
typedef struct rc_state {
    ps_recovery_entry *e; /* ids owned (ids[i] == e[i].id) */
    char **ids;
    size_t n, cap;
    uint32_t *tab; /* open addressing: index + 1, 0 empty; tabcap >= 2 * cap */
    size_t tabcap;
    int oom;
} rc_state;

static size_t state_hash(const char *id, size_t id_len, uint64_t session)
{
    uint64_t h = 1469598103934665603ull ^ session; /* FNV-1a, seeded with the session */
    for (size_t i = 0; i < id_len; i++)
        h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
    h ^= h >> 29;
    return (size_t)(h ^ (h >> 32));
}

static void state_insert(rc_state *st, size_t idx)
{
    size_t mask = st->tabcap - 1;
    const ps_recovery_entry *x = &st->e[idx];
    size_t i = state_hash(x->id, strlen(x->id), x->session) & mask;
    while (st->tab[i])
        i = (i + 1) & mask;
    st->tab[i] = (uint32_t)idx + 1;
}

static int state_grow(rc_state *st)
{
    size_t cap = st->cap ? st->cap * 2 : 8;
    if (cap > UINT32_MAX / 2)
        return -1;
    ps_recovery_entry *e = realloc(st->e, cap * sizeof(*e));
    if (!e)
        return -1;
    st->e = e;
    char **ids = realloc(st->ids, cap * sizeof(*ids));
    if (!ids)
        return -1;
    st->ids = ids;
    uint32_t *tab = calloc(cap * 2, sizeof(*tab));
    if (!tab)
        return -1;
    free(st->tab);
    st->tab = tab;
    st->tabcap = cap * 2;
    st->cap = cap;
    for (size_t i = 0; i < st->n; i++)
        state_insert(st, i);
    return 0;
}

static void state_add(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    rc_state *st = ud;
    /* A sensor id never holds a NUL (the HELLO check refuses it): such an
     * entry comes from a damaged or crafted file and names no sensor. */
    if (id_len == 0 || memchr(id, 0, id_len))
        return;
    if (st->tabcap) {
        size_t mask = st->tabcap - 1;
        for (size_t i = state_hash(id, id_len, session) & mask; st->tab[i]; i = (i + 1) & mask) {
            ps_recovery_entry *x = &st->e[st->tab[i] - 1];
            if (x->session == session && strlen(x->id) == id_len &&
                memcmp(x->id, id, id_len) == 0) {
                if (seq > x->seq)
                    x->seq = seq;
                return;
            }
        }
    }
    if (st->n == st->cap && state_grow(st) != 0) {
        st->oom = 1;
        return;
    }
    char *copy = strndup(id, id_len);
    if (!copy) {
        st->oom = 1;
        return;
    }
    st->ids[st->n] = copy;
    st->e[st->n] = (ps_recovery_entry){.id = copy, .session = session, .seq = seq};
    state_insert(st, st->n);
    st->n++;
}

static void state_free(rc_state *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->ids[i]);
    free(st->ids);
    free(st->e);
    free(st->tab);
}

/* ---- repair ---- */

/* Our NRB: records up to nrb_record_end, then options; 1 if one of them is
 * our custom option holding a marker or checkpoint (part of parts). */
static int parse_nrb_part(const uint8_t *blk, uint32_t len, ps_recovery_cb cb, void *ud,
                          uint32_t *part, uint32_t *parts)
{
    size_t off = 8, end = len - 4;
    for (;;) { /* records */
        if (end - off < 4)
            return 0;
        uint16_t rt, rl;
        memcpy(&rt, blk + off, 2);
        memcpy(&rl, blk + off + 2, 2);
        off += 4;
        if (rt == 0)
            break;
        size_t padded = ((size_t)rl + 3) & ~(size_t)3;
        if (end - off < padded)
            return 0;
        off += padded;
    }
    while (end - off >= 4) { /* options */
        uint16_t code, ol;
        memcpy(&code, blk + off, 2);
        memcpy(&ol, blk + off + 2, 2);
        off += 4;
        size_t padded = ((size_t)ol + 3) & ~(size_t)3;
        if (code == 0 || end - off < padded)
            return 0;
        uint32_t pen;
        if (code == PS_PCAPNG_OPT_CUSTOM_BIN_NOCOPY && ol >= 4) {
            memcpy(&pen, blk + off, 4);
            if (pen == PS_RECOVERY_PEN)
                return parse_data(blk + off + 4, ol - 4u, cb, ud, part, parts) == 1;
        }
        off += padded;
    }
    return 0;
}

static int parse_nrb(const uint8_t *blk, uint32_t len, ps_recovery_cb cb, void *ud)
{
    uint32_t part, parts;
    return parse_nrb_part(blk, len, cb, ud, &part, &parts);
}

/* Walks a pcapng file; returns the offset up to which it is whole and
 * holds no batch without its marker, or -1 if it is not a pcapng file we
 * wrote (foreign byte order, no SHB). */
static int64_t walk_pcapng(rc_file *f, rc_state *st)
{
    const uint8_t *h = rc_get(f, 0, 12);
    uint32_t magic;
    if (!h)
        return f->size == 0 ? 0 : -1;
    memcpy(&magic, h + 8, 4);
    uint32_t type;
    memcpy(&type, h, 4);
    if (type != PS_PCAPNG_SHB || magic != 0x1A2B3C4Du)
        return -1;
    uint64_t off = 0, good = 0;
    int data_since_good = 0;
    for (;;) {
        const uint8_t *b = rc_get(f, off, 8);
        if (!b)
            break;
        uint32_t len;
        memcpy(&type, b, 4);
        memcpy(&len, b + 4, 4);
        if (len < 12 || len % 4 || len > f->size - off || len > RC_WINDOW)
            break;
        const uint8_t *t = rc_get(f, off + len - 4, 4);
        uint32_t trail;
        if (!t)
            break;
        memcpy(&trail, t, 4);
        if (trail != len)
            break;
        if (type == PS_PCAPNG_NRB) {
            const uint8_t *blk = rc_get(f, off, len);
            if (!blk)
                break;
            if (parse_nrb(blk, len, state_add, st) == 1) {
                good = off + len;
                data_since_good = 0;
            } else if (!data_since_good) {
                good = off + len;
            }
        } else if (type == PS_PCAPNG_EPB || type == 3 /* SPB */ || type == 2 /* PB */) {
            data_since_good = 1;
        } else if (!data_since_good) {
            good = off + len; /* SHB, IDB, ISB before any unmarked packet */
        }
        off += len;
    }
    return (int64_t)good;
}

/* Classic pcap has no markers: keep every complete record. */
static int64_t walk_pcap(rc_file *f)
{
    const uint8_t *h = rc_get(f, 0, 24);
    if (!h)
        return f->size == 0 ? 0 : -1;
    uint32_t magic;
    memcpy(&magic, h, 4);
    if (magic != 0xA1B2C3D4u && magic != 0xA1B23C4Du)
        return -1;
    uint64_t off = 24;
    for (;;) {
        const uint8_t *r = rc_get(f, off, 16);
        if (!r)
            break;
        uint32_t caplen;
        memcpy(&caplen, r + 8, 4);
        if (caplen > PS_WIRE_MAX_CAPLEN || 16 + (uint64_t)caplen > f->size - off)
            break;
        off += 16 + (uint64_t)caplen;
    }
    return (int64_t)off;
}

/*
 * Opens a file of the output directory for recovery, refusing anything but a
 * regular file: the directory may hold what someone else put there, and a
 * symlinked ".part" must not make recovery truncate a file outside it, nor a
 * FIFO hang the receiver's start. -1 with errno set (ELOOP for a symlink,
 * EINVAL for another kind of file).
 */
static int open_regular(const char *path, int flags, struct stat *sb)
{
    int fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode)) {
        int e = S_ISREG(sb->st_mode) ? errno : EINVAL;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* name: a .part file's name (ps_fname_parse said so); pcapng: its EXT. */
static void repair_one(const char *dir, const char *name, int pcapng, rc_state *all,
                       ps_recovery_report *rep)
{
    char path[4096], final[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(final, sizeof(final), "%s", path);
    final[strlen(final) - strlen(PS_FNAME_PART)] = '\0';
    struct stat sb = {0};
    rc_file f = {.fd = open_regular(path, O_RDWR, &sb)};
    if (f.fd < 0) {
        ps_error("receiver", "cannot repair %s: %s; left as is", path,
                 errno == ELOOP    ? "a symbolic link"
                 : errno == EINVAL ? "not a regular file"
                                   : strerror(errno));
        return;
    }
    f.size = (uint64_t)sb.st_size;
    f.win = malloc(RC_WINDOW);
    rc_state st = {0};
    int64_t good = f.win ? (pcapng ? walk_pcapng(&f, &st) : walk_pcap(&f)) : -1;
    free(f.win);
    if (good < 0 || st.oom) {
        ps_error("receiver", "cannot repair %s: %s; left as is", path,
                 st.oom || !f.win ? "out of memory" : "not a capture file this receiver wrote");
        close(f.fd);
        state_free(&st);
        return;
    }
    ps_buf cp = PS_BUF_INIT;
    int ok = ftruncate(f.fd, (off_t)good) == 0;
    /* The repaired file ends like a cleanly closed one: with a checkpoint
     * of what it holds, so the next start reads its tail only. */
    if (ok && pcapng && good > 0 && st.n > 0) {
        ok = ps_recovery_checkpoint(&cp, st.e, st.n) == 0 &&
             pwrite(f.fd, cp.data, cp.len, (off_t)good) == (ssize_t)cp.len;
    }
    ps_buf_free(&cp);
    if (close(f.fd) != 0)
        ok = 0;
    if (!ok || link(path, final) != 0 || unlink(path) != 0) {
        ps_error("receiver", "cannot repair %s: %s; left as is", path, strerror(errno));
        state_free(&st);
        return;
    }
    ps_warn("receiver",
            "repaired %s left by an unclean stop: kept %lld of %llu bytes (up to the last whole "
            "batch), now %s",
            path, (long long)good, (unsigned long long)f.size, final);
    rep->repaired++;
    rep->bytes_cut += f.size - (uint64_t)good;
    for (size_t i = 0; i < st.n; i++)
        state_add(all, st.e[i].id, strlen(st.e[i].id), st.e[i].session, st.e[i].seq);
    state_free(&st);
}

/* The block that ends at end (its trailing length field sits just before
 * end): malloc'd into *blk, or NULL if there is none we would read. */
static uint8_t *block_before(int fd, off_t end, uint32_t *len)
{
    uint8_t lenb[4];
    if (end < 32 || pread(fd, lenb, 4, end - 4) != 4)
        return NULL;
    memcpy(len, lenb, 4);
    if (*len < 16 || *len % 4 || *len > RC_MAX_TAIL || (off_t)*len > end)
        return NULL;
    uint8_t *blk = malloc(*len);
    uint32_t type, l2;
    if (blk && pread(fd, blk, *len, end - (off_t)*len) == (ssize_t)*len) {
        memcpy(&type, blk, 4);
        memcpy(&l2, blk + 4, 4);
        if (type == PS_PCAPNG_NRB && l2 == *len)
            return blk;
    }
    free(blk);
    return NULL;
}

/*
 * Reads the checkpoint a completed pcapng file ends with, if any: one block,
 * or parts 0..N-1 in consecutive blocks, read from the last one backwards.
 * Every part is validated before its entries count; a missing or damaged
 * part loses only its own entries (each entry is a fact on its own) and is
 * logged.
 */
static void read_tail(const char *dir, const char *name, rc_state *all, ps_recovery_report *rep)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat sb = {0};
    int fd = open_regular(path, O_RDONLY, &sb);
    if (fd < 0)
        return;
    off_t end = sb.st_size;
    uint32_t parts = 1, want = 0, read = 0;
    for (;;) {
        uint32_t len = 0, part = 0, np = 0;
        uint8_t *blk = block_before(fd, end, &len);
        int ok = blk && parse_nrb_part(blk, len, NULL, NULL, &part, &np) == 1;
        if (ok && read > 0)
            ok = np == parts && part == want; /* the part that must come before */
        if (ok) {
            (void)parse_nrb_part(blk, len, state_add, all, &part, &np);
            if (read == 0) {
                parts = np;
                rep->files_read++;
            }
            read++;
            end -= (off_t)len;
        }
        free(blk);
        if (!ok || part == 0)
            break;
        want = part - 1;
    }
    if (read > 0 && read < parts)
        ps_warn("receiver",
                "%s: its checkpoint is incomplete (%u of %u parts readable); sensors in the "
                "missing parts may resend batches this file already holds",
                path, read, parts);
    close(fd);
}

int ps_recovery_run(const char *dir, const char *prefix, ps_format format, ps_recovery_cb cb,
                    void *ud, ps_recovery_report *rep, char *err, size_t errlen)
{
    memset(rep, 0, sizeof(*rep));
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    /* Two passes: repairs rename files, which must not confuse readdir. */
    char **parts = NULL, **done = NULL;
    size_t np = 0, nd = 0;
    int oom = 0;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        ps_fname fn;
        /* Every set under prefix (perSensor ones have a KEY); completed
         * classic pcap files have no checkpoint to read. */
        if (ps_fname_parse(n, prefix, &fn) != 0)
            continue;
        int is_part = fn.part;
        int is_done = !fn.part && fn.pcapng;
        if (!is_part && !is_done)
            continue;
        char ***list = is_part ? &parts : &done;
        size_t *cnt = is_part ? &np : &nd;
        char **grown = realloc(*list, (*cnt + 1) * sizeof(char *));
        char *copy = grown ? strdup(n) : NULL;
        if (grown)
            *list = grown;
        if (!copy) {
            oom = 1;
            break;
        }
        (*list)[(*cnt)++] = copy;
    }
    closedir(d);
    (void)format; /* repair follows each file's own format */
    /* Facts from every file are merged first, so the caller hears each
     * (sensor, session) once, with the highest sequence any file holds. */
    rc_state all = {0};
    for (size_t i = 0; i < nd && !oom; i++)
        read_tail(dir, done[i], &all, rep);
    for (size_t i = 0; i < np && !oom; i++) {
        ps_fname fn = {0};
        (void)ps_fname_parse(parts[i], prefix, &fn); /* matched above */
        repair_one(dir, parts[i], fn.pcapng, &all, rep);
    }
    oom = oom || all.oom;
    for (size_t i = 0; i < all.n && !oom; i++) {
        cb(ud, all.e[i].id, strlen(all.e[i].id), all.e[i].session, all.e[i].seq);
        rep->entries++;
    }
    state_free(&all);
    for (size_t i = 0; i < np; i++)
        free(parts[i]);
    for (size_t i = 0; i < nd; i++)
        free(done[i]);
    free(parts);
    free(done);
    if (oom) {
        snprintf(err, errlen, "out of memory reading %s", dir);
        return -1;
    }
    return 0;
}
