/*
 * test_hub: the receiver's hub through its public API, on a real libuv loop
 * with real TCP on 127.0.0.1 and a real writer in a temporary directory.
 *
 * The "sensor" is a hand-written blocking client speaking the wire protocol
 * (core/wire.h encoders); the test thread alternates between it and
 * uv_run(NOWAIT) until what it waits for arrived, so nothing here is mocked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/wire.h"
#include "receiver/hub.h"
#include "receiver/listener.h"
#include "receiver/writer.h"

/* ---- a receiver around one hub ---- */

typedef struct recovered {
    char id[64];
    uint64_t session, seq;
} recovered;

typedef struct rx {
    uv_loop_t loop;
    char dir[64];
    ps_writer *writer;
    ps_metrics *metrics;
    ps_hub *hub;
    ps_listener *listener;
    int port;
    int idle; /* on_idle calls */
    recovered rec[8];
    int nrec;
} rx;

static void on_conn(void *ud, uv_tcp_t *tcp, const char *peer)
{
    rx *r = ud;
    ps_hub_accept(r->hub, tcp, peer);
}

static void on_idle(void *ud)
{
    ((rx *)ud)->idle++;
}

static int on_checkpoint(void *ud, ps_buf *out)
{
    rx *r = ud;
    return r->hub ? ps_hub_checkpoint(r->hub, out) : 0;
}

/* The writer recovers before the hub exists: kept, then handed over. */
static void on_recovered(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    rx *r = ud;
    assert_true(r->nrec < 8);
    snprintf(r->rec[r->nrec].id, sizeof(r->rec[0].id), "%.*s", (int)id_len, id);
    r->rec[r->nrec].session = session;
    r->rec[r->nrec++].seq = seq;
}

static void rx_start(rx *r, const char *dir, const ps_hub_opts *extra)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    assert_int_equal(uv_loop_init(&r->loop), 0);
    char err[512];
    ps_writer_opts wo = {.path = r->dir,
                         .format = PS_FORMAT_PCAPNG,
                         .app = "test_hub",
                         .checkpoint = on_checkpoint,
                         .on_recovered = on_recovered,
                         .ud = r};
    assert_int_equal(ps_writer_open(&r->writer, &wo, err, sizeof(err)), 0);
    r->metrics = ps_metrics_new();
    assert_non_null(r->metrics);
    ps_hub_opts o = extra ? *extra : (ps_hub_opts){0};
    o.writer = r->writer;
    o.metrics = r->metrics;
    o.on_idle = on_idle;
    o.ud = r;
    assert_int_equal(ps_hub_new(&r->hub, &r->loop, &o, err, sizeof(err)), 0);
    for (int i = 0; i < r->nrec; i++)
        ps_hub_recovered(r->hub, r->rec[i].id, strlen(r->rec[i].id), r->rec[i].session,
                         r->rec[i].seq);
    assert_int_equal(
        ps_listener_open(&r->listener, &r->loop, "127.0.0.1", 0, on_conn, r, err, sizeof(err)), 0);
    const char *colon = strrchr(ps_listener_addr(r->listener), ':');
    r->port = atoi(colon + 1);
}

