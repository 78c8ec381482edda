import Foundation
import Synchronization

/// Results of cacheable tiers, keyed so that nothing is ever shared across tenants, workspaces or
/// workspace states: (tenant, workspace, workspace generation, tool, arguments digest).
///
/// The tenant and workspace are fields of the key type, not parts of a concatenated string, so
/// no choice of ids can make two keys collide. Any call of a tier that may change a workspace
/// (a `write` or `exec` seccomp profile) bumps that workspace's generation before and after it
/// runs, which retires every entry read before or during it.
public final class ResultCache: Sendable {
    struct Key: Hashable {
        let tenant: String
        let workspace: String
        let generation: UInt64
        let tool: String
        let argumentsDigest: String
    }

    struct WorkspaceKey: Hashable {
        let tenant: String
        let workspace: String
    }

    struct Entry {
        let result: [UInt8]
        let expires: Date
        let sequence: UInt64
    }

    struct State {
        var entries: [Key: Entry] = [:]
        var generations: [WorkspaceKey: UInt64] = [:]
        var bytes = 0
        var sequence: UInt64 = 0
        var hits = 0
        var misses = 0
        var evictions = 0
    }

    /// Counters for operators.
    public struct Statistics: Sendable, Encodable {
        /// Answers served from the cache.
        public let hits: Int
        /// Cacheable calls that had to run.
        public let misses: Int
        /// Entries dropped to stay within the bounds.
        public let evictions: Int
        /// Entries held.
        public let entries: Int
        /// Bytes of results held.
        public let bytes: Int
    }

    private let state = Mutex(State())
    private let maximumEntries: Int
    private let maximumBytes: Int

    /// Creates a cache bounded by entry count and total result bytes.
    public init(maximumEntries: Int = 10_000, maximumBytes: Int = 64 << 20) {
        self.maximumEntries = maximumEntries
        self.maximumBytes = maximumBytes
    }

    /// The cached result of a call, if one is fresh.
    func lookup(tenant: String, workspace: String, tool: String, argumentsDigest: String, now: Date) -> [UInt8]? {
        state.withLock { state in
            let generation = state.generations[WorkspaceKey(tenant: tenant, workspace: workspace), default: 0]
            let key = Key(
                tenant: tenant, workspace: workspace, generation: generation, tool: tool,
                argumentsDigest: argumentsDigest)
            guard let entry = state.entries[key], entry.expires > now else {
                state.misses += 1
                return nil
            }
            state.hits += 1
            return entry.result
        }
    }

    /// The workspace generation a call starts under; pass it back to ``store``.
    func generation(tenant: String, workspace: String) -> UInt64 {
        state.withLock { $0.generations[WorkspaceKey(tenant: tenant, workspace: workspace), default: 0] }
    }

    /// Stores a result computed under `generation`; dropped if the workspace changed meanwhile.
    func store(
        _ result: [UInt8], tenant: String, workspace: String, generation: UInt64, tool: String,
        argumentsDigest: String, expires: Date
    ) {
        guard result.count <= maximumBytes / 16 else { return }
        state.withLock { state in
            let current = state.generations[WorkspaceKey(tenant: tenant, workspace: workspace), default: 0]
            guard current == generation else { return }
            let key = Key(
                tenant: tenant, workspace: workspace, generation: generation, tool: tool,
                argumentsDigest: argumentsDigest)
            if let old = state.entries[key] { state.bytes -= old.result.count }
            state.sequence += 1
            state.entries[key] = Entry(result: result, expires: expires, sequence: state.sequence)
            state.bytes += result.count
            if state.entries.count > maximumEntries || state.bytes > maximumBytes { evict(&state, now: Date()) }
        }
    }

    /// Retires every entry of a workspace (a write or exec call is about to run or has run there).
    func bump(tenant: String, workspace: String) {
        state.withLock { state in
            let key = WorkspaceKey(tenant: tenant, workspace: workspace)
            state.generations[key, default: 0] &+= 1
            let stale = state.entries.keys.filter { $0.tenant == tenant && $0.workspace == workspace }
            for entry in stale {
                state.bytes -= state.entries.removeValue(forKey: entry)?.result.count ?? 0
            }
        }
    }

    /// Expired entries first, then the oldest, until within bounds with a quarter to spare.
    private func evict(_ state: inout State, now: Date) {
        for (key, entry) in state.entries where entry.expires <= now {
            state.entries.removeValue(forKey: key)
            state.bytes -= entry.result.count
            state.evictions += 1
        }
        guard state.entries.count > maximumEntries * 3 / 4 || state.bytes > maximumBytes * 3 / 4 else { return }
        for (key, entry) in state.entries.sorted(by: { $0.value.sequence < $1.value.sequence }) {
            guard state.entries.count > maximumEntries * 3 / 4 || state.bytes > maximumBytes * 3 / 4 else { break }
            state.entries.removeValue(forKey: key)
            state.bytes -= entry.result.count
            state.evictions += 1
        }
    }

    /// The counters.
    public var statistics: Statistics {
        state.withLock {
            Statistics(
                hits: $0.hits, misses: $0.misses, evictions: $0.evictions, entries: $0.entries.count, bytes: $0.bytes)
        }
    }
}
