/*
 * s3: one curl easy handle, reset per request, so connections are kept
 * alive between an upload's parts and between files.
 *
 * Signing is libcurl's (CURLOPT_AWS_SIGV4). What it cannot do for us, we
 * do before handing the request over: libcurl 7.88 signs the query string as
 * given, so every query here is built already canonical (names sorted,
 * values percent-encoded, "uploads=" rather than "uploads"); it takes the
 * payload hash from our x-amz-content-sha256 header (S3 requires the
 * header; we hash the body rather than send UNSIGNED-PAYLOAD, so a body
 * corrupted on the way fails the signature); it does not know session
 * tokens, so x-amz-security-token is one of our headers, which it signs.
 *
 * A file is read twice: once to hash (MD5 for Content-MD5 and the ETag we
 * expect, SHA-256 for the signature), once to send. Holding a part in
 * memory instead would cost part size (up to 5 GiB) per upload. XML
 * answers (multipart, errors, listings, STS) are read by s3xml.h (expat:
 * nothing external loaded, no DOCTYPE, bounded).
 */
#include "s3.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "s3xml.h"

#include "core/buf.h"
#include "core/config.h"
#include "core/curlload.h"

#define S3_MAX_ANSWER (4u << 20) /* XML answers kept (a listing page is ~300 KiB) */
#define S3_MAX_PARTS 10000u
#define S3_STATIC_TTL 60  /* seconds before static credentials are read again */
#define S3_STS_MARGIN 300 /* renew STS credentials this long before they expire */
#define S3_STS_DURATION 3600
#define S3_PART_TRIES 3
#define S3_MAX_TOKEN_FILE (64u << 10)
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct ps_s3 {
    char *scheme, *hostport; /* of the endpoint */
    char *region, *bucket, *storage_class, *kms, *sts, *ca;
    int path_style, sse;
    uint64_t part_size;
    const _Atomic int *cancel;
    CURL *h;
    char sigv4[128];
    /* credentials (never printed) */
    char *ak, *sk, *token;
    time_t creds_until;
    const char *creds_source;
};

const char *ps_s3_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case PS_S3_E_IO:
        return "network or server error";
    case PS_S3_E_AUTH:
        return "credentials missing or refused";
    case PS_S3_E_NOTFOUND:
        return "not found";
    case PS_S3_E_FILE:
        return "local file unreadable";
    case PS_S3_E_VERIFY:
        return "object differs from the file";
    case PS_S3_E_CANCEL:
        return "cancelled";
    case PS_S3_E_PROTO:
        return "unexpected answer";
    case PS_S3_E_NOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

/* ---- small helpers ---- */

static int cancelled(const ps_s3 *s)
{
    return s->cancel && atomic_load(s->cancel);
}

/* Sleeps ms, waking early when cancelled. */
static void nap(const ps_s3 *s, unsigned ms)
{
    while (ms > 0 && !cancelled(s)) {
        unsigned step = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static char *dup_or_null(const char *v)
{
    return v && *v ? strdup(v) : NULL;
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

/* SigV4's URI encoding; keep_slash for object keys in paths. */
static int append_enc(ps_buf *b, const char *v, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (is_unreserved(*p) || (keep_slash && *p == '/')) {
            if (ps_buf_append(b, p, 1) != 0)
                return -1;
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            if (ps_buf_append(b, e, 3) != 0)
                return -1;
        }
    }
    return 0;
}

static int append_str(ps_buf *b, const char *v)
{
    return ps_buf_append(b, v, strlen(v));
}

/* NUL-terminates without counting it. */
static int buf_cstr(ps_buf *b)
{
    if (ps_buf_reserve(b, 1) != 0)
        return -1;
    b->data[b->len] = '\0';
    return 0;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL);
    to_hex(d, 32, out);
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Hashes [off, off + len) of fd: MD5 (raw) and SHA-256 (hex); whole, when
 * not NULL, also gets the bytes (a whole file's MD5 across its parts).
 * 0, -1 on a read error, PS_S3_E_CANCEL when s's cancel flag rises (hashing
 * a 5 GiB part takes seconds). */
static int hash_range(const ps_s3 *s, int fd, uint64_t off, uint64_t len, unsigned char md5[16],
                      char sha[65], EVP_MD_CTX *whole)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new(), *h = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1u << 20);
    int rc = -1;
    if (!m || !h || !buf || !EVP_DigestInit_ex(m, EVP_md5(), NULL) ||
        !EVP_DigestInit_ex(h, EVP_sha256(), NULL))
        goto out;
    while (len > 0) {
        if (cancelled(s)) {
            rc = PS_S3_E_CANCEL;
            goto out;
        }
        size_t want = len < (1u << 20) ? (size_t)len : (1u << 20);
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            goto out; /* error, or the file shrank */
        EVP_DigestUpdate(m, buf, (size_t)got);
        EVP_DigestUpdate(h, buf, (size_t)got);
        if (whole)
            EVP_DigestUpdate(whole, buf, (size_t)got);
        off += (uint64_t)got;
        len -= (uint64_t)got;
    }
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(m, md5, &dl);
    EVP_DigestFinal_ex(h, d, &dl);
    to_hex(d, 32, sha);
    rc = 0;
out:
    free(buf);
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(h);
    return rc;
}

/* ---- XML ---- */

/* The answer in b as a document; NULL, and why in why[] when given ("" on
 * success), if it is not XML that s3xml accepts (empty, malformed, out of
 * bounds) or memory ran out. */
static ps_s3xml *xml_parse(const ps_buf *b, char *why, size_t whylen)
{
    ps_s3xml *d = NULL;
    char e[256];
    int rc = ps_s3xml_parse(&d, b->data, b->len, e, sizeof(e));
    if (why)
        snprintf(why, whylen, "%s", rc == 0 ? "" : e);
    return rc == 0 ? d : NULL;
}

/* The text of the first element named name at or below the root, malloc'd;
 * NULL if absent (or d is). */
static char *xml_text(const ps_s3xml *d, const char *name)
{
    return d ? ps_s3xml_text(d, PS_S3XML_ROOT, name) : NULL;
}

/* ---- credentials ---- */

static void creds_clear(ps_s3 *s)
{
    if (s->sk)
        explicit_bzero(s->sk, strlen(s->sk));
    if (s->token)
        explicit_bzero(s->token, strlen(s->token));
    free(s->ak);
    free(s->sk);
    free(s->token);
    s->ak = s->sk = s->token = NULL;
    s->creds_until = 0;
}

