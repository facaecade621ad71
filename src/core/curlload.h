/*
 * curlload: libcurl, loaded when a feature first needs it.
 *
 * Debian's libcurl links some twenty libraries (Kerberos, LDAP, SASL, SSH,
 * RTMP, nghttp2, libpsl, brotli...) and its global initialisation sets up
 * OpenSSL and those libraries again: linked at start, that costs every
 * packetstreamer process ~4 MiB of resident memory, though only the
 * Kubernetes API client (sensor/kube.c), S3 (receiver/s3.c), the tier's
 * peer requests (receiver/tier.c) and the `get` and `job` commands use it.
 * So the binary does not link libcurl: this module dlopen()s libcurl.so.4
 * on the first ps_curl_load() and defines the libcurl functions the project
 * calls (curl_easy_*, curl_multi_*, curl_slist_*, curl_free) as thin
 * forwarders, so callers include <curl/curl.h> and call libcurl as usual.
 * A sensor without Kubernetes and a receiver without S3 or a tier never
 * load it.
 *
 * Contract:
 * - Each module that uses libcurl calls ps_curl_load() in its open/new
 *   function, before its first libcurl call: 0 when libcurl is ready
 *   (loaded and curl_global_init done, once per process), or -1 with a
 *   sentence naming what is missing in err. Any thread may call it; calls
 *   after the first return at once.
 * - A libcurl function called before a successful ps_curl_load() fails
 *   the way libcurl reports out of memory (NULL, CURLE_FAILED_INIT,
 *   CURLM_INTERNAL_ERROR) and logs once; it never crashes.
 * - ps_curl_unload() (main, at exit, after every user is gone) runs
 *   curl_global_cleanup and closes the library. No-op when never loaded.
 */
#ifndef PS_CURLLOAD_H
#define PS_CURLLOAD_H

#include <stddef.h>

int ps_curl_load(char *err, size_t errlen);
void ps_curl_unload(void);

#endif
