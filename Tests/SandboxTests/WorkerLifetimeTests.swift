import Foundation
import SandboxProtocol
import Synchronization
import Testing

@testable import Sandbox

/// A clock that moves only when a test moves it, in milliseconds from zero.
final class TestClock: Clock, Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        static func ms(_ milliseconds: Int64) -> Instant { Instant(offset: .milliseconds(milliseconds)) }
    }

    private let current = Mutex(Instant(offset: .zero))
    var now: Instant { current.withLock { $0 } }
    var minimumResolution: Duration { .milliseconds(1) }

    /// The lifetime rules never sleep; a test that did would be waiting on nothing.
    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        precondition(deadline <= now, "the state machine never sleeps; the pool does, on its own clock")
    }
}

/// Every worker lifetime rule (DESIGN.md §3 invariant 2), on ``WorkerPool/StateMachine`` with a
/// test clock: no processes, no waiting, each deadline checked to the millisecond. The same rules
/// with real workers are in WorkerConfinementTests, SpareWorkerTests and FairShareTests.
@Suite struct WorkerLifetimeTests {
    typealias Machine = WorkerPool.StateMachine<TestClock>
    typealias T = TestClock.Instant

    static let read = WorkerTier(name: "read", isolation: .session, profile: .read, limits: WorkerLimits())
    static let exec = WorkerTier(name: "exec", isolation: .call, profile: .exec, limits: WorkerLimits())

    static func settings(
        idle: Int64 = 300_000, spareIdle: Int64 = 60_000, spares: Int = 2, maximumSpares: Int = 16,
        callsPerSession: Int = 8, workers: Int = 512, shares: TenantShares? = nil
    ) -> Machine.Settings {
        WorkerPool.Settings(
            idleTimeout: .milliseconds(idle), spareIdleTimeout: .milliseconds(spareIdle), sparesPerSession: spares,
            maximumSpares: maximumSpares, maximumCallsPerSession: callsPerSession, maximumWorkers: workers,
            shares: shares)
    }

    /// A call of `tenant`'s session `session` under `lease` (ending at `leaseEnd` ms), authorized
    /// at `at` ms.
    static func call(
        tier: WorkerTier = read, tenant: String = "acme", workspace: String = "w1", session: String = "s1",
        actor: String = "alice", lease: String = "l1", leaseEnd: Int64 = 3_600_000, at: Int64 = 0,
        upstream: UpstreamCall? = nil
    ) -> Machine.Call {
        let invocation = ToolInvocation(
            tool: upstream == nil ? "repo.stat" : "kb.search", tier: tier, arguments: Array("{}".utf8),
            tenantID: tenant, workspaceID: workspace, workspaceRoot: "/srv/\(tenant)/\(workspace)", sessionID: session,
            actorID: actor, leaseID: lease, leaseExpiresAt: Date(timeIntervalSince1970: 0), policyVersion: "p1",
            upstream: upstream)
        return Machine.Call(invocation, authorizedAt: .ms(at), leaseEnd: .ms(leaseEnd))
    }

    /// Runs a warm call through the machine as the pool does, spawning `id` when it needs a
    /// worker; returns the worker it ran on and what was destroyed on the way.
    static func warmCall(
        _ machine: inout Machine, _ call: Machine.Call, spawning id: String, at now: Int64
    ) -> (worker: String?, destroyed: [Machine.Destroy]) {
        guard machine.callArrived(call, now: .ms(now)) == nil else { return (nil, []) }
        defer { machine.callLeft(call) }
        let check1 = machine.enterLane(call.warmKey) == nil
        #expect(check1)
        defer { _ = machine.leaveLane(call.warmKey) }
        var destroyed: [Machine.Destroy] = []
        let worker: String
        switch machine.warmWorker(for: call) {
        case .voided: return (nil, [])
        case .use(let existing): worker = existing
        case .spawn(let old):
            destroyed += [old].compactMap { $0 }
            let room = machine.makeRoom(for: call, spare: false)
            destroyed += room.destroy
            guard room.refusal == nil else { return (nil, destroyed) }
            if machine.spawned(id, for: call, warmKey: call.warmKey, spareKey: nil, now: .ms(now)) {
                destroyed += [machine.remove(id, reason: .sessionRevoked)].compactMap { $0 }
                return (nil, destroyed)
            }
            worker = id
        }
        destroyed += [machine.callFinished(on: worker, call, retirement: nil, now: .ms(now))].compactMap { $0 }
        return (worker, destroyed)
    }

