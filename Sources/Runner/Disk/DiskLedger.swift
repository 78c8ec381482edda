import Foundation
import Logging
import Synchronization
import WorkspaceRegistry

/// Each workspace's disk usage as the runner last measured or estimated it, and the quota
/// decision every call that may change a workspace goes through (issue #14, disk).
///
/// - A workspace is measured (``DiskWalk``) at its first use, and every workspace of a tenant at
///   the tenant's first use, so a tenant's total covers all its workspaces.
/// - A write-tier call is admitted against its estimated growth (``WriteEstimate``), which is
///   held as pending while the call runs (concurrent writes cannot all squeeze under the quota);
///   afterwards the estimate is added and the workspace marked stale. A stale workspace is walked
///   again whenever a decision would refuse or freeze on its numbers.
/// - An exec-tier call writes directly, so it is measured after every call. A workspace at or over
///   a quota is *frozen*: its exec calls run with the workspace mounted read-only and its write
///   calls that would grow it are refused `quota_exceeded`; writes that shrink it are allowed, and
///   it thaws when a walk finds it under its quotas again.
/// - While the audit reserve is released (its filesystem ran full), every workspace on that
///   filesystem is frozen the same way until the reserve is allocated again.
public final class DiskLedger: Sendable {
    /// The quotas in force.
    public let quotas: DiskQuotas
    /// The audit log's reserve, when one is configured.
    public let reserve: AuditReserve?
    let registry: WorkspaceRegistry
    let audit: AuditLog
    let logger: Logger
    private let state = Mutex<State>(State())
    /// One walk at a time per tenant: a tenant whose calls make the runner walk a large tree waits
    /// for its own walks, never another tenant's.
    private let lanes = WalkLanes()

    struct Key: Hashable, Sendable {
        var tenant: String
        var workspace: String
    }

    struct Entry: Sendable {
        var root: String
        var usage: DiskUsage
        /// Estimated growth of admitted write calls still running.
        var pending = DiskUsage.zero
        var incomplete: DiskMeasurement.Incomplete?
        var device: UInt64
        /// Changed by a write call since the last walk: the usage is an estimate.
        var stale = false
        /// Frozen as of the last decision or walk (for the `disk.frozen` / `disk.thawed` records).
        var frozen = false
    }

    struct State {
        var entries: [Key: Entry] = [:]
        var loadedTenants: Set<String> = []
    }

    /// An admitted call, to be settled with ``settle(_:)`` once it ran (or did not).
    struct Admission: Sendable {
        let key: Key
        let root: String
        let change: DiskChange
        /// Growth held as pending while the call runs.
        let reserved: DiskUsage
        /// Run an exec call with the workspace read-only.
        let frozen: Bool
    }

    /// A workspace's disk state, for the admin API.
    public struct Status: Sendable, Codable, Equatable {
        /// Allocated bytes.
        public var bytes: Int64
        /// Inodes.
        public var files: Int64
        /// The workspace's byte quota (the tenant's is in ``tenantQuotaBytes``).
        public var quotaBytes: Int64
        /// The workspace's inode quota.
        public var quotaFiles: Int64
        /// The tenant's allocated bytes over all its measured workspaces.
        public var tenantBytes: Int64
        /// The tenant's inodes over all its measured workspaces.
        public var tenantFiles: Int64
        /// The tenant's byte quota.
        public var tenantQuotaBytes: Int64
        /// The tenant's inode quota.
        public var tenantQuotaFiles: Int64
        /// Whether the workspace may not grow now.
        public var frozen: Bool
        /// Why, when frozen.
        public var reason: String?

        enum CodingKeys: String, CodingKey {
            case bytes, files, frozen, reason
            case quotaBytes = "quota_bytes"
            case quotaFiles = "quota_files"
            case tenantBytes = "tenant_bytes"
            case tenantFiles = "tenant_files"
            case tenantQuotaBytes = "tenant_quota_bytes"
            case tenantQuotaFiles = "tenant_quota_files"
        }
    }

    /// Creates the ledger.
    public init(
        quotas: DiskQuotas = DiskQuotas(), reserve: AuditReserve? = nil, registry: WorkspaceRegistry, audit: AuditLog,
        logger: Logger = Logger(label: "leasehold.disk")
    ) {
        self.quotas = quotas
        self.reserve = reserve
        self.registry = registry
        self.audit = audit
        self.logger = logger
    }

    // MARK: Decisions

