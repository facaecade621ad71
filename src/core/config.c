/*
 * config: the public API over the key table: defaults, the layers (file,
 * flags, environment), cross-key validation and the auth key file.
 *
 * Unknown PACKETSTREAMER_* environment variables are the one leniency,
 * see ps_config_apply_env(); everything else unknown is an error.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config_int.h"
#include "hostport.h"

#define ENV_PREFIX "PACKETSTREAMER_"

/* ---- init, free, set, env, validate ---- */

/* The host name, made into a valid sensor.id (see KF_ID). */
static char *default_sensor_id(void)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    host[253] = '\0';
    for (char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            *p = '-';
    if (host[0] == '\0' || host[0] == '.')
        return strdup("sensor");
    return strdup(host);
}

int ps_config_init(ps_config *c, ps_role role)
{
    memset(c, 0, sizeof(*c));
    c->role = role;
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const key_def *k = &cfg_keys[i];
        errctx e = {NULL, 0, "default", 0};
        const char *def = role == PS_ROLE_RECEIVER && k->def_receiver ? k->def_receiver : k->def;
        if (def && cfg_set_from_string(c, k, def, &e) != 0) {
            ps_config_free(c);
            return -1;
        }
    }
    c->sensor_id = default_sensor_id();
    if (!c->sensor_id) {
        ps_config_free(c);
        return -1;
    }
    return 0;
}

void ps_config_free(ps_config *c)
{
    if (!c)
        return;
    ps_role role = c->role;
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const key_def *k = &cfg_keys[i];
        if (k->type == K_STR) {
            char **slot = cfg_field(c, k);
            free(*slot);
            *slot = NULL;
        } else if (k->type == K_STRLIST) {
            cfg_strlist_clear(cfg_field(c, k), cfg_strlist_count(c, k));
        }
    }
    cfg_ifports_clear(c);
    /* Zeroed so that a second free, or a free after a failed init, is safe. */
    memset(c, 0, sizeof(*c));
    c->role = role;
}

int ps_config_set(ps_config *c, const char *key, const char *value, const char *origin, char *err,
                  size_t errlen)
{
    errctx e = {err, errlen, origin ? origin : key, 0};
    const key_def *k;
    char shown[80];

    if (err && errlen)
        err[0] = '\0';
    if (!key || !value)
        return cfg_errf(&e, "no key or value");
    if (cfg_find_unsupported(key))
        return cfg_unsupported_key(&e, key);
    k = cfg_find_key(key);
    if (!k) {
        if (cfg_is_section(key))
            return cfg_errf(&e, "'%s' is a group of keys, not a key",
                            cfg_show(key, shown, sizeof(shown)));
        return cfg_unknown_key(&e, key);
    }
    return cfg_set_from_string(c, k, value, &e);
}

char *ps_config_env_name(const char *key, char *out, size_t outlen)
{
    size_t n = 0;
    if (!out || outlen == 0)
        return out;
    out[0] = '\0';
    if (!key)
        return out;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (n + 1 < outlen)                                                                        \
            out[n++] = (char)(ch);                                                                 \
    } while (0)
    for (const char *p = ENV_PREFIX; *p; p++)
        PUT(*p);
    for (size_t i = 0; key[i]; i++) {
        unsigned char ch = (unsigned char)key[i];
        unsigned char prev = i ? (unsigned char)key[i - 1] : 0;
        unsigned char next = (unsigned char)key[i + 1];
        if (ch == '.' || ch == '-') {
            PUT('_');
            continue;
        }
        /* camelCase word starts: "rotateSize" -> ROTATE_SIZE; an acronym
         * stays whole ("SizeMB" -> SIZE_MB) until a word follows it. */
        if (isupper(ch) && prev && prev != '.' &&
            (islower(prev) || isdigit(prev) || (isupper(prev) && islower(next))))
            PUT('_');
        PUT(toupper(ch));
    }
#undef PUT
    out[n] = '\0';
    return out;
}

/* Kubernetes injects <SERVICE>_PORT=tcp://10.0.0.1:8081 for every Service;
 * a Service named "packetstreamer-input" would collide with a port key. */
static int is_service_link(const char *v)
{
    return strncmp(v, "tcp://", 6) == 0 || strncmp(v, "udp://", 6) == 0 ||
           strncmp(v, "sctp://", 7) == 0;
}