    // MARK: Per-call workers

    @Test func aPerCallWorkerNeverServesASecondCall() {
        var machine = Machine(settings: Self.settings())
        let call = Self.call(tier: Self.exec)
        let check2 = machine.callArrived(call, now: .ms(0)) == nil
        #expect(check2)
        guard case .spawn(let none) = machine.takeSpare(for: call) else {
            Issue.record("no spare yet: the call spawns")
            return
        }
        #expect(none.isEmpty)
        let check3 = machine.makeRoom(for: call, spare: false).refusal == nil
        #expect(check3)
        let check4 = !machine.spawned("w1", for: call, warmKey: nil, spareKey: nil, now: .ms(5))
        #expect(check4)
        let destroyed = machine.callFinished(on: "w1", call, retirement: nil, now: .ms(10))
        #expect(destroyed?.id == "w1" && destroyed?.reason == .callFinished)
        machine.callLeft(call)
        #expect(machine.entries.isEmpty)
        // Even a call killed by a limit: the reason says so, and the worker is gone all the same.
        let second = Self.call(tier: Self.exec)
        _ = machine.spawned("w2", for: second, warmKey: nil, spareKey: nil, now: .ms(20))
        let killed = machine.callFinished(on: "w2", second, retirement: .limitExceeded, now: .ms(30))
        #expect(killed?.reason == .limitExceeded)
        #expect(machine.entries.isEmpty)
    }

    @Test func aSpareServesOneCallOfItsOwnSessionAndBindingOnly() {
        var machine = Machine(settings: Self.settings())
        let call = Self.call(tier: Self.exec)
        let check5 = machine.reserveSpares(for: call, now: .ms(0)).count == 2
        #expect(check5, "two spares per session by default")
        let check6 = machine.reserveSpares(for: call, now: .ms(0)).count == 0
        #expect(check6, "the key holds its share")
        _ = machine.spawned("sp1", for: call, warmKey: nil, spareKey: call.spareKey, now: .ms(1))
        let check7 = machine.sparePrepared(call.spareKey, id: "sp1").isEmpty
        #expect(check7)
        // Another session never takes it.
        let other = Self.call(tier: Self.exec, session: "s2")
        guard case .spawn = machine.takeSpare(for: other) else {
            Issue.record("another session's spare is never handed out")
            return
        }
        // Its own session does, once; the second preparation is still under way, so the next call waits.
        let check8 = machine.takeSpare(for: call) == .use("sp1", destroy: [])
        #expect(check8)
        guard case .wait(let waiter) = machine.takeSpare(for: call) else {
            Issue.record("a call waits for its key's spare being confined")
            return
        }
        _ = machine.spawned("sp2", for: call, warmKey: nil, spareKey: call.spareKey, now: .ms(2))
        let check9 = machine.sparePrepared(call.spareKey, id: "sp2") == [waiter]
        #expect(check9)
        // The actor changed hands meanwhile: the spare belongs to what was.
        let handedOff = Self.call(tier: Self.exec, actor: "bob")
        guard case .spawn(let destroyed) = machine.takeSpare(for: handedOff) else {
            Issue.record("a spare of another actor is not used")
            return
        }
        #expect(destroyed.map(\.id) == ["sp2"] && destroyed.first?.reason == .handOff)
    }

