/*
 * wire: encoders and decoders of protocol versions 1 and 2
 * (docs/protocol.md).
 *
 * Everything here is pure. Decoders read only inside the (pointer, length)
 * they are given, compare every length field with what is left and with its
 * limit before using it, and return pointers into the input. Encoders check
 * their input, reserve the whole frame in the caller's ps_buf and only then
 * write, so a failure leaves the buffer's contents and length as they were.
 *
 * Each frame type has one check_*() function that both its encoder and its
 * decoder call: what we send is, by construction, what we accept, and a value
 * a decoder would refuse can never be put on the wire by our own encoder.
 *
 * Version 2 only adds: the frame cutter knows the JOB_* types whatever the
 * session's version (it runs before anyone could know it), and the session
 * layer refuses them in v1 with ps_wire_type_allowed; IFACE's layout is the
 * one thing that depends on the version, so its decoder takes it.
 */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* Smallest max_frame / max_batch_raw a peer may declare: below this a single
 * ordinary packet (64 KiB snaplen) would not fit in a batch. */
#define WIRE_MIN_LIMIT (64u * 1024)

/* Fixed-size parts of the payloads. */
#define HELLO_FIXED_LEN 28 /* magic .. session */
#define ACCEPT_LEN 20
#define REJECT_FIXED_LEN 4
#define IFACE_FIXED_LEN 12
#define STATS_LEN 52
#define U64_LEN 8
#define JOB_START_FIXED_LEN 48  /* job .. reserved */
#define JOB_STATUS_FIXED_LEN 40 /* job .. drops */

const char *ps_wire_strerror(int err)
{
    switch (err) {
    case PS_WIRE_OK:
        return "ok";
    case PS_WIRE_NEED_MORE:
        return "need_more";
    case PS_WIRE_E_TRUNCATED:
        return "truncated";
    case PS_WIRE_E_TOO_LONG:
        return "too_long";
    case PS_WIRE_E_BAD_MAGIC:
        return "bad_magic";
    case PS_WIRE_E_VERSION:
        return "version";
    case PS_WIRE_E_BAD_TYPE:
        return "bad_type";
    case PS_WIRE_E_RESERVED:
        return "reserved";
    case PS_WIRE_E_BAD_VALUE:
        return "bad_value";
    case PS_WIRE_E_TRAILING:
        return "trailing";
    }
    return "unknown";
}

