/*
 * privs: the sensor's identity and capabilities, settled once at start.
 *
 * Live capture needs CAP_NET_RAW (packet sockets, rings, promiscuous
 * membership) and CAP_NET_ADMIN (interface-level operations); nothing else.
 * Two ways get them to a process that runs under a non-root uid:
 *
 *  - drop (privileges.user / --user, like tcpdump's -Z): the container starts
 *    the sensor as uid 0 with NET_RAW, NET_ADMIN, SETUID, SETGID and SETPCAP;
 *    ps_privs_start() narrows the bounding set to NET_RAW+NET_ADMIN (when it
 *    holds SETPCAP), switches groups, gid and uid with PR_SET_KEEPCAPS, then
 *    sets permitted = effective = {NET_RAW, NET_ADMIN} (whatever of them it
 *    was given), inheritable and ambient empty, and sets no_new_privs. Every
 *    runtime hands a uid-0 process its added capabilities as permitted and
 *    effective, so this works on containerd, CRI-O, cri-dockerd and Fargate.
 *    If the switch cannot be made the sensor stops: it never runs on as root
 *    when asked not to.
 *
 *  - file capabilities: the image's binary carries cap_net_raw,cap_net_admin+p
 *    ("permitted" only: an effective file capability the bounding set cannot
 *    grant makes execve fail where NET_ADMIN is not granted, e.g. Fargate).
 *    The kernel grants them at execve to a non-root process, but under
 *    no_new_privs (allowPrivilegeEscalation: false) only as far as the
 *    process's permitted set already held them. containerd and podman start
 *    a non-root process with the added capabilities permitted, so that
 *    works; CRI-O and Docker >= 20.10.14 (cri-dockerd) start it with an
 *    empty permitted set, so it gets nothing. ps_privs_start() raises what
 *    was permitted to effective and drops the rest.
 *
 * Either way, a live sensor that ends up without CAP_NET_RAW logs one error
 * naming the runtime condition and the setting to change (capture then fails
 * on the first interface with its own message). Started as root without
 * privileges.user, the sensor keeps what it was given (as before), and says
 * so at info level.
 */
#ifndef PS_PRIVS_H
#define PS_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

/* Resolves "USER[:GROUP]": names through the passwd/group databases, numbers
 * as they are. Without GROUP: the user's primary group, or for a number with
 * no passwd entry the same number. 0, or -1 with err set. */
int ps_privs_resolve(const char *spec, uid_t *uid, gid_t *gid, char *err, size_t errlen);

/* The start-up step described above. user: privileges.user or NULL;
 * capture: 1 for live capture (keep NET_RAW and NET_ADMIN), 0 for
 * --read-file (keep none). Call while the process has one thread:
 * capabilities are per thread. Returns 0 to go on, -1 to stop (err says
 * why). */
int ps_privs_start(const char *user, int capture, char *err, size_t errlen);

#endif
