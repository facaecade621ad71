/*
 * sockfile: what it costs to move a TCP stream into a file, by method. It
 * answers one question of the performance-as-deployed issue: could the
 * receiver cost half of `tcpdump -w` per packet if it wrote differently?
 *
 * A sender (pinned to CPU 0, or SENDER_CPU) streams BYTES of incompressible
 * data over loopback TCP; a receiver (pinned to CPU 1) puts them into a file
 * in tmpfs by one of these methods, and its user + system CPU (wait4) is
 * printed. Only the receiver is measured: it is what the target is
 * about. With the sender on CPU 0, loopback's TCP work (transmit and
 * delivery) runs mostly in the sender's context, so the figure is the
 * method's own; with the sender on CPU 1 too, as sensor and receiver are in
 * bench/peers.py, the receiver's figure takes its share of that work.
 *
 *   write       recv into a 256 KiB buffer, write(2) it: the receiver's
 *               kernel work today, without its encode
 *   copy-write  recv, copy into a second buffer as 1432-byte records with a
 *               32-byte header each (the pcapng encode), write(2) it: the
 *               receiver today
 *   copy-mmap   recv, copy the records straight into the file's pages
 *               through a shared mapping (fallocate + mmap in 16 MiB steps):
 *               what the receiver could do without a protocol change
 *   recv-mmap   recv straight into the mapped file: needs a wire format
 *               that already is the file's
 *   copy-mmap-pop, recv-mmap-pop
 *               the same, each window populated by one
 *               madvise(MADV_POPULATE_WRITE) instead of a fault per page
 *   splice      socket -> pipe -> file with splice(2): the same, and no
 *               user-space copy at all
 *
 * Usage: sockfile MODE BYTES FILE [SENDER_CPU]. Prints one line: mode, bytes, user s,
 * system s, wall s. Checks that the file holds BYTES (plus the record
 * headers in the copy modes); exits 1 on any error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256u * 1024)
#define REC 1400u
#define HDR 32u
#define MAP_STEP (16u << 20)

static void die(const char *what)
{
    fprintf(stderr, "sockfile: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        die("sched_setaffinity");
}

static void sender(int port, uint64_t bytes, int cpu)
{
    pin(cpu);
    static unsigned char buf[4u << 20];
    uint64_t x = 88172645463325252ull; /* xorshift: incompressible, like TLS */
    for (size_t i = 0; i < sizeof(buf); i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        die("connect");
    uint64_t sent = 0;
    while (sent < bytes) {
        size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
        ssize_t w = send(fd, buf + (sent % sizeof(buf) / CHUNK) * CHUNK, n, 0);
        if (w < 0)
            die("send");
        sent += (uint64_t)w;
    }
    close(fd);
    _exit(0);
}

static size_t recv_full(int s, unsigned char *p, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t n = recv(s, p + got, want - got, 0);
        if (n < 0)
            die("recv");
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return got;
}

static void write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
}

/* The pcapng encode's shape: a header, the record, padding already 4-aligned
 * at 1400 bytes. */
static size_t encode(unsigned char *dst, const unsigned char *src, size_t n)
{
    size_t out = 0;
    for (size_t off = 0; off < n; off += REC) {
        size_t r = n - off < REC ? n - off : REC;
        uint32_t h[8] = {6, (uint32_t)(r + HDR), 0, 0, 0, (uint32_t)r, (uint32_t)r, 0};
        memcpy(dst + out, h, HDR);
        memcpy(dst + out + HDR, src + off, r);
        out += HDR + r;
    }
    return out;
}

typedef struct {
    int fd;
    unsigned char *map;
    uint64_t map_off, len; /* where the mapping starts; bytes written */
} mfile;

/* A window of MAP_STEP bytes allocated with fallocate first, so running out
 * of space is an error here and not a SIGBUS later. */
