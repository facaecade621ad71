/*
 * sensor: the sensor's main loop, live or offline.
 *
 * Live (the default): ifaces.c opens every selected interface as it appears
 * and feeds the batcher from the capture rings; the sensor runs until SIGTERM
 * or SIGINT, then closes the interfaces (their final counters go to the
 * receiver), seals the last batch and waits, for at most
 * sensor.shutdownDeadlineSec, until the receiver has acknowledged everything.
 *
 * Offline (--read-file):
 * A packet's path: capture (libpcap file) -> batcher (record encoding, seal,
 * compression on the worker pool) -> uplink (spool, ordered writes, ACKs).
 * Reading runs from an idle handle a slice at a time, so ACKs and writes are
 * served between slices, and stops while the spool is full: a file can wait,
 * so an offline sensor never drops. At the end of the file the last batch is
 * sealed and the sensor exits once the receiver has acknowledged everything.
 */
#include "sensor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "capture.h"
#include "core/http.h"
#include "core/log.h"
#include "core/metrics.h"
#include "ifaces.h"
#include "observe.h"
#include "privs.h"
#include "uplink.h"

#define PS_SENSOR_READ_SLICE 2048
#define PS_SENSOR_IFACE_FILE 0
#define PS_SENSOR_PUBLISH_MS 250 /* metrics and readiness refresh */

typedef struct sensor {
    const ps_config *cfg;
    uv_loop_t loop;
    uv_idle_t reader;
    uv_timer_t gather;
    uv_timer_t pace;     /* sensor.readPacketsPerSec */
    uv_timer_t deadline; /* sensor.shutdownDeadlineSec after SIGTERM */
    int draining;
    uint64_t pace_start_ms;
    uint64_t read_count;
    uv_signal_t sigint, sigterm;
    ps_capture_file *file;
    ps_ifaces *ifaces; /* live capture */
    ps_batcher *batcher;
    ps_uplink *uplink;
    ps_metrics *metrics; /* the process registry, exported by the HTTP server */
    ps_sensor_obs *obs;
    ps_http *http;
    uv_timer_t publish;
    int reading;
    int input_done;
    int stopping;
    int exit_code;
    uint64_t started_ns;
    char err[512];
} sensor;

static void sensor_stop(sensor *s, int code);
static void on_pace(uv_timer_t *t);

static void on_read_slice(uv_idle_t *h)
{
    sensor *s = h->data;
    if (ps_uplink_spool_full(s->uplink)) {
        uv_idle_stop(h);
        s->reading = 0;
        return;
    }
    int max = PS_SENSOR_READ_SLICE;
    if (s->cfg->read_pps) {
        /* Replay pace: what the rate allows so far, re-checked every 5 ms. */
        uint64_t allowed = (uv_now(&s->loop) - s->pace_start_ms) * s->cfg->read_pps / 1000 + 1;
        if (s->read_count >= allowed) {
            uv_idle_stop(h);
            s->reading = 0;
            uv_timer_start(&s->pace, on_pace, 5, 0);
            return;
        }
        if (allowed - s->read_count < (uint64_t)max)
            max = (int)(allowed - s->read_count);
    }
    int n = ps_capture_file_read(s->file, s->batcher, PS_SENSOR_IFACE_FILE, max, s->err,
                                 sizeof(s->err));
    if (n > 0) {
        s->read_count += (uint64_t)n;
        return;
    }
    uv_idle_stop(h);
    s->reading = 0;
    s->input_done = 1;
    ps_batcher_flush(s->batcher);
    if (n < 0) {
        ps_error("sensor", "%s: %s", s->cfg->read_file, s->err);
        sensor_stop(s, 1);
        return;
    }
    ps_debug("sensor", "end of %s", s->cfg->read_file);
    if (ps_uplink_drained(s->uplink) && ps_batcher_busy(s->batcher) == 0)
        sensor_stop(s, 0);
}

static void on_pace(uv_timer_t *t)
{
    sensor *s = t->data;
    if (!s->reading && !s->input_done && !s->stopping && !ps_uplink_spool_full(s->uplink)) {
        s->reading = 1;
        uv_idle_start(&s->reader, on_read_slice);
    }
}

