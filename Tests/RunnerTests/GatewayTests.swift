import Foundation
import MCP
import Synchronization
import Testing
import WorkspaceRegistry

@testable import Runner

@Suite(.timeLimit(.minutes(1))) struct GatewayAuthenticationTests {
    @Test func acceptsAFreshClaimAndBindsItToOneConnection() async throws {
        let fixture = try await GatewayFixture()
        let (session, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c1")
        #expect(context.session.id == session.id)
        _ = try await fixture.gateway.authenticate(token: claim, connectionID: "c1")
        #expect(
            await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: claim, connectionID: "c2") }
                == "claim_replayed")
    }

    @Test func refusesMissingClaimRevokedSessionAndReplacedLease() async throws {
        let fixture = try await GatewayFixture()
        #expect(
            await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: nil, connectionID: "c") }
                == "claim_missing")

        let (session, claim) = try await fixture.session()
        let (_, renewedClaim) = try await fixture.admin.renewLease(
            sessionID: session.id, ttlSeconds: nil, by: .operator)
        #expect(
            await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: claim, connectionID: "c") }
                == "lease_replaced")
        _ = try await fixture.gateway.authenticate(token: renewedClaim, connectionID: "c")

        _ = try await fixture.admin.revokeSession(id: session.id, by: .operator)
        #expect(
            await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: renewedClaim, connectionID: "c") }
                == "session_revoked")
    }

    @Test func actorHandOffInvalidatesTheOldActorsClaims() async throws {
        let fixture = try await GatewayFixture()
        let (session, claim) = try await fixture.session()
        _ = try await fixture.admin.patchSession(
            id: session.id, patch: SessionPatch(actorID: .set("bob")), by: .operator)
        #expect(
            await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: claim, connectionID: "c") }
                == "boundary_mismatch")
        let (_, bobClaim) = try await fixture.admin.mintClaim(
            sessionID: session.id, ttlSeconds: nil, allowedTools: nil, by: .operator)
        _ = try await fixture.gateway.authenticate(token: bobClaim, connectionID: "c")
    }

    @Test func aClaimNamingAnotherTenantIsABoundaryMismatch() async throws {
        let fixture = try await GatewayFixture()
        let (acme, _) = try await fixture.session("acme")
        let forged = try await fixture.gateway.minter.mint(
            sessionID: acme.id, tenantID: "globex", actorID: "alice", workspaceID: "main", leaseID: acme.lease.id,
            leaseExpiresAt: acme.lease.expiresAt, ttl: .seconds(60))
        #expect(
            await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: forged, connectionID: "c") }
                == "boundary_mismatch")
    }

    @Test func aConnectionServesOnlyOneSession() async throws {
        let fixture = try await GatewayFixture()
        let (_, first) = try await fixture.session("acme")
        let (_, second) = try await fixture.session("acme")
        _ = try await fixture.gateway.authenticate(token: first, connectionID: "c")
        #expect(
            await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: second, connectionID: "c") }
                == "boundary_mismatch")
    }

    @Test func leaseExpiryIsEnforcedWithoutAnyCallInBetween() async throws {
        let clock = Mutex(Date())
        let fixture = try await GatewayFixture(now: { clock.withLock { $0 } })
        let (session, _) = try await fixture.session()
        let (_, claim) = try await fixture.admin.mintClaim(
            sessionID: session.id, ttlSeconds: 60, allowedTools: nil, by: .operator)
        _ = try await fixture.gateway.authenticate(token: claim, connectionID: "c")
        clock.withLock { $0 = $0.addingTimeInterval(3 * 3600) }
        let code = await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: claim, connectionID: "c") }
        #expect(code == "claim_expired")
    }

    @Test func revokedLeaseRefusesUntilRenewed() async throws {
        let fixture = try await GatewayFixture()
        let (session, claim) = try await fixture.session()
        _ = try await fixture.admin.revokeLease(sessionID: session.id, by: .operator)
        #expect(
            await Refusal.Code.of { _ = try await fixture.gateway.authenticate(token: claim, connectionID: "c") }
                == "lease_expired")
    }
}

