/*
 * fuzz_extract: what /api/packets does with the files of the output
 * directory (query.h, index.h, pcapread.h). The first input byte picks
 * what the rest is: 0 = a capture file with no index (scanned, indexed,
 * then extracted), 1 = a .part file (scanned at request time), 2 = the
 * JSON index of a fixed, valid capture file (a crafted or damaged .idx must
 * be refused or, if accepted, never make the reader leave the file or
 * emit a block that is not whole). The second byte picks the selectors and
 * whether a BPF filter applies. The output must be a well-formed pcapng
 * stream whose every EPB names an IDB written before it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/pcapng.h"
#include "receiver/index.h"
#include "receiver/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (de->d_type == DT_DIR)
            rm_dir(path), rmdir(path);
        else
            unlink(path);
    }
    if (d)
        closedir(d);
}

/* The directory lives as long as the process: removed at exit, so fuzz runs
 * and ctest's corpus replays leave nothing behind in /dev/shm. */
static void remove_dir(void)
{
    rm_dir(g_dir);
    rmdir(g_dir);
}

static void put(const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, p, n) != (ssize_t)n)
        abort();
    close(fd);
}

/* Walks the output: whole blocks, EPBs after their IDB. */
static void check_output(const uint8_t *b, size_t len)
{
    size_t off = 0;
    uint32_t idbs = 0;
    while (off < len) {
        uint32_t type, bl, bl2;
        if (len - off < 12)
            abort();
        memcpy(&type, b + off, 4);
        memcpy(&bl, b + off + 4, 4);
        if (bl < 12 || bl % 4 || bl > len - off)
            abort();
        memcpy(&bl2, b + off + bl - 4, 4);
        if (bl2 != bl || (off == 0) != (type == PS_PCAPNG_SHB))
            abort();
        if (type == PS_PCAPNG_IDB)
            idbs++;
        if (type == PS_PCAPNG_EPB) {
            uint32_t ifid, caplen;
            memcpy(&ifid, b + off + 8, 4);
            memcpy(&caplen, b + off + 20, 4);
            if (ifid >= idbs || caplen > bl - PS_PCAPNG_EPB_OVERHEAD)
                abort();
        }
        off += bl;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 20))
        return 0;
    if (!g_dir[0]) {
        ps_log_set_level((ps_log_level)(PS_LOG_ERROR + 1));
        strcpy(g_dir, "/dev/shm/ps-fuzz-extract-XXXXXX");
        if (!mkdtemp(g_dir)) {
            strcpy(g_dir, "/tmp/ps-fuzz-extract-XXXXXX");
            if (!mkdtemp(g_dir))
                abort();
        }
        atexit(remove_dir);
    }
    rm_dir(g_dir);
    const char *name = "f-20200101T000000Z-000001.pcapng";
    uint8_t kind = data[0] % 3, sel = data[1];
    if (kind < 2) {
        put(kind ? "f-20200101T000000Z-000001.pcapng.part" : name, data + 2, size - 2);
    } else {
        /* a valid file of two interfaces, then the fuzzed index for it */
        ps_buf f = PS_BUF_INIT;
        uint8_t pkt[60];
        memset(pkt, 0x45, sizeof(pkt));
        if (ps_pcapng_shb(&f, "fuzz", NULL) || ps_pcapng_idb(&f, 1, 262144, "s/eth0", NULL) ||
            ps_pcapng_idb(&f, 1, 262144, "s/ns/pod", "d"))
            abort();
        for (uint32_t i = 0; i < 40; i++)
            if (ps_pcapng_epb(&f, i % 2, 1000 + i, 60, 60, pkt))
                abort();
        put(name, f.data, f.len);
        ps_buf_free(&f);
        char sub[128], idx[256];
        snprintf(sub, sizeof(sub), "%s/%s", g_dir, PS_INDEX_DIR);
        mkdir(sub, 0700);
        snprintf(idx, sizeof(idx), "%s/%s%s", PS_INDEX_DIR, name, PS_INDEX_EXT);
        put(idx, data + 2, size - 2);
    }
    ps_query_opts o = {.from_ns = sel & 1 ? 1010 : 0,
                       .to_ns = sel & 2 ? 1030 : UINT64_MAX / 2,
                       .pod = sel & 4 ? "ns/pod" : NULL,
                       .sensor = sel & 8 ? "s" : NULL,
                       .filter = sel & 16 ? "ip or len > 30" : NULL,
                       .limit = sel & 32 ? 7 : 0,
                       .app = "fuzz"};
    ps_query *q;
    char err[512];
    int rc = ps_query_open(&q, g_dir, "f", &o, err, sizeof(err));
    if (rc == PS_QUERY_E_FILTER && o.filter)
        return 0; /* the filter fits none of the file's link types */
    if (rc != 0)
        abort(); /* a readable directory: never refused otherwise */
    ps_buf out = PS_BUF_INIT;
    uint8_t buf[4096];
    ssize_t n;
    while ((n = ps_query_read(q, buf, sel & 64 ? 97 : sizeof(buf))) > 0)
        if (ps_buf_append(&out, buf, (size_t)n))
            abort();
    ps_query_stats st;
    ps_query_get_stats(q, &st);
    ps_query_free(q);
    check_output(out.data, out.len);
    if (o.limit && st.packets > o.limit)
        abort();
    ps_buf_free(&out);
    return 0;
}
