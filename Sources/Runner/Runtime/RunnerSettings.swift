import Foundation
import Sandbox
import WorkspaceRegistry

/// What `serve` runs with: `leasehold.yaml` resolved once at start (every key's value, or its
/// default from ``defaults``), validated (a value out of range is a ``ConfigError`` naming its key),
/// with the flags that take precedence over the file merged in. `Runtime` and `serve` read their
/// settings from here only; ``LeaseholdConfig`` is the file as written (its keys, all optional).
///
/// Not here: what the file holds rather than tunes (`catalog`, `workspaces`, `servers`, `store`,
/// which `Runtime` reads from the file and checks against the policies and the state directory).
public struct RunnerSettings: Sendable, Equatable {
    /// The confined workers: the pool's bounds and each tenant's share of it (`worker_*`,
    /// `tenant_limits.worker_max_live` and `calls_in_flight`), cgroups, the executable and host ids.
    public struct Workers: Sendable, Equatable {
        /// `worker_idle_timeout_seconds`, `worker_max_calls_per_session`, `worker_max_live`, the
        /// spares' keys, and the tenant shares.
        public var pool: WorkerPool.Settings
        /// `worker_cgroups`: `auto` (true) gives each worker cgroups where the host delegates them.
        public var cgroups: Bool
        /// `worker_executable`; nil: `leasehold-worker` beside `leasehold`, or `LEASEHOLD_WORKER`.
        public var executable: String?
        /// `worker_host_ids.first`: a root runner's first tenant uid/gid.
        public var firstHostID: UInt32
        /// `worker_host_ids.count`: how many tenants the range holds.
        public var hostIDCount: UInt32
    }

    /// The audit trail's signing, syncing, sampling and reserve.
    public struct Audit: Sendable, Equatable {
        /// `audit_checkpoint_records`, `audit_checkpoint_seconds`.
        public var checkpoints: AuditCheckpointPolicy
        /// `audit_batched_sync_ms`: the longest a `batched` commit stays unsynced.
        public var batchedSyncInterval: Duration
        /// `audit_unauthenticated_interval_seconds`, `audit_unauthenticated_sources`.
        public var unauthenticatedRefusals: RefusalSampling
        /// `audit_reserve_mib` in bytes (0: no reserve).
        public var reserveBytes: Int64
    }

    /// What each tenant may hold besides its share of the workers (``Workers/pool``).
    public struct Tenants: Sendable, Equatable {
        /// `tenant_limits.sessions` and its overrides.
        public var sessions: TenantSessionLimits
        /// `tenant_limits` disk keys and their overrides.
        public var disk: DiskQuotas
    }

    /// `/metrics`.
    public struct Metrics: Sendable, Equatable {
        /// `metrics.listen` (or `--metrics`): `HOST:PORT` of a key-less listener; nil: none.
        public var listen: String?
        /// `metrics.per_tenant_labels`.
        public var perTenantLabels: Bool
    }

    /// `listen` (or `--http`): `HOST:PORT` of Streamable HTTP and the admin API.
    public var listen: String
    /// `issuer`, `audience`, `claim_max_lifetime_seconds`, `clock_skew_seconds`.
    public var claims: ClaimPolicy
    /// `keys_file`; nil: `<state dir>/keys.json` (``keysFile(stateDirectory:)``).
    public var keysFile: String?
    /// `http:` bounds, `allowed_origins` and `allowed_hosts`; host and port come from ``listen``
    /// when served (``httpSettings(listen:)``).
    public var http: HTTPSettings
    /// The workers.
    public var workers: Workers
    /// The audit trail.
    public var audit: Audit
    /// Tenants' sessions and disk.
    public var tenants: Tenants
    /// `policy_reload_interval_seconds`; nil (0 in the file): only on SIGHUP.
    public var policyReloadInterval: Duration?
    /// `workspace_bases`; nil: `<state dir>-workspaces` (``workspaceBases(stateDirectory:)``).
    public var workspaceBases: [String]?
    /// `node_id`; nil: the host name.
    public var nodeID: String?
    /// `/metrics`.
    public var metrics: Metrics
    /// `otlp_endpoint` (or `--otlp-endpoint`); nil: no tracing.
    public var otlpEndpoint: String?
    /// `oauth:` as written (validated when `serve` starts its HTTP listener).
    public var oauth: OAuthConfig

