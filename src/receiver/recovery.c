/*
 * recovery: batch markers, checkpoints, and the repair of files a crash left
 * behind (see recovery.h for the why).
 *
 * Marker and checkpoint data, big-endian:
 *   "PSB1" | entry            (one batch marker)
 *   "PSC1" | u32 n | n entries (checkpoint)
 *   entry = u64 session | u64 seq | u16 id_len | id
 * carried as a custom option of an otherwise empty Name Resolution Block
 * (tools skip it; a pcapng Custom Block would show up in Wireshark as a
 * frame), followed by the option's zero padding. Files are read through a window so a
 * multi-gigabyte .part is walked with large reads, not one syscall per block.
 */
#include "recovery.h"

#include "filename.h"

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

static int wrap(ps_buf *out, ps_buf *data)
{
    int rc = data->len <= 65531
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

int ps_recovery_checkpoint(ps_buf *out, const ps_recovery_entry *e, size_t n)
{
    ps_buf d = PS_BUF_INIT;
    uint8_t cnt[4];
    ps_put_u32be(cnt, (uint32_t)n);
    if (n > UINT32_MAX || ps_buf_append(&d, "PSC1", 4) != 0 || ps_buf_append(&d, cnt, 4) != 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (put_entry(&d, e[i].id, e[i].session, e[i].seq) != 0)
            goto fail;
    return wrap(out, &d);
fail:
    ps_buf_free(&d);
    return -1;
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

int ps_recovery_parse(const uint8_t *data, size_t len, ps_recovery_cb cb, void *ud)
{
    if (len < 4)
        return 0;
    const uint8_t *p = data + 4;
    size_t left = len - 4;
    uint32_t n = 1;
    if (memcmp(data, "PSC1", 4) == 0) {
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

/* ---- state collected from one file ---- */

typedef struct rc_state {
    ps_recovery_entry *e;
    char **ids;
    size_t n, cap;
    int oom;
} rc_state;

static void state_add(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    rc_state *st = ud;
    for (size_t i = 0; i < st->n; i++) {
        if (st->e[i].session == session && strlen(st->ids[i]) == id_len &&
            memcmp(st->ids[i], id, id_len) == 0) {
            if (seq > st->e[i].seq)
                st->e[i].seq = seq;
            return;
        }
    }
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 8;
        ps_recovery_entry *e = realloc(st->e, cap * sizeof(*e));
        if (e)
            st->e = e;
        char **ids = e ? realloc(st->ids, cap * sizeof(*ids)) : NULL;
        if (!e || !ids) {
            st->oom = 1;
            return;
        }
        st->ids = ids;
        st->cap = cap;
    }
    char *copy = strndup(id, id_len);
    if (!copy) {
        st->oom = 1;
        return;
    }
    st->ids[st->n] = copy;
    st->e[st->n] = (ps_recovery_entry){.id = copy, .session = session, .seq = seq};
    st->n++;
}

static void state_free(rc_state *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->ids[i]);
    free(st->ids);
    free(st->e);
}

/* ---- repair ---- */

/* Our NRB: records up to nrb_record_end, then options; 1 if one of them is
 * our custom option holding a marker or checkpoint. */
static int parse_nrb(const uint8_t *blk, uint32_t len, ps_recovery_cb cb, void *ud)
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
                return ps_recovery_parse(blk + off + 4, ol - 4u, cb, ud) == 1;
        }
        off += padded;
    }
    return 0;
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
static void repair_one(const char *dir, const char *name, int pcapng, ps_recovery_cb cb, void *ud,
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
    for (size_t i = 0; i < st.n; i++) {
        cb(ud, st.e[i].id, strlen(st.e[i].id), st.e[i].session, st.e[i].seq);
        rep->entries++;
    }
    state_free(&st);
}

/* Reads the checkpoint a completed pcapng file ends with, if any. */
static void read_tail(const char *dir, const char *name, ps_recovery_cb cb, void *ud,
                      ps_recovery_report *rep)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat sb = {0};
    int fd = open_regular(path, O_RDONLY, &sb);
    if (fd < 0)
        return;
    uint8_t lenb[4];
    uint32_t len;
    if (sb.st_size < 32 || pread(fd, lenb, 4, sb.st_size - 4) != 4) {
        close(fd);
        return;
    }
    memcpy(&len, lenb, 4);
    if (len < 16 || len % 4 || len > RC_MAX_TAIL || (off_t)len > sb.st_size) {
        close(fd);
        return;
    }
    uint8_t *blk = malloc(len);
    if (blk && pread(fd, blk, len, sb.st_size - (off_t)len) == (ssize_t)len) {
        uint32_t type, l2;
        memcpy(&type, blk, 4);
        memcpy(&l2, blk + 4, 4);
        rc_state st = {0};
        if (type == PS_PCAPNG_NRB && l2 == len && parse_nrb(blk, len, state_add, &st) == 1 &&
            !st.oom) {
            rep->files_read++;
            for (size_t i = 0; i < st.n; i++) {
                cb(ud, st.e[i].id, strlen(st.e[i].id), st.e[i].session, st.e[i].seq);
                rep->entries++;
            }
        }
        state_free(&st);
    }
    free(blk);
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
    for (size_t i = 0; i < nd && !oom; i++)
        read_tail(dir, done[i], cb, ud, rep);
    for (size_t i = 0; i < np && !oom; i++) {
        ps_fname fn = {0};
        (void)ps_fname_parse(parts[i], prefix, &fn); /* matched above */
        repair_one(dir, parts[i], fn.pcapng, cb, ud, rep);
    }
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
