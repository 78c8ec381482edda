import Foundation
import WorkspaceRegistry

/// Where one claim is bound.
public enum BindingResult: Sendable, Hashable {
    /// First use: now bound to the presenting connection.
    case bound
    /// Already bound to the presenting connection.
    case alreadyBoundHere
    /// Bound to another connection (or the jti was reused by another token): a replay.
    case boundElsewhere
}

/// What a replay binding is keyed by: the key that verified the claim, the claim's tenant and its jti.
///
/// A jti is only unique within one signer's namespace. Keyed by jti alone, a tenant-bound key could
/// mint a claim reusing another tenant's jti, present it first and burn the other tenant's claim
/// (it would then be refused as replayed). With the issuing key and the tenant in the key, a claim
/// can only collide with claims its own signer issued for its own tenant.
public struct ClaimBindingKey: Sendable, Hashable {
    /// The `kid` of the key that verified the claim.
    public var keyID: String
    /// The claim's `tenant_id`.
    public var tenantID: String
    /// The claim's `jti`.
    public var jti: String

    /// Creates a binding key.
    public init(keyID: String, tenantID: String, jti: String) {
        self.keyID = keyID
        self.tenantID = tenantID
        self.jti = jti
    }

    /// The binding key of a verified claim.
    public init(_ verified: VerifiedClaim) {
        self.init(keyID: verified.keyID, tenantID: verified.claim.tenantID, jti: verified.claim.jti)
    }
}

/// A change another node (or this one) committed to shared state, as the store delivers it: the
/// runner applies its effects on the connections and workers it holds (see `Gateway.apply(_:)`).
public enum StoreChange: Sendable, Hashable {
    /// A session was written (revoked, lease renewed or revoked, patched, handed off); `version`
    /// is ``Session/version`` after the write. The store's cached copy is already dropped.
    case session(id: String, version: Int)
    /// A workspace registration was removed.
    case workspaceRemoved(tenantID: String, workspaceID: String)
    /// Changes may have been missed (the store's listener reconnected): every cached session was
    /// dropped, and every session this node serves must be checked again.
    case resynced
    /// A node loaded a new policy (its content hash); the others read their policy files again at
    /// once rather than at their next reload tick.
    case policy(version: String, node: String)
}

/// Persistence of sessions, replay bindings, admin keys and workspaces.
///
/// A real seam: SQLite (GRDB) on one node, PostgreSQL for several runner nodes.
public protocol LeaseholdStore: WorkspaceBackend {
    /// Inserts a new session.
    func insertSession(_ session: Session) async throws
    /// Inserts a session unless its tenant already has `limit` live ones (not revoked, lease not
    /// over at `now`); false then, and nothing is written. Nil: no limit.
    func insertSession(_ session: Session, livePerTenant limit: Int?, now: Date) async throws -> Bool
    /// Reads a session.
    func session(id: String) async throws -> Session?
    /// Sessions not revoked whose lease has not run out at `now` (a revoked lease still counts: the
    /// session can be renewed), of one tenant or of every tenant when nil, latest lease end first,
    /// at most `limit`: the console's live sessions.
    func liveSessions(tenantID: String?, now: Date, limit: Int) async throws -> [Session]
    /// Read-modify-write of one session under the store's write lock; returns the new record,
    /// or nil when no session has that id.
    func updateSession(id: String, _ mutate: @Sendable (inout Session) throws -> Void) async throws -> Session?
    /// Binds a claim (by issuing key, tenant and jti) to a connection on first use.
    func bindClaim(
        _ key: ClaimBindingKey, fingerprint: String, connectionID: String, sessionID: String, expiresAt: Date
    ) async throws -> BindingResult
    /// Deletes bindings of claims that expired before `date`.
    func pruneBindings(expiredBefore date: Date) async throws
    /// Stores the hash of a tenant admin key.
    func insertAdminKey(id: String, tenantID: String, keyHash: String) async throws
    /// The tenant an admin key (by hash) manages, if any.
    func tenantForAdminKey(hash: String) async throws -> String?
    /// Stores a new approval.
    func insertApproval(_ approval: Approval) async throws
    /// Reads an approval by id.
    func approval(id: String) async throws -> Approval?
    /// Reads an approval by the fingerprint a claim carries.
    func approval(fingerprint: String) async throws -> Approval?
    /// Approvals matching the filters, newest first, at most `limit`.
    func approvals(tenantID: String?, sessionID: String?, status: Approval.Status?, limit: Int) async throws
        -> [Approval]
    /// Approvals of one exact call (``Approval/bindingKey``), oldest first.
    func approvals(bindingKey: String) async throws -> [Approval]
    /// Takes one use of a grant under the store's write lock, re-checking it there; the updated
    /// approval, or nil when it cannot serve (used up meanwhile, expired, other session/lease/actor).
    func consumeApproval(id: String, sessionID: String, leaseID: String, actorID: String, at now: Date) async throws
        -> Approval?
    /// Read-modify-write of one approval under the store's write lock; nil when it does not exist.
    func updateApproval(id: String, _ mutate: @Sendable (inout Approval) throws -> Void) async throws -> Approval?
    /// The slot (0-based) of the tenant's unprivileged host ids in the operator's range, assigned
    /// on first use and never changed or reused; nil when all `capacity` slots are taken.
    func hostIDSlot(forTenant tenantID: String, capacity: Int) async throws -> Int?
    /// Changes committed by any node sharing this store, this one included, for one consumer (the
    /// gateway); it does not end while the store runs. A single-node store (SQLite) delivers none
    /// and its stream ends at once: its one runner applies its own changes where it makes them.
    var changes: AsyncStream<StoreChange> { get }
    /// Tells every node sharing the store of a change that is not a write of its own
    /// (``StoreChange/policy(version:node:)``); best effort, and a single-node store tells no one.
    func announce(_ change: StoreChange) async
    /// Whether the store answers now (`/readyz`): a node that cannot reach its database gets no
    /// new work from the load balancer.
    func isReady() async -> Bool
}

extension LeaseholdStore {
    /// No other node shares the store: nothing to deliver (the stream ends at once).
    public var changes: AsyncStream<StoreChange> { AsyncStream { _ in } }

    /// No other node to tell.
    public func announce(_ change: StoreChange) async {}

    /// A local store answers while the process runs.
    public func isReady() async -> Bool { true }
}
