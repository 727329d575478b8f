/*
 * lazy.h -- optional libraries, loaded on first use.
 *
 * libyaml (--record/--replay), libedit (the REPL) and hiredis (the Redis
 * job queue: agentd worker, submit, jobs) serve features a
 * one-shot run does not use. Linking them would make every run pay for
 * mapping and relocating them (and libedit's libtinfo, libbsd, libmd), and
 * would slow every symbol lookup of the dynamic linker, which searches each
 * library in the global scope: measured, about 0.6 MiB of RSS and 1 ms of
 * CPU per start. libcurl serves every run, but not the processes agentd
 * starts from its own binary for plugins (tools/worker.h, tools/isolate.h):
 * linked, it made each of them map and relocate libcurl and the thirty
 * libraries it needs (TLS, Kerberos, LDAP, ...), about 9 ms of CPU per
 * process here. So they are opened with dlopen(RTLD_LOCAL) by the module
 * that needs them, and called through pointers. (SQLite, used by every run
 * that stores its session, is linked statically instead: see the
 * Makefile.) Modules include the library's header through this one, which
 * redirects the names they use to those pointers; nothing else changes at
 * the call sites.
 *
 * Every module entry point that may touch a library first calls its
 * ad_lazy_*() loader, which loads the library once (thread-safe) and
 * returns 0, or AD_ERR with err naming the library and the Debian package.
 */
#ifndef AD_LAZY_H
#define AD_LAZY_H

#include <stddef.h>

int ad_lazy_yaml(char *err, size_t errlen);
int ad_lazy_curl(char *err, size_t errlen);
int ad_lazy_edit(char *err, size_t errlen);
int ad_lazy_hiredis(char *err, size_t errlen);

#endif /* AD_LAZY_H */
