/*
 * lazy.c -- loads the optional libraries on first use (see lazy.h).
 */
#define AD_LAZY_NO_REDIRECT
#define AD_LAZY_DECLARE(f) __typeof__(f) *ad_lazy_##f;
#include "lazy_edit.h"
#include "lazy_yaml.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "buf.h"

typedef struct lib {
    const char *soname;
    const char *package; /* the Debian package that ships it */
    const char *purpose;
    pthread_mutex_t lock;
    bool loaded;
} lib;

static lib yaml_lib = {"libyaml-0.so.2", "libyaml-0-2", "--record and --replay",
                       PTHREAD_MUTEX_INITIALIZER, false};
static lib edit_lib = {"libedit.so.2", "libedit2", "the interactive REPL",
                       PTHREAD_MUTEX_INITIALIZER, false};

/* Resolves one symbol into *slot; the name table below drives it. */
static bool resolve(void *h, const char *name, void **slot, char *err, size_t errlen,
                    const lib *l)
{
    dlerror();
    void *p = dlsym(h, name);
    if (!p) {
        const char *why = dlerror();
        ad_errf(err, errlen, "%s (%s) lacks %s: %s", l->soname, l->purpose, name,
                why ? why : "not found");
        return false;
    }
    *slot = p;
    return true;
}

#define AD_LAZY_RESOLVE(f)                                                                         \
    ok = ok && resolve(h, #f, (void **)(void *)&ad_lazy_##f, err, errlen, l);
#define AD_LAZY_RESET(f) ad_lazy_##f = NULL;

/* Opens l and runs `body` (a list of AD_LAZY_RESOLVE) once. */
#define LOAD(l, SYMBOLS)                                                                           \
    do {                                                                                           \
        pthread_mutex_lock(&(l)->lock);                                                            \
        if ((l)->loaded) {                                                                         \
            pthread_mutex_unlock(&(l)->lock);                                                      \
            return AD_OK;                                                                          \
        }                                                                                          \
        void *h = dlopen((l)->soname, RTLD_NOW | RTLD_LOCAL);                                      \
        bool ok = h != NULL;                                                                       \
        if (!h)                                                                                    \
            ad_errf(err, errlen, "%s needs %s (Debian package %s): %s", (l)->purpose,             \
                    (l)->soname, (l)->package, dlerror());                                         \
        SYMBOLS(AD_LAZY_RESOLVE)                                                                   \
        if (!ok && h) {                                                                            \
            /* A library without a symbol we need: leave nothing half set. */                    \
            SYMBOLS(AD_LAZY_RESET)                                                                 \
            dlclose(h);                                                                            \
        }                                                                                          \
        (l)->loaded = ok;                                                                          \
        /* The library stays mapped for the life of the process. */                                \
        pthread_mutex_unlock(&(l)->lock);                                                          \
        return ok ? AD_OK : AD_ERR;                                                                \
    } while (0)

int ad_lazy_yaml(char *err, size_t errlen)
{
    lib *l = &yaml_lib;
    LOAD(l, AD_YAML_SYMBOLS);
}

int ad_lazy_edit(char *err, size_t errlen)
{
    lib *l = &edit_lib;
    LOAD(l, AD_EDIT_SYMBOLS);
}
