import Failures
import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Synchronization
import WorkspaceRegistry

/// The store of several runner nodes: one PostgreSQL database they all share (`--store postgres://…`).
///
/// Everything true of ``SQLiteStore`` on one node holds across nodes: a claim binds once, a grant
/// serves its uses once, a tenant's live sessions never exceed its limit, a host id slot is its
/// tenant's for ever. Each of those is decided inside one PostgreSQL transaction (a row lock, a
/// unique constraint or a transaction-scoped advisory lock), never in a node's memory.
///
/// Sessions and workspaces are read on every call, so they are served from memory while this
/// node's listener (`LISTEN leasehold_changes`) is connected. Every write that changes a session or
/// removes a workspace sends `pg_notify` in its own transaction; the listener drops the named entry
/// and yields a ``StoreChange``. While the listener is down nothing is served from memory; each time
/// it listens (the first time included) the whole cache is dropped and ``StoreChange/resynced`` is
/// yielded (see `PostgresStore+Changes.swift`).
///
/// Sequencing: ``run()`` runs the connection pool and the listener until cancelled (or graceful
/// shutdown); every other method needs it running. Start `run()` in a task (or a `ServiceGroup`)
/// first, then call ``migrate()`` once before serving: it waits for the pool like any query
/// (postgres-nio may log once that a lease came before its `run()` began; the lease waits).
public final class PostgresStore: LeaseholdStore, Service {
    let client: PostgresClient
    let location: StoreLocation.PostgresLocation
    let logger: Logger
    let encoder: JSONEncoder
    let decoder: JSONDecoder
    let cache = Mutex(Cache())
    let changeContinuation: AsyncStream<StoreChange>.Continuation
    /// The changes committed by every node, this one included (see ``LeaseholdStore/changes``).
    ///
    /// Buffered up to ``changeBufferLimit`` events, newest kept: a gateway that falls that far behind
    /// loses the oldest, and is then sent ``StoreChange/resynced`` (which re-checks every session it
    /// serves, covering whatever was dropped). Memory stays bounded; no change is lost unseen.
    public let changes: AsyncStream<StoreChange>

    /// How many undelivered changes wait for the gateway at most.
    static let changeBufferLimit = 4096
    /// How long one store operation may take, waiting for a pooled connection included. Past it the
    /// operation fails (``PostgresStoreError/Code/timeout``) and its connection is closed, so a
    /// server that stopped answering costs a caller this long, never forever.
    let operationLimit: Duration
    /// The default ``operationLimit``.
    public static let defaultOperationLimit: Duration = .seconds(10)
    /// The server ends a statement running longer than this (`statement_timeout`), and a wait for a
    /// row or advisory lock longer than `lockWaitLimit` (`lock_timeout`): both below
    /// ``defaultOperationLimit`` so the server's own error usually comes first.
    static let statementLimit = "8s"
    static let lockWaitLimit = "5s"
    /// A connection left idle inside a transaction (a node stuck mid-write) is ended by the server
    /// after this, releasing its locks.
    static let idleInTransactionLimit = "30s"

