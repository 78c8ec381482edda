import Sandbox
import Synchronization
import WorkspaceRegistry

/// The unprivileged host ids a root runner gives each tenant: its workers run as them and its
/// workspaces are owned by them, so tenants are also kept apart by plain file permissions, as
/// rootless container engines do with subordinate ids. uid = gid = `first + slot`, with the slot
/// assigned once per tenant in the store.
public final class TenantHostIDs: Sendable {
    /// The first id of the range.
    public let first: UInt32
    /// How many ids (tenants) the range holds.
    public let count: UInt32
    private let store: any LeaseholdStore
    private let known = Mutex<[String: WorkerHostIdentity]>([:])

    /// The range used when the configuration names none: well above the ids distributions give
    /// to people and services, below 2^31 so tools that read uids as signed still work.
    public static let defaultFirst: UInt32 = 2_000_000_000
    /// The default range size.
    public static let defaultCount: UInt32 = 65_536

    /// Creates the mapping over `store`. `first` must be > 0 and the range must not wrap.
    public init(first: UInt32, count: UInt32, store: any LeaseholdStore) throws {
        guard first > 0, count > 0, UInt64(first) + UInt64(count) < UInt64(UInt32.max) else {
            throw ConfigError("worker_host_ids: first must be > 0 and first + count below 4294967295")
        }
        self.first = first
        self.count = count
        self.store = store
    }

    /// The tenant's ids, assigned on first use.
    public func identity(forTenant tenantID: String) async throws -> WorkerHostIdentity {
        if let cached = known.withLock({ $0[tenantID] }) { return cached }
        guard let slot = try await store.hostIDSlot(forTenant: tenantID, capacity: Int(count)) else {
            throw ConfigError(
                "the worker host id range (\(first), \(count) ids) is used up; widen worker_host_ids in leasehold.yaml")
        }
        let id = first + UInt32(slot)
        let identity = WorkerHostIdentity(uid: id, gid: id)
        known.withLock { $0[tenantID] = identity }
        return identity
    }

    /// The tenant's ids as the owner of its workspaces.
    public func owner(forTenant tenantID: String) async throws -> WorkspaceOwner {
        let identity = try await identity(forTenant: tenantID)
        return WorkspaceOwner(uid: identity.uid, gid: identity.gid)
    }
}
