import Foundation
import MCP
import Sandbox
import Synchronization
import Testing

@testable import Runner

/// The cache through the gateway, with an executor that really reads and writes files under the
/// workspace root it is handed, two tenants, and identical relative paths holding different canaries.
@Suite struct ResultCacheTests {
    final class Clock: Sendable {
        let current = Mutex(Date())
        func now() -> Date { current.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { current.withLock { $0 += seconds } }
    }

    func text(_ result: CallTool.Result) -> String? {
        guard case .object(let object)? = result.structuredContent, case .string(let content)? = object["content"]
        else { return nil }
        return content
    }

    @Test func entriesAreNeverSharedAcrossTenantsAndDieWithWritesAndTime() async throws {
        let clock = Clock()
        let fixture = try await GatewayFixture(executor: FileExecutor(), now: { clock.now() })
        for tenant in ["acme", "globex"] {
            try "CANARY-\(tenant.uppercased())".write(
                toFile: fixture.root(tenant) + "/secret.txt", atomically: true, encoding: .utf8)
        }
        let gateway = fixture.gateway
        let (_, acmeClaim) = try await fixture.session("acme")
        let (_, globexClaim) = try await fixture.session("globex")
        let acme = try await gateway.authenticate(token: acmeClaim, connectionID: "a")
        let globex = try await gateway.authenticate(token: globexClaim, connectionID: "g")
        let read: [String: Value] = ["path": "secret.txt"]

        #expect(text(try await gateway.call("repo.read_file", arguments: read, in: acme)) == "CANARY-ACME")
        // Byte-identical call, other tenant: its own file, not acme's cached answer.
        #expect(text(try await gateway.call("repo.read_file", arguments: read, in: globex)) == "CANARY-GLOBEX")
        #expect(gateway.cache.statistics.hits == 0)
        #expect(gateway.cache.statistics.misses == 2)

        // Now both are cached: change the files behind the cache's back and the cached answers show.
        for tenant in ["acme", "globex"] {
            try "CHANGED".write(toFile: fixture.root(tenant) + "/secret.txt", atomically: true, encoding: .utf8)
        }
        #expect(text(try await gateway.call("repo.read_file", arguments: read, in: acme)) == "CANARY-ACME")
        #expect(text(try await gateway.call("repo.read_file", arguments: read, in: globex)) == "CANARY-GLOBEX")
        #expect(gateway.cache.statistics.hits == 2)

        // A write in acme's workspace retires acme's entries only.
        _ = try await gateway.call(
            "repo.write_file", arguments: ["path": "secret.txt", "content": "WRITTEN-ACME"], in: acme)
        #expect(text(try await gateway.call("repo.read_file", arguments: read, in: acme)) == "WRITTEN-ACME")
        #expect(text(try await gateway.call("repo.read_file", arguments: read, in: globex)) == "CANARY-GLOBEX")

        // Past the tier's TTL (60 s in policies/tiers.yaml) nothing is served from the cache.
        clock.advance(61)
        #expect(text(try await gateway.call("repo.read_file", arguments: read, in: globex)) == "CHANGED")

        // A cached answer is audited as such.
        let cached = try gateway.audit.records(limit: 1000).compactMap(\.event).filter { $0.event == "call.cached" }
        #expect(cached.count == 3)
        #expect(Set(cached.compactMap(\.tenant)) == ["acme", "globex"])
    }

    @Test func boundsEvictOldestAndStaleGenerationsAreDropped() {
        let cache = ResultCache(maximumEntries: 8, maximumBytes: 1 << 20)
        let later = Date().addingTimeInterval(60)
        for index in 0..<20 {
            cache.store(
                Array("r\(index)".utf8), tenant: "t", workspace: "w", generation: 0, tool: "repo.stat",
                argumentsDigest: String(index), expires: later)
        }
        #expect(cache.statistics.entries <= 8)
        #expect(cache.lookup(tenant: "t", workspace: "w", tool: "repo.stat", argumentsDigest: "19", now: Date()) != nil)
        #expect(cache.lookup(tenant: "t", workspace: "w", tool: "repo.stat", argumentsDigest: "0", now: Date()) == nil)
        // A result computed before a write finished is not stored under the new generation.
        let before = cache.generation(tenant: "t", workspace: "w")
        cache.bump(tenant: "t", workspace: "w")
        cache.store(
            Array("stale".utf8), tenant: "t", workspace: "w", generation: before, tool: "repo.stat",
            argumentsDigest: "x", expires: later)
        #expect(cache.lookup(tenant: "t", workspace: "w", tool: "repo.stat", argumentsDigest: "x", now: Date()) == nil)
    }
}

/// Reads and writes real files relative to the workspace root it is given (test-only: no
/// confinement; the confined worker does this for real).
struct FileExecutor: WorkerlessExecutor {
    func execute(_ invocation: ToolInvocation) async -> ToolExecution {
        ToolExecution(outcome: outcome(invocation), workerID: nil, isolation: invocation.tier.isolation)
    }

    private func outcome(_ invocation: ToolInvocation) -> ToolOutcome {
        guard let arguments = try? JSONSerialization.jsonObject(with: Data(invocation.arguments)) as? [String: Any],
            let path = arguments["path"] as? String
        else { return .completed(result: Array("{\"error\":\"bad arguments\"}".utf8), isError: true) }
        let file = invocation.workspaceRoot + "/" + path
        switch invocation.tool {
        case "repo.read_file":
            let content = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            let body = try! JSONSerialization.data(withJSONObject: ["content": content])
            return .completed(result: Array(body), isError: false)
        case "repo.write_file":
            try? (arguments["content"] as? String ?? "").write(toFile: file, atomically: true, encoding: .utf8)
            return .completed(result: Array("{\"written\":true}".utf8), isError: false)
        default:
            return .failed(code: "not_a_file_tool", message: "not a file tool")
        }
    }

    func tiersChanged(_ tiers: Set<String>) async {}
}

@Suite struct CallerTextTests {
    /// A caller-chosen tool name never reaches a refusal message, log line or audit detail raw:
    /// bidirectional overrides and zero-width characters are escaped, long names cut.
    @Test func unknownToolNamesAreEscapedInRefusals() async throws {
        let fixture = try await GatewayFixture()
        let (_, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c")
        for name in ["tes\u{202E}t.evil", "repo.read\u{200B}_file", String(repeating: "\u{1F4A3}", count: 500), "a\nb"]
        {
            do {
                _ = try await fixture.gateway.call(name, arguments: nil, in: context)
                Issue.record("\(name.debugDescription) was not refused")
            } catch {
                #expect(error.code == .toolNotInScope)
                #expect(error.message.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F })
                #expect(error.message.utf8.count < 1200)
            }
        }
        let details = try fixture.gateway.audit.records(limit: 100).compactMap(\.event?.detail)
        #expect(details.allSatisfy { !$0.contains("\u{202E}") && !$0.contains("\u{200B}") })
    }
}
