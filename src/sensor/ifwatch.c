/*
 * ifwatch: interface selection and the rtnetlink link watcher.
 *
 * Why netlink and not polling if_nameindex(): pods come and go in bursts, and
 * a pod's traffic should be captured within a second of its veth coming up;
 * the kernel pushes link events as they happen at no cost in between.
 *
 * Every message is treated as untrusted input even though it comes from the
 * kernel: NLMSG_OK and RTA_OK bound every walk, a name must be NUL-terminated
 * within its attribute, datagrams not sent by the kernel (nl_pid != 0) are
 * ignored, and a truncated datagram (MSG_TRUNC) is treated as lost events
 * and answered with a new dump.
 */
#include "ifwatch.h"

#include <errno.h>
#include <fnmatch.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

/* Pod-side (host end) interface names of common CNIs:
 *   veth*   bridge CNI, flannel, kindnet, kube-router, weave (vethwe*), podman
 *   cali*   Calico (and Canal)
 *   lxc*    Cilium endpoints (cilium_* are Cilium's own host devices: not pods)
 *   eni*    AWS VPC CNI
 *   gke*    GKE dataplane v1
 *   azv*    Azure CNI
 *   vnet*   KubeVirt/libvirt guest taps
 *   tap*    Kata/Firecracker-style VM sandboxes
 * The node's uplinks (eth*, ens*, eno*, bond*) and overlay devices
 * (flannel.1, vxlan.calico, cni0, cilium_vxlan) are not pod interfaces: the
 * pod traffic on them is encapsulated or duplicated. */
const char *const ps_ifsel_pod_patterns[] = {"veth*", "cali*", "lxc*", "eni*", "gke*",
                                             "azv*",  "vnet*", "tap*", NULL};

static int any_match(char *const *globs, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (globs[i] && fnmatch(globs[i], name, 0) == 0)
            return 1;
    return 0;
}

int ps_ifsel_match(const ps_ifsel *s, const char *name, int loopback)
{
    if (!name || !*name)
        return 0;
    if (any_match(s->exclude, s->n_exclude, name))
        return 0;
    if (any_match(s->include, s->n_include, name))
        return 1;
    if (s->pods) {
        for (size_t i = 0; ps_ifsel_pod_patterns[i]; i++)
            if (fnmatch(ps_ifsel_pod_patterns[i], name, 0) == 0)
                return 1;
        return 0;
    }
    return s->n_include == 0 && !loopback;
}

/* ---- parsing ---- */

static int parse_link(const struct nlmsghdr *nh, ps_link_cb cb, void *ud)
{
    if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
        return -1;
    const struct ifinfomsg *ifi = NLMSG_DATA(nh);
    ps_link l;
    memset(&l, 0, sizeof(l));
    l.ifindex = ifi->ifi_index;
    l.flags = ifi->ifi_flags;
    l.removed = nh->nlmsg_type == RTM_DELLINK;
    int rlen = (int)(nh->nlmsg_len - NLMSG_LENGTH(sizeof(*ifi)));
    /* IFLA_RTA is not const-clean; compute the first attribute by hand. */
    const struct rtattr *rta =
        (const struct rtattr *)((const char *)ifi + NLMSG_ALIGN(sizeof(*ifi)));
    for (; RTA_OK(rta, rlen); rta = RTA_NEXT(rta, rlen)) {
        if (rta->rta_type != IFLA_IFNAME)
            continue;
        size_t plen = RTA_PAYLOAD(rta);
        const char *name = RTA_DATA(rta);
        size_t n = strnlen(name, plen);
        if (n == 0 || n == plen || n >= sizeof(l.name))
            return -1; /* empty, not terminated or too long */
        memcpy(l.name, name, n + 1);
    }
    if (l.ifindex <= 0 || !l.name[0])
        return -1;
    cb(ud, &l);
    return 0;
}

int ps_ifwatch_parse(const void *buf, size_t len, ps_link_cb cb, void *ud)
{
    if (len > (size_t)INT32_MAX)
        return -1;
    int rem = (int)len;
    const struct nlmsghdr *nh = buf;
    for (; NLMSG_OK(nh, rem); nh = NLMSG_NEXT(nh, rem)) {
        switch (nh->nlmsg_type) {
        case NLMSG_DONE:
            return 1;
        case NLMSG_ERROR:
            return -2;
        case NLMSG_NOOP:
            continue;
        case RTM_NEWLINK:
        case RTM_DELLINK:
            if (parse_link(nh, cb, ud) != 0)
                return -1;
            continue;
        default:
            continue;
        }
    }
    /* Bytes left that do not form a whole message: a truncated datagram. */
    return rem == 0 ? 0 : -1;
}

