import Foundation
import PostgresNIO

extension PostgresStore {
    /// The advisory lock class (first key of the two-key form) under which a tenant's session
    /// inserts with a limit queue (second key: `hashtext(tenant_id)`): `LHSE` in ASCII. The
    /// two-key space never meets the one-key space of ``migrationLockKey``.
    public static let sessionLimitLockClass: Int32 = 0x4C48_5345
    /// The advisory lock (one-key form) under which host id slots are handed out: `LHHOSTID`.
    public static let hostIDLockKey: Int64 = 0x4C48_484F_5354_4944
    /// The advisory lock (one-key form) under which workspaces are registered: `LHWSPACE`.
    public static let workspaceLockKey: Int64 = 0x4C48_5753_5041_4345

    // MARK: Sessions

    public func insertSession(_ session: Session) async throws {
        _ = try await insertSession(session, livePerTenant: nil, now: session.createdAt)
    }

    public func insertSession(_ session: Session, livePerTenant limit: Int?, now: Date) async throws -> Bool {
        let body = try encode(session)
        let liveUntil = SQLiteStore.liveUntil(session)
        return try await transaction { connection in
            if let limit {
                // Counted and inserted under the tenant's lock, held to commit: concurrent
                // creations on any node queue here, and each counts the others' committed rows.
                _ = try await self.rows(
                    "SELECT pg_advisory_xact_lock(\(Self.sessionLimitLockClass), hashtext(\(session.tenantID)))",
                    on: connection)
                let live =
                    try await self.rows(
                        "SELECT COUNT(*) FROM sessions WHERE tenant_id = \(session.tenantID) AND live_until > \(now.timeIntervalSince1970)",
                        on: connection
                    ).first?.decode(Int.self) ?? 0
                guard live < limit else { return false }
            }
            _ = try await self.rows(
                """
                INSERT INTO sessions (id, tenant_id, version, live_until, body)
                VALUES (\(session.id), \(session.tenantID), \(session.version), \(liveUntil), \(body))
                """, on: connection)
            return true
        }
    }

    public func session(id: String) async throws -> Session? {
        let generation: UInt64?
        switch cache.withLock({ $0.lookup { $0.sessions[id] } }) {
        case .hit(let session): return session
        case .miss(let at): generation = at
        }
        guard let body = try await rows("SELECT body FROM sessions WHERE id = \(id)").first?.decode(String.self)
        else { return nil }
        let session = try decode(Session.self, body)
        cache.withLock { $0.fill(generation) { $0.sessions[id] = session } }
        return session
    }

    public func liveSessions(tenantID: String?, now: Date, limit: Int) async throws -> [Session] {
        let cutoff = now.timeIntervalSince1970
        let count = min(max(limit, 1), 10_000)
        let query: PostgresQuery =
            if let tenantID {
                """
                SELECT body FROM sessions WHERE live_until > \(cutoff) AND tenant_id = \(tenantID)
                ORDER BY live_until DESC, id COLLATE "C" LIMIT \(count)
                """
            } else {
                """
                SELECT body FROM sessions WHERE live_until > \(cutoff)
                ORDER BY live_until DESC, id COLLATE "C" LIMIT \(count)
                """
            }
        return try await rows(query).map { try decode(Session.self, try $0.decode(String.self)) }
    }

    public func updateSession(id: String, _ mutate: @Sendable (inout Session) throws -> Void) async throws -> Session? {
        let updated = try await transaction { connection -> Session? in
            guard
                let body = try await self.rows(
                    "SELECT body FROM sessions WHERE id = \(id) FOR UPDATE", on: connection
                ).first?.decode(String.self)
            else { return nil }
            var session = try self.decode(Session.self, body)
            try mutate(&session)
            _ = try await self.rows(
                """
                UPDATE sessions SET body = \(try self.encode(session)), version = \(session.version),
                    live_until = \(SQLiteStore.liveUntil(session))
                WHERE id = \(id)
                """, on: connection)
            try await self.announce(.session(id, version: session.version), on: connection)
            return session
        }
        if let updated { forget(.session(id, version: updated.version)) }
        return updated
    }

    // MARK: Replay bindings

    public func bindClaim(
        _ key: ClaimBindingKey, fingerprint: String, connectionID: String, sessionID: String, expiresAt: Date
    ) async throws -> BindingResult {
        try await withConnection { connection in
            // The insert decides: of racing nodes exactly one inserts (the others wait for its
            // commit on the primary key, then insert nothing) and every other reads its row.
            let inserted = try await self.rows(
                """
                INSERT INTO claim_bindings
                    (key_id, tenant_id, jti, fingerprint, connection_id, session_id, expires_at)
                VALUES (\(key.keyID), \(key.tenantID), \(key.jti), \(fingerprint), \(connectionID), \(sessionID),
                    \(expiresAt.timeIntervalSince1970))
                ON CONFLICT (key_id, tenant_id, jti) DO NOTHING
                RETURNING 1
                """, on: connection)
            if !inserted.isEmpty { return .bound }
            guard
                let row = try await self.rows(
                    """
                    SELECT fingerprint, connection_id FROM claim_bindings
                    WHERE key_id = \(key.keyID) AND tenant_id = \(key.tenantID) AND jti = \(key.jti)
                    """, on: connection
                ).first
            else {
                // Pruned between the two statements: the binding had expired, and the claim with it.
                return .boundElsewhere
            }
            let (boundFingerprint, boundConnection) = try row.decode((String, String).self)
            return boundFingerprint == fingerprint && boundConnection == connectionID
                ? .alreadyBoundHere : .boundElsewhere
        }
    }

    public func pruneBindings(expiredBefore date: Date) async throws {
        _ = try await rows("DELETE FROM claim_bindings WHERE expires_at < \(date.timeIntervalSince1970)")
    }

    // MARK: Admin keys

    public func insertAdminKey(id: String, tenantID: String, keyHash: String) async throws {
        _ = try await rows(
            "INSERT INTO admin_keys (id, tenant_id, key_hash, created_at) VALUES (\(id), \(tenantID), \(keyHash), \(Date()))"
        )
    }

    public func tenantForAdminKey(hash: String) async throws -> String? {
        try await rows("SELECT tenant_id FROM admin_keys WHERE key_hash = \(hash)").first?.decode(String.self)
    }

    // MARK: Tenant host ids

    public func hostIDSlot(forTenant tenantID: String, capacity: Int) async throws -> Int? {
        if let slot = try await rows("SELECT slot FROM tenant_host_ids WHERE tenant_id = \(tenantID)").first {
            return try slot.decode(Int.self)
        }
        return try await transaction { connection -> Int? in
            // One node at a time hands out slots (the unique constraints are the backstop).
            _ = try await self.rows("SELECT pg_advisory_xact_lock(\(Self.hostIDLockKey))", on: connection)
            if let slot = try await self.rows(
                "SELECT slot FROM tenant_host_ids WHERE tenant_id = \(tenantID)", on: connection
            ).first {
                return try slot.decode(Int.self)
            }
            let next =
                try await self.rows("SELECT COALESCE(MAX(slot) + 1, 0) FROM tenant_host_ids", on: connection)
                .first?.decode(Int.self) ?? 0
            guard next < capacity, next <= Int(Int32.max) else { return nil }
            _ = try await self.rows(
                "INSERT INTO tenant_host_ids (tenant_id, slot) VALUES (\(tenantID), \(Int32(next)))", on: connection)
            return next
        }
    }
}
