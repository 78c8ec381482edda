import Foundation
import GRDB
import Logging
import MCP
import Sandbox
import ServiceLifecycle
import Testing

@testable import Runner

@Suite struct AuditLogTests {
    /// Found with strace: GRDB's WAL set-up lowered the writer to `synchronous = NORMAL` after our
    /// `FULL`, so commits were not synced (4 fsyncs in 400 commits) although the docs promised it.
    @Test func everyCommitIsSyncedByTheWriter() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1")
        #expect(try await log.writerSynchronousSetting() == 2)
        let store = try SQLiteStore(path: try temporaryPath())
        #expect(try await store.writerSynchronousSetting() == 2)
    }

    func temporaryPath() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-audit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/audit.sqlite"
    }

    /// `batched` appends return once committed: readable and chained at once, with no fsync of
    /// their own; the writer then syncs the WAL by itself within its interval (no one else calls
    /// anything that syncs here, so the wait ends only through the writer's timer).
    @Test(.timeLimit(.minutes(1))) func batchedAppendsAreCommittedChainedAndSyncedByTheWriter() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1", syncInterval: .milliseconds(5))
        for index in 1...20 {
            var event = AuditEvent("call.intent")
            event.requestID = String(index)
            #expect(try await log.append(event, sync: .batched) == Int64(index))
        }
        // Committed: another connection reads them, and the chain holds.
        let reader = try AuditLog(path: log.path, node: "reader")
        #expect(try reader.records(limit: 100).compactMap(\.event?.requestID) == (1...20).map(String.init))
        guard case .ok(let count, _) = try reader.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 20)
        #expect(try await log.writerSynchronousSetting() == 1, "batched commits run with synchronous = NORMAL")
        try await log.waitUntilSynced()
        #expect(await log.unsyncedCommitCount == 0)
        #expect(await log.walSyncs >= 1, "the writer synced the WAL on its own")
        #expect(await log.walSyncs <= 20)
    }

    /// A synced commit makes earlier `batched` commits durable too (its fsync covers the whole WAL),
    /// and an explicit sync does the same; neither leaves work for the writer's timer.
    @Test func aFullCommitOrAnExplicitSyncCoversEarlierBatchedCommits() async throws {
        // An interval far beyond the test: only the commits and calls below can sync.
        let log = try AuditLog(path: try temporaryPath(), node: "n1", syncInterval: .seconds(3600))
        try await log.append(AuditEvent("call.intent"), sync: .batched)
        try await log.append(AuditEvent("call.outcome"), sync: .batched)
        #expect(await log.unsyncedCommitCount == 2)
        #expect(try await log.writerSynchronousSetting() == 1)
        try await log.append(AuditEvent("session.created"))
        #expect(await log.unsyncedCommitCount == 0)
        #expect(try await log.writerSynchronousSetting() == 2, "a full record is a FULL commit")
        #expect(await log.walSyncs == 0)
        try await log.append(AuditEvent("call.intent"), sync: .batched)
        #expect(await log.unsyncedCommitCount == 1)
        try await log.sync()
        #expect(await log.unsyncedCommitCount == 0)
        #expect(await log.walSyncs == 1)
        try await log.waitUntilSynced()
        try await log.sync()
        #expect(await log.walSyncs == 1, "nothing unsynced: no fsync")
        // The checkpointer's call at shutdown leaves nothing unsynced, with or without a key.
        try await log.append(AuditEvent("call.outcome"), sync: .batched)
        #expect(try await log.checkpoint() == nil)
        #expect(await log.unsyncedCommitCount == 0)
        #expect(await log.walSyncs == 2)
        guard case .ok(let count, _) = try log.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 5)
    }

    /// Many callers with mixed settings share group commits and one chain; every record is there.
    @Test(.timeLimit(.minutes(1))) func mixedSyncSettingsShareOneChain() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1")
        let seqs = try await withThrowingTaskGroup(of: Int64.self) { group in
            for index in 0..<200 {
                group.addTask {
                    var event = AuditEvent("call.intent")
                    event.requestID = String(index)
                    return try await log.append(event, sync: index % 5 == 0 ? .full : .batched)
                }
            }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(Set(seqs) == Set(1...200))
        try await log.waitUntilSynced()
        #expect(await log.unsyncedCommitCount == 0)
        guard case .ok(let count, _) = try log.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 200)
    }

    /// The gateway writes both records of a call with the tier's `audit_sync` (shipped: read is
    /// batched, write is full) and refusals with full.
    @Test func theGatewayAuditsEachCallWithItsTiersSetting() async throws {
        let fixture = try await GatewayFixture(executor: InvocationRecorder())
        let (_, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c1")
        let audit = fixture.gateway.audit
        _ = try await fixture.gateway.call("repo.stat", arguments: ["path": "a"], in: context)
        #expect(try await audit.writerSynchronousSetting() == 1, "read tier: batched (NORMAL) commits")
        _ = try await fixture.gateway.call("repo.write_file", arguments: ["path": "a", "content": "x"], in: context)
        #expect(try await audit.writerSynchronousSetting() == 2, "write tier: FULL commits")
        _ = try await fixture.gateway.call("repo.stat", arguments: ["path": "a"], in: context)
        #expect(try await audit.writerSynchronousSetting() == 1)
        await #expect(throws: Refusal.self) {
            _ = try await fixture.gateway.call("nope.tool", arguments: [:], in: context)
        }
        #expect(try await audit.writerSynchronousSetting() == 2, "a refusal is a FULL commit")
        let kinds = try audit.records(limit: 100).compactMap(\.event).filter { $0.tool != nil }.map(\.event)
        #expect(kinds.filter { $0 == "call.intent" }.count == 3 && kinds.filter { $0 == "call.outcome" }.count == 3)
    }

    @Test func concurrentAppendsFormOneUnbrokenChain() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1")
        let seqs = try await withThrowingTaskGroup(of: Int64.self) { group in
            for index in 0..<300 {
                group.addTask {
                    var event = AuditEvent("call.intent")
                    event.tool = "repo.stat"
                    event.requestID = String(index)
                    return try await log.append(event)
                }
            }
            return try await group.reduce(into: [Int64]()) { $0.append($1) }
        }
        #expect(Set(seqs) == Set(1...300))
        guard case .ok(let count, _) = try log.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 300)
        let records = try log.records(limit: 300)
        #expect(Set(records.compactMap { $0.event?.requestID }).count == 300)
        #expect(records.allSatisfy { $0.event?.node == "n1" && $0.event?.time != nil })
        // Reopening continues the same chain.
        let reopened = try AuditLog(path: log.path, node: "n2")
        #expect(try await reopened.append(AuditEvent("session.created")) == 301)
        guard case .ok(let after, _) = try reopened.verify() else {
            Issue.record("chain broken after reopening")
            return
        }
        #expect(after == 301)
    }

    /// The server and a `leasehold` CLI command append to the same file: neither may reuse the
    /// other's sequence numbers or break the chain (the head is read in the write transaction).
    /// Worker lifecycle records are queued without waiting for their commit, but they take their
    /// place in the one chain in order: a durable append after them finds them written before it.
    @Test func recordsQueuedWithoutWaitingKeepTheirPlaceInTheChain() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1")
        try await log.append(AuditEvent("call.intent"))
        await log.appendWithoutWaiting(AuditEvent("worker.spawned"))
        await log.appendWithoutWaiting(AuditEvent("worker.destroyed"))
        let last = try await log.append(AuditEvent("call.outcome"))
        #expect(last == 4)
        let records = try log.records(limit: 10)
        #expect(records.compactMap(\.event?.event).sorted() == ["call.intent", "call.outcome", "worker.destroyed", "worker.spawned"])
        let bySeq = Dictionary(uniqueKeysWithValues: records.map { ($0.seq, $0.event?.event ?? "") })
        #expect(bySeq[2] == "worker.spawned" && bySeq[3] == "worker.destroyed")
        guard case .ok(let count, _) = try log.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 4)
    }

    @Test func twoWritersOnOneFileKeepOneChain() async throws {
        let path = try temporaryPath()
        let server = try AuditLog(path: path, node: "server")
        let cli = try AuditLog(path: path, node: "cli")
        for round in 0..<5 {
            try await server.append(AuditEvent("call.intent"))
            try await cli.append(AuditEvent("session.created"))
            try await server.append(AuditEvent("call.outcome"))
            #expect(try server.verify() == cli.verify(), "round \(round)")
        }
        guard case .ok(let count, _) = try server.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 15)
    }

    @Test func aCallIsNotRunWhenItsIntentCannotBeRecorded() async throws {
        let recorder = InvocationRecorder()
        let fixture = try await GatewayFixture(executor: recorder)
        let (_, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c1")
        // With the log writable the call reaches the executor, audited before and after.
        _ = try await fixture.gateway.call("repo.stat", arguments: ["path": "a"], in: context)
        #expect(await recorder.invocations.count == 1)

        // Another process holds the audit database's write lock past the busy timeout: "store down".
        // Nothing is written, so the log refuses this call but does not latch (SQLITE_BUSY).
        var unsafe = Configuration()
        unsafe.allowsUnsafeTransactions = true
        let blocker = try DatabaseQueue(path: fixture.directory + "/audit.sqlite", configuration: unsafe)
        try await blocker.writeWithoutTransaction { db in try db.execute(sql: "BEGIN EXCLUSIVE") }
        let result = try await fixture.gateway.call("repo.stat", arguments: ["path": "b"], in: context)
        try await blocker.writeWithoutTransaction { db in try db.execute(sql: "ROLLBACK") }
        #expect(result.isError == true)
        guard case .object(let content)? = result.structuredContent, case .object(let error)? = content["error"] else {
            Issue.record("no structured error: \(result)")
            return
        }
        #expect(error["code"] == .string("audit_unavailable"))
        #expect(await recorder.invocations.count == 1, "the executor must not see an unaudited call")

        // Once the log is writable again, calls run and the chain is intact.
        _ = try await fixture.gateway.call("repo.stat", arguments: ["path": "c"], in: context)
        #expect(await recorder.invocations.count == 2)
        guard case .ok = try fixture.gateway.audit.verify() else {
            Issue.record("chain broken")
            return
        }
    }
}

