import Failures
import Foundation
import HTTPTypes
import Hummingbird

/// The security team's console at `/ui`: a static page and script, and JSON endpoints under
/// `/ui/api` that call the admin service with the principal of the signed-in key.
///
/// Authorization is the admin service's: every handler passes the session's ``Principal`` to the
/// same function the admin API calls, so a tenant admin's console sees and changes only its
/// tenant because the service refuses the rest, not because a button is hidden. The cookie
/// authorizes only `/ui` routes; `/api/v1` still wants `Authorization: Bearer`.
///
/// Every state-changing request needs the session's CSRF token in `X-CSRF-Token` and an `Origin`
/// equal to the page's own (and the cookie is `SameSite=Strict`). Every response carries a CSP
/// without `unsafe-inline`; the page has no inline script, style or event-handler attribute, and
/// the script writes server data into the page only as text.
struct ConsoleRoutes: Sendable {
    let admin: AdminService
    let settings: HTTPSettings
    let sessions: ConsoleSessions
    let limiter: ConsoleSignInLimiter
    /// The chain's last verification, shared by every console page for a few seconds.
    let chainStatus = AuditChainCache()

    /// The session cookie's name.
    static let cookieName = "lh_console"
    /// The page's Content-Security-Policy.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

    /// Secure cookies unless the listener is loopback: a non-loopback listener is meant to sit
    /// behind TLS (the runner itself speaks plain HTTP), where a cookie sent in the clear would
    /// hand the session to anyone on the path.
    var secureCookie: Bool { !settings.isLoopback }

    func register(on router: Router<LeaseholdRequestContext>) {
        router.get("/ui") { request, _ in
            asset(request, ConsoleAssets.page, type: "text/html; charset=utf-8")
        }
        router.get("/ui/static/console.js") { request, _ in
            asset(request, ConsoleAssets.script, type: "text/javascript; charset=utf-8")
        }
        router.get("/ui/static/console.css") { request, _ in
            asset(request, ConsoleAssets.style, type: "text/css; charset=utf-8")
        }
        router.get("/ui/static/icon.svg") { request, _ in
            asset(request, ConsoleAssets.icon, type: "image/svg+xml")
        }
        let api = router.group("/ui/api")
        api.post("/signin") { request, context in await signIn(request, source: context.clientAddress) }
        api.post("/signout") { request, _ in
            await handle(request, changes: true) { _, _ in
                sessions.end(Self.cookie(request))
                var headers = HTTPFields()
                headers[.setCookie] = cookieHeader(value: "", maxAge: 0)
                return HTTPJSON.response(.ok, ["signed_out": true], headers: headers)
            }
        }
        api.get("/me") { request, _ in
            await handle(request, changes: false) { _, session in
                HTTPJSON.response(
                    .ok,
                    Me(
                        principal: session.principal.auditName, tenant: Self.tenant(of: session.principal),
                        csrfToken: session.csrfToken))
            }
        }
        registerApprovals(on: api)
        registerSessions(on: api)
        registerAudit(on: api)
        registerPolicy(on: api)
    }

    // MARK: Approvals

