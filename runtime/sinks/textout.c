/*
 * textout.c -- the answer's text on standard output (see textout.h).
 *
 * Per step, one of three ways to be able to take the text back:
 *   terminal  the text goes out at once, neutralised; the rows it moved the
 *             cursor down are counted (the screen width at the step's start,
 *             wcwidth under a UTF-8 LC_CTYPE of our own, autowrap with the
 *             pending-wrap state of VT100-like terminals), so a retry can
 *             go back up that many rows and clear to the end of the screen;
 *   file      the offset where the step began (the file's size under
 *             O_APPEND: the descriptor's offset says nothing there); a retry
 *             truncates to it and seeks back;
 *   stream    the text is held in memory until the step is committed.
 * A step that may not be repeated is simply written (and neutralised on a
 * terminal), so later steps stream everywhere.
 */
#define _XOPEN_SOURCE 700 /* wcwidth */
#include "sinks/textout.h"

#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include "base/buf.h"
#include "base/text.h"

/* Held text grown past this by one long step is released on commit. */
#define KEEP_CAP ((size_t)1 << 20)

struct ad_textout {
    FILE *out;
    int fd;
    ad_textout_kind kind;
    bool may_repeat; /* the current step can still be taken back */
    bool wrote;      /* the current step has written something */
    bool last_nl;    /* the step's last byte was a newline */

    /* file */
    bool have_start;
    off_t start; /* where the current step's text began */

    /* stream (and a file whose offset could not be read) */
    ad_buf held;

    /* terminal */
    unsigned fix_cols, fix_rows; /* set_screen; 0: ask the terminal */
    unsigned width;              /* columns at the step's start; 0: unknown */
    size_t lines;                /* rows the step's text moved the cursor down */
    unsigned col;                /* cursor column; == width: pending wrap */
    unsigned char pend[4];       /* an unfinished UTF-8 sequence, or a '\r' */
    size_t npend;
    ad_buf clean; /* reused: the neutralised text of one write */
    ad_buf work;  /* reused: pend + the next write */
    locale_t loc; /* UTF-8 LC_CTYPE for wcwidth; (locale_t)0 if none */
    bool loc_tried;
};

ad_textout *ad_textout_new_kind(FILE *out, ad_textout_kind kind)
{
    ad_textout *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->out = out;
    t->fd = fileno(out);
    t->kind = kind;
    return t;
}

ad_textout *ad_textout_new(FILE *out)
{
    int fd = fileno(out);
    struct stat st;
    ad_textout_kind k = AD_TEXTOUT_STREAM;
    if (fd >= 0 && isatty(fd))
        k = AD_TEXTOUT_TTY;
    else if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        k = AD_TEXTOUT_FILE;
    return ad_textout_new_kind(out, k);
}

ad_textout_kind ad_textout_get_kind(const ad_textout *t)
{
    return t->kind;
}

void ad_textout_set_screen(ad_textout *t, unsigned cols, unsigned rows)
{
    t->fix_cols = cols;
    t->fix_rows = rows;
}

static void screen_size(const ad_textout *t, unsigned *cols, unsigned *rows)
{
    *cols = t->fix_cols;
    *rows = t->fix_rows;
    if (*cols)
        return;
    struct winsize ws;
    if (ioctl(t->fd, TIOCGWINSZ, &ws) == 0) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
}

/* An LC_CTYPE with UTF-8 for wcwidth, without touching the process locale:
 * the user's if it is UTF-8, else C.UTF-8. */
static locale_t utf8_locale(void)
{
    static const char *const names[] = {"", "C.UTF-8", "C.utf8"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        locale_t l = newlocale(LC_CTYPE_MASK, names[i], (locale_t)0);
        if (!l)
            continue;
        const char *cs = nl_langinfo_l(CODESET, l);
        if (cs && (strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "utf8") == 0))
            return l;
        freelocale(l);
    }
    return (locale_t)0;
}

/* ---- neutralising ---------------------------------------------------------- */

static void put_caret(ad_buf *b, unsigned char c)
{
    char x[2] = {'^', c == 0x7f ? '?' : (char)(c + 0x40)};
    ad_buf_append(b, x, 2);
}

