/*
 * test_textout.c -- the answer writer: a step's text taken back per kind of
 * output, and text neutralised for a terminal (also when a sequence is split
 * across writes). Everything is written to temporary files; the terminal
 * kind is forced onto one (with a fixed screen size) so that the bytes a
 * terminal would receive can be read back.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../harness.h"
#include "base/buf.h"
#include "sinks/textout.h"

/* Everything written to f so far (f stays usable). */
static char *contents(FILE *f)
{
    fflush(f);
    ad_buf b = AD_BUF_INIT;
    char tmp[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fileno(f), tmp, sizeof tmp, off)) > 0) {
        ad_buf_append(&b, tmp, (size_t)n);
        off += n;
    }
    ad_buf_putc(&b, '\0');
    return ad_buf_steal(&b);
}

static void put(ad_textout *t, const char *s)
{
    ad_textout_write(t, s, strlen(s));
}

TEST(file_is_truncated_back_to_the_step)
{
    FILE *f = tmpfile();
    ad_textout *t = ad_textout_new(f);
    CHECK_EQ(ad_textout_get_kind(t), AD_TEXTOUT_FILE);
    ad_textout_begin(t, true);
    put(t, "first step\n");
    ad_textout_commit(t);
    ad_textout_begin(t, true);
    put(t, "The answer is forty");
    CHECK(ad_textout_retract(t));
    put(t, "The answer is 42.");
    ad_textout_commit(t);
    put(t, "\n");
    char *s = contents(f);
    CHECK_STREQ(s, "first step\nThe answer is 42.\n");
    free(s);
    ad_textout_free(t);
    fclose(f);
}

TEST(file_opened_for_appending_keeps_earlier_content)
{
    char path[] = "/tmp/agentd-textout-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "earlier\n", 8), 8);
    close(fd);
    FILE *f = fopen(path, "a");
    ad_textout *t = ad_textout_new(f);
    ad_textout_begin(t, true);
    put(t, "cut");
    CHECK(ad_textout_retract(t));
    ad_textout_begin(t, true);
    put(t, "whole\n");
    ad_textout_free(t);
    fclose(f);
    f = fopen(path, "r");
    char *s = contents(f);
    CHECK_STREQ(s, "earlier\nwhole\n");
    free(s);
    fclose(f);
    unlink(path);
}

TEST(stream_holds_a_step_that_may_repeat)
{
    FILE *f = tmpfile();
    ad_textout *t = ad_textout_new_kind(f, AD_TEXTOUT_STREAM);
    ad_textout_begin(t, true);
    put(t, "partial");
    char *s = contents(f);
    CHECK_STREQ(s, ""); /* held */
    free(s);
    CHECK(ad_textout_retract(t));
    ad_textout_begin(t, true);
    put(t, "whole");
    ad_textout_commit(t);
    /* A step that cannot repeat streams; taking it back is refused. */
    ad_textout_begin(t, false);
    put(t, " more");
    s = contents(f);
    CHECK_STREQ(s, "whole more");
    free(s);
    CHECK(!ad_textout_retract(t));
    s = contents(f);
    CHECK_STREQ(s, "whole more\n"); /* the line is ended */
    free(s);
    /* free writes what is still held */
    ad_textout_begin(t, true);
    put(t, "last");
    ad_textout_free(t);
    s = contents(f);
    CHECK_STREQ(s, "whole more\nlast");
    free(s);
    fclose(f);
}

static ad_textout *tty(FILE **f, unsigned cols, unsigned rows)
{
    *f = tmpfile();
    ad_textout *t = ad_textout_new_kind(*f, AD_TEXTOUT_TTY);
    ad_textout_set_screen(t, cols, rows);
    return t;
}

/* The bytes the terminal gets for text written then taken back. */
static char *erase_of(const char *text, unsigned cols, unsigned rows, bool *gone)
{
    FILE *f;
    ad_textout *t = tty(&f, cols, rows);
    ad_textout_begin(t, true);
    put(t, text);
    *gone = ad_textout_retract(t);
    char *s = contents(f);
    ad_textout_free(t);
    fclose(f);
    size_t n = strlen(text);
    memmove(s, s + n, strlen(s + n) + 1); /* what came after the text */
    return s;
}

