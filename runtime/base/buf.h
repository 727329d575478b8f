/*
 * buf.h -- growable byte buffer and small string helpers.
 *
 * An ad_buf always keeps a NUL after its last byte once anything was
 * appended, so b->data can be used as a C string when the content holds no
 * NUL. Growth is geometric; a failed allocation leaves the buffer unchanged
 * and returns AD_ENOMEM.
 */
#ifndef AD_BUF_H
#define AD_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Error codes shared by every runtime module: 0 or negative. */
enum {
    AD_OK = 0,
    AD_ERR = -1,     /* generic failure; details in the caller's err buffer */
    AD_ENOMEM = -2,  /* allocation failed */
    AD_EINVAL = -3,  /* invalid input */
    AD_ETOOBIG = -4, /* a configured bound was exceeded */
    AD_ESTOP = -5    /* a callback asked to stop */
};

typedef struct ad_buf {
    char *data; /* owned; NULL until the first append */
    size_t len; /* bytes used, not counting the trailing NUL */
    size_t cap; /* bytes allocated */
} ad_buf;

#define AD_BUF_INIT {NULL, 0, 0}

int ad_buf_reserve(ad_buf *b, size_t extra); /* room for `extra` more bytes + NUL */
int ad_buf_append(ad_buf *b, const void *data, size_t len);
int ad_buf_puts(ad_buf *b, const char *s);
int ad_buf_putc(ad_buf *b, char c);
int ad_buf_printf(ad_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ad_buf_vprintf(ad_buf *b, const char *fmt, va_list ap);
/* A size for people: "812 bytes", "12.5 KiB", "3.1 MiB". */
int ad_buf_size(ad_buf *b, size_t n);
void ad_buf_reset(ad_buf *b); /* len = 0, keeps the allocation */
void ad_buf_free(ad_buf *b);  /* releases the allocation; b is reusable */
/* Returns the content as a malloc'd NUL-terminated string and empties b;
 * caller frees. Returns "" (allocated) for an empty buffer, NULL on ENOMEM. */
char *ad_buf_steal(ad_buf *b);

/* strdup/strndup that never return NULL for non-NULL input except on ENOMEM. */
char *ad_strdup(const char *s);
char *ad_strndup(const char *s, size_t n);

/* snprintf into err[0..errlen) when err is not NULL; always NUL-terminates. */
void ad_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads the regular file at path into out (appended), at most max bytes.
 * Returns 0; AD_ETOOBIG when it is larger than max; AD_EINVAL when it is not
 * a regular file; AD_ERR with errno set when it cannot be opened or read;
 * AD_ENOMEM. Callers say what the file was for in their own message. */
int ad_read_file(const char *path, size_t max, ad_buf *out);

#endif /* AD_BUF_H */
