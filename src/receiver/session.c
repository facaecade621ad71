/*
 * session: per-connection protocol state on the receiver.
 *
 * Every length here comes from the network: frame lengths are bounded by
 * net.c before buffering, batch raw_len by the hub's max_batch_raw before
 * inflating, each record by the record iterator, interface indexes by
 * PS_HUB_MAX_IFACES and their number by the hub's max_ifaces_per_session.
 * A violation closes this connection only; other sensors' streams go on. A
 * stream is its own: a HELLO for an (id, session) another open connection
 * has is refused, and a batch more than PS_HUB_MAX_SEQ_JUMP ahead of the last
 * written is refused unwritten (docs/protocol.md section 5).
 *
 * Memory one peer can cost (docs/security.md): its receive buffer grows
 * for a large frame only within the hub's budget (net.h, ps_conn_budget);
 * batches inflate into the hub's one shared buffer, not one per session,
 * and only within max_inflate_ratio; the writer's and /live's interface
 * entries are released when the session closes or re-maps an index (the
 * writer keeps one until its IDB has left the current file); what is
 * queued to the peer (ACKs) is bounded by max_write_queue.
 *
 * Every refused or cut connection is logged once, as "closing connection
 * from PEER (sensor ID): WHY [reason=LABEL]", and counted by LABEL through
 * the hub (ps_hub_count_reason: packetstreamer_receiver_rejected_connections_total,
 * and for TLS failures packetstreamer_receiver_tls_handshake_failures_total).
 */
#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "core/codec.h"
#include "core/log.h"
#include "core/net.h"
#include "core/wire.h"
#include "jobs.h"
#include "livefeed.h"

/* A connection holding memory of the budget for a frame that has not
 * arrived in this long after it began, while others wait for that memory,
 * is cut. */
#define SESSION_BUDGET_STALL_MS 5000

typedef enum { SS_HELLO, SS_ACTIVE, SS_DONE } ss_state;

struct ps_session {
    ps_hub *hub;
    const ps_hub_opts *o; /* the hub's settings */
    ps_conn *conn;
    ss_state state;
    char peer[80];
    ps_sensor_rec *sensor;
    ps_codec codec;
    uint16_t version; /* negotiated protocol version (ACCEPT), 0 before */
    int *ifmap;       /* sensor iface index -> writer handle (a reference), -1 unset */
    int *ifjob;       /* v2: index -> job interface handle (jobs.h), PS_JOBS_DROP, -1 none */
    uint32_t ifmap_len;
    int jobs_up;          /* registered with the jobs (a v2 session) */
    uint32_t n_ifaces;    /* ifmap entries set */
    uint64_t pending_ack; /* highest seq handed to the writer */
    uint64_t acked;
    uint64_t started_ms, last_rx_ms; /* loop time */
    int logged;                      /* the bad-input line was written */
    uint64_t pending_since;          /* uv_hrtime of the oldest batch not yet acknowledged */
    uint64_t *ifdrops;               /* last STATS drops per sensor interface index */
    uint64_t drops_sum;              /* the sum of ifdrops, kept as they change */
};

/* The one log line and the counter for a connection we cut or refuse. */
static void sess_log_bad(ps_session *s, ps_hub_reason r, const char *why)
{
    if (s->logged)
        return;
    s->logged = 1;
    ps_hub_count_reason(s->hub, r);
    if (ps_hub_log_refusal(s->hub, r))
        ps_warn("receiver", "closing connection from %s (sensor %s): %s [reason=%s]", s->peer,
                s->sensor ? s->sensor->id : "?", why, ps_hub_reason_name(r));
}

