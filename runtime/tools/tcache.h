/*
 * tcache.h -- the tool cache: the tools a plugin registers, remembered
 * between runs, so that agentd knows them at start-up without running any
 * of the plugin's code (its workers then start only when a tool is
 * called).
 *
 * One file per plugin in the cache folder, named after a hash of the
 * plugin's absolute path, holding the plugin file's identity when it was
 * described (device, inode, size, modification time in nanoseconds), a
 * hash of its config text, agentd's version, and the description
 * {"tools":[{"name","description","parameters","flags"}]}. An entry counts
 * only when all of these match the file as it is now and this agentd;
 * anything else (no entry, another identity or config, an unreadable or
 * malformed file) is a miss, and the caller describes the plugin again.
 * Entries are written whole (a temporary file renamed over the old one),
 * mode 0600, in a folder made with mode 0700. The host checks a cached
 * description as it checks a plugin's own registrations.
 */
#ifndef AD_TOOLS_TCACHE_H
#define AD_TOOLS_TCACHE_H

#include <json-c/json.h>
#include <stddef.h>

/* $XDG_CACHE_HOME/agentd/tools, else $HOME/.cache/agentd/tools (caller
 * frees); NULL when neither variable is set (or on ENOMEM). */
char *ad_tcache_default_dir(void);

/* The cached description of the plugin at path with config (NULL: none),
 * or NULL on a miss. The caller puts it. */
json_object *ad_tcache_get(const char *dir, const char *path, const char *config);

/* Stores desc for the plugin at path as it is now. Returns 0, or a
 * negative AD_E* with err set (the cache is an optimisation: callers go on
 * without it). */
int ad_tcache_put(const char *dir, const char *path, const char *config, json_object *desc,
                  char *err, size_t errlen);

#endif /* AD_TOOLS_TCACHE_H */
