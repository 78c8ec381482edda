import Foundation
import WorkspaceRegistry

/// The `make run` demo: two tenants with one workspace each, and a ready session for acme.
public enum Demo {
    /// Creates workspace `demo` for acme and globex under the workspace base with a few files, and creates a
    /// session for `acme`/`alice`. Returns the session and its claim.
    public static func prepare(_ runtime: Runtime) async throws -> (Session, String) {
        for tenant in ["acme", "globex"] {
            // Allocated by the runner under its workspace base, like any tenant's workspace.
            let workspace: Workspace
            if let existing = try await runtime.gateway.store.workspace(tenantID: tenant, workspaceID: "demo") {
                workspace = existing
            } else {
                workspace = try await runtime.admin.registerWorkspace(
                    RegisterWorkspaceRequest(tenantID: tenant, workspaceID: "demo"), by: .operator)
            }
            let root = workspace.root
            let readme = root + "/README.md"
            if !FileManager.default.fileExists(atPath: readme) {
                try FileManager.default.createDirectory(atPath: root + "/src", withIntermediateDirectories: true)
                try "# \(tenant) demo repository\n\nOnly \(tenant)'s sessions can see this file.\n".write(
                    toFile: readme, atomically: true, encoding: .utf8)
                try "print(\"hello from \(tenant)\")\n".write(
                    toFile: root + "/src/main.py", atomically: true, encoding: .utf8)
                // The knowledge base's per-tenant data (examples/kb_server.py reads <workspace>/kb).
                try FileManager.default.createDirectory(atPath: root + "/kb", withIntermediateDirectories: true)
                for (topic, text) in [
                    ("kb_finance", "\(tenant): Q3 revenue grew 12%; travel is reimbursed within 30 days."),
                    ("kb_hr", "\(tenant): 25 days of leave; remote work up to three days a week."),
                    ("kb_legal", "\(tenant): contracts above 50k need two signatures."),
                ] {
                    try (text + "\n").write(toFile: root + "/kb/\(topic).txt", atomically: true, encoding: .utf8)
                }
                // Written by the runner: give the files to the tenant's host ids (root runner).
                if let owner = try await runtime.gateway.hostIDs?.owner(forTenant: tenant) {
                    _ = WorkspaceTree.chown(root, to: owner)
                }
            }
        }
        return try await runtime.admin.createSession(
            CreateSessionRequest(tenantID: "acme", actorID: "alice", workspaceID: "demo", deniedToolNames: ["shell.*"]),
            by: .operator)
    }
}
