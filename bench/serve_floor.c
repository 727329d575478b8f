/*
 * serve_floor.c -- the client of bench/serve_floor.py: the conversations of
 * the shared benchmark's `concurrent` scenario with libcurl multi and json-c
 * alone, the least any server built on those libraries pays for them.
 *
 *   serve_floor URL REQDIR N
 *
 * N conversations at once, one process. Conversation k posts the request
 * bodies REQDIR/00.json .. 05.json to URL in turn, the marker "c000000" in
 * each replaced by c%06d of k (the same length). One libcurl multi handle,
 * driven by epoll through libcurl's socket API; one easy handle per
 * conversation, reused for its steps. Each response is split into lines;
 * every SSE "data:" line but [DONE] is parsed with json-c and its
 * choices[0].delta.content, when a string, kept as the step's text. A step
 * ends when its transfer completes with HTTP 200, and the next one starts at
 * once. The last step's text must name the conversation's marker.
 *
 * Nothing else: no history, no tools, no events out. What a server adds on
 * top of these conversations is its own cost.
 *
 * stdout, one line: the counts, the user and system CPU time of this
 * process (getrusage, from its start to its end, start-up included), its
 * peak resident set (VmHWM) and the wall time from main to the end. Not
 * ru_maxrss: Linux carries that over exec, so a child that a large
 * program started (Python's subprocess, through vfork) would report its
 * parent's peak. Exit 0 when all N
 * conversations finished their 6 steps, 1 when any failed (each failure on
 * stderr), 2 on a usage error or an unreadable REQDIR.
 */
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>

#define STEPS 6
#define MARKER "c000000"
#define MARKER_LEN (sizeof MARKER - 1)
#define MAX_N 999999
#define MAX_BODY (16 << 20)
#define MAX_FAILURES_SHOWN 10

typedef struct {
    char *text;
    size_t len, cap;
} buf;

typedef struct {
    CURL *easy;
    int step;
    char marker[MARKER_LEN + 1];
    char *body;   /* the running step's request, kept until it completes */
    buf line;     /* a line cut off at the end of a read */
    buf answer;   /* the running step's delta content */
} conv;

static struct {
    char *body[STEPS];
    size_t body_len[STEPS], marker_at[STEPS];
    CURLM *multi;
    int epfd;
    long long deadline_ms; /* libcurl's timer, -1 when none */
    json_tokener *tok;
    long finished, failed, requests, events;
    long long t0_ms;     /* the start of all N */
    long long *took_ms;  /* per finished conversation, from t0_ms to its answer */
    bool out_of_memory;
} g = {.deadline_ms = -1};

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static bool buf_add(buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *t = realloc(b->text, cap);
        if (!t)
            return false;
        b->text = t;
        b->cap = cap;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    return true;
}

static void buf_free(buf *b)
{
    free(b->text);
    *b = (buf){0};
}

static void fail(conv *c, const char *why)
{
    if (g.failed < MAX_FAILURES_SHOWN)
        fprintf(stderr, "serve_floor: conversation %s step %d: %s\n", c->marker, c->step, why);
    g.failed++;
    c->step = -1; /* no further step */
}

/* One SSE line, without its line end. Returns false on a chunk that is not
 * JSON. */
static bool on_line(conv *c, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (n < 5 || memcmp(s, "data:", 5) != 0)
        return true;
    s += 5;
    n -= 5;
    if (n > 0 && *s == ' ') {
        s++;
        n--;
    }
    if (n == 6 && memcmp(s, "[DONE]", 6) == 0)
        return true;
    if (n > INT_MAX)
        return false;
    json_tokener_reset(g.tok);
    json_object *o = json_tokener_parse_ex(g.tok, s, (int)n);
    if (!o)
        return false;
    g.events++;
    json_object *choices, *delta, *content;
    json_object *c0 = json_object_object_get_ex(o, "choices", &choices)
                          ? json_object_array_get_idx(choices, 0)
                          : NULL;
    if (c0 && json_object_object_get_ex(c0, "delta", &delta) &&
        json_object_object_get_ex(delta, "content", &content) &&
        json_object_is_type(content, json_type_string) &&
        !buf_add(&c->answer, json_object_get_string(content),
                 (size_t)json_object_get_string_len(content)))
        g.out_of_memory = true;
    json_object_put(o);
    return true;
}

/* Whole lines are parsed where libcurl put them; only a line cut off at the
 * end of a read is copied, to be completed by the next. */
