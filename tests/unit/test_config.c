/*
 * Unit tests for core/config: defaults per role, the original
 * PacketStreamer examples, every key of the table set through YAML, through
 * ps_config_set() and through the environment, the error messages (file,
 * line, key, suggestion) of every error class, validation, and the check
 * that docs/configuration.md lists every key. Run under ASan, so leaks from
 * reloading and resetting keys fail the build too.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"

#define MIB (1024ull * 1024ull)
#define DATA PS_SOURCE_DIR "/tests/data/configs/"

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static int has_ports(const ps_port_list *l, int n, ...)
{
    va_list ap;
    int ok = l->count == n;
    va_start(ap, n);
    for (int i = 0; ok && i < n; i++)
        ok = l->ports[i] == va_arg(ap, int);
    va_end(ap);
    return ok;
}

/* Loads yaml text into a fresh config of the role; returns the result and
 * leaves the message in err. The caller frees c. */
static int load(ps_config *c, ps_role role, const char *yaml, char *err)
{
    assert_int_equal(ps_config_init(c, role), 0);
    return ps_config_load_string(c, yaml, strlen(yaml), "t.yaml", err, PS_CONFIG_ERR_MAX);
}

/* Asserts that yaml fails to load with exactly `want` as the message. */
static void expect_error(const char *yaml, const char *want)
{
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(load(&c, PS_ROLE_SENSOR, yaml, err), -1);
    if (strcmp(err, want) != 0)
        print_error("yaml:\n%s\ngot:  %s\nwant: %s\n", yaml, err, want);
    assert_string_equal(err, want);
    ps_config_free(&c);
}

static void expect_error_prefix(const char *yaml, const char *prefix)
{
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(load(&c, PS_ROLE_SENSOR, yaml, err), -1);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        print_error("got:  %s\nwant: %s...\n", err, prefix);
    assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
    ps_config_free(&c);
}

/* ---- defaults ---- */

static void check_common_defaults(const ps_config *c)
{
    assert_string_equal(c->input_address, "0.0.0.0");
    assert_int_equal(c->input_port, 8081);
    assert_null(c->server_address);
    assert_int_equal(c->server_port, 8081);
    assert_string_equal(c->file_path, "./captures");
    assert_int_equal(c->format, PS_FORMAT_PCAPNG);
    assert_int_equal(c->rotate_bytes, 0);
    assert_int_equal(c->rotate_seconds, 0);
    assert_int_equal(c->max_files, 0);
    assert_int_equal(c->max_total_bytes, 0);
    assert_int_equal(c->per_sensor, 0);
    assert_int_equal(c->tls_enable, 0);
    assert_null(c->tls_cert_file);
    assert_null(c->tls_key_file);
    assert_null(c->tls_ca_file);
    assert_int_equal(c->auth_enable, 0);
    assert_null(c->auth_key);
    assert_null(c->auth_key_file);
    assert_int_equal(c->compress_block_size_kb, 256);
    assert_int_equal(c->input_packet_len, 65535);
    assert_int_equal(c->gather_max_wait_sec, 1);
    assert_int_equal(c->gather_max_wait_ms, 0);
    assert_int_equal(c->codec, PS_CODEC_LZ4);
    assert_int_equal(c->zlib_level, 6);
    assert_int_equal(c->pcap_mode, PS_PCAP_ALL);
    assert_int_equal(c->capture_ports.count, 0);
    assert_int_equal(c->ignore_ports.count, 0);
    assert_int_equal(c->iface_ports_count, 0);
    assert_int_equal(c->interfaces_count, 0);
    assert_null(c->filter);
    assert_null(c->read_file);
    assert_non_null(c->sensor_id);
    assert_true(strlen(c->sensor_id) >= 1 && strlen(c->sensor_id) <= 253);
    assert_int_equal(c->connect_timeout_sec, 30);
    assert_int_equal(c->spool_size_mb, 8);
    assert_int_equal(c->buffer_size_mb, 8);
    assert_null(c->log_filename);
    assert_int_equal(c->log_level, PS_LOG_INFO);
    assert_int_equal(c->log_json, 0);
    assert_int_equal(c->http_enable, 1);
    assert_string_equal(c->http_listen,
                        c->role == PS_ROLE_SENSOR ? "0.0.0.0:8082" : "0.0.0.0:8080");
    assert_null(c->http_token);
}

static void test_http_listen_checked(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    static const char *const bad[] = {"8080",      "host:",    ":x",       "1.2.3.4:70000",
                                      "[::1]x:80", "a:123456", "::1:8080", "h:+80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ps_config_init(&c, PS_ROLE_RECEIVER), 0);
        assert_int_equal(ps_config_set(&c, "http.listen", bad[i], "--http", err, sizeof(err)), 0);
        assert_int_equal(ps_config_validate(&c, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "http.listen"));
        /* switched off, the address does not matter */
        assert_int_equal(ps_config_set(&c, "http.enable", "false", "t", err, sizeof(err)), 0);
        assert_int_equal(ps_config_validate(&c, err, sizeof(err)), 0);
        ps_config_free(&c);
    }
    static const char *const good[] = {"127.0.0.1:0", "[::1]:8080", "localhost:80"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(ps_config_init(&c, PS_ROLE_RECEIVER), 0);
        assert_int_equal(ps_config_set(&c, "http.listen", good[i], "--http", err, sizeof(err)), 0);
        assert_int_equal(ps_config_validate(&c, err, sizeof(err)), 0);
        ps_config_free(&c);
    }
}

static void test_defaults_sensor(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
    assert_int_equal(c.role, PS_ROLE_SENSOR);
    check_common_defaults(&c);
    char host[256] = "";
    if (gethostname(host, sizeof(host)) == 0 && host[0] && strchr(host, '/') == NULL)
        assert_string_equal(c.sensor_id, host);
    /* a sensor needs only a receiver */
    assert_int_equal(ps_config_validate(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "config: no receiver address: set output.server.address in the "
                             "config or pass --receiver HOST:PORT");
    assert_int_equal(
        ps_config_set(&c, "output.server.address", "10.0.0.1", "--receiver", err, sizeof(err)), 0);
    assert_int_equal(ps_config_validate(&c, err, sizeof(err)), 0);
    ps_config_free(&c);
    ps_config_free(&c); /* a second free is harmless */
}

static void test_defaults_receiver(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(ps_config_init(&c, PS_ROLE_RECEIVER), 0);
    assert_int_equal(c.role, PS_ROLE_RECEIVER);
    check_common_defaults(&c);
    /* with no config the receiver runs: 0.0.0.0:8081 into ./captures */
    assert_int_equal(ps_config_validate(&c, err, sizeof(err)), 0);
    ps_config_free(&c);
}

/* ---- the original examples and the data files ---- */

static void load_file_ok(ps_config *c, ps_role role, const char *name)
{
    char path[512], err[PS_CONFIG_ERR_MAX];
    snprintf(path, sizeof(path), DATA "%s", name);
    assert_int_equal(ps_config_init(c, role), 0);
    int r = ps_config_load_file(c, path, err, sizeof(err));
    if (r)
        print_error("%s\n", err);
    assert_int_equal(r, 0);
    r = ps_config_validate(c, err, sizeof(err));
    if (r)
        print_error("%s\n", err);
    assert_int_equal(r, 0);
}

static void test_original_receiver(void **state)
{
    (void)state;
    ps_config c;
    load_file_ok(&c, PS_ROLE_RECEIVER, "receiver.yaml");
    assert_string_equal(c.input_address, "0.0.0.0");
    assert_int_equal(c.input_port, 8081);
    assert_string_equal(c.file_path, "/tmp/dump_file");
    ps_config_free(&c);

    load_file_ok(&c, PS_ROLE_RECEIVER, "receiver-stdout.yaml");
    assert_string_equal(c.file_path, "stdout");
    ps_config_free(&c);

    load_file_ok(&c, PS_ROLE_RECEIVER, "receiver-devstdout.yaml");
    assert_string_equal(c.file_path, "/dev/stdout");
    ps_config_free(&c);
}

static void test_original_sensor_local(void **state)
{
    (void)state;
    ps_config c;
    load_file_ok(&c, PS_ROLE_SENSOR, "sensor-local.yaml");
    assert_string_equal(c.server_address, "127.0.0.1");
    assert_int_equal(c.server_port, 8081);
    assert_int_equal(c.pcap_mode, PS_PCAP_ALL);
    ps_config_free(&c);
}

static void test_original_sensor_full(void **state)
{
    (void)state;
    ps_config c;
    load_file_ok(&c, PS_ROLE_SENSOR, "sensor-full.yaml");
    assert_string_equal(c.server_address, "127.0.0.1");
    assert_int_equal(c.server_port, 8081);
    assert_int_equal(c.tls_enable, 1);
    assert_string_equal(c.tls_cert_file, "/etc/packetstreamer/tls/sensor.crt");
    assert_string_equal(c.tls_key_file, "/etc/packetstreamer/tls/sensor.key");
    assert_int_equal(c.auth_enable, 1);
    assert_string_equal(c.auth_key, "shared-secret-for-tests");
    assert_int_equal(c.compress_block_size_kb, 65);
    assert_int_equal(c.input_packet_len, 65535);
    assert_int_equal(c.gather_max_wait_sec, 5);
    assert_string_equal(c.log_filename, "/tmp/packetstreamer-sensor.log");
    assert_int_equal(c.pcap_mode, PS_PCAP_ALLOW);
    assert_true(has_ports(&c.capture_ports, 2, 80, 443));
    assert_int_equal(c.iface_ports_count, 2);
    assert_string_equal(c.iface_ports[0].iface, "eth0");
    assert_true(has_ports(&c.iface_ports[0].ports, 2, 8080, 8443));
    assert_string_equal(c.iface_ports[1].iface, "lo");
    assert_true(has_ports(&c.iface_ports[1].ports, 1, 53));
    assert_true(has_ports(&c.ignore_ports, 1, 22));

    /* loading the same file again replaces lists and strings, no leaks */
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(ps_config_load_file(&c, DATA "sensor-full.yaml", err, sizeof(err)), 0);
    assert_true(has_ports(&c.capture_ports, 2, 80, 443));
    assert_int_equal(c.iface_ports_count, 2);
    ps_config_free(&c);
}

static void test_receiver_full(void **state)
{
    (void)state;
    ps_config c;
    load_file_ok(&c, PS_ROLE_RECEIVER, "receiver-full.yaml");
    assert_int_equal(c.format, PS_FORMAT_PCAPNG);
    assert_int_equal(c.rotate_bytes, 100 * MIB);
    assert_int_equal(c.rotate_seconds, 3600);
    assert_int_equal(c.max_files, 48);
    assert_int_equal(c.max_total_bytes, 10240 * MIB);
    assert_int_equal(c.per_sensor, 1);
    assert_string_equal(c.tls_ca_file, "/etc/packetstreamer/tls/ca.crt");
    assert_string_equal(c.auth_key_file, "/etc/packetstreamer/auth/key");
    assert_int_equal(c.log_json, 1);
    ps_config_free(&c);
}

/* Each invalid file states its expected message in its first line:
 * "# expect-error: :LINE: message". */
static void test_invalid_files(void **state)
{
    (void)state;
    static const char *const files[] = {
        "typo.yaml",
        "typo-root.yaml",
        "invalid-type.yaml",
        "invalid-range.yaml",
        "invalid-enum.yaml",
        "invalid-bool.yaml",
        "invalid-duplicate.yaml",
        "invalid-alias.yaml",
        "invalid-plugins.yaml",
        "invalid-syntax.yaml",
        "invalid-root.yaml",
        "invalid-tab.yaml",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512], first[512], want[1024], err[PS_CONFIG_ERR_MAX];
        snprintf(path, sizeof(path), DATA "%s", files[i]);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(first, sizeof(first), f));
        fclose(f);
        first[strcspn(first, "\n")] = '\0';
        assert_int_equal(strncmp(first, "# expect-error: ", 16), 0);
        snprintf(want, sizeof(want), "%s%s", path, first + 16);

        ps_config c;
        assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
        assert_int_equal(ps_config_load_file(&c, path, err, sizeof(err)), -1);
        if (strcmp(err, want) != 0)
            print_error("got:  %s\nwant: %s\n", err, want);
        assert_string_equal(err, want);
        ps_config_free(&c);
    }
}

