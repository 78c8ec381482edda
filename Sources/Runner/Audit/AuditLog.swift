import Failures
import Foundation
import GRDB
import GRDBSQLite
import Logging
import Sandbox
import Synchronization

/// One audit record: what happened, to whom, decided how. Optional fields are absent when they do
/// not apply (a refused claim has no session). Never holds a token, only its SHA-256.
public struct AuditEvent: Codable, Sendable, Hashable {
    /// What happened: `call.intent`, `call.outcome`, `call.refused`, `session.created`, ...
    public var event: String
    /// When it happened (set by ``AuditLog/append(_:)`` when absent).
    public var time: Date?
    /// The tenant.
    public var tenant: String?
    /// The actor.
    public var actor: String?
    /// The session.
    public var session: String?
    /// The lease.
    public var lease: String?
    /// SHA-256 of the claim token that carried the request.
    public var claimFingerprint: String?
    /// SHA-256 fingerprint of the approval grant used, if any.
    public var approvalFingerprint: String?
    /// The workspace id as resolved by the registry.
    public var workspace: String?
    /// The tool.
    public var tool: String?
    /// SHA-256 of the canonical JSON arguments.
    public var argumentsDigest: String?
    /// `allowed`, `refused`, or for admin events who decided (`operator`, `tenant:<id>`).
    public var decision: String?
    /// The refusal or error code.
    public var code: String?
    /// What came of it: `completed`, `error`, `unavailable`, ...
    public var outcome: String?
    /// Milliseconds from intent to outcome.
    public var durationMs: Double?
    /// `call` or `session` isolation of the worker.
    public var isolation: String?
    /// The worker that ran the call.
    public var workerID: String?
    /// The JSON-RPC id of the MCP request.
    public var requestID: String?
    /// The runner that wrote the record.
    public var node: String?
    /// The policy version that decided the call.
    public var policyVersion: String?
    /// The risk tier.
    public var tier: String?
    /// A short operator-facing detail (a refusal sentence, the fields a PATCH changed).
    public var detail: String?
    /// On a `call.outcome`: the sequence number of the call's `call.intent` record. Set by
    /// ``AuditLog/appendOutcome(_:intent:sync:)``; it is how `audit verify` and the audit API pair
    /// an outcome with its intent, whatever else runs concurrently with the same request id.
    public var intentSeq: Int64?

    /// Creates an event of kind `event`.
    public init(_ event: String) { self.event = event }

    enum CodingKeys: String, CodingKey {
        case event, time, tenant, actor, session, lease, workspace, tool, decision, code, outcome, isolation, node,
            tier,
            detail
        case claimFingerprint = "claim_fingerprint"
        case approvalFingerprint = "approval_fingerprint"
        case argumentsDigest = "arguments_digest"
        case durationMs = "duration_ms"
        case workerID = "worker_id"
        case requestID = "request_id"
        case policyVersion = "policy_version"
        case intentSeq = "intent_seq"
    }
}

/// A stored record: the event's canonical JSON body, its place in the chain and the chain hashes.
public struct AuditRecord: Sendable, Hashable {
    /// 1-based position in the log; consecutive.
    public let seq: Int64
    /// The event as JSON (keys in declaration order); exactly the bytes the hash covers.
    public let body: String
    /// The previous record's hash (64 zeros for the first).
    public let previousHash: String
    /// `sha256(previousHash + "\n" + seq + "\n" + body)`.
    public let hash: String

    /// The hash a record with these contents must carry.
    public static func chainHash(previous: String, seq: Int64, body: String) -> String {
        Digest.sha256Hex(Array((previous + "\n" + String(seq) + "\n" + body).utf8))
    }

    /// The event, decoded.
    public var event: AuditEvent? { try? AuditLog.decoder.decode(AuditEvent.self, from: Data(body.utf8)) }
}

/// Why an audit record could not be written; the call it was for is refused.
public struct AuditUnavailable: Error, Sendable, CustomStringConvertible {
    /// The underlying failure, with the database's own words where there are some: for the
    /// runner's log and the operator.
    public let description: String
    /// What a caller is told: the same sentence without the database's words (they may quote
    /// paths, values or statements).
    public let message: String

    init(description: String, message: String? = nil) {
        self.description = description
        self.message = message ?? description
    }
}

/// The stored chain no longer continues from the head this log last wrote or saw: records were
/// deleted, edited or rewritten by something other than a Leasehold writer.
struct AuditChainMoved: Error, CustomStringConvertible {
    let description: String
}

