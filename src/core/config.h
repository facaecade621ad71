/*
 * config: the one configuration of a sensor or receiver process.
 *
 * Layers, later wins: built-in defaults, the YAML file (--config), command
 * line flags (applied by main.c with ps_config_set()), then PACKETSTREAMER_*
 * environment variables. Every key of Deepfence PacketStreamer's YAML loads
 * with its original meaning; new keys extend the same tree. Every key is one
 * entry in the table in config_keys.c, which drives parsing, environment
 * names, typo suggestions, and the reference that docs/configuration.md and
 * --help show (ps_config_print_reference, ps_config_key_default).
 *
 * Errors are written into a caller buffer as one line naming the file, line
 * and key, e.g. "sensor.yaml:4: unknown key 'output.sever' (did you mean
 * 'output.server'?)". Functions return 0 on success, -1 on error.
 */
#ifndef PS_CONFIG_H
#define PS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "codec.h"
#include "log.h"

#define PS_CONFIG_ERR_MAX 512
#define PS_CONFIG_MAX_PORTS 64
#define PS_CONFIG_MAX_IFACE_PORTS 64
#define PS_CONFIG_MAX_INTERFACES 64
#define PS_AUTH_KEY_MAX 1024 /* the wire's token limit */

typedef enum ps_role { PS_ROLE_SENSOR, PS_ROLE_RECEIVER } ps_role;

/* output.s3.sse */
#define PS_CONFIG_SSE_NONE 0
#define PS_CONFIG_SSE_AES256 1
#define PS_CONFIG_SSE_KMS 2
/* kubernetes.enabled: auto = when in a cluster (sensor/kube.h,
 * ps_kube_in_cluster). */
typedef enum ps_kube_enabled {
    PS_KUBE_ENABLED_AUTO = 0,
    PS_KUBE_ENABLED_TRUE,
    PS_KUBE_ENABLED_FALSE,
} ps_kube_enabled;

typedef enum ps_pcap_mode { PS_PCAP_ALL = 0, PS_PCAP_ALLOW, PS_PCAP_DENY } ps_pcap_mode;

typedef enum ps_format {
    PS_FORMAT_PCAPNG = 0, /* nanosecond resolution, one IDB per sensor/iface */
    PS_FORMAT_PCAP,       /* classic, microsecond timestamps (magic a1b2c3d4) */
    PS_FORMAT_PCAP_NS,    /* classic, nanosecond timestamps (magic a1b23c4d) */
} ps_format;

typedef struct ps_port_list {
    uint16_t ports[PS_CONFIG_MAX_PORTS];
    int count;
} ps_port_list;

typedef struct ps_iface_ports {
    char *iface;
    ps_port_list ports;
} ps_iface_ports;