static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    conv *c = ud;
    size_t n = size * nmemb;
    const char *p = data, *end = data + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            if (!buf_add(&c->line, p, (size_t)(end - p))) {
                g.out_of_memory = true;
                return 0;
            }
            break;
        }
        bool ok;
        if (c->line.len) {
            if (!buf_add(&c->line, p, (size_t)(nl - p))) {
                g.out_of_memory = true;
                return 0;
            }
            ok = on_line(c, c->line.text, c->line.len);
            c->line.len = 0;
        } else {
            ok = on_line(c, p, (size_t)(nl - p));
        }
        if (!ok) {
            fail(c, "an SSE data line that is not JSON");
            return 0; /* the transfer ends with CURLE_WRITE_ERROR */
        }
        p = nl + 1;
    }
    return n;
}

static bool start_step(conv *c)
{
    int k = c->step;
    char *body = realloc(c->body, g.body_len[k]);
    if (!body)
        return false;
    c->body = body;
    memcpy(body, g.body[k], g.body_len[k]);
    memcpy(body + g.marker_at[k], c->marker, MARKER_LEN);
    c->line.len = 0;
    c->answer.len = 0;
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)g.body_len[k]);
    if (curl_multi_add_handle(g.multi, c->easy) != CURLM_OK)
        return false;
    g.requests++;
    return true;
}

static void on_done(conv *c, CURLcode result)
{
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(g.multi, c->easy);
    if (c->step < 0)
        return; /* failed in on_write */
    if (result != CURLE_OK) {
        fail(c, curl_easy_strerror(result));
        return;
    }
    if (status != 200) {
        char why[32];
        snprintf(why, sizeof why, "HTTP status %ld", status);
        fail(c, why);
        return;
    }
    if (c->line.len) {
        fail(c, "the response ends inside a line");
        return;
    }
    if (c->step == STEPS - 1) {
        bool named = false;
        for (size_t i = 0; i + MARKER_LEN <= c->answer.len && !named; i++)
            named = memcmp(c->answer.text + i, c->marker, MARKER_LEN) == 0;
        if (!named) {
            fail(c, "the final answer does not name the conversation's marker");
            return;
        }
        g.took_ms[g.finished++] = now_ms() - g.t0_ms;
        buf_free(&c->line);
        buf_free(&c->answer);
        free(c->body);
        c->body = NULL;
        c->step = STEPS;
        return;
    }
    c->step++;
    if (!start_step(c))
        fail(c, "out of memory or the multi handle refused the transfer");
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud, void *sockp)
{
    (void)easy;
    (void)ud;
    if (what == CURL_POLL_REMOVE) {
        if (sockp)
            epoll_ctl(g.epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.fd = s};
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    int op = sockp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(g.epfd, op, s, &ev) != 0) {
        fprintf(stderr, "serve_floor: epoll_ctl of socket %d: %s\n", (int)s, strerror(errno));
        return -1;
    }
    if (!sockp)
        curl_multi_assign(g.multi, s, &g); /* any non-NULL: registered */
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *ud)
{
    (void)multi;
    (void)ud;
    g.deadline_ms = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    return 0;
}

static void drain_done(void)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(g.multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *c;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &c);
        on_done((conv *)c, m->data.result);
    }
}

/* REQDIR/NN.json into g.body[k], with the offset of its marker. */
static bool load_bodies(const char *dir)
{
    for (int k = 0; k < STEPS; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%02d.json", dir, k);
        FILE *f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "serve_floor: %s: %s\n", path, strerror(errno));
            return false;
        }
        char *s = malloc(MAX_BODY + 1);
        size_t n = s ? fread(s, 1, MAX_BODY + 1, f) : 0;
        bool err = ferror(f);
        fclose(f);
        if (!s || err || n == 0 || n > MAX_BODY) {
            fprintf(stderr, "serve_floor: %s: %s\n", path,
                    !s ? "out of memory" : err ? "read error" : n == 0 ? "empty" : "larger than 16 MiB");
            free(s);
            return false;
        }
        s[n] = '\0';
        const char *m = strstr(s, MARKER);
        if (!m) {
            fprintf(stderr, "serve_floor: %s: no marker \"%s\" in the body\n", path, MARKER);
            free(s);
            return false;
        }
        g.body[k] = s;
        g.body_len[k] = n;
        g.marker_at[k] = (size_t)(m - s);
    }
    return true;
}

/* VmHWM of /proc/self/status in KiB, -1 if unreadable. */
static long peak_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static bool parse_n(const char *s, long *n)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > MAX_N)
        return false;
    *n = v;
    return true;
}