/// The tamper-evident audit trail: an append-only, hash-chained SQLite log with group commit.
///
/// `append` returns only once the record is committed to the WAL, which survives the process being
/// killed. How much more it waits is the caller's ``AuditSync``, chosen per risk tier: `full`
/// commits are fsynced before they return (they also survive a power loss); `batched` commits are
/// not synced on their own, and the writer syncs the WAL within ``syncInterval`` while any are
/// unsynced (a later `full` commit syncs them sooner). Appends that arrive while a commit is in
/// flight are written together in the next transaction: one commit, and at most one fsync, for many
/// records; a group holding any `full` record is a synced commit.
///
/// A call leaves two records. Its `call.intent` is always awaited before the tool runs. Its
/// `call.outcome` either holds the response (``append(_:sync:)`` / ``appendOutcome(_:intent:sync:)``
/// with `full`) or, with `batched`, rides on the writer's next group commit while the response goes
/// out (``appendOutcome(_:intent:sync:)``). A call whose intent has no outcome record — the runner
/// died first, or the outcome could not be written — is reported as *outcome unknown* by
/// ``callOutcomes()`` (`leasehold audit verify`) and ``outcomeStatuses(of:)`` (the audit API),
/// never passed over.
///
/// Keyed (invariant 14): with a signing key, the log writes signed checkpoints of its head (every
/// `checkpointEvery` records inside the commit, and on ``checkpoint()`` from a timer and at
/// shutdown). It also remembers the head it last wrote and never chains onto a stored head that
/// does not continue from it: a rewrite behind its back makes every later append fail.
///
/// Fail closed: after any failed write (a moved chain, an I/O error, a constraint, a failed fsync)
/// every later append fails with ``AuditUnavailable`` until the runner restarts, so no call runs
/// after one whose record may be missing. Two exceptions, where nothing was written: a write that
/// waited past the busy timeout for another process's lock (`SQLITE_BUSY`, e.g. a `leasehold` CLI
/// command or an operator's `sqlite3` holding the file), and a write that found the disk full with
/// no audit reserve left to free (`SQLITE_FULL`, rolled back whole): only the records of that
/// commit are refused and the next append tries again.
///
/// One writer: every write — records, checkpoints, the `PRAGMA synchronous` switch, the WAL fsync —
/// runs on the pool's single writer connection, only from this actor (reads use the pool's reader
/// connections). The statements a commit runs are prepared once per connection and reused
/// (`db.cachedStatement`): the head query, the record INSERT and the checkpoint INSERT. Another
/// process (the `leasehold` CLI) may append to the same file through its own writer; SQLite's write
/// lock serialises the two and ``continuedHead(_:from:)`` checks that the chain continues.
///
/// Or, for a cluster, the same log in a PostgreSQL database several nodes share
/// (``init(postgres:node:signer:checkpointEvery:syncInterval:logger:)``, ``AuditPostgres``): one
/// chain ordered by the database, every other node a writer whose records must chain like the
/// CLI's; the group commit, the latch and the checkpoints are this type's on both storages.
public actor AuditLog {
    /// Where the actor runs: a thread of its own, since its writer blocks (see ``AuditThread``).
    private nonisolated let thread = AuditThread(name: "leasehold-audit")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }
    static let genesis = String(repeating: "0", count: 64)
    /// UTC with milliseconds: `2026-11-23T12:00:00.123Z`; sorts as text.
    static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        // Keys in declaration order (the synthesized encoder is deterministic); the chain hashes the
        // stored bytes, so sorting would only add cost.
        encoder.outputFormatting = [.withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(AuditLog.timeFormat))
        }
        return encoder
    }()
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = try? AuditLog.timeFormat.parse(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: text))
            }
            return date
        }
        return decoder
    }()

    /// Where the records are: a SQLite file, or a PostgreSQL database shared by several nodes.
    enum Storage: Sendable {
        case sqlite(DatabasePool)
        case postgres(AuditPostgres)
    }

    let storage: Storage
    /// The PostgreSQL storage, nil for a SQLite log.
    nonisolated var postgres: AuditPostgres? {
        if case .postgres(let postgres) = storage { return postgres }
        return nil
    }
    /// The SQLite pool. Only the SQLite branches (each behind a check for ``postgres``) and the
    /// SQLite tests read it; a PostgreSQL log has none.
    nonisolated var pool: DatabasePool {
        guard case .sqlite(let pool) = storage else {
            preconditionFailure("the SQLite pool of an audit log stored in PostgreSQL")
        }
        return pool
    }
    /// The database file (for PostgreSQL, the store URL without its password).
    public nonisolated let path: String
    /// This runner's id, stamped on every record.
    public nonisolated let node: String
    /// Where group commits are counted (`/metrics`): set once by the runner's gateway.
    nonisolated let metrics = Mutex<LeaseholdMetrics?>(nil)
    /// Records waiting for the writer.
    private var pending: [Queued] = []
    /// Whether the writer loop runs: committing, or parked until a WAL sync falls due.
    private var writing = false
    /// The parked writer; new records or the sync deadline resume it.
    private var parked: CheckedContinuation<Void, Never>?
    private var committedBatches = 0
    /// The writer connection's `PRAGMA synchronous` as last set (nil: unknown after a failed write,
    /// so the next commit sets it again).
    private var writerSync: AuditSync? = .full
    /// Commits written with `synchronous = NORMAL` that no fsync covers yet, and when the first was.
    private var unsyncedCommits = 0
    private var unsyncedSince: ContinuousClock.Instant?
    private var walSyncCount = 0
    /// Callers of ``waitUntilSynced()``.
    private var syncWaiters: [CheckedContinuation<Void, Never>] = []
    /// Callers of ``waitUntilCommitted()``.
    private var commitWaiters: [CheckedContinuation<Void, Never>] = []
    /// Set once a WAL sync failed; every later append fails with it. After a failed fsync the kernel
    /// may have dropped the dirty pages and a retry can report success for data that is gone, so
    /// the log can no longer promise what it acknowledged (fail closed until a restart).
    private var syncFailed: AuditUnavailable?
    /// The longest a `batched` commit stays unsynced while the log runs.
    public nonisolated let syncInterval: Duration
    /// The last record this log wrote or accepted as a continuation of its own (seq 0: empty).
    private var head: ChainHead
    /// The last record covered by a checkpoint this log wrote or found at open.
    private var lastCheckpointSeq: Int64
    /// Set once a write failed (other than on another process's lock or a full disk, see
    /// ``refuse(after:)``) or the stored chain was found changed behind this log's back; every later
    /// append fails with it (fail closed until an operator has looked and restarted the runner).
    /// Logged once, when set.
    private var latched: AuditUnavailable?
    /// Whether the log refuses every append (a failed write or sync, or a chain changed behind its
    /// back) until a restart; `/readyz` reports it.
    public var refusesAppends: Bool { latched != nil || syncFailed != nil }

    /// The head when this log was opened: intents at or before it were written by an earlier
    /// process (or one that shares the file), so this log is not the one running them.
    public nonisolated let openedAtSeq: Int64
    /// Intents whose outcome record this log was given but could not write: their outcome is
    /// unknown at once, not only after a restart. (A `Mutex` so that the nonisolated readers of
    /// the audit API see it without waiting behind the writer.)
    let lostOutcomes = Mutex<Set<Int64>>([])
    /// The presence lock (descriptor and file) held while this process serves the log (see
    /// ``AuditRunnerPresence``); nil when not announced.
    let presence = Mutex<(fd: Int32, path: String)?>(nil)
    private let signer: AuditSigningKey?
    /// Records between checkpoints written inside a commit.
    public nonisolated let checkpointEvery: Int64
    private let logger: Logger

    /// A record waiting for the writer: its encoding, the durability its caller asked for, and the
    /// caller waiting for the commit (nil: nobody waits).
    private struct Queued {
        let encoded: Encoded
        let sync: AuditSync
        let continuation: CheckedContinuation<Result<Int64, AuditUnavailable>, Never>?
    }

    /// A position in the chain.
    struct ChainHead: Equatable {
        var seq: Int64
        var hash: String
    }

    /// Opens (creating if needed) the log at `path`.
    ///
    /// - Parameters:
    ///   - signer: signs checkpoints; nil for a reader (the CLI's `verify`, `tail`, `export`).
    ///   - checkpointEvery: with a signer, a checkpoint is written in the commit that leaves this
    ///     many records or more after the last one.
    ///   - syncInterval: the longest a `batched` commit stays unsynced while the log runs.
    public init(
        path: String, node: String, signer: AuditSigningKey? = nil, checkpointEvery: Int = 256,
        syncInterval: Duration = .milliseconds(5), logger: Logger = Logger(label: "leasehold.audit")
    ) throws {
        let pool = try Self.openSQLite(path: path)
        let (found, checkpoint) = try pool.read { db in
            (try Self.storedHead(db), try Self.lastCheckpoint(db))
        }
        let checkpointHash = try checkpoint.flatMap { checkpoint in
            try pool.read { db in
                try String.fetchOne(db, sql: "SELECT hash FROM audit WHERE seq = ?", arguments: [checkpoint.seq])
            }
        }
        self.init(
            storage: .sqlite(pool), path: path, node: node, signer: signer, checkpointEvery: checkpointEvery,
            syncInterval: syncInterval, logger: logger, found: found, checkpoint: checkpoint,
            checkpointHash: checkpointHash)
    }

    /// Opens (creating the tables if needed) the trail in a PostgreSQL database that several
    /// runner nodes share: one chain, ordered by the database (see ``AuditPostgres``). Every node
    /// stamps its `node` on its records and must sign checkpoints with the same key (the cluster's
    /// nodes are given the same `audit-signing.key`, as they share `keys.json`), so that
    /// ``verifyCheckpoints(publicKey:)`` checks the whole trail with one public key.
    ///
    /// The log owns its connections (one for the writer, one for readers; opened on first use,
    /// again after a failure, closed when the log is freed); nothing needs to run beside it.
    /// Throws when the database cannot be reached or migrated.
    public init(
        postgres location: StoreLocation.PostgresLocation, node: String, signer: AuditSigningKey? = nil,
        checkpointEvery: Int = 256, syncInterval: Duration = .milliseconds(5),
        logger: Logger = Logger(label: "leasehold.audit")
    ) throws {
        let postgres = try AuditPostgres(location: location, logger: logger)
        // The checkpoint first: other nodes append meanwhile, and the head read after it is at or
        // after the record it covers.
        let checkpoint = try postgres.lastCheckpoint()
        let found = try postgres.head()
        let checkpointHash = try checkpoint.flatMap { try postgres.hash(at: $0.seq) }
        self.init(
            storage: .postgres(postgres), path: StoreLocation.postgres(location).description, node: node,
            signer: signer, checkpointEvery: checkpointEvery, syncInterval: syncInterval, logger: logger, found: found,
            checkpoint: checkpoint, checkpointHash: checkpointHash)
    }

    private init(
        storage: Storage, path: String, node: String, signer: AuditSigningKey?, checkpointEvery: Int,
        syncInterval: Duration, logger: Logger, found: ChainHead, checkpoint: AuditCheckpoint?,
        checkpointHash: String?
    ) {
        self.storage = storage
        self.path = path
        self.syncInterval = syncInterval
        self.node = node
        self.signer = signer
        self.checkpointEvery = Int64(max(1, checkpointEvery))
        self.logger = logger
        // The head at open is taken as found: `leasehold audit verify` is what judges a log at rest.
        // But if the last checkpoint no longer matches its record, the log was rewritten while no
        // runner watched it, and appending would sign the forgery: refuse from the start.
        head = found
        openedAtSeq = found.seq
        lastCheckpointSeq = checkpoint?.seq ?? 0
        if let checkpoint, let signer {
            if checkpointHash != checkpoint.headHash || !checkpoint.isSigned(by: signer.publicKey) {
                latched = AuditUnavailable(
                    description: "the audit log does not match its last signed checkpoint (record \(checkpoint.seq)); "
                        + "run `leasehold audit verify`")
                logger.error(
                    "audit log rewritten while the runner was stopped; appends are refused",
                    metadata: ["path": "\(path)", "checkpoint": "\(checkpoint.seq)"])
            }
        }
    }

    /// Opens the SQLite file at `path` and migrates it.
    private static func openSQLite(path: String) throws -> DatabasePool {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        // GRDB's WAL set-up runs after prepareDatabase and lowers the writer to NORMAL (an fsync
        // only at checkpoints; found with strace: 4 syncs in 400 commits). Commits sync unless a
        // batch asks for less (``writerSync`` tracks the setting from here on).
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "audit") { table in
                table.primaryKey("seq", .integer)
                table.column("time", .text).notNull().indexed()
                table.column("tenant", .text).indexed()
                table.column("session", .text).indexed()
                table.column("event", .text).notNull()
                table.column("body", .text).notNull()
                table.column("prev_hash", .text).notNull()
                table.column("hash", .text).notNull()
            }
        }
        migrator.registerMigration("v2-checkpoints") { db in
            try db.create(table: "checkpoints") { table in
                table.primaryKey("seq", .integer)
                table.column("head_hash", .text).notNull()
                table.column("record_count", .integer).notNull()
                table.column("time", .text).notNull()
                table.column("key_id", .text).notNull()
                table.column("signature", .text).notNull()
            }
        }
        migrator.registerMigration("v3-intent-link") { db in
            // The outcome's link to its intent, copied out of the body (which the hash covers and
            // `verify` reads) so the audit API finds a page's outcomes by index.
            try db.alter(table: "audit") { table in table.add(column: "intent_seq", .integer) }
            try db.execute(sql: "CREATE INDEX audit_intent_seq ON audit(intent_seq) WHERE intent_seq IS NOT NULL")
        }
        try migrator.migrate(pool)
        return pool
    }

    deinit {
        presence.withLock { held in
            if let held { close(held.fd) }
        }
        thread.stop()
    }

    private static func storedHead(_ db: Database) throws -> ChainHead {
        let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"))
        return ChainHead(seq: row?["seq"] ?? 0, hash: row?["hash"] ?? genesis)
    }

    private static func lastCheckpoint(_ db: Database) throws -> AuditCheckpoint? {
        try Row.fetchOne(
            db, sql: "SELECT seq, head_hash, time, key_id, signature FROM checkpoints ORDER BY seq DESC LIMIT 1"
        ).map(checkpoint)
    }

    private static func checkpoint(_ row: Row) -> AuditCheckpoint {
        AuditCheckpoint(
            seq: row["seq"], headHash: row["head_hash"], time: row["time"], keyID: row["key_id"],
            signature: row["signature"])
    }

    /// An event encoded by its caller, ready to be chained: encoding does not depend on the
    /// record's place in the log, so it runs concurrently in the callers' tasks and the single
    /// writer only hashes and inserts.
    struct Encoded: Sendable {
        let body: String
        let time: String
        let tenant: String?
        let session: String?
        let event: String
        let intentSeq: Int64?
    }

    /// Appends `event` and returns once it is committed, and with `sync: .full` also fsynced.
    ///
    /// - Parameter sync: `full` (the default: admin events, refusals, write and exec tiers) waits
    ///   for the fsync; `batched` returns after the commit and leaves the fsync to the writer's
    ///   next WAL sync, at most ``syncInterval`` later.
    /// - Returns: the record's sequence number.
    /// - Throws: ``AuditUnavailable`` when it could not be written; callers must not proceed.
    @discardableResult
    public nonisolated func append(_ event: AuditEvent, sync: AuditSync = .full) async throws(AuditUnavailable)
        -> Int64
    {
        guard let encoded = encode(event) else {
            throw AuditUnavailable(description: "cannot encode an audit record for \(event.event)")
        }
        return try await enqueue(encoded, sync: sync).get()
    }

    /// Queues `event` into the chain (in order, in the next commit) without waiting for it to be
    /// durable. For records no decision waits on — worker spawns and destructions, whose call
    /// already has its durable intent record naming the worker — so a call does not pay an fsync
    /// for each. A record that cannot be written is logged by the writer's failure path only.
    /// A call's outcome goes through ``appendOutcome(_:intent:sync:)`` instead, which links it to
    /// its intent and remembers it when it cannot be written.
    public nonisolated func appendWithoutWaiting(_ event: AuditEvent, sync: AuditSync = .full) async {
        guard let encoded = encode(event) else { return }
        await enqueueWithoutWaiting(encoded, sync: sync)
    }

    /// Appends a call's `call.outcome` record, linked to its `call.intent` record `intent` (the
    /// sequence number ``append(_:sync:)`` returned for the intent; stored as ``AuditEvent/intentSeq``,
    /// which this sets).
    ///
    /// - `full` returns once the record is committed and fsynced, like ``append(_:sync:)``: the
    ///   response waits for it.
    /// - `batched` returns once the record is queued: the response does not wait. The writer is
    ///   woken at once, so the record is in its next group commit (no timer wait) and takes its
    ///   place in the chain before any record appended after this returns; ``checkpoint()`` and
    ///   ``sync()`` at shutdown commit it too. Until it is committed a crash loses it, and the call
    ///   is then reported *outcome unknown*; if its commit fails, the log refuses every later
    ///   append and reports the call *outcome unknown* at once.
    ///
    /// - Throws: ``AuditUnavailable`` when the record cannot be written (`full`) or the log already
    ///   refuses appends (`batched`); the call ran, so the caller says its outcome was not recorded.
    public nonisolated func appendOutcome(_ outcome: AuditEvent, intent: Int64, sync: AuditSync)
        async throws(AuditUnavailable)
    {
        var outcome = outcome
        outcome.intentSeq = intent
        guard let encoded = encode(outcome) else {
            lostOutcomes.withLock { _ = $0.insert(intent) }
            throw AuditUnavailable(description: "cannot encode an audit record for \(outcome.event)")
        }
        switch sync {
        case .full:
            _ = try await enqueue(encoded, sync: .full).get()
        case .batched:
            try await enqueueOutcome(encoded)
        }
    }

    /// Stamps time and node and encodes, in the caller's task (see ``Encoded``).
    private nonisolated func encode(_ event: AuditEvent) -> Encoded? {
        var event = event
        let time = event.time ?? Date()
        event.time = time
        if event.node == nil { event.node = node }
        guard let data = try? Self.encoder.encode(event) else { return nil }
        return Encoded(
            body: String(decoding: data, as: UTF8.self), time: time.formatted(Self.timeFormat), tenant: event.tenant,
            session: event.session, event: event.event, intentSeq: event.intentSeq)
    }

    private func enqueue(_ encoded: Encoded, sync: AuditSync) async -> Result<Int64, AuditUnavailable> {
        await withCheckedContinuation { continuation in
            pending.append(Queued(encoded: encoded, sync: sync, continuation: continuation))
            wakeWriter()
        }
    }

    private func enqueueWithoutWaiting(_ encoded: Encoded, sync: AuditSync) {
        pending.append(Queued(encoded: encoded, sync: sync, continuation: nil))
        wakeWriter()
    }

    /// Queues a `batched` outcome; refused at once when the log already refuses appends.
    private func enqueueOutcome(_ encoded: Encoded) throws(AuditUnavailable) {
        if let refusal = latched ?? syncFailed {
            if let intent = encoded.intentSeq { lostOutcomes.withLock { _ = $0.insert(intent) } }
            throw refusal
        }
        pending.append(Queued(encoded: encoded, sync: .batched, continuation: nil))
        wakeWriter()
    }

    /// Resumes the parked writer, or starts it. Records queued before it runs join its next commit.
    ///
    /// The writer is a task per burst, not a service: it runs on the log's own thread (the actor's
    /// executor, ``AuditThread``), ends when nothing is pending and nothing is left to sync, and
    /// every append that waits for its record waits for its commit; ``checkpoint()`` (the last
    /// thing `serve` does) commits whatever is still queued. A log opened by a CLI command or a
    /// test runs in no service group.
    private func wakeWriter() {
        if let parked {
            self.parked = nil
            parked.resume()
        } else if !writing {
            writing = true
            Task { await self.runWriter() }
        }
    }

    /// The writer loop: commits everything pending, batch after batch; while `batched` commits are
    /// unsynced it stays, parked, until the WAL sync falls due or new records wake it. So the sync
    /// timer has one owner, the writer, and ends with the last unsynced commit.
    private func runWriter() async {
        while true {
            commitPendingNow()
            guard let since = unsyncedSince else { break }
            let due = since.advanced(by: syncInterval)
            if ContinuousClock.now >= due {
                syncWAL()
            } else {
                await park(until: due)
            }
        }
        writing = false
    }

    /// Waits until `due` or until ``wakeWriter()``, whichever comes first. The sleeping child is
    /// cancelled when records arrive first; the group waits for it, so it never wakes a later park.
    private func park(until due: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(until: due, clock: .continuous)
                await self.unpark()
            }
            await withCheckedContinuation { continuation in
                if pending.isEmpty { parked = continuation } else { continuation.resume() }
            }
            group.cancelAll()
        }
    }

    private func unpark() {
        if let parked {
            self.parked = nil
            parked.resume()
        }
    }

    /// The body of the writer, also run by ``checkpoint()`` so a checkpoint covers every record
    /// queued before it (``appendWithoutWaiting(_:)`` records may still be waiting).
    private func commitPendingNow() {
        while !pending.isEmpty {
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            // One record that must be synced makes the whole group commit a synced one.
            let sync: AuditSync = batch.contains { $0.sync == .full } ? .full : .batched
            let failure: AuditUnavailable
            if let refusal = latched ?? syncFailed {
                failure = refusal
            } else {
                do {
                    let started = ContinuousClock.now
                    let written = try insertFreeingReserve(batch.map(\.encoded), sync: sync)
                    if let metrics = metrics.withLock({ $0 }) {
                        metrics.auditCommitted(
                            records: batch.count, seconds: LeaseholdMetrics.seconds(ContinuousClock.now - started))
                    }
                    head = written.head
                    lastCheckpointSeq = written.checkpoint ?? lastCheckpointSeq
                    committed(sync)
                    for (index, queued) in batch.enumerated() {
                        queued.continuation?.resume(returning: .success(written.seqs[index]))
                    }
                    continue
                } catch {
                    writerSync = nil
                    failure = refuse(after: error)
                }
            }
            let lost = batch.compactMap(\.encoded.intentSeq)
            if !lost.isEmpty { lostOutcomes.withLock { $0.formUnion(lost) } }
            for queued in batch { queued.continuation?.resume(returning: .failure(failure)) }
        }
        let waiters = commitWaiters
        commitWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// Inserts a batch; when the disk is full (`SQLITE_FULL`) and the reserve handler frees space,
    /// once more, with a record saying so. SQLite rolls back a transaction that failed for a full
    /// disk whole, so nothing acknowledged is in doubt and the retry continues the same chain.
    private func insertFreeingReserve(_ encoded: [Encoded], sync: AuditSync) throws
        -> (seqs: [Int64], head: ChainHead, checkpoint: Int64?)
    {
        do {
            return try insert(encoded, sync: sync, after: head, lastCheckpoint: lastCheckpointSeq)
        } catch let error as DatabaseError where error.resultCode.primaryResultCode == .SQLITE_FULL {
            guard let diskFull, diskFull() else { throw error }
            writerSync = nil
            var released = AuditEvent("audit.reserve_released")
            released.detail =
                "an audit write failed for a full disk; released the audit reserve and wrote again; workspaces on the state directory's filesystem may not grow until space is freed"
            logger.error(
                "audit write hit a full disk: reserve released, write retried", metadata: ["path": "\(path)"])
            guard let note = encode(released) else { throw error }
            let written = try insert(encoded + [note], sync: sync, after: head, lastCheckpoint: lastCheckpointSeq)
            return (Array(written.seqs.prefix(encoded.count)), written.head, written.checkpoint)
        }
    }

    /// Called when a write fails for a full disk: frees the audit reserve and says whether it did
    /// (see ``AuditReserve``). Nil: such a failure latches the log like any other.
    private var diskFull: (@Sendable () -> Bool)?

    /// Sets the handler that frees space when a write fails for a full disk.
    public func onDiskFull(_ handler: @escaping @Sendable () -> Bool) { diskFull = handler }

    /// Returns once every record queued so far (``appendWithoutWaiting(_:sync:)``, `batched`
    /// outcomes) has been through a commit, written or refused. Waits on the writer, which was
    /// woken when they were queued; it syncs nothing.
    func waitUntilCommitted() async {
        if !pending.isEmpty {
            await withCheckedContinuation { commitWaiters.append($0) }
        }
    }

    /// Accounts for a commit just written with `sync`.
    private func committed(_ sync: AuditSync) {
        committedBatches += 1
        writerSync = sync
        switch sync {
        case .full:
            // The commit's fsync of the WAL covers every frame written before it, too.
            markSynced()
        case .batched:
            unsyncedCommits += 1
            if unsyncedSince == nil { unsyncedSince = .now }
            // A commit made outside the writer loop (``checkpoint()``) still gets its sync timer.
            if !writing { wakeWriter() }
        }
    }

    private func markSynced() {
        unsyncedCommits = 0
        unsyncedSince = nil
        let waiters = syncWaiters
        syncWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// Makes every commit so far durable with one fsync of the WAL, done through SQLite's own
    /// handle of the file (`SQLITE_FCNTL_JOURNAL_POINTER`) on the writer connection, as a `FULL`
    /// commit would. A failure is remembered: see ``syncFailed``.
    private func syncWAL() {
        guard unsyncedCommits > 0 else { return }
        // After a failed sync nothing is retried (see ``syncFailed``), but the accounting is
        // cleared so the writer loop ends and waiters learn of the failure.
        if syncFailed == nil {
            do {
                if let postgres {
                    try postgres.syncWAL()
                } else {
                    try pool.writeWithoutTransaction { db in try Self.syncJournal(db) }
                }
                walSyncCount += 1
            } catch {
                let consequence =
                    "records acknowledged in the last \(syncInterval) may be lost on a power failure and nothing "
                    + "more is appended"
                syncFailed = AuditUnavailable(
                    description: "the audit log could not be synced to disk (\(error)); \(consequence)",
                    message: "the audit log could not be synced to disk; \(consequence)")
                logger.error(
                    "audit WAL sync failed; refusing every audited action until an operator restarts",
                    metadata: ["path": "\(path)", "error": "\(logDescription(of: error))"])
            }
        }
        markSynced()
    }

    /// fsyncs the writer connection's WAL file.
    private static func syncJournal(_ db: Database) throws {
        var file: UnsafeMutablePointer<sqlite3_file>?
        let found = sqlite3_file_control(db.sqliteConnection, "main", SQLITE_FCNTL_JOURNAL_POINTER, &file)
        guard found == SQLITE_OK, let file, let xSync = file.pointee.pMethods?.pointee.xSync else {
            throw DatabaseError(
                resultCode: ResultCode(rawValue: found == SQLITE_OK ? SQLITE_MISUSE : found),
                message: "the writer has no open WAL file to sync")
        }
        let synced = xSync(file, SQLITE_SYNC_NORMAL)
        guard synced == SQLITE_OK else {
            throw DatabaseError(resultCode: ResultCode(rawValue: synced), message: "fsync of the WAL failed")
        }
    }

    /// Runs `body` in one write transaction on the writer's own thread, committed with `sync`'s
    /// durability. `PRAGMA synchronous` cannot change inside a transaction, so it is set before,
    /// and only when it differs from what the writer last had.
    private nonisolated func transaction<T>(sync: AuditSync, writerSync: AuditSync?, _ body: (Database) throws -> T)
        throws -> T
    {
        try pool.writeWithoutTransaction { db in
            if sync != writerSync {
                try db.execute(sql: sync == .full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")
            }
            var result: T?
            try db.inTransaction {
                result = try body(db)
                return .commit
            }
            // inTransaction runs the body once and rethrows its error: on this line it has run.
            return result!
        }
    }

    /// Turns a failed write into the callers' error and latches the log (see ``latched``).
    ///
    /// Not latched: `SQLITE_BUSY` / `SQLITE_LOCKED`, the write lock held by another process past the
    /// busy timeout. The transaction never wrote (or was rolled back whole), nothing acknowledged is
    /// in doubt, and latching would let any process that can open the file for reading and hold
    /// a lock — an operator's `sqlite3`, a slow CLI command — stop every tenant's calls until a
    /// restart. Nor `SQLITE_FULL` once the reserve is gone (``insertFreeingReserve(_:sync:)``): SQLite
    /// rolls a transaction that failed for a full disk back whole (the WAL frames it managed to
    /// append carry no commit mark, so no reader sees them and the next commit overwrites them), so
    /// the records of that commit are refused and the log takes records again once space is back
    /// (the next commit's ``continuedHead(_:from:)`` still checks that the chain is where this log
    /// left it, and latches if not). A failed WAL fsync stays latched (``syncFailed``). Every other
    /// failure may have left the file or the page cache in a state the log cannot vouch for (I/O
    /// error, corruption, a constraint or trigger, a moved chain).
    ///
    /// On PostgreSQL, not latched either: a commit that wrote nothing for certain
    /// (``AuditPostgres/Failure/notWritten``: no connection could be had, the connection was lost
    /// before COMMIT was sent — the server aborts such a transaction —, or another node held the
    /// append lock past `lock_timeout`). Latched: a commit whose COMMIT got no answer (it may have
    /// committed), and every error the server gave for the trail itself (a constraint, a
    /// permission, a moved chain).
    private func refuse(after error: any Error) -> AuditUnavailable {
        if let failure = error as? AuditPostgres.Failure, failure.notWritten, latched == nil {
            logger.warning(
                "audit write refused: the PostgreSQL store could not be reached or lost the connection before the commit; nothing was written",
                metadata: ["store": "\(path)", "error": "\(failure)"])
            return AuditUnavailable(
                description: "the audit store is unreachable (\(failure)); nothing was written",
                message: "the audit store is unreachable; nothing was written")
        }
        // On PostgreSQL every other failure latches like on SQLite: judged by what it wraps.
        let error: any Error =
            if let failure = error as? AuditPostgres.Failure {
                failure.underlying is AuditChainMoved ? failure.underlying : failure
            } else { error }
        if let database = error as? DatabaseError,
            database.resultCode == .SQLITE_BUSY || database.resultCode == .SQLITE_LOCKED
        {
            logger.warning(
                "audit write refused: another process held the audit database's lock past the busy timeout",
                metadata: ["path": "\(path)", "error": "\(logDescription(of: error))"])
            return AuditUnavailable(
                description: "the audit log is locked by another process (\(error)); nothing was written",
                message: "the audit log is locked by another process; nothing was written")
        }
        if let database = error as? DatabaseError, database.resultCode.primaryResultCode == .SQLITE_FULL,
            latched == nil
        {
            logger.warning(
                "audit write refused: the audit database's filesystem is full; nothing was written, records are taken again once space is freed",
                metadata: ["path": "\(path)", "error": "\(logDescription(of: error))"])
            return AuditUnavailable(
                description: "the audit log's filesystem is full (\(error)); nothing was written",
                message: "the audit log's filesystem is full; nothing was written")
        }
        if let latched { return latched }
        let reason: AuditUnavailable
        if let moved = error as? AuditChainMoved {
            reason = AuditUnavailable(
                description:
                    "the audit log was changed behind the runner's back (\(moved)); nothing more is appended to it")
            logger.error(
                "audit log changed behind the runner's back; refusing every audited action until an operator restarts",
                metadata: ["path": "\(path)", "detail": "\(moved)"])
        } else {
            let consequence = "nothing more is appended to it until the runner is restarted"
            reason = AuditUnavailable(
                description: "the audit log could not be written (\(error)); \(consequence)",
                message: "the audit log could not be written; \(consequence)")
            logger.error(
                "audit write failed; refusing every audited action until an operator restarts",
                metadata: ["path": "\(path)", "error": "\(logDescription(of: error))"])
        }
        latched = reason
        return reason
    }

    /// Why appends are refused, or nil while the log takes them.
    public var unavailableReason: String? { (latched ?? syncFailed)?.description }

    /// Chains and inserts a batch in one transaction, on the writer's own thread (awaiting GRDB's
    /// queue instead costs two thread hand-offs per commit, more than the commit on a small
    /// machine). Writes a checkpoint in the same transaction when `checkpointEvery` records or more
    /// follow the last one.
    private func insert(_ encoded: [Encoded], sync: AuditSync, after expected: ChainHead, lastCheckpoint: Int64)
        throws -> (seqs: [Int64], head: ChainHead, checkpoint: Int64?)
    {
        let checkpointEvery = checkpointEvery
        let signer = signer
        if let postgres {
            return try postgres.transaction(synchronous: sync == .full) { connection in
                var current = try postgres.continuedHead(connection, from: expected)
                var rows: [(seq: Int64, encoded: Encoded, previous: String, hash: String)] = []
                rows.reserveCapacity(encoded.count)
                for record in encoded {
                    let seq = current.seq + 1
                    let hash = AuditRecord.chainHash(previous: current.hash, seq: seq, body: record.body)
                    rows.append((seq, record, current.hash, hash))
                    current = ChainHead(seq: seq, hash: hash)
                }
                try postgres.insert(connection, rows)
                var checkpoint: Int64?
                if current.seq - lastCheckpoint >= checkpointEvery, let signer {
                    try postgres.writeCheckpoint(connection, Self.signedCheckpoint(head: current, signer: signer))
                    checkpoint = current.seq
                }
                return (rows.map { $0.seq }, current, checkpoint)
            }
        }
        return try transaction(sync: sync, writerSync: writerSync) { db in
            var current = try Self.continuedHead(db, from: expected)
            var seqs: [Int64] = []
            seqs.reserveCapacity(encoded.count)
            let insert = try db.cachedStatement(
                sql: """
                    INSERT INTO audit (seq, time, tenant, session, event, body, prev_hash, hash, intent_seq)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
            for record in encoded {
                let seq = current.seq + 1
                let hash = AuditRecord.chainHash(previous: current.hash, seq: seq, body: record.body)
                try insert.execute(arguments: [
                    seq, record.time, record.tenant, record.session, record.event, record.body, current.hash, hash,
                    record.intentSeq,
                ])
                current = ChainHead(seq: seq, hash: hash)
                seqs.append(seq)
            }
            var checkpoint: Int64?
            if current.seq - lastCheckpoint >= checkpointEvery, let signer {
                try Self.writeCheckpoint(db, head: current, signer: signer)
                checkpoint = current.seq
            }
            return (seqs, current, checkpoint)
        }
    }

    /// The stored head, provided it continues the chain from `expected`.
    ///
    /// The common case costs the one indexed read of the last row the writer needs anyway. The
    /// `leasehold` CLI on the same state directory may have appended since; its records are taken
    /// only if the record at `expected.seq` still has `expected.hash` and every later record
    /// chains from it. Anything else — the last record gone, a different hash at the head, records
    /// after it that do not chain — means the file was changed behind this writer's back.
    private static func continuedHead(_ db: Database, from expected: ChainHead) throws -> ChainHead {
        try continuedHead(
            stored: storedHead(db), expected: expected,
            hashAt: { seq in try String.fetchOne(db, sql: "SELECT hash FROM audit WHERE seq = ?", arguments: [seq]) },
            recordsAfter: { seq in
                try Row.fetchAll(
                    db, sql: "SELECT seq, body, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq", arguments: [seq]
                ).map(record)
            })
    }

    /// The check of ``continuedHead(_:from:)``, for either storage: `stored` is the head found,
    /// `hashAt` the stored hash of a record, `recordsAfter` the records after one, in order.
    /// On PostgreSQL the records after `expected` are other nodes' and must chain the same way.
    static func continuedHead(
        stored: ChainHead, expected: ChainHead, hashAt: (Int64) throws -> String?,
        recordsAfter: (Int64) throws -> [AuditRecord]
    ) throws -> ChainHead {
        if stored == expected { return stored }
        guard stored.seq > expected.seq else {
            throw AuditChainMoved(
                description:
                    "the last record is now \(stored.seq) with hash \(stored.hash.prefix(12))…, "
                    + "the runner last wrote \(expected.seq) with hash \(expected.hash.prefix(12))…")
        }
        if expected.seq > 0 {
            let hash = try hashAt(expected.seq)
            guard hash == expected.hash else {
                throw AuditChainMoved(
                    description:
                        "record \(expected.seq) now has hash \((hash ?? "none").prefix(12))…, "
                        + "the runner wrote \(expected.hash.prefix(12))…")
            }
        }
        var previous = expected
        for record in try recordsAfter(expected.seq) {
            guard record.seq == previous.seq + 1, record.previousHash == previous.hash,
                AuditRecord.chainHash(previous: previous.hash, seq: record.seq, body: record.body) == record.hash
            else {
                throw AuditChainMoved(
                    description: "record \(record.seq), written by another process, does not chain from \(previous.seq)"
                )
            }
            previous = ChainHead(seq: record.seq, hash: record.hash)
        }
        return previous
    }

    private static func signedCheckpoint(head: ChainHead, signer: AuditSigningKey) throws -> AuditCheckpoint {
        try AuditCheckpoint.sign(seq: head.seq, headHash: head.hash, time: Date().formatted(timeFormat), with: signer)
    }

    private static func writeCheckpoint(_ db: Database, head: ChainHead, signer: AuditSigningKey) throws {
        let checkpoint = try signedCheckpoint(head: head, signer: signer)
        try db.cachedStatement(
            sql: """
                INSERT OR REPLACE INTO checkpoints (seq, head_hash, record_count, time, key_id, signature)
                VALUES (?, ?, ?, ?, ?, ?)
                """
        ).execute(
            arguments: [
                checkpoint.seq, checkpoint.headHash, checkpoint.seq, checkpoint.time, checkpoint.keyID,
                checkpoint.signature,
            ])
    }

    /// Signs the current head if records follow the last checkpoint (the timer's and shutdown's
    /// call). Commits queued records first, and checks the stored chain like an append does. The
    /// checkpoint is a synced commit; without one to write, unsynced commits are synced anyway, so
    /// the final call at shutdown leaves nothing unsynced.
    ///
    /// - Returns: the covered record, or nil when there was nothing new to sign or no key.
    /// - Throws: ``AuditUnavailable`` when the log cannot be written or was changed behind its back.
    @discardableResult
    public func checkpoint() throws(AuditUnavailable) -> Int64? {
        commitPendingNow()
        if let refusal = latched ?? syncFailed { throw refusal }
        guard let signer else {
            try sync()
            return nil
        }
        let expected = head
        let lastCheckpoint = lastCheckpointSeq
        let covered: ChainHead?
        let write = { (writerSync: AuditSync?) throws -> ChainHead? in
            if let postgres = self.postgres {
                return try postgres.transaction(synchronous: true) { connection -> ChainHead? in
                    let current = try postgres.continuedHead(connection, from: expected)
                    guard current.seq > lastCheckpoint else { return nil }
                    try postgres.writeCheckpoint(connection, Self.signedCheckpoint(head: current, signer: signer))
                    return current
                }
            }
            return try self.transaction(sync: .full, writerSync: writerSync) { db -> ChainHead? in
                let current = try Self.continuedHead(db, from: expected)
                guard current.seq > lastCheckpoint else { return nil }
                try Self.writeCheckpoint(db, head: current, signer: signer)
                return current
            }
        }
        do {
            do {
                covered = try write(writerSync)
            } catch let error as DatabaseError where error.resultCode.primaryResultCode == .SQLITE_FULL {
                // As for records (``insertFreeingReserve(_:sync:)``): free the reserve, write
                // again, and say so in the next commit.
                guard let diskFull, diskFull() else { throw error }
                var released = AuditEvent("audit.reserve_released")
                released.detail =
                    "an audit checkpoint failed for a full disk; released the audit reserve and wrote again; workspaces on the state directory's filesystem may not grow until space is freed"
                if let note = encode(released) {
                    pending.append(Queued(encoded: note, sync: .full, continuation: nil))
                    wakeWriter()
                }
                covered = try write(nil)
            }
        } catch {
            writerSync = nil
            throw refuse(after: error)
        }
        writerSync = .full
        guard let covered else {
            try sync()
            return nil
        }
        markSynced()
        head = covered
        lastCheckpointSeq = covered.seq
        return covered.seq
    }

    /// Commits queued records and fsyncs every commit not yet synced (no I/O when there is none).
    ///
    /// - Throws: ``AuditUnavailable`` when the log cannot be written or synced.
    public func sync() throws(AuditUnavailable) {
        commitPendingNow()
        syncWAL()
        if let refusal = latched ?? syncFailed { throw refusal }
    }

    /// Returns once every commit made so far is synced: by a synced commit, the writer's timed WAL
    /// sync or ``sync()``. Waits on the writer, not on a clock.
    ///
    /// - Throws: ``AuditUnavailable`` when the sync failed.
    public func waitUntilSynced() async throws(AuditUnavailable) {
        if unsyncedCommits > 0 {
            await withCheckedContinuation { syncWaiters.append($0) }
        }
        if let syncFailed { throw syncFailed }
    }

    /// Commits written with `synchronous = NORMAL` that no fsync covers yet.
    public var unsyncedCommitCount: Int { unsyncedCommits }

    /// WAL syncs the log made on its own for `batched` commits (synced commits not counted).
    public var walSyncs: Int { walSyncCount }

    /// Records written but not yet covered by a checkpoint, as far as this log knows.
    public var unsignedRecords: Int64 { head.seq - lastCheckpointSeq }

    /// The number of commits (transactions) so far: appends per commit shows group commit at work.
    public var commits: Int { committedBatches }

    // MARK: Reading

    /// Records matching the filters, oldest first.
    public nonisolated func records(
        tenant: String? = nil, session: String? = nil, since: Date? = nil, afterSeq: Int64 = 0, limit: Int = 1000
    ) throws -> [AuditRecord] {
        var clauses = ["seq > ?"]
        var arguments: [any DatabaseValueConvertible] = [afterSeq]
        if let tenant {
            clauses.append("tenant = ?")
            arguments.append(tenant)
        }
        if let session {
            clauses.append("session = ?")
            arguments.append(session)
        }
        if let since {
            clauses.append("time >= ?")
            arguments.append(since.formatted(AuditLog.timeFormat))
        }
        if let postgres {
            return try postgres.records(
                tenant: tenant, session: session, since: since?.formatted(AuditLog.timeFormat), afterSeq: afterSeq,
                limit: limit)
        }
        let sql =
            "SELECT seq, body, prev_hash, hash FROM audit WHERE \(clauses.joined(separator: " AND ")) ORDER BY seq LIMIT ?"
        arguments.append(limit)
        return try pool.read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map(Self.record)
        }
    }

    /// The last `count` records, oldest first.
    public nonisolated func tail(_ count: Int) throws -> [AuditRecord] {
        if let postgres { return try postgres.tail(count) }
        return try pool.read { db in
            try Row.fetchAll(
                db, sql: "SELECT seq, body, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT ?", arguments: [count]
            ).map(Self.record).reversed()
        }
    }

    static func record(_ row: Row) -> AuditRecord {
        AuditRecord(seq: row["seq"], body: row["body"], previousHash: row["prev_hash"], hash: row["hash"])
    }

    /// The result of checking the chain.
    public enum Verification: Sendable, Equatable {
        /// Every record is in place and unaltered.
        case ok(records: Int64, head: String)
        /// The first record that breaks the chain, and how.
        case broken(seq: Int64, reason: String)
    }

    /// The public half of the key signing this runner's checkpoints; nil when it signs none.
    public nonisolated var checkpointPublicKey: AuditPublicKey? { signer?.publicKey }

    /// Walks the whole log: consecutive sequence numbers from 1, each record's `prev_hash` equal to
    /// the previous record's hash, each hash recomputed from its contents. Any edit, deletion,
    /// insertion or reordering breaks one of the three. (Cutting records off the end leaves a
    /// shorter valid chain: compare the printed head with one recorded elsewhere to catch that.)
    public nonisolated func verify() throws -> Verification {
        var walk = ChainWalk()
        if let postgres {
            try postgres.forEachRecord { record in walk.add(record) }
            return walk.result
        }
        return try pool.read { db in
            let cursor = try Row.fetchCursor(db, sql: "SELECT seq, body, prev_hash, hash FROM audit ORDER BY rowid")
            while let row = try cursor.next() {
                guard walk.add(Self.record(row)) else { break }
            }
            return walk.result
        }
    }

    /// ``verify()``'s walk, record by record in stored order.
    struct ChainWalk {
        private var expectedSeq: Int64 = 1
        private var previous = AuditLog.genesis
        private var broken: Verification?

        /// Checks the next record; false once the chain is broken (the walk can stop).
        mutating func add(_ record: AuditRecord) -> Bool {
            guard broken == nil else { return false }
            guard record.seq == expectedSeq else {
                broken = .broken(
                    seq: record.seq,
                    reason:
                        "expected record \(expectedSeq) here, found \(record.seq) (a record was deleted, inserted or moved)"
                )
                return false
            }
            guard record.previousHash == previous else {
                broken = .broken(seq: record.seq, reason: "prev_hash does not match record \(record.seq - 1)'s hash")
                return false
            }
            guard AuditRecord.chainHash(previous: previous, seq: record.seq, body: record.body) == record.hash else {
                broken = .broken(
                    seq: record.seq, reason: "contents do not match the record's hash (the record was edited)")
                return false
            }
            previous = record.hash
            expectedSeq += 1
            return true
        }

        var result: Verification { broken ?? .ok(records: expectedSeq - 1, head: previous) }
    }

    /// Every checkpoint, oldest first.
    public nonisolated func checkpoints() throws -> [AuditCheckpoint] {
        if let postgres { return try postgres.checkpoints() }
        return try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, head_hash, time, key_id, signature FROM checkpoints ORDER BY seq")
                .map(Self.checkpoint)
        }
    }

    /// Checks every checkpoint against `publicKey` and against the record it covers.
    ///
    /// A checkpoint fails when its signature is not `publicKey`'s, or when its record is gone or
    /// no longer has the signed hash — which is what a rewrite of covered records looks like even
    /// when the chain itself was recomputed and ``verify()`` passes.
    public nonisolated func verifyCheckpoints(publicKey: AuditPublicKey) throws -> CheckpointReport {
        if let postgres {
            var report = CheckpointReport()
            report.records = try postgres.head().seq
            for (checkpoint, stored) in try postgres.checkpointsWithStoredHash() {
                report.check(checkpoint, storedHash: stored, publicKey: publicKey)
            }
            return report
        }
        return try pool.read { db in
            var report = CheckpointReport()
            report.records = try Self.storedHead(db).seq
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT c.seq, c.head_hash, c.time, c.key_id, c.signature, a.hash AS stored_hash
                    FROM checkpoints c LEFT JOIN audit a ON a.seq = c.seq ORDER BY c.seq
                    """)
            while let row = try rows.next() {
                report.check(Self.checkpoint(row), storedHash: row["stored_hash"], publicKey: publicKey)
            }
            return report
        }
    }
}

extension CheckpointReport {
    /// Checks one checkpoint against `publicKey` and the hash its record has now (nil: gone).
    mutating func check(_ checkpoint: AuditCheckpoint, storedHash stored: String?, publicKey: AuditPublicKey) {
        checkpoints += 1
        if checkpoint.keyID != publicKey.keyID {
            failures.append(
                "checkpoint at record \(checkpoint.seq) was signed by key \(checkpoint.keyID), "
                    + "not by the given public key \(publicKey.keyID)")
        } else if !checkpoint.isSigned(by: publicKey) {
            failures.append(
                "checkpoint at record \(checkpoint.seq): the signature does not verify "
                    + "(the checkpoint was forged or edited)")
        } else if let stored, stored != checkpoint.headHash {
            failures.append(
                "checkpoint mismatch at record \(checkpoint.seq): the checkpoint signed hash "
                    + "\(checkpoint.headHash.prefix(16))… but the record now has \(stored.prefix(16))… "
                    + "(records up to \(checkpoint.seq) were rewritten)")
        } else if stored == nil {
            failures.append(
                "checkpoint mismatch at record \(checkpoint.seq): the log has no record \(checkpoint.seq) "
                    + "(records covered by a signed checkpoint were deleted)")
        } else {
            lastCoveredSeq = max(lastCoveredSeq, checkpoint.seq)
        }
    }
}

extension AuditEvent {
    /// The record of a worker's spawn or destruction (invariant 9: worker id, isolation, reason).
    public init(worker: WorkerEvent) {
        self.init(worker.kind.rawValue)
        tenant = worker.tenantID
        actor = worker.actorID
        session = worker.sessionID
        lease = worker.leaseID
        workspace = worker.workspaceID
        tier = worker.tier
        isolation = worker.isolation.rawValue
        workerID = worker.workerID
        decision = worker.kind == .spawnFailed ? "refused" : nil
        code = worker.reason?.rawValue ?? (worker.kind == .spawnFailed ? "worker_unavailable" : nil)
        detail = worker.detail.map { String($0.prefix(512)) }
    }
}

extension AuditLog {
    /// The writer connection's `PRAGMA synchronous` (2 = FULL: every commit is synced).
    public func writerSynchronousSetting() throws -> Int {
        guard postgres == nil else { return writerSync == .batched ? 1 : 2 }
        return try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }
}