    private func registerApprovals(on api: RouterGroup<LeaseholdRequestContext>) {
        api.get("/approvals") { request, _ in
            await handle(request, changes: false) { request, session in
                let query = request.uri.queryParameters
                let pending = query.get("view") != "history"
                let approvals = try await admin.approvals(
                    sessionID: nil, status: pending ? "pending" : nil, tenantID: query.get("tenant_id"),
                    limit: pending ? 1000 : 200, by: session.principal)
                let resolver = admin.gateway.resolver
                return HTTPJSON.response(
                    .ok,
                    [
                        "approvals": approvals.filter { ($0.status == .pending) == pending }.map {
                            ApprovalView(
                                approval: $0, tier: resolver.tier(of: $0.tool, tenant: $0.tenantID),
                                policyVersion: resolver.policy.version)
                        }
                    ])
            }
        }
        api.post("/approvals/:id/grant") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await handle(request, changes: true) { request, session in
                let body = try await HTTPJSON.decode(GrantRequest.self, from: &request, limit: 4096)
                return HTTPJSON.response(
                    .ok,
                    [
                        "approval": try await admin.grantApproval(
                            id: id, ttlSeconds: body.ttlSeconds, uses: body.uses, by: session.principal)
                    ])
            }
        }
        api.post("/approvals/:id/deny") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await handle(request, changes: true) { request, session in
                let body = try await HTTPJSON.decode(DenyRequest.self, from: &request, limit: 8192)
                return HTTPJSON.response(
                    .ok, ["approval": try await admin.denyApproval(id: id, reason: body.reason, by: session.principal)])
            }
        }
    }

    // MARK: Sessions

    private func registerSessions(on api: RouterGroup<LeaseholdRequestContext>) {
        api.get("/sessions") { request, _ in
            await handle(request, changes: false) { request, session in
                HTTPJSON.response(
                    .ok,
                    [
                        "sessions": try await admin.liveSessions(
                            tenantID: request.uri.queryParameters.get("tenant_id"), by: session.principal)
                    ])
            }
        }
        api.post("/sessions/:id/scope") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await handle(request, changes: true) { request, session in
                let patch = try await HTTPJSON.decode(SessionPatch.self, from: &request, limit: 256 * 1024)
                let updated = try await admin.patchSession(id: id, patch: patch, by: session.principal)
                return HTTPJSON.response(.ok, SessionWithClaim(session: updated, claim: nil))
            }
        }
        api.post("/sessions/:id/revoke") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await handle(request, changes: true) { _, session in
                HTTPJSON.response(
                    .ok,
                    SessionWithClaim(session: try await admin.revokeSession(id: id, by: session.principal), claim: nil))
            }
        }
        api.post("/sessions/:id/lease/revoke") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await handle(request, changes: true) { _, session in
                HTTPJSON.response(
                    .ok,
                    SessionWithClaim(
                        session: try await admin.revokeLease(sessionID: id, by: session.principal), claim: nil))
            }
        }
    }

    // MARK: Audit

    private func registerAudit(on api: RouterGroup<LeaseholdRequestContext>) {
        api.get("/audit") { request, _ in
            await handle(request, changes: false) { request, session in
                let (filter, after, limit) = try Self.auditQuery(request, defaultLimit: 200)
                let page = try admin.auditRecords(filter, afterSeq: after, limit: limit, by: session.principal)
                return HTTPJSON.response(.ok, ConsoleAuditPage(page))
            }
        }
        api.get("/audit/export") { request, _ in
            await handle(request, changes: false) { request, session in
                let (filter, after, limit) = try Self.auditQuery(request, defaultLimit: 10_000)
                let page = try admin.auditRecords(filter, afterSeq: after, limit: limit, by: session.principal)
                var lines = Data()
                for record in page.records {
                    lines.append(
                        try HTTPJSON.encoder.encode(AuditPage.Entry(record: record, outcome: page.outcomes[record.seq]))
                    )
                    lines.append(UInt8(ascii: "\n"))
                }
                var headers = HTTPFields()
                headers[.contentType] = "application/x-ndjson"
                headers[.contentDisposition] = "attachment; filename=\"leasehold-audit.jsonl\""
                // A partial export says so: where it stopped, to go on with after_seq.
                if page.more {
                    headers[HTTPField.Name("X-Leasehold-Audit-Scanned-Through")!] = "\(page.scannedThrough)"
                }
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: lines)))
            }
        }
        api.get("/audit/verify") { request, _ in
            await handle(request, changes: false) { _, session in
                HTTPJSON.response(.ok, try await admin.auditChainStatus(by: session.principal, cache: chainStatus))
            }
        }
    }

    /// The explorer's filters from the query: times are ISO 8601, every other field exact.
    static func auditQuery(_ request: Request, defaultLimit: Int) throws(APIError) -> (AuditFilter, Int64, Int) {
        let query = request.uri.queryParameters
        func value(_ name: String) -> String? {
            guard let text = query.get(name), !text.isEmpty else { return nil }
            return text
        }
        func time(_ name: String) throws(APIError) -> Date? {
            guard let text = value(name) else { return nil }
            guard let date = try? Date(text, strategy: .iso8601) else {
                throw APIError.invalid("\(name) must be an ISO 8601 time such as 2026-11-23T12:00:00Z")
            }
            return date
        }
        var filter = AuditFilter()
        filter.since = try time("since")
        filter.until = try time("until")
        filter.tenant = value("tenant_id")
        filter.session = value("session_id")
        filter.actor = value("actor_id")
        filter.tool = value("tool")
        filter.event = value("event")
        filter.decision = value("decision")
        filter.code = value("code")
        let after = Int64(value("after_seq") ?? "") ?? 0
        return (filter, after, Int(value("limit") ?? "") ?? defaultLimit)
    }

    // MARK: Policy

    private func registerPolicy(on api: RouterGroup<LeaseholdRequestContext>) {
        api.get("/policy") { request, _ in
            await handle(request, changes: false) { request, session in
                HTTPJSON.response(
                    .ok,
                    try admin.policyOverview(
                        tenantID: request.uri.queryParameters.get("tenant_id").flatMap { $0.isEmpty ? nil : $0 },
                        by: session.principal))
            }
        }
        api.get("/policy/explain") { request, _ in
            await handle(request, changes: false) { request, session in
                let query = request.uri.queryParameters
                let lines = try admin.policyExplain(
                    tool: query.get("tool") ?? "", tenantID: query.get("tenant_id").flatMap { $0.isEmpty ? nil : $0 },
                    by: session.principal)
                return HTTPJSON.response(.ok, ["lines": lines])
            }
        }
    }

    // MARK: Sign-in

    private func signIn(_ request: Request, source: String) async -> Response {
        if let refusal = checkHost(request) ?? checkOrigin(request) { return refusal }
        let now = admin.gateway.now()
        guard limiter.allows(source, now: now) else {
            return secured(
                HTTPJSON.error(
                    APIError(
                        .tooManySignIns,
                        "too many failed sign-ins from this address; wait a minute before trying again")))
        }
        var request = request
        let key: String?
        do {
            key = try await HTTPJSON.decode(SignIn.self, from: &request, limit: 4096).key
        } catch {
            return secured(HTTPJSON.error(error))
        }
        let principal: Principal
        do {
            principal = try await admin.principal(forKey: key)
        } catch {
            if error.status == 401 {
                limiter.failed(source, now: now)
                await admin.gateway.recordRefusedConsoleSignIn(source: source)
            }
            return secured(HTTPJSON.error(error))
        }
        // A fresh token on every sign-in (no fixation): whatever cookie the browser had is ended.
        sessions.end(Self.cookie(request))
        let (token, entry) = sessions.create(principal, now: now)
        var event = AuditEvent("console.signed_in")
        event.decision = principal.auditName
        event.tenant = Self.tenant(of: principal)
        event.detail = "from \(source)"
        _ = try? await admin.gateway.audit.append(event)
        var headers = HTTPFields()
        headers[.setCookie] = cookieHeader(value: token, maxAge: Int(sessions.absoluteTimeout))
        return secured(
            HTTPJSON.response(
                .ok, Me(principal: principal.auditName, tenant: Self.tenant(of: principal), csrfToken: entry.csrfToken),
                headers: headers))
    }

    // MARK: Plumbing

    /// Runs `body` for a signed-in browser; `changes` adds the Origin and CSRF checks.
    private func handle(
        _ request: Request, changes: Bool,
        _ body: (inout Request, ConsoleSessions.Entry) async throws -> Response
    ) async -> Response {
        if let refusal = checkHost(request) { return refusal }
        guard let session = sessions.session(Self.cookie(request), now: admin.gateway.now()) else {
            return secured(HTTPJSON.error(APIError(.signedOut, "sign in to the console first")))
        }
        if changes {
            if let refusal = checkOrigin(request) { return refusal }
            let sent = request.headers[HTTPField.Name("X-CSRF-Token")!] ?? ""
            guard AdminService.constantTimeEqual(sent, session.csrfToken) else {
                return secured(
                    HTTPJSON.error(
                        APIError(.csrfFailed, "the request lacks this session's CSRF token; reload the page")))
            }
        }
        var request = request
        do {
            return secured(try await body(&request, session))
        } catch let error as APIError {
            if error.cause != nil {
                admin.gateway.logger.error("console request failed", metadata: ["error": "\(error.logDescription)"])
            }
            return secured(HTTPJSON.error(error))
        } catch {
            // The cause is for the runner's log only, never the page.
            admin.gateway.logger.error("console request failed", metadata: ["error": "\(logDescription(of: error))"])
            return secured(HTTPJSON.error(APIError(.internalError, "the request failed; see the runner's log")))
        }
    }

    private func asset(_ request: Request, _ text: String, type: String) -> Response {
        if let refusal = checkHost(request) { return refusal }
        var headers = HTTPFields()
        headers[.contentType] = type
        return secured(
            Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text))))
    }

    /// The headers of every console response.
    private func secured(_ response: Response) -> Response {
        var response = response
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        response.headers[.cacheControl] = "no-store"
        return response
    }

    private func cookieHeader(value: String, maxAge: Int) -> String {
        "\(Self.cookieName)=\(value); Path=/ui; Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
            + (secureCookie ? "; Secure" : "")
    }

    /// The same Host rule as `/mcp` (DNS rebinding): a loopback listener answers only loopback
    /// names unless `allowed_hosts` says otherwise.
    private func checkHost(_ request: Request) -> Response? {
        guard let authority = request.head.authority else { return nil }
        let name =
            authority.hasPrefix("[")
            ? String(authority.prefix { $0 != "]" }) + "]" : String(authority.prefix { $0 != ":" })
        let allowed =
            settings.allowedHosts.isEmpty
            ? (!settings.isLoopback || ["127.0.0.1", "localhost", "[::1]"].contains(name))
            : settings.allowedHosts.contains(authority) || settings.allowedHosts.contains(name)
        guard allowed else {
            return secured(HTTPJSON.error(APIError(.forbiddenHost, "host \(name) is not served")))
        }
        return nil
    }

    /// A change must come from the console's own page: `Origin` present and equal to this host.
    private func checkOrigin(_ request: Request) -> Response? {
        let origin = request.headers[.origin]
        let authority = request.head.authority ?? ""
        guard let origin, !authority.isEmpty, origin == "http://" + authority || origin == "https://" + authority
        else {
            return secured(
                HTTPJSON.error(
                    APIError(.forbiddenOrigin, "console changes must come from the console's own page")))
        }
        return nil
    }

    /// The session cookie's value; nil when absent or sent more than once (a cookie planted by a
    /// sibling host beside the real one is not guessed between).
    static func cookie(_ request: Request) -> String? {
        var found: [String] = []
        for field in request.headers[values: .cookie] {
            for part in field.split(separator: ";") {
                let pair = part.trimmingCharacters(in: .whitespaces)
                if pair.hasPrefix(cookieName + "=") { found.append(String(pair.dropFirst(cookieName.count + 1))) }
            }
        }
        return found.count == 1 ? found[0] : nil
    }

    static func tenant(of principal: Principal) -> String? {
        if case .tenant(let own) = principal { return own }
        return nil
    }
}

