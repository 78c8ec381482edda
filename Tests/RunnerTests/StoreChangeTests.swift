import Foundation
import Sandbox
import Synchronization
import Testing

@testable import Runner

/// What a node does when the shared store tells it of a change another node made
/// (`Gateway.apply(_:)`): the write is made straight to the store here, as another node's admin
/// call would have made it, so nothing on this gateway ran the effects itself.
@Suite struct StoreChangeTests {
    /// Records every retirement it is asked for.
    final class RecordingExecutor: WorkerlessExecutor {
        let retired = Mutex<[String]>([])

        func execute(_ invocation: ToolInvocation) async -> ToolExecution {
            ToolExecution(
                outcome: .completed(result: Array("{}".utf8), isError: false), workerID: nil,
                isolation: invocation.tier.isolation)
        }

        func tiersChanged(_ tiers: Set<String>) async {}

        func retire(session sessionID: String, reason: WorkerRetirement) async {
            retired.withLock { $0.append("session \(sessionID) \(reason.rawValue)") }
        }

        func retire(session sessionID: String, exceptLease currentLease: String?, reason: WorkerRetirement) async {
            retired.withLock { $0.append("session \(sessionID) except \(currentLease ?? "-") \(reason.rawValue)") }
        }

        func retire(tenant tenantID: String, workspace workspaceID: String, reason: WorkerRetirement) async {
            retired.withLock { $0.append("workspace \(tenantID)/\(workspaceID) \(reason.rawValue)") }
        }
    }

    /// A gateway with one acme session bound to connection `c1` (and a globex one on `c2`).
    private func bound() async throws -> (GatewayFixture, RecordingExecutor, Session, Session) {
        let executor = RecordingExecutor()
        let fixture = try await GatewayFixture(executor: executor)
        let (acme, acmeClaim) = try await fixture.session("acme")
        let (globex, globexClaim) = try await fixture.session("globex")
        _ = try await fixture.gateway.authenticate(token: acmeClaim, connectionID: "c1")
        _ = try await fixture.gateway.authenticate(token: globexClaim, connectionID: "c2")
        #expect(await fixture.gateway.connections.sessionIDs() == [acme.id, globex.id])
        return (fixture, executor, acme, globex)
    }

    @Test func aSessionRevokedElsewhereClosesItsConnectionsAndWorkersHere() async throws {
        let (fixture, executor, acme, globex) = try await bound()
        let written = try #require(
            try await fixture.gateway.store.updateSession(id: acme.id) { session in
                session.revokedAt = Date()
                session.version += 1
            })
        await fixture.gateway.apply(.session(id: acme.id, version: written.version))
        #expect(await fixture.gateway.connections.sessionIDs() == [globex.id])
        #expect(executor.retired.withLock { $0 } == ["session \(acme.id) session_revoked"])
    }

    @Test func aLeaseRevokedElsewhereClosesItsConnectionsHere() async throws {
        let (fixture, executor, acme, globex) = try await bound()
        let written = try #require(
            try await fixture.gateway.store.updateSession(id: acme.id) { session in
                session.lease.revokedAt = Date()
                session.version += 1
            })
        await fixture.gateway.apply(.session(id: acme.id, version: written.version))
        #expect(await fixture.gateway.connections.sessionIDs() == [globex.id])
        #expect(executor.retired.withLock { $0 } == ["session \(acme.id) lease_replaced"])
    }

    @Test func aHandOffElsewhereClosesThePreviousHoldersConnectionHere() async throws {
        let (fixture, executor, acme, globex) = try await bound()
        let written = try #require(
            try await fixture.gateway.store.updateSession(id: acme.id) { session in
                session.actorID = "bob"
                session.version += 1
            })
        await fixture.gateway.apply(.session(id: acme.id, version: written.version))
        #expect(await fixture.gateway.connections.sessionIDs() == [globex.id])
        #expect(executor.retired.withLock { $0 } == ["session \(acme.id) hand_off"])
    }

    @Test func aRenewalElsewhereKillsOnlyThePreviousLeasesWorkers() async throws {
        let (fixture, executor, acme, _) = try await bound()
        let lease = Lease(id: "lse_next", issuedAt: Date(), expiresAt: Date().addingTimeInterval(600))
        let written = try #require(
            try await fixture.gateway.store.updateSession(id: acme.id) { session in
                session.lease = lease
                session.version += 1
            })
        await fixture.gateway.apply(.session(id: acme.id, version: written.version))
        #expect(await fixture.gateway.connections.sessionIDs().contains(acme.id))
        #expect(executor.retired.withLock { $0 } == ["session \(acme.id) except lse_next lease_replaced"])
    }

    @Test func aChangeAppliedTwiceDoesNothingMore() async throws {
        let (fixture, executor, acme, globex) = try await bound()
        let written = try #require(
            try await fixture.gateway.store.updateSession(id: acme.id) { session in
                session.revokedAt = Date()
                session.version += 1
            })
        for _ in 0..<2 { await fixture.gateway.apply(.session(id: acme.id, version: written.version)) }
        #expect(await fixture.gateway.connections.sessionIDs() == [globex.id])
        // The second pass finds nothing left to close; retiring nothing is harmless.
        #expect(executor.retired.withLock { $0 }.allSatisfy { $0 == "session \(acme.id) session_revoked" })
    }

    @Test func aResyncChecksEverySessionThisNodeServes() async throws {
        let (fixture, executor, acme, globex) = try await bound()
        _ = try await fixture.gateway.store.updateSession(id: globex.id) { session in
            session.revokedAt = Date()
            session.version += 1
        }
        await fixture.gateway.apply(.resynced)
        #expect(await fixture.gateway.connections.sessionIDs() == [acme.id])
        let retired = executor.retired.withLock { $0 }
        #expect(retired.contains("session \(globex.id) session_revoked"))
        #expect(!retired.contains { $0.hasPrefix("session \(acme.id) session_revoked") })
    }

    @Test func aWorkspaceRemovedElsewhereRetiresItsWorkersHere() async throws {
        let (fixture, executor, _, _) = try await bound()
        await fixture.gateway.apply(.workspaceRemoved(tenantID: "acme", workspaceID: "main"))
        #expect(executor.retired.withLock { $0 } == ["workspace acme/main workspace_removed"])
    }

    @Test func anotherNodesPolicyAsksThePolicyReloaderToReadTheFilesAgain() async throws {
        let (fixture, _, _, _) = try await bound()
        let inForce = fixture.gateway.resolver.policy.version
        // This node's own version: nothing to do.
        await fixture.gateway.apply(.policy(version: inForce, node: "n2"))
        await fixture.gateway.apply(.policy(version: "another-version", node: "n2"))
        fixture.gateway.policyAnnouncement.finish()
        var announced: [String] = []
        for await version in fixture.gateway.policyAnnouncements { announced.append(version) }
        #expect(announced == ["another-version"])
    }
}