static void sess_close_r(ps_session *s, int err, ps_hub_reason r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Closes with a reason label: counted and logged once (sess_log_bad) unless
 * err is our own failure (UV_ENOMEM, UV_EIO), which is logged only. */
static void sess_close_r(ps_session *s, int err, ps_hub_reason r, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (err != 0)
        ps_hub_count_decode_error(s->hub, err);
    if (err != 0 && err != UV_ENOMEM && err != UV_EIO) {
        sess_log_bad(s, r, why);
    } else if (err != 0) {
        ps_warn("receiver", "closing connection from %s (sensor %s): %s", s->peer,
                s->sensor ? s->sensor->id : "?", why);
        s->logged = 1;
    }
    ps_conn_close(s->conn, err, why);
}

static void sess_close(ps_session *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same with the generic reason "protocol". */
static void sess_close(ps_session *s, int err, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    sess_close_r(s, err, PS_REASON_protocol, "%s", why);
}

static void sess_reject(ps_session *s, uint16_t code, ps_hub_reason r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void sess_reject(ps_session *s, uint16_t code, ps_hub_reason label, const char *fmt, ...)
{
    char why[PS_WIRE_MAX_REASON_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    s->logged = 1;
    ps_hub_count_rejected(s->hub, label);
    if (ps_hub_log_refusal(s->hub, label))
        ps_warn("receiver", "rejecting %s (sensor %s): %s [reason=%s]", s->peer,
                s->sensor ? s->sensor->id : "?", why, ps_hub_reason_name(label));
    ps_buf out = PS_BUF_INIT;
    ps_reject r = {.code = code, .reason = why, .reason_len = (uint16_t)strlen(why)};
    if (ps_wire_encode_reject(&out, &r) == 0)
        ps_conn_send(s->conn, out.data, out.len);
    ps_buf_free(&out);
    s->state = SS_DONE;
    ps_conn_close_graceful(s->conn, 0, why);
}

static void sess_write_failed(ps_session *s, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The writer failed (errno e) on what the sensor sent correctly. Transient
 * server-side failures (out of file descriptors, disk full, I/O errors,
 * memory) are answered with PS_REJECT_INTERNAL, on which a sensor backs off
 * and retries, resending what was not acknowledged; only EINVAL (something
 * the output cannot hold, e.g. a link type) is PS_REJECT_UNSUPPORTED, which
 * stops the sensor. Counted as our failure (decode error "io"), not as a
 * refusal of the peer; one log line per connection, as every close.
 */
static void sess_write_failed(ps_session *s, int e, const char *fmt, ...)
{
    char why[PS_WIRE_MAX_REASON_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (e == EINVAL) {
        sess_reject(s, PS_REJECT_UNSUPPORTED, PS_REASON_COUNT, "%s", why);
        return;
    }
    ps_hub_count_decode_error(s->hub, UV_EIO);
    s->logged = 1;
    ps_warn("receiver", "closing connection from %s (sensor %s): %s; it will retry", s->peer,
            s->sensor ? s->sensor->id : "?", why);
    ps_buf out = PS_BUF_INIT;
    ps_reject r = {.code = PS_REJECT_INTERNAL, .reason = why, .reason_len = (uint16_t)strlen(why)};
    if (ps_wire_encode_reject(&out, &r) == 0)
        ps_conn_send(s->conn, out.data, out.len);
    ps_buf_free(&out);
    s->state = SS_DONE;
    ps_conn_close_graceful(s->conn, UV_EIO, why);
}

static int send_u64(ps_session *s, int type, uint64_t v)
{
    uint8_t frame[PS_WIRE_HDR_LEN + 8];
    ps_wire_frame_header(frame, (uint8_t)type, 8);
    ps_put_u64be(frame + PS_WIRE_HDR_LEN, v);
    return ps_conn_send(s->conn, frame, sizeof(frame));
}

typedef struct id_check {
    const ps_hub_opts *o;
    const char *id;
    size_t id_len;
    int allowed, matches;
    char first[256];
} id_check;

static int id_visit(void *arg, const char *name)
{
    id_check *k = arg;
    if (!k->first[0])
        snprintf(k->first, sizeof(k->first), "%s", name);
    if (ps_tls_name_allowed(name, k->o->allowed_ids, k->o->n_allowed_ids))
        k->allowed = 1;
    if (strlen(name) == k->id_len && strncasecmp(name, k->id, k->id_len) == 0)
        k->matches = 1;
    return 0;
}

/* Certificate identity policy: allowed patterns, and the HELLO id matching
 * one of the certificate's names. */
static int check_identity(ps_session *s, const ps_hello *h)
{
    const ps_hub_opts *o = s->o;
    if (!o->tls || (o->n_allowed_ids == 0 && !o->require_id_match))
        return 0;
    id_check k = {.o = o, .id = h->id, .id_len = h->id_len};
    char id[PS_WIRE_MAX_ID_LEN + 1];
    snprintf(id, sizeof(id), "%.*s", (int)h->id_len, h->id);
    SSL *ssl = ps_conn_ssl(s->conn);
    int rc = ssl ? ps_tls_peer_names(ssl, id_visit, &k) : -1;
    const char *why = NULL;
    if (rc < 0)
        why = "no client certificate: this receiver checks certificate identities";
    else if (o->n_allowed_ids > 0 && !k.allowed)
        why = "certificate identity is not allowed (tls.allowedIdentities)";
    else if (o->require_id_match && !k.matches)
        why = "sensor id does not match the certificate (tls.requireIdMatch)";
    if (!why)
        return 0;
    ps_hub_count_auth_failure(s->hub);
    sess_reject(s, PS_REJECT_AUTH, PS_REASON_identity, "%s: certificate '%s', sensor id '%s'", why,
                k.first[0] ? k.first : "-", id);
    return -1;
}

/* (id, session) belongs to the connection that has it: a second one is
 * refused (BUSY, so a sensor retries) until the first has closed. Were the
 * new one to win, any authenticated client could take over another
 * sensor's stream. A sensor that reconnects before its old connection's
 * death was noticed is the honest case: the owner is sent a HEARTBEAT,
 * which a dead peer answers with a reset, closing it, and the idle timeout
 * covers a silent one. */
static int refuse_takeover(ps_session *s, ps_sensor_rec *rec, const ps_hello *h)
{
    ps_session *owner = rec->conn;
    if (ps_hub_sensor_probe_due(s->hub, rec) && owner->state == SS_ACTIVE) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        (void)send_u64(owner, PS_FRAME_HEARTBEAT,
                       (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
    }
    sess_reject(s, PS_REJECT_BUSY, PS_REASON_session_in_use,
                "session %016" PRIx64 " of sensor '%.*s' is connected already", h->session,
                (int)h->id_len, h->id);
    return -1;
}

static int on_hello(ps_session *s, const ps_frame *f)
{
    const ps_hub_opts *o = s->o;
    ps_hello h;
    if (f->type != PS_FRAME_HELLO) {
        sess_close_r(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_TYPE), PS_REASON_data_before_handshake,
                     "%s frame before the handshake", ps_frame_type_name(f->type));
        return -1;
    }
    int rc = ps_wire_decode_hello(f->payload, f->len, &h);
    if (rc == PS_WIRE_E_VERSION) {
        sess_reject(s, PS_REJECT_VERSION, PS_REASON_unsupported_version,
                    "protocol version %u..%u not supported (this receiver speaks %d..%d)",
                    h.version_min, h.version_max, PS_WIRE_VERSION_MIN, PS_WIRE_VERSION_MAX);
        return -1;
    }
    if (rc != PS_WIRE_OK) {
        sess_reject(s, PS_REJECT_PROTOCOL,
                    rc == PS_WIRE_E_BAD_MAGIC ? PS_REASON_bad_magic : PS_REASON_malformed_handshake,
                    "malformed handshake: %s", ps_wire_strerror(rc));
        return -1;
    }
    if (o->token) {
        size_t tl = strlen(o->token);
        /* Constant time over the expected token's length. */
        int ok = h.token_len == tl && CRYPTO_memcmp(h.token, o->token, tl) == 0;
        if (!ok) {
            ps_hub_count_auth_failure(s->hub);
            sess_reject(s, PS_REJECT_AUTH, PS_REASON_auth, "authentication failed");
            return -1;
        }
    }
    if (check_identity(s, &h) != 0)
        return -1;
    ps_sensor_rec *rec = ps_hub_sensor_get(s->hub, h.id, h.id_len, h.session);
    if (!rec && ps_hub_registry_full(s->hub)) {
        sess_reject(s, PS_REJECT_BUSY, PS_REASON_registry_full,
                    "too many sensor sessions connected (limits.maxSensors)");
        return -1;
    }
    if (!rec) {
        sess_reject(s, PS_REJECT_INTERNAL, PS_REASON_COUNT, "out of memory");
        return -1;
    }
    if (rec->conn && rec->conn != s)
        return refuse_takeover(s, rec, &h);
    ps_hub_sensor_connected(s->hub, rec, s, s->peer);
    s->sensor = rec;
    s->codec = (ps_codec)h.codec;
    s->pending_ack = s->acked = rec->last_seq;
    uint32_t max_frame = h.max_frame < o->max_frame ? h.max_frame : o->max_frame;
    s->version = ps_wire_pick_version(&h, PS_WIRE_VERSION_MAX); /* >= 1: decode checked it */
    ps_accept a = {.version = s->version,
                   .codec = h.codec,
                   .max_frame = max_frame,
                   .max_batch_raw = o->max_batch_raw,
                   .last_seq = rec->last_seq};
    ps_buf out = PS_BUF_INIT;
    rc = ps_wire_encode_accept(&out, &a);
    if (rc == 0)
        rc = ps_conn_send(s->conn, out.data, out.len);
    ps_buf_free(&out);
    if (rc != 0) {
        sess_close(s, UV_ENOMEM, "cannot answer the handshake");
        return -1;
    }
    s->state = SS_ACTIVE;
    ps_conn_set_max_frame(s->conn, max_frame);
    if (s->version >= PS_WIRE_VERSION_JOBS && o->jobs) {
        ps_jobs_session_up(o->jobs, s, rec->id); /* JOB_START for the jobs running */
        s->jobs_up = 1;
    }
    ps_info("receiver",
            "sensor %s connected from %s (session %016" PRIx64 ", protocol v%u, codec %s%s)",
            rec->id, s->peer, rec->session, s->version, ps_codec_name(s->codec),
            rec->last_seq ? ", resuming" : "");
    return 0;
}

/* Gives back the session's reference to a writer handle (and /live's). */
static void release_iface(ps_session *s, int h)
{
    ps_writer_iface_release(s->o->writer, h);
    ps_livefeed_iface_release(s->o->livefeed, h);
}

/* Whatever index k maps to, released; k is then unset. */
static void unmap_index(ps_session *s, uint32_t k)
{
    if (s->ifmap[k] >= 0)
        release_iface(s, s->ifmap[k]);
    if (s->ifjob[k] >= 0)
        ps_jobs_iface_release(s->o->jobs, s->ifjob[k]);
    s->ifmap[k] = -1;
    s->ifjob[k] = -1;
}

static int index_mapped(const ps_session *s, uint32_t k)
{
    return k < s->ifmap_len && (s->ifmap[k] >= 0 || s->ifjob[k] != -1);
}

/* IFACE of a job's capture (v2, job != 0): its records go to the job's
 * file set, or are dropped when the job is not running here. */
static int on_job_iface(ps_session *s, const ps_iface *i, const char *name, const char *desc)
{
    char err[512];
    int h = ps_jobs_iface(s->o->jobs, i->job, s->sensor->id, name, desc, i->linktype, i->snaplen,
                          err, sizeof(err));
    if (h == -1) {
        sess_write_failed(s, errno, "job %" PRIu64 ": %s", i->job, err);
        return -1;
    }
    if (h == PS_JOBS_DROP)
        ps_debug("receiver",
                 "sensor %s: interface %" PRIu32 " of job %" PRIu64
                 " which is not running: its records are dropped",
                 s->sensor->id, i->index, i->job);
    if (!index_mapped(s, i->index))
        s->n_ifaces++;
    unmap_index(s, i->index);
    s->ifjob[i->index] = h;
    return 0;
}

static int on_iface(ps_session *s, const ps_frame *f)
{
    ps_iface i;
    int rc = ps_wire_decode_iface(f->payload, f->len, s->version ? s->version : 1, &i);
    if (rc != PS_WIRE_OK) {
        sess_close(s, PS_CONN_E_WIRE(rc), "bad interface announcement: %s", ps_wire_strerror(rc));
        return -1;
    }
    if (i.index >= PS_HUB_MAX_IFACES) {
        sess_close(s, PS_CONN_E_WIRE(PS_WIRE_E_TOO_LONG), "interface index %" PRIu32 " too large",
                   i.index);
        return -1;
    }
    if (i.index >= s->ifmap_len) {
        uint32_t n = i.index + 1 < 8 ? 8 : i.index + 1;
        int *m = realloc(s->ifmap, n * sizeof(*m));
        if (!m) {
            sess_close(s, UV_ENOMEM, "out of memory");
            return -1;
        }
        for (uint32_t k = s->ifmap_len; k < n; k++)
            m[k] = -1;
        s->ifmap = m;
        int *jm = realloc(s->ifjob, n * sizeof(*jm));
        if (!jm) {
            /* ifmap has grown already; ifmap_len has not, so it is unused. */
            sess_close(s, UV_ENOMEM, "out of memory");
            return -1;
        }
        for (uint32_t k = s->ifmap_len; k < n; k++)
            jm[k] = -1;
        s->ifjob = jm;
        /* Drop counters per index; without them (OOM) drops go unreported. */
        uint32_t from = s->ifdrops ? s->ifmap_len : 0;
        uint64_t *d = realloc(s->ifdrops, n * sizeof(*d));
        if (d) {
            for (uint32_t k = from; k < n; k++)
                d[k] = 0;
        } else {
            free(s->ifdrops);
            s->drops_sum = 0;
        }
        s->ifdrops = d;
        s->ifmap_len = n;
    }
    int old = s->ifmap[i.index];
    if (!index_mapped(s, i.index) && s->n_ifaces >= s->o->limits.max_ifaces_per_session) {
        sess_close_r(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE), PS_REASON_too_many_interfaces,
                     "more than %" PRIu32 " interfaces announced (limits.maxInterfacesPerSession)",
                     s->o->limits.max_ifaces_per_session);
        return -1;
    }
    char name[PS_WIRE_MAX_IFNAME_LEN + 1], desc[PS_WIRE_MAX_DESC_LEN + 1], err[512];
    memcpy(name, i.name, i.name_len);
    name[i.name_len] = '\0';
    memcpy(desc, i.desc, i.desc_len);
    desc[i.desc_len] = '\0';
    if (i.job != 0)
        return on_job_iface(s, &i, name, desc);
    if (s->ifjob[i.index] != -1) { /* was a job's: now the continuous capture's */
        unmap_index(s, i.index);
        s->n_ifaces--;
        old = -1;
    }
    int h = ps_writer_iface(s->o->writer, s->sensor->id, name, desc, i.linktype, i.snaplen, err,
                            sizeof(err));
    if (h < 0) {
        sess_write_failed(s, errno, "%s", err);
        return -1;
    }
    ps_hub_sensor_iface(s->hub, s->sensor, i.index, name, desc);
    if (ps_livefeed_iface(s->o->livefeed, h, s->sensor->id, name, desc, i.linktype) != 0)
        ps_warn("receiver", "out of memory: interface %s/%s not available to /live", s->sensor->id,
                name);
    /* The new reference first: re-announcing the same interface must not
     * free it on the way. */
    if (old >= 0)
        release_iface(s, old);
    else
        s->n_ifaces++;
    s->ifmap[i.index] = h;
    ps_debug("receiver", "sensor %s announced interface %" PRIu32 " '%s' (link type %" PRIu32 ")",
             s->sensor->id, i.index, name, i.linktype);
    return 0;
}

static int on_batch(ps_session *s, const ps_frame *f)
{
    const ps_hub_opts *o = s->o;
    ps_sensor_rec *rec = s->sensor;
    ps_batch_hdr b;
    int rc = ps_wire_decode_batch(f->payload, f->len, o->max_batch_raw, &b);
    if (rc != PS_WIRE_OK) {
        sess_close_r(s, PS_CONN_E_WIRE(rc),
                     rc == PS_WIRE_E_TOO_LONG ? PS_REASON_decompression_bomb : PS_REASON_bad_batch,
                     "bad batch: %s", ps_wire_strerror(rc));
        return -1;
    }
    if (b.codec != PS_CODEC_NONE && b.codec != s->codec) {
        sess_close_r(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE), PS_REASON_bad_batch,
                     "batch %" PRIu64 " uses codec %s, not %s", b.seq, ps_codec_name(b.codec),
                     ps_codec_name(s->codec));
        return -1;
    }
    if (b.seq <= rec->last_seq) {
        /* Already written (a resend after a reconnect): acknowledge only. */
        ps_hub_count_duplicate(s->hub, rec);
        return 0;
    }
    if (b.seq - rec->last_seq > PS_HUB_MAX_SEQ_JUMP) {
        /* Written, it would make every later honest batch a "duplicate". */
        sess_close_r(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE), PS_REASON_sequence_jump,
                     "batch %" PRIu64 " after %" PRIu64 ": a jump of more than 2^32", b.seq,
                     rec->last_seq);
        return -1;
    }
    if (b.seq != rec->last_seq + 1) {
        ps_hub_count_gap(rec);
        ps_warn("receiver",
                "sensor %s: batch %" PRIu64 " follows %" PRIu64
                ": batches in between never arrived",
                rec->id, b.seq, rec->last_seq);
    }
    const uint8_t *raw = b.payload;
    uint32_t ratio = o->limits.max_inflate_ratio;
    if (b.codec != PS_CODEC_NONE && ratio && b.raw_len > (uint64_t)ratio * b.payload_len) {
        /* Checked before inflating: the CPU and memory are the attack. */
        sess_close_r(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE), PS_REASON_decompression_bomb,
                     "batch %" PRIu64 ": %" PRIu32 " compressed bytes declare %" PRIu32
                     " raw ones, more than %" PRIu32 " times as many (limits.maxInflateRatio)",
                     b.seq, (uint32_t)b.payload_len, b.raw_len, ratio);
        return -1;
    }
    if (b.codec != PS_CODEC_NONE) {
        ps_buf *ib = ps_hub_inflate_buf(s->hub);
        ps_buf_reset(ib);
        if (ps_buf_reserve_exact(ib, b.raw_len ? b.raw_len : 1) != 0) {
            sess_close(s, UV_ENOMEM, "out of memory inflating batch %" PRIu64, b.seq);
            return -1;
        }
        rc = ps_codec_decompress((ps_codec)b.codec, b.payload, b.payload_len, ib->data, b.raw_len);
        if (rc != PS_CODEC_OK) {
            /* Output beyond the declared raw size is a bomb, not noise. */
            sess_close_r(
                s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE),
                rc == PS_CODEC_E_SPACE || rc == PS_CODEC_E_SIZE ? PS_REASON_decompression_bomb
                                                                : PS_REASON_bad_batch,
                "batch %" PRIu64 ": %s: %s", b.seq, ps_codec_name(b.codec), ps_codec_strerror(rc));
            return -1;
        }
        raw = ib->data;
    }
    /* Validate the whole batch before writing any of it, so a corrupt batch
     * never leaves half its records in a file. */
    ps_record_iter it;
    ps_record r;
    uint32_t n = 0;
    ps_record_iter_init(&it, raw, b.raw_len);
    while ((rc = ps_record_iter_next(&it, &r)) == PS_WIRE_OK) {
        if (!index_mapped(s, r.iface)) {
            sess_close_r(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE), PS_REASON_bad_batch,
                         "batch %" PRIu64 ": record for unannounced interface %" PRIu32, b.seq,
                         r.iface);
            return -1;
        }
        n++;
    }
    if (rc != PS_WIRE_NEED_MORE || n != b.records) {
        sess_close_r(s, PS_CONN_E_WIRE(rc != PS_WIRE_NEED_MORE ? rc : PS_WIRE_E_BAD_VALUE),
                     PS_REASON_bad_batch, "batch %" PRIu64 ": %s", b.seq,
                     rc != PS_WIRE_NEED_MORE ? ps_wire_strerror(rc) : "record count mismatch");
        return -1;
    }
    ps_record_iter_init(&it, raw, b.raw_len);
    uint64_t bytes = 0, dropped = 0;
    int handle = -1;
    int jhs[16], njh = 0; /* job interfaces of this batch, for their markers */
    while (ps_record_iter_next(&it, &r) == PS_WIRE_OK) {
        int jh = s->ifjob[r.iface];
        if (jh == PS_JOBS_DROP) {
            dropped++;
            continue;
        }
        if (jh >= 0) {
            int wrc = ps_jobs_record(o->jobs, jh, r.ts_ns, r.caplen, r.origlen, r.data);
            if (wrc < 0) {
                int e = errno;
                sess_write_failed(s, e == EINVAL ? EIO : e, "cannot write batch %" PRIu64 ": %s",
                                  b.seq, strerror(e));
                return -1;
            }
            int seen = 0;
            for (int k = 0; k < njh; k++)
                seen |= jhs[k] == jh;
            if (!seen && njh < (int)(sizeof(jhs) / sizeof(jhs[0])))
                jhs[njh++] = jh;
            bytes += r.caplen;
            continue;
        }
        handle = s->ifmap[r.iface];
        if (ps_writer_record(o->writer, handle, r.ts_ns, r.caplen, r.origlen, r.data) != 0) {
            int e = errno;
            /* Never "unsupported" here: the sensor would stop for good. */
            sess_write_failed(s, e == EINVAL ? EIO : e, "cannot write batch %" PRIu64 ": %s", b.seq,
                              strerror(e));
            return -1;
        }
        bytes += r.caplen;
    }
    /* The batch marker makes this batch recoverable as a whole; job files
     * get one too, so a batch of job records only is known after a restart. */
    if (handle >= 0 && ps_writer_batch_end(o->writer, handle, rec->id, rec->session, b.seq) != 0) {
        int e = errno;
        sess_write_failed(s, e == EINVAL ? EIO : e, "cannot end batch %" PRIu64 ": %s", b.seq,
                          strerror(e));
        return -1;
    }
    for (int k = 0; k < njh; k++)
        if (ps_jobs_batch_end(o->jobs, jhs[k], rec->session, b.seq) != 0) {
            int e = errno;
            sess_write_failed(s, e == EINVAL ? EIO : e, "cannot end batch %" PRIu64 ": %s", b.seq,
                              strerror(e));
            return -1;
        }
    if (dropped)
        ps_jobs_count_dropped(o->jobs, dropped);
    /* After the writer has the batch: live clients never hold up the files. */
    if (ps_livefeed_active(o->livefeed))
        ps_livefeed_batch(o->livefeed, s->ifmap, s->ifmap_len, raw, b.raw_len);
    if (s->pending_ack == s->acked)
        s->pending_since = uv_hrtime();
    ps_hub_count_batch(s->hub, rec, b.seq, b.records, bytes);
    s->pending_ack = b.seq;
    return 0;
}

