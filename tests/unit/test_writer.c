/*
 * test_writer: the receiver's file writer end to end on a real file system.
 *
 * Every test writes into its own mkdtemp directory and reads the result back
 * independently of the writer: with libpcap (what tcpdump and Zeek use), and
 * with a small pcapng block parser below, because libpcap does not expose
 * interface names, descriptions or statistics blocks. Records are generated
 * from their index, so any file can be checked against "records i..j in
 * order" without keeping copies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pcap/pcap.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/pcapng.h"
#include "receiver/writer.h"
#include "testutil.h"

#define MAX_CAPLEN 1515
#define BASE_TS 1700000000000000000ull

/* ---- generated records --------------------------------------------------- */

typedef struct rec {
    int sensor, iface;
    uint64_t ts;
    uint32_t caplen, origlen;
    uint8_t data[MAX_CAPLEN];
} rec;

static void gen_rec(size_t i, rec *r)
{
    r->sensor = (int)(i % 2);
    r->iface = (int)((i / 2) % 2);
    r->ts = BASE_TS + i * 1000003ull + 7;
    r->caplen = (uint32_t)((i * 37) % MAX_CAPLEN);
    r->origlen = r->caplen + (uint32_t)(i % 5);
    for (uint32_t j = 0; j < r->caplen; j++)
        r->data[j] = (uint8_t)(i * 131 + j * 7);
}

static const char *const default_sensors[2] = {"s0", "s1"};

/* Registers sensor x {eth0, eth1} for both sensors; h[sensor][iface]. */
static void register_all(ps_writer *w, const char *const sensors[2], uint32_t linktype, int h[2][2])
{
    char err[256];
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 2; i++) {
            char ifname[16], desc[64];
            snprintf(ifname, sizeof ifname, "eth%d", i);
            snprintf(desc, sizeof desc, "pod %d/%d", s, i);
            h[s][i] =
                ps_writer_iface(w, sensors[s], ifname, desc, linktype, 65535, err, sizeof err);
            assert_true(h[s][i] >= 0);
        }
    }
}

/* Each record is its own batch, as a sensor with tiny batches would send:
 * pcapng files rotate by size between batches (ps_writer_batch_end). */
static void write_recs(ps_writer *w, int h[2][2], size_t from, size_t to)
{
    rec r;
    for (size_t i = from; i < to; i++) {
        gen_rec(i, &r);
        int handle = h[r.sensor][r.iface];
        assert_int_equal(ps_writer_record(w, handle, r.ts, r.caplen, r.origlen, r.data), 0);
        assert_int_equal(ps_writer_batch_end(w, handle, "s", 1, i + 1), 0);
    }
}

/* ---- directory helpers --------------------------------------------------- */

