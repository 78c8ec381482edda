/// What a session may see, compiled once per request from the session, its claim and the endpoint.
///
/// Visibility = universe (gateway | server | bundle) ∩ endpoint server ∩ claim.allowed_tools
/// ∩ session allow ∩ ¬ session deny ∩ "a tier exists for the tool". Deny always wins.
public struct Scope: Sendable {
    /// Universe narrowed to one server.
    public let serverID: String?
    /// Universe narrowed to one bundle.
    public let bundleID: String?
    let bundle: PatternSet?
    /// A server-scoped endpoint (`/mcp/servers/{id}`) narrows further; it never widens.
    public let endpointServer: String?
    let claimAllowed: PatternSet?
    let allowed: PatternSet?
    let denied: PatternSet

    /// Compiles the scope of `session` as seen through `claimAllowedTools` and `endpointServer`.
    public init(session: Session, claimAllowedTools: [String]?, endpointServer: String?, catalog: Catalog)
        throws(Refusal)
    {
        serverID = session.serverID
        bundleID = session.bundleID
        if let bundleID = session.bundleID {
            guard let bundle = catalog.bundles[bundleID] else {
                throw Refusal(.toolNotInScope, "the session's bundle \(bundleID) no longer exists in the catalog")
            }
            self.bundle = bundle
        } else {
            bundle = nil
        }
        self.endpointServer = endpointServer
        do {
            claimAllowed = try claimAllowedTools.map { try PatternSet(parsing: $0) }
            allowed = try session.allowedToolNames.map { try PatternSet(parsing: $0) }
            denied = try PatternSet(parsing: session.deniedToolNames ?? [])
        } catch {
            throw Refusal(.claimInvalid, "\(error)")
        }
    }
}

/// The outcome of asking whether one tool is visible.
public enum ScopeDecision: Sendable, Hashable {
    /// Visible, with the tier that governs it (`system` for built-ins).
    case visible(tier: String)
    /// Hidden; `reason` is for operators (logs, audit, `policy explain`), never for the caller,
    /// to whom a hidden tool is indistinguishable from one that does not exist.
    case hidden(reason: String)

    /// True when visible.
    public var isVisible: Bool {
        if case .visible = self { return true }
        return false
    }
}

/// Decides visibility. The one function behind `tools/list`, `system.search_tools`,
/// `system.execute_tool` and `tools/call`.
public struct ScopeResolver: Sendable {
    /// The tools that exist.
    public let catalog: Catalog
    /// The risk policy.
    public let policy: RiskPolicy
    private let tierByTool: [String: String]

    /// Precomputes every catalog tool's tier.
    public init(catalog: Catalog, policy: RiskPolicy) {
        self.catalog = catalog
        self.policy = policy
        var tiers: [String: String] = [:]
        for tool in catalog.tools {
            if let tier = policy.tier(for: tool.name), policy.ambiguity(for: tool.name) == nil {
                tiers[tool.name] = tier.name
            }
        }
        self.tierByTool = tiers
    }

    /// The tier of a catalog tool, nil when unmapped or ambiguous.
    public func tier(of tool: String) -> String? { tierByTool[tool] }

    /// Decides whether `tool` is visible in `scope`.
    public func decide(_ tool: String, in scope: Scope) -> ScopeDecision {
        if tool == BuiltinTools.searchTools || tool == BuiltinTools.executeTool {
            return .visible(tier: "system")
        }
        guard let descriptor = catalog.tool(named: tool) else {
            return .hidden(reason: "no tool named \(tool) exists in the catalog")
        }
        let server = descriptor.server
        if let endpoint = scope.endpointServer, endpoint != server {
            return .hidden(reason: "this endpoint serves only server \(endpoint)")
        }
        if let serverID = scope.serverID, serverID != server {
            return .hidden(reason: "the session's universe is server \(serverID)")
        }
        if let bundle = scope.bundle, bundle.firstMatch(tool) == nil {
            return .hidden(reason: "tool \(tool) is not in the session's bundle \(scope.bundleID ?? "")")
        }
        if let claimAllowed = scope.claimAllowed, claimAllowed.firstMatch(tool) == nil {
            return .hidden(reason: "tool \(tool) matches none of the claim's allowed_tools")
        }
        if let deny = scope.denied.firstMatch(tool) {
            return .hidden(reason: "tool \(tool) is denied by session pattern \(deny)")
        }
        if let allowed = scope.allowed, allowed.firstMatch(tool) == nil {
            return .hidden(reason: "tool \(tool) matches none of the session's allowed_tool_names")
        }
        guard let tier = tierByTool[tool] else {
            if let (a, b) = policy.ambiguity(for: tool) {
                return .hidden(
                    reason: "tool \(tool) matches equally specific policy patterns \(a) and \(b) with different tiers")
            }
            return .hidden(reason: "no risk tier maps \(tool) in policies/tools.yaml; unmapped tools are denied")
        }
        return .visible(tier: tier)
    }

    /// Every visible tool, system built-ins first, then by name.
    public func visibleTools(in scope: Scope) -> [ToolDescriptor] {
        var result = BuiltinTools.system
        for tool in catalog.tools where decide(tool.name, in: scope).isVisible {
            result.append(tool)
        }
        return result
    }

    /// Ranked search filtered by visibility after scoring.
    public func search(_ query: String, in scope: Scope, limit: Int) -> [ToolDescriptor] {
        var result: [ToolDescriptor] = []
        for (name, _) in catalog.searchIndex.rank(query) where decide(name, in: scope).isVisible {
            if let tool = catalog.tool(named: name) { result.append(tool) }
            if result.count >= limit { break }
        }
        return result
    }
}
