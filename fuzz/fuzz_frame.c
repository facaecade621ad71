/*
 * fuzz_frame: the receive path's frame cutter and every frame decoder.
 *
 * The input is a byte stream as a peer would send it: frames are cut with
 * ps_wire_frame_parse exactly as net.c does (with a small negotiated limit so
 * the too-long path is reached), and each frame goes to its decoder; IFACE
 * is decoded as both protocol versions lay it out.
 */
#include <stddef.h>
#include <stdint.h>

#include "core/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        ps_frame f;
        size_t used = 0;
        int rc = ps_wire_frame_parse(data + off, size - off, 1u << 16, &f, &used);
        if (rc != PS_WIRE_OK)
            break;
        off += used;
        ps_hello h;
        ps_accept a;
        ps_reject r;
        ps_iface i;
        ps_batch_hdr b;
        ps_stats s;
        ps_job_start js;
        ps_job_status jt;
        uint64_t v;
        switch (f.type) {
        case PS_FRAME_HELLO:
            ps_wire_decode_hello(f.payload, f.len, &h);
            break;
        case PS_FRAME_ACCEPT:
            ps_wire_decode_accept(f.payload, f.len, &a);
            break;
        case PS_FRAME_REJECT:
            ps_wire_decode_reject(f.payload, f.len, &r);
            break;
        case PS_FRAME_IFACE:
            ps_wire_decode_iface(f.payload, f.len, PS_WIRE_VERSION, &i);
            ps_wire_decode_iface(f.payload, f.len, PS_WIRE_VERSION_JOBS, &i);
            break;
        case PS_FRAME_BATCH:
            ps_wire_decode_batch(f.payload, f.len, 1u << 16, &b);
            break;
        case PS_FRAME_STATS:
            ps_wire_decode_stats(f.payload, f.len, &s);
            break;
        case PS_FRAME_JOB_START:
            ps_wire_decode_job_start(f.payload, f.len, &js);
            break;
        case PS_FRAME_JOB_STATUS:
            ps_wire_decode_job_status(f.payload, f.len, &jt);
            break;
        case PS_FRAME_JOB_STOP:
            ps_wire_decode_job_stop(f.payload, f.len, &v);
            break;
        default:
            ps_wire_decode_u64(f.payload, f.len, &v);
            break;
        }
    }
    return 0;
}