static int on_stats(ps_session *s, const ps_frame *f)
{
    ps_stats st;
    int rc = ps_wire_decode_stats(f->payload, f->len, &st);
    if (rc != PS_WIRE_OK) {
        sess_close(s, PS_CONN_E_WIRE(rc), "bad stats frame: %s", ps_wire_strerror(rc));
        return -1;
    }
    if (!index_mapped(s, st.index)) {
        sess_close(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_VALUE),
                   "stats for unannounced interface %" PRIu32, st.index);
        return -1;
    }
    if (s->ifjob[st.index] != -1) { /* a job's capture: its own file set's ISB */
        ps_jobs_iface_stats(s->o->jobs, s->ifjob[st.index], st.timestamp_ns, st.packets,
                            st.kernel_drops + st.if_drops, st.sensor_drops);
        return 0;
    }
    ps_writer_iface_stats(s->o->writer, s->ifmap[st.index], st.timestamp_ns, st.packets,
                          st.kernel_drops + st.if_drops, st.sensor_drops);
    ps_hub_sensor_iface_stats(s->sensor, st.index, st.packets,
                              st.kernel_drops + st.if_drops + st.sensor_drops);
    /* ifdrops has ifmap_len entries (grown in on_iface, see there). */
    /* The sensor's counters are cumulative per interface: the sensor's
     * total is the sum of the latest ones (also right after a reconnect),
     * kept up to date by the one that changed, so a frame costs O(1) however
     * many interfaces the session has. */
    if (s->ifdrops) {
        uint64_t v = st.kernel_drops + st.if_drops + st.sensor_drops;
        s->drops_sum = s->drops_sum - s->ifdrops[st.index] + v;
        s->ifdrops[st.index] = v;
        ps_hub_sensor_drops(s->sensor, s->drops_sum);
    }
    return 0;
}

