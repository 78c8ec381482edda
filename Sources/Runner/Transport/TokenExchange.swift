import Foundation
import HTTPTypes
import Hummingbird
import JWTKit

/// OAuth 2.0 Token Exchange (RFC 8693) at `POST /oauth2/token`: an orchestrator presents its own
/// token and gets a session claim for a session it may act for.
///
/// - `subject_token_type` `urn:ietf:params:oauth:token-type:jwt`: a JWT of an issuer in
///   `oauth.issuers` (``SubjectTokenVerifier``), acting for the one tenant it names;
///   `urn:leasehold:params:oauth:token-type:admin-key`: a tenant admin key (or the operator key).
/// - `scope` `session:<id>` names the session; the subject must manage its tenant.
/// - `resource`, when sent, must be one of this server's MCP endpoints; `audience`, when sent, the
///   claims' audience. The claim is minted exactly as `POST /api/v1/sessions/{id}/claims` mints
///   one (the session's lease, its claim lifetime), and the exchange is audited.
///
/// Metadata (RFC 8414) at `/.well-known/oauth-authorization-server`, and the MCP endpoint's
/// protected-resource metadata (RFC 9728) at `/.well-known/oauth-protected-resource`.
struct TokenExchange: Sendable {
    static let grantType = "urn:ietf:params:oauth:grant-type:token-exchange"
    static let jwtType = "urn:ietf:params:oauth:token-type:jwt"
    static let adminKeyType = "urn:leasehold:params:oauth:token-type:admin-key"
    static let claimType = "urn:leasehold:params:oauth:token-type:session-claim"

    let admin: AdminService
    let config: OAuthConfig
    let verifier: SubjectTokenVerifier?

    /// An RFC 6749 §5.2 error.
    struct Failure: Error {
        let status: HTTPResponse.Status
        let error: String
        let description: String

        init(_ error: String, _ description: String, status: HTTPResponse.Status = .badRequest) {
            self.status = status
            self.error = error
            self.description = description
        }
    }

    func register(on router: Router<LeaseholdRequestContext>) {
        router.post("/oauth2/token") { request, _ in
            var request = request
            do throws(Failure) {
                return try await exchange(&request)
            } catch {
                admin.gateway.logger.info(
                    "token exchange refused", metadata: ["error": "\(error.error)", "reason": "\(error.description)"])
                return Self.response(
                    error.status, ["error": error.error, "error_description": error.description])
            }
        }
        router.get("/.well-known/oauth-authorization-server") { request, _ in
            let issuer = issuerURL(request)
            return HTTPJSON.response(
                .ok,
                AuthorizationServerMetadata(
                    issuer: issuer, tokenEndpoint: issuer + "/oauth2/token", grantTypesSupported: [Self.grantType],
                    tokenEndpointAuthMethodsSupported: ["none"]))
        }
        router.get("/.well-known/oauth-protected-resource") { request, _ in
            let issuer = issuerURL(request)
            return HTTPJSON.response(
                .ok,
                ProtectedResourceMetadata(
                    resource: issuer + "/mcp", authorizationServers: [issuer], bearerMethodsSupported: ["header"]))
        }
    }

    /// This authorization server's issuer URL: configured, else `http://` and the request's Host
    /// (the listener's Host check has already admitted it).
    func issuerURL(_ request: Request) -> String {
        if let issuer = config.issuer { return issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer }
        return "http://" + (request.head.authority ?? "localhost")
    }