    @Test func noSpareIsConfinedForALeaseThatEndsWithinASecond() {
        var machine = Machine(settings: Self.settings())
        let call = Self.call(tier: Self.exec, leaseEnd: 1_000)
        let check10 = machine.reserveSpares(for: call, now: .ms(0)).count == 0
        #expect(check10)
        let check11 = machine.reserveSpares(for: call, now: .ms(-1)).count == 2
        #expect(check11, "1001 ms left: a spare is worth it")
    }

    // MARK: Warm workers

    @Test func aWarmWorkerServesItsSessionLeaseAndTierOnly() {
        var machine = Machine(settings: Self.settings())
        let first = Self.warmCall(&machine, Self.call(), spawning: "w1", at: 0)
        let again = Self.warmCall(&machine, Self.call(at: 10), spawning: "w2", at: 10)
        #expect(first.worker == "w1" && again.worker == "w1")
        let otherLease = Self.warmCall(&machine, Self.call(lease: "l2"), spawning: "w3", at: 20)
        #expect(otherLease.worker == "w3" && otherLease.destroyed.isEmpty)
        let otherSession = Self.warmCall(&machine, Self.call(session: "s2"), spawning: "w4", at: 30)
        #expect(otherSession.worker == "w4" && otherSession.destroyed.isEmpty)
        #expect(machine.entries.count == 3)
        // The same session id under another tenant (never issued, but a key is not a binding): the
        // worker bound to acme is destroyed, never shared.
        let otherTenant = Self.warmCall(&machine, Self.call(tenant: "globex"), spawning: "w5", at: 40)
        #expect(otherTenant.worker == "w5" && otherTenant.destroyed.map(\.id) == ["w1"])
        #expect(otherTenant.destroyed.first?.reason == .handOff)
        #expect(machine.entries.count == 3)
    }

    @Test func aChangedTierActorOrWorkspaceRetiresTheWarmWorker() {
        var machine = Machine(settings: Self.settings())
        _ = Self.warmCall(&machine, Self.call(), spawning: "w1", at: 0)
        var tighter = Self.read
        tighter.limits.outputBytes = 4096
        let tier = Self.warmCall(&machine, Self.call(tier: tighter), spawning: "w2", at: 1)
        #expect(tier.worker == "w2" && tier.destroyed.map(\.reason) == [.tierChanged])
        let actor = Self.warmCall(&machine, Self.call(tier: tighter, actor: "bob"), spawning: "w3", at: 2)
        #expect(actor.worker == "w3" && actor.destroyed.map(\.reason) == [.handOff])
        let workspace = Self.warmCall(
            &machine, Self.call(tier: tighter, workspace: "w9", actor: "bob"), spawning: "w4", at: 3)
        #expect(workspace.worker == "w4" && workspace.destroyed.map(\.reason) == [.handOff])
        #expect(Set(machine.entries.keys) == ["w4"])
    }

    @Test func callsOfOneWarmWorkerTakeTurnsInOrder() {
        var machine = Machine(settings: Self.settings())
        let key = Self.call().warmKey
        let check15 = machine.enterLane(key) == nil
        #expect(check15)
        let second = machine.enterLane(key)
        let third = machine.enterLane(key)
        #expect(second != nil && third != nil && second != third)
        let check16 = machine.leaveLane(key) == second
        #expect(check16)
        let check17 = machine.leaveLane(key) == third
        #expect(check17)
        let check18 = machine.leaveLane(key) == nil
        #expect(check18)
        let check19 = machine.enterLane(key) == nil
        #expect(check19, "the lane is free again")
    }

    // MARK: Time

