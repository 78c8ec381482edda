/// A module's closed set of stable, machine-readable error codes: an opaque struct whose values
/// are its `static let`s (swift-subprocess `SubprocessError.Code` shape), so no caller can invent
/// a code, and the set is listable for docs/operations.md's table test.
public protocol ErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The wire form (`claim_missing`). Clients, the audit trail and the docs rely on its spelling.
    var rawValue: String { get }
    /// Every code of the set.
    static var allCases: [Self] { get }
}

extension ErrorCode {
    /// The wire form.
    public var description: String { rawValue }
}

/// The one error shape of Leasehold: a typed code, a sentence an operator can act on, and what
/// failed underneath.
///
/// The ``cause`` is for the runner's log only: it is in neither ``message`` nor ``description``
/// and takes no part in equality, so it never reaches a client, a tenant admin or the audit
/// trail a tenant can read (a store's error may quote paths, values or queries). Log lines use
/// ``logDescription``, which adds it.
public struct CodedError<CodeSet: ErrorCode>: Error, Sendable, Hashable, CustomStringConvertible {
    /// The module's code type (`Refusal.Code`, `SandboxError.Code`, ...).
    public typealias Code = CodeSet

    /// What failed, as a code.
    public let code: Code
    /// Why, in words an operator can act on.
    public let message: String
    /// What failed underneath, for the runner's log.
    public let cause: ErrorCause?

    /// Creates an error; `cause` goes to the runner's log, never to a client.
    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause.map { ErrorCause($0) }
    }

    /// Two errors are the same when they say the same; the cause is for logs.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    /// Hashes what ``==`` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }

    /// `code: message`: what clients and admins are told.
    public var description: String { "\(code.rawValue): \(message)" }

    /// ``description`` and, when there is one, the cause: for the runner's log only.
    public var logDescription: String {
        guard let cause else { return description }
        return "\(description) (cause: \(cause))"
    }
}

/// The error underneath a ``CodedError``: the error itself, for code that reads it (a PostgreSQL
/// error's SQLSTATE, a confinement stage's errno), and its words for the runner's log.
public struct ErrorCause: Sendable, CustomStringConvertible {
    /// The underlying error, described (with its own cause, when it has one).
    public let description: String
    /// The underlying error itself.
    public let error: any Error

    /// Keeps `error` and its description.
    public init(_ error: any Error) {
        description = logDescription(of: error)
        self.error = error
    }
}

/// What a log line says of `error`: a ``LoggableError``'s ``LoggableError/logDescription`` (with
/// its cause), any other error's description. Never for a client.
public func logDescription(of error: any Error) -> String {
    (error as? any LoggableError)?.logDescription ?? String(describing: error)
}

/// An error with a form for the runner's log beside the one clients see.
public protocol LoggableError: Error {
    /// The error with everything underneath it, for the runner's log only.
    var logDescription: String { get }
}

extension CodedError: LoggableError {}
