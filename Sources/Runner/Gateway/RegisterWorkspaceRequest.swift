/// Body of `POST /api/v1/workspaces`.
public struct RegisterWorkspaceRequest: RequestBody, Sendable {
    /// Owning tenant.
    public var tenantID: String
    /// The workspace id, unique within the tenant.
    public var workspaceID: String
    /// An existing directory inside `<base>/<tenant>/` (operator only); absent: allocated.
    public var root: String?
    /// Write and exec tools are refused in it.
    public var readOnly: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case tenantID = "tenant_id"
        case workspaceID = "workspace_id"
        case root
        case readOnly = "read_only"
    }

    /// Creates a request in code.
    public init(tenantID: String, workspaceID: String, root: String? = nil, readOnly: Bool? = nil) {
        self.tenantID = tenantID
        self.workspaceID = workspaceID
        self.root = root
        self.readOnly = readOnly
    }
}
