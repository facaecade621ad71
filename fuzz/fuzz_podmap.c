/*
 * fuzz_podmap: the rtnetlink route/neighbour/FDB/link parser of the pod
 * interface map (ps_podmap_parse) and the table it fills. The first byte
 * picks a dump to wrap the datagram in (begin before, end after) or none;
 * the rest is the datagram, applied twice (the second pass renews entries
 * instead of adding them). Whatever it holds, lookups of valid addresses
 * answer 0 or an index > 0, and the table can be freed without leaks.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sensor/podmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const probes[] = {"10.0.0.5", "10.88.0.5", "0.0.0.0",         "fd00::5",
                                     "fd88::5",  "::",        "255.255.255.255", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65537)
        return 0;
    int kind = data[0] % 4 - 1; /* -1: no dump */
    data++;
    size--;
    /* A datagram arrives in an aligned buffer; so does the copy. */
    uint32_t *buf = malloc(size + 4);
    ps_podmap_table *t = ps_podmap_table_new();
    if (!buf || !t) {
        free(buf);
        ps_podmap_table_free(t);
        return 0;
    }
    memcpy(buf, data, size);
    for (int pass = 0; pass < 2; pass++) {
        if (kind >= 0)
            ps_podmap_table_dump_begin(t, kind);
        int done = 0;
        int rc = ps_podmap_parse(t, buf, size, &done);
        if (rc < -3 || rc > 1 || done < 0 || done > 2)
            abort();
        if (kind >= 0 && ps_podmap_table_dump_end(t, kind) < 0)
            abort();
        for (int i = 0; probes[i]; i++)
            if (ps_podmap_table_lookup(t, probes[i]) < 0)
                abort();
    }
    if (ps_podmap_table_lookup(t, "10.0.0.256") != -1)
        abort();
    ps_podmap_table_free(t);
    free(buf);
    return 0;
}