static void on_acked(void *ud)
{
    sensor *s = ud;
    ps_ifaces_spool_room(s->ifaces);
    if (s->input_done) {
        if (ps_uplink_drained(s->uplink) && ps_batcher_busy(s->batcher) == 0 && !s->stopping)
            sensor_stop(s, 0);
        return;
    }
    if (s->file && !s->reading && !s->stopping && !ps_uplink_spool_full(s->uplink)) {
        s->reading = 1;
        uv_idle_start(&s->reader, on_read_slice);
    }
}

static void on_fatal(void *ud, const char *msg)
{
    sensor *s = ud;
    ps_error("sensor", "%s", msg);
    sensor_stop(s, 1);
}

static void on_gather(uv_timer_t *t)
{
    sensor *s = t->data;
    ps_batcher_tick(s->batcher);
}

static void on_deadline(uv_timer_t *t)
{
    sensor *s = t->data;
    ps_uplink_totals ut;
    ps_batcher_totals bt;
    ps_uplink_get_totals(s->uplink, &ut);
    ps_batcher_get_totals(s->batcher, &bt);
    ps_error("sensor",
             "shutdown deadline (%" PRIu32 " s) passed: %" PRIu64
             " packets not delivered to %s (reason shutdown_deadline)",
             s->cfg->shutdown_deadline_sec, bt.packets - ut.acked_packets - ut.evicted_packets,
             ps_uplink_target(s->uplink));
    sensor_stop(s, 1);
}

/* Whether the inputs are delivering packets: the file is open, or live
 * capture is open on at least one interface. */
static int sensor_capturing(const sensor *s)
{
    if (s->file)
        return 1;
    if (!s->ifaces)
        return 0;
    ps_ifaces_totals t;
    ps_ifaces_get_totals(s->ifaces, &t);
    return t.open_now > 0;
}

/* Loop timer: copies counters into the registry and readiness into the
 * HTTP server (see observe.h); never on the packet path. */
static void on_publish(uv_timer_t *t)
{
    sensor *s = t->data;
    ps_sensor_sample smp = {.connected = ps_uplink_connected(s->uplink),
                            .dropped_oom = s->file ? ps_capture_file_dropped(s->file) : 0};
    ps_batcher_get_totals(s->batcher, &smp.batcher);
    ps_uplink_get_totals(s->uplink, &smp.uplink);
    ps_ifaces_recorder_totals(s->ifaces, &smp.recorder);
    ps_sensor_obs_publish(s->obs, &smp);
    if (!s->http)
        return;
    char why[400];
    if (!smp.connected)
        snprintf(why, sizeof(why), "not connected to receiver %s", ps_uplink_target(s->uplink));
    else if (!sensor_capturing(s))
        snprintf(why, sizeof(why), "not capturing on any interface");
    else
        why[0] = '\0';
    ps_http_set_ready(s->http, why[0] == '\0', why);
}

static void sensor_http_start(sensor *s)
{
    s->obs = s->metrics ? ps_sensor_obs_new(s->metrics) : NULL;
    if (!s->obs) {
        ps_warn("sensor", "out of memory for metrics: running without them");
        return;
    }
    uv_timer_init(&s->loop, &s->publish);
    s->publish.data = s;
    uv_timer_start(&s->publish, on_publish, 0, PS_SENSOR_PUBLISH_MS);
    if (!s->cfg->http_enable)
        return;
    char err[512];
    ps_http_opts ho = {
        .listen = s->cfg->http_listen, .token = s->cfg->http_token, .metrics = s->metrics};
    ps_http_opts_from_config(&ho, s->cfg);
    /* A sensor without its probes is restarted by its readiness probe
     * forever; refusing to start says why at once. */
    if (ps_http_open(&s->http, &ho, err, sizeof(err)) != 0) {
        ps_error("sensor", "%s", err);
        s->exit_code = 1;
    } else {
        ps_info("sensor", "HTTP (health, metrics) on %s", ps_http_addr(s->http));
    }
}

static void on_resolved(void *ud, const struct addrinfo *res)
{
    sensor *s = ud;
    ps_ifaces_receiver_resolved(s->ifaces, res);
}

/* Capture jobs (v2): live capture only; a JOB_START before the interfaces
 * are open (none can arrive: the uplink starts after them) is ignored. */