static void pump(rx *r, int ms)
{
    for (int i = 0; i < ms; i++) {
        uv_run(&r->loop, UV_RUN_NOWAIT);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void rx_stop(rx *r)
{
    ps_listener_close(r->listener);
    ps_hub_stop(r->hub);
    for (int i = 0; i < 5000 && ps_hub_session_count(r->hub) > 0; i++)
        pump(r, 1);
    assert_int_equal(ps_hub_session_count(r->hub), 0);
    assert_int_equal(ps_writer_free(r->writer), 0); /* writes the checkpoint */
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    ps_hub_free(r->hub);
    ps_metrics_free(r->metrics);
}

/* ---- a hand-written sensor ---- */

typedef struct client {
    int fd;
    uint8_t in[65536];
    size_t inlen;
} client;

static void cl_connect(client *c, rx *r)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    pump(r, 20); /* accepted */
}

static void cl_send(client *c, const void *p, size_t n)
{
    assert_int_equal(send(c->fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void cl_hello(client *c, const char *id, uint64_t session, const char *token)
{
    ps_hello h = {.version_min = PS_WIRE_VERSION,
                  .version_max = PS_WIRE_VERSION,
                  .codecs = 1,
                  .codec = 0,
                  .max_frame = 1 << 20,
                  .max_batch_raw = 1 << 20,
                  .session = session,
                  .id = id,
                  .id_len = (uint16_t)strlen(id),
                  .token = token ? token : "",
                  .token_len = (uint16_t)(token ? strlen(token) : 0)};
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_wire_encode_hello(&b, &h), 0);
    cl_send(c, b.data, b.len);
    ps_buf_free(&b);
}

static void cl_iface(client *c)
{
    ps_iface i = {.index = 0, .linktype = 1, .snaplen = 262144, .name = "eth0", .name_len = 4};
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_wire_encode_iface(&b, &i), 0);
    cl_send(c, b.data, b.len);
    ps_buf_free(&b);
}

static void cl_iface_named(client *c, uint32_t index, const char *name)
{
    ps_iface i = {.index = index,
                  .linktype = 1,
                  .snaplen = 262144,
                  .name = name,
                  .name_len = (uint16_t)strlen(name)};
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_wire_encode_iface(&b, &i), 0);
    cl_send(c, b.data, b.len);
    ps_buf_free(&b);
}

static void cl_stats(client *c, uint32_t index, uint64_t kernel_drops)
{
    ps_stats st = {.index = index, .packets = 100, .kernel_drops = kernel_drops};
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_wire_encode_stats(&b, &st), 0);
    cl_send(c, b.data, b.len);
    ps_buf_free(&b);
}

/* A batch of n 60-byte records on interface 0, uncompressed. */
static void cl_batch(client *c, uint64_t seq, uint32_t n)
{
    uint8_t raw[16 * (PS_WIRE_REC_HDR_LEN + 60)], pkt[60];
    memset(pkt, 0xab, sizeof(pkt));
    assert_true(n <= 16);
    for (uint32_t k = 0; k < n; k++)
        ps_wire_record_put(raw + k * (PS_WIRE_REC_HDR_LEN + 60), 0,
                           1700000000000000000ull + seq * 1000 + k, 60, 60, pkt);
    uint32_t len = n * (PS_WIRE_REC_HDR_LEN + 60);
    uint8_t pre[PS_WIRE_HDR_LEN + PS_WIRE_BATCH_HDR_LEN];
    ps_wire_batch_prefix(pre, seq, 0, n, len, len);
    cl_send(c, pre, sizeof(pre));
    cl_send(c, raw, len);
}

/* Pumps the loop until a frame of type arrives (other frames are skipped)
 * or the peer closed; returns 1 with *f set (valid until the next call), 0
 * on EOF. */
static int cl_expect(client *c, rx *r, int type, ps_frame *f)
{
    for (int t = 0; t < 5000; t++) {
        size_t used;
        while (c->inlen && ps_wire_frame_parse(c->in, c->inlen, 1 << 20, f, &used) == PS_WIRE_OK) {
            if (f->type == type) {
                /* Keep the payload where it is until the next call. */
                static uint8_t keep[65536];
                memcpy(keep, f->payload, f->len);
                f->payload = keep;
                memmove(c->in, c->in + used, c->inlen - used);
                c->inlen -= used;
                return 1;
            }
            memmove(c->in, c->in + used, c->inlen - used);
            c->inlen -= used;
        }
        pump(r, 1);
        ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return 0;
        if (n > 0)
            c->inlen += (size_t)n;
    }
    fail_msg("no frame of type %d within 5 s", type);
    return 0;
}

static uint64_t cl_accept(client *c, rx *r)
{
    ps_frame f;
    assert_int_equal(cl_expect(c, r, PS_FRAME_ACCEPT, &f), 1);
    ps_accept a;
    assert_int_equal(ps_wire_decode_accept(f.payload, f.len, &a), PS_WIRE_OK);
    return a.last_seq;
}

static uint64_t cl_ack(client *c, rx *r)
{
    ps_frame f;
    assert_int_equal(cl_expect(c, r, PS_FRAME_ACK, &f), 1);
    uint64_t v;
    assert_int_equal(ps_wire_decode_u64(f.payload, f.len, &v), PS_WIRE_OK);
    return v;
}

/* ---- helpers ---- */

static char tmpdir[64];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_hub.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

typedef struct find {
    const char *id;
    uint64_t session;
    ps_hub_sensor s;
    int found;
} find;

