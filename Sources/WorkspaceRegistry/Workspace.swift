/// A directory tree registered for one tenant. The only source of filesystem roots in Leasehold:
/// no path, tenant id or workspace id is ever taken from tool arguments or model text.
public struct Workspace: Hashable, Sendable, Codable {
    /// The tenant that owns the workspace.
    public var tenantID: String
    /// The workspace id, unique within its tenant.
    public var workspaceID: String
    /// The canonical absolute root directory.
    public var root: String
    /// When true, write and exec tools are refused in this workspace.
    public var readOnly: Bool

    /// Creates a workspace record (validation happens in ``WorkspaceRules``).
    public init(tenantID: String, workspaceID: String, root: String, readOnly: Bool = false) {
        self.tenantID = tenantID
        self.workspaceID = workspaceID
        self.root = root
        self.readOnly = readOnly
    }

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenant_id"
        case workspaceID = "workspace_id"
        case root
        case readOnly = "read_only"
    }

    /// Decodes a workspace; `read_only` defaults to false.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.tenantID = try container.decode(String.self, forKey: .tenantID)
        self.workspaceID = try container.decode(String.self, forKey: .workspaceID)
        self.root = try container.decode(String.self, forKey: .root)
        self.readOnly = try container.decodeIfPresent(Bool.self, forKey: .readOnly) ?? false
    }
}
