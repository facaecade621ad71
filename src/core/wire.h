/*
 * wire: protocol versions 1 and 2 between sensor and receiver, as pure
 * encode/decode functions (no I/O, no allocation except into a caller's
 * ps_buf). Version 2 adds capture jobs: JOB_START, JOB_STOP, JOB_STATUS and
 * a trailing u64 job in IFACE; everything else is the same in both.
 *
 * The byte layout of every frame is specified in docs/protocol.md; this header
 * is its C mirror. All integers are big-endian. A frame is
 *
 *   u32 payload_len | u8 type | u8 flags (0) | u16 reserved (0) | payload
 *
 * Decoders never read past the length they are given and never trust a length
 * field before comparing it with what is left and with the negotiated
 * maximum. They return PS_WIRE_OK or a negative ps_wire_err; on error the
 * output struct is unspecified. Decoded strings and payloads point into the
 * input buffer (no copies): they live as long as that buffer.
 */
#ifndef PS_WIRE_H
#define PS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define PS_WIRE_MAGIC "PSTR"
/* Version 1: what a peer without capture jobs speaks (and the layout of
 * HELLO and ACCEPT in every version). */
#define PS_WIRE_VERSION 1
/* Version 2: capture jobs (JOB_* frames, IFACE.job). */
#define PS_WIRE_VERSION_JOBS 2
/* The range this build speaks. */
#define PS_WIRE_VERSION_MIN 1
#define PS_WIRE_VERSION_MAX 2
#define PS_WIRE_HDR_LEN 8
/* A frame's payload may never exceed this, whatever is negotiated. */
#define PS_WIRE_MAX_FRAME_HARD (64u * 1024 * 1024)
/* Default maximum payload of one frame (a compressed batch + its header). */
#define PS_WIRE_MAX_FRAME_DEFAULT (20u * 1024 * 1024)
/* Default bound on a batch's decompressed size: the largest block a sensor
 * may be configured for (compressBlockSize 16384 KiB) plus one maximal record. */
#define PS_WIRE_MAX_BATCH_RAW_DEFAULT (17u * 1024 * 1024)
/* Frame limit before the handshake completes: any HELLO fits, so an
 * unauthenticated peer cannot make the receiver buffer megabytes. */
#define PS_WIRE_MAX_HELLO_FRAME 4096u
/* Largest caplen a record may carry (libpcap's MAXIMUM_SNAPLEN). */
#define PS_WIRE_MAX_CAPLEN 262144u
#define PS_WIRE_MAX_ID_LEN 253u
#define PS_WIRE_MAX_TOKEN_LEN 1024u
#define PS_WIRE_MAX_IFNAME_LEN 255u
#define PS_WIRE_MAX_DESC_LEN 1024u
#define PS_WIRE_MAX_REASON_LEN 1024u
/* Capture jobs (v2). */
#define PS_WIRE_MAX_JOB_NAME_LEN 63u
#define PS_WIRE_MAX_JOB_SEL_LEN 4096u /* namespaces, pods, selector, interfaces, filter */
#define PS_WIRE_MAX_JOB_MSG_LEN 1024u
#define PS_WIRE_MAX_PREROLL_SEC 3600u
/* Per-record header inside a decompressed batch. */
#define PS_WIRE_REC_HDR_LEN 20
#define PS_WIRE_BATCH_HDR_LEN 20

typedef enum ps_frame_type {
    PS_FRAME_HELLO = 0x01,     /* sensor -> receiver, first frame */
    PS_FRAME_ACCEPT = 0x02,    /* receiver -> sensor */
    PS_FRAME_REJECT = 0x03,    /* receiver -> sensor, then close */
    PS_FRAME_IFACE = 0x10,     /* sensor -> receiver: interface announcement */
    PS_FRAME_BATCH = 0x11,     /* sensor -> receiver: compressed records */
    PS_FRAME_STATS = 0x12,     /* sensor -> receiver: counters of one interface */
    PS_FRAME_ACK = 0x13,       /* receiver -> sensor: cumulative sequence */
    PS_FRAME_HEARTBEAT = 0x14, /* either way */
    PS_FRAME_BYE = 0x15,       /* sensor -> receiver: nothing more will follow */
    /* v2 only: in a v1 session these are bad_type (ps_wire_type_allowed). */
    PS_FRAME_JOB_START = 0x20,  /* receiver -> sensor: run a capture job */
    PS_FRAME_JOB_STOP = 0x21,   /* receiver -> sensor: u64 job */
    PS_FRAME_JOB_STATUS = 0x22, /* sensor -> receiver: a job's state and counters */
} ps_frame_type;

