/*
 * receiver: process wiring and lifecycle.
 *
 * A packet's path on this side: listener accepts -> hub (limits) hands the
 * connection to a session, which decodes frames and inflates batches ->
 * writer appends records to the current file (and the live feed copies
 * them) -> the hub flushes, and each session acknowledges what is written.
 * A 1-second timer drives deadlines and time-based rotation. SIGTERM/SIGINT
 * stop accepting, acknowledge what is written, close sessions, then close
 * the files.
 */
#include "receiver.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "api.h"
#include "core/log.h"
#include "hub.h"
#include "index.h"
#include "jobs.h"
#include "listener.h"
#include "livefeed.h"
#include "upload.h"
#include "writer.h"

#define PS_RECEIVER_CLOSE_DEADLINE_MS 5000

/* A (sensor, session, last sequence) the writer recovered at open, before
 * the hub (which needs the open writer) exists. */
typedef struct recovered {
    struct recovered *next;
    uint64_t session, seq;
    size_t id_len;
    char id[];
} recovered;

typedef struct receiver {
    const ps_config *cfg;
    uv_loop_t loop;
    ps_writer *writer;
    ps_jobs *jobs; /* capture jobs, NULL with stdout output */
    ps_metrics *metrics;
    ps_livefeed *livefeed;
    ps_tls *tls;
    ps_hub *hub;
    recovered *recovered, **recovered_tail;
    ps_listener *listener;
    uv_timer_t tick;
    uv_timer_t deadline;
    uv_signal_t sigint, sigterm;
    ps_api *api;             /* readiness, snapshots, HTTP */
    ps_index_builder *index; /* extraction indexes of completed files, or NULL */
    ps_upload *upload;       /* output.s3: completed files to S3, NULL when off */
    ps_s3_opts s3o;          /* output.s3's bucket, for the upload and the HTTP side */
    char s3_prefix[1024];    /* output.s3.prefix with {receiver} expanded */
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
    receiver *r = ud;
    ps_info("receiver", "wrote %s (%" PRIu64 " packets, %" PRIu64 " bytes)", path, packets, bytes);
    ps_index_builder_add(r->index, path);
    if (r->upload)
        ps_upload_file_closed(r->upload, path);
}

/* output.s3.prefix with each "{receiver}" replaced by this receiver's name
 * (tier.name, else the host name), so receivers sharing a bucket do not
 * write the same keys. -1 if it does not fit. */
static int expand_prefix(const ps_config *cfg, char *out, size_t outlen)
{
    char self[256] = "receiver";
    if (cfg->tier_name)
        snprintf(self, sizeof(self), "%s", cfg->tier_name);
    else if (gethostname(self, sizeof(self) - 1) != 0)
        snprintf(self, sizeof(self), "receiver");
    const char *p = cfg->s3_prefix ? cfg->s3_prefix : "";
    size_t n = 0;
    while (*p) {
        const char *v = p;
        size_t len = 1;
        if (strncmp(p, "{receiver}", 10) == 0) {
            v = self;
            len = strlen(self);
            p += 10;
        } else {
            p++;
        }
        if (n + len >= outlen)
            return -1;
        memcpy(out + n, v, len);
        n += len;
    }
    out[n] = '\0';
    return 0;
}