static void test_file_errors(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
    assert_int_equal(ps_config_load_file(&c, "/nonexistent/ps.yaml", err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/ps.yaml: cannot open config file: No such file or "
                             "directory");
    assert_int_equal(ps_config_load_file(&c, "/", err, sizeof(err)), -1);
    assert_string_equal(err, "/: cannot read config file: Is a directory");

    /* a huge file (a pcap passed by mistake) is refused, not slurped */
    char path[] = "/tmp/ps-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static char block[65536];
    memset(block, '#', sizeof(block));
    for (int i = 0; i < 40; i++)
        assert_int_equal(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
    close(fd);
    assert_int_equal(ps_config_load_file(&c, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "config file is larger than"));
    unlink(path);
    ps_config_free(&c);
}

/* ---- every key, three ways ---- */

typedef struct key_case {
    const char *key;
    const char *yaml; /* the YAML value */
    const char *str;  /* the flag / environment form */
    int (*check)(const ps_config *c);
} key_case;

#define CHECK(fn, expr)                                                                            \
    static int fn(const ps_config *c)                                                              \
    {                                                                                              \
        return (expr);                                                                             \
    }

CHECK(k_input_address, streq(c->input_address, "10.1.2.3"))
CHECK(k_input_port, c->input_port == 9001)
CHECK(k_server_address, streq(c->server_address, "recv.example"))
CHECK(k_server_port, c->server_port == 9002)
CHECK(k_file_path, streq(c->file_path, "/var/cap"))
CHECK(k_tls_enable, c->tls_enable == 1)
CHECK(k_tls_cert, streq(c->tls_cert_file, "/c.crt"))
CHECK(k_tls_key, streq(c->tls_key_file, "/c.key"))
CHECK(k_auth_enable, c->auth_enable == 1)
CHECK(k_auth_key, streq(c->auth_key, "s3cret"))
CHECK(k_block, c->compress_block_size_kb == 1024)
CHECK(k_snaplen, c->input_packet_len == 1500)
CHECK(k_wait_sec, c->gather_max_wait_sec == 7)
CHECK(k_log_file, streq(c->log_filename, "/tmp/x.log"))
CHECK(k_pcap_mode, c->pcap_mode == PS_PCAP_DENY)
CHECK(k_capture_ports, has_ports(&c->capture_ports, 2, 80, 443))
CHECK(k_iface_ports, c->iface_ports_count == 2 && streq(c->iface_ports[0].iface, "eth0") &&
                         has_ports(&c->iface_ports[0].ports, 2, 80, 443) &&
                         streq(c->iface_ports[1].iface, "eth1") &&
                         has_ports(&c->iface_ports[1].ports, 1, 53))
CHECK(k_ignore_ports, has_ports(&c->ignore_ports, 1, 22))
CHECK(k_tls_ca, streq(c->tls_ca_file, "/ca.crt"))
CHECK(k_auth_key_file, streq(c->auth_key_file, "/auth.key"))
CHECK(k_wait_ms, c->gather_max_wait_ms == 250)
CHECK(k_format, c->format == PS_FORMAT_PCAP_NS)
CHECK(k_rotate_size, c->rotate_bytes == 100 * MIB)
CHECK(k_rotate_sec, c->rotate_seconds == 3600)
CHECK(k_max_files, c->max_files == 10)
CHECK(k_max_total, c->max_total_bytes == (1ull << 30) * MIB)
CHECK(k_per_sensor, c->per_sensor == 1)
CHECK(k_idle_close, c->idle_close_seconds == 5)
CHECK(k_max_open, c->max_open_files == 1000)
CHECK(k_codec, c->codec == PS_CODEC_ZLIB)
CHECK(k_zlib_level, c->zlib_level == 9)
CHECK(k_interfaces, c->interfaces_count == 2 && streq(c->interfaces[0], "eth0") &&
                        streq(c->interfaces[1], "veth*"))
CHECK(k_filter, streq(c->filter, "tcp port 80"))
CHECK(k_exclude, c->exclude_interfaces_count == 2 && streq(c->exclude_interfaces[0], "eth0") &&
                     streq(c->exclude_interfaces[1], "docker*"))
CHECK(k_pods, c->pod_interfaces == 1)
CHECK(k_bufsize, c->buffer_size_mb == 16)
CHECK(k_promisc, c->promiscuous == 1)
CHECK(k_stats_interval, c->stats_interval_sec == 2)
CHECK(k_capture_mode, c->capture_ondemand == 1)
CHECK(k_recorder_seconds, c->recorder_seconds == 120)
CHECK(k_recorder_mb, c->recorder_mb == 256)
CHECK(k_sensor_id, streq(c->sensor_id, "node-1.example"))
CHECK(k_read_file, streq(c->read_file, "/tmp/in.pcap"))
CHECK(k_read_pps, c->read_pps == 5000)
CHECK(k_shutdown_deadline, c->shutdown_deadline_sec == 7)
CHECK(k_connect_timeout, c->connect_timeout_sec == 5)
CHECK(k_priv_user, streq(c->privileges_user, "65532:65532"))
CHECK(k_spool, c->spool_size_mb == 128)
CHECK(k_drop_policy, c->spool_drop_oldest == 1)
CHECK(k_log_level, c->log_level == PS_LOG_DEBUG)
CHECK(k_log_format, c->log_json == 1)
CHECK(k_tls_cert_pem, streq(c->tls_cert_pem, "-----BEGIN CERTIFICATE-----"))
CHECK(k_tls_key_pem, streq(c->tls_key_pem, "-----BEGIN PRIVATE KEY-----"))
CHECK(k_tls_ca_pem, streq(c->tls_ca_pem, "-----BEGIN CERTIFICATE-----"))
CHECK(k_tls_server_name, streq(c->tls_server_name, "receiver.example"))
CHECK(k_tls_insecure, c->tls_insecure_skip_verify == 1)
CHECK(k_tls_client_ca, streq(c->tls_client_ca_file, "/clients.crt"))
CHECK(k_tls_require_client, c->tls_require_client_cert == 0)
CHECK(k_tls_allowed, c->tls_allowed_ids_count == 2 && streq(c->tls_allowed_ids[0], "node-*") &&
                         streq(c->tls_allowed_ids[1], "*.sensors.example"))
CHECK(k_tls_id_match, c->tls_require_id_match == 1)
CHECK(k_hs_timeout, c->handshake_timeout_sec == 3)
CHECK(k_idle_timeout, c->idle_timeout_sec == 90)
CHECK(k_max_conns, c->max_connections == 10)
CHECK(k_max_per_source, c->max_connections_per_source == 2)
CHECK(k_max_pending, c->max_pending_connections == 3)
CHECK(k_max_pending_per_source, c->max_pending_per_source == 4)
CHECK(k_max_sensors, c->max_sensors == 5)
CHECK(k_max_sensor_series, c->max_sensor_series == 6)
CHECK(k_sensor_expiry, c->sensor_expiry_sec == 7)
CHECK(k_max_batch_raw, c->max_batch_raw_bytes == 2ull << 20)
CHECK(k_inflate_ratio, c->max_inflate_ratio == 50)
CHECK(k_mem_budget, c->memory_budget_bytes == 64ull << 20)
CHECK(k_max_ifaces, c->max_ifaces_per_session == 8)
CHECK(k_write_queue, c->max_write_queue_bytes == 64ull << 10)
CHECK(k_file_mode, streq(c->file_mode, "0600") && ps_config_file_mode(c) == 0600)
CHECK(k_http_enable, c->http_enable == 0)
CHECK(k_http_listen, streq(c->http_listen, "127.0.0.1:9999"))
CHECK(k_http_token, streq(c->http_token, "t0ken"))
CHECK(k_http_trust_lo, c->http_trust_loopback == 0)
CHECK(k_http_hosts, c->http_allowed_hosts_count == 2 &&
                        streq(c->http_allowed_hosts[0], "capture.internal") &&
                        streq(c->http_allowed_hosts[1], "rx.example"))
CHECK(k_http_max_conns, c->http_max_connections == 200)
CHECK(k_http_per_source, c->http_max_connections_per_source == 4)
CHECK(k_http_hdr_timeout, c->http_header_timeout_sec == 3)
CHECK(k_http_extractions, c->http_max_extractions == 2)
CHECK(k_jobs_max_dur, c->jobs_max_duration_sec == 7200)
CHECK(k_jobs_def_dur, c->jobs_default_duration_sec == 30)
CHECK(k_jobs_def_pre, c->jobs_default_preroll_sec == 5)
CHECK(k_jobs_max_jobs, c->jobs_max_jobs == 9)
CHECK(k_jobs_am_dur, c->jobs_am_duration_sec == 120)
CHECK(k_jobs_am_pre, c->jobs_am_preroll_sec == 15)
CHECK(k_pods_ns, c->pods_namespaces_count == 2 && streq(c->pods_namespaces[0], "shop") &&
                     streq(c->pods_namespaces[1], "pay"))
CHECK(k_pods_excl,
      c->pods_exclude_namespaces_count == 1 && streq(c->pods_exclude_namespaces[0], "monitoring"))
CHECK(k_pods_sel, streq(c->pods_label_selector, "app=web,tier in (a,b),!canary"))
CHECK(k_kube_enabled, c->kube_enabled == PS_KUBE_ENABLED_FALSE)
CHECK(k_kube_server, streq(c->kube_api_server, "https://10.96.0.1:443"))
CHECK(k_kube_token, streq(c->kube_token_file, "/run/token"))
CHECK(k_kube_ca, streq(c->kube_ca_file, "/run/ca.crt"))
CHECK(k_kube_node, streq(c->kube_node_name, "node-1"))
CHECK(k_tier_peers, streq(c->tier_peers, "rx-tier.ns.svc:8080"))
CHECK(k_tier_name, streq(c->tier_name, "receiver-1"))
CHECK(k_tier_refresh, c->tier_refresh_sec == 9)
CHECK(k_s3_enabled, c->s3_enabled == 1)
CHECK(k_s3_endpoint, streq(c->s3_endpoint, "http://127.0.0.1:4568"))
CHECK(k_s3_region, streq(c->s3_region, "eu-west-1"))
CHECK(k_s3_bucket, streq(c->s3_bucket, "captures-bucket"))
CHECK(k_s3_prefix, streq(c->s3_prefix, "pcap/"))
CHECK(k_s3_path_style, c->s3_path_style == 1)
CHECK(k_s3_storage_class, streq(c->s3_storage_class, "STANDARD_IA"))
CHECK(k_s3_sse, c->s3_sse == PS_CONFIG_SSE_KMS)
CHECK(k_s3_kms, streq(c->s3_sse_kms_key_id, "alias/captures"))
CHECK(k_s3_sts, streq(c->s3_sts_endpoint, "https://sts.example"))
CHECK(k_s3_part, c->s3_part_size_bytes == 64 * MIB)
CHECK(k_s3_delete, c->s3_delete_local == 1)
CHECK(k_s3_retry, c->s3_retry_max_sec == 60)
CHECK(k_s3_cache, c->s3_cache_bytes == 256 * MIB)
CHECK(k_s3_ca, streq(c->s3_ca_file, "/etc/minio-ca.pem"))

static const key_case key_cases[] = {
    {"input.address", "10.1.2.3", "10.1.2.3", k_input_address},
    {"input.port", "9001", "9001", k_input_port},
    {"output.server.address", "recv.example", "recv.example", k_server_address},
    {"output.server.port", "\"9002\"", "9002", k_server_port},
    {"output.file.path", "/var/cap", "/var/cap", k_file_path},
    {"tls.enable", "yes", "on", k_tls_enable},
    {"tls.certFile", "/c.crt", "/c.crt", k_tls_cert},
    {"tls.keyFile", "/c.key", "/c.key", k_tls_key},
    {"auth.enable", "On", "TRUE", k_auth_enable},
    {"auth.key", "s3cret", "s3cret", k_auth_key},
    {"compressBlockSize", "1024", "1024", k_block},
    {"inputPacketLen", "1500", "1500", k_snaplen},
    {"gatherMaxWaitSec", "7", "7", k_wait_sec},
    {"logFilename", "/tmp/x.log", "/tmp/x.log", k_log_file},
    {"pcapMode", "Deny", "deny", k_pcap_mode},
    {"capturePorts", "[80, 443]", "80, 443", k_capture_ports},
    {"captureInterfacesPorts", "{eth0: [80, 443], eth1: [53]}", "eth0=80,443;eth1=53",
     k_iface_ports},
    {"ignorePorts", "[22]", "22", k_ignore_ports},
    {"tls.caFile", "/ca.crt", "/ca.crt", k_tls_ca},
    {"auth.keyFile", "/auth.key", "/auth.key", k_auth_key_file},
    {"gatherMaxWaitMs", "250", "250", k_wait_ms},
    {"output.file.format", "pcap-ns", "PCAP-NS", k_format},
    {"output.file.rotateSizeMB", "100", "100", k_rotate_size},
    {"output.file.rotateSeconds", "3600", "3600", k_rotate_sec},
    {"output.file.maxFiles", "10", "10", k_max_files},
    {"output.file.maxTotalSizeMB", "1073741824", "1073741824", k_max_total},
    {"output.file.perSensor", "true", "yes", k_per_sensor},
    {"output.file.idleCloseSeconds", "5", "5", k_idle_close},
    {"output.file.maxOpenFiles", "1000", "1000", k_max_open},
    {"compression.codec", "zlib", "zlib", k_codec},
    {"compression.zlibLevel", "9", "9", k_zlib_level},
    {"capture.interfaces", "[eth0, \"veth*\"]", "eth0,veth*", k_interfaces},
    {"capture.filter", "\"tcp port 80\"", "tcp port 80", k_filter},
    {"capture.excludeInterfaces", "[eth0, \"docker*\"]", "eth0,docker*", k_exclude},
    {"capture.podInterfaces", "true", "yes", k_pods},
    {"capture.bufferSizeMB", "16", "16", k_bufsize},
    {"capture.promiscuous", "on", "true", k_promisc},
    {"capture.statsIntervalSec", "2", "2", k_stats_interval},
    {"capture.mode", "ondemand", "ondemand", k_capture_mode},
    {"capture.recorder.seconds", "120", "120", k_recorder_seconds},
    {"capture.recorder.sizeMB", "256", "256", k_recorder_mb},
    {"sensor.id", "node-1.example", "node-1.example", k_sensor_id},
    {"sensor.readFile", "/tmp/in.pcap", "/tmp/in.pcap", k_read_file},
    {"sensor.readPacketsPerSec", "5000", "5000", k_read_pps},
    {"sensor.shutdownDeadlineSec", "7", "7", k_shutdown_deadline},
    {"sensor.connectTimeoutSec", "5", "5", k_connect_timeout},
    {"privileges.user", "\"65532:65532\"", "65532:65532", k_priv_user},
    {"spool.size", "128", "128", k_spool},
    {"spool.dropPolicy", "oldest", "OLDEST", k_drop_policy},
    {"log.level", "debug", "DEBUG", k_log_level},
    {"log.format", "json", "json", k_log_format},
    {"tls.certPem", "\"-----BEGIN CERTIFICATE-----\"", "-----BEGIN CERTIFICATE-----",
     k_tls_cert_pem},
    {"tls.keyPem", "\"-----BEGIN PRIVATE KEY-----\"", "-----BEGIN PRIVATE KEY-----", k_tls_key_pem},
    {"tls.caPem", "\"-----BEGIN CERTIFICATE-----\"", "-----BEGIN CERTIFICATE-----", k_tls_ca_pem},
    {"tls.serverName", "receiver.example", "receiver.example", k_tls_server_name},
    {"tls.insecureSkipVerify", "true", "yes", k_tls_insecure},
    {"tls.clientCaFile", "/clients.crt", "/clients.crt", k_tls_client_ca},
    {"tls.requireClientCert", "false", "no", k_tls_require_client},
    {"tls.allowedIdentities", "[\"node-*\", \"*.sensors.example\"]", "node-*,*.sensors.example",
     k_tls_allowed},
    {"tls.requireIdMatch", "true", "1", k_tls_id_match},
    {"limits.handshakeTimeoutSec", "3", "3", k_hs_timeout},
    {"limits.idleTimeoutSec", "90", "90", k_idle_timeout},
    {"limits.maxConnections", "10", "10", k_max_conns},
    {"limits.maxConnectionsPerSource", "2", "2", k_max_per_source},
    {"limits.maxPendingConnections", "3", "3", k_max_pending},
    {"limits.maxPendingPerSource", "4", "4", k_max_pending_per_source},
    {"limits.maxSensors", "5", "5", k_max_sensors},
    {"limits.maxSensorSeries", "6", "6", k_max_sensor_series},
    {"limits.sensorExpirySec", "7", "7", k_sensor_expiry},
    {"limits.maxBatchRawMB", "2", "2", k_max_batch_raw},
    {"limits.maxInflateRatio", "50", "50", k_inflate_ratio},
    {"limits.memoryBudgetMB", "64", "64", k_mem_budget},
    {"limits.maxInterfacesPerSession", "8", "8", k_max_ifaces},
    {"limits.maxWriteQueueKB", "64", "64", k_write_queue},
    {"output.file.mode", "\"0600\"", "0600", k_file_mode},
    {"http.enable", "false", "off", k_http_enable},
    {"http.listen", "127.0.0.1:9999", "127.0.0.1:9999", k_http_listen},
    {"http.token", "t0ken", "t0ken", k_http_token},
    {"http.trustLoopback", "false", "no", k_http_trust_lo},
    {"http.allowedHosts", "[capture.internal, rx.example]", "capture.internal,rx.example",
     k_http_hosts},
    {"http.maxConnections", "200", "200", k_http_max_conns},
    {"http.maxConnectionsPerSource", "4", "4", k_http_per_source},
    {"http.headerTimeoutSec", "3", "3", k_http_hdr_timeout},
    {"http.maxExtractions", "2", "2", k_http_extractions},
    {"jobs.maxDurationSec", "7200", "7200", k_jobs_max_dur},
    {"jobs.defaultDurationSec", "30", "30", k_jobs_def_dur},
    {"jobs.defaultPrerollSec", "5", "5", k_jobs_def_pre},
    {"jobs.maxJobs", "9", "9", k_jobs_max_jobs},
    {"jobs.alertmanager.durationSec", "120", "120", k_jobs_am_dur},
    {"jobs.alertmanager.prerollSec", "15", "15", k_jobs_am_pre},
    {"capture.pods.namespaces", "[shop, pay]", "shop,pay", k_pods_ns},
    {"capture.pods.excludeNamespaces", "[monitoring]", "monitoring", k_pods_excl},
    {"capture.pods.labelSelector", "\"app=web,tier in (a,b),!canary\"",
     "app=web,tier in (a,b),!canary", k_pods_sel},
    {"kubernetes.enabled", "false", "FALSE", k_kube_enabled},
    {"kubernetes.apiServer", "\"https://10.96.0.1:443\"", "https://10.96.0.1:443", k_kube_server},
    {"kubernetes.tokenFile", "/run/token", "/run/token", k_kube_token},
    {"kubernetes.caFile", "/run/ca.crt", "/run/ca.crt", k_kube_ca},
    {"kubernetes.nodeName", "node-1", "node-1", k_kube_node},
    {"tier.peers", "rx-tier.ns.svc:8080", "rx-tier.ns.svc:8080", k_tier_peers},
    {"tier.name", "receiver-1", "receiver-1", k_tier_name},
    {"tier.refreshSec", "9", "9", k_tier_refresh},
    {"output.s3.enabled", "true", "true", k_s3_enabled},
    {"output.s3.endpoint", "http://127.0.0.1:4568", "http://127.0.0.1:4568", k_s3_endpoint},
    {"output.s3.region", "eu-west-1", "eu-west-1", k_s3_region},
    {"output.s3.bucket", "captures-bucket", "captures-bucket", k_s3_bucket},
    {"output.s3.prefix", "pcap/", "pcap/", k_s3_prefix},
    {"output.s3.pathStyle", "true", "yes", k_s3_path_style},
    {"output.s3.storageClass", "STANDARD_IA", "STANDARD_IA", k_s3_storage_class},
    {"output.s3.sse", "\"aws:kms\"", "AWS:KMS", k_s3_sse},
    {"output.s3.sseKmsKeyId", "alias/captures", "alias/captures", k_s3_kms},
    {"output.s3.stsEndpoint", "https://sts.example", "https://sts.example", k_s3_sts},
    {"output.s3.partSizeMB", "64", "64", k_s3_part},
    {"output.s3.deleteLocal", "true", "on", k_s3_delete},
    {"output.s3.retryMaxSec", "60", "60", k_s3_retry},
    {"output.s3.cacheMB", "256", "256", k_s3_cache},
    {"output.s3.caFile", "/etc/minio-ca.pem", "/etc/minio-ca.pem", k_s3_ca},
};

#define NCASES (sizeof(key_cases) / sizeof(key_cases[0]))

/* "output.file.path" + "x" -> "output:\n  file:\n    path: x\n" */
static void nest_yaml(const char *key, const char *value, char *out, size_t outlen)
{
    size_t n = 0;
    int depth = 0;
    const char *p = key;
    for (;;) {
        size_t seg = strcspn(p, ".");
        n += (size_t)snprintf(out + n, outlen - n, "%*s%.*s:", depth * 2, "", (int)seg, p);
        if (p[seg] == '\0')
            break;
        n += (size_t)snprintf(out + n, outlen - n, "\n");
        p += seg + 1;
        depth++;
    }
    snprintf(out + n, outlen - n, " %s\n", value);
}

static const key_case *find_case(const char *key)
{
    for (size_t i = 0; i < NCASES; i++)
        if (strcmp(key_cases[i].key, key) == 0)
            return &key_cases[i];
    return NULL;
}

static void test_every_key_has_a_case(void **state)
{
    (void)state;
    size_t n = 0;
    for (const char *k; (k = ps_config_key_name(n)) != NULL; n++) {
        if (!find_case(k))
            print_error("no test case for key '%s'\n", k);
        assert_non_null(find_case(k));
        for (size_t j = 0; j < n; j++)
            assert_string_not_equal(ps_config_key_name(j), k);
    }
    assert_int_equal(n, NCASES);
    assert_null(ps_config_key_name(n));
    assert_null(ps_config_key_name(n + 100));
}

static void test_every_key_yaml(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const key_case *kc = &key_cases[i];
        char yaml[512], err[PS_CONFIG_ERR_MAX];
        ps_config c;
        nest_yaml(kc->key, kc->yaml, yaml, sizeof(yaml));
        assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
        assert_false(kc->check(&c)); /* the case really changes something */
        int r = ps_config_load_string(&c, yaml, strlen(yaml), "t.yaml", err, sizeof(err));
        if (r || !kc->check(&c))
            print_error("key %s, yaml:\n%s%s\n", kc->key, yaml, err);
        assert_int_equal(r, 0);
        assert_true(kc->check(&c));
        /* the same file twice in a row: replaced, not appended or leaked */
        assert_int_equal(ps_config_load_string(&c, yaml, strlen(yaml), "t.yaml", err, sizeof(err)),
                         0);
        assert_true(kc->check(&c));
        ps_config_free(&c);
    }
}

static void test_every_key_set(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const key_case *kc = &key_cases[i];
        char err[PS_CONFIG_ERR_MAX];
        ps_config c;
        assert_int_equal(ps_config_init(&c, PS_ROLE_RECEIVER), 0);
        int r = ps_config_set(&c, kc->key, kc->str, "--flag", err, sizeof(err));
        if (r || !kc->check(&c))
            print_error("key %s = '%s': %s\n", kc->key, kc->str, err);
        assert_int_equal(r, 0);
        assert_true(kc->check(&c));
        assert_int_equal(ps_config_set(&c, kc->key, kc->str, "--flag", err, sizeof(err)), 0);
        assert_true(kc->check(&c));
        ps_config_free(&c);
    }
}