typedef enum ps_wire_err {
    PS_WIRE_OK = 0,
    PS_WIRE_NEED_MORE = 1,    /* not an error: frame incomplete, read more */
    PS_WIRE_E_TRUNCATED = -1, /* a field runs past the end of its payload */
    PS_WIRE_E_TOO_LONG = -2,  /* a length exceeds the negotiated maximum */
    PS_WIRE_E_BAD_MAGIC = -3, /* HELLO does not start with "PSTR" */
    PS_WIRE_E_VERSION = -4,   /* no common protocol version */
    PS_WIRE_E_BAD_TYPE = -5,  /* unknown frame type */
    PS_WIRE_E_RESERVED = -6,  /* reserved bits or bytes not zero */
    PS_WIRE_E_BAD_VALUE = -7, /* a field holds a value outside its domain */
    PS_WIRE_E_TRAILING = -8,  /* bytes left over after the last field */
} ps_wire_err;

/* Stable lowercase names ("truncated", "too_long", ...) for logs and metrics. */
const char *ps_wire_strerror(int err);
const char *ps_frame_type_name(int type);

/* Bitmask of codecs, bit n = ps_codec value n (see codec.h). */
typedef struct ps_hello {
    uint16_t version_min, version_max;
    uint8_t codecs;         /* codecs the sensor can send */
    uint8_t codec;          /* the one it prefers */
    uint32_t max_frame;     /* largest frame payload the sensor will send */
    uint32_t max_batch_raw; /* largest decompressed batch it will send */
    uint64_t session;       /* random per sensor process: dedup key with id+seq */
    const char *id;         /* sensor id, not NUL-terminated */
    uint16_t id_len;
    const char *token; /* auth token, may be empty */
    uint16_t token_len;
} ps_hello;

typedef struct ps_accept {
    uint16_t version;
    uint8_t codec;      /* codec the sensor must use */
    uint32_t max_frame; /* receiver's limit, <= sensor's */
    uint32_t max_batch_raw;
    uint64_t last_seq; /* highest sequence already written for this
                        * (sensor, session), 0 if none: resume after it */
} ps_accept;

typedef enum ps_reject_code {
    PS_REJECT_PROTOCOL = 1, /* malformed handshake */
    PS_REJECT_VERSION = 2,
    PS_REJECT_CODEC = 3,
    PS_REJECT_AUTH = 4,
    PS_REJECT_BUSY = 5, /* too many connections, or duplicate sensor id */
    PS_REJECT_INTERNAL = 6,
    PS_REJECT_UNSUPPORTED = 7, /* e.g. a link type the output format can't hold */
} ps_reject_code;

typedef struct ps_reject {
    uint16_t code;
    const char *reason;
    uint16_t reason_len;
} ps_reject;

typedef struct ps_iface {
    uint32_t index;    /* sensor-local interface number */
    uint32_t linktype; /* DLT/LINKTYPE_ value */
    uint32_t snaplen;
    const char *name;
    uint16_t name_len; /* 1..PS_WIRE_MAX_IFNAME_LEN */
    const char *desc;
    uint16_t desc_len;
    uint64_t job; /* v2: 0 = the continuous capture, else the job it carries;
                   * always 0 in v1 */
} ps_iface;

typedef struct ps_batch_hdr {
    uint64_t seq; /* 1, 2, 3 ... per session */
    uint8_t codec;
    uint32_t records;
    uint32_t raw_len;       /* decompressed length of the records */
    const uint8_t *payload; /* compressed bytes */
    uint32_t payload_len;
} ps_batch_hdr;

typedef struct ps_stats {
    uint32_t index;   /* interface */
    uint64_t packets; /* captured by the sensor */
    uint64_t bytes;
    uint64_t kernel_drops; /* ps_drop */
    uint64_t if_drops;     /* ps_ifdrop */
    uint64_t sensor_drops; /* dropped inside the sensor, all reasons */
    uint64_t timestamp_ns; /* when the counters were read */
} ps_stats;

