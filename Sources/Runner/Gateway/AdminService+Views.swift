import Failures
import Foundation

/// A live session as the console shows it: the session, what it can see, and what it holds now.
public struct LiveSessionView: Encodable, Sendable {
    /// The session record (scope, lease, actor, workspace).
    public var session: Session
    /// Tools its scope lets it see (without any claim's narrowing); nil when its scope no longer
    /// compiles (a bundle removed from the catalog).
    public var visibleTools: Int?
    /// Open MCP connections bound to it.
    public var connections: Int
    /// Warm workers held for it.
    public var warmWorkers: Int
    /// False once the lease is revoked or over (the session needs a renewal).
    public var leaseLive: Bool

    enum CodingKeys: String, CodingKey {
        case session, connections
        case visibleTools = "visible_tools"
        case warmWorkers = "warm_workers"
        case leaseLive = "lease_live"
    }
}

/// Audit records matching a filter, and where the scan stopped.
public struct AuditQueryResult: Sendable {
    /// The matching records, oldest first.
    public var records: [AuditRecord]
    /// What became of each `call.intent` record among them.
    public var outcomes: [Int64: CallOutcomeStatus]
    /// The last sequence number looked at: pass it as `afterSeq` to go on.
    public var scannedThrough: Int64
    /// True when the scan stopped before the end of the log (the page filled or the scan budget ran
    /// out), so more matching records may follow `scannedThrough`.
    public var more: Bool
}

/// Filters of the audit explorer on top of the indexed ones (tenant, session, since).
public struct AuditFilter: Sendable {
    /// Records at or after.
    public var since: Date?
    /// Records at or before.
    public var until: Date?
    /// Exact fields; nil matches anything.
    public var tenant: String?
    /// The session.
    public var session: String?
    /// The actor.
    public var actor: String?
    /// The tool.
    public var tool: String?
    /// The event kind (`call.intent`, `approval.granted`...).
    public var event: String?
    /// The decision (`allowed`, `refused`, `operator`, `tenant:<id>`...).
    public var decision: String?
    /// The refusal code.
    public var code: String?

    /// No filter.
    public init() {}

    /// True when a record must be decoded to be matched (a filter beyond tenant, session, since).
    var readsEvents: Bool { [actor, tool, event, decision, code].contains { $0 != nil } || until != nil }

    func matches(_ event: AuditEvent) -> Bool {
        if let until, let time = event.time, time > until { return false }
        for (wanted, value) in [
            (actor, event.actor), (tool, event.tool), (self.event, event.event), (decision, event.decision),
            (code, event.code),
        ] {
            if let wanted, wanted != value { return false }
        }
        return true
    }
}

/// The chain's state as the console shows it.
public struct AuditChainStatus: Encodable, Sendable {
    /// `ok` or `broken`.
    public var status: String
    /// Records in the chain (operator only).
    public var records: Int64?
    /// The head hash (operator only).
    public var head: String?
    /// Where and how it breaks (operator only).
    public var brokenAt: Int64?
    /// Why it breaks (operator only).
    public var reason: String?
    /// Signed checkpoints held (operator only; nil when checkpoints are not signed by this runner).
    public var checkpoints: Int?
    /// The last record a good checkpoint covers (operator only).
    public var lastSignedSeq: Int64?
    /// Checkpoints that failed (operator only).
    public var checkpointFailures: [String]?

    enum CodingKeys: String, CodingKey {
        case status, records, head, reason, checkpoints
        case brokenAt = "broken_at"
        case lastSignedSeq = "last_signed_seq"
        case checkpointFailures = "checkpoint_failures"
    }

    /// What `principal` may see of it: everything for the operator, whether it holds for a tenant
    /// admin (the whole log's size, head and break point span every tenant).
    public func visible(to principal: Principal) -> AuditChainStatus {
        principal == .operator ? self : AuditChainStatus(status: status)
    }
}