    @Test func aLeaseEndDestroysItsWorkersToTheMillisecond() {
        var machine = Machine(settings: Self.settings())
        _ = Self.warmCall(&machine, Self.call(leaseEnd: 5_000), spawning: "w1", at: 0)
        let perCall = Self.call(tier: Self.exec, leaseEnd: 5_000)
        _ = machine.spawned("w2", for: perCall, warmKey: nil, spareKey: nil, now: .ms(100))
        #expect(machine.deadline == .ms(5_000))
        let check20 = machine.tick(now: .ms(4_999)).destroy.isEmpty
        #expect(check20)
        let due = machine.tick(now: .ms(5_000))
        #expect(due.destroy.map(\.id) == ["w1", "w2"] && due.destroy.allSatisfy { $0.reason == .leaseExpired })
        #expect(machine.entries.isEmpty && machine.deadline == nil)
    }

    @Test func anIdleWarmWorkerDiesAfterItsIdleTimeoutSinceItsLastCall() {
        var machine = Machine(settings: Self.settings(idle: 300))
        _ = Self.warmCall(&machine, Self.call(), spawning: "w1", at: 0)
        #expect(machine.deadline == .ms(300))
        _ = Self.warmCall(&machine, Self.call(at: 200), spawning: "w2", at: 200)
        #expect(machine.deadline == .ms(500), "a call makes it busy again")
        let check21 = machine.tick(now: .ms(499)).destroy.isEmpty
        #expect(check21)
        let check22 = machine.tick(now: .ms(500)).destroy.map(\.reason) == [.idle]
        #expect(check22)
    }

    @Test func aSpareDiesAfterTheSpareIdleTimeoutAndAPerCallWorkerInItsCallDoesNot() {
        var machine = Machine(settings: Self.settings(idle: 300, spareIdle: 100))
        let call = Self.call(tier: Self.exec)
        _ = machine.reserveSpares(for: call, now: .ms(0))
        _ = machine.spawned("sp1", for: call, warmKey: nil, spareKey: call.spareKey, now: .ms(0))
        _ = machine.sparePrepared(call.spareKey, id: "sp1")
        _ = machine.spawned("busy", for: call, warmKey: nil, spareKey: nil, now: .ms(0))
        let check23 = machine.tick(now: .ms(99)).destroy.isEmpty
        #expect(check23)
        let due = machine.tick(now: .ms(100))
        #expect(due.destroy.map(\.id) == ["sp1"] && due.destroy.first?.reason == .idle)
        let check24 = machine.tick(now: .ms(10_000)).destroy.isEmpty
        #expect(check24, "a per-call worker ends with its call or lease")
        #expect(machine.spares.count == 1, "the second reservation is still being confined")
    }

    @Test func aProcessItsTenantSharesEndsWithTheRunnerNotALease() {
        var machine = Machine(settings: Self.settings(idle: 1_000))
        let launch = UpstreamLaunch(server: "kb", command: ["kb"], environment: [:])
        let shared = UpstreamCall(launch: launch, mounts: [], scope: .tenant(workspace: false), tool: "search")
        let call = Self.call(leaseEnd: 10, upstream: shared)
        #expect(call.leaseEnd == nil)
        let check25 = Self.warmCall(&machine, call, spawning: "up1", at: 0).worker == "up1"
        #expect(check25)
        // Another session of the tenant is served by it, and that session's revoke leaves it.
        let second = Self.warmCall(&machine, Self.call(session: "s2", upstream: shared), spawning: "x", at: 5)
        #expect(second.worker == "up1")
        let check26 = machine.retire(session: "s1", reason: .sessionRevoked, now: .ms(6)).isEmpty
        #expect(check26)
        let check27 = machine.tick(now: .ms(500)).destroy.isEmpty
        #expect(check27, "past the lease of the call that started it")
        let check28 = machine.tick(now: .ms(1_005)).destroy.map(\.reason) == [.idle]
        #expect(check28)
    }

