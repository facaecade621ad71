/*
 * privs: switch to the configured user keeping NET_RAW/NET_ADMIN, or raise
 * file capabilities to effective; diagnose a missing CAP_NET_RAW (privs.h).
 * Raw capget/capset and prctl: a handful of syscalls, no libcap dependency.
 */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"

#define CAPBIT(c) (UINT64_C(1) << (c))
#define KEEP_CAPTURE (CAPBIT(CAP_NET_RAW) | CAPBIT(CAP_NET_ADMIN))
#define SWITCH_CAPS (CAPBIT(CAP_SETUID) | CAPBIT(CAP_SETGID))

/* The Helm values and plain settings that fix a missing capability, named
 * once so every message gives the same advice. */
#define DROP_ADVICE                                                                                \
    "start the sensor as root and let it switch to an unprivileged user (Helm: "                   \
    "sensor.privileges.mode=drop, the default; elsewhere: uid 0, "                                 \
    "PACKETSTREAMER_PRIVILEGES_USER=65532:65532 and capabilities NET_RAW, NET_ADMIN, SETUID, "     \
    "SETGID, SETPCAP)"

typedef struct capsets {
    uint64_t eff, prm, inh;
} capsets;

static int caps_get(capsets *c)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &hdr, d) != 0)
        return -1;
    c->eff = (uint64_t)d[1].effective << 32 | d[0].effective;
    c->prm = (uint64_t)d[1].permitted << 32 | d[0].permitted;
    c->inh = (uint64_t)d[1].inheritable << 32 | d[0].inheritable;
    return 0;
}

static int caps_set(const capsets *c)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {
        {(uint32_t)c->eff, (uint32_t)c->prm, (uint32_t)c->inh},
        {(uint32_t)(c->eff >> 32), (uint32_t)(c->prm >> 32), (uint32_t)(c->inh >> 32)}};
    return syscall(SYS_capset, &hdr, d) == 0 ? 0 : -1;
}

/* Highest capability number this kernel knows (it may know more than the
 * headers we were built with). */
static int last_cap(void)
{
    int last = CAP_LAST_CAP;
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
    if (f) {
        int v;
        if (fscanf(f, "%d", &v) == 1 && v > 0 && v < 64)
            last = v;
        fclose(f);
    }
    return last;
}

static uint64_t bounding_set(void)
{
    uint64_t b = 0;
    for (int c = 0, last = last_cap(); c <= last; c++)
        if (prctl(PR_CAPBSET_READ, (unsigned long)c, 0, 0, 0) == 1)
            b |= CAPBIT(c);
    return b;
}

