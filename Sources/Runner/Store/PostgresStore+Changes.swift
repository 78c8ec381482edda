import Failures
import Foundation
import Logging
import PostgresNIO
import Synchronization
import WorkspaceRegistry

extension PostgresStore {
    /// The notification channel every node's writes announce themselves on.
    static let changeChannel = "leasehold_changes"
    /// How often the listener checks that its connection still answers; one that does not within
    /// ``operationLimit`` is closed, and the cache is distrusted until a new one listens.
    static let listenerHeartbeat: Duration = .seconds(5)
    /// The `application_name` of each node's listening connection.
    public static let listenerName = "leasehold-listener"
    /// The longest pause between two attempts to listen again.
    static let listenerMaximumBackoff: Duration = .seconds(5)

    /// Sessions and workspaces held in memory, trusted only while the listener is connected.
    struct Cache {
        /// True while `LISTEN` is in effect: only then is anything served from or put in memory.
        var trusted = false
        /// Bumped by every invalidation. A read that missed takes the generation before it goes to
        /// the database and fills the cache only if it is unchanged after: a notification that
        /// arrived meanwhile (for any entry) keeps what the read found out of the cache, so no
        /// entry is older than a notification already received.
        var generation: UInt64 = 0
        var sessions: [String: Session] = [:]
        var workspaces: [WorkspaceKey: Workspace] = [:]

        /// Bounds the cache (a session body is ~1 KB); when full it starts over, like SQLiteStore's.
        static let limit = 50_000

        /// What memory holds for `read`, or the generation a database read must fill under.
        func lookup<T>(_ read: (Cache) -> T?) -> CacheLookup<T> {
            guard trusted else { return .miss(generation: nil) }
            if let value = read(self) { return .hit(value) }
            return .miss(generation: generation)
        }

        /// Stores what a read found, unless anything was invalidated since it looked.
        mutating func fill(_ generation: UInt64?, _ store: (inout Cache) -> Void) {
            guard trusted, let generation, generation == self.generation else { return }
            if sessions.count + workspaces.count >= Self.limit {
                sessions = [:]
                workspaces = [:]
            }
            store(&self)
        }

        /// Drops one entry (`change`) and moves the generation.
        mutating func invalidate(_ change: (inout Cache) -> Void) {
            generation &+= 1
            change(&self)
        }

        /// Drops everything; `trusted` says whether the listener is in effect.
        mutating func reset(trusted: Bool) {
            self.trusted = trusted
            generation &+= 1
            sessions = [:]
            workspaces = [:]
        }
    }

    struct WorkspaceKey: Hashable {
        var tenantID: String
        var workspaceID: String
    }

    /// One notification's payload: `{"k":"s","id":"ses_…","v":7}` (a session written, its new
    /// version), `{"k":"w","t":"acme","w":"repo"}` (a workspace removed) or
    /// `{"k":"p","p":"<policy version>","n":"n1"}` (a node loaded a policy). Ids only, never a
    /// body: PostgreSQL caps a payload at 8000 bytes, and every node reads the row itself.
    struct Notice: Codable, Equatable {
        var k: String
        var id: String?
        var v: Int?
        var t: String?
        var w: String?
        var p: String?
        var n: String?

        static func session(_ id: String, version: Int) -> Notice { Notice(k: "s", id: id, v: version) }
        static func workspace(tenantID: String, workspaceID: String) -> Notice {
            Notice(k: "w", t: tenantID, w: workspaceID)
        }
        static func policy(version: String, node: String) -> Notice { Notice(k: "p", p: version, n: node) }

        /// The change it announces; nil for a payload this runner does not understand.
        var change: StoreChange? {
            switch k {
            case "s":
                guard let id, let v else { return nil }
                return .session(id: id, version: v)
            case "w":
                guard let t, let w else { return nil }
                return .workspaceRemoved(tenantID: t, workspaceID: w)
            case "p":
                guard let p, let n else { return nil }
                return .policy(version: p, node: n)
            default: return nil
            }
        }
    }

    /// Announces `notice` to every node from inside the caller's transaction: PostgreSQL delivers
    /// it at commit, and never if the transaction rolls back.
    func announce(_ notice: Notice, on connection: PostgresConnection) async throws {
        let payload = try encode(notice)
        _ = try await rows("SELECT pg_notify(\(Self.changeChannel), \(payload))", on: connection)
    }

    /// This node's own write: its cached entry goes at once (the notification, for the gateway,
    /// follows through the listener like every other node's).
    func forget(_ notice: Notice) {
        cache.withLock { cache in
            cache.invalidate { cache in Self.drop(notice, from: &cache) }
        }
    }

    private static func drop(_ notice: Notice, from cache: inout Cache) {
        switch notice.change {
        case .session(let id, _): cache.sessions[id] = nil
        case .workspaceRemoved(let tenantID, let workspaceID):
            cache.workspaces[WorkspaceKey(tenantID: tenantID, workspaceID: workspaceID)] = nil
        case .policy:
            break  // nothing cached depends on the policy
        case .resynced, nil:
            cache.sessions = [:]
            cache.workspaces = [:]
        }
    }

