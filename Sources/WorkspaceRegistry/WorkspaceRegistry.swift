/// Where workspaces are persisted. The runner's store implements it (SQLite by default).
public protocol WorkspaceBackend: Sendable {
    /// All registered workspaces.
    func allWorkspaces() async throws -> [Workspace]
    /// The workspace registered under (tenant, workspace), if any.
    func workspace(tenantID: String, workspaceID: String) async throws -> Workspace?
    /// Validates `workspace` against `rules` and the registered set, and inserts it, in one
    /// transaction so two concurrent registrations cannot both pass the overlap check.
    func insertWorkspace(_ workspace: Workspace, validatingWith rules: WorkspaceRules) async throws
    /// Removes a workspace; returns whether one was removed.
    func deleteWorkspace(tenantID: String, workspaceID: String) async throws -> Bool
}

/// Resolves `(tenant_id, workspace_id)` to a root. The only source of filesystem roots.
public struct WorkspaceRegistry: Sendable {
    private let backend: any WorkspaceBackend
    /// The registration rules (bases, protected paths).
    public let rules: WorkspaceRules

    /// Creates a registry over `backend`.
    public init(backend: any WorkspaceBackend, rules: WorkspaceRules = WorkspaceRules()) {
        self.backend = backend
        self.rules = rules
    }

    /// Registers a workspace after checking every registration rule.
    public func register(_ workspace: Workspace) async throws {
        try rules.validateRoot(workspace.root, tenantID: workspace.tenantID)
        try await backend.insertWorkspace(workspace, validatingWith: rules)
    }

    /// Creates a workspace whose root Leasehold allocates under the first base
    /// (`<base>/<tenant>/<workspace>`, owned by `owner`) and registers it. A tenant never names a
    /// host path; this is how its workspaces come to be.
    public func create(tenantID: String, workspaceID: String, readOnly: Bool, owner: WorkspaceOwner?) async throws
        -> Workspace
    {
        if try await backend.workspace(tenantID: tenantID, workspaceID: workspaceID) != nil {
            throw WorkspaceError(.alreadyExists, "workspace \(workspaceID) is already registered for tenant \(tenantID)")
        }
        let root = try rules.allocate(tenantID: tenantID, workspaceID: workspaceID, owner: owner)
        let workspace = Workspace(tenantID: tenantID, workspaceID: workspaceID, root: root, readOnly: readOnly)
        try await register(workspace)
        return workspace
    }

    /// Resolves a workspace or throws ``WorkspaceError/Code/notFound``.
    public func resolve(tenantID: String, workspaceID: String) async throws -> Workspace {
        guard let workspace = try await backend.workspace(tenantID: tenantID, workspaceID: workspaceID) else {
            throw WorkspaceError(.notFound, "workspace \(workspaceID) is not registered for tenant \(tenantID)")
        }
        return workspace
    }

    /// Lists the workspaces of one tenant, or of every tenant when `tenantID` is nil.
    public func list(tenantID: String?) async throws -> [Workspace] {
        let all = try await backend.allWorkspaces()
        guard let tenantID else { return all }
        return all.filter { $0.tenantID == tenantID }
    }

    /// Removes a workspace registration.
    public func remove(tenantID: String, workspaceID: String) async throws {
        guard try await backend.deleteWorkspace(tenantID: tenantID, workspaceID: workspaceID) else {
            throw WorkspaceError(.notFound, "workspace \(workspaceID) is not registered for tenant \(tenantID)")
        }
    }
}