static int sess_on_frame(ps_conn *c, const ps_frame *f)
{
    ps_session *s = ps_conn_data(c);
    s->last_rx_ms = uv_now(ps_hub_loop(s->hub));
    if (s->state == SS_HELLO)
        return on_hello(s, f);
    if (s->state != SS_ACTIVE || !s->sensor)
        return -1;
    /* A v1 session sees exactly v1's types: the JOB_* frames are unknown. */
    if (!ps_wire_type_allowed(f->type, s->version)) {
        sess_close(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_TYPE), "%s frame in a protocol v%u session",
                   ps_frame_type_name(f->type), s->version);
        return -1;
    }
    switch (f->type) {
    case PS_FRAME_BATCH:
        return on_batch(s, f);
    case PS_FRAME_IFACE:
        return on_iface(s, f);
    case PS_FRAME_STATS:
        return on_stats(s, f);
    case PS_FRAME_HEARTBEAT:
        return 0;
    case PS_FRAME_JOB_STATUS: {
        ps_job_status st;
        int rc = ps_wire_decode_job_status(f->payload, f->len, &st);
        if (rc != PS_WIRE_OK) {
            sess_close(s, PS_CONN_E_WIRE(rc), "bad job status: %s", ps_wire_strerror(rc));
            return -1;
        }
        ps_jobs_status(s->o->jobs, s->sensor->id, &st);
        return 0;
    }
    case PS_FRAME_BYE: {
        uint64_t last;
        if (ps_wire_decode_u64(f->payload, f->len, &last) != PS_WIRE_OK) {
            sess_close(s, PS_CONN_E_WIRE(PS_WIRE_E_TRUNCATED), "bad BYE frame");
            return -1;
        }
        ps_info("receiver", "sensor %s finished: %" PRIu64 " packets written", s->sensor->id,
                s->sensor->packets);
        return 0;
    }
    default:
        sess_close(s, PS_CONN_E_WIRE(PS_WIRE_E_BAD_TYPE), "unexpected %s frame from a sensor",
                   ps_frame_type_name(f->type));
        return -1;
    }
}

