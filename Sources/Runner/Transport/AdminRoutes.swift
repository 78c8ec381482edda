import Failures
import Foundation
import Hummingbird
import MCP
import WorkspaceRegistry

/// `/api/v1/...`: the orchestrator and operator API.
struct AdminRoutes: Sendable {
    let admin: AdminService

    func register(on router: Router<LeaseholdRequestContext>) {
        let api = router.group("/api/v1")

        api.post("/workspaces") { request, _ in
            try await respond(request) { request, principal in
                let body = try await HTTPJSON.decode(RegisterWorkspaceRequest.self, from: &request)
                return HTTPJSON.response(.created, try await admin.registerWorkspace(body, by: principal))
            }
        }
        api.get("/workspaces") { request, _ in
            try await respond(request) { request, principal in
                let tenant = request.uri.queryParameters.get("tenant_id")
                return HTTPJSON.response(
                    .ok, ["workspaces": try await admin.listWorkspaces(tenantID: tenant, by: principal)])
            }
        }
        api.get("/workspaces/:tenant_id/:workspace_id") { request, context in
            let tenant = context.parameters.get("tenant_id") ?? ""
            let workspace = context.parameters.get("workspace_id") ?? ""
            return try await respond(request) { _, principal in
                HTTPJSON.response(
                    .ok, try await admin.workspace(tenantID: tenant, workspaceID: workspace, by: principal))
            }
        }
        api.delete("/workspaces/:tenant_id/:workspace_id") { request, context in
            let tenant = context.parameters.get("tenant_id") ?? ""
            let workspace = context.parameters.get("workspace_id") ?? ""
            let purge = request.uri.queryParameters.get("purge") == "true"
            return try await respond(request) { _, principal in
                try await admin.removeWorkspace(tenantID: tenant, workspaceID: workspace, purge: purge, by: principal)
                return Response(status: .noContent)
            }
        }
        api.post("/sessions") { request, _ in
            try await respond(request) { request, principal in
                let body = try await HTTPJSON.decode(CreateSessionRequest.self, from: &request)
                let (session, claim) = try await admin.createSession(body, by: principal)
                return HTTPJSON.response(.created, SessionWithClaim(session: session, claim: claim))
            }
        }
        api.get("/sessions/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { _, principal in
                HTTPJSON.response(
                    .ok, SessionWithClaim(session: try await admin.session(id: id, by: principal), claim: nil))
            }
        }
        api.patch("/sessions/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { request, principal in
                let patch = try await HTTPJSON.decode(SessionPatch.self, from: &request)
                return HTTPJSON.response(
                    .ok,
                    SessionWithClaim(
                        session: try await admin.patchSession(id: id, patch: patch, by: principal), claim: nil))
            }
        }
        api.delete("/sessions/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { _, principal in
                HTTPJSON.response(
                    .ok, SessionWithClaim(session: try await admin.revokeSession(id: id, by: principal), claim: nil))
            }
        }
        api.post("/sessions/:id/claims") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { request, principal in
                let body = try await optionalBody(ClaimRequest.self, from: &request) ?? ClaimRequest()
                let (session, claim) = try await admin.mintClaim(
                    sessionID: id, ttlSeconds: body.ttlSeconds, allowedTools: body.allowedTools,
                    approvalFingerprint: body.approvalFingerprint, by: principal)
                return HTTPJSON.response(.created, SessionWithClaim(session: session, claim: claim))
            }
        }
        api.post("/sessions/:id/lease") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { request, principal in
                let body = try await optionalBody(LeaseRequest.self, from: &request) ?? LeaseRequest()
                let (session, claim) = try await admin.renewLease(
                    sessionID: id, ttlSeconds: body.ttlSeconds, by: principal)
                return HTTPJSON.response(.created, SessionWithClaim(session: session, claim: claim))
            }
        }
        api.delete("/sessions/:id/lease") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { _, principal in
                HTTPJSON.response(
                    .ok,
                    SessionWithClaim(session: try await admin.revokeLease(sessionID: id, by: principal), claim: nil))
            }
        }
        api.get("/approvals") { request, _ in
            try await respond(request) { request, principal in
                let query = request.uri.queryParameters
                let approvals = try await admin.approvals(
                    sessionID: query.get("session_id"), status: query.get("status"), tenantID: query.get("tenant_id"),
                    limit: Int(query.get("limit") ?? "") ?? AdminService.defaultApprovalsLimit, by: principal)
                return HTTPJSON.response(.ok, ["approvals": approvals])
            }
        }
        api.get("/approvals/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { _, principal in
                HTTPJSON.response(.ok, ["approval": try await admin.approval(id: id, by: principal)])
            }
        }
        api.post("/approvals/:id/grant") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { request, principal in
                let body = try await optionalBody(GrantRequest.self, from: &request) ?? GrantRequest()
                let approval = try await admin.grantApproval(
                    id: id, ttlSeconds: body.ttlSeconds, uses: body.uses, by: principal)
                return HTTPJSON.response(.ok, ["approval": approval])
            }
        }
        api.post("/approvals/:id/deny") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { request, principal in
                let body = try await optionalBody(DenyRequest.self, from: &request)
                return HTTPJSON.response(
                    .ok, ["approval": try await admin.denyApproval(id: id, reason: body?.reason, by: principal)])
            }
        }
        api.get("/audit") { request, _ in
            try await respond(request) { request, principal in
                let query = request.uri.queryParameters
                var filter = AuditFilter()
                filter.tenant = query.get("tenant_id")
                filter.session = query.get("session_id")
                if let text = query.get("since") {
                    guard let parsed = try? Date(text, strategy: .iso8601) else {
                        throw APIError.invalid("since must be an ISO 8601 time such as 2026-11-23T12:00:00Z")
                    }
                    filter.since = parsed
                }
                // Only indexed filters here: every record read matches, so the page fills at `limit`.
                let page = try admin.auditRecords(
                    filter, afterSeq: Int64(query.get("after_seq") ?? "") ?? 0,
                    limit: Int(query.get("limit") ?? "") ?? AdminService.defaultAuditLimit, scanBudget: Int.max,
                    by: principal)
                let (records, outcomes) = (page.records, page.outcomes)
                return HTTPJSON.response(.ok, AuditPage(records: records, outcomes: outcomes))
            }
        }
        api.get("/cache") { request, _ in
            try await respond(request) { _, principal in
                guard principal == .operator else {
                    throw APIError.forbidden("only the operator key reads cache statistics")
                }
                return HTTPJSON.response(.ok, admin.gateway.cache.statistics)
            }
        }
        api.get("/servers") { request, _ in
            try await respond(request) { _, principal in
                // Upstream failures can name the operator's paths: operator only.
                guard principal == .operator else {
                    throw APIError.forbidden("only the operator key reads upstream server status")
                }
                return HTTPJSON.response(.ok, ServersStatus(servers: admin.gateway.upstreams.status))
            }
        }
        api.get("/policy") { request, _ in
            try await respond(request) { _, principal in
                // Reload errors name files and lines of the security team's policy: operator only.
                HTTPJSON.response(.ok, try admin.policyStatus(by: principal))
            }
        }
        api.post("/tenants/:tenant_id/admin-keys") { request, context in
            let tenant = context.parameters.get("tenant_id") ?? ""
            return try await respond(request) { _, principal in
                let key = try await admin.createAdminKey(tenantID: tenant, by: principal)
                return HTTPJSON.response(.created, ["tenant_id": tenant, "key": key])
            }
        }
    }

    /// Authenticates the admin key, runs `body`, and turns ``APIError`` into a JSON error response.
    private func respond(
        _ request: Request, _ body: (inout Request, Principal) async throws -> Response
    ) async throws -> Response {
        var request = request
        do {
            let principal = try await admin.principal(forKey: MCPHandlers.bearer(request.headers[.authorization]))
            return try await body(&request, principal)
        } catch let error as APIError {
            // What failed underneath (a store's error) is for the runner's log, never the body.
            if error.cause != nil {
                admin.gateway.logger.error("admin request failed", metadata: ["error": "\(error.logDescription)"])
            }
            var headers = HTTPFields()
            if error.status == 401 { headers[.wwwAuthenticate] = "Bearer realm=\"leasehold-admin\"" }
            return HTTPJSON.error(error, headers: headers)
        } catch {
            // Whatever failed underneath is for the runner's log; the caller learns only that it did.
            admin.gateway.logger.error("admin request failed", metadata: ["error": "\(logDescription(of: error))"])
            return HTTPJSON.error(APIError(.internalError, "the request failed inside the runner"))
        }
    }

    private func optionalBody<T: RequestBody>(_ type: T.Type, from request: inout Request) async throws(APIError) -> T?
    {
        if request.headers[.contentLength] == "0"
            || (request.headers[.contentLength] == nil && request.headers[.transferEncoding] == nil)
        {
            return nil
        }
        return try await HTTPJSON.decode(T.self, from: &request)
    }
}