typedef struct ps_record {
    uint32_t iface;
    uint64_t ts_ns; /* nanoseconds since the Unix epoch */
    uint32_t caplen;
    uint32_t origlen;
    const uint8_t *data; /* caplen bytes */
} ps_record;

/* JOB_START (v2). Strings are not NUL-terminated; an empty one is "no
 * constraint". */
typedef struct ps_job_start {
    uint64_t job;         /* non-zero */
    uint64_t start_ns;    /* receiver clock, ns since the epoch */
    uint64_t end_ns;      /* absolute deadline, 0 = none; else >= start_ns */
    uint64_t max_packets; /* 0 = none */
    uint64_t max_bytes;   /* 0 = none */
    uint32_t preroll_sec; /* 0..PS_WIRE_MAX_PREROLL_SEC */
    const char *name;     /* 1..63 bytes of [a-z0-9-] */
    uint16_t name_len;
    const char *namespaces; /* comma-joined; this and the rest 0..4096 bytes, no NUL */
    uint16_t namespaces_len;
    const char *pods; /* comma-joined NS/NAME */
    uint16_t pods_len;
    const char *label_selector; /* Kubernetes syntax */
    uint16_t label_selector_len;
    const char *interfaces; /* comma-joined names or globs */
    uint16_t interfaces_len;
    const char *filter; /* BPF */
    uint16_t filter_len;
} ps_job_start;

typedef enum ps_job_state {
    PS_JOB_RUNNING = 1,
    PS_JOB_FINISHED = 2, /* a stop condition was met on the sensor */
    PS_JOB_STOPPED = 3,  /* by JOB_STOP */
    PS_JOB_FAILED = 4,
} ps_job_state;

/* JOB_STATUS (v2): cumulative counters of one job on one sensor. */
typedef struct ps_job_status {
    uint64_t job;   /* non-zero */
    uint32_t state; /* ps_job_state */
    uint64_t packets;
    uint64_t bytes;
    uint64_t drops;  /* kernel + sensor drops, + preroll packets already evicted */
    const char *msg; /* 0..1024 bytes, no NUL; why it failed */
    uint16_t msg_len;
} ps_job_status;

typedef struct ps_frame {
    uint8_t type;
    const uint8_t *payload;
    uint32_t len;
} ps_frame;

/*
 * Finds the next whole frame at the start of buf. Returns PS_WIRE_OK and sets
 * *f and *consumed (header + payload) when one is complete, PS_WIRE_NEED_MORE
 * when buf holds only part of one, or an error when the header is invalid
 * (unknown type, non-zero reserved bytes, payload longer than max_payload).
 * The length is checked before the payload has arrived, so a peer can never
 * make the caller buffer more than max_payload + header bytes.
 */
int ps_wire_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload, ps_frame *f,
                        size_t *consumed);
/* Writes a frame header for a payload of payload_len bytes into out[8]. */
void ps_wire_frame_header(uint8_t out[PS_WIRE_HDR_LEN], uint8_t type, uint32_t payload_len);

/* Encoders append one whole frame (header included) to out; -1 on OOM or if
 * a field exceeds its limit (the buffer is then left as it was). */
int ps_wire_encode_hello(ps_buf *out, const ps_hello *h);
int ps_wire_encode_accept(ps_buf *out, const ps_accept *a);
int ps_wire_encode_reject(ps_buf *out, const ps_reject *r);
/* IFACE in version 1 (i->job must be 0); the v1 sensor's encoder. */
int ps_wire_encode_iface(ps_buf *out, const ps_iface *i);
/* IFACE as laid out in `version`: from v2 with the trailing u64 job. */
int ps_wire_encode_iface_ver(ps_buf *out, const ps_iface *i, uint16_t version);
/* Copies of an interface name and description that ps_wire_encode_iface
 * accepts whatever they came from (a file name, a kernel interface name):
 * control bytes, DEL and '/' become '_', "", "." and ".." become "_", and
 * both are cut to their maximum length. The one place names are made safe
 * for the wire; NULL only when out of memory. */
