import Foundation
import Logging
import MCP
import Sandbox
import Tracing

// Stages 3-8 of a call, composed: scope decision, approval, intent record, execution (result
// cache or confined worker), outcome record, and the answer to encode.
extension Gateway {
    // MARK: Calls

    /// Calls `tool` with `arguments` after authorizing it; the SDK's result type.
    ///
    /// - Throws: ``Refusal`` (`tool_not_in_scope`) for a tool that is hidden or does not exist; other
    ///   failures are tool results with `isError`.
    public func call(
        _ tool: String, arguments: [String: Value]?, in context: CallContext, requestID: String? = nil
    ) async throws(Refusal) -> CallTool.Result {
        ResultEncoder.result(try await answer(tool, arguments: arguments, in: context, requestID: requestID))
    }

    /// Calls `tool` with `arguments` after authorizing it; the answer before encoding (stage 8 is
    /// the transport's: ``ResultEncoder``).
    ///
    /// - Throws: ``Refusal`` (`tool_not_in_scope`) for a tool that is hidden or does not exist.
    public func answer(
        _ tool: String, arguments: [String: Value]?, in context: CallContext, requestID: String? = nil
    ) async throws(Refusal) -> CallAnswer {
        let started = ContinuousClock.now
        var tier: String? = nil
        do {
            let answer = try await decideAndRun(
                tool, arguments: arguments, in: context, requestID: requestID, tier: &tier)
            observeCall(
                tool, tier: tier, answer: answer, refusal: nil, in: context, requestID: requestID, since: started)
            return answer
        } catch {
            observeCall(
                tool, tier: tier, answer: nil, refusal: error, in: context, requestID: requestID, since: started)
            throw error
        }
    }

    /// ``answer(_:arguments:in:requestID:)`` unmeasured: `system.execute_tool` comes back here for
    /// its target, so a call is measured once. `tier` is set to the deciding tier once known.
    private func decideAndRun(
        _ tool: String, arguments: [String: Value]?, in context: CallContext, requestID: String?,
        tier observedTier: inout String?
    ) async throws(Refusal) -> CallAnswer {
        // One resolver for the whole call, so the tier and the policy version recorded agree.
        let resolver = self.resolver
        let scopeSpan = tracing?.child("leasehold.scope")
        let decision = resolver.decide(tool, in: context.scope)
        if let scopeSpan {
            if case .visible = decision {
                scopeSpan.attributes["leasehold.scope.decision"] = "visible"
            } else {
                scopeSpan.attributes["leasehold.scope.decision"] = "hidden"
            }
            scopeSpan.end()
        }
        guard case .visible(let tier) = decision else {
            var reason: String?
            if case .hidden(let why) = decision {
                reason = why
                logger.info(
                    "refused",
                    metadata: [
                        "code": "tool_not_in_scope", "reason": "\(why)", "session": "\(context.session.id)",
                        "tenant": "\(context.session.tenantID)",
                    ])
            }
            let refusal = Refusal(.toolNotInScope, "tool \(ToolName.display(tool)) is not available in this session")
            // The record keeps the operator-facing reason; the caller sees only that the tool is not there.
            _ = await recorder.refusal(
                refusal, tool: tool, in: context, requestID: requestID, detail: reason,
                policyVersion: resolver.policy.version)
            throw refusal
        }
        observedTier = tier
        switch tool {
        case BuiltinTools.searchTools:
            return await searchTools(arguments, resolver: resolver, in: context, requestID: requestID)
        case BuiltinTools.executeTool:
            guard case .string(let target)? = arguments?["name"] else {
                return await recorder.refused(
                    Refusal(.invalidArguments, "system.execute_tool needs a string \"name\""), tool: tool, in: context,
                    requestID: requestID)
            }
            guard target != BuiltinTools.executeTool else {
                return await recorder.refused(
                    Refusal(.invalidArguments, "system.execute_tool cannot call itself"), tool: tool, in: context,
                    requestID: requestID)
            }
            var targetArguments: [String: Value]? = nil
            switch arguments?["arguments"] {
            case .none, .null?: targetArguments = nil
            case .object(let object)?: targetArguments = object
            default:
                return await recorder.refused(
                    Refusal(.invalidArguments, "system.execute_tool \"arguments\" must be an object"), tool: tool,
                    in: context, requestID: requestID)
            }
            return try await decideAndRun(
                target, arguments: targetArguments, in: context, requestID: requestID, tier: &observedTier)
        default:
            return await execute(
                tool, tier: tier, resolver: resolver, arguments: arguments, in: context, requestID: requestID)
        }
    }

