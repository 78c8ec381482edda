import Failures
import Foundation
import Logging
import MCP
import Sandbox
import SandboxProtocol
import WorkspaceRegistry

/// Stage 6 of a call: where and how a visible tool runs, and running it.
///
/// ``prepare(_:tier:settings:arguments:in:)`` settles everything that can refuse the call before
/// anything is recorded as allowed: the tier's kernel features, the session's workspace, a
/// read-only workspace, the arguments' canonical form and digest. ``run(_:in:)`` hands the call to
/// a confined worker (``ToolExecutor``) with the tenant's host identity, and keeps the result
/// cache in step: a tier that may write retires the workspace's cached reads before and after.
struct ToolDispatch: Sendable {
    /// A call ready to run.
    struct Prepared: Sendable {
        let tool: String
        let tierName: String
        let tier: RiskTier
        let workspace: Workspace
        /// The canonical JSON of the arguments, as the worker gets them.
        let arguments: [UInt8]
        /// SHA-256 of ``arguments``: approvals, cache keys and audit records name the call by it.
        let digest: String
        let policyVersion: String

        /// What the tier implies for its worker (computed once per call).
        let workerTier: WorkerTier
        /// Set when the tool is a stdio upstream server's.
        var upstream: UpstreamCall? = nil
        /// Whether that server's process sees the session's workspace (else an empty one).
        var upstreamSeesWorkspace = false
        /// Set when the tool is an http upstream server's.
        var httpUpstream: HTTPUpstream? = nil

        /// Whether the answer is an upstream server's whole `CallTool` result.
        var isUpstream: Bool { upstream != nil || httpUpstream != nil }
        /// Whether the tool may change the workspace: its tier's seccomp profile allows writes,
        /// and it is not an upstream server's (those see their workspace read-only, or none).
        var mayWrite: Bool { !isUpstream && tier.seccompProfile != .read }
        /// How long a result of this tier is cached (nil: not cached). Upstream results are not:
        /// the cache holds a worker's result, not a server's whole `CallTool` result.
        var cacheTTL: Int? { tier.cacheable && !isUpstream ? tier.cacheTTLSeconds : nil }
    }

    let registry: WorkspaceRegistry
    let executor: any ToolExecutor
    /// Upstream MCP servers whose tools run in their own processes.
    let upstreams: UpstreamRegistry
    let cache: ResultCache
    let kernel: KernelFeatures
    let hostIDs: TenantHostIDs?
    let logger: Logger
    let now: @Sendable () -> Date

    /// The call, ready to run, or why it cannot run here.
    func prepare(
        _ tool: String, tier name: String, settings: RiskTier?, policyVersion: String, arguments: [String: Value]?,
        in context: CallContext
    ) async throws(Refusal) -> Prepared {
        guard let settings else {
            throw Refusal(.tierUnavailable, "tier \(name) is not defined by the policy that decided this call")
        }
        // Fail closed: a tier whose required kernel features are missing does not run at all.
        let missing = settings.requires.filter { !kernel.isAvailable($0) }
        guard missing.isEmpty else {
            throw Refusal(
                .tierUnavailable,
                "tier \(name) requires \(missing.joined(separator: ", ")), which this kernel does not offer; \(ToolName.display(tool)) cannot run on this runner (see leasehold doctor)"
            )
        }
        // Fail closed too when a limit of the tier cannot be held on a whole worker here (memory of
        // a tree of processes needs a cgroup), unless the tier accepts it as best-effort.
        let workerTier = Self.workerTier(name, settings)
        let unenforceable = executor.limitEnforcement.unenforceable(workerTier)
        guard unenforceable.isEmpty else {
            throw Refusal(
                .tierUnavailable,
                "tier \(name)'s \(unenforceable.joined(separator: ", ")) cannot be enforced on a whole worker on this host (no delegated cgroup for it) and the tier does not accept it as best_effort; \(ToolName.display(tool)) cannot run on this runner (see leasehold doctor)"
            )
        }
        let workspace: Workspace
        do {
            workspace = try await registry.resolve(
                tenantID: context.session.tenantID, workspaceID: context.session.workspaceID)
        } catch {
            throw Refusal(
                .workspaceNotFound, "the session's workspace \(context.session.workspaceID) is no longer registered",
                // Not being registered is no failure of the runner's; anything else (a store) is.
                cause: error is WorkspaceError ? nil : error)
        }
        // A read-only workspace is mounted read-only for every tier; refusing here says so plainly
        // instead of letting a write fail inside the worker.
        if workspace.readOnly && settings.seccompProfile != .read {
            throw Refusal(
                .workspaceReadOnly,
                "workspace \(workspace.workspaceID) is registered read-only; \(ToolName.display(tool)) (tier \(name)) may change it"
            )
        }
        let encoded: [UInt8]
        do {
            encoded = try CanonicalJSON.encode(.object(arguments ?? [:]))
        } catch {
            throw Refusal(.invalidArguments, "arguments cannot be encoded: \(error)")
        }
        var prepared = Prepared(
            tool: tool, tierName: name, tier: settings, workspace: workspace, arguments: encoded,
            digest: Digest.sha256Hex(encoded), policyVersion: policyVersion, workerTier: workerTier)
        switch upstreams.route(for: tool, tenant: workspace.tenantID) {
        case .stdio(let upstream, let seesWorkspace)?:
            // A server is a program: only a tier whose seccomp profile lets programs run can host it.
            guard settings.seccompProfile == .exec else {
                throw Refusal(
                    .tierUnavailable,
                    "tier \(name) (seccomp_profile \(settings.seccompProfile)) cannot run upstream server \(upstream.launch.server); map its tools to a tier with seccomp_profile exec"
                )
            }
            prepared.upstream = upstream
            prepared.upstreamSeesWorkspace = seesWorkspace
        case .http(let client)?:
            prepared.httpUpstream = client
        case nil:
            break
        }
        return prepared
    }