static int creds_set(ps_s3 *s, const char *ak, const char *sk, const char *token, time_t until,
                     const char *source)
{
    creds_clear(s);
    s->ak = strdup(ak);
    s->sk = strdup(sk);
    s->token = token && *token ? strdup(token) : NULL;
    if (!s->ak || !s->sk || (token && *token && !s->token)) {
        creds_clear(s);
        return PS_S3_E_NOMEM;
    }
    s->creds_until = until;
    s->creds_source = source;
    return 0;
}

static char *trim(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        p[--n] = '\0';
    return p;
}

/* 1 if the shared credentials file has keys for the profile, 0 if there is
 * no such file or profile, negative on error. */
static int creds_from_file(ps_s3 *s, time_t now, char *err, size_t errlen)
{
    char path[4096];
    const char *f = getenv("AWS_SHARED_CREDENTIALS_FILE");
    if (f && *f)
        snprintf(path, sizeof(path), "%s", f);
    else if (getenv("HOME"))
        snprintf(path, sizeof(path), "%s/.aws/credentials", getenv("HOME"));
    else
        return 0;
    const char *profile = getenv("AWS_PROFILE");
    if (!profile || !*profile)
        profile = "default";
    FILE *fp = fopen(path, "re");
    if (!fp)
        return 0;
    char line[4096], *ak = NULL, *sk = NULL, *tok = NULL;
    int in = 0, rc = 0;
    while (fgets(line, sizeof(line), fp)) {
        char *l = trim(line);
        if (*l == '#' || *l == ';' || *l == '\0')
            continue;
        if (*l == '[') {
            char *e = strchr(l, ']');
            if (e)
                *e = '\0';
            in = strcmp(trim(l + 1), profile) == 0;
            continue;
        }
        char *eq = strchr(l, '=');
        if (!in || !eq)
            continue;
        *eq = '\0';
        char *k = trim(l), *v = trim(eq + 1);
        char **slot = strcmp(k, "aws_access_key_id") == 0       ? &ak
                      : strcmp(k, "aws_secret_access_key") == 0 ? &sk
                      : strcmp(k, "aws_session_token") == 0     ? &tok
                                                                : NULL;
        if (slot) {
            free(*slot);
            *slot = strdup(v);
            if (!*slot)
                rc = PS_S3_E_NOMEM;
        }
    }
    explicit_bzero(line, sizeof(line));
    fclose(fp);
    if (rc == 0 && ak && sk && *ak && *sk)
        rc = creds_set(s, ak, sk, tok, now + S3_STATIC_TTL, "the shared credentials file") == 0
                 ? 1
                 : PS_S3_E_NOMEM;
    else if (rc == 0 && (ak || sk)) {
        snprintf(err, errlen,
                 "AWS credentials file %s: profile '%s' lacks aws_access_key_id or "
                 "aws_secret_access_key",
                 path, profile);
        rc = PS_S3_E_AUTH;
    }
    if (rc == PS_S3_E_NOMEM)
        snprintf(err, errlen, "out of memory");
    if (sk)
        explicit_bzero(sk, strlen(sk));
    if (tok)
        explicit_bzero(tok, strlen(tok));
    free(ak);
    free(sk);
    free(tok);
    return rc;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    ps_buf *b = ud;
    size_t len = size * n;
    if (b->len + len > S3_MAX_ANSWER || ps_buf_append(b, p, len) != 0)
        return 0;
    return len;
}

static time_t parse_iso8601(const char *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return (time_t)-1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

/* AssumeRoleWithWebIdentity (unsigned: the token is the proof). */
static int creds_from_sts(ps_s3 *s, const char *token_file, const char *role, time_t now, char *err,
                          size_t errlen)
{
    ps_buf tok = PS_BUF_INIT, form = PS_BUF_INIT, ans = PS_BUF_INIT;
    int rc = PS_S3_E_AUTH;
    FILE *fp = fopen(token_file, "re");
    if (!fp) {
        snprintf(err, errlen, "AWS_WEB_IDENTITY_TOKEN_FILE %s: %s", token_file, strerror(errno));
        return PS_S3_E_AUTH;
    }
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        if (tok.len + got > S3_MAX_TOKEN_FILE || ps_buf_append(&tok, chunk, got) != 0) {
            fclose(fp);
            snprintf(err, errlen, "AWS_WEB_IDENTITY_TOKEN_FILE %s: larger than 64 KiB", token_file);
            goto out;
        }
    }
    fclose(fp);
    while (tok.len > 0 && (tok.data[tok.len - 1] == '\n' || tok.data[tok.len - 1] == '\r' ||
                           tok.data[tok.len - 1] == ' '))
        tok.len--;
    if (tok.len == 0 || buf_cstr(&tok) != 0) {
        snprintf(err, errlen, "AWS_WEB_IDENTITY_TOKEN_FILE %s is empty", token_file);
        goto out;
    }
    char session[64];
    snprintf(session, sizeof(session), "packetstreamer-%ld", (long)getpid());
    char dur[16];
    snprintf(dur, sizeof(dur), "%d", S3_STS_DURATION);
    if (append_str(&form, "Action=AssumeRoleWithWebIdentity&DurationSeconds=") != 0 ||
        append_str(&form, dur) != 0 || append_str(&form, "&RoleArn=") != 0 ||
        append_enc(&form, role, 0) != 0 || append_str(&form, "&RoleSessionName=") != 0 ||
        append_str(&form, session) != 0 ||
        append_str(&form, "&Version=2011-06-15&WebIdentityToken=") != 0 ||
        append_enc(&form, (const char *)tok.data, 0) != 0) {
        rc = PS_S3_E_NOMEM;
        goto out;
    }
    char url[1100];
    if (s->sts)
        snprintf(url, sizeof(url), "%s", s->sts);
    else
        snprintf(url, sizeof(url), "https://sts.%s.amazonaws.com", s->region);
    curl_easy_reset(s->h);
    struct curl_slist *hd =
        curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    curl_easy_setopt(s->h, CURLOPT_URL, url);
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, (const char *)form.data);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)form.len);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, &ans);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(s->h, CURLOPT_TIMEOUT, 30L);
    if (s->ca)
        curl_easy_setopt(s->h, CURLOPT_CAINFO, s->ca);
    CURLcode c = curl_easy_perform(s->h);
    curl_slist_free_all(hd);
    long status = 0;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
    if (c != CURLE_OK) {
        snprintf(err, errlen, "STS %s: %s", url, curl_easy_strerror(c));
        rc = PS_S3_E_IO;
        goto out;
    }
    ps_s3xml *doc = xml_parse(&ans, NULL, 0);
    char *ak = xml_text(doc, "AccessKeyId"), *sk = xml_text(doc, "SecretAccessKey");
    char *st = xml_text(doc, "SessionToken"), *exp = xml_text(doc, "Expiration");
    if (status == 200 && ak && sk && st && exp) {
        time_t until = parse_iso8601(exp);
        if (until == (time_t)-1 || until - S3_STS_MARGIN <= now)
            until = now + 60; /* short-lived or unreadable: ask again soon */
        else
            until -= S3_STS_MARGIN;
        rc = creds_set(s, ak, sk, st, until, "STS AssumeRoleWithWebIdentity");
        if (rc != 0)
            snprintf(err, errlen, "out of memory");
    } else {
        char *code = xml_text(doc, "Code"), *msg = xml_text(doc, "Message");
        snprintf(err, errlen, "STS AssumeRoleWithWebIdentity at %s for %s: HTTP %ld%s%s%s%s", url,
                 role, status, code ? " " : "", code ? code : "", msg ? ": " : "", msg ? msg : "");
        rc = status >= 500 || status == 429 || status == 0 ? PS_S3_E_IO : PS_S3_E_AUTH;
        free(code);
        free(msg);
    }
    if (sk)
        explicit_bzero(sk, strlen(sk));
    if (st)
        explicit_bzero(st, strlen(st));
    free(ak);
    free(sk);
    free(st);
    free(exp);
    ps_s3xml_free(doc);