static int find_cb(void *ud, const ps_hub_sensor *s)
{
    find *f = ud;
    if (strcmp(s->id, f->id) == 0 && s->session == f->session) {
        f->s = *s;
        f->found = 1;
        return 1;
    }
    return 0;
}

static ps_hub_sensor sensor(rx *r, const char *id, uint64_t session)
{
    find f = {.id = id, .session = session};
    ps_hub_foreach_sensor(r->hub, find_cb, &f);
    assert_true(f.found);
    return f.s;
}

/* The /metrics text holds this exact line. */
static void assert_metric(rx *r, const char *line)
{
    ps_buf b = PS_BUF_INIT;
    assert_int_equal(ps_metrics_render(r->metrics, &b), 0);
    assert_int_equal(ps_buf_append(&b, "", 1), 0);
    char want[512];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr((const char *)b.data, want))
        fail_msg("no line '%s' in:\n%s", line, (const char *)b.data);
    ps_buf_free(&b);
}

/* ---- tests ---- */

/* A sensor the files already hold up to batch 41 resumes after it; its
 * resend of 41 is dropped as a duplicate and 42 is written and acked. */
static void test_resume_after_recovered(void **state)
{
    (void)state;
    rx r;
    rx_start(&r, tmpdir, NULL);
    ps_hub_recovered(r.hub, "node-a", 6, 0x1234, 41);
    client c;
    cl_connect(&c, &r);
    cl_hello(&c, "node-a", 0x1234, NULL);
    assert_int_equal(cl_accept(&c, &r), 41);
    cl_iface(&c);
    cl_batch(&c, 41, 3); /* resend */
    cl_batch(&c, 42, 2);
    assert_int_equal(cl_ack(&c, &r), 42);

    ps_hub_sensor s = sensor(&r, "node-a", 0x1234);
    assert_true(s.connected);
    assert_int_equal(s.last_seq, 42);
    assert_int_equal(s.packets, 2);
    assert_int_equal(s.duplicates, 1);
    assert_int_equal(s.batches, 1);
    ps_hub_counters k;
    ps_hub_get_counters(r.hub, &k);
    assert_int_equal(k.packets, 2);
    assert_int_equal(k.duplicates, 1);
    assert_int_equal(k.connections, 1);
    assert_true(k.acks >= 1);
    ps_hub_publish(r.hub);
    assert_metric(&r, "packetstreamer_receiver_duplicate_batches_total{sensor=\"node-a\"} 1");
    assert_metric(&r, "packetstreamer_receiver_packets_total{sensor=\"node-a\"} 2");
    assert_metric(&r, "packetstreamer_receiver_sensors_connected 1");
    close(c.fd);
    rx_stop(&r);
}

/* What one run knew survives into the next through the files: a sensor
 * that sent batches, and one known only from recovery (the checkpoint is
 * the only place that still says so). */
static void test_checkpoint_round_trip(void **state)
{
    (void)state;
    rx r;
    rx_start(&r, tmpdir, NULL);
    ps_hub_recovered(r.hub, "old", 5, 9, 77);
    client c;
    cl_connect(&c, &r);
    cl_hello(&c, "a", 1, NULL);
    assert_int_equal(cl_accept(&c, &r), 0);
    cl_iface(&c);
    cl_batch(&c, 1, 1);
    cl_batch(&c, 2, 1);
    assert_int_equal(cl_ack(&c, &r), 2);
    close(c.fd);
    rx_stop(&r);

    rx_start(&r, tmpdir, NULL);
    client a, o;
    cl_connect(&a, &r);
    cl_hello(&a, "a", 1, NULL);
    assert_int_equal(cl_accept(&a, &r), 2);
    cl_connect(&o, &r);
    cl_hello(&o, "old", 9, NULL);
    assert_int_equal(cl_accept(&o, &r), 77);
    cl_connect(&c, &r);
    cl_hello(&c, "new", 1, NULL);
    assert_int_equal(cl_accept(&c, &r), 0);
    close(a.fd);
    close(o.fd);
    close(c.fd);
    rx_stop(&r);
}

/* Refusals are counted by reason: in the counters, the summary line and
 * /metrics. */