static int setup_dir(void **state)
{
    char *dir = malloc(64);
    if (!dir || tu_mkdtemp(dir, 64, "writer") != 0) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int saved_stdout = -1;
static struct rlimit saved_fsize;
static int fsize_limited;

static int teardown_dir(void **state)
{
    char *dir = *state;
    if (fsize_limited) { /* a failed assertion skipped unlimit_file_size() */
        setrlimit(RLIMIT_FSIZE, &saved_fsize);
        fsize_limited = 0;
    }
    if (saved_stdout >= 0) { /* a failed assertion skipped restore_stdout() */
        fflush(stdout);
        dup2(saved_stdout, STDOUT_FILENO);
        close(saved_stdout);
        saved_stdout = -1;
    }
    tu_rm_rf(dir);
    free(dir);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir that start with prefix (all with prefix ""). */
typedef struct names {
    char *v[256];
    size_t n;
} names;

static void list_dir(const char *dir, const char *prefix, names *out)
{
    out->n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || de->d_name[1] == '.'))
            continue;
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
            continue;
        assert_true(out->n < 256);
        out->v[out->n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(out->v, out->n, sizeof out->v[0], cmp_str);
}

static void names_free(names *n)
{
    for (size_t i = 0; i < n->n; i++)
        free(n->v[i]);
    n->n = 0;
}

static void path_join(char *out, size_t n, const char *dir, const char *name)
{
    int k = snprintf(out, n, "%s/%s", dir, name);
    assert_true(k > 0 && (size_t)k < n);
}

static void touch(const char *dir, const char *name, size_t size)
{
    char p[PATH_MAX];
    path_join(p, sizeof p, dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < size; i++)
        fputc('x', f);
    fclose(f);
}

static int exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    path_join(p, sizeof p, dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* PREFIX-YYYYmmddTHHMMSSZ-NNNNNN.EXT with a timestamp close to now (UTC). */
static void assert_name(const char *name, const char *prefix, const char *ext)
{
    char re_src[256];
    snprintf(re_src, sizeof re_src, "^%s-([0-9]{8}T[0-9]{6})Z-[0-9]{6}\\.%s$", prefix, ext);
    regex_t re;
    regmatch_t m[2];
    assert_int_equal(regcomp(&re, re_src, REG_EXTENDED), 0);
    int rc = regexec(&re, name, 2, m, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("file name %s does not match %s", name, re_src);
    struct tm tm = {0};
    char stamp[32];
    memcpy(stamp, name + m[1].rm_so, 15);
    stamp[15] = '\0';
    assert_non_null(strptime(stamp, "%Y%m%dT%H%M%S", &tm));
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    /* UTC and recent; both ways, as a VM's clock may be stepped back */
    assert_true(t - now < 300 && now - t < 300);
}

static uint64_t name_counter(const char *name)
{
    const char *dot = NULL; /* the last ".pcap": sensor ids may hold dots */
    for (const char *q = strstr(name, ".pcap"); q; q = strstr(q + 1, ".pcap"))
        dot = q;
    assert_non_null(dot);
    const char *p = dot;
    while (p > name && p[-1] >= '0' && p[-1] <= '9')
        p--;
    return strtoull(p, NULL, 10);
}

/* ---- on_file_closed ------------------------------------------------------ */

typedef struct closed_file {
    char path[PATH_MAX];
    uint64_t packets, bytes;
    int existed;
} closed_file;

static closed_file g_closed[256];
static size_t g_nclosed;

static void on_closed(void *ud, const char *path, uint64_t packets, uint64_t bytes)
{
    (void)ud;
    assert_true(g_nclosed < 256);
    closed_file *c = &g_closed[g_nclosed++];
    snprintf(c->path, sizeof c->path, "%s", path);
    c->packets = packets;
    c->bytes = bytes;
    struct stat st;
    c->existed = stat(path, &st) == 0 && (uint64_t)st.st_size == bytes;
}

static ps_writer_opts base_opts(const char *path, ps_format fmt)
{
    g_nclosed = 0;
    ps_writer_opts o = {
        .path = path,
        .format = fmt,
        .app = "packetstreamer-test",
        .on_file_closed = on_closed,
    };
    return o;
}

/* ---- a minimal pcapng reader --------------------------------------------- */

typedef struct ng_pkt {
    char name[128];
    uint64_t ts;
    uint32_t caplen, origlen;
    const uint8_t *data;
} ng_pkt;

typedef struct ng_isb {
    char name[128];
    uint64_t ts, recv, drop, osdrop, deliv;
} ng_isb;

typedef struct ng_file {
    uint8_t *raw;
    size_t size;
    size_t nshb;
    char idb_name[32][128];
    char idb_desc[32][128];
    uint16_t idb_linktype[32];
    size_t nidb; /* in the last section */
    size_t idb_total;
    ng_pkt *pkts;
    size_t npkts;
    ng_isb isb[32];
    size_t nisb;
} ng_file;

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Calls fn(code, value, len) for each option in [p, end). */
static void parse_opts(const uint8_t *p, const uint8_t *end,
                       void (*fn)(void *, uint16_t, const uint8_t *, uint16_t), void *ctx)
{
    while (p + 4 <= end) {
        uint16_t code = rd16(p), len = rd16(p + 2);
        if (code == 0) {
            assert_int_equal(len, 0);
            return;
        }
        assert_true(p + 4 + len <= end);
        fn(ctx, code, p + 4, len);
        p += 4 + ((len + 3u) & ~3u);
    }
    fail_msg("option list without opt_endofopt");
}

static void idb_opt(void *ctx, uint16_t code, const uint8_t *v, uint16_t len)
{
    ng_file *f = ctx;
    size_t i = f->nidb;
    if (code == 2)
        snprintf(f->idb_name[i], sizeof f->idb_name[i], "%.*s", (int)len, (const char *)v);
    else if (code == 3)
        snprintf(f->idb_desc[i], sizeof f->idb_desc[i], "%.*s", (int)len, (const char *)v);
    else if (code == 9) {
        assert_int_equal(len, 1);
        assert_int_equal(v[0], 9);
    }
}

static void isb_opt(void *ctx, uint16_t code, const uint8_t *v, uint16_t len)
{
    ng_isb *s = ctx;
    assert_int_equal(len, 8);
    uint64_t x = rd64(v);
    if (code == 4)
        s->recv = x;
    else if (code == 5)
        s->drop = x;
    else if (code == 7)
        s->osdrop = x;
    else if (code == 8)
        s->deliv = x;
}

/* Parses a whole pcapng file and checks its framing as it goes. */
static void ng_load_buf(ng_file *f, uint8_t *raw, size_t n)
{
    memset(f, 0, sizeof *f);
    f->raw = raw;
    f->size = n;
    f->pkts = calloc(n / 32 + 1, sizeof *f->pkts);
    assert_non_null(f->pkts);
    size_t off = 0;
    while (off < n) {
        assert_true(n - off >= 12);
        const uint8_t *b = raw + off;
        uint32_t type = rd32(b), len = rd32(b + 4);
        assert_true(len >= 12 && len % 4 == 0 && len <= n - off);
        assert_int_equal(rd32(b + len - 4), len);
        if (off == 0)
            assert_int_equal(type, PS_PCAPNG_SHB);
        if (type == PS_PCAPNG_SHB) {
            assert_int_equal(rd32(b + 8), 0x1A2B3C4D);
            assert_int_equal(rd16(b + 12), 1);
            assert_int_equal(rd16(b + 14), 0);
            f->nshb++;
            f->nidb = 0;
        } else if (type == PS_PCAPNG_IDB) {
            assert_true(f->nidb < 32);
            f->idb_name[f->nidb][0] = f->idb_desc[f->nidb][0] = '\0';
            f->idb_linktype[f->nidb] = rd16(b + 8);
            parse_opts(b + 16, b + len - 4, idb_opt, f);
            f->nidb++;
            f->idb_total++;
        } else if (type == PS_PCAPNG_EPB) {
            uint32_t if_id = rd32(b + 8);
            assert_true(if_id < f->nidb); /* its IDB came first, in this file */
            ng_pkt *p = &f->pkts[f->npkts++];
            memcpy(p->name, f->idb_name[if_id], sizeof p->name);
            p->ts = ((uint64_t)rd32(b + 12) << 32) | rd32(b + 16);
            p->caplen = rd32(b + 20);
            p->origlen = rd32(b + 24);
            assert_int_equal(len, 32 + ((p->caplen + 3u) & ~3u));
            p->data = b + 28;
        } else if (type == PS_PCAPNG_ISB) {
            uint32_t if_id = rd32(b + 8);
            assert_true(if_id < f->nidb);
            assert_true(f->nisb < 32);
            ng_isb *s = &f->isb[f->nisb++];
            memset(s, 0, sizeof *s);
            memcpy(s->name, f->idb_name[if_id], sizeof s->name);
            s->ts = ((uint64_t)rd32(b + 12) << 32) | rd32(b + 16);
            parse_opts(b + 20, b + len - 4, isb_opt, s);
        } else if (type == PS_PCAPNG_NRB) {
            assert_int_equal(rd32(b + 16), 32473); /* our batch markers (recovery.h) */
        } else {
            fail_msg("unexpected block type %u", type);
        }
        off += len;
    }
}

static void ng_load(const char *path, ng_file *f)
{
    size_t n;
    uint8_t *raw = tu_slurp(path, &n);
    ng_load_buf(f, raw, n);
}

static void ng_free(ng_file *f)
{
    free(f->raw);
    free(f->pkts);
}

/* Checks that pkts[k] is generated record idx. */
static void check_ng_pkt(const ng_pkt *p, size_t idx, const char *const sensors[2])
{
    rec r;
    gen_rec(idx, &r);
    char want[128];
    snprintf(want, sizeof want, "%s/eth%d", sensors[r.sensor], r.iface);
    assert_string_equal(p->name, want);
    assert_int_equal(p->ts, r.ts);
    assert_int_equal(p->caplen, r.caplen);
    assert_int_equal(p->origlen, r.origlen);
    if (r.caplen)
        assert_memory_equal(p->data, r.data, r.caplen);
}

/* Reads path with libpcap (nanosecond precision) and checks it holds exactly
 * the records idx[0..n), timestamps truncated to microseconds if us. */
static void pcap_verify(const char *path, const size_t *idx, size_t n, int us)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, errbuf);
    if (!p)
        fail_msg("libpcap cannot open %s: %s", path, errbuf);
    struct pcap_pkthdr *h;
    const u_char *data;
    rec r;
    size_t k = 0;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
        assert_true(k < n);
        gen_rec(idx[k], &r);
        uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000000ull + (uint64_t)h->ts.tv_usec;
        uint64_t want = us ? r.ts / 1000 * 1000 : r.ts;
        assert_int_equal(ts, want);
        assert_int_equal(h->caplen, r.caplen);
        assert_int_equal(h->len, r.origlen);
        if (r.caplen)
            assert_memory_equal(data, r.data, r.caplen);
        k++;
    }
    assert_int_equal(rc, PCAP_ERROR_BREAK); /* clean end of file, not truncation */
    assert_int_equal(k, n);
    pcap_close(p);
}