/* t->clean = the neutralised form of t->pend + s[0..n). Unless final, an
 * unfinished UTF-8 sequence or a '\r' at the end is kept in t->pend for the
 * next write; final writes it out as U+FFFD or "^M". */
static void neutralise(ad_textout *t, const char *s, size_t n, bool final)
{
    ad_buf *b = &t->clean;
    ad_buf_reset(b);
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    if (t->npend) {
        ad_buf_reset(&t->work);
        ad_buf_append(&t->work, t->pend, t->npend);
        if (n)
            ad_buf_append(&t->work, s, n);
        t->npend = 0;
        if (!t->work.data)
            return;
        p = (const unsigned char *)t->work.data;
        end = p + t->work.len;
    }
    const unsigned char *run = p;
    while (p < end) {
        unsigned char c = *p;
        if ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t') {
            p++;
            continue;
        }
        ad_buf_append(b, run, (size_t)(p - run));
        if (c == '\r') {
            if (p + 1 == end && !final) {
                t->pend[0] = c;
                t->npend = 1;
                p++;
            } else if (p + 1 < end && p[1] == '\n') {
                ad_buf_append(b, "\r\n", 2);
                p += 2;
            } else {
                put_caret(b, c); /* a lone CR would let text overwrite its line */
                p++;
            }
        } else if (c < 0x80) {
            put_caret(b, c);
            p++;
        } else {
            size_t len;
            bool ok = ad_utf8_seq(p, (size_t)(end - p), &len);
            if (ok && !(c == 0xc2 && p[1] < 0xa0)) {
                ad_buf_append(b, p, len);
            } else if (!ok && !final && p + len == end && c >= 0xc2 && c <= 0xf4) {
                memcpy(t->pend, p, len); /* the rest comes with the next write */
                t->npend = len;
            } else {
                ad_buf_puts(b, "\xef\xbf\xbd"); /* C1 control, invalid UTF-8 */
            }
            p += len;
        }
        run = p;
    }
    ad_buf_append(b, run, (size_t)(p - run));
}

/* Moves the counted cursor over text written to the terminal. */
static void track(ad_textout *t, const unsigned char *p, size_t n)
{
    unsigned w = t->width;
    if (!w)
        return;
    locale_t old = (locale_t)0;
    bool swapped = false;
    const unsigned char *end = p + n;
    while (p < end) {
        unsigned char c = *p;
        if (c == '\n') {
            t->lines++;
            t->col = 0;
            p++;
            continue;
        }
        if (c == '\r') {
            t->col = 0;
            p++;
            continue;
        }
        if (c == '\t') {
            if (t->col + 1 < w) {
                unsigned next = (t->col / 8 + 1) * 8;
                t->col = next < w - 1 ? next : w - 1;
            }
            p++;
            continue;
        }
        unsigned cw = 1;
        size_t len = 1;
        if (c >= 0x80) {
            /* t->clean is valid UTF-8: decode by the lead byte. */
            unsigned cp;
            if (c < 0xe0) {
                len = 2;
                cp = c & 0x1f;
            } else if (c < 0xf0) {
                len = 3;
                cp = c & 0x0f;
            } else {
                len = 4;
                cp = c & 0x07;
            }
            if (len > (size_t)(end - p))
                len = (size_t)(end - p);
            for (size_t i = 1; i < len; i++)
                cp = (cp << 6) | (p[i] & 0x3f);
            if (!t->loc_tried) {
                t->loc_tried = true;
                t->loc = utf8_locale();
            }
            if (t->loc && !swapped) {
                old = uselocale(t->loc);
                swapped = true;
            }
            int cwi = t->loc ? wcwidth((wchar_t)cp) : 1;
            cw = cwi < 0 ? 1 : (unsigned)cwi;
        }
        if (cw > 0) {
            if (t->col + cw > w) {
                t->lines++;
                t->col = 0;
            }
            t->col += cw;
        }
        p += len;
    }
    if (swapped)
        uselocale(old);
}

/* ---- the step ---------------------------------------------------------------- */

