import Foundation
import Logging
import MCP
import Sandbox
import Synchronization
import WorkspaceRegistry

// Catalog and policy changes: validated reloads, atomic swaps, warm workers of changed tiers
// destroyed, and tools/list_changed to every connection whose view changed.
extension Gateway {
    // MARK: Catalog and policy

    /// Replaces catalog and policy atomically, then tells connected sessions whose view changed.
    public func replace(catalog: Catalog? = nil, policy: RiskPolicy? = nil) async {
        let defaults = upstreams.defaultTiers
        resolverState.withLock { state in
            state = ScopeResolver(
                catalog: catalog ?? state.catalog, policy: policy?.withServerTiers(defaults) ?? state.policy)
        }
        await notifyAllConnections()
    }

    /// Swaps in a resolver already built (the reload path builds it once, to compare and to use).
    func install(_ next: ScopeResolver) async {
        resolverState.withLock { $0 = next }
        await notifyAllConnections()
    }

    /// The policy in force and the last rejected reload, for `GET /api/v1/policy` and logs.
    public var policyStatus: PolicyStatus { policyState.withLock { $0 } }

    /// Loads `directory`, validates it (files and catalog), and swaps it in atomically; connected
    /// sessions whose visible set changed get `notifications/tools/list_changed`. An invalid
    /// policy is rejected and the one in force stays.
    ///
    /// Files rewritten while they were read (a policy written in place, truncated then written) are
    /// neither installed nor reported as rejected: what was parsed may be half a file, so the
    /// caller reads them again once they hold still (``PolicyReloader``).
    ///
    /// - Returns: the new version, or the problems that rejected it.
    @discardableResult
    public func reloadPolicy(directory: String) async -> Result<String, PolicyValidationError> {
        let before = PolicyFiles.currentVersion(directory: directory)
        let loaded: RiskPolicy
        do {
            loaded = try RiskPolicy.load(directory: directory).withServerTiers(upstreams.defaultTiers)
        } catch {
            guard PolicyFiles.currentVersion(directory: directory) == before else {
                return .failure(policyChangedWhileRead(directory))
            }
            rejectPolicy(error)
            return .failure(error)
        }
        // What was parsed is what was on disk before and is still there after: not half a file.
        guard loaded.version == before, PolicyFiles.currentVersion(directory: directory) == before else {
            return .failure(policyChangedWhileRead(directory))
        }
        let report = PolicyReport.check(loaded, catalog: resolver.catalog, enforcement: executor.limitEnforcement)
        guard report.errors.isEmpty else {
            let error = PolicyValidationError(
                diagnostics: report.errors.map {
                    PolicyDiagnostic(file: directory + "/tools.yaml", line: nil, column: nil, message: $0)
                })
            rejectPolicy(error)
            return .failure(error)
        }
        let current = resolver
        let previous = current.policy.version
        if loaded.version != previous {
            let next = ScopeResolver(catalog: current.catalog, policy: loaded)
            let changed = Self.changedTiers(from: current, to: next)
            await install(next)
            if !changed.isEmpty { await executor.tiersChanged(changed) }
        }
        policyState.withLock {
            $0.version = loaded.version; $0.loadedAt = now()
        }
        for warning in report.warnings where warning.contains("cannot be enforced") {
            logger.warning("\(warning)", metadata: ["version": "\(loaded.version)"])
        }
        logger.notice(
            "policy loaded",
            metadata: ["version": "\(loaded.version)", "previous": "\(previous)", "directory": "\(directory)"])
        if loaded.version != previous {
            // Other nodes read their files at once, not at their next tick (docs/cluster.md).
            await store.announce(.policy(version: loaded.version, node: audit.node))
        }
        return .success(loaded.version)
    }

    /// Tiers whose settings changed or disappeared, plus every tier a catalog tool moved out of or
    /// into, for any tenant: workers of those tiers no longer match what the policy says.
    static func changedTiers(from current: ScopeResolver, to next: ScopeResolver) -> Set<String> {
        let policy = next.policy
        var changed = Set(current.policy.tiers.keys.filter { current.policy.tiers[$0] != policy.tiers[$0] })
        let tenants = Set(current.policy.tenantOverrides.keys).union(policy.tenantOverrides.keys)
        for tenant in [nil] + tenants.sorted().map(Optional.some) {
            for tool in current.catalog.tools {
                let before = current.tier(of: tool.name, tenant: tenant)
                let after = next.tier(of: tool.name, tenant: tenant)
                if before != after {
                    if let before { changed.insert(before) }
                    if let after { changed.insert(after) }
                }
            }
        }
        return changed
    }

    /// The answer to a reload whose files changed while they were read; logged, not a rejection.
    func policyChangedWhileRead(_ directory: String) -> PolicyValidationError {
        logger.notice(
            "policy files changed while they were read; the policy in force stays until they hold still",
            metadata: ["directory": "\(directory)", "version_in_force": "\(resolver.policy.version)"])
        return PolicyValidationError(diagnostics: [
            PolicyDiagnostic(
                file: directory, line: nil, column: nil,
                message: "the policy files changed while they were read; read them again once they hold still")
        ])
    }

    func rejectPolicy(_ error: PolicyValidationError) {
        policyState.withLock {
            $0.lastRejection = PolicyStatus.Rejection(at: now(), errors: error.diagnostics.map(\.description))
        }
        logger.error(
            "policy reload rejected; the policy in force stays",
            metadata: ["version_in_force": "\(resolver.policy.version)", "errors": "\(error.description)"])
    }

    /// Tells every connection of `sessionID` whose visible set changed.
    public func sessionChanged(_ sessionID: String) async {
        guard let session = try? await store.session(id: sessionID) else { return }
        await notify(session: session)
    }

    /// Closes the live MCP connections of `sessionID` (revoke, lease revoke, actor or workspace
    /// hand-off): a connection serves one holder of the session and is never handed to the next.
    public func closeConnections(ofSession sessionID: String, reason: String) async {
        let closed = await connections.close(session: sessionID)
        if closed > 0 {
            logger.info(
                "closed connections",
                metadata: ["session": "\(sessionID)", "count": "\(closed)", "reason": "\(reason)"])
        }
    }

    func notifyAllConnections() async {
        for sessionID in await connections.sessionIDs() {
            await sessionChanged(sessionID)
        }
    }

    func notify(session: Session) async {
        let resolver = self.resolver
        for entry in await connections.entries(forSession: session.id) {
            let names: [String]
            if session.revokedAt != nil {
                names = []
            } else if let scope = try? Scope(
                session: session, claimAllowedTools: entry.claimAllowedTools, endpointServer: entry.endpointServer,
                catalog: resolver.catalog)
            {
                names = resolver.listing(in: scope).map(\.name)
            } else {
                names = []
            }
            await connections.notifyIfChanged(connectionID: entry.connectionID, visible: names)
        }
    }
}

/// The policy in force and the last reload that was refused.
public struct PolicyStatus: Sendable, Encodable {
    /// A reload that was refused.
    public struct Rejection: Sendable, Encodable {
        /// When.
        public let at: Date
        /// Every problem, `file:line:column: message`.
        public let errors: [String]
    }

    /// Content hash of the policy in force.
    public var version: String
    /// When it was loaded.
    public var loadedAt: Date
    /// The last refused reload, if any since start.
    public var lastRejection: Rejection?

    enum CodingKeys: String, CodingKey {
        case version
        case loadedAt = "loaded_at"
        case lastRejection = "last_rejection"
    }
}