    /// Every default, declared here once (the types named hold the numbers they own: the claim
    /// rules, the HTTP bounds, the pool, refusal sampling, session limits, disk quotas, host ids).
    public static let defaults = RunnerSettings(
        listen: "\(HTTPSettings().host):\(HTTPSettings().port)", claims: ClaimPolicy(), keysFile: nil,
        http: HTTPSettings(),
        workers: Workers(
            pool: .defaults, cgroups: true, executable: nil, firstHostID: TenantHostIDs.defaultFirst,
            hostIDCount: TenantHostIDs.defaultCount),
        audit: Audit(
            checkpoints: AuditCheckpointPolicy(),
            batchedSyncInterval: .milliseconds(5), unauthenticatedRefusals: RefusalSampling(), reserveBytes: 64 << 20),
        tenants: Tenants(sessions: TenantSessionLimits(), disk: DiskQuotas()), policyReloadInterval: .seconds(2),
        workspaceBases: nil, nodeID: nil, metrics: Metrics(listen: nil, perTenantLabels: false), otlpEndpoint: nil,
        oauth: OAuthConfig())

    init(
        listen: String, claims: ClaimPolicy, keysFile: String?, http: HTTPSettings, workers: Workers, audit: Audit,
        tenants: Tenants, policyReloadInterval: Duration?, workspaceBases: [String]?, nodeID: String?,
        metrics: Metrics, otlpEndpoint: String?, oauth: OAuthConfig
    ) {
        self.listen = listen
        self.claims = claims
        self.keysFile = keysFile
        self.http = http
        self.workers = workers
        self.audit = audit
        self.tenants = tenants
        self.policyReloadInterval = policyReloadInterval
        self.workspaceBases = workspaceBases
        self.nodeID = nodeID
        self.metrics = metrics
        self.otlpEndpoint = otlpEndpoint
        self.oauth = oauth
    }

    /// Resolves `config` over ``defaults``, every value validated; `otlpEndpoint` (`--otlp-endpoint`)
    /// takes precedence over the file's.
    public init(_ config: LeaseholdConfig, otlpEndpoint: String? = nil) throws(ConfigError) {
        let defaults = Self.defaults
        self = defaults
        listen = config.listen ?? defaults.listen
        claims = config.claimPolicy
        keysFile = config.keysFile
        http = try config.httpSettings(host: defaults.http.host, port: defaults.http.port)
        workers = Workers(
            pool: try config.workerPoolSettings(), cgroups: try config.usesWorkerCgroups(),
            executable: config.workerExecutable,
            firstHostID: config.workerHostIDs?.first ?? defaults.workers.firstHostID,
            hostIDCount: config.workerHostIDs?.count ?? defaults.workers.hostIDCount)
        audit = Audit(
            checkpoints: try config.auditCheckpoints(), batchedSyncInterval: try config.auditBatchedSyncInterval(),
            unauthenticatedRefusals: try config.refusalSampling(), reserveBytes: try config.auditReserveBytes())
        tenants = Tenants(sessions: try config.tenantSessionLimits(), disk: try config.diskQuotas())
        policyReloadInterval = config.policyReloadInterval()
        workspaceBases = config.workspaceBases
        nodeID = config.nodeID
        metrics = Metrics(
            listen: config.metrics?.listen,
            perTenantLabels: config.metrics?.perTenantLabels ?? defaults.metrics.perTenantLabels)
        self.otlpEndpoint = otlpEndpoint ?? config.otlpEndpoint
        oauth = config.oauth ?? defaults.oauth
    }

    /// The HTTP settings of the listener on `listen` (`--http`), else on ``listen``.
    public func httpSettings(listen flag: String? = nil) throws -> HTTPSettings {
        let (host, port) = try parseHostPort(flag ?? listen)
        var settings = http
        settings.host = host
        settings.port = port
        return settings
    }

    /// Where the metrics-only listener is: `--metrics`, else ``Metrics/listen``; nil: none.
    public func metricsListen(_ flag: String? = nil) throws -> (host: String, port: Int)? {
        try (flag ?? metrics.listen).map(parseHostPort)
    }

    /// The key set file of a runner with state directory `stateDirectory`.
    public func keysFile(stateDirectory: String) -> String { keysFile ?? stateDirectory + "/keys.json" }

    /// The workspace bases of a runner with state directory `stateDirectory`.
    public func workspaceBases(stateDirectory: String) -> [String] {
        workspaceBases ?? [stateDirectory + "-workspaces"]
    }
}