    /// `system.search_tools`: the tools of the session's scope that match a query.
    func searchTools(_ arguments: [String: Value]?, resolver: ScopeResolver, in context: CallContext, requestID: String?)
        async -> CallAnswer
    {
        let tool = BuiltinTools.searchTools
        guard case .string(let query)? = arguments?["query"] else {
            return await recorder.refused(
                Refusal(.invalidArguments, "system.search_tools needs a string \"query\""), tool: tool, in: context,
                requestID: requestID)
        }
        var event = recorder.event("call.builtin", tool: tool, in: context, requestID: requestID)
        event.decision = "allowed"
        event.policyVersion = resolver.policy.version
        event.argumentsDigest = (try? CanonicalJSON.encode(.object(arguments ?? [:]))).map { Digest.sha256Hex($0) }
        do {
            try await recorder.commit(event)
        } catch {
            return .refusal(error)
        }
        var limit = 20
        if case .int(let requested)? = arguments?["limit"] { limit = max(1, min(requested, 100)) }
        let found = resolver.search(query, in: context.scope, limit: limit)
        let items: [Value] = found.map { .object(["name": .string($0.name), "description": .string($0.description)]) }
        let text =
            found.isEmpty ? "no matching tools" : found.map { "\($0.name): \($0.description)" }.joined(separator: "\n")
        return .built(
            CallTool.Result(
                content: [.text(text: text, annotations: nil, _meta: nil)],
                structuredContent: ["tools": .array(items)] as Value?))
    }

    /// Runs a visible tool through stages 4-7. `resolver` is the snapshot that decided the call:
    /// its tier settings (approval, isolation, cache, audit sync) are read from the same policy,
    /// never from a newer one a reload swapped in meanwhile.
    func execute(
        _ tool: String, tier: String, resolver: ScopeResolver, arguments: [String: Value]?, in context: CallContext,
        requestID: String?
    ) async -> CallAnswer {
        let call: ToolDispatch.Prepared
        do {
            call = try await dispatch.prepare(
                tool, tier: tier, settings: resolver.policy.tiers[tier], policyVersion: resolver.policy.version,
                arguments: arguments, in: context)
        } catch {
            return await recorder.refused(error, tool: tool, in: context, requestID: requestID)
        }
        // Disk quotas, before approval (an approval is not spent on a call that cannot run) and
        // before the intent: a write that would take the workspace or tenant past its quota is
        // refused here; an exec call on a frozen workspace runs with it read-only.
        let admission: DiskLedger.Admission
        do {
            admission = try await disk.admit(
                call.workspace,
                WriteEstimate.change(
                    tool: tool, profile: call.tier.seccompProfile, arguments: arguments, root: call.workspace.root))
        } catch {
            return await recorder.refused(error, tool: tool, in: context, requestID: requestID)
        }
        let answer = await execute(call, admission: admission, resolver: resolver, in: context, requestID: requestID)
        await disk.settle(admission)
        return answer
    }

