/// How durable an audit commit is when ``AuditLog/append(_:sync:)`` returns; chosen per risk tier
/// by the security team (`audit_sync` in `policies/tiers.yaml`).
///
/// Both levels commit the record to the write-ahead log before the append returns, so the record
/// survives a crash or `kill -9` of the runner (the committed WAL frames are in the kernel's page
/// cache). They differ only in what survives a power loss or a kernel crash.
public enum AuditSync: String, Sendable, Codable, Hashable, CaseIterable, Comparable {
    /// The commit is fsynced before the append returns: it also survives a power loss.
    case full
    /// The commit is not synced on its own; the log syncs the WAL within its sync interval (a few
    /// milliseconds) while unsynced commits exist, and any later `full` commit syncs it too. A
    /// power loss can lose the records of that last interval.
    case batched

    /// Ordered from strict to loose, so `a > b` reads "a is looser than b".
    public static func < (lhs: AuditSync, rhs: AuditSync) -> Bool {
        lhs == .full && rhs == .batched
    }
}