static void test_rejections_by_reason(void **state)
{
    (void)state;
    rx r;
    ps_hub_opts o = {.token = "secret", .limits = {.max_connections = 1}};
    rx_start(&r, tmpdir, &o);
    /* Every label is there from the start, at zero. */
    assert_metric(&r, "packetstreamer_receiver_rejected_connections_total{reason=\"identity\"} 0");
    assert_metric(&r, "packetstreamer_receiver_decode_errors_total{reason=\"io\"} 0");

    client c;
    cl_connect(&c, &r);
    cl_hello(&c, "s", 1, "wrong");
    ps_frame f;
    assert_int_equal(cl_expect(&c, &r, PS_FRAME_REJECT, &f), 1);
    ps_reject rj;
    assert_int_equal(ps_wire_decode_reject(f.payload, f.len, &rj), PS_WIRE_OK);
    assert_int_equal(rj.code, PS_REJECT_AUTH);
    close(c.fd);
    pump(&r, 50);

    client g;
    cl_connect(&g, &r); /* garbage instead of a HELLO */
    cl_send(&g, "GET / HTTP/1.1\r\n\r\n", 18);
    assert_int_equal(cl_expect(&g, &r, PS_FRAME_ACK, &f), 0); /* closed */

    client held, extra;
    cl_connect(&held, &r);
    cl_connect(&extra, &r); /* over limits.maxConnections */
    assert_int_equal(cl_expect(&extra, &r, PS_FRAME_ACK, &f), 0);

    ps_hub_counters k;
    ps_hub_get_counters(r.hub, &k);
    assert_int_equal(k.rejected, 1);
    assert_int_equal(k.auth_failures, 1);
    assert_int_equal(k.connections, 3); /* the refused one was never accepted */
    char kv[512];
    ps_hub_counters_kv(r.hub, kv, sizeof(kv));
    assert_non_null(strstr(kv, " rejected_garbage=1"));
    assert_non_null(strstr(kv, " rejected_max_connections=1"));
    assert_non_null(strstr(kv, " rejected_auth=1"));
    assert_non_null(strstr(kv, " auth_failures=1"));
    ps_hub_publish(r.hub);
    assert_metric(&r, "packetstreamer_receiver_rejected_connections_total{reason=\"auth\"} 1");
    assert_metric(&r, "packetstreamer_receiver_rejected_connections_total{reason=\"garbage\"} 1");
    assert_metric(
        &r, "packetstreamer_receiver_rejected_connections_total{reason=\"max_connections\"} 1");
    assert_metric(&r, "packetstreamer_receiver_auth_failures_total 1");
    assert_metric(&r, "packetstreamer_receiver_connections_total 3");
    close(g.fd);
    close(held.fd);
    close(extra.fd);
    rx_stop(&r);
}

/* A session's interface entries go when it closes or re-maps an index; one
 * whose IDB is in the open file stays until that file rotates, so the
 * sensor reconnecting gets it back. */
static void test_interfaces_released(void **state)
{
    (void)state;
    rx r;
    rx_start(&r, tmpdir, NULL);
    client c;
    cl_connect(&c, &r);
    cl_hello(&c, "ifs", 1, NULL);
    cl_accept(&c, &r);
    cl_iface(&c); /* index 0: eth0 */
    cl_iface_named(&c, 1, "eth1");
    cl_iface_named(&c, 2, "eth2");
    cl_batch(&c, 1, 2); /* eth0's IDB goes into the file */
    assert_int_equal(cl_ack(&c, &r), 1);
    assert_int_equal(ps_writer_iface_count(r.writer), 3);
    cl_iface_named(&c, 1, "eth1-renamed"); /* eth1 is free now */
    cl_iface_named(&c, 2, "eth2");         /* the same one again: kept */
    cl_batch(&c, 2, 1);
    assert_int_equal(cl_ack(&c, &r), 2);
    assert_int_equal(ps_writer_iface_count(r.writer), 3);
    close(c.fd);
    for (int i = 0; i < 2000 && ps_hub_session_count(r.hub) > 0; i++)
        pump(&r, 1);
    /* eth0 waits for its file to rotate; the others are gone. */
    assert_int_equal(ps_writer_iface_count(r.writer), 1);
    ps_hub_publish(r.hub);
    assert_metric(&r, "packetstreamer_receiver_interfaces 1");

    cl_connect(&c, &r);
    cl_hello(&c, "ifs", 1, NULL);
    cl_accept(&c, &r);
    cl_iface(&c);
    cl_batch(&c, 3, 1);
    assert_int_equal(cl_ack(&c, &r), 3);
    assert_int_equal(ps_writer_iface_count(r.writer), 1);
    close(c.fd);
    rx_stop(&r);
}