static size_t *seq(size_t from, size_t to)
{
    size_t *v = malloc((to - from + 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = from; i < to; i++)
        v[i - from] = i;
    return v;
}

/* ---- tests --------------------------------------------------------------- */

/* 2 sensors x 2 interfaces into one pcapng file, read back three ways. */
static void test_pcapng_roundtrip(void **state)
{
    const char *dir = *state;
    const size_t N = 4000; /* ~3 MB: crosses the 1 MiB automatic flush */
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);

    int h[2][2];
    register_all(w, default_sensors, 1, h);
    /* The same (sensor, name) gets the same handle back. */
    assert_int_equal(ps_writer_iface(w, "s1", "eth0", "pod 1/0", 1, 65535, err, sizeof err),
                     h[1][0]);
    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 0); /* no file before the first record */

    write_recs(w, h, 0, N / 2);
    assert_int_equal(ps_writer_iface_stats(w, h[0][1], BASE_TS + 5, 1000, 3, 4), 0);
    write_recs(w, h, N / 2, N);
    assert_int_equal(ps_writer_flush(w), 0);
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.packets, N);
    assert_int_equal(t.files_closed, 0);
    assert_int_equal(ps_writer_free(w), 0);

    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 1);
    assert_name(ls.v[0], "packetstreamer", "pcapng");
    assert_int_equal(name_counter(ls.v[0]), 1);
    char path[PATH_MAX];
    path_join(path, sizeof path, dir, ls.v[0]);

    assert_int_equal(g_nclosed, 1);
    assert_string_equal(g_closed[0].path, path);
    assert_int_equal(g_closed[0].packets, N);
    assert_int_equal(g_closed[0].bytes, file_size(path));
    assert_true(g_closed[0].existed);
    assert_int_equal(t.bytes, file_size(path)); /* all flushed before close */

    size_t *idx = seq(0, N);
    pcap_verify(path, idx, N, 0);
    free(idx);

    ng_file f;
    ng_load(path, &f);
    assert_int_equal(f.nshb, 1);
    assert_int_equal(f.nidb, 4);
    /* IDBs in order of first use: records 0,1,2,3 are s0/eth0 s1/eth0 s0/eth1 s1/eth1. */
    assert_string_equal(f.idb_name[0], "s0/eth0");
    assert_string_equal(f.idb_name[1], "s1/eth0");
    assert_string_equal(f.idb_name[2], "s0/eth1");
    assert_string_equal(f.idb_name[3], "s1/eth1");
    assert_string_equal(f.idb_desc[2], "pod 0/1");
    assert_int_equal(f.idb_linktype[0], 1);
    assert_int_equal(f.npkts, N);
    for (size_t i = 0; i < N; i++)
        check_ng_pkt(&f.pkts[i], i, default_sensors);
    assert_int_equal(f.nisb, 1);
    assert_string_equal(f.isb[0].name, "s0/eth1");
    assert_int_equal(f.isb[0].ts, BASE_TS + 5);
    assert_int_equal(f.isb[0].recv, 1000);
    assert_int_equal(f.isb[0].drop, 3);
    assert_int_equal(f.isb[0].osdrop, 4);
    assert_int_equal(f.isb[0].deliv, N / 2 / 4); /* s0/eth1 records written so far */
    ng_free(&f);

    /* Wireshark's own reading of the interface names, when it is installed. */
    if (access("/usr/bin/tshark", X_OK) == 0) {
        char cmd[PATH_MAX + 128];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/tshark -n -r '%s' -T fields -e frame.interface_name 2>/dev/null", path);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char line[256];
        size_t k = 0;
        rec r;
        while (fgets(line, sizeof line, p)) {
            line[strcspn(line, "\n")] = '\0';
            gen_rec(k, &r);
            char want[64];
            snprintf(want, sizeof want, "s%d/eth%d", r.sensor, r.iface);
            assert_string_equal(line, want);
            k++;
        }
        assert_int_equal(pclose(p), 0);
        assert_int_equal(k, N);
    }
    names_free(&ls);
}

/* Size of the IDB the writer emits for sX/ethY in these tests. */
static void test_rotate_by_size(void **state)
{
    const char *dir = *state;
    const size_t N = 1000;
    const uint64_t limit = 64 * 1024;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.rotate_bytes = limit;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);
    write_recs(w, h, 0, N);
    assert_int_equal(ps_writer_free(w), 0);

    names ls;
    list_dir(dir, "", &ls);
    assert_true(ls.n > 5);
    assert_int_equal(g_nclosed, ls.n);
    size_t next = 0;
    for (size_t k = 0; k < ls.n; k++) {
        assert_name(ls.v[k], "packetstreamer", "pcapng");
        assert_int_equal(name_counter(ls.v[k]), k + 1);
        char path[PATH_MAX];
        path_join(path, sizeof path, dir, ls.v[k]);
        assert_string_equal(g_closed[k].path, path);
        uint64_t size = file_size(path);
        assert_int_equal(g_closed[k].bytes, size);

        ng_file f;
        ng_load(path, &f); /* checks SHB first and an IDB before every EPB */
        assert_int_equal(f.nshb, 1);
        assert_true(f.npkts >= 1);
        assert_int_equal(g_closed[k].packets, f.npkts);
        if (f.npkts > 1) /* over by at most one batch: record, IDB, marker */
            assert_true(size < limit + 10000);
        for (size_t i = 0; i < f.npkts; i++)
            check_ng_pkt(&f.pkts[i], next + i, default_sensors);
        next += f.npkts;
        if (k + 1 < ls.n) {
            /* Rotated between batches, no earlier than needed: the file
             * reached the limit with its last batch (one record + marker). */
            assert_true(size >= limit);
        }
        ng_free(&f);
    }
    assert_int_equal(next, N);
    names_free(&ls);
}

/* A limit smaller than any record: one record per file, never an empty file. */
static void test_rotate_tiny_limit(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAP_NS);
    o.rotate_bytes = 1;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);
    write_recs(w, h, 0, 5);
    assert_int_equal(ps_writer_free(w), 0);
    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 5);
    for (size_t k = 0; k < ls.n; k++) {
        char path[PATH_MAX];
        path_join(path, sizeof path, dir, ls.v[k]);
        pcap_verify(path, &k, 1, 0);
    }
    names_free(&ls);
}

static void test_rotate_by_time(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.rotate_seconds = 60;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    assert_int_equal(ps_writer_tick(w, now), 0); /* no file: nothing to do */

    write_recs(w, h, 0, 10);
    assert_int_equal(ps_writer_tick(w, now + 30 * 1000000000ull), 0);
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.files_closed, 0);

    assert_int_equal(ps_writer_tick(w, now + 61 * 1000000000ull), 0);
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.files_closed, 1);
    assert_int_equal(g_nclosed, 1);
    assert_int_equal(g_closed[0].packets, 10);
    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 1); /* complete, renamed; no next file yet */
    assert_name(ls.v[0], "packetstreamer", "pcapng");
    names_free(&ls);

    /* Nothing open: ticking much later creates and closes nothing. */
    assert_int_equal(ps_writer_tick(w, now + 3600 * 1000000000ull), 0);
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.files_closed, 1);

    write_recs(w, h, 10, 15);
    assert_int_equal(ps_writer_free(w), 0);
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 2);
    size_t next = 0;
    for (size_t k = 0; k < 2; k++) {
        char path[PATH_MAX];
        path_join(path, sizeof path, dir, ls.v[k]);
        ng_file f;
        ng_load(path, &f);
        assert_int_equal(f.npkts, k == 0 ? 10 : 5);
        assert_int_equal(f.nidb, 4); /* the second file re-declares its interfaces */
        for (size_t i = 0; i < f.npkts; i++)
            check_ng_pkt(&f.pkts[i], next + i, default_sensors);
        next += f.npkts;
        ng_free(&f);
    }
    names_free(&ls);
}

/* The per-file knowledge the HTTP capture list shows, and bytes on disk. */
static void test_files_meta(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.rotate_seconds = 60;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    assert_string_equal(ps_writer_dir(w), dir);
    assert_string_equal(ps_writer_prefix(w), "packetstreamer");
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_writer_files_meta(w, &b), 0);
    assert_int_equal(b.len, 0); /* no file yet */
    int h[2][2];
    register_all(w, default_sensors, 1, h);
    rec r;
    for (size_t i = 0; i < 10; i++) { /* sensor s1 only, out of order by one */
        gen_rec(2 * i + 1, &r);
        uint64_t ts = i == 3 ? BASE_TS : r.ts;
        assert_int_equal(ps_writer_record(w, h[1][0], ts, r.caplen, r.origlen, r.data), 0);
    }
    gen_rec(41, &r); /* then s0 */
    assert_int_equal(ps_writer_record(w, h[0][1], r.ts, r.caplen, r.origlen, r.data), 0);
    uint64_t last = r.ts;
    assert_int_equal(ps_writer_flush(w), 0);

    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 1);
    char want[512];
    snprintf(want, sizeof want, "%s\t%llu\t%llu\t11\t0\ts1,s0\n", ls.v[0],
             (unsigned long long)BASE_TS, (unsigned long long)last);
    assert_int_equal(ps_writer_files_meta(w, &b), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    char path[PATH_MAX];
    struct stat st;
    path_join(path, sizeof path, dir, ls.v[0]);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(ps_writer_disk_bytes(w), (uint64_t)st.st_size);
    names_free(&ls);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    assert_int_equal(ps_writer_tick(w, now + 61 * 1000000000ull), 0); /* completes it */
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 1);
    snprintf(want, sizeof want, "%s\t%llu\t%llu\t11\t1\ts1,s0\n", ls.v[0],
             (unsigned long long)BASE_TS, (unsigned long long)last);
    ps_buf_reset(&b);
    assert_int_equal(ps_writer_files_meta(w, &b), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    path_join(path, sizeof path, dir, ls.v[0]);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(ps_writer_disk_bytes(w), (uint64_t)st.st_size);
    names_free(&ls);
    ps_buf_free(&b);
    assert_int_equal(ps_writer_free(w), 0);
}

