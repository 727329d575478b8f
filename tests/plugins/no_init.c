/*
 * no_init.c -- test plugin: a valid shared object that does not export
 * agentd_plugin_init_v1 (it exports a misspelt name instead).
 */
#include <agentd/plugin.h>

AGENTD_PLUGIN_EXPORT int agentd_plugin_init(void);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init(void)
{
    return 0;
}