    @Test func aWatchedLeaseIsReportedOnceWhenItEnds() {
        var machine = Machine(settings: Self.settings())
        let lease = Machine.LeaseEnd(sessionID: "s1", leaseID: "l1", at: .ms(2_000))
        let check29 = machine.watchLease(lease)
        #expect(check29)
        let check30 = !machine.watchLease(lease)
        #expect(check30, "watched once")
        #expect(machine.deadline == .ms(2_000))
        let check31 = machine.tick(now: .ms(1_999)).leasesEnded.isEmpty
        #expect(check31)
        let check32 = machine.tick(now: .ms(2_000)).leasesEnded == [lease]
        #expect(check32)
        let check33 = machine.tick(now: .ms(3_000)).leasesEnded.isEmpty
        #expect(check33)
        let check34 = machine.watchLease(Machine.LeaseEnd(sessionID: "s1", leaseID: "l2", at: .ms(9_000)))
        #expect(check34)
    }

    @Test func aWallClockStepMovesLeaseEndsButNotIdleTimeouts() {
        var machine = Machine(settings: Self.settings(idle: 60_000))
        _ = Self.warmCall(&machine, Self.call(leaseEnd: 50_000), spawning: "w1", at: 0)
        let watched = Machine.LeaseEnd(sessionID: "s2", leaseID: "l2", at: .ms(40_000))
        let check35 = machine.watchLease(watched)
        #expect(check35)
        // The wall clock steps 55 s forward at 1 s: both lease ends are now behind it.
        machine.wallClockStepped(by: .milliseconds(55_000))
        #expect(machine.deadline == .ms(-15_000))
        let due = machine.tick(now: .ms(1_000))
        #expect(due.destroy.map(\.id) == ["w1"] && due.destroy.first?.reason == .leaseExpired)
        #expect(due.leasesEnded.map(\.leaseID) == ["l2"])
        // A backward step lengthens a lease's life by the step; the idle timeout stays elapsed time.
        _ = Self.warmCall(&machine, Self.call(session: "s3", leaseEnd: 10_000), spawning: "w3", at: 2_000)
        machine.wallClockStepped(by: .milliseconds(-100_000))
        #expect(machine.deadline == .ms(62_000), "idle at 2 s + 60 s comes before the lease end at 110 s")
        let check36 = machine.tick(now: .ms(62_000)).destroy.map(\.reason) == [.idle]
        #expect(check36)
    }

    // MARK: Retirements

    @Test func aRevokeKillsEveryLeaseOfTheSessionAndVoidsCallsAuthorizedBeforeIt() {
        var machine = Machine(settings: Self.settings())
        _ = Self.warmCall(&machine, Self.call(lease: "l1"), spawning: "w1", at: 0)
        _ = Self.warmCall(&machine, Self.call(lease: "l2"), spawning: "w2", at: 0)
        _ = Self.warmCall(&machine, Self.call(session: "s2"), spawning: "w3", at: 0)
        // A call authorized before the revoke, still on its way (waiting on a lane or a spawn).
        let queued = Self.call(at: 90)
        let check35 = machine.callArrived(queued, now: .ms(95)) == nil
        #expect(check35)
        let destroyed = machine.retire(session: "s1", reason: .sessionRevoked, now: .ms(100))
        #expect(Set(destroyed.map(\.id)) == ["w1", "w2"] && destroyed.allSatisfy { $0.reason == .sessionRevoked })
        let check36 = machine.warmWorker(for: queued) == .voided
        #expect(check36)
        let check37 = machine.takeSpare(for: queued) == .voided
        #expect(check37)
        let confinedAcross = machine.spawned("w9", for: queued, warmKey: queued.warmKey, spareKey: nil, now: .ms(120))
        #expect(confinedAcross, "a worker confined across the revoke is voided")
        machine.callLeft(queued)
        let check38 = machine.callArrived(Self.call(at: 100), now: .ms(101)) == Machine.voided
        #expect(check38, "authorized at the revoke")
        let later = machine.callArrived(Self.call(at: 101), now: .ms(102))
        #expect(later == nil, "a later authorization is a new decision")
        #expect(machine.entries["w3"] != nil, "another session is untouched")
    }