typedef struct ps_config {
    ps_role role;

    /* input: where the receiver listens (input.address / input.port) */
    char *input_address; /* default "0.0.0.0" */
    int input_port;      /* default 8081 */

    /* output.server: where the sensor sends */
    char *server_address; /* no default: required for a sensor */
    int server_port;      /* default 8081 */

    /* output.file (receiver) */
    char *file_path;             /* dir, or dir/prefix; "stdout", "/dev/stdout" or "-"
                                  * stream to stdout. default "./captures" */
    ps_format format;            /* output.file.format, default pcapng */
    uint64_t rotate_bytes;       /* output.file.rotateSizeMB * MiB, 0 = never */
    uint32_t rotate_seconds;     /* output.file.rotateSeconds, 0 = never */
    uint32_t max_files;          /* output.file.maxFiles, 0 = unlimited */
    uint64_t max_total_bytes;    /* output.file.maxTotalSizeMB * MiB, 0 = unlimited */
    int per_sensor;              /* output.file.perSensor: one file set per sensor */
    uint32_t idle_close_seconds; /* output.file.idleCloseSeconds (perSensor), 0 = never */
    uint32_t max_open_files;     /* output.file.maxOpenFiles (perSensor), 0 = unlimited */

    /* tls / auth (docs/security.md) */
    int tls_enable;
    char *tls_cert_file, *tls_key_file, *tls_ca_file;
    char *tls_cert_pem, *tls_key_pem, *tls_ca_pem;   /* PEM text (env), instead of files */
    char *tls_server_name;                           /* sensor: name to verify, default the host */
    int tls_insecure_skip_verify;                    /* sensor: explicit, warned about */
    char *tls_client_ca_file;                        /* receiver: default tls.caFile */
    int tls_require_client_cert;                     /* receiver, with a client CA; default true */
    char *tls_allowed_ids[PS_CONFIG_MAX_INTERFACES]; /* receiver: CN/SAN glob patterns */
    int tls_allowed_ids_count;
    int tls_require_id_match; /* receiver: HELLO id must be a certificate identity */
    int auth_enable;
    char *auth_key; /* never logged */
    char *auth_key_file;

    /* batching (sensor) */
    uint32_t compress_block_size_kb; /* compressBlockSize, default 256 */
    uint32_t input_packet_len;       /* inputPacketLen (snaplen), default 65535 */
    uint32_t gather_max_wait_sec;    /* gatherMaxWaitSec, default 1 (0 = use ms) */
    uint32_t gather_max_wait_ms;     /* gatherMaxWaitMs, 0 = use seconds */
    ps_codec codec;                  /* compression.codec, default lz4 */
    int zlib_level;                  /* compression.zlibLevel 1..9, default 6 */

    /* capture (sensor) */
    ps_pcap_mode pcap_mode;                                /* pcapMode, default all */
    ps_port_list capture_ports;                            /* capturePorts */
    ps_port_list ignore_ports;                             /* ignorePorts */
    ps_iface_ports iface_ports[PS_CONFIG_MAX_IFACE_PORTS]; /* captureInterfacesPorts */
    int iface_ports_count;
    char *interfaces[PS_CONFIG_MAX_INTERFACES]; /* capture.interfaces */
    int interfaces_count;
    char *exclude_interfaces[PS_CONFIG_MAX_INTERFACES]; /* capture.excludeInterfaces */
    int exclude_interfaces_count;
    int pod_interfaces;          /* capture.podInterfaces: pick CNI pod-side links */
    uint32_t buffer_size_mb;     /* capture.bufferSizeMB: ring per interface, default 8 */
    int promiscuous;             /* capture.promiscuous, default false */
    uint32_t stats_interval_sec; /* capture.statsIntervalSec, default 5 */
    int capture_ondemand;        /* capture.mode: 0 continuous (default), 1 ondemand */
    uint32_t recorder_seconds;   /* capture.recorder.seconds: flight recorder age bound */
    uint32_t recorder_mb;        /* capture.recorder.sizeMB: its memory bound */
    char *filter;                /* capture.filter: BPF ANDed in */
    /* capture.pods (sensor/podsel.h): which pods, once Kubernetes is on */
    char *pods_namespaces[PS_CONFIG_MAX_INTERFACES]; /* capture.pods.namespaces */
    int pods_namespaces_count;
    char *pods_exclude_namespaces[PS_CONFIG_MAX_INTERFACES]; /* .excludeNamespaces */
    int pods_exclude_namespaces_count;
    char *pods_label_selector;      /* capture.pods.labelSelector, NULL: every pod */
    char *read_file;                /* sensor.readFile (--read-file) */
    uint32_t read_pps;              /* sensor.readPacketsPerSec: replay pace, 0 = unpaced */
    uint32_t shutdown_deadline_sec; /* sensor.shutdownDeadlineSec: SIGTERM flush, 0 = none */
    char *privileges_user;          /* privileges.user "USER[:GROUP]": started as root, the sensor
                                     * switches to it keeping only NET_RAW/NET_ADMIN (sensor/privs.h) */

    /* identity and connection (sensor) */
    char *sensor_id;              /* sensor.id, default the host name */
    uint32_t connect_timeout_sec; /* sensor.connectTimeoutSec, default 30 */
    uint32_t spool_size_mb;       /* spool.size in MiB, default 8 */
    int spool_drop_oldest;        /* spool.dropPolicy: 0 newest (default), 1 oldest */

    /* limits (receiver; idleTimeoutSec also paces the sensor's heartbeats) */
    uint32_t handshake_timeout_sec;      /* limits.handshakeTimeoutSec, default 10 */
    uint32_t idle_timeout_sec;           /* limits.idleTimeoutSec, default 60, 0 = never */
    uint32_t max_connections;            /* limits.maxConnections, default 1024 */
    uint32_t max_connections_per_source; /* limits.maxConnectionsPerSource, 0 = unlimited */
    uint32_t max_pending_connections;    /* limits.maxPendingConnections, default 128 */
    uint32_t max_pending_per_source;     /* limits.maxPendingPerSource, default 16 */
    uint32_t max_sensors;                /* limits.maxSensors, default 16384 */
    uint32_t max_sensor_series;          /* limits.maxSensorSeries, default 1024 */
    uint32_t sensor_expiry_sec;          /* limits.sensorExpirySec, default 600 */
    uint64_t max_batch_raw_bytes;        /* limits.maxBatchRawMB, default 17 MiB */
    uint32_t max_inflate_ratio;          /* limits.maxInflateRatio, default 256, 0 = unlimited */
    uint64_t memory_budget_bytes;        /* limits.memoryBudgetMB, default 128 MiB, 0 = unlimited */
    uint32_t max_ifaces_per_session;     /* limits.maxInterfacesPerSession, default 4096 */
    uint64_t max_write_queue_bytes; /* limits.maxWriteQueueKB, default 256 KiB, 0 = unlimited */
    char *file_mode;                /* output.file.mode, octal text, default "0640" */
    /* HTTP server: probes, metrics, captures (http.*) */
    int http_enable;               /* http.enable, default true */
    char *http_listen;             /* http.listen "ADDR:PORT" (hostport.h), default by role */
    char *http_token;              /* http.token: bearer token for non-loopback clients */
    uint32_t http_max_connections; /* http.maxConnections, default 64 */
    uint32_t http_max_connections_per_source; /* http.maxConnectionsPerSource, default 16 */
    uint32_t http_header_timeout_sec;         /* http.headerTimeoutSec, default 10 */
    uint32_t http_max_extractions;            /* http.maxExtractions, default 4 */
    int http_trust_loopback;                  /* http.trustLoopback, default true */
    char *http_allowed_hosts[PS_CONFIG_MAX_INTERFACES]; /* http.allowedHosts: Host names */
    int http_allowed_hosts_count;
    /* Capture jobs (receiver/jobs.h, jobs.*) */
    uint32_t jobs_max_duration_sec;     /* jobs.maxDurationSec, default 3600 */
    uint32_t jobs_default_duration_sec; /* jobs.defaultDurationSec, default 60 */
    uint32_t jobs_default_preroll_sec;  /* jobs.defaultPrerollSec, default 0 */
    uint32_t jobs_max_jobs;             /* jobs.maxJobs, default 64 */
    uint32_t jobs_am_duration_sec;      /* jobs.alertmanager.durationSec, default 60 */
    uint32_t jobs_am_preroll_sec;       /* jobs.alertmanager.prerollSec, default 30 */
    /* Kubernetes API, for pod discovery (sensor/kube.h) */
    int kube_enabled;      /* kubernetes.enabled: PS_KUBE_ENABLED_*, default auto */
    char *kube_api_server; /* kubernetes.apiServer, NULL: KUBERNETES_SERVICE_HOST/PORT */
    char *kube_token_file; /* kubernetes.tokenFile, NULL: the service-account token */
    char *kube_ca_file;    /* kubernetes.caFile, NULL: the service-account CA */
    char *kube_node_name;  /* kubernetes.nodeName, NULL: $NODE_NAME */

    /* receiver tier (receiver/tier.h) */
    char *tier_peers;          /* tier.peers "NAME:PORT", NULL: no tier */
    uint32_t tier_refresh_sec; /* tier.refreshSec, default 5 */
    char *tier_name;           /* tier.name, NULL: the host name */

    /* upload of completed files to S3 (receiver/upload.h) */
    int s3_enabled;              /* output.s3.enabled, default false */
    char *s3_endpoint;           /* output.s3.endpoint URL, NULL: AWS of the region */
    char *s3_region;             /* output.s3.region, default us-east-1 */
    char *s3_bucket;             /* output.s3.bucket, required when enabled */
    char *s3_prefix;             /* output.s3.prefix, NULL: none */
    int s3_path_style;           /* output.s3.pathStyle, default false */
    char *s3_storage_class;      /* output.s3.storageClass, NULL: the bucket's */
    int s3_sse;                  /* output.s3.sse: PS_CONFIG_SSE_* */
    char *s3_sse_kms_key_id;     /* output.s3.sseKmsKeyId, with sse aws:kms */
    char *s3_sts_endpoint;       /* output.s3.stsEndpoint URL, NULL: regional STS */
    char *s3_ca_file;            /* output.s3.caFile, NULL: the system store */
    uint64_t s3_part_size_bytes; /* output.s3.partSizeMB, default 16 MiB */
    int s3_delete_local;         /* output.s3.deleteLocal, default false */
    uint32_t s3_retry_max_sec;   /* output.s3.retryMaxSec, default 300 */
    uint64_t s3_cache_bytes;     /* output.s3.cacheMB: /api/packets' object cache */

    /* logging */
    char *log_filename;     /* logFilename */
    ps_log_level log_level; /* log.level, default info */
    int log_json;           /* log.format: text|json */
} ps_config;

