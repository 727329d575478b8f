/*
 * sigint_probe.c -- LD_PRELOAD helper for tests: a real SIGINT at the
 * moment a program lets SIGINT's default action back in.
 *
 * sigaction() and signal() are wrapped; right after any call that sets
 * SIGINT's disposition to SIG_DFL, the probe raises SIGINT. A program that
 * passes through the default disposition even for an instant (between two
 * handlers of its own) dies of it, deterministically, as it would from a
 * Ctrl-C pressed at that instant. Tests start the program with SIGINT
 * ignored, so a SIG_DFL can only come from the program itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stddef.h>

#define PROBE_EXPORT __attribute__((visibility("default")))

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

PROBE_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old);
PROBE_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    static sigaction_fn real;
    if (!real)
        real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    int rc = real(sig, act, old);
    if (rc == 0 && sig == SIGINT && act && !(act->sa_flags & SA_SIGINFO) &&
        act->sa_handler == SIG_DFL)
        raise(SIGINT);
    return rc;
}

PROBE_EXPORT sighandler_t signal(int sig, sighandler_t handler);
PROBE_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    struct sigaction sa, old;
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(sig, &sa, &old) != 0)
        return SIG_ERR;
    return old.sa_handler;
}
