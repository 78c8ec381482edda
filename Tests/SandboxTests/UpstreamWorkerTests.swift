import Foundation
import SandboxProtocol
import Testing

@testable import Sandbox

/// An upstream MCP server inside a worker: started and initialized before `ready`, its tools
/// listed and called through the relay, its program mounted read-only from wherever it lives.
@Suite(.timeLimit(.minutes(2))) struct UpstreamWorkerTests {
    /// The smallest stdio MCP server (the shape of examples/echo_server.sh), in a directory under
    /// the host's /tmp: found in CI, where the checkout lives under /tmp, a mount there collided
    /// with the worker's private /tmp (spawn failed at mount_tmp, EEXIST).
    static func server() throws -> (directory: String, script: String) {
        let directory = try SandboxFixture.temporaryDirectory("upstream-program")
        let script = directory + "/server.sh"
        try #"""
            while IFS= read -r line; do
                id=${line#*\"id\":}; id=${id%%,*}
                case "$line" in
                    *'"method":"initialize"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"t","version":"1"}}}\n' "$id" ;;
                    *'"method":"tools/list"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"ping","inputSchema":{"type":"object"}}]}}\n' "$id" ;;
                    *'"method":"tools/call"'*) printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"pong"}],"isError":false}}\n' "$id" ;;
                esac
            done
            """#.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(directory, 0o755)
        chmod(script, 0o644)
        return (directory, script)
    }

    @Test func anUpstreamUnderTheHostsTmpIsListedAndCalled() async throws {
        let (pool, log) = try makePool()
        let (directory, script) = try Self.server()
        #expect(directory.hasPrefix("/tmp/") || ProcessInfo.processInfo.environment["TMPDIR"] != nil)
        let root = try SandboxFixture.temporaryDirectory("upstream-ws")
        let tier = WorkerTier(
            name: "upstream", isolation: .session, profile: .exec,
            limits: WorkerLimits(wallMs: 10_000, memoryMiB: 256, processes: 16, openFiles: 256))
        func upstream(_ tool: String) -> UpstreamCall {
            UpstreamCall(
                launch: UpstreamLaunch(server: "t", command: ["/bin/sh", script], environment: ["PATH": "/usr/bin:/bin"]),
                mounts: [directory], scope: .tenant(workspace: false), tool: tool)
        }
        var list = invocation("t.tools/list", "{}", tier: tier, root: root)
        list.upstream = upstream(UpstreamLaunch.listTools)
        let listed = await pool.execute(list)
        guard case .completed(let tools, false) = listed.outcome else {
            Issue.record("tools/list: \(listed.outcome)")
            await pool.shutdown()
            return
        }
        #expect(String(decoding: tools, as: UTF8.self).contains(#""name":"ping""#))
        // Another session of the tenant reaches the same process (isolation tenant).
        var call = invocation("t.ping", "{}", tier: tier, root: root, session: "s2", actor: "bob")
        call.upstream = upstream("ping")
        let called = await pool.execute(call)
        guard case .completed(let result, false) = called.outcome else {
            Issue.record("ping: \(called.outcome)")
            await pool.shutdown()
            return
        }
        #expect(String(decoding: result, as: UTF8.self) == #"{"content":[{"type":"text","text":"pong"}],"isError":false}"#)
        #expect(called.workerID == listed.workerID, "one process per tenant")
        #expect(await log.events.filter { $0.kind == .spawned }.count == 1)
        await pool.shutdown()
    }
}
