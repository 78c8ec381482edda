import Foundation
import Logging
import MCP
import Sandbox
import Synchronization
import WorkspaceRegistry

/// The single enforcement path: authenticate a claim, authorize a tool, call it.
///
/// `tools/list`, `system.search_tools`, `system.execute_tool` and `tools/call` all decide through
/// ``authorize(_:in:)``; there is no second implementation to drift.
public final class Gateway: Sendable {
    /// Persistence.
    public let store: any LeaseholdStore
    /// Workspace roots.
    public let registry: WorkspaceRegistry
    /// Claim verification.
    public let verifier: ClaimVerifier
    /// Claim minting for sessions created here.
    public let minter: ClaimMinter
    /// Where authorized calls go.
    public let executor: any ToolExecutor
    /// Connected MCP sessions, for `notifications/tools/list_changed`.
    public let connections: ConnectionRegistry
    /// The tamper-evident audit trail; a call whose record cannot be written is not run.
    public let audit: AuditLog
    /// Results of cacheable tiers, keyed by tenant, workspace and workspace generation.
    public let cache: ResultCache
    /// What this kernel offers; a tier needing a missing feature is refused, never weakened.
    public let kernel: KernelFeatures
    /// Each tenant's unprivileged host ids when the runner is root (nil when it is not): workers
    /// run as them and workspaces are owned by them.
    public let hostIDs: TenantHostIDs?
    let logger: Logger
    let now: @Sendable () -> Date
    let resolverState: Mutex<ScopeResolver>
    let policyState: Mutex<PolicyStatus>
    /// Verified tokens by token text, so a claim's signature is checked once, not per call.
    /// Time checks, session state and binding are still checked on every call.
    let verifiedTokens = Mutex<[String: VerifiedClaim]>([:])
    /// Bindings already confirmed in the store (binding key -> connection); a binding never changes.
    let confirmedBindings = Mutex<[ClaimBindingKey: String]>([:])
    static let tokenCacheLimit = 50_000
    /// Leases with a timer set, so each is watched once.
    let watchedLeases = Mutex<Set<String>>([])

    /// Creates the gateway.
    public init(
        store: any LeaseholdStore, verifier: ClaimVerifier, minter: ClaimMinter, catalog: Catalog, policy: RiskPolicy,
        audit: AuditLog, cache: ResultCache = ResultCache(), kernel: KernelFeatures = .current,
        workspaceRules: WorkspaceRules = WorkspaceRules(), hostIDs: TenantHostIDs? = nil,
        executor: any ToolExecutor,
        logger: Logger = Logger(label: "leasehold.gateway"),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = store
        self.registry = WorkspaceRegistry(backend: store, rules: workspaceRules)
        self.hostIDs = hostIDs
        self.verifier = verifier
        self.minter = minter
        self.executor = executor
        self.audit = audit
        self.cache = cache
        self.kernel = kernel
        self.connections = ConnectionRegistry()
        self.logger = logger
        self.now = now
        self.resolverState = Mutex(ScopeResolver(catalog: catalog, policy: policy))
        self.policyState = Mutex(PolicyStatus(version: policy.version, loadedAt: now(), lastRejection: nil))
    }

    /// The current catalog and policy.
    public var resolver: ScopeResolver { resolverState.withLock { $0 } }

    // MARK: Authorization

    /// The one visibility decision.
    public func authorize(_ tool: String, in context: CallContext) -> ScopeDecision {
        resolver.decide(tool, in: context.scope)
    }

    /// The tools visible in `context`.
    public func listTools(in context: CallContext) async -> [Tool] {
        let tools = resolver.listing(in: context.scope)
        await connections.recordListed(tools.map(\.name), connectionID: context.connectionID, claim: context.claim)
        return tools
    }

    /// The `tools/list` result of `context` as JSON (same tools and bookkeeping as ``listTools(in:)``).
    public func listToolsJSON(in context: CallContext) async -> Data {
        let (names, json) = resolver.listingJSON(in: context.scope)
        await connections.recordListed(names, connectionID: context.connectionID, claim: context.claim)
        return json
    }

}
