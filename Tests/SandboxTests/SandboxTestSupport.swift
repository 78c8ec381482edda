import CSandbox
import Foundation
import NIOPosix
import SandboxProtocol
import Testing

@testable import Sandbox

#if canImport(Glibc)
    import Glibc
#endif

/// Builds and places what the sandbox tests run: the static syscall probe, temporary workspaces,
/// and a pool over the real `leasehold-worker` from this build.
enum SandboxFixture {
    static var testsDirectory: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent() }

    /// A directory every test user can traverse (the suite also runs unprivileged).
    static func temporaryDirectory(_ name: String) throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let path = URL(fileURLWithPath: base).resolvingSymlinksInPath().path + "/lh-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// As root, workers must run as an unprivileged host id (never host root): the tests use one
    /// outside every range a distribution hands out. Nil when the tests run unprivileged.
    static let hostIdentity: WorkerHostIdentity? = geteuid() == 0 ? WorkerHostIdentity(uid: 1_999_990_001, gid: 1_999_990_001) : nil

    /// Gives `root` and everything in it to the workers' host id (root runs only), as the runner
    /// does for a tenant's workspace.
    static func giveToWorkers(_ root: String) {
        guard let identity = hostIdentity else { return }
        // lchown, and never into a root that is a symlink: tests swap roots for symlinks on purpose.
        var info = stat()
        guard lstat(root, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return }
        _ = lchown(root, identity.uid, identity.gid)
        guard let entries = FileManager.default.enumerator(atPath: root) else { return }
        for case let entry as String in entries {
            _ = lchown(root + "/" + entry, identity.uid, identity.gid)
        }
    }

    /// The probe, compiled statically once per process (gcc is part of the build machine).
    static let probe: Result<String, ProbeBuildError> = {
        do {
            let directory = try temporaryDirectory("probe")
            let output = directory + "/try-syscall"
            let compiler = Process()
            compiler.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            compiler.arguments = [
                "cc", "-static", "-O2", "-o", output,
                testsDirectory.appendingPathComponent("Fixtures/try-syscall.c").path,
            ]
            let errors = Pipe()
            compiler.standardError = errors
            try compiler.run()
            compiler.waitUntilExit()
            guard compiler.terminationStatus == 0 else {
                let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                return .failure(ProbeBuildError(message: "cc failed: \(text)"))
            }
            return .success(output)
        } catch {
            return .failure(ProbeBuildError(message: "\(error)"))
        }
    }()

    /// The tier the shipped policy gives each profile, with small limits for tests.
    static func tier(
        _ profile: SeccompProfileName, isolation: WorkerTier.Isolation? = nil, limits: WorkerLimits? = nil
    ) -> WorkerTier {
        let defaults: WorkerLimits =
            switch profile {
            case .read: WorkerLimits(wallMs: 10_000, cpuSeconds: 10, memoryMiB: 256, fileSizeMiB: 0, processes: 1)
            case .write: WorkerLimits(wallMs: 10_000, cpuSeconds: 10, memoryMiB: 256, fileSizeMiB: 64, processes: 1)
            case .exec:
                WorkerLimits(
                    wallMs: 30_000, cpuSeconds: 30, memoryMiB: 1024, fileSizeMiB: 256, processes: 64, openFiles: 1024)
            }
        return WorkerTier(
            name: profile.rawValue, isolation: isolation ?? (profile == .exec ? .call : .session), profile: profile,
            limits: limits ?? defaults)
    }

    static func launch(executable: String? = nil) throws -> WorkerLaunch {
        try WorkerLaunch(
            executable: executable ?? WorkerLaunch.defaultExecutable(),
            supportDirectory: try temporaryDirectory("support"))
    }

    /// One long-lived spawning thread for the suite: a worker gets SIGKILL when the thread that
    /// spawned it exits (PR_SET_PDEATHSIG), so it must outlive every probe run.
    static let spawnThread: NIOThreadPool = {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        return thread
    }()

    /// Runs `arguments` of `executable` in exactly a worker's confinement for `tier`, with its
    /// stdout on the channel; returns what it wrote and how it ended.
    /// `network`: as a worker of an upstream server with a network grant; `listener` sees the
    /// egress listener it hands back (the runner's end; closed after the run).
    static func runConfined(
        _ executable: String, tier: WorkerTier, root: String, arguments: [String], network: Bool = false,
        listener: (Int32) -> Void = { _ in }
    ) async throws -> (output: String, exited: Int32, signal: Int32) {
        let launch = try launch(executable: executable)
        giveToWorkers(root)
        let started = await WorkerPool.startProcess(
            launch: launch, programs: SeccompPrograms(), spawnThread: spawnThread, tier: tier, root: root,
            workspaceReadOnly: false, hostIdentity: hostIdentity, network: network, arguments: arguments,
            stdoutToChannel: true)
        let process = try started.get()
        listener(process.egressListener)
        defer { if process.egressListener >= 0 { close(process.egressListener) } }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(process.channel, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            output += buffer[0..<count]
        }
        close(process.channel)
        var exited: Int32 = 0
        var code: Int32 = 0
        _ = csb_pidfd_reap(process.pidfd, 0, &exited, &code)
        close(process.pidfd)
        return (String(decoding: output, as: UTF8.self), exited == 1 ? code : -1, exited == 1 ? 0 : code)
    }
}

