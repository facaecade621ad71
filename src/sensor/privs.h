/*
 * privs: the sensor's capabilities.
 *
 * The container images give the binary file capabilities NET_RAW and
 * NET_ADMIN as "permitted" only (setcap cap_net_raw,cap_net_admin+p), not
 * "effective": a binary with effective file capabilities the container's
 * bounding set cannot grant is refused by execve, so `docker run IMAGE
 * --version` would fail wherever NET_ADMIN is not granted (Docker's and
 * Fargate's defaults). Instead the sensor raises, at start, whatever of its
 * permitted set it actually received into its effective set. Running as root
 * this changes nothing.
 */
#ifndef PS_PRIVS_H
#define PS_PRIVS_H

#include <stdint.h>

/* Makes the effective capability set equal to the permitted set. Returns the
 * effective set's low 32 bits (CAP_NET_RAW is bit 13, CAP_NET_ADMIN bit 12),
 * or -1 if the kernel refused (errno set). */
int64_t ps_privs_raise(void);

#endif