out:
    if (tok.data)
        explicit_bzero(tok.data, tok.cap);
    if (form.data)
        explicit_bzero(form.data, form.cap);
    if (ans.data)
        explicit_bzero(ans.data, ans.cap);
    ps_buf_free(&tok);
    ps_buf_free(&form);
    ps_buf_free(&ans);
    return rc;
}

static int load_creds(ps_s3 *s, char *err, size_t errlen)
{
    time_t now = time(NULL);
    if (s->ak && now < s->creds_until)
        return 0;
    creds_clear(s);
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (ak && *ak && sk && *sk) {
        int rc = creds_set(s, ak, sk, getenv("AWS_SESSION_TOKEN"), now + S3_STATIC_TTL,
                           "the environment");
        if (rc != 0)
            snprintf(err, errlen, "out of memory");
        return rc;
    }
    int rc = creds_from_file(s, now, err, errlen);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    const char *tf = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = getenv("AWS_ROLE_ARN");
    if (tf && *tf && role && *role)
        return creds_from_sts(s, tf, role, now, err, errlen);
    snprintf(err, errlen,
             "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a shared "
             "credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials), or "
             "AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN");
    return PS_S3_E_AUTH;
}

/* ---- requests ---- */

typedef struct req {
    const char *method;
    const char *key;   /* NULL: the bucket */
    const char *query; /* canonical; NULL: none */
    const char *const *headers;
    const void *mem; /* body from memory */
    size_t mem_len;
    int fd; /* body from a file range (PUT) */
    uint64_t off, len;
    int has_file;
    const char *sha256; /* hex of the body; NULL: the empty body's */
    const char *md5_b64;
    const char *content_type;
    const char *range;
    ps_s3_sink sink;
    void *sink_ud;
    uint64_t *total;
    /* answer */
    ps_s3 *s;
    long status;
    ps_buf body;
    char etag[80];
    uint64_t content_length, range_total;
    int has_cl, has_range_total;
    uint64_t pos; /* bytes of the file range sent */
    int sink_stopped, sink_started;
    /* between prepare and finish */
    ps_buf url;
    struct curl_slist *hd;
    ps_s3_stream *stream; /* ps_s3_stream_open's: the body goes to its buffer */
    int headers_done;
} req;

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    req *r = ud;
    size_t len = size * n;
    char line[256];
    size_t l = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
    memcpy(line, p, l);
    line[l] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new answer (after 100 Continue) */
        r->etag[0] = '\0';
        r->has_cl = r->has_range_total = 0;
        return len;
    }
    if (line[0] == '\r' || line[0] == '\n') { /* the end of an answer's headers */
        long status = 0;
        curl_easy_getinfo(r->s->h, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200)
            r->headers_done = 1;
        return len;
    }
    char *colon = strchr(line, ':');
    if (!colon)
        return len;
    *colon = '\0';
    char *v = trim(colon + 1);
    if (strcasecmp(line, "ETag") == 0) {
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = '\0';
            v++;
        }
        snprintf(r->etag, sizeof(r->etag), "%s", v);
    } else if (strcasecmp(line, "Content-Length") == 0) {
        r->content_length = strtoull(v, NULL, 10);
        r->has_cl = 1;
    } else if (strcasecmp(line, "Content-Range") == 0) {
        const char *slash = strchr(v, '/');
        if (slash && slash[1] != '*') {
            r->range_total = strtoull(slash + 1, NULL, 10);
            r->has_range_total = 1;
        }
    }
    return len;
}

struct ps_s3_stream {
    ps_s3 *s;
    CURLM *multi;
    req r;
    ps_buf buf; /* received, not yet read */
    size_t rd;  /* read offset into buf */
    int done, paused;
    CURLcode result;
};

#define S3_STREAM_BUF (256u << 10)

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    req *r = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(r->s->h, CURLINFO_RESPONSE_CODE, &status);
    if (r->stream && (status == 200 || status == 206)) {
        ps_s3_stream *st = r->stream;
        if (st->buf.len - st->rd >= S3_STREAM_BUF) {
            st->paused = 1;
            return CURL_WRITEFUNC_PAUSE; /* curl hands the same bytes again later */
        }
        if (st->rd > 0 && st->rd == st->buf.len) {
            st->buf.len = 0;
            st->rd = 0;
        }
        return ps_buf_append(&st->buf, p, len) == 0 ? len : 0;
    }
    if (r->sink && (status == 200 || status == 206)) {
        if (!r->sink_started) {
            r->sink_started = 1;
            if (r->total)
                *r->total = r->has_range_total ? r->range_total : r->has_cl ? r->content_length : 0;
        }
        if (r->sink(r->sink_ud, p, len) != 0) {
            r->sink_stopped = 1;
            return 0;
        }
        return len;
    }
    return collect(p, size, n, &r->body);
}

