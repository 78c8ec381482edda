import Foundation
import Testing

@testable import Sandbox

/// Many workers spawned at once, by several pools, all come up. Found while testing fair shares:
/// a root runner's concurrent spawns failed at stage userns_map (EACCES), because its CLONE_VM
/// children share the memory whose dumpability setresuid clears.
@Suite(.timeLimit(.minutes(2))) struct ConcurrentSpawnTests {
    @Test func concurrentSpawnsAllComeUp() async throws {
        let pools = try (0..<4).map { _ in
            WorkerPool(launch: try SandboxFixture.launch(), maximumSpares: 0, maximumWorkers: 64)
        }
        let root = try SandboxFixture.temporaryDirectory("spawn-burst")
        let read = SandboxFixture.tier(.read)
        for round in 0..<10 {
            let outcomes = await withTaskGroup(of: ToolExecution.self) { group in
                for index in 0..<16 {
                    let pool = pools[index % pools.count]
                    group.addTask {
                        await pool.execute(
                            invocation(
                                "repo.stat", #"{"path":"."}"#, tier: read, root: root, tenant: "t\(index % 3)",
                                session: "r\(round)-\(index)"))
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            for outcome in outcomes {
                guard case .completed = outcome.outcome else {
                    Issue.record("round \(round): \(outcome.outcome)")
                    continue
                }
            }
        }
        for pool in pools { await pool.shutdown() }
    }
}