struct ProbeBuildError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Collects the pool's worker events, so tests wait on the event (a destruction with its reason)
/// rather than on time.
actor EventLog {
    private(set) var events: [WorkerEvent] = []
    private var waiters: [(predicate: @Sendable (WorkerEvent) -> Bool, continuation: CheckedContinuation<WorkerEvent, Never>)] = []

    func record(_ event: WorkerEvent) {
        events.append(event)
        var remaining: [(predicate: @Sendable (WorkerEvent) -> Bool, continuation: CheckedContinuation<WorkerEvent, Never>)] = []
        for waiter in waiters {
            if waiter.predicate(event) { waiter.continuation.resume(returning: event) } else { remaining.append(waiter) }
        }
        waiters = remaining
    }

    /// The first event (past or future) matching `predicate`.
    func first(where predicate: @escaping @Sendable (WorkerEvent) -> Bool) async -> WorkerEvent {
        if let seen = events.first(where: predicate) { return seen }
        return await withCheckedContinuation { waiters.append((predicate, $0)) }
    }
}

/// A pool over the real worker with its events recorded.
func makePool(idleTimeout: Duration = .seconds(300)) throws -> (WorkerPool, EventLog) {
    let log = EventLog()
    let pool = WorkerPool(
        launch: try SandboxFixture.launch(), idleTimeout: idleTimeout, onEvent: { await log.record($0) })
    return (pool, log)
}

/// An invocation of `tool` for a (tenant, session) over `root`.
func invocation(
    _ tool: String, _ arguments: String, tier: WorkerTier, root: String, tenant: String = "acme",
    session: String = "s1", actor: String = "alice", lease: String = "l1", leaseEnds: Date = Date().addingTimeInterval(600)
) -> ToolInvocation {
    SandboxFixture.giveToWorkers(root)
    return ToolInvocation(
        tool: tool, tier: tier, arguments: Array(arguments.utf8), tenantID: tenant, workspaceID: "main",
        workspaceRoot: root, sessionID: session, actorID: actor, leaseID: lease, leaseExpiresAt: leaseEnds,
        policyVersion: "test", hostIdentity: SandboxFixture.hostIdentity)
}

/// The result JSON of a completed execution, or a recorded issue.
func resultObject(_ execution: ToolExecution, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
    guard case .completed(let bytes, _) = execution.outcome else {
        Issue.record("not completed: \(execution.outcome)", sourceLocation: sourceLocation)
        return [:]
    }
    return (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
}