static void sess_on_read_done(ps_conn *c)
{
    ps_session *s = ps_conn_data(c);
    ps_hub_flush_and_ack(s->hub);
}

static void sess_on_close(ps_conn *c, int err, const char *reason)
{
    ps_session *s = ps_conn_data(c);
    ps_hub *hub = s->hub;
    if (!s->logged && err != 0 && err != UV_EOF && err != UV_ECONNRESET) {
        ps_hub_reason r = PS_REASON_COUNT;
        if (err == PS_CONN_E_TLS_ON_PLAIN) {
            r = PS_REASON_tls_on_plaintext;
        } else if (err == PS_CONN_E_PLAIN_ON_TLS) {
            r = PS_REASON_plaintext_on_tls;
            ps_hub_count_tls_failure(hub, "plaintext");
        } else if (err == PS_CONN_E_TLS && ps_conn_secure(c)) {
            r = PS_REASON_tls_error; /* a bad record after the handshake */
        } else if (err == PS_CONN_E_TLS) {
            r = PS_REASON_tls_handshake;
            ps_hub_count_tls_failure(hub, ps_conn_fail_label(c) ? ps_conn_fail_label(c) : "other");
        } else if (err == PS_CONN_E_TRUNCATED) {
            r = PS_REASON_truncated;
        } else if (err == PS_CONN_E_WIRE(PS_WIRE_E_TOO_LONG)) {
            r = PS_REASON_frame_too_long;
        } else if (PS_CONN_IS_WIRE_ERR(err)) {
            r = PS_REASON_garbage;
        }
        if (r != PS_REASON_COUNT) {
            ps_hub_count_decode_error(hub, 0); /* in the total, by label only */
            sess_log_bad(s, r, reason);
        }
    }
    if (s->sensor) {
        ps_hub_sensor_detach(s->sensor, s);
        if (!s->logged || err == 0)
            ps_log(err == 0 || err == UV_EOF ? PS_LOG_INFO : PS_LOG_WARN, "receiver",
                   "sensor %s from %s disconnected: %s", s->sensor->id, s->peer, reason);
    }
    if (s->jobs_up)
        ps_jobs_session_down(s->o->jobs, s);
    ps_hub_session_closed(hub, s);
    for (uint32_t k = 0; k < s->ifmap_len; k++)
        unmap_index(s, k);
    free(s->ifmap);
    free(s->ifjob);
    free(s->ifdrops);
    free(s);
}