@Suite(.timeLimit(.minutes(1))) struct AdminServiceTests {
    @Test func serverAndBundleTogetherAreRejected() async throws {
        let fixture = try await GatewayFixture(catalog: try Catalog(extra: [], bundles: ["b": ["repo.*"]]))
        await #expect(
            throws: APIError(
                .scopeConflict, "server_id and bundle_id cannot be set together; choose one universe")
        ) {
            _ = try await fixture.session(server: "repo", bundle: "b")
        }
    }

    @Test func tenantAdminKeysManageOnlyTheirTenant() async throws {
        let fixture = try await GatewayFixture()
        let key = try await fixture.admin.createAdminKey(tenantID: "acme", by: .operator)
        let principal = try await fixture.admin.principal(forKey: key)
        #expect(principal == .tenant("acme"))
        let (globexSession, _) = try await fixture.session("globex")
        await #expect(throws: APIError.self) {
            _ = try await fixture.admin.session(id: globexSession.id, by: principal)
        }
        await #expect(throws: APIError.self) {
            _ = try await fixture.admin.revokeSession(id: globexSession.id, by: principal)
        }
        await #expect(throws: APIError.self) {
            _ = try await fixture.admin.createAdminKey(tenantID: "acme", by: principal)
        }
        await #expect(throws: APIError.self) {
            _ = try await fixture.admin.createSession(
                CreateSessionRequest(tenantID: "globex", actorID: "x", workspaceID: "main"), by: principal)
        }
        #expect(try await fixture.admin.listWorkspaces(tenantID: nil, by: principal).map(\.tenantID) == ["acme"])
        await #expect(throws: APIError.self) { _ = try await fixture.admin.principal(forKey: "not-a-key") }
    }

    @Test func sessionsCannotUseAnotherTenantsWorkspace() async throws {
        let fixture = try await GatewayFixture()
        _ = try await fixture.admin.registerWorkspace(
            .init(tenantID: "globex", workspaceID: "secret"), by: .operator)
        await #expect(throws: APIError.self) {
            _ = try await fixture.admin.createSession(
                CreateSessionRequest(tenantID: "acme", actorID: "a", workspaceID: "secret"), by: .operator)
        }
    }

    @Test func mergePatchDistinguishesOmittedNullAndValue() async throws {
        let fixture = try await GatewayFixture()
        let (session, _) = try await fixture.session(allow: ["repo.*"], deny: ["repo.write_file"])
        func patch(_ json: String) async throws -> Session {
            let decoded = try JSONDecoder().decode(SessionPatch.self, from: Data(json.utf8))
            return try await fixture.admin.patchSession(id: session.id, patch: decoded, by: .operator)
        }
        var updated = try await patch(#"{"denied_tool_names": ["shell.*"]}"#)
        #expect(updated.allowedToolNames == ["repo.*"])
        #expect(updated.deniedToolNames == ["shell.*"])
        updated = try await patch(#"{"allowed_tool_names": null}"#)
        #expect(updated.allowedToolNames == nil)
        #expect(updated.deniedToolNames == ["shell.*"])
        #expect(updated.version == 3)
        await #expect(throws: APIError.self) { _ = try await patch(#"{"tenant_id": "globex"}"#) }
        await #expect(throws: APIError.self) { _ = try await patch(#"{"actor_id": null}"#) }
        await #expect(throws: APIError.self) { _ = try await patch(#"{"allowed_tool_names": ["bad pattern"]}"#) }
    }
}

@Suite struct ReadOnlyWorkspaceTests {
    /// A workspace registered read-only refuses write and exec tiers before any worker starts,
    /// and still serves reads; the refusal is audited with its code.
    @Test func writeAndExecToolsAreRefusedInAReadOnlyWorkspace() async throws {
        let recorder = InvocationRecorder()
        let fixture = try await GatewayFixture(executor: recorder)
        _ = try await fixture.admin.registerWorkspace(
            RegisterWorkspaceRequest(tenantID: "acme", workspaceID: "frozen", readOnly: true), by: .operator)
        let (_, claim) = try await fixture.admin.createSession(
            CreateSessionRequest(tenantID: "acme", actorID: "alice", workspaceID: "frozen"), by: .operator)
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c")
        for (tool, arguments) in [
            ("repo.write_file", ["path": Value.string("a"), "content": .string("x")]),
            ("repo.apply_patch", ["patch": .string("")]), ("shell.run", ["command": .string("true")]),
        ] {
            let result = try await fixture.gateway.call(tool, arguments: arguments, in: context)
            guard case .object(let content)? = result.structuredContent, case .object(let error)? = content["error"]
            else {
                Issue.record("\(tool): no structured error: \(result)")
                continue
            }
            #expect(error["code"] == .string("workspace_read_only"), "\(tool)")
        }
        #expect(await recorder.invocations.isEmpty)
        _ = try await fixture.gateway.call("repo.read_file", arguments: ["path": "a"], in: context)
        #expect(await recorder.invocations.map(\.tool) == ["repo.read_file"])
        let audited = try fixture.gateway.audit.records(limit: 200).compactMap(\.event)
        #expect(audited.filter { $0.code == "workspace_read_only" }.count == 3)
    }
}
