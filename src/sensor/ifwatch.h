/*
 * ifwatch: which interfaces exist, and which of them the sensor captures.
 *
 * Two parts:
 *
 * - Selection (pure): ps_ifsel_match() decides from a name whether the
 *   configuration picks an interface. Exclusions win; then explicit names or
 *   globs (capture.interfaces, --interface; fnmatch) and, in pod mode, the
 *   pod-side interface names of common CNIs (ps_ifsel_pod_patterns); with
 *   neither, every non-loopback interface. Whether it is up is the caller's
 *   business.
 *
 * - Watching (I/O): an rtnetlink socket subscribed to RTMGRP_LINK, polled by
 *   the libuv loop, plus an RTM_GETLINK dump at start (and again if the
 *   kernel reports that we lost events, ENOBUFS). Every link message becomes
 *   one ps_link callback with the link's current state: the callback sees
 *   additions, renames (same ifindex, new name), up/down changes and
 *   removals, and decides what to do. The parser is a pure function over a
 *   buffer, ps_ifwatch_parse(), and checks every length it reads.
 */
#ifndef PS_IFWATCH_H
#define PS_IFWATCH_H

#include <net/if.h>
#include <stddef.h>

#include <uv.h>

typedef struct ps_ifsel {
    char *const *include; /* names or globs; may be NULL with n_include 0 */
    int n_include;
    char *const *exclude;
    int n_exclude;
    int pods; /* pod mode */
} ps_ifsel;

/* NULL-terminated list of the globs pod mode picks. */
extern const char *const ps_ifsel_pod_patterns[];

/* 1 when the configuration picks the interface, 0 when not. */
int ps_ifsel_match(const ps_ifsel *s, const char *name, int loopback);

typedef struct ps_link {
    int ifindex;
    char name[IF_NAMESIZE];
    unsigned flags; /* IFF_UP, IFF_LOOPBACK, ... */
    int removed;    /* RTM_DELLINK: gone (or moved to another namespace) */
} ps_link;

typedef void (*ps_link_cb)(void *ud, const ps_link *l);

/*
 * Parses one datagram of rtnetlink messages and calls cb for each
 * RTM_NEWLINK/RTM_DELLINK. Returns 1 when the datagram ends a dump
 * (NLMSG_DONE), 0 otherwise, -1 when it is malformed (the messages before
 * the bad one were delivered) and -2 when it carries a netlink error.
 */
int ps_ifwatch_parse(const void *buf, size_t len, ps_link_cb cb, void *ud);

typedef struct ps_ifwatch ps_ifwatch;

/* Starts watching. dump_done runs once, after the initial dump. On error
 * returns -1 with a message in err. */
int ps_ifwatch_open(ps_ifwatch **out, uv_loop_t *loop, ps_link_cb cb, void (*dump_done)(void *ud),
                    void *ud, char *err, size_t errlen);
/* Stops and frees (asynchronously, no callback runs afterwards). */
void ps_ifwatch_close(ps_ifwatch *w);

#endif