int ps_config_apply_env(ps_config *c, char *const *envp, char *err, size_t errlen)
{
    char name[PATH_MAX_LEN];
    if (err && errlen)
        err[0] = '\0';
    if (!envp)
        return 0;
    /* Only names that map to a key are read; any other PACKETSTREAMER_*
     * variable is ignored, because Kubernetes injects service links
     * (PACKETSTREAMER_SERVICE_HOST, PACKETSTREAMER_PORT=tcp://...) for a
     * Service of that name and those must not stop the process. */
    for (size_t i = 0; i < cfg_nkeys; i++) {
        const key_def *k = &cfg_keys[i];
        if (k->type == K_UNSUPPORTED)
            continue;
        ps_config_env_name(k->name, name, sizeof(name));
        size_t nl = strlen(name);
        const char *val = NULL;
        for (char *const *ep = envp; *ep; ep++) {
            if (strncmp(*ep, name, nl) == 0 && (*ep)[nl] == '=') {
                val = *ep + nl + 1;
                break;
            }
        }
        /* Empty means unset: manifests often template "VAR: ''". */
        if (!val || !val[0])
            continue;
        if (k->type == K_INT && is_service_link(val))
            continue;
        if (ps_config_set(c, k->name, val, name, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int ps_config_path_is_stdout(const char *p)
{
    return p && (strcmp(p, "stdout") == 0 || strcmp(p, "/dev/stdout") == 0 || strcmp(p, "-") == 0);
}

/* USER[:GROUP]: each part a name or number of [A-Za-z0-9._-], not starting
 * with '-' (getpwnam would take it, a reader of ps(1) would not). */
static int valid_user_spec(const char *s)
{
    const char *colon = strchr(s, ':');
    size_t ulen = colon ? (size_t)(colon - s) : strlen(s);
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    if (ulen == 0 || ulen > 32 || s[0] == '-' || strspn(s, ok) != ulen)
        return 0;
    if (!colon)
        return 1;
    const char *g = colon + 1;
    size_t glen = strlen(g);
    return glen > 0 && glen <= 32 && g[0] != '-' && strspn(g, ok) == glen;
}

int ps_config_validate(const ps_config *c, char *err, size_t errlen)
{
    errctx e = {err, errlen, "config", 0};
    if (err && errlen)
        err[0] = '\0';

    if (c->tls_enable &&
        (!c->tls_cert_file && !c->tls_cert_pem) != (!c->tls_key_file && !c->tls_key_pem))
        return cfg_errf(&e, "tls.certFile and tls.keyFile must be set together");
    if (c->tls_cert_file && c->tls_cert_pem)
        return cfg_errf(&e, "tls.certFile and tls.certPem are both set; use one");
    if (c->tls_key_file && c->tls_key_pem)
        return cfg_errf(&e, "tls.keyFile and tls.keyPem are both set; use one");
    if (c->tls_ca_file && c->tls_ca_pem)
        return cfg_errf(&e, "tls.caFile and tls.caPem are both set; use one");
    if (!c->file_mode || strspn(c->file_mode, "01234567") != strlen(c->file_mode) ||
        strtoul(c->file_mode, NULL, 8) > 0666)
        return cfg_errf(&e,
                        "output.file.mode must be an octal mode of at most 0666 (e.g. 0640), "
                        "got '%s'",
                        c->file_mode ? c->file_mode : "");
    if (c->auth_enable && !c->auth_key && !c->auth_key_file)
        return cfg_errf(&e, "auth.enable is true but neither auth.key nor auth.keyFile is set");
    if (c->auth_key && strlen(c->auth_key) > PS_AUTH_KEY_MAX)
        return cfg_errf(&e, "auth.key is longer than %d bytes", PS_AUTH_KEY_MAX);
    if (c->auth_enable && c->auth_key && c->auth_key_file)
        return cfg_errf(&e, "auth.key and auth.keyFile are both set; use one");

    ps_hostport hp;
    char why[160];
    if (c->http_enable &&
        (!c->http_listen || ps_hostport_parse(c->http_listen, PS_HOSTPORT_PORT0, &hp) != 0))
        return cfg_errf(
            &e, "http.listen: %s",
            ps_hostport_explain(c->http_listen ? c->http_listen : "", "ADDR", why, sizeof(why)));
    if (c->tier_peers && ps_hostport_parse(c->tier_peers, 0, &hp) != 0)
        return cfg_errf(&e, "tier.peers: %s",
                        ps_hostport_explain(c->tier_peers, "NAME", why, sizeof(why)));

    if (c->role == PS_ROLE_SENSOR) {
        if (c->kube_enabled == PS_KUBE_ENABLED_FALSE &&
            (c->pods_namespaces_count > 0 || (c->pods_label_selector && c->pods_label_selector[0])))
            return cfg_errf(&e, "capture.pods selects pods by namespace or label, but "
                                "kubernetes.enabled is false: without the API no pod is known; "
                                "remove the selection or enable kubernetes");
        if (!c->server_address)
            return cfg_errf(&e, "no receiver address: set output.server.address in the config or "
                                "pass --receiver HOST:PORT");
        if (c->gather_max_wait_sec == 0 && c->gather_max_wait_ms == 0)
            return cfg_errf(&e, "gatherMaxWaitSec and gatherMaxWaitMs are both 0: a partial batch "
                                "would never be sent; set gatherMaxWaitMs (e.g. 200) or "
                                "gatherMaxWaitSec");
        if ((uint64_t)c->spool_size_mb * 1024 < c->compress_block_size_kb)
            return cfg_errf(&e,
                            "spool.size (%" PRIu32 " MiB) cannot hold one batch of "
                            "compressBlockSize (%" PRIu32 " KiB)",
                            c->spool_size_mb, c->compress_block_size_kb);
        if (!c->sensor_id)
            return cfg_errf(&e, "sensor.id is not set");
        if (c->privileges_user && !valid_user_spec(c->privileges_user)) {
            char shown[80];
            return cfg_errf(&e,
                            "privileges.user: '%s' is not USER[:GROUP] (names or numbers, e.g. "
                            "65532:65532)",
                            cfg_show(c->privileges_user, shown, sizeof(shown)));
        }
    } else {
        if (c->tls_enable &&
            ((!c->tls_cert_file && !c->tls_cert_pem) || (!c->tls_key_file && !c->tls_key_pem)))
            return cfg_errf(&e, "tls.enable is true but tls.certFile and tls.keyFile are not set: "
                                "the receiver needs its certificate and private key");
        if (!c->file_path)
            return cfg_errf(&e, "output.file.path is not set");
        if (c->per_sensor && ps_config_path_is_stdout(c->file_path))
            return cfg_errf(&e, "output.file.perSensor cannot split a single stdout stream; "
                                "set output.file.path to a directory");
        if (c->s3_enabled && !c->s3_bucket)
            return cfg_errf(&e, "output.s3.enabled is true but output.s3.bucket is not set");
        if (c->s3_enabled && ps_config_path_is_stdout(c->file_path))
            return cfg_errf(&e, "output.s3 uploads completed files: set output.file.path to a "
                                "directory, not stdout");
        if (c->s3_sse_kms_key_id && c->s3_sse != PS_CONFIG_SSE_KMS)
            return cfg_errf(&e, "output.s3.sseKmsKeyId is set but output.s3.sse is not aws:kms");
        if (c->s3_endpoint && strncmp(c->s3_endpoint, "http://", 7) != 0 &&
            strncmp(c->s3_endpoint, "https://", 8) != 0)
            return cfg_errf(&e, "output.s3.endpoint must be an http:// or https:// URL");
        if (c->s3_sts_endpoint && strncmp(c->s3_sts_endpoint, "http://", 7) != 0 &&
            strncmp(c->s3_sts_endpoint, "https://", 8) != 0)
            return cfg_errf(&e, "output.s3.stsEndpoint must be an http:// or https:// URL");
        if (c->max_total_bytes && c->rotate_bytes > c->max_total_bytes)
            return cfg_errf(&e,
                            "output.file.rotateSizeMB is larger than output.file.maxTotalSizeMB: "
                            "retention would delete the file being written");
    }
    return 0;
}

unsigned ps_config_file_mode(const ps_config *c)
{
    return c->file_mode ? (unsigned)strtoul(c->file_mode, NULL, 8) & 0666u : 0640u;
}

int ps_config_load_key_file(ps_config *c, char *err, size_t errlen)
{
    if (!c->auth_enable || !c->auth_key_file)
        return 0;
    FILE *f = fopen(c->auth_key_file, "re");
    if (!f) {
        snprintf(err, errlen, "auth.keyFile: cannot read '%s': %s", c->auth_key_file,
                 strerror(errno));
        return -1;
    }
    char buf[PS_AUTH_KEY_MAX + 2];
    size_t n = fread(buf, 1, sizeof(buf), f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, errlen, "auth.keyFile: cannot read '%s'", c->auth_key_file);
        return -1;
    }
    /* Secrets mounted from Kubernetes or written by echo end in a newline
     * that is not part of the token. */
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n == 0 || n > PS_AUTH_KEY_MAX || memchr(buf, '\0', n)) {
        snprintf(err, errlen, "auth.keyFile: '%s' must hold a token of 1 to %d bytes",
                 c->auth_key_file, PS_AUTH_KEY_MAX);
        return -1;
    }
    char *key = strndup(buf, n);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (!key) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(c->auth_key);
    c->auth_key = key;
    return 0;
}
