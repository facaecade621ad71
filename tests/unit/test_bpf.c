/* Unit tests for sensor/bpf: a table of specs and the exact expressions they
 * give, each also compiled by libpcap on a dead handle (so every string the
 * builder can produce is valid BPF, not just what we expect). */
#include <pcap/pcap.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sensor/bpf.h"

static ps_port_list pl(int n, ...)
{
    ps_port_list l;
    memset(&l, 0, sizeof(l));
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        l.ports[l.count++] = (uint16_t)va_arg(ap, int);
    va_end(ap);
    return l;
}

static void assert_compiles(const char *expr)
{
    pcap_t *p = pcap_open_dead(DLT_EN10MB, 65535);
    assert_non_null(p);
    struct bpf_program prog;
    int rc = pcap_compile(p, &prog, expr, 1, PCAP_NETMASK_UNKNOWN);
    if (rc != 0)
        fail_msg("\"%s\" does not compile: %s", expr, pcap_geterr(p));
    pcap_freecode(&prog);
    pcap_close(p);
}

typedef struct bpf_case {
    const char *name;
    ps_pcap_mode mode;
    int ncap, cap[4];
    int iface_listed, nif, ifp[4];
    int nign, ign[4];
    const char *user;
    int naddr;
    const char *addr[3];
    int rport;
    int want_rc;
    const char *want;
} bpf_case;

static const bpf_case cases[] = {
    {"all, nothing", PS_PCAP_ALL, 0, {0}, 0, 0, {0}, 0, {0}, NULL, 0, {NULL}, 0, PS_BPF_OK, ""},
    {"all, receiver only",
     PS_PCAP_ALL,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     1,
     {"10.0.0.9"},
     8081,
     PS_BPF_OK,
     "not (host 10.0.0.9 and tcp port 8081)"},
    {"receiver v4+v6",
     PS_PCAP_ALL,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     2,
     {"10.0.0.9", "fd00::9"},
     9000,
     PS_BPF_OK,
     "not (host 10.0.0.9 and tcp port 9000) and not (host fd00::9 and tcp port 9000)"},
    {"all ignores capturePorts",
     PS_PCAP_ALL,
     2,
     {80, 443},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     ""},
    {"allow",
     PS_PCAP_ALLOW,
     2,
     {80, 443},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     "(port 80 or port 443)"},
    {"allow + receiver: parenthesised (the original's bug)",
     PS_PCAP_ALLOW,
     2,
     {1, 2},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     1,
     {"192.0.2.1"},
     8081,
     PS_BPF_OK,
     "not (host 192.0.2.1 and tcp port 8081) and (port 1 or port 2)"},
    {"allow, interface ports added, duplicates once",
     PS_PCAP_ALLOW,
     2,
     {80, 443},
     1,
     2,
     {443, 53},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     "(port 80 or port 443 or port 53)"},
    {"allow, only interface ports",
     PS_PCAP_ALLOW,
     0,
     {0},
     1,
     1,
     {53},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     "(port 53)"},
    {"allow, interface listed without ports: whole",
     PS_PCAP_ALLOW,
     2,
     {80, 443},
     1,
     0,
     {0},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     ""},
    {"allow, no port at all: nothing",
     PS_PCAP_ALLOW,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_NOTHING,
     ""},
    {"deny",
     PS_PCAP_DENY,
     2,
     {22, 2379},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     "not (port 22 or port 2379)"},
    {"deny, interface ports added",
     PS_PCAP_DENY,
     1,
     {22},
     1,
     1,
     {53},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     "not (port 22 or port 53)"},
    {"deny, empty: everything",
     PS_PCAP_DENY,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     ""},
    {"ignorePorts in all",
     PS_PCAP_ALL,
     0,
     {0},
     0,
     0,
     {0},
     2,
     {22, 53},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     "not (port 22 or port 53)"},
    {"ignorePorts win over allow",
     PS_PCAP_ALLOW,
     2,
     {80, 22},
     0,
     0,
     {0},
     1,
     {22},
     NULL,
     0,
     {NULL},
     0,
     PS_BPF_OK,
     "not (port 22) and (port 80 or port 22)"},
    {"user filter alone",
     PS_PCAP_ALL,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     "udp or icmp",
     0,
     {NULL},
     0,
     PS_BPF_OK,
     "(udp or icmp)"},
    {"everything",
     PS_PCAP_ALLOW,
     1,
     {80},
     1,
     1,
     {8080},
     1,
     {22},
     "tcp or udp",
     1,
     {"10.1.1.1"},
     8081,
     PS_BPF_OK,
     "not (host 10.1.1.1 and tcp port 8081) and not (port 22) and (port 80 or port 8080) and "
     "(tcp or udp)"},
    {"unbalanced user parens refused",
     PS_PCAP_ALL,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     "tcp) or (udp",
     1,
     {"10.1.1.1"},
     8081,
     PS_BPF_E_BAD_FILTER,
     NULL},
    {"closing paren first refused",
     PS_PCAP_ALL,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     ")(",
     0,
     {NULL},
     0,
     PS_BPF_E_BAD_FILTER,
     NULL},
    {"non-numeric receiver refused",
     PS_PCAP_ALL,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     1,
     {"recv or 1=1"},
     8081,
     PS_BPF_E_BAD_ADDR,
     NULL},
    {"receiver without port: no clause",
     PS_PCAP_ALL,
     0,
     {0},
     0,
     0,
     {0},
     0,
     {0},
     NULL,
     1,
     {"10.0.0.1"},
     0,
     PS_BPF_OK,
     ""},
};

