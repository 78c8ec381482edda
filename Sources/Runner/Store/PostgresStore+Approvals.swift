import Foundation
import PostgresNIO

extension PostgresStore {
    public func insertApproval(_ approval: Approval) async throws {
        let body = try encode(approval)
        _ = try await rows(
            """
            INSERT INTO approvals (id, tenant_id, session_id, status, binding_key, fingerprint, created_at, body)
            VALUES (\(approval.id), \(approval.tenantID), \(approval.sessionID), \(approval.status.rawValue),
                \(approval.bindingKey), \(approval.fingerprint), \(approval.createdAt.timeIntervalSince1970), \(body))
            """)
    }

    public func approval(id: String) async throws -> Approval? {
        try await approvals("SELECT body FROM approvals WHERE id = \(id)").first
    }

    public func approval(fingerprint: String) async throws -> Approval? {
        try await approvals("SELECT body FROM approvals WHERE fingerprint = \(fingerprint)").first
    }

    public func approvals(tenantID: String?, sessionID: String?, status: Approval.Status?, limit: Int) async throws
        -> [Approval]
    {
        // A filter left nil matches every row; the same statement serves every combination.
        let count = min(max(limit, 1), 1000)
        return try await approvals(
            """
            SELECT body FROM approvals
            WHERE (\(tenantID)::text IS NULL OR tenant_id = \(tenantID))
              AND (\(sessionID)::text IS NULL OR session_id = \(sessionID))
              AND (\(status?.rawValue)::text IS NULL OR status = \(status?.rawValue))
            ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT \(count)
            """)
    }

    public func approvals(bindingKey: String) async throws -> [Approval] {
        try await approvals(
            "SELECT body FROM approvals WHERE binding_key = \(bindingKey) ORDER BY created_at, id COLLATE \"C\"")
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

    /// Read-modify-write with the row locked (`FOR UPDATE`) to commit: a node consuming the same
    /// grant waits, then reads what this one wrote. `change` says whether it changed anything
    /// (only then is the row written).
    private func modifyApproval(_ id: String, _ change: (inout Approval) throws -> Bool) async throws
        -> (approval: Approval, changed: Bool)?
    {
        try await transaction { connection in
            guard
                let body = try await self.rows(
                    "SELECT body FROM approvals WHERE id = \(id) FOR UPDATE", on: connection
                ).first?.decode(String.self)
            else { return nil }
            var approval = try self.decode(Approval.self, body)
            guard try change(&approval) else { return (approval, false) }
            _ = try await self.rows(
                "UPDATE approvals SET status = \(approval.status.rawValue), body = \(try self.encode(approval)) WHERE id = \(id)",
                on: connection)
            return (approval, true)
        }
    }

    private func approvals(_ query: PostgresQuery) async throws -> [Approval] {
        try await rows(query).map { try decode(Approval.self, try $0.decode(String.self)) }
    }
}