/// Issue 13: a log that refuses every append after any failed write.
@Suite struct AuditLatchTests {
    func temporaryPath() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-audit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/audit.sqlite"
    }

    /// Makes every INSERT into the log fail, as a full disk or an I/O error would.
    static let refusingTrigger =
        "CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'refused'); END"

    /// Any failed write — here a trigger another connection installs makes one INSERT fail — refuses
    /// that append and every later one, even after the cause is gone, until the log is reopened
    /// (the runner restarted).
    @Test func anyFailedWriteRefusesEveryLaterAppend() async throws {
        let path = try temporaryPath()
        let log = try AuditLog(path: path, node: "n1")
        try await log.append(AuditEvent("call.intent"))
        let other = try DatabaseQueue(path: path)
        try await other.write { db in try db.execute(sql: Self.refusingTrigger) }
        await #expect(throws: AuditUnavailable.self) { try await log.append(AuditEvent("session.created")) }
        try await other.write { db in try db.execute(sql: "DROP TRIGGER refuse") }
        do {
            try await log.append(AuditEvent("session.created"), sync: .batched)
            Issue.record("appended after a failed write")
        } catch {
            #expect(error.description.contains("could not be written"))
        }
        #expect(await log.unavailableReason != nil)
        await #expect(throws: AuditUnavailable.self) { try await log.checkpoint() }
        #expect(try log.tail(1).first?.seq == 1, "nothing was written after the failure")

        // Restarted, the log appends again and the chain is whole.
        let restarted = try AuditLog(path: path, node: "n1")
        #expect(try await restarted.append(AuditEvent("session.created")) == 2)
        guard case .ok(let count, _) = try restarted.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 2)
    }
}

