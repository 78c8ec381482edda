import Failures

/// A registration or resolution failure, with a stable machine-readable code and a sentence an
/// operator can act on.
public typealias WorkspaceError = CodedError<WorkspaceErrorCode>

/// Stable machine-readable codes of ``WorkspaceError``.
public struct WorkspaceErrorCode: ErrorCode {
    /// The wire form of the code.
    public let rawValue: String
    private init(_ rawValue: String) { self.rawValue = rawValue }

    /// An id is not a short ASCII identifier.
    public static let invalidIdentifier = WorkspaceErrorCode("invalid_identifier")
    /// The root does not pass the registration rules.
    public static let invalidRoot = WorkspaceErrorCode("invalid_root")
    /// The root is, contains or lies inside a protected path or another workspace's root (which
    /// one is never said).
    public static let rootRefused = WorkspaceErrorCode("root_refused")
    /// The root is not inside `<base>/<tenant>` of a configured workspace base.
    public static let outsideBase = WorkspaceErrorCode("root_outside_base")
    /// No workspace base is configured, so no root can be allocated or registered.
    public static let noBase = WorkspaceErrorCode("no_workspace_base")
    /// A configured workspace base is unusable.
    public static let invalidBase = WorkspaceErrorCode("invalid_workspace_base")
    /// A tenant admin key named a host path; only the operator may register an existing path.
    public static let rootNotAllowed = WorkspaceErrorCode("root_not_allowed")
    /// The (tenant, workspace) pair is already registered.
    public static let alreadyExists = WorkspaceErrorCode("workspace_exists")
    /// No workspace is registered under that (tenant, workspace) pair.
    public static let notFound = WorkspaceErrorCode("workspace_not_found")

    /// Every code a registration or resolution fails with (docs/operations.md's table is checked
    /// against it).
    public static let allCases: [WorkspaceErrorCode] = [
        .invalidIdentifier, .invalidRoot, .rootRefused, .outsideBase, .noBase, .invalidBase, .rootNotAllowed,
        .alreadyExists, .notFound,
    ]
}