const char *ps_frame_type_name(int type)
{
    switch (type) {
    case PS_FRAME_HELLO:
        return "hello";
    case PS_FRAME_ACCEPT:
        return "accept";
    case PS_FRAME_REJECT:
        return "reject";
    case PS_FRAME_IFACE:
        return "iface";
    case PS_FRAME_BATCH:
        return "batch";
    case PS_FRAME_STATS:
        return "stats";
    case PS_FRAME_ACK:
        return "ack";
    case PS_FRAME_HEARTBEAT:
        return "heartbeat";
    case PS_FRAME_BYE:
        return "bye";
    case PS_FRAME_JOB_START:
        return "job_start";
    case PS_FRAME_JOB_STOP:
        return "job_stop";
    case PS_FRAME_JOB_STATUS:
        return "job_status";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Frame header                                                             */

static int known_type(uint8_t type)
{
    switch (type) {
    case PS_FRAME_HELLO:
    case PS_FRAME_ACCEPT:
    case PS_FRAME_REJECT:
    case PS_FRAME_IFACE:
    case PS_FRAME_BATCH:
    case PS_FRAME_STATS:
    case PS_FRAME_ACK:
    case PS_FRAME_HEARTBEAT:
    case PS_FRAME_BYE:
    case PS_FRAME_JOB_START:
    case PS_FRAME_JOB_STOP:
    case PS_FRAME_JOB_STATUS:
        return 1;
    }
    return 0;
}

int ps_wire_type_allowed(int type, uint16_t version)
{
    if (type < 0 || type > 0xFF || !known_type((uint8_t)type))
        return 0;
    if (version < PS_WIRE_VERSION_MIN || version > PS_WIRE_VERSION_MAX)
        return 0;
    if (type >= PS_FRAME_JOB_START && type <= PS_FRAME_JOB_STATUS)
        return version >= PS_WIRE_VERSION_JOBS;
    return 1;
}

int ps_wire_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload, ps_frame *f,
                        size_t *consumed)
{
    if (len < PS_WIRE_HDR_LEN)
        return PS_WIRE_NEED_MORE;
    uint32_t plen = ps_get_u32be(buf);
    uint8_t type = buf[4];
    /* The header is judged on its own, before the payload arrives, so a peer
     * cannot make us buffer more than max_payload + 8 bytes of garbage. */
    if (!known_type(type))
        return PS_WIRE_E_BAD_TYPE;
    if (buf[5] != 0 || buf[6] != 0 || buf[7] != 0)
        return PS_WIRE_E_RESERVED;
    if (max_payload > PS_WIRE_MAX_FRAME_HARD)
        max_payload = PS_WIRE_MAX_FRAME_HARD;
    if (plen > max_payload)
        return PS_WIRE_E_TOO_LONG;
    if (len - PS_WIRE_HDR_LEN < plen)
        return PS_WIRE_NEED_MORE;
    f->type = type;
    f->payload = buf + PS_WIRE_HDR_LEN;
    f->len = plen;
    *consumed = PS_WIRE_HDR_LEN + (size_t)plen;
    return PS_WIRE_OK;
}

void ps_wire_frame_header(uint8_t out[PS_WIRE_HDR_LEN], uint8_t type, uint32_t payload_len)
{
    ps_put_u32be(out, payload_len);
    out[4] = type;
    out[5] = 0;
    out[6] = 0;
    out[7] = 0;
}

/* Reserves a whole frame after out->len and writes its header; returns where
 * the payload goes, or NULL on OOM. out->len is not moved: frame_commit()
 * does that once the payload is written. */
static uint8_t *frame_begin(ps_buf *out, uint8_t type, uint32_t plen)
{
    if (ps_buf_reserve(out, PS_WIRE_HDR_LEN + (size_t)plen) != 0)
        return NULL;
    uint8_t *h = out->data + out->len;
    ps_wire_frame_header(h, type, plen);
    return h + PS_WIRE_HDR_LEN;
}

static int frame_commit(ps_buf *out, uint32_t plen)
{
    out->len += PS_WIRE_HDR_LEN + (size_t)plen;
    return 0;
}

/* Writes a u16 length and the bytes; returns the position after them. */
static uint8_t *put_str(uint8_t *p, const char *s, uint16_t n)
{
    ps_put_u16be(p, n);
    if (n)
        memcpy(p + 2, s, n);
    return p + 2 + n;
}

/*
 * Reads a u16-length-prefixed string at *pos. The length is compared with its
 * limit first (TOO_LONG), then with what is left (TRUNCATED).
 */
static int get_str(const uint8_t **pos, uint32_t *left, uint32_t max, const char **s, uint16_t *n)
{
    if (*left < 2)
        return PS_WIRE_E_TRUNCATED;
    uint16_t len = ps_get_u16be(*pos);
    if (len > max)
        return PS_WIRE_E_TOO_LONG;
    if (*left - 2 < len)
        return PS_WIRE_E_TRUNCATED;
    *s = (const char *)(*pos + 2);
    *n = len;
    *pos += 2 + (uint32_t)len;
    *left -= 2 + (uint32_t)len;
    return PS_WIRE_OK;
}

/* "." and ".." are valid by character set but would name a directory when a
 * receiver builds paths from ids and interface names. */
static int is_dot_name(const char *s, uint16_t n)
{
    return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

/* ------------------------------------------------------------------------ */
/* HELLO                                                                    */

/* The version range is checked on its own, first: bytes 0..7 of HELLO are
 * the only part every protocol version shares. Versions 1 and 2 lay out the
 * rest of HELLO the same, so a range with either in it is parsed. */
static int check_versions(uint16_t vmin, uint16_t vmax)
{
    if (vmin < 1 || vmin > vmax)
        return PS_WIRE_E_BAD_VALUE;
    if (vmin > PS_WIRE_VERSION_MAX)
        return PS_WIRE_E_VERSION;
    return PS_WIRE_OK;
}

uint16_t ps_wire_pick_version(const ps_hello *h, uint16_t max_version)
{
    if (max_version < PS_WIRE_VERSION_MIN)
        max_version = PS_WIRE_VERSION_MIN;
    if (max_version > PS_WIRE_VERSION_MAX)
        max_version = PS_WIRE_VERSION_MAX;
    uint16_t v = h->version_max < max_version ? h->version_max : max_version;
    return v >= h->version_min ? v : 0;
}

/* Sensor ids end up in file names and in pcapng interface names
 * ("SENSOR/IFACE"), so they are restricted to [A-Za-z0-9._:-]. */
static int check_id(const char *s, uint16_t n)
{
    if (n == 0)
        return PS_WIRE_E_BAD_VALUE;
    if (n > PS_WIRE_MAX_ID_LEN)
        return PS_WIRE_E_TOO_LONG;
    if (!s)
        return PS_WIRE_E_BAD_VALUE;
    for (uint16_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return PS_WIRE_E_BAD_VALUE;
    }
    if (is_dot_name(s, n))
        return PS_WIRE_E_BAD_VALUE;
    return PS_WIRE_OK;
}

static int check_limit(uint32_t v)
{
    return v >= WIRE_MIN_LIMIT && v <= PS_WIRE_MAX_FRAME_HARD ? PS_WIRE_OK : PS_WIRE_E_BAD_VALUE;
}

static int check_hello(const ps_hello *h)
{
    int rc = check_versions(h->version_min, h->version_max);
    if (rc != PS_WIRE_OK)
        return rc;
    if (h->codecs == 0 || (h->codecs & ~PS_CODEC_ALL_MASK) != 0)
        return PS_WIRE_E_BAD_VALUE;
    if (h->codec >= PS_CODEC_COUNT || !(h->codecs & (1u << h->codec)))
        return PS_WIRE_E_BAD_VALUE;
    if ((rc = check_limit(h->max_frame)) != PS_WIRE_OK ||
        (rc = check_limit(h->max_batch_raw)) != PS_WIRE_OK)
        return rc;
    if ((rc = check_id(h->id, h->id_len)) != PS_WIRE_OK)
        return rc;
    if (h->token_len > PS_WIRE_MAX_TOKEN_LEN)
        return PS_WIRE_E_TOO_LONG;
    if (h->token_len && !h->token)
        return PS_WIRE_E_BAD_VALUE;
    return PS_WIRE_OK;
}

int ps_wire_encode_hello(ps_buf *out, const ps_hello *h)
{
    if (check_hello(h) != PS_WIRE_OK)
        return -1;
    uint32_t plen = HELLO_FIXED_LEN + 2 + (uint32_t)h->id_len + 2 + (uint32_t)h->token_len;
    uint8_t *p = frame_begin(out, PS_FRAME_HELLO, plen);
    if (!p)
        return -1;
    memcpy(p, PS_WIRE_MAGIC, 4);
    ps_put_u16be(p + 4, h->version_min);
    ps_put_u16be(p + 6, h->version_max);
    p[8] = h->codecs;
    p[9] = h->codec;
    ps_put_u16be(p + 10, 0);
    ps_put_u32be(p + 12, h->max_frame);
    ps_put_u32be(p + 16, h->max_batch_raw);
    ps_put_u64be(p + 20, h->session);
    p = put_str(p + HELLO_FIXED_LEN, h->id, h->id_len);
    put_str(p, h->token, h->token_len);
    return frame_commit(out, plen);
}

int ps_wire_decode_hello(const uint8_t *p, uint32_t len, ps_hello *h)
{
    if (len < 4)
        return PS_WIRE_E_TRUNCATED;
    if (memcmp(p, PS_WIRE_MAGIC, 4) != 0)
        return PS_WIRE_E_BAD_MAGIC;
    if (len < 8)
        return PS_WIRE_E_TRUNCATED;
    h->version_min = ps_get_u16be(p + 4);
    h->version_max = ps_get_u16be(p + 6);
    /* Before anything else: a HELLO that offers neither v1 nor v2 may be
     * laid out differently after byte 8, so it is not parsed further. */
    int rc = check_versions(h->version_min, h->version_max);
    if (rc != PS_WIRE_OK)
        return rc;
    if (len < HELLO_FIXED_LEN)
        return PS_WIRE_E_TRUNCATED;
    h->codecs = p[8];
    h->codec = p[9];
    if (ps_get_u16be(p + 10) != 0)
        return PS_WIRE_E_RESERVED;
    h->max_frame = ps_get_u32be(p + 12);
    h->max_batch_raw = ps_get_u32be(p + 16);
    h->session = ps_get_u64be(p + 20);
    const uint8_t *pos = p + HELLO_FIXED_LEN;
    uint32_t left = len - HELLO_FIXED_LEN;
    if ((rc = get_str(&pos, &left, PS_WIRE_MAX_ID_LEN, &h->id, &h->id_len)) != PS_WIRE_OK)
        return rc;
    if ((rc = get_str(&pos, &left, PS_WIRE_MAX_TOKEN_LEN, &h->token, &h->token_len)) != PS_WIRE_OK)
        return rc;
    if (left != 0)
        return PS_WIRE_E_TRAILING;
    return check_hello(h);
}

/* ------------------------------------------------------------------------ */
/* ACCEPT                                                                   */

static int check_accept(const ps_accept *a)
{
    /* The receiver picks one version this build speaks; whether the sensor
     * offered it is the sensor's to check. */
    if (a->version < PS_WIRE_VERSION_MIN || a->version > PS_WIRE_VERSION_MAX)
        return PS_WIRE_E_VERSION;
    if (a->codec >= PS_CODEC_COUNT)
        return PS_WIRE_E_BAD_VALUE;
    int rc;
    if ((rc = check_limit(a->max_frame)) != PS_WIRE_OK ||
        (rc = check_limit(a->max_batch_raw)) != PS_WIRE_OK)
        return rc;
    return PS_WIRE_OK;
}

int ps_wire_encode_accept(ps_buf *out, const ps_accept *a)
{
    if (check_accept(a) != PS_WIRE_OK)
        return -1;
    uint8_t *p = frame_begin(out, PS_FRAME_ACCEPT, ACCEPT_LEN);
    if (!p)
        return -1;
    ps_put_u16be(p, a->version);
    p[2] = a->codec;
    p[3] = 0;
    ps_put_u32be(p + 4, a->max_frame);
    ps_put_u32be(p + 8, a->max_batch_raw);
    ps_put_u64be(p + 12, a->last_seq);
    return frame_commit(out, ACCEPT_LEN);
}

/* Frames of one fixed size: short is truncated, long has trailing bytes. */
static int exact_len(uint32_t len, uint32_t want)
{
    if (len < want)
        return PS_WIRE_E_TRUNCATED;
    if (len > want)
        return PS_WIRE_E_TRAILING;
    return PS_WIRE_OK;
}

int ps_wire_decode_accept(const uint8_t *p, uint32_t len, ps_accept *a)
{
    int rc = exact_len(len, ACCEPT_LEN);
    if (rc != PS_WIRE_OK)
        return rc;
    a->version = ps_get_u16be(p);
    a->codec = p[2];
    if (p[3] != 0)
        return PS_WIRE_E_RESERVED;
    a->max_frame = ps_get_u32be(p + 4);
    a->max_batch_raw = ps_get_u32be(p + 8);
    a->last_seq = ps_get_u64be(p + 12);
    return check_accept(a);
}

/* ------------------------------------------------------------------------ */
/* REJECT                                                                   */

static int check_reject(const ps_reject *r)
{
    /* Codes this build does not know are accepted: a newer receiver may add
     * some, and the sensor still has the reason text to log. */
    if (r->code == 0)
        return PS_WIRE_E_BAD_VALUE;
    if (r->reason_len > PS_WIRE_MAX_REASON_LEN)
        return PS_WIRE_E_TOO_LONG;
    if (r->reason_len && !r->reason)
        return PS_WIRE_E_BAD_VALUE;
    return PS_WIRE_OK;
}

int ps_wire_encode_reject(ps_buf *out, const ps_reject *r)
{
    if (check_reject(r) != PS_WIRE_OK)
        return -1;
    uint32_t plen = REJECT_FIXED_LEN + (uint32_t)r->reason_len;
    uint8_t *p = frame_begin(out, PS_FRAME_REJECT, plen);
    if (!p)
        return -1;
    ps_put_u16be(p, r->code);
    put_str(p + 2, r->reason, r->reason_len);
    return frame_commit(out, plen);
}

int ps_wire_decode_reject(const uint8_t *p, uint32_t len, ps_reject *r)
{
    if (len < 2)
        return PS_WIRE_E_TRUNCATED;
    r->code = ps_get_u16be(p);
    const uint8_t *pos = p + 2;
    uint32_t left = len - 2;
    int rc = get_str(&pos, &left, PS_WIRE_MAX_REASON_LEN, &r->reason, &r->reason_len);
    if (rc != PS_WIRE_OK)
        return rc;
    if (left != 0)
        return PS_WIRE_E_TRAILING;
    return check_reject(r);
}

/* ------------------------------------------------------------------------ */
/* IFACE                                                                    */

/* Where the one '/' of a pod's name NAMESPACE/POD may be: between two
 * parts, neither empty nor "." or "..". -1 when s has a '/' anywhere else
 * or more than one, n when it has none. */
static int pod_slash(const char *s, uint16_t n)
{
    const char *sl = memchr(s, '/', n);
    if (!sl)
        return n;
    uint16_t at = (uint16_t)(sl - s);
    if (memchr(sl + 1, '/', (size_t)(n - at - 1)) || at == 0 || at + 1 == n || is_dot_name(s, at) ||
        is_dot_name(sl + 1, (uint16_t)(n - at - 1)))
        return -1;
    return at;
}

/* Interface names become part of pcapng interface names (SENSOR/NAME):
 * a host interface's name (no '/') or a pod's NAMESPACE/POD (one '/'
 * between two parts), no NUL or other control characters, not "." or "..".
 * Bytes >= 0x80 pass (names are opaque bytes on Linux). */
static int check_ifname(const char *s, uint16_t n)
{
    if (n == 0)
        return PS_WIRE_E_BAD_VALUE;
    if (n > PS_WIRE_MAX_IFNAME_LEN)
        return PS_WIRE_E_TOO_LONG;
    if (!s)
        return PS_WIRE_E_BAD_VALUE;
    for (uint16_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return PS_WIRE_E_BAD_VALUE;
    }
    if (is_dot_name(s, n) || pod_slash(s, n) < 0)
        return PS_WIRE_E_BAD_VALUE;
    return PS_WIRE_OK;
}

static char *dup_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *ps_wire_ifname_dup(const char *name)
{
    if (!name || !*name || is_dot_name(name, (uint16_t)strnlen(name, 3)))
        return strdup("_");
    char *d = dup_cut(name, PS_WIRE_MAX_IFNAME_LEN);
    if (!d)
        return NULL;
    int keep = pod_slash(d, (uint16_t)strlen(d)); /* NAMESPACE/POD keeps its '/' */
    for (char *c = d; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f || (*c == '/' && c - d != keep))
            *c = '_';
    return d;
}

char *ps_wire_ifdesc_dup(const char *desc)
{
    return dup_cut(desc ? desc : "", PS_WIRE_MAX_DESC_LEN);
}

static int check_iface(const ps_iface *i, uint16_t version)
{
    if (version < PS_WIRE_VERSION_MIN || version > PS_WIRE_VERSION_MAX)
        return PS_WIRE_E_VERSION;
    if (version < PS_WIRE_VERSION_JOBS && i->job != 0)
        return PS_WIRE_E_BAD_VALUE;
    /* pcapng's IDB holds a 16-bit link type. */
    if (i->linktype > 0xFFFF)
        return PS_WIRE_E_BAD_VALUE;
    if (i->snaplen == 0)
        return PS_WIRE_E_BAD_VALUE;
    if (i->snaplen > PS_WIRE_MAX_CAPLEN)
        return PS_WIRE_E_TOO_LONG;
    int rc = check_ifname(i->name, i->name_len);
    if (rc != PS_WIRE_OK)
        return rc;
    if (i->desc_len > PS_WIRE_MAX_DESC_LEN)
        return PS_WIRE_E_TOO_LONG;
    if (i->desc_len && !i->desc)
        return PS_WIRE_E_BAD_VALUE;
    /* Descriptions are stored as NUL-terminated pcapng option strings. */
    if (i->desc_len && memchr(i->desc, 0, i->desc_len))
        return PS_WIRE_E_BAD_VALUE;
    return PS_WIRE_OK;
}

int ps_wire_encode_iface_ver(ps_buf *out, const ps_iface *i, uint16_t version)
{
    if (check_iface(i, version) != PS_WIRE_OK)
        return -1;
    uint32_t jlen = version >= PS_WIRE_VERSION_JOBS ? U64_LEN : 0;
    uint32_t plen = IFACE_FIXED_LEN + 2 + (uint32_t)i->name_len + 2 + (uint32_t)i->desc_len + jlen;
    uint8_t *p = frame_begin(out, PS_FRAME_IFACE, plen);
    if (!p)
        return -1;
    ps_put_u32be(p, i->index);
    ps_put_u32be(p + 4, i->linktype);
    ps_put_u32be(p + 8, i->snaplen);
    p = put_str(p + IFACE_FIXED_LEN, i->name, i->name_len);
    p = put_str(p, i->desc, i->desc_len);
    if (jlen)
        ps_put_u64be(p, i->job);
    return frame_commit(out, plen);
}

int ps_wire_encode_iface(ps_buf *out, const ps_iface *i)
{
    return ps_wire_encode_iface_ver(out, i, PS_WIRE_VERSION);
}

int ps_wire_decode_iface(const uint8_t *p, uint32_t len, uint16_t version, ps_iface *i)
{
    if (version < PS_WIRE_VERSION_MIN || version > PS_WIRE_VERSION_MAX)
        return PS_WIRE_E_VERSION;
    i->job = 0;
    if (len < IFACE_FIXED_LEN)
        return PS_WIRE_E_TRUNCATED;
    i->index = ps_get_u32be(p);
    i->linktype = ps_get_u32be(p + 4);
    i->snaplen = ps_get_u32be(p + 8);
    const uint8_t *pos = p + IFACE_FIXED_LEN;
    uint32_t left = len - IFACE_FIXED_LEN;
    int rc = get_str(&pos, &left, PS_WIRE_MAX_IFNAME_LEN, &i->name, &i->name_len);
    if (rc != PS_WIRE_OK)
        return rc;
    if ((rc = get_str(&pos, &left, PS_WIRE_MAX_DESC_LEN, &i->desc, &i->desc_len)) != PS_WIRE_OK)
        return rc;
    if (version >= PS_WIRE_VERSION_JOBS) {
        if (left < U64_LEN)
            return PS_WIRE_E_TRUNCATED;
        i->job = ps_get_u64be(pos);
        left -= U64_LEN;
    }
    if (left != 0)
        return PS_WIRE_E_TRAILING;
    return check_iface(i, version);
}

/* ------------------------------------------------------------------------ */
/* BATCH                                                                    */

void ps_wire_batch_prefix(uint8_t out[PS_WIRE_HDR_LEN + PS_WIRE_BATCH_HDR_LEN], uint64_t seq,
                          uint8_t codec, uint32_t records, uint32_t raw_len, uint32_t payload_len)
{
    ps_wire_frame_header(out, PS_FRAME_BATCH, PS_WIRE_BATCH_HDR_LEN + payload_len);
    uint8_t *p = out + PS_WIRE_HDR_LEN;
    ps_put_u64be(p, seq);
    p[8] = codec;
    p[9] = 0;
    p[10] = 0;
    p[11] = 0;
    ps_put_u32be(p + 12, records);
    ps_put_u32be(p + 16, raw_len);
}

int ps_wire_decode_batch(const uint8_t *p, uint32_t len, uint32_t max_batch_raw, ps_batch_hdr *b)
{
    if (len < PS_WIRE_BATCH_HDR_LEN)
        return PS_WIRE_E_TRUNCATED;
    b->seq = ps_get_u64be(p);
    b->codec = p[8];
    if (p[9] != 0 || p[10] != 0 || p[11] != 0)
        return PS_WIRE_E_RESERVED;
    b->records = ps_get_u32be(p + 12);
    b->raw_len = ps_get_u32be(p + 16);
    b->payload = p + PS_WIRE_BATCH_HDR_LEN;
    b->payload_len = len - PS_WIRE_BATCH_HDR_LEN;

    if (b->seq == 0)
        return PS_WIRE_E_BAD_VALUE;
    if (b->codec >= PS_CODEC_COUNT)
        return PS_WIRE_E_BAD_VALUE;
    /* raw_len is what the receiver will allocate for decompression: bounded
     * by the negotiated maximum and, whatever that says, by the hard cap. */
    if (max_batch_raw > PS_WIRE_MAX_FRAME_HARD)
        max_batch_raw = PS_WIRE_MAX_FRAME_HARD;
    if (b->raw_len > max_batch_raw)
        return PS_WIRE_E_TOO_LONG;
    if (b->records > b->raw_len / PS_WIRE_REC_HDR_LEN)
        return PS_WIRE_E_BAD_VALUE;
    if ((b->records == 0) != (b->raw_len == 0))
        return PS_WIRE_E_BAD_VALUE;
    if (b->codec == PS_CODEC_NONE && b->payload_len != b->raw_len)
        return PS_WIRE_E_BAD_VALUE;
    return PS_WIRE_OK;
}

/* ------------------------------------------------------------------------ */
/* STATS, ACK, HEARTBEAT, BYE                                               */

int ps_wire_encode_stats(ps_buf *out, const ps_stats *s)
{
    uint8_t *p = frame_begin(out, PS_FRAME_STATS, STATS_LEN);
    if (!p)
        return -1;
    ps_put_u32be(p, s->index);
    ps_put_u64be(p + 4, s->packets);
    ps_put_u64be(p + 12, s->bytes);
    ps_put_u64be(p + 20, s->kernel_drops);
    ps_put_u64be(p + 28, s->if_drops);
    ps_put_u64be(p + 36, s->sensor_drops);
    ps_put_u64be(p + 44, s->timestamp_ns);
    return frame_commit(out, STATS_LEN);
}

int ps_wire_decode_stats(const uint8_t *p, uint32_t len, ps_stats *s)
{
    int rc = exact_len(len, STATS_LEN);
    if (rc != PS_WIRE_OK)
        return rc;
    s->index = ps_get_u32be(p);
    s->packets = ps_get_u64be(p + 4);
    s->bytes = ps_get_u64be(p + 12);
    s->kernel_drops = ps_get_u64be(p + 20);
    s->if_drops = ps_get_u64be(p + 28);
    s->sensor_drops = ps_get_u64be(p + 36);
    s->timestamp_ns = ps_get_u64be(p + 44);
    return PS_WIRE_OK;
}

static int encode_u64(ps_buf *out, uint8_t type, uint64_t v)
{
    uint8_t *p = frame_begin(out, type, U64_LEN);
    if (!p)
        return -1;
    ps_put_u64be(p, v);
    return frame_commit(out, U64_LEN);
}

int ps_wire_encode_ack(ps_buf *out, uint64_t seq)
{
    return encode_u64(out, PS_FRAME_ACK, seq);
}

int ps_wire_encode_heartbeat(ps_buf *out, uint64_t ts_ns)
{
    return encode_u64(out, PS_FRAME_HEARTBEAT, ts_ns);
}

int ps_wire_encode_bye(ps_buf *out, uint64_t last_seq)
{
    return encode_u64(out, PS_FRAME_BYE, last_seq);
}

int ps_wire_decode_u64(const uint8_t *p, uint32_t len, uint64_t *v)
{
    int rc = exact_len(len, U64_LEN);
    if (rc != PS_WIRE_OK)
        return rc;
    *v = ps_get_u64be(p);
    return PS_WIRE_OK;
}

/* ------------------------------------------------------------------------ */
/* Records                                                                  */

void ps_record_iter_init(ps_record_iter *it, const uint8_t *raw, size_t len)
{
    it->p = raw;
    it->left = len;
}

/* The receiver's per-packet path: three compares and four loads. */
int ps_record_iter_next(ps_record_iter *it, ps_record *r)
{
    size_t left = it->left;
    if (left < PS_WIRE_REC_HDR_LEN)
        return left == 0 ? PS_WIRE_NEED_MORE : PS_WIRE_E_TRUNCATED;
    const uint8_t *p = it->p;
    uint32_t caplen = ps_get_u32be(p + 12);
    uint32_t origlen = ps_get_u32be(p + 16);
    if (caplen > PS_WIRE_MAX_CAPLEN)
        return PS_WIRE_E_TOO_LONG;
    if (caplen > origlen)
        return PS_WIRE_E_BAD_VALUE;
    if (caplen > left - PS_WIRE_REC_HDR_LEN)
        return PS_WIRE_E_TRUNCATED;
    r->iface = ps_get_u32be(p);
    r->ts_ns = ps_get_u64be(p + 4);
    r->caplen = caplen;
    r->origlen = origlen;
    r->data = p + PS_WIRE_REC_HDR_LEN;
    it->p = p + PS_WIRE_REC_HDR_LEN + caplen;
    it->left = left - PS_WIRE_REC_HDR_LEN - caplen;
    return PS_WIRE_OK;
}

/* ------------------------------------------------------------------------ */
/* JOB_START, JOB_STOP, JOB_STATUS (v2)                                     */

/* A job's name becomes part of file names (job-NAME-...): lowercase letters,
 * digits and '-' only, like a Kubernetes label value's safe subset. */
static int check_job_name(const char *s, uint16_t n)
{
    if (n == 0)
        return PS_WIRE_E_BAD_VALUE;
    if (n > PS_WIRE_MAX_JOB_NAME_LEN)
        return PS_WIRE_E_TOO_LONG;
    if (!s)
        return PS_WIRE_E_BAD_VALUE;
    for (uint16_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return PS_WIRE_E_BAD_VALUE;
    }
    return PS_WIRE_OK;
}

/* Selector strings and messages are text handed to libpcap, fnmatch and
 * logs as C strings: no NUL inside. */
static int check_text(const char *s, uint16_t n, uint32_t max)
{
    if (n > max)
        return PS_WIRE_E_TOO_LONG;
    if (n && !s)
        return PS_WIRE_E_BAD_VALUE;
    if (n && memchr(s, 0, n))
        return PS_WIRE_E_BAD_VALUE;
    return PS_WIRE_OK;
}

static int check_job_start(const ps_job_start *j)
{
    if (j->job == 0)
        return PS_WIRE_E_BAD_VALUE;
    if (j->end_ns != 0 && j->end_ns < j->start_ns)
        return PS_WIRE_E_BAD_VALUE;
    if (j->preroll_sec > PS_WIRE_MAX_PREROLL_SEC)
        return PS_WIRE_E_BAD_VALUE;
    int rc;
    if ((rc = check_job_name(j->name, j->name_len)) != PS_WIRE_OK ||
        (rc = check_text(j->namespaces, j->namespaces_len, PS_WIRE_MAX_JOB_SEL_LEN)) !=
            PS_WIRE_OK ||
        (rc = check_text(j->pods, j->pods_len, PS_WIRE_MAX_JOB_SEL_LEN)) != PS_WIRE_OK ||
        (rc = check_text(j->label_selector, j->label_selector_len, PS_WIRE_MAX_JOB_SEL_LEN)) !=
            PS_WIRE_OK ||
        (rc = check_text(j->interfaces, j->interfaces_len, PS_WIRE_MAX_JOB_SEL_LEN)) !=
            PS_WIRE_OK ||
        (rc = check_text(j->filter, j->filter_len, PS_WIRE_MAX_JOB_SEL_LEN)) != PS_WIRE_OK)
        return rc;
    return PS_WIRE_OK;
}

int ps_wire_encode_job_start(ps_buf *out, const ps_job_start *j)
{
    if (check_job_start(j) != PS_WIRE_OK)
        return -1;
    uint32_t plen = JOB_START_FIXED_LEN + 2 * 6 + (uint32_t)j->name_len +
                    (uint32_t)j->namespaces_len + (uint32_t)j->pods_len +
                    (uint32_t)j->label_selector_len + (uint32_t)j->interfaces_len +
                    (uint32_t)j->filter_len;
    uint8_t *p = frame_begin(out, PS_FRAME_JOB_START, plen);
    if (!p)
        return -1;
    ps_put_u64be(p, j->job);
    ps_put_u64be(p + 8, j->start_ns);
    ps_put_u64be(p + 16, j->end_ns);
    ps_put_u64be(p + 24, j->max_packets);
    ps_put_u64be(p + 32, j->max_bytes);
    ps_put_u32be(p + 40, j->preroll_sec);
    ps_put_u32be(p + 44, 0);
    p = put_str(p + JOB_START_FIXED_LEN, j->name, j->name_len);
    p = put_str(p, j->namespaces, j->namespaces_len);
    p = put_str(p, j->pods, j->pods_len);
    p = put_str(p, j->label_selector, j->label_selector_len);
    p = put_str(p, j->interfaces, j->interfaces_len);
    put_str(p, j->filter, j->filter_len);
    return frame_commit(out, plen);
}

int ps_wire_decode_job_start(const uint8_t *p, uint32_t len, ps_job_start *j)
{
    if (len < JOB_START_FIXED_LEN)
        return PS_WIRE_E_TRUNCATED;
    j->job = ps_get_u64be(p);
    j->start_ns = ps_get_u64be(p + 8);
    j->end_ns = ps_get_u64be(p + 16);
    j->max_packets = ps_get_u64be(p + 24);
    j->max_bytes = ps_get_u64be(p + 32);
    j->preroll_sec = ps_get_u32be(p + 40);
    if (ps_get_u32be(p + 44) != 0)
        return PS_WIRE_E_RESERVED;
    const uint8_t *pos = p + JOB_START_FIXED_LEN;
    uint32_t left = len - JOB_START_FIXED_LEN;
    int rc;
    if ((rc = get_str(&pos, &left, PS_WIRE_MAX_JOB_NAME_LEN, &j->name, &j->name_len)) !=
            PS_WIRE_OK ||
        (rc = get_str(&pos, &left, PS_WIRE_MAX_JOB_SEL_LEN, &j->namespaces, &j->namespaces_len)) !=
            PS_WIRE_OK ||
        (rc = get_str(&pos, &left, PS_WIRE_MAX_JOB_SEL_LEN, &j->pods, &j->pods_len)) !=
            PS_WIRE_OK ||
        (rc = get_str(&pos, &left, PS_WIRE_MAX_JOB_SEL_LEN, &j->label_selector,
                      &j->label_selector_len)) != PS_WIRE_OK ||
        (rc = get_str(&pos, &left, PS_WIRE_MAX_JOB_SEL_LEN, &j->interfaces, &j->interfaces_len)) !=
            PS_WIRE_OK ||
        (rc = get_str(&pos, &left, PS_WIRE_MAX_JOB_SEL_LEN, &j->filter, &j->filter_len)) !=
            PS_WIRE_OK)
        return rc;
    if (left != 0)
        return PS_WIRE_E_TRAILING;
    return check_job_start(j);
}

int ps_wire_encode_job_stop(ps_buf *out, uint64_t job)
{
    if (job == 0)
        return -1;
    return encode_u64(out, PS_FRAME_JOB_STOP, job);
}

int ps_wire_decode_job_stop(const uint8_t *p, uint32_t len, uint64_t *job)
{
    int rc = ps_wire_decode_u64(p, len, job);
    if (rc != PS_WIRE_OK)
        return rc;
    return *job != 0 ? PS_WIRE_OK : PS_WIRE_E_BAD_VALUE;
}

static int check_job_status(const ps_job_status *s)
{
    if (s->job == 0)
        return PS_WIRE_E_BAD_VALUE;
    if (s->state < PS_JOB_RUNNING || s->state > PS_JOB_FAILED)
        return PS_WIRE_E_BAD_VALUE;
    return check_text(s->msg, s->msg_len, PS_WIRE_MAX_JOB_MSG_LEN);
}

int ps_wire_encode_job_status(ps_buf *out, const ps_job_status *s)
{
    if (check_job_status(s) != PS_WIRE_OK)
        return -1;
    uint32_t plen = JOB_STATUS_FIXED_LEN + 2 + (uint32_t)s->msg_len;
    uint8_t *p = frame_begin(out, PS_FRAME_JOB_STATUS, plen);
    if (!p)
        return -1;
    ps_put_u64be(p, s->job);
    ps_put_u32be(p + 8, s->state);
    ps_put_u32be(p + 12, 0);
    ps_put_u64be(p + 16, s->packets);
    ps_put_u64be(p + 24, s->bytes);
    ps_put_u64be(p + 32, s->drops);
    put_str(p + JOB_STATUS_FIXED_LEN, s->msg, s->msg_len);
    return frame_commit(out, plen);
}

int ps_wire_decode_job_status(const uint8_t *p, uint32_t len, ps_job_status *s)
{
    if (len < JOB_STATUS_FIXED_LEN)
        return PS_WIRE_E_TRUNCATED;
    s->job = ps_get_u64be(p);
    s->state = ps_get_u32be(p + 8);
    if (ps_get_u32be(p + 12) != 0)
        return PS_WIRE_E_RESERVED;
    s->packets = ps_get_u64be(p + 16);
    s->bytes = ps_get_u64be(p + 24);
    s->drops = ps_get_u64be(p + 32);
    const uint8_t *pos = p + JOB_STATUS_FIXED_LEN;
    uint32_t left = len - JOB_STATUS_FIXED_LEN;
    int rc = get_str(&pos, &left, PS_WIRE_MAX_JOB_MSG_LEN, &s->msg, &s->msg_len);
    if (rc != PS_WIRE_OK)
        return rc;
    if (left != 0)
        return PS_WIRE_E_TRAILING;
    return check_job_status(s);
}