    /// Stages 4-7 of a call its disk quotas admitted.
    private func execute(
        _ call: ToolDispatch.Prepared, admission: DiskLedger.Admission, resolver: ScopeResolver,
        in context: CallContext, requestID: String?
    ) async -> CallAnswer {
        let tool = call.tool
        let tier = call.tierName
        var approvalFingerprint: String?
        if call.tier.approval.required {
            let approvalSpan = tracing?.child("leasehold.approval")
            switch await approvals.check(call, in: context, requestID: requestID) {
            case .proceed(let fingerprint):
                approvalSpan?.end()
                approvalFingerprint = fingerprint
            case .refuse(let answer):
                if case .refusal(let refusal, _) = answer { LeaseholdTracing.fail(approvalSpan, refusal.code.rawValue) }
                approvalSpan?.end()
                return answer
            }
        }
        var intent = recorder.event("call.intent", tool: tool, in: context, requestID: requestID)
        intent.workspace = call.workspace.workspaceID
        intent.decision = "allowed"
        intent.argumentsDigest = call.digest
        intent.approvalFingerprint = approvalFingerprint ?? intent.approvalFingerprint
        intent.policyVersion = call.policyVersion
        intent.tier = tier
        intent.isolation = call.tier.isolation.rawValue
        // Both records of the call are as durable as the tier says: committed before the call goes
        // on in any case (a runner crash loses neither), fsynced first only for `full`.
        let sync = call.tier.auditSync
        let (cached, generation) = dispatch.cached(call)
        if call.cacheTTL != nil { metrics.cacheLookup(hit: cached != nil) }
        context.span?.updateAttributes { attributes in
            attributes["leasehold.tier"] = tier
            attributes["leasehold.isolation"] = call.tier.isolation.rawValue
            attributes["leasehold.cache.hit"] = cached != nil
        }
        if let cached {
            intent.event = "call.cached"
            intent.outcome = "cached"
            let auditSpan = tracing?.child("leasehold.audit.commit")
            defer { auditSpan?.end() }
            do {
                try await recorder.commit(intent, sync: sync, otherwise: "the call was not answered")
            } catch {
                LeaseholdTracing.fail(auditSpan, error.code.rawValue)
                return .refusal(error)
            }
            return .tool(result: cached, isError: false)
        }
        // Intent first, committed: a tool never runs without its record.
        let intentSeq: Int64
        let auditSpan = tracing?.child("leasehold.audit.commit")
        do {
            intentSeq = try await recorder.commit(intent, sync: sync)
            auditSpan?.end()
        } catch {
            LeaseholdTracing.fail(auditSpan, error.code.rawValue)
            auditSpan?.end()
            return .refusal(error)
        }
        let started = ContinuousClock.now
        let execution: ToolExecution
        if let tracing {
            // The tool's span is the current context while it runs, so a worker spawned for it
            // is its child (see Runtime's worker event hook).
            let toolSpan = tracing.child("execute_tool \(ToolName.display(tool))")
            let toolStarted = DefaultTracerClock.now
            toolSpan.updateAttributes { attributes in
                attributes["gen_ai.operation.name"] = "execute_tool"
                attributes["gen_ai.tool.name"] = ToolName.display(tool)
            }
            execution = await InstrumentationContext.withValue(toolSpan.context) {
                await dispatch.run(
                    call, generation: generation, frozen: admission.frozen && admission.change == .exec, in: context)
            }
            toolSpan.updateAttributes { attributes in
                if let worker = execution.workerID { attributes["leasehold.worker.id"] = worker }
                attributes["leasehold.isolation"] = execution.isolation.rawValue
            }
            if let worker = execution.workerID { context.span?.attributes["leasehold.worker.id"] = worker }
            // Waiting for a spare, the session's lane or a spawn: the first part of the tool's span.
            if let acquired = execution.acquired {
                tracing.child("leasehold.worker.acquire", of: toolSpan, from: toolStarted, lasting: acquired)
            }
            toolSpan.end()
        } else {
            execution = await dispatch.run(
                call, generation: generation, frozen: admission.frozen && admission.change == .exec, in: context)
        }
        do {
            try await recorder.outcome(
                of: intent, intentSeq: intentSeq, execution: execution, elapsed: ContinuousClock.now - started,
                sync: sync)
        } catch {
            return .refusal(error)
        }
        if execution.upstreamToolsChanged, let server = call.upstream?.launch.server {
            requestUpstreamRefresh(server)
        }
        switch execution.outcome {
        case .completed(let result, false) where call.isUpstream:
            // The server's own CallTool result (content, structuredContent, isError), unchanged.
            return .upstream(result: result)
        case .completed(let result, let isError):
            return .tool(result: result, isError: isError)
        case .limitExceeded(let limit, let message, let partial):
            var extra: [String: Value] = ["limit": .string(limit)]
            if let partial, let value = try? ExactJSON.value(from: partial) {
                extra["partial_result"] = value
            }
            return .refusal(Refusal(.limitExceeded, message), extra: extra)
        case .failed(let code, let message):
            return .refusal(Refusal(Refusal.Code(reported: code), message))
        }
    }
}
