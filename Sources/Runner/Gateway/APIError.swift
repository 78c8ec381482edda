import Failures
import WorkspaceRegistry

/// An admin API (and console) failure: a stable code, which fixes the HTTP status, and a sentence
/// for the admin. Sent as `{"error": {"code", "message"}}`; the cause (a store's error, say) only
/// reaches the runner's log.
public typealias APIError = CodedError<APIErrorCode>

/// Stable codes of ``APIError``, each with the one HTTP status it is sent with.
public struct APIErrorCode: ErrorCode {
    /// The wire form.
    public let rawValue: String
    /// The HTTP status the code is sent with.
    public let status: Int
    private init(_ rawValue: String, _ status: Int) {
        self.rawValue = rawValue
        self.status = status
    }

    /// The request is malformed: a field, a query parameter or the body (the message names it).
    public static let invalidRequest = APIErrorCode("invalid_request", 400)
    /// `server_id` and `bundle_id` were set together.
    public static let scopeConflict = APIErrorCode("scope_conflict", 400)
    /// No admin key, or one that is not recognised.
    public static let unauthorized = APIErrorCode("unauthorized", 401)
    /// The console session is missing or over.
    public static let signedOut = APIErrorCode("signed_out", 401)
    /// The key may not do this (another tenant's resource where its existence is no secret, or an
    /// operator-only operation).
    public static let forbidden = APIErrorCode("forbidden", 403)
    /// A console change without the session's CSRF token.
    public static let csrfFailed = APIErrorCode("csrf_failed", 403)
    /// The console was asked for under a host it does not serve.
    public static let forbiddenHost = APIErrorCode("forbidden_host", 403)
    /// A console change from another origin.
    public static let forbiddenOrigin = APIErrorCode("forbidden_origin", 403)
    /// No such resource, or one of another tenant (the two are indistinguishable).
    public static let notFound = APIErrorCode("not_found", 404)
    /// The approval was already granted or denied.
    public static let approvalDecided = APIErrorCode("approval_decided", 409)
    /// The session's lease has ended.
    public static let leaseExpired = APIErrorCode("lease_expired", 409)
    /// The session was revoked.
    public static let sessionRevoked = APIErrorCode("session_revoked", 409)
    /// The request body is over its limit.
    public static let bodyTooLarge = APIErrorCode("body_too_large", 413)
    /// The body is not JSON.
    public static let unsupportedMediaType = APIErrorCode("unsupported_media_type", 415)
    /// The tenant holds its limit of live sessions.
    public static let tenantAtLimit = APIErrorCode("tenant_at_limit", 429)
    /// Too many failed console sign-ins from one address.
    public static let tooManySignIns = APIErrorCode("too_many_sign_ins", 429)
    /// Something failed inside the runner; its log says what.
    public static let internalError = APIErrorCode("internal_error", 500)
    /// A claim could not be signed.
    public static let signingFailed = APIErrorCode("signing_failed", 500)
    /// The audit log cannot be read or written.
    public static let auditUnavailable = APIErrorCode("audit_unavailable", 503)
    /// No host uid/gid slot can be given to a new workspace.
    public static let hostIDsUnavailable = APIErrorCode("host_ids_unavailable", 503)
    /// The store cannot be read or written.
    public static let storeUnavailable = APIErrorCode("store_unavailable", 503)

    /// A workspace registration failure, sent with its own code. When the workspace is a field of
    /// another request (a new session's `workspace_id`), every such failure makes that request
    /// invalid: `400` (`workspace_not_found` is then `400`, not the `404` of the workspace itself).
    public init(_ workspace: WorkspaceErrorCode, asField: Bool = false) {
        let status: Int
        switch workspace {
        case _ where asField: status = 400
        case .alreadyExists: status = 409
        case .notFound: status = 404
        case .rootNotAllowed: status = 403
        case .noBase: status = 503
        default: status = 400
        }
        self.init(workspace.rawValue, status)
    }

    /// Every code the admin API and the console answer with (docs/operations.md's table is
    /// checked against it).
    public static let allCases: [APIErrorCode] =
        [
            .invalidRequest, .scopeConflict, .unauthorized, .signedOut, .forbidden, .csrfFailed, .forbiddenHost,
            .forbiddenOrigin, .notFound, .approvalDecided, .leaseExpired, .sessionRevoked, .bodyTooLarge,
            .unsupportedMediaType, .tenantAtLimit, .tooManySignIns, .internalError, .signingFailed,
            .auditUnavailable, .hostIDsUnavailable, .storeUnavailable,
        ] + WorkspaceErrorCode.allCases.map { APIErrorCode($0) }
        + [APIErrorCode(.notFound, asField: true)]
}

extension CodedError where CodeSet == APIErrorCode {
    /// The HTTP status it is sent with.
    public var status: Int { code.status }

    /// A workspace registration failure, with its code and message (see
    /// ``APIErrorCode/init(_:asField:)``).
    init(_ error: WorkspaceError, asField: Bool = false) {
        self.init(APIErrorCode(error.code, asField: asField), error.message, cause: error)
    }

    static func notFound(_ what: String) -> APIError { APIError(.notFound, "\(what) does not exist") }
    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, message) }
    static func invalid(_ message: String) -> APIError { APIError(.invalidRequest, message) }
}
