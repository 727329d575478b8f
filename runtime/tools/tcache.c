/*
 * tcache.c -- the tool cache (see tcache.h).
 *
 * The hashes are FNV-1a (64 bits): the file name only has to tell plugins
 * apart, and the config hash only has to notice a change; neither guards
 * anything (a collision costs a stale list, which the worker's own report
 * then corrects). The config text is never stored, only its hash: it may
 * hold a plugin's secrets.
 */
#define _GNU_SOURCE
#include "tools/tcache.h"

#include "base/buf.h"
#include "tools/host.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENTRY_MAX ((size_t)16 << 20) /* bytes of one entry read */
#define FORMAT 1

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3u;
    }
    return h;
}

char *ad_tcache_default_dir(void)
{
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    ad_buf b = AD_BUF_INIT;
    int rc;
    /* XDG: a relative value is invalid and ignored. */
    if (x && x[0] == '/')
        rc = ad_buf_printf(&b, "%s/agentd/tools", x);
    else if (home && home[0])
        rc = ad_buf_printf(&b, "%s/.cache/agentd/tools", home);
    else
        return NULL;
    if (rc != 0) {
        ad_buf_free(&b);
        return NULL;
    }
    return ad_buf_steal(&b);
}

/* The identity of the file at path now, and the entry's file name. */
typedef struct ident {
    char abs[4096];
    struct stat st;
    uint64_t config;
} ident;

static int identify(const char *path, const char *config, ident *id)
{
    if (realpath(path, id->abs) == NULL || stat(id->abs, &id->st) != 0 ||
        !S_ISREG(id->st.st_mode))
        return AD_ERR;
    id->config = config ? fnv1a(config, strlen(config)) : 0;
    return AD_OK;
}

static int entry_path(ad_buf *b, const char *dir, const ident *id)
{
    return ad_buf_printf(b, "%s/%016" PRIx64 ".json", dir, fnv1a(id->abs, strlen(id->abs)));
}

static bool field_is(json_object *o, const char *key, int64_t want)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int) &&
           json_object_get_int64(v) == want;
}

static bool field_str(json_object *o, const char *key, const char *want)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
           strcmp(json_object_get_string(v), want) == 0;
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static void config_hex(char *out, size_t n, const ident *id, bool has)
{
    if (has)
        snprintf(out, n, "%016" PRIx64, id->config);
    else
        snprintf(out, n, "none");
}

json_object *ad_tcache_get(const char *dir, const char *path, const char *config)
{
    ident id;
    if (dir == NULL || identify(path, config, &id) != AD_OK)
        return NULL;
    ad_buf name = AD_BUF_INIT, text = AD_BUF_INIT;
    json_object *e = NULL, *tools = NULL, *out = NULL;
    char why[200], hex[32];
    config_hex(hex, sizeof hex, &id, config != NULL);
    if (entry_path(&name, dir, &id) == 0 && ad_read_file(name.data, ENTRY_MAX, &text) == AD_OK &&
        text.data && ad_tool_parse_json(text.data, text.len, &e, why, sizeof why) == 0 &&
        json_object_is_type(e, json_type_object) && field_is(e, "format", FORMAT) &&
        field_str(e, "agentd", AGENTD_VERSION) && field_str(e, "path", id.abs) &&
        field_is(e, "dev", (int64_t)id.st.st_dev) && field_is(e, "ino", (int64_t)id.st.st_ino) &&
        field_is(e, "size", (int64_t)id.st.st_size) &&
        field_is(e, "mtime_ns", mtime_ns(&id.st)) && field_str(e, "config", hex) &&
        json_object_object_get_ex(e, "tools", &tools) &&
        json_object_is_type(tools, json_type_array) && (out = json_object_new_object()) != NULL &&
        json_object_object_add(out, "tools", json_object_get(tools)) != 0) {
        json_object_put(tools);
        json_object_put(out);
        out = NULL;
    }
    json_object_put(e);
    ad_buf_free(&name);
    ad_buf_free(&text);
    return out;
}

/* mkdir -p with mode 0700 for what it makes. */
static int make_dirs(const char *dir)
{
    char *d = ad_strdup(dir);
    if (d == NULL)
        return ENOMEM;
    int e = 0;
    for (char *s = d + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(d, 0700) != 0 && errno != EEXIST) {
            e = errno;
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(d);
    return e;
}

int ad_tcache_put(const char *dir, const char *path, const char *config, json_object *desc,
                  char *err, size_t errlen)
{
    ident id;
    json_object *tools = NULL;
    if (dir == NULL || identify(path, config, &id) != AD_OK) {
        ad_errf(err, errlen, "cannot identify %s", path);
        return AD_ERR;
    }
    if (!json_object_object_get_ex(desc, "tools", &tools) ||
        !json_object_is_type(tools, json_type_array)) {
        ad_errf(err, errlen, "no tool list");
        return AD_EINVAL;
    }
    char hex[32];
    config_hex(hex, sizeof hex, &id, config != NULL);
    json_object *e = json_object_new_object();
    int rc = AD_ENOMEM;
    ad_buf name = AD_BUF_INIT, tmp = AD_BUF_INIT;
    if (e == NULL || json_object_object_add(e, "format", json_object_new_int(FORMAT)) != 0 ||
        json_object_object_add(e, "agentd", json_object_new_string(AGENTD_VERSION)) != 0 ||
        json_object_object_add(e, "path", json_object_new_string(id.abs)) != 0 ||
        json_object_object_add(e, "dev", json_object_new_int64((int64_t)id.st.st_dev)) != 0 ||
        json_object_object_add(e, "ino", json_object_new_int64((int64_t)id.st.st_ino)) != 0 ||
        json_object_object_add(e, "size", json_object_new_int64((int64_t)id.st.st_size)) != 0 ||
        json_object_object_add(e, "mtime_ns", json_object_new_int64(mtime_ns(&id.st))) != 0 ||
        json_object_object_add(e, "config", json_object_new_string(hex)) != 0 ||
        json_object_object_add(e, "tools", json_object_get(tools)) != 0 ||
        entry_path(&name, dir, &id) != 0 ||
        ad_buf_printf(&tmp, "%s.%ld.tmp", name.data, (long)getpid()) != 0) {
        ad_errf(err, errlen, "out of memory");
        goto out;
    }
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (text == NULL) {
        ad_errf(err, errlen, "out of memory");
        goto out;
    }
    rc = AD_ERR;
    int me = make_dirs(dir);
    if (me != 0) {
        ad_errf(err, errlen, "cannot make %s: %s", dir, strerror(me));
        goto out;
    }
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        ad_errf(err, errlen, "cannot write %s: %s", tmp.data, strerror(errno));
        goto out;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    int we = off == len ? 0 : errno ? errno : EIO;
    if (close(fd) != 0 && we == 0)
        we = errno;
    if (we != 0 || rename(tmp.data, name.data) != 0) {
        ad_errf(err, errlen, "cannot write %s: %s", name.data, strerror(we ? we : errno));
        unlink(tmp.data);
        goto out;
    }
    rc = AD_OK;
out:
    json_object_put(e);
    ad_buf_free(&name);
    ad_buf_free(&tmp);
    return rc;
}
