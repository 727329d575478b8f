/*
 * lazy.c -- loads the optional libraries on first use (see lazy.h).
 */
#define AD_LAZY_NO_REDIRECT
#define AD_LAZY_DECLARE(f) __typeof__(f) *ad_lazy_##f;
#include "base/lazy_curl.h"
#include "base/lazy_edit.h"
#include "base/lazy_hiredis.h"
#include "base/lazy_yaml.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "base/buf.h"

/* One symbol to resolve: its name and the pointer that receives it. */
typedef struct sym {
    const char *name;
    void **slot;
} sym;

#define AD_LAZY_SYM(f) {#f, (void **)(void *)&ad_lazy_##f},
static const sym yaml_syms[] = {AD_YAML_SYMBOLS(AD_LAZY_SYM)};
static const sym edit_syms[] = {AD_EDIT_SYMBOLS(AD_LAZY_SYM)};
static const sym hiredis_syms[] = {AD_HIREDIS_SYMBOLS(AD_LAZY_SYM)};
static const sym curl_syms[] = {AD_CURL_SYMBOLS(AD_LAZY_SYM)};

typedef struct lib {
    const char *soname;
    const char *package; /* the Debian package that ships it */
    const char *purpose;
    const sym *syms;
    size_t nsyms;
    pthread_mutex_t lock;
    bool loaded;
} lib;

static lib yaml_lib = {"libyaml-0.so.2", "libyaml-0-2", "--record and --replay", yaml_syms,
                       sizeof yaml_syms / sizeof yaml_syms[0], PTHREAD_MUTEX_INITIALIZER, false};
static lib edit_lib = {"libedit.so.2", "libedit2", "the interactive REPL", edit_syms,
                       sizeof edit_syms / sizeof edit_syms[0], PTHREAD_MUTEX_INITIALIZER, false};
static lib hiredis_lib = {"libhiredis.so.0.14", "libhiredis0.14", "the Redis job queue",
                          hiredis_syms, sizeof hiredis_syms / sizeof hiredis_syms[0],
                          PTHREAD_MUTEX_INITIALIZER, false};
static lib curl_lib = {"libcurl.so.4", "libcurl4", "HTTP", curl_syms,
                       sizeof curl_syms / sizeof curl_syms[0], PTHREAD_MUTEX_INITIALIZER, false};

/* Opens l and resolves its symbols, once. The library stays mapped for the
 * life of the process. */
static int load(lib *l, char *err, size_t errlen)
{
    pthread_mutex_lock(&l->lock);
    if (l->loaded) {
        pthread_mutex_unlock(&l->lock);
        return AD_OK;
    }
    /* RTLD_LAZY: the library's own calls, and its dependencies', are bound
     * on first use, as for a linked library; binding all of libcurl's
     * thirty libraries at once cost about 2.9 million instructions (13%)
     * of a one-shot run. The symbols agentd calls are looked up below, so
     * a library lacking one still fails here. */
    void *h = dlopen(l->soname, RTLD_LAZY | RTLD_LOCAL);
    bool ok = h != NULL;
    if (!h)
        ad_errf(err, errlen, "%s needs %s (Debian package %s): %s", l->purpose, l->soname,
                l->package, dlerror());
    for (size_t i = 0; ok && i < l->nsyms; i++) {
        dlerror();
        *l->syms[i].slot = dlsym(h, l->syms[i].name);
        if (!*l->syms[i].slot) {
            const char *why = dlerror();
            ad_errf(err, errlen, "%s (%s) lacks %s: %s", l->soname, l->purpose, l->syms[i].name,
                    why ? why : "not found");
            ok = false;
        }
    }
    if (!ok && h) {
        /* A library without a symbol we need: leave nothing half set. */
        for (size_t i = 0; i < l->nsyms; i++)
            *l->syms[i].slot = NULL;
        dlclose(h);
    }
    l->loaded = ok;
    pthread_mutex_unlock(&l->lock);
    return ok ? AD_OK : AD_ERR;
}

int ad_lazy_yaml(char *err, size_t errlen)
{
    return load(&yaml_lib, err, errlen);
}

int ad_lazy_edit(char *err, size_t errlen)
{
    return load(&edit_lib, err, errlen);
}

int ad_lazy_hiredis(char *err, size_t errlen)
{
    return load(&hiredis_lib, err, errlen);
}

int ad_lazy_curl(char *err, size_t errlen)
{
    return load(&curl_lib, err, errlen);
}
