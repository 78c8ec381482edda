import Foundation
import Testing

@testable import Runner
@testable import Sandbox

/// `/metrics` as the gateway fills it: what each call adds, and which labels never appear.
@Suite(.timeLimit(.minutes(1))) struct MetricsTests {
    /// The value of the exposition's sample line that starts with `prefix` (name and labels).
    static func sample(_ text: String, _ prefix: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap {
            Double($0.split(separator: " ").last ?? "")
        }
    }

    @Test func callsAreCountedByToolTierAndOutcome() async throws {
        let fixture = try await GatewayFixture()
        let (_, claim) = try await fixture.session(deny: ["shell.*"])
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c1")
        for _ in 0..<2 {
            _ = try await fixture.gateway.answer("repo.read_file", arguments: ["path": "README.md"], in: context)
        }
        _ = await Refusal.Code.of { _ = try await fixture.gateway.answer("shell.run", arguments: [:], in: context) }
        _ = await Refusal.Code.of { _ = try await fixture.gateway.answer("no.such_tool", arguments: [:], in: context) }
        _ = await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: "junk", connectionID: "c2") }
        _ = await fixture.gateway.listToolsJSON(in: context)

        let text = String(decoding: fixture.gateway.metrics.exposition(), as: UTF8.self)
        #expect(
            Self.sample(
                text,
                #"mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="repo.read_file",leasehold_tier="read",outcome="ok"}"#
            ) == 2)
        #expect(
            Self.sample(
                text,
                #"mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="_unknown",leasehold_tier="none",outcome="refused"}"#
            ) == 1)
        #expect(Self.sample(text, #"leasehold_refusals_total{code="tool_not_in_scope"}"#) == 2)
        #expect(Self.sample(text, #"leasehold_refusals_total{code="claim_invalid"}"#) == 1)
        #expect(Self.sample(text, #"mcp_server_operation_duration_seconds_count{mcp_method_name="tools/list""#) == 1)
        #expect((Self.sample(text, "leasehold_audit_commit_batch_size_count") ?? 0) >= 1)
        // repo.read_file's tier is cacheable: the second call was a hit.
        #expect(Self.sample(text, #"leasehold_cache_requests_total{result="miss"}"#) == 1)
        #expect(Self.sample(text, #"leasehold_cache_requests_total{result="hit"}"#) == 1)
        #expect(!text.contains("no.such_tool"))
        #expect(!text.contains("acme"))
        #expect(!text.contains(claim))
    }

    @Test func workerEventsKeepTheLiveGaugeAndTenantsOnlyWhenAsked() {
        let event = WorkerEvent(
            kind: .spawned, workerID: "wkr_1", tenantID: "acme", workspaceID: "main", sessionID: "ses_1",
            actorID: "alice", leaseID: "lse_1", tier: "read", isolation: .session, reason: nil, detail: nil,
            spawnDuration: .milliseconds(12))
        var destroyed = event
        destroyed.kind = .destroyed
        destroyed.reason = .idle

        let plain = LeaseholdMetrics()
        plain.worker(event)
        plain.worker(event)
        plain.worker(destroyed)
        let text = String(decoding: plain.exposition(), as: UTF8.self)
        #expect(Self.sample(text, #"leasehold_workers_live{tier="read"}"#) == 1)
        #expect(Self.sample(text, #"leasehold_workers_spawned_total{tier="read"}"#) == 2)
        #expect(Self.sample(text, #"leasehold_workers_destroyed_total{tier="read",reason="idle_timeout"}"#) == 1)
        #expect(Self.sample(text, "leasehold_worker_spawn_duration_seconds_count") == 2)
        #expect(!text.contains("acme"))

        let perTenant = LeaseholdMetrics(perTenantLabels: true)
        perTenant.worker(event)
        let tenantText = String(decoding: perTenant.exposition(), as: UTF8.self)
        #expect(Self.sample(tenantText, #"leasehold_workers_live{tier="read",tenant="acme"}"#) == 1)
    }
}