static unsigned char *mfile_room(mfile *m, size_t need, int populate)
{
    if (!m->map || m->len + need > m->map_off + MAP_STEP) {
        if (m->map)
            munmap(m->map, MAP_STEP);
        m->map_off = m->len & ~(uint64_t)(4095);
        if (fallocate(m->fd, 0, (off_t)m->map_off, MAP_STEP) != 0)
            die("fallocate");
        m->map = mmap(NULL, MAP_STEP, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, (off_t)m->map_off);
        if (m->map == MAP_FAILED)
            die("mmap");
        /* One call maps the whole window instead of a fault per page. */
        if (populate && madvise(m->map, MAP_STEP, MADV_POPULATE_WRITE) != 0)
            die("madvise");
    }
    return m->map + (m->len - m->map_off);
}

static void receiver(const char *mode, int ls, const char *path, uint64_t bytes)
{
    pin(1);
    int s = accept(ls, NULL, NULL);
    if (s < 0)
        die("accept");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(path);
    uint64_t total = 0, file = 0;
    static unsigned char rx[CHUNK], tx[CHUNK + CHUNK / REC * HDR + HDR];
    if (!strcmp(mode, "write") || !strcmp(mode, "copy-write")) {
        int copy = mode[0] == 'c';
        for (;;) {
            size_t n = recv_full(s, rx, CHUNK);
            if (!n)
                break;
            total += n;
            if (copy) {
                size_t e = encode(tx, rx, n);
                write_all(fd, tx, e);
                file += e;
            } else {
                write_all(fd, rx, n);
                file += n;
            }
        }
    } else if (!strncmp(mode, "copy-mmap", 9) || !strncmp(mode, "recv-mmap", 9)) {
        mfile m = {.fd = fd};
        int copy = mode[0] == 'c', pop = strstr(mode, "-pop") != NULL;
        for (;;) {
            size_t n;
            if (copy) {
                n = recv_full(s, rx, CHUNK);
                if (n)
                    m.len += encode(mfile_room(&m, sizeof(tx), pop), rx, n);
            } else {
                n = recv_full(s, mfile_room(&m, CHUNK, pop), CHUNK);
                m.len += n;
            }
            if (!n)
                break;
            total += n;
        }
        if (m.map)
            munmap(m.map, MAP_STEP);
        if (ftruncate(fd, (off_t)m.len) != 0)
            die("ftruncate");
        file = m.len;
    } else if (!strcmp(mode, "splice")) {
        int p[2];
        if (pipe(p) != 0)
            die("pipe");
        (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        for (;;) {
            ssize_t n = splice(s, NULL, p[1], NULL, CHUNK, SPLICE_F_MOVE);
            if (n < 0)
                die("splice in");
            if (n == 0)
                break;
            total += (uint64_t)n;
            while (n > 0) {
                ssize_t w = splice(p[0], NULL, fd, NULL, (size_t)n, SPLICE_F_MOVE);
                if (w <= 0)
                    die("splice out");
                n -= w;
            }
        }
        file = total;
    } else {
        fprintf(stderr, "sockfile: unknown mode %s\n", mode);
        exit(2);
    }
    struct stat st;
    if (total != bytes || fstat(fd, &st) != 0 || (uint64_t)st.st_size != file) {
        fprintf(stderr, "sockfile: %s: received %llu of %llu bytes, file %llu\n", mode,
                (unsigned long long)total, (unsigned long long)bytes, (unsigned long long)file);
        exit(1);
    }
    close(fd);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr,
                "usage: sockfile write|copy-write|copy-mmap[-pop]|recv-mmap[-pop]|splice BYTES "
                "FILE [SENDER_CPU]\n");
        return 2;
    }
    uint64_t bytes = strtoull(argv[2], NULL, 10);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0)
        die("listen");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t r = fork();
    if (r == 0)
        receiver(argv[1], ls, argv[3], bytes);
    pid_t snd = fork();
    if (snd == 0)
        sender(ntohs(a.sin_port), bytes, argc == 5 ? atoi(argv[4]) : 0);
    int st_r, st_s;
    struct rusage ru;
    if (wait4(r, &st_r, 0, &ru) < 0 || waitpid(snd, &st_s, 0) < 0)
        die("wait");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!WIFEXITED(st_r) || WEXITSTATUS(st_r) || !WIFEXITED(st_s) || WEXITSTATUS(st_s))
        return 1;
    printf("%s %llu %.3f %.3f %.3f\n", argv[1], (unsigned long long)bytes,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
