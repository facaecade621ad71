/*
 * uplink: the sensor's connection to the receiver and its spool.
 *
 * Every sealed batch enters the spool (spool.h) in sequence order and stays
 * there until the receiver acknowledges it (cumulative ACK). While
 * connected, ready batches are written in order; after a disconnect the
 * uplink resolves the receiver's name again, reconnects with exponential
 * backoff and jitter, learns from ACCEPT what the receiver already wrote,
 * and resends the rest. An ACCEPT whose last_seq is beyond the highest
 * batch ever sent is refused (someone else used this (id, session)): the
 * uplink logs an error, takes a new session id and resends everything
 * unacknowledged under it.
 * Interfaces are announced on every new connection before any batch.
 * With on_job_start set the sensor offers protocol versions 1..2; in a v2
 * session JOB_START / JOB_STOP are handed to the caller, JOB_STATUS can be
 * sent, and job interfaces (IFACE with a job id) are announced (never in a
 * v1 session).
 *
 * The spool is bounded (spool bytes); the caller asks ps_uplink_spool_full()
 * before producing more and stops (offline) or drops and counts (live).
 * Gives up, calling on_fatal, when the receiver rejects the sensor or stays
 * unreachable for connect_timeout_ms since the last good connection.
 */
#ifndef PS_UPLINK_H
#define PS_UPLINK_H

#include <stdint.h>

#include <uv.h>

#include "batcher.h"
#include "core/tls.h"

typedef struct ps_uplink ps_uplink;

typedef struct ps_uplink_opts {
    const char *host;
    int port;
    const char *sensor_id;
    const char *token; /* may be NULL */
    ps_codec codec;
    uint32_t max_batch_raw; /* what our batches can reach */
    uint64_t spool_bytes;
    uint64_t connect_timeout_ms;
    ps_tls *tls;                /* client TLS context, NULL for plaintext (not owned) */
    const char *server_name;    /* name the receiver's certificate must hold; NULL: host */
    uint64_t heartbeat_ms;      /* HEARTBEAT after this long with nothing sent; 0: never */
    void (*on_acked)(void *ud); /* after an ACK freed spool space */
    void (*on_fatal)(void *ud, const char *msg);
    /* Optional: every successful resolution of the receiver's name (at each
     * connection attempt), before connecting; the live sensor keeps its
     * own stream out of its capture filters with it. */
    void (*on_resolved)(void *ud, const struct addrinfo *res);
    /* Optional: offer protocol v2 (capture jobs) and hand its frames over.
     * Without on_job_start the sensor offers v1 only. The job's strings
     * point into the frame: copy what is kept. */
    void (*on_job_start)(void *ud, const ps_job_start *j);
    void (*on_job_stop)(void *ud, uint64_t job);
    void *ud;
} ps_uplink_opts;

ps_uplink *ps_uplink_new(uv_loop_t *loop, ps_batcher *batcher, const ps_uplink_opts *o);
void ps_uplink_start(ps_uplink *u);
/* Interface known to the sensor: announced now if connected, and after
 * every reconnect. Copies the strings. Returns 0 or -1 on OOM. */
int ps_uplink_add_iface(ps_uplink *u, uint32_t index, uint32_t linktype, uint32_t snaplen,
                        const char *name, const char *desc);
/* The same for a job's capture (v2 only: not announced in a v1 session). */
int ps_uplink_add_iface_job(ps_uplink *u, uint32_t index, uint32_t linktype, uint32_t snaplen,
                            const char *name, const char *desc, uint64_t job);
/* Sends JOB_STATUS now if connected in a v2 session. 0, or -1 when not sent
 * (the caller sends again on its next tick, or when the receiver asks again
 * with JOB_START). */
int ps_uplink_send_job_status(ps_uplink *u, const ps_job_status *st);
/* The version of the current session (0 when not connected). */
uint16_t ps_uplink_version(const ps_uplink *u);
/* Sends a STATS frame now if connected (counters are cumulative, so one
 * lost while disconnected is made good by the next). 0, or -1 when not sent. */
int ps_uplink_send_stats(ps_uplink *u, const ps_stats *st);
/* batcher callbacks */
void ps_uplink_on_sealed(void *u, ps_batch *b);
void ps_uplink_on_ready(void *u, ps_batch *b);

int ps_uplink_spool_full(const ps_uplink *u);
/*
 * spool.dropPolicy "oldest": removes the oldest batch that was never written
 * to any connection (so the receiver cannot have it: a count of what is lost
 * stays exact) to make room for new packets. each (may be NULL) sees the
 * batch first, so the caller can count its records per interface. Returns
 * the number of packets evicted, 0 if no batch qualified.
 */
uint64_t ps_uplink_evict_oldest(ps_uplink *u, void (*each)(void *ud, const ps_batch *b), void *ud);
/* True while a session with the receiver is established (handshake done). */
int ps_uplink_connected(const ps_uplink *u);
/* True when every sealed batch has been acknowledged. */
int ps_uplink_drained(const ps_uplink *u);
/* Sends BYE, closes the connection and all handles; done runs when closed. */
void ps_uplink_stop(ps_uplink *u, void (*done)(void *ud));
void ps_uplink_free(ps_uplink *u);

typedef struct ps_uplink_totals {
    uint64_t acked_batches, acked_packets, connects, reconnects, spool_bytes, spool_batches;
    uint64_t resent_batches;
    uint64_t evicted_batches, evicted_packets; /* spool.dropPolicy oldest */
} ps_uplink_totals;
void ps_uplink_get_totals(const ps_uplink *u, ps_uplink_totals *t);
/* "127.0.0.1:8081" */
const char *ps_uplink_target(const ps_uplink *u);

#endif