static void test_every_key_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const key_case *kc = &key_cases[i];
        char name[128], var[512], err[PS_CONFIG_ERR_MAX];
        ps_config_env_name(kc->key, name, sizeof(name));
        snprintf(var, sizeof(var), "%s=%s", name, kc->str);
        char *envp[] = {(char *)"PATH=/usr/bin", var, (char *)"PACKETSTREAMER_SERVICE_HOST=1.2.3.4",
                        NULL};
        ps_config c;
        assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
        int r = ps_config_apply_env(&c, envp, err, sizeof(err));
        if (r || !kc->check(&c))
            print_error("%s: %s\n", var, err);
        assert_int_equal(r, 0);
        assert_true(kc->check(&c));
        ps_config_free(&c);
    }
}

static void test_precedence_and_no_leaks(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    const char *yaml = "input:\n  address: file.example\n  port: 9000\n"
                       "capturePorts: [1, 2, 3]\ncapture:\n  interfaces: [a, b]\n"
                       "captureInterfacesPorts:\n  x: [1]\n";
    assert_int_equal(load(&c, PS_ROLE_RECEIVER, yaml, err), 0);
    assert_string_equal(c.input_address, "file.example");
    assert_int_equal(c.input_port, 9000);

    assert_int_equal(ps_config_set(&c, "input.address", "flag.example", "--listen", err, 512), 0);
    assert_int_equal(ps_config_set(&c, "input.port", "9001", "--listen", err, 512), 0);
    assert_int_equal(ps_config_set(&c, "capture.interfaces", "c", "--interface", err, 512), 0);
    assert_string_equal(c.input_address, "flag.example");
    assert_int_equal(c.input_port, 9001);
    assert_int_equal(c.interfaces_count, 1);

    char *envp[] = {(char *)"PACKETSTREAMER_INPUT_ADDRESS=env.example",
                    (char *)"PACKETSTREAMER_INPUT_PORT=9002",
                    (char *)"PACKETSTREAMER_CAPTURE_PORTS=7",
                    (char *)"PACKETSTREAMER_CAPTURE_INTERFACES=d,e,f",
                    (char *)"PACKETSTREAMER_CAPTURE_INTERFACES_PORTS=eth9=9",
                    NULL};
    assert_int_equal(ps_config_apply_env(&c, envp, err, sizeof(err)), 0);
    assert_string_equal(c.input_address, "env.example");
    assert_int_equal(c.input_port, 9002);
    assert_true(has_ports(&c.capture_ports, 1, 7));
    assert_int_equal(c.interfaces_count, 3);
    assert_string_equal(c.interfaces[2], "f");
    assert_int_equal(c.iface_ports_count, 1);
    assert_string_equal(c.iface_ports[0].iface, "eth9");

    /* "" unsets an optional string (an empty flag clears the file's value) */
    assert_int_equal(ps_config_set(&c, "input.address", "", "--listen", err, 512), 0);
    assert_null(c.input_address);
    /* and clears a list */
    assert_int_equal(ps_config_set(&c, "capture.interfaces", "", "--interface", err, 512), 0);
    assert_int_equal(c.interfaces_count, 0);
    assert_int_equal(ps_config_set(&c, "capturePorts", "", "x", err, 512), 0);
    assert_int_equal(c.capture_ports.count, 0);
    assert_int_equal(ps_config_set(&c, "captureInterfacesPorts", "", "x", err, 512), 0);
    assert_int_equal(c.iface_ports_count, 0);
    ps_config_free(&c);
}

