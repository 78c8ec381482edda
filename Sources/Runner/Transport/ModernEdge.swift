import Crypto
import Foundation
import MCP

/// Answers the requests of MCP 2026-07-28 (``ModernProtocol``) over either transport, with the
/// context the transport authenticated once: `server/discover`, `tools/list` (with its cache
/// rules) and `tools/call`, where an approval is asked inside the call (`InputRequiredResult`
/// with a signed `requestState`, ``RequestStates``). `subscriptions/listen` is the transport's,
/// since it is a stream.
struct ModernEdge: Sendable {
    let gateway: Gateway

    /// The methods served on the revision.
    static let methods: Set<String> = ["server/discover", "tools/list", "tools/call", "subscriptions/listen"]

    /// A JSON-RPC response message and the HTTP status the revision gives it.
    struct Reply: Sendable {
        let body: Data
        let status: Int
    }

    /// How long a client may reuse a `tools/list` or `server/discover` result: until its claim or
    /// lease ends, and at most 30 s, so a client that does not listen for `list_changed` sees a scope
    /// change within that. (The listing is advisory either way: every call is authorized against
    /// the scope in force.)
    static func ttlMs(_ context: CallContext, now: Date) -> Int {
        let claimLeft = Double(context.claim.claim.exp) - now.timeIntervalSince1970
        let leaseLeft = context.session.lease.expiresAt.timeIntervalSince(now)
        return max(0, Int(min(30, claimLeft, leaseLeft) * 1000))
    }

    /// The reply to `request`; `approvalURL` makes the link a user follows to an approval.
    func answer(_ request: ModernProtocol.Request, context: CallContext, approvalURL: (String) -> String) async
        -> Reply
    {
        switch request.method {
        case "server/discover":
            return result(request, ModernProtocol.discoverResult(ttlMs: Self.ttlMs(context, now: gateway.now())))
        case "tools/list":
            let listing = await gateway.listToolsJSON(in: context, requestID: request.idText)
            return result(
                request, ModernProtocol.listResult(listing, ttlMs: Self.ttlMs(context, now: gateway.now())))
        case "tools/call":
            return await call(request, context: context, approvalURL: approvalURL)
        default:
            return error(
                request,
                .init(code: ModernProtocol.ErrorCode.methodNotFound, message: "Method not found: \(request.method)"))
        }
    }

    private func call(_ request: ModernProtocol.Request, context: CallContext, approvalURL: (String) -> String) async
        -> Reply
    {
        guard let name = request.params["name"] as? String else {
            return error(
                request, .init(code: ModernProtocol.ErrorCode.invalidParams, message: "invalid_arguments: no tool name")
            )
        }
        var arguments: [String: Value]? = nil
        if let raw = request.params["arguments"] {
            guard case .object(let object)? = ExactJSON.value(of: raw) else {
                return error(
                    request,
                    .init(
                        code: ModernProtocol.ErrorCode.invalidParams,
                        message: "invalid_arguments: arguments must be an object"))
            }
            arguments = object
        }
        let digest = Self.digest(arguments)
        if let state = request.params["requestState"] {
            if let refusal = await redeem(state, tool: name, digest: digest, context: context, request: request) {
                return error(request, .init(code: ModernProtocol.ErrorCode.invalidParams, message: refusal.description))
            }
        }
        let answer: CallAnswer
        do {
            answer = try await gateway.answer(name, arguments: arguments, in: context, requestID: request.idText)
        } catch {
            return Reply(
                body: HotMethodEdge.response(id: request.id, error: MCPError.invalidParams(error.description)),
                status: 400)
        }
        if case .refusal(let refusal, let extra) = answer, refusal.code == .approvalRequired,
            case .string(let approvalID)? = extra["approval_id"], Self.asksUser(request),
            !Self.userDeclined(request)
        {
            let state = gateway.requestStates.issue(
                session: context.session.id, lease: context.session.lease.id, connection: context.connectionID,
                tool: name, digest: digest, approval: approvalID)
            let summary = extra["summary"]?.stringValue ?? ""
            let inputRequired: [String: Any] = [
                "resultType": "input_required",
                "requestState": state,
                "inputRequests": [
                    "leasehold_approval": [
                        "method": "elicitation/create",
                        "params": [
                            "mode": "url",
                            "url": approvalURL(approvalID),
                            "message":
                                "\(ToolName.display(name)) needs a human's approval of this exact call (approval \(approvalID)). "
                                + "It will run: \(summary) (arguments digest sha256:\(digest)). Grant it, then continue.",
                        ] as [String: Any],
                    ] as [String: Any]
                ] as [String: Any],
            ]
            let body = (try? JSONSerialization.data(withJSONObject: inputRequired, options: [.sortedKeys])) ?? Data()
            return result(request, body)
        }
        return result(request, ModernProtocol.withFields(ResultEncoder.json(answer), [ModernProtocol.complete]))
    }

