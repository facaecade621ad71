/*
 * receiver: process wiring and lifecycle.
 *
 * A packet's path on this side: listener accepts -> session decodes frames
 * and inflates batches -> writer appends records to the current file ->
 * session acknowledges after the flush. A 1-second timer drives time-based
 * rotation. SIGTERM/SIGINT stop accepting, acknowledge what is written, close
 * sessions, then close the files.
 */
#include "receiver.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "core/log.h"
#include "core/wire.h"
#include "api.h"
#include "listener.h"
#include "session.h"
#include "writer.h"

#define PS_RECEIVER_CLOSE_DEADLINE_MS 5000

typedef struct receiver {
    const ps_config *cfg;
    uv_loop_t loop;
    ps_hub hub;
    ps_listener *listener;
    uv_timer_t tick;
    uv_timer_t deadline;
    uv_signal_t sigint, sigterm;
    ps_api *api; /* metrics, readiness, HTTP */
    int stopping;
} receiver;

static uint64_t now_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_file_closed(void *ud, const char *path, uint64_t packets, uint64_t bytes)
{
    (void)ud;
    ps_info("receiver", "wrote %s (%" PRIu64 " packets, %" PRIu64 " bytes)", path, packets, bytes);
}

static int on_checkpoint(void *ud, ps_buf *out)
{
    receiver *r = ud;
    return ps_hub_checkpoint(&r->hub, out);
}

static void on_recovered(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    receiver *r = ud;
    ps_hub_recovered(&r->hub, id, id_len, session, seq);
}

/* The server context, and the startup warnings of docs/security.md. */
static int setup_tls(ps_hub *hub, const ps_config *cfg)
{
    if (!cfg->tls_enable) {
        if (cfg->auth_enable)
            ps_warn("receiver", "auth.enable without TLS: the token crosses the network in "
                                "plaintext; enable tls");
        return 0;
    }
    const char *ca_file = cfg->tls_client_ca_file ? cfg->tls_client_ca_file : cfg->tls_ca_file;
    ps_tls_opts o = {.server = 1,
                     .cert_file = cfg->tls_cert_file,
                     .cert_pem = cfg->tls_cert_pem,
                     .key_file = cfg->tls_key_file,
                     .key_pem = cfg->tls_key_pem,
                     .ca_file = ca_file,
                     .ca_pem = cfg->tls_client_ca_file ? NULL : cfg->tls_ca_pem,
                     .require_client_cert = cfg->tls_require_client_cert};
    char err[512];
    if (ps_tls_new(&hub->tls, &o, err, sizeof(err)) != 0) {
        ps_error("receiver", "TLS: %s", err);
        return -1;
    }
    if ((cfg->tls_allowed_ids_count > 0 || cfg->tls_require_id_match) && !ca_file &&
        !cfg->tls_ca_pem)
        ps_warn("receiver", "tls.allowedIdentities / tls.requireIdMatch need client "
                            "certificates: set tls.clientCaFile (or --tls-ca); every sensor "
                            "will be refused");
    if (cfg->tls_insecure_skip_verify)
        ps_warn("receiver", "tls.insecureSkipVerify has no effect on the receiver");
    return 0;
}

static void on_conn(void *ud, uv_tcp_t *tcp, const char *peer)
{
    receiver *r = ud;
    ps_session_start(&r->hub, tcp, peer);
}

static void on_tick(uv_timer_t *t)
{
    receiver *r = t->data;
    ps_hub_tick(&r->hub);
    if (ps_writer_tick(r->hub.writer, now_realtime_ns()) != 0 && !r->hub.write_failing)
        ps_error("receiver", "rotating capture files failed: %s", strerror(errno));
    ps_hub_retry(&r->hub);
}

static void on_hub_idle(ps_hub *hub)
{
    receiver *r = (receiver *)((char *)hub - offsetof(receiver, hub));
    uv_timer_stop(&r->tick);
    uv_timer_stop(&r->deadline);
    uv_signal_stop(&r->sigint);
    uv_signal_stop(&r->sigterm);
    ps_api_close(r->api);
}

static void on_deadline(uv_timer_t *t)
{
    receiver *r = t->data;
    ps_warn("receiver", "%u connections did not close in time: cutting them", r->hub.n_sessions);
    ps_hub_abort(&r->hub);
}