static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
    req *r = ud;
    size_t want = size * n;
    if (r->len - r->pos < want)
        want = (size_t)(r->len - r->pos);
    if (want == 0)
        return 0;
    for (;;) {
        ssize_t got = pread(r->fd, p, want, (off_t)(r->off + r->pos));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return CURL_READFUNC_ABORT; /* the file shrank or broke */
        r->pos += (uint64_t)got;
        return (size_t)got;
    }
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
    req *r = ud;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->len)
        return CURL_SEEKFUNC_CANTSEEK;
    r->pos = (uint64_t)off;
    return CURL_SEEKFUNC_OK;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    req *r = ud;
    return cancelled(r->s);
}

/* Where a key is shown to people: s3://BUCKET/KEY. */
static void where(const ps_s3 *s, const char *key, char *out, size_t outlen)
{
    snprintf(out, outlen, "s3://%s/%s", s->bucket, key ? key : "");
}

static int build_url(const ps_s3 *s, const req *r, ps_buf *u)
{
    if (append_str(u, s->scheme) != 0 || append_str(u, "://") != 0)
        return -1;
    if (!s->path_style && (append_str(u, s->bucket) != 0 || append_str(u, ".") != 0))
        return -1;
    if (append_str(u, s->hostport) != 0 || append_str(u, "/") != 0)
        return -1;
    if (s->path_style && (append_enc(u, s->bucket, 0) != 0 || (r->key && append_str(u, "/") != 0)))
        return -1;
    if (r->key && append_enc(u, r->key, 1) != 0)
        return -1;
    if (r->query && (append_str(u, "?") != 0 || append_str(u, r->query) != 0))
        return -1;
    return buf_cstr(u);
}

/* Sets s's handle up for r (credentials, URL, headers, body). 0, or an
 * error; finish() releases what it made either way. */
static int prepare(ps_s3 *s, req *r, char *err, size_t errlen)
{
    r->s = s;
    int rc = load_creds(s, err, errlen);
    if (rc != 0)
        return rc;
    ps_buf url = PS_BUF_INIT;
    struct curl_slist *hd = NULL;
    char line[2300];
    if (build_url(s, r, &url) != 0) {
        snprintf(err, errlen, "out of memory");
        ps_buf_free(&url);
        return PS_S3_E_NOMEM;
    }
    char sha[65];
    if (r->mem && !r->sha256)
        sha256_hex(r->mem, r->mem_len, sha);
    else
        snprintf(sha, sizeof(sha), "%s", r->sha256 ? r->sha256 : S3_EMPTY_SHA256);
    int oom = 0;
#define HDR(...)                                                                                   \
    do {                                                                                           \
        snprintf(line, sizeof(line), __VA_ARGS__);                                                 \
        struct curl_slist *t = curl_slist_append(hd, line);                                        \
        if (t)                                                                                     \
            hd = t;                                                                                \
        else                                                                                       \
            oom = 1;                                                                               \
    } while (0)
    HDR("x-amz-content-sha256: %s", sha);
    if (s->token)
        HDR("x-amz-security-token: %s", s->token);
    if (r->md5_b64)
        HDR("Content-MD5: %s", r->md5_b64);
    if (r->content_type)
        HDR("Content-Type: %s", r->content_type);
    if (r->range)
        HDR("Range: %s", r->range);
    for (size_t i = 0; r->headers && r->headers[i]; i++)
        HDR("%s", r->headers[i]);
#undef HDR
    explicit_bzero(line, sizeof(line));
    if (oom) {
        curl_slist_free_all(hd);
        ps_buf_free(&url);
        snprintf(err, errlen, "out of memory");
        return PS_S3_E_NOMEM;
    }
    CURL *h = s->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, (const char *)url.data);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(h, CURLOPT_USERNAME, s->ak);
    curl_easy_setopt(h, CURLOPT_PASSWORD, s->sk);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    if (s->ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, s->ca);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
    if (strcmp(r->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(r->has_file ? r->len : 0));
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, r);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
    } else if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->mem ? (const char *)r->mem : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->mem_len);
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    r->pos = 0;
    r->url = url;
    r->hd = hd;
    return 0;
}

/* After the transfer (c its result): 0 when an HTTP answer arrived
 * (r->status), else an error. */
static int finish(ps_s3 *s, req *r, CURLcode c, char *err, size_t errlen)
{
    char w[1200];
    where(s, r->key, w, sizeof(w));
    CURL *h = s->h;
    curl_slist_free_all(r->hd);
    r->hd = NULL;
    ps_buf_free(&r->url);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (c == CURLE_OK)
        return 0;
    if (cancelled(s) || r->sink_stopped) {
        snprintf(err, errlen, "%s %s: cancelled", r->method, w);
        return PS_S3_E_CANCEL;
    }
    if (c == CURLE_ABORTED_BY_CALLBACK && r->has_file) {
        snprintf(err, errlen, "%s %s: the local file could not be read", r->method, w);
        return PS_S3_E_FILE;
    }
    snprintf(err, errlen, "%s %s: %s", r->method, w, curl_easy_strerror(c));
    return PS_S3_E_IO;
}

/* Sends r; 0 when an HTTP answer arrived (r->status), else an error. */
static int perform(ps_s3 *s, req *r, char *err, size_t errlen)
{
    int rc = prepare(s, r, err, errlen);
    if (rc != 0)
        return rc;
    return finish(s, r, curl_easy_perform(s->h), err, errlen);
}