/* ---- lists and the map ---- */

static void test_lists(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];

    assert_int_equal(load(&c, PS_ROLE_SENSOR, "capturePorts:\n  - 80\n  - \"443\"\n", err), 0);
    assert_true(has_ports(&c.capture_ports, 2, 80, 443));
    ps_config_free(&c);

    assert_int_equal(load(&c, PS_ROLE_SENSOR, "capturePorts: 8080\nignorePorts: 22, 23,\n", err),
                     0);
    assert_true(has_ports(&c.capture_ports, 1, 8080));
    assert_true(has_ports(&c.ignore_ports, 2, 22, 23));
    ps_config_free(&c);

    /* a later layer replaces the list */
    assert_int_equal(load(&c, PS_ROLE_SENSOR, "capturePorts: [1, 2]\n", err), 0);
    assert_int_equal(ps_config_load_string(&c, "capturePorts: []\n", 17, "u.yaml", err, 512), 0);
    assert_int_equal(c.capture_ports.count, 0);
    ps_config_free(&c);

    assert_int_equal(
        load(&c, PS_ROLE_SENSOR, "capture:\n  interfaces:\n    - eth0\n    - 'cali*'\n", err), 0);
    assert_int_equal(c.interfaces_count, 2);
    assert_string_equal(c.interfaces[1], "cali*");
    ps_config_free(&c);

    /* PS_CONFIG_MAX_PORTS fit, one more does not */
    char yaml[1024];
    size_t n = (size_t)snprintf(yaml, sizeof(yaml), "capturePorts: [");
    for (int i = 1; i <= PS_CONFIG_MAX_PORTS; i++)
        n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "%d, ", i);
    snprintf(yaml + n, sizeof(yaml) - n, "]\n");
    assert_int_equal(load(&c, PS_ROLE_SENSOR, yaml, err), 0);
    assert_int_equal(c.capture_ports.count, PS_CONFIG_MAX_PORTS);
    ps_config_free(&c);
    snprintf(yaml + n, sizeof(yaml) - n, "65]\n");
    expect_error(yaml, "t.yaml:1: key 'capturePorts': more than 64 ports");

    expect_error("capturePorts: [80, 70000]\n",
                 "t.yaml:1: key 'capturePorts': 70000 is out of range 1..65535");
    expect_error("capturePorts:\n  - 80\n  - http\n",
                 "t.yaml:3: key 'capturePorts': expected a port number, got 'http'");
    expect_error("capturePorts: [0]\n", "t.yaml:1: key 'capturePorts': 0 is out of range 1..65535");
    expect_error("capturePorts: [[80]]\n",
                 "t.yaml:1: key 'capturePorts': list entries must be single values, got a list");
    expect_error("capturePorts: [80, ~]\n", "t.yaml:1: key 'capturePorts': empty list entry");
    expect_error("capturePorts: {a: 1}\n",
                 "t.yaml:1: key 'capturePorts': expected a list of ports, got a mapping");
    expect_error("capture:\n  interfaces: [\"eth 0\"]\n",
                 "t.yaml:2: key 'capture.interfaces': 'eth 0' is not a valid interface name (no "
                 "blanks, '/', ',', ';' or '=')");
}

