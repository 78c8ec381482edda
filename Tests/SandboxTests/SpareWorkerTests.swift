import Foundation
import Testing

@testable import Sandbox

/// Spares through the real worker: a per-call worker confined ahead of its session's next call.
/// Each serves exactly one call of exactly its own tenant, workspace, session, lease and tier
/// settings, has run nothing before it, and dies with whatever retires its binding.
@Suite(.timeLimit(.minutes(2))) struct SpareWorkerTests {
    static let exec = SandboxFixture.tier(.exec)
    static let trueArguments = #"{"argv":["true"]}"#

    func makeSparePool(perSession: Int = 1, maximum: Int = 16) throws -> (WorkerPool, EventLog) {
        let log = EventLog()
        let pool = WorkerPool(
            launch: try SandboxFixture.launch(), sparesPerSession: perSession, maximumSpares: maximum,
            onEvent: { await log.record($0) })
        return (pool, log)
    }

    /// The next spare spawned for `session` that is not among `seen`.
    func nextSpare(_ log: EventLog, session: String, besides seen: Set<String?>) async -> WorkerEvent {
        await log.first { $0.kind == .spawned && $0.sessionID == session && !seen.contains($0.workerID) }
    }

    @Test func eachCallGetsAFreshWorkerThatRanNothingBefore() async throws {
        let (pool, log) = try makeSparePool()
        let root = try SandboxFixture.temporaryDirectory("spare-fresh")
        let service = Task { await pool.run() }
        defer { service.cancel() }
        let first = await pool.execute(
            invocation(
                "shell.run", #"{"command":"echo left > /tmp/left; echo $$ > /tmp/pid; true"}"#, tier: Self.exec,
                root: root))
        #expect(resultObject(first)["exit_code"] as? Int == 0)
        var used: Set<String?> = [first.workerID]
        for _ in 0..<4 {
            let spare = await nextSpare(log, session: "s1", besides: used)
            let call = await pool.execute(
                invocation(
                    "shell.run", #"{"command":"ls -A /tmp; cat /tmp/left 2>/dev/null; true"}"#, tier: Self.exec,
                    root: root))
            #expect(call.workerID == spare.workerID, "the call took the spare confined ahead of it")
            #expect(!used.contains(call.workerID), "a worker never serves a second call")
            #expect(resultObject(call)["stdout"] as? String == "", "nothing of an earlier call is in /tmp")
            used.insert(call.workerID)
        }
        let finished = await log.events.filter { $0.kind == .destroyed && $0.reason == .callFinished }.map(\.workerID)
        #expect(
            Set(finished) == used && finished.count == used.count, "each served one call and was destroyed after it")
        await pool.shutdown()
        #expect(await pool.liveWorkerCount == 0)
    }

    @Test func aSpareServesOnlyItsOwnTenantWorkspaceAndSession() async throws {
        let (pool, log) = try makeSparePool(perSession: 2)
        let acmeRoot = try SandboxFixture.temporaryDirectory("spare-acme")
        let globexRoot = try SandboxFixture.temporaryDirectory("spare-globex")
        let service = Task { await pool.run() }
        defer { service.cancel() }
        let first = await pool.execute(invocation("shell.run", Self.trueArguments, tier: Self.exec, root: acmeRoot))
        let acmeSpare = await nextSpare(log, session: "s1", besides: [first.workerID])
        // Another tenant, and another session of the same tenant and workspace, each get workers
        // spawned for them, never acme's session's spares.
        var others: [(ToolExecution, tenant: String, session: String)] = []
        for _ in 0..<3 {
            let call = await pool.execute(
                invocation(
                    "shell.run", Self.trueArguments, tier: Self.exec, root: globexRoot, tenant: "globex", session: "g1")
            )
            others.append((call, "globex", "g1"))
        }
        let sameTenant = await pool.execute(
            invocation("shell.run", Self.trueArguments, tier: Self.exec, root: acmeRoot, session: "s2"))
        others.append((sameTenant, "acme", "s2"))
        let events = await log.events
        for (call, tenant, session) in others {
            #expect(resultObject(call)["exit_code"] as? Int == 0)
            let spawned = events.first { $0.kind == .spawned && $0.workerID == call.workerID }
            #expect(spawned?.tenantID == tenant && spawned?.sessionID == session, "\(String(describing: spawned))")
            #expect(call.workerID != acmeSpare.workerID)
        }
        // acme's spare is still unused and serves acme's session.
        let next = await pool.execute(invocation("shell.run", Self.trueArguments, tier: Self.exec, root: acmeRoot))
        let nextSpawned = await log.events.first { $0.kind == .spawned && $0.workerID == next.workerID }
        #expect(nextSpawned?.tenantID == "acme" && nextSpawned?.sessionID == "s1")
        await pool.shutdown()
    }

    @Test func sparesAreBoundedPerSessionAndOnTheRunner() async throws {
        let (pool, log) = try makeSparePool(perSession: 2, maximum: 1)
        let root = try SandboxFixture.temporaryDirectory("spare-bound")
        let service = Task { await pool.run() }
        defer { service.cancel() }
        let first = await pool.execute(invocation("shell.run", Self.trueArguments, tier: Self.exec, root: root))
        let spare = await nextSpare(log, session: "s1", besides: [first.workerID])
        #expect(await pool.spareCount == 1, "one spare on a runner whose limit is one, though a session may have two")
        // A second session's call: the first session's ready spare makes room for its spare.
        let other = await pool.execute(
            invocation("shell.run", Self.trueArguments, tier: Self.exec, root: root, session: "s2"))
        let evicted = await log.first { $0.kind == .destroyed && $0.workerID == spare.workerID }
        #expect(evicted.reason == .idle && evicted.detail?.contains("spare limit") == true)
        _ = await nextSpare(log, session: "s2", besides: [other.workerID])
        #expect(await pool.spareCount <= 1)
        await pool.shutdown()
        #expect(await pool.liveWorkerCount == 0)
    }

    @Test func noSparesWhenTurnedOff() async throws {
        let (pool, log) = try makeSparePool(perSession: 2, maximum: 0)
        let root = try SandboxFixture.temporaryDirectory("spare-off")
        let service = Task { await pool.run() }
        defer { service.cancel() }
        for _ in 0..<3 {
            _ = await pool.execute(invocation("shell.run", Self.trueArguments, tier: Self.exec, root: root))
        }
        #expect(await pool.spareCount == 0)
        let spawned = await log.events.filter { $0.kind == .spawned }.count
        #expect(spawned == 3, "one worker per call, none ahead")
        await pool.shutdown()
    }

    @Test func sparesDieWithTheirWorkspaceTierRevokeAndLease() async throws {
        let (pool, log) = try makeSparePool()
        let root = try SandboxFixture.temporaryDirectory("spare-retire")
        let service = Task { await pool.run() }
        defer { service.cancel() }

        func spareAfterACall(session: String, leaseEnds: Date = Date().addingTimeInterval(600)) async -> WorkerEvent {
            let call = await pool.execute(
                invocation(
                    "shell.run", Self.trueArguments, tier: Self.exec, root: root, session: session, leaseEnds: leaseEnds
                ))
            return await nextSpare(log, session: session, besides: [call.workerID])
        }
        func destruction(of spare: WorkerEvent) async -> WorkerRetirement? {
            await log.first { $0.kind == .destroyed && $0.workerID == spare.workerID }.reason
        }

        let revoked = await spareAfterACall(session: "s1")
        await pool.retire(session: "s1", reason: .sessionRevoked)
        #expect(await destruction(of: revoked) == .sessionRevoked)

        let renewed = await spareAfterACall(session: "s2")
        await pool.retire(session: "s2", exceptLease: "l2", reason: .leaseReplaced)
        #expect(await destruction(of: renewed) == .leaseReplaced)

        let policy = await spareAfterACall(session: "s3")
        await pool.tiersChanged(["exec"])
        #expect(await destruction(of: policy) == .tierChanged)

        let expiring = await spareAfterACall(session: "s4", leaseEnds: Date().addingTimeInterval(3))
        #expect(await destruction(of: expiring) == .leaseExpired, "the lease timer destroys it")

        let removed = await spareAfterACall(session: "s5")
        await pool.retire(tenant: "acme", workspace: "main", reason: .workspaceRemoved)
        #expect(await destruction(of: removed) == .workspaceRemoved)
        #expect(await pool.spareCount == 0)
        await pool.shutdown()
        #expect(await pool.liveWorkerCount == 0)
    }

    @Test func aSpareConfinedUnderOtherTierSettingsIsNeverUsed() async throws {
        let (pool, log) = try makeSparePool()
        let root = try SandboxFixture.temporaryDirectory("spare-tier")
        let service = Task { await pool.run() }
        defer { service.cancel() }
        let first = await pool.execute(invocation("shell.run", Self.trueArguments, tier: Self.exec, root: root))
        let spare = await nextSpare(log, session: "s1", besides: [first.workerID])
        var tighter = Self.exec
        tighter.limits.outputBytes = 4096
        let call = await pool.execute(invocation("shell.run", Self.trueArguments, tier: tighter, root: root))
        #expect(resultObject(call)["exit_code"] as? Int == 0)
        #expect(call.workerID != spare.workerID)
        let gone = await log.first { $0.kind == .destroyed && $0.workerID == spare.workerID }
        #expect(gone.reason == .tierChanged)
        await pool.shutdown()
    }
}
