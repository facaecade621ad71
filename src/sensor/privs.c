/*
 * privs: raise permitted capabilities to effective (see privs.h for why).
 * Raw capget/capset: one call each, no libcap dependency for two syscalls.
 */
#include "privs.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

int64_t ps_privs_raise(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return -1;
    int changed = 0;
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
        if (data[i].effective != data[i].permitted) {
            data[i].effective = data[i].permitted;
            changed = 1;
        }
    }
    if (changed && syscall(SYS_capset, &hdr, data) != 0)
        return -1;
    return (int64_t)data[0].effective;
}
