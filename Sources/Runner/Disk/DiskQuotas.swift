/// Disk quotas (`tenant_limits:` `disk_mib`, `disk_files`, `workspace_disk_mib`,
/// `workspace_disk_files`): what one tenant may hold over all its workspaces, and what one
/// workspace may hold, in allocated bytes and inodes. The smaller bound is the one that bites.
public struct DiskQuotas: Sendable, Equatable {
    /// One tenant's bounds.
    public struct Limits: Sendable, Equatable {
        /// Over all the tenant's workspaces.
        public var tenant: DiskUsage
        /// Per workspace.
        public var workspace: DiskUsage

        /// Creates limits.
        public init(tenant: DiskUsage, workspace: DiskUsage) {
            self.tenant = tenant
            self.workspace = workspace
        }

        /// How far a walk needs to go to decide both bounds: past the larger one, a workspace is
        /// over either.
        var walkBound: DiskUsage {
            DiskUsage(
                bytes: max(tenant.bytes, workspace.bytes) + 1, files: max(tenant.files, workspace.files) + 1)
        }
    }

    /// Defaults: 10 GiB and 1,000,000 inodes per tenant; 4 GiB and 500,000 inodes per workspace.
    public static let defaultLimits = Limits(
        tenant: DiskUsage(bytes: 10 << 30, files: 1_000_000), workspace: DiskUsage(bytes: 4 << 30, files: 500_000))

    /// Every tenant without an override.
    public var standard: Limits
    /// Per-tenant overrides (`tenant_limits.tenants.ID`).
    public var overrides: [String: Limits]

    /// Creates quotas.
    public init(standard: Limits = DiskQuotas.defaultLimits, overrides: [String: Limits] = [:]) {
        self.standard = standard
        self.overrides = overrides
    }

    /// The tenant's bounds.
    public func limits(_ tenant: String) -> Limits { overrides[tenant] ?? standard }
}

/// What a call would do to a workspace's disk usage, as far as the runner can tell before it runs.
enum DiskChange: Sendable, Equatable {
    /// A write-tier tool whose growth is estimated from its arguments (negative: it shrinks).
    case write(DiskUsage)
    /// An exec-tier call: it writes directly; measured after it.
    case exec
    /// Cannot change the workspace (a read tier).
    case none
}

/// The quota decision for one call: pure, so that it is tested apart from any filesystem.
enum DiskDecision: Sendable, Equatable {
    /// Run the call; `frozen` runs an exec call with the workspace mounted read-only.
    case allow(frozen: Bool)
    /// Refuse it with `quota_exceeded`, for this reason.
    case refuse(String)

    /// The state the decision is taken on.
    struct Facts: Sendable, Equatable {
        var tenant: String
        var workspace: String
        /// The workspace's usage, with the growth of its admitted calls still running.
        var workspaceUsage: DiskUsage
        /// The tenant's, likewise, over all its measured workspaces.
        var tenantUsage: DiskUsage
        var limits: DiskQuotas.Limits
        /// The workspace's last walk did not see its whole tree (see ``DiskMeasurement/Incomplete``).
        var incomplete: DiskMeasurement.Incomplete?
        /// The workspace shares the audit log's filesystem and the audit reserve was released: that
        /// filesystem is full, and nothing on it may grow until there is room again.
        var filesystemFull: Bool
    }

    /// Why the workspace may not grow now (nil: it may, within its quotas).
    static func frozenReason(_ facts: Facts) -> String? {
        if facts.filesystemFull {
            return
                "the filesystem of workspace \(facts.workspace) is full (the audit log's reserve was released); nothing on it may grow until space is freed"
        }
        if let incomplete = facts.incomplete, incomplete != .overBound {
            return
                "workspace \(facts.workspace) cannot be measured (\(incomplete == .tooDeep ? "directories nested deeper than \(DiskWalk.maximumDepth)" : "a directory the runner cannot read")); it may not grow until that is removed"
        }
        if facts.incomplete == .overBound || over(facts.workspaceUsage, facts.limits.workspace) != nil {
            let over = over(facts.workspaceUsage, facts.limits.workspace) ?? "past the walk's bound"
            return
                "workspace \(facts.workspace) holds \(facts.workspaceUsage), at or over its quota of \(facts.limits.workspace) (\(over)); remove files to get under it"
        }
        if let over = over(facts.tenantUsage, facts.limits.tenant) {
            return
                "tenant \(facts.tenant) holds \(facts.tenantUsage) in all, at or over its quota of \(facts.limits.tenant) (\(over)); remove files to get under it"
        }
        return nil
    }

    /// Decides `change` on `facts`.
    static func decide(_ change: DiskChange, _ facts: Facts) -> DiskDecision {
        switch change {
        case .none:
            return .allow(frozen: false)
        case .exec:
            return .allow(frozen: frozenReason(facts) != nil)
        case .write(let delta):
            // A write that does not grow the workspace in either dimension is always allowed: it
            // is how a tenant over quota gets back under.
            guard delta.bytes > 0 || delta.files > 0 else { return .allow(frozen: frozenReason(facts) != nil) }
            if facts.filesystemFull || (facts.incomplete != nil && facts.incomplete != .overBound) {
                return .refuse(frozenReason(facts) ?? "")
            }
            let growth = delta.clamped
            if facts.incomplete == .overBound || exceeds(facts.workspaceUsage + growth, facts.limits.workspace) {
                return .refuse(
                    "workspace \(facts.workspace) holds \(facts.workspaceUsage); this write (about \(growth)) would take it past its quota of \(facts.limits.workspace)"
                )
            }
            if exceeds(facts.tenantUsage + growth, facts.limits.tenant) {
                return .refuse(
                    "tenant \(facts.tenant) holds \(facts.tenantUsage) in all; this write (about \(growth)) would take it past its quota of \(facts.limits.tenant)"
                )
            }
            return .allow(frozen: false)
        }
    }

    /// Usage strictly above the quota in either dimension.
    static func exceeds(_ usage: DiskUsage, _ quota: DiskUsage) -> Bool {
        usage.bytes > quota.bytes || usage.files > quota.files
    }

    /// Which dimension is at or over the quota ("bytes", "files"), nil when both are under.
    /// At the quota counts: nothing more fits.
    private static func over(_ usage: DiskUsage, _ quota: DiskUsage) -> String? {
        if usage.bytes >= quota.bytes { return "bytes" }
        if usage.files >= quota.files { return "files" }
        return nil
    }
}