extension AuditLatchTests {
    /// Issue 21: a write that finds the disk full with no audit reserve to free refuses that
    /// commit's records but does not latch: SQLite rolled the transaction back whole, so once space
    /// is back the log takes records again and the chain is whole. (`max_page_count` on the writer
    /// connection stands in for the full disk: SQLite answers `SQLITE_FULL` as it does for ENOSPC.
    /// Test_faults.py fills a real tmpfs through the binary.)
    @Test func aFullDiskRefusesAppendsUntilSpaceIsBackWithoutLatching() async throws {
        let path = try temporaryPath()
        let log = try AuditLog(path: path, node: "n1")
        try await log.append(AuditEvent("call.intent"))
        let pages = try await log.pool.write { db in try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0 }
        try await log.pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA max_page_count = \(pages)")
        }
        var big = AuditEvent("session.created")
        big.detail = String(repeating: "x", count: 64 * 1024)
        do {
            try await log.append(big)
            Issue.record("appended past a full disk")
        } catch {
            #expect(error.description.contains("full"), "\(error)")
        }
        #expect(await log.unavailableReason == nil, "a full disk does not latch the log")
        #expect(try log.tail(1).first?.seq == 1, "nothing was written while the disk was full")

        try await log.pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA max_page_count = 1073741823")
        }
        #expect(try await log.append(big) == 2)
        guard case .ok(let count, _) = try log.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 2)
    }
}

