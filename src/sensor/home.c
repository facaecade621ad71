/*
 * home: rendezvous hashing over a receiver tier's addresses, with a sticky
 * home. See home.h for the rules; this file is their arithmetic.
 */
#include "home.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* FNV-1a over "id\0addr", then splitmix64's finaliser: FNV alone leaves
 * the high bits poorly mixed for short inputs that differ in one byte. */
uint64_t ps_home_weight(const char *sensor_id, const char *addr)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = sensor_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0) * 1099511628211ull;
    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

int ps_home_addr_text(const struct sockaddr *sa, char out[PS_HOME_ADDR_LEN])
{
    const void *a = NULL;
    if (sa->sa_family == AF_INET)
        a = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!a || !inet_ntop(sa->sa_family, a, out, PS_HOME_ADDR_LEN))
        return -1;
    return 0;
}

static int failures(const ps_home *h, const char *addr, uint64_t now_ms)
{
    for (int i = 0; i < h->n_failed; i++)
        if (strcmp(h->failed[i].addr, addr) == 0)
            return now_ms - h->failed[i].last_ms > PS_HOME_FORGET_MS ? 0 : (int)h->failed[i].fails;
    return 0;
}

const struct addrinfo *ps_home_pick(const ps_home *h, const char *sensor_id,
                                    const struct addrinfo *res, uint64_t now_ms)
{
    const struct addrinfo *best = NULL, *best_any = NULL;
    uint64_t w_best = 0, w_any = 0;
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        char t[PS_HOME_ADDR_LEN];
        if (!a->ai_addr || ps_home_addr_text(a->ai_addr, t) != 0)
            continue;
        int fails = failures(h, t, now_ms);
        if (h->home[0] && strcmp(t, h->home) == 0 && fails < PS_HOME_FAILS)
            return a; /* home is still there */
        uint64_t w = ps_home_weight(sensor_id, t);
        if (!best_any || w > w_any) {
            best_any = a;
            w_any = w;
        }
        if (fails < PS_HOME_FAILS && (!best || w > w_best)) {
            best = a;
            w_best = w;
        }
    }
    return best ? best : best_any; /* every one failed: the best-ranked again */
}

void ps_home_accepted(ps_home *h, const struct sockaddr *sa)
{
    char t[PS_HOME_ADDR_LEN];
    if (ps_home_addr_text(sa, t) != 0)
        return;
    memcpy(h->home, t, sizeof(t));
    for (int i = 0; i < h->n_failed; i++)
        if (strcmp(h->failed[i].addr, t) == 0) {
            h->failed[i] = h->failed[--h->n_failed];
            break;
        }
}

void ps_home_failed(ps_home *h, const struct sockaddr *sa, uint64_t now_ms)
{
    char t[PS_HOME_ADDR_LEN];
    if (ps_home_addr_text(sa, t) != 0)
        return;
    int i = 0;
    while (i < h->n_failed && strcmp(h->failed[i].addr, t) != 0)
        i++;
    if (i == h->n_failed) {
        if (h->n_failed == PS_HOME_MAX_FAILED) { /* forget the oldest */
            int old = 0;
            for (int k = 1; k < h->n_failed; k++)
                if (h->failed[k].last_ms < h->failed[old].last_ms)
                    old = k;
            i = old;
        } else {
            h->n_failed++;
        }
        memcpy(h->failed[i].addr, t, sizeof(t));
        h->failed[i].fails = 0;
    } else if (now_ms - h->failed[i].last_ms > PS_HOME_FORGET_MS) {
        h->failed[i].fails = 0;
    }
    h->failed[i].fails++;
    h->failed[i].last_ms = now_ms;
}