    @Test func aRenewalKillsTheOldLeasesWorkersOnly() {
        var machine = Machine(settings: Self.settings())
        _ = Self.warmCall(&machine, Self.call(lease: "l1"), spawning: "w1", at: 0)
        _ = Self.warmCall(&machine, Self.call(lease: "l2"), spawning: "w2", at: 0)
        let destroyed = machine.retire(session: "s1", exceptLease: "l2", reason: .leaseReplaced, now: .ms(50))
        #expect(destroyed.map(\.id) == ["w1"] && destroyed.first?.reason == .leaseReplaced)
        let check39 = machine.callArrived(Self.call(lease: "l1", at: 10), now: .ms(60)) == Machine.voided
        #expect(check39)
        let check40 = machine.callArrived(Self.call(lease: "l2", at: 10), now: .ms(60)) == nil
        #expect(check40)
        // A revoked lease (no lease in force) retires the whole session.
        let revoked = machine.retire(session: "s1", exceptLease: nil, reason: .leaseReplaced, now: .ms(70))
        #expect(revoked.map(\.id) == ["w2"])
        let check41 = machine.callArrived(Self.call(lease: "l2", at: 65), now: .ms(80)) == Machine.voided
        #expect(check41)
    }

    @Test func aWorkspaceRemovalKillsItsWorkersOfThatTenantOnly() {
        var machine = Machine(settings: Self.settings())
        _ = Self.warmCall(&machine, Self.call(tenant: "acme", workspace: "w1"), spawning: "a1", at: 0)
        _ = Self.warmCall(&machine, Self.call(tenant: "acme", workspace: "w2", session: "s2"), spawning: "a2", at: 0)
        _ = Self.warmCall(&machine, Self.call(tenant: "globex", workspace: "w1", session: "s3"), spawning: "g1", at: 0)
        let destroyed = machine.retire(tenant: "acme", workspace: "w1", reason: .workspaceRemoved, now: .ms(10))
        #expect(destroyed.map(\.id) == ["a1"] && destroyed.first?.reason == .workspaceRemoved)
        #expect(Set(machine.entries.keys) == ["a2", "g1"])
        let check42 =
            machine.callArrived(Self.call(tenant: "acme", workspace: "w1", at: 5), now: .ms(11)) == Machine.voided
        #expect(check42)
        let check43 = machine.callArrived(Self.call(tenant: "globex", workspace: "w1", at: 5), now: .ms(11)) == nil
        #expect(check43)
    }

    @Test func aPolicyChangeKillsWarmWorkersAndSparesOfItsTiersNotCallsInFlight() {
        var machine = Machine(settings: Self.settings())
        _ = Self.warmCall(&machine, Self.call(), spawning: "warm", at: 0)
        let perCall = Self.call(tier: Self.exec)
        _ = machine.reserveSpares(for: perCall, now: .ms(0))
        _ = machine.spawned("spare", for: perCall, warmKey: nil, spareKey: perCall.spareKey, now: .ms(0))
        _ = machine.sparePrepared(perCall.spareKey, id: "spare")
        _ = machine.spawned("inCall", for: perCall, warmKey: nil, spareKey: nil, now: .ms(0))
        let check44 = machine.tiersChanged(["read"]).map(\.id) == ["warm"]
        #expect(check44)
        let exec = machine.tiersChanged(["exec"])
        #expect(exec.map(\.id) == ["spare"] && exec.first?.reason == .tierChanged)
        #expect(Set(machine.entries.keys) == ["inCall"], "a call in flight ends on the tier that decided it")
    }

