import Foundation
import Hummingbird
import WorkspaceRegistry

/// `/api/v1/...`: the orchestrator and operator API.
struct AdminRoutes: Sendable {
    let admin: AdminService

    func register(on router: Router<BasicRequestContext>) {
        let api = router.group("/api/v1")

        api.post("/workspaces") { request, _ in
            try await respond(request) { request, principal in
                let workspace = try await HTTPJSON.decode(Workspace.self, from: &request)
                return HTTPJSON.response(.created, try await admin.registerWorkspace(workspace, by: principal))
            }
        }
        api.get("/workspaces") { request, _ in
            try await respond(request) { request, principal in
                let tenant = request.uri.queryParameters.get("tenant_id")
                return HTTPJSON.response(
                    .ok, ["workspaces": try await admin.listWorkspaces(tenantID: tenant, by: principal)])
            }
        }
        api.delete("/workspaces/:tenant_id/:workspace_id") { request, context in
            let tenant = context.parameters.get("tenant_id") ?? ""
            let workspace = context.parameters.get("workspace_id") ?? ""
            return try await respond(request) { _, principal in
                try await admin.removeWorkspace(tenantID: tenant, workspaceID: workspace, by: principal)
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
                    sessionID: id, ttlSeconds: body.ttlSeconds, allowedTools: body.allowedTools, by: principal)
                return HTTPJSON.response(.created, SessionWithClaim(session: session, claim: claim))
            }
        }
        api.post("/sessions/:id/lease") { request, context in
            let id = context.parameters.get("id") ?? ""
            return try await respond(request) { request, principal in
                let body = try await optionalBody(ClaimRequest.self, from: &request) ?? ClaimRequest()
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
        api.get("/policy") { request, _ in
            try await respond(request) { _, principal in
                // Reload errors name files and lines of the security team's policy: operator only.
                guard principal == .operator else {
                    throw APIError.forbidden("only the operator key reads policy status")
                }
                return HTTPJSON.response(.ok, admin.gateway.policyStatus)
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
            var headers = HTTPFields()
            if error.status == 401 { headers[.wwwAuthenticate] = "Bearer realm=\"leasehold-admin\"" }
            return HTTPJSON.error(error, headers: headers)
        } catch {
            return HTTPJSON.error(APIError(500, "internal_error", "\(error)"))
        }
    }

    private func optionalBody<T: Decodable>(_ type: T.Type, from request: inout Request) async throws(APIError) -> T? {
        if request.headers[.contentLength] == "0"
            || (request.headers[.contentLength] == nil && request.headers[.transferEncoding] == nil)
        {
            return nil
        }
        return try await HTTPJSON.decode(T.self, from: &request)
    }
}

/// Body of the claim and lease endpoints.
struct ClaimRequest: Decodable {
    var ttlSeconds: Int?
    var allowedTools: [String]?

    enum CodingKeys: String, CodingKey {
        case ttlSeconds = "ttl_seconds"
        case allowedTools = "allowed_tools"
    }

    init() {}
}
