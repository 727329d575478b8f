/*
 * ttft_client.c -- the load client of bench/serve_ttft.py: N streaming
 * requests at once, each on a connection of its own, and for each the time
 * from its request written to its first text.
 *
 *   ttft_client PORT PATH N FIRST MODE TEMPLATE
 *
 * Request k (0 <= k < N) is POST PATH with the body TEMPLATE (a file) in
 * which every "cXXXXXX" becomes the marker c%06d of FIRST + k. MODE says
 * what the first text is:
 *   direct  a Chat Completions stream (the mock itself): the first chunk
 *           with non-empty delta content;
 *   serve   a Responses API stream (agentd serve): the first
 *           response.output_text.delta event; the stream must also hold
 *           response.completed and none of response.failed,
 *           response.incomplete, error.
 * Every response is read to its end (the last chunk of a chunked body) and
 * must be HTTP 200. Prints one line per request, in order: "ok MICROSECONDS"
 * or "err WHY". Exit 0 when every request printed ok, 1 otherwise, 2 on a
 * usage error.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define TAIL 64
#define PLACEHOLDER "cXXXXXX"

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    char *req;
    size_t req_len;
    uint64_t t0, ttft;
    bool got_any, ok_status, text, completed, failed, done;
    char tail[TAIL];
    size_t ntail;
    char err[160];
} conn;

static int g_direct;
static size_t g_left;
static char g_scratch[TAIL + 65536];
static char g_rbuf[65536];

static void finish(conn *c, const char *why)
{
    if (c->done)
        return;
    c->done = true;
    if (why && !c->err[0])
        snprintf(c->err, sizeof c->err, "%s", why);
    uv_close((uv_handle_t *)&c->tcp, NULL);
    g_left--;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    *b = uv_buf_init(g_rbuf, sizeof g_rbuf);
}

static bool has(const char *s, size_t n, const char *pat)
{
    return memmem(s, n, pat, strlen(pat)) != NULL;
}

/* Non-empty delta content: "content":" followed by anything but a quote. */
static bool direct_text(const char *s, size_t n)
{
    static const char pat[] = "\"content\":\"";
    const char *p = s, *end = s + n;
    while ((p = memmem(p, (size_t)(end - p), pat, sizeof pat - 1)) != NULL) {
        p += sizeof pat - 1;
        if (p < end && *p != '"')
            return true;
    }
    return false;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    conn *c = st->data;
    if (nread < 0) {
        finish(c, nread == UV_EOF ? "the connection closed before the end of the response"
                                  : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    uint64_t now = uv_hrtime();
    if (!c->got_any) {
        c->got_any = true;
        c->ok_status = nread >= 12 && memcmp(b->base, "HTTP/1.1 200", 12) == 0;
        if (!c->ok_status) {
            char why[120];
            snprintf(why, sizeof why, "answer: %.*s", (int)(nread < 60 ? nread : 60), b->base);
            for (char *q = why; *q; q++)
                if (*q == '\r' || *q == '\n')
                    *q = ' ';
            finish(c, why);
            return;
        }
    }
    size_t n = c->ntail;
    memcpy(g_scratch, c->tail, n);
    memcpy(g_scratch + n, b->base, (size_t)nread);
    n += (size_t)nread;
    if (!c->text && (g_direct ? direct_text(g_scratch, n)
                              : has(g_scratch, n, "event: response.output_text.delta"))) {
        c->text = true;
        c->ttft = now - c->t0;
    }
    if (!g_direct) {
        if (has(g_scratch, n, "event: response.completed"))
            c->completed = true;
        if (has(g_scratch, n, "event: response.failed") ||
            has(g_scratch, n, "event: response.incomplete") || has(g_scratch, n, "event: error"))
            c->failed = true;
    }
    c->ntail = n < TAIL ? n : TAIL;
    memcpy(c->tail, g_scratch + n - c->ntail, c->ntail);
    static const char last[] = "\r\n0\r\n\r\n";
    if (n >= sizeof last - 1 && memcmp(g_scratch + n - (sizeof last - 1), last, sizeof last - 1) == 0) {
        if (!c->text)
            finish(c, "no text in the response");
        else if (!g_direct && c->failed)
            finish(c, "a failure event in the stream");
        else if (!g_direct && !c->completed)
            finish(c, "no response.completed in the stream");
        else
            finish(c, NULL);
    }
}

static void on_written(uv_write_t *w, int status)
{
    conn *c = w->data;
    if (status < 0)
        finish(c, uv_strerror(status));
}

static void on_connect(uv_connect_t *r, int status)
{
    conn *c = r->data;
    if (status < 0) {
        finish(c, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_buf_t b = uv_buf_init(c->req, (unsigned)c->req_len);
    c->write.data = c;
    c->t0 = uv_hrtime();
    int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0)
        finish(c, uv_strerror(rc));
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20;
    char *s = malloc(cap);
    *len = s ? fread(s, 1, cap, f) : 0;
    fclose(f);
    if (s && (*len == 0 || *len == cap)) { /* empty, or too large for a template */
        free(s);
        return NULL;
    }
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 7 || (strcmp(argv[5], "direct") != 0 && strcmp(argv[5], "serve") != 0)) {
        fprintf(stderr, "usage: ttft_client PORT PATH N FIRST direct|serve TEMPLATE\n");
        return 2;
    }
    int port = atoi(argv[1]);
    long n = atol(argv[3]), first = atol(argv[4]);
    g_direct = strcmp(argv[5], "direct") == 0;
    size_t tlen;
    char *tmpl = read_file(argv[6], &tlen);
    if (port <= 0 || n <= 0 || first < 0 || first + n > 1000000 || !tmpl) {
        fprintf(stderr, "ttft_client: bad PORT, N, FIRST or TEMPLATE (%s)\n", argv[6]);
        return 2;
    }
    conn *cs = calloc((size_t)n, sizeof *cs);
    if (!cs)
        return 1;
    uv_loop_t *loop = uv_default_loop();
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    for (long k = 0; k < n; k++) {
        conn *c = &cs[k];
        char *body = malloc(tlen + 1);
        memcpy(body, tmpl, tlen);
        body[tlen] = '\0';
        char marker[16];
        snprintf(marker, sizeof marker, "c%06ld", first + k);
        for (char *p = body; (p = strstr(p, PLACEHOLDER)) != NULL; p += strlen(PLACEHOLDER))
            memcpy(p, marker, strlen(PLACEHOLDER));
        size_t cap = tlen + 512;
        c->req = malloc(cap);
        int h = snprintf(c->req, cap,
                         "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                         "Accept: text/event-stream\r\nAuthorization: Bearer sk-mock\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         argv[2], port, tlen);
        memcpy(c->req + h, body, tlen);
        c->req_len = (size_t)h + tlen;
        free(body);
        uv_tcp_init(loop, &c->tcp);
        c->tcp.data = c;
        c->connect.data = c;
        g_left++;
        int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr, on_connect);
        if (rc != 0)
            finish(c, uv_strerror(rc));
    }
    uv_run(loop, UV_RUN_DEFAULT);
    int bad = 0;
    for (long k = 0; k < n; k++) {
        conn *c = &cs[k];
        if (c->err[0]) {
            printf("err %s\n", c->err);
            bad++;
        } else {
            printf("ok %.1f\n", (double)c->ttft / 1e3);
        }
        free(c->req);
    }
    free(cs);
    free(tmpl);
    return bad ? 1 : 0;
}