TEST(terminal_erase_counts_rows)
{
    bool gone;
    char *s = erase_of("short", 10, 5, &gone);
    CHECK(gone);
    CHECK_STREQ(s, "\r\033[J");
    free(s);
    s = erase_of("hello world!", 10, 5, &gone); /* wraps once */
    CHECK_STREQ(s, "\r\033[1A\033[J");
    free(s);
    s = erase_of("0123456789", 10, 5, &gone); /* fills the row: pending wrap, no new row */
    CHECK_STREQ(s, "\r\033[J");
    free(s);
    s = erase_of("0123456789\n", 10, 5, &gone);
    CHECK_STREQ(s, "\r\033[1A\033[J");
    free(s);
    s = erase_of("a\nb\nc", 10, 5, &gone);
    CHECK_STREQ(s, "\r\033[2A\033[J");
    free(s);
    s = erase_of("\t\t\txy", 10, 5, &gone); /* tabs stop at the last column */
    CHECK_STREQ(s, "\r\033[1A\033[J");
    free(s);
    /* Wide characters take two columns: five fill a row of ten. */
    s = erase_of("\xe7\xad\x94\xe7\xad\x94\xe7\xad\x94\xe7\xad\x94\xe7\xad\x94\xe7\xad\x94", 10, 5,
                 &gone);
    CHECK_STREQ(s, "\r\033[1A\033[J");
    free(s);
    /* A combining accent takes none. */
    s = erase_of("abcdefghie\xcc\x81", 10, 5, &gone);
    CHECK_STREQ(s, "\r\033[J");
    free(s);
}

TEST(terminal_text_taller_than_the_screen_stays_on_its_own_line)
{
    bool gone;
    char *s = erase_of("1\n2\n3\n4\nfive", 10, 5, &gone);
    CHECK(!gone);
    CHECK_STREQ(s, "\n");
    free(s);
    s = erase_of("1\n2\n3\n4\n", 10, 5, &gone);
    CHECK(!gone);
    CHECK_STREQ(s, "");
    free(s);
}

static char *shown(const char *const *writes, size_t n)
{
    FILE *f;
    ad_textout *t = tty(&f, 80, 24);
    ad_textout_begin(t, false);
    for (size_t i = 0; i < n; i++)
        put(t, writes[i]);
    ad_textout_commit(t);
    char *s = contents(f);
    ad_textout_free(t);
    fclose(f);
    return s;
}

#define SHOWN(...)                                                                                 \
    shown((const char *const[]){__VA_ARGS__},                                                      \
          sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

TEST(terminal_neutralises_controls)
{
    char *s = SHOWN("a\033]52;c;aGk=\007b\033[2Jc\x7f", "tab\tnl\n");
    CHECK_STREQ(s, "a^[]52;c;aGk=^Gb^[[2Jc^?tab\tnl\n");
    free(s);
    /* C1 controls, also split across writes; invalid UTF-8. */
    s = SHOWN("x\xc2\x9by", "p\xc2", "\x85q", "\xff\xc3(");
    CHECK_STREQ(s, "x\xef\xbf\xbdyp\xef\xbf\xbdq\xef\xbf\xbd\xef\xbf\xbd(");
    free(s);
    /* UTF-8 split across writes stays whole: é, 答, 😀. */
    s = SHOWN("caf\xc3", "\xa9 \xe7", "\xad", "\x94 \xf0\x9f", "\x98\x80");
    CHECK_STREQ(s, "caf\xc3\xa9 \xe7\xad\x94 \xf0\x9f\x98\x80");
    free(s);
    /* CRLF is kept, also split; a lone CR is shown. */
    s = SHOWN("a\r\nb\r", "\nc\rd\r", "e");
    CHECK_STREQ(s, "a\r\nb\r\nc^Md^Me");
    free(s);
    /* What is pending at the end is shown when the step is committed. */
    s = SHOWN("end\xe7\xad", "");
    CHECK_STREQ(s, "end\xef\xbf\xbd");
    free(s);
    s = SHOWN("end\r");
    CHECK_STREQ(s, "end^M");
    free(s);
}

TEST(other_outputs_get_the_bytes_as_they_are)
{
    FILE *f = tmpfile();
    ad_textout *t = ad_textout_new(f);
    ad_textout_begin(t, false);
    put(t, "a\033[2J\xc2\x9b\r");
    ad_textout_commit(t);
    char *s = contents(f);
    CHECK_STREQ(s, "a\033[2J\xc2\x9b\r");
    free(s);
    ad_textout_free(t);
    fclose(f);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(file_is_truncated_back_to_the_step);
    RUN(file_opened_for_appending_keeps_earlier_content);
    RUN(stream_holds_a_step_that_may_repeat);
    RUN(terminal_erase_counts_rows);
    RUN(terminal_text_taller_than_the_screen_stays_on_its_own_line);
    RUN(terminal_neutralises_controls);
    RUN(other_outputs_get_the_bytes_as_they_are);
    return harness_report("test_textout");
}
