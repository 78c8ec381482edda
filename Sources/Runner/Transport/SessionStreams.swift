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

    /// One stream's place in its session's count, given back once: when the stream ends, when
    /// its HTTP connection closes (a client gone mid-stream; the response task itself only
    /// notices at the next event it cannot write), or when the last reference goes.
    final class Slot: Sendable {
        private let streams: SessionStreams
        private let sessionID: String
        private let held = Mutex(true)

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
    }
}