static void on_signal(uv_signal_t *h, int signum)
{
    receiver *r = h->data;
    if (r->stopping)
        return;
    r->stopping = 1;
    ps_info("receiver", "received %s: closing connections and files",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    ps_listener_close(r->listener);
    r->listener = NULL;
    ps_api_set_listening(r->api, 0);
    /* A sensor that stops reading must not hold the shutdown hostage. */
    uv_timer_start(&r->deadline, on_deadline, PS_RECEIVER_CLOSE_DEADLINE_MS, 0);
    ps_hub_stop(&r->hub);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int ps_receiver_run(const ps_config *cfg)
{
    receiver r;
    char err[512];
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    if (uv_loop_init(&r.loop) != 0) {
        ps_error("receiver", "cannot initialise the event loop");
        return 1;
    }
    char app[64];
    snprintf(app, sizeof(app), "packetstreamer %s", PS_VERSION);
    ps_writer_opts wo = {.path = cfg->file_path,
                         .format = cfg->format,
                         .rotate_bytes = cfg->rotate_bytes,
                         .rotate_seconds = cfg->rotate_seconds,
                         .max_files = cfg->max_files,
                         .max_total_bytes = cfg->max_total_bytes,
                         .per_sensor = cfg->per_sensor,
                         .app = app,
                         .checkpoint = on_checkpoint,
                         .on_recovered = on_recovered,
                         .mode = ps_config_file_mode(cfg),
                         .on_file_closed = on_file_closed,
                         .ud = &r};
    ps_writer *w = NULL;
    if (ps_writer_open(&w, &wo, err, sizeof(err)) != 0) {
        ps_error("receiver", "%s", err);
        uv_loop_close(&r.loop);
        return 1;
    }
    r.hub.loop = &r.loop;
    r.hub.writer = w;
    r.hub.max_frame = PS_WIRE_MAX_FRAME_DEFAULT;
    r.hub.max_batch_raw = PS_WIRE_MAX_BATCH_RAW_DEFAULT;
    r.hub.token = cfg->auth_enable ? cfg->auth_key : NULL;
    r.hub.on_idle = on_hub_idle;
    r.hub.allowed_ids = cfg->tls_allowed_ids;
    r.hub.n_allowed_ids = cfg->tls_allowed_ids_count;
    r.hub.require_id_match = cfg->tls_require_id_match;
    r.hub.limits.handshake_timeout_ms = (uint64_t)cfg->handshake_timeout_sec * 1000;
    r.hub.limits.idle_timeout_ms = (uint64_t)cfg->idle_timeout_sec * 1000;
    r.hub.limits.max_connections = cfg->max_connections;
    r.hub.limits.max_per_source = cfg->max_connections_per_source;
    r.hub.metrics = ps_metrics_new();
    if (!r.hub.metrics || ps_hub_init_metrics(&r.hub) != 0) {
        ps_error("receiver", "out of memory");
        ps_metrics_free(r.hub.metrics);
        ps_writer_close(w);
        uv_loop_close(&r.loop);
        return 1;
    }
    if (setup_tls(&r.hub, cfg) != 0) {
        ps_metrics_free(r.hub.metrics);
        ps_writer_close(w);
        uv_loop_close(&r.loop);
        return 1;
    }
    if (ps_listener_open(&r.listener, &r.loop, cfg->input_address, cfg->input_port, on_conn, &r,
                         err, sizeof(err)) != 0) {
        ps_error("receiver", "%s", err);
        ps_writer_close(w);
        ps_metrics_free(r.hub.metrics);
        ps_tls_free(r.hub.tls);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        uv_loop_close(&r.loop);
        return 1;
    }
    uv_timer_init(&r.loop, &r.tick);
    r.tick.data = &r;
    uv_timer_start(&r.tick, on_tick, 1000, 1000);
    uv_timer_init(&r.loop, &r.deadline);
    r.deadline.data = &r;
    uv_signal_init(&r.loop, &r.sigint);
    uv_signal_init(&r.loop, &r.sigterm);
    r.sigint.data = r.sigterm.data = &r;
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    ps_info("receiver", "listening on %s (%s), writing %s (%s)", ps_listener_addr(r.listener),
            r.hub.tls ? (cfg->tls_ca_file || cfg->tls_ca_pem || cfg->tls_client_ca_file
                             ? "TLS, client certificates verified"
                             : "TLS")
                      : "plaintext",
            cfg->file_path, ps_format_name(cfg->format));
    r.api = ps_api_start(&r.loop, &r.hub, cfg, err, sizeof(err));
    int code = 0;
    if (!r.api) {
        /* An HTTP address that cannot be bound fails the start: a receiver
         * without its probes would only be found by a failing readiness
         * probe. Nothing was accepted yet, so the hub goes idle at once. */
        ps_error("receiver", "%s", err);
        code = 1;
        r.stopping = 1;
        ps_listener_close(r.listener);
        r.listener = NULL;
        ps_hub_stop(&r.hub);
    }

    uv_run(&r.loop, UV_RUN_DEFAULT);

    if (ps_writer_close(w) != 0) {
        ps_error("receiver", "closing capture files failed: %s", strerror(errno));
        code = 1;
    }
    char kv[1024];
    ps_hub_counters_kv(&r.hub, kv, sizeof(kv));
    ps_info("receiver",
            "stopped: %" PRIu64 " packets (%" PRIu64 " bytes) written from %" PRIu64
            " connections, %" PRIu64 " duplicate batches dropped, %" PRIu64 " rejected, %" PRIu64
            " protocol errors;%s",
            r.hub.counters.packets, r.hub.counters.bytes, r.hub.counters.connections,
            r.hub.counters.duplicates, r.hub.counters.rejected, r.hub.counters.decode_errors, kv);
    uv_walk(&r.loop, close_walk, NULL);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    ps_api_free(r.api); /* joins the HTTP threads before what they read is freed */
    ps_hub_free(&r.hub);
    ps_metrics_free(r.hub.metrics);
    ps_tls_free(r.hub.tls);
    return code;
}
