import Foundation
import Testing

@testable import Runner

/// The HTTP bounds' pure parts: read deadlines, address keys, configuration, descriptor budget,
/// stream slots. The bounds themselves are shown through the binary in
/// Tests/Interop/test_attacks_http_bounds.py.
@Suite(.timeLimit(.minutes(1))) struct HTTPBoundsTests {
    typealias Deadlines = ReadDeadlines<ContinuousClock.Instant>
    private let opened = ContinuousClock.now

    private func deadlines() -> Deadlines {
        Deadlines(
            openedAt: opened, headerTimeout: .seconds(10), bodyTimeout: .seconds(30), keepAliveTimeout: .seconds(75))
    }

    @Test func aHeadSentByteByByteIsCutAtTheHeaderDeadlineOfTheOpening() {
        var state = deadlines()
        #expect(state.deadline == .init(at: opened + .seconds(10), reason: .head))
        // A byte every second keeps arriving: the deadline does not move (a total, not a gap).
        for second in 1...9 { state.bytesRead(at: opened + .seconds(second)) }
        #expect(state.deadline == .init(at: opened + .seconds(10), reason: .head))
        #expect(state.expired(at: opened + .seconds(9)) == nil)
        #expect(state.expired(at: opened + .seconds(10)) == .answerAndClose(.head))
    }

    @Test func theBodyHasItsOwnDeadlineFromItsHead() {
        var state = deadlines()
        state.headRead(at: opened + .seconds(1))
        #expect(state.deadline == .init(at: opened + .seconds(31), reason: .body))
        state.bytesRead(at: opened + .seconds(20))
        #expect(state.deadline == .init(at: opened + .seconds(31), reason: .body))
        #expect(state.expired(at: opened + .seconds(31)) == .answerAndClose(.body))
        // Once its response began, a 408 would land inside it: close only.
        state.responseStarted()
        #expect(state.expired(at: opened + .seconds(31)) == .close(.body))
    }

    @Test func noDeadlineWhileAResponseIsDueThenKeepAliveThenAHeadAgain() {
        var state = deadlines()
        state.headRead(at: opened + .seconds(1))
        state.endRead()
        #expect(state.deadline == nil, "an SSE response may last; it is the server's turn")
        state.responseStarted()
        state.responseEnded(at: opened + .seconds(100))
        #expect(state.deadline == .init(at: opened + .seconds(175), reason: .keepAlive))
        #expect(state.expired(at: opened + .seconds(175)) == .close(.keepAlive))
        // The first byte of the next request starts its header deadline.
        state.bytesRead(at: opened + .seconds(150))
        #expect(state.deadline == .init(at: opened + .seconds(160), reason: .head))
        state.bytesRead(at: opened + .seconds(159))
        #expect(state.expired(at: opened + .seconds(160)) == .answerAndClose(.head))
    }

    @Test func aPipelinedHeadTrickledDuringAResponseIsClosedNotAnswered() {
        var state = deadlines()
        state.headRead(at: opened)
        state.endRead()
        state.responseStarted()
        state.bytesRead(at: opened + .seconds(2))
        #expect(state.deadline == .init(at: opened + .seconds(12), reason: .head))
        #expect(state.expired(at: opened + .seconds(12)) == .close(.head))
    }

    @Test func addressKeysAreIPv4AddressesAndIPv6Slash64s() throws {
        #expect(ClientAddress.key(ipAddress: "198.51.100.7") == "198.51.100.7")
        #expect(ClientAddress.key(ipAddress: "2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64")
        #expect(ClientAddress.key(ipAddress: "2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64")
        #expect(ClientAddress.key(ipAddress: "::ffff:192.0.2.1") == "192.0.2.1")
        #expect(ClientAddress.key(ipAddress: "not an address") == nil)
        #expect(ClientAddress.key(nil) == "unknown")
    }

    private func config(_ text: String) throws -> LeaseholdConfig {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lh-config-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: file) }
        try text.write(to: file, atomically: true, encoding: .utf8)
        return try LeaseholdConfig.load(file: file.path)
    }

    @Test func theHTTPBlockIsReadValidatedAndRefusesUnknownKeys() throws {
        let configured = try config(
            """
            http:
              header_timeout_seconds: 0.5
              body_timeout_seconds: 2
              keep_alive_timeout_seconds: 3
              max_connections: 100
              max_connections_per_address: 0
              max_header_bytes: 4096
              max_header_fields: 20
              max_body_bytes: 65536
              max_sse_streams_per_session: 2
            audit_unauthenticated_interval_seconds: 3
            audit_unauthenticated_sources: 5
            """)
        let settings = try configured.httpSettings(host: "127.0.0.1", port: 0)
        #expect(settings.headerTimeout == .milliseconds(500))
        #expect(settings.bodyTimeout == .seconds(2) && settings.keepAliveTimeout == .seconds(3))
        #expect(settings.maximumConnections == 100 && settings.maximumConnectionsPerAddress == 0)
        #expect(settings.maximumHeaderBytes == 4096 && settings.maximumHeaderFields == 20)
        #expect(settings.maximumBodyBytes == 65536 && settings.maximumSSEStreamsPerSession == 2)
        #expect(try configured.refusalSampling() == RefusalSampling(interval: .seconds(3), maximumSources: 5))

        let defaults = try LeaseholdConfig().httpSettings(host: "127.0.0.1", port: 0)
        #expect(defaults == HTTPSettings(host: "127.0.0.1", port: 0))
        #expect(defaults.headerTimeout == .seconds(10) && defaults.bodyTimeout == .seconds(30))
        #expect(defaults.keepAliveTimeout == .seconds(75) && defaults.maximumConnections == 4096)
        #expect(defaults.maximumConnectionsPerAddress == 256 && defaults.maximumSSEStreamsPerSession == 4)

        let misspelt = #expect(throws: ConfigError.self) { try config("http:\n  header_timout_seconds: 5\n") }
        #expect(misspelt?.description.contains("unknown key \"header_timout_seconds\"") == true)
        let outOfRange = try config("http:\n  max_connections: 0\n")
        #expect(throws: ConfigError.self) { try outOfRange.httpSettings(host: "127.0.0.1", port: 0) }
        let badInterval = try config("audit_unauthenticated_interval_seconds: 0\n")
        #expect(throws: ConfigError.self) { try badInterval.refusalSampling() }
    }

    @Test func connectionsLeaveDescriptorsForWorkers() {
        // 20,000 descriptors, 512 workers: 256 + 4 x 512 = 2304 reserved, the configured 4096 fits.
        #expect(
            DescriptorBudget(softLimit: 20_000, hardLimit: 20_000, workers: 512).connections(configured: 4096) == 4096)
        // 1024 descriptors, 16 workers: 320 reserved, 704 left for connections.
        let small = DescriptorBudget(softLimit: 1024, hardLimit: 1024, workers: 16)
        #expect(small.reserve == 320)
        #expect(small.connections(configured: 4096) == 704)
        // Never below the floor, whatever the limit.
        #expect(DescriptorBudget(softLimit: 1024, hardLimit: 1024, workers: 512).connections(configured: 4096) == 16)
    }

    @Test func onePerAddressCapNeverCoversEveryConnection() {
        // Enough connections: the configured per-address cap stands.
        #expect(DescriptorBudget.connectionsPerAddress(configured: 256, connections: 4096) == 256)
        #expect(DescriptorBudget.connectionsPerAddress(configured: 256, connections: 704) == 256)
        // 16 connections left by a low open-file limit: one address may hold half of them.
        #expect(DescriptorBudget.connectionsPerAddress(configured: 256, connections: 16) == 8)
        #expect(DescriptorBudget.connectionsPerAddress(configured: 256, connections: 1) == 1)
        // No per-address cap (a proxy in front) stays the operator's choice.
        #expect(DescriptorBudget.connectionsPerAddress(configured: 0, connections: 16) == 0)
    }

    @Test func aStreamSlotIsGivenBackOnceWhicheverWayItEnds() {
        let streams = SessionStreams(limit: 2)
        var first = streams.open(session: "s")
        let second = streams.open(session: "s")
        #expect(first != nil && second != nil)
        #expect(streams.open(session: "s") == nil)
        #expect(streams.open(session: "other") != nil, "another session has slots of its own")
        second?.release()
        second?.release()
        #expect(streams.open(of: "s") == 1)
        first = nil  // the last reference gone
        #expect(streams.open(of: "s") == 0)
        _ = first
    }

    /// A GET stream whose client reads nothing: the SDK's stream (unbounded) is read into a backlog
    /// of `SessionStreams.backlog` events; one more closes the connection and ends the SDK's
    /// stream, so the SDK's later events are discarded rather than held (issue 21).
    @Test func aStreamWhoseClientStopsReadingIsClosedAtItsBacklog() async throws {
        let slot = try #require(SessionStreams(limit: 1).open(session: "s"))
        let (closed, closing) = AsyncStream<Void>.makeStream()
        slot.closeConnection.withLock { $0 = { closing.yield() } }
        let (events, sdk) = AsyncThrowingStream<Data, any Error>.makeStream()
        let (ended, ending) = AsyncStream<Void>.makeStream()
        sdk.onTermination = { _ in ending.yield() }
        let backlog = slot.bounded(events)
        for index in 0...SessionStreams.backlog {
            #expect(isEnqueued(sdk.yield(Data("event \(index)".utf8))))
        }
        var closedSignal = closed.makeAsyncIterator()
        _ = await closedSignal.next()
        var endedSignal = ended.makeAsyncIterator()
        _ = await endedSignal.next()
        #expect(!isEnqueued(sdk.yield(Data("later".utf8))), "the SDK's stream still holds events")
        var delivered = 0
        await #expect(throws: SessionStreams.Slot.BacklogFull.self) {
            for try await event in backlog {
                #expect(event == Data("event \(delivered)".utf8))
                delivered += 1
            }
        }
        #expect(delivered == SessionStreams.backlog)
    }

    /// Up to the backlog, nothing is dropped and the connection stays open: every event arrives in
    /// order and the stream ends when the SDK's does.
    @Test func aStreamWithinItsBacklogGetsEveryEvent() async throws {
        let slot = try #require(SessionStreams(limit: 1).open(session: "s"))
        slot.closeConnection.withLock { $0 = { Issue.record("a stream within its backlog was closed") } }
        let (events, sdk) = AsyncThrowingStream<Data, any Error>.makeStream()
        let backlog = slot.bounded(events)
        for index in 0..<SessionStreams.backlog { sdk.yield(Data("event \(index)".utf8)) }
        sdk.finish()
        var delivered = 0
        for try await event in backlog {
            #expect(event == Data("event \(delivered)".utf8))
            delivered += 1
        }
        #expect(delivered == SessionStreams.backlog)
    }

    private func isEnqueued(_ result: AsyncThrowingStream<Data, any Error>.Continuation.YieldResult) -> Bool {
        if case .enqueued = result { true } else { false }
    }
}