/// The chain's verification walks the whole log. The console keeps one result for a few seconds
/// and computes it one caller at a time (the actor queues them), so pages reloading, or a tenant
/// admin asking in a loop, cost one walk per interval rather than one per request.
actor AuditChainCache {
    private var cached: (at: Date, status: AuditChainStatus)?
    /// How long one result is served.
    let lifetime: TimeInterval

    init(lifetime: TimeInterval = 5) { self.lifetime = lifetime }

    /// The cached status while it is fresh at `now`, else `compute`'s, kept.
    func status(now: Date, compute: @Sendable () throws(APIError) -> AuditChainStatus) throws(APIError)
        -> AuditChainStatus
    {
        if let cached, now.timeIntervalSince(cached.at) < lifetime, now >= cached.at { return cached.status }
        let status = try compute()
        cached = (now, status)
        return status
    }
}

/// Tiers and the tool→tier map as one tenant sees them.
public struct PolicyOverview: Encodable, Sendable {
    /// One catalog tool and its tier for the tenant (nil: no tier, so denied).
    public struct ToolTier: Encodable, Sendable {
        /// The tool.
        public var tool: String
        /// Its server.
        public var server: String
        /// Its tier, nil when none.
        public var tier: String?
    }

    /// The policy version in force.
    public var version: String
    /// The tenant the map was computed for (nil: no tenant's overrides).
    public var tenant: String?
    /// Every tier by name.
    public var tiers: [String: RiskTier]
    /// Every catalog tool.
    public var tools: [ToolTier]
    /// The last load and the last rejected reload (operator only: its errors name the policy's files).
    public var status: PolicyStatus?
}

// The read-side operations of the console (and the admin API's audit query), with the same
// tenant scoping as every other admin operation: a tenant admin key reads only its own tenant.
extension AdminService {
    /// The tenant a principal may read: its own for a tenant admin (asking for another is
    /// refused), `requested` (nil: all) for the operator.
    func readableTenant(_ requested: String?, by principal: Principal, what: String) throws(APIError) -> String? {
        guard case .tenant(let own) = principal else { return requested }
        if let requested, requested != own {
            throw APIError.forbidden("this admin key reads only its own tenant's \(what)")
        }
        return own
    }

    /// Live sessions (not revoked, lease not run out) the principal may see, with what each can
    /// see and holds.
    public func liveSessions(tenantID: String?, limit: Int = 500, by principal: Principal) async throws(APIError)
        -> [LiveSessionView]
    {
        let tenant = try readableTenant(tenantID, by: principal, what: "sessions")
        let now = gateway.now()
        let sessions: [Session]
        do {
            sessions = try await gateway.store.liveSessions(tenantID: tenant, now: now, limit: min(max(limit, 1), 1000))
        } catch {
            gateway.logger.error("live sessions cannot be read", metadata: ["error": "\(logDescription(of: error))"])
            throw APIError(.storeUnavailable, "the store cannot be read; retry shortly")
        }
        let warm = await gateway.executor.warmWorkersBySession()
        let resolver = gateway.resolver
        var views: [LiveSessionView] = []
        for session in sessions {
            let scope = try? Scope(
                session: session, claimAllowedTools: nil, endpointServer: nil, catalog: resolver.catalog)
            views.append(
                LiveSessionView(
                    session: session, visibleTools: scope.map { resolver.listing(in: $0).count },
                    connections: await gateway.connections.entries(forSession: session.id).count,
                    warmWorkers: warm[session.id] ?? 0, leaseLive: session.lease.isLive(at: now)))
        }
        return views
    }

