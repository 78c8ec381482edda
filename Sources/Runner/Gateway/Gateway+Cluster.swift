import Failures
import Foundation
import Sandbox
import ServiceLifecycle

/// Several runner nodes on one store: what another node (or this one) committed takes effect on the
/// connections and workers this node holds.
extension Gateway {
    /// Applies a change the store delivered. Every step is idempotent, so a node applies its own
    /// changes a second time harmlessly (the admin call that made them already did, at once) and a
    /// change delivered twice does nothing more.
    ///
    /// - A session revoked, or its lease revoked: its connections here close and its workers die.
    /// - A hand-off (another actor or workspace): the same, for connections bound to the previous
    ///   holder.
    /// - A lease renewed: workers of the previous lease die.
    /// - Anything else (a scope PATCH): connections whose visible tools changed get
    ///   `notifications/tools/list_changed`.
    /// - A workspace removed: its cached results and workers go.
    /// - After missed notifications (``StoreChange/resynced``): every session this node serves is
    ///   checked against the store again.
    /// - Another node loaded a policy this node does not run: the policy reloader reads the files
    ///   again at once (``policyAnnouncements``).
    public func apply(_ change: StoreChange) async {
        switch change {
        case .session(let id, _):
            await reconcile(sessionID: id)
        case .workspaceRemoved(let tenantID, let workspaceID):
            cache.bump(tenant: tenantID, workspace: workspaceID)
            disk.forget(tenant: tenantID, workspace: workspaceID)
            await executor.retire(tenant: tenantID, workspace: workspaceID, reason: .workspaceRemoved)
        case .resynced:
            var served = await connections.sessionIDs()
            served.formUnion(await executor.warmWorkersBySession().keys)
            for id in served.sorted() { await reconcile(sessionID: id) }
        case .policy(let version, let node):
            guard version != resolver.policy.version else { return }
            logger.notice(
                "another node loaded a policy this node does not run; reading the policy files again",
                metadata: ["version": "\(version)", "node": "\(node)", "in_force": "\(resolver.policy.version)"])
            policyAnnouncement.yield(version)
        }
    }

    /// Brings this node's connections and workers of one session in line with the stored session.
    func reconcile(sessionID id: String) async {
        let session: Session?
        do {
            session = try await store.session(id: id)
        } catch {
            // The next call reads the store too and is refused while it cannot; connections and
            // workers are reconciled at the resync that follows the store's return.
            logger.warning(
                "cannot read a changed session; its calls are refused until the store answers",
                metadata: ["session": "\(id)", "error": "\(logDescription(of: error))"])
            return
        }
        guard let session, session.revokedAt == nil else {
            await closeConnections(ofSession: id, reason: "session revoked")
            await executor.retire(session: id, reason: .sessionRevoked)
            return
        }
        if session.lease.revokedAt != nil {
            await closeConnections(ofSession: id, reason: "lease revoked")
            await executor.retire(session: id, reason: .leaseReplaced)
            return
        }
        if await connections.holders(ofSession: id).contains(where: { $0 != session.holder }) {
            await closeConnections(ofSession: id, reason: "hand-off to another actor or workspace")
            await executor.retire(session: id, reason: .handOff)
            return
        }
        await executor.retire(session: id, exceptLease: session.lease.id, reason: .leaseReplaced)
        await notify(session: session)
    }
}

/// Feeds the store's changes to the gateway for as long as the runner serves (a single-node store
/// delivers none, and this service ends at once).
struct StoreChangeApplier: Service {
    let gateway: Gateway

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await change in gateway.store.changes {
                await gateway.apply(change)
            }
        }
    }
}
