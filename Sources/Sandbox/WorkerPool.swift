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
///
/// The rules live in ``StateMachine`` (synchronous, over a clock, tested without processes);
/// this actor performs what it decides: spawns, exchanges, kills, resumes waiting calls, and
/// sleeps until the machine's next deadline (the runner's one timer, lease ends included).
public actor WorkerPool: ToolExecutor {
    typealias Machine = StateMachine<ContinuousClock>

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
    private let logger: Logger

    /// The books: which worker serves what, until when, and who waits.
    private var machine: Machine
    /// The processes of the workers on the books (and of those being destroyed, until killed).
    private var workers: [String: WorkerProcess] = [:]
    /// Calls waiting for their lane or for a spare, resumed when the machine says so.
    private var waiting: [Machine.Waiter: CheckedContinuation<Void, Never>] = [:]
    private let spareRequests: AsyncStream<ToolInvocation>
    private let spareContinuation: AsyncStream<ToolInvocation>.Continuation
    private var hellos: [HelloKey: [UInt8]] = [:]
    /// Upstream servers that said their tools changed, until a call of theirs reports it.
    private var toolsChangedServers: Set<String> = []
    /// Wakes the timer when something is due earlier than it sleeps for.
    private let bell = TimerBell()
    /// One reading of both clocks, and how far the wall clock has stepped from the monotonic one
    /// since (``noticeWallClockStep()``).
    private let epoch = (instant: ContinuousClock.now, date: Date())
    private var wallOffset: Double = 0
    /// What the timer sleeps until (nil: until rung).
    private var timerTarget: ContinuousClock.Instant?
    /// Told when a watched lease ends (the gateway closes the session's connections).
    private var onLeaseEnd: (@Sendable (_ sessionID: String, _ leaseID: String) async -> Void)?

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
    ///     `maximumWorkers` and 64 calls). Every default is ``Settings/defaults``.
    ///   - cgroups: where workers get their own cgroups (``WorkerCgroups/detect()`` by default;
    ///     nil: none, and tiers that need them are refused unless they accept best-effort limits).
    ///   - onEvent: receives every spawn and destruction (the runner audits them).
    public init(
        launch: WorkerLaunch, idleTimeout: Duration = Settings.defaults.idleTimeout,
        spareIdleTimeout: Duration = Settings.defaults.spareIdleTimeout,
        sparesPerSession: Int = Settings.defaults.sparesPerSession,
        maximumSpares: Int = Settings.defaults.maximumSpares,
        maximumCallsPerSession: Int = Settings.defaults.maximumCallsPerSession,
        maximumWorkers: Int = Settings.defaults.maximumWorkers, shares: TenantShares? = nil,
        cgroups: WorkerCgroups? = WorkerCgroups.detect(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "leasehold.sandbox"),
        onEvent: @escaping @Sendable (WorkerEvent) async -> Void = { _ in }
    ) {
        self.launch = launch
        self.cgroups = cgroups
        self.limitEnforcement = LimitEnforcement(cgroups: cgroups)
        self.group = group
        self.logger = logger
        self.onEvent = onEvent
        self.spawnThread = NIOThreadPool(numberOfThreads: 2)
        self.spawnThread.start()
        self.reapThread = NIOThreadPool(numberOfThreads: 1)
        self.reapThread.start()
        self.machine = Machine(
            settings: Settings(
                idleTimeout: idleTimeout, spareIdleTimeout: spareIdleTimeout, sparesPerSession: sparesPerSession,
                maximumSpares: maximumSpares, maximumCallsPerSession: maximumCallsPerSession,
                maximumWorkers: maximumWorkers, shares: shares))
        (self.spareRequests, self.spareContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(256))
    }

    /// Creates the pool with `settings` (``Settings/defaults`` unless configured).
    public init(
        launch: WorkerLaunch, settings: Settings, cgroups: WorkerCgroups? = WorkerCgroups.detect(),
        logger: Logger = Logger(label: "leasehold.sandbox"),
        onEvent: @escaping @Sendable (WorkerEvent) async -> Void = { _ in }
    ) {
        self.init(
            launch: launch, idleTimeout: settings.idleTimeout, spareIdleTimeout: settings.spareIdleTimeout,
            sparesPerSession: settings.sparesPerSession, maximumSpares: settings.maximumSpares,
            maximumCallsPerSession: settings.maximumCallsPerSession, maximumWorkers: settings.maximumWorkers,
            shares: settings.shares, cgroups: cgroups, logger: logger, onEvent: onEvent)
    }

    /// Live workers (for `/metrics`, doctor and tests).
    public var liveWorkerCount: Int { machine.entries.count }

    /// Warm workers per session, those of its current lease (spares and upstream processes shared
    /// by a tenant or the runner excluded): what the console shows for a live session.
    public func warmWorkersBySession() -> [String: Int] {
        var counts: [String: Int] = [:]
        for entry in machine.entries.values {
            guard let key = entry.warmKey, key.leaseID == entry.binding.leaseID, !key.leaseID.isEmpty else { continue }
            counts[key.sessionID, default: 0] += 1
        }
        return counts
    }

    /// Spares ready or being confined (tests check the bounds).
    var spareCount: Int { machine.spares.count }

    /// Process ids of live workers, by worker id (tests check their process trees die).
    public var livePIDs: [String: Int32] {
        var pids: [String: Int32] = [:]
        for id in machine.entries.keys { if let worker = workers[id] { pids[id] = worker.pid } }
        return pids
    }

    /// The machine's view of a call: its lease end and authorization moved onto the pool's clock.
    private func call(_ invocation: ToolInvocation) -> Machine.Call {
        let now = ContinuousClock.now
        let leaseLeft = invocation.leaseExpiresAt.timeIntervalSinceNow
        return Machine.Call(
            invocation, authorizedAt: invocation.authorizedAt,
            leaseEnd: leaseLeft > 3_153_600_000 ? nil : now.advanced(by: .milliseconds(Int64(leaseLeft * 1000))))
    }

    // MARK: Executing

    /// Runs one invocation in the worker its tier's isolation calls for.
    public func execute(_ invocation: ToolInvocation) async -> ToolExecution {
        let entered = ContinuousClock.now
        let call = self.call(invocation)
        let isolation = invocation.tier.isolation
        if let refusal = machine.callArrived(call, now: entered) {
            return ToolExecution(
                outcome: .failed(code: refusal.code, message: refusal.message), workerID: nil, isolation: isolation)
        }
        defer { machine.callLeft(call) }
        switch call.isolation {
        case .call: return await executePerCall(call, entered: entered)
        case .session: return await executeWarm(call, entered: entered)
        }
    }

    private func executePerCall(_ call: Machine.Call, entered: ContinuousClock.Instant) async -> ToolExecution {
        let invocation = call.invocation
        let isolation = invocation.tier.isolation
        var worker: WorkerProcess?
        while worker == nil {
            switch machine.takeSpare(for: call) {
            case .voided:
                return ToolExecution(
                    outcome: .failed(code: Machine.voided.code, message: Machine.voided.message), workerID: nil,
                    isolation: isolation)
            case .wait(let waiter):
                await withCheckedContinuation { waiting[waiter] = $0 }
            case .use(let id, let destroyed):
                await perform(destroyed)
                worker = workers[id]
                if worker == nil { preconditionFailure("a spare on the books has a process") }
            case .spawn(let destroyed):
                await perform(destroyed)
                switch await spawn(for: call, warmKey: nil) {
                case .success(let spawned): worker = spawned
                case .failure(let error):
                    return ToolExecution(
                        outcome: .failed(code: error.code.rawValue, message: error.description), workerID: nil,
                        isolation: isolation)
                }
            }
        }
        guard let worker else { preconditionFailure("a worker was taken or spawned above") }
        // The session's next call of this tier gets a fresh worker, confined while this one
        // runs (not after it: an agent's next call can follow the answer within a millisecond).
        spareContinuation.yield(invocation)
        let acquired = ContinuousClock.now - entered
        let outcome = await run(invocation, on: worker)
        // A per-call worker never serves a second call, whatever happened in this one.
        if let destroy = machine.callFinished(on: worker.id, call, retirement: outcomeRetirement(outcome), now: .now) {
            await perform([destroy])
        }
        var execution = ToolExecution(outcome: outcome, workerID: worker.id, isolation: isolation)
        execution.acquired = acquired
        return execution
    }

    private func executeWarm(_ call: Machine.Call, entered: ContinuousClock.Instant) async -> ToolExecution {
        let invocation = call.invocation
        let isolation = invocation.tier.isolation
        let key = call.warmKey
        if let waiter = machine.enterLane(key) {
            await withCheckedContinuation { waiting[waiter] = $0 }
        }
        defer { if let next = machine.leaveLane(key) { waiting.removeValue(forKey: next)?.resume() } }
        var worker: WorkerProcess?
        switch machine.warmWorker(for: call) {
        case .voided:
            // Waiting on the lane may have taken long: a revoke meanwhile voids the call.
            return ToolExecution(
                outcome: .failed(code: Machine.voided.code, message: Machine.voided.message), workerID: nil,
                isolation: isolation)
        case .use(let id):
            worker = workers[id]
        case .spawn(let destroy):
            if let destroy { await perform([destroy]) }
        }
        if worker == nil {
            switch await spawn(for: call, warmKey: key) {
            case .success(let spawned): worker = spawned
            case .failure(let error):
                if invocation.upstream != nil { machine.upstreamFailed(key, now: .now) }
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
            if let destroy = machine.callFinished(on: worker.id, call, retirement: retirement, now: .now) {
                await perform([destroy])
            }
        } else if invocation.upstream != nil, Self.isUpstreamFatal(outcome) {
            // The server exited or broke the protocol: the worker has exited too. The next
            // call starts a fresh one, after a backoff that grows with each failure in a row.
            if let destroy = machine.callFinished(
                on: worker.id, call, retirement: .crashed, detail: "its upstream server failed", now: .now)
            {
                await perform([destroy])
            }
            machine.upstreamFailed(key, now: .now)
        } else {
            _ = machine.callFinished(on: worker.id, call, retirement: nil, now: .now)
            scheduleTimer(machine.deadline(of: worker.id))
            if invocation.upstream != nil { machine.upstreamAnswered(key) }
        }
        var execution = ToolExecution(outcome: outcome, workerID: worker.id, isolation: isolation)
        execution.acquired = acquired
        if let server = invocation.upstream?.launch.server {
            execution.upstreamToolsChanged = toolsChangedServers.remove(server) != nil
        }
        return execution
    }

    // MARK: Upstream servers


    /// A failure that ended the worker's upstream server (the worker exits after answering).
    private static func isUpstreamFatal(_ outcome: ToolOutcome) -> Bool {
        guard case .completed(let result, true) = outcome else { return false }
        return result.starts(with: Array(#"{"error":{"code":"upstream_unavailable""#.utf8))
            || result.starts(with: Array(#"{"error":{"code":"upstream_protocol""#.utf8))
    }

    private func outcomeRetirement(_ outcome: ToolOutcome) -> WorkerRetirement? {
        switch outcome {
        case .completed: nil
        case .limitExceeded: .limitExceeded
        // A cancelled call's server was told and goes on serving.
        case .failed(let code, _) where code == SandboxError.Code.cancelled.rawValue: nil
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
            return .failed(code: SandboxError.Code.protocolViolation.rawValue, message: "the worker answered with an unexpected frame: \(text)")
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
        if let killed = response.killedBy, !response.isError {
            return .limitExceeded(
                limit: killed.policyName, message: Self.killMessage(killed, limits: limits), partial: result)
        }
        return .completed(result: result, isError: response.isError)
    }

    /// The outcome of a call the client cancelled before its answer.
    static let cancelled = ToolOutcome.failed(
        code: SandboxError.Code.cancelled.rawValue, message: "the client cancelled the call; the upstream server was told")

    /// What the caller reads when a tier limit killed the command a call ran (the worker reports
    /// which limit in its response frame).
    static func killMessage(_ limit: WorkerMessage.LimitKill, limits: WorkerLimits) -> String {
        switch limit {
        case .cpuSeconds: "the command used more than the tier's \(limits.cpuSeconds) CPU seconds and was killed"
        case .fileSizeMiB:
            "the command wrote past the tier's file size limit of \(limits.fileSizeMiB) MiB and was killed"
        case .wallMs: "the command ran past the tier's wall-clock limit of \(limits.wallMs) ms and was killed"
        }
    }

    private func failure(_ error: ExchangeError, worker: WorkerProcess, limits: WorkerLimits) async -> ToolOutcome {
        switch error {
        case .timedOut:
            return .limitExceeded(
                limit: "wall_ms", message: "the call ran past the tier's wall-clock limit of \(limits.wallMs) ms and its worker was killed")
        case .malformed(let reason):
            worker.destroy(.crashed)
            return .failed(code: SandboxError.Code.protocolViolation.rawValue, message: "the worker sent a malformed frame (\(reason))")
        case .closed:
            let termination = await worker.termination()
            if let retirement = worker.retirement {
                return .failed(
                    code: SandboxError.Code.retired.rawValue,
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
                    code: SandboxError.Code.workerExited.rawValue,
                    message: "the worker died of signal \(signal) (\(String(cString: strsignal(signal)))); its memory limit is \(limits.memoryMiB) MiB")
            case .exited(let code):
                return .failed(code: SandboxError.Code.workerExited.rawValue, message: "the worker exited with status \(code) before answering")
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

    /// Spawns a worker for `call` after making room for it (the machine picks the idle workers
    /// to destroy), and puts it on the books as the key's warm worker, a spare, or a per-call one.
    private func spawn(
        for call: Machine.Call, warmKey: WarmKey?, spareKey: WarmKey? = nil
    ) async -> Result<WorkerProcess, SandboxError> {
        let binding = call.binding
        let unenforceable = limitEnforcement.unenforceable(binding.tier)
        guard unenforceable.isEmpty else {
            return .failure(
                SandboxError(
                    .limitsUnenforceable,
                    "tier \(binding.tier.name)'s \(unenforceable.joined(separator: ", ")) cannot be enforced on a whole worker on this host"))
        }
        let room = machine.makeRoom(for: call, spare: spareKey != nil)
        await perform(room.destroy)
        if let refusal = room.refusal { return .failure(refusal) }
        let id = "wkr_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(20)
        let spawnStarted = ContinuousClock.now
        let result = await spawnConfined(id: id, binding: binding)
        switch result {
        case .success(let worker):
            workers[id] = worker
            let voided = machine.spawned(id, for: call, warmKey: warmKey, spareKey: spareKey, now: .now)
            scheduleTimer(machine.deadline(of: id))
            // A best-effort limit in effect is recorded with every worker that runs without it.
            let unenforced = limitEnforcement.bestEffortInEffect(binding.tier)
            let detail =
                unenforced.isEmpty
                ? "pid \(worker.pid)"
                : "pid \(worker.pid); best-effort, not enforced on this host: \(unenforced.joined(separator: ", "))"
            var spawned = event(.spawned, id, binding, reason: nil, detail: detail)
            spawned.spawnDuration = ContinuousClock.now - spawnStarted
            await onEvent(spawned)
            // A retirement that ran while this worker was being confined could not see it (nor
            // one that ran while its spawn was reported).
            if voided || machine.isVoided(call) || machine.shuttingDown {
                let reason: WorkerRetirement = machine.shuttingDown ? .shutdown : .sessionRevoked
                if let destroy = machine.remove(id, reason: reason, detail: "retired while it was being confined") {
                    await perform([destroy])
                }
                return .failure(SandboxError(.retired, "the session, its lease or its workspace was retired meanwhile"))
            }
        case .failure(let error):
            logger.error(
                "worker spawn failed", metadata: ["error": "\(error.logDescription)", "tier": "\(binding.tier.name)"])
            await onEvent(event(.spawnFailed, nil, binding, reason: nil, detail: error.description))
        }
        return result
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
            return .failure(SandboxError(.spawnFailed, "the worker channel could not be set up", cause: error))
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
                return .failure(
                    SandboxError(
                        .spawnFailed, "the worker's egress proxy could not be started", cause: error))
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
            return .failure(SandboxError(.protocolViolation, "hello could not be encoded: \(error)", cause: error))
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
            spawned = .failure(SandboxError(.shuttingDown, "the spawner thread is gone", cause: error))
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

    /// Kills what the machine took off the books (each whole process tree) and reports each.
    private func perform(_ destroyed: [Machine.Destroy]) async {
        for destroy in destroyed {
            guard let worker = workers.removeValue(forKey: destroy.id) else { continue }
            var detail = destroy.detail
            if let egress = egressProxies.removeValue(forKey: destroy.id) {
                let counts = egress.counters.snapshot
                detail = [detail, "egress connections: \(counts.allowed) allowed, \(counts.denied) refused"]
                    .compactMap { $0 }.joined(separator: "; ")
            }
            worker.destroy(destroy.reason)
            await onEvent(event(.destroyed, destroy.id, destroy.binding, reason: destroy.reason, detail: detail))
        }
    }

    /// Destroys warm workers and spares of the named tiers (a policy change altered them).
    public func tiersChanged(_ tiers: Set<String>) async {
        await perform(machine.tiersChanged(tiers))
    }

    /// Destroys every process of an upstream server (reconfigured or removed).
    public func retire(upstream server: String) async {
        await perform(machine.retire(upstream: server))
    }

    /// Destroys every worker of the session (every lease).
    public func retire(session sessionID: String, reason: WorkerRetirement) async {
        await perform(machine.retire(session: sessionID, reason: reason, now: .now))
    }

    /// Destroys the session's workers of any lease but `currentLease`.
    public func retire(session sessionID: String, exceptLease currentLease: String?, reason: WorkerRetirement) async {
        await perform(machine.retire(session: sessionID, exceptLease: currentLease, reason: reason, now: .now))
    }

    /// Destroys every worker bound to the workspace.
    public func retire(tenant tenantID: String, workspace workspaceID: String, reason: WorkerRetirement) async {
        await perform(machine.retire(tenant: tenantID, workspace: workspaceID, reason: reason, now: .now))
    }

    /// Destroys every worker and refuses new calls.
    public func shutdown() async {
        spareContinuation.finish()
        await perform(machine.shutdown())
        bell.ring()
    }

    // MARK: Spares

    /// Prepares spares as calls ask for them (several at once, on the spawner threads like every
    /// spawn) and runs the timer (lease ends, idle timeouts). Returns on shutdown or cancellation.
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
        let reserved = machine.reserveSpares(for: call(invocation), now: .now)
        await perform(reserved.destroy)
        return reserved.count
    }

    /// Confines one spare reserved by ``reserveSpares(for:)`` and puts it on the shelf, unless its
    /// session, lease or workspace was retired (or the runner began shutting down) meanwhile.
    private func prepareSpare(for invocation: ToolInvocation) async {
        let call = self.call(invocation)
        let key = call.spareKey
        var readied: String?
        defer {
            for waiter in machine.sparePrepared(key, id: readied) { waiting.removeValue(forKey: waiter)?.resume() }
        }
        // Marked as a spare from its first moment on the books, so a policy change, a retirement
        // or the runner's worker limit that comes while it is confined sees it as one.
        guard case .success(let worker) = await spawn(for: call, warmKey: nil, spareKey: key),
            machine.entries[worker.id] != nil
        else { return }
        readied = worker.id
    }

    // MARK: Timers

    /// Acts on lease ends and idle timeouts when they come: destroys each worker at its lease's
    /// `expires_at` and after its idle timeout without a call, and tells the gateway of watched
    /// leases that ended. Returns after ``shutdown()`` or when the calling task is cancelled.
    public func runTimers() async {
        while !machine.shuttingDown && !Task.isCancelled {
            let due = machine.tick(now: .now)
            await perform(due.destroy)
            if let onLeaseEnd {
                for lease in due.leasesEnded { await onLeaseEnd(lease.sessionID, lease.leaseID) }
            }
            // A timer is the point here: leases end at a time, not at an event. It sleeps until
            // the next deadline; a worker or lease with an earlier one rings the bell.
            timerTarget = machine.deadline
            // At most a second on the monotonic clock, so that a step of the wall clock is seen.
            await bell.wait(until: min(timerTarget ?? .now.advanced(by: .seconds(1)), .now.advanced(by: .seconds(1))))
            noticeWallClockStep()
        }
    }

    /// Leases end at a wall-clock time (`expires_at`), moved onto the monotonic clock when a call
    /// or watch arrives; idle timeouts are elapsed time. When the wall clock steps (an NTP step,
    /// an operator's `date -s`), lease ends move by the step, so a forward step past a lease's end
    /// destroys its workers at once and idle timeouts stay as they were.
    private func noticeWallClockStep() {
        let offset = Date().timeIntervalSince(epoch.date) - Self.seconds(epoch.instant.duration(to: .now))
        let step = offset - wallOffset
        guard abs(step) >= 0.25 else { return }
        wallOffset = offset
        machine.wallClockStepped(by: .milliseconds(Int64((step * 1000).rounded())))
        logger.notice("the wall clock stepped; lease ends moved with it", metadata: ["step_seconds": "\(step)"])
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Wakes the timer when `deadline` comes before what it sleeps until.
    private func scheduleTimer(_ deadline: ContinuousClock.Instant?) {
        guard let deadline else { return }
        if timerTarget.map({ deadline < $0 }) ?? true {
            timerTarget = deadline
            bell.ring()
        }
    }

    /// Acts on a lease's end when it comes (`onEnd` with its session and lease ids), whether or
    /// not the session holds a worker: the runner's one timer owns every deadline.
    public func watchLease(
        session sessionID: String, lease leaseID: String, endsAt expiresAt: Date,
        onEnd: @escaping @Sendable (_ sessionID: String, _ leaseID: String) async -> Void
    ) {
        onLeaseEnd = onEnd
        let at = ContinuousClock.now.advanced(by: .milliseconds(Int64(max(0, expiresAt.timeIntervalSinceNow) * 1000)))
        guard machine.watchLease(Machine.LeaseEnd(sessionID: sessionID, leaseID: leaseID, at: at)) else { return }
        scheduleTimer(at)
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
