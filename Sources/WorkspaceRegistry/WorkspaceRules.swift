#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Registration rules for workspace roots.
///
/// A root must exist, be a directory, be given in canonical form (absolute, no `.`/`..`
/// components, no symlink anywhere on its path), must not be `/` or a system directory, and must
/// not equal, contain or sit inside another registered workspace's root, whichever tenant owns it.
public struct WorkspaceRules: Sendable {
    /// Directories that may never be (or contain) a workspace root.
    public static let systemDirectories: Set<String> = [
        "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
        "/run", "/sbin", "/sys", "/usr", "/var", "/home", "/opt", "/srv", "/mnt", "/media", "/tmp",
        "/var/tmp", "/usr/local", "/usr/lib", "/usr/bin",
    ]

    /// Creates the rule set.
    public init() {}

    /// Checks `workspace` against the rules and the workspaces already registered.
    /// - Throws: ``WorkspaceError`` naming the first rule that fails.
    public func validate(_ workspace: Workspace, existing: [Workspace]) throws(WorkspaceError) {
        guard Identifier.isValid(workspace.tenantID) else {
            throw WorkspaceError(.invalidIdentifier, "tenant_id must be 1-64 characters of [A-Za-z0-9_-]")
        }
        guard Identifier.isValid(workspace.workspaceID) else {
            throw WorkspaceError(.invalidIdentifier, "workspace_id must be 1-64 characters of [A-Za-z0-9_-]")
        }
        try validateRoot(workspace.root)
        for other in existing {
            if other.tenantID == workspace.tenantID && other.workspaceID == workspace.workspaceID {
                throw WorkspaceError(
                    .alreadyExists,
                    "workspace \(workspace.workspaceID) is already registered for tenant \(workspace.tenantID)"
                )
            }
            if Self.overlaps(other.root, workspace.root) {
                // Never name the other workspace or its tenant: that would leak another tenant's layout.
                throw WorkspaceError(
                    .overlappingRoot,
                    "root \(workspace.root) equals, contains or sits inside an already registered workspace root"
                )
            }
        }
    }

    /// Checks the root alone: absolute, canonical, an existing directory, no symlinks, not a system dir.
    public func validateRoot(_ root: String) throws(WorkspaceError) {
        guard root.hasPrefix("/") else {
            throw WorkspaceError(.invalidRoot, "root must be an absolute path")
        }
        guard root.utf8.count <= 4096, !root.utf8.contains(0) else {
            throw WorkspaceError(.invalidRoot, "root is too long or contains a NUL byte")
        }
        let components = root.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard root != "/" else {
            throw WorkspaceError(.invalidRoot, "root must not be /")
        }
        for component in components {
            if component.isEmpty || component == "." || component == ".." {
                throw WorkspaceError(
                    .invalidRoot,
                    "root must be canonical: no empty, '.' or '..' components and no trailing slash"
                )
            }
        }
        guard !Self.systemDirectories.contains(root) else {
            throw WorkspaceError(.invalidRoot, "root \(root) is a system directory")
        }
        // Walk every prefix with lstat so a symlink anywhere on the path is refused.
        var prefix = ""
        for component in components {
            prefix += "/" + component
            var info = stat()
            guard lstat(prefix, &info) == 0 else {
                throw WorkspaceError(.invalidRoot, "root \(root) does not exist (\(prefix) is missing)")
            }
            if (info.st_mode & S_IFMT) == S_IFLNK {
                throw WorkspaceError(.invalidRoot, "root \(root) has a symlink on its path at \(prefix)")
            }
            if (info.st_mode & S_IFMT) != S_IFDIR {
                throw WorkspaceError(.invalidRoot, "root \(root) is not a directory (\(prefix) is not a directory)")
            }
        }
    }

    /// True when one root equals, contains or sits inside the other.
    public static func overlaps(_ a: String, _ b: String) -> Bool {
        a == b || b.hasPrefix(a + "/") || a.hasPrefix(b + "/")
    }
}
