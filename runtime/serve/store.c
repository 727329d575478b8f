/*
 * store.c -- the serve store (see store.h).
 *
 * The loop thread appends jobs to a list under a mutex and signals the
 * writer; the writer takes the whole list, runs it in one IMMEDIATE
 * transaction and posts how far it got through a uv_async. A transaction
 * that fails is rolled back and its jobs are run again one by one, each in
 * its own, so one bad row does not cost the others.
 */
#include "serve/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/text.h"

enum { J_CONV, J_MSG, J_FORK, J_RESP };

typedef struct job {
    struct job *next;
    int kind;
    uint64_t n;
    double t;
    size_t idx; /* J_MSG: position; J_FORK: messages copied; J_RESP: nmessages */
    char *a;    /* conv id (J_RESP: response id) */
    char *b;    /* J_CONV/J_FORK: profile; J_FORK: (c) the new id; J_RESP: conv id */
    char *c;    /* J_MSG: json; J_FORK: new id; J_RESP: status */
    char *d;    /* J_RESP: json */
    size_t clen;
} job;

typedef struct waiter {
    struct waiter *next;
    uint64_t n;
    void (*fn)(void *ud, bool ok);
    void *ud;
} waiter;

struct ad_serve_store {
    uv_loop_t *loop;
    uv_async_t async;
    uv_prepare_t handoff;   /* hands the jobs of one loop iteration over at once */
    job *lhead, *ltail;     /* queued this iteration (loop thread only) */
    int open_handles;
    sqlite3 *wdb; /* the writer thread's */
    sqlite3_stmt *st[8]; /* its prepared statements (stmt()) */
    sqlite3 *rdb; /* the loop thread's */
    char *path;
    char *secret;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail; /* queued */
    bool stop;
    uint64_t queued; /* the last job number given (loop thread) */
    uint64_t done;   /* the last job run (under mu) */
    uint64_t *failed;     /* numbers of jobs that failed, not yet reported (under mu) */
    size_t nfailed;
    char failure[512];    /* the first failure not reported yet (under mu) */
    waiter *waiters;      /* in order of n (loop thread) */
    bool warned;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *ad_serve_store_default_path(void)
{
    return ad_state_path("serve.db");
}

/* ---- the writer --------------------------------------------------------- */

static int run_sql(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s, size_t len)
{
    return sqlite3_bind_text(st, i, s ? s : "", s ? (int)len : 0, SQLITE_STATIC);
}

enum { Q_CONV, Q_MSG, Q_FORK_COPY, Q_RESP, Q_TOUCH, Q_BEGIN, Q_COMMIT, Q_ROLLBACK, NQ };

static const char *const sql_of[NQ] = {
    "INSERT OR IGNORE INTO conversations (id, profile, created, updated) VALUES (?1, ?2, ?3, ?3)",
    "INSERT OR REPLACE INTO messages (conv, idx, json) VALUES (?1, ?2, ?3)",
    "INSERT OR REPLACE INTO messages (conv, idx, json) SELECT ?2, idx, json FROM messages "
    "WHERE conv = ?1 AND idx < ?3",
    "INSERT OR REPLACE INTO responses (id, conv, nmsg, status, created, json) VALUES (?1, ?2, ?3, "
    "?4, coalesce((SELECT created FROM responses WHERE id = ?1), ?5), ?6)",
    "UPDATE conversations SET updated = ?2 WHERE id = ?1",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
};

/* The writer's statement for query q, reset (prepared once: compiling SQL
 * costs more than running it). NULL on failure. */
static sqlite3_stmt *stmt(ad_serve_store *s, int q)
{
    if (!s->st[q] && sqlite3_prepare_v2(s->wdb, sql_of[q], -1, &s->st[q], NULL) != SQLITE_OK)
        return NULL;
    sqlite3_reset(s->st[q]);
    sqlite3_clear_bindings(s->st[q]);
    return s->st[q];
}

static int step_done(sqlite3_stmt *st)
{
    return st && sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

static int insert_conv(ad_serve_store *s, const char *id, const char *profile, double t)
{
    sqlite3_stmt *st = stmt(s, Q_CONV);
    if (!st)
        return -1;
    bind_text(st, 1, id, strlen(id));
    bind_text(st, 2, profile, profile ? strlen(profile) : 0);
    sqlite3_bind_double(st, 3, t);
    return step_done(st);
}

/* Runs one job; 0 or -1 (the error is in the connection). */
static int run_job(ad_serve_store *s, job *j)
{
    sqlite3_stmt *st;
    int rc = -1;
    switch (j->kind) {
    case J_CONV:
        rc = insert_conv(s, j->a, j->b, j->t);
        break;
    case J_MSG: {
        size_t rl = 0;
        char *red = ad_redact(j->c, j->clen, s->secret, &rl);
        if ((st = stmt(s, Q_MSG)) != NULL) {
            bind_text(st, 1, j->a, strlen(j->a));
            sqlite3_bind_int64(st, 2, (sqlite3_int64)j->idx);
            bind_text(st, 3, red ? red : j->c, red ? rl : j->clen);
            rc = step_done(st);
        }
        free(red);
        break;
    }
    case J_FORK:
        rc = insert_conv(s, j->c, j->b, j->t);
        if (rc == 0 && (st = stmt(s, Q_FORK_COPY)) != NULL) {
            bind_text(st, 1, j->a, strlen(j->a));
            bind_text(st, 2, j->c, strlen(j->c));
            sqlite3_bind_int64(st, 3, (sqlite3_int64)j->idx);
            rc = step_done(st);
        } else {
            rc = -1;
        }
        break;
    case J_RESP: {
        size_t rl = 0;
        char *red = j->d ? ad_redact(j->d, strlen(j->d), s->secret, &rl) : NULL;
        if ((st = stmt(s, Q_RESP)) != NULL) {
            bind_text(st, 1, j->a, strlen(j->a));
            bind_text(st, 2, j->b, strlen(j->b));
            sqlite3_bind_int64(st, 3, (sqlite3_int64)j->idx);
            bind_text(st, 4, j->c, strlen(j->c));
            sqlite3_bind_double(st, 5, j->t);
            if (j->d)
                bind_text(st, 6, red ? red : j->d, red ? rl : strlen(j->d));
            else
                sqlite3_bind_null(st, 6);
            rc = step_done(st);
        }
        free(red);
        /* The conversation's time: its latest response. */
        if (rc == 0 && (st = stmt(s, Q_TOUCH)) != NULL) {
            bind_text(st, 1, j->b, strlen(j->b));
            sqlite3_bind_double(st, 2, j->t);
            rc = step_done(st);
        }
        break;
    }
    default:
        break;
    }
    return rc;
}

static void job_free(job *j)
{
    free(j->a);
    free(j->b);
    free(j->c);
    free(j->d);
    free(j);
}

static void note_failure(ad_serve_store *s, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    uint64_t *f = realloc(s->failed, (s->nfailed + 1) * sizeof *f);
    if (f) {
        s->failed = f;
        s->failed[s->nfailed++] = n;
    }
    if (!s->failure[0])
        snprintf(s->failure, sizeof s->failure, "%s: cannot write: %s", s->path,
                 sqlite3_errmsg(s->wdb));
    pthread_mutex_unlock(&s->mu);
}

static int txn(ad_serve_store *s, int q)
{
    return step_done(stmt(s, q));
}

static void run_batch(ad_serve_store *s, job *list)
{
    uint64_t last = 0;
    bool ok = txn(s, Q_BEGIN) == 0;
    for (job *j = list; ok && j; j = j->next)
        ok = run_job(s, j) == 0;
    if (ok)
        ok = txn(s, Q_COMMIT) == 0;
    if (!ok) {
        txn(s, Q_ROLLBACK);
        for (job *j = list; j; j = j->next) {
            bool one = txn(s, Q_BEGIN) == 0 && run_job(s, j) == 0 && txn(s, Q_COMMIT) == 0;
            if (!one) {
                note_failure(s, j->n);
                txn(s, Q_ROLLBACK);
            }
        }
    }
    while (list) {
        job *next = list->next;
        last = list->n;
        job_free(list);
        list = next;
    }
    pthread_mutex_lock(&s->mu);
    s->done = last;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
}

/* How long the writer lets jobs gather before a transaction: one commit
 * then carries what many conversations queued meanwhile. */
#define GATHER_NS 2000000L

static void *writer_main(void *arg)
{
    ad_serve_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->stop) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += GATHER_NS;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0) {
            }
        }
        job *list = s->head;
        s->head = s->tail = NULL;
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (list)
            run_batch(s, list);
        pthread_mutex_lock(&s->mu);
        if (stop && !s->head)
            break;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the loop side ------------------------------------------------------ */