/* output.s3: the upload worker, over the writer's directory. */
static int setup_upload(receiver *r, const ps_config *cfg)
{
    if (!cfg->s3_enabled)
        return 0;
    if (expand_prefix(cfg, r->s3_prefix, sizeof(r->s3_prefix)) != 0) {
        ps_error("receiver", "output.s3.prefix is too long once {receiver} is expanded");
        return -1;
    }
    if (cfg->tier_peers && !(cfg->s3_prefix && strstr(cfg->s3_prefix, "{receiver}")))
        ps_warn("receiver", "output.s3.prefix has no {receiver}: the receivers of the tier may "
                            "upload files of the same name to the same keys");
    ps_upload_opts o = {.dir = ps_writer_dir(r->writer),
                        .prefix = ps_writer_prefix(r->writer),
                        .key_prefix = r->s3_prefix,
                        .s3 = {.endpoint = cfg->s3_endpoint,
                               .region = cfg->s3_region,
                               .bucket = cfg->s3_bucket,
                               .path_style = cfg->s3_path_style,
                               .storage_class = cfg->s3_storage_class,
                               .sse = cfg->s3_sse,
                               .sse_kms_key_id = cfg->s3_sse_kms_key_id,
                               .sts_endpoint = cfg->s3_sts_endpoint,
                               .ca_file = cfg->s3_ca_file,
                               .part_size = cfg->s3_part_size_bytes},
                        .delete_local = cfg->s3_delete_local,
                        .retry_max_sec = cfg->s3_retry_max_sec,
                        .metrics = r->metrics};
    char err[1024];
    r->s3o = o.s3;
    if (!o.dir || !o.prefix) {
        ps_error("receiver", "output.s3 needs output.file.path to be a directory");
        return -1;
    }
    if (ps_upload_open(&r->upload, &o, err, sizeof(err)) != 0) {
        ps_error("receiver", "output.s3: %s", err);
        return -1;
    }
    ps_info("receiver", "uploading completed files to s3://%s/%s%s", cfg->s3_bucket, r->s3_prefix,
            cfg->s3_delete_local ? " (then deleting them)" : "");
    return 0;
}

static int on_checkpoint(void *ud, ps_buf *out)
{
    receiver *r = ud;
    return r->hub ? ps_hub_checkpoint(r->hub, out) : 0;
}

static void on_recovered(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    receiver *r = ud;
    if (r->hub) {
        ps_hub_recovered(r->hub, id, id_len, session, seq);
        return;
    }
    recovered *e = malloc(sizeof(*e) + id_len);
    if (!e) {
        ps_error("receiver", "out of memory recovering sensor state");
        return;
    }
    e->next = NULL;
    e->session = session;
    e->seq = seq;
    e->id_len = id_len;
    memcpy(e->id, id, id_len);
    *r->recovered_tail = e;
    r->recovered_tail = &e->next;
}

/* Hands what the writer recovered to the hub, in the writer's order. */
static void replay_recovered(receiver *r)
{
    while (r->recovered) {
        recovered *e = r->recovered;
        r->recovered = e->next;
        if (r->hub)
            ps_hub_recovered(r->hub, e->id, e->id_len, e->session, e->seq);
        free(e);
    }
    r->recovered_tail = &r->recovered;
}

/* The server context, and the startup warnings of docs/security.md. */
static int setup_tls(ps_tls **tls, const ps_config *cfg)
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
    if (ps_tls_new(tls, &o, err, sizeof(err)) != 0) {
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
    ps_hub_accept(r->hub, tcp, peer);
}

static void on_tick(uv_timer_t *t)
{
    receiver *r = t->data;
    ps_hub_tick(r->hub, now_realtime_ns());
}

static void on_hub_idle(void *ud)
{
    receiver *r = ud;
    uv_timer_stop(&r->tick);
    uv_timer_stop(&r->deadline);
    uv_signal_stop(&r->sigint);
    uv_signal_stop(&r->sigterm);
    ps_jobs_stop(r->jobs);
    ps_api_stop(r->api);
}