    /// Audit records matching `filter` after `afterSeq`, at most `limit`, scanning at most
    /// `scanBudget` records (the unindexed fields are matched while reading).
    public func auditRecords(
        _ filter: AuditFilter, afterSeq: Int64 = 0, limit: Int = AdminService.defaultAuditLimit,
        scanBudget: Int = 100_000,
        by principal: Principal
    ) throws(APIError) -> AuditQueryResult {
        var filter = filter
        filter.tenant = try readableTenant(filter.tenant, by: principal, what: "audit records")
        let limit = min(max(limit, 1), AdminService.maximumAuditLimit)
        let batch = 1000
        var cursor = afterSeq
        var scanned = 0
        var found: [AuditRecord] = []
        var more = false
        do {
            scan: while true {
                let page = try gateway.audit.records(
                    tenant: filter.tenant, session: filter.session, since: filter.since, afterSeq: cursor, limit: batch)
                for record in page {
                    cursor = record.seq
                    scanned += 1
                    if !filter.readsEvents || record.event.map(filter.matches) == true { found.append(record) }
                    if found.count == limit || scanned >= scanBudget {
                        more = true
                        break scan
                    }
                }
                if page.count < batch { break }
            }
            return AuditQueryResult(
                records: found, outcomes: try gateway.audit.outcomeStatuses(of: found), scannedThrough: cursor,
                more: more)
        } catch {
            // The cause is for the runner's log only: store error text never reaches an API caller.
            gateway.logger.error("the audit log cannot be read", metadata: ["error": "\(logDescription(of: error))"])
            throw APIError(.auditUnavailable, "the audit log cannot be read; retry shortly")
        }
    }

    /// The chain's verification (and its signed checkpoints'); a tenant admin learns only whether
    /// it holds, not the whole log's size or head. `cache` (the console's) spares repeated walks.
    func auditChainStatus(by principal: Principal, cache: AuditChainCache) async throws(APIError)
        -> AuditChainStatus
    {
        let admin = self
        let full = try await cache.status(now: gateway.now()) { () throws(APIError) in
            try admin.auditChainStatus(by: .operator)
        }
        return full.visible(to: principal)
    }

    /// The chain's verification (and its signed checkpoints'); a tenant admin learns only whether
    /// it holds, not the whole log's size or head.
    public func auditChainStatus(by principal: Principal) throws(APIError) -> AuditChainStatus {
        var status: AuditChainStatus
        do {
            switch try gateway.audit.verify() {
            case .ok(let records, let head):
                status = AuditChainStatus(status: "ok", records: records, head: head)
            case .broken(let seq, let reason):
                status = AuditChainStatus(status: "broken", brokenAt: seq, reason: reason)
            }
            if let key = gateway.audit.checkpointPublicKey {
                let report = try gateway.audit.verifyCheckpoints(publicKey: key)
                status.checkpoints = report.checkpoints
                status.lastSignedSeq = report.lastCoveredSeq
                status.checkpointFailures = report.failures
                if !report.failures.isEmpty { status.status = "broken" }
            }
        } catch {
            // The cause is for the runner's log only: store error text never reaches an API caller.
            gateway.logger.error("the audit log cannot be read", metadata: ["error": "\(logDescription(of: error))"])
            throw APIError(.auditUnavailable, "the audit log cannot be read; retry shortly")
        }
        return status.visible(to: principal)
    }

    /// The last load and the last rejected reload (operator only: errors name the policy's files
    /// and lines).
    public func policyStatus(by principal: Principal) throws(APIError) -> PolicyStatus {
        guard principal == .operator else { throw APIError.forbidden("only the operator key reads policy status") }
        return gateway.policyStatus
    }

    /// Tiers and every catalog tool's tier for `tenantID` (a tenant admin: its own tenant only).
    public func policyOverview(tenantID: String?, by principal: Principal) throws(APIError) -> PolicyOverview {
        let tenant = try readableTenant(tenantID, by: principal, what: "policy")
        let resolver = gateway.resolver
        return PolicyOverview(
            version: resolver.policy.version, tenant: tenant, tiers: resolver.policy.tiers,
            tools: resolver.catalog.tools.map {
                PolicyOverview.ToolTier(
                    tool: $0.name, server: $0.server, tier: resolver.tier(of: $0.name, tenant: tenant))
            },
            status: principal == .operator ? gateway.policyStatus : nil)
    }

    /// `leasehold policy explain` for one tool as `tenantID` sees it (a tenant admin: its own).
    public func policyExplain(tool: String, tenantID: String?, by principal: Principal) throws(APIError) -> [String] {
        let tenant = try readableTenant(tenantID, by: principal, what: "policy")
        guard !tool.isEmpty, tool.utf8.count <= 256 else { throw APIError.invalid("tool must be 1-256 bytes") }
        return PolicyReport.explain(tool: tool, resolver: gateway.resolver, tenant: tenant, session: nil)
    }
}