    private func exchange(_ request: inout Request) async throws(Failure) -> Response {
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        guard contentType.hasPrefix("application/x-www-form-urlencoded") else {
            throw Failure("invalid_request", "send the parameters as application/x-www-form-urlencoded")
        }
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: 64 << 10)
        } catch {
            throw Failure("invalid_request", "the request body is over 64 KiB")
        }
        let form = try Self.form(String(buffer: body))
        guard let grant = form["grant_type"] else { throw Failure("invalid_request", "grant_type is missing") }
        guard grant == Self.grantType else {
            throw Failure("unsupported_grant_type", "only \(Self.grantType) is supported")
        }
        guard let token = form["subject_token"], !token.isEmpty else {
            throw Failure("invalid_request", "subject_token is missing")
        }
        guard let type = form["subject_token_type"] else { throw Failure("invalid_request", "subject_token_type is missing") }
        if let requested = form["requested_token_type"], requested != Self.claimType {
            throw Failure("invalid_request", "requested_token_type can only be \(Self.claimType)")
        }
        if form["actor_token"] != nil || form["actor_token_type"] != nil {
            throw Failure("invalid_request", "actor tokens are not accepted")
        }
        guard let scope = form["scope"], scope.hasPrefix("session:"), scope.count > 8, !scope.contains(" ") else {
            throw Failure("invalid_scope", "scope must be session:<session id>")
        }
        let sessionID = String(scope.dropFirst(8))
        if let resource = form["resource"] {
            let issuer = issuerURL(request)
            let accepted =
                config.resources.map { $0.contains(resource) }
                ?? (resource == issuer + "/mcp" || (resource.hasPrefix(issuer + "/mcp/servers/") && !resource.dropFirst(issuer.count + 13).contains("/")))
            guard accepted else { throw Failure("invalid_target", "resource \(resource) is not served here") }
        }
        let claimAudience = admin.gateway.verifier.policy.audience
        if let audience = form["audience"], audience != claimAudience {
            throw Failure("invalid_target", "audience must be \(claimAudience)")
        }
        // Who the subject token speaks for.
        let principal: Principal
        var detail: String
        switch type {
        case Self.adminKeyType:
            do {
                principal = try await admin.principal(forKey: token)
            } catch {
                throw Failure("invalid_grant", "the admin key is not recognised")
            }
            detail = "subject_token_type=admin-key"
        case Self.jwtType:
            guard let verifier, !verifier.isEmpty else {
                throw Failure("invalid_request", "no JWT issuer is configured (oauth.issuers)")
            }
            let subject: SubjectTokenVerifier.Subject
            do {
                subject = try await verifier.verify(token, now: admin.gateway.now())
            } catch {
                throw Failure("invalid_grant", error.description)
            }
            principal = .tenant(subject.tenant)
            detail = "subject_token_type=jwt iss=\(subject.issuer)" + (subject.subject.map { " sub=\($0.prefix(200))" } ?? "")
        default:
            throw Failure("invalid_request", "subject_token_type must be \(Self.jwtType) or \(Self.adminKeyType)")
        }
        // The subject's own view of the session: another tenant's reads as not there.
        let session: Session
        let claim: String
        do {
            (session, claim) = try await admin.mintClaim(sessionID: sessionID, ttlSeconds: nil, allowedTools: nil, by: principal)
        } catch where error.status == 404 {
            throw Failure("invalid_grant", "the subject token may not act for session \(sessionID)")
        } catch where error.status == 409 {
            throw Failure("invalid_grant", error.message)
        } catch {
            throw Failure("server_error", error.message, status: .serviceUnavailable)
        }
        detail += " principal=\(principal.auditName)"
        do {
            try await admin.recordExchange(session: session, by: principal, detail: detail)
        } catch {
            throw Failure("server_error", error.message, status: .serviceUnavailable)
        }
        // The claim's own expiry (its lifetime, cut at the lease's end).
        let exp = (try? await JWTKeyCollection().unverified(claim, as: SubjectTokenVerifier.Claims.self).exp) ?? 0
        let expiresIn = max(0, Int(exp - admin.gateway.now().timeIntervalSince1970))
        return Self.response(
            .ok,
            TokenResponse(
                accessToken: claim, issuedTokenType: Self.claimType, tokenType: "Bearer", expiresIn: expiresIn,
                scope: scope))
    }

    /// The form's parameters; a parameter sent twice is refused (RFC 6749 §3.2).
    static func form(_ body: String) throws(Failure) -> [String: String] {
        var form: [String: String] = [:]
        for pair in body.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(parts[0]), let value = decode(parts.count > 1 ? parts[1] : "") else {
                throw Failure("invalid_request", "the form is not valid application/x-www-form-urlencoded")
            }
            guard form.updateValue(value, forKey: name) == nil else {
                throw Failure("invalid_request", "\(name) is sent more than once")
            }
        }
        return form
    }

    private static func decode(_ part: Substring) -> String? {
        part.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// Token responses are never cached (RFC 6749 §5.1).
    static func response(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        var headers = HTTPFields()
        headers[.cacheControl] = "no-store"
        headers[HTTPField.Name("Pragma")!] = "no-cache"
        return HTTPJSON.response(status, value, headers: headers)
    }

    struct TokenResponse: Encodable {
        let accessToken: String
        let issuedTokenType: String
        let tokenType: String
        let expiresIn: Int
        let scope: String

        enum CodingKeys: String, CodingKey {
            case scope
            case accessToken = "access_token"
            case issuedTokenType = "issued_token_type"
            case tokenType = "token_type"
            case expiresIn = "expires_in"
        }
    }

    struct AuthorizationServerMetadata: Encodable {
        let issuer: String
        let tokenEndpoint: String
        let grantTypesSupported: [String]
        let tokenEndpointAuthMethodsSupported: [String]

        enum CodingKeys: String, CodingKey {
            case issuer
            case tokenEndpoint = "token_endpoint"
            case grantTypesSupported = "grant_types_supported"
            case tokenEndpointAuthMethodsSupported = "token_endpoint_auth_methods_supported"
        }
    }

    struct ProtectedResourceMetadata: Encodable {
        let resource: String
        let authorizationServers: [String]
        let bearerMethodsSupported: [String]

        enum CodingKeys: String, CodingKey {
            case resource
            case authorizationServers = "authorization_servers"
            case bearerMethodsSupported = "bearer_methods_supported"
        }
    }
}
