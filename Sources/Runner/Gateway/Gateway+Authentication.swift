import Failures
import Foundation
import Logging
import MCP
import Sandbox
import Synchronization
import WorkspaceRegistry

// Stages 1-2 of a call, once per request: the claim is verified (``ClaimAuthenticator``), checked
// against its session and lease and bound to the MCP connection that presented it
// (``SessionBinder``), and the session's scope compiled. Refusals are audited here: one record
// each once the claim verified, sampled per source and interval before (``RefusalSampler``).
extension Gateway {
    // MARK: Authentication

    /// Verifies `token`, checks it against its session and binds it to `connectionID`.
    ///
    /// - Parameter endpointServer: the server a server-scoped endpoint narrows to.
    /// - Parameter source: where the request came from (the client address, IPv6 as its /64, or
    ///   `stdio`): refusals of requests without a verified claim are aggregated per source.
    /// - Throws: ``Refusal`` with the claim/session/lease/binding code.
    /// - Parameter binding: false for the request that would open a connection: it is checked but
    ///   not bound, so a request refused before the connection opens does not use up the claim;
    ///   ``bindOpened(_:)`` binds it once the connection is open.
    public func authenticate(
        token: String?, connectionID: String, endpointServer: String? = nil, requestID: String? = nil,
        source: String? = nil, binding: Bool = true
    ) async throws(Refusal) -> CallContext {
        let verified: VerifiedClaim
        do {
            verified = try authenticator.verify(token)
        } catch {
            metrics.refused(error.code.rawValue, tenant: nil)
            await refusedUnauthenticated(error, token: token, requestID: requestID, source: source ?? "unknown")
            throw error
        }
        do {
            let bound: SessionBinder.Bound
            if binding {
                bound = try await binder.bind(verified, connectionID: connectionID)
                await watchLease(of: bound.session)
            } else {
                bound = try await binder.check(verified)
            }
            let scope = try Scope(
                session: bound.session, claimAllowedTools: verified.claim.allowedTools,
                endpointServer: endpointServer, catalog: resolver.catalog)
            return CallContext(
                claim: verified, session: bound.session, scope: scope, connectionID: connectionID,
                readAt: bound.readAt)
        } catch {
            metrics.refused(error.code.rawValue, tenant: verified.claim.tenantID)
            if let cause = error.cause {
                logger.warning(
                    "request refused on an internal failure",
                    metadata: ["code": "\(error.code)", "session": "\(verified.claim.sessionID)", "cause": "\(cause)"])
            }
            // The claim verified: whoever holds it is known, so each refusal is its own record.
            _ = try? await audit.append(refusalEvent(error, token: token, requestID: requestID, of: verified))
            throw error
        }
    }

    /// Binds the claim of a context authenticated with `binding: false` to its connection, now
    /// that the connection is open (audited like any refusal when the claim was meanwhile bound
    /// elsewhere).
    func bindOpened(_ context: CallContext, requestID: String?) async throws(Refusal) {
        do {
            try await binder.bind(context.claim, session: context.session, connectionID: context.connectionID)
            await watchLease(of: context.session)
        } catch {
            metrics.refused(error.code.rawValue, tenant: context.session.tenantID)
            _ = try? await audit.append(refusalEvent(error, token: nil, requestID: requestID, of: context.claim))
            throw error
        }
    }

    /// A request whose claim did not verify (missing, malformed, wrongly signed, expired...): the
    /// first from its source in an interval is written at once, the rest are counted into one
    /// `request.refused.sampled` record at the interval's end (``RefusalSampler``). One record
    /// per such request let one client grow the audit log by megabytes a second.
    private func refusedUnauthenticated(_ error: Refusal, token: String?, requestID: String?, source: String) async {
        guard unauthenticatedRefusals.refused(source: source, code: error.code.rawValue, at: now()) == .record else {
            return
        }
        // An expired claim whose signature held once still says whose it is.
        let known = token.flatMap { $0.isEmpty ? nil : authenticator.alreadyVerified($0) }
        var event = refusalEvent(error, token: token, requestID: requestID, of: known)
        event.detail = String("from \(source): \(error.message)".prefix(512))
        _ = try? await audit.append(event)
    }

    /// The `request.refused` record of `error`, with the claim's fingerprint (never the token) and,
    /// when its signature held (`verified`), whose claim it is.
    private func refusalEvent(_ error: Refusal, token: String?, requestID: String?, of verified: VerifiedClaim?)
        -> AuditEvent
    {
        var event = AuditEvent("request.refused")
        event.decision = "refused"
        event.code = error.code.rawValue
        event.detail = String(error.message.prefix(512))
        event.requestID = requestID
        event.policyVersion = resolver.policy.version
        if let token, !token.isEmpty { event.claimFingerprint = Digest.sha256Hex(token.utf8) }
        if let verified {
            event.claimFingerprint = verified.fingerprint
            event.tenant = verified.claim.tenantID
            event.actor = verified.claim.actorID
            event.session = verified.claim.sessionID
            event.lease = verified.claim.leaseID
        }
        return event
    }

    /// Writes one `request.refused.sampled` record per source whose unauthenticated refusals were
    /// counted since the last flush (the end of an interval, and shutdown).
    public func flushRefusalSamples() async {
        for aggregate in unauthenticatedRefusals.drain() {
            var event = unauthenticatedRefusals.event(for: aggregate)
            event.policyVersion = resolver.policy.version
            do {
                try await audit.append(event)
            } catch {
                logger.warning(
                    "could not write the aggregated record of unauthenticated refusals",
                    metadata: [
                        "source": "\(aggregate.source)", "count": "\(aggregate.tally.count)",
                        "error": "\(logDescription(of: error))",
                    ])
            }
        }
    }

    /// Acts on a lease's end when it comes, not on the session's next request: at `expires_at` the
    /// session's live connections are closed and `lease.expired` is audited. A renewed lease is
    /// watched in turn; a revoked one was already handled by the revocation. The executor's timer
    /// (the worker pool's, the runner's one timer) owns the deadline.
    func watchLease(of session: Session) async {
        let lease = session.lease
        guard watchedLeases.withLock({ $0.insert(lease.id).inserted }) else { return }
        // The 50 ms margin puts the moment past `expires_at`, so the re-read sees the lease as over.
        await executor.watchLease(
            session: session.id, lease: lease.id, endsAt: lease.expiresAt.addingTimeInterval(0.05)
        ) { [weak self] _, leaseID in
            await self?.leaseEnded(session.id, leaseID: leaseID)
        }
    }

    /// A watched lease's end came: audits `lease.expired` and closes the session's connections,
    /// unless the lease was renewed (then the one in force is watched) or revoked meanwhile.
    private func leaseEnded(_ sessionID: String, leaseID: String) async {
        watchedLeases.withLock { _ = $0.remove(leaseID) }
        guard let current = try? await store.session(id: sessionID), current.revokedAt == nil else { return }
        if current.lease.id != leaseID || current.lease.isLive(at: now()) {
            await watchLease(of: current)  // renewed, or not over yet: watch the lease in force
            return
        }
        // A revoked lease had its connections closed when it was revoked.
        guard current.lease.revokedAt == nil else { return }
        var event = AuditEvent("lease.expired")
        event.tenant = current.tenantID
        event.actor = current.actorID
        event.session = current.id
        event.lease = leaseID
        event.workspace = current.workspaceID
        _ = try? await audit.append(event)
        await closeConnections(ofSession: current.id, reason: "lease expired")
    }
}
