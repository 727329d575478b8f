/*
 * init.c -- `agentd --init [FILE]`: writes the starter config.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/config.h"
#include "cli/init.h"

const char ad_starter_config[] =
/* configs/starter.toml as C string literals, made by the Makefile. */
#include "starter.h"
    ;

int ad_init_write(const char *path, bool mkparents, char *err, size_t errlen)
{
    if (mkparents && ad_make_parents(path, err, errlen) != AD_OK)
        return AD_EINVAL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
        ad_errf(err, errlen, "%s exists; not overwriting it (remove it first, or name another "
                             "file: agentd --init FILE)",
                path);
    else if (fd < 0)
        ad_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    if (fd < 0)
        return AD_EINVAL;
    size_t len = strlen(ad_starter_config), off = 0;
    while (off < len) {
        ssize_t n = write(fd, ad_starter_config + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        off += (size_t)n;
    }
    bool ok = off == len;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        ad_errf(err, errlen, "cannot write %s: %s", path, strerror(saved));
        unlink(path);
        return AD_ERR;
    }
    return AD_OK;
}