static const ps_conn_cbs sess_cbs = {
    .on_frame = sess_on_frame,
    .on_read_done = sess_on_read_done,
    .on_close = sess_on_close,
};

static void free_handle(uv_handle_t *h)
{
    free(h);
}

ps_session *ps_session_new(ps_hub *hub, uv_tcp_t *tcp, SSL *ssl, const char *peer)
{
    ps_session *s = calloc(1, sizeof(*s));
    if (!s) {
        ps_error("receiver", "out of memory accepting a connection");
        SSL_free(ssl);
        uv_close((uv_handle_t *)tcp, free_handle);
        return NULL;
    }
    s->hub = hub;
    s->o = ps_hub_options(hub);
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    s->started_ms = s->last_rx_ms = uv_now(ps_hub_loop(hub));
    s->conn = ps_conn_new(tcp, &sess_cbs, s, PS_WIRE_MAX_HELLO_FRAME, peer);
    if (!s->conn) {
        ps_error("receiver", "out of memory accepting a connection");
        SSL_free(ssl);
        free(s);
        uv_close((uv_handle_t *)tcp, free_handle);
        return NULL;
    }
    ps_conn_set_budget(s->conn, ps_hub_budget(hub));
    if (ssl && ps_conn_use_tls(s->conn, ssl, 1) != 0)
        s->state = SS_DONE; /* ps_session_start closes it, through the hub */
    return s;
}

