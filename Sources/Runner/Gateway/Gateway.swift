import Foundation
import Logging
import MCP
import Sandbox
import Synchronization
import WorkspaceRegistry

/// The single enforcement path: authenticate a claim, authorize a tool, call it.
///
/// `tools/list`, `system.search_tools`, `system.execute_tool` and `tools/call` all decide through
/// ``authorize(_:in:)``; there is no second implementation to drift.
public final class Gateway: Sendable {
    /// Persistence.
    public let store: any LeaseholdStore
    /// Workspace roots.
    public let registry: WorkspaceRegistry
    /// Claim verification.
    public let verifier: ClaimVerifier
    /// Claim minting for sessions created here.
    public let minter: ClaimMinter
    /// Where authorized calls go.
    public let executor: any ToolExecutor
    /// Connected MCP sessions, for `notifications/tools/list_changed`.
    public let connections: ConnectionRegistry
    /// The tamper-evident audit trail; a call whose record cannot be written is not run.
    public let audit: AuditLog
    /// Results of cacheable tiers, keyed by tenant, workspace and workspace generation.
    public let cache: ResultCache
    /// What this kernel offers; a tier needing a missing feature is refused, never weakened.
    public let kernel: KernelFeatures
    /// Each tenant's unprivileged host ids when the runner is root (nil when it is not): workers
    /// run as them and workspaces are owned by them.
    public let hostIDs: TenantHostIDs?
    let logger: Logger
    let now: @Sendable () -> Date
    private let resolverState: Mutex<ScopeResolver>
    private let policyState: Mutex<PolicyStatus>
    /// Verified tokens by token text, so a claim's signature is checked once, not per call.
    /// Time checks, session state and binding are still checked on every call.
    private let verifiedTokens = Mutex<[String: VerifiedClaim]>([:])
    /// Bindings already confirmed in the store (binding key -> connection); a binding never changes.
    private let confirmedBindings = Mutex<[ClaimBindingKey: String]>([:])
    private static let tokenCacheLimit = 50_000

    /// Creates the gateway.
    public init(
        store: any LeaseholdStore, verifier: ClaimVerifier, minter: ClaimMinter, catalog: Catalog, policy: RiskPolicy,
        audit: AuditLog, cache: ResultCache = ResultCache(), kernel: KernelFeatures = .current,
        workspaceRules: WorkspaceRules = WorkspaceRules(), hostIDs: TenantHostIDs? = nil,
        executor: any ToolExecutor,
        logger: Logger = Logger(label: "leasehold.gateway"),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = store
        self.registry = WorkspaceRegistry(backend: store, rules: workspaceRules)
        self.hostIDs = hostIDs
        self.verifier = verifier
        self.minter = minter
        self.executor = executor
        self.audit = audit
        self.cache = cache
        self.kernel = kernel
        self.connections = ConnectionRegistry()
        self.logger = logger
        self.now = now
        self.resolverState = Mutex(ScopeResolver(catalog: catalog, policy: policy))
        self.policyState = Mutex(PolicyStatus(version: policy.version, loadedAt: now(), lastRejection: nil))
    }

    /// The current catalog and policy.
    public var resolver: ScopeResolver { resolverState.withLock { $0 } }

    // MARK: Authentication

    /// Verifies `token`, checks it against its session and binds it to `connectionID`.
    ///
    /// - Parameter endpointServer: the server a server-scoped endpoint narrows to.
    /// - Throws: ``Refusal`` with the claim/session/lease/binding code.
    public func authenticate(
        token: String?, connectionID: String, endpointServer: String? = nil, requestID: String? = nil
    ) async throws(Refusal) -> CallContext {
        do {
            return try await authenticateUnaudited(
                token: token, connectionID: connectionID, endpointServer: endpointServer)
        } catch {
            // Every refusal is audited, with the claim's fingerprint (never the token) and whatever
            // the token claims about itself when its signature held.
            var event = AuditEvent("request.refused")
            event.decision = "refused"
            event.code = error.code.rawValue
            event.detail = String(error.message.prefix(512))
            event.requestID = requestID
            event.policyVersion = resolver.policy.version
            if let token, !token.isEmpty {
                event.claimFingerprint = Digest.sha256Hex(token.utf8)
                if let verified = verifiedTokens.withLock({ $0[token] }) {
                    event.tenant = verified.claim.tenantID
                    event.actor = verified.claim.actorID
                    event.session = verified.claim.sessionID
                    event.lease = verified.claim.leaseID
                }
            }
            _ = try? await audit.append(event)
            throw error
        }
    }