/// Body of `POST /ui/api/signin`.
private struct SignIn: RequestBody {
    var key: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case key }
}

/// Who is signed in, and the token its changes must carry.
private struct Me: Encodable {
    let principal: String
    let tenant: String?
    let csrfToken: String

    enum CodingKeys: String, CodingKey {
        case principal, tenant
        case csrfToken = "csrf_token"
    }
}

/// An approval with the tier its tool has now and the policy version in force.
private struct ApprovalView: Encodable {
    let approval: Approval
    let tier: String?
    let policyVersion: String

    enum CodingKeys: String, CodingKey {
        case approval, tier
        case policyVersion = "policy_version"
    }
}

/// A page of the audit explorer: the records and where to go on from.
private struct ConsoleAuditPage: Encodable {
    let page: AuditQueryResult

    init(_ page: AuditQueryResult) { self.page = page }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var list = container.nestedUnkeyedContainer(forKey: .records)
        for record in page.records {
            try list.encode(AuditPage.Entry(record: record, outcome: page.outcomes[record.seq]))
        }
        try container.encode(page.scannedThrough, forKey: .scannedThrough)
        try container.encode(page.more, forKey: .more)
    }

    enum Keys: String, CodingKey {
        case records, more
        case scannedThrough = "scanned_through"
    }
}

extension Gateway {
    /// A refused console sign-in (no such key): sampled per source like every unauthenticated
    /// refusal (``RefusalSampler``), so a flood of wrong keys is not a flood of audit rows.
    func recordRefusedConsoleSignIn(source: String) async {
        guard unauthenticatedRefusals.refused(source: source, code: "console_signin_refused", at: now()) == .record
        else { return }
        var event = AuditEvent("console.signin.refused")
        event.decision = "refused"
        event.code = "console_signin_refused"
        event.detail = "from \(source): the key is not recognised"
        event.policyVersion = resolver.policy.version
        _ = try? await audit.append(event)
    }
}