static void run_case(const bpf_case *c)
{
    ps_port_list cap = pl(0), ifp = pl(0), ign = pl(0);
    for (int i = 0; i < c->ncap; i++)
        cap.ports[cap.count++] = (uint16_t)c->cap[i];
    for (int i = 0; i < c->nif; i++)
        ifp.ports[ifp.count++] = (uint16_t)c->ifp[i];
    for (int i = 0; i < c->nign; i++)
        ign.ports[ign.count++] = (uint16_t)c->ign[i];
    ps_bpf_spec s = {.mode = c->mode,
                     .capture_ports = &cap,
                     .iface_ports = c->iface_listed ? &ifp : NULL,
                     .ignore_ports = &ign,
                     .user_filter = c->user,
                     .receiver_addrs = c->addr,
                     .n_receiver_addrs = (size_t)c->naddr,
                     .receiver_port = c->rport};
    char out[1024];
    int rc = ps_bpf_build(&s, out, sizeof(out));
    if (rc != c->want_rc)
        fail_msg("%s: rc %d, want %d (\"%s\")", c->name, rc, c->want_rc, out);
    if (c->want) {
        if (strcmp(out, c->want) != 0)
            fail_msg("%s:\n  got  \"%s\"\n  want \"%s\"", c->name, out, c->want);
        assert_compiles(out);
    }
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(&cases[i]);
}

/* 64 ports each of three lists, all distinct: the longest port clauses. */
static void test_full_lists_and_truncation(void **state)
{
    (void)state;
    ps_port_list cap = pl(0), ifp = pl(0), ign = pl(0);
    for (int i = 0; i < PS_CONFIG_MAX_PORTS; i++) {
        cap.ports[cap.count++] = (uint16_t)(1000 + i);
        ifp.ports[ifp.count++] = (uint16_t)(2000 + i);
        ign.ports[ign.count++] = (uint16_t)(3000 + i);
    }
    const char *addrs[] = {"2001:db8::1", "192.0.2.7"};
    ps_bpf_spec s = {.mode = PS_PCAP_ALLOW,
                     .capture_ports = &cap,
                     .iface_ports = &ifp,
                     .ignore_ports = &ign,
                     .user_filter = "ip or ip6",
                     .receiver_addrs = addrs,
                     .n_receiver_addrs = 2,
                     .receiver_port = 8081};
    static char out[8192];
    assert_int_equal(ps_bpf_build(&s, out, sizeof(out)), PS_BPF_OK);
    assert_non_null(strstr(out, "port 1063 or port 2000 or"));
    assert_non_null(strstr(out, "port 2063)"));
    assert_compiles(out);
    size_t full = strlen(out);
    char small[64];
    assert_int_equal(ps_bpf_build(&s, small, sizeof(small)), PS_BPF_E_TOO_LONG);
    assert_true(strlen(small) < sizeof(small));
    /* Exactly the right size fits; one byte less does not. */
    char *exact = malloc(full + 1);
    assert_non_null(exact);
    assert_int_equal(ps_bpf_build(&s, exact, full + 1), PS_BPF_OK);
    assert_int_equal(ps_bpf_build(&s, exact, full), PS_BPF_E_TOO_LONG);
    free(exact);
    assert_int_equal(ps_bpf_build(&s, NULL, 0), PS_BPF_E_TOO_LONG);
}

static void test_iface_ports_lookup(void **state)
{
    (void)state;
    ps_config c;
    memset(&c, 0, sizeof(c));
    char e0[] = "eth0", l0[] = "lo";
    c.iface_ports[0].iface = e0;
    c.iface_ports[0].ports = pl(1, 80);
    c.iface_ports[1].iface = l0;
    c.iface_ports_count = 2;
    assert_ptr_equal(ps_bpf_iface_ports(&c, "eth0"), &c.iface_ports[0].ports);
    assert_ptr_equal(ps_bpf_iface_ports(&c, "lo"), &c.iface_ports[1].ports);
    assert_null(ps_bpf_iface_ports(&c, "eth1"));
    assert_null(ps_bpf_iface_ports(&c, "eth"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_full_lists_and_truncation),
        cmocka_unit_test(test_iface_ports_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