void ps_session_start(ps_session *s, int paused)
{
    if (s->state == SS_DONE)
        ps_conn_close(s->conn, UV_ENOMEM, "out of memory");
    else if (ps_conn_start(s->conn) != 0)
        ps_conn_close(s->conn, UV_EIO, "cannot read from the connection");
    else if (paused)
        ps_conn_pause(s->conn);
}

const char *ps_session_peer(const ps_session *s)
{
    return s->peer;
}

int ps_session_pending(const ps_session *s)
{
    return s->state == SS_HELLO;
}

void ps_session_check_deadlines(ps_session *s, uint64_t now)
{
    size_t held;
    uint64_t held_since;
    const ps_hub_limits *lim = &s->o->limits;
    if (s->logged || s->state == SS_DONE)
        return; /* already being closed */
    /* A session we stopped reading (paused while writes fail, or waiting
     * for the memory budget) is not idle; one still in its handshake is cut
     * all the same, or while writes fail unanswered sockets would hold their
     * slots for ever. */
    if (s->state == SS_ACTIVE && (ps_conn_paused(s->conn) || ps_conn_starved(s->conn))) {
        s->last_rx_ms = now;
        return;
    }
    if (s->state == SS_HELLO && lim->handshake_timeout_ms &&
        now - s->started_ms >= lim->handshake_timeout_ms) {
        int tls_unfinished = s->o->tls && !ps_conn_secure(s->conn);
        if (tls_unfinished)
            ps_hub_count_tls_failure(s->hub, "timeout");
        sess_close_r(s, UV_ETIMEDOUT, PS_REASON_handshake_timeout,
                     "handshake not completed within %" PRIu64 " s%s",
                     lim->handshake_timeout_ms / 1000,
                     tls_unfinished ? " (TLS handshake unfinished)" : "");
    } else if ((held = ps_conn_budget_held(s->conn, &held_since)) > 0 &&
               ps_conn_budget_waiting(ps_hub_budget(s->hub)) &&
               now - held_since >= SESSION_BUDGET_STALL_MS) {
        /* Without this, peers that start large frames and never finish them
         * would keep every other sensor waiting until the idle timeout. */
        sess_close_r(s, UV_ETIMEDOUT, PS_REASON_memory_budget,
                     "holds %zu bytes for a frame not completed within %d s while other "
                     "connections wait for memory (limits.memoryBudgetMB)",
                     held, SESSION_BUDGET_STALL_MS / 1000);
    } else if (s->state == SS_ACTIVE && lim->idle_timeout_ms &&
               now - s->last_rx_ms >= lim->idle_timeout_ms) {
        sess_close_r(s, UV_ETIMEDOUT, PS_REASON_idle_timeout,
                     "nothing received for %" PRIu64 " s (limits.idleTimeoutSec)",
                     (now - s->last_rx_ms) / 1000);
    }
}

