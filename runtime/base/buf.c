/*
 * buf.c -- growable byte buffer (see buf.h).
 */
#include "base/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ad_buf_reserve(ad_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return AD_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return AD_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return AD_ENOMEM;
    b->data = p;
    b->cap = cap;
    return AD_OK;
}

int ad_buf_append(ad_buf *b, const void *data, size_t len)
{
    if (ad_buf_reserve(b, len) != AD_OK)
        return AD_ENOMEM;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return AD_OK;
}

int ad_buf_puts(ad_buf *b, const char *s)
{
    return ad_buf_append(b, s, strlen(s));
}

int ad_buf_putc(ad_buf *b, char c)
{
    return ad_buf_append(b, &c, 1);
}

int ad_buf_vprintf(ad_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return AD_EINVAL;
    if (ad_buf_reserve(b, (size_t)n) != AD_OK)
        return AD_ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return AD_OK;
}

int ad_buf_printf(ad_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ad_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int ad_buf_size(ad_buf *b, size_t n)
{
    if (n < 1024)
        return ad_buf_printf(b, "%zu bytes", n);
    if (n < 1024 * 1024)
        return ad_buf_printf(b, "%.1f KiB", (double)n / 1024);
    return ad_buf_printf(b, "%.1f MiB", (double)n / (1024 * 1024));
}

void ad_buf_reset(ad_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void ad_buf_free(ad_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *ad_buf_steal(ad_buf *b)
{
    char *s = b->data;
    if (s == NULL)
        return ad_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

char *ad_strdup(const char *s)
{
    return ad_strndup(s, strlen(s));
}

char *ad_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ad_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int ad_read_file(const char *path, size_t max, ad_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return AD_ERR;
    struct stat st;
    int rc = AD_OK;
    if (fstat(fd, &st) != 0)
        rc = AD_ERR;
    else if (!S_ISREG(st.st_mode))
        rc = AD_EINVAL;
    else if ((unsigned long long)st.st_size > max)
        rc = AD_ETOOBIG;
    char chunk[65536];
    while (rc == AD_OK) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? AD_ERR : AD_OK;
            break;
        }
        if (out->len + (size_t)n > max) /* it grew since fstat */
            rc = AD_ETOOBIG;
        else if (ad_buf_append(out, chunk, (size_t)n) != AD_OK)
            rc = AD_ENOMEM;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}
