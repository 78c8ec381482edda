import AsyncHTTPClient
import NIOCore
import NIOHTTP1

// The server's side of the conversation between calls: its standalone GET stream, the listings
// its `notifications/tools/list_changed` ask for, and the notifications calls leave behind.
extension HTTPUpstream {
    /// How the server's standalone GET stream is doing (shown in its status).
    enum StreamState: Sendable, Equatable, CustomStringConvertible {
        /// Open: list changes arrive as they happen.
        case open
        /// Dropped or refused; opened again after the delay.
        case reconnecting(why: String, after: Duration)
        /// The server answered GET with 405: it offers none, and is not asked again.
        case notOffered

        var description: String {
            switch self {
            case .open: "open"
            case .reconnecting(let why, let after):
                "reconnecting in \(after.components.seconds * 1000 + after.components.attoseconds / 1_000_000_000_000_000) ms: \(why)"
            case .notOffered:
                "not offered (GET answered 405): tool list changes are seen only in the answers to calls"
            }
        }
    }

    /// The most bytes one event of the GET stream may hold; a larger one drops the stream.
    static let maximumStreamEventBytes = 1 << 20
    /// The first wait before the GET stream is opened again; it doubles up to ``maximumReconnectDelay``.
    static let firstReconnectDelay = Duration.milliseconds(250)
    static let maximumReconnectDelay = Duration.seconds(30)
    /// A stream that stayed open this long (or carried an event) was healthy: the next wait starts
    /// again from ``firstReconnectDelay``.
    static let healthyStream = Duration.seconds(10)
    /// How long opening the session or the GET stream may take.
    static let streamOpenTimeout = Duration.seconds(30)

    /// What the listener acts on, fed by requests: bounded streams, so a server that floods
    /// costs nothing but dropped signals.
    final class Signals: Sendable {
        /// A notification (or an answer) for the server, with the session it belongs to.
        struct Outgoing: Sendable {
            let message: [UInt8]
            let session: String?
        }

        /// One element per list change; while a listing runs, any number of changes wait as one.
        let changes: AsyncStream<Void>
        private let changed: AsyncStream<Void>.Continuation
        /// Notifications no caller waits for (cancellations).
        let outbox: AsyncStream<Outgoing>
        private let outgoing: AsyncStream<Outgoing>.Continuation

        init() {
            (changes, changed) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
            (outbox, outgoing) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(64))
        }

        /// The server said its tools changed.
        func toolsChanged() { changed.yield() }

        /// Sends `message` to the server soon, best effort.
        func send(_ message: [UInt8], session: String?) { outgoing.yield(Outgoing(message: message, session: session)) }

        /// Ends both streams: the listener returns.
        func finish() {
            changed.finish()
            outgoing.finish()
        }
    }

    /// Runs until ``stop()`` or cancellation: follows the server's standalone GET stream (opened
    /// again with backoff when it drops), lists the server again through `onToolsChanged` when a
    /// list change arrives there or in any answer (one listing at a time, at most one more
    /// pending), and sends the notifications calls left behind. Called once per client.
    nonisolated func listen(
        onToolsChanged: @escaping @Sendable (String) async -> Void,
        onStream: @escaping @Sendable (StreamState) -> Void
    ) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.follow(onStream: onStream) }
            group.addTask {
                for await outgoing in self.signals.outbox {
                    try? await self.notify(outgoing.message, session: outgoing.session)
                }
            }
            for await _ in signals.changes { await onToolsChanged(server.id) }
            group.cancelAll()
        }
    }

    /// Ends ``listen(onToolsChanged:onStream:)``: the server was removed or changed by a reload,
    /// or the runner stops. Calls in flight go on.
    nonisolated func stop() { signals.finish() }

    private enum StreamEnd {
        case notOffered
        case dropped(why: String, healthy: Bool, wasOpen: Bool)
    }

    /// Keeps the GET stream open until cancelled, or until the server says it offers none.
    private nonisolated func follow(onStream: @escaping @Sendable (StreamState) -> Void) async {
        var delay = Self.firstReconnectDelay
        var everOpen = false
        while !Task.isCancelled {
            let reopening = everOpen
            let end = await followOnce { state in
                // List changes sent while the stream was down were missed: list the server again.
                if case .open = state, reopening { self.signals.toolsChanged() }
                onStream(state)
            }
            switch end {
            case .notOffered:
                onStream(.notOffered)
                return
            case .dropped(let why, let healthy, let wasOpen):
                if Task.isCancelled { return }
                everOpen = everOpen || wasOpen
                if healthy { delay = Self.firstReconnectDelay }
                onStream(.reconnecting(why: why, after: delay))
            }
            // Backoff before reopening the stream: a server that is down must not be asked in a
            // tight loop (cancelled when the server is removed or the runner stops).
            do { try await Task.sleep(for: delay) } catch { return }
            delay = min(delay * 2, Self.maximumReconnectDelay)
        }
    }

    /// Opens the GET stream once and reads it until it ends.
    private nonisolated func followOnce(onStream: (StreamState) -> Void) async -> StreamEnd {
        let session: String?
        let response: HTTPClientResponse
        do {
            session = try await openedSession(deadline: ContinuousClock.now + Self.streamOpenTimeout)
            response = try await Self.within(
                ContinuousClock.now + Self.streamOpenTimeout, server: server.id, method: "the GET stream"
            ) { () async throws(UpstreamFailure) in
                try await self.send(nil, session: session, accept: "text/event-stream")
            }
        } catch {
            return .dropped(why: error.message, healthy: false, wasOpen: false)
        }
        if response.status == .methodNotAllowed { return .notOffered }
        if response.status == .notFound, session != nil {
            await forget(session: session)
            return .dropped(why: "the server forgot the MCP session", healthy: false, wasOpen: false)
        }
        guard response.status == .ok,
            (response.headers.first(name: "Content-Type") ?? "").lowercased().hasPrefix("text/event-stream")
        else {
            return .dropped(
                why:
                    "the server answered GET with HTTP \(response.status.code) \(response.headers.first(name: "Content-Type") ?? "")",
                healthy: false, wasOpen: false)
        }
        onStream(.open)
        let opened = ContinuousClock.now
        var parser = SSEParser(maximumEventBytes: Self.maximumStreamEventBytes)
        var delivered = false
        do {
            for try await chunk in response.body {
                let events: [[UInt8]]
                do {
                    events = try parser.feed(chunk.readableBytesView)
                } catch {
                    return .dropped(
                        why: "the server sent an event over \(Self.maximumStreamEventBytes) bytes", healthy: delivered,
                        wasOpen: true)
                }
                for event in events {
                    delivered = true
                    await handleStreamed(event[...], session: session)
                }
            }
        } catch {
            return .dropped(
                why: "the stream broke: \(error)",
                healthy: delivered || ContinuousClock.now - opened >= Self.healthyStream,
                wasOpen: true)
        }
        return .dropped(
            why: "the server closed the stream",
            healthy: delivered || ContinuousClock.now - opened >= Self.healthyStream,
            wasOpen: true)
    }

    /// A message of the GET stream: a list change is signalled, a request answered "not
    /// offered", anything else ignored.
    private nonisolated func handleStreamed(_ message: ArraySlice<UInt8>, session: String?) async {
        guard let method = Self.value(of: "method", in: message) else { return }
        if let id = Self.value(of: "id", in: message) {
            try? await notify(Self.notOffered(id: id), session: session)
        } else if method.elementsEqual(#""notifications/tools/list_changed""#.utf8) {
            signals.toolsChanged()
        }
    }
}
