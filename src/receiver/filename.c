/*
 * filename: formats and parses capture-file names (grammar in filename.h).
 *
 * Parsing works from the end of the name, because the optional KEY may
 * itself hold '-' and digits: the fixed-shape tail (.part, EXT, COUNTER,
 * STAMP) is peeled off first, and what remains between "PREFIX-" and the
 * STAMP is the KEY.
 */
#include "filename.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FN_STAMP_LEN 16          /* YYYYmmddTHHMMSSZ */
#define FN_COUNTER_DIGITS_MAX 19 /* keeps counter * 10 + 9 below 2^64 */

static int key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

char *ps_fname_key(const char *sensor)
{
    size_t n = strlen(sensor);
    if (n > PS_FNAME_KEY_MAX)
        n = PS_FNAME_KEY_MAX;
    char *s = malloc(n ? n + 1 : 2);
    if (!s)
        return NULL;
    if (n == 0)
        return strcpy(s, "_");
    for (size_t i = 0; i < n; i++)
        s[i] = key_char(sensor[i]) ? sensor[i] : '_';
    s[n] = '\0';
    return s;
}

int ps_fname_format(char *out, size_t outlen, const char *prefix, time_t created, uint64_t counter,
                    int pcapng)
{
    struct tm tm;
    char stamp[32];
    if (!gmtime_r(&created, &tm) || strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm) == 0 ||
        strlen(stamp) != FN_STAMP_LEN) {
        errno = EOVERFLOW; /* a year past 9999 would not parse back */
        return -1;
    }
    int n = snprintf(out, outlen, "%s-%s-%06llu.%s", prefix, stamp, (unsigned long long)counter,
                     pcapng ? "pcapng" : "pcap");
    if (n < 0 || (size_t)n >= outlen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static int ends_with(const char *s, size_t *len, const char *suffix)
{
    size_t sl = strlen(suffix);
    if (*len < sl || memcmp(s + *len - sl, suffix, sl) != 0)
        return 0;
    *len -= sl;
    return 1;
}

/* True if s[0..FN_STAMP_LEN) has the STAMP's shape. */
static int stamp_shape(const char *s)
{
    static const char shape[] = "DDDDDDDDTDDDDDDZ";
    for (size_t i = 0; i < FN_STAMP_LEN; i++)
        if (shape[i] == 'D' ? !is_digit(s[i]) : s[i] != shape[i])
            return 0;
    return 1;
}

int ps_fname_parse(const char *name, const char *prefix, ps_fname *out)
{
    size_t plen = strlen(prefix), end = strlen(name);
    if (end <= plen || strncmp(name, prefix, plen) != 0 || name[plen] != '-')
        return -1;
    ps_fname f = {0};
    f.part = ends_with(name, &end, PS_FNAME_PART);
    if (ends_with(name, &end, ".pcapng"))
        f.pcapng = 1;
    else if (!ends_with(name, &end, ".pcap"))
        return -1;

    /* COUNTER */
    size_t digits_at = end;
    while (digits_at > 0 && is_digit(name[digits_at - 1]))
        digits_at--;
    size_t ndigits = end - digits_at;
    if (ndigits == 0 || ndigits > FN_COUNTER_DIGITS_MAX)
        return -1;
    for (size_t i = digits_at; i < end; i++)
        f.counter = f.counter * 10 + (uint64_t)(name[i] - '0');

    /* "-" STAMP "-" before it, not reaching into "PREFIX-" */
    size_t first = plen + 1; /* where KEY or STAMP starts */
    if (digits_at < first + FN_STAMP_LEN + 1 || name[digits_at - 1] != '-')
        return -1;
    size_t stamp_at = digits_at - 1 - FN_STAMP_LEN;
    if (!stamp_shape(name + stamp_at))
        return -1;

    /* KEY: between "PREFIX-" and "-STAMP", if anything is */
    if (stamp_at > first) {
        if (stamp_at < first + 2 || name[stamp_at - 1] != '-')
            return -1;
        size_t klen = stamp_at - 1 - first;
        if (klen > PS_FNAME_KEY_MAX)
            return -1;
        for (size_t i = first; i < first + klen; i++)
            if (!key_char(name[i]))
                return -1;
        f.key = name + first;
        f.key_len = klen;
    }
    *out = f;
    return 0;
}
