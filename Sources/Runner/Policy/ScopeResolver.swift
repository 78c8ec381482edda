import Foundation
import MCP
import Synchronization

/// What a session may see, compiled once per request from the session, its claim and the endpoint.
///
/// Visibility = universe (gateway | server | bundle) ∩ endpoint server ∩ claim.allowed_tools
/// ∩ session allow ∩ ¬ session deny ∩ "a tier exists for the tool". Deny always wins.
public struct Scope: Sendable {
    /// The session's tenant, whose policy overrides apply.
    public let tenantID: String
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
        tenantID = session.tenantID
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
///
/// A scope is a list of layers (``layers(for:)``), each the set of catalog tools it lets through.
/// ``decide(_:in:)`` walks the layers for one tool and names the first that hides it;
/// ``visibleTools(in:)`` intersects the same layers word by word. Both read the same layers, so
/// the list and the call path cannot disagree.
public struct ScopeResolver: Sendable {
    /// The tools that exist.
    public let catalog: Catalog
    /// The risk policy.
    public let policy: RiskPolicy
    private let index: CatalogIndex

    /// Precomputes every catalog tool's tier, server and MCP form.
    public init(catalog: Catalog, policy: RiskPolicy) {
        self.catalog = catalog
        self.policy = policy
        self.index = CatalogIndex(catalog: catalog, policy: policy)
    }

    /// The tier of a catalog tool, nil when unmapped or ambiguous; with `tenant`, after its overrides.
    public func tier(of tool: String, tenant: String? = nil) -> String? {
        index.position[tool].flatMap { index.tiers(for: tenant)[$0] }
    }

    /// Decides whether `tool` is visible in `scope`.
    public func decide(_ tool: String, in scope: Scope) -> ScopeDecision {
        if tool == BuiltinTools.searchTools || tool == BuiltinTools.executeTool {
            return .visible(tier: "system")
        }
        guard let position = index.position[tool] else {
            return .hidden(reason: "no tool named \(ToolName.display(tool)) exists in the catalog")
        }
        for layer in layers(for: scope) where !layer.admits(position) {
            return .hidden(reason: reason(layer.kind, tool: tool, scope: scope))
        }
        guard let tier = index.tiers(for: scope.tenantID)[position] else {
            // The tier layer admits exactly the tools with a tier.
            return .hidden(reason: reason(.tier, tool: tool, scope: scope))
        }
        return .visible(tier: tier)
    }

    /// Every visible tool, system built-ins first, then by name.
    public func visibleTools(in scope: Scope) -> [ToolDescriptor] {
        var result = BuiltinTools.system
        visibleSet(in: scope).forEach { result.append(index.tools[$0]) }
        return result
    }

    /// What `tools/list` returns: the visible tools in MCP form, built-ins first, then by name.
    public func listing(in scope: Scope) -> [Tool] {
        let visible = visibleSet(in: scope)
        var result = index.systemTools
        result.reserveCapacity(result.count + visible.population)
        visible.forEach { result.append(index.mcpTools[$0]) }
        return result
    }

