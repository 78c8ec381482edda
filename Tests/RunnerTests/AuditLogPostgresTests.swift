import Foundation
import Logging
import NIOCore
import PostgresNIO
import Testing

@testable import Runner

/// The audit trail in a PostgreSQL database shared by several nodes (issue 16): one chain ordered
/// by the database, fail-closed on every node. Each test has a fresh database on the process's
/// throwaway server (``ThrowawayPostgres``); a "node" is an ``AuditLog`` with its own connections.
@Suite struct AuditLogPostgresTests {
    static func event(_ kind: String, _ request: String, node: String? = nil) -> AuditEvent {
        var event = AuditEvent(kind)
        event.requestID = request
        event.session = "s-" + request
        event.tool = "fs.read"
        event.node = node
        return event
    }

    /// Appends `count` records from `concurrency` tasks, alternating `full` and `batched`; returns
    /// the acknowledged (seq, request id) pairs and the failures.
    static func load(
        _ log: AuditLog, prefix: String, count: Int, concurrency: Int = 20,
        onAcknowledged: @escaping @Sendable () -> Void = {}
    ) async -> (acknowledged: [(Int64, String)], failed: [AuditUnavailable]) {
        await withTaskGroup(of: (acknowledged: [(Int64, String)], failed: [AuditUnavailable]).self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var result: (acknowledged: [(Int64, String)], failed: [AuditUnavailable]) = ([], [])
                    for index in stride(from: worker, to: count, by: concurrency) {
                        let request = "\(prefix)-\(index)"
                        do throws(AuditUnavailable) {
                            let seq = try await log.append(
                                event("admin.test", request), sync: index % 2 == 0 ? .full : .batched)
                            result.acknowledged.append((seq, request))
                            onAcknowledged()
                        } catch {
                            result.failed.append(error)
                        }
                    }
                    return result
                }
            }
            var total: (acknowledged: [(Int64, String)], failed: [AuditUnavailable]) = ([], [])
            for await part in group {
                total.acknowledged += part.acknowledged
                total.failed += part.failed
            }
            return total
        }
    }

    /// Every acknowledged record is stored at its seq with its request id.
    static func expectStored(_ acknowledged: [(Int64, String)], in log: AuditLog) throws {
        var stored: [Int64: String] = [:]
        var after: Int64 = 0
        while true {
            let page = try log.records(afterSeq: after, limit: 1000)
            for record in page { stored[record.seq] = record.event?.requestID }
            guard let last = page.last else { break }
            after = last.seq
        }
        for (seq, request) in acknowledged {
            #expect(stored[seq] == request, "acknowledged record \(seq) (\(request)) is stored")
        }
    }

    @Test(.timeLimit(.minutes(1))) func threeNodesAppendConcurrentlyIntoOneVerifiedChain() async throws {
        let location = try ThrowawayPostgres.freshDatabase()
        let key = AuditSigningKey()
        let nodes = try ["n1", "n2", "n3"].map {
            try AuditLog(postgres: location, node: $0, signer: key, checkpointEvery: 128)
        }
        // One node alone first, for the figure: records/s with one writer, then with three.
        let started = ContinuousClock.now
        let alone = await Self.load(nodes[0], prefix: "solo", count: 300)
        let soloTime = ContinuousClock.now - started
        #expect(alone.failed.isEmpty)
        let together = ContinuousClock.now
        let results = await withTaskGroup(of: (String, [(Int64, String)], Int).self) { group in
            for log in nodes {
                group.addTask {
                    let result = await Self.load(log, prefix: log.node, count: 300)
                    return (log.node, result.acknowledged, result.failed.count)
                }
            }
            var all: [(String, [(Int64, String)], Int)] = []
            for await result in group { all.append(result) }
            return all
        }
        let clusterTime = ContinuousClock.now - together
        let acknowledged = alone.acknowledged + results.flatMap(\.1)
        #expect(results.allSatisfy { $0.2 == 0 }, "no append failed")
        #expect(acknowledged.count == 1200)
        #expect(Set(acknowledged.map(\.0)) == Set(1...1200), "consecutive, each seq acknowledged once")
        for log in nodes { try await log.checkpoint() }

        let reader = try AuditLog(postgres: location, node: "cli")
        guard case .ok(let count, let head) = try reader.verify() else {
            Issue.record("the chain does not verify: \(try reader.verify())")
            return
        }
        #expect(count == 1200)
        #expect(try head == reader.tail(1).first?.hash)
        try Self.expectStored(acknowledged, in: reader)
        // Each record carries the node that wrote it.
        let byNode = Dictionary(grouping: try reader.records(limit: 2000)) { $0.event?.node ?? "?" }
        #expect(byNode["n1"]?.count == 600 && byNode["n2"]?.count == 300 && byNode["n3"]?.count == 300)
        // Checkpoints written by every node (in commits and on checkpoint()) verify with the shared key.
        let report = try reader.verifyCheckpoints(publicKey: key.publicKey)
        #expect(report.failures.isEmpty)
        #expect(report.lastCoveredSeq == 1200)
        #expect(report.checkpoints >= 9)
        for log in nodes { #expect(await log.refusesAppends == false) }
        let solo = 300 / (Double(soloTime.components.seconds) + Double(soloTime.components.attoseconds) / 1e18)
        let cluster = 900 / (Double(clusterTime.components.seconds) + Double(clusterTime.components.attoseconds) / 1e18)
        print(
            "audit postgres: 1 writer \(Int(solo)) records/s, 3 writers \(Int(cluster)) records/s "
                + "(20 concurrent appenders per node, half full, half batched, beside the suite's other tests; commits: "
                + "\(await nodes[0].commits)/\(await nodes[1].commits)/\(await nodes[2].commits))")
    }

    /// A fresh trail of `count` records written by node `n1`, and a verifier.
    static func trail(_ count: Int) async throws -> (StoreLocation.PostgresLocation, AuditLog, AuditLog) {
        let location = try ThrowawayPostgres.freshDatabase()
        let writer = try AuditLog(postgres: location, node: "n1")
        for index in 1...count { try await writer.append(event("admin.test", String(index))) }
        return (location, writer, try AuditLog(postgres: location, node: "cli"))
    }

    @Test(.timeLimit(.minutes(1))) func verifyFindsAnEditedBody() async throws {
        let (location, _, reader) = try await Self.trail(8)
        try ThrowawayPostgres.psql(
            location, "UPDATE audit_records SET body = replace(body, '\"5\"', '\"55\"') WHERE seq = 5")
        #expect(
            try reader.verify()
                == .broken(seq: 5, reason: "contents do not match the record's hash (the record was edited)"))
    }

    @Test(.timeLimit(.minutes(1))) func verifyFindsADeletedRecord() async throws {
        let (location, _, reader) = try await Self.trail(8)
        try ThrowawayPostgres.psql(location, "DELETE FROM audit_records WHERE seq = 5")
        #expect(
            try reader.verify()
                == .broken(
                    seq: 6, reason: "expected record 5 here, found 6 (a record was deleted, inserted or moved)"))
    }

    @Test(.timeLimit(.minutes(1))) func verifyFindsSwappedRecords() async throws {
        let (location, _, reader) = try await Self.trail(8)
        try ThrowawayPostgres.psql(
            location,
            """
            BEGIN; UPDATE audit_records SET seq = -4 WHERE seq = 4; UPDATE audit_records SET seq = 4 WHERE seq = 6;
            UPDATE audit_records SET seq = 6 WHERE seq = -4; COMMIT;
            """)
        #expect(try reader.verify() == .broken(seq: 4, reason: "prev_hash does not match record 3's hash"))
    }

    /// Node n1 last knew record 10; n2 appended 11-15; someone edits record 12. n1's next commit
    /// walks 11-15 to continue the chain, finds 12 does not chain, and latches: that append and
    /// every later one fail, on that node, until a restart.
    @Test(.timeLimit(.minutes(1))) func aRunningNodeLatchesOnRecordsChangedBehindItsBack() async throws {
        let (location, first, _) = try await Self.trail(10)
        let second = try AuditLog(postgres: location, node: "n2")
        for index in 11...15 { try await second.append(Self.event("admin.test", String(index))) }
        try ThrowawayPostgres.psql(
            location, "UPDATE audit_records SET body = replace(body, '\"12\"', '\"120\"') WHERE seq = 12")
        await #expect {
            try await first.append(Self.event("admin.test", "16"))
        } throws: { error in
            (error as? AuditUnavailable)?.description.contains("changed behind the runner's back") == true
        }
        #expect(await first.refusesAppends)
        await #expect(throws: AuditUnavailable.self) { try await first.append(Self.event("admin.test", "17")) }
        // n2's head is the stored head; cut it off and n2 latches too.
        try ThrowawayPostgres.psql(location, "DELETE FROM audit_records WHERE seq = 15")
        await #expect(throws: AuditUnavailable.self) { try await second.append(Self.event("admin.test", "18")) }
        #expect(await second.refusesAppends)
        #expect(try ThrowawayPostgres.psql(location, "SELECT max(seq) FROM audit_records") == "14")
    }

    /// The database refuses connections (as a stopped server does) and the node's connection is
    /// killed: appends fail with AuditUnavailable, saying nothing was written, and are not latched;
    /// once connections are allowed again the same node appends on, continuing the chain.
    @Test(.timeLimit(.minutes(1))) func anUnreachableDatabaseRefusesAppendsWithoutLatching() async throws {
        let (location, writer, reader) = try await Self.trail(3)
        var server = location
        server.database = "postgres"
        try ThrowawayPostgres.psql(server, "ALTER DATABASE \(location.database) ALLOW_CONNECTIONS false")
        try ThrowawayPostgres.psql(
            server,
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE datname = '\(location.database)'"
        )
        for index in 4...5 {
            await #expect {
                try await writer.append(Self.event("admin.test", String(index)))
            } throws: { error in
                (error as? AuditUnavailable)?.description.contains("nothing was written") == true
            }
        }
        #expect(await writer.refusesAppends == false)
        try ThrowawayPostgres.psql(server, "ALTER DATABASE \(location.database) ALLOW_CONNECTIONS true")
        #expect(try await writer.append(Self.event("admin.test", "6")) == 4)
        #expect(try reader.verify() == .ok(records: 4, head: try reader.tail(1)[0].hash))
    }

    /// A COMMIT that fails is in doubt as far as the node knows, and a statement the server refuses
    /// says something about the trail: both latch, as a failed SQLite write does. Here a trigger
    /// deferred to COMMIT refuses it (the commit is answered with an error), and on a second trail
    /// a trigger refuses the INSERT itself.
    @Test(.timeLimit(.minutes(1))) func aFailedCommitOrARefusedInsertLatches() async throws {
        for timing in ["DEFERRABLE INITIALLY DEFERRED", "NOT DEFERRABLE"] {
            let (location, writer, reader) = try await Self.trail(2)
            try ThrowawayPostgres.psql(
                location,
                """
                CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$;
                CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON audit_records \(timing)
                    FOR EACH ROW EXECUTE FUNCTION refuse();
                """)
            await #expect {
                try await writer.append(Self.event("admin.test", "3"))
            } throws: { error in
                (error as? AuditUnavailable)?.description.contains("refused by a trigger") == true
            }
            #expect(await writer.refusesAppends, "\(timing): latched")
            try ThrowawayPostgres.psql(location, "DROP TRIGGER refuse ON audit_records")
            await #expect(throws: AuditUnavailable.self) { try await writer.append(Self.event("admin.test", "4")) }
            #expect(try reader.verify() == .ok(records: 2, head: try reader.tail(1)[0].hash))
        }
    }

    /// A statement the server does not answer within its limit is given up and its connection
    /// closed, never waited on for good. postgres-nio can leave a query on a backend the server
    /// terminated unanswered forever, and the writer blocks on each answer: before the limit, that
    /// stopped the trail (and hung CI in `connectionsKilledMidLoadLoseNothingAcknowledged`). A
    /// statement that takes longer than its limit stands in for the answer that never comes.
    @Test(.timeLimit(.minutes(1))) func aStatementWithoutAnAnswerIsGivenUpAtItsLimit() async throws {
        let location = try ThrowawayPostgres.freshDatabase()
        let logger = Logger(label: "test.audit")
        let connection = try await PostgresConnection.connect(
            configuration: PostgresConnection.Configuration(
                host: location.host, port: location.port, username: location.user, password: location.password,
                database: location.database, tls: .disable),
            id: 1, logger: logger)
        let outcome = Result {
            try AuditPostgres.run(connection, "SELECT pg_sleep(20)", logger: logger, limit: .milliseconds(300))
        }
        guard case .failure(let error) = outcome, error is AuditPostgres.Unanswered else {
            Issue.record("the statement was waited on past its limit: \(outcome)")
            try await connection.close()
            return
        }
        // The limit closed the connection: the caller drops it and the next statement gets a new one.
        try await connection.closeFuture.get()
        #expect(connection.isClosed)
    }

    /// Connections killed in the middle of a load: some appends fail, none that was acknowledged
    /// is missing, and the chain verifies.
    @Test(.timeLimit(.minutes(1))) func connectionsKilledMidLoadLoseNothingAcknowledged() async throws {
        let location = try ThrowawayPostgres.freshDatabase()
        let writer = try AuditLog(postgres: location, node: "n1")
        let (acknowledgements, acknowledged) = AsyncStream.makeStream(of: Void.self)
        async let loaded = Self.load(
            writer, prefix: "load", count: 1200, concurrency: 8, onAcknowledged: { acknowledged.yield() })
        // Kill the node's connections once 20 records are acknowledged (waits on the appends).
        var seen = 0
        for await _ in acknowledgements {
            seen += 1
            if seen == 20 { break }
        }
        let killed = try ThrowawayPostgres.psql(
            location,
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                + "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        let result = await loaded
        acknowledged.finish()
        #expect(Int(killed) ?? 0 >= 1, "the node's connection was killed")
        #expect(result.acknowledged.count + result.failed.count == 1200)
        print("audit postgres: connections killed mid-load: \(result.failed.count) of 1200 appends refused")
        let reader = try AuditLog(postgres: location, node: "cli")
        try Self.expectStored(result.acknowledged, in: reader)
        guard case .ok(let count, _) = try reader.verify() else {
            Issue.record("the chain does not verify: \(try reader.verify())")
            return
        }
        #expect(count >= Int64(result.acknowledged.count))
        // A commit whose COMMIT went unanswered latches (in doubt); otherwise the node goes on.
        if await writer.refusesAppends {
            #expect(await writer.unavailableReason?.contains("could not be written") == true)
        } else {
            #expect(try await writer.append(Self.event("admin.test", "after")) == count + 1)
        }
    }

    /// Outcome reporting per node: an intent of another live node is in flight, not unknown; once
    /// that node's connection is gone (a crash), it is unknown.
    @Test(.timeLimit(.minutes(1))) func intentsOfAnotherLiveNodeAreInFlightUntilItDies() async throws {
        let location = try ThrowawayPostgres.freshDatabase()
        let alpha = try AuditLog(postgres: location, node: "alpha")
        let beta = try AuditLog(postgres: location, node: "beta")
        try alpha.announceRunner()
        try beta.announceRunner()
        let running = try await alpha.append(Self.event("call.intent", "1"))
        let done = try await beta.append(Self.event("call.intent", "2"))
        try await beta.appendOutcome(Self.event("call.outcome", "2"), intent: done, sync: .full)

        let cli = try AuditLog(postgres: location, node: "cli")
        var report = try cli.callOutcomes()
        #expect(report.intents == 2)
        #expect(report.inFlight.map(\.seq) == [running])
        #expect(report.unknown.isEmpty)
        #expect(report.liveRunnerFrom == 0)
        let intents = try beta.records(limit: 10).filter { $0.event?.event == "call.intent" }
        #expect(try beta.outcomeStatuses(of: intents) == [running: .inFlight, done: .recorded(outcomeSeq: 3)])

        // alpha crashes: its backend goes, and with it its presence.
        try ThrowawayPostgres.psql(
            location, "SELECT pg_terminate_backend(backend_pid, 5000) FROM audit_runners WHERE node = 'alpha'")
        report = try cli.callOutcomes()
        #expect(report.unknown.map(\.seq) == [running])
        #expect(report.inFlight.isEmpty)
        #expect(try beta.outcomeStatuses(of: intents)[running] == .unknown)
        beta.retireRunner()
        #expect(try ThrowawayPostgres.psql(location, "SELECT count(*) FROM audit_runners WHERE node = 'beta'") == "0")
    }

    /// Four nodes starting at once migrate the audit tables once, under the migration lock.
    @Test(.timeLimit(.minutes(1))) func concurrentMigrationsApplyOnce() async throws {
        let location = try ThrowawayPostgres.freshDatabase()
        let opened = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<4 {
                group.addTask { (try? AuditLog(postgres: location, node: "n\(index)")) != nil }
            }
            var all: [Bool] = []
            for await result in group { all.append(result) }
            return all
        }
        #expect(opened == [true, true, true, true])
        #expect(try ThrowawayPostgres.psql(location, "SELECT string_agg(version, ',') FROM audit_migrations") == "v1")
    }

    /// A checkpoint that no longer matches its record makes a node opening the trail refuse appends
    /// from the start, as on SQLite.
    @Test(.timeLimit(.minutes(1))) func aRewrittenCheckpointedTrailIsRefusedAtOpen() async throws {
        let location = try ThrowawayPostgres.freshDatabase()
        let key = AuditSigningKey()
        let writer = try AuditLog(postgres: location, node: "n1", signer: key)
        for index in 1...3 { try await writer.append(Self.event("admin.test", String(index))) }
        #expect(try await writer.checkpoint() == 3)
        try ThrowawayPostgres.psql(location, "UPDATE audit_records SET hash = repeat('a', 64) WHERE seq = 3")
        let reopened = try AuditLog(postgres: location, node: "n2", signer: key)
        #expect(await reopened.refusesAppends)
        let report = try reopened.verifyCheckpoints(publicKey: key.publicKey)
        #expect(report.failures.count == 1 && report.failures[0].contains("checkpoint mismatch at record 3"))
    }
}
