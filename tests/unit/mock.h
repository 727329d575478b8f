/*
 * mock.h -- the mock provider (tests/mock/server.py) as a child process of
 * a unit test.
 *
 *   mock_proc m;
 *   if (mock_start(&m, "{\"responses\": [...]}") == 0) {
 *       ... http://127.0.0.1:m.port/v1 ...; mock_log(&m) reads the requests
 *       mock_stop(&m);
 *   }
 *
 * The script goes into a fresh temporary folder, with the request log
 * (--log: one JSON line per request) beside it. The server stops when its
 * stdin closes (mock_stop), which also removes the folder.
 */
#ifndef AD_TEST_MOCK_H
#define AD_TEST_MOCK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct mock_proc {
    pid_t pid;
    int port;
    int in; /* the server's stdin: closing it stops the server */
    char dir[64];
    char script[128];
    char log[128];
} mock_proc;

/* Returns 0 with m filled in, -1 when the server did not start. */
static inline int mock_start(mock_proc *m, const char *script_json)
{
    memset(m, 0, sizeof *m);
    m->in = -1;
    snprintf(m->dir, sizeof m->dir, "/tmp/agentd-unit-XXXXXX");
    if (!mkdtemp(m->dir))
        return -1;
    snprintf(m->script, sizeof m->script, "%s/script.json", m->dir);
    snprintf(m->log, sizeof m->log, "%s/requests.jsonl", m->dir);
    FILE *f = fopen(m->script, "w");
    if (!f)
        return -1;
    fputs(script_json, f);
    fclose(f);
    const char *src = getenv("AGENTD_SRC") ? getenv("AGENTD_SRC") : ".";
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0)
        return -1;
    if (pipe(from_child) != 0) {
        close(to_child[0]);
        close(to_child[1]);
        return -1;
    }
    m->pid = fork();
    if (m->pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[1]);
        close(from_child[0]);
        char server[1024];
        snprintf(server, sizeof server, "%s/tests/mock/server.py", src);
        execlp("python3", "python3", server, "--script", m->script, "--log", m->log,
               "--exit-on-stdin-eof", (char *)NULL);
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    m->in = to_child[1];
    FILE *out = fdopen(from_child[0], "r");
    char line[64] = "";
    if (!out || !fgets(line, sizeof line, out) || sscanf(line, "PORT %d", &m->port) != 1)
        m->port = 0;
    if (out)
        fclose(out);
    else
        close(from_child[0]);
    return m->pid > 0 && m->port > 0 ? 0 : -1;
}

/* The request log so far (one JSON object per line); caller frees. */
static inline char *mock_log(const mock_proc *m)
{
    FILE *f = fopen(m->log, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    size_t n;
    while (s && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *p = realloc(s, cap * 2);
            if (!p) {
                free(s);
                s = NULL;
                break;
            }
            s = p;
            cap *= 2;
        }
    }
    fclose(f);
    if (s)
        s[len] = '\0';
    return s;
}

static inline void mock_stop(mock_proc *m)
{
    if (m->in >= 0)
        close(m->in);
    m->in = -1;
    if (m->pid > 0) {
        int st;
        waitpid(m->pid, &st, 0);
    }
    m->pid = 0;
    unlink(m->script);
    unlink(m->log);
    rmdir(m->dir);
}

#endif /* AD_TEST_MOCK_H */
