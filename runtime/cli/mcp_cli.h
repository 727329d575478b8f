/*
 * mcp_cli.h -- `agentd [--config FILE] mcp list|tools|call`: the configured
 * MCP servers, without a model (docs/mcp.md).
 */
#ifndef AD_MCP_CLI_H
#define AD_MCP_CLI_H

#include <stdbool.h>

/* True when the command line is an `mcp` command: the first argument that
 * is not --config FILE (-c FILE, --config=FILE) or --json is "mcp". */
bool ad_mcp_cli_wanted(int argc, char **argv);

/* Runs it (argv as main got it). Returns the exit status: 0 success; 1 a
 * server failed, or the tool answered isError; 2 a usage or config error
 * (an unknown server included); 130 interrupted. */
int ad_mcp_cli(int argc, char **argv);

#endif /* AD_MCP_CLI_H */
