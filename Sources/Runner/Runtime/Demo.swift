import Foundation
import WorkspaceRegistry

/// The `make run` demo: two tenants with one workspace each, and a ready session for acme.
public enum Demo {
    /// Creates `<state dir>/demo/{acme,globex}` with a few files, registers them, and creates a
    /// session for `acme`/`alice`. Returns the session and its claim.
    public static func prepare(_ runtime: Runtime) async throws -> (Session, String) {
        let base = runtime.stateDir + "/demo"
        for tenant in ["acme", "globex"] {
            let root = base + "/" + tenant
            try FileManager.default.createDirectory(atPath: root + "/src", withIntermediateDirectories: true)
            let readme = root + "/README.md"
            if !FileManager.default.fileExists(atPath: readme) {
                try "# \(tenant) demo repository\n\nOnly \(tenant)'s sessions can see this file.\n".write(
                    toFile: readme, atomically: true, encoding: .utf8)
                try "print(\"hello from \(tenant)\")\n".write(
                    toFile: root + "/src/main.py", atomically: true, encoding: .utf8)
            }
            if try await runtime.gateway.store.workspace(tenantID: tenant, workspaceID: "demo") == nil {
                _ = try await runtime.admin.registerWorkspace(
                    Workspace(tenantID: tenant, workspaceID: "demo", root: root), by: .operator)
            }
        }
        return try await runtime.admin.createSession(
            CreateSessionRequest(tenantID: "acme", actorID: "alice", workspaceID: "demo", deniedToolNames: ["shell.*"]),
            by: .operator)
    }
}