    /// A cached result of this exact call, with the cache generation a fresh result is stored
    /// under. A tier that may write retires the workspace's cached results first.
    func cached(_ call: Prepared) -> (result: [UInt8]?, generation: UInt64) {
        let workspace = call.workspace
        if call.mayWrite { cache.bump(tenant: workspace.tenantID, workspace: workspace.workspaceID) }
        guard call.cacheTTL != nil else { return (nil, 0) }
        let generation = cache.generation(tenant: workspace.tenantID, workspace: workspace.workspaceID)
        let result = cache.lookup(
            tenant: workspace.tenantID, workspace: workspace.workspaceID, tool: call.tool,
            argumentsDigest: call.digest, now: now())
        return (result, generation)
    }

    /// Runs the call in a confined worker; `frozen` (over a disk quota, see ``DiskLedger``) mounts
    /// the workspace read-only.
    func run(_ call: Prepared, generation: UInt64, frozen: Bool = false, in context: CallContext) async
        -> ToolExecution
    {
        if let client = call.httpUpstream { return await runHTTP(call, client: client, in: context) }
        let workspace = call.workspace
        // A root runner's workers run as the tenant's own unprivileged ids. Should they be
        // unavailable, the invocation carries none and the sandbox refuses to spawn (fail closed).
        // A shared upstream process belongs to no tenant: it runs as ids of its own.
        let shared = call.upstream?.scope == .shared
        let hostIdentity = await identity(forTenant: shared ? UpstreamRegistry.sharedTenant : workspace.tenantID)
        let root = call.upstream == nil || call.upstreamSeesWorkspace ? workspace.root : upstreams.emptyRoot
        var arguments = call.arguments
        var upstream = call.upstream
        if let server = upstream {
            // The whole tools/call params: the arguments as decided, and who calls, signed.
            do {
                arguments = try await callParams(
                    server: server.launch.server, tool: server.tool, arguments: call.arguments,
                    session: context.session,
                    progress: context.progress != nil)
                upstream?.tool = UpstreamLaunch.callTool
            } catch {
                logger.error(
                    "the identity assertion could not be signed", metadata: ["error": "\(logDescription(of: error))"])
                return ToolExecution(
                    outcome: .failed(
                        code: UpstreamFailureCode.unavailable.rawValue,
                        message: "the identity assertion could not be signed"),
                    workerID: nil, isolation: .session)
            }
        }
        let invocation = ToolInvocation(
            tool: call.tool, tier: call.workerTier, arguments: arguments,
            tenantID: workspace.tenantID, workspaceID: workspace.workspaceID, workspaceRoot: root,
            workspaceReadOnly: workspace.readOnly || frozen || call.upstream != nil, sessionID: context.session.id,
            actorID: context.session.actorID, leaseID: context.session.lease.id,
            leaseExpiresAt: context.session.lease.expiresAt, policyVersion: call.policyVersion,
            authorizedAt: context.readAt, hostIdentity: hostIdentity, upstream: upstream)
        var signalled = invocation
        signalled.progress = context.progress
        signalled.cancellation = context.cancellation
        let execution = await executor.execute(signalled)
        if call.mayWrite { cache.bump(tenant: workspace.tenantID, workspace: workspace.workspaceID) }
        if let ttl = call.cacheTTL, case .completed(let result, false) = execution.outcome {
            cache.store(
                result, tenant: workspace.tenantID, workspace: workspace.workspaceID, generation: generation,
                tool: call.tool, argumentsDigest: call.digest, expires: now().addingTimeInterval(TimeInterval(ttl)))
        }
        return execution
    }

