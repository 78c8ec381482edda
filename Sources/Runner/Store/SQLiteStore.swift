import Foundation
import GRDB
import Synchronization
import WorkspaceRegistry

/// The embedded default store: one SQLite file (WAL) under the state directory.
public final class SQLiteStore: LeaseholdStore {
    private let pool: DatabasePool
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder
    /// Every call reads its session; while the database is unchanged it comes from memory.
    /// SQLite's `PRAGMA data_version`, read on a connection of its own, changes whenever any other
    /// connection commits (this store's writer, or another process such as the `leasehold` CLI),
    /// and then the whole cache is dropped: a revocation, renewal, PATCH or hand-off is seen by the
    /// next call wherever it was written.
    private let versionProbe: DatabaseQueue
    private let sessionCache = Mutex(SessionCache())
    private struct SessionCache {
        var version: Int64 = -1
        var sessions: [String: Session] = [:]
        /// Workspaces by tenant and id (every call resolves its session's workspace).
        var workspaces: [WorkspaceKey: Workspace] = [:]
    }
    private struct WorkspaceKey: Hashable {
        var tenantID: String
        var workspaceID: String
    }
    /// Bounds the cache (a session body is ~1 KB); when full it starts over.
    private static let sessionCacheLimit = 50_000

    /// Opens (and migrates) the database at `path`.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        // GRDB's WAL set-up runs after prepareDatabase and lowers the writer to NORMAL (an fsync
        // only at checkpoints; found with strace: 4 syncs in 400 commits). Every commit must sync.
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        try Self.migrator.migrate(pool)
        var probe = Configuration()
        probe.readonly = true
        probe.busyMode = .timeout(5)
        versionProbe = try DatabaseQueue(path: path, configuration: probe)
    }

    /// The database's change counter as this store's probe connection sees it.
    private func dataVersion() throws -> Int64 {
        try versionProbe.inDatabase { db in try Int64.fetchOne(db, sql: "PRAGMA data_version") ?? -1 }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "workspaces") { table in
                table.column("tenant_id", .text).notNull()
                table.column("workspace_id", .text).notNull()
                table.column("root", .text).notNull().unique()
                table.column("read_only", .boolean).notNull().defaults(to: false)
                table.column("created_at", .datetime).notNull()
                table.primaryKey(["tenant_id", "workspace_id"])
            }
            try db.create(table: "sessions") { table in
                table.primaryKey("id", .text)
                table.column("tenant_id", .text).notNull().indexed()
                table.column("body", .blob).notNull()
            }
            try db.create(table: "claim_bindings") { table in
                table.primaryKey("jti", .text)
                table.column("fingerprint", .text).notNull()
                table.column("connection_id", .text).notNull()
                table.column("session_id", .text).notNull()
                table.column("expires_at", .double).notNull().indexed()
            }
            try db.create(table: "admin_keys") { table in
                table.primaryKey("id", .text)
                table.column("tenant_id", .text).notNull()
                table.column("key_hash", .text).notNull().unique()
                table.column("created_at", .datetime).notNull()
            }
        }
        migrator.registerMigration("v2-approvals") { db in
            try db.create(table: "approvals") { table in
                table.primaryKey("id", .text)
                table.column("tenant_id", .text).notNull().indexed()
                table.column("session_id", .text).notNull().indexed()
                table.column("status", .text).notNull()
                table.column("binding_key", .text).notNull().indexed()
                table.column("fingerprint", .text).notNull().unique()
                table.column("created_at", .double).notNull()
                table.column("body", .blob).notNull()
            }
        }
        migrator.registerMigration("v3-tenant-host-ids") { db in
            // A tenant's slot fixes the host uid/gid its workers run as and its workspaces are
            // owned by; it must outlive the tenant's workspaces, so it is never deleted.
            try db.create(table: "tenant_host_ids") { table in
                table.primaryKey("tenant_id", .text)
                table.column("slot", .integer).notNull().unique()
            }
        }
        migrator.registerMigration("v3-claim-bindings-by-issuer") { db in
            // v1 keyed bindings by jti alone, global across tenants: a tenant-bound key could burn
            // another tenant's claim by presenting its jti first. SQLite cannot change a primary key
            // in place, so the table is rebuilt keyed by (key_id, tenant_id, jti).
            try db.create(table: "claim_bindings_v3") { table in
                table.column("key_id", .text).notNull()
                table.column("tenant_id", .text).notNull()
                table.column("jti", .text).notNull()
                table.column("fingerprint", .text).notNull()
                table.column("connection_id", .text).notNull()
                table.column("session_id", .text).notNull()
                table.column("expires_at", .double).notNull().indexed()
                table.primaryKey(["key_id", "tenant_id", "jti"])
            }
            // Bindings made before the upgrade keep refusing replays until they expire: their key is
            // unknown, so they are carried over with key_id '' and matched for any key of their
            // tenant (see bindClaim). The tenant comes from the bound session.
            try db.execute(
                sql: """
                    INSERT INTO claim_bindings_v3
                        (key_id, tenant_id, jti, fingerprint, connection_id, session_id, expires_at)
                    SELECT '', COALESCE(sessions.tenant_id, ''), claim_bindings.jti, claim_bindings.fingerprint,
                           claim_bindings.connection_id, claim_bindings.session_id, claim_bindings.expires_at
                    FROM claim_bindings LEFT JOIN sessions ON sessions.id = claim_bindings.session_id
                    """)
            try db.drop(table: "claim_bindings")
            try db.rename(table: "claim_bindings_v3", to: "claim_bindings")
        }
        migrator.registerMigration("v4-session-live-until") { db in
            // Until when a session can still be used (its lease's end; 0 once revoked), so a
            // tenant's live sessions are counted without reading every body (tenant_limits.sessions).
            try db.alter(table: "sessions") { table in table.add(column: "live_until", .double).notNull().defaults(to: 0) }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            for row in try Row.fetchAll(db, sql: "SELECT id, body FROM sessions") {
                let body: Data = row["body"]
                guard let session = try? decoder.decode(Session.self, from: body) else { continue }
                try db.execute(
                    sql: "UPDATE sessions SET live_until = ? WHERE id = ?",
                    arguments: [Self.liveUntil(session), row["id"] as String])
            }
            try db.create(index: "sessions_by_tenant_live_until", on: "sessions", columns: ["tenant_id", "live_until"])
        }
        return migrator
    }

    /// When `session` stops being usable: its lease's end, or 0 once it is revoked.
    static func liveUntil(_ session: Session) -> Double {
        session.revokedAt == nil ? session.lease.expiresAt.timeIntervalSince1970 : 0
    }

    /// The writer connection's `PRAGMA synchronous` (2 = FULL: every commit is synced).
    public func writerSynchronousSetting() async throws -> Int {
        try await pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    // MARK: Tenant host ids

    public func hostIDSlot(forTenant tenantID: String, capacity: Int) async throws -> Int? {
        if let slot = try await pool.read({ db in
            try Int.fetchOne(db, sql: "SELECT slot FROM tenant_host_ids WHERE tenant_id = ?", arguments: [tenantID])
        }) {
            return slot
        }
        return try await pool.write { db in
            if let slot = try Int.fetchOne(
                db, sql: "SELECT slot FROM tenant_host_ids WHERE tenant_id = ?", arguments: [tenantID])
            {
                return slot
            }
            let next = try Int.fetchOne(db, sql: "SELECT COALESCE(MAX(slot) + 1, 0) FROM tenant_host_ids") ?? 0
            guard next < capacity else { return nil }
            try db.execute(
                sql: "INSERT INTO tenant_host_ids (tenant_id, slot) VALUES (?, ?)", arguments: [tenantID, next])
            return next
        }
    }

    // MARK: Workspaces

    public func allWorkspaces() async throws -> [Workspace] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT tenant_id, workspace_id, root, read_only FROM workspaces ORDER BY tenant_id, workspace_id"
            )
            .map(Self.workspace)
        }
    }

    public func workspace(tenantID: String, workspaceID: String) async throws -> Workspace? {
        // Served from memory between writes, like sessions (see `versionProbe`).
        let key = WorkspaceKey(tenantID: tenantID, workspaceID: workspaceID)
        let version = try dataVersion()
        if let cached = cachedUnderVersion(version, { $0.workspaces[key] }) { return cached }
        let found = try await pool.read { db in
            try Row.fetchOne(
                db,
                sql:
                    "SELECT tenant_id, workspace_id, root, read_only FROM workspaces WHERE tenant_id = ? AND workspace_id = ?",
                arguments: [tenantID, workspaceID]
            ).map(Self.workspace)
        }
        if let found { cache(version) { $0.workspaces[key] = found } }
        return found
    }

    public func insertWorkspace(_ workspace: Workspace, validatingWith rules: WorkspaceRules) async throws {
        try await pool.write { db in
            // Validate against the registered set inside the write transaction, so two concurrent
            // registrations cannot both pass the overlap check.
            let existing = try Row.fetchAll(db, sql: "SELECT tenant_id, workspace_id, root, read_only FROM workspaces")
                .map(Self.workspace)
            try rules.validate(workspace, existing: existing)
            try db.execute(
                sql:
                    "INSERT INTO workspaces (tenant_id, workspace_id, root, read_only, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [workspace.tenantID, workspace.workspaceID, workspace.root, workspace.readOnly, Date()])
        }
    }

    public func deleteWorkspace(tenantID: String, workspaceID: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "DELETE FROM workspaces WHERE tenant_id = ? AND workspace_id = ?",
                arguments: [tenantID, workspaceID])
            return db.changesCount > 0
        }
    }

    private static func workspace(_ row: Row) -> Workspace {
        Workspace(
            tenantID: row["tenant_id"], workspaceID: row["workspace_id"], root: row["root"], readOnly: row["read_only"])
    }

    // MARK: Sessions

    public func insertSession(_ session: Session) async throws {
        _ = try await insertSession(session, livePerTenant: nil, now: session.createdAt)
    }

    public func insertSession(_ session: Session, livePerTenant limit: Int?, now: Date) async throws -> Bool {
        let body = try encoder.encode(session)
        return try await pool.write { db in
            // Counted and inserted in one write transaction: concurrent creations cannot both
            // take the last place.
            if let limit {
                let live =
                    try Int.fetchOne(
                        db, sql: "SELECT COUNT(*) FROM sessions WHERE tenant_id = ? AND live_until > ?",
                        arguments: [session.tenantID, now.timeIntervalSince1970]) ?? 0
                guard live < limit else { return false }
            }
            try db.execute(
                sql: "INSERT INTO sessions (id, tenant_id, body, live_until) VALUES (?, ?, ?, ?)",
                arguments: [session.id, session.tenantID, body, Self.liveUntil(session)])
            return true
        }
    }

    public func session(id: String) async throws -> Session? {
        // The version is taken before the read: a commit after it makes the next call drop what
        // this read caches.
        let version = try dataVersion()
        if let cached = cachedUnderVersion(version, { $0.sessions[id] }) { return cached }
        let body = try await pool.read { db in
            try Data.fetchOne(db, sql: "SELECT body FROM sessions WHERE id = ?", arguments: [id])
        }
        guard let session = try body.map({ try decoder.decode(Session.self, from: $0) }) else { return nil }
        cache(version) { $0.sessions[id] = session }
        return session
    }

    public func liveSessions(tenantID: String?, now: Date, limit: Int) async throws -> [Session] {
        let tenantClause = tenantID == nil ? "" : " AND tenant_id = ?"
        let sql = "SELECT body FROM sessions WHERE live_until > ?\(tenantClause) ORDER BY live_until DESC, id LIMIT ?"
        let cutoff = now.timeIntervalSince1970
        let count = min(max(limit, 1), 10_000)
        let bodies = try await pool.read { db in
            let arguments: StatementArguments =
                tenantID.map { [cutoff, $0, count] } ?? [cutoff, count]
            return try Data.fetchAll(db, sql: sql, arguments: arguments)
        }
        return try bodies.map { try decoder.decode(Session.self, from: $0) }
    }

    /// What the cache holds under `version`; a new version empties the cache first.
    private func cachedUnderVersion<T>(_ version: Int64, _ read: (SessionCache) -> T?) -> T? {
        sessionCache.withLock { cache in
            if cache.version != version {
                cache = SessionCache(version: version)
                return nil
            }
            return read(cache)
        }
    }

    /// Stores what was read under `version`, unless a newer version came in meanwhile.
    private func cache(_ version: Int64, _ store: (inout SessionCache) -> Void) {
        sessionCache.withLock { cache in
            guard cache.version == version else { return }
            if cache.sessions.count + cache.workspaces.count >= Self.sessionCacheLimit {
                cache = SessionCache(version: version)
            }
            store(&cache)
        }
    }

    public func updateSession(id: String, _ mutate: @Sendable (inout Session) throws -> Void) async throws -> Session? {
        let encoder = self.encoder
        let decoder = self.decoder
        return try await pool.write { db in
            guard let body = try Data.fetchOne(db, sql: "SELECT body FROM sessions WHERE id = ?", arguments: [id])
            else {
                return nil
            }
            var session = try decoder.decode(Session.self, from: body)
            try mutate(&session)
            try db.execute(
                sql: "UPDATE sessions SET body = ?, live_until = ? WHERE id = ?",
                arguments: [try encoder.encode(session), Self.liveUntil(session), id])
            return session
        }
    }

    // MARK: Replay bindings

    public func bindClaim(
        _ key: ClaimBindingKey, fingerprint: String, connectionID: String, sessionID: String, expiresAt: Date
    ) async throws -> BindingResult {
        try await pool.write { db in
            // key_id '' marks a binding carried over from before v3, when the verifying key was not
            // recorded: it still counts for its tenant and jti until it expires.
            if let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT fingerprint, connection_id FROM claim_bindings
                    WHERE tenant_id = ? AND jti = ? AND key_id IN (?, '')
                    ORDER BY key_id DESC LIMIT 1
                    """,
                arguments: [key.tenantID, key.jti, key.keyID])
            {
                let boundFingerprint: String = row["fingerprint"]
                let boundConnection: String = row["connection_id"]
                return boundFingerprint == fingerprint && boundConnection == connectionID
                    ? .alreadyBoundHere : .boundElsewhere
            }
            try db.execute(
                sql: """
                    INSERT INTO claim_bindings
                        (key_id, tenant_id, jti, fingerprint, connection_id, session_id, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    key.keyID, key.tenantID, key.jti, fingerprint, connectionID, sessionID,
                    expiresAt.timeIntervalSince1970,
                ])
            return .bound
        }
    }

    public func pruneBindings(expiredBefore date: Date) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "DELETE FROM claim_bindings WHERE expires_at < ?", arguments: [date.timeIntervalSince1970])
        }
    }

    // MARK: Admin keys

    public func insertAdminKey(id: String, tenantID: String, keyHash: String) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO admin_keys (id, tenant_id, key_hash, created_at) VALUES (?, ?, ?, ?)",
                arguments: [id, tenantID, keyHash, Date()])
        }
    }

    public func tenantForAdminKey(hash: String) async throws -> String? {
        try await pool.read { db in
            try String.fetchOne(db, sql: "SELECT tenant_id FROM admin_keys WHERE key_hash = ?", arguments: [hash])
        }
    }

    // MARK: Approvals

    public func insertApproval(_ approval: Approval) async throws {
        let body = try encoder.encode(approval)
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO approvals (id, tenant_id, session_id, status, binding_key, fingerprint, created_at, body)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    approval.id, approval.tenantID, approval.sessionID, approval.status.rawValue, approval.bindingKey,
                    approval.fingerprint, approval.createdAt.timeIntervalSince1970, body,
                ])
        }
    }

    public func approval(id: String) async throws -> Approval? {
        try await fetchApprovals(sql: "SELECT body FROM approvals WHERE id = ?", arguments: [id]).first
    }

    public func approval(fingerprint: String) async throws -> Approval? {
        try await fetchApprovals(sql: "SELECT body FROM approvals WHERE fingerprint = ?", arguments: [fingerprint])
            .first
    }

    public func approvals(tenantID: String?, sessionID: String?, status: Approval.Status?, limit: Int) async throws
        -> [Approval]
    {
        var clauses = ["1 = 1"]
        var arguments: [any DatabaseValueConvertible] = []
        if let tenantID {
            clauses.append("tenant_id = ?")
            arguments.append(tenantID)
        }
        if let sessionID {
            clauses.append("session_id = ?")
            arguments.append(sessionID)
        }
        if let status {
            clauses.append("status = ?")
            arguments.append(status.rawValue)
        }
        arguments.append(min(max(limit, 1), 1000))
        return try await fetchApprovals(
            sql: """
                SELECT body FROM approvals WHERE \(clauses.joined(separator: " AND "))
                ORDER BY created_at DESC, id DESC LIMIT ?
                """,
            arguments: StatementArguments(arguments))
    }

    public func approvals(bindingKey: String) async throws -> [Approval] {
        try await fetchApprovals(
            sql: "SELECT body FROM approvals WHERE binding_key = ? ORDER BY created_at, id", arguments: [bindingKey])
    }

    public func updateApproval(id: String, _ mutate: @Sendable (inout Approval) throws -> Void) async throws
        -> Approval?
    {
        try await modifyApproval(id) { approval in
            try mutate(&approval)
            return true
        }?.approval
    }

    public func consumeApproval(id: String, sessionID: String, leaseID: String, actorID: String, at now: Date)
        async throws -> Approval?
    {
        let result = try await modifyApproval(id) { approval in
            approval.consumeOneUse(at: now, sessionID: sessionID, leaseID: leaseID, actorID: actorID)
        }
        return result?.changed == true ? result?.approval : nil
    }

    /// Read-modify-write under the write lock; `change` says whether it changed anything (only
    /// then is the row written).
    private func modifyApproval(_ id: String, _ change: @Sendable (inout Approval) throws -> Bool) async throws
        -> (approval: Approval, changed: Bool)?
    {
        let encoder = self.encoder
        let decoder = self.decoder
        return try await pool.write { db in
            guard let body = try Data.fetchOne(db, sql: "SELECT body FROM approvals WHERE id = ?", arguments: [id])
            else { return nil }
            var approval = try decoder.decode(Approval.self, from: body)
            guard try change(&approval) else { return (approval, false) }
            try db.execute(
                sql: "UPDATE approvals SET status = ?, body = ? WHERE id = ?",
                arguments: [approval.status.rawValue, try encoder.encode(approval), id])
            return (approval, true)
        }
    }

    private func fetchApprovals(sql: String, arguments: StatementArguments) async throws -> [Approval] {
        let decoder = self.decoder
        let bodies = try await pool.read { db in try Data.fetchAll(db, sql: sql, arguments: arguments) }
        return try bodies.map { try decoder.decode(Approval.self, from: $0) }
    }
}