/* ---- the watcher ---- */

#define PS_IFWATCH_BUF (64 * 1024)
#define PS_IFWATCH_RCVBUF (4 * 1024 * 1024)

struct ps_ifwatch {
    uv_poll_t poll;
    int fd;
    ps_link_cb cb;
    void (*dump_done)(void *ud);
    void *ud;
    int dump_pending, dump_reported;
    uint32_t seq;
    unsigned char *buf;
};

static int send_dump(ps_ifwatch *w)
{
    struct {
        struct nlmsghdr nh;
        struct ifinfomsg ifi;
    } req;
    memset(&req, 0, sizeof(req));
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifi));
    req.nh.nlmsg_type = RTM_GETLINK;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nh.nlmsg_seq = ++w->seq;
    req.ifi.ifi_family = AF_UNSPEC;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(w->fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -1;
    w->dump_pending = 1;
    return 0;
}

static void on_netlink(uv_poll_t *h, int status, int events)
{
    ps_ifwatch *w = h->data;
    (void)events;
    if (status < 0) {
        ps_warn("sensor", "interface watcher: %s", uv_strerror(status));
        return;
    }
    /* Bounded so a storm of link events cannot monopolise the loop. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_nl from;
        socklen_t fromlen = sizeof(from);
        ssize_t n = recvfrom(w->fd, w->buf, PS_IFWATCH_BUF, MSG_DONTWAIT | MSG_TRUNC,
                             (struct sockaddr *)&from, &fromlen);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            if (errno == ENOBUFS) {
                /* The kernel dropped events: learn the state again. */
                ps_warn("sensor", "interface watcher lost events; reading all links again");
                if (send_dump(w) != 0)
                    ps_warn("sensor", "interface watcher: cannot dump links: %s", strerror(errno));
                continue;
            }
            ps_warn("sensor", "interface watcher: %s", strerror(errno));
            return;
        }
        if (fromlen != sizeof(from) || from.nl_pid != 0)
            continue; /* not from the kernel */
        if ((size_t)n > PS_IFWATCH_BUF) {
            ps_warn("sensor", "interface watcher: truncated message; reading all links again");
            send_dump(w);
            continue;
        }
        int rc = ps_ifwatch_parse(w->buf, (size_t)n, w->cb, w->ud);
        if (rc < 0)
            ps_warn("sensor", "interface watcher: %s netlink message ignored",
                    rc == -2 ? "error" : "malformed");
        if (rc == 1 && w->dump_pending) {
            w->dump_pending = 0;
            if (!w->dump_reported) {
                w->dump_reported = 1;
                if (w->dump_done)
                    w->dump_done(w->ud);
            }
        }
    }
}

int ps_ifwatch_open(ps_ifwatch **out, uv_loop_t *loop, ps_link_cb cb, void (*dump_done)(void *ud),
                    void *ud, char *err, size_t errlen)
{
    *out = NULL;
    ps_ifwatch *w = calloc(1, sizeof(*w));
    if (!w || !(w->buf = malloc(PS_IFWATCH_BUF))) {
        free(w);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->cb = cb;
    w->dump_done = dump_done;
    w->ud = ud;
    w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
    const char *what = "socket";
    if (w->fd < 0)
        goto fail;
    /* Pods come in bursts (a node drained onto this one, a rollout): each
     * link event is a ~1.5 KiB message, and the default buffer overflows
     * after a hundred or so, costing a full dump to recover. Ask for more;
     * SO_RCVBUFFORCE (CAP_NET_ADMIN) may exceed net.core.rmem_max, plain
     * SO_RCVBUF is capped by it. */
    int rcvbuf = PS_IFWATCH_RCVBUF;
    if (setsockopt(w->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0)
        (void)setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    what = "bind";
    if (bind(w->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto fail;
    what = "dump request";
    if (send_dump(w) != 0)
        goto fail;
    if (uv_poll_init(loop, &w->poll, w->fd) != 0) {
        errno = EINVAL;
        what = "poll";
        goto fail;
    }
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_netlink);
    *out = w;
    return 0;
fail:
    snprintf(err, errlen, "cannot watch network interfaces (rtnetlink %s): %s", what,
             strerror(errno));
    if (w->fd >= 0)
        close(w->fd);
    free(w->buf);
    free(w);
    return -1;
}

static void on_closed(uv_handle_t *h)
{
    ps_ifwatch *w = h->data;
    close(w->fd);
    free(w->buf);
    free(w);
}

void ps_ifwatch_close(ps_ifwatch *w)
{
    if (!w)
        return;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, on_closed);
}
