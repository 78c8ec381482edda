import Sandbox
import WorkspaceRegistry

// The resolution of a decoded configuration, one section at a time, each validated over
// ``RunnerSettings/defaults`` (``RunnerSettings/init(_:otlpEndpoint:)`` runs them all once). Apart
// from the decoding in LeaseholdConfig.swift so the fuzz target of the decoding
// (Fuzz/targets/config_yaml.swift) compiles without the runner types these name.
extension LeaseholdConfig {
    /// Whether workers get cgroups of their own where the host allows (`worker_cgroups`).
    public func usesWorkerCgroups() throws(ConfigError) -> Bool {
        switch workerCgroups {
        case nil: return RunnerSettings.defaults.workers.cgroups
        case "auto": return true
        case "off": return false
        case let other?: throw ConfigError("worker_cgroups is \(other.debugDescription); use auto or off")
        }
    }

    /// The catalog: `catalog:` inline or `catalog_file:`, never both; the built-ins when neither.
    public func loadCatalog() throws -> Catalog {
        if let catalogFile {
            guard catalog == nil else { throw ConfigError("set either catalog or catalog_file, not both") }
            return try Catalog.load(file: catalogFile)
        }
        return try catalog?.catalog() ?? Catalog()
    }

    /// How long a `batched` audit commit may stay unsynced.
    func auditBatchedSyncInterval() throws(ConfigError) -> Duration {
        let milliseconds =
            auditBatchedSyncMs ?? Int(RunnerSettings.defaults.audit.batchedSyncInterval / .milliseconds(1))
        guard (1...1000).contains(milliseconds) else {
            throw ConfigError("audit_batched_sync_ms must be between 1 and 1000, not \(milliseconds)")
        }
        return .milliseconds(milliseconds)
    }

    /// How many spares the runner keeps and how long an untaken one lives, validated: a negative
    /// count or a zero or day-long idle time is refused at start rather than silently clamped.
    func workerSpares() throws(ConfigError) -> (perSession: Int, maximum: Int, idleTimeout: Duration) {
        let defaults = RunnerSettings.defaults.workers.pool
        let maximum = workerMaxSpares ?? defaults.maximumSpares
        let perSession = workerSparesPerSession ?? defaults.sparesPerSession
        let seconds = workerSpareIdleTimeoutSeconds ?? Int(defaults.spareIdleTimeout.components.seconds)
        guard (0...4096).contains(maximum) else {
            throw ConfigError("worker_max_spares must be between 0 and 4096, not \(maximum)")
        }
        guard (0...8).contains(perSession) else {
            throw ConfigError("worker_spares_per_session must be between 0 and 8, not \(perSession)")
        }
        guard (1...3600).contains(seconds) else {
            throw ConfigError("worker_spare_idle_timeout_seconds must be between 1 and 3600, not \(seconds)")
        }
        return (perSession, maximum, .seconds(seconds))
    }

    /// How often the audit log's head is signed, validated: a zero or negative value would mean
    /// never, and a huge one leaves most of the trail unsigned, so both are refused at start.
    func auditCheckpoints() throws(ConfigError) -> AuditCheckpointPolicy {
        let defaults = RunnerSettings.defaults.audit.checkpoints
        let records = auditCheckpointRecords ?? defaults.records
        let seconds = auditCheckpointSeconds ?? Int(defaults.interval.components.seconds)
        guard (1...1_000_000).contains(records) else {
            throw ConfigError("audit_checkpoint_records must be between 1 and 1000000, not \(records)")
        }
        guard (1...3600).contains(seconds) else {
            throw ConfigError("audit_checkpoint_seconds must be between 1 and 3600, not \(seconds)")
        }
        return AuditCheckpointPolicy(records: records, interval: .seconds(seconds))
    }

    /// How unauthenticated refusals are aggregated into the audit trail, validated.
    func refusalSampling() throws(ConfigError) -> RefusalSampling {
        let defaults = RunnerSettings.defaults.audit.unauthenticatedRefusals
        let seconds = auditUnauthenticatedIntervalSeconds ?? Int(defaults.interval.components.seconds)
        let sources = auditUnauthenticatedSources ?? defaults.maximumSources
        guard (1...3600).contains(seconds) else {
            throw ConfigError("audit_unauthenticated_interval_seconds must be between 1 and 3600, not \(seconds)")
        }
        guard (1...1_000_000).contains(sources) else {
            throw ConfigError("audit_unauthenticated_sources must be between 1 and 1000000, not \(sources)")
        }
        return RefusalSampling(interval: .seconds(seconds), maximumSources: sources)
    }