static void on_deadline(uv_timer_t *t)
{
    receiver *r = t->data;
    ps_warn("receiver", "%u connections did not close in time: cutting them",
            ps_hub_session_count(r->hub));
    ps_hub_abort(r->hub);
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
    ps_hub_stop(r->hub);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Frees what ps_receiver_run set up, in reverse; NULLs are skipped. */
static void teardown(receiver *r)
{
    ps_api_free(r->api); /* joins the HTTP threads before what they read is freed */
    ps_upload_free(r->upload);
    r->upload = NULL;
    ps_jobs_free(r->jobs); /* completes the job files */
    r->jobs = NULL;
    ps_hub_free(r->hub);
    r->hub = NULL;
    replay_recovered(r);             /* frees what was never handed over */
    ps_index_builder_free(r->index); /* after the writer: it queues closed files */
    r->index = NULL;
    ps_livefeed_free(r->livefeed);
    ps_metrics_free(r->metrics);
    ps_tls_free(r->tls);
}

int ps_receiver_run(const ps_config *cfg)
{
    receiver r;
    char err[512];
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    r.recovered_tail = &r.recovered;
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
                         .idle_close_seconds = cfg->idle_close_seconds,
                         .max_open_files = cfg->max_open_files,
                         .app = app,
                         .checkpoint = on_checkpoint,
                         .on_recovered = on_recovered,
                         .mode = ps_config_file_mode(cfg),
                         .on_file_closed = on_file_closed,
                         .ud = &r};
    if (ps_writer_open(&r.writer, &wo, err, sizeof(err)) != 0) {
        ps_error("receiver", "%s", err);
        teardown(&r);
        uv_loop_close(&r.loop);
        return 1;
    }
    if (ps_writer_dir(r.writer) && cfg->format == PS_FORMAT_PCAPNG &&
        ps_index_builder_open(&r.index, ps_writer_dir(r.writer), ps_writer_prefix(r.writer), err,
                              sizeof(err)) != 0)
        ps_warn("receiver", "extraction index: %s; /api/packets scans files instead", err);
    r.metrics = ps_metrics_new();
    r.livefeed = r.metrics ? ps_livefeed_new(r.metrics, app) : NULL;
    if (!r.livefeed) {
        ps_error("receiver", "out of memory");
        ps_writer_free(r.writer);
        teardown(&r);
        uv_loop_close(&r.loop);
        return 1;
    }
    if (setup_tls(&r.tls, cfg) != 0 || setup_upload(&r, cfg) != 0) {
        ps_writer_free(r.writer);
        teardown(&r);
        uv_loop_close(&r.loop);
        return 1;
    }
    if (ps_writer_dir(r.writer)) {
        ps_jobs_opts jo = {.dir = ps_writer_dir(r.writer),
                           .format = cfg->format,
                           .rotate_bytes = cfg->rotate_bytes,
                           .rotate_seconds = cfg->rotate_seconds,
                           .max_files = cfg->max_files,
                           .max_total_bytes = cfg->max_total_bytes,
                           .mode = ps_config_file_mode(cfg),
                           .app = app,
                           .max_duration_sec = cfg->jobs_max_duration_sec,
                           .default_duration_sec = cfg->jobs_default_duration_sec,
                           .default_preroll_sec = cfg->jobs_default_preroll_sec,
                           .max_jobs = cfg->jobs_max_jobs,
                           .am_duration_sec = cfg->jobs_am_duration_sec,
                           .am_preroll_sec = cfg->jobs_am_preroll_sec,
                           .metrics = r.metrics,
                           .checkpoint = on_checkpoint,
                           .on_recovered = on_recovered,
                           .ud = &r};
        if (ps_jobs_open(&r.jobs, &r.loop, &jo, err, sizeof(err)) != 0) {
            ps_error("receiver", "capture jobs: %s", err);
            ps_writer_free(r.writer);
            teardown(&r);
            uv_loop_close(&r.loop);
            return 1;
        }
    }
    ps_hub_opts ho = {
        .writer = r.writer,
        .livefeed = r.livefeed,
        .tls = r.tls,
        .token = cfg->auth_enable ? cfg->auth_key : NULL,
        .allowed_ids = cfg->tls_allowed_ids,
        .n_allowed_ids = cfg->tls_allowed_ids_count,
        .require_id_match = cfg->tls_require_id_match,
        .limits = {.handshake_timeout_ms = (uint64_t)cfg->handshake_timeout_sec * 1000,
                   .idle_timeout_ms = (uint64_t)cfg->idle_timeout_sec * 1000,
                   .max_connections = cfg->max_connections,
                   .max_per_source = cfg->max_connections_per_source,
                   .max_pending = cfg->max_pending_connections,
                   .max_pending_per_source = cfg->max_pending_per_source,
                   .max_sensors = cfg->max_sensors,
                   .max_sensor_series = cfg->max_sensor_series,
                   .sensor_expiry_ms = (uint64_t)cfg->sensor_expiry_sec * 1000,
                   .memory_budget = cfg->memory_budget_bytes,
                   .max_inflate_ratio = cfg->max_inflate_ratio,
                   .max_ifaces_per_session = cfg->max_ifaces_per_session,
                   .max_write_queue = cfg->max_write_queue_bytes},
        .max_batch_raw = (uint32_t)cfg->max_batch_raw_bytes,
        .metrics = r.metrics,
        .jobs = r.jobs,
        .on_idle = on_hub_idle,
        .ud = &r};
    if (ps_hub_new(&r.hub, &r.loop, &ho, err, sizeof(err)) != 0) {
        ps_error("receiver", "%s", err);
        ps_writer_free(r.writer);
        ps_jobs_stop(r.jobs); /* its wake-up handle, before the loop closes */
        uv_run(&r.loop, UV_RUN_DEFAULT);
        teardown(&r);
        uv_loop_close(&r.loop);
        return 1;
    }
    replay_recovered(&r);
    ps_jobs_start(r.jobs); /* resumed jobs' file sets (recovery goes to the hub) */
    if (ps_listener_open(&r.listener, &r.loop, cfg->input_address, cfg->input_port, on_conn, &r,
                         err, sizeof(err)) != 0) {
        ps_error("receiver", "%s", err);
        ps_writer_free(r.writer);
        ps_jobs_stop(r.jobs);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        uv_loop_close(&r.loop);
        teardown(&r);
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
            r.tls ? (cfg->tls_ca_file || cfg->tls_ca_pem || cfg->tls_client_ca_file
                         ? "TLS, client certificates verified"
                         : "TLS")
                  : "plaintext",
            cfg->file_path, ps_format_name(cfg->format));
    ps_api_opts ao = {.hub = r.hub,
                      .writer = r.writer,
                      .livefeed = r.livefeed,
                      .metrics = r.metrics,
                      .cfg = cfg,
                      .s3 = r.upload ? &r.s3o : NULL,
                      .s3_key_prefix = r.s3_prefix,
                      .jobs = r.jobs};
    int code = 0;
    if (ps_api_open(&r.api, &r.loop, &ao, err, sizeof(err)) != 0) {
        /* An HTTP address that cannot be bound fails the start: a receiver
         * without its probes would only be found by a failing readiness
         * probe. Nothing was accepted yet, so the hub goes idle at once. */
        ps_error("receiver", "%s", err);
        code = 1;
        r.stopping = 1;
        ps_listener_close(r.listener);
        r.listener = NULL;
        ps_hub_stop(r.hub);
    }

    uv_run(&r.loop, UV_RUN_DEFAULT);

    if (ps_writer_free(r.writer) != 0) {
        ps_error("receiver", "closing capture files failed: %s", strerror(errno));
        code = 1;
    }
    ps_jobs_stop(r.jobs); /* if the hub never went idle */
    char kv[1024];
    ps_hub_counters c;
    ps_hub_get_counters(r.hub, &c);
    ps_hub_counters_kv(r.hub, kv, sizeof(kv));
    if (r.upload) {
        ps_upload_stats us;
        ps_upload_get_stats(r.upload, &us);
        ps_info("receiver",
                "S3: %" PRIu64 " files (%" PRIu64 " bytes) uploaded, %" PRIu64
                " failed attempts, %" PRIu64 " files pending (uploaded at the next start)",
                us.uploaded, us.bytes, us.failed, us.pending);
    }
    ps_info("receiver",
            "stopped: %" PRIu64 " packets (%" PRIu64 " bytes) written from %" PRIu64
            " connections, %" PRIu64 " duplicate batches dropped, %" PRIu64 " rejected, %" PRIu64
            " protocol errors;%s",
            c.packets, c.bytes, c.connections, c.duplicates, c.rejected, c.decode_errors, kv);
    uv_walk(&r.loop, close_walk, NULL);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    teardown(&r);
    return code;
}
