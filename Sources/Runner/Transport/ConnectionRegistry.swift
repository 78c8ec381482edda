import Foundation
import MCP
import Sandbox

/// The live MCP connections: which session each serves, what it last saw, and how to reach it.
public actor ConnectionRegistry {
    /// One connection's state.
    struct Entry {
        var server: Server?
        var httpTransport: StatefulHTTPServerTransport?
        var endpointServer: String?
        var sessionID: String?
        var claimAllowedTools: [String]?
        /// In listing order (built-ins, then by name), which is deterministic, so arrays compare.
        var lastVisible: [String]?
        var lastActive: Date
        /// JSON-RPC ids of requests whose responses are still being produced.
        var inFlight: Set<String> = []
        /// How to cancel the calls among them that can be (`notifications/cancelled`).
        var cancellations: [String: CallCancellation] = [:]
    }

    /// What the gateway needs to recompute a connection's visible set.
    public struct Snapshot: Sendable {
        /// The connection id.
        public let connectionID: String
        /// The claim narrowing last presented on it.
        public let claimAllowedTools: [String]?
        /// The endpoint narrowing.
        public let endpointServer: String?
    }

    private var entries: [String: Entry] = [:]

    /// Creates an empty registry.
    public init() {}

    /// Registers a connection before its first request is handled.
    ///
    /// The HTTP endpoint authenticates (and so binds the connection to a session) before the
    /// connection is registered; registering keeps that binding rather than starting afresh, or a
    /// second session's claim could later claim the connection.
    func register(
        _ connectionID: String, server: Server?, httpTransport: StatefulHTTPServerTransport?, endpointServer: String?
    ) {
        var entry = entries[connectionID] ?? Entry(lastActive: Date())
        entry.server = server
        entry.httpTransport = httpTransport
        entry.endpointServer = endpointServer
        entry.lastActive = Date()
        entries[connectionID] = entry
    }

    /// Sets the server once started (stdio registers first, then starts).
    func attach(server: Server, to connectionID: String) {
        entries[connectionID]?.server = server
    }

    /// The HTTP transport and endpoint of a connection, touching its activity time.
    func httpConnection(_ connectionID: String) -> (StatefulHTTPServerTransport, String?)? {
        guard var entry = entries[connectionID], let transport = entry.httpTransport else { return nil }
        entry.lastActive = Date()
        entries[connectionID] = entry
        return (transport, entry.endpointServer)
    }

    /// Whether the connection is unbound or already serves `sessionID` (no change is made).
    func mayServe(_ sessionID: String, connectionID: String) -> Bool {
        guard let bound = entries[connectionID]?.sessionID else { return true }
        return bound == sessionID
    }

    /// Binds the connection to a session on first use; false when it already serves another.
    /// Unregistered connection ids (tests calling the gateway directly) are tracked on the fly.
    func bindSession(_ sessionID: String, to connectionID: String) -> Bool {
        var entry = entries[connectionID] ?? Entry(lastActive: Date())
        if let existing = entry.sessionID, existing != sessionID { return false }
        entry.sessionID = sessionID
        entry.lastActive = Date()
        entries[connectionID] = entry
        return true
    }

    /// Marks request ids as in flight; false (and nothing marked) when one already is. A call
    /// given a `cancellation` can be cancelled by its id until it finishes.
    func startRequests(_ ids: [String], on connectionID: String, cancellation: CallCancellation? = nil) -> Bool {
        guard var entry = entries[connectionID] else { return true }
        guard Set(ids).count == ids.count, entry.inFlight.isDisjoint(with: ids) else { return false }
        entry.inFlight.formUnion(ids)
        if let cancellation, ids.count == 1 { entry.cancellations[ids[0]] = cancellation }
        entries[connectionID] = entry
        return true
    }

    /// Ends the requests' hold on their ids.
    func finishRequests(_ ids: [String], on connectionID: String) {
        entries[connectionID]?.inFlight.subtract(ids)
        for id in ids { entries[connectionID]?.cancellations[id] = nil }
    }

    /// Cancels the call in flight with JSON-RPC id `requestID` on this connection (a client's
    /// `notifications/cancelled`); false when there is none to cancel. Only the connection the
    /// request came on can cancel it.
    @discardableResult
    func cancel(_ requestID: String, on connectionID: String) -> Bool {
        guard let cancellation = entries[connectionID]?.cancellations.removeValue(forKey: requestID) else {
            return false
        }
        cancellation.cancel()
        return true
    }

    /// Remembers what a connection was last shown, to detect changes later.
    func recordListed(_ names: [String], connectionID: String, claim: VerifiedClaim) {
        entries[connectionID]?.lastVisible = names
        entries[connectionID]?.claimAllowedTools = claim.claim.allowedTools
    }

    /// Open connections and the sessions among them (`/metrics`).
    func counts() -> (connections: Int, sessions: Int) {
        (entries.count, Set(entries.values.compactMap(\.sessionID)).count)
    }

    /// Session ids with at least one connection.
    func sessionIDs() -> Set<String> {
        Set(entries.values.compactMap(\.sessionID))
    }

    /// The connections of one session.
    func entries(forSession sessionID: String) -> [Snapshot] {
        entries.compactMap { id, entry in
            entry.sessionID == sessionID
                ? Snapshot(
                    connectionID: id, claimAllowedTools: entry.claimAllowedTools, endpointServer: entry.endpointServer)
                : nil
        }
    }

    /// Sends `notifications/tools/list_changed` when `visible` differs from what was last listed.
    func notifyIfChanged(connectionID: String, visible: [String]) async {
        guard let entry = entries[connectionID], let server = entry.server else { return }
        guard entry.lastVisible != visible else { return }
        entries[connectionID]?.lastVisible = visible
        try? await server.notify(ToolListChangedNotification.message())
    }

    /// Removes a connection and stops its server.
    func remove(_ connectionID: String) async {
        guard let entry = entries.removeValue(forKey: connectionID) else { return }
        await entry.server?.stop()
    }

    /// Removes connections idle since before `cutoff`.
    func reapIdle(before cutoff: Date) async -> Int {
        let idle = entries.filter { $0.value.lastActive < cutoff && $0.value.httpTransport != nil }.map(\.key)
        for id in idle { await remove(id) }
        return idle.count
    }

    /// Closes every connection of `sessionID`: their servers stop and open SSE streams end, so a
    /// client learns at once (404 on its next request) instead of holding a stream to a session
    /// that no longer admits it. Returns how many were closed.
    func close(session sessionID: String) async -> Int {
        let ids = entries.filter { $0.value.sessionID == sessionID }.map(\.key)
        for id in ids { await remove(id) }
        return ids.count
    }

    /// Stops every connection (shutdown).
    func removeAll() async {
        for id in Array(entries.keys) { await remove(id) }
    }

    /// The number of live connections.
    public var count: Int { entries.count }
}