extension AuditLatchTests {
    /// Issue 21: a runner stopped cleanly leaves no presence file behind (each clean stop used to
    /// leave one in `audit-runners/` until the next start); while it serves, its file is there.
    @Test func aCleanStopRemovesTheRunnersPresenceFile() async throws {
        let path = try temporaryPath()
        let directory = (path as NSString).deletingLastPathComponent + "/audit-runners"
        let log = try AuditLog(path: path, node: "n1")
        try log.announceRunner()
        let announced = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(announced.count == 1 && announced[0].hasSuffix(".lock"), "\(announced)")
        #expect(AuditRunnerPresence.liveFrom(logPath: path) == 0)
        log.retireRunner()
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        #expect(AuditRunnerPresence.liveFrom(logPath: path) == nil)
    }
}

/// Issue 13: outcome records that do not hold the response, and "outcome unknown" for intents left
/// without one.
@Suite struct AuditOutcomeTests {
    func temporaryPath() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-audit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/audit.sqlite"
    }

    static func intent(session: String = "s1", claim: String = "c1", request: String, tool: String = "shell.run")
        -> AuditEvent
    {
        var event = AuditEvent("call.intent")
        event.tenant = "acme"
        event.session = session
        event.claimFingerprint = claim
        event.requestID = request
        event.tool = tool
        return event
    }

    static func outcome(of intent: AuditEvent) -> AuditEvent {
        var event = intent
        event.event = "call.outcome"
        event.time = nil
        event.outcome = "completed"
        return event
    }

    /// A `batched` outcome returns before its commit, and the writer commits it at once — not at
    /// its sync timer, an hour away here — in its place in the chain; the record carries its
    /// intent's seq. The shutdown path (`checkpoint()`) commits and syncs one still queued.
    @Test(.timeLimit(.minutes(1))) func batchedOutcomesRideOnTheNextCommitInChainOrder() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1", syncInterval: .seconds(3600))
        let first = Self.intent(request: "1")
        let firstSeq = try await log.append(first, sync: .batched)
        try await log.appendOutcome(Self.outcome(of: first), intent: firstSeq, sync: .batched)
        await log.waitUntilCommitted()
        var records = try log.records(limit: 10)
        #expect(records.map(\.seq) == [1, 2])
        #expect(records.last?.event?.event == "call.outcome" && records.last?.event?.intentSeq == firstSeq)
        #expect(await log.unsyncedCommitCount >= 1, "committed by the writer's next commit, not by a sync")

        // Queued outcomes keep their order against records appended after them.
        let second = Self.intent(request: "2")
        let third = Self.intent(request: "3")
        let secondSeq = try await log.append(second, sync: .batched)
        let thirdSeq = try await log.append(third, sync: .batched)
        try await log.appendOutcome(Self.outcome(of: third), intent: thirdSeq, sync: .batched)
        try await log.appendOutcome(Self.outcome(of: second), intent: secondSeq, sync: .batched)
        let after = try await log.append(AuditEvent("session.created"), sync: .batched)
        #expect(after == 7)
        records = try log.records(afterSeq: 4, limit: 10)
        #expect(records.map { $0.event?.intentSeq } == [thirdSeq, secondSeq, nil])

        // At shutdown the final checkpoint commits a queued outcome and leaves nothing unsynced.
        let fourth = Self.intent(request: "4")
        let fourthSeq = try await log.append(fourth, sync: .batched)
        try await log.appendOutcome(Self.outcome(of: fourth), intent: fourthSeq, sync: .batched)
        _ = try await log.checkpoint()
        #expect(await log.unsyncedCommitCount == 0)
        #expect(try log.tail(1).first?.event?.intentSeq == fourthSeq)
        guard case .ok(let count, _) = try log.verify() else {
            Issue.record("chain broken")
            return
        }
        #expect(count == 9)
        let report = try AuditLog(path: log.path, node: "cli").callOutcomes()
        #expect(report.intents == 4 && report.unknown.isEmpty && report.inFlight.isEmpty && report.badLinks.isEmpty)
    }

    /// A `full` outcome holds its caller until it is committed and fsynced, like `append`.
    @Test func aFullOutcomeIsSyncedBeforeItReturns() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1", syncInterval: .seconds(3600))
        let intent = Self.intent(request: "1", tool: "repo.write_file")
        let seq = try await log.append(intent, sync: .full)
        try await log.appendOutcome(Self.outcome(of: intent), intent: seq, sync: .full)
        #expect(try log.tail(1).first?.event?.intentSeq == seq)
        #expect(await log.unsyncedCommitCount == 0)
        #expect(try await log.writerSynchronousSetting() == 2)
    }

    /// What `audit verify` reports on a log at rest: each intent without an outcome, however the
    /// outcomes are paired — by link, or (records written before the link) by session, claim,
    /// request id and tool, so two connections' calls with one request id are told apart.
    @Test func verifyReportsEveryIntentWithoutAnOutcome() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1")
        // Linked: two calls with the same request id on one key; the outcome names the first.
        let linked = Self.intent(request: "5")
        let linkedSeq = try await log.append(linked)
        let twin = Self.intent(request: "5")
        let twinSeq = try await log.append(twin)
        try await log.appendOutcome(Self.outcome(of: linked), intent: linkedSeq, sync: .full)
        // Unlinked (written the old way): request 7 on two connections (two claims); only the second
        // connection's call has an outcome.
        let first = Self.intent(claim: "c1", request: "7")
        let firstSeq = try await log.append(first)
        let second = Self.intent(claim: "c2", request: "7")
        let secondSeq = try await log.append(second)
        try await log.append(Self.outcome(of: second))
        // A finished call of another session, and a record of another kind in between.
        try await log.append(AuditEvent("session.created"))
        let other = Self.intent(session: "s2", request: "1", tool: "repo.read_file")
        let otherSeq = try await log.append(other, sync: .batched)
        try await log.appendOutcome(Self.outcome(of: other), intent: otherSeq, sync: .batched)
        await log.waitUntilCommitted()

        let reader = try AuditLog(path: log.path, node: "cli")
        let report = try reader.callOutcomes()
        #expect(report.intents == 5)
        #expect(report.unknown.map(\.seq) == [twinSeq, firstSeq])
        #expect(report.inFlight.isEmpty && report.badLinks.isEmpty && report.liveRunnerFrom == nil)
        let statuses = try reader.outcomeStatuses(of: try reader.records(limit: 100))
        #expect(statuses[linkedSeq] == .recorded(outcomeSeq: 3))
        #expect(statuses[twinSeq] == .unknown && statuses[firstSeq] == .unknown)
        #expect(statuses[secondSeq] == .recorded(outcomeSeq: 6))
        #expect(statuses[otherSeq] == .recorded(outcomeSeq: 9))
        #expect(statuses.count == 5, "only intents get a status")

        // The process that wrote them is still running them as far as it knows: in flight.
        let live = try log.callOutcomes()
        #expect(live.inFlight.map(\.seq) == [twinSeq, firstSeq] && live.unknown.isEmpty)
        #expect(try log.outcomeStatuses(of: try log.records(limit: 100))[twinSeq] == .inFlight)
    }

    /// A record deleted and the chain recomputed (no key at hand) shifts every later seq, so links
    /// point at the wrong records: verify names them even without checkpoints.
    @Test func aRecomputedChainBreaksTheOutcomeLinks() async throws {
        let log = try AuditLog(path: try temporaryPath(), node: "n1")
        for index in 0..<3 {
            let intent = Self.intent(request: String(index))
            let seq = try await log.append(intent)
            try await log.appendOutcome(Self.outcome(of: intent), intent: seq, sync: .full)
        }
        try AuditCheckpointTests.forgeDeletion(of: 2, in: log.path)
        guard case .ok = try log.verify() else {
            Issue.record("the forger recomputed the chain; it should verify on its own")
            return
        }
        let report = try AuditLog(path: log.path, node: "cli").callOutcomes()
        #expect(!report.badLinks.isEmpty)
        #expect(
            report.badLinks.first?.hasPrefix("outcome record 3 names intent record 3") == true, "\(report.badLinks)")
    }

    /// An outcome given to a log that already refuses appends is refused at once, and its call is
    /// reported outcome unknown by this very process (not in flight).
    @Test func anOutcomeOnARefusingLogIsUnknownAtOnce() async throws {
        let path = try temporaryPath()
        let log = try AuditLog(path: path, node: "n1")
        let intent = Self.intent(request: "1")
        let intentSeq = try await log.append(intent)
        let other = try DatabaseQueue(path: path)
        try await other.write { db in try db.execute(sql: AuditLatchTests.refusingTrigger) }
        await #expect(throws: AuditUnavailable.self) { try await log.append(AuditEvent("session.created")) }
        try await other.write { db in try db.execute(sql: "DROP TRIGGER refuse") }
        await #expect(throws: AuditUnavailable.self) {
            try await log.appendOutcome(Self.outcome(of: intent), intent: intentSeq, sync: .batched)
        }
        #expect(try log.outcomeStatuses(of: try log.records(limit: 10))[intentSeq] == .unknown)
        #expect(try log.callOutcomes().unknown.map(\.seq) == [intentSeq])
    }

    /// An outcome whose own commit fails is recorded as lost: the call is unknown at once.
    @Test func anOutcomeWhoseCommitFailsIsUnknownAtOnce() async throws {
        let path = try temporaryPath()
        let log = try AuditLog(path: path, node: "n1")
        let intent = Self.intent(request: "1")
        let intentSeq = try await log.append(intent)
        let other = try DatabaseQueue(path: path)
        try await other.write { db in
            try db.execute(sql: AuditLatchTests.refusingTrigger)
        }
        try await log.appendOutcome(Self.outcome(of: intent), intent: intentSeq, sync: .batched)
        await log.waitUntilCommitted()
        #expect(await log.unavailableReason != nil)
        #expect(try log.outcomeStatuses(of: try log.records(limit: 10))[intentSeq] == .unknown)
    }

    /// A serving runner's lock marks its calls in flight to any other reader of the log, from the
    /// head it opened at; the lock dies with the process (here: with its descriptor), after which
    /// the same intents are outcome unknown; the next runner removes the stale lock file.
    @Test func aLiveRunnerMarksItsCallsInFlightForOtherReaders() async throws {
        let path = try temporaryPath()
        let earlier = try AuditLog(path: path, node: "n1")
        let crashed = try await earlier.append(Self.intent(request: "1"))
        let runner = try AuditLog(path: path, node: "n1")
        #expect(runner.openedAtSeq == 1)
        let announced = try AuditRunnerPresence.announce(logPath: path, from: runner.openedAtSeq)
        let running = try await runner.append(Self.intent(request: "2"))
        let verifier = try AuditLog(path: path, node: "cli")
        var report = try verifier.callOutcomes()
        #expect(report.liveRunnerFrom == 1)
        #expect(report.unknown.map(\.seq) == [crashed] && report.inFlight.map(\.seq) == [running])
        close(announced.fd)
        // A worker being spawned by a test running alongside (clone, then execve) holds a copy of
        // every descriptor until its execve closes the close-on-exec ones, this lock's included:
        // the lock outlives `close` by those milliseconds. Bounded wait for the copy to go.
        let deadline = ContinuousClock.now + .seconds(10)
        report = try verifier.callOutcomes()
        while report.liveRunnerFrom != nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            report = try verifier.callOutcomes()
        }
        #expect(report.liveRunnerFrom == nil && report.unknown.map(\.seq) == [crashed, running])
        let directory = AuditRunnerPresence.directory(forLog: path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count == 1, "the stale lock file")
        let next = try AuditRunnerPresence.announce(logPath: path, from: 2)
        defer { close(next.fd) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("1-") }.isEmpty)
        #expect(AuditRunnerPresence.liveFrom(logPath: path) == 2)
    }
}

