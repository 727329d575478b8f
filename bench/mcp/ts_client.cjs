// ts_client.cjs -- the official TypeScript SDK's MCP client
// (@modelcontextprotocol/sdk, from ../shared/mcp's cache) doing what
// `bench_mcp --client` does: tools/call `echo` one at a time over stdio to
// `bench_mcp --server`, 500 warm-up calls, then SECONDS of calls, each
// result checked; prints {"calls", "seconds", "rate", "cpu_us"} (cpu_us:
// this process's CPU time per call, user + system).
//
//   node ts_client.cjs NODE_MODULES SERVER SECONDS
"use strict";
const path = require("path");
const { createRequire } = require("module");

async function main() {
    const [modules, server, secs] = process.argv.slice(2);
    const req = createRequire(path.join(modules, "noop.js"));
    const { Client } = req("@modelcontextprotocol/sdk/client/index.js");
    const { StdioClientTransport } = req("@modelcontextprotocol/sdk/client/stdio.js");
    const transport = new StdioClientTransport({ command: server, args: ["--server"] });
    const client = new Client({ name: "bench-ts", version: "1" });
    await client.connect(transport);
    const call = async () => {
        const r = await client.callTool({ name: "echo", arguments: { text: "round trip" } });
        if (!r.content || r.content[0].text !== "round trip")
            throw new Error("a call did not come back as sent");
    };
    for (let i = 0; i < 500; i++)
        await call();
    const end = process.hrtime.bigint() + BigInt(Math.round(Number(secs) * 1e9));
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    let calls = 0;
    while (process.hrtime.bigint() < end) {
        await call();
        calls++;
    }
    const took = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    console.log(JSON.stringify({ calls, seconds: took, rate: calls / took,
                                 cpu_us: calls ? (cpu.user + cpu.system) / calls : 0 }));
    await client.close();
}

main().catch((e) => {
    console.error("ts_client: " + e.message);
    process.exit(1);
});