    /// Checks a retry's `requestState`; the refusal (audited) when it cannot be used.
    private func redeem(
        _ raw: Any, tool: String, digest: String, context: CallContext, request: ModernProtocol.Request
    ) async -> Refusal? {
        let expected = RequestStates.Payload(
            nonce: "", session: context.session.id, lease: context.session.lease.id, connection: context.connectionID,
            tool: tool, digest: digest, approval: "", expires: 0)
        let refusal: Refusal
        do throws(RequestStates.Failure) {
            guard let text = raw as? String else { throw RequestStates.Failure.invalid }
            _ = try gateway.requestStates.redeem(text, expected: expected)
            return nil
        } catch .invalid {
            refusal = Refusal(
                .requestStateInvalid,
                "requestState was not issued by this runner or was altered; start the call again without it")
        } catch .expired {
            refusal = Refusal(.requestStateExpired, "requestState has expired; start the call again without it")
        } catch .mismatched(let what) {
            refusal = Refusal(
                .requestStateInvalid,
                "requestState was issued for another call (its \(what) differ); start the call again without it")
        } catch {
            refusal = Refusal(
                .requestStateReplayed,
                "requestState was already used for its one retry; start the call again without it")
        }
        gateway.metrics.refused(refusal.code.rawValue, tenant: context.session.tenantID)
        _ = await gateway.recorder.refusal(
            refusal, kind: "request_state.refused", tool: tool, in: context, requestID: request.idText)
        return refusal
    }

    /// SHA-256 (hex) of the arguments as canonical JSON (keys sorted): what a `requestState` binds.
    static func digest(_ arguments: [String: Value]?) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(arguments ?? [:])) ?? Data()
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether the client declared it can ask its user (`elicitation` among its capabilities);
    /// one that cannot gets the plain `approval_required` result, as on older revisions.
    static func asksUser(_ request: ModernProtocol.Request) -> Bool {
        let meta = request.params["_meta"] as? [String: Any]
        let capabilities = meta?[ModernProtocol.capabilitiesKey] as? [String: Any]
        return capabilities?["elicitation"] != nil
    }

    /// Whether the user declined or cancelled the approval request in the client: the call then
    /// ends with its `approval_required` result instead of asking again.
    static func userDeclined(_ request: ModernProtocol.Request) -> Bool {
        let responses = request.params["inputResponses"] as? [String: Any]
        let answer = responses?["leasehold_approval"] as? [String: Any]
        guard let action = answer?["action"] as? String else { return false }
        return action != "accept"
    }

    private func result(_ request: ModernProtocol.Request, _ value: Data) -> Reply {
        Reply(body: HotMethodEdge.envelope(id: request.id, key: "result", value: value), status: 200)
    }

    private func error(_ request: ModernProtocol.Request, _ rejection: ModernProtocol.Rejection) -> Reply {
        Reply(body: ModernProtocol.errorMessage(id: request.id, rejection), status: rejection.httpStatus)
    }
}
