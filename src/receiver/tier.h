/*
 * tier: what the other receivers of a tier see, so that any receiver's
 * status page and /api/sensors show the whole tier.
 *
 * tier.peers names the receivers' HTTP address as one DNS name and port (a
 * headless Service, "packetstreamer-receiver-headless:8080"). A thread
 * resolves it every tier.refreshSec, asks every address for
 * /api/sensors?scope=local (with http.token as a bearer token when set), and
 * keeps the answers; this receiver's own answer (PS_TIER_INSTANCE_HEADER)
 * is left out. Each entry names its receiver (tier.name, by default the
 * host name: the StatefulSet pod's name).
 * Bounds: 64 addresses, 16 MiB and 3 s per answer; a peer that fails is
 * reported with its error in /api/tier and its sensors are left out until it
 * answers again.
 */
#ifndef PS_RECEIVER_TIER_H
#define PS_RECEIVER_TIER_H

#include <jansson.h>

typedef struct ps_tier ps_tier;

/* /api/sensors?scope=local answers carry the answering process's random
 * instance id in this header: a receiver that finds its own among the
 * tier's addresses leaves it out. */
#define PS_TIER_INSTANCE_HEADER "X-Packetstreamer-Instance"

typedef struct ps_tier_opts {
    const char *peers;    /* "NAME:PORT" (hostport.h) */
    const char *instance; /* this process's PS_TIER_INSTANCE_HEADER value */
    const char *token;    /* http.token, or NULL */
    unsigned refresh_sec; /* 0: 5 */
} ps_tier_opts;

/* Starts the thread. 0, or -1 with err (a malformed tier.peers, OOM). */
int ps_tier_open(ps_tier **out, const ps_tier_opts *o, char *err, size_t errlen);
/* Appends to arr a copy of every sensor entry the other receivers reported
 * (objects with a "receiver" field). 0, or -1 on OOM. Any thread. */
int ps_tier_append_sensors(ps_tier *t, json_t *arr);
/* /api/tier: a new JSON array, one object per address last resolved:
 * {"address","receiver","ok","error","sensors","checked"}. NULL on OOM. */
json_t *ps_tier_status(ps_tier *t);
/* Stops and joins the thread, frees. NULL: no-op. */
void ps_tier_free(ps_tier *t);

#endif