    /// Creates a store over `location` (nothing is connected before ``run()``); one operation
    /// fails after `operationLimit` at most.
    public init(
        _ location: StoreLocation.PostgresLocation, logger: Logger,
        operationLimit: Duration = PostgresStore.defaultOperationLimit
    ) {
        self.location = location
        self.operationLimit = operationLimit
        self.logger = logger
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: .prefer(.makeClientConfiguration()))
        configuration.options.maximumConnections = location.poolSize
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = Self.startupParameters
        client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        (changes, changeContinuation) = AsyncStream.makeStream(
            of: StoreChange.self, bufferingPolicy: .bufferingNewest(Self.changeBufferLimit))
    }

    /// Server-side limits every connection (pooled or listening) starts with.
    static let startupParameters: [(String, String)] = [
        ("application_name", "leasehold"),
        ("statement_timeout", statementLimit),
        ("lock_timeout", lockWaitLimit),
        ("idle_in_transaction_session_timeout", idleInTransactionLimit),
    ]

    /// Runs the connection pool and the change listener until cancelled or shut down gracefully;
    /// the change stream ends then.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.client.run() }
                group.addTask { await self.listenForChanges() }
            }
        }
        changeContinuation.finish()
    }

    // MARK: Connections

    /// Runs `body` on a pooled connection within ``operationLimit``: past it a wait for a
    /// connection ends, or the connection in use is closed so its query fails at once.
    /// Server and connection failures come out as ``PostgresStoreError``; `body`'s own errors
    /// (a refused workspace, a throwing mutation) come out as they are.
    ///
    /// `body` runs in the caller's task (so it may call the caller's non-escaping closures); a task
    /// holds the pool's lease for it until it returns, and a timer on an event loop ends it at
    /// the limit.
    /// (postgres-nio's own waits are longer: a pool that cannot connect fails its waiters only
    /// after a minute, and a query on a connection that stopped answering never ends by itself.)
    ///
    /// The timer has one owner, this call, which cancels it on the way out; it is not a task, so
    /// the caller's cancellation does not take the limit away. The lease is an unstructured task,
    /// cancelled but never awaited, on purpose: the pool (postgres-nio 1.33) can miss a
    /// cancellation that arrives while its lease request is being queued, and the request then
    /// waits out the pool's own connect timeout (a minute), and nothing this code can do ends it
    /// sooner (the pool offers no way to fail one queued request; closing a connection ends a
    /// query, not a wait for a connection). A task group would wait for it, and an operation
    /// against a server that is gone hung for that minute (found by
    /// `PostgresStoreTests.aStoreFailsInBoundedTimeWhenItsServerIsGone…`, about one run in five).
    /// Left alone, the lease task hands its connection back at once when it finally gets one
    /// (`released` is finished by then) and ends; the pool's shutdown (``run()`` cancelled) fails
    /// every queued request, so none outlives the store.
    func withConnection<T>(
        limit: Duration? = nil,
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let limit = limit ?? operationLimit
        let (leases, leased) = AsyncThrowingStream.makeStream(of: PostgresConnection.self)
        let (released, release) = AsyncStream.makeStream(of: Never.self)
        let watch = Watch()
        let client = self.client
        let lease = Task {
            do {
                try await client.withConnection { connection in
                    leased.yield(connection)
                    for await _ in released {}
                }
                leased.finish()
            } catch {
                leased.finish(throwing: error)
            }
        }
        // The deadline: a timer on an event loop, not a task, so a cancelled caller keeps it.
        let deadline = PostgresClient.defaultEventLoopGroup.next().scheduleTask(in: TimeAmount(limit)) {
            let connection = watch.state.withLock { state in
                state.expired = true
                return state.connection
            }
            leased.finish(throwing: PostgresStoreError(.timeout, "no connection within \(limit)"))
            connection?.abort()
        }
        defer {
            release.finish()
            deadline.cancel()
            lease.cancel()
        }
        do {
            var connections = leases.makeAsyncIterator()
            guard let connection = try await connections.next() else {
                throw PostgresStoreError(.unavailable, "the connection pool is closed")
            }
            let expiredAlready = watch.state.withLock { state in
                state.connection = connection
                return state.expired
            }
            defer { watch.state.withLock { $0.connection = nil } }
            guard !expiredAlready else { throw PostgresStoreError(.timeout, "no connection within \(limit)") }
            do {
                return try await body(connection)
            } catch let error as PSQLError where watch.state.withLock({ $0.expired }) {
                throw PostgresStoreError(.timeout, "no answer within \(limit)", cause: error)
            }
        } catch let error as PSQLError {
            throw PostgresStoreError(error)
        }
    }

    /// What an operation's watchdog and the operation share: one lock for both fields, so neither
    /// can miss the other's write (the connection set after the deadline passed, or the deadline
    /// passing after the connection was set).
    final class Watch: Sendable {
        let state = Mutex<(connection: PostgresConnection?, expired: Bool)>((nil, false))
    }

    /// Runs `body` in one transaction on a pooled connection: committed when it returns, rolled back
    /// when it throws. A connection whose rollback fails is closed rather than handed back to the
    /// pool in an unknown transaction state.
    func transaction<T>(
        limit: Duration? = nil,
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let logger = self.logger
        return try await withConnection(limit: limit) { connection in
            try await connection.query("BEGIN", logger: logger)
            let value: T
            do {
                value = try await body(connection)
            } catch {
                do {
                    try await connection.query("ROLLBACK", logger: logger)
                } catch {
                    try? await connection.close()
                }
                throw error
            }
            try await connection.query("COMMIT", logger: logger)
            return value
        }
    }

    /// The rows of `query`, all read.
    func rows(_ query: PostgresQuery, on connection: PostgresConnection) async throws -> [PostgresRow] {
        try await connection.query(query, logger: logger).collect()
    }

    /// The rows of `query` on a pooled connection, outside any transaction.
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await withConnection { connection in try await self.rows(query, on: connection) }
    }

    func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    func decode<T: Decodable>(_ type: T.Type, _ body: String) throws -> T {
        try decoder.decode(type, from: Data(body.utf8))
    }
}

