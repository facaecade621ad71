/*
 * fuzz_netlink: the rtnetlink link-message parser of the interface watcher
 * (ps_ifwatch_parse). Its input is a datagram from the kernel, but the
 * parser must never trust a length in it: every link it reports has a
 * positive index and a terminated name that fits IF_NAMESIZE.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sensor/ifwatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_link(void *ud, const ps_link *l)
{
    (void)ud;
    if (l->ifindex <= 0 || !l->name[0] || strnlen(l->name, sizeof(l->name)) == sizeof(l->name))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    /* A datagram arrives in an aligned buffer; so does the copy. */
    uint32_t *buf = malloc(size + 4);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    int rc = ps_ifwatch_parse(buf, size, on_link, NULL);
    if (rc < -2 || rc > 1)
        abort();
    free(buf);
    return 0;
}