static void write_tty(ad_textout *t, const char *s, size_t n, bool final)
{
    neutralise(t, s, n, final);
    if (t->clean.len) {
        if (t->may_repeat)
            track(t, (const unsigned char *)t->clean.data, t->clean.len);
        fwrite(t->clean.data, 1, t->clean.len, t->out);
    }
    fflush(t->out);
}

void ad_textout_commit(ad_textout *t)
{
    if (!t)
        return;
    if (t->kind == AD_TEXTOUT_TTY && t->npend)
        write_tty(t, NULL, 0, true);
    bool flush = t->may_repeat;
    if (t->held.len) {
        fwrite(t->held.data, 1, t->held.len, t->out);
        flush = true;
    }
    if (t->held.cap > KEEP_CAP)
        ad_buf_free(&t->held);
    else
        ad_buf_reset(&t->held);
    if (flush)
        fflush(t->out);
    t->may_repeat = false;
    t->have_start = false;
    t->wrote = false;
}

void ad_textout_begin(ad_textout *t, bool may_repeat)
{
    if (!t)
        return;
    ad_textout_commit(t);
    t->may_repeat = may_repeat;
    t->lines = 0;
    t->col = 0;
    if (!may_repeat)
        return;
    if (t->kind == AD_TEXTOUT_TTY) {
        unsigned rows;
        screen_size(t, &t->width, &rows);
    } else if (t->kind == AD_TEXTOUT_FILE) {
        fflush(t->out);
        int fl = fcntl(t->fd, F_GETFL);
        struct stat st;
        off_t pos = -1;
        if (fl != -1 && (fl & O_APPEND)) {
            if (fstat(t->fd, &st) == 0)
                pos = st.st_size;
        } else if (fl != -1) {
            pos = lseek(t->fd, 0, SEEK_CUR);
        }
        if (pos >= 0) {
            t->start = pos;
            t->have_start = true;
        }
    }
}

void ad_textout_write(ad_textout *t, const char *s, size_t n)
{
    if (n == 0)
        return;
    t->wrote = true;
    t->last_nl = s[n - 1] == '\n';
    if (t->kind == AD_TEXTOUT_TTY) {
        write_tty(t, s, n, false);
        return;
    }
    if (t->may_repeat && !t->have_start && ad_buf_append(&t->held, s, n) == AD_OK)
        return;
    fwrite(s, 1, n, t->out);
}

/* The step's text stays: the output goes on from a fresh line. */
static bool keep(ad_textout *t, bool at_bol)
{
    if (!at_bol)
        fputc('\n', t->out);
    fflush(t->out);
    return false;
}

bool ad_textout_retract(ad_textout *t)
{
    if (!t || !t->wrote)
        return true;
    bool gone = true;
    t->npend = 0; /* part of the step */
    switch (t->kind) {
    case AD_TEXTOUT_TTY: {
        unsigned cols, rows;
        screen_size(t, &cols, &rows);
        /* The step's first row must still be on the screen. */
        if (t->may_repeat && t->width && rows && t->lines + 2 <= rows) {
            if (t->lines)
                fprintf(t->out, "\r\033[%zuA\033[J", t->lines);
            else
                fputs("\r\033[J", t->out);
            fflush(t->out);
        } else {
            gone = keep(t, t->col == 0);
        }
        break;
    }
    case AD_TEXTOUT_FILE:
        if (t->may_repeat && t->have_start) {
            fflush(t->out);
            if (ftruncate(t->fd, t->start) == 0 && fseeko(t->out, t->start, SEEK_SET) == 0)
                break;
            gone = keep(t, t->last_nl);
            break;
        }
        /* Held, or written as it came: as a stream. */
        /* fall through */
    case AD_TEXTOUT_STREAM:
        if (t->may_repeat)
            ad_buf_reset(&t->held);
        else
            gone = keep(t, t->last_nl);
        break;
    }
    t->wrote = false;
    t->lines = 0;
    t->col = 0;
    return gone;
}

void ad_textout_free(ad_textout *t)
{
    if (!t)
        return;
    ad_textout_commit(t);
    ad_buf_free(&t->held);
    ad_buf_free(&t->clean);
    ad_buf_free(&t->work);
    if (t->loc)
        freelocale(t->loc);
    free(t);
}
