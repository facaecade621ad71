/*
 * fuzz_http: the pure HTTP helpers of src/core/http.c on what a client
 * controls: Range headers, URL unescaping, capture names, bearer tokens,
 * Host and Origin/Sec-Fetch-Site headers, JSON escaping. The input is split
 * at '\n' into fields (a missing field is NULL or empty), and each result is
 * checked against the helper's contract, so a wrong answer aborts like a
 * memory error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/http.h"
#include "receiver/filename.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NFIELDS 9

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* One copy, cut at '\n' into NUL-terminated fields. */
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *f[NFIELDS] = {0};
    char *p = buf;
    for (int i = 0; i < NFIELDS && p; i++) {
        f[i] = p;
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        p = nl ? nl + 1 : NULL;
    }

    /* 0: Range against a size taken from the first bytes. */
    uint64_t body = 0;
    memcpy(&body, data, size < 8 ? size : 8);
    body >>= (size > 0 ? data[0] % 64 : 0);
    uint64_t start = 0, len = 0;
    ps_range_result rr = ps_http_parse_range(f[0], body, &start, &len);
    if (rr == PS_RANGE_OK)
        check(len > 0 && start < body && len <= body - start);

    /* 1: unescape: never longer, NUL-terminated at the returned length. */
    if (f[1]) {
        size_t before = strlen(f[1]);
        size_t after = ps_http_unescape(f[1]);
        check(after <= before && strlen(f[1]) <= after);
    }

    /* 2, 3: a capture name and a prefix, as the receiver's API checks a
     * requested name (receiver/filename.h). */
    ps_fname fn;
    if (f[2] && f[3] && !strchr(f[3], '/') && ps_fname_parse(f[2], f[3], &fn) == 0)
        check(strchr(f[2], '/') == NULL); /* never leaves the directory */

    /* 4, 5: Authorization header and token: equal tokens always pass. */
    int b = ps_http_bearer_ok(f[4], f[5]);
    if (b)
        check(f[5] && f[5][0] != '\0');
    if (f[5] && f[5][0] && f[5][0] != ' ' && f[5][strlen(f[5]) - 1] != ' ') {
        ps_buf h = PS_BUF_INIT;
        if (ps_buf_append(&h, "Bearer ", 7) == 0 && ps_buf_append(&h, f[5], strlen(f[5]) + 1) == 0)
            check(ps_http_bearer_ok((const char *)h.data, f[5]));
        ps_buf_free(&h);
    }

    /* 6: Host, with 7 as an allowed name; 8: Origin (Sec-Fetch-Site = 7). */
    const char *allowed[1] = {f[7] ? f[7] : ""};
    int host_ok = ps_http_host_ok(f[6], allowed, 1);
    if (host_ok && f[6])
        check(strlen(f[6]) < 256);
    int xo = ps_http_cross_origin(f[8], f[7], f[6]);
    if (!f[7] && !f[8])
        check(xo == 0);

    /* Everything through the JSON escaper: ASCII out, quotes balanced. */
    ps_buf j = PS_BUF_INIT;
    if (ps_json_str(&j, f[0] ? f[0] : "") == 0) {
        check(j.len >= 2 && j.data[0] == '"' && j.data[j.len - 1] == '"');
        for (size_t i = 0; i < j.len; i++)
            check(j.data[i] >= 0x20 && j.data[i] < 0x7f);
    }
    ps_buf_free(&j);
    free(buf);
    return 0;
}