static void test_retention_by_count(void **state)
{
    const char *dir = *state;
    /* An earlier run's files, its crashed .part, and bystanders. */
    touch(dir, "cap-20200101T000000Z-000001.pcapng", 100);
    touch(dir, "cap-20200101T000000Z-000002.pcapng", 100);
    touch(dir, "cap-20200101T000001Z-000003.pcap", 100);
    touch(dir, "cap-20200101T000002Z-000007.pcapng.part", 100);
    touch(dir, "cap-other.txt", 10);
    touch(dir, "capx-20200101T000000Z-000009.pcapng", 10);
    touch(dir, "cap-s1-20200101T000000Z-000050.pcapng", 10);

    char path[PATH_MAX];
    path_join(path, sizeof path, dir, "cap.pcapng");
    ps_writer_opts o = base_opts(path, PS_FORMAT_PCAPNG);
    o.rotate_bytes = 1; /* a file per record */
    o.max_files = 2;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);
    write_recs(w, h, 0, 3);
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.files_closed, 3);  /* each batch ends its file */
    assert_int_equal(t.files_deleted, 4); /* 1 and 2 after 8 closed, 3 after 9, 8 after 10 */
    assert_int_equal(ps_writer_free(w), 0);

    /* Counters continued after the highest existing one (7, the .part). */
    assert_int_equal(g_nclosed, 3);
    assert_int_equal(name_counter(strrchr(g_closed[0].path, '/') + 1), 8);
    assert_int_equal(name_counter(strrchr(g_closed[2].path, '/') + 1), 10);

    names ls;
    list_dir(dir, "cap-2", &ls);
    /* Left: the .part and the two newest completed files (9 and 10). */
    assert_int_equal(ls.n, 3);
    assert_string_equal(ls.v[0], "cap-20200101T000002Z-000007.pcapng.part");
    assert_name(ls.v[1], "cap", "pcapng");
    assert_int_equal(name_counter(ls.v[1]), 9);
    assert_int_equal(name_counter(ls.v[2]), 10);
    names_free(&ls);
    assert_true(exists(dir, "cap-other.txt"));
    assert_true(exists(dir, "capx-20200101T000000Z-000009.pcapng"));
    assert_true(exists(dir, "cap-s1-20200101T000000Z-000050.pcapng"));
}

static void test_retention_deleted_count(void **state)
{
    const char *dir = *state;
    touch(dir, "packetstreamer-20200101T000000Z-000001.pcapng", 10);
    touch(dir, "packetstreamer-20200101T000000Z-000002.pcapng", 10);
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.rotate_bytes = 1;
    o.max_files = 1;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);
    write_recs(w, h, 0, 3); /* each batch closes its file: 3, 4, 5 */
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.files_closed, 3);
    assert_int_equal(t.files_deleted, 4);
    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 1); /* only the newest complete file */
    assert_int_equal(name_counter(ls.v[0]), 5);
    names_free(&ls);
    assert_int_equal(ps_writer_free(w), 0);
}

static void test_retention_by_bytes(void **state)
{
    const char *dir = *state;
    char sub[PATH_MAX], probe[PATH_MAX];
    path_join(sub, sizeof sub, dir, "run");
    path_join(probe, sizeof probe, dir, "probe");

    /* Learn the size F of a one-record file (SHB size depends on uname). */
    ps_writer_opts o = base_opts(probe, PS_FORMAT_PCAPNG);
    ps_writer *w;
    char err[256];
    int h[2][2];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    register_all(w, default_sensors, 1, h);
    rec r;
    gen_rec(0, &r);
    assert_int_equal(ps_writer_record(w, h[0][0], r.ts, 100, 100, r.data), 0);
    assert_int_equal(ps_writer_batch_end(w, h[0][0], "s", 1, 1), 0);
    assert_int_equal(ps_writer_free(w), 0);
    uint64_t F = g_closed[0].bytes;

    assert_int_equal(mkdir(sub, 0700), 0);
    touch(sub, "packetstreamer-20200101T000000Z-000001.pcapng", 5000);
    o = base_opts(sub, PS_FORMAT_PCAPNG);
    o.rotate_bytes = 1;
    o.max_total_bytes = 2 * F + F / 2; /* room for two files */
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    register_all(w, default_sensors, 1, h);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ps_writer_record(w, h[0][0], r.ts + (uint64_t)i, 100, 100, r.data), 0);
        assert_int_equal(ps_writer_batch_end(w, h[0][0], "s", 1, (uint64_t)i + 1), 0);
    }
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.files_deleted, 3); /* the 5000-byte file, then files 2 and 3 */
    assert_int_equal(ps_writer_free(w), 0);

    names ls;
    list_dir(sub, "", &ls);
    assert_int_equal(ls.n, 2);
    assert_int_equal(name_counter(ls.v[0]), 4);
    assert_int_equal(name_counter(ls.v[1]), 5);
    uint64_t total = 0;
    for (size_t k = 0; k < ls.n; k++) {
        char p[PATH_MAX];
        path_join(p, sizeof p, sub, ls.v[k]);
        total += file_size(p);
    }
    assert_int_equal(total, 2 * F);
    assert_true(total <= o.max_total_bytes);
    names_free(&ls);
}

static void test_counter_continues(void **state)
{
    const char *dir = *state;
    for (int run = 0; run < 3; run++) {
        ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
        ps_writer *w;
        char err[256];
        int h[2][2];
        assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
        register_all(w, default_sensors, 1, h);
        write_recs(w, h, 0, 2);
        assert_int_equal(ps_writer_free(w), 0);
        assert_int_equal(name_counter(strrchr(g_closed[0].path, '/') + 1), (uint64_t)run + 1);
    }
    /* A writer that never got a record leaves nothing behind. */
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    assert_int_equal(ps_writer_free(w), 0);
    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 3);
    names_free(&ls);
}

static void pcap_format(const char *dir, ps_format fmt)
{
    const size_t N = 300;
    ps_writer_opts o = base_opts(dir, fmt);
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);
    write_recs(w, h, 0, N);
    /* Statistics have no place in classic pcap: accepted, nothing written. */
    assert_int_equal(ps_writer_iface_stats(w, h[0][0], BASE_TS, 1, 2, 3), 0);
    assert_int_equal(ps_writer_free(w), 0);

    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 1);
    assert_name(ls.v[0], "packetstreamer", "pcap");
    char path[PATH_MAX];
    path_join(path, sizeof path, dir, ls.v[0]);
    uint64_t want_size = 24;
    rec r;
    for (size_t i = 0; i < N; i++) {
        gen_rec(i, &r);
        want_size += 16 + r.caplen;
    }
    assert_int_equal(file_size(path), want_size);

    size_t n;
    uint8_t *raw = tu_slurp(path, &n);
    assert_int_equal(rd32(raw), fmt == PS_FORMAT_PCAP ? 0xA1B2C3D4u : 0xA1B23C4Du);
    assert_int_equal(rd16(raw + 4), 2);
    assert_int_equal(rd16(raw + 6), 4);
    assert_int_equal(rd32(raw + 16), 262144);
    assert_int_equal(rd32(raw + 20), 1);
    free(raw);

    size_t *idx = seq(0, N);
    pcap_verify(path, idx, N, fmt == PS_FORMAT_PCAP);
    free(idx);
    names_free(&ls);
}

