import Foundation
import Logging
import MCP
import Sandbox
import Synchronization
import WorkspaceRegistry

// Stage 1-2 of a call: the claim is verified (cached by token), checked against its session and
// lease, and bound to the MCP connection that first presented it.
extension Gateway {
    // MARK: Authentication

    /// Verifies `token`, checks it against its session and binds it to `connectionID`.
    ///
    /// - Parameter endpointServer: the server a server-scoped endpoint narrows to.
    /// - Throws: ``Refusal`` with the claim/session/lease/binding code.
    public func authenticate(
        token: String?, connectionID: String, endpointServer: String? = nil, requestID: String? = nil
    ) async throws(Refusal) -> CallContext {
        do {
            return try await authenticateUnaudited(
                token: token, connectionID: connectionID, endpointServer: endpointServer)
        } catch {
            // Every refusal is audited, with the claim's fingerprint (never the token) and whatever
            // the token claims about itself when its signature held.
            var event = AuditEvent("request.refused")
            event.decision = "refused"
            event.code = error.code.rawValue
            event.detail = String(error.message.prefix(512))
            event.requestID = requestID
            event.policyVersion = resolver.policy.version
            if let token, !token.isEmpty {
                event.claimFingerprint = Digest.sha256Hex(token.utf8)
                if let verified = verifiedTokens.withLock({ $0[token] }) {
                    event.tenant = verified.claim.tenantID
                    event.actor = verified.claim.actorID
                    event.session = verified.claim.sessionID
                    event.lease = verified.claim.leaseID
                }
            }
            _ = try? await audit.append(event)
            throw error
        }
    }

    func authenticateUnaudited(token: String?, connectionID: String, endpointServer: String?)
        async throws(Refusal) -> CallContext
    {
        guard let token, !token.isEmpty else {
            throw Refusal(.claimMissing, "no session claim was presented (HTTP: Authorization: Bearer <claim>)")
        }
        let verified = try verifyCached(token)
        let claim = verified.claim
        let readAt = ContinuousClock.now
        let session: Session
        do {
            guard let found = try await store.session(id: claim.sessionID) else {
                throw Refusal(.sessionNotFound, "claim names session \(claim.sessionID), which does not exist")
            }
            session = found
        } catch let refusal as Refusal {
            throw refusal
        } catch {
            throw Refusal(.sessionNotFound, "the session store is unavailable: \(error)")
        }
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
        try await bind(verified, session: session, connectionID: connectionID)
        let scope = try Scope(
            session: session, claimAllowedTools: claim.allowedTools, endpointServer: endpointServer,
            catalog: resolver.catalog)
        return CallContext(claim: verified, session: session, scope: scope, connectionID: connectionID, readAt: readAt)
    }

    func verifyCached(_ token: String) throws(Refusal) -> VerifiedClaim {
        if let cached = verifiedTokens.withLock({ $0[token] }) {
            try verifier.checkTime(cached.claim)
            return cached
        }
        let verified = try verifier.verify(token)
        verifiedTokens.withLock { cache in
            if cache.count >= Self.tokenCacheLimit {
                let cutoff = Int64(now().timeIntervalSince1970)
                cache = cache.filter { $0.value.claim.exp > cutoff }
                if cache.count >= Self.tokenCacheLimit { cache.removeAll() }
            }
            cache[token] = verified
        }
        return verified
    }

    func bind(_ verified: VerifiedClaim, session: Session, connectionID: String) async throws(Refusal) {
        // Keyed like the store: a jti only names a claim within its signer's and tenant's namespace.
        let bindingKey = ClaimBindingKey(verified)
        // The connection check comes before the claim binding is stored: a claim presented on a
        // connection it may not use is refused without being burned, so whoever planted it on the
        // wrong connection cannot deny its owner the claim (the owner would get claim_replayed).
        guard await connections.mayServe(session.id, connectionID: connectionID) else {
            throw connectionOfAnotherSession(session)
        }
        if let bound = confirmedBindings.withLock({ $0[bindingKey] }) {
            guard bound == connectionID + "|" + verified.fingerprint else { throw replayed(session) }
        } else {
            let result: BindingResult
            do {
                result = try await store.bindClaim(
                    bindingKey, fingerprint: verified.fingerprint, connectionID: connectionID, sessionID: session.id,
                    expiresAt: Date(timeIntervalSince1970: TimeInterval(verified.claim.exp + 3600)))
            } catch {
                throw Refusal(.claimInvalid, "the replay-binding store is unavailable: \(error)")
            }
            guard result != .boundElsewhere else { throw replayed(session) }
            confirmedBindings.withLock { bindings in
                // Bounded like the token cache: a forgotten binding is re-read from the store.
                if bindings.count >= Self.tokenCacheLimit { bindings.removeAll(keepingCapacity: true) }
                bindings[bindingKey] = connectionID + "|" + verified.fingerprint
            }
        }
        guard await connections.bindSession(session.id, to: connectionID) else {
            throw connectionOfAnotherSession(session)
        }
        watchLease(of: session)
    }

    /// Acts on a lease's end when it comes, not on the session's next request: at `expires_at` the
    /// session's live connections are closed and `lease.expired` is audited. A renewed lease is
    /// watched in turn; a revoked one was already handled by the revocation.
    func watchLease(of session: Session) {
        let lease = session.lease
        guard watchedLeases.withLock({ $0.insert(lease.id).inserted }) else { return }
        let delay = max(0, lease.expiresAt.timeIntervalSince(now()))
        Task { [weak self] in
            // A timer is the point: the lease ends at a time, not at an event. The 50 ms margin puts
            // the wake-up past `expires_at`, so the re-read below sees the lease as over.
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000) + 50))
            guard let self else { return }
            self.watchedLeases.withLock { _ = $0.remove(lease.id) }
            guard let current = try? await self.store.session(id: session.id), current.revokedAt == nil else { return }
            if current.lease.id != lease.id || current.lease.isLive(at: self.now()) {
                self.watchLease(of: current)  // renewed, or not over yet: watch the lease in force
                return
            }
            // A revoked lease had its connections closed when it was revoked.
            guard current.lease.revokedAt == nil else { return }
            var event = AuditEvent("lease.expired")
            event.tenant = current.tenantID
            event.actor = current.actorID
            event.session = current.id
            event.lease = lease.id
            event.workspace = current.workspaceID
            _ = try? await self.audit.append(event)
            await self.closeConnections(ofSession: current.id, reason: "lease expired")
        }
    }

    func connectionOfAnotherSession(_ session: Session) -> Refusal {
        Refusal(
            .boundaryMismatch,
            "this MCP connection belongs to another session; open a new connection for session \(session.id)")
    }

    func replayed(_ session: Session) -> Refusal {
        Refusal(
            .claimReplayed,
            "claim was first used on another MCP connection; each claim serves one connection (session \(session.id))")
    }
}
