/*
 * fuzz_session: the receiver's session state machine, fed sequences of
 * frames over real connections. No seam in session.c or hub.c: a real hub
 * and a real writer (files in a temporary directory) on a libuv loop take
 * AF_UNIX socketpairs through ps_hub_accept, exactly as the listener hands
 * over accepted TCP sockets, and the harness plays one or two sensors on
 * the other ends. Socketpairs rather than loopback TCP: thousands of runs a
 * second would exhaust ephemeral ports in TIME_WAIT.
 *
 * Input: byte 0 picks the setup (bit 0: perSensor, bit 1: a token "tok" is
 * required, bit 2: classic pcap instead of pcapng); then chunks of
 *   u8 op | u16be len | len bytes
 * op bit 0: which connection (0 or 1; opened on first use, so two can speak
 * for the same sensor at once), bit 1: close that connection after the
 * bytes (the next chunk for it opens a new one: a reconnect), bit 2: run
 * the hub's once-a-second tick (deadlines, rotation, idle files).
 * After each chunk the loop runs until the receiver has read what is there.
 * Capture jobs are on: job 1 ("fz", at most 50 packets) runs from the start,
 * so protocol v2 sessions get JOB_START and their job interfaces' records
 * reach a job file set (its limit, its JOB_STOP) as in the receiver.
 * At the end both connections close, the hub stops, and everything is
 * freed, so LeakSanitizer sees a session's whole life.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "core/log.h"
#include "receiver/hub.h"
#include "receiver/jobs.h"
#include "receiver/writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t g_loop;
static char g_dir[64];
static int g_ready;

static void empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' || (de->d_name[1] && strcmp(de->d_name, "..") != 0))
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

/* The capture files, and the jobs' state (.jobs/), so every run starts
 * with job 1 again. */
static void empty_dir(void)
{
    char jobs[96];
    snprintf(jobs, sizeof jobs, "%s/.jobs", g_dir);
    empty(jobs);
    empty(g_dir);
}

static void at_exit(void)
{
    empty_dir();
    char jobs[96];
    snprintf(jobs, sizeof jobs, "%s/.jobs", g_dir);
    rmdir(jobs);
    rmdir(g_dir);
}

static int init(void)
{
    if (g_ready)
        return 0;
    /* Every log line is formatted (its arguments are part of what is
     * fuzzed) and thrown away: every bad input logs. */
    if (ps_log_open(PS_LOG_DEBUG, 0, getenv("FUZZ_SESSION_LOG") ? NULL : "/dev/null") != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN); /* as the receiver does: a closed peer is EPIPE */
    snprintf(g_dir, sizeof g_dir, "/tmp/fuzz_session-XXXXXX");
    if (!mkdtemp(g_dir) || uv_loop_init(&g_loop) != 0)
        return -1;
    atexit(at_exit);
    g_ready = 1;
    return 0;
}

static int checkpoint(void *ud, ps_buf *out)
{
    return ps_hub_checkpoint(*(ps_hub **)ud, out);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* The sensor's end of a new connection, the receiver's given to the hub. */
static int connect_one(ps_hub *hub)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    uv_tcp_t *t = malloc(sizeof(*t));
    if (!t || uv_tcp_init(&g_loop, t) != 0) {
        free(t);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (uv_tcp_open(t, sv[0]) != 0) {
        close(sv[0]);
        close(sv[1]);
        uv_close((uv_handle_t *)t, free_handle);
        return -1;
    }
    ps_hub_accept(hub, t, "fuzz:1");
    return sv[1];
}

/* Reads and drops what the receiver sent (ACCEPT, ACK, REJECT). */
static void drain(const int fds[2])
{
    uint8_t buf[4096];
    for (int k = 0; k < 2; k++)
        while (fds[k] >= 0 && read(fds[k], buf, sizeof buf) > 0)
            ;
}

static void pump(const int fds[2])
{
    for (int i = 0; i < 4; i++) {
        uv_run(&g_loop, UV_RUN_NOWAIT);
        drain(fds);
    }
}

static void send_all(int fd, const uint8_t *p, size_t n, const int fds[2])
{
    for (int stuck = 0; n > 0 && stuck < 64;) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            stuck = 0;
        } else if (w < 0 && errno == EAGAIN) {
            pump(fds); /* the receiver reads, or has stopped reading us */
            stuck++;
        } else {
            return; /* the receiver closed it */
        }
    }
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || init() != 0)
        return 0;
    uint8_t flags = data[0];
    ps_hub *hub = NULL;
    ps_writer_opts wo = {.path = g_dir,
                         .format = flags & 4 ? PS_FORMAT_PCAP : PS_FORMAT_PCAPNG,
                         .rotate_bytes = 1u << 16, /* reach rotation with small inputs */
                         .per_sensor = flags & 1,
                         .idle_close_seconds = 60,
                         .max_open_files = 2, /* and the open-file limit */
                         .app = "fuzz",
                         .checkpoint = checkpoint,
                         .ud = &hub};
    ps_writer *w;
    char err[256];
    if (ps_writer_open(&w, &wo, err, sizeof err) != 0)
        abort();
    ps_jobs_opts jo = {.dir = g_dir,
                       .format = wo.format,
                       .rotate_bytes = 1u << 16,
                       .app = "fuzz",
                       .max_duration_sec = 3600,
                       .default_duration_sec = 3600,
                       .max_jobs = 4,
                       .am_duration_sec = 60,
                       .checkpoint = checkpoint,
                       .ud = &hub};
    ps_jobs *jobs;
    if (ps_jobs_open(&jobs, &g_loop, &jo, err, sizeof err) != 0)
        abort();
    static const char job1[] = "{\"name\":\"fz\",\"packets\":50}";
    char *body = NULL;
    if (ps_jobs_http_create(jobs, job1, sizeof job1 - 1, &body) != 201)
        abort();
    free(body);
    ps_hub_opts ho = {.writer = w,
                      .token = flags & 2 ? "tok" : NULL,
                      .max_frame = 1u << 17,
                      .max_batch_raw = 1u << 17,
                      .jobs = jobs};
    if (ps_hub_new(&hub, &g_loop, &ho, err, sizeof err) != 0)
        abort();
    ps_jobs_start(jobs);

    int fds[2] = {-1, -1};
    size_t off = 1;
    uint64_t now = realtime_ns();
    while (size - off >= 3) {
        uint8_t op = data[off];
        size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
        off += 3;
        if (len > size - off)
            len = size - off;
        int k = op & 1;
        if (fds[k] < 0)
            fds[k] = connect_one(hub);
        if (fds[k] >= 0)
            send_all(fds[k], data + off, len, fds);
        off += len;
        pump(fds);
        if (op & 2 && fds[k] >= 0) {
            close(fds[k]);
            fds[k] = -1;
            pump(fds);
        }
        if (op & 4) {
            now += 1000000000ull * 61; /* past the idle-file time */
            ps_hub_tick(hub, now);
            pump(fds);
        }
    }
    for (int k = 0; k < 2; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    ps_hub_stop(hub);
    ps_jobs_stop(jobs);
    uv_run(&g_loop, UV_RUN_DEFAULT); /* every session closes and frees itself */
    ps_writer_free(w);               /* completes files: the checkpoint asks the hub */
    ps_jobs_free(jobs);
    ps_hub_free(hub);
    empty_dir();
    return 0;
}