static void test_pcap_us(void **state)
{
    pcap_format(*state, PS_FORMAT_PCAP);
}

static void test_pcap_ns(void **state)
{
    pcap_format(*state, PS_FORMAT_PCAP_NS);
}

static void test_pcap_ts_overflow(void **state)
{
    ps_writer_opts o = base_opts(*state, PS_FORMAT_PCAP);
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int hi = ps_writer_iface(w, "s", "eth0", NULL, 1, 100, err, sizeof err);
    assert_true(hi >= 0);
    errno = 0;
    assert_int_equal(ps_writer_record(w, hi, (UINT32_MAX + 1ull) * 1000000000ull, 0, 0, NULL), -1);
    assert_int_equal(errno, EOVERFLOW);
    assert_int_equal(ps_writer_free(w), 0);
    names ls;
    list_dir(*state, "", &ls);
    assert_int_equal(ls.n, 0);
}

static void test_pcap_linktype_mismatch(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAP);
    ps_writer *w;
    char err[256] = "";
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    assert_true(ps_writer_iface(w, "s1", "any", NULL, 113, 65535, err, sizeof err) >= 0);
    assert_int_equal(ps_writer_iface(w, "s1", "eth1", NULL, 1, 65535, err, sizeof err), -1);
    assert_string_equal(err, "interface s1/eth1 has link type 1 (EN10MB) but this pcap file set "
                             "holds link type 113 (LINUX_SLL); use --format pcapng for mixed "
                             "link types");
    /* One file set for all sensors: another sensor is held to it too. */
    assert_int_equal(ps_writer_iface(w, "s2", "eth0", NULL, 1, 65535, err, sizeof err), -1);
    /* Re-announcing the first interface with another link type is refused. */
    assert_int_equal(ps_writer_iface(w, "s1", "any", NULL, 1, 65535, err, sizeof err), -1);
    assert_true(ps_writer_iface(w, "s2", "lo", NULL, 113, 65535, err, sizeof err) >= 0);
    assert_int_equal(ps_writer_free(w), 0);

    /* Per sensor, each sensor has its own set and link type. */
    o.per_sensor = 1;
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int a = ps_writer_iface(w, "s1", "any", NULL, 113, 65535, err, sizeof err);
    int b = ps_writer_iface(w, "s2", "eth0", NULL, 1, 65535, err, sizeof err);
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(ps_writer_iface(w, "s2", "any", NULL, 113, 65535, err, sizeof err), -1);
    assert_non_null(strstr(err, "s2/any"));
    rec r;
    gen_rec(1, &r);
    assert_int_equal(ps_writer_record(w, a, r.ts, r.caplen, r.origlen, r.data), 0);
    assert_int_equal(ps_writer_record(w, b, r.ts, r.caplen, r.origlen, r.data), 0);
    assert_int_equal(ps_writer_free(w), 0);
    names ls;
    list_dir(dir, "packetstreamer-s", &ls);
    assert_int_equal(ls.n, 2);
    char path[PATH_MAX];
    path_join(path, sizeof path, dir, ls.v[0]);
    size_t n;
    uint8_t *raw = tu_slurp(path, &n);
    assert_int_equal(rd32(raw + 20), 113);
    free(raw);
    names_free(&ls);

    /* pcapng holds mixed link types in one file. */
    o = base_opts(dir, PS_FORMAT_PCAPNG);
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    assert_true(ps_writer_iface(w, "s1", "any", NULL, 113, 65535, err, sizeof err) >= 0);
    assert_true(ps_writer_iface(w, "s1", "eth1", NULL, 1, 65535, err, sizeof err) >= 0);
    assert_int_equal(ps_writer_iface(w, "s1", "big", NULL, 70000, 65535, err, sizeof err), -1);
    assert_int_equal(ps_writer_free(w), 0);
}

static void test_per_sensor(void **state)
{
    const char *dir = *state;
    const size_t N = 200;
    static const char *const sensors[2] = {"node-a", "bad/../x y"};
    char path[PATH_MAX];
    path_join(path, sizeof path, dir, "run.pcapng");
    ps_writer_opts o = base_opts(path, PS_FORMAT_PCAPNG);
    o.per_sensor = 1;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, sensors, 1, h);
    write_recs(w, h, 0, N);
    assert_int_equal(ps_writer_free(w), 0);

    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 2);
    /* Sorted: "run-bad_.._x_y-..." before "run-node-a-...". */
    assert_name(ls.v[0], "run-bad_\\.\\._x_y", "pcapng");
    assert_name(ls.v[1], "run-node-a", "pcapng");
    assert_int_equal(name_counter(ls.v[0]), 1);
    assert_int_equal(name_counter(ls.v[1]), 1);
    for (int k = 0; k < 2; k++) {
        int sensor = k == 0 ? 1 : 0;
        char p[PATH_MAX];
        path_join(p, sizeof p, dir, ls.v[k]);
        ng_file f;
        ng_load(p, &f);
        assert_int_equal(f.nidb, 2);
        assert_int_equal(f.npkts, N / 2);
        /* Raw sensor id in the IDB: names are for people, files for disks. */
        for (size_t i = 0; i < f.npkts; i++)
            check_ng_pkt(&f.pkts[i], 2 * i + (size_t)sensor, sensors);
        ng_free(&f);
    }
    names_free(&ls);
}

/* fd 1 redirection; teardown_dir restores it if an assertion jumped out. */
static void redirect_stdout(int fd)
{
    fflush(stdout);
    if (saved_stdout < 0)
        saved_stdout = dup(STDOUT_FILENO);
    assert_true(saved_stdout >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
}

static void restore_stdout(void)
{
    fflush(stdout);
    assert_true(dup2(saved_stdout, STDOUT_FILENO) >= 0);
    close(saved_stdout);
    saved_stdout = -1;
}

static void test_stdout(void **state)
{
    const char *dir = *state;
    static const char *const paths[] = {"-", "stdout", "/dev/stdout"};
    const size_t N = 100;
    for (size_t k = 0; k < 3; k++) {
        char out[PATH_MAX];
        path_join(out, sizeof out, dir, "stream.pcapng");
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        redirect_stdout(fd);
        close(fd);

        ps_writer_opts o = base_opts(paths[k], PS_FORMAT_PCAPNG);
        o.rotate_bytes = 1; /* ignored: a stream is never rotated */
        o.rotate_seconds = 1;
        o.max_files = 1;
        o.per_sensor = 1; /* ignored: one stream */
        ps_writer *w;
        char err[256];
        int rc = ps_writer_open(&w, &o, err, sizeof err);
        int h[2][2];
        if (rc == 0) {
            register_all(w, default_sensors, 1, h);
            write_recs(w, h, 0, N);
            rc |= ps_writer_tick(w, UINT64_MAX);
            rc |= ps_writer_free(w);
        }
        restore_stdout();
        assert_int_equal(rc, 0);
        assert_int_equal(g_nclosed, 0);

        ng_file f;
        ng_load(out, &f);
        assert_int_equal(f.nshb, 1);
        assert_int_equal(f.nidb, 4);
        assert_int_equal(f.npkts, N);
        for (size_t i = 0; i < N; i++)
            check_ng_pkt(&f.pkts[i], i, default_sensors);
        ng_free(&f);
        size_t *idx = seq(0, N);
        pcap_verify(out, idx, N, 0);
        free(idx);
        unlink(out);
    }
    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 0); /* nothing else was created */
}

