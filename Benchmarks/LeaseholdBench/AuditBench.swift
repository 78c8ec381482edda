import Foundation
import Runner

/// Figure 3: the audit trail's cost per record, with group commit (many concurrent calls share a
/// transaction) and without it (one caller at a time: one durable commit per record, which is
/// what writing each record in its own transaction costs). Records are `call.intent` events with
/// every field a real call fills, appended to a fresh log on the same disk as the state directory.
struct AuditResult: Encodable {
    let concurrency: Int
    let records: Int
    let totalMs: Double
    let amortizedUs: Double
    let commits: Int
    let latency: Summary

    enum CodingKeys: String, CodingKey {
        case concurrency, records, commits, latency
        case totalMs = "total_ms"
        case amortizedUs = "amortized_us"
    }
}

enum AuditBench {
    static func event(_ index: Int) -> AuditEvent {
        var event = AuditEvent("call.intent")
        event.tenant = "acme"
        event.actor = "alice"
        event.session = "ses_0123456789abcdef0123456789abcdef"
        event.lease = "lse_0123456789abcdef0123456789abcdef"
        event.claimFingerprint = String(repeating: "ab", count: 32)
        event.workspace = "main"
        event.tool = "repo.read_file"
        event.argumentsDigest = String(repeating: "cd", count: 32)
        event.decision = "allowed"
        event.policyVersion = "327b39a626a11e95"
        event.tier = "read"
        event.isolation = "session"
        event.requestID = String(index)
        return event
    }

    static func run(records: Int, concurrency: Int, directory: String) async throws -> AuditResult {
        let path = directory + "/audit-\(concurrency)-\(UUID().uuidString).sqlite"
        let log = try AuditLog(path: path, node: "bench")
        for index in 0..<min(50, records) { try await log.append(event(index)) }  // warm-up
        let commitsBefore = await log.commits
        let clock = ContinuousClock()
        let perTask = max(1, records / concurrency)
        let started = clock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for task in 0..<concurrency {
                group.addTask {
                    var times: [Double] = []
                    times.reserveCapacity(perTask)
                    for index in 0..<perTask {
                        let t0 = clock.now
                        try await log.append(event(task * perTask + index))
                        times.append((clock.now - t0).nanoseconds)
                    }
                    return times
                }
            }
            return try await group.reduce(into: [Double]()) { $0 += $1 }
        }
        let total = (clock.now - started).nanoseconds
        let commits = await log.commits - commitsBefore
        guard case .ok = try log.verify() else { throw BenchError("the benchmark's audit chain does not verify") }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        let written = perTask * concurrency
        note(
            "audit concurrency \(concurrency): \(written) records in \(fmt(total / 1e6)) ms, "
                + "\(fmt(total / Double(written) / 1000)) us/record, \(commits) commits")
        return AuditResult(
            concurrency: concurrency, records: written, totalMs: total / 1e6,
            amortizedUs: total / Double(written) / 1000,
            commits: commits, latency: Summary(nanoseconds: latencies))
    }
}