    /// Admits `change` to `workspace`, or refuses it with `quota_exceeded`.
    func admit(_ workspace: Workspace, _ change: DiskChange) async throws(Refusal) -> Admission {
        let key = Key(tenant: workspace.tenantID, workspace: workspace.workspaceID)
        guard change != .none else {
            return Admission(key: key, root: workspace.root, change: change, reserved: .zero, frozen: false)
        }
        await load(workspace)
        await rebalanceReserve()
        var decision = decideAndReserve(key, change)
        // The numbers were estimates: walk again before refusing or freezing on them.
        if decision.outcome != .allow(frozen: false), !decision.stale.isEmpty {
            for (stale, root) in decision.stale { await remeasure(stale, root: root) }
            decision = decideAndReserve(key, change)
        }
        switch decision.outcome {
        case .refuse(let reason):
            throw Refusal(.quotaExceeded, reason)
        case .allow(let frozen):
            return Admission(
                key: key, root: workspace.root, change: change, reserved: decision.reserved, frozen: frozen)
        }
    }

    /// Accounts for an admitted call after it ran: a write's estimate is added, an exec call's
    /// workspace walked again; the audit reserve is released if the filesystem ran full.
    func settle(_ admission: Admission) async {
        switch admission.change {
        case .none: return
        case .write(let delta):
            state.withLock { state in
                guard var entry = state.entries[admission.key] else { return }
                entry.pending = (entry.pending - admission.reserved).clamped
                entry.usage = (entry.usage + delta).clamped
                entry.stale = true
                state.entries[admission.key] = entry
            }
        case .exec:
            await remeasure(admission.key, root: admission.root)
        }
        await rebalanceReserve()
        await recordFreezeChange(admission.key)
    }

    /// The workspace's disk state (walked again first when estimates stand in for it).
    public func status(of workspace: Workspace) async -> Status {
        let key = Key(tenant: workspace.tenantID, workspace: workspace.workspaceID)
        await load(workspace)
        if state.withLock({ $0.entries[key]?.stale ?? false }) { await remeasure(key, root: workspace.root) }
        await rebalanceReserve()
        let facts = state.withLock { state in self.facts(key, in: state) }
        let reason = DiskDecision.frozenReason(facts)
        return Status(
            bytes: facts.workspaceUsage.bytes, files: facts.workspaceUsage.files,
            quotaBytes: facts.limits.workspace.bytes,
            quotaFiles: facts.limits.workspace.files, tenantBytes: facts.tenantUsage.bytes,
            tenantFiles: facts.tenantUsage.files, tenantQuotaBytes: facts.limits.tenant.bytes,
            tenantQuotaFiles: facts.limits.tenant.files, frozen: reason != nil, reason: reason)
    }

    /// Drops a removed workspace from its tenant's total.
    public func forget(tenant: String, workspace: String) {
        _ = state.withLock { $0.entries.removeValue(forKey: Key(tenant: tenant, workspace: workspace)) }
    }

    // MARK: Internals

    private struct Decided {
        var outcome: DiskDecision
        var reserved: DiskUsage
        /// Entries of the tenant whose usage is an estimate, with their roots.
        var stale: [(Key, String)]
    }

    private func decideAndReserve(_ key: Key, _ change: DiskChange) -> Decided {
        state.withLock { state in
            let facts = facts(key, in: state)
            let outcome = DiskDecision.decide(change, facts)
            var reserved = DiskUsage.zero
            if case .allow = outcome, case .write(let delta) = change, var entry = state.entries[key] {
                reserved = delta.clamped
                entry.pending = entry.pending + reserved
                state.entries[key] = entry
            }
            let stale = state.entries.filter { $0.key.tenant == key.tenant && $0.value.stale }.map {
                ($0.key, $0.value.root)
            }
            return Decided(outcome: outcome, reserved: reserved, stale: stale)
        }
    }

    private func facts(_ key: Key, in state: State) -> DiskDecision.Facts {
        let entry = state.entries[key]
        var tenantUsage = DiskUsage.zero
        for (other, value) in state.entries where other.tenant == key.tenant {
            tenantUsage = tenantUsage + value.usage + value.pending
        }
        let filesystemFull = (reserve?.isReleased ?? false) && entry?.device == reserve?.device
        return DiskDecision.Facts(
            tenant: key.tenant, workspace: key.workspace,
            workspaceUsage: (entry?.usage ?? .zero) + (entry?.pending ?? .zero), tenantUsage: tenantUsage,
            limits: quotas.limits(key.tenant), incomplete: entry?.incomplete, filesystemFull: filesystemFull)
    }