/* Fills defaults for the role. Returns -1 only on OOM. */
int ps_config_init(ps_config *c, ps_role role);
void ps_config_free(ps_config *c);

/* Loads a YAML file on top of what c holds. */
int ps_config_load_file(ps_config *c, const char *path, char *err, size_t errlen);
/* Same, from memory; `name` is used in messages in place of a file name. */
int ps_config_load_string(ps_config *c, const char *yaml, size_t len, const char *name, char *err,
                          size_t errlen);

/*
 * Sets one key by its dotted YAML path ("output.server.port") from a string,
 * with the same type and range checks as the file; `origin` names where the
 * value came from in messages ("--receiver", "PACKETSTREAMER_INPUT_PORT").
 * List keys (capturePorts, capture.interfaces, ...) take a comma-separated
 * list that replaces the current list.
 */
int ps_config_set(ps_config *c, const char *key, const char *value, const char *origin, char *err,
                  size_t errlen);

/* Applies PACKETSTREAMER_<KEY> variables from envp (NULL-terminated
 * "NAME=value" strings). KEY is the dotted path in upper snake case:
 * output.server.address -> PACKETSTREAMER_OUTPUT_SERVER_ADDRESS,
 * compressBlockSize -> PACKETSTREAMER_COMPRESS_BLOCK_SIZE. An unknown
 * PACKETSTREAMER_ variable is ignored (Kubernetes injects service links such
 * as PACKETSTREAMER_SERVICE_HOST); a bad value of a known one is an error. */
