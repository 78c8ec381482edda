#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Registration rules for workspace roots: roots belong to the runner, not to tenants.
///
/// A root lies strictly inside `<base>/<tenant>` for one of the operator's workspace bases, is an
/// existing directory given in canonical form with no symlink on its path, and is not, does not
/// contain and does not lie inside any protected path (the state dir, the policies, the config and
/// key files, the binaries, system directories) or any other workspace's root, whichever tenant owns
/// it. Every comparison is by device and inode along the resolved path, never by string prefix.
/// Because every tenant's roots live under its own `<base>/<tenant>`, a directory removed from the
/// registry stays its tenant's until the operator purges it: no other tenant's root can be placed
/// there.
public struct WorkspaceRules: Sendable {
    /// A path the runner protects, with an operator-facing name (never shown to tenants).
    public struct Protected: Sendable {
        /// What it is: `state directory`, `policies directory`, ...
        public var name: String
        /// Its resolved chain.
        public var chain: PathChain

        /// Creates an entry.
        public init(name: String, chain: PathChain) {
            self.name = name
            self.chain = chain
        }
    }

    /// System directories no root may be, lie inside or contain.
    public static let confinedSystemDirectories = [
        "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot",
        "/root", "/run", "/var/run", "/var/spool", "/var/log", "/var/lib/dpkg", "/var/lib/apt", "/var/cache",
        "/var/mail", "/snap",
    ]
    /// Directories no root or base may be (their subdirectories are fine: bases live there).
    public static let sharedParentDirectories = [
        "/", "/home", "/var", "/var/lib", "/tmp", "/var/tmp", "/opt", "/srv", "/mnt", "/media",
    ]

    /// The operator's workspace bases, resolved.
    public let bases: [PathChain]
    /// The runner's own files and the system directories.
    public let protected: [Protected]
    private let sharedParents: [FileIdentity]

    /// Creates the rules over `bases` (existing directories) and the runner's own `protectedPaths`
    /// (name, path); missing protected paths are skipped. System directories are always protected.
    public init(bases: [PathChain] = [], protectedPaths: [(name: String, path: String)] = []) {
        self.bases = bases
        var protected: [Protected] = []
        for (name, path) in protectedPaths {
            if let chain = PathChain.resolveExisting(path) { protected.append(Protected(name: name, chain: chain)) }
        }
        for path in Self.confinedSystemDirectories {
            if let chain = PathChain.resolveExisting(path) {
                protected.append(Protected(name: "system directory \(path)", chain: chain))
            }
        }
        self.protected = protected
        self.sharedParents = Self.sharedParentDirectories.compactMap { PathChain.resolveExisting($0)?.identity }
    }

    /// Checks a base directory the operator configured: it must exist, and must not be a shared
    /// parent such as `/` or `/home`, nor be, contain or lie inside a protected path or another base.
    public func validateBase(_ base: PathChain, others: [PathChain] = []) throws(WorkspaceError) {
        guard base.isDirectory else { throw WorkspaceError(.invalidBase, "workspace base \(base.path) is not a directory") }
        if sharedParents.contains(base.identity) {
            throw WorkspaceError(.invalidBase, "workspace base \(base.path) is a shared system directory; use a directory of its own")
        }
        for entry in protected where base.isWithin(entry.chain) || entry.chain.isWithin(base) {
            throw WorkspaceError(
                .invalidBase, "workspace base \(base.path) is, contains or lies inside the \(entry.name) (\(entry.chain.path))")
        }
        for other in others where other.identity != base.identity || other.path != base.path {
            if base.isWithin(other) || other.isWithin(base) {
                throw WorkspaceError(.invalidBase, "workspace bases \(base.path) and \(other.path) overlap")
            }
        }
    }

    /// Checks `workspace` against the rules and the workspaces already registered (every tenant's).
    /// - Throws: ``WorkspaceError`` naming the first rule that fails. A refusal because of another
    ///   workspace or a protected path never says which one: that would map other tenants' roots.
    public func validate(_ workspace: Workspace, existing: [Workspace]) throws(WorkspaceError) {
        guard Identifier.isValid(workspace.tenantID) else {
            throw WorkspaceError(.invalidIdentifier, "tenant_id must be 1-64 characters of [A-Za-z0-9_-]")
        }
        guard Identifier.isValid(workspace.workspaceID) else {
            throw WorkspaceError(.invalidIdentifier, "workspace_id must be 1-64 characters of [A-Za-z0-9_-]")
        }
        if existing.contains(where: { $0.tenantID == workspace.tenantID && $0.workspaceID == workspace.workspaceID }) {
            throw WorkspaceError(
                .alreadyExists,
                "workspace \(workspace.workspaceID) is already registered for tenant \(workspace.tenantID)")
        }
        let chain = try validateRoot(workspace.root, tenantID: workspace.tenantID)
        for other in existing {
            guard let otherChain = try? PathChain.resolve(other.root).get() else { continue }
            if chain.isWithin(otherChain) || otherChain.isWithin(chain) { throw Self.refused(workspace.root) }
        }
    }

    /// Checks the root alone: canonical, an existing directory without symlinks, strictly inside
    /// `<base>/<tenant>`, and clear of every protected path. Returns its chain.
    @discardableResult
    public func validateRoot(_ root: String, tenantID: String) throws(WorkspaceError) -> PathChain {
        let chain: PathChain
        switch PathChain.resolve(root) {
        case .success(let resolved): chain = resolved
        case .failure(.notCanonical):
            throw WorkspaceError(
                .invalidRoot,
                "root must be an absolute canonical path: no empty, '.' or '..' components, no trailing slash, at most 4096 bytes")
        case .failure(.missing(let prefix)):
            throw WorkspaceError(.invalidRoot, "root \(root) does not exist (\(prefix) is missing)")
        case .failure(.symlink(let prefix)):
            throw WorkspaceError(.invalidRoot, "root \(root) has a symlink on its path at \(prefix)")
        case .failure(.notADirectory(let prefix)):
            throw WorkspaceError(.invalidRoot, "root \(root) is not a directory (\(prefix) is not a directory)")
        }
        guard !bases.isEmpty else {
            throw WorkspaceError(.noBase, "no workspace base is configured (workspace_bases in leasehold.yaml)")
        }
        if sharedParents.contains(chain.identity) { throw Self.refused(root) }
        for entry in protected where chain.isWithin(entry.chain) || entry.chain.isWithin(chain) {
            throw Self.refused(root)
        }
        // Strictly inside <base>/<tenant>: the tenant's directory is the component right after a base.
        let inside = bases.contains { base in
            guard let at = chain.identities.firstIndex(of: base.identity), at + 2 < chain.identities.count else {
                return false
            }
            guard let tenantDirectory = try? PathChain.resolve(base.path + "/" + tenantID).get() else { return false }
            return chain.identities[at + 1] == tenantDirectory.identity
        }
        guard inside else {
            throw WorkspaceError(
                .outsideBase,
                "root \(root) is not inside <base>/\(tenantID)/ of a configured workspace base (\(bases.map(\.path).joined(separator: ", ")))")
        }
        return chain
    }

    /// The one refusal for a root that touches something it must not: it never names what.
    static func refused(_ root: String) -> WorkspaceError {
        WorkspaceError(
            .rootRefused,
            "root \(root) cannot be a workspace root: it is, contains or lies inside a protected path or another workspace's root")
    }
}
