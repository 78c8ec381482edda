import Foundation
import Synchronization

/// The console's signed-in browsers: a random 256-bit cookie token mapped, server-side, to the
/// principal of the key that signed in, a CSRF token, and the session's idle and absolute expiry.
///
/// The admin key itself is never kept, in the cookie or here: only the principal it resolved to.
/// Tokens are held by their SHA-256, so a dump of this map gives no usable cookie. The map is
/// bounded (``maximumSessions``); only a sign-in with a valid key adds an entry, and when full the
/// least recently used entry goes, so no one without a key can grow it.
public final class ConsoleSessions: Sendable {
    /// One signed-in browser.
    public struct Entry: Sendable {
        /// Who signed in.
        public let principal: Principal
        /// The token every state-changing request must echo (header `X-CSRF-Token`).
        public let csrfToken: String
        /// When it signed in (absolute expiry counts from here).
        public let createdAt: Date
        /// Its last request (idle expiry counts from here).
        public var lastSeen: Date
    }

    /// Idle lifetime.
    public let idleTimeout: TimeInterval
    /// Absolute lifetime.
    public let absoluteTimeout: TimeInterval
    /// The most signed-in browsers held at once.
    public let maximumSessions: Int
    private let entries = Mutex<[String: Entry]>([:])

    /// Creates the store: 30 minutes idle, 12 hours absolute, 1000 sessions by default.
    public init(
        idleTimeout: TimeInterval = 1800, absoluteTimeout: TimeInterval = 12 * 3600, maximumSessions: Int = 1000
    ) {
        self.idleTimeout = idleTimeout
        self.absoluteTimeout = absoluteTimeout
        self.maximumSessions = max(1, maximumSessions)
    }

    /// Starts a session for `principal`; returns the cookie token (never stored) and the entry.
    public func create(_ principal: Principal, now: Date) -> (token: String, entry: Entry) {
        let token = RandomID.secret(prefix: "lhc")
        let entry = Entry(
            principal: principal, csrfToken: RandomID.secret(prefix: "csrf"), createdAt: now, lastSeen: now)
        entries.withLock { map in
            map = map.filter { isLive($0.value, at: now) }
            if map.count >= maximumSessions, let oldest = map.min(by: { $0.value.lastSeen < $1.value.lastSeen }) {
                map.removeValue(forKey: oldest.key)
            }
            map[Self.key(token)] = entry
        }
        return (token, entry)
    }

    /// The live session of `token`, its idle clock restarted; nil (and forgotten) when expired.
    public func session(_ token: String?, now: Date) -> Entry? {
        guard let token, !token.isEmpty, token.utf8.count <= 256 else { return nil }
        let key = Self.key(token)
        return entries.withLock { map in
            guard var entry = map[key] else { return nil }
            guard isLive(entry, at: now) else {
                map.removeValue(forKey: key)
                return nil
            }
            entry.lastSeen = now
            map[key] = entry
            return entry
        }
    }

    /// Ends the session of `token` (sign-out, or a new sign-in from the same browser).
    public func end(_ token: String?) {
        guard let token else { return }
        _ = entries.withLock { $0.removeValue(forKey: Self.key(token)) }
    }

    /// Sessions held (tests check the bound).
    public var count: Int { entries.withLock { $0.count } }

    private func isLive(_ entry: Entry, at now: Date) -> Bool {
        now.timeIntervalSince(entry.lastSeen) < idleTimeout && now.timeIntervalSince(entry.createdAt) < absoluteTimeout
    }

    private static func key(_ token: String) -> String { Digest.sha256Hex(token.utf8) }
}

/// Failed console sign-ins per client address: over ``maximumFailures`` in one ``window`` an
/// address is refused without its key being looked at (429) until the window ends. Bounded: at
/// ``maximumAddresses`` tracked, expired windows are dropped, and further addresses share one
/// bucket.
public final class ConsoleSignInLimiter: Sendable {
    private struct Window {
        var start: Date
        var failures: Int
    }

    /// Failures allowed per address and window.
    public let maximumFailures: Int
    /// The window.
    public let window: TimeInterval
    /// Addresses tracked one by one.
    public let maximumAddresses: Int
    private let windows = Mutex<[String: Window]>([:])

    /// Creates a limiter: 10 failures a minute per address, 4096 addresses.
    public init(maximumFailures: Int = 10, window: TimeInterval = 60, maximumAddresses: Int = 4096) {
        self.maximumFailures = maximumFailures
        self.window = window
        self.maximumAddresses = maximumAddresses
    }

    /// True when `address` may try a key now.
    public func allows(_ address: String, now: Date) -> Bool {
        windows.withLock { map in
            guard let entry = map[bucket(address, in: map)] else { return true }
            return now.timeIntervalSince(entry.start) >= window || entry.failures < maximumFailures
        }
    }

    /// Counts a failed sign-in from `address`.
    public func failed(_ address: String, now: Date) {
        windows.withLock { map in
            if map.count >= maximumAddresses, map[address] == nil {
                map = map.filter { now.timeIntervalSince($0.value.start) < window }
            }
            let key = bucket(address, in: map)
            var entry = map[key] ?? Window(start: now, failures: 0)
            if now.timeIntervalSince(entry.start) >= window { entry = Window(start: now, failures: 0) }
            entry.failures += 1
            map[key] = entry
        }
    }

    private func bucket(_ address: String, in map: [String: Window]) -> String {
        map[address] != nil || map.count < maximumAddresses ? address : "overflow"
    }
}
