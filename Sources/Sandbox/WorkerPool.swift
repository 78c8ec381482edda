import CSandbox
import Foundation
import Logging
import NIOCore
import NIOPosix
import SandboxProtocol

/// Something that happened to a worker, for the audit trail.
public struct WorkerEvent: Sendable, Hashable {
    /// What happened.
    public enum Kind: String, Sendable, Hashable {
        /// A worker was confined and answered the handshake.
        case spawned = "worker.spawned"
        /// A worker (and its whole process tree) was killed.
        case destroyed = "worker.destroyed"
        /// A worker could not be started; `detail` names the stage and errno.
        case spawnFailed = "worker.spawn_failed"
    }

    /// What happened.
    public var kind: Kind
    /// The worker, when one existed.
    public var workerID: String?
    /// The (tenant, workspace, session, actor, lease) it was bound to.
    public var tenantID: String
    /// See ``tenantID``.
    public var workspaceID: String
    /// See ``tenantID``.
    public var sessionID: String
    /// See ``tenantID``.
    public var actorID: String
    /// See ``tenantID``.
    public var leaseID: String
    /// Its tier.
    public var tier: String
    /// `call` or `session`.
    public var isolation: WorkerTier.Isolation
    /// Why it was destroyed.
    public var reason: WorkerRetirement?
    /// Operator-facing detail.
    public var detail: String?
    /// For `spawned`: from the spawn request to the worker's handshake (metrics).
    public var spawnDuration: Duration? = nil
}

