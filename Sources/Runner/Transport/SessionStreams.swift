import Foundation
import Synchronization

/// Open GET (SSE) streams per session, capped.
///
/// The SDK allows one standalone stream per MCP connection, but a session may have a connection
/// per claim, and every `Last-Event-ID` resumption opens another stream; each holds a socket and
/// a task for as long as the client keeps it. The cap is per session (across its connections),
/// so one session cannot hold the runner's connections through streams.
final class SessionStreams: Sendable {
    /// Streams one session may hold.
    let limit: Int
    private let counts = Mutex<[String: Int]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    /// A slot for one more stream of `sessionID`, or nil when the session holds ``limit``.
    func open(session sessionID: String) -> Slot? {
        let admitted = counts.withLock { counts in
            let open = counts[sessionID, default: 0]
            guard open < limit else { return false }
            counts[sessionID] = open + 1
            return true
        }
        return admitted ? Slot(streams: self, sessionID: sessionID) : nil
    }

    /// Streams `sessionID` holds.
    func open(of sessionID: String) -> Int {
        counts.withLock { $0[sessionID, default: 0] }
    }

    fileprivate func close(_ sessionID: String) {
        counts.withLock { counts in
            guard let open = counts[sessionID] else { return }
            counts[sessionID] = open > 1 ? open - 1 : nil
        }
    }

    /// Events a GET stream may hold for a client that does not read them (beyond what its socket
    /// and the HTTP writer take); one more closes the stream (see ``Slot/bounded(_:)``).
    static let backlog = 256

    /// One stream's place in its session's count, given back once: when the stream ends, when
    /// its HTTP connection closes (a client gone mid-stream; the response task itself only
    /// notices at the next event it cannot write), or when the last reference goes.
    final class Slot: Sendable {
        private let streams: SessionStreams
        private let sessionID: String
        private let held = Mutex(true)
        /// Closes the stream's HTTP connection (set by the edge that opened it).
        let closeConnection = Mutex<(@Sendable () -> Void)?>(nil)

        fileprivate init(streams: SessionStreams, sessionID: String) {
            self.streams = streams
            self.sessionID = sessionID
        }

        /// Gives the slot back (again is nothing).
        func release() {
            guard
                held.withLock({ held in
                    defer { held = false }
                    return held
                })
            else { return }
            streams.close(sessionID)
        }

        deinit {
            release()
        }

        /// `events` (the SDK's stream, which buffers without bound) read as they come into a
        /// backlog of at most ``SessionStreams/backlog`` events waiting for the client: a client
        /// that stops reading while the server has notifications for it would otherwise make the
        /// runner hold them all. When the backlog is full the stream ends and its connection is
        /// closed (the client may open another stream and list again; `list_changed` is a hint to
        /// re-list, so nothing is lost that a new listing does not give back).
        func bounded(_ events: AsyncThrowingStream<Data, any Error>) -> AsyncThrowingStream<Data, any Error> {
            let (backlog, waiting) = AsyncThrowingStream<Data, any Error>.makeStream(
                bufferingPolicy: .bufferingOldest(SessionStreams.backlog))
            let pump = Task {
                do {
                    for try await event in events {
                        guard case .dropped = waiting.yield(event) else { continue }
                        waiting.finish(throwing: BacklogFull())
                        self.closeConnection.withLock { $0 }?()
                    }
                    waiting.finish()
                } catch {
                    waiting.finish(throwing: error)
                }
            }
            // The backlog ended (full, or its reader gone): the pump is cancelled, which ends the
            // SDK's stream too, so what the SDK sends it afterwards is discarded, not held.
            // Unstructured: the backlog is handed to the SDK, which reads it in a task of its own,
            // so no scope of Leasehold's spans both ends; the stream is the pump's one owner.
            waiting.onTermination = { _ in pump.cancel() }
            return backlog
        }

        /// A stream whose client let ``SessionStreams/backlog`` events wait.
        struct BacklogFull: Error {}
    }
}
