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
        /// Who held the session when it was bound here (``Session/holder``): a hand-off made on
        /// another node shows as a different holder (see `Gateway.apply(_:)`).
        var holder: String?
        var claimAllowedTools: [String]?
        /// In listing order (built-ins, then by name), which is deterministic, so arrays compare.
        var lastVisible: [String]?
        var lastActive: Date
        /// JSON-RPC ids of requests whose responses are still being produced.
        var inFlight: Set<String> = []
        /// How to cancel the calls among them that can be (`notifications/cancelled`).
        var cancellations: [String: CallCancellation] = [:]
        /// A claim's sessionless binding (MCP 2026-07-28): no transport of its own, reaped when
        /// idle and not listening.
        var sessionless = false
        /// Open `subscriptions/listen` streams (2026-07-28) by listener id: where this
        /// connection's `list_changed` goes instead of the SDK server.
        var listeners: [String: Listener] = [:]
    }

    /// One `subscriptions/listen` stream: frames are stamped with its request id.
    struct Listener {
        /// The `subscriptions/listen` request (its id stamps the frames).
        let request: ModernProtocol.Request
        /// Whether it asked for `notifications/tools/list_changed`.
        let toolsListChanged: Bool
        let frames: AsyncStream<Data>.Continuation
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

    /// Registers (or touches) the sessionless binding of a claim (MCP 2026-07-28).
    func registerSessionless(_ connectionID: String, endpointServer: String?) {
        var entry = entries[connectionID] ?? Entry(lastActive: Date())
        entry.sessionless = true
        entry.endpointServer = endpointServer
        entry.lastActive = Date()
        entries[connectionID] = entry
    }

    /// Adds a `subscriptions/listen` stream to a connection; false when the connection is gone
    /// (the stream then ends at once). `listenerID` removes it again.
    func listen(_ listenerID: String, on connectionID: String, _ listener: Listener) -> Bool {
        guard entries[connectionID] != nil else { return false }
        entries[connectionID]?.listeners[listenerID] = listener
        entries[connectionID]?.lastActive = Date()
        return true
    }

    /// Removes a `subscriptions/listen` stream (its client went away).
    func stopListening(_ listenerID: String, on connectionID: String) {
        entries[connectionID]?.listeners.removeValue(forKey: listenerID)?.frames.finish()
        entries[connectionID]?.lastActive = Date()
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
    func bindSession(_ sessionID: String, holder: String? = nil, to connectionID: String) -> Bool {
        var entry = entries[connectionID] ?? Entry(lastActive: Date())
        if let existing = entry.sessionID, existing != sessionID { return false }
        entry.sessionID = sessionID
        if let holder { entry.holder = holder }
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

    /// The holders (``Session/holder``) the connections of `sessionID` were bound for.
    func holders(ofSession sessionID: String) -> Set<String> {
        Set(entries.values.compactMap { $0.sessionID == sessionID ? $0.holder : nil })
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
        guard let entry = entries[connectionID], entry.server != nil || !entry.listeners.isEmpty else { return }
        guard entry.lastVisible != visible else { return }
        entries[connectionID]?.lastVisible = visible
        // A 2026-07-28 client hears of changes on its listen streams only; older clients through
        // the SDK server (stdio serves both, one client at a time).
        if !entry.listeners.isEmpty {
            for listener in entry.listeners.values where listener.toolsListChanged {
                listener.frames.yield(
                    ModernProtocol.listenFrame(
                        method: "notifications/tools/list_changed", subscriptionID: listener.request.id))
            }
        } else if let server = entry.server {
            try? await server.notify(ToolListChangedNotification.message())
        }
    }

    /// Removes a connection and stops its server.
    func remove(_ connectionID: String) async {
        guard let entry = entries.removeValue(forKey: connectionID) else { return }
        for listener in entry.listeners.values { listener.frames.finish() }
        await entry.server?.stop()
    }

    /// Removes connections idle since before `cutoff`.
    func reapIdle(before cutoff: Date) async -> Int {
        let idle = entries.filter { _, entry in
            entry.lastActive < cutoff
                && (entry.httpTransport != nil || (entry.sessionless && entry.listeners.isEmpty))
        }.map(\.key)
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