/* An answer with an unexpected status (or an <Error> body) as an error. */
static int answer_error(ps_s3 *s, req *r, char *err, size_t errlen)
{
    char w[1200];
    where(s, r->key, w, sizeof(w));
    ps_s3xml *doc = xml_parse(&r->body, NULL, 0);
    char *code = xml_text(doc, "Code"), *msg = xml_text(doc, "Message");
    int rc = r->status == 401 || r->status == 403 ? PS_S3_E_AUTH
             : r->status == 404                   ? PS_S3_E_NOTFOUND
                                                  : PS_S3_E_IO;
    if (code && (strcmp(code, "InvalidAccessKeyId") == 0 ||
                 strcmp(code, "SignatureDoesNotMatch") == 0 || strcmp(code, "AccessDenied") == 0))
        rc = PS_S3_E_AUTH;
    if (rc == PS_S3_E_AUTH && !code)
        snprintf(err, errlen,
                 "%s %s: HTTP %ld, no reason given (an unknown access key, a wrong secret, or a "
                 "policy without s3:GetObject/s3:PutObject on the bucket; credentials from %s)",
                 r->method, w, r->status, s->creds_source ? s->creds_source : "nowhere");
    else if (rc == PS_S3_E_AUTH)
        snprintf(err, errlen, "%s %s: HTTP %ld%s%s%s%s (credentials from %s)", r->method, w,
                 r->status, code ? " " : "", code ? code : "", msg ? ": " : "", msg ? msg : "",
                 s->creds_source ? s->creds_source : "nowhere");
    else
        snprintf(err, errlen, "%s %s: HTTP %ld%s%s%s%s", r->method, w, r->status, code ? " " : "",
                 code ? code : "", msg ? ": " : "", msg ? msg : "");
    free(code);
    free(msg);
    ps_s3xml_free(doc);
    return rc;
}

/* ---- lifecycle ---- */