static void clear_ambient(void)
{
    /* EINVAL: a kernel before 4.3 has no ambient set, so nothing to clear. */
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

static int is_number(const char *s, size_t n)
{
    if (n == 0 || n > 10)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int ps_privs_resolve(const char *spec, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
    char name[64];
    const char *colon = strchr(spec, ':');
    size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
    if (ulen == 0 || ulen >= sizeof(name) || (colon && colon[1] == '\0')) {
        snprintf(err, errlen, "privileges.user: '%s' is not USER[:GROUP]", spec);
        return -1;
    }
    memcpy(name, spec, ulen);
    name[ulen] = '\0';
    const struct passwd *pw = NULL;
    if (is_number(name, ulen)) {
        unsigned long v = strtoul(name, NULL, 10);
        if (v >= UINT32_MAX) {
            snprintf(err, errlen, "privileges.user: uid %s is out of range", name);
            return -1;
        }
        *uid = (uid_t)v;
        pw = getpwuid(*uid);
        *gid = pw ? pw->pw_gid : (gid_t)v;
    } else {
        pw = getpwnam(name);
        if (!pw) {
            snprintf(err, errlen,
                     "privileges.user: no user '%s' in the passwd database; give a number "
                     "(e.g. 65532:65532)",
                     name);
            return -1;
        }
        *uid = pw->pw_uid;
        *gid = pw->pw_gid;
    }
    if (!colon)
        return 0;
    const char *g = colon + 1;
    if (is_number(g, strlen(g))) {
        unsigned long v = strtoul(g, NULL, 10);
        if (v >= UINT32_MAX) {
            snprintf(err, errlen, "privileges.user: gid %s is out of range", g);
            return -1;
        }
        *gid = (gid_t)v;
        return 0;
    }
    const struct group *gr = getgrnam(g);
    if (!gr) {
        snprintf(err, errlen,
                 "privileges.user: no group '%s' in the group database; give a number "
                 "(e.g. 65532:65532)",
                 g);
        return -1;
    }
    *gid = gr->gr_gid;
    return 0;
}

/* Non-root, or root kept as is: permitted and effective become what was
 * permitted and is kept; inheritable and ambient empty. Only ever lowers. */
static int narrow(uint64_t keep, char *err, size_t errlen)
{
    capsets c;
    if (caps_get(&c) != 0) {
        snprintf(err, errlen, "cannot read capabilities: %s", strerror(errno));
        return -1;
    }
    capsets n = {.prm = c.prm & keep, .eff = c.prm & keep, .inh = 0};
    if ((n.prm != c.prm || n.eff != c.eff || n.inh != c.inh) && caps_set(&n) != 0) {
        snprintf(err, errlen, "cannot set capabilities: %s", strerror(errno));
        return -1;
    }
    clear_ambient();
    return 0;
}

static int switch_user(uid_t uid, gid_t gid, uint64_t keep, char *err, size_t errlen)
{
    capsets c;
    if (caps_get(&c) != 0) {
        snprintf(err, errlen, "cannot read capabilities: %s", strerror(errno));
        return -1;
    }
    if ((c.prm & SWITCH_CAPS) != SWITCH_CAPS) {
        snprintf(err, errlen,
                 "privileges.user: switching from root to uid %u needs CAP_SETUID and "
                 "CAP_SETGID, which the sensor was not given (permitted 0x%" PRIx64
                 "): add SETUID, SETGID and SETPCAP to the container's capabilities next "
                 "to NET_RAW and NET_ADMIN, as the Helm chart's sensor.privileges.mode=drop does",
                 (unsigned)uid, c.prm);
        return -1;
    }
    /* Root's effective set normally equals its permitted set; make sure. */
    capsets up = {.eff = c.prm, .prm = c.prm, .inh = c.inh};
    if (c.eff != c.prm && caps_set(&up) != 0) {
        snprintf(err, errlen, "cannot raise capabilities: %s", strerror(errno));
        return -1;
    }
    if (c.prm & CAPBIT(CAP_SETPCAP)) {
        for (int cap = 0, last = last_cap(); cap <= last; cap++) {
            if ((keep & CAPBIT(cap)) || prctl(PR_CAPBSET_READ, (unsigned long)cap, 0, 0, 0) != 1)
                continue;
            if (prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0) != 0) {
                snprintf(err, errlen, "cannot drop capability %d from the bounding set: %s", cap,
                         strerror(errno));
                return -1;
            }
        }
    } else {
        ps_info("sensor", "privileges: no CAP_SETPCAP, so the bounding set stays as the "
                          "container gave it; permitted and effective are still narrowed");
    }
    /* KEEPCAPS keeps the permitted set across the uid change (the effective
     * set is cleared by it regardless, and raised again below). */
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 || setgroups(1, &gid) != 0 ||
        setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        snprintf(err, errlen, "privileges.user: cannot switch to uid %u gid %u: %s", (unsigned)uid,
                 (unsigned)gid, strerror(errno));
        return -1;
    }
    (void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    capsets n = {.prm = c.prm & keep, .eff = c.prm & keep, .inh = 0};
    if (caps_set(&n) != 0) {
        snprintf(err, errlen, "cannot set capabilities after switching user: %s", strerror(errno));
        return -1;
    }
    clear_ambient();
    /* Belt and braces, as tcpdump and OpenSSH do: the way back to root must
     * now be closed. */
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid ||
        getresgid(&rg, &eg, &sg) != 0 || rg != gid || eg != gid || sg != gid ||
        setresuid(0, 0, 0) == 0) {
        snprintf(err, errlen, "privileges.user: the switch to uid %u did not hold", (unsigned)uid);
        return -1;
    }
    /* Nothing is exec'd after this; make sure nothing ever could gain. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Why a live sensor has no CAP_NET_RAW, from what it had at start. */
static void diagnose(char *buf, size_t len, uid_t uid, uint64_t prm0, uint64_t bnd, int nnp)
{
    if (!(bnd & CAPBIT(CAP_NET_RAW)))
        snprintf(buf, len,
                 "no CAP_NET_RAW: the container was not granted it (it is not in the capability "
                 "bounding set); add NET_RAW and NET_ADMIN to the container's capabilities "
                 "(securityContext.capabilities.add, --cap-add)");
    else if (uid != 0 && nnp && !(prm0 & CAPBIT(CAP_NET_RAW)))
        snprintf(buf, len,
                 "no CAP_NET_RAW: the sensor runs as uid %u and the container runtime started it "
                 "with an empty permitted capability set under no_new_privs "
                 "(allowPrivilegeEscalation: false), so the kernel did not grant the binary's "
                 "file capabilities at execve (CRI-O and cri-dockerd / Docker >= 20.10.14 clear "
                 "the permitted set of a non-root process; containerd and podman do not). "
                 "Either " DROP_ADVICE ", or allow privilege escalation for the file-capability "
                 "path (Helm: sensor.privileges.mode=fileCaps, which sets "
                 "allowPrivilegeEscalation: true)",
                 (unsigned)uid);
    else if (uid != 0)
        snprintf(buf, len,
                 "no CAP_NET_RAW: the sensor runs as uid %u and neither the binary's file "
                 "capabilities (setcap cap_net_raw,cap_net_admin+p) nor the runtime gave it "
                 "any; " DROP_ADVICE,
                 (unsigned)uid);
    else
        snprintf(buf, len,
                 "no CAP_NET_RAW: the sensor runs as root without it in its permitted "
                 "set; grant NET_RAW to the container");
}

int ps_privs_start(const char *user, int capture, char *err, size_t errlen)
{
    uint64_t keep = capture ? KEEP_CAPTURE : 0;
    capsets c0;
    if (caps_get(&c0) != 0) {
        snprintf(err, errlen, "cannot read capabilities: %s", strerror(errno));
        return -1;
    }
    uint64_t bnd0 = bounding_set();
    int nnp0 = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1;
    uid_t ruid, euid, suid;
    if (getresuid(&ruid, &euid, &suid) != 0) {
        snprintf(err, errlen, "cannot read the user id: %s", strerror(errno));
        return -1;
    }
    int root = ruid == 0 || euid == 0 || suid == 0;
    int switched = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    if (user && ps_privs_resolve(user, &uid, &gid, err, errlen) != 0)
        return -1;
    if (user && uid == 0) {
        ps_warn("sensor", "privileges.user is root: the sensor keeps every capability it was "
                          "given; set an unprivileged user (e.g. 65532:65532)");
    } else if (user && root) {
        if (switch_user(uid, gid, keep, err, errlen) != 0)
            return -1;
        switched = 1;
    } else if (user && (ruid != uid || euid != uid)) {
        snprintf(err, errlen,
                 "privileges.user asks for uid %u but the sensor was started as uid %u, not "
                 "root, and cannot switch users: start it as root or unset privileges.user",
                 (unsigned)uid, (unsigned)euid);
        return -1;
    } else if (!root && narrow(keep, err, errlen) != 0) {
        return -1;
    } else if (root && capture) {
        ps_info("sensor", "privileges: running as root with every capability the container "
                          "gave; privileges.user (--user) switches to an unprivileged user "
                          "keeping only NET_RAW and NET_ADMIN");
    }
    capsets c;
    if (caps_get(&c) != 0) {
        snprintf(err, errlen, "cannot read capabilities: %s", strerror(errno));
        return -1;
    }
    ps_log(switched ? PS_LOG_INFO : PS_LOG_DEBUG, "sensor",
           "privileges: uid=%u gid=%u CapEff=0x%" PRIx64 " CapPrm=0x%" PRIx64 " CapBnd=0x%" PRIx64
           " NoNewPrivs=%d",
           (unsigned)geteuid(), (unsigned)getegid(), c.eff, c.prm, bounding_set(),
           prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    if (capture && !(c.eff & CAPBIT(CAP_NET_RAW))) {
        char why[1024];
        diagnose(why, sizeof(why), ruid, c0.prm, bnd0, nnp0);
        ps_error("sensor", "%s", why);
    }
    return 0;
}