static bool job_failed(const uint64_t *failed, size_t nfailed, uint64_t n)
{
    for (size_t i = 0; i < nfailed; i++)
        if (failed[i] == n)
            return true;
    return false;
}

static void on_async(uv_async_t *a)
{
    ad_serve_store *s = a->data;
    char failure[512] = "";
    pthread_mutex_lock(&s->mu);
    uint64_t done = s->done;
    /* The failures of jobs done by now are taken; later ones stay. */
    uint64_t *failed = NULL;
    size_t nfailed = 0, kept = 0;
    if (s->nfailed && (failed = malloc(s->nfailed * sizeof *failed)) != NULL) {
        for (size_t i = 0; i < s->nfailed; i++) {
            if (s->failed[i] <= done)
                failed[nfailed++] = s->failed[i];
            else
                s->failed[kept++] = s->failed[i];
        }
        s->nfailed = kept;
    }
    if (s->failure[0]) {
        snprintf(failure, sizeof failure, "%s", s->failure);
        s->failure[0] = '\0';
    }
    pthread_mutex_unlock(&s->mu);
    if (failure[0] && !s->warned) {
        s->warned = true;
        fprintf(stderr, "agentd: warning: %s\n", failure);
    }
    /* Failures are reported once: every job they name is done by now, and
     * the waiters for them are called here. */
    while (s->waiters && s->waiters->n <= done) {
        waiter *w = s->waiters;
        s->waiters = w->next;
        w->fn(w->ud, !job_failed(failed, nfailed, w->n));
        free(w);
    }
    free(failed);
}