int main(int argc, char **argv)
{
    long long t0 = now_ms();
    g.t0_ms = t0;
    long n;
    if (argc != 4 || !parse_n(argv[3], &n)) {
        fprintf(stderr, "usage: serve_floor URL REQDIR N   (N from 1 to %d)\n", MAX_N);
        return 2;
    }
    if (!load_bodies(argv[2]))
        return 2;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "serve_floor: curl_global_init failed\n");
        return 1;
    }
    g.multi = curl_multi_init();
    g.tok = json_tokener_new();
    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    conv *cs = calloc((size_t)n, sizeof *cs);
    g.took_ms = calloc((size_t)n, sizeof *g.took_ms);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (headers)
        headers = curl_slist_append(headers, "Authorization: Bearer sk-mock");
    if (!g.multi || !g.tok || g.epfd < 0 || !cs || !g.took_ms || !headers) {
        fprintf(stderr, "serve_floor: out of memory or descriptors at start-up\n");
        return 1;
    }
    curl_multi_setopt(g.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(g.multi, CURLMOPT_TIMERFUNCTION, on_timer);
    /* One connection per conversation, kept between its steps. */
    curl_multi_setopt(g.multi, CURLMOPT_MAXCONNECTS, n);

    for (long k = 0; k < n; k++) {
        conv *c = &cs[k];
        snprintf(c->marker, sizeof c->marker, "c%06ld", k);
        c->easy = curl_easy_init();
        if (!c->easy) {
            fail(c, "curl_easy_init failed");
            continue;
        }
        curl_easy_setopt(c->easy, CURLOPT_URL, argv[1]);
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->easy, CURLOPT_PROXY, ""); /* the mock is local, whatever the environment says */
        if (!start_step(c))
            fail(c, "out of memory or the multi handle refused the transfer");
    }

    int running;
    curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done();
    struct epoll_event evs[256];
    while (g.finished + g.failed < n && !g.out_of_memory) {
        int wait = -1;
        if (g.deadline_ms >= 0) {
            long long d = g.deadline_ms - now_ms();
            wait = d < 0 ? 0 : d > INT_MAX ? INT_MAX : (int)d;
        }
        int ready = epoll_wait(g.epfd, evs, (int)(sizeof evs / sizeof evs[0]), wait);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "serve_floor: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (int i = 0; i < ready; i++) {
            int flags = 0;
            if (evs[i].events & (EPOLLIN | EPOLLHUP))
                flags |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (evs[i].events & EPOLLERR)
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(g.multi, evs[i].data.fd, flags, &running);
        }
        if (g.deadline_ms >= 0 && now_ms() >= g.deadline_ms) {
            g.deadline_ms = -1;
            curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain_done();
    }
    if (g.out_of_memory) {
        fprintf(stderr, "serve_floor: out of memory\n");
        return 1;
    }

    for (long k = 0; k < n; k++) {
        curl_easy_cleanup(cs[k].easy);
        buf_free(&cs[k].line);
        buf_free(&cs[k].answer);
        free(cs[k].body);
    }
    free(cs);
    curl_slist_free_all(headers);
    curl_multi_cleanup(g.multi);
    curl_global_cleanup();
    json_tokener_free(g.tok);
    for (int k = 0; k < STEPS; k++)
        free(g.body[k]);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    /* Conversation latency from the start of all N, as the shared bench
     * reports it for a server. */
    qsort(g.took_ms, (size_t)g.finished, sizeof *g.took_ms, cmp_ll);
    double p50 = g.finished ? (double)g.took_ms[(g.finished - 1) / 2] / 1000 : 0;
    double p99 = g.finished ? (double)g.took_ms[(g.finished * 99 + 99) / 100 - 1] / 1000 : 0;
    printf("serve_floor n=%ld finished=%ld failed=%ld requests=%ld events=%ld user_s=%.3f sys_s=%.3f "
           "peak_kib=%ld wall_s=%.3f p50_s=%.3f p99_s=%.3f\n",
           n, g.finished, g.failed, g.requests, g.events, user, sys, peak_kib(),
           (double)(now_ms() - t0) / 1000, p50, p99);
    free(g.took_ms);
    if (g.failed > MAX_FAILURES_SHOWN)
        fprintf(stderr, "serve_floor: %ld conversations failed (the first %d shown)\n", g.failed,
                MAX_FAILURES_SHOWN);
    return g.failed ? 1 : 0;
}
