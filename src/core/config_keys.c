/*
 * config_keys: the table of every configuration key, and lookups in it.
 *
 * Each key exists once, here: its dotted path, its type, where it lands in
 * ps_config, its range or allowed values, its default, who reads it and
 * what it does. Everything else reads this table: the YAML walker, flags and
 * the environment (config_value.c), typo suggestions, and the reference in
 * docs/configuration.md and --help (config_doc.c), which a test compares.
 */
#include <string.h>
#include <strings.h>

#include "config_int.h"

/* ---- enumerations ---- */

static const char *const pcap_mode_names[] = {"all", "allow", "deny"};
static const char *const log_format_names[] = {"text", "json"};
static const char *const format_names[] = {"pcapng", "pcap", "pcap-ns"};

static int name_index(const char *const *names, int count, const char *s)
{
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static int pcap_mode_parse(const char *s, int *out)
{
    int i = name_index(pcap_mode_names, 3, s);
    if (i < 0)
        return -1;
    *out = i;
    return 0;
}

static const char *pcap_mode_name(int v)
{
    return v >= 0 && v < 3 ? pcap_mode_names[v] : NULL;
}

static int log_format_parse(const char *s, int *out)
{
    int i = name_index(log_format_names, 2, s);
    if (i < 0)
        return -1;
    *out = i;
    return 0;
}

static const char *log_format_name(int v)
{
    return v >= 0 && v < 2 ? log_format_names[v] : NULL;
}

static const char *const drop_policy_names[] = {"newest", "oldest"};

static int drop_policy_parse(const char *s, int *out)
{
    int i = name_index(drop_policy_names, 2, s);
    if (i < 0)
        return -1;
    *out = i;
    return 0;
}

static const char *drop_policy_name(int v)
{
    return v >= 0 && v < 2 ? drop_policy_names[v] : NULL;
}

/* output.s3.sse: the x-amz-server-side-encryption values, in PS_CONFIG_SSE_*
 * order; S3 spells them exactly so. */
static const char *const sse_names[] = {"none", "AES256", "aws:kms"};

static int sse_parse(const char *s, int *out)
{
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(sse_names[i], s) == 0) { /* the value arrives lower-cased */
            *out = i;
            return 0;
        }
    }
    return -1;
}

static const char *sse_name(int v)
{
    return v >= 0 && v < 3 ? sse_names[v] : NULL;
}

const char *ps_format_name(ps_format f)
{
    return (int)f >= 0 && (int)f < 3 ? format_names[f] : NULL;
}

int ps_format_parse(const char *s, ps_format *f)
{
    for (int i = 0; s && i < 3; i++) {
        if (strcasecmp(s, format_names[i]) == 0) {
            if (f)
                *f = (ps_format)i;
            return 0;
        }
    }
    return -1;
}

static int format_parse_cb(const char *s, int *out)
{
    ps_format f;
    if (ps_format_parse(s, &f) != 0)
        return -1;
    *out = (int)f;
    return 0;
}

static const char *format_name_cb(int v)
{
    return ps_format_name((ps_format)v);
}

static int codec_parse_cb(const char *s, int *out)
{
    ps_codec codec;
    if (ps_codec_parse(s, &codec) != 0)
        return -1;
    *out = (int)codec;
    return 0;
}

static const char *codec_name_cb(int v)
{
    return ps_codec_name(v);
}

static int log_level_parse_cb(const char *s, int *out)
{
    ps_log_level l;
    if (ps_log_level_parse(s, &l) != 0)
        return -1;
    *out = (int)l;
    return 0;
}

static const char *log_level_name_cb(int v)
{
    return ps_log_level_name((ps_log_level)v);
}

static const char *const kube_enabled_names[] = {"auto", "true", "false"};

static int kube_enabled_parse(const char *s, int *out)
{
    int i = name_index(kube_enabled_names, 3, s);
    if (i < 0)
        return -1;
    *out = i;
    return 0;
}

static const char *kube_enabled_name(int v)
{
    return v >= 0 && v < 3 ? kube_enabled_names[v] : NULL;
}

static const enum_def pcap_mode_enum = {pcap_mode_parse, pcap_mode_name, 3};
static const enum_def format_enum = {format_parse_cb, format_name_cb, 3};
static const enum_def codec_enum = {codec_parse_cb, codec_name_cb, PS_CODEC_COUNT};
static const enum_def log_level_enum = {log_level_parse_cb, log_level_name_cb, 4};
static const enum_def log_format_enum = {log_format_parse, log_format_name, 2};
static const enum_def drop_policy_enum = {drop_policy_parse, drop_policy_name, 2};
static const enum_def sse_enum = {sse_parse, sse_name, 3};
static const char *const capture_mode_names[] = {"continuous", "ondemand"};

static int capture_mode_parse(const char *s, int *out)
{
    int i = name_index(capture_mode_names, 2, s);
    if (i < 0)
        return -1;
    *out = i;
    return 0;
}

static const char *capture_mode_name(int v)
{
    return v >= 0 && v < 2 ? capture_mode_names[v] : NULL;
}

static const enum_def capture_mode_enum = {capture_mode_parse, capture_mode_name, 2};
static const enum_def kube_enabled_enum = {kube_enabled_parse, kube_enabled_name, 3};

/* ---- the key table ---- */

#define FIELD(f) .off = offsetof(ps_config, f), .size = sizeof(((ps_config *)0)->f)

/* One entry per key. Adding a key: its field in ps_config (config.h) and one
 * entry here; parsing, the environment variable, suggestions, the docs'
 * table (make docs) and the unit tests follow from it. */
