/*
 * curlload: libcurl through dlopen, so that only the processes that use it
 * pay for loading it (see curlload.h for the figures and the contract).
 *
 * How: one table of function pointers filled by dlsym, and a definition of
 * each libcurl function the project calls that forwards to it. The
 * executable does not export these definitions (no -rdynamic), so libcurl's
 * own internal calls never land here, and the library is opened
 * RTLD_LOCAL so that its dependencies' symbols stay out of our namespace.
 *
 * The variadic setters take the type of their argument from the option's
 * number, as libcurl itself does: options below CURLOPTTYPE_OBJECTPOINT
 * take a long, below FUNCTIONPOINT a pointer, below OFF_T a function
 * pointer, below BLOB a curl_off_t, and blobs a pointer. Every
 * curl_easy_getinfo takes a pointer.
 *
 * The load may now happen after threads exist (a receiver opens S3 after
 * its HTTP server started), where main used to call curl_global_init
 * before any: libcurl's global init is thread-safe since 7.84 (Debian 12
 * ships 7.88), and the mutex below serialises our own loads anyway.
 *
 * The two variadic setters look alike but cannot share a body: C cannot
 * forward a va_list to a variadic function, so each reads the one
 * argument by its type and calls its own target (multi options have no
 * blobs).
 *
 * Rejected: linking libcurl lazily with a linker trick (glibc has no
 * delay-load), and a libcurl-free HTTP client of our own (the project
 * prefers a well-kept library to hand-written protocol code).
 */
#define CURL_DISABLE_TYPECHECK /* we define the functions the macros check */
#include "curlload.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "log.h"

/* The soname of Debian's libcurl4 (libcurl4-openssl-dev's headers): the
 * ABI the headers we compile against describe. */
#define CL_SONAME "libcurl.so.4"

typedef void (*cl_anyfn)(void);

typedef struct {
    CURLcode (*global_init)(long);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_perform)(CURL *);
    void (*easy_cleanup)(CURL *);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_pause)(CURL *, int);
    const char *(*easy_strerror)(CURLcode);
    char *(*easy_escape)(CURL *, const char *, int);
    void (*free)(void *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_cleanup)(CURLM *);
    CURLMcode (*multi_perform)(CURLM *, int *);
    CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd[], unsigned int, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
    CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
    CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
} cl_table;

static cl_table fn;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *lib;
static int ready; /* set under lock, read atomically (release/acquire) by the forwarders */
static int warned;

/* dlsym gives an object pointer; ISO C has no cast from it to a function
 * pointer, so its bytes are copied (what POSIX documents for dlsym). */
static int sym(const char *name, void *slot, char *err, size_t errlen)
{
    void *p = dlsym(lib, name);
    if (!p) {
        snprintf(err, errlen, "%s has no %s: packetstreamer needs libcurl 7.66 or later", CL_SONAME,
                 name);
        return -1;
    }
    memcpy(slot, &p, sizeof(cl_anyfn));
    return 0;
}

static int resolve(char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
    } tab[] = {
#define CL_SYM(field) {"curl_" #field, offsetof(cl_table, field)}
        CL_SYM(global_init),      CL_SYM(global_cleanup),      CL_SYM(easy_init),
        CL_SYM(easy_setopt),      CL_SYM(easy_perform),        CL_SYM(easy_cleanup),
        CL_SYM(easy_getinfo),     CL_SYM(easy_reset),          CL_SYM(easy_pause),
        CL_SYM(easy_strerror),    CL_SYM(easy_escape),         CL_SYM(free),
        CL_SYM(slist_append),     CL_SYM(slist_free_all),      CL_SYM(multi_init),
        CL_SYM(multi_add_handle), CL_SYM(multi_remove_handle), CL_SYM(multi_cleanup),
        CL_SYM(multi_perform),    CL_SYM(multi_poll),          CL_SYM(multi_info_read),
        CL_SYM(multi_setopt),     CL_SYM(multi_assign),        CL_SYM(multi_socket_action),
#undef CL_SYM
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (sym(tab[i].name, (char *)&fn + tab[i].off, err, errlen) != 0)
            return -1;
    return 0;
}

