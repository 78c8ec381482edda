import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The audit trail's storage in a PostgreSQL database shared by several runner nodes: one chain,
/// ordered by the database (issue 16). ``AuditLog`` keeps the group commit, the fail-closed latch
/// and the checkpoint policy; this type runs its transactions.
///
/// Tables (all prefixed `audit_`; migrations in `audit_migrations`, applied under the advisory
/// lock ``migrationLockKey`` so that nodes starting together apply each one once):
/// - `audit_records`: the chain, one row per record, `seq` the primary key;
/// - `audit_checkpoints`: signed checkpoints of the head, as in SQLite's `checkpoints`;
/// - `audit_runners`: the nodes serving the trail right now (see ``announce(node:from:)``).
///
/// A commit is one transaction: `pg_advisory_xact_lock(`` appendLockKey ``)` serialises the
/// writers of every node; the head is read after the lock (READ COMMITTED: each statement sees
/// every commit made before it), checked to continue from the head the node last knew
/// (``AuditLog/continuedHead(stored:expected:hashAt:recordsAfter:)``: records other nodes
/// appended meanwhile must chain), the batch is inserted with consecutive `seq` and the same
/// hash chain as SQLite, a checkpoint is written when due, and the transaction commits.
///
/// Blocking, on purpose: every method waits for its futures (`EventLoopFuture.wait()`) on the
/// calling thread, as the SQLite path waits for GRDB and the fsync. The log's writer is a
/// synchronous actor method, so one commit is in flight per log by construction (a
/// ``AuditLog/checkpoint()`` cannot interleave a second commit with the writer's, which an
/// `await` inside the commit would allow), and the SQLite and PostgreSQL paths share every line
/// of the writer. Waiting never deadlocks: the connections are plain `PostgresConnection`s whose
/// I/O runs on NIO's event-loop threads, never on the Swift cooperative pool the waiting thread
/// belongs to (which is why this does not use `PostgresClient`, whose pool runs as a task).
/// The cost is one cooperative thread held for a commit's round trips, as SQLite holds one for
/// its fsync.
final class AuditPostgres: Sendable {
    /// `pg_advisory_xact_lock` key held by every audit commit (`LHAU` in ASCII).
    static let appendLockKey: Int64 = 0x4C48_4155
    /// `pg_advisory_xact_lock` key held while the audit tables are migrated (`LHAM` in ASCII).
    static let migrationLockKey: Int64 = 0x4C48_414D

    let location: StoreLocation.PostgresLocation
    private let logger: Logger
    /// The writer's connection (only the log's actor uses it) and the readers' (one read at a
    /// time; reads are the CLI's and the audit API's). Nil until first used or after a failure.
    private let writer = Mutex<PostgresConnection?>(nil)
    private let reader = Mutex<PostgresConnection?>(nil)
    /// This node's row in `audit_runners` while it serves the trail, re-pointed at a new writer
    /// connection after a reconnect.
    private let announced = Mutex<(id: String, node: String, from: Int64)?>(nil)

    /// Why a commit failed, and whether it may have been committed.
    struct Failure: Error, CustomStringConvertible {
        /// Nothing was written (the connection could not be had, or was lost before COMMIT was
        /// sent, or a lock wait timed out): the log refuses this commit's records only.
        let notWritten: Bool
        let underlying: any Error
        /// A kept connection was found dead before anything was sent: worth one more try.
        var staleConnection = false
        var description: String { AuditPostgres.describe(underlying) }
    }

    /// Connects and migrates; throws when the database cannot be reached.
    init(location: StoreLocation.PostgresLocation, logger: Logger) throws {
        self.location = location
        self.logger = logger
        try migrate()
    }

    deinit {
        for connection in [writer.withLock { $0 }, reader.withLock { $0 }].compactMap({ $0 }) {
            Self.close(connection)
        }
    }

    // MARK: Connections

    private func connect() throws -> PostgresConnection {
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(5)
        let connection = try PostgresConnection.connect(
            on: PostgresConnection.defaultEventLoopGroup.any(), configuration: configuration,
            id: Int.random(in: 1...Int.max), logger: logger
        ).wait()
        do {
            // A commit that waits this long for another node's lock is refused, not queued forever.
            _ = try run(connection, "SET lock_timeout = '10s'")
        } catch {
            Self.close(connection)
            throw error
        }
        return connection
    }

