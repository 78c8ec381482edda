import Foundation
import GRDB
import MCP
import Sandbox
import Testing

@testable import Runner

@Suite struct AuditLogTests {
    func temporaryPath() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-audit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/audit.sqlite"
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