int ps_s3_new(ps_s3 **out, const ps_s3_opts *o, char *err, size_t errlen)
{
    if (ps_curl_load(err, errlen) != 0)
        return -1;
    ps_s3 *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *region = o->region && *o->region ? o->region : "us-east-1";
    char def[300];
    snprintf(def, sizeof(def), "https://s3.%s.amazonaws.com", region);
    const char *ep = o->endpoint && *o->endpoint ? o->endpoint : def;
    const char *sep = strstr(ep, "://");
    if (!sep || (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)) {
        snprintf(err, errlen, "output.s3.endpoint must be an http:// or https:// URL");
        free(s);
        return -1;
    }
    const char *host = sep + 3;
    size_t hl = strcspn(host, "/");
    if (hl == 0 || (host[hl] == '/' && host[hl + 1] != '\0')) {
        snprintf(err, errlen, "output.s3.endpoint: give scheme, host and port only (no path)");
        free(s);
        return -1;
    }
    s->scheme = strndup(ep, (size_t)(sep - ep));
    s->hostport = strndup(host, hl);
    s->region = strdup(region);
    s->bucket = strdup(o->bucket ? o->bucket : "");
    s->storage_class = dup_or_null(o->storage_class);
    s->kms = dup_or_null(o->sse_kms_key_id);
    s->sts = dup_or_null(o->sts_endpoint);
    s->ca = dup_or_null(o->ca_file);
    s->path_style = o->path_style;
    s->sse = o->sse;
    s->part_size = o->part_size < (5u << 20) ? (5u << 20) : o->part_size;
    s->cancel = o->cancel;
    s->h = curl_easy_init();
    snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", region);
    if (!s->scheme || !s->hostport || !s->region || !s->bucket || !s->h ||
        (o->storage_class && *o->storage_class && !s->storage_class) ||
        (o->sse_kms_key_id && *o->sse_kms_key_id && !s->kms) ||
        (o->sts_endpoint && *o->sts_endpoint && !s->sts) || (o->ca_file && *o->ca_file && !s->ca)) {
        snprintf(err, errlen, "out of memory");
        ps_s3_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void ps_s3_free(ps_s3 *s)
{
    if (!s)
        return;
    creds_clear(s);
    if (s->h)
        curl_easy_cleanup(s->h);
    free(s->scheme);
    free(s->hostport);
    free(s->region);
    free(s->bucket);
    free(s->storage_class);
    free(s->kms);
    free(s->sts);
    free(s->ca);
    free(s);
}

/* ---- objects ---- */

int ps_s3_head(ps_s3 *s, const char *key, ps_s3_object *obj, char *err, size_t errlen)
{
    req r = {.method = "HEAD", .key = key};
    int rc = perform(s, &r, err, errlen);
    if (rc == 0 && r.status != 200)
        rc = answer_error(s, &r, err, errlen);
    if (rc == 0 && !r.has_cl) {
        char w[1200];
        where(s, key, w, sizeof(w));
        snprintf(err, errlen, "HEAD %s: no Content-Length", w);
        rc = PS_S3_E_PROTO;
    }
    if (rc == 0) {
        obj->size = r.content_length;
        snprintf(obj->etag, sizeof(obj->etag), "%s", r.etag);
    }
    ps_buf_free(&r.body);
    return rc;
}

static uint64_t part_size_for(const ps_s3 *s, uint64_t size)
{
    uint64_t p = s->part_size;
    if (size / p >= S3_MAX_PARTS) { /* grow parts to fit in 10000, whole MiB */
        p = (size + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
        p = (p + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
    }
    return p;
}

/* What a file's object may show as its ETag: S3's (the MD5 of a single
 * PUT; MD5 of the part MD5s, "-N", after a multipart upload) or, from
 * servers that hash the assembled object (s3rver, some gateways), the whole
 * file's MD5. Either is a checksum of every byte. */
typedef struct expect {
    char etag[64];
    char md5[33];
} expect;

/* The expectation for fd's size bytes, uploaded with this client. */
static int etag_of(ps_s3 *s, int fd, uint64_t size, expect *e)
{
    unsigned char md5[16];
    char sha[65];
    if (size <= s->part_size) {
        int hr = hash_range(s, fd, 0, size, md5, sha, NULL);
        if (hr != 0)
            return hr;
        to_hex(md5, 16, e->md5);
        snprintf(e->etag, sizeof(e->etag), "%s", e->md5);
        return 0;
    }
    uint64_t ps = part_size_for(s, size), n = (size + ps - 1) / ps;
    EVP_MD_CTX *all = EVP_MD_CTX_new(), *whole = EVP_MD_CTX_new();
    int rc = -1;
    if (!all || !whole || !EVP_DigestInit_ex(all, EVP_md5(), NULL) ||
        !EVP_DigestInit_ex(whole, EVP_md5(), NULL))
        goto out;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = i * ps, len = size - off < ps ? size - off : ps;
        if ((rc = hash_range(s, fd, off, len, md5, sha, whole)) != 0)
            goto out;
        rc = -1;
        EVP_DigestUpdate(all, md5, 16);
    }
    unsigned int dl = 0;
    char hex[33];
    EVP_DigestFinal_ex(all, md5, &dl);
    to_hex(md5, 16, hex);
    snprintf(e->etag, sizeof(e->etag), "%s-%" PRIu64, hex, n);
    EVP_DigestFinal_ex(whole, md5, &dl);
    to_hex(md5, 16, e->md5);
    rc = 0;
out:
    EVP_MD_CTX_free(all);
    EVP_MD_CTX_free(whole);
    return rc;
}

static int open_file(const char *path, uint64_t *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

/* HEAD key and compare with what we sent. */
static int verify(ps_s3 *s, const char *key, uint64_t size, const expect *e, char *err,
                  size_t errlen)
{
    ps_s3_object obj;
    int rc = ps_s3_head(s, key, &obj, err, errlen);
    if (rc != 0)
        return rc;
    char w[1200];
    where(s, key, w, sizeof(w));
    if (obj.size != size) {
        snprintf(err, errlen, "%s: %" PRIu64 " bytes in the bucket, %" PRIu64 " in the file", w,
                 obj.size, size);
        return PS_S3_E_VERIFY;
    }
    /* Under SSE-KMS the ETag is not an MD5: the size must do. */
    if (s->sse != PS_CONFIG_SSE_KMS && obj.etag[0] && strcasecmp(obj.etag, e->etag) != 0 &&
        strcasecmp(obj.etag, e->md5) != 0) {
        snprintf(err, errlen, "%s: ETag %s in the bucket, %s expected from the file", w, obj.etag,
                 e->etag);
        return PS_S3_E_VERIFY;
    }
    return 0;
}

int ps_s3_confirm(ps_s3 *s, const char *key, const char *path, char *err, size_t errlen)
{
    uint64_t size;
    int fd = open_file(path, &size, err, errlen);
    if (fd < 0)
        return PS_S3_E_FILE;
    /* HEAD before reading the whole file: usually the object is not there */
    ps_s3_object obj;
    int rc = ps_s3_head(s, key, &obj, err, errlen);
    if (rc == 0 && obj.size != size) {
        char w[1200];
        where(s, key, w, sizeof(w));
        snprintf(err, errlen, "%s: %" PRIu64 " bytes in the bucket, %" PRIu64 " in the file", w,
                 obj.size, size);
        rc = PS_S3_E_VERIFY;
    }
    expect e;
    if (rc == 0) {
        int hr = etag_of(s, fd, size, &e);
        if (hr != 0) {
            snprintf(err, errlen, "%s: %s", path,
                     hr == PS_S3_E_CANCEL ? "cancelled" : "read failed");
            rc = hr == PS_S3_E_CANCEL ? hr : PS_S3_E_FILE;
        }
    }
    close(fd);
    return rc != 0 ? rc : verify(s, key, size, &e, err, errlen);
}

/* The headers a new object gets (storage class, encryption). */
static void object_headers(const ps_s3 *s, char store[3][2200], const char *out[4])
{
    size_t n = 0;
    if (s->storage_class) {
        snprintf(store[n], sizeof(store[n]), "x-amz-storage-class: %s", s->storage_class);
        out[n] = store[n];
        n++;
    }
    if (s->sse != PS_CONFIG_SSE_NONE) {
        snprintf(store[n], sizeof(store[n]), "x-amz-server-side-encryption: %s",
                 s->sse == PS_CONFIG_SSE_KMS ? "aws:kms" : "AES256");
        out[n] = store[n];
        n++;
    }
    if (s->sse == PS_CONFIG_SSE_KMS && s->kms) {
        snprintf(store[n], sizeof(store[n]), "x-amz-server-side-encryption-aws-kms-key-id: %s",
                 s->kms);
        out[n] = store[n];
        n++;
    }
    out[n] = NULL;
}

static int put_single(ps_s3 *s, const char *key, int fd, uint64_t size, expect *e, char *err,
                      size_t errlen)
{
    unsigned char md5[16];
    char sha[65], md5b64[32], hex[33];
    int hr = hash_range(s, fd, 0, size, md5, sha, NULL);
    if (hr != 0) {
        snprintf(err, errlen, "%s: %s", key, hr == PS_S3_E_CANCEL ? "cancelled" : "read failed");
        return hr == PS_S3_E_CANCEL ? hr : PS_S3_E_FILE;
    }
    base64(md5, 16, md5b64);
    to_hex(md5, 16, hex);
    snprintf(e->etag, sizeof(e->etag), "%s", hex);
    snprintf(e->md5, sizeof(e->md5), "%s", hex);
    char store[3][2200];
    const char *hdrs[4];
    object_headers(s, store, hdrs);
    req r = {.method = "PUT",
             .key = key,
             .headers = hdrs,
             .fd = fd,
             .len = size,
             .has_file = 1,
             .sha256 = sha,
             .md5_b64 = md5b64,
             .content_type = "application/octet-stream"};
    int rc = perform(s, &r, err, errlen);
    if (rc == 0 && r.status != 200)
        rc = answer_error(s, &r, err, errlen);
    ps_buf_free(&r.body);
    return rc;
}

static void abort_multipart(ps_s3 *s, const char *key, const char *qid)
{
    char q[1100], e[256];
    snprintf(q, sizeof(q), "uploadId=%s", qid);
    req r = {.method = "DELETE", .key = key, .query = q};
    /* Best effort: a bucket lifecycle rule (docs/storage.md) removes
     * what an abort that fails leaves behind. */
    if (!cancelled(s))
        perform(s, &r, e, sizeof(e));
    ps_buf_free(&r.body);
}

static int put_multipart(ps_s3 *s, const char *key, int fd, uint64_t size, expect *e, char *err,
                         size_t errlen)
{
    char store[3][2200];
    const char *hdrs[4];
    object_headers(s, store, hdrs);
    req cr = {.method = "POST",
              .key = key,
              .query = "uploads=",
              .headers = hdrs,
              .content_type = "application/octet-stream"};
    int rc = perform(s, &cr, err, errlen);
    if (rc == 0 && cr.status != 200)
        rc = answer_error(s, &cr, err, errlen);
    char *upload_id = NULL;
    if (rc == 0) {
        char why[256];
        ps_s3xml *doc = xml_parse(&cr.body, why, sizeof(why));
        upload_id = xml_text(doc, "UploadId");
        ps_s3xml_free(doc);
        if (!upload_id || !*upload_id) {
            char w[1200];
            where(s, key, w, sizeof(w));
            snprintf(err, errlen, "CreateMultipartUpload %s: no UploadId in the answer%s%s%s", w,
                     why[0] ? " (" : "", why, why[0] ? ")" : "");
            rc = PS_S3_E_PROTO;
        }
    }
    ps_buf_free(&cr.body);
    if (rc != 0) {
        free(upload_id);
        return rc;
    }
    ps_buf qid = PS_BUF_INIT, xml = PS_BUF_INIT;
    uint64_t ps = part_size_for(s, size), n = (size + ps - 1) / ps;
    EVP_MD_CTX *all = EVP_MD_CTX_new(), *whole = EVP_MD_CTX_new();
    if (append_enc(&qid, upload_id, 0) != 0 || buf_cstr(&qid) != 0 || !all || !whole ||
        !EVP_DigestInit_ex(all, EVP_md5(), NULL) || !EVP_DigestInit_ex(whole, EVP_md5(), NULL) ||
        append_str(&xml, "<CompleteMultipartUpload>") != 0) {
        snprintf(err, errlen, "out of memory");
        rc = PS_S3_E_NOMEM;
    }
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        uint64_t off = i * ps, len = size - off < ps ? size - off : ps;
        unsigned char md5[16];
        char sha[65], md5b64[32], q[1200];
        int hr = hash_range(s, fd, off, len, md5, sha, whole);
        if (hr != 0) {
            snprintf(err, errlen, "%s: %s", key,
                     hr == PS_S3_E_CANCEL ? "cancelled" : "read failed");
            rc = hr == PS_S3_E_CANCEL ? hr : PS_S3_E_FILE;
            break;
        }
        EVP_DigestUpdate(all, md5, 16);
        base64(md5, 16, md5b64);
        snprintf(q, sizeof(q), "partNumber=%" PRIu64 "&uploadId=%s", i + 1, (const char *)qid.data);
        char part_etag[80] = "";
        for (int t = 0; t < S3_PART_TRIES; t++) {
            if (t > 0)
                nap(s, 1000u << t);
            req pr = {.method = "PUT",
                      .key = key,
                      .query = q,
                      .fd = fd,
                      .off = off,
                      .len = len,
                      .has_file = 1,
                      .sha256 = sha,
                      .md5_b64 = md5b64};
            rc = perform(s, &pr, err, errlen);
            if (rc == 0 && pr.status != 200)
                rc = answer_error(s, &pr, err, errlen);
            if (rc == 0 && !pr.etag[0]) {
                snprintf(err, errlen, "UploadPart %s part %" PRIu64 ": no ETag", key, i + 1);
                rc = PS_S3_E_PROTO;
            }
            if (rc == 0)
                snprintf(part_etag, sizeof(part_etag), "%s", pr.etag);
            ps_buf_free(&pr.body);
            if (rc != PS_S3_E_IO)
                break;
        }
        if (rc != 0)
            break;
        char entry[200];
        snprintf(entry, sizeof(entry),
                 "<Part><PartNumber>%" PRIu64 "</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
                 part_etag);
        if (append_str(&xml, entry) != 0) {
            snprintf(err, errlen, "out of memory");
            rc = PS_S3_E_NOMEM;
        }
    }
    if (rc == 0 && (append_str(&xml, "</CompleteMultipartUpload>") != 0 || buf_cstr(&xml) != 0)) {
        snprintf(err, errlen, "out of memory");
        rc = PS_S3_E_NOMEM;
    }
    if (rc == 0) {
        unsigned char md5[16];
        unsigned int dl = 0;
        char hex[33], q[1200];
        EVP_DigestFinal_ex(all, md5, &dl);
        to_hex(md5, 16, hex);
        snprintf(e->etag, sizeof(e->etag), "%s-%" PRIu64, hex, n);
        EVP_DigestFinal_ex(whole, md5, &dl);
        to_hex(md5, 16, e->md5);
        snprintf(q, sizeof(q), "uploadId=%s", (const char *)qid.data);
        /* S3 may answer 200 and then report an error in the body. */
        req fr = {.method = "POST",
                  .key = key,
                  .query = q,
                  .mem = xml.data,
                  .mem_len = xml.len,
                  .content_type = "application/xml"};
        rc = perform(s, &fr, err, errlen);
        if (rc == 0) {
            ps_s3xml *doc = xml_parse(&fr.body, NULL, 0);
            int failed =
                fr.status != 200 || !doc || strcmp(ps_s3xml_name(doc, PS_S3XML_ROOT), "Error") == 0;
            ps_s3xml_free(doc);
            if (failed) {
                if (fr.status == 200)
                    fr.status = 500; /* an error in a 200: retry */
                rc = answer_error(s, &fr, err, errlen);
            }
        }
        ps_buf_free(&fr.body);
    }
    if (rc != 0 && qid.data)
        abort_multipart(s, key, (const char *)qid.data);
    EVP_MD_CTX_free(all);
    EVP_MD_CTX_free(whole);
    ps_buf_free(&qid);
    ps_buf_free(&xml);
    free(upload_id);
    return rc;
}

int ps_s3_put_file(ps_s3 *s, const char *key, const char *path, uint64_t *bytes, char *err,
                   size_t errlen)
{
    uint64_t size;
    int fd = open_file(path, &size, err, errlen);
    if (fd < 0)
        return PS_S3_E_FILE;
    expect e;
    int rc = size <= s->part_size ? put_single(s, key, fd, size, &e, err, errlen)
                                  : put_multipart(s, key, fd, size, &e, err, errlen);
    close(fd);
    if (rc == 0)
        rc = verify(s, key, size, &e, err, errlen);
    if (rc == 0 && bytes)
        *bytes = size;
    return rc;
}

int ps_s3_get(ps_s3 *s, const char *key, uint64_t off, uint64_t len, uint64_t *total,
              ps_s3_sink sink, void *ud, char *err, size_t errlen)
{
    char range[64];
    if (len > 0)
        snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
    else
        snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", off);
    req r = {.method = "GET",
             .key = key,
             .range = off > 0 || len > 0 ? range : NULL,
             .sink = sink,
             .sink_ud = ud,
             .total = total};
    int rc = perform(s, &r, err, errlen);
    if (rc == 0 && r.status != 200 && r.status != 206)
        rc = answer_error(s, &r, err, errlen);
    ps_buf_free(&r.body);
    return rc;
}

int ps_s3_list(ps_s3 *s, const char *prefix, size_t max,
               void (*cb)(void *ud, const ps_s3_listed *o), void *ud, char *err, size_t errlen)
{
    char *token = NULL;
    size_t seen = 0;
    int rc = 0;
    for (;;) {
        ps_buf q = PS_BUF_INIT;
        int bad = 0;
        if (token)
            bad |= append_str(&q, "continuation-token=") || append_enc(&q, token, 0) ||
                   append_str(&q, "&");
        bad |= append_str(&q, "list-type=2&max-keys=1000&prefix=") ||
               append_enc(&q, prefix ? prefix : "", 0) || buf_cstr(&q);
        if (bad) {
            ps_buf_free(&q);
            snprintf(err, errlen, "out of memory");
            rc = PS_S3_E_NOMEM;
            break;
        }
        req r = {.method = "GET", .query = (const char *)q.data};
        rc = perform(s, &r, err, errlen);
        if (rc == 0 && r.status != 200)
            rc = answer_error(s, &r, err, errlen);
        ps_buf_free(&q);
        char why[256] = "";
        ps_s3xml *doc = rc == 0 ? xml_parse(&r.body, why, sizeof(why)) : NULL;
        ps_buf_free(&r.body);
        if (rc != 0)
            break;
        if (!doc || strcmp(ps_s3xml_name(doc, PS_S3XML_ROOT), "ListBucketResult") != 0) {
            snprintf(err, errlen, "ListObjectsV2 s3://%s: not a listing%s%s%s", s->bucket,
                     why[0] ? " (" : "", why, why[0] ? ")" : "");
            rc = PS_S3_E_PROTO;
            ps_s3xml_free(doc);
            break;
        }
        const size_t root = PS_S3XML_ROOT;
        for (size_t c = ps_s3xml_child(doc, root, root, "Contents"); c && (max == 0 || seen < max);
             c = ps_s3xml_child(doc, root, c, "Contents")) {
            char *k = ps_s3xml_text(doc, c, "Key"), *sz = ps_s3xml_text(doc, c, "Size");
            char *lm = ps_s3xml_text(doc, c, "LastModified");
            if (k) {
                ps_s3_listed o = {
                    .key = k, .size = sz ? strtoull(sz, NULL, 10) : 0, .last_modified = lm};
                cb(ud, &o);
                seen++;
            }
            free(k);
            free(sz);
            free(lm);
        }
        char *trunc = xml_text(doc, "IsTruncated");
        free(token);
        token = trunc && strcmp(trunc, "true") == 0 ? xml_text(doc, "NextContinuationToken") : NULL;
        free(trunc);
        ps_s3xml_free(doc);
        if (!token || (max > 0 && seen >= max))
            break;
    }
    free(token);
    return rc;
}

/* ---- streaming GET (pull) ---- */

/* Drives the transfer once: perform, then wait up to 1 s for the socket. */
static void stream_step(ps_s3_stream *st)
{
    int running = 0;
    curl_multi_perform(st->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(st->multi, &left)))
        if (m->msg == CURLMSG_DONE) {
            st->done = 1;
            st->result = m->data.result;
        }
    if (!st->done && running)
        curl_multi_poll(st->multi, NULL, 0, 1000, NULL);
    else if (!running)
        st->done = 1;
}

int ps_s3_stream_open(ps_s3 *s, const char *key, uint64_t off, uint64_t len, ps_s3_stream **out,
                      char *err, size_t errlen)
{
    ps_s3_stream *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return PS_S3_E_NOMEM;
    }
    st->s = s;
    char range[64]; /* copied into the request's headers by prepare */
    snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
    st->r = (req){.method = "GET", .key = key, .range = len > 0 ? range : NULL, .stream = st};
    int rc = prepare(s, &st->r, err, errlen);
    if (rc != 0) {
        free(st);
        return rc;
    }
    st->multi = curl_multi_init();
    if (!st->multi || curl_multi_add_handle(st->multi, s->h) != CURLM_OK) {
        finish(s, &st->r, CURLE_OUT_OF_MEMORY, err, errlen);
        if (st->multi)
            curl_multi_cleanup(st->multi);
        free(st);
        snprintf(err, errlen, "out of memory");
        return PS_S3_E_NOMEM;
    }
    while (!st->done && !st->r.headers_done && !cancelled(s))
        stream_step(st);
    if (st->done && st->result != CURLE_OK)
        rc = finish(s, &st->r, st->result, err, errlen);
    else {
        long status = 0;
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
        st->r.status = status;
        if (status != 200 && status != 206) {
            while (!st->done && !cancelled(s)) /* the error's body */
                stream_step(st);
            rc = answer_error(s, &st->r, err, errlen);
        }
    }
    if (rc == 0 && cancelled(s)) {
        snprintf(err, errlen, "cancelled");
        rc = PS_S3_E_CANCEL;
    }
    if (rc != 0) {
        ps_s3_stream_free(st);
        return rc;
    }
    *out = st;
    return 0;
}

long ps_s3_stream_read(ps_s3_stream *st, void *buf, size_t max)
{
    while (st->rd == st->buf.len) {
        if (st->paused) {
            st->paused = 0;
            curl_easy_pause(st->s->h, CURLPAUSE_CONT);
        }
        if (st->done)
            return st->result == CURLE_OK ? 0 : -1;
        if (cancelled(st->s))
            return -1;
        stream_step(st);
    }
    size_t n = st->buf.len - st->rd;
    if (n > max)
        n = max;
    memcpy(buf, st->buf.data + st->rd, n);
    st->rd += n;
    return (long)n;
}

void ps_s3_stream_free(ps_s3_stream *st)
{
    if (!st)
        return;
    if (st->multi) {
        curl_multi_remove_handle(st->multi, st->s->h);
        curl_multi_cleanup(st->multi);
    }
    curl_slist_free_all(st->r.hd);
    ps_buf_free(&st->r.url);
    ps_buf_free(&st->r.body);
    ps_buf_free(&st->buf);
    free(st);
}
