#if canImport(Glibc)
    import Glibc
#endif

/// A sandbox failure with a stable code and, where one exists, the stage and errno behind it
/// (swift-subprocess `SubprocessError` shape).
public struct SandboxError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable codes.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The wire form.
        public let rawValue: String
        private init(_ rawValue: String) { self.rawValue = rawValue }

        /// A confinement stage failed; no worker exists.
        public static let spawnFailed = Code("worker_unavailable")
        /// The tenant holds its share of the runner (workers or calls in flight); other tenants'
        /// calls are unaffected.
        public static let tenantAtLimit = Code("tenant_at_limit")
        /// An upstream MCP server did not start or did not initialize.
        public static let upstreamUnavailable = Code("upstream_unavailable")
        /// A limit of the tier cannot be held on a whole worker on this host, and the tier does
        /// not accept it as best-effort (the gateway refuses such calls as `tier_unavailable` first).
        public static let limitsUnenforceable = Code("tier_unavailable")
        /// The worker refused the handshake or broke the protocol.
        public static let protocolViolation = Code("worker_protocol")
        /// The worker went away (killed, crashed) before answering.
        public static let workerExited = Code("worker_crashed")
        /// The call's session, lease or workspace was retired after it was authorized.
        public static let retired = Code("worker_destroyed")
        /// The runner is shutting down.
        public static let shuttingDown = Code("runner_shutting_down")
        /// The session already has its most calls in flight (`worker_max_calls_per_session`).
        public static let tooManyCalls = Code("too_many_calls")
        /// The client cancelled the call; the upstream server was told.
        public static let cancelled = Code("cancelled")

        /// Every code the sandbox reports (docs/operations.md's table is checked against it).
        public static let allCases: [Code] = [
            .spawnFailed, .tenantAtLimit, .upstreamUnavailable, .limitsUnenforceable, .protocolViolation,
            .workerExited, .retired, .shuttingDown, .tooManyCalls, .cancelled,
        ]

        /// The wire form.
        public var description: String { rawValue }
    }

    /// What failed.
    public let code: Code
    /// Operator-facing detail.
    public let message: String
    /// The confinement stage that failed (`pivot_root`, `seccomp`, ...), for spawn failures.
    public let stage: String?
    /// The errno behind it.
    public let errno: Int32?

    /// Creates an error.
    public init(_ code: Code, _ message: String, stage: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.stage = stage
        self.errno = errno
    }

    /// `code: message`.
    public var description: String {
        var text = "\(code): \(message)"
        if let stage { text += " (stage \(stage)" + (errno.map { ", errno \($0) \(String(cString: strerror($0)))" } ?? "") + ")" }
        return text
    }
}