const key_def cfg_keys[] = {
    /* Deepfence PacketStreamer's keys, meanings unchanged. */
    {.name = "input.address",
     .type = K_STR,
     FIELD(input_address),
     .def = "0.0.0.0",
     .orig = 1,
     .roles = R_R,
     .help = "Address the receiver listens on for sensors."},
    {.name = "input.port",
     .type = K_INT,
     FIELD(input_port),
     .min = 1,
     .max = 65535,
     .def = "8081",
     .orig = 1,
     .roles = R_R,
     .help = "TCP port the receiver listens on."},
    {.name = "output.server.address",
     .type = K_STR,
     FIELD(server_address),
     .orig = 1,
     .roles = R_S,
     .doc_default = "none (required for a sensor)",
     .help = "Host name or IP address of the receiver."},
    {.name = "output.server.port",
     .type = K_INT,
     FIELD(server_port),
     .min = 1,
     .max = 65535,
     .def = "8081",
     .orig = 1,
     .roles = R_S,
     .help = "The receiver's port."},
    {.name = "output.file.path",
     .type = K_STR,
     FIELD(file_path),
     .min = 1,
     .def = "./captures",
     .orig = 1,
     .roles = R_R,
     .help = "Where captures are written: a directory (or directory/prefix). `stdout`, "
             "`/dev/stdout` and `-` stream one capture to standard output instead (see below)."},
    {.name = "tls.enable",
     .type = K_BOOL,
     FIELD(tls_enable),
     .def = "false",
     .orig = 1,
     .roles = R_SR,
     .help = "Use TLS between sensor and receiver."},
    /* Go's yaml.v3 lower-cases untagged field names, so the original read
     * "certfile"; its chart wrote "certFile". Both load. */
    {.name = "tls.certFile",
     .alt = "tls.certfile",
     .type = K_STR,
     FIELD(tls_cert_file),
     .orig = 1,
     .roles = R_SR,
     .unit = "path",
     .help =
         "PEM certificate: the receiver's server certificate, or the sensor's client certificate "
         "for mutual TLS. The original's lower-case spelling `tls.certfile` is accepted too."},
    {.name = "tls.keyFile",
     .alt = "tls.keyfile",
     .type = K_STR,
     FIELD(tls_key_file),
     .orig = 1,
     .roles = R_SR,
     .unit = "path",
     .help = "PEM private key for `tls.certFile`. `tls.keyfile` is accepted too."},
    {.name = "auth.enable",
     .type = K_BOOL,
     FIELD(auth_enable),
     .def = "false",
     .orig = 1,
     .roles = R_SR,
     .help = "Require a shared key in the session handshake."},
    {.name = "auth.key",
     .type = K_STR,
     FIELD(auth_key),
     .orig = 1,
     .roles = R_SR,
     .help = "The shared key itself. Never logged. At most 1024 bytes. Checked by the receiver in "
             "constant time. Without TLS it crosses the network in plaintext, and both sides log a "
             "warning at startup. Prefer `auth.keyFile`."},
    {.name = "compressBlockSize",
     .type = K_INT,
     FIELD(compress_block_size_kb),
     .min = 1,
     .max = 16384,
     .def = "256",
     .orig = 1,
     .roles = R_S,
     .unit = "KiB",
     .help = "Size of a batch of captured packets before it is compressed and sent."},
    {.name = "inputPacketLen",
     .type = K_INT,
     FIELD(input_packet_len),
     .min = 1,
     .max = 262144,
     .def = "65535",
     .orig = 1,
     .roles = R_S,
     .unit = "bytes",
     .help = "Snapshot length: bytes kept of each packet."},
    {.name = "gatherMaxWaitSec",
     .type = K_INT,
     FIELD(gather_max_wait_sec),
     .min = 0,
     .max = 3600,
     .def = "1",
     .orig = 1,
     .roles = R_S,
     .unit = "seconds",
     .help = "Longest time a partial batch waits before it is sent anyway. Ignored when "
             "`gatherMaxWaitMs` is not 0."},
    {.name = "logFilename",
     .type = K_STR,
     FIELD(log_filename),
     .orig = 1,
     .roles = R_SR,
     .unit = "path",
     .doc_default = "none (stderr)",
     .help = "Append log lines to this file instead of standard error."},
    {.name = "pcapMode",
     .type = K_ENUM,
     FIELD(pcap_mode),
     .e = &pcap_mode_enum,
     .def = "all",
     .orig = 1,
     .roles = R_S,
     .help = "`all`: capture every port. `allow`: capture only `capturePorts` (on every interface) "
             "and the ports of `captureInterfacesPorts` (on those interfaces). `deny`: capture "
             "everything except `capturePorts` (and, on an interface listed in "
             "`captureInterfacesPorts`, its ports). See [Filters](#filters)."},
    {.name = "capturePorts",
     .type = K_PORTS,
     FIELD(capture_ports),
     .orig = 1,
     .roles = R_S,
     .help = "The ports `pcapMode` allows or denies."},
    {.name = "captureInterfacesPorts",
     .type = K_IFPORTS,
     FIELD(iface_ports),
     .min = 1,
     .max = 64,
     .flags = KF_IFNAME,
     .orig = 1,
     .roles = R_S,
     .help = "Per-interface ports, added to `capturePorts` on that interface (allowed in `allow` "
             "mode, denied in `deny` mode). In `allow` mode an interface with no ports (`lo:`) is "
             "captured whole, and an interface with no port at all (none here, no `capturePorts`) "
             "is not captured."},
    {.name = "ignorePorts",
     .type = K_PORTS,
     FIELD(ignore_ports),
     .orig = 1,
     .roles = R_S,
     .help = "Ports never captured, whatever `pcapMode` says."},
    {.name = "output.plugins",
     .type = K_UNSUPPORTED,
     .orig = 1,
     .roles = 0,
     .help = "**Not supported**: the original's S3 and Kafka plugins (`output.plugins.s3`, "
             "`output.plugins.kafka`) are an error naming the key, see below. Uploads to S3 are "
             "`output.s3` (docs/storage.md)."},
    /* packetstreamer's own keys. */
    {.name = "tls.caFile",
     .type = K_STR,
     FIELD(tls_ca_file),
     .roles = R_SR,
     .unit = "path",
     .help = "PEM CA bundle. On the sensor: the CA the receiver's certificate must chain to "
             "(default: the system store). On the receiver: when set (and `tls.clientCaFile` is "
             "not), sensors must present a client certificate signed by it (mutual TLS)."},
    {.name = "auth.keyFile",
     .type = K_STR,
     FIELD(auth_key_file),
     .roles = R_SR,
     .unit = "path",
     .help = "Read the shared key from this file (e.g. a mounted Secret). Set `auth.key` or "
             "`auth.keyFile`, not both. Read once at start; a trailing newline and blanks are "
             "dropped; 1 to 1024 bytes."},
    {.name = "gatherMaxWaitMs",
     .type = K_INT,
     FIELD(gather_max_wait_ms),
     .min = 0,
     .max = 3600000,
     .def = "0",
     .roles = R_S,
     .unit = "ms",
     .help = "Like `gatherMaxWaitSec` in milliseconds; when not 0 it wins. 0 means use "
             "`gatherMaxWaitSec`."},
    {.name = "output.file.format",
     .type = K_ENUM,
     FIELD(format),
     .e = &format_enum,
     .def = "pcapng",
     .roles = R_R,
     .help = "`pcapng` (nanosecond timestamps, one interface block per sensor and interface), "
             "classic `pcap` (microseconds) or `pcap-ns` (classic with nanoseconds)."},
    {.name = "output.file.rotateSizeMB",
     .type = K_INT,
     FIELD(rotate_bytes),
     .min = 0,
     .max = 1048576,
     .scale = MIB,
     .def = "0",
     .roles = R_R,
     .unit = "MiB",
     .help = "Start a new file once the current one reaches this size. 0: never."},
    {.name = "output.file.rotateSeconds",
     .type = K_INT,
     FIELD(rotate_seconds),
     .min = 0,
     .max = 31536000,
     .def = "0",
     .roles = R_R,
     .unit = "seconds",
     .help = "Start a new file after this long. 0: never."},
    {.name = "output.file.maxFiles",
     .type = K_INT,
     FIELD(max_files),
     .min = 0,
     .max = 1000000,
     .def = "0",
     .roles = R_R,
     .help = "Keep at most this many finished files, deleting the oldest. 0: unlimited."},
    {.name = "output.file.maxTotalSizeMB",
     .type = K_INT,
     FIELD(max_total_bytes),
     .min = 0,
     .max = 1ull << 30,
     .scale = MIB,
     .def = "0",
     .roles = R_R,
     .unit = "MiB",
     .help = "Keep the files' total size under this, deleting the oldest. 0: unlimited."},
    {.name = "output.file.perSensor",
     .type = K_BOOL,
     FIELD(per_sensor),
     .def = "false",
     .roles = R_R,
     .help = "One set of files per sensor instead of one merged set. Not with a stdout path."},
    {.name = "output.file.idleCloseSeconds",
     .type = K_INT,
     FIELD(idle_close_seconds),
     .min = 0,
     .max = 86400,
     .def = "60",
     .roles = R_R,
     .unit = "seconds",
     .help = "With `perSensor`: complete a sensor's file once it has taken no packet for this "
             "long (a departed sensor's file does not stay open); its next packet starts a new "
             "file. 0: never."},
    {.name = "output.file.maxOpenFiles",
     .type = K_INT,
     FIELD(max_open_files),
     .min = 0,
     .max = 1000000,
     .def = "256",
     .roles = R_R,
     .help = "With `perSensor`: at most this many files open at once; starting one more first "
             "completes the least recently used. Never more than a quarter of the process's "
             "open-file limit (`ulimit -n`). 0: only that limit."},
    /* Upload of completed files to S3-compatible object storage
     * (receiver/upload.h, docs/storage.md). */
    {.name = "output.s3.enabled",
     .type = K_BOOL,
     FIELD(s3_enabled),
     .def = "false",
     .roles = R_R,
     .help = "Upload every completed capture file to an S3-compatible bucket (docs/storage.md). "
             "Credentials come from the standard AWS environment variables, the shared "
             "credentials file or a web identity (IRSA), never from this file."},
    {.name = "output.s3.endpoint",
     .type = K_STR,
     FIELD(s3_endpoint),
     .max = 1024,
     .roles = R_R,
     .unit = "URL",
     .doc_default = "AWS S3 of `output.s3.region`",
     .help = "The S3 service's URL, `http://` or `https://` with host and optional port (MinIO, "
             "Ceph RGW, another cloud's S3 API)."},
    {.name = "output.s3.region",
     .type = K_STR,
     FIELD(s3_region),
     .min = 1,
     .max = 64,
     .def = "us-east-1",
     .roles = R_R,
     .help = "The bucket's region: the SigV4 signing region, and the AWS endpoints' region."},
    {.name = "output.s3.bucket",
     .type = K_STR,
     FIELD(s3_bucket),
     .min = 3,
     .max = 63,
     .roles = R_R,
     .doc_default = "none (required with `output.s3.enabled`)",
     .help = "The bucket files are uploaded to; it must exist."},
    {.name = "output.s3.prefix",
     .type = K_STR,
     FIELD(s3_prefix),
     .max = 512,
     .roles = R_R,
     .doc_default = "empty",
     .help = "Prepended to each file's name to make its object key: `captures/` gives "
             "`captures/packetstreamer-...pcapng`. `{receiver}` in it becomes this receiver's "
             "name (`tier.name`, else the host name), so receivers sharing a bucket do not "
             "overwrite each other's files: `captures/{receiver}/`."},
    {.name = "output.s3.pathStyle",
     .type = K_BOOL,
     FIELD(s3_path_style),
     .def = "false",
     .roles = R_R,
     .help = "Path-style URLs `ENDPOINT/BUCKET/KEY` (MinIO, Ceph RGW, most test servers) instead "
             "of virtual-host `BUCKET.ENDPOINT/KEY`."},
    {.name = "output.s3.storageClass",
     .type = K_STR,
     FIELD(s3_storage_class),
     .max = 64,
     .roles = R_R,
     .doc_default = "the bucket's default",
     .help = "Storage class of the objects (`x-amz-storage-class`), e.g. `STANDARD_IA`."},
    {.name = "output.s3.sse",
     .type = K_ENUM,
     FIELD(s3_sse),
     .e = &sse_enum,
     .def = "none",
     .roles = R_R,
     .help = "Server-side encryption requested per object: `none` (the bucket's default), "
             "`AES256` (S3-managed keys) or `aws:kms`."},
    {.name = "output.s3.sseKmsKeyId",
     .type = K_STR,
     FIELD(s3_sse_kms_key_id),
     .max = 2048,
     .roles = R_R,
     .doc_default = "the account's default KMS key",
     .help = "KMS key id or ARN with `sse: aws:kms`."},
    {.name = "output.s3.stsEndpoint",
     .type = K_STR,
     FIELD(s3_sts_endpoint),
     .max = 1024,
     .roles = R_R,
     .unit = "URL",
     .doc_default = "`https://sts.REGION.amazonaws.com`",
     .help = "STS endpoint for AssumeRoleWithWebIdentity, used when `AWS_WEB_IDENTITY_TOKEN_FILE` "
             "and `AWS_ROLE_ARN` are set (IRSA)."},
    {.name = "output.s3.caFile",
     .type = K_STR,
     FIELD(s3_ca_file),
     .roles = R_R,
     .unit = "path",
     .doc_default = "the system store",
     .help = "PEM CA bundle the certificates of an `https://` endpoint and STS endpoint must "
             "chain to (a MinIO or Ceph RGW with a private CA)."},
    {.name = "output.s3.partSizeMB",
     .type = K_INT,
     FIELD(s3_part_size_bytes),
     .min = 5,
     .max = 5120,
     .scale = MIB,
     .def = "16",
     .roles = R_R,
     .unit = "MiB",
     .help = "Files up to this size go up in one PUT; larger ones as a multipart upload of parts "
             "this size (a file of more than 10000 parts uses larger ones)."},
    {.name = "output.s3.deleteLocal",
     .type = K_BOOL,
     FIELD(s3_delete_local),
     .def = "false",
     .roles = R_R,
     .help = "Delete a local file once its upload is confirmed (the object's size and checksum "
             "read back). false: local files stay, under the `output.file` retention limits."},
    {.name = "output.s3.retryMaxSec",
     .type = K_INT,
     FIELD(s3_retry_max_sec),
     .min = 1,
     .max = 86400,
     .def = "300",
     .roles = R_R,
     .unit = "seconds",
     .help = "Longest wait between attempts at a failing upload (the wait doubles from 1 second, "
             "with jitter). Failed uploads are retried until they succeed or the file is gone."},
    {.name = "output.s3.cacheMB",
     .type = K_INT,
     FIELD(s3_cache_bytes),
     .min = 1,
     .max = 1048576,
     .scale = MIB,
     .def = "1024",
     .roles = R_R,
     .unit = "MiB",
     .help = "Disk space (`OUTPUT_DIR/.s3cache`) for the bucket objects `/api/packets` reads "
             "when they are not on disk (deleted after upload, or another receiver's): whole "
             "objects, least recently used deleted first. A request that needs more is refused "
             "(400)."},
    {.name = "compression.codec",
     .type = K_ENUM,
     FIELD(codec),
     .e = &codec_enum,
     .def = "lz4",
     .roles = R_S,
     .help = "How batches are compressed on the wire. The receiver accepts all three. A batch that "
             "shrinks by less than 3 % (encrypted or already compressed traffic) makes the sensor "
             "send the next 16 batches stored (codec `none` in their batch header) before it tries "
             "again, so incompressible traffic costs almost no compression CPU; the summary line "
             "counts them as `stored_batches`."},
    {.name = "compression.zlibLevel",
     .type = K_INT,
     FIELD(zlib_level),
     .min = 1,
     .max = 9,
     .def = "6",
     .roles = R_S,
     .help = "zlib compression level (1 fastest, 9 smallest)."},
    {.name = "capture.interfaces",
     .type = K_STRLIST,
     FIELD(interfaces),
     .count_off = offsetof(ps_config, interfaces_count),
     .min = 1,
     .max = 64,
     .flags = KF_IFNAME,
     .roles = R_S,
     .doc_default = "empty (every interface that is up, loopback excluded)",
     .doc_range = "at most 64 entries of 1..64 characters, names or globs (`eth0`, `veth*`)",
     .help = "Interfaces to capture on (shell globs, `fnmatch`). A name given here is captured "
             "even if it is the loopback. See [Choosing interfaces](#choosing-interfaces)."},
    {.name = "capture.filter",
     .type = K_STR,
     FIELD(filter),
     .roles = R_S,
     .unit = "BPF",
     .help = "A BPF expression (pcap-filter(7)) ANDed with the filter built from the port keys. "
             "Checked at start: an expression that does not compile stops the sensor with "
             "libpcap's message."},
    {.name = "capture.excludeInterfaces",
     .type = K_STRLIST,
     FIELD(exclude_interfaces),
     .count_off = offsetof(ps_config, exclude_interfaces_count),
     .min = 1,
     .max = 64,
     .flags = KF_IFNAME,
     .roles = R_S,
     .doc_range = "at most 64 entries of 1..64 characters, names or globs",
     .help = "Interfaces never captured, even when `capture.interfaces` or `capture.podInterfaces` "
             "picks them (`docker*`, `eth1`)."},
    {.name = "capture.podInterfaces",
     .type = K_BOOL,
     FIELD(pod_interfaces),
     .def = "false",
     .roles = R_S,
     .help = "Pod mode: capture the node-side ends of pods' interfaces as the common CNIs name "
             "them (see \"Choosing interfaces\" below), plus whatever `capture.interfaces` names; "
             "the node's own uplink is left alone unless listed there."},
    {.name = "capture.bufferSizeMB",
     .type = K_INT,
     FIELD(buffer_size_mb),
     .min = 1,
     .max = 1024,
     .def = "8",
     .roles = R_S,
     .unit = "MiB",
     .help = "Size of the kernel ring (TPACKET_V3, memory-mapped) of each captured interface. "
             "It holds the packets while the sensor waits for CPU or for spool room: bigger "
             "absorbs longer bursts, at the cost of memory per interface. On a node with many "
             "captured interfaces, size it down (the Helm chart sets 2 for pod interfaces)."},
    {.name = "capture.promiscuous",
     .type = K_BOOL,
     FIELD(promiscuous),
     .def = "false",
     .roles = R_S,
     .help = "Put interfaces in promiscuous mode (needs CAP_NET_ADMIN). Pod and node traffic is "
             "seen without it."},
    {.name = "capture.pods.namespaces",
     .type = K_STRLIST,
     FIELD(pods_namespaces),
     .count_off = offsetof(ps_config, pods_namespaces_count),
     .min = 1,
     .max = 63,
     .roles = R_S,
     .doc_range = "at most 64 names of 1..63 characters",
     .doc_default = "every namespace",
     .help =
         "With Kubernetes on (`kubernetes.enabled`), capture only the pods of these "
         "namespaces. Combined with `capture.pods.excludeNamespaces`, "
         "`capture.pods.labelSelector` and the interface rules: a pod is captured when all "
         "of them pick it. See docs/kubernetes.md, \"Pods: names, selection, degraded modes\"."},
    {.name = "capture.pods.excludeNamespaces",
     .type = K_STRLIST,
     FIELD(pods_exclude_namespaces),
     .count_off = offsetof(ps_config, pods_exclude_namespaces_count),
     .min = 1,
     .max = 63,
     .def = "kube-system",
     .roles = R_S,
     .doc_range = "at most 64 names of 1..63 characters",
     .help = "Pods of these namespaces are never captured (the cluster's own machinery: DNS, CNI, "
             "proxies). `[]` excludes none."},
    {.name = "capture.pods.labelSelector",
     .type = K_STR,
     FIELD(pods_label_selector),
     .max = 4096,
     .roles = R_S,
     .doc_range = "a Kubernetes label selector",
     .doc_default = "every pod",
     .help = "Capture only the pods whose labels match, in Kubernetes' syntax: `app=web`, "
             "`tier in (a,b)`, `env!=dev`, `tier notin (x)`, `canary`, `!canary`, joined by commas "
             "(all must hold). Checked at start and by check-config."},
    {.name = "capture.statsIntervalSec",
     .type = K_INT,
     FIELD(stats_interval_sec),
     .min = 1,
     .max = 3600,
     .def = "5",
     .roles = R_S,
     .unit = "seconds",
     .help = "How often each interface's counters (captured, kernel and sensor drops) are sent to "
             "the receiver, which writes them as pcapng interface statistics blocks. They are also "
             "sent when an interface goes away and at exit."},
    {.name = "capture.mode",
     .type = K_ENUM,
     FIELD(capture_ondemand),
     .e = &capture_mode_enum,
     .def = "continuous",
     .roles = R_S,
     .help = "`continuous` streams every captured interface to the receiver. `ondemand` watches "
             "the same interfaces and pods but streams nothing until a capture job asks "
             "(docs/jobs.md); meanwhile each interface feeds the flight recorder "
             "(`capture.recorder.*`), from which a job's preroll is taken."},
    {.name = "capture.recorder.seconds",
     .type = K_INT,
     FIELD(recorder_seconds),
     .min = 1,
     .max = 3600,
     .def = "30",
     .roles = R_S,
     .unit = "seconds",
     .help = "In `ondemand` mode, how far back the flight recorder keeps packets of every watched "
             "interface: the longest preroll a job can get. Older packets are evicted."},
    {.name = "capture.recorder.sizeMB",
     .type = K_INT,
     FIELD(recorder_mb),
     .min = 1,
     .max = 65536,
     .def = "64",
     .roles = R_S,
     .unit = "MiB",
     .help = "In `ondemand` mode, the flight recorder's memory bound for the whole sensor (all "
             "interfaces together, packet bytes plus 32 bytes per packet); when full, the oldest "
             "packets are evicted (counted). It is part of the sensor's RSS: see "
             "docs/performance.md."},
    /* Default: the host name, set by ps_config_init. */
    {.name = "sensor.id",
     .type = K_STR,
     FIELD(sensor_id),
     .min = 1,
     .max = 253,
     .flags = KF_ID,
     .roles = R_S,
     .doc_default = "the host name",
     .doc_range = "1..253 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`",
     .help = "The sensor's name in the receiver's files, pages and metrics. In Kubernetes, set it "
             "to the node name from the downward API."},
    {.name = "sensor.readFile",
     .type = K_STR,
     FIELD(read_file),
     .roles = R_S,
     .unit = "path",
     .help = "Stream this pcap/pcapng file instead of live traffic, then exit once the receiver "
             "has acknowledged every packet."},
    {.name = "sensor.readPacketsPerSec",
     .type = K_INT,
     FIELD(read_pps),
     .min = 0,
     .max = 100000000,
     .def = "0",
     .roles = R_S,
     .unit = "packets/s",
     .help = "With `--read-file`: replay at most this many packets per second (like tcpreplay's "
             "`--pps`); 0 streams as fast as the receiver acknowledges."},
    {.name = "sensor.shutdownDeadlineSec",
     .type = K_INT,
     FIELD(shutdown_deadline_sec),
     .min = 0,
     .max = 3600,
     .def = "20",
     .roles = R_S,
     .unit = "seconds",
     .help = "On SIGTERM/SIGINT the sensor stops reading and delivers what its spool holds for at "
             "most this long (keep it below the pod's `terminationGracePeriodSeconds`, 30 s by "
             "default), then reports what it could not deliver (reason `shutdown_deadline`) and "
             "exits 1. 0, or a second signal: stop at once."},
    {.name = "privileges.user",
     .type = K_STR,
     FIELD(privileges_user),
     .min = 1,
     .max = 65,
     .roles = R_S,
     .doc_range = "names or numbers of `A-Z a-z 0-9 . _ -`",
     .help = "`USER[:GROUP]`. Like tcpdump's `-Z`: a sensor started as root switches to this user "
             "(and group; default the user's primary group, or the same number) at start, keeping "
             "only CAP_NET_RAW and CAP_NET_ADMIN (bounding, permitted and effective; inheritable "
             "and ambient empty). The switch needs CAP_SETUID and CAP_SETGID (and CAP_SETPCAP to "
             "narrow the bounding set); if it cannot be done the sensor exits 1 rather than run "
             "as root. Started as that user already, nothing changes. See "
             "[docs/kubernetes.md](kubernetes.md#privileges)."},
    {.name = "sensor.connectTimeoutSec",
     .type = K_INT,
     FIELD(connect_timeout_sec),
     .min = 0,
     .max = 86400,
     .def = "30",
     .roles = R_S,
     .unit = "seconds",
     .help = "How long the sensor keeps reconnecting (with backoff) to an unreachable receiver, "
             "counted from the last good connection, before it exits with an error. 0: give up "
             "after the first failed attempt."},
    {.name = "spool.size",
     .type = K_INT,
     FIELD(spool_size_mb),
     .min = 1,
     .max = 65536,
     .def = "8",
     .roles = R_S,
     .unit = "MiB",
     .help = "Memory for batches not yet acknowledged by the receiver; they are resent after a "
             "reconnect. When it is full, capture waits up to 50 ms for an acknowledgement "
             "(packets stay in the kernel ring), then new packets are dropped and counted. The "
             "default, with the default ring, keeps the whole sensor under 32 MiB "
             "(docs/performance.md); raise it to ride out longer receiver outages (it holds size "
             "/ traffic rate seconds: 8 MiB is 8 s of a node sending 1 MB/s). The Helm chart "
             "sets 64."},
    {.name = "spool.dropPolicy",
     .type = K_ENUM,
     FIELD(spool_drop_oldest),
     .e = &drop_policy_enum,
     .def = "newest",
     .roles = R_S,
     .help = "What live capture gives up when the spool is full (a receiver outage longer than the "
             "spool holds): `newest` drops new packets as they are captured (reason `spool_full`); "
             "`oldest` evicts the oldest batches that were never sent to make room for new ones "
             "(reason `spool_evicted`; only never-sent batches, so the receiver cannot have them "
             "and the count stays exact). Either way every dropped packet is counted per "
             "interface. An offline sensor (`--read-file`) never drops: it waits."},
    {.name = "tls.certPem",
     .type = K_STR,
     FIELD(tls_cert_pem),
     .max = 1048576,
     .roles = R_SR,
     .unit = "PEM text",
     .help = "The certificate (and chain) as PEM text instead of `tls.certFile`, for places where "
             "mounting a file is awkward (Fargate: a Secrets Manager secret injected as an "
             "environment variable). Not reloaded: rotation needs files."},
    {.name = "tls.keyPem",
     .type = K_STR,
     FIELD(tls_key_pem),
     .max = 1048576,
     .roles = R_SR,
     .unit = "PEM text",
     .help = "The unencrypted private key as PEM text instead of `tls.keyFile`. Never logged."},
    {.name = "tls.caPem",
     .type = K_STR,
     FIELD(tls_ca_pem),
     .max = 1048576,
     .roles = R_SR,
     .unit = "PEM text",
     .help = "CA certificates as PEM text instead of `tls.caFile`."},
    {.name = "tls.serverName",
     .type = K_STR,
     FIELD(tls_server_name),
     .min = 1,
     .max = 253,
     .roles = R_S,
     .doc_default = "the host of `output.server.address`",
     .help = "The name the receiver's certificate must carry (DNS SAN, or IP SAN for an address), "
             "and the SNI sent. Set it when the sensor dials an address that is not in the "
             "certificate (a Service IP)."},
    {.name = "tls.insecureSkipVerify",
     .type = K_BOOL,
     FIELD(tls_insecure_skip_verify),
     .def = "false",
     .roles = R_S,
     .help = "Do not verify the receiver's certificate at all. Encrypts but does not authenticate: "
             "anyone on the path can impersonate the receiver. Logs a warning at startup. For "
             "tests only."},
    {.name = "tls.clientCaFile",
     .type = K_STR,
     FIELD(tls_client_ca_file),
     .roles = R_R,
     .unit = "path",
     .doc_default = "`tls.caFile`",
     .help = "PEM CA bundle that sensors' client certificates must chain to. Setting it (or "
             "`tls.caFile` / `--tls-ca` on the receiver) turns on mutual TLS."},
    {.name = "tls.requireClientCert",
     .type = K_BOOL,
     FIELD(tls_require_client_cert),
     .def = "true",
     .roles = R_R,
     .help =
         "With a client CA configured: refuse sensors that present no certificate. `false` makes "
         "certificates optional (still verified when presented). No effect without a client CA."},
    {.name = "tls.allowedIdentities",
     .type = K_STRLIST,
     FIELD(tls_allowed_ids),
     .count_off = offsetof(ps_config, tls_allowed_ids_count),
     .min = 1,
     .max = 253,
     .roles = R_R,
     .unit = "glob patterns",
     .doc_default = "empty (any certificate of the CA)",
     .doc_range = "at most 64 entries",
     .help = "Accept only client certificates whose subject CN or a DNS SAN matches one of these "
             "patterns (`node-*`, `*.sensors.example`; case-insensitive). Others are rejected in "
             "the handshake with reason `identity`."},
    {.name = "tls.requireIdMatch",
     .type = K_BOOL,
     FIELD(tls_require_id_match),
     .def = "false",
     .roles = R_R,
     .help = "The `sensor.id` a sensor announces must equal (case-insensitively) its certificate's "
             "CN or a DNS SAN, so one node's certificate cannot write as another node."},
    {.name = "limits.handshakeTimeoutSec",
     .type = K_INT,
     FIELD(handshake_timeout_sec),
     .min = 1,
     .max = 3600,
     .def = "10",
     .roles = R_R,
     .unit = "seconds",
     .help = "A connection must finish the TLS handshake and the session handshake (HELLO) within "
             "this time after it is accepted (slowloris defence)."},
    {.name = "limits.idleTimeoutSec",
     .type = K_INT,
     FIELD(idle_timeout_sec),
     .min = 0,
     .max = 86400,
     .def = "60",
     .roles = R_SR,
     .unit = "seconds",
     .help = "Receiver: close a session that sent nothing for this long. Sensor: send a HEARTBEAT "
             "after a third of this time with nothing else to send. Keep the two equal. 0: never."},
    {.name = "limits.maxConnections",
     .type = K_INT,
     FIELD(max_connections),
     .min = 1,
     .max = 1000000,
     .def = "1024",
     .roles = R_R,
     .help = "Connections open at once (handshaking or streaming); more are closed at accept."},
    {.name = "limits.maxConnectionsPerSource",
     .type = K_INT,
     FIELD(max_connections_per_source),
     .min = 0,
     .max = 1000000,
     .def = "0",
     .roles = R_R,
     .help = "Connections open at once from one source IP address. 0: no limit (behind a proxy or "
             "NAT, many sensors share an address)."},
    {.name = "limits.maxPendingConnections",
     .type = K_INT,
     FIELD(max_pending_connections),
     .min = 1,
     .max = 1000000,
     .def = "128",
     .roles = R_R,
     .help = "Connections still in their handshake (TLS and HELLO) at once; more are closed at "
             "accept. Kept below `limits.maxConnections` so that unauthenticated sockets cannot "
             "take every slot."},
    {.name = "limits.maxPendingPerSource",
     .type = K_INT,
     FIELD(max_pending_per_source),
     .min = 1,
     .max = 1000000,
     .def = "16",
     .roles = R_R,
     .help = "Connections from one source IP address still in their handshake at once; more are "
             "closed at accept, so one address cannot hold the handshake budget."},
    {.name = "limits.maxSensors",
     .type = K_INT,
     FIELD(max_sensors),
     .min = 1,
     .max = 10000000,
     .def = "16384",
     .roles = R_R,
     .help = "Sensor sessions (sensor id, session) the receiver remembers. When full, disconnected "
             "ones are forgotten, those that never wrote a batch first; a forgotten sensor that "
             "returns resends what it still holds. A new session is refused (busy) while every "
             "one remembered is connected."},
    {.name = "limits.maxSensorSeries",
     .type = K_INT,
     FIELD(max_sensor_series),
     .min = 1,
     .max = 1000000,
     .def = "1024",
     .roles = R_R,
     .help = "Sensor ids with their own per-sensor series in /metrics; the counts of later ids "
             "are summed under `sensor=\"_other\"`."},
    {.name = "limits.sensorExpirySec",
     .type = K_INT,
     FIELD(sensor_expiry_sec),
     .min = 1,
     .max = 31536000,
     .def = "600",
     .roles = R_R,
     .unit = "seconds",
     .help = "A sensor session disconnected this long leaves /api/sensors; the receiver still "
             "remembers its last written batch (for its return and the checkpoint)."},
    {.name = "limits.maxBatchRawMB",
     .type = K_INT,
     FIELD(max_batch_raw_bytes),
     .min = 1,
     .max = 64,
     .scale = MIB,
     .def = "17",
     .roles = R_R,
     .unit = "MiB",
     .help = "Largest batch (decompressed) the receiver accepts, announced to sensors in the "
             "handshake. Must hold a sensor's batch (its block size plus 256 KiB); a larger one is "
             "refused with reason `decompression_bomb`."},
    {.name = "limits.maxInflateRatio",
     .type = K_INT,
     FIELD(max_inflate_ratio),
     .min = 0,
     .max = 100000,
     .def = "256",
     .roles = R_R,
     .help = "A compressed batch may declare at most this many times its compressed size as raw "
             "size; more is refused before inflating (reason `decompression_bomb`). lz4 cannot "
             "exceed about 255; zlib on long zero-filled packets can (9000-byte zero frames reach "
             "about 550): raise it for such traffic. 0: no limit."},
    {.name = "limits.memoryBudgetMB",
     .type = K_INT,
     FIELD(memory_budget_bytes),
     .min = 0,
     .max = 1048576,
     .scale = MIB,
     .def = "128",
     .roles = R_R,
     .unit = "MiB",
     .help = "Receive buffers grown for large frames (batches), over all sessions. A connection "
             "whose next frame does not fit waits (is not read) until memory comes back, counted "
             "in `packetstreamer_receiver_memory_waits_total`. Raised to the largest frame plus "
             "512 KiB if set lower. 0: no limit."},
    {.name = "limits.maxInterfacesPerSession",
     .type = K_INT,
     FIELD(max_ifaces_per_session),
     .min = 1,
     .max = 65536,
     .def = "4096",
     .roles = R_R,
     .help = "Interfaces one sensor connection may have announced at once; one more closes it "
             "(reason `too_many_interfaces`). A sensor announces every interface it captured "
             "since it started, closed ones too (each keeps its index): on nodes with heavy pod "
             "churn and `veth*` capture, keep this above what a sensor accumulates. Each costs "
             "about 1 KiB while announced."},
    {.name = "limits.maxWriteQueueKB",
     .type = K_INT,
     FIELD(max_write_queue_bytes),
     .min = 0,
     .max = 1048576,
     .scale = 1024,
     .def = "256",
     .roles = R_R,
     .unit = "KiB",
     .help = "Bytes queued to one sensor (acknowledgements) that it has not read; more closes the "
             "connection (reason `slow_reader`). Each queued acknowledgement (16 bytes) also "
             "costs a write request of about 300 bytes: 256 KiB queued hold about 5 MiB. "
             "0: no limit."},
    {.name = "output.file.mode",
     .type = K_STR,
     FIELD(file_mode),
     .min = 1,
     .max = 4,
     .def = "0640",
     .roles = R_R,
     .unit = "octal",
     .doc_range = "at most `0666`",
     .help = "Permission bits of capture files (further restricted by the umask). Captures hold "
             "credentials and personal data: keep them away from \"other\"."},
    {.name = "log.level",
     .type = K_ENUM,
     FIELD(log_level),
     .e = &log_level_enum,
     .def = "info",
     .roles = R_SR,
     .doc_range = "`debug`, `info`, `warn` (or `warning`), `error`",
     .help = "Least severe level logged."},
    {.name = "log.format",
     .type = K_ENUM,
     FIELD(log_json),
     .e = &log_format_enum,
     .def = "text",
     .roles = R_SR,
     .help = "`text`: `2026-11-26T08:50:50.123Z INFO  receiver: message`; `json`: one object per "
             "line, `{\"ts\":…,\"level\":…,\"component\":…,\"msg\":…}`."},
    /* HTTP server (probes, metrics, captures); http.listen's default
     * depends on the role. */
    {.name = "http.enable",
     .type = K_BOOL,
     FIELD(http_enable),
     .def = "true",
     .roles = R_SR,
     .help = "Run the HTTP server (`/healthz`, `/readyz`, `/metrics`; on the receiver also the "
             "status page, capture downloads and `/live`, see `docs/http.md`). If its address "
             "cannot be bound the process exits 1 at startup."},
    {.name = "http.listen",
     .type = K_STR,
     FIELD(http_listen),
     .min = 1,
     .max = 300,
     .def = "0.0.0.0:8082",
     .def_receiver = "0.0.0.0:8080",
     .roles = R_SR,
     .unit = "`ADDR:PORT`",
     .doc_range = "`[V6]:PORT` for IPv6; port 0 picks a free one",
     .help = "Where the HTTP server listens (`--http`)."},
    {.name = "http.token",
     .type = K_STR,
     FIELD(http_token),
     .max = PS_AUTH_KEY_MAX,
     .roles = R_SR,
     .doc_range = "1..1024 bytes",
     .help = "Bearer token for clients that are not on loopback: with it set they may fetch "
             "captures, `/live`, `/api/*` and `/` by sending `Authorization: Bearer TOKEN`; "
             "without it they get 403. Probes and `/metrics` are always open."},
    {.name = "http.trustLoopback",
     .type = K_BOOL,
     FIELD(http_trust_loopback),
     .def = "true",
     .roles = R_SR,
     .help = "Serve captures, `/live`, `/api/*` and `/` to loopback clients without a token "
             "(`kubectl port-forward`). Set it to false when a proxy in the pod (a sidecar) "
             "forwards other clients from loopback: then everyone needs `http.token`."},
    {.name = "http.allowedHosts",
     .type = K_STRLIST,
     FIELD(http_allowed_hosts),
     .count_off = offsetof(ps_config, http_allowed_hosts_count),
     .min = 1,
     .max = 253,
     .roles = R_SR,
     .unit = "host names",
     .doc_default = "empty (IP literals and `localhost` only)",
     .doc_range = "at most 64 entries",
     .help = "Host names (case-insensitive, without port) a loopback client may use in its "
             "`Host` header besides IP literals and `localhost`. Any other name gets 421: that is "
             "how a browser page reaches a port-forward through DNS rebinding."},
    {.name = "http.maxConnections",
     .type = K_INT,
     FIELD(http_max_connections),
     .min = 8,
     .max = 10000,
     .def = "64",
     .roles = R_SR,
     .help = "HTTP connections open at once (each has a thread). When full, the oldest connection "
             "that has not sent a complete request is closed for a new one; a reserve of an "
             "eighth (at least 4) stays for probes and `/metrics`, so other requests beyond the "
             "rest get 503."},
    {.name = "http.maxConnectionsPerSource",
     .type = K_INT,
     FIELD(http_max_connections_per_source),
     .min = 1,
     .max = 10000,
     .def = "16",
     .roles = R_SR,
     .help = "HTTP connections open at once from one IP address (loopback included). A new one "
             "beyond it closes that address's oldest connection that has not sent a complete "
             "request, or is refused if there is none."},
    {.name = "http.headerTimeoutSec",
     .type = K_INT,
     FIELD(http_header_timeout_sec),
     .min = 1,
     .max = 3600,
     .def = "10",
     .roles = R_SR,
     .unit = "seconds",
     .help = "An HTTP connection must complete its request headers within this time of connecting "
             "(or of its previous answer, with keep-alive), however slowly it trickles bytes; "
             "otherwise it is closed (slowloris)."},
    {.name = "http.maxExtractions",
     .type = K_INT,
     FIELD(http_max_extractions),
     .min = 1,
     .max = 64,
     .def = "4",
     .roles = R_R,
     .help = "`/api/packets` requests streaming at once (each reads capture files on its own "
             "thread, with up to 64 MiB of read windows); beyond, 503 `busy`."},
    {.name = "jobs.maxDurationSec",
     .type = K_INT,
     FIELD(jobs_max_duration_sec),
     .min = 1,
     .max = 604800,
     .def = "3600",
     .roles = R_R,
     .unit = "seconds",
     .help = "The longest a capture job may run (`POST /api/jobs` `duration`); a longer one is "
             "refused with 400. See docs/http.md, \"Capture jobs\"."},
    {.name = "jobs.defaultDurationSec",
     .type = K_INT,
     FIELD(jobs_default_duration_sec),
     .min = 1,
     .max = 604800,
     .def = "60",
     .roles = R_R,
     .unit = "seconds",
     .help = "Duration of a capture job whose request names none (at most `jobs.maxDurationSec`)."},
    {.name = "jobs.defaultPrerollSec",
     .type = K_INT,
     FIELD(jobs_default_preroll_sec),
     .min = 0,
     .max = 3600,
     .def = "0",
     .roles = R_R,
     .unit = "seconds",
     .help = "Preroll of a capture job whose request names none: the seconds before the job "
             "that sensors in `ondemand` mode deliver from their recorder."},
    {.name = "jobs.maxJobs",
     .type = K_INT,
     FIELD(jobs_max_jobs),
     .min = 1,
     .max = 10000,
     .def = "64",
     .roles = R_R,
     .help = "Capture jobs the receiver keeps (running and finished, persisted in "
             "`OUTPUT/.jobs/`). A new job beyond it replaces the oldest finished one, or is "
             "refused with 429 when all are running."},
    {.name = "jobs.alertmanager.durationSec",
     .type = K_INT,
     FIELD(jobs_am_duration_sec),
     .min = 1,
     .max = 604800,
     .def = "60",
     .roles = R_R,
     .unit = "seconds",
     .help = "Duration of a job started by `POST /api/alertmanager` (a firing alert)."},
    {.name = "jobs.alertmanager.prerollSec",
     .type = K_INT,
     FIELD(jobs_am_preroll_sec),
     .min = 0,
     .max = 3600,
     .def = "30",
     .roles = R_R,
     .unit = "seconds",
     .help = "Preroll of a job started by `POST /api/alertmanager`: the seconds before the alert "
             "fired that sensors in `ondemand` mode deliver from their recorder."},
    {.name = "kubernetes.enabled",
     .type = K_ENUM,
     FIELD(kube_enabled),
     .e = &kube_enabled_enum,
     .def = "auto",
     .roles = R_S,
     .help = "Pod discovery through the Kubernetes API: the sensor lists and watches the pods of "
             "its node, names each pod's interface `SENSOR/NAMESPACE/POD` and captures the pods "
             "`capture.pods` selects. `auto`: on when running in a cluster "
             "(KUBERNETES_SERVICE_HOST set and the service-account token readable); `true`: "
             "always (the sensor stops if it cannot be set up); `false`: never. See "
             "docs/kubernetes.md, \"Pods: names, selection, degraded modes\"."},
    {.name = "kubernetes.apiServer",
     .type = K_STR,
     FIELD(kube_api_server),
     .max = 512,
     .roles = R_S,
     .unit = "URL",
     .doc_default = "`https://` KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT",
     .help = "The API server's URL (`https://HOST:PORT`). Its certificate is always verified "
             "against `kubernetes.caFile`."},
    {.name = "kubernetes.tokenFile",
     .type = K_STR,
     FIELD(kube_token_file),
     .max = 4096,
     .roles = R_S,
     .unit = "path",
     .doc_default = "`/var/run/secrets/kubernetes.io/serviceaccount/token`",
     .help = "The bearer token, re-read before every request so that a rotated (projected) "
             "service-account token is picked up."},
    {.name = "kubernetes.caFile",
     .type = K_STR,
     FIELD(kube_ca_file),
     .max = 4096,
     .roles = R_S,
     .unit = "path",
     .doc_default = "`/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`",
     .help = "The CA bundle the API server's certificate must chain to."},
    {.name = "kubernetes.nodeName",
     .type = K_STR,
     FIELD(kube_node_name),
     .max = 253,
     .roles = R_S,
     .doc_default = "the NODE_NAME environment variable",
     .help = "The node whose pods are watched (`spec.nodeName`). The chart sets NODE_NAME from "
             "the downward API."},
    {.name = "tier.peers",
     .type = K_STR,
     FIELD(tier_peers),
     .max = 300,
     .roles = R_R,
     .doc_range = "`NAME:PORT`",
     .help =
         "The HTTP address of every receiver of a tier, as one DNS name that resolves to all of "
         "them (a headless Service) and their HTTP port. With it, `/api/sensors` and the status "
         "page show the sensors of the whole tier, each with the `receiver` that has it, and "
         "`/api/tier` says which receivers answered; peers are asked with `http.token`. See "
         "docs/kubernetes.md, \"A receiver tier\"."},
    {.name = "tier.name",
     .type = K_STR,
     FIELD(tier_name),
     .max = 253,
     .roles = R_R,
     .doc_range = "1..253 bytes",
     .doc_default = "the host name",
     .help = "This receiver's name in the tier's `/api/sensors` (`receiver`); in a StatefulSet "
             "the host name is the pod's name, which is what the chart uses."},
    {.name = "tier.refreshSec",
     .type = K_INT,
     FIELD(tier_refresh_sec),
     .min = 1,
     .max = 3600,
     .def = "5",
     .roles = R_R,
     .unit = "seconds",
     .help = "How often the other receivers of the tier are asked for their sensors."},
};

const size_t cfg_nkeys = sizeof(cfg_keys) / sizeof(cfg_keys[0]);

/* ---- lookups ---- */

const key_def *cfg_find_key(const char *path)
{
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const key_def *k = &cfg_keys[i];
        if (strcmp(k->name, path) == 0 || (k->alt && strcmp(k->alt, path) == 0))
            return k;
    }
    return NULL;
}

const key_def *cfg_find_unsupported(const char *path)
{
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const key_def *k = &cfg_keys[i];
        size_t n = strlen(k->name);
        if (k->type == K_UNSUPPORTED && strncmp(path, k->name, n) == 0 &&
            (path[n] == '\0' || path[n] == '.'))
            return k;
    }
    return NULL;
}

int cfg_is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const char *name = cfg_keys[i].name;
        if (cfg_keys[i].type != K_UNSUPPORTED && strncmp(name, path, n) == 0 && name[n] == '.')
            return 1;
    }
    return 0;
}

const char *ps_config_key_name(size_t i)
{
    for (size_t j = 0; j < cfg_nkeys; j++) {
        if (cfg_keys[j].type == K_UNSUPPORTED)
            continue;
        if (i-- == 0)
            return cfg_keys[j].name;
    }
    return NULL;
}