    /// The `tools/list` result as JSON (`{"tools":[...]}`), assembled from per-tool fragments
    /// encoded once per catalog and policy, and the names it lists. Same tools, same order as
    /// ``listing(in:)``; no generic JSON tree is built per request.
    public func listingJSON(in scope: Scope) -> (names: [String], json: Data) {
        let visible = visibleSet(in: scope)
        var names = index.systemTools.map(\.name)
        var json = Data(#"{"tools":["#.utf8)
        for (offset, fragment) in index.systemToolsJSON.enumerated() {
            if offset > 0 { json.append(UInt8(ascii: ",")) }
            json.append(fragment)
        }
        var first = index.systemToolsJSON.isEmpty
        names.reserveCapacity(names.count + visible.population)
        visible.forEach { position in
            if !first { json.append(UInt8(ascii: ",")) }
            first = false
            json.append(index.mcpToolJSON(position))
            names.append(index.tools[position].name)
        }
        json.append(contentsOf: Array("]}".utf8))
        return (names, json)
    }

    /// Ranked search filtered by visibility after scoring.
    public func search(_ query: String, in scope: Scope, limit: Int) -> [ToolDescriptor] {
        let visible = visibleSet(in: scope)
        var result: [ToolDescriptor] = []
        for (name, _) in catalog.searchIndex.rank(query) {
            if name == BuiltinTools.searchTools || name == BuiltinTools.executeTool {
                if let tool = catalog.tool(named: name) { result.append(tool) }
            } else if let position = index.position[name], visible.contains(position) {
                result.append(index.tools[position])
            }
            if result.count >= limit { break }
        }
        return result
    }

    private func visibleSet(in scope: Scope) -> ToolBitSet {
        var visible = index.tiered
        for layer in layers(for: scope) { visible.formIntersection(layer.admitted) }
        return visible
    }

    /// The scope's layers in the order a hidden tool's reason is reported; the tier layer
    /// (``CatalogIndex/tiered``) comes last and is applied by the callers.
    func layers(for scope: Scope) -> [ScopeLayer] {
        var layers: [ScopeLayer] = []
        if let endpoint = scope.endpointServer {
            layers.append(ScopeLayer(kind: .endpoint(endpoint), admitted: index.servers(endpoint)))
        }
        if let server = scope.serverID {
            layers.append(ScopeLayer(kind: .server(server), admitted: index.servers(server)))
        }
        if let bundle = scope.bundle {
            layers.append(ScopeLayer(kind: .bundle(scope.bundleID ?? ""), admitted: index.mask(of: bundle)))
        }
        if let claimAllowed = scope.claimAllowed {
            layers.append(ScopeLayer(kind: .claimAllowed, admitted: index.mask(of: claimAllowed)))
        }
        if !scope.denied.patterns.isEmpty {
            layers.append(ScopeLayer(kind: .denied, admitted: index.mask(of: scope.denied).complement))
        }
        if let allowed = scope.allowed {
            layers.append(ScopeLayer(kind: .allowed, admitted: index.mask(of: allowed)))
        }
        if let override = policy.tenantOverrides[scope.tenantID], !override.denied.patterns.isEmpty {
            layers.append(ScopeLayer(kind: .tenantDenied, admitted: index.mask(of: override.denied).complement))
        }
        return layers
    }

    /// The operator-facing reason a layer hides `tool` (never shown to the caller).
    private func reason(_ kind: ScopeLayer.Kind, tool: String, scope: Scope) -> String {
        switch kind {
        case .endpoint(let server): return "this endpoint serves only server \(server)"
        case .server(let server): return "the session's universe is server \(server)"
        case .bundle(let bundle): return "tool \(tool) is not in the session's bundle \(bundle)"
        case .claimAllowed: return "tool \(tool) matches none of the claim's allowed_tools"
        case .denied:
            return "tool \(tool) is denied by session pattern \(scope.denied.firstMatch(tool)?.text ?? "?")"
        case .allowed: return "tool \(tool) matches none of the session's allowed_tool_names"
        case .tenantDenied:
            let override = policy.tenantOverrides[scope.tenantID]
            return
                "tool \(tool) is denied for tenant \(scope.tenantID) by pattern \(override?.denied.firstMatch(tool)?.text ?? "?") in \(override?.file ?? "its policy override")"
        case .tier:
            if let (a, b) = policy.ambiguity(for: tool) {
                return "tool \(tool) matches equally specific policy patterns \(a) and \(b) with different tiers"
            }
            return "no risk tier maps \(tool) in policies/tools.yaml; unmapped tools are denied"
        }
    }
}

/// One narrowing step of a scope: the catalog tools it lets through.
struct ScopeLayer {
    enum Kind {
        case endpoint(String), server(String), bundle(String), claimAllowed, denied, allowed, tenantDenied, tier
    }

    let kind: Kind
    let admitted: ToolBitSet