static void test_path_rules(void **state)
{
    const char *dir = *state;
    struct {
        const char *path; /* relative to dir */
        ps_format fmt;
        const char *where; /* directory the file lands in, relative to dir */
        const char *prefix;
    } cases[] = {
        {"new/sub/", PS_FORMAT_PCAPNG, "new/sub", "packetstreamer"},
        {"deep/er/dump.pcapng", PS_FORMAT_PCAPNG, "deep/er", "dump"},
        {"captures", PS_FORMAT_PCAPNG, "captures", "packetstreamer"},
        {"dump_file", PS_FORMAT_PCAPNG, ".", "dump_file"}, /* exists as a file */
        {"x.pcap", PS_FORMAT_PCAP, ".", "x"},
        {"v1.2", PS_FORMAT_PCAPNG, ".", "v1.2"},
        {"existing", PS_FORMAT_PCAP_NS, "existing", "packetstreamer"},
        {"existing.d//", PS_FORMAT_PCAPNG, "existing.d", "packetstreamer"},
    };
    touch(dir, "dump_file", 3);
    char p[PATH_MAX];
    path_join(p, sizeof p, dir, "existing");
    assert_int_equal(mkdir(p, 0700), 0);
    path_join(p, sizeof p, dir, "existing.d");
    assert_int_equal(mkdir(p, 0700), 0);

    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[PATH_MAX], where[PATH_MAX];
        path_join(path, sizeof path, dir, cases[k].path);
        path_join(where, sizeof where, dir, cases[k].where);
        ps_writer_opts o = base_opts(path, cases[k].fmt);
        ps_writer *w;
        char err[256];
        if (ps_writer_open(&w, &o, err, sizeof err) != 0)
            fail_msg("%s: %s", path, err);
        int h[2][2];
        register_all(w, default_sensors, 1, h);
        write_recs(w, h, 0, 1);
        assert_int_equal(ps_writer_free(w), 0);
        assert_int_equal(g_nclosed, 1);
        char *slash = strrchr(g_closed[0].path, '/');
        assert_non_null(slash);
        *slash = '\0';
        char real_got[PATH_MAX], real_want[PATH_MAX];
        assert_non_null(realpath(g_closed[0].path, real_got));
        assert_non_null(realpath(where, real_want));
        assert_string_equal(real_got, real_want);
        assert_name(slash + 1, cases[k].prefix,
                    cases[k].fmt == PS_FORMAT_PCAPNG ? "pcapng" : "pcap");
    }
    /* The regular file named as a prefix is untouched. */
    path_join(p, sizeof p, dir, "dump_file");
    assert_int_equal(file_size(p), 3);

    /* A relative path without a directory part lands in the working dir. */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    ps_writer_opts o = base_opts("rel.pcapng", PS_FORMAT_PCAPNG);
    ps_writer *w;
    char err[256];
    int rc = ps_writer_open(&w, &o, err, sizeof err);
    if (rc == 0) {
        int h[2][2];
        register_all(w, default_sensors, 1, h);
        write_recs(w, h, 0, 1);
        rc = ps_writer_free(w);
    }
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(g_nclosed, 1);
    assert_int_equal(strncmp(g_closed[0].path, "./rel-", 6), 0);
}

static void test_unwritable(void **state)
{
    const char *dir = *state;
    char err[256];
    ps_writer *w = (ps_writer *)&err; /* must be reset to NULL on failure */

    /* Under a regular file: cannot be a directory. */
    char path[PATH_MAX];
    touch(dir, "plain", 1);
    path_join(path, sizeof path, dir, "plain/x");
    ps_writer_opts o = base_opts(path, PS_FORMAT_PCAPNG);
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), -1);
    assert_null(w);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, strerror(ENOTDIR)));

    o.path = "/etc/hostname/x";
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "/etc/hostname/x"));

    /* dir/prefix whose directory part is a file. */
    path_join(path, sizeof path, dir, "plain/dump.pcapng");
    o.path = path;
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "plain"));

    o.path = "";
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));

    /* A read-only file system refuses even root; /proc/sys is one here. */
    o.path = "/proc/sys/";
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "/proc/sys"));
}

static void test_write_error_then_retry(void **state)
{
    const char *dir = *state;
    const size_t N = 50;
    int full = open("/dev/full", O_WRONLY);
    if (full < 0)
        skip();
    redirect_stdout(full);
    close(full);

    ps_writer_opts o = base_opts("-", PS_FORMAT_PCAPNG);
    ps_writer *w;
    char err[256];
    int rc_open = ps_writer_open(&w, &o, err, sizeof err);
    int rc_flush = -2, errno_flush = 0, rc_retry = -2, rc_close = -2;
    char out[PATH_MAX];
    path_join(out, sizeof out, dir, "retry.pcapng");
    if (rc_open == 0) {
        int h[2][2];
        register_all(w, default_sensors, 1, h);
        write_recs(w, h, 0, N);
        rc_flush = ps_writer_flush(w);
        errno_flush = errno;
        /* The disk has room again: the same bytes go out, nothing lost. */
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        dup2(fd, STDOUT_FILENO);
        close(fd);
        rc_retry = ps_writer_flush(w);
        rc_close = ps_writer_free(w);
    }
    restore_stdout();
    assert_int_equal(rc_open, 0);
    assert_int_equal(rc_flush, -1);
    assert_int_equal(errno_flush, ENOSPC);
    assert_int_equal(rc_retry, 0);
    assert_int_equal(rc_close, 0);
    size_t *idx = seq(0, N);
    pcap_verify(out, idx, N, 0);
    free(idx);
}

static void test_write_error_on_close(void **state)
{
    (void)state;
    int full = open("/dev/full", O_WRONLY);
    if (full < 0)
        skip();
    redirect_stdout(full);
    close(full);
    ps_writer_opts o = base_opts("/dev/stdout", PS_FORMAT_PCAP);
    ps_writer *w;
    char err[256];
    int rc_open = ps_writer_open(&w, &o, err, sizeof err), rc_close = -2, e = 0;
    if (rc_open == 0) {
        int h[2][2];
        register_all(w, default_sensors, 1, h);
        write_recs(w, h, 0, 3);
        rc_close = ps_writer_free(w);
        e = errno;
    }
    restore_stdout();
    assert_int_equal(rc_open, 0);
    assert_int_equal(rc_close, -1);
    assert_int_equal(e, ENOSPC);
}

/* A non-blocking pipe accepts part of a flush: exactly the accepted bytes
 * are consumed and the next flush continues the stream seamlessly. */