static void test_map(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    const char *yaml = "captureInterfacesPorts:\n"
                       "  eth0:\n"
                       "    - 80\n"
                       "    - 443\n"
                       "  eth1.100: 53\n"
                       "  lo:\n";
    assert_int_equal(load(&c, PS_ROLE_SENSOR, yaml, err), 0);
    assert_int_equal(c.iface_ports_count, 3);
    assert_string_equal(c.iface_ports[0].iface, "eth0");
    assert_true(has_ports(&c.iface_ports[0].ports, 2, 80, 443));
    assert_string_equal(c.iface_ports[1].iface, "eth1.100"); /* a VLAN name with a dot */
    assert_true(has_ports(&c.iface_ports[1].ports, 1, 53));
    assert_string_equal(c.iface_ports[2].iface, "lo"); /* no ports: the whole interface */
    assert_int_equal(c.iface_ports[2].ports.count, 0);
    /* loading again replaces the map */
    assert_int_equal(
        ps_config_load_string(&c, "captureInterfacesPorts: {x: [1]}", 32, "u", err, sizeof(err)),
        0);
    assert_int_equal(c.iface_ports_count, 1);
    ps_config_free(&c);

    expect_error("captureInterfacesPorts:\n  eth0: [80]\n  eth0: [81]\n",
                 "t.yaml:3: duplicate key 'captureInterfacesPorts.eth0' (first set at line 2)");
    expect_error("captureInterfacesPorts:\n  eth0: {a: 1}\n",
                 "t.yaml:2: key 'captureInterfacesPorts': expected a list of ports for 'eth0', "
                 "got a mapping");
    expect_error("captureInterfacesPorts: [80]\n",
                 "t.yaml:1: key 'captureInterfacesPorts': expected a mapping of interface name "
                 "to a list of ports, got a list");
    char long_name[200];
    snprintf(long_name, sizeof(long_name), "captureInterfacesPorts:\n  %065d: [1]\n", 0);
    expect_error(long_name,
                 "t.yaml:2: key 'captureInterfacesPorts': an interface name must be 1..64 "
                 "characters long, got 65");
    expect_error("captureInterfacesPorts:\n  eth0: [99999]\n",
                 "t.yaml:2: key 'captureInterfacesPorts': 99999 is out of range 1..65535");

    assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
    assert_int_equal(ps_config_set(&c, "captureInterfacesPorts",
                                   " eth0 = 80, 443 ; eth1=53;lo=", "env", err, sizeof(err)),
                     0);
    assert_int_equal(c.iface_ports_count, 3);
    assert_true(has_ports(&c.iface_ports[0].ports, 2, 80, 443));
    assert_true(has_ports(&c.iface_ports[1].ports, 1, 53));
    assert_int_equal(c.iface_ports[2].ports.count, 0);
    assert_int_equal(ps_config_set(&c, "captureInterfacesPorts", "eth0", "env", err, sizeof(err)),
                     -1);
    assert_string_equal(err,
                        "env: key 'captureInterfacesPorts': expected NAME=PORT,PORT;NAME=PORT, "
                        "got 'eth0'");
    assert_int_equal(
        ps_config_set(&c, "captureInterfacesPorts", "a=1;a=2", "env", err, sizeof(err)), -1);
    assert_string_equal(err, "env: key 'captureInterfacesPorts': interface 'a' is listed twice");
    ps_config_free(&c);
}

/* ---- YAML shapes ---- */

static void test_empty_and_null(void **state)
{
    (void)state;
    static const char *const empties[] = {
        "",         "\n",         "# only a comment\n",
        "---\n",    "--- ~\n",    "{}\n",
        "input:\n", "input: ~\n", "input:\n  port:\n  address: null\n"};
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        ps_config c;
        char err[PS_CONFIG_ERR_MAX];
        int r = load(&c, PS_ROLE_RECEIVER, empties[i], err);
        if (r)
            print_error("'%s': %s\n", empties[i], err);
        assert_int_equal(r, 0);
        check_common_defaults(&c);
        ps_config_free(&c);
    }
    /* a quoted empty string is a value, not null */
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(load(&c, PS_ROLE_RECEIVER, "input:\n  address: \"\"\n", err), 0);
    assert_null(c.input_address);
    ps_config_free(&c);
    /* a null key in a map is also fine for output.plugins */
    assert_int_equal(load(&c, PS_ROLE_RECEIVER, "output:\n  plugins:\n", err), 0);
    ps_config_free(&c);
}