/// Body of `POST /api/v1/approvals/{id}/grant`.
struct GrantRequest: RequestBody {
    var ttlSeconds: Int?
    var uses: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case ttlSeconds = "ttl_seconds"
        case uses
    }

    init() {}
}

/// Body of `POST /api/v1/approvals/{id}/deny` (optional).
struct DenyRequest: RequestBody {
    var reason: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case reason }
}

/// Body of `POST /api/v1/sessions/{id}/claims` (optional).
struct ClaimRequest: RequestBody {
    var ttlSeconds: Int?
    var allowedTools: [String]?
    var approvalFingerprint: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case ttlSeconds = "ttl_seconds"
        case allowedTools = "allowed_tools"
        case approvalFingerprint = "approval_fingerprint"
    }

    init() {}
}

/// Body of `POST /api/v1/sessions/{id}/lease` (optional). Only a lifetime: the claim a renewal returns
/// is not narrowed, so `allowed_tools` here is refused rather than dropped (mint a narrowed claim with
/// `/claims`).
struct LeaseRequest: RequestBody {
    var ttlSeconds: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case ttlSeconds = "ttl_seconds" }

    init() {}
}

/// A page of audit records: each record's event fields plus its place in the chain. A `call.intent`
/// entry also says what became of the call: `outcome_status` `recorded` (with `outcome_seq`, its
/// `call.outcome` record), `in_flight` (a live runner may still be running it) or `unknown` (the
/// runner stopped before the outcome was committed, or it could not be written).
struct AuditPage: Encodable {
    let records: [AuditRecord]
    let outcomes: [Int64: CallOutcomeStatus]

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var list = container.nestedUnkeyedContainer(forKey: .records)
        for record in records {
            try list.encode(Entry(record: record, outcome: outcomes[record.seq]))
        }
    }

    enum CodingKeys: String, CodingKey { case records }

    struct Entry: Encodable {
        let record: AuditRecord
        let outcome: CallOutcomeStatus?

        func encode(to encoder: any Encoder) throws {
            // The stored body is the record; it is re-emitted as parsed JSON, with seq and hashes.
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(record.seq, forKey: .seq)
            try container.encode(record.hash, forKey: .hash)
            try container.encode(record.previousHash, forKey: .previousHash)
            try container.encode(
                (try? ExactJSON.value(from: Array(record.body.utf8))) ?? .string(record.body),
                forKey: .event)
            if let outcome {
                try container.encode(outcome.name, forKey: .outcomeStatus)
                if case .recorded(let seq) = outcome { try container.encode(seq, forKey: .outcomeSeq) }
            }
        }

        enum Keys: String, CodingKey {
            case seq, hash, event
            case previousHash = "prev_hash"
            case outcomeStatus = "outcome_status"
            case outcomeSeq = "outcome_seq"
        }
    }
}