static void test_partial_writes(void **state)
{
    const char *dir = *state;
    const size_t N = 600; /* ~450 KB: several pipe-fulls, under the auto flush */
    int p[2];
    assert_int_equal(pipe(p), 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    redirect_stdout(p[1]);
    close(p[1]);

    ps_buf got = PS_BUF_INIT;
    ps_writer_opts o = base_opts("-", PS_FORMAT_PCAPNG);
    ps_writer *w;
    char err[256];
    int rc_open = ps_writer_open(&w, &o, err, sizeof err), bad = 0, partial = 0;
    if (rc_open == 0) {
        int h[2][2];
        register_all(w, default_sensors, 1, h);
        write_recs(w, h, 0, N);
        for (;;) {
            int rc = ps_writer_flush(w);
            int e = errno;
            uint8_t chunk[65536];
            ssize_t n;
            while ((n = read(p[0], chunk, sizeof chunk)) > 0)
                bad |= ps_buf_append(&got, chunk, (size_t)n);
            if (rc == 0)
                break;
            partial++;
            bad |= e != EAGAIN;
        }
        bad |= ps_writer_free(w);
    }
    restore_stdout();
    close(p[0]);
    assert_int_equal(rc_open, 0);
    assert_int_equal(bad, 0);
    assert_true(partial > 0);

    char out[PATH_MAX];
    path_join(out, sizeof out, dir, "pipe.pcapng");
    FILE *f = fopen(out, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(got.data, 1, got.len, f), got.len);
    fclose(f);
    ps_buf_free(&got);
    size_t *idx = seq(0, N);
    pcap_verify(out, idx, N, 0);
    free(idx);
}

/* Sensors announce different snaplens; libpcap refuses a section whose IDBs
 * disagree, or a packet above its IDB's snaplen. The merged file must stay
 * readable by tcpdump & co. */
static void test_mixed_snaplens(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int a = ps_writer_iface(w, "a", "eth0", NULL, 1, 96, err, sizeof err);
    int b = ps_writer_iface(w, "b", "eth0", NULL, 1, 65535, err, sizeof err);
    assert_true(a >= 0 && b >= 0);
    static uint8_t data[262144];
    assert_int_equal(ps_writer_record(w, a, 1, 1000, 1000, data), 0);
    assert_int_equal(ps_writer_record(w, b, 2, 262144, 300000, data), 0);
    assert_int_equal(ps_writer_free(w), 0);

    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline(g_closed[0].path, errbuf);
    assert_non_null(p);
    struct pcap_pkthdr *h;
    const u_char *d;
    int rc, n = 0;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1)
        n++;
    if (rc != PCAP_ERROR_BREAK)
        fail_msg("libpcap: %s", pcap_geterr(p));
    assert_int_equal(n, 2);
    assert_int_equal(pcap_snapshot(p), 262144);
    pcap_close(p);
}

/* Makes write(2) past `bytes` in any regular file fail with EFBIG: a disk
 * running full, without a small file system to mount. */
static void limit_file_size(rlim_t bytes)
{
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
    struct rlimit r = saved_fsize;
    r.rlim_cur = bytes;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
    fsize_limited = 1;
}

static void unlimit_file_size(void)
{
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved_fsize), 0);
    fsize_limited = 0;
}

/* A size rotation whose flush fails costs no record: the file stays current,
 * the flush reports the error, and rotation happens once writes work. */
static void test_rotation_deferred_on_write_error(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.rotate_bytes = 30000;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);

    limit_file_size(20000);
    write_recs(w, h, 0, 100); /* ~75 KB: rotation due near 30 KB, but writes fail */
    errno = 0;
    int rc = ps_writer_flush(w);
    int e = errno;
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    unlimit_file_size();
    assert_int_equal(rc, -1);
    assert_int_equal(e, EFBIG);
    assert_int_equal(t.files_closed, 0);
    assert_int_equal(t.bytes, 20000); /* exactly what write(2) accepted */

    assert_int_equal(ps_writer_flush(w), 0);
    write_recs(w, h, 100, 105); /* the first of these ends a batch: rotation completes */
    assert_int_equal(ps_writer_free(w), 0);

    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 2);
    size_t next = 0;
    for (size_t k = 0; k < 2; k++) {
        char path[PATH_MAX];
        path_join(path, sizeof path, dir, ls.v[k]);
        ng_file f;
        ng_load(path, &f);
        assert_int_equal(f.npkts, k == 0 ? 101 : 4);
        if (k == 0)
            assert_true(f.size > o.rotate_bytes);
        for (size_t i = 0; i < f.npkts; i++)
            check_ng_pkt(&f.pkts[i], next + i, default_sensors);
        next += f.npkts;
        ng_free(&f);
    }
    names_free(&ls);
}

/* Closing with a failed flush returns -1 and leaves the .part for repair. */
static void test_close_failure_leaves_part(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAP);
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);
    write_recs(w, h, 0, 100);
    limit_file_size(20000);
    errno = 0;
    int rc = ps_writer_free(w);
    int e = errno;
    unlimit_file_size();
    assert_int_equal(rc, -1);
    assert_int_equal(e, EFBIG);
    assert_int_equal(g_nclosed, 0);
    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 1);
    assert_non_null(strstr(ls.v[0], ".pcap.part"));
    char path[PATH_MAX];
    path_join(path, sizeof path, dir, ls.v[0]);
    assert_int_equal(file_size(path), 20000);
    names_free(&ls);
}

/* Many sensors and interfaces, announced twice (a reconnect): stable,
 * distinct handles, and each record lands in its own sensor's file. */
static void test_many_ifaces(void **state)
{
    const char *dir = *state;
    enum { SENSORS = 50, IFACES = 100 };
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.per_sensor = 1;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    static int h[SENSORS][IFACES];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < SENSORS; i++) {
            for (int j = 0; j < IFACES; j++) {
                char sn[32], in[32];
                snprintf(sn, sizeof sn, "node%d", i);
                snprintf(in, sizeof in, "veth%d", j);
                int x = ps_writer_iface(w, sn, in, NULL, 1, 65535, err, sizeof err);
                assert_int_equal(x, round ? h[i][j] : i * IFACES + j);
                h[i][j] = x;
            }
        }
    }
    uint8_t data[4] = {1, 2, 3, 4};
    for (int i = 0; i < SENSORS; i++)
        assert_int_equal(ps_writer_record(w, h[i][i % IFACES], 1, 4, 4, data), 0);
    assert_int_equal(ps_writer_free(w), 0);
    assert_int_equal(g_nclosed, SENSORS);
    for (int i = 0; i < SENSORS; i++) {
        ng_file f;
        ng_load(g_closed[i].path, &f);
        assert_int_equal(f.npkts, 1);
        char want[64];
        const char *base = strrchr(g_closed[i].path, '/') + 1;
        int sensor = atoi(base + strlen("packetstreamer-node"));
        snprintf(want, sizeof want, "node%d/veth%d", sensor, sensor % IFACES);
        assert_string_equal(f.pkts[0].name, want);
        ng_free(&f);
    }
}