    private func authenticateUnaudited(token: String?, connectionID: String, endpointServer: String?)
        async throws(Refusal) -> CallContext
    {
        guard let token, !token.isEmpty else {
            throw Refusal(.claimMissing, "no session claim was presented (HTTP: Authorization: Bearer <claim>)")
        }
        let verified = try verifyCached(token)
        let claim = verified.claim
        let readAt = ContinuousClock.now
        let session: Session
        do {
            guard let found = try await store.session(id: claim.sessionID) else {
                throw Refusal(.sessionNotFound, "claim names session \(claim.sessionID), which does not exist")
            }
            session = found
        } catch let refusal as Refusal {
            throw refusal
        } catch {
            throw Refusal(.sessionNotFound, "the session store is unavailable: \(error)")
        }
        if session.revokedAt != nil {
            throw Refusal(.sessionRevoked, "session \(session.id) was revoked")
        }
        var mismatched: [String] = []
        if claim.tenantID != session.tenantID { mismatched.append("tenant_id") }
        if claim.actorID != session.actorID { mismatched.append("actor_id") }
        if claim.workspaceID != session.workspaceID { mismatched.append("workspace_id") }
        guard mismatched.isEmpty else {
            throw Refusal(
                .boundaryMismatch,
                "claim's \(mismatched.joined(separator: ", ")) differ from session \(session.id)'s; mint a fresh claim")
        }
        guard claim.leaseID == session.lease.id else {
            throw Refusal(
                .leaseReplaced, "claim's lease \(claim.leaseID) was replaced; mint a claim for the current lease")
        }
        guard session.lease.isLive(at: now()) else {
            throw Refusal(
                .leaseExpired, "lease \(session.lease.id) of session \(session.id) has ended; renew the lease")
        }
        try await bind(verified, session: session, connectionID: connectionID)
        let scope = try Scope(
            session: session, claimAllowedTools: claim.allowedTools, endpointServer: endpointServer,
            catalog: resolver.catalog)
        return CallContext(claim: verified, session: session, scope: scope, connectionID: connectionID, readAt: readAt)
    }

    private func verifyCached(_ token: String) throws(Refusal) -> VerifiedClaim {
        if let cached = verifiedTokens.withLock({ $0[token] }) {
            try verifier.checkTime(cached.claim)
            return cached
        }
        let verified = try verifier.verify(token)
        verifiedTokens.withLock { cache in
            if cache.count >= Self.tokenCacheLimit {
                let cutoff = Int64(now().timeIntervalSince1970)
                cache = cache.filter { $0.value.claim.exp > cutoff }
                if cache.count >= Self.tokenCacheLimit { cache.removeAll() }
            }
            cache[token] = verified
        }
        return verified
    }

    private func bind(_ verified: VerifiedClaim, session: Session, connectionID: String) async throws(Refusal) {
        // Keyed like the store: a jti only names a claim within its signer's and tenant's namespace.
        let bindingKey = ClaimBindingKey(verified)
        // The connection check comes before the claim binding is stored: a claim presented on a
        // connection it may not use is refused without being burned, so whoever planted it on the
        // wrong connection cannot deny its owner the claim (the owner would get claim_replayed).
        guard await connections.mayServe(session.id, connectionID: connectionID) else {
            throw connectionOfAnotherSession(session)
        }
        if let bound = confirmedBindings.withLock({ $0[bindingKey] }) {
            guard bound == connectionID + "|" + verified.fingerprint else { throw replayed(session) }
        } else {
            let result: BindingResult
            do {
                result = try await store.bindClaim(
                    bindingKey, fingerprint: verified.fingerprint, connectionID: connectionID, sessionID: session.id,
                    expiresAt: Date(timeIntervalSince1970: TimeInterval(verified.claim.exp + 3600)))
            } catch {
                throw Refusal(.claimInvalid, "the replay-binding store is unavailable: \(error)")
            }
            guard result != .boundElsewhere else { throw replayed(session) }
            confirmedBindings.withLock { bindings in
                // Bounded like the token cache: a forgotten binding is re-read from the store.
                if bindings.count >= Self.tokenCacheLimit { bindings.removeAll(keepingCapacity: true) }
                bindings[bindingKey] = connectionID + "|" + verified.fingerprint
            }
        }
        guard await connections.bindSession(session.id, to: connectionID) else {
            throw connectionOfAnotherSession(session)
        }
        watchLease(of: session)
    }

    /// Leases with a timer set, so each is watched once.
    private let watchedLeases = Mutex<Set<String>>([])

