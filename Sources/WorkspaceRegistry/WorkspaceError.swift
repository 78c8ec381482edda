/// A registration or resolution failure, with a stable machine-readable code and a sentence an
/// operator can act on.
public struct WorkspaceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable machine-readable codes.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The wire form of the code.
        public let rawValue: String
        private init(_ rawValue: String) { self.rawValue = rawValue }

        /// An id is not a short ASCII identifier.
        public static let invalidIdentifier = Code("invalid_identifier")
        /// The root does not pass the registration rules.
        public static let invalidRoot = Code("invalid_root")
        /// The root is, contains or lies inside a protected path or another workspace's root (which
        /// one is never said).
        public static let rootRefused = Code("root_refused")
        /// The root is not inside `<base>/<tenant>` of a configured workspace base.
        public static let outsideBase = Code("root_outside_base")
        /// No workspace base is configured, so no root can be allocated or registered.
        public static let noBase = Code("no_workspace_base")
        /// A configured workspace base is unusable.
        public static let invalidBase = Code("invalid_workspace_base")
        /// A tenant admin key named a host path; only the operator may register an existing path.
        public static let rootNotAllowed = Code("root_not_allowed")
        /// The (tenant, workspace) pair is already registered.
        public static let alreadyExists = Code("workspace_exists")
        /// No workspace is registered under that (tenant, workspace) pair.
        public static let notFound = Code("workspace_not_found")

        /// The wire form.
        public var description: String { rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// The operator-facing explanation.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }
}
