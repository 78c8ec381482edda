import Foundation

/// The thread the audit log's actor runs on: a serial executor with one thread of its own.
///
/// The writer blocks while it commits — on SQLite's fsync, or on PostgreSQL's round trips
/// (`EventLoopFuture.wait()`, see `AuditPostgres`) — so that one commit is in flight by
/// construction. On Swift's cooperative pool (one thread per core, two here) that blocking took
/// a thread every other task needed: with several logs in one process (the cluster tests' nodes)
/// all of them could be held waiting on a lock another log's next step had to release, and every
/// unrelated task stalled behind them. On a thread of its own the writer blocks only itself.
///
/// Hand-written because neither Foundation nor NIO offers a thread-backed `SerialExecutor` that
/// may block (NIO's event loops must not). Jobs run in the order they were enqueued.
final class AuditThread: SerialExecutor, @unchecked Sendable {
    // @unchecked: `jobs` and `stopped` are only touched with `condition` held.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Ends the thread once the jobs already enqueued have run (the log is going away).
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            let done = stopped && batch.isEmpty
            condition.unlock()
            if done { return }
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
        }
    }
}
