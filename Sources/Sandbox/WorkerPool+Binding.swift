import Foundation

extension WorkerPool {
    /// What a worker is bound to for its whole life (invariant 2): a call whose binding differs in
    /// anything never runs on it.
    struct Binding: Sendable, Hashable {
        var tenantID: String
        var workspaceID: String
        var workspaceRoot: String
        var workspaceReadOnly: Bool
        var sessionID: String
        var actorID: String
        var leaseID: String
        var tier: WorkerTier
        var hostIdentity: WorkerHostIdentity?
        /// The upstream server it runs (its tool name left out: one process serves every tool).
        var upstream: UpstreamCall?

        init(_ invocation: ToolInvocation) {
            hostIdentity = invocation.hostIdentity
            tenantID = invocation.tenantID
            workspaceID = invocation.workspaceID
            workspaceRoot = invocation.workspaceRoot
            workspaceReadOnly = invocation.workspaceReadOnly
            sessionID = invocation.sessionID
            actorID = invocation.actorID
            leaseID = invocation.leaseID
            tier = invocation.tier
            upstream = invocation.upstream.map { call in
                var server = call
                server.tool = ""
                return server
            }
            // A process a tenant's sessions share belongs to none of them: it is not retired with
            // a session, and a call of another session or actor of the tenant is served by it.
            switch invocation.upstream?.scope {
            case .tenant(let workspace)?:
                sessionID = ""
                actorID = ""
                leaseID = ""
                if !workspace { workspaceID = "" }
            case .shared?:
                // Every tenant's calls and the catalog's listing go to the one process, which
                // runs as ids of its own (the runner passes those) and holds no workspace.
                tenantID = ""
                sessionID = ""
                actorID = ""
                leaseID = ""
                workspaceID = ""
            case .session?, nil:
                break
            }
        }
    }

    /// The key of a warm worker (and of spares): session, lease, tier and, for an upstream, its server.
    struct WarmKey: Hashable, Sendable {
        var sessionID: String
        var leaseID: String
        var tier: String
        /// The upstream server, for a worker running one.
        var server: String = ""

        /// The warm key of a session's tier, or of the process an upstream call goes to.
        init(_ invocation: ToolInvocation) {
            sessionID = invocation.sessionID
            leaseID = invocation.leaseID
            tier = invocation.tier.name
            guard let upstream = invocation.upstream else { return }
            server = upstream.launch.server
            switch upstream.scope {
            case .session: break
            case .tenant(let workspace):
                sessionID = "tenant:" + invocation.tenantID + (workspace ? ":" + invocation.workspaceID : "")
                leaseID = ""
            case .shared:
                sessionID = "shared"
                leaseID = ""
            }
        }

        init(sessionID: String, leaseID: String, tier: String) {
            self.sessionID = sessionID
            self.leaseID = leaseID
            self.tier = tier
        }
    }
}