    /// The HTTP settings for a listener on `host:port`: origins and hosts from the top level, the
    /// bounds from `http:` (each validated; an absent key keeps its default).
    func httpSettings(host: String, port: Int) throws(ConfigError) -> HTTPSettings {
        var settings = RunnerSettings.defaults.http
        settings.host = host
        settings.port = port
        settings.allowedOrigins = allowedOrigins ?? settings.allowedOrigins
        settings.allowedHosts = allowedHosts ?? settings.allowedHosts
        try http?.apply(to: &settings)
        return settings
    }

    /// Each tenant's share of the runner, validated: a cap must be at least 1 and a tenant's worker
    /// cap at most the runner's (`worker_max_live`); an override names a tenant id.
    func tenantShares() throws(ConfigError) -> TenantShares {
        let runner = maximumLiveWorkers
        var shares = TenantShares(maximumWorkers: runner)
        func caps(_ workers: Int?, _ calls: Int?, base: TenantShares.Caps, for name: String) throws(ConfigError)
            -> TenantShares.Caps
        {
            let result = TenantShares.Caps(workers: workers ?? base.workers, callsInFlight: calls ?? base.callsInFlight)
            guard (1...runner).contains(result.workers) else {
                throw ConfigError(
                    "\(name) worker_max_live must be between 1 and worker_max_live (\(runner)), not \(result.workers)")
            }
            guard (1...100_000).contains(result.callsInFlight) else {
                throw ConfigError("\(name) calls_in_flight must be between 1 and 100000, not \(result.callsInFlight)")
            }
            return result
        }
        guard let tenantLimits else { return shares }
        (shares.standard, shares.overrides) = try tenantLimits.resolve(shares.standard) {
            values, base, name throws(ConfigError) in
            try caps(values.workerMaxLive, values.callsInFlight, base: base, for: name)
        }
        return shares
    }

    /// Live sessions each tenant may hold (`tenant_limits.sessions`, default 10,000, 1-1,000,000;
    /// per-tenant overrides under `tenant_limits.tenants.<id>.sessions`).
    func tenantSessionLimits() throws(ConfigError) -> TenantSessionLimits {
        var limits = RunnerSettings.defaults.tenants.sessions
        func checked(_ value: Int?, _ base: Int, for name: String) throws(ConfigError) -> Int {
            let result = value ?? base
            guard (1...TenantSessionLimits.maximum).contains(result) else {
                throw ConfigError(
                    "\(name) sessions must be between 1 and \(TenantSessionLimits.maximum), not \(result)")
            }
            return result
        }
        guard let tenantLimits else { return limits }
        (limits.standard, limits.overrides) = try tenantLimits.resolve(limits.standard) {
            values, base, name throws(ConfigError) in
            try checked(values.sessions, base, for: name)
        }
        return limits
    }

    /// Live workers this runner may hold (`worker_max_live`, default 512, at least 1).
    var maximumLiveWorkers: Int { max(1, workerMaxLive ?? RunnerSettings.defaults.workers.pool.maximumWorkers) }

    /// The worker pool's settings: every `worker_*` key over ``WorkerPool/Settings/defaults``,
    /// validated, and each tenant's share (`tenant_limits`).
    func workerPoolSettings() throws(ConfigError) -> WorkerPool.Settings {
        let defaults = RunnerSettings.defaults.workers.pool
        let spares = try workerSpares()
        return WorkerPool.Settings(
            idleTimeout: workerIdleTimeoutSeconds.map { .seconds($0) } ?? defaults.idleTimeout,
            spareIdleTimeout: spares.idleTimeout, sparesPerSession: spares.perSession, maximumSpares: spares.maximum,
            maximumCallsPerSession: max(1, workerMaxCallsPerSession ?? defaults.maximumCallsPerSession),
            maximumWorkers: maximumLiveWorkers, shares: try tenantShares())
    }

    /// The claim rules this configuration implies.
    var claimPolicy: ClaimPolicy {
        let defaults = RunnerSettings.defaults.claims
        return ClaimPolicy(
            issuer: issuer ?? defaults.issuer, audience: audience ?? defaults.audience,
            maximumLifetime: claimMaxLifetimeSeconds.map { .seconds($0) } ?? defaults.maximumLifetime,
            clockSkew: clockSkewSeconds.map { .seconds($0) } ?? defaults.clockSkew)
    }

    /// How often `serve` looks for edited policy files; nil: only on SIGHUP (0, or below).
    func policyReloadInterval() -> Duration? {
        guard let seconds = policyReloadIntervalSeconds else { return RunnerSettings.defaults.policyReloadInterval }
        return seconds > 0 ? .seconds(seconds) : nil
    }
}