/// Invariant 14: the chain is keyed by signed checkpoints of its head, and a runner never chains
/// onto a head rewritten behind its back.
@Suite struct AuditCheckpointTests {
    func temporaryPath() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-audit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/audit.sqlite"
    }

    /// What someone with write access to the file (and no key) can do: delete record `seq`,
    /// renumber the rest and recompute every later hash, so the chain alone verifies again.
    static func forgeDeletion(of seq: Int64, in path: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "DELETE FROM audit WHERE seq = ?", arguments: [seq])
            try db.execute(sql: "UPDATE audit SET seq = -(seq - 1) WHERE seq > ?", arguments: [seq])
            try db.execute(sql: "UPDATE audit SET seq = -seq WHERE seq < 0")
            var previous = AuditLog.genesis
            for row in try Row.fetchAll(db, sql: "SELECT seq, body FROM audit ORDER BY seq") {
                let hash = AuditRecord.chainHash(previous: previous, seq: row["seq"], body: row["body"])
                try db.execute(
                    sql: "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                    arguments: [previous, hash, row["seq"] as Int64])
                previous = hash
            }
        }
    }

    func append(_ count: Int, to log: AuditLog) async throws {
        for index in 0..<count {
            var event = AuditEvent("call.intent")
            event.tenant = "acme"
            event.requestID = String(index)
            try await log.append(event)
        }
    }

    @Test func aCheckpointIsWrittenEveryNRecords() async throws {
        let key = AuditSigningKey()
        let log = try AuditLog(path: try temporaryPath(), node: "n1", signer: key, checkpointEvery: 10)
        try await append(25, to: log)
        #expect(try log.checkpoints().map(\.seq) == [10, 20])
        let report = try log.verifyCheckpoints(publicKey: key.publicKey)
        #expect(report.failures.isEmpty)
        #expect(report.checkpoints == 2 && report.lastCoveredSeq == 20 && report.unsignedRecords == 5)
        #expect(await log.unsignedRecords == 5)
        // An explicit checkpoint covers the rest; with nothing new, a second one writes nothing.
        #expect(try await log.checkpoint() == 25)
        #expect(try await log.checkpoint() == nil)
        #expect(try log.verifyCheckpoints(publicKey: key.publicKey).unsignedRecords == 0)
        // Another key's public half does not verify them.
        let other = try log.verifyCheckpoints(publicKey: AuditSigningKey().publicKey)
        #expect(other.failures.count == 3 && other.failures[0].contains("not by the given public key"))
    }

    /// The timer service signs unsigned records within its interval, and once more on graceful
    /// shutdown; both are waited for as events (the checkpoint row, the group's return).
    @Test(.timeLimit(.minutes(1))) func theCheckpointerSignsOnItsIntervalAndAtShutdown() async throws {
        let key = AuditSigningKey()
        let log = try AuditLog(path: try temporaryPath(), node: "n1", signer: key, checkpointEvery: 1000)
        try await append(3, to: log)
        let ticking = ServiceGroup(
            services: [AuditCheckpointer(audit: log, interval: .milliseconds(50), logger: Logger(label: "test"))],
            logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await ticking.run() }
            var polls = 0
            while try log.checkpoints().isEmpty && polls < 400 {
                polls += 1
                try await Task.sleep(for: .milliseconds(10))
            }
            await ticking.triggerGracefulShutdown()
            try await group.waitForAll()
        }
        #expect(try log.checkpoints().map(\.seq) == [3], "the interval signed the three records")

        // An interval far beyond the test: only the graceful shutdown can have signed record 5.
        try await append(2, to: log)
        let slow = ServiceGroup(
            services: [AuditCheckpointer(audit: log, interval: .seconds(3600), logger: Logger(label: "test"))],
            logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await slow.run() }
            await slow.triggerGracefulShutdown()
            try await group.waitForAll()
        }
        #expect(try log.checkpoints().map(\.seq) == [3, 5])
        #expect(try log.verifyCheckpoints(publicKey: key.publicKey).failures.isEmpty)
    }

    /// Finding 3: deleting a record and recomputing the chain used to verify. The chain still does,
    /// but the checkpoints name the rewrite.
    @Test func aRecomputedChainFailsAgainstItsCheckpoints() async throws {
        let key = AuditSigningKey()
        let path = try temporaryPath()
        let log = try AuditLog(path: path, node: "n1", signer: key, checkpointEvery: 5)
        try await append(12, to: log)
        #expect(try log.checkpoints().map(\.seq) == [5, 10])
        try Self.forgeDeletion(of: 3, in: path)
        guard case .ok(let records, _) = try log.verify() else {
            Issue.record("the forger recomputed the chain; it should verify on its own")
            return
        }
        #expect(records == 11)
        let report = try log.verifyCheckpoints(publicKey: key.publicKey)
        #expect(report.failures.count == 2)
        #expect(report.failures.allSatisfy { $0.hasPrefix("checkpoint mismatch at record") })
        #expect(report.failures.first?.contains("record 5") == true)
        #expect(report.lastCoveredSeq == 0)

        // Cutting records off below a checkpoint is named as such.
        let truncator = try DatabaseQueue(path: path)
        try await truncator.write { db in try db.execute(sql: "DELETE FROM audit WHERE seq > 8") }
        let truncated = try log.verifyCheckpoints(publicKey: key.publicKey)
        #expect(truncated.failures.contains { $0.contains("the log has no record 10") })
    }

    /// The runner-held log never chains onto a forged head: the append fails (the caller refuses
    /// `audit_unavailable`) and keeps failing, and no checkpoint signs the forgery.
    @Test func aRunnerHeldLogRefusesToAppendAfterARewriteBehindItsBack() async throws {
        let key = AuditSigningKey()
        let path = try temporaryPath()
        let log = try AuditLog(path: path, node: "n1", signer: key, checkpointEvery: 1000)
        try await append(6, to: log)
        try Self.forgeDeletion(of: 2, in: path)
        await #expect(throws: AuditUnavailable.self) { try await log.append(AuditEvent("call.intent")) }
        do {
            try await log.append(AuditEvent("call.outcome"))
            Issue.record("appended onto a forged head")
        } catch {
            #expect(error.description.contains("changed behind the runner's back"))
        }
        await #expect(throws: AuditUnavailable.self) { try await log.checkpoint() }
        #expect(try log.checkpoints().isEmpty)
        #expect(try log.tail(1).first?.seq == 5, "nothing was chained onto the forged head")

        // Restarted on the rewritten file, a runner with the key refuses too: the last checkpoint
        // (written before the rewrite) no longer matches its record.
        let other = try temporaryPath()
        let first = try AuditLog(path: other, node: "n1", signer: key, checkpointEvery: 4)
        try await append(6, to: first)
        try Self.forgeDeletion(of: 1, in: other)
        let restarted = try AuditLog(path: other, node: "n1", signer: key, checkpointEvery: 4)
        await #expect(throws: AuditUnavailable.self) { try await restarted.append(AuditEvent("call.intent")) }
    }

    /// Through the gateway: after the rewrite a call is refused `audit_unavailable` and not run.
    @Test func aCallIsRefusedOnceTheLogWasRewrittenBehindTheRunner() async throws {
        let recorder = InvocationRecorder()
        let fixture = try await GatewayFixture(executor: recorder)
        let (_, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c1")
        _ = try await fixture.gateway.call("repo.stat", arguments: ["path": "a"], in: context)
        #expect(await recorder.invocations.count == 1)
        try Self.forgeDeletion(of: 2, in: fixture.directory + "/audit.sqlite")
        let result = try await fixture.gateway.call("repo.stat", arguments: ["path": "b"], in: context)
        guard case .object(let content)? = result.structuredContent, case .object(let error)? = content["error"] else {
            Issue.record("no structured error: \(result)")
            return
        }
        #expect(error["code"] == .string("audit_unavailable"))
        #expect(await recorder.invocations.count == 1, "the executor must not see the call")
    }
}

