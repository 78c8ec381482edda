import Crypto
import Foundation
import Logging
import MCP
import Sandbox
import Synchronization
import WorkspaceRegistry

/// The single enforcement path, a façade over the stages of a call:
///
/// 1. authenticate — ``ClaimAuthenticator``: the claim's text becomes a verified claim (cached);
/// 2. bind — ``SessionBinder``: session and lease checked, the claim bound to its connection;
/// 3. scope — ``ScopeResolver``: the one visibility decision;
/// 4. approve — ``ApprovalGate``;
/// 5. audit intent — ``CallRecorder``;
/// 6. execute — ``ToolDispatch``: workspace, result cache, confined worker;
/// 7. audit outcome — ``CallRecorder``;
/// 8. encode — ``ResultEncoder``.
///
/// Every transport authenticates a request once (stages 1-2, ``authenticate(token:connectionID:endpointServer:requestID:)``)
/// and hands the ``CallContext`` to the handler. `tools/list`, `system.search_tools`,
/// `system.execute_tool` and `tools/call` all decide through the same resolver; there is no second
/// implementation to drift.
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
    /// Stage 1.
    let authenticator: ClaimAuthenticator
    /// Stage 2.
    let binder: SessionBinder
    /// Stage 4.
    let approvals: ApprovalGate
    /// Stages 5 and 7.
    let recorder: CallRecorder
    /// Stage 6.
    let dispatch: ToolDispatch
    /// Disk quotas and the audit reserve: what each workspace and tenant holds.
    public let disk: DiskLedger
    /// Contexts of HTTP requests in the SDK's hands, authenticated once by the endpoint.
    let requestContexts = RequestContexts()
    /// Signed `requestState`s of approvals asked inside a call (MCP 2026-07-28).
    let requestStates: RequestStates
    /// Leases with a timer set, so each is watched once.
    let watchedLeases = Mutex<Set<String>>([])
    /// Refusals of requests without a verified claim, counted per source and interval rather than
    /// written one record each.
    public let unauthenticatedRefusals: UnauthenticatedRefusals
    /// Upstream MCP servers (`servers:`), whose tools join the catalog.
    public let upstreams: UpstreamRegistry
    /// What `/metrics` shows.
    public let metrics: LeaseholdMetrics
    /// OpenTelemetry spans, when an OTLP endpoint is configured (nil: no span is ever started).
    public let tracing: LeaseholdTracing?
    /// Appended to every MCP connection id (`Mcp-Session-Id`) this node issues: `.<node>` when
    /// several nodes share a store, so a load balancer routes a connection's requests to the node
    /// holding it (docs/cluster.md); empty on a single node.
    public let connectionIDSuffix: String
    /// Policy versions other nodes loaded and this one does not run (see `apply(_:)`): the policy
    /// reloader reads the files again on each. Newest kept; one consumer.
    let policyAnnouncements: AsyncStream<String>
    let policyAnnouncement: AsyncStream<String>.Continuation
    /// Upstream servers whose tools a call found changed, to be listed again
    /// (``requestUpstreamRefresh(_:)``); `serve`'s ``UpstreamRefresher`` lists them. One consumer.
    let upstreamRefreshes: AsyncStream<String>
    let upstreamRefresh: AsyncStream<String>.Continuation

    /// Creates the gateway.
    public init(
        store: any LeaseholdStore, verifier: ClaimVerifier, minter: ClaimMinter, catalog: Catalog, policy: RiskPolicy,
        audit: AuditLog, cache: ResultCache = ResultCache(), kernel: KernelFeatures = .current,
        workspaceRules: WorkspaceRules = WorkspaceRules(), hostIDs: TenantHostIDs? = nil,
        executor: any ToolExecutor, refusalSampling: RefusalSampling = RefusalSampling(),
        diskQuotas: DiskQuotas = DiskQuotas(), auditReserve: AuditReserve? = nil,
        upstreams: UpstreamRegistry = .none, metrics: LeaseholdMetrics = LeaseholdMetrics(),
        tracing: LeaseholdTracing? = nil, connectionIDSuffix: String = "", requestStateKey: SymmetricKey? = nil,
        logger: Logger = Logger(label: "leasehold.gateway"), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.connectionIDSuffix = connectionIDSuffix
        (policyAnnouncements, policyAnnouncement) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        (upstreamRefreshes, upstreamRefresh) = AsyncStream.makeStream()
        self.store = store
        self.upstreams = upstreams
        self.metrics = metrics
        self.tracing = tracing
        audit.metrics.withLock { $0 = metrics }
        self.unauthenticatedRefusals = UnauthenticatedRefusals(refusalSampling)
        let registry = WorkspaceRegistry(backend: store, rules: workspaceRules)
        self.registry = registry
        self.hostIDs = hostIDs
        self.verifier = verifier
        self.minter = minter
        self.executor = executor
        self.audit = audit
        self.cache = cache
        self.kernel = kernel
        let connections = ConnectionRegistry()
        self.connections = connections
        self.logger = logger
        self.now = now
        let recorder = CallRecorder(audit: audit, logger: logger)
        self.authenticator = ClaimAuthenticator(verifier: verifier, now: now)
        self.binder = SessionBinder(store: store, connections: connections, now: now)
        self.approvals = ApprovalGate(store: store, recorder: recorder, metrics: metrics, now: now)
        self.recorder = recorder
        self.requestStates = RequestStates(key: requestStateKey ?? SymmetricKey(size: .bits256), now: now)
        self.dispatch = ToolDispatch(
            registry: registry, executor: executor, upstreams: upstreams, cache: cache, kernel: kernel, hostIDs: hostIDs,
            logger: logger, now: now)
        self.disk = DiskLedger(
            quotas: diskQuotas, reserve: auditReserve, registry: registry, audit: audit, logger: logger)
        self.resolverState = Mutex(ScopeResolver(catalog: catalog, policy: policy.withServerTiers(upstreams.defaultTiers)))
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
    public func listTools(in context: CallContext, requestID: String? = nil) async -> [Tool] {
        let started = ContinuousClock.now
        let tools = resolver.listing(in: context.scope)
        await connections.recordListed(tools.map(\.name), connectionID: context.connectionID, claim: context.claim)
        observeList(in: context, requestID: requestID, since: started)
        return tools
    }

    /// The `tools/list` result of `context` as JSON (same tools and bookkeeping as ``listTools(in:)``).
    public func listToolsJSON(in context: CallContext, requestID: String? = nil) async -> Data {
        let started = ContinuousClock.now
        let (names, json) = resolver.listingJSON(in: context.scope)
        await connections.recordListed(names, connectionID: context.connectionID, claim: context.claim)
        observeList(in: context, requestID: requestID, since: started)
        return json
    }

}