    /// A call of an http upstream: made from the runner (no process of Leasehold's runs it), with
    /// the configured headers and the signed identity assertion, held to the tier's wall clock
    /// and output bytes.
    private func runHTTP(_ call: Prepared, client: HTTPUpstream, in context: CallContext) async -> ToolExecution {
        let limits = call.workerTier.limits
        let server = String(ToolName.server(of: call.tool))
        do {
            let params = try await callParams(
                server: server, tool: String(call.tool.dropFirst(server.count + 1)), arguments: call.arguments,
                session: context.session, progress: context.progress != nil)
            let progress = context.progress?.deliver
            let timeout = Duration.milliseconds(limits.wallMs)
            let cap = limits.outputBytes + 65_536
            let result: [UInt8]
            if let cancellation = context.cancellation {
                // The client's cancellation cancels the request's own child task: the client tells
                // the server and the call ends `cancelled` (this task goes on to record the
                // outcome). The other child ends when the client cancels or the request ends.
                let (cancelled, cancel) = AsyncStream.makeStream(of: Never.self)
                result = try await cancellation.whileRunning(onCancel: { cancel.finish() }) {
                    try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
                        group.addTask {
                            try await client.call(params: params, timeout: timeout, cap: cap, progress: progress)
                        }
                        group.addTask {
                            for await _ in cancelled {}
                            return nil
                        }
                        defer { cancel.finish() }
                        while let next = try await group.next() {
                            if let result = next { return result }
                            group.cancelAll()
                        }
                        throw CancellationError()
                    }
                }
            } else {
                result = try await client.call(params: params, timeout: timeout, cap: cap, progress: progress)
            }
            return ToolExecution(
                outcome: .completed(result: result, isError: false), workerID: nil, isolation: .session)
        } catch let failure as UpstreamFailure {
            if failure.cause != nil {
                // The client reads the message; what failed underneath is for this log only.
                logger.warning(
                    "upstream call failed",
                    metadata: ["server": "\(server)", "error": "\(failure.logDescription)"])
            }
            let outcome: ToolOutcome =
                failure.code == .limitExceeded
                ? .limitExceeded(limit: "output_bytes", message: failure.message)
                : .failed(code: failure.code.rawValue, message: failure.message)
            return ToolExecution(outcome: outcome, workerID: nil, isolation: .session)
        } catch {
            logger.warning(
                "upstream call failed", metadata: ["server": "\(server)", "error": "\(logDescription(of: error))"])
            return ToolExecution(
                outcome: .failed(code: UpstreamFailureCode.unavailable.rawValue, message: "the call could not be made"),
                workerID: nil, isolation: .session)
        }
    }

    /// The whole `tools/call` params an upstream server gets: its own name of the tool, the
    /// arguments as the call decided them, and the signed assertion of who calls in `_meta`.
    ///
    /// With `progress`, `_meta.progressToken` is a token of Leasehold's own, new for each call (the
    /// client's token never reaches the server; its progress is passed on under the client's).
    private func callParams(server: String, tool: String, arguments: [UInt8], session: Session, progress: Bool)
        async throws -> [UInt8]
    {
        var params =
            Array(#"{"name":"#.utf8) + (try CanonicalJSON.encode(.string(tool))) + Array(#","arguments":"#.utf8)
            + arguments
        var meta: [[UInt8]] = []
        if let identity = upstreams.identity {
            let assertion = try await identity.sign(server: server, tool: tool, session: session, now: now())
            meta.append(Array(#""\#(UpstreamIdentity.metaKey)":"\#(assertion)""#.utf8))
        }
        if progress { meta.append(Array(#""progressToken":"\#(RandomID.make(prefix: "progress"))""#.utf8)) }
        if !meta.isEmpty {
            params +=
                Array(#","_meta":{"#.utf8) + Array(meta.joined(separator: [UInt8(ascii: ",")])) + [UInt8(ascii: "}")]
        }
        params.append(UInt8(ascii: "}"))
        return params
    }

    /// A root runner's workers run as the tenant's own unprivileged ids. Should they be
    /// unavailable, the invocation carries none and the sandbox refuses to spawn (fail closed).
    func identity(forTenant tenant: String) async -> WorkerHostIdentity? {
        guard let hostIDs else { return nil }
        do {
            return try await hostIDs.identity(forTenant: tenant)
        } catch {
            logger.error("no host ids for the tenant's workers", metadata: ["error": "\(logDescription(of: error))"])
            return nil
        }
    }

    /// What a tier implies for its workers: the tier's own limits (the sandbox's type, every one
    /// required by policy validation), with the open descriptors its profile needs (`exec` runs
    /// programs that open more).
    static func workerTier(_ name: String, _ settings: RiskTier) -> WorkerTier {
        var limits = settings.limits
        limits.openFiles = settings.seccompProfile == .exec ? 1024 : 256
        return WorkerTier(
            name: name, isolation: settings.isolation, profile: settings.seccompProfile, limits: limits,
            bestEffort: Set(settings.bestEffort))
    }
}
