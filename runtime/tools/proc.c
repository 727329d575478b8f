/*
 * proc.c -- one short-lived child process under a deadline (see proc.h).
 *
 * Start: the input is written into an anonymous in-memory file (memfd) that
 * becomes the child's stdin, so the parent never blocks writing it, however
 * large, and the child reads it at its own pace. Two pipes carry the child's
 * result (fd 3) and its stdout+stderr. Every descriptor of ours is created
 * with O_CLOEXEC and moved above fd 3 first, so the dup2() file actions can
 * neither clobber one another nor leave a descriptor that keeps its
 * close-on-exec flag; posix_spawn_file_actions_addclosefrom_np(4) closes
 * whatever else the process holds (sockets of other libraries that forgot
 * O_CLOEXEC). posix_spawn() (not fork()) because the caller is a
 * multi-threaded process: nothing runs in the child between clone and exec
 * except the spawn machinery itself, so no lock held by another thread can
 * be inherited in a taken state. The child gets a process group of its own,
 * an empty signal mask and default signal dispositions (the parent may
 * ignore SIGPIPE or block signals on worker threads).
 *
 * Watch: poll() on both pipes and, when the kernel offers it, a pidfd that
 * becomes readable when the child exits (otherwise waitid(WNOHANG) every
 * 20 ms). The child's exit is seen with WNOWAIT, so it stays a zombie and
 * its pid and process-group id cannot be reused while we still signal them.
 * Invariant: whatever happens, the group is sent SIGKILL once the child is
 * done or the deadline passes, and the child is reaped before returning.
 * After the child exits, the pipes are drained for at most half a second
 * (a grandchild that left the group could otherwise keep them open).
 */
#define _GNU_SOURCE

#include "tools/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_GRACE_S 0.5      /* pipe draining after the child's exit */
#define POLL_TICK_MS 20        /* exit checks without a pidfd */
#define READ_SLICE (4u << 20)  /* bytes read per wakeup before the clock is looked at again */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Moves fd above 3 (keeping O_CLOEXEC); closes the original. */
static int fd_above3(int fd)
{
    if (fd < 0 || fd > 3)
        return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 4);
    int e = errno;
    close(fd);
    errno = e;
    return n;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int make_input(const char *data, size_t len)
{
    int fd = memfd_create("agentd-input", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            errno = e;
            return -1;
        }
        off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd_above3(fd);
}

/* Reads what is available; keeps up to max bytes in keep, counts the rest.
 * Returns 1 at end of file (or a read error), 0 when more may come, or
 * AD_ENOMEM. */
static int read_some(int fd, ad_buf *keep, size_t max, size_t *dropped)
{
    char chunk[32768];
    size_t total = 0;
    while (total < READ_SLICE) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
        if (n == 0)
            return 1;
        total += (size_t)n;
        size_t room = keep->len < max ? max - keep->len : 0;
        size_t take = (size_t)n < room ? (size_t)n : room;
        if (take && ad_buf_append(keep, chunk, take) != AD_OK)
            return AD_ENOMEM;
        *dropped += (size_t)n - take;
    }
    return 0;
}

/* True once the child has exited; it is left a zombie (WNOWAIT). */
static bool child_done(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno != EINTR; /* ECHILD: nothing left to wait for */
    return si.si_pid == pid;
}

/* Set once pidfd_open() turned out to be missing (old kernels, valgrind):
 * not asked again. A plain int is enough: every thread writes the same. */
static volatile int no_pidfd;

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    if (no_pidfd)
        return -1;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0)
        return fd; /* pidfd_open sets close-on-exec itself */
    if (errno == ENOSYS)
        no_pidfd = 1;
#else
    (void)pid;
#endif
    return -1;
}

static int ms_until(double t, double now)
{
    double ms = (t - now) * 1000.0 + 1.0;
    if (ms < 0)
        return 0;
    return ms > (double)INT_MAX ? INT_MAX : (int)ms;
}