int ps_config_apply_env(ps_config *c, char *const *envp, char *err, size_t errlen);

/* Checks cross-key rules for the role (a sensor needs a receiver address,
 * tls.enable needs cert and key on the receiver, ...). */
int ps_config_validate(const ps_config *c, char *err, size_t errlen);

/* With auth enabled and auth.keyFile set, reads the token from that file
 * (trailing newline and blanks dropped) into auth_key. Call after
 * ps_config_validate(). */
int ps_config_load_key_file(ps_config *c, char *err, size_t errlen);

/* 1 if output.file.path value p means "one stream to standard output":
 * "stdout" (the original's reserved name), "/dev/stdout" or "-". The one
 * place that rule lives: config validation and the writer both ask here. */
int ps_config_path_is_stdout(const char *p);

/* output.file.mode as a mode_t-compatible number (validated: 0..0666). */
unsigned ps_config_file_mode(const ps_config *c);

/* The env variable name for a dotted key, into out; returns out. */
char *ps_config_env_name(const char *key, char *out, size_t outlen);

/* Iterates the key table: returns the dotted name of key i, NULL past the
 * end. Used by tests that check docs/configuration.md lists every key. */
const char *ps_config_key_name(size_t i);

/* Prints the key reference from the table: format "keys" is the markdown
 * block docs/configuration.md holds between its "GENERATED: keys" markers.
 * -1 for an unknown format or a write error. */
int ps_config_print_reference(FILE *out, const char *format);

/* The default value of a key for a role ("0.0.0.0:8080"), as
 * ps_config_init sets it; NULL if the key has no fixed default. */
const char *ps_config_key_default(const char *key, ps_role role);
/* For a key without a fixed default, its default in words ("the host
 * name"), as the reference and --help show it; else NULL. */
const char *ps_config_key_default_words(const char *key);

const char *ps_format_name(ps_format f);
int ps_format_parse(const char *s, ps_format *f);

#endif
