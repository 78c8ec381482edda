import Foundation
import Synchronization

/// Stage 2 of a call: a verified claim is checked against its session and lease, and bound to the
/// MCP connection that presented it.
///
/// The session comes from the store (which keeps it in memory between writes; revocation,
/// renewal, PATCH and hand-off are writes, so they apply to the very next call). A claim is bound
/// to one connection for good: the first connection to present it keeps it, and a connection
/// serves one session.
final class SessionBinder: Sendable {
    /// The session a claim was bound for, as read for this request.
    struct Bound: Sendable {
        let session: Session
        /// When the session was read (see ``CallContext/readAt``).
        let readAt: ContinuousClock.Instant
    }

    private let store: any LeaseholdStore
    private let connections: ConnectionRegistry
    private let now: @Sendable () -> Date
    /// Bindings already confirmed in the store (binding key -> connection and fingerprint); a
    /// binding never changes, so a confirmed one needs no store write again.
    private let confirmed = Mutex<[ClaimBindingKey: String]>([:])
    private let limit: Int

    init(
        store: any LeaseholdStore, connections: ConnectionRegistry, limit: Int = 50_000,
        now: @escaping @Sendable () -> Date
    ) {
        self.store = store
        self.connections = connections
        self.limit = limit
        self.now = now
    }

    /// The session `verified` names, once its claim matches it and is bound to `connectionID`.
    ///
    /// - Throws: ``Refusal`` with the session, lease or binding code.
    func bind(_ verified: VerifiedClaim, connectionID: String) async throws(Refusal) -> Bound {
        let bound = try await check(verified)
        try await bind(verified, session: bound.session, connectionID: connectionID)
        return bound
    }

    /// The session `verified` names, once its claim matches it; nothing is bound (a connection not
    /// yet opened binds with ``bind(_:session:connectionID:)`` once it is).
    ///
    /// - Throws: ``Refusal`` with the session or lease code.
    func check(_ verified: VerifiedClaim) async throws(Refusal) -> Bound {
        let claim = verified.claim
        let readAt = ContinuousClock.now
        let session = try await currentSession(claim.sessionID)
        if session.revokedAt != nil {
            throw Refusal(.sessionRevoked, "session \(session.id) was revoked")
        }
        var mismatched: [String] = []
        if claim.tenantID != session.tenantID { mismatched.append("tenant_id") }
        if claim.actorID != session.actorID { mismatched.append("actor_id") }
        if claim.workspaceID != session.workspaceID { mismatched.append("workspace_id") }
        guard mismatched.isEmpty else {
            throw Refusal(
                .boundaryMismatch,
                "claim's \(mismatched.joined(separator: ", ")) differ from session \(session.id)'s; mint a fresh claim")
        }
        guard claim.leaseID == session.lease.id else {
            throw Refusal(
                .leaseReplaced, "claim's lease \(claim.leaseID) was replaced; mint a claim for the current lease")
        }
        guard session.lease.isLive(at: now()) else {
            throw Refusal(
                .leaseExpired, "lease \(session.lease.id) of session \(session.id) has ended; renew the lease")
        }
        return Bound(session: session, readAt: readAt)
    }

    private func currentSession(_ id: String) async throws(Refusal) -> Session {
        let found: Session?
        do {
            found = try await store.session(id: id)
        } catch {
            throw Refusal(.sessionNotFound, "the session store is unavailable", cause: error)
        }
        guard let found else {
            throw Refusal(.sessionNotFound, "claim names session \(id), which does not exist")
        }
        return found
    }

    /// Binds the claim to `connectionID` (for good, on first use) and the connection to `session`.
    ///
    /// - Throws: ``Refusal`` `claim_replayed` or `boundary_mismatch`.
    func bind(_ verified: VerifiedClaim, session: Session, connectionID: String) async throws(Refusal) {
        // Keyed like the store: a jti only names a claim within its signer's and tenant's namespace.
        let key = ClaimBindingKey(verified)
        // The connection check comes before the claim binding is stored: a claim presented on a
        // connection it may not use is refused without being burned, so whoever planted it on the
        // wrong connection cannot deny its owner the claim (the owner would get claim_replayed).
        guard await connections.mayServe(session.id, connectionID: connectionID) else {
            throw Self.connectionOfAnotherSession(session)
        }
        let binding = connectionID + "|" + verified.fingerprint
        if let bound = confirmed.withLock({ $0[key] }) {
            guard bound == binding else { throw Self.replayed(session) }
        } else {
            let result: BindingResult
            do {
                result = try await store.bindClaim(
                    key, fingerprint: verified.fingerprint, connectionID: connectionID, sessionID: session.id,
                    expiresAt: Date(timeIntervalSince1970: TimeInterval(verified.claim.exp + 3600)))
            } catch {
                throw Refusal(.claimInvalid, "the replay-binding store is unavailable", cause: error)
            }
            guard result != .boundElsewhere else { throw Self.replayed(session) }
            confirmed.withLock { bindings in
                // Bounded like the claim cache: a forgotten binding is read from the store again.
                if bindings.count >= limit { bindings.removeAll(keepingCapacity: true) }
                bindings[key] = binding
            }
        }
        guard await connections.bindSession(session.id, holder: session.holder, to: connectionID) else {
            throw Self.connectionOfAnotherSession(session)
        }
    }

    static func connectionOfAnotherSession(_ session: Session) -> Refusal {
        Refusal(
            .boundaryMismatch,
            "this MCP connection belongs to another session; open a new connection for session \(session.id)")
    }

    static func replayed(_ session: Session) -> Refusal {
        Refusal(
            .claimReplayed,
            "claim was first used on another MCP connection; each claim serves one connection (session \(session.id))")
    }
}
