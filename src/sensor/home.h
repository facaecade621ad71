/*
 * home: which receiver of a tier this sensor talks to.
 *
 * A receiver tier is one DNS name (a headless Service) that resolves to
 * every receiver. The sensor picks its home by rendezvous (highest random
 * weight) hashing of its id over the resolved addresses: every sensor ranks
 * the receivers on its own, the same way, with no coordination, and the
 * sensors spread evenly. The home then sticks: a sensor moves only when its
 * home is gone (no longer resolved, or PS_HOME_FAILS connection attempts in
 * a row failed), to the best-ranked receiver that has not just failed, so a
 * receiver joining the tier takes no sensor from the others and exactly-once
 * holds per sensor while it stays home. What a move costs is in
 * docs/reliability.md (the batches in flight at the move may be written by
 * both receivers).
 *
 * Pure: no I/O. With one address (a ClusterIP Service, a host name) the
 * pick is that address, as before.
 */
#ifndef PS_HOME_H
#define PS_HOME_H

#include <netdb.h>
#include <stdint.h>

#define PS_HOME_FAILS 3         /* failed attempts in a row before a home is gone */
#define PS_HOME_FORGET_MS 60000 /* a failure older than this no longer counts */
#define PS_HOME_MAX_FAILED 32
#define PS_HOME_ADDR_LEN 64 /* numeric address text */

typedef struct ps_home {
    char home[PS_HOME_ADDR_LEN]; /* "" until a receiver accepted this sensor */
    struct {
        char addr[PS_HOME_ADDR_LEN];
        unsigned fails;
        uint64_t last_ms;
    } failed[PS_HOME_MAX_FAILED];
    int n_failed;
} ps_home;

/* The rendezvous weight of address text addr for sensor id. */
uint64_t ps_home_weight(const char *sensor_id, const char *addr);
/* The numeric text of an address ("10.0.0.1", "fd00::1"); 0, or -1. */
int ps_home_addr_text(const struct sockaddr *sa, char out[PS_HOME_ADDR_LEN]);
/* The entry of res to connect to now (NULL when res holds no IPv4/IPv6
 * address). */
const struct addrinfo *ps_home_pick(const ps_home *h, const char *sensor_id,
                                    const struct addrinfo *res, uint64_t now_ms);
/* The receiver at sa accepted this sensor: it is home. */
void ps_home_accepted(ps_home *h, const struct sockaddr *sa);
/* An attempt to reach sa failed (connect, TLS, handshake, or the
 * connection ended before an ACCEPT). */
void ps_home_failed(ps_home *h, const struct sockaddr *sa, uint64_t now_ms);

#endif
