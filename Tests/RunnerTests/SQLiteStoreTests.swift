import Foundation
import GRDB
import Testing
import WorkspaceRegistry

@testable import Runner

@Suite struct SQLiteStoreTests {
    func key(_ jti: String, keyID: String = "dev", tenant: String = "acme") -> ClaimBindingKey {
        ClaimBindingKey(keyID: keyID, tenantID: tenant, jti: jti)
    }

    /// Sessions are served from memory between writes; a write by this store or by another process
    /// on the same file (the CLI revoking a session of a live server) is seen by the next read.
    @Test func cachedSessionsFollowEveryWriteWhoeverMadeIt() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let server = try SQLiteStore(path: path)
        let cli = try SQLiteStore(path: path)
        let now = Date()
        let session = Session(
            id: "s1", tenantID: "acme", actorID: "a", workspaceID: "w", serverID: nil, bundleID: nil,
            allowedToolNames: nil, deniedToolNames: nil, lease: Lease(id: "l1", issuedAt: now, expiresAt: now + 600),
            claimTTLSeconds: 60, leaseTTLSeconds: 600, createdAt: now, updatedAt: now, revokedAt: nil, version: 1)
        try await server.insertSession(session)
        #expect(try await server.session(id: "s1")?.revokedAt == nil)
        #expect(try await server.session(id: "s1")?.revokedAt == nil)  // now from the cache
        _ = try await server.updateSession(id: "s1") { $0.actorID = "b" }
        #expect(try await server.session(id: "s1")?.actorID == "b")
        _ = try await cli.updateSession(id: "s1") { $0.revokedAt = now }
        #expect(try await server.session(id: "s1")?.revokedAt != nil)
        _ = try await cli.updateSession(id: "s1") { $0.lease = Lease(id: "l2", issuedAt: now, expiresAt: now + 600) }
        #expect(try await server.session(id: "s1")?.lease.id == "l2")
        #expect(try await server.session(id: "missing") == nil)
    }

    /// A tenant's live sessions are capped in the insert itself: revoked sessions and ended
    /// leases do not count, other tenants' sessions never do, and concurrent inserts cannot both
    /// take the last place.
    @Test func liveSessionsAreCappedPerTenant() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let store = try SQLiteStore(path: path)
        let now = Date()
        func session(_ id: String, tenant: String = "acme", ends: TimeInterval = 600) -> Session {
            Session(
                id: id, tenantID: tenant, actorID: "a", workspaceID: "w", serverID: nil, bundleID: nil,
                allowedToolNames: nil, deniedToolNames: nil, lease: Lease(id: "l" + id, issuedAt: now, expiresAt: now + ends),
                claimTTLSeconds: 60, leaseTTLSeconds: 600, createdAt: now, updatedAt: now, revokedAt: nil, version: 1)
        }
        #expect(try await store.insertSession(session("a1"), livePerTenant: 2, now: now))
        #expect(try await store.insertSession(session("ended", ends: -1), livePerTenant: 2, now: now))
        #expect(try await store.insertSession(session("g1", tenant: "globex"), livePerTenant: 1, now: now))
        #expect(try await store.insertSession(session("a2"), livePerTenant: 2, now: now))
        #expect(try await store.insertSession(session("a3"), livePerTenant: 2, now: now) == false)
        #expect(try await store.session(id: "a3") == nil, "a refused insert writes nothing")
        _ = try await store.updateSession(id: "a1") { $0.revokedAt = now }
        #expect(try await store.insertSession(session("a3"), livePerTenant: 2, now: now))
        // A renewed lease counts again; an hour later none of these is live.
        _ = try await store.updateSession(id: "ended") { $0.lease = Lease(id: "l9", issuedAt: now, expiresAt: now + 600) }
        #expect(try await store.insertSession(session("a4"), livePerTenant: 3, now: now) == false)
        #expect(try await store.insertSession(session("a4"), livePerTenant: 3, now: now + 3600))
        // Racing for the last place: exactly one wins.
        let fresh = try SQLiteStore(path: path + "-race")
        let results = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<8 {
                group.addTask { (try? await fresh.insertSession(session("r\(index)"), livePerTenant: 1, now: now)) ?? false }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.filter { $0 }.count == 1)
    }

    /// Workspaces are cached the same way: a removal by another process is seen at once.
    @Test func cachedWorkspacesFollowEveryWriteWhoeverMadeIt() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let server = try SQLiteStore(path: path)
        let cli = try SQLiteStore(path: path)
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("wsbase-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: base + "/acme/w", withIntermediateDirectories: true)
        let rules = WorkspaceRules(bases: [try PathChain.resolve(URL(fileURLWithPath: base).resolvingSymlinksInPath().path).get()])
        let root = rules.bases[0].path + "/acme/w"
        try await cli.insertWorkspace(Workspace(tenantID: "acme", workspaceID: "w", root: root), validatingWith: rules)
        #expect(try await server.workspace(tenantID: "acme", workspaceID: "w")?.root == root)
        #expect(try await server.workspace(tenantID: "acme", workspaceID: "w")?.root == root)  // cached
        #expect(try await server.workspace(tenantID: "globex", workspaceID: "w") == nil)
        #expect(try await cli.deleteWorkspace(tenantID: "acme", workspaceID: "w"))
        #expect(try await server.workspace(tenantID: "acme", workspaceID: "w") == nil)
    }

    @Test func bindsAClaimToItsFirstConnectionOnlyEvenAcrossReopen() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let expiry = Date().addingTimeInterval(600)
        do {
            let store = try SQLiteStore(path: path)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c1", sessionID: "s", expiresAt: expiry) == .bound)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                    == .alreadyBoundHere)
        }
        let reopened = try SQLiteStore(path: path)
        #expect(
            try await reopened.bindClaim(
                key("j"), fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry) == .boundElsewhere)
        #expect(
            try await reopened.bindClaim(
                key("j"), fingerprint: "other-token", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                == .boundElsewhere)
        try await reopened.pruneBindings(expiredBefore: expiry.addingTimeInterval(1))
        #expect(
            try await reopened.bindClaim(
                key("j"), fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry) == .bound)
    }

    @Test func concurrentBindingsOfOneClaimHaveExactlyOneWinner() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let store = try SQLiteStore(path: path)
        let results = await withTaskGroup(of: BindingResult?.self) { group in
            for index in 0..<16 {
                group.addTask {
                    try? await store.bindClaim(
                        key("race"), fingerprint: "f", connectionID: "c\(index)", sessionID: "s",
                        expiresAt: Date() + 600)
                }
            }
            return await group.reduce(into: [BindingResult?]()) { $0.append($1) }
        }
        #expect(results.filter { $0 == .bound }.count == 1)
        #expect(results.filter { $0 == .boundElsewhere }.count == 15)
    }

    @Test func aJtiIsBoundPerIssuingKeyAndTenant() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let store = try SQLiteStore(path: path)
        let expiry = Date() + 600
        #expect(
            try await store.bindClaim(
                key("shared", keyID: "globex-orchestrator", tenant: "globex"), fingerprint: "g", connectionID: "c1",
                sessionID: "s1", expiresAt: expiry) == .bound)
        // The same jti from another key or for another tenant is another claim.
        #expect(
            try await store.bindClaim(
                key("shared"), fingerprint: "a", connectionID: "c2", sessionID: "s2", expiresAt: expiry) == .bound)
        #expect(
            try await store.bindClaim(
                key("shared", keyID: "globex-orchestrator"), fingerprint: "b", connectionID: "c3", sessionID: "s3",
                expiresAt: expiry) == .bound)
        #expect(
            try await store.bindClaim(
                key("shared"), fingerprint: "x", connectionID: "c4", sessionID: "s2", expiresAt: expiry)
                == .boundElsewhere)
    }

    @Test func bindingsMadeBeforeTheUpgradeStillRefuseReplaysForTheirTenant() async throws {
        // A database in the v2 schema (claim_bindings keyed by jti alone) holding one live binding.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString).sqlite")
            .path
        let expiry = Date() + 600
        do {
            let old = try DatabaseQueue(path: path)
            try await old.write { db in
                try db.execute(
                    sql: """
                        CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                        INSERT INTO grdb_migrations VALUES ('v1'), ('v2-approvals');
                        CREATE TABLE workspaces (tenant_id TEXT NOT NULL, workspace_id TEXT NOT NULL,
                            root TEXT NOT NULL UNIQUE, read_only BOOLEAN NOT NULL DEFAULT 0,
                            created_at DATETIME NOT NULL, PRIMARY KEY (tenant_id, workspace_id));
                        CREATE TABLE sessions (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, body BLOB NOT NULL);
                        CREATE TABLE claim_bindings (jti TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                            connection_id TEXT NOT NULL, session_id TEXT NOT NULL, expires_at DOUBLE NOT NULL);
                        CREATE TABLE admin_keys (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,
                            key_hash TEXT NOT NULL UNIQUE, created_at DATETIME NOT NULL);
                        CREATE TABLE approvals (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,
                            session_id TEXT NOT NULL, status TEXT NOT NULL, binding_key TEXT NOT NULL,
                            fingerprint TEXT NOT NULL UNIQUE, created_at DOUBLE NOT NULL, body BLOB NOT NULL);
                        INSERT INTO sessions VALUES ('s1', 'acme', x'7B7D');
                        """)
                try db.execute(
                    sql: "INSERT INTO claim_bindings VALUES ('j', 'f', 'c1', 's1', ?)",
                    arguments: [expiry.timeIntervalSince1970])
            }
        }
        let store = try SQLiteStore(path: path)
        // The verifying key was not recorded before: the carried-over binding counts for any key of acme.
        #expect(
            try await store.bindClaim(
                key("j"), fingerprint: "f", connectionID: "c1", sessionID: "s1", expiresAt: expiry)
                == .alreadyBoundHere)
        #expect(
            try await store.bindClaim(
                key("j", keyID: "other"), fingerprint: "f", connectionID: "c2", sessionID: "s1", expiresAt: expiry)
                == .boundElsewhere)
        // Another tenant's jti namespace is its own.
        #expect(
            try await store.bindClaim(
                key("j", keyID: "globex-orchestrator", tenant: "globex"), fingerprint: "g", connectionID: "c3",
                sessionID: "s2", expiresAt: expiry) == .bound)
    }
}