/* Starts the child; returns 0 or an errno value. */
static int spawn_child(const ad_proc_opts *o, int in, int res_w, int out_w, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    int e = posix_spawn_file_actions_init(&fa);
    if (e != 0)
        return e;
    if ((e = posix_spawnattr_init(&at)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return e;
    }
    if ((e = posix_spawn_file_actions_adddup2(&fa, in, 0)) == 0 &&
        (e = posix_spawn_file_actions_adddup2(&fa, out_w, 1)) == 0 &&
        (e = posix_spawn_file_actions_adddup2(&fa, out_w, 2)) == 0 &&
        (e = posix_spawn_file_actions_adddup2(&fa, res_w, 3)) == 0 &&
        (e = posix_spawn_file_actions_addclosefrom_np(&fa, 4)) == 0 &&
        (e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF)) == 0 &&
        (e = posix_spawnattr_setpgroup(&at, 0)) == 0 &&
        (e = posix_spawnattr_setsigmask(&at, &none)) == 0 &&
        (e = posix_spawnattr_setsigdefault(&at, &all)) == 0)
        e = posix_spawn(pid, o->exe, &fa, &at, o->argv, o->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return e;
}

/* Reads both pipes until the child is done or the deadline passes. Returns
 * 0 or AD_ENOMEM; the child is not killed here. */
static int watch_child(const ad_proc_opts *o, pid_t pid, int pidfd, int *res_r, int *out_r,
                       double t0, ad_proc_result *r)
{
    double deadline = o->timeout_s > 0 ? t0 + o->timeout_s : 0;
    double grace_end = 0;
    bool exited = false;
    for (;;) {
        if (!exited && child_done(pid)) {
            exited = true;
            /* Stragglers of its group (its own children) go now. */
            kill(-pid, SIGKILL);
            grace_end = now_s() + DRAIN_GRACE_S;
        }
        if (exited && *res_r < 0 && *out_r < 0)
            return AD_OK;
        double now = now_s();
        if (!exited && deadline > 0 && now >= deadline) {
            r->timed_out = true;
            return AD_OK;
        }
        if (exited && now >= grace_end)
            return AD_OK;
        struct pollfd p[3];
        int np = 0, ir = -1, io = -1;
        if (*res_r >= 0) {
            ir = np;
            p[np++] = (struct pollfd){*res_r, POLLIN, 0};
        }
        if (*out_r >= 0) {
            io = np;
            p[np++] = (struct pollfd){*out_r, POLLIN, 0};
        }
        if (!exited && pidfd >= 0)
            p[np++] = (struct pollfd){pidfd, POLLIN, 0};
        double until = exited ? grace_end : deadline;
        int wait_ms = until > 0 ? ms_until(until, now) : -1;
        if (!exited && pidfd < 0 && (wait_ms < 0 || wait_ms > POLL_TICK_MS))
            wait_ms = POLL_TICK_MS;
        int k = poll(p, (nfds_t)np, wait_ms);
        if (k <= 0)
            continue; /* timeout or EINTR: the clock decides */
        if (ir >= 0 && p[ir].revents) {
            int e = read_some(*res_r, &r->result, o->result_max, &r->result_dropped);
            if (e == AD_ENOMEM)
                return e;
            if (e == 1)
                close_fd(res_r);
        }
        if (io >= 0 && p[io].revents) {
            int e = read_some(*out_r, &r->output, o->output_max, &r->output_dropped);
            if (e == AD_ENOMEM)
                return e;
            if (e == 1)
                close_fd(out_r);
        }
    }
}

int ad_proc_run(const ad_proc_opts *o, ad_proc_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->exit_status = -1;
    int res[2] = {-1, -1}, out[2] = {-1, -1}, pidfd = -1;
    int rc = AD_ERR;

    /* posix_spawn() may report a failed exec only as exit status 127 (it
     * does so under valgrind): the common cases get a clear message here. */
    if (access(o->exe, X_OK) != 0) {
        ad_errf(err, errlen, "cannot start %s: %s", o->exe, strerror(errno));
        return AD_ERR;
    }
    int in = make_input(o->input ? o->input : "", o->input ? o->input_len : 0);
    if (in < 0) {
        ad_errf(err, errlen, "cannot prepare the worker's input: %s", strerror(errno));
        return AD_ERR;
    }
    if (pipe2(res, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        ad_errf(err, errlen, "cannot create pipes: %s", strerror(errno));
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        res[i] = fd_above3(res[i]);
        out[i] = fd_above3(out[i]);
    }
    if (res[0] < 0 || res[1] < 0 || out[0] < 0 || out[1] < 0) {
        ad_errf(err, errlen, "cannot create pipes: %s", strerror(errno));
        goto out;
    }
    pid_t pid = 0;
    double t0 = now_s();
    int e = spawn_child(o, in, res[1], out[1], &pid);
    if (e != 0) {
        ad_errf(err, errlen, "cannot start %s: %s", o->exe, strerror(e));
        goto out;
    }
    /* Only the child may hold the write ends, or EOF would never come. */
    close_fd(&in);
    close_fd(&res[1]);
    close_fd(&out[1]);
    pidfd = open_pidfd(pid);
    fcntl(res[0], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);

    rc = watch_child(o, pid, pidfd, &res[0], &out[0], t0, r);

    /* The child is at worst a zombie (WNOWAIT), so its ids are still ours. */
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st))
        r->exit_status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        r->term_signal = WTERMSIG(st);
    if (rc == AD_ENOMEM) {
        ad_errf(err, errlen, "out of memory");
        ad_proc_result_free(r);
    }
out:
    close_fd(&in);
    close_fd(&pidfd);
    for (int i = 0; i < 2; i++) {
        close_fd(&res[i]);
        close_fd(&out[i]);
    }
    return rc;
}

void ad_proc_result_free(ad_proc_result *r)
{
    if (r == NULL)
        return;
    ad_buf_free(&r->result);
    ad_buf_free(&r->output);
}

const char *ad_proc_signame(int sig)
{
    return sigabbrev_np(sig);
}