static void test_dotted_keys_and_original_spelling(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(load(&c, PS_ROLE_SENSOR,
                          "output.server.port: 9100\ntls:\n  certfile: /a.crt\n  keyfile: /a.key\n",
                          err),
                     0);
    assert_int_equal(c.server_port, 9100);
    assert_string_equal(c.tls_cert_file, "/a.crt");
    assert_string_equal(c.tls_key_file, "/a.key");
    ps_config_free(&c);
    expect_error("tls:\n  certfile: /a\n  certFile: /b\n",
                 "t.yaml:3: duplicate key 'tls.certFile' (first set at line 2)");
    expect_error("output.server.port: 1\noutput:\n  server:\n    port: 2\n",
                 "t.yaml:4: duplicate key 'output.server.port' (first set at line 1)");
}

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_error("outptu:\n  server:\n    port: 1\n",
                 "t.yaml:1: unknown key 'outptu' (did you mean 'output'?)");
    expect_error("input:\n  port: 1\noutput:\n  sever:\n    address: x\n",
                 "t.yaml:4: unknown key 'output.sever' (did you mean 'output.server'?)");
    expect_error("output:\n  server:\n    adress: x\n",
                 "t.yaml:3: unknown key 'output.server.adress' (did you mean "
                 "'output.server.address'?)");
    expect_error("compresBlockSize: 1\n",
                 "t.yaml:1: unknown key 'compresBlockSize' (did you mean 'compressBlockSize'?)");
    expect_error("gatherMaxWaitSecs: 1\n",
                 "t.yaml:1: unknown key 'gatherMaxWaitSecs' (did you mean 'gatherMaxWaitSec'?)");
    expect_error("capturePort: [443]\n",
                 "t.yaml:1: unknown key 'capturePort' (did you mean 'capturePorts'?)");
    expect_error("Input:\n  port: 1\n", "t.yaml:1: unknown key 'Input' (did you mean 'input'?)");
    expect_error("port: 8081\n", "t.yaml:1: unknown key 'port' (did you mean 'input.port'?)");
    expect_error("output:\n  address: x\n",
                 "t.yaml:2: unknown key 'output.address' (did you mean 'output.server.address'?)");
    expect_error("log:\n  levle: debug\n",
                 "t.yaml:2: unknown key 'log.levle' (did you mean 'log.level'?)");
    expect_error("outptu.server.port: 1\n",
                 "t.yaml:1: unknown key 'outptu.server.port' (did you mean "
                 "'output.server.port'?)");
    expect_error("zzzzzzzzzz: 1\n", "t.yaml:1: unknown key 'zzzzzzzzzz'");
    expect_error("input:\n  port: 1\n  qqqqqqq: 2\n", "t.yaml:3: unknown key 'input.qqqqqqq'");
    /* a leaf used as a section */
    expect_error("input:\n  port:\n    x: 1\n",
                 "t.yaml:3: key 'input.port': expected an integer, got a mapping");
}

static void test_type_errors(void **state)
{
    (void)state;
    expect_error("input:\n  port: abc\n",
                 "t.yaml:2: key 'input.port': expected an integer, got 'abc'");
    expect_error("input:\n  port: 70000\n",
                 "t.yaml:2: key 'input.port': 70000 is out of range 1..65535");
    expect_error("input:\n  port: -1\n", "t.yaml:2: key 'input.port': -1 is out of range 1..65535");
    expect_error("input:\n  port: 99999999999999999999999\n",
                 "t.yaml:2: key 'input.port': 99999999999999999999999 is out of range 1..65535");
    expect_error("input:\n  port: 80x\n",
                 "t.yaml:2: key 'input.port': expected an integer, got '80x'");
    expect_error("input:\n  port: 0x50\n",
                 "t.yaml:2: key 'input.port': expected an integer, got '0x50'");
    expect_error("input:\n  port: 1.5\n",
                 "t.yaml:2: key 'input.port': expected an integer, got '1.5'");
    expect_error("input:\n  port: [1, 2]\n",
                 "t.yaml:2: key 'input.port': expected an integer, got a list");
    expect_error("input:\n  address: {a: b}\n",
                 "t.yaml:2: key 'input.address': expected a string, got a mapping");
    expect_error("gatherMaxWaitSec: 3601\n",
                 "t.yaml:1: key 'gatherMaxWaitSec': 3601 is out of range 0..3600");
    expect_error("compression:\n  zlibLevel: 0\n",
                 "t.yaml:2: key 'compression.zlibLevel': 0 is out of range 1..9");
    expect_error("pcapMode: sometimes\n",
                 "t.yaml:1: key 'pcapMode': 'sometimes' is not one of all, allow, deny");
    expect_error("pcapMode: [allow]\n",
                 "t.yaml:1: key 'pcapMode': expected one of all, allow, deny, got a list");
    expect_error("compression:\n  codec: gzip\n",
                 "t.yaml:2: key 'compression.codec': 'gzip' is not one of none, zlib, lz4");
    expect_error("output:\n  file:\n    format: pcapx\n",
                 "t.yaml:3: key 'output.file.format': 'pcapx' is not one of pcapng, pcap, pcap-ns");
    expect_error("log:\n  level: loud\n",
                 "t.yaml:2: key 'log.level': 'loud' is not one of debug, info, warn, error");
    expect_error("log:\n  format: xml\n",
                 "t.yaml:2: key 'log.format': 'xml' is not one of text, json");
    expect_error("tls:\n  enable: maybe\n",
                 "t.yaml:2: key 'tls.enable': expected a boolean (true/false, yes/no, on/off), got "
                 "'maybe'");
    expect_error("output: 5\n", "t.yaml:1: key 'output': expected a mapping of keys, got '5'");
    expect_error("output:\n  - a\n",
                 "t.yaml:2: key 'output': expected a mapping of keys, got a list");
    expect_error("output:\n  file:\n    path: \"\"\n",
                 "t.yaml:3: key 'output.file.path': must not be empty");
    expect_error("input:\n  address: \"a\\0b\"\n",
                 "t.yaml:2: key 'input.address': the value contains a NUL character");
    expect_error("sensor:\n  id: a/b\n",
                 "t.yaml:2: key 'sensor.id': 'a/b' may only contain letters, digits, '.', '_' and "
                 "'-'");
    expect_error("sensor:\n  id: ..\n", "t.yaml:2: key 'sensor.id': '..' must not start with '.'");
    expect_error("sensor:\n  id: \"\"\n",
                 "t.yaml:2: key 'sensor.id': the value must be 1..253 characters long, got 0");
    char yaml[400];
    snprintf(yaml, sizeof(yaml), "sensor:\n  id: %0254d\n", 0);
    expect_error(yaml,
                 "t.yaml:2: key 'sensor.id': the value must be 1..253 characters long, got 254");
    expect_error("? [a, b]\n: c\n", "t.yaml:1: keys must be plain strings");

    /* accepted forms */
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(load(&c, PS_ROLE_SENSOR,
                          "input:\n  port: \"08082\"\ntls:\n  enable: OFF\nauth:\n  enable: No\n"
                          "gatherMaxWaitSec: 0\ngatherMaxWaitMs: 3600000\n",
                          err),
                     0);
    assert_int_equal(c.input_port, 8082);
    assert_int_equal(c.tls_enable, 0);
    assert_int_equal(c.gather_max_wait_sec, 0);
    assert_int_equal(c.gather_max_wait_ms, 3600000);
    ps_config_free(&c);
}

static void test_yaml_errors(void **state)
{
    (void)state;
    expect_error_prefix("input:\n  port: 1\n bad: [\n", "t.yaml:3: YAML syntax error: ");
    expect_error_prefix("a: b: c\n", "t.yaml:1: YAML syntax error: mapping values are not allowed");
    expect_error_prefix("input:\n\t port: 1\n", "t.yaml:2: YAML syntax error: ");
    expect_error_prefix("input:\n  address: \"x\n",
                        "t.yaml:3: YAML syntax error: found unexpected");
    /* a syntax error wins over a key error met earlier in the file */
    expect_error_prefix("outptu: 1\ninput: [\n", "t.yaml:3: YAML syntax error: ");
    expect_error_prefix("x: \"\xff\"\n", "t.yaml:1: YAML syntax error: invalid ");
    expect_error("- a\n- b\n", "t.yaml:1: the top level must be a mapping of keys (like 'input:')");
    expect_error("hello\n", "t.yaml:1: the top level must be a mapping of keys (like 'input:')");
    expect_error("input:\n  port: 1\n---\ninput:\n  port: 2\n",
                 "t.yaml:3: more than one YAML document; put every key in one document");
    expect_error("input:\n  port: 1\n  port: 2\n",
                 "t.yaml:3: duplicate key 'input.port' (first set at line 2)");
    expect_error("input:\n  port: 1\noutput: {}\ninput:\n  address: x\n",
                 "t.yaml:4: duplicate key 'input' (first set at line 1)");
}

static void test_aliases_rejected(void **state)
{
    (void)state;
    expect_error("input:\n  port: &p 9000\noutput:\n  server:\n    port: *p\n",
                 "t.yaml:5: YAML aliases (*p) are not supported; write the value out");
    /* a billion-laughs document fails at the first alias, in no time */
    expect_error("capturePorts: &a [1, 2]\n"
                 "ignorePorts: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
                 "t.yaml:2: YAML aliases (*a) are not supported; write the value out");
    /* anchors alone are harmless */
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(load(&c, PS_ROLE_SENSOR, "input: &in\n  port: 9\n", err), 0);
    assert_int_equal(c.input_port, 9);
    ps_config_free(&c);
}

