import Foundation
import Logging
import Sandbox

// Upstream MCP servers: their tools join the catalog when listed, and again whenever a server
// says they changed; connections whose view changed are told (`tools/list_changed`).
extension Gateway {
    /// Lists every upstream server's tools (at start). A server that cannot be listed keeps no
    /// tools in the catalog and says why in its status; the others are unaffected.
    public func listUpstreams() async {
        await withTaskGroup(of: Void.self) { group in
            for id in upstreams.servers.keys.sorted() {
                group.addTask { await self.refreshUpstream(id) }
            }
        }
    }

    /// Asks for `id`'s tools to be listed again, without waiting: ``UpstreamRefresher`` lists it
    /// (once for any number of asks that arrive while a listing of it runs).
    func requestUpstreamRefresh(_ id: String) {
        upstreamRefresh.yield(id)
    }

    /// Lists `id`'s tools again and swaps them into the catalog.
    public func refreshUpstream(_ id: String) async {
        let tierName = upstreams.servers[id]?.tier
        let settings = tierName.flatMap { resolver.policy.tiers[$0] }
        var tier =
            settings.map { ToolDispatch.workerTier(tierName ?? "upstream", $0) }
            ?? WorkerTier(
                name: "upstream", isolation: .session, profile: .exec,
                limits: WorkerLimits(wallMs: 30_000, cpuSeconds: 30, memoryMiB: 1024, processes: 64, cpuWeight: 100))
        // A shared server's listing goes to the process its calls use (same tier, same key); any
        // other server is listed by a process of its own that holds no tenant's data.
        if upstreams.servers[id]?.isolation != .shared { tier.name = "catalog:" + tier.name }
        let identity = await dispatch.identity(forTenant: UpstreamRegistry.sharedTenant)
        guard let tools = await upstreams.list(id, executor: executor, tier: tier, hostIdentity: identity, logger: logger)
        else { return }
        // Read and swapped under the lock: servers listed at once must not undo each other.
        let failure: String? = resolverState.withLock { state in
            do {
                state = ScopeResolver(catalog: try state.catalog.replacing(server: id, with: tools), policy: state.policy)
                return nil
            } catch {
                return "\(error)"
            }
        }
        if let failure {
            logger.error("upstream tools not added to the catalog", metadata: ["server": "\(id)", "error": "\(failure)"])
            return
        }
        logger.notice("upstream tools listed", metadata: ["server": "\(id)", "tools": "\(tools.count)"])
        await notifyAllConnections()
    }

    /// Applies a reloaded `servers:` (already validated): removed and changed servers lose their
    /// processes and tools, the default tiers follow the new list, and changed and new servers
    /// are listed again. Connections whose view changed are told.
    public func reloadUpstreams(_ servers: [UpstreamServer]) async {
        let change = upstreams.replace(with: servers)
        guard !(change.removed.isEmpty && change.changed.isEmpty && change.added.isEmpty) else { return }
        for id in change.removed.union(change.changed).sorted() { await executor.retire(upstream: id) }
        let defaults = upstreams.defaultTiers
        resolverState.withLock { state in
            var catalog = state.catalog
            for id in change.removed.union(change.changed) {
                if let without = try? catalog.replacing(server: id, with: []) { catalog = without }
            }
            state = ScopeResolver(catalog: catalog, policy: state.policy.withServerTiers(defaults))
        }
        logger.notice(
            "servers reloaded",
            metadata: [
                "removed": "\(change.removed.sorted())", "changed": "\(change.changed.sorted())",
                "added": "\(change.added.sorted())",
            ])
        await notifyAllConnections()
        await withTaskGroup(of: Void.self) { group in
            for id in change.changed.union(change.added).sorted() {
                group.addTask { await self.refreshUpstream(id) }
            }
        }
    }
}