char *ps_wire_ifname_dup(const char *name);
char *ps_wire_ifdesc_dup(const char *desc);
int ps_wire_encode_stats(ps_buf *out, const ps_stats *s);
int ps_wire_encode_ack(ps_buf *out, uint64_t seq);
int ps_wire_encode_heartbeat(ps_buf *out, uint64_t ts_ns);
int ps_wire_encode_bye(ps_buf *out, uint64_t last_seq);
/* v2 job frames. */
int ps_wire_encode_job_start(ps_buf *out, const ps_job_start *j);
int ps_wire_encode_job_stop(ps_buf *out, uint64_t job);
int ps_wire_encode_job_status(ps_buf *out, const ps_job_status *s);
/* Writes the frame header and the 20-byte batch header (without the payload,
 * which the caller sends from its own buffer) into out[8 + 20]. */
void ps_wire_batch_prefix(uint8_t out[PS_WIRE_HDR_LEN + PS_WIRE_BATCH_HDR_LEN], uint64_t seq,
                          uint8_t codec, uint32_t records, uint32_t raw_len, uint32_t payload_len);

/* Decoders take a frame payload (f.payload, f.len). */
int ps_wire_decode_hello(const uint8_t *p, uint32_t len, ps_hello *h);
int ps_wire_decode_accept(const uint8_t *p, uint32_t len, ps_accept *a);
int ps_wire_decode_reject(const uint8_t *p, uint32_t len, ps_reject *r);
/* `version` is the session's: from v2 the payload ends with the u64 job
 * (i->job), in v1 it does not and i->job is set to 0. */
int ps_wire_decode_iface(const uint8_t *p, uint32_t len, uint16_t version, ps_iface *i);
/* Checks raw_len <= max_batch_raw and codec < PS_CODEC_COUNT. */
int ps_wire_decode_batch(const uint8_t *p, uint32_t len, uint32_t max_batch_raw, ps_batch_hdr *b);
int ps_wire_decode_stats(const uint8_t *p, uint32_t len, ps_stats *s);
int ps_wire_decode_u64(const uint8_t *p, uint32_t len, uint64_t *v); /* ACK, HEARTBEAT, BYE */
int ps_wire_decode_job_start(const uint8_t *p, uint32_t len, ps_job_start *j);
/* JOB_STOP: exactly 8 bytes, job non-zero. */
int ps_wire_decode_job_stop(const uint8_t *p, uint32_t len, uint64_t *job);
int ps_wire_decode_job_status(const uint8_t *p, uint32_t len, ps_job_status *s);

/* 1 when frame `type` exists in protocol `version` (JOB_* only from v2), else
 * 0. ps_wire_frame_parse knows the types of every version this build speaks;
 * a session checks each frame with this and treats 0 as bad_type, so a v1
 * session sees exactly the v1 rules. */
int ps_wire_type_allowed(int type, uint16_t version);
/* The version a receiver answers to a decoded HELLO: the highest in both
 * [version_min, version_max] and [1, max_version] (max_version clamped to
 * PS_WIRE_VERSION_MIN..PS_WIRE_VERSION_MAX); 0 when there is none (a
 * receiver capped below the sensor's version_min). */
uint16_t ps_wire_pick_version(const ps_hello *h, uint16_t max_version);

/*
 * Records inside a decompressed batch:
 *   u32 iface | u64 ts_ns | u32 caplen | u32 origlen | caplen bytes
 * with no padding. Appending is the sensor's hot path, so it is inline and
 * writes into room the caller reserved (PS_WIRE_REC_HDR_LEN + caplen).
 */
static inline void ps_wire_record_put(uint8_t *p, uint32_t iface, uint64_t ts_ns, uint32_t caplen,
                                      uint32_t origlen, const uint8_t *data)
{
    ps_put_u32be(p, iface);
    ps_put_u64be(p + 4, ts_ns);
    ps_put_u32be(p + 12, caplen);
    ps_put_u32be(p + 16, origlen);
    memcpy(p + PS_WIRE_REC_HDR_LEN, data, caplen);
}

typedef struct ps_record_iter {
    const uint8_t *p;
    size_t left;
} ps_record_iter;

void ps_record_iter_init(ps_record_iter *it, const uint8_t *raw, size_t len);
/* Returns PS_WIRE_OK with *r set, PS_WIRE_NEED_MORE at the clean end of the
 * batch, or an error: truncated record, caplen > PS_WIRE_MAX_CAPLEN, or
 * caplen > origlen. */
int ps_record_iter_next(ps_record_iter *it, ps_record *r);

#endif