    /// Closes `connection`, keeping it alive until closed (postgres-nio asserts a connection is
    /// closed before it is freed).
    private static func close(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in _ = connection }
    }

    /// Runs `body` with the writer connection, connecting (and re-announcing the runner) first
    /// when there is none. The connection is dropped after any failure, so the next commit starts
    /// on a fresh one.
    private func withWriter<T>(_ body: (PostgresConnection, _ reused: Bool) throws -> T) throws -> T {
        let connection: PostgresConnection
        let reused: Bool
        if let open = writer.withLock({ $0 }), !open.isClosed {
            connection = open
            reused = true
        } else {
            if let stale = writer.withLock({ $0 }) { Self.close(stale) }
            writer.withLock { $0 = nil }
            do {
                connection = try connect()
            } catch {
                throw Failure(notWritten: true, underlying: error)
            }
            if let announced = announced.withLock({ $0 }) {
                do {
                    try register(connection, id: announced.id, node: announced.node, from: announced.from)
                } catch {
                    Self.close(connection)
                    throw Failure(notWritten: true, underlying: error)
                }
            }
            reused = false
            writer.withLock { $0 = connection }
        }
        do {
            return try body(connection, reused)
        } catch {
            writer.withLock { $0 = nil }
            Self.close(connection)
            throw error
        }
    }

    /// Runs `body` on the reader connection, one read at a time. A read that fails for a lost
    /// connection it had kept open (the server restarted, the backend was terminated) is read
    /// again once on a new one.
    private func withReader<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try reader.withLock { held in
            if let open = held, open.isClosed {
                Self.close(open)
                held = nil
            }
            var reused = held != nil
            while true {
                let connection = try held ?? connect()
                held = connection
                do {
                    return try body(connection)
                } catch {
                    held = nil
                    Self.close(connection)
                    guard reused, Self.lostConnection(error) else { throw error }
                    reused = false
                }
            }
        }
    }

    private func run(_ connection: PostgresConnection, _ query: PostgresQuery) throws -> PostgresQueryResult {
        try Self.run(connection, query, logger: logger)
    }

    /// How long one statement may go unanswered before the connection is given up. Far above any
    /// answer the trail waits for (a lock wait ends at `lock_timeout`, 10 s; a read is a page of
    /// 5,000 records), so reaching it means the answer is not coming.
    static let statementLimit: TimeAmount = .seconds(30)

    /// Runs `query` and waits for its answer, at most ``statementLimit``.
    ///
    /// postgres-nio (1.33) can leave a query on a connection whose backend the server terminated
    /// unanswered for good, and closing the connection does not complete it (the same defect as
    /// `PostgresStore`'s, see docs/operations.md). The writer blocks on the answer, so one such
    /// query stopped the whole trail (found by `connectionsKilledMidLoadLoseNothingAcknowledged`,
    /// which hung CI). So the wait is on a promise of our own that either the answer or a timer on
    /// the connection's event loop completes, whichever comes first (a promise's second completion
    /// is ignored); the timer also closes the connection, which the caller then drops.
    static func run(
        _ connection: PostgresConnection, _ query: PostgresQuery, logger: Logger, limit: TimeAmount = statementLimit
    ) throws -> PostgresQueryResult {
        let answered = connection.eventLoop.makePromise(of: PostgresQueryResult.self)
        connection.query(query, logger: logger).cascade(to: answered)
        let deadline = connection.eventLoop.scheduleTask(in: limit) {
            answered.fail(Unanswered(limit: limit))
            close(connection)
        }
        defer { deadline.cancel() }
        return try answered.futureResult.wait()
    }

    /// A statement that got no answer within its limit: the connection is treated as lost.
    struct Unanswered: Error, CustomStringConvertible {
        let limit: TimeAmount
        var description: String {
            "PostgreSQL did not answer within \(limit.nanoseconds / 1_000_000_000) s; the connection was closed"
        }
    }

    /// Runs `body` in one transaction on the writer connection. The phase of a failure decides
    /// whether it is in doubt: before COMMIT was sent, a lost connection or a lock timeout wrote
    /// nothing (PostgreSQL aborts a transaction whose session ends); once COMMIT was sent and no
    /// answer came, the records may be committed or not, and the log latches.
    ///
    /// A kept connection found dead at BEGIN (the server restarted, the backend was terminated
    /// while idle) is replaced and the transaction run once more: nothing was sent.
    func transaction<T>(synchronous: Bool, _ body: (PostgresConnection) throws -> T) throws -> T {
        do {
            return try attempt(synchronous: synchronous, body)
        } catch let failure as Failure where failure.staleConnection {
            return try attempt(synchronous: synchronous, body)
        }
    }

    private func attempt<T>(synchronous: Bool, _ body: (PostgresConnection) throws -> T) throws -> T {
        try withWriter { connection, reused in
            var begun = false
            var committing = false
            do {
                _ = try run(connection, "BEGIN")
                begun = true
                // One round trip: the commit's durability (see ``AuditLog``: `batched` commits are
                // synced by the writer within its interval) and the append lock.
                _ = try run(
                    connection,
                    "SELECT set_config('synchronous_commit', \(synchronous ? "on" : "off"), true), pg_advisory_xact_lock(\(Self.appendLockKey))"
                )
                let result = try body(connection)
                committing = true
                _ = try run(connection, "COMMIT")
                return result
            } catch {
                if !committing && !connection.isClosed { _ = try? run(connection, "ROLLBACK") }
                throw Failure(
                    notWritten: !committing && Self.wroteNothing(error), underlying: error,
                    staleConnection: reused && !begun && Self.lostConnection(error))
            }
        }
    }

    /// A failure in a sentence: a `PSQLError` describes itself only as "Generic description"
    /// (to keep queries out of logs); its code, SQLSTATE and the server's message say what happened
    /// without the query or its values.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        var text = "PostgreSQL \(error.code)"
        if let state = error.serverInfo?[.sqlState] { text += " \(state)" }
        if let message = error.serverInfo?[.message] { text += ": \(message)" }
        if let underlying = error.underlying { text += " (\(underlying))" }
        return text
    }

    /// The connection was lost (closed by either side, or failed), as opposed to an answer.
    private static func lostConnection(_ error: any Error) -> Bool {
        if error is ChannelError || error is Unanswered { return true }
        guard let error = error as? PSQLError else { return false }
        return [.connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown].contains(
            error.code)
    }

    /// A failure before COMMIT that leaves nothing in doubt and says nothing about the trail: the
    /// connection is gone, the server is shutting down or refused us, a lock wait timed out.
    /// Anything else (a constraint, a permission, a moved chain) latches the log as on SQLite.
    private static func wroteNothing(_ error: any Error) -> Bool {
        if lostConnection(error) { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            // 55P03 lock_not_available (lock_timeout), 57P01-57P03 admin shutdown / crash / cannot
            // connect now, 08xxx connection exceptions.
            return state == "55P03" || state.hasPrefix("57P") || state.hasPrefix("08")
        default:
            return false
        }
    }

    // MARK: Schema

    private func migrate() throws {
        let migrations: [(String, [String])] = [
            (
                "v1",
                [
                    """
                    CREATE TABLE audit_records (
                        seq bigint PRIMARY KEY, time text NOT NULL, tenant text, session text, event text NOT NULL,
                        body text NOT NULL, prev_hash text NOT NULL, hash text NOT NULL, intent_seq bigint)
                    """,
                    "CREATE INDEX audit_records_time ON audit_records (time)",
                    "CREATE INDEX audit_records_tenant ON audit_records (tenant, seq)",
                    "CREATE INDEX audit_records_session ON audit_records (session, seq)",
                    "CREATE INDEX audit_records_intent ON audit_records (intent_seq) WHERE intent_seq IS NOT NULL",
                    """
                    CREATE TABLE audit_checkpoints (
                        seq bigint PRIMARY KEY, head_hash text NOT NULL, record_count bigint NOT NULL,
                        time text NOT NULL, key_id text NOT NULL, signature text NOT NULL)
                    """,
                    """
                    CREATE TABLE audit_runners (
                        id text PRIMARY KEY, node text NOT NULL, from_seq bigint NOT NULL,
                        backend_pid integer NOT NULL, backend_start timestamptz NOT NULL)
                    """,
                ]
            )
        ]
        let connection = try connect()
        defer { Self.close(connection) }
        _ = try run(connection, "BEGIN")
        do {
            _ = try run(connection, "SELECT pg_advisory_xact_lock(\(Self.migrationLockKey))")
            _ = try run(
                connection,
                "CREATE TABLE IF NOT EXISTS audit_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            let applied = Set(
                try run(connection, "SELECT version FROM audit_migrations").map { try $0.decode(String.self) })
            for (version, statements) in migrations where !applied.contains(version) {
                for statement in statements { _ = try run(connection, PostgresQuery(unsafeSQL: statement)) }
                _ = try run(connection, "INSERT INTO audit_migrations (version) VALUES (\(version))")
            }
            _ = try run(connection, "COMMIT")
        } catch {
            _ = try? run(connection, "ROLLBACK")
            throw error
        }
    }

    // MARK: Writing (inside ``transaction(synchronous:_:)``)

    func storedHead(_ connection: PostgresConnection) throws -> AuditLog.ChainHead {
        guard let row = try run(connection, "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").first
        else { return AuditLog.ChainHead(seq: 0, hash: AuditLog.genesis) }
        let (seq, hash) = try row.decode((Int64, String).self)
        return AuditLog.ChainHead(seq: seq, hash: hash)
    }

    /// The stored head, provided it continues the chain from `expected` (see
    /// ``AuditLog/continuedHead(stored:expected:hashAt:recordsAfter:)``).
    func continuedHead(_ connection: PostgresConnection, from expected: AuditLog.ChainHead) throws
        -> AuditLog.ChainHead
    {
        try AuditLog.continuedHead(
            stored: storedHead(connection), expected: expected,
            hashAt: { seq in try self.hash(connection, at: seq) },
            recordsAfter: { seq in
                try self.run(
                    connection,
                    "SELECT seq, body, prev_hash, hash FROM audit_records WHERE seq > \(seq) ORDER BY seq"
                ).map(Self.record)
            })
    }

    private func hash(_ connection: PostgresConnection, at seq: Int64) throws -> String? {
        try run(connection, "SELECT hash FROM audit_records WHERE seq = \(seq)").first.map {
            try $0.decode(String.self)
        }
    }

    /// Inserts `rows` (already chained) in statements of at most 500 rows.
    func insert(
        _ connection: PostgresConnection,
        _ rows: [(seq: Int64, encoded: AuditLog.Encoded, previous: String, hash: String)]
    )
        throws
    {
        for start in stride(from: 0, to: rows.count, by: 500) {
            var bindings = PostgresBindings(capacity: 9 * min(500, rows.count - start))
            var values: [String] = []
            for row in rows[start..<min(start + 500, rows.count)] {
                let base = bindings.count
                values.append("(" + (1...9).map { "$\(base + $0)" }.joined(separator: ",") + ")")
                bindings.append(row.seq)
                bindings.append(row.encoded.time)
                bindings.append(row.encoded.tenant)
                bindings.append(row.encoded.session)
                bindings.append(row.encoded.event)
                bindings.append(row.encoded.body)
                bindings.append(row.previous)
                bindings.append(row.hash)
                bindings.append(row.encoded.intentSeq)
            }
            _ = try run(
                connection,
                PostgresQuery(
                    unsafeSQL:
                        "INSERT INTO audit_records (seq, time, tenant, session, event, body, prev_hash, hash, intent_seq) VALUES "
                        + values.joined(separator: ","), binds: bindings))
        }
    }

    func writeCheckpoint(_ connection: PostgresConnection, _ checkpoint: AuditCheckpoint) throws {
        _ = try run(
            connection,
            """
            INSERT INTO audit_checkpoints (seq, head_hash, record_count, time, key_id, signature)
            VALUES (\(checkpoint.seq), \(checkpoint.headHash), \(checkpoint.seq), \(checkpoint.time), \(checkpoint.keyID), \(checkpoint.signature))
            ON CONFLICT (seq) DO UPDATE SET head_hash = EXCLUDED.head_hash, time = EXCLUDED.time,
                key_id = EXCLUDED.key_id, signature = EXCLUDED.signature
            """)
    }

    /// Makes every commit of this session durable: a transaction that takes a transaction id
    /// commits with `synchronous_commit = on`, and PostgreSQL flushes the WAL up to its commit
    /// record, which follows every earlier `synchronous_commit = off` commit's.
    func syncWAL() throws {
        try withWriter { connection, _ in _ = try run(connection, "SELECT pg_current_xact_id()") }
    }

    // MARK: Runners

    /// Records this node as serving the trail from record `from` on, tied to the writer
    /// connection's backend: the row counts as live while that backend exists (its pid and start
    /// time are in `pg_stat_activity`), so a node that dies — its connection with it — stops
    /// counting at once, with no heartbeat to miss. Rows of gone backends are deleted here.
    func announce(node: String, from: Int64) throws {
        let id = UUID().uuidString.lowercased()
        try withWriter { connection, _ in
            _ = try run(
                connection,
                """
                DELETE FROM audit_runners r WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                    WHERE a.pid = r.backend_pid AND a.backend_start = r.backend_start)
                """)
            try register(connection, id: id, node: node, from: from)
        }
        announced.withLock { $0 = (id, node, from) }
    }

    private func register(_ connection: PostgresConnection, id: String, node: String, from: Int64) throws {
        _ = try run(
            connection,
            """
            INSERT INTO audit_runners (id, node, from_seq, backend_pid, backend_start)
            SELECT \(id), \(node), \(from), pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()
            ON CONFLICT (id) DO UPDATE SET backend_pid = EXCLUDED.backend_pid, backend_start = EXCLUDED.backend_start
            """)
    }

    /// Ends this node's announcement (a clean stop).
    func retire() {
        guard
            let held = announced.withLock({ value in
                defer { value = nil }; return value
            })
        else { return }
        _ = try? withWriter { connection, _ in
            _ = try run(connection, "DELETE FROM audit_runners WHERE id = \(held.id)")
        }
    }

    /// The smallest record each live node announced, by node.
    func liveRunners() throws -> [String: Int64] {
        try withReader { connection in
            var live: [String: Int64] = [:]
            for row in try run(
                connection,
                """
                SELECT r.node, min(r.from_seq) FROM audit_runners r JOIN pg_stat_activity a
                    ON a.pid = r.backend_pid AND a.backend_start = r.backend_start GROUP BY r.node
                """)
            {
                let (node, from) = try row.decode((String, Int64).self)
                live[node] = from
            }
            return live
        }
    }

    // MARK: Reading

    static func record(_ row: PostgresRow) throws -> AuditRecord {
        let (seq, body, previous, hash) = try row.decode((Int64, String, String, String).self)
        return AuditRecord(seq: seq, body: body, previousHash: previous, hash: hash)
    }

    static func checkpoint(_ row: PostgresRow) throws -> AuditCheckpoint {
        let (seq, headHash, time, keyID, signature) = try row.decode((Int64, String, String, String, String).self)
        return AuditCheckpoint(seq: seq, headHash: headHash, time: time, keyID: keyID, signature: signature)
    }

    func head() throws -> AuditLog.ChainHead { try withReader { try storedHead($0) } }

    func hash(at seq: Int64) throws -> String? { try withReader { try hash($0, at: seq) } }

    func body(at seq: Int64) throws -> String? {
        try withReader { connection in
            try run(connection, "SELECT body FROM audit_records WHERE seq = \(seq)").first.map {
                try $0.decode(String.self)
            }
        }
    }

    func lastCheckpoint() throws -> AuditCheckpoint? {
        try withReader { connection in
            try run(
                connection,
                "SELECT seq, head_hash, time, key_id, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
            ).first.map(Self.checkpoint)
        }
    }

    func records(tenant: String?, session: String?, since: String?, afterSeq: Int64, limit: Int) throws
        -> [AuditRecord]
    {
        var bindings = PostgresBindings()
        var clauses = ["seq > $1"]
        bindings.append(afterSeq)
        for (column, value) in [("tenant", tenant), ("session", session)] {
            guard let value else { continue }
            bindings.append(value)
            clauses.append("\(column) = $\(bindings.count)")
        }
        if let since {
            bindings.append(since)
            clauses.append("time >= $\(bindings.count)")
        }
        bindings.append(Int64(limit))
        let sql =
            "SELECT seq, body, prev_hash, hash FROM audit_records WHERE \(clauses.joined(separator: " AND ")) "
            + "ORDER BY seq LIMIT $\(bindings.count)"
        return try withReader { connection in
            try run(connection, PostgresQuery(unsafeSQL: sql, binds: bindings)).map(Self.record)
        }
    }

    func tail(_ count: Int) throws -> [AuditRecord] {
        try withReader { connection in
            try run(
                connection,
                "SELECT seq, body, prev_hash, hash FROM audit_records ORDER BY seq DESC LIMIT \(Int64(count))"
            ).map(Self.record).reversed()
        }
    }

    /// Feeds every record (from `fromSeq` on, of `session` if given) to `body` in `seq` order, in
    /// pages of 5000 read in one REPEATABLE READ transaction: one snapshot, whatever other nodes
    /// append meanwhile. `body` returns false to stop.
    func forEachRecord(session: String? = nil, fromSeq: Int64 = 1, _ body: (AuditRecord) throws -> Bool) throws {
        try withReader { connection in
            _ = try run(connection, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            defer { _ = try? run(connection, "COMMIT") }
            do {
                try feed(connection, session: session, fromSeq: fromSeq, body)
            } catch {
                // Records were fed already: reading again would feed them twice.
                throw ReadInterrupted(underlying: error)
            }
        }
    }

    /// A read that failed after it fed records to its caller: not read again on a new connection.
    struct ReadInterrupted: Error, CustomStringConvertible {
        let underlying: any Error
        var description: String { AuditPostgres.describe(underlying) }
    }

    private func feed(
        _ connection: PostgresConnection, session: String?, fromSeq: Int64, _ body: (AuditRecord) throws -> Bool
    ) throws {
        var after = fromSeq - 1
        while true {
            var bindings = PostgresBindings()
            bindings.append(after)
            var sql = "SELECT seq, body, prev_hash, hash FROM audit_records WHERE seq > $1"
            if let session {
                bindings.append(session)
                sql += " AND session = $2"
            }
            let page = try run(connection, PostgresQuery(unsafeSQL: sql + " ORDER BY seq LIMIT 5000", binds: bindings))
            for row in page {
                let record = try Self.record(row)
                guard try body(record) else { return }
                after = record.seq
            }
            if page.count < 5000 { return }
        }
    }

    /// Every checkpoint with the hash its record has now (nil: the record is gone), oldest first.
    func checkpointsWithStoredHash() throws -> [(AuditCheckpoint, String?)] {
        try withReader { connection in
            try run(
                connection,
                """
                SELECT c.seq, c.head_hash, c.time, c.key_id, c.signature, a.hash
                FROM audit_checkpoints c LEFT JOIN audit_records a ON a.seq = c.seq ORDER BY c.seq
                """
            ).map { row in
                let (seq, headHash, time, keyID, signature, stored) = try row.decode(
                    (Int64, String, String, String, String, String?).self)
                return (
                    AuditCheckpoint(seq: seq, headHash: headHash, time: time, keyID: keyID, signature: signature),
                    stored
                )
            }
        }
    }

    func checkpoints() throws -> [AuditCheckpoint] {
        try withReader { connection in
            try run(connection, "SELECT seq, head_hash, time, key_id, signature FROM audit_checkpoints ORDER BY seq")
                .map(Self.checkpoint)
        }
    }

    /// Outcome records whose `intent_seq` column names one of `intents`: (seq, intent_seq, body).
    func linkedOutcomes(_ intents: [Int64]) throws -> [(Int64, Int64, String)] {
        try withReader { connection in
            var bindings = PostgresBindings()
            bindings.append(intents)
            return try run(
                connection,
                PostgresQuery(
                    unsafeSQL:
                        "SELECT seq, intent_seq, body FROM audit_records WHERE intent_seq = ANY($1) ORDER BY seq",
                    binds: bindings)
            ).map { try $0.decode((Int64, Int64, String).self) }
        }
    }
}
