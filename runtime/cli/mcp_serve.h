/*
 * mcp_serve.h -- `agentd [--config FILE] mcp serve [--http [HOST:]PORT] [--mcp]`:
 * the loaded .so plugins (and with --mcp the configured MCP servers' tools)
 * served as an MCP server over stdio or Streamable HTTP on loopback
 * (docs/mcp.md).
 */
#ifndef AD_MCP_SERVE_H
#define AD_MCP_SERVE_H

/* Runs the server: config is --config's value (NULL: found as for a run),
 * argv[0..argc) the arguments after "serve" and without --config. Returns
 * the exit status: 0 the client ended (EOF, or SIGTERM/SIGINT); 1 a
 * runtime failure; 2 a usage or config error, or a plugin that does not
 * load. */
int ad_mcp_serve(const char *config, int argc, char **argv);

#endif /* AD_MCP_SERVE_H */
