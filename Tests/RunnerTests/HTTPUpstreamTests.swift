import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization
import Testing

@testable import Runner

/// What the call path gets from an http upstream that the interop tests cannot show until the
/// call site passes them on: a call's progress, in order and only its own, and a caller's
/// cancellation, which stops the wait at once and tells the server. And the GET stream: a list
/// change on it asks for a listing; a 405 is "not offered". The server is a fake speaking
/// Streamable HTTP (Hummingbird), scripted per test.
@Suite(.serialized, .timeLimit(.minutes(1))) struct HTTPUpstreamTests {
    /// Every message the fake server was POSTed, in order, as text.
    final class Received: Sendable {
        private let messages = Mutex<[String]>([])
        private let stream: AsyncStream<String>
        private let continuation: AsyncStream<String>.Continuation

        init() { (stream, continuation) = AsyncStream.makeStream() }

        func add(_ message: String) {
            messages.withLock { $0.append(message) }
            continuation.yield(message)
        }

        /// Waits for the first message (from the start) containing `text`.
        func first(containing text: String) async -> String? {
            if let seen = messages.withLock({ $0.first { $0.contains(text) } }) { return seen }
            for await message in stream where message.contains(text) { return message }
            return nil
        }
    }

    typealias Handler = @Sendable (_ id: Int, _ body: String) async throws -> Response

    /// Runs a fake server whose `tools/call` answers come from `call` and whose GET answers come
    /// from `get` (default 405); `body` gets a client of it.
    func withServer(
        call: @escaping Handler, get: (@Sendable () async throws -> Response)? = nil,
        _ body: @Sendable (HTTPUpstream, Received) async throws -> Void
    ) async throws {
        let received = Received()
        let router = Router()
        router.post("/mcp") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            let text = String(buffer: bytes)
            received.add(text)
            guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                let method = object["method"] as? String, let id = object["id"] as? Int
            else { return Response(status: .accepted) }
            if method == "initialize" {
                return Self.json(
                    #"{"jsonrpc":"2.0","id":\#(id),"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"fake","version":"1"}}}"#,
                    session: "s-1")
            }
            return try await call(id, text)
        }
        router.get("/mcp") { _, _ -> Response in
            try await get?() ?? Response(status: .methodNotAllowed)
        }
        let (ports, port) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.yield(channel.localAddress?.port ?? 0) },
            logger: Logger(label: "fake-upstream", factory: { _ in SwiftLogNoOpLogHandler() }))
        let http = UpstreamHTTPClient()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var iterator = ports.makeAsyncIterator()
            let bound = try #require(await iterator.next())
            var server = UpstreamServer(
                id: "fake", command: [], mounts: [], environment: [:], isolation: .shared, tier: nil, workspace: false,
                multiTenant: true)
            server.transport = .http
            server.url = URL(string: "http://127.0.0.1:\(bound)/mcp")
            let upstream = HTTPUpstream(server: server, http: http)
            do {
                try await body(upstream, received)
            } catch {
                group.cancelAll()
                await http.shutdown()
                throw error
            }
            group.cancelAll()
            await http.shutdown()
        }
    }

    static func json(_ text: String, session: String? = nil) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let session { headers[.init("Mcp-Session-Id")!] = session }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// An SSE answer: each message an event, written one by one.
    static func events(_ messages: [String], thenWait: AsyncStream<Void>? = nil) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/event-stream"],
            body: ResponseBody { writer in
                for message in messages {
                    try await writer.write(ByteBuffer(string: "event: message\r\ndata: \(message)\r\n\r\n"))
                }
                if let thenWait { for await _ in thenWait {} }
                try await writer.finish(nil)
            })
    }

    static func progress(_ token: String, _ value: Int) -> String {
        #"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":\#(token),"progress":\#(value)}}"#
    }

    @Test func onlyTheCallsOwnProgressIsPassedOnInOrderBeforeTheResult() async throws {
        try await withServer(call: { id, _ in
            Self.events([
                Self.progress(#""t-1""#, 1), Self.progress(#""other""#, 9), Self.progress(#""t-1""#, 2),
                #"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
                Self.progress(#""t-1""#, 3), #"{"jsonrpc":"2.0","id":\#(id),"result":{"content":[],"done":true}}"#,
                Self.progress(#""t-1""#, 4),
            ])
        }) { upstream, _ in
            let seen = Mutex<[String]>([])
            let result = try await upstream.call(
                params: Array(#"{"name":"slow","arguments":{},"_meta":{"progressToken":"t-1"}}"#.utf8),
                timeout: .seconds(20),
                cap: 1 << 20,
                progress: { params in seen.withLock { $0.append(String(decoding: params, as: UTF8.self)) } })
            #expect(String(decoding: result, as: UTF8.self) == #"{"content":[],"done":true}"#)
            #expect(
                seen.withLock { $0 } == [1, 2, 3].map { #"{"progressToken":"t-1","progress":\#($0)}"# })
            // Without a token, or without a sink, nothing is passed on.
            let none = Mutex(0)
            _ = try await upstream.call(
                params: Array(#"{"name":"slow","arguments":{}}"#.utf8), timeout: .seconds(20), cap: 1 << 20,
                progress: { _ in none.withLock { $0 += 1 } })
            #expect(none.withLock { $0 } == 0)
        }
    }

    @Test func progressIsBoundedPerCall() async throws {
        try await withServer(call: { id, _ in
            Self.events(
                (0..<(HTTPUpstream.maximumProgressPerCall + 50)).map { Self.progress("7", $0) }
                    + [#"{"jsonrpc":"2.0","id":\#(id),"result":{}}"#])
        }) { upstream, _ in
            let count = Mutex(0)
            _ = try await upstream.call(
                params: Array(#"{"name":"x","_meta":{"progressToken":7}}"#.utf8), timeout: .seconds(20), cap: 1 << 22,
                progress: { _ in count.withLock { $0 += 1 } })
            #expect(count.withLock { $0 } == HTTPUpstream.maximumProgressPerCall)
        }
    }

    @Test func aCancelledCallStopsWaitingAndTheServerIsToldItsId() async throws {
        let (release, releasing) = AsyncStream<Void>.makeStream()
        try await withServer(call: { _, _ in Self.events([Self.progress("1", 1)], thenWait: release) }) {
            upstream, received in
            try await withThrowingTaskGroup(of: Void.self) { group in
                // The listener sends what calls leave behind; this server offers no GET stream.
                let (states, state) = AsyncStream<HTTPUpstream.StreamState>.makeStream()
                group.addTask {
                    await upstream.listen(onToolsChanged: { _ in }, onStream: { state.yield($0) })
                }
                let (progressed, progress) = AsyncStream<Void>.makeStream()
                let call = Task {
                    try await upstream.call(
                        params: Array(#"{"name":"wait","_meta":{"progressToken":1}}"#.utf8), timeout: .seconds(50),
                        cap: 1 << 20, progress: { _ in progress.yield() })
                }
                // The call is in flight once its first progress arrived.
                var iterator = progressed.makeAsyncIterator()
                _ = await iterator.next()
                // The server holds its answer until the end of the test: the call can only end by
                // its cancellation.
                call.cancel()
                let failure = await #expect(throws: UpstreamFailure.self) { _ = try await call.value }
                #expect(failure?.code == .cancelled)
                let notification = try #require(await received.first(containing: "notifications/cancelled"))
                let call2 = try #require(await received.first(containing: #""name":"wait""#))
                let id = try #require(
                    (try JSONSerialization.jsonObject(with: Data(call2.utf8)) as? [String: Any])?["id"] as? Int)
                #expect(
                    notification
                        == #"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":\#(id),"reason":"cancelled by the client"}}"#
                )
                var observed = states.makeAsyncIterator()
                #expect(await observed.next() == .notOffered)
                upstream.stop()
                releasing.finish()
                try await group.waitForAll()
            }
        }
    }

    @Test func aListChangeOnTheGetStreamAsksForAListingAndARequestIsAnsweredNotOffered() async throws {
        let (release, releasing) = AsyncStream<Void>.makeStream()
        try await withServer(
            call: { id, _ in Self.json(#"{"jsonrpc":"2.0","id":\#(id),"result":{"tools":[]}}"#) },
            get: {
                Self.events(
                    [
                        #"{"jsonrpc":"2.0","id":"r-1","method":"sampling/createMessage","params":{}}"#,
                        #"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
                    ], thenWait: release)
            }
        ) { upstream, received in
            _ = try await upstream.listTools(timeout: .seconds(10))
            let (changes, changed) = AsyncStream<String>.makeStream()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    await upstream.listen(onToolsChanged: { id in changed.yield(id) }, onStream: { _ in })
                }
                var iterator = changes.makeAsyncIterator()
                #expect(await iterator.next() == "fake")
                let answer = try #require(await received.first(containing: #""id":"r-1""#))
                #expect(
                    answer
                        == #"{"jsonrpc":"2.0","id":"r-1","error":{"code":-32601,"message":"Leasehold does not offer this to upstream servers"}}"#
                )
                upstream.stop()
                releasing.finish()
                try await group.waitForAll()
            }
        }
    }

    @Test func aReloadThatChangesTheServerStopsTheOldClientsStream() async throws {
        let (release, releasing) = AsyncStream<Void>.makeStream()
        let (gets, got) = AsyncStream<Void>.makeStream()
        try await withServer(
            call: { id, _ in Self.json(#"{"jsonrpc":"2.0","id":\#(id),"result":{"tools":[]}}"#) },
            get: {
                got.yield()
                return Self.events([], thenWait: release)
            }
        ) { upstream, _ in
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("empty-\(UUID().uuidString)").path
            let registry = try UpstreamRegistry(servers: [upstream.server], emptyRoot: root, identity: nil)
            var clients = registry.clientsToListen.makeAsyncIterator()
            let old = try #require(await clients.next())
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await old.listen(onToolsChanged: { _ in }, onStream: { _ in }) }
                var opened = gets.makeAsyncIterator()
                _ = await opened.next()
                var changed = upstream.server
                changed.headers = ["X-Changed": "1"]
                #expect(registry.replace(with: [changed]).changed == ["fake"])
                let new = try #require(await clients.next())
                #expect(new !== old && registry.httpClients["fake"] === new)
                // The old client's listener ends (its GET stream with it); the test would hang otherwise.
                try await group.waitForAll()
            }
            await registry.shutdown()
            releasing.finish()
        }
    }
}