static void test_plugins_unsupported(void **state)
{
    (void)state;
    const char *tail = " is not supported by packetstreamer (the receiver writes capture files "
                       "under output.file.path; see docs/configuration.md)";
    char want[512];
    snprintf(want, sizeof(want), "t.yaml:3: output.plugins.s3%s", tail);
    expect_error("output:\n  plugins:\n    s3:\n      bucket: b\n", want);
    snprintf(want, sizeof(want), "t.yaml:3: output.plugins.kafka%s", tail);
    expect_error("output:\n  plugins:\n    kafka:\n      brokers: b\n", want);
    snprintf(want, sizeof(want), "t.yaml:1: output.plugins.s3.bucket%s", tail);
    expect_error("output.plugins.s3.bucket: x\n", want);
    snprintf(want, sizeof(want), "t.yaml:2: output.plugins%s", tail);
    expect_error("output:\n  plugins: yes\n", want);

    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
    assert_int_equal(ps_config_set(&c, "output.plugins.s3.region", "x", "--x", err, sizeof(err)),
                     -1);
    snprintf(want, sizeof(want), "--x: output.plugins.s3.region%s", tail);
    assert_string_equal(err, want);
    ps_config_free(&c);
}

/* ---- ps_config_set ---- */

static void test_set_errors(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
    assert_int_equal(ps_config_set(&c, "compression.codec", "gzip", "--codec", err, sizeof(err)),
                     -1);
    assert_string_equal(err, "--codec: key 'compression.codec': 'gzip' is not one of none, zlib, "
                             "lz4");
    assert_int_equal(ps_config_set(&c, "compression.codec", "ZLIB", "--codec", err, sizeof(err)),
                     0);
    assert_int_equal(c.codec, PS_CODEC_ZLIB);
    assert_int_equal(ps_config_set(&c, "output.server.port", "x9", "--receiver", err, sizeof(err)),
                     -1);
    assert_string_equal(err, "--receiver: key 'output.server.port': expected an integer, got 'x9'");
    assert_int_equal(ps_config_set(&c, "output.server.port", " 9000 ", "--receiver", err, 512), 0);
    assert_int_equal(c.server_port, 9000);
    assert_int_equal(ps_config_set(&c, "input.prot", "1", "--x", err, sizeof(err)), -1);
    assert_string_equal(err, "--x: unknown key 'input.prot' (did you mean 'input.port'?)");
    assert_int_equal(ps_config_set(&c, "output", "1", "--x", err, sizeof(err)), -1);
    assert_string_equal(err, "--x: 'output' is a group of keys, not a key");
    assert_int_equal(ps_config_set(&c, "input.port", "1", NULL, err, sizeof(err)), 0);
    assert_int_equal(ps_config_set(&c, "input.port", "0", NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "input.port: key 'input.port': 0 is out of range 1..65535");
    /* no error buffer is fine too */
    assert_int_equal(ps_config_set(&c, "input.port", "0", "--x", NULL, 0), -1);
    assert_int_equal(ps_config_set(&c, "capturePorts", "80,x", "--x", err, sizeof(err)), -1);
    assert_string_equal(err, "--x: key 'capturePorts': expected a port number, got 'x'");
    /* a failed list flag leaves the previous list */
    assert_int_equal(ps_config_set(&c, "capture.interfaces", "a,b", "--i", err, 512), 0);
    assert_int_equal(ps_config_set(&c, "capture.interfaces", "c,d e", "--i", err, 512), -1);
    assert_int_equal(c.interfaces_count, 2);
    assert_string_equal(c.interfaces[0], "a");
    /* a tiny error buffer truncates safely */
    char tiny[8];
    assert_int_equal(ps_config_set(&c, "input.port", "abc", "--listen", tiny, sizeof(tiny)), -1);
    assert_string_equal(tiny, "--liste");
    ps_config_free(&c);
}

/* ---- environment ---- */

static void test_env_names(void **state)
{
    (void)state;
    char out[128];
    assert_string_equal(ps_config_env_name("output.server.address", out, sizeof(out)),
                        "PACKETSTREAMER_OUTPUT_SERVER_ADDRESS");
    assert_string_equal(ps_config_env_name("compressBlockSize", out, sizeof(out)),
                        "PACKETSTREAMER_COMPRESS_BLOCK_SIZE");
    assert_string_equal(ps_config_env_name("output.file.rotateSizeMB", out, sizeof(out)),
                        "PACKETSTREAMER_OUTPUT_FILE_ROTATE_SIZE_MB");
    assert_string_equal(ps_config_env_name("gatherMaxWaitMs", out, sizeof(out)),
                        "PACKETSTREAMER_GATHER_MAX_WAIT_MS");
    assert_string_equal(ps_config_env_name("tls.caFile", out, sizeof(out)),
                        "PACKETSTREAMER_TLS_CA_FILE");
    assert_string_equal(ps_config_env_name("output.file.maxTotalSizeMB", out, sizeof(out)),
                        "PACKETSTREAMER_OUTPUT_FILE_MAX_TOTAL_SIZE_MB");
    assert_string_equal(ps_config_env_name("captureInterfacesPorts", out, sizeof(out)),
                        "PACKETSTREAMER_CAPTURE_INTERFACES_PORTS");
    /* truncation is safe */
    char small[10];
    assert_string_equal(ps_config_env_name("input.port", small, sizeof(small)), "PACKETSTR");

    /* every key's name is distinct, and none is one Kubernetes injects */
    char names[128][128];
    size_t n = 0;
    for (const char *k; (k = ps_config_key_name(n)) != NULL; n++) {
        assert_true(n < 128);
        ps_config_env_name(k, names[n], sizeof(names[n]));
        assert_string_not_equal(names[n], "PACKETSTREAMER_PORT");
        assert_null(strstr(names[n], "SERVICE_"));
        for (size_t j = 0; j < n; j++)
            assert_string_not_equal(names[j], names[n]);
    }
}

static void test_env_unknown_ignored(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    char *envp[] = {
        (char *)"PACKETSTREAMER_SERVICE_HOST=10.96.0.12",
        (char *)"PACKETSTREAMER_SERVICE_PORT=8081",
        (char *)"PACKETSTREAMER_PORT=tcp://10.96.0.12:8081",
        (char *)"PACKETSTREAMER_PORT_8081_TCP=tcp://10.96.0.12:8081",
        (char *)"PACKETSTREAMER_PORT_8081_TCP_PROTO=tcp",
        (char *)"PACKETSTREAMER_NO_SUCH_KEY=whatever",
        /* a Service named packetstreamer-input would inject this one */
        (char *)"PACKETSTREAMER_INPUT_PORT=tcp://10.96.0.13:8081",
        /* empty means unset */
        (char *)"PACKETSTREAMER_OUTPUT_SERVER_PORT=",
        (char *)"PACKETSTREAMER_OUTPUT_SERVER_ADDRESS=recv",
        (char *)"packetstreamer_input_address=lower-case-is-not-ours",
        NULL,
    };
    assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
    assert_int_equal(ps_config_apply_env(&c, envp, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(c.input_port, 8081);
    assert_int_equal(c.server_port, 8081);
    assert_string_equal(c.server_address, "recv");
    assert_string_equal(c.input_address, "0.0.0.0");
    assert_int_equal(ps_config_apply_env(&c, NULL, err, sizeof(err)), 0);
    ps_config_free(&c);
}

static void test_env_errors(void **state)
{
    (void)state;
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    char *envp[] = {(char *)"PACKETSTREAMER_INPUT_PORT=abc", NULL};
    assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
    assert_int_equal(ps_config_apply_env(&c, envp, err, sizeof(err)), -1);
    assert_string_equal(
        err, "PACKETSTREAMER_INPUT_PORT: key 'input.port': expected an integer, got 'abc'");
    char *envp2[] = {(char *)"PACKETSTREAMER_COMPRESSION_CODEC=brotli", NULL};
    assert_int_equal(ps_config_apply_env(&c, envp2, err, sizeof(err)), -1);
    assert_string_equal(err, "PACKETSTREAMER_COMPRESSION_CODEC: key 'compression.codec': 'brotli' "
                             "is not one of none, zlib, lz4");
    ps_config_free(&c);
}

/* ---- validation ---- */

static void expect_invalid(ps_role role, const char *yaml, const char *want)
{
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(load(&c, role, yaml, err), 0);
    assert_int_equal(ps_config_validate(&c, err, sizeof(err)), -1);
    if (strcmp(err, want) != 0)
        print_error("got:  %s\nwant: %s\n", err, want);
    assert_string_equal(err, want);
    ps_config_free(&c);
}

static void expect_valid(ps_role role, const char *yaml)
{
    ps_config c;
    char err[PS_CONFIG_ERR_MAX];
    assert_int_equal(load(&c, role, yaml, err), 0);
    int r = ps_config_validate(&c, err, sizeof(err));
    if (r)
        print_error("%s\n", err);
    assert_int_equal(r, 0);
    ps_config_free(&c);
}

static void test_validate(void **state)
{
    (void)state;
    const char *srv = "output:\n  server:\n    address: r\n";
    char yaml[512];

    expect_valid(PS_ROLE_SENSOR, srv);
    snprintf(yaml, sizeof(yaml), "%sgatherMaxWaitSec: 0\n", srv);
    expect_invalid(PS_ROLE_SENSOR, yaml,
                   "config: gatherMaxWaitSec and gatherMaxWaitMs are both 0: a partial batch would "
                   "never be sent; set gatherMaxWaitMs (e.g. 200) or gatherMaxWaitSec");
    snprintf(yaml, sizeof(yaml), "%sgatherMaxWaitSec: 0\ngatherMaxWaitMs: 100\n", srv);
    expect_valid(PS_ROLE_SENSOR, yaml);
    expect_valid(PS_ROLE_RECEIVER, "gatherMaxWaitSec: 0\n");

    expect_invalid(PS_ROLE_RECEIVER, "tls:\n  enable: true\n",
                   "config: tls.enable is true but tls.certFile and tls.keyFile are not set: the "
                   "receiver needs its certificate and private key");
    expect_invalid(PS_ROLE_RECEIVER, "tls:\n  enable: true\n  certFile: /c\n",
                   "config: tls.certFile and tls.keyFile must be set together");
    expect_valid(PS_ROLE_RECEIVER, "tls:\n  enable: true\n  certFile: /c\n  keyFile: /k\n");
    /* a sensor may use TLS without a client certificate */
    snprintf(yaml, sizeof(yaml), "%stls:\n  enable: true\n  caFile: /ca\n", srv);
    expect_valid(PS_ROLE_SENSOR, yaml);
    /* certFile without tls.enable is not an error (it is unused) */
    expect_valid(PS_ROLE_RECEIVER, "tls:\n  certFile: /c\n");

    expect_invalid(PS_ROLE_RECEIVER, "auth:\n  enable: true\n",
                   "config: auth.enable is true but neither auth.key nor auth.keyFile is set");
    expect_invalid(PS_ROLE_RECEIVER, "auth:\n  enable: true\n  key: a\n  keyFile: /b\n",
                   "config: auth.key and auth.keyFile are both set; use one");
    expect_valid(PS_ROLE_RECEIVER, "auth:\n  enable: true\n  keyFile: /b\n");

    snprintf(yaml, sizeof(yaml), "%sspool:\n  size: 1\ncompressBlockSize: 2048\n", srv);
    expect_invalid(PS_ROLE_SENSOR, yaml,
                   "config: spool.size (1 MiB) cannot hold one batch of compressBlockSize (2048 "
                   "KiB)");
    expect_invalid(PS_ROLE_RECEIVER, "output:\n  file:\n    path: '-'\n    perSensor: true\n",
                   "config: output.file.perSensor cannot split a single stdout stream; set "
                   "output.file.path to a directory");
    expect_invalid(PS_ROLE_RECEIVER,
                   "output:\n  file:\n    rotateSizeMB: 200\n    maxTotalSizeMB: 100\n",
                   "config: output.file.rotateSizeMB is larger than output.file.maxTotalSizeMB: "
                   "retention would delete the file being written");
    expect_valid(PS_ROLE_RECEIVER, "output:\n  file:\n    rotateSizeMB: 100\n    maxTotalSizeMB: "
                                   "1000\n    maxFiles: 5\n");

    /* privileges.user: USER[:GROUP], names or numbers; anything else would
     * reach getpwnam() or be misread as an option. */
    static const char *const good_users[] = {"65532",   "65532:65532", "nonroot:nonroot",
                                             "tcpdump", "0",           "svc.cap-1:pcap_grp"};
    for (size_t i = 0; i < sizeof(good_users) / sizeof(good_users[0]); i++) {
        snprintf(yaml, sizeof(yaml), "%sprivileges:\n  user: \"%s\"\n", srv, good_users[i]);
        expect_valid(PS_ROLE_SENSOR, yaml);
    }
    static const char *const bad_users[] = {":65532", "65532:", "-1", "a:-b",
                                            "a b",    "a:b:c",  "u/x"};
    for (size_t i = 0; i < sizeof(bad_users) / sizeof(bad_users[0]); i++) {
        snprintf(yaml, sizeof(yaml), "%sprivileges:\n  user: \"%s\"\n", srv, bad_users[i]);
        char want[160];
        snprintf(want, sizeof(want),
                 "config: privileges.user: '%s' is not USER[:GROUP] (names or numbers, e.g. "
                 "65532:65532)",
                 bad_users[i]);
        expect_invalid(PS_ROLE_SENSOR, yaml, want);
    }
}

static void test_format_names(void **state)
{
    (void)state;
    ps_format f;
    assert_string_equal(ps_format_name(PS_FORMAT_PCAPNG), "pcapng");
    assert_string_equal(ps_format_name(PS_FORMAT_PCAP), "pcap");
    assert_string_equal(ps_format_name(PS_FORMAT_PCAP_NS), "pcap-ns");
    assert_null(ps_format_name((ps_format)7));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ps_format_parse(ps_format_name((ps_format)i), &f), 0);
        assert_int_equal((int)f, i);
    }
    f = PS_FORMAT_PCAP;
    assert_int_equal(ps_format_parse("pcapng2", &f), -1);
    assert_int_equal(ps_format_parse(NULL, &f), -1);
    assert_int_equal(f, PS_FORMAT_PCAP);
}

/* ---- documentation ---- */

static void test_docs_list_every_key(void **state)
{
    (void)state;
    FILE *f = fopen(PS_SOURCE_DIR "/docs/configuration.md", "rb");
    assert_non_null(f);
    static char doc[1 << 18];
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[n] = '\0';
    char want[160], env[128];
    for (size_t i = 0; ps_config_key_name(i); i++) {
        const char *k = ps_config_key_name(i);
        snprintf(want, sizeof(want), "`%s`", k);
        if (!strstr(doc, want))
            print_error("docs/configuration.md does not mention %s\n", want);
        assert_non_null(strstr(doc, want));
        ps_config_env_name(k, env, sizeof(env));
        snprintf(want, sizeof(want), "`%s`", env);
        if (!strstr(doc, want))
            print_error("docs/configuration.md does not mention %s\n", want);
        assert_non_null(strstr(doc, want));
    }
    assert_non_null(strstr(doc, "`output.plugins`"));
}

/* The reference (docs/configuration.md, --help) describes every key: a
 * role, a description and an environment variable per row. */
static void test_reference_describes_every_key(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(ps_config_print_reference(f, "keys"), 0);
    assert_int_equal(ps_config_print_reference(f, "troff"), -1);
    fclose(f);
    for (size_t i = 0; ps_config_key_name(i); i++) {
        char want[128], env[128];
        snprintf(want, sizeof(want), "| `%s`", ps_config_key_name(i));
        const char *row = strstr(text, want);
        if (!row)
            print_error("no reference row for %s\n", ps_config_key_name(i));
        assert_non_null(row);
        const char *end = strchr(row, '\n');
        assert_non_null(end);
        /* the last cell (the description) is not empty */
        assert_true(end - row > 4 && end[-1] == '|' && end[-2] == ' ' && end[-3] != '|');
        /* a role, and the variable the environment layer reads */
        assert_true(memmem(row, (size_t)(end - row), "| S |", 5) ||
                    memmem(row, (size_t)(end - row), "| R |", 5) ||
                    memmem(row, (size_t)(end - row), "| S, R |", 8));
        snprintf(want, sizeof(want), "`%s`",
                 ps_config_env_name(ps_config_key_name(i), env, sizeof(env)));
        assert_non_null(memmem(row, (size_t)(end - row), want, strlen(want)));
    }
    free(text);
}

/* The default --help and the reference show is the one init applies. */
static void test_key_defaults_are_init_values(void **state)
{
    (void)state;
    ps_config c;
    assert_int_equal(ps_config_init(&c, PS_ROLE_RECEIVER), 0);
    assert_string_equal(ps_config_key_default("http.listen", PS_ROLE_RECEIVER), c.http_listen);
    assert_string_equal(ps_config_key_default("output.file.path", PS_ROLE_RECEIVER), c.file_path);
    assert_int_equal(atoi(ps_config_key_default("input.port", PS_ROLE_RECEIVER)), c.input_port);
    ps_config_free(&c);
    assert_int_equal(ps_config_init(&c, PS_ROLE_SENSOR), 0);
    assert_string_equal(ps_config_key_default("http.listen", PS_ROLE_SENSOR), c.http_listen);
    assert_int_equal(atoi(ps_config_key_default("sensor.shutdownDeadlineSec", PS_ROLE_SENSOR)),
                     (int)c.shutdown_deadline_sec);
    ps_config_free(&c);
    assert_null(ps_config_key_default("sensor.id", PS_ROLE_SENSOR)); /* computed */
    assert_string_equal(ps_config_key_default_words("sensor.id"), "the host name");
    assert_null(ps_config_key_default("no.such.key", PS_ROLE_SENSOR));
}

/* One stdout rule for validation and the writer. */
static void test_stdout_path_rule(void **state)
{
    (void)state;
    static const char *const yes[] = {"stdout", "/dev/stdout", "-"};
    static const char *const no[] = {"./stdout", "stdout/", "--", "", "captures"};
    for (size_t i = 0; i < 3; i++)
        assert_true(ps_config_path_is_stdout(yes[i]));
    for (size_t i = 0; i < 5; i++)
        assert_false(ps_config_path_is_stdout(no[i]));
    assert_false(ps_config_path_is_stdout(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_sensor),
        cmocka_unit_test(test_defaults_receiver),
        cmocka_unit_test(test_original_receiver),
        cmocka_unit_test(test_original_sensor_local),
        cmocka_unit_test(test_original_sensor_full),
        cmocka_unit_test(test_receiver_full),
        cmocka_unit_test(test_invalid_files),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_every_key_has_a_case),
        cmocka_unit_test(test_every_key_yaml),
        cmocka_unit_test(test_every_key_set),
        cmocka_unit_test(test_every_key_env),
        cmocka_unit_test(test_precedence_and_no_leaks),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_dotted_keys_and_original_spelling),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_aliases_rejected),
        cmocka_unit_test(test_plugins_unsupported),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_env_names),
        cmocka_unit_test(test_env_unknown_ignored),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_docs_list_every_key),
        cmocka_unit_test(test_http_listen_checked),
        cmocka_unit_test(test_reference_describes_every_key),
        cmocka_unit_test(test_key_defaults_are_init_values),
        cmocka_unit_test(test_stdout_path_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
