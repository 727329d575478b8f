/*
 * proc.h -- run one short-lived child process under a deadline, with bounds.
 *
 * The building block of process isolation for tools (isolate.c): the child is
 * started with posix_spawn() in a process group of its own, gets `input` as
 * its standard input (a sealed-in-memory file, so writing it can never block
 * on the child), a result channel on fd 3, and one pipe that takes both its
 * stdout and stderr. Every other descriptor is closed in the child. The
 * caller's thread polls both pipes until the child exits; at the deadline
 * the whole process group is killed with SIGKILL. The child is always
 * reaped before ad_proc_run() returns: no zombie, and no member of its
 * process group is left behind.
 *
 * Safe to call from any thread, concurrently. Blocks the calling thread.
 */
#ifndef AD_PROC_H
#define AD_PROC_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

typedef struct ad_proc_opts {
    const char *exe;        /* path of the program (no PATH search) */
    char *const *argv;      /* NULL-terminated */
    char *const *envp;      /* NULL-terminated; the child's whole environment */
    const char *input;      /* the child's stdin; may be NULL when input_len is 0 */
    size_t input_len;
    double timeout_s;       /* 0 = no deadline */
    size_t result_max;      /* bytes of fd 3 kept; the rest is counted and dropped */
    size_t output_max;      /* bytes of stdout+stderr kept; the rest is counted and dropped */
} ad_proc_opts;

typedef struct ad_proc_result {
    ad_buf result;         /* what the child wrote on fd 3 (first result_max bytes) */
    size_t result_dropped; /* bytes of fd 3 beyond result_max */
    ad_buf output;         /* what it wrote on stdout and stderr (first output_max bytes) */
    size_t output_dropped;
    bool timed_out;        /* killed at the deadline */
    int exit_status;       /* >= 0: exited with this status; -1 otherwise */
    int term_signal;       /* > 0: killed by this signal */
} ad_proc_result;

/*
 * Runs the child to its end (or deadline). Returns 0 with *r filled (free it
 * with ad_proc_result_free()), or a negative AD_E* code with err set when
 * the child could not be started or memory ran out (*r is then empty).
 */
int ad_proc_run(const ad_proc_opts *o, ad_proc_result *r, char *err, size_t errlen);
void ad_proc_result_free(ad_proc_result *r);

/* "SEGV" for SIGSEGV, or NULL for a number without a name. */
const char *ad_proc_signame(int sig);

#endif /* AD_PROC_H */
