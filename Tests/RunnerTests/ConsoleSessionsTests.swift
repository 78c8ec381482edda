import Foundation
import Synchronization
import Testing

@testable import Runner

/// The console's cookie sessions and its sign-in limiter: expiry, bounds, and what a token is.
@Suite(.timeLimit(.minutes(1))) struct ConsoleSessionsTests {
    private let start = Date(timeIntervalSince1970: 1_700_000_000)

    @Test func aSessionEndsWhenIdleOrOldOrSignedOut() {
        let sessions = ConsoleSessions(idleTimeout: 60, absoluteTimeout: 300, maximumSessions: 10)
        let (token, entry) = sessions.create(.tenant("acme"), now: start)
        #expect(token.hasPrefix("lhc_") && token.utf8.count > 40)
        #expect(entry.csrfToken.hasPrefix("csrf_") && entry.csrfToken != token)
        #expect(sessions.session(token, now: start.addingTimeInterval(59))?.principal == .tenant("acme"))
        // Each request restarts the idle clock, never the absolute one.
        for minute in 1...4 {
            #expect(sessions.session(token, now: start.addingTimeInterval(Double(minute) * 55)) != nil)
        }
        #expect(sessions.session(token, now: start.addingTimeInterval(300)) == nil)
        #expect(sessions.count == 0)

        let (idle, _) = sessions.create(.operator, now: start)
        #expect(sessions.session(idle, now: start.addingTimeInterval(61)) == nil)
        let (ended, _) = sessions.create(.operator, now: start)
        sessions.end(ended)
        #expect(sessions.session(ended, now: start) == nil)
        #expect(sessions.session(nil, now: start) == nil && sessions.session("", now: start) == nil)
        #expect(sessions.session(String(repeating: "a", count: 10_000), now: start) == nil)
    }

    @Test func theStoreIsBoundedAndDropsTheLeastRecentlyUsed() {
        let sessions = ConsoleSessions(maximumSessions: 3)
        let first = sessions.create(.operator, now: start).token
        let second = sessions.create(.operator, now: start.addingTimeInterval(1)).token
        let third = sessions.create(.operator, now: start.addingTimeInterval(2)).token
        #expect(sessions.session(first, now: start.addingTimeInterval(3)) != nil)
        let fourth = sessions.create(.operator, now: start.addingTimeInterval(4)).token
        #expect(sessions.count == 3)
        #expect(sessions.session(second, now: start.addingTimeInterval(5)) == nil)
        for token in [first, third, fourth] {
            #expect(sessions.session(token, now: start.addingTimeInterval(5)) != nil)
        }
    }

    @Test func tokensAreNotRepeatedAndOnlyTheWholeTokenSignsIn() {
        let sessions = ConsoleSessions()
        let tokens = (0..<200).map { _ in sessions.create(.operator, now: start).token }
        #expect(Set(tokens).count == 200)
        #expect(sessions.session(String(tokens[0].dropLast()), now: start) == nil)
        #expect(sessions.session(tokens[0] + "x", now: start) == nil)
        #expect(sessions.session(tokens[0], now: start) != nil)
    }

    @Test func failedSignInsAreLimitedPerAddressAndWindow() {
        let limiter = ConsoleSignInLimiter(maximumFailures: 3, window: 60, maximumAddresses: 2)
        for _ in 0..<3 {
            #expect(limiter.allows("198.51.100.7", now: start))
            limiter.failed("198.51.100.7", now: start)
        }
        #expect(!limiter.allows("198.51.100.7", now: start.addingTimeInterval(59)))
        #expect(limiter.allows("203.0.113.9", now: start))
        #expect(limiter.allows("198.51.100.7", now: start.addingTimeInterval(60)))
        // Past the tracked addresses, newcomers share one bucket: they cannot grow the map.
        limiter.failed("203.0.113.9", now: start)
        for index in 0..<3 { limiter.failed("192.0.2.\(index)", now: start.addingTimeInterval(1)) }
        #expect(!limiter.allows("192.0.2.200", now: start.addingTimeInterval(2)))
    }

    @Test func theChainIsWalkedOncePerIntervalAndShownToTenantsAsItsStatusOnly() async throws {
        let cache = AuditChainCache(lifetime: 5)
        let walks = Mutex(0)
        let walk: @Sendable () throws(APIError) -> AuditChainStatus = {
            walks.withLock { $0 += 1 }
            return AuditChainStatus(status: "ok", records: 42, head: "abc")
        }
        for offset in [0.0, 1, 4.9] {
            _ = try await cache.status(now: start.addingTimeInterval(offset), compute: walk)
        }
        #expect(walks.withLock { $0 } == 1)
        let later = try await cache.status(now: start.addingTimeInterval(5), compute: walk)
        #expect(walks.withLock { $0 } == 2)
        #expect(later.visible(to: .operator).records == 42)
        let tenant = later.visible(to: .tenant("globex"))
        #expect(tenant.status == "ok" && tenant.records == nil && tenant.head == nil)
    }
}
