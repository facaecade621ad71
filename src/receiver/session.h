/*
 * session: one sensor connection on the receiver, the protocol only.
 *
 * Decodes the sensor's frames in order: HELLO (answered with ACCEPT or
 * REJECT), IFACE (mapped to a writer interface), BATCH (checked, inflated
 * into a bounded buffer, its records handed to the writer and the live
 * feed), STATS, BYE. What it learns goes to its hub (hub_internal.h): the
 * registry entry it speaks for, every counter. The hub decides when to
 * flush and calls ps_session_ack; an ACK always means "written".
 *
 * Only hub.c calls these functions, and jobs.c ps_session_send (JOB_START,
 * JOB_STOP to v2 sessions it was told of). A session frees itself when its
 * connection has closed, after telling the hub (ps_hub_session_closed).
 */
#ifndef PS_RECEIVER_SESSION_H
#define PS_RECEIVER_SESSION_H

#include <stdint.h>

#include <uv.h>

#include "hub_internal.h"

typedef struct ssl_st SSL;

/* Takes ownership of tcp (accepted, malloc'd) and ssl (NULL: plaintext) in
 * every case. NULL on OOM (tcp closed, logged). */
ps_session *ps_session_new(ps_hub *hub, uv_tcp_t *tcp, SSL *ssl, const char *peer);
/* Starts reading (paused: not yet, writes are failing). A failure closes
 * the session. */
void ps_session_start(ps_session *s, int paused);
const char *ps_session_peer(const ps_session *s);
/* Nonzero until the handshake is accepted (the hub's pre-handshake budget). */
int ps_session_pending(const ps_session *s);
/* Cuts the session past its handshake or idle deadline (hub limits);
 * now_ms: uv_now. */
void ps_session_check_deadlines(ps_session *s, uint64_t now_ms);
/* Nonzero while batches were handed to the writer but not acknowledged. */
int ps_session_unacked(const ps_session *s);
/* After a successful flush: sends the ACK for what is now written. 1 when
 * one was sent (latency_s: since the oldest batch it covers arrived), else 0. */
int ps_session_ack(ps_session *s, double *latency_s);
/* Queues a whole encoded frame to the sensor: 0, or -1 (not connected,
 * out of memory). */
int ps_session_send(ps_session *s, const void *buf, size_t len);
/* Stops (on) or resumes reading. */
void ps_session_pause(ps_session *s, int on);
/* graceful: after what is queued is sent (shutdown); else at once. */
void ps_session_close(ps_session *s, int graceful, const char *why);

#endif