static void on_job_start(void *ud, const ps_job_start *j)
{
    sensor *s = ud;
    if (s->ifaces && !s->stopping)
        ps_ifaces_job_start(s->ifaces, j);
}

static void on_job_stop(void *ud, uint64_t job)
{
    sensor *s = ud;
    if (s->ifaces)
        ps_ifaces_job_stop(s->ifaces, job);
}

/* Live: every interface is closed and its last packets are in the batcher. */
static void on_capture_stopped(void *ud)
{
    sensor *s = ud;
    if (s->stopping)
        return;
    ps_batcher_flush(s->batcher);
    s->input_done = 1;
    if (ps_uplink_drained(s->uplink) && ps_batcher_busy(s->batcher) == 0)
        sensor_stop(s, 0);
}

/* SIGTERM/SIGINT: stop reading (live: stop capturing, each interface once
 * its last ring block is in) and deliver what the spool holds, within
 * sensor.shutdownDeadlineSec (below Kubernetes' 30 s grace period); a
 * second signal stops at once. */
static void on_signal(uv_signal_t *h, int signum)
{
    sensor *s = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (s->draining || s->cfg->shutdown_deadline_sec == 0) {
        ps_warn("sensor", "received %s: stopping now", name);
        on_deadline(&s->deadline);
        return;
    }
    s->draining = 1;
    uv_timer_start(&s->deadline, on_deadline, (uint64_t)s->cfg->shutdown_deadline_sec * 1000, 0);
    if (s->ifaces) {
        ps_info("sensor", "received %s: stopping capture (deadline %" PRIu32 " s)", name,
                s->cfg->shutdown_deadline_sec);
        ps_ifaces_stop(s->ifaces, on_capture_stopped);
        return;
    }
    uv_idle_stop(&s->reader);
    uv_timer_stop(&s->pace);
    s->reading = 0;
    s->input_done = 1;
    ps_batcher_flush(s->batcher);
    ps_uplink_totals ut;
    ps_batcher_totals bt;
    ps_uplink_get_totals(s->uplink, &ut);
    ps_batcher_get_totals(s->batcher, &bt);
    ps_warn("sensor",
            "received %s: delivering %" PRIu64 " spooled packets (deadline %" PRIu32 " s)", name,
            bt.packets - ut.acked_packets - ut.evicted_packets, s->cfg->shutdown_deadline_sec);
    if (ps_uplink_drained(s->uplink) && ps_batcher_busy(s->batcher) == 0)
        sensor_stop(s, 0);
}

static void on_uplink_closed(void *ud)
{
    (void)ud;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void sensor_stop(sensor *s, int code)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    s->exit_code = code;
    ps_ifaces_stop(s->ifaces, NULL);
    uv_idle_stop(&s->reader);
    uv_timer_stop(&s->gather);
    uv_timer_stop(&s->pace);
    uv_timer_stop(&s->deadline);
    if (s->obs)
        uv_timer_stop(&s->publish);
    uv_signal_stop(&s->sigint);
    uv_signal_stop(&s->sigterm);
    ps_uplink_stop(s->uplink, on_uplink_closed);
}

static void log_summary(sensor *s)
{
    ps_batcher_totals bt;
    ps_uplink_totals ut;
    ps_batcher_get_totals(s->batcher, &bt);
    ps_uplink_get_totals(s->uplink, &ut);
    double secs = (double)(uv_hrtime() - s->started_ns) / 1e9;
    if (s->ifaces) {
        ps_ifaces_totals it;
        ps_ifaces_get_totals(s->ifaces, &it);
        ps_log(s->exit_code == 0 ? PS_LOG_INFO : PS_LOG_ERROR, "sensor",
               "capture: interfaces_opened=%" PRIu32 " captured=%" PRIu64 " bytes=%" PRIu64
               " kernel_drops=%" PRIu64 " if_drops=%" PRIu64 " sensor_drops=%" PRIu64
               " spool_waits=%" PRIu64,
               it.opened_total, it.packets, it.bytes, it.kernel_drops, it.if_drops, it.sensor_drops,
               it.spool_waits);
    }
    ps_log(s->exit_code == 0 ? PS_LOG_INFO : PS_LOG_ERROR, "sensor",
           "%s: packets=%" PRIu64 " bytes=%" PRIu64 " batches=%" PRIu64 " acked=%" PRIu64
           " unacked=%" PRIu64 " evicted=%" PRIu64 " dropped=%" PRIu64 " raw_bytes=%" PRIu64
           " wire_bytes=%" PRIu64 " stored_batches=%" PRIu64 " reconnects=%" PRIu64
           " seconds=%.3f receiver=%s",
           s->exit_code == 0 ? "done" : "stopped", bt.packets, bt.bytes, bt.batches,
           ut.acked_packets, bt.packets - ut.acked_packets - ut.evicted_packets, ut.evicted_packets,
           s->file ? ps_capture_file_dropped(s->file) : 0, bt.raw_bytes, bt.wire_bytes,
           bt.stored_batches, ut.reconnects, secs, ps_uplink_target(s->uplink));
}