int ps_session_send(ps_session *s, const void *buf, size_t len)
{
    if (s->state != SS_ACTIVE)
        return -1;
    return ps_conn_send(s->conn, buf, len);
}

int ps_session_unacked(const ps_session *s)
{
    return s->pending_ack > s->acked;
}

int ps_session_ack(ps_session *s, double *latency_s)
{
    if (s->pending_ack <= s->acked || s->state != SS_ACTIVE)
        return 0;
    if (send_u64(s, PS_FRAME_ACK, s->pending_ack) != 0)
        return 0;
    s->acked = s->pending_ack;
    /* From the oldest batch this ACK covers arriving to the ACK. */
    *latency_s = (double)(uv_hrtime() - s->pending_since) / 1e9;
    /* A peer that does not read its ACKs would have them pile up here. */
    uint64_t lim = s->o->limits.max_write_queue;
    size_t queued = ps_conn_write_queue(s->conn);
    if (lim && queued > lim)
        sess_close_r(s, UV_ENOBUFS, PS_REASON_slow_reader,
                     "%zu bytes queued to a peer that does not read them "
                     "(limits.maxWriteQueueKB)",
                     queued);
    return 1;
}

void ps_session_pause(ps_session *s, int on)
{
    if (on)
        ps_conn_pause(s->conn);
    else
        ps_conn_resume(s->conn);
}

void ps_session_close(ps_session *s, int graceful, const char *why)
{
    if (graceful)
        ps_conn_close_graceful(s->conn, 0, why);
    else
        ps_conn_close(s->conn, UV_ETIMEDOUT, why);
}
