import Foundation
import Prometheus
import Sandbox
import Synchronization

/// What a runner counts, in the Prometheus text format at `/metrics` (docs/observability.md).
///
/// One registry per runner (never the process-global default), so tests that start several
/// runtimes in one process do not share counters. Handles are made once per label set and kept:
/// the hot path looks a handle up under a short lock and never builds label arrays again.
///
/// Labels are bounded: a tool label is a tool of the catalog or `_unknown` (a caller can make up
/// names, not series), codes come from the runner's own lists, and no tenant, session or claim
/// appears unless ``perTenantLabels`` is set (then `tenant` is added to the series a security team
/// slices by tenant: operations, refusals, workers).
public final class LeaseholdMetrics: Sendable {
    /// The OpenTelemetry MCP semantic conventions' explicit bucket boundaries for
    /// `mcp.server.operation.duration`, in seconds.
    public static let operationBuckets: [Double] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]
    /// Audit commits and worker spawns: milliseconds matter.
    static let latencyBuckets: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
    ]
    static let batchBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]

    /// The registry `/metrics` emits.
    public let registry: PrometheusCollectorRegistry
    /// Whether tenant ids label operation, refusal and worker series (config `metrics.per_tenant_labels`).
    public let perTenantLabels: Bool

    private struct OperationKey: Hashable {
        var method: String
        var tool: String
        var tier: String
        var outcome: String
        var tenant: String
    }
    private struct Pair: Hashable {
        var a: String
        var b: String
    }
    private struct Triple: Hashable {
        var a: String
        var b: String
        var c: String
    }

    private let operations = Mutex<[OperationKey: ValueHistogram]>([:])
    private let refusalCounters = Mutex<[Pair: Counter]>([:])
    private let approvalCounters = Mutex<[String: Counter]>([:])
    private let workerSpawns = Mutex<[Pair: Counter]>([:])
    private let workerDestroys = Mutex<[Triple: Counter]>([:])
    private let workerLive = Mutex<[Pair: Gauge]>([:])
    private let workerSpawnFailures = Mutex<[Pair: Counter]>([:])
    private let spawnLatency: ValueHistogram
    private let auditCommitLatency: ValueHistogram
    private let auditBatchSize: ValueHistogram
    let cacheHits: Counter
    let cacheMisses: Counter
    private let upstreamStates = Mutex<[Pair: Gauge]>([:])

    /// Creates the metrics of one runner.
    public init(perTenantLabels: Bool = false, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.perTenantLabels = perTenantLabels
        spawnLatency = registry.makeValueHistogram(
            name: "leasehold_worker_spawn_duration_seconds", buckets: Self.latencyBuckets,
            help: "Time from the spawn request to a confined worker's handshake.")
        auditCommitLatency = registry.makeValueHistogram(
            name: "leasehold_audit_commit_duration_seconds", buckets: Self.latencyBuckets,
            help: "Time to commit one batch of audit records (hash chain, insert, and fsync when full).")
        auditBatchSize = registry.makeValueHistogram(
            name: "leasehold_audit_commit_batch_size", buckets: Self.batchBuckets,
            help: "Audit records committed per group commit.")
        cacheHits = registry.makeCounter(
            name: "leasehold_cache_requests_total", labels: [("result", "hit")],
            help: "Result cache lookups of cacheable tiers, by result.")
        cacheMisses = registry.makeCounter(
            name: "leasehold_cache_requests_total", labels: [("result", "miss")],
            help: "Result cache lookups of cacheable tiers, by result.")
    }

    // MARK: Requests

    /// One MCP request handled: `outcome` is `ok`, `tool_error` or `refused`.
    public func operation(method: String, tool: String, tier: String, outcome: String, tenant: String, seconds: Double)
    {
        let key = OperationKey(
            method: method, tool: tool, tier: tier, outcome: outcome, tenant: perTenantLabels ? tenant : "")
        let histogram = operations.withLock { table in
            if let existing = table[key] { return existing }
            var labels = [
                ("mcp_method_name", method), ("gen_ai_tool_name", tool), ("leasehold_tier", tier),
                ("outcome", outcome),
            ]
            if perTenantLabels { labels.append(("tenant", tenant)) }
            let made = registry.makeValueHistogram(
                name: "mcp_server_operation_duration_seconds", labels: labels, buckets: Self.operationBuckets,
                help: "MCP request duration as observed by the runner, from request to response.")
            table[key] = made
            return made
        }
        histogram.record(seconds)
    }

    /// A refusal with its stable code (claims, sessions, scope, approvals, limits, tools' own refusals).
    public func refused(_ code: String, tenant: String?) {
        let key = Pair(a: code, b: perTenantLabels ? (tenant ?? "") : "")
        refusalCounters.withLock { table in
            if let existing = table[key] { return existing }
            var labels = [("code", code)]
            if perTenantLabels { labels.append(("tenant", key.b)) }
            let made = registry.makeCounter(
                name: "leasehold_refusals_total", labels: labels, help: "Refused requests and calls, by refusal code.")
            table[key] = made
            return made
        }.increment()
    }

    /// Approval events: `requested`, `granted`, `denied`, `expired` (found expired when a call tried it).
    public func approval(_ event: String) {
        approvalCounters.withLock { table in
            if let existing = table[event] { return existing }
            let made = registry.makeCounter(
                name: "leasehold_approvals_total", labels: [("event", event)],
                help: "Approvals requested, granted, denied, and found expired.")
            table[event] = made
            return made
        }.increment()
    }

    // MARK: Audit

    /// One group commit of the audit log.
    public func auditCommitted(records: Int, seconds: Double) {
        auditCommitLatency.record(seconds)
        auditBatchSize.record(Double(records))
    }

    // MARK: Cache

    /// A lookup of a cacheable tier's result.
    public func cacheLookup(hit: Bool) {
        (hit ? cacheHits : cacheMisses).increment()
    }

    // MARK: Workers

    /// A worker spawned, destroyed or failed to spawn (the pool's event hook).
    public func worker(_ event: WorkerEvent) {
        let tenant = perTenantLabels ? event.tenantID : ""
        let tier = event.tier
        switch event.kind {
        case .spawned:
            counter(
                workerSpawns, Pair(a: tier, b: tenant), name: "leasehold_workers_spawned_total",
                help: "Workers confined and started, by tier.", labels: [("tier", tier)], tenant: tenant
            )
            .increment()
            live(tier: tier, tenant: tenant).increment()
            if let duration = event.spawnDuration {
                spawnLatency.record(Self.seconds(duration))
            }
        case .destroyed:
            let reason = event.reason?.rawValue ?? "unknown"
            let key = Triple(a: tier, b: reason, c: tenant)
            workerDestroys.withLock { table in
                if let existing = table[key] { return existing }
                var labels = [("tier", tier), ("reason", reason)]
                if perTenantLabels { labels.append(("tenant", tenant)) }
                let made = registry.makeCounter(
                    name: "leasehold_workers_destroyed_total", labels: labels,
                    help: "Workers destroyed (whole process tree), by tier and reason.")
                table[key] = made
                return made
            }.increment()
            live(tier: tier, tenant: tenant).decrement()
        case .spawnFailed:
            counter(
                workerSpawnFailures, Pair(a: tier, b: tenant), name: "leasehold_worker_spawn_failures_total",
                help: "Workers that could not be started, by tier.", labels: [("tier", tier)], tenant: tenant
            )
            .increment()
        }
    }

    private func live(tier: String, tenant: String) -> Gauge {
        workerLive.withLock { table in
            let key = Pair(a: tier, b: tenant)
            if let existing = table[key] { return existing }
            var labels = [("tier", tier)]
            if perTenantLabels { labels.append(("tenant", tenant)) }
            let made = registry.makeGauge(
                name: "leasehold_workers_live", labels: labels, help: "Workers alive now, by tier.")
            table[key] = made
            return made
        }
    }

    private func counter(
        _ table: borrowing Mutex<[Pair: Counter]>, _ key: Pair, name: String, help: String, labels: [(String, String)],
        tenant: String
    ) -> Counter {
        table.withLock { table in
            if let existing = table[key] { return existing }
            var labels = labels
            if perTenantLabels { labels.append(("tenant", tenant)) }
            let made = registry.makeCounter(name: name, labels: labels, help: help)
            table[key] = made
            return made
        }
    }

    // MARK: Scrape-time gauges

    /// Sets the gauges read at scrape time: open MCP connections and their sessions, pending
    /// approvals, and each upstream server's state (1 for its current state, 0 for the others).
    public func observe(
        connections: Int, sessions: Int, pendingApprovals: Int?, upstreams: [(id: String, state: String)]
    ) {
        registry.makeGauge(
            name: "leasehold_mcp_connections_open", help: "Open MCP connections (HTTP sessions and stdio)."
        )
        .set(to: Double(connections))
        registry.makeGauge(name: "leasehold_sessions_active", help: "Sessions with at least one open MCP connection.")
            .set(to: Double(sessions))
        if let pendingApprovals {
            registry.makeGauge(name: "leasehold_approvals_pending", help: "Approvals asked and not yet decided.")
                .set(to: Double(pendingApprovals))
        }
        let states = ["starting", "listed", "failed"]
        upstreamStates.withLock { table in
            for server in upstreams {
                for state in Set(states + [server.state]) {
                    let key = Pair(a: server.id, b: state)
                    let gauge =
                        table[key]
                        ?? registry.makeGauge(
                            name: "leasehold_upstream_server_state", labels: [("server", server.id), ("state", state)],
                            help: "Upstream MCP servers: 1 for the state each is in, 0 for the others.")
                    table[key] = gauge
                    gauge.set(to: server.state == state ? 1 : 0)
                }
            }
        }
    }

    /// The text exposition of every metric.
    public func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        registry.emit(into: &buffer)
        return buffer
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