/* Before the loop waits: what this iteration queued goes to the writer
 * in one piece, with one wake-up. */
static void on_handoff(uv_prepare_t *p)
{
    ad_serve_store *s = p->data;
    uv_prepare_stop(p);
    if (!s->lhead)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = s->lhead;
    else
        s->head = s->lhead;
    s->tail = s->ltail;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    s->lhead = s->ltail = NULL;
}

static uint64_t push(ad_serve_store *s, job *j)
{
    if (!j)
        return 0;
    uint64_t n = j->n = ++s->queued;
    j->t = now_s();
    if (s->ltail)
        s->ltail->next = j;
    else
        s->lhead = j;
    s->ltail = j;
    uv_prepare_start(&s->handoff, on_handoff);
    return n;
}

static job *new_job(int kind, const char *a, const char *b, const char *c, size_t clen,
                    const char *d)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->kind = kind;
    j->a = a ? ad_strdup(a) : NULL;
    j->b = b ? ad_strdup(b) : NULL;
    j->c = c ? ad_strndup(c, clen) : NULL;
    j->clen = clen;
    j->d = d ? ad_strdup(d) : NULL;
    if ((a && !j->a) || (b && !j->b) || (c && !j->c) || (d && !j->d)) {
        job_free(j);
        return NULL;
    }
    return j;
}

uint64_t ad_serve_store_conversation(ad_serve_store *s, const char *conv_id, const char *profile)
{
    return push(s, new_job(J_CONV, conv_id, profile, NULL, 0, NULL));
}

uint64_t ad_serve_store_message(ad_serve_store *s, const char *conv_id, size_t idx,
                                const char *json, size_t len)
{
    job *j = new_job(J_MSG, conv_id, NULL, json, len, NULL);
    if (j)
        j->idx = idx;
    return push(s, j);
}

uint64_t ad_serve_store_fork(ad_serve_store *s, const char *from_id, const char *to_id,
                             const char *profile, size_t n)
{
    job *j = new_job(J_FORK, from_id, profile, to_id, strlen(to_id), NULL);
    if (j)
        j->idx = n;
    return push(s, j);
}

uint64_t ad_serve_store_response(ad_serve_store *s, const char *resp_id, const char *conv_id,
                                 size_t nmessages, const char *status, const char *json)
{
    job *j = new_job(J_RESP, resp_id, conv_id, status, strlen(status), json);
    if (j)
        j->idx = nmessages;
    return push(s, j);
}

int ad_serve_store_when_done(ad_serve_store *s, uint64_t n, void (*fn)(void *ud, bool ok),
                             void *ud)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        return AD_ENOMEM;
    w->n = n;
    w->fn = fn;
    w->ud = ud;
    waiter **pp = &s->waiters;
    while (*pp && (*pp)->n <= n)
        pp = &(*pp)->next;
    w->next = *pp;
    *pp = w;
    /* Already done: the async callback calls it from the loop. */
    uv_async_send(&s->async);
    return AD_OK;
}