/* One interface more than limits.max_ifaces_per_session closes the
 * connection, counted as too_many_interfaces. */
static void test_too_many_interfaces(void **state)
{
    (void)state;
    rx r;
    ps_hub_opts o = {.limits = {.max_ifaces_per_session = 2}};
    rx_start(&r, tmpdir, &o);
    client c;
    cl_connect(&c, &r);
    cl_hello(&c, "many", 1, NULL);
    cl_accept(&c, &r);
    cl_iface_named(&c, 0, "a");
    cl_iface_named(&c, 0, "b"); /* re-mapping index 0 is not one more */
    cl_iface_named(&c, 7, "c");
    cl_iface_named(&c, 9, "d");
    ps_frame f;
    assert_int_equal(cl_expect(&c, &r, PS_FRAME_ACK, &f), 0); /* closed */
    ps_hub_publish(r.hub);
    assert_metric(
        &r, "packetstreamer_receiver_rejected_connections_total{reason=\"too_many_interfaces\"} 1");
    for (int i = 0; i < 2000 && ps_hub_session_count(r.hub) > 0; i++)
        pump(&r, 1);
    assert_int_equal(ps_writer_iface_count(r.writer), 0);
    close(c.fd);
    rx_stop(&r);
}

/* The sensor's drop total is the sum of each interface's latest counters,
 * kept as they change (STATS cost O(1) per frame). */
static void test_stats_drop_total(void **state)
{
    (void)state;
    rx r;
    rx_start(&r, tmpdir, NULL);
    client c;
    cl_connect(&c, &r);
    cl_hello(&c, "drops", 1, NULL);
    cl_accept(&c, &r);
    cl_iface_named(&c, 0, "a");
    cl_iface_named(&c, 65535, "z");
    cl_stats(&c, 0, 5);
    cl_stats(&c, 65535, 7);
    cl_stats(&c, 0, 9); /* cumulative: replaces the 5 */
    cl_batch(&c, 1, 0);
    pump(&r, 100);
    assert_int_equal(sensor(&r, "drops", 1).drops, 16);
    close(c.fd);
    rx_stop(&r);
}

/* Stop closes every session gracefully and reports idle once they are gone;
 * abort cuts a session that is still open. */
static void test_stop_and_abort(void **state)
{
    (void)state;
    rx r;
    rx_start(&r, tmpdir, NULL);
    client a, b;
    cl_connect(&a, &r);
    cl_hello(&a, "a", 1, NULL);
    cl_accept(&a, &r);
    cl_connect(&b, &r);
    cl_hello(&b, "b", 1, NULL);
    cl_accept(&b, &r);
    assert_int_equal(ps_hub_session_count(r.hub), 2);

    ps_hub_abort(r.hub);
    ps_frame f;
    assert_int_equal(cl_expect(&a, &r, PS_FRAME_ACK, &f), 0);
    assert_int_equal(cl_expect(&b, &r, PS_FRAME_ACK, &f), 0);
    assert_int_equal(ps_hub_session_count(r.hub), 0);
    assert_false(sensor(&r, "a", 1).connected);
    assert_int_equal(r.idle, 0); /* not stopping */
    close(a.fd);
    close(b.fd);

    cl_connect(&a, &r);
    cl_hello(&a, "a", 1, NULL);
    cl_accept(&a, &r);
    ps_hub_stop(r.hub);
    assert_int_equal(cl_expect(&a, &r, PS_FRAME_ACK, &f), 0); /* closed by the receiver */
    assert_int_equal(ps_hub_session_count(r.hub), 0);
    assert_int_equal(r.idle, 1);
    close(a.fd);
    rx_stop(&r);
}

/* The REJECT code a client got (its connection then closes). */
static int cl_reject_code(client *c, rx *r)
{
    ps_frame f;
    assert_int_equal(cl_expect(c, r, PS_FRAME_REJECT, &f), 1);
    ps_reject rj;
    assert_int_equal(ps_wire_decode_reject(f.payload, f.len, &rj), PS_WIRE_OK);
    return rj.code;
}

