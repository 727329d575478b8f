/*
 * init.h -- `agentd --init [FILE]`: the starter config.
 *
 * The text is configs/starter.toml, built into the binary; `make install`
 * also installs it as share/doc/agentd/agent.toml.example.
 */
#ifndef AD_INIT_H
#define AD_INIT_H

#include <stdbool.h>
#include <stddef.h>

/* The starter config, a NUL-terminated TOML text. */
extern const char ad_starter_config[];

/* Writes the starter config to path, a new file of mode 0600 (an existing
 * file, or a symlink, is never overwritten). With mkparents, missing
 * folders above it are created 0700. Returns 0; AD_EINVAL when the file
 * cannot be created (it exists, its folder is missing or not writable);
 * AD_ERR when writing it failed (the partial file is removed). err names
 * the file and the reason. */
int ad_init_write(const char *path, bool mkparents, char *err, size_t errlen);

#endif /* AD_INIT_H */
