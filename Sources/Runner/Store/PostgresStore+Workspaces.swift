import Foundation
import PostgresNIO
import WorkspaceRegistry

extension PostgresStore {
    public func allWorkspaces() async throws -> [Workspace] {
        try await rows(
            """
            SELECT tenant_id, workspace_id, root, read_only FROM workspaces
            ORDER BY tenant_id COLLATE "C", workspace_id COLLATE "C"
            """
        ).map(Self.workspace)
    }

    public func workspace(tenantID: String, workspaceID: String) async throws -> Workspace? {
        // Served from memory while the listener holds, like sessions (see `PostgresStore+Changes`).
        let key = WorkspaceKey(tenantID: tenantID, workspaceID: workspaceID)
        let generation: UInt64?
        switch cache.withLock({ $0.lookup { $0.workspaces[key] } }) {
        case .hit(let workspace): return workspace
        case .miss(let at): generation = at
        }
        guard
            let found = try await rows(
                """
                SELECT tenant_id, workspace_id, root, read_only FROM workspaces
                WHERE tenant_id = \(tenantID) AND workspace_id = \(workspaceID)
                """
            ).first.map(Self.workspace)
        else { return nil }
        cache.withLock { $0.fill(generation) { $0.workspaces[key] = found } }
        return found
    }

    public func insertWorkspace(_ workspace: Workspace, validatingWith rules: WorkspaceRules) async throws {
        try await transaction { connection in
            // Validated against the registered set under one lock held to commit, so two
            // registrations on any nodes cannot both pass the overlap check.
            _ = try await self.rows("SELECT pg_advisory_xact_lock(\(Self.workspaceLockKey))", on: connection)
            let existing = try await self.rows(
                "SELECT tenant_id, workspace_id, root, read_only FROM workspaces", on: connection
            ).map(Self.workspace)
            try rules.validate(workspace, existing: existing)
            _ = try await self.rows(
                """
                INSERT INTO workspaces (tenant_id, workspace_id, root, read_only, created_at)
                VALUES (\(workspace.tenantID), \(workspace.workspaceID), \(workspace.root), \(workspace.readOnly), \(Date()))
                """, on: connection)
        }
    }

    public func deleteWorkspace(tenantID: String, workspaceID: String) async throws -> Bool {
        let notice = Notice.workspace(tenantID: tenantID, workspaceID: workspaceID)
        let deleted = try await transaction { connection in
            let removed = try await self.rows(
                "DELETE FROM workspaces WHERE tenant_id = \(tenantID) AND workspace_id = \(workspaceID) RETURNING 1",
                on: connection)
            guard !removed.isEmpty else { return false }
            try await self.announce(notice, on: connection)
            return true
        }
        if deleted { forget(notice) }
        return deleted
    }

    private static func workspace(_ row: PostgresRow) throws -> Workspace {
        let (tenantID, workspaceID, root, readOnly) = try row.decode((String, String, String, Bool).self)
        return Workspace(tenantID: tenantID, workspaceID: workspaceID, root: root, readOnly: readOnly)
    }
}
