/*
 * test_repl_check.c -- the REPL's pure parts: where the history file lives.
 * The conversation check /load relies on is ad_conv_check (test_conv.c); the
 * session itself is tested through a pseudo-terminal in
 * tests/integration/test_repl.py.
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "../../harness.h"
#include "cli/repl.h"

TEST(history_path)
{
    char *saved_xdg = getenv("XDG_STATE_HOME") ? ad_strdup(getenv("XDG_STATE_HOME")) : NULL;
    char *saved_home = getenv("HOME") ? ad_strdup(getenv("HOME")) : NULL;
    setenv("XDG_STATE_HOME", "/st", 1);
    setenv("HOME", "/home/u", 1);
    char *p = ad_repl_history_path();
    CHECK_STREQ(p, "/st/agentd/history");
    free(p);
    /* A relative XDG_STATE_HOME is invalid (XDG spec): fall back. */
    setenv("XDG_STATE_HOME", "rel", 1);
    p = ad_repl_history_path();
    CHECK_STREQ(p, "/home/u/.local/state/agentd/history");
    free(p);
    unsetenv("XDG_STATE_HOME");
    unsetenv("HOME");
    CHECK(ad_repl_history_path() == NULL);
    if (saved_xdg)
        setenv("XDG_STATE_HOME", saved_xdg, 1);
    if (saved_home)
        setenv("HOME", saved_home, 1);
    free(saved_xdg);
    free(saved_home);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(history_path);
    return harness_report("test_repl_check");
}