/// Runs authorized invocations in confined workers (DESIGN.md §2 WorkerPool, §3 invariant 2).
///
/// - `call` isolation: a fresh worker per call, destroyed after it, never reused.
/// - `session` isolation: one warm worker per (session, lease, tier), spawned on first use, bound
///   to its tenant, workspace, actor and tier settings for life. A call whose binding differs in
///   any of these gets a fresh worker and the old one is destroyed.
///
/// Every worker dies (its whole process tree, via its pid namespace) at lease expiry (a timer),
/// session revoke, lease renewal, hand-off, a policy change of its tier, workspace removal, idle
/// timeout, shutdown; and after a limit is exceeded or it crashes. Each destruction is reported.
public actor WorkerPool: ToolExecutor {
    private struct Binding: Sendable, Hashable {
        var tenantID: String
        var workspaceID: String
        var workspaceRoot: String
        var workspaceReadOnly: Bool
        var sessionID: String
        var actorID: String
        var leaseID: String
        var tier: WorkerTier
        var hostIdentity: WorkerHostIdentity?
        /// The upstream server it runs (its tool name left out: one process serves every tool).
        var upstream: UpstreamCall?

        init(_ invocation: ToolInvocation) {
            hostIdentity = invocation.hostIdentity
            tenantID = invocation.tenantID
            workspaceID = invocation.workspaceID
            workspaceRoot = invocation.workspaceRoot
            workspaceReadOnly = invocation.workspaceReadOnly
            sessionID = invocation.sessionID
            actorID = invocation.actorID
            leaseID = invocation.leaseID
            tier = invocation.tier
            upstream = invocation.upstream.map { call in
                var server = call
                server.tool = ""
                return server
            }
            // A process a tenant's sessions share belongs to none of them: it is not retired with
            // a session, and a call of another session or actor of the tenant is served by it.
            switch invocation.upstream?.scope {
            case .tenant(let workspace)?:
                sessionID = ""
                actorID = ""
                leaseID = ""
                if !workspace { workspaceID = "" }
            case .shared?:
                // Every tenant's calls and the catalog's listing go to the one process, which
                // runs as ids of its own (the runner passes those) and holds no workspace.
                tenantID = ""
                sessionID = ""
                actorID = ""
                leaseID = ""
                workspaceID = ""
            case .session?, nil:
                break
            }
        }
    }

    private struct WarmKey: Hashable {
        var sessionID: String
        var leaseID: String
        var tier: String
        /// The upstream server, for a worker running one.
        var server: String = ""

        /// The warm key of a session's tier, or of the process an upstream call goes to.
        init(_ invocation: ToolInvocation) {
            sessionID = invocation.sessionID
            leaseID = invocation.leaseID
            tier = invocation.tier.name
            guard let upstream = invocation.upstream else { return }
            server = upstream.launch.server
            switch upstream.scope {
            case .session: break
            case .tenant(let workspace):
                sessionID = "tenant:" + invocation.tenantID + (workspace ? ":" + invocation.workspaceID : "")
                leaseID = ""
            case .shared:
                sessionID = "shared"
                leaseID = ""
            }
        }

        init(sessionID: String, leaseID: String, tier: String) {
            self.sessionID = sessionID
            self.leaseID = leaseID
            self.tier = tier
        }
    }

    private struct Live {
        var worker: WorkerProcess
        var binding: Binding
        /// The lease's end as the latest call saw it (the lease id is the identity; this is when).
        var leaseExpiresAt: Date
        var warmKey: WarmKey?
        /// Set for a per-call worker prepared ahead of its call (a spare).
        var spareKey: WarmKey?
        var lastUsed: ContinuousClock.Instant
    }

    /// A FIFO lock per warm key: one exchange at a time per worker, callers served in order.
    private final class Lane {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    let launch: WorkerLaunch
    let programs = SeccompPrograms()
    /// The egress proxies of live workers with a network grant, by worker id (their counts go
    /// into the worker's `worker.destroyed` record).
    private var egressProxies: [String: EgressProxy] = [:]
    /// The long-lived threads that call clone: PR_SET_PDEATHSIG fires when the thread that
    /// spawned a worker exits, so these threads live as long as the runner. Two, so a call's own
    /// spawn or a second spare is not queued behind a spawn that waits on the kernel (building and
    /// dropping mount namespaces waits for RCU grace periods). A root runner's spawns take turns
    /// in `csb_spawn` (they change ids in memory they share), whatever the threads.
    let spawnThread: NIOThreadPool
    /// Blocking waitid calls for workers that are exiting.
    private let reapThread: NIOThreadPool
    private let group: any EventLoopGroup
    /// Per-worker cgroups (memory, pids, CPU weight of the whole tree), where the host allows.
    private let cgroups: WorkerCgroups?
    /// Which tier limits hold on a whole worker on this runner.
    public nonisolated let limitEnforcement: LimitEnforcement
    private let onEvent: @Sendable (WorkerEvent) async -> Void
    private let idleTimeout: Duration
    private let logger: Logger

    private var live: [String: Live] = [:]
    private var warm: [WarmKey: String] = [:]
    /// Per-call workers confined ahead of their call, per (session, lease, tier), bounded per key
    /// and on the whole runner.
    private var spares: SpareShelf<WarmKey>
    /// Calls waiting for a spare of their key that is being confined (a call that arrives
    /// meanwhile takes it rather than queueing a spawn of its own behind it).
    private var spareWaiters: [WarmKey: [CheckedContinuation<Void, Never>]] = [:]
    /// When each session and workspace was last retired, and each session's lease in force after
    /// its latest renewal: a call (or spare) authorized before such a moment never starts or keeps
    /// a worker after it, however long it waited on a lane or a spawn. Entries older than an hour
    /// are pruned past 10,000 (no call waits that long).
    private var sessionRetiredAt: [String: ContinuousClock.Instant] = [:]
    private var workspaceRetiredAt: [String: ContinuousClock.Instant] = [:]
    private var leaseRenewedAt: [String: (lease: String, at: ContinuousClock.Instant)] = [:]
    private let spareRequests: AsyncStream<ToolInvocation>
    private let spareContinuation: AsyncStream<ToolInvocation>.Continuation
    private let spareIdleTimeout: Duration
    /// Calls in flight per session, and the most allowed: one session cannot hold the runner's
    /// workers (found in review: 24 concurrent shell.run calls got 24 exec workers).
    private var inFlight: [String: Int] = [:]
    private let maximumCallsPerSession: Int
    /// The most live workers (warm, spares and in-flight per-call workers) on this runner.
    private let maximumWorkers: Int
    /// What each tenant may hold: live workers and calls in flight.
    private let shares: TenantShares
    /// Calls in flight per tenant.
    private var tenantInFlight: [String: Int] = [:]
    private var lanes: [WarmKey: Lane] = [:]
    private var hellos: [HelloKey: [UInt8]] = [:]
    private var shuttingDown = false

    /// Creates the pool.
    ///
    /// - Parameters:
    ///   - idleTimeout: a warm worker without a call for this long is destroyed.
    ///   - spareIdleTimeout: a spare not taken for this long is destroyed.
    ///   - sparesPerSession: spares (ready or being confined) one session keeps per lease and
    ///     per-call tier; two let a session calling back to back find one ready while the next is
    ///     confined.
    ///   - maximumSpares: the most spares on this runner at once (0: none); past it, the spare of
    ///     the session that called least recently makes room. They count against
    ///     `maximumWorkers` too.
    ///   - shares: each tenant's caps on live workers and calls in flight (default: a quarter of
    ///     `maximumWorkers` and 64 calls).
    ///   - cgroups: where workers get their own cgroups (``WorkerCgroups/detect()`` by default;
    ///     nil: none, and tiers that need them are refused unless they accept best-effort limits).
    ///   - onEvent: receives every spawn and destruction (the runner audits them).
    public init(
        launch: WorkerLaunch, idleTimeout: Duration = .seconds(300), spareIdleTimeout: Duration = .seconds(60),
        sparesPerSession: Int = 2, maximumSpares: Int = 16, maximumCallsPerSession: Int = 8,
        maximumWorkers: Int = 512, shares: TenantShares? = nil, cgroups: WorkerCgroups? = WorkerCgroups.detect(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "leasehold.sandbox"),
        onEvent: @escaping @Sendable (WorkerEvent) async -> Void = { _ in }
    ) {
        self.launch = launch
        self.cgroups = cgroups
        self.limitEnforcement = LimitEnforcement(cgroups: cgroups)
        self.idleTimeout = idleTimeout
        self.group = group
        self.logger = logger
        self.onEvent = onEvent
        self.spawnThread = NIOThreadPool(numberOfThreads: 2)
        self.spawnThread.start()
        self.reapThread = NIOThreadPool(numberOfThreads: 1)
        self.reapThread.start()
        self.spareIdleTimeout = spareIdleTimeout
        self.spares = SpareShelf(perKey: sparesPerSession, maximum: maximumSpares)
        self.maximumCallsPerSession = maximumCallsPerSession
        self.maximumWorkers = maximumWorkers
        self.shares = shares ?? TenantShares(maximumWorkers: maximumWorkers)
        (self.spareRequests, self.spareContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(256))
    }

    /// Live workers (for `/metrics`, doctor and tests).
    public var liveWorkerCount: Int { live.count }

    /// Warm workers per session, those of its current lease (spares and upstream processes shared
    /// by a tenant or the runner excluded): what the console shows for a live session.
    public func warmWorkersBySession() -> [String: Int] {
        var counts: [String: Int] = [:]
        for entry in live.values {
            guard let key = entry.warmKey, key.leaseID == entry.binding.leaseID, !key.leaseID.isEmpty else { continue }
            counts[key.sessionID, default: 0] += 1
        }
        return counts
    }

    /// Spares ready or being confined (tests check the bounds).
    var spareCount: Int { spares.count }

    /// Process ids of live workers, by worker id (tests check their process trees die).
    public var livePIDs: [String: Int32] { live.mapValues { $0.worker.pid } }

    // MARK: Executing

    /// Runs one invocation in the worker its tier's isolation calls for.
    public func execute(_ invocation: ToolInvocation) async -> ToolExecution {
        let isolation = invocation.tier.isolation
        let entered = ContinuousClock.now
        guard !shuttingDown else {
            return ToolExecution(
                outcome: .failed(code: SandboxError.Code.shuttingDown.rawValue, message: "the runner is shutting down"),
                workerID: nil, isolation: isolation)
        }
        guard !voided(invocation) else { return voidedResult(invocation) }
        guard inFlight[invocation.sessionID, default: 0] < maximumCallsPerSession else {
            return ToolExecution(
                outcome: .failed(
                    code: "too_many_calls",
                    message: "session \(invocation.sessionID) already has \(maximumCallsPerSession) calls in flight; wait for one to finish"),
                workerID: nil, isolation: isolation)
        }
        let tenantCalls = shares.caps(invocation.tenantID).callsInFlight
        guard tenantInFlight[invocation.tenantID, default: 0] < tenantCalls else {
            return ToolExecution(
                outcome: .failed(
                    code: SandboxError.Code.tenantAtLimit.rawValue,
                    message: "tenant \(invocation.tenantID) already has \(tenantCalls) calls in flight; wait for one to finish"),
                workerID: nil, isolation: isolation)
        }
        inFlight[invocation.sessionID, default: 0] += 1
        tenantInFlight[invocation.tenantID, default: 0] += 1
        defer {
            inFlight[invocation.sessionID, default: 1] -= 1
            if inFlight[invocation.sessionID] == 0 { inFlight[invocation.sessionID] = nil }
            tenantInFlight[invocation.tenantID, default: 1] -= 1
            if tenantInFlight[invocation.tenantID] == 0 { tenantInFlight[invocation.tenantID] = nil }
        }
        switch invocation.upstream == nil ? isolation : .session {
        case .call:
            let key = WarmKey(invocation)
            let binding = Binding(invocation)
            var worker: WorkerProcess?
            while spares.ready[key] == nil, spares.isPreparing(key) {
                await withCheckedContinuation { spareWaiters[key, default: []].append($0) }
                guard !voided(invocation) else { return voidedResult(invocation) }
            }
            // Taken off the shelf before anything else: no other call can be handed it.
            while worker == nil, let id = spares.take(key) {
                guard let entry = live[id] else { continue }
                live[id]?.spareKey = nil
                if entry.binding == binding {
                    worker = entry.worker
                } else {
                    // Same session, lease and tier name, but the tier's settings, the actor or the
                    // workspace moved: the spare belongs to what was.
                    await destroy(id, reason: entry.binding.tier != binding.tier ? .tierChanged : .handOff)
                }
            }
            if worker == nil {
                switch await spawn(for: invocation, warmKey: nil) {
                case .success(let spawned): worker = spawned
                case .failure(let error):
                    return ToolExecution(
                        outcome: .failed(code: error.code.rawValue, message: error.description), workerID: nil,
                        isolation: isolation)
                }
            }
            guard let worker else { preconditionFailure("a worker was taken or spawned above") }
            // The session's next call of this tier gets a fresh worker, confined while this one
            // runs (not after it: an agent's next call can follow the answer within a millisecond).
            spareContinuation.yield(invocation)
            let acquired = ContinuousClock.now - entered
            let outcome = await run(invocation, on: worker)
            // A per-call worker never serves a second call, whatever happened in this one.
            await destroy(worker.id, reason: outcomeRetirement(outcome) ?? .callFinished)
            var execution = ToolExecution(outcome: outcome, workerID: worker.id, isolation: isolation)
            execution.acquired = acquired
            return execution
        case .session:
            let key = WarmKey(invocation)
            if let wait = upstreamBackoff(key) {
                return ToolExecution(
                    outcome: .failed(
                        code: "upstream_unavailable",
                        message: "server \(invocation.upstream?.launch.server ?? "") failed to start or crashed; it is restarted in \(wait) ms"),
                    workerID: nil, isolation: isolation)
            }
            await acquire(key)
            defer { release(key) }
            // Waiting on the lane may have taken long: a revoke meanwhile voids the call.
            guard !voided(invocation) else { return voidedResult(invocation) }
            let binding = Binding(invocation)
            var worker: WorkerProcess?
            if let id = warm[key], let entry = live[id] {
                if entry.binding == binding {
                    worker = entry.worker
                } else {
                    // Same session and lease, but the tier settings, actor or workspace moved:
                    // the warm worker belongs to what was, never to what is.
                    let reason: WorkerRetirement = entry.binding.tier != binding.tier ? .tierChanged : .handOff
                    await destroy(id, reason: reason)
                }
            }
            if worker == nil {
                switch await spawn(for: invocation, warmKey: key) {
                case .success(let spawned): worker = spawned
                case .failure(let error):
                    if invocation.upstream != nil { noteUpstreamFailure(key) }
                    return ToolExecution(
                        outcome: .failed(code: error.code.rawValue, message: error.description), workerID: nil,
                        isolation: isolation)
                }
            }
            guard let worker else { preconditionFailure("a worker was spawned or found above") }
            limitCPUForNextCall(worker, seconds: invocation.tier.limits.cpuSeconds)
            let acquired = ContinuousClock.now - entered
            let outcome = await run(invocation, on: worker)
            if let retirement = outcomeRetirement(outcome) {
                // Killed by a limit or crashed: the session goes on with a fresh worker next call.
                await destroy(worker.id, reason: retirement)
            } else if invocation.upstream != nil, Self.isUpstreamFatal(outcome) {
                // The server exited or broke the protocol: the worker has exited too. The next
                // call starts a fresh one, after a backoff that grows with each failure in a row.
                await destroy(worker.id, reason: .crashed, detail: "its upstream server failed")
                noteUpstreamFailure(key)
            } else {
                live[worker.id]?.lastUsed = .now
                live[worker.id]?.leaseExpiresAt = Self.leaseEnd(of: invocation)
                if invocation.upstream != nil { upstreamFailures[key] = nil }
            }
            var execution = ToolExecution(outcome: outcome, workerID: worker.id, isolation: isolation)
            execution.acquired = acquired
            if let server = invocation.upstream?.launch.server {
                execution.upstreamToolsChanged = toolsChangedServers.remove(server) != nil
            }
            return execution
        }
    }

    // MARK: Upstream servers

    /// Consecutive failures (spawn, crash, protocol) of the upstream process of a key, and when
    /// the next start may be tried.
    private var upstreamFailures: [WarmKey: (count: Int, retryAt: ContinuousClock.Instant)] = [:]
    /// Upstream servers that said their tools changed, until a call of theirs reports it.
    private var toolsChangedServers: Set<String> = []

    /// When a process its tenant's sessions share ends: with the runner (its idle timeout still
    /// applies); a session's own ends with its lease.
    private static func leaseEnd(of invocation: ToolInvocation) -> Date {
        switch invocation.upstream?.scope {
        case .tenant?, .shared?: .distantFuture
        case .session?, nil: invocation.leaseExpiresAt
        }
    }

    /// A failure that ended the worker's upstream server (the worker exits after answering).
    private static func isUpstreamFatal(_ outcome: ToolOutcome) -> Bool {
        guard case .completed(let result, true) = outcome else { return false }
        return result.starts(with: Array(#"{"error":{"code":"upstream_unavailable""#.utf8))
            || result.starts(with: Array(#"{"error":{"code":"upstream_protocol""#.utf8))
    }

    /// Backs off restarting a failing upstream: at once after the first failure, then 250 ms,
    /// doubling to at most 30 s.
    private func noteUpstreamFailure(_ key: WarmKey) {
        let count = (upstreamFailures[key]?.count ?? 0) + 1
        let delay: Duration = count <= 1 ? .zero : .milliseconds(min(30_000, 250 << min(count - 2, 7)))
        upstreamFailures[key] = (count, .now + delay)
        if upstreamFailures.count > 10_000 { upstreamFailures = upstreamFailures.filter { $0.value.retryAt > .now } }
    }

    /// Milliseconds until the upstream of `key` may be started again, nil when it may be now.
    private func upstreamBackoff(_ key: WarmKey) -> Int? {
        guard key.server != "", let failure = upstreamFailures[key], failure.retryAt > .now else { return nil }
        let left = failure.retryAt - .now
        return Int(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
    }

    private func outcomeRetirement(_ outcome: ToolOutcome) -> WorkerRetirement? {
        switch outcome {
        case .completed: nil
        case .limitExceeded: .limitExceeded
        // A cancelled call's server was told and goes on serving.
        case .failed(let code, _) where code == "cancelled": nil
        case .failed: .crashed
        }
    }

    /// One request/response with a worker, with the tier's wall clock and output cap enforced
    /// from outside.
    private func run(_ invocation: ToolInvocation, on worker: WorkerProcess) async -> ToolOutcome {
        let limits = invocation.tier.limits
        let request = Frame(
            kind: .request,
            payload: WorkerMessage.request(tool: invocation.upstream?.tool ?? invocation.tool, arguments: invocation.arguments))
        // The worker stops a command itself at wall_ms and reports it; the margin lets that report
        // arrive before the runner's own deadline kills the worker.
        let deadline = TimeAmount.milliseconds(Int64(limits.wallMs) + 500)
        // Progress and cancellation reach upstream servers only: a built-in tool runs to its end.
        let cancellation = invocation.upstream == nil ? nil : invocation.cancellation
        if let cancellation, cancellation.isCancelled { return Self.cancelled }
        let frame: Frame
        do {
            frame = try await worker.exchange(
                request, timeout: deadline, progress: invocation.upstream == nil ? nil : invocation.progress,
                cancellation: cancellation)
        } catch {
            return await failure(error, worker: worker, limits: limits)
        }
        if let server = invocation.upstream?.launch.server, WorkerMessage.toolsChanged(frame.payload) {
            toolsChangedServers.insert(server)
        }
        guard frame.kind == .response, let response = WorkerMessage.parseResponse(frame.payload) else {
            let text = String(decoding: frame.payload.prefix(200), as: UTF8.self)
            worker.destroy(.crashed)
            return .failed(code: "worker_protocol", message: "the worker answered with an unexpected frame: \(text)")
        }
        // The worker caps content at output_bytes; JSON escaping can grow it up to six times. More
        // than that means the worker did not hold its limit.
        // An upstream server's result is its own JSON, held to the tier's bytes plus room for
        // the envelope (it is passed on as it is, not escaped into a text).
        let cap = invocation.upstream == nil ? limits.outputBytes * 6 + 65_536 : limits.outputBytes + 65_536
        guard response.result.count <= cap else {
            return .limitExceeded(
                limit: "output_bytes",
                message: "the response of \(response.result.count) bytes exceeds the tier's output limit of \(limits.outputBytes) bytes")
        }
        let result = Array(response.result)
        if let cancellation, cancellation.isCancelled, response.isError,
            result.starts(with: Array(#"{"error":{"code":"cancelled""#.utf8))
        {
            return Self.cancelled
        }
        // The kernel killed a process of the worker at the memory limit of its cgroup: the tree
        // together outgrew the tier, whatever each process's own limit. (A worker of one process
        // dies of it, and that is found when its channel closes.)
        if limits.processes > 1, worker.newOOMKills() {
            return .limitExceeded(
                limit: "memory_mib",
                message: "the call's processes together used more than the tier's \(limits.memoryMiB) MiB and the kernel killed one",
                partial: response.isError ? nil : result)
        }
        if invocation.tool == "shell.run", !response.isError,
            let exceeded = Self.commandLimit(result: result, arguments: invocation.arguments, limits: limits)
        {
            return .limitExceeded(limit: exceeded.limit, message: exceeded.message, partial: result)
        }
        return .completed(result: result, isError: response.isError)
    }

    /// The outcome of a call the client cancelled before its answer.
    static let cancelled = ToolOutcome.failed(
        code: "cancelled", message: "the client cancelled the call; the upstream server was told")

    /// A command that `shell.run` reports killed by a tier limit: SIGXCPU (`cpu_seconds`), SIGXFSZ
    /// (`file_size_mib`), or stopped at the tier's wall clock rather than at a shorter
    /// `timeout_ms` the caller chose (`wall_ms`). A caller's own timeout is an ordinary result.
    static func commandLimit(result: [UInt8], arguments: [UInt8], limits: WorkerLimits) -> (limit: String, message: String)? {
        // The common case without a parse: the worker writes compact JSON, and an unescaped
        // `"key":value` can only be a key of the result object itself (inside a string every
        // quote is escaped), so these two say no signal and no timeout.
        if result.contains(Self.noSignal), result.contains(Self.notTimedOut) { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: Data(result)) as? [String: Any] else { return nil }
        switch object["signal"] as? String {
        case "SIGXCPU":
            return ("cpu_seconds", "the command used more than the tier's \(limits.cpuSeconds) CPU seconds and was killed")
        case "SIGXFSZ":
            return ("file_size_mib", "the command wrote past the tier's file size limit of \(limits.fileSizeMiB) MiB and was killed")
        default: break
        }
        guard object["timed_out"] as? Bool == true else { return nil }
        let requested = (try? JSONSerialization.jsonObject(with: Data(arguments)) as? [String: Any])?["timeout_ms"] as? Int
        guard requested.map({ $0 >= limits.wallMs }) ?? true else { return nil }
        return ("wall_ms", "the command ran past the tier's wall-clock limit of \(limits.wallMs) ms and was killed")
    }

    private static let noSignal = Array(#""signal":null"#.utf8)
    private static let notTimedOut = Array(#""timed_out":false"#.utf8)

    private func failure(_ error: ExchangeError, worker: WorkerProcess, limits: WorkerLimits) async -> ToolOutcome {
        switch error {
        case .timedOut:
            return .limitExceeded(
                limit: "wall_ms", message: "the call ran past the tier's wall-clock limit of \(limits.wallMs) ms and its worker was killed")
        case .malformed(let reason):
            worker.destroy(.crashed)
            return .failed(code: "worker_protocol", message: "the worker sent a malformed frame (\(reason))")
        case .closed:
            let termination = await worker.termination()
            if let retirement = worker.retirement {
                return .failed(
                    code: "worker_destroyed",
                    message: "the worker was destroyed during the call (\(retirement.rawValue))")
            }
            if worker.newOOMKills() {
                return .limitExceeded(
                    limit: "memory_mib",
                    message: "the worker's processes together used more than the tier's \(limits.memoryMiB) MiB and the kernel killed it")
            }
            switch termination {
            case .signaled(SIGXCPU):
                return .limitExceeded(
                    limit: "cpu_seconds", message: "the call used more than the tier's \(limits.cpuSeconds) CPU seconds")
            case .signaled(SIGXFSZ):
                return .limitExceeded(
                    limit: "file_size_mib", message: "the call wrote past the tier's file size limit of \(limits.fileSizeMiB) MiB")
            case .signaled(let signal):
                return .failed(
                    code: "worker_crashed",
                    message: "the worker died of signal \(signal) (\(String(cString: strsignal(signal)))); its memory limit is \(limits.memoryMiB) MiB")
            case .exited(let code):
                return .failed(code: "worker_crashed", message: "the worker exited with status \(code) before answering")
            }
        }
    }

    /// Moves a warm worker's CPU soft limit to what it has used plus one call's allowance, so the
    /// limit holds per call rather than over the worker's whole life. The hard limit stays
    /// unlimited (an unprivileged runner could not raise it again).
    private func limitCPUForNextCall(_ worker: WorkerProcess, seconds: Int) {
        _ = csb_limit_cpu_from_now(worker.pid, max(1, seconds))
    }

    // MARK: Spawning

    private func spawn(
        for invocation: ToolInvocation, warmKey: WarmKey?, spareKey: WarmKey? = nil
    ) async -> Result<WorkerProcess, SandboxError> {
        let binding = Binding(invocation)
        let unenforceable = limitEnforcement.unenforceable(binding.tier)
        guard unenforceable.isEmpty else {
            return .failure(
                SandboxError(
                    .limitsUnenforceable,
                    "tier \(binding.tier.name)'s \(unenforceable.joined(separator: ", ")) cannot be enforced on a whole worker on this host"))
        }
        let tenant = invocation.tenantID
        let tenantCap = shares.caps(tenant).workers
        // A spare is only a head start: it never takes a slot by destroying a worker.
        if spareKey != nil,
            live.count >= maximumWorkers || live.values.count(where: { $0.binding.tenantID == tenant }) >= tenantCap
        {
            return .failure(SandboxError(.tenantAtLimit, "no room for a spare of tenant \(tenant)"))
        }
        // Loops, not ifs: destroying awaits, and other calls may spawn meanwhile.
        while live.values.count(where: { $0.binding.tenantID == tenant }) >= tenantCap {
            // At its own cap a tenant makes room among its own idle workers, never others'.
            guard let id = evictable(from: tenant) else {
                return .failure(
                    SandboxError(
                        .tenantAtLimit,
                        "tenant \(tenant) holds its limit of \(tenantCap) live workers, all in calls; retry shortly"))
            }
            await destroy(id, reason: .idle, detail: "made room under the tenant's worker limit")
        }
        while live.count >= maximumWorkers {
            guard let id = evictable(from: nil) else {
                return .failure(
                    SandboxError(
                        .spawnFailed, "the runner is at its limit of \(maximumWorkers) live workers, all in calls; retry shortly"))
            }
            await destroy(id, reason: .idle, detail: "made room under the runner's worker limit")
        }
        let id = "wkr_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(20)
        let spawnStarted = ContinuousClock.now
        let result = await spawnConfined(id: id, binding: binding)
        switch result {
        case .success(let worker):
            live[id] = Live(
                worker: worker, binding: binding, leaseExpiresAt: Self.leaseEnd(of: invocation), warmKey: warmKey,
                spareKey: spareKey, lastUsed: .now)
            if let warmKey { warm[warmKey] = id }
            // A best-effort limit in effect is recorded with every worker that runs without it.
            let unenforced = limitEnforcement.bestEffortInEffect(binding.tier)
            let detail =
                unenforced.isEmpty
                ? "pid \(worker.pid)"
                : "pid \(worker.pid); best-effort, not enforced on this host: \(unenforced.joined(separator: ", "))"
            var spawned = event(.spawned, id, binding, reason: nil, detail: detail)
            spawned.spawnDuration = ContinuousClock.now - spawnStarted
            await onEvent(spawned)
            // A retirement that ran while this worker was being confined could not see it.
            if voided(invocation) {
                await destroy(id, reason: .sessionRevoked, detail: "retired while it was being confined")
                return .failure(SandboxError(.retired, "the session, its lease or its workspace was retired meanwhile"))
            }
        case .failure(let error):
            logger.error("worker spawn failed", metadata: ["error": "\(error)", "tier": "\(binding.tier.name)"])
            await onEvent(event(.spawnFailed, nil, binding, reason: nil, detail: error.description))
        }
        return result
    }

    /// The worker to destroy to make room: a spare first (only a head start), then the warm worker
    /// idle longest (none in a call or with calls queued for it) — of `tenant` when given, else
    /// of the tenants holding more than an equal share of the runner's workers, else of anyone.
    private func evictable(from tenant: String?) -> String? {
        let candidates = live.filter { _, entry in
            guard tenant == nil || entry.binding.tenantID == tenant else { return false }
            if entry.spareKey != nil { return true }
            guard let key = entry.warmKey, warm[key] != nil else { return false }
            guard let lane = lanes[key] else { return true }
            return !lane.busy && lane.waiters.isEmpty
        }
        if let spare = candidates.first(where: { $0.value.spareKey != nil }) { return spare.key }
        var held: [String: Int] = [:]
        for entry in live.values { held[entry.binding.tenantID, default: 0] += 1 }
        let share = maximumWorkers / max(1, held.count)
        let oldest = { (pool: [String: Live]) in pool.min { $0.value.lastUsed < $1.value.lastUsed }?.key }
        if tenant == nil, let above = oldest(candidates.filter { held[$0.value.binding.tenantID, default: 0] > share }) {
            return above
        }
        return oldest(candidates)
    }

    private func spawnConfined(id: String, binding: Binding) async -> Result<WorkerProcess, SandboxError> {
        let tier = binding.tier
        let network = binding.upstream?.network ?? []
        let started = await Self.startProcess(
            launch: launch, programs: programs, spawnThread: spawnThread, tier: tier, root: binding.workspaceRoot,
            workspaceReadOnly: binding.workspaceReadOnly, hostIdentity: binding.hostIdentity,
            mounts: binding.upstream?.mounts ?? [], network: !network.isEmpty,
            cgroup: cgroups.map { group in
                CgroupPlacement(
                    group: group, id: id, tenant: binding.tenantID,
                    limits: WorkerCgroups.Limits(
                        memoryMiB: tier.limits.memoryMiB, processes: tier.limits.processes,
                        cpuWeight: tier.limits.cpuWeight ?? 100))
            })
        guard case .success(let process) = started else {
            if case .failure(let error) = started { return .failure(error) }
            preconditionFailure("a Result is a success or a failure")
        }
        let worker: WorkerProcess
        do {
            worker = try await WorkerProcess.attach(
                id: id, pid: process.pid, pidfd: process.pidfd, descriptor: process.channel, group: group,
                reaper: reapThread)
        } catch {
            _ = csb_pidfd_kill(process.pidfd)
            var exited: Int32 = 0
            var code: Int32 = 0
            _ = csb_pidfd_reap(process.pidfd, 0, &exited, &code)
            close(process.pidfd)
            close(process.channel)
            if process.egressListener >= 0 { close(process.egressListener) }
            process.cgroup?.remove()
            return .failure(SandboxError(.spawnFailed, "the worker channel could not be set up: \(error)"))
        }
        if let cgroup = process.cgroup { worker.adopt(cgroup: cgroup) }
        // A network grant: the proxy is its only way out, up before the server starts (in the
        // handshake) and closed when the worker has been reaped, however it ends.
        var egress: EgressProxy?
        if process.egressListener >= 0, let upstream = binding.upstream {
            do {
                let proxy = try await EgressProxy.start(
                    descriptor: process.egressListener, grant: network,
                    owner: EgressProxy.Owner(server: upstream.launch.server, worker: id, tenant: binding.tenantID),
                    group: group, logger: logger)
                worker.whenTerminated { proxy.close() }
                egress = proxy
            } catch {
                worker.destroy(.crashed)
                return .failure(SandboxError(.spawnFailed, "the worker's egress proxy could not be started: \(error)"))
            }
        }
        // Handshake: the worker installs its tier filter and opens the workspace before `ready`.
        let hello: [UInt8]
        do {
            if let upstream = binding.upstream {
                // Not cached: it names the server and carries its environment.
                var value = launch.hello(tier: tier, workspaceReadOnly: binding.workspaceReadOnly)
                value.upstream = upstream.launch
                hello = [Frame.protocolVersion] + Array(try JSONEncoder().encode(value))
            } else {
                hello = try helloPayload(tier: tier, workspaceReadOnly: binding.workspaceReadOnly)
            }
        } catch {
            worker.destroy(.crashed)
            return .failure(SandboxError(.protocolViolation, "hello could not be encoded: \(error)"))
        }
        do {
            // An upstream server is started and initialized before `ready`: its wall clock, at least 10 s.
            let handshake: TimeAmount = binding.upstream == nil ? .seconds(10) : .milliseconds(Int64(max(10_000, tier.limits.wallMs + 1000)))
            let answer = try await worker.exchange(Frame(kind: .hello, payload: hello), timeout: handshake)
            guard answer.kind == .ready, answer.payload == [Frame.protocolVersion] else {
                worker.destroy(.crashed)
                let text = String(decoding: answer.payload.prefix(600), as: UTF8.self)
                if binding.upstream != nil, answer.kind == .error {
                    return .failure(SandboxError(.upstreamUnavailable, "the upstream server did not start: \(text)"))
                }
                return .failure(SandboxError(.protocolViolation, "the worker refused the handshake: \(text)"))
            }
        } catch {
            worker.destroy(.crashed)
            let termination = await worker.termination()
            return .failure(
                SandboxError(.protocolViolation, "the worker ended before the handshake (\(error), \(termination))"))
        }
        if let egress { egressProxies[id] = egress }
        return .success(worker)
    }

    /// The `hello` payload for a tier, encoded once per tier value (it holds nothing of a tenant
    /// or session; a policy change makes a new tier value and so a new entry).
    private func helloPayload(tier: WorkerTier, workspaceReadOnly: Bool) throws -> [UInt8] {
        let key = HelloKey(tier: tier, workspaceReadOnly: workspaceReadOnly)
        if let cached = hellos[key] { return cached }
        let hello = launch.hello(tier: tier, workspaceReadOnly: workspaceReadOnly)
        let payload = [Frame.protocolVersion] + Array(try JSONEncoder().encode(hello))
        if hellos.count >= 64 { hellos.removeAll() }
        hellos[key] = payload
        return payload
    }

    private struct HelloKey: Hashable {
        var tier: WorkerTier
        var workspaceReadOnly: Bool
    }

    /// A confined process that has exec'ed: its pid, pidfd, the runner's end of its channel, and
    /// its cgroups when it was given them.
    struct StartedProcess: Sendable {
        var pid: pid_t
        var pidfd: Int32
        var channel: Int32
        var cgroup: WorkerCgroups.Placement? = nil
        /// The egress proxy's listening socket of a worker with a network grant (else -1).
        var egressListener: Int32 = -1
    }

    /// The cgroups a new worker goes into: its tenant's, and its limits.
    struct CgroupPlacement: Sendable {
        var group: WorkerCgroups
        var id: String
        var tenant: String
        var limits: WorkerCgroups.Limits
    }

    /// Confines and starts `launch.executable` (with `arguments`) for `tier` over `root`: the
    /// channel socket at fd 3, the tier's seccomp program at fd 4. Shared by the pool and by the
    /// tests that run the syscall probe in exactly a worker's confinement. `network`: the worker
    /// of an upstream server with a network grant (exec profile only): IP sockets allowed by its
    /// seccomp programs, Landlock connect to the egress proxy's port only, and the proxy's
    /// listener in its network namespace handed back in ``StartedProcess/egressListener``.
    static func startProcess(
        launch: WorkerLaunch, programs: SeccompPrograms, spawnThread: NIOThreadPool, tier: WorkerTier, root: String,
        workspaceReadOnly: Bool, hostIdentity: WorkerHostIdentity? = nil, mounts: [String] = [], network: Bool = false,
        cgroup: CgroupPlacement? = nil, arguments: [String] = [], stdoutToChannel: Bool = false
    ) async -> Result<StartedProcess, SandboxError> {
        let base: [UInt8]
        let tierProgram: [UInt8]
        do {
            base = try programs.base(tier.profile, inet: network)
            tierProgram = try programs.tier(tier.profile, inet: network)
        } catch {
            return .failure(error)
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            return .failure(SandboxError(.spawnFailed, "socketpair failed", stage: "channel", errno: errno))
        }
        let filterFD = csb_sealed_memfd("leasehold-seccomp", tierProgram, tierProgram.count)
        guard filterFD >= 0 else {
            close(pair[0])
            close(pair[1])
            return .failure(
                SandboxError(.spawnFailed, "memfd for the seccomp program failed", stage: "memfd", errno: -filterFD))
        }
        var plan = launch.plan(
            tier: tier, root: root, workspaceReadOnly: workspaceReadOnly, baseFilter: base, channel: pair[1],
            filterFD: filterFD, hostIdentity: hostIdentity, mounts: mounts)
        plan.argv += arguments
        if stdoutToChannel { plan.childDescriptors[1] = pair[1] }
        if network { plan.egressPort = Int32(EgressProxy.port) }
        let finalPlan = plan
        typealias Spawned = (pid: pid_t, pidfd: Int32, cgroup: WorkerCgroups.Placement?, egressListener: Int32)
        let spawned: Result<Spawned, SandboxError>
        do {
            spawned = try await spawnThread.runIfActive { () -> Result<Spawned, SandboxError> in
                let result = finalPlan.spawnBlocking()
                guard case .success(let process) = result, let cgroup else {
                    return result.map { ($0.pid, $0.pidfd, nil, $0.egressListener) }
                }
                // Its own cgroup before it has read anything, so before it can start a process.
                // Here on the spawner thread, not on the pool's actor: moving a process between
                // cgroup v1 groups waits for an RCU grace period (~10 ms on a busy host), which
                // held every other call of the runner while the actor waited on it.
                guard
                    let placement = cgroup.group.place(
                        process.pid, worker: cgroup.id, tenant: cgroup.tenant, limits: cgroup.limits)
                else {
                    let error = SandboxError(
                        .spawnFailed, "the worker's cgroups could not be set up", stage: "cgroup", errno: errno)
                    _ = csb_pidfd_kill(process.pidfd)
                    var exited: Int32 = 0
                    var code: Int32 = 0
                    _ = csb_pidfd_reap(process.pidfd, 0, &exited, &code)
                    close(process.pidfd)
                    if process.egressListener >= 0 { close(process.egressListener) }
                    return .failure(error)
                }
                return .success((process.pid, process.pidfd, placement, process.egressListener))
            }
        } catch {
            spawned = .failure(SandboxError(.shuttingDown, "the spawner thread is gone"))
        }
        // The child holds its own copies now (or failed); the runner keeps only its end.
        close(pair[1])
        close(filterFD)
        switch spawned {
        case .success(let process):
            return .success(
                StartedProcess(
                    pid: process.pid, pidfd: process.pidfd, channel: pair[0], cgroup: process.cgroup,
                    egressListener: process.egressListener))
        case .failure(let error):
            close(pair[0])
            return .failure(error)
        }
    }

    // MARK: Destroying

    private func destroy(_ id: String, reason: WorkerRetirement, detail: String? = nil) async {
        guard let entry = live.removeValue(forKey: id) else { return }
        var detail = detail
        if let egress = egressProxies.removeValue(forKey: id) {
            let counts = egress.counters.snapshot
            detail = [detail, "egress connections: \(counts.allowed) allowed, \(counts.denied) refused"]
                .compactMap { $0 }.joined(separator: "; ")
        }
        if let key = entry.warmKey, warm[key] == id { warm[key] = nil }
        if let key = entry.spareKey { spares.discard(id, of: key) }
        entry.worker.destroy(reason)
        await onEvent(event(.destroyed, id, entry.binding, reason: reason, detail: detail))
    }

    private func destroyAll(where matches: (Binding) -> Bool, reason: WorkerRetirement) async {
        await destroyEntries(where: { matches($0.binding) }, reason: reason)
    }

    private func destroyEntries(where matches: (Live) -> Bool, reason: WorkerRetirement) async {
        for (id, entry) in live where matches(entry) {
            await destroy(id, reason: reason)
        }
    }

    /// Destroys warm workers and spares of the named tiers (a policy change altered them).
    public func tiersChanged(_ tiers: Set<String>) async {
        await destroyEntries(
            where: { tiers.contains($0.binding.tier.name) && ($0.warmKey != nil || $0.spareKey != nil) },
            reason: .tierChanged)
    }

    /// Destroys every process of an upstream server (reconfigured or removed).
    public func retire(upstream server: String) async {
        upstreamFailures = upstreamFailures.filter { $0.key.server != server }
        await destroyEntries(where: { $0.binding.upstream?.launch.server == server }, reason: .upstreamChanged)
    }

    /// Destroys every worker of the session (every lease).
    public func retire(session sessionID: String, reason: WorkerRetirement) async {
        pruneRetirements()
        sessionRetiredAt[sessionID] = .now
        await destroyAll(where: { $0.sessionID == sessionID }, reason: reason)
    }

    /// Destroys the session's workers of any lease but `currentLease`.
    public func retire(session sessionID: String, exceptLease currentLease: String?, reason: WorkerRetirement) async {
        pruneRetirements()
        if let currentLease {
            leaseRenewedAt[sessionID] = (currentLease, .now)
        } else {
            sessionRetiredAt[sessionID] = .now
        }
        await destroyAll(where: { $0.sessionID == sessionID && $0.leaseID != currentLease }, reason: reason)
    }

    /// Destroys every worker bound to the workspace.
    public func retire(tenant tenantID: String, workspace workspaceID: String, reason: WorkerRetirement) async {
        pruneRetirements()
        workspaceRetiredAt[tenantID + "|" + workspaceID] = .now
        await destroyAll(where: { $0.tenantID == tenantID && $0.workspaceID == workspaceID }, reason: reason)
    }

    /// Destroys every worker and refuses new calls.
    public func shutdown() async {
        shuttingDown = true
        spareContinuation.finish()
        await destroyAll(where: { _ in true }, reason: .shutdown)
    }

    private func pruneRetirements() {
        guard sessionRetiredAt.count + workspaceRetiredAt.count + leaseRenewedAt.count > 10_000 else { return }
        let cutoff = ContinuousClock.now - .seconds(3600)
        sessionRetiredAt = sessionRetiredAt.filter { $0.value > cutoff }
        workspaceRetiredAt = workspaceRetiredAt.filter { $0.value > cutoff }
        leaseRenewedAt = leaseRenewedAt.filter { $0.value.at > cutoff }
    }

    /// Whether something retired the invocation's session, lease or workspace at or after the
    /// moment the gateway authorized it.
    private func voided(_ invocation: ToolInvocation) -> Bool {
        let since = invocation.authorizedAt
        if let at = sessionRetiredAt[invocation.sessionID], at >= since { return true }
        if let at = workspaceRetiredAt[invocation.tenantID + "|" + invocation.workspaceID], at >= since { return true }
        if let renewal = leaseRenewedAt[invocation.sessionID], renewal.at >= since, renewal.lease != invocation.leaseID {
            return true
        }
        return false
    }

    private func voidedResult(_ invocation: ToolInvocation) -> ToolExecution {
        ToolExecution(
            outcome: .failed(
                code: "worker_destroyed",
                message: "the session, its lease or its workspace was retired after this call was authorized; it did not run"),
            workerID: nil, isolation: invocation.tier.isolation)
    }

    // MARK: Spares

    /// Prepares spares as calls ask for them (several at once, on the spawner threads like every
    /// spawn) and runs the lease and idle timers. Returns on shutdown or cancellation.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.runTimers() }
            group.addTask {
                await withDiscardingTaskGroup { preparations in
                    for await invocation in self.spareRequests {
                        for _ in 0..<(await self.reserveSpares(for: invocation)) {
                            preparations.addTask { await self.prepareSpare(for: invocation) }
                        }
                    }
                }
            }
        }
    }

    /// Reserves the spares the invocation's key lacks (making room under the runner's spare limit
    /// if need be) and returns how many to confine.
    private func reserveSpares(for invocation: ToolInvocation) async -> Int {
        let key = WarmKey(sessionID: invocation.sessionID, leaseID: invocation.leaseID, tier: invocation.tier.name)
        var reserved = 0
        // A spare is only a head start: it never takes a slot a call could use.
        while !shuttingDown, !voided(invocation), invocation.leaseExpiresAt.timeIntervalSinceNow > 1,
            live.count + spares.preparing.values.reduce(0, +) < maximumWorkers
        {
            guard case .prepare(let evicting) = spares.want(key, at: .now) else { break }
            reserved += 1
            if let evicting {
                await destroy(evicting, reason: .idle, detail: "made room under the runner's spare limit")
            }
        }
        return reserved
    }

    /// Confines one spare reserved by ``reserveSpares(for:)`` and puts it on the shelf, unless its
    /// session, lease or workspace was retired (or the runner began shutting down) meanwhile.
    private func prepareSpare(for invocation: ToolInvocation) async {
        let key = WarmKey(sessionID: invocation.sessionID, leaseID: invocation.leaseID, tier: invocation.tier.name)
        var readied: String?
        defer {
            spares.prepared(key, id: readied)
            for waiter in spareWaiters.removeValue(forKey: key) ?? [] { waiter.resume() }
        }
        // Marked as a spare from its first moment in `live`, so a policy change, a retirement or the
        // runner's worker limit that comes while it is confined sees it as one.
        guard case .success(let worker) = await spawn(for: invocation, warmKey: nil, spareKey: key),
            live[worker.id] != nil
        else { return }
        // The spawn took time: a retirement or shutdown may have come meanwhile.
        if shuttingDown || voided(invocation) {
            await destroy(worker.id, reason: shuttingDown ? .shutdown : .sessionRevoked)
            return
        }
        readied = worker.id
    }

    // MARK: Timers

    /// Acts on lease ends and idle timeouts when they come: destroys each worker at its lease's
    /// `expires_at` and after `idleTimeout` without a call. Returns after ``shutdown()`` or when
    /// the calling task is cancelled.
    public func runTimers() async {
        while !shuttingDown && !Task.isCancelled {
            let now = Date()
            let clock = ContinuousClock.now
            var next = Self.timerGranularity
            for (id, entry) in live {
                let leaseLeft = entry.leaseExpiresAt.timeIntervalSince(now)
                if leaseLeft <= 0 {
                    await destroy(id, reason: .leaseExpired)
                    continue
                }
                next = min(next, .milliseconds(Int64(leaseLeft * 1000) + 1))
                if entry.warmKey != nil || entry.spareKey != nil {
                    let idleLeft = (entry.spareKey != nil ? spareIdleTimeout : idleTimeout) - (clock - entry.lastUsed)
                    if idleLeft <= .zero {
                        await destroy(id, reason: .idle)
                        continue
                    }
                    next = min(next, idleLeft)
                }
            }
            // A timer is the point here: leases end at a time, not at an event. The sleep is
            // bounded so a worker spawned meanwhile with an earlier deadline waits at most that.
            do {
                try await Task.sleep(for: next)
            } catch {
                return
            }
        }
    }

    /// The longest the timer sleeps before looking at newly spawned workers' deadlines.
    static let timerGranularity = Duration.milliseconds(200)

    private func acquire(_ key: WarmKey) async {
        let lane = lanes[key] ?? Lane()
        lanes[key] = lane
        if !lane.busy {
            lane.busy = true
            return
        }
        await withCheckedContinuation { lane.waiters.append($0) }
    }

    private func release(_ key: WarmKey) {
        guard let lane = lanes[key] else { return }
        if lane.waiters.isEmpty {
            lane.busy = false
            lanes[key] = nil
        } else {
            lane.waiters.removeFirst().resume()
        }
    }

    private func event(
        _ kind: WorkerEvent.Kind, _ id: String?, _ binding: Binding, reason: WorkerRetirement?, detail: String?
    ) -> WorkerEvent {
        WorkerEvent(
            kind: kind, workerID: id, tenantID: binding.tenantID, workspaceID: binding.workspaceID,
            sessionID: binding.sessionID, actorID: binding.actorID, leaseID: binding.leaseID, tier: binding.tier.name,
            isolation: binding.tier.isolation, reason: reason, detail: detail)
    }
}
