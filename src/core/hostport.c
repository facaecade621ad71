/*
 * hostport: HOST:PORT parsing and formatting (see hostport.h). One strict
 * grammar, so that check-config, the flags and the HTTP server cannot
 * disagree about an address again.
 */
#include "hostport.h"

#include <stdio.h>
#include <string.h>

static int host_ok(const char *h, size_t n, int bracketed)
{
    if (n == 0 || n >= PS_HOSTPORT_HOST_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch <= ' ' || ch == 0x7f || ch == '[' || ch == ']' || ch == '/')
            return 0;
        if (ch == ':' && !bracketed)
            return 0; /* a bare IPv6 address needs brackets */
    }
    return 1;
}

int ps_hostport_parse(const char *s, unsigned flags, ps_hostport *out)
{
    const char *h, *colon;
    size_t hl;
    int bracketed = 0;

    if (!s || !out)
        return -1;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
        bracketed = 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        h = s;
        hl = (size_t)(colon - s);
    }
    if (!host_ok(h, hl, bracketed))
        return -1;
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (pl == 0 || pl > 5 || strspn(p, "0123456789") != pl)
        return -1;
    long port = 0;
    for (size_t i = 0; i < pl; i++)
        port = port * 10 + (p[i] - '0');
    if (port > 65535 || (port == 0 && !(flags & PS_HOSTPORT_PORT0)))
        return -1;
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    out->port = (int)port;
    return 0;
}

char *ps_hostport_format(const char *host, int port, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return out;
    if (!host)
        host = "";
    if (strchr(host, ':'))
        snprintf(out, outlen, "[%s]:%d", host, port);
    else
        snprintf(out, outlen, "%s:%d", host, port);
    return out;
}

char *ps_hostport_explain(const char *s, const char *what, char *out, size_t outlen)
{
    char shown[80];
    size_t i = 0;
    if (!out || outlen == 0)
        return out;
    for (; s && s[i] && i < sizeof(shown) - 4; i++) {
        unsigned char ch = (unsigned char)s[i];
        shown[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (s && s[i])
        memcpy(shown + i, "...", 3), i += 3;
    shown[i] = '\0';
    snprintf(out, outlen, "'%s' is not %s:PORT (IPv6 as [ADDR]:PORT)", shown, what);
    return out;
}