/* A (id, session) belongs to the connection that has it: a second
 * connection is refused (BUSY, retryable) while the first is open, and the
 * owner gets a HEARTBEAT probe; once the owner is gone the next one resumes. */
static void test_second_connection_for_live_session_refused(void **state)
{
    (void)state;
    rx r;
    rx_start(&r, tmpdir, NULL);
    client a, b;
    cl_connect(&a, &r);
    cl_hello(&a, "a", 7, NULL);
    cl_accept(&a, &r);
    cl_iface(&a);
    cl_batch(&a, 1, 1);
    assert_int_equal(cl_ack(&a, &r), 1);

    cl_connect(&b, &r);
    cl_hello(&b, "a", 7, NULL);
    assert_int_equal(cl_reject_code(&b, &r), PS_REJECT_BUSY);
    ps_frame f;
    assert_int_equal(cl_expect(&a, &r, PS_FRAME_HEARTBEAT, &f), 1); /* the probe */
    /* The owner keeps streaming. */
    cl_batch(&a, 2, 1);
    assert_int_equal(cl_ack(&a, &r), 2);
    ps_hub_publish(r.hub);
    assert_metric(
        &r, "packetstreamer_receiver_rejected_connections_total{reason=\"session_in_use\"} 1");
    close(b.fd);

    close(a.fd);
    for (int i = 0; i < 2000 && sensor(&r, "a", 7).connected; i++)
        pump(&r, 1);
    cl_connect(&b, &r);
    cl_hello(&b, "a", 7, NULL);
    assert_int_equal(cl_accept(&b, &r), 2);
    ps_hub_sensor s = sensor(&r, "a", 7);
    assert_true(s.connected);
    assert_int_equal(s.packets, 2);
    close(b.fd);
    rx_stop(&r);
}

/* A batch more than 2^32 ahead of the last one written is refused and
 * changes nothing: the honest stream's next batches are still written. */
static void test_sequence_jump_refused(void **state)
{
    (void)state;
    rx r;
    rx_start(&r, tmpdir, NULL);
    client a;
    cl_connect(&a, &r);
    cl_hello(&a, "a", 7, NULL);
    cl_accept(&a, &r);
    cl_iface(&a);
    cl_batch(&a, 1, 1);
    assert_int_equal(cl_ack(&a, &r), 1);
    close(a.fd);
    for (int i = 0; i < 2000 && sensor(&r, "a", 7).connected; i++)
        pump(&r, 1);

    client h; /* a hijacker with the same (id, session) */
    cl_connect(&h, &r);
    cl_hello(&h, "a", 7, NULL);
    assert_int_equal(cl_accept(&h, &r), 1);
    cl_iface(&h);
    cl_batch(&h, 1ull << 62, 1);
    ps_frame f;
    assert_int_equal(cl_expect(&h, &r, PS_FRAME_ACK, &f), 0); /* cut, nothing acked */
    close(h.fd);
    for (int i = 0; i < 2000 && sensor(&r, "a", 7).connected; i++)
        pump(&r, 1);

    cl_connect(&a, &r);
    cl_hello(&a, "a", 7, NULL);
    assert_int_equal(cl_accept(&a, &r), 1);
    cl_iface(&a);
    cl_batch(&a, 2, 1);
    assert_int_equal(cl_ack(&a, &r), 2);
    /* A gap (batches the sensor evicted unsent) is still fine. */
    cl_batch(&a, 10, 1);
    assert_int_equal(cl_ack(&a, &r), 10);
    ps_hub_sensor s = sensor(&r, "a", 7);
    assert_int_equal(s.packets, 3);
    assert_int_equal(s.gaps, 1);
    ps_hub_publish(r.hub);
    assert_metric(&r,
                  "packetstreamer_receiver_rejected_connections_total{reason=\"sequence_jump\"} 1");
    close(a.fd);
    rx_stop(&r);
}

/* One HELLO of a new id, then gone. */
static void hello_and_leave(rx *r, const char *id, uint64_t session)
{
    client c;
    cl_connect(&c, r);
    cl_hello(&c, id, session, NULL);
    cl_accept(&c, r);
    close(c.fd);
    for (int i = 0; i < 2000 && ps_hub_session_count(r->hub) > 0; i++)
        pump(r, 1);
}