void ad_serve_store_forget(ad_serve_store *s, void *ud)
{
    for (waiter **pp = &s->waiters; *pp;) {
        if ((*pp)->ud == ud) {
            waiter *w = *pp;
            *pp = w->next;
            free(w);
        } else {
            pp = &(*pp)->next;
        }
    }
}

/* ---- reads -------------------------------------------------------------- */

void ad_stored_response_free(ad_stored_response *r)
{
    free(r->conv_id);
    free(r->status);
    free(r->json);
    free(r->profile);
    memset(r, 0, sizeof *r);
}

static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? ad_strdup((const char *)t) : NULL;
}

int ad_serve_store_get_response(ad_serve_store *s, const char *resp_id, ad_stored_response *r,
                                char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->rdb,
                           "SELECT r.conv, r.nmsg, r.status, r.json, c.profile FROM responses r "
                           "LEFT JOIN conversations c ON c.id = r.conv WHERE r.id = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        ad_errf(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->rdb));
        return AD_ERR;
    }
    bind_text(st, 1, resp_id, strlen(resp_id));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        r->conv_id = col_text(st, 0);
        r->nmessages = (size_t)sqlite3_column_int64(st, 1);
        r->status = col_text(st, 2);
        r->json = col_text(st, 3);
        r->profile = col_text(st, 4);
        rc = r->conv_id && r->status ? AD_OK : AD_ENOMEM;
    } else if (rc == SQLITE_DONE) {
        rc = AD_EINVAL;
    } else {
        ad_errf(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->rdb));
        rc = AD_ERR;
    }
    sqlite3_finalize(st);
    if (rc != AD_OK)
        ad_stored_response_free(r);
    return rc;
}

int ad_serve_store_messages(ad_serve_store *s, const char *conv_id, size_t n,
                            json_object **messages, char *err, size_t errlen)
{
    *messages = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->rdb,
                           "SELECT idx, json FROM messages WHERE conv = ?1 AND idx < ?2 ORDER BY idx",
                           -1, &st, NULL) != SQLITE_OK) {
        ad_errf(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->rdb));
        return AD_ERR;
    }
    bind_text(st, 1, conv_id, strlen(conv_id));
    sqlite3_bind_int64(st, 2, n > (size_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)n);
    json_object *arr = json_object_new_array();
    int rc = arr ? AD_OK : AD_ENOMEM;
    sqlite3_int64 expect = 0;
    while (rc == AD_OK && sqlite3_step(st) == SQLITE_ROW) {
        sqlite3_int64 idx = sqlite3_column_int64(st, 0);
        const char *text = (const char *)sqlite3_column_text(st, 1);
        json_object *m = text ? json_tokener_parse(text) : NULL;
        if (idx != expect || !m || !json_object_is_type(m, json_type_object)) {
            json_object_put(m);
            ad_errf(err, errlen, "%s: conversation %s: message %lld is %s", s->path, conv_id,
                    (long long)expect, idx != expect ? "missing" : "not a JSON object");
            rc = AD_ERR;
            break;
        }
        json_object_array_add(arr, m);
        expect++;
    }
    sqlite3_finalize(st);
    if (rc != AD_OK) {
        json_object_put(arr);
        return rc;
    }
    *messages = arr;
    return AD_OK;
}