    /// Acts on a lease's end when it comes, not on the session's next request: at `expires_at` the
    /// session's live connections are closed and `lease.expired` is audited. A renewed lease is
    /// watched in turn; a revoked one was already handled by the revocation.
    func watchLease(of session: Session) {
        let lease = session.lease
        guard watchedLeases.withLock({ $0.insert(lease.id).inserted }) else { return }
        let delay = max(0, lease.expiresAt.timeIntervalSince(now()))
        Task { [weak self] in
            // A timer is the point: the lease ends at a time, not at an event. The 50 ms margin puts
            // the wake-up past `expires_at`, so the re-read below sees the lease as over.
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000) + 50))
            guard let self else { return }
            self.watchedLeases.withLock { _ = $0.remove(lease.id) }
            guard let current = try? await self.store.session(id: session.id), current.revokedAt == nil else { return }
            if current.lease.id != lease.id || current.lease.isLive(at: self.now()) {
                self.watchLease(of: current)  // renewed, or not over yet: watch the lease in force
                return
            }
            // A revoked lease had its connections closed when it was revoked.
            guard current.lease.revokedAt == nil else { return }
            var event = AuditEvent("lease.expired")
            event.tenant = current.tenantID
            event.actor = current.actorID
            event.session = current.id
            event.lease = lease.id
            event.workspace = current.workspaceID
            _ = try? await self.audit.append(event)
            await self.closeConnections(ofSession: current.id, reason: "lease expired")
        }
    }

    private func connectionOfAnotherSession(_ session: Session) -> Refusal {
        Refusal(
            .boundaryMismatch,
            "this MCP connection belongs to another session; open a new connection for session \(session.id)")
    }

    private func replayed(_ session: Session) -> Refusal {
        Refusal(
            .claimReplayed,
            "claim was first used on another MCP connection; each claim serves one connection (session \(session.id))")
    }

    // MARK: Authorization

    /// The one visibility decision.
    public func authorize(_ tool: String, in context: CallContext) -> ScopeDecision {
        resolver.decide(tool, in: context.scope)
    }

    /// The tools visible in `context`.
    public func listTools(in context: CallContext) async -> [Tool] {
        let tools = resolver.listing(in: context.scope)
        await connections.recordListed(tools.map(\.name), connectionID: context.connectionID, claim: context.claim)
        return tools
    }

    /// The `tools/list` result of `context` as JSON (same tools and bookkeeping as ``listTools(in:)``).
    public func listToolsJSON(in context: CallContext) async -> Data {
        let (names, json) = resolver.listingJSON(in: context.scope)
        await connections.recordListed(names, connectionID: context.connectionID, claim: context.claim)
        return json
    }

    // MARK: Calls

    /// Calls `tool` with `arguments` after authorizing it.
    ///
    /// - Throws: ``Refusal`` (`tool_not_in_scope`) for a tool that is hidden or does not exist; other
    ///   failures are tool results with `isError`.
    public func call(
        _ tool: String, arguments: [String: Value]?, in context: CallContext, requestID: String? = nil
    ) async throws(Refusal) -> CallTool.Result {
        // One resolver for the whole call, so the tier and the policy version recorded agree.
        let resolver = self.resolver
        let decision = resolver.decide(tool, in: context.scope)
        guard case .visible(let tier) = decision else {
            if case .hidden(let reason) = decision {
                logger.info(
                    "refused",
                    metadata: [
                        "code": "tool_not_in_scope", "reason": "\(reason)", "session": "\(context.session.id)",
                        "tenant": "\(context.session.tenantID)",
                    ])
            }
            let refusal = Refusal(.toolNotInScope, "tool \(ToolName.display(tool)) is not available in this session")
            // The record keeps the operator-facing reason; the caller sees only that the tool is not there.
            var reason: String?
            if case .hidden(let why) = decision { reason = why }
            _ = await auditRefusal(
                refusal, tool: tool, in: context, requestID: requestID, detail: reason,
                policyVersion: resolver.policy.version)
            throw refusal
        }
        switch tool {
        case BuiltinTools.searchTools:
            guard case .string = arguments?["query"] else {
                return await refused(
                    Refusal(.invalidArguments, "system.search_tools needs a string \"query\""), tool: tool,
                    in: context, requestID: requestID)
            }
            var event = auditEvent("call.builtin", tool: tool, in: context, requestID: requestID)
            event.decision = "allowed"
            event.policyVersion = resolver.policy.version
            event.argumentsDigest = (try? CanonicalJSON.encode(.object(arguments ?? [:]))).map { Digest.sha256Hex($0) }
            do {
                try await audit.append(event)
            } catch {
                return Self.errorResult(Refusal(.auditUnavailable, "\(error); the call was not run"))
            }
            return try searchTools(arguments, in: context)
        case BuiltinTools.executeTool:
            guard case .string(let target)? = arguments?["name"] else {
                return await refused(
                    Refusal(.invalidArguments, "system.execute_tool needs a string \"name\""), tool: tool, in: context,
                    requestID: requestID)
            }
            guard target != BuiltinTools.executeTool else {
                return await refused(
                    Refusal(.invalidArguments, "system.execute_tool cannot call itself"), tool: tool, in: context,
                    requestID: requestID)
            }
            var targetArguments: [String: Value]? = nil
            switch arguments?["arguments"] {
            case .none, .null?: targetArguments = nil
            case .object(let object)?: targetArguments = object
            default:
                return await refused(
                    Refusal(.invalidArguments, "system.execute_tool \"arguments\" must be an object"), tool: tool,
                    in: context, requestID: requestID)
            }
            return try await call(target, arguments: targetArguments, in: context, requestID: requestID)
        default:
            return await execute(
                tool, tier: tier, resolver: resolver, arguments: arguments, in: context, requestID: requestID)
        }
    }

    private func searchTools(_ arguments: [String: Value]?, in context: CallContext) throws(Refusal) -> CallTool.Result
    {
        guard case .string(let query)? = arguments?["query"] else {
            return Self.errorResult(Refusal(.invalidArguments, "system.search_tools needs a string \"query\""))
        }
        var limit = 20
        if case .int(let requested)? = arguments?["limit"] { limit = max(1, min(requested, 100)) }
        let found = resolver.search(query, in: context.scope, limit: limit)
        let items: [Value] = found.map { .object(["name": .string($0.name), "description": .string($0.description)]) }
        let text =
            found.isEmpty ? "no matching tools" : found.map { "\($0.name): \($0.description)" }.joined(separator: "\n")
        return CallTool.Result(
            content: [.text(text: text, annotations: nil, _meta: nil)],
            structuredContent: ["tools": .array(items)] as Value?)
    }

    /// An audit event carrying the request's session, claim and tool.
    private func auditEvent(_ kind: String, tool: String, in context: CallContext, requestID: String?) -> AuditEvent {
        var event = AuditEvent(kind)
        event.tenant = context.session.tenantID
        event.actor = context.session.actorID
        event.session = context.session.id
        event.lease = context.session.lease.id
        event.claimFingerprint = context.claim.fingerprint
        event.approvalFingerprint = context.claim.claim.approvalFingerprint
        event.workspace = context.session.workspaceID
        // The requested name is caller-supplied: shown escaped and bounded unless it is a valid name.
        event.tool = ToolName.display(tool)
        event.requestID = requestID
        return event
    }

    /// Runs a visible tool. `resolver` is the snapshot that decided the call: its tier settings
    /// (approval, isolation, cache) are read from the same policy, never from a newer one a reload
    /// swapped in meanwhile.
    private func execute(
        _ tool: String, tier: String, resolver: ScopeResolver, arguments: [String: Value]?, in context: CallContext,
        requestID: String?
    ) async -> CallTool.Result {
        let policyVersion = resolver.policy.version
        guard let settings = resolver.policy.tiers[tier] else {
            return await refused(
                Refusal(.tierUnavailable, "tier \(tier) is not defined by the policy that decided this call"),
                tool: tool, in: context, requestID: requestID)
        }
        // Fail closed: a tier whose required kernel features are missing does not run at all.
        let missing = settings.requires.filter { !kernel.isAvailable($0) }
        guard missing.isEmpty else {
            return await refused(
                Refusal(
                    .tierUnavailable,
                    "tier \(tier) requires \(missing.joined(separator: ", ")), which this kernel does not offer; \(ToolName.display(tool)) cannot run on this runner (see leasehold doctor)"
                ), tool: tool, in: context, requestID: requestID)
        }
        let workspace: Workspace
        do {
            workspace = try await registry.resolve(
                tenantID: context.session.tenantID, workspaceID: context.session.workspaceID)
        } catch {
            return await refused(
                Refusal(
                    .workspaceNotFound, "the session's workspace \(context.session.workspaceID) is no longer registered"
                ), tool: tool, in: context, requestID: requestID)
        }
        // A read-only workspace is mounted read-only for every tier; refusing here says so plainly
        // instead of letting a write fail inside the worker.
        if workspace.readOnly && settings.seccompProfile != SeccompProfileName.read.rawValue {
            return await refused(
                Refusal(
                    .workspaceReadOnly,
                    "workspace \(workspace.workspaceID) is registered read-only; \(ToolName.display(tool)) (tier \(tier)) may change it"
                ), tool: tool, in: context, requestID: requestID)
        }
        let encoded: [UInt8]
        do {
            encoded = try CanonicalJSON.encode(.object(arguments ?? [:]))
        } catch {
            return await refused(
                Refusal(.invalidArguments, "arguments cannot be encoded: \(error)"), tool: tool, in: context,
                requestID: requestID)
        }
        let digest = Digest.sha256Hex(encoded)
        var approvalFingerprint: String?
        if settings.approval.required {
            // An approval stores the arguments whole for the approver to read: bounded here, before
            // anything is stored, rather than by the transport's body limit (4 MiB over HTTP).
            guard encoded.count <= Approval.maximumArgumentsBytes else {
                return await refused(
                    Refusal(
                        .approvalArgumentsTooLarge,
                        "\(ToolName.display(tool)) needs a human's approval and its arguments are \(encoded.count) bytes "
                            + "of canonical JSON; approvals carry at most \(Approval.maximumArgumentsBytes) bytes so an "
                            + "approver can read all of them. Pass less inline (e.g. put the data in a workspace file)"),
                    tool: tool, in: context, requestID: requestID, digest: digest)
            }
            switch await checkApproval(
                tool: tool, workspace: workspace.workspaceID, digest: digest, arguments: encoded, in: context,
                requestID: requestID)
            {
            case .proceed(let fingerprint): approvalFingerprint = fingerprint
            case .refuse(let result): return result
            }
        }
        var event = auditEvent("call.intent", tool: tool, in: context, requestID: requestID)
        event.workspace = workspace.workspaceID
        event.decision = "allowed"
        event.argumentsDigest = digest
        event.approvalFingerprint = approvalFingerprint ?? event.approvalFingerprint
        event.policyVersion = policyVersion
        event.tier = tier
        event.isolation = settings.isolation.rawValue
        // Both records of the call are as durable as the tier says: committed before the call goes
        // on in any case (a runner crash loses neither), fsynced first only for `full`.
        let auditSync = settings.auditSync
        let cacheTTL = settings.cacheable ? settings.cacheTTLSeconds : nil
        // A tier whose profile can write may change the workspace: retire what was cached there
        // before it runs (and again after), so no read cached before or during it is served later.
        let mayWrite = settings.seccompProfile != SeccompProfileName.read.rawValue
        if mayWrite { cache.bump(tenant: workspace.tenantID, workspace: workspace.workspaceID) }
        var generation: UInt64 = 0
        if cacheTTL != nil {
            generation = cache.generation(tenant: workspace.tenantID, workspace: workspace.workspaceID)
            if let cached = cache.lookup(
                tenant: workspace.tenantID, workspace: workspace.workspaceID, tool: tool, argumentsDigest: digest,
                now: now())
            {
                event.event = "call.cached"
                event.outcome = "cached"
                do {
                    try await audit.append(event, sync: auditSync)
                } catch {
                    return Self.errorResult(Refusal(.auditUnavailable, "\(error); the call was not answered"))
                }
                return Self.toolResult(cached, isError: false)
            }
        }
        // Intent first, committed: a tool never runs without its record.
        do {
            try await audit.append(event, sync: auditSync)
        } catch {
            return Self.errorResult(Refusal(.auditUnavailable, "\(error); the call was not run"))
        }
        // A root runner's workers run as the tenant's own unprivileged ids. Should they be
        // unavailable, the invocation carries none and the sandbox refuses to spawn (fail closed).
        var hostIdentity: WorkerHostIdentity?
        if let hostIDs {
            do {
                hostIdentity = try await hostIDs.identity(forTenant: workspace.tenantID)
            } catch {
                logger.error("no host ids for the tenant's workers", metadata: ["error": "\(error)"])
            }
        }
        let started = ContinuousClock.now
        let invocation = ToolInvocation(
            tool: tool, tier: Self.workerTier(tier, settings), arguments: encoded, tenantID: workspace.tenantID,
            workspaceID: workspace.workspaceID, workspaceRoot: workspace.root, workspaceReadOnly: workspace.readOnly,
            sessionID: context.session.id, actorID: context.session.actorID, leaseID: context.session.lease.id,
            leaseExpiresAt: context.session.lease.expiresAt, policyVersion: policyVersion,
            authorizedAt: context.readAt, hostIdentity: hostIdentity)
        let execution = await executor.execute(invocation)
        let outcome = execution.outcome
        if mayWrite { cache.bump(tenant: workspace.tenantID, workspace: workspace.workspaceID) }
        if let cacheTTL, case .completed(let result, false) = outcome {
            cache.store(
                result, tenant: workspace.tenantID, workspace: workspace.workspaceID, generation: generation,
                tool: tool, argumentsDigest: digest, expires: now().addingTimeInterval(TimeInterval(cacheTTL)))
        }
        event.event = "call.outcome"
        event.time = nil
        let elapsed = ContinuousClock.now - started
        event.durationMs = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        event.workerID = execution.workerID
        event.isolation = execution.isolation.rawValue
        switch outcome {
        case .completed(let result, let isError):
            event.outcome = isError ? "error" : "completed"
            // A tool's own refusal (path_outside_workspace, hard_link, ...) is audited with its
            // code like every other refusal (invariant 9).
            if isError { event.code = Self.errorCode(in: result) }
        case .limitExceeded(let limit, _, _):
            event.outcome = "limit_exceeded"
            event.code = Refusal.Code.limitExceeded.rawValue
            event.detail = limit
        case .failed(let code, let message):
            event.outcome = "failed"
            event.code = code
            event.detail = String(message.prefix(512))
        }
        do {
            try await audit.append(event, sync: auditSync)
        } catch {
            return Self.errorResult(
                Refusal(.auditUnavailable, "\(error); the call ran but its outcome could not be recorded"))
        }
        switch outcome {
        case .completed(let result, let isError):
            return Self.toolResult(result, isError: isError)
        case .limitExceeded(let limit, let message, let partial):
            var extra: [String: Value] = ["limit": .string(limit)]
            if let partial, let value = try? ExactJSON.value(from: partial) {
                extra["partial_result"] = value
            }
            return Self.errorResult(Refusal(.limitExceeded, message), extra: extra)
        case .failed(let code, let message):
            return Self.errorResult(Refusal(Refusal.Code(code), message))
        }
    }

    /// What a tier implies for its workers. Limits the policy leaves open take the sandbox's
    /// strict defaults (policy validation requires every tier to name its limits).
    static func workerTier(_ name: String, _ settings: RiskTier) -> WorkerTier {
        let defaults = WorkerLimits()
        let limits = settings.limits
        let profile = SeccompProfileName(rawValue: settings.seccompProfile) ?? .read
        return WorkerTier(
            name: name, isolation: settings.isolation == .call ? .call : .session, profile: profile,
            limits: WorkerLimits(
                wallMs: limits.wallMs ?? defaults.wallMs, cpuSeconds: limits.cpuSeconds ?? defaults.cpuSeconds,
                memoryMiB: limits.memoryMiB ?? defaults.memoryMiB, fileSizeMiB: limits.fileSizeMiB ?? defaults.fileSizeMiB,
                processes: limits.processes ?? defaults.processes, outputBytes: limits.outputBytes ?? defaults.outputBytes,
                openFiles: profile == .exec ? 1024 : 256))
    }

    /// The `error.code` of a tool's error result, if it is a short identifier (the worker's codes
    /// are; anything else is not repeated into the audit trail).
    static func errorCode(in result: [UInt8]) -> String? {
        guard case .object(let object)? = try? ExactJSON.value(from: result),
            case .object(let error)? = object["error"], case .string(let code)? = error["code"],
            code.utf8.count <= 64, code.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || ($0 >= 0x61 && $0 <= 0x7A) })
        else { return nil }
        return code
    }

    /// A tool's JSON result as MCP structured and text content.
    static func toolResult(_ result: [UInt8], isError: Bool) -> CallTool.Result {
        let value = (try? ExactJSON.value(from: result)) ?? .string(String(decoding: result, as: UTF8.self))
        return CallTool.Result(
            content: [.text(text: String(decoding: result, as: UTF8.self), annotations: nil, _meta: nil)],
            structuredContent: value as Value?, isError: isError)
    }

    /// A tool result with `isError`, the code in structured content and `code: message` as text.
    static func errorResult(_ refusal: Refusal, extra: [String: Value] = [:]) -> CallTool.Result {
        var error: [String: Value] = ["code": .string(refusal.code.rawValue), "message": .string(refusal.message)]
        error.merge(extra) { current, _ in current }
        return CallTool.Result(
            content: [.text(text: refusal.description, annotations: nil, _meta: nil)],
            structuredContent: ["error": .object(error)] as Value?, isError: true)
    }

    /// A refused call: audited with its code (every refusal is), then answered as a tool error.
    private func refused(
        _ refusal: Refusal, tool: String, in context: CallContext, requestID: String?, digest: String? = nil,
        approval: Approval? = nil, extra: [String: Value] = [:]
    ) async -> CallTool.Result {
        if !(await auditRefusal(
            refusal, tool: tool, in: context, requestID: requestID, digest: digest, approval: approval))
        {
            logger.error(
                "refusal not audited", metadata: ["code": "\(refusal.code)", "session": "\(context.session.id)"])
        }
        return Self.errorResult(refusal, extra: extra)
    }

    /// Writes the audit record of a refused call; false when it could not be written.
    /// `detail` defaults to the refusal's sentence (cut at 512 bytes).
    private func auditRefusal(
        _ refusal: Refusal, kind: String = "call.refused", tool: String, in context: CallContext, requestID: String?,
        digest: String? = nil, approval: Approval? = nil, detail: String? = nil, policyVersion: String? = nil
    ) async -> Bool {
        var event = auditEvent(kind, tool: tool, in: context, requestID: requestID)
        event.decision = "refused"
        event.code = refusal.code.rawValue
        let text = detail ?? refusal.message
        event.detail = String(text.utf8.prefix(512)) ?? String(text.prefix(128))
        event.argumentsDigest = digest
        event.policyVersion = policyVersion
        if let approval { event.approvalFingerprint = approval.fingerprint }
        return (try? await audit.append(event)) != nil
    }

    // MARK: Approvals

    private enum ApprovalCheck {
        case proceed(fingerprint: String)
        case refuse(CallTool.Result)
    }

    /// Decides whether an approval lets this exact call run, consuming one use if so.
    ///
    /// A claim's `approval_fingerprint`, when present, must name a grant of the claim's own session
    /// for this exact call. Otherwise the session's grants for this exact call (same tool, workspace
    /// and arguments digest) are tried, oldest first. Anything that looks like reuse of a grant it
    /// cannot serve is refused `approval_invalid` and audited as a replay.
    private func checkApproval(
        tool: String, workspace: String, digest: String, arguments: [UInt8], in context: CallContext,
        requestID: String?
    ) async -> ApprovalCheck {
        let session = context.session
        let key = Approval.bindingKey(session: session.id, tool: tool, workspace: workspace, argumentsDigest: digest)
        let now = self.now()
        func replay(_ message: String, approval: Approval?, extra: [String: Value] = [:]) async -> ApprovalCheck {
            let refusal = Refusal(.approvalInvalid, message)
            guard
                await auditRefusal(
                    refusal, kind: "approval.replay", tool: tool, in: context, requestID: requestID, digest: digest,
                    approval: approval)
            else {
                return .refuse(Self.errorResult(Refusal(.auditUnavailable, "the call was not run")))
            }
            return .refuse(Self.errorResult(refusal, extra: extra))
        }
        do {
            var candidates: [Approval]
            if let named = context.claim.claim.approvalFingerprint {
                guard let approval = try await store.approval(fingerprint: named), approval.sessionID == session.id
                else {
                    return await replay(
                        "the claim's approval_fingerprint names no approval of session \(session.id)", approval: nil)
                }
                guard approval.bindingKey == key else {
                    return await replay(
                        "approval \(approval.id) was granted for another call (tool, workspace or arguments differ)",
                        approval: approval)
                }
                candidates = [approval]
            } else {
                candidates = try await store.approvals(bindingKey: key)
            }
            for candidate in candidates where candidate.isUsable(at: now, by: session) {
                // Consumed under the store's write lock, re-checked there: two concurrent retries
                // cannot share one use (nil when another call took the last one first).
                if let consumed = try await store.consumeApproval(
                    id: candidate.id, sessionID: session.id, leaseID: session.lease.id, actorID: session.actorID,
                    at: now)
                {
                    var event = auditEvent("approval.used", tool: tool, in: context, requestID: requestID)
                    event.decision = "allowed"
                    event.argumentsDigest = digest
                    event.approvalFingerprint = consumed.fingerprint
                    event.detail = "approval \(consumed.id), \(consumed.usesLeft ?? 0) use(s) left"
                    if (try? await audit.append(event)) == nil {
                        return .refuse(Self.errorResult(Refusal(.auditUnavailable, "the call was not run")))
                    }
                    return .proceed(fingerprint: consumed.fingerprint)
                }
            }
            if let pending = candidates.first(where: { $0.status == .pending && $0.leaseID == session.lease.id }) {
                return .refuse(
                    await refused(
                        requiredRefusal(pending), tool: tool, in: context, requestID: requestID, digest: digest,
                        approval: pending, extra: requiredExtra(pending)))
            }
            if let denied = candidates.last(where: { $0.status == .denied && $0.leaseID == session.lease.id }) {
                return .refuse(
                    await refused(
                        Refusal(
                            .approvalDenied,
                            "approval \(denied.id) for this exact call was denied by \(denied.decidedBy ?? "a human")"),
                        tool: tool, in: context, requestID: requestID, digest: digest, approval: denied,
                        extra: ["approval_id": .string(denied.id)]))
            }
            if let spent = candidates.last(where: { $0.status == .granted || $0.status == .exhausted }) {
                let why =
                    spent.leaseID != session.lease.id
                    ? "was granted under an earlier lease"
                    : spent.actorID != session.actorID
                        ? "was granted for another actor's call"
                        : spent.status == .exhausted ? "has no uses left" : "has expired"
                let fresh = try await ask(
                    tool: tool, workspace: workspace, digest: digest, arguments: arguments, in: context,
                    requestID: requestID)
                return await replay(
                    "approval \(spent.id) \(why); a new approval \(fresh.id) was requested", approval: spent,
                    extra: ["approval_id": .string(fresh.id), "summary": .string(fresh.summary)])
            }
            return .refuse(
                required(
                    try await ask(
                        tool: tool, workspace: workspace, digest: digest, arguments: arguments, in: context,
                        requestID: requestID)))
        } catch {
            return .refuse(
                await refused(
                    Refusal(.approvalRequired, "the approval store is unavailable: \(error)"), tool: tool, in: context,
                    requestID: requestID, digest: digest))
        }
    }

    private func requiredRefusal(_ approval: Approval) -> Refusal {
        Refusal(
            .approvalRequired,
            "\(approval.tool) needs a human's approval of this exact call; ask for approval \(approval.id) to be granted, then retry the same call"
        )
    }

    private func requiredExtra(_ approval: Approval) -> [String: Value] {
        ["approval_id": .string(approval.id), "summary": .string(approval.summary)]
    }

    private func required(_ approval: Approval) -> CallTool.Result {
        Self.errorResult(requiredRefusal(approval), extra: requiredExtra(approval))
    }

    /// Records a pending approval for this exact call and audits the request.
    private func ask(
        tool: String, workspace: String, digest: String, arguments: [UInt8], in context: CallContext,
        requestID: String?
    ) async throws -> Approval {
        // The approval carries the canonical arguments whole (the summary is only a preview that
        // says when it is cut); an approver grants exactly the text whose SHA-256 is the digest.
        let approval = Approval(
            id: RandomID.make(prefix: "apr"), tenantID: context.session.tenantID, sessionID: context.session.id,
            leaseID: context.session.lease.id, actorID: context.session.actorID, workspaceID: workspace, tool: tool,
            arguments: String(decoding: arguments, as: UTF8.self), createdAt: now())
        // Canonical JSON is UTF-8, so the text hashes to the digest the call is checked against; if it
        // ever did not, the approval could never match its call, so refuse rather than store it.
        guard approval.argumentsDigest == digest else {
            throw Refusal(.invalidArguments, "the call's arguments are not valid UTF-8 JSON")
        }
        var event = auditEvent("approval.asked", tool: tool, in: context, requestID: requestID)
        event.argumentsDigest = digest
        event.approvalFingerprint = approval.fingerprint
        event.detail = "approval \(approval.id)"
        try await audit.append(event)
        try await store.insertApproval(approval)
        return approval
    }

    // MARK: Catalog and policy

    /// Replaces catalog and policy atomically, then tells connected sessions whose view changed.
    public func replace(catalog: Catalog? = nil, policy: RiskPolicy? = nil) async {
        resolverState.withLock { state in
            state = ScopeResolver(catalog: catalog ?? state.catalog, policy: policy ?? state.policy)
        }
        await notifyAllConnections()
    }

    /// Swaps in a resolver already built (the reload path builds it once, to compare and to use).
    private func install(_ next: ScopeResolver) async {
        resolverState.withLock { $0 = next }
        await notifyAllConnections()
    }

    /// The policy in force and the last rejected reload, for `GET /api/v1/policy` and logs.
    public var policyStatus: PolicyStatus { policyState.withLock { $0 } }

    /// Loads `directory`, validates it (files and catalog), and swaps it in atomically; connected
    /// sessions whose visible set changed get `notifications/tools/list_changed`. An invalid
    /// policy is rejected and the one in force stays.
    ///
    /// - Returns: the new version, or the problems that rejected it.
    @discardableResult
    public func reloadPolicy(directory: String) async -> Result<String, PolicyValidationError> {
        let loaded: RiskPolicy
        do {
            loaded = try RiskPolicy.load(directory: directory)
        } catch {
            rejectPolicy(error)
            return .failure(error)
        }
        let report = PolicyReport.check(loaded, catalog: resolver.catalog)
        guard report.errors.isEmpty else {
            let error = PolicyValidationError(
                diagnostics: report.errors.map {
                    PolicyDiagnostic(file: directory + "/tools.yaml", line: nil, column: nil, message: $0)
                })
            rejectPolicy(error)
            return .failure(error)
        }
        let current = resolver
        let previous = current.policy.version
        if loaded.version != previous {
            let next = ScopeResolver(catalog: current.catalog, policy: loaded)
            let changed = Self.changedTiers(from: current, to: next)
            await install(next)
            if !changed.isEmpty { await executor.tiersChanged(changed) }
        }
        policyState.withLock {
            $0.version = loaded.version; $0.loadedAt = now()
        }
        logger.notice(
            "policy loaded",
            metadata: ["version": "\(loaded.version)", "previous": "\(previous)", "directory": "\(directory)"])
        return .success(loaded.version)
    }

    /// Tiers whose settings changed or disappeared, plus every tier a catalog tool moved out of or
    /// into, for any tenant: workers of those tiers no longer match what the policy says.
    static func changedTiers(from current: ScopeResolver, to next: ScopeResolver) -> Set<String> {
        let policy = next.policy
        var changed = Set(current.policy.tiers.keys.filter { current.policy.tiers[$0] != policy.tiers[$0] })
        let tenants = Set(current.policy.tenantOverrides.keys).union(policy.tenantOverrides.keys)
        for tenant in [nil] + tenants.sorted().map(Optional.some) {
            for tool in current.catalog.tools {
                let before = current.tier(of: tool.name, tenant: tenant)
                let after = next.tier(of: tool.name, tenant: tenant)
                if before != after {
                    if let before { changed.insert(before) }
                    if let after { changed.insert(after) }
                }
            }
        }
        return changed
    }

    private func rejectPolicy(_ error: PolicyValidationError) {
        policyState.withLock {
            $0.lastRejection = PolicyStatus.Rejection(at: now(), errors: error.diagnostics.map(\.description))
        }
        logger.error(
            "policy reload rejected; the policy in force stays",
            metadata: ["version_in_force": "\(resolver.policy.version)", "errors": "\(error.description)"])
    }

    /// Tells every connection of `sessionID` whose visible set changed.
    public func sessionChanged(_ sessionID: String) async {
        guard let session = try? await store.session(id: sessionID) else { return }
        await notify(session: session)
    }

    /// Closes the live MCP connections of `sessionID` (revoke, lease revoke, actor or workspace
    /// hand-off): a connection serves one holder of the session and is never handed to the next.
    public func closeConnections(ofSession sessionID: String, reason: String) async {
        let closed = await connections.close(session: sessionID)
        if closed > 0 {
            logger.info(
                "closed connections",
                metadata: ["session": "\(sessionID)", "count": "\(closed)", "reason": "\(reason)"])
        }
    }

    private func notifyAllConnections() async {
        for sessionID in await connections.sessionIDs() {
            await sessionChanged(sessionID)
        }
    }

    private func notify(session: Session) async {
        let resolver = self.resolver
        for entry in await connections.entries(forSession: session.id) {
            let names: [String]
            if session.revokedAt != nil {
                names = []
            } else if let scope = try? Scope(
                session: session, claimAllowedTools: entry.claimAllowedTools, endpointServer: entry.endpointServer,
                catalog: resolver.catalog)
            {
                names = resolver.listing(in: scope).map(\.name)
            } else {
                names = []
            }
            await connections.notifyIfChanged(connectionID: entry.connectionID, visible: names)
        }
    }
}

/// The policy in force and the last reload that was refused.
public struct PolicyStatus: Sendable, Encodable {
    /// A reload that was refused.
    public struct Rejection: Sendable, Encodable {
        /// When.
        public let at: Date
        /// Every problem, `file:line:column: message`.
        public let errors: [String]
    }

    /// Content hash of the policy in force.
    public var version: String
    /// When it was loaded.
    public var loadedAt: Date
    /// The last refused reload, if any since start.
    public var lastRejection: Rejection?

    enum CodingKeys: String, CodingKey {
        case version
        case loadedAt = "loaded_at"
        case lastRejection = "last_rejection"
    }
}
