import Failures

#if canImport(Glibc)
    import Glibc
#endif

/// A sandbox failure with a stable code and, for a confinement step that failed, the stage and
/// errno behind it (swift-subprocess `SubprocessError` shape).
public typealias SandboxError = CodedError<SandboxErrorCode>

/// Stable codes of ``SandboxError``.
public struct SandboxErrorCode: ErrorCode {
    /// The wire form.
    public let rawValue: String
    private init(_ rawValue: String) { self.rawValue = rawValue }

    /// A confinement stage failed; no worker exists.
    public static let spawnFailed = SandboxErrorCode("worker_unavailable")
    /// The tenant holds its share of the runner (workers or calls in flight); other tenants'
    /// calls are unaffected.
    public static let tenantAtLimit = SandboxErrorCode("tenant_at_limit")
    /// An upstream MCP server did not start or did not initialize.
    public static let upstreamUnavailable = SandboxErrorCode("upstream_unavailable")
    /// A limit of the tier cannot be held on a whole worker on this host, and the tier does
    /// not accept it as best-effort (the gateway refuses such calls as `tier_unavailable` first).
    public static let limitsUnenforceable = SandboxErrorCode("tier_unavailable")
    /// The worker refused the handshake or broke the protocol.
    public static let protocolViolation = SandboxErrorCode("worker_protocol")
    /// The worker went away (killed, crashed) before answering.
    public static let workerExited = SandboxErrorCode("worker_crashed")
    /// The call's session, lease or workspace was retired after it was authorized.
    public static let retired = SandboxErrorCode("worker_destroyed")
    /// The runner is shutting down.
    public static let shuttingDown = SandboxErrorCode("runner_shutting_down")
    /// The session already has its most calls in flight (`worker_max_calls_per_session`).
    public static let tooManyCalls = SandboxErrorCode("too_many_calls")
    /// The client cancelled the call; the upstream server was told.
    public static let cancelled = SandboxErrorCode("cancelled")

    /// Every code the sandbox reports (docs/operations.md's table is checked against it).
    public static let allCases: [SandboxErrorCode] = [
        .spawnFailed, .tenantAtLimit, .upstreamUnavailable, .limitsUnenforceable, .protocolViolation,
        .workerExited, .retired, .shuttingDown, .tooManyCalls, .cancelled,
    ]
}

/// The confinement stage that failed (`pivot_root`, `seccomp`, ...) and the errno behind it: the
/// cause of a ``SandboxErrorCode/spawnFailed``.
public struct ConfinementStep: Error, Sendable, Hashable, CustomStringConvertible {
    /// The stage's name.
    public let stage: String
    /// The errno it failed with, when it set one.
    public let errno: Int32?

    /// `stage pivot_root, errno 1 Operation not permitted`.
    public var description: String {
        "stage \(stage)" + (errno.map { ", errno \($0) \(String(cString: strerror($0)))" } ?? "")
    }
}

extension CodedError where CodeSet == SandboxErrorCode {
    /// Creates an error; a failed confinement step is its cause and is named in the message too
    /// (`... (stage pivot_root, errno 1 Operation not permitted)`): a stage and an errno are facts
    /// of this host an operator acts on, not text from elsewhere.
    public init(_ code: Code, _ message: String, stage: String?, errno: Int32? = nil) {
        guard let stage else {
            self.init(code, message)
            return
        }
        let step = ConfinementStep(stage: stage, errno: errno)
        self.init(code, "\(message) (\(step))", cause: step)
    }

    /// The confinement stage that failed, for spawn failures.
    public var stage: String? { (cause?.error as? ConfinementStep)?.stage }
    /// The errno behind it.
    public var errno: Int32? { (cause?.error as? ConfinementStep)?.errno }
}