/* The registry holds at most max_sensors entries: a flood of new ids
 * pushes out entries that never wrote a batch, not one a returning sensor
 * needs to resume. */
static void test_registry_capped_keeps_resume_state(void **state)
{
    (void)state;
    rx r;
    ps_hub_opts o = {.limits = {.max_sensors = 8}};
    rx_start(&r, tmpdir, &o);
    client k;
    cl_connect(&k, &r);
    cl_hello(&k, "keep", 5, NULL);
    cl_accept(&k, &r);
    cl_iface(&k);
    cl_batch(&k, 1, 2);
    assert_int_equal(cl_ack(&k, &r), 1);
    close(k.fd);
    for (int i = 0; i < 2000 && ps_hub_session_count(r.hub) > 0; i++)
        pump(&r, 1);
    for (int i = 0; i < 40; i++) {
        char id[32];
        snprintf(id, sizeof(id), "flood-%d", i);
        hello_and_leave(&r, id, (uint64_t)i);
        assert_true(ps_hub_sensors_known(r.hub) <= 8);
    }
    ps_hub_publish(r.hub);
    assert_metric(&r, "packetstreamer_receiver_sensors_known 8");
    /* Counters of forgotten entries stay in the totals. */
    assert_metric(&r, "packetstreamer_receiver_packets_total{sensor=\"keep\"} 2");
    cl_connect(&k, &r);
    cl_hello(&k, "keep", 5, NULL);
    assert_int_equal(cl_accept(&k, &r), 1);
    close(k.fd);
    rx_stop(&r);
}

/* When every entry has a connection, a new one is refused (BUSY). */
static void test_registry_full_of_live_sessions(void **state)
{
    (void)state;
    rx r;
    ps_hub_opts o = {.limits = {.max_sensors = 2}};
    rx_start(&r, tmpdir, &o);
    client a, b, c;
    cl_connect(&a, &r);
    cl_hello(&a, "a", 1, NULL);
    cl_accept(&a, &r);
    cl_connect(&b, &r);
    cl_hello(&b, "b", 1, NULL);
    cl_accept(&b, &r);
    cl_connect(&c, &r);
    cl_hello(&c, "c", 1, NULL);
    assert_int_equal(cl_reject_code(&c, &r), PS_REJECT_BUSY);
    close(a.fd);
    close(b.fd);
    close(c.fd);
    rx_stop(&r);
}

/* Expired entries leave /api/sensors; one that wrote a batch is kept for
 * the checkpoint and resumes when its sensor returns. */
static void test_expired_sensors(void **state)
{
    (void)state;
    rx r;
    ps_hub_opts o = {.limits = {.sensor_expiry_ms = 1}};
    rx_start(&r, tmpdir, &o);
    hello_and_leave(&r, "empty", 1);
    client w;
    cl_connect(&w, &r);
    cl_hello(&w, "wrote", 2, NULL);
    cl_accept(&w, &r);
    cl_iface(&w);
    cl_batch(&w, 3, 1);
    assert_int_equal(cl_ack(&w, &r), 3);
    close(w.fd);
    for (int i = 0; i < 2000 && ps_hub_session_count(r.hub) > 0; i++)
        pump(&r, 1);
    pump(&r, 5);
    ps_hub_tick(r.hub, 0);
    find f = {.id = "wrote", .session = 2};
    ps_hub_foreach_sensor(r.hub, find_cb, &f);
    assert_false(f.found);
    assert_int_equal(ps_hub_sensors_known(r.hub), 1);
    ps_buf cp = PS_BUF_INIT;
    assert_int_equal(ps_hub_checkpoint(r.hub, &cp), 0);
    assert_true(cp.len > 0);
    ps_buf_free(&cp);
    ps_hub_publish(r.hub);
    assert_metric(&r, "packetstreamer_receiver_packets_total{sensor=\"wrote\"} 1");
    cl_connect(&w, &r);
    cl_hello(&w, "wrote", 2, NULL);
    assert_int_equal(cl_accept(&w, &r), 3);
    assert_true(sensor(&r, "wrote", 2).connected);
    close(w.fd);
    rx_stop(&r);
}

/* /metrics has per-sensor series for max_sensor_series ids; the others are
 * summed under sensor="_other". */