    @Test func anUpstreamChangeKillsItsProcessesAndForgetsItsFailures() {
        var machine = Machine(settings: Self.settings())
        let launch = UpstreamLaunch(server: "kb", command: ["kb"], environment: [:])
        let upstream = UpstreamCall(launch: launch, mounts: [], scope: .session, tool: "search")
        let call = Self.call(upstream: upstream)
        _ = Self.warmCall(&machine, call, spawning: "up1", at: 0)
        _ = Self.warmCall(&machine, Self.call(session: "s9"), spawning: "other", at: 0)
        machine.upstreamFailed(call.warmKey, now: .ms(0))
        machine.upstreamFailed(call.warmKey, now: .ms(0))
        #expect(machine.upstreamBackoff(call.warmKey, now: .ms(0)) == 250)
        let destroyed = machine.retire(upstream: "kb")
        #expect(destroyed.map(\.id) == ["up1"] && destroyed.first?.reason == .upstreamChanged)
        #expect(machine.upstreamBackoff(call.warmKey, now: .ms(0)) == nil)
    }

    @Test func aFailingUpstreamIsRestartedAfterABackoffThatDoublesToThirtySeconds() {
        var machine = Machine(settings: Self.settings())
        let launch = UpstreamLaunch(server: "kb", command: ["kb"], environment: [:])
        let call = Self.call(upstream: UpstreamCall(launch: launch, mounts: [], scope: .session, tool: "search"))
        machine.upstreamFailed(call.warmKey, now: .ms(0))
        #expect(machine.upstreamBackoff(call.warmKey, now: .ms(0)) == nil, "at once after the first failure")
        var expected: [Int] = []
        var seen: [Int] = []
        for failure in 2...10 {
            machine.upstreamFailed(call.warmKey, now: .ms(0))
            seen.append(machine.upstreamBackoff(call.warmKey, now: .ms(0)) ?? 0)
            expected.append(min(30_000, 250 << min(failure - 2, 7)))
        }
        #expect(seen == expected)
        let check45 = machine.callArrived(call, now: .ms(29_999))?.code == "upstream_unavailable"
        #expect(check45)
        let check46 = machine.callArrived(call, now: .ms(30_000)) == nil
        #expect(check46)
        machine.upstreamAnswered(call.warmKey)
        #expect(machine.upstreamBackoff(call.warmKey, now: .ms(0)) == nil)
    }

    @Test func shutdownKillsEveryWorkerAndRefusesEveryCall() {
        var machine = Machine(settings: Self.settings())
        _ = Self.warmCall(&machine, Self.call(), spawning: "w1", at: 0)
        _ = Self.warmCall(&machine, Self.call(tenant: "globex", session: "s2"), spawning: "w2", at: 0)
        let inFlight = Self.call(at: 1)
        let check47 = machine.callArrived(inFlight, now: .ms(1)) == nil
        #expect(check47)
        let destroyed = machine.shutdown()
        #expect(Set(destroyed.map(\.id)) == ["w1", "w2"] && destroyed.allSatisfy { $0.reason == .shutdown })
        let check48 = machine.callArrived(Self.call(at: 2), now: .ms(2))?.code == "runner_shutting_down"
        #expect(check48)
        let late = machine.spawned("late", for: inFlight, warmKey: inFlight.warmKey, spareKey: nil, now: .ms(3))
        #expect(late, "a worker confined across shutdown is voided")
        let check49 = machine.reserveSpares(for: Self.call(tier: Self.exec), now: .ms(3)).count == 0
        #expect(check49)
        let check50 = !machine.watchLease(Machine.LeaseEnd(sessionID: "s1", leaseID: "l1", at: .ms(9)))
        #expect(check50)
    }

    // MARK: Bounds

