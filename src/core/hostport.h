/*
 * hostport: the one grammar of "HOST:PORT" in packetstreamer, and its
 * formatting.
 *
 * Accepted: NAME:PORT, IPV4:PORT and [IPV6]:PORT, where the host is 1..255
 * bytes without blanks or control characters (a bare IPv6 address needs the
 * brackets), and PORT is 1..5 decimal digits, 0..65535. Port 0 is syntax
 * here; whether it is allowed (a listening address: "any free port") or not
 * (a peer to dial) is the caller's rule, through PS_HOSTPORT_PORT0.
 *
 * Configuration checks (http.listen), the command line (--receiver,
 * --listen, --http) and the HTTP server all call ps_hostport_parse(), so a
 * value that check-config accepts is one the process can parse. Whether it
 * can be *bound* is only known at startup, where a failure is an error.
 * Pure: no I/O, no name resolution.
 */
#ifndef PS_HOSTPORT_H
#define PS_HOSTPORT_H

#include <stddef.h>

#define PS_HOSTPORT_HOST_MAX 256 /* host buffer size, NUL included */

/* Flags for ps_hostport_parse. */
#define PS_HOSTPORT_PORT0 1u /* port 0 is allowed (listen addresses) */

typedef struct ps_hostport {
    char host[PS_HOSTPORT_HOST_MAX]; /* without brackets */
    int port;
} ps_hostport;

/* Parses s into out. Returns 0, or -1 if s is not HOST:PORT as above. */
int ps_hostport_parse(const char *s, unsigned flags, ps_hostport *out);

/* Writes "host:port", or "[host]:port" when host contains ':' (IPv6), into
 * out (always NUL-terminated when outlen > 0). Returns out. */
char *ps_hostport_format(const char *host, int port, char *out, size_t outlen);

/* The message that goes with a rejected value: "'VALUE' is not HOST:PORT
 * (IPv6 as [ADDR]:PORT)" with VALUE bounded and control characters shown
 * as '?'. `what` is "HOST" or "ADDR". Returns out. */
char *ps_hostport_explain(const char *s, const char *what, char *out, size_t outlen);

#endif