    /// Tells every node of a change that is not a write (``StoreChange/policy(version:node:)``).
    /// Best effort: a node that misses it reads its policy files at its next tick anyway.
    public func announce(_ change: StoreChange) async {
        guard case .policy(let version, let node) = change else { return }
        do {
            let payload = try encode(Notice.policy(version: version, node: node))
            _ = try await rows("SELECT pg_notify(\(Self.changeChannel), \(payload))")
        } catch {
            logger.warning(
                "cannot announce a policy change to the other nodes",
                metadata: ["error": "\(logDescription(of: error))"])
        }
    }

    /// Whether the database answers a trivial query within a few seconds (`/readyz`).
    public func isReady() async -> Bool {
        (try? await withConnection(limit: .seconds(3)) { connection in
            try await connection.query("SELECT 1", logger: logger).collect()
        }) != nil
    }

    /// Hands `change` to the gateway. When the buffer is full the oldest change is dropped, and a
    /// ``StoreChange/resynced`` is queued after it: the gateway then re-checks everything it
    /// serves, which covers whatever it did not get.
    func publish(_ change: StoreChange) {
        if case .dropped = changeContinuation.yield(change), change != .resynced {
            changeContinuation.yield(.resynced)
        }
    }

    /// A notification arrived: the entry goes first, then the gateway hears of it.
    func receive(_ payload: String) {
        guard let notice = try? decode(Notice.self, payload), let change = notice.change else {
            // Not ours to read (a newer runner's kind, or foreign): nothing cached is trusted.
            logger.warning(
                "unreadable store notification; dropping the cache", metadata: ["payload": "\(payload.prefix(200))"])
            cache.withLock { $0.reset(trusted: $0.trusted) }
            publish(.resynced)
            return
        }
        cache.withLock { cache in cache.invalidate { cache in Self.drop(notice, from: &cache) } }
        publish(change)
    }

    /// Listens for changes until cancelled: connects, `LISTEN`s, trusts the cache while that
    /// holds, and on any failure distrusts it and tries again after a pause growing from 100 ms
    /// to ``listenerMaximumBackoff`` (back to 100 ms after a connection that listened).
    func listenForChanges() async {
        var pause: Duration = .milliseconds(100)
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try listenerConfiguration(), id: attempt, logger: logger)
                do {
                    try await listen(on: connection) { pause = .milliseconds(100) }
                } catch {
                    if !Task.isCancelled {
                        logger.warning(
                            "the store's change listener lost its connection; reading through until it is back",
                            metadata: ["error": "\(String(reflecting: error))"])
                    }
                }
                try? await connection.close()
            } catch {
                if !Task.isCancelled {
                    logger.warning(
                        "the store's change listener cannot connect; reading through until it can",
                        metadata: ["error": "\(String(reflecting: error))"])
                }
            }
            cache.withLock { $0.reset(trusted: false) }
            guard !Task.isCancelled else { break }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, Self.listenerMaximumBackoff)
        }
    }

    /// One listening connection's life: from `LISTEN` in effect (the cache is emptied and trusted,
    /// ``StoreChange/resynced`` is published) until the connection fails, stops answering its
    /// heartbeat, or the task is cancelled.
    private func listen(on connection: PostgresConnection, listening: () -> Void) async throws {
        try await connection.listen(on: Self.changeChannel) { notifications in
            // From here every commit's notification reaches `notifications`: whatever was read
            // before may be stale, whatever is read after is announced when it changes.
            cache.withLock { $0.reset(trusted: true) }
            publish(.resynced)
            listening()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await notification in notifications {
                        self.receive(notification.payload)
                    }
                    throw PostgresStoreError(.unavailable, "the notification stream ended")
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: Self.listenerHeartbeat)
                        try await self.heartbeat(connection)
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
    }

    /// `SELECT 1` on the listening connection within ``operationLimit``; past it the connection is
    /// closed (a half-open TCP connection would otherwise keep the cache trusted for ever).
    private func heartbeat(_ connection: PostgresConnection) async throws {
        let logger = self.logger
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await connection.query("SELECT 1", logger: logger)
                return true
            }
            group.addTask {
                try await Task.sleep(for: self.operationLimit)
                return false
            }
            defer { group.cancelAll() }
            guard try await group.next() == true else {
                connection.abort()
                throw PostgresStoreError(.timeout, "the listening connection did not answer its heartbeat")
            }
        }
    }

    private func listenerConfiguration() throws -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database,
            tls: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration())))
        configuration.options.connectTimeout = .seconds(5)
        // Named apart from the pool's connections, for operators (and tests) looking at pg_stat_activity.
        configuration.options.additionalStartupParameters =
            Self.startupParameters.filter { $0.0 != "application_name" } + [("application_name", Self.listenerName)]
        return configuration
    }
}

/// What a cache lookup found.
enum CacheLookup<T> {
    /// Served from memory.
    case hit(T)
    /// Not in memory; fill under `generation` (nil: the cache is not trusted, do not fill).
    case miss(generation: UInt64?)
}