    func admits(_ position: Int) -> Bool { admitted.contains(position) }
}

/// The catalog laid out by position (sorted by name) for ``ScopeResolver``: tiers, servers, MCP
/// forms, and each pattern's matches, computed once per pattern and catalog.
final class CatalogIndex: Sendable {
    let tools: [ToolDescriptor]
    let mcpTools: [Tool]
    let systemTools: [Tool]
    /// The built-ins' MCP JSON.
    let systemToolsJSON: [Data]
    /// Each tool's MCP JSON, encoded on first listing (10,000 tools would cost ~150 ms up front).
    private let mcpJSON: Mutex<[Data?]>
    let position: [String: Int]
    /// Each tool's tier without tenant overrides; nil when unmapped or ambiguous.
    private let baseTiers: [String?]
    /// The tools with an unambiguous tier: the last layer of every scope. Tenant overrides change
    /// tiers, never this set: an override cannot make an unmapped tool visible.
    let tiered: ToolBitSet
    private let policy: RiskPolicy
    private let tenantTiers = Mutex<[String: [String?]]>([:])
    private let serverMasks: [String: ToolBitSet]
    private let patternMasks = Mutex<[String: ToolBitSet]>([:])
    /// Bounds the pattern cache (about 1.3 KB per pattern for 10,000 tools); when full it starts over.
    private static let patternCacheLimit = 4096

    init(catalog: Catalog, policy: RiskPolicy) {
        tools = catalog.tools
        mcpTools = tools.map(\.mcpTool)
        systemTools = BuiltinTools.system.map(\.mcpTool)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        systemToolsJSON = systemTools.map { (try? encoder.encode($0)) ?? Data("{}".utf8) }
        mcpJSON = Mutex([Data?](repeating: nil, count: tools.count))
        var position: [String: Int] = [:]
        var tiers: [String?] = []
        var tiered = ToolBitSet(count: tools.count)
        var servers: [String: ToolBitSet] = [:]
        for (index, tool) in tools.enumerated() {
            position[tool.name] = index
            let tier = policy.ambiguity(for: tool.name) == nil ? policy.tier(for: tool.name)?.name : nil
            tiers.append(tier)
            if tier != nil { tiered.insert(index) }
            servers[tool.server, default: ToolBitSet(count: tools.count)].insert(index)
        }
        self.position = position
        self.baseTiers = tiers
        self.policy = policy
        self.tiered = tiered
        self.serverMasks = servers
    }

    /// The MCP JSON of the tool at `position`.
    func mcpToolJSON(_ position: Int) -> Data {
        if let cached = mcpJSON.withLock({ $0[position] }) { return cached }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let encoded = (try? encoder.encode(mcpTools[position])) ?? Data("{}".utf8)
        mcpJSON.withLock { $0[position] = encoded }
        return encoded
    }

    /// Each tool's tier for `tenant`, after its overrides (computed once per tenant and policy).
    func tiers(for tenant: String?) -> [String?] {
        guard let tenant, policy.tenantOverrides[tenant] != nil else { return baseTiers }
        if let cached = tenantTiers.withLock({ $0[tenant] }) { return cached }
        let tiers = baseTiers.enumerated().map { index, base in
            base == nil ? nil : policy.tier(for: tools[index].name, tenant: tenant)?.name
        }
        tenantTiers.withLock { $0[tenant] = tiers }
        return tiers
    }

    /// The tools of one server (empty for a server without tools).
    func servers(_ server: String) -> ToolBitSet {
        serverMasks[server] ?? ToolBitSet(count: tools.count)
    }

    /// The tools matching any pattern of `set`.
    func mask(of set: PatternSet) -> ToolBitSet {
        var cached: [ToolBitSet] = []
        var missing: [ToolPattern] = []
        patternMasks.withLock { masks in
            for pattern in set.patterns {
                if let mask = masks[pattern.text] { cached.append(mask) } else { missing.append(pattern) }
            }
        }
        var result = ToolBitSet(count: tools.count)
        for mask in cached { result.formUnion(mask) }
        guard !missing.isEmpty else { return result }
        var computed: [(String, ToolBitSet)] = []
        for pattern in missing {
            let mask = matches(of: pattern)
            result.formUnion(mask)
            computed.append((pattern.text, mask))
        }
        patternMasks.withLock { masks in
            if masks.count + computed.count > Self.patternCacheLimit { masks.removeAll(keepingCapacity: true) }
            for (text, mask) in computed { masks[text] = mask }
        }
        return result
    }

    private func matches(of pattern: ToolPattern) -> ToolBitSet {
        var mask = ToolBitSet(count: tools.count)
        if pattern.isExact {
            if let index = position[pattern.text] { mask.insert(index) }
            return mask
        }
        for (index, tool) in tools.enumerated() where pattern.matches(tool.name) { mask.insert(index) }
        return mask
    }
}
