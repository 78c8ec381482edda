import Foundation
import Testing

@testable import Sandbox

/// One tenant cannot hold the workers or calls the others need (issue 14, finding 3): each tenant
/// has a cap on live workers and on calls in flight, and idle warm workers make room — a tenant's
/// own at its cap, and on a full runner those of tenants above an equal share first — before any
/// call is refused for capacity.
@Suite(.timeLimit(.minutes(2))) struct FairShareTests {
    static let read = SandboxFixture.tier(.read)
    static let stat = #"{"path":"."}"#

    func pool(workers: Int, tenantWorkers: Int, tenantCalls: Int = 64) throws -> (WorkerPool, EventLog) {
        let log = EventLog()
        let pool = WorkerPool(
            launch: try SandboxFixture.launch(), maximumSpares: 0, maximumWorkers: workers,
            shares: TenantShares(standard: .init(workers: tenantWorkers, callsInFlight: tenantCalls)),
            onEvent: { await log.record($0) })
        return (pool, log)
    }

    func warm(_ pool: WorkerPool, _ tenant: String, _ session: String, root: String) async -> ToolExecution {
        let call = await pool.execute(
            invocation("repo.stat", Self.stat, tier: Self.read, root: root, tenant: tenant, session: session))
        #expect(resultObject(call)["type"] as? String == "dir", "\(tenant)/\(session): \(call.outcome)")
        return call
    }

    func destroyed(_ log: EventLog) async -> [String: String] {
        var gone: [String: String] = [:]
        for event in await log.events where event.kind == .destroyed {
            gone[event.sessionID] = event.tenantID
        }
        return gone
    }

    @Test func aTenantAtItsWorkerCapMakesRoomAmongItsOwnIdleWorkers() async throws {
        let (pool, log) = try pool(workers: 8, tenantWorkers: 2)
        let acme = try SandboxFixture.temporaryDirectory("fair-acme")
        let globex = try SandboxFixture.temporaryDirectory("fair-globex")
        _ = await warm(pool, "globex", "g1", root: globex)
        _ = await warm(pool, "acme", "s1", root: acme)
        _ = await warm(pool, "acme", "s2", root: acme)
        // A third acme session: acme's least recently used idle worker goes, nobody else's.
        _ = await warm(pool, "acme", "s3", root: acme)
        #expect(await destroyed(log) == ["s1": "acme"])
        #expect(await pool.liveWorkerCount == 3)
        await pool.shutdown()
    }

    @Test func aFullRunnerMakesRoomFromTheTenantAboveItsShare() async throws {
        let (pool, log) = try pool(workers: 3, tenantWorkers: 3)
        let acme = try SandboxFixture.temporaryDirectory("fair-acme")
        let globex = try SandboxFixture.temporaryDirectory("fair-globex")
        // acme's idle warm workers fill the runner.
        for session in ["s1", "s2", "s3"] { _ = await warm(pool, "acme", session, root: acme) }
        // globex still gets workers: acme, above an equal share, gives up its idle ones, oldest first.
        _ = await warm(pool, "globex", "g1", root: globex)
        _ = await warm(pool, "globex", "g2", root: globex)
        #expect(await destroyed(log) == ["s1": "acme", "s2": "acme"])
        // With globex at 2 of 3 it is now the one above an equal share (1): acme's next session
        // takes globex's oldest idle worker, not acme's own last one.
        _ = await warm(pool, "acme", "s4", root: acme)
        #expect(await destroyed(log) == ["s1": "acme", "s2": "acme", "g1": "globex"])
        #expect(await pool.liveWorkerCount == 3)
        await pool.shutdown()
    }

    /// Starts a call of acme's session s1 that stays in flight for two seconds (a `sleep` in a
    /// per-call worker, the workload itself) and returns once it is in flight: its worker exists.
    func holdACall(_ pool: WorkerPool, _ log: EventLog, root: String) async -> Task<ToolExecution, Never> {
        let long = Task {
            await pool.execute(
                invocation(
                    "shell.run", #"{"argv":["sleep","2"]}"#, tier: SandboxFixture.tier(.exec), root: root, session: "s1"))
        }
        _ = await log.first { $0.kind == .spawned && $0.sessionID == "s1" }
        return long
    }

    @Test func aTenantsCallsInFlightAreCappedAndOthersAreNot() async throws {
        let (pool, log) = try pool(workers: 8, tenantWorkers: 8, tenantCalls: 1)
        let acme = try SandboxFixture.temporaryDirectory("fair-acme")
        let globex = try SandboxFixture.temporaryDirectory("fair-globex")
        let long = await holdACall(pool, log, root: acme)
        let refused = await pool.execute(
            invocation("repo.stat", Self.stat, tier: Self.read, root: acme, session: "s2"))
        guard case .failed(let code, let message) = refused.outcome else {
            Issue.record("a second acme call ran: \(refused.outcome)")
            return
        }
        #expect(code == "tenant_at_limit" && message.contains("1 calls in flight"), "\(message)")
        // Another tenant is not held up by acme's calls.
        _ = await warm(pool, "globex", "g1", root: globex)
        #expect(resultObject(await long.value)["exit_code"] as? Int == 0)
        // The slot is given back when the call ends.
        _ = await warm(pool, "acme", "s2", root: acme)
        await pool.shutdown()
    }

    @Test func whenATenantsWorkersAreAllInCallsItAloneIsRefused() async throws {
        let (pool, log) = try pool(workers: 8, tenantWorkers: 1)
        let acme = try SandboxFixture.temporaryDirectory("fair-acme")
        let globex = try SandboxFixture.temporaryDirectory("fair-globex")
        let long = await holdACall(pool, log, root: acme)
        let refused = await pool.execute(invocation("repo.stat", Self.stat, tier: Self.read, root: acme, session: "s2"))
        guard case .failed(let code, _) = refused.outcome else {
            Issue.record("acme got a second worker: \(refused.outcome)")
            return
        }
        #expect(code == "tenant_at_limit")
        _ = await warm(pool, "globex", "g1", root: globex)
        _ = await long.value
        await pool.shutdown()
    }

    @Test func caps() {
        let shares = TenantShares(
            standard: .init(workers: 4, callsInFlight: 8), overrides: ["big": .init(workers: 64, callsInFlight: 128)])
        #expect(shares.caps("acme") == .init(workers: 4, callsInFlight: 8))
        #expect(shares.caps("big").workers == 64)
        #expect(TenantShares(maximumWorkers: 512).standard == .init(workers: 128, callsInFlight: 64))
        #expect(TenantShares(maximumWorkers: 2).standard.workers == 1)
    }
}
