/*
 * bpf: the filter expression builder (see bpf.h for the grammar).
 *
 * Ports are merged (capturePorts + the interface's own), deduplicated and
 * kept in their first-seen order so the strings are stable for the tests and
 * for a human reading the log line that prints them. Receiver addresses are
 * checked to be numeric before they go into the string: a name here would
 * make pcap_compile() resolve it, blocking the loop, and a stray character
 * could change the expression's meaning.
 */
#include "bpf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct sb {
    char *p;
    size_t len, cap;
    int overflow;
} sb;

static void sb_add(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sb *b, const char *fmt, ...)
{
    if (b->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    b->len += (size_t)n;
}

static void sb_and(sb *b)
{
    if (b->len)
        sb_add(b, " and ");
}

static int addr_ok(const char *a)
{
    if (!a || !*a || strlen(a) > 45)
        return 0;
    for (const char *c = a; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F') ||
              *c == '.' || *c == ':'))
            return 0;
    return 1;
}

/* A user expression is wrapped in parentheses; unbalanced ones inside it
 * ("tcp) or (udp") would close ours early and OR the rest with everything
 * before, the sensor's own stream exclusion included. */
static int parens_balanced(const char *f)
{
    int depth = 0;
    for (; *f; f++) {
        if (*f == '(')
            depth++;
        else if (*f == ')' && --depth < 0)
            return 0;
    }
    return depth == 0;
}

/* " or "-joined "port N" list in parentheses. */
static void add_port_list(sb *b, const uint16_t *ports, int n)
{
    sb_add(b, "(");
    for (int i = 0; i < n; i++)
        sb_add(b, "%sport %u", i ? " or " : "", (unsigned)ports[i]);
    sb_add(b, ")");
}

int ps_bpf_build(const ps_bpf_spec *s, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return PS_BPF_E_TOO_LONG;
    out[0] = '\0';
    sb b = {out, 0, outlen, 0};

    if (s->receiver_port > 0 && s->receiver_port <= 65535)
        for (size_t i = 0; i < s->n_receiver_addrs; i++) {
            if (!addr_ok(s->receiver_addrs[i]))
                return PS_BPF_E_BAD_ADDR;
            sb_and(&b);
            sb_add(&b, "not (host %s and tcp port %d)", s->receiver_addrs[i], s->receiver_port);
        }

    if (s->ignore_ports && s->ignore_ports->count > 0) {
        sb_and(&b);
        sb_add(&b, "not ");
        add_port_list(&b, s->ignore_ports->ports, s->ignore_ports->count);
    }

    if (s->mode != PS_PCAP_ALL) {
        /* The union can hold up to two full lists. */
        uint16_t set[2 * PS_CONFIG_MAX_PORTS];
        int n = 0;
        const ps_port_list *lists[2] = {s->capture_ports, s->iface_ports};
        for (int l = 0; l < 2; l++) {
            if (!lists[l])
                continue;
            for (int i = 0; i < lists[l]->count; i++) {
                int dup = 0;
                for (int j = 0; j < n; j++)
                    dup |= set[j] == lists[l]->ports[i];
                if (!dup)
                    set[n++] = lists[l]->ports[i];
            }
        }
        if (s->mode == PS_PCAP_ALLOW) {
            int whole = s->iface_ports && s->iface_ports->count == 0;
            if (!whole && n == 0) {
                out[0] = '\0';
                return PS_BPF_NOTHING;
            }
            if (!whole) {
                sb_and(&b);
                add_port_list(&b, set, n);
            }
        } else if (n > 0) {
            sb_and(&b);
            sb_add(&b, "not ");
            add_port_list(&b, set, n);
        }
    }

    if (s->user_filter && *s->user_filter) {
        if (!parens_balanced(s->user_filter))
            return PS_BPF_E_BAD_FILTER;
        sb_and(&b);
        sb_add(&b, "(%s)", s->user_filter);
    }
    return b.overflow ? PS_BPF_E_TOO_LONG : PS_BPF_OK;
}

const ps_port_list *ps_bpf_iface_ports(const ps_config *c, const char *ifname)
{
    for (int i = 0; i < c->iface_ports_count; i++)
        if (c->iface_ports[i].iface && strcmp(c->iface_ports[i].iface, ifname) == 0)
            return &c->iface_ports[i].ports;
    return NULL;
}

const char *ps_bpf_strerror(int err)
{
    switch (err) {
    case PS_BPF_E_TOO_LONG:
        return "the capture filter is too long";
    case PS_BPF_E_BAD_ADDR:
        return "the receiver's address is not numeric";
    case PS_BPF_E_BAD_FILTER:
        return "unbalanced parentheses in the capture filter";
    default:
        return "cannot build the capture filter";
    }
}