int ps_curl_load(char *err, size_t errlen)
{
    pthread_mutex_lock(&lock);
    int rc = 0;
    if (ready)
        goto out;
    lib = dlopen(CL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(err, errlen,
                 "cannot load %s (%s): Kubernetes, S3, the tier and the get/job commands need "
                 "libcurl (Debian package libcurl4)",
                 CL_SONAME, why ? why : "unknown reason");
        rc = -1;
        goto out;
    }
    if (resolve(err, errlen) != 0) {
        rc = -1;
    } else if (fn.global_init(CURL_GLOBAL_DEFAULT) != 0) {
        snprintf(err, errlen, "cannot initialise libcurl");
        rc = -1;
    }
    if (rc != 0) {
        dlclose(lib);
        lib = NULL;
        memset(&fn, 0, sizeof(fn));
        goto out;
    }
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

void ps_curl_unload(void)
{
    pthread_mutex_lock(&lock);
    if (ready) {
        fn.global_cleanup();
        dlclose(lib);
        lib = NULL;
        memset(&fn, 0, sizeof(fn));
        __atomic_store_n(&ready, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
}

/* A call before ps_curl_load succeeded: a bug of ours, reported once, and
 * answered the way libcurl answers when it has no memory. */
static int missing(const char *what)
{
    if (__atomic_load_n(&ready, __ATOMIC_ACQUIRE))
        return 0;
    if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        ps_error("curl", "%s called before libcurl was loaded (ps_curl_load)", what);
    return 1;
}

/* ---- forwarders: the libcurl API as <curl/curl.h> declares it ---- */

CURL *curl_easy_init(void)
{
    return missing(__func__) ? NULL : fn.easy_init();
}

CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
    if (missing(__func__))
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, opt);
    CURLcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = fn.easy_setopt(h, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_FUNCTIONPOINT)
        rc = fn.easy_setopt(h, opt, va_arg(ap, void *));
    else if (opt < CURLOPTTYPE_OFF_T)
        rc = fn.easy_setopt(h, opt, va_arg(ap, cl_anyfn));
    else if (opt < CURLOPTTYPE_BLOB)
        rc = fn.easy_setopt(h, opt, va_arg(ap, curl_off_t));
    else
        rc = fn.easy_setopt(h, opt, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

CURLcode curl_easy_perform(CURL *h)
{
    return missing(__func__) ? CURLE_FAILED_INIT : fn.easy_perform(h);
}

void curl_easy_cleanup(CURL *h)
{
    if (!missing(__func__))
        fn.easy_cleanup(h);
}

CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
    if (missing(__func__))
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, info);
    CURLcode rc = fn.easy_getinfo(h, info, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

void curl_easy_reset(CURL *h)
{
    if (!missing(__func__))
        fn.easy_reset(h);
}

CURLcode curl_easy_pause(CURL *h, int bitmask)
{
    return missing(__func__) ? CURLE_FAILED_INIT : fn.easy_pause(h, bitmask);
}

const char *curl_easy_strerror(CURLcode code)
{
    return missing(__func__) ? "libcurl is not loaded" : fn.easy_strerror(code);
}

char *curl_easy_escape(CURL *h, const char *s, int len)
{
    return missing(__func__) ? NULL : fn.easy_escape(h, s, len);
}

void curl_free(void *p)
{
    if (!missing(__func__))
        fn.free(p);
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *s)
{
    return missing(__func__) ? NULL : fn.slist_append(list, s);
}

void curl_slist_free_all(struct curl_slist *list)
{
    if (!missing(__func__))
        fn.slist_free_all(list);
}

CURLM *curl_multi_init(void)
{
    return missing(__func__) ? NULL : fn.multi_init();
}

CURLMcode curl_multi_add_handle(CURLM *m, CURL *h)
{
    return missing(__func__) ? CURLM_INTERNAL_ERROR : fn.multi_add_handle(m, h);
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *h)
{
    return missing(__func__) ? CURLM_INTERNAL_ERROR : fn.multi_remove_handle(m, h);
}

CURLMcode curl_multi_cleanup(CURLM *m)
{
    return missing(__func__) ? CURLM_INTERNAL_ERROR : fn.multi_cleanup(m);
}

CURLMcode curl_multi_perform(CURLM *m, int *running)
{
    return missing(__func__) ? CURLM_INTERNAL_ERROR : fn.multi_perform(m, running);
}

CURLMcode curl_multi_poll(CURLM *m, struct curl_waitfd extra[], unsigned int n, int timeout_ms,
                          int *ret)
{
    return missing(__func__) ? CURLM_INTERNAL_ERROR : fn.multi_poll(m, extra, n, timeout_ms, ret);
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left)
{
    return missing(__func__) ? NULL : fn.multi_info_read(m, left);
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption opt, ...)
{
    if (missing(__func__))
        return CURLM_INTERNAL_ERROR;
    va_list ap;
    va_start(ap, opt);
    CURLMcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = fn.multi_setopt(m, opt, va_arg(ap, long));
    else if (opt < CURLOPTTYPE_FUNCTIONPOINT)
        rc = fn.multi_setopt(m, opt, va_arg(ap, void *));
    else if (opt < CURLOPTTYPE_OFF_T)
        rc = fn.multi_setopt(m, opt, va_arg(ap, cl_anyfn));
    else
        rc = fn.multi_setopt(m, opt, va_arg(ap, curl_off_t));
    va_end(ap);
    return rc;
}

CURLMcode curl_multi_assign(CURLM *m, curl_socket_t s, void *p)
{
    return missing(__func__) ? CURLM_INTERNAL_ERROR : fn.multi_assign(m, s, p);
}

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running)
{
    return missing(__func__) ? CURLM_INTERNAL_ERROR : fn.multi_socket_action(m, s, ev, running);
}