extension PostgresConnection {
    /// Closes the connection now, without waiting: whatever runs on it fails at once.
    func abort() {
        let closing: EventLoopFuture<Void> = close()
        closing.whenComplete { _ in }
    }
}

/// A PostgreSQL store operation that failed: the server refused it, could not be reached, or did
/// not answer in time. Callers answer `store_unavailable`; the text names no row, value or query
/// (the postgres-nio error, which may quote them, is the cause: for the runner's log only).
public typealias PostgresStoreError = CodedError<PostgresStoreErrorCode>

/// What kind of PostgreSQL store failure.
public struct PostgresStoreErrorCode: ErrorCode {
    /// The wire form of the code.
    public let rawValue: String
    private init(_ rawValue: String) { self.rawValue = rawValue }

    /// The server could not be reached, or the connection dropped.
    public static let unavailable = PostgresStoreErrorCode("store_unavailable")
    /// The server answered with an error (a constraint, a timeout of its own, a missing table).
    public static let refused = PostgresStoreErrorCode("store_refused")
    /// No answer within the operation's time limit.
    public static let timeout = PostgresStoreErrorCode("store_timeout")
    /// The schema in the database is newer than this binary knows.
    public static let schemaTooNew = PostgresStoreErrorCode("store_schema_too_new")

    /// Every code a PostgreSQL store operation fails with (docs/operations.md's table is checked
    /// against it).
    public static let allCases: [PostgresStoreErrorCode] = [.unavailable, .refused, .timeout, .schemaTooNew]
}

extension CodedError where CodeSet == PostgresStoreErrorCode {
    /// Classifies a postgres-nio error: a server error keeps its SQLSTATE (a code, no values).
    /// Connection exceptions (class 08), lack of resources (53) and operator intervention (57:
    /// shutdown, a terminated backend) mean the server is not there to answer.
    init(_ error: PSQLError) {
        if error.code == .server {
            let state = error.serverInfo?[.sqlState] ?? "?"
            if ["08", "53", "57"].contains(String(state.prefix(2))) {
                self.init(.unavailable, "the PostgreSQL server is unavailable (SQLSTATE \(state))", cause: error)
            } else {
                self.init(.refused, "the PostgreSQL server refused the statement (SQLSTATE \(state))", cause: error)
            }
        } else {
            self.init(.unavailable, "the PostgreSQL server cannot be reached (\(error.code))", cause: error)
        }
    }

    /// The SQLSTATE the server answered with, if it answered.
    public var sqlState: String? {
        (cause?.error as? PSQLError)?.serverInfo?[.sqlState]
    }
}
