/*
 * bpf: builds the BPF filter expression of one interface. Pure: no I/O, no
 * libpcap; tests/unit/test_bpf.c holds the table of expected strings.
 *
 * The expression is the AND of these clauses, each parenthesised on its own
 * so that no "or" inside one can leak into another (the original's allow mode
 * produced "not (...) and port 1 or port 2"):
 *
 *   not (host R and tcp port P)   for every address R of the receiver: the
 *                                 sensor's own stream, both directions, is
 *                                 never captured (it would feed itself)
 *   not (port A or port B ...)    ignorePorts: never captured, in any mode
 *   (port C or port D ...)        pcapMode allow: capturePorts plus this
 *                                 interface's captureInterfacesPorts
 *   not (port C or port D ...)    pcapMode deny: the same set, excluded
 *   (USER)                        capture.filter / --filter, as written
 *
 * pcapMode all adds no port clause. In allow mode an interface listed in
 * captureInterfacesPorts with no ports is captured whole; an interface whose
 * allowed set is empty (no capturePorts, not listed) captures nothing, which
 * the builder reports so that the sensor does not open it at all.
 */
#ifndef PS_BPF_H
#define PS_BPF_H

#include <stddef.h>

#include "core/config.h"

typedef struct ps_bpf_spec {
    ps_pcap_mode mode;
    const ps_port_list *capture_ports; /* may be NULL: none */
    const ps_port_list *iface_ports;   /* this interface's entry; NULL: not listed */
    const ps_port_list *ignore_ports;  /* may be NULL: none */
    const char *user_filter;           /* may be NULL or empty */
    const char *const *receiver_addrs; /* numeric addresses, no scope suffix */
    size_t n_receiver_addrs;
    int receiver_port; /* 1..65535; with no address no exclusion is added */
} ps_bpf_spec;

#define PS_BPF_OK 0
#define PS_BPF_NOTHING 1       /* allow mode with no port for this interface */
#define PS_BPF_E_TOO_LONG -1   /* out too small (the string is truncated) */
#define PS_BPF_E_BAD_ADDR -2   /* a receiver address is not a plain numeric IPv4/IPv6 */
#define PS_BPF_E_BAD_FILTER -3 /* the user expression has unbalanced parentheses */

/* Writes the expression ("" when there is nothing to filter) into out.
 * Returns PS_BPF_OK, PS_BPF_NOTHING or a negative PS_BPF_E_* code. */
int ps_bpf_build(const ps_bpf_spec *s, char *out, size_t outlen);
/* A sentence for a PS_BPF_E_* code, for the user. */
const char *ps_bpf_strerror(int err);

/* The entry of captureInterfacesPorts for ifname, or NULL. */
const ps_port_list *ps_bpf_iface_ports(const ps_config *c, const char *ifname);

#endif