static void test_sensor_series_capped(void **state)
{
    (void)state;
    rx r;
    ps_hub_opts o = {.limits = {.max_sensor_series = 2}};
    rx_start(&r, tmpdir, &o);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof(id), "s%d", i);
        client c;
        cl_connect(&c, &r);
        cl_hello(&c, id, 1, NULL);
        cl_accept(&c, &r);
        cl_iface(&c);
        cl_batch(&c, 1, 3);
        assert_int_equal(cl_ack(&c, &r), 1);
        ps_hub_publish(r.hub);
        close(c.fd);
    }
    ps_hub_publish(r.hub);
    assert_metric(&r, "packetstreamer_receiver_packets_total{sensor=\"s0\"} 3");
    assert_metric(&r, "packetstreamer_receiver_packets_total{sensor=\"s1\"} 3");
    assert_metric(&r, "packetstreamer_receiver_packets_total{sensor=\"_other\"} 6");
    rx_stop(&r);
}

/* Connections still in their handshake have their own budget per address:
 * idle unauthenticated sockets beyond it are refused at once, and a sensor
 * still gets in once they are gone. */
static void test_pending_budget_per_source(void **state)
{
    (void)state;
    rx r;
    ps_hub_opts o = {.limits = {.max_pending_per_source = 2}};
    rx_start(&r, tmpdir, &o);
    client idle[3];
    for (int i = 0; i < 3; i++)
        cl_connect(&idle[i], &r);
    ps_frame f;
    assert_int_equal(cl_expect(&idle[2], &r, PS_FRAME_ACK, &f), 0); /* refused */
    ps_hub_publish(r.hub);
    assert_metric(
        &r,
        "packetstreamer_receiver_rejected_connections_total{reason=\"max_pending_per_source\"} 1");
    /* An authenticated session no longer counts. */
    cl_hello(&idle[0], "a", 1, NULL);
    cl_accept(&idle[0], &r);
    client c;
    cl_connect(&c, &r);
    cl_hello(&c, "b", 1, NULL);
    cl_accept(&c, &r);
    for (int i = 0; i < 3; i++)
        close(idle[i].fd);
    close(c.fd);
    rx_stop(&r);
}

/* While writing fails every session is paused, new ones too; one that never
 * says HELLO is still cut at the handshake deadline, or idle sockets would
 * keep their slots as long as the disk is full. Writes are made to fail
 * with RLIMIT_FSIZE (EFBIG, SIGXFSZ ignored). */
static void test_handshake_deadline_while_writes_fail(void **state)
{
    (void)state;
    rx r;
    ps_hub_opts o = {.limits = {.handshake_timeout_ms = 1}};
    rx_start(&r, tmpdir, &o);
    client a;
    cl_connect(&a, &r);
    cl_hello(&a, "a", 1, NULL);
    cl_accept(&a, &r);
    cl_iface(&a);
    cl_batch(&a, 1, 1);
    assert_int_equal(cl_ack(&a, &r), 1);

    struct rlimit old, tiny = {.rlim_cur = 1, .rlim_max = RLIM_INFINITY};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    tiny.rlim_max = old.rlim_max;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
    cl_batch(&a, 2, 16);
    for (int i = 0; i < 2000 && !ps_hub_write_failing(r.hub); i++)
        pump(&r, 1);
    assert_true(ps_hub_write_failing(r.hub));

    client c;
    cl_connect(&c, &r); /* starts paused, never says HELLO */
    pump(&r, 5);
    ps_hub_tick(r.hub, 0);
    ps_frame f;
    assert_int_equal(cl_expect(&c, &r, PS_FRAME_ACK, &f), 0); /* cut */
    ps_hub_publish(r.hub);
    assert_metric(
        &r, "packetstreamer_receiver_rejected_connections_total{reason=\"handshake_timeout\"} 1");

    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    ps_hub_tick(r.hub, 0); /* the flush works again */
    assert_false(ps_hub_write_failing(r.hub));
    assert_int_equal(cl_ack(&a, &r), 2);
    close(c.fd);
    close(a.fd);
    rx_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_after_recovered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejections_by_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_connection_for_live_session_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sequence_jump_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_capped_keeps_resume_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_full_of_live_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_sensors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sensor_series_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_budget_per_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_deadline_while_writes_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interfaces_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_interfaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_drop_total, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