/// An executor that records what reaches it and executes nothing.
actor InvocationRecorder: WorkerlessExecutor {
    private(set) var invocations: [ToolInvocation] = []

    func execute(_ invocation: ToolInvocation) async -> ToolExecution {
        invocations.append(invocation)
        return ToolExecution(
            outcome: .failed(code: "recorded", message: "recording executor"), workerID: nil,
            isolation: invocation.tier.isolation)
    }

    func tiersChanged(_ tiers: Set<String>) async {}
}

@Suite struct TierAvailabilityTests {
    /// Fail closed: on a kernel without Landlock the `exec` tier (which requires it) does not run,
    /// and nothing is weakened to make it run; tiers whose features exist are unaffected.
    @Test func aTierMissingAKernelFeatureIsRefusedNotWeakened() async throws {
        let recorder = InvocationRecorder()
        let noLandlock = KernelFeatures(
            userNamespaces: .available, seccomp: .available, openat2: .available, landlockABI: nil)
        let fixture = try await GatewayFixture(executor: recorder, kernel: noLandlock)
        let (_, claim) = try await fixture.session()
        let context = try await fixture.gateway.authenticate(token: claim, connectionID: "c")
        let refused = try await fixture.gateway.call("shell.run", arguments: ["command": "true"], in: context)
        guard case .object(let content)? = refused.structuredContent, case .object(let error)? = content["error"] else {
            Issue.record("no structured error: \(refused)")
            return
        }
        #expect(error["code"] == .string("tier_unavailable"))
        #expect(await recorder.invocations.isEmpty)
        _ = try await fixture.gateway.call("repo.read_file", arguments: ["path": "a"], in: context)
        #expect(await recorder.invocations.map(\.tool) == ["repo.read_file"])
        let audited = try fixture.gateway.audit.records(limit: 100).compactMap(\.event)
        #expect(
            audited.contains { $0.event == "call.refused" && $0.code == "tier_unavailable" && $0.tool == "shell.run" })
    }
}