/* The client TLS context (NULL without tls.enable) and the startup warnings
 * of docs/security.md. */
static int sensor_tls(const ps_config *cfg, ps_tls **out)
{
    *out = NULL;
    if (!cfg->tls_enable) {
        if (cfg->auth_enable)
            ps_warn("sensor", "auth.enable without TLS: the token crosses the network in "
                              "plaintext; enable tls");
        return 0;
    }
    if (cfg->tls_insecure_skip_verify)
        ps_warn("sensor", "tls.insecureSkipVerify is set: the receiver's certificate is NOT "
                          "verified; anyone on the path can read and change the stream");
    ps_tls_opts o = {.server = 0,
                     .cert_file = cfg->tls_cert_file,
                     .cert_pem = cfg->tls_cert_pem,
                     .key_file = cfg->tls_key_file,
                     .key_pem = cfg->tls_key_pem,
                     .ca_file = cfg->tls_ca_file,
                     .ca_pem = cfg->tls_ca_pem,
                     .insecure_skip_verify = cfg->tls_insecure_skip_verify};
    char err[512];
    if (ps_tls_new(out, &o, err, sizeof(err)) != 0) {
        ps_error("sensor", "TLS: %s", err);
        return -1;
    }
    return 0;
}

int ps_sensor_run(const ps_config *cfg)
{
    sensor s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.started_ns = uv_hrtime();
    /* Identity and capabilities are settled before anything is read from
     * the network, while the process has one thread (privs.h). */
    if (ps_privs_start(cfg->privileges_user, cfg->read_file == NULL, s.err, sizeof(s.err)) != 0) {
        ps_error("sensor", "%s", s.err);
        return 1;
    }
    ps_tls *tls = NULL;
    if (sensor_tls(cfg, &tls) != 0)
        return 1;
    if (cfg->read_file &&
        ps_capture_file_open(&s.file, cfg->read_file, cfg->filter, s.err, sizeof(s.err)) != 0) {
        ps_error("sensor", "%s", s.err);
        ps_tls_free(tls);
        return 1;
    }
    if (uv_loop_init(&s.loop) != 0) {
        ps_error("sensor", "cannot initialise the event loop");
        ps_capture_file_free(s.file);
        ps_tls_free(tls);
        return 1;
    }
    /* The process registry; the HTTP server exports it. */
    s.metrics = ps_metrics_new();
    uint64_t wait_ms = cfg->gather_max_wait_ms ? cfg->gather_max_wait_ms
                                               : (uint64_t)cfg->gather_max_wait_sec * 1000;
    ps_batcher_opts bo = {.codec = cfg->codec,
                          .level = cfg->zlib_level,
                          .block_bytes = cfg->compress_block_size_kb * 1024u,
                          .wait_ms = wait_ms,
                          .pool_bytes = (size_t)cfg->spool_size_mb << 20,
                          .store_when_busy = cfg->read_file == NULL,
                          .on_sealed = ps_uplink_on_sealed,
                          .on_ready = ps_uplink_on_ready,
                          .ud = NULL};
    s.batcher = ps_batcher_new(&s.loop, &bo);
    ps_uplink_opts uo = {.host = cfg->server_address,
                         .port = cfg->server_port,
                         .sensor_id = cfg->sensor_id,
                         .token = cfg->auth_enable ? cfg->auth_key : NULL,
                         .codec = cfg->codec,
                         .max_batch_raw = bo.block_bytes + PS_WIRE_REC_HDR_LEN + PS_WIRE_MAX_CAPLEN,
                         .spool_bytes = (uint64_t)cfg->spool_size_mb << 20,
                         .connect_timeout_ms = (uint64_t)cfg->connect_timeout_sec * 1000,
                         .tls = tls,
                         .server_name = cfg->tls_server_name,
                         .heartbeat_ms = (uint64_t)cfg->idle_timeout_sec * 1000 / 3,
                         .on_acked = on_acked,
                         .on_fatal = on_fatal,
                         .on_resolved = cfg->read_file ? NULL : on_resolved,
                         .on_job_start = cfg->read_file ? NULL : on_job_start,
                         .on_job_stop = cfg->read_file ? NULL : on_job_stop,
                         .ud = &s};
    s.uplink = s.batcher ? ps_uplink_new(&s.loop, s.batcher, &uo) : NULL;
    if (!s.batcher || !s.uplink || !s.metrics) {
        ps_error("sensor", "out of memory");
        ps_batcher_free(s.batcher);
        ps_metrics_free(s.metrics);
        uv_loop_close(&s.loop);
        ps_capture_file_free(s.file);
        ps_tls_free(tls);
        return 1;
    }
    /* The batcher reports to the uplink: bind it now that both exist. */
    ps_batcher_set_ud(s.batcher, s.uplink);
    const char *fname = s.file ? ps_capture_file_name(s.file) : NULL;
    if (s.file &&
        ps_uplink_add_iface(s.uplink, PS_SENSOR_IFACE_FILE, ps_capture_file_linktype(s.file),
                            ps_capture_file_snaplen(s.file), fname, cfg->read_file) != 0) {
        ps_error("sensor", "out of memory");
        s.exit_code = 1;
    }
    if (!s.file) {
        ps_ifaces_opts io = {.loop = &s.loop,
                             .cfg = cfg,
                             .batcher = s.batcher,
                             .uplink = s.uplink,
                             .metrics = s.metrics,
                             .on_fatal = on_fatal,
                             .ud = &s};
        if (ps_ifaces_open(&s.ifaces, &io, s.err, sizeof(s.err)) != 0) {
            ps_error("sensor", "%s", s.err);
            s.exit_code = 1;
        }
    }
    uv_idle_init(&s.loop, &s.reader);
    s.reader.data = &s;
    uv_timer_init(&s.loop, &s.gather);
    s.gather.data = &s;
    uv_timer_init(&s.loop, &s.pace);
    s.pace.data = &s;
    uv_timer_init(&s.loop, &s.deadline);
    s.deadline.data = &s;
    s.pace_start_ms = uv_now(&s.loop);
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    sensor_http_start(&s);
    uint64_t tick = wait_ms / 4 ? wait_ms / 4 : 1;
    uv_timer_start(&s.gather, on_gather, tick, tick);

    if (s.file)
        ps_info("sensor", "streaming %s as %s/%s to %s (codec %s)", cfg->read_file, cfg->sensor_id,
                fname, ps_uplink_target(s.uplink), ps_codec_name(cfg->codec));
    else
        ps_info("sensor", "live capture as %s to %s (codec %s)", cfg->sensor_id,
                ps_uplink_target(s.uplink), ps_codec_name(cfg->codec));
    ps_uplink_start(s.uplink);
    if (s.file) {
        s.reading = 1;
        uv_idle_start(&s.reader, on_read_slice);
    }
    if (s.exit_code != 0)
        sensor_stop(&s, 1);

    uv_run(&s.loop, UV_RUN_DEFAULT);
    log_summary(&s);

    /* Compression jobs finish before the loop can end; close what is left. */
    uv_walk(&s.loop, close_walk, NULL);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    ps_http_free(s.http); /* its threads read the registry: stop them first */
    ps_ifaces_free(s.ifaces);
    ps_sensor_obs_free(s.obs);
    ps_metrics_free(s.metrics);
    ps_uplink_free(s.uplink);
    ps_batcher_free(s.batcher);
    ps_capture_file_free(s.file);
    ps_tls_free(tls);
    return s.exit_code;
}