/* ---- open and close ----------------------------------------------------- */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS conversations ("
    "  id TEXT PRIMARY KEY, profile TEXT, created REAL NOT NULL, updated REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS messages ("
    "  conv TEXT NOT NULL, idx INTEGER NOT NULL, json TEXT NOT NULL,"
    "  PRIMARY KEY (conv, idx)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS responses ("
    "  id TEXT PRIMARY KEY, conv TEXT NOT NULL, nmsg INTEGER NOT NULL, status TEXT NOT NULL,"
    "  created REAL NOT NULL, json TEXT);"
    "PRAGMA user_version = 1;";

static int open_db(ad_serve_store *s, sqlite3 **db, char *err, size_t errlen)
{
    if (sqlite3_open_v2(s->path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        ad_errf(err, errlen, "%s: cannot open: %s", s->path, *db ? sqlite3_errmsg(*db) : "out of memory");
        return AD_ERR;
    }
    sqlite3_busy_timeout(*db, 5000);
    /* A small page cache: the writer appends (new rows go to the same
     * pages: ids begin with the time), the reader reads a conversation now
     * and then. */
    if (run_sql(*db, "PRAGMA journal_mode = WAL") != 0 ||
        run_sql(*db, "PRAGMA synchronous = NORMAL") != 0 ||
        run_sql(*db, "PRAGMA cache_size = -1024") != 0) {
        ad_errf(err, errlen, "%s: %s", s->path, sqlite3_errmsg(*db));
        return AD_ERR;
    }
    return AD_OK;
}

static void store_free(ad_serve_store *s)
{
    for (size_t i = 0; i < sizeof s->st / sizeof s->st[0]; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->wdb);
    sqlite3_close(s->rdb);
    while (s->waiters) {
        waiter *w = s->waiters;
        s->waiters = w->next;
        free(w);
    }
    free(s->failed);
    free(s->path);
    if (s->secret) {
        volatile char *p = s->secret;
        while (*p)
            *p++ = 0;
        free(s->secret);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static void on_async_closed(uv_handle_t *h)
{
    ad_serve_store *s = h->data;
    if (--s->open_handles == 0)
        store_free(s);
}

int ad_serve_store_open(ad_serve_store **out, uv_loop_t *loop, const char *path,
                        const char *secret, size_t *interrupted, char *err, size_t errlen)
{
    *out = NULL;
    if (interrupted)
        *interrupted = 0;
    int made = ad_make_private_file(path, err, errlen);
    if (made != AD_OK)
        return made;
    ad_serve_store *s = calloc(1, sizeof *s);
    if (!s)
        return AD_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->loop = loop;
    s->path = ad_strdup(path);
    if (secret && secret[0])
        s->secret = ad_strdup(secret);
    if (!s->path) {
        store_free(s);
        return AD_ENOMEM;
    }
    int rc = open_db(s, &s->wdb, err, errlen);
    if (rc == AD_OK && sqlite3_exec(s->wdb, schema, NULL, NULL, NULL) != SQLITE_OK) {
        ad_errf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->wdb));
        rc = AD_ERR;
    }
    if (rc == AD_OK) {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->wdb, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) != 1) {
            ad_errf(err, errlen, "%s: written by a newer agentd (schema %d)", path,
                    sqlite3_column_int(q, 0));
            rc = AD_EINVAL;
        }
        sqlite3_finalize(q);
    }
    /* What a dead process left running can never finish. */
    if (rc == AD_OK) {
        static const char mark[] =
            "UPDATE responses SET status = 'failed', json = json_set(json, '$.status', 'failed',"
            " '$.error', json_object('code', 'server_error', 'message',"
            " 'the server stopped while the response was running')),"
            " nmsg = (SELECT count(*) FROM messages WHERE messages.conv = responses.conv)"
            " WHERE status IN ('in_progress', 'queued')";
        if (run_sql(s->wdb, mark) != 0) {
            ad_errf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->wdb));
            rc = AD_ERR;
        } else if (interrupted) {
            *interrupted = (size_t)sqlite3_changes(s->wdb);
        }
    }
    if (rc == AD_OK)
        rc = open_db(s, &s->rdb, err, errlen);
    if (rc != AD_OK) {
        store_free(s);
        return rc;
    }
    uv_async_init(loop, &s->async, on_async);
    uv_prepare_init(loop, &s->handoff);
    s->async.data = s->handoff.data = s;
    s->open_handles = 2;
    if (pthread_create(&s->thread, NULL, writer_main, s) != 0) {
        ad_errf(err, errlen, "cannot start the store's writer thread");
        uv_close((uv_handle_t *)&s->handoff, on_async_closed);
        uv_close((uv_handle_t *)&s->async, on_async_closed);
        return AD_ERR;
    }
    s->started = true;
    *out = s;
    return AD_OK;
}

void ad_serve_store_close(ad_serve_store *s)
{
    if (!s)
        return;
    on_handoff(&s->handoff);
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        s->started = false;
    }
    on_async(&s->async);
    /* Waiters for jobs never queued are told they failed. */
    while (s->waiters) {
        waiter *w = s->waiters;
        s->waiters = w->next;
        w->fn(w->ud, false);
        free(w);
    }
    uv_close((uv_handle_t *)&s->handoff, on_async_closed);
    uv_close((uv_handle_t *)&s->async, on_async_closed);
}