    /// Measures the tenant's workspaces once (at its first call that may change one), and this
    /// workspace if it is new since.
    private func load(_ workspace: Workspace) async {
        let key = Key(tenant: workspace.tenantID, workspace: workspace.workspaceID)
        let tenantLoaded = state.withLock { $0.loadedTenants.contains(workspace.tenantID) }
        if !tenantLoaded {
            let all = (try? await registry.list(tenantID: workspace.tenantID)) ?? []
            for other in all where other.workspaceID != workspace.workspaceID {
                let otherKey = Key(tenant: other.tenantID, workspace: other.workspaceID)
                if state.withLock({ $0.entries[otherKey] == nil }) { await remeasure(otherKey, root: other.root) }
            }
            state.withLock { _ = $0.loadedTenants.insert(workspace.tenantID) }
        }
        if state.withLock({ $0.entries[key] == nil }) { await remeasure(key, root: workspace.root) }
    }

    /// Walks the workspace and records what it holds (keeping the pending growth of calls running).
    private func remeasure(_ key: Key, root: String) async {
        let bound = quotas.limits(key.tenant).walkBound
        await lanes.acquire(key.tenant)
        // A walk is blocking syscalls (up to the larger quota's inodes): on a thread of its own, so
        // it never holds one of the few cooperative threads every tenant's calls run on.
        let measured = await withCheckedContinuation { (done: CheckedContinuation<DiskMeasurement, Never>) in
            Thread {
                do {
                    done.resume(returning: try DiskWalk.measure(root: root, bound: bound))
                } catch {
                    // The root is gone or not a directory: the call fails on its own; nothing to count.
                    done.resume(returning: DiskMeasurement(usage: .zero, incomplete: nil, device: 0))
                }
            }.start()
        }
        await lanes.release(key.tenant)
        state.withLock { state in
            var entry = state.entries[key] ?? Entry(root: root, usage: .zero, device: measured.device)
            entry.root = root
            entry.usage = measured.usage
            entry.incomplete = measured.incomplete
            entry.device = measured.device
            entry.stale = false
            state.entries[key] = entry
        }
    }

    /// Records a workspace's passage from growing to frozen, or back.
    private func recordFreezeChange(_ key: Key) async {
        let change: (Bool, String?)? = state.withLock { state in
            let reason = DiskDecision.frozenReason(facts(key, in: state))
            guard let entry = state.entries[key], entry.frozen != (reason != nil) else { return nil }
            state.entries[key]?.frozen = reason != nil
            return (reason != nil, reason)
        }
        guard let (frozen, reason) = change else { return }
        var event = AuditEvent(frozen ? "disk.frozen" : "disk.thawed")
        event.tenant = key.tenant
        event.workspace = key.workspace
        event.detail = reason ?? "workspace \(key.workspace) is under its disk quotas again"
        logger.notice(
            frozen ? "workspace frozen: over its disk quota" : "workspace thawed",
            metadata: ["tenant": "\(key.tenant)", "workspace": "\(key.workspace)"])
        await audit.appendWithoutWaiting(event)
    }

    /// Releases the audit reserve when its filesystem is full, or allocates it again when there is
    /// room, and says so in the audit trail.
    func rebalanceReserve() async {
        guard let reserve, let change = reserve.rebalance() else { return }
        var event: AuditEvent
        switch change {
        case .released(let free):
            event = AuditEvent("audit.reserve_released")
            event.detail =
                "the state directory's filesystem is full; released the \(DiskUsage.mebibytes(reserve.bytes)) audit reserve (\(DiskUsage.mebibytes(free)) free now); workspaces on it may not grow until space is freed"
            logger.error("state directory filesystem full: audit reserve released", metadata: ["free": "\(free)"])
        case .restored(let free):
            event = AuditEvent("audit.reserve_restored")
            event.detail =
                "space is back on the state directory's filesystem (\(DiskUsage.mebibytes(free)) free); the audit reserve is allocated again"
            logger.notice("audit reserve allocated again", metadata: ["free": "\(free)"])
        }
        await audit.appendWithoutWaiting(event)
    }
}

/// FIFO turns per tenant (see ``DiskLedger``'s `lanes`).
private actor WalkLanes {
    private var busy: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    func acquire(_ tenant: String) async {
        guard busy.contains(tenant) else {
            busy.insert(tenant)
            return
        }
        await withCheckedContinuation { waiting[tenant, default: []].append($0) }
    }

    func release(_ tenant: String) {
        guard var queue = waiting[tenant], !queue.isEmpty else {
            busy.remove(tenant)
            return
        }
        let next = queue.removeFirst()
        waiting[tenant] = queue.isEmpty ? nil : queue
        // The turn passes straight to the next waiter: the tenant stays busy.
        next.resume()
    }
}