static void test_stats_and_handles(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.rotate_seconds = 10;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[2][2];
    register_all(w, default_sensors, 1, h);

    /* Bad handles are refused. */
    errno = 0;
    assert_int_equal(ps_writer_record(w, -1, 0, 0, 0, NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(ps_writer_record(w, 4, 0, 0, 0, NULL), -1);
    assert_int_equal(ps_writer_iface_stats(w, 99, 0, 0, 0, 0), -1);
    assert_int_equal(ps_writer_iface(w, NULL, "eth0", NULL, 1, 1, err, sizeof err), -1);

    /* Statistics alone create no file. */
    assert_int_equal(ps_writer_iface_stats(w, h[0][0], 1, 2, 3, 4), 0);
    names ls;
    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 0);

    /* An interface without packets in this file gets its IDB before its ISB. */
    rec r;
    gen_rec(0, &r);
    assert_int_equal(ps_writer_record(w, h[0][0], r.ts, r.caplen, r.origlen, r.data), 0);
    assert_int_equal(ps_writer_iface_stats(w, h[1][1], BASE_TS + 9, 7, 8, 9), 0);
    /* A changed description re-declares the interface with a new IDB. */
    assert_int_equal(ps_writer_iface(w, "s0", "eth0", "renamed", 1, 65535, err, sizeof err),
                     h[0][0]);
    assert_int_equal(ps_writer_record(w, h[0][0], r.ts, r.caplen, r.origlen, r.data), 0);
    assert_int_equal(ps_writer_free(w), 0);

    list_dir(dir, "", &ls);
    assert_int_equal(ls.n, 1);
    char path[PATH_MAX];
    path_join(path, sizeof path, dir, ls.v[0]);
    ng_file f;
    ng_load(path, &f);
    assert_int_equal(f.nidb, 3);
    assert_string_equal(f.idb_name[0], "s0/eth0");
    assert_string_equal(f.idb_name[1], "s1/eth1");
    assert_string_equal(f.idb_name[2], "s0/eth0");
    assert_string_equal(f.idb_desc[2], "renamed");
    assert_int_equal(f.nisb, 1);
    assert_string_equal(f.isb[0].name, "s1/eth1");
    assert_int_equal(f.isb[0].recv, 7);
    assert_int_equal(f.isb[0].deliv, 0);
    assert_int_equal(f.npkts, 2);
    ng_free(&f);
    names_free(&ls);
}

/* ---- open per-sensor files ------------------------------------------------ */

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One record (and batch end) from sensor handle h; its payload byte is tag. */
static void one_rec(ps_writer *w, int h, uint8_t tag)
{
    uint8_t data[32];
    memset(data, tag, sizeof data);
    assert_int_equal(ps_writer_record(w, h, BASE_TS + tag, sizeof data, sizeof data, data), 0);
    assert_int_equal(ps_writer_batch_end(w, h, "s", 1, tag + 1u), 0);
}

static int sensor_iface(ps_writer *w, int k)
{
    char sn[32], err[256];
    snprintf(sn, sizeof sn, "node%d", k);
    int h = ps_writer_iface(w, sn, "eth0", NULL, 1, 65535, err, sizeof err);
    assert_true(h >= 0);
    return h;
}

/* Packets of every completed file in dir, which must all be complete. */
static size_t count_done_packets(const char *dir, const char *want_prefix)
{
    names ls;
    list_dir(dir, "", &ls);
    size_t n = 0;
    for (size_t i = 0; i < ls.n; i++) {
        assert_null(strstr(ls.v[i], ".part"));
        if (want_prefix && strncmp(ls.v[i], want_prefix, strlen(want_prefix)) != 0)
            continue;
        char p[PATH_MAX];
        path_join(p, sizeof p, dir, ls.v[i]);
        ng_file f;
        ng_load(p, &f);
        n += f.npkts;
        ng_free(&f);
    }
    names_free(&ls);
    return n;
}

/* A departed sensor's file is completed once idle; an active one stays. */
static void test_per_sensor_idle_close(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.per_sensor = 1;
    o.idle_close_seconds = 2;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int a = sensor_iface(w, 0), b = sensor_iface(w, 1);
    one_rec(w, a, 1);
    one_rec(w, b, 2);
    uint64_t t0 = realtime_ns();
    assert_int_equal(ps_writer_tick(w, t0), 0);
    one_rec(w, a, 3);
    assert_int_equal(ps_writer_tick(w, t0 + 1500000000ull), 0);
    assert_int_equal(g_nclosed, 0);
    assert_int_equal(ps_writer_tick(w, t0 + 2500000000ull), 0);
    /* b (idle 2.5 s) is complete, under its final name; a (1 s) is not. */
    assert_int_equal(g_nclosed, 1);
    assert_non_null(strstr(g_closed[0].path, "packetstreamer-node1-"));
    assert_true(g_closed[0].existed);
    assert_int_equal(g_closed[0].packets, 1);
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.closed_idle, 1);
    assert_int_equal(t.open_files, 1);
    /* b comes back: a new file. */
    one_rec(w, b, 4);
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.open_files, 2);
    assert_int_equal(ps_writer_free(w), 0);
    assert_int_equal(g_nclosed, 3);
    assert_int_equal(count_done_packets(dir, "packetstreamer-node1-"), 2);
    assert_int_equal(count_done_packets(dir, NULL), 4);
}

/* At most max_open_files files; the least recently used is completed. */
static void test_per_sensor_open_limit(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.per_sensor = 1;
    o.max_open_files = 3;
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    int h[5];
    for (int k = 0; k < 5; k++)
        h[k] = sensor_iface(w, k);
    for (int k = 0; k < 3; k++)
        one_rec(w, h[k], (uint8_t)k);
    one_rec(w, h[0], 10); /* node0 is now the most recent, node1 the least */
    assert_int_equal(g_nclosed, 0);
    one_rec(w, h[3], 3);
    assert_int_equal(g_nclosed, 1);
    assert_non_null(strstr(g_closed[0].path, "packetstreamer-node1-"));
    one_rec(w, h[4], 4);
    assert_int_equal(g_nclosed, 2);
    assert_non_null(strstr(g_closed[1].path, "packetstreamer-node2-"));
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    assert_int_equal(t.open_files, 3);
    assert_int_equal(t.closed_open_limit, 2);
    assert_int_equal(ps_writer_free(w), 0);
    assert_int_equal(count_done_packets(dir, NULL), 6);
}

/* Out of descriptors: the least recently used file makes room, and every
 * record is still taken. */
static void test_per_sensor_emfile(void **state)
{
    const char *dir = *state;
    ps_writer_opts o = base_opts(dir, PS_FORMAT_PCAPNG);
    o.per_sensor = 1;
    o.max_open_files = 0; /* only the descriptors limit */
    ps_writer *w;
    char err[256];
    assert_int_equal(ps_writer_open(&w, &o, err, sizeof err), 0);
    struct rlimit saved, rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    rl = saved;
    rl.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    static int fds[256];
    int nfds = 0;
    for (int fd; nfds < 256 && (fd = dup(0)) >= 0;)
        fds[nfds++] = fd;
    assert_int_equal(errno, EMFILE);
    for (int i = 0; i < 3; i++) /* three left */
        close(fds[--nfds]);
    int ok = 1;
    for (int k = 0; k < 12 && ok; k++) {
        char sn[32];
        snprintf(sn, sizeof sn, "node%d", k);
        int h = ps_writer_iface(w, sn, "eth0", NULL, 1, 65535, err, sizeof err);
        uint8_t data[8] = {(uint8_t)k};
        ok = h >= 0 && ps_writer_record(w, h, BASE_TS, 8, 8, data) == 0 &&
             ps_writer_batch_end(w, h, sn, 1, 1) == 0 && ps_writer_flush(w) == 0;
    }
    while (nfds > 0)
        close(fds[--nfds]);
    setrlimit(RLIMIT_NOFILE, &saved);
    assert_true(ok);
    ps_writer_totals t;
    ps_writer_get_totals(w, &t);
    assert_true(t.closed_open_limit >= 9);
    assert_int_equal(ps_writer_free(w), 0);
    assert_int_equal(count_done_packets(dir, NULL), 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pcapng_roundtrip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_rotate_by_size, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_rotate_tiny_limit, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_rotate_by_time, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_files_meta, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_retention_by_count, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_retention_deleted_count, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_retention_by_bytes, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_counter_continues, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_pcap_us, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_pcap_ns, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_pcap_ts_overflow, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_pcap_linktype_mismatch, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_per_sensor, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_stdout, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_path_rules, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_unwritable, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_write_error_then_retry, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_write_error_on_close, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_partial_writes, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_mixed_snaplens, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_rotation_deferred_on_write_error, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_close_failure_leaves_part, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_many_ifaces, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_stats_and_handles, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_per_sensor_idle_close, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_per_sensor_open_limit, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_per_sensor_emfile, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