    @Test func callsInFlightAreBoundedPerSessionAndPerTenant() {
        let shares = TenantShares(standard: TenantShares.Caps(workers: 8, callsInFlight: 3))
        var machine = Machine(settings: Self.settings(callsPerSession: 2, shares: shares))
        let one = Self.call()
        let check51 = machine.callArrived(one, now: .ms(0)) == nil
        #expect(check51)
        let check52 = machine.callArrived(one, now: .ms(0)) == nil
        #expect(check52)
        let check53 = machine.callArrived(one, now: .ms(0))?.code == "too_many_calls"
        #expect(check53)
        let two = Self.call(session: "s2")
        let check54 = machine.callArrived(two, now: .ms(0)) == nil
        #expect(check54)
        let check55 = machine.callArrived(Self.call(session: "s3"), now: .ms(0))?.code == "tenant_at_limit"
        #expect(check55)
        let otherTenant = machine.callArrived(Self.call(tenant: "globex", session: "g1"), now: .ms(0))
        #expect(otherTenant == nil, "another tenant notices nothing")
        machine.callLeft(one)
        let check56 = machine.callArrived(Self.call(session: "s3"), now: .ms(0)) == nil
        #expect(check56)
    }

    @Test func aTenantAtItsWorkerCapMakesRoomAmongItsOwnIdleWorkersOnly() {
        let shares = TenantShares(standard: TenantShares.Caps(workers: 2, callsInFlight: 64))
        var machine = Machine(settings: Self.settings(shares: shares))
        _ = Self.warmCall(&machine, Self.call(session: "s1"), spawning: "a1", at: 0)
        _ = Self.warmCall(&machine, Self.call(session: "s2"), spawning: "a2", at: 5)
        _ = Self.warmCall(&machine, Self.call(tenant: "globex", session: "g1"), spawning: "g1", at: 0)
        // a1 idle longest: it makes room for acme's third session.
        let third = Self.warmCall(&machine, Self.call(session: "s3"), spawning: "a3", at: 10)
        #expect(third.worker == "a3" && third.destroyed.map(\.id) == ["a1"] && third.destroyed.first?.detail != nil)
        #expect(machine.entries["g1"] != nil)
        // With both of its workers in calls (their lanes held), the tenant is refused.
        _ = machine.enterLane(Self.call(session: "s2").warmKey)
        _ = machine.enterLane(Self.call(session: "s3").warmKey)
        let room = machine.makeRoom(for: Self.call(session: "s4"), spare: false)
        #expect(room.destroy.isEmpty && room.refusal?.code == .tenantAtLimit)
    }

    @Test func theRunnerCapEvictsASpareFirstThenTheIdlestOfATenantAboveItsShare() {
        let shares = TenantShares(standard: TenantShares.Caps(workers: 4, callsInFlight: 64))
        var machine = Machine(settings: Self.settings(workers: 4, shares: shares))
        _ = Self.warmCall(&machine, Self.call(session: "s1"), spawning: "a1", at: 0)
        _ = Self.warmCall(&machine, Self.call(session: "s2"), spawning: "a2", at: 1)
        _ = Self.warmCall(&machine, Self.call(session: "s3"), spawning: "a3", at: 2)
        _ = Self.warmCall(&machine, Self.call(tenant: "globex", session: "g1"), spawning: "g1", at: 0)
        // acme holds 3 of 4 (share 2): its idlest goes, though globex's is as idle.
        let room = machine.makeRoom(for: Self.call(tenant: "globex", session: "g2"), spare: false)
        #expect(room.refusal == nil && room.destroy.map(\.id) == ["a1"])
        // A spare never makes room for itself, and is the first to go for a call.
        let perCall = Self.call(tier: Self.exec, tenant: "globex", session: "g3")
        let check57 = machine.makeRoom(for: perCall, spare: true).refusal == nil
        #expect(check57)
        _ = machine.spawned("spare", for: perCall, warmKey: nil, spareKey: perCall.spareKey, now: .ms(3))
        let check58 = machine.makeRoom(for: perCall, spare: true).refusal?.code == .tenantAtLimit
        #expect(check58)
        let check59 = machine.makeRoom(for: Self.call(session: "s9"), spare: false).destroy.map(\.id) == ["spare"]
        #expect(check59)
    }
}
