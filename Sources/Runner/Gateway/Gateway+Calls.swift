import Foundation
import Logging
import MCP
import Sandbox
import Synchronization
import WorkspaceRegistry

// Stages 3-7 of a call: scope decision, approval, intent record, cache, execution in a worker,
// outcome record, and the MCP result.
extension Gateway {
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

    func searchTools(_ arguments: [String: Value]?, in context: CallContext) throws(Refusal) -> CallTool.Result
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
    func auditEvent(_ kind: String, tool: String, in context: CallContext, requestID: String?) -> AuditEvent {
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
    func execute(
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
    func refused(
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
    func auditRefusal(
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
}
